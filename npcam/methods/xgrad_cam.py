r"""XGrad-CAM (Fu et al., *Axiom-based Grad-CAM*, BMVC 2020, arXiv 2008.02312).

Grad-CAM weights every channel by the plain spatial mean of its gradient. XGrad-CAM
weights it by the mean of the gradient under the channel's own activations, normalised to
sum to one — the weights that make the map satisfy the paper's *sensitivity* and
*conservation* axioms as closely as a linear combination of the A^k can::

    α^c_k = Σ_ij (A^k_ij / Σ_ab A^k_ab) · ∂y^c/∂A^k_ij
    M^c   = Σ_k α^c_k A^k                  (``raw``, signed)
    L^c   = ReLU(M^c)                      (``cam``)

Where ∂y^c/∂A^k is constant in space (the layer feeds GAP → FC) the normalised
activations sum to one and α^c_k equals Grad-CAM's α exactly, so the two maps coincide
(torch-cam issue #218, "no difference between GradCAM and XGradCAM" on resnet18 layer4).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .._warnings import NumericalWarning
from ._core import CAMResult, Target, layer_gradients, map_result

__all__ = ["XGRAD_CANCEL_RTOL", "xgrad_cam", "xgrad_cam_weights"]

#: A channel whose |Σ_ab A_ab| is at most this fraction of Σ_ab |A_ab| (and Σ|A| > 0)
#: has activations that cancel: its weight Σ A g / Σ A is ill-conditioned.
XGRAD_CANCEL_RTOL = 1e-6


def xgrad_cam_weights(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    r"""XGrad-CAM's weights ``α_k = Σ_ij A^k_ij g^k_ij / Σ_ab A^k_ab``, from the arrays.

    ``activations`` A (N, K, h, w); ``gradients`` g = ∂y^c/∂A, (N, K, h, w) or
    (N, C, K, h, w) (one set per class, ``target="all"``). Returns (N, K) or (N, C, K).

    **The 0/0 rule.** A channel with ``Σ_ab A_ab = 0`` gets ``α_k = 0``. On a layer with
    A ≥ 0 (after a ReLU) that sum vanishes only for a dead channel, A^k ≡ 0, where the
    paper's formula is 0/0 and the channel contributes nothing to the map whatever its
    weight; 0 is the value both libraries' ε give it. On a signed layer Σ A can vanish
    with A^k ≠ 0 — the weight is then infinite in the paper, 0 here, and
    :func:`xgrad_cam` warns.

    For fixed arrays the weights are invariant to a per-channel positive rescaling
    A^k → s_k A^k (s_k > 0): α_k is a weighted average of g^k with weights A^k / Σ A^k.
    """
    a = activations
    s = a.sum(axis=(-2, -1))  # Σ_ab A^k_ab, (N, K)
    with np.errstate(all="ignore"):  # products and sums of finite arrays may overflow
        if gradients.ndim == 4:
            num = np.einsum("nkhw,nkhw->nk", gradients, a, optimize=True)
        else:
            num = np.einsum("nckhw,nkhw->nck", gradients, a, optimize=True)
            s = s[:, None, :]
        s = np.broadcast_to(s, num.shape)
        # where=: the 0/0 rule without evaluating (and warning about) the division by 0
        return np.divide(num, s, out=np.zeros_like(num), where=s != 0)


def _warn_cancelling(a: np.ndarray, layer: str) -> None:
    """NumericalWarning (rule R3) for channels whose activations cancel (signed layers)."""
    s = np.abs(a.sum(axis=(2, 3)))
    total = np.abs(a).sum(axis=(2, 3))
    bad = (total > 0) & (s <= XGRAD_CANCEL_RTOL * total)
    if bad.any():
        images, channels = np.nonzero(bad)
        pairs = list(zip(images.tolist(), channels.tolist(), strict=True))
        shown = ", ".join(f"(image {n}, channel {k})" for n, k in pairs[:5])
        more = ", ..." if bad.sum() > 5 else ""
        warnings.warn(
            f"xgrad_cam: layer {layer!r} has {int(bad.sum())} channel(s) whose activations "
            f"cancel, |Σ_ab A_ab| <= {XGRAD_CANCEL_RTOL:g}·Σ_ab |A_ab| ({shown}{more}); their "
            "weights Σ A g / Σ A are ill-conditioned (0 where Σ A = 0 exactly) and can dominate "
            "the map. Explain a layer with A >= 0 (the ReLU after this one) instead.",
            NumericalWarning,
            stacklevel=3,
        )


def xgrad_cam(
    model: Any,
    x: Any,
    target: Target = None,
    layer: str | None = None,
    *,
    score: str = "logit",
) -> CAMResult:
    r"""XGrad-CAM: ``L^c = ReLU(Σ_k α^c_k A^k)`` with
    ``α^c_k = Σ_ij (A^k_ij / Σ_ab A^k_ab) · ∂y^c/∂A^k_ij``.

    The weights are the paper's (Fu et al. 2020: the closed-form solution of its
    sensitivity/conservation objective; section number not checked against the text)
    with no ε: pytorch-grad-cam 1.5.7 divides by ``Σ A + 1e-7`` and torchcam
    0.5.0 by ``Σ A + 1e-8`` (conventions ``"pytorch-grad-cam"``, ``"torchcam"`` of
    ``npcam.conventions.cam("xgrad-cam", ...)``), which changes the map by up to 2.5e-6
    (pytorch-grad-cam) and 2.5e-7 (torchcam) relative on SmallCNN's signed features.5,
    4e-9 and 4e-10 on resnet18 layer4 (measured on the models of
    ``tests/crosscheck/_cam_family.py``; see also cam-family.md § 2).

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
        The scalar y^c; the paper differentiates the class score before softmax
        ("logit", the default).

    Returns
    -------
    CAMResult
        ``cam`` L^c (N, h, w), ``raw`` M^c (signed), ``weights`` α^c (N, K),
        ``activations``, ``gradients``, ``scores`` y^c, ``target``, ``layer``; ``extra``
        is empty. With ``target="all"``: (N, C, h, w), (N, C, K), ...

    Warns
    -----
    NumericalWarning
        When a channel's activations cancel, ``|Σ_ab A_ab| <= 1e-6 · Σ_ab |A_ab|`` with
        ``Σ |A| > 0`` — possible only on a signed layer (a conv or BN output before its
        ReLU): its weight Σ A g / Σ A blows up (it is set to 0 where Σ A = 0 exactly).

    Notes
    -----
    * **0/0 rule**: a channel with ``Σ_ab A_ab = 0`` gets weight 0 (on a ReLU layer only a
      dead channel, A^k ≡ 0, which adds nothing to the map whatever its weight); see
      :func:`xgrad_cam_weights`.
    * **Signed layers**: the normaliser is the paper's Σ A, not Σ |A| (both libraries use
      Σ A too). They can differ by orders of magnitude: cam-family.md measured a relative
      difference of 48 between the two weightings on its SmallCNN's signed features.5,
      and on the tests' SmallCNN a channel there has |Σ A| = 4.6e-3 · Σ |A|.
    * **The final ReLU** — unverified against the paper's text (cam-family.md marks it
      [unverified]): the authors' released code (github.com/Fu0511/XGrad-CAM,
      ``XGrad-CAM.py``, read in its fork kiminh/XGrad-CAM) applies ``np.maximum(X_cam,
      0)`` before its resize and min-max, with ε = 1e-6 in the weights, as both
      libraries apply a ReLU. npcam's ``cam`` is ReLU(``raw``) and ``raw`` keeps the
      signed map either way.
    * Under GAP → FC (g constant in space) α equals Grad-CAM's α on every live channel,
      so the maps are equal.
    """
    lg = layer_gradients(model, x, target, layer, score, allow_all=True, full_trace="layer")
    _warn_cancelling(lg.activations, lg.layer)
    weights = xgrad_cam_weights(lg.activations, lg.gradients)
    return map_result(weights, lg.activations, lg.gradients, lg.scores, lg.target, lg.layer)
