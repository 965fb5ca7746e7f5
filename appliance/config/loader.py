"""Load appliance.toml into ``schema.Config``, reporting every problem at once.

Each error names the key (``sip.port``), the bad value, and what is allowed, because the
person reading it is an admin at a console, not the author of this code.
"""

from __future__ import annotations

import ipaddress
import math
import os
import tomllib
import typing
from dataclasses import MISSING, fields, is_dataclass, replace
from pathlib import Path

from .typecheck import conforms, describe, render_problems
from . import secrets
from .schema import Config

DEFAULT_PATH = "/etc/appliance/appliance.toml"
ENV_VAR = "APPLIANCE_CONFIG"
# AF_UNIX socket paths are limited to 107 bytes; the longest socket name under run_dir is this.
_LONGEST_SOCKET = "/supervisor.ctl"
_SUN_PATH_MAX = 107


class ConfigError(Exception):
    """A config that cannot be used. ``problems`` holds one line per bad key."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))

    def render(self) -> str:
        return render_problems(f"config {self.source}", self.problems)


def default_path() -> str:
    return os.environ.get(ENV_VAR) or DEFAULT_PATH


def load(path: str | os.PathLike | None = None) -> Config:
    """Load and validate a config file.

    ``path=None`` means ``$APPLIANCE_CONFIG`` or /etc/appliance/appliance.toml; when that
    default file is absent the built-in defaults are used. A path given explicitly must exist.
    """
    explicit = path is not None or ENV_VAR in os.environ
    source = str(path if path is not None else default_path())
    try:
        text = Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(source, ["file does not exist"]) from None
        return Config(source="<defaults>")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [f"cannot read: {exc}"]) from None
    data = _decode(text, source)
    config, problems = _build_config(data)
    unsafe = secrets.mode_problem(source, data)  # credentials in a file others can read: refused too
    if unsafe:
        problems.append(unsafe)
    if problems:
        raise ConfigError(source, problems)
    return replace(config, source=source)


def parse(text: str, source: str = "<string>") -> Config:
    config, problems = _build_config(_decode(text, source))
    if problems:
        raise ConfigError(source, problems)
    return replace(config, source=source)


def _decode(text: str, source: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"not valid TOML: {exc}"]) from None


def _build_config(data: dict) -> tuple[Config, list[str]]:
    """The config and every problem found in it (cross-checks only once each key is sound)."""
    problems: list[str] = []
    config = _build(Config, data, "", problems)
    return config, problems or _cross_checks(config)


def _build(cls, data: dict, prefix: str, problems: list[str]):
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls) if not f.metadata.get("internal")}
    for name in data:
        if name not in known:
            problems.append(f"{prefix}{name}: unknown key (allowed: {', '.join(sorted(known))})")
    kwargs = {}
    for name, f in known.items():
        dotted = f"{prefix}{name}"
        if name not in data:
            continue
        value, hint = data[name], hints[name]
        if is_dataclass(hint):
            if not isinstance(value, dict):
                problems.append(f"{dotted}: must be a table [{dotted}], got {show(value)}")
            else:
                kwargs[name] = _build(hint, value, dotted + ".", problems)
            continue
        checked = check_value(dotted, value, hint, f.metadata, problems)
        if checked is not MISSING:
            kwargs[name] = checked
    return cls(**kwargs)


def check_value(dotted: str, value, hint, meta, problems: list[str], describe_hint=describe):
    """One key's value against its type and metadata (choices/min/max/each); the problem, if
    any, is appended in the admin-facing wording. Shared with the agent-file loader."""
    if not conforms(value, hint):
        shown = secrets.show_secret(value) if meta.get("secret") else show(value)
        problems.append(f"{dotted}: must be {describe_hint(hint)}, got {shown}")
        return MISSING
    if typing.get_origin(hint) is list:
        allowed = meta.get("each")
        bad = [v for v in value if allowed and v not in allowed]
        if bad:
            problems.append(f"{dotted}: {show(bad[0])} is not one of {', '.join(allowed)}")
            return MISSING
        return list(value)
    if isinstance(value, float) and not math.isfinite(value):
        problems.append(f"{dotted}: {show(value)} is not allowed (a finite number is required)")
        return MISSING
    if isinstance(value, str) and "\0" in value:
        problems.append(f"{dotted}: must not contain a NUL character")
        return MISSING
    # A key that takes a number or a word ("auto") checks the word against choices, the number
    # against min/max.
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    choices = meta.get("choices")
    if choices and value not in choices and not (number and typing.get_args(hint)):
        problems.append(f"{dotted}: {show(value)} is not one of {', '.join(choices)}")
        return MISSING
    lo, hi = meta.get("min"), meta.get("max")
    if number and ((lo is not None and value < lo) or (hi is not None and value > hi)):
        problems.append(f"{dotted}: {show(value)} is out of range (allowed {lo} to {hi})")
        return MISSING
    return float(value) if hint is float else value


def show(value) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    if isinstance(value, bool):
        text = "true" if value else "false"
    return text if len(text) <= 60 else text[:57] + "..."


def _cross_checks(config: Config) -> list[str]:
    """Rules between keys, or against the machine, that a single key's metadata cannot say."""
    problems = []
    run_dir = config.paths.run_dir
    if len(os.fsencode(run_dir + _LONGEST_SOCKET)) > _SUN_PATH_MAX:
        problems.append(
            f'paths.run_dir: "{run_dir}" is too long for a unix socket path '
            f"(at most {_SUN_PATH_MAX - len(_LONGEST_SOCKET)} bytes)"
        )
    for name in ("state_dir", "run_dir", "shm_dir", "agents_dir", "models_dir"):
        value = getattr(config.paths, name)
        if not os.path.isabs(value):
            problems.append(f'paths.{name}: "{value}" must be an absolute path')
    if config.gpu.engines_dir and not os.path.isabs(config.gpu.engines_dir):
        problems.append(f'gpu.engines_dir: "{config.gpu.engines_dir}" must be an absolute path')
    sip = config.sip
    if sip.rtp_port_max <= sip.rtp_port_min:
        problems.append(f"sip.rtp_port_max: {sip.rtp_port_max} must be above sip.rtp_port_min ({sip.rtp_port_min})")
    elif isinstance(sip.max_calls, int) and (sip.rtp_port_max - sip.rtp_port_min + 1) // 2 < sip.max_calls:
        problems.append(f"sip.rtp_port_min/rtp_port_max: {sip.rtp_port_min}-{sip.rtp_port_max} has room for "
                        f"{(sip.rtp_port_max - sip.rtp_port_min + 1) // 2} calls, fewer than sip.max_calls ({sip.max_calls})")
    if sip.overflow == "redirect" and not sip.overflow_target.startswith(("sip:", "sips:")):
        problems.append('sip.overflow: "redirect" needs sip.overflow_target, a sip: URI (the human queue)')
    for name in ("registrar", "fallback_target", "overflow_target"):  # a password belongs in sip.password, never in a URI
        userinfo = getattr(sip, name).partition("@")[0]
        if "@" in getattr(sip, name) and userinfo.count(":") >= 2:
            problems.append(f"sip.{name}: must not carry a password (sip:user:password@...); "
                            "put it in sip.password")
    if sip.mode == "register" and not (sip.registrar and sip.username):
        problems.append('sip.mode: "register" needs sip.registrar and sip.username')
    for name in ("allow_from", "trunks"):
        for entry in getattr(sip, name):
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                problems.append(f'sip.{name}: "{entry}" is not an IP address or CIDR')
    try:
        ipaddress.ip_address(config.metrics.bind)
    except ValueError:
        problems.append(f'metrics.bind: "{config.metrics.bind}" is not an IP address')
    if sip.auth_realm and not sip.auth_users:
        problems.append("sip.auth_users: must name at least one user when sip.auth_realm is set")
    if config.supervisor.restart_max < config.supervisor.restart_min:
        problems.append(
            f"supervisor.restart_max: {config.supervisor.restart_max} is below "
            f"supervisor.restart_min ({config.supervisor.restart_min}); it must be at least that"
        )
    if len(set(config.services.enabled)) != len(config.services.enabled):
        problems.append(f"services.enabled: {config.services.enabled!r} lists a service twice")
    return problems


def warnings(config: Config) -> list[str]:
    """Valid but worth the admin's attention: `config check` prints these."""
    out = []
    if not config.sip.allow_from:
        out.append("sip.allow_from is empty: only loopback and private addresses may call in; list your "
                   "PBX/gateway (or 0.0.0.0/0 behind a firewall) to say so explicitly")
    if not config.sip.trunks:
        out.append("sip.trunks is empty: every source gets the per-source limits (unconfirmed_per_source); list "
                   "your PBX/gateway so that one scanning address cannot hold more than sip.source_share of "
                   "the calls")
    return out
