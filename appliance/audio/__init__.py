"""The appliance's audio facts, defined once: every module reads its rates and frame sizes here.

Between the processes audio is 16 kHz mono PCM16 in 20 ms frames (the rings, ARCHITECTURE.md);
a phone line's narrowband codecs run at 8 kHz. Resampling lives in ``audio.resample``.
"""

SAMPLE_RATE = 16_000  # the rings', the recogniser's, the VAD's and the turn model's rate
FRAME_MS = 20
FRAME_NS = FRAME_MS * 1_000_000
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 320
LINE_RATE = 8_000  # G.711's (and every RTP clock here)
