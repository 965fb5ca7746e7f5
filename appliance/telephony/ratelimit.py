"""Per-source token buckets, so one flooding address (a SIP scanner) is cut off while every
other source, and calls already up, are untouched."""

from __future__ import annotations

import time


class RateLimiter:
    def __init__(self, rate: float, burst: float | None = None, *, max_sources: int = 10_000, clock=time.monotonic):
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, 2 * rate)
        self.max_sources = max_sources
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # source -> (tokens, last refill)
        self.refused = 0

    def allow(self, source: str) -> bool:
        now = self.clock()
        tokens, last = self._buckets.get(source, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[source] = (tokens, now)
            self.refused += 1
            return False
        if source not in self._buckets and len(self._buckets) >= self.max_sources:
            self._evict(now)
        self._buckets[source] = (tokens - 1.0, now)
        return True

    def _evict(self, now: float) -> None:
        """Forget sources whose bucket has refilled (they are indistinguishable from new ones)."""
        full = [s for s, (t, last) in self._buckets.items() if t + (now - last) * self.rate >= self.burst]
        for s in full or list(self._buckets)[: len(self._buckets) // 2]:
            del self._buckets[s]
