"""Speech fixtures: asrd / ttsd as real processes on the CPU default models, fed through
real rings by a stand-in for sipd's bus side (appliance.bench.speechdrive.CallSource)."""

from __future__ import annotations

import pytest

from appliance.bench.sipdrive import EventLog, Service
from appliance.bench.speechdrive import CallSource


@pytest.fixture
def speech_config(sandbox):
    """The sandbox config (its models_dir has the default models); ``add(toml)`` appends sections."""
    config = sandbox["config"]

    class Cfg:
        path = config

        @staticmethod
        def add(text: str) -> None:
            config.write_text(config.read_text() + "\n" + text + "\n")

    return Cfg


@pytest.fixture
def calls(sandbox):
    source = CallSource(sandbox["run_dir"], sandbox["shm_dir"])
    yield source
    source.close()


@pytest.fixture
def service(sandbox):
    """``service("asrd")`` starts one; every one started is stopped after the test."""
    started: list[Service] = []

    def start(name: str, **kw) -> Service:
        svc = Service(sandbox, name).start(**kw)
        started.append(svc)
        return svc

    yield start
    for svc in started:
        svc.stop()


@pytest.fixture
def events(sandbox):
    log = EventLog(str(sandbox["run_dir"]), services=("asrd", "ttsd"))
    yield log
    log.close()
