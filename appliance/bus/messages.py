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


# ---- speech events (asrd, ttsd) -------------------------------------------------------------


@event("speech.started")
@dataclass(frozen=True, kw_only=True)
class SpeechStarted(Message):
    """The caller started speaking: ``seq``/``at_ns`` are the in-ring frame where speech began
    (its capture time), not when we noticed, so barge-in and latency maths use true times."""

    utterance: int
    seq: int
    at_ns: int


@event("speech.stopped")
@dataclass(frozen=True, kw_only=True)
class SpeechStopped(Message):
    """The endpoint: ``end_ns`` is the end of the last voiced frame; ``reason`` is "silence",
    "turn-complete" (the turn model heard a finished turn at a short pause), "max-length" (cut,
    more follows), "call-ended", or "too-short" (dropped, no final follows)."""

    utterance: int
    seq: int
    end_ns: int
    reason: str = "silence"


@event("asr.partial")
@dataclass(frozen=True, kw_only=True)
class AsrPartial(Message):
    """A hypothesis while the caller speaks (backends that stream); may change."""

    utterance: int
    text: str
    stable: bool = False


@event("asr.early")
@dataclass(frozen=True, kw_only=True)
class AsrEarly(Message):
    """The utterance so far, decoded at the caller's first pause (asrd's speculation) while the
    turn is not yet over: it becomes the final if the caller does not go on. A listener may get
    an answer ready (agentd has ttsd synthesise it); nothing may be said or done on it."""

    utterance: int
    text: str
    voiced_frames: int


@event("asr.final")
@dataclass(frozen=True, kw_only=True)
class AsrFinal(Message):
    """The recognised utterance. ``words``: {"word", "start_ns", "end_ns", "conf"} each;
    ``digits`` is ``text`` with spoken numbers as digits (for the agent's tools);
    ``latency_ms`` is from the end of speech to this event."""

    utterance: int
    text: str
    digits: str
    confidence: float
    start_ns: int
    end_ns: int
    latency_ms: float
    words: list[dict[str, Scalar]] = field(default_factory=list)
    truncated: bool = False  # cut at vad.max_utterance_s: the caller was still speaking
    decode_ms: float = 0.0  # the recogniser's own time (the rest of latency_ms is endpointing)
    alternatives: list[str] = field(default_factory=list)  # other readings of the audio (n-best), best first


@event("asr.dropped")
@dataclass(frozen=True, kw_only=True)
class AsrDropped(Message):
    """An utterance that will get no final: its queue overflowed, or recognition failed."""

    utterance: int
    reason: str


@event("tts.started")
@dataclass(frozen=True, kw_only=True)
class TtsStarted(Message):
    """The first frame of a turn is in the out-ring (``seq``); ``latency_ms`` from the first say."""

    turn: str
    seq: int
    latency_ms: float


@event("tts.mark")
@dataclass(frozen=True, kw_only=True)
class TtsMark(Message):
    """The turn's text up to ``char_end`` is in the out-ring, ending at frame ``seq``."""

    turn: str
    char_end: int
    seq: int


@event("tts.finished")
@dataclass(frozen=True, kw_only=True)
class TtsFinished(Message):
    """A turn ended: played out, or cancelled. ``spoken`` is the text the caller heard (whole
    clauses, then the words of a cut clause in proportion to its frames played)."""

    turn: str
    spoken: str
    cancelled: bool
    frames: int
    error: str = ""


# ---- control requests ---------------------------------------------------------------------


@control("ctl.status")
@dataclass(frozen=True, kw_only=True)
class StatusRequest(Message):
    """Any service: answer with ServiceStatus."""


@control("ctl.metrics")
@dataclass(frozen=True, kw_only=True)
class MetricsRequest(Message):
    """Any service: answer with ServiceMetrics (its own Prometheus series; sipd's exporter asks)."""


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
class CallHangup(Message):
    reason: str = "agent-hangup"


@control("ctl.play_flush")
@dataclass(frozen=True, kw_only=True)
class PlayFlush(Message):
    """Barge-in: drop the agent audio queued for this call within one frame."""


@control("ctl.transfer")
@dataclass(frozen=True, kw_only=True)
class CallTransfer(Message):
    """Blind transfer (REFER) to ``target``; attended when ``replaces`` names a dialog.
    ``headers`` (X-... only) ride in the Refer-To URI, so the PBX's new INVITE to the human
    carries them: the hand-off context (summary, intent) reaches the receiving phone/CRM."""

    target: str
    replaces: str = ""
    headers: dict[str, str] = field(default_factory=dict)


@control("ctl.send_dtmf")
@dataclass(frozen=True, kw_only=True)
class SendDtmf(Message):
    """Send digits to the caller as RFC 4733 events (an IVR behind the PBX, a PIN prompt)."""

    digits: str
    duration_ms: int = 160


@control("ctl.drain")
@dataclass(frozen=True, kw_only=True)
class Drain(Message):
    """sipd: take no new calls while those in progress go on (before maintenance or a restart);
    INVITE and OPTIONS get 503, so the PBX or the Kamailio front sends calls elsewhere.
    ``on=False`` takes calls again. Answered with Ok naming the calls still in progress."""

    on: bool = True


@control("tts.say")
@dataclass(frozen=True, kw_only=True)
class TtsSay(Message):
    """Speak ``text`` (a clause or sentence) as part of ``turn``; clauses of one turn queue in
    order. ``last`` marks the turn's final clause, so tts.finished can follow it."""

    turn: str
    text: str
    last: bool = True


@control("tts.prepare")
@dataclass(frozen=True, kw_only=True)
class Prepare(Message):
    """agentd -> ttsd when it loads an agent: its fixed lines (greeting, questions, the fixed
    clauses of templates), synthesised into ttsd's clause cache ahead of any call."""

    texts: list[str] = field(default_factory=list)


@control("tts.cancel")
@dataclass(frozen=True, kw_only=True)
class Cancel(Message):
    """Barge-in: stop this call's speech within one frame and flush what sipd has queued.
    Answered with the text the caller heard (also in tts.finished)."""

    turn: str = ""  # "" = whatever is playing


@control("tts.speculate")
@dataclass(frozen=True, kw_only=True)
class Speculate(Message):
    """agentd -> ttsd: the answer it would give if the caller's turn ends now. Synthesised into
    the clause cache at once, never played: the tts.say that follows a confirmed end of turn
    plays it from there; if the caller goes on, it is simply never said."""

    texts: list[str] = field(default_factory=list)


@control("tts.pause")
@dataclass(frozen=True, kw_only=True)
class Pause(Message):
    """The caller started talking over the agent: stop the audio within a frame but keep it
    (what sipd had queued is taken back), until tts.resume or tts.cancel says what it was."""

    turn: str = ""


@control("tts.resume")
@dataclass(frozen=True, kw_only=True)
class Resume(Message):
    """It was a backchannel, an echo or noise: go on from the frame where tts.pause stopped."""

    turn: str = ""


@control("asr.expect")
@dataclass(frozen=True, kw_only=True)
class AsrExpect(Message):
    """agentd -> asrd, after the agent asks the caller something: what the answer should be.
    The recogniser is primed with ``prompt`` (the question and the slot's vocabulary: Whisper's
    previous-text prompt) and, while a value is expected, returns its other readings (n-best)
    in asr.final's ``alternatives`` so the agent can take the one that fits."""

    slot: str = ""  # date, time, phone, name, yes_no, ... ("" = nothing in particular)
    prompt: str = ""


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


@reply("reply.metrics")
@dataclass(frozen=True, kw_only=True)
class ServiceMetrics(Message):
    """A service's own series in the Prometheus text format (appliance/metrics/series.py)."""

    service: str
    state: str
    uptime_s: float
    text: str = ""


@reply("reply.supervisor")
@dataclass(frozen=True, kw_only=True)
class SupervisorStatus(Message):
    """`appliancectl up`'s children: one entry per service (name, pid, state, restarts...)."""

    pid: int
    children: list[dict[str, Scalar]] = field(default_factory=list)
