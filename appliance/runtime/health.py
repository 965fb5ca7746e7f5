"""Ask every service (and the dev supervisor, if running) how it is: `appliancectl status`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import zmq.asyncio

from ..bus import BusTimeout, ControlClient, RemoteError, endpoints
from ..bus.messages import ServiceStatus, StatusRequest, SupervisorStatus
from ..config import Config


@dataclass
class ServiceHealth:
    name: str
    state: str  # the service's own state, or "down" when it did not answer
    pid: int = 0
    uptime_s: float = 0.0
    details: dict = field(default_factory=dict)
    error: str = ""


@dataclass
class Health:
    services: list[ServiceHealth]
    supervisor: SupervisorStatus | None

    @property
    def all_ready(self) -> bool:
        return all(s.state == "ready" for s in self.services)


async def _ask(ctx: zmq.asyncio.Context, run_dir: str, name: str, timeout: float):
    client = ControlClient(ctx, endpoints.control(run_dir, name))
    try:
        return await client.request(StatusRequest(), timeout)
    finally:
        client.close()


async def collect(config: Config, timeout: float = 1.0) -> Health:
    ctx = zmq.asyncio.Context()
    run_dir = config.paths.run_dir
    names = list(config.services.enabled)
    try:
        answers = await asyncio.gather(
            *(_ask(ctx, run_dir, n, timeout) for n in names + ["supervisor"]), return_exceptions=True
        )
    finally:
        ctx.term()
    services = []
    for name, answer in zip(names, answers):
        if isinstance(answer, ServiceStatus):
            services.append(ServiceHealth(name, answer.state, answer.pid, answer.uptime_s, dict(answer.details)))
        elif isinstance(answer, (BusTimeout, RemoteError)):
            services.append(ServiceHealth(name, "down", error=str(answer)))
        else:
            services.append(ServiceHealth(name, "down", error=repr(answer)))
    sup = answers[-1] if isinstance(answers[-1], SupervisorStatus) else None
    return Health(services, sup)
