"""agentd's own series, asked over its real control socket: a real agentd with the example
receptionist, the bus stand-ins for sipd/asrd/ttsd, and a booking system that is too slow, so
the booking tool times out mid-call."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from metricsutil import Scrape

from appliance.agent.examples.clinic import BookingServerThread, Faults, install_example_agent
from appliance.bench.agentdrive import StandInLine
from appliance.bench.sipdrive import Service
from appliance.bus.messages import MetricsRequest, ServiceMetrics


def metrics(svc: Service) -> Scrape:
    reply = svc.control(MetricsRequest())
    assert isinstance(reply, ServiceMetrics) and reply.state == "ready"
    return Scrape(reply.text)


def test_turn_latency_tool_failures_and_outcome(sandbox, tmp_path):
    with BookingServerThread(str(tmp_path / "bookings.db")) as booking:
        booking.server.faults = Faults(delay_ms=5000)
        install_example_agent(Path(sandbox["root"]) / "agents", booking.url)
        line = StandInLine(sandbox["run_dir"], sandbox["shm_dir"])
        svc = Service(sandbox, "agentd").start()
        try:
            before = metrics(svc)
            assert before.value("appliance_turn_latency_seconds_count", stage="total") == 0
            tools = {s.labels["tool"] for s in before.find("appliance_tool_calls_total")}
            assert "book_appointment" in tools and "unknown" not in tools  # the agent file's tools, at 0
            assert before.value("appliance_calls_total", outcome="completed") == 0

            line.start_call("m1")
            line.wait_says("m1", 1)
            assert metrics(svc).value("appliance_agent_conversations") == 1
            day = dt.date.today() + dt.timedelta(days=3)
            while day.weekday() >= 5:
                day += dt.timedelta(days=1)
            for text in ("book an appointment please", "my name is Bob Stone", f"{day.strftime('%A')} the {day.day}",
                         "at 2 pm", "yes"):
                n = len(line.calls["m1"].turns())
                line.caller_says("m1", text, seconds=0.5)
                line.wait_says("m1", n + 1, timeout=20)
            line.wait(lambda: metrics(svc).find("appliance_tool_failures_total", status="timeout"), timeout=20,
                      what="a tool timeout in the metrics")
            line.hang_up("m1")
            # the booking never happened: not "completed", and the task is counted as not reached
            line.wait(lambda: metrics(svc).value("appliance_calls_total", outcome="abandoned") == 1, timeout=15,
                      what="the call counted as abandoned")
            after = metrics(svc)
            assert after.value("appliance_calls_total", outcome="completed") == 0
            assert after.value("appliance_tasks_total", goal="book_appointment", result="not-reached") == 1
            for stage in ("endpoint", "asr", "decide", "tts_first_audio", "total"):
                assert after.value("appliance_turn_latency_seconds_count", stage=stage) >= 4, stage
            assert after.value("appliance_turn_latency_seconds_sum", stage="total") > 0
            (failed,) = after.find("appliance_tool_failures_total", status="timeout")
            tool = failed.labels["tool"]
            assert failed.value >= 1 and after.value("appliance_tool_calls_total", tool=tool) >= failed.value
            # the timed-out call took the tool's whole deadline: it sits above the 1 s bucket
            count = after.value("appliance_tool_call_duration_seconds_count", tool=tool)
            assert count >= 1 and after.value("appliance_tool_call_duration_seconds_bucket", tool=tool, le="1.0") < count
            assert after.value("appliance_agent_conversations") == 0
            assert after.value("appliance_call_record_failures_total") == 0
        finally:
            svc.stop()
            line.close()
