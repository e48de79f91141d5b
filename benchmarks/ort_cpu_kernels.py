"""The onnxruntime CPU kernels behind the GPT-2 ``--target ort`` figures, timed alone (one-node or
few-node models at GPT-2 small's hidden size 768, sequence 128, interleaved, CPU time).

    python benchmarks/ort_cpu_kernels.py [--batch 8] [--runs 60] [--threads 1]

- ``norm``: onnxruntime's contrib SkipLayerNormalization against the standard Add + LayerNormalization
  it replaces, with and without the residual sum as a second output (GPT-2's pre-LN blocks reuse the
  sum, BERT's post-LN blocks do not). onnxruntime's own session optimizer fuses Add + LayerNormalization
  into SkipLayerNormalization where the sum is not reused, so the plain pair there runs the same kernel.
- ``dense``: the one place where ``--target ort`` and onnxruntime's transformers optimizer differ in what
  runs on GPT-2: the attention output projection as one MatMul on the 3-D activation, its bias added by
  SkipLayerNormalization (ours), or as Reshape -> Gemm with bias -> Reshape (onnxruntime's optimizer).

Each line: median CPU milliseconds per run of each variant.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SEQUENCE, HIDDEN = 128, 768


def _model(nodes: list[onnx.NodeProto], outputs: list[str], inits: list[onnx.TensorProto], batch: int) -> bytes:
    shape = [batch, SEQUENCE, HIDDEN]
    graph = helper.make_graph(
        nodes,
        "kernel",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("x", "r")],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in outputs],
        inits,
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, ir_version=9, opset_imports=opsets).SerializeToString()


def _norm_models(batch: int) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array((1 + 0.1 * rng.standard_normal(HIDDEN)).astype(np.float32), "gamma"),
        numpy_helper.from_array((0.1 * rng.standard_normal(HIDDEN)).astype(np.float32), "beta"),
    ]
    models = {}
    for reused in (False, True):
        outputs = ["y", "sum"] if reused else ["y"]
        suffix = ", sum reused" if reused else ""
        skip = helper.make_node(
            "SkipLayerNormalization",
            ["x", "r", "gamma", "beta"],
            ["y", "", "", "sum"] if reused else ["y"],
            domain="com.microsoft",
            epsilon=1e-5,
        )
        models[f"SkipLayerNormalization{suffix}"] = _model([skip], outputs, inits, batch)
        pair = [
            helper.make_node("Add", ["x", "r"], ["sum"]),
            helper.make_node("LayerNormalization", ["sum", "gamma", "beta"], ["y"], axis=-1, epsilon=1e-5),
        ]
        models[f"Add+LayerNormalization{suffix}"] = _model(pair, outputs, inits, batch)
    return models


def _dense_models(batch: int) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array((0.02 * rng.standard_normal((HIDDEN, HIDDEN))).astype(np.float32), "w"),
        numpy_helper.from_array((0.1 * rng.standard_normal(HIDDEN)).astype(np.float32), "bias"),
        numpy_helper.from_array(np.ones(HIDDEN, np.float32), "gamma"),
        numpy_helper.from_array(np.zeros(HIDDEN, np.float32), "beta"),
    ]
    shapes = [
        numpy_helper.from_array(np.array([-1, HIDDEN], np.int64), "flat"),
        numpy_helper.from_array(np.array([batch, SEQUENCE, HIDDEN], np.int64), "back"),
    ]
    norm_outputs = ["y", "", "", "sum"]
    ours = [
        helper.make_node("MatMul", ["x", "w"], ["dense"]),
        helper.make_node(
            "SkipLayerNormalization",
            ["dense", "r", "gamma", "beta", "bias"],
            norm_outputs,
            domain="com.microsoft",
            epsilon=1e-5,
        ),
    ]
    theirs = [
        helper.make_node("Reshape", ["x", "flat"], ["x2"]),
        helper.make_node("Gemm", ["x2", "w", "bias"], ["dense2"]),
        helper.make_node("Reshape", ["dense2", "back"], ["dense"]),
        helper.make_node(
            "SkipLayerNormalization",
            ["dense", "r", "gamma", "beta"],
            norm_outputs,
            domain="com.microsoft",
            epsilon=1e-5,
        ),
    ]
    return {
        "MatMul 3-D, bias in SkipLayerNormalization (--target ort)": _model(ours, ["y", "sum"], inits, batch),
        "Reshape-Gemm(bias)-Reshape (onnxruntime's optimizer)": _model(theirs, ["y", "sum"], inits + shapes, batch),
    }


def _time(models: dict[str, bytes], batch: int, threads: int, runs: int) -> dict[str, float]:
    """Median CPU ms per run of each model, runs interleaved; the outputs of all models must agree."""
    from onnxgraph.runtime.sessions import create_session

    rng = np.random.default_rng(1)
    feeds = {n: rng.standard_normal((batch, SEQUENCE, HIDDEN)).astype(np.float32) for n in ("x", "r")}
    sessions = {
        name: create_session(model, threads=threads, config_entries={"session.intra_op.allow_spinning": "0"})
        for name, model in models.items()
    }
    reference = None
    for session in sessions.values():
        outputs = session.run(None, feeds)
        if reference is not None:
            np.testing.assert_allclose(outputs[0], reference[0], rtol=1e-4, atol=1e-4)
        reference = outputs
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(runs):
        for name, session in sessions.items():
            start = time.process_time()
            session.run(None, feeds)
            times[name].append((time.process_time() - start) * 1000)
    return {name: round(float(np.median(t)), 2) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()
    import onnxruntime

    print(f"onnxruntime {onnxruntime.__version__}, [{args.batch}, {SEQUENCE}, {HIDDEN}], {args.threads} thread(s)")
    for title, models in (("norm", _norm_models(args.batch)), ("dense", _dense_models(args.batch))):
        for name, ms in _time(models, args.batch, args.threads, args.runs).items():
            print(f"{title}: {name}: {ms} ms")


if __name__ == "__main__":
    main()
