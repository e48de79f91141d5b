"""``onnxgraph quantize``: int8/int4 quantization on onnxruntime's quantizer, with an accuracy report."""

from __future__ import annotations

import click

from onnxgraph.cli.errors import CheckFailed
from onnxgraph.cli.options import (
    examples,
    input_shape_option,
    json_flag,
    model_argument,
    output_option,
    overwrite_option,
    parse_input_shapes,
)


@click.command(
    epilog=examples(
        "onnxgraph quantize bert.onnx -o bert.int8.onnx --input-shape input_ids=1,128 --bench",
        "onnxgraph quantize resnet.onnx -o resnet.qdq.onnx --mode static --calibration images.npz --per-channel",
        "onnxgraph quantize llama.onnx -o llama.int4.onnx --weights-only int4 --exclude 'lm_head*' --json",
    )
)
@model_argument
@output_option("Where to write the quantized model (weights in external data stay external).")
@click.option(
    "--mode",
    type=click.Choice(["dynamic", "static"]),
    default="dynamic",
    show_default=True,
    help="dynamic: int8 weights, activations quantized at run time. static: activations too, "
    "with ranges from --calibration.",
)
@click.option(
    "--calibration",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    metavar="DATA.npz",
    help="One array per model input (axis 0: samples); calibrates --mode static and feeds the accuracy report.",
)
@click.option(
    "--calibration-method",
    type=click.Choice(["minmax", "percentile", "entropy"]),
    default="minmax",
    show_default=True,
    help="How --mode static sets activation ranges: observed extremes, the 99.999th percentile, or least "
    "KL divergence.",
)
@click.option("--per-channel", is_flag=True, help="One scale per output channel of each weight.")
@click.option(
    "--format",
    "quant_format",
    type=click.Choice(["qdq", "qoperator"]),
    default=None,
    help="qdq: QuantizeLinear/DequantizeLinear around float ops; qoperator: QLinearConv, "
    "MatMulInteger, ... [default: qoperator for dynamic, qdq for static]",
)
@click.option(
    "--exclude",
    multiple=True,
    metavar="GLOB",
    help="Keep nodes whose name matches GLOB in float (repeatable; names after optimization).",
)
@click.option(
    "--weights-only",
    type=click.Choice(["int4", "int8"]),
    default=None,
    help="Quantize only MatMul weights, in blocks of 32 (MatMulNBits).",
)
@click.option(
    "--min-cosine",
    type=float,
    default=0.99,
    show_default=True,
    help="Fail (exit 1, nothing written) when an output's cosine similarity to the float model is lower.",
)
@input_shape_option
@json_flag
@click.option(
    "--bench",
    "run_bench",
    is_flag=True,
    help="Then benchmark the float model against the result on onnxruntime (as `onnxgraph bench A B`).",
)
@click.option(
    "--provider",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="cpu",
    show_default=True,
    help="Execution provider for --bench.",
)
@overwrite_option
def quantize(
    model: str,
    output: str,
    mode: str,
    calibration: str | None,
    calibration_method: str,
    per_channel: bool,
    quant_format: str | None,
    exclude: tuple[str, ...],
    weights_only: str | None,
    min_cosine: float,
    input_shapes: tuple[str, ...],
    as_json: str | None,
    run_bench: bool,
    provider: str,
    overwrite: bool,
) -> None:
    """Optimize MODEL, quantize it with onnxruntime's quantizer and write it to OUT if accurate enough.

    The quantized model is compared with MODEL on the calibration data (or seeded random inputs):
    max abs error, cosine similarity and top-1 agreement per output. Exits 1, writing nothing, when
    an output's cosine similarity is below --min-cosine; 2 on bad input.
    """
    from rich.console import Console

    from onnxgraph.cli.output import emit, write_json
    from onnxgraph.optimizers import VerificationFailed
    from onnxgraph.optimizers.verify import VerificationUnavailable
    from onnxgraph.pathguard import Output, check_outputs
    from onnxgraph.quantize import AccuracyFailed, QuantizeConfig
    from onnxgraph.quantize import quantize as run_quantize

    check_outputs(
        [Output(output, "-o", model=True), Output(as_json, "--json")],
        models=[model],
        reads=[calibration] if calibration else [],
        overwrite=overwrite,
    )
    shapes = parse_input_shapes(input_shapes)
    config = QuantizeConfig(
        mode=mode,
        calibration=calibration,
        calibration_method=calibration_method,
        per_channel=per_channel,
        format=quant_format,
        exclude=exclude,
        weights_only=weights_only,
        min_cosine=min_cosine,
        input_shapes=shapes,
    )
    console = Console(stderr=True)
    try:
        with console.status("loading", spinner="dots") as status:
            report = run_quantize(model, output, config, on_progress=status.update)
    except AccuracyFailed as exc:
        if as_json != "-":
            _render(exc.report)
        if as_json:
            write_json({**exc.report.to_dict(), "ok": False}, as_json)
        raise CheckFailed(f"{model}: {exc}; nothing written") from exc
    except VerificationFailed as exc:
        raise CheckFailed(f"{model}: optimizing before quantization: {exc}") from exc
    except VerificationUnavailable as exc:
        raise CheckFailed(f"{model}: cannot verify: {exc}") from exc
    summary = {**report.to_dict(), "ok": True}
    if run_bench:
        from onnxgraph.cli.bench import bench_pair

        summary["bench"] = bench_pair(model, output, provider, shapes)
    emit(summary, as_json, lambda: _render(report, summary.get("bench")))


def _render(report, bench: dict | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    from onnxgraph.cli.output import escape, human_bytes, stdout_console

    console = stdout_console()
    console.print(
        f"[bold]{escape(report.model)}[/] -> [bold]{escape(report.output)}[/]: {escape(report.method)}"
        f" in {report.seconds:.2f} s"
    )
    ops = ", ".join(f"{k} {v}" for k, v in report.quantized_ops.items()) or "none"
    console.print(
        f"nodes {report.nodes_before} -> {report.nodes_after}; weights {human_bytes(report.bytes_before)}"
        f" -> {human_bytes(report.bytes_after)}; quantization ops: {escape(ops)}"
    )
    if report.excluded:
        console.print(f"kept in float: {escape(', '.join(report.excluded))}")
    accuracy = report.accuracy
    table = Table(
        title=f"accuracy against the float model ({accuracy.samples} samples of {escape(accuracy.source)})",
        title_justify="left",
    )
    for column in ("output", "max abs error", "cosine", "top-1 agreement", "near ties"):
        table.add_column(column, justify="left" if column == "output" else "right")
    for o in accuracy.outputs:
        cosine = "-" if o.cosine is None else f"{o.cosine:.5f}"
        top1 = "-" if o.top1 is None else f"{o.top1:.1%}"
        ties = "-" if o.near_ties is None else f"{o.near_ties:.1%}"
        table.add_row(escape(o.name), escape(o.note) or f"{o.max_abs:.4g}", cosine, top1, ties)
    console.print(table)
    if any(o.near_ties for o in accuracy.outputs):
        console.print(
            "near ties: rows whose float top-2 gap is within twice the largest error in the row; "
            "their top-1 agreement is decided by the error"
        )
    err = Console(stderr=True)
    if not report.quantized_ops:
        err.print("[yellow]warning:[/] nothing was quantized (no op the chosen method handles, or all excluded)")
    for rollback in report.optimize_rollbacks:
        err.print(f"[yellow]warning:[/] the optimizer rolled back {escape(rollback)}")
    if bench is not None:
        from onnxgraph.cli.bench import print_report

        print_report(bench, console, show_parity=False)
