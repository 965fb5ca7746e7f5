"""The PBX goes away and comes back: registration keeps trying (with backoff) and registers
again by itself once the PBX answers; a SIPp registrar plays the PBX. The timers are shortened
(T1 20 ms, backoff from 0.2 s) so a minute's outage plays out in seconds; the logic is the same."""

from __future__ import annotations

import asyncio
import shutil

import pytest
from appliance.bench.sipdrive import free_port, sipp_command

from appliance.telephony import registration
from appliance.telephony.registration import Registration
from appliance.telephony.sip.message import Response
from appliance.telephony.sip.transaction import Timers, TransactionLayer
from appliance.telephony.sip.transport import SipTransport

pytestmark = pytest.mark.skipif(shutil.which("sipp") is None, reason="scripts/test installs sip-tester")


def test_registration_recovers_when_the_pbx_comes_back(monkeypatch, tmp_path):
    monkeypatch.setattr(registration, "BACKOFF_MIN", 0.2)
    monkeypatch.setattr(registration, "BACKOFF_MAX", 1.0)
    pbx_port = free_port()

    async def scenario() -> tuple[list[bool], str]:
        def on_message(msg, peer) -> None:  # as sipd's endpoint: responses to their transactions
            if isinstance(msg, Response):
                layer.on_response(msg)

        transport = SipTransport(on_message)
        await transport.start("127.0.0.1", 0, tcp=False)
        layer = TransactionLayer(transport, Timers(t1=0.02, t2=0.16, t4=0.2))
        reg = Registration(layer, registrar=f"sip:127.0.0.1:{pbx_port}", username="appliance", password="s3cret",
                           expires=120, contact_host="127.0.0.1", contact_port=transport.local_port)
        reg.start()
        seen = []
        await asyncio.sleep(3.0)  # the PBX is unreachable: attempts time out, backoff grows
        seen.append(reg.registered)
        error_while_down = reg.last_error
        cmd, work, _ = sipp_command("uas_registrar.xml", 1, keys={"user": "appliance", "password": "s3cret",
                                                                   "expires": 120}, local_port=pbx_port,
                                    cwd=str(tmp_path))
        pbx = await asyncio.create_subprocess_exec(*cmd, cwd=work, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
        try:
            for _ in range(100):  # the PBX is back
                if reg.registered:
                    break
                await asyncio.sleep(0.1)
            seen.append(reg.registered)
        finally:
            await reg.stop()
            if pbx.returncode is None:
                pbx.kill()
            await pbx.wait()
            transport.close()
        return seen, error_while_down

    (down, back), error = asyncio.run(scenario())
    assert down is False and error  # said why while the PBX was away
    assert back is True
