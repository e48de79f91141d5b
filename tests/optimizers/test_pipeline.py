"""optimize(): the default pipeline on the exporter-style transformer, determinism, rollback."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import onnx
import pytest

import onnxgraph
from onnxgraph.model import Model
from onnxgraph.optimizers import VerificationFailed, optimize, pipeline, registry
from onnxgraph.optimizers.base import Pass

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRANSFORMER = os.path.join(ROOT, "models", "transformer.onnx")


def test_transformer_is_simplified_and_keeps_symbolic_dims(kit):
    model, report = optimize(TRANSFORMER, input_shapes={"input_ids": [2, 7], "attention_mask": [2, 7]})
    assert report.ok and report.verification.passed and not report.rollbacks
    ops = kit.ops(model)
    # every attention Reshape reads a constant target: the Shape->Gather->Concat chains are gone
    assert all(n.inputs[1].is_initializer() for n in model.all_nodes() if n.op_type == "Reshape")
    assert ops["Concat"] == 0 and ops["Constant"] == 0 and ops["Shape"] <= 1  # one Shape feeds position ids
    assert report.after.nodes < report.before.nodes / 2
    assert [v.shape for v in model.graph.inputs] == [("batch", "sequence")] * 2
    assert model.graph.outputs[0].shape == ("batch", "sequence", 32)
    # sizes other than the verification's still agree with the original
    original = onnx.load(TRANSFORMER)
    for batch, seq in ((1, 1), (3, 11)):
        kit.assert_same(original, model, shapes={"input_ids": [batch, seq], "attention_mask": [batch, seq]})


def test_output_is_deterministic(tmp_path):
    paths = []
    for run in range(2):
        model, _ = optimize(TRANSFORMER, verify=False)
        paths.append(tmp_path / f"run{run}.onnx")
        onnxgraph.save(model, paths[-1])
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_library_accepts_an_in_memory_model_and_leaves_it_untouched():
    model = onnxgraph.load(TRANSFORMER)
    before = model.to_proto().SerializeToString()
    optimized, report = optimize(model)
    assert report.ok and report.after.nodes < report.before.nodes
    assert model.to_proto().SerializeToString() == before


class _WrongAddPass(Pass):
    """A deliberately wrong pass for the verifier to catch.

    Rewrites:
        1. ``harmless``: renames nothing (never changes the model).
        2. ``break_add``: turns every Add into a Sub.
    """

    name = "wrong-add"
    rewrites = ("harmless", "break_add")

    def run(self, model: Model) -> Counter[str]:
        stats: Counter[str] = Counter()
        for node in list(model.all_nodes()):
            if node.op_type == "Add" and self.allows("break_add"):
                node.op_type = "Sub"
                stats["break_add"] += 1
        return stats


class _WrongWholePass(_WrongAddPass):
    """The same mistake, with no rewrite case to blame: the whole pass must go."""

    name = "wrong-whole"
    rewrites = ()

    def allows(self, rewrite: str) -> bool:
        return True


@pytest.fixture
def wrong_passes(monkeypatch):
    monkeypatch.setitem(registry.passes(), _WrongAddPass.name, _WrongAddPass)
    monkeypatch.setitem(registry.passes(), _WrongWholePass.name, _WrongWholePass)


def test_a_wrong_rewrite_is_bisected_and_rolled_back(wrong_passes, kit):
    names = ["constants", "shapes", "wrong-add", "fold", "cse", "dce"]
    model, report = optimize(TRANSFORMER, passes=names)
    assert report.ok and report.verification.passed
    assert [(r.pass_name, r.rewrite) for r in report.rollbacks] == [("wrong-add", "break_add")]
    assert "last_hidden_state" in report.rollbacks[0].reason
    assert kit.ops(model)["Sub"] == 1  # only the model's own Sub (the attention mask)
    kit.assert_same(onnx.load(TRANSFORMER), model)
    # phase timings add up every run: the bisection's reruns of the passes count, not only the last
    assert report.timings["passes"] > sum(p.seconds for p in report.passes) > 0
    assert report.timings["verification"] > 0 and report.timings["load"] > 0


def test_a_wrong_pass_without_cases_is_dropped_entirely(wrong_passes):
    model, report = optimize(TRANSFORMER, passes=["constants", "wrong-whole", "dce"])
    assert report.ok
    assert [(r.pass_name, r.rewrite) for r in report.rollbacks] == [("wrong-whole", None)]
    assert [p.name for p in report.passes] == ["constants", "dce"]


def test_no_correct_model_raises_when_verified_whole(monkeypatch):
    """A loader that breaks the model is caught by the whole check, which runs the original from its file
    (region checks compare with the original as loaded: see the next test)."""

    def corrupted(source, allow_outside=False):
        def fresh():
            model = onnxgraph.load(source)
            for node in model.all_nodes():
                if node.op_type == "Add":
                    node.op_type = "Sub"  # as if loading itself were broken
            return model

        return fresh

    monkeypatch.setattr(pipeline, "_copier", corrupted)
    with pytest.raises(VerificationFailed) as info:
        optimize(TRANSFORMER, verify_regions=False)
    assert not info.value.report.ok
    _, report = optimize(TRANSFORMER)
    assert report.verification.mode == "regions"  # the loaded original is the reference there


def test_random_outputs_are_not_compared(kit):
    model = kit.parse("""
    agraph (float[2] x) => (float[2] y, float[2] r) <float[2] a = {1.0, 2.0}> {
        e = Exp(a)
        y = Add(x, e)
        r = RandomUniformLike(x)
    }""")
    optimized, report = optimize(model)
    assert report.ok and report.verification.skipped == ["r"]
    assert kit.ops(optimized)["RandomUniformLike"] == 1 and kit.ops(optimized)["Exp"] == 0
    np.testing.assert_array_equal([v.name for v in optimized.graph.outputs], ["y", "r"])


def test_unknown_pass_name_is_a_user_error():
    with pytest.raises(onnxgraph.OnnxGraphError, match="unknown pass 'nope'"):
        optimize(TRANSFORMER, passes=["nope"])


def test_verification_streams_the_candidate_to_a_temporary_file_and_keeps_external_weights(tmp_path, monkeypatch):
    from onnx import helper, numpy_helper

    from onnxgraph.serde import fileio

    w = np.random.default_rng(0).standard_normal((32, 32)).astype(np.float32)
    nodes = [helper.make_node("Identity", ["x"], ["xi"]), helper.make_node("MatMul", ["xi", "w"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", 1, ["n", 32])],
        [helper.make_tensor_value_info("y", 1, ["n", 32])],
        [numpy_helper.from_array(w, "w")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(proto, tmp_path / "m.onnx", save_as_external_data=True, location="m.data", size_threshold=0)
    saved = []
    real = fileio.save

    def spy(model, path, **kwargs):
        saved.append((os.path.dirname(path), kwargs.get("external_data")))
        return real(model, path, **kwargs)

    monkeypatch.setattr(fileio, "save", spy)
    model, report = optimize(tmp_path / "m.onnx", passes=["fold", "dce"], verify_regions=False)
    assert report.verification.passed
    assert model.graph.initializers["w"].const_value.is_external  # still read from m.data, not copied
    # the candidate went to verification's child through the streamed save into a temporary folder, now gone
    ((folder, layout),) = saved
    assert layout == "auto" and not os.path.exists(folder)
    assert sorted(os.listdir(tmp_path)) == ["m.data", "m.onnx"]


def test_loop_body_and_functions_are_optimized_with_outer_reads_kept(kit):
    model = kit.parse("""
    <ir_version: 8, opset_import: ["" : 17, "local" : 1]>
    agraph (float[N, 4] x) => (float[N, 4] y) <int64 trips = {2}, bool go = {1}, float[4] bias = {1.0, 2.0, 3.0, 4.0}> {
        scaled = Mul(x, x)
        looped = Loop(trips, go, x) <body = body (int64 i, bool c, float[N, 4] acc)
                                                 => (bool c_out, float[N, 4] acc_out) {
            c_out = Identity(c)
            two = Constant <value_float = 2.0> ()
            four = Mul(two, two)
            dead = Exp(scaled)
            shape = Shape(acc)
            step = Add(acc, scaled)
            grown = Mul(step, four)
            acc_out = Reshape(grown, shape)
        }>
        y = local.shift(looped, bias)
    }
    <domain: "local", opset_import: ["" : 17]>
    shift (a, b) => (r) {
        one = Constant <value_float = 1.0> ()
        two = Add(one, one)
        s = Add(a, b)
        r = Mul(s, two)
    }
    <domain: "local", opset_import: ["" : 17]>
    unused (a) => (r) { r = Neg(a) }""")
    before = model.to_proto()
    optimized, report = optimize(model, input_shapes={"x": [3, 4]})
    assert report.ok and not report.rollbacks
    body = next(n for n in optimized.graph if n.op_type == "Loop").attr("body")
    body_ops = [n.op_type for n in body]
    assert "Exp" not in body_ops and body_ops.count("Mul") == 1  # dead node gone, 2*2 folded
    scaled = next(n for n in optimized.graph if n.op_type == "Mul").outputs[0]
    assert any(n.graph is body for n, _ in scaled.uses())  # the outer value the body reads stays
    assert [f.name for f in optimized.functions.values()] == ["shift"]
    shift_ops = [n.op_type for n in optimized.functions[("local", "shift", "")].graph]
    assert shift_ops.count("Add") == 1 and "Constant" in shift_ops  # folded, as a Constant node
    kit.assert_same(before, optimized, shapes={"x": [5, 4]})


def test_passes_with_a_plain_constructor_join_the_pipeline(monkeypatch):
    class PlainPass(Pass):
        """Rewrites nothing; its constructor takes no arguments, like passes written elsewhere."""

        name = "plain"

        def __init__(self) -> None:
            pass

        def run(self, model: Model) -> Counter[str]:
            return Counter()

    monkeypatch.setitem(registry.passes(), "plain", PlainPass)
    _, report = optimize(TRANSFORMER, passes=["plain", "dce"], verify=False)
    assert [p.name for p in report.passes] == ["plain", "dce"]


def test_bisection_blames_the_rewrite_inside_a_real_pass(kit, monkeypatch):
    from onnxgraph.optimizers import shape_arith

    model = kit.parse("""
    agraph (float[N, 6] x) => (float[N, 2, 3] y) <int64[2] tail = {2, 3}, int64[1] minus = {-1}> {
        shape = Concat <axis = 0> (minus, tail)
        y = Reshape(x, shape)
    }""")
    wrong = dict(shape_arith.EVALUATORS)
    wrong["Concat"] = lambda node, arrays: [np.concatenate(arrays[::-1])]  # a bug in the fast path
    monkeypatch.setattr(shape_arith, "EVALUATORS", wrong)
    optimized, report = optimize(model, passes=["fold", "dce"], input_shapes={"x": [2, 6]})
    assert [(r.pass_name, r.rewrite) for r in report.rollbacks] == [("fold", "numpy")]
    assert report.passes[0].changes == {"onnxruntime": 1}  # folded anyway, by the session
    assert [n.op_type for n in optimized.graph] == ["Reshape"]


def test_ir3_initializers_listed_as_inputs_fold_and_stay_listed(kit):
    model = kit.parse("""
    <ir_version: 3, opset_import: ["" : 8]>
    agraph (float[2] x, float[2] w) => (float[2] y) <float[2] w = {1.0, 2.0}> {
        e = Exp(w)
        y = Add(x, e)
    }""")
    optimized, report = optimize(model)
    assert report.ok and [n.op_type for n in optimized.graph] == ["Add"]
    assert [v.name for v in optimized.graph.inputs] == ["x", "w"]
    assert optimized.graph.inputs[1].is_initializer()  # still an optional input with its default
    assert optimized.ir_version == 4  # the folded constant is an initializer that is not an input
    onnx.checker.check_model(optimized.to_proto())


class _FixesDims(Pass):
    """Rewrites:
    1. ``fix_reshape``: a Reshape target becomes the export-time size (batch 1): the classic bug.
    """

    name = "fixes-dims"
    rewrites = ("fix_reshape",)

    def run(self, model: Model) -> Counter[str]:
        stats: Counter[str] = Counter()
        for node in model.graph:
            if node.op_type == "Reshape" and not node.inputs[1].is_initializer() and self.allows("fix_reshape"):
                fixed = model.graph.make_initializer(onnxgraph.Tensor(np.array([1, 2, 3], np.int64)), "fixed")
                node.replace_input_with(1, fixed)
                stats["fix_reshape"] += 1
        return stats


def test_a_dimension_fixed_to_the_export_size_is_caught(kit, monkeypatch):
    monkeypatch.setitem(registry.passes(), _FixesDims.name, _FixesDims)
    model = kit.parse("""
    agraph (float[N, 6] x) => (float[N, 2, 3] y) <int64 zero = {0}, int64[1] axes = {0}, int64[2] tail = {2, 3}> {
        s = Shape(x)
        n = Gather(s, zero)
        nu = Unsqueeze(n, axes)
        shape = Concat <axis = 0> (nu, tail)
        y = Reshape(x, shape)
    }""")
    _, report = optimize(model, passes=["fixes-dims", "dce"])
    assert [(r.pass_name, r.rewrite) for r in report.rollbacks] == [("fixes-dims", "fix_reshape")]


def test_models_that_only_run_with_dynamic_dims_of_1_still_verify(kit):
    model = kit.parse("""
    agraph (float[N, 4] x) => (float[1, 4] y) <int64[2] shape = {1, 4}, float[4] a = {1.0, 2.0, 3.0, 4.0}> {
        e = Exp(a)
        s = Add(x, e)
        y = Reshape(s, shape)
    }""")
    optimized, report = optimize(model)
    assert report.ok and [n.op_type for n in optimized.graph] == ["Add", "Reshape"]
