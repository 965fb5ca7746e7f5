"""The systemd units start the same entry points `appliancectl up` does, speak sd_notify, and
are all part of appliance.target; they pass `systemd-analyze verify` (run on a copy whose
ExecStart= points at this venv's console scripts), their sandbox scores as systemd's own
`security` review says, and their directories, ordering, limits and devices are what the
appliance needs (systemd/README.md)."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from testutil import REPO

from appliance.config.schema import SERVICES, PathsConfig

UNITS = REPO / "systemd"
GPU_SERVICES = ("asrd", "agentd", "ttsd")
VENV_BIN = "/opt/appliance/venv/bin/"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def unit(name: str) -> configparser.ConfigParser:
    p = configparser.ConfigParser(strict=False, interpolation=None)
    p.optionxform = str
    p.read(UNITS / name)
    return p


def values(name: str, section: str, key: str) -> list[str]:
    """Every value of a key that may repeat (configparser keeps only the last)."""
    out, current = [], None
    for line in (UNITS / name).read_text().splitlines():
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section and line.startswith(f"{key}="):
            out.append(line.split("=", 1)[1])
    return out


def service_units():
    return {name: unit(f"appliance-{name}.service") for name in SERVICES}


def test_every_service_has_a_notify_unit_running_its_console_script():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    for name, u in service_units().items():
        svc = u["Service"]
        exe = svc["ExecStart"].split()[0]
        assert exe == f"{VENV_BIN}appliance-{name}"
        assert scripts[f"appliance-{name}"] == f"appliance.services.{name}:main"
        assert svc["Type"] == "notify" and int(svc["WatchdogSec"]) > 0 and svc["NotifyAccess"] == "main"
        assert svc["Restart"] == "on-failure" and svc["RestartPreventExitStatus"] == "78"  # EX_CONFIG stays failed
        assert int(u["Unit"]["StartLimitBurst"]) > 0 and int(u["Unit"]["StartLimitIntervalSec"]) > 0
        assert "--config /etc/appliance/appliance.toml" in svc["ExecStart"]
        assert svc["User"] == svc["Group"] == "appliance"
        assert u["Unit"]["PartOf"] == "appliance.target" and u["Install"]["WantedBy"] == "appliance.target"
        # a call must outlive any process but sipd: no unit drags another down with it
        assert not any(k in u["Unit"] for k in ("BindsTo", "Requires", "Requisite"))


def test_sipd_is_first_up_and_last_down():
    units = service_units()
    before = units["sipd"]["Unit"]["Before"].split()
    for name in GPU_SERVICES:
        assert f"appliance-{name}.service" in before
        assert units[name]["Unit"]["After"].split() == ["appliance-sipd.service"]  # stop order is the reverse
    assert "After" not in units["sipd"]["Unit"] or "appliance-" not in units["sipd"]["Unit"]["After"]


def test_directories_match_the_config_defaults_and_survive_one_unit_stopping():
    run, state, conf = Path(PathsConfig().run_dir), Path(PathsConfig().state_dir), Path("/etc/appliance/appliance.toml")
    for name, u in service_units().items():
        svc = u["Service"]
        assert Path("/run", svc["RuntimeDirectory"]) == run and svc["RuntimeDirectoryMode"] == "0750"
        assert svc["RuntimeDirectoryPreserve"] == "yes"  # shared by four units: one stopping keeps the sockets
        assert Path("/var/lib", svc["StateDirectory"]) == state and svc["StateDirectoryMode"] == "0750"
        assert Path("/etc", svc["ConfigurationDirectory"]) == conf.parent
        assert svc["ConfigurationDirectoryMode"] == "0750" and svc["WorkingDirectory"] == str(state)
        assert svc["UMask"] == "0027"
        assert "ReadWritePaths" not in svc  # the *Directory= settings are the only writable paths
    tmpfiles = (UNITS / "appliance.tmpfiles.conf").read_text()
    assert f"d {run} 0750 appliance appliance -" in tmpfiles
    assert f"d {state} 0750 appliance appliance -" in tmpfiles


def test_sandbox_keeps_rings_and_sockets_shared_and_grants_no_capabilities():
    assert not PathsConfig().shm_dir.startswith(("/tmp", "/var/tmp"))  # PrivateTmp= must not split the rings
    for name, u in service_units().items():
        svc = u["Service"]
        for key in ("NoNewPrivileges", "PrivateTmp", "ProtectHome", "ProtectKernelTunables", "ProtectKernelModules",
                    "ProtectControlGroups", "RestrictSUIDSGID", "LockPersonality"):
            assert svc[key] == "yes", (name, key)
        assert svc["ProtectSystem"] == "strict" and svc["RemoveIPC"] == "no"  # rings of live calls survive a stop
        assert svc["CapabilityBoundingSet"] == "" and "AmbientCapabilities" not in svc
        assert "PrivateIPC" not in svc and "PrivateNetwork" not in svc
    assert service_units()["sipd"]["Service"]["PrivateDevices"] == "yes"  # its private /dev keeps /dev/shm


def test_gpu_services_reach_nvidia_devices_and_sipd_comes_first_for_the_cpu():
    units = service_units()
    for name in GPU_SERVICES:
        svc = units[name]["Service"]
        assert svc["PrivateDevices"] == "no" and svc["DevicePolicy"] == "closed"
        assert values(f"appliance-{name}.service", "Service", "DeviceAllow") == ["char-nvidia* rw"]
        assert svc["SupplementaryGroups"].split() == ["video", "render"]
    weights = {name: int(u["Service"]["CPUWeight"]) for name, u in units.items()}
    assert weights["sipd"] > max(w for n, w in weights.items() if n != "sipd")
    for name, u in units.items():
        svc = u["Service"]
        assert int(svc["LimitNOFILE"]) >= 65536 and int(svc["TasksMax"]) > 0
        assert _bytes(svc["MemoryHigh"]) < _bytes(svc["MemoryMax"])


def _bytes(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def test_the_target_groups_the_four_services():
    target = unit("appliance.target")
    assert target["Install"]["WantedBy"] == "multi-user.target"
    assert target["Install"]["Also"].split() == [f"appliance-{n}.service" for n in ("sipd", "asrd", "agentd", "ttsd")]


# ------------------------------------------------------------------- systemd-analyze
def installable_copy(dest: Path) -> Path:
    """The units with ExecStart= on this venv's console scripts: `verify` insists that they exist."""
    bin_dir = Path(sys.prefix) / "bin"
    for name in SERVICES:
        assert (bin_dir / f"appliance-{name}").exists(), f"console script appliance-{name} not installed in {bin_dir}"
    dest.mkdir()
    for src in UNITS.glob("appliance*"):
        if src.suffix in (".service", ".target"):
            (dest / src.name).write_text(src.read_text().replace(VENV_BIN, f"{bin_dir}/"))
    return dest


def verify(directory: Path, names: list[str] | None = None) -> list[str]:
    """What `systemd-analyze verify` has to say about the units in ``directory``: its exit code
    when non-zero, and every line it prints about them (unknown keys and bad values are only
    warnings there, with exit 0)."""
    names = names or sorted(p.name for p in directory.iterdir())
    r = subprocess.run([ANALYZE, "verify", "--man=no", *(f"./{n}" for n in names)], cwd=directory,
                       capture_output=True, text=True, timeout=60)
    problems = [line for line in (r.stdout + r.stderr).splitlines()
                if any(n in line for n in names) or str(directory) in line]
    return problems + ([f"exit code {r.returncode}"] if r.returncode else [])


@needs_analyze
def test_systemd_analyze_verify_passes_the_units(tmp_path):
    assert verify(installable_copy(tmp_path / "units")) == []


@needs_analyze
def test_systemd_analyze_verify_catches_a_broken_unit(tmp_path):
    units = installable_copy(tmp_path / "units")
    sipd = units / "appliance-sipd.service"
    good = sipd.read_text()
    sipd.write_text(good.replace("Restart=on-failure", "Restrat=on-failure"))  # a typo: only a warning
    assert any("Unknown key" in p and "Restrat" in p for p in verify(units, [sipd.name]))
    sipd.write_text(good.replace("Type=notify", "Type=notifyy"))
    assert any("notifyy" in p for p in verify(units, [sipd.name]))
    sipd.write_text(good.replace(f"{Path(sys.prefix)}/bin/appliance-sipd", "/nonexistent/appliance-sipd"))
    problems = verify(units, [sipd.name])
    assert "exit code 1" in problems and any("/nonexistent/appliance-sipd" in p for p in problems)


@needs_analyze
@pytest.mark.parametrize("name", SERVICES)
def test_security_review_rates_every_service_ok(tmp_path, name):
    """`systemd-analyze security` (offline) gives an exposure score, 0 (locked down) to 10; 'OK'
    is below 4. These stay well below: a loosened sandbox fails here."""
    units = installable_copy(tmp_path / "units")
    r = subprocess.run([ANALYZE, "security", "--offline=yes", "--threshold=25", "--no-pager",
                        f"./appliance-{name}.service"], cwd=units, capture_output=True, text=True, timeout=60)
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d)", r.stdout)
    assert score and r.returncode == 0, r.stdout + r.stderr
    assert float(score.group(1)) <= 2.5, r.stdout


@pytest.mark.skipif(shutil.which("systemd-tmpfiles") is None, reason="systemd-tmpfiles is not installed")
@pytest.mark.skipif(os.geteuid() != 0,
                    reason="systemd-tmpfiles --create chowns to appliance: needs root")
def test_tmpfiles_creates_the_private_directories(tmp_path):
    """Into a scratch root whose /etc/passwd has the appliance user, as on a provisioned box."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n"
                                             "appliance:x:991:991::/var/lib/appliance:/usr/sbin/nologin\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\nappliance:x:991:\n")
    r = subprocess.run(["systemd-tmpfiles", "--create", f"--root={tmp_path}", str(UNITS / "appliance.tmpfiles.conf")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    for path in ("run/appliance", "var/lib/appliance"):
        st = (tmp_path / path).stat()
        assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o750, 991, 991)
