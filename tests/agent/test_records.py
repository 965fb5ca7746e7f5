"""Call records: real SQLite files in temp dirs, a real second process reading while one writes,
and `appliancectl calls` / `appliancectl call show` run as the admin runs them."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from appliance.agent import records as records_mod
from appliance.agent.records import CallRecords, RecordsError, records_path

ROOT = Path(__file__).resolve().parents[2]
CTL = Path(sys.executable).parent / "appliancectl"
S = 1_000_000_000  # started_ns of the sample call: offsets read as seconds below


def ctl(sandbox, *args, timeout=60):
    return subprocess.run([str(CTL), "--config", str(sandbox["config"]), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def sample_call(rec: CallRecords, call_id: str = "c-1") -> None:
    """A whole call: greeting, a question, a tool, an answer cut off by barge-in, a transfer."""
    rec.start_call(call_id, agent="front-desk", caller="sip:+15551234567@pbx", callee="sip:2000@box", started_ns=S)
    rec.answered(call_id, S + 400_000_000)
    rec.add_event(call_id, "call.answered", {"codec": "PCMU"}, ts_ns=S + 400_000_000)
    greet = rec.add_turn(call_id, role="agent", text="Thanks for calling. How can I help?", started_ns=S + S // 2)
    rec.update_turn(call_id, greet, heard_text="Thanks for calling. How can I help?", ended_ns=3 * S)
    rec.add_turn(call_id, role="caller", text="Book a cleaning on Thursday", started_ns=4 * S, ended_ns=6 * S)
    rec.add_tool_call(call_id, tool="calendar.free_slots", args={"date": "2026-11-26"}, status="ok",
                      result={"slots": ["09:00", "10:30"]}, duration_ms=212.5, ts_ns=6 * S)
    answer = rec.add_turn(call_id, role="agent", text="", started_ns=7 * S)
    rec.update_turn(call_id, answer, text="I have nine or ten thirty. Which one?",
                    latency={"endpoint": 310, "asr": 145, "tts_first_audio": 160})
    rec.update_turn(call_id, answer, latency={"total": 995})  # merged, not replaced
    rec.update_turn(call_id, answer, heard_text="I have nine", interrupted=True, ended_ns=8 * S)
    rec.add_turn(call_id, role="caller", text="Can I talk to billing?", started_ns=9 * S, ended_ns=10 * S)
    rec.add_tool_call(call_id, tool="billing.lookup", args={"phone": "+15551234567"}, status="circuit-open",
                      result="billing API down", duration_ms=0.1, attempts=0)
    rec.add_transfer(call_id, target="billing", uri="sip:billing@pbx", context={"intent": "billing"}, ts_ns=11 * S)
    rec.update_transfer(call_id, status="answered", sip_status=200, reason="OK")
    rec.end_call(call_id, "transferred", "transfer answered", intent="billing", slots={"date": "2026-11-26"},
                 summary="Wanted a cleaning, then billing.", metrics={"barge_ins": 1}, ended_ns=12 * S)


# -- the store ----------------------------------------------------------------------------------
def test_a_whole_call_round_trips(tmp_path):
    with CallRecords(tmp_path / "calls.db") as rec:
        sample_call(rec)
    with CallRecords(tmp_path / "calls.db", readonly=True) as rec:
        call = rec.get_call("c-1")
        assert rec.get_call("nope") is None
    assert (call.id, call.agent, call.caller, call.callee) == ("c-1", "front-desk", "sip:+15551234567@pbx",
                                                               "sip:2000@box")
    assert (call.started_ns, call.answered_ns, call.ended_ns, call.duration_s) == (S, S + 400_000_000, 12 * S, 11.0)
    assert call.outcome == "transferred" and call.end_reason == "transfer answered"
    assert call.intent == "billing" and call.slots == {"date": "2026-11-26"} and call.metrics == {"barge_ins": 1}
    assert call.summary == "Wanted a cleaning, then billing." and call.transfer_target == "billing"
    assert call.started_at.endswith("+00:00") and call.ended_at >= call.started_at
    assert [(t.idx, t.role) for t in call.turns] == [(0, "agent"), (1, "caller"), (2, "agent"), (3, "caller")]
    cut = call.turns[2]
    assert (cut.text, cut.heard_text, cut.interrupted, cut.ended_ns) == (
        "I have nine or ten thirty. Which one?", "I have nine", True, 8 * S)
    assert cut.latency == {"endpoint": 310, "asr": 145, "tts_first_audio": 160, "total": 995}
    assert call.turns[0].interrupted is False and call.turns[0].latency is None
    assert [(e.type, e.data) for e in call.events] == [("call.answered", {"codec": "PCMU"})]
    ok, down = call.tools
    assert (ok.tool, ok.turn_idx, ok.args, ok.status, ok.result, ok.error, ok.duration_ms, ok.attempts) == (
        "calendar.free_slots", 1, {"date": "2026-11-26"}, "ok", {"slots": ["09:00", "10:30"]}, None, 212.5, 1)
    assert (down.turn_idx, down.status, down.result, down.error, down.attempts) == (
        3, "circuit-open", None, "billing API down", 0)  # a failed tool's text result is its error
    (transfer,) = call.transfers
    assert (transfer.target, transfer.uri, transfer.kind, transfer.status, transfer.sip_status, transfer.reason,
            transfer.context) == ("billing", "sip:billing@pbx", "blind", "answered", 200, "OK", {"intent": "billing"})
    # rows read as dicts too, and the whole thing is JSON
    assert call["turns"][2]["heard_text"] == "I have nine" and dict(call.turns[0])["role"] == "agent"
    assert json.loads(json.dumps(call.as_dict()))["tools"][1]["status"] == "circuit-open"


def test_listing_filters_and_open_calls(tmp_path):
    with CallRecords(tmp_path / "calls.db") as rec:
        sample_call(rec, "c-1")
        rec.start_call("c-2", caller="1002", started_at="2026-11-24T10:00:00Z")
        rec.start_call("c-3", caller="1003")
        rec.add_turn("c-3", role="agent", text="Hello")
        rec.end_call("c-3", "abandoned", "caller hung up")
        assert [c.id for c in rec.list_calls()] == ["c-3", "c-1", "c-2"]  # newest first
        assert [c.id for c in rec.list_calls(limit=1)] == ["c-3"]
        assert [c.id for c in rec.list_calls(outcome="abandoned")] == ["c-3"]
        assert [c.id for c in rec.list_calls(since="2026-11-24T11:00:00+00:00")] == ["c-3", "c-1"]
        assert {c.id: c.turn_count for c in rec.list_calls()} == {"c-1": 4, "c-2": 0, "c-3": 1}
        assert [c.id for c in rec.open_calls()] == ["c-2"]
        assert rec.list_calls()[0].turns == []  # listings carry counts, not transcripts


def test_conversation_gives_turns_in_order_with_what_the_caller_heard(tmp_path):
    with CallRecords(tmp_path / "calls.db") as rec:
        sample_call(rec)
        rec.start_call("live", started_ns=S)
        for i in range(12):  # enough to catch text ordering of indexes (10 < 2)
            idx = rec.add_turn("live", role="caller" if i % 2 else "agent", text=f"turn {i}", started_ns=S + i)
            assert idx == i
        rec.update_turn("live", 10, heard_text="tu", interrupted=True)
    # agentd restarted mid-call: a new process rebuilds the dialogue from the file
    with CallRecords(tmp_path / "calls.db") as rec:
        assert [c.id for c in rec.open_calls()] == ["live"]
        turns = rec.conversation("live")
        assert [t.idx for t in turns] == list(range(12))
        assert [t.spoken for t in turns][9:] == ["turn 9", "tu", "turn 11"]
        assert turns[10].text == "turn 10" and turns[10].interrupted
        assert [(t.role, t.spoken) for t in rec.conversation("c-1")] == [
            ("agent", "Thanks for calling. How can I help?"), ("caller", "Book a cleaning on Thursday"),
            ("agent", "I have nine"), ("caller", "Can I talk to billing?")]
        assert rec.conversation("nope") == []


def test_bad_writes_are_clear_errors(tmp_path):
    with CallRecords(tmp_path / "calls.db") as rec:
        with pytest.raises(RecordsError, match="'ghost' is not recorded"):
            rec.add_turn("ghost", role="agent", text="hi")
        rec.start_call("c-1")
        with pytest.raises(RecordsError, match="already recorded"):
            rec.start_call("c-1")
        with pytest.raises(ValueError, match="turn role 'bot' is not one of agent, caller, system, tool"):
            rec.add_turn("c-1", role="bot")
        with pytest.raises(ValueError, match="tool status"):
            rec.add_tool_call("c-1", tool="t", status="maybe")
        with pytest.raises(RecordsError, match="no turn 5"):
            rec.update_turn("c-1", 5, heard_text="x")
        with pytest.raises(RecordsError, match="no transfer"):
            rec.update_transfer("c-1", status="failed")
        with pytest.raises(ValueError, match="final outcome"):
            rec.end_call("c-1", "in-progress")
        assert rec.get_call("c-1").turns == []  # nothing half-written
    with CallRecords(tmp_path / "calls.db", readonly=True) as ro:
        with pytest.raises(RecordsError, match="read-only"):
            ro.start_call("c-2")


def test_prune_removes_old_ended_calls_with_everything_about_them(tmp_path):
    with CallRecords(tmp_path / "calls.db") as rec:
        sample_call(rec, "old")
        rec.start_call("ongoing")
        db = sqlite3.connect(tmp_path / "calls.db")
        with db:
            db.execute("UPDATE calls SET ended_at = '2020-01-01T00:00:00.000+00:00' WHERE id = 'old'")
            db.execute("UPDATE calls SET started_at = '2020-01-01T00:00:00.000+00:00' WHERE id = 'ongoing'")
        assert rec.prune(30) == 1
        assert [c.id for c in rec.list_calls()] == ["ongoing"]
        assert db.execute("SELECT (SELECT COUNT(*) FROM turns) + (SELECT COUNT(*) FROM tool_calls) + "
                          "(SELECT COUNT(*) FROM transfers) + (SELECT COUNT(*) FROM events)").fetchone()[0] == 0
        db.close()


# -- the file -----------------------------------------------------------------------------------
def test_the_file_is_in_wal_mode(tmp_path):
    path = tmp_path / "state" / "calls.db"  # the state dir is created
    with CallRecords(path) as rec:
        rec.start_call("c-1")
        assert rec.journal_mode == "wal"
        assert Path(f"{path}-wal").exists()
        raw = sqlite3.connect(path)
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent, in the file
        assert raw.execute("PRAGMA user_version").fetchone()[0] == records_mod.SCHEMA_VERSION
        raw.close()
        assert rec._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert rec._db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert rec._db.execute("PRAGMA busy_timeout").fetchone()[0] == records_mod.BUSY_TIMEOUT_MS


def test_a_reader_keeps_a_consistent_snapshot_while_the_writer_commits(tmp_path):
    with CallRecords(tmp_path / "calls.db") as writer:
        writer.start_call("c-1")
        reader = sqlite3.connect(tmp_path / "calls.db", isolation_level=None)
        reader.execute("BEGIN")
        assert reader.execute("SELECT COUNT(*) FROM turns").fetchone()[0] == 0
        for i in range(3):  # the writer is not blocked by the open read transaction
            writer.add_turn("c-1", role="agent", text=f"t{i}")
        assert reader.execute("SELECT COUNT(*) FROM turns").fetchone()[0] == 0  # its snapshot
        reader.execute("COMMIT")
        assert reader.execute("SELECT COUNT(*) FROM turns").fetchone()[0] == 3
        reader.close()


WRITER = textwrap.dedent("""
    import sys
    from appliance.agent.records import CallRecords
    rec = CallRecords(sys.argv[1])
    print("ready", flush=True)
    for n in range(int(sys.argv[2])):
        cid = f"c-{n:04d}"
        rec.start_call(cid, caller=str(n))
        for i in range(3):
            rec.add_turn(cid, role="caller" if i % 2 else "agent", text=f"{cid} turn {i}")
        rec.add_tool_call(cid, tool="lookup", args={"n": n}, status="ok", result=n)
        rec.end_call(cid, "completed", "hangup", slots={"n": n})
    rec.close()
""")


def test_another_process_reads_consistent_data_while_agentd_writes(tmp_path):
    path = tmp_path / "calls.db"
    CallRecords(path).close()  # created and migrated, as agentd does at start
    calls = 150
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(calls)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "ready"
    seen_progress = set()
    with CallRecords(path, readonly=True) as reader:
        while True:
            running = proc.poll() is None
            listed = reader.list_calls(limit=calls + 1)
            seen_progress.add(len(listed))
            for c in listed[:5]:
                full = reader.get_call(c.id)
                if full is None:
                    continue
                assert [t.idx for t in full.turns] == list(range(len(full.turns)))
                assert all(t.text == f"{c.id} turn {t.idx}" for t in full.turns)
                if full.outcome == "completed":  # an ended call is complete in one snapshot
                    assert len(full.turns) == 3 and len(full.tools) == 1 and full.slots == {"n": int(c.caller)}
                else:
                    assert full.outcome == "in-progress" and full.ended_ns is None and len(full.turns) <= 3
            if not running:
                break
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
        final = reader.list_calls(limit=1000)
    assert len(final) == calls and {c.outcome for c in final} == {"completed"}
    assert {c.turn_count for c in final} == {3}
    assert len(seen_progress) > 1  # it really read while the writer was writing


def test_an_empty_file_is_migrated_and_a_newer_schema_is_refused(tmp_path):
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    now = records_mod.SCHEMA_VERSION
    with pytest.raises(RecordsError, match=rf"schema version 0, expected {now}; agentd upgrades it"):
        CallRecords(empty, readonly=True)  # appliancectl never migrates
    with CallRecords(empty) as rec:
        assert rec.version == now
        rec.start_call("c-1")
    tables = {r[0] for r in sqlite3.connect(empty).execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"calls", "turns", "events", "tool_calls", "transfers"} <= tables

    newer = tmp_path / "newer.db"
    db = sqlite3.connect(newer)
    db.execute("PRAGMA user_version = 7")
    db.close()
    for readonly in (False, True):
        with pytest.raises(RecordsError) as err:
            CallRecords(newer, readonly=readonly)
        assert str(err.value).startswith(f"call records {newer}: schema version 7 is newer than this appliance "
                                          f"understands ({now})")
    assert sqlite3.connect(newer).execute("PRAGMA user_version").fetchone()[0] == 7  # left alone


def test_a_newer_appliance_migrates_an_older_file_keeping_its_calls(tmp_path, monkeypatch):
    path = tmp_path / "calls.db"
    with CallRecords(path) as rec:
        sample_call(rec)
    now = records_mod.SCHEMA_VERSION
    monkeypatch.setattr(records_mod, "SCHEMA_VERSION", now + 1)
    monkeypatch.setitem(records_mod.MIGRATIONS, now + 1, ("ALTER TABLE calls ADD COLUMN recording TEXT",))
    with pytest.raises(RecordsError, match=f"schema version {now}, expected {now + 1}"):
        CallRecords(path, readonly=True)
    with CallRecords(path) as rec:
        assert rec.version == now + 1
        assert [t.spoken for t in rec.conversation("c-1")][2] == "I have nine"
    columns = [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(calls)")]
    assert columns[-1] == "recording"


def test_a_corrupt_file_is_a_records_error_naming_it(tmp_path):
    path = tmp_path / "calls.db"
    path.write_bytes(os.urandom(8192))
    for readonly in (False, True):
        with pytest.raises(RecordsError, match=rf"^call records {path}: file is not a database$"):
            CallRecords(path, readonly=readonly)
    assert path.read_bytes()[:16] != b"SQLite format 3\x00"  # not "repaired" by being opened
    with pytest.raises(RecordsError, match="no such file"):
        CallRecords(tmp_path / "missing.db", readonly=True)


# -- appliancectl -------------------------------------------------------------------------------
def state_db(sandbox) -> Path:
    return records_path(sandbox["root"] / "state")


def test_cli_with_no_records_yet(sandbox):
    r = ctl(sandbox, "calls")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"no calls recorded yet ({state_db(sandbox)})\n"
    r = ctl(sandbox, "calls", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == [] and "no calls recorded yet" in r.stderr
    r = ctl(sandbox, "call", "show", "c-1")
    assert r.returncode == 1 and r.stderr == f"appliancectl: no call c-1: no calls recorded yet ({state_db(sandbox)})\n"
    assert not state_db(sandbox).exists()  # reading never creates the file


def test_cli_lists_calls_as_a_table_and_as_json(sandbox):
    with CallRecords(state_db(sandbox)) as rec:
        sample_call(rec, "c-1")
        rec.start_call("c-2", caller="1002")
        rec.add_turn("c-2", role="agent", text="Hello")
        r = ctl(sandbox, "calls")  # while the writer has the file open
    assert r.returncode == 0, r.stderr
    header, first, second = r.stdout.splitlines()
    assert header.split() == ["ID", "STARTED", "CALLER", "DURATION", "OUTCOME", "TASK", "TURNS"]
    assert first.split()[0] == "c-2" and first.split()[-3:] == ["in-progress", "-", "1"]
    assert first.split()[4].endswith("+")  # still going
    assert second.split()[0] == "c-1" and second.split()[3:] == ["sip:+15551234567@pbx", "0:11", "transferred",
                                                                  "billing", "4"]
    r = ctl(sandbox, "calls", "--outcome", "transferred", "--json")
    assert r.returncode == 0, r.stderr
    (only,) = json.loads(r.stdout)
    assert (only["id"], only["outcome"], only["turn_count"], only["duration_s"], only["slots"]) == (
        "c-1", "transferred", 4, 11.0, {"date": "2026-11-26"})
    assert "turns" not in only
    r = ctl(sandbox, "calls", "--limit", "1")
    assert [line.split()[0] for line in r.stdout.splitlines()] == ["ID", "c-2"]
    r = ctl(sandbox, "calls", "--outcome", "error")
    assert r.returncode == 0 and r.stdout.startswith("no calls with outcome error")
    r = ctl(sandbox, "calls", "--since", "yesterday")
    assert r.returncode == 2 and "not an ISO 8601 time" in r.stderr


def test_cli_shows_one_call_for_an_admin_and_as_json(sandbox):
    with CallRecords(state_db(sandbox)) as rec:
        sample_call(rec, "c-1")
    r = ctl(sandbox, "call", "show", "c-1")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for expected in ("call c-1  (agent front-desk)",
                     "  caller    sip:+15551234567@pbx → sip:2000@box",
                     "answered after 0.4 s",
                     "  outcome   transferred: transfer answered",
                     "  slots     date=2026-11-26",
                     "TRANSCRIPT (4 turns)",
                     "   +0.5s  agent   Thanks for calling. How can I help?",
                     "   +3.0s  caller  Book a cleaning on Thursday",
                     '↳ interrupted: caller heard "I have nine"',
                     "⏱ latency ms: endpoint 310 · asr 145 · tts_first_audio 160 · total 995",
                     '⚙ calendar.free_slots({"date": "2026-11-26"}) → ok in 212.5 ms: {"slots": ["09:00", "10:30"]}',
                     "→ circuit-open in 0.1 ms after 0 attempts: billing API down",
                     "TRANSFERS",
                     "  +10.0s",
                     "blind to billing <sip:billing@pbx>: answered 200 OK",
                     "EVENTS (1)",
                     'call.answered {"codec": "PCMU"}'):
        assert expected in out, f"{expected!r} not in:\n{out}"
    lines = out.splitlines()  # each tool sits under the caller turn that asked for it
    assert lines.index(next(x for x in lines if "calendar.free_slots" in x)) == \
        lines.index(next(x for x in lines if "Book a cleaning" in x)) + 1
    r = ctl(sandbox, "call", "show", "c-1", "--json")
    assert r.returncode == 0, r.stderr
    call = json.loads(r.stdout)
    assert [t["heard_text"] for t in call["turns"]][2] == "I have nine" and call["duration_s"] == 11.0
    assert [t["tool"] for t in call["tools"]] == ["calendar.free_slots", "billing.lookup"]
    assert call["transfers"][0]["sip_status"] == 200 and call["events"][0]["type"] == "call.answered"
    r = ctl(sandbox, "call", "show", "c-404")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == f"appliancectl: no call c-404 in {state_db(sandbox)} (`appliancectl calls` lists them)\n"


def test_cli_on_a_corrupt_file_says_so_without_a_traceback(sandbox):
    path = state_db(sandbox)
    path.parent.mkdir(parents=True)
    path.write_bytes(os.urandom(4096))
    for args in (["calls"], ["call", "show", "c-1"]):
        r = ctl(sandbox, *args)
        assert r.returncode == 2
        assert r.stderr == f"appliancectl: call records {path}: file is not a database\n"


def test_a_transcript_on_a_terminal_is_wrapped_to_its_width(tmp_path):
    from appliance.cli.calls import render

    with CallRecords(tmp_path / "calls.db") as rec:
        sample_call(rec)
        rec.add_turn("c-1", role="caller", text="word " * 60)
        call = rec.get_call("c-1")
    wrapped = render(call, width=72)
    assert max(len(line) for line in wrapped) <= 72
    assert sum("word" in line for line in wrapped) > 1
    assert sum("word" in line for line in render(call, width=None)) == 1  # piped: one line per turn


PY_TOOLS = '''
import time

def ok():
    return {"fine": True}

def boom():
    raise RuntimeError("the CRM is on fire")

def slow():
    time.sleep(0.3)
    return {"late": True}
'''


def test_every_status_the_tool_runner_can_give_reaches_the_record(tmp_path, monkeypatch):
    """Each ToolStatus, produced by the real runner (not written by hand), is kept in the record
    with the runner's own error: none is dropped as 'not a tool status'."""
    import asyncio

    from appliance.agent.tools import ToolRunner, ToolSpec, ToolStatus

    (tmp_path / "rec_py_tools.py").write_text(PY_TOOLS)
    monkeypatch.syspath_prepend(str(tmp_path))

    def spec(name, **kw):
        kw.setdefault("args_schema", {"type": "object", "properties": {}})
        return ToolSpec(name=name, kind="python", entry=f"rec_py_tools:{name}", retries=0, **kw)

    runner = ToolRunner([spec("ok"), spec("boom", breaker_failures=1),
                         spec("slow", timeout_s=0.05),
                         spec("ok_typed", args_schema={"type": "object", "properties": {"n": {"type": "integer"}},
                                                       "required": ["n"]})])
    runner.specs["ok_typed"] = ToolSpec(**{**runner.specs["ok_typed"].__dict__, "entry": "rec_py_tools:ok"})

    async def every_status():
        return [await runner.call("ok", {}), await runner.call("boom", {}), await runner.call("slow", {}),
                await runner.call("boom", {}), await runner.call("ok_typed", {"n": "seven"}),
                await runner.call("no_such_tool", {})]

    results = asyncio.run(every_status())
    assert {r.status for r in results} == set(ToolStatus), [r.status for r in results]
    with CallRecords(tmp_path / "calls.db") as rec:
        rec.start_call("c-1")
        rec.add_turn("c-1", role="caller", text="book me in")
        for r in results:
            rec.add_tool_call("c-1", tool=r.tool, args={}, status=r.status,
                              result=r.data if r.ok else r.error, duration_ms=r.duration_ms, attempts=r.attempts)
        kept = rec.get_call("c-1").tools
    assert [t.status for t in kept] == [r.status for r in results]
    for t, r in zip(kept, results):
        assert (t.result == r.data) if r.ok else (t.error == r.error and r.error)


def test_a_file_from_before_goals_is_migrated_and_keeps_its_calls(tmp_path):
    """A version 1 file (before the caller's goal was recorded) opens, gains the goal columns,
    and its old calls read with no goal; a new call records goal, reached and why not."""
    path = tmp_path / "calls.db"
    db = sqlite3.connect(path)
    for sql in records_mod.MIGRATIONS[1]:
        db.execute(sql)
    db.execute("INSERT INTO calls (id, started_ns, started_at) VALUES ('old', 1, '2026-01-01T00:00:00.000+00:00')")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with CallRecords(path) as rec:
        assert rec.get_call("old").goal is None and rec.get_call("old").goal_reached is None
        rec.start_call("new")
        rec.end_call("new", "unresolved", "agent-hangup", goal="book_appointment", goal_reached=False,
                      goal_reason="tool failure: book_appointment (timeout)")
        call = rec.get_call("new")
    assert (call.outcome, call.goal, call.goal_reached, call.goal_reason) == (
        "unresolved", "book_appointment", False, "tool failure: book_appointment (timeout)")
