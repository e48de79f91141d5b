"""Optimization passes and the pipeline that runs and verifies them.

>>> from onnxgraph.optimizers import optimize
>>> model, report = optimize("model.onnx")          # doctest: +SKIP

A pass is a small class whose docstring lists its rewrites as numbered cases (see
:mod:`onnxgraph.optimizers.base`); :mod:`onnxgraph.optimizers.registry` names them and holds the
default pipeline; :func:`optimize` runs it, verifies the result on onnxruntime and rolls back
what broke it.
"""

from __future__ import annotations

from onnxgraph.optimizers.pipeline import OptimizeReport, VerificationFailed, optimize

__all__ = ["OptimizeReport", "VerificationFailed", "optimize"]
