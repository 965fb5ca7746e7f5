"""The one interface every recogniser implements, and what it returns.

Audio in is always the ring format: 16 kHz mono int16. Times in a Transcript are seconds
from the start of the audio given, so the caller maps them to ring capture times.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

SAMPLE_RATE = 16_000


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
    def transcribe(self, audio: np.ndarray, timeout: float) -> Transcript:
        """A whole utterance, blocking (run it off the event loop). Empty text for no speech."""

    def open_stream(self, on_partial: PartialCallback) -> AsrStream:
        raise NotImplementedError(f"{self.name} does not stream")

    def close(self) -> None:
        pass
