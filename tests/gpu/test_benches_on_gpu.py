"""`appliancectl bench ...` unchanged on the GPU backends: on the stand-in GPU (tests/gpu/fakes)
with the TensorRT voice and VAD configured, the benches' own sandboxed services use them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

APPLIANCECTL = str(Path(sys.executable).with_name("appliancectl"))


def test_bench_tts_and_vad_run_on_the_engines(sandbox, fake_gpu, tmp_path):
    engines_dir = sandbox["root"] / "engines"
    sandbox["config"].write_text(sandbox["config"].read_text() + f'\n[gpu]\nengines_dir = "{engines_dir}"\n'
                                 '[tts]\nbackend = "tensorrt"\nfallback = false\n[vad]\nbackend = "tensorrt"\n')
    env = fake_gpu.env()

    def ctl(*args):
        return subprocess.run([APPLIANCECTL, "--config", str(sandbox["config"]), *args], capture_output=True,
                              text=True, timeout=300, env=env)

    assert ctl("models", "build-engines").returncode == 0
    tts = ctl("bench", "tts", "--repeat", "1", "--json", str(tmp_path / "tts.json"))
    assert tts.returncode == 0, tts.stderr
    result = json.loads((tmp_path / "tts.json").read_text())
    assert result["backend"] == "piper-tensorrt" and result["first_audio_ms"]["n"] == 10
    vad = ctl("bench", "vad", "--calls", "2", "--seconds", "2", "--json", str(tmp_path / "vad.json"))
    assert vad.returncode == 0, vad.stderr
    result = json.loads((tmp_path / "vad.json").read_text())
    assert result["device"] == "TensorRT, cuda:0" and result["model_run_us"]["n"] > 100
