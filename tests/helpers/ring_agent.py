"""A real separate process that writes or reads a ring, driven by the ring tests.

    ring_agent.py create SHM CALL SECONDS        create the ring (as sipd would) and wait on stdin
    ring_agent.py write SHM CALL N [crash|close|hold]
        attach as writer, write N frames whose samples all equal (seq % 32768), print "wrote N",
        then: crash = SIGKILL itself mid-call; close = end the stream; hold = wait on stdin, then close
    ring_agent.py read SHM CALL [--wait-line]
        read until the stream ends or the writer is dead; print one JSON line of what it saw
"""

import json
import os
import signal
import sys
import time

import numpy as np

from appliance.ipc import RingError, RingReader, RingWriter, create_ring


def frame_value(seq: int) -> int:
    return seq % 32768


def main(argv: list[str]) -> None:
    action, shm, call = argv[:3]
    if action == "create":
        create_ring(shm, call, "in", seconds=float(argv[3]))
        print("created", flush=True)
        sys.stdin.readline()
        return
    if action == "write":
        n, then = int(argv[3]), argv[4]
        try:
            w = RingWriter.attach(shm, call, "in")
        except RingError as exc:
            print(f"refused: {exc}", flush=True)
            sys.exit(3)
        start = w.seq
        for seq in range(start, start + n):
            w.write(np.full(320, frame_value(seq), dtype=np.int16))
        print(f"wrote {start} {start + n}", flush=True)
        if then == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        if then == "hold":
            sys.stdin.readline()
        w.close(end_of_stream=True)
        return
    if action == "read":
        r = RingReader(shm, call, "in")
        print("attached", flush=True)
        if "--wait-line" in argv:
            sys.stdin.readline()  # let the test write before this reader looks
        seqs, bad = [], 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            f = r.read()
            if f is None:
                if r.writer_state() in ("closed", "dead") and r.available() == 0:
                    break
                time.sleep(0.001)
                continue
            if not (f.pcm == frame_value(f.seq)).all() or not f.valid():
                bad += 1
            seqs.append(f.seq)
        print(json.dumps({
            "seqs": seqs, "lost": r.lost, "bad": bad, "closed": r.writer_closed(),
            "writer_alive": r.writer_alive(), "writer_state": r.writer_state(),
        }), flush=True)
        return
    raise SystemExit(f"unknown action {action}")


if __name__ == "__main__":
    main(sys.argv[1:])
