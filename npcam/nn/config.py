"""Architectures as JSON-able configs, and models rebuilt from them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._validate import describe
from . import layers as L
from .layers import BatchNorm2d, Conv2d, Dropout, Flatten, GlobalAvgPool2d, Layer, Linear, MaxPool2d, ReLU
from .sequential import Sequential

__all__ = ["layer_from_config", "model_from_config"]

_LAYER_TYPES: dict[str, type[Layer]] = {
    cls.__name__: cls
    for cls in (Conv2d, Linear, ReLU, MaxPool2d, GlobalAvgPool2d, Flatten, Dropout, BatchNorm2d)
}


def layer_from_config(config: dict[str, Any]) -> Layer:
    """Rebuild a leaf layer from :meth:`Layer.config` (weights are initialised afresh)."""
    if not isinstance(config, dict) or "type" not in config:
        raise TypeError(f"config must be a dict with a 'type' key, got {describe(config)}.")
    kind = config["type"]
    if kind not in _LAYER_TYPES:
        raise ValueError(f"config type must be one of {sorted(_LAYER_TYPES)}, got {kind!r}.")
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in config.items() if k != "type"}
    try:
        return _LAYER_TYPES[kind](**kwargs)
    except TypeError as exc:
        raise ValueError(f"config for {kind} has unexpected fields: {exc}.") from exc


def model_from_config(config: Mapping[str, Any]) -> L.Layer:
    """Rebuild a model (or a leaf layer) from ``config()``; weights are fresh."""
    if isinstance(config, Mapping) and config.get("type") == "Sequential":
        children = config.get("children")
        if not isinstance(children, list):
            raise ValueError("config of a Sequential must have a 'children' list.")
        return Sequential({name: model_from_config(child) for name, child in children})
    return layer_from_config(dict(config))
