"""A fake of pycuda (https://documen.tician.de/pycuda/) for tests on a box without a GPU: a
strict model of the CUDA driver subset that a TensorRT runner uses, on the simulated device in
tests/gpu/fakes/_fakecuda.py. See pycuda.driver for what is modelled and how it is stricter."""

VERSION = (2024, 1, 2)
VERSION_STATUS = ""
VERSION_TEXT = "2024.1.2"
