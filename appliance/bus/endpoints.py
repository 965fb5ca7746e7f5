"""Where each process's sockets live. Broker-less: every service binds its own event and
control sockets, peers connect to them, so no single bus process can take calls down."""

from __future__ import annotations

import os


def events(run_dir: str, service: str) -> str:
    return f"ipc://{os.path.join(run_dir, service)}.pub"


def control(run_dir: str, service: str) -> str:
    return f"ipc://{os.path.join(run_dir, service)}.ctl"


SOCKET_MODE = 0o660  # connecting needs write access: the service's user and group, nobody else


def restrict(endpoint: str) -> None:
    """Give a bound ``ipc://`` socket the appliance group's mode whatever the umask (under
    systemd, UMask=0027 would leave the group unable to connect: appliancectl as an admin in
    the appliance group). The run dir (0750) keeps everyone else out as well."""
    if endpoint.startswith("ipc://"):
        os.chmod(endpoint[len("ipc://"):], SOCKET_MODE)
