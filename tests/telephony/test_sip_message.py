"""The SIP parser: real-world messages parse, every kind of broken input is a SipParseError
with the right status, and random input never raises anything else (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.telephony.sip.headers import NameAddr, SipUri, Via
from appliance.telephony.sip.message import (
    MAX_HEADERS,
    Request,
    Response,
    SipParseError,
    StreamFramer,
    make_response,
    parse,
)

INVITE = (
    "INVITE sip:agent@127.0.0.1:5070 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-1-0;rport\r\n"
    "Max-Forwards: 70\r\n"
    'f: "Alice" <sip:+4930123@127.0.0.1:5080>;tag=abc\r\n'
    "To: <sip:agent@127.0.0.1:5070>\r\n"
    "i: 1-2@127.0.0.1\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:alice@127.0.0.1:5080>\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 5\r\n\r\nv=0\r\n"
)


def test_a_sipp_style_invite_parses_with_compact_headers_expanded():
    m = parse(INVITE.encode())
    assert isinstance(m, Request) and m.method == "INVITE" and m.uri == "sip:agent@127.0.0.1:5070"
    assert m.call_id == "1-2@127.0.0.1" and m.cseq == (1, "INVITE") and m.body == b"v=0\r\n"
    frm = NameAddr.parse(m.headers.get("From"))
    assert (frm.display, frm.uri.user, frm.tag) == ("Alice", "+4930123", "abc")
    via = Via.parse(m.vias[0])
    assert (via.transport, via.host, via.port, via.branch) == ("UDP", "127.0.0.1", 5080, "z9hG4bK-1-0")
    assert "rport" in via.params


def test_encode_then_parse_is_identity_and_content_length_is_recomputed():
    m = parse(INVITE.encode())
    m.body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"
    again = parse(m.encode())
    assert again.body == m.body and again.headers.get("Content-Length") == str(len(m.body))
    assert again.headers.items()[:-1] == [(n, v) for n, v in m.headers.items() if n != "Content-Length"]


def test_response_copies_the_right_headers_and_adds_the_to_tag():
    req = parse(INVITE.encode())
    resp = make_response(req, 486, to_tag="xyz", headers=[("Retry-After", "5")])
    back = parse(resp.encode())
    assert isinstance(back, Response) and (back.status, back.reason) == (486, "Busy Here")
    assert back.headers.get("To") == "<sip:agent@127.0.0.1:5070>;tag=xyz"
    assert back.vias == req.vias and back.headers.get("Retry-After") == "5"


def test_dialog_establishing_responses_echo_the_record_route_set_in_order():
    """A Record-Routing proxy (Kamailio's dispatcher in front of several boxes) stays on the
    dialog's path only if 18x/2xx carry its Record-Route back (RFC 3261 §12.1.1)."""
    routed = INVITE.replace("Max-Forwards: 70\r\n", "Max-Forwards: 69\r\nRecord-Route: <sip:10.0.0.2;lr>\r\n"
                                                    "Record-Route: <sip:10.0.0.1;lr;did=7>\r\n")
    req = parse(routed.encode())
    for status in (180, 200):
        back = parse(make_response(req, status, to_tag="xyz").encode())
        assert back.headers.get_all("Record-Route") == ["<sip:10.0.0.2;lr>", "<sip:10.0.0.1;lr;did=7>"]
    assert parse(make_response(req, 486, to_tag="xyz").encode()).headers.get_all("Record-Route") == []


def test_list_headers_split_outside_quotes_and_brackets():
    raw = INVITE.replace("Contact: <sip:alice@127.0.0.1:5080>",
                         'Contact: "A, B" <sip:a@h>;q=0.5, <sip:b@h;x=1,2>')
    assert parse(raw.encode()).headers.get_all("Contact") == ['"A, B" <sip:a@h>;q=0.5', "<sip:b@h;x=1,2>"]


def test_udp_body_beyond_content_length_is_ignored_and_missing_length_takes_the_rest():
    assert parse((INVITE + "garbage").encode()).body == b"v=0\r\n"
    no_len = INVITE.replace("Content-Length: 5\r\n", "")
    assert parse(no_len.encode()).body == b"v=0\r\n"


def test_folded_header_lines_are_joined():
    raw = INVITE.replace("Max-Forwards: 70\r\n", "Subject: first\r\n  second\r\nMax-Forwards: 70\r\n")
    assert parse(raw.encode()).headers.get("Subject") == "first second"


@pytest.mark.parametrize("mutate, status, reason", [
    (lambda s: s[:60], 400, "truncated: no blank line"),
    (lambda s: s.replace("Content-Length: 5", "Content-Length: 50"), 400, "truncated: Content-Length 50"),
    (lambda s: s.replace("Content-Length: 5", "Content-Length: -1"), 400, "bad Content-Length"),
    (lambda s: s.replace("Content-Length: 5", "Content-Length: 99999999"), 400, "bad Content-Length"),
    (lambda s: s.replace("Content-Length: 5", "Content-Length: 40000"), 413, "exceeds"),
    (lambda s: s.replace("SIP/2.0\r\n", "SIP/3.0\r\n", 1), 505, "version 3.0"),
    (lambda s: s.replace("i: 1-2@127.0.0.1\r\n", ""), 400, "missing Call-ID"),
    (lambda s: s.replace("CSeq: 1 INVITE", "CSeq: one INVITE"), 400, "bad CSeq"),
    (lambda s: s.replace("CSeq: 1 INVITE", "CSeq: 1 BYE"), 400, "does not match"),
    (lambda s: s.replace("Max-Forwards: 70", "Max Forwards 70"), 400, "bad header line"),
    (lambda s: s.replace("Max-Forwards: 70", "X: " + "a" * 5000), 413, "line longer"),
    (lambda s: s.replace("Max-Forwards: 70", "\r\n".join(f"X-{i}: 1" for i in range(MAX_HEADERS + 1))),
     413, "more than 100 headers"),
    (lambda s: s.replace("INVITE sip:agent", "INVITE agent", 1), 400, "bad Request-URI"),
    (lambda s: s.replace("Max-Forwards: 70", "Max-Forwards: \x00"), 400, "NUL byte"),
    (lambda s: "@@ " + s, 400, "bad request line"),
    (lambda s: "\u00ff\u00fe" + s, 400, "not UTF-8"),
])
def test_broken_messages_are_rejected_with_a_status_and_reason(mutate, status, reason):
    with pytest.raises(SipParseError) as info:
        parse(mutate(INVITE).encode("latin-1"))
    assert info.value.status == status and reason in info.value.reason


def test_non_utf8_headers_and_oversized_datagrams_are_rejected():
    with pytest.raises(SipParseError, match="not UTF-8"):
        parse(INVITE.replace("Alice", "Al\udcffce").encode("utf-8", "surrogateescape"))
    with pytest.raises(SipParseError, match="exceeds 65535") as info:
        parse(INVITE.encode() + b"x" * 70000)
    assert info.value.status == 413


def test_stream_framer_cuts_tcp_messages_across_arbitrary_chunking_and_counts_pings():
    wire = b"\r\n\r\n" + INVITE.encode() + INVITE.encode().replace(b"1-2@", b"3-4@")
    framer, got = StreamFramer(), []
    for i in range(0, len(wire), 7):
        got += framer.feed(wire[i:i + 7])
    assert [m.call_id for m in got] == ["1-2@127.0.0.1", "3-4@127.0.0.1"] and framer.pings == 1
    with pytest.raises(SipParseError, match="missing Content-Length"):
        StreamFramer().feed(INVITE.replace("Content-Length: 5\r\n", "").encode())


def test_uri_and_address_forms():
    u = SipUri.parse("sip:200@[::1]:5062;transport=tcp?Replaces=a%40b")
    assert (u.user, u.host, u.port, u.params, u.headers) == ("200", "[::1]", 5062, {"transport": "tcp"}, "Replaces=a%40b")
    assert str(u) == "sip:200@[::1]:5062;transport=tcp?Replaces=a%40b"
    a = NameAddr.parse("sip:bob@host;tag=7")  # addr-spec: the tag belongs to the header
    assert a.tag == "7" and a.uri.params == {}
    for bad in ("tel:+123", "sip:", "sip:bob@host:99999", '"x" <sip:a@b'):
        with pytest.raises(SipParseError):
            NameAddr.parse(bad)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes_only_ever_raise_sip_parse_error(data):
    try:
        parse(data)
    except SipParseError:
        pass


@settings(max_examples=600, deadline=None)
@given(st.data())
def test_fuzz_mutated_real_messages_only_ever_raise_sip_parse_error(data):
    raw = bytearray(INVITE.encode())
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["flip", "cut", "dup", "insert"]))
        pos = data.draw(st.integers(0, len(raw) - 1))
        if op == "flip":
            raw[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del raw[pos:pos + data.draw(st.integers(1, 40))]
        elif op == "dup":
            raw[pos:pos] = raw[pos:pos + data.draw(st.integers(1, 80))]
        else:
            raw[pos:pos] = data.draw(st.sampled_from([b":", b"\r\n", b";", b"<", b'"', b"\x00", b" SIP/2.0"]))
        if not raw:
            return
    try:
        m = parse(bytes(raw))
    except SipParseError:
        return
    for value in m.headers.get_all("Via") + [m.headers.get("From") or "", m.headers.get("To") or ""]:
        try:  # the structured parsers must be just as well-behaved
            (Via.parse if value.startswith("SIP") else NameAddr.parse)(value)
        except SipParseError:
            pass
