"""Folding eval-mode BatchNorm into the preceding convolution."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from .._validate import describe
from . import layers
from .sequential import Sequential

__all__ = ["fold_batchnorm"]


def fold_batchnorm(model: Any) -> Any:
    r"""An equivalent model without eval-mode ``BatchNorm2d`` layers that follow a conv.

    A conv then BN computes ``γ (W⋆x + b − μ)/σ + β`` with ``σ = sqrt(var + ε)``: the same
    as one conv with ``W' = W · γ/σ`` (per output channel) and ``b' = (b − μ)·γ/σ + β``.
    Layer names are kept (the BN's name disappears; the conv's name now means the
    conv+BN output), so a ``layer`` name that meant a ReLU or a container still means the
    same feature maps. A BatchNorm2d in training mode, or not right after a Conv2d in the
    same container, is kept as it is.

    On a :class:`~npcam.Graph` (never folded unless asked: imported graphs keep their BN
    nodes), a BatchNorm2d node in eval mode whose input is a Conv2d node read by nothing
    else is folded into it; the BN node's name and aliases then denote the folded conv's
    output, and the conv keeps its state_dict keys (a conv without bias gains
    ``<conv>.bias``). Other BN nodes (DenseNet's pre-activation BNs) are kept.
    """
    from .graph import Graph

    if isinstance(model, Graph):
        return _fold_graph(model)
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be an npcam.Sequential or npcam.Graph, got {describe(model)}.")
    items = list(model.children.items())
    out: dict[str, layers.Layer | Sequential] = {}
    i = 0
    while i < len(items):
        name, layer = items[i]
        nxt = items[i + 1][1] if i + 1 < len(items) else None
        if isinstance(layer, Sequential):
            out[name] = fold_batchnorm(layer)
        elif isinstance(layer, layers.Conv2d) and isinstance(nxt, layers.BatchNorm2d) and not nxt.training:
            out[name] = _fold(layer, nxt)
            i += 1
        else:
            out[name] = copy.deepcopy(layer)
        i += 1
    return Sequential(out)


def _fold(conv: layers.Conv2d, bn: layers.BatchNorm2d) -> layers.Conv2d:
    folded = layers.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=True,
        groups=conv.groups,
    )
    scale = bn.weight / np.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else np.zeros(conv.out_channels)
    folded.weight = conv.weight * scale[:, None, None, None]
    folded.bias = (bias - bn.running_mean) * scale + bn.bias
    return folded



def _fold_graph(graph: Any) -> Any:
    from .graph import Node

    consumers = graph.consumers()
    by_name = {n.name: n for n in graph.nodes}
    shared: dict[int, int] = {}
    for n in graph.nodes:
        shared[id(n.layer)] = shared.get(id(n.layer), 0) + 1
    folded: dict[str, Node] = {}  # BN node name -> the folded conv node standing in for it
    skip: set[str] = set()
    for n in graph.nodes:
        if not (isinstance(n.layer, layers.BatchNorm2d) and not n.layer.training and len(n.inputs) == 1):
            continue
        conv = by_name.get(n.inputs[0])
        if (
            conv is None
            or not isinstance(conv.layer, layers.Conv2d)
            or consumers.get(conv.name, []) != [n.name]
            or shared[id(conv.layer)] > 1
            or conv.name in folded
        ):
            continue
        keys = dict(conv.keys())
        prefix = keys["weight"].rsplit(".", 1)[0] if "." in keys["weight"] else conv.name
        keys.setdefault("bias", f"{prefix}.bias")
        new = Node(n.name, _fold(conv.layer, n.layer), conv.inputs, conv.aliases + (conv.name,) + n.aliases,
                   conv.from_module, conv.inplace, keys)
        folded[n.name] = new
        skip.add(conv.name)
    nodes = []
    for n in graph.nodes:
        if n.name in skip:
            continue
        nodes.append(folded.get(n.name) or Node(n.name, copy.deepcopy(n.layer), n.inputs, n.aliases,
                                               n.from_module, n.inplace, dict(n.state_keys)))
    # layers shared between nodes stay shared in the copy
    first: dict[int, Any] = {}
    out = []
    for old, new in zip([m for m in graph.nodes if m.name not in skip], nodes, strict=True):
        if old.name in folded:
            out.append(new)
            continue
        layer = first.setdefault(id(old.layer), new.layer)
        out.append(Node(new.name, layer, new.inputs, new.aliases, new.from_module, new.inplace,
                        dict(new.state_keys)))
    return graph.replace(out)
