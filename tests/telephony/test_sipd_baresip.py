"""baresip, a real softphone, calls sipd: its WAV (a 440 Hz tone) arrives in the in ring, and
a 1 kHz tone the agent writes to the out ring is what baresip records (its sndfile dump)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from sipd_harness import EventLog, Sipd

from appliance.bench.calldrive import baresip_config
from appliance.bus.messages import CallAnswered, CallEnded, CallStarted
from appliance.audio import FRAME_SAMPLES
from appliance.ipc import RingReader, RingWriter
from appliance.speech import wavfile

pytestmark = pytest.mark.skipif(shutil.which("baresip") is None, reason="scripts/test installs baresip")


def write_tone(path: Path, freq: float, seconds: float, rate: int = 8000) -> None:
    t = np.arange(int(rate * seconds)) / rate
    wavfile.write(path, (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16), rate)


def tone_share(pcm: np.ndarray, rate: int, freq: float, block: int) -> tuple[int, int]:
    """(blocks whose dominant frequency is ``freq`` ± 25 Hz, loud blocks)."""
    hits = loud = 0
    for i in range(0, len(pcm) - block, block):
        b = pcm[i:i + block].astype(np.float64)
        if np.sqrt(np.mean(b ** 2)) < 500:
            continue
        loud += 1
        spectrum = np.abs(np.fft.rfft(b * np.hanning(block)))
        hits += abs(np.fft.rfftfreq(block, 1 / rate)[np.argmax(spectrum)] - freq) < 25
    return hits, loud


def phone_profile(d: Path, codec: str) -> None:
    write_tone(d / "caller.wav", 440, 4.0, rate=16000 if codec == "g722" else 8000)  # aufile does not resample
    baresip_config(d, codec, caller="caller")


@pytest.mark.parametrize("codec", ["g711", "g722"])
def test_baresip_call_carries_audio_both_ways(sandbox, tmp_path, codec):
    sipd = Sipd(sandbox).start()
    events = EventLog(sipd.run_dir)
    phone_profile(tmp_path, codec)
    try:
        time.sleep(0.3)
        phone = subprocess.Popen(["baresip", "-f", str(tmp_path), "-e", f"/dial sip:agent@127.0.0.1:{sipd.port}",
                                  "-t", "8"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        events.collect(until=lambda e: isinstance(e, CallAnswered), timeout=10)
        call_id = events.of(CallStarted)[0].call_id
        reader = RingReader(sipd.shm_dir, call_id, "in")
        with RingWriter.attach(sipd.shm_dir, call_id, "out") as out:
            t = np.arange(16000 * 2) / 16000
            for frame in (8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16).reshape(-1, FRAME_SAMPLES):
                out.write(frame)
        heard_in = []
        while reader.writer_state() != "closed" or reader.available():
            heard_in += [np.array(f.pcm) for f in reader.frames()]
            time.sleep(0.05)
        reader.close()
        events.collect(until=lambda e: isinstance(e, CallEnded), timeout=10)
        phone.wait(20)
    finally:
        events.close()
        sipd.stop()
    # caller → agent: the 4 s 440 Hz WAV is in the ring
    hits, loud = tone_share(np.concatenate(heard_in), 16000, 440, FRAME_SAMPLES)
    assert loud >= 190 and hits >= 0.97 * loud, (hits, loud)
    # agent → caller: baresip recorded the 2 s 1 kHz tone
    (dump,) = tmp_path.glob("dump-*-dec.wav")
    pcm, rate = wavfile.read(dump)
    hits, loud = tone_share(pcm, rate, 1000, rate // 50)
    assert 95 <= loud <= 105 and hits >= 0.97 * loud, (hits, loud)
    m = events.of(CallEnded)[0].metrics
    assert m["codec"] == {"g711": "PCMU", "g722": "G722"}[codec]
    assert m["lost"] <= 0.01 * m["rx_packets"] and m["agent_frames"] == 100
