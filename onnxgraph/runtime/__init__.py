"""Running models on onnxruntime: providers, sessions, inputs, output comparison."""
