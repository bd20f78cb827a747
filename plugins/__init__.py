"""The dual-region (de)quantization op: spec, NumPy reference, ONNX function, kernels, TRT registration."""
