"""Pass ``fuse``: structure (which nodes go) and numerics (onnxruntime, random weights)."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

import onnxgraph
from onnxgraph import Function, Graph, Model, Tensor, Value
from onnxgraph.builder import OpBuilder
from onnxgraph.optimizers.base import PassManager
from onnxgraph.optimizers.fusions import Fusions
from onnxgraph.optimizers.noop import NoOpElimination
from onnxgraph.optimizers.rewriter import const_value
from onnxgraph.runtime.compare import compare_outputs
from onnxgraph.runtime.inputs import random_inputs, specs_of
from onnxgraph.runtime.sessions import run_model
from onnxgraph.shape_inference import annotate_types
from onnxgraph.types import tensor_type

FLOAT = onnx.TensorProto.FLOAT
RNG = np.random.default_rng(1234)


def _random(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _build(inputs: dict[str, tuple], body, opset: int = 18) -> Model:
    graph = Graph("g", inputs=[Value(name, tensor_type(FLOAT, shape)) for name, shape in inputs.items()])
    outputs = body(OpBuilder(graph), *graph.inputs)
    graph.outputs.extend(outputs if isinstance(outputs, tuple) else (outputs,))
    model = Model(graph, ir_version=10, opset_imports={"": opset})
    annotate_types(model)
    return model


def _fuse(model: Model) -> tuple[Counter, Counter]:
    """Run the pass; check the result is valid and computes the same. Returns (ops, stats)."""
    original = model.to_proto()
    feeds = random_inputs(specs_of(model), seed=7, dynamic_dim=2)
    expected = run_model(original, feeds)
    stats = Fusions()(model).stats
    optimized = model.to_proto()
    onnx.checker.check_model(optimized, full_check=True)
    assert [o.name for o in optimized.graph.output] == [o.name for o in original.graph.output]
    assert [o.type for o in optimized.graph.output] == [o.type for o in original.graph.output]
    actual = run_model(optimized, feeds)
    for result in compare_outputs(expected, actual):
        assert result.passed, result
    return Counter(n.op_type for n in model.graph.all_nodes()), stats


def _bn(op, y, channels: int, epsilon: float = 1e-3):
    scale, bias = _random(channels), _random(channels)
    mean, var = _random(channels), RNG.uniform(0.2, 3.0, channels).astype(np.float32)
    return op.BatchNormalization(y, op.const(scale), op.const(bias), op.const(mean), op.const(var), epsilon=epsilon)


# -- BatchNormalization ----------------------------------------------------------------------------
CONV_CASES = [
    {"shape": (2, 4, 9, 9), "weight": (6, 4, 3, 3), "attrs": {}},
    {
        "shape": (2, 6, 11, 10),
        "weight": (9, 2, 3, 2),
        "attrs": {"group": 3, "strides": [2, 1], "pads": [1, 0, 2, 1]},
    },
    {
        "shape": (1, 4, 12, 12),
        "weight": (4, 1, 3, 3),
        "attrs": {"group": 4, "dilations": [2, 3], "pads": [2, 2, 2, 2]},
    },
    {"shape": (2, 3, 16), "weight": (5, 3, 4), "attrs": {"strides": [3]}},
    {"shape": (1, 2, 5, 6, 7), "weight": (4, 2, 2, 3, 2), "attrs": {}},
]


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("with_bias", [False, True])
def test_bn_into_conv(case, with_bias):
    out_channels = case["weight"][0]

    def body(op, x):
        bias = op.const(_random(out_channels)) if with_bias else None
        return _bn(op, op.Conv(x, op.const(_random(*case["weight"])), bias, **case["attrs"]), out_channels)

    ops, stats = _fuse(_build({"x": case["shape"]}, body))
    assert stats == {"bn_into_conv": 1}
    assert ops == {"Conv": 1}


CONV_TRANSPOSE_CASES = [
    {"shape": (2, 4, 5, 5), "weight": (4, 3, 3, 3), "attrs": {}},
    {
        "shape": (2, 6, 5, 4),
        "weight": (6, 2, 3, 3),
        "attrs": {"group": 3, "strides": [2, 2], "output_padding": [1, 0]},
    },
    {
        "shape": (1, 4, 6, 6),
        "weight": (4, 3, 2, 3),
        "attrs": {"group": 2, "dilations": [2, 1], "pads": [1, 0, 0, 1]},
    },
    {"shape": (2, 2, 7), "weight": (2, 5, 3), "attrs": {"strides": [2]}},
]


@pytest.mark.parametrize("case", CONV_TRANSPOSE_CASES)
@pytest.mark.parametrize("with_bias", [False, True])
def test_bn_into_conv_transpose(case, with_bias):
    out_channels = case["weight"][1] * case["attrs"].get("group", 1)

    def body(op, x):
        bias = op.const(_random(out_channels)) if with_bias else None
        y = op.ConvTranspose(x, op.const(_random(*case["weight"])), bias, **case["attrs"])
        return _bn(op, y, out_channels)

    ops, stats = _fuse(_build({"x": case["shape"]}, body))
    assert stats == {"bn_into_convtranspose": 1}
    assert ops == {"ConvTranspose": 1}


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("c_shape", [None, (5,), (1, 5), (3, 5), (3, 1)])
def test_bn_into_gemm(trans_b, c_shape):
    def body(op, a):
        b = op.const(_random(*((5, 4) if trans_b else (4, 5))))
        c = op.const(_random(*c_shape)) if c_shape else None
        return _bn(op, op.Gemm(a, b, c, transB=trans_b, alpha=0.7, beta=1.3), 5)

    ops, stats = _fuse(_build({"a": (3, 4)}, body))
    assert stats == {"bn_into_gemm": 1}
    assert ops == {"Gemm": 1}


def _conv_bn(op, x, w, extra_reader: bool = False):
    conv = op.Conv(x, w)
    bn = _bn(op, conv, 4)
    return (bn, op.Relu(conv)) if extra_reader else bn


def test_bn_not_fused_when_weight_is_not_constant():
    ops, stats = _fuse(_build({"x": (1, 3, 6, 6), "w": (4, 3, 3, 3)}, lambda op, x, w: _conv_bn(op, x, w)))
    assert not stats and ops["BatchNormalization"] == 1


def test_bn_not_fused_when_weight_is_shared():
    def body(op, x):
        w = op.const(_random(4, 3, 3, 3))
        return _conv_bn(op, x, w), op.Conv(x, w)

    ops, stats = _fuse(_build({"x": (1, 3, 6, 6)}, body))
    assert not stats and ops["BatchNormalization"] == 1


def test_bn_not_fused_when_conv_output_has_another_reader():
    body = lambda op, x: _conv_bn(op, x, op.const(_random(4, 3, 3, 3)), extra_reader=True)
    ops, stats = _fuse(_build({"x": (1, 3, 6, 6)}, body))
    assert not stats and ops["BatchNormalization"] == 1


def test_bn_not_fused_when_statistics_are_inputs():
    def body(op, x, mean):
        y = op.Conv(x, op.const(_random(4, 3, 3, 3)))
        return op.BatchNormalization(
            y, op.const(_random(4)), op.const(_random(4)), mean, op.const(np.ones(4, np.float32))
        )

    ops, stats = _fuse(_build({"x": (1, 3, 6, 6), "mean": (4,)}, body))
    assert not stats and ops["BatchNormalization"] == 1


# -- Add / Mul into Conv ---------------------------------------------------------------------------
@pytest.mark.parametrize("const_shape", [(4, 1, 1), (1, 4, 1, 1), (), (1,), (1, 1, 1, 1)])
@pytest.mark.parametrize("kind", ["Add", "Mul"])
@pytest.mark.parametrize("conv_first", [True, False])
@pytest.mark.parametrize("group", [1, 2])
def test_bias_and_scale_into_conv(const_shape, kind, conv_first, group):
    def body(op, x):
        w, b = op.const(_random(4, 4 // group, 3, 3)), op.const(_random(4))
        conv = op.Conv(x, w, b, pads=[1, 1, 1, 1], group=group)
        c = op.const(_random(*const_shape))
        return op.op(kind, conv, c) if conv_first else op.op(kind, c, conv)

    ops, stats = _fuse(_build({"x": (2, 4, 5, 5)}, body))
    assert stats == {f"{kind.lower()}_into_conv": 1}
    assert ops == {"Conv": 1}


@pytest.mark.parametrize("const_shape", [(1, 1, 5, 5), (4, 5, 5), (2, 4, 1, 1), (1, 1, 4, 1, 1)])
@pytest.mark.parametrize("kind", ["Add", "Mul"])
def test_bias_and_scale_not_fused_unless_per_channel(const_shape, kind):
    def body(op, x):
        return op.op(kind, op.Conv(x, op.const(_random(4, 3, 1, 1))), op.const(_random(*const_shape)))

    ops, stats = _fuse(_build({"x": (2, 3, 5, 5)}, body))
    assert not stats and ops[kind] == 1


def test_scale_not_fused_into_shared_weight():
    def body(op, x):
        w = op.const(_random(4, 3, 1, 1))
        return op.Mul(op.Conv(x, w), op.const(_random(4, 1, 1))), op.Conv(x, w)

    ops, stats = _fuse(_build({"x": (2, 3, 5, 5)}, body))
    assert not stats and ops["Mul"] == 1


# -- MatMul + Add -> Gemm --------------------------------------------------------------------------
@pytest.mark.parametrize("c_shape", [(5,), (1, 5), (3, 5), (3, 1), ()])
@pytest.mark.parametrize("bias_first", [False, True])
def test_matmul_add_to_gemm(c_shape, bias_first):
    def body(op, a):
        product, c = op.MatMul(a, op.const(_random(4, 5))), op.const(_random(*c_shape))
        return op.Add(c, product) if bias_first else op.Add(product, c)

    ops, stats = _fuse(_build({"a": (3, 4)}, body))
    assert stats == {"matmul_add_to_gemm": 1}
    assert ops == {"Gemm": 1}


@pytest.mark.parametrize(
    ("a_shape", "b_shape", "c_shape"),
    [
        ((2, 3, 4), (4, 5), (5,)),  # batched MatMul
        ((4,), (4, 5), (5,)),  # 1-D MatMul
        ((1, 4), (4, 5), (3, 5)),  # Add would broadcast the product up
        ((3, 4), (4, 5), (2, 3, 5)),  # Add would add a dimension
    ],
)
def test_matmul_add_not_fused_outside_2d(a_shape, b_shape, c_shape):
    body = lambda op, a: op.Add(op.MatMul(a, op.const(_random(*b_shape))), op.const(_random(*c_shape)))
    ops, stats = _fuse(_build({"a": a_shape}, body))
    assert not stats and ops == {"MatMul": 1, "Add": 1}


def test_matmul_add_not_fused_when_product_has_another_reader():
    def body(op, a):
        product = op.MatMul(a, op.const(_random(4, 5)))
        return op.Add(product, op.const(_random(5))), op.Relu(product)

    ops, stats = _fuse(_build({"a": (3, 4)}, body))
    assert not stats and ops["MatMul"] == 1


def test_matmul_add_with_symbolic_rows():
    body = lambda op, a: op.Add(op.MatMul(a, op.const(_random(4, 5))), op.const(_random(5)))
    _ops, stats = _fuse(_build({"a": ("rows", 4)}, body))
    assert stats == {"matmul_add_to_gemm": 1}


# -- Transposes ------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["a", "b"])
@pytest.mark.parametrize("flag", [0, 1])
def test_transpose_into_gemm(which, flag):
    def body(op, a):
        if which == "a":
            return op.Gemm(
                op.Transpose(a, perm=[1, 0]),
                op.const(_random(4, 5)),
                op.const(_random(5)),
                transA=flag,
            )
        b = op.Transpose(op.const(_random(*((4, 5) if flag else (5, 4)))), perm=[1, 0])
        return op.Gemm(a, b, transB=flag)

    shape = (4, 3) if which == "a" and not flag else (3, 4)
    ops, stats = _fuse(_build({"a": shape}, body))
    assert stats == {f"transpose_into_gemm_{which}": 1}
    assert ops == {"Gemm": 1}


def test_transposes_composed_and_cancelled():
    def body(op, x):
        composed = op.Transpose(op.Transpose(x, perm=[1, 2, 0, 3]), perm=[3, 0, 2, 1])
        cancelled = op.Transpose(op.Transpose(x, perm=[0, 2, 3, 1]), perm=[0, 3, 1, 2])
        return op.Relu(composed), op.Relu(cancelled)

    ops, stats = _fuse(_build({"x": (2, 3, 4, 5)}, body))
    assert stats == {"transpose_pair": 2}
    assert ops == {"Transpose": 1, "Relu": 2}


# -- Pad into Conv and pooling ---------------------------------------------------------------------
def _pad(op, x, pads, mode="constant", value=None):
    value = op.const(np.float32(value)) if value is not None else None
    return op.Pad(x, op.const(np.array(pads, np.int64)), value, mode=mode)


@pytest.mark.parametrize("conv_pads", [None, [1, 0, 0, 2]])
def test_pad_into_conv(conv_pads):
    def body(op, x):
        padded = _pad(op, x, [0, 0, 1, 2, 0, 0, 3, 1], value=0.0)
        return op.Conv(
            padded,
            op.const(_random(4, 3, 3, 3)),
            op.const(_random(4)),
            pads=conv_pads,
            strides=[2, 1],
        )

    ops, stats = _fuse(_build({"x": (1, 3, 7, 8)}, body))
    assert stats == {"pad_into_conv": 1}
    assert ops == {"Conv": 1}


def test_pad_with_axes_into_conv():
    def body(op, x):
        padded = op.Pad(
            x,
            op.const(np.array([1, 2, 0, 1], np.int64)),
            None,
            op.const(np.array([-1, 2], np.int64)),
        )
        return op.Conv(padded, op.const(_random(4, 3, 3, 3)))

    _ops, stats = _fuse(_build({"x": (1, 3, 7, 8)}, body))
    assert stats == {"pad_into_conv": 1}


@pytest.mark.parametrize(
    ("pads", "mode", "value"),
    [
        ([0, 0, 1, 1, 0, 0, 1, 1], "reflect", None),
        ([0, 0, 1, 1, 0, 0, 1, 1], "edge", None),
        ([0, 0, 1, 1, 0, 0, 1, 1], "constant", 0.5),
        ([0, 1, 1, 1, 0, 0, 1, 1], "constant", 0.0),  # channel axis
        ([0, 0, -1, 1, 0, 0, 1, 1], "constant", 0.0),  # a crop
    ],
)
def test_pad_not_fused_into_conv(pads, mode, value):
    def body(op, x):
        padded = _pad(op, x, pads, mode, value)
        channels = 3 + pads[1] + pads[5]
        return op.Conv(padded, op.const(_random(4, channels, 3, 3)))

    ops, stats = _fuse(_build({"x": (1, 3, 7, 8)}, body))
    assert not stats and ops["Pad"] == 1


@pytest.mark.parametrize(
    ("attrs", "fused"),
    [
        ({}, True),
        ({"count_include_pad": 1, "pads": [1, 0, 0, 0]}, True),
        ({"count_include_pad": 1, "pads": [1, 1, 0, 0]}, False),  # pads would reach the kernel size
        ({"count_include_pad": 0, "pads": [1, 1, 0, 0]}, False),
        ({"ceil_mode": 1}, False),
    ],
)
def test_pad_into_average_pool(attrs, fused):
    def body(op, x):
        return op.AveragePool(_pad(op, x, [0, 0, 1, 2, 0, 0, 2, 0]), kernel_shape=[3, 3], strides=[2, 2], **attrs)

    ops, stats = _fuse(_build({"x": (1, 3, 8, 9)}, body))
    assert (stats == {"pad_into_averagepool": 1}) is fused
    assert ("Pad" not in ops) is fused


@pytest.mark.parametrize(("value", "fused"), [(-np.inf, True), (0.0, False)])
def test_pad_into_max_pool(value, fused):
    def body(op, x):
        return op.MaxPool(
            _pad(op, x, [0, 0, 1, 1, 0, 0, 1, 2], value=value),
            kernel_shape=[3, 3],
            dilations=[1, 2],
        )

    ops, _stats = _fuse(_build({"x": (1, 3, 8, 9)}, body))
    assert ("Pad" not in ops) is fused


# -- scopes ----------------------------------------------------------------------------------------
def _if_model(branch_body) -> Model:
    """``If(cond)`` whose branches ``branch_body(op, outer_op, x)`` builds (after linking the If,
    so names stay unique across scopes)."""

    def body(op, x, cond):
        branches = [Graph("then"), Graph("else")]
        result = op.If(cond, then_branch=branches[0], else_branch=branches[1])
        for branch in branches:
            y = branch_body(OpBuilder(branch), op, x)
            y.type = tensor_type(FLOAT, (1, 4, 4, 4))
            branch.outputs.append(y)
        return result

    model = _build({"x": (1, 3, 6, 6), "cond": ()}, body)
    model.graph.inputs[1].type = tensor_type(onnx.TensorProto.BOOL, ())
    return model


def test_fusion_inside_if_branches():
    model = _if_model(lambda op, outer, x: _bn(op, op.Conv(x, op.const(_random(4, 3, 3, 3))), 4))
    ops, stats = _fuse(model)
    assert stats == {"bn_into_conv": 2}
    assert "BatchNormalization" not in ops


def test_outer_weight_read_by_two_branches_is_not_folded():
    shared = []

    def branch(op, outer, x):
        if not shared:
            shared.append(outer.const(_random(4, 3, 3, 3)))
        return _bn(op, op.Conv(x, shared[0]), 4)

    ops, stats = _fuse(_if_model(branch))
    assert not stats and ops["BatchNormalization"] == 2


def test_outer_weight_read_by_one_branch_is_folded_into_a_branch_constant():
    model = _if_model(lambda op, outer, x: _bn(op, op.Conv(x, outer.const(_random(4, 3, 3, 3))), 4))
    _ops, stats = _fuse(model)
    assert stats == {"bn_into_conv": 2}
    assert not model.graph.initializers  # the outer weights were folded and are no longer read


def test_pad_attribute_form_before_opset_11():
    def body(op, x):
        padded = op.Pad(x, pads=[0, 0, 1, 0, 0, 0, 0, 2], mode="constant", value=0.0)
        return op.Conv(padded, op.const(_random(4, 3, 3, 3)))

    ops, stats = _fuse(_build({"x": (1, 3, 7, 8)}, body, opset=10))
    assert stats == {"pad_into_conv": 1} and ops == {"Conv": 1}


# -- ONNX's light model zoo ------------------------------------------------------------------------
LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def _fold_weights(model: Model, seed: int = 0) -> None:
    """Stand in for the constant folding that runs before these passes in the pipeline.

    Each ConstantOfShape weight of a light model becomes a random initializer (positive where it is
    a BatchNormalization variance), Unsqueezes of constants are folded, and weights stop being graph
    inputs (these IR 3 models list every initializer as an input).
    """
    rng = np.random.default_rng(seed)
    graph = model.graph
    graph.inputs[:] = [v for v in graph.inputs if not v.is_initializer()]
    for node in graph:
        if node.op_type == "ConstantOfShape":
            shape = tuple(int(d) for d in const_value(node.inputs[0]))
            readers = node.outputs[0].uses()
            is_variance = any(user.op_type == "BatchNormalization" and i == 4 for user, i in readers)
            data = rng.uniform(0.5, 1.5, shape) if is_variance else rng.normal(0.0, 0.1, shape)
        elif node.op_type == "Unsqueeze" and const_value(node.inputs[0]) is not None:
            data = np.expand_dims(const_value(node.inputs[0]), tuple(node.attr("axes")))
        else:
            continue
        weight = graph.make_initializer(Tensor(np.ascontiguousarray(data, np.float32)), "weight")
        node.outputs[0].replace_all_uses_with(weight)
        graph.remove(node)
    for name in [n for n, v in graph.initializers.items() if not v.has_uses()]:
        graph.remove_initializer(name)
    model.ir_version = max(model.ir_version, 4)


@pytest.mark.parametrize(
    ("name", "onnxsim_nodes"),
    [
        ("light_resnet50", 123),
        ("light_shufflenet", 154),
        ("light_squeezenet", 66),
        ("light_inception_v2", 226),
        ("light_densenet121", 550),
    ],
)
def test_light_models_reach_the_onnxsim_node_count(name, onnxsim_nodes):
    model = onnxgraph.load(os.path.join(LIGHT, f"{name}.onnx"))
    _fold_weights(model)
    annotate_types(model)
    original = model.to_proto()
    feeds = random_inputs(specs_of(model), seed=11)
    expected = run_model(original, feeds)
    PassManager([NoOpElimination(), Fusions()])(model)
    print(f"{name}: {len(model.graph)} nodes (onnxsim: {onnxsim_nodes})")
    assert len(model.graph) <= onnxsim_nodes
    for result in compare_outputs(
        expected, run_model(model, feeds), {o.name: (1e-3, 1e-5) for o in original.graph.output}
    ):
        assert result.passed, result


@pytest.mark.parametrize(("is_test", "fused"), [(1, True), (0, False)])
def test_bn_before_opset_7_only_fused_in_test_mode(is_test, fused):
    # onnxruntime has no BatchNormalization-6 kernel, so onnx.reference checks the numbers.
    def body(op, x):
        y = op.Conv(x, op.const(_random(4, 3, 3, 3)))
        params = [op.const(_random(4)) for _ in range(3)] + [op.const(RNG.uniform(0.5, 2, 4).astype(np.float32))]
        return op.BatchNormalization(y, *params, is_test=is_test, epsilon=1e-3)

    model = _build({"x": (1, 3, 6, 6)}, body, opset=6)
    feeds = random_inputs(specs_of(model), seed=2)
    expected = ReferenceEvaluator(model.to_proto()).run(None, feeds)[0] if is_test else None
    stats = Fusions()(model).stats
    assert (stats == {"bn_into_conv": 1}) is fused
    if fused:  # (the reference evaluator cannot run training-mode BatchNormalization-6)
        actual = ReferenceEvaluator(model.to_proto()).run(None, feeds)[0]
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)


def test_nodes_in_the_explicit_ai_onnx_domain_match():
    def body(op, x):
        conv = op.op("Conv", x, op.const(_random(4, 3, 3, 3)), _domain="ai.onnx")
        return op.Add(conv, op.const(_random(4, 1, 1)))

    model = _build({"x": (1, 3, 6, 6)}, body)
    assert Fusions()(model).stats == {"add_into_conv": 1}


def test_fusion_inside_a_function_body_makes_constant_nodes():
    body = Graph("convbn", inputs=[Value("fx")])
    fop = OpBuilder(body, constants_as_nodes=True)
    body.outputs.append(_bn(fop, fop.Conv(body.inputs[0], fop.const(_random(4, 3, 3, 3))), 4))
    function = Function("local", "convbn", body)
    function.opset_imports = {"": 18}

    def main(op, x):
        return op.op("convbn", x, _domain="local")

    model = _build({"x": (1, 3, 6, 6)}, main)
    model.functions[function.identifier] = function
    model.opset_imports["local"] = 1
    model.graph.outputs[0].type = tensor_type(FLOAT, (1, 4, 4, 4))
    _, stats = _fuse(model)
    assert stats == {"bn_into_conv": 1}
    assert Counter(n.op_type for n in body) == {"Constant": 2, "Conv": 1}


def test_output_is_deterministic():
    def body(op, x):
        rng = np.random.default_rng(0)  # same weights in both builds
        y = op.Conv(x, op.const(rng.standard_normal((4, 3, 3, 3)).astype(np.float32)))
        y = op.BatchNormalization(y, *[op.const(rng.uniform(0.5, 1.5, 4).astype(np.float32)) for _ in range(4)])
        return op.Gemm(
            op.Transpose(op.Flatten(y), perm=[1, 0]),
            op.const(np.ones((5, 3), np.float32)),
            transA=1,
        )

    results = []
    for _ in range(2):
        model = _build({"x": (5, 3, 3, 3)}, body)
        PassManager([NoOpElimination(), Fusions()])(model)
        assert [n.op_type for n in model.graph] == ["Conv", "Flatten", "Gemm"]
        results.append(model.to_proto().SerializeToString(deterministic=True))
    assert results[0] == results[1]
