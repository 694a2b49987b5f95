"""Architectures as JSON-able configs, and models rebuilt from them.

A config is what ``model.config()`` returns: for a leaf layer a mapping with its
``"type"`` (the class name) and its hyper-parameters; for a container
``{"type": "Sequential", "children": [[name, config], ...]}``. Configs may come from
files, so :func:`plan_config` validates the whole structure with bounds — types,
field names, ints within :data:`npcam._validate.MAX_CHANNELS`, ``MAX_KERNEL_SIZE``,
nesting within ``MAX_NESTING``, at most ``MAX_NODES`` layers, parameter counts within
``MAX_LAYER_PARAMETERS`` per layer and ``MAX_MODEL_PARAMETERS`` per model — and computes
every parameter's shape from the config alone, before a single array is allocated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._validate import (
    MAX_CHANNELS,
    MAX_KERNEL_SIZE,
    MAX_LAYER_PARAMETERS,
    MAX_MODEL_PARAMETERS,
    MAX_NESTING,
    MAX_NODES,
    describe,
)
from . import layers
from .layers import BatchNorm2d, Conv2d, Dropout, Flatten, GlobalAvgPool2d, Layer, Linear, MaxPool2d, ReLU
from .sequential import Sequential

__all__ = ["ConfigPlan", "layer_from_config", "model_from_config", "plan_config", "state_dict_shapes"]

_LAYER_TYPES: dict[str, type[Layer]] = {
    cls.__name__: cls
    for cls in (Conv2d, Linear, ReLU, MaxPool2d, GlobalAvgPool2d, Flatten, Dropout, BatchNorm2d)
}


# ------------------------------------------------------------------------ field checks
class _Where:
    """Where a config sits, for messages: ``config of layer 'features.0' (Conv2d)``."""

    def __init__(self, path: str, kind: str | None = None) -> None:
        self.path, self.kind = path, kind

    def __str__(self) -> str:
        where = f"config of layer {self.path!r}" if self.path else "config"
        return f"{where} ({self.kind})" if self.kind else where


def _int(where: _Where, name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where}: {name} must be an int, got {describe(value)}.")
    if not low <= value <= high:
        raise ValueError(f"{where}: {name} must be an int in [{low}, {high}], got {int(value)}.")
    return int(value)


def _pair(where: _Where, name: str, value: Any, low: int, high: int) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"{where}: {name} must be an int or a pair of ints, got {len(value)} entries.")
        return _int(where, name, value[0], low, high), _int(where, name, value[1], low, high)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where}: {name} must be an int or a pair of ints, got {describe(value)}.")
    v = _int(where, name, value, low, high)
    return v, v


def _padding(where: _Where, value: Any) -> tuple[int, ...]:
    """``padding``: an int, a pair ``(p_h, p_w)`` or four ints ``(left, right, top, bottom)``,
    each in [0, MAX_KERNEL_SIZE] (the layer stores a symmetric 4-tuple as the pair)."""
    if isinstance(value, (list, tuple)) and len(value) == 4:
        return tuple(_int(where, "padding", v, 0, MAX_KERNEL_SIZE) for v in value)
    if isinstance(value, (list, tuple)) and len(value) != 2:
        raise ValueError(f"{where}: padding must be an int, a pair of ints or 4 ints (left, right, top, "
                         f"bottom), got {len(value)} entries.")
    if not isinstance(value, (list, tuple)) and (
        isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer))
    ):
        raise TypeError(f"{where}: padding must be an int, a pair of ints or 4 ints (left, right, top, "
                        f"bottom), got {describe(value)}.")
    return _pair(where, "padding", value, 0, MAX_KERNEL_SIZE)


def _bool(where: _Where, name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: {name} must be true or false, got {describe(value)}.")
    return bool(value)


def _number(where: _Where, name: str, value: Any, low: float, high: float, *, open_low: bool,
            open_high: bool) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{where}: {name} must be a number, got {describe(value)}.")
    v = float(value)
    ok = math.isfinite(v) and (v > low if open_low else v >= low) and (v < high if open_high else v <= high)
    if not ok:
        interval = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
        raise ValueError(f"{where}: {name} must be a number in {interval}, got {value!r}.")
    return v


_MAX_FEATURES = MAX_LAYER_PARAMETERS  # Linear: each side at most the per-layer bound


def _conv(w: _Where, c: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "in_channels": _int(w, "in_channels", c["in_channels"], 1, MAX_CHANNELS),
        "out_channels": _int(w, "out_channels", c["out_channels"], 1, MAX_CHANNELS),
        "kernel_size": _pair(w, "kernel_size", c["kernel_size"], 1, MAX_KERNEL_SIZE),
        "stride": _pair(w, "stride", c.get("stride", 1), 1, MAX_KERNEL_SIZE),
        "padding": _padding(w, c.get("padding", 0)),
        "bias": _bool(w, "bias", c.get("bias", True)),
        "groups": _int(w, "groups", c.get("groups", 1), 1, MAX_CHANNELS),
    }
    if out["in_channels"] % out["groups"] or out["out_channels"] % out["groups"]:
        raise ValueError(
            f"{w}: in_channels ({out['in_channels']}) and out_channels ({out['out_channels']}) must be "
            f"divisible by groups ({out['groups']})."
        )
    return out


def _linear(w: _Where, c: dict[str, Any]) -> dict[str, Any]:
    return {
        "in_features": _int(w, "in_features", c["in_features"], 1, _MAX_FEATURES),
        "out_features": _int(w, "out_features", c["out_features"], 1, _MAX_FEATURES),
        "bias": _bool(w, "bias", c.get("bias", True)),
    }


def _maxpool(w: _Where, c: dict[str, Any]) -> dict[str, Any]:
    stride = c.get("stride")
    return {
        "kernel_size": _pair(w, "kernel_size", c["kernel_size"], 1, MAX_KERNEL_SIZE),
        "stride": None if stride is None else _pair(w, "stride", stride, 1, MAX_KERNEL_SIZE),
        "padding": _padding(w, c.get("padding", 0)),
        "ceil_mode": _bool(w, "ceil_mode", c.get("ceil_mode", False)),
    }


def _dropout(w: _Where, c: dict[str, Any]) -> dict[str, Any]:
    return {"p": _number(w, "p", c.get("p", 0.5), 0.0, 1.0, open_low=False, open_high=True)}


def _batchnorm(w: _Where, c: dict[str, Any]) -> dict[str, Any]:
    return {
        "num_features": _int(w, "num_features", c["num_features"], 1, MAX_CHANNELS),
        "eps": _number(w, "eps", c.get("eps", 1e-5), 0.0, 1.0, open_low=True, open_high=False),
        "momentum": _number(w, "momentum", c.get("momentum", 0.1), 0.0, 1.0, open_low=False,
                            open_high=False),
    }


def _flatten(w: _Where, c: dict[str, Any]) -> dict[str, Any]:
    return {"start_dim": _int(w, "start_dim", c["start_dim"], 1, 64)} if "start_dim" in c else {}


def _none(w: _Where, c: dict[str, Any]) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class _Schema:
    required: tuple[str, ...]
    optional: tuple[str, ...]
    check: Callable[[_Where, dict[str, Any]], dict[str, Any]]
    shapes: Callable[[dict[str, Any]], dict[str, tuple[int, ...]]]


def _conv_shapes(k: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {
        "weight": (k["out_channels"], k["in_channels"] // k["groups"], *k["kernel_size"])
    }
    if k["bias"]:
        out["bias"] = (k["out_channels"],)
    return out


def _linear_shapes(k: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {"weight": (k["out_features"], k["in_features"])}
    if k["bias"]:
        out["bias"] = (k["out_features"],)
    return out


def _bn_shapes(k: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    c = (k["num_features"],)
    return {"weight": c, "bias": c, "running_mean": c, "running_var": c, "num_batches_tracked": ()}


#: Per layer type: required and optional fields, their checks, and the parameter and
#: buffer shapes in ``state_dict`` order (``param_names`` then ``buffer_names``).
_SCHEMAS: dict[str, _Schema] = {
    "Conv2d": _Schema(("in_channels", "out_channels", "kernel_size"),
                      ("stride", "padding", "bias", "groups"), _conv, _conv_shapes),
    "Linear": _Schema(("in_features", "out_features"), ("bias",), _linear, _linear_shapes),
    "ReLU": _Schema((), (), _none, lambda k: {}),
    "MaxPool2d": _Schema(("kernel_size",), ("stride", "padding", "ceil_mode"), _maxpool, lambda k: {}),
    "GlobalAvgPool2d": _Schema((), (), _none, lambda k: {}),
    "Flatten": _Schema((), ("start_dim",), _flatten, lambda k: {}),
    "Dropout": _Schema((), ("p",), _dropout, lambda k: {}),
    "BatchNorm2d": _Schema(("num_features",), ("eps", "momentum"), _batchnorm, _bn_shapes),
}  # fmt: skip


# ------------------------------------------------------------- the other layers and ops
def _generic_types() -> dict[str, type[Layer]]:
    """Layers and graph ops whose configs are checked through their constructors (their
    fields are the constructor's keyword arguments, each validated there)."""
    from . import activations, ops

    out: dict[str, type[Layer]] = {}
    for cls in (
        layers.AvgPool2d, layers.AdaptiveAvgPool2d, activations.ReLU6, activations.Hardswish,
        activations.Hardsigmoid, activations.SiLU, activations.Sigmoid, activations.GELU,
        activations.LayerNorm, ops.Add, ops.AddConstant, ops.Chunk, ops.ClipAffine, ops.Concat,
        ops.Div, ops.Erf, ops.Identity, ops.Index, ops.Mean, ops.Mul, ops.MulConstant, ops.Pad,
        ops.Parameter, ops.Permute, ops.Reshape, ops.Split, ops.Sub, ops.Sum, ops.Transpose, ops.Unsqueeze,
        ops.View,
    ):
        out[cls.__name__] = cls
    return out


_MAX_FIELD_ITEMS = 64  # a list in a config field: at most this many entries (shapes, dims)
_MAX_FIELD_INT = 2**31


def _json_field(where: _Where, name: str, value: Any, depth: int = 0) -> Any:
    """A config field value: None, a bool, a finite number, a short str, or a short list
    of these (one level of nesting), bounded so that no field can ask for a huge build."""
    if value is None or isinstance(value, (bool, np.bool_)):
        return value if value is None else bool(value)
    if isinstance(value, (int, np.integer)):
        if abs(int(value)) > _MAX_FIELD_INT:
            raise ValueError(f"{where}: {name} must be an int of at most 2**31 in size, got {int(value)}.")
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(float(value)):
            raise ValueError(f"{where}: {name} must be finite, got {value!r}.")
        return float(value)
    if isinstance(value, str):
        if len(value) > 64:
            raise ValueError(f"{where}: {name} must be a str of at most 64 characters, got {len(value)}.")
        return value
    if isinstance(value, (list, tuple)) and depth < 2:
        if len(value) > _MAX_FIELD_ITEMS:
            raise ValueError(f"{where}: {name} may hold at most {_MAX_FIELD_ITEMS} entries, got "
                             f"{len(value)}.")
        return [_json_field(where, name, v, depth + 1) for v in value]
    raise TypeError(f"{where}: {name} must be a number, str, bool or short list, got {describe(value)}.")


def _generic_leaf(
    config: Mapping[str, Any], where: _Where, cls: type[Layer]
) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    import inspect

    params = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "rng")]
    fields = {k: v for k, v in config.items() if k != "type"}
    unknown = sorted(str(k) for k in fields if k not in params)
    if unknown:
        raise ValueError(f"{where} has unexpected field(s) {unknown}; its fields are: "
                         f"{', '.join(params) or 'none'}.")
    kwargs = {k: _json_field(where, k, v) for k, v in fields.items()}
    if cls.__name__ == "Parameter":
        shape = kwargs.get("shape")
        if isinstance(shape, list) and all(isinstance(v, int) and v > 0 for v in shape):
            if math.prod(shape) > MAX_LAYER_PARAMETERS:
                raise ValueError(f"{where} would hold more than MAX_LAYER_PARAMETERS = "
                                 f"{MAX_LAYER_PARAMETERS} values.")
    try:
        layer = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{where}: {exc}") from None
    shapes = {k: tuple(np.shape(v)) for k, v in {**layer.params(), **layer.buffers()}.items()}
    return kwargs, shapes


# ------------------------------------------------------------------------------- plans
@dataclass
class _Leaf:
    kind: str
    kwargs: dict[str, Any]
    shapes: dict[str, tuple[int, ...]]


@dataclass
class _Container:
    children: list[tuple[str, Any]] = field(default_factory=list)


@dataclass
class _Budget:
    nodes: int = 0
    parameters: int = 0


def _check_leaf(config: Mapping[str, Any], where: _Where, budget: _Budget) -> _Leaf:
    kind = config["type"]
    if kind in _SCHEMAS:
        schema = _SCHEMAS[kind]
        fields = {k: v for k, v in config.items() if k != "type"}
        unknown = sorted(str(k) for k in fields if k not in schema.required + schema.optional)
        if unknown:
            allowed = ", ".join(schema.required + schema.optional) or "none"
            raise ValueError(f"{where} has unexpected field(s) {unknown}; its fields are: {allowed}.")
        absent = [k for k in schema.required if k not in fields]
        if absent:
            raise ValueError(f"{where} lacks the field(s) {absent}.")
        kwargs = schema.check(where, fields)
        shapes = schema.shapes(kwargs)
    else:
        kwargs, shapes = _generic_leaf(config, where, _generic_types()[kind])
    count = sum(math.prod(s) for s in shapes.values())
    if count > MAX_LAYER_PARAMETERS:
        raise ValueError(
            f"{where} would hold {count} parameters, more than MAX_LAYER_PARAMETERS = {MAX_LAYER_PARAMETERS}."
        )
    budget.nodes += 1
    budget.parameters += count
    if budget.nodes > MAX_NODES:
        raise ValueError(f"the config has more than MAX_NODES = {MAX_NODES} layers.")
    if budget.parameters > MAX_MODEL_PARAMETERS:
        raise ValueError(
            f"the config describes more than MAX_MODEL_PARAMETERS = {MAX_MODEL_PARAMETERS} parameters "
            f"(reached at layer {where.path!r})."
        )
    return _Leaf(kind, kwargs, shapes)


def _check(config: Any, path: str, depth: int, budget: _Budget) -> _Leaf | _Container | _GraphPlan:
    where = _Where(path)
    if not isinstance(config, Mapping) or "type" not in config:
        raise TypeError(f"{where} must be a mapping with a 'type' key, got {describe(config)}.")
    kind = config["type"]
    if not isinstance(kind, str):
        raise TypeError(f"{where}: 'type' must be a str, got {describe(kind)}.")
    if kind == "Graph":
        if depth > 0:
            raise ValueError(f"{where}: a Graph cannot be nested in another model.")
        return _check_graph(config, budget)
    if kind != "Sequential":
        if kind not in _LAYER_TYPES and kind not in _generic_types():
            known = sorted([*_LAYER_TYPES, *_generic_types(), "Sequential", "Graph"])
            raise ValueError(f"{where}: type must be one of {known}, got {kind!r}.")
        return _check_leaf(config, _Where(path, kind), budget)
    where = _Where(path, "Sequential")
    if depth >= MAX_NESTING:
        raise ValueError(f"{where} nests containers deeper than MAX_NESTING = {MAX_NESTING} levels.")
    unknown = sorted(str(k) for k in config if k not in ("type", "children"))
    if unknown:
        raise ValueError(f"{where} has unexpected field(s) {unknown}; its fields are: type, children.")
    children = config.get("children")
    if not isinstance(children, (list, tuple)):
        raise ValueError(f"{where} must have a 'children' list, got {describe(children)}.")
    if not children:
        raise ValueError(f"{where} must have at least one child, got an empty 'children' list.")
    node = _Container()
    seen: set[str] = set()
    for i, entry in enumerate(children):
        if not isinstance(entry, (list, tuple)) or len(entry) != 2:
            got = f"{len(entry)} entries" if isinstance(entry, (list, tuple)) else describe(entry)
            raise ValueError(f"{where}: children[{i}] must be a [name, config] pair, got {got}.")
        name, child = entry
        if not isinstance(name, str) or not name or "." in name or name == "input":
            raise ValueError(
                f"{where}: children[{i}] has name {name!r}; names are non-empty strings without "
                "'.' other than 'input'."
            )
        if name in seen:
            raise ValueError(f"{where}: the name {name!r} appears twice among its children.")
        seen.add(name)
        node.children.append((name, _check(child, f"{path}.{name}" if path else name, depth + 1, budget)))
    return node


@dataclass
class _GraphNode:
    name: str
    leaf: _Leaf | None  # None: the same layer as node ``same_as``
    same_as: str | None
    inputs: tuple[str, ...]
    aliases: tuple[str, ...]
    from_module: bool
    inplace: bool
    state_keys: dict[str, str]


@dataclass
class _GraphPlan:
    nodes: list[_GraphNode]
    output: str
    default_layer_name: str | None
    ambiguous: dict[str, list[str]]
    input_shape: list[int | None] | None = None
    output_softmax: bool = False
    import_notes: tuple[str, ...] = ()


_GRAPH_FIELDS = ("type", "nodes", "output", "default_layer_name", "ambiguous", "input_shape",
                 "output_softmax", "import_notes")
_NODE_FIELDS = ("name", "layer", "inputs", "same_layer_as", "aliases", "from_module", "inplace", "state_keys")


def _names(where: str, value: Any, field_name: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or len(value) > MAX_NODES:
        raise TypeError(f"{where}: {field_name} must be a list of names, got {describe(value)}.")
    if not all(isinstance(v, str) and 0 < len(v) <= 256 for v in value):
        raise TypeError(f"{where}: {field_name} must hold names (non-empty str of at most 256 characters).")
    return tuple(value)


def _check_graph(config: Mapping[str, Any], budget: _Budget) -> _GraphPlan:
    """Validate a Graph config (structure only; ``Graph`` itself checks the topology)."""
    unknown = sorted(str(k) for k in config if k not in _GRAPH_FIELDS)
    if unknown:
        raise ValueError(f"config (Graph) has unexpected field(s) {unknown}; its fields are: "
                         f"{', '.join(_GRAPH_FIELDS)}.")
    entries = config.get("nodes")
    if not isinstance(entries, (list, tuple)) or not entries:
        raise ValueError(f"config (Graph) must have a non-empty 'nodes' list, got {describe(entries)}.")
    if len(entries) > MAX_NODES:
        raise ValueError(f"the config has more than MAX_NODES = {MAX_NODES} nodes.")
    output = config.get("output")
    if not isinstance(output, str):
        raise TypeError(f"config (Graph): output must be a node name, got {describe(output)}.")
    default = config.get("default_layer_name")
    if default is not None and not isinstance(default, str):
        raise TypeError(f"config (Graph): default_layer_name must be a str or null, got {describe(default)}.")
    ambiguous_raw = config.get("ambiguous", {})
    if not isinstance(ambiguous_raw, Mapping):
        raise TypeError(f"config (Graph): ambiguous must be a mapping, got {describe(ambiguous_raw)}.")
    ambiguous = {str(k): list(_names("config (Graph)", v, "ambiguous")) for k, v in ambiguous_raw.items()}
    input_shape = config.get("input_shape")
    if input_shape is not None and (
        not isinstance(input_shape, (list, tuple)) or not 0 < len(input_shape) <= 8
        or not all(v is None or (isinstance(v, int) and not isinstance(v, bool) and 0 < v <= _MAX_FIELD_INT)
                   for v in input_shape)
    ):
        raise ValueError(f"config (Graph): input_shape must be a list of positive ints or nulls, got "
                         f"{describe(input_shape)}.")
    output_softmax = config.get("output_softmax", False)
    if not isinstance(output_softmax, bool):
        raise TypeError(f"config (Graph): output_softmax must be a bool, got {describe(output_softmax)}.")
    notes = config.get("import_notes", [])
    if not isinstance(notes, (list, tuple)) or len(notes) > 64 or not all(
            isinstance(v, str) and len(v) <= 1000 for v in notes):
        raise TypeError("config (Graph): import_notes must be a list of at most 64 str of at most 1000 "
                        "characters.")
    nodes: list[_GraphNode] = []
    layers_seen: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"config of node {i}"
        if not isinstance(entry, Mapping):
            raise TypeError(f"{where} must be a mapping, got {describe(entry)}.")
        bad = sorted(str(k) for k in entry if k not in _NODE_FIELDS)
        if bad:
            raise ValueError(f"{where} has unexpected field(s) {bad}; its fields are: "
                             f"{', '.join(_NODE_FIELDS)}.")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise TypeError(f"{where}: name must be a non-empty str, got {describe(name)}.")
        where = f"config of node {name!r}"
        inputs = _names(where, entry.get("inputs", []), "inputs")
        aliases = _names(where, entry.get("aliases", []), "aliases")
        same = entry.get("same_layer_as")
        flags = {}
        for flag in ("from_module", "inplace"):
            flags[flag] = _bool(_Where(name), flag, entry.get(flag, False))
        keys = entry.get("state_keys", {})
        if not isinstance(keys, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) and len(v) <= 512 for k, v in keys.items()
        ):
            raise TypeError(f"{where}: state_keys must map attribute names to keys (str).")
        if same is not None:
            if not isinstance(same, str) or same not in layers_seen:
                raise ValueError(f"{where}: same_layer_as must name an earlier node, got {same!r}.")
            leaf = None
        else:
            layer_config = entry.get("layer")
            sub = _check(layer_config, name, 1, budget)
            if not isinstance(sub, _Leaf):
                raise ValueError(f"{where}: layer must be a leaf layer or graph op, not a container.")
            leaf = sub
        layers_seen.add(name)
        nodes.append(_GraphNode(name, leaf, same, inputs, aliases, flags["from_module"],
                                flags["inplace"], dict(keys)))
    return _GraphPlan(nodes, output, default, ambiguous, None if input_shape is None else list(input_shape),
                      output_softmax, tuple(notes))


def _graph_shapes(plan: _GraphPlan, out: dict[str, tuple[int, ...]]) -> None:
    leaves = {n.name: n.leaf for n in plan.nodes if n.leaf is not None}
    for n in plan.nodes:
        leaf = n.leaf if n.leaf is not None else leaves[n.same_as]  # type: ignore[index]
        for attr, shape in leaf.shapes.items():  # type: ignore[union-attr]
            key = n.state_keys.get(attr, f"{n.name}.{attr}")
            out.setdefault(key, shape)


def _build_graph(plan: _GraphPlan, rng: Any) -> Any:
    from .graph import Graph, Node

    built: dict[str, Layer] = {}
    nodes = []
    for n in plan.nodes:
        layer = built[n.same_as] if n.same_as is not None else _build(n.leaf, rng)  # type: ignore[arg-type]
        built[n.name] = layer  # type: ignore[assignment]
        nodes.append(Node(n.name, layer, n.inputs, n.aliases, n.from_module, n.inplace, n.state_keys))  # type: ignore[arg-type]
    return Graph(nodes, plan.output, default_layer_name=plan.default_layer_name, ambiguous=plan.ambiguous,
                 input_shape=plan.input_shape, output_softmax=plan.output_softmax,
                 import_notes=plan.import_notes)


def _shapes(node: _Leaf | _Container | _GraphPlan, prefix: str, out: dict[str, tuple[int, ...]]) -> None:
    if isinstance(node, _GraphPlan):
        _graph_shapes(node, out)
        return
    if isinstance(node, _Leaf):
        for key, shape in node.shapes.items():
            out[f"{prefix}.{key}" if prefix else key] = shape
        return
    for name, child in node.children:
        _shapes(child, f"{prefix}.{name}" if prefix else name, out)


def _build(node: _Leaf | _Container | _GraphPlan, rng: Any) -> Any:
    if isinstance(node, _GraphPlan):
        return _build_graph(node, rng)
    if isinstance(node, _Container):
        return Sequential({name: _build(child, rng) for name, child in node.children})
    kwargs = dict(node.kwargs)
    if node.kind in ("Conv2d", "Linear") and rng is False:
        kwargs["rng"] = False  # zeros, to be overwritten by the loaded arrays
    cls = _LAYER_TYPES.get(node.kind) or _generic_types()[node.kind]
    return cls(**kwargs)


@dataclass(frozen=True)
class ConfigPlan:
    """A validated config: what it builds, checked before anything is allocated.

    Attributes
    ----------
    shapes : dict of str to tuple of int
        Every parameter and buffer the model will hold, keyed and ordered as its
        ``state_dict()`` (for a leaf config, keyed by the parameter name alone).
    parameters : int
        Number of values in ``shapes``.
    layers : int
        Number of leaf layers.
    """

    shapes: dict[str, tuple[int, ...]]
    parameters: int
    layers: int
    _root: _Leaf | _Container | _GraphPlan

    def build(self, state_dict: Mapping[str, Any] | None = None) -> Layer | Sequential:
        """Build the model: with ``state_dict`` its layers start from zeros (no random
        initialisation) and are loaded with it (every key required, shapes exact);
        without, the weights are initialised afresh as the layer constructors do."""
        if state_dict is None:
            return _build(self._root, None)
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping of name -> array, got {describe(state_dict)}.")
        given = {k for k in state_dict if not (k.startswith("__") and k.endswith("__"))}
        missing = [k for k in self.shapes if k not in given]
        unexpected = sorted(k for k in given if k not in self.shapes)
        if missing or unexpected:
            raise ValueError(
                "state_dict does not match the config: "
                f"missing keys {missing or 'none'}, unexpected keys {unexpected or 'none'}."
            )
        for key, shape in self.shapes.items():
            got = np.shape(state_dict[key])
            if got != shape:
                raise ValueError(f"state_dict[{key!r}] must have shape {shape}, got {got}.")
        model = _build(self._root, False)
        if hasattr(model, "load_state_dict"):
            model.load_state_dict(state_dict)
        else:
            for key in self.shapes:
                setattr(model, key, state_dict[key])
        return model


def plan_config(config: Any) -> ConfigPlan:
    """Validate ``config`` (a layer's or a model's ``config()``) and compute its shapes.

    Parameters
    ----------
    config : mapping
        A leaf config ``{"type": "Conv2d", ...}`` or ``{"type": "Sequential",
        "children": [[name, config], ...]}``; lists and tuples are both accepted.

    Returns
    -------
    ConfigPlan

    Raises
    ------
    TypeError
        A config or field of the wrong kind (not a mapping, ``kernel_size: 3.5``, ...).
    ValueError
        Unknown types or fields, missing fields, out-of-bound values, children that are
        not ``[name, config]`` pairs, too deep, too many layers or parameters.
    """
    budget = _Budget()
    root = _check(config, "", 0, budget)
    shapes: dict[str, tuple[int, ...]] = {}
    _shapes(root, "", shapes)
    return ConfigPlan(shapes, budget.parameters, budget.nodes, root)


def state_dict_shapes(config: Any) -> dict[str, tuple[int, ...]]:
    """The ``state_dict`` shapes the model of ``config`` holds (from the config alone)."""
    return plan_config(config).shapes


def layer_from_config(config: Mapping[str, Any]) -> Layer:
    """Rebuild a leaf layer from :meth:`Layer.config` (weights are initialised afresh).

    Raises
    ------
    TypeError, ValueError
        As :func:`plan_config`; a ``Sequential`` config is refused (use
        :func:`model_from_config`).
    """
    if isinstance(config, Mapping) and config.get("type") in ("Sequential", "Graph"):
        raise ValueError(f"config describes a {config['type']}; use model_from_config for models.")
    layer = plan_config(config).build()
    assert isinstance(layer, Layer)
    return layer


def model_from_config(config: Mapping[str, Any], state_dict: Mapping[str, Any] | None = None) -> layers.Layer:
    """Rebuild a model (or a leaf layer) from ``config()``.

    Parameters
    ----------
    config : mapping
        As :func:`plan_config`; validated completely before anything is built.
    state_dict : mapping of str to array_like, optional
        The weights. Without (the default) they are initialised afresh, as the layer
        constructors do; with, the layers are built without random initialisation and
        loaded with these arrays (every key required, shapes checked first).

    Returns
    -------
    Sequential or Layer
    """
    return plan_config(config).build(state_dict)  # type: ignore[return-value]
