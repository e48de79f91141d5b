"""Model summaries for ``onnxgraph info``: interface, op counts, parameters, external data."""

from __future__ import annotations

import math
import os
from collections import Counter
from typing import Any

from onnxgraph import types
from onnxgraph.errors import GraphError
from onnxgraph.model import Model
from onnxgraph.tensor import initializer_tensor
from onnxgraph.value import Value


def _describe_value(value: Value) -> dict[str, Any]:
    elem = value.elem_type
    shape = value.shape
    return {
        "name": value.name,
        "dtype": types.dtype_name(elem) if elem else None,
        "shape": None if shape is None else list(shape),
        "type": types.describe_type(value.type),
    }


def parameter_stats(model: Model) -> dict[str, int]:
    """Initializer count, element count and bytes; an initializer read in several places counts once."""
    seen: set[int] = set()
    count = elements = nbytes = 0
    for graph in model.all_graphs():
        for value in (*graph.initializers.values(), *graph.sparse_initializers.values()):
            if id(value) in seen:
                continue
            seen.add(id(value))
            tensor = value.const_value
            if tensor is None:
                raise GraphError(f"initializer {value.name!r} has no data")
            count += 1
            elements += math.prod(tensor.dims)
            nbytes += tensor.nbytes
    return {"initializers": count, "elements": elements, "bytes": nbytes}


def external_data_stats(model: Model, model_path: str | None) -> list[dict[str, Any]]:
    """Each external-data file: its path relative to the model, size on disk and tensor count."""
    per_file: Counter[str] = Counter()
    for graph in model.all_graphs():
        for value in graph.initializers.values():
            path = initializer_tensor(value).external_path
            if path is not None:
                per_file[path] += 1
    folder = os.path.dirname(os.path.abspath(model_path)) if model_path else os.getcwd()
    return [
        {"file": os.path.relpath(path, folder), "bytes": os.path.getsize(path), "tensors": n}
        for path, n in sorted(per_file.items())
    ]


def summarize(model: Model, path: str | None = None) -> dict[str, Any]:
    """Everything ``onnxgraph info`` reports, as JSON-ready data."""
    ops = Counter(
        f"{node.domain}::{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type
        for node in model.graph.all_nodes()
    )
    subgraphs = sum(1 for _ in model.graph.all_graphs()) - 1
    return {
        "path": path,
        "ir_version": model.ir_version,
        "opset_imports": {domain or "ai.onnx": version for domain, version in model.opset_imports.items()},
        "producer": {"name": model.producer_name, "version": model.producer_version},
        "domain": model.domain,
        "model_version": model.model_version,
        "graph_name": model.graph.name,
        "inputs": [_describe_value(v) for v in model.graph.inputs if v.name not in model.graph.initializers],
        "outputs": [_describe_value(v) for v in model.graph.outputs],
        "nodes": {"total": sum(ops.values()), "subgraphs": subgraphs, "by_op_type": dict(ops.most_common())},
        "parameters": parameter_stats(model),
        "external_data": external_data_stats(model, path),
        "functions": [
            {"domain": f.domain, "name": f.name, "overload": f.overload, "nodes": len(f.graph)}
            for f in model.functions.values()
        ],
        "metadata": dict(model.metadata_props),
    }


def _value_bytes(value: Value) -> int | None:
    dims, elem = types.static_dims(value.shape), value.elem_type
    return None if elem is None or dims is None else types.storage_bytes(elem, math.prod(dims))


TYPICAL_DIMS: tuple[tuple[str, int], ...] = (
    ("batch", 1),
    ("seq", 128),
    ("len", 128),
    ("token", 128),
    ("sample", 16000),
    ("height", 224),
    ("width", 224),
)
"""Sizes ``info`` assumes for a symbolic dimension by its name (the first entry whose key the
lower-cased name contains): batch 1, sequence 128 tokens, one second of 16 kHz audio, 224-pixel
images. Other names and unnamed dimensions are taken as 1."""


def typical_dim(name: str | None) -> int:
    """The size :data:`TYPICAL_DIMS` assumes for a symbolic dimension called ``name``."""
    lowered = (name or "").lower()
    return next((size for key, size in TYPICAL_DIMS if key in lowered), 1)


def _assumed_shapes(model: Model, input_shapes: dict[str, list[int]]) -> dict[str, list[int]]:
    """Shapes for inputs with symbolic or unknown dimensions that ``input_shapes`` leaves open
    (sized by :func:`typical_dim`)."""
    assumed = {}
    for value in model.graph.inputs:
        name, shape = value.name, value.shape
        if name is None or name in input_shapes or name in model.graph.initializers or shape is None:
            continue
        if not all(isinstance(d, int) for d in shape):
            assumed[name] = [d if isinstance(d, int) else typical_dim(d) for d in shape]
    return assumed


def activation_memory(model: Model) -> dict[str, int]:
    """Bytes of the main graph's intermediate values: all of them, and the most alive at once.

    The peak walks the nodes in topological order; a value lives from its producer to its last
    reader (graph outputs to the end). Values inside subgraphs count in the total only.
    """
    graph = model.graph
    order = graph.topological_order()
    position = {id(n): i for i, n in enumerate(order)}
    last_use: dict[int, int] = {}
    sizes: dict[int, int] = {}
    unknown = total = 0
    for g in graph.all_graphs():
        for node in g:
            for value in node.outputs:
                size = _value_bytes(value)
                if size is None:
                    unknown += bool(value.name)
                    continue
                total += size
                if g is graph:
                    sizes[id(value)] = size
                    readers = [position.get(id(r), len(order)) for r in value.consumers()]
                    end = len(order) if value.is_graph_output() else max(readers, default=position[id(node)])
                    last_use[id(value)] = end
    live = peak = 0
    dying: dict[int, int] = {}
    for i, node in enumerate(order):
        for value in node.outputs:
            if id(value) in sizes:
                live += sizes[id(value)]
                dying[last_use[id(value)]] = dying.get(last_use[id(value)], 0) + sizes[id(value)]
        peak = max(peak, live)
        live -= dying.pop(i, 0)
    return {"total_bytes": total, "peak_bytes": peak, "unknown_values": unknown}


def analyze(model: Model, input_shapes: dict[str, list[int]] | None = None, top: int = 10) -> dict[str, Any]:
    """Shapes from inference, FLOPs and MACs per node and in total, activation memory, heaviest nodes.

    Symbolic input dimensions that ``input_shapes`` does not fix are sized by :func:`typical_dim`
    (reported under ``shapes.assumed``); shapes then come from the project's shape resolution
    (:func:`onnxgraph.shape_inference.infer_shapes`). Totals are lower bounds when
    ``compute.complete`` is false: ``compute.nodes_unknown`` nodes (by op type in
    ``compute.unknown_by_op_type``) have unknown shapes or ops of another domain. The model is
    changed in place (its values gain inferred types).
    """
    from onnxgraph.flops import node_cost
    from onnxgraph.shape_inference import infer_shapes

    fixed = dict(input_shapes or {})
    assumed = _assumed_shapes(model, fixed)
    infer_shapes(model, {**assumed, **fixed})
    per_node: list[dict[str, Any]] = []
    by_op: Counter[str] = Counter()
    unknown_by_op: Counter[str] = Counter()
    flops = macs = 0
    for node in model.graph.all_nodes():
        cost = node_cost(node)
        op = f"{node.domain}::{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type
        if cost is None:
            unknown_by_op[op] += 1
        else:
            flops += cost.flops
            macs += cost.macs
            by_op[op] += cost.flops
        per_node.append(
            {
                "name": node.name,
                "op_type": node.op_type,
                "flops": None if cost is None else cost.flops,
                "macs": None if cost is None else cost.macs,
                "outputs": [types.describe_type(v.type) for v in node.outputs],
            }
        )
    heaviest = sorted((n for n in per_node if n["flops"]), key=lambda n: -n["flops"])[:top]
    unknown = sum(unknown_by_op.values())
    return {
        "shapes": {"fixed": fixed, "assumed": assumed},
        "compute": {
            "flops": flops,
            "macs": macs,
            "complete": unknown == 0,
            "nodes_unknown": unknown,
            "unknown_by_op_type": dict(unknown_by_op.most_common()),
            "by_op_type": {op: n for op, n in by_op.most_common() if n},
        },
        "activations": activation_memory(model),
        "top_nodes": heaviest,
        "per_node": per_node,
    }


def _changes(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {
        "added": sorted(set(b) - set(a)),
        "removed": sorted(set(a) - set(b)),
        "changed": [{"name": k, "a": a[k], "b": b[k]} for k in sorted(set(a) & set(b)) if a[k] != b[k]],
    }


def diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """What differs between two ``summarize`` + ``analyze`` results (``a`` first, ``b`` second)."""
    ops_a, ops_b = a["nodes"]["by_op_type"], b["nodes"]["by_op_type"]
    return {
        "a": a["path"],
        "b": b["path"],
        "ir_version": [a["ir_version"], b["ir_version"]],
        "opset_imports": _changes(a["opset_imports"], b["opset_imports"]),
        "ops": {
            op: [ops_a.get(op, 0), ops_b.get(op, 0)]
            for op in sorted(set(ops_a) | set(ops_b))
            if ops_a.get(op, 0) != ops_b.get(op, 0)
        },
        "nodes": [a["nodes"]["total"], b["nodes"]["total"]],
        "parameters": {k: [a["parameters"][k], b["parameters"][k]] for k in a["parameters"]},
        "flops": [a["compute"]["flops"], b["compute"]["flops"]],
        "macs": [a["compute"]["macs"], b["compute"]["macs"]],
        "nodes_unknown": [a["compute"]["nodes_unknown"], b["compute"]["nodes_unknown"]],
        "inputs": _changes({v["name"]: v["type"] for v in a["inputs"]}, {v["name"]: v["type"] for v in b["inputs"]}),
        "outputs": _changes({v["name"]: v["type"] for v in a["outputs"]}, {v["name"]: v["type"] for v in b["outputs"]}),
    }
