"""Client and server transactions (RFC 3261 §17) with their retransmission timers.

Over UDP a request or final response is retransmitted until the peer shows it arrived, with
intervals doubling from T1 (capped at T2 where the RFC says so); over TCP nothing is
retransmitted and the "absorb" timers are zero. Timer names follow the RFC:

    client INVITE      A retransmit, B give up (64*T1), D absorb response retransmissions
    client non-INVITE  E retransmit, F give up (64*T1), K absorb
    server INVITE      G retransmit final non-2xx, H give up waiting for ACK, I absorb ACKs
    server non-INVITE  J absorb request retransmissions

2xx to INVITE is the dialog's business (RFC 3261 §13.3.1.4): see ``Reliable2xx``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Callable

from .headers import Via
from .message import SipMessage, Request, Response, SipParseError
from .transport import Peer, SipTransport

log = logging.getLogger("appliance.sip")


@dataclass(frozen=True)
class Timers:
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    @property
    def b(self) -> float:
        return 64 * self.t1


class TransactionTimeout(TimeoutError):
    """No final response within 64*T1 (Timer B or F): treat as 408."""


def server_key(req: Request) -> tuple[str, str, str]:
    via = Via.parse(req.vias[0])
    method = "INVITE" if req.method == "ACK" else req.method
    return via.branch, f"{via.host}:{via.port or 5060}", method


def client_key(msg: SipMessage) -> tuple[str, str]:
    via = Via.parse(msg.vias[0])
    return via.branch, msg.cseq[1]


class ServerTransaction:
    def __init__(self, layer: "TransactionLayer", req: Request, peer: Peer):
        self.layer = layer
        self.request = req
        self.peer = peer
        self.invite = req.method == "INVITE"
        self.state = "proceeding"
        self.last_response: Response | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.acked = asyncio.get_running_loop().create_future()  # INVITE non-2xx: ACK arrived

    def respond(self, resp: Response) -> None:
        if self.state in ("accepted", "completed", "confirmed", "terminated"):
            return  # a final response was already sent
        self.last_response = resp
        self.layer.transport.send(resp, self.peer)
        if resp.status < 200:
            return
        timers = self.layer.timers
        if self.invite and resp.status < 300:
            # RFC 6026 "Accepted": the dialog retransmits the 2xx (Reliable2xx); this state
            # only absorbs retransmitted INVITEs, so a lost 200 never makes a second call
            self.state = "accepted"
            self._schedule(timers.b, self._terminate)
        elif self.invite:
            self.state = "completed"
            if not self.peer.reliable:
                self._retransmit(timers.t1)
            self._schedule(timers.b, self._give_up)  # Timer H
        else:
            self.state = "completed"
            self._schedule(0 if self.peer.reliable else timers.b, self._terminate)  # Timer J

    def on_retransmission(self, req: Request) -> None:
        if req.method == "ACK" and self.state == "accepted":
            return  # an ACK for the 2xx is the dialog's (it has its own branch anyway)
        if req.method == "ACK":
            if self.state == "completed":
                self.state = "confirmed"
                if not self.acked.done():
                    self.acked.set_result(True)
                self._schedule(0 if self.peer.reliable else self.layer.timers.t4, self._terminate)  # I
            return
        if self.last_response is not None:
            self.layer.transport.send(self.last_response, self.peer)

    def _retransmit(self, interval: float) -> None:  # Timer G
        def fire() -> None:
            if self.state == "completed":
                self.layer.retransmits_out += 1
                self.layer.transport.send(self.last_response, self.peer)
                self._retransmit(min(2 * interval, self.layer.timers.t2))

        self.layer.loop.call_later(interval, fire)

    def _give_up(self) -> None:
        if self.state == "completed":
            log.info("no ACK for %d to %s", self.last_response.status, self.request.call_id)
            if not self.acked.done():
                self.acked.set_result(False)
        self._terminate()

    def _schedule(self, delay: float, fn: Callable[[], None]) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.layer.loop.call_later(delay, fn)

    def _terminate(self) -> None:
        self.state = "terminated"
        if self._timer is not None:
            self._timer.cancel()
        self.layer.server.pop(self.key, None)

    @property
    def key(self):
        return server_key(self.request)


class ClientTransaction:
    def __init__(self, layer: "TransactionLayer", req: Request, peer: Peer,
                 on_provisional: Callable[[Response], None] | None = None):
        self.layer = layer
        self.request = req
        self.peer = peer
        self.invite = req.method == "INVITE"
        self.on_provisional = on_provisional
        self.state = "calling" if self.invite else "trying"
        self.final: asyncio.Future[Response] = layer.loop.create_future()
        self._handles: list[asyncio.TimerHandle] = []
        self.key = client_key(req)

    def start(self) -> None:
        self.layer.transport.send(self.request, self.peer)
        timers = self.layer.timers
        if not self.peer.reliable:
            self._retransmit(timers.t1)
        self._handles.append(self.layer.loop.call_later(timers.b, self._timeout))  # B / F

    def _retransmit(self, interval: float) -> None:  # Timer A / E
        def fire() -> None:
            if self.state in ("calling", "trying") or (not self.invite and self.state == "proceeding"):
                self.layer.retransmits_out += 1
                self.layer.transport.send(self.request, self.peer)
                nxt = 2 * interval if self.invite else min(2 * interval, self.layer.timers.t2)
                self._retransmit(nxt)

        self._handles.append(self.layer.loop.call_later(interval, fire))

    def on_response(self, resp: Response) -> None:
        if self.state in ("completed", "terminated"):
            if self.invite and resp.status >= 300:
                self._send_ack(resp)  # our ACK was lost: the server retransmitted its final
            return
        if resp.status < 200:
            self.state = "proceeding"
            if self.on_provisional is not None:
                self.on_provisional(resp)
            return
        if not self.final.done():
            self.final.set_result(resp)
        if self.invite and resp.status >= 300:
            self._send_ack(resp)
            self.state = "completed"
            self._finish(0 if self.peer.reliable else 32.0)  # Timer D
        elif self.invite:
            self._finish(0)  # 2xx: the dialog sends the ACK
        else:
            self.state = "completed"
            self._finish(0 if self.peer.reliable else self.layer.timers.t4)  # Timer K

    def _send_ack(self, resp: Response) -> None:
        """ACK for a non-2xx final: same branch as the INVITE (RFC 3261 §17.1.1.3)."""
        req = self.request
        ack = Request(method="ACK", uri=req.uri)
        ack.headers.add("Via", req.vias[0])
        for name in ("Route",):
            for value in req.headers.get_all(name):
                ack.headers.add(name, value)
        ack.headers.add("From", req.headers.get("From"))
        ack.headers.add("To", resp.headers.get("To"))
        ack.headers.add("Call-ID", req.call_id)
        ack.headers.add("CSeq", f"{req.cseq[0]} ACK")
        ack.headers.add("Max-Forwards", "70")
        self.layer.transport.send(ack, self.peer)

    def _timeout(self) -> None:
        if not self.final.done():
            self.final.set_exception(TransactionTimeout(f"no final response to {self.request.method} "
                                                        f"within {self.layer.timers.b:g} s"))
        self._finish(0)

    def cancel_timers(self) -> None:
        for h in self._handles:
            h.cancel()

    def _finish(self, linger: float) -> None:
        self.cancel_timers()

        def drop() -> None:
            self.state = "terminated"
            self.layer.client.pop(self.key, None)

        if linger:
            self.layer.loop.call_later(linger, drop)
        else:
            drop()


class TransactionLayer:
    """Matches requests and responses to transactions; hands new requests to the core."""

    def __init__(self, transport: SipTransport, timers: Timers = Timers()):
        self.transport = transport
        self.timers = timers
        self.loop = asyncio.get_running_loop()
        self.server: dict[tuple, ServerTransaction] = {}
        self.client: dict[tuple, ClientTransaction] = {}
        self.retransmits_in = 0  # requests the peer sent again (our answer was lost or slow)
        self.retransmits_out = 0  # requests and responses we sent again (the peer's was lost)

    def server_transaction(self, req: Request, peer: Peer) -> ServerTransaction | None:
        """The new transaction for ``req``, or None when it was a retransmission (absorbed
        here) or an ACK (returned to the caller through ``ack_for_2xx``)."""
        key = server_key(req)
        existing = self.server.get(key)
        if existing is not None:
            if req.method != "ACK":
                self.retransmits_in += 1
            existing.on_retransmission(req)
            return None
        if req.method == "ACK":
            return None
        st = ServerTransaction(self, req, peer)
        self.server[key] = st
        return st

    def find_invite(self, req: Request) -> ServerTransaction | None:
        """The INVITE transaction a CANCEL refers to (same branch and sent-by)."""
        branch, sent_by, _ = server_key(req)
        return self.server.get((branch, sent_by, "INVITE"))

    def request(self, req: Request, peer: Peer,
                on_provisional: Callable[[Response], None] | None = None) -> ClientTransaction:
        ct = ClientTransaction(self, req, peer, on_provisional)
        self.client[ct.key] = ct
        ct.start()
        return ct

    def on_response(self, resp: Response) -> bool:
        try:
            ct = self.client.get(client_key(resp))
        except SipParseError:
            return False
        if ct is None:
            return False
        ct.on_response(resp)
        return True


class Reliable2xx:
    """Retransmits a 2xx to INVITE until its ACK arrives (RFC 3261 §13.3.1.4): T1 doubling to
    T2, giving up after 64*T1, after which the call must be ended with BYE. The first copy
    is the server transaction's to send."""

    def __init__(self, layer: TransactionLayer, resp: Response, peer: Peer):
        self.layer = layer
        self.resp = resp
        self.peer = peer
        self.cseq = resp.cseq[0]  # the ACK that stops us carries this CSeq number
        self.acked = layer.loop.create_future()
        if not peer.reliable:
            self._schedule(layer.timers.t1)
        self._deadline = layer.loop.call_later(layer.timers.b, self._give_up)

    def _schedule(self, interval: float) -> None:
        def fire() -> None:
            if not self.acked.done():
                self.layer.retransmits_out += 1
                self.layer.transport.send(self.resp, self.peer)
                self._schedule(min(2 * interval, self.layer.timers.t2))

        self.layer.loop.call_later(interval, fire)

    def ack(self) -> None:
        if not self.acked.done():
            self.acked.set_result(True)
            self._deadline.cancel()

    def _give_up(self) -> None:
        if not self.acked.done():
            self.acked.set_result(False)
