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
    return {
        "in_channels": _int(w, "in_channels", c["in_channels"], 1, MAX_CHANNELS),
        "out_channels": _int(w, "out_channels", c["out_channels"], 1, MAX_CHANNELS),
        "kernel_size": _pair(w, "kernel_size", c["kernel_size"], 1, MAX_KERNEL_SIZE),
        "stride": _pair(w, "stride", c.get("stride", 1), 1, MAX_KERNEL_SIZE),
        "padding": _pair(w, "padding", c.get("padding", 0), 0, MAX_KERNEL_SIZE),
        "bias": _bool(w, "bias", c.get("bias", True)),
    }


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


def _none(w: _Where, c: dict[str, Any]) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class _Schema:
    required: tuple[str, ...]
    optional: tuple[str, ...]
    check: Callable[[_Where, dict[str, Any]], dict[str, Any]]
    shapes: Callable[[dict[str, Any]], dict[str, tuple[int, ...]]]


def _conv_shapes(k: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {"weight": (k["out_channels"], k["in_channels"], *k["kernel_size"])}
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
    "Conv2d": _Schema(("in_channels", "out_channels", "kernel_size"), ("stride", "padding", "bias"),
                      _conv, _conv_shapes),
    "Linear": _Schema(("in_features", "out_features"), ("bias",), _linear, _linear_shapes),
    "ReLU": _Schema((), (), _none, lambda k: {}),
    "MaxPool2d": _Schema(("kernel_size",), ("stride",), _maxpool, lambda k: {}),
    "GlobalAvgPool2d": _Schema((), (), _none, lambda k: {}),
    "Flatten": _Schema((), (), _none, lambda k: {}),
    "Dropout": _Schema((), ("p",), _dropout, lambda k: {}),
    "BatchNorm2d": _Schema(("num_features",), ("eps", "momentum"), _batchnorm, _bn_shapes),
}  # fmt: skip


# ------------------------------------------------------------------------------- plans
@dataclass
class _Leaf:
    kind: str
    kwargs: dict[str, Any]
    shapes: dict[str, tuple[int, ...]]


@dataclass
class _Container:
    children: list[tuple[str, _Leaf | _Container]] = field(default_factory=list)


@dataclass
class _Budget:
    nodes: int = 0
    parameters: int = 0


def _check_leaf(config: Mapping[str, Any], where: _Where, budget: _Budget) -> _Leaf:
    kind = config["type"]
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


def _check(config: Any, path: str, depth: int, budget: _Budget) -> _Leaf | _Container:
    where = _Where(path)
    if not isinstance(config, Mapping) or "type" not in config:
        raise TypeError(f"{where} must be a mapping with a 'type' key, got {describe(config)}.")
    kind = config["type"]
    if not isinstance(kind, str):
        raise TypeError(f"{where}: 'type' must be a str, got {describe(kind)}.")
    if kind != "Sequential":
        if kind not in _LAYER_TYPES:
            known = sorted([*_LAYER_TYPES, "Sequential"])
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


def _shapes(node: _Leaf | _Container, prefix: str, out: dict[str, tuple[int, ...]]) -> None:
    if isinstance(node, _Leaf):
        for key, shape in node.shapes.items():
            out[f"{prefix}.{key}" if prefix else key] = shape
        return
    for name, child in node.children:
        _shapes(child, f"{prefix}.{name}" if prefix else name, out)


def _build(node: _Leaf | _Container, rng: Any) -> Layer | Sequential:
    if isinstance(node, _Container):
        return Sequential({name: _build(child, rng) for name, child in node.children})
    kwargs = dict(node.kwargs)
    if node.kind in ("Conv2d", "Linear") and rng is False:
        kwargs["rng"] = False  # zeros, to be overwritten by the loaded arrays
    return _LAYER_TYPES[node.kind](**kwargs)


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
    _root: _Leaf | _Container

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
        if isinstance(model, Sequential):
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
    if isinstance(config, Mapping) and config.get("type") == "Sequential":
        raise ValueError("config describes a Sequential; use model_from_config for containers.")
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
