"""The call's audio for a local line: one RTP stream each way, one frame each way every 20 ms.

The same parts as sipd's side of the call (codecs, resamplers, jitter buffer, drift-free pacer),
so what the line hears went through what a phone's audio goes through: the mic frame is
encoded and sent, and the jitter buffer's next frame (silence when lost or not yet started) is
decoded and written to the line, so the line's recording is an unbroken timeline.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass

import numpy as np

from ..audio import FRAME_SAMPLES
from ..telephony import sdp
from ..telephony.media.jitter import JitterBuffer
from ..telephony.media.pacer import Pacer
from ..telephony.media.rtp import RtpError, RtpPacket
from ..telephony.codecs import LineCoder
from .line import SILENCE, Line


@dataclass
class RtpStats:
    sent: int = 0
    received: int = 0
    heard_frames: int = 0  # frames the far end sent (its silence included) written to the line
    lost: int = 0
    foreign: int = 0  # packets from an address the SDP did not name, dropped
    bad: int = 0


def bind_rtp(host: str, tries: int = 64) -> socket.socket:
    """A UDP socket on an even port (RTP convention: RTCP would be the odd one above)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(tries):
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.bind((host, 0))
        if s.getsockname()[1] % 2 == 0:
            s.setblocking(False)
            return s
        s.close()
    raise OSError("no even UDP port free for RTP")


class RtpLeg:
    def __init__(self, host: str):
        self.sock = bind_rtp(host)
        self.port = self.sock.getsockname()[1]
        self.stats = RtpStats()
        self.neg: sdp.Negotiated | None = None
        self._remote: tuple[str, int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self, neg: sdp.Negotiated, line: Line) -> None:
        """Move audio between the line and the far end until cancelled."""
        self.neg = neg
        self._remote = (neg.remote_address, neg.remote_port)
        codec = LineCoder(neg.codec)
        self._jitter = JitterBuffer(clock_rate=neg.codec.clock_rate, frame_samples=neg.codec.timestamp_step())
        seq, ts, ssrc = (int.from_bytes(np.random.bytes(n), "big") for n in (2, 4, 4))
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._on_readable)
        sending = neg.direction in ("sendrecv", "sendonly")
        pacer = Pacer()
        try:
            while True:
                await pacer.wait()
                mic = line.read()
                if sending:
                    pkt = RtpPacket(neg.codec.payload_type, seq, ts, ssrc, codec.encode(codec.from16(mic)),
                                    marker=self.stats.sent == 0)
                    try:
                        self.sock.sendto(pkt.serialize(), self._remote)
                        self.stats.sent += 1
                    except OSError:  # the far end went away: its BYE (or our timer) ends the call
                        pass
                seq, ts = (seq + 1) & 0xFFFF, (ts + neg.codec.timestamp_step()) & 0xFFFFFFFF
                line.write(self._heard(codec))
        finally:
            self._loop.remove_reader(self.sock.fileno())

    def _heard(self, codec: LineCoder) -> np.ndarray:
        payload, status = self._jitter.pop(time.monotonic_ns())
        if payload is None:
            self.stats.lost += status == "lost"
            return SILENCE
        pcm = codec.decode(payload)
        if len(pcm) != codec.frame:  # sipd sends 20 ms packets; anything else is trimmed or padded
            pcm = pcm[:codec.frame] if len(pcm) > codec.frame else \
                np.concatenate([pcm, np.zeros(codec.frame - len(pcm), np.int16)])
        self.stats.heard_frames += 1
        frame = codec.to16(pcm)
        return frame if len(frame) == FRAME_SAMPLES else SILENCE

    def _on_readable(self) -> None:
        for _ in range(64):
            try:
                data, addr = self.sock.recvfrom(2048)
            except OSError:
                return
            # Media only from the address the answer named (a stranger cannot talk into the line).
            if addr[0] != self.neg.remote_address:
                self.stats.foreign += 1
                continue
            try:
                pkt = RtpPacket.parse(data)
            except RtpError:
                self.stats.bad += 1
                continue
            if pkt.payload_type == self.neg.dtmf_payload_type:
                continue  # the agent's DTMF (sent to a PBX menu): nothing a person needs to hear
            if pkt.payload_type != self.neg.codec.payload_type:
                self.stats.bad += 1
                continue
            self._remote = addr[:2]  # symmetric RTP (RFC 4961): answer where the media comes from
            self.stats.received += 1
            self._jitter.push(pkt, time.monotonic_ns())

    def close(self) -> None:
        self.sock.close()
