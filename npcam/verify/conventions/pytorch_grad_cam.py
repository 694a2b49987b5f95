"""pytorch-grad-cam 1.5.7: ``GradCAM`` with OpenCV's resize and ``scale_cam_image``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..resizers import opencv_resize_linear
from ._common import _maps_pair, _size, _weighted_sum

# pytorch_grad_cam.utils.image.scale_cam_image
PYTORCH_GRAD_CAM_EPS = 1e-7


def _pgc_scale_cam_image(cams: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """``scale_cam_image``: per map ``m - min`` then ``/ (1e-7 + max)`` in the maps' dtype,
    then (with a target size) ``cv2.resize`` of the float32 map; float32 out."""
    cams = cams - cams.min(axis=(1, 2), keepdims=True)
    cams = cams / (PYTORCH_GRAD_CAM_EPS + cams.max(axis=(1, 2), keepdims=True))
    if size is not None:
        cams = opencv_resize_linear(cams.astype(np.float32), size)
    return cams.astype(np.float32)


def _pgc_final(cam: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """pytorch-grad-cam 1.5.7's steps after ``get_cam_image`` for one target layer
    (``base_cam.py``): ``np.maximum(cam, 0)`` (line 171), ``scale_cam_image(cam, (W, H))``
    (min-max with ε 1e-7 in the maps' dtype, then ``cv2.resize`` of the float32 map;
    ``utils/image.py`` 161-176), and ``aggregate_multi_layers`` (177-181): ReLU, the mean
    over the one layer, ``scale_cam_image`` again without resize. (N, H, W) float32."""
    cam = _pgc_scale_cam_image(np.maximum(cam, 0), size)
    return _pgc_scale_cam_image(np.maximum(cam, 0), None)


def pytorch_grad_cam(activations: Any, gradients: Any, input_size: Any = None) -> np.ndarray:
    """pytorch-grad-cam's ``GradCAM(model, [layer])(x, targets)`` (grad-cam 1.5.7) for one
    target layer. Returns (N, H, W) float32 in [0, 1].

    In order (``pytorch_grad_cam/``):

    1. ``grad_cam.py`` ``GradCAM.get_cam_weights``: α = ``np.mean(grads, axis=(2, 3))``;
    2. ``base_cam.py`` ``BaseCAM.get_cam_image``: ``(α[:, :, None, None] * A).sum(axis=1)``;
    3. ``BaseCAM.compute_cam_per_layer`` (line 171): ``np.maximum(cam, 0)``, then
       ``utils/image.py`` ``scale_cam_image(cam, (W, H))`` (lines 161-176): per map
       ``m - min(m)``, then ``/ (1e-7 + max)`` (the ε added to the max *after* the
       subtraction, in the model's dtype), then ``cv2.resize`` of the float32 map with the
       default ``INTER_LINEAR`` (:func:`opencv_resize_linear`);
    4. ``BaseCAM.aggregate_multi_layers`` (lines 177-181): ``np.maximum(., 0)``, the mean
       over the one layer, and ``scale_cam_image`` again (no resize), in float32.

    The score is the raw model output at the class (``ClassifierOutputTarget``, the
    default for ``targets=None`` with the argmax class): the logit for a logit model.

    Against grad-cam 1.5.7 on a float64 torch model (NumPy 2 promotion rules): identical
    with OpenCV's IPP off, ≤ 2.4e-7 apart with IPP on (its default); ≤ 3.6e-6 for a float32
    torch model, whose first normalisation runs in float32
    (``tests/optional/test_pytorch_grad_cam.py``).
    """
    a, g = _maps_pair(activations, gradients)
    size = _size(input_size, True, "pytorch-grad-cam")
    return _pgc_final(_weighted_sum(g.mean(axis=(2, 3)), a), size)
