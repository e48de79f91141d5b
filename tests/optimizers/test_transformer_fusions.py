"""Transformer fusions of pass ``fuse`` (LayerNormalization, RMSNormalization, Gelu, Attention) and
``optimize(target="ort")``: structure, and outputs against onnxruntime on the original."""

from __future__ import annotations

from collections import Counter

import model_builders as build
import numpy as np
import onnx
import pytest

import onnxgraph
from onnxgraph import Graph, Tensor, Value
from onnxgraph.optimizers import optimize
from onnxgraph.optimizers.fusions import Fusions, ort_support
from onnxgraph.optimizers.fusions.normalization import RULES as NORMALIZATION_RULES
from onnxgraph.optimizers.fusions.rotary import repeats_halves
from onnxgraph.shape_inference import annotate_types

SHAPES = {"input_ids": [2, 8], "attention_mask": [2, 8]}


def _fuse(kit, proto: onnx.ModelProto, shapes=None) -> tuple[onnxgraph.Model, Counter[str]]:
    """Run pass ``fuse`` alone on ``proto``; check validity and outputs against the original."""
    model = onnxgraph.from_proto(proto)
    annotate_types(model)
    stats = Fusions()(model).stats
    onnx.checker.check_model(model.to_proto(), full_check=True)
    kit.assert_same(proto, model, shapes=shapes)
    return model, stats


@pytest.mark.parametrize("opset", [17, 18])
def test_layernorm_replaces_the_written_out_chain(kit, opset):
    model, stats = _fuse(kit, build.decomposed_layernorm(gain=1.0, opset=opset))
    ops = kit.ops(model)
    assert stats["layernorm"] == 1 and ops["LayerNormalization"] == 1
    assert not {"ReduceMean", "Sub", "Pow", "Sqrt", "Div", "Add", "Mul"} & set(ops)
    (ln,) = [n for n in model.graph if n.op_type == "LayerNormalization"]
    assert ln.attr("axis") == -1 and ln.attr("epsilon") == pytest.approx(1e-5)


def test_layernorm_needs_opset_17(kit):
    model, stats = _fuse(kit, build.decomposed_layernorm(gain=1.0, opset=16))
    assert not stats and kit.ops(model)["ReduceMean"] == 2


@pytest.mark.parametrize(("gelu", "rule"), [("erf", "gelu_erf"), ("tanh", "gelu_tanh")])
def test_gelu_forms(kit, gelu, rule):
    model, stats = _fuse(kit, build.transformer(gelu=gelu, opset=20), SHAPES)
    ops = kit.ops(model)
    assert stats[rule] == 2 and ops["Gelu"] == 2
    assert ops["Erf"] == 0 and ops["Tanh"] == 0
    approximate = {n.attr("approximate", "none") for n in model.graph if n.op_type == "Gelu"}
    assert approximate == ({"none"} if gelu == "erf" else {"tanh"})


def test_gelu_needs_opset_20(kit):
    model, stats = _fuse(kit, build.transformer(opset=19), SHAPES)
    assert stats["gelu_erf"] == 0 and kit.ops(model)["Erf"] == 2


def test_rmsnorm_rotary_and_causal_attention_on_a_llama_style_decoder(kit):
    model, stats = _fuse(kit, build.decoder(opset=23), {"input_ids": [2, 8]})
    ops = kit.ops(model)
    assert stats["rmsnorm"] == 5 and ops["RMSNormalization"] == 5  # 2 per layer and the final norm
    assert stats["attention"] == 2 and ops["Attention"] == 2
    assert stats["rotary"] == 4 and ops["RotaryEmbedding"] == 4  # Q and K of each layer
    assert ops["Sqrt"] == 0 and ops["ReduceMean"] == 0 and ops["Softmax"] == 0 and ops["Neg"] == 0
    masks = [n.inputs[3] for n in model.graph if n.op_type == "Attention"]
    assert all(m is not None for m in masks)  # the causal mask became attn_mask


def test_attention_with_a_padding_mask(kit):
    model, stats = _fuse(kit, build.transformer(opset=23), SHAPES)
    ops = kit.ops(model)
    assert stats["attention"] == 2 and ops["Attention"] == 2 and ops["Softmax"] == 0
    # [batch, 1, 1, seq] masks are expanded to onnxruntime's [.., q_seq, kv_seq]
    assert ops["Expand"] == 2


@pytest.mark.parametrize("hidden_scale", [1.0, 4e-3])
def test_rmsnorm_as_the_torchscript_exporter_writes_rsqrt(kit, hidden_scale):
    """``torch.rsqrt`` exports as ``Div(1, Sqrt(...))`` (Llama/Qwen2 TorchScript exports, converted to
    opset 23 with ``onnxgraph convert --opset 23``: 9 norms of the real Llama export fuse)."""
    import onnx.version_converter

    proto = onnx.version_converter.convert_version(build.rms_norm_export(scale=hidden_scale), 23)
    model, stats = _fuse(kit, proto, {"x": [2, 3, 64]})
    ops = kit.ops(model)
    assert stats["rmsnorm"] == 1 and ops["RMSNormalization"] == 1
    assert not {"Pow", "ReduceMean", "Sqrt", "Div"} & set(ops)


def test_rmsnorm_without_scale_through_the_pipeline():
    """The decoder's unit RMSNorm weights go in ``noop``: the scale-free form is fused then."""
    model, report = optimize(build.decoder(opset=23), input_shapes={"input_ids": [2, 8]})
    fuse = next(p for p in report.passes if p.name == "fuse")
    assert report.ok and not report.rollbacks
    assert fuse.changes["rmsnorm"] == 5 and Counter(n.op_type for n in model.graph)["RMSNormalization"] == 5


def test_rotary_needs_cos_and_sin_that_repeat_their_halves():
    graph = Graph("g")
    table = np.tile(np.arange(6, dtype=np.float32).reshape(3, 2), (1, 2))  # [3, 4], halves equal
    assert repeats_halves(graph.make_initializer(Tensor(table), "repeated"), 2)
    table[0, 3] += 1.0
    assert not repeats_halves(graph.make_initializer(Tensor(table), "different"), 2)
    assert not repeats_halves(Value("runtime"), 2)  # not provable


def test_probe_says_what_onnxruntime_runs():
    assert ort_support.ort_implements("LayerNormalization", 17)
    assert ort_support.ort_implements("RMSNormalization", 23)
    assert not ort_support.ort_implements("RMSNormalization", 22)  # not in that opset
    assert not ort_support.ort_implements("Gelu", 19)


def test_probe_off_keeps_every_fusion_off(kit, monkeypatch):
    monkeypatch.setattr(ort_support, "ort_implements", lambda op_type, opset: False)
    model, stats = _fuse(kit, build.decoder(opset=23), {"input_ids": [2, 8]})
    ops = kit.ops(model)
    assert not (stats["rmsnorm"] or stats["attention"] or stats["rotary"])
    assert ops["RMSNormalization"] == 0 and ops["Attention"] == 0 and ops["Softmax"] == 2 and ops["Neg"] == 4
    proto = build.decomposed_layernorm(gain=1.0, opset=17)
    model = onnxgraph.from_proto(proto)
    annotate_types(model)
    div = next(n for n in model.graph if n.op_type == "Add" and n.name == "ln/bias")
    reasons = NORMALIZATION_RULES.rules[0].diagnose(model, div)
    assert reasons == ["the installed onnxruntime does not implement LayerNormalization at opset 17"]


@pytest.mark.parametrize("rule", ["layernorm", "attention", "gelu_erf"])
def test_each_fusion_has_its_own_switch(rule):
    proto = build.decomposed_layernorm(gain=1.0, opset=23) if rule == "layernorm" else build.transformer(opset=23)
    shapes = None if rule == "layernorm" else SHAPES
    fused_op = {"layernorm": "LayerNormalization", "attention": "Attention", "gelu_erf": "Gelu"}[rule]
    on, _ = optimize(proto, input_shapes=shapes)
    off, report = optimize(proto, input_shapes=shapes, disabled={"fuse": [rule]})
    assert report.ok
    assert Counter(n.op_type for n in on.graph)[fused_op] > 0
    assert Counter(n.op_type for n in off.graph)[fused_op] == 0


@pytest.mark.parametrize(("gelu", "model_type", "gelu_op"), [("erf", "bert", "BiasGelu"), ("tanh", "gpt2", "FastGelu")])
def test_target_ort_adds_contrib_ops_and_keeps_outputs(kit, gelu, model_type, gelu_op):
    proto = build.transformer(gelu=gelu)
    model, report = optimize(proto, input_shapes=SHAPES, target="ort", model_type=model_type)
    assert report.ok and report.contrib is not None and report.contrib.applied
    contrib = Counter(n.op_type for n in model.graph if n.domain == "com.microsoft")
    assert contrib == Counter(report.contrib.contrib_ops)
    assert contrib["SkipLayerNormalization"] == 4 and contrib["EmbedLayerNormalization"] == 1 and contrib[gelu_op] == 2
    assert model.opset_imports.get("com.microsoft") == 1
    assert report.timings["onnxruntime_fusions"] > 0
    kit.assert_same(proto, model, shapes=SHAPES)


def test_target_ort_keeps_the_standard_model_when_onnxruntime_fails(monkeypatch):
    from onnxruntime.transformers import optimizer

    def broken(*args, **kwargs):
        raise RuntimeError("no fusion today")

    monkeypatch.setattr(optimizer, "optimize_model", broken)
    model, report = optimize(build.transformer(), input_shapes=SHAPES, target="ort")
    assert report.ok and report.contrib is not None and not report.contrib.applied
    assert "no fusion today" in report.contrib.reason
    assert not [n for n in model.graph if n.domain == "com.microsoft"]


def test_target_ort_on_the_command_line(tmp_path):
    from click.testing import CliRunner

    from onnxgraph.cli import cli

    source, out = tmp_path / "bert.onnx", tmp_path / "bert.ort.onnx"
    onnx.save(build.transformer(), source)
    args = ["optimize", str(source), "-o", str(out), "--target", "ort", "--input-shape", "input_ids=2,8"]
    result = CliRunner().invoke(cli, [*args, "--input-shape", "attention_mask=2,8"])
    assert result.exit_code == 0, result.output
    assert "SkipLayerNormalization 4" in result.output
    assert any(n.domain == "com.microsoft" for n in onnx.load(out).graph.node)


@pytest.mark.parametrize("opset", [17, 23])
def test_target_ort_leaves_the_norm_patterns_to_onnxruntime(kit, opset):
    """The decoder's RMSNorm weights are ones: ``noop`` would drop them, and at opset 23 ``rmsnorm``
    would fuse the norms, each taking onnxruntime's SkipSimplifiedLayerNormalization pattern away;
    ``--target ort`` leaves them to onnxruntime."""
    proto = build.decoder(opset=opset)
    model, report = optimize(proto, input_shapes={"input_ids": [2, 8]}, target="ort", model_type="gpt2")
    assert report.ok and report.contrib is not None and report.contrib.applied
    assert report.contrib.contrib_ops == {"SkipSimplifiedLayerNormalization": 4}
    _assert_first_norm_is_standard(model, opset)
    kit.assert_same(proto, model, shapes={"input_ids": [2, 8]})


def _assert_first_norm_is_standard(model: onnxgraph.Model, opset: int) -> None:
    """onnxruntime fuses the first layer's input norm (after the embedding Gather, no residual Add before
    it) into a default-domain SimplifiedLayerNormalization, which ONNX does not define; ``--target ort``
    makes it RMSNormalization at opset 23, written-out standard ops below, so the result passes onnx.checker."""
    from onnxgraph.runtime.written import checker_problem

    norms = [n.op_type for n in model.graph if n.op_type in ("RMSNormalization", "SimplifiedLayerNormalization")]
    assert norms == (["RMSNormalization"] if opset >= 23 else [])
    assert checker_problem(model) == ""


KV_SHAPES = {"input_ids": [2, 3], "attention_mask": [2, 8]} | {
    f"past_{kind}_{layer}": [2, 2, 5, 8] for layer in range(2) for kind in ("key", "value")
}
"""``build.kv_decoder()``: batch 2, 3 new tokens after 5 cached ones, 2 kv heads of size 8."""


def test_kv_decoder_builder_is_a_causal_decoder_with_a_cache(kit):
    """``build.kv_decoder``'s cache works as a decoder's: prefilling 5 tokens and then decoding the 6th
    with the returned presents gives the logits and presents of one run over all 6, and the first 5
    tokens' logits do not depend on the 6th (causal mask)."""
    proto = build.kv_decoder()
    ids = np.random.default_rng(0).integers(0, 100, (2, 6))
    empty = np.zeros((2, 2, 0, 8), np.float32)

    def run(tokens: np.ndarray, past: list[np.ndarray], total: int) -> list[np.ndarray]:
        feeds = {"input_ids": tokens, "attention_mask": np.ones((2, total), np.int64)}
        for layer in range(2):
            feeds[f"past_key_{layer}"], feeds[f"past_value_{layer}"] = past[2 * layer], past[2 * layer + 1]
        return list(kit.run(proto, feeds).values())  # logits, then each layer's present key and value

    full = run(ids, [empty] * 4, 6)
    prefill = run(ids[:, :5], [empty] * 4, 5)
    step = run(ids[:, 5:], prefill[1:], 6)
    np.testing.assert_allclose(prefill[0], full[0][:, :5], atol=1e-5)
    np.testing.assert_allclose(step[0], full[0][:, 5:], atol=1e-5)
    for got, expected in zip(step[1:], full[1:]):
        assert got.shape == (2, 2, 6, 8)
        np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("opset", [17, 23])
def test_target_ort_on_a_kv_cache_decoder_matches_onnxruntimes_optimizer(kit, opset):
    """A llama-style decoder with past keys/values and grouped-query attention, as the TorchScript exporter
    writes transformers 5's LlamaForCausalLM: ``--target ort`` gets the ``com.microsoft`` ops onnxruntime's
    optimizer alone gets (no attention fusion on this export: see docs/optimize.md) and the same logits and
    present keys/values."""
    optimizer = pytest.importorskip("onnxruntime.transformers.optimizer", reason="onnxruntime's transformers optimizer")
    alone = optimizer.optimize_model(
        build.kv_decoder(opset=opset), model_type="gpt2", opt_level=0, num_heads=4, hidden_size=32
    ).model
    proto = build.kv_decoder(opset=opset)
    model, report = optimize(proto, input_shapes=KV_SHAPES, target="ort", model_type="gpt2")
    assert report.ok and report.contrib is not None and report.contrib.applied
    expected = Counter(n.op_type for n in alone.graph.node if n.domain == "com.microsoft")
    assert Counter(report.contrib.contrib_ops) == expected == Counter({"SkipSimplifiedLayerNormalization": 4})
    assert len(model.graph) < len(alone.graph.node)
    _assert_first_norm_is_standard(model, opset)
    assert [o.name for o in model.graph.outputs] == [o.name for o in proto.graph.output]
    kit.assert_same(proto, model, shapes=KV_SHAPES)
