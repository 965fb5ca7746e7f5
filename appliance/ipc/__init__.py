"""Inter-process audio: shared-memory rings, one per call and direction (ARCHITECTURE.md)."""

from .ring import (
    FRAME_NS,
    FRAME_SAMPLES,
    SAMPLE_RATE,
    Frame,
    RingError,
    RingInfo,
    RingReader,
    RingWriter,
    create_ring,
    inspect,
    ring_path,
    sweep_stale,
)

__all__ = [
    "FRAME_NS", "FRAME_SAMPLES", "SAMPLE_RATE", "Frame", "RingError", "RingInfo", "RingReader",
    "RingWriter", "create_ring", "inspect", "ring_path", "sweep_stale",
]
