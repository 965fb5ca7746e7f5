"""The one interface every recogniser implements, and what it returns.

Audio in is always the ring format: 16 kHz mono int16. Times in a Transcript are seconds
from the start of the audio given, so the caller maps them to ring capture times.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Callable

import numpy as np



@dataclass(frozen=True)
class Word:
    text: str
    start: float  # s from the start of the utterance audio
    end: float
    conf: float  # 0..1


@dataclass(frozen=True)
class Transcript:
    text: str
    words: tuple[Word, ...] = ()
    confidence: float = 0.0  # mean word confidence; 0 when the backend gives none
    meta: dict = field(default_factory=dict)
    alternatives: tuple[str, ...] = ()  # other readings of the same audio, best first (Hint.nbest)


@dataclass(frozen=True)
class Hint:
    """What the caller is expected to say (the agent's asr.expect): ``prompt`` primes the
    recogniser (Whisper reads it as the text before the audio); ``nbest`` > 1 asks for that
    many readings, so the agent can take the one that fits the slot."""

    prompt: str = ""
    nbest: int = 1


PartialCallback = Callable[[str, bool], None]  # (text, stable)


class AsrStream(abc.ABC):
    """One utterance on a streaming backend: audio fed as it arrives, partials via callback."""

    @abc.abstractmethod
    def feed(self, pcm: np.ndarray) -> None: ...

    @abc.abstractmethod
    def finish(self, timeout: float) -> Transcript:
        """No more audio; block until the final transcript (BackendError on timeout/failure)."""

    @abc.abstractmethod
    def abort(self) -> None: ...


class AsrBackend(abc.ABC):
    name: str = ""
    streaming: bool = False  # True: open_stream gives partials while the caller speaks

    @abc.abstractmethod
    def transcribe(self, audio: np.ndarray, timeout: float, hint: Hint | None = None) -> Transcript:
        """A whole utterance, blocking (run it off the event loop). Empty text for no speech.
        ``hint``: what the caller is expected to say; a backend may ignore it."""

    def transcribe_batch(self, audios: list[np.ndarray], timeout: float,
                         hints: list[Hint | None]) -> list[Transcript]:
        """Utterances that ended together, decoded in one pass where the backend can (the same
        results as one at a time); by default one after the other."""
        return [self.transcribe(a, timeout, h) for a, h in zip(audios, hints)]

    def open_stream(self, on_partial: PartialCallback) -> AsrStream:
        raise NotImplementedError(f"{self.name} does not stream")

    def close(self) -> None:
        pass
