"""The gradient-rule registry: one small function per (domain, op_type).

A rule has the signature ``rule(b, node, out_grads) -> in_grads``: ``b`` is a
:class:`~onnxgraph.autodiff.builder.GradBuilder`, ``out_grads`` holds one upstream gradient per node
output (``None`` meaning zero) and the result holds one gradient per node input (``None`` where the
input gets none). Rules never build zero tensors and never undo broadcasting themselves: an input
listed in ``broadcast`` may receive a gradient in the shape of output 0, and the driver reduces it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from onnxgraph.autodiff.builder import GradBuilder
    from onnxgraph.node import Node
    from onnxgraph.value import Value


class RuleFn(Protocol):
    """The signature every gradient rule has (see the module docstring); positional, so a rule may name
    its parameters as it likes."""

    def __call__(self, b: GradBuilder, node: Node, out_grads: Sequence[Value | None], /) -> Sequence[Value | None]:
        """Return one gradient per input of ``node`` (then per implicit input for ``implicit`` rules)."""
        ...


_Rule = TypeVar("_Rule", bound=RuleFn)

ALL = "all"
"""``differentiable`` / ``broadcast`` value meaning every input."""


@dataclass(frozen=True)
class GradRule:
    """A registered rule and what the driver needs to know about its op.

    Attributes:
        fn: the rule function (None for ops whose outputs never carry gradient: Shape, ArgMax...).
        differentiable: input positions that can receive a gradient (``ALL``: every one); the others
            (indices, shapes, axes) stop the gradient.
        broadcast: input positions whose gradient the rule returns in output 0's shape.
        family: the rules module that defines it (for the coverage table).
        outputs: output positions whose upstream gradient the rule uses (``ALL``: every one); a
            gradient arriving at another output is refused rather than dropped.
        implicit: the op's subgraphs read outer-scope values that can receive gradient; the rule
            returns their gradients after the inputs', in ``node.implicit_inputs()`` order.
    """

    fn: RuleFn | None
    differentiable: tuple[int, ...] | str
    broadcast: tuple[int, ...] | str
    family: str
    outputs: tuple[int, ...] | str = ALL
    implicit: bool = False

    def is_differentiable(self, index: int) -> bool:
        return self.differentiable == ALL or index in self.differentiable

    def broadcasts(self, index: int) -> bool:
        return self.broadcast == ALL or index in self.broadcast


RULES: dict[tuple[str, str], GradRule] = {}
"""(domain, op_type) -> rule; filled when :mod:`onnxgraph.autodiff.rules` is imported."""


def register(
    *op_types: str,
    differentiable: Sequence[int] | str = ALL,
    broadcast: Sequence[int] | str = (),
    outputs: Sequence[int] | str = ALL,
    implicit: bool = False,
    domain: str = "",
) -> Callable[[_Rule], _Rule]:
    """Decorator: register ``fn`` as the gradient rule of each of ``op_types``.

    Raises:
        ValueError: one of the ops already has a rule (delete ``RULES[key]`` first to replace it).
    """

    def decorate(fn: _Rule) -> _Rule:
        family = fn.__module__.rsplit(".", 1)[-1]
        for op_type in op_types:
            rule = GradRule(
                fn, _positions(differentiable), _positions(broadcast), family, _positions(outputs), implicit
            )
            _add(domain, op_type, rule)
        return fn

    return decorate


def register_stop(*op_types: str, family: str, domain: str = "") -> None:
    """Declare ops whose outputs carry no gradient (shapes, indices, comparisons).

    Raises:
        ValueError: one of the ops already has a rule.
    """
    for op_type in op_types:
        _add(domain, op_type, GradRule(None, (), (), family))


def _key(domain: str, op_type: str) -> tuple[str, str]:
    """The registry key: "ai.onnx" and "" both name the default domain."""
    return ("" if domain == "ai.onnx" else domain, op_type)


def _add(domain: str, op_type: str, rule: GradRule) -> None:
    key = _key(domain, op_type)
    if key in RULES:
        where = f"{key[0]}::{op_type}" if key[0] else op_type
        raise ValueError(
            f"a gradient rule for {where} is already registered (family {RULES[key].family!r}); "
            "delete RULES[key] first to replace it"
        )
    RULES[key] = rule


def _positions(spec: Sequence[int] | str) -> tuple[int, ...] | str:
    if isinstance(spec, str):
        if spec != ALL:
            raise ValueError(f"positions are a sequence of ints or {ALL!r}, not {spec!r}")
        return spec
    return tuple(spec)


def lookup(domain: str, op_type: str) -> GradRule | None:
    """The rule of an op, or None when there is none."""
    from onnxgraph.autodiff import rules  # noqa: F401  (fills RULES)

    return RULES.get(_key(domain, op_type))
