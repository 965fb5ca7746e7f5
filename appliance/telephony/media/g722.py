"""G.722 (PT 9) at 64 kbit/s via the ``G722`` extension (sippy/libg722, bit-exact ITU).

G.722 is ADPCM: encoder and decoder carry state from frame to frame, so each call holds
its own ``G722Codec`` and the codec uses separate library instances for the two directions
(sharing one would interleave the two streams' predictor state). Audio is 16 kHz, but the
RTP clock is 8000 (RFC 3551 §4.5.2's historical erratum), so a 20 ms packet is 160 bytes and
advances the RTP timestamp by 160, not 320.
"""

from __future__ import annotations

import numpy as np
from G722 import G722


class G722Codec:
    payload_type = 9
    name = "G722"
    sample_rate = 16000
    rtp_clock_rate = 8000
    silence = None  # no fixed silence byte: encode zeros instead

    def __init__(self, bit_rate: int = 64000) -> None:
        if bit_rate not in (64000, 56000, 48000):
            raise ValueError(f"G.722 bit rate {bit_rate}")
        self.bit_rate = bit_rate
        self._encoder = G722(16000, bit_rate)
        self._decoder = G722(16000, bit_rate)

    def encode(self, pcm16k: np.ndarray) -> bytes:
        """int16 samples at 16 kHz → G.722 bytes (320 samples → 160 bytes at 64 kbit/s).
        The input must be an int16 array: the library reads a bytes object as 8-bit samples."""
        return self._encoder.encode(np.ascontiguousarray(pcm16k, dtype=np.int16))

    def decode(self, payload: bytes) -> np.ndarray:
        """G.722 bytes → int16 samples at 16 kHz (two per byte at 64 kbit/s)."""
        return np.frombuffer(self._decoder.decode(payload), dtype=np.int16)
