"""Process identity that survives PID reuse: (pid, kernel start time in clock ticks).

A ring records who created it and who writes it; liveness checks compare both numbers so
a recycled PID never makes a dead writer look alive.
"""

from __future__ import annotations

import os


def start_time(pid: int) -> int:
    """Start time of ``pid`` in clock ticks since boot (field 22 of /proc/<pid>/stat); 0 if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = raw[raw.rfind(b")") + 2 :].split()
    state = rest[0]
    if state in (b"Z", b"X"):  # zombie or dead: it will never write again
        return 0
    return int(rest[19])


def self_identity() -> tuple[int, int]:
    pid = os.getpid()
    return pid, start_time(pid)


def alive(pid: int, started: int) -> bool:
    """True when the process ``pid`` exists and is the same one that had ``started``."""
    if pid <= 0:
        return False
    return start_time(pid) == started != 0
