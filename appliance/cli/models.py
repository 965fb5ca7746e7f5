"""`appliancectl models ...`: list the models, verify their files, set up the ones made of parts."""

from __future__ import annotations

import json
import sys

import click

from ..config import Config
from .context import load_config


def _config(ctx: click.Context) -> Config:

    return load_config(ctx)


@click.group()
def models() -> None:
    """Models: list them, check every file against its sha256, set up those made of parts."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def models_list(ctx: click.Context, as_json: bool) -> None:
    """Every model with its source and status (ok, missing package, not set up, missing, corrupt).
    The status trusts a file's stamp while its size and mtime are unchanged; `verify` hashes all.
    Exit 2 when a manifest is invalid."""
    from ..models.store import manifest_dirs, scan_manifests, status

    config = _config(ctx)
    good, bad = scan_manifests(config)
    if as_json:
        click.echo(json.dumps({
            "models": [{"name": m.name, "kind": m.kind, "backend": m.backend, "sources": list(m.sources),
                        "in_place": m.in_place, "status": status(config, m)} for m in good.values()],
            "manifest_dirs": [str(d) for d in manifest_dirs(config)],
            "invalid_manifests": [exc.render() for exc in bad],
        }, indent=2))
        sys.exit(2 if bad else 0)
    rows = [(m.name, m.kind, m.backend, ", ".join(m.sources) + ("" if m.in_place else " (joined at setup)"),
             status(config, m)) for m in good.values()]
    header = ("NAME", "KIND", "BACKEND", "SOURCE", "STATUS")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[4])
    click.echo(f"manifests from {', '.join(map(str, manifest_dirs(config)))}")
    for exc in bad:
        click.echo(exc.render(), err=True)
    sys.exit(2 if bad else 0)


@models.command("verify")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output: every file checked")
@click.pass_context
def models_verify(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """Hash every file of NAME (default: every model) and compare with its manifest.
    Exit 0 when all match, 2 with one line per problem (expected and actual sha256, the fix)."""
    from ..models.errors import ModelError
    from ..models.store import verify

    config = _config(ctx)
    try:
        checks = verify(config, name)
    except ModelError as exc:
        if as_json:
            click.echo(json.dumps({"ok": False, "error": str(exc), "checks": []}, indent=2))
        else:
            click.echo(f"appliancectl models verify: {exc}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps({"ok": all(c.ok for c in checks), "checks": [
            {"model": c.model, "status": c.status, "ok": c.ok, "message": c.message, "file": c.file,
             "path": str(c.path) if c.path else None, "expected": c.expected, "actual": c.actual, "fix": c.fix}
            for c in checks]}, indent=2))
        sys.exit(0 if all(c.ok for c in checks) else 2)
    by_model: dict[str, list] = {}
    for c in checks:
        by_model.setdefault(c.model, []).append(c)
    problems = 0
    for model, found in by_model.items():
        bad = [c for c in found if not c.ok]
        if not bad:
            click.echo(f"{model}: ok ({len(found)} file{'s' * (len(found) != 1)}, sha256 checked)")
        for c in bad:
            click.echo(c.line(), err=True)
        problems += len(bad)
    click.echo(f"{len(by_model)} model{'s' * (len(by_model) != 1)} verified, "
               f"{problems} problem{'s' * (problems != 1)}")
    sys.exit(2 if problems else 0)


@models.command("setup")
@click.argument("name", required=False)
@click.pass_context
def models_setup(ctx: click.Context, name: str | None) -> None:
    """Join the models made of parts into paths.models_dir/NAME/ and check the others; a model
    already set up is only checked. Exit 2 when any model cannot be set up."""
    from ..models.errors import ModelError
    from ..models.store import setup

    config = _config(ctx)
    try:
        results = setup(config, name)
    except ModelError as exc:
        click.echo(f"appliancectl models setup: {exc}", err=True)
        sys.exit(2)
    for r in results:
        click.echo(r.line(), err=not r.ok)
    sys.exit(0 if all(r.ok for r in results) else 2)


@models.command("engines")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def models_engines(ctx: click.Context, as_json: bool) -> None:
    """GPU box: each model's TensorRT engine (ok, missing, stale, corrupt) and what it was built
    for. Exit 0 when all are ok, 2 when one needs building (or TensorRT/CUDA is absent)."""
    from ..inference import engines
    from ..models.errors import ModelError

    config = _config(ctx)
    try:
        target = engines.current_target(config)
        states = [engines.inspect(config, m, target) for m in engines.with_engines(config, every=True)]
    except ModelError as exc:
        click.echo(f"appliancectl models engines: {exc}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps({"target": vars(target), "engines": [
            {"model": s.model, "state": s.state, "engine": str(s.engine), "reasons": s.reasons,
             "built_for": str(s.info.target) if s.info else None} for s in states]}, indent=2))
    else:
        click.echo(f"this box: {target}")
        for s in states:
            click.echo(s.line(), err=s.state != "ok")
    sys.exit(0 if all(s.state == "ok" for s in states) else 2)


@models.command("build-engines")
@click.argument("names", nargs=-1)
@click.option("--all", "every", is_flag=True, help="every model whose manifest has an [engine] table")
@click.option("--force", is_flag=True, help="rebuild even engines that are up to date")
@click.pass_context
def models_build_engines(ctx: click.Context, names: tuple[str, ...], every: bool, force: bool) -> None:
    """GPU box: build the TensorRT engine of NAMES (default: the models the config runs with
    backend = "tensorrt"; --all: every model with an [engine] table) from its verified ONNX,
    FP16, with the manifest's optimisation profile.
    Up-to-date engines are kept; missing, stale or corrupt ones are (re)built. Takes minutes
    per model; run it after installing or upgrading TensorRT, the driver's GPU, or a model."""
    from ..inference import engines
    from ..models.errors import ModelError

    config = _config(ctx)
    try:
        target = engines.current_target(config)
        todo = engines.with_engines(config, list(names) or None, every=every)
    except ModelError as exc:
        click.echo(f"appliancectl models build-engines: {exc}", err=True)
        sys.exit(2)
    click.echo(f"this box: {target}; engines in {engines.engines_dir(config)}")
    if not todo:
        click.echo("nothing to build: no model runs with backend = \"tensorrt\" in this config (name models, or --all)")
    failed = 0
    for m in todo:
        try:
            state = engines.build(config, m, target, force=force)
        except Exception as exc:  # one model's failure must not stop the others
            click.echo(f"{m.name}: failed: {exc}", err=True)
            failed += 1
            continue
        click.echo(f"{m.name}: " + ("up to date" if state.state == "ok" else
                                    f"built ({'; '.join(state.reasons)})") + f" — {state.engine}")
    sys.exit(2 if failed else 0)
