"""onnx.reference fixes the gradient checks need: its ConvTranspose ignores ``group``, its
MaxPool numbers Indices per (n, c) plane instead of over the whole tensor as the spec says, its
Mean adds in place (so a smaller first operand cannot broadcast), its Pad refuses negative
pads (which crop) and its Loop mishandles an omitted condition and stacked step outputs."""

from __future__ import annotations

import numpy as np
from onnx.reference.ops.op_conv_transpose import ConvTranspose as _ReferenceConvTranspose
from onnx.reference.ops.op_loop import Loop as _ReferenceLoop
from onnx.reference.ops.op_max_pool import MaxPool as _ReferenceMaxPool
from onnx.reference.ops.op_mean import Mean as _ReferenceMean
from onnx.reference.ops.op_pad import Pad_18 as _ReferencePad


class ConvTranspose(_ReferenceConvTranspose):
    """Grouped ConvTranspose as one reference ConvTranspose per group, concatenated."""

    def _run(self, X, W, B=None, **kwargs):
        group = kwargs.get("group") or self.group or 1
        if group == 1:
            return super()._run(X, W, B, **kwargs)
        kwargs["group"] = 1
        xs, ws = np.split(X, group, axis=1), np.split(W, group, axis=0)
        bs = np.split(B, group) if B is not None else [None] * group
        parts = [super(ConvTranspose, self)._run(x, w, b, **kwargs)[0] for x, w, b in zip(xs, ws, bs)]
        return (np.concatenate(parts, axis=1),)


class MaxPool(_ReferenceMaxPool):
    """Indices recomputed from the windows: the reference numbers them wrongly for some shapes;
    onnxruntime and the spec number over the whole tensor (row-major)."""

    def _run(self, x, **kwargs):
        result = super()._run(x, **kwargs)
        if len(result) < 2 or result[1] is None:
            return result
        values = result[0]
        kernel = kwargs.get("kernel_shape") or self.kernel_shape
        n = len(kernel)
        strides = kwargs.get("strides") or self.strides or [1] * n
        dilations = kwargs.get("dilations") or self.dilations or [1] * n
        pads = kwargs.get("pads") or self.pads or [0] * 2 * n
        auto_pad = kwargs.get("auto_pad") or getattr(self, "auto_pad", None) or "NOTSET"
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            begins = []
            for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations):
                total = max(0, (-(-size // s) - 1) * s + (k - 1) * d + 1 - size)
                begins.append(total // 2 if auto_pad == "SAME_UPPER" else total - total // 2)
            pads = begins  # only the leading pads place a window
        indices = np.zeros(values.shape, dtype=np.int64)
        for pos in np.ndindex(*values.shape):
            best, best_index = -np.inf, -1
            for offset in np.ndindex(*kernel):
                cell = [o * s + k * d - p for o, s, k, d, p in zip(pos[2:], strides, offset, dilations, pads)]
                if all(0 <= c < size for c, size in zip(cell, x.shape[2:])) and x[(*pos[:2], *cell)] > best:
                    best, best_index = (
                        x[(*pos[:2], *cell)],
                        np.ravel_multi_index((*pos[:2], *cell), x.shape),
                    )
            indices[pos] = best_index
        return (values, indices)


class Mean(_ReferenceMean):
    """The broadcast mean of all operands."""

    def _run(self, *args):
        return ((sum(args) / len(args)).astype(args[0].dtype),)


class Pad(_ReferencePad):
    """Negative pads crop first, then the rest pads."""

    def _run(self, data, pads, constant_value=None, axes=None, mode=None):
        pads = np.asarray(pads, dtype=np.int64)
        rank = len(pads) // 2
        listed = range(data.ndim) if axes is None else [a % data.ndim for a in axes]
        crop = [slice(None)] * data.ndim
        for i, axis in enumerate(listed):
            begin, end = min(0, pads[i]), min(0, pads[i + rank])
            crop[axis] = slice(-begin, data.shape[axis] + end)
        return super()._run(data[tuple(crop)], np.maximum(pads, 0), constant_value, axes, mode)


class Loop(_ReferenceLoop):
    """The reference stops at once when the condition input is omitted (it means true) and joins
    step outputs with np.vstack (which concatenates instead of stacking arrays of rank >= 2)."""

    def _run(self, M, cond, *args, context=None, body=None, attributes=None, bindings=None):
        names = self.body.input_names
        values = dict(context or {})
        values.update(zip(names[2:], args))
        cond = np.array(True) if cond is None else cond
        stacked: list[list[np.ndarray]] = [[] for _ in range(self.K)]
        step = 0
        while bool(cond) and (M is None or step < M):
            values[names[0]] = np.array(step, dtype=np.int64)
            values[names[1]] = cond
            outputs = self._run_body(values, attributes=attributes, bindings=bindings)
            cond = outputs[0]
            values.update(zip(names[2:], outputs[1 : 1 + self.N]))
            for k in range(self.K):
                stacked[k].append(outputs[1 + self.N + k])
            step += 1
        finals = [values[n] for n in names[2:]]
        return tuple(finals + [np.stack(s) if s else np.zeros((0,)) for s in stacked])


NEW_OPS = [ConvTranspose, Loop, MaxPool, Mean, Pad]
