"""The inputs the debugging commands run a model on: a user's .npz, else seeded random data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from onnxgraph.model import Model
from onnxgraph.runtime.inputs import check_shapes, load_npz, random_inputs, specs_of


def model_feeds(
    model: Model, npz: str | None = None, shapes: Mapping[str, Sequence[int]] | None = None, seed: int = 0
) -> dict[str, np.ndarray]:
    """Feeds for ``model``'s inputs: the arrays of ``npz`` when given, else seeded random data.

    Args:
        model: the model.
        npz: an .npz file whose array names are the input names.
        shapes: sizes for dynamic inputs (``--input-shape``) when generating data.
        seed: seed of the random data.

    Raises:
        InputError: the file does not fit the model, or ``shapes`` names unknown inputs or wrong ranks.
    """
    specs = specs_of(model)
    if npz:
        return load_npz(npz, specs)
    check_shapes(specs, shapes or {})
    return random_inputs(specs, shapes=shapes, seed=seed)
