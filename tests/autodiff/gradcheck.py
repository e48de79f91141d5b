"""The gradient check shared by the op table and the model tests.

``check_gradients`` builds the VJP model of a float32 model and of its float64 twin, then asserts:
1. the float64 gradients (onnx.reference) match central finite differences of
   ``sum_o <w_o, y_o(x)>`` in float64, with random upstream weights ``w_o`` so every output element
   matters;
2. the float32 gradient model on onnxruntime CPU matches the float64 gradients.
"""

from __future__ import annotations

import zlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from reference_ops import NEW_OPS

from onnxgraph.autodiff import METADATA_KEY, build_gradient
from onnxgraph.runtime.sessions import create_session

FLOAT32_ONLY = {("Resize", 1), ("Resize", 2)}
"""(op, input index) pairs that stay float32 in the float64 twin (Resize's roi and scales)."""


STASHING = {"GroupNormalization"}
"""Ops whose statistics default to float32 (stash_type=1) even for float64 inputs (and whose
reference implementation supports stash_type=11)."""


def to_float64(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same model computing in float64 (types, initializers, Constant values, Cast targets,
    normalization stash types)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    keep = {n.input[i] for n in graph.node for op, i in FLOAT32_ONLY if n.op_type == op and len(n.input) > i}
    for g in _graphs(graph):  # subgraphs (Loop, Scan, If bodies) included
        for info in [*g.input, *g.output, *g.value_info]:
            if info.type.tensor_type.elem_type == TensorProto.FLOAT:
                info.type.tensor_type.elem_type = TensorProto.DOUBLE
    for i, init in enumerate(graph.initializer):
        if init.data_type == TensorProto.FLOAT and init.name not in keep:
            graph.initializer[i].CopyFrom(
                numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float64), init.name)
            )
    for node in (n for g in _graphs(graph) for n in g.node):
        if node.op_type in STASHING and not any(a.name == "stash_type" for a in node.attribute):
            node.attribute.append(helper.make_attribute("stash_type", TensorProto.DOUBLE))
        for attr in node.attribute:
            if attr.name in ("to", "stash_type") and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.DOUBLE
            if node.op_type == "Constant" and attr.name == "value" and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float64)))
    return model


def _graphs(graph: onnx.GraphProto):
    """``graph`` and every subgraph in it, at any depth."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
                yield from _graphs(sub)


def upstream_inputs(grad_model) -> dict[str, str]:
    """output name -> the input carrying its upstream gradient."""
    import json

    mapping = json.loads(grad_model.metadata_props[METADATA_KEY])
    return {k.rsplit("@", 1)[0]: v for k, v in mapping.items() if k.endswith("@upstream")}


def check_gradients(
    model32: onnx.ModelProto,
    feeds: dict[str, np.ndarray],
    wrt: list[str],
    *,
    seed: int = 0,
    coords_per_input: int | None = None,
    eps: float = 1e-6,
    fd_tol: tuple[float, float] = (1e-5, 1e-6),
    ort_tol: float = 2e-3,
    compare_onnxruntime: bool = True,
) -> None:
    """Assert the gradients of ``model32``'s outputs w.r.t. ``wrt`` (see the module docstring).

    Args:
        model32: a float32 model whose ``wrt`` values are graph inputs.
        feeds: float64 values for every graph input.
        wrt: the inputs to differentiate.
        seed: seeds the upstream weights and the sampled coordinates.
        coords_per_input: check this many random coordinates per input (None: all).
        eps: the finite-difference step.
        fd_tol: (rtol, atol) of the float64 comparison, atol scaled by the gradient's magnitude.
        ort_tol: relative tolerance of the float32 onnxruntime comparison (atol = it x magnitude).
        compare_onnxruntime: False for random ops (the two runtimes draw different numbers).
    """
    rng = np.random.default_rng(seed)
    model64 = to_float64(model32)
    forward = ReferenceEvaluator(model64, new_ops=NEW_OPS)
    out_names = [o.name for o in model64.graph.output]
    outputs = dict(zip(out_names, forward.run(None, feeds)))
    weights = {name: rng.standard_normal(np.shape(y)) for name, y in outputs.items()}
    model32, model64 = (declare_output_shapes(m, outputs) for m in (model32, model64))

    def objective(values):
        ys = forward.run(None, values)
        return sum(float(np.sum(weights[n] * y)) for n, y in zip(out_names, ys))

    grad64 = build_gradient(model64, vjp=True, wrt=wrt)
    grad_names = _gradient_outputs(grad64, wrt)
    upstream = {upstream_inputs(grad64)[n]: w for n, w in weights.items()}
    proto64 = grad64.to_proto()
    onnx.checker.check_model(proto64)
    results = dict(
        zip(
            [o.name for o in proto64.graph.output],
            ReferenceEvaluator(proto64, new_ops=NEW_OPS).run(None, {**feeds, **upstream}),
        )
    )
    for name, y in outputs.items():
        np.testing.assert_allclose(results[name], y, rtol=1e-12, atol=1e-12, err_msg=f"forward output {name} changed")

    for name in wrt:
        analytic = results[grad_names[name]]
        assert analytic.shape == np.shape(feeds[name]), f"gradient of {name}: shape {analytic.shape}"
        numeric, picked = finite_differences(objective, feeds, name, eps, rng, coords_per_input)
        scale = max(1.0, float(np.max(np.abs(numeric))))
        np.testing.assert_allclose(
            analytic.reshape(-1)[picked],
            numeric,
            rtol=fd_tol[0],
            atol=fd_tol[1] * scale,
            err_msg=f"d/d{name}: float64 gradient vs finite differences",
        )

    if compare_onnxruntime:
        _compare_onnxruntime(model32, feeds, upstream, wrt, results, grad_names, ort_tol)


def _compare_onnxruntime(model32, feeds, upstream, wrt, results, grad_names, ort_tol):
    grad32 = build_gradient(model32, vjp=True, wrt=wrt)
    proto32 = grad32.to_proto()
    session = create_session(proto32.SerializeToString())
    feeds32 = {i.name: _as_input(i, {**feeds, **upstream}) for i in session.get_inputs()}
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds32)))
    names32 = _gradient_outputs(grad32, wrt)
    for name in wrt:
        expected = results[grad_names[name]]
        scale = max(1.0, float(np.max(np.abs(expected))))
        np.testing.assert_allclose(
            got[names32[name]],
            expected,
            rtol=ort_tol,
            atol=ort_tol * scale,
            err_msg=f"d/d{name}: float32 onnxruntime vs float64 reference",
        )


def declare_output_shapes(model, outputs):
    """Outputs typed with their computed shapes, as exported models declare them (onnx shape
    inference cannot tell some, e.g. BatchNormalization in training mode)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for info in model.graph.output:
        if not info.type.tensor_type.HasField("shape"):
            dims = info.type.tensor_type.shape.dim
            for d in np.shape(outputs[info.name]):
                dims.add().dim_value = d
    return model


def _gradient_outputs(grad_model, wrt):
    import json

    mapping = json.loads(grad_model.metadata_props[METADATA_KEY])
    return {name: mapping[name] for name in wrt}


def _as_input(info, values):
    value = values[info.name]
    if info.type == "tensor(float)":
        return np.asarray(value, dtype=np.float32)
    return value


def finite_differences(objective, feeds, name, eps, rng, count):
    base = feeds[name]
    size = int(np.size(base))
    picked = np.arange(size) if count is None or count >= size else np.sort(rng.choice(size, count, replace=False))
    numeric = np.empty(len(picked))
    for k, flat in enumerate(picked):
        values = {}
        for sign in (1, -1):
            shifted = np.array(base, dtype=np.float64, copy=True)
            shifted.reshape(-1)[flat] += sign * eps
            values[sign] = objective({**feeds, name: shifted})
        numeric[k] = (values[1] - values[-1]) / (2 * eps)
    return numeric, picked


def spec_model(spec) -> tuple[onnx.ModelProto, dict[str, np.ndarray], list[str]]:
    """The float32 one-node model of a table spec, float64 feeds for its inputs, and its wrt names."""
    from op_specs import C, F

    rng = np.random.default_rng(zlib.crc32(spec.name.encode()))
    inputs, inits, names, feeds, wrt = [], [], [], {}, []
    for i, item in enumerate(spec.inputs):
        name = f"x{i}"
        if isinstance(item, C):
            if item.value is None:
                names.append("")
                continue
            array = np.asarray(item.value)
            if array.dtype == np.float64:
                array = array.astype(np.float32)
            inits.append(numpy_helper.from_array(array, name))
        else:
            assert isinstance(item, F)
            feeds[name] = rng.uniform(item.low, item.high, item.shape)
            inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, item.shape))
            if item.differentiate:
                wrt.append(name)
        names.append(name)
    while names and names[-1] == "":
        names.pop()
    n_out = spec.node_outputs or spec.outputs
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(spec.op, names, outs, name=f"{spec.op.lower()}_node", **spec.attrs)
    graph = helper.make_graph(
        [node],
        spec.name,
        inputs,
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs[: spec.outputs]],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", spec.opset)])
    model.ir_version = 8 if spec.opset <= 18 else 10
    return model, feeds, wrt
