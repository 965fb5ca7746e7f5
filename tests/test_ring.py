"""Audio rings across real processes: one writer, several readers, overrun, writer death,
takeover by a new writer, stale rings from a crashed run, and corrupt files."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from testutil import ring_agent

from appliance.audio import FRAME_SAMPLES
from appliance.ipc import RingError, RingReader, RingWriter, create_ring, inspect, ring_path, sweep_stale


def read_result(proc) -> dict:
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def expect_line(proc, prefix: str) -> str:
    line = proc.stdout.readline().strip()
    assert line.startswith(prefix), (line, proc.stderr.read() if proc.poll() is not None else "")
    return line


def test_one_writer_two_readers_in_other_processes_see_every_frame(shm_dir):
    owner = ring_agent("create", shm_dir, "call1", "10")
    expect_line(owner, "created")
    readers = [ring_agent("read", shm_dir, "call1") for _ in range(2)]
    for r in readers:
        expect_line(r, "attached")
    writer = ring_agent("write", shm_dir, "call1", "300", "close")
    expect_line(writer, "wrote 0 300")
    assert writer.wait(10) == 0
    for r in readers:
        got = read_result(r)
        assert got["seqs"] == list(range(300))  # every frame, in order, none twice
        assert got["lost"] == 0 and got["bad"] == 0
        assert got["closed"] is True
    owner.communicate("\n", timeout=10)


def test_reader_that_falls_behind_counts_lost_frames_and_resumes_at_the_oldest_safe_one(shm_dir):
    owner = ring_agent("create", shm_dir, "slow", "0.2")  # 10 slots: 8 readable behind the writer
    expect_line(owner, "created")
    reader = ring_agent("read", shm_dir, "slow", "--wait-line")
    expect_line(reader, "attached")
    writer = ring_agent("write", shm_dir, "slow", "50", "hold")
    expect_line(writer, "wrote 0 50")
    reader.stdin.write("\n")
    reader.stdin.flush()
    writer.communicate("\n", timeout=10)  # now end the stream
    got = read_result(reader)
    assert got["lost"] == 42
    assert got["seqs"] == list(range(42, 50))
    assert got["bad"] == 0
    owner.communicate("\n", timeout=10)


def test_writer_crash_leaves_the_ring_readable_and_a_new_writer_continues_the_numbering(shm_dir):
    owner = ring_agent("create", shm_dir, "crash", "10")
    expect_line(owner, "created")
    writer = ring_agent("write", shm_dir, "crash", "30", "crash")
    expect_line(writer, "wrote 0 30")
    assert writer.wait(10) == -signal.SIGKILL

    reader = ring_agent("read", shm_dir, "crash")
    got = read_result(reader)
    assert got["seqs"] == list(range(30)) and got["bad"] == 0
    assert got["writer_alive"] is False and got["closed"] is False  # died, did not end the call
    assert got["writer_state"] == "dead"

    successor = ring_agent("write", shm_dir, "crash", "5", "close")
    expect_line(successor, "wrote 30 35")
    assert successor.wait(10) == 0
    with RingReader(shm_dir, "crash", "in") as r:
        assert [f.seq for f in r.frames()] == list(range(35))
        assert r.writer_closed()
    owner.communicate("\n", timeout=10)


def test_second_writer_is_refused_while_the_first_is_alive(shm_dir):
    owner = ring_agent("create", shm_dir, "busy", "10")
    expect_line(owner, "created")
    first = ring_agent("write", shm_dir, "busy", "3", "hold")
    expect_line(first, "wrote 0 3")
    second = ring_agent("write", shm_dir, "busy", "3", "close")
    out, _ = second.communicate(timeout=10)
    assert second.returncode == 3
    assert "already has a live writer" in out and str(first.pid) in out
    first.communicate("\n", timeout=10)
    owner.communicate("\n", timeout=10)


def test_stale_rings_from_a_crashed_run_are_swept_and_live_ones_kept(shm_dir):
    crashed = ring_agent("create", shm_dir, "old", "1")
    expect_line(crashed, "created")
    crashed.send_signal(signal.SIGKILL)
    crashed.wait(10)
    live = RingWriter.create(shm_dir, "current", "in", seconds=1)
    Path(shm_dir, "appliance-junk-out").write_bytes(b"not a ring at all" * 20)

    stale = {i.call_id: i for i in inspect(shm_dir) if i.stale}
    assert set(stale) == {"old", "junk"}
    assert "bad magic" in stale["junk"].error

    removed = sweep_stale(shm_dir)
    assert sorted(i.call_id for i in removed) == ["junk", "old"]
    assert sorted(p.name for p in Path(shm_dir).iterdir()) == ["appliance-current-in"]
    live.close()


def test_frames_are_views_into_shared_memory_and_report_when_lapped(shm_dir):
    w = RingWriter.create(shm_dir, "view", "in", seconds=0.2)
    r = RingReader(shm_dir, "view", "in")
    w.write(np.full(FRAME_SAMPLES, 7, dtype=np.int16))
    f = r.read()
    assert f.pcm.base is not None and not f.pcm.flags.owndata  # a view, not a copy
    assert not f.pcm.flags.writeable  # readers cannot scribble on the caller's audio
    assert f.valid() and int(f.pcm[0]) == 7
    for _ in range(w.slots):
        w.write(np.zeros(FRAME_SAMPLES, dtype=np.int16))
    assert not f.valid()  # the writer reused that slot: the holder can tell
    r.close()
    w.close()


def test_capture_time_and_sequence_travel_with_each_frame(shm_dir):
    w = RingWriter.create(shm_dir, "stamp", "in", seconds=1)
    r = RingReader(shm_dir, "stamp", "in", from_now=True)
    for i in range(3):
        w.write(np.zeros(FRAME_SAMPLES, dtype=np.int16), capture_ns=1_000 + i)
    assert [(f.seq, f.capture_ns) for f in r.frames()] == [(0, 1000), (1, 1001), (2, 1002)]
    with pytest.raises(ValueError, match="320 samples"):
        w.write(np.zeros(160, dtype=np.int16))
    r.close()
    w.close()


def test_create_never_clobbers_an_existing_ring(shm_dir):
    w = RingWriter.create(shm_dir, "dup", "in", seconds=1)
    w.write(np.ones(FRAME_SAMPLES, dtype=np.int16))
    with pytest.raises(RingError, match="already exists"):
        create_ring(shm_dir, "dup", "in")
    with RingReader(shm_dir, "dup", "in") as r:
        assert r.head == 1
    assert not [p for p in os.listdir(shm_dir) if p.endswith(".tmp")]
    w.close()


@pytest.mark.parametrize("call_id", ["../etc/passwd", "", "a/b", "-x", "x" * 65])
def test_call_ids_that_could_escape_the_directory_are_refused(shm_dir, call_id):
    with pytest.raises(RingError, match="not allowed"):
        ring_path(shm_dir, call_id, "in")


def test_unreadable_rings_give_clear_errors(shm_dir):
    with pytest.raises(RingError, match="does not exist"):
        RingReader(shm_dir, "nope", "in")
    Path(shm_dir, "appliance-short-in").write_bytes(b"\0" * 10)
    with pytest.raises(RingError, match="truncated"):
        RingReader(shm_dir, "short", "in")
    w = RingWriter.create(shm_dir, "cut", "in", seconds=1)
    w.close()
    with open(ring_path(shm_dir, "cut", "in"), "r+b") as f:
        f.truncate(4096)
    with pytest.raises(RingError, match="does not match its header"):
        RingReader(shm_dir, "cut", "in")


def test_writer_exclusivity_holds_within_one_process_too(shm_dir):
    w = RingWriter.create(shm_dir, "twice", "in", seconds=1)
    with pytest.raises(RingError, match=f"already has a live writer \\(pid {os.getpid()}\\)"):
        RingWriter.attach(shm_dir, "twice", "in")
    w.close(end_of_stream=False)  # detached, call still on: a successor may attach
    RingWriter.attach(shm_dir, "twice", "in").close()


def test_a_writer_failing_inside_with_detaches_without_ending_the_call(shm_dir):
    create_ring(shm_dir, "oops", "out", seconds=1)
    with pytest.raises(ZeroDivisionError):
        with RingWriter.attach(shm_dir, "oops", "out") as w:
            w.write(np.zeros(FRAME_SAMPLES, dtype=np.int16))
            1 / 0
    with RingReader(shm_dir, "oops", "out") as r:
        assert r.writer_state() == "none"
    with RingWriter.attach(shm_dir, "oops", "out") as successor:
        assert successor.write(np.zeros(FRAME_SAMPLES, dtype=np.int16)) == 1
    with pytest.raises(RingError, match="closed by its writer: the call has ended"):
        RingWriter.attach(shm_dir, "oops", "out")


def test_sweep_skips_what_is_not_a_ring_file(shm_dir):
    Path(shm_dir, "appliance-adir-in").mkdir()
    assert inspect(shm_dir) == [] and sweep_stale(shm_dir) == []
    assert Path(shm_dir, "appliance-adir-in").is_dir()


def test_frame_of_a_closed_reader_is_reported_invalid_not_an_error(shm_dir):
    w = RingWriter.create(shm_dir, "gone", "in", seconds=1)
    w.write(np.zeros(FRAME_SAMPLES, dtype=np.int16))
    r = RingReader(shm_dir, "gone", "in")
    f = r.read()
    r.close()
    assert f.valid() is False
    w.close()
