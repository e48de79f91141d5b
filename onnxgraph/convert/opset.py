"""Moving a model to another default-domain opset.

onnx.version_converter does the work where it has adapters. Before it runs, each distinct kind of
node is tried on its own (a one-node model through the same conversion) so that every op that cannot
be converted is named in one error rather than the first one found. For the ops it cannot convert:

* the ops of :mod:`onnxgraph.convert.decompose` are rewritten into older ops;
* an op whose node matches the target version's signature exactly (same inputs, outputs, and
  attributes that the older version knows: a change of the allowed types only, such as Relu 14 -> 13
  or Pad 25 -> 17 without ``axes``) is carried over unchanged;
* anything else is reported in a :class:`ConversionError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import onnx
import onnx.version_converter
from onnx import defs, helper

from onnxgraph.convert import decompose
from onnxgraph.errors import ConversionError, one_line
from onnxgraph.model import Model
from onnxgraph.node import Node
from onnxgraph.serde.detached import detach, reattach

MIN_OPSET = 7
"""The oldest default-domain opset onnxruntime loads."""
_CARRIED = "onnxgraph.carried"
"""Domain that hides carried-over nodes from the version converter while it runs."""


@dataclass
class OpsetReport:
    """What an opset conversion did."""

    source: int
    target: int
    rewritten: dict[str, int] = field(default_factory=dict)
    """op type -> nodes rewritten into older ops."""
    carried: dict[str, int] = field(default_factory=dict)
    """op type -> nodes carried over unchanged (signature-compatible at the target version)."""


def default_opset(model: Model) -> int:
    """The model's default-domain opset version."""
    return model.opset_imports.get("", model.opset_imports.get("ai.onnx", 1))


def _is_default(node: Node) -> bool:
    return node.domain in ("", "ai.onnx")


def _signature(node: Node) -> tuple:
    return (node.op_type, len(node.inputs), len(node.outputs), tuple(sorted(node.attributes)))


def _probe(node: Node, source: int, target: int) -> str | None:
    """Convert a one-node model holding a node like ``node``; None when it works, else the reason."""
    names_in = [f"in{i}" if v is not None else "" for i, v in enumerate(node.inputs)]
    attrs = {}
    for name, attr in node.attributes.items():
        if attr.subgraphs() or attr.ref_attr_name:
            continue  # bodies are converted with the main graph; the probe checks the node itself
        attrs[name] = attr.value.to_proto() if hasattr(attr.value, "to_proto") else attr.value
    try:
        proto_node = helper.make_node(node.op_type, names_in, [f"out{i}" for i in range(len(node.outputs))], **attrs)
    except (TypeError, ValueError):
        return None  # an attribute the probe cannot rebuild: the whole-model conversion will judge the node
    graph = helper.make_graph(
        [proto_node],
        "probe",
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names_in if n],
        [helper.make_tensor_value_info(f"out{i}", onnx.TensorProto.FLOAT, None) for i in range(len(node.outputs))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", source)])
    try:
        onnx.version_converter.convert_version(model, target)
    except Exception as exc:  # noqa: BLE001 - the converter raises bare RuntimeErrors
        return _reason(exc)
    return None


def _reason(exc: Exception) -> str:
    text = one_line(exc, last=True)
    match = re.search(r"failed: (.*)$", text)
    return (match.group(1) if match else text).replace("$", "")


def _carries_over(node: Node, source: int, target: int) -> bool:
    """True when ``node`` (valid at opset ``source``) is already a valid node at opset ``target``."""
    try:
        schema = defs.get_schema(node.op_type, target, "")
    except defs.SchemaError:
        return False
    n_in = len(node.inputs)
    if n_in < schema.min_input or n_in > schema.max_input:
        return False
    if len(node.outputs) < schema.min_output or len(node.outputs) > schema.max_output:
        return False
    current = defs.get_schema(node.op_type, source, "")
    return (
        set(node.attributes) <= set(schema.attributes)
        and all(a.name == b.name for a, b in zip(schema.inputs, current.inputs))
        and _types_allowed(node, schema)
    )


def _types_allowed(node: Node, schema: defs.OpSchema) -> bool:
    """True when every input whose element type is known has a type the schema accepts."""
    for i, value in enumerate(node.inputs):
        if value is None or value.elem_type is None or not schema.inputs:
            continue
        formal = schema.inputs[min(i, len(schema.inputs) - 1)]
        allowed = set(formal.types)
        if not allowed:
            constraint = {c.type_param_str: c for c in schema.type_constraints}.get(formal.type_str)
            allowed = set(constraint.allowed_type_strs) if constraint else set()
        name = f"tensor({onnx.TensorProto.DataType.Name(value.elem_type).lower()})"
        if allowed and name not in allowed:
            return False
    return True


def plan(model: Model, target: int) -> tuple[list[Node], list[Node], list[str]]:
    """Sort the model's default-domain nodes into (rewrite, carry over, cannot convert with reasons)."""
    source = default_opset(model)
    verdicts: dict[tuple, str | None] = {}
    rewrites, carried, problems = [], [], []
    for node in model.graph.all_nodes():
        if not _is_default(node):
            continue
        if decompose.needs_rewrite(node, target):
            rewrites.append(node)
            continue
        key = _signature(node)
        if key not in verdicts:
            verdicts[key] = _probe(node, source, target)
        reason = verdicts[key]
        if reason is None:
            continue
        if _carries_over(node, source, target):
            carried.append(node)
        else:
            problems.append(f"{node.op_type} ({reason})")
    return rewrites, carried, sorted(set(problems))


def convert_opset(model: Model, target: int) -> tuple[Model, OpsetReport]:
    """Convert ``model``'s default-domain opset to ``target`` (up or down).

    Args:
        model: the model (changed in place by the rewrites; use the returned model).
        target: the opset version to reach.

    Returns:
        The converted model and what was done.

    Raises:
        ConversionError: the target is out of range or some ops cannot be converted (all are named).
    """
    source = default_opset(model)
    report = OpsetReport(source, target)
    newest = defs.onnx_opset_version()
    if not MIN_OPSET <= target <= newest:
        raise ConversionError(f"opset {target} is out of range ({MIN_OPSET}..{newest} with onnx {onnx.__version__})")
    if target == source:
        return model, report
    rewrites, _, problems = plan(model, target)
    if problems:
        raise ConversionError(f"cannot convert opset {source} to {target}: " + "; ".join(problems))
    for node in rewrites:
        try:
            decompose.rewrite(node, target)
        except ValueError as exc:
            raise ConversionError(
                f"cannot convert {node.op_type} '{node.name}' below opset "
                f"{decompose.DECOMPOSITIONS[node.op_type][0]}: {exc}"
            ) from exc
        report.rewritten[node.op_type] = report.rewritten.get(node.op_type, 0) + 1
    _, carried, _ = plan(model, target)  # the rewrites' own nodes may need carrying over too
    for node in carried:
        node.domain = _CARRIED
        report.carried[node.op_type] = report.carried.get(node.op_type, 0) + 1
    if carried:
        model.opset_imports[_CARRIED] = 1
    proto, weights = detach(model)
    try:
        proto = onnx.version_converter.convert_version(proto, target)
    except Exception as exc:  # noqa: BLE001 - the converter raises bare RuntimeErrors
        raise ConversionError(f"cannot convert opset {source} to {target}: {_reason(exc)}") from exc
    finally:
        for node in carried:
            node.domain = ""
        model.opset_imports.pop(_CARRIED, None)
    converted = reattach(proto, weights, like=model)
    for node in converted.all_nodes():
        if node.domain == _CARRIED:
            node.domain = ""
    converted.opset_imports.pop(_CARRIED, None)
    converted.ir_version = model.ir_version
    return converted, report
