"""SDP (RFC 8866, formerly 4566) and RFC 3264 offer/answer for one audio stream.

The remote SDP comes from an untrusted peer inside a SIP body, so ``parse`` is strict about
structure, bounded in size, and raises ``SdpError`` (never anything else) for bad input; the
message names the problem and the line. Negotiation is deliberately narrow: the first enabled
audio stream over plain RTP (RTP/AVP or RTP/AVPF; no SRTP), the codecs below, and RFC 4733
telephone-events for DTMF.

Hold (RFC 3264 §8.4): an offer with ``c=0.0.0.0`` (the RFC 2543 style still sent by old
phones and some PBXs) means "send neither RTP nor RTCP to me". We therefore drop the *send*
half of the mirrored direction: sendrecv/sendonly -> we are ``recvonly``, recvonly/inactive ->
``inactive``, and ``on_hold`` is True. ``on_hold`` is also True for a=sendonly and a=inactive
offers (the peer stops sending us real audio).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from typing import Sequence

from .codecs import SUPPORTED, Codec

MAX_SIZE = 16 * 1024  # bytes
MAX_LINES = 200
MAX_MEDIA = 20
MAX_LINE = 1024  # bytes, without the line ending

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
RTP_PROTOS = ("RTP/AVP", "RTP/AVPF")
DEFAULT_PTIME = 20
PTIMES = (10, 20, 30, 40, 50, 60)  # packetisations we will send at if the peer asks
DTMF_EVENTS = "0-16"  # RFC 4733: DTMF digits 0-9 * # A-D and flash
TELEPHONE_EVENT_NAME = "telephone-event"

_MIRROR = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly",
           "inactive": "inactive"}
_NO_SEND = {"sendrecv": "recvonly", "sendonly": "inactive", "recvonly": "recvonly",
            "inactive": "inactive"}  # our direction with the send half dropped
_NUM = re.compile(r"[0-9]+")
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")  # RFC 8866 token
_PROTO = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+(?:/[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+)*")
_RTPMAP = re.compile(r"([0-9]{1,3})[ \t]+([^/\s]+)/([0-9]{1,6})(?:/([0-9]{1,2}))?")
_FMTP = re.compile(r"([0-9]{1,3})[ \t]+(.*)")
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # control characters other than tab
_NULL_ADDRESSES = ("0.0.0.0", "::")


class SdpError(ValueError):
    """Unacceptable SDP. ``line`` is the 1-based line number when the problem has one."""

    def __init__(self, reason: str, line: int | None = None):
        super().__init__(f"line {line}: {reason}" if line else reason)
        self.reason = reason
        self.line = line


class NoCommonCodec(SdpError):
    """Nothing in the offer we can accept (codec or transport): answer 488 Not Acceptable Here."""


@dataclass(frozen=True)
class Negotiated:
    codec: Codec  # payload_type is the one on the wire (the offerer's, if it remapped it)
    dtmf_payload_type: int | None
    remote_address: str
    remote_port: int
    remote_rtcp_port: int
    direction: str  # ours: sendrecv / sendonly / recvonly / inactive
    ptime: int  # ms per packet we send (and advertise)
    on_hold: bool  # the peer has put us on hold


def _values(attrs: list[tuple[str, str | None]], name: str) -> list[str]:
    return [v for n, v in attrs if n.lower() == name and v is not None]


def _ptime(attrs: list[tuple[str, str | None]]) -> int | None:
    for v in _values(attrs, "ptime"):
        if re.fullmatch(r"[0-9]{1,5}(?:\.[0-9]{1,5})?", v.strip()):
            return int(float(v))
    return None


def _direction(attrs: list[tuple[str, str | None]]) -> str | None:
    for n, v in attrs:
        if v is None and n.lower() in DIRECTIONS:
            return n.lower()
    return None


@dataclass
class MediaDescription:
    media: str
    port: int
    proto: str
    formats: list[str]
    connection: str | None = None  # address only; the family comes from its form
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    information: str | None = None
    bandwidths: list[str] = field(default_factory=list)  # raw "AS:64"
    line: int = field(default=0, compare=False, repr=False)  # where the m= was, for errors

    def rtpmap(self) -> dict[int, tuple[str, int, int]]:
        """pt -> (encoding name, clock rate, channels); malformed entries are skipped."""
        out: dict[int, tuple[str, int, int]] = {}
        for v in _values(self.attributes, "rtpmap"):
            m = _RTPMAP.fullmatch(v.strip())
            if m and int(m[1]) <= 127 and int(m[1]) not in out:
                out[int(m[1])] = (m[2], int(m[3]), int(m[4]) if m[4] else 1)
        return out

    def fmtp(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for v in _values(self.attributes, "fmtp"):
            m = _FMTP.fullmatch(v.strip())
            if m and int(m[1]) <= 127 and int(m[1]) not in out:
                out[int(m[1])] = m[2]
        return out

    def direction(self, session: SessionDescription | None = None) -> str:
        """Media-level attribute, else the session-level one, else sendrecv (RFC 3264 §5.1)."""
        return (_direction(self.attributes)
                or (session.direction() if session is not None else "sendrecv"))

    def ptime(self) -> int | None:
        return _ptime(self.attributes)

    def rtcp_port(self) -> int | None:
        """RFC 3605 a=rtcp port, or None when absent or unusable."""
        for v in _values(self.attributes, "rtcp"):
            first = v.split(maxsplit=1)[0] if v.strip() else ""
            if re.fullmatch(r"[0-9]{1,5}", first) and 0 < int(first) <= 65535:
                return int(first)
        return None

    def _lines(self) -> list[str]:
        out = [f"m={self.media} {self.port} {self.proto} {' '.join(self.formats)}"]
        if self.information is not None:
            out.append(f"i={self.information}")
        if self.connection is not None:
            out.append(_c_line(self.connection))
        out += [f"b={b}" for b in self.bandwidths]
        out += [_a_line(n, v) for n, v in self.attributes]
        return out


@dataclass
class SessionDescription:
    username: str
    sess_id: int
    sess_version: int
    nettype: str
    addrtype: str
    address: str
    session_name: str
    connection: str | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)
    information: str | None = None
    bandwidths: list[str] = field(default_factory=list)
    timing: list[str] = field(default_factory=lambda: ["0 0"])  # t= values

    @classmethod
    def parse(cls, text: str | bytes) -> SessionDescription:
        return parse(text)

    def direction(self) -> str:
        return _direction(self.attributes) or "sendrecv"

    def serialize(self) -> str:
        """RFC 8866 §5 field order, CRLF endings (what every SIP peer expects)."""
        out = ["v=0",
               f"o={self.username} {self.sess_id} {self.sess_version} {self.nettype} "
               f"{self.addrtype} {self.address}",
               f"s={self.session_name or ' '}"]
        if self.information is not None:
            out.append(f"i={self.information}")
        if self.connection is not None:
            out.append(_c_line(self.connection))
        out += [f"b={b}" for b in self.bandwidths]
        out += [f"t={t}" for t in (self.timing or ["0 0"])]
        out += [_a_line(n, v) for n, v in self.attributes]
        for md in self.media:
            out += md._lines()
        return "\r\n".join(out) + "\r\n"


def _c_line(address: str) -> str:
    return f"c=IN {'IP6' if ':' in address else 'IP4'} {address}"


def _a_line(name: str, value: str | None) -> str:
    return f"a={name}" if value is None else f"a={name}:{value}"


# -- parsing -------------------------------------------------------------------------------

def _split_lines(text: str | bytes) -> list[tuple[int, str, str]]:
    """Bounded split into (line number, type letter, value); LF or CRLF endings."""
    if isinstance(text, str):
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            raise SdpError("SDP is not valid UTF-8 text") from None
    elif isinstance(text, (bytes, bytearray, memoryview)):
        data = bytes(text)
    else:
        raise SdpError(f"SDP must be str or bytes, not {type(text).__name__}")
    if len(data) > MAX_SIZE:
        raise SdpError(f"SDP too large: {len(data)} bytes > {MAX_SIZE}")
    raw = data.split(b"\n")
    while raw and raw[-1] in (b"", b"\r"):  # the final line ending, and trailing blank lines
        raw.pop()
    if not raw:
        raise SdpError("empty SDP")
    if len(raw) > MAX_LINES:
        raise SdpError(f"too many lines: {len(raw)} > {MAX_LINES}")
    out = []
    for n, b in enumerate(raw, 1):
        b = b[:-1] if b.endswith(b"\r") else b
        if len(b) > MAX_LINE:
            raise SdpError(f"line too long: {len(b)} bytes > {MAX_LINE}", n)
        try:
            s = b.decode("utf-8").rstrip(" \t")  # trailing blanks: a common, harmless bug
        except UnicodeDecodeError:
            raise SdpError("not valid UTF-8", n) from None
        if _CTL.search(s):
            raise SdpError("control character in line", n)
        if len(s) < 2 or s[1] != "=" or not "a" <= s[0] <= "z":
            raise SdpError(f"expected '<letter>=<value>', got {s[:40]!r}", n)
        out.append((n, s[0], s[2:]))
    return out


def _parse_origin(v: str, n: int) -> tuple[str, int, int, str, str, str]:
    p = v.split()
    if len(p) != 6 or not _NUM.fullmatch(p[1]) or not _NUM.fullmatch(p[2]):
        raise SdpError(f"bad o= line {v!r}: expected '<user> <sess-id> <sess-version> "
                       "<nettype> <addrtype> <address>' with numeric id and version", n)
    return p[0], int(p[1]), int(p[2]), p[3], p[4], p[5]


def _parse_connection(v: str, n: int) -> str:
    """Unicast IP literals only: we do not resolve names or join multicast groups."""
    p = v.split()
    try:
        if len(p) != 3 or p[0] != "IN" or p[1] not in ("IP4", "IP6"):
            raise ValueError
        (ipaddress.IPv4Address if p[1] == "IP4" else ipaddress.IPv6Address)(p[2])
    except ValueError:
        raise SdpError(f"bad c= line {v!r}: expected 'IN IP4 <address>' or "
                       "'IN IP6 <address>'", n) from None
    return p[2]


def _parse_media(v: str, n: int) -> MediaDescription:
    p = v.split()
    if len(p) == 3:
        raise SdpError(f"m= line {v!r} has no formats", n)
    if len(p) < 3:
        raise SdpError(f"bad m= line {v!r}: expected '<media> <port> <proto> <fmt> ...'", n)
    if not re.fullmatch(r"[0-9]{1,5}", p[1]) or int(p[1]) > 65535:
        raise SdpError(f"bad port {p[1]!r} in m= line (must be an integer 0..65535)", n)
    if not _TOKEN.fullmatch(p[0]) or not _PROTO.fullmatch(p[2]):
        raise SdpError(f"bad m= line {v!r}: bad media or proto", n)
    bad = [f for f in p[3:] if not _TOKEN.fullmatch(f)]
    if bad:
        raise SdpError(f"bad format {bad[0]!r} in m= line", n)
    return MediaDescription(p[0], int(p[1]), p[2], p[3:], line=n)


def _parse_attribute(v: str, n: int) -> tuple[str, str | None]:
    name, sep, value = v.partition(":")
    if not _TOKEN.fullmatch(name):
        raise SdpError(f"bad attribute name in a={v[:40]!r}", n)
    return name, (value if sep else None)


def _parse_timing(v: str, n: int) -> str:
    p = v.split()
    if len(p) != 2 or not all(_NUM.fullmatch(x) for x in p):
        raise SdpError(f"bad t= line {v!r}: expected '<start> <stop>'", n)
    return v


_ONCE = ("o", "s", "i", "c")  # at most one per level (v is checked separately)


def parse(text: str | bytes) -> SessionDescription:
    """Parse an SDP body; raises SdpError, never anything else, for unacceptable input."""
    lines = _split_lines(text)
    if lines[0][1:] != ("v", "0"):
        raise SdpError("SDP must start with v=0", 1)
    sess: dict = {"attributes": [], "bandwidths": [], "timing": []}
    seen: set[str] = set()
    media: list[MediaDescription] = []
    cur: MediaDescription | None = None
    for n, t, v in lines[1:]:
        if t == "m":
            if len(media) == MAX_MEDIA:
                raise SdpError(f"too many media sections (more than {MAX_MEDIA})", n)
            cur = _parse_media(v, n)
            media.append(cur)
            seen = {k for k in seen if k.startswith("session-")}
            continue
        if t in _ONCE:
            key = ("session-" if cur is None else "media-") + t
            if key in seen:
                raise SdpError(f"duplicate {t}= line", n)
            seen.add(key)
        if t == "v":
            raise SdpError("duplicate v= line", n)
        if cur is not None:
            if t in "ost":
                raise SdpError(f"{t}= line not allowed inside a media section", n)
            target = vars(cur)
        else:
            target = sess
        if t == "o":
            (sess["username"], sess["sess_id"], sess["sess_version"], sess["nettype"],
             sess["addrtype"], sess["address"]) = _parse_origin(v, n)
        elif t == "s":
            sess["session_name"] = v
        elif t == "t":
            sess["timing"].append(_parse_timing(v, n))
        elif t == "i":
            target["information"] = v
        elif t == "c":
            target["connection"] = _parse_connection(v, n)
        elif t == "b":
            target["bandwidths"].append(v)
        elif t == "a":
            target["attributes"].append(_parse_attribute(v, n))
        # anything else (k=, r=, z=, e=, p=, u=, unknown letters) is ignored, as RFC 8866 allows
    for t in ("o", "s"):
        if f"session-{t}" not in seen:
            raise SdpError(f"missing {t}= line")
    sess["timing"] = sess["timing"] or ["0 0"]
    return SessionDescription(media=media, **sess)


# -- offer / answer ------------------------------------------------------------------------

def _audio_index(offer: SessionDescription) -> int:
    """The stream we use: the first audio m-line with port != 0 and plain RTP (RFC 3264 §6)."""
    unsupported: MediaDescription | None = None
    for i, md in enumerate(offer.media):
        if md.media.lower() != "audio" or md.port == 0:
            continue
        if md.proto.upper() in RTP_PROTOS:
            return i
        unsupported = unsupported or md
    if unsupported is not None:
        raise NoCommonCodec(f"audio transport {unsupported.proto} not supported "
                            f"(only {' or '.join(RTP_PROTOS)})", unsupported.line)
    raise NoCommonCodec("offer has no enabled audio stream")


def _match(pt: int, mapped: tuple[str, int, int] | None,
           supported: Sequence[Codec]) -> Codec | None:
    for c in supported:
        if mapped is not None:  # an rtpmap decides, static pt or not
            if mapped[0].lower() == c.name.lower() and mapped[1] == c.clock_rate and mapped[2] == 1:
                return replace(c, payload_type=pt)
        elif pt == c.payload_type and pt < 96:
            return c
    return None


def negotiate(offer: SessionDescription, supported: Sequence[Codec] = SUPPORTED) -> Negotiated:
    """Pick the first codec in the *offerer's* order that we support (RFC 3264 §6.1 lets the
    answerer choose; PBXs expect their order honoured), plus telephone-event/8000 if offered."""
    md = offer.media[_audio_index(offer)]
    address = md.connection or offer.connection
    if address is None:
        raise SdpError("audio stream has no connection address (no c= at session or media "
                       "level)", md.line)
    rtpmap = md.rtpmap()
    codec: Codec | None = None
    dtmf: int | None = None
    for fmt in md.formats:
        if not re.fullmatch(r"[0-9]{1,3}", fmt) or int(fmt) > 127:
            continue
        pt = int(fmt)
        mapped = rtpmap.get(pt)
        if mapped and mapped[0].lower() == TELEPHONE_EVENT_NAME and mapped[1] == 8000:
            dtmf = pt if dtmf is None else dtmf
        elif codec is None:
            codec = _match(pt, mapped, supported)
    if codec is None:
        raise NoCommonCodec(f"no common codec: offered {' '.join(md.formats)}, we support "
                            f"{', '.join(c.name for c in supported)}", md.line)
    offered = md.direction(offer)
    null = address in _NULL_ADDRESSES  # RFC 2543 hold: send nothing, not even RTCP
    ptime = md.ptime() or _ptime(offer.attributes)
    ours = _MIRROR[offered]
    return Negotiated(
        codec=codec,
        dtmf_payload_type=dtmf,
        remote_address=address,
        remote_port=md.port,
        remote_rtcp_port=md.rtcp_port() or (md.port + 1 if md.port < 65535 else md.port),
        direction=_NO_SEND[ours] if null else ours,
        ptime=ptime if ptime in PTIMES else DEFAULT_PTIME,
        on_hold=null or offered in ("sendonly", "inactive"),
    )


def _audio_media(port: int, proto: str, codecs: Sequence[Codec], dtmf: int | None,
                 ptime: int, direction: str) -> MediaDescription:
    attrs: list[tuple[str, str | None]] = [
        ("rtpmap", f"{c.payload_type} {c.name}/{c.clock_rate}") for c in codecs]
    fmts = [str(c.payload_type) for c in codecs]
    if dtmf is not None:
        fmts.append(str(dtmf))
        attrs += [("rtpmap", f"{dtmf} {TELEPHONE_EVENT_NAME}/8000"),
                  ("fmtp", f"{dtmf} {DTMF_EVENTS}")]
    attrs += [("ptime", str(ptime)), (direction, None)]
    return MediaDescription("audio", port, proto, fmts, attributes=attrs)


def _session(username: str, session_id: int, session_version: int, local_address: str,
             local_port: int, media: list[MediaDescription]) -> SessionDescription:
    try:
        family = ipaddress.ip_address(local_address).version
    except ValueError:
        raise ValueError(f"local_address must be an IP literal, not {local_address!r}") from None
    if not 0 < local_port <= 65535:
        raise ValueError(f"local_port {local_port} out of range")
    if not _TOKEN.fullmatch(username) or session_id < 0 or session_version < 0:
        raise ValueError("bad username, session_id or session_version")
    return SessionDescription(username, session_id, session_version, "IN", f"IP{family}",
                              local_address, "-", connection=local_address, media=media)


def answer(offer: SessionDescription, neg: Negotiated, *, local_address: str, local_port: int,
           session_id: int, session_version: int = 1, username: str = "appliance"
           ) -> SessionDescription:
    """RFC 3264 §6: one m-line per offered one; the chosen audio stream carries only our codec
    and telephone-event (same pt as offered); every other stream is rejected with port 0.
    No a=rtcp: RTCP is on local_port + 1, the default (RFC 3605)."""
    idx = _audio_index(offer)
    media = []
    for i, md in enumerate(offer.media):
        if i == idx:
            media.append(_audio_media(local_port, md.proto, [neg.codec], neg.dtmf_payload_type,
                                      neg.ptime, neg.direction))
        else:
            media.append(MediaDescription(md.media, 0, md.proto, list(md.formats)))
    return _session(username, session_id, session_version, local_address, local_port, media)


def offer(*, local_address: str, local_port: int, session_id: int, session_version: int,
          codecs: Sequence[Codec] = SUPPORTED, dtmf_payload_type: int = 101,
          direction: str = "sendrecv", username: str = "appliance") -> SessionDescription:
    """Our offer, for outgoing calls and re-INVITEs (hold: direction="sendonly")."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
    if not codecs:
        raise ValueError("at least one codec is required")
    if not 96 <= dtmf_payload_type <= 127 or dtmf_payload_type in {c.payload_type for c in codecs}:
        raise ValueError(f"dtmf_payload_type {dtmf_payload_type} must be a free dynamic pt "
                         "(96..127)")
    media = [_audio_media(local_port, "RTP/AVP", codecs, dtmf_payload_type, DEFAULT_PTIME,
                          direction)]
    return _session(username, session_id, session_version, local_address, local_port, media)


__all__ = [
    "SdpError", "NoCommonCodec",
    "TELEPHONE_EVENT_NAME", "MediaDescription", "SessionDescription", "Negotiated", "parse",
    "negotiate", "answer", "offer",
]
