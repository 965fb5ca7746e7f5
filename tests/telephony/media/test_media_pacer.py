"""Pacer: deadlines stay on the start + n·20 ms grid whatever the sleeps do."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from appliance.telephony.media.pacer import Pacer


class FakeClock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


def test_drift_free_with_overshooting_sleeps():
    clock = FakeClock()
    rng = random.Random(7)
    slept = []

    async def sleep(d):
        slept.append(d)
        clock.t += d + rng.uniform(0, 0.015)  # every sleep overshoots by up to 15 ms

    async def run():
        p = Pacer(clock=clock, sleep=sleep)
        deadlines = [await p.wait() for _ in range(100)]
        return p, deadlines

    p, deadlines = asyncio.run(run())
    for n, d in enumerate(deadlines, 1):
        assert d == pytest.approx(1000.0 + n * 0.020, abs=1e-9)
    assert p.late_frames == 0
    # Overshoot was absorbed by shorter sleeps, not accumulated: 100 frames took ~2 s.
    assert clock.t - 1000.0 == pytest.approx(2.0, abs=0.016)
    assert min(slept) < 0.020


def test_late_frames_counted():
    clock = FakeClock(0.0)
    p = Pacer(start=0.0, clock=clock, max_lag=None)
    clock.t = 0.045  # frame 1 due at 0.020: 25 ms late > one interval
    assert p.next_deadline() == pytest.approx(0.020)
    assert p.late_frames == 1
    clock.t = 0.055  # frame 2 due 0.040: 15 ms late, within one interval
    p.next_deadline()
    assert p.late_frames == 1


def test_long_stall_resyncs_on_grid():
    clock = FakeClock(0.0)
    p = Pacer(start=0.0, clock=clock)  # max_lag 0.2 s
    clock.t = 1.0101  # a 1 s stall before frame 1
    d = p.next_deadline()
    assert p.skipped_frames == 49 and p.frame_index == 50
    assert d == pytest.approx(1.0) and d <= clock.t
    assert p.next_deadline() == pytest.approx(1.02)


def test_real_asyncio_sleep():
    async def run():
        p = Pacer()
        t0 = time.monotonic()
        for _ in range(10):
            await p.wait()
        return p, time.monotonic() - t0

    p, elapsed = asyncio.run(run())
    assert 0.195 <= elapsed < 0.3
    assert p.frame_index == 10
