"""Every message that crosses the bus, in one place, with the schema version.

Three kinds, as in Pipecat's frames: *events* (published, anyone may listen), *control*
(a request to one service, answered; travels on its own socket so it never queues behind
events — a barge-in must not wait), and *replies*. Audio never travels here: it is in the
rings. Wire form: JSON ``{"type", "v", "call_id", "ts_ns", ...fields}``.

Adding a field with a default is compatible; removing or retyping one bumps SCHEMA_VERSION.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import ClassVar

SCHEMA_VERSION = 1

Scalar = str | int | float | bool


@dataclass(frozen=True, kw_only=True)
class Message:
    TYPE: ClassVar[str] = ""
    KIND: ClassVar[str] = ""
    call_id: str = ""  # "" for messages about a process rather than a call
    ts_ns: int = field(default_factory=time.monotonic_ns)  # time.monotonic_ns() at creation


REGISTRY: dict[str, type[Message]] = {}


def _register(type_name: str, kind: str):
    def wrap(cls: type[Message]) -> type[Message]:
        if type_name in REGISTRY:
            raise ValueError(f"message type {type_name} defined twice")
        cls.TYPE, cls.KIND = type_name, kind
        REGISTRY[type_name] = cls
        return cls

    return wrap


def event(name: str):
    return _register(name, "event")


def control(name: str):
    return _register(name, "control")


def reply(name: str):
    return _register(name, "reply")


# ---- events -------------------------------------------------------------------------------


@event("service.ready")
@dataclass(frozen=True, kw_only=True)
class ServiceReady(Message):
    """A service finished starting (also sent after a restart, so peers can re-sync)."""

    service: str
    pid: int


@event("service.stopping")
@dataclass(frozen=True, kw_only=True)
class ServiceStopping(Message):
    service: str
    pid: int


@event("call.started")
@dataclass(frozen=True, kw_only=True)
class CallStarted(Message):
    """sipd admitted a call; its rings exist. ``headers`` are selected SIP headers."""

    caller: str
    callee: str
    headers: dict[str, str] = field(default_factory=dict)


@event("call.answered")
@dataclass(frozen=True, kw_only=True)
class CallAnswered(Message):
    """The call is up: media flows both ways through the rings."""

    codec: str


@event("call.transfer")
@dataclass(frozen=True, kw_only=True)
class TransferProgress(Message):
    """Progress of a REFER we sent: 202 accepted, then the NOTIFY sipfrag statuses (100, 180,
    200 ... or a failure like 486/603). ``final`` is set on the last one."""

    status: int
    reason: str
    final: bool


@event("call.ended")
@dataclass(frozen=True, kw_only=True)
class CallEnded(Message):
    reason: str  # "caller-hangup", "agent-hangup", "transferred", "error: ..."
    metrics: dict[str, Scalar] = field(default_factory=dict)  # packets, loss, jitter, late frames


@event("call.held")
@dataclass(frozen=True, kw_only=True)
class CallHeld(Message):
    """The caller's side put the call on hold (held=True) or took it off hold."""

    held: bool


@event("call.dtmf")
@dataclass(frozen=True, kw_only=True)
class Dtmf(Message):
    digit: str
    duration_ms: int


# ---- control requests ---------------------------------------------------------------------


@control("ctl.status")
@dataclass(frozen=True, kw_only=True)
class StatusRequest(Message):
    """Any service: answer with ServiceStatus."""


@control("ctl.answer")
@dataclass(frozen=True, kw_only=True)
class Answer(Message):
    pass


@control("ctl.reject")
@dataclass(frozen=True, kw_only=True)
class Reject(Message):
    code: int = 486
    reason: str = "Busy Here"


@control("ctl.hangup")
@dataclass(frozen=True, kw_only=True)
class Hangup(Message):
    reason: str = "agent-hangup"


@control("ctl.play_flush")
@dataclass(frozen=True, kw_only=True)
class PlayFlush(Message):
    """Barge-in: drop the agent audio queued for this call within one frame."""


@control("ctl.transfer")
@dataclass(frozen=True, kw_only=True)
class Transfer(Message):
    """Blind transfer (REFER) to ``target``; attended when ``replaces`` names a dialog."""

    target: str
    replaces: str = ""


@control("ctl.send_dtmf")
@dataclass(frozen=True, kw_only=True)
class SendDtmf(Message):
    """Send digits to the caller as RFC 4733 events (an IVR behind the PBX, a PIN prompt)."""

    digits: str
    duration_ms: int = 160


# ---- replies ------------------------------------------------------------------------------


@reply("reply.ok")
@dataclass(frozen=True, kw_only=True)
class Ok(Message):
    detail: str = ""


@reply("reply.error")
@dataclass(frozen=True, kw_only=True)
class Error(Message):
    """The request was understood but failed, or could not be understood."""

    reason: str


@reply("reply.status")
@dataclass(frozen=True, kw_only=True)
class ServiceStatus(Message):
    service: str
    pid: int
    state: str  # "starting" | "ready" | "stopping"
    uptime_s: float
    version: str
    details: dict[str, Scalar] = field(default_factory=dict)


@reply("reply.supervisor")
@dataclass(frozen=True, kw_only=True)
class SupervisorStatus(Message):
    """`appliancectl up`'s children: one entry per service (name, pid, state, restarts...)."""

    pid: int
    children: list[dict[str, Scalar]] = field(default_factory=list)
