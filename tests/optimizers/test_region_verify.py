"""Region verification: only the nodes a candidate changed run, on the original's own values.

Planted faults are caught and blamed on the right pass and rewrite without bisecting prefixes; an
unchanged model runs no region; on the bundled builders the verdicts and results agree with the
whole-model verification."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import model_builders
import numpy as np
import onnx
import onnx.reference
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxgraph
from onnxgraph.model import Model
from onnxgraph.optimizers import optimize, registry
from onnxgraph.optimizers.base import Pass
from onnxgraph.optimizers.regions import Snapshot, changes
from onnxgraph.tensor import Tensor

LAYERS = 12


def _chain(layers: int = LAYERS) -> onnx.ModelProto:
    """``layers`` blocks of MatMul, Add bias, Sub offset, Tanh over x[2, 8] (no Relu, whose zeros could
    hide a fault from the outputs); the weights are all distinct."""
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    for i in range(layers):
        inits += [
            numpy_helper.from_array((rng.standard_normal((8, 8)) / 3).astype(np.float32), f"w{i}"),
            numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), f"b{i}"),
            numpy_helper.from_array(np.full(8, 0.1 * (i + 1), np.float32), f"o{i}"),
        ]
        nodes += [
            helper.make_node("MatMul", [x, f"w{i}"], [f"m{i}"], name=f"matmul{i}"),
            helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"], name=f"add{i}"),
            helper.make_node("Sub", [f"a{i}", f"o{i}"], [f"s{i}"], name=f"sub{i}"),
            helper.make_node("Tanh", [f"s{i}"], [f"r{i}"], name=f"tanh{i}"),
        ]
        x = f"r{i}"
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [2, 8])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


class _Faulty(Pass):
    """Base of the planted faults: ``commute`` puts the constant operand of every Add first (a correct
    rewrite, bit for bit), ``fault`` is the subclass's mistake."""

    rewrites = ("commute", "fault")

    def run(self, model: Model) -> Counter[str]:
        stats: Counter[str] = Counter()
        for node in list(model.graph):
            if node.op_type == "Add" and self.allows("commute") and not node.inputs[0].is_initializer():
                node.set_inputs(list(reversed(node.inputs)))
                stats["commute"] += 1
        if self.allows("fault"):
            stats["fault"] += self.fault(model)
        return stats

    def fault(self, model: Model) -> int:
        raise NotImplementedError


class PerturbConstant(_Faulty):
    """Replaces the offset of layer 5 by one a little larger."""

    name = "perturb-constant"

    def fault(self, model: Model) -> int:
        value = model.graph.initializers["o5"]
        if value.const_value.numpy()[0] > 1.0:  # already perturbed (0.6 in the model)
            return 0
        value.const_value = Tensor(value.const_value.numpy() + np.float32(0.5), name="o5")
        return 1


class SwapSub(_Faulty):
    """Swaps the operands of every Sub."""

    name = "swap-sub"

    def fault(self, model: Model) -> int:
        count = 0
        for node in list(model.graph):
            if node.op_type == "Sub" and node.name.startswith("sub"):
                node.set_inputs(list(reversed(node.inputs)))
                node.name = "swapped" + node.name
                count += 1
        return count


class BreakDeep(_Faulty):
    """Turns the Tanh of the next-to-last layer into a Sigmoid: one region, deep in the graph."""

    name = "break-deep"

    def fault(self, model: Model) -> int:
        for node in model.graph:
            if node.name == f"tanh{LAYERS - 2}" and node.op_type == "Tanh":
                node.op_type = "Sigmoid"
                return 1
        return 0


@pytest.fixture
def faulty(monkeypatch):
    for cls in (PerturbConstant, SwapSub, BreakDeep):
        monkeypatch.setitem(registry.passes(), cls.name, cls)


@pytest.mark.parametrize("fault", ["perturb-constant", "swap-sub", "break-deep"])
def test_a_planted_fault_is_caught_and_blamed_without_bisecting_prefixes(faulty, fault):
    said: list[str] = []
    model, report = optimize(_chain(), passes=["constants", fault, "noop", "cse", "dce"], on_progress=said.append)
    assert [(r.pass_name, r.rewrite) for r in report.rollbacks] == [(fault, "fault")]
    assert f"the regions that differ were changed by pass {fault} alone" in said
    assert not any(m.startswith("bisecting: trying the first") for m in said)
    assert report.ok and report.verification.mode == "regions" and report.verification.regions >= 1
    assert report.passes[1].changes == {"commute": LAYERS}  # the correct rewrite of the pass stays
    feeds = {"x": np.random.default_rng(1).standard_normal((2, 8)).astype(np.float32)}
    expected = onnx.reference.ReferenceEvaluator(_chain()).run(None, feeds)[0]
    actual = onnx.reference.ReferenceEvaluator(model.to_proto()).run(None, feeds)[0]
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_the_failing_check_names_the_regions_and_the_whole_model_confirms(faulty):
    from onnxgraph.optimizers import verify

    verdicts = []
    real_check = verify.Verifier.check

    def recorded(self, candidate):
        verdicts.append(real_check(self, candidate))
        return verdicts[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(verify.Verifier, "check", recorded)
        optimize(_chain(), passes=["constants", "break-deep", "dce"])
    failed = verdicts[0]
    assert not failed.passed and failed.mode == "whole"  # the whole model decided the failure
    assert [c.name for c in failed.diverged] == [f"r{LAYERS - 2}"]  # the one region that differs
    assert failed.diverged[0].max_abs > 0.1


def test_a_region_that_differs_where_the_outputs_cannot_tell_passes_as_the_whole_check_does(faulty):
    """A perturbed offset whose effect a Relu wipes out: the region differs, the outputs do not; the
    whole model decides, as whole-model verification would."""
    chain = _chain()
    for node in chain.graph.node:
        if node.op_type == "Tanh":
            node.op_type = "Relu"
    chain.graph.initializer[-1].CopyFrom(numpy_helper.from_array(np.full(8, 50.0, np.float32), f"o{LAYERS - 1}"))
    _, report = optimize(chain, passes=["perturb-constant"])
    assert report.ok and not report.rollbacks and report.verification.mode == "whole"
    assert [c.name for c in report.verification.diverged] == ["s5"]
    assert all(c.max_abs == 0 for c in report.verification.outputs)


def test_an_unchanged_model_runs_no_region():
    original = _chain()
    model = onnxgraph.from_proto(original)
    found = changes(Snapshot(model), onnxgraph.from_proto(original))
    assert found.nodes == [] and found.regions == 0 and found.needed == []
    _, report = optimize(original, passes=["dce"])
    assert report.verification.mode == "regions" and report.verification.regions == 0
    assert report.verification.region_values == 0 and report.verification.unchanged_outputs == [f"r{LAYERS - 1}"]


def test_merged_duplicate_constants_and_removed_identities_change_no_node():
    """Exporter-style: a weight used twice through an Identity, and an equal copy of another weight."""
    model = model_builders.transformer(layers=1, hidden=16, heads=2, vocab=32, max_positions=16)
    snapshot_model = onnxgraph.from_proto(model)
    snapshot = Snapshot(snapshot_model)
    optimized, report = optimize(model)
    found = changes(snapshot, optimized)
    changed = Counter(n.op_type for n in found.nodes)
    assert report.ok and found.regions >= 1
    # MatMuls whose weights kept their data are unchanged, whatever the passes did around them
    assert changed["MatMul"] < Counter(n.op_type for n in optimized.graph)["MatMul"]


BUILDERS = {
    "mlp": lambda: model_builders.mlp(),
    "transformer": lambda: model_builders.transformer(layers=2, hidden=16, heads=2, vocab=32, max_positions=16),
    "gpt2": lambda: model_builders.gpt2(layers=1, hidden=16, heads=2, vocab=32, max_positions=16),
    "vit": lambda: model_builders.vit(layers=1, hidden=16, heads=2, patch=8, image=16),
    "cnn": lambda: model_builders.cnn(),
    "resnet_like": lambda: model_builders.resnet_like(),
    "transformer_block": lambda: model_builders.transformer_block(),
    "llama_block": lambda: model_builders.llama_block(),
    "decomposed_layernorm": lambda: model_builders.decomposed_layernorm(),
    "if_branches": lambda: model_builders.if_branches(),
    "rnn_classifier": lambda: model_builders.rnn_classifier(),
    "audio_frontend": lambda: model_builders.audio_frontend(),
    "rms_norm_export": lambda: model_builders.rms_norm_export(),
    "token_type_expand": lambda: model_builders.token_type_expand(),
}


MODELS = Path(__file__).resolve().parents[2] / "models"
BUNDLED = {path.stem: (lambda path=path: str(path)) for path in sorted(MODELS.glob("*.onnx"))}


@pytest.mark.parametrize("name", [*sorted(BUILDERS), *(f"bundled:{n}" for n in BUNDLED)])
def test_region_and_whole_verification_agree_on_the_builders(name):
    model = BUNDLED[name.split(":")[1]]() if name.startswith("bundled:") else BUILDERS[name]()
    by_regions, regions_report = optimize(model)
    by_whole, whole_report = optimize(model, verify_regions=False)
    assert regions_report.ok == whole_report.ok
    assert [(r.pass_name, r.rewrite) for r in regions_report.rollbacks] == [
        (r.pass_name, r.rewrite) for r in whole_report.rollbacks
    ]
    assert by_regions.to_proto().SerializeToString() == by_whole.to_proto().SerializeToString()
    assert whole_report.verification.mode == "whole"


class NudgeScale(Pass):
    """Multiplies the constant of the Mul writing ``y1`` by 1 + 2**-20: within float32 tolerance, not bit-equal."""

    name = "nudge-scale"
    rewrites = ("nudge",)

    def run(self, model: Model) -> Counter[str]:
        value = model.graph.initializers["c"]
        if value.const_value.numpy()[0] != np.float32(3.0):
            return Counter()
        value.const_value = Tensor(value.const_value.numpy() * np.float32(1 + 2**-20), name="c")
        return Counter(nudge=1)


def test_a_graph_output_that_unchanged_nodes_also_read_must_match_bit_for_bit(kit, monkeypatch):
    """``y1`` is an output and feeds ``y2``: a rounding difference in it could grow in unchanged nodes."""
    monkeypatch.setitem(registry.passes(), NudgeScale.name, NudgeScale)
    model = kit.parse("""
    agraph (float[4] x) => (float[4] y1, float[4] y2) <float[4] c = {3.0, 3.0, 3.0, 3.0}> {
        y1 = Mul(x, c)
        y2 = Exp(y1)
    }""")
    _, report = optimize(model, passes=["nudge-scale"])
    verification = report.verification
    assert verification.mode == "whole" and "not equal to the original's" in verification.note
    assert report.ok and not report.rollbacks  # within tolerance on the whole run, as before
    assert sorted(c.name for c in verification.outputs) == ["y1", "y2"]
