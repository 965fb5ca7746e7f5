"""Resampling, the one place: 8 kHz line ↔ 16 kHz ring per frame, streams, and whole buffers.

Resampling each 20 ms frame on its own would restart the filter at every frame edge (a
click 50 times a second); both resamplers here keep their filter's history across frames.

The line (``FrameResampler``, sipd's every call) uses a short 2:1 polyphase FIR: a phone
line is band-limited to ~3.4 kHz anyway, so 57 taps give a flat passband, > 60 dB of image
and alias rejection and a group delay of ~1.8 ms. soxr's variable-rate stream, used there
before, cost 30 ms on the way in and 15 ms on the way out of every turn (its fixed
algorithmic latency); its constant-rate engine is block based (nothing for five 20 ms
frames, then ~100 ms at once). soxr's stream (``Resampler``) stays for arbitrary rates (a
sound card's 44.1/48 kHz in `appliancectl talk`), where a few ms more do not matter.
``resample`` converts a whole buffer (a WAV file, a synthesised clause) at once.
"""

from __future__ import annotations

import numpy as np
import soxr

from . import FRAME_MS, LINE_RATE, SAMPLE_RATE

_EMPTY = np.zeros(0, dtype=np.int16)
LINE_TAPS = 57  # 2:1 line filter length: group delay 28 samples at 16 kHz (1.75 ms), a whole sample


def resample(pcm: np.ndarray, rate: int, to_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A whole int16 buffer from ``rate`` to ``to_rate`` (soxr's high quality), clipped, not
    wrapped. Buffers that start and end in silence (clauses, files) leave no seams."""
    if rate == to_rate or len(pcm) == 0:
        return pcm.astype(np.int16, copy=False)
    out = soxr.resample(pcm.astype(np.float32) / 32768.0, rate, to_rate, quality="HQ") * 32768.0
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


class Resampler:
    """Streaming int16 mono resampler; output length per call varies (see FrameResampler)."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", vr=True)

    def process(self, frame: np.ndarray) -> np.ndarray:
        if frame.dtype != np.int16 or not frame.flags.c_contiguous:
            frame = np.ascontiguousarray(frame, dtype=np.int16)
        return self._stream.resample_chunk(frame)

    def flush(self) -> np.ndarray:
        """The tail still inside the filter (end of a stream); the resampler then starts over."""
        tail = self._stream.resample_chunk(_EMPTY, last=True)
        self._stream.clear()
        return tail

    def reset(self) -> None:
        self._stream.clear()


def lowpass_taps(taps: int = LINE_TAPS, cutoff_hz: float = LINE_RATE / 2, rate: int = SAMPLE_RATE,
                 atten_db: float = 70.0) -> np.ndarray:
    """A Kaiser-windowed sinc low-pass (linear phase, unity DC gain) for the 16 kHz side of the
    line: flat to ~3.5 kHz, >= 60 dB down from ~4.6 kHz (the image and alias band)."""
    beta = 0.1102 * (atten_db - 8.7)
    n = np.arange(taps) - (taps - 1) / 2
    h = np.sinc(2 * cutoff_hz / rate * n) * np.kaiser(taps, beta)
    return h / h.sum()


class FrameResampler:
    """8 kHz ↔ 16 kHz, exactly 160 ↔ 320 samples per 20 ms frame, for the line's frame clock.

    A 2:1 polyphase FIR (``lowpass_taps``) with the filter's history carried across frames:
    the output is the input delayed by the filter's group delay only, (taps - 1) / 2 samples
    at 16 kHz, ~1.8 ms, against soxr's 30 ms (8k→16k) and 15 ms (16k→8k) stream latency that
    every turn used to pay on the way in and out. Every call produces a whole frame at once:
    nothing is held back, so the first 20 ms of agent audio leaves with the first tick.
    ``latency_samples``: that delay in output samples (rounded), for code that aligns signals.
    """

    def __init__(self, in_rate: int, out_rate: int, frame_ms: int = FRAME_MS, taps: int = LINE_TAPS) -> None:
        if sorted((in_rate, out_rate)) != [LINE_RATE, SAMPLE_RATE]:
            raise ValueError(f"FrameResampler is 8 kHz <-> 16 kHz, not {in_rate} -> {out_rate} (use Resampler)")
        self.in_samples = in_rate * frame_ms // 1000
        self.out_samples = out_rate * frame_ms // 1000
        self.up = out_rate > in_rate
        self._h = lowpass_taps(taps) * (2.0 if self.up else 1.0)  # zero stuffing halves the level
        # Up: the two polyphase halves of the filter run on the 8 kHz samples (no multiplies by
        # the stuffed zeros); down: the whole filter, every other output kept.
        self._phases = (self._h[0::2], self._h[1::2])
        self._history = np.zeros(len(self._phases[1]) if self.up else taps - 1)
        delay16 = (taps - 1) / 2
        self.latency_samples = round(delay16 if self.up else delay16 / 2)

    def process(self, frame: np.ndarray) -> np.ndarray:
        if len(frame) != self.in_samples:
            raise ValueError(f"expected {self.in_samples} samples, got {len(frame)}")
        ext = np.concatenate((self._history, np.asarray(frame, dtype=np.float64)))
        self._history = ext[len(ext) - len(self._history):]
        if self.up:
            even, odd = self._phases
            y = np.empty(self.out_samples)
            y[0::2] = np.convolve(ext, even, mode="valid")[: self.in_samples]
            y[1::2] = np.convolve(ext, odd, mode="valid")[1: self.in_samples + 1]
        else:
            y = np.convolve(ext, self._h, mode="valid")[::2]
        return np.clip(np.rint(y), -32768, 32767).astype(np.int16)

    def reset(self) -> None:
        self._history = np.zeros(len(self._history))


def upsampler() -> FrameResampler:
    """8 kHz line → 16 kHz ring, 160 → 320 samples per frame."""
    return FrameResampler(LINE_RATE, SAMPLE_RATE)


def downsampler() -> FrameResampler:
    """16 kHz ring → 8 kHz line, 320 → 160 samples per frame."""
    return FrameResampler(SAMPLE_RATE, LINE_RATE)
