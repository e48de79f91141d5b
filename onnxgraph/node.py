"""Nodes: one operator application with inputs, outputs and attributes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from onnxgraph.attribute import Attribute
from onnxgraph.errors import MalformedGraphError
from onnxgraph.value import Value

if TYPE_CHECKING:
    import onnx

    from onnxgraph.graph import Graph


class Node:
    """An operator application.

    Inputs are read-only from outside; change them with :meth:`replace_input_with`,
    :meth:`set_inputs` or :meth:`Value.replace_all_uses_with`, which keep use-def chains consistent.
    A None input is an omitted optional input.

    Args:
        domain: operator domain ("" for the default ONNX domain).
        op_type: operator name.
        inputs: input values (None for omitted optional inputs).
        attributes: a mapping of names to Python values or :class:`Attribute` objects.
        num_outputs: how many fresh output values to create when ``outputs`` is not given.
        outputs: output values to adopt (they must not have a producer yet).
        name: node name ("" for none).
        overload: function overload identifier.
        doc_string: documentation string.
    """

    __slots__ = (
        "domain",
        "op_type",
        "overload",
        "name",
        "doc_string",
        "metadata_props",
        "attributes",
        "_inputs",
        "_inputs_view",
        "_outputs",
        "graph",
        "_prev",
        "_next",
        "extra",
    )

    def __init__(
        self,
        domain: str,
        op_type: str,
        inputs: Sequence[Value | None] = (),
        attributes: Mapping[str, Any] | Iterable[Attribute] = (),
        *,
        num_outputs: int = 1,
        outputs: Sequence[Value] | None = None,
        name: str = "",
        overload: str = "",
        doc_string: str = "",
    ):
        self.domain = domain
        self.op_type = op_type
        self.overload = overload
        self.name = name
        self.doc_string = doc_string
        self.metadata_props: dict[str, str] = {}
        if not attributes:
            self.attributes: dict[str, Attribute] = {}
        elif isinstance(attributes, Mapping):
            self.attributes = {k: Attribute.infer(k, v) for k, v in attributes.items() if v is not None}
        else:
            self.attributes = {a.name: a for a in attributes}
        self.graph: Graph | None = None
        self._prev: Node | None = None
        self._next: Node | None = None
        self.extra: onnx.NodeProto | None = None
        """Fields of the source NodeProto that the IR does not model, re-emitted on export."""
        self._inputs: list[Value | None] = []
        """The inputs, edited in place (rewiring one input costs O(1) however many the node has)."""
        self._inputs_view: tuple[Value | None, ...] | None = ()
        """The tuple :attr:`inputs` hands out, built on the first read after an edit (None: stale)."""
        if inputs:
            self.set_inputs(inputs)
        if outputs is None:
            outputs = [Value() for _ in range(num_outputs)]
        for i, out in enumerate(outputs):
            if out._producer is not None:
                raise ValueError(f"value {out.name!r} already has a producer")
            out._producer, out._index = self, i
        self._outputs: tuple[Value, ...] = tuple(outputs)

    # -- inputs ---------------------------------------------------------------------------------
    @property
    def inputs(self) -> tuple[Value | None, ...]:
        """The inputs as a tuple (a snapshot: later rewiring does not change it)."""
        view = self._inputs_view
        if view is None:
            view = self._inputs_view = self._snapshot_inputs()
        return view

    def _snapshot_inputs(self) -> tuple[Value | None, ...]:
        """Build the tuple :attr:`inputs` returns; once per read after edits, never per edit (a
        100,000-input Sum whose inputs are rewired one by one is not copied 100,000 times)."""
        return tuple(self._inputs)

    @property
    def outputs(self) -> tuple[Value, ...]:
        return self._outputs

    def input(self, index: int) -> Value:
        """The value at input ``index``, which the op requires (``inputs[index]`` may be None).

        Raises:
            MalformedGraphError: the node has no value at ``index`` (too few inputs, or omitted).
        """
        value = self._inputs[index] if -len(self._inputs) <= index < len(self._inputs) else None
        if value is None:
            label = f"{self.op_type} node {self.name!r}" if self.name else f"{self.op_type} node"
            raise MalformedGraphError(f"{label} has no input {index}, which it requires")
        return value

    def replace_input_with(self, index: int, value: Value | None) -> None:
        """Read ``value`` at input ``index`` instead of the current one (updating both use sets)."""
        old = self._inputs[index]
        if old is not None:
            old._uses.pop((self, index), None)
        if value is not None:
            value._uses[(self, index)] = None
        self._inputs[index] = value
        self._inputs_view = None

    def set_inputs(self, inputs: Sequence[Value | None]) -> None:
        """Replace the whole input list."""
        for i, old in enumerate(self._inputs):
            if old is not None:
                old._uses.pop((self, i), None)
        self._inputs = list(inputs)
        self._inputs_view = None
        for i, value in enumerate(self._inputs):
            if value is not None:
                value._uses[(self, i)] = None

    def detach_inputs(self) -> None:
        """Drop this node's reads of its inputs (used when removing it)."""
        self.set_inputs(())

    def ensure_output(self, index: int) -> Value:
        """Output ``index``, created when the node omits it (an optional output such as MaxPool's
        Indices): missing trailing outputs are appended (those before ``index`` as omitted ""
        outputs) and an omitted output gets a fresh name."""
        outputs = list(self._outputs)
        for i in range(len(outputs), index + 1):
            value = Value("")
            value._producer, value._index = self, i
            outputs.append(value)
        self._outputs = tuple(outputs)
        value = outputs[index]
        if not value.name:
            base = f"{self.op_type.lower()}_out"
            value.name = self.graph.fresh_name(base) if self.graph is not None else base
        return value

    # -- attributes -----------------------------------------------------------------------------
    def attr(self, name: str, default: Any = None) -> Any:
        """The value of attribute ``name``, or ``default`` when absent."""
        a = self.attributes.get(name)
        return default if a is None else a.value

    def subgraphs(self) -> list[Graph]:
        """Graphs held by this node's attributes (If branches, Loop and Scan bodies...)."""
        return [g for a in self.attributes.values() for g in a.subgraphs()]

    def copy(self, inputs: Sequence[Value | None], *, name: str = "") -> Node:
        """A new node, in no graph, applying the same operator to ``inputs``.

        Domain, op type, overload, doc string, metadata, attributes and the fields of the source
        NodeProto the IR does not model (:attr:`extra`, shared: export copies it) are copied; the outputs are new
        values of the same types, unnamed (they get fresh names when the node is inserted), except
        that an omitted optional output (named ``""``) stays omitted.

        Attributes are new :class:`Attribute` objects, so the copy's attributes can be replaced or
        edited without touching the original's:

        * subgraphs (If branches, Loop and Scan bodies) are deep-copied with :meth:`Graph.copy`:
          their nodes and values are the copy's own (under fresh names of this node's model), and
          the values they read from enclosing scopes are read by the copy too;
        * lists are copied;
        * tensors, sparse tensors and TypeProtos are shared: the IR treats them as immutable (a pass
          assigns a new one instead of editing it).

        Args:
            inputs: the copy's inputs (None for an omitted optional input).
            name: the copy's node name ("" for none).
        """
        clone = Node(
            self.domain,
            self.op_type,
            inputs,
            [_copy_attribute(a) for a in self.attributes.values()],
            num_outputs=len(self._outputs),
            name=name,
            overload=self.overload,
            doc_string=self.doc_string,
        )
        clone.metadata_props = dict(self.metadata_props)
        clone.extra = self.extra
        for old, new in zip(self._outputs, clone.outputs):
            new.type = old.type
            if old.name == "":
                new.name = ""
        return clone

    def implicit_inputs(self) -> list[Value]:
        """Outer-scope values read inside this node's subgraphs (at any depth), in first-use order."""
        found: dict[Value, None] = {}
        for g in self.subgraphs():
            for n in g.all_nodes():
                for v in n.inputs:
                    if v is not None and not _defined_within(v, self):
                        found[v] = None
            for v in g.outputs:
                if not _defined_within(v, self):
                    found[v] = None
        return list(found)

    def __repr__(self) -> str:
        ins = ", ".join("" if v is None else str(v.name) for v in self._inputs)
        outs = ", ".join(str(v.name) for v in self._outputs)
        op = f"{self.domain}::{self.op_type}" if self.domain else self.op_type
        return f"Node({self.name!r}: {outs} = {op}({ins}))"


def _copy_attribute(attribute: Attribute) -> Attribute:
    """A new Attribute: subgraphs deep-copied, lists copied, immutable values shared (see :meth:`Node.copy`)."""
    value = attribute.value
    if attribute.subgraphs():
        value = value.copy() if not isinstance(value, list | tuple) else [g.copy() for g in value]
    elif isinstance(value, list | tuple):
        value = list(value)
    return Attribute(
        attribute.name,
        attribute.type,
        value,
        ref_attr_name=attribute.ref_attr_name,
        doc_string=attribute.doc_string,
    )


def _defined_within(value: Value, node: Node) -> bool:
    """True when ``value`` is defined inside one of ``node``'s subgraphs (at any depth)."""
    graph = value.graph
    while graph is not None:
        if graph.parent_node is node:
            return True
        graph = graph.parent_graph
    return False
