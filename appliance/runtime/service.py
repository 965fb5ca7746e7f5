"""The runtime every process shares: config, logging, bus sockets, signals, sd_notify.

A service's own work is a *component* (``start``/``stop``/``status``); this module wires it
into a process the same way under systemd, under ``appliancectl up``, or in a test.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Protocol

import zmq.asyncio

from .. import __version__
from ..bus import ControlServer, Publisher, endpoints
from ..bus.codec import MAX_PAYLOAD
from ..bus.messages import (MetricsRequest, ServiceMetrics, ServiceReady, ServiceStatus, ServiceStopping,
                            StatusRequest)
from ..config import Config, ConfigError, load
from ..ipc import sweep_stale
from ..models.errors import ModelError
from . import logs
from .notify import Notifier

log = logging.getLogger("appliance.runtime")

EX_CONFIG = 78  # sysexits.h: the config is unusable; restarting will not help


class Component(Protocol):
    """A service's own work, given the runtime's sockets and config."""

    async def start(self, runtime: "ServiceRuntime") -> None: ...

    async def stop(self) -> None: ...

    def status(self) -> dict[str, str | int | float | bool]: ...


class StartupError(RuntimeError):
    """The process cannot start here (already running, a directory it cannot create): says why."""


class AlreadyRunning(StartupError):
    pass


def make_dir(key: str, value: str) -> Path:
    path = Path(value)
    try:
        if not path.is_dir():  # ours: the appliance's user and group only, whatever the umask
            path.mkdir(mode=0o750, parents=True, exist_ok=True)
            path.chmod(0o750)
    except OSError as exc:
        raise StartupError(f"cannot create {key} {value}: {exc.strerror} (set {key} in the config)") from None
    return path


def make_run_dir(config: Config) -> Path:
    return make_dir("paths.run_dir", config.paths.run_dir)


def acquire_instance_lock(run_dir: Path, name: str) -> int:
    """One instance per service name: a second sipd would steal the first one's sockets."""
    path = run_dir / f"{name}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    except OSError as exc:
        raise StartupError(f"cannot open lock {path}: {exc.strerror} (is paths.run_dir writable by this user?)") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise AlreadyRunning(f"{name} is already running (pid {holder}, lock {path})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def sweep_stale_rings(config: Config) -> None:
    """Remove rings a crashed run left behind (done by the rings' owner, sipd, at start)."""
    shm = make_dir("paths.shm_dir", config.paths.shm_dir)
    for info in sweep_stale(shm):
        log.warning("removed stale ring %s left by a crashed run (%s)", info.path, info.error or "no live owner")


class ServiceRuntime:
    def __init__(self, name: str, config: Config, component: Component | None = None, *, owns_rings: bool = False,
                 series: Callable | None = None, exporter: Callable | None = None):
        """``series(name, component)``: this process's Prometheus registry; ``exporter(config)``:
        the box's /metrics server (sipd hosts it). Both are handed down by the process's main
        (appliance/services/), so the runtime does not reach up into appliance/metrics."""
        self.name = name
        self.owns_rings = owns_rings
        self.series = series
        self.make_exporter = exporter
        self.metrics_registry = None
        self.exporter = None
        self.config = config
        self.component = component
        self.notifier = Notifier()
        self.state = "starting"
        self.started_at = time.monotonic()
        self.stop_requested = asyncio.Event()
        self.exit_code = 0
        self.ctx: zmq.asyncio.Context | None = None
        self.publisher: Publisher | None = None
        self.control: ControlServer | None = None

    def request_stop(self) -> None:
        self.stop_requested.set()

    def fail(self, reason: str) -> None:
        """The component cannot go on (a dead worker, a wedged model): stop and exit non-zero,
        so systemd restarts the process rather than leaving it 'ready' but useless."""
        log.error("fatal: %s", reason)
        self.exit_code = 1
        self.stop_requested.set()

    def watch(self, task: asyncio.Task) -> asyncio.Task:
        """A component task that must never end while the service runs."""

        def done(t: asyncio.Task) -> None:
            if t.cancelled() or self.stop_requested.is_set():
                return
            exc = t.exception()
            self.fail(f"task {t.get_name()} ended: {exc!r}" if exc else f"task {t.get_name()} ended")

        task.add_done_callback(done)
        return task

    def status(self) -> ServiceStatus:
        details = {"bus_dropped": self.control.dropped if self.control else 0}
        if self.component is not None and self.state == "ready":
            details.update(self.component.status())
        return ServiceStatus(
            service=self.name, pid=os.getpid(), state=self.state,
            uptime_s=round(time.monotonic() - self.started_at, 3), version=__version__, details=details,
        )

    def metrics(self) -> ServiceMetrics:
        """This process's own Prometheus series (appliance/metrics/series.py), for the exporter."""
        text = ""
        if self.state == "ready" and self.metrics_registry is not None:
            from prometheus_client import generate_latest

            try:
                text = generate_latest(self.metrics_registry).decode()
            except Exception:
                log.exception("metrics could not be collected")
            if len(text) > MAX_PAYLOAD - 4096:
                log.error("metrics text of %d bytes does not fit a bus message; left out", len(text))
                text = ""
        return ServiceMetrics(service=self.name, state=self.state, uptime_s=round(time.monotonic() - self.started_at, 3),
                              text=text)

    async def run(self) -> int:
        run_dir = make_run_dir(self.config)
        lock_fd = acquire_instance_lock(run_dir, self.name)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: log.info("SIGHUP ignored: restart the service to apply config"))
        if self.owns_rings:
            sweep_stale_rings(self.config)
        self.ctx = zmq.asyncio.Context()
        tasks: list[asyncio.Task] = []
        try:
            self.publisher = Publisher(self.ctx, endpoints.events(str(run_dir), self.name))
            self.control = ControlServer(self.ctx, endpoints.control(str(run_dir), self.name))
            self.control.on(StatusRequest, lambda _msg: self.status())
            self.control.on(MetricsRequest, lambda _msg: self.metrics())
            tasks.append(asyncio.create_task(self.control.serve(), name="control"))
            if self.component is not None:
                await self.component.start(self)
                if self.series is not None:
                    self.metrics_registry = self.series(self.name, self.component)
            if self.make_exporter is not None and self.config.metrics.enabled:
                self.exporter = self.make_exporter(self.config)
                if not self.exporter.start():
                    self.exporter = None
            self.state = "ready"
            self.notifier.ready(status=f"{self.name} ready")
            self.publisher.publish(ServiceReady(service=self.name, pid=os.getpid()))
            log.info("ready (config %s, run dir %s)", self.config.source, run_dir)
            interval = self.notifier.watchdog_interval() if self.config.services.watchdog else None
            if interval:
                tasks.append(asyncio.create_task(self._watchdog(interval), name="watchdog"))
            await self.stop_requested.wait()
        finally:
            self.state = "stopping"
            self.notifier.stopping()
            log.info("stopping")
            if self.publisher is not None:
                self.publisher.publish(ServiceStopping(service=self.name, pid=os.getpid()))
            if self.component is not None:
                try:
                    await asyncio.wait_for(self.component.stop(), self.config.services.stop_timeout)
                except Exception:
                    log.exception("component did not stop cleanly")
            if self.exporter is not None:
                await asyncio.get_running_loop().run_in_executor(None, self.exporter.stop)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for sock in (self.control, self.publisher):
                if sock is not None:
                    sock.close()
            self.ctx.term()
            os.close(lock_fd)
        log.info("stopped")
        return self.exit_code

    async def _watchdog(self, interval: float) -> None:
        """Pings from the event loop itself: a wedged loop stops them and systemd restarts us."""
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)


def run_service(name: str, component_factory: Callable[[Config], Component] | None = None, argv=None,
                *, owns_rings: bool = False, series: Callable | None = None, exporter: Callable | None = None) -> None:
    """A service process's whole ``main``: parse args, load config, run until stopped."""
    parser = argparse.ArgumentParser(prog=f"appliance-{name}", description=f"appliance {name} service")
    parser.add_argument("--config", help="config file (default: $APPLIANCE_CONFIG or /etc/appliance/appliance.toml)")
    args = parser.parse_args(argv)
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        sys.exit(EX_CONFIG)
    logs.setup(name, config.log.level)
    component = component_factory(config) if component_factory else None
    try:
        code = asyncio.run(ServiceRuntime(name, config, component, owns_rings=owns_rings, series=series,
                                          exporter=exporter).run())
    except (StartupError, ModelError) as exc:
        log.error("%s", exc)  # a missing model says which and how to fix it, then exits non-zero
        code = 1
    sys.exit(code)
