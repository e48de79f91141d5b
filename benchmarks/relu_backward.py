"""ReLU backward on onnxruntime CPU: ``Where(x > 0, g, 0)`` against ``g * Cast(x > 0)`` (the form the
gradient rule emits), timed interleaved with IO binding so load changes hit both alike.

    python benchmarks/relu_backward.py [--threads 1] [--runs 200] [--shape 32,16,56,56]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnx.parser
import onnxruntime as ort

FORMS = {
    "Where": "m = Greater(x, zero)\n dx = Where(m, g, zero)",
    "Cast+Mul": "m = Greater(x, zero)\n c = Cast<to=1>(m)\n dx = Mul(g, c)",
}


def session(body: str, shape: list[int], threads: int) -> ort.InferenceSession:
    dims = ",".join(map(str, shape))
    text = f"""<ir_version: 8, opset_import: ["" : 17]>
    g (float[{dims}] x, float[{dims}] g) => (float[{dims}] dx) <float zero = {{0.0}}> {{ {body} }}"""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(onnx.parser.parse_model(text).SerializeToString(), options, ["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--shape", default="32,16,56,56")
    args = parser.parse_args()
    shape = [int(d) for d in args.shape.split(",")]
    rng = np.random.default_rng(0)
    inputs = {n: ort.OrtValue.ortvalue_from_numpy(rng.standard_normal(shape).astype(np.float32)) for n in "xg"}
    bindings = {}
    for name, body in FORMS.items():
        sess = session(body, shape, args.threads)
        binding = sess.io_binding()
        for n, v in inputs.items():
            binding.bind_ortvalue_input(n, v)
        binding.bind_output("dx")
        bindings[name] = (sess, binding)
    samples: dict[str, list[float]] = {name: [] for name in FORMS}
    for run in range(args.runs + 5):
        for name, (sess, binding) in bindings.items():
            start = time.perf_counter()
            sess.run_with_iobinding(binding)
            if run >= 5:
                samples[name].append(time.perf_counter() - start)
    for name, times in samples.items():
        print(f"{name}: p50 {statistics.median(times) * 1e3:.3f} ms ({args.threads} thread(s), shape {shape})")


if __name__ == "__main__":
    main()
