"""`appliancectl logs`: the services' log lines, by service and by call.

Every line a service writes carries ``call=<id>`` (appliance/runtime/logs.py), so one call can
be followed across sipd, asrd, agentd and ttsd. Under systemd the lines are in the journal and
this runs journalctl on the four units. Without it (a dev box under `appliancectl up`), the
lines go wherever the supervisor's stderr goes: when that is a file (`appliancectl up 2>up.log`,
as the demo and the tests do), it is found through the supervisor's pid in its lock file
(``/proc/PID/fd/2``), or named with ``--file``.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import click

from ..config import SERVICES
from ..runtime import units
from . import EXIT_FAILED, EXIT_NOT_RUNNING
from .context import load_config

# "HH:MM:SS.mmm LEVEL   service[pid] call=ID text" (runtime/logs.py, outside journald)
LINE = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) (\w+)\s+([\w.-]+)\[(\d+)\] call=(\S+)")
_RELATIVE = re.compile(r"^-?(\d+)\s*(s|sec|m|min|h|hour|d|day)s?(\s+ago)?$")
_UNITS_S = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """--since: ISO 8601 ("2026-11-24", "2026-11-24T09:00"), a time today ("09:30"), "today",
    "yesterday", or a span back ("10m", "2h ago", "-1d"). Local time, naive."""
    now = now or datetime.now()
    text = text.strip().lower()
    rel = _RELATIVE.match(text)
    if rel:
        return now - timedelta(seconds=int(rel.group(1)) * _UNITS_S[rel.group(2)])
    if text in ("today", "yesterday"):
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight - timedelta(days=1 if text == "yesterday" else 0)
    if re.fullmatch(r"\d{1,2}:\d\d(:\d\d)?", text):
        parts = [int(p) for p in text.split(":")] + [0]
        return now.replace(hour=parts[0], minute=parts[1], second=parts[2], microsecond=0)
    try:
        value = datetime.fromisoformat(text.upper() if "t" in text else text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a time (2026-11-24T09:00, 09:30, today, 10m, 2h ago)",
                                 param_hint="--since") from None
    return value.astimezone().replace(tzinfo=None) if value.tzinfo else value


def call_pattern(call_id: str) -> re.Pattern:
    return re.compile(rf"(^|\s)call={re.escape(call_id)}(\s|$)")


# ------------------------------------------------------------------------------ the journal
def journal_argv(services: list[str], *, call_id: str | None, since: datetime | None, follow: bool,
                 lines: int | None) -> list[str]:
    argv = [shutil.which("journalctl") or "journalctl", "--no-pager", "--output=short-iso"]
    for s in services:
        argv.append(f"--unit={units.unit_name(s)}")
    if call_id:
        argv.append(f"--grep=call={re.escape(call_id)}(\\s|$)")
    if since is not None:
        argv.append(f"--since={since:%Y-%m-%d %H:%M:%S}")
    if lines is not None:
        argv.append(f"--lines={lines}")
    if follow:
        argv.append("--follow")
    return argv


def from_journal(argv: list[str], call_id: str | None) -> int:
    pattern = call_pattern(call_id) if call_id else None
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, errors="replace")
    try:
        for line in proc.stdout:
            # journalctl --grep matches the message; this keeps exact ids only (c1 is not c12)
            if pattern is None or pattern.search(line) or line.startswith("-- "):
                click.echo(line, nl=False)
    except KeyboardInterrupt:
        proc.terminate()
        return 0
    finally:
        proc.stdout.close()
        code = proc.wait()
    return 0 if code in (0, -15) else EXIT_FAILED


# ------------------------------------------------------------------------------ log files
def _holder_pid(lock: Path) -> int | None:
    """The pid of the live process holding an instance lock (runtime/service.py), else None."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else None
        fcntl.flock(fd, fcntl.LOCK_UN)  # nobody holds it: not running
        return None
    finally:
        os.close(fd)


@dataclass
class Running:
    name: str
    pid: int
    stderr: str | None  # a regular file its stderr goes to, or None (a terminal, a pipe, unreadable)


def running_processes(run_dir: str) -> list[Running]:
    """The supervisor and the services running from this run dir, and where their stderr goes."""
    found = []
    for name in ("supervisor", *SERVICES):
        pid = _holder_pid(Path(run_dir) / f"{name}.lock")
        if pid is None:
            continue
        try:
            target = os.readlink(f"/proc/{pid}/fd/2")
            stderr = target if target.startswith("/") and Path(target).is_file() else None
        except OSError:
            stderr = None
        found.append(Running(name, pid, stderr))
    return found


@dataclass
class Record:
    stamp: str  # "HH:MM:SS.mmm", "" when the line has none (a traceback's continuation)
    service: str
    call: str
    text: str  # the whole line(s)


def records(lines, last: Record | None = None) -> list[Record]:
    """Lines as records: a line without the log format (a traceback, a fatal signal's stacks)
    continues the record before it (``last`` when it came in an earlier read), so it goes with
    that record's service and call."""
    out: list[Record] = []
    for line in lines:
        m = LINE.match(line)
        if m:
            out.append(Record(line[:12], m.group(6), m.group(8), line))
        elif out:
            out[-1].text += "\n" + line
        else:
            out.append(Record("", last.service if last else "", last.call if last else "-", line))
    return out


def _wanted(rec: Record, services: set[str] | None, call_id: str | None, since_stamp: str | None) -> bool:
    if services is not None and rec.service not in services:
        return False
    if call_id is not None and rec.call != call_id:
        return False
    return since_stamp is None or (rec.stamp != "" and rec.stamp >= since_stamp)


def _since_stamp(path: str, since: datetime | None) -> str | None:
    """Lines carry only the time of day: compare with --since on the day the file was written."""
    if since is None:
        return None
    written = datetime.fromtimestamp(os.stat(path).st_mtime)
    if since.date() < written.date():
        return "00:00:00.000"
    if since.date() > written.date():
        return "99"  # after every line
    return since.strftime("%H:%M:%S.000")


def from_files(paths: list[str], *, services: set[str] | None, call_id: str | None, since: datetime | None,
               follow: bool, lines: int | None, poll_s: float = 0.2) -> int:
    picked: list[Record] = []
    ends: dict[str, tuple[int, int]] = {}
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read()
                ends[path] = (os.fstat(f.fileno()).st_ino, len(data))
        except OSError as exc:
            click.echo(f"appliancectl logs: cannot read {path}: {exc.strerror}", err=True)
            return EXIT_FAILED
        stamp = _since_stamp(path, since)
        picked += [r for r in records(data.decode(errors="replace").splitlines())
                   if _wanted(r, services, call_id, stamp)]
    if len(paths) > 1:
        picked.sort(key=lambda r: r.stamp)  # interleave by time of day (stable within a file)
    if lines is not None:
        picked = picked[-lines:] if lines else []
    for r in picked:
        click.echo(r.text)
    if not follow:
        return 0
    partial = {p: "" for p in paths}
    last: dict[str, Record | None] = {p: None for p in paths}
    try:
        while True:
            time.sleep(poll_s)
            for path in paths:
                try:
                    with open(path, "rb") as f:
                        st = os.fstat(f.fileno())
                        ino, pos = ends[path]
                        if st.st_ino != ino or st.st_size < pos:  # replaced or truncated: from the top
                            pos = 0
                        f.seek(pos)
                        data = f.read()
                        ends[path] = (st.st_ino, pos + len(data))
                except OSError:
                    continue
                if not data:
                    continue
                text = partial[path] + data.decode(errors="replace")
                complete, _, partial[path] = text.rpartition("\n")
                if complete:
                    got = records(complete.split("\n"), last[path])
                    last[path] = got[-1] if got else last[path]
                    for r in got:
                        if _wanted(r, services, call_id, None):
                            click.echo(r.text)
                sys.stdout.flush()
    except KeyboardInterrupt:
        return 0


# ------------------------------------------------------------------------------ the command
@click.command("logs")
@click.option("--call", "call_id", default=None, help="only this call's lines (its id: `appliancectl calls`)")
@click.option("--service", "services", multiple=True, type=click.Choice(SERVICES),
              help="only this service (repeatable) [default: all four]")
@click.option("-f", "--follow", is_flag=True, help="keep printing new lines until Ctrl-C")
@click.option("--since", default=None, help="from this time: 2026-11-24T09:00, 09:30, today, 10m, 2h ago")
@click.option("-n", "--lines", type=click.IntRange(min=0), default=None,
              help="only the last N lines [default: all; 10 with --follow]")
@click.option("--source", type=click.Choice(["auto", "journal", "file"]), default="auto", show_default=True,
              help="journal: systemd's journal; file: the dev supervisor's log file (or --file)")
@click.option("--file", "files", multiple=True, type=click.Path(dir_okay=False),
              help="read this log file (repeatable) instead of finding one")
@click.pass_context
def logs(ctx: click.Context, call_id: str | None, services: tuple[str, ...], follow: bool, since: str | None,
         lines: int | None, source: str, files: tuple[str, ...]) -> None:
    """The services' log lines, from systemd's journal, or from the dev supervisor's log file.
    Exit 0; 1 when the logs cannot be read; 3 when nothing runs that has a log to read."""

    since_at = parse_since(since) if since else None
    if lines is None and follow:
        lines = 10
    if files:
        source = "file"
    if source == "auto":
        on_systemd = units.journal_available() and units.unit_states(list(SERVICES)) is not None
        source = "journal" if on_systemd else "file"
    if source == "journal":
        if shutil.which("journalctl") is None:
            click.echo("appliancectl logs: journalctl is not installed here (--source file reads a log file)", err=True)
            sys.exit(EXIT_FAILED)
        argv = journal_argv(list(services or SERVICES), call_id=call_id, since=since_at, follow=follow, lines=lines)
        sys.exit(from_journal(argv, call_id))
    paths = list(files)
    if not paths:
        config = load_config(ctx)
        running = running_processes(config.paths.run_dir)
        if not running:
            click.echo(f"appliancectl logs: no systemd journal for the appliance here, and nothing runs from "
                       f"{config.paths.run_dir} (`appliancectl up` not started?)", err=True)
            sys.exit(EXIT_NOT_RUNNING)
        paths = sorted({r.stderr for r in running if r.stderr})
        if not paths:
            who = ", ".join(f"{r.name} (pid {r.pid})" for r in running)
            click.echo(f"appliancectl logs: no systemd journal here, and {who} write(s) to a terminal or a pipe, "
                       "not a file: start it as `appliancectl up 2>>up.log`, or pass --file", err=True)
            sys.exit(EXIT_FAILED)
    sys.exit(from_files(paths, services=set(services) if services else None, call_id=call_id, since=since_at,
                        follow=follow, lines=lines))
