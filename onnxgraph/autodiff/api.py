"""``build_gradient``: choose the loss and the ``wrt`` values, run the driver, expose the gradients."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Sequence

import numpy as np
import onnx

from onnxgraph import types
from onnxgraph.autodiff.builder import GradBuilder
from onnxgraph.autodiff.engine import backpropagate, is_float
from onnxgraph.autodiff.errors import GradientError
from onnxgraph.autodiff.losses import LOSS_FUNCTIONS, build_loss, target_type
from onnxgraph.errors import one_line
from onnxgraph.metadata import GRADIENTS_KEY
from onnxgraph.model import Model
from onnxgraph.tensor import Tensor
from onnxgraph.value import Value

METADATA_KEY = GRADIENTS_KEY

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
    allow_external_data_outside: bool = False,
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
        wrt: values to differentiate with respect to: graph inputs, initializers or any
            floating-point value the graph computes, whose gradient is then its own (it does not
            flow on into what computed it). Default: every floating-point initializer and every
            Identity copy of one that another op reads directly (a parameter the exporter deduplicated),
            made an initializer of its own so it trains apart.
        cleanup: called with the finished model (default: :func:`simplify`, the project's
            folding, CSE and DCE). The ``wrt`` parameters are listed as graph inputs meanwhile, so
            no pass folds or merges them: a training loop updates them, and a copy would go stale.
        allow_external_data_outside: load a model path whose external data lies outside its folder or
            behind symbolic links (see :func:`onnxgraph.load`; unsafe for models from others).

    Returns:
        The new model with one ``NAME_grad`` output per ``wrt`` entry (suffixed when taken); the
        mapping is stored as JSON under metadata_props[``onnxgraph.gradients``].

    Raises:
        GradientError: bad loss/wrt choice, an unsupported opset or a missing gradient rule.
    """
    if sum([loss is not None, loss_fn is not None, vjp]) != 1:
        raise GradientError("choose exactly one of loss, loss_fn or vjp")
    result = _load_copy(model, allow_external_data_outside)
    graph = result.graph
    _infer_types(result)
    builder = GradBuilder(graph, result.opset_imports.get("", MIN_OPSET))
    mapping: dict[str, str] = {}
    wrt_values = _wrt_values(graph, wrt)
    seeds = _seeds(builder, loss, loss_fn, output, vjp, mapping)
    gradients = backpropagate(graph, builder, seeds, wrt_values)
    for value in wrt_values:
        gradient = gradients[value]
        if gradient is None:
            gradient = builder.zeros_like(value)
        assert value.name is not None  # found by name, or an initializer or node output of the graph
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


def _load_copy(model, allow_outside: bool = False) -> Model:
    """A fresh IR of ``model`` (the caller's Model is never modified), on a supported opset."""
    import onnxgraph

    if isinstance(model, Model):
        model = model.to_proto()
    result = onnxgraph.load(model, allow_external_data_outside=allow_outside)
    version = result.opset_imports.get("", result.opset_imports.get("ai.onnx"))
    if version is not None and MIN_OPSET <= version <= onnx.defs.onnx_opset_version():
        return result
    return onnxgraph.from_proto(_supported_opset(result.to_proto()))


def _infer_types(model: Model) -> None:
    """Give every value without a full type its inferred one, by the project's one shape resolution
    (:func:`onnxgraph.shape_inference.infer_shapes`: onnx inference with data propagation, onnxruntime's
    symbolic inference where onnx loses a shape); a model inference rejects keeps its declared types."""
    from onnxgraph.shape_inference import infer_shapes

    infer_shapes(model, strict=False)


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
        raise GradientError(
            f"opset {version} is older than {MIN_OPSET} and upgrading it failed: {one_line(exc)}"
        ) from exc


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
        loss_value.type = types.tensor_type(_elem_type(value, "output"), ())
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
    """The values to differentiate: by name (graph inputs, initializers or any floating value the
    graph computes), by default every floating-point parameter. A copy of an initializer (an
    exporter's deduplicated parameter) becomes a parameter of its own, see :func:`_untie`."""
    if names is None:
        values = [v for v in graph.initializers.values() if v.elem_type in types.FLOAT_TYPES]
        values += [n.outputs[0] for n in graph if _shared_copy(n.outputs[0])]
        if not values:
            raise GradientError("the model has no floating-point initializers: name the wrt values")
        return [_untie(graph, v) for v in values]
    by_name = {v.name: v for node in graph for v in node.outputs if v.name}
    by_name.update({v.name: v for v in graph.inputs})
    by_name.update(graph.initializers)
    values = []
    for name in names:
        value = by_name.get(name)
        if value is None:
            raise GradientError(f"wrt '{name}' is not a value of the graph (input, initializer or node output)")
        if not is_float(value):
            raise GradientError(f"wrt '{name}' is not a floating-point tensor")
        values.append(_untie(graph, value))
    return values


def _copied_initializer(value: Value) -> Value | None:
    """The floating-point initializer ``value`` copies through a chain of Identity nodes, else None."""
    source = value
    producer = source.producer()
    while producer is not None and producer.op_type == "Identity" and producer.inputs[0] is not None:
        source = producer.inputs[0]
        producer = source.producer()
    # a sparse initializer has no dense data to copy: it stays shared
    if source is value or not isinstance(source.const_value, Tensor) or source.elem_type not in types.FLOAT_TYPES:
        return None
    return source


def _shared_copy(value: Value) -> bool:
    """``value`` is an Identity copy of an initializer that another op reads directly: a parameter the
    exporter deduplicated because it held equal values (not an Identity in front of each use)."""
    source = _copied_initializer(value)
    return source is not None and any(n.op_type != "Identity" for n in source.consumers())


def _untie(graph, value: Value) -> Value:
    """Make an Identity of an initializer (what torch's exporter writes for parameters that hold
    equal values, e.g. every freshly initialised LayerNorm weight) an initializer of its own, with
    a copy of the data: a parameter that can be fed and trained apart, as it is in PyTorch."""
    source = _copied_initializer(value)
    if source is None:
        return value
    producer, data = value.producer(), source.const_value
    assert producer is not None and isinstance(data, Tensor)  # what _copied_initializer found: an Identity chain
    graph.replace_with_initializers(producer, [Tensor(np.array(data.numpy()))])
    return value


def _expose(b: GradBuilder, gradient: Value, wrt: Value) -> str:
    """Add ``gradient`` as a graph output named ``<wrt>_grad`` (suffixed when taken)."""
    graph = b.graph
    if gradient.producer() is None or gradient.is_graph_output() or not b.made(gradient.producer()):
        gradient = b.Identity(gradient)
    name = graph.fresh_name(f"{wrt.name}_grad")
    gradient.name = name
    gradient.type = types.tensor_type(_elem_type(wrt, "wrt"), wrt.shape)
    graph.outputs.append(gradient)
    return name


def _elem_type(value: Value, role: str) -> int:
    """The element type of ``value``, which becomes the type of a new graph output; a GradientError
    when neither the model nor shape inference knows it (is_float lets such values through)."""
    if value.elem_type is None:
        raise GradientError(f"{role} '{value.name}' has an unknown element type: give it a type in the model")
    return value.elem_type
