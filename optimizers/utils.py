"""Helpers shared by the passes: walking scopes, reading constants, replacing values by constants."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

from onnxgraph import types
from onnxgraph.attribute import AttrType
from onnxgraph.graph import Graph
from onnxgraph.model import Model
from onnxgraph.node import Node
from onnxgraph.tensor import Tensor
from onnxgraph.value import Value

STANDARD_DOMAINS = frozenset({"", "ai.onnx"})
RANDOM_OPS = frozenset(
    {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}
)
"""Ops whose outputs differ between runs: never folded or merged."""


def scopes(model: Model) -> Iterator[tuple[Graph, bool]]:
    """Every graph of ``model`` (main graph, subgraphs, function bodies) with ``in_function``.

    Function bodies cannot hold initializers, so passes that create constants make Constant nodes
    there instead.
    """
    for graph in model.graph.all_graphs():
        yield graph, False
    for function in model.functions.values():
        for graph in function.graph.all_graphs():
            yield graph, True


def is_standard(node: Node) -> bool:
    """True for nodes of the default ONNX domain."""
    return node.domain in STANDARD_DOMAINS


def constant_node_tensor(node: Node) -> Tensor | None:
    """The tensor a Constant node produces, None for sparse or attribute-reference values."""
    for attr in node.attributes.values():
        if attr.ref_attr_name or attr.value is None:
            return None
        if attr.type == AttrType.TENSOR:
            return attr.value
        if attr.type == AttrType.SPARSE_TENSOR:
            return None
        if attr.name == "value_float":
            return Tensor(np.array(attr.value, dtype=np.float32))
        if attr.name == "value_floats":
            return Tensor(np.array(attr.value, dtype=np.float32).reshape(-1))
        if attr.name == "value_int":
            return Tensor(np.array(attr.value, dtype=np.int64))
        if attr.name == "value_ints":
            return Tensor(np.array(attr.value, dtype=np.int64).reshape(-1))
        if attr.name == "value_string":
            return Tensor(np.array(_text(attr.value), dtype=object))
        if attr.name == "value_strings":
            return Tensor(np.array([_text(s) for s in attr.value], dtype=object).reshape(-1))
    return None


def _text(value: str | bytes) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def constant_tensor(value: Value | None) -> Tensor | None:
    """The data of ``value`` when it is a constant: an initializer that no graph input can
    override, or the output of a Constant node. None otherwise."""
    if value is None:
        return None
    if value.is_initializer():
        if not isinstance(value.const_value, Tensor):
            return None
        if value.is_graph_input():
            return None
        return value.const_value
    producer = value.producer()
    if producer is not None and producer.op_type == "Constant" and is_standard(producer):
        return constant_node_tensor(producer)
    return None


def constant_array(value: Value | None) -> np.ndarray | None:
    """:func:`constant_tensor` as a numpy array (None when not constant)."""
    tensor = constant_tensor(value)
    return None if tensor is None else tensor.numpy()


def is_deterministic(node: Node) -> bool:
    """False for random ops and for Dropout that may run in training mode."""
    if node.op_type in RANDOM_OPS:
        return False
    if node.op_type == "Dropout" and is_standard(node):
        if node.attr("is_test", 1) == 0:
            return False
        if len(node.inputs) > 2 and node.inputs[2] is not None:
            training = constant_array(node.inputs[2])
            return training is not None and not bool(training)
    return True


def new_constant(
    graph: Graph, array: np.ndarray, *, in_function: bool, before: Node | None = None, base_name: str = "const"
) -> Value:
    """A new constant holding ``array``: an initializer of ``graph``, or, in function bodies (which
    cannot hold initializers), a Constant node placed before ``before`` (default: first)."""
    tensor = Tensor(np.asarray(array))
    if not in_function:
        return graph.make_initializer(tensor, base_name)
    node = Node("", "Constant", [], {"value": tensor})
    anchor = before if before is not None else next(iter(graph.nodes), None)
    if anchor is not None:
        graph.insert_before(anchor, node)
    else:
        graph.append(node)
    value = node.outputs[0]
    value.type = types.tensor_type(tensor.elem_type, tensor.dims)
    return value


def replace_with_constant(value: Value, array: np.ndarray, *, in_function: bool) -> Value:
    """Make every reader of ``value`` read a new constant holding ``array`` instead.

    Where ``value`` is a graph output, the constant takes over its name and declared type.

    Returns:
        The new constant value.
    """
    graph = value.graph
    if graph is None:
        raise ValueError(f"{value!r} belongs to no graph")
    new = new_constant(graph, array, in_function=in_function, before=value.producer(), base_name=value.name or "const")
    declared = value.type
    was_output = value.is_graph_output()
    value.replace_all_uses_with(new, replace_graph_outputs=True)
    if was_output and declared is not None:
        new.type = declared
    return new


_FIRST_IR_WITH_OPTIONAL_INPUT_INITIALIZERS = 4


@contextlib.contextmanager
def legacy_initializer_inputs_as_constants(model: Model) -> Iterator[None]:
    """Let passes treat the initializers an IR<4 model lists as graph inputs as constants.

    Before IR version 4 every initializer had to be listed as a graph input, so there the listing
    says nothing about overriding. While the context is open those inputs are taken off the input
    list (so every pass sees plain initializers); on exit they are put back where they were, and
    an initializer a pass dropped is restored, so the interface does not change. New initializers
    (folded constants) are not inputs, which IR 3 forbids: the model then moves to IR version 4.
    """
    graph = model.graph
    if not 0 < (model.ir_version or 0) < _FIRST_IR_WITH_OPTIONAL_INPUT_INITIALIZERS:
        yield
        return
    listed = [(i, v) for i, v in enumerate(graph.inputs) if v.is_initializer()]
    for _, value in listed:
        graph.inputs.remove(value)
    try:
        yield
    finally:
        for position, value in listed:
            if not value.is_initializer():
                graph.add_initializer(value)
            graph.inputs.insert(position, value)
        inputs = {id(v) for v in graph.inputs}
        if any(id(v) not in inputs for v in graph.initializers.values()):
            model.ir_version = _FIRST_IR_WITH_OPTIONAL_INPUT_INITIALIZERS


def remove_if_unused(node: Node) -> bool:
    """Remove ``node`` when none of its outputs is read or is a graph output."""
    graph = node.graph
    if graph is None:
        return False
    for value in node.outputs:
        if value.has_uses() or value.is_graph_output():
            return False
    graph.remove(node)
    return True
