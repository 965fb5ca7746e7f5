"""Agent fixtures: a real agentd process with the example receptionist, a real booking server
(HTTP + SQLite) and the bus stand-ins for sipd/asrd/ttsd (appliance.bench.agentdrive.Line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.agent.examples.clinic import BookingServerThread, install_example_agent
from appliance.bench.agentdrive import StandInLine
from appliance.bench.sipdrive import Service



@pytest.fixture
def booking(tmp_path):
    with BookingServerThread(str(tmp_path / "bookings.db")) as server:
        yield server


@pytest.fixture
def line(sandbox):
    ln = StandInLine(sandbox["run_dir"], sandbox["shm_dir"])
    yield ln
    ln.close()


@pytest.fixture
def agentd(sandbox, booking, line):
    """Start agentd (call ``agentd()``; ``agentd(extra_config)`` appends config first)."""
    started: list[Service] = []

    def start(extra: str = "", *, wait_ready: bool = True) -> Service:
        if not started:
            install_example_agent(Path(sandbox["root"]) / "agents", booking.url)
        if extra:
            cfg = sandbox["config"]
            cfg.write_text(cfg.read_text() + "\n" + extra + "\n")
        svc = Service(sandbox, "agentd").start(wait_ready=wait_ready)
        started.append(svc)
        return svc

    yield start
    for svc in started:
        svc.stop()
