"""How many calls sipd takes, and what a caller beyond that hears.

A box that takes more calls than it can answer on time makes every caller wait, so the limit
is the one measured: `appliancectl bench latency --sweep` finds the most calls whose turn p95
stays under ``sip.turn_p95_target_ms`` and writes it to ``state_dir/capacity.json``, which
``sip.max_calls = "auto"`` reads. Live, agentd's last-minute turn p95 (sipd polls it with the
pipeline's status, fallback.py) over the target closes the door to new calls until it recovers.
A call refused for capacity gets ``sip.overflow``: 503 + Retry-After (the PBX's own overflow
route), a 302 to the human queue, or an answered announcement — never a slow or silent call.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import Config

log = logging.getLogger("appliance.sipd")

CAPACITY_FILE = "capacity.json"
UNMEASURED_CALLS = 4  # "auto" before any sweep: what a 2-core CPU box holds near 1 s p95
RECHECK_S = 5.0  # how often the capacity file's mtime is looked at
BUSY_MESSAGE = "Sorry, all our lines are busy right now. Please call again in a few minutes. Goodbye."


@dataclass(frozen=True)
class Capacity:
    max_calls: int
    source: str  # "config", "measured <when> under <target> ms", or "unmeasured"


def capacity_path(config: Config) -> Path:
    return Path(config.paths.state_dir) / CAPACITY_FILE


def write_capacity(config: Config, max_calls: int, target_ms: float, runs: list[dict]) -> Path:
    """What a sweep measured, where ``max_calls = "auto"`` reads it (atomically: a sipd reading
    it meanwhile sees the old file or the new one, never half of one)."""
    path = capacity_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"max_calls": max_calls, "target_ms": target_ms, "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "runs": [{"calls": r["calls"], "p95_ms": r["voice_to_voice_ms"]["p95"], "failed_turns": r["failed_turns"]}
                     for r in runs]}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def read_capacity(config: Config) -> Capacity:
    if isinstance(config.sip.max_calls, int):
        return Capacity(config.sip.max_calls, "config")
    path = capacity_path(config)
    try:
        data = json.loads(path.read_text())
        calls = data["max_calls"]
        if not isinstance(calls, int) or isinstance(calls, bool) or not 1 <= calls <= 1000:
            raise ValueError(f"max_calls {calls!r} is not 1 to 1000")
        return Capacity(calls, f"measured {data.get('measured', '?')} under {data.get('target_ms', '?')} ms")
    except FileNotFoundError:
        return Capacity(UNMEASURED_CALLS, "unmeasured")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.error("%s is unreadable (%s): taking %d calls; run `appliancectl bench latency --sweep 1,2,4,8` "
                  "to measure again", path, exc, UNMEASURED_CALLS)
        return Capacity(UNMEASURED_CALLS, "unmeasured")


class Admission:
    """The call limit now: the measured (or configured) capacity, and whether the turns of the
    calls in progress are over their latency target."""

    def __init__(self, config: Config):
        self.config = config
        self.target_ms = config.sip.turn_p95_target_ms
        self.capacity = read_capacity(config)
        self.turn_p95_ms: float | None = None  # agentd's last minute; None: no turns, or unknown
        self._mtime = self._stat()
        self._checked = time.monotonic()
        if self.capacity.source == "unmeasured":
            log.warning('sip.max_calls = "auto" and no capacity measured yet (%s): taking %d calls; '
                        "`appliancectl bench latency --sweep 1,2,4,8` measures this box", capacity_path(config),
                        UNMEASURED_CALLS)

    @property
    def max_calls(self) -> int:
        now = time.monotonic()
        if not isinstance(self.config.sip.max_calls, int) and now - self._checked >= RECHECK_S:
            self._checked = now
            mtime = self._stat()
            if mtime != self._mtime:
                self._mtime, self.capacity = mtime, read_capacity(self.config)
                log.info("capacity now %d calls (%s)", self.capacity.max_calls, self.capacity.source)
        return self.capacity.max_calls

    @property
    def overloaded(self) -> bool:
        return bool(self.target_ms) and self.turn_p95_ms is not None and self.turn_p95_ms > self.target_ms

    def report_turn_p95(self, p95_ms: float | None) -> None:
        was = self.overloaded
        self.turn_p95_ms = p95_ms
        if self.overloaded != was:
            if self.overloaded:
                log.warning("turn p95 %.0f ms is over sip.turn_p95_target_ms (%.0f): new calls get sip.overflow "
                            "until it recovers", p95_ms, self.target_ms)
            else:
                log.info("turn p95 back under %.0f ms: taking new calls again", self.target_ms)

    def status(self) -> dict:
        return {"max_calls": self.max_calls, "capacity_source": self.capacity.source,
                "turn_p95_ms": self.turn_p95_ms if self.turn_p95_ms is not None else 0.0,
                "turn_p95_target_ms": self.target_ms, "overloaded": self.overloaded}

    def _stat(self) -> float:
        try:
            return capacity_path(self.config).stat().st_mtime
        except OSError:
            return 0.0
