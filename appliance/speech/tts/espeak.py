"""espeak-ng (Debian's program) as the emergency voice: robotic, but it always loads.

Run as a separate program per sentence, so a box uses it without linking GPL code into ours.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from typing import Iterator

import numpy as np

from ...config.backends import TtsBackendName
from ..errors import BackendError, ModelError
from .base import TtsBackend


class EspeakTts(TtsBackend):
    name = TtsBackendName.ESPEAK

    def __init__(self, voice: str = "en-us", *, timeout_s: float = 10.0, binary: str | None = None):
        self.binary = binary or shutil.which("espeak-ng")
        if not self.binary:
            raise ModelError("espeak-ng is not installed: apt-get install espeak-ng")
        self.voice = voice
        self.timeout_s = timeout_s
        self.sample_rate = 22050

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        if not text.strip():
            return
        try:
            done = subprocess.run([self.binary, "-v", self.voice, "--stdout", "--", text], capture_output=True,
                                  timeout=self.timeout_s, check=True)
        except subprocess.TimeoutExpired:
            raise BackendError(f"espeak-ng took longer than {self.timeout_s} s") from None
        except subprocess.CalledProcessError as exc:
            raise BackendError(f"espeak-ng failed ({exc.returncode}): {exc.stderr.decode(errors='replace')[:200]}") from None
        with wave.open(io.BytesIO(done.stdout)) as wav:
            self.sample_rate = wav.getframerate()
            yield np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).copy()
