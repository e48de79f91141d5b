"""Input samples for quantization: calibration data from an ``.npz`` file, or seeded random inputs.

The same samples calibrate static quantization and feed the accuracy report, so the report measures
the quantized model on the data it was calibrated with.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from onnxgraph.runtime.inputs import InputError, InputSpec, load_npz, random_inputs

Sample = dict[str, np.ndarray]
"""One set of feeds: input name -> array, run as one onnxruntime call."""


def load_samples(path: str | os.PathLike, specs: Sequence[InputSpec]) -> list[Sample]:
    """Split an ``.npz`` file with one array per model input into samples.

    An array with one axis more than its input is a stack of samples (``array[i]`` is fed as is).
    An array of the input's own rank is split along axis 0 into batches of the input's fixed batch
    size, or of 1 when the first dimension is dynamic. Every input must give the same number of
    samples.

    Raises:
        InputError: the file is unreadable, names or dtypes do not fit the model (see
            :func:`~onnxgraph.runtime.inputs.load_npz`), a rank fits neither layout, or the inputs
            give different numbers of samples.
    """
    path = os.fspath(path)
    arrays = load_npz(path, specs)
    per_input: dict[str, list[np.ndarray]] = {}
    for spec in specs:
        per_input[spec.name] = _split(path, spec, arrays[spec.name])
    counts = {name: len(parts) for name, parts in per_input.items()}
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"'{name}' {count}" for name, count in counts.items())
        raise InputError(f"{path}: the inputs give different numbers of samples ({detail})")
    total = next(iter(counts.values()), 0)
    if total == 0:
        raise InputError(f"{path}: holds no samples")
    return [{name: parts[i] for name, parts in per_input.items()} for i in range(total)]


def _split(path: str, spec: InputSpec, array: np.ndarray) -> list[np.ndarray]:
    rank = None if spec.shape is None else len(spec.shape)
    if rank is not None and array.ndim == rank + 1:
        return list(array)
    if rank is not None and array.ndim != rank:
        raise InputError(
            f"{path}: input '{spec.name}' has rank {rank}; its array must have rank {rank} (split along axis 0)"
            f" or {rank + 1} (a stack of samples), not {array.ndim}"
        )
    if array.ndim == 0:
        raise InputError(f"{path}: input '{spec.name}' is a scalar; give a stack of samples (rank 1)")
    first = spec.shape[0] if spec.shape else None
    batch = first if isinstance(first, int) and first > 0 else 1
    if array.shape[0] % batch:
        raise InputError(
            f"{path}: input '{spec.name}' has {array.shape[0]} rows, not a multiple of its batch size {batch}"
        )
    return [array[i : i + batch] for i in range(0, array.shape[0], batch)]


def seeded_samples(
    specs: Sequence[InputSpec], count: int, *, shapes: Mapping[str, Sequence[int]] | None = None, seed: int = 0
) -> list[Sample]:
    """``count`` samples of seeded random inputs (seeds ``seed``, ``seed + 1``, ...)."""
    return [random_inputs(specs, shapes=shapes, seed=seed + i) for i in range(count)]


class SampleReader:
    """onnxruntime's calibration data reader over a list of samples (restartable with :meth:`rewind`)."""

    def __init__(self, samples: Sequence[Sample]):
        self.samples = samples
        self._iter: Iterator[Sample] = iter(samples)

    def get_next(self) -> Sample | None:
        """The next sample, or None after the last (onnxruntime's ``CalibrationDataReader`` protocol)."""
        return next(self._iter, None)

    def rewind(self) -> None:
        """Start again from the first sample."""
        self._iter = iter(self.samples)

    def __len__(self) -> int:
        return len(self.samples)
