"""How float16 conversion is judged: scale-based (relative L2) against the old element-wise check.

Builds ResNet-like CNNs with models/build.py (BatchNormalization with trained-looking statistics,
residual Adds, 1,000 logits of which many lie near zero), converts each to float16 with
``onnxgraph.convert`` and runs original and result on onnxruntime on the same seeded inputs. Prints,
per model, the relative L2 error the command judges by, the worst element's error over max|output|,
and how many elements an element-wise check with float16's rtol 1e-2 / atol 1e-3 would reject.

With torch installed, ``--torch`` adds torchvision-free exports of a ResNet-18-like network and a
small ViT (TorchScript exporter) to the table.

Usage: python benchmarks/fp16_judgement.py [--torch]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile

import numpy as np
import onnx

import onnxgraph
from onnxgraph.convert.pipeline import ConvertOptions, convert_model
from onnxgraph.convert.verify import HALF_TOLERANCE, compare_scaled
from onnxgraph.runtime.compare import compare_arrays
from onnxgraph.runtime.sessions import create_session

HERE = os.path.dirname(os.path.abspath(__file__))
FP16 = onnx.TensorProto.FLOAT16


def _build():
    spec = importlib.util.spec_from_file_location("models_build", os.path.join(HERE, "..", "models", "build.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _models() -> dict[str, onnx.ModelProto]:
    build = _build()
    return {
        "resnet_like 2 blocks, 16 ch, 10 logits": build.resnet_like(blocks=2, channels=16),
        "resnet_like 4 blocks, 16 ch, 1000 logits": build.resnet_like(
            blocks=4, channels=16, classes=1000, head_scale=1.0
        ),
        "resnet_like 8 blocks, 32 ch, 1000 logits": build.resnet_like(
            blocks=8, channels=32, image=32, classes=1000, head_scale=1.0
        ),
        "resnet_like zoo layout (IR 3, opset 8)": build.resnet_like(
            blocks=4, channels=16, ir_version=3, opset=8, initializers_as_inputs=True
        ),
    }


def _torch_models(folder: str) -> dict[str, onnx.ModelProto]:
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, c: int):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(c, c, 3, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(),
                nn.Conv2d(c, c, 3, padding=1, bias=False),
                nn.BatchNorm2d(c),
            )

        def forward(self, x):
            return torch.relu(self.body(x) + x)

    resnet = nn.Sequential(
        nn.Conv2d(3, 64, 7, 2, 3),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
        *[Block(64) for _ in range(8)],
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 1000),
    )
    layer = nn.TransformerEncoderLayer(192, 3, 768, batch_first=True, norm_first=True)
    vit = nn.Sequential(nn.Conv2d(3, 192, 16, 16), nn.Flatten(2))

    class ViT(nn.Module):
        def __init__(self):
            super().__init__()
            self.patches, self.encoder = vit, nn.TransformerEncoder(layer, 4)
            self.head = nn.Linear(192, 1000)

        def forward(self, x):
            tokens = self.patches(x).transpose(1, 2)
            return self.head(self.encoder(tokens).mean(1))

    out = {}
    for name, module, shape in (
        ("torch ResNet-18-like", resnet, (1, 3, 224, 224)),
        ("torch ViT-small-like", ViT(), (1, 3, 224, 224)),
    ):
        path = os.path.join(folder, name.replace(" ", "_") + ".onnx")
        torch.onnx.export(module.eval(), torch.randn(*shape), path, dynamo=False, opset_version=17)
        out[name] = onnx.load(path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch", action="store_true", help="also export small torch models (needs torch)")
    args = parser.parse_args()
    print("| model | relative L2 | worst / max|output| | element-wise rejects | scale-based verdict |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        models = _models()
        if args.torch:
            models.update(_torch_models(folder))
        for name, proto in models.items():
            source = os.path.join(folder, "model.onnx")
            onnx.save(proto, source)
            converted, _ = convert_model(onnxgraph.load(source), ConvertOptions(precision="fp16"))
            half = os.path.join(folder, "half.onnx")
            onnxgraph.save(converted, half)
            session = create_session(source)
            spec = session.get_inputs()[0]
            shape = [d if isinstance(d, int) else 4 for d in spec.shape]
            x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            expected = session.run(None, {spec.name: x})[0]
            actual = create_session(half).run(None, {spec.name: x.astype(np.float16)})[0].astype(np.float32)
            scaled = compare_scaled("y", expected, actual, HALF_TOLERANCE[FP16])
            elementwise = compare_arrays("y", expected, actual, tolerance=(1e-2, 1e-3))
            verdict = "pass" if scaled.passed else "FAIL"
            print(
                f"| {name} | {scaled.relative_l2:.2e} | {scaled.max_abs_over_scale:.2e} | "
                f"{elementwise.mismatches}/{elementwise.size} | {verdict} |"
            )


if __name__ == "__main__":
    main()
