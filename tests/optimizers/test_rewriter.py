"""The pattern rewriter: matching (commutation, multi-use, optional inputs, scopes), rewriting."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

import onnxgraph
from onnxgraph.optimizers.rewriter import (
    Pattern,
    RewriteRule,
    RewriteRuleSet,
    const_ints,
    const_value,
    fail,
    find_matches,
)
from onnxgraph.runtime.compare import compare_outputs
from onnxgraph.runtime.inputs import random_inputs, specs_of
from onnxgraph.runtime.sessions import run_model
from onnxgraph.shape_inference import annotate_types

HEADER = '<ir_version: 10, opset_import: ["" : 18]>\n'


def _model(graph_text: str) -> onnxgraph.Model:
    """A model from the text of graph ``g``'s signature and body."""
    model = onnxgraph.from_proto(onnx.parser.parse_model(HEADER + "g " + graph_text))
    annotate_types(model)
    return model


def _apply(rules: list[RewriteRule], model: onnxgraph.Model) -> Counter:
    """Apply ``rules``; check the model stays valid, keeps its interface and computes the same."""
    original = model.to_proto()
    feeds = random_inputs(specs_of(model), seed=5, dynamic_dim=3)
    expected = run_model(original, feeds)
    stats = RewriteRuleSet(rules).apply(model)
    optimized = model.to_proto()
    onnx.checker.check_model(optimized, full_check=True)
    assert [(o.name, o.type) for o in optimized.graph.output] == [(o.name, o.type) for o in original.graph.output]
    for result in compare_outputs(expected, run_model(optimized, feeds)):
        assert result.passed, result
    _assert_use_def_consistent(model)
    return stats


def _assert_use_def_consistent(model: onnxgraph.Model) -> None:
    for graph in model.all_graphs():
        for node in graph:
            for i, value in enumerate(node.inputs):
                if value is not None:
                    assert (node, i) in value.uses()
                    producer = value.producer()
                    assert producer is None or producer.graph is not None, f"{node} reads a removed node"
            for value in node.outputs:
                for user, i in value.uses():
                    assert user.inputs[i] is value and user.graph is not None


def _ops(model: onnxgraph.Model) -> Counter:
    return Counter(n.op_type for n in model.all_nodes())


# Relu(MatMul(x, w) + b) -> Relu(Gemm(x, w, b)) with a rule written as in the docs.
def _matmul_add(op, x, w, b):
    return op.Add(op.MatMul(x, w), b)


def _to_gemm(op, x, w, b):
    return op.Gemm(x, w, b)


MM = "(float[N,4] x, float[4,5] w, float[5] b) => (float[N,5] y)"


def test_rule_replaces_the_match_and_keeps_use_def_chains():
    model = _model(MM + " { m = MatMul(x, w)\n s = Add(m, b)\n y = Relu(s) }")
    stats = _apply([RewriteRule("gemm", _matmul_add, _to_gemm)], model)
    assert stats == {"gemm": 1}
    assert _ops(model) == {"Gemm": 1, "Relu": 1}


def test_root_output_that_is_a_graph_output_keeps_its_name():
    model = _model(MM + " { m = MatMul(x, w)\n y = Add(m, b) }")
    _apply([RewriteRule("gemm", _matmul_add, _to_gemm)], model)
    (output,) = model.graph.outputs
    assert output.name == "y" and output.producer().op_type == "Gemm" and output.shape == ("N", 5)


def test_commutative_inputs_only_when_asked():
    text = MM + " { m = MatMul(x, w)\n y = Add(b, m) }"
    model = _model(text)
    assert not _apply([RewriteRule("gemm", _matmul_add, _to_gemm)], model)

    def commuted(op, x, w, b):
        return op.Add(op.MatMul(x, w), b, _commute=True)

    model = _model(text)
    assert _apply([RewriteRule("gemm", commuted, _to_gemm)], model) == {"gemm": 1}


def test_intermediate_with_another_reader_is_refused_unless_allowed():
    text = (
        "(float[N,4] x, float[4,5] w, float[5] b) => (float[N,5] y, float[N,5] z) {"
        " m = MatMul(x, w)\n y = Add(m, b)\n z = Relu(m) }"
    )
    model = _model(text)
    assert not _apply([RewriteRule("gemm", _matmul_add, _to_gemm)], model)

    def shared(op, x, w, b):
        return op.Add(op.MatMul(x, w, _allow_other_uses=True), b)

    model = _model(text)
    assert _apply([RewriteRule("gemm", shared, _to_gemm)], model) == {"gemm": 1}
    assert _ops(model) == {"Gemm": 1, "MatMul": 1, "Relu": 1}  # the shared MatMul stays for Relu


def test_check_rejects_with_a_reason_and_passes_bindings():
    model = _model(MM + " { m = MatMul(x, w)\n s = Add(m, b)\n y = Relu(s) }")

    def reject(ctx, x, w, b):
        return fail("never")

    rule = RewriteRule("gemm", _matmul_add, _to_gemm, reject)
    assert rule.diagnose(model, model.graph.nodes[1]) == ["never"]
    assert rule.diagnose(model, model.graph.nodes[0]) == ["no match"]
    assert not _apply([rule], model)

    def scale(ctx, x, w, b):
        return {"alpha": 2.0}

    def to_half_gemm(op, x, w, b, alpha):
        return op.Mul(op.Gemm(x, w, b, alpha=alpha, beta=2.0), op.const(np.float32(0.5)))

    assert _apply([RewriteRule("gemm", _matmul_add, to_half_gemm, scale)], model) == {"gemm": 1}


def test_a_failed_check_tries_the_other_order():
    # Add(m1, m2): both inputs are MatMuls; the check only accepts the one whose weight is w2.
    text = (
        "(float[N,4] x, float[4,5] w1, float[4,5] w2) => (float[N,5] y) {"
        " m1 = MatMul(x, w1)\n m2 = MatMul(x, w2)\n y = Add(m1, m2) }"
    )
    model = _model(text)

    def pattern(op, x, w, b):
        return op.Add(op.MatMul(x, w), b, _commute=True)

    def only_w2(ctx, x, w, b):
        return None if w.name == "w2" else fail("not w2")

    assert _apply([RewriteRule("gemm", pattern, _to_gemm, only_w2)], model) == {"gemm": 1}
    gemm = next(n for n in model.graph if n.op_type == "Gemm")
    assert gemm.inputs[1].name == "w2" and gemm.inputs[2].producer().op_type == "MatMul"


def test_optional_variable_matches_present_and_omitted_inputs():
    def pattern(op, x, w, b=None):
        return op.Relu(op.Conv(x, w, b))

    text = (
        "(float[1,2,5,5] x, float[3,2,1,1] w, float[3] b) => (float[1,3,5,5] y, float[1,3,5,5] z) {"
        " c1 = Conv(x, w)\n y = Relu(c1)\n c2 = Conv(x, w, b)\n z = Relu(c2) }"
    )
    seen = []

    def record(op, x, w, b):
        seen.append(b)
        return op.Max(op.Conv(x, w, b), op.const(np.float32(0.0)))

    assert _apply([RewriteRule("conv_relu", pattern, record)], _model(text)) == {"conv_relu": 2}
    assert seen[0] is None and seen[1].name == "b"


def test_constant_pattern_matches_constants_of_that_value_only():
    def pattern(op, x):
        return op.Mul(x, 1.0)

    text = (
        "(float[N,3] x) => (float[N,3] y, float[N,3] z) {"
        " one = Constant<value = float[3] {1, 1, 1}>()\n two = Constant<value = float {2}>()\n"
        " a = Relu(x)\n m = Mul(a, one)\n y = Neg(m)\n n = Mul(a, two)\n z = Neg(n) }"
    )
    model = _model(text)
    assert _apply([RewriteRule("mul1", pattern, lambda op, x: x)], model) == {"mul1": 1}
    assert _ops(model)["Mul"] == 1


def test_replacement_that_cannot_take_a_graph_outputs_name_is_undone():
    model = _model(
        "(float[N,3] x) => (float[N,3] y) { y = Mul(x, k) }".replace("{ y", "{ k = Constant<value = float {1}>()\n y")
    )
    initializers = dict(model.graph.initializers)

    def replacement(op, x):
        op.const(np.float32(3.0))  # a constant the undo must take back
        op.Relu(x)
        return x

    assert not _apply([RewriteRule("mul1", lambda op, x: op.Mul(x, 1.0), replacement)], model)
    assert _ops(model) == {"Constant": 1, "Mul": 1} and model.graph.initializers == initializers


def test_outer_scope_producers_are_not_matched_from_a_subgraph():
    text = (
        "(float[N,4] x, float[4,5] w, float[5] b, bool c) => (float[N,5] y) {"
        " m = MatMul(x, w)\n y = If(c) <then_branch = t () => (float[N,5] ty) { ty = Add(m, b) },"
        " else_branch = e () => (float[N,5] ey) { em = MatMul(x, w)\n ey = Add(em, b) }> }"
    )
    model = _model(text)
    assert _apply([RewriteRule("gemm", _matmul_add, _to_gemm)], model) == {"gemm": 1}
    ops = _ops(model)
    assert ops["Gemm"] == 1 and ops["MatMul"] == 1  # only the else branch, wholly inside, was rewritten


def test_rules_apply_in_function_bodies_with_constant_nodes():
    text = (
        HEADER.replace('"" : 18', '"" : 18, "local" : 1')
        + """
    g (float[N,4] x) => (float[N,4] y) { y = local.f(x) }
    <domain: "local", opset_import: ["" : 18]>
    f (a) => (b) { b = Relu(a) }
    """
    )
    model = onnxgraph.from_proto(onnx.parser.parse_model(text))

    def replacement(op, x):
        return op.Max(x, op.const(np.float32(0.0)))

    stats = _apply([RewriteRule("relu_as_max", lambda op, x: op.Relu(x), replacement)], model)
    assert stats == {"relu_as_max": 1}
    body = next(iter(model.functions.values())).graph
    assert Counter(n.op_type for n in body) == {"Constant": 1, "Max": 1} and not body.initializers


def test_find_matches_yields_each_commuted_binding():
    model = _model("(float[N,4] x, float[N,4] z) => (float[N,4] y) { y = Add(x, z) }")
    pattern = Pattern.from_function(lambda op, a, b: op.Add(a, b, _commute=True))
    matches = list(find_matches(pattern, model.graph.nodes[0]))
    assert [(m.bindings["a"].name, m.bindings["b"].name) for m in matches] == [
        ("x", "z"),
        ("z", "x"),
    ]


def test_pattern_must_return_node_outputs():
    with pytest.raises(TypeError):
        Pattern.from_function(lambda op, x: x)


def test_intermediate_returned_by_a_subgraph_is_not_matched():
    # onnxruntime rejects a subgraph returning an outer value directly, so onnx.reference checks it.
    text = (
        "(float[N,4] x, float[4,5] w, float[5] b, bool c) => (float[N,5] y, float[N,5] z) {"
        " m = MatMul(x, w)\n y = Add(m, b)\n"
        " z = If(c) <then_branch = t () => (m) { }, else_branch = e () => (m) { }> }"
    )
    model = _model(text)
    feeds = random_inputs(specs_of(model), seed=5, dynamic_dim=3)
    expected = ReferenceEvaluator(model.to_proto()).run(None, feeds)
    assert not RewriteRuleSet([RewriteRule("gemm", _matmul_add, _to_gemm)]).apply(model)
    assert _ops(model)["MatMul"] == 1
    actual = ReferenceEvaluator(model.to_proto()).run(None, feeds)
    assert all(np.array_equal(e, a) for e, a in zip(expected, actual, strict=True))


def test_dag_pattern_with_a_shared_intermediate_fuses_layer_normalization():
    # The shape of the transformer fusions to come: x - mean(x) feeds both the numerator and the
    # variance, so the pattern is a DAG, not a tree.
    def pattern(op, x, axes, eps):
        centered = op.Sub(x, op.ReduceMean(x, axes))
        variance = op.ReduceMean(op.Pow(centered, 2.0), axes)
        return op.Div(centered, op.Sqrt(op.Add(variance, eps)))

    def check(ctx, x, axes, eps):
        epsilon = const_value(eps)
        if const_ints(axes) != [-1] or epsilon is None or epsilon.size != 1:
            return fail("not a last-axis normalization with a constant epsilon")
        return {"epsilon": float(epsilon.reshape(-1)[0])}

    def replacement(op, x, axes, eps, epsilon):
        ones, zeros = op.const(np.ones(8, np.float32)), op.const(np.zeros(8, np.float32))
        return op.LayerNormalization(x, ones, zeros, axis=-1, epsilon=epsilon)

    text = (
        "(float[N,S,8] x) => (float[N,S,8] y) {"
        " ax = Constant<value = int64[1] {-1}>()\n e = Constant<value = float {0.00001}>()\n"
        " mean = ReduceMean(x, ax)\n d = Sub(x, mean)\n sq = Pow(d, two)\n"
        " var = ReduceMean(sq, ax)\n"
        " s = Add(var, e)\n r = Sqrt(s)\n n = Div(d, r)\n y = Neg(n) }"
    ).replace("{ ax", "{ two = Constant<value = float {2}>()\n ax")
    model = _model(text)
    assert _apply([RewriteRule("layer_norm", pattern, replacement, check)], model) == {"layer_norm": 1}
    assert _ops(model) == {"LayerNormalization": 1, "Neg": 1}  # constants it read are gone too
