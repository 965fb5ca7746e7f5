"""One call's media: RTP/RTCP sockets, codec, jitter buffer, resampling, and the two rings.

Every 20 ms (one shared ``MediaClock`` for all calls, drift-free) a session moves exactly one
frame each way: the jitter buffer's next frame (or silence when lost or not yet started) is
decoded, resampled to 16 kHz and written to the ``in`` ring, so the ring is an unbroken
timeline for the recogniser; and one frame from the ``out`` ring (or comfort silence when
the agent is quiet) is resampled, encoded and sent. ``flush`` (barge-in) drops whatever the
agent has queued, so the next packet sent is silence: within one frame.

RTCP (``rtcp.py``) rides on the same tick: an SR/RR with a report block about the caller's
stream every ~5 s once RTP flows, to the caller's RTCP address (a=rtcp, else its RTP port + 1;
then wherever its own reports come from, as for RTP), and a BYE when the call ends. The
caller's reports feed the call's stats (``remote_*``, ``rtt_ms``) and sipd's metrics; a
malformed one is counted (``rtcp_bad``) and dropped.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import socket
import struct
import time

import numpy as np

from ...audio import FRAME_SAMPLES
from ...bus.messages import Dtmf
from ...ipc import RingReader, RingWriter, create_ring
from ...runtime.logs import call_context
from ..codecs import LineCoder
from . import rtcp as rtcp_mod
from .jitter import JitterBuffer
from .pacer import Pacer
from .rtp import DtmfReceiver, RtpError, RtpPacket, dtmf_packets, parse_dtmf

log = logging.getLogger("appliance.sipd")

SILENCE16 = np.zeros(FRAME_SAMPLES, dtype=np.int16)
NO_MEDIA_TIMEOUT_S = 30.0
RECV_BATCH = 64
REBIND_QUIET_S = 0.2  # the latched port silent this long before the same stream may move (NAT)


class MediaClock:
    """One task ticks every session every 20 ms on absolute deadlines (no accumulated drift)."""

    def __init__(self):
        self.sessions: set["MediaSession"] = set()
        self.late_ticks = 0
        self._task: asyncio.Task | None = None

    def add(self, s: "MediaSession") -> None:
        self.sessions.add(s)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def remove(self, s: "MediaSession") -> None:
        self.sessions.discard(s)

    async def _run(self) -> None:
        pacer = Pacer()
        while self.sessions:
            await pacer.wait()
            now = time.monotonic_ns()
            for s in list(self.sessions):
                try:
                    s.tick(now)
                except Exception:
                    with call_context(s.call_id):
                        log.exception("media tick failed: ending the call")
                    self.sessions.discard(s)
                    s.fail("error: media")
        self.late_ticks += pacer.late_frames

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


class MediaSession:
    def __init__(self, endpoint, port: int, rtcp_interval_s: float | None = None):
        """``rtcp_interval_s``: the RTCP report interval (default ``rtcp.RTCP_INTERVAL_S``)."""
        self.ep = endpoint
        self.port = port
        self.call_id = ""
        bind = endpoint.config.sip.bind
        self.rtp = self._socket(bind, port)
        try:
            self.rtcp = self._socket(bind, port + 1)
        except OSError:
            self.rtp.close()
            raise
        loop = asyncio.get_running_loop()
        loop.add_reader(self.rtp.fileno(), self._on_rtp)
        loop.add_reader(self.rtcp.fileno(), self._on_rtcp)
        self.loop = loop
        self.neg = None
        self.codec: LineCoder | None = None
        self.jitter: JitterBuffer | None = None
        self.dtmf = DtmfReceiver()
        self.remote: tuple[str, int] | None = None
        self.latched = False
        self.remote_ssrc: int | None = None  # the caller's stream, once its RTP arrives
        self.sending = False
        self.started = False
        self.in_ring: RingWriter | None = None
        self.out_ring: RingReader | None = None
        self.seq = int.from_bytes(np.random.bytes(2), "big")
        self.ts = int.from_bytes(np.random.bytes(4), "big")
        self.ssrc = int.from_bytes(np.random.bytes(4), "big")
        self.last_rtp = time.monotonic()
        self.counters = {"rx_packets": 0, "tx_packets": 0, "bad_packets": 0, "foreign_packets": 0, "rebinds": 0,
                         "rtcp_packets": 0, "rtcp_bad": 0, "rtcp_sent": 0,
                         "frames_in": 0, "frames_out": 0, "agent_frames": 0, "flushed": 0}
        # RFC 7022: a random CNAME per call, so reports name no host or user
        self.rtcp_state = rtcp_mod.RtcpState(self.ssrc, f"{secrets.token_hex(8)}@appliance",
                                             rtcp_interval_s or rtcp_mod.RTCP_INTERVAL_S)
        self.rtcp_remote: tuple[str, int] | None = None  # where our reports go
        self.rtcp_latched = False
        self._talking = False
        self._dtmf_out: list[tuple[bytes, bool] | None] = []  # None = a tick of audio between digits
        self._announce: list[np.ndarray] = []  # sipd's own message (AI pipeline down): replaces agent audio
        self._announce_done = None
        self._dtmf_ts = 0

    @staticmethod
    def _socket(host: str, port: int) -> socket.socket:
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.bind((host, port))
        return s

    # -- lifecycle ---------------------------------------------------------------------------
    def attach(self, call_id: str) -> None:
        """Create the call's rings: sipd writes ``in``; ``out`` is ttsd's to write, ours to read."""
        self.call_id = call_id
        shm, seconds = self.ep.config.paths.shm_dir, self.ep.config.audio.ring_seconds
        self.in_ring = RingWriter.create(shm, call_id, "in", seconds=seconds)
        create_ring(shm, call_id, "out", seconds=seconds)
        self.out_ring = RingReader(shm, call_id, "out", from_now=True)

    def start(self, neg) -> None:
        self.update(neg)
        self.started = True
        self.last_rtp = time.monotonic()
        self.ep.media_clock.add(self)

    def update(self, neg) -> None:
        """New SDP (answer, or a re-INVITE: hold, unhold, new address or codec)."""
        if self.codec is None or self.codec.name != neg.codec.name:
            self.codec = LineCoder(neg.codec)
            self.jitter = JitterBuffer(clock_rate=neg.codec.clock_rate, frame_samples=neg.codec.timestamp_step())
            self._fifo, self._fifo_len = [], 0
        if not self.latched or self.neg is None or (neg.remote_address, neg.remote_port) != \
                (self.neg.remote_address, self.neg.remote_port):
            self.remote = (neg.remote_address, neg.remote_port)
            self.latched = False
            self.rtcp_remote = None if _unspecified(neg.remote_address) else (neg.remote_address, neg.remote_rtcp_port)
            self.rtcp_latched = False
        self.sending = neg.direction in ("sendrecv", "sendonly") and not neg.on_hold
        self.neg = neg

    def close(self) -> None:
        self.ep.media_clock.remove(self)
        if self.rtcp_state.next_ns is not None:  # media flowed: say goodbye (RFC 3550 §6.6)
            self._send_rtcp(time.monotonic_ns(), bye=True)
        for sock in (self.rtp, self.rtcp):
            try:
                self.loop.remove_reader(sock.fileno())
            except (ValueError, OSError):
                pass
            sock.close()
        if self.in_ring is not None:
            self.in_ring.close(end_of_stream=True)
            self.in_ring.unlink()
        if self.out_ring is not None:
            path = self.out_ring.path
            self.out_ring.close()
            path.unlink(missing_ok=True)

    def fail(self, reason: str) -> None:
        call = self.ep.calls.get(self.call_id)
        if call is not None:
            call.hangup(reason)

    # -- the 20 ms tick ----------------------------------------------------------------------
    def tick(self, now_ns: int) -> None:
        self.in_ring.write(self._next_in_frame(now_ns), now_ns)
        self.counters["frames_in"] += 1
        if self.sending and self.remote is not None and self._dtmf_out:
            self._send_dtmf_packet()
        elif self.sending and self.remote is not None and self._announce:
            self._send(self._announce.pop(0), talking=True)
            if not self._announce and self._announce_done is not None:
                done, self._announce_done = self._announce_done, None
                self.loop.call_soon(done)
        elif self.sending and self.remote is not None:
            frame = self.out_ring.read()
            if frame is not None:
                self.counters["agent_frames"] += 1
            self._send(frame.pcm if frame is not None else SILENCE16, talking=frame is not None)
        if self.rtcp_state.due(now_ns, self.counters["rx_packets"] > 0):
            self._send_rtcp(now_ns)
        self.ts = (self.ts + self.codec.codec.timestamp_step()) & 0xFFFFFFFF
        if self.started and time.monotonic() - self.last_rtp > NO_MEDIA_TIMEOUT_S and self.sending:
            with call_context(self.call_id):
                log.warning("no RTP for %.0f s: ending the call", NO_MEDIA_TIMEOUT_S)
            self.started = False
            self.fail("error: no media")

    def _next_in_frame(self, now_ns: int) -> np.ndarray:
        """20 ms of caller audio at 16 kHz, whatever packet size the peer sends (10, 20, 30 ms):
        packets leave the jitter buffer as the sample FIFO needs them; a lost packet becomes
        silence of its own length, so the timeline stays true."""
        codec, need = self.codec, self.codec.frame
        while self._fifo_len < need:
            payload, status = self.jitter.pop(now_ns)
            if payload is not None:
                pcm = codec.decode(payload)
            elif status in ("lost", "event"):  # a key press sent instead of audio: silence too
                pcm = np.zeros(self.jitter.frame_samples * codec.rate // codec.codec.clock_rate, dtype=np.int16)
            else:  # not started, or underrun: the caller is silent as far as we can tell
                break
            self._fifo.append(pcm)
            self._fifo_len += len(pcm)
        if self._fifo_len < need:
            self._fifo.clear()
            self._fifo_len = 0
            return SILENCE16
        data = self._fifo[0] if len(self._fifo) == 1 else np.concatenate(self._fifo)
        frame, rest = data[:need], data[need:]
        self._fifo = [rest] if len(rest) else []
        self._fifo_len = len(rest)
        return codec.to16(frame)

    def _send(self, pcm: np.ndarray, talking: bool) -> None:
        payload = self.codec.encode(self.codec.from16(pcm))
        marker = talking and not self._talking  # first packet of a talkspurt (RFC 3551 §4.1)
        self._talking = talking
        pkt = RtpPacket(payload_type=self.neg.codec.payload_type, sequence=self.seq, timestamp=self.ts,
                        ssrc=self.ssrc, payload=payload, marker=marker)
        self.seq = (self.seq + 1) & 0xFFFF
        try:
            self.rtp.sendto(pkt.serialize(), self.remote)
            self.counters["tx_packets"] += 1
            self.counters["frames_out"] += 1
            self.rtcp_state.sent(len(payload))
        except OSError as exc:  # ICMP unreachable from a peer that went away: keep the call
            log.debug("RTP send failed: %s", exc)

    def send_dtmf(self, digits: str, duration_ms: int = 160) -> None:
        """Queue digits as RFC 4733 events; they replace audio packets while they play."""
        if self.neg is None or self.neg.dtmf_payload_type is None:
            raise RuntimeError("the caller did not offer telephone-event: cannot send DTMF")
        queued = []
        for digit in digits:
            queued += list(dtmf_packets(digit, duration_ms)) + [None, None, None]  # 60 ms gap
        self._dtmf_out += queued

    def _send_dtmf_packet(self) -> None:
        item = self._dtmf_out.pop(0)
        if item is None:  # the gap between digits: audio as usual
            frame = self.out_ring.read()
            self._send(frame.pcm if frame is not None else SILENCE16, talking=frame is not None)
            return
        payload, first = item
        if first:
            self._dtmf_ts = self.ts  # every packet of one event carries its start timestamp
        pkt = RtpPacket(payload_type=self.neg.dtmf_payload_type, sequence=self.seq, timestamp=self._dtmf_ts,
                        ssrc=self.ssrc, payload=payload, marker=first)
        self.seq = (self.seq + 1) & 0xFFFF
        try:
            self.rtp.sendto(pkt.serialize(), self.remote)
            self.counters["tx_packets"] += 1
            self.rtcp_state.sent(len(payload))
        except OSError as exc:
            log.debug("RTP send failed: %s", exc)

    def announce(self, pcm16k: np.ndarray, done=None) -> None:
        """Play sipd's own 16 kHz message instead of the agent's audio, then call ``done``."""
        pad = (-len(pcm16k)) % FRAME_SAMPLES
        pcm = np.concatenate([pcm16k.astype(np.int16), np.zeros(pad, np.int16)])
        self._announce = [pcm[i:i + FRAME_SAMPLES] for i in range(0, len(pcm), FRAME_SAMPLES)]
        self._announce_done = done

    def flush(self) -> None:
        """Barge-in: drop every queued agent frame; the next tick sends silence."""
        self.counters["flushed"] += self.out_ring.skip_to_head()

    # -- incoming ----------------------------------------------------------------------------
    def _on_rtp(self) -> None:
        for _ in range(RECV_BATCH):
            try:
                data, addr = self.rtp.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self._on_packet(data, addr)

    def _on_packet(self, data: bytes, addr) -> None:
        if self.neg is None:
            return
        # Media is taken only from the address the SDP named: anyone else who guesses the port
        # is dropped, so a stranger cannot inject audio or steal the agent's voice.
        if addr[0] != self.neg.remote_address:
            self.counters["foreign_packets"] += 1
            return
        try:
            pkt = RtpPacket.parse(data)
        except RtpError:
            self.counters["bad_packets"] += 1
            return
        if self.latched and addr[:2] != self.remote and not self._rebinds(pkt, addr):
            self.counters["foreign_packets"] += 1
            return
        if pkt.payload_type not in (self.neg.codec.payload_type, self.neg.dtmf_payload_type):
            self.counters["bad_packets"] += 1
            return
        if not self.latched:  # symmetric RTP (RFC 4961): answer the port the media comes from
            self.remote, self.latched = addr[:2], True
        self.remote_ssrc = pkt.ssrc
        self.last_rtp = time.monotonic()
        self.counters["rx_packets"] += 1
        if pkt.payload_type == self.neg.dtmf_payload_type:
            try:
                digit = self.dtmf.feed(pkt.timestamp, parse_dtmf(pkt.payload))
            except RtpError:
                self.counters["bad_packets"] += 1
                return
            if digit is not None:
                self._dtmf(*digit)
            self.jitter.push(pkt, time.monotonic_ns(), audio=False)  # its sequence number is no loss
        else:
            # every codec here carries one payload byte per RTP tick (telephony/codecs.py): size = duration
            if len(pkt.payload) != self.jitter.frame_samples and 40 <= len(pkt.payload) <= 480 \
                    and self.jitter.received == 0:
                self.jitter = JitterBuffer(clock_rate=self.neg.codec.clock_rate, frame_samples=len(pkt.payload))
            self.jitter.push(pkt, time.monotonic_ns())

    def _rebinds(self, pkt: RtpPacket, addr) -> bool:
        """NAT rebinding: the caller's NAT gave its stream a new port (a mapping expired, a
        router restarted). The same stream (SSRC) from the same address, after the old port has
        gone quiet, is followed there; a second stream from another port is not."""
        if pkt.ssrc != self.remote_ssrc or time.monotonic() - self.last_rtp < REBIND_QUIET_S:
            return False
        with call_context(self.call_id):
            log.info("caller's RTP moved from port %d to %d (NAT rebinding): following it", self.remote[1], addr[1])
        self.remote = addr[:2]
        self.rtcp_latched = False  # its reports move with it: the next one from the caller's address is followed
        self.counters["rebinds"] += 1
        return True

    def _on_rtcp(self) -> None:
        for _ in range(RECV_BATCH):
            try:
                data, addr = self.rtcp.recvfrom(2048)
            except OSError:
                return
            self._on_rtcp_packet(data, addr)

    def _on_rtcp_packet(self, data: bytes, addr) -> None:
        """The caller's report: only from the SDP's address (and, once latched, its port), as
        for RTP; a malformed one is counted, never raised."""
        if self.neg is None or addr[0] != self.neg.remote_address or \
                (self.rtcp_latched and addr[:2] != self.rtcp_remote):
            self.counters["foreign_packets"] += 1
            return
        self.counters["rtcp_packets"] += 1
        try:
            rtt = self.rtcp_state.receive(data, time.monotonic_ns(), self.neg.codec.clock_rate)
        except (RtpError, struct.error):
            self.counters["rtcp_bad"] += 1
            return
        if not self.rtcp_latched:  # symmetric RTCP (RFC 4961), as for RTP: reports go where reports come from
            self.rtcp_remote, self.rtcp_latched = addr[:2], True
        if rtt is not None:
            self.ep.metrics.rtcp_rtt(rtt)

    def _send_rtcp(self, now_ns: int, bye: bool = False) -> None:
        """Our SR/RR (+ SDES CNAME, + BYE) with a report block about the caller's stream once
        it sent RTP. ``self.ts`` is the stream's timestamp for this tick."""
        block = self.jitter.report_block(*self.rtcp_state.lsr_dlsr(now_ns)) if self.jitter is not None else None
        data = self.rtcp_state.report(now_ns, time.time(), self.ts, block, bye)
        if self.rtcp_remote is None:  # hold by c=0.0.0.0: "send neither RTP nor RTCP"
            return
        try:
            self.rtcp.sendto(data, self.rtcp_remote)
            self.counters["rtcp_sent"] += 1
        except OSError as exc:
            log.debug("RTCP send failed: %s", exc)

    def on_sip_info(self, content_type: str, body: bytes) -> None:
        """DTMF by SIP INFO (application/dtmf-relay), as some gateways send it."""
        if "dtmf" not in content_type.lower():
            return
        fields = dict(line.split("=", 1) for line in body.decode("utf-8", "replace").splitlines() if "=" in line)
        signal = fields.get("Signal", "").strip()
        duration = fields.get("Duration", "0").strip()
        if len(signal) == 1 and signal in "0123456789*#ABCD":
            self._dtmf(signal, int(duration) if duration.isdigit() else 0)

    def _dtmf(self, digit: str, duration_ms: int) -> None:
        with call_context(self.call_id):
            log.info("DTMF %s (%d ms)", digit, duration_ms)
        self.ep.publish(Dtmf(call_id=self.call_id, digit=digit, duration_ms=duration_ms))

    def stats(self) -> dict:
        j = self.jitter
        return {**self.counters, "lost": j.lost if j else 0, "late": j.late if j else 0,
                "duplicates": j.duplicates if j else 0, "jitter_ms": round(j.jitter_ms, 2) if j else 0.0,
                "delay_ms": round(j.delay_ms, 1) if j else 0.0, "codec": self.codec.name if self.codec else "",
                **self.rtcp_state.stats()}


def _unspecified(address: str) -> bool:
    """0.0.0.0 / :: (RFC 2543 hold): nowhere to send to (a send there would reach this host)."""
    try:
        return ipaddress.ip_address(address).is_unspecified
    except ValueError:  # a host name: no RTCP rather than a blocking lookup on the media clock
        return True
