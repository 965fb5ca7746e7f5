"""The tool runner against the example clinic's real booking server on 127.0.0.1.

Timing assertions are deliberately loose (this box is shared and noisy): they check that a
deadline bounds a call, never how fast anything is.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from appliance.agent.examples.clinic import BookingServerThread, Faults, clinic_tools
from appliance.agent.tools import ToolResult, ToolRunner, ToolSpec, call_with_filler, check_spec, validate_args

MONDAY = "2030-01-07"
TUESDAY = "2030-01-08"
SATURDAY = "2030-01-12"
SLACK_S = 1.0  # what a loaded 2-core box may add to any bound


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def server(tmp_path):
    with BookingServerThread(str(tmp_path / "clinic.sqlite")) as srv:
        yield srv


def slots_tool(url: str, **kw) -> ToolSpec:
    kw.setdefault("args_schema", {"type": "object", "properties": {"date": {"type": "string"}},
                                  "required": ["date"]})
    return ToolSpec(name=kw.pop("name", "slots"), url=f"{url}/slots", method="GET", **kw)


# -- booking round trip ------------------------------------------------------------------------
def test_booking_round_trip(server):
    runner = ToolRunner(clinic_tools(server.url))

    async def go():
        free = await runner.call("check_slots", {"date": MONDAY})
        assert free.status == "ok", free
        assert free.data["slots"][0] == "09:00" and free.data["slots"][-1] == "16:30"
        assert len(free.data["slots"]) == 16 and free.attempts == 1

        weekend = await runner.call("check_slots", {"date": SATURDAY})
        assert weekend.status == "ok" and weekend.data["slots"] == []

        booked = await runner.call("book_appointment", {"name": "Ada Lovelace", "phone": "+1 555 123 4567",
                                                        "date": MONDAY, "time": "10:00", "reason": "cleaning"})
        assert booked.status == "ok", booked
        appt = booked.data["id"]
        assert booked.data == {"id": appt, "date": MONDAY, "time": "10:00"}
        assert booked.http_status == 201

        free = await runner.call("check_slots", {"date": MONDAY})
        assert "10:00" not in free.data["slots"] and len(free.data["slots"]) == 15
        near = await runner.call("check_slots", {"date": MONDAY, "near": "10:00"})
        assert near.data["slots"] == ["09:30", "10:30"]  # what to offer for the taken ten o'clock
        early = await runner.call("check_slots", {"date": MONDAY, "near": "07:00"})
        assert early.data["slots"] == ["09:00", "09:30"]
        bad = await runner.call("check_slots", {"date": MONDAY, "near": "25:00"})
        assert bad.http_status == 400 and "near must be HH:MM" in bad.error

        clash = await runner.call("book_appointment", {"name": "Bob", "phone": "5550000", "date": MONDAY,
                                                       "time": "10:00"})
        assert clash.status == "error" and clash.http_status == 409 and clash.attempts == 1
        assert "already taken" in clash.error and clash.data is None

        mine = await runner.call("find_appointments", {"phone": "15551234567"})
        assert mine.status == "ok"
        assert [(a["id"], a["date"], a["time"], a["reason"]) for a in mine.data["appointments"]] == [
            (appt, MONDAY, "10:00", "cleaning")]

        moved = await runner.call("move_appointment", {"id": appt, "date": TUESDAY, "time": "14:30"})
        assert moved.status == "ok" and moved.data == {"id": appt, "date": TUESDAY, "time": "14:30"}
        free = await runner.call("check_slots", {"date": MONDAY})
        assert "10:00" in free.data["slots"]

        gone = await runner.call("cancel_appointment", {"id": appt})
        assert gone.status == "ok" and gone.data == {"id": appt, "cancelled": True}
        again = await runner.call("cancel_appointment", {"id": appt})
        assert again.status == "error" and again.http_status == 404
        mine = await runner.call("find_appointments", {"phone": "+1 (555) 123-4567"})
        assert mine.data["appointments"] == []

        info = await runner.call("clinic_info", {"topic": "hours"})
        assert info.status == "ok" and "Monday to Friday" in info.data["answer"]

    run(go())
    status = runner.status()
    assert status["check_slots"]["state"] == "closed" and status["check_slots"]["calls"] == 7
    assert status["cancel_appointment"]["failures"] == 0  # a 404 is an answer, not a dead system


def test_server_validation_is_400(server):
    runner = ToolRunner(clinic_tools(server.url))

    async def go():
        bad = {"name": "A", "phone": "555 1234", "date": "2030-02-30", "time": "10:00"}
        r = await runner.call("book_appointment", bad)
        assert r.status == "error" and r.http_status == 400 and "not a real date" in r.error
        r = await runner.call("book_appointment", {**bad, "date": SATURDAY})
        assert r.http_status == 400 and "closed on Saturdays" in r.error
        r = await runner.call("book_appointment", {**bad, "date": MONDAY, "time": "10:15"})
        assert r.http_status == 400 and "not a slot" in r.error
        r = await runner.call("book_appointment", {**bad, "date": MONDAY, "phone": "call me"})
        assert r.http_status == 400 and "phone" in r.error

    run(go())


# -- validation of arguments and of specs ------------------------------------------------------
SCHEMA = {"type": "object",
          "properties": {"date": {"type": "string"}, "party": {"type": "integer"}, "price": {"type": "number"},
                         "urgent": {"type": "boolean"}, "topic": {"enum": ["hours", "address"]}},
          "required": ["date"]}


def test_validate_args():
    assert validate_args(SCHEMA, {"date": "x", "party": 2, "price": 2, "urgent": False, "topic": "hours"}) == []
    assert validate_args(SCHEMA, {"date": "x", "price": 2.5}) == []
    assert validate_args(SCHEMA, {}) == ["missing required argument 'date'"]
    (p,) = validate_args(SCHEMA, {"date": 7})
    assert "'date'" in p and "expected string" in p and "integer" in p
    (p,) = validate_args(SCHEMA, {"date": "x", "party": True})  # a bool is not an integer
    assert "'party'" in p and "expected integer" in p
    (p,) = validate_args(SCHEMA, {"date": "x", "party": 2.0})
    assert "'party'" in p
    (p,) = validate_args(SCHEMA, {"date": "x", "topic": "prices"})
    assert "'topic'" in p and "not one of" in p
    (p,) = validate_args(SCHEMA, {"date": "x", "colour": "red"})
    assert "unknown argument 'colour'" in p
    assert len(validate_args(SCHEMA, {"party": "2", "colour": 1})) == 3
    assert validate_args(SCHEMA, ["date"]) == ["arguments must be an object, got array"]


def test_invalid_args_and_unknown_tool_never_reach_the_server(server):
    runner = ToolRunner(clinic_tools(server.url))

    async def go():
        r = await runner.call("book_appointment", {"name": "A", "phone": "5551234", "date": MONDAY})
        assert r.status == "invalid-args" and "missing required argument 'time'" in r.error
        assert r.error.startswith("book_appointment:") and r.attempts == 0
        r = await runner.call("check_slots", {"date": 20300107})
        assert r.status == "invalid-args" and "expected string" in r.error
        r = await runner.call("check_slots", {"date": "7 January"})
        assert r.status == "invalid-args" and "does not match" in r.error
        r = await runner.call("check_slots", {"date": MONDAY, "dentist": "Dr Who"})
        assert r.status == "invalid-args" and "unknown argument 'dentist'" in r.error
        r = await runner.call("clinic_info", {"topic": "prices"})
        assert r.status == "invalid-args" and "not one of" in r.error
        r = await runner.call("order_pizza", {})
        assert r.status == "unknown-tool" and "order_pizza" in r.error and "check_slots" in r.error

    run(go())
    assert server.server.requests == 0
    assert runner.status()["check_slots"]["calls"] == 0


def test_check_spec_names_tool_and_key():
    assert all(check_spec(s) == [] for s in clinic_tools("http://127.0.0.1:1"))
    problems = check_spec({"name": "book", "kind": "http", "url": "ftp://x", "method": "FETCH", "timeout_s": 0,
                           "retries": -1, "colour": "red",
                           "args_schema": {"type": "object",
                                           "properties": {"when": {"type": "date"}, "n": {"type": "integer",
                                                                                          "enum": ["a"]}},
                                           "required": ["who"]}})
    text = "\n".join(problems)
    assert all(p.startswith("tool 'book':") for p in problems), problems
    for needle in ("unknown key 'colour'", "key 'method'", "key 'url'", "key 'timeout_s' must be > 0",
                   "key 'retries' must be >= 0", "properties.when.type", "properties.n.enum",
                   "required: 'who' is not in properties"):
        assert needle in text, (needle, text)
    assert "key 'entry'" in "\n".join(check_spec({"name": "py", "kind": "python"}))
    assert "not \"package.module:function\"" in "\n".join(check_spec({"name": "py", "kind": "python",
                                                                      "entry": "os.path"}))
    (p,) = check_spec({"name": "mv", "url": "http://h/appointments/{id}/move", "method": "POST"})
    assert "placeholder {id}" in p
    assert "key 'name'" in "\n".join(check_spec({"url": "http://h/"}))
    with pytest.raises(ValueError, match="tool 'x': key 'kind'"):
        ToolRunner([ToolSpec(name="x", kind="grpc")])
    with pytest.raises(ValueError, match="defined twice"):
        ToolRunner([ToolSpec(name="x", url="http://h/"), ToolSpec(name="x", url="http://h/")])
    spec = ToolSpec.from_dict({"name": "t", "url": "http://h/t", "method": "post", "headers": {"X-Key": "k"}})
    assert spec.method == "post" and not spec.is_idempotent
    assert ToolRunner([spec]).describe()[0]["name"] == "t"


# -- deadlines and retries ---------------------------------------------------------------------
def test_timeout_with_retries_respects_deadline(server):
    server.server.faults = Faults(delay_ms=3000)
    runner = ToolRunner([slots_tool(server.url, timeout_s=0.3, retries=2, retry_backoff_s=0.02),
                         ToolSpec(name="book", url=f"{server.url}/appointments", method="POST", timeout_s=0.3,
                                  retries=2, args_schema={"type": "object", "properties": {}},
                                  breaker_failures=10)])

    async def go():
        t0 = time.monotonic()
        r = await runner.call("slots", {"date": MONDAY})
        took = time.monotonic() - t0
        assert r.status == "timeout" and 2 <= r.attempts <= 3, r  # 3 unless the box stalls
        assert took < 0.9 + SLACK_S and r.duration_ms < (0.9 + SLACK_S) * 1000
        assert took > 0.5  # it did wait for the retries

        t0 = time.monotonic()
        r = await runner.call("slots", {"date": MONDAY}, deadline_s=0.4)  # the caller's deadline is tighter
        took = time.monotonic() - t0
        assert r.status == "timeout" and r.attempts <= 2, r
        assert took < 0.4 + SLACK_S

        r = await runner.call("book", {})  # a POST that timed out may have happened: no retry
        assert r.status == "timeout" and r.attempts == 1, r

    run(go())


def test_503_retried_then_ok(server):
    runner = ToolRunner([slots_tool(server.url, retries=1, retry_backoff_s=0.01)])
    server.server.faults = Faults(fail_with=503, fail_times=1)
    r = run(runner.call("slots", {"date": MONDAY}))
    assert r.status == "ok" and r.attempts == 2 and len(r.data["slots"]) == 16, r
    assert server.server.requests == 2

    server.server.faults = Faults(fail_with=503, fail_times=5)
    r = run(runner.call("slots", {"date": MONDAY}))
    assert r.status == "error" and r.attempts == 2 and r.http_status == 503 and "HTTP 503" in r.error
    assert server.server.requests == 4


def test_502_retried_only_when_idempotent(server):
    post = ToolSpec(name="post", url=f"{server.url}/slots", method="POST", retries=2, retry_backoff_s=0.01,
                    headers={"X-Fail-With": "502"})
    get = slots_tool(server.url, name="get", retries=2, retry_backoff_s=0.01, headers={"X-Fail-With": "502"})
    runner = ToolRunner([post, get])
    assert run(runner.call("post", {})).attempts == 1
    assert run(runner.call("get", {"date": MONDAY})).attempts == 3
    assert server.server.requests == 4


def test_400_not_retried(server):
    runner = ToolRunner([slots_tool(server.url, retries=3, retry_backoff_s=0.01, breaker_failures=2)])

    async def go():
        for _ in range(4):
            r = await runner.call("slots", {"date": "tomorrow"})
            assert r.status == "error" and r.attempts == 1 and r.http_status == 400, r
            assert "date must be YYYY-MM-DD" in r.error

    run(go())
    assert server.server.requests == 4
    assert runner.status()["slots"]["state"] == "closed"  # the system answered: not a breaker failure


def test_bad_response_body(server):
    runner = ToolRunner([slots_tool(server.url, retries=2)])
    server.server.faults = Faults(fail_with="garbage")
    r = run(runner.call("slots", {"date": MONDAY}))
    assert r.status == "error" and r.error.startswith("bad response") and "not JSON" in r.error, r
    assert r.attempts == 1 and r.data is None
    server.server.faults = Faults(fail_with="array")
    r = run(runner.call("slots", {"date": MONDAY}))
    assert r.status == "error" and r.error == "bad response: expected a JSON object, got array"


def test_dropped_connection_is_an_error(server):
    runner = ToolRunner([slots_tool(server.url, retries=1, retry_backoff_s=0.01)])
    server.server.faults = Faults(fail_with="drop", fail_times=1)
    r = run(runner.call("slots", {"date": MONDAY}))
    assert r.status == "ok" and r.attempts == 2, r  # reset on a GET: retried
    server.server.faults = Faults(fail_with="drop")
    r = run(runner.call("slots", {"date": MONDAY}))
    assert r.status == "error" and "reset" in r.error


# -- the circuit breaker -----------------------------------------------------------------------
def test_connection_refused_opens_the_circuit(tmp_path):
    db = str(tmp_path / "clinic.sqlite")
    with BookingServerThread(db) as first:
        port = first.server.port
    # The server is gone: its port refuses connections.
    spec = slots_tool(f"http://127.0.0.1:{port}", retries=1, retry_backoff_s=0.01, breaker_failures=3,
                      breaker_open_s=0.3)
    runner = ToolRunner([spec])

    async def go(n=1):
        return [await runner.call("slots", {"date": MONDAY}) for _ in range(n)]

    for r in run(go(3)):
        assert r.status == "error" and "connection refused" in r.error and r.attempts == 2, r
    st = runner.status()["slots"]
    assert st["state"] == "open" and st["failures"] == 3 and st["calls"] == 3
    assert "connection refused" in st["last_error"]

    with BookingServerThread(db, port=port) as srv:  # back up, but the circuit is still open
        for r in run(go(3)):
            assert r.status == "circuit-open" and r.attempts == 0 and "connection refused" in r.error, r
        assert srv.server.requests == 0
        time.sleep(0.4)
        assert runner.status()["slots"]["state"] == "half-open"
        (probe,) = run(go())
        assert probe.status == "ok" and probe.attempts == 1, probe
        assert runner.status()["slots"]["state"] == "closed" and runner.status()["slots"]["failures"] == 0
        run(go(2))
        assert srv.server.requests == 3
    assert runner.status()["slots"]["calls"] == 9


def test_failed_probe_reopens_and_only_one_probe_at_a_time(server):
    spec = slots_tool(server.url, retries=0, breaker_failures=2, breaker_open_s=0.3)
    runner = ToolRunner([spec])
    server.server.faults = Faults(fail_with=503)

    async def go():
        for _ in range(2):
            assert (await runner.call("slots", {"date": MONDAY})).status == "error"
        assert (await runner.call("slots", {"date": MONDAY})).status == "circuit-open"
        await asyncio.sleep(0.4)
        probe = await runner.call("slots", {"date": MONDAY})  # still failing: open again at once
        assert probe.status == "error" and runner.status()["slots"]["state"] == "open"
        assert (await runner.call("slots", {"date": MONDAY})).status == "circuit-open"
        assert server.server.requests == 3

        server.server.faults = Faults(delay_ms=300)  # healthy but slow
        await asyncio.sleep(0.4)
        probe, other = await asyncio.gather(runner.call("slots", {"date": MONDAY}),
                                            runner.call("slots", {"date": MONDAY}))
        assert probe.status == "ok" and other.status == "circuit-open", (probe, other)
        assert "probe" in other.error
        assert server.server.requests == 4
        assert runner.status()["slots"]["state"] == "closed"

    run(go())


# -- python entry points -----------------------------------------------------------------------
PY_TOOLS = '''
import asyncio, time

def ok(name="world"):
    return {"greeting": f"hello {name}"}

async def aok(n):
    await asyncio.sleep(0.01)
    return {"double": n * 2}

def boom():
    raise RuntimeError("the CRM is on fire")

def junk():
    return ["not", "a", "dict"]

def unjsonable():
    return {"when": object()}

def slow():
    time.sleep(0.5)
    return {"late": True}
'''


@pytest.fixture
def py_tools(tmp_path, monkeypatch):
    (tmp_path / "clinic_py_tools.py").write_text(textwrap.dedent(PY_TOOLS))
    monkeypatch.syspath_prepend(str(tmp_path))

    def spec(name, entry, props=None, **kw):
        return ToolSpec(name=name, kind="python", entry=entry,
                        args_schema={"type": "object", "properties": props or {}}, **kw)

    return ToolRunner([
        spec("ok", "clinic_py_tools:ok", {"name": {"type": "string"}}),
        spec("aok", "clinic_py_tools:aok", {"n": {"type": "integer"}}),
        spec("boom", "clinic_py_tools:boom"),
        spec("junk", "clinic_py_tools:junk"),
        spec("unjsonable", "clinic_py_tools:unjsonable"),
        spec("slow", "clinic_py_tools:slow", timeout_s=0.1),
        spec("nomodule", "no_such_package.crm:lookup"),
        spec("nofunc", "clinic_py_tools:nothing_here"),
    ])


def test_python_entry_points(py_tools):
    async def go():
        r = await py_tools.call("ok", {"name": "Ada"})
        assert r.status == "ok" and r.data == {"greeting": "hello Ada"} and r.attempts == 1
        r = await py_tools.call("aok", {"n": 21})
        assert r.status == "ok" and r.data == {"double": 42}
        r = await py_tools.call("boom", {})
        assert r.status == "error" and "RuntimeError: the CRM is on fire" in r.error
        r = await py_tools.call("junk", {})
        assert r.status == "error" and r.error.startswith("bad response") and "list" in r.error
        r = await py_tools.call("unjsonable", {})
        assert r.status == "error" and r.error.startswith("bad response")
        r = await py_tools.call("nomodule", {})
        assert r.status == "error" and "cannot import 'no_such_package.crm'" in r.error
        assert "ModuleNotFoundError" in r.error
        r = await py_tools.call("nofunc", {})
        assert r.status == "error" and "no callable 'nothing_here'" in r.error
        t0 = time.monotonic()
        r = await py_tools.call("slow", {})
        assert r.status == "timeout" and time.monotonic() - t0 < 0.1 + SLACK_S

    run(go())
    assert py_tools.status()["boom"]["last_error"].endswith("the CRM is on fire")


# -- filler ------------------------------------------------------------------------------------
def test_call_with_filler(server):
    runner = ToolRunner([slots_tool(server.url, name="slow", headers={"X-Delay-Ms": "600"}),
                         slots_tool(server.url, name="fast")])
    said: list[str] = []

    async def filler():
        said.append("One moment while I check that.")

    async def go():
        r = await call_with_filler(runner, "slow", {"date": MONDAY}, filler_after_s=0.1, on_filler=filler)
        assert r.status == "ok" and len(r.data["slots"]) == 16
        assert said == ["One moment while I check that."]
        said.clear()
        r = await call_with_filler(runner, "fast", {"date": MONDAY}, filler_after_s=0.1 + SLACK_S,
                                   on_filler=filler)
        assert r.status == "ok" and said == []
        sync_calls = []
        r = await call_with_filler(runner, "slow", {"date": MONDAY}, filler_after_s=0.1,
                                   on_filler=lambda: sync_calls.append(1))
        assert r.status == "ok" and sync_calls == [1]
        r = await call_with_filler(None, "slow", {}, on_filler=filler)
        assert isinstance(r, ToolResult) and r.status == "unknown-tool"

    run(go())


# -- the server as a process -------------------------------------------------------------------
def test_example_server_as_a_process(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    with subprocess.Popen([sys.executable, "-m", "appliance.agent.examples.clinic", "--port", "0",
                           "--db", str(tmp_path / "c.sqlite")], stdout=subprocess.PIPE, text=True, env=env) as proc:
        try:
            line = proc.stdout.readline()
            assert line.startswith("listening on http://127.0.0.1:"), line
            url = line.split()[-1]
            runner = ToolRunner(clinic_tools(url))
            r = run(runner.call("book_appointment", {"name": "Ada", "phone": "5551234", "date": MONDAY,
                                                     "time": "09:00"}))
            assert r.status == "ok" and r.data["time"] == "09:00", r
        finally:
            proc.terminate()
            assert proc.wait(10) == 0


def test_appointments_are_found_by_phone_else_by_name(server):
    runner = ToolRunner(clinic_tools(server.url))

    async def go():
        booked = await runner.call("book_appointment", {"name": "Peter Novak", "phone": "555 201 3344",
                                                        "date": MONDAY, "time": "10:00"})
        assert booked.ok, booked
        by_phone = await runner.call("find_appointments", {"phone": "5552013344"})
        other_phone = await runner.call("find_appointments", {"phone": "+15550000000", "name": "peter novak"})
        nobody = await runner.call("find_appointments", {"phone": "+15550000000", "name": "Ann Lee"})
        return by_phone, other_phone, nobody

    by_phone, other_phone, nobody = run(go())
    assert [a["name"] for a in by_phone.data["appointments"]] == ["Peter Novak"]
    assert [a["name"] for a in other_phone.data["appointments"]] == ["Peter Novak"]
    assert nobody.data["appointments"] == []
