"""Is the caller's audio just the agent's own voice coming back?

A phone line often returns what the agent says: a 2-wire hybrid in an analog gateway, a
speakerphone, a handset without echo cancelling. Unchecked, that echo is "caller speech"
while the agent talks: after ``barge_in_min_ms`` the agent cuts itself off, mid-sentence,
for nobody. This gate compares each incoming frame's recent window with what the agent
played over the last ``max_delay_ms`` (the call's out ring, fed by ``played``) at every lag:
when one delayed copy of the agent explains the incoming audio (normalised correlation at
or above ``threshold``) the frame is echo and is not speech to the endpointer.

A caller talking over the echo adds energy the agent's audio cannot explain, so the
correlation falls (to about echo/caller level) and their speech passes: with the usual echo
10 dB or more below the caller, a real barge-in is never taken for echo. This is a detector,
not a canceller: the recogniser still hears the echo under double talk.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from ..audio import FRAME_NS, FRAME_SAMPLES

HALF = FRAME_SAMPLES // 2  # compared at 8 kHz: the echo of a telephone line has no more band
SHORT = 3  # frames in the short window
SHORT_MATCH = 0.9  # and the correlation it needs
HANGOVER_AFTER = 10  # frames of echo in a row after which
HANGOVER_MATCH = 0.55  # this correlation is enough


def _half_rate(pcm: np.ndarray) -> np.ndarray:
    """16 → 8 kHz by pairwise means: crude, but the same on both sides, which is all it needs."""
    return pcm.astype(np.float32).reshape(-1, 2).mean(axis=1)


class EchoGate:
    def __init__(self, threshold: float = 0.7, max_delay_ms: int = 600, window_ms: int = 160):
        self.threshold = threshold
        self.window = max(1, window_ms * 1_000_000 // FRAME_NS)
        self.delay = max(1, max_delay_ms * 1_000_000 // FRAME_NS)
        self.out: dict[int, np.ndarray] = {}  # frame index (capture_ns // 20 ms) → agent audio at 8 kHz
        self.recent: deque[np.ndarray] = deque(maxlen=self.window)
        self.next_play = 0
        self.run = 0  # echo frames in a row
        self.echo_frames = 0
        self.last_score = 0.0
        n = (self.window + self.delay + self.window) * HALF
        self._fft = 1 << (n - 1).bit_length()

    def played(self, capture_ns: int, pcm: np.ndarray) -> None:
        """One frame the agent sent to the caller (from the out ring, stamped when written).
        sipd plays one frame per tick in order, so a frame plays at its write time or right
        after the one before, whichever is later (ttsd writes a clause's first frames at once)."""
        k = max(capture_ns // FRAME_NS, self.next_play)
        self.next_play = k + 1
        self.out[k] = _half_rate(pcm)
        if len(self.out) > 4 * (self.delay + self.window):
            oldest = k - 2 * (self.delay + self.window)
            for old in [i for i in self.out if i < oldest]:
                del self.out[old]

    def is_echo(self, capture_ns: int, pcm: np.ndarray, voiced: bool = True) -> bool:
        """One frame heard from the caller: True when it is the agent's own voice returning.
        Every frame must come through (the window); only ``voiced`` ones are judged, which
        keeps a quiet line nearly free."""
        self.recent.append(_half_rate(pcm))
        if not voiced:
            return False
        k = capture_ns // FRAME_NS
        # The agent audio that could be returning now: played up to ``delay`` frames before the
        # window (and a window's worth after: the out ring is written ahead of playout).
        first = k - len(self.recent) + 1 - self.delay
        span = range(first, k + self.window + 1)
        if not any(i in self.out for i in span):
            self.last_score, self.run = 0.0, 0
            return False
        x = np.concatenate(self.recent)
        if float(np.dot(x, x)) < 1.0:
            self.run = 0
            return False
        silence = np.zeros(HALF, np.float32)
        y = np.concatenate([self.out.get(i, silence) for i in span])
        # The agent's side once for both windows: its spectrum, and its running energy.
        agent = (np.fft.rfft(y, self._fft), np.concatenate([[0.0], np.cumsum(y.astype(np.float64) ** 2)]), len(y))
        # The long window is what tells echo from a caller; the short one (the last 60 ms)
        # recovers within 3 frames when the echo path shifts (the far end's jitter buffer
        # growing by a frame) and the long window straddles two delays. A 60 ms window matches
        # a caller's speech by chance more often, so it must match better.
        short = self._best(x[-SHORT * HALF:], agent)
        self.last_score = max(self._best(x, agent), short if short >= SHORT_MATCH else 0.0)
        # Once the echo is established, a brief dip (the echo path shifting by a frame, a
        # clause starting) stays echo: a caller talking over it scores lower still (~0.45 at
        # 6 dB above the echo), and three stray frames would be a speech start.
        established = self.run >= HANGOVER_AFTER
        echo = self.last_score >= (min(self.threshold, HANGOVER_MATCH) if established else self.threshold)
        self.run = self.run + 1 if echo else 0
        self.echo_frames += echo
        return echo

    def _best(self, x: np.ndarray, agent: tuple[np.ndarray, np.ndarray, int]) -> float:
        """The best normalised correlation of ``x`` with the agent's audio at any lag (FFT,
        one pass); ``agent`` is its spectrum, cumulative energy and length."""
        spectrum, cumulative, length = agent
        n = len(x)
        if length < n:
            return 0.0
        energy_x = float(np.dot(x, x))
        if energy_x < 1.0:
            return 0.0
        corr = np.fft.irfft(spectrum * np.conj(np.fft.rfft(x, self._fft)), self._fft)[:length - n + 1]
        energy_y = cumulative[n:] - cumulative[:-n]
        score = corr / np.sqrt(energy_x * np.maximum(energy_y, 1e-9))
        score[energy_y < 1e-3 * energy_x] = 0.0  # the agent was silent at that lag: nothing to explain
        return float(score.max())
