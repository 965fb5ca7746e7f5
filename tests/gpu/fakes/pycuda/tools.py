"""Fake ``pycuda.tools``: only what ``pycuda.autoinit`` uses."""

from __future__ import annotations

import os

import pycuda.driver as cuda


def make_default_context(ctx_maker=None):
    """As pycuda's: the device named by $CUDA_DEVICE, else the first device a context can be made on."""
    if ctx_maker is None:
        def ctx_maker(dev):
            return dev.make_context()
    if "CUDA_DEVICE" in os.environ:
        return ctx_maker(cuda.Device(int(os.environ["CUDA_DEVICE"])))
    count = cuda.Device.count()
    if count == 0:
        raise RuntimeError("No CUDA enabled device found. Please check your installation.")
    for devn in range(count):
        try:
            return ctx_maker(cuda.Device(devn))
        except cuda.Error:
            pass
    raise RuntimeError("make_default_context() wasn't able to create a context on any of the "
                       f"{count} detected devices")


def clear_context_caches() -> None:
    pass
