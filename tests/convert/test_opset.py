"""Opset conversion: onnx.version_converter plus our rewrites and carried-over nodes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnxgraph.convert.opset import ConversionError, convert_opset

HEADER = '<ir_version: 10, opset_import: ["" : {opset}]>\n'


@pytest.fixture
def convert_and_compare(model_from_text, run_reference, run_ort):
    return lambda *args, **kwargs: _convert_and_compare(model_from_text, run_reference, run_ort, *args, **kwargs)


def _convert_and_compare(
    model_from_text,
    run_reference,
    run_ort,
    text: str,
    source: int,
    target: int,
    feeds: dict,
    *,
    gone: set[str] = frozenset(),
):
    original = model_from_text(HEADER.format(opset=source) + text)
    expected = run_reference(original, feeds)
    converted, report = convert_opset(model_from_text(HEADER.format(opset=source) + text), target)
    assert converted.opset_imports[""] == target
    ops = {n.op_type for n in converted.all_nodes()}
    assert not ops & gone, f"{ops & gone} should have been rewritten"
    proto = converted.to_proto()
    proto.ir_version = 7
    onnx.checker.check_model(proto, full_check=True)
    actual = run_ort(proto, feeds)
    for e, a in zip(expected, actual):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)
    return converted, report


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_below_20_is_rewritten(convert_and_compare, rng, approximate):
    text = f'g (float[3,5] x) => (float[3,5] y) {{ y = Gelu<approximate="{approximate}">(x) }}'
    _, report = convert_and_compare(text, 20, 13, {"x": rng.standard_normal((3, 5)).astype(np.float32)}, gone={"Gelu"})
    assert report.rewritten == {"Gelu": 1}


@pytest.mark.parametrize(("axis", "bias"), [(-1, True), (-2, False), (1, True)])
def test_layer_normalization_below_17_is_rewritten(convert_and_compare, rng, axis, bias):
    inputs = "X, scale, B" if bias else "X, scale"
    b_decl = ", float[4,5] B" if bias else ""
    text = (
        f"g (float[2,4,5] X, float[4,5] scale{b_decl}) => (float[2,4,5] y) "
        f"{{ y = LayerNormalization<axis={axis}, epsilon=0.01>({inputs}) }}"
    )
    if axis == -1:
        text = text.replace("float[4,5] scale", "float[5] scale").replace("float[4,5] B", "float[5] B")
    shape = (5,) if axis == -1 else (4, 5)
    feeds = {
        "X": rng.standard_normal((2, 4, 5)).astype(np.float32),
        "scale": rng.standard_normal(shape).astype(np.float32),
    }
    if bias:
        feeds["B"] = rng.standard_normal(shape).astype(np.float32)
    convert_and_compare(text, 17, 13, feeds, gone={"LayerNormalization"})


def test_rms_normalization_below_23_is_rewritten_with_reduce_axes_as_input(convert_and_compare, rng):
    text = "g (float[2,6] x, float[6] s) => (float[2,6] y) { y = RMSNormalization<epsilon=0.001>(x, s) }"
    feeds = {"x": rng.standard_normal((2, 6)).astype(np.float32), "s": rng.standard_normal(6).astype(np.float32)}
    converted, _ = convert_and_compare(text, 23, 18, feeds, gone={"RMSNormalization"})
    reduce = next(n for n in converted.graph if n.op_type == "ReduceMean")
    assert len(reduce.inputs) == 2  # opset 18 takes axes as an input


def test_split_num_outputs_below_18_becomes_an_equal_split(convert_and_compare, rng):
    text = "g (float[2,6] x) => (float[2,3] a, float[2,3] b) { a, b = Split<axis=1, num_outputs=2>(x) }"
    converted, _ = convert_and_compare(text, 18, 13, {"x": rng.standard_normal((2, 6)).astype(np.float32)})
    split = next(n for n in converted.graph if n.op_type == "Split")
    assert "num_outputs" not in split.attributes


def test_ops_without_a_down_adapter_are_carried_over_when_their_signature_matches(convert_and_compare, rng):
    # onnx's converter has no adapter for Relu 14 -> 13 (only integer types were added).
    text = "g (float[4] x) => (float[4] y) { y = Relu(x) }"
    converted, report = convert_and_compare(text, 14, 13, {"x": rng.standard_normal(4).astype(np.float32)})
    assert report.carried == {"Relu": 1}
    assert [n.domain for n in converted.graph] == [""]
    assert set(converted.opset_imports) == {""}


def test_carry_over_refuses_types_the_older_version_lacks(model_from_text):
    # Relu-14 added integer types; Relu-13 has float types only.
    text = HEADER.format(opset=14) + "g (int32[4] x) => (int32[4] y) { y = Relu(x) }"
    with pytest.raises(ConversionError, match="Relu"):
        convert_opset(model_from_text(text), 13)


def test_up_conversion_uses_the_converter(convert_and_compare, rng):
    text = (
        "g (float[2,6] x) => (float[2,1] m, float[2,2] a, float[2,4] b) {\n"
        "  m = ReduceMean<axes=[1]>(x)\n  a, b = Split<axis=1, split=[2, 4]>(x)\n}"
    )
    converted, _ = convert_and_compare(text, 11, 18, {"x": rng.standard_normal((2, 6)).astype(np.float32)})
    split = next(n for n in converted.graph if n.op_type == "Split")
    assert "split" not in split.attributes and len(split.inputs) == 2


def test_subgraph_bodies_are_converted(convert_and_compare, rng):
    text = (
        "g (bool c, float[3] x) => (float[3] y) {\n"
        "  y = If(c) <then_branch = t () => (float[3] z) { z = Gelu(x) },"
        " else_branch = e () => (float[3] z) { z = Relu(x) }>\n}"
    )
    for flag in (True, False):
        feeds = {"c": np.array(flag), "x": rng.standard_normal(3).astype(np.float32)}
        converted, _ = convert_and_compare(text, 20, 16, feeds, gone={"Gelu"})


def test_unconvertible_ops_are_all_named_and_nothing_changes(model_from_text):
    text = HEADER.format(opset=23) + (
        "g (float[1,2,4,8] q, float[4] x) => (float[1,2,4,8] y, float[4] z) {\n"
        "  y = Attention(q, q, q)\n  z = Relu(x)\n}"
    )
    model = model_from_text(text)
    with pytest.raises(ConversionError) as info:
        convert_opset(model, 21)
    assert "Attention" in str(info.value) and "Relu" not in str(info.value)
    assert model.opset_imports[""] == 23


@pytest.mark.parametrize("target", [6, 99])
def test_opset_out_of_range(model_from_text, target):
    model = model_from_text(HEADER.format(opset=17) + "g (float[4] x) => (float[4] y) { y = Relu(x) }")
    with pytest.raises(ConversionError, match="out of range"):
        convert_opset(model, target)
