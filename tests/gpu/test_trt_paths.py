"""The TensorRT path end to end on the stand-in GPU (tests/gpu/fakes: TensorRT 10's and pycuda's
documented Python APIs, the network run by onnxruntime): engines built by our builder from the
shipped ONNX with the manifests' profiles, refused when stale, run by our runner for Piper and
Silero with the same results as onnxruntime, and inside real ttsd/asrd processes.

What this cannot show: speed, FP16 accuracy, or that NVIDIA's library agrees with the stand-in
where the docs are vague (the stand-in's docstrings list those choices)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from appliance.config.loader import load
from appliance.models.manifest import EngineSpec

APPLIANCECTL = str(Path(sys.executable).with_name("appliancectl"))


@pytest.fixture
def box(sandbox, fake_gpu):
    """The sandbox config on the fake GPU, engines in the sandbox."""
    engines_dir = sandbox["root"] / "engines"
    sandbox["config"].write_text(sandbox["config"].read_text() + f'\n[gpu]\nengines_dir = "{engines_dir}"\n')
    return {"config": load(sandbox["config"]), "path": sandbox["config"], "engines": engines_dir,
            "gpu": fake_gpu, "sandbox": sandbox}


def ctl(box, *args, env=None):
    return subprocess.run([APPLIANCECTL, "--config", str(box["path"]), *args], capture_output=True, text=True,
                          timeout=120, env=env or box["gpu"].env())


def test_build_engines_then_a_tensorrt_upgrade_makes_them_stale_and_they_are_rebuilt(box):
    nothing = ctl(box, "models", "build-engines")  # this config runs nothing on TensorRT
    assert nothing.returncode == 0 and "nothing to build" in nothing.stdout
    first = ctl(box, "models", "build-engines", "--all")
    assert first.returncode == 0, first.stderr
    assert "this box: TensorRT 10.7.0 on NVIDIA H100 80GB HBM3 (compute 9.0)" in first.stdout
    assert "piper-joe-us: built" in first.stdout and "silero-vad: built" in first.stdout
    for name in ("piper-joe-us/en_US-joe-medium.engine", "silero-vad/silero_vad_v6.engine"):
        assert (box["engines"] / name).stat().st_size > 0 and (box["engines"] / (name + ".json")).is_file()
    again = ctl(box, "models", "build-engines", "--all")
    assert again.stdout.count("up to date") == 2, again.stdout
    assert ctl(box, "models", "engines").returncode == 0

    box["gpu"].trt_version = "10.8.0"
    listing = ctl(box, "models", "engines")
    assert listing.returncode == 2
    assert "piper-joe-us: stale (built by TensorRT 10.7.0, this box has 10.8.0" in listing.stderr
    rebuilt = ctl(box, "models", "build-engines", "silero-vad")
    assert rebuilt.returncode == 0 and "silero-vad: built" in rebuilt.stdout
    listing = ctl(box, "models", "engines", "--json")
    states = {e["model"]: e["state"] for e in __import__("json").loads(listing.stdout)["engines"]}
    assert states == {"piper-joe-us": "stale", "silero-vad": "ok"}


def test_an_engine_for_another_gpu_is_refused_with_the_reason(box):
    from appliance.inference import engines
    from appliance.models.errors import ModelError

    assert ctl(box, "models", "build-engines", "silero-vad").returncode == 0
    box["gpu"].gpu_name, box["gpu"].compute_capability = "Orin", "8.7"
    with pytest.raises(ModelError, match=r"silero-vad is stale: built for NVIDIA H100 80GB HBM3 \(compute 9.0\), "
                                         r"this box has Orin \(compute 8.7\).*build-engines silero-vad"):
        engines.load_runner(box["config"], "silero-vad")


def build(box, name: str) -> Path:
    from appliance.inference import engines

    m = engines.get_manifest(box["config"], name)
    return engines.build(box["config"], m, engines.current_target(box["config"])).engine


def test_piper_on_tensorrt_speaks_exactly_as_on_onnxruntime(box):
    from appliance.inference.engines import load_runner
    from appliance.speech.tts.piper import PiperTts

    build(box, "piper-joe-us")
    from appliance.inference.engines import get_manifest, onnx_source

    runner = load_runner(box["config"], "piper-joe-us")

    voice, _ = onnx_source(box["config"], get_manifest(box["config"], "piper-joe-us"))
    on_trt, on_ort = PiperTts(voice, runner=runner), PiperTts(voice)
    for tts in (on_trt, on_ort):
        tts.scales[0] = tts.scales[2] = 0.0  # no sampling noise: both must give the same samples
    assert on_trt.max_ids == 1024 and on_ort.max_ids is None
    # Long then short: device and pinned buffers grow once and are reused.
    for text in ("Our opening hours are Monday to Friday from eight until six, and Saturday from nine.",
                 "Hello.", "Goodbye, and thank you for calling."):
        a = np.concatenate(list(on_trt.synthesize(text)))
        b = np.concatenate(list(on_ort.synthesize(text)))
        assert len(a) > 8000 and np.array_equal(a, b), text
    runner.close()


def test_a_sentence_longer_than_the_profile_is_cut_at_word_boundaries(box):
    """An engine whose profile takes 64 phoneme ids: a long sentence goes in several runs, each
    within the profile and each cut after a space."""
    from appliance.inference.engines import get_manifest, onnx_source
    from appliance.inference.trt_build import build_serialized
    from appliance.inference.trt_runner import TrtRunner
    from appliance.speech.tts.piper import PiperTts

    voice, _ = onnx_source(box["config"], get_manifest(box["config"], "piper-joe-us"))
    spec = EngineSpec("en_US-joe-medium.onnx", "fp16", (("input", (1, 4), (1, 32), (1, 64)),
                                                       ("input_lengths", (1,), (1,), (1,))))
    path = box["engines"] / "small.engine"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(build_serialized(voice, spec))
    runner = TrtRunner(path)
    seen = []
    real_run = runner.run
    runner.run = lambda feeds: seen.append(feeds["input"].shape[1]) or real_run(feeds)
    tts = PiperTts(voice, runner=runner)
    text = "Please bring your insurance card and a photo ID to your first appointment with us."
    (ids,) = tts.phoneme_ids(text)
    pieces = tts.split(ids)
    space, pad = tts.id_map[" "][0], tts.id_map["_"][0]
    bos, eos = tts.id_map["^"], tts.id_map["$"]
    assert len(ids) > 64 and len(pieces) >= 2
    # Framed as the voice was trained (^ _ p _ ... p _ $), each within the profile.
    assert all(4 <= len(p) <= 64 and p[:len(bos)] == bos and p[-len(eos):] == eos for p in pieces)
    assert all(p[len(bos)] == pad and p[-len(eos) - 1] == pad for p in pieces)
    assert all(p[-len(eos) - 2] == space for p in pieces[:-1])  # each cut right after a word
    phonemes = [x for p in pieces for x in p[len(bos):-len(eos)] if x != pad]
    assert phonemes == [x for x in ids[len(bos):-len(eos)] if x != pad]  # nothing lost or repeated
    audio = list(tts.synthesize(text))
    assert seen == [len(p) for p in pieces] and all(len(a) > 1000 for a in audio)
    runner.close()


def test_silero_on_tensorrt_gives_the_same_speech_probabilities_as_on_onnxruntime(box):
    from appliance.bench.speechdrive import synthetic_speech
    from appliance.inference.engines import get_manifest, load_runner, onnx_source
    from appliance.inference.onnx_runner import OnnxRunner
    from appliance.speech.vad import SileroOnnxVad

    build(box, "silero-vad")
    trt_runner = load_runner(box["config"], "silero-vad")
    onnx, _ = onnx_source(box["config"], get_manifest(box["config"], "silero-vad"))
    ort_runner = OnnxRunner(onnx)
    speech = np.concatenate([np.zeros(8000, np.int16), synthetic_speech("Can I book a cleaning?"),
                             np.zeros(8000, np.int16)])
    frames = [speech[i:i + 320] for i in range(0, len(speech) - 319, 320)]
    a, b = SileroOnnxVad(trt_runner), SileroOnnxVad(ort_runner)
    probs_a, probs_b = [], []
    for f in frames:
        a.is_speech(f)
        b.is_speech(f)
        probs_a.append(a.prob)
        probs_b.append(b.prob)
    assert probs_a == probs_b
    assert max(probs_a) > 0.9 and probs_a[10] < 0.1  # speech found, silence not

    # A stall: 40 frames at once are 25 chunks, more than the profile's 16: two runs, same result.
    caught_up = SileroOnnxVad(trt_runner)
    caught_up.is_speech(np.concatenate(frames[:40]))
    step = SileroOnnxVad(ort_runner)
    for f in frames[:40]:
        step.is_speech(f)
    assert caught_up.prob == pytest.approx(step.prob, abs=1e-6)
    assert np.allclose(caught_up._h, step._h, atol=1e-6)
    trt_runner.close()


# ---- the services on the fake GPU --------------------------------------------------------------


@pytest.fixture
def on_gpu(box, monkeypatch):
    """Services started from here see the fake GPU (PYTHONPATH) and the engines built."""
    for key, value in box["gpu"].env().items():
        monkeypatch.setenv(key, value)
    assert ctl(box, "models", "build-engines", "--all").returncode == 0
    return box


@contextlib.contextmanager
def running(sandbox, name: str, config: str):
    """``name`` started with ``config`` added, a call source and an event log; all closed after."""
    from appliance.bench.sipdrive import EventLog, Service
    from appliance.bench.speechdrive import CallSource

    sandbox["config"].write_text(sandbox["config"].read_text() + config)
    svc = Service(sandbox, name).start()
    source = CallSource(sandbox["run_dir"], sandbox["shm_dir"])
    events = EventLog(str(sandbox["run_dir"]), services=(name,))
    try:
        yield svc, source, events
    finally:
        events.close()
        source.close()
        svc.stop()


def test_ttsd_speaks_through_the_piper_engine(on_gpu):
    from appliance.bench.speechdrive import read_all
    from appliance.bus.messages import TtsSay, TtsFinished
    from appliance.ipc import RingReader
    from appliance.speech.asr.whisper import WhisperAsr
    from appliance.speech.textnorm import for_wer

    sandbox = on_gpu["sandbox"]
    with running(sandbox, "ttsd", '\n[tts]\nbackend = "tensorrt"\nfallback = false\n') as (ttsd, source, events):
        assert ttsd.status().details["backend"] == "piper-tensorrt"
        source.start_call("g1")
        reader = RingReader(sandbox["shm_dir"], "g1", "out")
        ttsd.control(TtsSay(call_id="g1", turn="t1", text="Thank you for calling Riverside Dental."))
        events.collect(lambda e: isinstance(e, TtsFinished), timeout=30)
        time.sleep(0.5)
        pcm = read_all(reader)
        heard = for_wer(WhisperAsr(Path(load(sandbox["config"]).paths.models_dir) / "whisper-base-en")
                        .transcribe(pcm, 30).text)
        assert {"thank", "calling", "dental"} <= set(heard.split()), heard


def test_a_stale_engine_stops_ttsd_with_the_command_to_run(on_gpu, monkeypatch):
    from appliance.bench.sipdrive import Service

    sandbox = on_gpu["sandbox"]
    sandbox["config"].write_text(sandbox["config"].read_text() + '\n[tts]\nbackend = "tensorrt"\nfallback = false\n')
    monkeypatch.setenv("FAKE_TRT_VERSION", "10.9.1")
    ttsd = Service(sandbox, "ttsd").start(wait_ready=False)
    assert ttsd.proc.wait(60) != 0
    out = ttsd.output()
    assert "built by TensorRT 10.7.0, this box has 10.9.1" in out and "build-engines piper-joe-us" in out, out
    assert "Traceback" not in out


def test_asrd_finds_speech_with_the_silero_engine(on_gpu):
    from appliance.bench.speechdrive import play, synthetic_speech
    from appliance.bus.messages import AsrFinal, SpeechStarted

    with running(on_gpu["sandbox"], "asrd", '\n[vad]\nbackend = "tensorrt"\n') as (asrd, source, events):
        assert "VAD tensorrt" in asrd.output()
        writer = source.attach(asrd, "g2")["g2"]
        speech = synthetic_speech("What time do you open on Saturday?")
        start_ns = time.monotonic_ns()
        play(writer, np.concatenate([np.zeros(8000, np.int16), speech, np.zeros(16000, np.int16)]), speed=4,
             start_ns=start_ns)
        events.collect(lambda e: isinstance(e, AsrFinal), timeout=30)
        (final,) = events.of(AsrFinal)
        assert {"saturday", "open"} <= set(final.text.lower().replace("?", "").split()), final.text
        started = events.of(SpeechStarted)[0]
        assert abs((started.at_ns - start_ns) / 1e9 - 0.5) < 0.25
