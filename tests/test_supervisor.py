"""`appliancectl up` as a real process tree: all services start, a killed one comes back
with a new pid, `status` reports it, and Ctrl-C stops every child."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from testutil import pid_alive, spawn, wait_for

from appliance.ipc import RingWriter


def appliancectl(sandbox, *args, timeout=30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "appliance", "--config", str(sandbox["config"]), *args],
        capture_output=True, text=True, timeout=timeout,
    )


def status_json(sandbox):
    r = appliancectl(sandbox, "status", "--json", "--timeout", "0.5")
    return r.returncode, json.loads(r.stdout)


def all_ready(sandbox):
    code, st = status_json(sandbox)
    return st if code == 0 and st["supervisor"] else None


def test_up_starts_everything_restarts_a_killed_service_and_stops_all_on_ctrl_c(sandbox):
    # a ring left by a crashed run (its owner is gone) must be swept when the appliance starts
    stale = spawn("-c", f"from appliance.ipc import create_ring; create_ring({sandbox['shm_dir']!r}, 'ghost', 'in')")
    stale.communicate(timeout=20)
    assert os.path.exists(os.path.join(sandbox["shm_dir"], "appliance-ghost-in"))

    up = spawn("-m", "appliance", "--config", str(sandbox["config"]), "up", stdin=None)
    try:
        st = wait_for(lambda: all_ready(sandbox), timeout=30, what="all services ready")
        assert [s["name"] for s in st["services"]] == ["sipd", "asrd", "agentd", "ttsd"]
        assert not os.path.exists(os.path.join(sandbox["shm_dir"], "appliance-ghost-in"))
        pids = {s["name"]: s["pid"] for s in st["services"]}
        assert {c["name"]: c["pid"] for c in st["supervisor"]["children"]} == pids

        os.kill(pids["asrd"], signal.SIGKILL)

        def restarted():
            code, st = status_json(sandbox)
            asrd = next(c for c in (st["supervisor"] or {"children": []})["children"] if c["name"] == "asrd") \
                if st["supervisor"] else None
            return code == 0 and asrd and asrd["restarts"] == 1 and asrd["pid"] != pids["asrd"] and st

        st = wait_for(restarted, timeout=30, what="asrd restarted")
        asrd = next(c for c in st["supervisor"]["children"] if c["name"] == "asrd")
        assert asrd["last_exit"] == "killed by SIGKILL"
        others = {s["name"]: s["pid"] for s in st["services"] if s["name"] != "asrd"}
        assert others == {k: v for k, v in pids.items() if k != "asrd"}  # nobody else was touched

        human = appliancectl(sandbox, "status")
        assert human.returncode == 0
        assert [line.split()[:2] for line in human.stdout.splitlines()[1:]] == [
            ["sipd", "ready"], ["asrd", "ready"], ["agentd", "ready"], ["ttsd", "ready"]]

        second = appliancectl(sandbox, "up")
        assert second.returncode == 1 and "supervisor is already running" in second.stderr

        up.send_signal(signal.SIGINT)
        _, err = up.communicate(timeout=30)
        assert up.returncode == 0, err
        children = list(others.values()) + [asrd["pid"]]
        assert not [p for p in children if pid_alive(p)]
        assert "asrd died (killed by SIGKILL)" in err and "restart #1" in err
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()


def test_status_says_down_and_fails_when_nothing_runs(sandbox):
    r = appliancectl(sandbox, "status", "--timeout", "0.2")
    assert r.returncode == 3  # not running (1 is for some services up, others not)
    rows = [line.split()[:2] for line in r.stdout.splitlines()[1:]]
    assert rows == [["sipd", "down"], ["asrd", "down"], ["agentd", "down"], ["ttsd", "down"]]
    assert r.stdout.count("not running (no control socket") == 4  # said at once, no deadline waited out
    # a socket left by a killed service (nobody listening): that one costs the deadline and says so
    run_dir = sandbox["config"].parent / "run"
    run_dir.mkdir(exist_ok=True)
    (run_dir / "agentd.ctl").touch()
    r = appliancectl(sandbox, "status", "--timeout", "0.2")
    rows = {line.split()[0]: line for line in r.stdout.splitlines()[1:]}
    assert r.returncode == 3 and "no reply to ctl.status" in rows["agentd"], r.stdout
    assert "no control socket" in rows["sipd"]


def test_rings_lists_live_and_stale_rings_and_cleans_only_stale(sandbox):
    shm = sandbox["shm_dir"]
    live = RingWriter.create(shm, "live1", "in", seconds=1)
    live.write(np.zeros(320, dtype=np.int16))
    dead = spawn("-c", f"from appliance.ipc import create_ring; create_ring({shm!r}, 'dead1', 'out')")
    dead.communicate(timeout=20)
    r = appliancectl(sandbox, "rings", "--clean")
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()[1:-1]}
    assert rows["live1"][1:3] == ["in", "1"] and rows["live1"][-1] == "live"
    assert rows["dead1"][-1] == "stale"
    assert r.stdout.splitlines()[-1] == "removed 1 stale ring(s)"
    assert sorted(os.listdir(shm)) == ["appliance-live1-in"]
    live.close()


def test_restart_delay_doubles_per_crash_and_is_capped():
    from appliance.config import parse
    from appliance.runtime.supervisor import Child, Supervisor

    sup = Supervisor(parse("[supervisor]\nrestart_min = 0.5\nrestart_max = 3.0\n"), None)
    child = Child("asrd", [])
    delays = []
    for crashes in range(1, 7):
        child.crashes_in_a_row = crashes
        delays.append(sup.backoff(child))
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root to become nobody")
def test_status_tells_a_user_without_access_so_instead_of_not_running():
    """The run dir is the appliance group's (0750): someone else is told to use sudo, not that
    the appliance is down."""
    import tempfile
    from pathlib import Path

    nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable]
    if subprocess.run([*nobody, "-c", "import appliance"], capture_output=True, timeout=60).returncode != 0:
        pytest.skip("user nobody cannot run this checkout's venv (it lies in a directory closed to others)")
    root = Path(tempfile.mkdtemp(prefix="ap-", dir="/tmp"))  # pytest's tmp_path is closed to nobody
    root.chmod(0o755)
    (root / "run").mkdir(mode=0o700)
    (root / "run" / "sipd.ctl").touch()
    config = root / "appliance.toml"
    config.write_text(f'[paths]\nrun_dir = "{root}/run"\nstate_dir = "{root}/state"\n')
    config.chmod(0o644)
    r = subprocess.run([*nobody, "-m", "appliance", "--config", str(config), "status", "--timeout", "0.2"],
                       capture_output=True, text=True, timeout=60)
    shutil.rmtree(root)
    rows = {line.split()[0]: line for line in r.stdout.splitlines()[1:]}
    assert "permission denied" in rows["sipd"] and "appliance group" in rows["sipd"], r.stdout + r.stderr
