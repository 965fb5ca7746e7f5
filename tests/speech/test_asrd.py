"""asrd as a real process on the CPU default (Whisper base.en, WebRTC VAD): speech written
into a call's in-ring becomes speech.started / speech.stopped / asr.final events."""

from __future__ import annotations

import time

import numpy as np
import pytest

from appliance.bench import noise
from appliance.bench.speech import phone_line
from appliance.bench.speechdrive import play, synthetic_speech
from appliance.bus.messages import AsrDropped, AsrEarly, AsrFinal, SpeechStarted, SpeechStopped
from appliance.audio import FRAME_NS
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


def test_utterances_that_end_together_are_decoded_in_one_batch(service, speech_config, calls, events):
    """Three callers stop at the same moment: one batch decodes them, each gets its own words
    (the batch's texts equal single decodes: test_whisper_batch), and noise among them is still
    dropped as noise, undecoded."""
    from appliance.bench.speechdrive import frames_of

    speech_config.add("[asr]\nearly_decode_ms = 0")  # no speculation: all three reach the queue
    asrd = service("asrd")
    texts = {"a": BOOKING, "b": HOURS, "c": "Is there parking near the clinic?"}
    ws = attach(asrd, calls, *texts, "n")
    clips = {cid: np.concatenate([SILENCE[:4000], synthetic_speech(t), SILENCE]) for cid, t in texts.items()}
    clips["n"] = np.concatenate([SILENCE[:4000], noise.clip("white", 0), SILENCE])
    width = max(len(c) for c in clips.values())
    padded = {cid: np.concatenate([np.zeros(width - len(c), np.int16), c]) for cid, c in clips.items()}  # same end
    frames = {cid: frames_of(c) for cid, c in padded.items()}
    t0 = time.monotonic_ns()
    for i in range(len(frames["a"])):
        for cid in padded:
            ws[cid].write(frames[cid][i], t0 + i * FRAME_NS)
        if i % 8 == 0:
            time.sleep(0.02)
    events.collect(lambda e: len(finals(events)) >= 3 and events.of(AsrDropped), timeout=60)
    status = asrd.status().details
    assert status["batches"] >= 1 and status["batched_utterances"] >= 2, status
    for cid, text in texts.items():
        (final,) = finals(events, cid)
        assert len(words(text) - words(final.text)) <= 1, (cid, final.text)  # its own words, no other call's
    assert not finals(events, "n") and [d for d in events.of(AsrDropped) if d.call_id == "n"]


def test_a_speculation_done_before_the_turn_ends_is_published_early(service, speech_config, calls, events):
    """The decode started at the first pause finishes while the endpoint still waits (here a
    long 1.5 s one): asr.early carries the words before speech.stopped, and the final is that
    same decode, not a second one."""
    speech_config.add("[vad]\nend_silence_ms = 1500\n[asr]\nearly_decode_ms = 100")
    asrd = service("asrd")
    w = attach(asrd, calls, "e")["e"]
    play(w, np.concatenate([SILENCE[:4000], synthetic_speech(HOURS), SILENCE, SILENCE]))
    events.collect(lambda e: isinstance(e, AsrFinal), timeout=30)
    kinds = [type(e) for e in events.events if isinstance(e, (AsrEarly, SpeechStopped, AsrFinal))]
    assert kinds == [AsrEarly, SpeechStopped, AsrFinal], kinds
    (early,), (final,) = events.of(AsrEarly), finals(events)
    assert early.text == final.text and early.utterance == final.utterance and "pharmacy" in final.text.lower()
    assert asrd.status().details["speculative_hits"] == 1


def test_the_turn_model_endpoint_runs_off_the_frame_loop(service, speech_config, calls, events):
    """vad.endpoint = turn-model in the real asrd: the model is asked on its own thread at the
    first pause, a finished question ends there, and the final follows."""
    speech_config.add('[vad]\nendpoint = "turn-model"\nend_silence_ms = 600')
    asrd = service("asrd")
    w = attach(asrd, calls, "t")["t"]
    play(w, np.concatenate([SILENCE[:4000], synthetic_speech(HOURS), SILENCE, SILENCE]))
    events.collect(lambda e: isinstance(e, AsrFinal), timeout=30)
    (stopped,) = [e for e in events.of(SpeechStopped) if e.reason != "too-short"]
    assert stopped.reason == "turn-complete"  # at the 100 ms pause, not after 600 ms of silence
    (final,) = finals(events)
    assert "pharmacy" in final.text.lower()


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


# Not babble: voices behind the caller are voices (Silero rates reversed babble 0.2-0.9 speech-
# like), the speech check cannot stop them, and `bench noise` reports that rate instead.
@pytest.mark.parametrize("kind, seed", [(k, s) for k in noise.KINDS if k != "babble" for s in (0, 1)])
def test_loud_noise_is_not_a_transcript(service, speech_config, calls, events, kind, seed):
    """Noise the VAD takes for speech (wind, a crackle, hum, a door slam) must not become words."""
    asrd = service("asrd")
    w = attach(asrd, calls, "noise")["noise"]
    play(w, np.concatenate([SILENCE, noise.clip(kind, seed), SILENCE]), speed=0)
    events.collect(lambda e: isinstance(e, (AsrDropped, AsrFinal)) or
                   (isinstance(e, SpeechStopped) and e.reason == "too-short"), timeout=15)
    time.sleep(0.5)
    events.collect(timeout=0.3)
    assert not finals(events), [f.text for f in finals(events)]
    assert events.of(SpeechStarted), "the VAD never took it for speech: the test tests nothing"
    dropped = [d.reason for d in events.of(AsrDropped)]  # stopped by the speech check, before any decode
    assert dropped and all(r.startswith("no speech (not speech-like: ") for r in dropped), dropped


def test_short_answers_on_a_phone_line_pass_the_speech_check(service, speech_config, calls, events):
    """The noise check must not eat a caller's one-word answer (Silero rates them 0.33-0.8)."""
    asrd = service("asrd")
    w = attach(asrd, calls, "short")["short"]
    answers = ["Yes.", "No.", "Ten a.m."]
    gap = SILENCE[:12000]
    play(w, phone_line(np.concatenate([gap, *[np.concatenate([synthetic_speech(a), gap]) for a in answers]])), speed=0)
    events.collect(lambda e: len(finals(events)) + len(events.of(AsrDropped)) >= len(answers), timeout=30)
    heard = [for_wer(f.text) for f in finals(events)]
    assert not events.of(AsrDropped) and len(heard) == 3, (heard, [d.reason for d in events.of(AsrDropped)])
    assert "yes" in heard[0].split() and "no" in heard[1].split() and "ten" in heard[2].split(), heard


def test_the_speech_check_can_be_turned_off(service, speech_config, calls, events):
    """asr.min_speech_share = 0: no Silero pass, noise goes to the recogniser (its own guard)."""
    speech_config.add("[asr]\nmin_speech_share = 0")
    asrd = service("asrd")
    w = attach(asrd, calls, "off")["off"]
    play(w, np.concatenate([SILENCE, noise.clip("white", 0), SILENCE]), speed=0)
    events.collect(lambda e: isinstance(e, (AsrDropped, AsrFinal)), timeout=15)
    assert events.of(AsrDropped) or finals(events)
    assert not [d for d in events.of(AsrDropped) if "not speech-like" in d.reason]


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


def test_bench_noise_reports_each_kind_and_writes_json(sandbox, tmp_path):
    """`appliancectl bench noise` through its own sandboxed asrd (one seed, two kinds)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "noise.json"
    done = subprocess.run([str(Path(sys.executable).with_name("appliancectl")), "--config", str(sandbox["config"]),
                           "bench", "noise", "--seeds", "1", "--kinds", "white,door", "--json", str(out)],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["clips"] == 2 and set(result["per_kind"]) == {"white", "door"}
    assert result["clips_with_final"] == 0 and result["hallucination_rate"] == 0
    assert all(k["vad_took_for_speech"] == 1 and k["dropped_by_speech_check"] >= 1 for k in result["per_kind"].values())
    assert "became words" in done.stdout


def test_what_the_agent_expects_primes_the_recogniser(service, speech_config, calls, events):
    """agentd's asr.expect after "what time suits you?": the recogniser is primed with the
    question and a time's words, and is asked for a second reading. The demo's caller said "At
    10 a.m., please." and unprimed base.en wrote "Attend Am, please." (seen here, most runs)."""
    from appliance.agent.understanding import extract
    from appliance.bus.messages import AsrExpect, Ok

    asrd = service("asrd")
    w = attach(asrd, calls, "primed")["primed"]
    prompt = ("And what time suits you? We have appointments from nine a.m. to five p.m. At ten a.m. Nine thirty "
              "in the morning. Two p.m.")
    assert isinstance(asrd.control(AsrExpect(call_id="primed", slot="time", prompt=prompt)), Ok)
    play(w, np.concatenate([SILENCE[:8000], phone_line(synthetic_speech("At 10 a.m., please.")), SILENCE]), speed=0)
    events.collect(lambda e: isinstance(e, (AsrFinal, AsrDropped)), timeout=20)
    (final,) = finals(events)
    assert extract(final.text, __import__("datetime").date(2026, 12, 7)).get("time") == "10:00", final.text
    assert isinstance(final.alternatives, list)
    with pytest.raises(Exception, match="no call"):
        asrd.control(AsrExpect(call_id="nobody", slot="time", prompt=prompt))
