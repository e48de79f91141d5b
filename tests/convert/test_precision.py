"""float16 / bfloat16 conversion: numerics on onnxruntime, structure of the Casts, edge cases."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import onnxgraph
from onnxgraph.convert.precision import DEFAULT_BLOCK_LIST, to_half
from onnxgraph.convert.verify import HALF_TOLERANCE, verify_conversion
from onnxgraph.runtime.compare import compare_outputs, default_tolerance
from onnxgraph.shape_inference import infer_shapes

FP16, BF16, FLOAT = onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.FLOAT
HEADER = '<ir_version: 10, opset_import: ["" : 21]>\n'


def _floats(rng, n: int) -> str:
    return ", ".join(f"{v:.5f}" for v in rng.standard_normal(n))


def _mlp_text(rng) -> str:
    return HEADER + (
        "mlp (float[N,16] x) => (float[N,8] y, float[N,8] p)\n"
        f"<float[16,8] w1 = {{{_floats(rng, 128)}}}, float[8] b1 = {{{_floats(rng, 8)}}},"
        f" float[8,8] w2 = {{{_floats(rng, 64)}}}>\n"
        "{\n  h = MatMul(x, w1)\n  a = Add(h, b1)\n  r = Relu(a)\n  y = MatMul(r, w2)\n  p = Sigmoid(y)\n}"
    )


def _half(model: onnxgraph.Model, elem_type: int = FP16, **kwargs):
    infer_shapes(model)
    return to_half(model, elem_type, **kwargs)


def _check_numerics(original, converted, run_ort, feeds, half=FP16):
    expected = dict(zip([v.name for v in original.graph.outputs], run_ort(original, feeds)))
    conv_feeds = {
        v.name: feeds[v.name].astype(onnxgraph.types.np_dtype(v.elem_type))
        if feeds[v.name].dtype.kind == "f"
        else feeds[v.name]
        for v in converted.graph.inputs
    }
    actual = dict(zip([v.name for v in converted.graph.outputs], run_ort(converted, conv_feeds)))
    tolerance = default_tolerance(onnxgraph.types.np_dtype(half))
    as_float = {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in actual.items()}
    results = compare_outputs(expected, as_float, {k: tolerance for k in expected})
    assert all(r.passed for r in results), results


def _node_types(model, op_type):
    node = next(n for n in model.all_nodes() if n.op_type == op_type)
    return [v.elem_type for v in node.inputs if v is not None], [v.elem_type for v in node.outputs]


def test_fp16_weights_and_computation(model_from_text, run_ort, cast_round_trips, rng):
    text = _mlp_text(rng)
    original, model = model_from_text(text), model_from_text(text)
    report = _half(model)
    assert report.initializers == 3
    assert {v.const_value.elem_type for v in model.graph.initializers.values()} == {FP16}
    assert [v.elem_type for v in (*model.graph.inputs, *model.graph.outputs)] == [FP16] * 3
    assert not any(n.op_type == "Cast" for n in model.graph)
    assert not cast_round_trips(model)
    onnx.checker.check_model(model.to_proto(), full_check=True)
    _check_numerics(original, model, run_ort, {"x": rng.standard_normal((3, 16)).astype(np.float32)})


def test_keep_io_types_keeps_float32_names_and_adds_one_cast_per_boundary(model_from_text, run_ort, rng):
    text = _mlp_text(rng)
    original, model = model_from_text(text), model_from_text(text)
    _half(model, keep_io_types=True)
    assert [(v.name, v.elem_type) for v in model.graph.inputs] == [("x", FLOAT)]
    assert [(v.name, v.elem_type) for v in model.graph.outputs] == [("y", FLOAT), ("p", FLOAT)]
    casts = [n for n in model.graph if n.op_type == "Cast"]
    assert sorted(n.attr("to") for n in casts) == [FLOAT, FLOAT, FP16]
    # y is both an output and Sigmoid's input: Sigmoid must read the half value, not a Cast of a Cast.
    assert _node_types(model, "Sigmoid")[0] == [FP16]
    _check_numerics(original, model, run_ort, {"x": rng.standard_normal((2, 16)).astype(np.float32)})


def test_default_block_list_keeps_unsafe_ops_in_float32(model_from_text, run_ort, cast_round_trips, rng):
    text = HEADER + (
        "g (float[2,8] x) => (float[2,3] v, float[2] s, float[2,16] u) {\n"
        "  r = Relu(x)\n  k = Constant<value = int64[1] {3}>()\n  v, i = TopK(r, k)\n"
        "  s = ReduceSum<keepdims=0>(r, one)\n  one = Constant<value = int64[1] {1}>()\n"
        '  scales = Constant<value = float[2] {1, 2}>()\n  u = Resize<mode="nearest">(r, , scales)\n}'
    )
    text = text.replace(
        "  s = ReduceSum<keepdims=0>(r, one)\n  one = Constant<value = int64[1] {1}>()\n",
        "  one = Constant<value = int64[1] {1}>()\n  s = ReduceSum<keepdims=0>(r, one)\n",
    )
    original, model = model_from_text(text), model_from_text(text)
    report = _half(model)
    for op in ("TopK", "ReduceSum", "Resize"):
        ins, outs = _node_types(model, op)
        assert ins[0] == FLOAT and outs[0] == FLOAT, op
    assert _node_types(model, "Relu") == ([FP16], [FP16])
    assert report.kept_float == {"TopK": 1, "ReduceSum": 1, "Resize": 1}
    relu_out = next(n for n in model.graph if n.op_type == "Relu").outputs[0]
    assert len([n for n in relu_out.consumers() if n.op_type == "Cast"]) == 1  # one Cast shared by three readers
    assert not cast_round_trips(model)
    _check_numerics(original, model, run_ort, {"x": rng.standard_normal((2, 8)).astype(np.float32)})


def test_custom_block_list_replaces_the_default(model_from_text, rng):
    text = HEADER + (
        "g (float[2,8] x) => (float[2] s, float[2,8] p) {\n  s = ReduceSum<keepdims=0>(x)\n  p = Sigmoid(x)\n}"
    )
    model = model_from_text(text)
    _half(model, block_list={"Sigmoid"})
    assert _node_types(model, "Sigmoid") == ([FLOAT], [FLOAT])
    assert _node_types(model, "ReduceSum") == ([FP16], [FP16])
    assert "ReduceSum" in DEFAULT_BLOCK_LIST


def test_values_beyond_half_range_are_clamped_with_a_warning(model_from_text):
    model = model_from_text(HEADER + "g (float[3] x) => (float[3] y) <float[3] w = {1e6, -1e6, 2}> { y = Mul(x, w) }")
    report = _half(model)
    np.testing.assert_array_equal(
        model.graph.initializers["w"].const_value.numpy().astype(np.float32), [65504, -65504, 2]
    )
    assert report.clamped == {"w": 2}
    assert report.warnings == ["tensor 'w': 2 value(s) outside the float16 range clamped to ±65504"]


def test_existing_casts_are_retyped_or_removed(model_from_text, run_ort, cast_round_trips, rng):
    text = HEADER + (
        "g (float[4] x, int64[4] n) => (float[4] y, float[] s) {\n"
        "  c = Cast<to=1>(n)\n  a = Add(x, c)\n  h = Cast<to=10>(a)\n  r = Relu(h)\n  y = Cast<to=1>(r)\n"
        "  k = Cast<to=1>(n)\n  s = ReduceSum<keepdims=0>(k)\n}"
    )
    original, model = model_from_text(text), model_from_text(text)
    report = _half(model, keep_io_types=True)
    casts = {n.outputs[0].name: n.attr("to") for n in model.graph if n.op_type == "Cast"}
    assert casts["c"] == FP16  # int64 -> float feeding half computation: now int64 -> float16
    assert "h" not in casts  # float -> float16 of a value that is already float16: removed
    assert casts["k"] == FLOAT  # feeds a blocked ReduceSum: stays float
    assert report.casts_retyped == 1 and report.casts_removed >= 1
    assert not cast_round_trips(model)
    feeds = {"x": rng.standard_normal(4).astype(np.float32), "n": np.arange(4, dtype=np.int64)}
    _check_numerics(original, model, run_ort, feeds)


def test_subgraphs_compute_in_half_with_outer_scope_weights(model_from_text, run_ort, rng):
    text = HEADER + (
        f"g (bool c, float[2,4] x) => (float[2,4] y) <float[4,4] w = {{{_floats(rng, 16)}}}> {{\n"
        "  y = If(c) <then_branch = t () => (float[2,4] z) { z = MatMul(x, w) },"
        " else_branch = e () => (float[2,4] z) { m = MatMul(x, w)\n z = Relu(m) }>\n}"
    )
    original, model = model_from_text(text), model_from_text(text)
    _half(model)
    for branch in next(iter(model.graph)).subgraphs():
        matmul = next(n for n in branch if n.op_type == "MatMul")
        assert [v.elem_type for v in matmul.inputs] == [FP16, FP16]
    assert model.graph.initializers["w"].const_value.elem_type == FP16
    for flag in (True, False):
        feeds = {"c": np.array(flag), "x": rng.standard_normal((2, 4)).astype(np.float32)}
        _check_numerics(original, model, run_ort, feeds)


def test_external_data_models_convert_and_reload(model_from_text, run_ort, tmp_path, rng):
    onnxgraph.save(model_from_text(_mlp_text(rng)), tmp_path / "src.onnx", external_data="auto", size_threshold=64)
    original, model = onnxgraph.load(tmp_path / "src.onnx"), onnxgraph.load(tmp_path / "src.onnx")
    assert model.graph.initializers["w1"].const_value.is_external
    _half(model)
    onnxgraph.save(model, tmp_path / "half.onnx", external_data="auto", size_threshold=64)
    reloaded = onnxgraph.load(tmp_path / "half.onnx")
    assert reloaded.graph.initializers["w1"].const_value.is_external
    assert reloaded.graph.initializers["w1"].const_value.elem_type == FP16
    x = rng.standard_normal((2, 16)).astype(np.float32)
    expected = run_ort(original, {"x": x})
    actual = run_ort(str(tmp_path / "half.onnx"), {"x": x.astype(np.float16)})
    for e, a in zip(expected, actual):
        np.testing.assert_allclose(a.astype(np.float32), e, *default_tolerance(np.float16))


def test_bf16_is_verified_with_bfloat16_tolerances(model_from_text, rng):
    text = _mlp_text(rng)
    original, model = model_from_text(text), model_from_text(text)
    _half(model, BF16, keep_io_types=True)
    assert {v.const_value.elem_type for v in model.graph.initializers.values()} == {BF16}
    result = verify_conversion(original, model, half_type=BF16, input_shapes={"x": [2, 16]})
    assert result.passed, result
    assert {c.limit for c in result.comparisons} == {HALF_TOLERANCE[BF16]}
    # onnxruntime's CPU provider has no bfloat16 Relu: onnx.reference compares, and the note says why.
    assert result.engine == "onnx.reference" and "CPU provider cannot run" in result.note
    assert all(0 < c.relative_l2 < HALF_TOLERANCE[BF16] for c in result.comparisons)


def test_verification_catches_what_half_precision_changes(model_from_text):
    # The weight 1e5 is beyond float16's range: clamped to 65504, the product is off by a third.
    text = HEADER + "g (float[4] x) => (float[4] y) <float[1] big = {100000}> { y = Mul(x, big) }"
    original, model = model_from_text(text), model_from_text(text)
    _half(model, keep_io_types=True)
    result = verify_conversion(original, model, half_type=FP16)
    assert not result.passed and result.engine == "onnxruntime"


def test_nodes_reading_values_of_unknown_type_stay_float32(model_from_text):
    text = (
        '<ir_version: 10, opset_import: ["" : 21, "custom" : 1]>\n'
        "g (float[4] x) => (float[4] y, float[4] z) <float[4] w = {1, 2, 3, 4}>"
        " {\n  h = custom.Foo(x)\n  y = Add(h, w)\n  z = Mul(x, w)\n}"
    )
    model = model_from_text(text)
    _half(model, keep_io_types=True)
    assert _node_types(model, "Foo") == ([FLOAT], [None])  # another domain: fed float32 as before
    assert _node_types(model, "Add")[0] == [None, FLOAT]  # h's type is unknown: Add keeps float32
    assert _node_types(model, "Mul")[0] == [FP16, FP16]  # the rest still computes in half
    onnx.checker.check_model(model.to_proto())


def test_constant_nodes_are_converted_in_place_of_the_original(model_from_text):
    text = HEADER + (
        "g (float[3] x) => (float[3] y) {\n  c = Constant<value = float[3] {0.5, 1e6, -2}>()\n  y = Mul(x, c)\n}"
    )
    model = model_from_text(text)
    report = _half(model, keep_io_types=True)
    constants = [n for n in model.graph if n.op_type == "Constant"]
    assert len(constants) == 1  # the float32 original is gone
    np.testing.assert_array_equal(constants[0].attr("value").numpy(), np.float16([0.5, 65504, -2]))
    assert report.clamped == {"c": 1}


def test_weight_read_by_half_and_float32_ops_is_kept_in_both(model_from_text, run_ort, rng):
    text = HEADER + (
        "g (float[2,4] x) => (float[2,4] y, float[] s) <float[4] w = {1, 2, 3, 4}>"
        " {\n  y = Mul(x, w)\n  s = ReduceSum<keepdims=0>(w)\n}"
    )
    original, model = model_from_text(text), model_from_text(text)
    _half(model, keep_io_types=True)
    types = {name: v.const_value.elem_type for name, v in model.graph.initializers.items()}
    assert types == {"w": FLOAT, "w_float16": FP16}
    assert _node_types(model, "Mul")[0] == [FP16, FP16] and _node_types(model, "ReduceSum")[0] == [FLOAT]
    _check_numerics(original, model, run_ort, {"x": rng.standard_normal((2, 4)).astype(np.float32)})


def test_rejects_other_target_types(model_from_text):
    with pytest.raises(ValueError, match="FLOAT16 or BFLOAT16"):
        to_half(model_from_text(HEADER + "g (float[1] x) => (float[1] y) { y = Relu(x) }"), FLOAT)
