"""End to end: `appliancectl talk --in question.wav --out heard.wav` rings the whole appliance
(sipd, asrd, ttsd, agentd on the CPU defaults, the example receptionist) through sipd, asks the
opening hours, and the agent's answer is heard on the line after the question."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from talkutil import loud_frames

from appliance.agent.examples.clinic import BookingServerThread
from appliance.bench.calldrive import Appliance, caller_voice
from appliance.bus.messages import AsrFinal, CallEnded, TtsFinished
from appliance.speech import wavfile

QUESTION = "What time are you open on Saturday?"
GREETING_S = 9.0  # the caller lets the agent's greeting finish first, as a person would


@pytest.fixture
def appliance(sandbox, tmp_path):
    with BookingServerThread(str(tmp_path / "bookings.db")) as booking:
        app = Appliance(sandbox, booking.url)
        yield app
        app.stop()


@pytest.mark.timeout(300)
def test_talk_asks_the_opening_hours_and_hears_the_answer(appliance, sandbox, tmp_path):
    voice = caller_voice(QUESTION)  # 8 kHz; the line resamples it
    wavfile.write(tmp_path / "question.wav", np.concatenate([np.zeros(int(8000 * GREETING_S), np.int16), voice]), 8000)
    question_end_s = GREETING_S + len(voice) / 8000
    proc = subprocess.run(
        [sys.executable, "-m", "appliance", "--config", str(sandbox["config"]), "talk",
         "--in", str(tmp_path / "question.wav"), "--out", str(tmp_path / "heard.wav"),
         "--seconds", str(question_end_s + 14)],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    appliance.events.collect(until=lambda e: isinstance(e, CallEnded), timeout=20)
    appliance.events.collect(timeout=1)
    assert appliance.events.of(CallEnded)[0].reason == "caller-hangup"
    assert any("saturday" in e.text.lower() for e in appliance.events.of(AsrFinal)), appliance.events.of(AsrFinal)
    answers = [e.spoken for e in appliance.events.of(TtsFinished) if "Saturday" in e.spoken]
    assert answers, [e.spoken for e in appliance.events.of(TtsFinished)]
    # the conversation was shown live: the caller's question and the agent's answer
    assert "caller: " in proc.stdout and any(f"agent:  {a}" in proc.stdout for a in answers), proc.stdout
    # ...and the answer was heard on the line after the question (same timeline as the file)
    heard, rate = wavfile.read(tmp_path / "heard.wav")
    greeting = loud_frames(heard[: int(rate * GREETING_S)], threshold=300)
    answer = loud_frames(heard[int(rate * question_end_s):], threshold=300)
    assert len(greeting) >= 25, "the greeting was not heard"
    assert len(answer) >= 50, f"only {len(answer)} frames of agent audio after the question"
