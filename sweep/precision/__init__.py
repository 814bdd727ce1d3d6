"""The flag set realised in the graph: a typed ONNX (fp16/bf16 casts with FP32 keeps from
ModelOpt AutoCast; int8/fp8 Q/DQ nodes from calibration on streamed audio and state). What
TensorRT 11 builds, strongly typed, and what the CPU emulator executes."""
