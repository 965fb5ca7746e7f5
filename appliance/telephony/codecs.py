"""The codecs the appliance speaks on a phone line: one registry that SDP negotiation, RTP, the
media session and `appliancectl talk` all read (name, payload type, clocks, frame size, coder).

G.722 carries 16 kHz audio on an 8 kHz RTP clock (RFC 3551 §4.5.2), so every codec here
advances the RTP timestamp by 160 per 20 ms and puts one payload byte on the wire per tick.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from ..audio import FRAME_MS, LINE_RATE, SAMPLE_RATE
from ..audio.resample import FrameResampler
from .media.g711 import G711Codec
from .media.g722 import G722Codec


class PayloadCoder(Protocol):
    def encode(self, pcm: np.ndarray) -> bytes: ...
    def decode(self, payload: bytes) -> np.ndarray: ...


@dataclass(frozen=True)
class Codec:
    name: str  # as written in a=rtpmap, and in sip.codecs
    payload_type: int  # static pt; the offered pt once negotiated (sdp.negotiate replaces it)
    clock_rate: int  # RTP timestamp rate
    sample_rate: int  # audio rate
    new_coder: Callable[[], PayloadCoder] = field(compare=False, repr=False)  # a fresh encoder/decoder

    def frame_samples(self, ms: int = FRAME_MS) -> int:
        """Audio samples in ``ms`` at the codec's own rate."""
        return self.sample_rate * ms // 1000

    def timestamp_step(self, ms: int = FRAME_MS) -> int:
        """RTP timestamp advance for ``ms`` of audio."""
        return self.clock_rate * ms // 1000


PCMU = Codec("PCMU", 0, LINE_RATE, LINE_RATE, lambda: G711Codec("PCMU"))
PCMA = Codec("PCMA", 8, LINE_RATE, LINE_RATE, lambda: G711Codec("PCMA"))
G722 = Codec("G722", 9, LINE_RATE, SAMPLE_RATE, G722Codec)
CODECS: dict[str, Codec] = {c.name: c for c in (PCMU, PCMA, G722)}
SUPPORTED = tuple(CODECS.values())


def by_name(name: str) -> Codec:
    """The codec an rtpmap or a config names (case-insensitive); KeyError for one we lack."""
    for codec in SUPPORTED:
        if codec.name.lower() == name.lower():
            return codec
    raise KeyError(f"unsupported codec {name!r} (supported: {', '.join(CODECS)})")


class LineCoder:
    """One call's codec state: payloads ↔ PCM at the codec's rate ↔ the rings' 16 kHz. G.722 is
    ADPCM with state in each direction, so every call gets its own."""

    def __init__(self, codec: Codec):
        self.codec, self.name, self.rate = codec, codec.name, codec.sample_rate
        coder = codec.new_coder()
        self.encode, self.decode = coder.encode, coder.decode
        if codec.sample_rate == SAMPLE_RATE:
            self.to16 = self.from16 = _same
        else:
            self.to16 = FrameResampler(codec.sample_rate, SAMPLE_RATE).process
            self.from16 = FrameResampler(SAMPLE_RATE, codec.sample_rate).process

    @property
    def frame(self) -> int:
        """Samples in 20 ms at the codec's rate."""
        return self.codec.frame_samples()


def _same(pcm: np.ndarray) -> np.ndarray:
    return pcm
