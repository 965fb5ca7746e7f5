"""The telephony tests drive sipd with the same code as `appliancectl bench sip`, or with a
raw-socket caller when a test must say exactly what goes on the wire."""

import socket
import time
import uuid

from appliance.bench.sipdrive import (  # noqa: F401
    PCAPS,
    SIPP_DIR,
    EventLog,
    Sipd,
    free_port,
    pcap_rtp_payloads,
    sipp,
    sipp_counts,
    sipp_lost,
)
from appliance.telephony.sip.message import Response, parse

__all__ = ["PCAPS", "SIPP_DIR", "EventLog", "RawUac", "Sipd", "free_port", "held_call", "pcap_rtp_payloads", "sipp",
           "sipp_counts", "sipp_lost"]


def held_call(port: int, where, hold_ms: int, **kw):
    """SIPp as a PBX: one call to ``port`` held ``hold_ms``, its ACK and BYE along the route set
    (uac_via_front.xml), so straight to sipd and through the Kamailio front alike; what it sent
    and got is in ``where``/pbx.log. Keywords go to ``sipp``."""
    extra = ["-d", str(hold_ms), "-trace_msg", "-message_file", f"{where}/pbx.log", *kw.pop("extra", [])]
    return sipp("uac_via_front.xml", port, cwd=str(where), extra=extra, **kw)


class RawUac:
    """Just enough of a caller to say exactly what a test needs, on 127.0.0.1."""

    def __init__(self, sipd_port: int, rtcp: bool = False):
        """``rtcp``: RTP on an even port with an RTCP socket on the next one (the default
        RTCP address when the SDP has no a=rtcp)."""
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", free_port(even=True) if rtcp else 0))
        self.rtp_port = self.rtp.getsockname()[1]
        self.rtcp = None
        if rtcp:
            self.rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.rtcp.bind(("127.0.0.1", self.rtp_port + 1))
        self.target = ("127.0.0.1", sipd_port)
        self.call_id = uuid.uuid4().hex
        self.to_tag = ""

    def sdp(self, direction="sendrecv") -> str:
        return (f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                f"m=audio {self.rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na={direction}\r\n")

    def request(self, method, cseq, *, branch=None, body="", extra="", contact=True, to_tag=None) -> bytes:
        branch = branch or f"z9hG4bK{uuid.uuid4().hex[:12]}"
        tag = self.to_tag if to_tag is None else to_tag
        lines = [f"{method} sip:agent@127.0.0.1:{self.target[1]} SIP/2.0",
                 f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch};rport",
                 f"From: <sip:raw@127.0.0.1:{self.port}>;tag=rawtag",
                 f"To: <sip:agent@127.0.0.1:{self.target[1]}>" + (f";tag={tag}" if tag else ""),
                 f"Call-ID: {self.call_id}", f"CSeq: {cseq} {method}",
                 "Max-Forwards: 70"]
        if contact:
            lines.append(f"Contact: <sip:raw@127.0.0.1:{self.port}>")
        if extra:
            lines.append(extra)
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.target)

    def messages(self, seconds=1.0) -> list:
        out, deadline = [], time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                out.append(parse(self.sock.recv(65535)))
            except socket.timeout:
                break
        return out

    def final(self, cseq_method="INVITE", seconds=2.0, seq: int | None = None) -> Response:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                m = parse(self.sock.recv(65535))
            except socket.timeout:
                break
            if isinstance(m, Response) and m.status >= 200 and m.cseq[1] == cseq_method \
                    and (seq is None or m.cseq[0] == seq):
                if ";tag=" in (m.headers.get("To") or ""):
                    self.to_tag = self.to_tag or m.headers.get("To").split(";tag=")[1].split(";")[0]
                return m
        raise AssertionError(f"no final response to {cseq_method}")

    def close(self):
        self.sock.close()
        self.rtp.close()
        if self.rtcp is not None:
            self.rtcp.close()
