r"""``from_onnx``: an ONNX model as an npcam :class:`~npcam.nn.Graph`.

ONNX is the exchange format every framework exports to — ``torch.onnx.export`` (both the
TorchScript-based exporter, ``dynamo=False``, and the default ``torch.export`` one),
``tf2onnx`` for Keras/TensorFlow, ``jax2onnx`` for JAX — so one importer lets npcam check a
Grad-CAM written in any of them. The importer maps every ONNX node to the npcam layer or
graph op that computes the same function (a ``Conv`` to :class:`~npcam.nn.Conv2d`, a
``Gemm`` to :class:`~npcam.nn.Linear`, …); the backward passes are npcam's own, derived
by hand, never ONNX's.

What an ONNX file fixes, and what the import changes (each change is listed in
``graph.import_notes``):

* **Constants.** ``Constant`` nodes, shape arithmetic (``Shape → Gather → …``) and every
  node whose inputs are all constant are evaluated once, at import, with NumPy.
* **Float attributes are float32** even in a float64 export (ONNX stores FLOAT
  attributes in 32 bits): HardSigmoid's ``alpha`` is 0.16666667163, BatchNorm's ``1e-5``
  is 9.99999974738e-06. With ``snap_constants=True`` an attribute whose float32 value is
  that of 1/6, 0.5, 1e-5, 1e-3 or 1e-6 is replaced by the exact number.
* **Batch size.** Exporters declare a static input ``[1, 3, 224, 224]`` and bake the
  batch into reshapes (``Reshape([1, 512])``). The graph takes any batch: a constant
  ``Reshape`` shape whose leading entry is the exported batch, on a tensor whose axis 0
  is the batch, is rewritten to follow the input. Spatial sizes stay as exported
  (``graph.input_shape``; an adaptive pooling was specialised to that size).
* **A final Softmax** is dropped (``graph.output_softmax = True``): the graph returns the
  logits, what Grad-CAM differentiates (tf-keras-vis's ``ReplaceToLinear``).

Names: a node is named by its ONNX node name; its output tensor's name and the module
paths of the exporter's scopes are aliases — a PyTorch export gets ``from_torch``'s names
(``"layer4"``, ``"layer4.1.conv1"``), a tf2onnx export the Keras layer names.
"""

from __future__ import annotations

import ast
import functools
import importlib
import math
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validate import MAX_MODEL_PARAMETERS, describe
from ..nn import activations, layers, ops
from ..nn.graph import INPUT, Graph, Node

__all__ = ["MAX_ONNX_BYTES", "ONNX_HINT", "OPSETS", "SUPPORTED_OPS", "from_onnx"]

ONNX_HINT = "install the onnx extra: pip install 'npcam[onnx]'"

#: The opsets (of the default ``ai.onnx`` domain) the importer is tested on.
OPSETS = range(13, 24)

#: The model file and all its external data files together, at most (bytes): the
#: protobuf limit of a single file is 2 GiB; VGG-16's float64 weights are 1.1 GB.
MAX_ONNX_BYTES = 8 * 2**30

# Known constants that ONNX's float32 attributes round (snap_constants=True).
_SNAP = (1.0 / 6.0, 0.5, 1e-5, 1e-3, 1e-6)

_INT64_MAX = 2**63 - 1


def _onnx() -> Any:
    try:
        return importlib.import_module("onnx")
    except ImportError as exc:
        raise ImportError(f"npcam.from_onnx needs the onnx package; {ONNX_HINT}") from exc


# =========================================================================== files
def _load(onnx: Any, path: str) -> Any:
    """Read an .onnx file and its external data, every size checked before any read."""
    if not os.path.isfile(path):
        raise ValueError(f"path_or_model must be an existing .onnx file, got {path!r} (no such file).")
    size = os.path.getsize(path)
    if size == 0:
        raise ValueError(f"{path!r} is empty, not an ONNX model.")
    if size > min(MAX_ONNX_BYTES, 2**31):
        raise ValueError(f"{path!r} is {size} bytes; an ONNX model file holds at most 2 GiB "
                         "(larger weights go to external data files).")
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ValueError(f"{path!r} is not an ONNX model (it does not parse as a ModelProto: "
                         f"{type(exc).__name__}).") from None
    if not model.graph.node or not model.opset_import or model.ir_version <= 0:
        raise ValueError(f"{path!r} is not an ONNX model (no graph nodes, opset or IR version).")
    folder = os.path.dirname(os.path.abspath(path))
    total = size
    external = list(_external_tensors(model))
    sizes: dict[str, int] = {}
    for tensor in external:
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        where = f"external data of {tensor.name!r}"
        if not location or os.path.isabs(location):
            raise ValueError(f"the {where} must be a path relative to the model's folder, got "
                             f"{location!r}.")
        target = os.path.realpath(os.path.join(folder, location))
        if os.path.commonpath([target, os.path.realpath(folder)]) != os.path.realpath(folder):
            raise ValueError(f"the {where} points outside the model's folder ({location!r}); "
                             "refused.")
        if not os.path.isfile(target):
            raise ValueError(f"the {where} is missing: {location!r} is not a file beside the model.")
        if target not in sizes:
            sizes[target] = os.path.getsize(target)
            total += sizes[target]
        if total > MAX_ONNX_BYTES:
            raise ValueError(f"{path!r} and its external data hold {total} bytes, more than "
                             f"MAX_ONNX_BYTES = {MAX_ONNX_BYTES}.")
        offset = int(info.get("offset", 0) or 0)
        needed = _tensor_bytes(onnx, tensor)
        length = int(info.get("length", needed) or needed)
        if offset < 0 or length != needed or offset + length > sizes[target]:
            raise ValueError(
                f"the {where} claims {needed} bytes (shape {list(tensor.dims)}) at offset "
                f"{offset} of {location!r}, which holds {sizes[target]} bytes; refused before "
                "reading."
            )
    if external:
        helper = importlib.import_module("onnx.external_data_helper")
        helper.load_external_data_for_model(model, folder)
    return model


def _external_tensors(model: Any) -> Iterable[Any]:
    onnx = _onnx()
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            yield t
    for n in model.graph.node:
        for a in n.attribute:
            if a.HasField("t") and a.t.data_location == onnx.TensorProto.EXTERNAL:
                yield a.t


def _tensor_bytes(onnx: Any, tensor: Any) -> int:
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
    count = math.prod(int(d) for d in tensor.dims)
    if any(int(d) < 0 for d in tensor.dims) or count > 4 * MAX_MODEL_PARAMETERS:
        raise ValueError(f"tensor {tensor.name!r} claims the shape {list(tensor.dims)}; refused.")
    return count * np.dtype(dtype).itemsize


def _to_array(onnx: Any, tensor: Any) -> np.ndarray:
    """A TensorProto as an array, its stored bytes checked against its shape first."""
    needed = _tensor_bytes(onnx, tensor)
    if tensor.raw_data and len(tensor.raw_data) != needed:
        raise ValueError(f"tensor {tensor.name!r} of shape {list(tensor.dims)} needs {needed} bytes "
                         f"but stores {len(tensor.raw_data)}; the file is damaged.")
    numpy_helper = importlib.import_module("onnx.numpy_helper")
    try:
        arr = numpy_helper.to_array(tensor)
    except Exception as exc:
        raise ValueError(f"tensor {tensor.name!r} cannot be read: {exc}.") from None
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"tensor {tensor.name!r} holds NaN or infinite values.")
    return arr


def _weightless(onnx: Any, model: Any, value_info: bool = True) -> Any:
    """The model with its large initializers turned into typed graph inputs: the checker
    and shape inference serialise the model, which for VGG-16's 1.1 GB of weights takes
    seconds and is capped at 2 GiB; neither needs the weights' values."""
    helper = onnx.helper
    small, inputs = [], list(model.graph.input)
    names = {i.name for i in inputs}
    for t in model.graph.initializer:
        if math.prod(t.dims) <= 4096:
            small.append(t)
        elif t.name not in names:
            inputs.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    graph = helper.make_graph(model.graph.node, model.graph.name, inputs, model.graph.output,
                              initializer=small, value_info=model.graph.value_info if value_info else [])
    light = helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version,
                              producer_name=model.producer_name)
    light.functions.extend(model.functions)
    return light


# =========================================================================== importer
class _Refused(ValueError):
    pass


@dataclass
class _Dyn:
    """A tensor computed from the input: the npcam output that holds it."""

    name: str
    shape: tuple[int | None, ...] | None
    batched: bool  # axis 0 is the batch axis


def _attrs(onnx: Any, node: Any) -> dict[str, Any]:
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif hasattr(v, "dims"):  # a TensorProto
            v = _to_array(onnx, v)
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [s.decode("utf-8", "replace") for s in v]
        out[a.name] = v
    return out


class _Importer:
    def __init__(self, onnx: Any, model: Any, dtype: np.dtype, snap: bool) -> None:
        self.onnx = onnx
        self.model = model
        self.dtype = dtype
        self.snap = snap
        self.notes: list[str] = []
        self.consts: dict[str, np.ndarray] = {}
        self.dyn: dict[str, _Dyn] = {}
        self.by_npcam: dict[str, _Dyn] = {}
        self.nodes: list[Node] = []
        self.origin: dict[str, list[Any]] = {}  # npcam node -> the ONNX nodes it stands for
        self.used: set[str] = set()
        self.flat: dict[str, int] = {}  # npcam output of a Reshape([-1]) of a batched tensor
        self.linear_from_matmul: dict[str, tuple[Node, str]] = {}
        self.output_softmax = False
        self.rewritten_batches = 0
        self.snapped: dict[str, tuple[float, float]] = {}
        g = model.graph
        opset = {o.domain: o.version for o in model.opset_import}
        self.opset = opset.get("", opset.get("ai.onnx", 0))
        if self.opset not in OPSETS:
            raise ValueError(f"the model's opset is {self.opset}; npcam.from_onnx reads opsets "
                             f"{OPSETS.start}-{OPSETS.stop - 1}.")
        for t in g.initializer:
            self.consts[t.name] = _to_array(onnx, t)
        inputs = [i for i in g.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise _Refused(f"the model must have one input, got {len(inputs)}: "
                           f"{[i.name for i in inputs]}.")
        if len(g.output) != 1:
            raise _Refused(f"the model must have one output, got {len(g.output)}: "
                           f"{[o.name for o in g.output]}.")
        self.input_name = inputs[0].name
        self.output_name = g.output[0].name
        shape = self._shape_of(inputs[0])
        if shape is None or len(shape) < 2:
            raise _Refused(f"the model's input {self.input_name!r} must have a known rank of at "
                           f"least 2, got the shape {shape}.")
        if shape[0] is None:
            # a symbolic batch ("N", jax2onnx's "B", tf2onnx's "unk__31"): fixed to 1 for
            # shape inference, so that shape arithmetic folds, then freed like an exported
            # batch of 1
            shape = (1, *shape[1:])
            self.notes.append("the input's symbolic batch dimension was set to 1 for the import; "
                              "the graph takes any batch.")
        elem = inputs[0].type.tensor_type.elem_type
        self.input_dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem) if elem else np.float32)
        self.export_batch = shape[0]
        self.input_shape: tuple[int | None, ...] = (None, *shape[1:])
        self.shapes = self._inferred_shapes(shape)
        self.dyn[self.input_name] = self.by_npcam[INPUT] = _Dyn(INPUT, shape, True)
        self.consumers: dict[str, int] = {}
        for n in g.node:
            for i in n.input:
                self.consumers[i] = self.consumers.get(i, 0) + 1

    # -- shapes ---------------------------------------------------------------------
    def _shape_of(self, value_info: Any) -> tuple[int | None, ...] | None:
        t = value_info.type
        if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
            return None
        return tuple(int(d.dim_value) if d.HasField("dim_value") else None for d in t.tensor_type.shape.dim)

    def _inferred_shapes(self, input_shape: tuple[int | None, ...]) -> dict[str, Any]:
        light = _weightless(self.onnx, self.model, value_info=False)
        for i in light.graph.input:
            if i.name == self.input_name:
                dims = i.type.tensor_type.shape.dim
                dims[0].Clear()
                dims[0].dim_value = int(input_shape[0] or 1)
        try:
            inferred = self.onnx.shape_inference.infer_shapes(light, strict_mode=False, data_prop=True)
        except Exception:  # noqa: BLE001 - inference is a help, not a requirement
            inferred = self.model
        g = inferred.graph
        return {v.name: self._shape_of(v) for v in [*g.value_info, *g.input, *g.output]}

    # -- helpers for handlers --------------------------------------------------------
    def refuse(self, node: Any, why: str) -> None:
        raise _Refused(f"ONNX node {node.name or node.output[0]!r} ({node.op_type}): {why}")

    def is_const(self, name: str) -> bool:
        return name == "" or name in self.consts

    def const(self, node: Any, i: int, default: Any = None) -> Any:
        if i >= len(node.input) or node.input[i] == "":
            return default
        name = node.input[i]
        if name not in self.consts:
            self.refuse(node, f"input {i} ({name!r}) must be a constant (an initializer or a "
                              "constant expression), but it is computed from the model's input.")
        return self.consts[name]

    def d(self, node: Any, i: int = 0) -> _Dyn:
        name = node.input[i]
        if name not in self.dyn:
            self.refuse(node, f"input {i} ({name!r}) must be computed from the model's input.")
        return self.dyn[name]

    def weight(self, arr: np.ndarray) -> np.ndarray:
        arr = np.asarray(arr, dtype=np.float64)
        return arr.astype(self.dtype).astype(np.float64) if self.dtype != np.float64 else arr

    def attr(self, node: Any, attrs: dict[str, Any], name: str) -> float:
        """A FLOAT attribute, snapped to a known constant when asked."""
        v = float(attrs[name])
        if self.snap:
            for c in _SNAP:
                if v != c and np.float32(v) == np.float32(c):
                    self.snapped[f"{node.op_type}.{name}"] = (v, c)
                    return c
        return v

    def shape(self, name: str) -> tuple[int | None, ...] | None:
        return self.shapes.get(name)

    def unique(self, base: str) -> str:
        base = (base or "node").replace(":", "_")
        name, k = base, 1
        while name in self.used or name == INPUT:
            name = f"{base}_{k}"
            k += 1
        self.used.add(name)
        return name

    def emit(self, onnx_node: Any, layer: layers.Layer, inputs: Iterable[str], *,
             batched: bool | None = None, outputs: int = 1, name: str | None = None,
             state_keys: dict[str, str] | None = None) -> str:
        inputs = tuple(inputs)
        npcam_name = self.unique(name or onnx_node.name or onnx_node.output[0])
        self.nodes.append(Node(npcam_name, layer, inputs, state_keys=state_keys or {}))
        self.origin[npcam_name] = [onnx_node]
        if batched is None:
            first = next((self.by_npcam.get(i) for i in inputs), None)
            batched = bool(first and first.batched)
        outs = [npcam_name] if outputs == 1 else [f"{npcam_name}:{k}" for k in range(outputs)]
        for o, out in zip(onnx_node.output, outs, strict=False):
            if o:
                self.dyn[o] = self.by_npcam[out] = _Dyn(out, self.shape(o), batched)
        return npcam_name

    def alias(self, onnx_node: Any, out: str) -> None:
        """The ONNX node's output is that of an existing npcam output (Identity, Dropout)."""
        d = self.dyn[out]
        self.dyn[onnx_node.output[0]] = d

    def param(self, onnx_node: Any, name: str, value: np.ndarray) -> str:
        """A constant operand that is not a scalar: a Parameter node (the initializer's
        name as its state_dict key)."""
        layer = ops.Parameter(value.shape)
        layer.value = self.weight(value)
        node_name = self.unique(name)
        self.nodes.append(Node(node_name, layer, (), state_keys={"value": name}))
        self.origin[node_name] = [onnx_node]
        return node_name

    def operand(self, node: Any, i: int) -> str:
        name = node.input[i]
        if name in self.dyn:
            return self.dyn[name].name
        return self.param(node, name, np.asarray(self.consts[name], dtype=np.float64))

    def rank(self, name: str) -> int | None:
        d = self.dyn.get(name)
        s = d.shape if d else None
        return len(s) if s is not None else None

    def axis(self, name: str, axis: int) -> int:
        """An op's ``axis`` on tensor ``name`` counted from 0 (a negative axis counts from
        the end, when the rank is known)."""
        rank = self.rank(name)
        return axis % rank if rank is not None else axis

    # -- the conversion ---------------------------------------------------------------
    def run(self) -> Graph:
        g = self.model.graph
        for node in g.node:
            if node.domain not in ("", "ai.onnx"):
                self.refuse(node, f"the op domain {node.domain!r} is not supported (only ai.onnx).")
            if node.op_type == "Constant":
                self.consts[node.output[0]] = _constant(self, node)
                continue
            dynamic = [i for i in node.input if i and i not in self.consts]
            if node.op_type == "Shape" and dynamic and not self._static_shape(node):
                self.refuse(node, f"the shape of {node.input[0]!r} is not static "
                                  f"({self.shape(node.input[0])}), so this shape computation cannot be "
                                  "evaluated at import (export with static spatial sizes).")
            if not dynamic or node.op_type == "Shape":
                self._fold(node)
                continue
            handler = _HANDLERS.get(node.op_type)
            if handler is None:
                self.refuse(node, "the op is not supported; npcam.from_onnx reads "
                                  f"{', '.join(SUPPORTED_OPS)}.")
            assert handler is not None
            handler(self, node, _attrs(self.onnx, node))
        if self.output_name not in self.dyn:
            raise _Refused(f"the model's output {self.output_name!r} does not depend on its input.")
        out = self.dyn[self.output_name].name
        if not self.dyn[self.output_name].batched:
            # some op mixed the batch axis with others (or moved it): the graph holds
            # the exported batch size only
            self.input_shape = (self.export_batch, *self.input_shape[1:])
            self.notes.append(f"the batch axis could not be followed to the output (an op moves or mixes "
                              f"it), so the graph takes the exported batch size {self.export_batch} only.")
        if self.output_softmax:
            self.notes.append("the final Softmax was dropped: the graph returns its input, the logits "
                              "(graph.output_softmax = True).")
        if self.rewritten_batches:
            self.notes.append(
                f"{self.rewritten_batches} constant Reshape shape(s) had their leading entry, the "
                f"exported batch size {self.export_batch}, rewritten to follow the input's batch."
            )
        for key, (v, c) in sorted(self.snapped.items()):
            self.notes.append(f"{key} = {v!r} (float32) was snapped to {c!r}.")
        nodes = _prune(self.nodes, out)
        g = self.model.graph
        if self.model.producer_name == "pytorch" and not any(n.metadata_props for n in g.node) \
                and not any((n.name or "").startswith("/") for n in g.node):
            self.notes.append("the file carries no module scopes (torch's dynamo exporter asked for an "
                              "opset below 18 converts the graph and drops them): no module paths as "
                              "layer names; export at opset 18 to keep them.")
        nodes, ambiguous = _with_aliases(self, nodes)
        return Graph(nodes, out, ambiguous=ambiguous, input_shape=self.input_shape,
                     output_softmax=self.output_softmax, import_notes=self.notes)

    def _static_shape(self, node: Any) -> bool:
        s = self.shape(node.input[0])
        if s is None or any(v is None for v in s):
            return False
        # the batch entry of a batched tensor's shape is the exported batch size; a
        # Reshape that uses it as its leading entry is rewritten (_target_shape)
        return True

    def _fold(self, node: Any) -> None:
        """Evaluate a node whose inputs are all constants (or a Shape of a static tensor)."""
        fn = _FOLD.get(node.op_type)
        if fn is None:
            self.refuse(node, "the op is not supported in a constant expression.")
        assert fn is not None
        ins: list[Any] = []
        for i in node.input:
            if i == "":
                ins.append(None)
            elif i in self.consts:
                ins.append(self.consts[i])
            else:  # Shape of a dynamic tensor with a static shape
                ins.append(self.shape(i))
        try:
            outs = fn(ins, _attrs(self.onnx, node), self)
        except _Refused:
            raise
        except Exception as exc:  # noqa: BLE001 - NumPy's message, with the node's name
            self.refuse(node, f"evaluating the constant expression failed: {exc}.")
        for o, v in zip(node.output, outs, strict=False):
            if o:
                self.consts[o] = np.asarray(v)


def _constant(imp: _Importer, node: Any) -> np.ndarray:
    a = _attrs(imp.onnx, node)
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in a:
            v = a[key]
            if key == "value_float":
                return np.array(v, dtype=np.float32)
            if key == "value_floats":
                return np.array(v, dtype=np.float32)
            if key in ("value_int", "value_ints"):
                return np.array(v, dtype=np.int64)
            return np.asarray(v)
    imp.refuse(node, f"only tensor and number constants are supported, got {sorted(a)}.")
    raise AssertionError


# ------------------------------------------------------------------ constant folding
def _cast(ins: list[Any], a: dict[str, Any], imp: _Importer) -> list[Any]:
    return [np.asarray(ins[0]).astype(imp.onnx.helper.tensor_dtype_to_np_dtype(a["to"]))]


def _axes_input(ins: list[Any], a: dict[str, Any], i: int) -> list[int] | None:
    if len(ins) > i and ins[i] is not None:
        return [int(v) for v in np.asarray(ins[i]).ravel()]
    return list(a["axes"]) if "axes" in a else None


def _unsqueeze(ins: list[Any], a: dict[str, Any], imp: _Importer) -> list[Any]:
    x = np.asarray(ins[0])
    axes = _axes_input(ins, a, 1) or []
    rank = x.ndim + len(axes)
    for ax in sorted(v % rank for v in axes):
        x = np.expand_dims(x, ax)
    return [x]


def _squeeze(ins: list[Any], a: dict[str, Any], imp: _Importer) -> list[Any]:
    x = np.asarray(ins[0])
    axes = _axes_input(ins, a, 1)
    return [np.squeeze(x, axis=tuple(v % x.ndim for v in axes)) if axes else np.squeeze(x)]


def _slice_index(shape: tuple[int | None, ...], starts: Any, ends: Any, axes: Any,
                 steps: Any) -> tuple[slice, ...]:
    """ONNX Slice's bounds as Python slices: negative bounds count from the end, then
    starts and ends are clamped to [0, dim] (step > 0) or [0, dim − 1] and [−1, dim − 1]
    (step < 0; an end of −1 then means "past the first element", ``None``)."""
    ndim = len(shape)
    axes = list(range(len(starts))) if axes is None else [int(v) % ndim for v in axes]
    steps = [1] * len(starts) if steps is None else [int(v) for v in steps]
    index = [slice(None)] * ndim
    for ax, s, e, st in zip(axes, starts, ends, steps, strict=False):
        s, e = int(s), int(e)
        dim = shape[ax]
        if dim is None:  # size unknown (the batch axis): Python's clamping
            e_opt = None if (st > 0 and e >= _INT64_MAX // 2) or (st < 0 and e <= -_INT64_MAX // 2) else e
            index[ax] = slice(s, e_opt, st)
            continue
        s = s + dim if s < 0 else s
        e = e + dim if e < 0 else e
        if st > 0:
            index[ax] = slice(min(max(s, 0), dim), min(max(e, 0), dim), st)
        else:
            s, e = min(max(s, 0), dim - 1), min(max(e, -1), dim - 1)
            index[ax] = slice(s, None if e < 0 else e, st)
    return tuple(index)


def _slice(ins: list[Any], a: dict[str, Any], imp: _Importer) -> list[Any]:
    x = np.asarray(ins[0])
    if len(ins) > 1:
        starts, ends = np.asarray(ins[1]).ravel(), np.asarray(ins[2]).ravel()
        axes = np.asarray(ins[3]).ravel() if len(ins) > 3 and ins[3] is not None else None
        steps = np.asarray(ins[4]).ravel() if len(ins) > 4 and ins[4] is not None else None
    else:
        starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes"), None
    return [x[_slice_index(x.shape, starts, ends, axes, steps)]]


def _int_div(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if x.dtype.kind in "iu" and y.dtype.kind in "iu":
        return np.trunc(x / y).astype(np.result_type(x, y))  # ONNX integer Div truncates
    return x / y


def _reshape_const(ins: list[Any], a: dict[str, Any], imp: _Importer) -> list[Any]:
    x, shape = np.asarray(ins[0]), [int(v) for v in np.asarray(ins[1]).ravel()]
    if not a.get("allowzero", 0):
        shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
    return [x.reshape(shape)]


def _shape(ins: list[Any], a: dict[str, Any], imp: _Importer) -> list[Any]:
    s = ins[0] if isinstance(ins[0], tuple) else np.asarray(ins[0]).shape
    start, end = a.get("start", 0), a.get("end", None)
    return [np.array(s[start:end], dtype=np.int64)]


def _binary(f: Callable[[Any, Any], Any]) -> Callable[[list[Any], dict[str, Any], _Importer], list[Any]]:
    return lambda ins, a, imp: [f(np.asarray(ins[0]), np.asarray(ins[1]))]


def _unary(f: Callable[[Any], Any]) -> Callable[[list[Any], dict[str, Any], _Importer], list[Any]]:
    return lambda ins, a, imp: [f(np.asarray(ins[0]))]


def _gather_const(ins: list[Any], a: dict[str, Any], imp: _Importer) -> list[Any]:
    return [np.take(np.asarray(ins[0]), np.asarray(ins[1]), axis=a.get("axis", 0))]


def _concat_const(ins: list[Any], a: dict[str, Any], imp: _Importer) -> list[Any]:
    return [np.concatenate([np.asarray(v) for v in ins], axis=a["axis"])]


def _expand_const(ins: list[Any], a: dict[str, Any], imp: _Importer) -> list[Any]:
    x = np.asarray(ins[0])
    shape = np.broadcast_shapes(x.shape, tuple(int(v) for v in np.asarray(ins[1]).ravel()))
    return [np.broadcast_to(x, shape).copy()]


def _constant_of_shape(ins: list[Any], a: dict[str, Any], imp: _Importer) -> list[Any]:
    v = np.asarray(a.get("value", np.zeros(1, np.float32))).ravel()
    return [np.full(tuple(int(s) for s in np.asarray(ins[0]).ravel()), v[0], dtype=v.dtype)]


def _range_const(ins: list[Any], a: dict[str, Any], imp: _Importer) -> list[Any]:
    start, limit, delta = (np.asarray(v) for v in ins)
    dtype = np.result_type(start, limit, delta)
    return [np.arange(start.item(), limit.item(), delta.item()).astype(dtype)]


def _transpose_const(ins: list[Any], a: dict[str, Any], imp: _Importer) -> list[Any]:
    x = np.asarray(ins[0])
    return [np.transpose(x, a.get("perm"))]


_FOLD: dict[str, Callable[[list[Any], dict[str, Any], _Importer], list[Any]]] = {
    "Identity": lambda ins, a, imp: [np.asarray(ins[0])],
    "Shape": _shape,
    "Gather": _gather_const,
    "Slice": _slice,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Cast": _cast,
    "CastLike": lambda ins, a, imp: [np.asarray(ins[0]).astype(np.asarray(ins[1]).dtype)],
    "Concat": _concat_const,
    "Reshape": _reshape_const,
    "Expand": _expand_const,
    "ConstantOfShape": _constant_of_shape,
    "Range": _range_const,
    "Transpose": _transpose_const,
    "Add": _binary(np.add),
    "Sub": _binary(np.subtract),
    "Mul": _binary(np.multiply),
    "Div": _binary(_int_div),
    "Pow": _binary(np.power),
    "Max": lambda ins, a, imp: [functools.reduce(np.maximum, [np.asarray(v) for v in ins])],
    "Min": lambda ins, a, imp: [functools.reduce(np.minimum, [np.asarray(v) for v in ins])],
    "Equal": _binary(np.equal),
    "Where": lambda ins, a, imp: [np.where(np.asarray(ins[0]), np.asarray(ins[1]), np.asarray(ins[2]))],
    "Neg": _unary(np.negative),
    "Sqrt": _unary(np.sqrt),
    "Reciprocal": _unary(np.reciprocal),
    "Floor": _unary(np.floor),
    "Ceil": _unary(np.ceil),
    "Abs": _unary(np.abs),
}


# ------------------------------------------------------------------ op handlers
def _build(imp: _Importer, node: Any, factory: Callable[[], layers.Layer]) -> layers.Layer:
    try:
        return factory()
    except (ValueError, TypeError) as exc:
        imp.refuse(node, str(exc))
        raise AssertionError from None


def _pads(imp: _Importer, node: Any, a: dict[str, Any], kernel: tuple[int, int],
          strides: tuple[int, int]) -> tuple[int, ...]:
    """ONNX ``pads = [top, left, bottom, right]`` (or ``auto_pad``) → npcam's padding:
    ``(top, left)`` when symmetric, else ``(left, right, top, bottom)``."""
    auto = a.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        s = imp.shape(node.input[0])
        if s is None or s[2] is None or s[3] is None:
            imp.refuse(node, f"auto_pad={auto} needs the input's spatial size, which is unknown.")
        assert s is not None
        p = []
        for n, k, st in zip(s[2:4], kernel, strides, strict=False):
            assert n is not None
            total = max((math.ceil(n / st) - 1) * st + k - n, 0)
            small = total // 2
            p.append((small, total - small) if auto == "SAME_UPPER" else (total - small, small))
        top, bottom = p[0]
        left, right = p[1]
    elif auto == "VALID":
        top = left = bottom = right = 0
    elif auto == "NOTSET":
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if len(pads) != 4:
            imp.refuse(node, f"only 2-D operations are supported, got pads={pads}.")
        top, left, bottom, right = (int(v) for v in pads)
    else:
        imp.refuse(node, f"auto_pad={auto!r} is not an ONNX value.")
        raise AssertionError
    if top == bottom and left == right:
        return (top, left)
    return (left, right, top, bottom)


def _pair(imp: _Importer, node: Any, a: dict[str, Any], key: str, default: int) -> tuple[int, int]:
    v = list(a.get(key, [default, default]))
    if len(v) != 2:
        imp.refuse(node, f"only 2-D operations are supported, got {key}={v}.")
    return int(v[0]), int(v[1])


def _no_dilation(imp: _Importer, node: Any, a: dict[str, Any]) -> None:
    dil = list(a.get("dilations", [1, 1]))
    if any(int(v) != 1 for v in dil):
        imp.refuse(node, f"attribute dilations={dil}: dilated operations are not supported "
                         "(npcam's Conv2d and pools have dilation 1).")


def _conv(imp: _Importer, node: Any, a: dict[str, Any]) -> None:
    x = imp.d(node)
    w = np.asarray(imp.const(node, 1), dtype=np.float64)
    b = imp.const(node, 2)
    if w.ndim != 4:
        imp.refuse(node, f"only 2-D convolutions are supported; the weight has shape {w.shape}.")
    _no_dilation(imp, node, a)
    groups = int(a.get("group", 1))
    kernel = (w.shape[2], w.shape[3])
    if "kernel_shape" in a and tuple(a["kernel_shape"]) != kernel:
        imp.refuse(node, f"kernel_shape={list(a['kernel_shape'])} disagrees with the weight {w.shape}.")
    strides = _pair(imp, node, a, "strides", 1)
    padding = _pads(imp, node, a, kernel, strides)
    layer = _build(imp, node, lambda: layers.Conv2d(
        w.shape[1] * groups, w.shape[0], kernel, strides, padding, bias=b is not None, groups=groups,
        rng=False))
    layer.weight = imp.weight(w)
    keys = {"weight": node.input[1]}
    if b is not None:
        layer.bias = imp.weight(b)
        keys["bias"] = node.input[2]
    imp.emit(node, layer, [x.name], state_keys=keys)


def _pool(imp: _Importer, node: Any, a: dict[str, Any]) -> None:
    x = imp.d(node)
    if len(node.output) > 1 and node.output[1]:
        imp.refuse(node, "the Indices output of MaxPool is not supported.")
    _no_dilation(imp, node, a)
    if int(a.get("storage_order", 0)) != 0:
        imp.refuse(node, "attribute storage_order=1 is not supported.")
    kernel_shape = [int(v) for v in a["kernel_shape"]]
    if len(kernel_shape) != 2:
        imp.refuse(node, f"only 2-D pooling is supported, got kernel_shape={kernel_shape}.")
    kernel = (kernel_shape[0], kernel_shape[1])
    strides = _pair(imp, node, a, "strides", 1)
    padding = _pads(imp, node, a, kernel, strides)
    ceil = bool(a.get("ceil_mode", 0))
    if node.op_type == "MaxPool":
        layer = _build(imp, node, lambda: layers.MaxPool2d(kernel, strides, padding, ceil))
    else:
        include = bool(a.get("count_include_pad", 0))
        layer = _build(imp, node, lambda: layers.AvgPool2d(kernel, strides, padding, ceil, include))
    imp.emit(node, layer, [x.name])


def _global_pool(imp: _Importer, node: Any, a: dict[str, Any]) -> None:
    x = imp.d(node)
    if imp.rank(node.input[0]) not in (None, 4):
        imp.refuse(node, "only 4-D inputs (N, C, H, W) are supported.")
    imp.emit(node, ops.Mean((2, 3), keepdim=True), [x.name])


def _reduction(imp: _Importer, node: Any, a: dict[str, Any]) -> None:
    """ReduceMean / ReduceSum over constant axes (an attribute before opset 18, an input
    after), never over the batch: :class:`~npcam.nn.Mean` / :class:`~npcam.nn.Sum`."""
    x = imp.d(node)
    axes = _axes_input([None, imp.const(node, 1)], a, 1)
    rank = imp.rank(node.input[0])
    if not axes:
        if a.get("noop_with_empty_axes", 0):
            imp.alias(node, node.input[0])
            return
        imp.refuse(node, "a reduction over all axes (the batch included) is not supported.")
    assert axes is not None
    if rank is not None:
        axes = [v % rank for v in axes]
    if x.batched and 0 in axes:
        imp.refuse(node, "a reduction over the batch axis is not supported.")
    op = ops.Mean if node.op_type == "ReduceMean" else ops.Sum
    imp.emit(node, op(tuple(axes), keepdim=bool(a.get("keepdims", 1))), [x.name])


def _relu(imp: _Importer, node: Any, a: dict[str, Any]) -> None:
    imp.emit(node, layers.ReLU(), [imp.d(node).name])


def _simple(factory: Callable[[], layers.Layer]) -> Callable[[_Importer, Any, dict[str, Any]], None]:
    def handler(imp: _Importer, node: Any, a: dict[str, Any]) -> None:
        imp.emit(node, factory(), [imp.d(node).name])

    return handler


def _clip(imp: _Importer, node: Any, a: dict[str, Any]) -> None:
    x = imp.d(node)
    lo = imp.const(node, 1, a.get("min"))
    hi = imp.const(node, 2, a.get("max"))
    lo = None if lo is None else float(np.asarray(lo).ravel()[0])
    hi = None if hi is None else float(np.asarray(hi).ravel()[0])
    if lo == 0.0 and hi == 6.0:
        imp.emit(node, activations.ReLU6(), [x.name])
    elif lo == 0.0 and (hi is None or hi == math.inf):
        imp.emit(node, layers.ReLU(), [x.name])
    else:
        imp.refuse(node, f"only Clip(0, 6) (ReLU6) and Clip(0, ∞) (ReLU) are supported, got min={lo}, "
                         f"max={hi}.")


def _hard_sigmoid(imp: _Importer, node: Any, a: dict[str, Any]) -> None:
    # defaults are FLOAT attributes too: float32(0.2), not 0.2
    alpha = imp.attr(node, {"alpha": a.get("alpha", float(np.float32(0.2)))}, "alpha")
    beta = imp.attr(node, {"beta": a.get("beta", 0.5)}, "beta")
    if alpha == 1.0 / 6.0 and beta == 0.5:
        layer: layers.Layer = activations.Hardsigmoid()
    else:
        layer = ops.ClipAffine(alpha, beta)
    imp.emit(node, layer, [imp.d(node).name])


def _scalar(v: np.ndarray, rank: int | None) -> float | None:
    """A constant operand that broadcasting treats as a number."""
    arr = np.asarray(v)
    if arr.size == 1 and (rank is None or arr.ndim <= rank) and arr.dtype.kind in "fiu":
        return float(arr.ravel()[0])
    return None


def _arith(imp: _Importer, node: Any, a: dict[str, Any]) -> None:
    op = node.op_type
    i_dyn = [i for i, n in enumerate(node.input[:2]) if n in imp.dyn]
    if len(i_dyn) == 1:
        k = 1 - i_dyn[0]
        x = imp.d(node, i_dyn[0])
        c = imp.consts[node.input[k]]
        rank = imp.rank(node.input[i_dyn[0]])
        s = _scalar(c, rank)
        if op == "Add" and _fuse_bias(imp, node, x, c, rank):
            return
        if s is not None and np.isfinite(s):
            if op == "Add":
                imp.emit(node, ops.AddConstant(s), [x.name])
                return
            if op == "Mul":
                imp.emit(node, ops.MulConstant(s), [x.name])
                return
            if op == "Sub" and k == 1:
                imp.emit(node, ops.AddConstant(-s), [x.name])  # x − c = x + (−c), exactly
                return
    layer = {"Add": ops.Add, "Mul": ops.Mul, "Sub": ops.Sub, "Div": ops.Div}[op]()
    dyn = [imp.dyn[n] for n in node.input[:2] if n in imp.dyn]
    batched = all(d.batched for d in dyn)
    ranks = [len(d.shape) for d in dyn if d.shape is not None]
    for n in node.input[:2]:
        if n in imp.consts and ranks:
            c = imp.consts[n]
            if c.ndim > min(ranks) and any(d.batched for d in dyn):
                imp.refuse(node, f"the constant {n!r} of shape {c.shape} has more axes than the activations "
                                 f"(rank {min(ranks)}): broadcasting would move the batch axis.")
            if c.ndim == min(ranks) and c.shape[0] != 1:
                batched = False  # the constant stretches axis 0: it is not the batch
    inputs = [imp.operand(node, 0), imp.operand(node, 1)]
    imp.emit(node, layer, inputs, batched=batched)


def _fuse_bias(imp: _Importer, node: Any, x: _Dyn, c: np.ndarray, rank: int | None) -> bool:
    """``MatMul`` then ``Add`` of a bias vector: one :class:`~npcam.nn.Linear` with a bias
    (the form of a Linear layer in ONNX when its input is not 2-D, and tf2onnx's Dense)."""
    entry = imp.linear_from_matmul.get(x.name)
    if entry is None:
        return False
    linear, product = entry
    # fused only when this Add is the product's one reader, directly (not through an
    # Identity alias), and the product is not itself the model's output
    if product not in node.input[:2] or imp.consumers.get(product, 0) != 1 or product == imp.output_name:
        return False
    layer = linear.layer
    assert isinstance(layer, layers.Linear)
    vec = np.asarray(c, dtype=np.float64)
    n_out = layer.out_features
    if vec.size != n_out or vec.shape[-1:] != (n_out,) or (rank and vec.ndim > rank):
        return False
    index = next(i for i, n in enumerate(imp.nodes) if n.name == linear.name)
    bias_layer = _build(imp, node, lambda: layers.Linear(layer.in_features, layer.out_features, rng=False))
    bias_layer.weight = layer.weight
    bias_layer.bias = imp.weight(vec.reshape(-1))
    keys = dict(linear.state_keys)
    keys["bias"] = node.input[1] if node.input[1] in imp.consts else node.input[0]
    imp.nodes[index] = Node(linear.name, bias_layer, linear.inputs, state_keys=keys)
    imp.origin[linear.name].append(node)
    del imp.linear_from_matmul[x.name]
    out = _Dyn(linear.name, imp.shape(node.output[0]), x.batched)
    imp.dyn[node.output[0]] = imp.by_npcam[linear.name] = out
    return True


def _gemm(imp: _Importer, node: Any, a: dict[str, Any]) -> None:
    x = imp.d(node)
    b = np.asarray(imp.const(node, 1), dtype=np.float64)
    c = imp.const(node, 2)
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    if b.ndim != 2:
        imp.refuse(node, f"B must be a 2-D constant, got shape {b.shape}.")
    w = b if a.get("transB", 0) else b.T  # (out, in), torch's layout
    if alpha != 1.0:
        w = alpha * w
    if a.get("transA", 0):
        imp.refuse(node, "attribute transA=1 (a transposed activation matrix) is not supported.")
    inputs = [x.name]
    layer = _build(imp, node, lambda: layers.Linear(w.shape[1], w.shape[0], bias=c is not None, rng=False))
    layer.weight = imp.weight(w)
    keys = {"weight": node.input[1]}
    if c is not None:
        cv = np.asarray(c, dtype=np.float64)
        if cv.size not in (1, w.shape[0]) or (cv.ndim == 2 and cv.shape[0] != 1):
            imp.refuse(node, f"C must be a bias of {w.shape[0]} values, got shape {cv.shape}.")
        layer.bias = imp.weight(beta * np.broadcast_to(cv.reshape(-1), (w.shape[0],)))
        keys["bias"] = node.input[2]
    imp.emit(node, layer, inputs, state_keys=keys)


def _matmul(imp: _Importer, node: Any, a: dict[str, Any]) -> None:
    x = imp.d(node)
    b = imp.const(node, 1)
    b = np.asarray(b, dtype=np.float64)
    if b.ndim != 2:
        imp.refuse(node, f"only a product with a 2-D constant on the right is supported, got {b.shape}.")
    layer = _build(imp, node, lambda: layers.Linear(b.shape[0], b.shape[1], bias=False, rng=False))
    layer.weight = imp.weight(b.T)
    name = imp.emit(node, layer, [x.name], state_keys={"weight": node.input[1]})
    imp.linear_from_matmul[name] = (imp.nodes[-1], node.output[0])


def _batchnorm(imp: _Importer, node: Any, a: dict[str, Any]) -> None:
    x = imp.d(node)
    if a.get("training_mode", 0) or any(o for o in node.output[1:]):
        imp.refuse(node, "training-mode BatchNormalization is not supported (export in eval mode).")
    scale, bias, mean, var = (np.asarray(imp.const(node, i), dtype=np.float64) for i in range(1, 5))
    if imp.rank(node.input[0]) not in (None, 4):
        imp.refuse(node, "only BatchNormalization of 4-D maps (N, C, H, W) is supported.")
    eps = imp.attr(node, {"epsilon": a.get("epsilon", float(np.float32(1e-5)))}, "epsilon")
    layer = _build(imp, node, lambda: layers.BatchNorm2d(scale.shape[0], eps=eps))
    layer.weight, layer.bias = imp.weight(scale), imp.weight(bias)
    layer.running_mean, layer.running_var = imp.weight(mean), imp.weight(var)
    keys = dict(zip(("weight", "bias", "running_mean", "running_var"), node.input[1:5], strict=False))
    imp.emit(node, layer, [x.name], state_keys=keys)


def _layernorm(imp: _Importer, node: Any, a: dict[str, Any]) -> None:
    x = imp.d(node)
    rank = imp.rank(node.input[0])
    axis = int(a.get("axis", -1))
    if any(o for o in node.output[1:]):
        imp.refuse(node, "the Mean and InvStdDev outputs are not supported.")
    if not (axis == -1 or (rank is not None and axis == rank - 1)):
        imp.refuse(node, f"only a normalisation over the last axis is supported, got axis={axis}.")
    scale = np.asarray(imp.const(node, 1), dtype=np.float64).reshape(-1)
    bias = imp.const(node, 2)
    last = (x.shape or (None,))[-1]
    if last is not None and scale.shape[0] != last:
        imp.refuse(node, f"Scale must hold one value per normalised channel ({last}), got {scale.shape[0]}.")
    eps = imp.attr(node, {"epsilon": a.get("epsilon", float(np.float32(1e-5)))}, "epsilon")
    layer = _build(imp, node, lambda: activations.LayerNorm(scale.shape[0], eps=eps, bias=bias is not None))
    layer.weight = imp.weight(scale)
    keys = {"weight": node.input[1]}
    if bias is not None:
        layer.bias = imp.weight(np.asarray(bias, dtype=np.float64).reshape(-1))
        keys["bias"] = node.input[2]
    imp.emit(node, layer, [x.name], state_keys=keys)


def _identity(imp: _Importer, node: Any, a: dict[str, Any]) -> None:
    if node.op_type == "Dropout" and len(node.input) > 2 and node.input[2]:
        training = imp.const(node, 2)
        if bool(np.asarray(training).ravel()[0]):
            imp.refuse(node, "Dropout with training_mode=True is random; export in eval mode.")
    mask = node.output[1] if node.op_type == "Dropout" and len(node.output) > 1 else ""
    if mask and imp.consumers.get(mask):
        imp.refuse(node, "the mask output of Dropout is not supported.")
    imp.alias(node, node.input[0])


def _cast_to(imp: _Importer, node: Any, to: np.dtype) -> None:
    """A cast of the activations is an alias when it does not round them: to a float type
    at least as wide as the model's own (its input's); anything narrower or not float is
    refused (npcam computes in float64 and would not round)."""
    if to.kind != "f" or to.itemsize < imp.input_dtype.itemsize:
        imp.refuse(node, f"a cast of the activations ({imp.input_dtype}) to {to} is not supported: it "
                         "would round them.")
    imp.alias(node, node.input[0])


def _cast_dyn(imp: _Importer, node: Any, a: dict[str, Any]) -> None:
    _cast_to(imp, node, np.dtype(imp.onnx.helper.tensor_dtype_to_np_dtype(a["to"])))


def _cast_like_dyn(imp: _Importer, node: Any, a: dict[str, Any]) -> None:
    like = node.input[1]
    _cast_to(imp, node, imp.consts[like].dtype if like in imp.consts else imp.input_dtype)


def _softmax(imp: _Importer, node: Any, a: dict[str, Any]) -> None:
    x = imp.d(node)
    rank = imp.rank(node.input[0])
    axis = int(a.get("axis", -1 if imp.opset >= 13 else 1))
    last_axis = axis == -1 or (rank is not None and axis % rank == rank - 1)
    if node.output[0] != imp.output_name or not last_axis:
        imp.refuse(node, "a Softmax is supported only as the model's last op over the class axis "
                         "(it is dropped; npcam explains the logits).")
    imp.output_softmax = True
    imp.dyn[node.output[0]] = x


def _concat(imp: _Importer, node: Any, a: dict[str, Any]) -> None:
    axis = imp.axis(next(i for i in node.input if i in imp.dyn), int(a["axis"]))
    ins = [imp.operand(node, i) for i in range(len(node.input))]
    if len(ins) == 1:
        imp.alias(node, node.input[0])
        return
    batched = axis != 0 and all(imp.dyn[n].batched for n in node.input if n in imp.dyn)
    imp.emit(node, ops.Concat(axis), ins, batched=batched)


def _split(imp: _Importer, node: Any, a: dict[str, Any]) -> None:
    x = imp.d(node)
    axis = imp.axis(node.input[0], int(a.get("axis", 0)))
    sections = imp.const(node, 1, a.get("split"))
    count = len(node.output)
    if sections is None:
        s = x.shape[axis] if x.shape else None
        if s is None:
            imp.refuse(node, "an even Split needs the size of the split axis, which is unknown.")
        assert s is not None
        size = -(-s // count)  # ONNX: the last chunk is smaller if the size does not divide
        sections = [min(size, s - k * size) for k in range(count)]
    sections = [int(v) for v in np.asarray(sections).ravel()]
    if x.batched and axis == 0:
        imp.refuse(node, "a Split along the batch axis is not supported.")
    if count == 1:
        imp.alias(node, node.input[0])
        return
    imp.emit(node, ops.Split(sections, axis), [x.name], outputs=count)


def _transpose(imp: _Importer, node: Any, a: dict[str, Any]) -> None:
    x = imp.d(node)
    rank = imp.rank(node.input[0])
    perm = a.get("perm")
    if perm is None:
        if rank is None:
            imp.refuse(node, "a Transpose without perm needs the input's rank.")
        perm = list(reversed(range(rank or 0)))
    perm = [int(v) for v in perm]
    imp.emit(node, ops.Permute(perm), [x.name], batched=x.batched and perm[0] == 0)


def _target_shape(imp: _Importer, node: Any, x: _Dyn, shape: list[int | str]) -> list[int | str]:
    """A constant target shape, with the exported batch size freed (module docstring)."""
    leading = x.shape[0] if x.shape else None
    if x.batched and shape and shape[0] == imp.export_batch and leading in (None, imp.export_batch):
        imp.rewritten_batches += 1
        shape = [-1 if -1 not in shape[1:] else "0.0", *shape[1:]]
    return shape


def _reshape(imp: _Importer, node: Any, a: dict[str, Any]) -> None:
    x = imp.d(node)
    raw = [int(v) for v in np.asarray(imp.const(node, 1)).ravel()]
    shape: list[int | str] = list(raw)
    if not a.get("allowzero", 0):
        shape = [f"0.{i}" if v == 0 else v for i, v in enumerate(shape)]
    elif 0 in raw:
        imp.refuse(node, "allowzero=1 with a 0 in the shape (an empty tensor) is not supported.")
    if shape == [-1] and x.batched:
        known = x.shape is not None and None not in x.shape
        size = math.prod(v for v in (x.shape or ()) if v is not None) if known else None
        name = imp.emit(node, ops.Reshape([-1]), [x.name], batched=False)
        if size is not None:
            imp.flat[name] = size
        return
    known = x.shape is not None and None not in x.shape[1:]
    per_image = math.prod(v for v in (x.shape or ())[1:] if v is not None) if known else None
    rest = shape[1:]
    keeps = shape[0] == -1 and all(isinstance(v, int) and v > 0 for v in rest) and \
        math.prod(v for v in rest if isinstance(v, int)) == per_image
    batched = x.batched and bool(shape) and (shape[0] in (imp.export_batch, "0.0") or keeps)
    shape = _target_shape(imp, node, x, shape)
    imp.emit(node, _build(imp, node, lambda: ops.Reshape(shape)), [x.name], batched=batched)


def _flatten(imp: _Importer, node: Any, a: dict[str, Any]) -> None:
    x = imp.d(node)
    axis = imp.axis(node.input[0], int(a.get("axis", 1)))
    if axis == 1:
        imp.emit(node, layers.Flatten(1), [x.name])
        return
    tail = x.shape[axis:] if x.shape else None
    if tail is None or None in tail or axis == 0:
        imp.refuse(node, f"Flatten(axis={axis}) is supported only with axis >= 1 and a known shape.")
    assert tail is not None
    imp.emit(node, ops.Reshape([-1, math.prod(v for v in tail if v is not None)]), [x.name], batched=False)


def _shape_change(imp: _Importer, node: Any, a: dict[str, Any]) -> None:
    """Squeeze/Unsqueeze/Expand-to-the-same-shape of the activations: a Reshape to the
    output's inferred shape (batch freed)."""
    x = imp.d(node)
    out = imp.shape(node.output[0])
    if out is None or any(v is None for v in out[1:]) or not x.batched:
        imp.refuse(node, "the output shape is not static, or axis 0 is not the batch.")
    assert out is not None
    if node.op_type == "Expand":
        if x.shape is None or tuple(out) != tuple(x.shape):
            imp.refuse(node, "Expand that broadcasts the activations is not supported.")
        imp.alias(node, node.input[0])
        return
    axes = _axes_input([None, imp.const(node, 1)], a, 1)
    if node.op_type == "Unsqueeze" and 0 in [v % len(out) for v in axes or []]:
        imp.refuse(node, "Unsqueeze of axis 0 (before the batch) is not supported.")
    if node.op_type == "Squeeze":
        rank = len(x.shape) if x.shape is not None else len(out) + 1
        if axes is None and (x.shape is None or x.shape[0] == 1) or 0 in [v % rank for v in axes or []]:
            imp.refuse(node, "Squeeze of the batch axis is not supported.")
    shape: list[int | str] = ["0.0", *[int(v) for v in out[1:] if v is not None]]
    imp.emit(node, ops.Reshape(shape), [x.name], batched=True)


def _pad(imp: _Importer, node: Any, a: dict[str, Any]) -> None:
    x = imp.d(node)
    mode = a.get("mode", "constant")
    pads = imp.const(node, 1, a.get("pads"))
    value = imp.const(node, 2, a.get("value", 0.0))
    axes = imp.const(node, 3)
    nonzero = value is not None and np.asarray(value).size and float(np.asarray(value).ravel()[0]) != 0.0
    if mode != "constant" or nonzero:
        imp.refuse(node, f"only a constant-zero Pad is supported, got mode={mode!r}, value={value}.")
    rank = imp.rank(node.input[0])
    pads = [int(v) for v in np.asarray(pads).ravel()]
    if rank is None:
        rank = len(pads) // 2
    ax = list(range(rank)) if axes is None else [int(v) % rank for v in np.asarray(axes).ravel()]
    if len(pads) != 2 * len(ax) or any(p < 0 for p in pads):
        imp.refuse(node, f"pads={pads} must hold a non-negative (begin, end) per axis.")
    widths = [[0, 0] for _ in range(rank)]
    for k, axis in enumerate(ax):
        widths[axis] = [pads[k], pads[k + len(ax)]]
    if x.batched and widths[0] != [0, 0]:
        imp.refuse(node, "padding the batch axis is not supported.")
    imp.emit(node, _build(imp, node, lambda: ops.Pad(widths)), [x.name])


def _gather(imp: _Importer, node: Any, a: dict[str, Any]) -> None:
    x = imp.d(node)
    idx = np.asarray(imp.const(node, 1))
    axis = imp.axis(node.input[0], int(a.get("axis", 0)))
    if axis == 0 and x.name in imp.flat and np.array_equal(idx.ravel(), np.arange(idx.size)) \
            and idx.size == imp.flat[x.name]:
        # dynamo's flatten-then-gather of all elements (an as_strided): a reshape to the
        # index array's shape
        shape = _target_shape(imp, node, _Dyn(x.name, None, True), [int(v) for v in idx.shape])
        imp.emit(node, ops.Reshape(shape), [x.name], batched=True)
        return
    if axis == 0 and x.batched:
        imp.refuse(node, "a Gather along the batch axis is not supported.")
    lead = (slice(None),) * axis
    if idx.ndim == 0:
        index: tuple[Any, ...] = (*lead, int(idx))
    elif idx.ndim == 1 and idx.size and np.array_equal(np.diff(idx), np.ones(idx.size - 1, dtype=idx.dtype)) \
            and idx[0] >= 0:
        index = (*lead, slice(int(idx[0]), int(idx[-1]) + 1))
    else:
        imp.refuse(node, "only a scalar index or a contiguous range is supported, got indices "
                         f"{idx.tolist()}.")
        raise AssertionError
    imp.emit(node, ops.Index(index), [x.name])


def _slice_dyn(imp: _Importer, node: Any, a: dict[str, Any]) -> None:
    x = imp.d(node)
    rank = imp.rank(node.input[0])
    if rank is None:
        imp.refuse(node, "a Slice of the activations needs their rank.")
    if len(node.input) > 1:
        starts = np.asarray(imp.const(node, 1)).ravel()
        ends = np.asarray(imp.const(node, 2)).ravel()
        axes = imp.const(node, 3)
        steps = imp.const(node, 4)
        axes = None if axes is None else np.asarray(axes).ravel()
        steps = None if steps is None else np.asarray(steps).ravel()
    else:
        starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes"), None
    shape = x.shape if x.shape is not None and len(x.shape) == rank else (None,) * (rank or 0)
    index = _slice_index(shape, starts, ends, axes, steps)
    if x.batched and index[0] != slice(None) and index[0] != slice(0, None, 1):
        imp.refuse(node, "a Slice along the batch axis is not supported.")
    imp.emit(node, ops.Index(index), [x.name])


_HANDLERS: dict[str, Callable[[_Importer, Any, dict[str, Any]], None]] = {
    "Conv": _conv,
    "Relu": _relu,
    "Clip": _clip,
    "HardSigmoid": _hard_sigmoid,
    "HardSwish": _simple(activations.Hardswish),
    "Sigmoid": _simple(activations.Sigmoid),
    "Erf": _simple(ops.Erf),
    "MaxPool": _pool,
    "AveragePool": _pool,
    "GlobalAveragePool": _global_pool,
    "ReduceMean": _reduction,
    "ReduceSum": _reduction,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Add": _arith,
    "Sub": _arith,
    "Mul": _arith,
    "Div": _arith,
    "Concat": _concat,
    "Split": _split,
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Transpose": _transpose,
    "BatchNormalization": _batchnorm,
    "LayerNormalization": _layernorm,
    "Dropout": _identity,
    "Identity": _identity,
    "Cast": _cast_dyn,
    "CastLike": _cast_like_dyn,
    "Softmax": _softmax,
    "Pad": _pad,
    "Gather": _gather,
    "Slice": _slice_dyn,
    "Squeeze": _shape_change,
    "Unsqueeze": _shape_change,
    "Expand": _shape_change,
}

#: Every ONNX op type the importer reads on the model's activations (constant expressions
#: may also use the ops of ``_FOLD``).
SUPPORTED_OPS = tuple(sorted(_HANDLERS))


# ------------------------------------------------------------------ names
def _prune(nodes: list[Node], output: str) -> list[Node]:
    """Drop the nodes the output does not depend on (e.g. a flatten only a gather read)."""
    needed = {output.partition(":")[0]}
    for n in reversed(nodes):
        if n.name in needed:
            needed.update(i.partition(":")[0] for i in n.inputs)
    return [n for n in nodes if n.name in needed]


_CALL = re.compile(r"^(.*)_(\d+)$")
_TF2ONNX_INSERTED = re.compile(r"__\d+$")


def _scopes(imp: _Importer, onnx_node: Any) -> list[str]:
    """The module paths (outermost first) an ONNX node was exported from."""
    meta = {p.key: p.value for p in onnx_node.metadata_props}
    if "pkg.torch.onnx.name_scopes" in meta:  # the torch.export-based exporter
        try:
            scopes = ast.literal_eval(meta["pkg.torch.onnx.name_scopes"])
        except (ValueError, SyntaxError):
            return []
        return [s for s in scopes[1:-1] if isinstance(s, str) and s]
    parts = [p for p in (onnx_node.name or "").split("/") if p][:-1]
    if imp.model.producer_name == "pytorch":
        # TorchScript exporter: "/layer4/layer4.1/relu_1/Relu" — nested paths, leaf
        # attribute names, a "_k" suffix for the k-th extra call of a module; a
        # component is a path relative to the longest ancestor it continues
        # ("downsample.0" under "layer2.0.downsample" is "layer2.0.downsample.0")
        out: list[str] = []
        for p in parts:
            if out:
                segs = out[-1].split(".")
                for k in range(len(segs)):
                    if p.startswith(".".join(segs[k:]) + "."):
                        p = ".".join([*segs[:k], p])
                        break
                else:
                    p = f"{out[-1]}.{p}"
            out.append(p)
        return out
    return parts


def _with_aliases(imp: _Importer, nodes: list[Node]) -> tuple[list[Node], dict[str, list[str]]]:
    """Give each node its ONNX output tensor's name and the module paths whose last node
    it is; a path that names several calls of one module (a ReLU module used twice) is
    ambiguous."""
    levels: dict[str, list[tuple[str, str]]] = {}  # node -> [(path, call id)]
    torch_legacy = imp.model.producer_name == "pytorch" and not any(
        p.key == "pkg.torch.onnx.name_scopes" for n in imp.model.graph.node for p in n.metadata_props)
    all_paths: set[str] = set()
    per_node: dict[str, list[str]] = {}
    tf2onnx = imp.model.producer_name == "tf2onnx"
    for n in nodes:
        onnx_node = imp.origin[n.name][-1]
        # tf2onnx's own layout Transposes ("conv2_1/BiasAdd__12") carry a layer's scope
        # but not its output: they name no layer
        inserted = tf2onnx and bool(_TF2ONNX_INSERTED.search(onnx_node.name or ""))
        per_node[n.name] = [] if inserted else _scopes(imp, onnx_node)
        all_paths.update(per_node[n.name])
    keras_suffix = tf2onnx and _all_suffixed(per_node)
    component: dict[str, str] = {}
    for n in nodes:
        paths = per_node[n.name]
        pairs = []
        for k, p in enumerate(paths):
            call = "/".join(paths[: k + 1])
            if torch_legacy:
                m = _CALL.match(p)
                if m and m.group(1) in all_paths:
                    p = m.group(1)  # "relu_1": the second call of "relu"
            elif keras_suffix and k <= 1:
                m = _CALL.match(p)
                if m:
                    p = m.group(1)
            pairs.append((p, call))
        levels[n.name] = pairs
    # torch.export scopes name every call alike: split a leaf path's nodes into calls by
    # their data edges (the nodes of one call of GELU are connected; two calls of a ReLU
    # module are not)
    if not torch_legacy:
        by_path: dict[str, list[str]] = {}
        for n in nodes:
            if levels[n.name]:
                by_path.setdefault(levels[n.name][-1][0], []).append(n.name)
        inputs = {n.name: {i.partition(":")[0] for i in n.inputs} for n in nodes}
        for members in by_path.values():
            root = {member: member for member in members}
            for member in members:
                for i in inputs[member]:
                    if i in root:
                        root[_find(root, member)] = _find(root, i)
            for member in members:
                component[member] = _find(root, member)
    containers = {p for pairs in levels.values() for p, _ in pairs[:-1]}
    last: dict[str, str] = {}
    calls: dict[str, dict[str, str]] = {}
    for n in nodes:
        for p, call in levels[n.name]:
            leaf = p not in containers
            cid = f"{call}#{component.get(n.name, '')}" if leaf and not torch_legacy else call
            calls.setdefault(p, {})[cid] = n.name
            last[p] = n.name
    aliases: dict[str, list[str]] = {n.name: [] for n in nodes}
    ambiguous: dict[str, list[str]] = {}
    names = {n.name for n in nodes}
    for p, node_name in last.items():
        if p in names:
            continue
        if len(calls[p]) > 1:
            ambiguous[p] = list(calls[p].values())
        else:
            aliases[node_name].append(p)
    for n in nodes:
        for o in imp.origin[n.name][-1].output[:1]:
            if o and o not in names and o not in last and o != n.name:
                aliases[n.name].append(o)
    out = [Node(n.name, n.layer, n.inputs, tuple(aliases[n.name]), False, False, n.state_keys) for n in nodes]
    return out, ambiguous


def _find(root: dict[str, str], m: str) -> str:
    while root[m] != m:
        root[m] = root[root[m]]
        m = root[m]
    return m


def _all_suffixed(per_node: dict[str, list[str]]) -> bool:
    """Keras 3 under tf2onnx: the model and layer scopes all carry a "_1" (the traced
    call); strip it so the aliases are the Keras layer names."""
    second = [p[1] for p in per_node.values() if len(p) >= 2]
    return bool(second) and all(_CALL.match(s) for s in second)


# =========================================================================== public
def from_onnx(
    path_or_model: Any,
    *,
    input_layout: str | None = None,
    dtype: Any = np.float64,
    snap_constants: bool = True,
) -> Graph:
    r"""An ONNX model as an npcam :class:`~npcam.nn.Graph`.

    Parameters
    ----------
    path_or_model : str, os.PathLike or onnx.ModelProto
        An ``.onnx`` file (external data files beside it are read: torch 2.14's exporter
        writes ``x.onnx`` + ``x.onnx.data``) or a loaded model. The file and every external
        file are size-checked before they are read (at most :data:`MAX_ONNX_BYTES`
        together); external data outside the model's folder is refused.
    input_layout : None or "nchw"
        ``None`` keeps the model's input layout (a Keras model through tf2onnx takes NHWC
        images and starts with a ``Transpose`` to NCHW, kept as a
        :class:`~npcam.nn.Permute` node). ``"nchw"`` removes that leading NHWC→NCHW
        transpose, so the graph takes (N, C, H, W).
    dtype : numpy.float64 (default) or numpy.float32
        The precision of the weights: float32 rounds every initializer to float32 (what a
        float32 framework computes with); npcam computes in float64 either way.
    snap_constants : bool
        ONNX stores FLOAT attributes in 32 bits; True (default) replaces an attribute
        whose float32 value is that of 1/6, 0.5, 1e-5, 1e-3 or 1e-6 by that number (listed
        in ``graph.import_notes``), False uses the stored values.

    Returns
    -------
    Graph
        With the extra attributes ``input_shape`` (``(None, C, H, W)``: any batch, the
        exported spatial size), ``output_softmax`` (a final Softmax was dropped: the
        graph returns the logits) and ``import_notes`` (every change the import made).

    Notes
    -----
    Supported ops: :data:`SUPPORTED_OPS` on the activations (2-D Conv without dilation,
    pads possibly asymmetric; MaxPool/AveragePool; Gemm and MatMul by a constant;
    element-wise Add/Sub/Mul/Div; Relu, Clip(0, 6), HardSigmoid, HardSwish, Sigmoid, Erf;
    BatchNormalization, LayerNormalization; Concat, Split, Reshape, Flatten, Transpose,
    constant-index Gather and Slice, constant-zero Pad; Dropout and Identity; a final
    Softmax), and any constant expression. Anything else is refused naming the node,
    op type and attribute. The exporters and what they change (BatchNorm folded into
    the convolutions; Hardsigmoid's float32 alpha; the batch in reshapes) are in
    ``docs/conventions.md``.

    Examples
    --------
    >>> graph = npcam.from_onnx("resnet18.onnx")                  # doctest: +SKIP
    >>> npcam.grad_cam(graph, x, layer="layer4").cam.shape        # doctest: +SKIP
    (2, 7, 7)
    """
    onnx = _onnx()
    from .torch import _check_dtype

    dt = _check_dtype(dtype)
    if not isinstance(snap_constants, (bool, np.bool_)):
        raise TypeError(f"snap_constants must be a bool, got {describe(snap_constants)}.")
    if input_layout not in (None, "nchw"):
        raise ValueError(f"input_layout must be None or 'nchw', got {input_layout!r}.")
    if isinstance(path_or_model, onnx.ModelProto):
        model = path_or_model
        if any(True for _ in _external_tensors(model)):
            raise ValueError("path_or_model is a ModelProto whose weights are in external files; pass "
                             "the .onnx path so they are read (and checked) from its folder.")
    elif isinstance(path_or_model, (str, os.PathLike)):
        model = _load(onnx, os.fspath(path_or_model))
    else:
        raise TypeError(f"path_or_model must be a path to an .onnx file or an onnx.ModelProto, got "
                        f"{describe(path_or_model)}.")
    try:
        onnx.checker.check_model(_weightless(onnx, model))
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"the ONNX checker refused the model: {first}") from None
    try:
        imp = _Importer(onnx, model, dt, bool(snap_constants))
        graph = imp.run()
    except _Refused as exc:
        raise ValueError(str(exc)) from None
    if input_layout == "nchw":
        graph = _fold_input_transpose(graph)
    return graph


def _fold_input_transpose(graph: Graph) -> Graph:
    """Remove a leading NHWC→NCHW ``Permute((0, 3, 1, 2))`` that alone reads the input."""
    if not graph.channels_last_input():
        raise ValueError("input_layout='nchw' needs a model whose input is read only by a Transpose "
                         "with perm [0, 3, 1, 2] (NHWC to NCHW); this model has none.")
    return graph.nchw_input()
