"""Gradients of models exported by ``torch.onnx.export``, checked against PyTorch's autograd.

Small ShuffleNet-like, ViT-like, wav2vec2-front-end-like, interpolate and LayerNorm-dedup networks
are exported with both torch exporters (TorchScript ``dynamo=False`` and ``dynamo=True``) with
dynamic batch (and audio length) axes; ``build_gradient`` differentiates each (vector-Jacobian
product of the output, every parameter) and onnxruntime CPU runs the gradient model at two input
sizes; the gradients are compared with ``torch.autograd`` on the same weights, inputs and upstream
gradient. Prints one table row per model and exporter.

    python benchmarks/real_exports_grad.py [--write-golden tests/autodiff/golden]

PyTorch is needed here only (``pip install torch``), never by the package or its tests:
``--write-golden`` stores each exported .onnx and an .npz of inputs, upstream gradients and torch's
gradients, which tests/autodiff/test_real_exports.py checks without torch.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import warnings

import numpy as np
import onnx
import onnx.numpy_helper

from onnxgraph.autodiff import METADATA_KEY, build_gradient
from onnxgraph.runtime.sessions import create_session

OPSET = 18


def _networks():
    """name -> (module factory, example input of a batch/length, dynamic axes per input dim)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class ShuffleNetLike(nn.Module):
        """Stem, max pool, channel shuffle (view/transpose/view of the run-time shape), depthwise
        and pointwise convs, average pool, classifier."""

        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, 2, 1)
            self.dw = nn.Conv2d(8, 8, 3, 1, 1, groups=8)
            self.pw = nn.Conv2d(8, 8, 1)
            self.fc = nn.Linear(8, 5)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.stem(x)), 3, 2, 1)
            b, c, h, w = x.size()
            x = x.view(b, 2, c // 2, h, w).transpose(1, 2).contiguous().view(b, -1, h, w)
            x = F.avg_pool2d(F.relu(self.pw(self.dw(x))), 2)
            return self.fc(x.mean([2, 3]))

    class ViTLike(nn.Module):
        """Patch embedding, class token, one pre-norm attention block, head on the class token."""

        def __init__(self, dim=16, heads=2):
            super().__init__()
            self.heads = heads
            self.patch = nn.Conv2d(3, dim, 4, 4)
            self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.1)
            self.pos = nn.Parameter(torch.randn(1, 17, dim) * 0.1)
            self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
            self.fc1, self.fc2 = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)
            self.head = nn.Linear(dim, 5)

        def forward(self, x):
            x = self.patch(x).flatten(2).transpose(1, 2)
            b, n, d = x.shape
            x = torch.cat([self.cls.expand(b, -1, -1), x], 1) + self.pos
            q, k, v = self.qkv(self.ln1(x)).reshape(b, n + 1, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
            att = ((q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5).softmax(-1)
            x = x + self.proj((att @ v).transpose(1, 2).reshape(b, n + 1, d))
            x = x + self.fc2(F.gelu(self.fc1(self.ln2(x))))
            return self.head(x[:, 0].unsqueeze(1).squeeze(1))

    class Wav2Vec2FrontEnd(nn.Module):
        """wav2vec2's feature encoder in small: Conv1d stack on raw audio (GroupNorm after the
        first), GELU, then LayerNorm and a projection over time."""

        def __init__(self):
            super().__init__()
            self.c0 = nn.Conv1d(1, 8, 10, 5, bias=False)
            self.gn = nn.GroupNorm(8, 8)
            self.c1 = nn.Conv1d(8, 8, 3, 2, bias=False)
            self.c2 = nn.Conv1d(8, 8, 2, 2, bias=False)
            self.ln = nn.LayerNorm(8)
            self.proj = nn.Linear(8, 12)

        def forward(self, wav):
            x = F.gelu(self.gn(self.c0(wav.unsqueeze(1))))
            x = F.gelu(self.c2(F.gelu(self.c1(x))))
            return self.proj(self.ln(x.transpose(1, 2)))

    class Interpolate(nn.Module):
        """F.interpolate with a scale factor (nearest) and with output sizes (bilinear)."""

        def __init__(self):
            super().__init__()
            self.c0 = nn.Conv2d(3, 4, 3, padding=1)
            self.c1 = nn.Conv2d(4, 4, 3, padding=1)
            self.c2 = nn.Conv2d(8, 4, 1)

        def forward(self, x):
            a = F.relu(self.c0(x))
            up = self.c1(F.interpolate(a, scale_factor=2.0, mode="nearest"))
            left = F.interpolate(up, size=(12, 12), mode="bilinear", align_corners=False)
            right = F.interpolate(a, size=(12, 12), mode="bilinear", align_corners=True)
            return self.c2(torch.cat([left, right], 1))

    class LayerNormDedup(nn.Module):
        """Two freshly initialised LayerNorms: equal weights, which the TorchScript exporter
        deduplicates into Identity(ln1.weight)."""

        def __init__(self):
            super().__init__()
            self.fc0, self.fc1, self.fc2 = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 3)
            self.ln1, self.ln2 = nn.LayerNorm(8), nn.LayerNorm(8)

        def forward(self, x):
            return self.fc2(self.ln2(self.fc1(F.gelu(self.ln1(self.fc0(x))))))

    return {
        "shufflenet": (ShuffleNetLike, lambda n, t: (n, 3, 16, 16), {0: "batch"}),
        "vit": (ViTLike, lambda n, t: (n, 3, 16, 16), {0: "batch"}),
        "wav2vec2_frontend": (Wav2Vec2FrontEnd, lambda n, t: (n, t), {0: "batch", 1: "time"}),
        "interpolate": (Interpolate, lambda n, t: (n, 3, 6, 6), {0: "batch"}),
        "layernorm_dedup": (LayerNormDedup, lambda n, t: (n, 6), {0: "batch"}),
    }


FRESH = {"vit", "layernorm_dedup"}
"""Networks exported as initialised: their LayerNorms hold equal weights, which exporters merge."""

SIZES = ((2, 400), (3, 333))
"""(batch, audio length) of the two runs: the gradient model must work at both."""


def export(module, example, dynamic: dict[int, str], dynamo: bool) -> onnx.ModelProto:
    """The module exported by one of torch's exporters, with ``dynamic`` input axes."""
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            dims = {axis: torch.export.Dim.DYNAMIC for axis in dynamic}
            program = torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                input_names=["x"],
                output_names=["y"],
                dynamic_shapes=(dims,),
                opset_version=OPSET,
                verbose=False,
            )
            program.save(buffer)
        else:
            torch.onnx.export(
                module,
                (example,),
                buffer,
                dynamo=False,
                input_names=["x"],
                output_names=["y"],
                dynamic_axes={"x": dynamic, "y": {0: "batch"}},
                opset_version=OPSET,
            )
    return onnx.load_from_string(buffer.getvalue())


def match_parameters(model: onnx.ModelProto, module) -> dict[str, tuple[str, str]]:
    """torch parameter -> (the ONNX value holding it, how): ``same`` (found by name: an
    initializer, or the Identity copy the TorchScript exporter writes for a deduplicated one),
    ``copy`` (an initializer under another name holding it reshaped or transposed, as exporters
    fold Linear weights for MatMul and GroupNorm affine terms), ``tied`` (merged into another
    parameter's initializer: its gradient is the sum of both)."""
    from onnx import numpy_helper

    named = {i.name for i in model.graph.initializer} | {o for n in model.graph.node for o in n.output}
    arrays = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    params = {name: p.detach().numpy() for name, p in module.named_parameters()}
    found = {name: (name, "same") for name in params if name in named}
    claimed = {onnx_name for onnx_name, _ in found.values()}
    for name, value in params.items():
        if name in found:
            continue
        for unclaimed_only in (True, False):
            match = next(
                (
                    other
                    for other, array in arrays.items()
                    if (other not in claimed or not unclaimed_only) and _holds(array, value)
                ),
                None,
            )
            if match is not None:
                found[name] = (match, "copy" if unclaimed_only else "tied")
                claimed.add(match)
                break
    return found


def _holds(array: np.ndarray, value: np.ndarray) -> bool:
    """``array`` is ``value`` reshaped or (2-D) transposed."""
    if array.size != value.size or array.dtype != value.dtype:
        return False
    return np.array_equal(array.reshape(-1), value.reshape(-1)) or (
        value.ndim == 2 and np.array_equal(array.reshape(-1), value.T.reshape(-1))
    )


def torch_case(module, shape_of, matched, arrays, rng) -> dict[str, np.ndarray]:
    """Inputs, upstream gradients and torch's gradients at both sizes, keyed ``K/...``; gradients
    are laid out as the ONNX values that hold the parameters (``K/grad/<ONNX name>``)."""
    import torch

    case = {}
    for k, (batch, length) in enumerate(SIZES):
        x = rng.standard_normal(shape_of(batch, length)).astype(np.float32)
        module.zero_grad()
        y = module(torch.from_numpy(x))
        upstream = rng.standard_normal(tuple(y.shape)).astype(np.float32)
        (y * torch.from_numpy(upstream)).sum().backward()
        case[f"{k}/x"], case[f"{k}/y_grad"] = x, upstream
        for name, param in module.named_parameters():
            if name not in matched:
                continue
            onnx_name, _ = matched[name]
            grad, value = param.grad.numpy(), param.detach().numpy()
            target = arrays.get(onnx_name)
            if target is not None and not np.array_equal(target.reshape(-1), value.reshape(-1)):
                grad = grad.T  # a transposed copy
            grad = grad.reshape(target.shape) if target is not None else grad
            key = f"{k}/grad/{onnx_name}"
            case[key] = case[key] + grad if key in case else grad.copy()
    return case


def onnx_gradients(model: onnx.ModelProto, case: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Our gradients of every value named in ``case``, per size, on onnxruntime CPU."""
    params = sorted({key.split("/", 2)[2] for key in case if "/grad/" in key})
    grad = build_gradient(model, vjp=True, wrt=params)
    mapping = json.loads(grad.metadata_props[METADATA_KEY])
    session = create_session(grad.to_proto().SerializeToString())
    results = []
    for k in range(len(SIZES)):
        feeds = {"x": case[f"{k}/x"], mapping["y@upstream"]: case[f"{k}/y_grad"]}
        outputs = session.run([mapping[p] for p in params], feeds)
        results.append(dict(zip(params, outputs)))
    return results


def worst_error(case: dict[str, np.ndarray], ours: list[dict[str, np.ndarray]]) -> float:
    """The largest |ours - torch| / max(1, max|torch|) over parameters and sizes."""
    worst = 0.0
    for k, grads in enumerate(ours):
        for name, value in grads.items():
            expected = case[f"{k}/grad/{name}"]
            scale = max(1.0, float(np.max(np.abs(expected))))
            worst = max(worst, float(np.max(np.abs(value - expected))) / scale)
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-golden", metavar="DIR", help="store .onnx + .npz golden files here")
    parser.add_argument("--only", help="run one network")
    args = parser.parse_args()
    import torch

    rows = []
    for name, (factory, shape_of, dynamic) in _networks().items():
        if args.only and name != args.only:
            continue
        torch.manual_seed(0)
        module = factory().eval()
        if name not in FRESH:  # no two parameters (or constants) equal by chance
            with torch.no_grad():
                for param in module.parameters():
                    param.add_(torch.randn_like(param) * 0.1)
        example = torch.randn(*shape_of(*SIZES[0]))
        for dynamo in (False, True):
            label = "dynamo" if dynamo else "torchscript"
            try:
                model = export(module, example, dynamic, dynamo)
            except Exception as exc:  # noqa: BLE001 - a row saying why, not a crash
                rows.append((name, label, "-", "-", f"export failed: {str(exc).splitlines()[0][:60]}"))
                continue
            matched = match_parameters(model, module)
            arrays = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
            case = torch_case(module, shape_of, matched, arrays, np.random.default_rng(0))
            kinds = [how for _, how in matched.values()]
            params = f"{len(matched)}: " + ", ".join(f"{kinds.count(h)} {h}" for h in ("same", "copy", "tied"))
            try:
                ours = onnx_gradients(model, case)
            except Exception as exc:  # noqa: BLE001
                rows.append((name, label, len(model.graph.node), params, f"FAILED: {exc}"))
                continue
            error = worst_error(case, ours)
            rows.append((name, label, len(model.graph.node), params, f"{error:.1e}"))
            if args.write_golden and error < 1e-4:
                os.makedirs(args.write_golden, exist_ok=True)
                stem = os.path.join(args.write_golden, f"{name}_{label}")
                onnx.save(model, stem + ".onnx")
                np.savez_compressed(stem + ".npz", **case)
    print("| network | exporter | nodes | parameters found (how) | max abs error / max(1, max abs grad), both sizes |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    return 0 if all(r[-1][0].isdigit() for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
