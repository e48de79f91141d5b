"""``onnxgraph convert`` as one library call: opset, IR version, onnxruntime target, precision."""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from onnxgraph import renames, types
from onnxgraph.convert import versions
from onnxgraph.convert.opset import ConversionError, OpsetReport, convert_opset, default_opset
from onnxgraph.convert.precision import DEFAULT_BLOCK_LIST, HalfReport, to_half
from onnxgraph.model import Model
from onnxgraph.shape_inference import infer_shapes

PRECISIONS = {"fp16": onnx.TensorProto.FLOAT16, "bf16": onnx.TensorProto.BFLOAT16}


@dataclass
class ConvertOptions:
    """What to convert (every field optional: None leaves that aspect as it is)."""

    opset: int | None = None
    ir_version: int | None = None
    target_ort: str | None = None
    """An onnxruntime version such as "1.31": caps the IR version and opset to what it loads."""
    precision: str | None = None
    """"fp16" or "bf16"."""
    keep_io_types: bool = False
    block_list: frozenset[str] = DEFAULT_BLOCK_LIST


@dataclass
class ConvertReport:
    """What :func:`convert_model` did."""

    source_opset: int
    opset: int
    source_ir_version: int
    ir_version: int
    opset_report: OpsetReport | None = None
    half_report: HalfReport | None = None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What was changed as intended but is worth saying (a mask's minus infinity made finite)."""

    def to_json(self) -> dict:
        half = self.half_report
        return {
            "opset": {"from": self.source_opset, "to": self.opset},
            "ir_version": {"from": self.source_ir_version, "to": self.ir_version},
            "rewritten_ops": self.opset_report.rewritten if self.opset_report else {},
            "carried_ops": self.opset_report.carried if self.opset_report else {},
            "precision": None
            if half is None
            else {
                "dtype": types.dtype_name(half.elem_type),
                "initializers_converted": half.initializers,
                "casts_added": half.casts_added,
                "casts_removed": half.casts_removed,
                "casts_retyped": half.casts_retyped,
                "kept_float32": dict(half.kept_float),
                "clamped": half.clamped,
            },
            "warnings": self.warnings,
            "notes": self.notes,
        }


def _elem_types(model: Model) -> set[int]:
    found: set[int] = set()
    for graph in model.all_graphs():
        # every initializer holds data (Graph.add_initializer refuses one without)
        found.update(v.const_value.elem_type for v in graph.initializers.values() if v.const_value is not None)
        for node in graph:
            found.update(v.elem_type for v in node.outputs if v.elem_type)
    return found


def _targets(model: Model, options: ConvertOptions) -> tuple[int, int | None]:
    """(opset to reach, highest IR version allowed or None)."""
    opset = options.opset if options.opset is not None else default_opset(model)
    ir_cap = None
    if options.target_ort:
        max_ir, max_opset = versions.ort_limits(options.target_ort)
        if options.opset is not None and options.opset > max_opset:
            raise ConversionError(
                f"--opset {options.opset} is newer than onnxruntime {options.target_ort} loads (opset {max_opset})"
            )
        if options.ir_version is not None and options.ir_version > max_ir:
            raise ConversionError(
                f"--ir-version {options.ir_version} is newer than onnxruntime {options.target_ort} loads (IR {max_ir})"
            )
        opset = min(opset, max_opset)
        ir_cap = max_ir
    return opset, ir_cap


def changes_computation(model: Model, options: ConvertOptions) -> bool:
    """Whether converting ``model`` as ``options`` ask changes how its outputs are computed (a
    precision or opset change): such a result is verified against the original.

    Raises:
        ConversionError: the targets contradict each other (as :func:`convert_model` would say).
    """
    return options.precision is not None or _targets(model, options)[0] != default_opset(model)


def _ir_version(model: Model, opset: int, explicit: int | None, cap: int | None) -> int:
    """The IR version to write: ``explicit`` if given, else the model's (capped), at least what it needs."""
    needed = max(
        versions.min_ir_for_opset(opset), versions.min_ir_for_types(_elem_types(model)), 8 if model.functions else 3
    )
    if explicit is not None:
        if explicit > onnx.IR_VERSION:
            raise ConversionError(
                f"IR version {explicit} is newer than onnx {onnx.__version__} knows ({onnx.IR_VERSION})"
            )
        chosen = explicit
    else:
        chosen = max(model.ir_version, needed)
        if cap is not None:
            chosen = min(chosen, cap)
    if chosen < needed:
        raise ConversionError(
            f"IR version {chosen} is too old for this model (opset {opset} and its "
            f"element types need IR {needed} or newer)"
        )
    return chosen


def convert_model(model: Model, options: ConvertOptions) -> tuple[Model, ConvertReport]:
    """Convert ``model`` as ``options`` ask (the input model may be changed; use the result).

    Nodes are put in topological order first; when the IR version written is below 4, every
    initializer of the main graph is also listed as a graph input (the exporter does it).

    Raises:
        ConversionError: a target cannot be met (the message says which and why), or the model is
            stamped with an unreleased opset.
        OnnxGraphError: a malformed version or an unknown option value.
    """
    with renames.recording(model) as recorded:
        recorded.model, report = _convert(model, options)
    return recorded.model, report


def _convert(model: Model, options: ConvertOptions) -> tuple[Model, ConvertReport]:
    source_opset, source_ir = default_opset(model), model.ir_version
    newest = onnx.defs.onnx_opset_version()
    if source_opset > newest:
        raise ConversionError(
            f"stamped with ai.onnx opset {source_opset}, which is not released (onnx "
            f"{onnx.__version__} knows opsets up to {newest}): nothing can convert or verify it"
        )
    for graph in list(model.all_graphs()):  # onnxruntime and the checker want producers before readers
        graph.sort()
    opset, ir_cap = _targets(model, options)
    report = ConvertReport(source_opset, opset, source_ir, source_ir)
    if opset != source_opset:
        model, report.opset_report = convert_opset(model, opset)
    if options.precision is not None:
        if options.precision not in PRECISIONS:
            raise ConversionError(f"unknown precision '{options.precision}' (fp16 or bf16)")
        infer_shapes(model)
        report.half_report = to_half(
            model, PRECISIONS[options.precision], keep_io_types=options.keep_io_types, block_list=options.block_list
        )
        report.warnings.extend(report.half_report.warnings)
        report.notes.extend(report.half_report.notes)
    model.ir_version = report.ir_version = _ir_version(model, opset, options.ir_version, ir_cap)
    return model, report
