"""sipd against SIPp on loopback: calls answered with audio and DTMF, admission control,
transfer against a PBX-side peer, registration with digest, hostile input."""

from __future__ import annotations

import shutil
import socket
import time

import numpy as np
import pytest
from sipd_harness import PCAPS, EventLog, Sipd, free_port, sipp, sipp_counts

from appliance.bus.messages import CallAnswered, CallEnded, CallStarted, Dtmf, TransferProgress
from appliance.ipc import RingReader

pytestmark = pytest.mark.skipif(shutil.which("sipp") is None, reason="scripts/test installs sip-tester")


@pytest.fixture
def sipd(sandbox):
    s = Sipd(sandbox).start()
    yield s
    s.stop()


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
