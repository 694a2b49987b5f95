"""tf-keras-vis 0.8.7: ``Gradcam`` (scipy's zoom; ε = tf.keras.backend.epsilon())."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.ndimage import zoom

from ._common import _check_bool, _maps_pair, _size

# tf.keras.backend.epsilon() by default.
TF_KERAS_VIS_EPS = 1e-7


def tf_keras_vis_gradcam(
    activations: Any,
    gradients: Any,
    input_size: Any = None,
    *,
    expand_cam: bool = True,
    normalize_cam: bool = True,
) -> np.ndarray:
    """tf-keras-vis's ``Gradcam.__call__`` (tf-keras-vis 0.8.7, ``tf_keras_vis/gradcam.py``)
    with its defaults. Returns (N, H, W) (or (N, h, w) with ``expand_cam=False``).

    * ``Gradcam._calculate_cam`` (lines 121-128): α = ``K.mean`` of the gradients over the
      spatial axes, ``np.sum(A * α, axis=channels)``, then ``activation_modifier``, by
      default ``K.relu``;
    * ``expand_cam=True`` (lines 113-114): **resize first**, with
      ``scipy.ndimage.zoom(cam, factors, order=1)`` and factors ``float(H) / h`` from
      ``utils.zoom_factor`` — order-1 spline with ``grid_mode=False``, i.e. bilinear with
      corners aligned (= ``F.interpolate(..., align_corners=True)``);
    * ``normalize_cam=True`` (line 116): ``utils.normalize`` (``utils/__init__.py``, lines
      73-86), per map ``(m - min) / (max - min + K.epsilon())`` with ``K.epsilon()`` =
      1e-7 unless changed with ``keras.backend.set_epsilon``. With ``expand_cam=False``
      the map is normalised at the layer's resolution (lines 106-110).

    The score is the model's output at the class (``CategoricalScore``): the softmax
    probability for a classifier that ends in softmax (npcam's ``score="softmax"``), the
    logit after tf-keras-vis's ``ReplaceToLinear`` model modifier. The dtype is the
    model's (here: that of the arrays given).
    """
    a, g = _maps_pair(activations, gradients)
    expand = _check_bool("expand_cam", expand_cam)
    norm = _check_bool("normalize_cam", normalize_cam)
    size = _size(input_size, expand, "tf-keras-vis", " with expand_cam=False")
    cam = np.maximum(np.sum(a * g.mean(axis=(2, 3), keepdims=True), axis=1), 0)
    if expand:
        n, h, w = cam.shape
        cam = zoom(cam, (1.0, size[0] / h, size[1] / w), order=1)
    if norm:
        hi = cam.max(axis=(1, 2), keepdims=True)
        lo = cam.min(axis=(1, 2), keepdims=True)
        cam = (cam - lo) / (hi - lo + TF_KERAS_VIS_EPS)
    return cam
