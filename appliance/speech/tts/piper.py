"""Piper voices, run on onnxruntime by our own code; only phonemisation comes from piper-tts.

Why not ``piper.PiperVoice``: the ONNX session is the part that matters for speed and for the
GPU box (the same graph becomes a TensorRT engine), so we own it: thread count, providers,
sentence-by-sentence output. Licence: the voice's ONNX and this code are not GPL, but the
phonemiser (piper-tts's espeakbridge, i.e. libespeak-ng) is GPL-3.0. It is confined to
``_phonemizer()`` below; a box that must not ship GPL code uses Riva TTS, or replaces that
one function with a permissively licensed G2P that emits the same IPA symbols (README,
"Speech", licence note).
"""

from __future__ import annotations

import json
import logging
import unicodedata
from pathlib import Path
from typing import Iterator

import numpy as np

from ...config.backends import TtsBackendName
from ..errors import ModelError
from .base import TtsBackend

log = logging.getLogger("appliance.tts")

BOS, EOS, PAD = "^", "$", "_"


def _phonemizer():
    try:
        from piper.phonemize_espeak import EspeakPhonemizer
    except ImportError as exc:
        raise ModelError(f"the Piper phonemiser is not installed ({exc}): pip install piper-tts") from None
    return EspeakPhonemizer()


class PiperTts(TtsBackend):
    name = TtsBackendName.PIPER

    def __init__(self, model_path: str | Path, config_path: str | Path | None = None, *,
                 length_scale: float = 1.0, threads: int = 1, device: str = "cpu", runner=None):
        """``runner``: what runs the voice's ONNX (inference/): onnxruntime on ``device`` by
        default, or a TensorRT engine of it on a GPU box."""
        model_path = Path(model_path)
        config_path = Path(config_path) if config_path else model_path.with_name(model_path.name + ".json")
        for path in (model_path, config_path):
            if not path.is_file():
                raise ModelError(f"Piper voice file {path} is missing: run `appliancectl models verify`")
        try:
            config = json.loads(config_path.read_text())
            self.sample_rate = int(config["audio"]["sample_rate"])
            self.espeak_voice = config.get("espeak", {}).get("voice", "en-us")
            self.id_map: dict[str, list[int]] = config["phoneme_id_map"]
            inference = config.get("inference", {})
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"Piper voice config {config_path} is not usable: {exc!r}") from None
        self.scales = np.array([inference.get("noise_scale", 0.667), length_scale * inference.get("length_scale", 1.0),
                                inference.get("noise_w", 0.8)], dtype=np.float32)
        if runner is None:
            from ...inference.onnx_runner import OnnxRunner

            runner = OnnxRunner(model_path, device=device, threads=threads)
        self.runner = runner
        if runner.label != "cpu":  # status shows where the voice runs: piper-cuda, piper-tensorrt
            self.name = f"piper-{runner.label}"
        max_shape = runner.max_shape("input")
        self.max_ids = max_shape[1] if max_shape else None  # a TensorRT profile's limit
        self.phonemizer = _phonemizer()
        self.model_path = model_path
        self._voice_file = f"{model_path.resolve()}:{model_path.stat().st_size}"  # once: identity() is per clause

    def identity(self) -> str:
        scales = ",".join(f"{v:.4f}" for v in self.scales)  # read each time: a bench varies the scales
        return f"{self.name}:{self._voice_file}:{scales}"

    def phoneme_ids(self, text: str) -> list[list[int]]:
        """One id sequence per sentence, as the voice was trained: ^ _ p _ p _ ... $"""
        out = []
        for sentence in self.phonemizer.phonemize(self.espeak_voice, text):
            ids = list(self.id_map[BOS]) + list(self.id_map[PAD])
            for ph in sentence:
                ph = unicodedata.normalize("NFD", ph)
                if ph in self.id_map:
                    ids += self.id_map[ph] + self.id_map[PAD]
            ids += self.id_map[EOS]
            if len(ids) > 3:
                out.append(ids)
        return out

    def split(self, ids: list[int]) -> list[list[int]]:
        """A sentence longer than the engine takes, cut after a word (its space and the PAD that
        follows) into pieces that fit, each framed ^ _ ... _ $ like a sentence of its own; a
        piece left with no phoneme is dropped."""
        if self.max_ids is None or len(ids) <= self.max_ids:
            return [ids]
        pad, space = self.id_map[PAD][0], self.id_map.get(" ", [None])[0]
        bos, eos = list(self.id_map[BOS]), list(self.id_map[EOS])
        body, room = ids[len(bos):-len(eos)], self.max_ids - len(bos) - len(eos)
        pieces = []
        while body:
            cut = len(body)
            if cut > room:
                spaces = [i for i, x in enumerate(body[:room - 1]) if x == space]
                cut = spaces[-1] + 2 if spaces else room
            piece, body = body[:cut], body[cut:]
            if body and body[0] != pad:
                body = [pad] + body
            if any(x not in (pad, space) for x in piece):
                pieces.append(bos + piece + eos)
        return pieces

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        for sentence in self.phoneme_ids(text):
            for ids in self.split(sentence):
                arr = np.array([ids], dtype=np.int64)
                audio = self.runner.run({"input": arr, "input_lengths": np.array([arr.shape[1]], dtype=np.int64),
                                         "scales": self.scales})["output"].squeeze()
                yield (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)

    def close(self) -> None:
        self.runner.close()
