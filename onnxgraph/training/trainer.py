"""The training loop: ``Trainer`` runs the train-step model on onnxruntime with IO binding.

Parameters, running statistics and optimizer state live in onnxruntime OrtValues (on the device
for CUDA) and are bound as the step's inputs; the step writes their new values into a second set
of OrtValues, and the two sets swap. Nothing goes through numpy between steps except the batch and
the scalar loss. The batch of each step is a pure function of (seed, global step) (see
:class:`~onnxgraph.training.data.BatchOrder`), so a checkpoint holds the carried tensors and the
step, and resuming continues exactly.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

import onnxgraph
from onnxgraph import types
from onnxgraph.errors import TrainingError
from onnxgraph.fsutil import atomic_write
from onnxgraph.model import Model
from onnxgraph.tensor import Tensor
from onnxgraph.training import checkpoint
from onnxgraph.training.artifacts import Layout, TrainingArtifacts
from onnxgraph.training.data import BatchOrder, open_arrays, take
from onnxgraph.training.distributed import DataParallel

if TYPE_CHECKING:
    import onnx
    from onnxruntime import InferenceSession

FORMAT = "onnxgraph.training/1"
"""Checkpoint format tag (metadata ``format``)."""
METRICS = "metrics.jsonl"
"""The metrics log a run writes in its checkpoint directory."""

StepCallback = Callable[[int, float], None]


class Trainer:
    """Trains a model's :class:`TrainingArtifacts` on named arrays.

    Args:
        artifacts: what :func:`~onnxgraph.training.build_training` made.
        data: an ``.npz`` path, a folder of ``.npy`` files, or a dict of arrays, named after the
            model's inputs plus the target.
        batch_size: rows per step.
        lr: learning rate.
        eval_data: data for :meth:`evaluate` (run at each epoch's end by :meth:`fit`).
        seed: seed of the per-epoch shuffles.
        drop_last: skip each epoch's last partial batch.
        shuffle: shuffle rows each epoch.
        provider: "auto", "cpu" or "cuda".
        threads: onnxruntime intra-op threads (default: onnxruntime's choice).
        checkpoint_dir: where :meth:`save_checkpoint` and the metrics log write (None: nowhere).
        checkpoint_every: :meth:`fit` checkpoints every this many steps (0: only at the end).
        parallel: data-parallel training on MPI (needs split artifacts: ``separate_update=True``):
            ``batch_size`` is then per rank, each global step takes ``batch_size x ranks`` rows of
            the data order and this rank trains on its shard; gradients and running statistics
            are reduced across the ranks, and only rank 0 writes checkpoints and metrics.
            ``threads`` defaults to this rank's share of the cores.

    Raises:
        TrainingError: the data does not fit the model, or the checkpoint folder is not writable.
    """

    def __init__(
        self,
        artifacts: TrainingArtifacts,
        data: str | os.PathLike | dict[str, np.ndarray],
        *,
        batch_size: int,
        lr: float = 1e-3,
        eval_data: str | os.PathLike | dict[str, np.ndarray] | None = None,
        seed: int = 0,
        drop_last: bool = False,
        shuffle: bool = True,
        provider: str = "cpu",
        threads: int | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int = 0,
        parallel: DataParallel | None = None,
    ):
        from onnxgraph.runtime.providers import CUDA, resolve_providers
        from onnxgraph.runtime.sessions import Provider

        self.artifacts = artifacts
        self.layout: Layout = artifacts.layout
        self.lr = lr
        self.checkpoint_every = checkpoint_every
        self.checkpoint_dir = _writable_dir(checkpoint_dir) if checkpoint_dir is not None else None
        self.step = 0
        """Updates made so far (the global step)."""
        self._providers: tuple[Provider, ...] = resolve_providers(provider)
        self.parallel = parallel
        self._writes = parallel is None or parallel.root
        ranks = 1 if parallel is None else parallel.size
        if parallel is not None and artifacts.grad_step is None:
            raise TrainingError(
                "data-parallel training needs split artifacts: build_training(..., separate_update=True)"
            )
        self._threads = threads if threads is not None or parallel is None else parallel.threads()
        self._device = "cuda" if self._providers[0] == CUDA else "cpu"
        self._device_id = 0
        if self._device == "cuda" and parallel is not None:  # each rank on its machine's GPU of its local rank
            from onnxgraph.training.distributed import cuda_device_count

            self._device_id = parallel.device_index(cuda_device_count())
            self._providers = ((CUDA, {"device_id": str(self._device_id)}), *self._providers[1:])
        fed = [*self.layout.data_inputs, *([self.layout.target] if self.layout.target else [])]
        self._fed = fed
        self.data = _checked_data(data, fed, artifacts)
        rows = len(next(iter(self.data.values())))
        self.order = BatchOrder(rows, batch_size * ranks, seed, drop_last, shuffle)
        last = rows % self.order.batch_size
        if not drop_last and 0 < last < ranks:
            raise TrainingError(
                f"each epoch's last batch has {last} rows, fewer than the {ranks} ranks: use drop_last (--drop-last)"
            )
        self.eval_data = _checked_data(eval_data, fed, artifacts) if eval_data is not None else None
        self._accumulate = self.layout.grad_accumulation
        if self._accumulate > 1 and self.order.steps_per_epoch < self._accumulate:
            raise TrainingError(
                f"an epoch has {self.order.steps_per_epoch} batches, fewer than grad_accumulation={self._accumulate}"
            )
        self._session = self._create(artifacts.train_step)
        self._eval_session: InferenceSession | None = None
        self._carried = {n: self._ortvalue(v) for n, v in artifacts.initial.items()}
        self._spare = {n: self._ortvalue(np.empty_like(v)) for n, v in artifacts.initial.items()}
        grad_step, apply_step = artifacts.grad_step, artifacts.apply_step
        if (grad_step is None) != (apply_step is None):
            raise TrainingError("split artifacts need both grad_step and apply_step")
        self._split = grad_step is not None
        self.gradients: dict = {}
        """After :meth:`grad_step`: summed gradient OrtValues by ``PARAM.grad`` name (split artifacts)."""
        if grad_step is not None and apply_step is not None:
            self._grad_session = self._create(grad_step)
            self._apply_session = self._create(apply_step)
            shapes = {Layout.grad_name(p): artifacts.initial[p] for p in self.layout.parameters}
            self._zeros = {g: self._ortvalue(np.zeros_like(v)) for g, v in shapes.items()}
            self._sums = [{g: self._ortvalue(np.empty_like(v)) for g, v in shapes.items()} for _ in range(2)]

    # -- running ----------------------------------------------------------------------------------
    def train_step(self) -> float:
        """Run one update on the batch (or ``grad_accumulation`` batches) of the current global step;
        return its loss (the mean over the batches).

        Raises:
            TrainingError: the loss is not finite (parameters and optimizer state stay as they were).
        """
        if self._split:
            loss = self.grad_step()
            self.apply_step()
            return loss
        reads = self._carried
        writes = {Layout.new_name(n): self._spare[n] for n in reads}
        loss = self._run(self._session, self.step, reads, writes)
        self._check(loss)
        self._carried, self._spare = self._spare, self._carried
        self.step += 1
        return loss

    def grad_step(self) -> float:
        """Split artifacts: run grad_step on the ``grad_accumulation`` batches of the current global
        step, leaving the summed gradients in :attr:`gradients` (for a caller to combine, e.g. across
        workers, before :meth:`apply_step`); running statistics are updated. Returns the mean loss.

        With ``parallel``, the gradients, running statistics and the loss are those of the whole
        global batch, reduced across the ranks (a collective call: every rank makes it).

        Raises:
            TrainingError: the loss is not finite (on any rank).
        """
        layout, k = self.layout, self._accumulate
        sums = self._zeros
        total = 0.0
        for j in range(k):
            reads = {**{n: self._carried[n] for n in [*layout.parameters, *layout.buffers]}, **sums}
            out = self._sums[j % 2]
            writes = {
                **{Layout.new_name(n): self._spare[n] for n in layout.buffers},
                **{Layout.new_name(g): out[g] for g in out},
            }
            total += self._run(self._grad_session, self.step * k + j, reads, writes)
            for name in layout.buffers:
                self._carried[name], self._spare[name] = self._spare[name], self._carried[name]
            sums = out
        loss = total / k
        self.gradients = sums
        if self.parallel is not None:
            loss = self._reduce(loss)
        self._check(loss)
        return loss

    def _reduce(self, loss: float) -> float:
        """Replace this rank's gradients and running statistics by the global batch's; return its loss."""
        rows = sum(len(self._rows(self.step * self._accumulate + j)) for j in range(self._accumulate))
        buffers = {n: self._carried[n] for n in self.layout.buffers}
        assert self.parallel is not None  # called only when training data-parallel
        try:
            loss, gradients, averaged = self.parallel.reduce(
                loss,
                rows,
                {n: v.numpy() for n, v in self.gradients.items()},
                {n: v.numpy() for n, v in buffers.items()},
            )
        except TrainingError as exc:
            self._check(math.nan, str(exc))
        for name, array in gradients.items():
            self.gradients[name].update_inplace(array)
        for name, array in averaged.items():
            buffers[name].update_inplace(array)
        return loss

    def apply_step(self) -> None:
        """Split artifacts: update parameters and optimizer state from :attr:`gradients` (their sum
        over the step's batches; apply_step divides by ``grad_accumulation``), then advance the step."""
        updated = [*self.layout.parameters, *self.layout.optimizer_state]
        reads = {**{n: self._carried[n] for n in updated}, **self.gradients}
        writes = {Layout.new_name(n): self._spare[n] for n in updated}
        self._run(self._apply_session, self.step, reads, writes, data=False)
        for name in updated:
            self._carried[name], self._spare[name] = self._spare[name], self._carried[name]
        self.step += 1

    def _run(self, session, index: int, reads: dict, writes: dict, *, data: bool = True) -> float:
        """One IO-bound run: ``index`` is the 0-based update (or, for grad_step, micro-batch) number."""
        layout = self.layout
        names = {i.name for i in session.get_inputs()}
        binding = session.io_binding()
        if data:
            binding.bind_output(layout.loss, "cpu")
            for name, array in take(self.data, self._fed, self._rows(index)).items():
                binding.bind_cpu_input(name, array)
        scalars = {layout.step: np.array(index + 1, np.int64), layout.lr: np.array(self.lr, np.float32)}
        if layout.seed is not None:
            scalars[layout.seed] = np.array(self.order.seed, np.int64)
        for name, value in scalars.items():
            if name in names:
                binding.bind_cpu_input(name, value)
        for name, value in reads.items():
            binding.bind_ortvalue_input(name, value)
        for name, value in writes.items():
            binding.bind_ortvalue_output(name, value)
        session.run_with_iobinding(binding)
        return float(binding.get_outputs()[0].numpy()) if data else 0.0

    def _rows(self, index: int) -> np.ndarray:
        """The data rows of 0-based batch ``index`` that this process trains on (its shard, in parallel)."""
        rows = self.order.rows_of(index)[1]
        return rows if self.parallel is None else self.parallel.shard(rows)

    def _check(self, loss: float, problem: str | None = None) -> None:
        if problem is None and math.isfinite(loss):
            return
        raise TrainingError(
            f"step {self.step + 1} (epoch {self.epoch + 1}): {problem or f'the loss is {loss}'}; stopped with the "
            f"parameters of step {self.step}{self._kept_checkpoint()}"
        )

    def fit(
        self,
        *,
        steps: int | None = None,
        epochs: int | None = None,
        on_step: StepCallback | None = None,
    ) -> list[float]:
        """Train until the global step reaches ``steps`` (or ``epochs`` whole epochs).

        Writes a metrics line per step (and per evaluation) and checkpoints every
        ``checkpoint_every`` steps and at the end when a checkpoint folder is set.

        Args:
            steps: the global step to stop at.
            epochs: or the number of epochs to stop after.
            on_step: called with (global step, loss) after each step.

        Returns:
            The losses of the steps this call ran.
        """
        if steps is not None and epochs is None:
            total = steps
        elif epochs is not None and steps is None:
            total = self.updates_per_epochs(epochs)
        else:
            raise TrainingError("give exactly one of steps or epochs")
        losses = []
        start = time.perf_counter()
        while self.step < total:
            before = self.epoch
            loss = self.train_step()
            losses.append(loss)
            epoch = before
            self._log(
                {
                    "step": self.step,
                    "epoch": epoch + 1,
                    "loss": loss,
                    "lr": self.lr,
                    "elapsed_s": round(time.perf_counter() - start, 6),
                }
            )
            if on_step is not None:
                on_step(self.step, loss)
            if self.eval_data is not None and self.epoch > before:
                self._log({"step": self.step, "epoch": epoch + 1, "eval_loss": self.evaluate()})
            if self.checkpoint_every and self.step % self.checkpoint_every == 0:
                self.save_checkpoint()
        if self.checkpoint_dir is not None:
            self.save_checkpoint()
        return losses

    @property
    def epoch(self) -> int:
        """Whole epochs done (0-based index of the epoch the next batch belongs to)."""
        return self.step * self._accumulate // self.order.steps_per_epoch

    def updates_per_epochs(self, epochs: int) -> int:
        """The global step at which ``epochs`` epochs are done (updates of ``grad_accumulation`` batches)."""
        return epochs * self.order.steps_per_epoch // self._accumulate

    def evaluate(self, data: str | os.PathLike | dict[str, np.ndarray] | None = None) -> float:
        """The mean loss of the eval model (inference mode) over ``data`` (default: the eval data).

        With ``parallel``, each rank evaluates every N-th batch of ``batch_size`` rows and the sums are
        reduced (a collective call: every rank makes it)."""
        arrays = self.eval_data if data is None else _checked_data(data, self._fed, self.artifacts)
        if arrays is None:
            raise TrainingError("no eval data")
        session = self._eval_session
        if session is None:
            session = self._eval_session = self._create(self.artifacts.eval)
        rows = len(next(iter(arrays.values())))
        ranks, rank = (1, 0) if self.parallel is None else (self.parallel.size, self.parallel.rank)
        batch = self.order.batch_size // ranks
        total, weight = 0.0, 0
        for begin in range(rank * batch, rows, batch * ranks):
            index = np.arange(begin, min(begin + batch, rows))
            binding = session.io_binding()
            binding.bind_output(self.layout.loss, "cpu")
            for name, array in take(arrays, self._fed, index).items():
                binding.bind_cpu_input(name, array)
            for name in [*self.layout.parameters, *self.layout.buffers]:
                binding.bind_ortvalue_input(name, self._carried[name])
            session.run_with_iobinding(binding)
            total += float(binding.get_outputs()[0].numpy()) * len(index)
            weight += len(index)
        if self.parallel is not None:
            total, weight = self.parallel.allreduce_sum({"eval": np.array([total, weight], np.float64)})["eval"]
        return total / weight

    # -- state --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the carried tensors (parameters, buffers, optimizer state) as numpy arrays."""
        # OrtValue.numpy() of a CPU tensor is a view of its memory, which the next step overwrites
        return {name: np.array(value.numpy()) for name, value in self._carried.items()}

    def save_checkpoint(self, path: str | os.PathLike | None = None) -> str:
        """Write the carried tensors, the step and the data order atomically (safetensors).

        Returns:
            The path written (default: ``latest.safetensors`` in the checkpoint folder).
        """
        path = os.fspath(path) if path is not None else self._checkpoint_path()
        if not self._writes:
            return path
        epoch, within = divmod(self.step * self._accumulate, self.order.steps_per_epoch)
        info = {
            "format": FORMAT,
            "step": self.step,
            "epoch": epoch,
            "batch_in_epoch": within,
            "rows": self.order.rows,
            "batch_size": self.order.batch_size,
            "drop_last": self.order.drop_last,
            "shuffle": self.order.shuffle,
            "rng": {"kind": "numpy.random.default_rng([seed, epoch]).permutation", "seed": self.order.seed},
            "grad_accumulation": self._accumulate,
            "lr": self.lr,
            "optimizer": self.layout.optimizer,
        }
        checkpoint.write_tensors(path, self.state_dict(), checkpoint.encode(info))
        return path

    def load_checkpoint(self, path: str | os.PathLike | None = None) -> None:
        """Continue from a checkpoint written by :meth:`save_checkpoint` for the same model and data.

        Raises:
            TrainingError: the checkpoint is missing, damaged, or from another model, data or order.
        """
        path = os.fspath(path) if path is not None else self._checkpoint_path()
        tensors, metadata = checkpoint.read_tensors(path)
        info = checkpoint.decode(metadata)
        if info.get("format") != FORMAT:
            raise TrainingError(f"{path}: not an onnxgraph training checkpoint")
        expected = {
            "rows": self.order.rows,
            "batch_size": self.order.batch_size,
            "drop_last": self.order.drop_last,
            "shuffle": self.order.shuffle,
            "grad_accumulation": self._accumulate,
        }
        for key, value in expected.items():
            if info.get(key) != value:
                raise TrainingError(f"{path}: written with {key}={info.get(key)}, this run has {key}={value}")
        if info["rng"]["seed"] != self.order.seed:
            raise TrainingError(f"{path}: written with seed {info['rng']['seed']}, this run has seed {self.order.seed}")
        for name, current in self._carried.items():
            array = tensors.get(name)
            if array is None or array.shape != tuple(current.shape()) or array.dtype != current.numpy().dtype:
                raise TrainingError(f"{path}: '{name}' is missing or has another shape or type than the model's")
        self._carried = {name: self._ortvalue(tensors[name]) for name in self._carried}
        self.step = int(info["step"])
        self._truncate_metrics()

    def export(self, path: str | os.PathLike, *, verify: bool = True) -> str:
        """Write the original inference model with the trained weights (same interface).

        Args:
            path: the destination (written atomically).
            verify: load the written model in onnxruntime and run it on a batch of the data.

        Returns:
            The path written.
        """
        model = self.artifacts.inference
        originals = {}
        try:  # swap the trained tensors in for the save: no copy of the whole model
            for name, array in self.state_dict().items():
                if name in model.graph.initializers:
                    value = model.graph.initializers[name]
                    originals[name] = value.const_value
                    value.const_value = Tensor(array, name=name)
            path = os.fspath(path)
            onnxgraph.save(model, path)
        finally:
            for name, tensor in originals.items():
                model.graph.initializers[name].const_value = tensor
        if verify:
            _, rows = self.order.rows_of(0)
            outputs = self._create(path).run(None, take(self.data, self.layout.data_inputs, rows))
            if not all(np.all(np.isfinite(o)) for o in outputs if np.issubdtype(o.dtype, np.floating)):
                os.unlink(path)
                raise TrainingError(f"{path}: the exported model's outputs are not finite; nothing written")
        return path

    # -- helpers ------------------------------------------------------------------------------------
    def _create(self, model: Model | onnx.ModelProto | str) -> InferenceSession:
        from onnxgraph.runtime.sessions import create_session

        source = model.to_proto() if isinstance(model, Model) else model
        return create_session(source, providers=self._providers, threads=self._threads, memory_pattern=False)

    def _ortvalue(self, array: np.ndarray):
        import onnxruntime as ort

        return ort.OrtValue.ortvalue_from_numpy(np.array(array), self._device, self._device_id)

    def _checkpoint_path(self) -> str:
        if self.checkpoint_dir is None:
            raise TrainingError("no checkpoint folder was given")
        return os.path.join(self.checkpoint_dir, checkpoint.LATEST)

    def _kept_checkpoint(self) -> str:
        path = None if self.checkpoint_dir is None else os.path.join(self.checkpoint_dir, checkpoint.LATEST)
        return f"; the last good checkpoint is {path}" if path and os.path.exists(path) else ""

    def _metrics_path(self) -> str | None:
        return None if self.checkpoint_dir is None else os.path.join(self.checkpoint_dir, METRICS)

    def _log(self, record: dict) -> None:
        path = self._metrics_path()
        if path is not None and self._writes:
            with open(path, "a") as f:
                f.write(json.dumps(record) + "\n")

    def _truncate_metrics(self) -> None:
        """Drop metrics lines past the resumed step (written after the checkpoint, before a crash)."""
        path = self._metrics_path()
        if path is None or not self._writes or not os.path.exists(path):
            return
        with open(path) as f:
            lines = [line for line in f if line.strip()]
        kept = []
        for line in lines:
            try:
                if json.loads(line)["step"] <= self.step:
                    kept.append(line)
            except (ValueError, KeyError, TypeError):
                break  # a line cut short by the crash, and anything after it
        with atomic_write(path) as f:
            f.write("".join(kept).encode())


def _writable_dir(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise TrainingError(f"{path}: cannot create the checkpoint folder ({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise TrainingError(f"{path}: the checkpoint folder is not writable")
    return path


def _checked_data(
    data: str | os.PathLike | dict[str, np.ndarray], names: list[str], artifacts: TrainingArtifacts
) -> dict[str, np.ndarray]:
    """The arrays the model reads, checked against the train step's input types and shapes."""
    source = "the data" if isinstance(data, dict) else os.fspath(data)
    arrays = data if isinstance(data, dict) else open_arrays(data)
    inputs = {v.name: v for v in artifacts.train_step.graph.inputs}
    missing = [n for n in names if n not in arrays]
    if missing:
        raise TrainingError(
            f"{source}: no array named {', '.join(repr(n) for n in missing)} "
            f"(the model reads {', '.join(names)}; found {', '.join(arrays) or 'none'})"
        )
    rows = {n: np.shape(arrays[n])[0] if np.ndim(arrays[n]) else None for n in names}
    if len(set(rows.values())) != 1 or None in rows.values():
        raise TrainingError(f"{source}: the arrays must have the same number of rows (first axis): {rows}")
    for name in names:
        value, array = inputs[name], arrays[name]
        if value.elem_type is None:
            raise TrainingError(f"{source}: the model's input '{name}' has no tensor type")
        want = types.np_dtype(value.elem_type)
        if array.dtype != want:
            raise TrainingError(f"{source}: '{name}' is {array.dtype}, the model wants {want}")
        shape = value.shape
        if shape is not None and (
            len(shape) != array.ndim or any(isinstance(d, int) and d != a for d, a in zip(shape[1:], array.shape[1:]))
        ):
            want_shape = ",".join(str(d) if isinstance(d, int) else "?" for d in shape)
            raise TrainingError(f"{source}: '{name}' has shape {list(array.shape)}, the model wants [{want_shape}]")
    _check_classes(source, arrays, artifacts)
    return {n: arrays[n] for n in names}


def _check_classes(source: str, arrays: dict[str, np.ndarray], artifacts: TrainingArtifacts) -> None:
    """cross_entropy targets must be class indices in [0, classes) or the ignore index."""
    layout = artifacts.layout
    if layout.loss_fn != "cross_entropy" or layout.target is None:
        return
    target = np.asarray(arrays[layout.target])
    valid = target if layout.ignore_index is None else target[target != layout.ignore_index]
    if valid.size == 0:
        return
    output = next(v for v in artifacts.inference.graph.outputs if v.name == layout.loss_output)
    classes = output.shape[1] if output.shape is not None and len(output.shape) > 1 else None
    low, high = int(valid.min()), int(valid.max())
    if low < 0 or (isinstance(classes, int) and high >= classes):
        bound = f"[0, {classes})" if isinstance(classes, int) else "non-negative"
        raise TrainingError(f"{source}: '{layout.target}' holds class {low if low < 0 else high}, not in {bound}")
