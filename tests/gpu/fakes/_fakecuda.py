"""The simulated GPU behind the fake ``pycuda`` and ``tensorrt`` in tests/gpu/fakes: one CUDA
device's identity, its contexts, its memory, page-locked host memory and its streams. Only the
two fakes import this module; code under test sees pycuda's and TensorRT's APIs, never this one.

What it models (after CUDA's driver API as pycuda wraps it, src/cpp/cuda.hpp):
- ``cuInit`` first, or every call fails ("initialization error").
- A per-thread context stack (pycuda's is thread-local): memory, streams, events and copies need
  a current context in the calling thread, or fail with "invalid device context".
- Device memory: an address -> bytes registry. Addresses are nonzero, 512-aligned, never reused,
  with a gap between allocations, so an overrun or a use after free is an error, not a silent read
  of a neighbour. Fresh memory holds 0xFF bytes (NaN as float), not zeros: code that reads memory
  it never wrote sees garbage, as on a GPU. ``mem_alloc(0)`` is "invalid argument", as in CUDA.
- Page-locked host memory: address ranges. A host buffer counts as pinned when its bytes lie in a
  range pinned by ``pagelocked_*`` or ``register_host_memory`` (views and slices of a pinned array
  are pinned; a copy is not), as CUDA decides.
- Streams: work (copies, TensorRT executions, event records) is queued and runs only when a
  synchronisation needs it: ``Stream.synchronize``, ``Context.synchronize``, a synchronous copy, an
  event's ``synchronize``. The legacy default stream (handle 0) orders with every blocking stream,
  as in CUDA. So host code that reads a buffer before synchronising sees stale data.

Stricter than CUDA, on purpose (each is a bug on a real GPU, but a quiet one):
- An async copy from/to pageable (not page-locked) host memory raises LogicError. CUDA quietly
  makes such a copy synchronous, which hides the missing pinned buffer until it costs latency.
- A copy that leaves a live allocation raises at once (synchronous copy, or enqueueing an async
  one); stream work that touches freed memory raises at the synchronisation ("illegal memory
  access"), where a real GPU would report the sticky error.

Knobs (environment, read when asked, so a test may change them mid-test):
FAKE_CUDA_DEVICE (name, "NVIDIA H100 80GB HBM3"), FAKE_CUDA_CC ("9.0"), FAKE_CUDA_DEVICE_COUNT
("1"), FAKE_CUDA_MEM_BYTES (total memory, 85045166080).
"""

from __future__ import annotations

import atexit
import bisect
import itertools
import operator
import os
import sys
import threading
import time
import weakref

import numpy as np

# {{{ errors: pycuda._driver's classes and messages ("<routine> failed: <cuGetErrorString>[ - note]")


class Error(Exception):
    pass


class LogicError(Error):
    pass


class LaunchError(Error):
    pass


class MemoryError(Error):  # noqa: A001 - pycuda's own name
    pass


RuntimeError = type("RuntimeError", (Error,), {})  # noqa: A001 - pycuda's own name

for _cls in (Error, LogicError, LaunchError, MemoryError, RuntimeError):
    _cls.__module__ = "pycuda._driver"

INVALID_VALUE = "invalid argument"
NOT_INITIALIZED = "initialization error"
INVALID_DEVICE = "invalid device ordinal"
INVALID_CONTEXT = "invalid device context"
INVALID_HANDLE = "invalid resource handle"
ILLEGAL_ADDRESS = "an illegal memory access was encountered"
OUT_OF_MEMORY = "out of memory"
NOT_READY = "device not ready"


def fail(routine: str, what: str, note: str | None = None, cls=LogicError):
    raise cls(f"{routine} failed: {what}" + (f" - {note}" if note else ""))


# }}}

# {{{ the device's identity (environment knobs)


def device_name() -> str:
    return os.environ.get("FAKE_CUDA_DEVICE", "NVIDIA H100 80GB HBM3")


def compute_capability() -> tuple[int, int]:
    major, _, minor = os.environ.get("FAKE_CUDA_CC", "9.0").partition(".")
    return int(major), int(minor or 0)


def device_count() -> int:
    return int(os.environ.get("FAKE_CUDA_DEVICE_COUNT", "1"))


def total_memory() -> int:
    return int(os.environ.get("FAKE_CUDA_MEM_BYTES", "85045166080"))


# }}}

_lock = threading.RLock()
_initialized = False
_tls = threading.local()
_contexts: "weakref.WeakSet[Context]" = weakref.WeakSet()
_handles = itertools.count(0x55D0_0001_0000, 0x100)


def init(flags: int = 0) -> None:
    global _initialized
    if flags != 0:
        fail("cuInit", INVALID_VALUE)
    _initialized = True


def require_init(routine: str) -> None:
    if not _initialized:
        fail(routine, NOT_INITIALIZED)


# {{{ devices and contexts


class Device:
    def __init__(self, number):
        require_init("cuDeviceGet")
        if isinstance(number, str):
            raise LogicError("cuDeviceGetByPCIBusId failed: invalid device ordinal - [fake GPU] not modelled")
        number = operator.index(number)
        if not 0 <= number < device_count():
            fail("cuDeviceGet", INVALID_DEVICE)
        self._ordinal = number

    @staticmethod
    def count() -> int:
        require_init("cuDeviceGetCount")
        return device_count()

    def name(self) -> str:
        return device_name()

    def compute_capability(self) -> tuple[int, int]:
        return compute_capability()

    def total_memory(self) -> int:
        return total_memory()

    def pci_bus_id(self) -> str:
        return f"0000:{0x18 + self._ordinal:02X}:00.0"

    def make_context(self, flags: int = 0) -> "Context":
        ctx = Context(self)
        _stack().append(ctx)
        return ctx

    def retain_primary_context(self) -> "Context":
        return Context(self)  # not made current: push() it

    def __eq__(self, other):
        return isinstance(other, Device) and other._ordinal == self._ordinal

    def __hash__(self):
        return self._ordinal

    def __repr__(self):
        return f"<pycuda._driver.Device {self._ordinal} ({device_name()})>"


Device.__module__ = "pycuda._driver"


def _stack() -> list:
    if not hasattr(_tls, "stack"):
        _tls.stack = []
    return _tls.stack


def current_context() -> "Context | None":
    """This thread's current context; detached ones are dropped from the top, as pycuda does."""
    stack = _stack()
    while stack and not stack[-1]._valid:
        stack.pop()
    return stack[-1] if stack else None


def require_context(routine: str) -> "Context":
    ctx = current_context()
    if ctx is None:
        fail(routine, INVALID_CONTEXT)
    return ctx


def require_context_dependent() -> "Context":
    """What pycuda's explicit_context_dependent objects (Stream, Event) check when made."""
    ctx = current_context()
    if ctx is None:
        fail("explicit_context_dependent", INVALID_CONTEXT, "no currently active context?")
    return ctx


class Context:
    def __init__(self, device: Device):
        self._device = device
        self._valid = True
        self._handle = next(_handles)
        _contexts.add(self)

    @property
    def handle(self) -> int:
        return self._handle

    def push(self) -> None:
        if not self._valid:
            fail("cuCtxPushCurrent", INVALID_CONTEXT)
        _stack().append(self)

    @staticmethod
    def pop() -> None:
        """Pops this thread's current context, whatever object it is called on (pycuda's is static)."""
        if current_context() is None:
            fail("context::pop", INVALID_CONTEXT, "cannot pop non-current context")
        _stack().pop()

    def detach(self) -> None:
        """Destroys the context (after its pending work): its memory and streams die with it."""
        if not self._valid:
            fail("context::detach", INVALID_CONTEXT, "cannot detach from invalid context")
        synchronize_all()
        self._valid = False
        with _lock:
            for alloc in [a for a in _allocs.values() if a.ctx is self]:
                _release(alloc)

    @staticmethod
    def synchronize() -> None:
        require_context("cuCtxSynchronize")
        synchronize_all()

    @staticmethod
    def get_device() -> Device:
        return require_context("cuCtxGetDevice")._device

    @staticmethod
    def get_current() -> "Context | None":
        return current_context()

    def __repr__(self):
        return f"<pycuda._driver.Context 0x{self._handle:x}{'' if self._valid else ' (detached)'}>"


Context.__module__ = "pycuda._driver"


def _check_stack_at_exit() -> None:
    """pycuda aborts when the main thread's context stack is not empty at module cleanup."""
    if any(c._valid for c in getattr(_tls, "stack", ())):
        sys.stderr.write(
            "-------------------------------------------------------------------\n"
            "PyCUDA ERROR: The context stack was not empty upon module cleanup.\n"
            "-------------------------------------------------------------------\n"
            "A context was still active when the context stack was being\n"
            "cleaned up. At this point in our execution, CUDA may already\n"
            "have been deinitialized, so there is no way we can finish\n"
            "cleanly. The program will be aborted now.\n"
            "Use Context.pop() to avoid this problem.\n"
            "-------------------------------------------------------------------\n")
        sys.stderr.flush()
        os.abort()


atexit.register(_check_stack_at_exit)


def shutdown() -> None:
    """For the test fixture only: forget every context (all threads) and the exit check."""
    atexit.unregister(_check_stack_at_exit)
    for ctx in list(_contexts):
        ctx._valid = False
    with _lock:
        _pending.clear()
        for alloc in list(_allocs.values()):
            _release(alloc)


# }}}

# {{{ device memory


class _Alloc:
    __slots__ = ("addr", "size", "buf", "ctx")

    def __init__(self, addr, size, ctx):
        self.addr, self.size, self.ctx = addr, size, ctx
        self.buf = np.full(size, 0xFF, dtype=np.uint8)


_allocs: dict[int, _Alloc] = {}
_starts: list[int] = []
_next_addr = 0x7F4C_0000_0000
_in_use = 0


def _release(alloc: _Alloc) -> None:
    global _in_use
    if _allocs.pop(alloc.addr, None) is not None:
        del _starts[bisect.bisect_left(_starts, alloc.addr)]
        _in_use -= alloc.size


class DeviceAllocation:
    """``int(x)`` is the device address; ``free()`` releases it now (a second free is an error)."""

    def __init__(self, alloc: _Alloc):
        self._alloc = alloc
        self._valid = True

    def __int__(self) -> int:
        return self._alloc.addr

    __index__ = __int__

    def free(self) -> None:
        if not self._valid:
            fail("device_allocation::free", INVALID_HANDLE)
        with _lock:
            _release(self._alloc)
        self._valid = False

    def __del__(self):  # garbage collection frees, as in pycuda
        if getattr(self, "_valid", False):
            try:
                with _lock:
                    _release(self._alloc)
            except Exception:  # interpreter shutdown
                pass

    def __repr__(self):
        return f"<pycuda._driver.DeviceAllocation 0x{self._alloc.addr:x} ({self._alloc.size} bytes)>"


DeviceAllocation.__module__ = "pycuda._driver"


def mem_alloc(nbytes) -> DeviceAllocation:
    global _next_addr, _in_use
    ctx = require_context("cuMemAlloc")
    nbytes = operator.index(nbytes)
    if nbytes < 0:
        raise OverflowError("can't convert negative int to unsigned")
    if nbytes == 0:
        fail("cuMemAlloc", INVALID_VALUE)
    with _lock:
        if _in_use + nbytes > total_memory():
            fail("cuMemAlloc", OUT_OF_MEMORY, cls=MemoryError)
        alloc = _Alloc(_next_addr, nbytes, ctx)
        _next_addr += -(-nbytes // 512) * 512 + 4096
        _allocs[alloc.addr] = alloc
        bisect.insort(_starts, alloc.addr)
        _in_use += nbytes
    return DeviceAllocation(alloc)


def mem_get_info() -> tuple[int, int]:
    require_context("cuMemGetInfo")
    return total_memory() - _in_use, total_memory()


def devptr(value) -> int:
    """A device address from a DeviceAllocation or an int, as pycuda's argument conversion."""
    if isinstance(value, DeviceAllocation):
        return int(value)
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"a device pointer (DeviceAllocation or int) was expected, got {type(value).__name__}") from None


def device_view(addr: int, nbytes: int, routine: str, what: str = INVALID_VALUE) -> np.ndarray:
    """The bytes [addr, addr+nbytes) of one live allocation, as a writable uint8 view."""
    with _lock:
        i = bisect.bisect_right(_starts, addr) - 1
        if i >= 0:
            alloc = _allocs[_starts[i]]
            off = addr - alloc.addr
            if nbytes >= 0 and off + nbytes <= alloc.size:
                return alloc.buf[off: off + nbytes]
    fail(routine, what, f"[fake GPU] device range 0x{addr:x}+{nbytes} is not inside one live allocation")


# }}}

# {{{ page-locked host memory

_pinned: list[tuple[int, int, weakref.ref]] = []


def _pin(owner: np.ndarray) -> None:
    start = owner.__array_interface__["data"][0]
    with _lock:
        _pinned[:] = [p for p in _pinned if p[2]() is not None]
        _pinned.append((start, start + owner.nbytes, weakref.ref(owner)))


def is_pinned(start: int, nbytes: int) -> bool:
    with _lock:
        return any(s <= start and start + nbytes <= e and ref() is not None for s, e, ref in _pinned)


def _shape(shape) -> tuple[int, ...]:
    return (operator.index(shape),) if not isinstance(shape, (tuple, list)) else tuple(map(operator.index, shape))


def pagelocked_empty(shape, dtype, order: str = "C", mem_flags: int = 0) -> np.ndarray:
    require_context("cuMemHostAlloc")
    shape, dtype = _shape(shape), np.dtype(dtype)
    raw = np.empty(max(1, int(np.prod(shape, dtype=np.int64)) * dtype.itemsize), dtype=np.uint8)
    _pin(raw)
    return np.ndarray(shape, dtype=dtype, buffer=raw, order=order)


def register_host_memory(ary: np.ndarray, flags: int = 0) -> np.ndarray:
    require_context("cuMemHostRegister")
    if not isinstance(ary, np.ndarray) or not (ary.flags.c_contiguous or ary.flags.f_contiguous):
        raise TypeError("register_host_memory needs a contiguous numpy array")
    _pin(ary)
    return ary.view()


def host_bytes(obj, writable: bool) -> np.ndarray:
    """The raw bytes of a host buffer (buffer protocol, contiguous), as a uint8 view of it."""
    arr = obj if isinstance(obj, np.ndarray) else np.frombuffer(obj, dtype=np.uint8)
    if not (arr.flags.c_contiguous or arr.flags.f_contiguous):
        raise ValueError("ndarray is not contiguous")
    if writable and not arr.flags.writeable:
        raise ValueError("buffer source array is read-only")
    return arr.reshape(-1, order="A").view(np.uint8)


def require_pinned(raw: np.ndarray, routine: str) -> None:
    if raw.nbytes and not is_pinned(raw.__array_interface__["data"][0], raw.nbytes):
        fail(routine, INVALID_VALUE,
             "[fake GPU, stricter than CUDA] the host buffer is not page-locked: CUDA would silently do "
             "this copy synchronously; use pagelocked_empty()/register_host_memory() (a view of one is fine)")


# }}}

# {{{ streams and the work queue


class _Op:
    __slots__ = ("stream", "run", "what")

    def __init__(self, stream, run, what):
        self.stream, self.run, self.what = stream, run, what


_pending: list[_Op] = []
_streams: "weakref.WeakValueDictionary[int, Stream]" = weakref.WeakValueDictionary()


class Stream:
    def __init__(self, flags: int = 0):
        self._ctx = require_context_dependent()
        self._nonblocking = bool(flags & 1)
        self._handle = next(_handles)
        _streams[self._handle] = self

    @property
    def handle(self) -> int:
        return self._handle

    def synchronize(self) -> None:
        synchronize_stream(self)

    def is_done(self) -> bool:
        with _lock:
            return not any(op.stream is self for op in _pending)

    def __repr__(self):
        return f"<pycuda._driver.Stream 0x{self._handle:x}>"


Stream.__module__ = "pycuda._driver"


def stream_arg(stream, routine: str) -> "Stream | None":
    """pycuda's ``stream=`` argument: None (the default stream) or a Stream of the current context."""
    ctx = require_context(routine)
    if stream is None:
        return None
    if not isinstance(stream, Stream):
        raise TypeError(f"{routine}: stream must be a pycuda.driver.Stream or None, got {type(stream).__name__}")
    if stream._ctx is not ctx or not ctx._valid:
        fail(routine, INVALID_HANDLE)
    return stream


def stream_from_handle(handle: int) -> "tuple[bool, Stream | None]":
    """(known, stream) for a raw handle as TensorRT gets it; 0 is the default stream."""
    if handle == 0:
        return True, None
    stream = _streams.get(handle)
    return stream is not None, stream


def enqueue(stream: "Stream | None", run, what: str) -> _Op:
    op = _Op(stream, run, what)
    with _lock:
        _pending.append(op)
    return op


def _blocking(op: _Op) -> bool:
    return op.stream is None or not op.stream._nonblocking


def synchronize_stream(stream: "Stream | None", upto: _Op | None = None) -> None:
    """Run what ``stream`` has queued (up to ``upto``) and what that work waits for."""
    with _lock:
        if upto is not None:
            if upto not in _pending:
                return
            target = _pending.index(upto)
        else:
            mine = [i for i, op in enumerate(_pending) if op.stream is stream]
            if not mine:
                return
            target = mine[-1]
        if stream is None:  # the legacy default stream waits for all blocking streams
            barrier = target
        else:
            nulls = [i for i in range(target + 1) if _pending[i].stream is None]
            barrier = nulls[-1] if nulls else -1
        ops = [op for i, op in enumerate(_pending[: target + 1])
               if op.stream is stream or (i <= barrier and _blocking(op))]
        _run(ops)


def synchronize_default() -> None:
    """What a synchronous copy (on the default stream) waits for: all blocking streams' work."""
    with _lock:
        _run([op for op in _pending if _blocking(op)])


def synchronize_all() -> None:
    with _lock:
        _run(list(_pending))


def _run(ops: list[_Op]) -> None:
    for op in ops:
        _pending.remove(op)
    for op in ops:
        try:
            op.run()
        except Error:
            raise
        except Exception as exc:  # a failed kernel: the synchronisation reports it
            raise LaunchError(f"cuStreamSynchronize failed: unspecified launch failure - [fake GPU] "
                              f"{op.what}: {type(exc).__name__}: {exc}") from exc


class Event:
    def __init__(self, flags: int = 0):
        require_context_dependent()
        self._op: _Op | None = None
        self._time: float | None = None

    def record(self, stream=None) -> "Event":
        stream = stream_arg(stream, "cuEventRecord")
        self._time = None

        def stamp():
            self._time = time.perf_counter()

        self._op = enqueue(stream, stamp, "event record")
        return self

    def synchronize(self) -> "Event":
        if self._op is not None:
            synchronize_stream(self._op.stream, upto=self._op)
        return self

    def query(self) -> bool:
        with _lock:
            return self._op is None or self._op not in _pending

    def time_since(self, event: "Event") -> float:
        if self._time is None or event._time is None:
            fail("cuEventElapsedTime", NOT_READY, cls=RuntimeError)
        return (self._time - event._time) * 1000.0

    def time_till(self, event: "Event") -> float:
        return event.time_since(self)


Event.__module__ = "pycuda._driver"

# }}}

# {{{ copies


def memcpy_htod(dest, src) -> None:
    require_context("cuMemcpyHtoD")
    raw = host_bytes(src, writable=False)
    synchronize_default()
    device_view(devptr(dest), raw.nbytes, "cuMemcpyHtoD")[:] = raw


def memcpy_dtoh(dest, src) -> None:
    require_context("cuMemcpyDtoH")
    raw = host_bytes(dest, writable=True)
    synchronize_default()
    raw[:] = device_view(devptr(src), raw.nbytes, "cuMemcpyDtoH")


def memcpy_dtod(dest, src, size) -> None:
    require_context("cuMemcpyDtoD")
    synchronize_default()
    size = operator.index(size)
    device_view(devptr(dest), size, "cuMemcpyDtoD")[:] = device_view(devptr(src), size, "cuMemcpyDtoD").copy()


def memcpy_htod_async(dest, src, stream=None) -> None:
    routine = "cuMemcpyHtoDAsync"
    stream = stream_arg(stream, routine)
    raw = host_bytes(src, writable=False)
    require_pinned(raw, routine)
    addr = devptr(dest)
    device_view(addr, raw.nbytes, routine)  # checked now: CUDA validates the range when enqueuing
    enqueue(stream, lambda: device_view(addr, raw.nbytes, "cuStreamSynchronize", ILLEGAL_ADDRESS).__setitem__(
        slice(None), raw), f"memcpy_htod_async to 0x{addr:x}")


def memcpy_dtoh_async(dest, src, stream=None) -> None:
    routine = "cuMemcpyDtoHAsync"
    stream = stream_arg(stream, routine)
    raw = host_bytes(dest, writable=True)
    require_pinned(raw, routine)
    addr = devptr(src)
    device_view(addr, raw.nbytes, routine)
    enqueue(stream, lambda: raw.__setitem__(slice(None), device_view(
        addr, raw.nbytes, "cuStreamSynchronize", ILLEGAL_ADDRESS)), f"memcpy_dtoh_async from 0x{addr:x}")


def memcpy_dtod_async(dest, src, size, stream=None) -> None:
    routine = "cuMemcpyDtoDAsync"
    stream = stream_arg(stream, routine)
    d, s, size = devptr(dest), devptr(src), operator.index(size)
    device_view(d, size, routine), device_view(s, size, routine)

    def copy():
        data = device_view(s, size, "cuStreamSynchronize", ILLEGAL_ADDRESS).copy()
        device_view(d, size, "cuStreamSynchronize", ILLEGAL_ADDRESS)[:] = data

    enqueue(stream, copy, f"memcpy_dtod_async 0x{s:x} -> 0x{d:x}")


def memset_d8(dest, data: int, count: int) -> None:
    require_context("cuMemsetD8")
    synchronize_default()
    device_view(devptr(dest), operator.index(count), "cuMemsetD8")[:] = data & 0xFF


def memset_d32(dest, data: int, count: int) -> None:
    require_context("cuMemsetD32")
    synchronize_default()
    view = device_view(devptr(dest), 4 * operator.index(count), "cuMemsetD32")
    view.view(np.uint32)[:] = data & 0xFFFFFFFF


# }}}
