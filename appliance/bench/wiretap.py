"""What a caller received, taken off the wire: RTP packets captured on the loopback interface.

SIPp can place a call and stream a caller's speech, but it cannot record what it hears; this
tap reads the packets sipd sends to it (an AF_PACKET socket on ``lo``, which needs root or
CAP_NET_RAW, as tcpdump does) and rebuilds the audio by RTP timestamp, so a test asserts on
exactly the bytes a phone would have played.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import numpy as np

from ..telephony.media.g711 import alaw_decode, ulaw_decode
from ..telephony.media.rtp import RtpError, RtpPacket, is_rtcp

ETH_P_ALL = 0x0003
DECODERS = {0: ulaw_decode, 8: alaw_decode}


class RtpTap:
    """Captures G.711 RTP sent from ``src_ports`` (sipd's RTP range) while open."""

    def __init__(self, src_ports: range, iface: str = "lo"):
        self.src_ports = src_ports
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))  # PermissionError if not allowed
        try:  # every packet on lo passes through this socket: a deep buffer so none is dropped under load
            self.sock.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE (root)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
        self.sock.bind((iface, 0))
        self.sock.settimeout(0.2)
        self.packets: list[tuple[float, int, int, int, bytes]] = []  # arrival, dport, pt, timestamp, payload
        self.seqs: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rtp-tap", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame, meta = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            if meta[2] == socket.PACKET_OUTGOING:  # loopback shows each packet twice
                continue
            self._take(frame)

    def _take(self, frame: bytes) -> None:
        if len(frame) < 14 + 20 + 8 + 12 or frame[12:14] != b"\x08\x00":
            return
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 17:  # UDP
            return
        sport, dport = struct.unpack("!HH", ip[ihl:ihl + 4])
        if sport not in self.src_ports:
            return
        data = bytes(ip[ihl + 8:])
        if is_rtcp(data):  # sipd's reports, from the odd port of its pair (RFC 5761's demux rule)
            return
        try:
            rtp = RtpPacket.parse(data)  # sipd's own parser: CSRCs, extension, padding
        except RtpError:
            return
        self.seqs.append(rtp.sequence)
        self.packets.append((time.monotonic(), dport, rtp.payload_type, rtp.timestamp, rtp.payload))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def __enter__(self) -> "RtpTap":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def missing(self) -> int:
        """RTP sequence numbers never captured (sent and lost, or dropped by the tap)."""
        if not self.seqs:
            return 0
        span = (self.seqs[-1] - self.seqs[0]) % 65536 + 1
        return span - len(set(self.seqs))

    def audio(self, dport: int | None = None) -> np.ndarray:
        """The received stream as 8 kHz PCM16, each packet placed at its RTP timestamp (gaps
        are silence), as a phone's jitter buffer would play it."""
        pkts = [p for p in self.packets if p[2] in DECODERS and (dport is None or p[1] == dport)]
        if not pkts:
            return np.zeros(0, np.int16)
        first = pkts[0][3]
        end = max((ts - first) % 2**32 + len(payload) for _, _, _, ts, payload in pkts)
        out = np.zeros(end, np.int16)
        for _, _, pt, ts, payload in pkts:
            at = (ts - first) % 2**32
            out[at:at + len(payload)] = DECODERS[pt](payload)
        return out
