"""torchcam 0.5.0: ``GradCAM`` (ε = 1e-8 since 0.4.0)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import _check_bool, _maps_pair, _size, _weighted_sum

# torchcam >= 0.4.0 (_CAM._normalize); releases up to 0.3.2 divide by the bare max.
TORCHCAM_EPS = 1e-8


def torchcam_gradcam(
    activations: Any, gradients: Any, input_size: Any = None, *, normalized: bool = True
) -> np.ndarray:
    """torchcam's ``GradCAM`` (torchcam 0.5.0, ``torchcam/methods/``) for one target layer:
    the first (only) tensor of the list ``cam_extractor(class_idx, scores)`` returns,
    (N, h, w) at the layer's resolution — torchcam does not resize.

    * ``gradient.py`` ``GradCAM._get_weights`` (line 129): α = ``grad.flatten(2).mean(-1)``;
    * ``core.py`` ``_CAM.compute_cams`` (lines 290-303): ``torch.nansum(α A, dim=1)``, ReLU
      (``_GradCAM`` sets ``self._relu = True``, ``gradient.py`` line 40), then with
      ``normalized=True`` (the default) ``_CAM._normalize`` (lines 193-200):
      ``m -= min``; ``m /= max + 1e-8`` (the max of the already shifted map). The ε exists
      since torchcam 0.4.0; releases up to 0.3.2 divide by the bare max.

    The score is whatever ``scores`` the user passes — the model output, i.e. the logit.
    The dtype is the model's (here: that of the arrays given). ``input_size`` must be None.
    """
    a, g = _maps_pair(activations, gradients)
    norm = _check_bool("normalized", normalized)
    _size(input_size, False, "torchcam", " (torchcam returns maps at the layer's resolution)")
    n, k = a.shape[:2]
    return _torchcam_final(_weighted_sum(g.reshape(n, k, -1).mean(axis=-1), a), norm)


def _torchcam_final(cam: np.ndarray, normalized: bool) -> np.ndarray:
    """torchcam 0.5.0's steps after the weighted sum (``core.py`` 290-303): ``F.relu``
    (``_relu = True`` for every gradient method and Score-CAM), then with ``normalized``
    ``_normalize`` (191-201): ``m -= min``, ``m /= max + 1e-8``. No resizing."""
    cam = np.maximum(cam, 0)
    if normalized:
        cam = cam - cam.min(axis=(1, 2), keepdims=True)
        cam = cam / (cam.max(axis=(1, 2), keepdims=True) + TORCHCAM_EPS)
    return cam


def _torchcam_no_resize(input_size: Any) -> None:
    """torchcam does not resize: its maps stay at the layer's resolution."""
    _size(input_size, False, "torchcam", " (torchcam returns maps at the layer's resolution)")
