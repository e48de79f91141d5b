"""Pass ``fuse``: classic fusions into standard ONNX ops, written as rewrite rules.

Rules (one module each, each ending with its ``RULES`` set; see docs/optimize-rules.md):

1. ``bn_into_conv`` / ``bn_into_convtranspose`` / ``bn_into_gemm`` (batchnorm.py): an inference
   BatchNormalization folded into the weight and bias of the node before it.
2. ``add_into_conv`` / ``mul_into_conv`` (conv_affine.py): a per-channel bias or scale folded
   into a Conv.
3. ``matmul_add_to_gemm`` (gemm.py): 2-D MatMul + Add becomes Gemm.
4. ``transpose_into_gemm_a`` / ``transpose_into_gemm_b`` (gemm.py): a Transpose feeding Gemm
   toggles transA / transB.
5. ``pad_into_conv`` / ``pad_into_averagepool`` / ``pad_into_maxpool`` (pad.py): a constant Pad
   folded into the consumer's pads.
6. ``transpose_pair`` (transpose.py): two consecutive Transposes composed into one (or none).
7. ``layernorm`` / ``rmsnorm`` (normalization.py): written-out LayerNorm (opset >= 17) and RMSNorm
   (opset >= 23) become LayerNormalization / RMSNormalization.
8. ``gelu_erf`` / ``gelu_tanh`` (gelu.py): the erf and tanh Gelu formulas become Gelu (opset >= 20).
9. ``attention`` (attention.py): MatMul, scale, mask, Softmax, MatMul becomes Attention (opset >= 23),
   as written by hand and by both torch exporters for transformers' SDPA; repeat_kv on K and V is
   dropped into grouped-query Attention.
10. ``rotary`` (rotary.py): the rotate-half rotary embedding becomes RotaryEmbedding (opset >= 23).

Rules 7-10 fire only where the model's opset has the op and the installed onnxruntime implements it
(ort_support.py probes it once per process), and only on float32.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from onnxgraph.model import Model
from onnxgraph.optimizers.base import Pass
from onnxgraph.optimizers.fusions import (
    attention,
    batchnorm,
    conv_affine,
    gelu,
    gemm,
    normalization,
    pad,
    rotary,
    transpose,
)
from onnxgraph.optimizers.rewriter.rule import RewriteRuleSet

DEFAULT_RULES: RewriteRuleSet = (
    batchnorm.RULES
    + conv_affine.RULES
    + pad.RULES
    + gemm.RULES
    + transpose.RULES
    + normalization.RULES
    + gelu.RULES
    + attention.RULES
    + rotary.RULES
)
"""Every fusion rule, in the order they are tried on a node."""


class Fusions(Pass):
    __doc__ = __doc__
    name = "fuse"
    rewrites = tuple(dict.fromkeys(rule.name for rule in DEFAULT_RULES.rules))  # a rule may have several forms

    def __init__(self, rules: RewriteRuleSet | None = None, *, disabled: Iterable[str] = ()):
        super().__init__(disabled=disabled)
        rules = rules if rules is not None else DEFAULT_RULES
        self.rules = RewriteRuleSet([r for r in rules.rules if self.allows(r.name)], max_sweeps=rules.max_sweeps)

    def run(self, model: Model) -> Counter[str]:
        return self.rules.apply(model)


PASS = Fusions
