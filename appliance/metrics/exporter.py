"""The box's one Prometheus endpoint, hosted by sipd: ``http://metrics.bind:metrics.port/metrics``.

On every scrape it asks each enabled service for its own series over the service's control
socket (``ctl.metrics``, answered by the runtime from the service's registry, series.py), all
at once with a 1 s deadline, and merges the answers. A service that is down, starting or stuck
costs the scrape nothing but its own series: it shows as ``appliance_up{service=...} 0``. Process
restarts come from the dev supervisor when it answers (``appliancectl up``), else from systemd's
``NRestarts`` when sipd runs under systemd.

The HTTP server and the collection run in threads of their own (prometheus_client's server,
a private event loop per scrape), never on sipd's event loop, which carries the media clock.
"""

from __future__ import annotations

import asyncio
import logging
import os

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from .. import __version__
from ..bus import BusTimeout, RemoteError
from ..bus.messages import MetricsRequest, ServiceMetrics, StatusRequest, SupervisorStatus
from ..config import Config
from ..runtime import health, units
from .series import CATALOGUE, View, family

log = logging.getLogger("appliance.metrics")

SCRAPE_TIMEOUT = 1.0


class Exporter:
    """Collects on demand (a prometheus_client collector) and serves it over HTTP."""

    def __init__(self, config: Config, timeout: float = SCRAPE_TIMEOUT):
        self.config = config
        self.timeout = timeout
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(View(self.collect))
        self.server = None
        self.thread = None

    # -- HTTP -----------------------------------------------------------------------------------
    def start(self) -> bool:
        """Listen on metrics.bind:metrics.port; False (logged) when that cannot be done: the
        service goes on without metrics rather than failing calls over a port."""
        m = self.config.metrics
        try:
            self.server, self.thread = start_http_server(m.port, m.bind, registry=self.registry)
        except OSError as exc:
            log.warning("metrics: cannot listen on %s:%d: %s (metrics.bind/metrics.port); no /metrics",
                        m.bind, m.port, exc.strerror or exc)
            return False
        log.info("metrics on http://%s:%d/metrics", m.bind, self.server.server_port)
        return True

    @property
    def port(self) -> int:
        return self.server.server_port if self.server is not None else 0

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    # -- collection -----------------------------------------------------------------------------
    def collect(self):
        names = list(self.config.services.enabled)
        answers, supervisor = asyncio.run(self._ask_all(names))
        up, uptime = family("appliance_up"), family("appliance_service_uptime_seconds")
        merged: dict[str, object] = {}
        for name, answer in zip(names, answers):
            ok = isinstance(answer, ServiceMetrics)
            up.add_metric([name], 1 if ok and answer.state == "ready" else 0)
            if not ok:
                continue
            uptime.add_metric([name], answer.uptime_s)
            try:
                families = list(text_string_to_metric_families(answer.text))
            except Exception as exc:  # a service's bad text costs only its own series
                log.warning("metrics: %s answered unparseable text: %s", name, exc)
                continue
            for fam in families:
                fam.samples = [s for s in fam.samples if not s.name.endswith("_created")]
                have = merged.get(fam.name)
                if have is None:
                    merged[fam.name] = fam
                elif have.type == fam.type:  # one series from two services (ring overruns)
                    have.samples.extend(fam.samples)
                else:
                    log.warning("metrics: %s from %s is a %s, already a %s; left out", fam.name, name,
                                fam.type, have.type)
        yield up
        yield uptime
        restarts = self._restarts(names, supervisor)
        if restarts:
            fam = family("appliance_service_restarts_total")
            for name in names:
                if name in restarts:
                    fam.add_metric([name], restarts[name])
            yield fam
        info = family("appliance_build_info")
        info.add_metric([__version__], 1)
        yield info
        order = {s.base: i for i, s in enumerate(CATALOGUE)}  # parsed counters lose their _total
        yield from sorted(merged.values(), key=lambda f: order.get(f.name, len(order)))

    def _restarts(self, names: list[str], supervisor) -> dict[str, int] | None:
        """From the dev supervisor when it runs the services, else systemd's NRestarts when sipd
        itself runs under systemd (a dev box with systemd is not asked at every scrape)."""
        if isinstance(supervisor, SupervisorStatus):
            return {str(c.get("name")): int(c.get("restarts", 0)) for c in supervisor.children}
        if not os.environ.get("INVOCATION_ID"):  # set by systemd for the processes of a unit
            return None
        states = units.unit_states(names, timeout=2.0)
        if states is None:
            return None
        return {n: u.restarts for n, u in states.items() if u.load != "not-found"}

    async def _ask_all(self, names: list[str]):
        requests: dict[str, object] = {n: MetricsRequest() for n in names}
        requests["supervisor"] = StatusRequest()
        got = await health.ask_all(self.config, requests, self.timeout)
        for name, answer in got.items():
            if isinstance(answer, (BusTimeout, RemoteError)) and name != "supervisor":
                log.debug("metrics: %s did not answer: %s", name, answer)
        return [got[n] for n in names], got["supervisor"]
