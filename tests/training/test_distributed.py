"""Data-parallel training on MPI: 2 ranks with batch B against 1 process with batch 2B, rank-0-only
writes, and the one-line errors when MPI is missing. Each test launches ``mpiexec -n 2`` on localhost."""

from __future__ import annotations

import os
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
    [("mlp", "sgd", 1), ("mlp", "adamw", 1), ("mlp", "adamw", 2)],
)
def test_two_ranks_match_one_process_with_twice_the_batch(tmp_path, model, optimizer, accumulate):
    steps, batch = 20, 4
    done = _mpiexec(
        2, sys.executable, os.path.join(HERE, "dp_worker.py"), str(tmp_path), model, optimizer, str(accumulate),
        str(batch), str(steps),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    single = Trainer(
        artifacts_for(model, optimizer, accumulate), data_for(model), batch_size=2 * batch, lr=0.05, seed=3, threads=1
    )
    expected = single.fit(steps=steps)
    ranks = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(2)]
    for state in ranks:
        np.testing.assert_allclose(state.pop("__losses__"), expected, rtol=1e-5)
    for name, array in single.state_dict().items():
        np.testing.assert_array_equal(ranks[0][name], ranks[1][name])  # identical on every rank
        np.testing.assert_allclose(ranks[0][name], array, rtol=1e-5, atol=1e-6)
