"""ttsd's work: text clauses in (tts.say), 16 kHz frames out into the call's out-ring.

Audio is synthesised ahead but written to the ring only ``tts.lead_ms`` ahead of playout
(sipd plays one frame per 20 ms), so a cancel has little to take back: ttsd stops writing at
once (within one frame), asks sipd to drop the few frames queued (ctl.play_flush), and can
say exactly which text the caller heard. tts.finished comes when a turn's last frame has
*played*, so the agent knows when the bot really stopped talking.

Pause and resume (the caller talks over the agent, and it is not yet known whether that is a
"mhm" or a real interruption): tts.pause stops writing and takes back the frames sipd had
queued (flushed there, kept here); tts.resume writes them again and carries on, so the caller
hears the sentence go on from where it stopped, nothing skipped; tts.cancel ends it.

Text is normalised for speech (textnorm) and split at clauses: the first clause's audio is
ready sooner than the whole sentence's, and the rest is synthesised while it plays.

Bookkeeping per call: turns whose frames are in the ring but not yet played (``written``, in
ring order, each with the time its last frame plays) and turns cancelled recently (a clause
of one that arrives after the cancel is dropped, never spoken).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..bus import BusTimeout, ControlClient, RemoteError, Subscriber, endpoints
from ..bus.messages import (CallEnded, Cancel, Ok, Pause, PlayFlush, Prepare, Resume, TtsSay, Speculate, TtsFinished,
                            TtsMark, TtsStarted)
from ..config import Config
from ..audio import FRAME_NS, FRAME_SAMPLES
from ..ipc import RingError, RingWriter, ring_path
from ..runtime.logs import call_context
from . import textnorm
from .errors import BackendError
from ..audio.resample import resample
from .tts.base import TtsBackend
from .ttscache import ClauseCache

log = logging.getLogger("appliance.ttsd")

MIN_CLAUSE_WORDS = 3
CANCELLED_MEMORY = 64  # turn ids remembered per call after a cancel
_CLAUSE_END = re.compile(r"[.!?;:,](?=\s)")


def split_clauses(text: str) -> list[tuple[str, int]]:
    """(clause, end offset in ``text``) split after , ; : . ! ? — pieces shorter than
    MIN_CLAUSE_WORDS words merge into the next, so "Yes, of course" stays whole."""
    out: list[tuple[str, int]] = []
    start = 0
    cuts = [m.end() for m in _CLAUSE_END.finditer(text)] + [len(text)]
    for cut in cuts:
        piece = text[start:cut].strip()
        if not piece:
            continue
        if len(piece.split()) >= MIN_CLAUSE_WORDS or cut == len(text):
            out.append((piece, cut))
            start = cut
    if len(out) > 1 and len(out[-1][0].split()) < MIN_CLAUSE_WORDS:  # a short tail joins the one before
        last, end = out.pop()
        prev_text, _ = out.pop()
        out.append((f"{prev_text} {last}", end))
    return out


@dataclass
class Clause:
    turn: str
    text: str  # as given (what the agent records)
    char_end: int  # offset in the turn's text after this clause
    last: bool
    said_ns: int


@dataclass
class ClauseAudio:
    text: str
    first: int  # the turn's frame index where it starts
    written: int = 0
    samples: int = 0  # synthesised so far
    complete: bool = False  # synthesis finished: samples is final

    @property
    def frames(self) -> int:
        return -(-self.samples // FRAME_SAMPLES)


@dataclass
class TurnAudio:
    turn: str
    first_say_ns: int
    text: str = ""
    frames: int = 0
    clauses: list[ClauseAudio] = field(default_factory=list)
    started: bool = False
    last_written: bool = False  # the turn's last clause is in the ring
    playout_end_ns: int = 0
    error: str = ""


class CallVoice:
    """One call's speech: clause queue, the out-ring writer, and the playout clock."""

    def __init__(self, call_id: str, writer: RingWriter, lead_frames: int):
        self.call_id = call_id
        self.writer = writer
        self.lead_frames = lead_frames
        self.clauses: deque[Clause] = deque()
        self.wake = asyncio.Event()
        self.texts: dict[str, str] = {}  # turn -> text said so far (for char offsets)
        self.written: OrderedDict[str, TurnAudio] = OrderedDict()  # in the ring, not yet finished
        self.cancelled_turns: OrderedDict[str, None] = OrderedDict()
        self.playout_end_ns = 0  # when the last frame written will have been played
        self.stop = threading.Event()  # cancel: the writer and the synthesis thread stop now
        self.flushed: asyncio.Future | None = None  # writing waits until sipd has flushed
        self.task: asyncio.Task | None = None
        self.last_seq = -1
        self.paused = False
        self.unpaused = asyncio.Event()
        self.unpaused.set()
        self.recent: deque[tuple[TurnAudio, ClauseAudio, np.ndarray]] = deque(maxlen=lead_frames + 2)  # last written
        self.replay: deque[tuple[TurnAudio, ClauseAudio, np.ndarray]] = deque()  # taken back by a pause, to write again

    def queued_frames(self, now_ns: int) -> int:
        return max(0, -(-(self.playout_end_ns - now_ns) // FRAME_NS))

    def forget_turn(self, turn: str) -> None:
        self.cancelled_turns[turn] = None
        while len(self.cancelled_turns) > CANCELLED_MEMORY:
            self.cancelled_turns.popitem(last=False)
        self.texts.pop(turn, None)


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
        self.counters = {"turns": 0, "clauses": 0, "frames": 0, "cancelled": 0, "errors": 0, "flush_failed": 0,
                         "late_clauses_dropped": 0, "paused": 0, "resumed": 0, "speculated": 0}
        self.cache = ClauseCache()
        self.preparing: asyncio.Task | None = None
        self.inflight: dict[tuple, asyncio.Future] = {}  # speculative syntheses under way, by cache key

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self, runtime) -> None:
        self.runtime = runtime
        if self.backend is None:
            from .backends import make_tts

            self.backend = await asyncio.get_running_loop().run_in_executor(None, make_tts, self.config)
        log.info("voice %s ready (%d Hz)", self.backend.name, self.backend.sample_rate)
        runtime.control.on(TtsSay, self.on_say)
        runtime.control.on(Cancel, self.on_cancel)
        runtime.control.on(Pause, self.on_pause)
        runtime.control.on(Resume, self.on_resume)
        runtime.control.on(Prepare, self.on_prepare)
        runtime.control.on(Speculate, self.on_speculate)
        self.sipd = ControlClient(runtime.ctx, endpoints.control(self.config.paths.run_dir, "sipd"))
        self.sub = Subscriber(runtime.ctx, [endpoints.events(self.config.paths.run_dir, "sipd")], ["call.ended"])
        self.tasks = [runtime.watch(asyncio.create_task(self._events(), name="events")),
                      runtime.watch(asyncio.create_task(self._sweep(), name="sweep"))]

    async def stop(self) -> None:
        for voice in list(self.voices.values()):
            self._release(voice)
        for task in [*self.tasks, *([self.preparing] if self.preparing else [])]:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for sock in (self.sub, self.sipd):
            if sock is not None:
                sock.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.backend is not None:
            self.backend.close()  # a TensorRT voice frees its GPU buffers

    def status(self) -> dict:
        return {"backend": self.backend.name if self.backend else "", "calls": len(self.voices), **self.counters,
                **self.cache.status()}

    # -- the clause cache ---------------------------------------------------------------------------
    def on_prepare(self, msg: Prepare) -> Ok:
        """An agent's fixed lines: synthesised in the background, one clause at a time, each
        behind any call's speech (the same two synthesis threads; calls queue first)."""
        clauses = [textnorm.for_speech(c) for text in msg.texts for c, _ in split_clauses(text)]
        if self.preparing is not None:
            self.preparing.cancel()
        self.preparing = asyncio.create_task(self._prepare(clauses), name="prepare")
        return Ok(call_id=msg.call_id)

    async def _prepare(self, clauses: list[str]) -> None:
        voice = self.backend.identity()
        for text in dict.fromkeys(clauses):
            if (voice, text) in self.cache:
                continue
            while self.voices and any(v.clauses for v in self.voices.values()):
                await asyncio.sleep(0.05)  # a caller is waiting for speech: theirs first
            try:
                pcm = await asyncio.get_running_loop().run_in_executor(self.executor, self._whole, text)
            except Exception as exc:  # noqa: BLE001 - a line that cannot be made now is made when said
                log.warning("could not prepare %r: %s", text, exc)
                continue
            self.cache.put(voice, text, pcm)
        log.info("clause cache: %s", self.cache.status())

    def on_speculate(self, msg: Speculate) -> Ok:
        """An answer that may be said in a moment: its clauses go into the cache now, ahead of
        the fixed lines; a tts.say of one still being made waits for it instead of making it twice."""
        voice = self.backend.identity()
        loop = asyncio.get_running_loop()
        for text in dict.fromkeys(textnorm.for_speech(c) for t in msg.texts for c, _ in split_clauses(t)):
            key = (voice, text)
            if key in self.cache or key in self.inflight:
                continue
            fut = loop.run_in_executor(self.executor, self._whole, text)
            self.inflight[key] = fut
            self.counters["speculated"] += 1
            fut.add_done_callback(lambda f, k=key: self._speculated(k, f))
        return Ok(call_id=msg.call_id)

    def _speculated(self, key: tuple, fut) -> None:
        self.inflight.pop(key, None)
        if not fut.cancelled() and fut.exception() is None and len(fut.result()):
            self.cache.put(key[0], key[1], fut.result())

    def _whole(self, text: str) -> np.ndarray:
        chunks = [resample(c, self.backend.sample_rate) for c in self.backend.synthesize(text)]
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)

    def publish(self, msg) -> None:
        if self.runtime is not None and self.runtime.publisher is not None:
            self.runtime.publisher.publish(msg)

    async def _events(self) -> None:
        async for msg in self.sub:
            if isinstance(msg, CallEnded) and msg.call_id in self.voices:
                self._release(self.voices[msg.call_id])

    async def _sweep(self) -> None:
        """A call whose ring is gone (sipd restarted, an event lost) releases its voice."""
        while True:
            await asyncio.sleep(1.0)
            for voice in list(self.voices.values()):
                try:
                    gone = not os.path.exists(ring_path(self.config.paths.shm_dir, voice.call_id, "out"))
                except RingError:
                    gone = True
                if gone:
                    with call_context(voice.call_id):
                        log.info("out-ring gone: releasing the call")
                    self._release(voice)

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
            voice.task.add_done_callback(lambda t, v=voice: self._speaker_died(v, t))
        return voice

    def _speaker_died(self, voice: CallVoice, task: asyncio.Task) -> None:
        if task.cancelled():
            return
        with call_context(voice.call_id):
            log.error("speaking task ended: %r; dropping the call's voice", task.exception())
        self._release(voice)

    def _release(self, voice: CallVoice) -> None:
        if self.voices.get(voice.call_id) is voice:
            del self.voices[voice.call_id]
        voice.stop.set()
        if voice.task is not None and not voice.task.done():
            voice.task.cancel()
        try:
            voice.writer.close(end_of_stream=False)  # sipd owns the ring's lifetime
        except Exception:
            pass

    # -- control --------------------------------------------------------------------------------
    def on_say(self, msg: TtsSay) -> Ok:
        if not msg.turn:
            raise ValueError("tts.say needs a turn id")
        voice = self._voice(msg.call_id)
        if msg.turn in voice.cancelled_turns:  # a clause still in flight when the turn was cancelled
            self.counters["late_clauses_dropped"] += 1
            return Ok(call_id=msg.call_id, detail="turn was cancelled")
        before = voice.texts.get(msg.turn, "")
        sep = " " if before else ""
        voice.texts[msg.turn] = before + sep + msg.text
        offset = len(before) + len(sep)
        pieces = split_clauses(msg.text) or [("", 0)]
        for i, (text, end) in enumerate(pieces):
            voice.clauses.append(Clause(msg.turn, text, offset + end, msg.last and i == len(pieces) - 1, msg.ts_ns))
        self.counters["clauses"] += len(pieces)
        voice.wake.set()
        return Ok(call_id=msg.call_id)

    async def on_cancel(self, msg: Cancel) -> Ok:
        voice = self.voices.get(msg.call_id)
        if voice is None:  # e.g. ttsd restarted: audio a predecessor queued may still be in sipd
            await self._flush(msg.call_id)
            return Ok(call_id=msg.call_id, detail="")
        queued_turns = list(dict.fromkeys(c.turn for c in voice.clauses))
        if msg.turn and msg.turn not in voice.written and msg.turn in queued_turns:
            # Only queued, nothing of it in the ring: drop it alone, the playing turn goes on.
            voice.clauses = deque(c for c in voice.clauses if c.turn != msg.turn)
            self._finished(voice, TurnAudio(msg.turn, 0), heard=0, cancelled=True)
            return Ok(call_id=msg.call_id, detail="")
        # Everything stops: snapshot first, so a say arriving during the flush is not mistaken for it.
        voice.stop.set()
        voice.replay.clear()  # frames a pause took back were never heard: they stay unheard
        voice.paused = False
        voice.unpaused.set()
        voice.flushed = asyncio.get_running_loop().create_future()
        now = time.monotonic_ns()
        unplayed = voice.queued_frames(now)
        turns = list(voice.written.values())
        voice.written.clear()
        voice.clauses.clear()
        voice.playout_end_ns = now
        flushed = await self._flush(voice.call_id)
        voice.flushed.set_result(None)
        voice.flushed = None
        spoken = ""
        for turn in reversed(turns):  # the ring plays in order: the unplayed frames are the newest
            take = min(turn.frames, unplayed) if flushed else 0
            unplayed -= take
            heard_frames = turn.frames - take
            text = heard_text(turn.clauses, heard_frames)
            cancelled = take > 0 or not turn.last_written
            self._finished(voice, turn, heard=heard_frames, cancelled=cancelled, spoken=text)
            if turn.turn == msg.turn or not msg.turn:
                spoken = text if not spoken else spoken
        for t in queued_turns:
            if t not in {x.turn for x in turns}:
                self._finished(voice, TurnAudio(t, 0), heard=0, cancelled=True)
        self.counters["cancelled"] += 1
        voice.wake.set()
        with call_context(voice.call_id):
            log.info("cancelled%s; heard %r", "" if flushed else " (sipd flush failed: the queued tail plays)", spoken)
        return Ok(call_id=msg.call_id, detail=spoken)

    async def on_pause(self, msg: Pause) -> Ok:
        """Stop within a frame, keeping what was not heard: the unplayed frames sipd had queued
        are flushed there and put back at the head of this call's audio."""
        voice = self.voices.get(msg.call_id)
        if voice is None or voice.paused or not voice.written:
            return Ok(call_id=msg.call_id, detail="nothing playing")
        voice.paused = True
        voice.unpaused.clear()
        now = time.monotonic_ns()
        unplayed = voice.queued_frames(now)
        self.counters["paused"] += 1
        if unplayed and await self._flush(voice.call_id):
            taken = []
            for _ in range(min(unplayed, len(voice.recent))):
                turn, audio, pcm = voice.recent.pop()
                turn.frames -= 1
                audio.written -= 1
                taken.append((turn, audio, pcm))
            voice.replay.extendleft(taken)  # newest first in, so oldest first out, ahead of older replay
            voice.playout_end_ns = now
            for turn in voice.written.values():
                turn.playout_end_ns = min(turn.playout_end_ns, now)
        with call_context(voice.call_id):
            log.info("paused (%d frames kept to play again)", len(voice.replay))
        return Ok(call_id=msg.call_id)

    def on_resume(self, msg: Resume) -> Ok:
        voice = self.voices.get(msg.call_id)
        if voice is None or not voice.paused:
            return Ok(call_id=msg.call_id, detail="not paused")
        voice.paused = False
        voice.unpaused.set()
        self.counters["resumed"] += 1
        if voice.replay:
            asyncio.create_task(self._replay(voice), name=f"replay-{voice.call_id}")
        with call_context(voice.call_id):
            log.info("resumed")
        return Ok(call_id=msg.call_id)

    async def _replay(self, voice: CallVoice) -> None:
        """The frames a pause took back, first (the writer waits for them), at the lead's pace."""
        while voice.replay and not voice.paused and not voice.stop.is_set():
            ahead = voice.queued_frames(time.monotonic_ns())
            if ahead >= voice.lead_frames:
                await asyncio.sleep((ahead - voice.lead_frames + 1) * FRAME_NS / 1e9 * 0.5)
                continue
            turn, audio, pcm = voice.replay.popleft()
            self._put(voice, turn, audio, pcm)

    async def _flush(self, call_id: str) -> bool:
        try:
            await self.sipd.request(PlayFlush(call_id=call_id), timeout=0.25)
            return True
        except (BusTimeout, RemoteError) as exc:
            self.counters["flush_failed"] += 1
            with call_context(call_id):
                log.warning("sipd did not flush queued audio: %s", exc)
            return False

    def _finished(self, voice: CallVoice, turn: TurnAudio, *, heard: int, cancelled: bool, spoken: str | None = None) -> None:
        voice.written.pop(turn.turn, None)
        if cancelled:
            voice.forget_turn(turn.turn)
        else:
            voice.texts.pop(turn.turn, None)
        self.publish(TtsFinished(call_id=voice.call_id, turn=turn.turn, cancelled=cancelled, frames=heard,
                                 spoken=spoken if spoken is not None else (heard_text(turn.clauses, heard)
                                                                           if cancelled else turn.text),
                                 error=turn.error))

    # -- the speaking loop ----------------------------------------------------------------------
    async def _speak(self, voice: CallVoice) -> None:
        with call_context(voice.call_id):
            current: TurnAudio | None = None
            while True:
                if not voice.clauses:
                    voice.wake.clear()
                    if not voice.clauses:  # re-check: a say may have landed before the clear
                        await voice.wake.wait()
                    continue
                if voice.flushed is not None:
                    await voice.flushed
                voice.stop.clear()
                clause = voice.clauses.popleft()
                if current is None or current.turn != clause.turn or current.turn not in voice.written:
                    current = voice.written.get(clause.turn) or TurnAudio(clause.turn, clause.said_ns)
                    if clause.turn not in voice.written:
                        voice.written[clause.turn] = current
                        self.counters["turns"] += 1
                current.text = voice.texts.get(clause.turn, current.text)
                try:
                    await self._speak_clause(voice, current, clause)
                except Exception as exc:  # one bad clause must not silence the call
                    self.counters["errors"] += 1
                    log.error("synthesis failed: %s", exc, exc_info=not isinstance(exc, BackendError))
                    current.error = str(exc) or type(exc).__name__
                    voice.clauses = deque(c for c in voice.clauses if c.turn != clause.turn)
                    current.last_written = True
                    self._schedule_finish(voice, current, cancelled=True)
                    current = None

    async def _speak_clause(self, voice: CallVoice, turn: TurnAudio, clause: Clause) -> None:
        audio = ClauseAudio(clause.text, first=turn.frames)
        turn.clauses.append(audio)
        pending = np.zeros(0, dtype=np.int16)
        async for chunk in self._synth(textnorm.for_speech(clause.text), voice):
            audio.samples += len(chunk)
            pending = await self._write_frames(voice, turn, audio, np.concatenate([pending, chunk]), final=False)
            if pending is None:
                return
        audio.complete = True
        if voice.stop.is_set() or await self._write_frames(voice, turn, audio, pending, final=True) is None:
            return
        self.publish(TtsMark(call_id=voice.call_id, turn=turn.turn, char_end=clause.char_end, seq=voice.last_seq))
        if clause.last:
            turn.last_written = True
            self._schedule_finish(voice, turn, cancelled=False)

    def _schedule_finish(self, voice: CallVoice, turn: TurnAudio, *, cancelled: bool) -> None:
        """tts.finished once the turn's last frame has played (unless a cancel reports it first)."""

        async def later() -> None:
            while True:  # a pause moves the end later; a paused turn has not finished
                await asyncio.sleep(max(0.0, (turn.playout_end_ns - time.monotonic_ns()) / 1e9))
                if not (voice.paused or voice.replay) and turn.playout_end_ns <= time.monotonic_ns():
                    break
                await voice.unpaused.wait()
                await asyncio.sleep(FRAME_NS / 1e9)
            if voice.written.get(turn.turn) is turn:
                self._finished(voice, turn, heard=turn.frames, cancelled=cancelled)

        asyncio.create_task(later(), name=f"finish-{turn.turn}")

    async def _synth(self, text: str, voice: CallVoice):
        """Backend chunks from one worker thread (which also closes the generator, so a cancel
        reaches the backend), resampled to 16 kHz. The deadline runs from when work starts."""
        key = self.backend.identity()
        making = self.inflight.get((key, text))
        if making is not None:  # speculated a moment ago and still being made: wait for it
            await asyncio.gather(asyncio.shield(making), return_exceptions=True)
        cached = self.cache.get(key, text)
        if cached is not None:  # said before, or prepared when the agent loaded: no synthesis
            yield cached
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = voice.stop
        timeout = self.config.tts.timeout_s
        made: list[np.ndarray] = []

        def work() -> None:
            started = time.monotonic()
            gen = self.backend.synthesize(text)
            try:
                for chunk in gen:
                    if stop.is_set():
                        break
                    if time.monotonic() - started > timeout:
                        raise BackendError(f"synthesis took longer than {timeout} s")
                    loop.call_soon_threadsafe(queue.put_nowait, resample(chunk, self.backend.sample_rate))
            except Exception as exc:
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                gen.close()
                loop.call_soon_threadsafe(queue.put_nowait, None)

        loop.run_in_executor(self.executor, work)
        while True:
            item = await queue.get()
            if item is None:
                if made and not stop.is_set():  # whole, not cut short by a cancel
                    self.cache.put(key, text, np.concatenate(made))
                return
            if isinstance(item, Exception):
                raise item
            made.append(item)
            if not stop.is_set():
                yield item

    async def _write_frames(self, voice: CallVoice, turn: TurnAudio, audio: ClauseAudio, pcm: np.ndarray, *, final: bool):
        """Write whole frames, keeping at most lead_frames ahead of playout; returns what is
        left over (less than a frame), or None when cancelled."""
        n = len(pcm) // FRAME_SAMPLES
        if final and len(pcm) % FRAME_SAMPLES:
            pcm = np.concatenate([pcm, np.zeros(FRAME_SAMPLES - len(pcm) % FRAME_SAMPLES, np.int16)])
            n += 1
        for i in range(n):
            while True:
                if voice.stop.is_set():
                    return None
                if voice.paused:
                    await voice.unpaused.wait()
                    continue
                ahead = voice.queued_frames(time.monotonic_ns())
                if ahead < voice.lead_frames and not voice.replay:
                    break
                await asyncio.sleep(max(1, ahead - voice.lead_frames + 1) * FRAME_NS / 1e9 * 0.5)
            self._put(voice, turn, audio, pcm[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES])
        return pcm[n * FRAME_SAMPLES:] if not final else np.zeros(0, np.int16)

    def _put(self, voice: CallVoice, turn: TurnAudio, audio: ClauseAudio, frame: np.ndarray) -> None:
        now = time.monotonic_ns()
        seq = voice.writer.write(frame, now)
        voice.recent.append((turn, audio, frame))
        voice.playout_end_ns = max(voice.playout_end_ns, now) + FRAME_NS
        turn.playout_end_ns = voice.playout_end_ns
        voice.last_seq = seq
        turn.frames += 1
        audio.written += 1
        self.counters["frames"] += 1
        if not turn.started:
            turn.started = True
            self.publish(TtsStarted(call_id=voice.call_id, turn=turn.turn, seq=seq,
                                    latency_ms=round((now - turn.first_say_ns) / 1e6, 1)))


def heard_text(clauses: list[ClauseAudio], heard_frames: int) -> str:
    """Whole clauses whose frames all played, then the played share of the cut clause's words
    (against the clause's whole synthesised length, not what was written before the cut)."""
    out = []
    for audio in clauses:
        total = max(audio.frames, audio.written)
        if audio.complete and heard_frames >= audio.first + total:
            out.append(audio.text)
            continue
        if heard_frames > audio.first and total:
            words = audio.text.split()
            share = int(len(words) * min(heard_frames - audio.first, total) / total)
            if share:
                out.append(" ".join(words[:share]))
        break
    return " ".join(out)
