"""Per-20 ms-frame cost of the media hot paths (not a test).

    python -m appliance.bench.media [iterations]

Budget: 100+ calls on 2 cores leaves ~400 µs of CPU per call per 20 ms for *everything*
(both directions, SIP, rings), so each step here should be a few tens of µs at most.
Prints the best of five runs, µs per frame.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from ..telephony.media.g711 import G711Codec
from ..telephony.media.g722 import G722Codec
from ..telephony.media.jitter import JitterBuffer
from ..audio.resample import downsampler, upsampler
from ..telephony.media.rtp import RtpPacket, parse


def _bench(name: str, fn, n: int) -> None:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter_ns() - t0) / n / 1000)
    print(f"{name:<40} {best:7.2f} µs/frame")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    rng = np.random.default_rng(0)
    pcm8 = (np.sin(np.arange(160) * 2 * np.pi * 440 / 8000) * 8000).astype(np.int16)
    pcm16 = (np.sin(np.arange(320) * 2 * np.pi * 440 / 16000) * 8000 + rng.normal(0, 300, 320)).astype(np.int16)
    ulaw = G711Codec("ulaw")
    payload = ulaw.encode(pcm8)
    up, down = upsampler(), downsampler()
    _bench("µ-law decode + upsample 8k→16k", lambda: up.process(ulaw.decode(payload)), n)
    _bench("downsample 16k→8k + µ-law encode", lambda: ulaw.encode(down.process(pcm16)), n)

    g722 = G722Codec()
    g722_payload = g722.encode(pcm16)
    _bench("G.722 encode (320 samples)", lambda: g722.encode(pcm16), n)
    _bench("G.722 decode (160 bytes)", lambda: g722.decode(g722_payload), n)

    pkt = RtpPacket(0, 0, 0, 0x1234, payload)
    wire = pkt.serialize()
    _bench("RTP parse", lambda: parse(wire), n)
    _bench("RTP serialize", pkt.serialize, n)

    jb = JitterBuffer()
    state = {"i": 0}

    def push_pop() -> None:
        i = state["i"]
        state["i"] = i + 1
        t = i * 20_000_000
        jb.push(RtpPacket(0, i & 0xFFFF, (i * 160) & 0xFFFFFFFF, 0x1234, payload), t)
        jb.pop(t + 5_000_000)

    _bench("jitter push + pop (incl. packet object)", push_pop, n)
    wire_seq = [RtpPacket(0, i, i * 160, 0x1234, payload).serialize() for i in range(65536)]

    def full_rx() -> None:  # wire → jitter buffer → 16 kHz frame
        i = state["i"]
        state["i"] = i + 1
        t = i * 20_000_000
        jb.push(parse(wire_seq[i & 0xFFFF]), t)
        data, status = jb.pop(t + 5_000_000)
        up.process(ulaw.decode(data) if data is not None else pcm8)

    state["i"] = 0
    jb = JitterBuffer()
    _bench("rx total: parse+jitter+µ-law+upsample", full_rx, n)


if __name__ == "__main__":
    main()
