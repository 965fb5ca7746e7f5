"""Fake ``pycuda.driver`` (after https://documen.tician.de/pycuda/driver.html and pycuda's
src/cpp/cuda.hpp), on the simulated GPU of tests/gpu/fakes/_fakecuda.py.

Modelled as documented: ``init()`` first; ``Device(i)`` (``count``, ``name``,
``compute_capability``, ``total_memory``, ``make_context``); a per-thread context stack with
``Context.push/pop/detach/synchronize/get_device/get_current`` (``pop``, ``synchronize`` and
``get_device`` are static, as in pycuda); ``Stream`` (``handle``, ``synchronize``, ``is_done``);
``Event``; ``mem_alloc`` -> ``DeviceAllocation`` (``int()``, ``free()``); ``pagelocked_empty``/
``pagelocked_zeros`` (+ ``_like``), ``register_host_memory``; synchronous and ``_async`` copies;
pycuda's exceptions (``Error``, ``LogicError``, ``LaunchError``, ``RuntimeError``,
``MemoryError``) with pycuda's message format, e.g. "explicit_context_dependent failed: invalid
device context - no currently active context?".

Async work is queued on its stream and happens only at a synchronisation (see _fakecuda), so a
host buffer read before ``stream.synchronize()`` holds stale data, as on a GPU.

Stricter than the real thing: ``memcpy_htod_async``/``memcpy_dtoh_async`` with a host buffer
that is not page-locked raise LogicError (CUDA silently goes synchronous); device ranges are
bounds-checked; freed memory is an error. Not modelled: kernels/modules (SourceModule),
GPUArray, textures, arrays, multiple distinct devices (all report the same identity).
"""

from __future__ import annotations

import numpy as np

from _fakecuda import (  # noqa: F401 - the public surface
    Context,
    Device,
    DeviceAllocation,
    Error,
    Event,
    LaunchError,
    LogicError,
    MemoryError,
    RuntimeError,
    Stream,
    init,
    mem_alloc,
    mem_get_info,
    memcpy_dtod,
    memcpy_dtod_async,
    memcpy_dtoh,
    memcpy_dtoh_async,
    memcpy_htod,
    memcpy_htod_async,
    memset_d8,
    memset_d32,
    pagelocked_empty,
    register_host_memory,
)


__all__ = ["Context", "Device", "DeviceAllocation", "Error", "Event", "LaunchError", "LogicError", "MemoryError",
           "RuntimeError", "Stream", "from_device", "from_device_like", "get_driver_version", "get_version", "init",
           "mem_alloc", "mem_get_info", "memcpy_dtod", "memcpy_dtod_async", "memcpy_dtoh", "memcpy_dtoh_async",
           "memcpy_htod", "memcpy_htod_async", "memset_d8", "memset_d32", "pagelocked_empty", "pagelocked_empty_like",
           "pagelocked_zeros", "pagelocked_zeros_like", "register_host_memory", "to_device"]


def get_version() -> tuple[int, int, int]:
    return (12, 4, 0)


def get_driver_version() -> int:
    return 12040


def pagelocked_zeros(shape, dtype, order: str = "C", mem_flags: int = 0) -> np.ndarray:
    result = pagelocked_empty(shape, dtype, order, mem_flags)
    result.fill(0)
    return result


def pagelocked_empty_like(array: np.ndarray, mem_flags: int = 0) -> np.ndarray:
    order = "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"
    return pagelocked_empty(array.shape, array.dtype, order, mem_flags)


def pagelocked_zeros_like(array: np.ndarray, mem_flags: int = 0) -> np.ndarray:
    result = pagelocked_empty_like(array, mem_flags)
    result.fill(0)
    return result


def to_device(bf_obj) -> DeviceAllocation:
    data = np.frombuffer(bf_obj, dtype=np.uint8) if not isinstance(bf_obj, np.ndarray) else bf_obj
    result = mem_alloc(data.nbytes)
    memcpy_htod(result, data)
    return result


def from_device(devptr, shape, dtype, order: str = "C") -> np.ndarray:
    result = np.empty(shape, dtype, order=order)
    memcpy_dtoh(result, devptr)
    return result


def from_device_like(devptr, other: np.ndarray) -> np.ndarray:
    return from_device(devptr, other.shape, other.dtype)
