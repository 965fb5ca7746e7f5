"""Inter-process audio: shared-memory rings, one per call and direction (ARCHITECTURE.md)."""

from .ring import (
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
    "Frame", "RingError", "RingInfo", "RingReader", "RingWriter", "create_ring", "inspect", "ring_path",
    "sweep_stale",
]
