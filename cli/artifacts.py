"""``onnxgraph artifacts``: write the train-step, eval and inference models of a model."""

from __future__ import annotations

import functools

import click

from onnxgraph.cli.options import examples, json_flag, model_argument

LOSS_FUNCTIONS = ("mse", "l1", "cross_entropy", "bce_with_logits", "sum")
"""onnxgraph.autodiff.LOSS_FUNCTIONS (a test keeps the two equal)."""
OPTIMIZER_NAMES = ("sgd", "adam", "adamw")
"""onnxgraph.training.OPTIMIZERS' keys, spelled out so --help needs no heavy import."""

_OPTIONS = (
    click.option("--loss-fn", "loss_fn", type=click.Choice(LOSS_FUNCTIONS), help="Append this loss on --model-output."),
    click.option(
        "--model-output",
        "output",
        metavar="NAME",
        help="The model output --loss-fn applies to (default: the only one).",
    ),
    click.option("--target", "target", default="target", show_default=True, help="Name of the target input."),
    click.option("--ignore-index", type=int, default=None, help="cross_entropy: a class index that does not count."),
    click.option("--loss", "loss", metavar="OUTPUT", help="Instead of --loss-fn: an output that already is the loss."),
    click.option(
        "--optimizer", type=click.Choice(OPTIMIZER_NAMES), default="adamw", show_default=True, help="Update rule."
    ),
    click.option("--weight-decay", type=float, default=None, help="Weight decay [default: 0.01 adamw, else 0]."),
    click.option("--momentum", type=float, default=0.0, show_default=True, help="SGD momentum."),
    click.option("--nesterov", is_flag=True, help="SGD: Nesterov momentum."),
    click.option("--betas", nargs=2, type=float, default=(0.9, 0.999), show_default=True, help="Adam(W) betas."),
    click.option("--eps", type=float, default=1e-8, show_default=True, help="Adam(W) epsilon."),
    click.option(
        "--clip-grad-norm",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        metavar="X",
        help="Scale gradients to a global L2 norm of at most X.",
    ),
    click.option("--freeze", "frozen", multiple=True, metavar="GLOB", help="Keep these parameters fixed (repeatable)."),
    click.option(
        "--train-only",
        "trainable",
        multiple=True,
        metavar="GLOB",
        help="Train only these parameters (repeatable; default: every float initializer).",
    ),
    click.option(
        "--accumulate",
        "grad_accumulation",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="Average the gradients of K batches per update (grad_step.onnx + apply_step.onnx).",
    ),
    click.option(
        "--recompute",
        type=click.Choice(["none", "auto"]),
        default="none",
        show_default=True,
        help="auto: recompute activations between normalization nodes in the backward pass (less memory).",
    ),
)


def training_options(command):
    """The options that choose the loss, the parameters and the optimizer (shared with ``train``)."""
    return functools.reduce(lambda f, option: option(f), reversed(_OPTIONS), command)


def build_from_options(model: str, options: dict, *, separate_update: bool = False):
    """``build_training`` with the parsed ``training_options`` (``separate_update``: split artifacts
    for data-parallel training)."""
    from onnxgraph.cli.errors import BadInput
    from onnxgraph.training import OPTIMIZERS, build_training

    kind = options["optimizer"]
    decay = options["weight_decay"]
    if kind == "sgd":
        try:
            optimizer = OPTIMIZERS[kind](
                momentum=options["momentum"], nesterov=options["nesterov"], weight_decay=decay or 0.0
            )
        except ValueError as exc:
            raise BadInput(str(exc)) from None
    else:
        if options["momentum"] or options["nesterov"]:
            raise BadInput("--momentum and --nesterov go with --optimizer sgd")
        extra = {} if decay is None else {"weight_decay": decay}
        optimizer = OPTIMIZERS[kind](betas=tuple(options["betas"]), eps=options["eps"], **extra)
    if (options["loss"] is None) == (options["loss_fn"] is None):
        raise BadInput("choose one of --loss-fn or --loss")
    return build_training(
        model,
        loss_fn=options["loss_fn"],
        output=options["output"],
        target=options["target"],
        ignore_index=options["ignore_index"],
        loss=options["loss"],
        trainable=list(options["trainable"]) or None,
        frozen=list(options["frozen"]),
        optimizer=optimizer,
        clip_grad_norm=options["clip_grad_norm"],
        grad_accumulation=options["grad_accumulation"],
        recompute=options["recompute"],
        separate_update=separate_update,
    )


@click.command(
    epilog=examples(
        "onnxgraph artifacts mlp.onnx --loss-fn cross_entropy -o artifacts/",
        "onnxgraph artifacts cnn.onnx --loss-fn cross_entropy --optimizer sgd --momentum 0.9 -o art/",
        "onnxgraph artifacts bert.onnx --loss-fn mse --model-output pooled --freeze 'embeddings.*' -o art/",
    )
)
@model_argument
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False), help="Folder to write into.")
@training_options
@json_flag
def artifacts(model: str, out: str, as_json: str | None, **options) -> None:
    """Write train_step.onnx, eval.onnx, inference.onnx, training.json and initial_state.safetensors.

    Any onnxruntime (C++, C#, JavaScript...) can then train: feed the data, the target, the
    carried tensors, 'step' and 'lr' to train_step.onnx and feed each NAME.new output back as NAME.
    See docs/training.md.
    """
    import os

    from onnxgraph.cli.output import emit, progress
    from onnxgraph.pathguard import Output, check_outputs
    from onnxgraph.training.artifacts import FILES, INITIAL_STATE, MANIFEST

    # the folder may not exist yet (it is created); its files must not be the model or what it reads
    folder_files = [Output(os.path.join(out, f), "-o", model=f.endswith(".onnx")) for f in FILES.values()]
    folder_files += [Output(os.path.join(out, f), "-o") for f in (MANIFEST, INITIAL_STATE)]
    check_outputs([*(folder_files if os.path.isdir(out) else []), Output(as_json, "--json")], models=[model])
    with progress(f"building the training models of {model}") as update:
        result = build_from_options(model, options)
        update(f"writing {out}")
        written = result.save(out)
    layout = result.layout
    summary = (
        f"wrote {len(written)} files to {out}: {len(layout.parameters)} parameters trained, "
        f"{len(layout.frozen)} frozen, {len(layout.optimizer_state)} optimizer state tensors"
    )
    emit({"output_dir": out, "files": written, "layout": layout.__dict__}, as_json, lambda: click.echo(summary))
