"""kill -9 of asrd, ttsd or agentd in the middle of a real call: the call stays up, the
supervisor restarts the process, and the caller's next question is answered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.agent.examples.clinic import BookingServerThread, install_example_agent
from appliance.agent.records import CallRecords
from appliance.bench.calldrive import caller_wav, start_baresip
from appliance.bench.sipdrive import EventLog, Service, free_port
from appliance.bus.messages import CallEnded, TtsFinished

SERVICES = ("sipd", "asrd", "ttsd", "agentd")


def ready(sandbox) -> dict[str, int] | None:
    pids = {}
    for name in SERVICES:
        try:
            st = Service(sandbox, name).status(timeout=0.3)
        except Exception:
            return None
        if st.state != "ready":
            return None
        pids[name] = st.pid
    return pids


@pytest.mark.parametrize("victim", ["asrd", "ttsd", "agentd"])
def test_a_killed_service_is_restarted_and_the_conversation_goes_on(sandbox, tmp_path, victim):
    port = free_port()
    cfg = sandbox["config"]
    cfg.write_text(cfg.read_text() + f'\n[sip]\nbind = "127.0.0.1"\nport = {port}\n'
                   'rtp_port_min = 26200\nrtp_port_max = 26399\n')
    with BookingServerThread(str(tmp_path / "bookings.db")) as booking:
        install_example_agent(Path(sandbox["root"]) / "agents", booking.url)
        up = subprocess.Popen([sys.executable, "-m", "appliance", "--config", str(cfg), "up"],
                              stdout=subprocess.DEVNULL, stderr=open(tmp_path / "up.log", "w"))
        events = EventLog(str(sandbox["run_dir"]), services=SERVICES)
        try:
            deadline = time.monotonic() + 90
            while (pids := ready(sandbox)) is None:
                assert time.monotonic() < deadline and up.poll() is None, (tmp_path / "up.log").read_text()
                time.sleep(0.3)
            script = [(10.0, "What time are you open on Saturday?"), (16.0, "What is your address?")]
            _, ends, length = caller_wav(tmp_path / "phone", script, 12.0)
            phone = start_baresip(tmp_path / "phone", port, length)
            # After the answer to the first question has played: kill.
            events.collect(until=lambda e: isinstance(e, TtsFinished) and "Saturday" in e.spoken, timeout=40)
            os.kill(pids[victim], signal.SIGKILL)
            phone.wait(length + 30)
            events.collect(until=lambda e: isinstance(e, CallEnded), timeout=30)
            after = ready(sandbox)
            assert after is not None and after[victim] != pids[victim]  # restarted
            records = CallRecords(Path(sandbox["root"]) / "state" / "calls.db", readonly=True)
            (call,) = records.list_calls()
            turns = [(t.role, t.text) for t in records.get_call(call.id).turns]
            callers = [i for i, (role, _) in enumerate(turns) if role == "caller"]
            assert len(callers) >= 2 and "address" in turns[callers[-1]][1].lower(), turns
            answer = " ".join(text for role, text in turns[callers[-1] + 1:] if role == "agent")
            assert "Street" in answer or "street" in answer, turns
            assert events.of(CallEnded)[0].reason == "caller-hangup"  # the call itself never dropped
        finally:
            events.close()
            up.send_signal(signal.SIGINT)
            try:
                up.wait(30)
            except subprocess.TimeoutExpired:
                up.kill()
