r"""Any traceable PyTorch model into an npcam :class:`~npcam.nn.Graph`, through torch.fx.

``torch.fx.symbolic_trace`` records what a module's ``forward`` computes as a graph of
nodes — ``call_module`` (a ``torch.nn`` leaf such as ``Conv2d``), ``call_function``
(``F.relu``, ``torch.cat``, ``operator.add``), ``call_method`` (``x.view``, ``x.mean``),
``get_attr`` (a parameter read outside any layer) — and npcam builds one node per
computing fx node, with the fx node's name. Module paths become aliases; a container's
path names the last node inside it (read from ``node.meta["nn_module_stack"]``).
Shape arithmetic (``x.size()``, ``getitem``, ``floordiv``) is not computed at import:
it becomes size references of :class:`~npcam.nn.ops.Reshape`, evaluated at run time, so
neither the batch nor the spatial size is fixed.

Every supported spelling is in :data:`FUNCTIONS`, :data:`METHODS` and
:func:`convert_module`; anything else is refused with one sentence naming the node, its op
and target and the nearest supported alternative.
"""

from __future__ import annotations

import importlib
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._validate import as_pair, describe
from ..nn import layers, ops
from ..nn.graph import Graph, Node

__all__ = ["DEFAULT_LAYERS", "convert_module", "graph_from_module"]


def _activations() -> Any:
    from ..nn import activations

    return activations


def _where(name: str, m: Any) -> str:
    return f"module {name!r} ({type(m).__name__})"


def _plain(module: Any, cls: type) -> bool:
    """``module`` is a ``cls`` whose forward is ``cls``'s own (not overridden)."""
    return isinstance(module, cls) and getattr(type(module), "forward", None) is getattr(cls, "forward", None)


def _conv_padding(name: str, m: Any) -> tuple[int, int]:
    pad = m.padding
    if isinstance(pad, str):
        if pad == "valid":
            return 0, 0
        # torch pads d·(k−1) in total per axis for padding="same", the extra pixel after:
        # symmetric only when k is odd (dilation is 1 here).
        if pad == "same" and all(k % 2 == 1 for k in m.kernel_size):
            return (m.kernel_size[0] - 1) // 2, (m.kernel_size[1] - 1) // 2
        raise ValueError(
            f"{_where(name, m)} has padding={pad!r} with kernel_size {tuple(m.kernel_size)}: torch "
            "pads an even kernel asymmetrically, which npcam's symmetric padding cannot express; "
            "use 'valid', 'same' with odd kernels, or ints."
        )
    return int(pad[0]), int(pad[1])


def convert_module(torch: Any, name: str, m: Any) -> layers.Layer:
    """The npcam layer computing what the ``torch.nn`` leaf ``m`` computes in eval mode
    (its weights are copied separately), or ``ValueError`` naming it."""
    nn = torch.nn
    act = _activations()
    if _plain(m, nn.Conv2d):
        problems = []
        if tuple(m.dilation) != (1, 1):
            problems.append(f"dilation={tuple(m.dilation)} (npcam needs 1)")
        if m.padding_mode != "zeros":
            problems.append(f"padding_mode={m.padding_mode!r} (npcam pads with zeros)")
        if problems:
            raise ValueError(f"{_where(name, m)} is not supported: {', '.join(problems)}.")
        return layers.Conv2d(
            m.in_channels, m.out_channels, tuple(m.kernel_size), tuple(m.stride),
            _conv_padding(name, m), bias=m.bias is not None, groups=m.groups, rng=False,
        )
    if _plain(m, nn.Linear):
        return layers.Linear(m.in_features, m.out_features, bias=m.bias is not None, rng=False)
    if _plain(m, nn.BatchNorm2d):
        problems = []
        if not m.affine:
            problems.append("affine=False")
        if not m.track_running_stats or m.running_mean is None:
            problems.append("track_running_stats=False (no running statistics to explain with)")
        if problems:
            raise ValueError(f"{_where(name, m)} is not supported: {', '.join(problems)}.")
        momentum = 0.1 if m.momentum is None else float(m.momentum)
        return layers.BatchNorm2d(m.num_features, eps=float(m.eps), momentum=momentum)
    if _plain(m, nn.ReLU):
        return layers.ReLU()
    if _plain(m, nn.ReLU6):
        return act.ReLU6()
    if _plain(m, nn.Hardswish):
        return act.Hardswish()
    if _plain(m, nn.Hardsigmoid):
        return act.Hardsigmoid()
    if _plain(m, nn.SiLU):
        return act.SiLU()
    if _plain(m, nn.Sigmoid):
        return act.Sigmoid()
    if _plain(m, nn.GELU):
        if m.approximate != "none":
            raise ValueError(
                f"{_where(name, m)} has approximate={m.approximate!r}; npcam computes the exact "
                "GELU (approximate='none') only."
            )
        return act.GELU()
    if _plain(m, nn.LayerNorm):
        shape = tuple(m.normalized_shape)
        if len(shape) != 1 or not m.elementwise_affine:
            raise ValueError(
                f"{_where(name, m)} normalises over {shape} (elementwise_affine={m.elementwise_affine}); "
                "npcam's LayerNorm normalises over the last axis only, with weight and bias."
            )
        if getattr(m, "bias", None) is None:
            raise ValueError(f"{_where(name, m)} has no bias; npcam's LayerNorm has weight and bias.")
        return act.LayerNorm(shape[0], eps=float(m.eps))
    if _plain(m, nn.MaxPool2d):
        _check_pool(name, m, dilation=m.dilation, return_indices=m.return_indices)
        return layers.MaxPool2d(
            as_pair("kernel_size", m.kernel_size),
            None if m.stride is None else as_pair("stride", m.stride),
            as_pair("padding", m.padding, minimum=0),
            ceil_mode=bool(m.ceil_mode),
        )
    if _plain(m, nn.AvgPool2d):
        if m.divisor_override is not None:
            raise ValueError(f"{_where(name, m)} has divisor_override={m.divisor_override}; npcam needs "
                             "None.")
        return layers.AvgPool2d(
            as_pair("kernel_size", m.kernel_size),
            None if m.stride is None else as_pair("stride", m.stride),
            as_pair("padding", m.padding, minimum=0),
            ceil_mode=bool(m.ceil_mode),
            count_include_pad=bool(m.count_include_pad),
        )
    if _plain(m, nn.AdaptiveAvgPool2d):
        return layers.AdaptiveAvgPool2d(_output_size(m.output_size))
    if _plain(m, nn.Flatten):
        if m.start_dim < 1 or m.end_dim != -1:
            raise ValueError(
                f"{_where(name, m)} has start_dim={m.start_dim}, end_dim={m.end_dim}; npcam "
                "flattens the axes from start_dim >= 1 to the last (end_dim=-1)."
            )
        return layers.Flatten(m.start_dim)
    if _plain(m, nn.Dropout):
        return layers.Dropout(m.p)
    if isinstance(m, (nn.Identity, nn.Dropout2d)) and (_plain(m, nn.Identity) or _plain(m, nn.Dropout2d)):
        return ops.Identity()
    hint = ""
    if isinstance(m, (nn.Softmax, nn.LogSoftmax)):
        hint = (
            " Remove the final softmax and explain the logits, or pass score='softmax' / "
            "'log_softmax' to the npcam explanation."
        )
    elif isinstance(m, nn.LeakyReLU):
        hint = " The nearest supported activation is ReLU."
    raise ValueError(
        f"{_where(name, m)} is not supported by from_torch; supported torch.nn leaves are Conv2d, "
        "Linear, BatchNorm2d, ReLU, ReLU6, Hardswish, Hardsigmoid, SiLU, Sigmoid, GELU, LayerNorm, "
        f"MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten, Dropout and Identity.{hint}"
    )


def _output_size(size: Any) -> Any:
    if isinstance(size, int):
        return size
    return tuple(None if s is None else int(s) for s in size)


def _check_pool(name: str, m: Any, *, dilation: Any, return_indices: bool) -> None:
    problems = []
    if as_pair("dilation", dilation) != (1, 1):
        problems.append(f"dilation={dilation} (npcam needs 1)")
    if return_indices:
        problems.append("return_indices=True (the node must output one tensor)")
    if problems:
        raise ValueError(f"{_where(name, m)} is not supported: {', '.join(problems)}.")


# ------------------------------------------------------------------ symbolic values
@dataclass(frozen=True)
class _Size:
    """``t.size()``: the shape of the tensor output ``tensor``."""

    tensor: str


@dataclass(frozen=True)
class _Dim:
    """One size, ``t.size(axis) // div * mul``, known only at run time."""

    tensor: str
    axis: int
    div: int = 1
    mul: int = 1


@dataclass(frozen=True)
class _Multi:
    """A node with several outputs (``chunk``): its output i is ``"name:i"``."""

    name: str


@dataclass(frozen=True)
class _Attr:
    """A tensor read with ``get_attr`` (its state_dict key and its value)."""

    key: str
    value: Any
    name: str = ""  # the get_attr fx node's name


class _Refused(ValueError):
    pass


def _describe_target(target: Any) -> str:
    if isinstance(target, str):
        return target
    mod = getattr(target, "__module__", None) or ""
    name = getattr(target, "__qualname__", getattr(target, "__name__", repr(target)))
    return f"{mod + '.' if mod else ''}{name}"


class _Builder:
    def __init__(self, torch: Any, root: Any) -> None:
        self.torch = torch
        self.root = root
        self.nodes: list[Node] = []
        self.env: dict[str, Any] = {}  # fx node name -> output name, _Size, _Dim, int, ...
        self.modules = dict(root.named_modules())
        self.calls: dict[str, list[str]] = {}
        self.weights: dict[str, Any] = {}  # state_dict key -> torch tensor

    # -- helpers ------------------------------------------------------------------
    def refuse(self, node: Any, why: str, alternative: str = "") -> None:
        extra = f"; {alternative}" if alternative else ""
        raise _Refused(
            f"from_torch cannot convert fx node {node.name!r} ({node.op} {_describe_target(node.target)}): "
            f"{why}{extra}."
        )

    def value(self, arg: Any) -> Any:
        fx = self.torch.fx
        if isinstance(arg, fx.Node):
            return self.env[arg.name]
        if isinstance(arg, (list, tuple)):
            return type(arg)(self.value(a) for a in arg)
        return arg

    def tensor(self, node: Any, arg: Any) -> str:
        v = self.value(arg)
        if isinstance(v, _Attr):
            return self.parameter(v)
        if not isinstance(v, str):
            self.refuse(node, f"an argument is {describe(v)} where a tensor was expected")
        return v

    def parameter(self, attr: _Attr) -> str:
        name = attr.name or attr.key.replace(".", "_")
        if not any(n.name == name for n in self.nodes):
            layer = ops.Parameter(tuple(attr.value.shape))
            self.add(Node(name, layer, (), (attr.key,), False, False, {"value": attr.key}))
            self.weights[attr.key] = attr.value
        return name

    def add(self, node: Node) -> str:
        self.nodes.append(node)
        return node.name

    def op(self, fx_node: Any, layer: layers.Layer, inputs: tuple[str, ...], *,
           from_module: bool = False, inplace: bool = False, state_keys: dict[str, str] | None = None,
           aliases: tuple[str, ...] = ()) -> str:
        return self.add(Node(fx_node.name, layer, inputs, aliases, from_module, inplace, state_keys or {}))

    # -- node kinds ---------------------------------------------------------------------
    def placeholder(self, node: Any) -> None:
        if "input" in self.env.values():
            self.refuse(node, "the model takes more than one input", "npcam models take one tensor")
        self.env[node.name] = "input"

    def get_attr(self, node: Any) -> None:
        value = self.root
        for part in node.target.split("."):
            value = getattr(value, part)
        if not isinstance(value, self.torch.Tensor):
            self.refuse(node, f"it reads {describe(value)}, not a tensor")
        self.env[node.name] = _Attr(node.target, value, node.name)

    def call_module(self, node: Any) -> None:
        m = self.modules[node.target]
        if len(node.args) != 1 or node.kwargs:
            self.refuse(node, "a module called with more than one argument")
        try:
            layer = convert_module(self.torch, node.target, m)
        except ValueError as exc:
            raise _Refused(f"from_torch cannot convert fx node {node.name!r} (call_module "
                           f"{node.target}): {exc}") from None
        x = self.tensor(node, node.args[0])
        self.calls.setdefault(node.target, []).append(node.name)
        if len(self.calls[node.target]) > 1:
            # A module called again: the same npcam layer instance at a second node.
            first = next(n for n in self.nodes if n.name == self.calls[node.target][0])
            layer = first.layer
        keys = {a: f"{node.target}.{a}" for a in (*layer.params(), *layer.buffers())}
        for a, key in keys.items():
            self.weights[key] = getattr(m, a)
        inplace = bool(getattr(m, "inplace", False))
        self.env[node.name] = self.op(node, layer, (x,), from_module=True, inplace=inplace, state_keys=keys)

    def call_function(self, node: Any) -> None:
        handler = FUNCTIONS.get(node.target)
        if handler is None and callable(node.target):
            handler = _BY_NAME.get(getattr(node.target, "__name__", ""))
        if handler is None:
            self.refuse(node, "this function is not supported", _alternative(node.target))
        assert handler is not None
        handler(self, node)

    def call_method(self, node: Any) -> None:
        handler = METHODS.get(node.target)
        if handler is None:
            self.refuse(node, "this tensor method is not supported", _alternative(node.target))
        assert handler is not None
        handler(self, node)


def _alternative(target: Any) -> str:
    name = getattr(target, "__name__", str(target))
    table = {
        "gelu": "exact GELU (approximate='none') is supported as nn.GELU",
        "softmax": "remove the softmax and pass score='softmax' to the explanation",
        "log_softmax": "remove it and pass score='log_softmax' to the explanation",
        "reshape": "x.view / x.reshape with sizes, or torch.flatten, are supported",
        "sub": "x + (-y) is supported as Add with a constant",
        "truediv": "x * (1/c) is supported",
        "interpolate": "no resampling op inside the model is supported",
        "leaky_relu": "the nearest supported activation is relu",
    }
    hint = table.get(name, "")
    if not hint:
        hint = "supported: " + ", ".join(sorted({*(_BY_NAME), *METHODS}))
    return hint


def _args(node: Any, names: tuple[str, ...], defaults: dict[str, Any]) -> dict[str, Any]:
    out = dict(defaults)
    for n, a in zip(names, node.args, strict=False):
        out[n] = a
    out.update(node.kwargs)
    return out


# ---------------------------------------------------------------- function handlers
def _relu(b: _Builder, node: Any) -> None:
    a = _args(node, ("input", "inplace"), {"inplace": False})
    x = b.tensor(node, a["input"])
    b.env[node.name] = b.op(node, layers.ReLU(), (x,), inplace=bool(a["inplace"]))


def _simple(factory: Callable[[], layers.Layer]) -> Callable[[_Builder, Any], None]:
    def handler(b: _Builder, node: Any) -> None:
        a = _args(node, ("input", "inplace"), {"inplace": False})
        b.env[node.name] = b.op(node, factory(), (b.tensor(node, a["input"]),), inplace=bool(a["inplace"]))

    return handler


def _binary(node: Any, b: _Builder, tensor_op: type, const_op: type,
            symbolic: Callable[[Any, Any], Any]) -> None:
    lhs, rhs = b.value(node.args[0]), b.value(node.args[1])
    if isinstance(lhs, (int, float, _Dim)) and isinstance(rhs, (int, float, _Dim)):
        b.env[node.name] = symbolic(lhs, rhs)
        return
    tensors = [isinstance(v, (str, _Attr)) for v in (lhs, rhs)]
    if all(tensors):
        inplace = _augmented(node)
        inputs = (b.tensor(node, node.args[0]), b.tensor(node, node.args[1]))
        b.env[node.name] = b.op(node, tensor_op(), inputs, inplace=inplace)
    elif any(tensors):
        t, c = (node.args[0], rhs) if tensors[0] else (node.args[1], lhs)
        if not isinstance(c, (int, float)) or isinstance(c, bool):
            b.refuse(node, f"an operand is {describe(c)}")
        b.env[node.name] = b.op(node, const_op(float(c)), (b.tensor(node, t),))
    else:
        b.refuse(node, "neither operand is a tensor or a size")


def _augmented(node: Any) -> bool:
    """``out += x`` traces as ``operator.add``; the recorded source line tells them apart."""
    trace = node.meta.get("stack_trace") or ""
    lines = [ln.strip() for ln in trace.splitlines() if ln.strip() and not ln.strip().startswith("File ")]
    internal = ("return tracer.create_proxy", "node = self.create_node", "CapturedTraceback")
    user = [ln for ln in lines if not any(mark in ln for mark in internal)]
    return bool(user) and ("+=" in user[-1] or "*=" in user[-1])


def _sym_add(a: Any, c: Any) -> Any:
    if isinstance(a, _Dim) or isinstance(c, _Dim):
        raise _Refused("from_torch supports size arithmetic with // and * only")
    return a + c


def _sym_mul(a: Any, c: Any) -> Any:
    if isinstance(a, _Dim) and isinstance(c, int):
        return _Dim(a.tensor, a.axis, a.div, a.mul * c)
    if isinstance(c, _Dim) and isinstance(a, int):
        return _Dim(c.tensor, c.axis, c.div, c.mul * a)
    if isinstance(a, _Dim) or isinstance(c, _Dim):
        raise _Refused("from_torch supports size arithmetic by ints only")
    return a * c


def _add(b: _Builder, node: Any) -> None:
    _binary(node, b, ops.Add, ops.AddConstant, _sym_add)


def _mul(b: _Builder, node: Any) -> None:
    _binary(node, b, ops.Mul, ops.MulConstant, _sym_mul)


def _floordiv(b: _Builder, node: Any) -> None:
    a, k = b.value(node.args[0]), b.value(node.args[1])
    if isinstance(a, _Dim) and isinstance(k, int) and a.mul == 1:
        b.env[node.name] = _Dim(a.tensor, a.axis, a.div * k, 1)
    elif isinstance(a, int) and isinstance(k, int):
        b.env[node.name] = a // k
    else:
        b.refuse(node, "only a size divided by an int is supported")


def _getitem(b: _Builder, node: Any) -> None:
    src, index = b.value(node.args[0]), node.args[1]
    if isinstance(src, _Size) and isinstance(index, int):
        b.env[node.name] = _Dim(src.tensor, index)
    elif isinstance(src, _Multi) and isinstance(index, int):
        b.env[node.name] = f"{src.name}:{index}"
    elif isinstance(src, (tuple, list)):
        b.env[node.name] = src[index]
    elif isinstance(src, str):
        entries = index if isinstance(index, tuple) else (index,)
        if not all(isinstance(e, (int, slice)) for e in entries):
            b.refuse(node, "only indexing with ints and slices is supported")
        b.env[node.name] = b.op(node, ops.Index(entries), (src,))
    else:
        b.refuse(node, f"indexing {describe(src)} is not supported")


def _cat(b: _Builder, node: Any) -> None:
    a = _args(node, ("tensors", "dim"), {"dim": 0})
    inputs = tuple(b.tensor(node, t) for t in a["tensors"])
    if len(inputs) == 1:
        b.env[node.name] = b.op(node, ops.Identity(), inputs)
    else:
        b.env[node.name] = b.op(node, ops.Concat(int(a["dim"])), inputs)


def _flatten(b: _Builder, node: Any) -> None:
    a = _args(node, ("input", "start_dim", "end_dim"), {"start_dim": 0, "end_dim": -1})
    if not (isinstance(a["start_dim"], int) and a["start_dim"] >= 1) or a["end_dim"] != -1:
        b.refuse(node, f"start_dim={a['start_dim']}, end_dim={a['end_dim']}",
                 "flatten(x, start_dim) with start_dim >= 1 and end_dim=-1 is supported")
    b.env[node.name] = b.op(node, layers.Flatten(a["start_dim"]), (b.tensor(node, a["input"]),))


_flatten_method = _flatten


def _permute_function(b: _Builder, node: Any) -> None:
    a = _args(node, ("input", "dims"), {})
    b.env[node.name] = b.op(node, ops.Permute(tuple(a["dims"])), (b.tensor(node, a["input"]),))


def _permute_method(b: _Builder, node: Any) -> None:
    dims = node.args[1:]
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    dims = node.kwargs.get("dims", dims)
    b.env[node.name] = b.op(node, ops.Permute(tuple(dims)), (b.tensor(node, node.args[0]),))


def _transpose(b: _Builder, node: Any) -> None:
    a = _args(node, ("input", "dim0", "dim1"), {})
    layer = ops.Transpose(int(a["dim0"]), int(a["dim1"]))
    b.env[node.name] = b.op(node, layer, (b.tensor(node, a["input"]),))


def _unsqueeze(b: _Builder, node: Any) -> None:
    a = _args(node, ("input", "dim"), {})
    b.env[node.name] = b.op(node, ops.Unsqueeze(int(a["dim"])), (b.tensor(node, a["input"]),))


def _adaptive_avg_pool2d(b: _Builder, node: Any) -> None:
    a = _args(node, ("input", "output_size"), {})
    b.env[node.name] = b.op(node, layers.AdaptiveAvgPool2d(_output_size(a["output_size"])),
                            (b.tensor(node, a["input"]),))


def _max_pool2d(b: _Builder, node: Any) -> None:
    a = _args(node, ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
              {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False, "return_indices": False})
    if a["return_indices"] or as_pair("dilation", a["dilation"]) != (1, 1):
        b.refuse(node, "dilation or return_indices", "max_pool2d with dilation=1 is supported")
    stride = a["stride"]
    layer = layers.MaxPool2d(
        as_pair("kernel_size", a["kernel_size"]),
        None if stride is None or stride == [] else as_pair("stride", stride),
        as_pair("padding", a["padding"], minimum=0), ceil_mode=bool(a["ceil_mode"]),
    )
    b.env[node.name] = b.op(node, layer, (b.tensor(node, a["input"]),))


def _avg_pool2d(b: _Builder, node: Any) -> None:
    a = _args(node, ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                     "divisor_override"),
              {"stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True,
               "divisor_override": None})
    if a["divisor_override"] is not None:
        b.refuse(node, "divisor_override", "avg_pool2d without divisor_override is supported")
    stride = a["stride"]
    layer = layers.AvgPool2d(
        as_pair("kernel_size", a["kernel_size"]),
        None if stride is None or stride == [] else as_pair("stride", stride),
        as_pair("padding", a["padding"], minimum=0), ceil_mode=bool(a["ceil_mode"]),
        count_include_pad=bool(a["count_include_pad"]),
    )
    b.env[node.name] = b.op(node, layer, (b.tensor(node, a["input"]),))


def _layer_norm(b: _Builder, node: Any) -> None:
    a = _args(node, ("input", "normalized_shape", "weight", "bias", "eps"),
              {"weight": None, "bias": None, "eps": 1e-5})
    shape = tuple(a["normalized_shape"])
    w, bias = b.value(a["weight"]), b.value(a["bias"])
    if len(shape) != 1 or not isinstance(w, _Attr) or not isinstance(bias, _Attr):
        b.refuse(node, ("layer_norm over more than the last axis, or without a weight and bias read "
                        "from the model"),
                 "F.layer_norm(x, [C], weight, bias, eps) is supported")
    layer = _activations().LayerNorm(shape[0], eps=float(a["eps"]))
    keys = {"weight": w.key, "bias": bias.key}
    b.weights.update({w.key: w.value, bias.key: bias.value})
    b.env[node.name] = b.op(node, layer, (b.tensor(node, a["input"]),), state_keys=keys)


def _stochastic_depth(b: _Builder, node: Any) -> None:
    a = _args(node, ("input", "p", "mode", "training"), {"training": True})
    if a["training"]:
        b.refuse(node, "stochastic depth in training mode is random", "put the model in eval mode")
    b.env[node.name] = b.op(node, ops.Identity(), (b.tensor(node, a["input"]),))


def _dropout_function(b: _Builder, node: Any) -> None:
    a = _args(node, ("input", "p", "training", "inplace"), {"p": 0.5, "training": True, "inplace": False})
    if a["training"]:
        b.refuse(node, "F.dropout with training=True is random", "put the model in eval mode")
    b.env[node.name] = b.op(node, ops.Identity(), (b.tensor(node, a["input"]),))


def _gelu_function(b: _Builder, node: Any) -> None:
    a = _args(node, ("input", "approximate"), {"approximate": "none"})
    if a["approximate"] != "none":
        b.refuse(node, f"approximate={a['approximate']!r}",
                 "the exact GELU (approximate='none') is supported")
    b.env[node.name] = b.op(node, _activations().GELU(), (b.tensor(node, a["input"]),))


# ---------------------------------------------------------------- method handlers
def _size(b: _Builder, node: Any) -> None:
    t = b.tensor(node, node.args[0])
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    b.env[node.name] = _Size(t) if dim is None else _Dim(t, int(dim))


def _view(b: _Builder, node: Any) -> None:
    data = b.tensor(node, node.args[0])
    sizes = [b.value(a) for a in node.args[1:]]
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = list(sizes[0])
    refs = [data]
    shape: list[int | str] = []
    for s in sizes:
        if isinstance(s, _Dim):
            if s.tensor not in refs:
                refs.append(s.tensor)
            spec = f"{refs.index(s.tensor)}.{s.axis}"
            if s.div != 1:
                spec += f"//{s.div}"
            if s.mul != 1:
                spec += f"*{s.mul}"
            shape.append(spec)
        elif isinstance(s, int) and not isinstance(s, bool):
            shape.append(s)
        else:
            b.refuse(node, f"a size is {describe(s)}")
    b.env[node.name] = b.op(node, ops.Reshape(shape), tuple(refs))


def _chunk(b: _Builder, node: Any) -> None:
    a = _args(node, ("input", "chunks", "dim"), {"dim": 0})
    x = b.tensor(node, a["input"])
    b.op(node, ops.Chunk(int(a["chunks"]), int(a["dim"])), (x,))
    b.env[node.name] = _Multi(node.name)


def _contiguous(b: _Builder, node: Any) -> None:
    b.env[node.name] = b.op(node, ops.Identity(), (b.tensor(node, node.args[0]),))


def _mean(b: _Builder, node: Any) -> None:
    a = _args(node, ("input", "dim", "keepdim"), {"keepdim": False})
    if "dim" not in a:
        b.refuse(node, "a mean over every axis", "x.mean(dims) over given axes is supported")
    dims = a["dim"]
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    b.env[node.name] = b.op(node, ops.Mean(dims, bool(a["keepdim"])), (b.tensor(node, a["input"]),))


FUNCTIONS: dict[Any, Callable[[_Builder, Any], None]] = {
    operator.add: _add,
    operator.iadd: _add,
    operator.mul: _mul,
    operator.imul: _mul,
    operator.floordiv: _floordiv,
    operator.getitem: _getitem,
}

#: Function handlers found by ``__name__`` (torch functions are builtins; their identity is
#: looked up lazily so that this module imports without torch).
_BY_NAME: dict[str, Callable[[_Builder, Any], None]] = {
    "relu": _relu,
    "relu_": _relu,
    "cat": _cat,
    "concat": _cat,
    "flatten": _flatten,
    "permute": _permute_function,
    "transpose": _transpose,
    "unsqueeze": _unsqueeze,
    "adaptive_avg_pool2d": _adaptive_avg_pool2d,
    "max_pool2d": _max_pool2d,
    "_max_pool2d": _max_pool2d,
    "avg_pool2d": _avg_pool2d,
    "layer_norm": _layer_norm,
    "stochastic_depth": _stochastic_depth,
    "dropout": _dropout_function,
    "add": _add,
    "mul": _mul,
    "gelu": _gelu_function,
}

METHODS: dict[str, Callable[[_Builder, Any], None]] = {
    "size": _size,
    "view": _view,
    "reshape": _view,
    "chunk": _chunk,
    "contiguous": _contiguous,
    "mean": _mean,
    "flatten": _flatten_method,
    "permute": _permute_method,
    "transpose": _transpose,
    "unsqueeze": _unsqueeze,
}


def _register_torch_functions(torch: Any) -> None:
    """Map the torch callables fx records to the handlers above (F.max_pool2d is a
    ``boolean_dispatch`` wrapper, F.avg_pool2d the builtin ``torch._C._nn.avg_pool2d``)."""
    global _REGISTERED
    if _REGISTERED:
        return
    F = torch.nn.functional
    act = _activations()
    extra: dict[Any, Callable[[_Builder, Any], None]] = {
        F.relu: _relu, torch.relu: _relu, F.max_pool2d: _max_pool2d, F.avg_pool2d: _avg_pool2d,
        F.adaptive_avg_pool2d: _adaptive_avg_pool2d, F.layer_norm: _layer_norm, torch.cat: _cat,
        torch.flatten: _flatten, torch.permute: _permute_function, torch.transpose: _transpose,
        torch.unsqueeze: _unsqueeze, torch.add: _add, torch.mul: _mul, F.dropout: _dropout_function,
        F.relu6: _simple(act.ReLU6), F.hardswish: _simple(act.Hardswish),
        F.hardsigmoid: _simple(act.Hardsigmoid), F.silu: _simple(act.SiLU),
        torch.sigmoid: _simple(act.Sigmoid), F.gelu: _gelu_function,
    }
    try:
        tv_ops = importlib.import_module("torchvision.ops")
        extra[tv_ops.stochastic_depth] = _stochastic_depth
    except ImportError:
        pass
    FUNCTIONS.update(extra)
    _REGISTERED = True


_REGISTERED = False


# ---------------------------------------------------------------- the default layers
#: ``layer=None`` on the torchvision classifiers: the paper's choice, the last rectified
#: convolutional feature map (a container path, or an fx node name for DenseNet's F.relu).
DEFAULT_LAYERS: dict[str, str] = {
    "ResNet": "layer4",
    "GoogLeNet": "inception5b",
    "Inception3": "Mixed_7c",
    "DenseNet": "relu",
    "SqueezeNet": "features",
    "MobileNetV2": "features",
    "MobileNetV3": "features",
    "EfficientNet": "features",
    "ConvNeXt": "features",
    "RegNet": "trunk_output",
    "ShuffleNetV2": "conv5",
}


def _default_layer(module: Any, graph_nodes: list[Node]) -> str | None:
    cls = type(module)
    if not cls.__module__.startswith("torchvision.models"):
        return None
    if cls.__name__ in ("VGG", "AlexNet"):
        # conv5_3's / conv5's ReLU: the last ReLU module inside ``features``.
        relus = [n for n in graph_nodes if isinstance(n.layer, layers.ReLU) and n.from_module
                 and any(a.startswith("features.") for a in n.aliases)]
        return next((a for a in relus[-1].aliases if a.startswith("features.")), None) if relus else None
    return DEFAULT_LAYERS.get(cls.__name__)


# ---------------------------------------------------------------- the importer
def _trace(torch: Any, module: Any) -> Any:
    tracer = torch.fx.Tracer()
    tracer.record_stack_traces = True  # tells ``out += x`` from ``out = out + x``
    try:
        return tracer.trace(module)
    except Exception as exc:  # fx raises many kinds (TraceError, TypeError, ...)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"from_torch could not trace {type(module).__name__} with torch.fx.symbolic_trace: {reason}"
        ) from None


def graph_from_module(torch: Any, module: Any) -> tuple[Graph, dict[str, Any]]:
    """The :class:`Graph` of an eval-mode torch module (traced by the caller's
    :func:`npcam.from_torch`), and the torch tensors of its ``state_dict`` entries."""
    _register_torch_functions(torch)
    fx_graph = _trace(torch, module)
    b = _Builder(torch, module)
    output: str | None = None
    try:
        for node in fx_graph.nodes:
            if node.op == "output":
                result = b.value(node.args[0])
                if not isinstance(result, str):
                    b.refuse(node, f"the model returns {describe(result)}, not one tensor",
                             "return the logits tensor only")
                output = result
                continue
            getattr(b, node.op)(node)
    except _Refused as exc:
        raise ValueError(str(exc)) from None
    assert output is not None
    nodes = _with_aliases(fx_graph, b)
    # Drop what the logits do not depend on (unused get_attr parameters, dead branches).
    needed = {output}
    for n in reversed(nodes):
        if n.name in needed:
            needed.update(i.split(":")[0] for i in n.inputs)
    nodes = [n for n in nodes if n.name in needed]
    if output == "input":
        raise ValueError("from_torch: the model returns its input unchanged; there is nothing to explain.")
    ambiguous = {path: names for path, names in b.calls.items() if len(names) > 1}
    keys = {k for n in nodes for k in n.keys().values()}
    weights = {k: v for k, v in b.weights.items() if k in keys}
    graph = Graph(nodes, output, ambiguous=ambiguous)
    default = _default_layer(module, nodes)
    if default is not None and (default in graph.aliases() or default in dict(graph.named_nodes())):
        graph.default_layer_name = default
    return graph, weights


def _with_aliases(fx_graph: Any, b: _Builder) -> list[Node]:
    """Module paths as aliases: a leaf module called once names its node; a container's
    path names the last node inside it (``nn_module_stack``)."""
    last: dict[str, str] = {}
    names = {n.name for n in b.nodes}
    for fx_node in fx_graph.nodes:
        if fx_node.name not in names:
            continue
        for path in (fx_node.meta.get("nn_module_stack") or {}):
            last[path] = fx_node.name
    multi = {p for p, calls in b.calls.items() if len(calls) > 1}
    aliases: dict[str, list[str]] = {}
    for path, node_name in last.items():
        if path in multi or not path:
            continue
        aliases.setdefault(node_name, []).append(path)
    out = []
    for n in b.nodes:
        extra = tuple(a for a in aliases.get(n.name, []) if a != n.name and a not in names)
        out.append(Node(n.name, n.layer, n.inputs, n.aliases + extra, n.from_module, n.inplace,
                        dict(n.state_keys)))
    return out

