"""Optimizers: PyTorch's update rules as onnxscript functions, inlined into standard ONNX ops.

Each optimizer names its per-parameter state slots (PyTorch's own names, so a checkpoint reads like a
``torch.optim`` state dict) and provides one onnxscript function ``(param, grad, *state, step, lr,
*hyper) -> (new_param, *new_state)``. :func:`onnxgraph.training.build_training` calls it as a
model-local function and inlines it, so the saved models hold only standard ops. ``step`` is the
1-based number of the update being made (PyTorch's ``state["step"]`` after its increment).
"""

from __future__ import annotations

import dataclasses

import onnx
import onnxscript
from onnxscript import opset17 as op

DOMAIN = "onnxgraph.optim"
"""The domain of the optimizer functions while the train step is built (inlined before saving)."""


@onnxscript.script(default_opset=op)
def sgd_update(param, grad, momentum_buffer, step, lr, momentum, weight_decay, nesterov):
    """torch.optim.SGD (dampening 0): a zero buffer makes the first step's ``buf = grad`` fall out."""
    g = grad + weight_decay * param
    buf = momentum * momentum_buffer + g
    # onnxscript turns a Python number into a constant tensor; op's stubs expect tensors (also below)
    direction = op.Where(nesterov > op.CastLike(0.0, nesterov), g + momentum * buf, buf)  # type: ignore[type-var]
    return param - op.CastLike(lr, param) * direction, buf


@onnxscript.script(default_opset=op)
def sgd_plain_update(param, grad, step, lr, weight_decay):
    """torch.optim.SGD without momentum: no state."""
    return param - op.CastLike(lr, param) * (grad + weight_decay * param)


@onnxscript.script(default_opset=op)
def adam_update(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """torch.optim.Adam (``decoupled`` 0: L2 added to the gradient) and AdamW (``decoupled`` 1)."""
    one = op.CastLike(1.0, param)  # type: ignore[type-var]
    rate = op.CastLike(lr, param)
    t = op.CastLike(step, param)
    coupled = one - decoupled
    g = grad + coupled * weight_decay * param
    p = param * (one - decoupled * rate * weight_decay)
    m = beta1 * exp_avg + (one - beta1) * g
    v = beta2 * exp_avg_sq + (one - beta2) * g * g
    bias1 = one - op.Pow(beta1, t)
    bias2 = one - op.Pow(beta2, t)
    denom = op.Sqrt(v) / op.Sqrt(bias2) + eps
    return p - (rate / bias1) * (m / denom), m, v


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """Base of the optimizers: state slot names, the update function and its hyper-parameters."""

    def state_slots(self) -> tuple[str, ...]:
        """Names of the per-parameter state tensors (each shaped like its parameter, zero at start)."""
        raise NotImplementedError

    def function(self) -> onnx.FunctionProto:
        """The update rule as a FunctionProto in :data:`DOMAIN`, named after the class."""
        raise NotImplementedError

    def hyper_parameters(self) -> tuple[float, ...]:
        """The constant inputs following ``lr`` in the update function."""
        raise NotImplementedError

    def config(self) -> dict:
        """A JSON-ready description (kind and hyper-parameters) for manifests and checkpoints."""
        return {"kind": type(self).__name__.lower(), **dataclasses.asdict(self)}


def _function(script, name: str) -> onnx.FunctionProto:
    proto = script.to_function_proto()
    proto.domain, proto.name = DOMAIN, name
    return proto


@dataclasses.dataclass(frozen=True)
class SGD(Optimizer):
    """torch.optim.SGD with momentum (no dampening), Nesterov momentum and L2 weight decay.

    Args:
        momentum: momentum factor (0: plain SGD, no state).
        nesterov: use Nesterov momentum.
        weight_decay: L2 penalty added to the gradient.
    """

    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.nesterov and self.momentum <= 0:
            raise ValueError("Nesterov momentum requires a momentum > 0")

    def state_slots(self) -> tuple[str, ...]:
        return ("momentum_buffer",) if self.momentum else ()

    def function(self) -> onnx.FunctionProto:
        if self.momentum:
            return _function(sgd_update, "SGD")
        return _function(sgd_plain_update, "SGDPlain")

    def hyper_parameters(self) -> tuple[float, ...]:
        if self.momentum:
            return (self.momentum, self.weight_decay, float(self.nesterov))
        return (self.weight_decay,)


@dataclasses.dataclass(frozen=True)
class Adam(Optimizer):
    """torch.optim.Adam with bias correction; ``weight_decay`` is L2 added to the gradient.

    Args:
        betas: coefficients of the running averages of the gradient and its square.
        eps: added to the denominator.
        weight_decay: L2 penalty.
    """

    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0

    decoupled = 0.0

    def state_slots(self) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq")

    def function(self) -> onnx.FunctionProto:
        return _function(adam_update, "Adam")

    def hyper_parameters(self) -> tuple[float, ...]:
        return (*self.betas, self.eps, self.weight_decay, self.decoupled)


@dataclasses.dataclass(frozen=True)
class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay (``param *= 1 - lr * weight_decay``)."""

    weight_decay: float = 1e-2

    decoupled = 1.0


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}
"""Optimizer classes by the name ``onnxgraph train --optimizer`` takes."""
