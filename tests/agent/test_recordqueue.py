"""The call record survives a records file that cannot be written for a while: a full disk
(SQLite's SQLITE_FULL, here by capping the file's pages: the error a full disk gives) or a
lock another program holds. The call goes on, every write is kept in order, and the record
is complete once the file takes writes again; nothing is half-written."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

import pytest

from appliance.agent.recordqueue import QueuedRecords
from appliance.agent.records import CallRecords
from appliance.bus.messages import MetricsRequest
from appliance.config import load


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _fill(records: CallRecords) -> None:
    """The disk is full: the file may not grow by a page."""
    pages = records._db.execute("PRAGMA page_count").fetchone()[0]
    records._db.execute(f"PRAGMA max_page_count = {pages}")


def test_a_full_disk_queues_the_calls_record_and_it_is_whole_when_space_returns(tmp_path):
    raw = CallRecords(tmp_path / "calls.db")
    clock = Clock()
    q = QueuedRecords(raw, clock=clock)
    q.start_call("c1", agent="reception", caller="555")
    assert q.add_turn("c1", role="agent", text="Hello, Riverside Dental.") == 0
    _fill(raw)
    long = "a long answer " * 400  # needs new pages: the write fails as on a full disk
    idx = q.add_turn("c1", role="caller", text=long)
    assert idx == 1 and q.stalled and q.failures == 1  # the call goes on with the index the record will give
    q.update_turn("c1", idx, heard_text=long)
    q.add_tool_call("c1", tool="book_appointment", args={"date": "2026-12-08"}, result={"id": 7})
    assert q.add_turn("c1", role="agent", text="Booked.") == 2
    q.end_call("c1", "completed", "caller-hangup")
    assert len(q.queue) == 5 and raw.get_call("c1").outcome == "in-progress"  # not half: nothing of it yet
    clock.t += 5
    assert q.flush() == 0 and q.stalled  # still full: still queued, in order
    raw._db.execute("PRAGMA max_page_count = 1073741823")  # space returns
    clock.t += 5
    assert q.flush() == 5 and not q.stalled
    call = raw.get_call("c1")
    assert [t.role for t in call.turns] == ["agent", "caller", "agent"] and call.turns[1].heard_text == long
    assert call.outcome == "completed" and [t.tool for t in call.tools] == ["book_appointment"]
    assert q.dropped == 0


def test_a_file_locked_by_another_program_queues_writes_until_it_lets_go(tmp_path):
    path = tmp_path / "calls.db"
    q = QueuedRecords(CallRecords(path, busy_timeout_ms=50), clock=Clock())
    q.start_call("c2")
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # an admin's tool holding the write lock
    try:
        assert q.add_turn("c2", role="caller", text="hello") == 0 and q.stalled
        assert q.get_call("c2") is not None  # reading still works (WAL)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert q.flush(force=True) == 1
    assert [t.text for t in q.get_call("c2").turns] == ["hello"]


def test_a_wrong_write_is_logged_not_queued(tmp_path, caplog):
    q = QueuedRecords(CallRecords(tmp_path / "calls.db"), clock=Clock())
    q.start_call("c3")
    assert q.update_turn("c3", 9, text="nothing there") is None
    assert not q.stalled and q.failures == 1 and "has no turn 9" in caplog.text


@pytest.fixture
def records_path(sandbox) -> Path:
    return Path(load(sandbox["config"]).paths.state_dir) / "calls.db"


def test_agentd_talks_on_while_the_records_are_locked_and_the_record_is_complete_after(agentd, line, records_path):
    svc = agentd()
    line.start_call("c9")
    line.wait_says("c9", 1)
    other = sqlite3.connect(str(records_path), isolation_level=None, timeout=5)
    other.execute("BEGIN EXCLUSIVE")
    try:
        line.caller_says("c9", "where are you located")
        line.wait_says("c9", 2)  # the call goes on: the answer is said
        text = svc.control(MetricsRequest()).text
        assert float(re.search(r"^appliance_call_record_queued (\S+)", text, re.M)[1]) > 0  # its record waits
    finally:
        other.execute("ROLLBACK")
        other.close()
    line.hang_up("c9")
    deadline = time.monotonic() + 15
    with CallRecords(records_path, readonly=True) as reader:
        while time.monotonic() < deadline:
            call = reader.get_call("c9")
            if call is not None and call.outcome not in (None, "in-progress"):
                break
            time.sleep(0.3)
        call = reader.get_call("c9")
    assert call.outcome == "completed"
    assert [t.role for t in call.turns][:3] == ["agent", "caller", "agent"]
    assert call.turns[1].text == "where are you located"
