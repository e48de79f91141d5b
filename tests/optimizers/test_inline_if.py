from __future__ import annotations

import numpy as np

from onnxgraph.optimizers.inline_if import InlineConstantIf

_IF_MODEL = """
agraph (float[2] x) => (float[2] y) <bool c = {%s}> {
    outer = Exp(x)
    y = If(c) <
        then_branch = g1 () => (float[2] t) <float[2] k = {10.0, 20.0}> { t = Add(outer, k) },
        else_branch = g2 () => (float[2] e) { s = Sin(outer) e = Neg(s) }
    >
}"""


def test_then_branch_inlined_with_its_initializers_and_outer_reads(kit):
    model = kit.parse(_IF_MODEL % "1")
    stats = kit.apply(InlineConstantIf(), model)
    assert stats["inline_branch"] == 1
    assert [n.op_type for n in model.graph] == ["Exp", "Add"]
    assert "k" in model.graph.initializers
    assert [v.name for v in model.graph.outputs] == ["y"]


def test_else_branch_inlined_and_untaken_branch_releases_outer_values(kit):
    model = kit.parse(_IF_MODEL % "0")
    kit.apply(InlineConstantIf(), model)
    assert [n.op_type for n in model.graph] == ["Exp", "Sin", "Neg"]
    exp = model.graph.nodes[0].outputs[0]
    assert [n.op_type for n, _ in exp.uses()] == ["Sin"]


def test_branch_returning_an_outer_value_gets_an_identity_for_the_graph_output(kit):
    model = kit.parse("""
    agraph (float[2] x) => (float[2] y) <bool c = {1}> {
        outer = Exp(x)
        y = If(c) <
            then_branch = g1 () => (float[2] t) { t = Identity(outer) },
            else_branch = g2 () => (float[2] e) { e = Neg(outer) }
        >
    }""")
    # onnxruntime rejects such a branch, but ONNX allows it: compare with numpy instead.
    model.graph.nodes[1].attr("then_branch").outputs[0] = model.graph.nodes[0].outputs[0]
    InlineConstantIf()(model)
    assert [n.op_type for n in model.graph] == ["Exp", "Identity", "Identity"]
    assert [v.name for v in model.graph.outputs] == ["y"]
    x = np.array([0.5, 1.0], np.float32)
    np.testing.assert_allclose(kit.run(model, {"x": x})["y"], np.exp(x), rtol=1e-6)


def test_if_with_runtime_condition_stays(kit):
    model = kit.parse("""
    agraph (bool c, float[2] x) => (float[2] y) {
        y = If(c) <
            then_branch = g1 () => (float[2] t) { t = Exp(x) },
            else_branch = g2 () => (float[2] e) { e = Neg(x) }
        >
    }""")
    assert not InlineConstantIf()(model).changed


def test_nested_if_inside_loop_body_with_constant_condition(kit):
    model = kit.parse("""
    agraph (float[2] x) => (float[2] y) <int64 n = {3}, bool t = {1}> {
        y = Loop(n, t, x) <body = body (int64 i, bool cond, float[2] acc) => (bool cond_out, float[2] acc_out) {
            cond_out = Identity(cond)
            k = Constant <value = bool {1}> ()
            acc_out = If(k) <
                then_branch = g1 () => (float[2] a) { a = Add(acc, x) },
                else_branch = g2 () => (float[2] b) { b = Sub(acc, x) }
            >
        }>
    }""")
    stats = kit.apply(InlineConstantIf(), model)
    assert stats["inline_branch"] == 1
    assert kit.ops(model)["If"] == 0 and kit.ops(model)["Add"] == 1


def test_graph_output_keeps_its_declared_shape_when_the_branch_declares_none(kit):
    # found by the fuzz test: the branch's shapeless result took over the output, and with it
    # the output lost its declared [N, 2] shape (the checker then rejected the model)
    model = kit.parse("""
    agraph (float[N, 2] x) => (float[N, 2] y) <bool c = {1}> {
        y = If(c) <
            then_branch = g1 () => (float t) { t = Relu(x) },
            else_branch = g2 () => (float e) { e = Neg(x) }
        >
    }""")
    kit.apply(InlineConstantIf(), model)
    assert [n.op_type for n in model.graph] == ["Relu"]
    assert [(v.name, v.shape) for v in model.graph.outputs] == [("y", ("N", 2))]
