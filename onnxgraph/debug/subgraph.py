"""Cutting a model down to a chosen set of its main-graph nodes, with a valid interface.

A value the kept nodes read but no kept node writes is a *cut value*. If it does not depend on the
data of the graph inputs (only on constants or on input shapes, such as the shape arguments of a
Reshape) and its value is known, it becomes an initializer holding that value; otherwise it becomes
a graph input with its inferred type. Values the kept nodes write and nothing kept reads become
graph outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from onnxgraph import types
from onnxgraph.model import Model
from onnxgraph.node import Node
from onnxgraph.optimizers.utils import RANDOM_OPS
from onnxgraph.runtime.inputs import random_array

_SHAPE_ONLY = frozenset({"Shape", "Size"})


class Cutter:
    """Builds sub-models of one model from sets of node positions (in topological order).

    Args:
        model: the model to cut (not changed).
        types_by_name: inferred types of its values, for cut values that become inputs.
        values: known values of the model's values (graph inputs and intermediates) on one run, used as
            feeds for the cut inputs and as data for constant cut values; names missing get random data.
        seed: seed of the random data.
    """

    def __init__(
        self,
        model: Model,
        types_by_name: Mapping[str, onnx.TypeProto],
        values: Mapping[str, np.ndarray],
        *,
        seed: int = 0,
    ) -> None:
        self.proto = model.to_proto()
        graph = model.graph
        file_order = {id(n): i for i, n in enumerate(graph.nodes)}
        self.nodes: list[Node] = graph.topological_order()
        self._protos = [self.proto.graph.node[file_order[id(n)]] for n in self.nodes]
        self._reads = [
            [v.name for v in (*n.inputs, *n.implicit_inputs()) if v is not None and v.name] for n in self.nodes
        ]
        self._writes = [[v.name for v in n.outputs if v.name] for n in self.nodes]
        self._initializers = {t.name: t for t in self.proto.graph.initializer}
        self._inputs = {i.name: i for i in self.proto.graph.input}
        self._outputs = {o.name: o for o in self.proto.graph.output}
        self._types = dict(types_by_name)
        self._values = values
        self._data_dependent = _data_dependent(model, self.nodes)
        self._rng_seed = seed

    def __len__(self) -> int:
        return len(self.nodes)

    def ancestors(self, positions: Sequence[int], target: int) -> list[int]:
        """The positions among ``positions`` that ``target`` depends on, ``target`` included, in order."""
        kept = set(positions)
        writer = {name: i for i in positions for name in self._writes[i]}
        needed, stack = {target}, [target]
        while stack:
            for name in self._reads[stack.pop()]:
                i = writer.get(name)
                if i is not None and i in kept and i not in needed:
                    needed.add(i)
                    stack.append(i)
        return sorted(needed)

    def build(self, positions: Sequence[int]) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
        """The sub-model of the nodes at ``positions`` and the feeds for its inputs."""
        kept = sorted(set(positions))
        kept_set = set(kept)
        written = {name for i in kept for name in self._writes[i]}
        read_inside = {name for i in kept for name in self._reads[i]}
        rng = np.random.default_rng(self._rng_seed)
        graph = onnx.GraphProto(name=self.proto.graph.name or "reduced")
        graph.node.extend(self._protos[i] for i in kept)
        feeds: dict[str, np.ndarray] = {}
        for name in dict.fromkeys(n for i in kept for n in self._reads[i]):
            if name in written:
                continue
            if name in self._initializers:
                graph.initializer.append(self._initializers[name])
                if name in self._inputs:
                    graph.input.append(self._inputs[name])
            elif name not in self._data_dependent and name in self._values:
                graph.initializer.append(numpy_helper.from_array(np.asarray(self._values[name]), name))
            else:
                graph.input.append(self._input_info(name))
                feeds[name] = self._feed(name, rng)
        later_reads = {n for i in range(len(self.nodes)) if i not in kept_set for n in self._reads[i]}
        for i in kept:
            for name in self._writes[i]:
                if name in self._outputs or name in later_reads or name not in read_inside:
                    graph.output.append(self._outputs.get(name) or self._info(name))
        model = onnx.ModelProto()
        model.CopyFrom(self.proto)
        model.graph.CopyFrom(graph)
        model.ClearField("metadata_props")
        return model, feeds

    def _info(self, name: str) -> onnx.ValueInfoProto:
        info = onnx.ValueInfoProto(name=name)
        found = self._types.get(name)
        if found is not None and found.HasField("tensor_type"):
            info.type.CopyFrom(found)
        elif name in self._values:
            array = np.asarray(self._values[name])
            info.type.CopyFrom(types.tensor_type(types.elem_type_of(array.dtype), array.shape))
        return info

    def _input_info(self, name: str) -> onnx.ValueInfoProto:
        if name in self._inputs:
            return self._inputs[name]
        info = self._info(name)
        if not info.HasField("type"):
            info.type.CopyFrom(types.tensor_type(onnx.TensorProto.FLOAT, None))
        return info

    def _feed(self, name: str, rng: np.random.Generator) -> np.ndarray:
        if name in self._values:
            return np.asarray(self._values[name])
        found = self._input_info(name).type
        shape = tuple(d if isinstance(d, int) else 1 for d in (types.shape_of(found) or (1,)))
        return random_array(types.elem_type_from(found) or onnx.TensorProto.FLOAT, shape, rng)


def _data_dependent(model: Model, nodes: Sequence[Node]) -> set[str]:
    """Names of values that depend on the data (not only the shapes) of the graph inputs, or on chance."""
    graph = model.graph
    dependent = {v.name for v in graph.inputs if v.name is not None and not v.is_initializer()}
    for node in nodes:
        if node.op_type in _SHAPE_ONLY and node.domain in ("", "ai.onnx"):
            continue
        reads = [v for v in (*node.inputs, *node.implicit_inputs()) if v is not None]
        if node.op_type in RANDOM_OPS or any(v.name in dependent for v in reads):
            dependent.update(v.name for v in node.outputs if v.name)
    return dependent
