"""The catalogue's names follow the Prometheus conventions, and the exporter merges what the
services answer over real ZeroMQ control sockets: a service that answers nothing, or nonsense,
costs only its own series; restarts come from the supervisor or from systemd."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest
import zmq.asyncio
from metricsutil import Scrape
from prometheus_client import generate_latest

from appliance.bus import ControlServer, endpoints
from appliance.bus.messages import MetricsRequest, ServiceMetrics, StatusRequest, SupervisorStatus
from appliance.config import parse
from appliance.metrics.exporter import Exporter
from appliance.metrics.series import CATALOGUE, STAGES, AgentMetrics, exported_samples


def test_names_follow_prometheus_conventions():
    assert len({s.name for s in CATALOGUE}) == len(CATALOGUE)
    for s in CATALOGUE:
        assert s.name.startswith("appliance_") and s.name == s.name.lower(), s.name
        assert s.kind in ("counter", "gauge", "histogram"), s
        assert s.name.endswith("_total") == (s.kind == "counter"), s.name
        if s.kind == "histogram":
            assert s.name.endswith("_seconds"), s.name  # every histogram here is a duration
        assert not {"call", "call_id", "caller", "callee", "utterance", "turn"} & set(s.labels), s
        assert s.help and s.source


def test_agent_series_observe_turns_tools_and_outcomes():
    class Service:  # what AgentMetrics reads of agentd at scrape time
        conversations = {"c1": object()}
        counters = {"control_errors": 2}

    m = AgentMetrics(Service())
    m.turn({"endpoint": 240.0, "asr": 98.5, "decide": 8.0, "tts_first_audio": 0.0, "total": 555.0})
    m.call_ended("completed")
    m.call_ended("something-new")  # an outcome outside the known set must not grow the labels
    s = Scrape(generate_latest(m.registry).decode())
    assert s.value("appliance_turn_latency_seconds_count", stage="endpoint") == 1
    assert s.value("appliance_turn_latency_seconds_sum", stage="total") == pytest.approx(0.555)
    assert s.value("appliance_turn_latency_seconds_bucket", stage="asr", le="0.1") == 1
    assert s.value("appliance_turn_latency_seconds_count", stage="tts_first_audio") == 0  # 0 = not measured
    assert {x.labels["stage"] for x in s.find("appliance_turn_latency_seconds_count")} == set(STAGES)
    assert s.value("appliance_calls_total", outcome="completed") == 1
    assert s.value("appliance_calls_total", outcome="error") == 1
    assert s.value("appliance_calls_total", outcome="transferred") == 0  # every outcome exists from the start
    assert s.value("appliance_agent_conversations") == 1
    assert s.value("appliance_agent_control_errors_total") == 2
    assert not [x for x in s.samples if x.name.endswith("_created")]


def test_tool_calls_are_counted_timed_and_failures_labelled_by_status():
    from appliance.agent.tools import ToolRunner, ToolSpec

    class Service:
        conversations: dict = {}
        counters: dict = {}

    m = AgentMetrics(Service())
    tools = m.tools(ToolRunner([ToolSpec(name="lookup", kind="python", entry=f"{__name__}:_fine"),
                                ToolSpec(name="broken", kind="python", entry=f"{__name__}:_broken")]))
    assert tools.describe()  # the rest of the runner is still there

    async def calls():
        assert (await tools.call("lookup", {})).status == "ok"
        assert (await tools.call("broken", {})).status == "error"
        assert (await tools.call("made_up_by_the_llm", {})).status == "unknown-tool"

    asyncio.run(calls())
    s = Scrape(generate_latest(m.registry).decode())
    assert s.value("appliance_tool_calls_total", tool="lookup") == 1
    assert s.value("appliance_tool_calls_total", tool="broken") == 1
    assert s.value("appliance_tool_failures_total", tool="broken", status="error") == 1
    assert s.value("appliance_tool_failures_total", tool="unknown", status="unknown-tool") == 1
    assert not s.find("appliance_tool_failures_total", tool="lookup")
    assert s.value("appliance_tool_call_duration_seconds_count", tool="lookup") == 1


def _fine(**_):
    return {"ok": True}


def _broken(**_):
    raise RuntimeError("backend down")


class FakeBox:
    """Control sockets answering as services and the supervisor would, on a loop of their own."""

    def __init__(self, run_dir: str, answers: dict):
        self.run_dir, self.answers = run_dir, answers
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._serve(),), daemon=True)
        self.thread.start()
        assert self.ready.wait(5)

    async def _serve(self):
        self.ctx = zmq.asyncio.Context()
        self.stop = asyncio.Event()
        servers = []
        for name, answer in self.answers.items():
            srv = ControlServer(self.ctx, endpoints.control(self.run_dir, name))
            if name == "supervisor":
                srv.on(StatusRequest, lambda _m, a=answer: a)
            else:
                srv.on(MetricsRequest, lambda _m, a=answer: a)
            servers.append((srv, asyncio.create_task(srv.serve())))
        self.ready.set()
        await self.stop.wait()
        for srv, task in servers:
            task.cancel()
            srv.close()
        self.ctx.term()

    def close(self):
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(5)


def test_exporter_merges_services_and_marks_the_silent_ones_down(tmp_path):
    run_dir = str(tmp_path)
    config = parse(f'[paths]\nrun_dir = "{run_dir}"\n')
    ring = "# TYPE appliance_ring_overrun_frames_total counter\n"
    box = FakeBox(run_dir, {
        "sipd": ServiceMetrics(service="sipd", state="ready", uptime_s=12.5, text=(
            "# TYPE appliance_active_calls gauge\nappliance_active_calls 2\n" + ring
            + 'appliance_ring_overrun_frames_total{reader="sipd",ring="out"} 0\n')),
        "asrd": ServiceMetrics(service="asrd", state="ready", uptime_s=3.0, text=(
            ring + 'appliance_ring_overrun_frames_total{reader="asrd",ring="in"} 7\n')),
        "ttsd": ServiceMetrics(service="ttsd", state="ready", uptime_s=1.0, text="this is { not the format"),
        "supervisor": SupervisorStatus(pid=1, children=[{"name": n, "restarts": r} for n, r in
                                                        (("sipd", 0), ("asrd", 2), ("agentd", 1), ("ttsd", 0))]),
    })
    # agentd: a socket file with nobody behind it (killed -9): it must cost the 0.3 s deadline, no more
    open(os.path.join(run_dir, "agentd.ctl"), "w").close()
    try:
        s = Scrape(generate_latest(Exporter(config, timeout=0.3).registry).decode())
    finally:
        box.close()
    assert [s.value("appliance_up", service=n) for n in ("sipd", "asrd", "agentd", "ttsd")] == [1, 1, 0, 1]
    assert s.value("appliance_service_uptime_seconds", service="sipd") == 12.5
    assert s.value("appliance_active_calls") == 2
    assert s.value("appliance_ring_overrun_frames_total", reader="asrd", ring="in") == 7
    assert s.value("appliance_ring_overrun_frames_total", reader="sipd", ring="out") == 0
    assert s.text.count("# TYPE appliance_ring_overrun_frames_total counter") == 1  # one family, two series
    assert s.value("appliance_service_restarts_total", service="asrd") == 2
    assert s.value("appliance_service_restarts_total", service="agentd") == 1
    assert {x.name for x in s.samples} <= exported_samples()


def test_restarts_come_from_systemd_when_it_runs_the_units(tmp_path, monkeypatch):
    """No dev supervisor answers: the counts are the units' NRestarts, as `status` shows them
    (one reader of `systemctl show`, runtime/units.py); a unit not installed has no series."""
    show = ("Id=appliance-sipd.service\nLoadState=loaded\nNRestarts=0\n\n"
            "Id=appliance-asrd.service\nLoadState=loaded\nNRestarts=3\n\n"
            "Id=appliance-agentd.service\nLoadState=not-found\nNRestarts=0\n\n"
            "Id=appliance-ttsd.service\nLoadState=loaded\nNRestarts=\n")
    fake = tmp_path / "systemctl"
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/args\nprintf '{show}'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    config = parse(f'[paths]\nrun_dir = "{tmp_path}/run"\n')
    monkeypatch.setattr("appliance.runtime.units.booted", lambda: True)
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    s = Scrape(generate_latest(Exporter(config, timeout=0.3).registry).decode())
    assert "appliance_service_restarts_total" not in s.text  # sipd is not a unit's process: nothing to ask
    assert not (tmp_path / "args").exists()
    monkeypatch.setenv("INVOCATION_ID", "0123456789abcdef")
    s = Scrape(generate_latest(Exporter(config, timeout=0.3).registry).decode())
    assert (tmp_path / "args").read_text().split()[-4:] == [f"appliance-{n}.service" for n in
                                                             ("sipd", "asrd", "agentd", "ttsd")]
    assert s.value("appliance_service_restarts_total", service="sipd") == 0
    assert s.value("appliance_service_restarts_total", service="asrd") == 3
    assert s.value("appliance_service_restarts_total", service="ttsd") == 0
    assert s.value("appliance_service_restarts_total", service="agentd") is None
    assert [s.value("appliance_up", service=n) for n in ("sipd", "asrd", "agentd", "ttsd")] == [0, 0, 0, 0]
