"""``build_gradient``: choose the loss and the ``wrt`` values, run the driver, expose the gradients."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Sequence

import onnx

from onnxgraph import types
from onnxgraph.autodiff.builder import GradBuilder
from onnxgraph.autodiff.engine import backpropagate, is_float
from onnxgraph.autodiff.errors import GradientError
from onnxgraph.autodiff.losses import LOSS_FUNCTIONS, build_loss, target_type
from onnxgraph.model import Model
from onnxgraph.serde.exporter import export_model
from onnxgraph.value import Value

METADATA_KEY = "onnxgraph.gradients"
"""metadata_props key of the JSON mapping: wrt name -> gradient output, ``OUTPUT@upstream`` -> the
input carrying that output's upstream gradient (vjp), ``@loss`` / ``@target`` -> the names of the
appended loss output and target input (loss_fn)."""

MIN_OPSET = 13

Cleanup = Callable[[Model], object]


CLEANUP_PASSES = ("constants", "shapes", "fold", "noop", "cse", "dce")
"""The optimizer passes the default cleanup runs (no fusions: the result stays a plain gradient graph)."""


def simplify(model: Model) -> None:
    """The default cleanup: the project's constant folding, no-op elimination, CSE and DCE."""
    from onnxgraph.optimizers.base import PassManager
    from onnxgraph.optimizers.registry import build_pipeline
    from onnxgraph.shape_inference import annotate_types

    annotate_types(model)
    PassManager(build_pipeline(CLEANUP_PASSES))(model)


def remove_dead_nodes(model: Model) -> None:
    """A minimal cleanup: drop nodes whose outputs nobody reads and unread initializers."""
    graph = model.graph
    outputs = {id(v) for v in graph.outputs}
    for node in reversed(graph.nodes):
        if not any(o.has_uses() or id(o) in outputs for o in node.outputs):
            graph.remove(node)
    for name, value in list(graph.initializers.items()):
        if not value.has_uses() and not value.is_graph_input() and id(value) not in outputs:
            graph.remove_initializer(name)


def build_gradient(
    model: Model | onnx.ModelProto | str | os.PathLike,
    *,
    loss: str | None = None,
    loss_fn: str | None = None,
    output: str | None = None,
    vjp: bool = False,
    wrt: Sequence[str] | None = None,
    cleanup: Cleanup | None = simplify,
) -> Model:
    """A model that computes the original outputs plus gradients (standard ONNX ops only).

    Choose exactly one of ``loss``, ``loss_fn`` or ``vjp``.

    Args:
        model: a Model, ModelProto or path.
        loss: name of an output holding a scalar loss to differentiate (seed 1).
        loss_fn: append a loss (mse, l1, cross_entropy, bce_with_logits, sum) on ``output``, with
            a new input ``target`` (int64 class indices for cross_entropy) and a new output ``loss``.
        output: the output ``loss_fn`` applies to (default: the only output); with ``vjp``, the
            one output to differentiate (default: every floating-point output).
        vjp: vector-Jacobian product: each differentiated output ``O`` gets an input ``O_grad``
            holding its upstream gradient.
        wrt: graph inputs and/or initializers to differentiate with respect to (default: every
            floating-point initializer).
        cleanup: called with the finished model (default: :func:`simplify`, the project's
            folding, CSE and DCE). The ``wrt`` parameters are listed as graph inputs meanwhile, so
            no pass folds or merges them: a training loop updates them, and a copy would go stale.

    Returns:
        The new model with one ``NAME_grad`` output per ``wrt`` entry (suffixed when taken); the
        mapping is stored as JSON under metadata_props[``onnxgraph.gradients``].

    Raises:
        GradientError: bad loss/wrt choice, an unsupported opset or a missing gradient rule.
    """
    if sum([loss is not None, loss_fn is not None, vjp]) != 1:
        raise GradientError("choose exactly one of loss, loss_fn or vjp")
    result = _load_copy(model)
    graph = result.graph
    _infer_types(result)
    builder = GradBuilder(graph, result.opset_imports.get("", MIN_OPSET))
    mapping: dict[str, str] = {}
    wrt_values = _wrt_values(graph, wrt)
    seeds = _seeds(builder, loss, loss_fn, output, vjp, mapping)
    gradients = backpropagate(graph, builder, seeds, wrt_values)
    for value in wrt_values:
        gradient = gradients[value] if gradients[value] is not None else builder.zeros_like(value)
        mapping[value.name] = _expose(builder, gradient, value)
    result.metadata_props[METADATA_KEY] = json.dumps(mapping)
    if cleanup is not None:
        with _held_as_inputs(graph, wrt_values):
            cleanup(result)
    return result


@contextlib.contextmanager
def _held_as_inputs(graph, values: Sequence[Value]):
    """List initializers among ``values`` as graph inputs for a while: overridable, so not constants."""
    added = [v for v in values if v.is_initializer() and not v.is_graph_input()]
    graph.inputs.extend(added)
    try:
        yield
    finally:
        held = {id(v) for v in added}
        graph.inputs[:] = [v for v in graph.inputs if id(v) not in held]


def _load_copy(model) -> Model:
    """A fresh IR of ``model`` (the caller's Model is never modified), on a supported opset."""
    import onnxgraph

    if isinstance(model, Model):
        model = model.to_proto()
    result = onnxgraph.load(model)
    version = result.opset_imports.get("", result.opset_imports.get("ai.onnx"))
    if version is not None and MIN_OPSET <= version <= onnx.defs.onnx_opset_version():
        return result
    return onnxgraph.from_proto(_supported_opset(result.to_proto()))


def _infer_types(model: Model) -> None:
    """Give every value its inferred type (onnx shape inference on a copy without weight data)."""
    graph = model.graph
    for value in graph.initializers.values():  # rules read the weights' shapes
        if value.type is None and value.const_value is not None:
            value.type = types.tensor_type(value.const_value.elem_type, tuple(value.const_value.dims))
    skeleton = export_model(model, _shape_only_sink)
    inferred = onnx.shape_inference.infer_shapes(skeleton, data_prop=True)
    by_name = {v.name: v for node in graph.all_nodes() for v in node.outputs if v.name}
    by_name.update({v.name: v for g in graph.all_graphs() for v in g.inputs})
    for info in _value_infos(inferred.graph):
        value = by_name.get(info.name)
        if value is not None and info.type.WhichOneof("value") and (value.type is None or value.shape is None):
            value.type = info.type


def _value_infos(graph: onnx.GraphProto):
    """Every inferred value_info and output of a graph and its subgraphs."""
    yield from graph.value_info
    yield from graph.output
    for node in graph.node:
        for attr in node.attribute:
            for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
                yield from _value_infos(sub)


def _shape_only_sink(tensor, name: str) -> onnx.TensorProto:
    """Small tensors (shapes, axes, scalars) as they are; large ones as dims and type only."""
    if tensor.nbytes <= _INFERENCE_DATA_LIMIT:
        return tensor.to_proto(name)
    stub = onnx.TensorProto(name=name, data_type=tensor.elem_type)
    stub.dims.extend(tensor.dims)
    return stub


_INFERENCE_DATA_LIMIT = 4096
"""Initializers up to this size keep their data for shape inference's constant propagation."""


def _supported_opset(proto: onnx.ModelProto) -> onnx.ModelProto:
    version = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    newest = onnx.defs.onnx_opset_version()
    if version is None:
        raise GradientError("the model imports no default-domain opset")
    if version > newest:
        raise GradientError(f"opset {version} is newer than the installed onnx knows ({newest})")
    if version >= MIN_OPSET:
        return proto
    try:
        from onnx import version_converter

        return version_converter.convert_version(proto, MIN_OPSET)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GradientError(f"opset {version} is older than {MIN_OPSET} and upgrading it failed: {first}") from exc


def _output(graph, name: str) -> Value:
    found = next((v for v in graph.outputs if v.name == name), None)
    if found is None:
        names = ", ".join(v.name for v in graph.outputs)
        raise GradientError(f"'{name}' is not an output of the model (outputs: {names})")
    return found


def _new_input(graph, base: str, type_proto) -> Value:
    value = Value(graph.fresh_name(base), type_proto)
    return graph.add_input(value)


def _seeds(b, loss, loss_fn, output, vjp, mapping) -> dict[Value, Value]:
    graph = b.graph
    if loss is not None:
        value = _output(graph, loss)
        if not is_float(value):
            raise GradientError(f"loss '{loss}' is not a floating-point tensor")
        if value.shape is not None and any(d != 1 for d in value.shape):
            dims = ",".join(str(d) for d in value.shape)
            raise GradientError(f"loss '{loss}' is not a scalar (shape [{dims}]): use loss_fn or vjp")
        ones = b.Expand(b.scalar(1, value), b.shape(value)) if value.shape != () else b.scalar(1, value)
        return {value: b.typed(ones, value)}
    if loss_fn is not None:
        if loss_fn not in LOSS_FUNCTIONS:
            raise GradientError(f"unknown loss function '{loss_fn}' (choose from {', '.join(LOSS_FUNCTIONS)})")
        if output is None:
            if len(graph.outputs) != 1:
                raise GradientError("the model has several outputs: name the one the loss applies to")
            output = graph.outputs[0].name
        value = _output(graph, output)
        if not is_float(value):
            raise GradientError(f"output '{output}' is not a floating-point tensor")
        kind = target_type(loss_fn, value)
        target = _new_input(graph, "target", kind) if kind is not None else None
        loss_value = build_loss(b, loss_fn, value, target)
        loss_value.name = graph.fresh_name("loss")
        loss_value.type = types.tensor_type(value.elem_type, ())
        graph.outputs.append(loss_value)
        mapping["@loss"] = loss_value.name
        if target is not None:
            mapping["@target"] = target.name
        return {loss_value: b.scalar(1, value)}
    chosen = [_output(graph, output)] if output is not None else [v for v in graph.outputs if is_float(v)]
    if not chosen or not all(is_float(v) for v in chosen):
        raise GradientError("vjp needs floating-point outputs to differentiate")
    seeds = {}
    for value in chosen:
        upstream = _new_input(graph, f"{value.name}_grad", value.type)
        mapping[f"{value.name}@upstream"] = upstream.name
        seeds[value] = upstream
    return seeds


def _wrt_values(graph, names: Sequence[str] | None) -> list[Value]:
    if names is None:
        values = [v for v in graph.initializers.values() if v.elem_type in types.FLOAT_TYPES]
        if not values:
            raise GradientError("the model has no floating-point initializers: name the wrt values")
        return values
    by_name = {v.name: v for v in graph.inputs}
    by_name.update(graph.initializers)
    values = []
    for name in names:
        value = by_name.get(name)
        if value is None:
            raise GradientError(f"wrt '{name}' is neither a graph input nor an initializer")
        if not is_float(value):
            raise GradientError(f"wrt '{name}' is not a floating-point tensor")
        values.append(value)
    return values


def _expose(b: GradBuilder, gradient: Value, wrt: Value) -> str:
    """Add ``gradient`` as a graph output named ``<wrt>_grad`` (suffixed when taken)."""
    graph = b.graph
    if gradient.producer() is None or gradient.is_graph_output() or gradient.producer() not in b.created:
        gradient = b.Identity(gradient)
    gradient.name = graph.fresh_name(f"{wrt.name}_grad")
    gradient.type = types.tensor_type(wrt.elem_type, wrt.shape)
    graph.outputs.append(gradient)
    return gradient.name
