"""Top-1 agreement of a statically quantized classifier, and why it moves: logit margins against the error.

    python benchmarks/quantize_agreement.py --model resnet18.onnx --calibration calibration.npz \\
        --variants per-channel,per-tensor,act-sym,entropy,percentile,exclude-ends

The float model is prepared as ``onnxgraph quantize`` prepares it for onnxruntime (``quant_pre_process``
shape inference, no optimization), quantized by ``quantize_static`` (QDQ, u8 activations, s8 weights,
calibrated on every image of the .npz: ``NAME`` of shape ``[N, 1, C, H, W]`` or ``[N, C, H, W]``) with
each variant's settings, and run on the same images. Variants (all per-channel and MinMax unless named):

* ``per-channel``: what ``onnxgraph quantize --mode static --per-channel`` does; ``per-tensor``;
* ``act-sym``: ``ActivationSymmetric=True`` (activation ranges symmetric around 0);
* ``entropy``, ``percentile``: the other calibration methods;
* ``exclude-ends``: the first Conv and the last Gemm kept in float.

Per variant: top-1 agreement, cosine, max abs error, and the margin analysis: the float model's gap
between its two largest logits per image, against the largest change quantization made to any logit
of that image (an image can flip only where the gap is below twice that change).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

import numpy as np
import onnx


class _Reader:
    def __init__(self, name: str, images: np.ndarray) -> None:
        self.items = [{name: image} for image in images]

    def get_next(self) -> dict[str, np.ndarray] | None:
        return self.items.pop(0) if self.items else None


def _run(path: str, name: str, images: np.ndarray) -> np.ndarray:
    from onnxgraph.runtime.sessions import create_session

    session = create_session(path)
    return np.concatenate([session.run(None, {name: image})[0] for image in images])


def _quantize(variant: str, prepared: str, out: str, name: str, images: np.ndarray) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = onnx.load(prepared, load_external_data=False)
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    gemms = [n.name for n in model.graph.node if n.op_type in ("Gemm", "MatMul")]
    method = {"entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}
    quantize_static(
        prepared,
        out,
        _Reader(name, images),
        quant_format=QuantFormat.QDQ,
        per_channel=variant != "per-tensor",
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=method.get(variant, CalibrationMethod.MinMax),
        nodes_to_exclude=[convs[0], gemms[-1]] if variant == "exclude-ends" else [],
        extra_options={"ActivationSymmetric": variant == "act-sym"},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--calibration", required=True, help=".npz with one stack of images")
    parser.add_argument("--variants", default="per-channel,per-tensor,act-sym,entropy,percentile,exclude-ends")
    args = parser.parse_args()

    from onnxruntime.quantization.shape_inference import quant_pre_process

    data = np.load(args.calibration)
    (name,) = data.files
    images = data[name]
    images = images if images.ndim == 5 else images[:, None]
    expected = _run(args.model, name, images)
    top2 = np.sort(expected, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    print(
        json.dumps(
            {
                "images": len(images),
                "distinct_float_argmax": len(set(expected.argmax(1).tolist())),
                "margin_median": round(float(np.median(margin)), 3),
                "margin_min": round(float(margin.min()), 3),
                "logit_std": round(float(expected.std()), 3),
            }
        ),
        flush=True,
    )
    with tempfile.TemporaryDirectory() as work:
        prepared = os.path.join(work, "prepared.onnx")
        quant_pre_process(args.model, prepared, skip_optimization=True)
        for variant in args.variants.split(","):
            out = os.path.join(work, f"{variant}.onnx")
            _quantize(variant, prepared, out, name, images)
            got = _run(out, name, images)
            error = np.abs(got - expected).max(axis=1)
            agree = got.argmax(1) == expected.argmax(1)
            row = {
                "variant": variant,
                "top1": round(float(agree.mean()), 4),
                "cosine": round(
                    float(got.ravel() @ expected.ravel() / np.linalg.norm(got) / np.linalg.norm(expected)), 5
                ),
                "max_abs_error": round(float(error.max()), 3),
                "median_row_error": round(float(np.median(error)), 3),
                "at_risk": int((margin < 2 * error).sum()),
                "flipped_margins": [round(float(m), 3) for m in margin[~agree]],
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
