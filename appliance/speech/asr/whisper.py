"""Whisper through faster-whisper / CTranslate2 (int8 on CPU, float16 on CUDA).

One utterance at a time, cut by the VAD. Two things make it fast enough for a phone turn:

- The encoder runs on ``context_s`` of audio, not Whisper's fixed 30 s. CTranslate2 accepts
  a shorter window; 10 s cut base.en from ~0.7 s to ~0.2 s per utterance here with the same
  accuracy (below ~8 s it starts to loop on short clips, hence the config minimum). Longer
  utterances get a window as long as they are.
- Decoding is bounded by the audio's length (a few tokens per second), so a hallucinating
  decode cannot run away, and repeated n-grams are blocked.

Word times and confidences come from cross-attention alignment (faster-whisper's own
``find_alignment``), which the agent uses to tell a confident "yes" from a mumble.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np

from ...audio import SAMPLE_RATE
from ...config.backends import AsrBackendName
from ..errors import BackendError, ModelError
from .base import AsrBackend, Hint, Transcript, Word

log = logging.getLogger("appliance.asr")

TOKENS_PER_SECOND_MAX = 8  # fast speech is ~4 words/s, ~1.3 tokens a word
# A last, Whisper-only guard. Noise gives no_speech_prob ~0.4-0.6 here, at this edge, so it is
# not what keeps noise out: asrd scores every utterance with Silero first (speech/speechcheck.py).
NO_SPEECH_THRESHOLD = 0.6  # Whisper's own no-speech probability above which we doubt the text...
LOW_CONFIDENCE = 0.5  # ...and reject it when the words' mean confidence is below this
HOP = 160  # samples per mel frame
MAX_PROMPT_TOKENS = 223  # Whisper's previous-text slot: half its 448-token context, less one


class WhisperAsr(AsrBackend):
    name = AsrBackendName.WHISPER

    def __init__(self, model_dir: str | Path, *, device: str = "cpu", threads: int = 2, beam_size: int = 1,
                 context_s: float = 10.0):
        try:
            from faster_whisper import WhisperModel
            from faster_whisper.tokenizer import Tokenizer
            from faster_whisper.transcribe import get_suppressed_tokens
        except ImportError as exc:
            raise ModelError(f"faster-whisper is not installed ({exc}): pip install faster-whisper") from None
        model_dir = Path(model_dir)
        if not (model_dir / "model.bin").is_file():
            raise ModelError(f"no Whisper model at {model_dir} (model.bin missing): run `appliancectl models verify`")
        compute = "int8" if device == "cpu" else "float16"
        try:
            self.model = WhisperModel(str(model_dir), device=device, compute_type=compute, cpu_threads=threads,
                                      local_files_only=True)
        except Exception as exc:  # CTranslate2 says "Unable to open file" / "invalid model" etc.
            raise ModelError(f"Whisper model at {model_dir} does not load: {exc}") from None
        multilingual = self.model.model.is_multilingual
        self.tokenizer = Tokenizer(self.model.hf_tokenizer, multilingual, task="transcribe",
                                   language="en" if multilingual else None)
        self.suppress = list(get_suppressed_tokens(self.tokenizer, [-1]))
        self.beam_size = beam_size
        self.context_frames = int(context_s * SAMPLE_RATE) // HOP
        self.prompt = list(self.tokenizer.sot_sequence) + [self.tokenizer.no_timestamps]
        self._lock = threading.Lock()  # one decode at a time: the threads are already all in use
        self.model_dir = model_dir

    def _prompt(self, hint: Hint | None) -> list[int]:
        """The decoder's prompt: with a hint, Whisper's previous-text slot holds the agent's
        question and the answer's vocabulary, so "At ten a.m." is not written "At an A&"."""
        if hint is None or not hint.prompt.strip():
            return self.prompt
        previous = self.tokenizer.encode(" " + hint.prompt.strip())[-MAX_PROMPT_TOKENS:]
        return [self.tokenizer.sot_prev, *previous, *self.prompt]

    def transcribe(self, audio: np.ndarray, timeout: float, hint: Hint | None = None) -> Transcript:
        """``timeout`` is checked between the encoder and the decoder (CTranslate2 cannot be
        interrupted mid-call); the decode length bound keeps the rest short. ``hint.nbest`` > 1
        decodes with a beam that wide and returns the other readings as ``alternatives``."""
        return self.transcribe_batch([audio], timeout, [hint])[0]

    def transcribe_batch(self, audios: list[np.ndarray], timeout: float,
                         hints: list[Hint | None]) -> list[Transcript]:
        """One encoder pass and one decoder run for utterances that ended together (calls in
        lockstep): the decoder's per-step cost, most of a short decode on a CPU, is paid once
        for all. Utterances are grouped by what must be equal in a batch (window length, beam
        width, prompt length), so each gets exactly the inputs it would get alone."""
        out: list[Transcript | None] = [None] * len(audios)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, audio in enumerate(audios):
            if audio.dtype != np.int16:
                raise ValueError("audio must be int16 at 16 kHz")
            if len(audio) < SAMPLE_RATE // 10:
                out[i] = Transcript("", meta={"reason": "too short"})
                continue
            n_frames = min(max(self.context_frames, -(-len(audio) // HOP) + 1), 3000)
            nbest = max(1, hints[i].nbest if hints[i] is not None else 1)
            prompt = len(self._prompt(hints[i]))  # CTranslate2: <|startoftranscript|> at one position in a batch
            groups.setdefault((n_frames, nbest, prompt), []).append(i)
        for (n_frames, nbest, _), items in groups.items():
            for i, result in zip(items, self._decode(n_frames, nbest, [audios[i] for i in items],
                                                     [hints[i] for i in items], timeout)):
                out[i] = result
        return out  # type: ignore[return-value]

    def _decode(self, n_frames: int, nbest: int, audios: list[np.ndarray], hints: list[Hint | None],
                timeout: float) -> list[Transcript]:
        started = time.monotonic()
        import ctranslate2

        with self._lock:
            features, lengths = [], []
            for audio in audios:
                samples = (audio.astype(np.float32) / 32768.0)[: n_frames * HOP]
                padded = np.zeros(n_frames * HOP, dtype=np.float32)
                padded[: len(samples)] = samples
                features.append(self.model.feature_extractor(padded)[:, :n_frames])
                lengths.append(len(samples))
            encoded = self.model.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(np.stack(features))),
                                              to_cpu=False)
            if time.monotonic() - started > timeout:
                raise BackendError(f"whisper: encoder took longer than {timeout:.1f} s")
            prompts = [self._prompt(h) for h in hints]
            # max_length counts the prompt's tokens too; each reading is cut to its own bound below
            bounds = [len(p) + int(10 + TOKENS_PER_SECOND_MAX * n / SAMPLE_RATE) for p, n in zip(prompts, lengths)]
            results = self.model.model.generate(
                encoded, prompts, beam_size=max(self.beam_size, nbest), num_hypotheses=nbest, max_length=max(bounds),
                return_scores=True, return_no_speech_prob=True, suppress_blank=True,
                suppress_tokens=self.suppress, no_repeat_ngram_size=4,
            )
            per_item = np.asarray(encoded) if len(audios) > 1 else None
            out = []
            for k, result in enumerate(results):
                limit = bounds[k] - len(prompts[k])
                tokens = [t for t in result.sequences_ids[0] if t < self.tokenizer.eot][:limit]
                others = [self.tokenizer.decode([t for t in seq if t < self.tokenizer.eot][:limit]).strip()
                          for seq in result.sequences_ids[1:]]
                no_speech = float(result.no_speech_prob)
                if not tokens:
                    out.append(Transcript("", meta={"no_speech_prob": no_speech, "reason": "no speech"}))
                    continue
                num_frames = min(-(-lengths[k] // HOP), n_frames)
                mine = encoded if per_item is None else ctranslate2.StorageView.from_array(
                    np.ascontiguousarray(per_item[k:k + 1]))
                aligned = self.model.find_alignment(self.tokenizer, [tokens], mine, num_frames)[0]
                out.append(self._transcript(tokens, others, no_speech, aligned, started, len(audios)))
        return out

    def _transcript(self, tokens, others, no_speech: float, aligned, started: float, batch: int) -> Transcript:
        words = merge_punctuation(aligned)
        text = self.tokenizer.decode(tokens).strip()
        confidence = float(np.mean([w.conf for w in words])) if words else 0.0
        if no_speech > NO_SPEECH_THRESHOLD and confidence < LOW_CONFIDENCE:
            # Whisper's tell-tale on noise: it thinks there is no speech, then invents a
            # fluent sentence anyway ("I'm going to put the oil in the pan.") with low confidence.
            return Transcript("", meta={"no_speech_prob": round(no_speech, 3), "reason": "no speech",
                                        "rejected": text, "confidence": round(confidence, 3)})
        return Transcript(text=text, words=words, confidence=confidence,
                          meta={"no_speech_prob": round(no_speech, 3), "batch": batch,
                                "decode_s": round(time.monotonic() - started, 3)},
                          alternatives=_distinct(text, others))


def merge_punctuation(aligned: list[dict]) -> tuple[Word, ...]:
    """Alignment yields "," and "." as words of their own; fold them into the word before."""
    words: list[Word] = []
    for w in aligned:
        text = w["word"].strip()
        if not text:
            continue
        if words and not any(ch.isalnum() for ch in text):
            prev = words[-1]
            words[-1] = Word(prev.text + text, prev.start, prev.end, prev.conf)
            continue
        words.append(Word(text=text, start=float(w["start"]), end=float(w["end"]), conf=float(w["probability"])))
    return tuple(words)


def _distinct(best: str, others: list[str]) -> tuple[str, ...]:
    """Other readings that say something else than ``best`` (not only its casing or commas)."""
    def key(t: str) -> str:
        return " ".join("".join(ch for ch in t.lower() if ch.isalnum() or ch.isspace()).split())

    seen, out = {key(best)}, []
    for text in others:
        if text and key(text) not in seen:
            seen.add(key(text))
            out.append(text)
    return tuple(out)
