"""A real service process: sd_notify datagrams (READY, WATCHDOG, STOPPING) on a NOTIFY_SOCKET
the test owns, graceful stop, one instance per name, and bad input on its control socket."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess

import pytest
import zmq
import zmq.asyncio
from testutil import spawn, wait_for

from appliance.bus import ControlClient, decode_payload, endpoints
from appliance.bus.messages import ServiceStatus, StatusRequest
from appliance.runtime.notify import Notifier


@pytest.fixture
def notify_socket(sandbox):
    path = str(sandbox["root"] / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    yield path, sock
    sock.close()


def datagrams(sock, until: str, limit: int = 50) -> list[str]:
    seen = []
    for _ in range(limit):
        seen.append(sock.recv(4096).decode())
        if until in seen[-1]:
            return seen
    raise AssertionError(f"{until} never came: {seen}")


def start_service(sandbox, name="asrd", **env_extra) -> "subprocess.Popen":
    env = {**os.environ, **env_extra}
    return spawn("-m", f"appliance.services.{name}", "--config", str(sandbox["config"]), stdin=None, env=env)


def status_of(sandbox, name="asrd", timeout=1.0):
    async def ask():
        ctx = zmq.asyncio.Context()
        client = ControlClient(ctx, endpoints.control(str(sandbox["run_dir"]), name))
        try:
            return await client.request(StatusRequest(), timeout)
        finally:
            client.close()
            ctx.term()

    return asyncio.run(ask())


def test_service_speaks_sd_notify_ready_watchdog_stopping(sandbox, notify_socket):
    path, sock = notify_socket
    assert Notifier().backend == "systemd-python"  # scripts/test installs it; the real library is used
    proc = start_service(sandbox, NOTIFY_SOCKET=path, WATCHDOG_USEC="200000")
    try:
        ready = datagrams(sock, "READY=1")[-1].split("\n")
        assert "READY=1" in ready and f"MAINPID={proc.pid}" in ready
        pings = [sock.recv(4096).decode() for _ in range(3)]  # every 100 ms: half of WatchdogSec
        assert pings == ["WATCHDOG=1"] * 3
        proc.send_signal(signal.SIGTERM)
        datagrams(sock, "STOPPING=1")
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.communicate()


def test_watchdog_is_not_pinged_for_another_pid_or_when_disabled(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert Notifier().watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert Notifier().watchdog_interval() == pytest.approx(0.1)
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert Notifier().enabled is False and Notifier().ready() is False  # not under systemd: no-op


def test_builtin_backend_speaks_the_same_protocol_including_abstract_sockets(monkeypatch):
    name = f"appliance-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    n = Notifier(use_systemd_python=False)
    assert n.backend == "builtin"
    assert n.ready("up") and n.watchdog() and n.stopping()
    assert sock.recv(4096).decode().split("\n")[:2] == ["READY=1", "STATUS=up"]
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert sock.recv(4096) == b"STOPPING=1"
    sock.close()


def test_second_instance_of_a_service_is_refused_and_the_first_keeps_running(sandbox):
    first = start_service(sandbox)
    try:
        wait_for(lambda: _ready(sandbox), what="asrd ready")
        second = start_service(sandbox)
        _, err = second.communicate(timeout=20)
        assert second.returncode == 1
        assert f"asrd is already running (pid {first.pid}" in err
        assert status_of(sandbox).pid == first.pid
    finally:
        first.terminate()
        first.communicate(timeout=10)


def test_broken_config_stops_the_service_with_ex_config_and_says_why(sandbox):
    sandbox["config"].write_text('[sip]\nport = "five"\n')
    proc = start_service(sandbox)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 78
    assert 'sip.port: must be an integer, got "five"' in err


def test_garbage_on_the_control_socket_does_not_hurt_a_running_service(sandbox):
    proc = start_service(sandbox)
    try:
        wait_for(lambda: _ready(sandbox), what="asrd ready")

        async def attack():
            ctx = zmq.asyncio.Context()
            raw = ctx.socket(zmq.DEALER)
            raw.setsockopt(zmq.LINGER, 0)
            raw.connect(endpoints.control(str(sandbox["run_dir"]), "asrd"))
            await raw.send_multipart([b"", b"1", os.urandom(512)])
            await raw.send_multipart([b"", b"2", b'{"type":"ctl.status","v":1,"ts_ns":"soon"}'])
            await raw.send_multipart([b"no-envelope"])
            replies = [await asyncio.wait_for(raw.recv_multipart(), 5) for _ in range(2)]
            raw.close()
            ctx.term()
            return replies

        replies = asyncio.run(attack())
        assert all("malformed request" in decode_payload(r[2]).reason for r in replies)
        status = status_of(sandbox)
        assert isinstance(status, ServiceStatus) and status.state == "ready" and status.pid == proc.pid
        assert status.details["bus_dropped"] == 3
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def _ready(sandbox):
    return _ready_named(sandbox, "asrd")


def test_sipd_owns_the_rings_and_sweeps_a_crashed_runs_leftovers_at_start(sandbox):
    shm = sandbox["shm_dir"]
    crashed = spawn("-c", f"from appliance.ipc import create_ring; create_ring({shm!r}, 'ghost', 'in')")
    crashed.communicate(timeout=20)
    assert os.listdir(shm) == ["appliance-ghost-in"]
    proc = start_service(sandbox, name="sipd")
    try:
        wait_for(lambda: _ready_named(sandbox, "sipd"), what="sipd ready")
        assert os.listdir(shm) == []
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "removed stale ring" in err and "appliance-ghost-in" in err


def _ready_named(sandbox, name):
    try:
        return status_of(sandbox, name, timeout=0.3).state == "ready"
    except Exception:
        return False
