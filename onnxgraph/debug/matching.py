"""Pairing the values of two models: by name, else through the renames ``optimize``/``convert`` recorded."""

from __future__ import annotations

from dataclasses import dataclass

from onnxgraph.debug.exposure import Intermediate


@dataclass(frozen=True)
class Match:
    """A value of model A and the value of model B that holds the same quantity."""

    a: Intermediate
    b: Intermediate


def match_values(
    a_values: list[Intermediate],
    b_values: list[Intermediate],
    a_renames: dict[str, str] | None = None,
    b_renames: dict[str, str] | None = None,
) -> list[Match]:
    """Pair A's values with B's, in A's order.

    A value pairs with B's value of the same name; failing that, with the name a recorded rename leads
    to: B's renames (A is B's original), A's renames backwards (B is A's original), or both (A and B
    were both rewritten from one original).

    Args:
        a_values: A's intermediate values in topological order.
        b_values: B's intermediate values.
        a_renames: A's ``{original name: name in A}`` (:func:`onnxgraph.renames.read`).
        b_renames: B's ``{original name: name in B}``.

    Returns:
        The pairs; values without a partner are left out.
    """
    in_b = {v.name: v for v in b_values}
    b_map = b_renames or {}
    originals_of_a: dict[str, list[str]] = {}
    for original, current in (a_renames or {}).items():
        originals_of_a.setdefault(current, []).append(original)
    pairs = []
    for value in a_values:
        originals = originals_of_a.get(value.name, [])
        for candidate in (value.name, b_map.get(value.name), *originals, *(b_map.get(o) for o in originals)):
            if candidate is not None and candidate in in_b:
                pairs.append(Match(value, in_b[candidate]))
                break
    return pairs
