"""The example dental clinic's booking system: the "site's own system" for tests and the demo.

A real HTTP/1.1 JSON server on 127.0.0.1 (asyncio, stdlib only) backed by SQLite, so the agent's
tools are exercised over a real socket, never a mock. Start it in-process
(``async with BookingServer(db) as srv: srv.url``, or ``BookingServerThread`` from sync code)
or as a process::

    python -m appliance.agent.examples.clinic --port 8099 --db /tmp/clinic.sqlite

(it prints ``listening on http://127.0.0.1:PORT`` once ready; ``--port 0`` picks a free one).

API (every body is JSON; every error is ``{"error": "..."}``):

    GET    /slots?date=YYYY-MM-DD          {"date", "slots": ["09:00", ...]}  free slots in the
                                           agent file's [hours] (the example's: 09:00-17:00 on
                                           weekdays, none at weekends)
    GET    /slots?date=...&near=HH:MM      the ``limit`` (default 2) free slots nearest that time,
                                           in time order (what to offer when it is taken)
    POST   /appointments                   {name, phone, date, time, reason?} -> 201 {id, date, time}
    POST   /appointments/{id}/move         {date, time} -> {id, date, time}
    DELETE /appointments/{id}              -> {id, cancelled: true}
    GET    /appointments?phone=...&name=.. {"appointments": [{id, name, phone, date, time, reason}]}
                                           by phone; none found (another phone), by name
    GET    /health                         {"ok": true, "requests": n}

400 for invalid input, 404 for an unknown appointment or path, 409 when the slot is taken.

Fault injection, for the tool runner's tests: per request with the query parameters or headers
``delay_ms`` / ``X-Delay-Ms`` (answer late) and ``fail_with`` / ``X-Fail-With`` (a status code
to answer with, or "CODE:message" for that error message, ``garbage`` for a 200 with a non-JSON body, ``array`` for a 200 with a JSON
array, ``drop`` to close the connection
without answering); or for the whole server with ``server.faults`` (``--delay-ms`` and
``--fail-with`` on the command line), where ``fail_times`` limits the failures to the first N
requests. ``server.requests`` counts every request that reached the server.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import re
import signal
import sqlite3
import sys
import threading
import urllib.parse
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

from ..definition import load_agent
from ..hours import Hours
from ..tools import ToolSpec, read_headers

EXAMPLE_AGENT = Path(__file__).resolve().parent / "dental-receptionist.toml"
_BOOKING_URL = re.compile(r'^booking_url = ".*"', re.M)


def install_example_agent(agents_dir: str | Path, booking_url: str) -> Path:
    """The example receptionist in ``agents_dir``, its ``[vars] booking_url`` pointed at a
    running booking system (the demo's, a test's, a bench's)."""
    text = _BOOKING_URL.sub(f'booking_url = "{booking_url}"', EXAMPLE_AGENT.read_text(), count=1)
    path = Path(agents_dir) / EXAMPLE_AGENT.name
    path.write_text(text)
    return path

log = logging.getLogger("appliance.example.clinic")

MAX_BODY = 64 * 1024
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME_RE = re.compile(r"^\d{2}:\d{2}$")
_APPT_RE = re.compile(r"^/appointments/(\d+)(/move)?$")


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Faults:
    """Server-wide fault injection (tests change it between calls)."""

    delay_ms: int = 0
    fail_with: int | str | None = None  # status code, "garbage" or "drop"
    fail_times: int | None = None  # None: every request; N: the next N requests only


def example_hours() -> Hours:
    """The example agent file's [hours]: the booking system keeps the calendar the agent tells
    callers about (one source of the facts, not a copy here)."""
    import tomllib

    from ..definition import build

    problems: list[str] = []
    hours = build(Hours, tomllib.loads(EXAMPLE_AGENT.read_text()).get("hours", {}), "hours.", problems)
    if problems or hours.check():
        raise ValueError(f"{EXAMPLE_AGENT}: bad [hours]: {problems + hours.check()}")
    return hours


def _parse_date(value: Any) -> dt.date:
    if not isinstance(value, str) or not _DATE_RE.match(value):
        raise HttpError(400, f"date must be YYYY-MM-DD, got {value!r}")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise HttpError(400, f"{value!r} is not a real date") from None


def _nearest(free: list[str], near: str, limit: Any) -> list[str]:
    """The ``limit`` free "HH:MM" slots closest to ``near``, in time order."""
    if not str(limit).isdigit() or not 1 <= int(limit) <= 20:
        raise HttpError(400, f"limit must be a number from 1 to 20, got {limit!r}")
    want = _minutes(near)
    closest = sorted(free, key=lambda s: (abs(_minutes(s) - want), s))[:int(limit)]
    return sorted(closest)


def _minutes(hhmm: str) -> int:
    return int(hhmm[:2]) * 60 + int(hhmm[3:5])


def _parse_time(value: Any) -> str:
    if not isinstance(value, str) or not _TIME_RE.match(value) or int(value[:2]) > 23 or int(value[3:]) > 59:
        raise HttpError(400, f"near must be HH:MM, got {value!r}")
    return value


def _check_slot(hours: Hours, date_value: Any, time_value: Any) -> tuple[str, str]:
    day = _parse_date(date_value)
    slots = hours.slots(day)
    if not slots:
        raise HttpError(400, f"the clinic is closed on {day.strftime('%A')}s" if hours.opening(day) is None
                        and day.isoformat() not in hours.closed_dates else f"the clinic is closed on {day}")
    if not isinstance(time_value, str) or not _TIME_RE.match(time_value):
        raise HttpError(400, f"time must be HH:MM, got {time_value!r}")
    if time_value not in slots:
        raise HttpError(400, f"{time_value} is not a slot: appointments start every {hours.slot_minutes} minutes "
                             f"from {slots[0]} to {slots[-1]}")
    return day.isoformat(), time_value


def _digits(phone: Any) -> str:
    if not isinstance(phone, str) or not re.fullmatch(r"\+?[\d\s().-]+", phone):
        raise HttpError(400, f"phone must be a phone number, got {phone!r}")
    digits = re.sub(r"\D", "", phone)
    if not 3 <= len(digits) <= 20:
        raise HttpError(400, f"phone must have 3 to 20 digits, got {len(digits)}")
    return digits


class BookingDb:
    def __init__(self, path: str, hours: Hours | None = None):
        self.hours = hours or example_hours()
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        if path != ":memory:":
            self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA busy_timeout=2000")
        self.conn.executescript("""
            CREATE TABLE IF NOT EXISTS appointments (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                name TEXT NOT NULL, phone TEXT NOT NULL, phone_digits TEXT NOT NULL,
                date TEXT NOT NULL, time TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
                created_at TEXT NOT NULL DEFAULT (datetime('now')),
                UNIQUE (date, time));
            CREATE INDEX IF NOT EXISTS appointments_phone ON appointments (phone_digits);
        """)

    def close(self) -> None:
        self.conn.close()

    def free_slots(self, day: str) -> list[str]:
        taken = {r["time"] for r in self.conn.execute("SELECT time FROM appointments WHERE date = ?", (day,))}
        return [s for s in self.hours.slots(dt.date.fromisoformat(day)) if s not in taken]

    def book(self, body: dict) -> dict:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise HttpError(400, "name is required")
        digits = _digits(body.get("phone"))
        day, at = _check_slot(self.hours, body.get("date"), body.get("time"))
        reason = body.get("reason", "")
        if not isinstance(reason, str):
            raise HttpError(400, "reason must be text")
        try:
            cur = self.conn.execute(
                "INSERT INTO appointments (name, phone, phone_digits, date, time, reason) VALUES (?,?,?,?,?,?)",
                (name.strip(), body["phone"], digits, day, at, reason.strip()))
        except sqlite3.IntegrityError:
            raise HttpError(409, f"the slot {day} {at} is already taken") from None
        return {"id": cur.lastrowid, "date": day, "time": at}

    def move(self, appt_id: int, body: dict) -> dict:
        day, at = _check_slot(self.hours, body.get("date"), body.get("time"))
        if self.conn.execute("SELECT 1 FROM appointments WHERE id = ?", (appt_id,)).fetchone() is None:
            raise HttpError(404, f"no appointment {appt_id}")
        try:
            self.conn.execute("UPDATE appointments SET date = ?, time = ? WHERE id = ?", (day, at, appt_id))
        except sqlite3.IntegrityError:
            raise HttpError(409, f"the slot {day} {at} is already taken") from None
        return {"id": appt_id, "date": day, "time": at}

    def cancel(self, appt_id: int) -> dict:
        cur = self.conn.execute("DELETE FROM appointments WHERE id = ?", (appt_id,))
        if cur.rowcount == 0:
            raise HttpError(404, f"no appointment {appt_id}")
        return {"id": appt_id, "cancelled": True}

    def find(self, phone: Any, name: Any = "") -> dict:
        """By the phone number; with none found (booked from another phone), by the name."""
        rows = []
        if phone:
            rows = self.conn.execute("SELECT id, name, phone, date, time, reason FROM appointments "
                                     "WHERE phone_digits = ? ORDER BY date, time", (_digits(phone),)).fetchall()
        if not rows and isinstance(name, str) and name.strip():
            rows = self.conn.execute("SELECT id, name, phone, date, time, reason FROM appointments "
                                     "WHERE lower(name) = lower(?) ORDER BY date, time", (name.strip(),)).fetchall()
        return {"appointments": [dict(r) for r in rows]}


class BookingServer:
    """The booking API on an asyncio server; ``async with`` starts and stops it."""

    def __init__(self, db_path: str = ":memory:", *, host: str = "127.0.0.1", port: int = 0,
                 faults: Faults | None = None, hours: Hours | None = None):
        self.db_path = db_path
        self.hours = hours
        self.host = host
        self.port = port
        self.faults = faults or Faults()
        self.requests = 0
        self.log: deque[tuple[str, str, int]] = deque(maxlen=1000)  # (method, target, status), latest
        self.db: BookingDb | None = None
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> "BookingServer":
        self.db = BookingDb(self.db_path, self.hours)
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._conns):
                w.close()
            for t in list(self._tasks):
                t.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
        if self.db is not None:
            self.db.close()
            self.db = None

    async def __aenter__(self) -> "BookingServer":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # -- HTTP ----------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while True:
                keep = await self._one_request(reader, writer)
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self._conns.discard(writer)
            self._tasks.discard(task)
            writer.close()

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        line = await reader.readline()
        if not line:
            return False
        try:
            method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ")
        except ValueError:
            await self._send(writer, 400, {"error": "malformed request line"}, keep=False)
            return False
        headers = await read_headers(reader)
        length = int(headers.get("content-length", "0") or 0)
        if length > MAX_BODY:
            await self._send(writer, 413, {"error": "body too large"}, keep=False)
            return False
        raw = await reader.readexactly(length) if length else b""
        self.requests += 1
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"

        parts = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        delay_ms = query.pop("delay_ms", None) or headers.get("x-delay-ms") or self.faults.delay_ms
        fail_with = query.pop("fail_with", None) or headers.get("x-fail-with")
        if fail_with is None and self.faults.fail_with is not None:
            if self.faults.fail_times is None or self.faults.fail_times > 0:
                fail_with = self.faults.fail_with
                if self.faults.fail_times is not None:
                    self.faults.fail_times -= 1
        if delay_ms:
            await asyncio.sleep(int(delay_ms) / 1000.0)
        if fail_with is not None:
            fail = str(fail_with)
            if fail == "drop":
                self.log.append((method, target, 0))
                writer.transport.abort()
                return False
            if fail in ("garbage", "array"):
                data = b"<html>Service temporarily b0rked</html>" if fail == "garbage" else b'["09:00"]'
                await self._send_raw(writer, 200, data, "text/html" if fail == "garbage" else "application/json",
                                     keep)
                self.log.append((method, target, 200))
                return keep
            code, _, message = fail.partition(":")  # "400:phone must be a phone number": that answer
            status = int(code)
            await self._send(writer, status, {"error": message or f"injected failure {status}"}, keep)
            self.log.append((method, target, status))
            return keep

        try:
            status, body = self._route(method, parts.path, query, raw, headers)
        except HttpError as exc:
            status, body = exc.status, {"error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - a bug answers 500, the server lives on
            log.exception("booking server: %s %s", method, target)
            status, body = 500, {"error": f"internal error: {exc}"}
        self.log.append((method, target, status))
        await self._send(writer, status, body, keep)
        return keep

    def _route(self, method: str, path: str, query: dict, raw: bytes, headers: dict) -> tuple[int, dict]:
        assert self.db is not None

        def body() -> dict:
            try:
                value = json.loads(raw.decode("utf-8")) if raw else None
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise HttpError(400, "body must be JSON") from None
            if not isinstance(value, dict):
                raise HttpError(400, "body must be a JSON object")
            return value

        if path == "/health" and method == "GET":
            return 200, {"ok": True, "requests": self.requests}
        if path == "/slots":
            if method != "GET":
                raise HttpError(405, f"{method} not allowed on /slots")
            day = _parse_date(query.get("date"))
            free = self.db.free_slots(day.isoformat())
            if query.get("near"):
                free = _nearest(free, _parse_time(query["near"]), query.get("limit", "2"))
            return 200, {"date": day.isoformat(), "slots": free}
        if path == "/appointments":
            if method == "POST":
                return 201, self.db.book(body())
            if method == "GET":
                if not query.get("phone") and not query.get("name"):
                    raise HttpError(400, "phone or name is required")
                return 200, self.db.find(query.get("phone", ""), query.get("name", ""))
            raise HttpError(405, f"{method} not allowed on /appointments")
        m = _APPT_RE.match(path)
        if m:
            appt_id = int(m.group(1))
            if m.group(2):
                if method != "POST":
                    raise HttpError(405, f"{method} not allowed on {path}")
                return 200, self.db.move(appt_id, body())
            if method == "DELETE":
                return 200, self.db.cancel(appt_id)
            raise HttpError(405, f"{method} not allowed on {path}")
        raise HttpError(404, f"no such path {path}")

    async def _send(self, writer: asyncio.StreamWriter, status: int, body: dict, keep: bool) -> None:
        await self._send_raw(writer, status, json.dumps(body).encode(), "application/json", keep)

    @staticmethod
    async def _send_raw(writer: asyncio.StreamWriter, status: int, data: bytes, ctype: str, keep: bool) -> None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Status"
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(data)}\r\n"
                f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n")
        writer.write(head.encode("latin-1") + data)
        await writer.drain()


class BookingServerThread:
    """The server on its own event loop in a daemon thread, for sync code (the demo, sync tests)."""

    def __init__(self, db_path: str = ":memory:", *, host: str = "127.0.0.1", port: int = 0,
                 faults: Faults | None = None):
        self.server = BookingServer(db_path, host=host, port=port, faults=faults)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="booking-server", daemon=True)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> "BookingServerThread":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> "BookingServerThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


CLINIC_INFO = {
    "hours": None,  # from the example agent's [hours]: one source
    "address": "12 Harbour Street, next to the pharmacy; parking behind the building.",
    "emergencies": "For a dental emergency outside opening hours, call the on-call dentist at 555 0100.",
}


def clinic_info(topic: str) -> dict:
    """A python tool of the example agent: the clinic's standing answers."""
    if topic not in CLINIC_INFO:
        raise ValueError(f"no information about {topic!r}")
    answer = CLINIC_INFO[topic] if topic != "hours" else f"We're open {example_hours().describe()}."
    return {"topic": topic, "answer": answer}


def clinic_tools(base_url: str) -> list[ToolSpec]:
    """The example agent's tools (as its agent file declares them) against a booking server at
    ``base_url``, plus ``clinic_info``, an example of a python tool."""
    agent = load_agent(EXAMPLE_AGENT, {"vars.booking_url": base_url.rstrip("/")})
    info = ToolSpec(name="clinic_info", description="Opening hours, address or emergency advice.", kind="python",
                    entry="appliance.agent.examples.clinic:clinic_info",
                    args_schema={"type": "object", "properties": {"topic": {"enum": sorted(CLINIC_INFO)}},
                                 "required": ["topic"]})
    return [*agent.tools, info]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance.agent.examples.clinic",
                                     description="The example dental clinic's booking system (HTTP JSON API).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099, help="0 picks a free port (printed on start)")
    parser.add_argument("--db", default=":memory:", help="SQLite file (default: in memory)")
    parser.add_argument("--delay-ms", type=int, default=0, help="answer every request this late")
    parser.add_argument("--fail-with", default=None, help="answer every request with this status "
                                                          "(or 'garbage' / 'drop')")
    parser.add_argument("--fail-times", type=int, default=None, help="only the first N requests fail")
    args = parser.parse_args(argv)

    async def serve() -> None:
        faults = Faults(delay_ms=args.delay_ms, fail_with=args.fail_with, fail_times=args.fail_times)
        server = BookingServer(args.db, host=args.host, port=args.port, faults=faults)
        await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"listening on {server.url}", flush=True)
        try:
            await stop.wait()
        finally:
            await server.stop()

    try:
        asyncio.run(serve())
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
