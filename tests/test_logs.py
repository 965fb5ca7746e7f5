"""Log lines: one per event, the call id on each, journald priority prefixes under journald."""

from __future__ import annotations

import asyncio
import logging

from appliance.runtime.logs import LineFormatter, call_context


def record(msg, level=logging.INFO, exc=None, **extra):
    r = logging.LogRecord("appliance.test", level, __file__, 1, msg, (), exc)
    for k, v in extra.items():
        setattr(r, k, v)
    return r


def test_console_lines_carry_time_level_service_pid_and_call():
    line = LineFormatter("sipd", journal=False).format(record("answered", call_id="c42"))
    stamp, level, who, call, text = line.split()
    assert (level, call, text) == ("INFO", "call=c42", "answered")
    assert who == f"sipd[{__import__('os').getpid()}]" and len(stamp) == len("12:00:00.000")


def test_journald_lines_start_with_the_syslog_priority_and_skip_what_journald_adds():
    f = LineFormatter("sipd", journal=True)
    assert f.format(record("ok")) == "<6>call=- ok"
    assert f.format(record("careful", logging.WARNING, call_id="c1")) == "<4>call=c1 careful"
    assert f.format(record("bad", logging.ERROR)) == "<3>call=- bad"


def test_multiline_messages_and_tracebacks_stay_on_one_line():
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        import sys

        exc = sys.exc_info()
    line = LineFormatter("agentd", journal=True).format(record("tool failed\nretrying", logging.ERROR, exc))
    assert "\n" not in line
    assert line.startswith("<3>call=- tool failed | retrying | Traceback") and "ValueError: boom | second line" in line


def test_call_context_follows_a_calls_tasks_and_does_not_leak():
    f = LineFormatter("agentd", journal=True)

    async def call(call_id):
        with call_context(call_id):
            await asyncio.sleep(0)
            return f.format(record("turn"))

    async def both():
        return await asyncio.gather(call("a"), call("b"))

    assert asyncio.run(both()) == ["<6>call=a turn", "<6>call=b turn"]
    assert f.format(record("idle")) == "<6>call=- idle"
