"""RTP (RFC 3550) packets, RFC 4733 telephone-events (DTMF) and minimal RTCP SR/RR.

Everything read from the network goes through parsers that either return a value or raise
``RtpError`` (a ``ValueError``): a hostile or truncated datagram is dropped by the caller,
it never becomes an IndexError deep inside a call. Parsers are fuzzed with hypothesis.

The common RTP case (no CSRCs, no header extension) is one ``struct`` call each way, because
at 100+ calls this runs 5000+ times a second in each direction.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from typing import Iterator

RTP_VERSION = 2
_HDR = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence, timestamp, SSRC
_U16 = struct.Struct("!H")


class RtpError(ValueError):
    """A datagram that is not a valid RTP/RTCP/telephone-event packet."""


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet. ``extension`` is the raw header-extension block *including* its 4-byte
    profile/length word (so it round-trips byte for byte); padding is stripped on parse and
    never added on serialize."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    csrcs: tuple = ()
    extension: bytes | None = None

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        return parse(data)

    def serialize(self) -> bytes:
        try:
            if not self.csrcs and self.extension is None:  # fast path
                return (
                    _HDR.pack(
                        0x80,
                        (0x80 if self.marker else 0) | _check_pt(self.payload_type),
                        self.sequence,
                        self.timestamp,
                        self.ssrc,
                    )
                    + self.payload
                )
            cc = len(self.csrcs)
            if cc > 15:
                raise RtpError("more than 15 CSRCs")
            b0 = 0x80 | cc
            ext = b""
            if self.extension is not None:
                ext = bytes(self.extension)
                if len(ext) < 4 or len(ext) % 4 or _U16.unpack_from(ext, 2)[0] != len(ext) // 4 - 1:
                    raise RtpError("extension block must be 4 + 4*length bytes")
                b0 |= 0x10
            head = _HDR.pack(
                b0,
                (0x80 if self.marker else 0) | _check_pt(self.payload_type),
                self.sequence,
                self.timestamp,
                self.ssrc,
            )
            return head + struct.pack(f"!{cc}I", *self.csrcs) + ext + self.payload
        except struct.error as exc:
            raise RtpError(f"field out of range: {exc}") from None


def _check_pt(pt: int) -> int:
    if not 0 <= pt <= 127:
        raise RtpError(f"payload type {pt} out of range")
    return pt


def parse(data: bytes) -> RtpPacket:
    """Parse one RTP datagram (RFC 3550 §5.1), strictly bounds-checked."""
    n = len(data)
    if n < 12:
        raise RtpError("shorter than the 12-byte RTP header")
    b0, b1, seq, ts, ssrc = _HDR.unpack_from(data)
    if b0 >> 6 != RTP_VERSION:
        raise RtpError(f"RTP version {b0 >> 6}")
    off = 12
    csrcs: tuple = ()
    cc = b0 & 0x0F
    if cc:
        off += 4 * cc
        if n < off:
            raise RtpError("truncated CSRC list")
        csrcs = struct.unpack_from(f"!{cc}I", data, 12)
    extension = None
    if b0 & 0x10:
        if n < off + 4:
            raise RtpError("truncated header extension")
        end = off + 4 + 4 * _U16.unpack_from(data, off + 2)[0]
        if n < end:
            raise RtpError("header extension longer than the packet")
        extension = bytes(data[off:end])
        off = end
    end = n
    if b0 & 0x20:
        pad = data[-1]
        if pad == 0 or off + pad > n:
            raise RtpError(f"bad padding length {pad}")
        end = n - pad
    return RtpPacket(b1 & 0x7F, seq, ts, ssrc, bytes(data[off:end]), bool(b1 & 0x80), csrcs, extension)


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 demux for rtcp-mux: RTCP packet types 192-223 sit where RTP has M+PT 64-95."""
    return len(data) >= 2 and 192 <= data[1] <= 223


# --------------------------------------------------------------------------- RFC 4733 DTMF

EVENT_DIGITS = "0123456789*#ABCD"  # telephone-event codes 0-15
_DTMF = struct.Struct("!BBH")


@dataclass(slots=True)
class DtmfEvent:
    event: int  # 0-255; 0-15 are the DTMF digits
    end: bool
    volume: int  # 0-63, in -dBm0
    duration: int  # RTP clock ticks since the event's timestamp

    @property
    def digit(self) -> str | None:
        return EVENT_DIGITS[self.event] if self.event < 16 else None


def parse_dtmf(payload: bytes) -> DtmfEvent:
    """First (normally only) event of a telephone-event payload (RFC 4733 §2.3)."""
    if len(payload) < 4:
        raise RtpError("telephone-event payload shorter than 4 bytes")
    event, flags, duration = _DTMF.unpack_from(payload)
    return DtmfEvent(event, bool(flags & 0x80), flags & 0x3F, duration)


def dtmf_payload(event: int, end: bool, volume: int, duration: int) -> bytes:
    if not (0 <= event <= 255 and 0 <= volume <= 63 and 0 <= duration <= 0xFFFF):
        raise ValueError("telephone-event field out of range")
    return _DTMF.pack(event, (0x80 if end else 0) | volume, duration)


def dtmf_packets(
    digit: str, duration_ms: int = 160, volume: int = 10, clock_rate: int = 8000, packet_ms: int = 20
) -> Iterator[tuple[bytes, bool]]:
    """Payloads to send one digit, as ``(payload, marker)``, one per ``packet_ms`` tick.

    All share the RTP timestamp of the event start (the caller stamps them, with consecutive
    sequence numbers): the first carries the marker bit, updates grow ``duration`` every
    packet, and the end packet is sent three times (RFC 4733 §2.5.1.4) so that one or two
    losses still end the digit.
    """
    event = EVENT_DIGITS.find(digit.upper()) if len(digit) == 1 else -1
    if event < 0:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    step = clock_rate * packet_ms // 1000
    total = clock_rate * duration_ms // 1000
    if total <= 0 or total > 0xFFFF:
        raise ValueError(f"duration {duration_ms} ms out of range")
    ticks = step
    first = True
    while ticks < total:
        yield dtmf_payload(event, False, volume, ticks), first
        first = False
        ticks += step
    end = dtmf_payload(event, True, volume, total)
    for _ in range(3):
        yield end, first
        first = False


class DtmfReceiver:
    """Turns received telephone-event packets into one notification per key press.

    Events are keyed by their RTP timestamp (fixed for the whole event). A digit is reported
    when its first end packet arrives; the redundant end packets and retransmits are then
    ignored. Lost start/update packets do not matter. If all end packets are lost, the digit
    is reported when the next event starts, or by ``flush()`` (call it on hang-up or after
    a quiet spell).
    """

    def __init__(self, clock_rate: int = 8000, remember: int = 16) -> None:
        self.clock_rate = clock_rate
        self._remember = remember
        self._done: dict[int, None] = {}  # recently reported timestamps, insertion-ordered
        self._open: tuple[int, DtmfEvent] | None = None  # event started, not yet ended

    def feed(self, timestamp: int, ev: DtmfEvent) -> tuple[str, int] | None:
        """Returns ``(digit, duration_ms)`` once per event, else None."""
        if timestamp in self._done:
            return None
        if self._open is not None and self._open[0] != timestamp:
            # A new event began while the previous one never saw its end: report that one
            # now. If this packet is itself an end packet, its redundant copies report it.
            stale = self._finish(*self._open)
            self._open = (timestamp, ev) if not ev.end else None
            return stale
        if not ev.end:
            self._open = (timestamp, ev)
            return None
        self._open = None
        return self._finish(timestamp, ev)

    def flush(self) -> tuple[str, int] | None:
        """Report an event whose end packets never came (hang-up, timeout)."""
        if self._open is None:
            return None
        ts, ev = self._open
        self._open = None
        return self._finish(ts, ev)

    def _finish(self, timestamp: int, ev: DtmfEvent) -> tuple[str, int] | None:
        self._done[timestamp] = None
        if len(self._done) > self._remember:
            del self._done[next(iter(self._done))]
        digit = ev.digit
        if digit is None:  # flash-hook and other non-DTMF events: not a key press
            return None
        return digit, ev.duration * 1000 // self.clock_rate


# --------------------------------------------------------------------------- RTCP (§6.4)

RTCP_SR, RTCP_RR, RTCP_SDES, RTCP_BYE = 200, 201, 202, 203
_RTCP_HDR = struct.Struct("!BBH")
_BLOCK = struct.Struct("!IIIIII")  # ssrc, fraction<<24|cum_lost, ext seq, jitter, lsr, dlsr
_SENDER = struct.Struct("!IIIII")  # ntp msw, ntp lsw, rtp ts, packet count, octet count
_NTP_EPOCH_OFFSET = 2208988800  # 1900-01-01 → 1970-01-01


@dataclass(slots=True)
class ReportBlock:
    ssrc: int  # the source this block reports on
    fraction_lost: int  # 0-255: lost/expected since the previous report, × 256
    cumulative_lost: int  # signed 24-bit (duplicates can make it negative)
    highest_seq: int  # extended highest sequence number received (cycles << 16 | seq)
    jitter: int  # interarrival jitter, RTP timestamp units
    lsr: int = 0  # middle 32 bits of the last SR's NTP time
    dlsr: int = 0  # delay since that SR, 1/65536 s

    @property
    def loss_fraction(self) -> float:
        return self.fraction_lost / 256.0

    def jitter_ms(self, clock_rate: int = 8000) -> float:
        return self.jitter * 1000.0 / clock_rate


@dataclass(slots=True)
class SenderInfo:
    ntp_timestamp: int  # 64-bit NTP time (see ``ntp_timestamp()``)
    rtp_timestamp: int
    packet_count: int
    octet_count: int


@dataclass(slots=True)
class RtcpReport:
    """One SR or RR from a compound packet (``sender_info`` is None for an RR)."""

    ssrc: int
    blocks: tuple = ()
    sender_info: SenderInfo | None = None


@dataclass(slots=True)
class RtcpCompound:
    reports: list = field(default_factory=list)  # RtcpReport, in packet order
    cnames: dict = field(default_factory=dict)  # ssrc → CNAME from SDES
    bye: tuple = ()  # SSRCs that said BYE


def ntp_timestamp(unix_time: float | None = None) -> int:
    t = time.time() if unix_time is None else unix_time
    return int((t + _NTP_EPOCH_OFFSET) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


def _rtcp_header(count: int, pt: int, body_len: int) -> bytes:
    return _RTCP_HDR.pack(0x80 | count, pt, (body_len + 4) // 4 - 1)


def _pack_block(b: ReportBlock) -> bytes:
    lost = max(-0x800000, min(0x7FFFFF, b.cumulative_lost)) & 0xFFFFFF
    return _BLOCK.pack(
        b.ssrc,
        (max(0, min(255, b.fraction_lost)) << 24) | lost,
        b.highest_seq & 0xFFFFFFFF,
        b.jitter & 0xFFFFFFFF,
        b.lsr & 0xFFFFFFFF,
        b.dlsr & 0xFFFFFFFF,
    )


def build_rtcp(
    ssrc: int,
    cname: str,
    blocks: tuple | list = (),
    sender_info: SenderInfo | None = None,
    bye: bool = False,
) -> bytes:
    """Compound RTCP: SR (if ``sender_info``) or RR, then SDES CNAME, then optionally BYE."""
    if len(blocks) > 31:
        raise ValueError("at most 31 report blocks per SR/RR")
    body = struct.pack("!I", ssrc)
    if sender_info is not None:
        si = sender_info
        body += _SENDER.pack(
            (si.ntp_timestamp >> 32) & 0xFFFFFFFF,
            si.ntp_timestamp & 0xFFFFFFFF,
            si.rtp_timestamp & 0xFFFFFFFF,
            si.packet_count & 0xFFFFFFFF,
            si.octet_count & 0xFFFFFFFF,
        )
    body += b"".join(_pack_block(b) for b in blocks)
    out = _rtcp_header(len(blocks), RTCP_SR if sender_info is not None else RTCP_RR, len(body)) + body

    text = cname.encode()[:255]
    chunk = struct.pack("!IBB", ssrc, 1, len(text)) + text + b"\0"  # item list ends with a 0
    chunk += b"\0" * (-len(chunk) % 4)
    out += _rtcp_header(1, RTCP_SDES, len(chunk)) + chunk
    if bye:
        out += _rtcp_header(1, RTCP_BYE, 4) + struct.pack("!I", ssrc)
    return out


def parse_rtcp(data: bytes) -> RtcpCompound:
    """Parse a compound RTCP packet. Unknown packet types (APP, XR, feedback) are skipped;
    anything that breaks the framing or a report's bounds raises ``RtpError``."""
    n = len(data)
    if n < 4:
        raise RtpError("RTCP shorter than its header")
    out = RtcpCompound()
    off = 0
    while off < n:
        if n - off < 4:
            raise RtpError("trailing bytes after the last RTCP packet")
        b0, pt, length = _RTCP_HDR.unpack_from(data, off)
        if b0 >> 6 != RTP_VERSION:
            raise RtpError(f"RTCP version {b0 >> 6}")
        size = (length + 1) * 4
        if off + size > n:
            raise RtpError("RTCP length beyond the datagram")
        end = off + size
        if b0 & 0x20:
            pad = data[end - 1]
            if pad == 0 or pad > size - 4:
                raise RtpError(f"bad RTCP padding {pad}")
            end -= pad
        count = b0 & 0x1F
        if pt in (RTCP_SR, RTCP_RR):
            pos = off + 8
            sender = None
            if pt == RTCP_SR:
                pos += _SENDER.size
            if end < pos + count * _BLOCK.size:
                raise RtpError("RTCP report blocks beyond the packet")
            (ssrc,) = struct.unpack_from("!I", data, off + 4)
            if pt == RTCP_SR:
                msw, lsw, rts, pc, oc = _SENDER.unpack_from(data, off + 8)
                sender = SenderInfo((msw << 32) | lsw, rts, pc, oc)
            blocks = []
            for _ in range(count):
                bssrc, lost_word, hseq, jit, lsr, dlsr = _BLOCK.unpack_from(data, pos)
                cum = lost_word & 0xFFFFFF
                if cum & 0x800000:
                    cum -= 0x1000000
                blocks.append(ReportBlock(bssrc, lost_word >> 24, cum, hseq, jit, lsr, dlsr))
                pos += _BLOCK.size
            out.reports.append(RtcpReport(ssrc, tuple(blocks), sender))
        elif pt == RTCP_SDES:
            _parse_sdes(data, off + 4, end, count, out.cnames)
        elif pt == RTCP_BYE:
            if end < off + 4 + 4 * count:
                raise RtpError("BYE SSRC list beyond the packet")
            out.bye += struct.unpack_from(f"!{count}I", data, off + 4)
        off += size
    return out


def _parse_sdes(data: bytes, pos: int, end: int, count: int, cnames: dict) -> None:
    for _ in range(count):
        if pos + 4 > end:
            raise RtpError("SDES chunk beyond the packet")
        (ssrc,) = struct.unpack_from("!I", data, pos)
        pos += 4
        while True:
            if pos >= end:
                raise RtpError("SDES item list not terminated")
            item = data[pos]
            if item == 0:
                pos = (pos + 4) & ~3  # the terminating null(s) pad the chunk to 32 bits
                break
            if pos + 2 > end or pos + 2 + data[pos + 1] > end:
                raise RtpError("SDES item beyond the packet")
            ilen = data[pos + 1]
            if item == 1:
                cnames[ssrc] = bytes(data[pos + 2 : pos + 2 + ilen]).decode("utf-8", "replace")
            pos += 2 + ilen
