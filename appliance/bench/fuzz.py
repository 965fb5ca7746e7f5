"""`appliancectl bench fuzz`: every parser that reads a peer's bytes, fed generated input.

Each target is a parser sipd runs on what arrives from the network, the error it is allowed to
raise, and real samples to mutate (random bytes alone rarely get past a first line). Hypothesis
generates the inputs (random bytes, and samples with bytes flipped, cut, duplicated or
delimiters inserted); an input either parses or raises the parser's own error — anything else is
a crash, counted with its first examples, never stopped at. Then a live sipd is sent mutated
SIP datagrams and must still answer its status and take a call. The tests run the same targets
with a few hundred inputs each; the bench with tens of thousands (hypothesis is a test extra).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import Callable

from ..telephony import sdp
from ..telephony.codecs import SUPPORTED
from ..telephony.media import rtp
from ..telephony.sip import digest
from ..telephony.sip.message import SipParseError
from ..telephony.sip.message import parse as parse_sip

_INVITE = (
    "INVITE sip:agent@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-1-0;rport\r\n"
    'Max-Forwards: 70\r\nf: "Alice" <sip:+4930123@127.0.0.1:5080>;tag=abc\r\nTo: <sip:agent@127.0.0.1:5070>\r\n'
    "i: 1-2@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:5080>\r\nSupported: timer, 100rel\r\n"
    "Session-Expires: 1800;refresher=uac\r\nContent-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n")
_RESPONSE = (
    "SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKx;received=10.0.0.5\r\n"
    "From: <sip:a@pbx>;tag=1\r\nTo: <sip:a@pbx>;tag=2\r\nCall-ID: r1@pbx\r\nCSeq: 7 REGISTER\r\n"
    'WWW-Authenticate: Digest realm="pbx", nonce="abc", qop="auth", algorithm=SHA-256\r\nContent-Length: 0\r\n\r\n')
_OFFER = (
    "v=0\r\no=- 1234 1234 IN IP4 192.0.2.10\r\ns=Asterisk\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    "m=audio 18000 RTP/AVP 8 0 9 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    "m=video 0 RTP/AVP 96\r\n")
_CHALLENGE = 'Digest realm="pbx.example.com", nonce="a1b2c3", qop="auth,auth-int", opaque="x", algorithm=MD5, stale=FALSE'
_AUTHORIZATION = ('Digest username="alice", realm="pbx", nonce="abc", uri="sip:agent@127.0.0.1", '
                  'response="6629fae49393a05397450978507c4ef1", algorithm=MD5, cnonce="0a4f113b", qop=auth, nc=00000001')
_RTP = bytes([0x80, 0x00, 0x12, 0x34, 0, 0, 0x03, 0x20, 0xDE, 0xAD, 0xBE, 0xEF]) + bytes(160)
_RTP_EXT = bytes([0x91, 0x08, 0, 1, 0, 0, 0, 160, 0, 0, 0, 1, 0, 0, 0, 2, 0xBE, 0xDE, 0, 1, 0x10, 0xAA, 0, 0]) + bytes(160)
_RTCP = rtp.build_rtcp(0x1234, cname="fuzz@127.0.0.1", sender_info=rtp.SenderInfo(1 << 32, 160, 1, 160),
                       blocks=[rtp.ReportBlock(0x5678, 12, 3, 0x10020, 40, 0x11112222, 655)], bye=True)
_DTMF = rtp.dtmf_payload(5, True, 10, 1280)


@dataclass(frozen=True)
class FuzzTarget:
    name: str
    parse: Callable[[bytes], object]
    error: type[Exception]  # the one exception the parser may raise for bad input
    seeds: tuple[bytes, ...]
    max_size: int = 2048


def _sdp(data: bytes):
    return sdp.negotiate(sdp.parse(data), SUPPORTED)


def _digest(data: bytes):
    text = data.decode("utf-8", "replace")
    try:
        return digest.parse_challenge(text)
    except digest.DigestError:
        return digest.parse_authorization(text)


TARGETS = (
    FuzzTarget("sip", parse_sip, SipParseError, (_INVITE.encode(), _RESPONSE.encode())),
    FuzzTarget("sdp", _sdp, sdp.SdpError, (_OFFER.encode(),)),
    FuzzTarget("digest", _digest, digest.DigestError, (_CHALLENGE.encode(), _AUTHORIZATION.encode()), 600),
    FuzzTarget("rtp", rtp.parse, rtp.RtpError, (_RTP, _RTP_EXT), 400),
    FuzzTarget("rtcp", rtp.parse_rtcp, rtp.RtpError, (_RTCP,), 400),
    FuzzTarget("rfc4733", rtp.parse_dtmf, rtp.RtpError, (_DTMF,), 32),
)
_DELIMITERS = (b":", b"\r\n", b"\n", b";", b",", b"<", b">", b'"', b"=", b"/", b" ", b"\x00", b"\xff", b"\\")


@dataclass
class Outcome:
    target: str
    inputs: int = 0
    parsed: int = 0
    refused: int = 0  # the parser's own error
    crashes: list[str] = field(default_factory=list)  # anything else: "ExceptionType: message <- input"


def strategy(target: FuzzTarget):
    """Random bytes, or one of the target's samples mutated a few times."""
    from hypothesis import strategies as st

    @st.composite
    def mutated(draw) -> bytes:
        raw = bytearray(draw(st.sampled_from(target.seeds)))
        for _ in range(draw(st.integers(1, 6))):
            if not raw:
                break
            pos = draw(st.integers(0, len(raw) - 1))
            match draw(st.sampled_from(("flip", "cut", "dup", "insert", "truncate"))):
                case "flip":
                    raw[pos] = draw(st.integers(0, 255))
                case "cut":
                    del raw[pos:pos + draw(st.integers(1, 40))]
                case "dup":
                    raw[pos:pos] = raw[pos:pos + draw(st.integers(1, 120))]
                case "insert":
                    raw[pos:pos] = draw(st.sampled_from(_DELIMITERS)) * draw(st.integers(1, 3))
                case "truncate":
                    del raw[pos:]
        return bytes(raw[: target.max_size * 2])

    return st.one_of(st.binary(max_size=target.max_size), mutated())


def fuzz(target: FuzzTarget, examples: int, seed: int | None = None) -> Outcome:
    """``examples`` generated inputs through ``target``; crashes are recorded, not raised."""
    from hypothesis import HealthCheck, given, seed as fixed_seed, settings

    out = Outcome(target.name)

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy(target))
    def run(data: bytes) -> None:
        out.inputs += 1
        try:
            target.parse(data)
            out.parsed += 1
        except target.error:
            out.refused += 1
        except Exception as exc:  # the defect this looks for: keep going, keep the first few
            if len(out.crashes) < 5:
                out.crashes.append(f"{type(exc).__name__}: {exc} <- {data[:120]!r}")
            elif len(out.crashes) == 5:
                out.crashes.append("...")

    (fixed_seed(seed)(run) if seed is not None else run)()
    return out


def hammer_sipd(port: int, datagrams: int, rate: float = 5000.0, seed: int = 1) -> int:
    """Mutated SIP datagrams at a live sipd (from a few source addresses), paced at ``rate``;
    returns how many were sent."""
    import random

    rnd = random.Random(seed)
    seeds = TARGETS[0].seeds
    socks = []
    for last in (1, 2, 3):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((f"127.0.0.{last}", 0))
        socks.append(s)
    t0 = time.monotonic()
    try:
        for i in range(datagrams):
            raw = bytearray(rnd.choice(seeds))
            for _ in range(rnd.randint(1, 6)):
                pos = rnd.randrange(len(raw)) if raw else 0
                op = rnd.random()
                if op < 0.4 and raw:
                    raw[pos] = rnd.randrange(256)
                elif op < 0.6:
                    del raw[pos:pos + rnd.randint(1, 40)]
                elif op < 0.8:
                    raw[pos:pos] = rnd.choice(_DELIMITERS)
                else:
                    raw[pos:pos] = raw[pos:pos + rnd.randint(1, 200)]
            socks[i % len(socks)].sendto(bytes(raw[:60000]), ("127.0.0.1", port))
            if i % 100 == 99:
                time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
    finally:
        for s in socks:
            s.close()
    return datagrams


def run(*, examples: int = 20_000, datagrams: int = 20_000, seed: int | None = None) -> dict:
    """Every target with ``examples`` inputs, then ``datagrams`` at a live sipd."""
    import asyncio

    from ..talk.uac import CallFailed, Uac
    from ..telephony.codecs import PCMU
    from .sipdrive import Sipd, make_sandbox

    t0 = time.monotonic()
    outcomes = [fuzz(t, examples, seed) for t in TARGETS]
    parsers_s = time.monotonic() - t0
    sipd = Sipd(make_sandbox(), extra_sip="other_rate = 10000.0\ninvite_rate = 10000.0\n"
                                          "unconfirmed_per_source = 1000\n").start()
    try:
        sent = hammer_sipd(sipd.port, datagrams)
        time.sleep(0.5)
        details = sipd.status(timeout=5).details

        async def call() -> str:
            uac = Uac(f"sip:agent@127.0.0.1:{sipd.port}", user="after-fuzz")
            try:
                await uac.start()
                await uac.invite(40_000, (PCMU,))
                await uac.bye()
                return ""
            except CallFailed as exc:
                return str(exc)
            finally:
                uac.close()

        call_error = asyncio.run(call())
    finally:
        log = sipd.stop()
    return {"bench": "fuzz", "examples_per_target": examples, "parsers_seconds": round(parsers_s, 1),
            "targets": [o.__dict__ for o in outcomes], "inputs": sum(o.inputs for o in outcomes),
            "crashes": sum(len([c for c in o.crashes if c != "..."]) for o in outcomes),
            "sipd": {"datagrams": sent, "malformed": details.get("malformed"), "received": details.get("sip_received"),
                     "alive": True, "call_after": call_error or "ok", "tracebacks": log.count("Traceback")}}


def render(r: dict) -> str:
    lines = [f"{'target':<9} {'inputs':>8} {'parsed':>8} {'refused':>8} {'crashes':>8}"]
    for t in r["targets"]:
        lines.append(f"{t['target']:<9} {t['inputs']:>8} {t['parsed']:>8} {t['refused']:>8} {len(t['crashes']):>8}")
        lines += [f"    {c}" for c in t["crashes"]]
    s = r["sipd"]
    lines.append(f"{r['inputs']} inputs in {r['parsers_seconds']} s, {r['crashes']} crashes; a live sipd took "
                 f"{s['datagrams']} mutated datagrams ({s['malformed']} malformed, {s['tracebacks']} tracebacks) "
                 f"and then a call: {s['call_after']}")
    return "\n".join(lines)
