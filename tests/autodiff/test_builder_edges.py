"""Edge cases of the gradient builder's helpers that used to end in a Python traceback."""

from __future__ import annotations

import inspect

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxgraph import Value, types
from onnxgraph.autodiff import GradientError
from onnxgraph.autodiff.builder import GradBuilder, upstream
from onnxgraph.autodiff.registry import RULES, lookup
from onnxgraph.autodiff.rules.loops import _step_type
from onnxgraph.autodiff.rules.recurrent import _known_elem_type
from onnxgraph.graph import Graph
from onnxgraph.tensor import SparseTensor


def test_a_sparse_initializer_is_not_read_as_constant_data():
    """SparseTensor has no numpy(): constant_array raised AttributeError on one."""
    graph = Graph("g")
    values = numpy_helper.from_array(np.array([3], dtype=np.int64), "axes")
    indices = numpy_helper.from_array(np.array([0], dtype=np.int64), "axes_indices")
    sparse = graph.add_sparse_initializer(
        Value("axes"), SparseTensor(onnx.helper.make_sparse_tensor(values, indices, [1]))
    )
    dense = Value("dense", const_value=None)
    b = GradBuilder(graph, 18)
    assert b.constant_array(sparse) is None and b.constant_ints(sparse) is None
    assert b.constant_array(dense) is None
    assert b.constant_ints(b.const(np.array([1, 2], dtype=np.int64))) == [1, 2]


def test_a_loop_sequence_of_unknown_element_type_has_no_step_type():
    """make_tensor_type_proto(None, ...) raised TypeError."""
    assert _step_type(Value("seq")) is None
    step = _step_type(Value("seq", types.tensor_type(onnx.TensorProto.FLOAT, (5, 2, 3))))
    assert step is not None and types.shape_of(step) == (2, 3)


def test_a_scan_over_a_value_of_unknown_element_type_is_a_gradient_error():
    with pytest.raises(GradientError, match="the element type of 'h' is unknown"):
        _known_elem_type(Value("h"))
    assert _known_elem_type(Value("h", types.tensor_type(onnx.TensorProto.DOUBLE, None))) == onnx.TensorProto.DOUBLE


def test_upstream_refuses_a_missing_gradient():
    g = Value("g")
    assert upstream([g]) is g and upstream([None, g], 1) is g
    with pytest.raises(GradientError, match="expects an upstream gradient at output 0"):
        upstream([None, g])


def test_every_registered_rule_is_annotated():
    """mypy checks a rule against RuleFn only as far as it is annotated: keep every rule typed."""
    assert lookup("", "Mul") is not None  # fills RULES
    typed = [rule.fn for rule in RULES.values() if rule.fn is not None]
    assert len(typed) > 80
    unannotated = [fn.__qualname__ for fn in typed if set(inspect.get_annotations(fn)) != {"return"} | _params(fn)]
    assert not unannotated


def _params(fn) -> set[str]:
    return set(inspect.signature(fn).parameters)
