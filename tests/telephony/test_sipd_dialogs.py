"""Dialog features against SIPp: CANCEL while ringing, hold and unhold by re-INVITE, callers
challenged with digest auth, and agentd's answer/reject controls."""

from __future__ import annotations

import shutil
import time

import pytest
from sipd_harness import EventLog, Sipd, sipp, sipp_counts

from appliance.bus.messages import Answer, CallAnswered, CallEnded, CallHeld, CallStarted, Reject

pytestmark = pytest.mark.skipif(shutil.which("sipp") is None, reason="scripts/test installs sip-tester")


def test_cancel_while_ringing_gets_487_and_ends_the_call(sandbox, tmp_path):
    sipd = Sipd(sandbox, extra_sip="auto_answer = false\n").start()
    events = EventLog(sipd.run_dir)
    try:
        time.sleep(0.3)
        out = sipp("uac_cancel.xml", sipd.port, cwd=str(tmp_path), extra=["-trace_msg", "-message_file",
                                                                           str(tmp_path / "m.log")])
        assert sipp_counts(out) == (1, 0), (tmp_path / "m.log").read_text()[-3000:]
        events.collect(until=lambda e: isinstance(e, CallEnded), timeout=10)
        assert events.of(CallEnded)[0].reason == "caller-cancelled"
        assert not events.of(CallAnswered)
        assert sipd.status().details["active_calls"] == 0
    finally:
        events.close()
        sipd.stop()


def test_hold_and_unhold_by_reinvite_are_answered_and_reported(sandbox, tmp_path):
    sipd = Sipd(sandbox).start()
    events = EventLog(sipd.run_dir)
    try:
        time.sleep(0.3)
        out = sipp("uac_hold.xml", sipd.port, cwd=str(tmp_path), extra=["-trace_msg", "-message_file",
                                                                         str(tmp_path / "m.log")])
        assert sipp_counts(out) == (1, 0), (tmp_path / "m.log").read_text()[-3000:]
        events.collect(until=lambda e: isinstance(e, CallEnded), timeout=10)
        assert [e.held for e in events.of(CallHeld)] == [True, False]
        m = events.of(CallEnded)[0].metrics
        # ~2.5 s answered, ~1 s of it on hold, when sipd must not send: clearly fewer packets out
        assert 60 <= m["tx_packets"] <= 0.8 * m["frames_in"], m
    finally:
        events.close()
        sipd.stop()


@pytest.mark.parametrize("password, ok", [("pw-alice", True), ("guess", False)])
def test_callers_are_challenged_with_digest_when_auth_is_configured(sandbox, tmp_path, password, ok):
    # SIPp computes MD5 digests only; real phones pick the SHA-256 challenge offered first by default
    sipd = Sipd(sandbox, extra_sip='auth_realm = "appliance.test"\nauth_users = { alice = "pw-alice" }\n'
                                   'auth_algorithms = ["MD5"]\n').start()
    try:
        out = sipp("uac_auth.xml", sipd.port, cwd=str(tmp_path), extra=["-au", "alice", "-ap", password, "-trace_msg", "-message_file", str(tmp_path / "m.log")])
        assert sipp_counts(out) == ((1, 0) if ok else (0, 1)), (tmp_path / "m.log").read_text()[-3000:]
        details = sipd.status().details
        assert details["calls_total"] == (1 if ok else 0) and details["refused_auth"] == (0 if ok else 1)
        if not ok:
            assert "SIP/2.0 403 Forbidden" in (tmp_path / "m.log").read_text()
    finally:
        sipd.stop()


def test_agent_decides_answer_or_reject_when_auto_answer_is_off(sandbox, tmp_path):
    sipd = Sipd(sandbox, extra_sip="auto_answer = false\n").start()
    events = EventLog(sipd.run_dir)
    try:
        time.sleep(0.3)
        first = sipp("uac_echo.xml", sipd.port, background=True, cwd=str(tmp_path), keys={"codec_pt": 0},
                     extra=["-d", "300"])
        events.collect(until=lambda e: isinstance(e, CallStarted), timeout=10)
        sipd.control(Answer(call_id=events.of(CallStarted)[0].call_id))
        assert sipp_counts(first.communicate(timeout=30)[0]) == (1, 0)
        second = sipp("uac_echo.xml", sipd.port, background=True, cwd=str(tmp_path), keys={"codec_pt": 0},
                      extra=["-d", "300"])
        events.collect(until=lambda e: len(events.of(CallStarted)) == 2, timeout=10)
        sipd.control(Reject(call_id=events.of(CallStarted)[1].call_id, code=486))
        assert sipp_counts(second.communicate(timeout=30)[0]) == (0, 1)
        events.collect(until=lambda e: len(events.of(CallEnded)) == 2, timeout=10)
        assert [e.reason for e in events.of(CallEnded)] == ["caller-hangup", "rejected: 486"]
    finally:
        events.close()
        sipd.stop()
