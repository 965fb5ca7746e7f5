"""RTP header, RFC 4733 DTMF and RTCP: known packets, edge cases and hypothesis fuzzing."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.telephony.media import rtp
from appliance.telephony.media.rtp import (
    DtmfEvent,
    DtmfReceiver,
    ReportBlock,
    RtpError,
    RtpPacket,
    SenderInfo,
    build_rtcp,
    dtmf_packets,
    dtmf_payload,
    parse_dtmf,
    parse_rtcp,
)


def test_serialize_parse_basic():
    p = RtpPacket(0, 65535, 0xFFFFFFFF, 0xDEADBEEF, b"\xff" * 160, marker=True)
    data = p.serialize()
    assert data[:12] == bytes.fromhex("8080ffffffffffffdeadbeef")
    assert rtp.parse(data) == p
    assert RtpPacket.parse(data) == p


def test_csrc_and_extension_round_trip():
    ext = struct.pack("!HH", 0xBEDE, 2) + b"\x10\xaa\x00\x00" + b"\x21\xbb\xcc\x00"
    p = RtpPacket(111, 7, 1234, 42, b"payload", csrcs=(1, 2, 3), extension=ext)
    data = p.serialize()
    assert data[0] == 0x80 | 0x10 | 3
    assert rtp.parse(data) == p


def test_padding_removed_and_validated():
    body = RtpPacket(8, 1, 2, 3, b"abc").serialize()
    padded = bytes([body[0] | 0x20]) + body[1:] + b"\0\0\0\x04"
    assert rtp.parse(padded).payload == b"abc"
    bad = bytes([body[0] | 0x20]) + body[1:] + b"\0\0\0\x20"  # padding longer than payload
    with pytest.raises(RtpError):
        rtp.parse(bad)
    zero = bytes([body[0] | 0x20]) + body[1:] + b"\0"
    with pytest.raises(RtpError):
        rtp.parse(zero)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\x00" + b"\0" * 9,  # 11 bytes
        b"\x40" + b"\0" * 11,  # version 1
        b"\x83" + b"\0" * 11 + b"\0" * 8,  # CC=3 but only 2 CSRCs
        b"\x90" + b"\0" * 11 + b"\xbe\xde\x00\x02" + b"\0" * 4,  # extension says 8, has 4
        b"\x90" + b"\0" * 11 + b"\xbe",  # extension header cut
    ],
)
def test_malformed(data):
    with pytest.raises(RtpError):
        rtp.parse(data)


def test_serialize_rejects_out_of_range():
    with pytest.raises(RtpError):
        RtpPacket(128, 0, 0, 0, b"").serialize()
    with pytest.raises(RtpError):
        RtpPacket(0, 65536, 0, 0, b"").serialize()
    with pytest.raises(RtpError):
        RtpPacket(0, 0, 0, 0, b"", extension=b"\0\0\0\x05").serialize()
    with pytest.raises(RtpError):
        RtpPacket(0, 0, 0, 0, b"", csrcs=tuple(range(16))).serialize()


def test_is_rtcp_demux():
    assert rtp.is_rtcp(build_rtcp(1, "x"))
    assert not rtp.is_rtcp(RtpPacket(0, 1, 2, 3, b"").serialize())
    assert not rtp.is_rtcp(RtpPacket(0, 1, 2, 3, b"", marker=True).serialize())


# ------------------------------------------------------------------ DTMF


def test_dtmf_payload_known_bytes():
    # RFC 4733 figure: digit 9, end, volume 10, duration 1280
    assert dtmf_payload(9, True, 10, 1280) == bytes([9, 0x8A, 0x05, 0x00])
    ev = parse_dtmf(bytes([9, 0x8A, 0x05, 0x00]))
    assert ev == DtmfEvent(9, True, 10, 1280)
    assert ev.digit == "9"
    assert parse_dtmf(bytes([11, 0x3F, 0, 0])).digit == "#"
    assert parse_dtmf(bytes([16, 0, 0, 0])).digit is None  # flash


def test_dtmf_short_payload():
    with pytest.raises(RtpError):
        parse_dtmf(b"\x01\x02\x03")
    with pytest.raises(ValueError):
        dtmf_payload(1, False, 64, 0)


def test_dtmf_packets_shape():
    pkts = list(dtmf_packets("5", duration_ms=160))
    events = [parse_dtmf(p) for p, _ in pkts]
    assert [m for _, m in pkts] == [True] + [False] * (len(pkts) - 1)
    updates = [e for e in events if not e.end]
    ends = [e for e in events if e.end]
    assert [e.duration for e in updates] == [160 * k for k in range(1, 8)]
    assert len(ends) == 3 and all(e.duration == 1280 and e.event == 5 for e in ends)
    assert all(e.volume == 10 for e in events)
    with pytest.raises(ValueError):
        list(dtmf_packets("x"))
    with pytest.raises(ValueError):
        list(dtmf_packets("1", duration_ms=10_000))


def _stream(digit, ts, duration_ms=160):
    return [(ts, parse_dtmf(p)) for p, _ in dtmf_packets(digit, duration_ms)]


def test_receiver_reports_once_with_redundant_ends():
    rx = DtmfReceiver()
    got = [r for ts, ev in _stream("7", 1000) + _stream("#", 5000, 100) for r in [rx.feed(ts, ev)] if r]
    assert got == [("7", 160), ("#", 100)]


def test_receiver_lost_start_and_updates():
    rx = DtmfReceiver()
    stream = _stream("3", 800)
    got = [rx.feed(ts, ev) for ts, ev in stream[-2:]]  # only the last two end packets
    assert got == [("3", 160), None]


def test_receiver_all_ends_lost_then_next_event():
    rx = DtmfReceiver()
    first = [x for x in _stream("1", 100) if not x[1].end]
    second = _stream("2", 3000)
    got = [r for ts, ev in first + second for r in [rx.feed(ts, ev)] if r]
    assert got == [("1", 140), ("2", 160)]  # 140: last update seen was 7 packets × 20 ms


def test_receiver_all_ends_lost_new_event_only_end_packets():
    rx = DtmfReceiver()
    first = [x for x in _stream("1", 100) if not x[1].end]
    second = [x for x in _stream("2", 3000) if x[1].end]
    got = [r for ts, ev in first + second for r in [rx.feed(ts, ev)] if r]
    assert got == [("1", 140), ("2", 160)]


def test_receiver_flush_and_retransmit_ignored():
    rx = DtmfReceiver()
    stream = _stream("A", 10)
    for ts, ev in stream[:3]:
        assert rx.feed(ts, ev) is None
    assert rx.flush() == ("A", 60)
    assert rx.flush() is None
    assert all(rx.feed(ts, ev) is None for ts, ev in stream)  # late end packets: already reported


def test_receiver_timestamp_wrap():
    rx = DtmfReceiver()
    got = [r for ts, ev in _stream("0", 0xFFFFFF00) + _stream("9", 0x100) for r in [rx.feed(ts, ev)] if r]
    assert got == [("0", 160), ("9", 160)]


# ------------------------------------------------------------------ RTCP


def test_rtcp_rr_round_trip():
    blk = ReportBlock(0x1234, 64, 17, 0x1FFFF, 80, 0xAABBCCDD, 65536)
    data = build_rtcp(0xCAFE, "sipd@box", [blk])
    assert len(data) % 4 == 0
    c = parse_rtcp(data)
    assert len(c.reports) == 1
    r = c.reports[0]
    assert r.ssrc == 0xCAFE and r.sender_info is None
    assert r.blocks == (blk,)
    assert r.blocks[0].loss_fraction == 0.25
    assert r.blocks[0].jitter_ms(8000) == 10.0
    assert c.cnames == {0xCAFE: "sipd@box"}


def test_rtcp_sr_negative_lost_and_bye():
    si = SenderInfo(rtp.ntp_timestamp(1_700_000_000.5), 160000, 1000, 160000)
    blk = ReportBlock(9, 0, -3, 100, 0)
    data = build_rtcp(7, "a", [blk], sender_info=si, bye=True)
    c = parse_rtcp(data)
    assert c.reports[0].sender_info == si
    assert c.reports[0].blocks[0].cumulative_lost == -3
    assert c.bye == (7,)
    assert si.ntp_timestamp >> 32 == 1_700_000_000 + 2208988800
    assert si.ntp_timestamp & 0xFFFFFFFF == 1 << 31


@pytest.mark.parametrize("cname", ["", "a", "ab", "abc", "abcd", "x" * 300])
def test_rtcp_sdes_padding(cname):
    c = parse_rtcp(build_rtcp(5, cname))
    assert c.cnames[5] == cname[:255]


def test_rtcp_unknown_packet_types_skipped():
    app = bytes([0x80, 204, 0, 2]) + b"\0\0\0\1" + b"name"
    data = app + build_rtcp(3, "c", [ReportBlock(1, 2, 3, 4, 5)])
    c = parse_rtcp(data)
    assert c.reports[0].blocks[0].jitter == 5


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\xc9\x00",  # short
        b"\x40\xc9\x00\x01\0\0\0\0",  # version 1
        b"\x81\xc9\x00\x01\0\0\0\0",  # RR says 1 block, has none
        b"\x80\xc9\x00\x05\0\0\0\0",  # length beyond datagram
        b"\x80\xc9\x00\x01\0\0\0\0\x00",  # trailing byte
        b"\x81\xca\x00\x02\0\0\0\1\x01\x09ab",  # SDES item beyond packet
        b"\xa0\xc9\x00\x01\0\0\0\x09",  # padding count 9 > body
    ],
)
def test_rtcp_malformed(data):
    with pytest.raises(RtpError):
        parse_rtcp(data)


def test_rtcp_too_many_blocks():
    with pytest.raises(ValueError):
        build_rtcp(1, "x", [ReportBlock(i, 0, 0, 0, 0) for i in range(32)])


# ------------------------------------------------------------------ fuzz

FUZZ = settings(max_examples=1500, deadline=None)


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_rtp_parse(data):
    try:
        p = rtp.parse(data)
    except RtpError:
        return
    # Whatever parses re-serializes to a packet that parses the same (padding aside).
    assert rtp.parse(p.serialize()) == p


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_rtp_parse_valid_prefix(data):
    """Bytes behind a plausible header reach the CSRC/extension/padding paths."""
    for first in (0x80, 0x90, 0xA0, 0xB5, 0x8F):
        try:
            rtp.parse(bytes([first]) + data)
        except RtpError:
            pass


@FUZZ
@given(st.binary(max_size=16))
def test_fuzz_parse_dtmf(data):
    try:
        ev = parse_dtmf(data)
    except RtpError:
        return
    assert parse_dtmf(dtmf_payload(ev.event, ev.end, ev.volume, ev.duration)) == ev


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_rtcp_parse(data):
    for head in (b"", b"\x80\xc8", b"\x81\xc9", b"\x81\xca", b"\x82\xcb", b"\xa0\xc9"):
        try:
            parse_rtcp(head + data)
        except RtpError:
            pass


packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=64),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension=st.one_of(
        st.none(),
        st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=12).map(lambda b: b + b"\0" * (-len(b) % 4))).map(
            lambda t: struct.pack("!HH", t[0], len(t[1]) // 4) + t[1]
        ),
    ),
)


@FUZZ
@given(packets)
def test_round_trip_valid_packets(p):
    assert rtp.parse(p.serialize()) == p


blocks = st.builds(
    ReportBlock,
    ssrc=st.integers(0, 0xFFFFFFFF),
    fraction_lost=st.integers(0, 255),
    cumulative_lost=st.integers(-0x800000, 0x7FFFFF),
    highest_seq=st.integers(0, 0xFFFFFFFF),
    jitter=st.integers(0, 0xFFFFFFFF),
    lsr=st.integers(0, 0xFFFFFFFF),
    dlsr=st.integers(0, 0xFFFFFFFF),
)


@FUZZ
@given(
    st.integers(0, 0xFFFFFFFF),
    st.text(max_size=40),
    st.lists(blocks, max_size=31),
    st.one_of(
        st.none(),
        st.builds(
            SenderInfo,
            st.integers(0, 2**64 - 1),
            st.integers(0, 2**32 - 1),
            st.integers(0, 2**32 - 1),
            st.integers(0, 2**32 - 1),
        ),
    ),
    st.booleans(),
)
def test_round_trip_rtcp(ssrc, cname, blks, si, bye):
    c = parse_rtcp(build_rtcp(ssrc, cname, blks, sender_info=si, bye=bye))
    assert c.reports[0].ssrc == ssrc
    assert c.reports[0].blocks == tuple(blks)
    assert c.reports[0].sender_info == si
    assert c.bye == ((ssrc,) if bye else ())
    expected = cname.encode()[:255].decode("utf-8", "replace")
    assert c.cnames[ssrc] == expected


@FUZZ
@given(st.sampled_from(list(rtp.EVENT_DIGITS)), st.integers(20, 8000))
def test_dtmf_send_receive_round_trip(digit, ms):
    rx = DtmfReceiver()
    got = [r for p, _ in dtmf_packets(digit, ms) for r in [rx.feed(1234, parse_dtmf(p))] if r]
    assert got == [(digit, ms * 8 // 8)]
