"""appliancectl for operations: version, logs (journal or the dev supervisor's log file, by
service and call), status from systemd, --json on every read command, one set of exit codes,
and shell completion."""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

from click.testing import CliRunner
from testutil import spawn, wait_for

from appliance.cli.main import cli

CTL = Path(sys.prefix) / "bin" / "appliancectl"


def ctl(*args, config=None, env=None, timeout=60):
    pre = ["--config", str(config)] if config else []
    return subprocess.run([sys.executable, "-m", "appliance", *pre, *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def fake_program(directory: Path, name: str, output: str) -> Path:
    """An executable NAME on a PATH of its own that records its arguments and prints OUTPUT."""
    directory.mkdir(exist_ok=True)
    (directory / f"{name}.out").write_text(output)
    script = directory / name
    script.write_text(f'#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > "{directory}/{name}.args"\n'
                      f'cat "{directory}/{name}.out"\n')
    script.chmod(0o755)
    return directory


# ---------------------------------------------------------------------------- version
def test_version_names_the_package_python_and_the_backends_installed():
    r = ctl("version")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "appliance 0.1.0" and lines[1].startswith(f"python    {sys.version.split()[0]} ")
    whisper = next(line for line in lines if line.split()[:2] == ["asr", "whisper"])
    assert whisper.split()[2] == "yes" and "faster-whisper" in whisper
    info = json.loads(ctl("version", "--json").stdout)
    assert info["appliance"] == "0.1.0" and info["python"]["executable"] == sys.executable
    backends = {(b["stage"], b["name"]): b for b in info["backends"]}
    assert backends[("asr", "whisper")]["available"] and backends[("tts", "piper")]["available"]
    assert backends[("gpu", "tensorrt")]["available"] == bool(
        importlib.util.find_spec("tensorrt") and importlib.util.find_spec("pycuda"))
    assert backends[("vad", "onnx")]["available"]  # onnxruntime is in the CPU stack
    assert backends[("tts", "tensorrt")]["available"] == backends[("gpu", "tensorrt")]["available"]
    assert set(info["gpu"]) == {"devices", "cuda_devices", "onnxruntime_providers", "llama_gpu_offload"}
    import llama_cpp

    assert info["gpu"]["llama_gpu_offload"] == bool(llama_cpp.llama_supports_gpu_offload())


# ---------------------------------------------------------------------------- --json and exit codes
def test_every_read_command_speaks_json_and_the_exit_codes_are_one_set(sandbox):
    cfg = sandbox["config"]
    status = ctl("status", "--json", "--timeout", "0.2", config=cfg)
    assert status.returncode == 3  # nothing runs: not running/unreachable
    st = json.loads(status.stdout)
    assert st["all_ready"] is False and st["systemd"] is None and len(st["services"]) == 4
    check = ctl("config", "check", "--json", config=cfg)
    assert check.returncode == 0 and json.loads(check.stdout)["valid"] is True
    assert json.loads(ctl("calls", "--json", config=cfg).stdout) == []
    assert ctl("call", "show", "c-404", "--json", config=cfg).returncode == 1  # no such call
    listed = json.loads(ctl("models", "list", "--json", config=cfg).stdout)
    assert {m["name"] for m in listed["models"]} >= {"whisper-base-en", "piper-joe-us"}
    verified = ctl("models", "verify", "whisper-base-en", "--json", config=cfg)
    assert verified.returncode == 0, verified.stdout
    assert json.loads(verified.stdout)["ok"] is True
    assert json.loads(ctl("rings", "--json", config=cfg).stdout) == {"rings": [], "removed": []}
    assert json.loads(ctl("version", "--json").stdout)["appliance"]
    bad = sandbox["root"] / "bad.toml"
    bad.write_text("[sip]\nport = 0\n")
    invalid = ctl("config", "check", str(bad), "--json")
    assert invalid.returncode == 2
    assert json.loads(invalid.stdout) == {"valid": False, "source": str(bad),
                                          "problems": ["sip.port: 0 is out of range (allowed 1 to 65535)"]}
    assert ctl("status", "--no-such-option").returncode == 2  # usage
    assert ctl("--config", str(bad), "status").returncode == 2  # config


# ---------------------------------------------------------------------------- status from systemd
SHOW = """Id=appliance-sipd.service
LoadState=loaded
ActiveState=active
SubState=running
MainPID=4242
NRestarts=0
Result=success
ActiveEnterTimestamp=Tue 2026-11-24 09:00:00 UTC

Id=appliance-asrd.service
LoadState=loaded
ActiveState=activating
SubState=auto-restart
MainPID=0
NRestarts=3
Result=watchdog
ActiveEnterTimestamp=

Id=appliance-agentd.service
LoadState=loaded
ActiveState=active
SubState=running
MainPID=4250
NRestarts=0
Result=success
ActiveEnterTimestamp=Tue 2026-11-24 09:00:01 UTC

Id=appliance-ttsd.service
LoadState=loaded
ActiveState=failed
SubState=failed
MainPID=0
NRestarts=10
Result=start-limit-hit
ActiveEnterTimestamp=
"""


def test_status_reports_each_unit_from_systemd_when_systemd_runs_the_box(sandbox, tmp_path, monkeypatch):
    fake = fake_program(tmp_path / "bin", "systemctl", SHOW)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    monkeypatch.setattr("appliance.runtime.units.booted", lambda: True)
    runner = CliRunner()
    r = runner.invoke(cli, ["--config", str(sandbox["config"]), "status", "--timeout", "0.2"])
    assert r.exit_code == 3, r.output  # the services themselves do not answer here
    args = (fake / "systemctl.args").read_text().split()
    assert args[:2] == ["show", "--no-pager"] and args[-4:] == [f"appliance-{n}.service" for n in
                                                                ("sipd", "asrd", "agentd", "ttsd")]
    rows = {line.split()[0]: line for line in r.output.splitlines()[1:]}
    assert "UNIT" in r.output.splitlines()[0]
    assert "active (running)" in rows["sipd"]
    assert "activating (auto-restart), watchdog" in rows["asrd"]
    assert "failed (failed), start-limit-hit" in rows["ttsd"]
    restarts = {name: line.split("s ", 1)[1].split()[0] for name, line in rows.items()}  # after UPTIME
    assert restarts == {"sipd": "0", "asrd": "3", "agentd": "0", "ttsd": "10"}
    st = json.loads(runner.invoke(cli, ["--config", str(sandbox["config"]), "status", "--json",
                                        "--timeout", "0.2"]).output)
    assert st["systemd"]["asrd"]["result"] == "watchdog" and st["systemd"]["ttsd"]["restarts"] == 10
    assert st["systemd"]["sipd"]["pid"] == 4242

    # systemd, but the units are not installed (a developer's laptop): the dev view, as before
    fake_program(tmp_path / "bin", "systemctl",
                 "".join(f"Id=appliance-{n}.service\nLoadState=not-found\n\n" for n in ("sipd", "asrd", "agentd", "ttsd")))
    r = runner.invoke(cli, ["--config", str(sandbox["config"]), "status", "--json", "--timeout", "0.2"])
    assert json.loads(r.output)["systemd"] is None


# ---------------------------------------------------------------------------- logs
LOG = """\
09:00:00.000 INFO    sipd[10] call=c1 call from 100 to agent
09:00:00.100 INFO    asrd[11] call=c1 speech started
09:00:01.000 INFO    agentd[12] call=c12 another call
09:00:01.500 ERROR   agentd[12] call=c1 tool failed
Fatal Python error: Aborted
  File "x.py", line 1 in f
09:00:02.000 WARNING appliancectl[9] call=- asrd died (killed by SIGKILL) after 2.0 s; restart #1 in 0.50 s
"""


def test_logs_of_a_file_by_call_service_time_and_count(tmp_path):
    log = tmp_path / "up.log"
    log.write_text(LOG)

    def logs(*args):
        r = ctl("logs", "--file", str(log), *args)
        assert r.returncode == 0, r.stderr
        return r.stdout.splitlines()

    assert logs("--call", "c1") == [LOG.splitlines()[i] for i in (0, 1, 3, 4, 5)]  # not c12; the stack goes along
    assert logs("--service", "agentd") == LOG.splitlines()[2:6]
    assert logs("--service", "sipd", "--service", "asrd") == LOG.splitlines()[:2]
    assert logs("-n", "1") == LOG.splitlines()[-1:]
    assert logs("--since", "09:00:01") == LOG.splitlines()[2:]  # the file was written today
    tomorrow = (datetime.now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    assert logs("--since", "1d") == LOG.splitlines() and logs("--since", tomorrow) == []
    bad = ctl("logs", "--file", str(log), "--since", "soonish")
    assert bad.returncode == 2 and "is not a time" in bad.stderr


def test_logs_says_so_when_nothing_runs(sandbox):
    r = ctl("logs", config=sandbox["config"])
    assert r.returncode == 3
    assert r.stderr.startswith("appliancectl logs: no systemd journal for the appliance here, and nothing runs")


JOURNAL = """\
2026-11-24T09:00:00+0000 appliance-sipd[10]: call=c1 call from 100 to agent
2026-11-24T09:00:01+0000 appliance-sipd[10]: call=c12 another call
2026-11-24T09:00:02+0000 appliance-sipd[10]: call=c1 call ended
"""


def test_logs_from_the_journal_run_journalctl_on_the_units(tmp_path):
    fake = fake_program(tmp_path / "bin", "journalctl", JOURNAL)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    r = ctl("logs", "--source", "journal", "--call", "c1", "--service", "sipd", "--since", "2026-11-24T09:00",
            "-n", "5", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [JOURNAL.splitlines()[0], JOURNAL.splitlines()[2]]  # c12 is not c1
    assert (fake / "journalctl.args").read_text().splitlines() == [
        "--no-pager", "--output=short-iso", "--unit=appliance-sipd.service", r"--grep=call=c1(\s|$)",
        "--since=2026-11-24 09:00:00", "--lines=5"]
    ctl("logs", "--source", "journal", env=env)
    units = [a for a in (fake / "journalctl.args").read_text().splitlines() if a.startswith("--unit=")]
    assert units == [f"--unit=appliance-{n}.service" for n in ("sipd", "asrd", "agentd", "ttsd")]


def test_logs_finds_the_dev_supervisors_log_file_and_follows_it(sandbox):
    cfg = sandbox["config"]
    log = sandbox["root"] / "up.log"
    with open(log, "w") as stderr:
        up = subprocess.Popen([sys.executable, "-m", "appliance", "--config", str(cfg), "up"],
                              stdout=subprocess.DEVNULL, stderr=stderr)
    follow = None
    try:
        wait_for(lambda: ctl("status", "--timeout", "0.5", config=cfg).returncode == 0, timeout=60,
                 what="all services ready")
        asrd = ctl("logs", "--service", "asrd", config=cfg)
        assert asrd.returncode == 0, asrd.stderr
        assert asrd.stdout and all(" asrd[" in line for line in asrd.stdout.splitlines() if line[:2].isdigit())
        assert any("ready (config" in line for line in asrd.stdout.splitlines())

        follow = spawn("-m", "appliance", "--config", str(cfg), "logs", "-f", stdin=None)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in follow.stdout], daemon=True).start()
        status = json.loads(ctl("status", "--json", config=cfg).stdout)
        pid = next(s["pid"] for s in status["services"] if s["name"] == "asrd")
        time.sleep(0.5)
        os.kill(pid, signal.SIGKILL)
        deadline, seen = time.monotonic() + 20, []
        while time.monotonic() < deadline and not any("asrd died (killed by SIGKILL)" in x for x in seen):
            try:
                seen.append(lines.get(timeout=0.5))
            except queue.Empty:
                pass
        assert any("asrd died (killed by SIGKILL)" in x for x in seen), seen
        follow.send_signal(signal.SIGINT)
        assert follow.wait(10) == 0
    finally:
        if follow is not None and follow.poll() is None:
            follow.kill()
        up.send_signal(signal.SIGINT)
        up.wait(30)


# ---------------------------------------------------------------------------- completion
def test_shell_completion_scripts_and_answers():
    assert CTL.exists(), "the console script is installed by `pip install -e .`"
    env = {**os.environ, "_APPLIANCECTL_COMPLETE": "bash_source"}
    script = subprocess.run([str(CTL)], env=env, capture_output=True, text=True, timeout=30)
    assert script.returncode == 0
    assert "_appliancectl_completion()" in script.stdout
    assert "complete -o nosort -F _appliancectl_completion appliancectl" in script.stdout
    for shell, marker in (("zsh", "#compdef appliancectl"), ("fish", "complete --no-files --command appliancectl")):
        out = subprocess.run([str(CTL)], env={**os.environ, "_APPLIANCECTL_COMPLETE": f"{shell}_source"},
                             capture_output=True, text=True, timeout=30).stdout
        assert marker in out, out
    # what bash gets back when the user types `appliancectl lo<TAB>` and `appliancectl logs --ser<TAB>`
    answer = subprocess.run([str(CTL)], capture_output=True, text=True, timeout=30, env={
        **os.environ, "_APPLIANCECTL_COMPLETE": "bash_complete", "COMP_WORDS": "appliancectl lo", "COMP_CWORD": "1"})
    assert answer.stdout.split() == ["plain,logs"]
    answer = subprocess.run([str(CTL)], capture_output=True, text=True, timeout=30, env={
        **os.environ, "_APPLIANCECTL_COMPLETE": "bash_complete", "COMP_WORDS": "appliancectl logs --service a",
        "COMP_CWORD": "3"})
    assert answer.stdout.split() == ["plain,asrd", "plain,agentd"]
