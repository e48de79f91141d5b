"""The ``attention`` fusion on the forms torch's exporters write for transformers' SDPA attention
(models/build.py ``gpt2(exporter=..., kv_heads=...)``): it fires, and the fused model gives the
original's outputs on onnxruntime, with padding that masks whole rows, at several batch/sequence sizes."""

from __future__ import annotations

import model_builders as build
import numpy as np
import onnx
import onnx.parser
import pytest

import onnxgraph
from onnxgraph.optimizers import optimize
from onnxgraph.optimizers.fusions import Fusions
from onnxgraph.optimizers.fusions.attention import SAFE_FILL
from onnxgraph.optimizers.rewriter.values import const_value
from onnxgraph.runtime.compare import compare_outputs
from onnxgraph.shape_inference import annotate_types

FORMS = [("torchscript", None), ("dynamo", None), ("torchscript", 2), ("dynamo", 2)]
"""(exporter, kv_heads): GPT-2-style multi-head and llama/qwen2-style grouped-query attention."""


def _feeds(batch: int, seq: int) -> dict[str, np.ndarray]:
    """Token ids and a mask with right padding, left padding (query rows with no key left) and none."""
    rng = np.random.default_rng(batch * 100 + seq)
    mask = np.ones((batch, seq), np.int64)
    mask[0, seq - 2 :] = 0  # right padding
    mask[1, :3] = 0  # left padding: rows 0-2 of the causal mask are fully masked
    if batch > 2:
        mask[2] = 0  # nothing to attend to: every row fully masked, also without a causal mask
    return {"input_ids": rng.integers(0, 100, (batch, seq), dtype=np.int64), "attention_mask": mask}


def _assert_same(kit, before: onnx.ModelProto, after: onnxgraph.Model) -> None:
    for batch, seq in ((2, 8), (3, 5)):
        feeds = _feeds(batch, seq)
        comparisons = compare_outputs(kit.run(before, feeds), kit.run(after, feeds))
        assert comparisons and all(c.passed for c in comparisons), comparisons


def _fuse(proto: onnx.ModelProto) -> tuple[onnxgraph.Model, dict[str, int]]:
    model = onnxgraph.from_proto(proto)
    annotate_types(model)
    stats = Fusions()(model).stats
    onnx.checker.check_model(model.to_proto(), full_check=True)
    return model, stats


@pytest.mark.parametrize(("exporter", "kv_heads"), FORMS)
def test_exported_sdpa_fuses_into_attention(kit, exporter, kv_heads):
    proto = build.gpt2(exporter=exporter, kv_heads=kv_heads, opset=23)
    model, stats = _fuse(proto)
    ops = kit.ops(model)
    assert stats["attention"] >= 2 and ops["Attention"] == 2
    assert ops["Softmax"] == 0 and ops["IsNaN"] == 0
    (scale,) = {n.attr("scale") for n in model.graph if n.op_type == "Attention"}
    assert scale == pytest.approx(8**-0.5)  # head_dim 8: sqrt(scale) on Q and on K
    _assert_same(kit, proto, model)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_bert_style_padding_mask(kit, exporter):
    proto = build.gpt2(exporter=exporter, causal_mask=False, opset=23)
    model, stats = _fuse(proto)
    assert stats["attention"] == 2 and kit.ops(model)["Attention"] == 2
    _assert_same(kit, proto, model)


def test_dynamo_lowest_fill_becomes_minus_1e38():
    model, _ = _fuse(build.gpt2(exporter="dynamo", opset=23))
    for node in model.graph:
        if node.op_type == "Attention":
            where = node.input(3).producer()
            while where is not None and where.op_type != "Where":  # through the row Expand
                where = where.input(0).producer()
            assert where is not None and float(const_value(where.input(2))) == pytest.approx(SAFE_FILL)


def test_minus_inf_mask_without_the_nan_guard_is_left_alone(kit):
    proto = build.gpt2(opset=23)
    graph = proto.graph
    for node in [n for n in graph.node if n.op_type == "IsNaN"]:  # drop the guard: MatMul reads the Softmax
        where = next(n for n in graph.node if node.output[0] in n.input and n.op_type == "Where")
        for user in graph.node:
            for i, name in enumerate(user.input):
                if name == where.output[0]:
                    user.input[i] = where.input[2]
        graph.node.remove(where)
        graph.node.remove(node)
    model, stats = _fuse(proto)
    assert stats["attention"] == 0 and kit.ops(model)["Softmax"] == 2


@pytest.mark.parametrize(("exporter", "kv_heads"), FORMS)
def test_optimize_keeps_the_fusion_verified(kit, exporter, kv_heads):
    proto = build.gpt2(exporter=exporter, kv_heads=kv_heads, opset=23)
    model, report = optimize(proto, input_shapes={"input_ids": [2, 8], "attention_mask": [2, 8]})
    assert report.verified and not report.rollbacks
    assert kit.ops(model)["Attention"] == 2 and kit.ops(model)["Softmax"] == 0
    _assert_same(kit, proto, model)


def test_repeat_kv_is_dropped_into_grouped_query_attention(kit):
    proto = build.gpt2(kv_heads=2, opset=23)
    model, report = optimize(proto, input_shapes={"input_ids": [2, 8], "attention_mask": [2, 8]})
    assert report.verified and not report.rollbacks
    model = onnxgraph.from_proto(model.to_proto())
    annotate_types(model)
    attentions = [n for n in model.graph if n.op_type == "Attention"]
    assert len(attentions) == 2 and kit.ops(model)["Expand"] < 2 * 2  # no repeat_kv Expand left
    for node in attentions:
        k_shape, v_shape = node.input(1).shape, node.input(2).shape
        assert k_shape is not None and v_shape is not None
        assert k_shape[1] == v_shape[1] == 2  # the kv heads themselves
    _assert_same(kit, proto, model)


def test_attention_needs_opset_23(kit):
    model, stats = _fuse(build.gpt2(opset=22))
    assert stats["attention"] == 0 and kit.ops(model)["Softmax"] == 2


def test_keys_transposed_elsewhere_are_transposed_back(kit):
    """K^T not from a Transpose (torchvision's ViT, dynamo: ``Reshape(Transpose(k, [1, 2, 0]))``)."""
    proto = onnx.parser.parse_model(
        """<ir_version: 10, opset_import: ["" : 23]>
        g (float[B, 2, S, 8] q, float[B, 2, 8, S] k_t, float[B, 2, S, 8] v) => (float[B, 2, S, 8] y) {
            s = Constant <value = float[1] {0.4204482}> ()
            qs = Mul(q, s)
            ks = Mul(k_t, s)
            scores = MatMul(qs, ks)
            probs = Softmax <axis = -1> (scores)
            y = MatMul(probs, v)
        }"""
    )
    model, stats = _fuse(proto)
    assert stats["attention"] == 1 and kit.ops(model)["Attention"] == 1 and kit.ops(model)["Softmax"] == 0
    (node,) = [n for n in model.graph if n.op_type == "Attention"]
    assert node.attr("scale") == pytest.approx(0.4204482**2)
    for shape in ({"q": [2, 2, 5, 8], "k_t": [2, 2, 8, 5], "v": [2, 2, 5, 8]}, None):
        kit.assert_same(proto, model, shapes=shape)


def test_unmasked_vit_attention_absorbs_its_scales(kit):
    """TorchScript's ViT form (no mask, no guard): the scale Muls go into Attention's scale."""
    proto = build.vit(opset=23)
    model, report = optimize(proto)
    ops = kit.ops(model)
    assert report.verified and not report.rollbacks
    assert ops["Attention"] == 2 and ops["Softmax"] == 0 and ops["Mul"] == 0  # Gelu fuses too
    kit.assert_same(proto, model, shapes={"pixel_values": [3, 3, 16, 16]})


def test_scales_not_yet_constant_are_not_left_outside(kit):
    """A scale that is not (yet) a constant: the unscaled, untransposed forms would match around its Muls and
    leave them outside the Attention; they wait instead (on torchvision's ViT-B/16 TorchScript export such
    an early match left 24 Mul and 24 Transpose nodes)."""
    proto = onnx.parser.parse_model(
        """<ir_version: 10, opset_import: ["" : 23]>
        g (float[B, 2, S, 8] q, float[B, 2, S, 8] k, float[B, 2, S, 8] v, float s) => (float[B, 2, S, 8] y) {
            qs = Mul(q, s)
            k_t = Transpose <perm = [0, 1, 3, 2]> (k)
            ks = Mul(k_t, s)
            scores = MatMul(qs, ks)
            probs = Softmax <axis = -1> (scores)
            y = MatMul(probs, v)
        }"""
    )
    model, stats = _fuse(proto)
    assert stats["attention"] == 0 and kit.ops(model)["Softmax"] == 1
