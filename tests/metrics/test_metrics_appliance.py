"""/metrics of the whole appliance during and after a real call: sipd, asrd, ttsd and agentd on
the CPU defaults under the dev supervisor (`appliancectl up`) with the example receptionist and
its booking system; SIPp calls and asks the opening hours in speech streamed as PCMU; the
endpoint is scraped over HTTP and parsed with prometheus_client's parser. Then asrd is killed
-9: the supervisor restarts it and the restart is counted."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from metricsutil import metrics_config, scrape, wait_for
from test_dashboard import dashboard_names

from appliance.agent.examples.clinic import BookingServerThread, install_example_agent
from appliance.bench.calldrive import caller_voice, write_ulaw_wav
from appliance.bench.sipdrive import Service, free_port, sipp, sipp_counts
from appliance.metrics.series import CATALOGUE, STAGES

pytestmark = pytest.mark.skipif(shutil.which("sipp") is None, reason="scripts/test installs sip-tester")

SERVICES = ("sipd", "asrd", "agentd", "ttsd")


def all_up(s) -> bool:
    return all(s.value("appliance_up", service=n) == 1 for n in SERVICES)


def test_metrics_of_a_real_call_and_a_restart(sandbox, tmp_path):
    port = metrics_config(sandbox)
    sip_port = free_port()
    cfg = sandbox["config"]
    cfg.write_text(cfg.read_text() + f'\n[sip]\nbind = "127.0.0.1"\nport = {sip_port}\n'
                   'rtp_port_min = 28400\nrtp_port_max = 28599\n')
    question = caller_voice("What time are you open on Saturday?")
    caller = np.concatenate([np.zeros(8000 * 9, np.int16), question, np.zeros(8000 * 10, np.int16)])
    write_ulaw_wav(tmp_path / "caller.wav", caller)
    log = tmp_path / "up.log"
    with BookingServerThread(str(tmp_path / "bookings.db")) as booking:
        install_example_agent(Path(sandbox["root"]) / "agents", booking.url)
        up = subprocess.Popen([sys.executable, "-m", "appliance", "--config", str(cfg), "up"],
                              stdout=subprocess.DEVNULL, stderr=open(log, "w"))
        try:
            ready = wait_for(port, all_up, timeout=120, what="every service up")
            for name in SERVICES:
                assert ready.value("appliance_service_restarts_total", service=name) == 0
            assert ready.value("appliance_active_calls") == 0
            # every series of the catalogue is on the real endpoint (some without samples yet)
            declared = ready.declared()
            assert not {s.name for s in CATALOGUE} - declared, sorted({s.name for s in CATALOGUE} - declared)
            assert not dashboard_names() - {n for s in CATALOGUE if s.name in declared for n in s.samples()}

            proc = sipp("uac_speak.xml", sip_port, background=True, cwd=str(tmp_path),
                        extra=["-d", str(len(caller) // 8)], timeout=60)
            during = wait_for(port, lambda s: s.value("appliance_active_calls") == 1
                              and s.value("appliance_rtp_packets_received_total") > 0, timeout=15, what="the call")
            assert during.value("appliance_agent_conversations") == 1
            time.sleep(1.0)
            later = scrape(port)
            assert later.value("appliance_active_calls") == 1
            assert later.value("appliance_rtp_packets_received_total") > during.value("appliance_rtp_packets_received_total")
            assert later.value("appliance_rtp_packets_sent_total") > during.value("appliance_rtp_packets_sent_total")

            out, _ = proc.communicate(timeout=90)
            assert sipp_counts(out) == (1, 0), out[-2000:]
            after = wait_for(port, lambda s: s.value("appliance_calls_total", outcome="completed") == 1
                             and s.value("appliance_active_calls") == 0, timeout=20, what="the call counted")
            # the caller's question was a turn: every stage of it is in the histograms
            for stage in STAGES:
                assert after.value("appliance_turn_latency_seconds_count", stage=stage) >= 1, (stage, after.text)
            total = after.value("appliance_turn_latency_seconds_sum", stage="total")
            assert 0.1 < total < 30, total
            assert after.value("appliance_asr_finals_total") >= 1
            assert after.value("appliance_tts_turns_total") >= 2  # the greeting and the answer
            rx = after.value("appliance_rtp_packets_received_total")
            assert rx > 50 * 15, rx  # ~22 s of caller audio at 50 packets/s
            assert after.value("appliance_rtp_packets_lost_total") < rx * 0.02
            assert after.value("appliance_rtp_call_jitter_seconds_count") == 1
            assert after.value("appliance_ring_overrun_frames_total", reader="asrd", ring="in") == 0
            assert after.value("appliance_calls_total", outcome="error") == 0

            # kill -9 asrd: the supervisor restarts it; /metrics shows the restart and asrd back up
            asrd_pid = Service(sandbox, "asrd").status().pid
            os.kill(asrd_pid, signal.SIGKILL)
            back = wait_for(port, lambda s: s.value("appliance_service_restarts_total", service="asrd") == 1
                            and all_up(s), timeout=90, what="asrd restarted and up")
            assert back.value("appliance_service_restarts_total", service="sipd") == 0
            assert back.value("appliance_calls_total", outcome="completed") == 1  # agentd's counts survive
            assert Service(sandbox, "asrd").status().pid != asrd_pid
        finally:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(30)
            except subprocess.TimeoutExpired:
                up.kill()
