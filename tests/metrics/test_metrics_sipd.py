"""sipd hosts the box's /metrics: a real sipd, a real SIPp call with RTP both ways, scraped over
HTTP like Prometheus does. asrd, ttsd and agentd are not running: they show as down, and the
endpoint still answers with everything sipd knows."""

from __future__ import annotations

import shutil
import socket
import time

import pytest
from metricsutil import metrics_config, scrape, wait_for

from appliance.bench.sipdrive import Service, Sipd, free_port, sipp, sipp_counts
from appliance.bus.messages import MetricsRequest, ServiceMetrics

pytestmark = pytest.mark.skipif(shutil.which("sipp") is None, reason="scripts/test installs sip-tester")


def test_sipd_serves_call_and_rtp_series_during_and_after_a_sipp_call(sandbox, tmp_path):
    port = metrics_config(sandbox)
    sipd = Sipd(sandbox).start()
    try:
        idle = scrape(port)
        assert idle.value("appliance_up", service="sipd") == 1
        for down in ("asrd", "agentd", "ttsd"):  # not running: 0, and no series of theirs
            assert idle.value("appliance_up", service=down) == 0
        assert idle.value("appliance_active_calls") == 0
        assert idle.value("appliance_rtp_packets_received_total") == 0
        assert idle.value("appliance_service_uptime_seconds", service="sipd") > 0
        assert idle.value("appliance_build_info", version="0.1.0") == 1
        assert not [s for s in idle.samples if s.name.endswith("_created")]

        proc = sipp("uac_echo.xml", sipd.port, background=True, cwd=str(tmp_path), keys={"codec_pt": 0},
                    extra=["-d", "4000", "-rtp_echo"])
        during = wait_for(port, lambda s: s.value("appliance_active_calls") == 1
                          and s.value("appliance_rtp_packets_received_total") > 0, timeout=10, what="a live call")
        time.sleep(1.0)
        later = scrape(port)
        assert later.value("appliance_active_calls") == 1
        # sipd sends comfort silence every 20 ms and SIPp echoes it: both counters climb mid-call
        assert later.value("appliance_rtp_packets_received_total") > during.value("appliance_rtp_packets_received_total")
        assert later.value("appliance_rtp_packets_sent_total") > during.value("appliance_rtp_packets_sent_total") > 0
        assert 0 <= later.value("appliance_rtp_jitter_max_seconds") < 0.1

        out, _ = proc.communicate(timeout=40)
        assert sipp_counts(out) == (1, 0), out[-2000:]
        after = wait_for(port, lambda s: s.value("appliance_active_calls") == 0, timeout=10, what="the call gone")
        # the ended call's packets stay in the totals (counters never go back)
        rx = after.value("appliance_rtp_packets_received_total")
        assert rx >= later.value("appliance_rtp_packets_received_total") and rx > 150  # ~4 s at 50/s
        assert after.value("appliance_rtp_packets_lost_total") == 0
        assert after.value("appliance_sip_calls_admitted_total") == 1
        assert after.value("appliance_rtp_call_jitter_seconds_count") == 1
        assert after.value("appliance_rtp_call_jitter_seconds_bucket", le="+Inf") == 1
        assert after.value("appliance_sip_calls_refused_total", reason="busy") == 0
        assert after.value("appliance_ring_overrun_frames_total", reader="sipd", ring="out") == 0
        # sipd's own answer over the bus is the same text the exporter merged
        reply = sipd.control(MetricsRequest())
        assert isinstance(reply, ServiceMetrics) and reply.state == "ready"
        assert "appliance_rtp_packets_received_total" in reply.text
    finally:
        sipd.stop()


def test_a_taken_metrics_port_leaves_sipd_answering_calls(sandbox, tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        cfg = sandbox["config"]
        cfg.write_text(cfg.read_text() + f"\n[metrics]\nport = {taken}\n")
        sipd = Sipd(sandbox).start()
        try:
            out = sipp("uac_echo.xml", sipd.port, cwd=str(tmp_path), keys={"codec_pt": 0}, extra=["-d", "300"])
            assert sipp_counts(out) == (1, 0)
            assert "cannot listen on 127.0.0.1:%d" % taken in sipd.output()
        finally:
            sipd.stop()


def test_metrics_disabled_serves_nothing_but_services_still_answer_over_the_bus(sandbox):
    port = free_port(socket.SOCK_STREAM)
    cfg = sandbox["config"]
    cfg.write_text(cfg.read_text() + f"\n[metrics]\nenabled = false\nport = {port}\n")
    sipd = Sipd(sandbox).start()
    try:
        with pytest.raises(OSError):
            scrape(port, timeout=1)
        assert "appliance_active_calls 0.0" in Service.control(sipd, MetricsRequest()).text
    finally:
        sipd.stop()
