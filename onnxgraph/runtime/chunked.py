"""Running a large graph on onnxruntime in topological chunks of bounded size.

onnxruntime's session creation grows quadratically with the *width* of a graph (the number of nodes
that can run side by side: 20,000 Relu nodes reading one input take 16 CPU s to load, a 100,000-wide
graph minutes; its CPU provider also adds a Cast per float16 initializer, all side by side). A graph
with more main-graph nodes than :func:`chunk_nodes` is therefore run as consecutive runs of that many
nodes in topological (file) order: each chunk is its own session over only its nodes and the
initializers they read, its inputs fed from the graph's feeds and earlier chunks' values, and a
value is dropped once no later chunk reads it. Session creation then costs at most
``chunks x chunk_nodes^2``: linear in the graph's size.

A node with subgraphs (If, Loop, Scan) goes into a chunk whose graph inputs include every outer-scope
value its subgraphs read, so the subgraphs see them as before.

:class:`GraphSlicer` builds the payload of a session over some nodes of a model; the per-chunk
sessions here and ``compare``'s exposure of intermediate values (:mod:`onnxgraph.debug.exposure`)
both use it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxgraph.errors import NotChunkable, RunBudgetExceeded

CHUNK_NODES_ENV = "ONNXGRAPH_CHUNK_NODES"
DEFAULT_CHUNK_NODES = 4000
"""Main-graph nodes per session of a chunked run; graphs with more nodes run in chunks. onnxruntime
creates a 4,000-node session of any width in well under a second."""


def chunk_nodes() -> int:
    """Nodes per chunk: ``ONNXGRAPH_CHUNK_NODES`` or :data:`DEFAULT_CHUNK_NODES` (at least 1)."""
    try:
        return max(1, int(os.environ.get(CHUNK_NODES_ENV, DEFAULT_CHUNK_NODES)))
    except ValueError:
        return DEFAULT_CHUNK_NODES


class GraphSlicer:
    """Serialized models holding some nodes of one model, for sessions over part of a graph.

    The model's nodes, inputs, outputs (and, with ``split_initializers``, initializers) are kept
    apart from the rest of its protobuf; :meth:`payload` puts the chosen ones back for one
    serialization.

    Args:
        proto: the model (taken over: its graph's lists are emptied).
        split_initializers: keep initializers apart too, so each payload carries only the ones asked
            for (else every payload carries all of them).
    """

    def __init__(self, proto: onnx.ModelProto, *, split_initializers: bool = False) -> None:
        self._proto = proto
        graph = proto.graph
        self.nodes = [onnx.NodeProto.FromString(n.SerializeToString()) for n in graph.node]
        self.outputs = [onnx.ValueInfoProto.FromString(o.SerializeToString()) for o in graph.output]
        self.inputs = [onnx.ValueInfoProto.FromString(i.SerializeToString()) for i in graph.input]
        del graph.node[:], graph.output[:], graph.input[:]
        self.initializers: dict[str, onnx.TensorProto] = {}
        if split_initializers:
            self.initializers = {t.name: t for t in graph.initializer}
            graph.ClearField("initializer")
            graph.ClearField("value_info")  # types of values that mostly belong to other chunks
        self.initializer_names = set(self.initializers) | {t.name for t in graph.initializer}

    def payload(
        self,
        positions: Iterable[int],
        outputs: Sequence[onnx.ValueInfoProto],
        *,
        inputs: Sequence[onnx.ValueInfoProto] | None = None,
        initializers: Iterable[str] = (),
    ) -> bytes:
        """The serialized model with the nodes at ``positions`` (in that order) and these outputs.

        Args:
            positions: indexes into :attr:`nodes`.
            outputs: the graph outputs.
            inputs: the graph inputs (default: the model's own).
            initializers: names of kept-apart initializers to include.
        """
        graph = self._proto.graph
        graph.node.extend(self.nodes[i] for i in positions)
        graph.output.extend(outputs)
        graph.input.extend(self.inputs if inputs is None else inputs)
        extra = len(graph.initializer)
        graph.initializer.extend(self.initializers[n] for n in initializers)
        try:
            return self._proto.SerializeToString()
        finally:
            del graph.node[:], graph.output[:], graph.input[:], graph.initializer[extra:]


def node_reads(node: onnx.NodeProto) -> list[str]:
    """Names ``node`` reads: its inputs and the outer-scope values its subgraphs read (any depth)."""
    reads = [n for n in node.input if n]
    for attribute in node.attribute:
        for graph in (attribute.g, *attribute.graphs) if attribute.HasField("g") else attribute.graphs:
            reads += _outer_reads(graph)
    return list(dict.fromkeys(reads))


def _outer_reads(graph: onnx.GraphProto) -> list[str]:
    """Names read inside ``graph`` (nested graphs included) that it does not define itself."""
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    defined |= {t.name for t in graph.sparse_initializer if t.values.name}
    reads: list[str] = []
    for node in graph.node:
        reads += [n for n in node_reads(node) if n not in defined]
        defined.update(node.output)
    reads += [o.name for o in graph.output if o.name not in defined]
    return reads


def run_chunked(
    proto: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray],
    *,
    size: int | None = None,
    optimization: str = "disable",
    disabled_optimizers: tuple[str, ...] = (),
    config_entries: Mapping[str, str] | None = None,
    budget: float | None = None,
) -> dict[str, np.ndarray]:
    """Every graph output of ``proto`` for ``feeds``, computed chunk by chunk on onnxruntime CPU.

    Args:
        proto: the model, external data loaded (taken over: its graph's lists are emptied).
        feeds: input name -> array.
        size: nodes per chunk (default :func:`chunk_nodes`).
        optimization, disabled_optimizers, config_entries: as for ``sessions.create_session``.
        budget: seconds for all chunks together, session creation included (default
            ``sessions.run_budget()``).

    Raises:
        RunBudgetExceeded: the chunks together took longer than ``budget``.
        NotChunkable: a value crossing between chunks is not a tensor.
        Exception: whatever onnxruntime raises for a chunk it refuses.
    """
    from onnxgraph.runtime.sessions import create_session, run_budget, run_within_budget

    size = size or chunk_nodes()
    seconds = run_budget() if budget is None else budget
    deadline = time.monotonic() + seconds
    wanted = [o.name for o in proto.graph.output]
    _fold_fan_in(proto.graph, size)
    slicer = GraphSlicer(proto, split_initializers=True)
    reads = [node_reads(n) for n in slicer.nodes]
    spans = _spans(slicer.nodes, reads, size)
    last_read: dict[str, int] = {}
    for index, span in enumerate(spans):
        for i in span:
            last_read.update(dict.fromkeys(reads[i], index))
    values: dict[str, np.ndarray] = {k: v for k, v in feeds.items() if k not in slicer.initializer_names}
    for index, span in enumerate(spans):
        made = {o for i in span for o in slicer.nodes[i].output if o}
        needed = list(dict.fromkeys(n for i in span for n in reads[i] if n not in made))
        fed = [n for n in needed if n in values]
        constants = [n for n in needed if n in slicer.initializers and n not in values]
        later = [o for o in made if last_read.get(o, -1) > index or o in wanted]
        names = sorted(later)
        payload = slicer.payload(
            span,
            [onnx.ValueInfoProto(name=n) for n in names],
            inputs=[_input_info(n, values[n]) for n in fed],
            initializers=constants,
        )
        left = deadline - time.monotonic()
        if left <= 0:
            raise RunBudgetExceeded(f"chunk {index + 1} of {len(spans)} not reached within the {seconds:g} s budget")
        session = create_session(
            payload,
            optimization=optimization,
            disabled_optimizers=disabled_optimizers,
            config_entries=config_entries,
        )
        del payload
        left = deadline - time.monotonic()
        if left <= 0:
            raise RunBudgetExceeded(f"chunk {index + 1} of {len(spans)} not run within the {seconds:g} s budget")
        arrays = run_within_budget(session, names, {n: values[n] for n in fed}, budget=left) if names else []
        del session
        for name, array in zip(names, arrays, strict=True):
            if not isinstance(array, np.ndarray):
                raise NotChunkable(f"value '{name}' is not a tensor")
            values[name] = array
        for name in [n for n in values if last_read.get(n, -1) <= index and n not in wanted]:
            del values[name]
    return {n: values[n] if n in values else numpy_helper.to_array(slicer.initializers[n]) for n in wanted}


FOLDABLE = {"Sum", "Max", "Min", "Concat"}
"""Variadic ops that give the same result as a left fold over runs of their inputs (``Sum`` adds its
inputs one after another into its output; ``Max``, ``Min`` and ``Concat`` are exact in any grouping)."""


def _fold_fan_in(graph: onnx.GraphProto, size: int) -> None:
    """Rewrite each main-graph node of :data:`FOLDABLE` type with more than ``size`` inputs as a left fold of
    nodes of at most ``size`` inputs each, in place. onnxruntime's session creation and its runs grow
    quadratically with the number of a session's inputs, so a node of 100,000 inputs must not need them
    all in one session."""
    width = max(size, 2)  # a fold step reads its partial result and at least one input
    if all(len(n.input) <= width for n in graph.node):
        return
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type not in FOLDABLE or node.domain not in ("", "ai.onnx") or len(node.input) <= width:
            nodes.append(node)
            continue
        names = list(node.input)
        partial, start, step = "", 0, 0
        while start < len(names):
            take = names[start : start + width - (1 if partial else 0)]
            start += len(take)
            last = start >= len(names)
            output = node.output[0] if last else f"{node.output[0]}__onnxgraph_fold{step}"
            piece = onnx.NodeProto()
            piece.CopyFrom(node)
            del piece.input[:], piece.output[:]
            piece.input.extend(([partial] if partial else []) + take)
            piece.output.append(output)
            piece.name = f"{node.name}__onnxgraph_fold{step}" if node.name else ""
            nodes.append(piece)
            partial, step = output, step + 1
    graph.ClearField("node")
    graph.node.extend(nodes)


def _spans(nodes: Sequence[onnx.NodeProto], reads: Sequence[Sequence[str]], size: int) -> list[list[int]]:
    """Consecutive runs of node positions, each of at most ``size`` nodes and, where one node allows it,
    at most ``size`` values read from outside the run."""
    spans: list[list[int]] = []
    current: list[int] = []
    made: set[str] = set()
    outside: set[str] = set()
    for i, node in enumerate(nodes):
        new = {n for n in reads[i] if n not in made} - outside
        if current and (len(current) >= size or len(outside) + len(new) > size):
            spans.append(current)
            current, made, outside, new = [], set(), set(), set(reads[i])
        current.append(i)
        outside |= new
        made.update(node.output)
    if current:
        spans.append(current)
    return spans


def _input_info(name: str, array: np.ndarray) -> onnx.ValueInfoProto:
    if not isinstance(array, np.ndarray):
        raise NotChunkable(f"value '{name}' is not a tensor")
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(array.dtype), array.shape)
