"""Folding estimates what a size-giving node would allocate before running anything."""

from __future__ import annotations

import pytest

from onnxgraph.optimizers.fold import DEFAULT_SIZE_LIMIT, ConstantFolding


def _refuse(model, feeds):
    ops = [n.op_type for n in model.graph.node]
    assert not {"ConstantOfShape", "Expand", "Tile", "Range"} & set(ops), f"{ops} handed to a runtime"
    raise AssertionError(f"nothing else is left to evaluate here, yet {ops} was")


@pytest.mark.parametrize(
    ("body", "kept"),
    [
        # 100000 * 100000 elements: the shape is computed, so shape inference cannot see the size.
        ("n = Mul(a, a)\n        big = ConstantOfShape(n)", "ConstantOfShape"),
        ("n = Mul(a, a)\n        big = Expand(one, n)", "Expand"),
        ("n = Mul(a, a)\n        big = Tile(one, n)", "Tile"),
        ("big = Range(zero, limit, step)", "Range"),
    ],
)
def test_nodes_that_would_allocate_too_much_are_never_run(kit, monkeypatch, body, kept):
    model = kit.parse(f"""
    agraph (float[1] x) => (float[1] y)
      <int64[1] a = {{100000}}, float[1] one = {{1.0}}, float zero = {{0.0}}, float limit = {{1e10}},
       float step = {{1.0}}> {{
        {body}
        s = ReduceSum <keepdims = 0> (big)
        y = Add(x, s)
    }}""")
    monkeypatch.setattr("onnxgraph.optimizers.fold.run_onnxruntime", _refuse)
    monkeypatch.setattr("onnxgraph.optimizers.fold.run_reference", _refuse)
    ConstantFolding()(model)
    assert kept in [n.op_type for n in model.graph]
    assert all(v.const_value.size <= DEFAULT_SIZE_LIMIT for v in model.graph.initializers.values())
