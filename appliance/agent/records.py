"""Call records: one SQLite file (WAL mode) at ``<paths.state_dir>/calls.db``.

agentd is the only writer: every write is one short ``BEGIN IMMEDIATE`` transaction, so a reader
(``appliancectl calls``, ``appliancectl call show``) never waits on a call in progress and never
sees half of a write. What is kept per call:

- ``calls``: who, when (monotonic ns from the bus for durations, wall-clock ISO for people),
  outcome, end reason, summary, intent, slots, transfer target, metrics;
- ``turns``: agent, caller, system and tool turns in order, with what the caller actually heard
  of an agent turn cut off by barge-in and per-stage latencies in ms;
- ``events``, ``tool_calls`` and ``transfers``.

``conversation()`` and ``open_calls()`` are what agentd needs to rebuild a conversation after a
restart in the middle of a call. The schema version is ``PRAGMA user_version``: an older file is
migrated when the writer opens it, a newer one is refused with a clear error. A file that is not
a database, or cannot be read, is a ``RecordsError`` naming it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

from appliance.agent.tools import ToolStatus

SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 5000
FILENAME = "calls.db"

ROLES = ("agent", "caller", "system", "tool")
TRANSFER_KINDS = ("blind", "attended")
# usual ones; others are kept. unresolved: the caller's goal was not reached and nobody took the call over
OUTCOMES = ("in-progress", "completed", "transferred", "unresolved", "abandoned", "error")
LATENCY_STAGES = ("endpoint", "asr", "llm_first_token", "first_clause", "tts_first_audio", "total")

# MIGRATIONS[n] takes a file from version n-1 to n. Append, never edit a released step.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE calls (
            id              TEXT PRIMARY KEY,           -- the bus call id
            agent           TEXT NOT NULL DEFAULT '',
            caller          TEXT NOT NULL DEFAULT '',
            callee          TEXT NOT NULL DEFAULT '',
            started_ns      INTEGER NOT NULL,           -- monotonic ns (bus clock)
            answered_ns     INTEGER,
            ended_ns        INTEGER,
            started_at      TEXT NOT NULL,              -- wall clock, ISO 8601 UTC
            ended_at        TEXT,
            outcome         TEXT NOT NULL DEFAULT 'in-progress',
            end_reason      TEXT,
            summary         TEXT,
            intent          TEXT,
            slots           TEXT,                       -- JSON object
            transfer_target TEXT,
            metrics         TEXT                        -- JSON object
        )""",
        "CREATE INDEX calls_by_start ON calls (started_at)",
        "CREATE INDEX calls_by_outcome ON calls (outcome, started_at)",
        """CREATE TABLE turns (
            call_id     TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
            idx         INTEGER NOT NULL,
            role        TEXT NOT NULL,                  -- agent | caller | system | tool
            text        TEXT NOT NULL DEFAULT '',
            heard_text  TEXT,                           -- what the caller heard of an agent turn
            started_ns  INTEGER,
            ended_ns    INTEGER,
            interrupted INTEGER NOT NULL DEFAULT 0,
            latency     TEXT,                           -- JSON: stage -> ms
            PRIMARY KEY (call_id, idx)
        )""",
        """CREATE TABLE events (
            id      INTEGER PRIMARY KEY,
            call_id TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
            ts_ns   INTEGER NOT NULL,
            type    TEXT NOT NULL,
            data    TEXT                                -- JSON
        )""",
        "CREATE INDEX events_by_call ON events (call_id, ts_ns)",
        """CREATE TABLE tool_calls (
            id          INTEGER PRIMARY KEY,
            call_id     TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
            turn_idx    INTEGER,
            ts_ns       INTEGER NOT NULL,
            tool        TEXT NOT NULL,
            args        TEXT,                           -- JSON
            status      TEXT NOT NULL,                  -- ok | error | timeout | circuit-open
            result      TEXT,                           -- JSON, when ok
            error       TEXT,                           -- text, when not
            duration_ms REAL,
            attempts    INTEGER NOT NULL DEFAULT 1
        )""",
        "CREATE INDEX tool_calls_by_call ON tool_calls (call_id, id)",
        """CREATE TABLE transfers (
            id         INTEGER PRIMARY KEY,
            call_id    TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
            ts_ns      INTEGER NOT NULL,
            updated_ns INTEGER NOT NULL,
            target     TEXT NOT NULL DEFAULT '',
            uri        TEXT NOT NULL DEFAULT '',
            kind       TEXT NOT NULL DEFAULT 'blind',   -- blind | attended
            status     TEXT NOT NULL,                   -- requested, ringing, answered, failed, ...
            sip_status INTEGER,
            reason     TEXT,
            context    TEXT                             -- JSON
        )""",
        "CREATE INDEX transfers_by_call ON transfers (call_id, id)",
    ),
    2: (  # the caller's task: what they came for, whether it was done, and why not
        "ALTER TABLE calls ADD COLUMN goal TEXT",
        "ALTER TABLE calls ADD COLUMN goal_reached INTEGER",
        "ALTER TABLE calls ADD COLUMN goal_reason TEXT",
    ),
}


class RecordsError(Exception):
    """The call records cannot be used: not a database, unreadable, a newer schema, a bad write."""


# -- rows ---------------------------------------------------------------------------------------
class _Row:
    """A dataclass that reads like a dict too: ``row.text``, ``row["text"]``, ``dict(row)``."""

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def keys(self) -> list[str]:
        return [f.name for f in fields(self)]  # type: ignore[arg-type]

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default) if key in self.keys() else default

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]


@dataclass
class TurnRecord(_Row):
    idx: int
    role: str
    text: str
    heard_text: str | None = None
    started_ns: int | None = None
    ended_ns: int | None = None
    interrupted: bool = False
    latency: dict[str, float] | None = None

    @property
    def spoken(self) -> str:
        """What the other side got: for an agent turn, what the caller heard of it."""
        return self.heard_text if self.heard_text is not None else self.text


@dataclass
class Event(_Row):
    id: int
    ts_ns: int
    type: str
    data: Any = None


@dataclass
class ToolCall(_Row):
    id: int
    turn_idx: int | None
    ts_ns: int
    tool: str
    args: Any
    status: str
    result: Any = None
    error: str | None = None
    duration_ms: float | None = None
    attempts: int = 1


@dataclass
class TransferRecord(_Row):
    id: int
    ts_ns: int
    updated_ns: int
    target: str
    uri: str
    kind: str
    status: str
    sip_status: int | None = None
    reason: str | None = None
    context: Any = None


@dataclass
class CallRecord(_Row):
    id: str
    agent: str
    caller: str
    callee: str
    started_ns: int
    answered_ns: int | None
    ended_ns: int | None
    started_at: str
    ended_at: str | None
    outcome: str
    end_reason: str | None
    summary: str | None
    intent: str | None
    slots: dict[str, Any] | None
    transfer_target: str | None
    metrics: dict[str, Any] | None
    goal: str | None = None  # the intent that started a flow ("" = none: questions only)
    goal_reached: bool | None = None
    goal_reason: str | None = None  # why it was not reached (loop, tool failure, caller hung up, ...)
    turn_count: int = 0
    turns: list[TurnRecord] = field(default_factory=list)       # filled by get_call only
    events: list[Event] = field(default_factory=list)
    tools: list[ToolCall] = field(default_factory=list)
    transfers: list[TransferRecord] = field(default_factory=list)

    @property
    def duration_s(self) -> float | None:
        """From start to end of the call (None while it is in progress)."""
        if self.ended_ns is None:
            return None
        return max(0, self.ended_ns - self.started_ns) / 1e9


# -- helpers ------------------------------------------------------------------------------------
def records_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / FILENAME


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _iso(when: datetime | str) -> str:
    """A time as stored (UTC ISO, ms), so that string comparison is time comparison."""
    if isinstance(when, str):
        when = datetime.fromisoformat(when.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.astimezone()  # naive: local time
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


def _load(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} {value!r} is not one of {', '.join(allowed)}")


_CALL_COLUMNS = ("id, agent, caller, callee, started_ns, answered_ns, ended_ns, started_at, ended_at, outcome, "
                 "end_reason, summary, intent, slots, transfer_target, metrics, goal, goal_reached, goal_reason, "
                 "(SELECT COUNT(*) FROM turns t WHERE t.call_id = calls.id) AS turn_count")


def _call(row: sqlite3.Row) -> CallRecord:
    d = dict(row)
    d["slots"] = _load(d["slots"])
    d["metrics"] = _load(d["metrics"])
    d["goal_reached"] = None if d["goal_reached"] is None else bool(d["goal_reached"])
    return CallRecord(**d)


def _turn(row: sqlite3.Row) -> TurnRecord:
    return TurnRecord(idx=row["idx"], role=row["role"], text=row["text"], heard_text=row["heard_text"],
                started_ns=row["started_ns"], ended_ns=row["ended_ns"], interrupted=bool(row["interrupted"]),
                latency=_load(row["latency"]))


# -- the store ----------------------------------------------------------------------------------
class CallRecords:
    """The call records file. ``readonly=True`` (appliancectl) never creates, migrates or writes.

    One connection, guarded by a lock, so the object may be shared by agentd's event loop and
    worker threads. Use as a context manager or call ``close()``.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False, busy_timeout_ms: int = BUSY_TIMEOUT_MS):
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        if readonly and not self.path.exists():
            raise RecordsError(f"call records {self.path}: no such file")
        try:
            if not readonly:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            target = f"{self.path.resolve().as_uri()}?mode=ro" if readonly else str(self.path)
            self._db = sqlite3.connect(target, uri=readonly, timeout=busy_timeout_ms / 1000,
                                       isolation_level=None, check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            self._db.execute("PRAGMA foreign_keys = ON")
            if not readonly:
                mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise RecordsError(f"call records {self.path}: cannot use WAL mode (journal mode {mode})")
                self._db.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except BaseException as exc:
            self.close()
            if isinstance(exc, (sqlite3.Error, OSError)):
                raise RecordsError(f"call records {self.path}: {exc}") from exc
            raise

    # -- lifecycle ------------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> CallRecords:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def version(self) -> int:
        with self._read() as db:
            return db.execute("PRAGMA user_version").fetchone()[0]

    @property
    def journal_mode(self) -> str:
        with self._read() as db:
            return db.execute("PRAGMA journal_mode").fetchone()[0]

    def _migrate(self) -> None:
        assert self._db is not None
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RecordsError(f"call records {self.path}: schema version {version} is newer than this appliance "
                               f"understands ({SCHEMA_VERSION}); was the software downgraded? Upgrade it, or move "
                               f"the file aside to start a new one")
        if version == SCHEMA_VERSION:
            return
        if self.readonly:
            raise RecordsError(f"call records {self.path}: schema version {version}, expected {SCHEMA_VERSION}; "
                               f"agentd upgrades it when it starts")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]  # another writer may have won
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for sql in MIGRATIONS[step]:
                    self._db.execute(sql)
                self._db.execute(f"PRAGMA user_version = {step}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction; any SQLite failure is a RecordsError naming the file."""
        if self.readonly:
            raise RecordsError(f"call records {self.path}: opened read-only")
        with self._lock:
            db = self._conn()
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise RecordsError(f"call records {self.path}: {exc}") from exc

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: a consistent snapshot even while agentd writes."""
        with self._lock:
            db = self._conn()
            try:
                db.execute("BEGIN")
                try:
                    yield db
                finally:
                    db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise RecordsError(f"call records {self.path}: {exc}") from exc

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RecordsError(f"call records {self.path}: closed")
        return self._db

    @staticmethod
    def _require_call(db: sqlite3.Connection, call_id: str) -> None:
        if db.execute("SELECT 1 FROM calls WHERE id = ?", (call_id,)).fetchone() is None:
            raise RecordsError(f"call {call_id!r} is not recorded (start_call first)")

    # -- writes (agentd) ------------------------------------------------------------------------
    def start_call(self, call_id: str, *, agent: str = "", caller: str = "", callee: str = "",
                   started_ns: int | None = None, started_at: datetime | str | None = None) -> None:
        with self._write() as db:
            if db.execute("SELECT 1 FROM calls WHERE id = ?", (call_id,)).fetchone() is not None:
                raise RecordsError(f"call {call_id!r} is already recorded")
            db.execute("INSERT INTO calls (id, agent, caller, callee, started_ns, started_at) VALUES (?, ?, ?, ?, ?, ?)",
                       (call_id, agent, caller, callee, time.monotonic_ns() if started_ns is None else started_ns,
                        now_iso() if started_at is None else _iso(started_at)))

    def answered(self, call_id: str, answered_ns: int | None = None) -> None:
        with self._write() as db:
            self._require_call(db, call_id)
            db.execute("UPDATE calls SET answered_ns = ? WHERE id = ?",
                       (time.monotonic_ns() if answered_ns is None else answered_ns, call_id))

    def end_call(self, call_id: str, outcome: str, reason: str = "", *, summary: str | None = None,
                 intent: str | None = None, slots: dict | None = None, transfer_target: str | None = None,
                 metrics: dict | None = None, ended_ns: int | None = None, goal: str | None = None,
                 goal_reached: bool | None = None, goal_reason: str | None = None) -> None:
        """Close the record: outcome (completed, transferred, unresolved, abandoned, error, ...), end
        reason; summary, intent, slots, transfer target, metrics and the caller's goal (reached or
        not, and why not) overwrite earlier values when given."""
        if not outcome or outcome == "in-progress":
            raise ValueError(f"end_call needs a final outcome, got {outcome!r}")
        with self._write() as db:
            self._set(db, call_id, summary=summary, intent=intent, slots=_dump(slots),
                      transfer_target=transfer_target, metrics=_dump(metrics), outcome=outcome, end_reason=reason,
                      goal=goal, goal_reached=None if goal_reached is None else int(goal_reached),
                      goal_reason=goal_reason,
                      ended_ns=time.monotonic_ns() if ended_ns is None else ended_ns, ended_at=now_iso())

    def _set(self, db: sqlite3.Connection, call_id: str, **values: Any) -> None:
        self._require_call(db, call_id)
        values = {k: v for k, v in values.items() if v is not None}
        if values:
            db.execute(f"UPDATE calls SET {', '.join(f'{k} = ?' for k in values)} WHERE id = ?",
                       (*values.values(), call_id))

    def add_turn(self, call_id: str, *, role: str, text: str = "", heard_text: str | None = None,
                 started_ns: int | None = None, ended_ns: int | None = None, interrupted: bool = False,
                 latency: dict[str, float] | None = None) -> int:
        """Append a turn; returns its index (0, 1, ... per call)."""
        _check(role, ROLES, "turn role")
        with self._write() as db:
            self._require_call(db, call_id)
            idx = db.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM turns WHERE call_id = ?", (call_id,)).fetchone()[0]
            db.execute("INSERT INTO turns (call_id, idx, role, text, heard_text, started_ns, ended_ns, interrupted, "
                       "latency) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (call_id, idx, role, text, heard_text,
                        time.monotonic_ns() if started_ns is None else started_ns, ended_ns, int(interrupted),
                        _dump(latency)))
        return idx

    def update_turn(self, call_id: str, idx: int, *, text: str | None = None, heard_text: str | None = None,
                    interrupted: bool | None = None, ended_ns: int | None = None,
                    latency: dict[str, float] | None = None) -> None:
        """Fill in a turn as it completes; ``latency`` is merged into what is there."""
        with self._write() as db:
            row = db.execute("SELECT latency FROM turns WHERE call_id = ? AND idx = ?", (call_id, idx)).fetchone()
            if row is None:
                raise RecordsError(f"call {call_id!r} has no turn {idx}")
            values: dict[str, Any] = {"text": text, "heard_text": heard_text, "ended_ns": ended_ns,
                                      "interrupted": None if interrupted is None else int(interrupted)}
            if latency is not None:
                values["latency"] = _dump({**(_load(row["latency"]) or {}), **latency})
            values = {k: v for k, v in values.items() if v is not None}
            if values:
                db.execute(f"UPDATE turns SET {', '.join(f'{k} = ?' for k in values)} WHERE call_id = ? AND idx = ?",
                           (*values.values(), call_id, idx))

    def add_event(self, call_id: str, type: str, data: Any = None, ts_ns: int | None = None) -> int:
        with self._write() as db:
            self._require_call(db, call_id)
            cur = db.execute("INSERT INTO events (call_id, ts_ns, type, data) VALUES (?, ?, ?, ?)",
                             (call_id, time.monotonic_ns() if ts_ns is None else ts_ns, type, _dump(data)))
            return int(cur.lastrowid)

    def add_tool_call(self, call_id: str, *, tool: str, args: Any = None, status: ToolStatus = ToolStatus.OK, result: Any = None,
                      error: str | None = None, duration_ms: float | None = None, attempts: int = 1,
                      turn_idx: int | None = None, ts_ns: int | None = None) -> int:
        """A tool call and how it went. Without ``turn_idx`` it belongs to the call's latest turn.
        When it failed, a text ``result`` is taken as the error."""
        if status not in set(ToolStatus):
            raise ValueError(f"tool status {status!r} is not one of {', '.join(ToolStatus)}")
        status = ToolStatus(status)
        if status is not ToolStatus.OK and error is None and isinstance(result, str):
            error, result = result, None
        with self._write() as db:
            self._require_call(db, call_id)
            if turn_idx is None:
                turn_idx = db.execute("SELECT MAX(idx) FROM turns WHERE call_id = ?", (call_id,)).fetchone()[0]
            cur = db.execute("INSERT INTO tool_calls (call_id, turn_idx, ts_ns, tool, args, status, result, error, "
                             "duration_ms, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (call_id, turn_idx, time.monotonic_ns() if ts_ns is None else ts_ns, tool, _dump(args),
                              status, _dump(result), error, duration_ms, attempts))
            return int(cur.lastrowid)

    def add_transfer(self, call_id: str, *, target: str = "", uri: str = "", kind: str = "blind",
                     status: str = "requested", sip_status: int | None = None, reason: str | None = None,
                     context: Any = None, ts_ns: int | None = None) -> int:
        """A transfer attempt; returns its id for ``update_transfer``. Sets the call's transfer target."""
        _check(kind, TRANSFER_KINDS, "transfer kind")
        ts = time.monotonic_ns() if ts_ns is None else ts_ns
        with self._write() as db:
            self._require_call(db, call_id)
            cur = db.execute("INSERT INTO transfers (call_id, ts_ns, updated_ns, target, uri, kind, status, sip_status, "
                             "reason, context) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (call_id, ts, ts, target, uri, kind, status, sip_status, reason, _dump(context)))
            db.execute("UPDATE calls SET transfer_target = ? WHERE id = ?", (target or uri, call_id))
            return int(cur.lastrowid)

    def update_transfer(self, call_id: str, transfer_id: int | None = None, *, status: str,
                        sip_status: int | None = None, reason: str | None = None) -> None:
        """How a transfer went (e.g. ringing, answered, failed + SIP status); without an id, the
        call's latest transfer."""
        with self._write() as db:
            if transfer_id is None:
                row = db.execute("SELECT MAX(id) FROM transfers WHERE call_id = ?", (call_id,)).fetchone()
                transfer_id = row[0]
            if transfer_id is None or db.execute("SELECT 1 FROM transfers WHERE id = ? AND call_id = ?",
                                                 (transfer_id, call_id)).fetchone() is None:
                raise RecordsError(f"call {call_id!r} has no transfer {'' if transfer_id is None else transfer_id}".rstrip())
            db.execute("UPDATE transfers SET status = ?, sip_status = COALESCE(?, sip_status), "
                       "reason = COALESCE(?, reason), updated_ns = ? WHERE id = ?",
                       (status, sip_status, reason, time.monotonic_ns(), transfer_id))

    def prune(self, older_than_days: float) -> int:
        """Delete ended calls (and everything about them) that ended more than N days ago."""
        cutoff = (datetime.now(timezone.utc) - timedelta(days=older_than_days)).isoformat(timespec="milliseconds")
        with self._write() as db:
            return db.execute("DELETE FROM calls WHERE ended_at IS NOT NULL AND ended_at < ?", (cutoff,)).rowcount

    # -- reads ----------------------------------------------------------------------------------
    def get_call(self, call_id: str) -> CallRecord | None:
        """One call with its turns, events, tool calls and transfers (one snapshot), or None."""
        with self._read() as db:
            row = db.execute(f"SELECT {_CALL_COLUMNS} FROM calls WHERE id = ?", (call_id,)).fetchone()
            if row is None:
                return None
            call = _call(row)
            call.turns = [_turn(r) for r in db.execute("SELECT * FROM turns WHERE call_id = ? ORDER BY idx",
                                                       (call_id,))]
            call.events = [Event(id=r["id"], ts_ns=r["ts_ns"], type=r["type"], data=_load(r["data"]))
                           for r in db.execute("SELECT * FROM events WHERE call_id = ? ORDER BY ts_ns, id", (call_id,))]
            call.tools = [ToolCall(id=r["id"], turn_idx=r["turn_idx"], ts_ns=r["ts_ns"], tool=r["tool"],
                                   args=_load(r["args"]), status=r["status"], result=_load(r["result"]),
                                   error=r["error"], duration_ms=r["duration_ms"], attempts=r["attempts"])
                          for r in db.execute("SELECT * FROM tool_calls WHERE call_id = ? ORDER BY id", (call_id,))]
            call.transfers = [TransferRecord(id=r["id"], ts_ns=r["ts_ns"], updated_ns=r["updated_ns"], target=r["target"],
                                       uri=r["uri"], kind=r["kind"], status=r["status"], sip_status=r["sip_status"],
                                       reason=r["reason"], context=_load(r["context"]))
                              for r in db.execute("SELECT * FROM transfers WHERE call_id = ? ORDER BY id", (call_id,))]
            call.turn_count = len(call.turns)
            return call

    def list_calls(self, limit: int = 50, since: datetime | str | None = None,
                   outcome: str | None = None) -> list[CallRecord]:
        """The most recent calls first (without turns; ``turn_count`` says how many)."""
        where, params = [], []
        if since is not None:
            where.append("started_at >= ?")
            params.append(_iso(since))
        if outcome is not None:
            where.append("outcome = ?")
            params.append(outcome)
        sql = (f"SELECT {_CALL_COLUMNS} FROM calls {'WHERE ' + ' AND '.join(where) if where else ''} "
               f"ORDER BY started_at DESC, rowid DESC LIMIT ?")
        with self._read() as db:
            return [_call(r) for r in db.execute(sql, (*params, int(limit)))]

    def open_calls(self) -> list[CallRecord]:
        """Calls still in progress (oldest first): after a restart, agentd resumes or closes them."""
        with self._read() as db:
            return [_call(r) for r in db.execute(f"SELECT {_CALL_COLUMNS} FROM calls WHERE outcome = 'in-progress' "
                                                 f"ORDER BY started_at, rowid")]

    def conversation(self, call_id: str) -> list[TurnRecord]:
        """The call's turns in order, to rebuild the dialogue: ``turn.spoken`` is what the other
        side got (for an agent turn cut off by barge-in, only what the caller heard)."""
        with self._read() as db:
            return [_turn(r) for r in db.execute("SELECT * FROM turns WHERE call_id = ? ORDER BY idx", (call_id,))]
