"""ONNX -> serialized TensorRT engine with the builder API (TensorRT 10): parse, one
optimisation profile from the manifest's shapes, FP16 where the GPU has fast FP16."""

from __future__ import annotations

import logging
from pathlib import Path

from ..models.errors import ModelError
from ..models.manifest import EngineSpec
from . import optional

log = logging.getLogger("appliance.engines")


def build_serialized(onnx_path: Path, spec: EngineSpec, *, device: int = 0, workspace_mb: int = 2048) -> bytes:
    """The engine's bytes; ModelError with TensorRT's own messages when it cannot be built."""
    trt = optional.tensorrt()
    cuda = optional.cuda_driver()
    try:
        ctx = cuda.Device(device).retain_primary_context()  # the builder builds for the current device
        ctx.push()
    except Exception as exc:  # pycuda.driver.Error
        raise ModelError(f"no CUDA context on device {device}: {exc}") from None
    try:
        return _build(trt, onnx_path, spec, workspace_mb)  # its TensorRT objects die before the pop
    except ModelError:
        raise
    except Exception as exc:  # TensorRT raises RuntimeError/TypeError for what it refuses
        raise ModelError(f"TensorRT could not build an engine from {onnx_path.name}: {exc}") from None
    finally:
        ctx.pop()
        ctx.detach()


def _build(trt, onnx_path: Path, spec: EngineSpec, workspace_mb: int) -> bytes:
    """Builder, network, parser and config live only in this frame, gone before the caller pops."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse {onnx_path}: {errors or 'no detail'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if spec.precision == "fp16":
        if not hasattr(trt.BuilderFlag, "FP16"):  # TensorRT 11 dropped it: pyproject pins <11
            raise ModelError(f"TensorRT {trt.__version__} has no FP16 builder flag; the engine builder is "
                             "written for TensorRT 10 (pip install 'tensorrt>=10,<11')")
        if builder.platform_has_fast_fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        else:
            log.warning("%s: this GPU has no fast FP16; building in FP32", onnx_path.name)
    inputs = {network.get_input(i).name: tuple(network.get_input(i).shape) for i in range(network.num_inputs)}
    shapes = {name: (lo, opt, hi) for name, lo, opt, hi in spec.shapes}
    unknown = sorted(set(shapes) - set(inputs))
    if unknown:
        raise ModelError(f"engine.shapes names {', '.join(unknown)}, not inputs of {onnx_path.name} "
                         f"(its inputs: {', '.join(inputs)})")
    unprofiled = sorted(n for n, dims in inputs.items() if any(d < 0 for d in dims) and n not in shapes)
    if unprofiled:
        raise ModelError(f"{onnx_path.name}: input(s) {', '.join(unprofiled)} have dynamic dimensions "
                         f"but no engine.shapes entry in the manifest")
    if shapes:
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in shapes.items():
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise ModelError(f"TensorRT could not build an engine from {onnx_path} (its log above says why)")
    return bytes(engine)
