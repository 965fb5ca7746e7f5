"""asrd as a real process on the CPU default (Whisper base.en, WebRTC VAD): speech written
into a call's in-ring becomes speech.started / speech.stopped / asr.final events."""

from __future__ import annotations

import time

import numpy as np
import pytest

from appliance.bench.speechdrive import play, synthetic_speech
from appliance.bus.messages import AsrDropped, AsrFinal, SpeechStarted, SpeechStopped
from appliance.ipc import FRAME_NS
from appliance.speech.textnorm import for_wer

BOOKING = "I would like to book an appointment for Tuesday morning."
HOURS = "Can you tell me the opening hours of the pharmacy?"
SILENCE = np.zeros(16000, np.int16)


def attach(asrd, calls, *call_ids):
    return calls.attach(asrd, *call_ids)


def trim(pcm: np.ndarray) -> np.ndarray:
    """The voiced span only: Piper pads sentences with silence of its own."""
    loud = np.flatnonzero(np.abs(pcm) > 300)
    return pcm[loud[0]:loud[-1] + 1]


def words(text: str) -> set[str]:
    return set(for_wer(text).split())


def finals(events, call_id=None):
    return [e for e in events.of(AsrFinal) if call_id is None or e.call_id == call_id]


def test_speech_becomes_a_final_transcript(service, speech_config, calls, events):
    asrd = service("asrd")
    w = attach(asrd, calls, "c1")["c1"]
    speech = synthetic_speech(BOOKING)
    start_ns = time.monotonic_ns()
    end_ns = play(w, np.concatenate([SILENCE[:8000], speech, SILENCE]), speed=4, start_ns=start_ns)
    events.collect(lambda e: isinstance(e, AsrFinal), timeout=20)
    (final,) = finals(events)
    assert words(BOOKING) - words(final.text) <= {"for"}, final.text
    started, stopped = events.of(SpeechStarted)[0], events.of(SpeechStopped)[0]
    # Speech begins ~0.5 s into the timeline and ends about len(speech) later (true frame times).
    assert abs((started.at_ns - start_ns) / 1e9 - 0.5) < 0.25
    assert abs((stopped.end_ns - started.at_ns) / 1e9 - len(speech) / 16000) < 0.4
    assert stopped.end_ns < end_ns and stopped.reason == "silence"
    assert final.start_ns <= started.at_ns and final.end_ns == stopped.end_ns
    assert final.words and all(final.start_ns <= x["start_ns"] <= x["end_ns"] <= final.end_ns + FRAME_NS * 10
                               for x in final.words)
    assert 0.5 < final.confidence <= 1  # clear synthetic speech: confident
    assert final.utterance == started.utterance == stopped.utterance


def test_two_calls_do_not_mix(service, speech_config, calls, events):
    asrd = service("asrd")
    ws = attach(asrd, calls, "a", "b")
    a = np.concatenate([SILENCE[:4000], synthetic_speech(BOOKING), SILENCE])
    b = np.concatenate([SILENCE[:4000], synthetic_speech(HOURS), SILENCE])
    # Interleave the two calls frame by frame, as sipd's 20 ms tick does.
    from appliance.bench.speechdrive import frames_of

    fa, fb = frames_of(a), frames_of(b)
    t0 = time.monotonic_ns()
    for i in range(max(len(fa), len(fb))):
        if i < len(fa):
            ws["a"].write(fa[i], t0 + i * FRAME_NS)
        if i < len(fb):
            ws["b"].write(fb[i], t0 + i * FRAME_NS)
        if i % 8 == 0:
            time.sleep(0.02)
    events.collect(lambda e: len(finals(events)) >= 2, timeout=30)
    (fa_,), (fb_,) = finals(events, "a"), finals(events, "b")
    assert words(BOOKING) - words(fa_.text) <= {"for"} and "pharmacy" not in fa_.text.lower()
    assert "pharmacy" in fb_.text.lower() and "appointment" not in fb_.text.lower()


def test_silence_and_noise_give_no_transcript(service, speech_config, calls, events):
    asrd = service("asrd")
    ws = attach(asrd, calls, "quiet", "hiss")
    rng = np.random.default_rng(7)
    hiss = (rng.normal(0, 300, 16000 * 4)).astype(np.int16)  # line hiss, about -40 dBFS
    play(ws["quiet"], np.zeros(16000 * 4, np.int16), speed=0)
    play(ws["hiss"], hiss, speed=0)
    time.sleep(1.5)
    events.collect(timeout=0.5)
    assert not finals(events)
    assert not [e for e in events.of(SpeechStarted) if e.call_id == "quiet"]
    assert asrd.status().details["frames"] >= 2 * 200  # it did read all of it


def test_loud_noise_burst_is_not_a_transcript(service, speech_config, calls, events):
    """Noise the VAD takes for speech (a door slam, wind) must not become words."""
    asrd = service("asrd")
    w = attach(asrd, calls, "noise")["noise"]
    rng = np.random.default_rng(3)
    burst = np.clip(rng.normal(0, 8000, 16000), -32768, 32767).astype(np.int16)
    play(w, np.concatenate([SILENCE, burst, SILENCE]), speed=0)
    events.collect(lambda e: isinstance(e, (AsrDropped, SpeechStopped)) and
                   (isinstance(e, AsrDropped) or e.reason == "too-short"), timeout=15)
    time.sleep(0.5)
    events.collect(timeout=0.3)
    assert not finals(events), [f.text for f in finals(events)]


def test_clipped_speech_is_still_understood(service, speech_config, calls, events):
    asrd = service("asrd")
    w = attach(asrd, calls, "loud")["loud"]
    clipped = np.clip(synthetic_speech(BOOKING).astype(np.int32) * 20, -32768, 32767).astype(np.int16)
    assert np.mean((clipped == 32767) | (clipped == -32768)) > 0.03  # really clipped: a hot line
    play(w, np.concatenate([SILENCE[:4000], clipped, SILENCE]), speed=0)
    events.collect(lambda e: isinstance(e, AsrFinal), timeout=20)
    (final,) = finals(events)
    assert len(words(BOOKING) & words(final.text)) >= len(words(BOOKING)) - 3, final.text


def test_a_click_is_too_short(service, speech_config, calls, events):
    asrd = service("asrd")
    w = attach(asrd, calls, "click")["click"]
    speech = synthetic_speech(BOOKING)
    loud = int(np.argmax(np.abs(speech) > 8000))
    click = speech[loud:loud + 1600]  # 100 ms of a word
    play(w, np.concatenate([SILENCE, click, SILENCE]), speed=0)
    events.collect(lambda e: isinstance(e, SpeechStopped), timeout=10)
    time.sleep(0.5)
    events.collect(timeout=0.3)
    stopped = events.of(SpeechStopped)
    assert [s.reason for s in stopped] == ["too-short"]
    assert not finals(events)


def test_a_too_long_utterance_is_cut_and_recognised_in_parts(service, speech_config, calls, events):
    speech_config.add("[vad]\nmax_utterance_s = 4.0")
    asrd = service("asrd")
    w = attach(asrd, calls, "long")["long"]
    talk = np.concatenate([trim(synthetic_speech(BOOKING)), trim(synthetic_speech(HOURS)), trim(synthetic_speech(BOOKING))])
    play(w, np.concatenate([SILENCE[:4000], talk, SILENCE]), speed=0)
    events.collect(lambda e: isinstance(e, SpeechStopped) and e.reason == "silence", timeout=20)
    events.collect(lambda e: len(finals(events)) >= len(events.of(SpeechStopped)), timeout=30)
    stopped = events.of(SpeechStopped)
    assert len(stopped) >= 2 and stopped[0].reason == "max-length" and stopped[-1].reason == "silence"
    fs = finals(events)
    assert fs[0].truncated and not fs[-1].truncated
    heard = " ".join(f.text for f in fs).lower()
    assert "appointment" in heard and "pharmacy" in heard


def test_backlog_past_the_queue_is_dropped_and_reported(service, speech_config, calls, events):
    speech_config.add("[asr]\nqueue_per_call = 2\nearly_decode_ms = 0")
    asrd = service("asrd")
    w = attach(asrd, calls, "chatty")["chatty"]
    one = np.concatenate([synthetic_speech("Yes please."), SILENCE[:8000]])
    play(w, np.concatenate([one] * 6), speed=0)  # six utterances land in one read
    events.collect(lambda e: len(events.of(AsrDropped)) + len(finals(events)) >= 6, timeout=30)
    dropped = events.of(AsrDropped)
    assert len(dropped) >= 3 and all(d.reason == "queue full" for d in dropped)
    assert len(finals(events)) >= 2
    assert asrd.status().details["dropped"] == len(dropped)


def test_call_end_flushes_the_utterance_in_progress(service, speech_config, calls, events):
    asrd = service("asrd")
    w = attach(asrd, calls, "hangup")["hangup"]
    play(w, np.concatenate([SILENCE[:4000], synthetic_speech(BOOKING)]), speed=0)  # no trailing silence
    time.sleep(0.3)
    calls.end_call("hangup")
    events.collect(lambda e: isinstance(e, AsrFinal), timeout=20)
    assert events.of(SpeechStopped)[0].reason == "call-ended"
    assert "appointment" in finals(events)[0].text.lower()
    events.collect(lambda e: asrd.status().details["calls"] == 0, timeout=5)


@pytest.mark.parametrize("problem", ["missing", "corrupt"])
def test_a_model_that_cannot_load_stops_the_service_with_a_reason(service, speech_config, sandbox, problem):
    if problem == "missing":
        speech_config.add('[asr]\nmodel = "whisper-large-v9"')
    else:
        # An admin-placed model whose file does not match its manifest's sha256.
        models = sandbox["root"] / "own-models"
        (models / "bad").mkdir(parents=True)
        (models / "bad" / "model.bin").write_bytes(b"not a model")
        text = speech_config.path.read_text()
        import re

        speech_config.path.write_text(re.sub(r'models_dir = ".*"', f'models_dir = "{models}"', text))
        (models / "bad-whisper.toml").write_text(
            'name = "bad-whisper"\nkind = "asr"\nbackend = "faster-whisper"\n'
            '[[files]]\npath = "model.bin"\nsource = "file:bad/model.bin"\n'
            f'sha256 = "{"0" * 64}"\n')
        speech_config.add('[asr]\nmodel = "bad-whisper"')
    asrd = service("asrd", wait_ready=False)
    assert asrd.proc.wait(30) != 0
    out = asrd.output()
    assert "whisper-large-v9" in out if problem == "missing" else "sha256" in out.lower(), out
    assert "Traceback" not in out, out


def test_the_silero_onnx_vad_backend_finds_the_speech(service, speech_config, calls, events):
    """vad.backend = "onnx": Silero v6's ONNX (models/silero-vad.toml) on onnxruntime, the same
    code path as the GPU box's TensorRT engine of it."""
    speech_config.add('[vad]\nbackend = "onnx"')
    asrd = service("asrd")
    assert "VAD onnx" in asrd.output()
    w = attach(asrd, calls, "c1")["c1"]
    start_ns = time.monotonic_ns()
    play(w, np.concatenate([SILENCE[:8000], synthetic_speech(HOURS), SILENCE]), speed=4, start_ns=start_ns)
    events.collect(lambda e: isinstance(e, AsrFinal), timeout=20)
    (final,) = finals(events)
    assert words(HOURS) - words(final.text) <= {"the"}, final.text
    started = events.of(SpeechStarted)[0]
    assert abs((started.at_ns - start_ns) / 1e9 - 0.5) < 0.25


@pytest.mark.skipif(__import__("importlib.util").util.find_spec("tensorrt") is not None,
                    reason="this box has TensorRT: tests/gpu covers the tensorrt VAD")
def test_a_tensorrt_vad_without_tensorrt_stops_asrd_with_a_reason(service, speech_config):
    speech_config.add('[vad]\nbackend = "tensorrt"')
    asrd = service("asrd", wait_ready=False)
    assert asrd.proc.wait(60) != 0
    out = asrd.output()
    assert "TensorRT is not installed" in out and "docs/gpu.md" in out and "Traceback" not in out, out
