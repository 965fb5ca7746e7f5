"""Streaming 8k↔16k resampling: exact frame sizes, no seams at frame edges."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from appliance.audio.resample import FrameResampler, Resampler, downsampler, upsampler


def _tone(freq, seconds, rate, amp=16000):
    return (np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate) * amp).astype(np.int16)


def _fit_sine(y, freq, rate):
    """Least-squares amplitude of a sine at ``freq`` and the worst residual sample."""
    n = np.arange(len(y))
    basis = np.vstack([np.sin(2 * np.pi * freq * n / rate), np.cos(2 * np.pi * freq * n / rate)]).T
    coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
    return float(np.hypot(*coef)), float(np.max(np.abs(y - basis @ coef)))


def _peak_hz(y, rate):
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return np.fft.rfftfreq(len(y), 1 / rate)[np.argmax(spec)]


def test_upsample_440_matches_one_shot():
    x = _tone(440, 1.0, 8000)
    up = upsampler()
    frames = [up.process(x[i : i + 160]) for i in range(0, len(x), 160)]
    assert all(f.shape == (320,) and f.dtype == np.int16 for f in frames)
    y = np.concatenate(frames).astype(float)
    lat = up.latency_samples
    assert lat == 28  # the filter's group delay, 1.75 ms (soxr's stream took 480: 30 ms)

    ref = soxr.resample(x, 8000, 16000).astype(float)
    a, b = y[lat:], ref[: len(y) - lat]
    mid = slice(400, len(a) - 400)
    assert np.max(np.abs(a[mid] - b[mid])) < 0.001 * 16000  # the same signal, seams included

    steady = y[lat + 400 : -400]
    amp, worst = _fit_sine(steady, 440, 16000)
    assert abs(20 * np.log10(amp / 16000)) < 1.0
    assert worst < 0.005 * 16000  # no discontinuity anywhere, frame edges included
    assert abs(_peak_hz(steady, 16000) - 440) < 3


def test_line_delay_is_the_group_delay_only():
    """An impulse comes out after latency_samples, both ways: no block held back, no padding."""
    up, down = upsampler(), downsampler()
    x = np.zeros(160, np.int16)
    x[10] = 16000
    y = up.process(x)
    assert int(np.argmax(np.abs(y))) == 2 * 10 + up.latency_samples
    w = np.zeros(320, np.int16)
    w[40] = 16000
    z = down.process(w).astype(float)
    assert int(np.argmax(np.abs(z))) == 40 // 2 + down.latency_samples
    assert up.latency_samples / 16 <= 2.0 and down.latency_samples / 8 <= 2.0  # ms


def test_telephone_band_is_flat():
    for freq in (300, 1000, 3400):
        x = _tone(freq, 0.5, 8000)
        up = upsampler()
        y = np.concatenate([up.process(x[i : i + 160]) for i in range(0, len(x), 160)]).astype(float)
        amp, _ = _fit_sine(y[400:-100], freq, 16000)
        assert abs(20 * np.log10(amp / 16000)) < 0.2, freq


def test_other_rates_are_refused():
    with pytest.raises(ValueError):
        FrameResampler(48000, 16000)


def test_downsample_440_keeps_tone():
    x = _tone(440, 1.0, 16000)
    down = downsampler()
    frames = [down.process(x[i : i + 320]) for i in range(0, len(x), 320)]
    assert all(f.shape == (160,) for f in frames)
    y = np.concatenate(frames).astype(float)
    steady = y[down.latency_samples + 200 : -200]
    amp, worst = _fit_sine(steady, 440, 8000)
    assert abs(20 * np.log10(amp / 16000)) < 1.0
    assert worst < 0.005 * 16000
    assert abs(_peak_hz(steady, 8000) - 440) < 3


def test_downsample_rejects_above_4k():
    """A 6 kHz tone at 16 kHz must not fold back to 2 kHz on the line."""
    x = _tone(6000, 0.5, 16000)
    down = downsampler()
    y = np.concatenate([down.process(x[i : i + 320]) for i in range(0, len(x), 320)]).astype(float)
    assert np.max(np.abs(y[400:])) < 16  # > 60 dB down


def test_frame_length_exact_over_long_run():
    up, down = upsampler(), downsampler()
    rng = np.random.default_rng(1)
    for _ in range(500):
        assert len(up.process(rng.integers(-3000, 3000, 160, dtype=np.int16))) == 320
        assert len(down.process(rng.integers(-3000, 3000, 320, dtype=np.int16))) == 160
    assert len(up._history) == 28 and len(down._history) == 56  # the filters' state, not a growing backlog


def test_wrong_frame_size_and_reset():
    up = FrameResampler(8000, 16000)
    with pytest.raises(ValueError):
        up.process(np.zeros(100, np.int16))
    up.process(np.full(160, 8000, np.int16))
    up.reset()
    assert not np.any(up.process(np.zeros(160, np.int16)))  # the filter forgot the old audio


def test_raw_resampler_total_length_and_flush():
    r = Resampler(8000, 16000)
    x = _tone(300, 0.5, 8000)
    outs = [r.process(x[i : i + 160]) for i in range(0, len(x), 160)]
    total = sum(len(o) for o in outs) + len(r.flush())
    assert abs(total - 2 * len(x)) <= 2
    assert r.process(x[:160].astype(np.float64)).dtype == np.int16  # converted, not rejected
