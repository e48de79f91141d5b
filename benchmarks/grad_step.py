"""One training step (forward + backward) with the gradient model on onnxruntime CPU, against PyTorch
eager autograd on the same network, weights and batch; plus the build time of a BERT-base-sized
gradient graph.

    python benchmarks/grad_step.py [--threads 2] [--runs 20] [--skip-bert]

PyTorch is optional (``pip install 'onnxgraph[bench]'`` style extra, never a package or test
dependency): without it only the onnxruntime times and the build time are printed. Results go to
docs/benchmarks.md by hand, with the command line used.
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


def params_of(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The trainable float initializers (not BatchNormalization statistics, not the causal mask)."""
    skip = ("running", "causal_mask", "attn_scale")
    return {
        i.name: numpy_helper.to_array(i)
        for i in model.graph.initializer
        if i.data_type == onnx.TensorProto.FLOAT and i.dims and not any(s in i.name for s in skip)
    }


def onnxruntime_step(model: onnx.ModelProto, params: dict, batch: dict, threads: int):
    """A callable running forward+backward on onnxruntime with the parameters fed as inputs."""
    grad = build_gradient(model, loss_fn="cross_entropy", output="logits", wrt=list(params))
    mapping = json.loads(grad.metadata_props[METADATA_KEY])
    proto = grad.to_proto()
    kept = [i for i in proto.graph.initializer if i.name not in params]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(kept)
    for name, value in params.items():
        proto.graph.input.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, value.shape))
    session = create_session(proto.SerializeToString(), threads=threads, memory_pattern=False)
    outputs = ["loss", *[mapping[p] for p in params]]
    feeds = {**batch, **params}
    return lambda: session.run(outputs, feeds)


def torch_step(kind: str, params: dict, batch: dict, meta: dict, threads: int):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    p = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    target = torch.tensor(batch["target"])

    def mlp(x):
        h = torch.relu(F.linear(x, p["fc0.weight"], p["fc0.bias"]))
        return F.linear(h, p["fc1.weight"], p["fc1.bias"])

    def cnn(x):
        c = meta["channels"]
        h = F.conv2d(x, p["conv1.weight"], p["conv1.bias"], padding=1)
        h = F.batch_norm(
            h,
            torch.zeros(c),
            torch.ones(c),
            p["bn1.scale"],
            p["bn1.bias"],
            training=False,
            eps=1e-5,
        )
        h = F.max_pool2d(torch.relu(h), 2, 2)
        h = torch.relu(F.conv2d(h, p["dw.weight"], padding=1, groups=c))
        h = torch.relu(F.conv2d(h, p["pw.weight"], p["pw.bias"]))
        return F.linear(h.mean(dim=(2, 3)), p["fc.weight"], p["fc.bias"])

    def transformer(ids):
        heads, seq, dim = meta["heads"], meta["seq"], meta["dim"]
        mask = torch.triu(torch.full((seq, seq), -1e4), 1)
        h = F.embedding(ids, p["embed"]) + p["pos"]
        for i in range(meta["layers"]):
            q_ = f"l{i}."
            n = F.layer_norm(h, (dim,), p[q_ + "ln1.scale"], p[q_ + "ln1.bias"])
            q, k, v = (
                (n @ p[q_ + w]).reshape(-1, seq, heads, dim // heads).transpose(1, 2) for w in ("wq", "wk", "wv")
            )
            attn = torch.softmax(q @ k.transpose(-1, -2) * (dim // heads) ** -0.5 + mask, dim=-1)
            ctx = (attn @ v).transpose(1, 2).reshape(-1, seq, dim)
            h = h + ctx @ p[q_ + "wo"]
            n = F.layer_norm(h, (dim,), p[q_ + "ln2.scale"], p[q_ + "ln2.bias"])
            h = h + F.gelu(n @ p[q_ + "w1"] + p[q_ + "b1"]) @ p[q_ + "w2"] + p[q_ + "b2"]
        h = F.layer_norm(h, (dim,), p["lnf.scale"], p["lnf.bias"])
        return (h @ p["head"]).transpose(1, 2)

    forward = {"mlp": mlp, "cnn": cnn, "transformer": transformer}[kind]
    x = torch.tensor(batch["ids"] if kind == "transformer" else batch["x"])

    def step():
        for t in p.values():
            t.grad = None
        loss = F.cross_entropy(forward(x), target)
        loss.backward()
        return [loss.detach().numpy(), *[t.grad.numpy() for t in p.values()]]

    return step


def cases(rng):
    mlp = models.mlp((784, 256, 10))
    yield (
        "MLP 784-256-10, batch 256",
        "mlp",
        mlp,
        {
            "x": rng.standard_normal((256, 784)).astype(np.float32),
            "target": rng.integers(0, 10, 256),
        },
        {},
    )
    cnn_meta = {"channels": 16}
    cnn = models.cnn(channels=16, image=28, classes=10)
    yield (
        "CNN 16ch 28x28, batch 64",
        "cnn",
        cnn,
        {
            "x": rng.standard_normal((64, 1, 28, 28)).astype(np.float32),
            "target": rng.integers(0, 10, 64),
        },
        cnn_meta,
    )
    t_meta = {"vocab": 1000, "seq": 64, "dim": 128, "heads": 4, "ff": 512, "layers": 2}
    tr = models.transformer_block(**t_meta)
    ids = rng.integers(0, 1000, (16, 65))
    yield (
        "Transformer 2x(d128, 4 heads, ff512), seq 64, batch 16",
        "transformer",
        tr,
        {"ids": ids[:, :-1], "target": ids[:, 1:]},
        t_meta,
    )


def timed(fns, warmup: int, runs: int) -> list[float]:
    """Median seconds per call of each function, calls interleaved so load changes hit all alike."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    samples = [[] for _ in fns]
    for _ in range(runs):
        for fn, out in zip(fns, samples):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return [statistics.median(s) for s in samples]


def bert_build_time() -> tuple[float, int]:
    model = models.transformer_block(vocab=30522, seq=128, dim=768, heads=12, ff=3072, layers=12)
    start = time.perf_counter()
    grad = build_gradient(model, loss_fn="cross_entropy", output="logits")
    return time.perf_counter() - start, len(grad.graph)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--skip-bert", action="store_true")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    print(f"threads={args.threads} runs={args.runs} torch={'absent' if torch is None else torch.__version__}")
    print("| network | onnxruntime step (ms) | PyTorch step (ms) | PyTorch / onnxruntime | loss agrees |")
    print("| --- | --- | --- | --- | --- |")
    for label, kind, model, batch, meta in cases(rng):
        params = params_of(model)
        batch = {k: (v.astype(np.int64) if v.dtype.kind == "i" else v) for k, v in batch.items()}
        ours = onnxruntime_step(model, params, batch, args.threads)
        if torch is None:
            (t_ours,) = timed([ours], args.warmup, args.runs)
            print(f"| {label} | {t_ours * 1e3:.2f} | - | - | - |")
            continue
        theirs = torch_step(kind, params, batch, meta, args.threads)
        agree = bool(np.allclose(ours()[0], theirs()[0], rtol=1e-3, atol=1e-4))
        t_ours, t_theirs = timed([ours, theirs], args.warmup, args.runs)
        print(f"| {label} | {t_ours * 1e3:.2f} | {t_theirs * 1e3:.2f} | {t_theirs / t_ours:.2f} | {agree} |")
    if not args.skip_bert:
        seconds, nodes = bert_build_time()
        print(
            "\nBERT-base-sized (12 layers, d768, ff3072, vocab 30522, seq 128) gradient build: "
            f"{seconds:.2f} s, {nodes} nodes"
        )


if __name__ == "__main__":
    main()
