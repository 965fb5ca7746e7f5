"""`appliancectl drain`: before maintenance, sipd takes no new calls (503 with Retry-After)
while the call in progress goes on to its end; `--wait` returns once it has, `--off` lifts it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sipd_harness import EventLog, Sipd, held_call, sipp_counts

from appliance.bus.messages import CallEnded, CallStarted


def appliancectl(sipd: Sipd, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance", "--config", str(sipd.config), "drain", *args],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def sipd(sandbox):
    s = Sipd(sandbox).start()
    yield s
    s.stop()


def test_a_drained_sipd_refuses_new_calls_and_lets_the_one_in_progress_finish(sipd, tmp_path):
    events = EventLog(sipd.run_dir)
    (tmp_path / "held").mkdir()
    # held long enough to outlast the steps below
    held = held_call(sipd.port, tmp_path / "held", hold_ms=15000, timeout=30, background=True)
    try:
        events.collect(until=lambda e: isinstance(e, CallStarted), timeout=10)

        r = appliancectl(sipd)
        assert r.returncode == 0 and "draining" in r.stdout and "1 call in progress" in r.stdout, r.stdout + r.stderr
        assert sipd.status().details["draining"] is True and sipd.status().state == "ready"
        assert appliancectl(sipd, "--wait", "0.3").returncode == 1  # the call is still up

        out = held_call(sipd.port, tmp_path, hold_ms=100, timeout=30)  # a new call now
        assert sipp_counts(out) == (0, 1)
        refusal = (tmp_path / "pbx.log").read_text()
        assert "SIP/2.0 503 Service Unavailable" in refusal and "Retry-After: 5" in refusal
        assert sipd.status().details["refused_draining"] == 1 and sipd.status().details["refused_busy"] == 0

        waited = appliancectl(sipd, "--wait", "30", "--json")  # returns when the held call has ended
        assert waited.returncode == 0 and waited.stdout.strip().endswith('{"draining": true, "active_calls": 0}')
        stdout, _ = held.communicate(timeout=30)
        assert sipp_counts(stdout) == (1, 0)  # the call in progress was never touched
        events.collect(until=lambda e: isinstance(e, CallEnded), timeout=5)
        assert [e.reason for e in events.of(CallEnded)] == ["caller-hangup"]
        events.close()

        lifted = appliancectl(sipd, "--off")
        assert lifted.returncode == 0 and "takes calls again" in lifted.stdout
        (tmp_path / "after").mkdir()
        assert sipp_counts(held_call(sipd.port, tmp_path / "after", hold_ms=100, timeout=30)) == (1, 0)
        assert sipd.status().details["draining"] is False
    finally:
        if held.poll() is None:
            held.kill()
            held.communicate()


def test_drain_with_no_sipd_running_says_so(sandbox):
    r = subprocess.run([sys.executable, "-m", "appliance", "--config", str(sandbox["config"]), "drain"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and "sipd: not running (no control socket" in r.stderr
