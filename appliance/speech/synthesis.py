"""ttsd's work: text clauses in (tts.say), 16 kHz frames out into the call's out-ring.

Audio is synthesised ahead but written to the ring only ``tts.lead_ms`` ahead of playout
(sipd plays one frame per 20 ms), so a cancel has little to take back: ttsd stops writing at
once (within one frame), asks sipd to drop the few frames queued (ctl.play_flush), and can
say exactly which text the caller heard. tts.finished comes when the last frame has played,
so the agent knows when the bot really stopped talking.

Text is normalised for speech (textnorm) and split at clauses: the first clause's audio is
ready sooner than the whole sentence's, and the rest is synthesised while it plays.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..bus import BusTimeout, ControlClient, RemoteError, Subscriber, endpoints
from ..bus.messages import CallEnded, Cancel, Ok, PlayFlush, Say, TtsFinished, TtsMark, TtsStarted
from ..config import Config
from ..ipc import FRAME_NS, FRAME_SAMPLES, RingError, RingWriter
from ..runtime.logs import call_context
from . import textnorm
from .errors import BackendError
from .tts.base import TtsBackend, to_ring_rate

log = logging.getLogger("appliance.ttsd")

MIN_CLAUSE_WORDS = 3
_CLAUSE_END = re.compile(r"(?<=[.!?;:,])\s+")


def split_clauses(text: str) -> list[str]:
    """Split after , ; : . ! ? — merging pieces shorter than MIN_CLAUSE_WORDS words into the
    next, so "Yes, of course" stays whole but long sentences start speaking sooner."""
    out: list[str] = []
    carry = ""
    for piece in _CLAUSE_END.split(text.strip()):
        carry = f"{carry} {piece}".strip() if carry else piece
        if len(carry.split()) >= MIN_CLAUSE_WORDS:
            out.append(carry)
            carry = ""
    if carry:
        if out and len(carry.split()) < MIN_CLAUSE_WORDS:
            out[-1] = f"{out[-1]} {carry}"
        else:
            out.append(carry)
    return out


@dataclass
class Clause:
    turn: str
    text: str  # as given (what the agent records)
    char_end: int  # offset in the turn's text after this clause
    last: bool
    said_ns: int


@dataclass
class Turn:
    turn: str
    first_say_ns: int
    text: str = ""
    frames: int = 0
    clauses: list[list] = field(default_factory=list)  # per clause: see _speak_clause
    started: bool = False


class CallVoice:
    """One call's speech: clause queue, the out-ring writer, and the playout clock."""

    def __init__(self, call_id: str, writer: RingWriter, lead_frames: int):
        self.call_id = call_id
        self.writer = writer
        self.lead_frames = lead_frames
        self.clauses: deque[Clause] = deque()
        self.wake = asyncio.Event()
        self.turn: Turn | None = None
        self.texts: dict[str, str] = {}  # turn -> text so far (for char offsets)
        self.playout_end_ns = 0  # when the last frame written will have been played
        self.cancelled = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.turn_done: Turn | None = None  # its last clause is written; finished once played
        self.last_seq = -1

    def queued_frames(self, now_ns: int) -> int:
        return max(0, -(-(self.playout_end_ns - now_ns) // FRAME_NS))


class Synthesis:
    """The ttsd component (runtime.service.Component)."""

    def __init__(self, config: Config, backend: TtsBackend | None = None):
        self.config = config
        self.backend = backend
        self.voices: dict[str, CallVoice] = {}
        self.runtime = None
        self.sub: Subscriber | None = None
        self.sipd: ControlClient | None = None
        self.tasks: list[asyncio.Task] = []
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tts")
        self.lead_frames = max(1, config.tts.lead_ms // (FRAME_NS // 1_000_000))
        self.counters = {"turns": 0, "clauses": 0, "frames": 0, "cancelled": 0, "errors": 0, "flush_failed": 0}

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self, runtime) -> None:
        self.runtime = runtime
        if self.backend is None:
            from .backends import make_tts

            self.backend = await asyncio.get_running_loop().run_in_executor(None, make_tts, self.config)
        log.info("voice %s ready (%d Hz)", self.backend.name, self.backend.sample_rate)
        runtime.control.on(Say, self.on_say)
        runtime.control.on(Cancel, self.on_cancel)
        self.sipd = ControlClient(runtime.ctx, endpoints.control(self.config.paths.run_dir, "sipd"))
        self.sub = Subscriber(runtime.ctx, [endpoints.events(self.config.paths.run_dir, "sipd")], ["call.ended"])
        self.tasks = [asyncio.create_task(self._events(), name="events")]

    async def stop(self) -> None:
        for voice in list(self.voices.values()):
            self._release(voice)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for sock in (self.sub, self.sipd):
            if sock is not None:
                sock.close()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def status(self) -> dict:
        return {"backend": self.backend.name if self.backend else "", "calls": len(self.voices), **self.counters}

    def publish(self, msg) -> None:
        if self.runtime is not None and self.runtime.publisher is not None:
            self.runtime.publisher.publish(msg)

    async def _events(self) -> None:
        async for msg in self.sub:
            if isinstance(msg, CallEnded) and msg.call_id in self.voices:
                self._release(self.voices[msg.call_id])

    def _voice(self, call_id: str) -> CallVoice:
        voice = self.voices.get(call_id)
        if voice is None:
            try:
                writer = RingWriter.attach(self.config.paths.shm_dir, call_id, "out")
            except (RingError, OSError) as exc:
                raise LookupError(f"no live call {call_id!r} to speak to: {exc}") from None
            voice = CallVoice(call_id, writer, self.lead_frames)
            self.voices[call_id] = voice
            voice.task = asyncio.create_task(self._speak(voice), name=f"speak-{call_id}")
        return voice

    def _release(self, voice: CallVoice) -> None:
        self.voices.pop(voice.call_id, None)
        if voice.task is not None:
            voice.task.cancel()
        try:
            voice.writer.close(end_of_stream=False)  # sipd owns the ring's lifetime
        except Exception:
            pass

    # -- control --------------------------------------------------------------------------------
    def on_say(self, msg: Say) -> Ok:
        if not msg.turn:
            raise ValueError("tts.say needs a turn id")
        voice = self._voice(msg.call_id)
        base = len(voice.texts.get(msg.turn, ""))
        sep = " " if base else ""
        voice.texts[msg.turn] = voice.texts.get(msg.turn, "") + sep + msg.text
        clauses = split_clauses(msg.text) or [""]
        offset = base + len(sep)
        for i, text in enumerate(clauses):
            pos = msg.text.find(text, 0) if text else 0
            end = offset + (pos + len(text) if pos >= 0 else len(msg.text))
            voice.clauses.append(Clause(msg.turn, text, end, msg.last and i == len(clauses) - 1, msg.ts_ns))
        self.counters["clauses"] += len(clauses)
        voice.wake.set()
        return Ok(call_id=msg.call_id)

    async def on_cancel(self, msg: Cancel) -> Ok:
        voice = self.voices.get(msg.call_id)
        playing = voice.turn.turn if voice is not None and voice.turn is not None else None
        if voice is None or (msg.turn and msg.turn != playing and not any(c.turn == msg.turn for c in voice.clauses)):
            return Ok(call_id=msg.call_id, detail="")
        voice.cancelled.set()  # the writer loop sees it before its next frame
        unstarted = [t for t in dict.fromkeys(c.turn for c in voice.clauses) if t != playing]
        voice.clauses.clear()
        voice.turn_done = None
        voice.wake.set()
        for t in unstarted:  # said but not begun: the agent still gets its answer
            voice.texts.pop(t, None)
            self.publish(TtsFinished(call_id=voice.call_id, turn=t, spoken="", cancelled=True, frames=0))
        now = time.monotonic_ns()
        unplayed = voice.queued_frames(now)
        flushed = await self._flush(voice.call_id)
        voice.playout_end_ns = now
        turn = voice.turn
        spoken = ""
        if turn is not None:
            heard = turn.frames - (unplayed if flushed else 0)
            spoken = heard_text(turn.clauses, heard)
            self.counters["cancelled"] += 1
            self.publish(TtsFinished(call_id=voice.call_id, turn=turn.turn, spoken=spoken, cancelled=True,
                                     frames=heard))
            voice.texts.pop(turn.turn, None)
            voice.turn = None
        with call_context(voice.call_id):
            log.info("cancelled: %d frames unplayed%s; heard %r", unplayed, "" if flushed else " (flush failed)", spoken)
        return Ok(call_id=msg.call_id, detail=spoken)

    async def _flush(self, call_id: str) -> bool:
        try:
            await self.sipd.request(PlayFlush(call_id=call_id), timeout=0.25)
            return True
        except (BusTimeout, RemoteError) as exc:
            self.counters["flush_failed"] += 1
            with call_context(call_id):
                log.warning("sipd did not flush queued audio: %s", exc)
            return False

    # -- the speaking loop ----------------------------------------------------------------------
    async def _speak(self, voice: CallVoice) -> None:
        with call_context(voice.call_id):
            while True:
                if not voice.clauses:
                    await self._finish_if_done(voice)
                    voice.wake.clear()
                    await voice.wake.wait()
                    continue
                voice.cancelled.clear()
                clause = voice.clauses.popleft()
                if voice.turn is None or voice.turn.turn != clause.turn:
                    voice.turn = Turn(clause.turn, clause.said_ns)
                    self.counters["turns"] += 1
                voice.turn.text = voice.texts.get(clause.turn, "")
                try:
                    await self._speak_clause(voice, clause)
                except BackendError as exc:
                    self.counters["errors"] += 1
                    log.error("synthesis failed: %s", exc)
                    self.publish(TtsFinished(call_id=voice.call_id, turn=clause.turn, spoken="", cancelled=False,
                                             frames=voice.turn.frames if voice.turn else 0, error=str(exc)))
                    voice.clauses = deque(c for c in voice.clauses if c.turn != clause.turn)
                    voice.turn = None

    async def _speak_clause(self, voice: CallVoice, clause: Clause) -> None:
        turn = voice.turn
        first = turn.frames
        spoken = textnorm.for_speech(clause.text)
        pending = np.zeros(0, dtype=np.int16)
        entry = [clause.text, first, 0, 0]  # text, first frame, frames written, frames synthesised
        turn.clauses.append(entry)
        async for chunk in self._synth(spoken, voice):
            entry[3] += -(-len(chunk) // FRAME_SAMPLES)
            pending = np.concatenate([pending, chunk])
            pending = await self._write_frames(voice, turn, pending, final=False)
            if pending is None:
                return
        if await self._write_frames(voice, turn, pending, final=True) is None:
            return
        self.publish(TtsMark(call_id=voice.call_id, turn=turn.turn, char_end=clause.char_end, seq=voice.last_seq))
        if clause.last:
            voice.turn_done = turn

    async def _synth(self, text: str, voice: CallVoice):
        """Backend chunks, produced in a worker thread one at a time, resampled to 16 kHz."""
        loop = asyncio.get_running_loop()
        gen = self.backend.synthesize(text)
        rate_of = lambda: self.backend.sample_rate  # noqa: E731 (espeak learns its rate from the WAV)
        deadline = time.monotonic() + self.config.tts.timeout_s
        try:
            while not voice.cancelled.is_set():
                remaining = deadline - time.monotonic()
                try:
                    chunk = await asyncio.wait_for(loop.run_in_executor(self.executor, next, gen, None), max(remaining, 0.01))
                except asyncio.TimeoutError:
                    raise BackendError(f"synthesis took longer than {self.config.tts.timeout_s} s") from None
                if chunk is None:
                    return
                yield to_ring_rate(chunk, rate_of())
        finally:
            loop.run_in_executor(self.executor, gen.close)

    async def _write_frames(self, voice: CallVoice, turn: Turn, pcm: np.ndarray, *, final: bool):
        """Write whole frames, keeping at most lead_frames ahead of playout; returns what is
        left over (less than a frame), or None when cancelled."""
        n = len(pcm) // FRAME_SAMPLES
        if final and len(pcm) % FRAME_SAMPLES:
            pcm = np.concatenate([pcm, np.zeros(FRAME_SAMPLES - len(pcm) % FRAME_SAMPLES, np.int16)])
            n += 1
        for i in range(n):
            while True:
                if voice.cancelled.is_set():
                    return None
                now = time.monotonic_ns()
                ahead = voice.queued_frames(now)
                if ahead < voice.lead_frames:
                    break
                await asyncio.sleep((ahead - voice.lead_frames + 1) * FRAME_NS / 1e9 * 0.5)
            now = time.monotonic_ns()
            seq = voice.writer.write(pcm[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES], now)
            voice.playout_end_ns = max(voice.playout_end_ns, now) + FRAME_NS
            voice.last_seq = seq
            turn.frames += 1
            turn.clauses[-1][2] += 1
            self.counters["frames"] += 1
            if not turn.started:
                turn.started = True
                self.publish(TtsStarted(call_id=voice.call_id, turn=turn.turn, seq=seq,
                                        latency_ms=round((now - turn.first_say_ns) / 1e6, 1)))
        return pcm[n * FRAME_SAMPLES:] if not final else np.zeros(0, np.int16)

    async def _finish_if_done(self, voice: CallVoice) -> None:
        """Queue empty after a turn's last clause: tell the agent once it has been heard."""
        turn = voice.turn_done
        if turn is None or voice.turn is not turn:
            return
        voice.turn_done = None
        wait = (voice.playout_end_ns - time.monotonic_ns()) / 1e9
        if wait > 0:
            try:
                await asyncio.wait_for(voice.wake.wait(), wait)  # a new say or a cancel cuts the wait
            except asyncio.TimeoutError:
                pass
        if voice.turn is not turn:  # cancelled meanwhile: the cancel reported it
            return
        if voice.clauses and voice.clauses[0].turn == turn.turn:
            return
        self.publish(TtsFinished(call_id=voice.call_id, turn=turn.turn, spoken=turn.text, cancelled=False,
                                 frames=turn.frames))
        voice.texts.pop(turn.turn, None)
        voice.turn = None


def heard_text(clauses: list[list], heard_frames: int) -> str:
    """Whole clauses whose frames all played, then the played share of the cut clause's words
    (against the clause's whole synthesised length, not what was written before the cut)."""
    out = []
    for text, first, written, total in clauses:
        if heard_frames >= first + written and written >= total:
            out.append(text)
            continue
        if heard_frames > first and total:
            words = text.split()
            share = int(len(words) * min(heard_frames - first, total) / total)
            if share:
                out.append(" ".join(words[:share]))
        break
    return " ".join(out)
