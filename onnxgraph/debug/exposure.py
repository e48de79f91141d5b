"""Running a model with its intermediate values exposed as extra graph outputs, a chunk at a time.

Exposing every value of a large model at once would hold all of them in memory together. Here the
values are split into chunks whose estimated size (from shapes inferred for the actual feeds) stays
under a byte budget; each chunk is one onnxruntime session whose outputs are the model's own plus the
chunk's values, and the caller consumes a chunk before the next one runs.

Only values of the main graph are exposed: values inside If/Loop/Scan bodies are left out, since
onnxruntime can only return a graph's own outputs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from onnxgraph import types
from onnxgraph.errors import RunError
from onnxgraph.model import Model
from onnxgraph.runtime.chunked import GraphSlicer
from onnxgraph.shape_inference import inferred_types

DEFAULT_CHUNK_BYTES = 256 << 20
"""Budget for the estimated size of the values one chunk exposes."""
_UNKNOWN_SIZE = 4 << 20
"""Size assumed for a value whose shape inference cannot tell."""


def run_session(
    model: bytes | onnx.ModelProto,
    feeds: Mapping[str, np.ndarray],
    names: Sequence[str] | None,
    *,
    providers: tuple[str, ...],
    optimization: str,
    label: str,
) -> list:
    """Create a quiet session and run it once, returning the arrays of ``names`` (None: every output).

    Raises:
        RunError: onnxruntime rejects the model or the run fails; the message starts with ``label``.
    """
    from onnxgraph.runtime.sessions import create_session

    try:
        session = create_session(model, providers=providers, optimization=optimization)
        wanted = {i.name for i in session.get_inputs()}
        return session.run(None if names is None else list(names), {k: v for k, v in feeds.items() if k in wanted})
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        text = str(exc).strip()
        raise RunError(
            f"{label}: onnxruntime cannot run it: {text.splitlines()[0] if text else type(exc).__name__}"
        ) from exc


@dataclass(frozen=True)
class Intermediate:
    """A value of the main graph that a node writes.

    Attributes:
        name: the value's name.
        node: the producing node's name ("" when unnamed).
        op_type: the producing node's op type.
        position: the producer's place in topological order.
    """

    name: str
    node: str
    op_type: str
    position: int


def intermediates(model: Model, *, initializers: bool = False) -> list[Intermediate]:
    """Every named output of a main-graph node, in topological order (subgraph values left out).

    Args:
        model: the model.
        initializers: also list the main graph's initializers (op type "initializer", position -1), which
            onnxruntime returns as outputs too: where a rewrite folded a value into a constant, the
            constant is its partner.
    """
    found = []
    for position, node in enumerate(model.graph.topological_order()):
        for value in node.outputs:
            if value.name and (value.type is None or value.type.HasField("tensor_type")):
                found.append(Intermediate(value.name, node.name or "", node.op_type, position))
    if initializers:
        found += [Intermediate(name, "", "initializer", -1) for name in model.graph.initializers]
    return found


def estimated_sizes(model: Model, feeds: Mapping[str, np.ndarray]) -> dict[str, onnx.TypeProto]:
    """Types of the model's values inferred for the shapes of ``feeds`` (by value name)."""
    saved = [(v, v.name, v.type) for v in model.graph.inputs if v.name is not None and v.name in feeds]
    try:
        for value, name, _ in saved:
            array = feeds[name]
            value.type = types.tensor_type(value.elem_type or types.elem_type_of(array.dtype), array.shape)
        return inferred_types(model, forget_value_info=True)
    finally:
        for value, _, old in saved:
            value.type = old


def estimated_nbytes(type_proto: onnx.TypeProto | None) -> int:
    """Bytes of a value of that type; :data:`_UNKNOWN_SIZE` when its element type or a dimension is unknown."""
    dims, elem = types.static_dims(types.shape_of(type_proto)), types.elem_type_from(type_proto)
    if dims is None or elem is None:
        return _UNKNOWN_SIZE
    return types.storage_bytes(elem, int(np.prod(dims, dtype=np.int64))) or _UNKNOWN_SIZE


def chunks(names: Sequence[str], found: Mapping[str, onnx.TypeProto], budget: int) -> list[list[str]]:
    """Split ``names`` (in order) into runs whose estimated bytes stay under ``budget`` (at least one each)."""
    out: list[list[str]] = []
    current: list[str] = []
    used = 0
    for name in names:
        size = estimated_nbytes(found.get(name))
        if current and used + size > budget:
            out.append(current)
            current, used = [], 0
        current.append(name)
        used += size
    if current:
        out.append(current)
    return out


class Exposer:
    """Runs one model with chosen intermediate values as outputs, chunk by chunk.

    A chunk's session holds only the nodes its values depend on, and only those values as outputs:
    onnxruntime runs every node of a graph whatever is fetched, so an early chunk costs a fraction of
    a whole run.

    Args:
        model: the model (not changed; exported once, inlining its weights).
        providers: onnxruntime providers in priority order.
        chunk_bytes: budget of one chunk's estimated size.
        optimization: onnxruntime's graph optimization level; by default none, so the model runs as
            written and exposing other values does not change the numbers.
        label: names the model in errors (its path).
    """

    def __init__(
        self,
        model: Model,
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
        *,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        optimization: str = "disable",
        label: str = "model",
    ) -> None:
        self.model = model
        self.label = label
        self.providers = providers
        self.chunk_bytes = chunk_bytes
        self.optimization = optimization
        self._slicer = GraphSlicer(model.to_proto())  # nodes and outputs go in per session
        self._nodes, self._outputs = self._slicer.nodes, self._slicer.outputs
        self._reads = [
            [v.name for v in (*n.inputs, *n.implicit_inputs()) if v is not None and v.name] for n in model.graph.nodes
        ]
        self._writer = {name: i for i, node in enumerate(self._nodes) for name in node.output if name}

    def plan(self, feeds: Mapping[str, np.ndarray], names: Sequence[str]) -> list[list[str]]:
        """Split ``names`` into chunks under the byte budget, sizes inferred for the shapes of ``feeds``."""
        return chunks(names, estimated_sizes(self.model, feeds), self.chunk_bytes)

    def run_chunk(self, feeds: Mapping[str, np.ndarray], chunk: Sequence[str]) -> dict[str, np.ndarray]:
        """``{name: array}`` for one chunk of value names (non-tensor results, such as sequences, left out).

        Raises:
            RunError: onnxruntime cannot create the session or run it.
        """
        names = list(dict.fromkeys(chunk))
        declared = {o.name: o for o in self._outputs}
        outputs = [declared.get(n) or onnx.ValueInfoProto(name=n) for n in names]
        got = dict(zip(names, self._run(self._needed(names), outputs, feeds, self.optimization)))
        return {n: got[n] for n in chunk if isinstance(got[n], np.ndarray)}

    def run_plain(self, feeds: Mapping[str, np.ndarray], optimization: str = "all") -> dict[str, np.ndarray]:
        """The model's own outputs, nothing exposed, onnxruntime optimizing as usual (as ``bench`` runs it).

        Raises:
            RunError: onnxruntime cannot create the session or run it.
        """
        arrays = self._run(range(len(self._nodes)), self._outputs, feeds, optimization)
        return dict(zip((o.name for o in self._outputs), arrays))

    def _needed(self, names: Sequence[str]) -> list[int]:
        """Positions of the nodes ``names`` depend on, in file order."""
        needed: set[int] = set()
        stack = [self._writer[n] for n in names if n in self._writer]
        while stack:
            i = stack.pop()
            if i not in needed:
                needed.add(i)
                stack.extend(self._writer[n] for n in self._reads[i] if n in self._writer)
        return sorted(needed)

    def _run(self, positions, outputs: Sequence[onnx.ValueInfoProto], feeds, optimization: str) -> list:
        payload = self._slicer.payload(positions, outputs)
        names = [o.name for o in outputs]
        return run_session(payload, feeds, names, providers=self.providers, optimization=optimization, label=self.label)

    def run(self, feeds: Mapping[str, np.ndarray], names: Sequence[str]) -> Iterator[dict[str, np.ndarray]]:
        """Yield ``{name: array}`` for ``names``, one chunk at a time, in the order given."""
        for chunk in self.plan(feeds, names):
            yield self.run_chunk(feeds, chunk)


def known_values(
    model: Model,
    feeds: Mapping[str, np.ndarray],
    providers: tuple[str, ...] = ("CPUExecutionProvider",),
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> tuple[dict[str, np.ndarray], str]:
    """Every main-graph value of one run (the feeds included), held in memory.

    Runs on onnxruntime; when onnxruntime rejects the model, on onnx.reference.

    Returns:
        ``(values, engine)``: engine is "onnxruntime", "onnx.reference", or "" with no values when
        neither can run the model.
    """
    values = dict(feeds)
    names = [v.name for v in intermediates(model)]
    try:
        exposer = Exposer(model, providers, chunk_bytes=chunk_bytes)
        for got in exposer.run(feeds, names):
            values.update(got)
        return values, "onnxruntime"
    except RunError:
        pass
    from onnx.reference import ReferenceEvaluator

    try:
        arrays = ReferenceEvaluator(model.to_proto()).run(names, dict(feeds))
    except Exception:  # noqa: BLE001 - the reference evaluator raises many types
        return dict(feeds), ""
    values.update((n, a) for n, a in zip(names, arrays) if isinstance(a, np.ndarray))
    return values, "onnx.reference"
