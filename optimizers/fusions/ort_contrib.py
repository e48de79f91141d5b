"""``optimize --target ort``: onnxruntime's own transformer fusions on top of our verified passes.

For models deployed only on onnxruntime, its ``com.microsoft`` contrib ops (SkipLayerNormalization,
BiasGelu / FastGelu, Attention / MultiHeadAttention / GroupQueryAttention, EmbedLayerNormalization,
...) beat any standard-op form. Rather than re-implement onnxruntime's pattern matchers, this step
runs ``onnxruntime.transformers.optimizer.optimize_model`` (Python fusions only, ``opt_level=0``,
so the result stays portable across onnxruntime builds and graph optimizations still happen at
session creation) on the model our pipeline produced, then verifies the fused model against the
original; on a mismatch, or when onnxruntime's optimizer raises, the fused model is dropped and the
standard-op result kept, with the reason in the report. The ``com.microsoft`` opset import that
onnxruntime's optimizer leaves out is added, and the RMS norms it writes as SimplifiedLayerNormalization
in the default domain (an op onnxruntime registers there but ONNX does not define, so onnx.checker
rejects the model) become standard ops again (:func:`standard_rms_norms`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import onnxgraph
from onnxgraph.convert import decompose
from onnxgraph.model import Model
from onnxgraph.optimizers.verify import Verifier

CONTRIB_DOMAIN = "com.microsoft"
LEFT_TO_ONNXRUNTIME: dict[str, frozenset[str]] = {
    "fuse": frozenset({"layernorm", "rmsnorm", "gelu_erf", "gelu_tanh", "attention", "rotary"}),
    "noop": frozenset({"arithmetic"}),
}
"""Rewrites switched off before onnxruntime's fusions: its patterns start from the written-out
norms, Gelu, attention and rotary (it does not fuse our standard RMSNormalization or Gelu further, and
its shape inference stops at standard Attention and RotaryEmbedding, which blocks SkipLayerNormalization)
and include the exporter's unit norm scales and zero biases (``x * 1``, ``x + 0``)."""


@dataclass
class ContribReport:
    """What onnxruntime's transformer fusions did.

    Attributes:
        model_type: the optimizer's model family.
        applied: the fused model was kept (it verified, or verification was off).
        contrib_ops: ``com.microsoft`` nodes of the kept model, by op type.
        reason: why the fused model was dropped ("" when kept).
    """

    model_type: str
    applied: bool = False
    contrib_ops: dict[str, int] = field(default_factory=dict)
    reason: str = ""


def contrib_op_counts(model: Model) -> dict[str, int]:
    """``com.microsoft`` nodes of ``model`` (subgraphs included), by op type."""
    return dict(Counter(node.op_type for node in model.all_nodes() if node.domain == CONTRIB_DOMAIN))


def standard_rms_norms(model: Model) -> int:
    """Rewrite onnxruntime's default-domain SimplifiedLayerNormalization nodes as standard ops.

    onnxruntime's optimizer fuses every written-out RMS norm into SimplifiedLayerNormalization and then
    folds those after a residual Add into ``com.microsoft`` SkipSimplifiedLayerNormalization; the rest
    (a llama-style decoder's first norm, right after the embedding Gather) stay SimplifiedLayerNormalization
    in the default domain, which ONNX does not define. Same attributes as RMSNormalization (opset >= 23),
    which they become; below opset 23 they are written out again (``x / Sqrt(ReduceMean(x²) + ε) · scale``).

    Returns:
        How many nodes were rewritten.
    """
    opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx", 1))
    norms = [
        node
        for node in model.all_nodes()
        if node.domain in ("", "ai.onnx") and node.op_type == "SimplifiedLayerNormalization"
    ]
    for node in norms:
        node.op_type = "RMSNormalization"
        if decompose.needs_rewrite(node, opset):
            decompose.rewrite(node, opset)
    return len(norms)


def fuse_for_onnxruntime(
    model: Model,
    verifier: Verifier | None,
    *,
    model_type: str = "bert",
    num_heads: int = 0,
    hidden_size: int = 0,
) -> tuple[Model, ContribReport]:
    """Apply onnxruntime's transformer fusions to ``model`` and keep the result if it verifies.

    Args:
        model: the model to fuse (left untouched).
        verifier: checks the fused model against the original; None keeps it unchecked.
        model_type: onnxruntime's model family, a key of ``onnxruntime.transformers.optimizer.MODEL_TYPES``
            (its fusions differ per family: ``bert`` for encoders, ``gpt2`` for GPT-2-style decoders).
        num_heads: attention heads (0: onnxruntime detects them).
        hidden_size: hidden size (0: onnxruntime detects it).

    Returns:
        ``(model to use, report)``: the fused model, or ``model`` itself when fusing failed.
    """
    from onnxruntime.transformers.optimizer import optimize_model

    report = ContribReport(model_type)
    try:
        fused_proto = optimize_model(
            model.to_proto(), model_type=model_type, num_heads=num_heads, hidden_size=hidden_size, opt_level=0
        ).model
        fused = onnxgraph.from_proto(fused_proto)
        standard_rms_norms(fused)
        if contrib_op_counts(fused):  # onnxruntime's optimizer leaves the domain's import out
            fused.opset_imports.setdefault(CONTRIB_DOMAIN, 1)
    except Exception as exc:  # noqa: BLE001 - a failing third-party optimizer leaves our result standing
        report.reason = f"onnxruntime's transformers optimizer failed: {type(exc).__name__}: {exc}"
        return model, report
    if verifier is not None:
        verification = verifier.check(fused)
        if not verification.passed:
            report.reason = f"the fused model does not match the original: {verification.describe()}"
            return model, report
    report.applied = True
    report.contrib_ops = contrib_op_counts(fused)
    return fused, report
