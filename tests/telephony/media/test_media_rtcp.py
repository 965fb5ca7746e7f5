"""RTCP for one call: the RFC 3550 arithmetic (NTP, RTT, fraction lost, intervals), two
RtcpStates talking to each other on a simulated clock, and a real MediaSession on loopback
sockets with a short report interval."""

from __future__ import annotations

import asyncio
import socket
import time
from types import SimpleNamespace

import pytest

from appliance.bench.sipdrive import free_port
from appliance.telephony import codecs
from appliance.telephony.media.rtcp import (
    RtcpState,
    dlsr_units,
    fraction_lost,
    next_interval,
    ntp_middle,
    rtt_seconds,
)
from appliance.telephony.media.rtp import (
    ReportBlock,
    RtpError,
    RtpPacket,
    SenderInfo,
    build_rtcp,
    ntp_timestamp,
    parse_rtcp,
)
from appliance.telephony.sdp import Negotiated

S = 1_000_000_000  # ns


def test_ntp_middle_is_16_16_fixed_point_seconds():
    t = 1_700_000_000.25
    mid = ntp_middle(ntp_timestamp(t))
    assert mid & 0xFFFF == 0x4000  # .25 s
    assert mid >> 16 == (int(t) + 2208988800) & 0xFFFF
    assert dlsr_units(1.5) == 98304 and dlsr_units(-1) == 0 and dlsr_units(1e9) == 0xFFFFFFFF


def test_rtt_is_arrival_minus_lsr_minus_dlsr():
    lsr = ntp_middle(ntp_timestamp(1000.0))
    arrival = ntp_middle(ntp_timestamp(1000.0 + 0.5 + 0.040))  # held 0.5 s by the peer, 40 ms on the wire
    assert rtt_seconds(arrival, lsr, dlsr_units(0.5)) == pytest.approx(0.040, abs=1e-4)
    assert rtt_seconds(arrival, 0, dlsr_units(0.5)) is None  # LSR 0: the peer had no SR of ours
    # the 32-bit middle wraps every ~18 h: still right across the wrap
    assert rtt_seconds(0x00000100, 0xFFFFFF00, 0) == pytest.approx(0x200 / 65536)
    # DLSR truncation on a LAN: a hair below zero is zero; far below is a bogus block
    assert rtt_seconds(lsr + 100, lsr, 130) == 0.0
    assert rtt_seconds(lsr, lsr, 65536) is None


def test_fraction_lost_is_the_8_bit_field():
    assert fraction_lost(100, 75) == 64  # a quarter
    assert fraction_lost(100, 100) == 0
    assert fraction_lost(100, 120) == 0  # duplicates: no negative loss
    assert fraction_lost(0, 0) == 0
    assert fraction_lost(10, 0) == 255  # all lost saturates below 1.0


def test_intervals_are_randomised_and_the_first_halved():
    assert next_interval(5.0, rand=lambda: 0.0) == 2.5
    assert next_interval(5.0, rand=lambda: 0.999) == pytest.approx(7.495)
    assert next_interval(5.0, first=True, rand=lambda: 0.5) == 2.5
    spread = {round(next_interval(5.0), 2) for _ in range(50)}
    assert len(spread) > 10 and all(2.5 <= x <= 7.5 for x in spread)


def test_two_states_measure_the_round_trip_and_see_each_others_loss():
    """A (sipd) sends an SR, B (the PBX) answers 300 ms later with an RR about A's stream; the
    network takes 25 ms each way on a simulated clock (monotonic ns and wall seconds agree)."""
    a = RtcpState(0xA, "a@x", interval_s=5.0, rand=lambda: 0.5)
    b = RtcpState(0xB, "b@x", interval_s=5.0, rand=lambda: 0.5)
    wall0 = 1_700_000_000.0
    for _ in range(100):
        a.sent(160)
    assert not a.due(0, receiving=False)  # the first RTP starts the schedule...
    assert a.next_ns == int(2.5 * S) and a.due(int(2.5 * S), receiving=False)  # ...due in half an interval
    sr = a.report(int(2.5 * S), wall0 + 2.5, rtp_ts=1234, block=None)
    c = parse_rtcp(sr)
    assert c.reports[0].sender_info == SenderInfo(ntp_timestamp(wall0 + 2.5), 1234, 100, 16000)
    assert c.cnames == {0xA: "a@x"} and a.next_ns == int(7.5 * S)

    t_b = 2.5 + 0.025  # arrives at B
    assert b.receive(sr, int(t_b * S), 8000) is None  # an SR with no block about B
    lsr, dlsr = b.lsr_dlsr(int((t_b + 0.3) * S))
    assert lsr == ntp_middle(ntp_timestamp(wall0 + 2.5)) and dlsr == dlsr_units(0.3)
    block = ReportBlock(0xA, fraction_lost=64, cumulative_lost=25, highest_seq=70099, jitter=80, lsr=lsr, dlsr=dlsr)
    rr = b.report(int((t_b + 0.3) * S), wall0 + t_b + 0.3, 0, block)
    assert parse_rtcp(rr).reports[0].sender_info is None  # B sent no RTP: an RR

    t_a = t_b + 0.3 + 0.025
    rtt = a.receive(rr, int(t_a * S), 8000)
    assert rtt == pytest.approx(0.050, abs=1e-3)
    assert a.stats() == {"remote_loss": 0.25, "remote_lost": 25, "remote_jitter_ms": 10.0,
                         "rtt_ms": pytest.approx(50.0, abs=1)}


def test_sr_while_sending_rr_after_two_silent_reports():
    st = RtcpState(1, "c", rand=lambda: 0.5)
    st.sent(160)
    st.due(0, False)
    assert parse_rtcp(st.report(1, 0.0, 0, None)).reports[0].sender_info is not None
    assert parse_rtcp(st.report(2, 0.0, 0, None)).reports[0].sender_info is not None  # sent since the one before
    assert parse_rtcp(st.report(3, 0.0, 0, None)).reports[0].sender_info is None  # on hold: receiver only
    assert not RtcpState(2, "c").due(0, receiving=False) and RtcpState(2, "c").next_ns is None  # no media, no RTCP


def test_malformed_looped_and_foreign_reports():
    st = RtcpState(7, "me")
    with pytest.raises(RtpError):
        st.receive(b"\x80\xc8\x00\x06garbage", 0, 8000)
    # our own report looped back says nothing about the far end
    own = build_rtcp(7, "me", [ReportBlock(7, 255, 99, 1, 1, 1, 1)], SenderInfo(1 << 32, 0, 1, 1))
    assert st.receive(own, 0, 8000) is None and st.far_end is None and st.peer_sr is None
    # a block about some other source is not about us
    assert st.receive(build_rtcp(9, "p", [ReportBlock(8, 255, 99, 1, 1)]), 0, 8000) is None
    assert st.stats() == {}


# ------------------------------------------------------------------ a real MediaSession


class FakeEndpoint:
    """What a MediaSession reads of sipd's endpoint."""

    def __init__(self, shm_dir):
        from appliance.telephony.media.session import MediaClock

        self.config = SimpleNamespace(sip=SimpleNamespace(bind="127.0.0.1"),
                                      paths=SimpleNamespace(shm_dir=shm_dir), audio=SimpleNamespace(ring_seconds=2))
        self.media_clock = MediaClock()
        self.calls: dict = {}
        self.rtts: list[float] = []
        self.metrics = SimpleNamespace(rtcp_rtt=self.rtts.append)

    def publish(self, msg) -> None:
        pass


def udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


async def next_rtcp(sock: socket.socket, timeout: float = 3.0):
    data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 2048), timeout)
    return parse_rtcp(data)


def test_a_session_reports_reads_reports_counts_garbage_and_says_bye(shm_dir):
    from appliance.telephony.media.session import MediaSession

    async def run():
        ep = FakeEndpoint(shm_dir)
        peer_rtp, peer_rtcp = udp(), udp()
        neg = Negotiated(codec=codecs.PCMU, dtmf_payload_type=None, remote_address="127.0.0.1",
                         remote_port=peer_rtp.getsockname()[1], remote_rtcp_port=peer_rtcp.getsockname()[1],
                         direction="sendrecv", ptime=20, on_hold=False)
        port = free_port(even=True)
        session = MediaSession(ep, port, rtcp_interval_s=0.3)
        session.attach("rtcp-test")
        session.start(neg)
        try:
            # the caller: 40 packets, 4 of them never sent, and an SR
            dropped = {5, 6, 20, 33}
            for i in range(40):
                if i not in dropped:
                    pkt = RtpPacket(0, 1000 + i, 160 * i, 0xCA11, b"\xff" * 160)
                    peer_rtp.sendto(pkt.serialize(), ("127.0.0.1", port))
            sr_wall = time.time()
            peer_rtcp.sendto(build_rtcp(0xCA11, "caller", [], SenderInfo(ntp_timestamp(sr_wall), 6400, 36, 5760)),
                             ("127.0.0.1", port + 1))
            for junk in (b"", b"\x00" * 3, b"\x80\xc9\x00\x09" + b"\x01" * 8, b"not rtcp at all"):
                peer_rtcp.sendto(junk, ("127.0.0.1", port + 1))
            await asyncio.sleep(0.05)
            # sipd's report, once it has the SR: an SR (it sends comfort silence) with a block on us
            for _ in range(5):
                c = await next_rtcp(peer_rtcp)
                rep = c.reports[0]
                if rep.blocks and rep.blocks[0].lsr:
                    break
            assert rep.ssrc == session.ssrc and rep.sender_info is not None and c.cnames[session.ssrc]
            assert rep.sender_info.packet_count > 0
            assert rep.sender_info.octet_count == 160 * rep.sender_info.packet_count
            (b,) = rep.blocks
            assert (b.ssrc, b.highest_seq, b.cumulative_lost) == (0xCA11, 1039, 4)
            assert b.lsr == ntp_middle(ntp_timestamp(sr_wall)) and 0 <= b.dlsr < 2 * 65536
            assert session.counters["rtcp_bad"] == 4 and session.counters["rtcp_packets"] == 5
            # the caller reports on sipd's stream: 10 % lost, 2 ms jitter, and LSR/DLSR for an RTT
            got_at = time.time()
            block = ReportBlock(session.ssrc, 26, 7, 5000, 16, ntp_middle(rep.sender_info.ntp_timestamp),
                                dlsr_units(time.time() - got_at))
            peer_rtcp.sendto(build_rtcp(0xCA11, "caller", [block]), ("127.0.0.1", port + 1))
            await asyncio.sleep(0.1)
            stats = session.stats()
            assert stats["remote_lost"] == 7 and stats["remote_loss"] == pytest.approx(0.1, abs=0.005)
            assert stats["remote_jitter_ms"] == 2.0
            assert len(ep.rtts) == 1 and 0 <= ep.rtts[0] < 0.5 and stats["rtt_ms"] == round(ep.rtts[0] * 1000, 2)
            assert stats["rtcp_sent"] >= 1
        finally:
            session.close()
        # hang-up: a last report with a BYE
        for _ in range(5):
            c = await next_rtcp(peer_rtcp, 1.0)
            if c.bye:
                break
        assert c.bye == (session.ssrc,)
        peer_rtp.close()
        peer_rtcp.close()
        ep.media_clock.stop()

    asyncio.run(run())



def test_the_round_trip_is_timed_on_the_monotonic_clock_so_a_wall_clock_step_cannot_bend_it():
    """Our SR carries the wall clock (NTP); the round trip is measured from when we *sent* the
    SR the peer echoes (monotonic), so the wall clock stepping an hour (NTP, an admin's date)
    between the SR and the report changes nothing, and an LSR that is not ours measures nothing."""
    a = RtcpState(0xA, "a@x", rand=lambda: 0.5)
    a.sent(160)
    sr = a.report(int(1 * S), 1_700_000_000.0, 0, None)
    lsr = ntp_middle(parse_rtcp(sr).reports[0].sender_info.ntp_timestamp)
    # meanwhile the wall clock is stepped back an hour; the peer answers 0.2 s after our SR reached it
    rr = build_rtcp(0xB, "b", [ReportBlock(0xA, 0, 0, 1, 0, lsr=lsr, dlsr=dlsr_units(0.2))])
    assert a.receive(rr, int(1.25 * S), 8000) == pytest.approx(0.05, abs=1e-3)
    stranger = build_rtcp(0xB, "b", [ReportBlock(0xA, 0, 0, 1, 0, lsr=lsr ^ 0x5555, dlsr=0)])
    assert a.receive(stranger, int(1.3 * S), 8000) is None
