"""Which value names a rewrite kept under another name, recorded in the written model's metadata.

When a rewrite replaces a value by an equal one (``Value.replace_all_uses_with``: a removed Identity,
a merged duplicate, a fused or folded result), the value lives on under the new value's name.
:func:`recording` collects those replacements while a pipeline runs and, at its end, stores the
mapping *original name -> name in this model* as JSON in ``model.metadata_props[METADATA_KEY]``,
so ``onnxgraph compare`` can match values between the original and the rewritten model.

Mappings compose: a model rewritten twice maps the first original's names to the latest ones.
Only names that no longer exist in the result are listed, and only to names that do.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from onnxgraph.model import Model
    from onnxgraph.value import Value

METADATA_KEY = "onnxgraph.renamed_values"
"""``metadata_props`` key of the JSON object ``{"original value name": "value name in this model"}``."""

_ACTIVE: contextvars.ContextVar[dict[int, tuple[str, Value, Value]] | None] = contextvars.ContextVar(
    "onnxgraph_renames", default=None
)


def record(old: Value, new: Value) -> None:
    """Note that ``old`` lives on as ``new`` (called by ``Value.replace_all_uses_with``); no-op when not recording."""
    active = _ACTIVE.get()
    if active is not None and old is not new and old.name:
        active[id(old)] = (old.name, old, new)


def read(model: Model) -> dict[str, str]:
    """The mapping a model carries (empty when it has none or it is not valid JSON)."""
    try:
        data = json.loads(model.metadata_props.get(METADATA_KEY, "{}"))
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


class Recording:
    """An open :func:`recording` block; set ``model`` when the pipeline returns a new Model object."""

    __slots__ = ("model", "replaced", "original")

    def __init__(self, model: Model) -> None:
        self.model = model
        self.replaced: dict[int, tuple[str, Value, Value]] = {}
        self.original = _names_in(model)
        """Names before the block: values a pass made and replaced on the way are no one's original."""


@contextlib.contextmanager
def recording(model: Model) -> Iterator[Recording]:
    """Record the replacements made inside the block into the metadata of ``model`` on exit.

    Nested blocks are fine: the inner one writes its mapping, the outer one composes with it.
    Nothing is written when the block raises.
    """
    active = Recording(model)
    token = _ACTIVE.set(active.replaced)
    try:
        yield active
    finally:
        _ACTIVE.reset(token)
    _store(active)


def _store(recorded: Recording) -> None:
    model = recorded.model
    present = _names_in(model)
    successor = {key: new for key, (_, _, new) in recorded.replaced.items()}  # old values held: ids stay unique
    mapping: dict[str, str] = {}
    for key, (name, _, new) in recorded.replaced.items():
        final, seen = new, {key}
        while id(final) in successor and id(final) not in seen:
            seen.add(id(final))
            final = successor[id(final)]
        if name in recorded.original and name not in present and final.name and final.name in present:
            mapping[name] = final.name
    previous = read(model)
    if not mapping and not previous:
        return
    composed = {}
    for original, current in previous.items():
        current = mapping.get(current, current)
        if current in present and original not in present:
            composed[original] = current
    composed.update(mapping)
    if composed:
        model.metadata_props[METADATA_KEY] = json.dumps(composed, sort_keys=True)
    else:
        model.metadata_props.pop(METADATA_KEY, None)


def _names_in(model: Model) -> set[str]:
    """Names of the main graph's inputs, initializers and node outputs (subgraphs included)."""
    names: set[str] = set()
    for graph in model.graph.all_graphs():
        names.update(v.name for v in graph.inputs if v.name)
        names.update(graph.initializers)
        for node in graph:
            names.update(v.name for v in node.outputs if v.name)
    return names
