"""The GPU-only packages, imported on first use with one clear line when they are missing.

tensorrt and pycuda exist only on a GPU box (PyPI's tensorrt is a stub that fetches the real
wheels from NVIDIA's index; pycuda compiles against cuda.h), so nothing imports them at module
load: a CPU box never needs them, and a GPU box without them says what to install.
"""

from __future__ import annotations

from ..models.errors import ModelError

INSTALL_HINT = ("on a GPU box: pip install 'appliance[gpu]' --extra-index-url https://pypi.nvidia.com "
                "(Jetson: use JetPack's python3-libnvinfer and a venv with --system-site-packages); docs/gpu.md")


def tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise ModelError(f"TensorRT is not installed ({exc}): the tensorrt backends run on a GPU box only; "
                         f"{INSTALL_HINT}") from None
    return trt


def cuda_driver():
    """pycuda.driver, initialised."""
    try:
        import pycuda.driver as cuda
    except ImportError as exc:
        raise ModelError(f"pycuda is not installed ({exc}): the tensorrt backends need it; {INSTALL_HINT}") from None
    try:
        cuda.init()
    except Exception as exc:  # no driver, no device: pycuda raises its own RuntimeError/LogicError
        raise ModelError(f"CUDA does not initialise ({exc}): is the NVIDIA driver loaded (nvidia-smi)?") from None
    return cuda


def gpu_identity(device: int = 0) -> tuple[str, str]:
    """(name, compute capability "major.minor") of a CUDA device: what an engine is tied to."""
    cuda = cuda_driver()
    count = cuda.Device.count()
    if device >= count:
        raise ModelError(f"gpu.device = {device} but this box has {count} CUDA device(s)")
    dev = cuda.Device(device)
    major, minor = dev.compute_capability()
    return dev.name(), f"{major}.{minor}"
