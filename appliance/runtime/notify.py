"""sd_notify: tell systemd we are ready, alive (watchdog), or stopping.

Uses systemd-python's ``daemon.notify`` when it is installed; the same datagram protocol is
spoken directly otherwise (a dev box without libsystemd). Without ``$NOTIFY_SOCKET`` (not
under systemd) every call is a no-op.
"""

from __future__ import annotations

import os
import socket

try:
    from systemd import daemon as _sd_daemon
except ImportError:  # pragma: no cover - depends on the machine
    _sd_daemon = None


class Notifier:
    def __init__(self, *, use_systemd_python: bool = True):
        self.socket_path = os.environ.get("NOTIFY_SOCKET", "")
        self.backend = "systemd-python" if (_sd_daemon is not None and use_systemd_python) else "builtin"

    @property
    def enabled(self) -> bool:
        return bool(self.socket_path)

    def send(self, *assignments: str) -> bool:
        if not self.enabled:
            return False
        state = "\n".join(assignments)
        if self.backend == "systemd-python":
            return bool(_sd_daemon.notify(state))
        addr = self.socket_path
        if addr.startswith("@"):
            addr = "\0" + addr[1:]  # abstract namespace
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            try:
                sock.sendto(state.encode(), addr)
            except OSError:
                return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []), f"MAINPID={os.getpid()}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None if not asked for."""
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
            return None
        return int(usec) / 2e6
