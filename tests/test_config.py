"""Config validation: each problem names the key, the bad value and what is allowed."""

from __future__ import annotations

import pytest

from appliance.config import ConfigError, load, parse
from appliance.config.schema import Config


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, "test.toml")
    return info.value.problems


def test_empty_file_gives_the_documented_defaults():
    c = parse("", "empty.toml")
    assert c.paths.run_dir == "/run/appliance" and c.paths.shm_dir == "/dev/shm"
    assert c.sip.port == 5060 and c.services.enabled == ["sipd", "asrd", "agentd", "ttsd"]
    assert c.source == "empty.toml"


def test_values_are_typed():
    c = parse('[audio]\nring_seconds = 4\n[sip]\nmax_calls = 40\n[log]\nlevel = "debug"\n')
    assert c.audio.ring_seconds == 4.0 and isinstance(c.audio.ring_seconds, float)
    assert c.sip.max_calls == 40 and c.log.level == "debug"


@pytest.mark.parametrize("text, expected", [
    ('[sip]\nport = "5060"\n', 'sip.port: must be an integer, got "5060"'),
    ("[sip]\nport = 70000\n", "sip.port: 70000 is out of range (allowed 1 to 65535)"),
    ("[sip]\nmax_calls = 0\n", "sip.max_calls: 0 is out of range (allowed 1 to 1000)"),
    ("[sip]\nmax_calls = 2.5\n", "sip.max_calls: must be an integer or a string, got 2.5"),
    ('[sip]\nmax_calls = "many"\n', 'sip.max_calls: "many" is not one of auto'),
    ('[sip]\noverflow = "redirect"\n', 'sip.overflow: "redirect" needs sip.overflow_target, a sip: URI (the human queue)'),
    ('[sip]\noverflow = "voicemail"\n', 'sip.overflow: "voicemail" is not one of reject, redirect, announce'),
    ("[sip]\nport = true\n", "sip.port: must be an integer, got true"),
    ('[log]\nlevel = "loud"\n', 'log.level: "loud" is not one of debug, info, warning, error'),
    ("[services]\nwatchdog = 1\n", "services.watchdog: must be true or false, got 1"),
    ('[services]\nenabled = ["sipd", "faxd"]\n', 'services.enabled: "faxd" is not one of sipd, asrd, agentd, ttsd'),
    ('[services]\nenabled = "sipd"\n', 'services.enabled: must be a list of strings, got "sipd"'),
    ('[services]\nenabled = ["sipd", "sipd"]\n', "services.enabled: ['sipd', 'sipd'] lists a service twice"),
    ("[log]\nlvl = 1\n", "log.lvl: unknown key (allowed: level)"),
    ("[sip]\nauth_users = {a = 1}\n", "sip.auth_users: must be a table of strings, got {a = <hidden int>}"),
    ('[sip]\nallow_from = ["10.0.0.0/8", "pbx"]\n', 'sip.allow_from: "pbx" is not an IP address or CIDR'),
    ("[sip]\nrtp_port_min = 20000\nrtp_port_max = 20009\nmax_calls = 8\n",
     "sip.rtp_port_min/rtp_port_max: 20000-20009 has room for 5 calls, fewer than sip.max_calls (8)"),
    ('[sip]\nmode = "register"\n', 'sip.mode: "register" needs sip.registrar and sip.username'),
    ('[sip]\nauth_realm = "pbx"\n', "sip.auth_users: must name at least one user when sip.auth_realm is set"),
    ("[telephony]\nport = 1\n", "telephony: unknown key (allowed: agent, asr, audio, gpu, log, metrics, paths, services, sip, supervisor, tts, vad)"),
    ("sip = 5\n", "sip: must be a table [sip], got 5"),
    ("[audio]\nring_seconds = 0.5\n", "audio.ring_seconds: 0.5 is out of range (allowed 1.0 to 120.0)"),
    ('[metrics]\nbind = "localhost"\n', 'metrics.bind: "localhost" is not an IP address'),
    ("[metrics]\nport = 0\n", "metrics.port: 0 is out of range (allowed 1 to 65535)"),
    ('[paths]\nrun_dir = "run"\n', 'paths.run_dir: "run" must be an absolute path'),
    ('[gpu]\nengines_dir = "engines"\n', 'gpu.engines_dir: "engines" must be an absolute path'),
    ('[vad]\nbackend = "cuda"\n', 'vad.backend: "cuda" is not one of webrtc, silero, onnx, tensorrt'),
    ('[paths]\nrun_dir = "/' + "x" * 100 + '"\n', "is too long for a unix socket path (at most 92 bytes)"),
    ("[supervisor]\nrestart_min = 5.0\nrestart_max = 1.0\n",
     "supervisor.restart_max: 1.0 is below supervisor.restart_min (5.0); it must be at least that"),
    ("[audio]\nring_seconds = nan\n", "audio.ring_seconds: nan is not allowed (a finite number is required)"),
    ("[services]\nstop_timeout = inf\n", "services.stop_timeout: inf is not allowed (a finite number is required)"),
    ('[paths]\nrun_dir = "/run/a\\u0000b"\n', "paths.run_dir: must not contain a NUL character"),
    ("[sip\n", "not valid TOML: Expected ']' at the end of a table declaration (at line 1, column 5)"),
])
def test_each_error_names_key_value_and_what_is_allowed(text, expected):
    found = problems(text)
    assert len(found) == 1, found
    assert expected in found[0]


def test_all_problems_are_reported_at_once_and_rendered_for_a_human():
    with pytest.raises(ConfigError) as info:
        parse('[sip]\nport = -1\nmax_calls = "x"\n[log]\nlevel = 3\n', "/etc/appliance/appliance.toml")
    assert info.value.problems == [
        "log.level: must be a string, got 3",
        "sip.port: -1 is out of range (allowed 1 to 65535)",
        'sip.max_calls: "x" is not one of auto',
    ]
    assert info.value.render().splitlines()[0] == "config /etc/appliance/appliance.toml is invalid (3 problems):"


def test_missing_explicit_file_is_an_error_but_missing_default_file_means_defaults(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="file does not exist"):
        load(tmp_path / "nope.toml")
    monkeypatch.delenv("APPLIANCE_CONFIG", raising=False)
    monkeypatch.setattr("appliance.config.loader.DEFAULT_PATH", str(tmp_path / "absent.toml"))
    assert load() == Config(source="<defaults>")
    monkeypatch.setenv("APPLIANCE_CONFIG", str(tmp_path / "also-absent.toml"))
    with pytest.raises(ConfigError, match="also-absent.toml: file does not exist"):
        load()


def test_unreadable_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[log]\nlevel = "\xe9"\n')
    with pytest.raises(ConfigError, match="cannot read"):
        load(bad)


def test_every_speech_backend_the_config_allows_is_one_version_reports():
    """One registry of backend names (config/backends.py): the config's choices and
    `appliancectl version`'s list are both made from it."""
    from appliance.cli.version import BACKENDS
    from appliance.config.backends import AsrBackendName, TtsBackendName, VadBackendName
    from appliance.config.schema import AsrConfig, TtsConfig, VadConfig

    for kind, names, section in (("vad", VadBackendName, VadConfig), ("asr", AsrBackendName, AsrConfig),
                                 ("tts", TtsBackendName, TtsConfig)):
        assert tuple(section.__dataclass_fields__["backend"].metadata["choices"]) == tuple(names)
        assert {b.name for b in BACKENDS if b.stage == kind} == set(names)
