"""SDP parsing and RFC 3264 offer/answer against the offers real peers send."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from appliance.telephony.codecs import G722, PCMA, PCMU
from appliance.telephony.sdp import (
    MediaDescription, NoCommonCodec, SdpError, SessionDescription,
    answer, negotiate, offer, parse,
)

ASTERISK = (
    "v=0\r\no=- 1234 1234 IN IP4 192.0.2.10\r\ns=Asterisk\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    "m=audio 18000 RTP/AVP 8 0 9 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
    "a=ptime:20\r\na=maxptime:150\r\na=sendrecv\r\n"
)
# SIPp's built-in uac scenario body (LF endings here, to cover them).
SIPP_UAC = (
    "v=0\no=user1 53655765 2353687637 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
    "m=audio 6000 RTP/AVP 0\na=rtpmap:0 PCMU/8000\n"
)
BARESIP = (
    "v=0\r\no=- 1915577870 2107213421 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\n"
    "t=0 0\r\nm=audio 10000 RTP/AVP 96 0 8 101\r\nb=AS:128\r\na=rtpmap:96 opus/48000/2\r\n"
    "a=fmtp:96 stereo=1;sprop-stereo=1\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=rtcp-rsize\r\na=sendrecv\r\n"
    "a=label:1\r\na=ssrc:4014563476 cname:7a8c1f5e\r\n"
)


def sdp(media: str, *, c: str = "c=IN IP4 192.0.2.10\r\n", session_attrs: str = "") -> str:
    return f"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\n{c}t=0 0\r\n{session_attrs}{media}"


# -- parsing -------------------------------------------------------------------------------

def test_parse_asterisk_offer():
    s = parse(ASTERISK)
    assert (s.username, s.sess_id, s.sess_version, s.nettype, s.addrtype, s.address) == (
        "-", 1234, 1234, "IN", "IP4", "192.0.2.10")
    assert s.session_name == "Asterisk" and s.connection == "192.0.2.10"
    [m] = s.media
    assert (m.media, m.port, m.proto) == ("audio", 18000, "RTP/AVP")
    assert m.formats == ["8", "0", "9", "101"]
    assert m.rtpmap() == {8: ("PCMA", 8000, 1), 0: ("PCMU", 8000, 1), 9: ("G722", 8000, 1),
                          101: ("telephone-event", 8000, 1)}
    assert m.fmtp() == {101: "0-16"}
    assert m.ptime() == 20 and m.direction(s) == "sendrecv" and m.rtcp_port() is None
    assert ("maxptime", "150") in m.attributes
    assert SessionDescription.parse(ASTERISK.encode()) == s


def test_serialize_is_byte_exact_for_asterisk_offer():
    assert parse(ASTERISK).serialize() == ASTERISK


def test_unknown_line_types_are_ignored():
    text = ASTERISK.replace("t=0 0\r\n", "t=0 0\r\nz=0 0\r\nx=whatever\r\n") + "y=1\r\n"
    assert parse(text) == parse(ASTERISK)


def test_direction_media_level_overrides_session_level():
    s = parse(sdp("m=audio 4000 RTP/AVP 0\r\na=sendrecv\r\nm=audio 4002 RTP/AVP 0\r\n",
                  session_attrs="a=sendonly\r\n"))
    assert s.media[0].direction(s) == "sendrecv"
    assert s.media[1].direction(s) == "sendonly"
    assert s.media[1].direction() == "sendrecv"


@pytest.mark.parametrize("text", [
    ASTERISK, SIPP_UAC, BARESIP,
    sdp("m=audio 4000 RTP/AVP 0\r\ni=main\r\nc=IN IP6 2001:db8::1\r\nb=AS:64\r\na=rtcp:4001\r\n"
        "m=video 0 RTP/AVP 96\r\n", c="", session_attrs="a=tool:x\r\n").replace(
        "s=-\r\n", "s= \r\ni=call\r\nb=CT:1000\r\n"),
])
def test_round_trip(text):
    s = parse(text)
    assert parse(s.serialize()) == s
    assert parse(s.serialize()).serialize() == s.serialize()


# -- malformed input -----------------------------------------------------------------------

@pytest.mark.parametrize("text, words", [
    ("", ["empty"]),
    (ASTERISK.replace("v=0\r\n", ""), ["line 1", "v=0"]),
    ("o=- 1 1 IN IP4 192.0.2.10\r\nv=0\r\ns=-\r\nt=0 0\r\n", ["line 1", "v=0"]),
    (ASTERISK.replace("v=0", "v=1"), ["v=0"]),
    (ASTERISK.replace("18000", "70000"), ["line 6", "port", "70000"]),
    (ASTERISK.replace("18000", "-1"), ["line 6", "port"]),
    (ASTERISK.replace("18000", "18000/2"), ["port"]),
    (ASTERISK.replace("c=IN IP4 192.0.2.10", "c=IN IP4 999.0.2.10"), ["line 4", "c="]),
    (ASTERISK.replace("c=IN IP4 192.0.2.10", "c=IN IP6 192.0.2.10"), ["line 4", "c="]),
    (ASTERISK.replace("c=IN IP4 192.0.2.10", "c=IN IP4"), ["line 4", "c="]),
    (ASTERISK.replace("c=IN IP4 192.0.2.10", "c=ATM NSAP 47.0091"), ["c="]),
    (ASTERISK.replace("c=IN IP4 192.0.2.10", "c=IN IP4 pbx.example.com"), ["c="]),
    (ASTERISK.replace(" 8 0 9 101", ""), ["line 6", "m=", "no formats"]),
    (ASTERISK.replace("m=audio 18000 RTP/AVP 8 0 9 101", "m=audio"), ["m="]),
    (ASTERISK + "a=x:" + "y" * 17000 + "\r\n", ["too large"]),
    (ASTERISK + "a=x\r\n" * 200, ["too many lines"]),
    (ASTERISK + "a=x:" + "y" * 1100 + "\r\n", ["line 15", "too long"]),
    (ASTERISK + "m=audio 0 RTP/AVP 0\r\n" * 20, ["too many media"]),
    (ASTERISK.replace("s=Asterisk", "s=Aster\x00isk"), ["line 3", "control"]),
    (ASTERISK.replace("t=0 0", "t=0"), ["line 5", "t="]),
    (ASTERISK.replace("t=0 0", "T=0 0"), ["line 5", "<letter>=<value>"]),
    (ASTERISK.replace("t=0 0", "tt=0 0"), ["line 5", "<letter>=<value>"]),
    (ASTERISK.replace("t=0 0\r\n", "t=0 0\r\n\r\n"), ["line 6", "<letter>=<value>"]),
    (ASTERISK.replace("o=- 1234 1234 IN IP4 192.0.2.10\r\n", ""), ["missing o="]),
    (ASTERISK.replace("s=Asterisk\r\n", ""), ["missing s="]),
    (ASTERISK.replace("o=- 1234", "o=- abc"), ["line 2", "o="]),
    (ASTERISK + "o=- 1 1 IN IP4 192.0.2.10\r\n", ["line 15", "not allowed inside a media"]),
    (ASTERISK.replace("s=Asterisk\r\n", "s=Asterisk\r\ns=again\r\n"), ["line 4", "duplicate s="]),
    (ASTERISK + "c=IN IP4 192.0.2.1\r\nc=IN IP4 192.0.2.2\r\n", ["line 16", "duplicate c="]),
    (ASTERISK + "a=\r\n", ["line 15", "attribute"]),
])
def test_malformed_raises_sdp_error_naming_the_problem(text, words):
    with pytest.raises(SdpError) as exc:
        parse(text)
    for w in words:
        assert w in str(exc.value)


def test_non_utf8_bytes():
    with pytest.raises(SdpError, match=r"line 3: not valid UTF-8"):
        parse(ASTERISK.encode().replace(b"s=Asterisk", b"s=Aster\xffisk"))
    with pytest.raises(SdpError, match="UTF-8"):
        parse("v=0\r\ns=\udc80\r\n")  # lone surrogate in a str
    with pytest.raises(SdpError):
        parse(12)  # type: ignore[arg-type]


def test_limits_allow_the_maximum():
    body = ASTERISK + "a=x\r\n" * (200 - ASTERISK.count("\n"))
    assert body.count("\n") == 200 and len(parse(body).media[0].attributes) == 8 + 200 - 14
    assert len(parse(ASTERISK + "m=video 0 RTP/AVP 96\r\n" * 19).media) == 20
    assert parse(ASTERISK + "a=x:" + "y" * 1020 + "\r\n").media[0].attributes[-1][1] == "y" * 1020


# -- negotiation ---------------------------------------------------------------------------

def test_asterisk_offer_takes_offerers_first_codec():
    neg = negotiate(parse(ASTERISK))
    assert neg == negotiate(parse(ASTERISK), (PCMU, PCMA, G722))
    assert neg.codec == PCMA and neg.dtmf_payload_type == 101
    assert (neg.remote_address, neg.remote_port, neg.remote_rtcp_port) == (
        "192.0.2.10", 18000, 18001)
    assert (neg.direction, neg.ptime, neg.on_hold) == ("sendrecv", 20, False)
    assert negotiate(parse(ASTERISK), (PCMU, G722)).codec == PCMU  # only what we support


def test_sipp_uac_offer():
    neg = negotiate(parse(SIPP_UAC))
    assert neg.codec == PCMU and neg.dtmf_payload_type is None
    assert (neg.remote_address, neg.remote_port, neg.remote_rtcp_port) == ("127.0.0.1", 6000, 6001)
    assert neg.direction == "sendrecv" and neg.ptime == 20


def test_baresip_offer_skips_unsupported_codecs():
    neg = negotiate(parse(BARESIP))
    assert neg.codec == PCMU and neg.dtmf_payload_type == 101
    g722_first = BARESIP.replace("96 0 8 101", "96 9 0 8 101")
    assert negotiate(parse(g722_first)).codec == G722


def test_g722_only():
    neg = negotiate(parse(sdp("m=audio 4000 RTP/AVP 9\r\n")))  # static pt, no rtpmap
    assert neg.codec == G722 and neg.codec.clock_rate == 8000 and neg.codec.sample_rate == 16000


def test_dynamic_and_remapped_payload_types_match_by_name_case_insensitively():
    s = parse(sdp("m=audio 4000 RTP/AVP 97 100\r\na=rtpmap:97 pcmu/8000\r\n"
                  "a=rtpmap:100 Telephone-Event/8000\r\n"))
    neg = negotiate(s)
    assert neg.codec == replace(PCMU, payload_type=97) and neg.dtmf_payload_type == 100
    # An rtpmap for a static number decides what it is; wideband DTMF is not ours.
    s = parse(sdp("m=audio 4000 RTP/AVP 0 8 102 101\r\na=rtpmap:0 PCMA/8000\r\n"
                  "a=rtpmap:102 telephone-event/48000\r\na=rtpmap:101 telephone-event/8000\r\n"))
    neg = negotiate(s)
    assert neg.codec == replace(PCMA, payload_type=0)
    assert neg.dtmf_payload_type == 101


@pytest.mark.parametrize("media", [
    "m=audio 4000 RTP/AVP 3 18 101\r\na=rtpmap:101 telephone-event/8000\r\n",  # GSM, G729
    "m=audio 4000 RTP/AVP 96\r\na=rtpmap:96 opus/48000/2\r\n",
    "m=audio 4000 RTP/AVP 96\r\n",  # dynamic pt with no rtpmap: unknown
    "m=audio 4000 RTP/AVP 9\r\na=rtpmap:9 G722/16000\r\n",  # wrong clock for G.722
    "m=audio 4000 RTP/AVP 101\r\na=rtpmap:101 telephone-event/8000\r\n",
    "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000/2\r\n",  # stereo
])
def test_no_common_codec(media):
    with pytest.raises(NoCommonCodec, match="no common codec"):
        negotiate(parse(sdp(media)))


def test_savp_only_is_rejected():
    s = parse(sdp("m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 "
                  "inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n"))
    with pytest.raises(NoCommonCodec, match="line 6: audio transport RTP/SAVP not supported"):
        negotiate(s)
    with pytest.raises(NoCommonCodec):
        answer(s, negotiate(parse(ASTERISK)), local_address="192.0.2.1", local_port=20000,
               session_id=1)


def test_no_enabled_audio_stream():
    with pytest.raises(NoCommonCodec, match="no enabled audio"):
        negotiate(parse(sdp("m=audio 0 RTP/AVP 0\r\nm=video 5000 RTP/AVP 96\r\n")))


def test_avpf_and_second_audio_stream():
    s = parse(sdp("m=audio 0 RTP/AVP 0\r\nm=audio 4000 RTP/SAVP 0\r\nm=audio 5000 RTP/AVPF 8\r\n"))
    neg = negotiate(s)
    assert neg.codec == PCMA and neg.remote_port == 5000
    a = answer(s, neg, local_address="192.0.2.1", local_port=20000, session_id=7)
    assert [(m.port, m.proto) for m in a.media] == [
        (0, "RTP/AVP"), (0, "RTP/SAVP"), (20000, "RTP/AVPF")]


def test_missing_connection_address_fails_at_negotiation():
    s = parse(sdp("m=audio 4000 RTP/AVP 0\r\n", c=""))  # parses: c= may be absent
    with pytest.raises(SdpError, match="line 5: audio stream has no connection address") as exc:
        negotiate(s)
    assert not isinstance(exc.value, NoCommonCodec)
    # A media-level c= overrides the session one.
    s = parse(sdp("m=audio 4000 RTP/AVP 0\r\nc=IN IP6 2001:db8::5\r\n"))
    assert negotiate(s).remote_address == "2001:db8::5"


@pytest.mark.parametrize("change, direction, on_hold", [
    ("a=sendrecv", "sendrecv", False),
    ("a=sendonly", "recvonly", True),
    ("a=recvonly", "sendonly", False),
    ("a=inactive", "inactive", True),
    ("c=0.0.0.0", "recvonly", True),  # RFC 3264 §8.4: send nothing to 0.0.0.0
    ("c=0.0.0.0 a=sendonly", "recvonly", True),
    ("c=0.0.0.0 a=recvonly", "inactive", True),
    ("c=0.0.0.0 a=inactive", "inactive", True),
])
def test_hold_offers(change, direction, on_hold):
    text = ASTERISK
    if "c=0.0.0.0" in change:
        text = text.replace("c=IN IP4 192.0.2.10", "c=IN IP4 0.0.0.0")
    if "a=" in change:
        text = text.replace("a=sendrecv", change.split()[-1])
    neg = negotiate(parse(text))
    assert (neg.direction, neg.on_hold) == (direction, on_hold)
    assert neg.codec == PCMA  # hold does not change the codec
    a = answer(parse(text), neg, local_address="192.0.2.1", local_port=20000, session_id=1)
    assert a.media[0].direction(a) == direction


def test_session_level_sendonly_is_hold():
    neg = negotiate(parse(sdp("m=audio 4000 RTP/AVP 0\r\n", session_attrs="a=sendonly\r\n")))
    assert (neg.direction, neg.on_hold) == ("recvonly", True)


def test_rtcp_attribute_and_ptime():
    text = ASTERISK.replace("a=ptime:20", "a=ptime:30\r\na=rtcp:18011 IN IP4 192.0.2.10")
    neg = negotiate(parse(text))
    assert parse(text).media[0].rtcp_port() == 18011
    assert neg.remote_rtcp_port == 18011 and neg.remote_port == 18000 and neg.ptime == 30
    assert negotiate(parse(ASTERISK.replace("a=ptime:20", "a=rtcp:0"))).remote_rtcp_port == 18001
    assert negotiate(parse(ASTERISK.replace("a=ptime:20", "a=ptime:7"))).ptime == 20
    assert negotiate(parse(SIPP_UAC)).ptime == 20


# -- answer / offer ------------------------------------------------------------------------

def test_answer_to_asterisk_offer():
    o = parse(ASTERISK)
    a = answer(o, negotiate(o), local_address="192.0.2.1", local_port=20000, session_id=42)
    assert a.serialize() == (
        "v=0\r\no=appliance 42 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        "m=audio 20000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n")
    # The answer, read as an offer, negotiates to the same thing from the other side.
    back = negotiate(parse(a.serialize()))
    assert (back.codec, back.dtmf_payload_type, back.remote_port) == (PCMA, 101, 20000)


def test_answer_keeps_dtmf_pt_and_omits_it_when_not_offered():
    o = parse(BARESIP)
    m = answer(o, negotiate(o), local_address="192.0.2.1", local_port=20000, session_id=1).media[0]
    assert m.formats == ["0", "101"] and m.fmtp() == {101: "0-16"}
    o = parse(SIPP_UAC)
    m = answer(o, negotiate(o), local_address="192.0.2.1", local_port=20000, session_id=1).media[0]
    assert m.formats == ["0"] and m.fmtp() == {}


def test_answer_rejects_video_keeping_m_line_count():
    audio = ASTERISK.split("t=0 0\r\n")[1]
    o = parse(sdp("m=video 20002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n" + audio))
    neg = negotiate(o)
    assert neg.codec == PCMA and neg.remote_port == 18000
    a = answer(o, neg, local_address="2001:db8::1", local_port=30000, session_id=9,
               session_version=3, username="bob")
    assert [(m.media, m.port) for m in a.media] == [("video", 0), ("audio", 30000)]
    assert a.media[0].formats == ["96"] and a.media[0].attributes == []
    text = a.serialize()
    assert "o=bob 9 3 IN IP6 2001:db8::1\r\n" in text and "c=IN IP6 2001:db8::1\r\n" in text
    assert "m=video 0 RTP/AVP 96\r\n" in text
    assert parse(text) == a


def test_offer_for_calls_and_hold():
    o = offer(local_address="192.0.2.1", local_port=20000, session_id=5, session_version=1)
    [m] = o.media
    assert m.formats == ["0", "8", "9", "101"] and m.direction(o) == "sendrecv"
    assert m.rtpmap() == {0: ("PCMU", 8000, 1), 8: ("PCMA", 8000, 1), 9: ("G722", 8000, 1),
                          101: ("telephone-event", 8000, 1)}
    assert m.fmtp() == {101: "0-16"} and m.ptime() == 20
    assert parse(o.serialize()) == o
    # What a peer makes of our offer: our first codec, and our hold as its recvonly.
    hold = offer(local_address="192.0.2.1", local_port=20000, session_id=5, session_version=2,
                 codecs=(G722, PCMU), dtmf_payload_type=96, direction="sendonly")
    neg = negotiate(parse(hold.serialize()))
    assert (neg.codec, neg.dtmf_payload_type) == (G722, 96)
    assert (neg.direction, neg.on_hold) == ("recvonly", True)
    assert "o=appliance 5 2 IN IP4 192.0.2.1" in hold.serialize()


@pytest.mark.parametrize("kwargs", [
    {"direction": "hold"}, {"codecs": ()}, {"dtmf_payload_type": 8}, {"dtmf_payload_type": 200},
    {"local_address": "pbx.example.com"}, {"local_port": 0}, {"local_port": 70000},
])
def test_offer_rejects_bad_arguments(kwargs):
    args = {"local_address": "192.0.2.1", "local_port": 20000, "session_id": 1,
            "session_version": 1}
    with pytest.raises(ValueError):
        offer(**{**args, **kwargs})


def test_media_description_helpers_tolerate_junk_attributes():
    m = MediaDescription("audio", 4000, "RTP/AVP", ["0"], None,
                         [("rtpmap", "x PCMU/8000"), ("rtpmap", "200 PCMU/8000"), ("rtpmap", None),
                          ("fmtp", "abc"), ("ptime", "twenty"), ("rtcp", "99999"), ("rtcp", "")])
    assert m.rtpmap() == {} and m.fmtp() == {} and m.ptime() is None and m.rtcp_port() is None


# -- robustness ----------------------------------------------------------------------------

def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:  # flip bits of a byte
            b[min(pos, len(b) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and b:  # random byte
            b[min(pos, len(b) - 1)] = rng.randrange(256)
        elif op == 2:  # truncate
            del b[pos:]
        elif op == 3:  # insert a byte, often a structural one
            b.insert(pos, rng.choice(b" =\r\n:/0123456789amcvo\x00\xff"))
        else:  # delete a byte
            del b[pos:pos + 1]
    return bytes(b)


def test_random_mutations_only_raise_sdp_error():
    rng = random.Random(20240601)
    ok = 0
    for _ in range(2000):
        data = _mutate(rng, ASTERISK.encode())
        try:
            s = parse(data)
        except SdpError:
            continue
        ok += 1
        assert parse(s.serialize()) == s
        try:
            neg = negotiate(s)
            answer(s, neg, local_address="192.0.2.1", local_port=20000, session_id=1)
        except SdpError:
            pass
    assert 50 < ok < 2000  # both outcomes were exercised
