"""Jitter buffer against synthetic packet streams (20 ms frames, pops every 20 ms)."""

from __future__ import annotations

import random

from appliance.telephony.media.jitter import JitterBuffer
from appliance.telephony.media.rtp import RtpPacket

MS = 1_000_000
FRAME = 20 * MS


def pkt(i, seq0=0, ts0=0, ssrc=0x1111, marker=False):
    """Packet number i of a stream; the payload names i so the output order can be checked."""
    return RtpPacket(0, (seq0 + i) & 0xFFFF, (ts0 + 160 * i) & 0xFFFFFFFF, ssrc, i.to_bytes(4, "big"), marker)


def stream(n, delay=lambda i: 0, drop=lambda i: False, **kw):
    """(arrival_ns, packet) for packets sent every 20 ms, each delayed by ``delay(i)`` ns."""
    return [(i * FRAME + delay(i), pkt(i, **kw)) for i in range(n) if not drop(i)]


def play(jb, arrivals, ticks, phase=10 * MS, t0=0):
    """Push what has arrived by each tick, pop once per tick; returns [(i | None, status)]."""
    arrivals = sorted(arrivals, key=lambda a: a[0])
    out, k = [], 0
    for tick in range(ticks):
        now = t0 + tick * FRAME + phase
        while k < len(arrivals) and arrivals[k][0] <= now:
            jb.push(arrivals[k][1], arrivals[k][0])
            k += 1
        payload, status = jb.pop(now)
        out.append((None if payload is None else int.from_bytes(payload, "big"), status))
    return out


def played(out):
    return [i for i, s in out if s == "ok"]


def test_empty_before_start():
    assert JitterBuffer().pop(0) == (None, "empty")


def test_in_order():
    jb = JitterBuffer()
    out = play(jb, stream(200), 210)
    assert played(out) == list(range(200))
    assert {s for _, s in out[:200]} == {"ok"}
    assert (jb.received, jb.lost, jb.late, jb.duplicates) == (200, 0, 0, 0)
    assert jb.jitter_ms == 0 and jb.delay_ms == 20


def test_reordered_within_a_tick():
    jb = JitterBuffer()
    # odd packets overtake their predecessor, both arrive before the next pop
    arr = stream(200, delay=lambda i: 5 * MS if i % 2 == 0 else 0)
    arr = [(t - (FRAME - MS if i % 2 else 0), p) for (t, p), i in zip(arr, range(200))]
    out = play(jb, arr, 210, phase=15 * MS)
    assert played(out) == list(range(200))
    assert jb.late == 0 and jb.lost == 0


def test_reordered_by_one_slot():
    jb = JitterBuffer(min_delay_ms=40)
    arr = []  # arrival order 1, 0, 3, 2, 5, 4, ...
    for i in range(200):
        j = i + 1 if i % 2 == 0 else i - 1  # packet j arrives in slot i
        arr.append((i * FRAME, pkt(j)))
    out = play(jb, arr, 215)
    assert played(out) == list(range(200))
    assert jb.late == 0 and jb.lost == 0 and jb.duplicates == 0


def test_random_loss_counted_exactly():
    rng = random.Random(42)
    dropped = {i for i in range(1, 999) if rng.random() < 0.05}
    jb = JitterBuffer()
    out = play(jb, stream(1000, drop=lambda i: i in dropped), 1010)
    assert len(dropped) > 30
    assert jb.lost == len(dropped)
    # each gap is silence in exactly its own slot ("empty" when the buffer held nothing
    # else yet, "lost" when later packets were waiting): the stream is never pushed back
    assert [i for i, (_, s) in enumerate(out[:1000]) if s != "ok"] == sorted(dropped)
    assert played(out) == [i for i in range(1000) if i not in dropped]
    assert jb.received == 1000 - len(dropped)
    rb = jb.report_block()
    assert rb.cumulative_lost == len(dropped)
    assert rb.highest_seq == 999
    assert abs(rb.fraction_lost / 256 - len(dropped) / 1000) < 0.01
    assert jb.report_block().fraction_lost == 0  # nothing new since the last report


def test_duplicates_dropped_and_counted():
    arr = stream(100) + [(t + 3 * MS, p) for t, p in stream(100)]  # each packet twice, 3 ms apart
    arr += [(200 * FRAME, pkt(10))]  # and one copy long after it was played
    jb = JitterBuffer()
    out = play(jb, arr, 205)
    assert played(out) == list(range(100))
    assert jb.duplicates == 101 and jb.late == 0 and jb.lost == 0


def test_late_packet():
    jb = JitterBuffer(max_delay_ms=20)  # no room to adapt
    out = play(jb, stream(100, delay=lambda i: 75 * MS if i == 50 else 0), 110)
    assert jb.late == 1 and jb.lost == 1
    assert out[50][0] is None and out[51] == (51, "ok")  # silence in its slot, no push-back
    assert played(out) == [i for i in range(100) if i != 50]


def test_sequence_and_timestamp_wrap():
    jb = JitterBuffer()
    out = play(jb, stream(300, seq0=65400, ts0=0xFFFFFFFF - 160 * 150), 310)
    assert played(out) == list(range(300))
    assert jb.lost == 0 and jb.late == 0 and jb.jitter_ms == 0
    assert jb.report_block().highest_seq == (1 << 16) | ((65400 + 299) & 0xFFFF)


def test_reordering_across_wrap():
    arr = []
    for i in range(40):
        j = i + 1 if i % 2 == 0 else i - 1
        arr.append((i * FRAME, pkt(j, seq0=65520)))
    jb = JitterBuffer(min_delay_ms=40)
    assert played(play(jb, arr, 50)) == list(range(40))


def _rfc_jitter(arrivals, clock=8000):
    """Reference RFC 3550 §6.4.1 estimate, straight from the formula, for comparison."""
    j, prev = 0.0, None
    for t, p in sorted(arrivals, key=lambda a: a[0]):
        transit = t * clock / 1e9 - p.timestamp
        if prev is not None:
            j += (abs(transit - prev) - j) / 16
        prev = transit
    return j * 1000 / clock


def test_jitter_estimate_tracks_spread():
    rng = random.Random(3)
    spread = 40
    arr = stream(2000, delay=lambda i: int(rng.uniform(0, spread) * MS))
    jb = JitterBuffer()
    play(jb, arr, 2020)
    assert abs(jb.jitter_ms - _rfc_jitter(arr)) < 1e-6
    # E|d1 - d2| for uniform delays is spread/3; arrival reordering pushes it up a little
    assert spread / 4 < jb.jitter_ms < spread * 0.75
    assert jb.late <= 2000 * 0.005


def test_delay_grows_under_jitter_and_shrinks_back():
    rng = random.Random(5)
    calm1, rough, calm2 = 100, 300, 1500  # frames: 2 s, 6 s, 30 s

    def delay(i):
        return int(rng.uniform(0, 80) * MS) if calm1 <= i < calm1 + rough else 0

    arr = stream(calm1 + rough + calm2, delay=delay)
    jb = JitterBuffer()
    arr.sort(key=lambda a: a[0])
    history, k = [], 0
    for tick in range(calm1 + rough + calm2):
        now = tick * FRAME + 10 * MS
        while k < len(arr) and arr[k][0] <= now:
            jb.push(arr[k][1], arr[k][0])
            k += 1
        jb.pop(now)
        history.append(jb.delay_ms)
    assert history[calm1 - 1] == 20
    peak = max(history[calm1 : calm1 + rough])
    assert peak >= 80
    assert history[calm1 + 50] >= 60  # grew within the first second of jitter
    assert history[-1] <= 40  # and came back down...
    # ...slowly: never more than one frame per second
    for a in range(calm1 + rough, len(history) - 50, 10):
        assert history[a] - history[a + 50] <= 20 + 1e-9
    assert jb.late <= rough * 0.02


def test_ssrc_change_resets():
    jb = JitterBuffer()
    arr = stream(50) + [(t + 50 * FRAME, p) for t, p in stream(50, seq0=30000, ts0=99, ssrc=0x2222)]
    out = play(jb, arr, 110)
    assert played(out) == list(range(50)) + list(range(50))
    assert jb.resyncs == 1 and jb.lost == 0 and jb.late == 0


def test_sequence_restart_needs_two_packets():
    jb = JitterBuffer()
    stray = [(25 * FRAME + MS, pkt(10000))]  # one stray far-ahead packet: ignored
    restart = [(t + 50 * FRAME, p) for t, p in stream(50, seq0=20000)]
    out = play(jb, stream(50) + stray + restart, 110)
    assert played(out) == list(range(50)) + list(range(1, 50))  # restart confirmed by its 2nd packet
    assert jb.resyncs == 1 and jb.lost == 0


def test_burst_loss_does_not_build_latency():
    jb = JitterBuffer()
    out = play(jb, stream(300, drop=lambda i: 100 <= i < 150), 310)
    assert jb.lost == 50
    # after the gap the packets play as they come, not 50 frames behind
    first_after = next(t for t, (i, s) in enumerate(out) if i == 150)
    assert first_after <= 150 + jb.max_frames
    assert played(out) == [i for i in range(300) if not 100 <= i < 150]


def test_talkspurt_after_silence():
    jb = JitterBuffer()
    # 50 frames of talk, 1 s of silence (no packets; seq continues, timestamp jumps), talk again
    first = stream(50)
    second = [((50 + i) * FRAME, pkt(i, ts0=8000, marker=(i == 50))) for i in range(50, 100)]
    out = play(jb, first + second, 210)
    assert played(out) == list(range(100))
    assert out[100] == (50, "ok")  # resumes in the tick it arrives
    assert jb.lost == 0 and jb.late == 0
    assert jb.underruns == 2  # the end of each talkspurt


def test_talkspurt_first_packet_lost():
    jb = JitterBuffer()
    second = [((50 + i) * FRAME, pkt(i, ts0=8000)) for i in range(51, 100)]
    out = play(jb, stream(50) + second, 210)
    assert played(out) == [i for i in range(100) if i != 50]
    assert out[101] == (51, "ok")
    assert jb.lost == 1


def test_a_key_press_holds_its_sequence_numbers_it_is_silence_not_loss():
    """RFC 4733 events share the audio's sequence numbers (and repeat the event's start
    timestamp): their slots play as "event" silence, never count as lost, and leave the jitter
    estimate alone."""
    jb = JitterBuffer()
    out = []
    for i in range(30):
        now = i * FRAME
        p = pkt(i)
        if 10 <= i < 14:  # a key press instead of audio: same stream, timestamp of the event's start
            jb.push(RtpPacket(101, p.sequence, 160 * 10, p.ssrc, b"\x05\x0a\x00\xa0"), now, audio=False)
        else:
            jb.push(p, now)
        out.append(jb.pop(now + 10 * MS)[1])
    assert out.count("event") == 4 and "lost" not in out
    assert jb.lost == 0 and jb.jitter_ms < 1.0
    block = jb.report_block()
    assert block.cumulative_lost == 0 and block.fraction_lost == 0
