"""npcam's own final maps, as the conventions' reference."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...image import upsample
from ._common import _guided_array, _maps_pair, _size, _weighted_sum


# ---------------------------------------------------------------------- npcam itself
def npcam_grad_cam(activations: Any, gradients: Any, input_size: Any = None) -> np.ndarray:
    """npcam's own convention: ``ReLU(Σ_k α_k A^k)`` with α the spatial mean of the
    gradients, upsampled bilinearly with half-pixel centres (``npcam.image.upsample``,
    = ``F.interpolate(..., "bilinear", align_corners=False)``) to ``input_size``; no
    normalisation. Returns (N, H, W) float64."""
    a, g = _maps_pair(activations, gradients)
    size = _size(input_size, True, "npcam")
    cam = np.maximum(_weighted_sum(g.mean(axis=(2, 3)), a), 0.0)
    return upsample(cam, size, mode="bilinear")


def npcam_guided_grad_cam(guided: Any, activations: Any, gradients: Any) -> np.ndarray:
    """npcam's Guided Grad-CAM: the npcam map upsampled (bilinear, half-pixel) to the
    guided-backprop size, times the guided-backprop gradient, broadcast over the input
    channels (as :func:`npcam.guided_grad_cam`). Returns (N, C, H, W) float64."""
    a, g = _maps_pair(activations, gradients)
    gb = _guided_array(guided, a.shape[0], np.float64)
    return npcam_grad_cam(a, g, gb.shape[2:])[:, None] * gb
