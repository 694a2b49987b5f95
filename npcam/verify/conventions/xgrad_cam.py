"""XGrad-CAM's conventions: npcam's own map, pytorch-grad-cam 1.5.7's ``XGradCAM``
(ε = 1e-7 in the weights) and torchcam 0.5.0's ``XGradCAM`` (ε = 1e-8)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ...methods._core import Target, layer_gradients
from ...methods.xgrad_cam import xgrad_cam
from ._common import _check_bool, _input_size, _npcam_final, _weighted_sum
from .pytorch_grad_cam import _pgc_final
from .torchcam import _torchcam_final, _torchcam_no_resize

__all__ = [
    "CONVENTIONS",
    "PYTORCH_GRAD_CAM_XGRAD_EPS",
    "TORCHCAM_XGRAD_EPS",
    "npcam_xgrad_cam",
    "pytorch_grad_cam_xgrad_cam",
    "torchcam_xgrad_cam",
]

#: pytorch_grad_cam/xgrad_cam.py line 29: ``eps = 1e-7``, added to Σ A.
PYTORCH_GRAD_CAM_XGRAD_EPS = 1e-7
#: torchcam/methods/gradient.py ``XGradCAM._get_weights``: ``eps: float = 1e-8``.
TORCHCAM_XGRAD_EPS = 1e-8


def npcam_xgrad_cam(
    model: Any, x: Any, target: Target, layer: str | None, input_size: Any, score: str | None
) -> np.ndarray:
    """npcam's XGrad-CAM (:func:`npcam.xgrad_cam`: the paper's weights, no ε, 0 for a
    channel with Σ A = 0), ``cam`` upsampled with half-pixel centres to ``input_size``
    (default: the size of ``x``). (N, H, W) float64, not normalised. Warns as
    :func:`npcam.xgrad_cam` (``NumericalWarning``) when a channel's activations cancel."""
    r = xgrad_cam(model, x, target, layer, score="logit" if score is None else score)
    return _npcam_final(r.cam, x, input_size)


def pytorch_grad_cam_xgrad_cam(
    model: Any, x: Any, target: Target, layer: str | None, input_size: Any, score: str | None
) -> np.ndarray:
    """What pytorch-grad-cam 1.5.7's ``XGradCAM(model, [layer])(x, targets)`` returns:
    (N, H, W) float32 in [0, 1].

    * ``xgrad_cam.py`` 24-32, ``get_cam_weights``: ``S = Σ_ij A``, then
      ``w = (grads * activations / (S + 1e-7)).sum(axis=(2, 3))`` — the ε inside the sum,
      which is the same as dividing once;
    * ``base_cam.py`` 81, 91: ``(w[:, :, None, None] * A).sum(axis=1)``;
    * then the common ReLU, ``scale_cam_image`` with OpenCV's bilinear resize to
      ``input_size`` (default: the size of ``x``) and ``aggregate_multi_layers``.

    The score is ``ClassifierOutputTarget``'s, the raw output: the logit (``score=None``).

    What the library returns vs the paper (α = Σ A g / Σ A, no ε): the ε = 1e-7 makes a
    dead channel's weight 0 (0/1e-7; npcam's 0/0 rule gives the same) and moves every
    other weight by the factor S / (S + 1e-7). Measured on the float64 map Σ_k w_k A^k
    (max|lib − paper| / max|paper|, the models of tests/crosscheck/_cam_family.py):
    2.5e-6 on SmallCNN's signed features.5, 6e-8 on features.3, 9e-9 on features.6,
    4e-9 / 2e-9 on resnet18 layer4 / layer3 — mostly below the float32 resolution of
    the returned map (≤ 3.6e-7 apart after it). It grows without bound on a signed layer
    where Σ A → 0, where the paper's weight itself blows up; no warning is given (npcam's
    convention warns).
    """
    lg = layer_gradients(model, x, target, layer, "logit" if score is None else score,
                         allow_all=False, full_trace="layer")
    a, g = lg.activations, lg.gradients
    s = a.sum(axis=(2, 3))[:, :, None, None]
    w = (g * a / (s + PYTORCH_GRAD_CAM_XGRAD_EPS)).sum(axis=(2, 3))
    return _pgc_final(_weighted_sum(w, a), _input_size(x, input_size, "pytorch-grad-cam"))


def torchcam_xgrad_cam(
    model: Any,
    x: Any,
    target: Target,
    layer: str | None,
    input_size: Any,
    score: str | None,
    *,
    normalized: bool = True,
) -> np.ndarray:
    """What torchcam 0.5.0's ``XGradCAM(model, layer)(class_idx, scores)[0]`` returns:
    (N, h, w) at the layer's resolution (torchcam does not resize; ``input_size`` must be
    None), in the model's dtype (float64 here).

    * ``gradient.py`` ``XGradCAM._get_weights`` (404-407):
      ``(grad * act).flatten(2).sum(-1) / act.flatten(2).sum(-1).add(1e-8)``;
    * ``core.py`` ``compute_cams`` (290-303): ``torch.nansum(w A, dim=1)``, ``F.relu``, then
      with ``normalized=True`` (default) ``_normalize``: ``m -= min``; ``m /= max + 1e-8``.

    The score is the ``scores`` the user passes, the model output: the logit
    (``score=None``). torchcam's activations and gradients are wrong when the layer's
    output is modified in place later (``npcam.conventions.cam`` warns; not reproduced).

    What the library returns vs the paper: as pytorch-grad-cam's, with an ε ten times
    smaller (1e-8) and no float32 rounding: measured 2.5e-7 relative on the float64 map
    on SmallCNN's signed features.5, ≤ 6e-9 elsewhere on SmallCNN, 4e-10 on resnet18
    layer4; ≤ 3.1e-8 after the normalisation.
    """
    norm = _check_bool("normalized", normalized)
    _torchcam_no_resize(input_size)
    lg = layer_gradients(model, x, target, layer, "logit" if score is None else score,
                         allow_all=False, full_trace="layer")
    a, g = lg.activations, lg.gradients
    n, k = a.shape[:2]
    w = (g * a).reshape(n, k, -1).sum(-1) / (a.reshape(n, k, -1).sum(-1) + TORCHCAM_XGRAD_EPS)
    return _torchcam_final(_weighted_sum(w, a), norm)


CONVENTIONS: dict[str, Callable[..., np.ndarray]] = {
    "npcam": npcam_xgrad_cam,
    "pytorch-grad-cam": pytorch_grad_cam_xgrad_cam,
    "torchcam": torchcam_xgrad_cam,
}
