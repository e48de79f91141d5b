"""``quantize``: optimize a float model, quantize it with onnxruntime's quantizer, check its accuracy, save it.

The quantization itself is onnxruntime's (``onnxruntime.quantization``): ``quantize_dynamic``,
``quantize_static`` with a calibration reader, and ``MatMulNBitsQuantizer`` for weight-only int4/int8.
This module prepares the model for them (our optimizer, then shape inference), feeds them, and
measures the result against the float model before anything is written.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

import onnxgraph
from onnxgraph.errors import AccuracyFailed, ModelSaveError, OnnxGraphError, QuantizeError, one_line
from onnxgraph.model import Model
from onnxgraph.quantize.accuracy import AccuracyReport, measure_accuracy
from onnxgraph.quantize.prepare import untie_gemm_weights
from onnxgraph.quantize.samples import Sample, SampleReader, load_samples, seeded_samples
from onnxgraph.runtime.inputs import InputError, check_shapes, specs_of
from onnxgraph.tensor import initializer_tensor

Progress = Callable[[str], None]

MODES = ("dynamic", "static")
FORMATS = ("qdq", "qoperator")
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
"""How static mode sets activation ranges from the calibration data (onnxruntime's ``CalibrationMethod``)."""
WEIGHT_ONLY = {"int4": 4, "int8": 8}
"""``--weights-only`` choices and their bit widths (MatMulNBits)."""
DEFAULT_MIN_COSINE = 0.99
DEFAULT_SAMPLES = 4
"""Seeded random samples for the accuracy report when no calibration data is given."""
BLOCK_SIZE = 32
"""Weight-only quantization block size along a MatMul weight's input dimension."""


@dataclass
class QuantizeConfig:
    """How to quantize.

    Attributes:
        mode: ``"dynamic"`` (weights int8, activations quantized at run time) or ``"static"``
            (activations too, with ranges from ``calibration``).
        calibration: ``.npz`` file with one array per model input (see
            :func:`~onnxgraph.quantize.samples.load_samples`); required by static mode, and the data
            of the accuracy report whenever given.
        per_channel: one scale per output channel of each weight instead of one per tensor.
        format: ``"qdq"`` (QuantizeLinear/DequantizeLinear pairs around float ops) or ``"qoperator"``
            (QLinearConv, MatMulInteger, ...); None: QOperator for dynamic, QDQ for static.
        calibration_method: how static mode turns calibration data into activation ranges:
            ``"minmax"`` (the observed extremes), ``"percentile"`` (99.999th percentile of the
            absolute values) or ``"entropy"`` (the range minimizing KL divergence).
        exclude: glob patterns of node names (after optimization) to leave in float.
        weights_only: ``"int4"`` or ``"int8"``: only MatMul weights, block-wise (MatMulNBits).
        min_cosine: least cosine similarity each float output must keep against the float model.
        input_shapes: sizes of dynamic inputs for verification and for seeded samples.
        samples: number of seeded random samples when ``calibration`` is not given.
        seed: seed of the first random sample.
    """

    mode: str = "dynamic"
    calibration: str | None = None
    per_channel: bool = False
    calibration_method: str = "minmax"
    format: str | None = None
    exclude: Sequence[str] = ()
    weights_only: str | None = None
    min_cosine: float = DEFAULT_MIN_COSINE
    input_shapes: Mapping[str, Sequence[int]] = field(default_factory=dict)
    samples: int = DEFAULT_SAMPLES
    seed: int = 0

    @property
    def quant_format(self) -> str:
        """The format used: ``format`` or the mode's own."""
        if self.format:
            return self.format
        return "qdq" if self.mode == "static" and not self.weights_only else "qoperator"

    def check(self) -> None:
        """Raise QuantizeError on settings that cannot work together."""
        if self.mode not in MODES:
            raise QuantizeError(f"unknown mode '{self.mode}' (choose {' or '.join(MODES)})")
        if self.calibration_method not in CALIBRATION_METHODS:
            raise QuantizeError(
                f"unknown calibration method '{self.calibration_method}' (choose {', '.join(CALIBRATION_METHODS)})"
            )
        if self.format is not None and self.format not in FORMATS:
            raise QuantizeError(f"unknown format '{self.format}' (choose {' or '.join(FORMATS)})")
        if self.weights_only is not None:
            if self.weights_only not in WEIGHT_ONLY:
                raise QuantizeError(f"unknown --weights-only '{self.weights_only}' (choose int4 or int8)")
            if self.mode == "static":
                raise QuantizeError("--weights-only quantizes weights only; it does not combine with --mode static")
            if self.per_channel:
                raise QuantizeError("--per-channel does not apply to --weights-only (weights are quantized in blocks)")
        elif self.mode == "dynamic" and self.format == "qdq":
            raise QuantizeError("dynamic quantization writes the QOperator format only (use --mode static for QDQ)")
        if self.mode == "static" and not self.calibration:
            raise QuantizeError("static quantization needs calibration data (--calibration DATA.npz)")
        if not -1.0 <= self.min_cosine <= 1.0:
            raise QuantizeError(f"--min-cosine must lie in [-1, 1], not {self.min_cosine:g}")
        if self.samples < 1:
            raise QuantizeError(f"samples must be at least 1, not {self.samples}")

    def describe(self) -> str:
        """A short label such as ``"dynamic int8, QOperator, per-channel"`` or ``"static int8, QDQ, minmax
        calibration"``."""
        if self.weights_only:
            return f"weights-only {self.weights_only} ({self.quant_format.replace('qoperator', 'MatMulNBits')})"
        parts = [f"{self.mode} int8", "QDQ" if self.quant_format == "qdq" else "QOperator"]
        parts += ["per-channel"] if self.per_channel else []
        parts += [f"{self.calibration_method} calibration"] if self.mode == "static" else []
        return ", ".join(parts)


@dataclass
class QuantizeReport:
    """Everything :func:`quantize` did."""

    model: str
    output: str
    method: str
    accuracy: AccuracyReport
    nodes_before: int
    nodes_after: int
    quantized_ops: dict[str, int]
    """Count of each quantization op type in the result (QuantizeLinear, MatMulInteger, MatMulNBits, ...)."""
    excluded: list[str]
    bytes_before: int
    bytes_after: int
    seconds: float = 0.0
    optimize_rollbacks: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The report as JSON-ready data (NaN and infinities become None)."""
        return _finite(asdict(self))


def quantize(
    model: str | os.PathLike,
    output: str | os.PathLike,
    config: QuantizeConfig | None = None,
    *,
    on_progress: Progress | None = None,
) -> QuantizeReport:
    """Quantize a float model file and write the result, if accurate enough, to ``output``.

    Steps: our optimizer (verified on onnxruntime), onnxruntime's shape inference
    (``quant_pre_process``, symbolic shapes where it can), onnxruntime's quantizer, then an accuracy
    report of the quantized model against the original float model on the calibration samples (or
    seeded random inputs). Intermediate files live in a temporary folder beside ``output``; the
    result is written atomically, with its weights in external data when the input had any.

    Args:
        model: the float model file.
        output: where the quantized model goes.
        config: the settings (default: dynamic int8, QOperator).
        on_progress: called with a short message as work proceeds.

    Returns:
        The report; the model is written.

    Raises:
        QuantizeError: settings that conflict, or a model onnxruntime cannot quantize.
        ModelLoadError, ModelSaveError: the model cannot be read, or the output's folder does not exist.
        InputError: unusable calibration data, or ``exclude`` patterns that match no node.
        AccuracyFailed: an output's cosine similarity is below ``config.min_cosine`` (nothing written).
        VerificationFailed, VerificationUnavailable: the optimizer could not produce a correct model.
    """
    from onnxgraph.optimizers import optimize
    from onnxgraph.serde.fileio import save

    start = time.perf_counter()
    config = config or QuantizeConfig()
    config.check()
    say = on_progress or (lambda message: None)
    model, output = os.fspath(model), os.fspath(output)
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise ModelSaveError(f"{output}: folder '{folder}' does not exist")
    with tempfile.TemporaryDirectory(prefix=".onnxgraph-quantize-", dir=folder) as work:
        with _temporary_files_in(work):  # verification's model copies too: whole models, beside the output
            optimized, opt_report = optimize(model, input_shapes=config.input_shapes, on_progress=say)
            specs = specs_of(optimized)
            check_shapes(specs, config.input_shapes)
            excluded = excluded_nodes(optimized, config.exclude)
            if config.calibration:
                samples, source = load_samples(config.calibration, specs), config.calibration
            else:
                samples = seeded_samples(specs, config.samples, shapes=config.input_shapes, seed=config.seed)
                source = "seeded random inputs"
            say("running the float model")
            try:
                expected = _run_samples(model, samples)
            except _RunFailed as exc:
                if config.calibration:
                    raise InputError(f"{config.calibration}: the model does not run on this data: {exc}") from None
                raise InputError(
                    f"{model}: the model does not run on seeded random inputs (dynamic dimensions 1; "
                    f"give sizes with --input-shape): {exc}"
                ) from None
            if config.mode == "dynamic" and not config.weights_only:
                untie_gemm_weights(optimized)
        prepared = os.path.join(work, "float.onnx")
        save(optimized, prepared)
        del optimized
        quantized = os.path.join(work, "quantized.onnx")
        with _onnxruntime_quantizer(work):
            say("shape inference")
            inferred = _infer_shapes(prepared, os.path.join(work, "inferred.onnx"))
            say(f"quantizing ({config.describe()})")
            _quantize(inferred, quantized, config, samples, excluded)
        say("measuring accuracy")
        try:
            accuracy = measure_accuracy(expected, _run_samples(quantized, samples), source)
        except _RunFailed as exc:
            raise QuantizeError(f"the quantized model does not run on onnxruntime: {exc}") from None
        result = onnxgraph.load(quantized)
        report = _report(model, output, config, accuracy, opt_report, result, excluded)
        accurate = accuracy.passes(config.min_cosine)
        if accurate:
            say("saving")
            save(result, output, external_data="auto" if opt_report.before.external_bytes else None)
        del result  # its tensors map files of the temporary folder
    report.seconds = time.perf_counter() - start
    if not accurate:
        raise AccuracyFailed(report, config.min_cosine)
    return report


def _report(
    model: str,
    output: str,
    config: QuantizeConfig,
    accuracy: AccuracyReport,
    opt_report,
    result: Model,
    excluded: list[str],
) -> QuantizeReport:
    return QuantizeReport(
        model=model,
        output=output,
        method=config.describe(),
        accuracy=accuracy,
        nodes_before=opt_report.before.nodes,
        nodes_after=sum(1 for _ in result.all_nodes()),
        quantized_ops=_quantization_ops(result),
        excluded=excluded,
        bytes_before=opt_report.before.bytes,
        bytes_after=sum(initializer_tensor(v).nbytes for g in result.all_graphs() for v in g.initializers.values()),
        optimize_rollbacks=[r.pass_name + (f":{r.rewrite}" if r.rewrite else "") for r in opt_report.rollbacks],
    )


def excluded_nodes(model: Model, patterns: Sequence[str]) -> list[str]:
    """Names of the nodes (all graphs) matching any glob in ``patterns``.

    Raises:
        InputError: a pattern matches no node (a typo would otherwise quantize everything silently).
    """
    names = [n.name for n in model.all_nodes() if n.name]
    found: list[str] = []
    for pattern in patterns:
        matched = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
        if not matched:
            raise InputError(f"--exclude '{pattern}' matches no node name of the optimized model")
        found += [name for name in matched if name not in found]
    return found


class _RunFailed(Exception):
    """onnxruntime failed to run a sample (the message is its first line)."""


def _run_samples(path: str, samples: Sequence[Sample]) -> list[dict[str, np.ndarray]]:
    """Outputs of the model at ``path`` for each sample (onnxruntime CPU, all optimizations).

    Raises:
        _RunFailed: a sample does not run.
    """
    import onnxruntime as ort

    from onnxgraph.runtime.sessions import create_session

    session = create_session(path)
    names = [o.name for o in session.get_outputs()]
    quiet = ort.RunOptions()
    quiet.log_severity_level = 4  # a failure is reported in one line below, not by onnxruntime's logger too
    results = []
    for sample in samples:
        try:
            results.append(dict(zip(names, session.run(names, sample, quiet))))
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types
            raise _RunFailed(one_line(exc)) from exc
    return results


def _infer_shapes(source: str, target: str) -> str:
    """onnxruntime's preparation for quantization without its optimizer: symbolic shape inference
    (skipped where it fails, as on some control flow) and onnx shape inference."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    external = os.path.exists(source + ".data")
    options = dict(
        skip_optimization=True,
        auto_merge=True,
        save_as_external_data=external,
        all_tensors_to_one_file=True,
        external_data_location=os.path.basename(target) + ".data",
    )
    try:
        quant_pre_process(source, target, **options)
    except Exception:  # noqa: BLE001 - symbolic shape inference gives up on some models
        try:
            quant_pre_process(source, target, skip_symbolic_shape=True, **options)
        except Exception as exc:  # noqa: BLE001
            raise QuantizeError(f"shape inference failed before quantization: {one_line(exc)}") from exc
    return target


def _quantize(source: str, target: str, config: QuantizeConfig, samples: Sequence[Sample], excluded: list[str]) -> None:
    """Run onnxruntime's quantizer chosen by ``config`` from ``source`` to ``target``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    external = os.path.exists(source + ".data")
    fmt = QuantFormat.QDQ if config.quant_format == "qdq" else QuantFormat.QOperator
    try:
        if config.weights_only:
            _quantize_weights(source, target, WEIGHT_ONLY[config.weights_only], fmt, excluded, external)
        elif config.mode == "dynamic":
            quantize_dynamic(
                source,
                target,
                per_channel=config.per_channel,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=excluded,
                use_external_data_format=external,
            )
        else:
            # u8 activations with s8 weights: the combination onnxruntime's x86 kernels run fastest.
            quantize_static(
                source,
                target,
                SampleReader(samples),
                quant_format=fmt,
                per_channel=config.per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=excluded,
                use_external_data_format=external,
                calibrate_method=getattr(CalibrationMethod, _CALIBRATION_METHOD[config.calibration_method]),
            )
    except OnnxGraphError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime's quantizer raises anything from asserts on
        raise QuantizeError(f"onnxruntime's quantizer failed: {one_line(exc)}") from exc
    if not os.path.exists(target):
        raise QuantizeError("onnxruntime's quantizer wrote no model")


def _quantize_weights(source: str, target: str, bits: int, fmt, excluded: list[str], external: bool) -> None:
    """Weight-only block quantization of MatMul weights to MatMulNBits (or DequantizeLinear with QDQ)."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    algo = DefaultWeightOnlyQuantConfig(block_size=BLOCK_SIZE, is_symmetric=True, quant_format=fmt, bits=bits)
    quantizer = MatMulNBitsQuantizer(
        onnx.load(source),
        bits=bits,
        block_size=BLOCK_SIZE,
        is_symmetric=True,
        nodes_to_exclude=excluded,
        quant_format=fmt,
        algo_config=algo,
    )
    quantizer.process()
    quantizer.model.save_model_to_file(target, use_external_data_format=external)


_CALIBRATION_METHOD = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}


_QUANT_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "MatMulInteger",
        "ConvInteger",
        "QLinearConv",
        "QLinearMatMul",
        "MatMulNBits",
        "DynamicQuantizeMatMul",
        "QGemm",
        "QLinearAdd",
        "QLinearMul",
        "QAttention",
        "QLinearAveragePool",
        "QLinearGlobalAveragePool",
        "QLinearConcat",
        "QLinearLeakyRelu",
        "QLinearSigmoid",
        "QLinearSoftmax",
        "QLinearWhere",
        "QEmbedLayerNormalization",
        "QOrderedMatMul",
    }
)


def _quantization_ops(model: Model) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in model.all_nodes():
        if node.op_type in _QUANT_OPS:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


@contextlib.contextmanager
def _onnxruntime_quantizer(folder: str) -> Iterator[None]:
    """Settings around onnxruntime's quantizer: its temporary model copies (whole models: gigabytes
    for large ones) go to ``folder`` instead of the system's temporary folder, and its logging, which
    warns per tensor through the root logger, is silenced."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with _temporary_files_in(folder):
            yield
    finally:
        root.setLevel(level)


@contextlib.contextmanager
def _temporary_files_in(folder: str) -> Iterator[None]:
    """Python's temporary files and folders (``tempfile``'s default) go to ``folder`` within the block."""
    tempdir = tempfile.tempdir
    tempfile.tempdir = folder
    try:
        yield
    finally:
        tempfile.tempdir = tempdir


def _finite(data):
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_finite(v) for v in data]
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data
