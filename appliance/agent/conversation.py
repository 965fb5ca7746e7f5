"""One call's conversation: turn-taking, barge-in, and carrying out the flow's actions.

The flow (flow.py) decides *what* to do from what the caller said; this class decides *when*
and does it through ``AgentIo`` (the bus, in agentd): speaks clause by clause, cuts itself off
when the caller talks over it, calls tools with a deadline and a filler, transfers, records.

Turn-taking rules, each against a complaint users have about voice agents:
- Barge-in by what was said, not by how long: ``turns.barge_in_min_ms`` of continuous caller
  speech while the agent talks *pauses* it (a cough, a click or a line pop ends sooner and is
  ignored); the recognised words then decide. At least ``turns.barge_in_min_words`` real words
  ("wait, actually...") stop it: its speech ends, the history keeps only the words the caller
  heard, and theirs is the turn. A backchannel ("mhm", "okay", "right"), fewer words, our own
  voice echoed by the caller's phone, or noise resume it where it paused, nothing lost; words
  too few to stop it ("Tuesday." over the end of its question) are the caller's next turn once
  it has finished.
  (``barge_in_min_words = 0``: the pause is a stop, on time alone.)
- Silence after the agent finished gets a re-prompt after ``turns.no_input_s``, never dead air.
- Speculation: asr.early (the caller's words so far, at their first pause) is decided on a
  copy of the state; if the answer is speech alone, ttsd synthesises it into its cache at once,
  so the tts.say after a confirmed end of turn plays at once. Nothing is said, recorded or done
  on it (tools, transfers and LLM turns wait for the final); if the caller goes on it is never
  heard.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Protocol

from ..bus.messages import (AsrDropped, AsrEarly, AsrFinal, SpeechStarted, SpeechStopped, TransferProgress,
                            TtsFinished, TtsStarted)
from ..runtime.logs import call_context
from .actions import AskLlm, CallTool, Hangup, Say, TakeMessage, Transfer

log = logging.getLogger("appliance.agentd")

TRANSFER_TIMEOUT_S = 30.0  # REFER sent and no final NOTIFY by then: the transfer failed
PAUSE_GUARD_S = 3.0  # paused and the caller quiet this long with no words recognised: resume
ECHO_OVERLAP = 0.6  # share of a final's words found in the agent's current sentence: our own echo
# A transcript ending on one of these is a pause mid-sentence, not the end of the caller's turn.
TRAILING = {"and", "but", "so", "or", "because", "um", "uh", "er", "the", "a", "an", "to", "with", "for", "my",
            "is", "of", "at", "on", "it's", "its", "was", "like", "if", "about", "from", "than", "your", "our",
            "their", "be"}


def incomplete(text: str) -> bool:
    """Semantic end of turn, cheaply: the VAD heard silence, but the words are not done. A
    trailing function word ("my number is"), only a discourse marker ("Actually."), or the first
    group of a phone number ("The number is 555.") is a speaker taking a breath, not an end."""
    words = _words(text)
    if not words:
        return False
    if words[-1] in TRAILING or text.rstrip().endswith((",", "-")) or all(w in OPENERS for w in words):
        return True
    digits = sum(ch.isdigit() for ch in text)
    return words[-1].isdigit() and 3 <= digits <= 6 and any(w in NUMBER_WORDS for w in words)


OPENERS = {"actually", "well", "so", "um", "uh", "er", "and", "but", "also", "basically", "anyway", "like", "hmm"}
NUMBER_WORDS = {"number", "numbers", "phone", "call", "reach", "cell", "mobile", "it's", "is"}


class AgentIo(Protocol):
    """What a conversation can do to the call (the bus in agentd; a recorder in tests)."""

    async def say(self, turn: str, text: str, last: bool) -> None: ...

    async def cancel_speech(self, turn: str) -> str: ...  # returns the text the caller heard

    async def pause_speech(self, turn: str) -> None: ...  # stop the audio, keeping it

    async def resume_speech(self, turn: str) -> None: ...  # go on from where it paused

    async def speculate(self, texts: list[str]) -> None: ...  # get these ready to say; say nothing

    async def transfer(self, uri: str, headers: dict[str, str]) -> None: ...

    async def hangup(self, reason: str) -> None: ...

    async def expect(self, slot: str, prompt: str) -> None: ...  # a hint for the recogniser


@dataclass
class TurnTiming:
    """Per caller turn, all monotonic ns: where the time between their words and ours went."""

    speech_end_ns: int = 0
    endpoint_ns: int = 0
    final_ns: int = 0
    first_say_ns: int = 0
    first_audio_ns: int = 0

    def latency_ms(self) -> dict[str, float]:
        def gap(a: int, b: int) -> float:
            return round((b - a) / 1e6, 1) if a and b else 0.0

        return {"endpoint": gap(self.speech_end_ns, self.endpoint_ns), "asr": gap(self.endpoint_ns, self.final_ns),
                "decide": gap(self.final_ns, self.first_say_ns), "tts_first_audio": gap(self.first_say_ns, self.first_audio_ns),
                "total": gap(self.speech_end_ns, self.first_audio_ns)}


@dataclass
class Speaking:
    turn: str
    text: str = ""
    record_idx: int | None = None
    started_ns: int = 0
    playing: bool = False


@dataclass
class History:
    """The dialogue as the caller experienced it, for the LLM and the record."""

    messages: list[dict] = field(default_factory=list)

    def caller(self, text: str) -> None:
        self.messages.append({"role": "user", "content": text})

    def agent(self, text: str) -> None:
        if text:
            self.messages.append({"role": "assistant", "content": text})

    def last(self, n: int) -> list[dict]:
        return self.messages[-n:]


class Conversation:
    def __init__(self, call_id: str, caller: str, agent, flow, understander, io: AgentIo, *, tools=None, llm=None,
                 records=None, today=None, state=None, history: History | None = None):
        self.call_id = call_id
        self.caller = caller
        self.agent = agent
        self.flow = flow
        self.understander = understander
        self.io = io
        self.tools = tools
        self.llm = llm
        self.records = records
        self.today = today or date.today
        self.state = state if state is not None else flow.initial_state(caller=caller)
        self.history = history or History()
        self.speaking: Speaking | None = None
        self.turn_seq = 0
        self.pending: asyncio.Queue[AsrFinal] = asyncio.Queue()
        self.barge_timer: asyncio.TimerHandle | None = None
        self.paused_by: int | None = None  # the caller utterance the agent's speech is paused for
        self.deferred: list[AsrFinal] = []  # short finals said over the agent, taken once it has finished
        self.pause_guard: asyncio.TimerHandle | None = None
        self.listening_utterance: int | None = None
        self.speaking_utterance: int | None = None  # the caller's utterance in progress (started, not stopped)
        self.caller_started: SpeechStarted | None = None  # its start, for a barge-in armed when our audio starts
        self.no_input_task: asyncio.Task | None = None
        self.timing = TurnTiming()
        self._primed = ("", "")  # the last (slot, prompt) asrd was told to expect
        self.held: AsrFinal | None = None  # a final that ended mid-sentence, waiting for the rest
        self.transferring: asyncio.TimerHandle | None = None  # a REFER is out: no re-prompts meanwhile
        self.held_timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task | None = None
        self.ended = False
        self.on_latency = None  # agentd's status keeps the last minute of per-stage latency
        self.counters = {"turns": 0, "barge_ins": 0, "pauses": 0, "resumes": 0, "backchannels": 0, "echoes": 0,
                         "tool_calls": 0, "llm_turns": 0, "speculations": 0}

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self, *, greet: bool = True) -> None:
        self.task = asyncio.create_task(self._run(), name=f"conversation-{self.call_id}")
        if greet:
            await self.execute(self.flow.start(self.state))
        else:
            self._arm_no_input()

    async def close(self) -> None:
        self.ended = True
        self._disarm_barge_in()
        for timer in (self.held_timer, self.transferring, self.pause_guard):
            if timer is not None:
                timer.cancel()
        if self.no_input_task is not None:
            self.no_input_task.cancel()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def _run(self) -> None:
        """Caller turns one at a time, in order: a second final waits for the first's answer."""
        with call_context(self.call_id):
            while True:
                final = await self.pending.get()
                try:
                    await self.on_caller_turn(final)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("turn failed; apologising instead of going silent")
                    await self.speak("Sorry, I had a problem there. Could you say that again?")

    # -- events from the bus --------------------------------------------------------------------
    async def on_event(self, msg) -> None:
        if self.ended:
            return
        if isinstance(msg, SpeechStarted):
            self._cancel_no_input()
            if self.held_timer is not None:  # the caller goes on: the held part waits for the rest
                self.held_timer.cancel()
                self.held_timer = None
            self.listening_utterance = self.speaking_utterance = msg.utterance
            self.caller_started = msg
            if self.speaking is not None and self.speaking.playing:
                self._arm_barge_in(msg)
        elif isinstance(msg, SpeechStopped):
            if msg.utterance == self.listening_utterance:
                self._disarm_barge_in()  # it ended before the barge-in threshold: a cough, a click
                self.speaking_utterance = self.caller_started = None
            if self.paused_by == msg.utterance:
                if msg.reason == "too-short":
                    await self._resume("too short to be words")
                else:  # the words decide; if none come (asrd lost them), the agent goes on
                    self._guard_pause()
            self.timing = TurnTiming(speech_end_ns=msg.end_ns, endpoint_ns=msg.ts_ns)
            if msg.reason == "too-short":
                if self.held is not None and self.held_timer is None:  # the "rest" was a click
                    self._release_held()
                self._arm_no_input()
        elif isinstance(msg, AsrFinal):
            self.timing.final_ns = msg.ts_ns
            if self._ignorable(msg.text):
                await self._resume("not a turn")
                self._arm_no_input()
                return
            if self._too_few_words(msg.text):
                # Too few to stop the agent, but words all the same ("Tuesday", "blue" said over
                # the end of the question): the agent finishes, then they are the caller's turn.
                await self._resume(f"{msg.text!r} is fewer than {self.agent.turns.barge_in_min_words} words: "
                                   "answered once the agent has finished")
                self.deferred.append(msg)
                return
            if self.paused_by is not None:  # real words over the agent: it stops, theirs is the turn
                await self.barge_in()
            if self.held is not None:  # the rest of a sentence the caller paused in
                msg = replace(msg, text=f"{self.held.text} {msg.text}", start_ns=self.held.start_ns)
                self.held = None
            if self.speaking_utterance is not None and self.speaking_utterance > msg.utterance \
                    and self.speaking is None:
                # The caller already goes on ("Um, hi," ... "I was wondering, uh, if I could book"):
                # this part waits for the rest, however long; their turn is not over.
                self.held = msg
                return
            if incomplete(msg.text) and self.agent.turns.incomplete_wait_ms:
                self.held = msg
                self.held_timer = asyncio.get_running_loop().call_later(
                    self.agent.turns.incomplete_wait_ms / 1000, self._release_held)
                return
            if self.speaking is not None:
                # The caller said something real while we were still answering (or still working
                # out the answer, e.g. a slow LLM turn): theirs wins, ours stops here.
                await self.barge_in()
            await self.pending.put(msg)
        elif isinstance(msg, AsrEarly):
            await self._speculate(msg)
        elif isinstance(msg, AsrDropped):
            await self._resume("no words")
            if self.held is not None and self.held_timer is None:  # the rest was noise: answer the part
                self._release_held()
            self._arm_no_input()
        elif isinstance(msg, TtsStarted):
            if self.speaking is not None and msg.turn == self.speaking.turn:
                if not self.speaking.playing and self.caller_started is not None and self.barge_timer is None:
                    # The caller started talking just before our audio did (the two events come
                    # from different services, in either order): it is speech over the agent too.
                    self.speaking.playing = True
                    self._arm_barge_in(self.caller_started)
                self.speaking.playing = True
                if not self.timing.first_audio_ns and self.timing.first_say_ns:
                    self.timing.first_audio_ns = msg.ts_ns
                    latency = self.timing.latency_ms()
                    if self.records is not None and self.speaking.record_idx is not None:
                        self.records.update_turn(self.call_id, self.speaking.record_idx, latency=latency)
                    if self.on_latency is not None and latency.get("total"):
                        self.on_latency(latency)
        elif isinstance(msg, TtsFinished):
            if self.speaking is not None and msg.turn == self.speaking.turn:
                self._spoken(msg.spoken, cancelled=msg.cancelled)
        elif isinstance(msg, TransferProgress):
            await self.on_transfer_progress(msg)

    async def _speculate(self, early: AsrEarly) -> None:
        """The answer to the words so far, if the turn ends here: decided on a copy of the state
        (the flow is a pure function of state and words) and, if it is speech alone, made ready
        in ttsd. The final decides again; the same words give the same answer, from the cache."""
        if (self.speaking is not None or self.held is not None or not self.pending.empty()
                or self.transferring is not None or early.utterance != self.speaking_utterance):
            return
        if self._ignorable(early.text) or incomplete(early.text):
            return
        understanding = self.understander.understand(early.text, self.today())
        _, actions = self.flow.on_utterance(self.state, understanding)
        if not actions or not all(isinstance(a, Say) for a in actions):
            return  # a tool, a transfer, an LLM turn: nothing happens before the turn is the caller's
        self.counters["speculations"] += 1
        await self.io.speculate([a.text for a in actions if a.text])

    def _release_held(self) -> None:
        self.held_timer = None
        held, self.held = self.held, None
        if held is not None and not self.ended:
            self.pending.put_nowait(held)

    def _ignorable(self, text: str) -> bool:
        """Backchannel or echo while the agent talks: not a turn (and never a barge-in)."""
        from .understanding.slots import is_backchannel

        if self.speaking is None:
            return False
        if is_backchannel(text):
            self.counters["backchannels"] += 1
            log.info("backchannel %r while speaking: carrying on", text)
            return True
        said = set(_words(self.speaking.text))
        heard = _words(text)
        if heard and sum(w in said for w in heard) / len(heard) >= ECHO_OVERLAP:
            self.counters["echoes"] += 1
            log.info("ignored %r: it is our own speech echoed back", text)
            return True
        return False

    # -- barge-in -------------------------------------------------------------------------------
    def _arm_barge_in(self, started: SpeechStarted) -> None:
        self._disarm_barge_in()
        wait_ms = self.agent.turns.barge_in_min_ms - (time.monotonic_ns() - started.at_ns) / 1e6
        loop = asyncio.get_running_loop()
        act = self.barge_in if self.agent.turns.barge_in_min_words == 0 else lambda: self._pause(started.utterance)
        self.barge_timer = loop.call_later(max(wait_ms, 0) / 1000, lambda: asyncio.ensure_future(act()))

    async def _pause(self, utterance: int) -> None:
        """Caller speech over the agent, long enough to be words: hold the agent's audio (kept,
        not dropped) until the words say whether it is a barge-in."""
        self.barge_timer = None
        speaking = self.speaking
        if speaking is None or not speaking.playing or self.paused_by is not None or self.ended:
            return
        self.paused_by = utterance
        self.counters["pauses"] += 1
        log.info("caller talks over the agent: paused")
        await self.io.pause_speech(speaking.turn)

    async def _resume(self, why: str) -> None:
        if self.paused_by is None:
            return
        self.paused_by = None
        if self.pause_guard is not None:
            self.pause_guard.cancel()
            self.pause_guard = None
        if self.speaking is None or self.ended:
            return
        self.counters["resumes"] += 1
        log.info("resumed: %s", why)
        await self.io.resume_speech(self.speaking.turn)

    def _guard_pause(self) -> None:
        if self.pause_guard is not None:
            self.pause_guard.cancel()
        self.pause_guard = asyncio.get_running_loop().call_later(
            PAUSE_GUARD_S, lambda: asyncio.ensure_future(self._resume("no words came")))

    def _too_few_words(self, text: str) -> bool:
        """Words over the agent's audio, too few to stop it (``barge_in_min_words``)."""
        need = self.agent.turns.barge_in_min_words
        speaking = self.speaking
        return bool(need and speaking is not None and (speaking.playing or self.paused_by is not None)
                    and len(_words(text)) < need)

    def _disarm_barge_in(self) -> None:
        if self.barge_timer is not None:
            self.barge_timer.cancel()
            self.barge_timer = None

    async def barge_in(self) -> None:
        """The caller talks over us: stop now, keep only what they heard."""
        self.barge_timer = None
        speaking = self.speaking
        if speaking is None or self.ended:
            return
        self.paused_by = None
        if self.pause_guard is not None:
            self.pause_guard.cancel()
            self.pause_guard = None
        self.counters["barge_ins"] += 1
        heard = await self.io.cancel_speech(speaking.turn)
        with call_context(self.call_id):
            log.info("barge-in: caller heard %r of %r", heard, speaking.text)
        if self.speaking is speaking:
            self._spoken(heard, cancelled=True)

    def _spoken(self, heard: str, *, cancelled: bool) -> None:
        speaking, self.speaking = self.speaking, None
        if speaking is None:
            return
        self.paused_by = None
        self.history.agent(heard if cancelled else speaking.text)
        if self.records is not None and speaking.record_idx is not None:
            self.records.update_turn(self.call_id, speaking.record_idx, heard_text=heard if cancelled else speaking.text,
                                     interrupted=cancelled, ended_ns=time.monotonic_ns())
        deferred, self.deferred = self.deferred, []
        for final in deferred:
            self.pending.put_nowait(final)
        if not cancelled and not deferred:
            self._arm_no_input()

    # -- no input -------------------------------------------------------------------------------
    def _arm_no_input(self) -> None:
        self._cancel_no_input()
        if self.ended or self.speaking is not None or self.transferring is not None:
            return
        self.no_input_task = asyncio.create_task(self._no_input(self.agent.turns.no_input_s))

    def _cancel_no_input(self) -> None:
        if self.no_input_task is not None:
            self.no_input_task.cancel()
            self.no_input_task = None

    async def _no_input(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.no_input_task = None
        if self.pending.empty() and self.speaking is None and self.transferring is None:
            self.state, actions = self.flow.on_no_input(self.state)
            self.save_state()
            await self.execute(actions)

    # -- a caller turn --------------------------------------------------------------------------
    async def on_caller_turn(self, final: AsrFinal) -> None:
        self.counters["turns"] += 1
        self.timing.first_say_ns = self.timing.first_audio_ns = 0
        text = final.text
        self.history.caller(text)
        if self.records is not None:
            self.records.add_turn(self.call_id, role="caller", text=text, started_ns=final.start_ns,
                                  ended_ns=final.end_ns)
        understanding = self.understander.understand(text, self.today(), alternatives=tuple(final.alternatives),
                                                     words=tuple(final.words))
        self.state, actions = self.flow.on_utterance(self.state, understanding)
        self.save_state()
        await self.execute(actions)
        self._prime()

    def _prime(self) -> None:
        """After a step: tell the recogniser what the caller is expected to say next. Sent
        without waiting; a hint that is lost or late costs nothing but the hint."""
        expect = getattr(self.io, "expect", None)
        if expect is None or self.ended:
            return
        slot, prompt = self.flow.expecting(self.state)
        if (slot, prompt) != self._primed:
            self._primed = (slot, prompt)
            task = asyncio.ensure_future(expect(slot, prompt))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def save_state(self) -> None:
        """The flow's state in the record after every step: a restarted agentd carries on from it."""
        if self.records is not None:
            self.records.add_event(self.call_id, "flow.state", self.flow.snapshot(self.state))

    def summary(self) -> str:
        slots = ", ".join(f"{k} {v}" for k, v in self.state.slots.items() if v and k != "caller")
        return "; ".join(x for x in (self.state.intent or "", slots) if x)

    def goal(self) -> tuple[str, bool, str]:
        """(what the caller came for, reached, why not): for the call record's task outcome."""
        return self.flow.goal(self.state)

    async def execute(self, actions) -> None:
        """Carry out the flow's actions in order. Sentences said one after another are one turn
        ("We're closed on Sundays." + the question): no gap in which the caller, hearing the
        first end, would answer before the question."""
        actions = list(actions)
        while actions:
            action = actions.pop(0)
            if self.ended:
                return
            match action:
                case Say(text=text):
                    said = [text]
                    while actions and isinstance(actions[0], Say):
                        said.append(actions.pop(0).text)
                    await self.speak_clauses([t for t in said if t])
                case CallTool(name=name, args=args):
                    await self.call_tool(name, args)
                case AskLlm(instructions=instructions):
                    await self.llm_turn(instructions)
                case Transfer():
                    await self.transfer(action)
                case Hangup(reason=reason):
                    await self.wait_spoken()
                    await self.io.hangup(reason)
                    self.ended = True
                case TakeMessage(message=message, summary=summary):
                    if message and self.records is not None:  # the flow collected it: keep it
                        self.records.add_event(self.call_id, "message", {"message": message, "summary": summary})
                case _:
                    log.warning("unknown action %r ignored", action)

    def _new_turn(self) -> str:
        """Unique across agentd restarts too: ttsd remembers cancelled turn ids, and a reused
        one would have its speech dropped."""
        self.turn_seq += 1
        return f"{self.call_id}-{os.getpid()}-t{self.turn_seq}"

    async def speak(self, text: str) -> None:
        """One whole agent utterance (a flow's sentence)."""
        await self.speak_clauses([text])

    async def speak_clauses(self, clauses, *, first_clause_ns: list | None = None) -> str:
        """Clauses (a list or an async iterator, e.g. LLM output) as one agent turn."""
        turn = self._new_turn()
        self.speaking = Speaking(turn=turn, started_ns=time.monotonic_ns())
        if self.records is not None:
            self.speaking.record_idx = self.records.add_turn(self.call_id, role="agent", text="",
                                                             started_ns=self.speaking.started_ns)
        speaking = self.speaking
        sent = []
        previous = None

        async def flush(text: str, last: bool) -> None:
            if not self.timing.first_say_ns:
                self.timing.first_say_ns = time.monotonic_ns()
            if first_clause_ns is not None and not first_clause_ns:
                first_clause_ns.append(time.monotonic_ns())
            await self.io.say(turn, text, last)

        async for clause in _aiter(clauses):
            if self.speaking is not speaking:  # barged in while the rest was being produced
                break
            if previous is not None:
                await flush(previous, False)
            previous = clause
            sent.append(clause)
            speaking.text = " ".join(sent)
        if previous is not None and self.speaking is speaking:
            await flush(previous, True)
        elif not sent and self.speaking is speaking:
            self.speaking = None
        if self.records is not None and speaking.record_idx is not None:
            self.records.update_turn(self.call_id, speaking.record_idx, text=speaking.text,
                                     latency=self.timing.latency_ms())
        return speaking.text

    async def wait_spoken(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.speaking is not None and time.monotonic() < deadline and not self.ended:
            await asyncio.sleep(0.05)

    # -- tools, LLM, transfer -------------------------------------------------------------------
    async def call_tool(self, name: str, args: dict) -> None:
        from .tools import call_with_filler

        self.counters["tool_calls"] += 1
        filler_said = False

        async def filler() -> None:
            nonlocal filler_said
            filler_said = True
            await self.speak("One moment while I check that.")

        result = await call_with_filler(self.tools, name, args, on_filler=filler)
        if self.records is not None:
            self.records.add_tool_call(self.call_id, tool=name, args=args, status=result.status,
                                       result=result.data if result.status == "ok" else result.error,
                                       duration_ms=result.duration_ms, attempts=result.attempts)
        if filler_said:
            await self.wait_spoken(5.0)
        self.state, actions = self.flow.on_tool_result(self.state, result)
        self.save_state()
        await self.execute(actions)
        self._prime()

    async def llm_turn(self, instructions: str = "") -> None:
        """A free-form answer from the local LLM, streamed to ttsd clause by clause."""
        if self.llm is None:
            await self.speak("Sorry, I didn't catch that. Could you say it another way?")
            return
        self.counters["llm_turns"] += 1
        text = await self.llm.reply(self, instructions)
        if not text.strip():  # nothing grounded to say: what the agent can do, never an invention
            withheld = getattr(self.llm, "withheld", "")
            if withheld:
                self.counters["llm_withheld"] = self.counters.get("llm_withheld", 0) + 1
                if self.records is not None:
                    self.records.add_event(self.call_id, "llm.withheld", {"text": withheld})
            await self.speak(self.llm.fallback)

    async def transfer(self, action) -> None:
        if getattr(action, "say", ""):
            await self.speak(action.say)
        await self.wait_spoken()
        self._cancel_no_input()  # quiet while the PBX connects the human: no "Are you still there?"
        headers = {"X-Appliance-Summary": action.summary[:200].replace("\r", " ").replace("\n", " "),
                   "X-Appliance-Intent": str(action.context.get("intent", ""))} if action.context_headers else {}
        if self.records is not None:
            self.records.add_transfer(self.call_id, target=action.target, uri=action.uri, kind="blind",
                                      status="requested", context={"summary": action.summary, **action.context})
        # Quiet while the PBX connects the human; if it never says how it went, take the call back.
        self.transferring = asyncio.get_running_loop().call_later(
            TRANSFER_TIMEOUT_S, lambda: asyncio.ensure_future(self.on_transfer_progress(
                TransferProgress(call_id=self.call_id, status=408, reason="no transfer result", final=True))))
        await self.io.transfer(action.uri, headers)

    async def on_transfer_progress(self, msg: TransferProgress) -> None:
        if not msg.final or self.transferring is None:
            return
        self.transferring.cancel()
        self.transferring = None
        if 200 <= msg.status < 300:
            if self.records is not None:
                self.records.update_transfer(self.call_id, status="answered", sip_status=msg.status, reason=msg.reason)
            self.ended = True  # the human has the call
            return
        with call_context(self.call_id):
            log.warning("transfer failed: %d %s; taking the call back", msg.status, msg.reason)
        if self.records is not None:
            self.records.update_transfer(self.call_id, status="failed", sip_status=msg.status, reason=msg.reason)
        self.state, actions = self.flow.on_transfer_failed(self.state, msg.status)
        self.save_state()
        await self.execute(actions)


def _words(text: str) -> list[str]:
    return [w.strip(".,!?;:'\"").lower() for w in text.split() if w.strip(".,!?;:'\"")]


async def _aiter(items):
    if hasattr(items, "__aiter__"):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
