"""16-bit PCM WAV files in and out: the one reader behind `talk --in`, the speech benches and
the call recordings the tests and benches read back."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE
from ..audio.resample import resample


class WavError(ValueError):
    """A file that is not a readable 16-bit PCM WAV; the message names the file and why."""


def read(path: str | Path) -> tuple[np.ndarray, int]:
    """Samples (int16, channels averaged to mono) and the file's own rate."""
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            data = w.readframes(w.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise WavError(f"{path}: not a readable WAV file ({exc})") from None
    if width != 2:
        raise WavError(f"{path}: {8 * width}-bit samples; a 16-bit PCM WAV file is needed")
    usable = len(data) // (2 * channels) * 2 * channels  # a truncated file: its whole frames
    pcm = np.frombuffer(data[:usable], dtype="<i2")
    if channels > 1:
        pcm = np.round(pcm.reshape(-1, channels).mean(axis=1)).astype(np.int16)
    return pcm, rate


def read_16k(path: str | Path) -> np.ndarray:
    """Any rate and channel count as the rings' 16 kHz mono int16."""
    pcm, rate = read(path)
    return resample(pcm, rate, SAMPLE_RATE)


def write(path: str | Path, pcm: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(pcm).astype("<i2").tobytes())
