"""End of turn from the audio: smart-turn v3 (models/smart-turn-v3.toml).

A fixed silence endpoint must wait long enough for the caller who pauses mid-sentence ("I'd
like to book... um... Tuesday"), so it is slow for everyone else. The turn model listens to
the caller's last 8 s when the VAD first hears a short pause and says whether the turn sounds
finished (falling intonation, a complete phrase): the endpointer ends a complete turn at that
pause and waits longer, bounded, for an incomplete one (vad.py).

Input: Whisper's 80-bin log-mel of exactly 8 s of 16 kHz audio (the audio at its end, zeros
before a shorter utterance), computed on the waveform after zero-mean unit-variance
normalisation; faster-whisper's feature extractor gives the same features as the model's
reference extractor (max difference 2e-7). Output: the probability the turn is complete.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE
from .errors import ModelError

WINDOW = 8 * SAMPLE_RATE
MODEL_FILE = "smart-turn-v3.2-cpu.onnx"


class TurnModel:
    def __init__(self, model_dir: str | Path, *, threads: int = 1):
        path = Path(model_dir)
        path = path / MODEL_FILE if path.is_dir() else path
        if not path.is_file():
            raise ModelError(f"no turn model at {path}: run `appliancectl models setup smart-turn-v3`")
        try:
            import onnxruntime as ort
            from faster_whisper.feature_extractor import FeatureExtractor
        except ImportError as exc:
            raise ModelError(f"the turn model needs onnxruntime and faster-whisper ({exc})") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own errors for a truncated or foreign file
            raise ModelError(f"turn model {path} does not load: {exc}") from None
        self.features = FeatureExtractor(feature_size=80, sampling_rate=SAMPLE_RATE)
        self.input = self.session.get_inputs()[0].name
        self._lock = threading.Lock()  # one inference at a time: the session's threads are the budget

    def complete(self, audio: np.ndarray) -> float:
        """P(the turn is complete) for the utterance so far (int16, 16 kHz, trailing pause included)."""
        x = audio[-WINDOW:].astype(np.float32) / 32768.0
        x = np.concatenate([np.zeros(WINDOW - len(x), np.float32), x])
        x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        mel = self.features(x, padding=0)[:, : WINDOW // 160].astype(np.float32)
        with self._lock:
            (p,) = self.session.run(None, {self.input: mel[None]})
        return float(np.asarray(p).reshape(-1)[0])
