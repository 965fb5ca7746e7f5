"""asrd's work: every live call's in-ring → VAD/endpointing → recogniser → bus events.

One asyncio task reads all rings every 20 ms (VAD is microseconds a frame); recognition runs
off the loop. Fairness: each call has its own bounded queue of finished utterances and the
worker takes them round-robin, so a call that talks a lot waits for its own backlog, not
others'; past ``asr.queue_per_call`` the oldest is dropped and reported (asr.dropped).
Utterances of different calls waiting together (callers who stopped at the same moment) are
decoded as one batch of up to ``asr.batch_max``: the fourth caller no longer waits for three
decodes one after the other.

Speculative decoding: when the caller has been quiet for ``asr.early_decode_ms`` the
utterance so far is decoded at once; if the endpoint then comes with no new speech, that
result is the final, so recognition time hides inside the endpoint's silence. A speculation
done while the turn is still open (the turn model waits on a pause, or the decoder is fast) is
published as asr.early, so agentd can have the answer synthesised before the turn ends. A streaming
backend (Riva) instead gets audio as it arrives and gives partials.

Noise is not decoded: before any decode (and before a streaming final is published) Silero
scores how speech-like the utterance is (speechcheck.py, ``asr.min_speech_share``); a door
slam or hum the endpointer's VAD let through is dropped as ``no speech (not speech-like ...)``.

Nothing here outlives the ring: after a restart calls are re-attached from the live rings.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..bus import Subscriber, endpoints
from ..bus.messages import (AsrDropped, AsrEarly, AsrFinal, AsrPartial, CallEnded, CallStarted, AsrExpect, Ok,
                            SpeechStarted, SpeechStopped)
from ..config import Config
from ..audio import FRAME_NS
from ..ipc import RingError, RingReader, inspect
from ..runtime.logs import call_context
from . import textnorm
from .asr.base import AsrBackend, AsrStream, Hint, Transcript
from .errors import BackendError
from .echo import EchoGate
from .speechcheck import SpeechCheck
from .vad import Early, Ended, Endpointer, Started

log = logging.getLogger("appliance.asrd")

VALUE_SLOTS = ("time", "date", "number", "phone", "name")


@dataclass
class Job:
    call_id: str
    ended: Ended
    stream: AsrStream | None = None  # streaming backends: the utterance's open stream


@dataclass
class Speculation:
    utterance: int
    voiced_frames: int
    future: asyncio.Future


class CallAudio:
    """One call: its ring reader, endpointer, queue and (streaming backends) open stream."""

    def __init__(self, call_id: str, reader: RingReader, endpointer: Endpointer, queue_len: int,
                 played: RingReader | None = None):
        self.call_id = call_id
        self.reader = reader
        self.played = played  # the out ring, for the endpointer's echo gate
        self.endpointer = endpointer
        self.queue: deque[Job] = deque()
        self.queue_len = queue_len
        self.speculation: Speculation | None = None
        self.stream: AsrStream | None = None
        self.hint: Hint | None = None  # what agentd expects this caller to say next (asr.expect)
        self.stream_utterance = 0
        self.fed = 0  # frames of the current utterance already fed to the stream
        self.chain: asyncio.Task | None = None  # streaming backends: this call's finals, in order
        self.ended = False


class Recognition:
    """The asrd component (runtime.service.Component)."""

    def __init__(self, config: Config, backend: AsrBackend | None = None):
        self.config = config
        self.backend = backend
        self.calls: dict[str, CallAudio] = {}
        self.runtime = None
        self.sub: Subscriber | None = None
        self.tasks: list[asyncio.Task] = []
        self.work = asyncio.Event()
        self.rr: deque[str] = deque()  # round-robin order of calls with queued jobs
        self.busy = 0  # decodes in flight (finals and speculations)
        # One decode at a time for a local model (it already uses every core); streams to a
        # server are I/O-bound and each needs its own thread while it waits for the final.
        self.decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asr")
        self.streams = ThreadPoolExecutor(max_workers=16, thread_name_prefix="asr-stream")
        # The turn model (~50 ms a question) runs here, never in the frame loop: one call's pause
        # must not hold up every other call's audio.
        self.turns = ThreadPoolExecutor(max_workers=1, thread_name_prefix="turn")
        self.counters = {"utterances": 0, "finals": 0, "dropped": 0, "too_short": 0, "no_speech": 0,
                         "speculative_hits": 0, "speculative_misses": 0, "frames": 0, "ring_lost": 0, "errors": 0,
                         "echo_frames": 0, "batches": 0, "batched_utterances": 0}
        self.timeouts_in_a_row = 0
        self.vads = None  # backends.VadFactory, made at start: loads the onnx/tensorrt model once
        self.turn_model = None  # turnmodel.TurnModel when vad.endpoint = "turn-model" (made at start)
        self.speech_check: SpeechCheck | None = None  # made at start unless asr.min_speech_share = 0

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self, runtime) -> None:
        from .backends import make_asr, make_turn_model, make_vad_factory

        self.runtime = runtime
        loop = asyncio.get_running_loop()
        if self.backend is None:
            self.backend = await loop.run_in_executor(None, make_asr, self.config)
        self.vads = await loop.run_in_executor(None, make_vad_factory, self.config)
        self.turn_model = await loop.run_in_executor(None, make_turn_model, self.config)
        if self.config.asr.min_speech_share > 0:
            self.speech_check = SpeechCheck(self.config.asr.min_speech_share)
        runtime.control.on(AsrExpect, self._expect)
        log.info("recogniser %s ready (VAD %s, turns end on %s)", self.backend.name, self.config.vad.backend,
                 self.config.vad.endpoint)
        self.sub = Subscriber(runtime.ctx, [endpoints.events(self.config.paths.run_dir, "sipd")], ["call."])
        self._reattach()
        self.tasks = [runtime.watch(asyncio.create_task(self._events(), name="events")),
                      runtime.watch(asyncio.create_task(self._frames(), name="frames")),
                      runtime.watch(asyncio.create_task(self._worker(), name="worker"))]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.sub is not None:
            self.sub.close()
        for call in list(self.calls.values()):
            self._detach(call)
        self.decoder.shutdown(wait=False, cancel_futures=True)
        self.streams.shutdown(wait=False, cancel_futures=True)
        self.turns.shutdown(wait=False, cancel_futures=True)
        if self.backend is not None:
            self.backend.close()
        if self.vads is not None:
            self.vads.close()

    def status(self) -> dict:
        return {"backend": self.backend.name if self.backend else "", "vad": self.config.vad.backend,
                "calls": len(self.calls),
                "queued": sum(len(c.queue) for c in self.calls.values()), **self.counters}

    def publish(self, msg) -> None:
        if self.runtime is not None and self.runtime.publisher is not None:
            self.runtime.publisher.publish(msg)

    # -- calls ----------------------------------------------------------------------------------
    def _reattach(self) -> None:
        """After a restart: every in-ring with a live writer is a call in progress."""
        for info in inspect(self.config.paths.shm_dir):
            if info.direction == "in" and info.writer_alive and not info.closed:
                self.attach(info.call_id)

    def attach(self, call_id: str) -> None:
        if call_id in self.calls:
            return
        try:
            reader = RingReader(self.config.paths.shm_dir, call_id, "in", from_now=True)
        except (RingError, OSError) as exc:
            with call_context(call_id):
                log.warning("cannot read the call's audio ring: %s", exc)
            return
        echo, played = None, None
        if self.config.vad.echo_threshold > 0:
            try:  # what the agent plays to the caller, to recognise it when the line returns it
                played = RingReader(self.config.paths.shm_dir, call_id, "out", from_now=True)
                echo = EchoGate(self.config.vad.echo_threshold)
            except (RingError, OSError) as exc:
                with call_context(call_id):
                    log.warning("no echo check (cannot read the out ring): %s", exc)
        endpointer = Endpointer(self.config.vad, self.vads(), echo=echo,
                                early_decode_ms=0 if self.backend.streaming else self.config.asr.early_decode_ms,
                                turn=self._ask_turn_model if self.turn_model is not None else None)
        self.calls[call_id] = CallAudio(call_id, reader, endpointer, self.config.asr.queue_per_call, played)
        with call_context(call_id):
            log.info("listening")

    def _ask_turn_model(self, audio: np.ndarray):
        return self.turns.submit(self.turn_model.complete, audio)

    def _detach(self, call: CallAudio) -> None:
        if self.calls.get(call.call_id) is not call:
            return
        self.calls.pop(call.call_id, None)
        self.counters["ring_lost"] += call.reader.lost
        if call.endpointer.echo is not None:
            self.counters["echo_frames"] += call.endpointer.echo.echo_frames
        if call.stream is not None:
            call.stream.abort()
            call.stream = None
        call.reader.close()
        if call.played is not None:
            call.played.close()

    def end_call(self, call_id: str) -> None:
        call = self.calls.get(call_id)
        if call is None or call.ended:
            return
        self._drain(call)
        for item in call.endpointer.close():
            self._handle(call, item)
        call.ended = True
        if not call.queue and (call.chain is None or call.chain.done()):
            self._detach(call)

    async def _events(self) -> None:
        async for msg in self.sub:
            if isinstance(msg, CallStarted):
                self.attach(msg.call_id)
            elif isinstance(msg, CallEnded):
                self.end_call(msg.call_id)
            elif msg.TYPE == "call.answered" and msg.call_id not in self.calls:
                self.attach(msg.call_id)

    # -- audio → endpointing --------------------------------------------------------------------
    async def _frames(self) -> None:
        interval = FRAME_NS / 1e9
        rescan = 0
        while True:
            for call in list(self.calls.values()):
                if call.ended:
                    continue
                self._drain(call)
                # The stream ended (call over) or its writer died (sipd crashed): the event may be lost.
                if rescan == 0 and call.reader.writer_state() in ("closed", "dead"):
                    self.end_call(call.call_id)
            rescan = (rescan + 1) % 50
            if rescan == 0:
                self._reattach()  # a call.started lost to a late-joining subscriber
            await asyncio.sleep(interval)

    def _drain(self, call: CallAudio) -> None:
        with call_context(call.call_id):
            if call.played is not None:
                for frame in call.played.frames():
                    call.endpointer.echo.played(frame.capture_ns, frame.pcm)
            for frame in call.reader.frames():
                self.counters["frames"] += 1
                for item in call.endpointer.push(frame.seq, frame.capture_ns, frame.pcm):
                    self._handle(call, item)
                if call.stream is not None and call.endpointer.in_speech:
                    frames = call.endpointer.frames
                    for pcm in frames[call.fed:]:
                        call.stream.feed(pcm)
                    call.fed = len(frames)

    def _handle(self, call: CallAudio, item) -> None:
        cid = call.call_id
        if isinstance(item, Started):
            self.counters["utterances"] += 1
            self.publish(SpeechStarted(call_id=cid, utterance=item.utterance, seq=item.seq, at_ns=item.at_ns))
            if self.backend.streaming:
                self._open_stream(call, item.utterance)
        elif isinstance(item, Early):
            self._speculate(call, item)
        elif isinstance(item, Ended):
            self.publish(SpeechStopped(call_id=cid, utterance=item.utterance, seq=item.seq, end_ns=item.end_ns,
                                       reason=item.reason))
            if item.reason == "too-short":
                self.counters["too_short"] += 1
                if call.stream is not None:
                    call.stream.abort()
                    call.stream = None
                return
            job = Job(cid, item)
            if call.stream is not None and call.stream_utterance == item.utterance:
                job.stream, call.stream = call.stream, None  # finished with its own utterance
            if self.backend.streaming:
                # Each call's finals in order, calls in parallel: one slow stream delays no one else.
                call.chain = asyncio.create_task(self._after(call.chain, call, job))
                return
            if len(call.queue) >= call.queue_len:
                old = call.queue.popleft()
                self._drop(cid, old.ended.utterance, "queue full")
            call.queue.append(job)
            if cid not in self.rr:
                self.rr.append(cid)
            self.work.set()

    def _open_stream(self, call: CallAudio, utterance: int) -> None:
        loop = asyncio.get_running_loop()
        cid = call.call_id

        def partial(text: str, stable: bool) -> None:  # called from the stream's thread
            loop.call_soon_threadsafe(self.publish, AsrPartial(call_id=cid, utterance=utterance, text=text,
                                                               stable=stable))

        try:
            call.stream = self.backend.open_stream(partial)
            call.stream_utterance = utterance
            call.fed = 0  # _drain feeds the preroll and everything after
        except BackendError as exc:
            log.warning("cannot open a recognition stream: %s", exc)
            call.stream = None

    async def _after(self, previous: asyncio.Task | None, call: CallAudio, job: Job) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        try:
            await self._recognise(call, job)
        finally:
            if call.ended and call.chain is asyncio.current_task():
                self._detach(call)

    def _speculate(self, call: CallAudio, early: Early) -> bool:
        """Decode the utterance so far at a pause. Only with a free decoder: a guess must never
        delay any call's final (a confirmed end of turn always goes first)."""
        if any(c.queue for c in self.calls.values()) or self.busy:
            return False
        if call.speculation is not None:
            call.speculation.future.cancel()  # an older guess not yet started is void
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self.decoder, self._transcribe, early.audio, call.hint)
        call.speculation = Speculation(early.utterance, early.voiced_frames, fut)
        self.busy += 1
        fut.add_done_callback(self._speculation_done)
        fut.add_done_callback(lambda f, c=call, e=early: self._early(c, e, f))
        return True

    def _speculation_done(self, _fut) -> None:
        self.busy -= 1
        if self.busy or any(c.queue for c in self.calls.values()):
            return
        # The decoder is free: a call paused now whose speculation is stale (the caller went on
        # after it started) or was skipped (the decoder was busy at its pause) gets one.
        for call in self.calls.values():
            ep, spec = call.endpointer, call.speculation
            if call.ended or not ep.in_speech or not ep.early_frames or ep.silence_run < ep.early_frames \
                    or ep.voiced < ep.min_voiced:
                continue
            if spec is not None and spec.utterance == ep.utterance and spec.voiced_frames == ep.voiced:
                continue  # still valid
            if self._speculate(call, Early(ep.utterance, np.concatenate(ep.frames), ep.voiced)):
                return

    def _early(self, call: CallAudio, early: Early, fut) -> None:
        """A speculation that finished while its utterance is still open, with no speech since."""
        if fut.cancelled() or fut.exception() is not None or call.ended:
            return
        ep = call.endpointer
        if not (ep.in_speech and ep.utterance == early.utterance and ep.voiced == early.voiced_frames):
            return  # the turn already ended (the final follows) or the caller went on (stale)
        text = fut.result().text
        if text:
            self.publish(AsrEarly(call_id=call.call_id, utterance=early.utterance, text=text,
                                  voiced_frames=early.voiced_frames))

    def _drop(self, call_id: str, utterance: int, reason: str) -> None:
        self.counters["dropped"] += 1
        with call_context(call_id):
            log.warning("utterance %d dropped: %s", utterance, reason)
        self.publish(AsrDropped(call_id=call_id, utterance=utterance, reason=reason))

    def _expect(self, msg: AsrExpect) -> Ok:
        """agentd says what the caller will answer: prime the recogniser with it and, for a value
        (a time, a date, a number), ask for the other readings too."""
        call = self.calls.get(msg.call_id)
        if call is None:
            raise LookupError(f"no call {msg.call_id!r}")
        nbest = self.config.asr.nbest if msg.slot in VALUE_SLOTS else 1
        call.hint = Hint(prompt=msg.prompt, nbest=nbest) if (msg.prompt or nbest > 1) else None
        return Ok(call_id=msg.call_id)

    # -- recognition ----------------------------------------------------------------------------
    def _transcribe(self, audio: np.ndarray, hint: Hint | None = None) -> Transcript:
        """Finals and speculative decodes (the decoder thread): noise is dropped undecoded."""
        return self._transcribe_batch([audio], [hint])[0]

    def _transcribe_batch(self, audios: list[np.ndarray], hints: list[Hint | None]) -> list[Transcript]:
        """Utterances that ended together, in one decode; each judged as it would be alone."""
        check = self.speech_check
        judged = [check.check(a) if check is not None else None for a in audios]
        speech = [i for i, s in enumerate(judged) if s is None or check.is_speech(s)]
        out = [self._not_speech(s) if s is not None else None for s in judged]
        if speech:
            decoded = self.backend.transcribe_batch([audios[i] for i in speech], self.config.asr.timeout_s,
                                                    [hints[i] for i in speech])
            for i, transcript in zip(speech, decoded):
                out[i] = transcript if judged[i] is None else self._judged(transcript, audios[i], judged[i])
        return out

    def _finish_stream(self, stream: AsrStream, audio: np.ndarray, timeout: float) -> Transcript:
        """A streaming backend's final (a stream thread), held to the same check."""
        check = self.speech_check
        if check is None:
            return stream.finish(timeout)
        speechy = check.check(audio)
        if not check.is_speech(speechy):
            stream.abort()
            return self._not_speech(speechy)
        return self._judged(stream.finish(timeout), audio, speechy)

    @staticmethod
    def _not_speech(speechy) -> Transcript:
        return Transcript("", meta={"reason": speechy.describe(), "speech_share": round(speechy.share, 3)})

    def _judged(self, transcript: Transcript, audio: np.ndarray, speechy) -> Transcript:
        if transcript.text and self.speech_check.invented_in(transcript.text, audio, speechy):
            return Transcript("", meta={**transcript.meta, "rejected": transcript.text,
                                        "reason": f"{transcript.text!r} is a stock Whisper phrase and the audio is "
                                                  f"only {100 * speechy.share:.0f}% speech-like"})
        return transcript

    def _next_jobs(self, most: int) -> list[tuple[CallAudio, Job]]:
        """Up to ``most`` waiting utterances, at most one per call, in round-robin order."""
        picked: list[tuple[CallAudio, Job]] = []
        later: list[str] = []
        while self.rr and len(picked) < most:
            cid = self.rr.popleft()
            call = self.calls.get(cid)
            if call is None or not call.queue:
                continue
            picked.append((call, call.queue.popleft()))
            if call.queue:
                later.append(cid)
        self.rr.extend(later)
        return picked

    @staticmethod
    def _speculated(call: CallAudio, job: Job) -> bool:
        spec = call.speculation
        return spec is not None and spec.utterance == job.ended.utterance \
            and spec.voiced_frames == job.ended.voiced_frames

    def _batch(self, picked: list[tuple[CallAudio, Job]]) -> dict[int, asyncio.Future]:
        """One decode for the picked utterances that need one (no speculation to reuse): each
        job gets its own future for its own transcript."""
        todo = [(c, j) for c, j in picked if j.stream is None and not self._speculated(c, j)]
        if len(todo) < 2:
            return {}
        self.counters["batches"] += 1
        self.counters["batched_utterances"] += len(todo)
        loop = asyncio.get_running_loop()
        whole = loop.run_in_executor(self.decoder, self._transcribe_batch, [j.ended.audio for _, j in todo],
                                     [c.hint for c, _ in todo])

        async def item(k: int) -> Transcript:
            return (await asyncio.shield(whole))[k]

        return {id(j): asyncio.ensure_future(item(k)) for k, (_, j) in enumerate(todo)}

    async def _worker(self) -> None:
        while True:
            picked = self._next_jobs(self.config.asr.batch_max)
            if not picked:
                self.work.clear()
                await self.work.wait()
                continue
            self.busy += 1
            try:
                batch = self._batch(picked)
                results = await asyncio.gather(*(self._recognise(call, job, batch.get(id(job)))
                                                 for call, job in picked), return_exceptions=True)
                for result in results:  # never let one utterance stop recognition for every call
                    if isinstance(result, Exception):
                        log.error("recognition failed", exc_info=result)
            finally:
                self.busy -= 1
            for call, _ in picked:
                if call.ended and not call.queue and call.call_id in self.calls:
                    self._detach(call)

    async def _recognise(self, call: CallAudio, job: Job, batched: asyncio.Future | None = None) -> None:
        ended, cid = job.ended, call.call_id
        loop = asyncio.get_running_loop()
        timeout = self.config.asr.timeout_s
        spec = call.speculation
        try:
            if batched is not None:
                fut = batched
            elif job.stream is not None:
                fut = loop.run_in_executor(self.streams, self._finish_stream, job.stream, ended.audio, timeout)
            elif self._speculated(call, job):
                self.counters["speculative_hits"] += 1
                fut = spec.future
            else:
                if spec is not None and spec.utterance == ended.utterance:
                    self.counters["speculative_misses"] += 1
                fut = loop.run_in_executor(self.decoder, self._transcribe, ended.audio, call.hint)
            if spec is not None and spec.utterance <= ended.utterance:
                call.speculation = None
            transcript = await asyncio.wait_for(asyncio.shield(fut), timeout + 1.0)
            self.timeouts_in_a_row = 0
        except asyncio.TimeoutError:
            self.counters["errors"] += 1
            self._drop(cid, ended.utterance, "recognition failed: timeout")
            self.timeouts_in_a_row += 1
            if self.timeouts_in_a_row >= 3 and not self.backend.streaming and self.runtime is not None:
                # The one decoder thread is wedged: every later utterance would time out too.
                self.runtime.fail("the recogniser timed out 3 times in a row: restarting")
            return
        except Exception as exc:  # BackendError, or a model bug: a drop the agent hears about
            self.counters["errors"] += 1
            self._drop(cid, ended.utterance, f"recognition failed: {exc}")
            return
        if not transcript.text:
            self.counters["no_speech"] += 1
            self.publish(AsrDropped(call_id=cid, utterance=ended.utterance,
                                    reason=f"no speech ({transcript.meta.get('reason', 'empty')})"))
            return
        self.counters["finals"] += 1
        start = ended.audio_start_ns
        words = [{"word": w.text, "start_ns": start + int(w.start * 1e9), "end_ns": start + int(w.end * 1e9),
                  "conf": round(w.conf, 3)} for w in transcript.words]
        now = time.monotonic_ns()
        self.publish(AsrFinal(
            call_id=cid, utterance=ended.utterance, text=transcript.text, digits=textnorm.to_digits(transcript.text),
            confidence=round(transcript.confidence, 3), start_ns=start, end_ns=ended.end_ns,
            latency_ms=round((now - ended.end_ns) / 1e6, 1), words=words, truncated=ended.reason == "max-length",
            decode_ms=round(1000 * float(transcript.meta.get("decode_s", 0.0)), 1), ts_ns=now,
            alternatives=list(transcript.alternatives),
        ))
        with call_context(cid):
            log.info("final %d (%.0f ms after speech): %s", ended.utterance, (now - ended.end_ns) / 1e6,
                     transcript.text)
