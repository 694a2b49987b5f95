r"""Element-wise Grad-CAM (Pillai & Pirsiavash, *Explainable Models with Consistent
Interpretations*, AAAI 2021, arXiv 2103.15823; pytorch-grad-cam's ``GradCAMElementWise``,
its PR #259).

HiResCAM's per-position product, with each channel's contribution clipped at zero before
the channels are summed::

    M^c_ij = Σ_k ReLU(∂y^c/∂A^k_ij · A^k_ij)   (``raw``, ≥ 0)
    L^c    = ReLU(M^c) = M^c                    (``cam``)

Exact properties (cam-family.md § 4): ``M ≥ HiResCAM's map`` pointwise, with equality
at every position where all the products g^k_ij A^k_ij are ≥ 0; ``M = 0`` where every
g ≤ 0 and every A ≥ 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._core import CAMResult, Target, elementwise_result, layer_gradients

__all__ = ["grad_cam_elementwise"]


def grad_cam_elementwise(
    model: Any,
    x: Any,
    target: Target = None,
    layer: str | None = None,
    *,
    score: str = "logit",
) -> CAMResult:
    r"""Element-wise Grad-CAM: ``L^c = Σ_k ReLU(∂y^c/∂A^k ⊙ A^k)``.

    The formula pytorch-grad-cam 1.5.7 implements with a citation of Pillai &
    Pirsiavash 2021 (``grad_cam_elementwise.py``: ``np.maximum(grads * activations,
    0).sum(axis=1)``, then its common ReLU, a no-op here; convention
    ``"pytorch-grad-cam"`` of ``npcam.conventions.cam("grad-cam-elementwise", ...)``).
    The cited paper's text was not checked: the formula is the library's, which npcam's
    default reproduces with no departure. torchcam and tf-keras-vis have no such method.

    Parameters
    ----------
    model : npcam.nn.Model
        Any model implementing the protocol (:class:`npcam.Sequential`,
        :class:`npcam.Graph`).
    x : array_like, (N, C, H, W)
        The input batch.
    target : None, int, N ints or "all"
        None: the predicted class per image; "all": every class (a class axis after N).
    layer : str or None
        The feature maps A; default as :func:`npcam.grad_cam`.
    score : {"logit", "softmax", "log_softmax"}
        The scalar y^c; "logit" (the class score before softmax, as pytorch-grad-cam's
        ``ClassifierOutputTarget``) by default.

    Returns
    -------
    CAMResult
        ``cam`` = ``raw`` = Σ_k ReLU(g ⊙ A) (N, h, w), non-negative; ``weights`` the
        per-position weights g = ∂y^c/∂A (N, K, h, w) — so here ``raw = Σ_k ReLU(weights
        ⊙ A)``, not ``Σ_k weights ⊙ A``; ``activations``, ``gradients`` (the same array
        as ``weights``), ``scores``, ``target``, ``layer``; ``extra`` is empty. With
        ``target="all"`` a class axis follows N (``weights`` (N, C, K, h, w)).
    """
    lg = layer_gradients(model, x, target, layer, score, allow_all=True, full_trace="layer")
    g, a = lg.gradients, lg.activations
    with np.errstate(all="ignore"):  # an overflow is reported by elementwise_result
        raw = np.maximum(g * (a if g.ndim == 4 else a[:, None]), 0.0).sum(axis=-3)
    return elementwise_result(g, a, g, lg.scores, lg.target, lg.layer, raw=raw)
