"""What each way of giving a model to onnxruntime costs: session creation time, memory, one run.

    python benchmarks/session_options.py MODEL.onnx [--mode file,file-noprepack,bytes-noprepack,ir]

Each mode runs in its own interpreter, after the model is loaded (as verification has it loaded):

* ``file``: ``InferenceSession(path)`` with onnxruntime's defaults (pre-packing on).
* ``file-noprepack``: the same with ``session.disable_prepacking``.
* ``bytes-noprepack``: ``InferenceSession(model.to_proto().SerializeToString())`` without pre-packing
  (what verification did with an in-memory candidate before).
* ``ir``: :func:`onnxgraph.runtime.ir_session.ir_session`: the graph as a small protobuf, the weights as
  OrtValues over the IR's arrays (``add_initializer``), no pre-packing.
* ``ir-noarena``: ``ir`` with onnxruntime's CPU arena off.

Printed per mode: seconds to create the session and the peak rise of resident memory while creating
it (over the loaded model), then the same for one run on seeded inputs (dynamic dims at 2).
onnxruntime's graph optimizations are off, as in verification.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

MODES = ("file", "file-noprepack", "bytes-noprepack", "ir", "ir-noarena")


def _child(path: str, mode: str) -> None:
    import onnxgraph
    from onnxgraph.runtime.inputs import random_inputs, specs_of
    from onnxgraph.runtime.ir_session import NO_PREPACKING, ir_session
    from onnxgraph.runtime.memory import PeakRss
    from onnxgraph.runtime.sessions import create_session

    model = onnxgraph.load(path)
    for value in model.graph.initializers.values():  # touch the weights, as the passes and checks do
        value.const_value.numpy()
    feeds = random_inputs(specs_of(model), dynamic_dim=2)
    peak = PeakRss()
    peak.start()
    start = time.perf_counter()
    if mode.startswith("file"):
        entries = NO_PREPACKING if "noprepack" in mode else {}
        session = create_session(path, optimization="disable", config_entries=entries)
    elif mode == "bytes-noprepack":
        session = create_session(
            model.to_proto().SerializeToString(), optimization="disable", config_entries=NO_PREPACKING
        )
    else:
        if mode == "ir-noarena":
            from onnxgraph.runtime import sessions

            real = sessions.session_options

            def no_arena(threads=None):
                options = real(threads)
                options.enable_cpu_mem_arena = False
                return options

            sessions.session_options = no_arena
        handle = ir_session(model)  # holds the shared OrtValues while the session lives
        session = handle.session
    created = time.perf_counter() - start
    creating = peak.increase_mb()
    peak.start()
    start = time.perf_counter()
    names = [o.name for o in session.get_outputs()]
    session.run(names, {i.name: feeds[i.name] for i in session.get_inputs()})
    ran = time.perf_counter() - start
    print(json.dumps({"create_s": created, "create_mb": creating, "run_s": ran, "run_mb": peak.increase_mb()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--mode", default=",".join(MODES))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.model, args.mode)
        return
    print(f"{'mode':<16} {'create':>8} {'+MiB':>7} {'run':>7} {'+MiB':>7}")
    for mode in args.mode.split(","):
        done = subprocess.run(
            [sys.executable, __file__, args.model, "--mode", mode, "--child"], capture_output=True, text=True
        )
        if done.returncode:
            print(f"{mode:<16} failed: {done.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"{mode:<16} {r['create_s']:7.2f}s {r['create_mb']:7.0f} {r['run_s']:6.2f}s {r['run_mb']:7.0f}", flush=True
        )


if __name__ == "__main__":
    main()
