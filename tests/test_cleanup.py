"""A command that starts services leaves nothing behind: not on a missing model, not when one
service fails to start, not on SIGTERM or SIGHUP (a service manager, a closed terminal).

Each command runs in a session of its own; afterwards no process of that session may be left
(sipd, asrd, ttsd, agentd, the supervisor, a softphone) and no temp dir of the bench."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CTL = Path(sys.executable).parent / "appliancectl"
ROOT = Path(__file__).resolve().parents[1]


def session_processes(sid: int) -> list[str]:
    """Command lines of the live processes in session ``sid`` (zombies are gone already)."""
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid and fields[0] != "Z":
                out.append(Path(stat).with_name("cmdline").read_bytes().replace(b"\0", b" ").decode()[:120])
        except (OSError, IndexError, ValueError):
            pass
    return out


def start(config: Path, *args: str, tmp: Path) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": str(tmp)}  # the bench's own temp dirs land here, to be checked
    return subprocess.Popen([str(CTL), "--config", str(config), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env, start_new_session=True)


def left_behind(proc: subprocess.Popen, settle: float = 10.0) -> list[str]:
    deadline = time.monotonic() + settle
    while (alive := session_processes(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive:
        os.killpg(proc.pid, signal.SIGKILL)
    return alive


def wait_for_services(proc: subprocess.Popen, names: tuple[str, ...], timeout: float = 120.0) -> None:
    """Until every named service runs in the command's session."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = " ".join(session_processes(proc.pid))
        if all(f"appliance.services.{n}" in running or f"appliance-{n}" in running for n in names):
            return
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)
    raise AssertionError(f"{names} never ran: {session_processes(proc.pid)}")


def test_a_bench_before_models_setup_names_the_setup_and_starts_nothing(tmp_path):
    config = tmp_path / "appliance.toml"
    config.write_text(f'[paths]\nmodels_dir = "{tmp_path}/models"\n')
    proc = start(config, "bench", "latency", "--turns", "1", tmp=tmp_path)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out
    assert "appliancectl models setup whisper-base-en" in out and "nothing was started" in out, out
    assert "Traceback" not in out
    assert left_behind(proc) == []
    assert not list(tmp_path.glob("ap-*")) and not list(tmp_path.glob("bench-latency-*"))


def test_a_service_that_fails_to_start_takes_the_others_down_with_the_bench(sandbox, tmp_path):
    """asrd cannot reach its (Riva) recogniser and exits at start: the bench stops sipd, ttsd and
    agentd, which it had started, and removes its sandbox."""
    config = Path(sandbox["config"])
    config.write_text(config.read_text() + '\n[asr]\nbackend = "riva"\nriva_server = "127.0.0.1:9"\n')
    proc = start(config, "bench", "latency", "--turns", "1", tmp=tmp_path)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode != 0 and "asrd did not start" in out, out
    assert left_behind(proc) == []
    assert not list(tmp_path.glob("ap-*")), list(tmp_path.iterdir())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_stops_every_service_a_bench_started(sandbox, tmp_path, sig):
    proc = start(Path(sandbox["config"]), "bench", "latency", "--turns", "1", tmp=tmp_path)
    try:
        wait_for_services(proc, ("sipd", "asrd", "ttsd", "agentd"))
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 128 + sig, out
    finally:
        alive = left_behind(proc)
    assert alive == []
    assert not list(tmp_path.glob("ap-*"))


def test_demo_keep_stopped_with_sigterm_stops_its_supervisor_and_services(sandbox, tmp_path):
    """`appliancectl demo --keep` under a service manager or a terminal that goes away."""
    proc = start(Path(sandbox["config"]), "demo", "--keep", tmp=tmp_path)
    try:
        wait_for_services(proc, ("sipd", "asrd", "ttsd", "agentd"))
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=90)
        assert proc.returncode == 128 + signal.SIGTERM, out
    finally:
        alive = left_behind(proc, settle=35.0)
    assert alive == []
