"""Security basics: a config holding SIP credentials must be private or nothing starts; secret
values never reach an error, a log line, `config check` or `status`; the sockets and
directories a service creates are for the appliance's user and group only, whatever the umask."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
from testutil import wait_for

from appliance.bench.sipdrive import Sipd, free_port, sipp, sipp_counts
from appliance.config import ConfigError, load, parse
from appliance.config.secrets import is_private, redacted, secret_keys
from appliance.runtime.service import make_dir

PASSWORD = "Reg-s3cret-771"
CALLER_PASSWORD = "Caller-pw-9413"
SECRETS_TOML = f'[sip]\npassword = "{PASSWORD}"\nauth_realm = "box"\nauth_users = {{ frontdesk = "{CALLER_PASSWORD}" }}\n'


def ctl(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True, timeout=timeout)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text and CALLER_PASSWORD not in text, text


def test_the_schema_marks_the_credentials_secret():
    assert secret_keys() == ["sip.password", "sip.auth_users"]


def test_a_config_with_credentials_readable_by_others_is_refused_by_config_check(tmp_path):
    cfg = tmp_path / "appliance.toml"
    cfg.write_text(SECRETS_TOML)
    cfg.chmod(0o644)
    r = ctl("config", "check", str(cfg))
    assert r.returncode == 2
    if os.geteuid() == 0:
        assert r.stderr.splitlines() == [
            f"config {cfg} is invalid (1 problem):",
            f"  - sip.password, sip.auth_users: credentials in a file others can read (mode 0644, root:root); "
            f"make it private: chmod 600 {cfg} (or chown root:appliance and chmod 640)",
        ]
    assert "credentials in a file others can read (mode 0644" in r.stderr and f"chmod 600 {cfg}" in r.stderr
    as_json = ctl("config", "check", str(cfg), "--json")
    assert as_json.returncode == 2 and json.loads(as_json.stdout)["valid"] is False
    assert_no_secret(r.stdout, r.stderr, as_json.stdout)
    cfg.chmod(0o600)
    assert ctl("config", "check", str(cfg)).returncode == 0
    cfg.chmod(0o660)  # group-writable: never private
    assert ctl("config", "check", str(cfg)).returncode == 2
    cfg.write_text('[sip]\npassword = ""\n')  # nothing secret in it: any mode will do
    cfg.chmod(0o644)
    assert ctl("config", "check", str(cfg)).returncode == 0


def test_what_counts_as_private():
    def st(mode, uid):
        return os.stat_result((stat.S_IFREG | mode, 0, 0, 1, uid, 0, 0, 0, 0, 0))

    assert is_private(st(0o600, 1000)) and is_private(st(0o400, 1000))
    assert is_private(st(0o640, 0)) and is_private(st(0o440, 0))  # root:appliance 0640, as Ansible installs it
    assert not is_private(st(0o640, 1000))  # the service user could widen it, and its group is anyone's guess
    assert not is_private(st(0o644, 0)) and not is_private(st(0o660, 0)) and not is_private(st(0o604, 1000))


def test_a_service_refuses_to_start_on_an_unsafe_config_with_ex_config(sandbox):
    cfg = sandbox["config"]
    cfg.write_text(cfg.read_text() + SECRETS_TOML)
    cfg.chmod(0o644)
    proc = subprocess.run([sys.executable, "-m", "appliance.services.sipd", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 78  # EX_CONFIG: the unit stays failed (RestartPreventExitStatus=78)
    assert "credentials in a file others can read (mode 0644" in proc.stderr and "Traceback" not in proc.stderr
    assert_no_secret(proc.stdout, proc.stderr)


def test_secret_values_never_appear_in_errors_repr_or_config_check(tmp_path):
    with pytest.raises(ConfigError) as err:
        parse('[sip]\npassword = 12345\nauth_users = { frontdesk = 67890 }\n')
    assert err.value.problems == ["sip.password: must be a string, got <hidden int>",
                                  "sip.auth_users: must be a table of strings, got {frontdesk = <hidden int>}"]
    with pytest.raises(ConfigError) as err:
        parse(f'[sip]\nregistrar = "sip:appliance:{PASSWORD}@pbx.example.com"\n')
    assert err.value.problems == ["sip.registrar: must not carry a password (sip:user:password@...); put it in sip.password"]
    config = parse(SECRETS_TOML)
    assert_no_secret(repr(config), str(config.sip), json.dumps(redacted(config)))
    assert redacted(config)["sip"]["password"] == "********"
    assert redacted(config)["sip"]["auth_users"] == {"frontdesk": "********"}
    assert redacted(parse(""))["sip"]["password"] == ""  # unset stays visibly unset

    cfg = tmp_path / "appliance.toml"
    cfg.write_text(SECRETS_TOML)
    cfg.chmod(0o600)
    text, as_json = ctl("config", "check", str(cfg)), ctl("config", "check", str(cfg), "--json")
    assert text.returncode == as_json.returncode == 0
    assert json.loads(as_json.stdout)["config"]["sip"]["auth_users"] == {"frontdesk": "********"}
    assert_no_secret(text.stdout, text.stderr, as_json.stdout, as_json.stderr)


def test_a_running_sipd_never_logs_or_reports_its_credentials(sandbox, tmp_path):
    """sipd registers with digest auth to a real registrar (SIPp) and challenges callers, at
    log level debug: neither password shows in its log, `status --json` or `config check`."""
    port = free_port()
    registrar = sipp("uas_registrar.xml", 1, background=True, cwd=str(tmp_path),
                     keys={"user": "appliance", "password": PASSWORD, "expires": 120}, local_port=port)
    sipd = Sipd(sandbox, extra_sip=f'mode = "register"\nregistrar = "sip:127.0.0.1:{port}"\nusername = "appliance"\n'
                                   f'password = "{PASSWORD}"\nauth_realm = "box"\n'
                                   f'auth_users = {{ frontdesk = "{CALLER_PASSWORD}" }}\n')
    cfg = sandbox["config"]
    cfg.write_text(cfg.read_text().replace('level = "info"', 'level = "debug"'))
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    sipd.start()
    try:
        sipp_out, _ = registrar.communicate(timeout=30)
        wait_for(lambda: "registered to sip:127.0.0.1" in sipd.output(), timeout=10, what="the registration logged")
        status = ctl("--config", str(cfg), "status", "--json", "--timeout", "2")
        check = ctl("--config", str(cfg), "config", "check", "--json")
    finally:
        out = sipd.stop()
    assert sipp_counts(sipp_out) == (1, 0), sipp_out[-2000:]
    assert json.loads(status.stdout)["services"][0]["details"]["registered"] is True
    assert " DEBUG " in out  # the most talkative level, and still nothing
    assert_no_secret(out, status.stdout, status.stderr, check.stdout)


def test_sockets_and_directories_are_for_the_appliance_group_only(sandbox):
    # Started as systemd does (UMask=0027), and as a developer's shell would (0022).
    for umask in (0o027, 0o022):
        run_dir = sandbox["run_dir"]
        proc = subprocess.Popen([sys.executable, "-m", "appliance.services.asrd", "--config", str(sandbox["config"])],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda m=umask: os.umask(m))
        try:
            wait_for(lambda: (run_dir / "asrd.ctl").exists() and (run_dir / "asrd.pub").exists(), timeout=60,
                     what="asrd's sockets")
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in run_dir.iterdir()}
        finally:
            proc.terminate()
            proc.communicate(timeout=20)
        assert stat.S_IMODE(run_dir.stat().st_mode) == 0o750
        assert modes["asrd.ctl"] == modes["asrd.pub"] == 0o660  # the group may connect (write), others not
        assert modes["asrd.lock"] & 0o007 == 0
        for p in list(run_dir.iterdir()):
            p.unlink()
        run_dir.rmdir()


def test_directories_a_service_creates_are_0750_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        made = make_dir("paths.state_dir", str(tmp_path / "a" / "state"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(made.stat().st_mode) == 0o750
    existing = tmp_path / "mine"
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)
    make_dir("paths.state_dir", str(existing))
    assert stat.S_IMODE(existing.stat().st_mode) == 0o755  # an admin's own directory is left as it is


def test_the_loaded_default_config_has_no_secrets_to_protect(monkeypatch, tmp_path):
    monkeypatch.delenv("APPLIANCE_CONFIG", raising=False)
    monkeypatch.setattr("appliance.config.loader.DEFAULT_PATH", str(tmp_path / "absent.toml"))
    assert load().sip.password == ""
