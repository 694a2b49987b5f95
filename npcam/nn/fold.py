"""Folding eval-mode BatchNorm into the preceding convolution."""

from __future__ import annotations

import copy

import numpy as np

from .._validate import describe
from . import layers
from .sequential import Sequential

__all__ = ["fold_batchnorm"]


def fold_batchnorm(model: Sequential) -> Sequential:
    r"""An equivalent model without eval-mode ``BatchNorm2d`` layers that follow a conv.

    A conv then BN computes ``γ (W⋆x + b − μ)/σ + β`` with ``σ = sqrt(var + ε)``: the same
    as one conv with ``W' = W · γ/σ`` (per output channel) and ``b' = (b − μ)·γ/σ + β``.
    Layer names are kept (the BN's name disappears; the conv's name now means the
    conv+BN output), so a ``layer`` name that meant a ReLU or a container still means the
    same feature maps. A BatchNorm2d in training mode, or not right after a Conv2d in the
    same container, is kept as it is.
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be an npcam.Sequential, got {describe(model)}.")
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
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=True
    )
    scale = bn.weight / np.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else np.zeros(conv.out_channels)
    folded.weight = conv.weight * scale[:, None, None, None]
    folded.bias = (bias - bn.running_mean) * scale + bn.bias
    return folded

