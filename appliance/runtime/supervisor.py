"""`appliancectl up`: run the services as child processes, as systemd would on the box.

Children are started with the same entry points as the systemd units. One that dies is
restarted after a delay that doubles per consecutive crash (capped) and resets once a child
has stayed up ``stable_after`` seconds. Ctrl-C or SIGTERM stops them all: SIGTERM, then
SIGKILL after ``services.stop_timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import zmq.asyncio

from ..bus import ControlServer, endpoints
from ..bus.messages import StatusRequest, SupervisorStatus
from ..config import Config
from .service import acquire_instance_lock, make_run_dir, sweep_stale_rings

log = logging.getLogger("appliance.supervisor")


def service_argv(name: str, config_path: str | None) -> list[str]:
    """The console script installed beside this interpreter (what the unit runs), else ``-m``."""
    script = Path(sys.executable).parent / f"appliance-{name}"
    argv = [str(script)] if script.exists() else [sys.executable, "-m", f"appliance.services.{name}"]
    return argv + (["--config", config_path] if config_path else [])


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    restarts: int = 0
    crashes_in_a_row: int = 0
    last_exit: str = ""
    state: str = "stopped"  # running | backoff | stopped
    watcher: asyncio.Task | None = field(default=None, repr=False)  # waits for the process to exit
    restarter: asyncio.Task | None = field(default=None, repr=False)  # backoff delay, then start

    def describe(self) -> dict[str, str | int | float]:
        running = self.proc is not None and self.proc.returncode is None
        return {
            "name": self.name, "state": self.state, "pid": self.proc.pid if running else 0,
            "restarts": self.restarts, "uptime_s": round(time.monotonic() - self.started_at, 1) if running else 0.0,
            "last_exit": self.last_exit,
        }


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Supervisor:
    def __init__(self, config: Config, config_path: str | None):
        self.config = config
        self.children = [Child(name, service_argv(name, config_path)) for name in config.services.enabled]
        self.stopping = asyncio.Event()

    def backoff(self, child: Child) -> float:
        sup = self.config.supervisor
        return min(sup.restart_min * 2 ** max(child.crashes_in_a_row - 1, 0), sup.restart_max)

    async def run(self) -> int:
        run_dir = make_run_dir(self.config)
        lock_fd = acquire_instance_lock(run_dir, "supervisor")
        sweep_stale_rings(self.config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self.stopping.set)
        ctx = zmq.asyncio.Context()
        control = ControlServer(ctx, endpoints.control(str(run_dir), "supervisor"))
        control.on(StatusRequest, lambda _m: SupervisorStatus(pid=os.getpid(), children=[c.describe() for c in self.children]))
        serving = asyncio.create_task(control.serve())
        try:
            for child in self.children:
                await self._start(child)
            await self.stopping.wait()
        finally:
            log.info("stopping %d services", len(self.children))
            await self._stop_all()
            serving.cancel()
            control.close()
            ctx.term()
            os.close(lock_fd)
        return 0

    async def _start(self, child: Child) -> None:
        if self.stopping.is_set():
            return
        try:
            proc = await asyncio.create_subprocess_exec(*child.argv)
        except OSError as exc:
            child.last_exit = f"could not start: {exc}"
            log.error("%s could not start: %s", child.name, exc)
            self._schedule_restart(child)
            return
        if self.stopping.is_set():  # Ctrl-C arrived while it was being spawned
            proc.terminate()
            await proc.wait()
            return
        child.proc = proc
        child.started_at = time.monotonic()
        child.state = "running"
        log.info("started %s pid=%d", child.name, child.proc.pid)
        child.watcher = asyncio.create_task(self._watch(child))

    async def _watch(self, child: Child) -> None:
        code = await child.proc.wait()
        child.last_exit = describe_exit(code)
        if self.stopping.is_set():
            child.state = "stopped"
            return
        uptime = time.monotonic() - child.started_at
        child.crashes_in_a_row = 1 if uptime >= self.config.supervisor.stable_after else child.crashes_in_a_row + 1
        self._schedule_restart(child, uptime)

    def _schedule_restart(self, child: Child, uptime: float = 0.0) -> None:
        delay = self.backoff(child)
        child.state = "backoff"
        log.warning("%s died (%s) after %.1f s; restart #%d in %.2f s",
                    child.name, child.last_exit, uptime, child.restarts + 1, delay)

        async def later() -> None:
            try:
                await asyncio.wait_for(self.stopping.wait(), delay)
            except asyncio.TimeoutError:
                child.restarts += 1
                await self._start(child)

        child.restarter = asyncio.create_task(later())

    async def _stop_all(self) -> None:
        # Pending restarts see `stopping` and end; one caught mid-spawn terminates its own child.
        # Only then is the set of live children final.
        await asyncio.gather(*(c.restarter for c in self.children if c.restarter), return_exceptions=True)
        live = [c for c in self.children if c.proc is not None and c.proc.returncode is None]
        for c in live:
            c.proc.send_signal(signal.SIGTERM)
        deadline = self.config.services.stop_timeout
        try:
            await asyncio.wait_for(asyncio.gather(*(c.proc.wait() for c in live)), deadline)
        except asyncio.TimeoutError:
            for c in live:
                if c.proc.returncode is None:
                    log.error("%s did not stop within %.1f s: SIGKILL", c.name, deadline)
                    c.proc.kill()
            await asyncio.gather(*(c.proc.wait() for c in live))
        await asyncio.gather(*(c.watcher for c in self.children if c.watcher), return_exceptions=True)
        for c in self.children:
            c.state = "stopped"
