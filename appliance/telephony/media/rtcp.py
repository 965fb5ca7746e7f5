"""RTCP for one call (RFC 3550 §6): when to report, what our reports say, what the peer's say.

PBXs and SBCs watch RTCP: some end a call whose far end sends none, and they judge the line by
the loss and jitter it reports. So every call sends an SR (while it sends RTP) or an RR every
few seconds, with a report block about the caller's stream, and reads the caller's reports
about ours: the loss and jitter the far end sees, and the round-trip time (§6.4.1: arrival −
LSR − DLSR, on the NTP clock's middle 32 bits, so the two clocks need not agree).

Bookkeeping only, no sockets: the media session owns those and calls in. Parsing goes through
``parse_rtcp``, which raises ``RtpError`` for anything malformed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from .rtp import ReportBlock, SenderInfo, build_rtcp, ntp_timestamp, parse_rtcp

SRS_KEPT = 8  # our last SRs a peer's LSR may name (reports every ~5 s: the last ~40 s)
RTCP_INTERVAL_S = 5.0  # RFC 3550 §6.2 minimum; randomised ×0.5–1.5, the first one halved
_RTT_SLACK = 66  # ~1 ms in 1/65536 s: DLSR is truncated, so a LAN RTT may come out a hair below 0


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of a 64-bit NTP time: what LSR carries (16.16 fixed-point seconds)."""
    return (ntp >> 16) & 0xFFFFFFFF


def dlsr_units(seconds: float) -> int:
    """A delay in DLSR's unit, 1/65536 s, clamped to the field."""
    return max(0, min(0xFFFFFFFF, int(seconds * 65536)))


def rtt_seconds(arrival_middle: int, lsr: int, dlsr: int) -> float | None:
    """Round-trip time from a report block (RFC 3550 §6.4.1): arrival − LSR − DLSR, modulo 2³².
    None when LSR is 0 (the peer had no SR of ours yet) or the result is clearly negative (a
    bogus DLSR, or an LSR that is not ours)."""
    if lsr == 0:
        return None
    units = (arrival_middle - lsr - dlsr) & 0xFFFFFFFF
    if units >= 0x80000000:  # negative
        return 0.0 if units > 0x100000000 - _RTT_SLACK else None
    return units / 65536.0


def fraction_lost(expected: int, received: int) -> int:
    """§6.4.1 fraction lost in an interval, as the 8-bit field (lost × 256 / expected); a
    negative loss (duplicates) reports 0."""
    lost = expected - received
    return 0 if expected <= 0 or lost <= 0 else min(255, (lost << 8) // expected)


def next_interval(base_s: float, first: bool = False, rand: Callable[[], float] = random.random) -> float:
    """Seconds to the next report: ``base_s`` × 0.5–1.5 (§6.2: randomised so that many
    calls started together do not report in step), half that for the first one (§6.2)."""
    return (base_s / 2 if first else base_s) * (0.5 + rand())


@dataclass(slots=True)
class FarEnd:
    """What the caller's side last reported about our stream."""

    fraction_lost: float  # 0–1, since its previous report
    cumulative_lost: int  # since the call began (duplicates can pull it below the truth)
    jitter_ms: float


class RtcpState:
    """One call's RTCP: our sender counts, the report schedule, the peer's last SR and what
    the peer last said about us."""

    def __init__(self, ssrc: int, cname: str, interval_s: float = RTCP_INTERVAL_S,
                 rand: Callable[[], float] = random.random):
        self.ssrc, self.cname = ssrc, cname
        self.interval_s = interval_s
        self._rand = rand
        self.packets = 0  # RTP packets we sent (the SR's packet count)
        self.octets = 0  # their payload octets (the SR's octet count)
        self.next_ns: int | None = None  # when the next report is due; None until media flows
        self.peer_sr: tuple[int, int] | None = None  # the peer's last SR: (its NTP middle, our arrival ns)
        self.far_end: FarEnd | None = None
        self.rtt_s: float | None = None  # the last round trip measured
        self.most_lost = 0  # highest cumulative loss the peer reported: never goes back
        self._marks = (0, 0)  # packets sent at the last two reports (§6.4: SR if we sent since the one before)
        # Our recent SRs: their NTP middle (the LSR a peer echoes) -> when we sent them (monotonic
        # ns). The round trip is measured on the monotonic clock, so a wall-clock step (NTP, an
        # admin's date) between our SR and the peer's report cannot make it negative or huge,
        # and an LSR that is not one of ours measures nothing.
        self._sent_srs: dict[int, int] = {}

    def sent(self, payload_octets: int) -> None:
        self.packets += 1
        self.octets += payload_octets

    def due(self, now_ns: int, receiving: bool) -> bool:
        """Whether to report now; the schedule starts with the first RTP either way."""
        if self.next_ns is None:
            if self.packets or receiving:
                self._schedule(now_ns, first=True)
            return False
        return now_ns >= self.next_ns

    def _schedule(self, now_ns: int, first: bool = False) -> None:
        self.next_ns = now_ns + int(next_interval(self.interval_s, first, self._rand) * 1e9)

    def lsr_dlsr(self, now_ns: int) -> tuple[int, int]:
        """LSR and DLSR for our block about the peer: 0, 0 until it sent an SR."""
        if self.peer_sr is None:
            return 0, 0
        lsr, at_ns = self.peer_sr
        return lsr, dlsr_units((now_ns - at_ns) / 1e9)

    def report(self, now_ns: int, wall: float, rtp_ts: int, block: ReportBlock | None, bye: bool = False) -> bytes:
        """The compound packet to send now (SR or RR, SDES CNAME, BYE at the end); schedules
        the next. ``rtp_ts`` is our stream's timestamp at wall-clock time ``wall``."""
        sender = None
        if self.packets > self._marks[0]:
            sender = SenderInfo(ntp_timestamp(wall), rtp_ts, self.packets, self.octets)
            self._sent_srs[ntp_middle(sender.ntp_timestamp)] = now_ns
            while len(self._sent_srs) > SRS_KEPT:
                del self._sent_srs[next(iter(self._sent_srs))]
        self._marks = (self._marks[1], self.packets)
        self._schedule(now_ns)
        return build_rtcp(self.ssrc, self.cname, [block] if block is not None else [], sender, bye)

    def receive(self, data: bytes, now_ns: int, clock_rate: int) -> float | None:
        """Read the peer's compound packet (``RtpError`` if malformed); returns the round trip
        it measured, if any."""
        rtt = None
        for rep in parse_rtcp(data).reports:
            if rep.ssrc == self.ssrc:  # our own report looped back
                continue
            if rep.sender_info is not None:
                self.peer_sr = (ntp_middle(rep.sender_info.ntp_timestamp), now_ns)
            for b in rep.blocks:
                if b.ssrc != self.ssrc:
                    continue
                self.far_end = FarEnd(b.loss_fraction, b.cumulative_lost, b.jitter_ms(clock_rate))
                self.most_lost = max(self.most_lost, b.cumulative_lost)
                measured = self._round_trip(b.lsr, b.dlsr, now_ns)
                if measured is not None:
                    rtt = self.rtt_s = measured
        return rtt

    def _round_trip(self, lsr: int, dlsr: int, now_ns: int) -> float | None:
        """§6.4.1's arrival − LSR − DLSR, with "LSR" read as when we sent that SR (monotonic)."""
        sent_ns = self._sent_srs.get(lsr) if lsr else None
        if sent_ns is None:
            return None
        elapsed = dlsr_units((now_ns - sent_ns) / 1e9)  # since our SR, in the LSR's unit (1/65536 s)
        return rtt_seconds((lsr + elapsed) & 0xFFFFFFFF, lsr, dlsr)

    def stats(self) -> dict:
        """The far end's view, for the call's stats: absent until it reported (a PBX that
        sends no RTCP leaves these out)."""
        out: dict = {}
        if self.far_end is not None:
            f = self.far_end
            out.update(remote_loss=round(f.fraction_lost, 4), remote_lost=self.most_lost,
                       remote_jitter_ms=round(f.jitter_ms, 2))
        if self.rtt_s is not None:
            out["rtt_ms"] = round(self.rtt_s * 1000, 2)
        return out
