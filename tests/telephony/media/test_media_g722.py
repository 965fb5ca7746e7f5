"""G.722 wrapper: frame sizes, and a tone survives encode→decode."""

from __future__ import annotations

import numpy as np

from appliance.telephony.media.g722 import G722Codec


def _tone(freq, n, rate=16000, amp=10000):
    return (np.sin(2 * np.pi * freq * np.arange(n) / rate) * amp).astype(np.int16)


def test_frame_sizes():
    c = G722Codec()
    enc = c.encode(np.zeros(320, np.int16))
    assert isinstance(enc, bytes) and len(enc) == 160
    dec = c.decode(enc)
    assert dec.dtype == np.int16 and dec.shape == (320,)
    assert (c.payload_type, c.sample_rate, c.rtp_clock_rate) == (9, 16000, 8000)


def test_sine_keeps_frequency_and_snr():
    enc_codec, dec_codec = G722Codec(), G722Codec()
    x = _tone(1000, 16000)
    payloads = [enc_codec.encode(x[i : i + 320]) for i in range(0, len(x), 320)]
    assert all(len(p) == 160 for p in payloads)
    y = np.concatenate([dec_codec.decode(p) for p in payloads]).astype(float)
    assert y.shape == x.shape

    spec = np.abs(np.fft.rfft(y[4000:12000] * np.hanning(8000)))
    assert abs(np.fft.rfftfreq(8000, 1 / 16000)[np.argmax(spec)] - 1000) <= 2

    xf = x.astype(float)
    delay = max(range(64), key=lambda d: float(np.dot(xf[: len(xf) - d], y[d:])))
    a, b = xf[1000 : 15000 - delay], y[1000 + delay : 15000]
    snr = 10 * np.log10(np.sum(a * a) / np.sum((a - b) ** 2))
    assert snr > 20, (delay, snr)


def test_directions_are_independent():
    """Decoding on the same codec object must not disturb the encoder's state."""
    x = _tone(700, 3200)
    solo, mixed = G722Codec(), G722Codec()
    out_solo, out_mixed = [], []
    for i in range(0, 3200, 320):
        out_solo.append(solo.encode(x[i : i + 320]))
        enc = mixed.encode(x[i : i + 320])
        mixed.decode(enc)
        out_mixed.append(enc)
    assert out_solo == out_mixed


def test_accepts_non_int16_input():
    c1, c2 = G722Codec(), G722Codec()
    x = _tone(500, 320)
    assert c1.encode(x.astype(np.int32)) == c2.encode(x)
