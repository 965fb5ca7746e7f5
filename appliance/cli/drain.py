"""`appliancectl drain`: take no new calls while those in progress finish, before maintenance
or a restart of sipd (which would cut them). sipd answers INVITE and OPTIONS 503 meanwhile, so
the PBX's next route or the Kamailio front takes the new calls; `--off` lifts it. A restarted
sipd takes calls again by itself."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import click

from . import EXIT_FAILED, EXIT_NOT_RUNNING, EXIT_OK
from .context import load_config

POLL_S = 0.5


def _ask(config, msg, timeout: float):
    from ..runtime.health import ask_all

    return asyncio.run(ask_all(config, {"sipd": msg}, timeout))["sipd"]


def _calls(n: int) -> str:
    return f"{n} call{'s' if n != 1 else ''}"


@click.command()
@click.option("--off", is_flag=True, help="take new calls again")
@click.option("--wait", "wait_s", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="seconds to wait for the calls in progress to end (0 = do not wait)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--timeout", default=2.0, show_default=True, help="seconds to wait for each answer from sipd")
@click.pass_context
def drain(ctx: click.Context, off: bool, wait_s: float, as_json: bool, timeout: float) -> None:
    """Stop taking new calls; calls in progress go on. Exit 0 once draining (with --wait: once
    no call is left), 1 when calls remain after --wait or sipd cannot drain, 3 when sipd is not
    running."""
    from ..bus.messages import Drain, Ok, ServiceStatus, StatusRequest
    from ..runtime.health import NotRunning

    config = load_config(ctx)
    answer = _ask(config, Drain(on=not off), timeout)
    if not isinstance(answer, Ok):
        click.echo(f"sipd: {answer}", err=True)
        sys.exit(EXIT_NOT_RUNNING if isinstance(answer, NotRunning) else EXIT_FAILED)
    active, deadline, shown = None, time.monotonic() + wait_s, None
    while True:
        status = _ask(config, StatusRequest(), timeout)
        if isinstance(status, ServiceStatus):
            active = int(status.details.get("active_calls", 0))
        elif isinstance(status, NotRunning):  # stopped meanwhile: its calls are gone with it
            click.echo(f"sipd: {status}", err=True)
            sys.exit(EXIT_NOT_RUNNING)
        # else a slow answer from a busy sipd: ask again until the deadline
        if off or active == 0 or time.monotonic() >= deadline:
            break
        if not as_json and active is not None and active != shown:
            click.echo(f"waiting for {_calls(active)} to end")
            shown = active
        time.sleep(POLL_S)
    if as_json:
        click.echo(json.dumps({"draining": not off, "active_calls": active}))
    elif active is None:
        click.echo(f"sipd is {'taking calls again' if off else 'draining'}; it did not say how many calls it has")
    elif off:
        click.echo(f"sipd takes calls again ({active} in progress)")
    else:
        click.echo(f"sipd is draining: new calls get 503; {_calls(active)} in progress")
    sys.exit(EXIT_FAILED if not off and wait_s > 0 and active != 0 else EXIT_OK)
