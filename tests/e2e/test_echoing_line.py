"""A line that returns everything the agent says (SIPp's -rtp_echo: a full-level echo, the
worst a phone can do) must not make the agent interrupt itself: the greeting plays whole."""

from __future__ import annotations

import shutil

import pytest

from appliance.bench.sipdrive import sipp, sipp_counts
from appliance.bus.messages import CallEnded, SpeechStarted, TtsFinished

pytestmark = pytest.mark.skipif(shutil.which("sipp") is None, reason="scripts/test installs sip-tester")


def test_the_agents_own_voice_echoed_back_does_not_barge_in(appliance, tmp_path):
    out = sipp("uac_echo.xml", appliance.port, cwd=str(tmp_path), keys={"codec_pt": 0},
               extra=["-d", "14000", "-rtp_echo"], timeout=40).stdout
    assert sipp_counts(out) == (1, 0), out
    appliance.events.collect(until=lambda e: isinstance(e, CallEnded), timeout=20)
    greeting = [e for e in appliance.events.of(TtsFinished)]
    assert greeting and not greeting[0].cancelled, greeting
    assert greeting[0].spoken.startswith("Thank you for calling Riverside Dental") and \
        greeting[0].spoken.rstrip().endswith("How can I help?"), greeting[0].spoken
    # The echo was heard and recognised as such: no speech start while the agent talked.
    assert not appliance.events.of(SpeechStarted), appliance.events.of(SpeechStarted)
    status = appliance.services["asrd"].status().details
    assert status["echo_frames"] > 50, status
