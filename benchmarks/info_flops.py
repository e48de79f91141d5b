"""``onnxgraph info``'s FLOP counts on real exports against hand counts from the architectures.

    python benchmarks/info_flops.py [--exports DIR] [--models resnet18,bert,...]

Runs ``onnxgraph info MODEL --json`` (as a subprocess, with the assumed shapes of its defaults:
batch 1, sequence 128, 224x224 images) on each ``DIR/NAME.EXPORTER.onnx`` that
benchmarks/real_models.py wrote, and prints a markdown table: the MACs ``info`` counts, the MACs
counted by hand below from the configuration the model was built with, their ratio, the FLOPs, and
the nodes ``info`` could not count (target: 0). The hand counts are multiply-accumulates of the
matrix products and convolutions only (elementwise work adds FLOPs, not MACs):

* ResNet-18 at 224x224: every Conv ``Hout·Wout·Cout·Cin·k²`` (stem 7x7/2, four stages of two basic
  blocks, 1x1/2 shortcuts) plus the 512x1000 classifier: 1,814,073,344 MACs.
* Encoder (BERT-base, DistilBERT, GPT-2 body) at sequence ``s``, hidden ``h``, FFN ``f``, per layer:
  ``s·(4h² + 2hf)`` for the Q, K, V, output and FFN projections plus ``2·s²·h`` for attention's
  Q·Kᵀ and P·V. BERT-base (12 layers, h 768, f 3072, s 128): 12 x (905,969,664 + 25,165,824) =
  11,173,625,856 MACs; DistilBERT (6 layers): half of it.
* ViT at 224 with 16x16 patches: the patch Conv ``196·h·3·16²``, then the encoder formula at
  ``s = 197`` tokens (196 patches and the class token), plus the head. ViT-B/16 (torchvision: 12
  layers, h 768, f 3072, 1000 classes): 115,605,504 + 12 x (1,394,343,936 + 59,610,624) + 768,000
  = 17,563,828,224 MACs, i.e. 35.1 GFLOPs. (The "17.6 GFLOPs" often quoted for ViT-B/16 counts
  one multiply-accumulate as one FLOP.)
* Llama-style decoder (benchmarks/real_models.py's small config: 4 layers, h 512, 8 query and 2
  key-value heads of 64, MLP 1376 with gate, up and down): per layer
  ``s·(2h² + 2·h·128 + 3·h·1376) + 2·s²·h``.

Needs the exports (benchmarks/real_models.py) and onnxgraph installed in the running Python.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys


def encoder_macs(
    layers: int, hidden: int, ffn: int, seq: int, kv_hidden: int | None = None, gated: bool = False
) -> int:
    """Matrix-product MACs of a transformer stack: projections, MLP and attention's two products."""
    kv = hidden if kv_hidden is None else kv_hidden
    projections = 2 * hidden * hidden + 2 * hidden * kv  # Q, output; K, V
    mlp = (3 if gated else 2) * hidden * ffn
    return layers * (seq * (projections + mlp) + 2 * seq * seq * hidden)


def resnet18_macs(image: int = 224, classes: int = 1000) -> int:
    """Conv and classifier MACs of torchvision's ResNet-18."""
    size = image // 2  # the 7x7 stride-2 stem
    macs = size * size * 64 * 3 * 49
    size //= 2  # max pool
    c_in = 64
    for stage, c_out in enumerate((64, 128, 256, 512)):
        for block in range(2):
            stride = 2 if stage and block == 0 else 1
            size //= stride
            macs += size * size * c_out * (c_in * 9 + c_out * 9)  # two 3x3 convs
            if stride == 2:
                macs += size * size * c_out * c_in  # the 1x1 shortcut
            c_in = c_out
    return macs + 512 * classes


def vit_macs(layers: int, hidden: int, ffn: int, image: int = 224, patch: int = 16, classes: int = 0) -> int:
    """Patch embedding, encoder at (patches + class token) tokens and the classification head."""
    patches = (image // patch) ** 2
    return patches * hidden * 3 * patch * patch + encoder_macs(layers, hidden, ffn, patches + 1) + hidden * classes


HAND_MACS = {
    "resnet18": resnet18_macs(),
    "bert": encoder_macs(12, 768, 3072, 128),
    "distilbert": encoder_macs(6, 768, 3072, 128),
    "gpt2": encoder_macs(12, 768, 3072, 128),
    "vit_b_16": vit_macs(12, 768, 3072, classes=1000),
    "vit_small": vit_macs(12, 384, 1536),
    "llama": encoder_macs(4, 512, 1376, 128, kv_hidden=128, gated=True),
}


def info(path: str) -> dict:
    """``onnxgraph info PATH --json`` in a subprocess (one model's memory at a time)."""
    result = subprocess.run(
        [sys.executable, "-m", "onnxgraph", "info", path, "--json", "--top", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{path}: {result.stderr.strip()}")
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exports", default="/work/wt/exports", help="folder benchmarks/real_models.py wrote")
    parser.add_argument("--models", default=",".join(HAND_MACS), help="comma-separated model names")
    args = parser.parse_args()
    print("| model | exporter | info MACs | hand MACs | ratio | info FLOPs | nodes not counted |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name in args.models.split(","):
        for exporter in ("torchscript", "dynamo"):
            path = os.path.join(args.exports, f"{name}.{exporter}.onnx")
            if not os.path.exists(path):
                continue
            compute = info(path)["compute"]
            hand = HAND_MACS.get(name)
            ratio = f"{compute['macs'] / hand:.4f}" if hand else "-"
            print(
                f"| {name} | {exporter} | {compute['macs']:,} | {hand or 0:,} | {ratio} | "
                f"{compute['flops']:,} | {compute['nodes_unknown']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
