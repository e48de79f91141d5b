"""``build_training``: the train-step, eval and inference models of a model, in standard ONNX.

The train step is one graph: forward, loss, backward (:func:`onnxgraph.autodiff.build_gradient`),
optional gradient clipping and the optimizer update (onnxscript functions, inlined), so onnxruntime's
memory planner frees each gradient as soon as its update consumed it. Parameters, running statistics
and optimizer state are graph inputs with a matching ``.new`` output each; the caller feeds each
step's outputs back as the next step's inputs. The layout is written to ``training.json``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
from collections.abc import Sequence

import numpy as np
import onnx
import onnx.inliner

import onnxgraph
from onnxgraph import types
from onnxgraph.attribute import Attribute
from onnxgraph.autodiff import METADATA_KEY, build_gradient, remove_dead_nodes
from onnxgraph.autodiff.api import simplify
from onnxgraph.autodiff.builder import GradBuilder
from onnxgraph.autodiff.losses import LOSS_FUNCTIONS, build_loss, target_type
from onnxgraph.errors import TrainingError
from onnxgraph.graph import Graph
from onnxgraph.metadata import TRAINING_STEP_KEY
from onnxgraph.model import Model
from onnxgraph.node import Node
from onnxgraph.tensor import initializer_tensor
from onnxgraph.training import modes
from onnxgraph.training.optimizers import DOMAIN, AdamW, Optimizer
from onnxgraph.value import Value

MANIFEST = "training.json"
INITIAL_STATE = "initial_state.safetensors"
FILES = {
    "train_step": "train_step.onnx",
    "eval": "eval.onnx",
    "inference": "inference.onnx",
    "grad_step": "grad_step.onnx",
    "apply_step": "apply_step.onnx",
}
NEW = ".new"
"""Suffix of the output carrying a parameter's or state tensor's value after the step."""
STEP = "step"
SEED = "seed"
LOSS = "loss"
"""The name of the loss output ``loss_fn`` appends."""
CLIP_EPS = 1e-6
"""torch.nn.utils.clip_grad_norm_'s term added to the norm."""


@dataclasses.dataclass
class Layout:
    """Names a driver of the artifacts needs (stored as ``training.json``).

    Attributes:
        data_inputs: the model's own inputs, fed from the data.
        target: the target input (None for ``loss=`` or the ``sum`` loss).
        step: the int64 scalar input holding the 1-based number of the update being made.
        lr: the float scalar input holding the learning rate.
        seed: the int64 scalar input seeding training-mode Dropout masks (with the step), or None.
        loss: the scalar loss output (train step and eval).
        outputs: the model's outputs (also outputs of the train step and eval).
        parameters: trainable parameter names (inputs; output ``NAME.new``).
        buffers: running statistics (BatchNormalization), updated by the step but not trained.
        optimizer_state: optimizer state names (``PARAM.SLOT``, PyTorch's slot names).
        frozen: parameters kept constant (initializers of every model, no gradient or state).
        optimizer: the optimizer's kind and hyper-parameters.
        clip_grad_norm: the global gradient-norm bound, or None.
        loss_fn: the appended loss kind (None when the model's own output is the loss).
        loss_output: the model output ``loss_fn`` applies to.
        ignore_index: cross_entropy's ignored class index, or None.
        grad_accumulation: micro-batches per update (``k``); with k > 1 the artifacts also hold
            grad_step.onnx and apply_step.onnx.
        gradients: the summed-gradient tensors ``PARAM.grad`` that grad_step adds into and
            apply_step reads (divided by k), with k > 1.
    """

    data_inputs: list[str]
    target: str | None
    step: str
    lr: str
    seed: str | None
    loss: str
    outputs: list[str]
    parameters: list[str]
    buffers: list[str]
    optimizer_state: list[str]
    frozen: list[str]
    optimizer: dict
    clip_grad_norm: float | None
    loss_fn: str | None = None
    loss_output: str | None = None
    ignore_index: int | None = None
    grad_accumulation: int = 1
    gradients: list[str] = dataclasses.field(default_factory=list)

    @property
    def carried(self) -> list[str]:
        """Every tensor the step reads and writes back: parameters, buffers, optimizer state."""
        return [*self.parameters, *self.buffers, *self.optimizer_state]

    @staticmethod
    def new_name(name: str) -> str:
        """The output carrying ``name``'s value after the step."""
        return name + NEW

    @staticmethod
    def grad_name(name: str) -> str:
        """The summed gradient of parameter ``name`` (grad_step and apply_step)."""
        return name + ".grad"


@dataclasses.dataclass
class TrainingArtifacts:
    """The models :func:`build_training` makes, their layout and the initial carried tensors."""

    train_step: Model
    eval: Model
    inference: Model
    layout: Layout
    initial: dict[str, np.ndarray]
    grad_step: Model | None = None
    apply_step: Model | None = None

    def save(self, directory: str | os.PathLike) -> list[str]:
        """Write the three models, ``training.json`` and ``initial_state.safetensors`` into ``directory``.

        Returns:
            The paths written.
        """
        from onnxgraph.training.checkpoint import write_tensors

        os.makedirs(directory, exist_ok=True)
        written = []
        for key, file in FILES.items():
            if getattr(self, key) is None:
                continue
            path = os.path.join(directory, file)
            onnxgraph.save(getattr(self, key), path)
            written.append(path)
        manifest = os.path.join(directory, MANIFEST)
        from onnxgraph.fsutil import atomic_write

        with atomic_write(manifest) as f:
            f.write(json.dumps(dataclasses.asdict(self.layout), indent=2).encode())
        written.append(manifest)
        initial = os.path.join(directory, INITIAL_STATE)
        write_tensors(initial, self.initial, {"step": "0"})
        written.append(initial)
        return written


def build_training(
    model: Model | onnx.ModelProto | str | os.PathLike,
    *,
    loss_fn: str | None = None,
    output: str | None = None,
    target: str = "target",
    ignore_index: int | None = None,
    loss: str | None = None,
    trainable: Sequence[str] | None = None,
    frozen: Sequence[str] = (),
    optimizer: Optimizer | None = None,
    grad_accumulation: int = 1,
    separate_update: bool = False,
    clip_grad_norm: float | None = None,
    recompute: str | Sequence[str] = "none",
) -> TrainingArtifacts:
    """Build the training artifacts of ``model``.

    Args:
        model: a Model, ModelProto or path of an inference model (eval- or training-mode export).
        loss_fn: append this loss (mse, l1, cross_entropy, bce_with_logits, sum) on ``output``.
        output: the output ``loss_fn`` applies to (default: the only output).
        target: the name of the target input ``loss_fn`` adds.
        ignore_index: for cross_entropy, the class index whose samples do not count.
        loss: instead of ``loss_fn``: the model output that already is a scalar loss.
        trainable: names or globs of the parameters to train (default: every float initializer
            except BatchNormalization running statistics).
        frozen: names or globs of parameters kept constant: no gradient, no optimizer state.
        optimizer: the update rule (default: ``AdamW()``).
        grad_accumulation: micro-batches whose gradients are averaged into one update; above 1,
            grad_step and apply_step models are built too.
        separate_update: build grad_step and apply_step also for ``grad_accumulation=1`` (for a
            driver that combines gradients between the two, such as data-parallel training).
        clip_grad_norm: scale gradients so that their global L2 norm is at most this.
        recompute: activation recomputation: "none", "auto" (keep the inputs of normalization
            nodes, recompute the activations between them in the backward pass), or the names of
            the forward values to recompute.

    Returns:
        The artifacts; :meth:`TrainingArtifacts.save` writes them.

    Raises:
        TrainingError: bad options, or a model the gradient builder refuses.
    """
    if loss is not None and loss_fn is None:
        loss_name = loss
    elif loss_fn is not None and loss is None:
        loss_name = LOSS
    else:
        raise TrainingError("choose exactly one of loss_fn or loss")
    if loss_fn is not None and loss_fn not in LOSS_FUNCTIONS:
        raise TrainingError(f"unknown loss function '{loss_fn}' (choose from {', '.join(LOSS_FUNCTIONS)})")
    if grad_accumulation < 1:
        raise TrainingError(f"grad_accumulation must be at least 1 (got {grad_accumulation})")
    if isinstance(recompute, str) and recompute not in ("none", "auto"):
        raise TrainingError(f"recompute must be 'none', 'auto' or a list of value names (got '{recompute}')")
    if clip_grad_norm is not None and not clip_grad_norm > 0:
        raise TrainingError(f"clip_grad_norm must be positive (got {clip_grad_norm})")
    optimizer = optimizer if optimizer is not None else AdamW()
    inference = _load(model)
    opset = inference.opset_imports.get("", inference.opset_imports.get("ai.onnx", 0))
    modes.to_inference_mode(inference)
    remove_dead_nodes(inference)
    if loss_fn is not None and output is None:
        if len(inference.graph.outputs) != 1:
            raise TrainingError("the model has several outputs: name the one the loss applies to")
        output = inference.graph.outputs[0].name
    forward = _load(model)
    statistics = {v for _, mean, var in modes.running_statistics(forward) for v in (mean, var)}
    dropouts = modes.training_dropouts(forward)
    ratios = {ratio for n in dropouts if (ratio := n.inputs[1]) is not None}  # hyper-parameters, not weights
    parameters, frozen_names = _choose_parameters(forward, statistics | ratios, trainable, frozen)
    updated = modes.to_training_mode(forward, opset)
    for name, value in updated.items():
        value.name = forward.graph.fresh_name(Layout.new_name(name))
        forward.graph.outputs.append(value)
    if dropouts:
        seed, step = (_scalar_input(forward.graph, name, onnx.TensorProto.INT64) for name in (SEED, STEP))
        modes.seeded_dropout(forward, dropouts, seed, step, opset)
    has_target = False
    if loss_fn is not None:
        has_target = _append_loss(forward, loss_fn, output, target, ignore_index)
    step_model = build_gradient(forward, loss=loss_name, wrt=parameters, cleanup=None)
    layout = Layout(
        data_inputs=[
            v.name for v in inference.graph.inputs if v.name is not None and v.name not in inference.graph.initializers
        ],
        target=target if has_target else None,
        step=STEP,
        lr="lr",
        seed=SEED if dropouts else None,
        loss=loss_name,
        outputs=[v.name for v in inference.graph.outputs if v.name is not None],
        parameters=parameters,
        buffers=list(updated),
        optimizer_state=[],
        frozen=frozen_names,
        optimizer=optimizer.config(),
        clip_grad_norm=clip_grad_norm,
        loss_fn=loss_fn,
        loss_output=output if loss_fn is not None else None,
        ignore_index=ignore_index,
        grad_accumulation=grad_accumulation,
    )
    accumulation = None
    if grad_accumulation > 1 or separate_update:
        grad_model = onnxgraph.load(step_model.to_proto())
        _grad_step(grad_model, layout)
        simplify(grad_model)
        _recompute(grad_model, layout, recompute)
        apply_model = _inline_functions(_apply_step(grad_model, optimizer, layout, grad_accumulation), optimizer, opset)
        simplify(apply_model)
        accumulation = (grad_model, apply_model)
    _emit_updates(step_model, optimizer, layout, _split_gradients(step_model, layout))
    step_model = _inline_functions(step_model, optimizer, opset)
    simplify(step_model)
    _recompute(step_model, layout, recompute)
    eval_model = onnxgraph.load(inference.to_proto())
    if loss_fn is not None:
        _append_loss(eval_model, loss_fn, output, target, ignore_index)
    _as_inputs(eval_model.graph, [*layout.parameters, *layout.buffers])
    grad_step, apply_step = accumulation or (None, None)
    for kind, built in (("train_step", step_model), ("grad_step", grad_step), ("apply_step", apply_step)):
        if built is not None:
            built.metadata_props[TRAINING_STEP_KEY] = kind
    return TrainingArtifacts(
        step_model, eval_model, inference, layout, _initial(inference, layout), grad_step, apply_step
    )


def _recompute(model: Model, layout: Layout, choice: str | Sequence[str]) -> None:
    """Apply activation recomputation after the cleanup (whose CSE would merge the clones back)."""
    if choice == "none":
        return
    from onnxgraph.training.recompute import recompute

    roots = [layout.loss, *layout.outputs, *(Layout.new_name(b) for b in layout.buffers)]
    recompute(model, roots, "auto" if choice == "auto" else list(choice))


def _load(model: Model | onnx.ModelProto | str | os.PathLike) -> Model:
    if isinstance(model, Model):
        model = model.to_proto()
    return onnxgraph.load(model)


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _choose_parameters(
    model: Model, excluded: set[Value], trainable: Sequence[str] | None, frozen: Sequence[str]
) -> tuple[list[str], list[str]]:
    """(trainable parameter names, frozen ones), in initializer order; every pattern must match."""
    floats = [
        n
        for n, v in model.graph.initializers.items()
        if v.const_value is not None and v.const_value.elem_type in types.FLOAT_TYPES and v not in excluded
    ]
    for label, patterns in (("trainable", trainable or ()), ("frozen", frozen)):
        for pattern in patterns:
            if not any(fnmatch.fnmatchcase(n, pattern) for n in floats):
                raise TrainingError(f"{label} '{pattern}' matches no floating-point parameter of the model")
    chosen = [n for n in floats if (trainable is None or _matches(n, trainable)) and not _matches(n, frozen)]
    if not chosen:
        raise TrainingError("no parameter is left to train")
    return chosen, [n for n in floats if n not in chosen]


def _as_inputs(graph: Graph, names: Sequence[str]) -> list[Value]:
    """Turn initializers into graph inputs (the carried tensors the driver feeds)."""
    values = []
    for name in names:
        value = graph.initializers.pop(name)
        tensor = initializer_tensor(value)
        value.type = types.tensor_type(tensor.elem_type, tensor.dims)
        value.const_value = None
        graph.add_input(value)
        values.append(value)
    return values


def _elem_type(value: Value) -> int:
    """The element type of a value the train step builds on; unknown ones are refused."""
    elem_type = value.elem_type
    if elem_type is None:
        raise TrainingError(f"the element type of '{value.name}' is unknown (shape inference could not tell it)")
    return elem_type


def _scalar_input(graph: Graph, name: str, elem_type: int) -> Value:
    """A new scalar graph input ``name``; the model must not use the name already."""
    if name in graph.initializers or any(v.name == name for v in graph.inputs):
        raise TrainingError(f"the model already has a value named '{name}'")
    return graph.add_input(Value(name, types.tensor_type(elem_type, ())))


def _split_gradients(model: Model, layout: Layout) -> dict[str, Value]:
    """Take the gradient outputs off the gradient model and make the carried tensors inputs;
    return parameter name -> its gradient value."""
    graph = model.graph
    mapping = json.loads(model.metadata_props.pop(METADATA_KEY))
    grads = {name: next(v for v in graph.outputs if v.name == mapping[name]) for name in layout.parameters}
    graph.outputs[:] = [v for v in graph.outputs if all(v is not g for g in grads.values())]
    _as_inputs(graph, [*layout.parameters, *layout.buffers])
    return grads


def _emit_updates(
    model: Model, optimizer: Optimizer, layout: Layout, grads: dict[str, Value], scale: float = 1.0
) -> None:
    """Append clipping and the optimizer update (as function calls) for the parameter inputs;
    fill in ``layout.optimizer_state``. ``scale`` multiplies the gradients first (1/k for a mean)."""
    graph = model.graph
    inputs = {v.name: v for v in graph.inputs}
    step = inputs.get(layout.step) or _scalar_input(graph, layout.step, onnx.TensorProto.INT64)
    lr = _scalar_input(graph, layout.lr, onnx.TensorProto.FLOAT)
    b = GradBuilder(graph, model.opset_imports.get("", 13))
    if scale != 1.0:
        grads = {name: b.Mul(g, b.scalar(scale, inputs[name])) for name, g in grads.items()}
    updates = _clip(b, grads, layout.clip_grad_norm) if layout.clip_grad_norm is not None else grads
    function = optimizer.function()
    slots = optimizer.state_slots()
    layout.optimizer_state = []
    for name in layout.parameters:
        param = inputs[name]
        state_names = [f"{name}.{slot}" for slot in slots]
        state = [_state_input(graph, state_name, param) for state_name in state_names]
        layout.optimizer_state += state_names
        dtype = types.np_dtype(_elem_type(param))
        hyper = [b.const(np.array(h, dtype=dtype)) for h in optimizer.hyper_parameters()]
        node = b.add_node(
            Node(DOMAIN, function.name, [param, updates[name], *state, step, lr, *hyper], num_outputs=1 + len(slots))
        )
        for out, old_name, old in zip(node.outputs, [name, *state_names], [param, *state]):
            out.name = graph.fresh_name(Layout.new_name(old_name))
            out.type = old.type
            graph.outputs.append(out)
    model.opset_imports[DOMAIN] = 1


def _grad_step(model: Model, layout: Layout) -> None:
    """The gradient model as grad_step: adds each gradient into its ``PARAM.grad`` input."""
    graph = model.graph
    grads = _split_gradients(model, layout)
    b = GradBuilder(graph, model.opset_imports.get("", 13))
    inputs = {v.name: v for v in graph.inputs}
    for name, grad in grads.items():
        total_name = Layout.grad_name(name)
        total = graph.add_input(Value(total_name, inputs[name].type))
        summed = b.Add(total, grad)
        summed.name = graph.fresh_name(Layout.new_name(total_name))
        summed.type = total.type
        graph.outputs.append(summed)
    layout.gradients = [Layout.grad_name(n) for n in layout.parameters]


def _apply_step(like: Model, optimizer: Optimizer, layout: Layout, steps: int) -> Model:
    """A model of the update alone: parameters, summed gradients, state, step, lr -> new ones."""
    graph = Graph("apply_step")
    types_of = {v.name: v.type for v in like.graph.inputs}
    model = Model(graph, ir_version=like.ir_version, opset_imports={"": like.opset_imports.get("", 13)})
    for name in layout.parameters:
        graph.add_input(Value(name, types_of[name]))
    grads = {name: graph.add_input(Value(Layout.grad_name(name), types_of[name])) for name in layout.parameters}
    _emit_updates(model, optimizer, layout, grads, scale=1.0 / steps)
    return model


def _state_input(graph: Graph, name: str, param: Value) -> Value:
    """A new graph input ``name`` of ``param``'s type for one optimizer state slot."""
    if name in graph.initializers or any(v.name == name for v in graph.inputs):
        raise TrainingError(f"optimizer state name '{name}' is already taken in the model")
    return graph.add_input(Value(name, param.type))


def _clip(b: GradBuilder, grads: dict[str, Value], max_norm: float) -> dict[str, Value]:
    """torch.nn.utils.clip_grad_norm_: scale all gradients by min(1, max_norm / (norm + 1e-6))."""
    squares = [b.ReduceSumSquare(g, keepdims=0) for g in grads.values()]
    norm = b.Sqrt(b.add_all(squares))
    like = next(iter(grads.values()))
    dtype = types.np_dtype(_elem_type(like))
    one = b.const(np.array(1, dtype=dtype))
    coef = b.Min(b.Div(b.const(np.array(max_norm, dtype=dtype)), b.Add(norm, b.scalar(CLIP_EPS, like))), one)
    return {name: b.Mul(g, coef) for name, g in grads.items()}


def _inline_functions(model: Model, optimizer: Optimizer, opset: int) -> Model:
    """Inline the optimizer's function calls (onnx's inliner): standard ops only."""
    proto = model.to_proto()
    function = optimizer.function()
    for imp in function.opset_import:
        if imp.domain in ("", "ai.onnx"):
            imp.version = opset  # the update rules use ops unchanged since opset 13
    proto.functions.append(function)
    inlined = onnx.inliner.inline_local_functions(proto)
    del inlined.functions[:]
    kept = [o for o in inlined.opset_import if o.domain != DOMAIN]
    del inlined.opset_import[:]
    inlined.opset_import.extend(kept)
    return onnxgraph.load(inlined)


def _append_loss(model: Model, kind: str, output: str | None, target: str, ignore_index: int | None) -> bool:
    """Append ``kind``'s loss on ``output`` as the output ``loss``; return whether it added ``target``."""
    graph = model.graph
    value = next((v for v in graph.outputs if v.name == output), None)
    if value is None:
        raise TrainingError(f"'{output}' is not an output of the model")
    for name in (LOSS, target):
        if name in graph.initializers or any(v.name == name for v in [*graph.inputs, *graph.outputs]):
            raise TrainingError(f"the model already has a value named '{name}'")
    _annotate(model)
    elem_type = _elem_type(value)
    b = GradBuilder(graph, model.opset_imports.get("", 13))
    kind_type = target_type(kind, value)
    target_value = graph.add_input(Value(target, kind_type)) if kind_type is not None else None
    loss_value = build_loss(b, kind, value, target_value)
    if ignore_index is not None:
        if kind != "cross_entropy":
            raise TrainingError("ignore_index goes with the cross_entropy loss only")
        producer = loss_value.producer()
        assert producer is not None  # build_loss returns SoftmaxCrossEntropyLoss's output
        producer.attributes["ignore_index"] = Attribute.infer("ignore_index", ignore_index)
    loss_value.name = LOSS
    loss_value.type = types.tensor_type(elem_type, ())
    graph.outputs.insert(0, loss_value)
    return target_value is not None


def _annotate(model: Model) -> None:
    """Give the model's values their inferred types (the loss needs the output's type and rank)."""
    from onnxgraph.shape_inference import annotate_types

    annotate_types(model)


def _initial(inference: Model, layout: Layout) -> dict[str, np.ndarray]:
    """The carried tensors before the first step: the model's weights and zero optimizer state."""
    inits = inference.graph.initializers
    values = {name: np.array(initializer_tensor(inits[name]).numpy()) for name in [*layout.parameters, *layout.buffers]}
    for name in layout.optimizer_state:
        param = name.rsplit(".", 1)[0]
        values[name] = np.zeros_like(values[param])
    return values
