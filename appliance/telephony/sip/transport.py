"""SIP over UDP and TCP on one address (RFC 3261 §18), on asyncio.

Incoming bytes become messages for ``on_message(msg, peer)``; anything unparseable is
counted, answered with a 400 when enough of a request is readable to address one, and
otherwise dropped. Requests get ``received``/``rport`` on their top Via (RFC 3581) and
responses go back where the request came from, which is what NATed phones and gateways
need. TCP connections are kept per peer and reused for requests to that peer.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Callable

from .headers import Via
from .message import MAX_MESSAGE, REASONS, SipMessage, Request, SipParseError, StreamFramer, parse

log = logging.getLogger("appliance.sip")


@dataclass(frozen=True)
class Peer:
    transport: str  # "UDP" | "TCP"
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        return self.transport == "TCP"


def _emergency_response(data: bytes, status: int, reason: str) -> bytes | None:
    """An error response (400, 413, 505 ...) for a request too broken to parse, if its
    Via/From/To/Call-ID/CSeq lines are readable enough to address one."""
    try:
        text = data[:MAX_MESSAGE].decode("utf-8", "replace")
    except Exception:
        return None
    first = text.split("\n", 1)[0].rstrip("\r")
    if first.startswith(("SIP/", "ACK ")) or not re.search(r" SIP/\d+\.\d+$", first):
        return None  # nothing answers a response, and nothing may answer an ACK
    wanted = {"via": None, "v": None, "from": None, "f": None, "to": None, "t": None,
              "call-id": None, "i": None, "cseq": None}
    lines = []
    for line in re.split(r"\r?\n", text)[1:60]:
        name = line.split(":", 1)[0].strip().lower()
        if name in wanted and ":" in line and len(line) < 1000:
            lines.append(line.strip())
    names = {ln.split(":", 1)[0].strip().lower() for ln in lines}
    if not ({"via", "v"} & names and {"cseq"} & names and {"call-id", "i"} & names):
        return None
    phrase = re.sub(r"[^\x20-\x7e]", "?", reason)[:100] if status == 400 else REASONS.get(status, "Bad Request")
    return (f"SIP/2.0 {status} {phrase}\r\n" + "\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


class SipTransport:
    def __init__(self, on_message: Callable[[SipMessage, Peer], None]):
        self.on_message = on_message
        self.udp: asyncio.DatagramTransport | None = None
        self.tcp_server: asyncio.base_events.Server | None = None
        self.connections: dict[tuple[str, int], "_TcpConnection"] = {}
        self.local_host = ""
        self.local_port = 0
        self.malformed = 0
        self.received = 0

    async def start(self, host: str, port: int, *, tcp: bool = True) -> None:
        loop = asyncio.get_running_loop()
        self.udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=(host, port))
        self.local_host, self.local_port = self.udp.get_extra_info("sockname")[:2]
        if tcp:
            self.tcp_server = await loop.create_server(lambda: _TcpConnection(self), host, self.local_port)

    def close(self) -> None:
        if self.udp is not None:
            self.udp.close()
        if self.tcp_server is not None:
            self.tcp_server.close()
        for conn in list(self.connections.values()):
            conn.transport.close()

    def send(self, msg: SipMessage | bytes, peer: Peer) -> bool:
        data = msg if isinstance(msg, bytes) else msg.encode()
        if peer.transport == "UDP":
            if self.udp is None or self.udp.is_closing():
                return False
            self.udp.sendto(data, (peer.host, peer.port))
            return True
        conn = self.connections.get((peer.host, peer.port))
        if conn is None or conn.transport.is_closing():
            log.warning("no TCP connection to %s:%d; message dropped", peer.host, peer.port)
            return False
        conn.transport.write(data)
        return True

    # -- incoming ------------------------------------------------------------------------
    def deliver(self, data: bytes, peer: Peer) -> None:
        self.received += 1
        if data.strip(b"\r\n") == b"":
            if peer.transport == "UDP" and data == b"\r\n\r\n":
                self.send(b"\r\n", peer)  # RFC 5626 keep-alive pong
            return
        try:
            msg = parse(data)
        except SipParseError as exc:
            self.reject(data, peer, exc)
            return
        self.dispatch(msg, peer)

    def reject(self, data: bytes, peer: Peer, exc: SipParseError) -> None:
        self.malformed += 1
        log.warning("malformed SIP from %s:%d (%s)", peer.host, peer.port, exc.reason)
        if exc.status:
            answer = _emergency_response(data, exc.status, exc.reason)
            if answer is not None:
                self.send(answer, peer)

    def dispatch(self, msg: SipMessage, peer: Peer) -> None:
        if isinstance(msg, Request):
            try:
                top = Via.parse(msg.vias[0])
            except SipParseError as exc:
                self.reject(msg.encode(), peer, exc)
                return
            top.params["received"] = peer.host
            if "rport" in top.params:
                top.params["rport"] = str(peer.port)
            vias = msg.headers.get_all("Via")
            msg.headers.remove("Via")
            for i, value in enumerate(vias):
                msg.headers.add("Via", str(top) if i == 0 else value)
        try:
            self.on_message(msg, peer)
        except SipParseError as exc:  # a header the core needed was unreadable
            self.reject(msg.encode(), peer, exc)
        except Exception:  # a bug in handling one message must not take the transport down
            log.exception("error handling %s from %s:%d", getattr(msg, "method", "response"), peer.host, peer.port)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport):
        self.owner = owner

    def datagram_received(self, data: bytes, addr) -> None:
        self.owner.deliver(data, Peer("UDP", addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable and friends
        log.debug("UDP error: %s", exc)


class _TcpConnection(asyncio.Protocol):
    def __init__(self, owner: SipTransport):
        self.owner = owner
        self.framer = StreamFramer()
        self.peer: Peer | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = Peer("TCP", host, port)
        self.owner.connections[(host, port)] = self

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.framer.feed(data)
        except SipParseError as exc:
            self.owner.malformed += 1
            log.warning("closing TCP connection from %s:%d: %s", self.peer.host, self.peer.port, exc.reason)
            self.transport.close()  # the stream position is lost: nothing after this can be trusted
            return
        for msg in messages:
            self.owner.received += 1
            self.owner.dispatch(msg, self.peer)

    def connection_lost(self, exc) -> None:
        if self.peer is not None:
            self.owner.connections.pop((self.peer.host, self.peer.port), None)
