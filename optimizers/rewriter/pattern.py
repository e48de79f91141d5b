"""Patterns: a small DAG of operator nodes and variables, written with :class:`PatternBuilder`.

>>> def pattern(op, x, w, b):
...     return op.Add(op.MatMul(x, w), b)

Calling the pattern function with a :class:`PatternBuilder` and one :class:`Var` per parameter
records the DAG; the matcher then looks for it in a graph. Keyword arguments of an op call are
attributes the matched node must carry with exactly that value (attributes not named are not
checked). Reserved keywords: ``_domain``, ``_outputs`` (number of outputs; a tuple is returned when
above 1), ``_bind`` (bind the matched node under this name), ``_commute`` (match the two inputs of
a binary op in either order) and ``_allow_other_uses`` (the node's outputs may also be read outside
the match; the node is then kept after the rewrite). A plain number as an input matches a constant
whose elements all equal it. A pattern function parameter with a default of None is an optional
variable: it matches an omitted optional input too. Outputs of a matched node that the pattern
does not name must be unused.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class ValuePattern:
    """Something that matches one value of the graph."""


@dataclass(eq=False)
class Var(ValuePattern):
    """A pattern variable: matches any value; all its occurrences must match the same value.

    An optional variable also matches an omitted input (and is then bound to None).
    """

    name: str
    optional: bool = False


@dataclass(eq=False)
class ConstantPattern(ValuePattern):
    """Matches a constant (initializer or Constant output) whose elements all equal ``value``."""

    value: float


@dataclass(eq=False)
class NodeOutput(ValuePattern):
    """Output ``index`` of a node pattern."""

    node: NodePattern
    index: int


@dataclass(eq=False)
class NodePattern:
    """One operator node of a pattern."""

    domain: str
    op_type: str
    inputs: list[ValuePattern | None]
    attributes: dict[str, Any]
    num_outputs: int = 1
    bind: str | None = None
    commute: bool = False
    allow_other_uses: bool = False
    outputs: list[NodeOutput] = field(default_factory=list)


class PatternBuilder:
    """The ``op`` a pattern function receives: ``op.Conv(x, w)`` records a :class:`NodePattern`."""

    def op(self, op_type: str, *inputs: ValuePattern | float | None, **kwargs: Any):
        """``op.op("Conv", x, w)`` is ``op.Conv(x, w)``, for op types chosen at run time."""
        return getattr(self, op_type)(*inputs, **kwargs)

    def __getattr__(self, op_type: str) -> Callable[..., Any]:
        if op_type.startswith("_"):
            raise AttributeError(op_type)

        def make(
            *inputs: ValuePattern | float | None,
            _domain: str = "",
            _outputs: int = 1,
            _bind: str | None = None,
            _commute: bool = False,
            _allow_other_uses: bool = False,
            **attributes: Any,
        ):
            node = NodePattern(
                _domain,
                op_type,
                [_as_value_pattern(v) for v in inputs],
                attributes,
                _outputs,
                _bind,
                _commute,
                _allow_other_uses,
            )
            node.outputs = [NodeOutput(node, i) for i in range(_outputs)]
            return node.outputs[0] if _outputs == 1 else tuple(node.outputs)

        return make


def _as_value_pattern(value: ValuePattern | float | None) -> ValuePattern | None:
    if value is None or isinstance(value, ValuePattern):
        return value
    if isinstance(value, int | float):
        return ConstantPattern(float(value))
    raise TypeError(f"a pattern input must be a pattern value or a number, not {value!r}")


@dataclass(eq=False)
class Pattern:
    """A recorded pattern: its root node (whose outputs the rewrite replaces) and its variables."""

    root: NodePattern
    variables: list[Var]

    @classmethod
    def from_function(cls, function: Callable[..., Any]) -> Pattern:
        """Record ``function(op, *vars)``; it must return the output(s) of one node pattern.

        Parameters after ``op`` become variables; those with a default of None are optional.
        """
        parameters = list(inspect.signature(function).parameters.values())[1:]
        variables = [Var(p.name, optional=p.default is None) for p in parameters]
        result = function(PatternBuilder(), *variables)
        outputs = result if isinstance(result, tuple) else (result,)
        if not outputs or not all(isinstance(o, NodeOutput) for o in outputs):
            raise TypeError(f"pattern {function.__name__} must return node outputs")
        root = outputs[0].node
        if any(o.node is not root for o in outputs) or len(outputs) != root.num_outputs:
            raise TypeError(f"pattern {function.__name__} must return all outputs of one node")
        return cls(root, variables)

    def nodes(self) -> list[NodePattern]:
        """The node patterns, root first, each once."""
        seen: dict[int, NodePattern] = {}
        stack = [self.root]
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen[id(node)] = node
            stack.extend(v.node for v in node.inputs if isinstance(v, NodeOutput))
        return list(seen.values())
