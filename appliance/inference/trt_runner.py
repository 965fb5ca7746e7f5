"""A TensorRT engine run with pycuda: its own CUDA context and stream, pinned host buffers,
device buffers that grow and are reused, async copies, one ``execute_async_v3`` per run.

Written against TensorRT 10's Python API (named tensors, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``). An output whose size depends on the data
(Piper's audio length) gets an ``IOutputAllocator``: TensorRT asks it for memory once it knows
the size and tells it the shape. The context is pushed for each run and popped after, so the
runner may be called from any one thread at a time (a lock makes that so).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..models.errors import ModelError
from . import optional


@dataclass
class _Tensor:
    name: str
    is_input: bool
    dtype: np.dtype
    profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None = None  # inputs: min, opt, max


class _Buffer:
    """A device allocation and its pinned host twin, grown (doubling) when a run needs more."""

    def __init__(self, cuda, dtype: np.dtype):
        self.cuda, self.dtype = cuda, np.dtype(dtype)
        self.capacity = 0  # elements
        self.device = None
        self.host = None

    def ensure(self, count: int) -> None:
        count = max(1, count)
        if count <= self.capacity:
            return
        capacity = max(count, 2 * self.capacity)
        if self.device is not None:
            self.device.free()
        self.device = self.cuda.mem_alloc(capacity * self.dtype.itemsize)
        self.host = self.cuda.pagelocked_empty(capacity, self.dtype)
        self.capacity = capacity

    def free(self) -> None:
        if self.device is not None:
            self.device.free()
        self.device, self.host, self.capacity = None, None, 0


def _allocator_class(trt, cuda):
    """An IOutputAllocator subclass (built here: tensorrt is imported lazily)."""

    class OutputAllocator(trt.IOutputAllocator):
        def __init__(self, dtypes: dict[str, np.dtype]):
            trt.IOutputAllocator.__init__(self)
            self.buffers = {name: _Buffer(cuda, dtype) for name, dtype in dtypes.items()}
            self.shapes: dict[str, tuple[int, ...]] = {}

        def reallocate_output(self, tensor_name, memory, size, alignment):
            buf = self.buffers[tensor_name]
            buf.ensure(-(-int(size) // buf.dtype.itemsize))
            return int(buf.device)  # mem_alloc's memory is aligned for any CUDA type

        def reallocate_output_async(self, tensor_name, memory, size, alignment, stream):
            return self.reallocate_output(tensor_name, memory, size, alignment)

        def notify_shape(self, tensor_name, shape):
            self.shapes[tensor_name] = tuple(int(d) for d in shape)

    return OutputAllocator


class TrtRunner:
    label = "tensorrt"  # what a backend's name shows

    def __init__(self, engine_path: str | Path, *, device: int = 0, data: bytes | None = None):
        """``data``: the engine's bytes when the caller already read (and checked) them."""
        self.trt = trt = optional.tensorrt()
        self.cuda = cuda = optional.cuda_driver()
        self.path = Path(engine_path)
        if data is None:
            try:
                data = self.path.read_bytes()
            except OSError as exc:
                raise ModelError(f"TensorRT engine {self.path} cannot be read: {exc.strerror or exc}") from None
        # The device's primary context: the one CUDA's runtime API (CTranslate2, onnxruntime)
        # uses too, so a process holds one context per GPU, not one per model.
        try:
            self.ctx = cuda.Device(device).retain_primary_context()
            self.ctx.push()
        except Exception as exc:  # pycuda.driver.Error: no memory, exclusive-process mode, ...
            raise ModelError(f"no CUDA context on device {device} for {self.path.name}: {exc}") from None
        try:
            self._load(trt, cuda, data)
        except Exception as exc:
            self.ctx.pop()
            self.ctx.detach()
            self.ctx = None
            if isinstance(exc, ModelError):
                raise
            raise ModelError(f"TensorRT engine {self.path.name} does not load: {exc}") from None
        self.ctx.pop()
        self.lock = threading.Lock()
        self.outputs = [n for n, t in self.tensors.items() if not t.is_input]

    def _load(self, trt, cuda, data: bytes) -> None:
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(data)
        if self.engine is None:
            raise ModelError(f"TensorRT engine {self.path} does not load (corrupt, or built by another "
                             f"TensorRT version or for another GPU; TensorRT's log above says which): "
                             f"run `appliancectl models build-engines`")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise ModelError(f"TensorRT could not make an execution context for {self.path.name} "
                             f"(GPU memory full?)")
        self.stream = cuda.Stream()
        self.tensors: dict[str, _Tensor] = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            profile = None
            if is_input:
                shape = tuple(self.engine.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    lo, opt, hi = self.engine.get_tensor_profile_shape(name, 0)
                    profile = (tuple(lo), tuple(opt), tuple(hi))
                else:
                    profile = (shape, shape, shape)
            self.tensors[name] = _Tensor(name, is_input, dtype, profile)
        self.buffers = {n: _Buffer(cuda, t.dtype) for n, t in self.tensors.items()}
        self.allocator = _allocator_class(trt, cuda)(
            {n: t.dtype for n, t in self.tensors.items() if not t.is_input})
        self.dynamic_outputs: set[str] = set()

    def max_shape(self, name: str) -> tuple[int, ...] | None:
        """The largest shape input ``name`` takes (the profile's max): callers split longer input."""
        t = self.tensors.get(name)
        return t.profile[2] if t and t.profile else None

    def _check(self, name: str, shape: tuple[int, ...]) -> None:
        t = self.tensors.get(name)
        if t is None or not t.is_input:
            raise ValueError(f"{name!r} is not an input of {self.path.name} "
                             f"(inputs: {', '.join(n for n, x in self.tensors.items() if x.is_input)})")
        lo, _, hi = t.profile
        if len(shape) != len(lo) or not all(a <= d <= b for a, d, b in zip(lo, shape, hi)):
            raise ValueError(f"input {name!r} of shape {list(shape)} is outside {self.path.name}'s profile "
                             f"{list(lo)}..{list(hi)}")

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n, t in self.tensors.items() if t.is_input and n not in feeds]
        if missing:
            raise ValueError(f"missing input(s) {', '.join(missing)} for {self.path.name}")
        with self.lock:
            self.ctx.push()
            try:
                return self._run(feeds)
            finally:
                self.ctx.pop()

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cuda, context, stream = self.cuda, self.context, self.stream
        for name, value in feeds.items():
            t = self.tensors.get(name)
            value = np.ascontiguousarray(value, dtype=t.dtype if t else None)
            self._check(name, value.shape)
            if not context.set_input_shape(name, value.shape):
                raise RuntimeError(f"TensorRT refused shape {list(value.shape)} for {name!r}")
            buf = self.buffers[name]
            buf.ensure(value.size)
            host = buf.host[: value.size]
            host[:] = value.reshape(-1)
            cuda.memcpy_htod_async(buf.device, host, stream)
            context.set_tensor_address(name, int(buf.device))
        static: dict[str, tuple[int, ...]] = {}
        for name in self.outputs:
            shape = tuple(context.get_tensor_shape(name))
            if name in self.dynamic_outputs or any(d < 0 for d in shape):  # known only once it has run
                if name not in self.dynamic_outputs:
                    context.set_output_allocator(name, self.allocator)
                    self.dynamic_outputs.add(name)
                continue
            buf = self.buffers[name]
            buf.ensure(int(np.prod(shape)))
            context.set_tensor_address(name, int(buf.device))
            static[name] = shape
        self.allocator.shapes.clear()  # a shape from an earlier run must not stand in for this one
        if not context.execute_async_v3(stream.handle):
            raise RuntimeError(f"TensorRT could not run {self.path.name} (its log says why)")
        # Waits for the run too, so the data-dependent outputs' shapes are known after it.
        results = self._fetch({name: (self.buffers[name], shape) for name, shape in static.items()})
        dynamic = [n for n in self.outputs if n not in static]
        for name in dynamic:
            if name not in self.allocator.shapes:
                raise RuntimeError(f"TensorRT did not report the shape of output {name!r}")
        if dynamic:
            results.update(self._fetch({n: (self.allocator.buffers[n], self.allocator.shapes[n]) for n in dynamic}))
        return results

    def _fetch(self, outputs: dict[str, tuple[_Buffer, tuple[int, ...]]]) -> dict[str, np.ndarray]:
        """Copy ``outputs`` (buffer, shape) to their pinned host buffers on the stream, wait for the
        stream, and hand back copies (the host buffers are reused by the next run)."""
        for buf, shape in outputs.values():
            self.cuda.memcpy_dtoh_async(buf.host[: int(np.prod(shape))], buf.device, self.stream)
        self.stream.synchronize()
        return {name: buf.host[: int(np.prod(shape))].reshape(shape).copy() for name, (buf, shape) in outputs.items()}

    def close(self) -> None:
        if getattr(self, "ctx", None) is None:
            return
        self.ctx.push()
        try:
            for buf in list(self.buffers.values()) + list(self.allocator.buffers.values()):
                buf.free()
            self.context = None  # TensorRT objects die while their context is current
            self.engine = None
            self.stream = None
        finally:
            self.ctx.pop()
            self.ctx.detach()  # releases this runner's hold on the primary context
            self.ctx = None
