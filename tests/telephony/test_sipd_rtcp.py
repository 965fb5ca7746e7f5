"""RTCP against a real sipd (RFC 3550 §6): it reports on the caller's stream with the loss the
caller caused, measures the round trip from the caller's report on its own stream, shrugs off
garbage on its RTCP port, and says BYE when the call ends. Some PBXs end calls that get no
RTCP; all of them judge the line by it."""

from __future__ import annotations

import re
import time

from prometheus_client.parser import text_string_to_metric_families
from sipd_harness import EventLog, RawUac

from appliance.bus.messages import CallEnded, MetricsRequest
from appliance.telephony.media.rtcp import dlsr_units, fraction_lost, ntp_middle
from appliance.telephony.media.rtp import (
    ReportBlock,
    RtcpCompound,
    RtpPacket,
    SenderInfo,
    build_rtcp,
    ntp_timestamp,
    parse_rtcp,
)

CALLER_SSRC = 0xCA11E7
FIRST_SEQ = 65520  # the 50 packets wrap the 16-bit sequence: the extended one counts the cycle
SENT = 50
DROPPED = {3, 17, 18, 40}


def rtcp_from_sipd(uac: RawUac, until, timeout: float) -> tuple[RtcpCompound, float]:
    """Read sipd's RTCP until ``until(compound)``; returns it and when it came (wall clock)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        uac.rtcp.settimeout(left)
        try:
            data = uac.rtcp.recv(2048)
        except TimeoutError:
            break
        compound = parse_rtcp(data)
        if until(compound):
            return compound, time.time()
    raise AssertionError(f"no such RTCP from sipd within {timeout} s")


def sipd_metrics(sipd) -> dict[str, float]:
    text = sipd.control(MetricsRequest()).text
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}


def test_sipd_reports_on_the_callers_stream_measures_rtt_survives_garbage_and_says_bye(sipd):
    events = EventLog(sipd.run_dir)
    time.sleep(0.3)
    uac = RawUac(sipd.port, rtcp=True)
    uac.send(uac.request("INVITE", 1, body=uac.sdp()))
    ok = uac.final()
    assert ok.status == 200
    uac.send(uac.request("ACK", 1))
    rtp_port = int(re.search(r"m=audio (\d+)", ok.body.decode())[1])
    sipd_rtcp = ("127.0.0.1", rtp_port + 1)  # sipd's SDP has no a=rtcp: RTP port + 1
    try:
        # the caller: an SR, then 50 packets of which 4 never leave, then garbage on the RTCP port
        sr_wall = time.time()
        uac.rtcp.sendto(build_rtcp(CALLER_SSRC, "caller@test", [],
                                   SenderInfo(ntp_timestamp(sr_wall), 0, SENT - len(DROPPED), 0)), sipd_rtcp)
        for i in range(SENT):
            if i not in DROPPED:
                pkt = RtpPacket(0, (FIRST_SEQ + i) & 0xFFFF, 160 * i, CALLER_SSRC, b"\xff" * 160)
                uac.rtp.sendto(pkt.serialize(), ("127.0.0.1", rtp_port))
                time.sleep(0.002)
        for junk in (b"\x00", b"\x80\xc8\x00\x30" + b"\x01" * 20, b"hello sipd, this is not RTCP"):
            uac.rtcp.sendto(junk, sipd_rtcp)

        # (a) sipd's report (the first comes 1.25-3.75 s after media starts): an SR, as it sends
        # comfort silence, with one block about our stream that has every packet counted
        reports_on_us = []

        def about_all_we_sent(c: RtcpCompound) -> bool:
            if c.reports and c.reports[0].blocks:
                reports_on_us.append(c)
                return c.reports[0].blocks[0].highest_seq == FIRST_SEQ + SENT - 1
            return False

        compound, got_at = rtcp_from_sipd(uac, about_all_we_sent, 12)
        report = compound.reports[0]
        sipd_ssrc = report.ssrc
        assert report.sender_info is not None and report.sender_info.packet_count > 0
        assert report.sender_info.octet_count == 160 * report.sender_info.packet_count
        assert compound.cnames.get(sipd_ssrc)
        (block,) = report.blocks
        assert block.ssrc == CALLER_SSRC
        assert block.highest_seq == (1 << 16) | ((FIRST_SEQ + SENT - 1) & 0xFFFF)
        assert block.cumulative_lost == len(DROPPED)
        if len(reports_on_us) == 1:  # fraction lost is per report interval: all of it in the first
            assert block.fraction_lost == fraction_lost(SENT, SENT - len(DROPPED))
        assert block.lsr == ntp_middle(ntp_timestamp(sr_wall)) and 0 < block.dlsr < 10 * 65536

        # (b) we report on sipd's stream, with LSR/DLSR: sipd measures the round trip
        held = time.time() - got_at
        rr = ReportBlock(sipd_ssrc, fraction_lost=26, cumulative_lost=9, highest_seq=1234, jitter=24,
                         lsr=ntp_middle(report.sender_info.ntp_timestamp), dlsr=dlsr_units(held))
        uac.rtcp.sendto(build_rtcp(CALLER_SSRC, "caller@test", [rr]), sipd_rtcp)
        deadline = time.monotonic() + 5
        while (m := sipd_metrics(sipd)).get("appliance_rtcp_rtt_seconds_count", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert m["appliance_rtcp_rtt_seconds_count"] == 1
        assert 0 <= m["appliance_rtcp_rtt_seconds_sum"] < 1.0  # loopback: milliseconds
        assert m["appliance_rtcp_reported_lost_total"] == 9
        assert abs(m["appliance_rtcp_reported_loss_max_ratio"] - 26 / 256) < 1e-3
        assert abs(m["appliance_rtcp_reported_jitter_max_seconds"] - 0.003) < 1e-9  # 24 ticks at 8 kHz

        # (c) the garbage was counted, and the call went on: RTP still flows, RTCP still read
        assert m["appliance_rtcp_bad_packets_total"] == 3
        assert m["appliance_rtcp_packets_received_total"] == 5  # SR, 3 junk, RR
        assert m["appliance_rtcp_packets_sent_total"] >= 1
        assert sipd.status().details["active_calls"] == 1
        uac.rtp.settimeout(1)
        assert RtpPacket.parse(uac.rtp.recv(2048)).ssrc == sipd_ssrc

        # hang-up: sipd's last RTCP carries a BYE; the call's record has the far end's view
        uac.send(uac.request("BYE", 2))
        assert uac.final("BYE").status == 200
        bye, _ = rtcp_from_sipd(uac, lambda c: bool(c.bye), 5)
        assert bye.bye == (sipd_ssrc,)
        events.collect(until=lambda e: isinstance(e, CallEnded), timeout=5)
        stats = events.of(CallEnded)[0].metrics
        assert stats["rtcp_bad"] == 3 and stats["remote_lost"] == 9 and 0 <= stats["rtt_ms"] < 1000
        assert stats["rtcp_sent"] >= 1  # the record is taken just before the BYE goes
    finally:
        uac.close()
        events.close()
