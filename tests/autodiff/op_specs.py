"""The table of op specs the gradient check runs: op, attributes, inputs, what is differentiated.

Each input is ``F(shape, low, high)`` (a float graph input, differentiated), ``K(shape, low, high)``
(a float graph input held fixed) or ``C(array)`` (a constant initializer: indices, axes, shapes;
``C(None)`` omits an optional input). Values are drawn away from kinks and outside each op's domain
edges so central differences are meaningful.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class F:
    shape: tuple[int, ...]
    low: float = -1.0
    high: float = 1.0
    differentiate: bool = True


def K(shape, low=-1.0, high=1.0):
    return F(tuple(shape), low, high, differentiate=False)


@dataclass(frozen=True)
class C:
    value: object


@dataclass(frozen=True)
class Spec:
    op: str
    inputs: tuple
    attrs: dict = field(default_factory=dict)
    outputs: int = 1
    """How many of the node's outputs are graph outputs (and get an upstream gradient)."""
    node_outputs: int | None = None
    opset: int = 18
    id: str = ""
    eps: float = 1e-6
    """Finite-difference step; larger where onnx.reference approximates the op (Erf is ~1e-8 off)."""
    fd_tol: tuple[float, float] = (1e-5, 1e-6)
    random: bool = False
    """The op draws random numbers: onnxruntime and onnx.reference draw different ones."""

    @property
    def name(self) -> str:
        return self.id or self.op


def i64(*values):
    return C(np.array(values, dtype=np.int64))


S = (2, 3)  # a small default shape
UNARY = {
    "Neg": (-1, 1),
    "Abs": (0.2, 1),
    "Reciprocal": (0.5, 2),
    "Sqrt": (0.5, 2),
    "Exp": (-1, 1),
    "Log": (0.5, 2),
    "Sin": (-1, 1),
    "Cos": (-1, 1),
    "Tan": (-1, 1),
    "Asin": (-0.8, 0.8),
    "Acos": (-0.8, 0.8),
    "Atan": (-2, 2),
    "Sinh": (-1, 1),
    "Cosh": (-1, 1),
    "Asinh": (-2, 2),
    "Acosh": (1.2, 3),
    "Atanh": (-0.8, 0.8),
    "Tanh": (-2, 2),
    "Sigmoid": (-2, 2),
    "Relu": (-1, 1),
    "Softplus": (-2, 2),
    "Softsign": (-2, 2),
    "Mish": (-2, 2),
    "Identity": (-1, 1),
    "Elu": (-2, 2),
    "Selu": (-2, 2),
    "Celu": (-2, 2),
    "HardSigmoid": (-4, 4),
    "HardSwish": (-5, 5),
    "LeakyRelu": (-1, 1),
    "Sign": (-1, 1),
    "Floor": (-3, 3),
    "Ceil": (-3, 3),
    "Round": (-3, 3),
}

SPECS: list[Spec] = [
    *(Spec(op, (F((3, 4), lo, hi),)) for op, (lo, hi) in UNARY.items()),
    Spec("Erf", (F((3, 4), -1.5, 1.5),), eps=1e-3, fd_tol=(1e-4, 1e-5)),
    Spec("Elu", (F(S, -2, 2),), {"alpha": 0.5}, id="Elu-alpha"),
    Spec("Celu", (F(S, -2, 2),), {"alpha": 2.0}, id="Celu-alpha"),
    Spec("LeakyRelu", (F(S),), {"alpha": 0.3}, id="LeakyRelu-alpha"),
    Spec("HardSigmoid", (F((3, 4), -4, 4),), {"alpha": 0.3, "beta": 0.4}, id="HardSigmoid-attrs"),
    Spec("Gelu", (F((3, 4), -3, 3),), opset=20, eps=1e-3, fd_tol=(1e-4, 1e-4)),
    Spec("Gelu", (F((3, 4), -3, 3),), {"approximate": "tanh"}, opset=20, id="Gelu-tanh"),
    # binary and variadic, with broadcasting
    *(Spec(op, (F((2, 3, 4)), F((3, 1))), id=f"{op}-broadcast") for op in ("Add", "Sub", "Mul")),
    *(Spec(op, (F(S), F(S))) for op in ("Add", "Sub", "Mul")),
    Spec("Div", (F((2, 3)), F((3,), 0.5, 2))),
    Spec("Div", (F((1, 3)), F((2, 1), 0.5, 2)), id="Div-both-broadcast"),
    Spec("Pow", (F((2, 3), 0.5, 2), F((2, 3), -1.5, 1.5))),
    Spec("Pow", (F((2, 3), 0.5, 2), F((), 0.5, 2.5)), id="Pow-scalar-exponent"),
    Spec("Pow", (F((2, 3), 0.5, 2), K((3,), 1, 3)), id="Pow-base-only"),
    Spec("PRelu", (F((2, 3, 4)), F((3, 1), 0.1, 0.5))),
    Spec("PRelu", (F((2, 4)), F((1,), 0.1, 0.5)), id="PRelu-shared-slope"),
    Spec("Min", (F(S), F(S), F((3,))), id="Min-3"),
    Spec("Max", (F(S), F((1, 3)))),
    Spec("Sum", (F(S), F((3,)), F(S))),
    Spec("Mean", (F(S), F((2, 1)))),
    Spec("Where", (C(np.array([[True, False, True], [False, True, True]])), F(S), F((3,)))),
    Spec("Clip", (F(S, -2, 2), F((), -0.6, -0.5), F((), 0.5, 0.6))),
    Spec("Clip", (F(S, -2, 2), C(None), K((), 0.5, 0.6)), id="Clip-max-only"),
    Spec("Clip", (F(S, -2, 2),), id="Clip-no-bounds"),
    Spec("Cast", (F(S),), {"to": 1}, id="Cast-float"),
    Spec("CastLike", (F(S), F((1,)))),
    Spec("Dropout", (F(S),), id="Dropout-inference"),
    Spec("Dropout", (F((4, 5)), C(np.array(0.3)), C(np.array(True))), {"seed": 3}, random=True, id="Dropout-training"),
    Spec(
        "Dropout",
        (F((4, 5)), F((), 0.2, 0.4), C(np.array(True))),
        {"seed": 3},
        random=True,
        id="Dropout-training-ratio",
    ),
    Spec("Dropout", (F((4, 5)), F((), 0.2, 0.4), C(np.array(False))), id="Dropout-inference-ratio"),
    # linear algebra
    Spec("MatMul", (F((3, 4)), F((4, 2)))),
    Spec("MatMul", (F((4,)), F((4, 2))), id="MatMul-1d-left"),
    Spec("MatMul", (F((3, 4)), F((4,))), id="MatMul-1d-right"),
    Spec("MatMul", (F((4,)), F((4,))), id="MatMul-1d-both"),
    Spec("MatMul", (F((2, 3, 4)), F((2, 4, 2))), id="MatMul-batched"),
    Spec("MatMul", (F((2, 1, 3, 4)), F((3, 4, 2))), id="MatMul-broadcast-batch"),
    Spec("MatMul", (F((2, 3, 4)), F((4, 2))), id="MatMul-shared-weight"),
    Spec("Gemm", (F((3, 4)), F((4, 2)), F((2,)))),
    Spec(
        "Gemm",
        (F((4, 3)), F((2, 4)), F((3, 2))),
        {"transA": 1, "transB": 1, "alpha": 0.5, "beta": 2.0},
        id="Gemm-trans-both",
    ),
    Spec("Gemm", (F((4, 3)), F((4, 2)), F((1, 1))), {"transA": 1}, id="Gemm-transA-scalar-c"),
    Spec("Gemm", (F((3, 4)), F((2, 4))), {"transB": 1, "alpha": 1.5}, id="Gemm-transB-no-c"),
    Spec("Einsum", (F((3, 4)), F((4, 2))), {"equation": "ij,jk->ik"}),
    Spec("Einsum", (F((2, 3, 4)), F((2, 4, 5))), {"equation": "bij,bjk->bik"}, id="Einsum-batched"),
    Spec("Einsum", (F((2, 3, 4)), F((2, 5, 4))), {"equation": "bhd,bkd->bhk"}, id="Einsum-attention"),
    Spec("Einsum", (F((3, 4)), F((3,))), {"equation": "ij,i->j"}, id="Einsum-vector"),
    Spec("Einsum", (F((3, 4)),), {"equation": "ij->i"}, id="Einsum-sum"),
    Spec("Einsum", (F((2, 3, 4)), F((4, 5))), {"equation": "...d,de->...e"}, id="Einsum-ellipsis"),
    # convolution
    Spec("Conv", (F((2, 3, 7)), F((4, 3, 3)), F((4,)))),
    Spec("Conv", (F((1, 2, 6, 5)), F((3, 2, 3, 2))), {"strides": [2, 1], "pads": [1, 0, 1, 1]}, id="Conv2d-stride-pad"),
    Spec("Conv", (F((1, 2, 7, 7)), F((2, 2, 3, 3))), {"dilations": [2, 2], "strides": [2, 2]}, id="Conv2d-dilated"),
    Spec(
        "Conv", (F((2, 4, 5, 5)), F((4, 1, 3, 3)), F((4,))), {"group": 4, "pads": [1, 1, 1, 1]}, id="Conv2d-depthwise"
    ),
    Spec(
        "Conv",
        (F((1, 4, 5, 4)), F((6, 2, 2, 2))),
        {"group": 2, "auto_pad": "SAME_UPPER", "strides": [2, 2]},
        id="Conv2d-groups-same-upper",
    ),
    Spec("Conv", (F((1, 2, 5, 6)), F((2, 2, 2, 3))), {"auto_pad": "SAME_LOWER"}, id="Conv2d-same-lower"),
    Spec("Conv", (F((1, 2, 4, 3, 3)), F((2, 2, 2, 2, 2))), {"pads": [1, 0, 1, 0, 1, 0]}, id="Conv3d"),
    Spec("ConvTranspose", (F((1, 3, 4)), F((3, 2, 3)), F((2,)))),
    Spec(
        "ConvTranspose",
        (F((1, 2, 3, 3)), F((2, 3, 3, 2))),
        {"strides": [2, 2], "pads": [1, 0, 1, 0], "output_padding": [1, 0]},
        id="ConvTranspose2d-stride",
    ),
    Spec(
        "ConvTranspose",
        (F((1, 4, 3, 3)), F((4, 1, 2, 2))),
        {"group": 2, "dilations": [2, 1]},
        id="ConvTranspose2d-groups",
    ),
    Spec(
        "ConvTranspose",
        (F((1, 2, 3, 3)), F((2, 2, 3, 3))),
        {"strides": [2, 2], "auto_pad": "SAME_UPPER"},
        id="ConvTranspose2d-same-upper",
    ),
    Spec(
        "ConvTranspose",
        (F((1, 2, 3)), F((2, 1, 3))),
        {"strides": [2], "auto_pad": "SAME_LOWER"},
        id="ConvTranspose1d-same-lower",
    ),
    Spec(
        "ConvTranspose",
        (F((1, 1, 2, 2, 2)), F((1, 2, 2, 2, 2))),
        {"strides": [2, 1, 1], "pads": [0, 1, 0, 0, 0, 1]},
        id="ConvTranspose3d",
    ),
    Spec("Conv", (F((1, 2, 6)), F((2, 2, 3))), {"strides": [2], "pads": [1, 2]}, opset=13, id="Conv1d-opset13"),
    # the weight-gradient forms (rules/conv.py weight_grad): one Gemm (fewer output positions than
    # twice the channels), per-image MatMuls, the batch-as-channels Conv (kernels of 25+ cells)
    Spec(
        "Conv",
        (F((2, 3, 7, 7)), F((8, 3, 3, 3))),
        {"strides": [2, 2], "dilations": [2, 2], "pads": [1, 0, 2, 1]},
        id="Conv2d-wgrad-gemm-stride-dilation-asymmetric",
    ),
    Spec("Conv", (F((2, 3, 5, 5)), F((4, 3, 1, 1))), {"strides": [2, 2]}, id="Conv2d-1x1-stride"),
    Spec("Conv", (F((2, 3, 3, 3)), F((2, 3, 1, 1))), id="Conv2d-1x1"),
    Spec(
        "Conv",
        (F((2, 6, 6, 5)), F((4, 3, 3, 3))),
        {"group": 2, "strides": [1, 2], "dilations": [2, 1], "pads": [2, 1, 1, 0]},
        id="Conv2d-wgrad-matmul-groups",
    ),
    Spec(
        "Conv",
        (F((1, 2, 7, 6)), F((3, 2, 5, 5))),
        {"strides": [2, 1], "pads": [2, 1, 1, 2]},
        id="Conv2d-wgrad-conv-5x5",
    ),
    Spec(
        "Conv", (F((1, 4, 4, 4, 4)), F((4, 2, 3, 3, 3))), {"group": 2, "pads": [1] * 6}, id="Conv3d-wgrad-conv-groups"
    ),
    # normalization
    Spec(
        "BatchNormalization",
        (F((2, 3, 2, 2)), F((3,), 0.5, 1.5), F((3,)), F((3,)), F((3,), 0.5, 1.5)),
        id="BatchNormalization-inference",
    ),
    Spec(
        "BatchNormalization",
        (F((4, 3)), F((3,), 0.5, 1.5), F((3,)), K((3,)), K((3,), 0.5, 1.5)),
        {"training_mode": 1},
        node_outputs=3,
        id="BatchNormalization-training",
    ),
    Spec(
        "BatchNormalization",
        (F((3, 2, 4)), F((2,), 0.5, 1.5), F((2,)), K((2,)), K((2,), 0.5, 1.5)),
        {"training_mode": 1, "epsilon": 1e-3},
        node_outputs=3,
        id="BatchNormalization-training-3d",
    ),
    Spec(
        "BatchNormalization",
        (F((4, 2, 3)), F((2,), 0.5, 1.5), F((2,)), F((2,)), F((2,), 0.5, 1.5)),
        {"training_mode": 1, "momentum": 0.8},
        outputs=3,
        id="BatchNormalization-training-running-stats",
    ),
    Spec("LayerNormalization", (F((2, 3, 4)), F((4,)), F((4,)))),
    Spec("LayerNormalization", (F((3, 4)), F((4,)), F((4,))), outputs=3, id="LayerNormalization-mean-invstd-outputs"),
    Spec(
        "LayerNormalization",
        (F((2, 3, 4)), F((3, 4))),
        {"axis": 1, "epsilon": 1e-3},
        id="LayerNormalization-axis1-no-bias",
    ),
    Spec("InstanceNormalization", (F((2, 3, 4)), F((3,)), F((3,)))),
    Spec("GroupNormalization", (F((2, 4, 3)), F((4,)), F((4,))), {"num_groups": 2}, opset=21),
    Spec(
        "GroupNormalization",
        (F((2, 6, 2)), F((6,)), F((6,))),
        {"num_groups": 3, "epsilon": 1e-3},
        opset=21,
        id="GroupNormalization-3-groups",
    ),
    Spec("LpNormalization", (F((3, 4)),), {"axis": 1}),
    Spec("LpNormalization", (F((3, 4), 0.1, 1),), {"axis": 0, "p": 1}, id="LpNormalization-p1"),
    Spec("RMSNormalization", (F((2, 3, 4)), F((4,))), opset=23),
    # pooling
    Spec("MaxPool", (F((1, 2, 5, 5)),), {"kernel_shape": [2, 2]}),
    Spec(
        "MaxPool",
        (F((2, 1, 6, 5)),),
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
        id="MaxPool-overlap-pad",
    ),
    Spec("MaxPool", (F((1, 2, 7)),), {"kernel_shape": [2], "dilations": [2], "strides": [1]}, id="MaxPool1d-dilated"),
    Spec(
        "MaxPool",
        (F((1, 1, 5, 6)),),
        {"kernel_shape": [3, 2], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
        id="MaxPool-same-upper",
    ),
    Spec("MaxPool", (F((1, 1, 5, 6)),), {"kernel_shape": [2, 3], "auto_pad": "SAME_LOWER"}, id="MaxPool-same-lower"),
    Spec("AveragePool", (F((1, 2, 5, 5)),), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    Spec(
        "AveragePool",
        (F((1, 2, 5, 4)),),
        {"kernel_shape": [3, 3], "strides": [2, 1], "pads": [1, 1, 1, 1]},
        id="AveragePool-pad-exclude",
    ),
    Spec(
        "AveragePool",
        (F((1, 2, 5, 4)),),
        {"kernel_shape": [3, 2], "pads": [1, 0, 1, 1], "count_include_pad": 1},
        id="AveragePool-pad-include",
    ),
    Spec(
        "AveragePool",
        (F((1, 1, 6)),),
        {"kernel_shape": [3], "auto_pad": "SAME_UPPER", "strides": [2]},
        id="AveragePool1d-same",
    ),
    Spec(
        "AveragePool",
        (F((1, 2, 5, 5)),),
        {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1},
        id="AveragePool-ceil",
    ),
    Spec(
        "AveragePool",
        (F((1, 1, 6, 6)),),
        {"kernel_shape": [2, 2], "dilations": [2, 2], "pads": [1, 1, 0, 0]},
        opset=19,
        id="AveragePool-dilated",
    ),
    Spec("MaxPool", (F((1, 2, 5, 5)),), {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}, id="MaxPool-ceil"),
    Spec(
        "MaxPool", (F((1, 1, 4, 4)),), {"kernel_shape": [2, 2], "strides": [2, 2]}, opset=13, id="MaxPool-opset13-tiled"
    ),
    Spec(
        "MaxPool",
        (F((2, 2, 7, 6)),),
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
        opset=13,
        id="MaxPool-opset13-overlap-pad",
    ),
    Spec(
        "MaxPool",
        (F((1, 2, 6, 7)),),
        {"kernel_shape": [2, 3], "strides": [2, 2], "ceil_mode": 1},
        opset=13,
        id="MaxPool-opset13-ceil",
    ),
    Spec(
        "MaxPool",
        (F((1, 1, 7, 7)),),
        {"kernel_shape": [2, 2], "dilations": [2, 2], "pads": [1, 0, 0, 1]},
        opset=13,
        id="MaxPool-opset13-dilated",
    ),
    Spec("MaxPool", (F((1, 2, 8)),), {"kernel_shape": [3], "strides": [1]}, opset=15, id="MaxPool1d-opset15"),
    Spec(
        "MaxPool",
        (F((1, 2, 5, 5)),),
        {"kernel_shape": [3, 3], "strides": [1, 1], "storage_order": 1},
        id="MaxPool-storage-order",
    ),
    Spec("MaxPool", (F((2, 2, 6)),), {"kernel_shape": [3], "strides": [3]}, id="MaxPool1d-tiled"),
    Spec(
        "MaxPool", (F((2, 2, 7, 5)),), {"kernel_shape": [2, 2], "strides": [2, 2]}, id="MaxPool-tiled-floor-remainder"
    ),
    Spec(
        "MaxPool",
        (F((1, 2, 7)),),
        {"kernel_shape": [3], "strides": [3]},
        opset=13,
        id="MaxPool1d-tiled-remainder-opset13",
    ),
    Spec("MaxPool", (F((1, 1, 4, 2, 6)),), {"kernel_shape": [2, 1, 3], "strides": [2, 1, 3]}, id="MaxPool3d-tiled"),
    Spec("GlobalAveragePool", (F((2, 3, 2, 3)),)),
    Spec("GlobalMaxPool", (F((2, 3, 2, 3)),)),
    # softmax and losses
    Spec("Softmax", (F((2, 3, 4)),)),
    Spec("Softmax", (F((2, 3, 4)),), {"axis": 1}, id="Softmax-axis1"),
    Spec("LogSoftmax", (F((3, 4)),)),
    Spec("LogSoftmax", (F((2, 3, 4)),), {"axis": 0}, id="LogSoftmax-axis0"),
    Spec("SoftmaxCrossEntropyLoss", (F((4, 3)), i64(0, 2, 1, 2))),
    Spec(
        "SoftmaxCrossEntropyLoss",
        (F((3, 4, 2)), i64([1, 3], [0, 1], [3, 3]), F((4,), 0.5, 1.5)),
        {"reduction": "sum", "ignore_index": 1},
        id="SoftmaxCrossEntropyLoss-sum-weights-ignore",
    ),
    Spec(
        "SoftmaxCrossEntropyLoss",
        (F((4, 3)), i64(0, 2, 1, 2)),
        {"reduction": "none"},
        outputs=2,
        id="SoftmaxCrossEntropyLoss-none-logprob",
    ),
    Spec("NegativeLogLikelihoodLoss", (F((4, 3)), i64(0, 2, 1, 1))),
    Spec(
        "NegativeLogLikelihoodLoss",
        (F((4, 3)), i64(0, 2, 1, 1), F((3,), 0.5, 2.0)),
        {"reduction": "mean", "ignore_index": 2},
        id="NegativeLogLikelihoodLoss-weights-ignore",
    ),
    Spec(
        "NegativeLogLikelihoodLoss",
        (F((2, 3, 2)), i64([0, 2], [1, 1]), F((3,), 0.5, 2.0)),
        {"reduction": "none"},
        id="NegativeLogLikelihoodLoss-none-weights",
    ),
    Spec(
        "SoftmaxCrossEntropyLoss",
        (F((4, 3)), i64(0, 2, 1, 2), F((3,), 0.5, 2.0)),
        id="SoftmaxCrossEntropyLoss-mean-weights",
    ),
    Spec(
        "SoftmaxCrossEntropyLoss",
        (F((3, 4, 2)), i64([1, 3], [0, 1], [3, 3]), F((4,), 0.5, 2.0)),
        {"ignore_index": 3},
        opset=13,
        id="SoftmaxCrossEntropyLoss-opset13-weights-ignore",
    ),
    Spec(
        "SoftmaxCrossEntropyLoss",
        (F((4, 3)), i64(0, 2, 1, 2), F((3,), 0.5, 2.0)),
        {"reduction": "none"},
        outputs=2,
        id="SoftmaxCrossEntropyLoss-none-weights-logprob",
    ),
    Spec(
        "NegativeLogLikelihoodLoss",
        (F((2, 3, 2)), i64([0, 2], [1, 1])),
        {"reduction": "none"},
        id="NegativeLogLikelihoodLoss-none",
    ),
    # reductions
    *(
        Spec(op, (F((2, 3, 4), 0.2, 1.5), i64(1)), {"keepdims": 1})
        for op in (
            "ReduceSum",
            "ReduceMean",
            "ReduceMax",
            "ReduceMin",
            "ReduceProd",
            "ReduceL1",
            "ReduceL2",
            "ReduceLogSumExp",
            "ReduceSumSquare",
            "ReduceLogSum",
        )
    ),
    *(
        Spec(op, (F((2, 3, 4), 0.2, 1.5), i64(0, -1)), {"keepdims": 0}, id=f"{op}-keepdims0")
        for op in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceProd", "ReduceL2", "ReduceLogSumExp", "ReduceLogSum")
    ),
    *(
        Spec(op, (F((2, 3), 0.2, 1.5),), {"keepdims": 0}, id=f"{op}-all")
        for op in ("ReduceMin", "ReduceL1", "ReduceSumSquare", "ReduceMean")
    ),
    Spec("ReduceSum", (F((2, 3)),), {"noop_with_empty_axes": 1}, id="ReduceSum-noop"),
    Spec("ReduceMean", (F((2, 3, 4)),), {"axes": [1], "keepdims": 0}, opset=13, id="ReduceMean-axes-attribute"),
    Spec("ReduceMax", (F((2, 3, 4)),), {"axes": [-1]}, opset=13, id="ReduceMax-axes-attribute"),
    Spec("ReduceSum", (F((2, 3, 4)), i64(2)), {"keepdims": 0}, opset=13, id="ReduceSum-opset13"),
    Spec(
        "CumSum",
        (F((3, 4)), C(np.array(1))),
    ),
    Spec("CumSum", (F((3, 4)), C(np.array(0))), {"exclusive": 1, "reverse": 1}, id="CumSum-exclusive-reverse"),
    # shape and data movement
    Spec("Reshape", (F((2, 3, 2)), i64(3, -1))),
    Spec("Flatten", (F((2, 3, 2)),), {"axis": 2}),
    Spec("Squeeze", (F((2, 1, 3)), i64(1))),
    Spec("Squeeze", (F((1, 3, 1)),), id="Squeeze-all"),
    Spec("Split", (F((2, 5)), i64(3, 2)), {"axis": -1}, outputs=2, opset=13, id="Split-opset13"),
    Spec("Unsqueeze", (F((2, 3)), i64(0, 2))),
    Spec("Transpose", (F((2, 3, 4)),), {"perm": [2, 0, 1]}),
    Spec("Transpose", (F((2, 3)),), id="Transpose-default"),
    Spec("Concat", (F((2, 3)), F((2, 1)), F((2, 2))), {"axis": 1}),
    Spec("Concat", (F((1, 3)), K((2, 3)), F((1, 3))), {"axis": 0}, id="Concat-partial"),
    Spec("Split", (F((2, 6)), i64(2, 4)), {"axis": 1}, outputs=2),
    Spec("Split", (F((6, 2)),), {"num_outputs": 3}, outputs=3, id="Split-num-outputs"),
    Spec("Split", (F((6, 2)),), {"num_outputs": 2}, outputs=1, node_outputs=2, id="Split-one-used"),
    Spec("Slice", (F((4, 5)), i64(1, 0), i64(3, 5), i64(0, 1), i64(1, 2))),
    Spec("Slice", (F((4, 5)), i64(-1), i64(-5), i64(1), i64(-2)), id="Slice-negative-step"),
    Spec("Slice", (F((3, 4, 2)), i64(1), i64(100), i64(0)), id="Slice-clamped-end"),
    Spec(
        "Gather",
        (F((5, 3)), i64(0, 2, 2, 4)),
    ),
    Spec(
        "Gather",
        (F((2, 4, 3)), C(np.array([[1, -1], [0, 1]], dtype=np.int64))),
        {"axis": 1},
        id="Gather-axis1-negative",
    ),
    Spec("Gather", (F((5, 3)), i64(1, 1, 3)), opset=13, id="Gather-opset13-onehot"),
    Spec("Gather", (F((2, 4, 3)), i64(1, 1, 3)), {"axis": 1}, opset=13, id="Gather-opset13-axis1"),
    Spec("GatherElements", (F((3, 4)), C(np.array([[0, 1], [2, 0], [1, 1]], dtype=np.int64))), {"axis": 1}),
    Spec(
        "GatherElements",
        (F((3, 4)), C(np.array([[0, 1], [2, 0], [1, 1]], dtype=np.int64))),
        {"axis": 1},
        opset=13,
        id="GatherElements-opset13",
    ),
    Spec(
        "GatherElements",
        (F((4, 3)), C(np.array([[3, 1, 0], [0, 3, 3]], dtype=np.int64))),
        {"axis": 0},
        opset=13,
        id="GatherElements-opset13-axis0-repeats",
    ),
    Spec("GatherND", (F((3, 4, 2)), C(np.array([[0, 1], [2, 3], [0, 1]], dtype=np.int64)))),
    Spec("ScatterElements", (F((3, 4)), C(np.array([[0, 1], [2, 3], [1, 0]], dtype=np.int64)), F((3, 2))), {"axis": 1}),
    Spec(
        "ScatterElements",
        (F((3, 4)), C(np.array([[0, 0], [2, 3], [1, 1]], dtype=np.int64)), F((3, 2))),
        {"axis": 1, "reduction": "add"},
        id="ScatterElements-add",
    ),
    Spec("ScatterND", (F((4, 3)), C(np.array([[1], [3]], dtype=np.int64)), F((2, 3)))),
    Spec("Expand", (F((3, 1)), i64(2, 3, 4))),
    Spec("Tile", (F((2, 3)), i64(2, 3))),
    Spec("Pad", (F((2, 3)), i64(1, 0, 2, 1)), id="Pad-constant"),
    Spec("Pad", (F((2, 3)), i64(1, 0, 0, 2), F((), -1, 1)), id="Pad-constant-value"),
    Spec("Pad", (F((2, 3)), i64(1, 2, 1, 2), C(np.array(0.5))), {"mode": "reflect"}, id="Pad-reflect"),
    Spec("Pad", (F((2, 3)), i64(2, 1, 0, 3)), {"mode": "edge"}, id="Pad-edge"),
    Spec("Pad", (F((2, 3, 2)), i64(1, 0, 2, 1), C(None), i64(1, -1)), id="Pad-axes"),
    Spec("Pad", (F((3, 4)), i64(1, 1, 2, 0)), {"mode": "wrap"}, opset=19, id="Pad-wrap"),
    Spec("Pad", (F((1, 3, 4)), i64(0, 2, 1, 0, 1, 3)), {"mode": "reflect"}, opset=13, id="Pad-reflect-opset13"),
    Spec("Pad", (F((3, 4)), i64(2, 0, 1, 3)), {"mode": "edge"}, opset=13, id="Pad-edge-opset13"),
    Spec("DepthToSpace", (F((1, 8, 2, 3)),), {"blocksize": 2}),
    Spec("DepthToSpace", (F((1, 8, 2, 3)),), {"blocksize": 2, "mode": "CRD"}, id="DepthToSpace-CRD"),
    Spec("SpaceToDepth", (F((1, 2, 4, 6)),), {"blocksize": 2}),
    Spec(
        "Resize",
        (F((1, 1, 3, 4)), C(None), C(np.array([1, 1, 2, 1.5], dtype=np.float32))),
        {"mode": "nearest"},
        id="Resize-nearest",
    ),
    Spec(
        "Resize",
        (F((1, 2, 3, 4)), C(None), C(np.array([1, 1, 2, 2], dtype=np.float32))),
        {"mode": "linear"},
        id="Resize-linear",
    ),
    Spec(
        "Resize",
        (F((1, 1, 4, 3)), C(None), C(None), i64(1, 1, 3, 5)),
        {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
        id="Resize-linear-sizes-align",
    ),
    Spec(
        "Resize",
        (F((1, 1, 4, 4)), C(None), C(np.array([1, 1, 0.5, 0.75], dtype=np.float32))),
        {"mode": "cubic"},
        id="Resize-cubic-down",
    ),
    Spec("Trilu", (F((3, 4)),)),
    Spec("Trilu", (F((2, 3, 4)), C(np.array(-1))), {"upper": 0}, id="Trilu-lower-k"),
    Spec("TopK", (F((3, 5)), i64(2)), node_outputs=2),
    Spec("TopK", (F((4, 3)), i64(3)), {"axis": 0, "largest": 0}, node_outputs=2, id="TopK-smallest-axis0"),
]

BOOL_MASK = C(
    np.array([[True, False, True, True, False], [True, True, False, True, True], [False, True, True, False, True]])
)
POSITIONS = C(np.array([[0, 2, 5], [3, 3, 1]], dtype=np.int64))
SPECS += [
    # opset-23 transformer ops
    Spec("Attention", (F((2, 2, 3, 4)), F((2, 2, 5, 4)), F((2, 2, 5, 3))), opset=23),
    Spec(
        "Attention",
        (F((2, 2, 3, 4)), F((2, 2, 5, 4)), F((2, 2, 5, 3))),
        {"is_causal": 1, "scale": 0.4},
        opset=23,
        id="Attention-causal-scale",
    ),
    Spec("Attention", (F((1, 4, 3, 4)), F((1, 2, 5, 4)), F((1, 2, 5, 3))), opset=23, id="Attention-gqa"),
    Spec(
        "Attention",
        (F((2, 3, 8)), F((2, 5, 4)), F((2, 5, 6))),
        {"q_num_heads": 4, "kv_num_heads": 2},
        opset=23,
        id="Attention-3d-gqa",
    ),
    Spec(
        "Attention",
        (F((2, 2, 3, 4)), F((2, 2, 5, 4)), F((2, 2, 5, 3)), F((3, 5))),
        opset=23,
        id="Attention-additive-mask",
    ),
    Spec(
        "Attention", (F((2, 2, 3, 4)), F((2, 2, 5, 4)), F((2, 2, 5, 3)), BOOL_MASK), opset=23, id="Attention-bool-mask"
    ),
    Spec(
        "Attention",
        (F((2, 2, 3, 4)), F((2, 2, 3, 4)), F((2, 2, 3, 3)), F((2, 1, 3, 3))),
        {"is_causal": 1},
        opset=23,
        id="Attention-additive-mask-causal",
    ),
    Spec(
        "Attention",
        (F((2, 2, 3, 4), -2, 2), F((2, 2, 5, 4), -2, 2), F((2, 2, 5, 3)), BOOL_MASK),
        {"softcap": 1.5},
        opset=23,
        id="Attention-softcap-bool-mask",
    ),
    Spec(
        "Attention",
        (F((1, 2, 2, 4)), F((1, 2, 2, 4)), F((1, 2, 2, 3)), C(None), F((1, 2, 3, 4)), F((1, 2, 3, 3))),
        {"is_causal": 1},
        outputs=3,
        opset=23,
        id="Attention-past-causal-present",
    ),
    Spec(
        "Attention",
        (F((1, 2, 8)), F((1, 4, 4)), F((1, 4, 4)), C(None), F((1, 1, 1, 4)), F((1, 1, 1, 4))),
        {"q_num_heads": 2, "kv_num_heads": 1, "is_causal": 1},
        outputs=3,
        opset=23,
        id="Attention-3d-gqa-past",
    ),
    Spec("RotaryEmbedding", (F((2, 2, 3, 4)), F((2, 3, 2)), F((2, 3, 2))), opset=23),
    Spec(
        "RotaryEmbedding",
        (F((2, 2, 3, 4)), F((2, 3, 2)), F((2, 3, 2))),
        {"interleaved": 1},
        opset=23,
        id="RotaryEmbedding-interleaved",
    ),
    Spec(
        "RotaryEmbedding",
        (F((2, 2, 3, 8)), F((6, 2)), F((6, 2)), POSITIONS),
        {"rotary_embedding_dim": 4},
        opset=23,
        id="RotaryEmbedding-positions-partial",
    ),
    Spec(
        "RotaryEmbedding",
        (F((2, 3, 8)), F((6, 2)), F((6, 2)), POSITIONS),
        {"num_heads": 2, "interleaved": 1},
        opset=23,
        id="RotaryEmbedding-3d-positions-interleaved",
    ),
    Spec(
        "RotaryEmbedding",
        (F((2, 3, 8)), K((2, 3, 2)), K((2, 3, 2))),
        {"num_heads": 2},
        opset=23,
        id="RotaryEmbedding-3d-x-only",
    ),
]

# recurrent ops: T=3 steps, batch 2, input 3, hidden 2 (layout 1, which onnxruntime lacks: test_recurrent.py)
H2 = {"hidden_size": 2}
SPECS += [
    Spec("LSTM", (F((3, 2, 3)), F((1, 8, 3)), F((1, 8, 2))), H2, outputs=3),
    Spec(
        "LSTM",
        (F((3, 2, 3)), F((1, 8, 3)), F((1, 8, 2)), F((1, 16)), C(None), F((1, 2, 2)), F((1, 2, 2))),
        {**H2, "direction": "reverse"},
        outputs=3,
        id="LSTM-reverse-bias-states",
    ),
    Spec(
        "LSTM",
        (F((3, 2, 3)), F((2, 8, 3)), F((2, 8, 2)), F((2, 16)), C(None), F((2, 2, 2)), F((2, 2, 2))),
        {**H2, "direction": "bidirectional"},
        outputs=3,
        id="LSTM-bidirectional",
    ),
    Spec("LSTM", (F((4, 1, 3)), F((1, 8, 3)), K((1, 8, 2))), H2, node_outputs=3, id="LSTM-y-only"),
    Spec("GRU", (F((3, 2, 3)), F((1, 6, 3)), F((1, 6, 2))), H2, outputs=2),
    Spec(
        "GRU",
        (F((3, 2, 3)), F((1, 6, 3)), F((1, 6, 2)), F((1, 12)), C(None), F((1, 2, 2))),
        {**H2, "direction": "reverse", "linear_before_reset": 1},
        outputs=2,
        id="GRU-reverse-linear-before-reset",
    ),
    Spec(
        "GRU",
        (F((3, 2, 3)), F((2, 6, 3)), F((2, 6, 2)), F((2, 12)), C(None), F((2, 2, 2))),
        {**H2, "direction": "bidirectional"},
        outputs=2,
        id="GRU-bidirectional",
    ),
    Spec("GRU", (F((3, 2, 3)), K((1, 6, 3)), F((1, 6, 2))), H2, outputs=2, node_outputs=2, id="GRU-y-and-state"),
]
SPECS += [
    Spec(
        "Attention",
        (F((2, 2, 3, 4)), F((2, 2, 5, 4)), F((2, 2, 5, 3))),
        {"qk_matmul_output_mode": 3},
        outputs=4,
        opset=23,
        id="Attention-qk-output-softmax",
    ),
    Spec(
        "Attention",
        (F((1, 4, 3, 4)), F((1, 2, 5, 4)), F((1, 2, 5, 3)), F((3, 5))),
        {"qk_matmul_output_mode": 2, "softcap": 2.0},
        outputs=4,
        opset=23,
        id="Attention-gqa-qk-output-bias-softcap",
    ),
    Spec(
        "Attention",
        (F((2, 2, 3, 4)), F((2, 2, 5, 4)), F((2, 2, 5, 3))),
        {"qk_matmul_output_mode": 0},
        outputs=4,
        node_outputs=4,
        opset=23,
        id="Attention-qk-output-scores",
    ),
    Spec(
        "Attention",
        (
            F((2, 2, 2, 4)),
            F((2, 2, 5, 4)),
            F((2, 2, 5, 3)),
            C(None),
            C(None),
            C(None),
            C(np.array([3, 5], dtype=np.int64)),
        ),
        {"is_causal": 1},
        opset=24,
        id="Attention-nonpad-kv-seqlen-causal",
    ),
]
