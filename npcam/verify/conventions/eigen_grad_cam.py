r"""EigenGrad-CAM as npcam and as pytorch-grad-cam 1.5.7 compute it.

``npcam.conventions.cam("eigen-grad-cam", model, x, target, layer, convention=...)``:

==================== ============================================================ =========
convention           what it computes                                              returns
==================== ============================================================ =========
``npcam``            :func:`npcam.eigen_grad_cam` (uncentred, sign "correlation"), (N, H, W)
                     ``cam`` upsampled (half-pixel bilinear)                       float64
``pytorch-grad-cam`` ``EigenGradCAM``: the centred SVD of g ⊙ A, LAPACK's sign,     (N, H, W)
                     float32, then ReLU and ``scale_cam_image``                    float32
==================== ============================================================ =========
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...methods._core import Target, layer_gradients
from ...methods.eigen_grad_cam import eigen_grad_cam
from ._common import _input_size, _npcam_final
from .eigen_cam import pgc_2d_projection
from .pytorch_grad_cam import _pgc_final

__all__ = ["CONVENTIONS", "npcam_eigen_grad_cam", "pytorch_grad_cam_eigen_grad_cam"]


def npcam_eigen_grad_cam(
    model: Any, x: Any, target: Target, layer: str | None, input_size: Any, score: str | None,
    *, center: bool = False, sign: str = "correlation",
) -> np.ndarray:
    """npcam's own EigenGrad-CAM map: ``npcam.eigen_grad_cam(...).cam`` (by default the
    uncentred projection of g ⊙ A, signed to correlate positively with HiResCAM's map)
    upsampled with half-pixel bilinear interpolation to ``input_size`` (default: x's); no
    normalisation. ``score=None`` means ``"logit"``. Returns (N, H, W) float64."""
    r = eigen_grad_cam(model, x, target, layer, score="logit" if score is None else score,
                       center=center, sign=sign)
    return _npcam_final(r.cam, x, input_size)


def pytorch_grad_cam_eigen_grad_cam(
    model: Any, x: Any, target: Target, layer: str | None, input_size: Any, score: str | None,
) -> np.ndarray:
    r"""pytorch-grad-cam 1.5.7's ``EigenGradCAM(model, [layer])(x, targets)`` with
    ``ClassifierOutputTarget`` (``score=None``: the logit): ``eigen_grad_cam.py`` 21,
    ``get_2d_projection(grads * activations)`` (the float64 product, then
    :func:`~npcam.verify.conventions.eigen_cam.pgc_2d_projection`), then ReLU and
    ``scale_cam_image`` twice. Returns (N, H, W) float32 in [0, 1].

    **What the library returns vs what npcam computes** (there is no paper): the
    projection is centred and keeps LAPACK's sign (not portable; see
    :mod:`npcam.verify.conventions.eigen_cam`). Its sign relative to the class-discriminative
    HiResCAM map Σ_k g ⊙ A was negative in 4 of 6 distinct SmallCNN maps (correlations
    −0.69, −0.66, −0.58, −0.98; cam-family.md § 9) and in 4 of 10 maps of the test suite's
    SmallCNN/SignedCNN (−0.53 each), so after the ReLU those maps show the regions that
    *lower* the score. npcam's default fixes the sign by that correlation.
    float32: ~4e-8 rel.
    """
    lg = layer_gradients(model, x, target, layer, "logit" if score is None else score,
                         allow_all=False, full_trace="layer")
    projection = pgc_2d_projection(lg.gradients * lg.activations)
    return _pgc_final(projection, _input_size(x, input_size, "pytorch-grad-cam"))


#: convention name -> function, for ``npcam.conventions.cam("eigen-grad-cam", ...)``
CONVENTIONS = {
    "npcam": npcam_eigen_grad_cam,
    "pytorch-grad-cam": pytorch_grad_cam_eigen_grad_cam,
}
