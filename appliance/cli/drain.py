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

POLL_S = 0.5


def _ask(config, msg, timeout: float):
    from ..runtime.health import ask_all

    return asyncio.run(ask_all(config, {"sipd": msg}, timeout))["sipd"]


@click.command()
@click.option("--off", is_flag=True, help="take new calls again")
@click.option("--wait", "wait_s", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="seconds to wait for the calls in progress to end (0 = do not wait)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--timeout", default=2.0, show_default=True, help="seconds to wait for sipd to answer")
@click.pass_context
def drain(ctx: click.Context, off: bool, wait_s: float, as_json: bool, timeout: float) -> None:
    """Stop taking new calls; calls in progress go on. Exit 0 once draining (with --wait: once
    no call is left), 1 when calls remain after --wait, 3 when sipd is not running."""
    from ..bus.messages import Drain, Ok, ServiceStatus, StatusRequest
    from .main import _load  # main imports this module

    config = _load(ctx)
    answer = _ask(config, Drain(on=not off), timeout)
    if not isinstance(answer, Ok):
        click.echo(f"sipd: {answer}", err=True)
        sys.exit(EXIT_NOT_RUNNING)
    active, deadline, shown = -1, time.monotonic() + wait_s, None
    while True:
        status = _ask(config, StatusRequest(), timeout)
        if not isinstance(status, ServiceStatus):
            click.echo(f"sipd stopped answering: {status}", err=True)
            sys.exit(EXIT_NOT_RUNNING)
        active = int(status.details.get("active_calls", 0))
        if off or active == 0 or time.monotonic() >= deadline:
            break
        if not as_json and active != shown:
            click.echo(f"waiting for {active} call{'s' if active != 1 else ''} to end")
            shown = active
        time.sleep(POLL_S)
    if as_json:
        click.echo(json.dumps({"draining": not off, "active_calls": active}))
    elif off:
        click.echo(f"sipd takes calls again ({active} in progress)")
    else:
        click.echo(f"sipd is draining: new calls get 503; {active} call{'s' if active != 1 else ''} in progress")
    sys.exit(EXIT_FAILED if active and not off and wait_s > 0 else EXIT_OK)
