"""Run sipd as a real process on loopback and drive it with real SIPp peers: shared by
`appliancectl bench sip` and the telephony tests."""

from __future__ import annotations

import asyncio
import os
import random
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import zmq
import zmq.asyncio

from appliance.bus import ControlClient, endpoints
from appliance.bus.messages import StatusRequest

SIPP_DIR = Path(__file__).resolve().parent / "sipp"
PCAPS = Path("/usr/share/sip-tester")


def free_port(kind=socket.SOCK_DGRAM, even=False) -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (best effort; tests bind at once)."""
    for _ in range(200):
        port = random.randrange(30000, 60000) & (~1 if even else ~0)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, \
                 socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                u.bind(("127.0.0.1", port))
                t.bind(("127.0.0.1", port))
                if even:
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u2:
                        u2.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port")


def make_sandbox(shm_parent: str = "/dev/shm") -> dict:
    """Temp dirs and a base config for a sipd of our own (the tests' `sandbox` fixture shape)."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="ap-", dir="/tmp"))
    shm = tempfile.mkdtemp(prefix="appliance-bench-", dir=shm_parent)
    config = root / "appliance.toml"
    config.write_text(f'[paths]\nstate_dir = "{root}/state"\nrun_dir = "{root}/run"\nshm_dir = "{shm}"\n'
                      f'agents_dir = "{root}/agents"\nmodels_dir = "{root}/models"\n[log]\nlevel = "warning"\n')
    return {"root": root, "config": config, "run_dir": root / "run", "shm_dir": shm}


class Service:
    """One appliance service in its own process with the sandbox's config; ready when its
    control socket says so. Used for sipd, asrd and ttsd by benches and tests alike."""

    def __init__(self, sandbox: dict, name: str):
        self.sandbox = sandbox
        self.name = name
        self.config = sandbox["config"]
        self.run_dir = str(sandbox["run_dir"])
        self.shm_dir = sandbox["shm_dir"]
        self.proc: subprocess.Popen | None = None
        self.log = None

    def start(self, timeout: float = 60.0, wait_ready: bool = True):
        self.log = open(Path(self.sandbox["root"]) / f"{self.name}.log", "w+")
        # APPLIANCE_SERVICE_WRAP: a command the service runs under, "{service}" its name (the tests
        # run services inside their systemd unit's system call filter this way)
        wrap = os.environ.get("APPLIANCE_SERVICE_WRAP", "")
        prefix = shlex.split(wrap.format(service=self.name)) if wrap else []
        self.proc = subprocess.Popen([*prefix, sys.executable, "-m", f"appliance.services.{self.name}",
                                      "--config", str(self.config)], stdout=self.log, stderr=subprocess.STDOUT)
        if not wait_ready:
            return self
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.status().state == "ready":
                    return self
            except Exception:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} died at start:\n" + self.output())
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready:\n" + self.stop())  # a failed start leaves no process

    def output(self) -> str:
        if self.log is None:
            return ""
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def status(self, timeout: float = 1.0):
        return asyncio.run(self._request(StatusRequest(), timeout))

    def control(self, msg, timeout: float = 2.0):
        return asyncio.run(self._request(msg, timeout))

    async def _request(self, msg, timeout):
        ctx = zmq.asyncio.Context()
        client = ControlClient(ctx, endpoints.control(self.run_dir, self.name))
        try:
            return await client.request(msg, timeout)
        finally:
            client.close()
            ctx.term()

    def stop(self) -> str:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.output()


class Sipd(Service):
    """sipd on loopback ports of its own."""

    def __init__(self, sandbox: dict, extra_sip: str = "", max_calls: int | str = 60):
        """sipd alone: its pipeline watch is off unless ``extra_sip`` sets pipeline_timeout_s
        (with no asrd/ttsd/agentd it would otherwise rescue every call after a few seconds)."""
        super().__init__(sandbox, "sipd")
        if "pipeline_timeout_s" not in extra_sip:
            extra_sip += "\npipeline_timeout_s = 0"
        self.port = free_port()
        rtp = 20000 + random.randrange(0, 5000) * 2
        slots = max_calls if isinstance(max_calls, int) else 60
        text = self.config.read_text()
        text += f'\n[sip]\nbind = "127.0.0.1"\nport = {self.port}\nrtp_port_min = {rtp}\n' \
                f"rtp_port_max = {rtp + 4 * slots + 99}\nmax_calls = {max_calls!r}\n{extra_sip}\n"
        self.config.write_text(text)

    def start(self, timeout: float = 20.0, wait_ready: bool = True) -> "Sipd":
        return super().start(timeout, wait_ready)


class EventLog:
    """Subscribes to services' events without a thread: call ``collect``."""

    def __init__(self, run_dir: str, services=("sipd",)):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.setsockopt(zmq.LINGER, 0)
        for service in services:
            self.sock.connect(endpoints.events(run_dir, service))
        self.events: list = []

    def collect(self, until=None, timeout: float = 10.0):
        from appliance.bus import MalformedMessage, decode

        deadline, queued = time.monotonic() + timeout, False
        while time.monotonic() < deadline:
            if until is not None and any(until(e) for e in self.events):  # noqa: SIM102
                return self.events
            # Take everything queued before judging ``until``: ZeroMQ hands out several
            # publishers' backlogs round-robin, so one service's later event (call.ended) can
            # come out before another's earlier one (tts.finished) still queued.
            while time.monotonic() < deadline and self.sock.poll(50 if not queued else 0):
                queued = True
                try:
                    self.events.append(decode(self.sock.recv_multipart()))
                except MalformedMessage:
                    pass
            queued = False
        if until is not None:
            raise AssertionError(f"event not seen within {timeout} s; got {[e.TYPE for e in self.events]}")
        return self.events

    def of(self, cls):
        return [e for e in self.events if isinstance(e, cls)]

    def close(self):
        self.sock.close()
        self.ctx.term()


def sipp(scenario: str, sipd_port: int, *, background: bool = False, **kw):
    """Run one SIPp scenario against sipd; returns the finished process (stdout has the
    stats), or with ``background`` the running Popen (``.communicate()`` it)."""
    cmd, work, timeout = sipp_command(scenario, sipd_port, **kw)
    if background:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=work)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 30, cwd=work)


def sipp_command(scenario: str, sipd_port: int, *, keys: dict | None = None, calls: int = 1, rate: float = 10,
                 limit: int | None = None, timeout: float = 60, cwd: str | None = None, extra: list[str] = (),
                 transport: str = "u1", local_port: int | None = None):
    local, media = local_port or free_port(), free_port(even=True)
    work = cwd or str(Path(os.environ.get("TMPDIR", "/tmp")))
    cmd = ["sipp", f"127.0.0.1:{sipd_port}", "-sf", str(SIPP_DIR / scenario), "-i", "127.0.0.1",
           "-p", str(local), "-mp", str(media), "-m", str(calls), "-r", str(rate), "-nostdin",
           "-t", transport, "-timeout", f"{int(timeout)}s", "-timeout_error", "-max_recv_loops", "1000",
           "-trace_err", "-error_file", os.path.join(work, "sipp-errors.log")]
    if limit:
        cmd += ["-l", str(limit)]
    for k, v in (keys or {}).items():
        cmd += ["-key", k, str(v)]
    cmd += list(extra)
    return cmd, work, timeout


def sipp_counts(proc) -> tuple[int, int]:
    """(successful, failed) calls from SIPp's final statistics screen (a finished process or
    the stdout of a background one)."""
    text = proc if isinstance(proc, str) else proc.stdout
    ok = failed = None
    for line in text.splitlines():
        if "Successful call" in line:
            ok = int(line.split("|")[2].split()[0]) if "|" in line else None
        if "Failed call" in line:
            failed = int(line.split("|")[2].split()[0]) if "|" in line else None
    if ok is None or failed is None:
        raise AssertionError("no SIPp statistics in output:\n" + text[-3000:])
    return ok, failed


def pcap_rtp_payloads(path) -> list[bytes]:
    """RTP payloads of a classic pcap file of RTP over UDP/IPv4 (Ethernet or Linux cooked)."""
    import struct

    data = Path(path).read_bytes()
    magic, _, _, _, _, _, linktype = struct.unpack("<IHHiIII", data[:24])
    assert magic == 0xA1B2C3D4, "little-endian microsecond pcap expected"
    link = {1: 14, 113: 16}[linktype]
    out, pos = [], 24
    while pos + 16 <= len(data):
        incl = struct.unpack("<IIII", data[pos:pos + 16])[2]
        frame = data[pos + 16:pos + 16 + incl]
        pos += 16 + incl
        ip = frame[link:]
        ihl = (ip[0] & 0x0F) * 4
        rtp = ip[ihl + 8:]
        cc = rtp[0] & 0x0F
        out.append(rtp[12 + 4 * cc:])
    return out


def sipp_lost(text: str) -> int:
    """Messages SIPp's -lost emulation dropped, from the Lost column of its scenario screen."""
    lines = text.splitlines()
    header = next((ln for ln in lines if "Messages" in ln and "Lost" in ln), None)
    if header is None:
        return 0
    col = header.index("Lost")
    total = 0
    for ln in lines:
        if ("---->" in ln or "<----" in ln) and len(ln) > col - 2:
            cell = ln[col - 2:col + 6].strip()
            total += int(cell) if cell.isdigit() else 0
    return total
