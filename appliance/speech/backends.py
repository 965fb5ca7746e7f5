"""Config → backend instance. The one place that knows which class serves which setting."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import Config
from ..config.backends import TTS_WITH_VOICE, AsrBackendName, TtsBackendName, VadBackendName
from .asr.base import AsrBackend
from .errors import ModelError
from .tts.base import TtsBackend

log = logging.getLogger("appliance.speech")


def _model_path(config: Config, name: str) -> Path:
    from ..models.store import locate

    return Path(locate(config, name))


def make_asr(config: Config) -> AsrBackend:
    cfg = config.asr
    if cfg.backend == AsrBackendName.RIVA:
        from .asr.riva import RivaAsr

        backend = RivaAsr.from_config(cfg)
        backend.check()
        return backend
    from .asr.whisper import WhisperAsr

    return WhisperAsr(_model_path(config, cfg.model), device=cfg.device, threads=cfg.threads,
                      beam_size=cfg.beam_size, context_s=cfg.context_s)


class VadFactory:
    """Makes one call's VAD; for the onnx/tensorrt backends it holds the Silero model every
    call shares (each call keeps its own state), loaded once per process."""

    def __init__(self, cfg, runner=None):
        self.cfg, self.runner = cfg, runner

    def __call__(self):
        from .vad import make_vad

        return make_vad(self.cfg, self.runner)

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()
            self.runner = None


def make_turn_model(config: Config):
    """The end-of-turn model when ``vad.endpoint = "turn-model"``, else None (silence alone)."""
    if config.vad.endpoint != "turn-model":
        return None
    from .turnmodel import TurnModel

    return TurnModel(_model_path(config, config.vad.turn_model))


def make_vad_factory(config: Config) -> VadFactory:
    cfg = config.vad
    runner = None
    if cfg.backend == VadBackendName.ONNX:
        from ..inference.onnx_runner import OnnxRunner

        runner = OnnxRunner(_model_path(config, cfg.model), device=cfg.device)
    elif cfg.backend == VadBackendName.TENSORRT:
        from ..inference.engines import load_runner

        runner = load_runner(config, cfg.model)
    return VadFactory(cfg, runner)


def _voice_file(path: Path) -> Path:
    if path.is_file():
        return path
    voices = sorted(path.glob("*.onnx"))
    if not voices:
        raise ModelError(f"no .onnx voice in {path}")
    return voices[0]


def make_tts(config: Config) -> TtsBackend:
    """The configured voice; when it cannot load and ``tts.fallback`` is on, espeak-ng, so the
    agent can still say "please hold, transferring you" instead of going silent."""
    cfg = config.tts
    try:
        if cfg.backend == TtsBackendName.RIVA:
            from .tts.riva import RivaTts

            backend = RivaTts.from_config(cfg)
            if hasattr(backend, "check"):
                backend.check()
            return backend
        if cfg.backend in TTS_WITH_VOICE:
            from .tts.piper import PiperTts

            runner = None
            if cfg.backend == TtsBackendName.TENSORRT:
                from ..inference.engines import load_runner

                runner = load_runner(config, cfg.voice)
            return PiperTts(_voice_file(_model_path(config, cfg.voice)), length_scale=cfg.length_scale,
                            device=cfg.device, runner=runner)
    except ModelError as exc:
        if not cfg.fallback:
            raise
        log.error("%s; falling back to espeak-ng (tts.fallback = true)", exc)
    from .tts.espeak import EspeakTts

    return EspeakTts(timeout_s=cfg.timeout_s)
