"""Conversion between ONNX protobuf messages and the IR, and reading/writing model files."""
