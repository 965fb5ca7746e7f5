"""Every Prometheus series the appliance exports, in one catalogue, and each service's own.

Each service process keeps its series in a ``CollectorRegistry`` of its own: histograms and
labelled counters that change on an event (a turn's latency, a tool call, a call's end) are
prometheus_client objects updated where the event happens; everything the service already
counts for ``appliancectl status`` (asrd's utterances, sipd's live RTP counters) is read at
scrape time by a view, so nothing is counted twice. The runtime answers ``ctl.metrics`` with the
registry in the text format, and sipd's exporter (``exporter.py``) merges every service's answer
into the box's one ``/metrics``.

Names follow the Prometheus conventions: ``appliance_`` prefix, ``_total`` on counters,
``_seconds`` for durations, labels of low cardinality only (a stage, an outcome, a tool name
from the agent files, never a call id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

# No `<name>_created` series next to every counter and histogram: they double the output and
# no dashboard here uses them.
prometheus_client.disable_created_metrics()


@dataclass(frozen=True)
class Series:
    name: str  # as exposed (counters end in _total)
    kind: str  # counter | gauge | histogram
    source: str  # the process that produces it (exporter = sipd's exporter, about every service)
    help: str
    labels: tuple[str, ...] = ()

    @property
    def base(self) -> str:
        """The name prometheus_client is given (it adds _total to counters itself)."""
        return self.name[:-len("_total")] if self.kind == "counter" else self.name

    def samples(self) -> tuple[str, ...]:
        """Sample names this series shows on /metrics."""
        if self.kind == "histogram":
            return tuple(self.name + s for s in ("_bucket", "_sum", "_count"))
        return (self.name,)


STAGES = ("endpoint", "asr", "decide", "tts_first_audio", "total")  # agentd's TurnTiming.latency_ms()
OUTCOMES = ("completed", "transferred", "unresolved", "abandoned", "error")  # as in the call record
REFUSALS = ("busy", "overloaded", "draining", "forbidden", "rate", "auth", "unconfirmed", "share")
OVERFLOWS = ("redirected", "announced")
TURN_BUCKETS = (0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
TOOL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
JITTER_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2)
RTT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0)

CATALOGUE: tuple[Series, ...] = (
    # -- sipd's exporter: one line per enabled service, whether or not it answers
    Series("appliance_up", "gauge", "exporter", "1 when the service answered over its control socket within 1 s "
           "and is ready, else 0", ("service",)),
    Series("appliance_service_uptime_seconds", "gauge", "exporter", "seconds since the service's process started",
           ("service",)),
    Series("appliance_service_restarts_total", "counter", "exporter", "restarts of the service's process: the dev "
           "supervisor's count under `appliancectl up`, systemd's NRestarts under systemd", ("service",)),
    Series("appliance_build_info", "gauge", "exporter", "always 1; the appliance version", ("version",)),
    # -- sipd
    Series("appliance_active_calls", "gauge", "sipd", "calls sipd holds now (ringing or answered)"),
    Series("appliance_sip_calls_admitted_total", "counter", "sipd", "INVITEs admitted as calls"),
    Series("appliance_sip_calls_refused_total", "counter", "sipd", "INVITEs refused: busy (at sip.max_calls, the "
           "measured capacity), overloaded (the last minute's turn p95 over sip.turn_p95_target_ms): both get "
           "sip.overflow, "
           "draining (503, appliancectl drain), forbidden (403 allow_from), rate (flood dropped), "
           "auth (bad digest credentials), unconfirmed (503: the source holds too many calls it never ACKed), "
           "share (503: a non-trunk source at its share of max_calls)", ("reason",)),
    Series("appliance_sip_overflow_total", "counter", "sipd", "calls beyond capacity not refused with 503 "
           "(sip.overflow): redirected (302 to overflow_target), announced (answered, busy message, hung up)",
           ("policy",)),
    Series("appliance_sip_capacity_calls", "gauge", "sipd", "the calls sipd admits now: sip.max_calls, or the "
           "capacity `bench latency --sweep` measured (auto)"),
    Series("appliance_rtp_packets_received_total", "counter", "sipd", "RTP packets received from callers"),
    Series("appliance_rtp_packets_sent_total", "counter", "sipd", "RTP packets sent to callers"),
    Series("appliance_rtp_packets_lost_total", "counter", "sipd", "caller RTP packets that never arrived in time "
           "for playout (played as loss by the jitter buffer)"),
    Series("appliance_rtp_packets_late_total", "counter", "sipd", "caller RTP packets that arrived after their "
           "playout slot"),
    Series("appliance_rtp_jitter_max_seconds", "gauge", "sipd", "highest RFC 3550 interarrival jitter among live "
           "calls (0 with no calls)"),
    Series("appliance_rtp_call_jitter_seconds", "histogram", "sipd", "each ended call's RFC 3550 interarrival "
           "jitter at its end"),
    Series("appliance_rtcp_packets_sent_total", "counter", "sipd", "RTCP compound packets (SR or RR, SDES, BYE at "
           "the end) sent to callers"),
    Series("appliance_rtcp_packets_received_total", "counter", "sipd", "RTCP packets received from callers "
           "(malformed ones included)"),
    Series("appliance_rtcp_bad_packets_total", "counter", "sipd", "RTCP packets from callers that could not be "
           "parsed (dropped; the call goes on)"),
    Series("appliance_rtcp_rtt_seconds", "histogram", "sipd", "round-trip times measured from callers' RTCP "
           "report blocks about sipd's stream (RFC 3550 6.4.1: arrival - LSR - DLSR), one per report"),
    Series("appliance_rtcp_reported_lost_total", "counter", "sipd", "sipd's RTP packets that callers' RTCP "
           "reports say never arrived (cumulative lost, each call's highest)"),
    Series("appliance_rtcp_reported_loss_max_ratio", "gauge", "sipd", "highest fraction lost (0-1) a caller's "
           "last RTCP report gave for sipd's stream, among live calls (0 with none)"),
    Series("appliance_rtcp_reported_jitter_max_seconds", "gauge", "sipd", "highest interarrival jitter a caller's "
           "last RTCP report gave for sipd's stream, among live calls (0 with none)"),
    Series("appliance_media_late_ticks_total", "counter", "sipd", "20 ms media clock ticks that ran late "
           "(sipd could not keep up)"),
    # -- sipd and asrd: readers that fell more than audio.ring_seconds behind their ring
    Series("appliance_ring_overrun_frames_total", "counter", "sipd,asrd", "20 ms frames a ring reader lost "
           "because it fell more than audio.ring_seconds behind the writer", ("reader", "ring")),
    # -- asrd
    Series("appliance_asr_utterances_total", "counter", "asrd", "utterances cut by the endpointer"),
    Series("appliance_asr_finals_total", "counter", "asrd", "final transcripts published"),
    Series("appliance_asr_dropped_total", "counter", "asrd", "utterances dropped without a final (queue full, "
           "no speech, recognition failed)"),
    Series("appliance_asr_errors_total", "counter", "asrd", "recognitions that failed or timed out"),
    Series("appliance_asr_queued_utterances", "gauge", "asrd", "finished utterances waiting for the recogniser"),
    # -- ttsd
    Series("appliance_tts_turns_total", "counter", "ttsd", "agent turns spoken"),
    Series("appliance_tts_cancelled_total", "counter", "ttsd", "turns cancelled (barge-in)"),
    Series("appliance_tts_errors_total", "counter", "ttsd", "syntheses that failed"),
    # -- agentd
    Series("appliance_calls_total", "counter", "agentd", "calls ended, by the outcome in the call record",
           ("outcome",)),
    Series("appliance_tasks_total", "counter", "agentd", "callers' goals (the intent that started a flow) at the end "
           "of their calls, by goal and whether it was reached: task success, not just a call that ended",
           ("goal", "result")),
    Series("appliance_agent_conversations", "gauge", "agentd", "conversations agentd is holding now"),
    Series("appliance_turn_latency_seconds", "histogram", "agentd", "per caller turn, by stage: endpoint (end of "
           "speech to endpoint), asr (endpoint to final), decide (final to first clause sent to ttsd), "
           "tts_first_audio (to first audio in the out-ring), total (end of speech to first audio)", ("stage",)),
    Series("appliance_tool_calls_total", "counter", "agentd", "tool calls, by tool", ("tool",)),
    Series("appliance_tool_failures_total", "counter", "agentd", "tool calls that did not return ok, by tool and "
           "status (error, timeout, circuit-open, invalid-args, unknown-tool)", ("tool", "status")),
    Series("appliance_tool_call_duration_seconds", "histogram", "agentd", "tool call time including retries, "
           "by tool", ("tool",)),
    Series("appliance_call_record_failures_total", "counter", "agentd", "call record writes that failed "
           "when first tried (the call went on; a full or locked file's writes are queued, not lost)"),
    Series("appliance_call_record_queued", "gauge", "agentd", "call record writes waiting for the records file "
           "to take them (full disk, locked file); 0 when it is writable"),
    Series("appliance_call_record_dropped_total", "counter", "agentd", "queued call record writes given up: "
           "wrong on replay, or beyond the queue's bound"),
    Series("appliance_agent_control_errors_total", "counter", "agentd", "control requests from agentd to sipd "
           "or ttsd that failed or timed out"),
)
BY_NAME = {s.name: s for s in CATALOGUE}


def exported_samples() -> set[str]:
    """Every sample name /metrics can show (dashboards and their test use this)."""
    return {name for s in CATALOGUE for name in s.samples()}


def family(name: str) -> Metric:
    """An empty family for a view to fill, typed and described from the catalogue."""
    s = BY_NAME[name]
    cls = CounterMetricFamily if s.kind == "counter" else GaugeMetricFamily
    return cls(s.name, s.help, labels=list(s.labels))


def _make(registry: CollectorRegistry, name: str, **kw):
    s = BY_NAME[name]
    cls = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}[s.kind]
    return cls(s.base, s.help, list(s.labels), registry=registry, **kw)


class View:
    """Series computed at scrape time from a service's own state."""

    def __init__(self, fn: Callable[[], Iterable[Metric]]):
        self.fn = fn

    def describe(self):
        return []

    def collect(self):
        yield from self.fn()


def _one(name: str, value: float, labels: tuple[str, ...] = ()) -> Metric:
    fam = family(name)
    fam.add_metric(list(labels), value)
    return fam


# -- sipd -----------------------------------------------------------------------------------------
class SipdMetrics:
    """sipd's series: live calls, RTP and RTCP read from the endpoint, ended calls added up here."""

    _SUMMED = ("rx_packets", "tx_packets", "lost", "late", "rtcp_sent", "rtcp_packets", "rtcp_bad", "remote_lost")

    def __init__(self, endpoint):
        self.ep = endpoint
        self.registry = CollectorRegistry(auto_describe=False)
        self.call_jitter = _make(self.registry, "appliance_rtp_call_jitter_seconds", buckets=JITTER_BUCKETS)
        self.rtt = _make(self.registry, "appliance_rtcp_rtt_seconds", buckets=RTT_BUCKETS)
        self.ended = {k: 0 for k in self._SUMMED} | {"out_lost": 0}
        self.registry.register(View(self._collect))

    def rtcp_rtt(self, seconds: float) -> None:
        """A caller's RTCP report measured a round trip (MediaSession, as it arrives)."""
        self.rtt.observe(seconds)

    def call_ended(self, media) -> None:
        """A call left sipd (Call.end → endpoint.forget): its counters join the totals."""
        stats = media.stats()
        for k in self._SUMMED:
            self.ended[k] += stats.get(k, 0)
        self.ended["out_lost"] += media.out_ring.lost if media.out_ring is not None else 0
        if stats.get("rx_packets"):
            self.call_jitter.observe(stats.get("jitter_ms", 0.0) / 1000)

    def _collect(self):
        ep = self.ep
        medias = [c.media for c in list(ep.calls.values())]
        live = [m.stats() for m in medias]
        total = {k: v + sum(s.get(k, 0) for s in live) for k, v in self.ended.items() if k != "out_lost"}
        yield _one("appliance_active_calls", len(medias))
        yield _one("appliance_sip_calls_admitted_total", ep.counters.get("calls_total", 0))
        refused = family("appliance_sip_calls_refused_total")
        for reason in REFUSALS:
            refused.add_metric([reason], ep.counters.get(f"refused_{reason}", 0))
        yield refused
        overflow = family("appliance_sip_overflow_total")
        for policy in OVERFLOWS:
            overflow.add_metric([policy], ep.counters.get(f"overflow_{policy}", 0))
        yield overflow
        yield _one("appliance_sip_capacity_calls", ep.admission.max_calls)
        yield _one("appliance_rtp_packets_received_total", total["rx_packets"])
        yield _one("appliance_rtp_packets_sent_total", total["tx_packets"])
        yield _one("appliance_rtp_packets_lost_total", total["lost"])
        yield _one("appliance_rtp_packets_late_total", total["late"])
        yield _one("appliance_rtp_jitter_max_seconds", max((s.get("jitter_ms", 0.0) for s in live), default=0.0) / 1000)
        yield _one("appliance_rtcp_packets_sent_total", total["rtcp_sent"])
        yield _one("appliance_rtcp_packets_received_total", total["rtcp_packets"])
        yield _one("appliance_rtcp_bad_packets_total", total["rtcp_bad"])
        yield _one("appliance_rtcp_reported_lost_total", total["remote_lost"])
        yield _one("appliance_rtcp_reported_loss_max_ratio",
                   max((s.get("remote_loss", 0.0) for s in live), default=0.0))
        yield _one("appliance_rtcp_reported_jitter_max_seconds",
                   max((s.get("remote_jitter_ms", 0.0) for s in live), default=0.0) / 1000)
        yield _one("appliance_media_late_ticks_total", ep.media_clock.late_ticks)
        out_lost = self.ended["out_lost"] + sum(m.out_ring.lost for m in medias if m.out_ring is not None)
        yield _one("appliance_ring_overrun_frames_total", out_lost, ("sipd", "out"))


# -- asrd and ttsd: views of their status counters -----------------------------------------------
def _asrd(rec) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)

    def collect():
        c = rec.counters
        calls = list(rec.calls.values())
        yield _one("appliance_ring_overrun_frames_total", c.get("ring_lost", 0) + sum(a.reader.lost for a in calls),
                   ("asrd", "in"))
        yield _one("appliance_asr_utterances_total", c.get("utterances", 0))
        yield _one("appliance_asr_finals_total", c.get("finals", 0))
        yield _one("appliance_asr_dropped_total", c.get("dropped", 0))
        yield _one("appliance_asr_errors_total", c.get("errors", 0))
        yield _one("appliance_asr_queued_utterances", sum(len(a.queue) for a in calls))

    registry.register(View(collect))
    return registry


def _ttsd(synth) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)

    def collect():
        c = synth.counters
        yield _one("appliance_tts_turns_total", c.get("turns", 0))
        yield _one("appliance_tts_cancelled_total", c.get("cancelled", 0))
        yield _one("appliance_tts_errors_total", c.get("errors", 0))

    registry.register(View(collect))
    return registry


# -- agentd ---------------------------------------------------------------------------------------
class MeteredTools:
    """A ToolRunner whose every call is counted and timed (by tool name from the agent file;
    a name the LLM made up counts as "unknown", so labels stay bounded)."""

    def __init__(self, runner, metrics: "AgentMetrics"):
        self.runner, self.metrics = runner, metrics
        for name in runner.specs:
            metrics.tool_calls.labels(name)
            metrics.tool_duration.labels(name)

    def __getattr__(self, name):
        return getattr(self.runner, name)

    async def call(self, name, args=None, **kw):
        result = await self.runner.call(name, args, **kw)
        tool = name if name in self.runner.specs else "unknown"
        self.metrics.tool_calls.labels(tool).inc()
        self.metrics.tool_duration.labels(tool).observe(result.duration_ms / 1000)
        if result.status != "ok":
            self.metrics.tool_failures.labels(tool, result.status).inc()
        return result


class AgentMetrics:
    def __init__(self, service):
        self.service = service
        r = self.registry = CollectorRegistry(auto_describe=False)
        self.calls = _make(r, "appliance_calls_total")
        for outcome in OUTCOMES:
            self.calls.labels(outcome)
        self.tasks = _make(r, "appliance_tasks_total")
        self.turn_latency = _make(r, "appliance_turn_latency_seconds", buckets=TURN_BUCKETS)
        for stage in STAGES:
            self.turn_latency.labels(stage)
        self.tool_calls = _make(r, "appliance_tool_calls_total")
        self.tool_failures = _make(r, "appliance_tool_failures_total")
        self.tool_duration = _make(r, "appliance_tool_call_duration_seconds", buckets=TOOL_BUCKETS)
        r.register(View(self._collect))

    def tools(self, runner) -> MeteredTools:
        return MeteredTools(runner, self)

    def call_ended(self, outcome: str, goal: str = "", reached: bool = False) -> None:
        self.calls.labels(outcome if outcome in OUTCOMES else "error").inc()
        if goal:
            self.tasks.labels(goal, "reached" if reached else "not-reached").inc()

    def turn(self, latency_ms: dict) -> None:
        """One caller turn's stages (ms), as the conversation records them; 0 is a stage whose
        stamps are missing (as in agentd's status), not a measurement."""
        for stage in STAGES:
            value = latency_ms.get(stage) or 0
            if value > 0:
                self.turn_latency.labels(stage).observe(value / 1000)

    def _collect(self):
        svc = self.service
        yield _one("appliance_agent_conversations", len(svc.conversations))
        records = getattr(svc, "records", None)
        yield _one("appliance_call_record_failures_total", getattr(records, "failures", 0) if records else 0)
        yield _one("appliance_call_record_queued", len(getattr(records, "queue", ())) if records else 0)
        yield _one("appliance_call_record_dropped_total", getattr(records, "dropped", 0) if records else 0)
        yield _one("appliance_agent_control_errors_total", svc.counters.get("control_errors", 0))


def registry_for(name: str, component) -> CollectorRegistry | None:
    """The registry a service answers ``ctl.metrics`` with (None: it has no series)."""
    if component is None:
        return None
    own = getattr(component, "metrics", None)
    if own is not None and isinstance(getattr(own, "registry", None), CollectorRegistry):
        return own.registry
    views = {"asrd": _asrd, "ttsd": _ttsd}.get(name)
    return views(component) if views is not None else None
