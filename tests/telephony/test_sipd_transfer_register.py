"""Transfers against a peer acting as the PBX (REFER → 202 → NOTIFY sipfrag), a refused
transfer that leaves the call up, attended transfer (Replaces), and registration to a SIPp
registrar with digest auth."""

from __future__ import annotations

import shutil
import time
import urllib.parse
from pathlib import Path

import pytest
from sipd_harness import EventLog, Sipd, free_port, sipp, sipp_counts

from appliance.bus.messages import CallAnswered, CallEnded, CallStarted, CallHangup, CallTransfer, TransferProgress

pytestmark = pytest.mark.skipif(shutil.which("sipp") is None, reason="scripts/test installs sip-tester")


def answered_call(events, n=1) -> list[str]:
    events.collect(until=lambda e: len(events.of(CallAnswered)) >= n, timeout=10)
    return [e.call_id for e in events.of(CallAnswered)]


def test_blind_transfer_completes_and_the_agent_leaves_the_call(sipd, tmp_path):
    events = EventLog(sipd.run_dir)
    time.sleep(0.3)
    pbx = sipp("uac_transfer.xml", sipd.port, background=True, cwd=str(tmp_path), keys={"final_status": "200 OK"})
    (call,) = answered_call(events)
    assert sipd.control(CallTransfer(call_id=call, target="sip:200@127.0.0.1")).call_id == call
    events.collect(until=lambda e: isinstance(e, CallEnded), timeout=15)
    out, _ = pbx.communicate(timeout=30)
    assert sipp_counts(out) == (1, 0), out[-2000:]
    progress = [(p.status, p.final) for p in events.of(TransferProgress)]
    assert progress == [(202, False), (100, False), (200, True)]
    assert events.of(CallEnded)[0].reason == "transferred"
    events.close()


def test_a_declined_transfer_is_reported_and_the_call_stays_up(sipd, tmp_path):
    events = EventLog(sipd.run_dir)
    time.sleep(0.3)
    pbx = sipp("uac_transfer.xml", sipd.port, background=True, cwd=str(tmp_path),
               keys={"final_status": "603 Declined"})
    (call,) = answered_call(events)
    sipd.control(CallTransfer(call_id=call, target="sip:200@127.0.0.1"))
    events.collect(until=lambda e: isinstance(e, TransferProgress) and e.final, timeout=15)
    assert [(p.status, p.reason, p.final) for p in events.of(TransferProgress)][-1] == (603, "Declined", True)
    time.sleep(0.5)
    assert not events.of(CallEnded)  # the caller is not dropped: the agent can carry on
    assert sipd.status().details["active_calls"] == 1
    sipd.control(CallHangup(call_id=call))  # the scenario ends with our BYE
    events.collect(until=lambda e: isinstance(e, CallEnded), timeout=10)
    out, _ = pbx.communicate(timeout=30)
    assert sipp_counts(out) == (1, 0)
    assert events.of(CallEnded)[0].reason == "agent-hangup"
    events.close()


def test_attended_transfer_refers_with_replaces_naming_the_consult_call(sipd, tmp_path):
    events = EventLog(sipd.run_dir)
    time.sleep(0.3)
    consult = sipp("uac_echo.xml", sipd.port, background=True, cwd=str(tmp_path), keys={"codec_pt": 0},
                   extra=["-d", "6000"])
    (consult_call,) = answered_call(events)
    consult_sip_id = events.of(CallStarted)[0].headers["Call-ID"]
    pbx = sipp("uac_transfer.xml", sipd.port, background=True, cwd=str(tmp_path),
               keys={"final_status": "200 OK"}, extra=["-trace_msg", "-message_file", str(tmp_path / "pbx.log")])
    calls = answered_call(events, 2)
    caller = next(c for c in calls if c != consult_call)
    sipd.control(CallTransfer(call_id=caller, target="sip:200@127.0.0.1", replaces=consult_call,
                          headers={"X-Appliance-Summary": "Caller wants billing; name Ann"}))
    events.collect(until=lambda e: isinstance(e, CallEnded) and e.call_id == caller, timeout=15)
    out, _ = pbx.communicate(timeout=30)
    assert sipp_counts(out) == (1, 0)
    refer_to = next(line for line in Path(tmp_path / "pbx.log").read_text().splitlines()
                    if line.startswith("Refer-To:"))
    uri_headers = dict(h.split("=", 1) for h in refer_to.rstrip(">").split("?", 1)[1].split("&"))
    assert urllib.parse.unquote(uri_headers["X-Appliance-Summary"]) == "Caller wants billing; name Ann"
    replaces = urllib.parse.unquote(uri_headers["Replaces"])
    call_id, *params = replaces.split(";")
    assert call_id == consult_sip_id
    assert {p.split("=")[0] for p in params} == {"to-tag", "from-tag"}
    consult.communicate(timeout=30)
    events.close()


@pytest.mark.parametrize("password, registered", [("s3cret", True), ("wrong", False)])
def test_registration_with_digest_auth_against_a_sipp_registrar(sandbox, tmp_path, password, registered):
    port = free_port()
    registrar = sipp("uas_registrar.xml", 1, background=True, cwd=str(tmp_path),
                     keys={"user": "appliance", "password": "s3cret", "expires": 120}, local_port=port)
    sipd = Sipd(sandbox, extra_sip=f'mode = "register"\nregistrar = "sip:127.0.0.1:{port}"\n'
                                   f'username = "appliance"\npassword = "{password}"\n').start()
    try:
        out, _ = registrar.communicate(timeout=30)
        assert sipp_counts(out) == (1, 0), out[-2000:]
        time.sleep(0.3)
        details = sipd.status().details
        assert details["registered"] is registered
        assert details["register_error"] == ("" if registered else "403 Forbidden")
    finally:
        sipd.stop()
