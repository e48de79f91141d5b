from __future__ import annotations

import numpy as np

from onnxgraph.optimizers.constants import ConstantsToInitializers


def test_constant_nodes_become_initializers_with_their_names(kit):
    model = kit.parse("""
    agraph (float[2] x) => (float[2] y) {
        c = Constant <value = float[2] {1.0, 2.0}> ()
        k = Constant <value_float = 3.0> ()
        s = Add(x, c)
        y = Mul(s, k)
    }""")
    stats = kit.apply(ConstantsToInitializers(), model)
    assert stats["constant_to_initializer"] == 2
    assert kit.ops(model)["Constant"] == 0
    assert set(model.graph.initializers) == {"c", "k"}
    np.testing.assert_array_equal(model.graph.initializers["c"].const_value.numpy(), [1.0, 2.0])


def test_constants_inside_functions_stay_constant_nodes(kit):
    model = kit.parse("""
    <ir_version: 8, opset_import: ["" : 17, "local" : 1]>
    agraph (float[2] x) => (float[2] y) {
        y = local.addone(x)
    }
    <domain: "local", opset_import: ["" : 17]>
    addone (a) => (b) {
        one = Constant <value_float = 1.0> ()
        b = Add(a, one)
    }""")
    stats = kit.apply(ConstantsToInitializers(), model)
    assert not stats
    body = next(iter(model.functions.values())).graph
    assert [n.op_type for n in body] == ["Constant", "Add"]


def test_constants_in_subgraphs_become_subgraph_initializers(kit):
    model = kit.parse("""
    agraph (bool c, float[2] x) => (float[2] y) {
        y = If(c) <
            then_branch = g1 () => (float[2] t) { k = Constant <value = float[2] {1.0, 1.0}> () t = Add(x, k) },
            else_branch = g2 () => (float[2] e) { e = Neg(x) }
        >
    }""")
    kit.apply(ConstantsToInitializers(), model)
    then_branch = model.graph.nodes[0].attr("then_branch")
    assert list(then_branch.initializers) == ["k"]
    assert kit.ops(model)["Constant"] == 0
