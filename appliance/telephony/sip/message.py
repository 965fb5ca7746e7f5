"""SIP messages (RFC 3261 §7, §20, §25): strict parsing with hard limits, and serialisation.

Everything that arrives from the network goes through ``parse`` (datagrams) or
``StreamFramer`` (TCP), which raise ``SipParseError`` — never anything else — for input that
is truncated, oversized, mis-framed or not SIP. The error carries the status a server should
answer with when the message was recognisably a request (400, 413, 505 ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_MESSAGE = 65_535  # bytes: larger than any UDP datagram; TCP messages are held to it too
MAX_HEADERS = 100
MAX_LINE = 4_096
MAX_BODY = 32_768

COMPACT = {
    "i": "call-id", "m": "contact", "f": "from", "t": "to", "v": "via", "l": "content-length",
    "c": "content-type", "k": "supported", "s": "subject", "e": "content-encoding", "o": "event",
    "r": "refer-to", "b": "referred-by", "x": "session-expires", "u": "allow-events",
}
# How headers are spelled on the way out (the canonical forms PBXs print).
CANONICAL = {
    "call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate", "rseq": "RSeq",
    "rack": "RAck", "mime-version": "MIME-Version",
}
# Headers whose comma-separated values are separate entries (RFC 3261 §7.3.1).
MULTI = {"via", "contact", "route", "record-route", "allow", "supported", "require", "accept",
         "proxy-require", "unsupported", "allow-events"}

METHODS = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY",
           "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE")
_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")
_STATUS_LINE = re.compile(r"^SIP/2\.0 ([1-6][0-9][0-9]) (.*)$")
_REQUEST_LINE = re.compile(r"^([A-Za-z0-9.!%*_+`'~-]+) (\S+) SIP/(\d+\.\d+)$")


class SipParseError(ValueError):
    """Not an acceptable SIP message. ``status`` is the response a UAS should send, if any."""

    def __init__(self, reason: str, status: int = 400):
        super().__init__(reason)
        self.reason = reason
        self.status = status


def canonical_name(name: str) -> str:
    low = name.lower()
    low = COMPACT.get(low, low)
    return CANONICAL.get(low) or "-".join(p.capitalize() for p in low.split("-"))


class Headers:
    """Ordered, case-insensitive multi-map; compact forms (``i``, ``v`` ...) are expanded."""

    __slots__ = ("_items",)

    def __init__(self, items: list[tuple[str, str]] | None = None):
        self._items: list[tuple[str, str]] = []
        for name, value in items or ():
            self.add(name, value)

    @staticmethod
    def _key(name: str) -> str:
        low = name.lower()
        return COMPACT.get(low, low)

    def add(self, name: str, value: str) -> None:
        self._items.append((canonical_name(name), str(value)))

    def set(self, name: str, value: str) -> None:
        """Replace every value of ``name`` with one, kept at the first one's position."""
        key = self._key(name)
        for i, (n, _) in enumerate(self._items):
            if n.lower() == key:
                self._items[i] = (canonical_name(name), str(value))
                self._items = [it for j, it in enumerate(self._items) if j <= i or it[0].lower() != key]
                return
        self.add(name, value)

    def remove(self, name: str) -> None:
        key = self._key(name)
        self._items = [it for it in self._items if it[0].lower() != key]

    def get(self, name: str, default: str | None = None) -> str | None:
        key = self._key(name)
        for n, v in self._items:
            if n.lower() == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value, with comma-joined values of list headers split into entries."""
        key = self._key(name)
        out = []
        for n, v in self._items:
            if n.lower() == key:
                out.extend(split_list(v) if key in MULTI else [v])
        return out

    def option_tags(self, name: str) -> set[str]:
        """The option tags of Require / Supported / Unsupported, lower-cased (RFC 3261 §19.2)."""
        return {v.strip().lower() for v in self.get_all(name) if v.strip()}

    def get_all_raw(self, name: str) -> list[str]:
        """Every value as it came, unsplit (auth challenges contain commas)."""
        key = self._key(name)
        return [v for n, v in self._items if n.lower() == key]

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def copy(self) -> "Headers":
        h = Headers()
        h._items = list(self._items)
        return h


def split_list(value: str) -> list[str]:
    """Split at commas outside quotes and angle brackets."""
    parts, depth, quoted, start, i = [], 0, False, 0, 0
    while i < len(value):
        ch = value[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            parts.append(value[start:i].strip())
            start = i + 1
        i += 1
    parts.append(value[start:].strip())
    return [p for p in parts if p]


@dataclass
class SipMessage:
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    # -- the headers every transaction needs, parsed on demand -----------------------------
    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        raw = self.headers.get("CSeq") or ""
        parts = raw.split()
        if len(parts) != 2 or not parts[0].isdigit() or len(parts[0]) > 10:
            raise SipParseError(f"bad CSeq {raw!r}")
        return int(parts[0]), parts[1].upper()

    @property
    def vias(self) -> list[str]:
        return self.headers.get_all("Via")

    def start_line(self) -> str:
        raise NotImplementedError

    def encode(self) -> bytes:
        """Wire form; Content-Length is always written from the body actually sent."""
        lines = [self.start_line()]
        for name, value in self.headers.items():
            if name.lower() != "content-length":
                lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


@dataclass
class Request(SipMessage):
    method: str = "OPTIONS"
    uri: str = ""

    def start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"


@dataclass
class Response(SipMessage):
    status: int = 200
    reason: str = "OK"

    def start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"


REASONS = {
    100: "Trying", 180: "Ringing", 183: "Session Progress", 200: "OK", 202: "Accepted",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 407: "Proxy Authentication Required", 408: "Request Timeout",
    413: "Request Entity Too Large", 415: "Unsupported Media Type", 420: "Bad Extension",
    422: "Session Interval Too Small", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here", 491: "Request Pending",
    500: "Server Internal Error", 501: "Not Implemented", 503: "Service Unavailable",
    505: "Version Not Supported", 603: "Decline",
}

# Headers a response copies from its request (RFC 3261 §8.2.6.2).
_COPIED = ("Via", "From", "To", "Call-ID", "CSeq")


def make_response(req: Request, status: int, reason: str | None = None, *, to_tag: str | None = None,
                  headers: list[tuple[str, str]] = (), body: bytes = b"") -> Response:
    if to_tag is None and status > 100:  # every response but 100 carries a To tag (§8.2.6.2)
        import secrets

        to_tag = secrets.token_hex(6)
    h = Headers()
    for name in _COPIED:
        for value in (req.headers.get_all(name) if name == "Via" else [req.headers.get(name)]):
            if value is None:
                continue
            if name == "To" and to_tag and ";tag=" not in value.lower().replace(" ", ""):
                value = f"{value};tag={to_tag}"
            h.add(name, value)
    if req.method == "INVITE" and 100 < status < 300:
        # A proxy that Record-Routes (Kamailio in front of several boxes) must see its route
        # set echoed, in order, or the caller's ACK and BYE bypass it (RFC 3261 §12.1.1).
        for value in req.headers.get_all("Record-Route"):
            h.add("Record-Route", value)
    for name, value in headers:
        h.add(name, value)
    return Response(headers=h, body=body, status=status, reason=reason or REASONS.get(status, "Unknown"))


def _decode_head(head: bytes) -> list[str]:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError("headers are not UTF-8") from None
    if "\0" in text:
        raise SipParseError("NUL byte in headers")
    raw = text.split("\r\n") if "\r\n" in text else text.split("\n")
    lines: list[str] = []
    for line in raw:
        if len(line) > MAX_LINE:
            raise SipParseError(f"line longer than {MAX_LINE} bytes", 413)
        if line[:1] in (" ", "\t") and len(lines) > 1:
            lines[-1] += " " + line.strip()  # obsolete line folding
        else:
            lines.append(line)
    return lines


def _parse_head(lines: list[str]) -> tuple[SipMessage, int | None]:
    first = lines[0]
    if first.startswith("SIP/"):
        m = _STATUS_LINE.match(first)
        if not m:
            raise SipParseError(f"bad status line {first[:80]!r}", 0)
        msg: SipMessage = Response(status=int(m[1]), reason=m[2])
    else:
        m = _REQUEST_LINE.match(first)
        if not m:
            raise SipParseError(f"bad request line {first[:80]!r}")
        if m[3] != "2.0":
            raise SipParseError(f"SIP version {m[3]} is not supported", 505)
        if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$", m[2]):
            raise SipParseError(f"bad Request-URI {m[2][:80]!r}")
        msg = Request(method=m[1], uri=m[2])
    if len(lines) - 1 > MAX_HEADERS:
        raise SipParseError(f"more than {MAX_HEADERS} headers", 413)
    headers = Headers()
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not _TOKEN.match(name):
            raise SipParseError(f"bad header line {line[:80]!r}")
        headers.add(name, value.strip())
    msg.headers = headers
    length = headers.get("Content-Length")
    if length is not None:
        if not length.isdigit() or len(length) > 6:
            raise SipParseError(f"bad Content-Length {length[:20]!r}")
        length = int(length)
        if length > MAX_BODY:
            raise SipParseError(f"body of {length} bytes exceeds {MAX_BODY}", 413)
    for name in ("Call-ID", "CSeq", "From", "To", "Via"):
        if name not in headers:
            raise SipParseError(f"missing {name} header")
    number, method = msg.cseq
    if isinstance(msg, Request) and method != msg.method.upper() and not (msg.method == "ACK" and method == "ACK"):
        raise SipParseError(f"CSeq method {method} does not match {msg.method}")
    if len(headers.get_all("Via")) > 70:
        raise SipParseError("too many Via entries", 483 if isinstance(msg, Request) else 400)
    return msg, length


def parse(data: bytes) -> SipMessage:
    """One message from one datagram (RFC 3261 §18.3: Content-Length optional, excess ignored)."""
    if len(data) > MAX_MESSAGE:
        raise SipParseError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}", 413)
    data = data.lstrip(b"\r\n")
    sep = data.find(b"\r\n\r\n")
    sep_len = 4
    if sep < 0:
        sep, sep_len = data.find(b"\n\n"), 2
    if sep < 0:
        raise SipParseError("truncated: no blank line after the headers")
    msg, length = _parse_head(_decode_head(data[:sep]))
    body = data[sep + sep_len:]
    if length is not None:
        if length > len(body):
            raise SipParseError(f"truncated: Content-Length {length} but {len(body)} body bytes")
        body = body[:length]
    elif len(body) > MAX_BODY:
        raise SipParseError(f"body exceeds {MAX_BODY}", 413)
    msg.body = body
    return msg


class StreamFramer:
    """Cuts a TCP byte stream into messages (RFC 3261 §18.3: Content-Length is mandatory).

    ``feed`` returns the complete messages so far; a framing error raises SipParseError and
    the connection must be closed, since the stream position is lost. Bare CRLFs between
    messages are keep-alives (RFC 5626) and are counted in ``pings``.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.pings = 0

    def feed(self, data: bytes) -> list[SipMessage]:
        self._buf += data
        out = []
        while True:
            stripped = len(self._buf) - len(self._buf.lstrip(b"\r\n"))
            if stripped:
                self.pings += self._buf[:stripped].count(b"\r\n\r\n")
                del self._buf[:stripped]
            sep = self._buf.find(b"\r\n\r\n")
            if sep < 0:
                if len(self._buf) > MAX_MESSAGE:
                    raise SipParseError("headers exceed the message size limit", 413)
                return out
            lines = _decode_head(bytes(self._buf[:sep]))
            msg, length = _parse_head(lines)
            if length is None:
                raise SipParseError("missing Content-Length on a stream transport")
            end = sep + 4 + length
            if end > MAX_MESSAGE:
                raise SipParseError("message exceeds the size limit", 413)
            if len(self._buf) < end:
                return out
            msg.body = bytes(self._buf[sep + 4:end])
            del self._buf[:end]
            out.append(msg)
