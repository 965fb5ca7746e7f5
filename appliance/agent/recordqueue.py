"""Call records that never take a call down and lose nothing.

agentd writes a call's record as the call goes (turns, tools, transfers, its end). When the
records file cannot be written for a while — the disk is full, another program holds a lock,
an I/O error — the call must go on, and what happened in it must still reach the record. So a
write that fails for such a reason is queued, and so is every write after it (the record keeps
its order); the queue is replayed every few seconds and before each new write, and drains the
moment the file can be written again. Each write is one SQLite transaction: the record has it
whole or not at all, never half. A write that fails because it is wrong (a turn that does not
exist) is a defect, logged and not retried.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import deque
from typing import Any, Callable

from .records import CallRecords, RecordsError

log = logging.getLogger("appliance.agentd")

RETRY_S = 2.0  # how often a stalled queue tries again
MAX_QUEUED = 50_000  # writes held in memory (hours of calls); beyond it the oldest go, counted and logged
WRITES = frozenset({"start_call", "answered", "end_call", "add_turn", "update_turn", "add_event", "add_tool_call",
                    "add_transfer", "update_transfer", "prune"})


def transient(exc: RecordsError) -> bool:
    """The file could not be written now (full, locked, I/O), as opposed to a wrong write."""
    return isinstance(exc.__cause__, sqlite3.OperationalError)


class QueuedRecords:
    def __init__(self, records: CallRecords, clock: Callable[[], float] = time.monotonic):
        self._records = records
        self._clock = clock
        self.queue: deque[tuple[str, tuple, dict]] = deque()
        self.failures = 0  # writes that failed when first tried (queued or, if wrong, logged)
        self.dropped = 0  # queued writes given up: wrong on replay, or beyond MAX_QUEUED
        self._retry_at = 0.0
        self._next_turn: dict[str, int] = {}  # the index each call's next turn gets

    def __getattr__(self, name: str):
        method = getattr(self._records, name)
        if name in WRITES:
            return lambda *args, **kwargs: self._write(name, args, kwargs)
        if not callable(method):
            return method

        def read(*args, **kwargs):  # a read that fails answers None: the caller goes on without it
            try:
                return method(*args, **kwargs)
            except RecordsError as exc:
                log.error("call records: %s failed: %s", name, exc)
                return None

        return read

    @property
    def stalled(self) -> bool:
        return bool(self.queue)

    def _write(self, name: str, args: tuple, kwargs: dict) -> Any:
        if name == "end_call":  # no more turns for it: its index is not kept (a long-running agentd)
            self._next_turn.pop(_call_id(args, kwargs), None)
        self.flush()
        if not self.queue:
            try:
                result = getattr(self._records, name)(*args, **kwargs)
            except RecordsError as exc:
                self.failures += 1
                if not transient(exc):
                    log.error("call records: %s failed: %s", name, exc)
                    return None
                log.error("call records cannot be written (%s): keeping this call's record in memory until "
                          "they can (the call goes on)", exc)
                self._retry_at = self._clock() + RETRY_S
            else:
                if name == "add_turn":
                    self._next_turn[_call_id(args, kwargs)] = result + 1
                return result
        else:
            self.failures += 1
        return self._queue(name, args, kwargs)

    def _queue(self, name: str, args: tuple, kwargs: dict) -> Any:
        if len(self.queue) >= MAX_QUEUED:
            self.queue.popleft()
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.error("call records: %d queued writes given up (the file has not been writable for long)",
                          self.dropped)
        self.queue.append((name, args, kwargs))
        if name == "add_turn":  # the index the record will give it, as the writes replay in order
            call_id = _call_id(args, kwargs)
            idx = self._next_turn.get(call_id, 0)
            self._next_turn[call_id] = idx + 1
            return idx
        return None

    def flush(self, force: bool = False) -> int:
        """Replay queued writes in order while the file takes them; returns how many went in."""
        if not self.queue or (not force and self._clock() < self._retry_at):
            return 0
        done = 0
        while self.queue:
            name, args, kwargs = self.queue[0]
            try:
                getattr(self._records, name)(*args, **kwargs)
            except RecordsError as exc:
                if transient(exc):
                    self._retry_at = self._clock() + RETRY_S
                    break
                log.error("call records: queued %s dropped: %s", name, exc)
                self.dropped += 1
            self.queue.popleft()
            done += 1
        if not self.queue and done:
            log.info("call records writable again: %d queued writes are in", done)
        return done

    def start_turns_at(self, call_id: str, count: int) -> None:
        """A call picked up after a restart: its next turn follows the ``count`` on record."""
        self._next_turn[call_id] = count


def _call_id(args: tuple, kwargs: dict) -> str:
    return args[0] if args else kwargs["call_id"]
