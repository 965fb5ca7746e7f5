"""The one definition of appliance.toml: sections, keys, types, defaults and allowed values.

Each key's constraints live in its field's metadata (``choices``, ``min``, ``max``), so the
loader, the error messages and ``appliancectl config check`` all read the same source.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SERVICES = ("sipd", "asrd", "agentd", "ttsd")


def key(default, *, doc: str, choices=None, min=None, max=None, each=None):
    """A config key: its default, a one-line meaning, and what values are allowed."""
    meta = {"doc": doc, "choices": choices, "min": min, "max": max, "each": each}
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Paths:
    state_dir: str = key("/var/lib/appliance", doc="call records (SQLite) and recordings")
    run_dir: str = key("/run/appliance", doc="ZeroMQ ipc sockets")
    shm_dir: str = key("/dev/shm", doc="audio rings (shared memory)")
    agents_dir: str = key("/etc/appliance/agents", doc="agent definitions (*.toml)")
    models_dir: str = key("/opt/appliance/models", doc="model files and manifests")


@dataclass(frozen=True)
class Log:
    level: str = key("info", doc="least severe level written", choices=("debug", "info", "warning", "error"))


@dataclass(frozen=True)
class Audio:
    ring_seconds: float = key(10.0, doc="audio each ring holds; a reader may lag this much", min=1.0, max=120.0)


@dataclass(frozen=True)
class Services:
    enabled: list[str] = key(list(SERVICES), doc="services `appliancectl up` starts", each=SERVICES)
    watchdog: bool = key(True, doc="send WATCHDOG=1 to systemd when it asks (WatchdogSec=)")
    stop_timeout: float = key(10.0, doc="seconds a service gets to stop before SIGKILL", min=0.5, max=120.0)


@dataclass(frozen=True)
class Supervisor:
    restart_min: float = key(0.5, doc="first restart delay of a crashed service (s)", min=0.05, max=60.0)
    restart_max: float = key(30.0, doc="restart delay cap after repeated crashes (s)", min=0.1, max=600.0)
    stable_after: float = key(30.0, doc="uptime after which the restart delay resets (s)", min=1.0, max=3600.0)


@dataclass(frozen=True)
class Sip:
    bind: str = key("0.0.0.0", doc="address sipd listens on")
    port: int = key(5060, doc="SIP port (UDP and TCP)", min=1, max=65535)
    max_calls: int = key(8, doc="concurrent calls admitted; the next INVITE gets 503", min=1, max=1000)


@dataclass(frozen=True)
class Config:
    paths: Paths = field(default_factory=Paths)
    log: Log = field(default_factory=Log)
    audio: Audio = field(default_factory=Audio)
    services: Services = field(default_factory=Services)
    supervisor: Supervisor = field(default_factory=Supervisor)
    sip: Sip = field(default_factory=Sip)
    source: str = field(default="<defaults>", metadata={"internal": True})
