"""The backward forms the gradient rules choose between, timed on onnxruntime CPU at ResNet shapes.

* ``--conv``: the Conv weight gradient as the batch-as-channels Conv, as unfold + one Gemm and as
  unfold + per-image MatMuls summed over the batch (rules/conv.py builds each graph here, so what is
  timed is what the rule emits), at the conv layers of ResNet-18 and a few grouped/depthwise ones.
* ``--maxpool``: forward + backward of overlapping MaxPools (3x3, stride 2, pads 1: ResNet's stem;
  and a 3x3 stride-1 one) through the Indices output and ScatterElements against comparing every
  window offset with the maxima and placing the shares with a grouped ConvTranspose (the rule emits
  the first from opset 16, the second before).

Each form runs in its own session, the forms interleaved run by run; p50 in ms.

    python benchmarks/backward_forms.py --conv [--batch 16] [--threads 1] [--runs 8]
    python benchmarks/backward_forms.py --maxpool [--threads 1] [--runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnx
import onnx.parser
import onnxruntime as ort

import onnxgraph
from onnxgraph.autodiff import build_gradient
from onnxgraph.autodiff.builder import GradBuilder
from onnxgraph.autodiff.rules import conv as conv_rules

CONV_FORMS = {
    "batch-as-channels Conv": conv_rules._weight_grad_by_conv,
    "unfold + Gemm": conv_rules._weight_grad_by_gemm,
    "unfold + MatMuls": conv_rules._weight_grad_by_matmul,
}

# (C_in, C_out, input size, kernel, stride, pad, groups): ResNet-18's convolutions at 224x224, then
# grouped and depthwise ones as in ResNeXt / MobileNet
CONV_SHAPES = [
    (3, 64, 224, 7, 2, 3, 1),
    (64, 64, 56, 3, 1, 1, 1),
    (64, 128, 56, 3, 2, 1, 1),
    (64, 128, 56, 1, 2, 0, 1),
    (128, 128, 28, 3, 1, 1, 1),
    (256, 256, 14, 3, 1, 1, 1),
    (512, 512, 7, 3, 1, 1, 1),
    (64, 128, 28, 3, 1, 1, 4),
    (64, 64, 28, 3, 1, 1, 64),
    (128, 128, 14, 3, 2, 1, 128),
]


def _session(proto: onnx.ModelProto, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), options, ["CPUExecutionProvider"])


def conv_form_model(
    form, batch: int, c_in: int, c_out: int, size: int, kernel: int, stride: int, pad: int, groups: int
):
    """A model (x, g) -> dW holding one weight-gradient form, as the Conv rule builds it."""
    out = (size + 2 * pad - kernel) // stride + 1
    inputs = f"float[{batch}, {c_in}, {size}, {size}] x, float[{batch}, {c_out}, {out}, {out}] g"
    text = f"""<ir_version: 8, opset_import: ["" : 17]> g ({inputs}) => (float p) {{ p = Identity(x) }}"""
    model = onnxgraph.load(onnx.parser.parse_model(text))
    graph = model.graph
    x, g = graph.inputs
    b = GradBuilder(graph, 17)
    ks, strides, dilations, pads = [kernel] * 2, [stride] * 2, [1, 1], [pad, pad]
    dw = form(b, x, g, c_in, c_out, ks, groups, strides, dilations, pads, pads)
    graph.outputs[:] = [dw]
    graph.remove(graph.nodes[0])
    dw.name = "dw"
    return model.to_proto()


def timed(sessions: dict, feeds: dict, runs: int) -> dict[str, float]:
    """p50 ms of each session, run interleaved after two warm-up rounds."""
    samples: dict[str, list[float]] = {k: [] for k in sessions}
    for run in range(runs + 2):
        for label, session in sessions.items():
            start = time.perf_counter()
            session.run(None, feeds)
            if run >= 2:
                samples[label].append(time.perf_counter() - start)
    return {k: statistics.median(v) * 1e3 for k, v in samples.items()}


def run_conv(args) -> None:
    rng = np.random.default_rng(0)
    print(f"| C_in | C_out | input | kernel | stride | groups | {' | '.join(CONV_FORMS)} | rule picks |")
    print("|" + " --- |" * (7 + len(CONV_FORMS)))
    for c_in, c_out, size, kernel, stride, pad, groups in CONV_SHAPES:
        out = (size + 2 * pad - kernel) // stride + 1
        sessions = {
            label: _session(
                conv_form_model(form, args.batch, c_in, c_out, size, kernel, stride, pad, groups), args.threads
            )
            for label, form in CONV_FORMS.items()
            if not (form is conv_rules._weight_grad_by_gemm and groups > 1)
        }
        feeds = {
            "x": rng.standard_normal((args.batch, c_in, size, size)).astype(np.float32),
            "g": rng.standard_normal((args.batch, c_out, out, out)).astype(np.float32),
        }
        results = [s.run(None, feeds)[0] for s in sessions.values()]
        assert all(np.allclose(r, results[0], rtol=1e-3, atol=1e-3 * np.abs(results[0]).max()) for r in results)
        p50 = timed(sessions, feeds, args.runs)
        form = conv_rules.weight_grad_form([kernel] * 2, groups, c_out, (out, out))
        picked = next(k for k, f in CONV_FORMS.items() if f is form)
        cells = " | ".join(f"{p50[k]:.2f}" if k in p50 else "-" for k in CONV_FORMS)
        print(f"| {c_in} | {c_out} | {size}x{size} | {kernel}x{kernel} | {stride} | {groups} | {cells} | {picked} |")


def run_maxpool(args) -> None:
    rng = np.random.default_rng(0)
    for batch, channels, size, stride in [(8, 64, 56, 2), (16, 64, 112, 2), (8, 64, 28, 1)]:
        attrs = f"kernel_shape=[3, 3], strides=[{stride}, {stride}], pads=[1, 1, 1, 1]"
        out = (size - 1) // stride + 1
        sessions = {}
        # the scatter at opset 17 (spatial sizes left to run time), the offsets form at opset 15 (static ones)
        for label, opset, dims in (
            ("Indices + ScatterElements", 17, "h, w"),
            ("window offsets + ConvTranspose", 15, f"{size}, {size}"),
        ):
            text = f"""<ir_version: 8, opset_import: ["" : {opset}]>
            g (float[{batch}, {channels}, {dims}] x) => (float[{batch}, {channels}, p, q] y) {{
                y = MaxPool<{attrs}>(x)
            }}"""
            grad = build_gradient(onnx.parser.parse_model(text), vjp=True, wrt=["x"])
            sessions[label] = _session(grad.to_proto(), args.threads)
        shape = (batch, channels, size, size)  # distinct values: no ties, which the two forms split differently
        x = rng.permutation(int(np.prod(shape))).reshape(shape).astype(np.float32)
        feeds = {"x": x, "y_grad": rng.standard_normal([batch, channels, out, out]).astype(np.float32)}
        results = [s.run(["x_grad"], feeds)[0] for s in sessions.values()]
        assert np.allclose(results[0], results[1], atol=1e-5)
        p50 = timed(sessions, feeds, args.runs)
        cells = ", ".join(f"{k} {v:.1f} ms" for k, v in p50.items())
        print(f"MaxPool<{attrs}> on {batch}x{channels}x{size}x{size}, {args.threads} thread(s): {cells}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conv", action="store_true")
    parser.add_argument("--maxpool", action="store_true")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args()
    if not (args.conv or args.maxpool):
        parser.error("choose --conv and/or --maxpool")
    if args.conv:
        run_conv(args)
    if args.maxpool:
        run_maxpool(args)


if __name__ == "__main__":
    main()
