"""``fold``: constant folding.

A node whose inputs are all constants is evaluated and its outputs become constants. The nodes of
one graph are evaluated together: one onnxruntime session for the whole constant subgraph.

Rewrites:
    1. ``numpy``: small integer shape arithmetic (Shape, Gather, Concat, Unsqueeze, Slice, Add...
       on at most 64 elements) is computed in numpy, without a session; so is an Identity of any
       constant, one of a result of the onnxruntime batch included (after the batch has run).
    2. ``onnxruntime``: every other constant node of a graph is computed in one onnxruntime session.
    3. ``reference``: when that session cannot be built or run (an op onnxruntime lacks), the
       nodes are evaluated one by one, with onnx.reference for those onnxruntime cannot run.

Guards: random ops (RandomNormal, RandomUniform(Like), Multinomial, Bernoulli), Dropout that may
train, DequantizeLinear (it would turn quantized weights into float ones) and nodes with subgraphs
are never folded. A folded output must hold at most ``size_limit`` elements, and one above 4096
elements must not be larger than the constants it is computed from, so Tile, Expand or
ConstantOfShape never bloat the model; the exception is a tensor read only as a layer's parameter
(Conv or Gemm weight, normalization scale...), which has to exist in full anyway. The size of
ConstantOfShape, Expand, Tile and Range is estimated from their constant inputs before they are
evaluated, so a node that would allocate more than ``size_limit`` elements is never run.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping

import numpy as np

from onnxgraph.graph import Graph
from onnxgraph.model import Model
from onnxgraph.node import Node
from onnxgraph.optimizers import shape_arith
from onnxgraph.optimizers.base import Pass
from onnxgraph.optimizers.evaluate import (
    EvaluationError,
    run_onnxruntime,
    run_reference,
    subgraph_model,
)
from onnxgraph.optimizers.utils import (
    constant_array,
    is_deterministic,
    is_standard,
    replace_with_constant,
)
from onnxgraph.tensor import Tensor
from onnxgraph.value import Value

DEFAULT_SIZE_LIMIT = 1_000_000
"""Largest folded output, in elements (``--size-limit``)."""
BLOAT_FREE = 4096
"""Outputs up to this many elements may be larger than the constants they come from."""
NEVER_FOLD = frozenset({"Constant", "DequantizeLinear"})
PARAMETER_SLOTS = {
    "Conv": {1, 2},
    "ConvTranspose": {1, 2},
    "Gemm": {1, 2},
    "MatMul": {1},
    "PRelu": {1},
    "BatchNormalization": {1, 2, 3, 4},
    "InstanceNormalization": {1, 2},
    "LayerNormalization": {1, 2},
    "LSTM": {1, 2, 3},
    "GRU": {1, 2, 3},
    "RNN": {1, 2, 3},
}
"""Inputs that hold a layer's parameters: a tensor read there is a weight, never bloat."""


class ConstantFolding(Pass):
    """Evaluate constant nodes and replace them by their results.

    Args:
        size_limit: largest folded output, in elements.
        disabled: rewrite cases not to apply.
    """

    name = "fold"
    rewrites = ("numpy", "onnxruntime", "reference")
    options = ("size_limit",)

    def __init__(self, *, size_limit: int = DEFAULT_SIZE_LIMIT, disabled=()):
        super().__init__(disabled=disabled)
        self.size_limit = size_limit

    def run(self, model: Model) -> Counter[str]:
        stats: Counter[str] = Counter()
        ir_version = max(model.ir_version or 0, 7)
        for graph in model.graph.all_graphs():
            self._fold_graph(graph, False, model.opset_imports, ir_version, stats)
        for function in model.functions.values():
            opsets = {**model.opset_imports, **function.opset_imports}
            for graph in function.graph.all_graphs():
                self._fold_graph(graph, True, opsets, ir_version, stats)
        return stats

    # -- planning -------------------------------------------------------------------------------
    def _foldable(self, node: Node) -> bool:
        if not is_standard(node) or node.op_type in NEVER_FOLD or not is_deterministic(node):
            return False
        if node.subgraphs() or any(a.ref_attr_name for a in node.attributes.values()):
            return False
        return not any(_static_size(v) > self.size_limit for v in node.outputs)

    def _fold_graph(
        self, graph: Graph, in_function: bool, opsets: Mapping[str, int], ir_version: int, stats: Counter[str]
    ) -> None:
        values: dict[Value, np.ndarray] = {}  # results of folded nodes
        how: dict[Node, str] = {}  # folded node -> rewrite case
        batch: list[Node] = []
        pending: set[Value] = set()  # outputs of batch nodes, known after the run
        copies: dict[Value, Node] = {}  # output -> Identity of a batch result, resolved after the run
        for node in graph:
            if not self._foldable(node):
                continue
            arrays, waits = _input_arrays(node, values, pending)
            if arrays is None or _planned_size(node, arrays) > self.size_limit:
                continue
            if not waits and self._try_numpy(node, arrays, values):
                how[node] = "numpy"
            elif waits and node.op_type == "Identity" and self.allows("numpy"):
                copies[node.outputs[0]] = node
                pending.add(node.outputs[0])
            elif self.allows("onnxruntime") or self.allows("reference"):
                _join_batch(node, batch, copies)
                pending.update(v for v in node.outputs if v.name)
        if batch:
            how.update(self._evaluate(batch, values, opsets, ir_version))
        for out, node in copies.items():  # in graph order: a copy of a copy finds its source resolved
            source = node.inputs[0]
            if source in values:
                values[out] = values[source]
                how[node] = "numpy"
        if how:
            self._materialize(graph, how, values, in_function, stats)

    def _try_numpy(self, node: Node, arrays: list, values: dict[Value, np.ndarray]) -> bool:
        if not self.allows("numpy"):
            return False
        results = shape_arith.evaluate(node, arrays)
        if results is None:
            return False
        values.update(zip(node.outputs, results))
        return True

    # -- evaluation -----------------------------------------------------------------------------
    def _evaluate(
        self, batch: list[Node], values: dict[Value, np.ndarray], opsets: Mapping[str, int], ir_version: int
    ) -> dict[Node, str]:
        """Compute ``batch`` in one session; on failure node by node. Returns the folded nodes."""
        if self.allows("onnxruntime"):
            feeds = _feeds(batch, values)
            try:
                results = run_onnxruntime(subgraph_model(batch, feeds, opsets, ir_version), feeds)
                return self._collect(batch, results, values, "onnxruntime")
            except EvaluationError:
                pass
        folded: dict[Node, str] = {}
        for node in batch:
            if any(v is not None and v not in values and constant_array(v) is None for v in node.inputs):
                continue
            feeds = _feeds([node], values)
            model = subgraph_model([node], feeds, opsets, ir_version)
            for case, runner in (("onnxruntime", run_onnxruntime), ("reference", run_reference)):
                if not self.allows(case):
                    continue
                try:
                    folded.update(self._collect([node], runner(model, feeds), values, case))
                    break
                except EvaluationError:
                    continue
        return folded

    @staticmethod
    def _collect(nodes: list[Node], results: dict, values: dict[Value, np.ndarray], case: str) -> dict[Node, str]:
        folded = {}
        for node in nodes:
            outs = [results.get(v.name) for v in node.outputs if v.name]
            if all(isinstance(a, np.ndarray) for a in outs):
                values.update((v, results[v.name]) for v in node.outputs if v.name)
                folded[node] = case
        return folded

    # -- rewriting ------------------------------------------------------------------------------
    def _materialize(
        self,
        graph: Graph,
        how: dict[Node, str],
        values: dict[Value, np.ndarray],
        in_function: bool,
        stats: Counter[str],
    ) -> None:
        """Turn the frontier of the folded region into constants, shrinking the region where a
        frontier value breaks the size guards, then drop the folded nodes left unread."""
        leaves = _leaf_sizes(how, values)
        while True:
            frontier = _frontier(how)
            too_big = [v for v in frontier if not self._fits(v, values.get(v), leaves.get(v, 0))]
            if not too_big:
                break
            for v in too_big:
                producer = v.producer()
                if producer is not None:  # a frontier value is an output of a folded node
                    how.pop(producer, None)
        read = {id(v) for v in frontier}
        for node in [n for n in graph if n in how]:
            if not in_function and all(id(v) in read or not v.has_uses() for v in node.outputs):
                graph.replace_with_initializers(node, [Tensor(values[v]) for v in node.outputs])
            else:
                for v in node.outputs:
                    if id(v) in read:
                        replace_with_constant(v, values[v], in_function=in_function)
        for node in reversed(graph.nodes):
            if node in how:
                _remove_if_unused(node)
        stats.update(how.values())

    def _fits(self, value: Value, array: np.ndarray | None, leaf_size: int) -> bool:
        if not isinstance(array, np.ndarray) or array.dtype == object and array.size > BLOAT_FREE:
            return False
        if array.size > self.size_limit:
            return False
        return array.size <= BLOAT_FREE or array.size <= leaf_size or _is_weight(value)


def _join_batch(node: Node, batch: list[Node], copies: dict[Value, Node]) -> None:
    """Add ``node`` to the onnxruntime batch, with the Identity copies it reads (held back so far).

    An Identity of a batch result is resolved after the run, without onnxruntime (a gradient's
    100,000 copies of one constant would otherwise be 100,000 side-by-side nodes in one session,
    whose creation onnxruntime makes quadratic); only a copy another batch node reads joins it.
    """
    joining, stack = [node], [node]
    while stack:  # the copies it reads, the copies those read... (no recursion: chains may be long)
        for v in stack.pop().inputs:
            copy = copies.pop(v, None) if v is not None else None
            if copy is not None:
                joining.append(copy)
                stack.append(copy)
    batch.extend(reversed(joining))  # sources first


def _is_weight(value: Value) -> bool:
    """True when every reader uses ``value`` as a layer's parameter (a Conv weight, a BN scale...)."""
    uses = value.uses()
    return bool(uses) and all(
        i in PARAMETER_SLOTS.get(node.op_type, ()) and node.domain in ("", "ai.onnx") for node, i in uses
    )


SIZE_OPS = frozenset({"ConstantOfShape", "Expand", "Tile", "Range"})
"""Ops whose output size comes from their input values, not their input sizes."""


def _planned_size(node: Node, arrays: list[np.ndarray | None]) -> float:
    """Elements ``node`` would create, estimated from its constant inputs before anything is run.

    Infinite for an op of :data:`SIZE_OPS` whose size-giving input is not known yet (a batch result),
    so ``ConstantOfShape`` of 1e10 elements is never handed to onnxruntime to allocate; 0 for other
    ops (their outputs are checked against the static shape and after evaluation).
    """
    if node.op_type not in SIZE_OPS or node.domain not in ("", "ai.onnx"):
        return 0
    needed = {"ConstantOfShape": 1, "Expand": 2, "Tile": 2, "Range": 3}[node.op_type]
    lo = 1 if node.op_type in ("Expand", "Tile") else 0
    known = [a for a in arrays[lo:needed] if a is not None]  # the size-giving inputs, from input ``lo`` on
    if len(arrays) < needed or len(known) < needed - lo:
        return math.inf
    first: tuple[int, ...] = ()
    if node.op_type in ("Expand", "Tile"):  # the data input may be a pending batch result: its shape will do
        data = node.inputs[0]
        shape = arrays[0].shape if arrays[0] is not None else data.shape if data is not None else None
        if shape is None or not all(isinstance(d, int) for d in shape):
            return math.inf
        first = tuple(d for d in shape if isinstance(d, int))
    try:
        if node.op_type == "ConstantOfShape":
            return math.prod(int(d) for d in known[0].reshape(-1))
        if node.op_type == "Expand":
            return math.prod(np.broadcast_shapes(first, tuple(int(d) for d in known[0].reshape(-1))))
        if node.op_type == "Tile":
            return math.prod(first) * math.prod(int(r) for r in known[0].reshape(-1))
        start, limit, delta = (float(np.asarray(a).reshape(-1)[0]) for a in known[:3])
        return max(0, math.ceil((limit - start) / delta)) if delta else math.inf
    except (ValueError, TypeError, OverflowError, IndexError):
        return math.inf


def _static_size(value: Value) -> int:
    shape = value.shape
    dims = [d for d in shape if isinstance(d, int)] if shape is not None else []
    if shape is None or len(dims) != len(shape):
        return 0
    return int(np.prod(dims, dtype=np.int64))


def _input_arrays(
    node: Node, values: dict[Value, np.ndarray], pending: set[Value]
) -> tuple[list[np.ndarray | None] | None, bool]:
    """The node's input arrays (None where a batch result is still pending) and whether any is
    pending; ``(None, False)`` when some input is not constant."""
    arrays: list[np.ndarray | None] = []
    waits = False
    for v in node.inputs:
        if v is None:
            arrays.append(None)
        elif v in values:
            arrays.append(values[v])
        elif v in pending:
            arrays.append(None)
            waits = True
        else:
            array = constant_array(v)
            if array is None:
                return None, False
            arrays.append(array)
    return arrays, waits


def _feeds(nodes: list[Node], values: dict[Value, np.ndarray]) -> dict[str, np.ndarray]:
    produced = {v for n in nodes for v in n.outputs}
    feeds: dict[str, np.ndarray] = {}
    for node in nodes:
        for v in node.inputs:
            if v is not None and v not in produced and v.name not in feeds:
                assert v.name is not None  # values of a graph are named when their producer is inserted
                array = values[v] if v in values else constant_array(v)
                assert array is not None  # callers pass only nodes whose inputs are all constant
                feeds[v.name] = array
    return feeds


def _leaf_sizes(how: dict[Node, str], values: dict[Value, np.ndarray]) -> dict[Value, int]:
    """For each folded value, the elements of the pre-existing constants it is computed from."""
    leaves: dict[Value, int] = {}
    for node in how:
        total = 0
        for v in node.inputs:
            if v is None:
                continue
            if v in leaves:
                total += leaves[v]
            else:
                array = values.get(v)
                total += array.size if array is not None else np.size(constant_array(v))
        for v in node.outputs:
            leaves[v] = total
    return leaves


def _frontier(how: dict[Node, str]) -> list[Value]:
    """Folded values read by a node that is not folded, or that are graph outputs."""
    out = []
    for node in how:
        for v in node.outputs:
            if v.is_graph_output() or any(reader not in how for reader, _ in v.uses()):
                out.append(v)
    return out


def _remove_if_unused(node: Node) -> None:
    if node.graph is not None and not any(v.has_uses() or v.is_graph_output() for v in node.outputs):
        node.graph.remove(node)
