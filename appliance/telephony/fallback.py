"""sipd's guard against a dead AI pipeline: no caller waits in silence.

sipd asks asrd, ttsd and agentd for their status every second. When one has not answered for
``sip.pipeline_timeout_s``, every answered call (and each call answered while it stays down)
is rescued by sipd alone: transferred to ``sip.fallback_target`` if set, else — or if that
transfer fails — it hears ``sip.fallback_message`` (a 16 kHz mono WAV, or a built-in spoken
sentence rendered once by espeak-ng) and is hung up. Nothing here needs a model.
"""

from __future__ import annotations

import asyncio
import io
import logging
import shutil
import subprocess
import time
import wave

import numpy as np

from ..audio.resample import resample
from ..bus import BusTimeout, ControlClient, RemoteError, endpoints
from ..bus.messages import StatusRequest

log = logging.getLogger("appliance.sipd")

PIPELINE = ("asrd", "ttsd", "agentd")
DEFAULT_MESSAGE = "Sorry, our assistant is not available right now. Please call again later. Goodbye."


def load_message(path: str, sentence: str = DEFAULT_MESSAGE) -> np.ndarray:
    """A message sipd plays on its own, as 16 kHz int16: the admin's WAV, else ``sentence`` by
    espeak-ng, else three beeps."""
    if path:
        with wave.open(path) as w:
            rate, pcm = w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), np.int16)
            if w.getnchannels() != 1 or w.getsampwidth() != 2:
                raise ValueError(f"{path}: must be mono 16-bit PCM")
        return resample(pcm, rate)
    espeak = shutil.which("espeak-ng")
    if espeak:
        try:
            out = subprocess.run([espeak, "-v", "en-us", "--stdout", sentence], capture_output=True,
                                 timeout=10, check=True).stdout
            with wave.open(io.BytesIO(out)) as w:
                return resample(np.frombuffer(w.readframes(w.getnframes()), np.int16), w.getframerate())
        except (OSError, subprocess.SubprocessError, wave.Error) as exc:
            log.warning("espeak-ng could not render %r (%s): beeps instead", sentence, exc)
    t = np.arange(int(0.3 * 16000)) / 16000
    beep = (0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    gap = np.zeros(4800, np.int16)
    return np.concatenate([beep, gap, beep, gap, beep])


class PipelineWatch:
    def __init__(self, endpoint, runtime):
        self.ep = endpoint
        self.cfg = endpoint.config.sip
        self.services = [s for s in PIPELINE if s in endpoint.config.services.enabled]
        run = endpoint.config.paths.run_dir
        self.clients = {s: ControlClient(runtime.ctx, endpoints.control(run, s)) for s in self.services}
        self.down_since: dict[str, float] = {}
        self.rescued: set[str] = set()
        self.message = load_message(self.cfg.fallback_message)
        self.counters = {"rescued_transfer": 0, "rescued_message": 0}

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    @property
    def down(self) -> list[str]:
        now = time.monotonic()
        return [s for s, t in self.down_since.items() if now - t >= self.cfg.pipeline_timeout_s]

    async def run(self) -> None:
        while True:
            await asyncio.gather(*(self._probe(s) for s in self.services))
            down = self.down
            if down:
                for call in list(self.ep.calls.values()):
                    if call.state == "answered" and call.id not in self.rescued:
                        self.rescue(call, down)
            await asyncio.sleep(1.0)

    async def _probe(self, service: str) -> None:
        try:
            reply = await self.clients[service].request(StatusRequest(), timeout=0.5)
            ok = getattr(reply, "state", "") == "ready"
        except (BusTimeout, RemoteError):
            reply, ok = None, False
        if service == "agentd":  # the turn latency admission weighs (no turns in the last minute: None)
            p95 = getattr(reply, "details", {}).get("total_p95_ms") if ok else None
            self.ep.admission.report_turn_p95(float(p95) if isinstance(p95, (int, float)) else None)
        if ok:
            if self.down_since.pop(service, None) is not None:
                log.info("%s is back", service)
        elif service not in self.down_since:
            self.down_since[service] = time.monotonic()
            log.warning("%s does not answer", service)

    def rescue(self, call, down: list[str]) -> None:
        self.rescued.add(call.id)
        reason = f"AI pipeline down ({', '.join(down)})"
        if self.cfg.fallback_target:
            call.log(logging.WARNING, "%s: transferring to %s", reason, self.cfg.fallback_target)
            call.on_transfer_failed = lambda status, c=call: self._message(c, f"fallback transfer failed ({status})")
            try:
                call.transfer(self.cfg.fallback_target, headers={"X-Appliance-Fallback": reason})
                self.counters["rescued_transfer"] += 1
                return
            except (RuntimeError, ValueError) as exc:
                call.log(logging.WARNING, "fallback transfer impossible: %s", exc)
        self._message(call, reason)

    def _message(self, call, reason: str) -> None:
        call.log(logging.WARNING, "%s: playing the fallback message, then hanging up", reason)
        self.counters["rescued_message"] += 1
        call.media.announce(self.message, done=lambda: call.hangup("fallback-message"))
