"""Changed-subgraph verification: the nodes of an optimized model that differ from the original, grouped
into regions, and one model that holds every region, to run on the original's own intermediate values.

A main-graph node of the candidate is *unchanged* when the original has a node with the same domain, op
type, overload and attributes, writing the same output names, whose inputs are the same names in the
same slots; an initializer input also needs the same data (an unchanged tensor object, an unchanged span
of the same file, or equal bytes), a graph input must have been a graph input. Every other node is
*changed*. An input may also differ in name: a constant with the same data (merged duplicates), or a value that
a pass recorded as standing for the original's (``Value.replace_all_uses_with``, read back through
:func:`onnxgraph.renames.read`: a folded constant, a merged duplicate). Such a claim is an *alias*,
compared on the run like a region's output: the rename record says where to look, never what is true.

Changed nodes connected through the values they pass each other form a region. A region's inputs are
the values its nodes read from unchanged nodes and graph inputs (fed with the original's values of
those names); its outputs are the values its nodes write that unchanged nodes read or that are graph
outputs (compared with the original's values of the same names). Every region goes into one model, so
one onnxruntime session runs them all.

Undecidable here (:class:`Undecidable`, the caller falls back to running the whole model): a changed
node holding a subgraph, a model with random ops or local functions, changed opset imports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx

from onnxgraph import renames, types
from onnxgraph.attribute import Attribute
from onnxgraph.errors import Undecidable
from onnxgraph.graph import Graph
from onnxgraph.model import Model
from onnxgraph.node import Node
from onnxgraph.optimizers.utils import RANDOM_OPS
from onnxgraph.tensor import Tensor
from onnxgraph.value import Value

_GRAPH_TYPES = frozenset({onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS})


@dataclass(frozen=True)
class _Signature:
    """What must stay equal for a node to be unchanged (inputs compared apart, they need more than names)."""

    domain: str
    op_type: str
    overload: str
    attributes: tuple
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class Recipe:
    """One node of the original, kept to recompute its output from values at hand (its inputs by name)."""

    domain: str
    op_type: str
    overload: str
    attributes: list[Attribute]
    inputs: tuple[str | None, ...]


class Snapshot:
    """The original's main graph as it was before any pass ran, kept by name (no arrays are copied).

    Args:
        model: the original model, about to be rewritten in place.
    """

    def __init__(self, model: Model) -> None:
        graph = model.graph
        self.opset_imports = dict(model.opset_imports)
        self.decidable = "" if not model.functions else "the model has local functions"
        if not self.decidable and any(n.op_type in RANDOM_OPS for n in model.all_nodes()):
            self.decidable = "the model has random ops"
        self.graph_inputs = {v.name for v in graph.inputs if v.name and not v.is_initializer()}
        self.constants: dict[str, Tensor] = {
            name: t for name, v in graph.initializers.items() if isinstance(t := v.const_value, Tensor)
        }
        self.nodes: dict[str, tuple[_Signature | None, tuple[str | None, ...]]] = {}
        """Output name -> (signature of its producer, None when it has a subgraph; the producer's input names)."""
        self.recipes: dict[str, Recipe] = {}
        """Output name -> how the original computed it (single-output nodes without subgraphs)."""
        for node in graph:
            entry = (_signature(node), tuple(v.name if v is not None else None for v in node.inputs))
            for value in node.outputs:
                if value.name:
                    self.nodes[value.name] = entry
            if len(node.outputs) == 1 and node.outputs[0].name and entry[0] is not None:
                attributes = [
                    Attribute(a.name, a.type, list(a.value) if isinstance(a.value, list) else a.value)
                    for a in node.attributes.values()
                ]  # copies: a pass editing a node's attribute lists leaves the original's recipe as it was
                self.recipes[node.outputs[0].name] = Recipe(
                    node.domain, node.op_type, node.overload, attributes, entry[1]
                )
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.attributes) == 1:
                attribute = next(iter(node.attributes.values()))
                if attribute.name == "value" and isinstance(attribute.value, Tensor) and node.outputs[0].name:
                    self.constants[node.outputs[0].name] = attribute.value

    def knows(self, name: str) -> bool:
        """Whether the original has a value of that name (graph input, initializer or node output)."""
        return name in self.nodes or name in self.graph_inputs or name in self.constants


@dataclass
class ChangeSet:
    """What of a candidate differs from the original.

    Attributes:
        nodes: the changed main-graph nodes, in topological order.
        regions: how many connected regions they form.
        inputs: names of the values the regions read from unchanged nodes (fed with the original's values).
        outputs: names of the values the regions write that unchanged nodes or the graph outputs read.
        aliases: original value name -> the candidate value that stands for it under another name or as a
            constant (a folded value, a merged duplicate); each pair is compared on the run.
        partners: region output -> the original value it is compared with (its own name, or the
            original name it stands for).
        derived: original values (partners of region outputs, originals of aliases) recomputed in the
            region session by the original's own nodes from values it is fed anyway and constants
            (``Add(x, 0)`` -> ``x``: only ``x`` is needed), by original name, each with its chain of
            original nodes in order; the others need the original's value itself.
        constants: the original's constants the derived recipes read, by name.
        leaves: shapes (original Shape/Size outputs) the derived recipes read, kept from the original's run.
        passthrough: graph outputs the candidate neither computes in a region nor in unchanged nodes
            (a graph input or an initializer given as output): compared directly.
        graph_outputs: the graph outputs among ``outputs``.
        handed: the names among ``outputs`` that unchanged nodes read (which must match bit for bit, graph
            outputs among them too).
        new_weights: floating-point constants of at least :data:`NEW_WEIGHTS_MIN` elements that changed
            nodes read and the original does not have (weights folded with a BatchNormalization, say):
            their products round differently, so such regions rarely match bit for bit.
        region_of: node -> region index, by ``id(node)``.
    """

    nodes: list[Node] = field(default_factory=list)
    regions: int = 0
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    aliases: dict[str, Value] = field(default_factory=dict)
    partners: dict[str, str] = field(default_factory=dict)
    derived: dict[str, list[tuple[str, Recipe]]] = field(default_factory=dict)
    constants: dict[str, Tensor] = field(default_factory=dict)
    leaves: set[str] = field(default_factory=set)
    passthrough: list[str] = field(default_factory=list)
    graph_outputs: list[str] = field(default_factory=list)
    handed: set[str] = field(default_factory=set)
    new_weights: list[str] = field(default_factory=list)
    region_of: dict[int, int] = field(default_factory=dict)

    @property
    def needed(self) -> list[str]:
        """The original's values a check of this change set reads (inputs, outputs, aliases, passthrough)."""
        computed = [v.name for v in self.aliases.values() if not v.is_initializer() and v.name not in self.partners]
        kept = [n for n in [*self.partners.values(), *self.aliases] if n not in self.derived]
        names = [*self.inputs, *kept, *computed, *sorted(self.leaves), *self.passthrough]
        return list(dict.fromkeys(n for n in names if n))


def changes(snapshot: Snapshot, candidate: Model) -> ChangeSet:
    """The changed nodes of ``candidate`` against the original ``snapshot``, grouped into regions.

    Raises:
        Undecidable: the candidate cannot be checked region by region.
    """
    if snapshot.decidable:
        raise Undecidable(snapshot.decidable)
    if candidate.functions:
        raise Undecidable("the candidate has local functions")
    if dict(candidate.opset_imports) != snapshot.opset_imports:
        raise Undecidable("the opset imports changed")
    graph = candidate.graph
    order = graph.topological_order()
    found = ChangeSet()
    aliases: dict[str, Value] = {}
    renamed = renames.read(candidate)
    changed: set[int] = set()
    for node in order:
        if not _unchanged(node, snapshot, renamed, aliases):
            if node.subgraphs():
                raise Undecidable(f"a changed node holds a subgraph ({node.op_type} '{node.name}')")
            changed.add(id(node))
            found.nodes.append(node)
    found.aliases = aliases
    _group(found, changed)
    inputs: dict[str, None] = {}
    outputs: dict[str, None] = {}
    for node in found.nodes:
        for value in node.inputs:
            if value is not None and value.is_initializer() and _new_weights(value, snapshot):
                found.new_weights.append(value.name or "")
            if value is None or value.is_initializer():
                continue
            producer = value.producer()
            if producer is None or id(producer) not in changed:
                if not value.name or not snapshot.knows(value.name):
                    raise Undecidable(f"a changed node reads '{value.name}', which the original does not have")
                inputs[value.name] = None
        for value in node.outputs:
            read_outside = any(id(user) not in changed for user, _ in value.uses())
            if value.name and (read_outside or value.is_graph_output()):
                outputs[value.name] = None
            if value.name and read_outside:
                found.handed.add(value.name)
    for value in graph.outputs:
        producer = value.producer()
        if producer is None and value.name:
            found.passthrough.append(value.name)
        elif value.name in outputs:
            found.graph_outputs.append(value.name)
    found.inputs, found.outputs = list(inputs), list(outputs)
    standing_for = {v.name: original for original, v in aliases.items()}
    for name in found.outputs:
        partner = name if snapshot.knows(name) else standing_for.get(name)
        if partner is None:
            raise Undecidable(f"the original has no value that '{name}' stands for")
        found.partners[name] = partner
    _derive(found, snapshot)
    return found


def _derive(found: ChangeSet, snapshot: Snapshot) -> None:
    """Pick the original values to recompute in the region session instead of keeping them: a region
    output's partner or an alias's original, when the original computed it from values the session is
    fed anyway (the regions' inputs, the value standing for the alias) and constants, in a chain of at
    most :data:`_CHAIN` original nodes (a Reshape and its shape arithmetic, ``Add(x, 0)``, an exporter's
    ``Identity`` of a shared weight)."""
    fed = set(found.inputs)
    targets = [(found.partners[name], fed) for name in found.outputs]
    for name, value in found.aliases.items():
        producer = value.producer()
        if producer is None or id(producer) not in found.region_of:
            targets.append((name, fed | ({value.name or ""} if producer is not None else set())))
    for name, available in targets:
        leaves: set[str] = set()
        chain = _chain(name, snapshot, available, _CHAIN, leaves)
        if chain is not None:
            found.derived[name] = chain
            found.leaves.update(leaves)
    for chain in found.derived.values():
        reads = {n for _, recipe in chain for n in recipe.inputs if n}
        found.constants.update((n, snapshot.constants[n]) for n in reads if n in snapshot.constants)


_CHAIN = 16
"""Most original nodes recomputed for one value."""


def _chain(
    name: str, snapshot: Snapshot, fed: set[str], budget: int, leaves: set[str]
) -> list[tuple[str, Recipe]] | None:
    """The original nodes computing ``name`` from constants, ``fed`` values and shapes (the outputs of
    the original's Shape and Size nodes, a few integers each, added to ``leaves`` to keep), in order;
    None when there are none or more than ``budget``."""
    recipe = snapshot.recipes.get(name)
    if recipe is None or budget <= 0:
        return None
    chain: list[tuple[str, Recipe]] = []
    for read in recipe.inputs:
        if not read or read in fed or read in snapshot.constants:
            continue
        shape = snapshot.recipes.get(read)
        if shape is not None and shape.domain in ("", "ai.onnx") and shape.op_type in _SHAPE_OPS:
            leaves.add(read)
            continue
        inner = _chain(read, snapshot, fed, budget - 1 - len(chain), leaves)
        if inner is None:
            return None
        chain += [step for step in inner if step not in chain]
    return [*chain, (name, recipe)] if len(chain) < budget else None


_SHAPE_OPS = frozenset({"Shape", "Size"})


NEW_WEIGHTS_MIN = 1024
"""Elements from which a new floating-point constant counts as new weights (:attr:`ChangeSet.new_weights`)."""


def _new_weights(value: Value, snapshot: Snapshot) -> bool:
    tensor = value.const_value
    if not isinstance(tensor, Tensor) or tensor.size < NEW_WEIGHTS_MIN or not types.is_known(tensor.elem_type):
        return False
    if np.dtype(types.np_dtype(tensor.elem_type)).kind != "f":
        return False
    original = snapshot.constants.get(value.name or "")
    return original is None or not same_tensor(tensor, original)


def _group(found: ChangeSet, changed: set[int]) -> None:
    """Number the connected regions of the changed nodes (union-find over the values they share)."""
    parent = {key: key for key in changed}

    def root(key: int) -> int:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for node in found.nodes:
        for value in node.inputs:
            producer = value.producer() if value is not None else None
            if producer is not None and id(producer) in changed:
                parent[root(id(producer))] = root(id(node))
    roots: dict[int, int] = {}
    for node in found.nodes:
        found.region_of[id(node)] = roots.setdefault(root(id(node)), len(roots))
    found.regions = len(roots)


def _unchanged(node: Node, snapshot: Snapshot, renamed: Mapping[str, str], aliases: dict[str, Value]) -> bool:
    """Whether ``node`` computes what the original's node of the same outputs computes (see the module)."""
    names = [v.name for v in node.outputs]
    first = next((n for n in names if n), None)
    if first is None or first not in snapshot.nodes:
        return False
    signature, original_inputs = snapshot.nodes[first]
    if signature is None or signature != _signature(node) or len(original_inputs) != len(node.inputs):
        return False
    for value, name in zip(node.inputs, original_inputs, strict=True):
        if value is None or name is None:
            if value is not name:
                return False
        elif not _same_input(value, name, snapshot, renamed, aliases):
            return False
    return True


def _same_input(
    value: Value, name: str, snapshot: Snapshot, renamed: Mapping[str, str], aliases: dict[str, Value]
) -> bool:
    """Whether candidate input ``value`` holds what the original's input ``name`` held: the same name
    (a constant with the same data, a graph input still one), equal constants under another name (merged
    duplicates), or a value a pass recorded as standing for ``name`` (:mod:`onnxgraph.renames`), which
    is then an alias to compare on the run."""
    original = snapshot.constants.get(name)
    if value.is_initializer():
        if original is not None:
            return same_tensor(value.const_value, original)
    elif value.producer() is None:
        return value.name == name and name in snapshot.graph_inputs
    elif value.name == name:
        return original is None
    if value.name == name or renamed.get(name) == value.name:
        aliases[name] = value
        return True
    return False


def _signature(node: Node) -> _Signature | None:
    attributes = []
    for name in sorted(node.attributes):
        key = _attribute_key(node.attributes[name])
        if key is None:
            return None
        attributes.append(key)
    outputs = tuple(v.name or "" for v in node.outputs)
    return _Signature(node.domain or "", node.op_type, node.overload, tuple(attributes), outputs)


def _attribute_key(attribute: Attribute) -> tuple | None:
    """A hashable stand-in for an attribute's value; None for subgraphs (never compared: always changed)."""
    value = attribute.value
    if attribute.type in _GRAPH_TYPES:
        return None
    if isinstance(value, Tensor):
        value = _tensor_key(value)
    elif isinstance(value, list):
        value = tuple(_tensor_key(v) if isinstance(v, Tensor) else v for v in value)
    elif hasattr(value, "SerializeToString"):
        value = value.SerializeToString(deterministic=True)
    elif not isinstance(value, int | float | str | bytes | type(None)):
        value = repr(value)
    return (attribute.name, attribute.type, attribute.ref_attr_name, value)


def _tensor_key(tensor: Tensor) -> tuple:
    if tensor.elem_type == onnx.TensorProto.STRING:
        return (tensor.elem_type, tuple(tensor.dims), tensor.numpy().tobytes())
    return (tensor.elem_type, tuple(tensor.dims), bytes(tensor.raw_bytes()))


def same_tensor(a: object, b: Tensor) -> bool:
    """Whether ``a`` is a tensor holding the same type, shape and bytes as ``b`` (:meth:`Tensor.same_contents`)."""
    return isinstance(a, Tensor) and a.same_contents(b)


def region_model(candidate: Model, found: ChangeSet, feeds: Mapping[str, np.ndarray]) -> Model:
    """One model running every region of ``found``: its inputs are the regions' inputs (typed after
    ``feeds``, the original's values of those names), its outputs the regions' outputs.

    The candidate is not changed: nodes are copied (:meth:`Node.copy`), initializers share their tensors.
    """
    graph = Graph("regions")
    model = Model(graph, ir_version=candidate.ir_version, opset_imports=candidate.opset_imports)
    mapped: dict[int, Value] = {}
    for name in found.inputs:
        array = feeds[name]
        value = Value(name, types.tensor_type(types.elem_type_of(array.dtype), tuple(array.shape)))
        graph.add_input(value)
    by_name = {v.name or "": v for v in graph.inputs}
    for node in found.nodes:
        copy = node.copy([_mapped(v, graph, mapped, by_name) for v in node.inputs], name=node.name)
        for old, new in zip(node.outputs, copy.outputs, strict=True):
            new.name = old.name  # compared with the original's values of these names
        graph.append(copy)
        mapped.update((id(old), new) for old, new in zip(node.outputs, copy.outputs, strict=True))
    produced = {v.name: v for node in graph for v in node.outputs}
    graph.outputs.extend(produced[name] for name in found.outputs)
    _add_derived(graph, found, feeds, by_name)
    return model


DERIVED_PREFIX = "onnxgraph.original:"
"""Prefix of the region model's outputs that recompute an original value (:attr:`ChangeSet.derived`)."""


def _add_derived(graph: Graph, found: ChangeSet, feeds: Mapping[str, np.ndarray], by_name: dict[str, Value]) -> None:
    """Append the derived chains, reading the original's constants and the values standing for them."""
    constants: dict[str, Value] = {}

    def read(name: str, computed: dict[str, Value]) -> Value:
        if name in computed:
            return computed[name]
        if name in found.constants:
            if name not in constants:
                tensor = found.constants[name]
                constant = Value(graph.fresh_name("onnxgraph.constant"), const_value=tensor)
                constant.type = types.tensor_type(tensor.elem_type, tuple(tensor.dims))
                constants[name] = graph.add_initializer(constant)
            return constants[name]
        if name not in by_name:
            array = feeds[name]
            value_type = types.tensor_type(types.elem_type_of(array.dtype), tuple(array.shape))
            by_name[name] = graph.add_input(Value(name, value_type))
        return by_name[name]

    for name, chain in found.derived.items():
        computed: dict[str, Value] = {}
        for step, recipe in chain:
            inputs = [read(n, computed) if n else None for n in recipe.inputs]
            output = Value(DERIVED_PREFIX + name if step == name else graph.fresh_name("onnxgraph.step"))
            node = Node(
                recipe.domain, recipe.op_type, inputs, recipe.attributes, outputs=[output], overload=recipe.overload
            )
            graph.append(node)
            computed[step] = output
        graph.outputs.append(computed[name])


def _mapped(value: Value | None, graph: Graph, mapped: dict[int, Value], by_name: dict[str, Value]) -> Value | None:
    """The region model's value for the candidate's ``value`` (initializers shared on first use)."""
    if value is None:
        return None
    if id(value) in mapped:
        return mapped[id(value)]
    if value.is_initializer():
        copy = Value(value.name, value.type, const_value=value.const_value)
        graph.add_initializer(copy)
        mapped[id(value)] = copy
        return copy
    return by_name[value.name or ""]
