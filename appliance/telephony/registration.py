"""Registering to a PBX (register mode): REGISTER with digest auth, refresh before expiry,
and backoff when the PBX is down or refuses, so a PBX restart heals by itself."""

from __future__ import annotations

import asyncio
import logging
import socket

from .sip.digest import Credentials, DigestError, answer_challenge
from .sip.headers import SipUri, Via, new_branch, new_call_id, new_tag
from .sip.message import Request, Response
from .sip.transaction import TransactionLayer, TransactionTimeout
from .sip.transport import Peer

log = logging.getLogger("appliance.sipd")

BACKOFF_MIN, BACKOFF_MAX = 5.0, 300.0


class Registration:
    def __init__(self, layer: TransactionLayer, *, registrar: str, username: str, password: str,
                 expires: int, contact_host: str, contact_port: int):
        self.layer = layer
        self.registrar = SipUri.parse(registrar)
        self.creds = Credentials(username, password)
        self.expires = expires
        self.contact = f"<sip:{username}@{contact_host}:{contact_port}>"
        self.via_host, self.via_port = contact_host, contact_port
        self.call_id = new_call_id(contact_host)
        self.tag = new_tag()
        self.cseq = 0
        self.registered = False
        self.granted = 0
        self.last_error = ""
        self.attempts = 0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.registered:  # unregister politely, but never hold up a shutdown for it
            try:
                await asyncio.wait_for(self.register_once(expires=0), 2.0)
            except Exception:
                pass

    async def _run(self) -> None:
        backoff = BACKOFF_MIN
        while True:
            try:
                granted = await self.register_once(self.expires)
                backoff = BACKOFF_MIN
                await asyncio.sleep(max(granted * 0.8, min(granted, 30)))  # refresh well before expiry
            except (TransactionTimeout, RegistrationFailed, OSError, DigestError) as exc:
                self.registered = False
                self.last_error = str(exc)
                log.warning("registration to %s failed (%s); retrying in %.0f s", self.registrar, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    async def _peer(self) -> Peer:
        host = self.registrar.host.strip("[]")
        port = self.registrar.port or 5060
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        addr = infos[0][4]
        return Peer("UDP", addr[0], addr[1])

    def _request(self, expires: int, auth: tuple[str, str] | None) -> Request:
        self.cseq += 1
        aor = f"<sip:{self.creds.username}@{self.registrar.host}" + \
              (f":{self.registrar.port}>" if self.registrar.port else ">")
        req = Request(method="REGISTER", uri=f"sip:{self.registrar.host}" +
                      (f":{self.registrar.port}" if self.registrar.port else ""))
        h = req.headers
        h.add("Via", str(Via("UDP", self.via_host, self.via_port, {"branch": new_branch(), "rport": None})))
        h.add("Max-Forwards", "70")
        h.add("From", f"{aor};tag={self.tag}")
        h.add("To", aor)
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{self.cseq} REGISTER")
        h.add("Contact", self.contact)
        h.add("Expires", str(expires))
        h.add("User-Agent", "voice-agent-appliance")
        if auth:
            h.add(*auth)
        return req

    async def register_once(self, expires: int) -> int:
        """One REGISTER, answering at most one challenge; returns the granted expiry (s)."""
        peer = await self._peer()
        auth = None
        for _ in range(2):
            req = self._request(expires, auth)
            resp: Response = await self.layer.request(req, peer).final
            if resp.status in (401, 407) and auth is None:
                auth = answer_challenge(resp.status, resp.headers, self.creds, "REGISTER", req.uri)
                continue
            if 200 <= resp.status < 300:
                self.granted = _granted(resp, self.contact, expires)
                self.registered = expires > 0
                self.last_error = ""
                self.attempts += 1
                log.info("registered to %s for %d s", self.registrar, self.granted) if expires else \
                    log.info("unregistered from %s", self.registrar)
                return self.granted
            raise RegistrationFailed(f"{resp.status} {resp.reason}")
        raise RegistrationFailed("credentials refused")


class RegistrationFailed(RuntimeError):
    pass


def _granted(resp: Response, contact: str, asked: int) -> int:
    for value in resp.headers.get_all("Contact"):
        if contact.strip("<>").split("@")[0] in value and "expires=" in value:
            raw = value.split("expires=")[1].split(";")[0].split(",")[0].strip()
            if raw.isdigit():
                return int(raw)
    raw = resp.headers.get("Expires")
    return int(raw) if raw and raw.isdigit() else asked
