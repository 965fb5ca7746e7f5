"""Audio both ways through a real peer: the caller's speech lands in the in ring, and a tone
the agent writes to the out ring is sent to the caller (SIPp echoes it back, so it must
reappear, intact, in the in ring)."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
from sipd_harness import PCAPS, EventLog, Sipd, pcap_rtp_payloads, sipp, sipp_counts

from appliance.bus.messages import CallAnswered, CallEnded, CallStarted
from appliance.audio import FRAME_SAMPLES
from appliance.ipc import RingReader, RingWriter

pytestmark = pytest.mark.skipif(shutil.which("sipp") is None, reason="scripts/test installs sip-tester")


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


def tone_frames(freq: float, seconds: float, amplitude: int = 8000):
    t = np.arange(int(16000 * seconds)) / 16000
    wave = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    return wave.reshape(-1, FRAME_SAMPLES)


def dominant_hz(pcm: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.fft.rfftfreq(len(pcm), 1 / 16000)[np.argmax(spectrum)])


def read_call(sipd, events, proc, deadline_s=30):
    """Follow the call's in ring from answer to hangup; returns (frames, CallEnded)."""
    events.collect(until=lambda e: isinstance(e, CallAnswered), timeout=10)
    call_id = events.of(CallStarted)[0].call_id
    reader = RingReader(sipd.shm_dir, call_id, "in")
    frames = []
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for f in reader.frames():
            frames.append(np.array(f.pcm))
        if reader.writer_state() == "closed" and not reader.available():
            break
        time.sleep(0.02)
    reader.close()
    events.collect(until=lambda e: isinstance(e, CallEnded), timeout=10)
    return call_id, frames, events.of(CallEnded)[0]


def test_callers_speech_lands_in_the_ring_without_loss(sipd, tmp_path):
    events = EventLog(sipd.run_dir)
    time.sleep(0.3)
    proc = sipp("uac_call.xml", sipd.port, background=True, cwd=str(tmp_path), extra=["-d", "500"],
                keys={"pcap": PCAPS / "g711a.pcap", "dtmf_pcap": PCAPS / "dtmf_2833_1.pcap"})
    _, frames, ended = read_call(sipd, events, proc)
    out, _ = proc.communicate(timeout=30)
    assert sipp_counts(out) == (1, 0)
    # what the caller sent, decoded independently of sipd (Python's audioop is the reference)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop
    payloads = pcap_rtp_payloads(PCAPS / "g711a.pcap")
    sent = np.frombuffer(b"".join(audioop.alaw2lin(p, 2) for p in payloads), dtype=np.int16)
    sent_frames = sent[: len(sent) // 160 * 160].reshape(-1, 160)
    expected_speech = sum(rms(f) > 300 for f in sent_frames)
    speech = [f for f in frames if rms(f) > 300]
    assert abs(len(speech) - expected_speech) <= 0.03 * expected_speech, (len(speech), expected_speech)
    # the received speech carries the same energy as what was sent (no clipping, no gaps)
    got = np.concatenate(speech)
    ref = np.concatenate([f for f in sent_frames if rms(f) > 300])
    assert 0.8 < rms(got) / rms(ref) < 1.25
    m = ended.metrics
    assert m["rx_packets"] >= len(payloads) and m["lost"] <= 0.01 * len(payloads) and m["bad_packets"] == 0
    events.close()


@pytest.mark.parametrize("codec_pt, codec", [(0, "PCMU"), (8, "PCMA"), (9, "G722")])
def test_agent_audio_reaches_the_caller_and_comes_back_through_an_echoing_peer(sipd, tmp_path, codec_pt, codec):
    events = EventLog(sipd.run_dir)
    time.sleep(0.3)
    proc = sipp("uac_echo.xml", sipd.port, background=True, cwd=str(tmp_path), keys={"codec_pt": codec_pt},
                extra=["-d", "3000", "-rtp_echo"])
    events.collect(until=lambda e: isinstance(e, CallAnswered), timeout=10)
    assert events.of(CallAnswered)[0].codec == codec
    call_id = events.of(CallStarted)[0].call_id
    with RingWriter.attach(sipd.shm_dir, call_id, "out") as out:  # as ttsd does
        for frame in tone_frames(1000, 1.5):
            out.write(frame)
    _, frames, ended = read_call(sipd, events, proc)
    out, _ = proc.communicate(timeout=30)
    assert sipp_counts(out) == (1, 0)
    loud = [f for f in frames if rms(f) > 1000]
    assert 70 <= len(loud) <= 80, len(loud)  # 1.5 s = 75 frames went out and came back
    echoed = np.concatenate(loud[5:-5])
    assert abs(dominant_hz(echoed) - 1000) < 20
    assert 0.5 < rms(echoed) / rms(tone_frames(1000, 1.5)) < 1.5  # level survives the codec
    assert ended.metrics["agent_frames"] == 75 and ended.metrics["lost"] == 0
    events.close()
