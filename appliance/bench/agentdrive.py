"""Drive a real agentd with scripted caller text: this plays sipd, asrd and ttsd on the bus.

Caller turns go in as the events asrd would publish (speech.started, speech.stopped,
asr.final); what the agent does comes back as the control requests it sends (tts.say,
tts.cancel, ctl.transfer, ctl.hangup, ctl.play_flush), answered as the real services answer
and followed by the events they would publish (tts.started/finished as if spoken at
``seconds_per_char``, call.transfer progress, call.ended). Everything crosses real ZeroMQ
sockets; the call's in-ring is a real ring, so agentd sees the call as live after a restart.
Shared by the agent tests and `appliancectl bench agent`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.asyncio

from appliance.bus import ControlServer, Publisher, endpoints
from appliance.bus.messages import (AsrFinal, CallAnswered, CallEnded, CallStarted, Cancel, CallHangup, Ok, Pause,
                                    PlayFlush, Prepare, Resume, TtsSay, Speculate, SpeechStarted, SpeechStopped, StatusRequest, CallTransfer, TransferProgress,
                                    TtsFinished, TtsStarted)
from appliance.ipc import RingWriter, create_ring


@dataclass
class Spoken:
    turn: str
    text: str
    said_ns: int
    last: bool


@dataclass
class CallLog:
    says: list[Spoken] = field(default_factory=list)
    cancels: list[str] = field(default_factory=list)
    transfers: list[CallTransfer] = field(default_factory=list)
    hangups: list[str] = field(default_factory=list)
    flushes: int = 0
    pauses: int = 0
    speculated: list[list[str]] = field(default_factory=list)  # tts.speculate: made ready, never said
    resumes: int = 0
    heard: dict[str, str] = field(default_factory=dict)  # turn -> what a cancel reported heard

    def turns(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for s in self.says:
            out[s.turn] = (out.get(s.turn, "") + " " + s.text).strip()
        return out

    def agent_text(self) -> list[str]:
        return list(self.turns().values())


class StandInLine:
    """sipd + asrd + ttsd stand-ins for one agentd, in a background event loop."""

    def __init__(self, run_dir: str, shm_dir: str, *, seconds_per_char: float = 0.01,
                 transfer_result: tuple[int, str] | None = (200, "OK")):
        self.run_dir, self.shm_dir = str(run_dir), str(shm_dir)
        Path(self.run_dir).mkdir(parents=True, exist_ok=True)
        self.seconds_per_char = seconds_per_char
        self.first_audio_s = 0.0  # how long "ttsd" takes from a say to its tts.started
        self.transfer_result = transfer_result
        self.calls: dict[str, CallLog] = defaultdict(CallLog)
        self.writers: dict[str, RingWriter] = {}
        self.playing: dict[str, tuple[str, float, str]] = {}  # call -> (turn, started, text)
        self.utterance = 0
        self.prepared: list[str] = []
        self.paused: dict[str, float] = {}  # call -> when its speech was paused
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), daemon=True, name="line")
        self.thread.start()
        if not ready.wait(5):
            raise RuntimeError("the bus stand-ins did not start")

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.ctx = zmq.asyncio.Context()
        self.pub = {s: Publisher(self.ctx, endpoints.events(self.run_dir, s)) for s in ("sipd", "asrd", "ttsd")}
        self.ctl = {s: ControlServer(self.ctx, endpoints.control(self.run_dir, s)) for s in ("sipd", "ttsd")}
        self.ctl["ttsd"].on(TtsSay, self._say)
        self.ctl["ttsd"].on(Cancel, self._cancel)
        self.ctl["ttsd"].on(Prepare, self._prepare)
        self.ctl["ttsd"].on(Pause, self._pause)
        self.ctl["ttsd"].on(Speculate, self._speculate)
        self.ctl["ttsd"].on(Resume, self._resume)
        self.ctl["sipd"].on(CallTransfer, self._transfer)
        self.ctl["sipd"].on(CallHangup, self._hangup)
        self.ctl["sipd"].on(PlayFlush, self._flush)
        for s in self.ctl.values():
            s.on(StatusRequest, lambda m: Ok())
        tasks = [self.loop.create_task(s.serve()) for s in self.ctl.values()]
        ready.set()
        try:
            self.loop.run_forever()
        finally:
            for t in tasks:
                t.cancel()
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            for s in [*self.ctl.values(), *self.pub.values()]:
                s.close()
            self.ctx.term()

    # -- what agentd asks for -------------------------------------------------------------------
    def _prepare(self, msg: Prepare) -> Ok:
        self.prepared = list(msg.texts)  # the fixed lines agentd wants ready in ttsd's cache
        return Ok()

    def _say(self, msg: TtsSay) -> Ok:
        log = self.calls[msg.call_id]
        if msg.turn in log.heard:  # a clause of a cancelled turn: ttsd drops it
            return Ok(call_id=msg.call_id)
        log.says.append(Spoken(msg.turn, msg.text, time.monotonic_ns(), msg.last))
        playing = self.playing.get(msg.call_id)
        if playing is None or playing[0] != msg.turn:
            self.playing[msg.call_id] = (msg.turn, time.monotonic(), msg.text)
            started = TtsStarted(call_id=msg.call_id, turn=msg.turn, seq=0, latency_ms=1.0)
            self.loop.call_later(self.first_audio_s, self.pub["ttsd"].publish, started)
        else:
            self.playing[msg.call_id] = (msg.turn, playing[1], playing[2] + " " + msg.text)
        if msg.last:
            turn, started, text = self.playing[msg.call_id]
            self.loop.call_later(max(0.0, started + len(text) * self.seconds_per_char - time.monotonic()),
                                 self._finished, msg.call_id, turn, text)
        return Ok(call_id=msg.call_id)

    def _finished(self, call_id: str, turn: str, text: str) -> None:
        playing = self.playing.get(call_id)
        if playing is None or playing[0] != turn:
            return  # cancelled meanwhile
        if call_id in self.paused:  # it plays on after the resume, for as long as was left
            self.loop.call_later(0.05, self._finished, call_id, turn, text)
            return
        end = playing[1] + len(text) * self.seconds_per_char
        if time.monotonic() < end - 0.01:  # a pause moved the end
            self.loop.call_later(end - time.monotonic(), self._finished, call_id, turn, text)
            return
        del self.playing[call_id]
        self.pub["ttsd"].publish(TtsFinished(call_id=call_id, turn=turn, spoken=text, cancelled=False,
                                             frames=int(len(text) * self.seconds_per_char * 50)))

    def _cancel(self, msg: Cancel) -> Ok:
        log = self.calls[msg.call_id]
        log.cancels.append(msg.turn)
        log.flushes += 1  # as ttsd does: it has sipd drop the queued audio
        playing = self.playing.pop(msg.call_id, None)
        since = self.paused.pop(msg.call_id, None)
        if since is not None and playing is not None:  # what played is what played before the pause
            playing = (playing[0], playing[1] + time.monotonic() - since, playing[2])
        heard = ""
        if playing is not None:
            turn, started, text = playing
            words = text.split()
            share = min(len(words), int((time.monotonic() - started) / self.seconds_per_char / 6))
            heard = " ".join(words[:share])
            log.heard[turn] = heard
            self.pub["ttsd"].publish(TtsFinished(call_id=msg.call_id, turn=turn, spoken=heard, cancelled=True,
                                                 frames=share * 10))
        return Ok(call_id=msg.call_id, detail=heard)

    def _speculate(self, msg: Speculate) -> Ok:
        self.calls[msg.call_id].speculated.append(list(msg.texts))
        return Ok(call_id=msg.call_id)

    def _pause(self, msg: Pause) -> Ok:
        self.calls[msg.call_id].pauses += 1
        if msg.call_id in self.playing:
            self.paused[msg.call_id] = time.monotonic()
        return Ok(call_id=msg.call_id)

    def _resume(self, msg: Resume) -> Ok:
        self.calls[msg.call_id].resumes += 1
        since = self.paused.pop(msg.call_id, None)
        playing = self.playing.get(msg.call_id)
        if since is not None and playing is not None:  # its clock stood still while paused
            turn, started, text = playing
            self.playing[msg.call_id] = (turn, started + time.monotonic() - since, text)
        return Ok(call_id=msg.call_id)

    def _transfer(self, msg: CallTransfer) -> Ok:
        self.calls[msg.call_id].transfers.append(msg)
        self.pub["sipd"].publish(TransferProgress(call_id=msg.call_id, status=202, reason="Accepted", final=False))
        if self.transfer_result is not None:  # None: a PBX that never reports the outcome
            status, reason = self.transfer_result
            self.loop.call_later(0.05, lambda: self.pub["sipd"].publish(
                TransferProgress(call_id=msg.call_id, status=status, reason=reason, final=True)))
        return Ok(call_id=msg.call_id)

    def _hangup(self, msg: CallHangup) -> Ok:
        self.calls[msg.call_id].hangups.append(msg.reason)
        self.loop.call_later(0.02, lambda: self.pub["sipd"].publish(CallEnded(call_id=msg.call_id, reason=msg.reason)))
        return Ok(call_id=msg.call_id)

    def _flush(self, msg: PlayFlush) -> Ok:
        self.calls[msg.call_id].flushes += 1
        return Ok(call_id=msg.call_id)

    # -- what the test does ---------------------------------------------------------------------
    def publish(self, service: str, msg) -> None:
        self.loop.call_soon_threadsafe(self.pub[service].publish, msg)

    def start_call(self, call_id: str, caller: str = "+15551234567", callee: str = "agent") -> None:
        """As sipd announces a call: caller and callee are the SIP URIs' user parts."""
        self.writers[call_id] = RingWriter.create(self.shm_dir, call_id, "in")
        create_ring(self.shm_dir, call_id, "out")
        self.publish("sipd", CallStarted(call_id=call_id, caller=caller, callee=callee))
        time.sleep(0.05)
        self.publish("sipd", CallAnswered(call_id=call_id, codec="PCMU"))

    def caller_says(self, call_id: str, text: str, *, seconds: float = 1.0, endpoint_ms: float = 240,
                    asr_ms: float = 150, alternatives: tuple[str, ...] = (), conf: float = 0.9) -> int:
        """The events asrd publishes for one utterance, with realistic spacing in time;
        ``alternatives`` are the recogniser's other readings, ``conf`` every word's confidence."""
        self.utterance += 1
        u = self.utterance
        start = time.monotonic_ns()
        self.publish("asrd", SpeechStarted(call_id=call_id, utterance=u, seq=u * 1000, at_ns=start))
        time.sleep(seconds)
        end = start + int(seconds * 1e9)
        time.sleep(endpoint_ms / 1000)
        self.publish("asrd", SpeechStopped(call_id=call_id, utterance=u, seq=u * 1000 + int(seconds * 50),
                                           end_ns=end, reason="silence"))
        time.sleep(asr_ms / 1000)
        words = [{"word": w, "start_ns": start, "end_ns": end, "conf": conf} for w in text.split()]
        self.publish("asrd", AsrFinal(call_id=call_id, utterance=u, text=text, digits=text, confidence=conf,
                                      start_ns=start, end_ns=end, latency_ms=(time.monotonic_ns() - end) / 1e6,
                                      words=words, alternatives=list(alternatives)))
        return u

    def caller_starts_talking(self, call_id: str) -> tuple[int, int]:
        self.utterance += 1
        now = time.monotonic_ns()
        self.publish("asrd", SpeechStarted(call_id=call_id, utterance=self.utterance, seq=self.utterance * 1000,
                                           at_ns=now))
        return self.utterance, now

    def caller_stops(self, call_id: str, utterance: int, start_ns: int, text: str | None, reason: str = "silence"):
        end = time.monotonic_ns()
        self.publish("asrd", SpeechStopped(call_id=call_id, utterance=utterance, seq=utterance * 1000 + 10,
                                           end_ns=end, reason=reason))
        if text is not None:
            self.publish("asrd", AsrFinal(call_id=call_id, utterance=utterance, text=text, digits=text,
                                          confidence=0.9, start_ns=start_ns, end_ns=end, latency_ms=100.0, words=[]))

    def hang_up(self, call_id: str) -> None:
        writer = self.writers.pop(call_id, None)
        if writer is not None:
            writer.close()
        self.publish("sipd", CallEnded(call_id=call_id, reason="caller-hangup"))

    def wait(self, predicate, timeout: float = 10.0, what: str = "the agent") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def wait_says(self, call_id: str, n: int, timeout: float = 15.0) -> list[str]:
        """Until the agent has started ``n`` turns and its last one has finished playing, as a
        polite caller waits (talking earlier would be a barge-in)."""
        def done() -> bool:
            says = self.calls[call_id].says
            return len(self.calls[call_id].turns()) >= n and bool(says) and says[-1].last \
                and call_id not in self.playing
        self.wait(done, timeout, f"{n} agent turns")
        return self.calls[call_id].agent_text()

    def close(self) -> None:
        for call_id in list(self.writers):
            self.writers.pop(call_id).close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


