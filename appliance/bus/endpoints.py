"""Where each process's sockets live. Broker-less: every service binds its own event and
control sockets, peers connect to them, so no single bus process can take calls down."""

from __future__ import annotations

import os


def events(run_dir: str, service: str) -> str:
    return f"ipc://{os.path.join(run_dir, service)}.pub"


def control(run_dir: str, service: str) -> str:
    return f"ipc://{os.path.join(run_dir, service)}.ctl"
