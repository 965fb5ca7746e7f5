"""Drift-free 20 ms clock for outgoing RTP.

``sleep(0.02)`` in a loop drifts: every wake-up is a little late and the error accumulates
(a few % slow, so the far end's jitter buffer underruns). Deadlines here are computed as
``start + n·interval``, so a late wake-up shortens the next sleep instead of shifting all
later frames.
"""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable


class Pacer:
    """``frame_index`` is n for the last deadline returned (1-based); derive the RTP
    timestamp from it so that a resync after a long stall shows as a timestamp jump."""

    def __init__(
        self,
        interval: float = 0.020,
        start: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_lag: float | None = 0.2,
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._sleep = sleep
        self.start = clock() if start is None else start
        self.max_lag = max_lag
        self.frame_index = 0
        self.late_frames = 0  # deadlines reached more than one interval late
        self.skipped_frames = 0  # deadlines skipped by a resync after a stall > max_lag

    def next_deadline(self) -> float:
        """Advance to the next frame and return its absolute deadline (clock seconds)."""
        self.frame_index += 1
        deadline = self.start + self.frame_index * self.interval
        now = self._clock()
        if now > deadline + self.interval:
            self.late_frames += 1
            if self.max_lag is not None and now > deadline + self.max_lag:
                # Long stall (GC, suspend, overloaded box): do not burst out the backlog;
                # jump to the current slot, still on the start + n·interval grid.
                skip = int((now - deadline) / self.interval)
                self.frame_index += skip
                self.skipped_frames += skip
                deadline += skip * self.interval
        return deadline

    async def wait(self) -> float:
        """Sleep until the next deadline; returns it. Default clock is time.monotonic, the
        same clock asyncio's loop.time() uses."""
        deadline = self.next_deadline()
        delay = deadline - self._clock()
        if delay > 0:
            await self._sleep(delay)
        return deadline
