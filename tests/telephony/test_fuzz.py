"""Every parser that reads a peer's bytes, fuzzed (the same targets as `appliancectl bench fuzz`,
a few hundred generated inputs each here): an input parses or raises the parser's own error,
never anything else; and a sipd that took mutated datagrams still takes a call."""

from __future__ import annotations

import asyncio

import pytest

from appliance.bench import fuzz
from appliance.bench.sipdrive import Sipd
from appliance.talk.uac import Uac
from appliance.telephony.codecs import PCMU


@pytest.mark.parametrize("target", fuzz.TARGETS, ids=lambda t: t.name)
def test_generated_input_only_ever_raises_the_parsers_own_error(target):
    out = fuzz.fuzz(target, examples=400, seed=7)
    assert out.crashes == []
    assert out.inputs >= 400 and out.refused > 0 and out.parsed > 0  # both paths were reached


def test_a_parser_that_raises_something_else_is_caught():
    """The harness itself: a parser with an unguarded index is reported, not passed."""
    def fragile(data: bytes):
        if data[:1] == b"\x80":
            raise ValueError("bad")
        return data[5]  # IndexError on short input: the kind of defect fuzzing finds

    target = fuzz.FuzzTarget("fragile", fragile, ValueError, (bytes(range(40)),), 8)
    out = fuzz.fuzz(target, examples=200, seed=7)
    assert out.crashes and out.crashes[0].startswith("IndexError")


def test_a_sipd_fed_mutated_datagrams_stays_up_and_takes_a_call(sandbox):
    sipd = Sipd(sandbox, extra_sip="other_rate = 10000.0\ninvite_rate = 10000.0\n"
                                   "unconfirmed_per_source = 1000\n").start()
    try:
        fuzz.hammer_sipd(sipd.port, 3000)
        details = sipd.status(timeout=5).details
        assert details["malformed"] > 0 and details["sip_received"] > 1000

        async def call() -> None:
            uac = Uac(f"sip:agent@127.0.0.1:{sipd.port}", user="after-fuzz")
            try:
                await uac.start()
                neg = await uac.invite(40_000, (PCMU,))
                assert neg.codec.name == "PCMU"
                assert await uac.bye()
            finally:
                uac.close()

        asyncio.run(call())
    finally:
        log = sipd.stop()
    assert "Traceback" not in log
