"""Forward + backward time of exported sequence models: the gradient model on onnxruntime CPU against
PyTorch eager autograd on the same module, weights and batch (medians, the two interleaved step by
step), plus the gradient graph's node count.

    python benchmarks/grad_sequence_step.py [--threads 1] [--runs 20]

The models are the modules of golden_sequence_models.py at larger sizes: the llama-style attention
block exported by the dynamo exporter at opset 23 (RMSNormalization, grouped-query causal
Attention) and the bidirectional LSTM + GRU classifier exported by the TorchScript exporter. Needs
torch (never a package or test dependency). Results go to docs/benchmarks.md by hand, with the
command line used.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import tempfile
import time

import numpy as np
import onnx
import torch

from onnxgraph.autodiff import METADATA_KEY, build_gradient
from onnxgraph.runtime.sessions import create_session

_spec = importlib.util.spec_from_file_location(
    "golden_sequence_models", os.path.join(os.path.dirname(__file__), "golden_sequence_models.py")
)
golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden)


def _export(name, module, x, path):
    if name == "attention":
        torch.onnx.export(module, (x,), dynamo=True, opset_version=23, external_data=False).save(path)
    else:
        torch.onnx.export(
            module,
            (x,),
            path,
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch", 1: "time"}},
        )


def _interleaved_p50(first, second, runs: int) -> tuple[float, float]:
    """Median times (ms) of two steps run alternately, so load changes hit both alike."""
    first(), second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        for fn, bucket in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return statistics.median(times[0]) * 1000, statistics.median(times[1]) * 1000


def measure(name, module, x, threads: int, runs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        _export(name, module, x, path)
        model = onnx.load(path)
    params = [i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT and len(i.dims) >= 1]
    grad = build_gradient(model, vjp=True, wrt=params)
    mapping = json.loads(grad.metadata_props[METADATA_KEY])
    proto = grad.to_proto()
    session = create_session(proto.SerializeToString(), threads=threads)
    upstream = np.random.default_rng(0).standard_normal(module(x).shape).astype(np.float32)
    feeds = {"x": x.numpy(), mapping[f"{model.graph.output[0].name}@upstream"]: upstream}
    wanted = [mapping[p] for p in params]
    torch.set_num_threads(threads)
    weights = torch.from_numpy(upstream)

    def torch_step():
        module.zero_grad()
        (module(x) * weights).sum().backward()

    ort_ms, torch_ms = _interleaved_p50(lambda: session.run(wanted, feeds), torch_step, runs)
    return {
        "model": name,
        "input": list(x.shape),
        "forward_nodes": len(model.graph.node),
        "gradient_nodes": len(proto.graph.node),
        "onnxruntime_ms": round(ort_ms, 2),
        "pytorch_ms": round(torch_ms, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    cases = [
        ("attention", golden.AttentionBlock(dim=256, heads=8, kv_heads=2), torch.randn(8, 128, 256)),
        ("lstm_gru", golden.RecurrentClassifier(features=32, hidden=128, classes=10), torch.randn(32, 64, 32)),
        ("lstm_gru", golden.RecurrentClassifier(features=32, hidden=128, classes=10), torch.randn(32, 256, 32)),
    ]
    for name, module, x in cases:
        print(json.dumps(measure(name, module, x, args.threads, args.runs)))


if __name__ == "__main__":
    main()
