"""Structured SIP header values: URIs, name-addr (From/To/Contact/Refer-To), Via, parameters.

Parsers raise ``SipParseError`` on anything they cannot read, so a hostile header becomes a
400, never an exception from deep inside a call.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

from .message import SipParseError

BRANCH_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7


def new_branch() -> str:
    return BRANCH_COOKIE + secrets.token_hex(8)


def new_tag() -> str:
    return secrets.token_hex(6)


def new_call_id(host: str) -> str:
    return f"{secrets.token_hex(12)}@{host}"


def parse_params(text: str) -> dict[str, str | None]:
    """``;a=1;b;c="x;y"`` → {"a": "1", "b": None, "c": "x;y"} (names lower-cased)."""
    params: dict[str, str | None] = {}
    for part in _split_unquoted(text, ";"):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        if not name or not re.match(r"^[a-z0-9.!%*_+`'~-]+$", name):
            raise SipParseError(f"bad parameter {part[:40]!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        params[name] = value if sep else None
    return params


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def _split_unquoted(text: str, sep: str) -> list[str]:
    parts, quoted, start = [], False, 0
    for i, ch in enumerate(text):
        if ch == '"' and (i == 0 or text[i - 1] != "\\"):
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


_HOSTPORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$")


def _hostport(text: str) -> tuple[str, int | None]:
    m = _HOSTPORT.match(text)
    if not m:
        raise SipParseError(f"bad host {text[:60]!r}")
    port = int(m[2]) if m[2] else None
    if port is not None and not 0 < port < 65536:
        raise SipParseError(f"bad port {port}")
    return m[1], port


@dataclass
class SipUri:
    scheme: str = "sip"
    user: str = ""
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str = ""  # ?a=b... kept raw (Replaces in a Refer-To rides here)

    @classmethod
    def parse(cls, text: str) -> "SipUri":
        text = text.strip()
        scheme, sep, rest = text.partition(":")
        scheme = scheme.lower()
        if not sep or scheme not in ("sip", "sips"):
            raise SipParseError(f"not a sip: URI {text[:60]!r}", 416)
        rest, _, headers = rest.partition("?")
        userinfo, at, hostpart = rest.rpartition("@")
        if not at:
            hostpart, userinfo = rest, ""
        hostport, *param_parts = hostpart.split(";", 1)
        host, port = _hostport(hostport)
        params = parse_params(param_parts[0]) if param_parts else {}
        user = userinfo.split(":", 1)[0]  # a password in a URI is never used
        return cls(scheme, user, host, port, params, headers)

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        headers = f"?{self.headers}" if self.headers else ""
        return f"{self.scheme}:{user}{self.host}{port}{format_params(self.params)}{headers}"


@dataclass
class NameAddr:
    uri: SipUri
    display: str = ""
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @classmethod
    def parse(cls, text: str) -> "NameAddr":
        text = text.strip()
        if "<" in text:
            lt = text.index("<")
            gt = text.find(">", lt)
            if gt < 0:
                raise SipParseError(f"unclosed <> in {text[:60]!r}")
            display = text[:lt].strip().strip('"')
            uri = SipUri.parse(text[lt + 1:gt])
            params = parse_params(text[gt + 1:])
        else:  # addr-spec: parameters after the URI belong to the header, not the URI
            uri_text, _, param_text = text.partition(";")
            display, uri, params = "", SipUri.parse(uri_text), parse_params(param_text)
        return cls(uri, display, params)

    def __str__(self) -> str:
        display = f'"{self.display}" ' if self.display else ""
        return f"{display}<{self.uri}>{format_params(self.params)}"


@dataclass
class Via:
    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def branch(self) -> str:
        return self.params.get("branch") or ""

    @classmethod
    def parse(cls, text: str) -> "Via":
        m = re.match(r"^\s*SIP\s*/\s*2\.0\s*/\s*([A-Za-z]+)\s+([^;\s]+)\s*(;.*)?$", text)
        if not m:
            raise SipParseError(f"bad Via {text[:80]!r}")
        host, port = _hostport(m[2])
        return cls(m[1].upper(), host, port, parse_params(m[3] or ""))

    def __str__(self) -> str:
        port = f":{self.port}" if self.port else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{format_params(self.params)}"
