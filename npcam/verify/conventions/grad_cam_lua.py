"""ramprs/grad-cam, the paper's Torch7 release: Grad-CAM and guided Grad-CAM."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..resizers import torch7_scale_bilinear
from ._common import _guided_array, _maps_pair, _size, _weighted_sum


def _lua_map(a: np.ndarray, g: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    weights = g.sum(axis=(2, 3))  # Σ_ij, not the mean: Z·α
    m = _weighted_sum(weights, a)[:, None]
    m = m * (m > 0)  # map:cmul(torch.gt(map, 0)); negative entries become -0.0
    return torch7_scale_bilinear(m.astype(np.float32), size)


def grad_cam_lua(activations: Any, gradients: Any, input_size: Any = None) -> np.ndarray:
    """The paper's original Torch7 release, ramprs/grad-cam: ``misc/utils.lua``
    ``utils.grad_cam`` (commit 08fd35fa17c37c696dd9cb5719a15485e43c467d) as called by
    ``classification.lua`` (commit 09558c92897d4f6593a28bf9dc8f973f8a2889c8).
    Returns (N, 1, H, W) float32: the script's (1, H, W) ``gcam`` per image, stacked.

    * the score is the logit: the script removes the network's final softmax module
      (``cnn:remove()``) and seeds the backward pass with a one-hot ``doutput``;
    * "Global average pool gradients" is in fact a **sum**:
      ``torch.sum(gradients:view(K, -1), 2)``, so the weights are ``Z·α`` and the map is
      ``Z`` times the paper's (Z = h·w);
    * ``torch.sum(cmul(A, weights), 1)`` keeps a singleton channel axis; the ReLU is
      ``map:cmul(torch.gt(map, 0))``; all of it in double (the script's default tensor
      type);
    * ``image.scale(gcam:float(), W, H)``: cast to float32, then Torch7's bilinear scale
      with corners aligned (:func:`torch7_scale_bilinear`);
    * no normalisation: min-max scaling happens only for display (``utils.to_heatmap`` and
      ``image.toDisplayTensor``).
    """
    a, g = _maps_pair(activations, gradients)
    size = _size(input_size, True, "grad-cam-lua")
    return _lua_map(a, g, size)


def grad_cam_lua_guided(guided: Any, activations: Any, gradients: Any) -> np.ndarray:
    """Guided Grad-CAM of ramprs/grad-cam ``classification.lua``:
    ``gb_viz:float():cmul(gcam:expandAs(gb_viz))`` — the guided-backprop gradient cast to
    float32 times the float32 map of :func:`grad_cam_lua` resized to the input size,
    broadcast over the channels. Returns (N, C, H, W) float32.

    Guided backprop there is ``misc/GuidedBackpropReLU.lua`` (``g·[x > 0]·[g > 0]``, the
    same rule as npcam's). The script also reverses the channel order (BGR -> RGB) of the
    gradient because its Caffe VGG takes BGR input; that is preprocessing, not part of
    the method, and is not done here (apply ``[:, ::-1]`` for a BGR model).
    """
    a, g = _maps_pair(activations, gradients)
    gb = _guided_array(guided, a.shape[0], np.float64).astype(np.float32)
    return gb * _lua_map(a, g, gb.shape[2:])
