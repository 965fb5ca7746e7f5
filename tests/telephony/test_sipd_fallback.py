"""No caller waits in silence: with asrd/ttsd/agentd not answering, sipd rescues its calls by
itself — a transfer to the fallback target, or its own message and a hang-up."""

from __future__ import annotations

import pytest
from sipd_harness import EventLog, Sipd, sipp, sipp_counts

from appliance.bus.messages import CallEnded, TransferProgress


@pytest.fixture
def lone_sipd(sandbox):
    started = []

    def start(extra: str) -> Sipd:
        s = Sipd(sandbox, extra_sip="pipeline_timeout_s = 1.0\n" + extra).start()
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def test_with_no_pipeline_the_caller_hears_the_message_and_is_hung_up(lone_sipd, tmp_path):
    sipd = lone_sipd("")
    events = EventLog(sipd.run_dir)
    out = sipp("uac_wait_bye.xml", sipd.port, cwd=str(tmp_path), timeout=40)
    assert sipp_counts(out) == (1, 0), out.stdout[-2000:]
    events.collect(until=lambda e: isinstance(e, CallEnded), timeout=10)
    (ended,) = events.of(CallEnded)
    assert ended.reason == "fallback-message"
    assert ended.metrics["tx_packets"] >= 100  # the message went out as RTP (2 s or more of it)
    details = sipd.status().details
    assert details["rescued_message"] == 1 and "agentd" in details["pipeline_down"]
    assert "AI pipeline down" in sipd.output()
    events.close()


@pytest.mark.parametrize("final, reason", [("200 OK", "transferred"), ("486 Busy Here", "fallback-message")])
def test_with_a_fallback_target_the_call_is_transferred_or_else_gets_the_message(lone_sipd, tmp_path, final, reason):
    sipd = lone_sipd('fallback_target = "sip:frontdesk@127.0.0.1"')
    events = EventLog(sipd.run_dir)
    out = sipp("uac_transfer.xml", sipd.port, cwd=str(tmp_path), keys={"final_status": final}, timeout=40,
               extra=["-trace_msg", "-message_file", str(tmp_path / "pbx.log")])
    assert sipp_counts(out) == (1, 0), out.stdout[-2000:]
    events.collect(until=lambda e: isinstance(e, CallEnded), timeout=15)
    assert events.of(CallEnded)[0].reason == reason
    assert events.of(TransferProgress)[-1].final
    refer_to = next(ln for ln in (tmp_path / "pbx.log").read_text().splitlines() if ln.startswith("Refer-To:"))
    assert "sip:frontdesk@127.0.0.1" in refer_to and "X-Appliance-Fallback=" in refer_to
    events.close()
