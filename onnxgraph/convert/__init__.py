"""Model conversion: opset and IR version, onnxruntime targets, half precision, data layout."""
