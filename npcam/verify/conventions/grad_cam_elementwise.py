"""Element-wise Grad-CAM's conventions: npcam's own map and pytorch-grad-cam 1.5.7's
``GradCAMElementWise`` (the only library that has the method)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ...methods._core import Target, layer_gradients
from ...methods.grad_cam_elementwise import grad_cam_elementwise
from ._common import _input_size, _npcam_final
from .pytorch_grad_cam import _pgc_final

__all__ = ["CONVENTIONS", "npcam_grad_cam_elementwise", "pytorch_grad_cam_grad_cam_elementwise"]


def npcam_grad_cam_elementwise(
    model: Any, x: Any, target: Target, layer: str | None, input_size: Any, score: str | None
) -> np.ndarray:
    """npcam's element-wise Grad-CAM, ``Σ_k ReLU(g ⊙ A)`` (:func:`npcam.grad_cam_elementwise`),
    upsampled with half-pixel centres to ``input_size`` (default: the size of ``x``).
    (N, H, W) float64, not normalised."""
    r = grad_cam_elementwise(model, x, target, layer, score="logit" if score is None else score)
    return _npcam_final(r.cam, x, input_size)


def pytorch_grad_cam_grad_cam_elementwise(
    model: Any, x: Any, target: Target, layer: str | None, input_size: Any, score: str | None
) -> np.ndarray:
    """What pytorch-grad-cam 1.5.7's ``GradCAMElementWise(model, [layer])(x, targets)``
    returns: (N, H, W) float32 in [0, 1].

    * ``grad_cam_elementwise.py`` 23, 28: ``np.maximum(grads * activations, 0).sum(axis=1)``
      (measured against the formula: 0.0 at every layer, cam-family.md § 4);
      ``eigen_smooth=True`` is not reproduced;
    * then the common ReLU (a no-op: the map is ≥ 0), ``scale_cam_image`` with OpenCV's
      bilinear resize to ``input_size`` (default: the size of ``x``) and
      ``aggregate_multi_layers``.

    The score is the raw model output (``ClassifierOutputTarget``): the logit for
    ``score=None``.

    What the library returns vs the formula: the same map, min-max normalised (ε 1e-7)
    and resized.
    """
    lg = layer_gradients(model, x, target, layer, "logit" if score is None else score,
                         allow_all=False, full_trace="layer")
    cam = np.maximum(lg.gradients * lg.activations, 0).sum(axis=1)
    return _pgc_final(cam, _input_size(x, input_size, "pytorch-grad-cam"))


CONVENTIONS: dict[str, Callable[..., np.ndarray]] = {
    "npcam": npcam_grad_cam_elementwise,
    "pytorch-grad-cam": pytorch_grad_cam_grad_cam_elementwise,
}
