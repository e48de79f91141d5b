"""Quantization on onnxruntime's quantizer, after our optimizer, with an accuracy check.

>>> from onnxgraph.quantize import QuantizeConfig, quantize
>>> report = quantize("model.onnx", "model.int8.onnx", QuantizeConfig(mode="dynamic"))   # doctest: +SKIP
>>> report.accuracy.worst_cosine                                                          # doctest: +SKIP
"""

from __future__ import annotations

from onnxgraph.quantize.accuracy import AccuracyReport, OutputAccuracy
from onnxgraph.quantize.quantizer import (
    AccuracyFailed,
    QuantizeConfig,
    QuantizeError,
    QuantizeReport,
    quantize,
)

__all__ = [
    "AccuracyFailed",
    "AccuracyReport",
    "OutputAccuracy",
    "QuantizeConfig",
    "QuantizeError",
    "QuantizeReport",
    "quantize",
]
