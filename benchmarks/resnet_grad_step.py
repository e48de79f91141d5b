"""Forward + backward of ResNet-18 with training-mode BatchNormalization: onnxgraph's gradient model on
onnxruntime CPU against PyTorch eager autograd on the same weights and batch, and the gradient graph's
node count.

    python benchmarks/resnet_grad_step.py [--image 112] [--batch 8] [--runs 50] [--threads 1 2]
    python benchmarks/resnet_grad_step.py --save before.onnx [--save-forward forward.onnx]  # no timing
    python benchmarks/resnet_grad_step.py --also before=before.onnx   # time a saved gradient model too

``--save`` with ``PYTHONPATH`` pointing at an older checkout and ``--also`` in the current one compares
rule versions in one process, interleaved run by run with PyTorch so load changes hit all alike.
PyTorch is optional (never a package dependency): without it only the onnxruntime times are printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import time

import numpy as np
import onnx
from onnx import numpy_helper

from onnxgraph.autodiff import METADATA_KEY, build_gradient
from onnxgraph.runtime.sessions import create_session

_spec = importlib.util.spec_from_file_location(
    "onnxgraph_models_build", os.path.join(os.path.dirname(__file__), "..", "models", "build.py")
)
models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(models)


NETWORKS = {
    "resnet18": lambda image, classes: models.resnet18(classes=classes, image=image),
    "mlp": lambda image, classes: models.mlp((784, 256, classes)),
    "cnn": lambda image, classes: models.cnn(channels=32, image=image, classes=classes),
}
"""Networks of models/build.py (symbolic batch, input ``x``, output ``logits``); ``mlp`` ignores ``image``."""


def forward_model(image: int, classes: int, network: str = "resnet18"):
    """A network of :data:`NETWORKS` with its BatchNormalization (if any) in training mode."""
    import onnxgraph
    from onnxgraph.autodiff.api import remove_dead_nodes
    from onnxgraph.training.modes import to_training_mode

    model = onnxgraph.load(NETWORKS[network](image, classes))
    to_training_mode(model, model.opset_imports.get("", models.OPSET))
    remove_dead_nodes(model)  # the running-statistics updates nobody reads here
    return model


def gradient_model(image: int, classes: int, network: str = "resnet18") -> onnx.ModelProto:
    """:func:`forward_model` with cross-entropy gradients of every weight."""
    model = forward_model(image, classes, network)
    statistics = {n.inputs[k].name for n in model.graph if n.op_type == "BatchNormalization" for k in (3, 4)}
    wrt = [name for name in model.graph.initializers if name not in statistics]
    return build_gradient(model, loss_fn="cross_entropy", output="logits", wrt=wrt).to_proto()


def onnxruntime_step(proto: onnx.ModelProto, batch: dict, threads: int, params: list[str]):
    """A callable returning the loss and the gradients of ``params``, in that order."""
    mapping = json.loads({p.key: p.value for p in proto.metadata_props}[METADATA_KEY])
    outputs = ["loss", *[mapping[name] for name in params]]
    session = create_session(proto.SerializeToString(), threads=threads, memory_pattern=False)
    return lambda: session.run(outputs, batch)


def torch_step(params: dict, batch: dict, threads: int):
    """The same ResNet-18 written with torch.nn.functional, BatchNormalization in training mode."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    p = {k: torch.tensor(v, requires_grad=not k.endswith((".mean", ".var"))) for k, v in params.items()}

    def conv_bn(h, name, stride, relu):
        kernel = p[f"{name}.weight"].shape[-1]
        h = F.conv2d(h, p[f"{name}.weight"], stride=stride, padding=kernel // 2)
        h = F.batch_norm(
            h, p[f"{name}.bn.mean"], p[f"{name}.bn.var"], p[f"{name}.bn.scale"], p[f"{name}.bn.bias"], training=True
        )
        return torch.relu(h) if relu else h

    def forward(x):
        h = F.max_pool2d(conv_bn(x, "conv1", 2, True), 3, 2, 1)
        for stage in range(1, 5):
            for block in range(2):
                name, stride = f"layer{stage}.{block}", 2 if stage > 1 and block == 0 else 1
                out = conv_bn(conv_bn(h, f"{name}.conv1", stride, True), f"{name}.conv2", 1, False)
                shortcut = conv_bn(h, f"{name}.downsample", stride, False) if f"{name}.downsample.weight" in p else h
                h = torch.relu(out + shortcut)
        return F.linear(h.mean(dim=(2, 3)), p["fc.weight"], p["fc.bias"])

    x, target = torch.tensor(batch["x"]), torch.tensor(batch["target"])
    trained = [t for t in p.values() if t.requires_grad]

    def step():
        for t in trained:
            t.grad = None
        loss = F.cross_entropy(forward(x), target)
        loss.backward()
        return [loss.detach().numpy(), *[t.grad.numpy() for t in trained]]

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=int, default=112)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--save", help="Write the gradient model to this path and stop.")
    parser.add_argument("--save-forward", help="Also write the training-mode forward model (ort_training_step.py).")
    parser.add_argument("--also", nargs="*", default=[], help="LABEL=PATH gradient models to time as well.")
    parser.add_argument(
        "--network", choices=sorted(NETWORKS), default="resnet18", help="What --save writes (timing: resnet18)."
    )
    parser.add_argument(
        "--sensitivity",
        type=float,
        metavar="EPS",
        help="Print how far float64 PyTorch's own gradients move when the input is scaled by 1 + EPS*noise, "
        "and stop: the spread any float32 gradient has on this network (ReLU and max-pool kinks).",
    )
    args = parser.parse_args()
    if args.sensitivity:
        _sensitivity(args.image, args.batch, args.classes, args.sensitivity)
        return
    if args.save:
        proto = gradient_model(args.image, args.classes, args.network)
        onnx.save(proto, args.save)
        print(f"{args.save}: {len(proto.graph.node)} nodes")
        if args.save_forward:
            onnx.save(forward_model(args.image, args.classes, args.network).to_proto(), args.save_forward)
        return
    proto = gradient_model(args.image, args.classes)
    rng = np.random.default_rng(0)
    batch = {
        "x": rng.standard_normal((args.batch, 3, args.image, args.image)).astype(np.float32),
        "target": rng.integers(0, args.classes, args.batch).astype(np.int64),
    }
    variants = {"onnxgraph": proto, **{k: onnx.load(v) for k, v in (a.split("=", 1) for a in args.also)}}
    for label, model in variants.items():
        print(f"{label}: gradient graph {len(model.graph.node)} nodes")
    try:
        import torch  # noqa: F401
    except ImportError:
        torch_available = False
    else:
        torch_available = True
    params = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer if i.name.split(".")[0] in _roots()}
    for threads in args.threads:
        trained = [k for k in params if not k.endswith((".mean", ".var"))]
        steps = {label: onnxruntime_step(model, batch, threads, trained) for label, model in variants.items()}
        if torch_available:
            steps["pytorch"] = torch_step(params, batch, threads)
            reference = steps["pytorch"]()
            for label, fn in steps.items():
                worst = max(_relative_error(a, b) for a, b in zip(fn(), reference))
                print(f"{label}: loss {float(fn()[0]):.6f}, largest gradient error relative to PyTorch's {worst:.1e}")
        samples: dict[str, list[float]] = {k: [] for k in steps}
        for run in range(args.warmup + args.runs):
            for label, fn in steps.items():
                start = time.perf_counter()
                fn()
                if run >= args.warmup:
                    samples[label].append(time.perf_counter() - start)
        p50 = {k: statistics.median(v) * 1e3 for k, v in samples.items()}
        line = ", ".join(f"{k} p50 {v:.1f} ms" for k, v in p50.items())
        if torch_available:
            line += " | PyTorch/x: " + ", ".join(
                f"{k} {p50['pytorch'] / v:.2f}x" for k, v in p50.items() if k != "pytorch"
            )
        print(f"{threads} thread(s), image {args.image}, batch {args.batch}, {args.runs} runs: {line}", flush=True)


def _sensitivity(image: int, batch: int, classes: int, eps: float) -> None:
    """Worst relative change of float64 PyTorch's gradients under a relative input perturbation ``eps``."""
    proto = gradient_model(image, classes)
    params = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in proto.graph.initializer}
    params = {k: v for k, v in params.items() if k.split(".")[0] in _roots()}
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, image, image))
    target = rng.integers(0, classes, batch).astype(np.int64)
    base = torch_step(params, {"x": x, "target": target}, 1)()
    noisy = x * (1 + eps * np.random.default_rng(1).standard_normal(x.shape))
    moved = torch_step(params, {"x": noisy, "target": target}, 1)()
    worst = max(map(_relative_error, moved, base))
    print(f"float64 PyTorch, input moved by {eps:g}: gradients move by up to {worst:.1e}")


def _relative_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    """max |ours - theirs| over max |theirs|."""
    return float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-12))


def _roots() -> set[str]:
    return {"conv1", "layer1", "layer2", "layer3", "layer4", "fc"}


if __name__ == "__main__":
    main()
