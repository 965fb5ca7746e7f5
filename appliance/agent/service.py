"""agentd's work: one Conversation per call, wired to the bus.

Listens to sipd (calls), asrd (speech, transcripts) and ttsd (what was spoken) and routes each
event to its call's conversation; the conversation acts through ``BusIo`` (ttsd say/cancel,
sipd flush/transfer/hangup). Every turn, tool call and transfer goes to the SQLite call record,
and a restarted agentd rebuilds each live call's conversation from it and carries on
(without greeting the caller twice).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from pathlib import Path

from ..bus import BusTimeout, ControlClient, RemoteError, Subscriber, endpoints
from ..bus.messages import (Answer, CallAnswered, CallEnded, CallStarted, Cancel, AsrExpect, CallHangup, Pause, PlayFlush,
                            Prepare, Resume, TtsSay, Speculate, CallTransfer)
from ..config import Config
from ..ipc import inspect
from ..runtime.logs import call_context
from ..runtime.service import StartupError, make_dir
from .flow import WITHDRAWN
from .recordqueue import RETRY_S, QueuedRecords

log = logging.getLogger("appliance.agentd")
RECORDS_BUSY_MS = 250  # wait this long for a locked records file, then queue the write
# MiniLM cosine above which an utterance is taken as an intent: on the receptionist's intents,
# 0.38 classified 18/20 held-out phrasings and rejected every unrelated one; 0.5 only 15/20.
INTENT_THRESHOLD = 0.4


class BusIo:
    """A conversation's hands: ttsd for speech, sipd for the call."""

    def __init__(self, service: "AgentService", call_id: str):
        self.service, self.call_id = service, call_id

    async def say(self, turn: str, text: str, last: bool) -> None:
        await self.service.request(self.service.ttsd, TtsSay(call_id=self.call_id, turn=turn, text=text, last=last))

    async def cancel_speech(self, turn: str) -> str:
        """ttsd stops writing and has sipd drop what is queued (one flush); only if ttsd does not
        answer (down, restarting) does agentd flush sipd itself, so the caller is not talked over."""
        reply = await self.service.request(self.service.ttsd, Cancel(call_id=self.call_id, turn=turn), timeout=0.5)
        if reply is None:
            await self.service.request(self.service.sipd, PlayFlush(call_id=self.call_id))
            return ""
        return getattr(reply, "detail", "")

    async def speculate(self, texts: list[str]) -> None:
        await self.service.request(self.service.ttsd, Speculate(call_id=self.call_id, texts=texts), timeout=0.5)

    async def pause_speech(self, turn: str) -> None:
        await self.service.request(self.service.ttsd, Pause(call_id=self.call_id, turn=turn), timeout=0.5)

    async def resume_speech(self, turn: str) -> None:
        await self.service.request(self.service.ttsd, Resume(call_id=self.call_id, turn=turn), timeout=0.5)

    async def transfer(self, uri: str, headers: dict[str, str]) -> None:
        await self.service.request(self.service.sipd, CallTransfer(call_id=self.call_id, target=uri, headers=headers),
                                   timeout=3.0)

    async def hangup(self, reason: str) -> None:
        await self.service.request(self.service.sipd, CallHangup(call_id=self.call_id, reason=reason))

    async def expect(self, slot: str, prompt: str) -> None:
        """Tell asrd what the caller is about to answer (a hint: a lost one costs nothing)."""
        await self.service.request(self.service.asrd, AsrExpect(call_id=self.call_id, slot=slot, prompt=prompt),
                                   timeout=0.5)


class AgentService:
    """The agentd component (runtime.service.Component)."""

    def __init__(self, config: Config):
        self.config = config
        self.conversations: dict = {}
        self.calls: dict[str, CallStarted] = {}
        self.runtime = None
        self.sub: Subscriber | None = None
        self.sipd: ControlClient | None = None
        self.ttsd: ControlClient | None = None
        self.asrd: ControlClient | None = None
        self.tasks: list[asyncio.Task] = []
        self.counters = {"calls": 0, "control_errors": 0, "rebuilt": 0}
        self.latencies: deque[tuple[float, dict]] = deque(maxlen=2000)  # (monotonic s, per-stage ms)
        from ..metrics.series import AgentMetrics

        self.metrics = AgentMetrics(self)  # its Prometheus series (sipd's exporter asks over ctl.metrics)

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self, runtime) -> None:
        from .definition import AgentError, load_agents
        from .records import CallRecords

        self.runtime = runtime
        try:
            self.agents = load_agents(self.config.paths.agents_dir)
        except AgentError as exc:
            raise StartupError(exc.render()) from None
        if not self.agents:
            raise StartupError(f"no agent definitions in {self.config.paths.agents_dir} (paths.agents_dir): "
                               "copy appliance/agent/examples/dental-receptionist.toml there to start")
        loop = asyncio.get_running_loop()
        self.brains = await loop.run_in_executor(None, self._load_brains)
        make_dir("paths.state_dir", self.config.paths.state_dir)  # 0750: call records are private
        # A short busy timeout: a locked file must not stall the calls' event loop (its writes queue)
        self.records = QueuedRecords(CallRecords(Path(self.config.paths.state_dir) / "calls.db",
                                                 busy_timeout_ms=RECORDS_BUSY_MS))
        run = self.config.paths.run_dir
        self.sipd = ControlClient(runtime.ctx, endpoints.control(run, "sipd"))
        self.ttsd = ControlClient(runtime.ctx, endpoints.control(run, "ttsd"))
        self.asrd = ControlClient(runtime.ctx, endpoints.control(run, "asrd"))
        self.sub = Subscriber(runtime.ctx, [endpoints.events(run, s) for s in ("sipd", "asrd", "ttsd")],
                              ["call.", "speech.", "asr.", "tts."])
        self.tasks = [asyncio.create_task(self._events(), name="events"),
                      asyncio.create_task(self._prepare_voice(), name="prepare-voice"),
                      asyncio.create_task(self._flush_records(), name="records")]
        await self._rebuild()

    async def _prepare_voice(self, tries: int = 30) -> None:
        """Every agent's fixed lines to ttsd's clause cache (tts.prepare), once ttsd answers."""
        texts = list(dict.fromkeys(line for brain in self.brains.values() for line in brain["flow"].fixed_lines()))
        for _ in range(tries):
            try:
                await self.ttsd.request(Prepare(texts=texts), 2.0)
                log.info("sent %d fixed lines to ttsd's clause cache", len(texts))
                return
            except (BusTimeout, RemoteError):
                await asyncio.sleep(2.0)  # ttsd not up yet (or restarting)

    def _load_brains(self) -> dict:
        """Per agent: understanding (embeddings), flow, tools; one LLM for all (if any)."""
        from .flow import Flow
        from .tools import ToolRunner
        from .understanding import Understander
        from .understanding.embed import Embedder
        from .understanding.names import ranks

        from .llm import LlmResponder

        embedder = Embedder()
        ranks()  # the name lexicon, read here rather than on a caller's first name
        llm = self._load_llm()
        brains = {}
        for name, agent in self.agents.items():
            understander = Understander(embedder, {i.name: list(i.examples) for i in agent.intents},
                                        [(k.id, list(k.questions), k.answer) for k in agent.knowledge],
                                        intent_threshold=INTENT_THRESHOLD)
            brains[name] = {"agent": agent, "flow": Flow(agent), "tools": self.metrics.tools(ToolRunner(agent.tools)),
                            "understander": understander,
                            "llm": None if llm is None else LlmResponder(llm, agent)}
        return brains

    def _load_llm(self):
        cfg = self.config.agent
        if not cfg.llm:
            return None
        from ..models.errors import ModelError
        from ..models.store import locate
        from .llm import LocalLlm

        try:
            path = Path(locate(self.config, cfg.llm_model))
            if path.is_dir():
                path = next(path.glob("*.gguf"))
            return LocalLlm(str(path), threads=cfg.llm_threads, kv_reuse=cfg.kv_reuse, n_gpu_layers=cfg.n_gpu_layers)
        except (ModelError, StopIteration) as exc:
            # The flows and knowledge still work without it; say so loudly, do not stop answering calls.
            log.error("LLM unavailable, free-form turns disabled: %s", exc)
            return None

    async def stop(self) -> None:
        for conv in list(self.conversations.values()):
            await conv.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for sock in (self.sub, self.sipd, self.ttsd, self.asrd):
            if sock is not None:
                sock.close()

    def status(self) -> dict:
        """Counters, and each stage's p50/p95 over the last minute of turns (what an operator
        watches: is the box keeping up?)."""
        out = {"agents": len(getattr(self, "agents", {})), "active": len(self.conversations), **self.counters}
        since = time.monotonic() - 60
        recent = [lat for t, lat in self.latencies if t >= since]
        out["turns_last_min"] = len(recent)
        for stage in ("endpoint", "asr", "decide", "tts_first_audio", "total"):
            values = sorted(lat[stage] for lat in recent if lat.get(stage))
            if values:
                out[f"{stage}_p50_ms"] = round(values[len(values) // 2])
                out[f"{stage}_p95_ms"] = round(values[min(len(values) - 1, int(len(values) * 0.95))])
        return out

    async def request(self, client: ControlClient | None, msg, timeout: float = 1.0):
        try:
            return await client.request(msg, timeout)
        except (BusTimeout, RemoteError) as exc:
            self.counters["control_errors"] += 1
            with call_context(msg.call_id):
                log.warning("%s failed: %s", msg.TYPE, exc)
            return None

    # -- calls ----------------------------------------------------------------------------------
    def pick_agent(self, started: CallStarted) -> str:
        """The agent named by the dialled user part (sip:dental-receptionist@box), else the default."""
        user = started.callee.split(":", 1)[-1].split("@", 1)[0]
        if user in self.brains:
            return user
        default = self.config.agent.default
        return default if default in self.brains else next(iter(self.brains))

    def _conversation(self, call_id: str, agent_name: str, caller: str, **kw):
        from .conversation import Conversation

        brain = self.brains[agent_name]
        conv = Conversation(call_id, caller, brain["agent"], brain["flow"], brain["understander"],
                            BusIo(self, call_id), tools=brain["tools"], llm=brain["llm"], records=self.records, **kw)
        conv.on_latency = self._on_latency
        self.conversations[call_id] = conv
        return conv

    def _on_latency(self, latency: dict) -> None:
        self.latencies.append((time.monotonic(), latency))
        self.metrics.turn(latency)

    def _end_record(self, call_id: str, outcome: str, reason: str, **kw) -> None:
        self.records.end_call(call_id, outcome, reason, **kw)
        self.metrics.call_ended(outcome, kw.get("goal") or "", bool(kw.get("goal_reached")))

    async def _events(self) -> None:
        async for msg in self.sub:
            try:
                await self._dispatch(msg)
            except Exception:
                with call_context(msg.call_id):
                    log.exception("event %s not handled", msg.TYPE)

    async def _dispatch(self, msg) -> None:
        cid = msg.call_id
        if isinstance(msg, CallStarted):
            self.calls[cid] = msg
            agent = self.pick_agent(msg)
            self.records.start_call(cid, agent=agent, caller=msg.caller, callee=msg.callee, started_ns=msg.ts_ns)
            if not self.config.sip.auto_answer:
                await self.request(self.sipd, Answer(call_id=cid))
        elif isinstance(msg, CallAnswered):
            started = self.calls.get(cid)
            if started is None or cid in self.conversations:
                return
            self.counters["calls"] += 1
            self.records.answered(cid, answered_ns=msg.ts_ns)
            conv = self._conversation(cid, self.pick_agent(started), started.caller)
            with call_context(cid):
                await conv.start()
        elif isinstance(msg, CallEnded):
            conv = self.conversations.pop(cid, None)
            self.calls.pop(cid, None)
            if conv is None:
                self._end_record(cid, "abandoned", msg.reason)
                return
            try:  # a conversation that does not stop in time must not keep its record open
                await asyncio.wait_for(conv.close(), 5.0)
            except Exception:
                log.exception("conversation %s did not close cleanly", cid)
            goal, reached, why = conv.goal()
            outcome, why = call_outcome(msg.reason, goal, reached, why)
            self._end_record(cid, outcome, msg.reason, summary=conv.summary(),
                             intent=conv.state.intent or "", slots=dict(conv.state.slots),
                             metrics={**msg.metrics, **conv.counters}, goal=goal,
                             goal_reached=reached if goal else None, goal_reason=why or None)
            llm = self.brains[conv.agent.name]["llm"]
            if llm is not None:  # its saved KV state (MBs); the lock may be held by a generation
                await asyncio.to_thread(llm.llm.forget, cid)
        else:
            conv = self.conversations.get(cid)
            if conv is not None:
                await conv.on_event(msg)

    async def _flush_records(self) -> None:
        """Queued record writes (the file was full or locked) go in as soon as it takes them."""
        while True:
            await asyncio.sleep(RETRY_S)
            self.records.flush()

    async def _rebuild(self) -> None:
        """After a restart: calls still up (a live in-ring) get their conversation back from the record."""
        from .conversation import History

        live = {r.call_id for r in inspect(self.config.paths.shm_dir)
                if r.direction == "in" and r.writer_alive and not r.closed}
        for call in self.records.open_calls() or []:
            cid = call.id
            if cid not in live or call.agent not in self.brains:
                if cid not in live:
                    self._end_record(cid, "error", "agentd was down when the call ended")
                continue
            history = History()
            turns = self.records.conversation(cid) or []
            self.records.start_turns_at(cid, len(turns))
            for turn in turns:
                if turn.role == "caller":
                    history.caller(turn.text)
                elif turn.role == "agent":
                    history.agent(turn.spoken)
            full = self.records.get_call(cid)
            snaps = [e.data for e in (full.events if full else []) if e.type == "flow.state"]
            state = self.brains[call.agent]["flow"].restore(snaps[-1] if snaps else None, caller=call.caller)
            self.calls[cid] = CallStarted(call_id=cid, caller=call.caller, callee=call.callee)
            conv = self._conversation(cid, call.agent, call.caller, state=state, history=history)
            self.counters["rebuilt"] += 1
            with call_context(cid):
                log.info("conversation rebuilt from the record (%d turns)", len(history.messages))
                await conv.start(greet=False)


CALLER_ENDED = ("caller-hangup", "caller-cancelled")


def call_outcome(end_reason: str, goal: str, reached: bool, why: str) -> tuple[str, str]:
    """What the record says of a call, truthfully: "completed" only when the caller's goal was
    reached (or they came with none: questions answered); a person took it ("transferred"); the
    caller left first ("abandoned"); else "unresolved", with why."""
    if end_reason == "transferred":
        return "transferred", "" if reached or not goal else (why or "transferred")
    if not goal or reached:
        return "completed", ""
    if why.startswith(WITHDRAWN):  # "keep it after all": what the caller finally wanted was done
        return "completed", why
    if end_reason in CALLER_ENDED:
        return "abandoned", why or "caller hung up"
    return "unresolved", why or f"ended before it was done ({end_reason})"
