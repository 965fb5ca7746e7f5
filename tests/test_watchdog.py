"""WATCHDOG=1 comes from the service's asyncio event loop, not from a thread: a real service
process whose loop is wedged (a worker thread still running) stops pinging its NOTIFY_SOCKET,
and pings again once the loop is free. Killed the way systemd's watchdog kills it (SIGABRT),
it leaves the Python stack of the wedged loop on stderr (the journal).

systemd is not PID 1 where the tests run, so the test plays systemd's part: it owns the
NOTIFY_SOCKET, sets WATCHDOG_USEC, and sends SIGABRT when no ping came in time."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time

import pytest
from testutil import HELPERS

WATCHDOG_USEC = 200_000  # WatchdogSec=0.2 s: pings every 0.1 s


@pytest.fixture
def notify_socket(sandbox):
    path = str(sandbox["root"] / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    yield path, sock
    sock.close()


def start_wedged(sandbox, notify_path: str, wedge_s: float) -> subprocess.Popen:
    env = {**os.environ, "NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": str(WATCHDOG_USEC),
           "WEDGE_S": str(wedge_s), "WEDGE_AFTER_S": "0.5"}
    return subprocess.Popen(
        [sys.executable, str(HELPERS / "wedged_service.py"), "--config", str(sandbox["config"])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0)),  # no core file from SIGABRT
    )


def receive(sock, timeout: float) -> tuple[float, str] | None:
    sock.settimeout(timeout)
    try:
        data = sock.recv(4096).decode()
    except socket.timeout:
        return None
    return time.monotonic(), data


def test_a_wedged_event_loop_stops_the_pings_and_a_free_one_resumes_them(sandbox, notify_socket):
    path, sock = notify_socket
    proc = start_wedged(sandbox, path, wedge_s=1.5)
    try:
        seen: list[tuple[float, str]] = []
        while not seen or "STATUS=unwedged" not in seen[-1][1]:
            got = receive(sock, 20)
            assert got, f"the service went quiet for good: {seen}"
            seen.append(got)
        for _ in range(3):
            seen.append(receive(sock, 5))
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    texts = [t for _, t in seen]
    assert any("READY=1" in t for t in texts), (texts, err)
    wedged = next(i for i, t in enumerate(texts) if "STATUS=wedged" in t)
    unwedged = next(i for i, t in enumerate(texts) if "STATUS=unwedged" in t)
    before = texts[texts.index(next(t for t in texts if "READY=1" in t)) + 1:wedged]
    assert len(before) >= 3 and set(before) == {"WATCHDOG=1"}  # pinging every 0.1 s while the loop runs
    # Wedged: not one ping for 1.5 s, far past WatchdogSec (0.2 s), though the worker thread ran on.
    assert unwedged == wedged + 1
    assert seen[unwedged][0] - seen[wedged][0] >= 1.4
    assert texts[unwedged + 1:] == ["WATCHDOG=1"] * 3  # the loop is free: pings again


def test_killed_like_systemds_watchdog_the_wedged_loop_leaves_its_stack_in_the_log(sandbox, notify_socket):
    path, sock = notify_socket
    proc = start_wedged(sandbox, path, wedge_s=60)
    try:
        last_ping = None
        while True:  # systemd's part: SIGABRT once WatchdogSec passes without WATCHDOG=1
            got = receive(sock, WATCHDOG_USEC / 1e6 if last_ping else 20)
            if got is None:
                assert last_ping is not None, "no ping ever came"
                break
            if got[1] == "WATCHDOG=1":
                last_ping = got[0]
        proc.send_signal(signal.SIGABRT)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGABRT
    assert "Fatal Python error: Aborted" in err
    assert "in wedge_the_event_loop" in err and "in _wedge" in err  # where the loop was stuck
