"""What real networks send, as SIPp and raw sockets send it: mid-call INFO DTMF, UPDATE and a
re-INVITE that changes the codec; a gateway that requires reliable provisionals (100rel/PRACK);
a 64 KB header; a CANCEL racing the 200; RTP that moves to a new port behind a NAT; an offer
with SRTP only. (The ACK that never comes: test_sipd_hostile's scanner test.)"""

from __future__ import annotations

import re
import shutil
import socket
import time
import uuid

import pytest
from sipd_harness import EventLog, RawUac, Sipd, sipp, sipp_counts

from appliance.bus.messages import Answer, CallEnded, CallStarted, Dtmf
from appliance.telephony.media.rtp import RtpPacket
from appliance.telephony.sip.message import Response, parse

needs_sipp = pytest.mark.skipif(shutil.which("sipp") is None, reason="scripts/test installs sip-tester")


@needs_sipp
def test_mid_call_info_dtmf_update_and_a_codec_change_keep_the_call(sipd, tmp_path):
    events = EventLog(sipd.run_dir)
    try:
        time.sleep(0.3)
        out = sipp("uac_midcall.xml", sipd.port, cwd=str(tmp_path), extra=["-trace_msg", "-message_file",
                                                                            str(tmp_path / "m.log")])
        assert sipp_counts(out) == (1, 0), out.stdout[-2000:]  # the re-INVITE's answer said PCMA (checked)
        events.collect(until=lambda e: isinstance(e, CallEnded), timeout=10)
        assert [e.digit for e in events.of(Dtmf)] == ["7"]
        assert events.of(CallEnded)[0].reason == "caller-hangup"
        answers = re.findall(r"SIP/2\.0 200 OK.*?m=audio \d+ RTP/AVP (\d+)", (tmp_path / "m.log").read_text(), re.S)
        assert answers[:1] == ["0"] and answers[-1] == "8"  # PCMU first, PCMA after the re-INVITE
    finally:
        events.close()


@needs_sipp
def test_a_gateway_that_requires_100rel_gets_a_reliable_180_and_its_prack_is_accepted(sandbox, tmp_path):
    sipd = Sipd(sandbox, extra_sip="auto_answer = false\n").start()
    events = EventLog(sipd.run_dir)
    try:
        time.sleep(0.3)
        call = sipp("uac_100rel.xml", sipd.port, background=True, cwd=str(tmp_path))
        events.collect(until=lambda e: isinstance(e, CallStarted), timeout=10)
        time.sleep(1.0)  # the 180 and its PRACK cross first; then agentd answers
        sipd.control(Answer(call_id=events.of(CallStarted)[0].call_id))
        out, _ = call.communicate(timeout=30)
        assert sipp_counts(out) == (1, 0), out[-2000:]  # the 180 had Require: 100rel and an RSeq (checked)
    finally:
        events.close()
        sipd.stop()


def test_a_prack_for_nothing_we_sent_gets_481(sandbox):
    sipd = Sipd(sandbox, extra_sip="auto_answer = false\n").start()
    uac = RawUac(sipd.port)
    try:
        uac.send(uac.request("INVITE", 1, body=uac.sdp(), extra="Supported: 100rel"))
        ringing = next(m for m in uac.messages(2.0) if isinstance(m, Response) and m.status == 180)
        assert ringing.headers.get("RSeq") is None  # 100rel only supported, not required: a plain 180
        uac.to_tag = ringing.headers.get("To").split(";tag=")[1]
        uac.send(uac.request("PRACK", 2, extra="RAck: 1 1 INVITE"))
        assert uac.final("PRACK").status == 481
        uac.send(uac.request("CANCEL", 1, to_tag=""))
    finally:
        uac.close()
        sipd.stop()


def test_a_64_kb_header_gets_a_clear_answer_over_tcp_and_udp_and_sipd_goes_on(sipd):
    big = "X-Junk: " + "a" * 65_000
    lines = [f"OPTIONS sip:agent@127.0.0.1:{sipd.port} SIP/2.0", "Via: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKbig",
             "From: <sip:big@127.0.0.1>;tag=1", f"To: <sip:agent@127.0.0.1:{sipd.port}>",
             f"Call-ID: {uuid.uuid4().hex}", "CSeq: 1 OPTIONS", "Max-Forwards: 70", big, "Content-Length: 0"]
    with socket.create_connection(("127.0.0.1", sipd.port), timeout=5) as tcp:
        tcp.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = tcp.recv(65535)
    assert data == b"" or parse(data).status in (400, 413)  # refused, or the stream closed: never a hang
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    lines[1] = "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKbig2"
    udp.sendto(("\r\n".join(lines) + "\r\n\r\n").encode()[:65_000], ("127.0.0.1", sipd.port))
    udp.close()
    uac = RawUac(sipd.port)  # and the next caller is served as usual
    uac.send(uac.request("OPTIONS", 1))
    assert uac.final("OPTIONS").status == 200
    uac.close()
    assert sipd.proc.poll() is None


def test_a_cancel_racing_the_200_never_leaves_a_call_behind(sipd):
    outcomes = []
    for _ in range(10):
        uac = RawUac(sipd.port)
        invite = uac.request("INVITE", 1, body=uac.sdp(), branch=f"z9hG4bK{uuid.uuid4().hex[:10]}")
        uac.send(invite)
        branch = invite.split(b"branch=")[1].split(b";")[0].decode()
        uac.send(uac.request("CANCEL", 1, branch=branch, to_tag=""))  # right behind it
        final = uac.final("INVITE")
        outcomes.append(final.status)
        if final.status == 200:  # the 200 won: the caller ACKs and hangs up (RFC 3261 §9.1)
            uac.send(uac.request("ACK", 1))
            uac.send(uac.request("BYE", 2))
            assert uac.final("BYE").status == 200
        else:
            assert final.status == 487
            uac.send(uac.request("ACK", 1, branch=branch))
        uac.close()
    deadline = time.monotonic() + 5
    while sipd.status().details["active_calls"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sipd.status().details["active_calls"] == 0, outcomes
    assert set(outcomes) <= {200, 487}


def _rtp(ssrc: int, seq: int) -> bytes:
    return RtpPacket(payload_type=0, sequence=seq, timestamp=160 * seq, ssrc=ssrc, payload=b"\xff" * 160).serialize()


def test_rtp_that_moves_to_a_new_port_behind_a_nat_is_followed_another_stream_is_not(sipd):
    uac = RawUac(sipd.port)
    uac.send(uac.request("INVITE", 1, body=uac.sdp()))
    ok = uac.final()
    uac.send(uac.request("ACK", 1))
    port = int(re.search(r"m=audio (\d+)", ok.body.decode())[1])
    for seq in range(1, 6):
        uac.rtp.sendto(_rtp(7, seq), ("127.0.0.1", port))  # latched on this port
    time.sleep(0.4)  # the NAT's mapping expires; the stream comes back from another port
    moved = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    moved.bind(("127.0.0.1", 0))
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.1", 0))
    try:
        for seq in range(6, 12):
            other.sendto(_rtp(99, seq), ("127.0.0.1", port))  # a second stream: not the caller's
        other.settimeout(0.5)
        with pytest.raises(socket.timeout):
            other.recv(2048)
        for seq in range(6, 12):
            moved.sendto(_rtp(7, seq), ("127.0.0.1", port))  # the caller's own stream (SSRC 7)
        moved.settimeout(1.0)
        assert RtpPacket.parse(moved.recv(2048)).payload_type == 0  # the agent's audio follows it
        uac.send(uac.request("BYE", 2))
        assert uac.final("BYE").status == 200
    finally:
        moved.close()
        other.close()
        uac.close()


def test_an_offer_with_srtp_only_gets_a_clear_488(sipd):
    uac = RawUac(sipd.port)
    srtp = (f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {uac.rtp_port} RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n")
    uac.send(uac.request("INVITE", 1, body=srtp))
    refused = uac.final()
    assert refused.status == 488 and "RTP/SAVP not supported" in (refused.headers.get("Warning") or "")
    uac.send(uac.request("ACK", 1))
    uac.close()
    assert sipd.status().details["active_calls"] == 0
