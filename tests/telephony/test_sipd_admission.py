"""Admission by capacity: sipd takes the calls the box was measured to hold (sip.max_calls =
"auto" reads state_dir/capacity.json), closes the door while the last minute's turns are over
their latency target, and gives every caller beyond that the overflow policy's answer."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import threading
import time

import pytest
from sipd_harness import EventLog, Sipd, sipp
from test_sipd_hostile import ask, request

from appliance.bench import burst
from appliance.bus import endpoints
from appliance.bus.control import ControlServer
from appliance.bus.messages import CallAnswered, CallHangup, ServiceStatus, StatusRequest
from appliance.config import load, parse
from appliance.telephony import admission
from appliance.telephony.admission import UNMEASURED_CALLS, Admission, capacity_path, write_capacity

needs_sipp = pytest.mark.skipif(shutil.which("sipp") is None, reason="scripts/test installs sip-tester")
SWEEP = [{"calls": 2, "voice_to_voice_ms": {"p95": 800.0}, "failed_turns": 0},
         {"calls": 4, "voice_to_voice_ms": {"p95": 1400.0}, "failed_turns": 0}]


def _config(tmp_path, sip: str = ""):
    return parse(f'[paths]\nstate_dir = "{tmp_path}/state"\n[sip]\n{sip}\n')


# -- the capacity a sweep measured ------------------------------------------------------------------
def test_auto_takes_the_measured_capacity_and_follows_a_new_sweep(tmp_path, monkeypatch):
    config = _config(tmp_path)
    assert config.sip.max_calls == "auto"
    unmeasured = Admission(config)
    assert unmeasured.max_calls == UNMEASURED_CALLS and unmeasured.capacity.source == "unmeasured"
    path = write_capacity(config, 2, 1000.0, SWEEP)
    assert json.loads(path.read_text())["runs"][1] == {"calls": 4, "p95_ms": 1400.0, "failed_turns": 0}
    gate = Admission(config)
    assert gate.max_calls == 2 and gate.capacity.source.startswith("measured ")
    monkeypatch.setattr(admission, "RECHECK_S", 0.0)
    write_capacity(config, 3, 1000.0, SWEEP)
    os.utime(path, (time.time() + 5, time.time() + 5))  # a new sweep, even within the same second
    assert gate.max_calls == 3  # a running sipd picks it up


def test_a_configured_number_overrides_the_measurement(tmp_path):
    config = _config(tmp_path, "max_calls = 12")
    write_capacity(config, 2, 1000.0, SWEEP)
    assert Admission(config).max_calls == 12 and Admission(config).capacity.source == "config"


@pytest.mark.parametrize("content", ["{not json", '{"max_calls": 0}', '{"max_calls": "many"}', '{"calls": 3}'])
def test_a_broken_capacity_file_is_said_and_the_box_takes_the_unmeasured_default(tmp_path, caplog, content):
    config = _config(tmp_path)
    capacity_path(config).parent.mkdir(parents=True)
    capacity_path(config).write_text(content)
    assert Admission(config).max_calls == UNMEASURED_CALLS
    assert "capacity.json is unreadable" in caplog.text and "bench latency --sweep" in caplog.text


def test_the_door_closes_over_the_latency_target_and_opens_again(tmp_path):
    gate = Admission(_config(tmp_path, "turn_p95_target_ms = 900.0"))
    assert not gate.overloaded
    gate.report_turn_p95(1200.0)
    assert gate.overloaded and gate.status()["turn_p95_ms"] == 1200.0
    gate.report_turn_p95(None)  # no turns in the last minute: nothing to hold against new calls
    assert not gate.overloaded
    gate.report_turn_p95(850.0)
    assert not gate.overloaded
    off = Admission(_config(tmp_path, "turn_p95_target_ms = 0.0"))
    off.report_turn_p95(99_999.0)
    assert not off.overloaded


# -- a burst at a sipd of capacity 4 -------------------------------------------------------------
@pytest.mark.parametrize("policy, expect", [
    ("reject", {"admitted": 4, "refused_503": 8, "redirected_302": 0, "announced": 0}),
    ("redirect", {"admitted": 4, "refused_503": 0, "redirected_302": 8, "announced": 0}),
    # as many announcements at once as calls, then 503: a burst of announcements stays cheap
    ("announce", {"admitted": 4, "refused_503": 4, "redirected_302": 0, "announced": 4}),
])
def test_a_burst_beyond_capacity_gets_the_overflow_policy_and_no_dead_air(tmp_path, policy, expect):
    config = _config(tmp_path, 'overflow_target = "sip:queue@127.0.0.1:5999"')
    r = burst.run(config, calls=12, seconds=1.2, capacity=4, hold_s=6.0, overflow=policy)
    assert {k: r[k] for k in expect} == expect, r
    assert r["no_answer"] == 0 and r["errors"] == [], r
    assert r["announced_dead_air"] == 0, r  # every announced caller heard the busy message
    assert r["sipd"]["max_calls"] == 4 and r["sipd"]["capacity_source"].startswith("measured")
    assert r["sipd"]["refused_busy"] == 8


# -- live: the last minute's turn p95 over the target ---------------------------------------------
class StandInAgentd:
    """agentd's control socket answering StatusRequest as agentd does, with the turn p95 the
    test sets: the real agentd's latency cannot be steered from outside."""

    def __init__(self, run_dir: str):
        self.p95: float | None = 400.0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(run_dir,), daemon=True)
        self.thread.start()
        assert self.ready.wait(5)

    def _run(self, run_dir: str) -> None:
        import zmq.asyncio

        asyncio.set_event_loop(self.loop)
        ctx = zmq.asyncio.Context()
        os.makedirs(run_dir, exist_ok=True)
        server = ControlServer(ctx, endpoints.control(run_dir, "agentd"))
        server.on(StatusRequest, lambda m: ServiceStatus(
            service="agentd", pid=os.getpid(), state="ready", uptime_s=1.0, version="stand-in",
            details={} if self.p95 is None else {"total_p95_ms": self.p95}))
        self.task = self.loop.create_task(server.serve())
        self.loop.call_soon(self.ready.set)
        try:
            self.loop.run_until_complete(self.task)
        except asyncio.CancelledError:
            pass
        finally:
            server.close()
            ctx.term()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(5)


def _until(predicate, timeout: float = 6.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@needs_sipp
def test_while_turns_are_over_the_target_new_calls_get_the_overflow(sandbox, tmp_path):
    cfg = sandbox["config"]
    cfg.write_text(cfg.read_text().replace("[services]\n", '[services]\nenabled = ["sipd", "agentd"]\n', 1))
    agentd = StandInAgentd(str(load(cfg).paths.run_dir))
    sipd = Sipd(sandbox, max_calls=4, extra_sip="pipeline_timeout_s = 60\nturn_p95_target_ms = 1000.0\n").start()
    events = EventLog(sipd.run_dir)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    try:
        time.sleep(0.3)
        held = sipp("uac_echo.xml", sipd.port, background=True, cwd=str(tmp_path), keys={"codec_pt": 0},
                    extra=["-d", "60000"])  # held until the test hangs it up
        events.collect(until=lambda e: isinstance(e, CallAnswered), timeout=10)
        assert ask(udp, sipd.port, request("OPTIONS")).status == 200  # 1 of 4, turns at 400 ms
        agentd.p95 = 2500.0
        assert _until(lambda: sipd.status().details["overloaded"]), sipd.status().details
        refused = ask(udp, sipd.port, request("INVITE", extra="Contact: <sip:x@127.0.0.1:9>\r\n"))
        assert refused.status == 503 and refused.headers.get("Retry-After") == "5"
        assert ask(udp, sipd.port, request("OPTIONS")).status == 503  # a dispatcher moves on meanwhile
        assert sipd.status().details["refused_overloaded"] == 1 and sipd.status().details["active_calls"] == 1
        agentd.p95 = None  # the slow minute has passed
        assert _until(lambda: not sipd.status().details["overloaded"])
        assert ask(udp, sipd.port, request("OPTIONS")).status == 200
        sipd.control(CallHangup(call_id=events.of(CallAnswered)[0].call_id))
        held.communicate(timeout=30)
        assert "turn p95 2500 ms is over sip.turn_p95_target_ms" in sipd.output()
    finally:
        udp.close()
        events.close()
        sipd.stop()
        agentd.stop()
