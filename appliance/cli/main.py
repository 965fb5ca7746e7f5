"""`appliancectl`: status, config check, rings, logs, version, up (dev supervisor), bench.

Exit codes, the same for every command: 0 ok; 1 a runtime failure (a service not ready, a call
that failed, logs that cannot be read); 2 a usage or config error (bad option, invalid or unsafe
config, an unusable file); 3 the appliance is not running or cannot be reached.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import click

from ..config import ConfigError, default_path, load
from ..config.loader import warnings as config_warnings
from .bench import bench
from .demo import demo
from .drain import drain
from .calls import call, calls
from .logs import logs
from .models import models
from .talk import talk
from .version import version
from . import EXIT_FAILED, EXIT_NOT_RUNNING, EXIT_OK, EXIT_USAGE, exit_on_signals
from .context import load_config


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="config file [default: $APPLIANCE_CONFIG or /etc/appliance/appliance.toml]")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Operate the voice-agent appliance."""
    exit_on_signals()
    ctx.obj = {"config": config_path}


@cli.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="machine-readable output: validity, problems, and the "
                                                       "effective config with every secret masked")
@click.pass_context
def config_check(ctx: click.Context, file: str | None, as_json: bool) -> None:
    """Validate FILE (default: the configured file): every key, and that a file holding credentials
    is private (0600). Exit 0 when valid, 2 with every problem listed. Secrets are never shown."""
    from ..config.secrets import redacted

    path = file or ctx.obj["config"] or default_path()
    try:
        config = load(path)
    except ConfigError as exc:
        if as_json:
            click.echo(json.dumps({"valid": False, "source": exc.source, "problems": exc.problems}, indent=2))
        else:
            click.echo(exc.render(), err=True)
        sys.exit(EXIT_USAGE)
    if as_json:
        click.echo(json.dumps({"valid": True, "source": config.source, "problems": [],
                               "warnings": config_warnings(config),
                               "config": redacted(config)}, indent=2))
        return
    click.echo(f"config {config.source} is valid")
    for line in config_warnings(config):
        click.echo(f"  warning: {line}", err=True)
    click.echo(f"  services {', '.join(config.services.enabled)}; sip {config.sip.bind}:{config.sip.port}, "
               f"max {config.sip.max_calls} calls; run dir {config.paths.run_dir}")


@cli.command()
@click.pass_context
def up(ctx: click.Context) -> None:
    """Run all enabled services in the foreground, restarting any that dies; Ctrl-C stops them."""
    from ..runtime import logs
    from ..runtime.service import StartupError
    from ..runtime.supervisor import Supervisor

    config = load_config(ctx)
    logs.setup("appliancectl", config.log.level)
    path = ctx.obj["config"] or os.environ.get("APPLIANCE_CONFIG")
    try:
        sys.exit(asyncio.run(Supervisor(config, str(Path(path).resolve()) if path else None).run()))
    except StartupError as exc:
        click.echo(f"appliancectl up: {exc}", err=True)
        sys.exit(1)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--timeout", default=1.0, show_default=True, help="seconds to wait for each service")
@click.pass_context
def status(ctx: click.Context, as_json: bool, timeout: float) -> None:
    """Health of every enabled service: its systemd unit (when systemd runs the appliance) and
    what the service says over its control socket. Exit 0 when all are ready, 1 when some are
    not, 3 when none answers (the appliance is not running)."""
    from ..runtime import units
    from ..runtime.health import collect

    config = load_config(ctx)
    health = asyncio.run(collect(config, timeout))
    unit_states = units.unit_states(list(config.services.enabled))
    if as_json:
        click.echo(json.dumps({
            "services": [vars(s) for s in health.services],
            "supervisor": None if health.supervisor is None else {"pid": health.supervisor.pid,
                                                                  "children": health.supervisor.children},
            "systemd": None if unit_states is None else {n: u.as_dict() for n, u in unit_states.items()},
            "all_ready": health.all_ready,
        }, indent=2))
    else:
        if unit_states is not None:
            restarts = {n: u.restarts for n, u in unit_states.items()}
        elif health.supervisor:
            restarts = {c["name"]: c["restarts"] for c in health.supervisor.children}
        else:
            restarts = {}
        unit_col = unit_states is not None
        click.echo(f"{'SERVICE':<10} {'STATE':<9} " + (f"{'UNIT':<28} " if unit_col else "")
                   + f"{'PID':>7} {'UPTIME':>9} {'RESTARTS':>8}  DETAILS")
        for s in health.services:
            details = s.error or " ".join(f"{k}={v}" for k, v in s.details.items())
            unit = f"{unit_states[s.name].describe():<28} " if unit_col else ""
            click.echo(f"{s.name:<10} {s.state:<9} {unit}{s.pid or '-':>7} {s.uptime_s:>8.1f}s "
                       f"{restarts.get(s.name, '-'):>8}  {details}")
    if health.all_ready:
        sys.exit(EXIT_OK)
    sys.exit(EXIT_NOT_RUNNING if all(s.state == "down" for s in health.services) else EXIT_FAILED)


@cli.command()
@click.option("--clean", is_flag=True, help="remove rings left by a crashed run")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output (with --clean: what was removed)")
@click.pass_context
def rings(ctx: click.Context, clean: bool, as_json: bool) -> None:
    """List the audio rings in shared memory, with the liveness of their owner and writer."""
    from ..ipc import inspect, sweep_stale

    config = load_config(ctx)
    infos = inspect(config.paths.shm_dir)
    if as_json:
        removed = [str(i.path) for i in sweep_stale(config.paths.shm_dir)] if clean else []
        click.echo(json.dumps({"rings": [{**vars(i), "path": str(i.path), "stale": i.stale} for i in infos],
                               "removed": removed}, indent=2))
        return
    click.echo(f"{'CALL':<24} {'DIR':<4} {'FRAMES':>8} {'OWNER':>8} {'WRITER':>8}  STATE")
    for i in infos:
        state = "stale" if i.stale else ("ended" if i.closed else "live")
        owner = f"{i.owner_pid}{'' if i.owner_alive else '✗'}"
        writer = f"{i.writer_pid}{'' if i.writer_alive else '✗'}" if i.writer_pid else "-"
        click.echo(f"{i.call_id:<24} {i.direction:<4} {i.frames_written:>8} {owner:>8} {writer:>8}  {state}"
                   + (f" ({i.error})" if i.error else ""))
    if clean:
        removed = sweep_stale(config.paths.shm_dir)
        click.echo(f"removed {len(removed)} stale ring(s)")


@cli.command()
@click.option("--type", "types", multiple=True, help="only these type prefixes, e.g. call. (repeatable)")
@click.option("--count", default=0, help="exit after this many events (0 = until Ctrl-C)")
@click.option("--timeout", default=0.0, help="exit after this many seconds (0 = never)")
@click.pass_context
def events(ctx: click.Context, types: tuple[str, ...], count: int, timeout: float) -> None:
    """Print every service's events as they happen, one line each (call id, type, fields)."""
    import zmq.asyncio

    from ..bus import Subscriber, endpoints

    config = load_config(ctx)

    async def follow() -> None:
        zctx = zmq.asyncio.Context()
        sub = Subscriber(zctx, [endpoints.events(config.paths.run_dir, s) for s in config.services.enabled],
                         types or ("",))
        seen = 0
        try:
            while not count or seen < count:
                msg = await sub.recv()
                fields = {k: v for k, v in vars(msg).items() if k not in ("call_id", "ts_ns")}
                click.echo(f"{msg.ts_ns / 1e9:14.3f} {msg.call_id or '-':<14} {msg.TYPE:<18} "
                           + " ".join(f"{k}={v}" for k, v in fields.items()), nl=True)
                seen += 1
        finally:
            sub.close()
            zctx.term()

    try:
        asyncio.run(asyncio.wait_for(follow(), timeout) if timeout else follow())
    except (asyncio.TimeoutError, KeyboardInterrupt):
        pass


cli.add_command(bench)
cli.add_command(demo)
cli.add_command(drain)
cli.add_command(models)
cli.add_command(calls)
cli.add_command(call)
cli.add_command(talk)
cli.add_command(logs)
cli.add_command(version)


def main() -> None:
    cli(prog_name="appliancectl")
