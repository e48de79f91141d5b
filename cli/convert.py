"""``onnxgraph convert``: opset and IR version, onnxruntime targets, half precision, data layout."""

from __future__ import annotations

import click

from onnxgraph.cli.errors import BadInput, CheckFailed
from onnxgraph.cli.options import (
    allow_outside_option,
    examples,
    input_shape_option,
    json_flag,
    model_argument,
    output_option,
    overwrite_option,
    parse_input_shapes,
)
from onnxgraph.cli.output import counted, emit, printable, progress, save_checked, stdout_console


@click.command(
    epilog=examples(
        "onnxgraph convert model.onnx -o model.fp16.onnx --fp16 --keep-io-types",
        "onnxgraph convert model.onnx -o model.op13.onnx --opset 13 --json",
        "onnxgraph convert model.onnx -o model.onnxtxt",
    ),
)
@model_argument
@output_option("Destination .onnx (or .onnxtxt for ONNX text).")
@click.option("--opset", type=click.IntRange(1), help="Default-domain opset to convert to (up or down).")
@click.option("--ir-version", type=click.IntRange(1), help="IR version to write.")
@click.option(
    "--target-ort",
    metavar="VERSION",
    help="Make the model loadable by this onnxruntime (e.g. 1.31): caps IR version and opset.",
)
@click.option("--fp16", is_flag=True, help="Weights and computation in float16.")
@click.option("--bf16", is_flag=True, help="Weights and computation in bfloat16.")
@click.option("--keep-io-types", is_flag=True, help="With --fp16/--bf16: keep float32 inputs and outputs.")
@click.option(
    "--op-block-list", metavar="A,B", help="With --fp16/--bf16: op types kept in float32, replacing the default list."
)
@click.option("--external-data", is_flag=True, help="Write tensors of --size-threshold bytes or more to OUT.data.")
@click.option(
    "--size-threshold",
    type=click.IntRange(0),
    default=None,
    metavar="BYTES",
    help="Smallest tensor written to external data (default 1024).",
)
@click.option("--inline-data", is_flag=True, help="Write every tensor inside the model file (up to 2 GB).")
@click.option(
    "--verify/--no-verify",
    default=True,
    show_default=True,
    help="Compare outputs with the original on onnxruntime after a precision or opset change; "
    "--no-verify also skips running the result before writing it.",
)
@click.option(
    "--tolerance",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="REL",
    help="With --fp16/--bf16: largest relative L2 error accepted per output "
    "(default 0.01 for float16, 0.04 for bfloat16).",
)
@input_shape_option
@overwrite_option
@allow_outside_option
@json_flag
def convert(
    model: str,
    output: str,
    opset: int | None,
    ir_version: int | None,
    target_ort: str | None,
    fp16: bool,
    bf16: bool,
    keep_io_types: bool,
    op_block_list: str | None,
    external_data: bool,
    size_threshold: int | None,
    inline_data: bool,
    verify: bool,
    tolerance: float | None,
    input_shapes: tuple[str, ...],
    overwrite: bool,
    allow_outside: bool,
    as_json: str | None,
) -> None:
    """Convert MODEL's opset, IR version, precision or data layout and write it to OUTPUT."""
    import onnxgraph
    from onnxgraph.convert.opset import ConversionError
    from onnxgraph.convert.pipeline import ConvertOptions, changes_computation, convert_model
    from onnxgraph.convert.precision import DEFAULT_BLOCK_LIST
    from onnxgraph.pathguard import Output, check_outputs
    from onnxgraph.runtime.inputs import check_shapes, specs_of
    from onnxgraph.serde.text import is_text_path

    if fp16 and bf16:
        raise BadInput("--fp16 and --bf16 exclude each other")
    precision = "fp16" if fp16 else "bf16" if bf16 else None
    check_outputs([Output(output, "-o", model=True), Output(as_json, "--json")], models=[model], overwrite=overwrite)
    _check_flags(
        model,
        output,
        precision,
        keep_io_types,
        op_block_list,
        external_data,
        inline_data,
        size_threshold,
        is_text_path(output),
    )
    shapes = parse_input_shapes(input_shapes)
    block_list = (
        DEFAULT_BLOCK_LIST
        if op_block_list is None
        else frozenset(op.strip() for op in op_block_list.split(",") if op.strip())
    )

    options = ConvertOptions(
        opset=opset,
        ir_version=ir_version,
        target_ort=target_ort,
        precision=precision,
        keep_io_types=keep_io_types,
        block_list=block_list,
    )
    with progress(f"loading {model}") as update:
        loaded = onnxgraph.load(model, allow_external_data_outside=allow_outside)
        default_layout = _default_layout(loaded, output)  # before conversion replaces the tensors
        if shapes:
            check_shapes(specs_of(loaded), shapes)
        try:
            reference = None
            if verify and changes_computation(loaded, options):
                update("running the original model")  # before conversion: one model's weights at a time
                reference = _reference(model, loaded, shapes)
            update("converting")
            converted, report = convert_model(loaded, options)
        except ConversionError as exc:
            raise BadInput(f"{model}: {exc}") from exc
    for line in report.warnings:
        click.echo(f"warning: {printable(line)}", err=True)
    for line in report.notes:
        click.echo(f"note: {printable(line)}", err=True)
    verification = None
    if reference is not None:
        with progress("verifying against the original"):
            verification = _verify(reference, converted, report, tolerance)
    layout = "auto" if external_data else False if inline_data else default_layout
    with progress(f"checking and writing {output}"):
        note = save_checked(
            converted,
            output,
            source=model if verify else None,
            ran_on_onnxruntime=verification is not None and verification.ran_on_onnxruntime,
            input_shapes=shapes,
            external_data=layout,
            size_threshold=1024 if size_threshold is None else size_threshold,
        )
    for line in filter(None, {verification.note if verification else "", note}):
        click.echo(f"note: {printable(line)}", err=True)
    data = report.to_json() | {"output": output}
    if verification is not None:
        data["verification"] = _verification_json(verification)
    emit(data, as_json, lambda: _render(output, report, verification))


def _default_layout(model, output: str) -> str | None:
    """Weights that came in external data leave in external data, the converted ones included (without
    this they would be written inline, the whole model in one protobuf); otherwise keep the layout."""
    from onnxgraph.optimizers.pipeline import ModelStats
    from onnxgraph.serde.text import is_text_path

    return "auto" if not is_text_path(output) and ModelStats.of(model).external_bytes else None


def _check_flags(
    model, output, precision, keep_io_types, op_block_list, external_data, inline_data, size_threshold, text_output
) -> None:
    if external_data and inline_data:
        raise BadInput("--external-data and --inline-data exclude each other")
    if size_threshold is not None and not (external_data or text_output):
        raise BadInput("--size-threshold needs --external-data (or an .onnxtxt output)")
    if (keep_io_types or op_block_list is not None) and precision is None:
        raise BadInput("--keep-io-types and --op-block-list need --fp16 or --bf16")


def _reference(model: str, original, shapes):
    """The original's outputs on seeded inputs, run from its file (BadInput when nothing runs it)."""
    from onnxgraph.convert.verify import VerificationUnavailable, reference_outputs

    try:
        return reference_outputs(original, source=model, input_shapes=shapes)
    except VerificationUnavailable as exc:
        raise BadInput(f"{model}: cannot verify: {exc} (nothing written; --no-verify writes it unverified)") from exc


def _verify(reference, converted, report, tolerance):
    from onnxgraph.convert.verify import verify_conversion

    half = report.half_report.elem_type if report.half_report else None
    result = verify_conversion(reference, converted, half_type=half, tolerance=tolerance)
    if result.error:
        raise CheckFailed(f"{result.error} (nothing written; --no-verify writes it anyway)")
    failed = [c for c in result.comparisons if not c.passed]
    if failed:
        worst = max(failed, key=lambda c: getattr(c, "relative_l2", c.max_abs))
        reason = (
            worst.describe()
            if hasattr(worst, "describe")
            else (
                f"output '{worst.name}' differs from the original: max abs {worst.max_abs:.3g}, "
                f"{worst.mismatches}/{worst.size} beyond rtol={worst.rtol:g} atol={worst.atol:g}"
            )
        )
        remedies = _remedies(report, getattr(worst, "underflows", False)) if half else ""
        raise CheckFailed(f"{reason}; nothing written{remedies}; --no-verify writes it anyway")
    return result


def _remedies(report, underflows: bool) -> str:
    """What the precision options would change, for a failed half-precision verification."""
    if underflows:  # a range problem: rounding at the boundary or a few ops in float32 do not bring values back
        return (
            "; float16 cannot hold this output's values (activations that shrink layer after layer, as in "
            "an untrained network, end below its range): --bf16 keeps float32's range; --keep-io-types or "
            "--op-block-list help only where the ops that make the smallest values end up computing in float32"
        )
    kept = ",".join(sorted(report.half_report.kept_float)) or "none"
    return (
        "; --keep-io-types keeps float32 inputs and outputs (the first and last rounding), "
        f"--op-block-list OPS keeps more op types in float32 (kept now: {kept}), "
        "--tolerance REL accepts a larger error"
    )


def _precision_name(report) -> str:
    from onnxgraph.convert.pipeline import PRECISIONS

    return next(k for k, v in PRECISIONS.items() if v == report.half_report.elem_type)


def _verification_json(result) -> dict:
    outputs = []
    for c in result.comparisons:
        if hasattr(c, "relative_l2"):
            outputs.append(
                {
                    "name": c.name,
                    "relative_l2": c.relative_l2,
                    "max_abs": c.max_abs,
                    "max_abs_over_scale": c.max_abs_over_scale,
                    "limit": c.limit,
                    "passed": c.passed,
                }
            )
        else:
            outputs.append(c.to_dict())
    return {"passed": result.passed, "engine": result.engine, "note": result.note, "outputs": outputs}


def _render(output: str, report, verification) -> None:
    from onnxgraph.cli.output import escape

    console = stdout_console()
    console.print(f"[bold]wrote[/] {escape(output)}")

    def change(a: int, b: int) -> str:
        return f"{a} -> {b}" if a != b else f"{a} (unchanged)"

    console.print(
        f"  opset {change(report.source_opset, report.opset)}, "
        f"IR version {change(report.source_ir_version, report.ir_version)}"
    )
    if report.opset_report and report.opset_report.rewritten:
        console.print("  rewritten: " + ", ".join(f"{op} x{n}" for op, n in report.opset_report.rewritten.items()))
    half = report.half_report
    if half is not None:
        kept = ", ".join(f"{op} x{n}" for op, n in half.kept_float.items()) or "none"
        console.print(
            f"  {_precision_name(report)}: {half.initializers} tensors converted, "
            f"{half.casts_added} Casts added, {half.casts_removed} removed, "
            f"{half.casts_retyped} retyped; kept in float32: {escape(kept)}"
        )
    if verification is not None:
        worst = max((c.max_abs for c in verification.comparisons), default=0.0)
        scaled = [c.relative_l2 for c in verification.comparisons if hasattr(c, "relative_l2")]
        error = f", relative L2 error {max(scaled):.2e}" if scaled else ""
        console.print(
            f"  verified on {verification.engine}: {counted(len(verification.comparisons), 'output')} "
            f"within tolerance (max abs difference {worst:.3g}{error})"
        )
