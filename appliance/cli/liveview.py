"""The conversation as it happens, from the bus: shared by `appliancectl demo` and `talk`."""

from __future__ import annotations

import time

import click

from ..bus.messages import AsrFinal, CallEnded, CallStarted, TtsFinished, TtsStarted


class LiveView:
    """Prints each new caller/agent line of an ``EventLog`` with the time since start and, for
    each agent answer, how long after the end of the caller's speech it began."""

    def __init__(self, events, echo=click.echo):
        self.events = events
        self.echo = echo
        self.started = time.monotonic()
        self._said_at: dict[str, int] = {}
        self._shown = 0

    def poll(self, timeout: float = 0.2) -> None:
        self.events.collect(timeout=timeout)
        self.show_new()

    def show_new(self) -> None:
        """Print what arrived since last time (when someone else collects the bus)."""
        for e in self.events.events[self._shown:]:
            self.show(e)
        self._shown = len(self.events.events)

    def show(self, e) -> None:
        t = time.monotonic() - self.started
        if isinstance(e, CallStarted):
            self.echo(f"{t:6.1f}s  call from {e.caller}")
        elif isinstance(e, AsrFinal):
            self._said_at[e.call_id] = e.end_ns
            self.echo(f"{t:6.1f}s  caller: {e.text}")
        elif isinstance(e, TtsStarted) and e.call_id in self._said_at:
            gap = (e.ts_ns - self._said_at.pop(e.call_id)) / 1e6
            self.echo(f"{'':8}  (agent starts speaking {gap:.0f} ms after the caller stopped)")
        elif isinstance(e, TtsFinished):
            cut = " [interrupted by the caller]" if e.cancelled else ""
            self.echo(f"{t:6.1f}s  agent:  {e.spoken}{cut}")
        elif isinstance(e, CallEnded):
            self.echo(f"{t:6.1f}s  call ended: {e.reason}")

    def call_ended(self) -> bool:
        return any(isinstance(e, CallEnded) for e in self.events.events)
