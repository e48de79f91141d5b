"""float32 -> float16 / bfloat16: weights and computation in half precision.

Nodes are visited in topological order, graph by graph (If/Loop/Scan bodies when their node is
reached). Each float32 input of a node is given the type the node should read:

* half, when the node is not blocked and its ONNX schema accepts half precision at that input;
* float32 otherwise: blocked ops (see :data:`DEFAULT_BLOCK_LIST`), other domains, inputs the schema
  fixes to float32 (such as Resize's scales), nodes that read a value of unknown type, and nodes that
  hold subgraphs (their bodies are converted inside, with float32 at the body's boundary).

A value of the wrong type is converted once and shared by all its readers: initializers and Constant
nodes get a converted copy (values beyond the half range clamped, with a warning); other values get
one Cast. A value that is itself a Cast of a value of the wanted type is replaced by that value, so
no Cast pair (half -> float -> half) appears. Existing Casts are retyped: ``Cast(to=float)`` becomes
``Cast(to=half)`` when its readers compute in half, and a Cast that has become a no-op is removed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import defs

from onnxgraph import types
from onnxgraph.attribute import Attribute, AttrType
from onnxgraph.graph import Graph
from onnxgraph.model import Model
from onnxgraph.node import Node
from onnxgraph.tensor import Tensor
from onnxgraph.value import Value

FLOAT = onnx.TensorProto.FLOAT
HALF_TYPES = (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)

DEFAULT_BLOCK_LIST = frozenset(
    {
        # index and size arithmetic: half precision cannot count past 2048 exactly
        "Range",
        "CumSum",
        "TopK",
        "NonMaxSuppression",
        "RoiAlign",
        "Resize",
        "Upsample",
        "GridSample",
        "NonZero",
        "ArgMax",
        "ArgMin",
        # long reductions overflow or lose their small terms in half precision
        "ReduceSum",
        "ReduceSumSquare",
        "ReduceProd",
        "ReduceL1",
        "ReduceL2",
        "ReduceLogSum",
        "ReduceLogSumExp",
        "ReduceMean",
        "Einsum",
        # losses and random generators
        "SoftmaxCrossEntropyLoss",
        "NegativeLogLikelihoodLoss",
        "RandomNormal",
        "RandomUniform",
        "RandomNormalLike",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
    }
)
"""Ops kept in float32 (behind Casts) unless ``block_list`` says otherwise."""

_HALF_MAX: dict[int, float] = {
    onnx.TensorProto.FLOAT16: float(np.finfo(np.float16).max),
    onnx.TensorProto.BFLOAT16: 3.3895313892515355e38,
}

_FLOAT32_MAX = np.finfo(np.float32).max


@dataclass
class HalfReport:
    """What a half-precision conversion did."""

    elem_type: int
    initializers: int = 0
    """Initializers and Constant tensors converted."""
    clamped: dict[str, int] = field(default_factory=dict)
    """Tensor name -> elements clamped to the half range."""
    mask_fills: set[str] = field(default_factory=set)
    """Tensors in ``clamped`` whose clamped values are all float32's extremes: the stand-in for minus
    infinity that exporters put in attention masks (``torch.finfo(torch.float32).min``), where the
    half type's extreme serves as well."""
    casts_added: int = 0
    casts_removed: int = 0
    casts_retyped: int = 0
    kept_float: Counter = field(default_factory=Counter)
    """op type -> nodes kept in float32."""

    @property
    def warnings(self) -> list[str]:
        """One line per clamped tensor, mask fills aside (see :attr:`notes`)."""
        limit = _HALF_MAX[self.elem_type]
        return [
            f"tensor '{name}': {n} value(s) outside the {types.dtype_name(self.elem_type)} range clamped to ±{limit:g}"
            for name, n in self.clamped.items()
            if name not in self.mask_fills
        ]

    @property
    def notes(self) -> list[str]:
        """One line per mask fill: clamped as intended."""
        half = types.dtype_name(self.elem_type)
        return [
            f"tensor '{name}': float32's extreme ±3.4e+38 (exporters' minus infinity in attention masks) "
            f"became {half}'s ±{_HALF_MAX[self.elem_type]:g}"
            for name in self.clamped
            if name in self.mask_fills
        ]


def convert_tensor(tensor: Tensor, elem_type: int, name: str, report: HalfReport) -> Tensor:
    """A half-precision copy of a float32 tensor, clamping finite values beyond the half range."""
    array = np.asarray(tensor.numpy(), dtype=np.float32)
    limit = _HALF_MAX[elem_type]
    outside = np.isfinite(array) & (np.abs(array) > limit)
    if outside.any():
        report.clamped[name] = int(outside.sum())
        if np.all(np.abs(array[outside]) == _FLOAT32_MAX):
            report.mask_fills.add(name)
        array = np.where(outside, np.sign(array) * limit, array)
    return Tensor(array.astype(types.np_dtype(elem_type)), name=name)


def _retype(value: Value, elem_type: int) -> None:
    value.type = types.tensor_type(elem_type, value.shape)


class _HalfConverter:
    def __init__(self, model: Model, elem_type: int, keep_io_types: bool, block_list: frozenset[str]):
        self.model = model
        self.half = elem_type
        self.keep_io_types = keep_io_types
        self.block_list = block_list
        self.opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx", 1))
        self.report = HalfReport(elem_type)
        self.converted: dict[tuple[int, int | None], Value] = {}
        self.replaced: list[tuple[Value, Value]] = []
        self.was_float: set[int] = set()
        self.schemas: dict[str, defs.OpSchema | None] = {}
        self.statistics: dict[int, bool] = {}
        self.half_type_str = f"tensor({onnx.TensorProto.DataType.Name(elem_type).lower()})"

    # -- decisions ------------------------------------------------------------------------------
    def _schema(self, node: Node) -> defs.OpSchema | None:
        if node.domain not in ("", "ai.onnx"):
            return None
        if node.op_type not in self.schemas:
            try:
                self.schemas[node.op_type] = defs.get_schema(node.op_type, self.opset, "")
            except defs.SchemaError:
                self.schemas[node.op_type] = None
        return self.schemas[node.op_type]

    def _computes_in_half(self, node: Node) -> bool:
        if node.op_type in self.block_list or node.subgraphs() or self._schema(node) is None:
            return False
        if self._squares_for_float32_readers(node) or self._continues_float32_statistic(node):
            return False
        # An input of unknown type (say, from another domain's op) may be float32: keep the node as it is.
        return all(v is None or v.elem_type is not None for v in node.inputs)

    def _continues_float32_statistic(self, node: Node) -> bool:
        """Arithmetic on a float32 reduction's result and constants (``Sqrt(ReduceMean(..) + eps)``, the
        ``1 / rms`` of an RMSNorm): computed in float32 too, as the reduction was.

        The values are per-row statistics (cheap), a float16 epsilon of 1e-6 or 1e-5 is a subnormal, and
        onnxruntime's fused SimplifiedLayerNormalization ignores an epsilon constant stored in float16
        (it takes its default 1e-5 instead of a Llama's 1e-6). The Cast to half moves to where the
        statistic meets the activations.
        """
        if node.op_type not in _STATISTIC_ARITHMETIC:
            return False
        cached = self.statistics.get(id(node))
        if cached is not None:
            return cached
        from_statistic = False
        result = True
        for value in node.inputs:
            if value is None or _is_constant(value):
                continue
            producer = value.producer()
            if producer is None:
                result = False
                break
            if (producer.op_type in self.block_list and producer.op_type.startswith("Reduce")) or (
                self._continues_float32_statistic(producer)
            ):
                from_statistic = True
            else:
                result = False
                break
        self.statistics[id(node)] = result = result and from_statistic
        return result

    def _squares_for_float32_readers(self, node: Node) -> bool:
        """A square (``Pow``, or ``Mul(x, x)``) read only by blocked ops, as in a written-out LayerNorm or
        RMSNorm (``ReduceMean(Pow(x, 2))``): computed in float32 with its readers.

        In half precision the square alone leaves float16's range: values below 2**-7 square into
        subnormals (below 2**-12, to zero), values above 256 to infinity. The Cast to float32 that the
        blocked reader needs moves before the square instead of after it, so this costs no Cast.
        """
        if not (node.op_type == "Pow" or (node.op_type == "Mul" and node.inputs[0] is node.inputs[1])):
            return False
        out = node.outputs[0]
        readers = out.uses()
        return bool(readers) and not out.is_graph_output() and all(r.op_type in self.block_list for r, _ in readers)

    def _formal_input(self, schema: defs.OpSchema, index: int) -> defs.OpSchema.FormalParameter:
        return schema.inputs[min(index, len(schema.inputs) - 1)]

    def _accepts_half(self, formal: defs.OpSchema.FormalParameter) -> bool:
        return self.half_type_str in formal.types

    def wants_half(self, node: Node, index: int, computes_in_half: bool | None = None) -> bool:
        """Whether ``node`` should read its float input ``index`` in half precision.

        ``computes_in_half`` is :meth:`_computes_in_half` of ``node`` when the caller knows it (it
        looks at every input, so asking it per input is quadratic in a wide node's inputs).
        """
        if node.op_type == "Cast":
            return True
        if not (self._computes_in_half(node) if computes_in_half is None else computes_in_half):
            return False
        schema = self._schema(node)
        return schema is not None and bool(schema.inputs) and self._accepts_half(self._formal_input(schema, index))

    # -- conversions ----------------------------------------------------------------------------
    def as_type(self, value: Value, elem_type: int, graph: Graph, anchor: Node | None) -> Value:
        """``value`` as ``elem_type``: a shared converted copy or Cast, visible from ``graph``."""
        if value.elem_type == elem_type:
            return value
        cached = self.converted.get((id(value), elem_type))
        if cached is not None and _visible(cached, graph):
            return cached
        producer = value.producer()
        if producer is not None and producer.op_type == "Cast" and producer.inputs[0] is not None:
            source = producer.inputs[0]
            if source.elem_type == elem_type and source.elem_type in (FLOAT, self.half):
                return source
        if value.is_initializer() and isinstance(value.const_value, Tensor):
            new = self._converted_initializer(value, value.const_value, elem_type)
        elif producer is not None and producer.op_type == "Constant" and "value" in producer.attributes:
            new = self._converted_constant(producer, elem_type)
        else:
            new = self._cast(value, elem_type, graph, anchor)
        self.converted[(id(value), elem_type)] = new
        self.converted[(id(new), value.elem_type)] = value
        return new

    def _converted_initializer(self, value: Value, data: Tensor, elem_type: int) -> Value:
        owner = value.graph
        assert owner is not None and value.name is not None  # an initializer is named and in its graph
        tensor = convert_tensor(data, elem_type, value.name, self.report)
        new = owner.make_initializer(tensor, f"{value.name}_{types.dtype_name(elem_type)}")
        self.report.initializers += 1
        self.replaced.append((value, new))
        return new

    def _converted_constant(self, node: Node, elem_type: int) -> Value:
        source, graph = node.outputs[0], node.graph
        assert graph is not None and source.name is not None  # a node being converted is in a graph, outputs named
        tensor = convert_tensor(node.attr("value"), elem_type, source.name, self.report)
        name = graph.fresh_name(f"{node.name or 'Constant'}_half")
        copy = Node("", "Constant", (), {"value": tensor}, name=name)
        graph.insert_after(node, copy)
        new = copy.outputs[0]
        new.type = types.tensor_type(elem_type, tensor.dims)
        self.report.initializers += 1
        self.replaced.append((source, new))
        return new

    def _cast(self, value: Value, elem_type: int, graph: Graph, anchor: Node | None) -> Value:
        name = graph.fresh_name(f"{value.name}_to_{types.dtype_name(elem_type)}")
        cast = Node("", "Cast", (value,), {"to": elem_type}, name=name)
        if anchor is None:
            graph.append(cast)
        else:
            graph.insert_before(anchor, cast)
        out = cast.outputs[0]
        out.name = graph.fresh_name(f"{value.name}_{types.dtype_name(elem_type)}")
        out.type = types.tensor_type(elem_type, value.shape)
        self.report.casts_added += 1
        return out

    # -- graphs ---------------------------------------------------------------------------------
    def run(self) -> HalfReport:
        for graph in self.model.graph.all_graphs():
            values = [*graph.inputs, *graph.initializers.values()]
            values += [o for n in graph for o in n.outputs]
            self.was_float.update(id(v) for v in values if v.elem_type == FLOAT)
        self.graph(self.model.graph, main=True)
        self._drop_replaced()
        return self.report

    def graph(self, graph: Graph, *, main: bool) -> None:
        if main and not self.keep_io_types:
            for value in graph.inputs:
                if value.elem_type == FLOAT and not value.is_initializer():
                    _retype(value, self.half)
        original_outputs = [v.elem_type for v in graph.outputs]
        for node in graph.topological_order():
            if node.op_type == "Cast":
                self._cast_node(node)
            else:
                self._node(node)
        for i, value in enumerate(list(graph.outputs)):
            wanted = original_outputs[i]
            if main and not self.keep_io_types and wanted == FLOAT:
                wanted = self.half
            if value.elem_type != wanted and wanted is not None:
                self._restore_output(graph, i, wanted)

    def _node(self, node: Node) -> None:
        graph = node.graph
        assert graph is not None  # nodes are converted from their graph's topological order
        half_params: set[str] = set()
        schema = self._schema(node)
        reads_float = any(v is not None and id(v) in self.was_float for v in node.inputs)
        computes_in_half = self._computes_in_half(node)
        for i, value in enumerate(node.inputs):
            if value is None or id(value) not in self.was_float:
                continue
            want = self.half if self.wants_half(node, i, computes_in_half) else FLOAT
            if want == self.half and schema is not None:
                half_params.add(self._formal_input(schema, i).type_str)
            if value.elem_type != want:
                node.replace_input_with(i, self.as_type(value, want, graph, node))
        for sub in node.subgraphs():
            self.graph(sub, main=False)
        if schema is None or not self._computes_in_half(node):  # no schema: never computes in half
            if reads_float:
                self.report.kept_float[node.op_type] += 1
            return
        for j, out in enumerate(node.outputs):
            if id(out) in self.was_float:
                formal = schema.outputs[min(j, len(schema.outputs) - 1)]
                if formal.type_str in half_params and self._accepts_half(formal):
                    _retype(out, self.half)

    def _cast_node(self, node: Node) -> None:
        out, source = node.outputs[0], node.inputs[0]
        if node.attr("to") == FLOAT and self._readers_want_half(out):
            node.attributes["to"] = Attribute("to", AttrType.INT, self.half)
            _retype(out, self.half)
            self.report.casts_retyped += 1
        if source is not None and source.elem_type == node.attr("to") and not out.is_graph_output():
            assert node.graph is not None  # nodes are converted from their graph's topological order
            out.replace_all_uses_with(source)
            node.graph.remove(node)
            self.report.casts_removed += 1

    def _readers_want_half(self, value: Value) -> bool:
        readers = value.uses()
        if not readers or value.is_graph_output() and self.keep_io_types:
            return False
        return all(self.wants_half(node, i) for node, i in readers)

    def _restore_output(self, graph: Graph, index: int, elem_type: int) -> None:
        value = graph.outputs[index]
        name = value.name
        # its type was known before conversion (the caller's ``elem_type``) and conversion only retypes
        assert value.elem_type is not None
        value.name = graph.fresh_name(f"{name}_{types.dtype_name(value.elem_type)}")
        cast = Node("", "Cast", (value,), {"to": elem_type}, outputs=[Value(name)])
        graph.append(cast)
        cast.outputs[0].type = types.tensor_type(elem_type, value.shape)
        graph.outputs[index] = cast.outputs[0]
        self.report.casts_added += 1

    def _drop_replaced(self) -> None:
        renames: dict[Graph, list[tuple[Value, str]]] = {}
        input_slots = {id(v): (g, i) for g in self.model.graph.all_graphs() for i, v in enumerate(g.inputs)}
        for old, new in self.replaced:
            if old.has_uses() or old.is_graph_output():
                continue
            if old.is_initializer():
                listed = input_slots.get(id(old))
                if listed is not None:  # IR-3 layout: a weight listed as a graph input takes its new type
                    listing, slot = listed
                    listing.inputs[slot] = new
                graph, name = old.graph, old.name
                assert graph is not None and name is not None  # an initializer is named and in its graph
                graph.remove_initializer(name)
                renames.setdefault(graph, []).append((new, name))
            else:
                producer = old.producer()
                if producer is not None:
                    assert producer.graph is not None  # a replaced Constant node is still in its graph
                    producer.graph.remove(producer)
        for graph, pairs in renames.items():
            graph.rename_initializers(pairs)


_STATISTIC_ARITHMETIC = frozenset({"Add", "Sub", "Mul", "Div", "Sqrt", "Reciprocal"})
"""Ops that :meth:`_HalfConverter._continues_float32_statistic` keeps in float32 after a reduction."""


def _is_constant(value: Value) -> bool:
    producer = value.producer()
    return value.is_initializer() or (producer is not None and producer.op_type == "Constant")


def _visible(value: Value, graph: Graph) -> bool:
    """True when ``value`` belongs to ``graph`` or to a graph enclosing it."""
    owner = value.graph
    g: Graph | None = graph
    while g is not None:
        if g is owner:
            return True
        g = g.parent_graph
    return False


def to_half(
    model: Model,
    elem_type: int = onnx.TensorProto.FLOAT16,
    *,
    keep_io_types: bool = False,
    block_list: frozenset[str] | set[str] = DEFAULT_BLOCK_LIST,
) -> HalfReport:
    """Convert a float32 model's weights and computation to float16 or bfloat16, in place.

    Types must be known on the values (run :func:`onnxgraph.shape_inference.infer_shapes` first).

    Args:
        model: the model.
        elem_type: ``TensorProto.FLOAT16`` or ``TensorProto.BFLOAT16``.
        keep_io_types: keep float32 graph inputs and outputs (Casts at the boundary).
        block_list: op types kept in float32.

    Returns:
        What was converted, added and removed, and warnings for clamped values.
    """
    if elem_type not in HALF_TYPES:
        raise ValueError(f"elem_type must be FLOAT16 or BFLOAT16, not {elem_type}")
    return _HalfConverter(model, elem_type, keep_io_types, frozenset(block_list)).run()
