"""Data-parallel training on MPI: 2 ranks with batch B against 1 process with batch 2B, rank-0-only
writes, and the one-line errors when MPI is missing. Each test launches ``mpiexec -n 2`` on localhost."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from dp_cases import artifacts_for, data_for

from onnxgraph.training import Trainer

pytest.importorskip("mpi4py", reason="the distributed extra (mpi4py, mpich) is not installed")
from onnxgraph.training.distributed import find_mpiexec  # noqa: E402

HERE = os.path.dirname(__file__)
TIMEOUT = 120


def _mpiexec(ranks: int, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [find_mpiexec(), "-n", str(ranks), "-hosts", "localhost", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=env)


@pytest.mark.parametrize(
    ("model", "optimizer", "accumulate"),
    [
        ("mlp", "sgd", 1),
        ("mlp", "adamw", 1),
        ("mlp", "adamw", 2),
        ("transformer", "adamw", 1),
        ("transformer", "sgd", 2),
    ],
)
def test_two_ranks_match_one_process_with_twice_the_batch(tmp_path, model, optimizer, accumulate):
    steps, batch = 20, 4
    _workers(tmp_path, model, optimizer, accumulate, batch, steps)
    single = Trainer(
        artifacts_for(model, optimizer, accumulate), data_for(model), batch_size=2 * batch, lr=0.05, seed=3, threads=1
    )
    expected = single.fit(steps=steps)
    ranks = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(2)]
    for rank, state in enumerate(ranks):
        np.testing.assert_allclose(state.pop("__losses__"), expected, rtol=1e-5)
        # local rank; GPU with one visible (shared), GPU with two (its own)
        assert state.pop("__place__").tolist() == [rank, 0, rank]
    for name, array in single.state_dict().items():
        np.testing.assert_array_equal(ranks[0][name], ranks[1][name])  # identical on every rank
        # relative difference of each tensor as a whole: Adam amplifies last-bit differences of the
        # summation order in near-zero gradients (embedding rows seen once) element by element
        assert np.linalg.norm(ranks[0][name] - array) <= 1e-5 * np.linalg.norm(array), name


def _workers(out, model: str, optimizer: str, accumulate: int, batch: int, steps: int) -> None:
    worker = os.path.join(HERE, "dp_worker.py")
    args = [str(a) for a in (out, model, optimizer, accumulate, batch, steps)]
    done = _mpiexec(2, sys.executable, worker, *args)
    assert done.returncode == 0, done.stderr


def test_batchnorm_running_statistics_are_the_mean_of_the_ranks(tmp_path):
    # each rank normalises with its own shard's batch statistics; the running statistics are averaged
    _workers(tmp_path, "cnn", "sgd", 1, 4, 1)
    ranks = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(2)]
    data = data_for("cnn")
    batch = np.random.default_rng([3, 0]).permutation(len(data["x"]))[:8]  # step 1's global batch (seed 3)
    shards = []
    for half in (batch[:4], batch[4:]):
        alone = Trainer(artifacts_for("cnn", "sgd", 1), {k: v[half] for k, v in data.items()}, batch_size=4)
        alone.fit(steps=1)
        shards.append(alone.state_dict())
    buffers = artifacts_for("cnn", "sgd", 1).layout.buffers
    assert buffers
    for name in buffers:
        np.testing.assert_array_equal(ranks[0][name], ranks[1][name])
        np.testing.assert_allclose(ranks[0][name], (shards[0][name] + shards[1][name]) / 2, rtol=1e-5, atol=1e-7)
    assert np.isfinite(ranks[0]["__losses__"]).all()


@pytest.fixture
def mlp_files(tmp_path):
    import onnx
    from dp_cases import build

    model = tmp_path / "mlp.onnx"
    onnx.save(build.mlp((32, 16, 10)), model)
    data = tmp_path / "train.npz"
    np.savez(data, **data_for("mlp"))
    return model, data


def _train(model, data, ckpt, batch, steps, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "onnxgraph", "train", str(model), "--data", str(data), "--loss-fn", "cross_entropy",
        "--optimizer", "adamw", "--lr", "0.01", "--batch-size", str(batch), "--steps", str(steps), "--threads", "1",
        "--checkpoint-dir", str(ckpt), "--checkpoint-every", "4", *extra,
    ]  # fmt: skip


def _metrics(ckpt) -> list[dict]:
    import json

    return [json.loads(line) for line in (ckpt / "metrics.jsonl").read_text().splitlines()]


def test_nproc_trains_like_one_process_and_only_rank_0_writes(tmp_path, mlp_files):
    model, data = mlp_files
    one = subprocess.run(_train(model, data, tmp_path / "one", 8, 10), capture_output=True, text=True, timeout=TIMEOUT)
    assert one.returncode == 0, one.stderr
    out = tmp_path / "two.onnx"
    two = subprocess.run(
        [*_train(model, data, tmp_path / "two", 4, 10, "--nproc", "2"), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("step 10: loss") == 1  # one summary line: rank 0's
    steps = [m["step"] for m in _metrics(tmp_path / "two")]
    assert steps == list(range(1, 11))  # one metrics line per step, not one per rank
    np.testing.assert_allclose(
        [m["loss"] for m in _metrics(tmp_path / "two")], [m["loss"] for m in _metrics(tmp_path / "one")], rtol=1e-5
    )
    assert out.exists()
    assert sorted(os.listdir(tmp_path / "two")) == ["latest.safetensors", "metrics.jsonl"]


def test_eval_loss_is_shared_between_ranks_and_equals_one_process(tmp_path, mlp_files):
    model, data = mlp_files
    evals = tmp_path / "eval.npz"
    np.savez(evals, **{k: v[:27] for k, v in data_for("mlp").items()})  # 27 rows: uneven shares
    one = subprocess.run(
        [*_train(model, data, tmp_path / "one", 8, 4), "--eval-data", str(evals), "--json"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [*_train(model, data, tmp_path / "two", 4, 4, "--nproc", "2"), "--eval-data", str(evals), "--json"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert two.returncode == 0, two.stderr
    import json

    expected, got = json.loads(one.stdout)["eval_loss"], json.loads(two.stdout)["eval_loss"]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_allreduce_packs_dtypes_into_buckets(tmp_path):
    script = (
        "import numpy as np\n"
        "from onnxgraph.training import distributed\n"
        "distributed.BUCKET_BYTES = 24\n"  # 6 float32 or 3 float64 per Allreduce call
        "p = distributed.DataParallel()\n"
        "a = np.arange(10, dtype=np.float32).reshape(2, 5) * (p.rank + 1)\n"
        "b = np.full((3,), p.rank + 0.5)\n"
        "c = np.ones((7,), np.float32)\n"
        "out = p.allreduce_sum({'a': a}, {'b': b, 'c': c})\n"
        "assert out['a'].shape == (2, 5) and out['a'].dtype == np.float32\n"
        "np.testing.assert_array_equal(out['a'], np.arange(10).reshape(2, 5) * 3)\n"
        "np.testing.assert_array_equal(out['b'], np.full(3, 2.0))\n"
        "np.testing.assert_array_equal(out['c'], np.full(7, 2.0))\n"
        "print(f'ok{p.rank}')\n"
    )
    done = _mpiexec(2, sys.executable, "-c", script)
    assert done.returncode == 0, done.stderr
    assert sorted(re.findall(r"ok(\d)", done.stdout)) == ["0", "1"]  # mpiexec may interleave the ranks' output


def test_resume_with_another_number_of_ranks(tmp_path, mlp_files):
    model, data = mlp_files
    whole = subprocess.run(_train(model, data, tmp_path / "whole", 8, 12), capture_output=True, timeout=TIMEOUT)
    assert whole.returncode == 0, whole.stderr
    ckpt = tmp_path / "ckpt"
    first = subprocess.run(_train(model, data, ckpt, 4, 8, "--nproc", "2"), capture_output=True, timeout=TIMEOUT)
    assert first.returncode == 0, first.stderr
    rest = subprocess.run(_train(model, data, ckpt, 8, 12, "--resume"), capture_output=True, timeout=TIMEOUT)
    assert rest.returncode == 0, rest.stderr
    np.testing.assert_allclose(
        [m["loss"] for m in _metrics(ckpt)], [m["loss"] for m in _metrics(tmp_path / "whole")], rtol=1e-5
    )


def test_a_nan_on_one_rank_stops_every_rank_naming_it(tmp_path, mlp_files):
    model, _ = mlp_files
    arrays = data_for("mlp")
    first = np.random.default_rng([3, 0]).permutation(len(arrays["x"]))[:8]  # step 1's global batch (seed 3)
    arrays["x"][first[6]] = np.nan  # in rank 1's half
    data = tmp_path / "nan.npz"
    np.savez(data, **arrays)
    done = subprocess.run(
        [*_train(model, data, tmp_path / "ckpt", 4, 5, "--nproc", "2"), "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "step 1 (epoch 1): the loss is not finite on rank 1 (nan)" in lines[0]


def test_an_error_on_one_rank_stops_the_others_waiting_for_it():
    script = (
        "from onnxgraph.cli.train import _rank_errors\n"
        "from onnxgraph.errors import TrainingError\n"
        "from onnxgraph.training.distributed import DataParallel\n"
        "p = DataParallel()\n"
        "with _rank_errors(p):\n"
        "    if p.rank == 1:\n"
        "        raise TrainingError('ckpt: disk full')\n"
        "    p.comm.allgather(0)\n"  # rank 0 waits for rank 1 in a step's collective
        "print('rank 0 went on')\n"
    )
    done = _mpiexec(2, sys.executable, "-c", script)  # a hang would end in TimeoutExpired
    assert done.returncode == 2
    assert "went on" not in done.stdout
    assert [line for line in done.stderr.splitlines() if line.strip()] == ["error: rank 1: ckpt: disk full"]


def test_missing_mpi4py_or_mpiexec_is_one_line(tmp_path, monkeypatch, mlp_files):
    from click.testing import CliRunner

    from onnxgraph.cli import cli

    model, data = mlp_files
    args = [str(a) for a in _train(model, data, tmp_path / "c", 4, 2, "--nproc", "2")[3:]]
    monkeypatch.delenv("PMI_SIZE", raising=False)
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: data-parallel training needs mpi4py; install it with: pip install 'onnxgraph[distributed]'"
    ]
    monkeypatch.delitem(sys.modules, "mpi4py")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: no mpiexec found next to {tmp_path / 'python'} or on PATH; "
        "install it with: pip install 'onnxgraph[distributed]'"
    ]


def _rank_process(ranks_of: int, rank: int) -> int | None:
    """The pid of the process with ``PMI_RANK=rank`` among the descendants of ``ranks_of``."""
    parents = {}
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    for pid in parents:
        ancestor = parents.get(pid)
        while ancestor and ancestor != ranks_of:
            ancestor = parents.get(ancestor)
        if ancestor == ranks_of:
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if f"PMI_RANK={rank}".encode() in f.read().split(b"\0"):
                        return pid
            except OSError:
                continue
    return None


def test_a_killed_rank_stops_every_rank_and_the_run_resumes_on_one(tmp_path, mlp_files):
    import signal
    import time

    model, data = mlp_files
    steps = 3000
    ckpt = tmp_path / "ckpt"
    process = subprocess.Popen(
        _train(model, data, ckpt, 4, steps, "--nproc", "2"),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        victim = None
        while process.poll() is None and time.monotonic() < deadline:
            metrics = ckpt / "metrics.jsonl"
            if metrics.exists() and metrics.read_text().count("\n") >= 20:
                victim = _rank_process(process.pid, 1)
                if victim is not None:
                    os.kill(victim, signal.SIGKILL)
                    break
            time.sleep(0.01)
        if victim is None:
            pytest.skip("the run ended before a rank could be killed")
        _, stderr = process.communicate(timeout=30)  # every rank stops
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode != 0
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines == ["error: rank 1 was killed by SIGKILL; mpiexec stopped every rank"], stderr
    kept = [m["step"] for m in _metrics(ckpt)]
    resumed = subprocess.run(
        _train(model, data, ckpt, 8, kept[-1] + 8, "--resume"), capture_output=True, timeout=TIMEOUT
    )
    assert resumed.returncode == 0, resumed.stderr
    whole = subprocess.run(_train(model, data, tmp_path / "w", 8, kept[-1] + 8), capture_output=True, timeout=TIMEOUT)
    assert whole.returncode == 0, whole.stderr
    np.testing.assert_allclose(
        [m["loss"] for m in _metrics(ckpt)], [m["loss"] for m in _metrics(tmp_path / "w")], rtol=1e-5
    )
