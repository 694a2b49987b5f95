"""HiResCAM's conventions: npcam's own map and pytorch-grad-cam 1.5.7's ``HiResCAM``.

"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ...methods._core import Target, layer_gradients
from ...methods.hires_cam import hires_cam
from ._common import _input_size, _npcam_final
from .pytorch_grad_cam import _pgc_final

__all__ = ["CONVENTIONS", "npcam_hires_cam", "pytorch_grad_cam_hires_cam"]


# ------------------------------------------------------------------------ HiResCAM
def npcam_hires_cam(
    model: Any, x: Any, target: Target, layer: str | None, input_size: Any, score: str | None
) -> np.ndarray:
    """npcam's HiResCAM, ``ReLU(Σ_k g ⊙ A)`` (:func:`npcam.hires_cam`), upsampled with
    half-pixel centres to ``input_size`` (default: the size of ``x``). (N, H, W) float64,
    not normalised."""
    r = hires_cam(model, x, target, layer, score="logit" if score is None else score)
    return _npcam_final(r.cam, x, input_size)


def pytorch_grad_cam_hires_cam(
    model: Any, x: Any, target: Target, layer: str | None, input_size: Any, score: str | None
) -> np.ndarray:
    """What pytorch-grad-cam 1.5.7's ``HiResCAM(model, [layer])(x, targets)`` returns:
    (N, H, W) float32 in [0, 1].

    * ``hirescam.py`` 23, 30: ``(grads * activations).sum(axis=1)`` — the paper's map,
      no departure (measured against Σ_k g ⊙ A: 0.0 on every SmallCNN layer, cam-family.md
      § 3); ``eigen_smooth=True`` (a PCA of g ⊙ A, with a printed warning) is not
      reproduced;
    * then the common ReLU, ``scale_cam_image`` with OpenCV's bilinear resize to
      ``input_size`` (default: the size of ``x``) and ``aggregate_multi_layers``
      (:func:`_pgc_final`).

    The score is ``ClassifierOutputTarget``'s, the raw model output: the logit
    (``score=None``).

    What the library returns vs the paper: the same map, min-max normalised and resized;
    the only difference is the ε = 1e-7 of the normalisation (relative 1e-7 of the
    map's range).
    """
    lg = layer_gradients(model, x, target, layer, "logit" if score is None else score,
                         allow_all=False, full_trace="layer")
    cam = (lg.gradients * lg.activations).sum(axis=1)
    return _pgc_final(cam, _input_size(x, input_size, "pytorch-grad-cam"))


CONVENTIONS: dict[str, Callable[..., np.ndarray]] = {
    "npcam": npcam_hires_cam,
    "pytorch-grad-cam": pytorch_grad_cam_hires_cam,
}
