"""Recipe -> ONNX lowerings -> TensorRT engines, runtimes and benchmarks."""
