r"""Grad-CAM (Selvaraju et al. 2017, eqs. 1–2) and its counterfactual map (§ 5).

    α^c_k = (1/Z) Σ_ij ∂y^c/∂A^k_ij        (eq. 1; Z = h·w)
    L^c   = ReLU(Σ_k α^c_k A^k)            (eq. 2)

The counterfactual explanation negates the gradients: weights −α^c, map ReLU(−M^c).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._core import CAMResult, LayerGradients, Target, layer_gradients, map_result

__all__ = ["counterfactual", "grad_cam", "gradcam_weights"]


def gradcam_weights(gradients: np.ndarray) -> np.ndarray:
    r"""Grad-CAM's neuron-importance weights (eq. 1): ``α^c_k = (1/Z) Σ_ij ∂y^c/∂A^k_ij``,
    the global average of the gradients; (..., K, h, w) -> (..., K)."""
    return gradients.mean(axis=(-2, -1))


def _grad_cam_map(lg: LayerGradients, negate: bool) -> CAMResult:
    weights = gradcam_weights(lg.gradients)
    return map_result(-weights if negate else weights, lg.activations, lg.gradients,
                      lg.scores, lg.target, lg.layer)


def grad_cam(
    model: Any, x: Any, target: Target = None, layer: str | None = None, score: str = "logit"
) -> CAMResult:
    r"""Grad-CAM: ``L^c = ReLU(Σ_k α^c_k A^k)`` with ``α^c_k = (1/Z) Σ_ij ∂y^c/∂A^k_ij``.

    Parameters
    ----------
    model : npcam.nn.Model
        Any model implementing the protocol (e.g. :class:`npcam.Sequential`).
    x : array_like, (N, C, H, W)
        The input batch.
    target : None, int, N ints or "all"
        None: the predicted class per image; "all": every class (a class axis after N).
    layer : str or None
        The feature maps A; default: the last 4-D map of more than one position before
        the global pooling / flattening.
    score : {"logit", "softmax", "log_softmax"}
        The scalar y^c; the paper differentiates the logit.

    Returns
    -------
    CAMResult
        ``cam`` L^c (N, h, w), ``raw`` M^c, ``weights`` α^c (N, K), ``activations``,
        ``gradients``, ``scores`` y^c, ``target``, ``layer``.

    Works on any architecture; the map is at the layer's resolution (upsample it with
    :func:`npcam.upsample`).
    """
    lg = layer_gradients(model, x, target, layer, score, allow_all=True, full_trace="layer")
    return _grad_cam_map(lg, negate=False)


def counterfactual(
    model: Any, x: Any, target: Target = None, layer: str | None = None, score: str = "logit"
) -> CAMResult:
    r"""The counterfactual explanation (§ 5): Grad-CAM with negated gradients.

    ``weights = −α^c``, ``raw = −M^c``, ``cam = ReLU(−M^c)``: the regions whose removal
    would raise y^c. ``gradients`` holds the un-negated ∂y^c/∂A, so that
    ``grad_cam(...).cam − counterfactual(...).cam == grad_cam(...).raw``. Arguments as
    :func:`grad_cam`.
    """
    lg = layer_gradients(model, x, target, layer, score, allow_all=True, full_trace="layer")
    return _grad_cam_map(lg, negate=True)
