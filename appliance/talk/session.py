"""One talk on a line: ring, move audio until the time is up, the far end hangs up or we are
asked to stop, then hang up properly (BYE, or CANCEL while it still rings)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from ..telephony import sdp
from ..telephony.codecs import G722, PCMU
from .line import Line
from .media import RtpLeg, RtpStats
from .uac import CallFailed, Uac

# What we offer for each --codec: the chosen one first, the other as a fallback sipd may pick.
OFFERS = {"g722": (G722, PCMU), "pcmu": (PCMU, G722)}


@dataclass
class TalkResult:
    codec: str  # as negotiated
    seconds: float  # from the answer to the hang-up
    ended_by: str  # "us" or "far end"
    reason: str  # "time up", "stopped", "the far end hung up"
    bye_confirmed: bool  # our BYE got its 200 (True when the far end hung up)
    stats: RtpStats


async def talk(line: Line, uac: Uac, *, codec: str = "g722", seconds: float | None = None,
               stop: asyncio.Event | None = None) -> TalkResult:
    """Raises CallFailed when the call is refused, unanswered or cancelled while ringing."""
    stop = stop or asyncio.Event()
    leg: RtpLeg | None = None
    try:
        leg = RtpLeg(await uac.start())
        neg = await _answered(uac, leg.port, OFFERS[codec], stop)
        started = time.monotonic()
        media = asyncio.create_task(leg.run(neg, line), name="talk-media")
        waits = [media, asyncio.create_task(uac.hung_up.wait()), asyncio.create_task(stop.wait())]
        try:
            done, _ = await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            talked = time.monotonic() - started
            for t in waits:
                t.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
            if not uac.hung_up.is_set():
                confirmed = await uac.bye()
        if media in done and media.exception() is not None:
            raise media.exception()
        far = uac.hung_up.is_set()
        return TalkResult(
            codec=neg.codec.name, seconds=talked, ended_by="far end" if far else "us",
            reason="the far end hung up" if far else ("stopped" if stop.is_set() else "time up"),
            bye_confirmed=True if far else confirmed, stats=leg.stats)
    finally:
        if leg is not None:
            leg.close()
        uac.close()


async def _answered(uac: Uac, rtp_port: int, codecs, stop: asyncio.Event) -> sdp.Negotiated:
    ringing = asyncio.create_task(uac.invite(rtp_port, codecs), name="talk-invite")
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([ringing, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not ringing.done():  # asked to stop (or cancelled) while it rings: CANCEL
            ringing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ringing
    if ringing.cancelled():
        raise CallFailed("hung up before the call was answered")
    return ringing.result()
