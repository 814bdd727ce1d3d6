"""trt-sweep: experiment-tracked TensorRT precision sweeps for streaming CTC ASR on Triton."""

__version__ = "0.1.0"
