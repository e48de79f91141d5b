from __future__ import annotations

import numpy as np
import onnx
import pytest

import onnxgraph
from onnxgraph.optimizers import evaluate
from onnxgraph.optimizers.fold import ConstantFolding


def test_constant_chain_folds_into_one_initializer(kit):
    model = kit.parse("""
    agraph (float[2, 3] x) => (float[2, 3] y) <float[3, 2] w = {1.0, 2.0, 3.0, 4.0, 5.0, 6.0}> {
        wt = Transpose <perm = [1, 0]> (w)
        scaled = Mul(wt, wt)
        y = Add(x, scaled)
    }""")
    stats = kit.apply(ConstantFolding(), model)
    assert [n.op_type for n in model.graph] == ["Add"]
    assert stats["onnxruntime"] == 2
    np.testing.assert_array_equal(
        model.graph.nodes[0].inputs[1].const_value.numpy(), (np.arange(1, 7, dtype=np.float32).reshape(3, 2).T) ** 2
    )


def test_constant_subgraph_uses_one_session(kit, monkeypatch):
    model = kit.parse("""
    agraph (float[2] x) => (float[2] y) <float[2] a = {1.0, 2.0}> {
        b = Exp(a)
        c = Sin(b)
        d = Cos(a)
        e = Add(c, d)
        y = Mul(x, e)
    }""")
    calls = []
    real = evaluate.run_onnxruntime
    monkeypatch.setattr("onnxgraph.optimizers.fold.run_onnxruntime", lambda *a: calls.append(1) or real(*a))
    kit.apply(ConstantFolding(), model)
    assert len(calls) == 1
    assert [n.op_type for n in model.graph] == ["Mul"]


def test_shape_arithmetic_takes_the_numpy_path(kit, monkeypatch):
    model = kit.parse("""
    agraph (float[N, 6] x) => (float[N, 2, 3] y) <int64[2] tail = {2, 3}, int64[1] minus = {-1}> {
        shape = Concat <axis = 0> (minus, tail)
        y = Reshape(x, shape)
    }""")
    monkeypatch.setattr("onnxgraph.optimizers.fold.run_onnxruntime", _no_session)
    stats = kit.apply(ConstantFolding(), model)
    assert stats["numpy"] == 1
    assert [n.op_type for n in model.graph] == ["Reshape"]


def _no_session(*args):
    raise AssertionError("no session expected")


@pytest.mark.parametrize("op", ["RandomUniformLike", "RandomNormalLike", "Bernoulli"])
def test_random_ops_never_fold(kit, op):
    model = kit.parse(f"""
    agraph (float[2] x) => (float[2] y) <float[2] a = {{0.5, 0.5}}> {{
        r = {op}(a)
        y = Add(x, r)
    }}""")
    assert not ConstantFolding()(model).changed


def test_training_dropout_never_folds_but_inference_dropout_does(kit):
    text = """
    agraph (float[2] x) => (float[2] y) <float[2] a = {1.0, 2.0}, float r = {0.5}, bool t = {%s}> {
        d = Dropout(a, r, t)
        y = Add(x, d)
    }"""
    assert not ConstantFolding()(kit.parse(text % "1")).changed
    model = kit.parse(text % "0")
    kit.apply(ConstantFolding(), model)
    assert [n.op_type for n in model.graph] == ["Add"]


def test_size_limit_and_bloat_guard(kit):
    text = """
    agraph (float[%d] x) => (float[%d] y) <int64[1] n = {%d}> {
        big = ConstantOfShape <value = float[1] {1.0}> (n)
        y = Add(x, big)
    }"""
    small = kit.parse(text % (100, 100, 100))
    kit.apply(ConstantFolding(), small)
    assert [n.op_type for n in small.graph] == ["Add"]
    bloated = kit.parse(text % (10_000, 10_000, 10_000))  # a tiny shape would become 10,000 floats
    assert not ConstantFolding()(bloated).changed
    limited = kit.parse(text % (100, 100, 100))
    assert not ConstantFolding(size_limit=50)(limited).changed


def test_ops_onnxruntime_lacks_fall_back_to_the_reference_evaluator(kit, monkeypatch):
    model = kit.parse("""
    agraph (float[2] x) => (float[2] y) <float[2] a = {1.0, 4.0}> {
        s = Sqrt(a)
        y = Add(x, s)
    }""")
    monkeypatch.setattr("onnxgraph.optimizers.fold.run_onnxruntime", _unsupported)
    stats = kit.apply(ConstantFolding(), model)
    assert stats["reference"] == 1
    np.testing.assert_array_equal(model.graph.nodes[0].inputs[1].const_value.numpy(), [1.0, 2.0])


def _unsupported(*args):
    raise evaluate.EvaluationError("not implemented")


def test_folding_inside_functions_makes_constant_nodes(kit):
    model = kit.parse("""
    <ir_version: 8, opset_import: ["" : 17, "local" : 1]>
    agraph (float[2] x) => (float[2] y) {
        y = local.f(x)
    }
    <domain: "local", opset_import: ["" : 17]>
    f (a) => (b) {
        two = Constant <value_float = 2.0> ()
        four = Mul(two, two)
        b = Add(a, four)
    }""")
    kit.apply(ConstantFolding(), model)
    body = next(iter(model.functions.values())).graph
    assert [n.op_type for n in body].count("Mul") == 0
    assert not body.initializers


def test_folding_in_subgraphs_reads_outer_constants(kit):
    model = kit.parse("""
    agraph (bool c, float[2] x) => (float[2] y) <float[2] k = {1.0, 2.0}> {
        y = If(c) <
            then_branch = g1 () => (float[2] t) { e = Exp(k) t = Add(x, e) },
            else_branch = g2 () => (float[2] f) { f = Neg(x) }
        >
    }""")
    kit.apply(ConstantFolding(), model)
    assert kit.ops(model)["Exp"] == 0


def test_graph_output_computed_from_constants_keeps_its_name(kit):
    model = kit.parse("""
    agraph (float[2] x) => (float[2] y, float[2] z) <float[2] a = {1.0, 2.0}> {
        y = Relu(x)
        z = Exp(a)
    }""")
    kit.apply(ConstantFolding(), model)
    assert [v.name for v in model.graph.outputs] == ["y", "z"]
    assert "z" in model.graph.initializers


def test_identities_of_a_batch_result_are_folded_without_joining_the_session(monkeypatch):
    """A gradient's many copies of one constant: the session holds the Expand alone, the copies are
    resolved after it (copies read by another batch node join the batch, as that node needs them)."""
    import onnxgraph.optimizers.fold as fold

    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[4] x) => (float[4] y0, float[4] y1, float[4] y2, float[4] z) <float one = {1.0}, int64[1] shape = {4}> {
        e = Expand(one, shape)
        y0 = Identity(e)
        y1 = Identity(e)
        c = Identity(e)
        y2 = Identity(c)
        n = Neg(c)
        z = Add(x, n)
    }
    """
    model = onnxgraph.load(onnx.parser.parse_model(text).SerializeToString())
    sessions = []
    real = fold.run_onnxruntime

    def recording(proto, feeds):
        sessions.append(sorted(n.op_type for n in proto.graph.node))
        return real(proto, feeds)

    monkeypatch.setattr(fold, "run_onnxruntime", recording)
    stats = fold.ConstantFolding().run(model)
    assert sessions == [["Expand", "Identity", "Neg"]]  # the copy Neg reads joined; y0, y1, y2 did not
    assert stats["numpy"] == 3 and stats["onnxruntime"] == 3
    for name in ("y0", "y1", "y2"):
        value = next(v for v in model.graph.outputs if v.name == name)
        np.testing.assert_array_equal(value.const_value.numpy(), np.ones(4, np.float32))
    assert [n.op_type for n in model.graph] == ["Add"]
