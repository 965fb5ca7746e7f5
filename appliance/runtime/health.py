"""Ask every service (and the dev supervisor, if running) how it is: `appliancectl status`."""

from __future__ import annotations

import asyncio
import os
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


class NotRunning(ConnectionError):
    """No control socket: the service is not running, so there is no deadline to wait out."""


class NoAccess(PermissionError):
    """The run dir or socket is closed to this user: says so instead of 'not running'."""


async def _ask(ctx: zmq.asyncio.Context, run_dir: str, name: str, msg, timeout: float):
    endpoint = endpoints.control(run_dir, name)
    path = endpoint.removeprefix("ipc://")
    try:
        os.stat(path)
    except FileNotFoundError:
        raise NotRunning(f"not running (no control socket {path})") from None
    except PermissionError:
        raise NoAccess(f"cannot reach {path}: permission denied (run as root or as a member of the "
                       "appliance group)") from None
    client = ControlClient(ctx, endpoint)
    try:
        return await client.request(msg, timeout)
    finally:
        client.close()


async def ask_all(config: Config, requests: dict[str, object], timeout: float) -> dict[str, object]:
    """One control request to each named service at once (`status`, the metrics scrape): each
    answer, or the exception it ended in (NotRunning, NoAccess, BusTimeout, RemoteError)."""
    ctx = zmq.asyncio.Context()
    try:
        answers = await asyncio.gather(*(_ask(ctx, config.paths.run_dir, name, msg, timeout)
                                         for name, msg in requests.items()), return_exceptions=True)
    finally:
        ctx.term()
    return dict(zip(requests, answers))


async def collect(config: Config, timeout: float = 1.0) -> Health:
    names = list(config.services.enabled)
    answers = await ask_all(config, {n: StatusRequest() for n in names + ["supervisor"]}, timeout)
    services = []
    for name in names:
        answer = answers[name]
        if isinstance(answer, ServiceStatus):
            services.append(ServiceHealth(name, answer.state, answer.pid, answer.uptime_s, dict(answer.details)))
        elif isinstance(answer, (BusTimeout, RemoteError, NotRunning, NoAccess)):
            services.append(ServiceHealth(name, "down", error=str(answer)))
        else:
            services.append(ServiceHealth(name, "down", error=repr(answer)))
    sup = answers["supervisor"]
    return Health(services, sup if isinstance(sup, SupervisorStatus) else None)
