"""Pass ``siblings``: MatMuls reading one input with their own constant weights merge into MatMul + Split."""

from __future__ import annotations

import pytest

from onnxgraph.optimizers.siblings import SiblingMerge

_QKV = """
<ir_version: 8, opset_import: ["" : OPSET]>
agraph (float[batch, seq, 4] x) => (float[batch, seq, 3] q, float[batch, seq, 3] k, float[batch, seq, 2] v)
        <float[4, 3] wq = {1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3}, float[4, 3] wk = {3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2},
         float[4, 2] wv = {1, -1, 2, -2, 3, -3, 4, -4}, float[3] bq = {0.5, 1, 2}, float[3] bk = {1, 2, 3},
         float[2] bv = {-1, 1}> {
    h = Relu(x)
    mq = MatMul(h, wq)
    q = Add(mq, bq)
    mk = MatMul(h, wk)
    k = Add(bk, mk)
    mv = MatMul(h, wv)
    v = Add(mv, bv)
}"""


@pytest.mark.parametrize("opset", [11, 17])
def test_qkv_projections_with_biases_become_one_matmul_add_and_split(kit, opset):
    text = _QKV.replace("OPSET", str(opset))
    model = kit.parse(text)
    stats = kit.apply(SiblingMerge(), model)
    assert stats["matmul_siblings"] == 1
    assert kit.ops(model) == {"Relu": 1, "MatMul": 1, "Add": 1, "Split": 1}
    assert [o.name for o in model.graph.outputs] == ["q", "k", "v"]


def test_without_biases_on_every_sibling_the_adds_stay_after_the_split(kit):
    text = _QKV.replace("OPSET", "17").replace("v = Add(mv, bv)", "v = Neg(mv)")
    model = kit.parse(text)
    stats = kit.apply(SiblingMerge(), model)
    assert stats["matmul_siblings"] == 1
    assert kit.ops(model) == {"Relu": 1, "MatMul": 1, "Split": 1, "Add": 2, "Neg": 1}


def test_a_weight_read_elsewhere_keeps_its_matmul(kit):
    text = _QKV.replace("OPSET", "17").replace("v = Add(mv, bv)", "v = Add(mv, bv)\n    q2 = Identity(wq)")
    text = text.replace("float[batch, seq, 2] v)", "float[batch, seq, 2] v, float[4, 3] q2)")
    model = kit.parse(text)
    stats = kit.apply(SiblingMerge(), model)
    assert stats["matmul_siblings"] == 1  # k and v merge; q keeps its own MatMul
    assert kit.ops(model)["MatMul"] == 2 and kit.ops(model)["Split"] == 1


def test_a_single_eligible_matmul_is_left_alone(kit):
    text = """
    agraph (float[2, 4] x, float[4, 3] w) => (float[2, 3] a, float[2, 3] b)
            <float[4, 3] c = {1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3}> {
        a = MatMul(x, w)
        b = MatMul(x, c)
    }"""
    model = kit.parse(text)
    assert not kit.apply(SiblingMerge(), model)["matmul_siblings"]
    assert kit.ops(model) == {"MatMul": 2}
