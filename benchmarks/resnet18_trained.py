"""A briefly trained ResNet-18 for quantization accuracy: logits with real margins, unlike random weights.

    /work/wt/torchvenv/bin/python benchmarks/resnet18_trained.py --out /tmp/rn [--steps 120] [--size 64]

torchvision's ``resnet18(num_classes=10)`` is trained for ``--steps`` SGD steps (batch 32, one
thread) on ``--size`` x ``--size`` images of a synthetic but learnable task: each class is a fixed
random 3 x 4 x 4 pattern, bilinearly upsampled to the image size and scaled by 0.2, under unit
Gaussian noise and a random brightness shift per image. Training at 224x224 costs 12x as much; a
network trained at 64x64 did not carry over to 224x224 images (30% right), so everything stays at
the training size. Written to OUT:

- ``resnet18_trained.onnx``: the TorchScript export (``dynamo=False``, opset 17, input ``input``
  ``[batch, 3, size, size]``, output ``output`` ``[batch, 10]``), weights inline;
- ``calibration.npz``: ``--images`` fresh images from the same distribution, as a stack
  (``input``: ``[N, 1, 3, size, size]``), for ``onnxgraph quantize --mode static --calibration``;
- ``train.json``: the loss curve and the float model's accuracy and top-2 logit margins on those images.

PyTorch and torchvision are needed here only (the torch venv), never by the package or its tests.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

CLASSES = 10
PATTERN_SCALE = 0.2
"""Class patterns are this faint under unit noise, so that not every image is classified with a wide margin."""


def _images(rng: np.random.Generator, patterns: np.ndarray, count: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    import torch
    import torch.nn.functional as F

    labels = rng.integers(0, CLASSES, count)
    base = PATTERN_SCALE * F.interpolate(
        torch.from_numpy(patterns[labels]), size=(size, size), mode="bilinear", align_corners=False
    )
    noise = rng.standard_normal((count, 3, size, size)).astype(np.float32)
    shift = rng.standard_normal((count, 1, 1, 1)).astype(np.float32) * 0.5
    return (base.numpy() + noise + shift).astype(np.float32), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=120, help="SGD steps, batch 32")
    parser.add_argument("--size", type=int, default=64, help="image height and width: training, export, calibration")
    parser.add_argument("--images", type=int, default=128, help="calibration images written")
    args = parser.parse_args()

    import torch
    import torchvision

    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    patterns = rng.standard_normal((CLASSES, 3, 4, 4)).astype(np.float32)
    model = torchvision.models.resnet18(weights=None, num_classes=CLASSES)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    losses = []
    model.train()
    for step in range(args.steps):
        x, y = _images(rng, patterns, 32, args.size)
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(round(float(loss.detach()), 4))
        if step % 25 == 0:
            print(json.dumps({"step": step, "loss": losses[-1]}), flush=True)
    model.eval()
    os.makedirs(args.out, exist_ok=True)
    images, labels = _images(np.random.default_rng(1), patterns, args.images, args.size)
    with torch.no_grad():
        logits = torch.cat([model(torch.from_numpy(images[i : i + 16])) for i in range(0, len(images), 16)]).numpy()
    top2 = np.sort(logits, axis=1)[:, -2:]
    margins = top2[:, 1] - top2[:, 0]
    np.savez(os.path.join(args.out, "calibration.npz"), input=images[:, None])
    torch.onnx.export(
        model,
        (torch.from_numpy(images[:1]),),
        os.path.join(args.out, "resnet18_trained.onnx"),
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    summary = {
        "steps": args.steps,
        "size": args.size,
        "first_loss": losses[0],
        "last_loss_mean10": round(float(np.mean(losses[-10:])), 4),
        "accuracy": round(float((logits.argmax(1) == labels).mean()), 4),
        "distinct_argmax": int(len(set(logits.argmax(1).tolist()))),
        "margin_min": round(float(margins.min()), 3),
        "margin_median": round(float(np.median(margins)), 3),
        "logit_std": round(float(logits.std()), 3),
        "losses": losses,
    }
    with open(os.path.join(args.out, "train.json"), "w") as f:
        json.dump(summary, f)
    print(json.dumps({k: v for k, v in summary.items() if k != "losses"}), flush=True)


if __name__ == "__main__":
    main()
