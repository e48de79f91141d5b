"""Forward + backward of the same network on onnxruntime-training 1.19.2 (``generate_artifacts`` +
``Module``: its ConvGrad / BatchNormalizationGrad contrib ops) and with onnxgraph's gradient model on
the same onnxruntime build, interleaved step by step in one process.

onnxruntime-training cannot share a process or a virtual environment with a newer onnxruntime, so
this script runs in its own one; its ``onnxruntime.training`` package imports torch, and the
optimizer model it writes must stay at IR version 10 (onnx 1.16). On Python 3.11 with numpy 2::

    python3 -m venv /tmp/ortt && /tmp/ortt/bin/pip install onnxruntime-training==1.19.2 onnx==1.16.2 torch
    python benchmarks/resnet_grad_step.py --save grad.onnx --save-forward forward.onnx   # onnxgraph's venv
    /tmp/ortt/bin/python benchmarks/ort_training_step.py --forward forward.onnx --grad grad.onnx

Inputs ``x`` (float; its static dims from the model, else NCHW of ``--image``) and ``target`` (class
indices); ``--batch`` sizes both. ``resnet_grad_step.py --network mlp|cnn`` writes other networks.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.training import artifacts
from onnxruntime.training.api import CheckpointState, Module


def _input_shape(forward: onnx.ModelProto, batch: int, image: int) -> tuple[int, ...]:
    """Shape of input ``x``: ``batch`` first, the model's static dims after it, ``image`` for others
    (NCHW: 3 channels)."""
    (x,) = [i for i in forward.graph.input if i.name == "x"]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in x.type.tensor_type.shape.dim]
    if all(d is not None for d in dims[1:]):
        return (batch, *[int(d) for d in dims[1:]])
    return (batch, 3, image, image)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forward", required=True, help="The forward model (training-mode BatchNormalization).")
    parser.add_argument("--grad", required=True, help="onnxgraph's gradient model of it (resnet_grad_step.py --save).")
    parser.add_argument("--image", type=int, default=112)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    forward = onnx.load(args.forward)
    statistics_inputs = {n.input[k] for n in forward.graph.node if n.op_type == "BatchNormalization" for k in (3, 4)}
    params = [
        i.name
        for i in forward.graph.initializer
        if i.data_type == onnx.TensorProto.FLOAT and i.dims and i.name not in statistics_inputs
    ]
    folder = tempfile.mkdtemp(prefix="ort_training_")
    artifacts.generate_artifacts(
        forward, requires_grad=params, loss=artifacts.LossType.CrossEntropyLoss, artifact_directory=folder
    )
    training = onnx.load(f"{folder}/training_model.onnx")
    accumulators = sum(n.op_type == "InPlaceAccumulatorV2" for n in training.graph.node)
    grad = onnx.load(args.grad)
    print(
        f"onnxruntime-training {ort.__version__}: training graph {len(training.graph.node)} nodes "
        f"({accumulators} gradient accumulators); onnxgraph's gradient graph {len(grad.graph.node)} nodes"
    )
    rng = np.random.default_rng(0)
    x = rng.standard_normal(_input_shape(forward, args.batch, args.image)).astype(np.float32)
    target = rng.integers(0, args.classes, args.batch).astype(np.int64)
    mapping = json.loads({p.key: p.value for p in grad.metadata_props}["onnxgraph.gradients"])
    outputs = [mapping.get("@loss", "loss"), *[mapping[p] for p in params]]
    for threads in args.threads:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.enable_mem_pattern = False
        options.log_severity_level = 3
        ours = ort.InferenceSession(grad.SerializeToString(), options, ["CPUExecutionProvider"])
        state = CheckpointState.load_checkpoint(f"{folder}/checkpoint")
        module = Module(f"{folder}/training_model.onnx", state, device="cpu", session_options=options)
        module.train()

        def theirs(module: Module = module) -> float:
            module.lazy_reset_grad()
            return float(module(x, target))

        def onnxgraph_step(ours: ort.InferenceSession = ours) -> float:
            return float(ours.run(outputs, {"x": x, "target": target})[0])

        print(f"losses: onnxruntime-training {theirs():.6f}, onnxgraph {onnxgraph_step():.6f}")
        samples: dict[str, list[float]] = {"onnxgraph": [], "onnxruntime-training": []}
        for run in range(args.runs + 3):
            for label, step in (("onnxgraph", onnxgraph_step), ("onnxruntime-training", theirs)):
                start = time.perf_counter()
                step()
                if run >= 3:
                    samples[label].append(time.perf_counter() - start)
        p50 = {k: statistics.median(v) * 1e3 for k, v in samples.items()}
        print(
            f"{threads} thread(s), {args.runs} runs: onnxgraph p50 {p50['onnxgraph']:.1f} ms, onnxruntime-training "
            f"p50 {p50['onnxruntime-training']:.1f} ms, onnxruntime-training/onnxgraph "
            f"{p50['onnxruntime-training'] / p50['onnxgraph']:.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
