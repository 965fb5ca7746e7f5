"""SIP digest auth: RFC known-answer vectors, parser strictness, and client<->server round trips.
Time is an injected clock, never a sleep."""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.telephony.sip.digest import (
    MAX_TRACKED_NONCES,
    AuthResult,
    Challenge,
    Credentials,
    DigestError,
    DigestServer,
    authorization,
    parse_authorization,
    parse_challenge,
    select_challenge,
)

ALGORITHMS = ["MD5", "MD5-sess", "SHA-256", "SHA-256-sess", "SHA-512-256", "SHA-512-256-sess"]


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def response_of(header: str) -> str:
    return parse_authorization(header)["response"]


# --- known-answer vectors ---------------------------------------------------------------------


def test_rfc2617_md5_example():
    ch = parse_challenge(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    h = authorization(ch, Credentials("Mufasa", "Circle Of Life"), "GET", "/dir/index.html",
                      cnonce="0a4f113b")
    p = parse_authorization(h)
    assert p["response"] == "6629fae49393a05397450978507c4ef1"
    assert p["qop"] == "auth" and p["nc"] == "00000001" and p["cnonce"] == "0a4f113b"
    assert p["opaque"] == "5ccc069c403ebaf9f0171e9517f40e41"
    assert p["algorithm"] == "MD5"


RFC7616 = dict(
    realm="http-auth@example.org",
    nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    qop=("auth", "auth-int"),
    opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
)
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


@pytest.mark.parametrize(
    "algorithm, expected",
    [
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ],
)
def test_rfc7616_examples(algorithm, expected):
    ch = Challenge(algorithm=algorithm, **RFC7616)
    h = authorization(ch, Credentials("Mufasa", "Circle of Life"), "GET", "/dir/index.html",
                      cnonce=RFC7616_CNONCE)
    assert response_of(h) == expected
    assert f"algorithm={algorithm}," in h
    assert h.startswith('Digest username="Mufasa",realm="http-auth@example.org",')


def test_rfc2069_style_without_qop():
    # MD5(MD5(A1):nonce:MD5(A2)) with the RFC 2617 inputs; no cnonce/nc/qop may be sent.
    ch = Challenge(realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093")
    h = authorization(ch, Credentials("Mufasa", "Circle Of Life"), "GET", "/dir/index.html")
    p = parse_authorization(h)
    assert p["response"] == "670fd8c2df070c60b045671b8b24ff02"
    assert not {"cnonce", "nc", "qop", "opaque"} & set(p)


def test_sess_without_qop_is_refused():
    with pytest.raises(DigestError, match="qop"):
        authorization(Challenge("r", "n", "SHA-256-sess"), Credentials("u", "p"), "INVITE", "sip:x")


def test_auth_int_only_when_it_is_all_that_is_offered():
    creds = Credentials("u", "p")
    both = authorization(Challenge("r", "n", qop=("auth-int", "auth")), creds, "INVITE", "sip:x")
    only = authorization(Challenge("r", "n", qop=("auth-int",)), creds, "INVITE", "sip:x", body=b"v=0")
    assert parse_authorization(both)["qop"] == "auth"
    assert parse_authorization(only)["qop"] == "auth-int"
    # auth-int covers the body: a different body gives a different response.
    other = authorization(Challenge("r", "n", qop=("auth-int",)), creds, "INVITE", "sip:x", body=b"v=1",
                          cnonce=parse_authorization(only)["cnonce"])
    assert response_of(other) != response_of(only)
    with pytest.raises(DigestError, match="no supported qop"):
        authorization(Challenge("r", "n", qop=("auth-conf",)), creds, "INVITE", "sip:x")


def test_authorization_escapes_and_refuses_injection():
    ch = Challenge(realm='a"b\\c', nonce="n", qop=("auth",))
    h = authorization(ch, Credentials('bob "the" \\ builder', "p"), "REGISTER", "sip:example.com", nc=0x1F)
    p = parse_authorization(h)
    assert p["username"] == 'bob "the" \\ builder' and p["realm"] == 'a"b\\c' and p["nc"] == "0000001f"
    with pytest.raises(DigestError, match="control character in username"):
        authorization(ch, Credentials("bob\r\nVia: evil", "p"), "REGISTER", "sip:x")
    with pytest.raises(DigestError, match="invalid method"):
        authorization(ch, Credentials("bob", "p"), "REG ISTER", "sip:x")
    for bad in (0, 1 << 32):
        with pytest.raises(DigestError, match="nonce count"):
            authorization(ch, Credentials("bob", "p"), "REGISTER", "sip:x", nc=bad)
    with pytest.raises(DigestError, match="unsupported algorithm 'SHA-999'"):
        authorization(Challenge("r", "n", "SHA-999", ("auth",)), Credentials("u", "p"), "INVITE", "sip:x")


# --- parse_challenge -----------------------------------------------------------------------


def test_parse_challenge_full():
    ch = parse_challenge(
        'Digest realm="asterisk",nonce="1a2b",algorithm=SHA-256,qop="auth,auth-int",opaque="x",stale=TRUE'
    )
    assert ch == Challenge("asterisk", "1a2b", "SHA-256", ("auth", "auth-int"), "x", True)


def test_parse_challenge_defaults():
    assert parse_challenge('Digest realm="r", nonce="n"') == Challenge("r", "n")


def test_parse_challenge_escapes_commas_whitespace_and_case():
    ch = parse_challenge(
        '  dIgEsT   REALM = "a \\"quoted\\" realm, with commas\\\\" ,\t'
        'Nonce="n,o=nce" , ALGORITHM=sha-512-256-SESS, QoP=" auth , auth-int ",'
        ' domain="sip:a sip:b", Stale=true  '
    )
    assert ch.realm == 'a "quoted" realm, with commas\\'
    assert ch.nonce == "n,o=nce"
    assert ch.algorithm == "SHA-512-256-sess"
    assert ch.qop == ("auth", "auth-int")
    assert ch.stale is True and ch.opaque is None


@pytest.mark.parametrize("stale, expected", [("TRUE", True), ("true", True), ('"True"', True),
                                             ("FALSE", False), ("yes", False)])
def test_parse_challenge_stale(stale, expected):
    assert parse_challenge(f'Digest realm="r",nonce="n",stale={stale}').stale is expected


def test_parse_challenge_tolerates_empty_list_elements():
    assert parse_challenge('Digest , realm="r",, nonce="n",').nonce == "n"


@pytest.mark.parametrize(
    "value, message",
    [
        ("", "empty challenge"),
        ("   ", "empty challenge"),
        ('Basic realm="r"', "unsupported auth scheme 'Basic'"),
        ('Digestrealm="r",nonce="n"', "unsupported auth scheme 'Digestrealm'"),
        ('Digest/realm="r",nonce="n"', "invalid character '/' after the auth scheme"),
        ('"Digest" realm="r"', "where the auth scheme should be"),
        ('Digest realm="r",nonce="n",realm="s"', "duplicate parameter 'realm'"),
        ('Digest realm="r",nonce="n",NONCE="m"', "duplicate parameter 'nonce'"),
        ('Digest nonce="n"', "missing realm"),
        ('Digest realm="r"', "missing nonce"),
        ('Digest realm="r",nonce=""', "missing nonce"),
        ("Digest", "missing realm"),
        ('Digest realm="r,nonce="n"', "expected ','"),
        ('Digest realm="r', "unterminated quoted string"),
        ('Digest realm="r\\', "unterminated quoted string"),
        ('Digest realm="r" nonce="n"', "expected ',' after parameter 'realm'"),
        ('Digest realm "r"', "expected '=' after parameter 'realm'"),
        ("Digest realm", "expected '=' after parameter 'realm'"),
        ('Digest realm=,nonce="n"', "missing value for parameter 'realm'"),
        ("Digest realm=", "missing value for parameter 'realm'"),
        ('Digest realm=a/b,nonce="n"', "expected ',' after parameter 'realm'"),
        ('Digest ="r"', "invalid character '='"),
        ('Digest realm="a\x00b",nonce="n"', "control character in quoted string"),
        ('Digest realm="a\r\nVia: x",nonce="n"', "control character in quoted string"),
        ('Digest realm="r",nonce="' + "n" * 5000 + '"', "longer than 4096"),
    ],
)
def test_parse_challenge_malformed(value, message):
    with pytest.raises(DigestError, match=re.escape(message)):
        parse_challenge(value)


def test_parse_challenge_rejects_non_string():
    with pytest.raises(DigestError, match="must be a string"):
        parse_challenge(b'Digest realm="r",nonce="n"')  # type: ignore[arg-type]


def test_digest_error_is_value_error():
    assert issubclass(DigestError, ValueError)


# --- select_challenge ----------------------------------------------------------------------

MD5_CH = 'Digest realm="r",nonce="n1",algorithm=MD5,qop="auth"'
SHA_CH = 'Digest realm="r",nonce="n2",algorithm=SHA-256,qop="auth"'


@pytest.mark.parametrize("values", [[MD5_CH, SHA_CH], [SHA_CH, MD5_CH]])
def test_select_prefers_sha256_in_either_order(values):
    assert select_challenge(values).algorithm == "SHA-256"


def test_select_ranking_and_skips():
    values = [
        'Digest realm="r",nonce="a",algorithm=SHA-999,qop="auth"',
        'Basic realm="r"',
        "garbage",
        MD5_CH,
        'Digest realm="r",nonce="b",algorithm=SHA-512-256-sess,qop="auth"',
        SHA_CH,
    ]
    assert select_challenge(values).algorithm == "SHA-512-256-sess"
    assert select_challenge(values[:4]).algorithm == "MD5"
    # No algorithm parameter means MD5.
    assert select_challenge(['Digest realm="r",nonce="n"']).algorithm == "MD5"
    # A challenge whose qop we cannot answer is skipped like an unknown algorithm.
    assert select_challenge([SHA_CH.replace('"auth"', '"auth-conf"'), MD5_CH]).algorithm == "MD5"


def test_select_ties_go_to_first():
    a = 'Digest realm="r",nonce="first",algorithm=SHA-256,qop="auth"'
    b = 'Digest realm="r",nonce="second",algorithm=SHA-256-sess,qop="auth"'
    assert select_challenge([a, b]).nonce == "first"


def test_sha512_256_missing_from_openssl(monkeypatch):
    from appliance.telephony.sip import digest

    real = digest.hashlib.new

    def new(name, *a, **kw):
        if name == "sha512_256":
            raise ValueError("unsupported hash type sha512_256")
        return real(name, *a, **kw)

    monkeypatch.setattr(digest.hashlib, "new", new)
    strong = 'Digest realm="r",nonce="n",algorithm=SHA-512-256,qop="auth"'
    assert select_challenge([strong, SHA_CH]).algorithm == "SHA-256"  # skipped, not fatal
    with pytest.raises(DigestError, match="SHA-512-256 unavailable: this OpenSSL build lacks sha512_256"):
        authorization(parse_challenge(strong), Credentials("u", "p"), "INVITE", "sip:x")
    with pytest.raises(DigestError, match="unavailable"):
        DigestServer("r", USERS, algorithms=("SHA-512-256",))


@pytest.mark.parametrize("values", [[], ['Digest realm="r",nonce="n",algorithm=SHA-999'], ['Basic realm="r"']])
def test_select_none_supported(values):
    with pytest.raises(DigestError, match="no supported digest challenge"):
        select_challenge(values)


# --- server --------------------------------------------------------------------------------

USERS = {"alice": "s3cret", "bob": "hunter2"}


def make_server(clock: Clock | None = None, **kw) -> DigestServer:
    kw.setdefault("algorithms", tuple(ALGORITHMS))
    return DigestServer("pbx.example", USERS, clock=clock or Clock(), secret=b"k" * 32, **kw)


def answer(server: DigestServer, algorithm: str = "SHA-256", user: str = "alice", password: str = "s3cret",
           method: str = "INVITE", uri: str = "sip:agent@pbx.example", **kw) -> str:
    values = server.challenges()
    ch = next(parse_challenge(v) for v in values if parse_challenge(v).algorithm == algorithm)
    return authorization(ch, Credentials(user, password), method, uri, **kw)


def test_challenges_shape():
    server = DigestServer("pbx.example", USERS, clock=Clock())
    values = server.challenges()
    assert [parse_challenge(v).algorithm for v in values] == ["SHA-256", "MD5"]
    chs = [parse_challenge(v) for v in values]
    for ch in chs:
        assert ch.realm == "pbx.example" and ch.qop == ("auth",) and ch.opaque and not ch.stale
        assert re.fullmatch(r"[A-Za-z0-9_-]{72}", ch.nonce)
    assert len({ch.nonce for ch in chs}) == 2  # fresh nonces
    assert all(parse_challenge(v).stale for v in server.challenges(stale=True))
    assert select_challenge(values).algorithm == "SHA-256"


def test_server_rejects_bad_configuration():
    with pytest.raises(DigestError, match="unsupported algorithm"):
        DigestServer("r", USERS, algorithms=("SHA-1",))
    with pytest.raises(DigestError, match="at least one"):
        DigestServer("r", USERS, algorithms=())
    with pytest.raises(DigestError, match="nonce_ttl"):
        DigestServer("r", USERS, nonce_ttl=0)
    with pytest.raises(DigestError, match="control character"):
        DigestServer("r\r\n", USERS)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_round_trip_each_algorithm(algorithm):
    server = make_server()
    assert server.verify("INVITE", answer(server, algorithm)) == AuthResult(ok=True, username="alice")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_wrong_password_each_algorithm(algorithm):
    server = make_server()
    r = server.verify("INVITE", answer(server, algorithm, password="nope"))
    assert r == AuthResult(ok=False, username="alice", reason="bad response")


def test_method_is_covered():
    server = make_server()
    r = server.verify("BYE", answer(server, method="INVITE"))
    assert not r.ok and r.reason == "bad response"


def test_unknown_user():
    server = make_server()
    r = server.verify("INVITE", answer(server, user="mallory", password="x"))
    assert not r.ok and r.reason == "unknown user" and not r.stale


def test_unknown_user_does_the_same_work(monkeypatch):
    """No early exit for an unknown user: the digest is still computed and compared, so response
    time does not reveal which usernames exist."""
    from appliance.telephony.sip import digest

    calls = []
    real, real_cmp = digest._response, digest.hmac.compare_digest
    monkeypatch.setattr(digest, "_response", lambda *a: calls.append("hash") or real(*a))
    monkeypatch.setattr(digest.hmac, "compare_digest", lambda x, y: calls.append("cmp") or real_cmp(x, y))
    server = make_server()
    known, unknown = answer(server, password="wrong"), answer(server, user="mallory", password="wrong")
    for h in (known, unknown):
        calls.clear()
        server.verify("INVITE", h)
        assert calls.count("hash") == 1 and calls.count("cmp") == 2  # nonce HMAC + response


def test_algorithm_not_allowed():
    server = make_server(algorithms=("SHA-256",))
    ch = parse_challenge(server.challenges()[0])
    h = authorization(dataclasses.replace(ch, algorithm="MD5"), Credentials("alice", "s3cret"), "INVITE", "sip:x")
    r = server.verify("INVITE", h)
    assert not r.ok and r.reason == "algorithm 'MD5' not allowed"


def test_realm_and_opaque_mismatch():
    server = make_server()
    ch = parse_challenge(server.challenges()[0])
    creds = Credentials("alice", "s3cret")
    r = server.verify("INVITE", authorization(dataclasses.replace(ch, realm="other"), creds, "INVITE", "sip:x"))
    assert r.reason == "realm mismatch" and not r.ok
    r = server.verify("INVITE", authorization(dataclasses.replace(ch, opaque="zz"), creds, "INVITE", "sip:x"))
    assert r.reason == "opaque mismatch" and not r.ok
    # Opaque omitted entirely is tolerated.
    assert server.verify("INVITE", authorization(dataclasses.replace(ch, opaque=None), creds, "INVITE", "sip:x")).ok


def test_stale_nonce_after_ttl():
    clock = Clock()
    server = make_server(clock, nonce_ttl=300)
    h = answer(server)
    clock.t += 300  # exactly at the ttl is still fresh
    assert server.verify("INVITE", h).ok
    h = answer(server)
    clock.t += 300.5
    assert server.verify("INVITE", h) == AuthResult(ok=False, username="alice", stale=True, reason="stale nonce")
    assert server.verify("INVITE", answer(server)).ok  # a fresh nonce works at the new time
    # Stale is only signalled for a correct digest: a wrong password must make the user re-enter it.
    wrong = answer(server, password="nope")
    clock.t += 1000
    r = server.verify("INVITE", wrong)
    assert not r.ok and not r.stale and r.reason == "bad response"


def test_stale_retry_flow():
    clock = Clock()
    server = make_server(clock, nonce_ttl=60)
    h = answer(server)
    clock.t += 61
    assert server.verify("INVITE", h).stale
    retry = select_challenge(server.challenges(stale=True))
    assert retry.stale
    h2 = authorization(retry, Credentials("alice", "s3cret"), "INVITE", "sip:agent@pbx.example")
    assert server.verify("INVITE", h2).ok


def tamper(nonce: str) -> str:
    i = len(nonce) // 2
    return nonce[:i] + ("A" if nonce[i] != "A" else "B") + nonce[i + 1:]


@pytest.mark.parametrize("mutate", [
    tamper,
    lambda n: n[:-1],
    lambda n: n + "A",
    lambda n: "!" * len(n),
    lambda n: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
])
def test_forged_nonce(mutate):
    server = make_server()
    ch = parse_challenge(server.challenges()[0])
    h = authorization(dataclasses.replace(ch, nonce=mutate(ch.nonce)), Credentials("alice", "s3cret"),
                      "INVITE", "sip:x")
    r = server.verify("INVITE", h)
    assert not r.ok and r.reason == "unknown nonce" and not r.stale


def test_nonce_from_another_secret_or_realm_is_unknown():
    server = make_server()
    other = DigestServer("pbx.example", USERS, secret=b"x" * 32, clock=Clock())
    ch = dataclasses.replace(parse_challenge(other.challenges()[0]), opaque=None)
    h = authorization(ch, Credentials("alice", "s3cret"), "INVITE", "sip:x")
    assert server.verify("INVITE", h).reason == "unknown nonce"
    other_realm = DigestServer("other", USERS, secret=b"k" * 32, clock=Clock())
    ch = dataclasses.replace(parse_challenge(other_realm.challenges()[0]), realm="pbx.example", opaque=None)
    h = authorization(ch, Credentials("alice", "s3cret"), "INVITE", "sip:x")
    assert server.verify("INVITE", h).reason == "unknown nonce"


def test_replayed_nonce_count():
    server = make_server()
    ch = select_challenge(server.challenges())
    creds = Credentials("alice", "s3cret")
    first = authorization(ch, creds, "INVITE", "sip:x", nc=1)
    assert server.verify("INVITE", first).ok
    r = server.verify("INVITE", first)
    assert r == AuthResult(ok=False, username="alice", reason="replayed nonce count")
    assert server.verify("INVITE", authorization(ch, creds, "INVITE", "sip:x", nc=3)).ok
    assert server.verify("INVITE", authorization(ch, creds, "INVITE", "sip:x", nc=2)).reason == \
        "replayed nonce count"
    assert server.verify("INVITE", authorization(ch, creds, "INVITE", "sip:x", nc=4)).ok
    # A failed attempt must not advance the counter (else anyone could burn a victim's nonce).
    bad = authorization(ch, Credentials("alice", "wrong"), "INVITE", "sip:x", nc=100)
    assert server.verify("INVITE", bad).reason == "bad response"
    assert server.verify("INVITE", authorization(ch, creds, "INVITE", "sip:x", nc=5)).ok


def test_replay_table_is_bounded_and_evicted_nonces_turn_stale():
    clock = Clock()
    server = make_server(clock)
    creds = Credentials("alice", "s3cret")
    first_ch = select_challenge(server.challenges())
    first = authorization(first_ch, creds, "INVITE", "sip:x")
    assert server.verify("INVITE", first).ok
    for _ in range(MAX_TRACKED_NONCES):
        clock.t += 0.001
        assert server.verify("INVITE", answer(server, "MD5")).ok
    assert len(server._nc) == MAX_TRACKED_NONCES
    # The first nonce was evicted; replaying it (or using it again) is answered "stale", not accepted.
    r = server.verify("INVITE", first)
    assert not r.ok and r.stale
    assert server.verify("INVITE", authorization(first_ch, creds, "INVITE", "sip:x", nc=2)).stale


def test_auth_int_with_body():
    server = make_server()
    ch = dataclasses.replace(select_challenge(server.challenges()), qop=("auth-int",))
    body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n"
    h = authorization(ch, Credentials("alice", "s3cret"), "INVITE", "sip:x", body=body)
    assert parse_authorization(h)["qop"] == "auth-int"
    assert server.verify("INVITE", h, body=body).ok
    h2 = authorization(ch, Credentials("alice", "s3cret"), "INVITE", "sip:x", body=body, nc=2)
    assert server.verify("INVITE", h2, body=body + b"tampered").reason == "bad response"


def test_response_hex_is_case_insensitive():
    server = make_server()
    h = answer(server)
    assert server.verify("INVITE", h.replace(response_of(h), response_of(h).upper())).ok


# --- hostile input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "edit, reason",
    [
        (lambda h: "", "empty authorization"),
        (lambda h: "garbage", "unsupported auth scheme 'garbage'"),
        (lambda h: "Basic YWxhZGRpbjpvcGVuc2VzYW1l", "unsupported auth scheme 'Basic'"),
        (lambda h: "\x00\xff\ufffd" * 10, "where the auth scheme should be"),
        (lambda h: "Digest " + "a" * 100_000, "longer than 4096"),
        (lambda h: "A" * 100 * 1024, "longer than 4096"),
        (lambda h: re.sub(r'response="[0-9a-f]+",', "", h), "authorization missing response"),
        (lambda h: re.sub(r'username="[^"]*",', "", h), "authorization missing username"),
        (lambda h: re.sub(r'uri="[^"]*",', "", h), "authorization missing uri"),
        (lambda h: re.sub(r'nonce="[^"]*",', "", h), "authorization missing nonce"),
        (lambda h: re.sub(r',qop=auth', "", h), "missing qop"),
        (lambda h: h.replace("qop=auth", "qop=auth-conf"), "unsupported qop 'auth-conf'"),
        (lambda h: re.sub(r"nc=\w+", "nc=zzzzzzzz", h), "bad nonce count"),
        (lambda h: re.sub(r"nc=\w+", "nc=1", h), "bad nonce count"),
        (lambda h: re.sub(r"nc=\w+", "nc=-0000001", h), "bad nonce count"),
        (lambda h: re.sub(r",nc=\w+", "", h), "bad nonce count"),
        (lambda h: re.sub(r'cnonce="[^"]*"', 'cnonce=""', h), "missing cnonce"),
        (lambda h: re.sub(r'algorithm=[\w-]+', "algorithm=SHA-999", h), "algorithm 'SHA-999' not allowed"),
        (lambda h: h + ',response="00"', "duplicate parameter 'response'"),
        (lambda h: h + ',nonce="x', "unterminated quoted string"),
        (lambda h: h.replace('username="alice"', 'username="\udcff"'), "invalid characters"),
        (lambda h: re.sub(r'response="[0-9a-f]+"', 'response="\u00e9\u00e9"', h), "bad response"),
    ],
)
def test_hostile_authorization(edit, reason):
    server = make_server()
    r = server.verify("INVITE", edit(answer(server)))
    assert r.ok is False and reason in r.reason


def test_hostile_non_string_and_surrogates():
    server = make_server()
    assert server.verify("INVITE", None).reason == "authorization must be a string, not NoneType"  # type: ignore[arg-type]
    # A surrogate-escaped username that the server does know still cannot blow up hashing.
    weird = DigestServer("pbx.example", {"\udcff": "pw"}, secret=b"k" * 32, clock=Clock())
    h = answer(weird).replace('username="alice"', 'username="\udcff"')
    assert weird.verify("INVITE", h) == AuthResult(ok=False, reason="invalid characters")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=600))
def test_fuzz_never_raises(text):
    server = make_server()
    for value in (text, "Digest " + text):
        r = server.verify("INVITE", value)
        assert isinstance(r, AuthResult) and not r.ok
        try:
            parse_challenge(value)
        except DigestError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_characters="\x7f"),
                        max_size=20),
                min_size=3, max_size=3))
def test_fuzz_quoting_round_trips(parts):
    realm, nonce, user = parts
    ch = Challenge(realm=realm, nonce=nonce or "n", qop=("auth",), opaque=user)
    p = parse_authorization(authorization(ch, Credentials(user, "pw"), "OPTIONS", "sip:x"))
    assert (p["realm"], p["nonce"], p["username"], p["opaque"]) == (realm, nonce or "n", user, user)
