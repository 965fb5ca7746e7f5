"""sipd against SIPp on loopback: calls answered with audio and DTMF, admission control,
transfer against a PBX-side peer, registration with digest, hostile input."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
from sipd_harness import PCAPS, EventLog, Sipd, free_port, sipp, sipp_counts, sipp_lost

from appliance.bus.messages import CallAnswered, CallEnded, CallStarted, Dtmf
from appliance.ipc import RingReader, RingWriter

pytestmark = pytest.mark.skipif(shutil.which("sipp") is None, reason="scripts/test installs sip-tester")


@pytest.fixture
def events(sipd):
    log = EventLog(sipd.run_dir)
    time.sleep(0.3)  # let the subscription reach sipd before the test acts
    yield log
    log.close()


def test_a_sipp_call_is_answered_its_audio_lands_in_the_ring_and_dtmf_arrives(sipd, events, tmp_path):
    proc = sipp("uac_call.xml", sipd.port, cwd=str(tmp_path), keys={
        "pcap": PCAPS / "g711a.pcap", "dtmf_pcap": PCAPS / "dtmf_2833_5.pcap"}, extra=["-d", "1500"])
    assert sipp_counts(proc) == (1, 0), proc.stdout[-3000:] + sipd.output()[-3000:]
    events.collect(until=lambda e: isinstance(e, CallEnded), timeout=10)
    started = events.of(CallStarted)[0]
    assert started.caller.startswith("+4930") and started.headers["User-Agent"] == "SIPp appliance-test"
    assert events.of(CallAnswered)[0].codec == "PCMA"
    assert [(d.digit) for d in events.of(Dtmf)] == ["5"]
    assert events.of(CallEnded)[0].reason == "caller-hangup"


def test_barge_in_flush_silences_queued_agent_audio_within_a_frame(sipd, tmp_path):
    from appliance.bus.messages import PlayFlush

    events = EventLog(sipd.run_dir)
    time.sleep(0.3)
    proc = sipp("uac_echo.xml", sipd.port, background=True, cwd=str(tmp_path), keys={"codec_pt": 0},
                extra=["-d", "4000", "-rtp_echo"])
    events.collect(until=lambda e: isinstance(e, CallAnswered), timeout=10)
    call_id = events.of(CallStarted)[0].call_id
    reader = RingReader(sipd.shm_dir, call_id, "in", from_now=True)
    t = np.arange(16000 * 3) / 16000
    with RingWriter.attach(sipd.shm_dir, call_id, "out") as out:  # 3 s queued at once, as ttsd would
        for frame in (8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16).reshape(-1, 320):
            out.write(frame)
    time.sleep(0.6)
    flushed_at = time.monotonic_ns()
    sipd.control(PlayFlush(call_id=call_id))
    frames = []
    while reader.writer_state() != "closed" or reader.available():
        frames += [(f.capture_ns, float(np.sqrt(np.mean(f.pcm.astype(float) ** 2)))) for f in reader.frames()]
        time.sleep(0.02)
    reader.close()
    proc.communicate(timeout=30)
    events.collect(until=lambda e: isinstance(e, CallEnded), timeout=10)
    loud_after = [ts for ts, level in frames if level > 1000 and ts > flushed_at]
    # after the flush, at most what was already in flight: one frame in sipd plus the echo path
    # (SIPp's echo and our jitter buffer, ~40-60 ms) comes back
    assert loud_after and (max(loud_after) - flushed_at) / 1e6 < 120
    m = events.of(CallEnded)[0].metrics
    assert 20 <= m["agent_frames"] <= 45 and m["flushed"] >= 100  # ~0.6 s played, the rest dropped
    events.close()


def test_calls_survive_10_percent_signalling_loss_through_retransmissions(sipd, tmp_path):
    proc = sipp("uac_echo.xml", sipd.port, cwd=str(tmp_path), keys={"codec_pt": 0}, calls=10, limit=10, rate=10,
                extra=["-d", "500", "-lost", "10"])
    assert sipp_counts(proc) == (10, 0), proc.stdout[-2000:]
    # Nobody left hanging: with lost packets the last teardown can take a few retransmission
    # intervals (T1 0.5 s, doubling) after SIPp has its answer.
    for _ in range(50):
        if sipd.status().details["active_calls"] == 0:
            break
        time.sleep(0.1)
    assert sipd.status().details["active_calls"] == 0
    # the loss really happened (SIPp's own count) and was repaired by retransmissions
    assert sipp_lost(proc.stdout) > 0


def test_a_call_over_tcp(sipd, tmp_path):
    proc = sipp("uac_echo.xml", sipd.port, cwd=str(tmp_path), keys={"codec_pt": 8}, transport="t1",
                extra=["-d", "500"])
    assert sipp_counts(proc) == (1, 0), proc.stdout[-2000:]


def test_agent_sends_dtmf_as_rfc4733_events_that_the_peer_receives(sipd, tmp_path):
    from appliance.bus import RemoteError
    from appliance.bus.messages import SendDtmf

    events = EventLog(sipd.run_dir)
    time.sleep(0.3)
    proc = sipp("uac_echo.xml", sipd.port, background=True, cwd=str(tmp_path), keys={"codec_pt": 0},
                extra=["-d", "3000", "-rtp_echo"])
    events.collect(until=lambda e: isinstance(e, CallAnswered), timeout=10)
    call_id = events.of(CallStarted)[0].call_id
    sipd.control(SendDtmf(call_id=call_id, digits="12#"))
    # SIPp echoes our RTP: the events come back and are decoded like a caller's key presses
    events.collect(until=lambda e: len(events.of(Dtmf)) >= 3, timeout=10)
    assert [(d.digit, d.duration_ms) for d in events.of(Dtmf)] == [("1", 160), ("2", 160), ("#", 160)]
    with pytest.raises(RemoteError, match="digit"):
        sipd.control(SendDtmf(call_id=call_id, digits="x"))
    proc.communicate(timeout=30)
    events.close()


def test_appliancectl_events_prints_a_calls_events(sipd, tmp_path):
    import subprocess
    import sys

    tail = subprocess.Popen([sys.executable, "-m", "appliance", "--config", str(sipd.config), "events",
                             "--type", "call.", "--count", "3", "--timeout", "20"], stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    out = sipp("uac_echo.xml", sipd.port, cwd=str(tmp_path), keys={"codec_pt": 0}, extra=["-d", "300"])
    assert sipp_counts(out) == (1, 0)
    lines = tail.communicate(timeout=30)[0].splitlines()
    assert [line.split()[2] for line in lines] == ["call.started", "call.answered", "call.ended"]
    assert len({line.split()[1] for line in lines}) == 1  # one call id on every line
