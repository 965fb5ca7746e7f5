"""SIP HTTP Digest authentication (RFC 3261 §22, RFC 7616, RFC 8760), client and server.

Works on header *values* only (WWW-Authenticate, Authorization, and the Proxy-
variants share the grammar), so it does not depend on any SIP message class.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Mapping

__all__ = [
    "MAX_HEADER",
    "AuthResult",
    "Challenge",
    "Credentials",
    "DigestError",
    "DigestServer",
    "answer_challenge",
    "authorization",
    "parse_authorization",
    "parse_challenge",
    "select_challenge",
]

MAX_HEADER = 4096  # a real digest header is a few hundred bytes; bound the parser's work
MAX_TRACKED_NONCES = 10000

# Canonical names (upper-cased lookup) -> (hashlib name, strength rank for select_challenge).
_ALGORITHMS = {
    "MD5": ("md5", 1),
    "MD5-SESS": ("md5", 1),
    "SHA-256": ("sha256", 2),
    "SHA-256-SESS": ("sha256", 2),
    "SHA-512-256": ("sha512_256", 3),
    "SHA-512-256-SESS": ("sha512_256", 3),
}
_CANONICAL = {k: k.replace("-SESS", "-sess") for k in _ALGORITHMS}
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_WS = " \t\r\n"
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_NC = re.compile(r"[0-9A-Fa-f]{8}")


class DigestError(ValueError):
    """A malformed or unusable digest header; the message says what is wrong."""


@dataclass(frozen=True)
class Challenge:
    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)  # never in a log line or a traceback's repr


@dataclass(frozen=True)
class AuthResult:
    ok: bool
    username: str = ""
    stale: bool = False
    reason: str = ""


# --- parsing -------------------------------------------------------------------------------


def _parse(value: str, what: str) -> dict[str, str]:
    """`Digest name=value, ...` -> {lower-cased name: unescaped value}; strict, bounded."""
    if not isinstance(value, str):
        raise DigestError(f"{what} must be a string, not {type(value).__name__}")
    if len(value) > MAX_HEADER:
        raise DigestError(f"{what} longer than {MAX_HEADER} characters")
    s, n = value, len(value)

    def skip(i: int) -> int:
        while i < n and s[i] in _WS:
            i += 1
        return i

    def token(i: int) -> tuple[str, int]:
        j = i
        while j < n and s[j] in _TCHAR:
            j += 1
        return s[i:j], j

    i = skip(0)
    if i >= n:
        raise DigestError(f"empty {what}")
    scheme, i = token(i)
    if not scheme:
        raise DigestError(f"invalid character {s[i]!r} where the auth scheme should be")
    if scheme.lower() != "digest":
        raise DigestError(f"unsupported auth scheme {scheme!r} (expected Digest)")
    if i < n and s[i] not in _WS:
        raise DigestError(f"invalid character {s[i]!r} after the auth scheme")
    params: dict[str, str] = {}
    while True:
        i = skip(i)
        while i < n and s[i] == ",":  # empty list elements are legal (RFC 7230 §7)
            i = skip(i + 1)
        if i >= n:
            return params
        name, i = token(i)
        if not name:
            raise DigestError(f"invalid character {s[i]!r} at position {i}")
        i = skip(i)
        if i >= n or s[i] != "=":
            raise DigestError(f"expected '=' after parameter {name!r}")
        i = skip(i + 1)
        if i < n and s[i] == '"':
            val, i = _quoted(s, i)
        else:
            val, i = token(i)
            if not val:
                raise DigestError(f"missing value for parameter {name!r}")
        key = name.lower()
        if key in params:
            raise DigestError(f"duplicate parameter {key!r}")
        params[key] = val
        i = skip(i)
        if i < n and s[i] != ",":
            raise DigestError(f"expected ',' after parameter {name!r}")


def _quoted(s: str, i: int) -> tuple[str, int]:
    """Quoted-string at s[i] with backslash escapes; control characters refused (header injection)."""
    out: list[str] = []
    i += 1
    while i < len(s):
        c = s[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\":
            i += 1
            if i >= len(s):
                break
            c = s[i]
        if (c < " " and c != "\t") or c == "\x7f":
            raise DigestError("control character in quoted string")
        out.append(c)
        i += 1
    raise DigestError("unterminated quoted string")


def _algorithm(name: str) -> str:
    """Canonical spelling (algorithm names are case-insensitive); unknown names pass through."""
    return _CANONICAL.get(name.upper(), name)


def parse_challenge(value: str) -> Challenge:
    """Parse a WWW-Authenticate / Proxy-Authenticate value."""
    p = _parse(value, "challenge")
    if "realm" not in p:
        raise DigestError("challenge missing realm")
    if not p.get("nonce"):
        raise DigestError("challenge missing nonce")
    qop = tuple(q.strip().lower() for q in p.get("qop", "").split(",") if q.strip())
    return Challenge(
        realm=p["realm"],
        nonce=p["nonce"],
        algorithm=_algorithm(p.get("algorithm", "MD5")),
        qop=qop,
        opaque=p.get("opaque"),
        stale=p.get("stale", "").lower() == "true",
    )


def parse_authorization(value: str) -> dict[str, str]:
    """Parse an Authorization / Proxy-Authorization value; the fields every response needs must be there."""
    p = _parse(value, "authorization")
    for key in ("username", "realm", "nonce", "uri", "response"):
        if key not in p:
            raise DigestError(f"authorization missing {key}")
    return p


# --- hashing -------------------------------------------------------------------------------


def _hasher(algorithm: str) -> Callable[[bytes], str]:
    """Hex-digest function for an algorithm; DigestError if unknown or absent from this OpenSSL."""
    entry = _ALGORITHMS.get(algorithm.upper())
    if entry is None:
        raise DigestError(f"unsupported algorithm {algorithm!r}")
    name = entry[0]
    try:  # usedforsecurity=False: MD5 is mandated by the protocol, so let it run under FIPS too
        hashlib.new(name, usedforsecurity=False)
    except ValueError:
        raise DigestError(f"algorithm {algorithm} unavailable: this OpenSSL build lacks {name}") from None
    return lambda data: hashlib.new(name, data, usedforsecurity=False).hexdigest()


def _response(
    algorithm: str, username: str, realm: str, password: str, method: str, uri: str,
    nonce: str, qop: str | None, nc: str, cnonce: str, body: bytes,
) -> str:
    """The request-digest of RFC 7616 §3.4.1 (RFC 2069 form when qop is None)."""
    h = _hasher(algorithm)
    H = lambda text: h(text.encode("utf-8"))  # noqa: E731
    ha1 = H(f"{username}:{realm}:{password}")
    if algorithm.upper().endswith("-SESS"):
        ha1 = H(f"{ha1}:{nonce}:{cnonce}")
    ha2 = H(f"{method}:{uri}:{h(body)}" if qop == "auth-int" else f"{method}:{uri}")
    if qop is None:
        return H(f"{ha1}:{nonce}:{ha2}")
    return H(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


# --- client --------------------------------------------------------------------------------


def _pick_qop(offered: tuple[str, ...]) -> str | None:
    """Prefer auth (body-independent); auth-int only when it is all the server offers."""
    if not offered:
        return None
    for q in ("auth", "auth-int"):
        if q in offered:
            return q
    raise DigestError(f"no supported qop in {','.join(offered)!r}")


def select_challenge(values: list[str]) -> Challenge:
    """The strongest usable challenge (RFC 8760 §2.4: a server may offer several); ties go to the first."""
    best: Challenge | None = None
    problems: list[str] = []
    for value in values:
        try:
            ch = parse_challenge(value)
            _hasher(ch.algorithm)
            _pick_qop(ch.qop)
        except DigestError as e:
            problems.append(str(e))
            continue
        if best is None or _ALGORITHMS[ch.algorithm.upper()][1] > _ALGORITHMS[best.algorithm.upper()][1]:
            best = ch
    if best is None:
        raise DigestError("no supported digest challenge" + (f" ({'; '.join(problems)})" if problems else ""))
    return best


def answer_challenge(status: int, headers, creds: Credentials, method: str, uri: str, *,
                     body: bytes = b"") -> tuple[str, str]:
    """The header answering a 401 (WWW-Authenticate -> Authorization) or 407 (Proxy-Authenticate
    -> Proxy-Authorization): ``(name, value)`` for the retried request. ``headers`` is the
    response's (its ``get_all_raw``); DigestError when no challenge can be answered."""
    proxy = status == 407
    challenge = select_challenge(headers.get_all_raw("Proxy-Authenticate" if proxy else "WWW-Authenticate"))
    value = authorization(challenge, creds, method, uri, body=body)
    return ("Proxy-Authorization" if proxy else "Authorization"), value


def _quote(value: str, what: str) -> str:
    """A quoted-string; CR/LF/NUL refused since they could forge headers."""
    if any((c < " " and c != "\t") or c == "\x7f" for c in value):
        raise DigestError(f"control character in {what}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def authorization(
    ch: Challenge, creds: Credentials, method: str, uri: str, *,
    body: bytes = b"", nc: int = 1, cnonce: str | None = None,
) -> str:
    """The Authorization / Proxy-Authorization value answering `ch`."""
    if not method or any(c not in _TCHAR for c in method):
        raise DigestError(f"invalid method {method!r}")
    if not 1 <= nc <= 0xFFFFFFFF:
        raise DigestError(f"nonce count {nc} out of range 1..0xFFFFFFFF")
    qop = _pick_qop(ch.qop)
    algorithm = _algorithm(ch.algorithm)
    if qop is None and algorithm.endswith("-sess"):
        raise DigestError(f"{algorithm} needs a cnonce, so the challenge must offer qop")
    cnonce = secrets.token_hex(16) if cnonce is None else cnonce
    ncs = f"{nc:08x}"
    resp = _response(algorithm, creds.username, ch.realm, creds.password, method, uri,
                     ch.nonce, qop, ncs, cnonce, body)
    parts = [
        f"username={_quote(creds.username, 'username')}",
        f"realm={_quote(ch.realm, 'realm')}",
        f"nonce={_quote(ch.nonce, 'nonce')}",
        f"uri={_quote(uri, 'uri')}",
        f'response="{resp}"',
        f"algorithm={algorithm}",
    ]
    if qop is not None:
        parts += [f"cnonce={_quote(cnonce, 'cnonce')}", f"qop={qop}", f"nc={ncs}"]
    if ch.opaque is not None:
        parts.append(f"opaque={_quote(ch.opaque, 'opaque')}")
    return "Digest " + ",".join(parts)


# --- server --------------------------------------------------------------------------------

_TS, _RAND, _MAC = 8, 14, 32  # 54 bytes -> 72 base64url characters, no padding


class DigestServer:
    """Issues challenges and verifies answers. Nonces are stateless (timestamp + random + HMAC),
    so any number can be outstanding; only nonces actually used are remembered, for replay checks."""

    def __init__(
        self, realm: str, users: Mapping[str, str], *,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"), nonce_ttl: float = 300.0,
        secret: bytes | None = None, clock: Callable[[], float] = time.time,
    ) -> None:
        if not algorithms:
            raise DigestError("at least one algorithm is required")
        for a in algorithms:
            _hasher(a)
        if not nonce_ttl > 0:
            raise DigestError("nonce_ttl must be positive")
        _quote(realm, "realm")
        self.realm = realm
        self.users = users
        self.algorithms = tuple(_algorithm(a) for a in algorithms)
        self.nonce_ttl = float(nonce_ttl)
        self._secret = secrets.token_bytes(32) if secret is None else secret
        self._clock = clock
        self._nc: OrderedDict[str, tuple[int, float]] = OrderedDict()  # nonce -> (last nc, issued at)
        self._evicted_upto = float("-inf")  # newest issue time among nonces forgotten by eviction
        self.opaque = _b64(self._mac(b"opaque"))[:16]

    def _mac(self, data: bytes) -> bytes:
        return hmac.new(self._secret, self.realm.encode("utf-8") + b"\0" + data, hashlib.sha256).digest()

    def _new_nonce(self) -> str:
        raw = struct.pack(">d", self._clock()) + secrets.token_bytes(_RAND)
        return _b64(raw + self._mac(raw))

    def _issued_at(self, nonce: str) -> float | None:
        """When we issued `nonce`, or None if we did not (bad shape or HMAC)."""
        if len(nonce) != 4 * (_TS + _RAND + _MAC) // 3 or not _B64URL.fullmatch(nonce):
            return None
        raw = base64.urlsafe_b64decode(nonce)
        body, mac = raw[:-_MAC], raw[-_MAC:]
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        return struct.unpack(">d", body[:_TS])[0]

    def challenges(self, stale: bool = False) -> list[str]:
        """One WWW-Authenticate value per algorithm, strongest-first as configured (RFC 8760 §2.4)."""
        return [
            f"Digest realm={_quote(self.realm, 'realm')},nonce=\"{self._new_nonce()}\","
            f'algorithm={a},qop="auth",opaque="{self.opaque}"' + (",stale=TRUE" if stale else "")
            for a in self.algorithms
        ]

    def verify(self, method: str, authorization_value: str, *, body: bytes = b"") -> AuthResult:
        """Check an Authorization value; never raises on hostile input."""
        try:
            return self._verify(method, authorization_value, body)
        except DigestError as e:
            return AuthResult(ok=False, reason=str(e))
        except UnicodeError:  # e.g. lone surrogates from a surrogateescape-decoded message
            return AuthResult(ok=False, reason="invalid characters")

    def _verify(self, method: str, value: str, body: bytes) -> AuthResult:
        p = parse_authorization(value)
        user = p["username"]
        fail = lambda reason: AuthResult(ok=False, username=user, reason=reason)  # noqa: E731
        if p["realm"] != self.realm:
            return fail("realm mismatch")
        algorithm = _algorithm(p.get("algorithm", "MD5"))
        if algorithm not in self.algorithms:
            return fail(f"algorithm {algorithm!r} not allowed")
        qop = p.get("qop")
        if qop is None:  # we always offer qop; its absence is a downgrade to RFC 2069
            return fail("missing qop")
        if qop not in ("auth", "auth-int"):
            return fail(f"unsupported qop {qop!r}")
        if not _NC.fullmatch(p.get("nc", "")):
            return fail("bad nonce count")
        if not p.get("cnonce"):
            return fail("missing cnonce")
        if "opaque" in p and p["opaque"] != self.opaque:
            return fail("opaque mismatch")
        issued = self._issued_at(p["nonce"])
        if issued is None:
            return fail("unknown nonce")
        # An unknown user is hashed against a dummy password so its timing matches a wrong password.
        known = user in self.users
        password = self.users[user] if known else "\0unknown\0"
        expected = _response(algorithm, user, self.realm, password, method, p["uri"],
                             p["nonce"], qop, p["nc"], p["cnonce"], body)
        good = hmac.compare_digest(expected.encode(), p["response"].lower().encode("utf-8"))
        if not known:
            return fail("unknown user")
        if not good:
            return fail("bad response")
        # Stale only after the digest checked out (RFC 7616 §3.3): the client may then retry
        # silently with a new nonce, which must not happen for a wrong password.
        nonce, nc = p["nonce"], int(p["nc"], 16)
        age = self._clock() - issued
        if age > self.nonce_ttl or (issued <= self._evicted_upto and nonce not in self._nc):
            return AuthResult(ok=False, username=user, stale=True, reason="stale nonce")
        last = self._nc.get(nonce)
        if last is not None and nc <= last[0]:
            return fail("replayed nonce count")
        self._nc[nonce] = (nc, issued)
        self._nc.move_to_end(nonce)
        while len(self._nc) > MAX_TRACKED_NONCES:
            # A forgotten nonce could be replayed, so everything issued up to it now counts as stale.
            _, (_, t) = self._nc.popitem(last=False)
            self._evicted_upto = max(self._evicted_upto, t)
        return AuthResult(ok=True, username=user)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
