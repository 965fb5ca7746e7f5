"""Logging for every process: one line per event, the call id on every line.

Under journald (``$JOURNAL_STREAM`` set) lines start with a ``<N>`` syslog priority and carry
no timestamp or name, which journald adds; elsewhere they carry both. A call id comes from
``extra={"call_id": ...}`` or, inside a call's task, from ``call_context``.
"""

from __future__ import annotations

import contextlib
import contextvars
import faulthandler
import logging
import os
import sys
import time

current_call: contextvars.ContextVar[str] = contextvars.ContextVar("current_call", default="-")

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


@contextlib.contextmanager
def call_context(call_id: str):
    """Every log line inside this block (and tasks created in it) names ``call_id``."""
    token = current_call.set(call_id or "-")
    try:
        yield
    finally:
        current_call.reset(token)


class LineFormatter(logging.Formatter):
    def __init__(self, service: str, journal: bool):
        super().__init__()
        self.service = service
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        call_id = getattr(record, "call_id", None) or current_call.get()
        text = record.getMessage()
        if record.exc_info:
            text += " | " + self.formatException(record.exc_info)
        text = text.replace("\r", "").replace("\n", " | ")  # one event, one line
        if self.journal:
            return f"<{_PRIORITY.get(record.levelno, 6)}>call={call_id} {text}"
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}"
        return f"{stamp} {record.levelname:<7} {self.service}[{os.getpid()}] call={call_id} {text}"


def setup(service: str, level: str = "info") -> None:
    # A fatal signal prints every thread's Python stack to the same stderr (the journal) first:
    # above all the watchdog's SIGABRT, which then says where the event loop was stuck.
    try:
        faulthandler.enable(sys.stderr, all_threads=True)
    except (AttributeError, ValueError, OSError):  # a stderr without a file descriptor (a test's capture)
        pass
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LineFormatter(service, journal=bool(os.environ.get("JOURNAL_STREAM"))))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
