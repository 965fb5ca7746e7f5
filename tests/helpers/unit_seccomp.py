"""Run a command under the system call filter its systemd unit declares, as systemd would.

    python unit_seccomp.py systemd/appliance-asrd.service -- python -m appliance.services.asrd ...

The unit's SystemCallFilter= lines are read in order (an allow list first makes everything
else denied; a "~" line takes names away), groups are expanded with `systemd-analyze
syscall-filter` (the same tables systemd uses), and the filter is installed with libseccomp
(pyseccomp) with SystemCallErrorNumber= as the error a denied call gets, then the command is
exec'd: so a test can prove a service still does its job inside its unit's filter without
systemd as PID 1.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys


def groups() -> dict[str, list[str]]:
    """Every @group systemd knows, with its members (names and nested @groups)."""
    out = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True, check=True).stdout
    table: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        if line.startswith("@"):
            current = line.strip()
            table[current] = []
        elif current and line.strip() and not line.strip().startswith("#"):
            table[current].append(line.strip())
    return table


def expand(names: list[str], table: dict[str, list[str]]) -> set[str]:
    out: set[str] = set()
    for name in names:
        if name.startswith("@"):
            out |= expand(table.get(name, []), table)
        else:
            out.add(name)
    return out


def unit_filter(unit: str) -> tuple[set[str], int]:
    """(allowed syscalls, errno for the others) as the unit's lines say."""
    table = groups()
    allowed: set[str] | None = None
    err = errno.EPERM
    for raw in open(unit, encoding="utf-8"):
        line = raw.strip()
        if line.startswith("SystemCallErrorNumber="):
            err = getattr(errno, line.split("=", 1)[1].strip())
        if not line.startswith("SystemCallFilter="):
            continue
        value = line.split("=", 1)[1].strip()
        deny = value.startswith("~")
        names = expand(value.lstrip("~").split(), table)
        if deny:
            if allowed is None:
                raise SystemExit(f"{unit}: a deny-list filter; this runner proves allow lists")
            allowed -= names
        else:
            allowed = names if allowed is None else allowed | names
    if allowed is None:
        raise SystemExit(f"{unit}: no SystemCallFilter=")
    return allowed, err


def install(allowed: set[str], err: int) -> None:
    import pyseccomp

    f = pyseccomp.SyscallFilter(pyseccomp.ERRNO(err))
    for name in sorted(allowed):
        try:
            f.add_rule(pyseccomp.ALLOW, name)
        except (ValueError, RuntimeError, OSError):
            pass  # a name this architecture does not have (e.g. the *_time64 ones on x86-64)
    f.load()


def main(argv: list[str]) -> None:
    unit, sep, *command = argv
    if sep != "--" or not command:
        raise SystemExit("usage: unit_seccomp.py UNIT -- COMMAND...")
    install(*unit_filter(unit))
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
