"""Speech fixtures: asrd / ttsd as real processes on the CPU default models, fed through
real rings by a stand-in for sipd's bus side (appliance.bench.speechdrive.CallSource)."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest

from appliance.bench.sipdrive import EventLog, Service
from appliance.bench.speechdrive import CallSource


@pytest.fixture(scope="session")
def models_dir():
    """One models_dir for the session with whisper-base-en assembled (≈145 MB, done once)."""
    from appliance.config.loader import parse
    from appliance.models.store import setup

    path = Path(tempfile.mkdtemp(prefix="ap-models-", dir="/tmp"))
    setup(parse(f'[paths]\nmodels_dir = "{path}"\n'), "whisper-base-en")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def speech_config(sandbox, models_dir):
    """The sandbox config with the shared models_dir; ``add(toml)`` appends sections."""
    config = sandbox["config"]
    config.write_text(re.sub(r'models_dir = ".*"', f'models_dir = "{models_dir}"', config.read_text()))

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
