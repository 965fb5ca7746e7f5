"""An ONNX model on onnxruntime: the CPU default, or CUDA where onnxruntime-gpu is installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..models.errors import ModelError

PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


class OnnxRunner:
    """``run({name: array}) -> {name: array}``. ``device = "cuda"`` is refused when this
    onnxruntime has no CUDA provider, instead of quietly running on the CPU."""

    def __init__(self, path: str | Path, *, device: str = "cpu", threads: int = 1):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelError(f"onnxruntime is not installed ({exc}): pip install onnxruntime") from None
        if device not in PROVIDERS:
            raise ModelError(f"unknown onnxruntime device {device!r} (cpu or cuda)")
        if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ModelError(f"device = cuda, but this onnxruntime has no CUDA provider (it has "
                             f"{', '.join(ort.get_available_providers())}): pip install onnxruntime-gpu "
                             f"on the GPU box, or use the cpu device")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=PROVIDERS[device])
        except Exception as exc:  # onnxruntime raises its own types for a corrupt graph
            raise ModelError(f"{path} does not load in onnxruntime: {exc}") from None
        self.path = Path(path)
        self.device = device
        self.label = device  # what a backend's name shows: cpu | cuda
        self.outputs = [o.name for o in self.session.get_outputs()]

    def max_shape(self, name: str) -> tuple[int, ...] | None:
        """The largest shape ``name`` accepts; None = no limit (onnxruntime takes any)."""
        return None

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.outputs, self.session.run(self.outputs, feeds)))

    def close(self) -> None:
        self.session = None
