"""G.711 µ-law (PCMU, PT 0) and A-law (PCMA, PT 8) as numpy lookup tables.

Per 20 ms frame a codec call is one fancy-index into a table (a couple of µs), so no
per-sample Python runs on the media path. The tables are built once at import by
vectorised versions of the classic CCITT/Sun ``g711.c`` reference (the same algorithm as
CPython's ``audioop``), and the tests check them against ``audioop`` for all 65536 inputs.

Encode tables are indexed by the int16 sample viewed as uint16, so ``table[pcm.view(uint16)]``
maps every possible sample without any arithmetic at run time.
"""

from __future__ import annotations

import numpy as np

_SEG_ULAW_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_SEG_ALAW_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)


def _all_int16() -> np.ndarray:
    """Every int16 value, ordered so that index i holds the sample whose uint16 view is i."""
    return np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)


def _build_ulaw_encode() -> np.ndarray:
    pcm = _all_int16() >> 2  # 14-bit
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), 8159) + 33  # clip, add bias (0x84 >> 2)
    seg = np.searchsorted(_SEG_ULAW_END, mag)  # first segment whose end >= mag
    code = (seg << 4) | ((mag >> (seg + 1)) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


def _build_ulaw_decode() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


def _build_alaw_encode() -> np.ndarray:
    pcm = _all_int16() >> 3  # 13-bit
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    mag = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = np.searchsorted(_SEG_ALAW_END, mag)
    shift = np.where(seg < 2, 1, seg)
    code = (seg << 4) | ((mag >> shift) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


def _build_alaw_decode() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, t, -t).astype(np.int16)


ULAW_ENCODE = _build_ulaw_encode()  # uint8[65536], index: int16 sample viewed as uint16
ULAW_DECODE = _build_ulaw_decode()  # int16[256]
ALAW_ENCODE = _build_alaw_encode()
ALAW_DECODE = _build_alaw_decode()
for _t in (ULAW_ENCODE, ULAW_DECODE, ALAW_ENCODE, ALAW_DECODE):
    _t.flags.writeable = False  # shared by every call: nobody may scribble on them

ULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5


def _as_index(pcm: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(pcm, dtype=np.int16).view(np.uint16)


def ulaw_encode(pcm: np.ndarray) -> bytes:
    """int16 samples → µ-law bytes (one byte per sample)."""
    return ULAW_ENCODE[_as_index(pcm)].tobytes()


def ulaw_decode(payload: bytes) -> np.ndarray:
    """µ-law bytes → int16 samples (a new array)."""
    return ULAW_DECODE[np.frombuffer(payload, dtype=np.uint8)]


def alaw_encode(pcm: np.ndarray) -> bytes:
    """int16 samples → A-law bytes (one byte per sample)."""
    return ALAW_ENCODE[_as_index(pcm)].tobytes()


def alaw_decode(payload: bytes) -> np.ndarray:
    """A-law bytes → int16 samples (a new array)."""
    return ALAW_DECODE[np.frombuffer(payload, dtype=np.uint8)]


class G711Codec:
    """PCMU/PCMA with the same encode/decode shape as ``G722Codec``, so call code can hold
    "the negotiated codec" without caring which. Stateless; audio is 8 kHz."""

    sample_rate = 8000
    rtp_clock_rate = 8000

    def __init__(self, law: str = "ulaw") -> None:
        if law in ("ulaw", "pcmu", "PCMU"):
            self.payload_type, self.name = 0, "PCMU"
            self._enc, self._dec, self.silence = ULAW_ENCODE, ULAW_DECODE, ULAW_SILENCE
        elif law in ("alaw", "pcma", "PCMA"):
            self.payload_type, self.name = 8, "PCMA"
            self._enc, self._dec, self.silence = ALAW_ENCODE, ALAW_DECODE, ALAW_SILENCE
        else:
            raise ValueError(f"unknown G.711 law {law!r}")

    def encode(self, pcm: np.ndarray) -> bytes:
        return self._enc[_as_index(pcm)].tobytes()

    def decode(self, payload: bytes) -> np.ndarray:
        return self._dec[np.frombuffer(payload, dtype=np.uint8)]
