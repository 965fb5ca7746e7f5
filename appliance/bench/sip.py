"""`appliancectl bench sip`: N concurrent SIPp calls against a real sipd, RTP both ways.

SIPp (`-rtp_echo`) sends every RTP packet it receives straight back, so each call carries a
full 50 packet/s stream in each direction, and what sipd's jitter buffers count as lost is
the round trip's loss. Calls ramp up at `--rate`, each lasts `--seconds`; figures come from
SIPp's own statistics (answered/failed), sipd's per-call metrics on `call.ended` (loss,
jitter, late frames), and sipd's CPU time from /proc.
"""

from __future__ import annotations

import os
import shutil
import time

from ..bus.messages import CallEnded
from .sipdrive import EventLog, Sipd, make_sandbox, sipp, sipp_counts
from .stats import summarize, table

TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def run(calls: int = 100, seconds: float = 30.0, rate: float = 10.0, codec: str = "PCMU") -> dict:
    if shutil.which("sipp") is None:
        raise RuntimeError("sipp is not installed (Debian package sip-tester; scripts/test installs it)")
    pt = {"PCMU": 0, "PCMA": 8, "G722": 9}[codec]
    sandbox = make_sandbox()
    sipd = Sipd(sandbox, max_calls=calls + 10).start()
    events = EventLog(sipd.run_dir)
    try:
        time.sleep(0.3)
        cpu0, t0 = _cpu_seconds(sipd.proc.pid), time.monotonic()
        proc = sipp("uac_echo.xml", sipd.port, background=True, cwd=str(sandbox["root"]), calls=calls,
                    limit=calls, rate=rate, keys={"codec_pt": pt}, timeout=seconds + calls / rate + 60,
                    extra=["-d", str(int(seconds * 1000)), "-rtp_echo"])
        peak, samples = 0, []
        while proc.poll() is None:
            events.collect(timeout=0.5)
            try:
                st = sipd.status(timeout=0.5)
                peak = max(peak, int(st.details.get("active_calls", 0)))
                samples.append(st.details)
            except Exception:
                pass
        wall, cpu = time.monotonic() - t0, _cpu_seconds(sipd.proc.pid) - cpu0
        out, err = proc.communicate()
        ok, failed = sipp_counts(out)
        events.collect(until=lambda e: len([x for x in events.events if isinstance(x, CallEnded)]) >= ok + failed
                       or False, timeout=10) if ok + failed else None
    finally:
        events.close()
        log = sipd.stop()
        shutil.rmtree(sandbox["root"], ignore_errors=True)
        shutil.rmtree(sandbox["shm_dir"], ignore_errors=True)
    ended = [e.metrics for e in events.of(CallEnded)]
    rx = sum(m.get("rx_packets", 0) for m in ended)
    lost = sum(m.get("lost", 0) for m in ended)
    return {
        "bench": "sip", "calls": calls, "seconds": seconds, "rate": rate, "codec": codec, "cpus": os.cpu_count(),
        "answered": ok, "failed": failed, "peak_concurrent": peak,
        "rtp_rx_packets": rx, "rtp_tx_packets": sum(m.get("tx_packets", 0) for m in ended),
        "rtp_lost": lost, "loss_pct": 100.0 * lost / (rx + lost) if rx + lost else 0.0,
        "rtp_late": sum(m.get("late", 0) for m in ended),
        "jitter_ms": summarize([m.get("jitter_ms", 0.0) for m in ended]),
        "sipd_cpu_pct": 100.0 * cpu / wall if wall else 0.0, "wall_s": wall,
        "errors_in_log": sum("ERROR" in line for line in log.splitlines()),
    }


def render(r: dict) -> str:
    j = r["jitter_ms"]
    rows = [
        ("calls (concurrent peak)", f"{r['calls']} ({r['peak_concurrent']})"),
        ("codec / call length", f"{r['codec']} / {r['seconds']:g} s at {r['rate']:g} calls/s"),
        ("answered / failed", f"{r['answered']} / {r['failed']}"),
        ("RTP packets in / out", f"{r['rtp_rx_packets']} / {r['rtp_tx_packets']}"),
        ("RTP lost (round trip)", f"{r['rtp_lost']} ({r['loss_pct']:.3f} %)"),
        ("RTP late", f"{r['rtp_late']}"),
        ("jitter per call p50 / p95 / max", f"{j['p50']:.2f} / {j['p95']:.2f} / {j['max']:.2f} ms"),
        ("sipd CPU", f"{r['sipd_cpu_pct']:.1f} % of a core"),
        ("errors in sipd log", f"{r['errors_in_log']}"),
    ]
    return table(rows)
