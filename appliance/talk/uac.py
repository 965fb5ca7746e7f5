"""A minimal SIP caller (UAC) on asyncio: rings sipd the way a PBX trunk or a phone does.

`appliancectl talk` is meant to talk to the agent *exactly like a call does*, so it goes in
through sipd's front door (INVITE with an SDP offer, ACK, BYE either way, CANCEL) rather than
writing to the rings. It is built on sipd's own SIP layer (transport, client and server
transactions with their retransmissions, dialogs, digest) and adds only what a caller does.
Every way a call can fail ends in ``CallFailed`` with one line that says why.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from typing import Callable, Sequence

from ..telephony import sdp
from ..telephony.codecs import Codec
from ..telephony.sip.dialog import Dialog
from ..telephony.sip.digest import Credentials, DigestError, answer_challenge
from ..telephony.sip.headers import NameAddr, SipUri, Via, new_branch, new_call_id, new_tag
from ..telephony.sip.message import SipMessage, Request, Response, SipParseError, make_response
from ..telephony.sip.transaction import TransactionLayer, TransactionTimeout
from ..telephony.sip.transport import Peer, SipTransport

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, NOTIFY"
USER_AGENT = "appliancectl-talk"

# What a refusal from sipd usually means on this box (see sipd's endpoint and config).
HINTS = {
    401: "sipd asks for digest credentials and none matched (sip.auth_users)",
    403: "sipd refused this address (sip.allow_from) or the credentials",
    407: "sipd asks for digest credentials and none matched (sip.auth_users)",
    420: "sipd does not support an extension we required",
    480: "nobody answered in time (agentd did not answer within sip.answer_timeout)",
    486: "busy",
    488: "no codec in common with sipd (sip.codecs)",
    503: "sipd is at sip.max_calls or out of RTP ports",
    603: "the agent declined the call",
}


class CallFailed(RuntimeError):
    """The call could not be made or broke; the message is one line for the person at the box.
    ``status``: the final response that refused it (0 when none came); ``response`` itself."""

    def __init__(self, message: str, response: Response | None = None):
        super().__init__(message)
        self.response = response
        self.status = response.status if response is not None else 0


def describe(resp: Response) -> str:
    text = f"{resp.status} {resp.reason}"
    hint = HINTS.get(resp.status)
    warning = resp.headers.get("Warning")
    if hint:
        text += f": {hint}"
    if warning:
        text += f" ({warning})"
    if resp.headers.get("Retry-After"):
        text += f"; retry after {resp.headers.get('Retry-After')} s"
    return text


def local_address_for(host: str, port: int) -> str:
    """The address this box would send from to reach ``host`` (loopback for loopback)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((host, port))  # UDP: picks a route, sends nothing
        return s.getsockname()[0]


class Uac:
    """One outgoing call over UDP. ``on_progress(status, reason)`` sees 100/180/183;
    ``on_notice(text)`` sees requests from the far end the line cannot follow (a transfer);
    ``hung_up`` is set when the far end sends BYE."""

    def __init__(self, target: str, *, user: str = "talk", display: str = "appliancectl talk",
                 credentials: Credentials | None = None, connect_timeout: float = 4.0):
        self.uri = SipUri.parse(target)  # SipParseError for a bad --to: the caller's usage error
        if not self.uri.host:
            raise SipParseError(f"no host in {target!r}")
        self.target = str(self.uri)
        self.user, self.display = user, display
        self.credentials = credentials
        self.connect_timeout = connect_timeout
        self.on_progress: Callable[[int, str], None] = lambda status, reason: None
        self.on_notice: Callable[[str], None] = lambda text: None
        self.hung_up = asyncio.Event()
        self.dialog: Dialog | None = None
        self.call_id = ""
        self.local_host = ""
        self._transport: SipTransport | None = None
        self._layer: TransactionLayer | None = None
        self._invite: Request | None = None
        self._tag = new_tag()
        self._cseq = 0
        self._heard = asyncio.Event()

    async def start(self) -> str:
        """Resolve the target and open our SIP socket; returns the local address (for RTP)."""
        host, port = self.uri.host.strip("[]"), self.uri.port or 5060
        loop = asyncio.get_running_loop()
        try:
            addr = (await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM))[0][4]
            self.local_host = local_address_for(addr[0], addr[1])
        except OSError as exc:
            raise CallFailed(f"cannot reach {host}:{port} ({exc.strerror or exc})") from None
        self._peer = Peer("UDP", addr[0], addr[1])
        self._transport = SipTransport(self._on_message)
        await self._transport.start(self.local_host, 0, tcp=False)
        self._layer = TransactionLayer(self._transport)
        self.call_id = new_call_id(self.local_host)
        return self.local_host

    @property
    def _from(self) -> str:
        return f'"{self.display}" <sip:{self.user}@{self.local_host}>'

    @property
    def _contact(self) -> str:
        host = f"[{self.local_host}]" if ":" in self.local_host else self.local_host
        return f"<sip:{self.user}@{host}:{self._transport.local_port}>"

    # -- the call ---------------------------------------------------------------------------
    async def invite(self, rtp_port: int, codecs: Sequence[Codec]) -> sdp.Negotiated:
        """Ring the target with an offer of ``codecs`` (in order) and telephone-event; returns
        what was agreed once answered and ACKed, else raises CallFailed. Cancelling the task
        while it rings sends CANCEL (and hangs up at once if the answer crossed it)."""
        offer = sdp.offer(local_address=self.local_host, local_port=rtp_port,
                          session_id=secrets.randbelow(2**31), session_version=1, codecs=codecs,
                          username="talk").serialize().encode()
        auth: tuple[str, str] | None = None
        while True:
            req = self._invite = self._invite_request(offer, auth)
            resp = await self._final(req)
            if resp.status in (401, 407) and auth is None and self.credentials is not None:
                auth = self._answer_challenge(resp, req)
                continue
            break
        if resp.status >= 300:
            raise CallFailed(f"{self.target} refused the call: {describe(resp)}", resp)
        self._confirm(resp)
        try:
            if not resp.body:
                raise sdp.SdpError("no SDP in the 200 OK")
            return sdp.negotiate(sdp.parse(resp.body), codecs)
        except sdp.SdpError as exc:
            await self.bye()
            raise CallFailed(f"{self.target} answered with unusable SDP ({exc})") from None

    def _invite_request(self, body: bytes, auth: tuple[str, str] | None) -> Request:
        self._cseq += 1
        req = Request(method="INVITE", uri=self.target, body=body)
        h = req.headers
        h.add("Via", str(Via("UDP", self.local_host, self._transport.local_port,
                             {"branch": new_branch(), "rport": None})))
        h.add("Max-Forwards", "70")
        h.add("From", f"{self._from};tag={self._tag}")
        h.add("To", f"<{self.target}>")
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{self._cseq} INVITE")
        h.add("Contact", self._contact)
        h.add("Allow", ALLOW)
        h.add("User-Agent", USER_AGENT)
        if auth is not None:
            h.add(*auth)
        h.add("Content-Type", "application/sdp")
        return req

    def _answer_challenge(self, resp: Response, req: Request) -> tuple[str, str]:
        try:
            return answer_challenge(resp.status, resp.headers, self.credentials, "INVITE", req.uri, body=req.body)
        except DigestError as exc:
            raise CallFailed(f"{self.target} asked for credentials we cannot give ({exc})") from None

    async def _final(self, req: Request) -> Response:
        self._heard.clear()

        def provisional(resp: Response) -> None:
            self._heard.set()
            self.on_progress(resp.status, resp.reason)

        ct = self._layer.request(req, self._peer, on_provisional=provisional)
        try:
            done, _ = await asyncio.wait({ct.final}, timeout=self.connect_timeout)
            if not done and not self._heard.is_set():
                ct.cancel_timers()
                self._layer.client.pop(ct.key, None)
                raise CallFailed(f"no answer from {self._peer.host}:{self._peer.port} within "
                                 f"{self.connect_timeout:g} s: is sipd running there? (appliancectl status)")
            return await ct.final
        except TransactionTimeout as exc:
            raise CallFailed(f"{self.target}: {exc}") from None
        except asyncio.CancelledError:
            await self._cancel(req, ct)
            raise

    async def _cancel(self, req: Request, ct) -> None:
        """CANCEL a ringing INVITE (RFC 3261 §9.1): same branch, Request-URI, From, To, Call-ID."""
        if self._heard.is_set() and not ct.final.done():
            cancel = Request(method="CANCEL", uri=req.uri)
            for name in ("Via", "Max-Forwards", "From", "To", "Call-ID"):
                cancel.headers.add(name, req.headers.get(name))
            cancel.headers.add("CSeq", f"{req.cseq[0]} CANCEL")
            self._layer.request(cancel, self._peer)
        try:
            resp = await asyncio.wait_for(asyncio.shield(ct.final), 2.0)
        except (asyncio.TimeoutError, TransactionTimeout):
            return
        if 200 <= resp.status < 300:  # answered as we cancelled: confirm, then hang up
            self._confirm(resp)
            await self.bye()

    def _confirm(self, resp: Response) -> None:
        """The dialog from our side (RFC 3261 §12.1.2) and the ACK for its 2xx (§13.2.2.4)."""
        to = NameAddr.parse(resp.headers.get("To"))
        remote_tag = to.tag or ""
        to.params.pop("tag", None)
        contacts = resp.headers.get_all("Contact")
        target = str(NameAddr.parse(contacts[0]).uri) if contacts else self.target
        self.dialog = Dialog(
            call_id=self.call_id, local_tag=self._tag, remote_tag=remote_tag, local_uri=self._from,
            remote_uri=str(to), remote_target=target,
            route_set=list(reversed(resp.headers.get_all("Record-Route"))), local_contact=self._contact,
            peer=self._peer, via_host=self.local_host, via_port=self._transport.local_port,
            local_seq=self._invite.cseq[0])
        self._transport.send(self.dialog.ack(self._invite), self.dialog.next_peer())

    async def bye(self, timeout: float = 2.0) -> bool:
        """Hang up; True when the far end confirmed. Nothing to do if it already hung up."""
        if self.dialog is None or self.hung_up.is_set():
            return True
        ct = self._layer.request(self.dialog.request("BYE"), self.dialog.next_peer())
        try:
            resp = await asyncio.wait_for(asyncio.shield(ct.final), timeout)
        except (asyncio.TimeoutError, TransactionTimeout):
            return False
        return resp.status < 300 or resp.status == 481

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # -- what sipd sends us -----------------------------------------------------------------
    def _on_message(self, msg: SipMessage, peer: Peer) -> None:
        if isinstance(msg, Response):
            if not self._layer.on_response(msg) and self.dialog is not None and msg.call_id == self.call_id \
                    and msg.cseq[1] == "INVITE" and 200 <= msg.status < 300:
                self._transport.send(self.dialog.ack(self._invite), self.dialog.next_peer())  # our ACK was lost
            return
        if msg.method == "ACK":
            return
        st = self._layer.server_transaction(msg, peer)
        if st is None:
            return  # a retransmission, answered by its transaction
        if self.dialog is None or msg.call_id != self.call_id:
            st.respond(make_response(msg, 481))
            return
        if not self.dialog.accepts(msg):
            st.respond(make_response(msg, 500, "Out Of Order CSeq"))
            return
        if msg.method == "BYE":
            st.respond(make_response(msg, 200))
            self.hung_up.set()
        elif msg.method in ("UPDATE", "INFO", "OPTIONS", "NOTIFY"):
            st.respond(make_response(msg, 200, headers=[("Contact", self._contact)]))
        elif msg.method == "REFER":
            target = msg.headers.get("Refer-To") or "?"
            st.respond(make_response(msg, 603, "Decline"))
            self.on_notice(f"the agent asked to transfer the call to {target}; a local line cannot follow it")
        elif msg.method == "INVITE":
            st.respond(make_response(msg, 488))  # sipd never re-offers; keep the media as agreed
        else:
            st.respond(make_response(msg, 405, headers=[("Allow", ALLOW)]))
