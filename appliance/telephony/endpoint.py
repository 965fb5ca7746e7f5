"""sipd's component: the SIP endpoint that PBXs and gateways call.

Routes each request to a transaction and a call, admits or refuses new calls (allow-list,
per-source rate limits, max_calls with 503 + Retry-After, optional digest auth), answers
OPTIONS with its health, and obeys control messages from the bus. A hostile or broken
message costs a counter and maybe a 400; it never touches another call.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import time
from collections import deque

from ..bus.messages import Answer, CallStarted, Drain, CallHangup, Ok, PlayFlush, Reject, SendDtmf, CallTransfer
from ..config import Config
from ..config.backends import Overflow
from . import codecs, sdp
from .admission import BUSY_MESSAGE, Admission
from .fallback import load_message
from .call import Call, session_expires_refusal
from .media.session import MediaClock, MediaSession
from .ports import PortPool, PortsExhausted
from .ratelimit import RateLimiter
from .sip.dialog import Dialog
from .sip.headers import NameAddr, new_tag
from .sip.message import SipMessage, Request, Response, SipParseError, make_response
from .sip.transaction import TransactionLayer
from .sip.transport import Peer, SipTransport

log = logging.getLogger("appliance.sipd")

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, PRACK, NOTIFY, REFER"
# Who may call in while sip.allow_from is empty: loopback, RFC 1918, IPv6 ULA and link-local.
LOCAL_NETS = tuple(ipaddress.ip_network(n) for n in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                                      "169.254.0.0/16", "::1/128", "fc00::/7", "fe80::/10"))
ACK_GRACE_S = 1.0  # an answered call without its ACK this long may give its slot to a new call
STRIKE_WINDOW_S = 60.0  # how long a call that never got its ACK counts against its source
KNOWN_EXTENSIONS = {"timer", "100rel", "replaces", "norefersub"}
PASSED_HEADERS = ("User-Agent", "Subject", "Diversion", "P-Asserted-Identity", "Remote-Party-ID",
                  "Call-Info", "Alert-Info", "X-Caller-Context")


class SipEndpoint:
    def __init__(self, config: Config):
        self.config = config
        s = config.sip
        self.public_host = s.advertised_host
        self.codecs = [codecs.by_name(c) for c in s.codecs]
        self.allow = ALLOW
        self.allowed_nets = [ipaddress.ip_network(a, strict=False) for a in s.allow_from]
        self.trunk_nets = [ipaddress.ip_network(a, strict=False) for a in s.trunks]
        self.admission = Admission(config)
        self.busy_message = None  # sip.overflow = announce: rendered when sipd starts
        self.unconfirmed_strikes: dict[str, deque[float]] = {}  # source -> when its unconfirmed calls ended
        self.ports = PortPool(s.rtp_port_min, s.rtp_port_max)
        self.invite_limit = RateLimiter(s.invite_rate)
        self.other_limit = RateLimiter(s.other_rate)
        self.calls: dict[str, Call] = {}
        self.by_dialog: dict[tuple[str, str], Call] = {}  # (SIP Call-ID, our tag)
        self.transport = SipTransport(self.on_message)
        self.media_clock = MediaClock()
        self.runtime = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.layer: TransactionLayer | None = None
        self.counters = {"calls_total": 0, "refused_busy": 0, "refused_draining": 0, "refused_rate": 0,
                         "refused_auth": 0, "refused_forbidden": 0, "refused_unconfirmed": 0, "refused_share": 0,
                         "refused_overloaded": 0, "overflow_redirected": 0, "overflow_announced": 0,
                         "evicted_unconfirmed": 0, "unmatched": 0}
        self.draining = False  # ctl.drain: new calls refused, calls in progress go on
        from ..metrics.series import SipdMetrics

        self.metrics = SipdMetrics(self)  # its Prometheus series (the exporter asks over ctl.metrics)
        self.registration = None
        self.watch = None
        self.watch_task: asyncio.Task | None = None
        self.auth = None
        if s.auth_realm:
            from .sip.digest import DigestServer

            self.auth = DigestServer(s.auth_realm, dict(s.auth_users), algorithms=tuple(s.auth_algorithms))

    # -- Component -----------------------------------------------------------------------------
    async def start(self, runtime) -> None:
        self.runtime = runtime
        self.loop = asyncio.get_running_loop()
        s = self.config.sip
        if s.overflow == Overflow.ANNOUNCE:  # rendered now, not while a burst waits for it
            self.busy_message = await asyncio.to_thread(load_message, s.overflow_message, BUSY_MESSAGE)
        await self.transport.start(s.bind, s.port, tcp=s.tcp)
        self.layer = TransactionLayer(self.transport)
        if s.mode == "register":
            from .registration import Registration

            self.registration = Registration(self.layer, registrar=s.registrar, username=s.username,
                                             password=s.password, expires=s.register_expires,
                                             contact_host=self.public_host, contact_port=self.transport.local_port)
            self.registration.start()
        control = runtime.control
        control.on(Answer, self._ctl(lambda c, m: c.answer()))
        control.on(Reject, self._ctl(lambda c, m: c.reject(m.code, m.reason)))
        control.on(CallHangup, self._ctl(lambda c, m: c.hangup(m.reason)))
        control.on(PlayFlush, self._ctl(lambda c, m: c.media.flush()))
        control.on(CallTransfer, self._ctl(lambda c, m: c.transfer(m.target, m.replaces, m.headers)))
        control.on(SendDtmf, self._ctl(lambda c, m: c.media.send_dtmf(m.digits, m.duration_ms)))
        control.on(Drain, self._drain)
        if s.pipeline_timeout_s > 0:
            from .fallback import PipelineWatch

            self.watch = PipelineWatch(self, runtime)
            self.watch_task = runtime.watch(asyncio.create_task(self.watch.run(), name="pipeline-watch"))
        log.info("SIP on %s:%d (UDP%s), RTP %d-%d, max %d calls (%s), overflow: %s", s.bind, self.transport.local_port,
                 "+TCP" if s.tcp else "", s.rtp_port_min, s.rtp_port_max, self.admission.max_calls,
                 self.admission.capacity.source, s.overflow)

    async def stop(self) -> None:
        if self.watch is not None:
            self.watch_task.cancel()
            await asyncio.gather(self.watch_task, return_exceptions=True)
            self.watch.close()
        if self.registration is not None:
            await self.registration.stop()
        for call in list(self.calls.values()):
            call.hangup("shutdown")
        deadline = time.monotonic() + 2.0
        while self.calls and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for call in list(self.calls.values()):
            call.end("shutdown")
        self.media_clock.stop()
        self.transport.close()

    def status(self) -> dict:
        media = [c.media.stats() for c in self.calls.values()]
        return {
            "active_calls": len(self.calls), **self.admission.status(), "draining": self.draining,
            "sip_port": self.transport.local_port, "malformed": self.transport.malformed,
            "sip_received": self.transport.received, **self.counters,
            "sip_retransmits_in": self.layer.retransmits_in if self.layer else 0,
            "sip_retransmits_out": self.layer.retransmits_out if self.layer else 0,
            "rtp_lost": sum(m["lost"] for m in media), "rtp_late": sum(m["late"] for m in media),
            **({"registered": self.registration.registered, "register_error": self.registration.last_error}
               if self.registration is not None else {}),
            **({"pipeline_down": ",".join(self.watch.down), **self.watch.counters} if self.watch is not None else {}),
        }

    def _refusal(self, source: str | None = None) -> str | None:
        """Why a new call (from ``source``, when known) gets 503 now, or None: INVITEs and the
        OPTIONS a dispatcher probes with give the same answer.

        draining: appliancectl drain. unconfirmed: this source (not a trunk) already holds
        sip.unconfirmed_per_source answered calls it never ACKed, the mark of a scanner. share:
        trunks are configured and this other source holds its share of max_calls. busy: at
        max_calls (the measured capacity, admission.py), unless a call left unconfirmed for
        ACK_GRACE_S gives up its slot. overloaded: the last minute's turn p95 is over its target.
        Calls only hearing the busy announcement (sip.overflow = announce) hold no slot."""
        s = self.config.sip
        if self.draining:
            return "draining"
        calls = [c for c in self.calls.values() if not c.overflow]
        max_calls = self.admission.max_calls
        mine = [c for c in calls if c.peer.host == source] if source is not None else []
        unconfirmed = sum(c.state in ("incoming", "answered") and not c.confirmed for c in mine)
        if source is not None and not self._is_trunk(source):
            if unconfirmed + self._strikes(source) >= s.unconfirmed_per_source:
                return "unconfirmed"
            if self.trunk_nets and len(mine) >= max(1, int(max_calls * s.source_share)):
                return "share"
        # Only a source that confirms its calls may take a stale one's slot: a scanner would
        # otherwise swap its own old unconfirmed calls for fresh ones and never let go.
        if len(calls) >= max_calls and not (source is not None and not unconfirmed and self._evict_unconfirmed()):
            return "busy"
        if self.admission.overloaded and calls:
            return "overloaded"
        return None

    def _strikes(self, host: str) -> int:
        """Calls from ``host`` that ended without their ACK in the last STRIKE_WINDOW_S: the
        source's INVITE budget is spent by calls it never confirmed, so a scanner is shut out
        after a few, while a PBX whose calls are all ACKed never spends any."""
        strikes = self.unconfirmed_strikes.get(host)
        if not strikes:
            return 0
        while strikes and strikes[0] < time.monotonic() - STRIKE_WINDOW_S:
            strikes.popleft()
        if not strikes:
            del self.unconfirmed_strikes[host]
        return len(strikes)

    def unconfirmed_ended(self, call: Call) -> None:
        """A call of ours ended without the ACK for our 200 (Call.give_up_unconfirmed)."""
        if not self._is_trunk(call.peer.host):
            self.unconfirmed_strikes.setdefault(call.peer.host, deque()).append(time.monotonic())

    def _is_trunk(self, host: str) -> bool:
        return any(ipaddress.ip_address(host) in n for n in self.trunk_nets)

    def _evict_unconfirmed(self) -> bool:
        """Free the slot of the call longest left without the ACK for our 200, if one has waited
        ACK_GRACE_S (a real caller ACKs within a round trip; our 200 was resent at 0.5 and
        1.5 s): a dialog nobody confirmed is not a call that earns a slot."""
        now = time.monotonic()
        waited, call = max(((c.unconfirmed_for(now), c) for c in self.calls.values()), key=lambda x: x[0],
                           default=(0.0, None))
        if call is None or waited < ACK_GRACE_S:
            return False
        self.counters["evicted_unconfirmed"] += 1
        call.log(logging.WARNING, "no ACK from %s after %.1f s and the box is full: its slot goes to a new call",
                 call.peer.host, waited)
        call.give_up_unconfirmed("error: no ACK")
        return True

    def _allowed(self, host: str) -> bool:
        """sip.allow_from, or with it empty loopback and private addresses only (secure by
        default: a box on a public address is not an open relay for anyone's calls)."""
        addr = ipaddress.ip_address(host)
        return any(addr in n for n in (self.allowed_nets or LOCAL_NETS))

    def _drain(self, msg: Drain) -> Ok:
        if msg.on and not self.draining:
            log.warning("draining: new calls get 503, the %d in progress go on", len(self.calls))
        elif self.draining and not msg.on:
            log.info("drain lifted: taking calls again")
        self.draining = msg.on
        return Ok(detail=f"{'draining' if self.draining else 'taking calls'}, {len(self.calls)} in progress")

    def _ctl(self, action):
        def handle(msg):
            call = self.calls.get(msg.call_id)
            if call is None:
                raise LookupError(f"no call {msg.call_id!r}")
            action(call, msg)
            return Ok(call_id=msg.call_id)

        return handle

    def publish(self, msg) -> None:
        if self.runtime is not None and self.runtime.publisher is not None:
            self.runtime.publisher.publish(msg)

    def forget(self, call: Call) -> None:
        if self.calls.pop(call.id, None) is not None:
            self.metrics.call_ended(call.media)
        self.by_dialog.pop((call.dialog.call_id, call.dialog.local_tag), None)
        self.ports.give_back(call.media.port)

    # -- SIP in ------------------------------------------------------------------------------
    def on_message(self, msg: SipMessage, peer: Peer) -> None:
        if isinstance(msg, Response):
            self._on_response(msg, peer)
            return
        req: Request = msg
        to_tag = NameAddr.parse(req.headers.get("To")).tag
        if req.method == "ACK":
            call = self.by_dialog.get((req.call_id, to_tag or ""))
            if call is not None:
                call.on_ack(req)
            self.layer.server_transaction(req, peer)  # ACK for a non-2xx final
            return
        if not to_tag and req.method != "CANCEL" and not self._within_rate(req, peer):
            return  # flood: not even a transaction, not even a response
        st = self.layer.server_transaction(req, peer)
        if st is None:
            return  # retransmission, answered by its transaction
        try:
            self._route(req, st, peer, to_tag)
        except SipParseError as exc:  # a header this request needed was unreadable
            st.respond(make_response(req, exc.status or 400, exc.reason[:100]))
        except Exception:
            log.exception("error handling %s %s", req.method, req.call_id)
            st.respond(make_response(req, 500))  # answered, so the transaction ends

    def _route(self, req: Request, st, peer: Peer, to_tag: str | None) -> None:
        if to_tag:
            call = self.by_dialog.get((req.call_id, to_tag))
            if call is None:
                self.counters["unmatched"] += 1
                st.respond(make_response(req, 481))
            else:
                call.on_request(req, st)
            return
        handler = {"INVITE": self._on_invite, "CANCEL": self._on_cancel, "OPTIONS": self._on_options}.get(req.method)
        if handler is not None:
            handler(req, st, peer)
        elif req.method == "BYE":
            st.respond(make_response(req, 481))
        elif req.method.upper() in ("REGISTER", "SUBSCRIBE", "NOTIFY", "PUBLISH", "MESSAGE", "REFER",
                                    "INFO", "UPDATE", "PRACK"):
            st.respond(make_response(req, 405, headers=[("Allow", self.allow)]))
        else:
            st.respond(make_response(req, 501, headers=[("Allow", self.allow)]))

    def _on_response(self, resp: Response, peer: Peer) -> None:
        if self.layer.on_response(resp):
            return
        # a 2xx to our re-INVITE retransmitted after its transaction ended: ACK it again
        if resp.cseq[1] == "INVITE" and 200 <= resp.status < 300:
            frm = NameAddr.parse(resp.headers.get("From"))
            call = self.by_dialog.get((resp.call_id, frm.tag or ""))
            if call is not None:
                ack = call.dialog.request("ACK")
                call.dialog.local_seq -= 1
                ack.headers.set("CSeq", f"{resp.cseq[0]} ACK")
                self.transport.send(ack, call.dialog.next_peer())

    def _within_rate(self, req: Request, peer: Peer) -> bool:
        limiter = self.invite_limit if req.method == "INVITE" else self.other_limit
        if limiter.allow(peer.host):
            return True
        self.counters["refused_rate"] += 1
        if self.counters["refused_rate"] % 1000 == 1:
            log.warning("rate limit: dropping %s from %s (%d dropped so far)", req.method, peer.host,
                        self.counters["refused_rate"])
        return False

    def _on_options(self, req: Request, st, peer: Peer) -> None:
        """Health for a dispatcher (Kamailio ds_probing): 200 while calls can be taken."""
        full = self._refusal() is not None
        headers = [("Allow", self.allow), ("Accept", "application/sdp"), ("Supported", "timer, replaces")]
        if full:
            headers.append(("Retry-After", str(self.config.sip.retry_after)))
        st.respond(make_response(req, 503 if full else 200, headers=headers))

    def _on_cancel(self, req: Request, st, peer: Peer) -> None:
        invite_st = self.layer.find_invite(req)
        if invite_st is None:
            st.respond(make_response(req, 481))
            return
        st.respond(make_response(req, 200))
        call = next((c for c in self.calls.values() if c.invite_st is invite_st), None)
        if call is not None:
            call.on_cancel()

    def _on_invite(self, req: Request, st, peer: Peer) -> None:
        s = self.config.sip
        if not self._allowed(peer.host):
            self.counters["refused_forbidden"] += 1
            if self.counters["refused_forbidden"] % 100 == 1:
                log.warning("INVITE from %s refused with 403: not in sip.allow_from%s (%d refused so far)", peer.host,
                            "" if self.allowed_nets else " (empty: loopback and private addresses only)",
                            self.counters["refused_forbidden"])
            st.respond(make_response(req, 403, "Source Not Allowed"))
            return
        overflow = False
        if (refusal := self._refusal(peer.host)) is not None:
            self.counters[f"refused_{refusal}"] += 1
            if refusal in ("unconfirmed", "share") and self.counters[f"refused_{refusal}"] % 100 == 1:
                log.warning("INVITE from %s refused with 503 (%s; %d so far)", peer.host, refusal,
                            self.counters[f"refused_{refusal}"])
            if refusal not in ("busy", "overloaded") or not self._overflow(req, st, refusal):
                st.respond(make_response(req, 503, headers=[("Retry-After", str(s.retry_after))]))
                return
            if s.overflow != Overflow.ANNOUNCE:
                return
            overflow = True  # answered below, for the announcement only
        if self.auth is not None and not self._authorized(req, st):
            return
        required = req.headers.option_tags("Require")
        unknown = required - KNOWN_EXTENSIONS
        if unknown:
            st.respond(make_response(req, 420, headers=[("Unsupported", ", ".join(sorted(unknown)))]))
            return
        refusal = session_expires_refusal(req)
        if refusal is not None:
            st.respond(refusal)
            return
        offer = None
        if req.body:
            try:
                offer = sdp.parse(req.body)
                negotiated = sdp.negotiate(offer, self.codecs)
            except sdp.NoCommonCodec as exc:
                st.respond(make_response(req, 488, headers=[("Warning", f'304 - "{str(exc)[:60]}"')]))
                return
            except sdp.SdpError as exc:
                st.respond(make_response(req, 400, f"Bad SDP: {str(exc)[:60]}"))
                return
        dialog = Dialog.from_invite(  # parses From/To/Contact: a bad one is a 400 before anything is taken
            req, peer, local_tag=new_tag(),
            local_contact=f"<sip:agent@{self.public_host}:{self.transport.local_port}"
                          f"{';transport=tcp' if peer.reliable else ''}>",
            via_host=self.public_host, via_port=self.transport.local_port)
        frm = NameAddr.parse(req.headers.get("From"))
        to = NameAddr.parse(req.headers.get("To"))
        try:
            media = self._media_session()
        except PortsExhausted:
            st.respond(make_response(req, 503, headers=[("Retry-After", str(s.retry_after))]))
            return
        except OSError as exc:
            log.error("could not open RTP sockets for a new call: %s", exc)
            st.respond(make_response(req, 500, f"Media setup failed: {type(exc).__name__}"))
            return
        port, call = media.port, None
        try:
            call = Call(self, req, peer, st, dialog, media, offer)
            call.overflow = overflow
            media.attach(call.id)
            if offer is not None:
                call.negotiated = negotiated
        except Exception as exc:
            log.exception("could not set up media for a new call")
            self.ports.give_back(port)
            st.respond(make_response(req, 500, f"Media setup failed: {type(exc).__name__}"))
            return
        self.calls[call.id] = call
        self.by_dialog[(dialog.call_id, dialog.local_tag)] = call
        st.respond(make_response(req, 100))
        if overflow:
            self._announce_busy(call)
            return
        self.counters["calls_total"] += 1
        headers = {h: req.headers.get(h) for h in PASSED_HEADERS if req.headers.get(h)}
        headers["Call-ID"] = req.call_id
        self.publish(CallStarted(call_id=call.id, caller=frm.uri.user or frm.uri.host, callee=to.uri.user,
                                 headers=headers))
        call.log(logging.INFO, "incoming call from %s (%s) via %s:%d/%s", frm.uri.user, frm.display or "-",
                 peer.host, peer.port, peer.transport)
        if s.auto_answer:
            call.answer()
        else:
            call.ring(s.answer_timeout)

    def _overflow(self, req: Request, st, refusal: str) -> bool:
        """sip.overflow for a call beyond capacity: False leaves it to the plain 503. A redirect
        is answered here (302 to the human queue); an announcement goes on to be answered, unless
        as many announcements as calls are playing already (then 503: a burst stays cheap)."""
        s = self.config.sip
        match s.overflow:
            case Overflow.REDIRECT:
                self.counters["overflow_redirected"] += 1
                st.respond(make_response(req, 302, "Moved Temporarily", headers=[
                    ("Contact", f"<{s.overflow_target}>"), ("Reason", f'SIP;cause=503;text="{refusal}"')]))
                return True
            case Overflow.ANNOUNCE:
                playing = sum(c.overflow for c in self.calls.values())
                return playing < max(1, self.admission.max_calls)
            case _:
                return False

    def _announce_busy(self, call: Call) -> None:
        """Answer, say that the lines are busy, hang up: no agent, no bus events, no records."""
        self.counters["overflow_announced"] += 1
        call.log(logging.INFO, "beyond capacity: the busy announcement, then hang up")
        call.answer()
        call.media.announce(self.busy_message, done=lambda: call.hangup("overflow"))

    def _media_session(self) -> MediaSession:
        """A session on the next free RTP port pair. A pair another program holds (EADDRINUSE)
        is skipped (and goes to the back of the pool) instead of failing the call."""
        for attempt in range(8):
            port = self.ports.take()
            try:
                return MediaSession(self, port)
            except OSError as exc:
                self.ports.give_back(port)
                if exc.errno != errno.EADDRINUSE or attempt == 7:
                    raise
                log.warning("RTP port %d-%d is held by another program; trying the next pair", port, port + 1)
        raise AssertionError("unreachable")

    def _authorized(self, req: Request, st) -> bool:
        value = req.headers.get("Authorization")
        if value is not None:
            result = self.auth.verify(req.method, value, body=req.body)
            if result.ok:
                return True
            if not result.stale:
                self.counters["refused_auth"] += 1
                log.warning("auth failed for INVITE from %s: %s", st.peer.host, result.reason)
                st.respond(make_response(req, 403, "Forbidden"))
                return False
        challenges = self.auth.challenges(stale=value is not None)
        st.respond(make_response(req, 401, headers=[("WWW-Authenticate", c) for c in challenges]))
        return False
