"""appliancectl commands that need no running services: config check and bench ipc."""

from __future__ import annotations

import json
import subprocess
import sys


def ctl(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_config_check_accepts_a_good_file(sandbox):
    r = ctl("config", "check", str(sandbox["config"]))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == f"config {sandbox['config']} is valid"


def test_config_check_lists_every_problem_and_exits_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[sip]\nport = 0\n[log]\nlevel = "chatty"\n[extra]\n')
    r = ctl("config", "check", str(bad))
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        f"config {bad} is invalid (3 problems):",
        "  - extra: unknown key (allowed: agent, asr, audio, gpu, log, metrics, paths, services, sip, supervisor, tts, vad)",
        '  - log.level: "chatty" is not one of debug, info, warning, error',
        "  - sip.port: 0 is out of range (allowed 1 to 65535)",
    ]
    missing = ctl("config", "check", str(tmp_path / "none.toml"))
    assert missing.returncode == 2 and "none.toml is invalid (1 problem):\n  - file does not exist" in missing.stderr


def test_commands_refuse_a_broken_config_instead_of_starting(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[services]\nenabled = [1]\n")
    for cmd in (["up"], ["status"], ["rings"]):
        r = ctl("--config", str(bad), *cmd, timeout=30)
        assert r.returncode == 2 and "services.enabled: must be a list of strings, got [1]" in r.stderr


def test_bench_ipc_moves_every_frame_intact_and_writes_json(tmp_path, shm_dir):
    out = tmp_path / "ipc.json"
    r = ctl("bench", "ipc", "--calls", "4", "--seconds", "1", "--shm-dir", shm_dir, "--json", str(out))
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    assert result["calls"] == 4 and result["frames_written"] == 4 * 50
    assert result["frames_read"] == result["frames_written"] and result["lost"] == 0 and result["corrupt"] == 0
    assert result["latency_us"]["n"] == result["frames_read"]
    assert set(result["latency_us"]) == {"n", "p50", "p95", "p99", "max", "mean"}
    assert "latency p50 / p95 / p99" in r.stdout and f"wrote {out}" in r.stdout


def test_a_run_dir_that_cannot_be_created_is_a_clear_error_not_a_traceback(sandbox):
    blocker = sandbox["root"] / "file"
    blocker.write_text("")
    cfg = sandbox["config"].read_text().replace(f'run_dir = "{sandbox["run_dir"]}"', f'run_dir = "{blocker}/run"')
    sandbox["config"].write_text(cfg)
    r = ctl("--config", str(sandbox["config"]), "up", timeout=30)
    assert r.returncode == 1
    assert f"cannot create paths.run_dir {blocker}/run: Not a directory (set paths.run_dir in the config)" in r.stderr
    assert "Traceback" not in r.stderr
    svc = subprocess.run([sys.executable, "-m", "appliance.services.sipd", "--config", str(sandbox["config"])],
                         capture_output=True, text=True, timeout=30)
    assert svc.returncode == 1 and "cannot create paths.run_dir" in svc.stderr and "Traceback" not in svc.stderr
