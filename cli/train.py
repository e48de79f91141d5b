"""``onnxgraph train``: train or fine-tune a model on stock onnxruntime and write the trained model."""

from __future__ import annotations

import os

import click

from onnxgraph.cli.artifacts import build_from_options, training_options
from onnxgraph.cli.errors import EXIT_BAD_INPUT, BadInput
from onnxgraph.cli.options import examples, json_flag, model_argument, output_option, overwrite_option


@click.command(
    epilog=examples(
        "onnxgraph train mlp.onnx --data train.npz --loss-fn cross_entropy --batch-size 64 --epochs 3 -o mlp.t.onnx",
        "onnxgraph train cnn.onnx --data train.npz --eval-data val.npz --loss-fn cross_entropy --optimizer sgd "
        "--momentum 0.9 --lr 0.05 --batch-size 32 --steps 1000 --checkpoint-dir ckpt/ --resume --nproc 2 "
        "-o cnn.trained.onnx",
        "onnxgraph train bert.onnx --data train.npz --loss-fn mse --model-output pooled --freeze 'embeddings.*' "
        "--batch-size 8 --steps 200 --recompute auto --json",
    )
)
@model_argument
@output_option("Write the trained inference model here.", dest="out", required=False)
@click.option(
    "--data", required=True, type=click.Path(), metavar="TRAIN.npz", help="Training arrays (.npz or folder of .npy)."
)
@click.option("--eval-data", type=click.Path(), metavar="EVAL.npz", help="Arrays for the eval loss after each epoch.")
@training_options
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Learning rate.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Train this many epochs.")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Or train until this global step.")
@click.option("--batch-size", type=click.IntRange(min=1), required=True, help="Rows per step.")
@click.option("--drop-last", is_flag=True, help="Skip each epoch's last partial batch.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the per-epoch shuffles.")
@click.option(
    "--provider",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="auto: CUDA when usable, else CPU.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="onnxruntime intra-op threads (default: each rank its share).",
)
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    default=None,
    help="Train data-parallel on N ranks on this machine (launches mpiexec; --batch-size is per rank).",
)
@click.option("--checkpoint-dir", type=click.Path(file_okay=False), default=None, help="Checkpoints and metrics.jsonl.")
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Checkpoint every N steps (0: only at the end).",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE.png",
    help="Write the loss curve (needs --checkpoint-dir and onnxgraph[plot]).",
)
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in --checkpoint-dir when there is one.")
@overwrite_option
@json_flag
def train(
    model: str,
    out,
    data: str,
    eval_data,
    lr: float,
    epochs,
    steps,
    batch_size: int,
    drop_last: bool,
    seed: int,
    provider: str,
    threads,
    nproc,
    checkpoint_dir,
    checkpoint_every: int,
    plot_path: str | None,
    resume: bool,
    overwrite: bool,
    as_json: str | None,
    **options,
) -> None:
    """Train MODEL on named arrays (the model's inputs plus the target) and write the trained model.

    Parameters and optimizer state stay in onnxruntime between steps; checkpoints (safetensors) hold
    them with the step, so --resume continues exactly where a stopped run was. A non-finite loss stops
    the run with the last good checkpoint kept.
    """
    from onnxgraph.cli.output import emit
    from onnxgraph.pathguard import Output, check_outputs
    from onnxgraph.training import distributed
    from onnxgraph.training.trainer import Trainer

    if nproc is not None and distributed.launched_size() == 1:
        raise SystemExit(_launch(nproc))
    parallel = distributed.DataParallel() if distributed.launched_size() > 1 else None
    if parallel is not None and not parallel.root:
        as_json = plot_path = out = None  # rank 0 alone writes
    with _rank_errors(parallel):
        if (epochs is None) == (steps is None):
            raise BadInput("give one of --epochs or --steps")
        if resume and checkpoint_dir is None:
            raise BadInput("--resume needs --checkpoint-dir")
        check_outputs(
            [Output(out, "-o", model=True), Output(as_json, "--json"), Output(plot_path, "--plot")],
            models=[model],
            reads=[p for p in (data, eval_data) if p is not None],
            overwrite=overwrite,
        )
        if plot_path is not None:
            from onnxgraph.runtime.plot import require_matplotlib

            if checkpoint_dir is None:
                raise BadInput("--plot draws the metrics log: give --checkpoint-dir")
            require_matplotlib()
        artifacts = build_from_options(model, options, separate_update=parallel is not None)
        trainer = Trainer(
            artifacts,
            data,
            batch_size=batch_size,
            lr=lr,
            eval_data=eval_data,
            seed=seed,
            drop_last=drop_last,
            provider=provider,
            threads=threads,
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=checkpoint_every,
            parallel=parallel,
        )
        if resume and _has_checkpoint(checkpoint_dir):
            trainer.load_checkpoint()
        total = steps if steps is not None else trainer.updates_per_epochs(epochs)
        with _progress(trainer.step, total, quiet=parallel is not None and not parallel.root) as on_step:
            losses = trainer.fit(steps=total, on_step=on_step)
        written = trainer.export(out) if out is not None else None
        if plot_path is not None:
            from onnxgraph.training.plot import plot_losses
            from onnxgraph.training.trainer import METRICS

            plot_losses(os.path.join(checkpoint_dir, METRICS), plot_path)
        summary = {
            "steps": trainer.step,
            "final_loss": losses[-1] if losses else None,
            "output_path": written,
            "checkpoint_dir": checkpoint_dir,
        }
        if eval_data is not None:
            summary["eval_loss"] = trainer.evaluate()
        loss = f"{summary['final_loss']:.6g}" if summary["final_loss"] is not None else "n/a (nothing left to do)"
        line = f"step {trainer.step}: loss {loss}" + (f", wrote {written}" if written else "")
        if parallel is None or parallel.root:
            emit(summary, as_json, lambda: click.echo(line))


def _rank_errors(parallel):
    """Errors of a data-parallel run: reported once, and never leaving a rank waiting.

    When every rank fails together (same arguments, the collective loss check), rank 0 reports the
    error as usual and the others end quietly with the same exit code. When only this rank fails,
    the others are waiting for it in a step's collective: it reports the error with its rank and
    leaves at once, and mpiexec stops the rest.
    """
    import contextlib

    from onnxgraph.cli.errors import EXIT_INTERNAL
    from onnxgraph.errors import OnnxGraphError, one_line

    @contextlib.contextmanager
    def handled():
        try:
            yield
        except Exception as exc:
            if parallel is None:
                raise
            user = isinstance(exc, (OnnxGraphError, click.ClickException))
            code = getattr(exc, "exit_code", EXIT_BAD_INPUT if user else EXIT_INTERNAL)
            if parallel.failed_together():
                if parallel.root:
                    raise
                raise SystemExit(code) from None
            text = exc.format_message() if isinstance(exc, click.ClickException) else one_line(exc)
            click.echo(f"error: rank {parallel.rank}: {text if user else f'{type(exc).__name__}: {text}'}", err=True)
            parallel.exit(code)

    return handled()


def _launch(nproc: int) -> int:
    """Run this command again under mpiexec on ``nproc`` local ranks (without --nproc); its exit code.

    The ranks' own output passes through; mpiexec's banner about a rank that ended abnormally (killed,
    crashed) becomes one line naming the rank.
    """
    import shutil
    import subprocess
    import sys

    from onnxgraph.children import parent_death_hook
    from onnxgraph.training.distributed import find_mpiexec

    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            args.append(arg)
    mpiexec = find_mpiexec()
    command = [mpiexec, "-print-all-exitcodes", "-n", str(nproc), "-hosts", "localhost"]
    env = dict(os.environ)
    if sys.stderr.isatty():  # rank 0's progress bar: its stderr reaches the terminal through mpiexec
        env.setdefault("TTY_COMPATIBLE", "1")
        env.setdefault("COLUMNS", str(shutil.get_terminal_size().columns))
    process = subprocess.Popen(
        [*command, sys.executable, "-m", "onnxgraph", *args],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=parent_death_hook(),
    )
    banner: list[str] = []  # Hydra writes it on stdout, with the ranks' stdout
    assert process.stdout is not None  # stdout=PIPE
    for line in process.stdout:
        if line.startswith(_HYDRA_BANNER) or (banner and not line.strip()):
            banner.append(line)
        else:
            sys.stdout.write(line)
            sys.stdout.flush()
    code = process.wait()
    failed = _failed_ranks(banner)
    if failed:
        click.echo(f"error: {failed}; mpiexec stopped every rank", err=True)
    return code


_HYDRA_BANNER = ("=", "[mpiexec@", "YOUR APPLICATION TERMINATED", "This typically refers", "Please see the FAQ")


def _failed_ranks(banner: list[str]) -> str | None:
    """The ranks that Hydra's ``Exit codes: [host] s0,s1,...`` line (wait statuses) shows killed by a
    signal or ended with an exit code other than 0 and 2 (those report their own error), as words."""
    import re
    import signal

    for line in banner:
        found = re.search(r"Exit codes: \[[^\]]*\] ([-\d,]+)", line)
        if not found:
            continue
        failed = []
        for rank, status in enumerate(int(c) for c in found.group(1).split(",") if c):
            if status & 0x7F:
                failed.append(f"rank {rank} was killed by {signal.Signals(status & 0x7F).name}")
            elif status >> 8 not in (0, EXIT_BAD_INPUT):
                failed.append(f"rank {rank} exited with code {status >> 8}")
        return ", ".join(failed) or None
    return None


def _has_checkpoint(folder: str) -> bool:
    from onnxgraph.training.checkpoint import LATEST

    return os.path.exists(os.path.join(folder, LATEST))


def _progress(done: int, total: int, *, quiet: bool = False):
    """A rich progress bar on stderr with the loss, steps/s and the time left (silent when not a tty)."""
    import contextlib
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    bar = Progress(
        TextColumn("training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[rate]} steps/s"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=quiet or not console.is_terminal,
    )
    task = bar.add_task("train", total=total, completed=done, loss="-", rate="-")
    start, first = time.perf_counter(), done

    def on_step(step: int, loss: float) -> None:
        rate = (step - first) / max(time.perf_counter() - start, 1e-9)
        bar.update(task, completed=step, loss=f"{loss:.4g}", rate=f"{rate:.1f}")

    @contextlib.contextmanager
    def running():
        with bar:
            yield on_step

    return running()
