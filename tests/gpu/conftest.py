"""The fake GPU: ``tensorrt`` and ``pycuda`` stand-ins (tests/gpu/fakes) for a box without one.

``fake_gpu`` puts tests/gpu/fakes first on sys.path and drops any cached tensorrt/pycuda modules,
so ``import tensorrt`` / ``import pycuda.driver`` / ``import pycuda.autoinit`` inside the test get
the fakes on a fresh simulated device; both are undone afterwards. The handle's knobs are
environment variables the fakes read (so a subprocess started with ``env()`` sees them too).
"""

from __future__ import annotations

import atexit
import importlib
import os
import sys
from pathlib import Path

import pytest

FAKES = Path(__file__).resolve().parent / "fakes"
_FAKE_ROOTS = ("tensorrt", "pycuda", "_fakecuda")
_KNOBS = ("FAKE_TRT_VERSION", "FAKE_CUDA_DEVICE", "FAKE_CUDA_CC", "FAKE_CUDA_DEVICE_COUNT", "FAKE_CUDA_MEM_BYTES")


def _purge() -> None:
    """Drop tensorrt/pycuda (fake or not) from sys.modules; a fake device's contexts and exit hooks die."""
    autoinit = sys.modules.get("pycuda.autoinit")
    if autoinit is not None and hasattr(autoinit, "_finish_up"):
        atexit.unregister(autoinit._finish_up)
    device = sys.modules.get("_fakecuda")
    if device is not None:
        device.shutdown()
    for name in list(sys.modules):
        if name.split(".")[0] in _FAKE_ROOTS:
            del sys.modules[name]


class FakeGpu:
    """Knobs of the fake GPU, and a way to run a real process on it.

    - ``trt_version``: the fake TensorRT's ``__version__`` (FAKE_TRT_VERSION, "10.7.0"); read at
      import, so set it and call ``reimport()`` (plans record it; another version will not load them).
    - ``gpu_name`` (FAKE_CUDA_DEVICE, "NVIDIA H100 80GB HBM3") and ``compute_capability``
      (FAKE_CUDA_CC, "9.0"; a "major.minor" string or a (major, minor) tuple): read when used.
    - ``reimport()``: forget the imported fakes; the next import starts a fresh device and re-reads
      the version (objects from before keep the old modules).
    - ``env(base=None)``: an environment for a subprocess: ``base`` (default os.environ, which holds the
      knobs) with PYTHONPATH = the fakes first.
    """

    fakes_dir = FAKES

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self._mp = monkeypatch

    def _get(self, var: str, default: str) -> str:
        return os.environ.get(var, default)

    trt_version = property(lambda self: self._get("FAKE_TRT_VERSION", "10.7.0"),
                           lambda self, v: self._mp.setenv("FAKE_TRT_VERSION", str(v)))
    gpu_name = property(lambda self: self._get("FAKE_CUDA_DEVICE", "NVIDIA H100 80GB HBM3"),
                        lambda self, v: self._mp.setenv("FAKE_CUDA_DEVICE", str(v)))

    @property
    def compute_capability(self) -> str:
        return self._get("FAKE_CUDA_CC", "9.0")

    @compute_capability.setter
    def compute_capability(self, value) -> None:
        self._mp.setenv("FAKE_CUDA_CC", value if isinstance(value, str) else "%d.%d" % tuple(value))

    def reimport(self) -> None:
        _purge()
        importlib.invalidate_caches()

    def env(self, base: dict | None = None) -> dict:
        env = dict(os.environ if base is None else base)
        for var in _KNOBS:
            if var in os.environ and var not in env:
                env[var] = os.environ[var]
        rest = env.get("PYTHONPATH", "")
        env["PYTHONPATH"] = str(FAKES) + (os.pathsep + rest if rest else "")
        return env


@pytest.fixture
def fake_gpu(monkeypatch):
    for var in _KNOBS:
        monkeypatch.delenv(var, raising=False)
    _purge()
    sys.path.insert(0, str(FAKES))
    try:
        yield FakeGpu(monkeypatch)
    finally:
        _purge()
        while str(FAKES) in sys.path:
            sys.path.remove(str(FAKES))
