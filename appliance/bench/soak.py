"""`appliancectl bench soak`: hours of calls, watching what grows.

The whole appliance (as `bench latency` runs it) is kept busy with ``calls`` softphones at a
time; each caller says a few random things with random gaps (short ones talk over the agent's
answer: barge-ins) and hangs up after a random while (often mid-sentence), then the next caller
rings. Every ``sample_s`` the bench reads each service's resident memory and open file
descriptors from /proc. Reported: calls made and failed (never answered, or no agent audio at
all), per service RSS after warm-up vs at the end and fd count range, and the turn latency p95
per window from the call records.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import threading
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..agent.records import CallRecords
from ..config import Config
from ..speech import wavfile
from .calldrive import Appliance, caller_voice, start_baresip
from .preflight import require_models
from .sandboxcfg import configured_sandbox
from .stats import summarize

PHRASES = ("What time are you open on Saturday?", "Where are you located?", "I'd like to book an appointment.",
           "Do you take new patients?", "Okay.", "Sorry, what was that?", "Next Tuesday at ten, please.",
           "My name is Maria Lopez.", "Actually, make that Wednesday.", "How much is a cleaning?",
           "Can I speak to someone at the front desk?")


@lru_cache(maxsize=None)
def _voice(text: str) -> np.ndarray:
    return caller_voice(text)


def caller_script(rnd: random.Random) -> tuple[np.ndarray, float, list[str]]:
    """One random caller at 8 kHz: 1-4 phrases, gaps of 0.5-6 s (a short one talks over the
    agent), and a random stay before hanging up; returns the audio, the call's length and what
    the caller says."""
    parts, said = [np.zeros(int(8000 * rnd.uniform(6.0, 9.0)), np.int16)], []  # the greeting first
    for _ in range(rnd.randint(1, 4)):
        said.append(rnd.choice(PHRASES))
        parts.append(_voice(said[-1]))
        parts.append(np.zeros(int(8000 * rnd.uniform(0.5, 6.0)), np.int16))
    length = sum(map(len, parts)) / 8000 + rnd.uniform(0.0, 4.0)
    parts.append(np.zeros(8000 * 6, np.int16))  # the microphone never runs dry before the hang-up
    return np.concatenate(parts), length, said


class Sampler(threading.Thread):
    """Each service's RSS (kB) and fd count every ``every`` s."""

    def __init__(self, pids: dict[str, int], every: float):
        super().__init__(daemon=True)
        self.pids, self.every = pids, every
        self.samples: list[dict] = []
        self.stop = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self.stop.is_set():
            row = {"t_s": round(time.monotonic() - t0, 1)}
            for name, pid in self.pids.items():
                row[name] = {"rss_kb": _rss_kb(pid), "fds": _fds(pid)}
            self.samples.append(row)
            self.stop.wait(self.every)


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _fds(pid: int) -> int:
    try:
        return len(list(Path(f"/proc/{pid}/fd").iterdir()))
    except OSError:
        return 0


def run(config: Config, *, minutes: float = 60.0, calls: int = 2, sample_s: float = 30.0, window_min: float = 10.0,
        warmup_min: float | None = None, seed: int = 1) -> dict:
    from ..agent.examples.clinic import BookingServerThread

    require_models(config)
    rnd = random.Random(seed)
    warmup_s = 60 * (warmup_min if warmup_min is not None else min(5.0, minutes / 4))
    sandbox = configured_sandbox(config, agent={"default": ""})
    (Path(sandbox["root"]) / "agents").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    made, failed, failures, phone_crashes = 0, 0, [], 0
    records_path = Path(sandbox["root"]) / "state" / "calls.db"
    app = None
    t0_ns = time.monotonic_ns()
    with BookingServerThread(str(work / "bookings.db")) as booking:
        try:
            app = Appliance(sandbox, booking.url)
            sampler = Sampler({n: s.proc.pid for n, s in app.services.items()}, sample_s)
            sampler.start()
            lanes: list[tuple | None] = [None] * calls
            end = time.monotonic() + 60 * minutes
            while time.monotonic() < end or any(lanes):
                for i, lane in enumerate(lanes):
                    if lane is not None and lane[0].poll() is None:
                        continue
                    if lane is not None:
                        ok, why = _judge(lane[1])
                        if not ok and lane[0].returncode < 0 and _transferred(records_path, lane[4]):
                            # The agent handed the call to a person (REFER): the softphone
                            # (baresip 1.x) dies of SIGBUS on some REFERs. Its fault, counted apart.
                            ok, phone_crashes = True, phone_crashes + 1
                        failed += not ok
                        if not ok and len(failures) < 20:
                            failures.append(f"{lane[1].name}: {why}; softphone exit {lane[0].returncode}; "
                                            f"said {lane[3]}")
                        if ok:
                            shutil.rmtree(lane[1], ignore_errors=True)  # a failed call's files stay for a look
                        lanes[i] = None
                    if time.monotonic() < end:
                        d = work / f"call{made}"
                        d.mkdir()
                        audio, length, said = caller_script(rnd)
                        wavfile.write(d / "caller.wav", audio, 8000)
                        number = f"+1555{made:07d}"
                        lanes[i] = (start_baresip(d, app.port, length, caller=number), d, length, said, number)
                        made += 1
                time.sleep(0.2)
            sampler.stop.set()
            sampler.join(5)
            time.sleep(2.0)  # agentd closes the last calls' records
            alive = {n: s.proc.poll() is None for n, s in app.services.items()}
            with CallRecords(Path(sandbox["root"]) / "state" / "calls.db", readonly=True) as records:
                windows = _latency_windows(records, t0_ns, window_min)
                outcomes = _outcomes(records)
        finally:
            if app is not None:
                app.stop()
            shutil.rmtree(sandbox["root"], ignore_errors=True)
            shutil.rmtree(sandbox["shm_dir"], ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)
    return {"bench": "soak", "minutes": minutes, "calls_at_once": calls, "calls": made, "failed_calls": failed,
            "softphone_crashes_after_transfer": phone_crashes,
            "failures": failures, "alive": alive, "outcomes": outcomes,
            "memory": _growth(sampler.samples, warmup_s), "samples": sampler.samples,
            "turn_total_ms_by_window": windows}


def _judge(d: Path) -> tuple[bool, str]:
    """A call failed if it was never answered or the caller heard no agent at all."""
    dumps = list(d.glob("dump-*-dec.wav"))
    if not dumps:
        return False, "no call (never answered)"
    try:
        pcm, rate = wavfile.read(dumps[0])
    except wavfile.WavError as exc:
        return False, f"no audio recorded ({exc})"
    frame = rate // 50
    loud = sum(1 for i in range(0, len(pcm) - frame, frame)
               if np.sqrt(np.mean(pcm[i:i + frame].astype(np.float64) ** 2)) > 300)
    return (loud >= 10, "" if loud >= 10 else "dead air: no agent audio heard")


def _transferred(records_path: Path, caller: str) -> bool:
    """Whether the appliance handed this caller's call to a person (the record has a transfer)."""
    try:
        with CallRecords(records_path, readonly=True) as records:
            return any(records.get_call(c.id).transfers for c in records.list_calls(limit=100_000)
                       if c.caller == caller)
    except Exception:
        return False


def _growth(samples: list[dict], warmup_s: float) -> dict:
    after = [s for s in samples if s["t_s"] >= warmup_s] or samples[-1:]
    out = {}
    for name in (k for k in samples[0] if k != "t_s") if samples else ():
        first, last = after[0][name], after[-1][name]
        fds = [s[name]["fds"] for s in after]
        out[name] = {"rss_kb_after_warmup": first["rss_kb"], "rss_kb_end": last["rss_kb"],
                     "rss_growth_pct": round(100 * (last["rss_kb"] - first["rss_kb"]) / max(1, first["rss_kb"]), 1),
                     "rss_kb_max": max(s[name]["rss_kb"] for s in samples), "fds_min": min(fds), "fds_max": max(fds)}
    return out


def _latency_windows(records: CallRecords, t0_ns: int, window_min: float) -> list[dict]:
    by_window: dict[int, list[float]] = {}
    for call in records.list_calls(limit=100_000):
        for turn in records.conversation(call.id):
            total = (turn.latency or {}).get("total")
            if turn.role == "agent" and total and turn.started_ns:
                w = int((turn.started_ns - t0_ns) / 1e9 // (60 * window_min))
                by_window.setdefault(max(0, w), []).append(total)
    return [{"from_min": w * window_min, **summarize(v)} for w, v in sorted(by_window.items())]


def _outcomes(records: CallRecords) -> dict[str, int]:
    out: dict[str, int] = {}
    for call in records.list_calls(limit=100_000):
        out[call.outcome] = out.get(call.outcome, 0) + 1
    return out


def render(r: dict) -> str:
    lines = [f"{r['calls']} calls in {r['minutes']:g} min ({r['calls_at_once']} at a time): {r['failed_calls']} failed; "
             f"records: {r['outcomes']}; softphone crashes after a transfer (baresip, not counted as failed): "
             f"{r['softphone_crashes_after_transfer']}"]
    lines += [f"  failed: {f}" for f in r["failures"]]
    for name, m in r["memory"].items():
        lines.append(f"  {name:<7} RSS {m['rss_kb_after_warmup'] / 1024:.0f} -> {m['rss_kb_end'] / 1024:.0f} MiB "
                     f"({m['rss_growth_pct']:+.1f} % after warm-up), fds {m['fds_min']}-{m['fds_max']}"
                     + ("" if r["alive"].get(name) else "  DIED"))
    for w in r["turn_total_ms_by_window"]:
        lines.append(f"  from {w['from_min']:g} min: {w['n']} turns, p50 {w['p50']:.0f} / p95 {w['p95']:.0f} ms")
    return "\n".join(lines)
