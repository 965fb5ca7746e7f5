"""The echo gate tells the agent's own voice coming back down the line from a caller talking:
real Piper speech, the echo through G.711 at 8 kHz with a line delay, as a phone returns it."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from appliance.bench.calldrive import caller_voice
from appliance.bench.speechdrive import synthetic_speech
from appliance.audio import FRAME_NS, FRAME_SAMPLES
from appliance.speech.echo import EchoGate
from appliance.telephony.media.g711 import ulaw_decode, ulaw_encode

T0 = 1_000 * FRAME_NS  # an arbitrary start on the monotonic clock


@pytest.fixture(scope="module")
def agent():
    return synthetic_speech("Thank you for calling Riverside Dental. I can book, move or cancel an appointment.")


@pytest.fixture(scope="module")
def caller():
    voice = caller_voice("Hi, I would like to book an appointment for next Tuesday please.")
    return (soxr.resample(voice.astype(np.float32), 8000, 16000)).astype(np.int16)


def line_echo(pcm: np.ndarray, delay_ms: int, gain_db: float) -> np.ndarray:
    """What a phone returns: 8 kHz μ-law, delayed, attenuated, back at 16 kHz."""
    narrow = soxr.resample(pcm.astype(np.float32), 16000, 8000) * 10 ** (gain_db / 20)
    coded = ulaw_decode(ulaw_encode(np.clip(narrow, -32768, 32767).astype(np.int16))).astype(np.float32)
    wide = soxr.resample(coded, 8000, 16000)
    return np.concatenate([np.zeros(16 * delay_ms, np.float32), wide])


def frames(pcm: np.ndarray):
    n = len(pcm) // FRAME_SAMPLES
    return [np.clip(pcm[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES], -32768, 32767).astype(np.int16) for i in range(n)]


def run(gate: EchoGate, played: np.ndarray, heard: np.ndarray, *, lead_frames: int = 5, judged=None) -> list[bool]:
    """Play ``played`` (written ``lead_frames`` ahead, as ttsd does) and hear ``heard``; the
    gate's verdict for each heard frame where ``judged`` (default: what is heard) is loud."""
    out, verdicts = frames(played), []
    loud = frames(heard if judged is None else judged)
    for k, f in enumerate(frames(heard)):
        if k + lead_frames < len(out):
            gate.played(T0 + (k + lead_frames) * FRAME_NS, out[k + lead_frames])
        if k == 0:
            for j in range(min(lead_frames, len(out))):
                gate.played(T0 + j * FRAME_NS, out[j])
        echo = gate.is_echo(T0 + k * FRAME_NS, f)
        if np.sqrt(np.mean(loud[k].astype(np.float32) ** 2)) > 300:
            verdicts.append(echo)
    return verdicts


@pytest.mark.parametrize("delay_ms,gain_db", [(60, 0.0), (180, -6.0), (400, -12.0)])
def test_the_agents_voice_returning_down_the_line_is_echo(agent, delay_ms, gain_db):
    verdicts = run(EchoGate(), agent, line_echo(agent, delay_ms, gain_db))
    assert len(verdicts) > 50 and np.mean(verdicts) > 0.9, np.mean(verdicts)


def test_a_caller_talking_while_the_agent_talks_is_not_echo(agent, caller):
    n = min(len(agent), len(caller))
    verdicts = run(EchoGate(), agent, caller[:n].astype(np.float32))
    assert len(verdicts) > 50 and np.mean(verdicts) < 0.05, np.mean(verdicts)


def test_a_caller_talking_over_the_echo_gets_through(agent, caller):
    """Double talk: where the caller speaks over an echo 12 dB below them, it is the caller."""
    echo = line_echo(agent, 180, -12.0)
    n = min(len(echo), len(caller))
    verdicts = run(EchoGate(), agent, caller[:n] + echo[:n], judged=caller[:n])
    assert len(verdicts) > 50 and np.mean(verdicts) < 0.1, np.mean(verdicts)


def test_nothing_is_echo_when_the_agent_is_silent(caller):
    gate = EchoGate()
    assert not any(gate.is_echo(T0 + k * FRAME_NS, f) for k, f in enumerate(frames(caller)))
    assert gate.echo_frames == 0


def speech_starts(played: np.ndarray, heard: np.ndarray, echo: bool = True, lead_frames: int = 5) -> list[int]:
    """The frames at which the endpointer (WebRTC VAD, with or without the gate) starts an
    utterance while the agent plays ``played`` and the line returns ``heard``."""
    from appliance.config.schema import VadConfig
    from appliance.speech.vad import Endpointer, Started, WebRtcVad

    gate = EchoGate() if echo else None
    ep = Endpointer(VadConfig(), WebRtcVad(3), echo=gate)
    out, starts = frames(played), []
    for j in range(min(lead_frames, len(out))):
        if gate:
            gate.played(T0 + j * FRAME_NS, out[j])
    for k, f in enumerate(frames(heard)):
        if gate and k + lead_frames < len(out):
            gate.played(T0 + (k + lead_frames) * FRAME_NS, out[k + lead_frames])
        starts += [item.seq for item in ep.push(k, T0 + k * FRAME_NS, f) if isinstance(item, Started)]
    return starts


def test_the_caller_barging_in_over_the_echo_starts_speech_at_once_and_only_then(agent, caller):
    """The echo alone for a second starts nothing; the caller cutting in starts an utterance
    within 100 ms of their first word (the barge-in timer runs from there)."""
    echo = line_echo(agent, 180, -6.0)
    onset = 50  # frames: the caller starts 1 s into the agent's sentence
    heard = echo[:len(agent)].copy()
    part = caller[:len(heard) - onset * FRAME_SAMPLES]
    heard[onset * FRAME_SAMPLES:onset * FRAME_SAMPLES + len(part)] += part
    first_word = onset + int(np.argmax(np.abs(caller) > 1000)) // FRAME_SAMPLES
    starts = speech_starts(agent, heard)
    assert starts and first_word - 5 <= starts[0] <= first_word + 5, (starts, first_word)
    # Without the gate the echo alone starts "speech" long before the caller says anything.
    assert speech_starts(agent, heard, echo=False)[0] < onset
