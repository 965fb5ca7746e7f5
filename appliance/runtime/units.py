"""The appliance's systemd units, when systemd runs this box: is it systemd, are the units
installed, what state is each in (`appliancectl status`), and where their logs are
(`appliancectl logs`). Everything here is a no-op answer (None) on a box without systemd, where
`appliancectl up` runs the services instead."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import asdict, dataclass

SYSTEMD_RUN_DIR = "/run/systemd/system"  # sd_booted(): present only when systemd is PID 1
PROPERTIES = ("Id", "LoadState", "ActiveState", "SubState", "MainPID", "NRestarts", "Result",
              "ActiveEnterTimestamp")


def unit_name(service: str) -> str:
    return f"appliance-{service}.service"


def booted() -> bool:
    """True when systemd is the init system here (the check sd_booted(3) makes)."""
    return os.path.isdir(SYSTEMD_RUN_DIR)


@dataclass
class UnitState:
    service: str
    unit: str
    load: str  # loaded | not-found | ...
    active: str  # active | activating | deactivating | inactive | failed
    sub: str  # running | auto-restart | dead | failed | ...
    pid: int
    restarts: int  # NRestarts: automatic restarts since the unit was last started by hand
    result: str  # success | exit-code | signal | watchdog | start-limit-hit | ...
    since: str  # when it last became active (systemd's wording), "" if never

    def describe(self) -> str:
        return f"{self.active} ({self.sub})" + (f", {self.result}" if self.result not in ("", "success") else "")

    def as_dict(self) -> dict:
        return asdict(self)


def _parse_show(text: str) -> list[dict[str, str]]:
    blocks, current = [], {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, _, value = line.partition("=")
        current[key] = value
    if current:
        blocks.append(current)
    return blocks


def unit_states(services: list[str], timeout: float = 5.0) -> dict[str, UnitState] | None:
    """Each service's unit, or None when systemd does not run the appliance here: not booted
    with systemd, no systemctl, or none of the units installed (a dev box)."""
    systemctl = shutil.which("systemctl")
    if not services or not booted() or systemctl is None:
        return None
    units = [unit_name(s) for s in services]
    try:
        r = subprocess.run([systemctl, "show", "--no-pager", f"--property={','.join(PROPERTIES)}", *units],
                           capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0:
        return None
    by_id = {b.get("Id", ""): b for b in _parse_show(r.stdout)}
    states = {}
    for service, unit in zip(services, units):
        b = by_id.get(unit, {})

        def num(key: str) -> int:
            value = b.get(key, "")
            return int(value) if value.isdigit() else 0

        states[service] = UnitState(service, unit, b.get("LoadState", "not-found"), b.get("ActiveState", "inactive"),
                                    b.get("SubState", "dead"), num("MainPID"), num("NRestarts"), b.get("Result", ""),
                                    b.get("ActiveEnterTimestamp", ""))
    if all(s.load == "not-found" for s in states.values()):
        return None
    return states


def journal_available() -> bool:
    return booted() and shutil.which("journalctl") is not None
