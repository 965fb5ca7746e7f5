"""The local LLM through llama-cpp-python, one model shared by every call.

KV-cache reuse per call: llama.cpp keeps the last evaluated prompt and re-evaluates only the
tokens after the longest common prefix. With one call that is automatic (each turn's prompt
extends the previous one); with several calls interleaved, each would evict the others, so
the model's state is saved per call after its turn and loaded back before its next one, and
only the new tokens of a turn are evaluated. The chat template is the model's own (from the
GGUF metadata), never a guessed format: a wrong one silently drops the system prompt.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterator

from ..models.errors import ModelError

log = logging.getLogger("appliance.llm")

_CLAUSE_END = re.compile(r"[.!?;:,](?=\s|$)")


@dataclass
class TurnStats:
    """What one streamed turn cost: for call records and `appliancectl bench agent`."""

    prompt_tokens: int = 0
    generated_tokens: int = 0
    first_token_ms: float = 0.0
    total_ms: float = 0.0
    reused_state: bool = False
    clauses: list[float] = field(default_factory=list)  # ms from start to each clause


class LocalLlm:
    def __init__(self, model_path: str, *, n_ctx: int = 2048, threads: int | None = None, seed: int = 7,
                 max_sessions: int = 32, kv_reuse: bool = True, n_gpu_layers: int = 0):
        try:
            import llama_cpp
        except ImportError as exc:
            raise ModelError(f"llama-cpp-python is not installed ({exc}): pip install llama-cpp-python") from None
        if n_gpu_layers != 0 and not llama_cpp.llama_supports_gpu_offload():
            _refuse_offload(llama_cpp, n_gpu_layers)
        if not os.path.isfile(model_path):
            raise ModelError(f"LLM file {model_path} is missing: run `appliancectl models verify`")
        try:
            self.llama = llama_cpp.Llama(model_path=model_path, n_ctx=n_ctx, seed=seed, verbose=False,
                                         n_threads=threads or min(4, os.cpu_count() or 2), n_gpu_layers=n_gpu_layers)
        except Exception as exc:  # llama.cpp says "failed to load model" for a corrupt GGUF
            raise ModelError(f"LLM {model_path} does not load: {exc}") from None
        self._llama_cpp = llama_cpp
        self.name = self.llama.metadata.get("general.name", os.path.basename(model_path))
        self.device, self.offloaded, self.layers = _placement(llama_cpp, self.llama, n_gpu_layers)
        log.info("LLM %s (%s) on %s: %d of %d layers offloaded", os.path.basename(model_path), self.name,
                 self.device, self.offloaded, self.layers)
        self.lock = threading.Lock()  # one generation at a time: the threads are all in use
        self.states: OrderedDict[str, object] = OrderedDict()  # call id -> saved KV state (LRU)
        self.max_sessions = max_sessions
        self.kv_reuse = kv_reuse
        self.current: str | None = None  # whose prompt the live KV cache holds

    def _switch_to(self, session: str) -> bool:
        """Make the KV cache hold ``session``'s last prompt; True if it was reusable."""
        if not self.kv_reuse:
            self.llama.reset()
            self.current = None
            return False
        if self.current == session:
            return True
        if self.current is not None:
            self._save(self.current)
        state = self.states.get(session)
        if state is None:
            self.llama.reset()
            self.current = session
            return False
        try:
            self._load(state)
        except RuntimeError as exc:  # the KV cache may be half overwritten: start this call afresh
            log.warning("saved LLM state of %s not restored (%s); evaluating its prompt in full", session, exc)
            self.states.pop(session, None)
            self.llama.reset()
            self.current = session
            return False
        self.states.move_to_end(session)
        self.current = session
        return True

    def _save(self, session: str) -> None:
        """llama.cpp's state (KV cache) and the evaluated tokens, not Llama.save_state(): that
        also copies a logits array of n_batch x vocab floats (100 MB with SmolLM2's 49k vocab)
        that sampling never reads, and the copy cost 0.3-0.5 s of each turn's first token."""
        ctx = self.llama.ctx
        size = self._llama_cpp.llama_state_get_size(ctx)
        data = (ctypes.c_uint8 * size)()
        used = self._llama_cpp.llama_state_get_data(ctx, data, size)
        if used > size:
            raise RuntimeError("llama.cpp state did not fit its own size")
        self.states[session] = (data, used, self.llama.input_ids[: self.llama.n_tokens].copy())
        self.states.move_to_end(session)
        while len(self.states) > self.max_sessions:
            self.states.popitem(last=False)

    def _load(self, state) -> None:
        data, used, tokens = state
        if self._llama_cpp.llama_state_set_data(self.llama.ctx, data, used) != used:
            raise RuntimeError("llama.cpp refused a saved state")
        self.llama.input_ids[: len(tokens)] = tokens
        self.llama.n_tokens = len(tokens)
        self.llama._requires_eval = True  # as Llama.load_state: logits are stale until a decode

    def forget(self, session: str) -> None:
        with self.lock:
            self.states.pop(session, None)
            if self.current == session:
                self.current = None

    def stream(self, session: str, messages: list[dict], *, max_tokens: int = 80, temperature: float = 0.3,
               stats: TurnStats | None = None, cancel: threading.Event | None = None) -> Iterator[str]:
        """Text pieces as the model produces them (blocking: run it in a worker thread).
        ``cancel`` stops generation between tokens (the caller barged in)."""
        stats = stats if stats is not None else TurnStats()
        with self.lock:
            start = time.perf_counter()
            stats.reused_state = self._switch_to(session)
            chunks = self.llama.create_chat_completion(messages=messages, max_tokens=max_tokens,
                                                       temperature=temperature, stream=True)
            first = True
            try:
                for chunk in chunks:
                    if first:
                        stats.first_token_ms = (time.perf_counter() - start) * 1000
                        first = False
                    piece = chunk["choices"][0]["delta"].get("content") or ""
                    if piece:
                        stats.generated_tokens += 1
                        yield piece
                    if cancel is not None and cancel.is_set():
                        break
            finally:
                close = getattr(chunks, "close", None)
                if close:
                    close()
                stats.total_ms = (time.perf_counter() - start) * 1000
                stats.prompt_tokens = max(0, self.llama.n_tokens - stats.generated_tokens)
                self.current = session


def _ggml_devices(llama_cpp) -> tuple[list[str], list[str]]:
    """(backends compiled in, GPUs they see) from ggml's registry, which llama-cpp-python does
    not wrap: a CUDA build with no visible GPU offloads nothing, like a CPU build."""
    lib, ptr, size = llama_cpp.llama_cpp._lib, ctypes.c_void_p, ctypes.c_size_t

    def fn(name: str, res, *args):
        f = getattr(lib, f"ggml_backend_{name}")
        f.restype, f.argtypes = res, list(args)
        return f

    reg_get, reg_name = fn("reg_get", ptr, size), fn("reg_name", ctypes.c_char_p, ptr)
    dev_get, dev_type = fn("dev_get", ptr, size), fn("dev_type", ctypes.c_int, ptr)
    dev_name, dev_desc = fn("dev_name", ctypes.c_char_p, ptr), fn("dev_description", ctypes.c_char_p, ptr)
    regs = [reg_name(reg_get(i)).decode() for i in range(fn("reg_count", size)())]
    devs = [dev_get(i) for i in range(fn("dev_count", size)())]
    gpus = [f"{dev_name(d).decode()} ({dev_desc(d).decode()})" for d in devs
            if dev_type(d) in (1, 2)]  # GGML_BACKEND_DEVICE_TYPE_GPU, _IGPU
    return regs, gpus


def _refuse_offload(llama_cpp, n_gpu_layers: int) -> None:
    """llama.cpp ignores n_gpu_layers when it cannot offload: the box would silently answer
    calls several times slower than planned, so the start fails with what to do instead."""
    try:
        backends = [b for b in _ggml_devices(llama_cpp)[0] if b not in ("CPU", "RPC")]
    except AttributeError:  # a build without ggml's registry symbols: treat as CPU only
        backends = []
    if backends:
        raise ModelError(f"agent.n_gpu_layers = {n_gpu_layers} but llama.cpp's {'/'.join(backends)} backend sees "
                         "no GPU, so no layer can go to it: check the driver (nvidia-smi) and that the service may "
                         "open /dev/nvidia*, or set agent.n_gpu_layers = 0")
    raise ModelError(f"agent.n_gpu_layers = {n_gpu_layers} but this llama-cpp-python ({llama_cpp.__version__}) was "
                     "built for CPU only, so no layer can go to the GPU: rebuild it with scripts/build-llama-cuda, "
                     "or set agent.n_gpu_layers = 0")


def _placement(llama_cpp, llama, n_gpu_layers: int) -> tuple[str, int, int]:
    """(device, layers offloaded, layers offloadable) as llama.cpp counts them: the repeating
    blocks plus the output layer, so -1 or anything past that number means all of them."""
    arch = llama.metadata.get("general.architecture", "llama")
    layers = int(llama.metadata.get(f"{arch}.block_count", 0)) + 1
    offloaded = layers if n_gpu_layers < 0 else min(n_gpu_layers, layers)
    if offloaded == 0:
        return "CPU", 0, layers
    try:
        gpus = _ggml_devices(llama_cpp)[1]
    except AttributeError:
        gpus = []
    return f"GPU {', '.join(gpus) or '(offload)'}", offloaded, layers


def clauses(pieces: Iterator[str], min_words: int = 3) -> Iterator[str]:
    """Group streamed text into clauses for TTS: cut after , ; : . ! ? once a clause has
    ``min_words`` words, so speech starts on the first clause, not the whole answer."""
    buf = ""
    for piece in pieces:
        buf += piece
        while True:
            m = _CLAUSE_END.search(buf)
            if not m:
                break
            head = buf[: m.end()].strip()
            if len(head.split()) < min_words and m.group() == ",":
                # too short to stand alone ("Sure,"): keep going unless it ends a sentence
                nxt = _CLAUSE_END.search(buf, m.end())
                if not nxt:
                    break
                head = buf[: nxt.end()].strip()
                buf = buf[nxt.end():]
            else:
                buf = buf[m.end():]
            if head:
                yield head
    if buf.strip():
        yield buf.strip()


_TOKENS = re.compile(r"<\|[^|>]*\|>|</?[A-Za-z][^<>]{0,30}>")  # <|im_end|>, <b>, </s>
_JUNK = re.compile(r"[<>{}\[\]|\\`#*_]+")


def speakable(clause: str) -> str:
    """What a small model emits that must never be read out: markup, template tokens, code."""
    clause = _JUNK.sub(" ", _TOKENS.sub(" ", clause))
    clause = re.sub(r"\s+", " ", clause).strip()
    return clause if sum(ch.isalpha() for ch in clause) >= 2 else ""


class LlmResponder:
    """Free-form turns: the agent's persona and knowledge as the system prompt, the history as
    the caller heard it, streamed to speech clause by clause from a worker thread."""

    def __init__(self, llm: LocalLlm, agent):
        self.llm = llm
        self.agent = agent
        # Rough budget in characters (~4 a token) for the history; beyond it the oldest half is
        # dropped at once. A window sliding every turn would change the prompt's start each
        # time and defeat the KV cache (measured: p95 first token 1.6 s instead of ~0.3 s).
        self.history_chars = 4 * max(256, agent.llm.context_tokens - agent.llm.max_tokens - 600)
        self.keep_from: dict[int, int] = {}
        from .grounding import Grounding, capabilities

        self.grounding = Grounding(agent)
        self.fallback = capabilities(agent)  # said instead of an answer the agent file does not back
        self.withheld = ""  # the last free answer not spoken (for the record)
        facts = "\n".join(f"- {k.answer}" for k in getattr(agent, "knowledge", ()))
        self.system = agent.persona.strip() + ("\nFacts you may use:\n" + facts if facts else "") + \
            "\nAnswer in one or two short spoken sentences. Never invent appointments or prices."

    def messages(self, history: list[dict], instructions: str = "") -> list[dict]:
        system = self.system + (f"\n{instructions.strip()}" if instructions else "")
        start = self.keep_from.get(id(history), 0)
        while sum(len(m["content"]) for m in history[start:]) > self.history_chars and start < len(history) - 1:
            start += max(1, (len(history) - start) // 2)
        self.keep_from[id(history)] = start
        return [{"role": "system", "content": system}, *history[start:]]

    async def reply(self, conversation, instructions: str = "") -> str:
        import asyncio
        import threading

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()
        stats = TurnStats()
        messages = self.messages(conversation.history.messages, instructions)
        cfg = self.agent.llm

        def produce() -> None:
            try:
                for clause in clauses(self.llm.stream(conversation.call_id, messages, max_tokens=cfg.max_tokens,
                                                      temperature=cfg.temperature, stats=stats, cancel=cancel)):
                    loop.call_soon_threadsafe(queue.put_nowait, clause)
            except Exception as exc:  # a model failure is a spoken apology, never silence
                log.error("LLM failed: %s", exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        self.withheld = ""

        async def spoken():
            seen: set[str] = set()
            while True:
                clause = await queue.get()
                if clause is None:
                    return
                clause = speakable(clause)
                key = re.sub(r"\W+", " ", clause.lower()).strip()
                if key in seen:  # a small model looping ("I'm sorry, ... I'm sorry, ..."): stop there
                    cancel.set()
                    return
                seen.add(key)
                if clause and not self.grounding.grounded(clause):  # invented: not a word of it
                    self.withheld = clause
                    log.info("withheld an ungrounded answer (%s): %r",
                             ", ".join(self.grounding.unsupported(clause)), clause)
                    cancel.set()
                    return
                if clause:
                    yield clause

        worker = loop.run_in_executor(None, produce)
        try:
            text = await conversation.speak_clauses(spoken())
        finally:
            cancel.set()
            await worker
        return text
