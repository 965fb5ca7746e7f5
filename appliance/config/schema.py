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
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
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
    bind: str = key("0.0.0.0", doc="address sipd listens on (SIP and RTP)")
    port: int = key(5060, doc="SIP port (UDP and TCP)", min=1, max=65535)
    tcp: bool = key(True, doc="also accept SIP over TCP on the same port")
    public_host: str = key("", doc="address put in Contact/Via/SDP; empty = the bind address, or 127.0.0.1 for 0.0.0.0")
    max_calls: int = key(8, doc="concurrent calls admitted; the next INVITE gets 503 + Retry-After", min=1, max=1000)
    retry_after: int = key(5, doc="seconds in Retry-After when at max_calls", min=1, max=3600)
    mode: str = key("trunk", doc="trunk: accept INVITEs from allowed addresses; register: also register to a PBX",
                    choices=("trunk", "register"))
    allow_from: list[str] = key([], doc="source IPs/CIDRs allowed to call in; empty = any (use a firewall)")
    auto_answer: bool = key(True, doc="answer at once; false = wait for agentd's answer/reject control")
    answer_timeout: float = key(10.0, doc="seconds to wait for answer/reject before 480", min=0.5, max=120.0)
    rtp_port_min: int = key(20000, doc="first RTP port (even); each call takes a pair", min=1024, max=65534)
    rtp_port_max: int = key(20999, doc="last RTP port", min=1025, max=65535)
    codecs: list[str] = key(["PCMU", "PCMA", "G722"], doc="codecs offered/accepted", each=("PCMU", "PCMA", "G722"))
    session_expires: int = key(1800, doc="RFC 4028 session interval we ask for (s)", min=90, max=86400)
    invite_rate: float = key(20.0, doc="INVITEs per second accepted from one source address", min=0.1, max=10000.0)
    other_rate: float = key(20.0, doc="OPTIONS/REGISTER/other out-of-dialog requests per second per source",
                            min=0.1, max=10000.0)
    registrar: str = key("", doc="register mode: the PBX to register to, e.g. sip:pbx.example.com:5060")
    username: str = key("", doc="digest username (registration, and challenged outgoing requests)")
    password: str = key("", doc="digest password")
    register_expires: int = key(600, doc="registration lifetime asked for (s)", min=60, max=86400)
    auth_realm: str = key("", doc="non-empty: challenge callers with digest auth in this realm")
    auth_users: dict[str, str] = key({}, doc="username = password pairs allowed to call when auth_realm is set")
    auth_algorithms: list[str] = key(["SHA-256", "MD5"], doc="digest challenges offered, strongest first (RFC 8760)",
                                     each=("SHA-512-256", "SHA-256", "MD5"))


@dataclass(frozen=True)
class Config:
    paths: Paths = field(default_factory=Paths)
    log: Log = field(default_factory=Log)
    audio: Audio = field(default_factory=Audio)
    services: Services = field(default_factory=Services)
    supervisor: Supervisor = field(default_factory=Supervisor)
    sip: Sip = field(default_factory=Sip)
    source: str = field(default="<defaults>", metadata={"internal": True})
