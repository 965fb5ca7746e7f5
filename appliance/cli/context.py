"""What every `appliancectl` command shares: the config the top-level ``--config`` names.

Its own module so the subcommands (bench, calls, demo, ...) need not import ``main``, which
imports them.
"""

from __future__ import annotations

import sys

import click

from ..config import Config, ConfigError, load


def load_config(ctx: click.Context) -> Config:
    """The config of this invocation; an invalid one is shown and exits 2 (a usage error)."""
    try:
        return load(ctx.obj["config"])
    except ConfigError as exc:
        click.echo(exc.render(), err=True)
        sys.exit(2)
