"""Batched decoding (asr.batch_max): utterances decoded together give exactly what each gives
alone, on Piper speech through the phone line (G.711), hints and n-best included."""

from __future__ import annotations

import pytest

from appliance.bench.speech import phone_line
from appliance.bench.speechdrive import synthetic_speech
from appliance.speech.asr.base import Hint

SAID = ["Ten of clubs.", "I'd like to book an appointment for Tuesday morning.", "Five five five, one two three.",
        "Is there parking near the clinic?", "My name is Sarah Miller.", "Can you move it to eleven instead?"]


@pytest.fixture(scope="module")
def whisper(models_dir):
    from appliance.speech.asr.whisper import WhisperAsr

    return WhisperAsr(models_dir / "whisper-base-en")


def test_a_batch_gives_each_utterance_what_it_gives_alone(whisper):
    audios = [phone_line(synthetic_speech(text)) for text in SAID[:5]] + [synthetic_speech(SAID[5])]
    hints = [None, Hint(prompt="Which card?", nbest=2), None, Hint(prompt="A number, please.", nbest=1), None,
             Hint(prompt="Which card?", nbest=2)]  # mixed: grouped by what a batch must share
    alone = [whisper.transcribe(a, 30, h) for a, h in zip(audios, hints)]
    together = whisper.transcribe_batch(audios, 30, hints)
    assert [t.text for t in together] == [t.text for t in alone]
    assert [t.alternatives for t in together] == [t.alternatives for t in alone]
    assert [[w.text for w in t.words] for t in together] == [[w.text for w in t.words] for t in alone]
    for a, b in zip(together, alone):
        assert all(abs(x.start - y.start) < 0.05 and abs(x.conf - y.conf) < 0.05 for x, y in zip(a.words, b.words))
    assert max(t.meta.get("batch", 1) for t in together) >= 2  # it really was decoded as a batch
    assert all(t.text for t in together)
