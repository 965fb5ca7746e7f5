"""Benches run their own services in a sandbox but must measure the box's configured backends:
the model-choosing sections of the admin's config are carried over whole."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

from appliance.bench.sandboxcfg import SECTIONS, backend_sections
from appliance.config.loader import load, parse


def test_the_backend_sections_round_trip_with_overrides(tmp_path):
    path = tmp_path / "gpu.toml"
    path.write_text('[vad]\nbackend = "tensorrt"\n[asr]\ndevice = "cuda"\nboost_words = ["Riverside", "Dr. O\'Neil", "Zoë 😀"]\n'
                    '[tts]\nbackend = "tensorrt"\n[agent]\nn_gpu_layers = -1\n[gpu]\ndevice = 1\n'
                    'engines_dir = "/srv/engines"\n')
    config = load(path)
    text = backend_sections(config, asr={"model": "whisper-tiny-en"})
    assert sorted(tomllib.loads(text)) == sorted(SECTIONS)
    again = parse(text, "<sandbox>")
    for section in SECTIONS:
        if section != "asr":
            assert getattr(again, section) == getattr(config, section)
    assert again.asr.model == "whisper-tiny-en" and again.asr.device == "cuda"
    assert again.asr.boost_words == ["Riverside", "Dr. O'Neil", "Zoë 😀"]


def test_bench_vad_measures_the_configured_detector_and_writes_json(sandbox, tmp_path):
    sandbox["config"].write_text(sandbox["config"].read_text() + '\n[vad]\nbackend = "onnx"\n')
    out = tmp_path / "vad.json"
    done = subprocess.run([str(Path(sys.executable).with_name("appliancectl")), "--config", str(sandbox["config"]),
                           "bench", "vad", "--calls", "2", "--seconds", "3", "--json", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["backend"] == "onnx" and result["device"] == "onnxruntime cpu" and result["frames"] == 300
    assert result["per_frame_us"]["n"] == 300 and 0 < result["per_frame_us"]["p50"] <= result["per_frame_us"]["p95"]
    assert result["model_run_us"]["n"] > 150  # Silero runs on 5 of every 8 frames (512-sample chunks)
    assert 0.2 < result["voiced_share"] < 0.95  # Piper sentences with pauses between them
    assert "frames that run the model" in done.stdout
