"""A dialog as the UAS sees it (RFC 3261 §12): identity, sequence numbers, route set and the
remote target, and building the requests we send inside it (BYE, re-INVITE, REFER)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .headers import NameAddr, SipUri, Via, new_branch
from .message import Request, SipParseError
from .transport import Peer


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


@dataclass
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # the To of the INVITE (our address), without tag
    remote_uri: str  # the From of the INVITE, without tag
    remote_target: str  # Contact URI of the peer
    route_set: list[str]
    local_contact: str
    peer: Peer  # where the INVITE came from
    via_host: str
    via_port: int
    local_seq: int = 0
    remote_seq: int = 0
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_invite(cls, req: Request, peer: Peer, *, local_tag: str, local_contact: str,
                    via_host: str, via_port: int) -> "Dialog":
        frm = NameAddr.parse(req.headers.get("From"))
        to = NameAddr.parse(req.headers.get("To"))
        contacts = req.headers.get_all("Contact")
        if not contacts:
            raise SipParseError("INVITE without Contact")
        target = NameAddr.parse(contacts[0]).uri
        frm_tag = frm.tag or ""
        frm.params.pop("tag", None)
        to.params.pop("tag", None)
        return cls(
            call_id=req.call_id, local_tag=local_tag, remote_tag=frm_tag, local_uri=str(to),
            remote_uri=str(frm), remote_target=str(target),
            route_set=req.headers.get_all("Record-Route"), local_contact=local_contact, peer=peer,
            via_host=via_host, via_port=via_port, remote_seq=req.cseq[0],
        )

    @property
    def id(self) -> tuple[str, str, str]:
        return self.call_id, self.local_tag, self.remote_tag

    def next_peer(self) -> Peer:
        """Where in-dialog requests go: over TCP, the connection the call came in on (a
        caller's Contact port is its listener, not that connection); over UDP the first route
        or the remote target when it is an IP address, else back to where the INVITE came from."""
        if self.peer.reliable:
            return self.peer
        uri = NameAddr.parse(self.route_set[0]).uri if self.route_set else SipUri.parse(self.remote_target)
        transport = (uri.params.get("transport") or self.peer.transport).upper()
        if transport == self.peer.transport and _is_ip(uri.host):
            return Peer(transport, uri.host.strip("[]"), uri.port or 5060)
        return self.peer

    def request(self, method: str, *, body: bytes = b"", headers: list[tuple[str, str]] = ()) -> Request:
        self.local_seq += 1
        req = Request(method=method, uri=self.remote_target, body=body)
        h = req.headers
        h.add("Via", str(Via(self.peer.transport, self.via_host, self.via_port,
                             {"branch": new_branch(), "rport": None})))
        h.add("Max-Forwards", "70")
        h.add("From", f"{self.local_uri};tag={self.local_tag}")
        h.add("To", f"{self.remote_uri};tag={self.remote_tag}" if self.remote_tag else self.remote_uri)
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{self.local_seq} {method}")
        for route in self.route_set:  # loose routing: the UAS uses Record-Route in order
            h.add("Route", route)
        h.add("Contact", self.local_contact)
        for name, value in headers:
            h.add(name, value)
        return req

    def ack(self, invite: Request) -> Request:
        """ACK for a 2xx to our re-INVITE: a new transaction, same CSeq number (§13.2.2.4)."""
        ack = self.request("ACK")
        self.local_seq -= 1
        ack.headers.set("CSeq", f"{invite.cseq[0]} ACK")
        return ack

    def accepts(self, req: Request) -> bool:
        """In-sequence check for a request from the peer (§12.2.2): lower CSeq is a 500."""
        number = req.cseq[0]
        if req.method in ("ACK", "CANCEL"):
            return True
        if number <= self.remote_seq and self.remote_seq:
            return False
        self.remote_seq = number
        return True
