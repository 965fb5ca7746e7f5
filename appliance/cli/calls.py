"""`appliancectl calls` and `appliancectl call show ID`: the call records agentd keeps in
`<paths.state_dir>/calls.db`, read-only (safe while agentd is writing)."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from datetime import datetime, timezone
from typing import Any

import click

from ..agent.records import LATENCY_STAGES, CallRecord, CallRecords, RecordsError, records_path
from .context import load_config


def _open(ctx: click.Context) -> tuple[CallRecords | None, str]:
    """The records read-only, or None when there is no file yet. An unusable file exits 2."""

    path = records_path(load_config(ctx).paths.state_dir)
    if not path.exists():
        return None, str(path)
    try:
        return CallRecords(path, readonly=True), str(path)
    except RecordsError as exc:
        _fail(exc)


def _fail(exc: RecordsError) -> None:
    click.echo(f"appliancectl: {exc}", err=True)
    sys.exit(2)


def _local(iso: str | None) -> str:
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def _duration(call: CallRecord) -> str:
    if call.duration_s is not None:
        return _clock(call.duration_s)
    if call.outcome == "in-progress":  # monotonic clocks differ between boots: use the wall clock
        elapsed = (datetime.now(timezone.utc) - datetime.fromisoformat(call.started_at)).total_seconds()
        return _clock(max(0.0, elapsed)) + "+"
    return "-"


def _summary_dict(call: CallRecord) -> dict[str, Any]:
    d = call.as_dict()
    for key in ("turns", "events", "tools", "transfers"):
        d.pop(key)
    d["duration_s"] = call.duration_s
    return d


def task(call: CallRecord) -> str:
    """The caller's goal and whether it was done: "book_appointment: done", "move_appointment:
    not done (loop)", or the intent alone for questions only."""
    if not call.goal:
        return call.intent or "-"
    if call.goal_reached:
        return f"{call.goal}: done"
    if call.goal_reached is None:
        return f"{call.goal}: in progress"
    return f"{call.goal}: not done" + (f" ({call.goal_reason})" if call.goal_reason else "")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


@click.command("calls")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1), help="at most this many calls")
@click.option("--outcome", default=None, help="only calls with this outcome (completed, transferred, unresolved, "
                                              "abandoned, error, in-progress, ...)")
@click.option("--since", default=None, help="only calls started at or after this time (ISO 8601, e.g. 2026-11-24 "
                                            "or 2026-11-24T09:00; local time unless it says otherwise)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def calls(ctx: click.Context, limit: int, outcome: str | None, since: str | None, as_json: bool) -> None:
    """Recent calls, newest first: when, who, how long, how it ended, what the caller wanted."""
    if since is not None:
        try:
            datetime.fromisoformat(since)
        except ValueError:
            raise click.BadParameter(f"{since!r} is not an ISO 8601 time", param_hint="--since")
    records, path = _open(ctx)
    if records is None:
        if as_json:
            click.echo("[]")
        click.echo(f"no calls recorded yet ({path})", err=as_json)
        return
    try:
        with records:
            rows = records.list_calls(limit=limit, since=since, outcome=outcome)
    except RecordsError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps([_summary_dict(c) for c in rows], indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo(f"no calls{' with outcome ' + outcome if outcome else ''}"
                   f"{' since ' + since if since else ''} ({path})")
        return
    header = ("ID", "STARTED", "CALLER", "DURATION", "OUTCOME", "TASK", "TURNS")
    table = [(c.id, _local(c.started_at), _clip(c.caller or "-", 28), _duration(c), c.outcome, _clip(task(c), 48),
              str(c.turn_count)) for c in rows]
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
    right = {3, 6}
    for row in [header, *table]:
        click.echo("  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                             for i, (cell, w) in enumerate(zip(row, widths))).rstrip())


@click.group("call")
def call() -> None:
    """One recorded call."""


@call.command("show")
@click.argument("call_id")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def call_show(ctx: click.Context, call_id: str, as_json: bool) -> None:
    """CALL_ID's transcript with per-turn latencies, tool calls, transfers and events.
    Exit 1 when there is no such call."""
    records, path = _open(ctx)
    if records is None:
        click.echo(f"appliancectl: no call {call_id}: no calls recorded yet ({path})", err=True)
        sys.exit(1)
    try:
        with records:
            found = records.get_call(call_id)
    except RecordsError as exc:
        _fail(exc)
    if found is None:
        click.echo(f"appliancectl: no call {call_id} in {path} (`appliancectl calls` lists them)", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps({**found.as_dict(), "duration_s": found.duration_s}, indent=2, ensure_ascii=False))
        return
    width = shutil.get_terminal_size((100, 24)).columns if sys.stdout.isatty() else None  # piped: grep-able
    for line in render(found, width=width):
        click.echo(line)


# -- the transcript -----------------------------------------------------------------------------
def _j(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _latency(latency: dict[str, float]) -> str:
    keys = [k for k in LATENCY_STAGES if k in latency] + [k for k in latency if k not in LATENCY_STAGES]
    return " · ".join(f"{k} {latency[k]:g}" for k in keys if latency[k] is not None)


def render(call: CallRecord, width: int | None = 100) -> list[str]:
    """A call as an admin reads it: facts, then the turns in order with what happened inside each.
    Long lines are wrapped to ``width`` (None: not wrapped)."""

    def at(ns: int | None) -> str:
        return "" if ns is None else f"+{(ns - call.started_ns) / 1e9:.1f}s"

    def wrap(text: str, indent: int, first: str = "") -> list[str]:
        lines = (textwrap.wrap(text, width=max(40, width - indent), break_long_words=True, break_on_hyphens=False)
                 if width else text.splitlines()) or [""]
        pad = " " * indent
        return [(first.ljust(indent) if i == 0 else pad) + line for i, line in enumerate(lines)]

    out = [f"call {call.id}" + (f"  (agent {call.agent})" if call.agent else "")]
    facts = [("caller", f"{call.caller or '-'} → {call.callee or '-'}")]
    started = _local(call.started_at)
    if call.answered_ns is not None:
        started += f", answered after {(call.answered_ns - call.started_ns) / 1e9:.1f} s"
    facts.append(("started", started))
    facts.append(("duration", _duration(call) + (f" (ended {_local(call.ended_at)})" if call.ended_at else "")))
    facts.append(("outcome", call.outcome + (f": {call.end_reason}" if call.end_reason else "")))
    if call.goal:
        facts.append(("task", task(call)))
    elif call.intent:
        facts.append(("intent", call.intent))
    if call.slots:
        facts.append(("slots", ", ".join(f"{k}={v}" for k, v in call.slots.items())))
    if call.transfer_target:
        facts.append(("transfer", call.transfer_target))
    if call.summary:
        facts.append(("summary", call.summary))
    if call.metrics:
        facts.append(("metrics", ", ".join(f"{k}={v}" for k, v in call.metrics.items())))
    for key, value in facts:
        out += wrap(value, 12, "  " + key)

    out += ["", f"TRANSCRIPT ({len(call.turns)} turns)"]
    if not call.turns:
        out.append("  (no turns)")
    tools_by_turn: dict[int | None, list] = {}
    for tool in call.tools:
        tools_by_turn.setdefault(tool.turn_idx, []).append(tool)
    indent = 19
    for turn in call.turns:
        text = turn.text or "(nothing said)"
        out += wrap(text, indent, f"  {at(turn.started_ns):>7}  {turn.role}")
        if turn.interrupted or (turn.heard_text is not None and turn.heard_text != turn.text):
            heard = turn.heard_text or ""
            label = "interrupted: caller heard" if turn.interrupted else "caller heard"
            out += wrap(f'{label} "{heard}"' if heard else f"{label} nothing", indent + 2, " " * indent + "↳ ")
        if turn.latency:
            out += wrap(f"latency ms: {_latency(turn.latency)}", indent + 2, " " * indent + "⏱ ")
        for tool in tools_by_turn.pop(turn.idx, []):
            out += _tool_lines(tool, wrap, indent)
    for tool in (t for ts in tools_by_turn.values() for t in ts):  # tools not tied to a recorded turn
        out += _tool_lines(tool, wrap, indent)

    if call.transfers:
        out += ["", "TRANSFERS"]
        for t in call.transfers:
            line = f"{t.kind} to {t.target or '-'}" + (f" <{t.uri}>" if t.uri else "") + f": {t.status}"
            if t.sip_status is not None:
                line += f" {t.sip_status}"
            if t.reason:
                line += f" {t.reason}"
            out += wrap(line, indent, f"  {at(t.ts_ns):>7}")
            if t.context:
                out += wrap(f"context {_j(t.context)}", indent)
    if call.events:
        out += ["", f"EVENTS ({len(call.events)})"]
        for e in call.events:
            out += wrap(e.type + (f" {_j(e.data)}" if e.data not in (None, {}, []) else ""), indent,
                        f"  {at(e.ts_ns):>7}")
    return out


def _tool_lines(tool, wrap, indent: int) -> list[str]:
    how = f"{tool.status}" + (f" in {tool.duration_ms:g} ms" if tool.duration_ms is not None else "")
    if tool.attempts != 1:
        how += f" after {tool.attempts} attempts"
    detail = _j(tool.result) if tool.status == "ok" and tool.result is not None else (tool.error or "")
    line = f"{tool.tool}({_j(tool.args) if tool.args is not None else ''}) → {how}" + (f": {detail}" if detail else "")
    return wrap(line, indent + 2, " " * indent + "⚙ ")
