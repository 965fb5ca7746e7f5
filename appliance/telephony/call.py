"""One call as sipd sees it: dialog, SDP, media session, rings, and the SIP state machine
(answer/reject, BYE either way, CANCEL, re-INVITE for hold, session timer, REFER transfer).

Everything the rest of the appliance needs to know leaves as bus events; everything it may
ask for arrives as control messages handled by the endpoint and forwarded here.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from typing import TYPE_CHECKING, Protocol

from ..bus.messages import CallAnswered, CallEnded, CallHeld, TransferProgress
from ..runtime.logs import call_context
from . import sdp
from .codecs import Codec
from .sip.message import Request, Response, make_response
from .sip.transaction import Reliable2xx, ServerTransaction, TransactionTimeout
from .sip.transport import Peer

if TYPE_CHECKING:
    from ..bus.messages import Message
    from ..config import Config
    from .sip.dialog import Dialog
    from .sip.transaction import TransactionLayer

log = logging.getLogger("appliance.sipd")

MIN_SE = 90  # RFC 4028 §4: the smallest session interval we accept


def session_expires_refusal(req: Request) -> Response | None:
    """400 for an unreadable Session-Expires, 422 + Min-SE for one below ours (RFC 4028 §8)."""
    raw = req.headers.get("Session-Expires")
    if raw is None:
        return None
    value = raw.split(";")[0].strip()
    if not value.isdigit() or len(value) > 9:
        return make_response(req, 400, "Bad Session-Expires")
    if int(value) < MIN_SE:
        return make_response(req, 422, headers=[("Min-SE", str(MIN_SE))])
    return None


def new_call_id() -> str:
    """Our id for a call: safe in ring file names and log lines (SIP Call-IDs are neither)."""
    return "c" + secrets.token_hex(6)


class CallHost(Protocol):
    """What a call needs from the endpoint that holds it (``SipEndpoint``), handed down so that
    call.py does not import endpoint.py, which imports it."""

    config: Config
    loop: asyncio.AbstractEventLoop
    layer: TransactionLayer
    public_host: str
    codecs: list[Codec]
    allow: str
    calls: dict[str, Call]

    def publish(self, msg: Message) -> None: ...
    def forget(self, call: Call) -> None: ...
    def unconfirmed_ended(self, call: Call) -> None: ...


class Call:
    def __init__(self, endpoint: CallHost, invite: Request, peer: Peer, st: ServerTransaction,
                 dialog: "Dialog", media, offer: sdp.SessionDescription | None):
        self.ep = endpoint
        self.id = new_call_id()
        self.invite = invite
        self.peer = peer
        self.invite_st = st
        self.dialog = dialog
        self.media = media
        self.offer = offer
        self.negotiated: sdp.Negotiated | None = None
        self.state = "incoming"  # incoming -> answered -> ended
        self.started = time.monotonic()
        self.answered_at = 0.0
        self.reliable: Reliable2xx | None = None
        self.session_id = secrets.randbelow(2**31)
        self.session_version = 1
        self.session_expires = 0
        self.refresher = "uac"
        self._expiry: asyncio.TimerHandle | None = None
        self._answer_timer: asyncio.TimerHandle | None = None
        self.transfer_pending = False
        self.on_transfer_failed = None  # sipd's own fallback waits on its transfer this way
        self.held = False
        self.rseq = 0  # our reliable 180's RSeq (RFC 3262), when the caller requires 100rel
        self.reliable_1xx: Reliable2xx | None = None
        self.overflow = False  # answered only for sip.overflow's announcement: no agent, no bus events

    # -- helpers -------------------------------------------------------------------------
    def log(self, level: int, text: str, *args) -> None:
        log.log(level, text, *args, extra={"call_id": self.id})

    def publish(self, msg) -> None:
        if not self.overflow:
            self.ep.publish(msg)

    def _sdp_answer(self) -> bytes:
        ours = sdp.answer(self.offer, self.negotiated, local_address=self.ep.public_host,
                          local_port=self.media.port, session_id=self.session_id,
                          session_version=self.session_version)
        return ours.serialize().encode()

    def _our_offer(self, direction: str = "sendrecv") -> bytes:
        return sdp.offer(local_address=self.ep.public_host, local_port=self.media.port,
                         session_id=self.session_id, session_version=self.session_version,
                         codecs=self.ep.codecs, direction=direction).serialize().encode()

    # -- answering -------------------------------------------------------------------------
    def ring(self, answer_timeout: float) -> None:
        """180 Ringing while agentd decides; reliably (RFC 3262: RSeq, resent until its PRACK)
        when the caller requires 100rel, as gateways toward the PSTN often do."""
        headers = [("Contact", self.dialog.local_contact)]
        if self.requires_100rel:
            self.rseq = secrets.randbelow(2**31 - 1) + 1
            headers += [("Require", "100rel"), ("RSeq", str(self.rseq))]
        ringing = make_response(self.invite, 180, to_tag=self.dialog.local_tag, headers=headers)
        self.invite_st.respond(ringing)
        if self.requires_100rel:
            self.reliable_1xx = Reliable2xx(self.ep.layer, ringing, self.peer)  # the same retransmission rules
        self._answer_timer = self.ep.loop.call_later(answer_timeout, self._unanswered)

    @property
    def requires_100rel(self) -> bool:
        return "100rel" in self.invite.headers.option_tags("Require")

    def _prack(self, req: Request, st: ServerTransaction) -> None:
        """A PRACK stops our reliable 180 if its RAck names it (RSeq, CSeq, INVITE); else 481."""
        rack = (req.headers.get("RAck") or "").split()
        if self.reliable_1xx is None or len(rack) != 3 or rack[0] != str(self.rseq) or rack[2].upper() != "INVITE":
            st.respond(make_response(req, 481, "No Matching Provisional Response"))
            return
        self.reliable_1xx.ack()
        st.respond(make_response(req, 200))

    def _unanswered(self) -> None:
        if self.state == "incoming":
            self.log(logging.WARNING, "not answered in time: 480")
            self.reject(480, "Temporarily Unavailable")

    def answer(self) -> None:
        if self.state != "incoming":
            raise RuntimeError(f"call is {self.state}, cannot answer")
        if self._answer_timer:
            self._answer_timer.cancel()
        if self.reliable_1xx is not None:  # the final response supersedes the 180 (it carried no offer)
            self.reliable_1xx.ack()
        headers = [("Contact", self.dialog.local_contact), ("Allow", self.ep.allow),
                   ("Supported", "timer, replaces"), ("Content-Type", "application/sdp")]
        self._session_timer_headers(self.invite, headers)
        body = self._sdp_answer() if self.offer is not None else self._our_offer()
        resp = make_response(self.invite, 200, to_tag=self.dialog.local_tag, headers=headers, body=body)
        self.invite_st.respond(resp)
        self.reliable = Reliable2xx(self.ep.layer, resp, self.peer)
        self.state = "answered"
        self.answered_at = time.monotonic()
        self.ep.loop.create_task(self._await_ack())
        if self.negotiated is not None:
            self._start_media()

    def _start_media(self) -> None:
        self.media.start(self.negotiated)
        self.publish(CallAnswered(call_id=self.id, codec=self.negotiated.codec.name))
        self.log(logging.INFO, "answered: %s to %s:%d", self.negotiated.codec.name,
                 self.negotiated.remote_address, self.negotiated.remote_port)

    @property
    def confirmed(self) -> bool:
        """The caller ACKed our 200: a real call, not a scanner's INVITE."""
        return self.reliable is not None and self.reliable.acked.done() and bool(self.reliable.acked.result())

    def unconfirmed_for(self, now: float) -> float:
        """Seconds since our 200 without an ACK (0 when confirmed or not yet answered)."""
        if self.state != "answered" or self.confirmed:
            return 0.0
        return now - self.answered_at

    async def _await_ack(self) -> None:
        try:
            acked = await asyncio.wait_for(asyncio.shield(self.reliable.acked), self.ep.config.sip.ack_timeout)
        except asyncio.TimeoutError:
            acked = False
        if not acked and self.state == "answered":
            self.log(logging.WARNING, "no ACK for our 200 within %.0f s: ending the call", self.ep.config.sip.ack_timeout)
            self.give_up_unconfirmed("error: no ACK")

    def give_up_unconfirmed(self, reason: str) -> None:
        """End a call whose ACK never came and free its slot now: the BYE still goes out, but a
        peer that never ACKs will not answer it either, and must not hold a slot for 32 s."""
        self.hangup(reason)
        self.end(reason)
        self.ep.unconfirmed_ended(self)

    def on_ack(self, ack: Request) -> None:
        """The ACK for our 2xx: matched on the CSeq of the INVITE it answers, whatever
        in-dialog requests (INFO, UPDATE) arrived before it."""
        if self.reliable is None or ack.cseq[0] != self.reliable.cseq:
            return
        first = not self.reliable.acked.done()
        self.reliable.ack()
        if first and self.negotiated is None and self.state == "answered":  # delayed offer
            try:
                self.offer = sdp.parse(ack.body) if ack.body else None
                if self.offer is None:
                    raise sdp.SdpError("no SDP in the ACK")
                self.negotiated = sdp.negotiate(self.offer, self.ep.codecs)
            except sdp.SdpError as exc:
                self.log(logging.WARNING, "unusable answer in ACK (%s): ending the call", exc)
                self.hangup("error: no usable media")
                return
            self._start_media()

    def reject(self, status: int, reason: str | None = None) -> None:
        if self.state != "incoming":
            raise RuntimeError(f"call is {self.state}, cannot reject")
        self.invite_st.respond(make_response(self.invite, status, reason, to_tag=self.dialog.local_tag))
        self.end(f"rejected: {status}")

    # -- session timer (RFC 4028) -----------------------------------------------------------
    def _session_timer_headers(self, req: Request, headers: list) -> None:
        """RFC 4028 §9: the caller refreshes when it supports timers and did not ask us to;
        otherwise we are the refresher and send UPDATEs ourselves."""
        raw = req.headers.get("Session-Expires")
        if raw is None:
            return
        interval = int(raw.split(";")[0].strip())
        asked = (raw.split("refresher=")[1].split(";")[0].strip().lower() if "refresher=" in raw else "")
        supports = "timer" in req.headers.option_tags("Supported")
        self.refresher = "uac" if supports and asked != "uas" else "uas"
        self.session_expires = interval
        headers.append(("Session-Expires", f"{interval};refresher={self.refresher}"))
        if supports:
            headers.append(("Require", "timer"))
        self._arm_session_timer()

    def _arm_session_timer(self) -> None:
        if self._expiry:
            self._expiry.cancel()
        if not self.session_expires:
            return
        if self.refresher == "uas":  # ours to refresh, at half the interval (§7.4)
            self._expiry = self.ep.loop.call_later(self.session_expires / 2, self._refresh)
        else:  # §10: without the caller's refresh by interval - min(32, interval/3), end it
            grace = self.session_expires - min(32, self.session_expires / 3)
            self._expiry = self.ep.loop.call_later(grace, self._session_expired)

    def _refresh(self) -> None:
        if self.state != "answered":
            return
        update = self.dialog.request("UPDATE", headers=[
            ("Session-Expires", f"{self.session_expires};refresher=uas"), ("Supported", "timer")])
        ct = self.ep.layer.request(update, self.dialog.next_peer())

        async def outcome() -> None:
            try:
                resp = await ct.final
            except TransactionTimeout:
                resp = Response(status=408, reason="Request Timeout")
            if resp.status in (408, 481):  # the other side is gone (RFC 4028 §10)
                self.log(logging.WARNING, "session refresh got %d: ending the call", resp.status)
                self.hangup("error: session refresh failed")
            elif self.state == "answered":
                self._arm_session_timer()

        self.ep.loop.create_task(outcome())

    def _session_expired(self) -> None:
        self.log(logging.WARNING, "session timer expired without a refresh: ending the call")
        self.hangup("error: session expired")

    # -- requests from the peer inside the dialog -------------------------------------------
    def on_request(self, req: Request, st: ServerTransaction) -> None:
        method = req.method
        if not self.dialog.accepts(req):
            st.respond(make_response(req, 500, "Out Of Order CSeq"))
            return
        if method == "BYE":
            st.respond(make_response(req, 200))
            self.end("caller-hangup")
        elif method == "INVITE":
            self._reinvite(req, st)
        elif method == "UPDATE":
            self._arm_session_timer()
            st.respond(make_response(req, 200, headers=[("Contact", self.dialog.local_contact)]))
        elif method == "NOTIFY":
            self._notify(req, st)
        elif method == "PRACK":
            self._prack(req, st)
        elif method in ("INFO", "OPTIONS"):
            st.respond(make_response(req, 200))
            if method == "INFO":
                self.media.on_sip_info(req.headers.get("Content-Type") or "", req.body)
        else:
            st.respond(make_response(req, 405, headers=[("Allow", self.ep.allow)]))

    def _reinvite(self, req: Request, st: ServerTransaction) -> None:
        if self.state != "answered":
            st.respond(make_response(req, 491))
            return
        refusal = session_expires_refusal(req)
        if refusal is not None:
            st.respond(refusal)
            return
        headers = [("Contact", self.dialog.local_contact), ("Content-Type", "application/sdp")]
        if req.body:
            try:
                offer = sdp.parse(req.body)
                neg = sdp.negotiate(offer, self.ep.codecs)
            except sdp.NoCommonCodec:
                st.respond(make_response(req, 488))
                return
            except sdp.SdpError as exc:
                st.respond(make_response(req, 400, f"Bad SDP: {exc}"[:80]))
                return
            self.offer, self.negotiated = offer, neg
            self.session_version += 1
            body = self._sdp_answer()
            self.media.update(neg)
            if neg.on_hold != self.held:
                self.held = neg.on_hold
                self.publish(CallHeld(call_id=self.id, held=self.held))
                self.log(logging.INFO, "caller %s hold", "put the call on" if self.held else "took the call off")
        else:
            body = self._our_offer()
        self._session_timer_headers(req, headers)
        if not req.headers.get("Session-Expires"):
            self._arm_session_timer()
        resp = make_response(req, 200, headers=headers, body=body)
        st.respond(resp)
        self.reliable = Reliable2xx(self.ep.layer, resp, st.peer)

    # -- ending ------------------------------------------------------------------------------
    def on_cancel(self) -> None:
        if self.state == "incoming":
            self.invite_st.respond(make_response(self.invite, 487, to_tag=self.dialog.local_tag))
            self.end("caller-cancelled")

    def hangup(self, reason: str = "agent-hangup") -> None:
        if self.state == "incoming":
            self.reject(603 if reason == "agent-hangup" else 480)
            return
        if self.state != "answered":
            return
        self.state = "ending"
        bye = self.dialog.request("BYE")
        ct = self.ep.layer.request(bye, self.dialog.next_peer())
        self.ep.loop.create_task(self._after_bye(ct, reason))

    async def _after_bye(self, ct, reason: str) -> None:
        try:
            resp = await ct.final
            if resp.status >= 300:
                self.log(logging.INFO, "BYE answered %d", resp.status)
        except TransactionTimeout:
            self.log(logging.WARNING, "no answer to BYE; ending anyway")
        self.end(reason)

    def end(self, reason: str) -> None:
        if self.state == "ended":
            return
        if self.state == "incoming":  # e.g. a BYE in the early dialog: the INVITE still needs its final
            self.invite_st.respond(make_response(self.invite, 487, to_tag=self.dialog.local_tag))
        self.state = "ended"
        for h in (self._expiry, self._answer_timer):
            if h:
                h.cancel()
        if self.reliable_1xx is not None:
            self.reliable_1xx.ack()  # stop resending the 180
        with call_context(self.id):
            metrics = {**self.media.stats(), "duration_s": round(time.monotonic() - self.started, 2)}
            self.media.close()
            self.ep.forget(self)
            self.publish(CallEnded(call_id=self.id, reason=reason, metrics=metrics))
            self.log(logging.INFO, "ended: %s after %.1f s (rx %d, lost %d, late %d, jitter %.1f ms)", reason,
                     metrics["duration_s"], metrics["rx_packets"], metrics["lost"], metrics["late"],
                     metrics["jitter_ms"])

    # -- transfer (RFC 3515 REFER, RFC 5589 call transfer, RFC 3891 Replaces) ------------------
    def transfer(self, target: str, replaces: str = "", headers: dict[str, str] | None = None) -> None:
        if self.state != "answered":
            raise RuntimeError(f"call is {self.state}, cannot transfer")
        if self.transfer_pending:
            raise RuntimeError("a transfer is already in progress")
        from urllib.parse import quote

        uri_headers = []  # RFC 3261 §19.1.1: headers of the request the PBX makes from this URI
        if replaces:
            other = self.ep.calls.get(replaces)
            if other is None:
                raise RuntimeError(f"no call {replaces} to replace")
            d = other.dialog
            uri_headers.append("Replaces=" + quote(f"{d.call_id};to-tag={d.remote_tag};from-tag={d.local_tag}", safe=""))
        for name, value in (headers or {}).items():
            if not re.fullmatch(r"X-[A-Za-z0-9-]{1,40}", name):
                raise ValueError(f"transfer header {name!r} not allowed: only X-... names")
            uri_headers.append(f"{name}={quote(str(value)[:256], safe='')}")
        refer_to = f"<{target}{'?' + '&'.join(uri_headers) if uri_headers else ''}>"
        refer = self.dialog.request("REFER", headers=[("Refer-To", refer_to),
                                                      ("Referred-By", f"<{self.dialog.local_contact.strip('<>')}>")])
        self.transfer_pending = True
        ct = self.ep.layer.request(refer, self.dialog.next_peer())
        self.ep.loop.create_task(self._after_refer(ct))

    async def _after_refer(self, ct) -> None:
        try:
            resp = await ct.final
        except TransactionTimeout:
            resp = Response(status=408, reason="Request Timeout")
        final = resp.status >= 300
        self.publish(TransferProgress(call_id=self.id, status=resp.status, reason=resp.reason, final=final))
        if final:
            self.transfer_pending = False
            self.log(logging.WARNING, "transfer refused: %d %s", resp.status, resp.reason)
            if self.on_transfer_failed is not None:
                self.on_transfer_failed(resp.status)

    def _notify(self, req: Request, st: ServerTransaction) -> None:
        st.respond(make_response(req, 200))
        event = (req.headers.get("Event") or "").split(";")[0].strip().lower()
        if event != "refer" or not self.transfer_pending:
            return
        line = req.body.decode("utf-8", "replace").strip().split("\r\n")[0].split("\n")[0]
        parts = line.split(" ", 2)
        status = int(parts[1]) if len(parts) >= 2 and parts[0] == "SIP/2.0" and parts[1].isdigit() else 0
        reason = parts[2] if len(parts) == 3 else ""
        final = status >= 200 or "terminated" in (req.headers.get("Subscription-State") or "")
        self.publish(TransferProgress(call_id=self.id, status=status, reason=reason, final=final))
        self.log(logging.INFO, "transfer progress: %d %s", status, reason)
        if final:
            self.transfer_pending = False
            if 200 <= status < 300:
                self.hangup("transferred")  # RFC 5589 §6.1: the transferor leaves
            elif self.on_transfer_failed is not None:
                self.on_transfer_failed(status)
