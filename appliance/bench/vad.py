"""`appliancectl bench vad`: what voice activity detection costs per 20 ms frame.

The configured detector (webrtc, silero, or Silero's ONNX on onnxruntime / a TensorRT engine)
gets the frames of N calls interleaved, one frame of each call per tick, as asrd feeds them;
each call keeps its own state, the model is shared. Figures: time per frame (p50/p95/p99),
per tick for all N calls (against the 20 ms a tick lasts), and for the frames on which a
Silero chunk completes and the model actually runs.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..config import Config
from ..audio import FRAME_SAMPLES
from .stats import summarize, table

SENTENCES = ["I would like to book a cleaning for next Tuesday morning, please.",
             "Do you take patients with dental insurance?", "Yes, that works for me, thank you."]


def _audio(directory: Path | None) -> np.ndarray:
    if directory is not None:
        from ..speech import wavfile

        clips = [wavfile.read_16k(p) for p in sorted(directory.glob("*.wav"))]
        if not clips:
            raise RuntimeError(f"no WAV files in {directory}")
    else:
        from .speechdrive import synthetic_speech

        clips = [synthetic_speech(s) for s in SENTENCES]
    gap = np.zeros(8000, np.int16)
    return np.concatenate([np.concatenate([c, gap]) for c in clips])


def run(config: Config, *, calls: int = 4, seconds: float = 20.0, directory: Path | None = None) -> dict:
    from ..speech.backends import make_vad_factory

    factory = make_vad_factory(config)
    audio = _audio(directory)
    frames = int(seconds * 50)
    vads = [factory() for _ in range(calls)]
    per_frame, per_tick, model_frames, voiced = [], [], [], 0
    for n in range(frames):
        tick = 0.0
        for c, vad in enumerate(vads):
            start = ((n + c * 37) * FRAME_SAMPLES) % (len(audio) - FRAME_SAMPLES)  # calls out of step
            pcm = audio[start:start + FRAME_SAMPLES]
            runs_before = getattr(vad, "runs", 0)  # Silero counts its model runs; WebRTC has none
            t0 = time.perf_counter()
            voiced += bool(vad.is_speech(pcm))
            took = time.perf_counter() - t0
            per_frame.append(took)
            tick += took
            if getattr(vad, "runs", 0) > runs_before:
                model_frames.append(took)
        per_tick.append(tick)
    tick_ms = summarize(per_tick, 1000)
    return {"bench": "vad", "backend": config.vad.backend, "device": _device(config), "calls": calls,
            "frames": frames * calls, "voiced_share": voiced / max(1, frames * calls),
            "per_frame_us": summarize(per_frame, 1e6), "model_run_us": summarize(model_frames, 1e6),
            "per_tick_ms": tick_ms, "tick_budget_share_p95": tick_ms["p95"] / 20.0}


def _device(config: Config) -> str:
    backend = config.vad.backend
    return {"onnx": f"onnxruntime {config.vad.device}", "tensorrt": f"TensorRT, cuda:{config.gpu.device}"}.get(
        backend, "cpu")


def render(r: dict) -> str:
    f, m, t = r["per_frame_us"], r["model_run_us"], r["per_tick_ms"]
    rows = [("backend", f'{r["backend"]} ({r["device"]}), {r["calls"]} calls, {r["frames"]} frames, '
                        f'{r["voiced_share"]:.0%} voiced'),
            ("per frame", f'p50 {f["p50"]:.0f} µs  p95 {f["p95"]:.0f} µs  p99 {f["p99"]:.0f} µs'),
            (f'per tick ({r["calls"]} calls)', f'p50 {t["p50"]:.2f} ms  p95 {t["p95"]:.2f} ms  '
                                               f'({r["tick_budget_share_p95"]:.1%} of 20 ms at p95)')]
    if m["n"]:
        rows.insert(2, ("frames that run the model", f'p50 {m["p50"]:.0f} µs  p95 {m["p95"]:.0f} µs'))
    return table(rows)
