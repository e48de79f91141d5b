"""Pass ``noop``: each case removes what it should (structure) and nothing changes numerically."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

import onnxgraph
from onnxgraph.optimizers.noop import NoOpElimination
from onnxgraph.runtime.compare import compare_outputs
from onnxgraph.runtime.inputs import random_inputs, specs_of
from onnxgraph.runtime.sessions import run_model
from onnxgraph.shape_inference import annotate_types

HEADER = '<ir_version: 10, opset_import: ["" : 18]>\n'


def _model(signature: str, body: str) -> onnxgraph.Model:
    model = onnxgraph.from_proto(onnx.parser.parse_model(HEADER + f"g {signature} {{\n{body}\n}}"))
    annotate_types(model)
    return model


def _eliminate(model: onnxgraph.Model) -> tuple[Counter, Counter]:
    """Run the pass; check validity, interface and numerics. Returns (op counts, stats)."""
    original = model.to_proto()
    feeds = random_inputs(specs_of(model), seed=3, dynamic_dim=2)
    expected = run_model(original, feeds)
    stats = NoOpElimination()(model).stats
    optimized = model.to_proto()
    onnx.checker.check_model(optimized, full_check=True)
    assert [(i.name, i.type) for i in optimized.graph.input] == [(i.name, i.type) for i in original.graph.input]
    assert [(o.name, o.type) for o in optimized.graph.output] == [(o.name, o.type) for o in original.graph.output]
    for result in compare_outputs(expected, run_model(optimized, feeds)):
        assert result.passed, result
    return Counter(n.op_type for n in model.all_nodes()), stats


X = "(float[N,3,4] x) => (float[N,3,4] y)"


def _const(name: str, values: list[int]) -> str:
    return f"{name} = Constant<value = int64[{len(values)}] {{{', '.join(map(str, values))}}}>()"


# case, signature, body (reads a = Relu(x), writes r; y = Neg(r)), op type that must go
REMOVED = [
    ("identity", X, "r = Identity(a)", "Identity"),
    ("dropout", X, "r, mask = Dropout(a)", "Dropout"),
    ("dropout", X, 'f = Constant<value = bool {0}>()\n r = Dropout(a, "", f)', "Dropout"),
    ("cast", X, "r = Cast<to = 1>(a)", "Cast"),
    ("reshape", X, _const("s", [0, 3, -1]) + "\n r = Reshape(a, s)", "Reshape"),
    ("reshape", X, _const("s", [-1, 3, 4]) + "\n r = Reshape(a, s)", "Reshape"),
    ("flatten", "(float[N,12] x) => (float[N,12] y)", "r = Flatten<axis = 1>(a)", "Flatten"),
    ("flatten", "(float[N,12] x) => (float[N,12] y)", "r = Flatten<axis = -1>(a)", "Flatten"),
    ("squeeze", "(float[2,3,4] x) => (float[2,3,4] y)", "r = Squeeze(a)", "Squeeze"),
    ("unsqueeze", X, "e = Constant<value = int64[0] {}>()\n r = Unsqueeze(a, e)", "Unsqueeze"),
    ("expand", X, _const("s", [3, 1]) + "\n r = Expand(a, s)", "Expand"),
    ("expand", X, _const("s", [1, 1, 1]) + "\n r = Expand(a, s)", "Expand"),
    ("transpose", X, "r = Transpose<perm = [0, 1, 2]>(a)", "Transpose"),
    (
        "transpose_pair",
        X,
        "t = Transpose<perm = [2, 0, 1]>(a)\n r = Transpose<perm = [1, 2, 0]>(t)",
        "Transpose",
    ),
    ("pad", X, _const("p", [0] * 6) + "\n r = Pad(a, p)", "Pad"),
    ("transpose_unit_dims", "(float[N,1,4] x) => (float[N,4,1] y)", "r = Transpose<perm = [0, 2, 1]>(a)", "Transpose"),
    ("transpose_unit_dims", "(float[N,1,M] x) => (float[1,N,M] y)", "r = Transpose<perm = [1, 0, 2]>(a)", "Transpose"),
    (
        "slice",
        X,
        _const("b", [0]) + _const("\n e", [2**63 - 1]) + _const("\n ax", [1]) + "\n r = Slice(a, b, e, ax)",
        "Slice",
    ),
    (
        "slice",
        X,
        _const("b", [0, 0]) + _const("\n e", [9, 4]) + _const("\n ax", [-1, 1]) + "\n r = Slice(a, b, e, ax)",
        "Slice",
    ),
    ("split", X, "r = Split<axis = 1, num_outputs = 1>(a)", "Split"),
    ("concat", X, "r = Concat<axis = 0>(a)", "Concat"),
    (
        "squeeze_unsqueeze_pair",
        X,
        _const("k", [1, -1]) + "\n u = Unsqueeze(a, k)\n r = Squeeze(u, k)",
        "Squeeze",
    ),
    (
        "squeeze_unsqueeze_pair",
        "(float[N,1,4] x) => (float[N,1,4] y)",
        _const("k", [-2]) + "\n u = Squeeze(a, k)\n r = Unsqueeze(u, k)",
        "Squeeze",
    ),
    ("arithmetic", X, "z = Constant<value = float {0}>()\n r = Add(a, z)", "Add"),
    ("arithmetic", X, "z = Constant<value = float[1,4] {0, 0, 0, 0}>()\n r = Add(z, a)", "Add"),
    ("arithmetic", X, "z = Constant<value = float[3,1] {0, 0, 0}>()\n r = Sub(a, z)", "Sub"),
    ("arithmetic", X, "o = Constant<value = float[1] {1}>()\n r = Mul(o, a)", "Mul"),
    ("arithmetic", X, "o = Constant<value = float {1}>()\n r = Div(a, o)", "Div"),
    (
        "cast_pair",
        "(float16[N,3,4] x) => (double[N,3,4] y)",
        "c = Cast<to = 1>(a)\n r = Cast<to = 11>(c)",
        "Cast",
    ),
    (
        "cast_pair",
        "(int32[N,3,4] x) => (float[N,3,4] y)",
        "c = Cast<to = 7>(a)\n r = Cast<to = 1>(c)",
        "Cast",
    ),
    (
        "cast_pair",
        "(float[N,3,4] x) => (float[N,3,4] y)",
        "c = Cast<to = 11>(a)\n r = Cast<to = 1>(c)",
        "Cast",
    ),
]


@pytest.mark.parametrize(
    ("case", "signature", "body", "op_type"),
    REMOVED,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(REMOVED)],
)
def test_removed(case, signature, body, op_type):
    model = _model(signature, f"a = Relu(x)\n {body}\n y = Neg(r)")
    before = Counter(n.op_type for n in model.all_nodes())
    ops, stats = _eliminate(model)
    assert stats[case] >= 1
    assert ops[op_type] < before[op_type]


KEPT = [
    (
        "reshape changes the shape",
        X,
        _const("s", [0, 4, -1]) + "\n r = Reshape(a, s)\n y = Reshape(r, s0)",
        _const("s0", [0, 3, 4]),
    ),
    (
        "squeeze of a symbolic dim",
        "(float[N,3,4] x) => (float[3,4] y)",
        "r = Squeeze(a)\n y = Neg(r)",
        "",
    ),
    (
        "expand that grows",
        "(float[N,3,4] x) => (float[2,3,4] y)",
        "r = Expand(a, s)\n y = Neg(r)",
        _const("s", [2, 3, 4]),
    ),
    (
        "slice that crops",
        "(float[N,3,4] x) => (float[N,3,3] y)",
        "r = Slice(a, b, e, ax)\n y = Neg(r)",
        _const("b", [0]) + _const("\n e", [3]) + _const("\n ax", [2]),
    ),
    ("0 - x", X, "r = Sub(z, a)\n y = Neg(r)", "z = Constant<value = float {0}>()"),
    (
        "transpose of dims that are not 1",
        "(float[N,3,4] x) => (float[N,4,3] y)",
        "r = Transpose<perm = [0, 2, 1]>(a)\n y = Neg(r)",
        "",
    ),
    (
        "x * ones that broadcast up",
        "(float[N,3,4] x) => (float[2,3,4] y)",
        "r = Mul(a, o)\n y = Neg(r)",
        "o = Constant<value = float[2,1,1] {1, 1}>()",
    ),
    (
        "training dropout",
        X,
        "r = Dropout(a, z, t)\n y = Neg(r)",  # ratio 0 keeps the output deterministic
        "t = Constant<value = bool {1}>()\n z = Constant<value = float {0}>()",
    ),
    (
        "dropout mask used",
        "(float[N,3,4] x) => (float[N,3,4] y, bool[N,3,4] m)",
        "r, m = Dropout(a)\n y = Neg(r)",
        "",
    ),
    (
        "lossy inner cast float->float16",
        X,
        "c = Cast<to = 10>(a)\n r = Cast<to = 1>(c)\n y = Neg(r)",
        "",
    ),
    (
        "lossy inner cast float->int32",
        X,
        "c = Cast<to = 6>(a)\n r = Cast<to = 1>(c)\n y = Neg(r)",
        "",
    ),
    (
        "lossy inner cast int64->int32",
        "(int64[N,3,4] x) => (int64[N,3,4] y)",
        "c = Cast<to = 6>(a)\n r = Cast<to = 7>(c)\n y = Neg(r)",
        "",
    ),
    (
        "reshape pair where the second copies a dim",
        "(float[N,3,4] x) => (float[N,4,3] y)",
        "r1 = Reshape(a, s1)\n r = Reshape(r1, s2)\n y = Neg(r)",
        _const("s1", [-1, 12]) + _const("\n s2", [0, 4, 3]),
    ),
]


@pytest.mark.parametrize(("why", "signature", "body", "constants"), KEPT, ids=[k[0] for k in KEPT])
def test_kept(why, signature, body, constants):
    model = _model(signature, f"{constants}\n a = Relu(x)\n {body}")
    before = Counter(n.op_type for n in model.all_nodes())
    ops, stats = _eliminate(model)
    assert not stats and ops == before


def test_graph_output_keeps_its_name_type_and_symbolic_shape():
    model = _model("(float[N,3,4] x) => (float[N,3,4] y)", "a = Relu(x)\n y = Identity(a)")
    ops, stats = _eliminate(model)
    assert stats == {"identity": 1} and ops == {"Relu": 1}
    (output,) = model.graph.outputs
    assert output.name == "y" and output.producer().op_type == "Relu" and output.shape == ("N", 3, 4)


def test_graph_input_forwarded_to_output_is_kept():
    model = _model("(float[N,3,4] x) => (float[N,3,4] y)", "y = Identity(x)")
    ops, stats = _eliminate(model)
    assert not stats and ops == {"Identity": 1}


def test_inside_if_branch_reading_an_outer_value():
    then_else = (
        "then_branch = t () => (float[N,3,4] ty) {{ ty = Identity(a) }}, "
        "else_branch = e () => (float[N,3,4] ey) {{ {} }}"
    )
    body = "a = Relu(x)\n y = If(c) <" + then_else.format("i = Identity(a)\n ey = Neg(i)") + ">"
    model = _model("(float[N,3,4] x, bool c) => (float[N,3,4] y)", body.replace("{{", "{").replace("}}", "}"))
    ops, stats = _eliminate(model)
    # The then-branch returns the outer value itself, so its Identity must stay; the else one goes.
    assert stats == {"identity": 1} and ops["Identity"] == 1


def test_function_body_is_simplified():
    text = (
        HEADER.replace('"" : 18', '"" : 18, "local" : 1')
        + """
    g (float[N,3,4] x) => (float[N,3,4] y) { y = local.f(x) }
    <domain: "local", opset_import: ["" : 18]>
    f (a) => (b) { i = Identity(a)
     b = Neg(i) }
    """
    )
    model = onnxgraph.from_proto(onnx.parser.parse_model(text))
    ops, stats = _eliminate(model)
    assert stats == {"identity": 1} and "Identity" not in ops


def test_inner_node_of_a_pair_returned_by_a_subgraph_stays():
    # onnxruntime rejects a subgraph returning an outer value directly, so onnx.reference checks it.
    model = _model(
        "(float[N,3,4] x, bool c) => (float[N,3,4] y, float[3,N,4] z)",
        "a = Relu(x)\n t = Transpose<perm = [1, 0, 2]>(a)\n r = Transpose<perm = [1, 0, 2]>(t)\n"
        " y = Neg(r)\n z = If(c) <then_branch = tb () => (t) { }, else_branch = eb () => (t) { }>",
    )
    feeds = random_inputs(specs_of(model), seed=3, dynamic_dim=2)
    expected = ReferenceEvaluator(model.to_proto()).run(None, feeds)
    stats = NoOpElimination()(model).stats
    assert stats == {"transpose_pair": 1}
    assert Counter(n.op_type for n in model.all_nodes())["Transpose"] == 1  # the If still returns t
    actual = ReferenceEvaluator(model.to_proto()).run(None, feeds)
    assert all(np.array_equal(e, a) for e, a in zip(expected, actual, strict=True))


def test_reshape_with_a_shape_attribute_before_opset_5_is_left_alone():
    text = '<ir_version: 3, opset_import: ["" : 4]>\n' + (
        "g (float[2,3,4] x) => (float[2,12] y) { y = Reshape<shape = [2, 12]>(x) }"
    )
    model = onnxgraph.from_proto(onnx.parser.parse_model(text))
    assert not NoOpElimination()(model).stats
    assert [n.op_type for n in model.graph] == ["Reshape"]


@pytest.mark.parametrize(
    ("op", "constant", "out", "removed"),
    [
        ("And", "bool[1,1] {1}", "N,2", True),
        ("Or", "bool {0}", "N,2", True),
        ("And", "bool[1,2] {1, 0}", "N,2", False),
        ("Or", "bool[2,1,1] {0, 0}", "2,N,2", False),  # broadcasts x up
    ],
)
def test_logical_with_its_neutral_constant(op, constant, out, removed):
    model = _model(
        f"(float[N,2] x) => (bool[{out}] y)",
        f"c = Constant<value = {constant}>()\n z = Constant<value = float {{0}}>()\n"
        f" a = Greater(x, z)\n r = {op}(c, a)\n y = Not(r)",
    )
    ops, stats = _eliminate(model)
    assert (stats["logical"] == 1) is removed
    assert (op not in ops) is removed


@pytest.mark.parametrize(
    ("inner", "outer", "expected"),
    [([0], [1], [0, 1]), ([1], [0], [0, 2]), ([-1], [-1], [2, 3]), ([0, 2], [1], [0, 1, 3])],
)
def test_unsqueeze_pair_becomes_one_unsqueeze(inner, outer, expected):
    model = _model(
        "(float[N,3] x) => (float y)",
        f"{_const('i', inner)}\n {_const('o', outer)}\n a = Relu(x)\n u = Unsqueeze(a, i)\n"
        " r = Unsqueeze(u, o)\n y = ReduceSum<keepdims = 0>(r)",
    )
    ops, stats = _eliminate(model)
    assert stats["unsqueeze_pair"] == 1 and ops["Unsqueeze"] == 1
    unsqueeze = next(n for n in model.graph if n.op_type == "Unsqueeze")
    assert unsqueeze.inputs[1].const_value.numpy().tolist() == expected


@pytest.mark.parametrize(
    ("body", "removed"),
    [
        ("c = Constant<value = bool[1] {1}>()\n r = Where(c, a, z)", True),
        ("c = Constant<value = bool[3,1] {0, 0, 0}>()\n r = Where(c, z, a)", True),
        ("c = Greater(a, z)\n r = Where(c, a, a)", True),
        ("c = Constant<value = bool[1,4] {1, 0, 1, 1}>()\n r = Where(c, a, z)", False),
    ],
)
def test_where_that_picks_one_branch(body, removed):
    model = _model(X, f"z = Constant<value = float {{0}}>()\n a = Relu(x)\n {body}\n y = Neg(r)")
    ops, stats = _eliminate(model)
    assert (stats["where"] == 1) is removed
    assert ("Where" not in ops) is removed


def test_reshape_after_flatten():
    model = _model(
        "(float[N,3,4] x) => (float[N,4,3] y)",
        f"{_const('s', [-1, 4, 3])}\n a = Relu(x)\n f = Flatten<axis = 1>(a)\n r = Reshape(f, s)\n y = Neg(r)",
    )
    ops, stats = _eliminate(model)
    assert stats["reshape_pair"] == 1 and "Flatten" not in ops
