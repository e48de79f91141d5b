"""Real architectures exported by ``torch.onnx.export``: the catalogue every real-model benchmark uses.

Eighteen networks users actually ship (torchvision CNNs and ViT, Hugging Face transformers encoders and
decoders, two decoders also with a KV cache, speech front ends), built with random weights from their
library's default or a named small configuration (nothing is downloaded), exported the way a user
exports them: weights inline in the .onnx file, dynamic batch (and sequence or audio length; past
sequence for the KV cache) axes, with the TorchScript exporter (``dynamo=False``, opset 17) and the
dynamo exporter (``dynamo=True``, opset 18).

    python benchmarks/real_models.py --out /tmp/real [--models bert,gpt2] [--exporters torchscript]

writes ``OUT/NAME.EXPORTER.onnx``, ``OUT/NAME.inputs.npz`` (one sample input, named after the
model's inputs) and ``OUT/manifest.json`` (per model and exporter: the file or the export's error).
A model already in OUT is not exported again. Other scripts import :func:`export_all`.

PyTorch, torchvision and transformers are needed here only, never by the package or its tests.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

EXPORTERS = ("torchscript", "dynamo")


@dataclass(frozen=True)
class RealModel:
    """One network: how to build it, a sample input per ONNX input name, and the dynamic axes."""

    name: str
    build: Callable[[], object]
    inputs: Callable[[], dict[str, np.ndarray]]
    dynamic_axes: dict[str, dict[int, str]]
    outputs: tuple[str, ...] = ("output",)


def _torchvision(factory: str, image: int = 224) -> RealModel:
    def build() -> object:
        import torchvision

        return getattr(torchvision.models, factory)(weights=None)

    return RealModel(
        name=factory,
        build=build,
        inputs=lambda: {"input": np.random.default_rng(0).standard_normal((1, 3, image, image), dtype=np.float32)},
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
    )


def _hidden_states(model: object, with_mask: bool = False) -> object:
    """Wrap a transformers model so it takes its inputs by keyword and returns its last hidden state.

    The wrapper's ``forward`` names its parameters (no ``*args``): the dynamo exporter maps dynamic
    axes onto them, and transformers 5's positional order puts ``past_key_values`` second.
    """
    import torch

    class LastHiddenState(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x).last_hidden_state

    class LastHiddenStateMasked(LastHiddenState):
        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    return (LastHiddenStateMasked if with_mask else LastHiddenState)(model)


def _text(
    name: str, config: Callable[[], object], model_class: str, mask: bool = True, vocab: int = 1000, sequence: int = 128
) -> RealModel:
    def build() -> object:
        import transformers

        cfg = config()
        cfg.use_cache = False
        return _hidden_states(getattr(transformers, model_class)(cfg), with_mask=mask)

    def inputs() -> dict[str, np.ndarray]:
        ids = np.random.default_rng(0).integers(0, vocab, (1, sequence), dtype=np.int64)
        return {"input_ids": ids, "attention_mask": np.ones_like(ids)} if mask else {"input_ids": ids}

    axes = {"input_ids": {0: "batch", 1: "sequence"}, "output": {0: "batch", 1: "sequence"}}
    if mask:
        axes["attention_mask"] = {0: "batch", 1: "sequence"}
    return RealModel(name=name, build=build, inputs=inputs, dynamic_axes=axes)


def _config(class_name: str, **overrides: object) -> Callable[[], object]:
    def make() -> object:
        import transformers

        return getattr(transformers, class_name)(**overrides)

    return make


_SMALL_DECODER = dict(
    hidden_size=512,
    intermediate_size=1376,
    num_hidden_layers=4,
    num_attention_heads=8,
    num_key_value_heads=2,
    vocab_size=32000,
    max_position_embeddings=1024,
)


def _vit_small() -> RealModel:
    def build() -> object:
        import transformers

        cfg = transformers.ViTConfig(hidden_size=384, num_attention_heads=6, intermediate_size=1536)
        return _hidden_states(transformers.ViTModel(cfg, add_pooling_layer=False))

    return RealModel(
        name="vit_small",
        build=build,
        inputs=lambda: {"pixel_values": np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)},
        dynamic_axes={"pixel_values": {0: "batch"}, "output": {0: "batch"}},
    )


def _whisper_encoder() -> RealModel:
    def build() -> object:
        import transformers

        cfg = transformers.WhisperConfig(d_model=384, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=1536)
        return _hidden_states(transformers.WhisperModel(cfg).get_encoder())

    return RealModel(
        name="whisper_encoder",
        build=build,
        inputs=lambda: {"input_features": np.random.default_rng(0).standard_normal((1, 80, 3000), dtype=np.float32)},
        dynamic_axes={"input_features": {0: "batch"}, "output": {0: "batch"}},
    )


def _wav2vec2() -> RealModel:
    def build() -> object:
        import transformers

        return _hidden_states(transformers.Wav2Vec2Model(transformers.Wav2Vec2Config()))

    return RealModel(
        name="wav2vec2",
        build=build,
        inputs=lambda: {"input_values": np.random.default_rng(0).standard_normal((1, 16000), dtype=np.float32)},
        dynamic_axes={"input_values": {0: "batch", 1: "samples"}, "output": {0: "batch", 1: "frames"}},
    )


KV_LAYERS = 4
"""Layers of the KV-cache decoders (their wrapper names one past key and value input per layer)."""
KV_SAMPLE = {"batch": 2, "past": 8, "sequence": 4}
"""The KV-cache decoders' sample input: 4 new tokens after 8 cached ones."""


def _with_past(model: object) -> object:
    """Wrap a transformers causal LM so it takes the KV cache as tensors and returns logits and the new cache.

    transformers 5 takes the cache as a ``DynamicCache`` object, which neither exporter accepts as an
    input; users export a wrapper that builds the cache from ``past_key_I`` / ``past_value_I`` tensors
    ``[batch, kv_heads, past_sequence, head_dim]`` and returns ``logits`` and ``present_key_I`` /
    ``present_value_I`` (the past with the new tokens' keys and values appended). Named parameters, as
    the dynamo exporter maps dynamic axes onto them.
    """
    import torch
    from transformers import DynamicCache

    class WithPast(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(  # noqa: PLR0913 - one tensor per layer's cached keys and values
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            past_key_0: torch.Tensor,
            past_value_0: torch.Tensor,
            past_key_1: torch.Tensor,
            past_value_1: torch.Tensor,
            past_key_2: torch.Tensor,
            past_value_2: torch.Tensor,
            past_key_3: torch.Tensor,
            past_value_3: torch.Tensor,
        ) -> tuple[torch.Tensor, ...]:
            past = [past_key_0, past_value_0, past_key_1, past_value_1]
            past += [past_key_2, past_value_2, past_key_3, past_value_3]
            cache = DynamicCache(config=self.inner.config)
            for layer in range(KV_LAYERS):
                cache.update(past[2 * layer], past[2 * layer + 1], layer)
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, cache=cache, use_cache=True)
            presents = [t for layer in out.past_key_values.layers for t in (layer.keys, layer.values)]
            return (out.logits, *presents)

    return WithPast(model)


def _kv_decoder(name: str, config: Callable[[], object], model_class: str, kv_heads: int, head_dim: int) -> RealModel:
    """A causal LM exported with a KV cache (:func:`_with_past`): dynamic batch, sequence and past axes."""

    def build() -> object:
        import transformers

        cfg: Any = config()
        cfg.use_cache = True
        return _with_past(getattr(transformers, model_class)(cfg))

    def inputs() -> dict[str, np.ndarray]:
        rng = np.random.default_rng(0)
        batch, past, sequence = KV_SAMPLE["batch"], KV_SAMPLE["past"], KV_SAMPLE["sequence"]
        sample: dict[str, np.ndarray] = {
            "input_ids": rng.integers(0, 1000, (batch, sequence), dtype=np.int64),
            "attention_mask": np.ones((batch, past + sequence), np.int64),
        }
        for layer in range(KV_LAYERS):
            for kind in ("key", "value"):
                sample[f"past_{kind}_{layer}"] = rng.standard_normal(
                    (batch, kv_heads, past, head_dim), dtype=np.float32
                )
        return sample

    axes = {
        "input_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "total_sequence"},
        "logits": {0: "batch", 1: "sequence"},
    }
    presents = []
    for layer in range(KV_LAYERS):
        for kind in ("key", "value"):
            axes[f"past_{kind}_{layer}"] = {0: "batch", 2: "past_sequence"}
            axes[f"present_{kind}_{layer}"] = {0: "batch", 2: "total_sequence"}
            presents.append(f"present_{kind}_{layer}")
    return RealModel(name=name, build=build, inputs=inputs, dynamic_axes=axes, outputs=("logits", *presents))


_SMALL_GPT2 = dict(n_layer=KV_LAYERS, n_embd=512, n_head=8, vocab_size=32000, n_positions=1024)


CATALOGUE: dict[str, RealModel] = {
    m.name: m
    for m in (
        _torchvision("resnet18"),
        _torchvision("regnet_y_400mf"),
        _torchvision("shufflenet_v2_x1_0"),
        _torchvision("mobilenet_v3_small"),
        _torchvision("efficientnet_b0"),
        _torchvision("convnext_tiny"),
        _torchvision("vit_b_16"),
        _vit_small(),
        _text("bert", _config("BertConfig"), "BertModel"),
        _text("distilbert", _config("DistilBertConfig"), "DistilBertModel"),
        _text("gpt2", _config("GPT2Config"), "GPT2Model"),
        _text("clip_text", _config("CLIPTextConfig"), "CLIPTextModel", sequence=77),  # 77 positions
        _text("qwen2", _config("Qwen2Config", **_SMALL_DECODER), "Qwen2Model"),
        _text("llama", _config("LlamaConfig", **_SMALL_DECODER), "LlamaModel"),
        _kv_decoder("gpt2_kv", _config("GPT2Config", **_SMALL_GPT2), "GPT2LMHeadModel", kv_heads=8, head_dim=64),
        _kv_decoder("llama_kv", _config("LlamaConfig", **_SMALL_DECODER), "LlamaForCausalLM", kv_heads=2, head_dim=64),
        _whisper_encoder(),
        _wav2vec2(),
    )
}


def export(model: RealModel, exporter: str, path: str) -> None:
    """Export ``model`` with ``exporter`` to ``path`` (weights inline), as a user would."""
    import torch

    torch.manual_seed(0)
    module = model.build()
    module.eval()  # type: ignore[attr-defined]
    sample = model.inputs()
    args = tuple(torch.from_numpy(sample[n]) for n in sample)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            # nn.MultiheadAttention's inference fast path (torchvision's ViT) has no TorchScript-exporter
            # symbolic; users switch it off to export.
            torch.backends.mha.set_fastpath_enabled(False)
        by_exporter = {
            "torchscript": {"opset_version": 17, "dynamo": False},
            "dynamo": {"opset_version": 18, "dynamo": True, "external_data": False},
        }
        torch.onnx.export(
            module,
            args,
            path,
            input_names=list(sample),
            output_names=list(model.outputs),
            dynamic_axes=model.dynamic_axes,
            **by_exporter[exporter],
        )


def export_all(out: str, names: list[str], exporters: list[str]) -> dict[str, dict[str, str]]:
    """Export each model with each exporter into ``out``; return and store the manifest."""
    os.makedirs(out, exist_ok=True)
    manifest_path = os.path.join(out, "manifest.json")
    manifest: dict[str, dict[str, str]] = {}
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
    for name in names:
        model = CATALOGUE[name]
        np.savez(os.path.join(out, f"{name}.inputs.npz"), **model.inputs())
        for exporter in exporters:
            path = os.path.join(out, f"{name}.{exporter}.onnx")
            entry = manifest.setdefault(name, {})
            if os.path.exists(path) and entry.get(exporter) == path:
                continue
            try:
                export(model, exporter, path)
                entry[exporter] = path
            except Exception as exc:  # noqa: BLE001 - an export failure is a result to record
                entry[exporter] = f"export failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            print(f"{name:20s} {exporter:12s} {entry[exporter]}", flush=True)
            with open(manifest_path, "w") as f:
                json.dump(manifest, f, indent=1)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for the exported models")
    parser.add_argument("--models", default=",".join(CATALOGUE), help="comma-separated names (default: all)")
    parser.add_argument("--exporters", default=",".join(EXPORTERS))
    args = parser.parse_args()
    names = args.models.split(",")
    unknown = [n for n in names if n not in CATALOGUE]
    if unknown:
        sys.exit(f"unknown model(s) {unknown}; known: {', '.join(CATALOGUE)}")
    export_all(args.out, names, args.exporters.split(","))


if __name__ == "__main__":
    main()
