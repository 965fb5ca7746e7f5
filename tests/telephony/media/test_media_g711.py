"""G.711 tables: exhaustive against audioop (where it exists) and known code points."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from appliance.telephony.media import g711

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import audioop  # removed in Python 3.13
    except ImportError:
        audioop = None

ALL_PCM = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16)
ALL_CODES = bytes(range(256))
needs_audioop = pytest.mark.skipif(audioop is None, reason="audioop not available")


@needs_audioop
def test_ulaw_exhaustive_vs_audioop():
    assert g711.ulaw_encode(ALL_PCM) == audioop.lin2ulaw(ALL_PCM.tobytes(), 2)
    ref = np.frombuffer(audioop.ulaw2lin(ALL_CODES, 2), dtype=np.int16)
    np.testing.assert_array_equal(g711.ulaw_decode(ALL_CODES), ref)


@needs_audioop
def test_alaw_exhaustive_vs_audioop():
    assert g711.alaw_encode(ALL_PCM) == audioop.lin2alaw(ALL_PCM.tobytes(), 2)
    ref = np.frombuffer(audioop.alaw2lin(ALL_CODES, 2), dtype=np.int16)
    np.testing.assert_array_equal(g711.alaw_decode(ALL_CODES), ref)


def test_known_ulaw_values():
    assert g711.ulaw_decode(b"\x00\x80\xff\x7f").tolist() == [-32124, 32124, 0, 0]
    assert g711.ulaw_encode(np.array([-32124, 32124, 0, 32767, -32768], np.int16)) == b"\x00\x80\xff\x80\x00"


def test_known_alaw_values():
    assert g711.alaw_decode(b"\xd5\x55\xaa\x2a").tolist() == [8, -8, 32256, -32256]
    assert g711.alaw_encode(np.array([8, -8, 0, 32767, -32768], np.int16)) == b"\xd5\x55\xd5\xaa\x2a"


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_decode_encode_is_identity_on_codes(law):
    c = g711.G711Codec(law)
    # µ-law has two zeros (0x7f, 0xff); 0 encodes as 0xff, so leave 0x7f out
    codes = ALL_CODES if law == "alaw" else bytes(b for b in ALL_CODES if b != 0x7F)
    assert c.encode(c.decode(codes)) == codes


def test_codec_shape_and_monotone():
    c = g711.G711Codec("pcmu")
    assert (c.payload_type, c.name, c.sample_rate) == (0, "PCMU", 8000)
    frame = (np.sin(np.arange(160) / 5) * 20000).astype(np.int16)
    enc = c.encode(frame)
    assert len(enc) == 160
    out = c.decode(enc)
    assert out.dtype == np.int16 and out.shape == (160,)
    assert np.max(np.abs(out.astype(int) - frame)) < 20000 * 0.04  # within one quantizer step
    # decoded value is monotone in the input over the whole range
    for law in ("ulaw", "alaw"):
        cc = g711.G711Codec(law)
        dec = cc.decode(cc.encode(ALL_PCM[np.argsort(ALL_PCM)])).astype(int)
        assert np.all(np.diff(dec) >= 0)
    with pytest.raises(ValueError):
        g711.G711Codec("g729")


def test_tables_read_only():
    with pytest.raises(ValueError):
        g711.ULAW_DECODE[0] = 1
