"""The one interface every synthesiser implements.

``synthesize`` is a generator of int16 chunks at the backend's own rate: ttsd resamples to
the ring's 16 kHz and can stop between chunks, so a cancel never waits for a whole sentence.
"""

from __future__ import annotations

import abc
from typing import Iterator

import numpy as np



class TtsBackend(abc.ABC):
    name: str = ""
    sample_rate: int = 16_000

    @abc.abstractmethod
    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        """Speech for ``text`` (already normalised for speech) as mono int16 chunks."""

    def identity(self) -> str:
        """What makes this voice sound as it does (backend, model, rate, speaking settings): the
        clause cache's key, so audio of one voice is never played as another's."""
        return f"{self.name}:{self.sample_rate}"

    def close(self) -> None:
        pass
