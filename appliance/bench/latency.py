"""`appliancectl bench latency`: voice-to-voice turn latency as the caller hears it.

N baresip callers ring the whole appliance at once (sipd, asrd, ttsd, agentd on the config's
backends, the example receptionist and its booking server), each playing M caller turns from
a WAV and recording what comes back. Latency is measured *outside* the appliance, on that
recording: from the end of a caller turn (known from the WAV) to the first 20 ms of agent
audio above the noise floor after it. The appliance's own per-stage stamps (endpoint, ASR,
decide, TTS first audio; from the call records) give the breakdown. A turn with no answer
within ``late_s`` counts as failed.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ..agent.records import CallRecords
from ..config import Config
from ..speech import wavfile
from .calldrive import Appliance, caller_wav, start_baresip
from .preflight import require_models
from .sandboxcfg import configured_sandbox
from .stats import summarize, table

# Questions the example agent answers from its knowledge: each turn is one question and one answer.
TURNS = ["What time are you open on Saturday?", "Where are you located?", "Is there parking nearby?",
         "Do you take my insurance?", "What should I do in an emergency?"]
GAP_S = 9.0  # silence before each caller turn: room for the previous answer to play out
NOISE_FLOOR_DBFS = -45.0


def agent_onsets(pcm: np.ndarray, rate: int, turn_ends: list[float], late_s: float) -> list[float | None]:
    """For each caller turn end: seconds until the recording first rises above the floor."""
    block = rate // 50
    n = len(pcm) // block
    rms = np.sqrt(np.mean(pcm[: n * block].astype(np.float64).reshape(n, block) ** 2, axis=1))
    loud = 20 * np.log10(np.maximum(rms, 1e-9) / 32768) > NOISE_FLOOR_DBFS
    out: list[float | None] = []
    for end in turn_ends:
        first = int(end * 50)
        hits = np.flatnonzero(loud[first:first + int(late_s * 50)])
        out.append(hits[0] / 50 if len(hits) else None)
    return out


def run(config: Config, *, calls: int = 1, turns: int = 3, late_s: float = 4.0) -> dict:
    """The whole appliance in a sandbox, with ``config``'s models and backends (CPU or GPU)."""
    from ..agent.examples.clinic import BookingServerThread

    require_models(config)
    sandbox = configured_sandbox(config, agent={"default": ""})  # the sandbox has the example agent only
    (Path(sandbox["root"]) / "agents").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    script = [(GAP_S if i else 10.0, TURNS[i % len(TURNS)]) for i in range(turns)]
    latencies, failed, stages = [], 0, {}
    app, phones = None, []
    with BookingServerThread(str(work / "bookings.db")) as booking:
        try:
            app = Appliance(sandbox, booking.url)
            plans = []
            for c in range(calls):
                d = work / f"caller{c}"
                _, ends, length = caller_wav(d, script, GAP_S)
                plans.append((d, ends))
                phones.append(start_baresip(d, app.port, length))
                time.sleep(0.2)
            for phone in phones:
                phone.wait(length + 60)
            time.sleep(2.0)
            for d, ends in plans:
                dumps = list(d.glob("dump-*-dec.wav"))
                if not dumps:
                    failed += len(ends)
                    continue
                pcm, rate = wavfile.read(dumps[0])
                for onset in agent_onsets(pcm, rate, ends, late_s):
                    if onset is None:
                        failed += 1
                    else:
                        latencies.append(onset * 1000)
            records = CallRecords(Path(sandbox["root"]) / "state" / "calls.db", readonly=True)
            for call in records.list_calls(limit=calls):
                for turn in records.get_call(call.id).turns:
                    if turn.role == "agent" and turn.latency and turn.latency.get("total"):
                        for k, v in turn.latency.items():
                            stages.setdefault(k, []).append(v)
        finally:
            for phone in phones:
                if phone.poll() is None:
                    phone.kill()
                    phone.wait()
            if app is not None:
                app.stop()
            shutil.rmtree(sandbox["root"], ignore_errors=True)
            shutil.rmtree(sandbox["shm_dir"], ignore_errors=True)
    return {"bench": "latency", "calls": calls, "turns": turns, "late_s": late_s,
            "voice_to_voice_ms": summarize(latencies), "failed_turns": failed,
            "stages_ms": {k: summarize(v) for k, v in stages.items()}, "recordings": str(work)}


def render(r: dict) -> str:
    v = r["voice_to_voice_ms"]
    rows = [("calls x turns", f'{r["calls"]} x {r["turns"]} (baresip, G.711, real time)'),
            ("voice to voice (on the caller's line)", f'p50 {v["p50"]:.0f} ms  p95 {v["p95"]:.0f} ms  '
                                                      f'max {v["max"]:.0f} ms  (n={v["n"]})'),
            ("failed turns (no answer within late_s)", str(r["failed_turns"]))]
    for stage in ("endpoint", "asr", "decide", "tts_first_audio", "total"):
        s = r["stages_ms"].get(stage)
        if s:
            rows.append((f"  appliance stage: {stage}", f'p50 {s["p50"]:.0f} ms  p95 {s["p95"]:.0f} ms'))
    rows.append(("recordings", r["recordings"]))
    return table(rows)
