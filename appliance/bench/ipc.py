"""`appliancectl bench ipc`: N concurrent call rings, one writer process (as sipd), one reader
process (as asrd) that reads every ring.

The writer paces like live calls: every 20 ms one frame per ring, each call on its own phase
(as RTP from independent callers arrives), stamped with ``monotonic_ns`` as it is written. The reader sweeps all rings, takes each new
frame as a view, checks its content (the writer fills it from the sequence number, so a torn
or misplaced frame is caught), and records ``now - capture_ns``: writer→reader latency.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import tempfile
import time

import numpy as np

from ..audio import FRAME_NS
from ..ipc import RingReader, RingWriter, create_ring
from .stats import summarize, table


def _call_ids(calls: int) -> list[str]:
    return [f"bench{i:04d}" for i in range(calls)]


def _writer(shm_dir: str, calls: int, seconds: float, burst: bool, go, results) -> None:
    writers = [RingWriter.attach(shm_dir, c, "in") for c in _call_ids(calls)]
    ticks = int(seconds * 1e9 // FRAME_NS)
    # Independent calls' packets arrive at independent phases: call i is due i/N of a frame
    # after call 0. --burst puts every call on the same phase (the worst case for a reader).
    phase = [0 if burst else i * FRAME_NS // calls for i in range(calls)]
    late = 0
    go.wait()
    t0 = time.monotonic_ns()
    for k in range(ticks):
        base, i = t0 + k * FRAME_NS, 0
        value = k % 32768
        while i < calls:
            now = time.monotonic_ns()
            due = base + phase[i]
            if now < due:
                time.sleep(max(due - now, 20_000) / 1e9)
                continue
            if now - due > FRAME_NS:
                late += 1  # the writer itself fell a frame behind (machine overloaded)
            while i < calls and base + phase[i] <= now:  # everything due by now
                w = writers[i]
                w.next_slot().fill(value)
                w.commit()
                i += 1
    for w in writers:
        w.close(end_of_stream=True)
    results.put(("writer", {"frames_written": ticks * calls, "late_frames": late}))


def _reader(shm_dir: str, calls: int, seconds: float, poll_s: float, go, results) -> None:
    readers = [RingReader(shm_dir, c, "in") for c in _call_ids(calls)]
    latencies = np.empty(int(seconds * 1e9 // FRAME_NS + 10) * calls, dtype=np.int64)
    n = corrupt = sweeps = 0
    go.wait()
    cpu0, t0 = time.process_time(), time.monotonic()
    open_readers = list(readers)
    next_eos_check = next_dead_check = 0.0
    while open_readers:
        got = 0
        for r in open_readers:
            while (f := r.read()) is not None:
                now = time.monotonic_ns()
                latencies[n] = now - f.capture_ns
                n += 1
                got += 1
                expect = f.seq % 32768
                if f.pcm[0] != expect or f.pcm[-1] != expect:
                    corrupt += 1
        sweeps += 1
        if not got:
            now = time.monotonic()
            if now >= next_eos_check:  # which streams ended: every 50 ms is plenty
                next_eos_check = now + 0.05
                check_dead = now >= next_dead_check  # writer death reads /proc: once a second
                if check_dead:
                    next_dead_check = now + 1.0
                open_readers = [r for r in open_readers if r.available() or not (
                    r.writer_closed() or (check_dead and r.writer_state() == "dead"))]
            time.sleep(poll_s)
    wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    results.put(("reader", {
        "frames_read": n, "lost": sum(r.lost for r in readers), "corrupt": corrupt, "sweeps": sweeps,
        "wall_s": wall, "reader_cpu_pct": 100 * cpu / wall if wall else 0.0,
        "latency_us": summarize(latencies[:n], 1e-3),
    }))


def run(calls: int = 200, seconds: float = 10.0, shm_dir: str = "/dev/shm", poll_us: float = 200.0,
        burst: bool = False) -> dict:
    """Run the benchmark in a private directory under ``shm_dir``; returns the figures."""
    work = tempfile.mkdtemp(prefix="appliance-bench-", dir=shm_dir)
    ctx = mp.get_context("spawn")
    procs: list = []
    try:
        for c in _call_ids(calls):
            create_ring(work, c, "in", seconds=max(2.0, seconds / 5))
        go, results = ctx.Event(), ctx.Queue()
        procs = [
            ctx.Process(target=_reader, args=(work, calls, seconds, poll_us / 1e6, go, results), name="bench-reader"),
            ctx.Process(target=_writer, args=(work, calls, seconds, burst, go, results), name="bench-writer"),
        ]
        for p in procs:
            p.start()
        time.sleep(0.5)  # both have mapped their rings
        go.set()
        out: dict = {}
        for _ in procs:
            _, figures = results.get(timeout=seconds + 60)
            out.update(figures)
        fps = out["frames_read"] / out["wall_s"] if out["wall_s"] else 0.0
        return {"bench": "ipc", "calls": calls, "seconds": seconds, "poll_us": poll_us,
                "arrival": "burst" if burst else "spread", "cpus": os.cpu_count(), "frames_per_s": fps, **out}
    finally:
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()
        shutil.rmtree(work, ignore_errors=True)


def render(r: dict) -> str:
    lat = r["latency_us"]
    rows = [
        ("calls (rings)", f"{r['calls']}"),
        ("duration", f"{r['seconds']:g} s"),
        ("frame arrival", "all calls on one phase (burst)" if r["arrival"] == "burst" else "calls on spread phases"),
        ("frames written / read", f"{r['frames_written']} / {r['frames_read']}"),
        ("frames lost (overrun) / corrupt", f"{r['lost']} / {r['corrupt']}"),
        ("throughput", f"{r['frames_per_s']:.0f} frames/s"),
        ("writer late frames", f"{r['late_frames']}"),
        ("reader CPU", f"{r['reader_cpu_pct']:.1f} % of a core"),
        ("latency p50 / p95 / p99", f"{lat['p50']:.0f} / {lat['p95']:.0f} / {lat['p99']:.0f} µs"),
        ("latency max", f"{lat['max']:.0f} µs"),
    ]
    return table(rows)
