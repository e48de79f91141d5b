"""Every rewrite of ``noop`` and ``fuse`` has its own switch and its own rollback; a pass that raises is
rolled back like one that changed the outputs."""

from __future__ import annotations

from collections import Counter

import onnx
import pytest
from click.testing import CliRunner

import onnxgraph
from onnxgraph.cli import cli
from onnxgraph.model import Model
from onnxgraph.optimizers import optimize, registry
from onnxgraph.optimizers.base import Pass
from onnxgraph.optimizers.fusions import DEFAULT_RULES, Fusions
from onnxgraph.optimizers.noop import NoOpElimination

# Conv -> BatchNormalization (bn_into_conv), a 2-D MatMul + Add (matmul_add_to_gemm), Identity and an
# inference Dropout (noop's identity and dropout cases). The MatMul weights are Constant nodes: the
# rewriter sees the types of those, not yet of initializers loaded from a file.
MODEL = """
agraph (float[2, 1, 4, 4] x, float[2, 16] v) => (float[2, 2, 4, 4] y, float[2, 3] z)
  <float[2, 1, 1, 1] w = {1.0, -2.0}, float[2] scale = {2.0, 0.5}, float[2] bias = {0.1, 0.2},
   float[2] mean = {0.3, -0.3}, float[2] var = {1.0, 4.0}> {
    m = Constant <value = float[16, 3] {
     1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0,
     8.0, 9.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 1.0, 2.0, 3.0, 4.0, 5.0,
     6.0, 7.0, 8.0, 9.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 1.0, 2.0, 3.0}> ()
    b = Constant <value = float[3] {0.5, -0.5, 1.0}> ()
    c = Conv(x, w)
    bn = BatchNormalization(c, scale, bias, mean, var)
    y = Identity(bn)
    vi = Identity(v)
    vd = Dropout(vi)
    mm = MatMul(vd, m)
    z = Add(mm, b)
}"""


@pytest.fixture
def model(kit) -> Model:
    return kit.parse(MODEL)


def _rule(name: str):
    return next(r for r in DEFAULT_RULES.rules if r.name == name)


def test_noop_and_fuse_declare_their_rewrites():
    assert "identity" in NoOpElimination.rewrites and "arithmetic" in NoOpElimination.rewrites
    assert Fusions.rewrites == tuple(dict.fromkeys(r.name for r in DEFAULT_RULES.rules))  # one name per rule family
    with pytest.raises(ValueError, match="no rewrite"):
        NoOpElimination(disabled=["nope"])


def test_disable_switches_off_one_noop_case(kit, model):
    optimized, report = optimize(model, passes=["noop", "dce"], disabled={"noop": ["identity"]})
    assert kit.ops(optimized)["Identity"] == 2 and kit.ops(optimized)["Dropout"] == 0
    assert report.passes[0].changes == {"dropout": 1}


def test_disable_switches_off_one_fusion(kit, model):
    optimized, _ = optimize(model)
    assert kit.ops(optimized)["Gemm"] == 1
    optimized, report = optimize(model, disabled={"fuse": ["matmul_add_to_gemm"]})
    ops = kit.ops(optimized)
    assert ops["Gemm"] == 0 and ops["MatMul"] == 1 and ops["BatchNormalization"] == 0
    assert not report.rollbacks


def test_unknown_disabled_rewrite_is_a_user_error(model):
    with pytest.raises(onnxgraph.OnnxGraphError, match="pass 'fuse' has no rewrite 'gemm'"):
        optimize(model, disabled={"fuse": ["gemm"]})


def test_a_wrong_gemm_fusion_rolls_back_only_that_rule(kit, model, monkeypatch):
    rule = _rule("matmul_add_to_gemm")
    monkeypatch.setattr(rule, "replacement", lambda op, a, b, c, **_: op.Gemm(a, b, c, alpha=2.0))
    optimized, report = optimize(model)
    assert [(r.pass_name, r.rewrite) for r in report.rollbacks] == [("fuse", "matmul_add_to_gemm")]
    assert "output 'z'" in report.rollbacks[0].reason
    ops = kit.ops(optimized)
    assert ops["Gemm"] == 0 and ops["BatchNormalization"] == 0  # bn_into_conv still applied
    assert ops["Identity"] == 0 and ops["Dropout"] == 0
    kit.assert_same(model.to_proto(), optimized)


@pytest.mark.parametrize("verify", [True, False])
def test_a_rule_that_raises_is_bisected_and_rolled_back(kit, model, monkeypatch, verify):
    def boom(ctx, **_):
        raise RuntimeError("boom")

    monkeypatch.setattr(_rule("bn_into_conv"), "check", boom)
    optimized, report = optimize(model, verify=verify)
    assert [(r.pass_name, r.rewrite) for r in report.rollbacks] == [("fuse", "bn_into_conv")]
    assert report.rollbacks[0].reason == "pass 'fuse' raised RuntimeError: boom"
    ops = kit.ops(optimized)
    assert ops["BatchNormalization"] == 1 and ops["Gemm"] == 1  # only the raising rule is off
    kit.assert_same(model.to_proto(), optimized)


def test_a_noop_case_that_raises_is_rolled_back_alone(kit, model, monkeypatch):
    def boom(self, node):
        raise KeyError("broken")

    monkeypatch.setattr(NoOpElimination, "_try_identity", boom)
    optimized, report = optimize(model)
    assert [(r.pass_name, r.rewrite) for r in report.rollbacks] == [("noop", "identity")]
    assert kit.ops(optimized)["Identity"] == 2 and kit.ops(optimized)["Dropout"] == 0


class _Raises(Pass):
    """A pass without rewrite cases that always raises: the whole pass must go."""

    name = "raises"

    def run(self, model: Model) -> Counter[str]:
        raise AssertionError("invariant broken")


def test_a_raising_pass_is_dropped_and_the_command_warns(tmp_path, monkeypatch):
    monkeypatch.setitem(registry.passes(), _Raises.name, _Raises)
    source, out = tmp_path / "m.onnx", tmp_path / "o.onnx"
    onnx.save(onnx.parser.parse_model('<ir_version: 8, opset_import: ["" : 17]>\n' + MODEL), source)
    result = CliRunner().invoke(cli, ["optimize", str(source), "-o", str(out), "--passes", "noop,raises,fuse,dce"])
    assert result.exit_code == 0, result.output
    stderr = " ".join(result.stderr.split())  # rich wraps long lines
    assert "rolled back raises: pass 'raises' raised AssertionError: invariant broken" in stderr
    assert "verification: passed" in result.stdout and out.exists()


def test_cli_disable_option(tmp_path):
    source, out = tmp_path / "m.onnx", tmp_path / "o.onnx"
    onnx.save(onnx.parser.parse_model('<ir_version: 8, opset_import: ["" : 17]>\n' + MODEL), source)
    result = CliRunner().invoke(
        cli, ["optimize", str(source), "-o", str(out), "--disable", "noop:identity", "--disable", "fuse:bn_into_conv"]
    )
    assert result.exit_code == 0, result.output
    ops = Counter(n.op_type for n in onnx.load(out).graph.node)
    assert ops["Identity"] == 2 and ops["BatchNormalization"] == 1 and ops["Gemm"] == 1
    bad = CliRunner().invoke(cli, ["optimize", str(source), "-o", str(out), "--disable", "fuse:nope"])
    assert bad.exit_code == 2 and "pass 'fuse' has no rewrite 'nope'" in bad.stderr
