"""A fake of TensorRT 10's Python API (``import tensorrt as trt``) for tests on a box without a GPU:
the subset an ONNX engine builder and an engine runner use, following NVIDIA's Python API docs
(docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api) and the binding source
(NVIDIA/TensorRT python/src/infer/pyCore.cpp, python/packaging/.../tensorrt/__init__.py).
The network runs on the CPU with onnxruntime, reading and writing the simulated device memory of
tests/gpu/fakes/_fakecuda.py (what the fake pycuda allocates).

Faithful:
- Logger/ILogger (``Logger.Severity``, ``Logger.WARNING``...). Errors go through the logger given to
  Builder/Runtime/OnnxParser; ``trt.Logger`` prints like the real one, to stdout
  ("[MM/DD/YYYY-HH:MM:SS] [TRT] [E] ..."). An ILogger or IOutputAllocator subclass that does not call
  the base ``__init__`` fails on construction (TypeError), as pybind11 makes it.
- ``Builder(logger)``: ``create_network(0)`` (EXPLICIT_BATCH is deprecated and ignored in TRT 10),
  ``create_builder_config``, ``create_optimization_profile``, ``build_serialized_network`` -> IHostMemory
  or None with the error logged: no output; a dynamic input (-1) and no profile; an input missing from
  a profile; a profile rank or static dimension that disagrees with the network.
- ``IOptimizationProfile.set_shape`` raises RuntimeError ("Shape provided for opt is inconsistent with
  other shapes.") when min <= opt <= max or the rank breaks, as the binding does; an incomplete
  profile is falsy and ``add_optimization_profile`` returns -1 for it.
- ``OnnxParser``: ``parse``/``parse_from_file`` -> bool, ``num_errors``, ``get_error(i).desc()``,
  ``clear_errors``; the network's inputs/outputs (``ITensor`` name/shape/dtype; symbolic dims are -1).
- ``IHostMemory``: buffer protocol (``bytes(x)``, ``f.write(x)``, ``np.frombuffer``), ``nbytes``,
  ``dtype``; like the real one it has no ``len()``, indexing or bytes methods.
- ``Runtime.deserialize_cuda_engine`` -> None + logged error for garbage, for a plan from another
  TensorRT version (``__version__``) or for another compute capability; a warning for another GPU model
  with the same compute capability.
- ``ICudaEngine``/``IExecutionContext`` with named tensors (``set_input_shape`` -> False outside the
  active profile, wrong rank or a static dim changed; ``set_tensor_address`` -> False for an unknown name
  or an address not 256-byte aligned; ``infer_shapes``; ``execute_async_v3`` -> False + logged error
  when an input shape or address is missing or an output has neither address nor allocator).
- ``execute_async_v3`` enqueues the work on the stream: the network reads its inputs and writes its
  outputs when the stream runs (at a synchronisation), so results are there only after it. An output
  with an IOutputAllocator gets ``reallocate_output_async`` (if the subclass defines it, else
  ``reallocate_output``) with the address set by ``set_tensor_address`` (or 0) and a positive size, then
  ``notify_shape`` -- both before ``execute_async_v3`` returns, as documented ("Called by TensorRT
  sometime between when it calls reallocateOutput and enqueueV3 returns"). For a data-dependent output
  TensorRT must run the network to know the size, so the fake first synchronises the stream (as TensorRT
  does) and runs it then; the output bytes are still written in stream order.

Not faithful / simplifications:
- Computation is FP32 on the CPU (onnxruntime) whatever the builder flags say; BuilderFlag.FP16 is
  recorded in the plan and nothing else. I/O dtypes are the ONNX model's (or what ``ITensor.dtype`` was
  set to; the fake casts).
- The plan is the fake's own format (magic + JSON header + the ONNX bytes): it records the tensors,
  dtypes, profiles, flags, the TensorRT version and the GPU (name, compute capability) it was built on.
  Version compatibility is exact-match on ``__version__``.
- Data-dependent outputs: an output dimension is data-dependent when it is symbolic in the ONNX model
  and its symbol names no input dimension (e.g. Piper's audio length, Silero's speech_probs). Such
  an output reports -1 there and needs an IOutputAllocator (an address alone is refused). Other symbolic
  output dims take the value of the same-named input dim. Where real TensorRT can infer more (Silero's
  speech_probs follows the batch), the fake is the stricter one: what runs here runs there.
- ``execute_async_v3`` needs a CUDA context current in the calling thread, and a stream of that context
  (handle 0 = its default stream); otherwise False + "Cuda Runtime (invalid resource handle)".
- An exception raised in an allocator callback is printed to stderr and taken as nullptr (execution
  fails), as the binding does; one in ``notify_shape`` is printed and ignored.
- Like TensorRT, a second Builder/Runtime with a different logger gets an INFO line ("The logger passed
  into createInferRuntime differs from one already provided..."); each object still logs to its own.
- No layer API, plugins, INT8 calibration, timing caches, refit, CUDA graphs, DLA or execute_v2.

Knob: FAKE_TRT_VERSION (``__version__``, default "10.7.0"), read at import like the real version.
The GPU identity comes from the simulated device (FAKE_CUDA_DEVICE, FAKE_CUDA_CC), read when used.
"""

from __future__ import annotations

import enum
import json
import operator
import os
import struct
import sys
import time
import warnings

import numpy as np

import _fakecuda as _cu

__version__ = os.environ.get("FAKE_TRT_VERSION", "10.7.0")


# {{{ enums (pybind11 enums: plain ones compare by identity, py::arithmetic ones like ints)


class _Enum(enum.Enum):
    def __int__(self):
        return self.value

    __index__ = __int__

    def __str__(self):
        return f"{type(self).__name__}.{self.name}"

    def __repr__(self):
        return f"<{type(self).__name__}.{self.name}: {self.value}>"


class _IntEnum(enum.IntEnum):
    def __str__(self):
        return f"{type(self).__name__}.{self.name}"

    def __repr__(self):
        return f"<{type(self).__name__}.{self.name}: {self.value}>"


class DataType(_Enum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    FP8 = 6
    BF16 = 7
    INT64 = 8
    INT4 = 9
    FP4 = 10

    @property
    def itemsize(self):
        return {0: 4, 1: 2, 2: 1, 3: 4, 4: 1, 5: 1, 6: 1, 7: 2, 8: 8, 9: 0.5, 10: 0.5}[self.value]


class TensorIOMode(_Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class TensorLocation(_Enum):
    DEVICE = 0
    HOST = 1


class MemoryPoolType(_Enum):
    WORKSPACE = 0
    DLA_MANAGED_SRAM = 1
    DLA_LOCAL_DRAM = 2
    DLA_GLOBAL_DRAM = 3
    TACTIC_DRAM = 4
    TACTIC_SHARED_MEMORY = 5


class ExecutionContextAllocationStrategy(_Enum):
    STATIC = 0
    ON_PROFILE_CHANGE = 1
    USER_MANAGED = 2


class BuilderFlag(_IntEnum):
    FP16 = 0
    INT8 = 1
    DEBUG = 2
    GPU_FALLBACK = 3
    REFIT = 4
    DISABLE_TIMING_CACHE = 5
    TF32 = 6
    SPARSE_WEIGHTS = 7
    SAFETY_SCOPE = 8
    OBEY_PRECISION_CONSTRAINTS = 9
    PREFER_PRECISION_CONSTRAINTS = 10
    DIRECT_IO = 11
    REJECT_EMPTY_ALGORITHMS = 12
    VERSION_COMPATIBLE = 13
    EXCLUDE_LEAN_RUNTIME = 14
    FP8 = 15
    ERROR_ON_TIMING_CACHE_MISS = 16
    BF16 = 17
    DISABLE_COMPILATION_CACHE = 18
    STRIP_PLAN = 19
    REFIT_IDENTICAL = 20
    WEIGHT_STREAMING = 21
    INT4 = 22


class NetworkDefinitionCreationFlag(_IntEnum):
    EXPLICIT_BATCH = 0  # deprecated in TensorRT 10: ignored, networks are always explicit batch
    STRONGLY_TYPED = 1


class ProfilingVerbosity(_Enum):
    LAYER_NAMES_ONLY = 0
    NONE = 1
    DETAILED = 2


class ErrorCode(_Enum):
    """The ONNX parser's error codes (``IParserError.code()``)."""
    SUCCESS = 0
    INTERNAL_ERROR = 1
    MEM_ALLOC_FAILED = 2
    MODEL_DESERIALIZE_FAILED = 3
    INVALID_VALUE = 4
    INVALID_GRAPH = 5
    INVALID_NODE = 6
    UNSUPPORTED_GRAPH = 7
    UNSUPPORTED_NODE = 8
    UNSUPPORTED_NODE_ATTR = 9
    UNSUPPORTED_NODE_INPUT = 10
    UNSUPPORTED_NODE_DATATYPE = 11
    UNSUPPORTED_NODE_DYNAMIC = 12
    UNSUPPORTED_NODE_SHAPE = 13
    REFIT_FAILED = 14


_NPTYPES = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
            DataType.INT32: np.int32, DataType.INT64: np.int64, DataType.BOOL: np.bool_,
            DataType.UINT8: np.uint8}


def nptype(trt_type):
    """Returns the numpy-equivalent of a TensorRT DataType (TypeError where there is none)."""
    if trt_type in _NPTYPES:
        return _NPTYPES[trt_type]
    raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")


def volume(iterable):
    """Computes the volume of an iterable (1 for an empty one: a scalar's shape)."""
    vol = 1
    for elem in iterable:
        vol *= elem
    return vol


# }}}

# {{{ Dims


def _dims_arg(value) -> tuple[int, ...]:
    """What pybind11 accepts where TensorRT wants a Dims: a Dims or a sequence of ints."""
    if isinstance(value, Dims):
        return tuple(value._d)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"incompatible function arguments: a Dims or a sequence of int was expected, "
                        f"got {type(value).__name__}")
    try:
        dims = tuple(operator.index(x) for x in value)
    except TypeError:
        raise TypeError(f"incompatible function arguments: Dims elements must be int, got {value!r}") from None
    if len(dims) > Dims.MAX_DIMS:
        raise ValueError(f"Input length {len(dims)}. Max expected length is {Dims.MAX_DIMS}")
    return dims


class Dims:
    """A shape: len(), indexing, slicing (-> tuple), iteration, == with a Dims, tuple or list."""
    MAX_DIMS = 8

    def __init__(self, shape=()):
        self._d = list(_dims_arg(shape))
        self._nb = len(self._d)

    @classmethod
    def _invalid(cls) -> "Dims":  # Dims{-1, {}}: what the C++ API returns for an unknown name
        dims = cls()
        dims._nb = -1
        return dims

    def __len__(self):
        return self._nb  # -1 for an invalid Dims: len() raises ValueError, as with the real one

    def __iter__(self):
        return iter(self._d)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return tuple(self._d[index])
        index = operator.index(index)
        if not -len(self._d) <= index < len(self._d):
            raise IndexError("Out of bounds")
        return self._d[index]

    def __setitem__(self, index, value):
        index = operator.index(index)
        if not -len(self._d) <= index < len(self._d):
            raise IndexError("Out of bounds")
        self._d[index] = operator.index(value)

    def __eq__(self, other):
        if isinstance(other, Dims):
            return other._nb == self._nb and other._d == self._d
        if isinstance(other, (tuple, list)):
            try:
                return [operator.index(x) for x in other] == self._d and self._nb >= 0
            except TypeError:
                return False
        return NotImplemented

    __hash__ = None

    def __repr__(self):
        return repr(tuple(self._d))

    __str__ = __repr__


# }}}

# {{{ loggers, base classes implemented in Python


class _Trampoline(type):
    """pybind11's rule for Python subclasses of a C++ interface: the base __init__ must run."""

    def __call__(cls, *args, **kwargs):
        obj = super().__call__(*args, **kwargs)
        if not getattr(obj, "_trt_base_init", False):
            raise TypeError(f"tensorrt.tensorrt.{cls._trt_base}.__init__() must be called when overriding __init__")
        return obj


def _deprecated_enter(self):
    warnings.warn("Context managers for TensorRT types are deprecated. Memory will be freed automatically "
                  "when the reference count reaches 0.", DeprecationWarning, stacklevel=2)
    return self


def _noop_exit(self, exc_type, exc_value, traceback):
    pass


class ILogger(metaclass=_Trampoline):
    _trt_base = "ILogger"

    class Severity(_IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    def __init__(self):
        self._trt_base_init = True

    def log(self, severity, msg):
        raise RuntimeError('Tried to call pure virtual function "ILogger::log"')

    __enter__, __exit__ = _deprecated_enter, _noop_exit


for _sev in ILogger.Severity:
    setattr(ILogger, _sev.name, _sev)

_LETTER = {0: "F", 1: "E", 2: "W", 3: "I", 4: "V"}


class Logger(ILogger):
    _trt_base = "Logger"

    def __init__(self, min_severity=ILogger.Severity.WARNING):
        super().__init__()
        self.min_severity = min_severity

    def log(self, severity, msg):
        if severity > self.min_severity:
            return
        stamp = time.strftime("%m/%d/%Y-%H:%M:%S")
        sys.stdout.write(f"[{stamp}] [TRT] [{_LETTER[int(severity)]}] {msg}\n")
        sys.stdout.flush()


Logger.Severity = ILogger.Severity
_ERROR, _WARNING, _INFO = ILogger.Severity.ERROR, ILogger.Severity.WARNING, ILogger.Severity.INFO


def _fmt(dims) -> str:
    return "[" + ",".join(str(d) for d in dims) + "]"


def _emit(logger, severity, msg: str) -> None:
    try:
        logger.log(severity, msg)
    except Exception as exc:  # the binding reports and swallows a failing Python logger
        sys.stderr.write(f"[ERROR] Exception caught in log(): {exc}\n")


_global_logger = None


def _adopt_logger(logger, api: str):
    global _global_logger
    if not isinstance(logger, ILogger):
        raise TypeError(f"{api}(): incompatible constructor arguments: logger must be a tensorrt.ILogger, "
                        f"got {type(logger).__name__}")
    if _global_logger is None:
        _global_logger = logger
    elif _global_logger is not logger:
        _emit(logger, _INFO, f"The logger passed into {api} differs from one already provided for an existing "
                               "builder, runtime, or refitter. Uses of the global logger, returned by "
                               "nvinfer1::getLogger(), will return the existing value.")
    return logger


def init_libnvinfer_plugins(logger, namespace: str) -> bool:
    return True


class IOutputAllocator(metaclass=_Trampoline):
    """Subclass it; call ``trt.IOutputAllocator.__init__(self)``; define ``reallocate_output`` and/or
    ``reallocate_output_async`` (preferred when defined) and ``notify_shape``."""
    _trt_base = "IOutputAllocator"

    def __init__(self):
        self._trt_base_init = True

    def reallocate_output(self, tensor_name, memory, size, alignment):
        return None

    def reallocate_output_async(self, tensor_name, memory, size, alignment, stream):
        return self.reallocate_output(tensor_name, memory, size, alignment)

    def notify_shape(self, tensor_name, shape):
        raise RuntimeError('Tried to call pure virtual function "IOutputAllocator::notify_shape"')


# }}}

# {{{ network definition and the ONNX parser

_ORT_TYPES = {"tensor(float)": DataType.FLOAT, "tensor(float16)": DataType.HALF, "tensor(int8)": DataType.INT8,
              "tensor(int32)": DataType.INT32, "tensor(int64)": DataType.INT64, "tensor(bool)": DataType.BOOL,
              "tensor(uint8)": DataType.UINT8}


def _session(model: bytes):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def _buffer_bytes(obj, api: str) -> bytes:
    try:
        return memoryview(obj).tobytes()
    except TypeError:
        raise TypeError(f"{api}(): incompatible function arguments: a buffer (bytes, IHostMemory...) was "
                        f"expected, got {type(obj).__name__}") from None


class ITensor:
    def __init__(self, name, shape, dtype, is_input, symbols):
        self._name, self._shape, self._dtype, self._is_input = name, tuple(shape), dtype, is_input
        self._onnx_shape, self._onnx_dtype, self._symbols = tuple(shape), dtype, tuple(symbols)

    @property
    def name(self) -> str:
        return self._name

    @property
    def shape(self) -> Dims:
        return Dims(self._shape)

    @shape.setter
    def shape(self, value):
        dims = _dims_arg(value)
        if not self._is_input or len(dims) != len(self._onnx_shape) or any(
                o >= 0 and d != o for d, o in zip(dims, self._onnx_shape)):
            raise NotImplementedError(f"[fake TensorRT] only a network input's -1 dims may be fixed: "
                                      f"{self._name} {self._onnx_shape} -> {dims}")
        self._shape = dims

    @property
    def dtype(self) -> DataType:
        return self._dtype

    @dtype.setter
    def dtype(self, value):
        if not isinstance(value, DataType):
            raise TypeError("dtype must be a tensorrt.DataType")
        nptype(value)  # the fake casts I/O with numpy
        self._dtype = value

    @property
    def is_network_input(self):
        return self._is_input

    @property
    def is_network_output(self):
        return not self._is_input

    @property
    def location(self):
        return TensorLocation.DEVICE

    def __repr__(self):
        return f"<tensorrt.ITensor {self._name} {self._shape} {self._dtype}>"


class INetworkDefinition:
    """Filled by OnnxParser only (no layer API in the fake)."""

    def __init__(self, flags: int):
        self._flags = flags
        self._inputs: list[ITensor] = []
        self._outputs: list[ITensor] = []
        self._onnx: bytes | None = None
        self.name = "Unnamed Network 0"

    num_inputs = property(lambda self: len(self._inputs))
    num_outputs = property(lambda self: len(self._outputs))
    num_layers = property(lambda self: 0)
    has_implicit_batch_dimension = property(lambda self: False)
    flags = property(lambda self: self._flags)

    def get_flag(self, flag) -> bool:
        return (self._flags >> int(flag)) & 1 == 1

    def get_input(self, index):
        index = operator.index(index)
        return self._inputs[index] if 0 <= index < len(self._inputs) else None

    def get_output(self, index):
        index = operator.index(index)
        return self._outputs[index] if 0 <= index < len(self._outputs) else None

    __enter__, __exit__ = _deprecated_enter, _noop_exit


class IParserError:
    def __init__(self, code: ErrorCode, desc: str, func: str):
        self._code, self._desc, self._func = code, desc, func

    def code(self):
        return self._code

    def desc(self):
        return self._desc

    def file(self):
        return "ModelImporter.cpp"

    def line(self):
        return -1

    def func(self):
        return self._func

    def node(self):
        return -1

    def node_name(self):
        return ""

    def node_operator(self):
        return ""

    def local_function_stack(self):
        return []

    def local_function_stack_size(self):
        return 0

    def __str__(self):
        return f"In node -1 with name:  and operator:  ({self._func}): {self._code.name}: {self._desc}"


class OnnxParser:
    def __init__(self, network, logger):
        if not isinstance(network, INetworkDefinition) or not isinstance(logger, ILogger):
            raise TypeError("OnnxParser(): incompatible constructor arguments: (network: INetworkDefinition, "
                            "logger: ILogger)")
        self._network, self._logger, self._errors = network, logger, []

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, index):
        index = operator.index(index)
        return self._errors[index] if 0 <= index < len(self._errors) else None

    def clear_errors(self) -> None:
        self._errors.clear()

    def _fail(self, code: ErrorCode, desc: str, func: str) -> bool:
        self._errors.append(IParserError(code, desc, func))
        _emit(self._logger, _ERROR, f"ModelImporter.cpp: {desc}")
        return False

    def parse(self, model, path: str | None = None) -> bool:
        return self._parse(_buffer_bytes(model, "parse"), "parse")

    def parse_from_file(self, model: str) -> bool:
        if not isinstance(model, str):
            raise TypeError("parse_from_file(): incompatible function arguments: model must be a str path")
        try:
            with open(model, "rb") as f:
                data = f.read()
        except OSError as exc:
            return self._fail(ErrorCode.MODEL_DESERIALIZE_FAILED,
                              f"Failed to parse ONNX model from file: {model} ({exc.strerror})", "parseFromFile")
        return self._parse(data, "parseFromFile")

    def _parse(self, data: bytes, func: str) -> bool:
        net = self._network
        if net._onnx is not None:
            return self._fail(ErrorCode.INVALID_GRAPH, "[fake TensorRT] this network already holds a parsed "
                                                       "model; parse into a fresh network", func)
        try:
            sess = _session(data)
        except Exception as exc:
            return self._fail(ErrorCode.MODEL_DESERIALIZE_FAILED, "Failed to parse ONNX model: the bytes are not a "
                              f"valid ONNX ModelProto ({str(exc).splitlines()[0][:200]})", func)
        tensors = []
        for args, is_input in ((sess.get_inputs(), True), (sess.get_outputs(), False)):
            for arg in args:
                dtype = _ORT_TYPES.get(arg.type)
                if dtype is None:
                    return self._fail(ErrorCode.UNSUPPORTED_NODE_DATATYPE,
                                      f"{arg.name}: unsupported data type {arg.type}", func)
                shape = tuple(d if isinstance(d, int) else -1 for d in arg.shape)
                symbols = tuple(d if isinstance(d, str) else None for d in arg.shape)
                tensors.append(ITensor(arg.name, shape, dtype, is_input, symbols))
        net._inputs = [t for t in tensors if t._is_input]
        net._outputs = [t for t in tensors if not t._is_input]
        net._onnx = data
        return True

    __enter__, __exit__ = _deprecated_enter, _noop_exit


# }}}

# {{{ builder


class IOptimizationProfile:
    def __init__(self, logger):
        self._logger = logger
        self._dims: dict[str, list] = {}  # input -> [min, opt, max], each a tuple or None
        self.extra_memory_target = 1.0

    def _set_dimensions(self, name: str, sel: int, dims: tuple[int, ...]) -> bool:
        def bad(condition):
            _emit(self._logger, _ERROR, "IOptimizationProfile::setDimensions: Error Code 3: API Usage Error "
                                       f"(Parameter check failed, condition: {condition}. input {name})")
            return False

        if any(d < 0 for d in dims):
            return bad("std::all_of(dims.d, dims.d + dims.nbDims, [](int64_t x) noexcept { return x >= 0; })")
        slots = self._dims.setdefault(name, [None, None, None])
        for other_sel, other in enumerate(slots):
            if other is None or other_sel == sel:
                continue
            if len(other) != len(dims):
                return bad(f"dims.nbDims == {len(other)} (the rank set for the other selectors)")
            lo, hi = (other, dims) if other_sel < sel else (dims, other)
            if any(a > b for a, b in zip(lo, hi)):
                return bad(f"MIN <= OPT <= MAX, got {_fmt(lo)} vs {_fmt(hi)}")
        slots[sel] = dims
        return True

    def set_shape(self, input: str, min, opt, max) -> None:
        for sel, value, label in ((0, min, "min"), (1, opt, "opt"), (2, max, "max")):
            if not self._set_dimensions(input, sel, _dims_arg(value)):
                raise RuntimeError(f"Shape provided for {label} is inconsistent with other shapes.")

    def get_shape(self, input: str) -> list:
        slots = self._dims.get(input)
        if not slots or slots[0] is None:
            return []
        return [Dims(s) if s is not None else Dims._invalid() for s in slots]

    def __bool__(self):  # IOptimizationProfile::isValid
        return all(None not in slots for slots in self._dims.values())


class IBuilderConfig:
    def __init__(self, builder: "Builder"):
        self._builder = builder
        self.reset()

    def reset(self) -> None:
        self._flags = 1 << BuilderFlag.TF32  # "TF32 ... Enabled by default."
        self._pools: dict[MemoryPoolType, int] = {}
        self._profiles: list[IOptimizationProfile] = []
        self.builder_optimization_level = 3
        self.profiling_verbosity = ProfilingVerbosity.LAYER_NAMES_ONLY
        self.avg_timing_iterations = 1
        self.max_aux_streams = -1

    @property
    def flags(self) -> int:
        return self._flags

    @flags.setter
    def flags(self, value: int):
        self._flags = operator.index(value)

    @staticmethod
    def _flag(flag) -> int:
        if not isinstance(flag, BuilderFlag):
            raise TypeError(f"incompatible function arguments: flag must be a tensorrt.BuilderFlag, got {flag!r}")
        return int(flag)

    def set_flag(self, flag) -> None:
        self._flags |= 1 << self._flag(flag)

    def clear_flag(self, flag) -> None:
        self._flags &= ~(1 << self._flag(flag))

    def get_flag(self, flag) -> bool:
        return (self._flags >> self._flag(flag)) & 1 == 1

    def set_memory_pool_limit(self, pool, pool_size: int) -> None:
        if not isinstance(pool, MemoryPoolType):
            raise TypeError(f"incompatible function arguments: pool must be a tensorrt.MemoryPoolType, got {pool!r}")
        pool_size = operator.index(pool_size)
        if pool_size < 0:
            raise TypeError("incompatible function arguments: pool_size must be >= 0")
        self._pools[pool] = pool_size

    def get_memory_pool_limit(self, pool) -> int:
        default = _cu.total_memory() if pool is MemoryPoolType.WORKSPACE else 0
        return self._pools.get(pool, default)

    def add_optimization_profile(self, profile) -> int:
        if not isinstance(profile, IOptimizationProfile):
            raise TypeError("add_optimization_profile(): incompatible function arguments")
        if not profile:
            _emit(self._builder._logger, _ERROR, "IBuilderConfig::addOptimizationProfile: Error Code 3: API Usage "
                                                "Error (Parameter check failed, condition: profile->isValid().)")
            return -1
        self._profiles.append(profile)
        return len(self._profiles) - 1

    @property
    def num_optimization_profiles(self) -> int:
        return len(self._profiles)

    __enter__, __exit__ = _deprecated_enter, _noop_exit


_HOSTMEM_HIDDEN = frozenset(n for n in dir(bytes) if not n.startswith("__"))


class IHostMemory(bytes):
    """Library-owned bytes exposed through the buffer protocol (and nothing else of bytes)."""

    def __getattribute__(self, name):
        if name in _HOSTMEM_HIDDEN:
            raise AttributeError(f"'tensorrt.tensorrt.IHostMemory' object has no attribute '{name}'")
        return super().__getattribute__(name)

    def _no(self, *args):
        raise TypeError("'tensorrt.tensorrt.IHostMemory' object does not support this (no len(), indexing or "
                        "bytes operations): use nbytes, bytes(x) or memoryview(x)")

    __len__ = __getitem__ = __iter__ = __contains__ = __add__ = __mul__ = __rmul__ = __mod__ = _no
    __lt__ = __le__ = __gt__ = __ge__ = _no

    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other

    def __hash__(self):
        return id(self)

    def __bool__(self):
        return True

    @property
    def nbytes(self) -> int:
        return bytes.__len__(self)

    @property
    def dtype(self) -> DataType:
        return DataType.UINT8

    def __repr__(self):
        return f"<tensorrt.tensorrt.IHostMemory object ({self.nbytes} bytes)>"

    __str__ = __repr__

    __enter__, __exit__ = _deprecated_enter, _noop_exit


_MAGIC = b"FAKETRT\x00"


class Builder:
    def __init__(self, logger):
        self._logger = _adopt_logger(logger, "createInferBuilder")
        self.max_threads = 1

    logger = property(lambda self: self._logger)
    num_DLA_cores = property(lambda self: 0)

    @property
    def platform_has_fast_fp16(self) -> bool:
        cc = _cu.compute_capability()
        return cc >= (5, 3) and cc != (6, 1)

    @property
    def platform_has_tf32(self) -> bool:
        return _cu.compute_capability() >= (8, 0)

    @property
    def platform_has_fast_int8(self) -> bool:
        return _cu.compute_capability() >= (6, 1)

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        flags = operator.index(flags)
        if flags & (1 << NetworkDefinitionCreationFlag.EXPLICIT_BATCH):
            _emit(self._logger, _WARNING, "createNetworkV2: NetworkDefinitionCreationFlag::kEXPLICIT_BATCH is "
                                         "deprecated and has no effect (networks are always explicit batch).")
        return INetworkDefinition(flags)

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig(self)

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile(self._logger)

    def is_network_supported(self, network, config) -> bool:
        return isinstance(network, INetworkDefinition) and network._onnx is not None

    def build_serialized_network(self, network, config):
        if not isinstance(network, INetworkDefinition) or not isinstance(config, IBuilderConfig):
            raise TypeError("build_serialized_network(): incompatible function arguments: "
                            "(network: INetworkDefinition, config: IBuilderConfig)")
        header = self._plan(network, config)
        if header is None:
            return None
        text = json.dumps(header, sort_keys=True).encode()
        return IHostMemory(_MAGIC + struct.pack("<I", len(text)) + text + network._onnx)

    def build_engine_with_config(self, network, config):
        plan = self.build_serialized_network(network, config)
        return None if plan is None else Runtime(self._logger).deserialize_cuda_engine(plan)

    def _plan(self, network: INetworkDefinition, config: IBuilderConfig) -> dict | None:
        def err(msg):
            _emit(self._logger, _ERROR, f"Error Code 4: Internal Error ({msg})")

        if not network._outputs:
            return err("Network must have at least one output")
        dynamic = [t.name for t in network._inputs if any(d < 0 for d in t._shape)]
        if dynamic and not config._profiles:
            return err("Network has dynamic or shape inputs, but no optimization profile has been defined.")
        inputs = {t.name: t for t in network._inputs}
        profiles = []
        for p, profile in enumerate(config._profiles or [IOptimizationProfile(self._logger)]):
            for name in profile._dims:
                if name not in inputs:
                    _emit(self._logger, _WARNING, f"Optimization profile {p} has dimensions for {name}, which is not "
                                                 "an input of the network: ignored.")
            shapes = {}
            for name, t in inputs.items():
                got = profile._dims.get(name)
                if got is None:
                    if name in dynamic:
                        return err(f"{name}: dynamic input is missing dimensions in profile {p}.")
                    got = [t._shape] * 3
                mn, op, mx = got
                if len(mn) != len(t._shape):
                    return err(f"{name}: number of dimensions is {len(mn)} in profile {p} but {len(t._shape)} "
                               "in network definition.")
                for i, d in enumerate(t._shape):
                    if d >= 0 and not mn[i] == op[i] == mx[i] == d:
                        return err(f"{name}: for dimension number {i} in profile {p} does not match network "
                                   f"definition (got min={mn[i]}, opt={op[i]}, max={mx[i]}), expected "
                                   f"min=opt=max={d}).")
                    if not mn[i] <= op[i] <= mx[i]:
                        return err(f"{name}: dimension {i} in profile {p} violates min <= opt <= max.")
                shapes[name] = [list(mn), list(op), list(mx)]
            profiles.append(shapes)
        if config.get_flag(BuilderFlag.FP16) and not self.platform_has_fast_fp16:
            _emit(self._logger, _WARNING, "Half2 support requested on hardware without native FP16 support, "
                                         "performance will be negatively affected.")
        major, minor = _cu.compute_capability()
        tensors = [{"name": t.name, "mode": "INPUT" if t._is_input else "OUTPUT", "dtype": t._dtype.name,
                    "onnx_dtype": t._onnx_dtype.name, "shape": list(t._shape), "symbols": list(t._symbols)}
                   for t in network._inputs + network._outputs]
        return {"trt_version": __version__, "device": _cu.device_name(), "cc": f"{major}.{minor}",
                "flags": config.flags, "fp16": config.get_flag(BuilderFlag.FP16),
                "strongly_typed": network.get_flag(NetworkDefinitionCreationFlag.STRONGLY_TYPED),
                "name": network.name, "tensors": tensors, "profiles": profiles}

    __enter__, __exit__ = _deprecated_enter, _noop_exit


# }}}

# {{{ runtime and engine


class Runtime:
    def __init__(self, logger):
        self._logger = _adopt_logger(logger, "createInferRuntime")
        self.max_threads = 1
        self.DLA_core = -1

    logger = property(lambda self: self._logger)
    num_DLA_cores = property(lambda self: 0)

    def deserialize_cuda_engine(self, serialized_engine):
        data = _buffer_bytes(serialized_engine, "deserialize_cuda_engine")

        def serialization_error(msg):
            _emit(self._logger, _ERROR, f"IRuntime::deserializeCudaEngine: Error Code 1: Serialization ({msg})")

        if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 4:
            return serialization_error(
                "Serialization assertion plan->header.magicTag == rt::kPLAN_MAGIC_TAG failed.Trying to load an "
                "engine created with incompatible serialization version. Check that the engine was not created "
                "using safety runtime, same OS was used and version compatibility parameters were set accordingly.")
        (size,) = struct.unpack_from("<I", data, len(_MAGIC))
        start = len(_MAGIC) + 4
        try:
            header = json.loads(data[start: start + size])
            onnx = data[start + size:]
        except ValueError:
            return serialization_error("Serialization assertion header.valid() failed.Corrupt plan.")
        if header.get("trt_version") != __version__:
            return serialization_error(
                "Serialization assertion stdVersionRead == kSERIALIZATION_VERSION failed.Version tag does not match. "
                f"Note: Current Version: {__version__}, Serialized Engine Version: {header.get('trt_version')}")
        major, minor = _cu.compute_capability()
        if header["cc"] != f"{major}.{minor}":
            _emit(self._logger, _ERROR, "IRuntime::deserializeCudaEngine: Error Code 6: The engine plan file is "
                                        f"generated on an incompatible device, expecting compute {header['cc']} got "
                                        f"compute {major}.{minor}, please rebuild.")
            return None
        if header["device"] != _cu.device_name():
            _emit(self._logger, _WARNING, "Using an engine plan file across different models of devices is not "
                                         "recommended and is likely to affect performance or even cause errors.")
        try:
            session = _session(onnx)
        except Exception:
            return serialization_error("Serialization assertion weights.valid() failed.Corrupt plan.")
        return ICudaEngine(header, session, data, self._logger)

    __enter__, __exit__ = _deprecated_enter, _noop_exit


class _Tensor:
    def __init__(self, entry: dict, input_symbols: set):
        self.name = entry["name"]
        self.mode = TensorIOMode[entry["mode"]]
        self.dtype, self.onnx_dtype = DataType[entry["dtype"]], DataType[entry["onnx_dtype"]]
        self.shape, self.symbols = tuple(entry["shape"]), tuple(entry["symbols"])
        self.dds = self.mode is TensorIOMode.OUTPUT and any(
            d < 0 and (s is None or s not in input_symbols) for d, s in zip(self.shape, self.symbols))


class ICudaEngine:
    def __init__(self, header: dict, session, plan: bytes, logger):
        self._header, self._session, self._plan, self._logger = header, session, plan, logger
        input_symbols = {s for e in header["tensors"] if e["mode"] == "INPUT" for s in e["symbols"] if s}
        self._tensors = {e["name"]: _Tensor(e, input_symbols) for e in header["tensors"]}
        self._order = [e["name"] for e in header["tensors"]]
        self._profiles = [{n: tuple(tuple(s) for s in v) for n, v in p.items()} for p in header["profiles"]]

    name = property(lambda self: self._header["name"])
    num_io_tensors = property(lambda self: len(self._order))
    num_optimization_profiles = property(lambda self: len(self._profiles))
    num_layers = property(lambda self: 0)
    device_memory_size = property(lambda self: 0)
    refittable = property(lambda self: False)
    has_implicit_batch_dimension = property(lambda self: False)

    def _inputs(self):
        return [t for t in self._tensors.values() if t.mode is TensorIOMode.INPUT]

    def _outputs(self):
        return [t for t in self._tensors.values() if t.mode is TensorIOMode.OUTPUT]

    def get_tensor_name(self, index):
        index = operator.index(index)
        return self._order[index] if 0 <= index < len(self._order) else None

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        t = self._tensors.get(name)
        return t.mode if t else TensorIOMode.NONE

    def get_tensor_dtype(self, name: str) -> DataType:
        t = self._tensors.get(name)
        return t.dtype if t else DataType.FLOAT

    def get_tensor_shape(self, name: str) -> Dims:
        t = self._tensors.get(name)
        return Dims(t.shape) if t else Dims._invalid()

    def get_tensor_location(self, name: str) -> TensorLocation:
        return TensorLocation.DEVICE

    def is_shape_inference_io(self, name: str) -> bool:
        return False

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list:
        t = self._tensors.get(name)
        profile_index = operator.index(profile_index)
        if t is None or t.mode is not TensorIOMode.INPUT or not 0 <= profile_index < len(self._profiles):
            _emit(self._logger, _ERROR, "ICudaEngine::getProfileShape: Error Code 3: API Usage Error (Parameter "
                                       f"check failed, condition: {name} is an input and profile index "
                                       f"{profile_index} is in [0, {len(self._profiles)}).)")
            return [Dims._invalid()] * 3
        return [Dims(s) for s in self._profiles[profile_index][name]]

    def create_execution_context(self, strategy=ExecutionContextAllocationStrategy.STATIC):
        return IExecutionContext(self)

    def serialize(self) -> IHostMemory:
        return IHostMemory(self._plan)

    __enter__, __exit__ = _deprecated_enter, _noop_exit


# }}}

# {{{ execution context


class IExecutionContext:
    def __init__(self, engine: ICudaEngine):
        self._engine, self._logger = engine, engine._logger
        self._profile = 0
        self._shapes: dict[str, tuple] = {}
        self._addrs: dict[str, int] = {}
        self._allocators: dict[str, IOutputAllocator] = {}
        self.name = ""
        self.debug_sync = False

    engine = property(lambda self: self._engine)
    active_optimization_profile = property(lambda self: self._profile)

    def _err(self, api: str, msg: str, code: str = "3: API Usage Error") -> bool:
        _emit(self._logger, _ERROR, f"IExecutionContext::{api}: Error Code {code} ({msg})")
        return False

    def set_optimization_profile_async(self, profile_index: int, stream_handle: int) -> bool:
        profile_index = operator.index(profile_index)
        if not 0 <= profile_index < self._engine.num_optimization_profiles:
            self._err("setOptimizationProfileAsync", "Parameter check failed, condition: profileIndex >= 0 && "
                      f"profileIndex < mEngine.getNbOptimizationProfiles() ({profile_index}).")
            raise RuntimeError("Error in set optimization profile async.")
        self._profile = profile_index
        self._shapes.clear()  # input shapes have to be set again for the new profile
        return True

    def set_input_shape(self, name: str, shape) -> bool:
        dims = _dims_arg(shape)
        t = self._engine._tensors.get(name)
        if t is None or t.mode is not TensorIOMode.INPUT:
            return self._err("setInputShape", f"Parameter check failed, condition: {name} is an input tensor.")
        if len(dims) != len(t.shape):
            return self._err("setInputShape", f"Parameter check failed, condition: engineDims.nbDims == "
                             f"dimensions.nbDims. Tensor {name} has {len(t.shape)} dimensions, got {_fmt(dims)}.")
        if any(e >= 0 and d != e for d, e in zip(dims, t.shape)):
            return self._err("setInputShape", f"Static dimension mismatch while setting input shape for {name}. "
                             f"Set dimensions are {_fmt(dims)}. Expected dimensions are {_fmt(t.shape)}.")
        lo, _, hi = self._engine._profiles[self._profile][name]
        if not all(a <= d <= b for a, d, b in zip(lo, dims, hi)):
            return self._err("setInputShape", f"Parameter check failed, condition: satisfyProfile. Set dimension "
                             f"{_fmt(dims)} for tensor {name} does not satisfy any optimization profiles. Valid "
                             f"range for profile {self._profile}: {_fmt(lo)}..{_fmt(hi)}.")
        self._shapes[name] = dims
        return True

    def infer_shapes(self) -> list:
        return [t.name for t in self._engine._inputs() if any(d < 0 for d in t.shape) and t.name not in self._shapes]

    def _output_shape(self, t: _Tensor) -> tuple[int, ...]:
        values = None
        if not self.infer_shapes():
            values = {}
            for i in self._engine._inputs():
                for sym, d in zip(i.symbols, self._shapes.get(i.name, i.shape)):
                    if sym is not None:
                        values.setdefault(sym, d)
        return tuple(d if d >= 0 else (values.get(s, -1) if values is not None and s else -1)
                     for d, s in zip(t.shape, t.symbols))

    def get_tensor_shape(self, name: str) -> Dims:
        t = self._engine._tensors.get(name)
        if t is None:
            return Dims._invalid()
        if t.mode is TensorIOMode.INPUT:
            return Dims(self._shapes.get(name, t.shape))
        return Dims(self._output_shape(t))

    def set_tensor_address(self, name: str, memory: int) -> bool:
        memory = operator.index(memory)
        if name not in self._engine._tensors:
            return self._err("setTensorAddress", f"Parameter check failed, condition: given invalid tensor name: {name}")
        if memory % 256:
            return self._err("setTensorAddress", f"Parameter check failed, condition: the address of tensor {name} "
                             f"(0x{memory:x}) has at least 256-byte alignment.")
        self._addrs[name] = memory
        return True

    def get_tensor_address(self, name: str) -> int:
        return self._addrs.get(name, 0)

    def set_output_allocator(self, name: str, output_allocator) -> bool:
        if output_allocator is not None and not isinstance(output_allocator, IOutputAllocator):
            raise TypeError("set_output_allocator(): incompatible function arguments: output_allocator must be a "
                            "tensorrt.IOutputAllocator or None")
        t = self._engine._tensors.get(name)
        if t is None or t.mode is not TensorIOMode.OUTPUT:
            return self._err("setOutputAllocator", f"Parameter check failed, condition: {name} is an output tensor.")
        if output_allocator is None:
            self._allocators.pop(name, None)
        else:
            self._allocators[name] = output_allocator
        return True

    def get_output_allocator(self, name: str):
        return self._allocators.get(name)

    def _reallocate(self, name, allocator, size: int, stream_handle: int) -> int | None:
        current, cls = self._addrs.get(name, 0), type(allocator)
        try:
            if cls.reallocate_output_async is not IOutputAllocator.reallocate_output_async:
                ptr = allocator.reallocate_output_async(name, current, size, 256, stream_handle)
            else:
                ptr = allocator.reallocate_output(name, current, size, 256)
            ptr = 0 if ptr is None else operator.index(ptr)
        except Exception as exc:  # the binding prints and treats it as nullptr
            sys.stderr.write(f"[ERROR] Exception caught in reallocateOutput(): {exc}\n")
            ptr = 0
        if not ptr:
            self._err("enqueueV3", f"IOutputAllocator returned nullptr for output tensor {name} ({size} bytes).",
                      "2: Internal Error")
            return None
        if ptr % 256:
            self._err("enqueueV3", f"IOutputAllocator returned 0x{ptr:x} for {name}: not 256-byte aligned.")
            return None
        self._addrs[name] = ptr
        return ptr

    @staticmethod
    def _notify(allocator, name, shape) -> None:
        try:
            allocator.notify_shape(name, Dims(shape))
        except Exception as exc:
            sys.stderr.write(f"[ERROR] Exception caught in notify_shape(): {exc}\n")

    def execute_async_v3(self, stream_handle: int) -> bool:
        handle, engine = operator.index(stream_handle), self._engine
        ctx = _cu.current_context()
        known, stream = _cu.stream_from_handle(handle)
        if ctx is None:
            return self._err("enqueueV3", "invalid device context: no CUDA context is current in this thread",
                             "1: Cuda Runtime")
        if not known or (stream is not None and stream._ctx is not ctx):
            return self._err("enqueueV3", f"invalid resource handle (stream 0x{handle:x} is not a stream of the "
                             "current context)", "1: Cuda Runtime")
        missing = self.infer_shapes()
        if missing:
            return self._err("enqueueV3", "Parameter check failed, condition: inputDimensionSpecified && "
                             "inputShapesSpecified. Not all shapes are specified. Following input tensors' "
                             f"dimensions are not specified: {', '.join(missing)}.")
        inputs = []
        for t in engine._inputs():
            shape = self._shapes.get(t.name, t.shape)
            addr = self._addrs.get(t.name, 0)
            if not addr and volume(shape):
                return self._err("enqueueV3", f"Address is not set for input tensor {t.name}. Call "
                                 "setInputTensorAddress or setTensorAddress before enqueue/execute.")
            inputs.append((t, shape, addr))
        outputs = []
        for t in engine._outputs():
            allocator, addr = self._allocators.get(t.name), self._addrs.get(t.name, 0)
            if allocator is None and not addr:
                return self._err("enqueueV3", f"Neither address or allocator is set for output tensor {t.name}. Call "
                                 "setOutputTensorAddress, setTensorAddress or setOutputAllocator before "
                                 "enqueue/execute.")
            if allocator is None and t.dds:
                return self._err("enqueueV3", f"Output tensor {t.name} has a data-dependent shape "
                                 f"{_fmt(self._output_shape(t))}: it needs an IOutputAllocator "
                                 "(set_output_allocator); an address alone cannot be sized.")
            outputs.append((t, self._output_shape(t), addr, allocator))

        def compute() -> dict:
            feeds = {}
            for t, shape, addr in inputs:
                nbytes = volume(shape) * np.dtype(nptype(t.dtype)).itemsize
                raw = _cu.device_view(addr, nbytes, "cuStreamSynchronize", _cu.ILLEGAL_ADDRESS) if nbytes else b""
                value = np.frombuffer(bytes(raw), dtype=nptype(t.dtype)).reshape(shape)
                feeds[t.name] = value.astype(nptype(t.onnx_dtype), copy=False)
            results = engine._session.run([t.name for t, *_ in outputs], feeds)
            values = {}
            for (t, shape, _, _), value in zip(outputs, results):
                if not t.dds and tuple(value.shape) != shape:
                    raise ValueError(f"{t.name}: the network produced shape {value.shape}, the engine inferred {shape}")
                values[t.name] = np.ascontiguousarray(value, dtype=nptype(t.dtype))
            return values

        def write(values: dict, targets: dict) -> None:
            for name, value in values.items():
                if value.nbytes:
                    _cu.device_view(targets[name], value.nbytes, "cuStreamSynchronize",
                                    _cu.ILLEGAL_ADDRESS)[:] = value.reshape(-1).view(np.uint8)

        what = f"TensorRT execute_async_v3 of engine {engine.name!r}"
        targets = {}
        if not any(t.dds for t, *_ in outputs):
            for t, shape, addr, allocator in outputs:
                size = max(1, volume(shape) * np.dtype(nptype(t.dtype)).itemsize)
                targets[t.name] = addr if allocator is None else self._reallocate(t.name, allocator, size, handle)
                if targets[t.name] is None:
                    return False
            for t, shape, _, allocator in outputs:
                if allocator is not None:
                    self._notify(allocator, t.name, shape)
            _cu.enqueue(stream, lambda: write(compute(), targets), what)
            return True
        # A data-dependent output: TensorRT needs the data to size it, so it waits for the stream.
        _cu.synchronize_stream(stream)
        try:
            values = compute()
        except _cu.Error:
            raise
        except Exception as exc:
            raise _cu.LaunchError(f"cuStreamSynchronize failed: unspecified launch failure - [fake GPU] {what}: "
                                  f"{type(exc).__name__}: {exc}") from exc
        for t, _, addr, allocator in outputs:
            value = values[t.name]
            targets[t.name] = addr if allocator is None else self._reallocate(
                t.name, allocator, max(1, value.nbytes), handle)
            if targets[t.name] is None:
                return False
        for t, _, _, allocator in outputs:
            if allocator is not None:
                self._notify(allocator, t.name, values[t.name].shape)
        _cu.enqueue(stream, lambda: write(values, targets), what)
        return True

    __enter__, __exit__ = _deprecated_enter, _noop_exit


# }}}

# Direct aliases, as the real module has (trt.float32 ...). Last: ``bool`` shadows the builtin here.
float32, float16, int8, int32, int64, uint8 = (DataType.FLOAT, DataType.HALF, DataType.INT8, DataType.INT32,
                                               DataType.INT64, DataType.UINT8)
fp8, bfloat16, int4, fp4 = DataType.FP8, DataType.BF16, DataType.INT4, DataType.FP4
globals()["bool"] = DataType.BOOL
