"""Adaptive jitter buffer for the RTP arriving on one call.

Pull model: the call's 20 ms tick calls ``pop()`` exactly once per frame and always gets an
answer (payload, "lost" or "empty"), so the audio ring downstream is fed at a steady rate
whatever the network does. Packets are ordered by an *extended* sequence number (RFC 3550
A.1), which makes wrap at 65535 a non-event. One packet is assumed to carry one frame.

Delay control, in whole frames:

* target = clamp(ceil((jitter_factor·J + one frame) / frame)) where J is the RFC 3550
  interarrival jitter (J += (|D| - J)/16), factor 2 by default. (Simulated uniform delay
  spread S: J settles near S/2.5, and 2·J + a frame lost < 0.3 % of packets as late even
  at S = 100 ms, while 3·J bought little for 20-40 ms more delay.)
* start (and restart after an underrun): return "empty" until ``target`` frames are
  buffered ("prefetch"). On restart, slots that were missing during the underrun are
  skipped as lost (the "empty" ticks already stood in for them), so a lost packet at the
  head of a near-empty buffer costs its own slot, not a permanent extra frame of delay.
* grow immediately: when the target rises above the current delay, stall (return "empty"
  without consuming) one frame per tick until they match.
* shrink slowly: at most one frame per second, and only if in the last second the buffer
  never ran below two frames; the oldest frame is discarded (``dropped``).
* overflow (far more buffered than ``max_delay_ms``, after a burst or sender clock drift):
  skip ahead to the current delay, counting never-received frames as lost.

Stats (attributes): received, lost, late, duplicates, dropped, underruns, resyncs,
jitter_ms, delay_ms (the delay held now), target_ms, wait_ms (smoothed arrival→playout
time of played packets).
"""

from __future__ import annotations

import math

from .rtcp import fraction_lost
from .rtp import ReportBlock, RtpPacket

MAX_DROPOUT = 3000  # RFC 3550 A.1: a jump this far ahead is a restart, not a loss burst
MAX_MISORDER = 100  # ...and this far back
_SHRINK_WINDOW = 50  # pops (1 s at 20 ms) between shrink decisions
_SEEN_KEEP = 256  # played sequence numbers remembered to tell duplicates from late packets


class JitterBuffer:
    def __init__(
        self,
        clock_rate: int = 8000,
        frame_samples: int = 160,
        min_delay_ms: int = 20,
        max_delay_ms: int = 200,
        jitter_factor: float = 2.0,
    ) -> None:
        self.clock_rate = clock_rate
        self.frame_samples = frame_samples
        self.frame_ms = frame_samples * 1000.0 / clock_rate
        self.min_frames = max(1, math.ceil(min_delay_ms / self.frame_ms))
        self.max_frames = max(self.min_frames, math.ceil(max_delay_ms / self.frame_ms))
        self.jitter_factor = jitter_factor
        self._ns_to_ticks = clock_rate / 1e9
        # stats
        self.received = 0  # accepted packets, duplicates and late ones included (all streams)
        self.lost = 0  # slots played as "lost" (never arrived in time, or skipped)
        self.late = 0  # arrived after their slot was played
        self.duplicates = 0
        self.dropped = 0  # buffered frames thrown away to shrink the delay
        self.underruns = 0
        self.resyncs = 0  # SSRC changes and sequence restarts
        self.wait_ms = 0.0  # smoothed arrival→playout time of played packets
        self._jitter = 0.0  # RFC 3550 J, timestamp units
        self._reset_stream(None)

    # ------------------------------------------------------------------ stats
    @property
    def jitter_ms(self) -> float:
        return self._jitter * 1000.0 / self.clock_rate

    @property
    def delay_ms(self) -> float:
        """The playout delay being held (frames × frame time); moves toward target_ms."""
        return self._delay * self.frame_ms

    @property
    def target_ms(self) -> float:
        return self._target() * self.frame_ms

    def _target(self) -> int:
        jit_ms = self._jitter * 1000.0 / self.clock_rate
        frames = math.ceil((self.jitter_factor * jit_ms + self.frame_ms) / self.frame_ms - 1e-9)
        return min(self.max_frames, max(self.min_frames, frames))

    # ------------------------------------------------------------------ input
    def _reset_stream(self, ssrc: int | None) -> None:
        self._ssrc = ssrc
        self._slots: dict[int, tuple[bytes, int]] = {}  # ext seq → (payload, arrival_ns)
        self._seen: set[int] = set()  # recently played ext seqs
        self._next: int | None = None  # ext seq of the next frame to play
        self._highest = -1
        self._playing = False
        self._delay = 0  # current delay, frames
        self._win_n = 0
        self._win_min = 1 << 30
        self._win_target = 0
        self._bad_seq: int | None = None  # RFC 3550 A.1 restart confirmation
        self._last_arrival: float | None = None
        self._last_ts = 0
        self._ever_played = False
        self._underrun_ticks = 0
        # RTCP receiver-report bookkeeping (RFC 3550 A.3)
        self._base = -1
        self._rr_received = 0
        self._expected_prior = 0
        self._received_prior = 0

    def push(self, packet: RtpPacket, arrival_ns: int, audio: bool = True) -> None:
        """Add a received packet (arrival_ns on the same monotonic clock as pop's now_ns).
        ``audio=False``: an RFC 4733 event sharing the stream's sequence numbers; it holds its
        slot (played as silence, "event") so a key press is not counted as packet loss, and its
        timestamp (the event's start, repeated) stays out of the jitter estimate."""
        if packet.ssrc != self._ssrc:
            if self._ssrc is not None:
                self.resyncs += 1
            self._reset_stream(packet.ssrc)
        seq = packet.sequence
        if self._next is None:  # first packet of the stream
            ext = seq
            self._next = self._highest = self._base = ext
        else:
            ext = self._highest + ((seq - self._highest + 0x8000) & 0xFFFF) - 0x8000
            delta = ext - self._highest
            if delta > MAX_DROPOUT or delta < -MAX_MISORDER:
                # A restart of the sequence space, or one stray packet? Two in a row decide.
                if self._bad_seq is not None and seq == (self._bad_seq + 1) & 0xFFFF:
                    self.resyncs += 1
                    self._reset_stream(packet.ssrc)
                    self._next = self._highest = self._base = ext = seq
                else:
                    self._bad_seq = seq
                    return
        self._bad_seq = None
        self.received += 1
        self._rr_received += 1

        # RFC 3550 §6.4.1 interarrival jitter (timestamp units), over every packet in arrival
        # order, late ones included: they are the very evidence that the delay is too small.
        arrival = arrival_ns * self._ns_to_ticks
        if audio:
            if self._last_arrival is not None:
                ts_delta = ((packet.timestamp - self._last_ts + 0x80000000) & 0xFFFFFFFF) - 0x80000000
                d = (arrival - self._last_arrival) - ts_delta
                self._jitter += (abs(d) - self._jitter) / 16.0
            self._last_arrival = arrival
            self._last_ts = packet.timestamp

        if ext < self._next:
            if ext in self._seen:
                self.duplicates += 1
                return
            if self._ever_played or self._next - ext > self.max_frames:
                self.late += 1
                return
            self._next = ext  # reordered before playout ever started: still in time
        if ext in self._slots:
            self.duplicates += 1
            return
        if packet.marker and self._highest < self._next <= ext:
            # Talkspurt start on a drained buffer: rebuffer to the current target from here
            # (the natural moment to change the delay: nothing audible is cut).
            self._playing = False
            self._skip(ext - self._next)
        self._slots[ext] = (packet.payload if audio else None, arrival_ns)
        if ext > self._highest:
            self._highest = ext

    # ------------------------------------------------------------------ output
    def pop(self, now_ns: int) -> tuple[bytes | None, str]:
        """The next frame: (payload, "ok"), (None, "lost"), (None, "event": a key press held
        this slot) or (None, "empty")."""
        if self._next is None:
            return None, "empty"
        target = self._target()
        level = self._highest - self._next + 1
        if level > self.max_frames + 1:  # overflow: skip to the current delay
            self._skip(level - max(self._delay, target))
            level = self._highest - self._next + 1
        if not self._playing:
            if level < target:
                if self._ever_played:
                    self._underrun_ticks += 1
                return None, "empty"
            # Restart. The "empty" ticks of an underrun already stood in for the packets that
            # were missing then: skip those that never came (lost) rather than play them
            # late, which would push the whole stream back.
            while self._underrun_ticks and self._next not in self._slots and level > 1:
                self._skip(1)
                self._underrun_ticks -= 1
                level -= 1
            self._underrun_ticks = 0
            self._playing = True
            self._ever_played = True
            self._delay = level
            self._win_n, self._win_min, self._win_target = 0, 1 << 30, 0
        elif level <= 0:
            self._playing = False
            self.underruns += 1
            self._underrun_ticks = 1
            return None, "empty"
        elif target > self._delay:
            self._delay += 1  # grow now: hold this frame back one tick
            return None, "empty"

        self._win_n += 1
        if level < self._win_min:
            self._win_min = level
        if target > self._win_target:
            self._win_target = target
        if self._win_n >= _SHRINK_WINDOW:
            # Shrink only if, all through the last second, the target stayed below the delay
            # (hysteresis: J is noisy, and a grow-then-shrink cycle costs two glitches) and the
            # buffer, even at its emptiest, held a spare frame. A level well above target
            # (network got faster, sender clock runs fast) is trimmed the same way.
            if self._win_min >= 2 and (
                self._delay > self._win_target or self._win_min > self._win_target + 1
            ):
                self._skip(1)
                self._delay = max(target, self._delay - 1)
            self._win_n, self._win_min, self._win_target = 0, 1 << 30, 0

        seq = self._next
        self._next = seq + 1
        self._seen.discard(seq - _SEEN_KEEP)
        slot = self._slots.pop(seq, None)
        if slot is None:
            self.lost += 1
            return None, "lost"
        self._seen.add(seq)
        if slot[0] is None:
            return None, "event"
        wait_ms = (now_ns - slot[1]) / 1e6
        self.wait_ms += (wait_ms - self.wait_ms) / 16.0
        return slot[0], "ok"

    def _skip(self, frames: int) -> None:
        """Discard the next ``frames`` slots: present ones are dropped, missing ones lost."""
        for seq in range(self._next, self._next + frames):
            if self._slots.pop(seq, None) is None:
                self.lost += 1
            else:
                self.dropped += 1
                self._seen.add(seq)
            self._seen.discard(seq - _SEEN_KEEP)
        self._next += frames

    # ------------------------------------------------------------------ RTCP
    def report_block(self, lsr: int = 0, dlsr: int = 0) -> ReportBlock | None:
        """This stream's RTCP reception report (RFC 3550 A.3); None before any packet."""
        if self._ssrc is None or self._base < 0:
            return None
        expected = self._highest - self._base + 1
        lost = expected - self._rr_received
        exp_int = expected - self._expected_prior
        rec_int = self._rr_received - self._received_prior
        self._expected_prior, self._received_prior = expected, self._rr_received
        return ReportBlock(
            self._ssrc, fraction_lost(exp_int, rec_int), lost, self._highest & 0xFFFFFFFF, int(self._jitter), lsr, dlsr
        )
