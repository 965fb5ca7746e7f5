"""Fixtures: every test runs as an ordinary user in its own temp dirs, with real shared
memory (/dev/shm) and real processes; nothing touches /etc, /run or /var."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HELPERS = Path(__file__).resolve().parent / "helpers"


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


def spawn(*args: str, stdin=subprocess.PIPE, env=None) -> subprocess.Popen:
    """A real child process running ``python args...`` with line-buffered text pipes."""
    return subprocess.Popen(
        [sys.executable, *args], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, bufsize=1, env=env,
    )


def ring_agent(*args: str) -> subprocess.Popen:
    return spawn(str(HELPERS / "ring_agent.py"), *args)


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
