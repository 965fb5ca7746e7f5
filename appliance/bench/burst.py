"""`appliancectl bench burst`: a burst of calls at a sipd of measured capacity.

N INVITEs (with SDP, each from its own SIP and RTP port, as a PBX trunk sends them) within S
seconds at a sipd whose ``state_dir/capacity.json`` says C calls (``sip.max_calls = "auto"``)
and with the config's ``sip.overflow`` policy. Admitted calls are ACKed, held and hung up;
the others get the policy's answer. Reported: how many were admitted, refused (503), redirected
(302) and announced, the time from INVITE to each final response (p50/p95/max), and for the
announced calls whether audio arrived before sipd's BYE (a call with no audio is dead air).
The admitted calls' own turn latency at C calls is what `bench latency --calls C` measures:
the sweep that wrote C defines capacity as exactly that.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass

from ..config import Config, load
from ..talk.uac import CallFailed, Uac
from ..telephony.admission import write_capacity
from ..telephony.codecs import PCMU
from .sipdrive import Sipd, make_sandbox
from .stats import summarize


@dataclass
class Attempt:
    status: int = 0  # final response: 200, 302, 503, ...; 0 none
    final_ms: float = 0.0  # INVITE sent -> final response
    audio_packets: int = 0  # RTP received (announced calls: the busy message)
    hung_up_by_sipd: bool = False
    error: str = ""


def run(config: Config, *, calls: int = 30, seconds: float = 3.0, capacity: int = 4, hold_s: float = 6.0,
        overflow: str | None = None) -> dict:
    """The burst against a sipd of its own, with ``config``'s [sip] overflow settings."""
    s = config.sip
    policy = overflow or s.overflow
    extra = f'overflow = "{policy}"\nretry_after = {s.retry_after}\ninvite_rate = {max(s.invite_rate, 2 * calls / seconds)}\n'
    if policy == "redirect":
        extra += f'overflow_target = "{s.overflow_target or "sip:queue@127.0.0.1:5999"}"\n'
    if s.overflow_message:
        extra += f'overflow_message = "{s.overflow_message}"\n'
    sandbox = make_sandbox()
    sipd = Sipd(sandbox, extra_sip=extra, max_calls="auto")
    write_capacity(load(sandbox["config"]), capacity, s.turn_p95_target_ms, [])
    sipd.start()
    try:
        attempts = asyncio.run(_burst(sipd.port, calls, seconds, hold_s))
        details = sipd.status().details
    finally:
        sipd.stop()
    return _report(attempts, calls=calls, seconds=seconds, capacity=capacity, policy=policy, sipd=details)


async def _burst(port: int, calls: int, seconds: float, hold_s: float) -> list[Attempt]:
    gap = seconds / max(1, calls - 1) if calls > 1 else 0.0
    tasks = []
    for i in range(calls):
        tasks.append(asyncio.create_task(_call(port, hold_s)))
        if i < calls - 1:
            await asyncio.sleep(gap)
    return list(await asyncio.gather(*tasks))


async def _call(port: int, hold_s: float) -> Attempt:
    out = Attempt()
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", 0))
    rtp.setblocking(False)
    uac = Uac(f"sip:agent@127.0.0.1:{port}", user="burst", connect_timeout=4.0)
    try:
        await uac.start()
        t0 = time.monotonic()
        try:
            await uac.invite(rtp.getsockname()[1], (PCMU,))
            out.status = 200
        except CallFailed as exc:
            out.status, out.error = exc.status, str(exc)
        out.final_ms = (time.monotonic() - t0) * 1000
        if out.status == 200:
            deadline = time.monotonic() + hold_s
            while time.monotonic() < deadline and not uac.hung_up.is_set():
                await asyncio.sleep(0.05)
                out.audio_packets += _drain(rtp)
            out.hung_up_by_sipd = uac.hung_up.is_set()
            if not out.hung_up_by_sipd:
                await uac.bye()
    except (CallFailed, OSError) as exc:
        out.error = str(exc)
    finally:
        uac.close()
        rtp.close()
    return out


def _drain(sock: socket.socket) -> int:
    n = 0
    while True:
        try:
            sock.recv(2048)
            n += 1
        except (BlockingIOError, InterruptedError):
            return n


def _report(attempts: list[Attempt], **meta) -> dict:
    hung_up = [a for a in attempts if a.status == 200 and a.hung_up_by_sipd]  # the announced ones
    return {
        "bench": "burst", **{k: v for k, v in meta.items() if k != "sipd"},
        "admitted": sum(a.status == 200 and not a.hung_up_by_sipd for a in attempts),
        "announced": len(hung_up),
        "announced_dead_air": sum(a.audio_packets == 0 for a in hung_up),
        "refused_503": sum(a.status == 503 for a in attempts),
        "redirected_302": sum(a.status == 302 for a in attempts),
        "no_answer": sum(a.status == 0 for a in attempts),
        "final_response_ms": summarize([a.final_ms for a in attempts if a.status]),
        "refusal_ms": summarize([a.final_ms for a in attempts if a.status in (302, 503)]),
        "sipd": {k: meta["sipd"].get(k) for k in ("max_calls", "capacity_source", "refused_busy", "overflow_redirected",
                                                  "overflow_announced")},
        "errors": sorted({a.error for a in attempts if a.error and a.status not in (302, 503)}),
    }


def render(r: dict) -> str:
    ms = r["refusal_ms"]
    lines = [f"{r['calls']} INVITEs in {r['seconds']:g} s at capacity {r['capacity']} (overflow: {r['policy']})",
             f"  admitted {r['admitted']}, refused 503 {r['refused_503']}, redirected 302 {r['redirected_302']}, "
             f"announced {r['announced']} (dead air {r['announced_dead_air']}), no answer {r['no_answer']}"]
    if ms.get("n"):
        lines.append(f"  INVITE -> refusal p50 {ms['p50']:.1f} / p95 {ms['p95']:.1f} / max {ms['max']:.1f} ms")
    lines += [f"  error: {e}" for e in r["errors"]]
    return "\n".join(lines)
