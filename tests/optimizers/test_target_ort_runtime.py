"""What onnxruntime runs for ``optimize --target ort``: the kernels its session (all graph
optimizations on) makes of our output are the kernels it makes of its own transformers optimizer's
output, so no rewrite of ours takes a runtime fusion away (issue 10: on GPT-2 ``--target ort`` was
measured 3-5% slower than onnxruntime's optimizer; docs/benchmarks.md has the profile that showed
the same kernels, and this test keeps it so)."""

from __future__ import annotations

import os
from collections import Counter

import model_builders as build
import onnx
import pytest

from onnxgraph.optimizers import optimize

SHAPES = {"input_ids": [2, 8], "attention_mask": [2, 8]}
INDEX_OPS = frozenset(
    {"Shape", "Gather", "Concat", "Unsqueeze", "Squeeze", "Slice", "Reshape", "Range", "Equal", "And", "Cast"}
)
"""Shape and index arithmetic on a few int64 elements (and the metadata-only Reshape), which our passes
fold or share and onnxruntime's optimizer leaves as exported: not compared."""


def _runtime_kernels(proto: onnx.ModelProto, path: str) -> Counter[str]:
    """Op types of the graph onnxruntime runs for ``proto`` on CPU, Gemm counted as MatMul (the same
    GEMM kernel: onnxruntime's optimizer keeps some exported Reshape -> Gemm -> Reshape dense layers
    that our passes turn into one MatMul on the 3-D activation) and opset 23's RMSNormalization as
    SimplifiedLayerNormalization (onnxruntime runs both with its simplified layer-norm kernel; our
    ``--target ort`` writes the standard op where its optimizer leaves its own default-domain one,
    which onnx.checker rejects)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    options.optimized_model_filepath = path
    ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    kernels = Counter(n.op_type for n in onnx.load(path).graph.node if n.op_type not in INDEX_OPS)
    kernels["MatMul"] += kernels.pop("Gemm", 0)
    kernels["SimplifiedLayerNormalization"] += kernels.pop("RMSNormalization", 0)
    return kernels


CASES = {
    "gpt2": (lambda: build.gpt2(), "gpt2"),
    "bert": (lambda: build.transformer(), "bert"),
    "llama17": (lambda: build.decoder(opset=17), "gpt2"),
    "llama23": (lambda: build.decoder(opset=23), "gpt2"),
}
"""Exporter-style builders and onnxruntime's model type for each. The llama-style decoders fail
this test when the norm rewrites are not left to onnxruntime (``ort_contrib.LEFT_TO_ONNXRUNTIME``):
then onnxruntime runs our written-out or standard norms, Attention and RotaryEmbedding instead of
its SkipSimplifiedLayerNormalization and fused MatMuls."""


@pytest.mark.parametrize("case", sorted(CASES))
def test_target_ort_runs_the_kernels_of_onnxruntimes_optimizer(tmp_path, case):
    from onnxruntime.transformers.optimizer import optimize_model

    builder, model_type = CASES[case]
    proto = builder()
    shapes = {i.name: SHAPES[i.name] for i in proto.graph.input}
    ours, report = optimize(proto, input_shapes=shapes, target="ort", model_type=model_type)
    assert report.ok and report.contrib is not None and report.contrib.applied
    alone = optimize_model(onnx.ModelProto.FromString(proto.SerializeToString()), model_type=model_type, opt_level=0)
    runtime_ours = _runtime_kernels(ours.to_proto(), os.fspath(tmp_path / "ours.onnx"))
    runtime_alone = _runtime_kernels(alone.model, os.fspath(tmp_path / "alone.onnx"))
    assert runtime_ours["SkipLayerNormalization"] + runtime_ours["SkipSimplifiedLayerNormalization"] > 0
    assert runtime_ours == runtime_alone
