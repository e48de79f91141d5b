"""One rank of the data-parallel tests (run under ``mpiexec -n N``): trains and saves its losses and state.

Usage: ``python dp_worker.py OUT_DIR MODEL OPTIMIZER ACCUMULATE BATCH STEPS``; writes ``OUT_DIR/rank{R}.npz``.
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

from dp_cases import artifacts_for, data_for  # noqa: E402

from onnxgraph.training import Trainer  # noqa: E402
from onnxgraph.training.distributed import DataParallel  # noqa: E402


def main() -> None:
    out, model, optimizer, accumulate, batch, steps = sys.argv[1:7]
    parallel = DataParallel()
    artifacts = artifacts_for(model, optimizer, int(accumulate), separate_update=True)
    trainer = Trainer(artifacts, data_for(model), batch_size=int(batch), lr=0.05, seed=3, threads=1, parallel=parallel)
    losses = trainer.fit(steps=int(steps))
    state = trainer.state_dict()
    place = np.array([parallel.local_rank, parallel.device_index(1), parallel.device_index(2)])
    np.savez(os.path.join(out, f"rank{parallel.rank}.npz"), __losses__=np.array(losses), __place__=place, **state)


if __name__ == "__main__":
    main()
