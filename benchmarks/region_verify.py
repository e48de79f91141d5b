"""Region verification against whole-model verification, in process, model by model.

    python benchmarks/region_verify.py [MODEL.onnx ...]    # default: ONNX's light_* test models

Each model is optimized twice with verification, checking by regions (the default) and with
``verify_regions=False`` (the original from its file and the whole result), regions first. Printed per
model: whether both verdicts and both results agree, the rollbacks, which check decided the region run
(``regions``: the changed regions alone; ``whole``: it fell back, and why) and the wall time of each.
"""

from __future__ import annotations

import glob
import os
import sys
import time


def main() -> None:
    import onnx

    from onnxgraph.optimizers import optimize

    paths = sys.argv[1:]
    if not paths:
        light = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
        paths = sorted(glob.glob(os.path.join(light, "light_*.onnx")))
    for path in paths:
        runs = []
        for regions in (True, False):
            start = time.perf_counter()
            model, report = optimize(path, size_limit=10**8, verify_regions=regions)
            runs.append((model.to_proto().SerializeToString(), report, time.perf_counter() - start))
        (a, ra, ta), (b, rb, tb) = runs
        v = ra.verification
        decided = f"{v.mode}, {v.regions} regions" + (f" ({v.note})" if v.note else "")
        print(
            f"{os.path.basename(path)}: verdicts {'agree' if ra.ok == rb.ok else 'DIFFER'}, results "
            f"{'identical' if a == b else 'DIFFER'}, rollbacks {[(r.pass_name, r.rewrite) for r in ra.rollbacks]}"
            f" / {[(r.pass_name, r.rewrite) for r in rb.rollbacks]}; {decided}; regions {ta:.1f} s, whole {tb:.1f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
