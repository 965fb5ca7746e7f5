"""Running the appliance's ONNX models: on onnxruntime (CPU, or CUDA with onnxruntime-gpu) or
as TensorRT engines on a GPU box. Both runners take and give numpy arrays by tensor name, so
a model's code (Piper, Silero) does not know which one serves it."""
