"""onnxruntime sessions over an IR model's own tensor memory: no serialized copy of the weights.

A session made from ``model.to_proto().SerializeToString()`` holds the weights three more times
while it is created (the ModelProto, its bytes, onnxruntime's own tensors) and a fourth time after
(MLAS's pre-packed copies of MatMul weights). :func:`ir_session` hands onnxruntime only the graph: the
main graph's initializers travel as OrtValues over the IR's numpy arrays
(``SessionOptions.add_initializer``, which onnxruntime uses in place), and pre-packing is off. The
protobuf onnxruntime reads keeps each such initializer as a stub whose external data location is
``"."``: a model loaded from bytes resolves it to the working folder, which exists, so onnxruntime
accepts the reference; it reads the shared value instead, and were it ever to read the stub, reading a
folder fails loudly rather than returning zeros. No file is written.

Tensors onnxruntime cannot take as OrtValues (bfloat16, float8, strings, sub-byte types), small
ones, and those of subgraphs and attributes stay inline in the protobuf.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from onnxgraph import types
from onnxgraph.errors import NotShareable
from onnxgraph.model import Model
from onnxgraph.tensor import Tensor

SHARED_MIN_BYTES = 1024
"""Initializers at least this large are shared with onnxruntime; smaller ones are copied inline."""
NO_PREPACKING = {"session.disable_prepacking": "1"}
"""Session config entry that keeps onnxruntime from making packed copies of constant weights (a
second copy of every MatMul weight; a verification run gains nothing from it)."""
_STUB_LOCATION = "."
_PROTOBUF_LIMIT = (1 << 31) - 1


@dataclass
class IRSession:
    """An onnxruntime session and the OrtValues it reads its shared weights from.

    Attributes:
        session: the ``onnxruntime.InferenceSession``.
        shared: initializer name -> OrtValue over the IR's array; kept alive as long as the session.
    """

    session: Any
    shared: dict[str, Any] = field(default_factory=dict)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output by name, for ``feeds`` (inputs the model lacks are left out), within the run budget."""
        from onnxgraph.runtime.sessions import run_within_budget

        names = [o.name for o in self.session.get_outputs()]
        wanted = {i.name for i in self.session.get_inputs()}
        outputs = run_within_budget(self.session, names, {k: v for k, v in feeds.items() if k in wanted})
        return dict(zip(names, outputs, strict=True))


def ir_session(
    model: Model, *, optimization: str = "disable", threads: int | None = None, ir_version: int | None = None
) -> IRSession:
    """A CPU session for ``model`` whose large initializers are the IR's own arrays.

    Args:
        model: the IR model (its tensors are read, not copied; they must not change while the
            session lives).
        optimization: onnxruntime graph optimization level (see ``sessions.create_session``).
        threads: intra-op threads (default: onnxruntime's choice).
        ir_version: the IR version to stamp instead of the model's (onnxruntime refuses newer ones
            than it knows; IR versions change no semantics).

    Raises:
        NotShareable: the model without its shared weights is still over protobuf's 2 GB limit (or
            the working folder, where the stubs point, is gone).
        Exception: whatever onnxruntime raises for a model it refuses.
    """
    import onnxruntime as ort

    from onnxgraph.runtime.sessions import create_session
    from onnxgraph.serde.exporter import export_model, inline_sink
    from onnxgraph.serde.external import metadata_only

    wanted = {
        id(tensor): name
        for name, value in model.graph.initializers.items()
        if isinstance(tensor := value.const_value, Tensor) and _shareable(tensor)
    }
    shared: dict[str, Any] = {}

    def sink(tensor: Tensor, name: str) -> onnx.TensorProto:
        if wanted.get(id(tensor)) != name or name in shared:
            return inline_sink(tensor, name)
        shared[name] = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(tensor.numpy()))
        proto = metadata_only(tensor, name)
        proto.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", _STUB_LOCATION), ("offset", "0"), ("length", str(tensor.nbytes))):
            entry = proto.external_data.add()
            entry.key, entry.value = key, value
        return proto

    if not os.path.isdir(_STUB_LOCATION):  # a working folder deleted under us: onnxruntime would refuse the stubs
        raise NotShareable("the working folder is gone")
    proto = export_model(model, sink, ir_version=ir_version)
    if sum(_points_at_stub(t) for t in proto.graph.initializer) != len(shared):
        # a subgraph or attribute reached the sink first with the same tensor and name
        raise NotShareable("a shared weight is not a main-graph initializer of its own")
    if proto.ByteSize() > _PROTOBUF_LIMIT:
        raise NotShareable(f"the graph without its {len(shared)} shared weights is over protobuf's 2 GB limit")
    payload = proto.SerializeToString()
    del proto
    session = create_session(
        payload, optimization=optimization, threads=threads, config_entries=NO_PREPACKING, initializers=shared
    )
    return IRSession(session, shared)


def open_session(
    model: str | os.PathLike | Model, *, optimization: str = "disable", ir_version: int | None = None
) -> IRSession:
    """A session for checking ``model``, with no pre-packed copies of its weights.

    A path runs from its file (onnxruntime reads it as users' sessions do); an IR model runs over its
    own arrays (:func:`ir_session`), or, when that cannot be, from a temporary copy with its weights
    in external data.

    Args:
        model: a model file or an IR model.
        optimization: onnxruntime graph optimization level.
        ir_version: for an IR model shared with :func:`ir_session`, the IR version to stamp.
    """
    from onnxgraph.runtime.sessions import create_session
    from onnxgraph.serde.fileio import save

    if not isinstance(model, Model):
        return IRSession(create_session(model, optimization=optimization, config_entries=NO_PREPACKING))
    try:
        return ir_session(model, optimization=optimization, ir_version=ir_version)
    except NotShareable:
        pass
    with tempfile.TemporaryDirectory(prefix="onnxgraph-session-") as folder:
        path = os.path.join(folder, "model.onnx")
        save(model, path, external_data="auto")
        return IRSession(create_session(path, optimization=optimization, config_entries=NO_PREPACKING))


def _shareable(tensor: Tensor) -> bool:
    """Whether onnxruntime can take the tensor as an OrtValue over its numpy array."""
    if tensor.elem_type == onnx.TensorProto.STRING or tensor.nbytes < SHARED_MIN_BYTES:
        return False
    try:
        dtype = np.dtype(types.np_dtype(tensor.elem_type))
    except (KeyError, ValueError, TypeError):
        return False
    return dtype.isbuiltin == 1 and dtype.kind in "fiub"


def _points_at_stub(tensor: onnx.TensorProto) -> bool:
    return any(e.key == "location" and e.value == _STUB_LOCATION for e in tensor.external_data)
