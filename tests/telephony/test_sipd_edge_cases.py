"""Signalling corner cases a PBX or a lossy network produces, driven by a raw-socket UAC:
each was a way to leak ports, duplicate or drop a call, or hijack its media."""

from __future__ import annotations

import re
import shutil
import socket
import time

import pytest
from sipd_harness import RawUac, Sipd, sipp, sipp_counts

from appliance.telephony.media.rtp import RtpPacket
from appliance.telephony.sip.message import Request, Response


@pytest.fixture
def sipd(sandbox):
    """Two calls at most: a leaked port pair or call shows up fast."""
    s = Sipd(sandbox, max_calls=2).start()
    yield s
    s.stop()


def answered(sipd, **kw) -> RawUac:
    uac = RawUac(sipd.port)
    invite = uac.request("INVITE", 1, body=uac.sdp(), **kw)
    uac.send(invite)
    assert uac.final().status == 200
    return uac


def test_invites_without_contact_are_refused_without_leaking_ports(sandbox, tmp_path):
    sipd = Sipd(sandbox, max_calls=2, extra_sip="invite_rate = 1000.0\n").start()
    uac = RawUac(sipd.port)
    for i in range(80):  # more than the port range (2 calls' worth + margin) could hold
        uac.call_id, uac.to_tag = f"nocontact{i}", ""
        uac.send(uac.request("INVITE", 1, body=uac.sdp(), contact=False))
        assert uac.final().status == 400
    try:
        assert sipp_counts(sipp("uac_echo.xml", sipd.port, cwd=str(tmp_path), keys={"codec_pt": 0},
                                extra=["-d", "300"])) == (1, 0)
    finally:
        uac.close()
        sipd.stop()


def test_a_retransmitted_invite_after_our_200_is_the_same_call(sipd):
    uac = RawUac(sipd.port)
    invite = uac.request("INVITE", 1, body=uac.sdp())
    uac.send(invite)
    first = uac.final()
    uac.send(invite)  # as if our 100 and 200 were lost
    again = uac.final()
    assert again.status == 200 and again.headers.get("To") == first.headers.get("To")
    assert sipd.status().details["active_calls"] == 1
    uac.send(uac.request("ACK", 1))
    uac.send(uac.request("BYE", 2))
    assert uac.final("BYE").status == 200
    uac.close()


def test_ack_after_an_in_dialog_info_still_stops_the_200(sipd):
    uac = RawUac(sipd.port)
    uac.send(uac.request("INVITE", 1, body=uac.sdp()))
    assert uac.final().status == 200
    uac.send(uac.request("INFO", 2))
    assert uac.final("INFO").status == 200
    uac.send(uac.request("ACK", 1))  # arrives after the INFO: still the ACK for CSeq 1
    time.sleep(0.2)
    later = [m for m in uac.messages(2.5) if isinstance(m, Response) and m.cseq[1] == "INVITE"]
    assert later == []  # no more retransmissions of the 200
    uac.send(uac.request("BYE", 3))
    assert uac.final("BYE").status == 200
    uac.close()


def test_reinvite_with_a_bad_session_expires_is_refused_and_the_call_lives(sipd):
    uac = answered(sipd)
    uac.send(uac.request("ACK", 1))
    uac.send(uac.request("INVITE", 2, body=uac.sdp(), extra="Session-Expires: soon"))
    assert uac.final(seq=2).status == 400
    uac.send(uac.request("INVITE", 3, body=uac.sdp(), extra="Session-Expires: 1"))
    refused = uac.final(seq=3)
    assert refused.status == 422 and refused.headers.get("Min-SE") == "90"
    assert sipd.status().details["active_calls"] == 1
    uac.send(uac.request("BYE", 4))
    assert uac.final("BYE").status == 200
    uac.close()


def test_session_timer_refresher_follows_what_the_caller_supports(sipd):
    for supported, refresher, require in (("Supported: timer", "uac", "timer"), ("", "uas", None)):
        extra = "Session-Expires: 1800" + (f"\r\n{supported}" if supported else "")
        uac = RawUac(sipd.port)
        uac.send(uac.request("INVITE", 1, body=uac.sdp(), extra=extra))
        ok = uac.final()
        assert ok.headers.get("Session-Expires") == f"1800;refresher={refresher}"
        assert ok.headers.get("Require") == require
        uac.send(uac.request("ACK", 1))
        uac.send(uac.request("BYE", 2))
        assert uac.final("BYE").status == 200
        uac.close()


def test_rtp_from_another_port_cannot_take_over_the_call(sipd):
    uac = RawUac(sipd.port)
    uac.send(uac.request("INVITE", 1, body=uac.sdp()))
    invite_ok = uac.final()
    uac.send(uac.request("ACK", 1))
    port = int(re.search(r"m=audio (\d+)", invite_ok.body.decode())[1])  # sipd's RTP port
    pkt = RtpPacket(payload_type=0, sequence=1, timestamp=160, ssrc=7, payload=b"\xff" * 160).serialize()
    uac.rtp.sendto(pkt, ("127.0.0.1", port))  # the real caller latches
    intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    intruder.bind(("127.0.0.1", 0))
    # another stream (SSRC): only the caller's own stream may move ports (NAT rebinding, test_sipd_network)
    foreign = RtpPacket(payload_type=0, sequence=2, timestamp=320, ssrc=666, payload=b"\xff" * 160).serialize()
    for _ in range(20):
        intruder.sendto(foreign, ("127.0.0.1", port))
    intruder.settimeout(0.5)
    with pytest.raises(socket.timeout):
        intruder.recv(2048)  # the agent's audio never goes to the intruder
    uac.rtp.settimeout(1)
    assert uac.rtp.recv(2048)  # it keeps going to the caller
    intruder.close()
    uac.send(uac.request("BYE", 2))
    assert uac.final("BYE").status == 200
    uac.close()


def test_bye_while_ringing_finishes_the_invite_with_487(sandbox):
    sipd = Sipd(sandbox, extra_sip="auto_answer = false\n").start()
    try:
        uac = RawUac(sipd.port)
        uac.send(uac.request("INVITE", 1, body=uac.sdp()))
        ringing = [m for m in uac.messages(1.0) if isinstance(m, Response) and m.status == 180]
        uac.to_tag = ringing[0].headers.get("To").split(";tag=")[1]
        uac.send(uac.request("BYE", 2))
        finals = {m.cseq[1]: m.status for m in uac.messages(1.5) if isinstance(m, Response) and m.status >= 200}
        assert finals == {"BYE": 200, "INVITE": 487}
        assert sipd.status().details["active_calls"] == 0
        uac.close()
    finally:
        sipd.stop()


def test_delayed_offer_without_an_answer_in_the_ack_is_hung_up(sipd):
    uac = RawUac(sipd.port)
    uac.send(uac.request("INVITE", 1))  # no SDP: sipd offers in its 200
    ok = uac.final()
    assert ok.status == 200 and b"m=audio" in ok.body
    uac.send(uac.request("ACK", 1))  # ... and the caller never answers it
    byes = [m for m in uac.messages(2.0) if isinstance(m, Request) and m.method == "BYE"]
    assert byes, "sipd should end a call that has no media"
    uac.close()


def test_a_malformed_ack_gets_no_response(sipd):
    uac = RawUac(sipd.port)
    uac.send(uac.request("ACK", 1).replace(b"Via: SIP/2.0/UDP", b"Via: SIP/9.9/UDP"))
    assert uac.messages(1.0) == []
    uac.close()


@pytest.mark.skipif(shutil.which("sipp") is None, reason="scripts/test installs sip-tester")
def test_refer_and_bye_reach_a_caller_over_tcp(sipd, tmp_path):
    from sipd_harness import EventLog

    from appliance.bus.messages import CallAnswered, CallEnded, CallTransfer

    events = EventLog(sipd.run_dir)
    time.sleep(0.3)
    pbx = sipp("uac_transfer.xml", sipd.port, background=True, cwd=str(tmp_path), transport="t1",
               keys={"final_status": "200 OK"})
    events.collect(until=lambda e: isinstance(e, CallAnswered), timeout=10)
    sipd.control(CallTransfer(call_id=events.of(CallAnswered)[0].call_id, target="sip:200@127.0.0.1"))
    events.collect(until=lambda e: isinstance(e, CallEnded), timeout=15)
    assert sipp_counts(pbx.communicate(timeout=30)[0]) == (1, 0)
    events.close()
