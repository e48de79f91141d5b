"""Model summaries for ``onnxgraph info``: interface, op counts, parameters, external data."""

from __future__ import annotations

import math
import os
from collections import Counter
from typing import Any

from onnxgraph import types
from onnxgraph.model import Model
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
            count += 1
            elements += math.prod(tensor.dims)
            nbytes += tensor.nbytes
    return {"initializers": count, "elements": elements, "bytes": nbytes}


def external_data_stats(model: Model, model_path: str | None) -> list[dict[str, Any]]:
    """Each external-data file: its path relative to the model, size on disk and tensor count."""
    per_file: Counter[str] = Counter()
    for graph in model.all_graphs():
        for value in graph.initializers.values():
            if value.const_value.is_external:
                per_file[value.const_value.external_path] += 1
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
