from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

import onnxgraph
from onnxgraph.optimizers.cse import CommonSubexpressionElimination


def test_duplicate_nodes_merge_and_readers_follow(kit):
    model = kit.parse("""
    agraph (float[2] x) => (float[2] y) {
        a = Exp(x)
        b = Exp(x)
        c = Relu(a)
        d = Relu(b)
        y = Add(c, d)
    }""")
    stats = kit.apply(CommonSubexpressionElimination(), model)
    assert kit.ops(model) == {"Exp": 1, "Relu": 1, "Add": 1}
    assert stats["node"] == 2


def test_different_attributes_do_not_merge(kit):
    model = kit.parse("""
    agraph (float[2] x) => (float[2] y, float[2] z) {
        y = LeakyRelu <alpha = 0.1> (x)
        z = LeakyRelu <alpha = 0.2> (x)
    }""")
    kit.apply(CommonSubexpressionElimination(), model)
    assert kit.ops(model) == {"LeakyRelu": 2}


def test_identical_initializers_and_constants_merge_by_content(kit):
    model = kit.parse("""
    agraph (float[3] x) => (float[3] y) <float[3] w1 = {1.0, 2.0, 3.0}, float[3] w2 = {1.0, 2.0, 3.0},
                                         float[3] w3 = {1.0, 2.0, 4.0}> {
        k1 = Constant <value = float[3] {5.0, 5.0, 5.0}> ()
        k2 = Constant <value = float[3] {5.0, 5.0, 5.0}> ()
        a = Add(x, w1)
        b = Add(x, w2)
        c = Add(x, w3)
        d = Mul(a, k1)
        e = Mul(b, k2)
        f = Add(d, e)
        y = Add(f, c)
    }""")
    stats = kit.apply(CommonSubexpressionElimination(), model)
    assert stats["initializer"] == 1
    assert set(model.graph.initializers) == {"w1", "w3"}
    assert kit.ops(model) == {"Constant": 1, "Add": 4, "Mul": 1}


def test_random_ops_never_merge(kit):
    model = kit.parse("""
    agraph (float[2] x) => (float[2] y) {
        a = RandomUniformLike(x)
        b = RandomUniformLike(x)
        y = Sub(a, b)
    }""")
    CommonSubexpressionElimination()(model)
    assert kit.ops(model)["RandomUniformLike"] == 2


def test_graph_outputs_keep_their_names(kit):
    model = kit.parse("""
    agraph (float[2] x) => (float[2] y, float[2] z) {
        y = Exp(x)
        z = Exp(x)
    }""")
    kit.apply(CommonSubexpressionElimination(), model)
    assert [v.name for v in model.graph.outputs] == ["y", "z"]


def test_large_external_initializers_merge_by_full_comparison(kit, tmp_path):
    rng = np.random.default_rng(0)
    w = rng.standard_normal(40_000).astype(np.float32)  # more bytes than the hashed prefix
    w_tail = w.copy()
    w_tail[-1] += 1.0  # same prefix, different content
    nodes = [helper.make_node("Add", ["x", n], [f"{n}_sum"]) for n in ("w1", "w2", "w3")]
    nodes += [helper.make_node("Add", ["w1_sum", "w2_sum"], ["d"]), helper.make_node("Add", ["d", "w3_sum"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", 1, [40_000])],
        [helper.make_tensor_value_info("y", 1, [40_000])],
        [numpy_helper.from_array(a, n) for n, a in (("w1", w), ("w2", w.copy()), ("w3", w_tail))],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(proto, tmp_path / "m.onnx", save_as_external_data=True, location="m.data")
    model = onnxgraph.load(tmp_path / "m.onnx")
    assert model.graph.initializers["w1"].const_value.is_external
    kit.apply(CommonSubexpressionElimination(), model)
    assert set(model.graph.initializers) == {"w1", "w3"}
