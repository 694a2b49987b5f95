"""captum 0.9.0: ``LayerGradCam`` (+ ``LayerAttribution.interpolate``) and ``GuidedGradCam``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...image import upsample
from ._common import _check_bool, _guided_array, _maps_pair, _size

# -------------------------------------------------------------------------- captum
_CAPTUM_MODES = ("nearest", "bilinear")


def _captum_interpolate(attr: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """``LayerAttribution.interpolate(attr, size, mode)`` = ``F.interpolate(attr, size,
    mode=mode)`` on (N, C, h, w): every channel resized alike (align_corners unset)."""
    n, c, h, w = attr.shape
    out = upsample(attr.reshape(n * c, h, w), size, mode=mode)
    return out.reshape(n, c, *size).astype(attr.dtype, copy=False)


def _check_captum_mode(interpolate_mode: Any, allow_none: bool) -> str | None:
    if interpolate_mode is None and allow_none:
        return None
    if interpolate_mode not in _CAPTUM_MODES:
        allowed = ("None", *_CAPTUM_MODES) if allow_none else _CAPTUM_MODES
        raise ValueError(
            f"interpolate_mode must be one of {', '.join(allowed)} (the modes npcam "
            f"reproduces exactly), got {interpolate_mode!r}."
        )
    return interpolate_mode


def captum_layer_grad_cam(
    activations: Any,
    gradients: Any,
    input_size: Any = None,
    *,
    relu_attributions: bool = False,
    attr_dim_summation: bool = True,
    interpolate_mode: str | None = None,
) -> np.ndarray:
    """captum's ``LayerGradCam.attribute`` (captum 0.9.0,
    ``captum/attr/_core/layer/grad_cam.py``, lines 212-238), optionally followed by
    ``LayerAttribution.interpolate`` (``captum/attr/_utils/attribution.py``, line 436).

    * α: the mean of the gradients over the spatial axes (``torch.mean(..., keepdim=True)``);
    * the map ``Σ_k α_k A^k`` is summed over dim 1 with ``keepdim=True``: shape (N, 1, h, w)
      (with ``attr_dim_summation=False`` the per-channel ``α_k A^k``, (N, K, h, w));
    * **signed** by default: the ReLU is applied only with ``relu_attributions=True``;
    * no resizing and no normalisation. ``interpolate_mode`` (``"nearest"`` — captum's
      default for ``interpolate`` — or ``"bilinear"``) additionally applies
      ``LayerAttribution.interpolate(attr, input_size, interpolate_mode)``, which is
      ``F.interpolate`` with ``align_corners`` unset (half-pixel for bilinear, torch's
      legacy index rule for nearest).

    The dtype is the model's (here: that of the arrays given).
    """
    a, g = _maps_pair(activations, gradients)
    relu = _check_bool("relu_attributions", relu_attributions)
    summation = _check_bool("attr_dim_summation", attr_dim_summation)
    mode = _check_captum_mode(interpolate_mode, allow_none=True)
    size = _size(input_size, mode is not None, "captum", " without interpolate_mode")
    scaled = g.mean(axis=(2, 3), keepdims=True) * a
    if summation:
        scaled = scaled.sum(axis=1, keepdims=True)
    if relu:
        scaled = np.maximum(scaled, 0)
    if mode is not None:
        scaled = _captum_interpolate(scaled, size, mode)
    return scaled


def captum_guided_grad_cam(
    guided: Any, activations: Any, gradients: Any, *, interpolate_mode: str = "nearest"
) -> np.ndarray:
    """captum's ``GuidedGradCam.attribute`` (captum 0.9.0,
    ``captum/attr/_core/guided_grad_cam.py``, lines 71-229): ``LayerGradCam`` with
    ``relu_attributions=True`` (line 191), (N, 1, h, w), resized to the input's spatial
    size by ``LayerAttribution.interpolate`` with ``interpolate_mode`` (default
    ``"nearest"``, line 76), times the guided-backprop attribution (N, C, H, W) — the
    single map broadcast over the C input channels. Returns (N, C, H, W).

    captum's guided backpropagation (``guided_backprop_deconvnet.py``,
    ``ModifiedReluGradientAttribution._backward_hook``) replaces each ``nn.ReLU``'s input
    gradient ``g·[x > 0]`` by its ReLU: ``g·[x > 0]·[g > 0]``, npcam's guided rule.
    """
    a, g = _maps_pair(activations, gradients)
    mode = _check_captum_mode(interpolate_mode, allow_none=False)
    gb = _guided_array(guided, a.shape[0], a.dtype.type)
    cam = captum_layer_grad_cam(a, g, gb.shape[2:], relu_attributions=True, interpolate_mode=mode)
    return gb * cam
