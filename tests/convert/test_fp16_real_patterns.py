"""float16 conversion of patterns found in real torch exports (benchmarks/real_exports_check.py), built
small by models/build.py and judged on onnxruntime against the float32 original."""

from __future__ import annotations

import os

import model_builders as build
import onnx
import onnx.parser
import pytest

import onnxgraph
from onnxgraph.convert.precision import DEFAULT_BLOCK_LIST, to_half
from onnxgraph.convert.verify import ScaleComparison, verify_conversion
from onnxgraph.shape_inference import infer_shapes

FP16, FLOAT = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT


def _fp16(proto: onnx.ModelProto, **kwargs) -> onnxgraph.Model:
    model = onnxgraph.load(proto)
    infer_shapes(model)
    to_half(model, FP16, **kwargs)
    return model


def _relative_l2(proto: onnx.ModelProto, converted: onnxgraph.Model) -> float:
    result = verify_conversion(
        onnxgraph.load(proto), converted, half_type=FP16, input_shapes={"x": [2, 16, 64]}, tolerance=1.0
    )
    assert result.ran_on_onnxruntime and result.passed, result
    (output,) = result.comparisons
    assert isinstance(output, ScaleComparison)
    return output.relative_l2


def test_rms_norm_square_is_computed_in_float32_with_its_reduction():
    """Llama and Qwen2 TorchScript exports: Pow(x, 2) in float16 turned hidden states of a few
    thousandths into subnormal squares, 7.3e-3 relative error on a 4-layer Llama (6.2e-4 with the square
    in float32, as the dynamo export of the same model gets)."""
    proto = build.rms_norm_export()
    converted = _fp16(proto)
    onnx.checker.check_model(converted.to_proto(), full_check=True)
    (pow_node,) = [n for n in converted.graph if n.op_type == "Pow"]
    assert [v and v.elem_type for v in (*pow_node.inputs, *pow_node.outputs)] == [FLOAT, FLOAT, FLOAT]
    (mean,) = [n for n in converted.graph if n.op_type == "ReduceMean"]
    assert mean.inputs[0] is pow_node.outputs[0]  # no Cast between the square and its reduction
    muls = {n.name: n for n in converted.graph if n.op_type == "Mul"}
    # the rest stays in half
    assert all(v is not None and v.elem_type == FP16 for n in muls.values() for v in n.outputs)
    assert _relative_l2(proto, converted) < 1.5e-3


def test_square_read_by_a_half_precision_op_stays_in_half():
    """Only a square whose every reader is kept in float32 moves to float32 with them."""
    proto = build.rms_norm_export()
    converted = _fp16(proto, block_list=DEFAULT_BLOCK_LIST - {"ReduceMean"})
    (pow_node,) = [n for n in converted.graph if n.op_type == "Pow"]
    assert pow_node.outputs[0].elem_type == FP16


@pytest.mark.parametrize("scale", [4e-3, 1.0])
def test_rms_norm_error_is_float16_rounding_at_any_scale(scale):
    proto = build.rms_norm_export(scale=scale)
    assert _relative_l2(proto, _fp16(proto)) < 1.5e-3


def _vanishing_model(path) -> None:
    """An output of about 1e-9, as randomly initialised MobileNetV3-small (1.9e-9) and EfficientNet-B0
    (3.5e-14) exports produce: their activations shrink layer after layer."""
    import numpy as np
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array((rng.standard_normal((8, 16)) * 1e-4).astype(np.float32), "w1"),
        numpy_helper.from_array((rng.standard_normal((16, 4)) * 1e-5).astype(np.float32), "w2"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "vanishing",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


def test_output_below_float16_range_is_named_as_underflow_and_bf16_offered(tmp_path):
    from click.testing import CliRunner

    from onnxgraph.cli import cli

    source, out = tmp_path / "tiny.onnx", tmp_path / "tiny16.onnx"
    _vanishing_model(source)
    result = CliRunner().invoke(cli, ["convert", str(source), "-o", str(out), "--fp16"])
    assert result.exit_code == 1, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "below the smallest normal half-precision number 6.1e-05: the values underflow" in line
    assert "--bf16 keeps float32's range" in line and not out.exists()
    bf16 = CliRunner().invoke(cli, ["convert", str(source), "-o", str(out), "--bf16", "--json"])
    assert bf16.exit_code == 0, bf16.output


def test_attention_mask_minus_infinity_is_a_note_not_a_warning(tmp_path):
    """Dynamo exports of BERT, GPT-2, Llama, Qwen2, ViT fill masked scores with float32's lowest value
    (``torch.finfo(torch.float32).min``); float16's lowest does the same job, so it is no warning."""
    from click.testing import CliRunner

    from onnxgraph.cli import cli

    text = (
        '<ir_version: 8, opset_import: ["" : 18]>\n'
        "masked (float[N, 4] scores, bool[N, 4] keep, float[N, 4] x) => (float[N, 4] p, float[N, 4] q) {\n"
        "  lowest = Constant<value=float {-3.4028234663852886e38}>()\n"
        "  m = Where(keep, scores, lowest)\n  p = Softmax<axis=-1>(m)\n"
        "  big = Constant<value=float {1e6}>()\n  q = Mul(x, big)\n}"
    )
    source, out = tmp_path / "mask.onnx", tmp_path / "mask16.onnx"
    onnx.save(onnx.parser.parse_model(text), source)
    result = CliRunner().invoke(cli, ["convert", str(source), "-o", str(out), "--fp16", "--no-verify"])
    assert result.exit_code == 0, result.output
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "warning: tensor 'big': 1 value(s) outside the float16 range clamped to ±65504",
        "note: tensor 'lowest': float32's extreme ±3.4e+38 (exporters' minus infinity in attention masks) "
        "became float16's ±65504",
    ]


def test_all_zero_output_is_noted(model_from_text):
    """torchvision's ViT-B/16 with random weights: its zero-initialised head makes every logit 0, which
    any conversion matches; the verification says so instead of reporting a perfect match silently."""
    text = (
        '<ir_version: 8, opset_import: ["" : 17]>\n'
        "head (float[N, 4] x) => (float[N, 3] y, float[N, 4] z) <float[4, 3] w = {0,0,0,0,0,0,0,0,0,0,0,0}>"
        " {\n  y = MatMul(x, w)\n  z = Relu(x)\n}"
    )
    original, converted = model_from_text(text), model_from_text(text)
    infer_shapes(converted)
    to_half(converted, FP16)
    result = verify_conversion(original, converted, half_type=FP16, input_shapes={"x": [2, 4]})
    assert (
        result.passed
        and result.note == "output 'y' is all zeros in the original on these inputs: its match says little"
    )


def test_torchscript_layernorm_square_no_longer_overflows_in_float16():
    """The TorchScript exporter's written-out LayerNorm (tests/debug/data/layernorm_ts13.onnx, a real
    export): squared deviations of a few hundred passed 65,504 in a float16 Pow. Run on onnx.reference,
    which computes float16 in float16 (onnxruntime's CPU provider hides it), the result is finite and
    matches PyTorch's output."""
    import numpy as np
    from onnx.reference import ReferenceEvaluator

    data = os.path.join(os.path.dirname(__file__), "..", "debug", "data")
    converted = _fp16(onnx.load(os.path.join(data, "layernorm_ts13.onnx")))
    with np.load(os.path.join(data, "layernorm_io.npz")) as io:
        x, y = io["x"], io["y"]
    (actual,) = ReferenceEvaluator(converted.to_proto()).run(None, {"x": x.astype(np.float16)})
    assert np.isfinite(actual).all()
    assert np.linalg.norm(actual.astype(np.float64) - y) / np.linalg.norm(y) < 1e-2


def test_rms_norm_statistic_and_its_epsilon_stay_float32(tmp_path):
    """The Llama TorchScript export: ``Sqrt(ReduceMean(..) + 1e-6)`` and ``1 / rms`` stay float32 with the
    reduction, so the epsilon stays a float32 constant. With it in float16, onnxruntime's CPU session fused
    the norm into SimplifiedLayerNormalization with its default epsilon 1e-5 (0.73 % error on the export)."""
    import onnxruntime as ort

    proto = build.rms_norm_export()
    converted = _fp16(proto)
    for op in ("Add", "Sqrt", "Div"):
        (node,) = [n for n in converted.graph if n.op_type == op]
        assert all(v is not None and v.elem_type == FLOAT for v in (*node.inputs, *node.outputs)), op
    (eps,) = [n for n in converted.graph if n.op_type == "Constant" and n.outputs[0].name == "eps"]
    assert eps.outputs[0].elem_type == FLOAT
    # one Cast to half where the statistic meets the activations, none added elsewhere
    casts = [n for n in converted.graph if n.op_type == "Cast"]
    assert sorted(n.attr("to") for n in casts) == [FLOAT, FP16]
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "ort.onnx")
    ort.InferenceSession(converted.to_proto().SerializeToString(), options, providers=["CPUExecutionProvider"])
    fused = onnx.load(str(tmp_path / "ort.onnx"))
    epsilons = [
        onnx.helper.get_attribute_value(a)
        for n in fused.graph.node
        if "LayerNorm" in n.op_type
        for a in n.attribute
        if a.name == "epsilon"
    ]
    assert all(abs(e - 1e-6) < 1e-9 for e in epsilons), epsilons
    assert _relative_l2(proto, converted) < 1.5e-3
