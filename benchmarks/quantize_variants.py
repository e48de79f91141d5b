"""Which int8 route is fastest for a transformer on this CPU: onnxruntime's quantizers side by side.

    python benchmarks/quantize_variants.py --model /work/wt/exports/bert.torchscript.onnx \\
        --inputs /work/wt/exports/bert.inputs.npz --variants dynamic,ort-fused,ort-fused-dynamic,nbits8,nbits4

Each variant is written from the float model with onnxruntime's own tools (after its
``quant_pre_process`` shape inference, no optimization), then timed against the float model
interleaved in one process (benchmarks/quantize_bench.py's ``_interleaved``: one intra-op thread,
spinning off, CPU time of the process per run), with the cosine similarity of the first output on
the sample input:

* ``dynamic``: ``quantize_dynamic``, s8 weights (what ``onnxgraph quantize`` does);
  ``dynamic-u8``: u8 weights; ``dynamic-per-channel``: per-channel s8 weights.
* ``ort-fused``: onnxruntime's transformers optimizer (``optimize_model``, ``--model-type``, 12
  heads of 64, ``opt_level=0``: its Python fusions, no onnxruntime session), float;
  ``ort-fused-dynamic``: that, then ``quantize_dynamic``.
* ``nbits8``, ``nbits4``: ``MatMulNBitsQuantizer`` weight-only, blocks of 32, symmetric,
  ``accuracy_level=4`` (int8 activations in the kernel); ``nbits4-b128`` etc.: other block sizes.
* ``dynamic-reduce-range``: ``reduce_range=True`` (7-bit weights, advised for non-VNNI x86);
  ``dynamic-all-matmul``: ``MatMulConstBOnly=False`` (attention's activation-by-activation MatMuls
  too); ``dynamic-act-sym``: ``ActivationSymmetric=True`` (s8 activations).
* ``static-qdq``, ``static-qoperator``: ``quantize_static`` of the MatMuls only (u8 activations, s8
  weights, MinMax), calibrated on the sample input and 7 copies with shuffled tokens: no run-time
  activation quantization; ``static-qdq-constb``: only MatMuls with a constant weight.

``--optimize`` runs our optimizer (as ``onnxgraph quantize`` does) before onnxruntime's preparation:
models/build.py's exporter-style models reach their MatMul weights through Identity and Transpose
nodes, so without it nothing of theirs is quantized. The float model timed is always the original.
``--threads`` and ``--session-config KEY=VALUE`` (say ``session.dynamic_block_base=4``) apply to
the float and the quantized session alike.

The models come from benchmarks/real_models.py (``NAME.torchscript.onnx`` and ``NAME.inputs.npz``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np
import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from quantize_bench import _interleaved  # noqa: E402 - benchmarks/ is not a package


class _Reader:
    """Calibration samples for the static variants: the sample input, then copies with shuffled tokens."""

    def __init__(self, feeds: dict[str, np.ndarray], count: int = 8) -> None:
        rng = np.random.default_rng(0)
        ids = {k: v for k, v in feeds.items() if "ids" in k}
        self.samples = [feeds] + [
            {**feeds, **{k: rng.permutation(v.ravel()).reshape(v.shape) for k, v in ids.items()}}
            for _ in range(count - 1)
        ]

    def get_next(self) -> dict[str, np.ndarray] | None:
        return self.samples.pop(0) if self.samples else None


def _write(variant: str, source: str, prepared: str, out: str, model_type: str, feeds: dict[str, np.ndarray]) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if variant == "dynamic":
        quantize_dynamic(prepared, out, weight_type=QuantType.QInt8)
    elif variant == "dynamic-u8":
        quantize_dynamic(prepared, out, weight_type=QuantType.QUInt8)
    elif variant == "dynamic-per-channel":
        quantize_dynamic(prepared, out, weight_type=QuantType.QInt8, per_channel=True)
    elif variant in ("ort-fused", "ort-fused-dynamic"):
        from onnxruntime.transformers.optimizer import optimize_model

        fused = optimize_model(source, model_type=model_type, num_heads=12, hidden_size=768, opt_level=0)
        print(json.dumps({"fused_ops": fused.get_fused_operator_statistics()}), flush=True)
        target = out if variant == "ort-fused" else out + ".fused.onnx"
        fused.save_model_to_file(target)
        if variant == "ort-fused-dynamic":
            extra = {"DefaultTensorType": onnx.TensorProto.FLOAT}  # contrib ops have no inferred types
            quantize_dynamic(target, out, weight_type=QuantType.QInt8, extra_options=extra)
    elif variant == "dynamic-reduce-range":
        quantize_dynamic(prepared, out, weight_type=QuantType.QInt8, reduce_range=True)
    elif variant == "dynamic-all-matmul":
        quantize_dynamic(prepared, out, weight_type=QuantType.QInt8, extra_options={"MatMulConstBOnly": False})
    elif variant == "dynamic-act-sym":
        quantize_dynamic(prepared, out, weight_type=QuantType.QInt8, extra_options={"ActivationSymmetric": True})
    elif variant.startswith("static-"):
        from onnxruntime.quantization import QuantFormat, quantize_static

        fmt = QuantFormat.QOperator if variant == "static-qoperator" else QuantFormat.QDQ
        quantize_static(
            prepared,
            out,
            _Reader(feeds),
            quant_format=fmt,
            op_types_to_quantize=["MatMul"],
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            extra_options={"MatMulConstBOnly": variant == "static-qdq-constb"},
        )
    elif variant.startswith("nbits"):
        from onnxruntime.quantization.matmul_nbits_quantizer import (
            DefaultWeightOnlyQuantConfig,
            MatMulNBitsQuantizer,
        )

        bits, _, block = variant[5:].partition("-b")
        bits, block = int(bits), int(block or 32)
        config = DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=True, accuracy_level=4, bits=bits)
        quantizer = MatMulNBitsQuantizer(
            onnx.load(prepared), bits=bits, block_size=block, is_symmetric=True, accuracy_level=4, algo_config=config
        )
        quantizer.process()
        quantizer.model.save_model_to_file(out)
    else:
        raise SystemExit(f"unknown variant '{variant}'")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="float .onnx")
    parser.add_argument("--inputs", required=True, help=".npz with one sample per model input")
    parser.add_argument("--variants", default="dynamic,ort-fused,ort-fused-dynamic,nbits8,nbits4")
    parser.add_argument("--model-type", default="bert", help="onnxruntime transformers optimizer model type")
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--optimize", action="store_true", help="our optimizer first (needed by builder models)")
    parser.add_argument(
        "--session-config", action="append", default=[], help="KEY=VALUE session config entry for both models"
    )
    args = parser.parse_args()

    from onnxruntime.quantization.shape_inference import quant_pre_process

    from onnxgraph.runtime.sessions import create_session
    from onnxgraph.runtime.stats import ratio_of_medians_ci

    config = dict(entry.split("=", 1) for entry in args.session_config)
    feeds = dict(np.load(args.inputs))
    expected = create_session(args.model).run(None, feeds)[0].ravel()
    with tempfile.TemporaryDirectory() as work:
        prepared, source = os.path.join(work, "prepared.onnx"), args.model
        if args.optimize:
            from onnxgraph.optimizers import optimize
            from onnxgraph.serde.fileio import save

            shapes = {name: list(value.shape) for name, value in feeds.items()}
            source = os.path.join(work, "optimized.onnx")
            save(optimize(args.model, input_shapes=shapes)[0], source)
        quant_pre_process(source, prepared, skip_optimization=True, auto_merge=True)
        for variant in args.variants.split(","):
            out = os.path.join(work, f"{variant}.onnx")
            _write(variant, args.model, prepared, out, args.model_type, feeds)
            got = create_session(out).run(None, feeds)[0].ravel()
            cosine = float(got @ expected / np.linalg.norm(got) / np.linalg.norm(expected))
            float_t, quant_t = _interleaved([args.model, out], feeds, args.runs, 2, args.threads, config)
            ratio = ratio_of_medians_ci(quant_t["cpu"], float_t["cpu"])  # float / variant
            row = {
                "variant": variant,
                "threads": args.threads,
                "session_config": config,
                "float_cpu_ms": round(float(np.median(float_t["cpu"])), 1),
                "variant_cpu_ms": round(float(np.median(quant_t["cpu"])), 1),
                "speedup_cpu": [round(x, 2) for x in ratio],
                "cosine": round(cosine, 5),
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
