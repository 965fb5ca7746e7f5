"""`appliancectl bench agent`: what the agent's thinking costs per caller turn.

Several calls take turns round-robin (as concurrent calls do), each turn a free-form LLM
answer with the agent's real system prompt and the growing history, measured twice: with
per-call KV-cache reuse (only the new tokens of a turn are evaluated) and without (the whole
prompt every turn). Figures per turn: time to the first token and to the first speakable
clause (what ttsd can start on), p50/p95. Also the understanding step (embedding + intent +
slots) that routes most turns without the LLM.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..config import Config
from .stats import summarize, table

CALLER_TURNS = [
    "hi there, I have a question about my cleaning",
    "do you take patients with dental insurance",
    "and is there parking near the clinic",
    "what should I bring to my first visit",
    "can my kids come to the same appointment",
    "okay and how long does a cleaning usually take",
]


def _agent(config: Config, agent_file: str | None):
    from ..agent.definition import load_agent

    path = Path(agent_file) if agent_file else \
        Path(__file__).resolve().parents[1] / "agent" / "examples" / "dental-receptionist.toml"
    return load_agent(path)


def _llm(config: Config, kv_reuse: bool, gguf: str | None, n_gpu_layers: int):
    from ..agent.llm import LocalLlm
    from ..models.store import locate

    path = Path(gguf) if gguf else Path(locate(config, config.agent.llm_model))
    if path.is_dir():
        path = next(path.glob("*.gguf"))
    return LocalLlm(str(path), threads=config.agent.llm_threads, kv_reuse=kv_reuse, n_gpu_layers=n_gpu_layers)


def run(config: Config, *, calls: int = 3, turns: int = 6, agent_file: str | None = None, gguf: str | None = None,
        n_gpu_layers: int | None = None) -> dict:
    """``gguf`` replaces the manifest's model (e.g. the random-weight timing model of
    `bench make-gguf`); ``n_gpu_layers`` overrides agent.n_gpu_layers."""
    from ..agent.llm import LlmResponder, TurnStats, clauses, speakable
    from ..agent.understanding import Understander
    from ..agent.understanding.embed import Embedder

    gpu = config.agent.n_gpu_layers if n_gpu_layers is None else n_gpu_layers
    agent = _agent(config, agent_file)
    result: dict = {"bench": "agent", "agent": agent.name, "model": gguf or config.agent.llm_model, "calls": calls,
                    "turns": turns, "n_gpu_layers": gpu}
    for kv in (True, False):
        llm = _llm(config, kv, gguf, gpu)
        result.update(model_name=llm.name, device=llm.device, layers_offloaded=f"{llm.offloaded}/{llm.layers}")
        responder = LlmResponder(llm, agent)
        histories = {f"call{c}": [] for c in range(calls)}
        first_token, first_clause, prompt_tokens, decode_tps = [], [], [], []
        for t in range(turns):
            for call, history in histories.items():
                history.append({"role": "user", "content": CALLER_TURNS[t % len(CALLER_TURNS)]})
                stats = TurnStats()
                start = time.perf_counter()
                said, first = [], None
                for clause in clauses(llm.stream(call, responder.messages(history), max_tokens=agent.llm.max_tokens,
                                                 temperature=agent.llm.temperature, stats=stats)):
                    clause = speakable(clause)
                    if clause and first is None:
                        first = (time.perf_counter() - start) * 1000
                    said.append(clause)
                history.append({"role": "assistant", "content": " ".join(s for s in said if s)})
                if t > 0:  # the first turn of a call has nothing to reuse either way
                    first_token.append(stats.first_token_ms)
                    first_clause.append(first if first is not None else stats.total_ms)
                    prompt_tokens.append(stats.prompt_tokens)
                    if stats.generated_tokens > 1:  # generation speed after the first token
                        decode_tps.append((stats.generated_tokens - 1) * 1000 / (stats.total_ms - stats.first_token_ms))
        result["kv_reuse" if kv else "no_kv_reuse"] = {
            "first_token_ms": summarize(first_token), "first_clause_ms": summarize(first_clause),
            "prompt_tokens": summarize(prompt_tokens), "decode_tokens_per_s": summarize(decode_tps)}
        del responder, llm  # both hold the model: freed before the second is loaded (GPU memory)
    embedder = Embedder()
    understander = Understander(embedder, {i.name: list(i.examples) for i in agent.intents},
                                [(k.id, list(k.questions), k.answer) for k in agent.knowledge], intent_threshold=0.4)
    understand = []
    for i in range(5):
        for text in CALLER_TURNS:
            text = f"{text} {'please ' * i}".strip()  # new text each time: no embedding cache hit
            start = time.perf_counter()
            understander.understand(text)
            understand.append((time.perf_counter() - start) * 1000)
    result["understanding_ms"] = summarize(understand)
    return result


def render(r: dict) -> str:
    rows = [("agent / model", f'{r["agent"]} / {r["model"]}, {r["calls"]} calls x {r["turns"]} turns, interleaved')]
    rows.append(("model name / device", f'{r["model_name"]} / {r["device"]}, {r["layers_offloaded"]} layers offloaded'))
    for key, label in (("kv_reuse", "with KV reuse"), ("no_kv_reuse", "without KV reuse")):
        ft, fc, pt = r[key]["first_token_ms"], r[key]["first_clause_ms"], r[key]["prompt_tokens"]
        rows.append((f"{label}: first token", f'p50 {ft["p50"]:.0f} ms  p95 {ft["p95"]:.0f} ms'))
        rows.append((f"{label}: first clause", f'p50 {fc["p50"]:.0f} ms  p95 {fc["p95"]:.0f} ms  '
                                                f'(prompt p50 {pt["p50"]:.0f} tokens)'))
        if r[key]["decode_tokens_per_s"].get("n"):
            rows.append((f"{label}: generation", f'p50 {r[key]["decode_tokens_per_s"]["p50"]:.1f} tokens/s'))
    u = r["understanding_ms"]
    rows.append(("understanding (embed+intent+slots)", f'p50 {u["p50"]:.1f} ms  p95 {u["p95"]:.1f} ms'))
    return table(rows)
