"""Fixtures: every test runs as an ordinary user in its own temp dirs, with real shared
memory (/dev/shm) and real processes; nothing touches /etc, /run or /var."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest



@pytest.fixture
def shm_dir():
    path = tempfile.mkdtemp(prefix="appliance-test-", dir="/dev/shm")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sandbox(shm_dir):
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
models_dir = "{root}/models"

[log]
level = "info"

[supervisor]
restart_min = 0.2
restart_max = 1.0

[services]
stop_timeout = 5.0
"""
    )
    yield {"root": root, "config": config, "run_dir": root / "run", "shm_dir": shm_dir}
    shutil.rmtree(root, ignore_errors=True)
