"""TensorRT engines for the models whose manifest has an ``[engine]`` table: where they are
kept, what they were built for, whether they still fit this box, building and loading them.

An engine is tied to the exact TensorRT version and GPU model it was built on, to the ONNX
it came from, and to the profile it was built with. Each ``<stem>.engine`` has a
``<stem>.engine.json`` beside it saying all of that (and the engine's own sha256), written
after the engine, both atomically. A service loading an engine that no longer fits refuses
with the reason and the command to run; ``appliancectl models build-engines`` rebuilds it.
Nothing here needs TensorRT except building, loading and asking the box what it has.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..config import Config
from ..config.backends import TtsBackendName, VadBackendName
from ..models.errors import ModelError
from ..models.manifest import Manifest
from ..models.store import get_manifest, load_manifests, locate, sha256_file

log = logging.getLogger("appliance.engines")

FORMAT = 1
BUILD_HINT = "appliancectl models build-engines"


@dataclass(frozen=True)
class Target:
    """What an engine is built for: this box's TensorRT and GPU."""

    tensorrt: str
    gpu: str
    compute_capability: str

    def __str__(self) -> str:
        return f"TensorRT {self.tensorrt} on {self.gpu} (compute {self.compute_capability})"


@dataclass(frozen=True)
class EngineInfo:
    model: str
    onnx: str
    onnx_sha256: str
    spec: dict
    tensorrt: str
    gpu: str
    compute_capability: str
    engine_sha256: str
    built_at: str = ""
    build_seconds: float = 0.0
    format: int = FORMAT

    @property
    def target(self) -> Target:
        return Target(self.tensorrt, self.gpu, self.compute_capability)

    @classmethod
    def read(cls, path: Path) -> "EngineInfo":
        try:
            data = json.loads(path.read_text())
            info = cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (OSError, ValueError, TypeError) as exc:
            raise ModelError(f"engine description {path} is unreadable ({exc}): run `{BUILD_HINT}`") from None
        wrong = [k for k in ("model", "onnx", "onnx_sha256", "tensorrt", "gpu", "compute_capability", "engine_sha256")
                 if not isinstance(getattr(info, k), str)] + ([] if isinstance(info.spec, dict) else ["spec"])
        if wrong:
            raise ModelError(f"engine description {path} is unreadable ({', '.join(wrong)} of the wrong type): "
                             f"run `{BUILD_HINT}`")
        return info


@dataclass
class EngineState:
    """One model's engine on this box: ``state`` ok | missing | stale | corrupt."""

    model: str
    state: str
    engine: Path
    reasons: list[str] = field(default_factory=list)
    info: EngineInfo | None = None
    data: bytes | None = None  # the engine's bytes, when inspect was asked to keep what it hashed

    def line(self) -> str:
        detail = "; ".join(self.reasons)
        return f"{self.model}: {self.state}" + (f" ({detail})" if detail else "") + f" — {self.engine}"


def engines_dir(config: Config) -> Path:
    return Path(config.gpu.engines_dir or os.path.join(config.paths.models_dir, "engines"))


def engine_path(config: Config, m: Manifest) -> Path:
    if m.engine is None:
        raise ModelError(f"model {m.name} has no [engine] table in its manifest: it has no TensorRT engine")
    return engines_dir(config) / m.name / (Path(m.engine.onnx).stem + ".engine")


def info_path(engine: Path) -> Path:
    return engine.with_name(engine.name + ".json")


def onnx_source(config: Config, m: Manifest) -> tuple[Path, str]:
    """The verified ONNX file the engine is built from, and its manifest sha256."""
    root = locate(config, m.name)
    path = root if root.is_file() else root / m.engine.onnx
    sha = next(f.sha256 for f in m.files if f.path == m.engine.onnx)
    return path, sha


def stale_reasons(info: EngineInfo, m: Manifest, onnx_sha256: str, target: Target) -> list[str]:
    """Why an engine described by ``info`` does not fit the manifest and this box (empty: fits)."""
    reasons = []
    if info.format != FORMAT:
        reasons.append(f"description format {info.format}, expected {FORMAT}")
    if info.model != m.name:
        reasons.append(f"built for model {info.model}")
    if info.onnx_sha256 != onnx_sha256:
        reasons.append(f"built from another {m.engine.onnx} (sha256 {info.onnx_sha256[:12]}…, the manifest "
                       f"says {onnx_sha256[:12]}…)")
    if info.spec != m.engine.as_dict():
        reasons.append("the manifest's [engine] profile or precision changed since it was built")
    if info.tensorrt != target.tensorrt:
        reasons.append(f"built by TensorRT {info.tensorrt}, this box has {target.tensorrt}")
    if (info.gpu, info.compute_capability) != (target.gpu, target.compute_capability):
        reasons.append(f"built for {info.gpu} (compute {info.compute_capability}), this box has "
                       f"{target.gpu} (compute {target.compute_capability})")
    return reasons


def current_target(config: Config) -> Target:
    from . import optional

    trt = optional.tensorrt()
    gpu, cc = optional.gpu_identity(config.gpu.device)
    return Target(str(trt.__version__), gpu, cc)


def inspect(config: Config, m: Manifest, target: Target, *, keep_bytes: bool = False) -> EngineState:
    """The engine's state; ``keep_bytes``: read it whole and keep the bytes that were hashed,
    for a loader to deserialize exactly those (else it is hashed as a stream)."""
    path = engine_path(config, m)
    if not path.is_file() or not info_path(path).is_file():
        return EngineState(m.name, "missing", path, [f"not built: run `{BUILD_HINT} {m.name}`"])
    try:
        info = EngineInfo.read(info_path(path))
    except ModelError as exc:
        return EngineState(m.name, "corrupt", path, [str(exc)])
    _, onnx_sha = onnx_source(config, m)
    reasons = stale_reasons(info, m, onnx_sha, target)
    if reasons:
        return EngineState(m.name, "stale", path, reasons + [f"run `{BUILD_HINT} {m.name}`"], info)
    try:
        data = path.read_bytes() if keep_bytes else None
        sha = hashlib.sha256(data).hexdigest() if keep_bytes else sha256_file(path)
    except OSError as exc:
        return EngineState(m.name, "corrupt", path, [f"cannot be read: {exc.strerror or exc}"], info)
    if sha != info.engine_sha256:
        return EngineState(m.name, "corrupt", path, [f"the engine file's sha256 differs from its description: "
                                                     f"run `{BUILD_HINT} --force {m.name}`"], info)
    return EngineState(m.name, "ok", path, [], info, data)


def configured(config: Config) -> list[str]:
    """The models this config runs on TensorRT."""
    return ([config.vad.model] if config.vad.backend == VadBackendName.TENSORRT else []) + \
        ([config.tts.voice] if config.tts.backend == TtsBackendName.TENSORRT else [])


def with_engines(config: Config, names: list[str] | None = None, *, every: bool = False) -> list[Manifest]:
    """The named models (each must have an [engine] table); without names, those the config
    runs on TensorRT, or with ``every`` all models that have an [engine] table."""
    if every:
        return [m for m in load_manifests(config).values() if m.engine is not None]
    found = [get_manifest(config, n) for n in (names or configured(config))]
    for m in found:
        if m.engine is None:
            raise ModelError(f"model {m.name} has no [engine] table in its manifest: it has no TensorRT engine")
    return found


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def build(config: Config, m: Manifest, target: Target, *, force: bool = False, builder=None) -> EngineState:
    """Build ``m``'s engine unless an up-to-date one is there. ``builder(onnx_path, spec) ->
    bytes`` defaults to TensorRT's (trt_build.build_serialized)."""
    state = inspect(config, m, target)
    if state.state == "ok" and not force:
        return state
    if builder is None:
        from .trt_build import build_serialized

        def builder(onnx, spec):
            return build_serialized(onnx, spec, device=config.gpu.device, workspace_mb=config.gpu.workspace_mb)
    onnx, onnx_sha = onnx_source(config, m)
    log.info("%s: building a TensorRT engine from %s (%s) for %s", m.name, onnx.name, m.engine.precision, target)
    started = time.monotonic()
    data = builder(onnx, m.engine)
    path = engine_path(config, m)
    info = EngineInfo(model=m.name, onnx=m.engine.onnx, onnx_sha256=onnx_sha, spec=m.engine.as_dict(),
                      tensorrt=target.tensorrt, gpu=target.gpu, compute_capability=target.compute_capability,
                      engine_sha256=hashlib.sha256(data).hexdigest(), built_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                      build_seconds=round(time.monotonic() - started, 1))
    info_path(path).unlink(missing_ok=True)  # a torn build leaves an engine without description: "missing"
    _write_atomic(path, data)
    _write_atomic(info_path(path), (json.dumps(asdict(info), indent=2) + "\n").encode())
    return EngineState(m.name, "built", path, [f"{len(data) / 1e6:.1f} MB in {info.build_seconds:g} s"], info)


def load_runner(config: Config, name: str):
    """A TrtRunner for model ``name``'s engine, after checking it fits this box."""
    from .trt_runner import TrtRunner

    m = get_manifest(config, name)
    if m.engine is None:
        raise ModelError(f"model {name} has no [engine] table in its manifest: it cannot run on TensorRT")
    state = inspect(config, m, current_target(config), keep_bytes=True)  # hashed and loaded: the same bytes
    if state.state != "ok":
        raise ModelError(f"TensorRT engine for {name} is {state.state}: {'; '.join(state.reasons)}")
    return TrtRunner(state.engine, device=config.gpu.device, data=state.data)
