r"""EigenGrad-CAM: Eigen-CAM of the gradient-weighted activations g ⊙ A.

There is no paper: this is pytorch-grad-cam's construction (``eigen_grad_cam.py``, "the
first principal component of Activations*Grad", built on Eigen-CAM, Muhammad & Yeasin
2020, arXiv 2008.00299) — the Eigen-CAM machinery applied to HiResCAM's element-wise
product::

    G   = g ⊙ A,  g = ∂y^c/∂A^k            (N, K, h, w)
    O   = G as a (hw × K) matrix,  O = U Σ Vᵀ
    L   = O v₁                              (the first principal projection)
    M   = s · L,  s = ±1                    (``raw``, the sign fixed)
    cam = ReLU(M)

so the per-position ``weights`` are ``s·v₁_k·g^k_ij`` (N, K, h, w) and
``raw = Σ_k weights ⊙ A``. Unlike Eigen-CAM the map depends on the class, through g.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._core import CAMResult, Target, layer_gradients
from .eigen_cam import _as_matrix, _check_center, _check_sign, _orientation, _principal

__all__ = ["eigen_grad_cam"]

#: The sign rules of :func:`eigen_grad_cam`.
SIGNS = ("correlation", "absmax", "lapack")


def eigen_grad_cam(
    model: Any,
    x: Any,
    target: Target = None,
    layer: str | None = None,
    *,
    score: str = "logit",
    center: bool = False,
    sign: str = "correlation",
) -> CAMResult:
    r"""EigenGrad-CAM: ``L = O v₁`` with O the (hw × K) matrix of ``g ⊙ A``, its sign
    fixed.

    Parameters
    ----------
    model : npcam.nn.Model
        Any model implementing the protocol (:class:`npcam.Sequential`,
        :class:`npcam.Graph`).
    x : array_like, (N, C, H, W)
        The input batch.
    target : None, int or N ints
        None: the predicted class per image. ``"all"`` is refused (one SVD per class).
    layer : str or None
        The feature maps A; default as :func:`npcam.grad_cam`.
    score : {"logit", "softmax", "log_softmax"}
        The scalar y^c differentiated; default "logit" (pytorch-grad-cam's
        ``ClassifierOutputTarget``).
    center : bool
        False (default): the SVD of O itself, as npcam's Eigen-CAM (whose paper reading
        is unverified, cam-family.md § 8). True: O with its column means removed, as
        pytorch-grad-cam.
    sign : {"correlation", "absmax", "lapack"}
        How s = ±1 is chosen — npcam's rule, documented (there is no paper).
        ``"correlation"`` (default): the projection correlates positively with the
        HiResCAM map ``H = Σ_k g ⊙ A`` (Pearson, ``Σ_ij (M − M̄)(H − H̄) ≥ 0``) —
        class-aware and well defined; where that is a tie (M or H constant in space, or
        uncorrelated) ``Σ_ij M·H ≥ 0``. ``"absmax"``: flip when ``|min L| > |max L|``.
        ``"lapack"``: v₁ as ``np.linalg.svd(full_matrices=False)`` returns it (not
        portable). Remaining ties (a statistic within 1e-10 of its scale) make v₁'s
        entry of largest magnitude positive.

    Returns
    -------
    CAMResult
        ``cam`` ReLU(M) (N, h, w); ``raw`` M (signed); ``weights`` s·v₁_k·g (N, K, h, w);
        ``activations`` A; ``gradients`` g; ``scores`` y^c; ``target``; ``layer``;
        ``extra["singular_values"]`` (N, min(hw, K)) and ``extra["projection"]`` L
        (N, h, w) before the sign is fixed.

    Notes
    -----
    * ``raw = Σ_k weights ⊙ A`` when ``center=False``. With ``center=True`` ``raw`` is the
      centred projection ``Σ_k s v₁_k (G^k − Ḡ^k)`` = ``Σ_k weights ⊙ A − Σ_k s v₁_k Ḡ^k``
      (Ḡ^k the spatial mean of g^k ⊙ A^k): the weighted map shifted by one constant per
      image; ``weights`` stay ``s v₁_k g``.
    * An image with G = 0 (no gradient reaches the layer; or, centred, G constant in
      space) has no principal direction: its weights, ``raw`` and ``projection`` are 0.
    * If G has rank 1 (g constant in space and A of rank 1, e.g. a layer feeding GAP),
      the uncentred projection is proportional to the HiResCAM map, and the default sign
      makes it equal to it up to a positive factor.
    * pytorch-grad-cam 1.5.7 (``EigenGradCAM``) centres, keeps LAPACK's sign and rounds
      to float32: its map correlated negatively with HiResCAM's in 4 of 6 measured maps
      (cam-family.md § 9), i.e. it showed what lowers the score.
      ``npcam.conventions.cam("eigen-grad-cam", ..., convention="pytorch-grad-cam")``.
    """
    center = _check_center(center)
    sign = _check_sign(sign, SIGNS)
    lg = layer_gradients(model, x, target, layer, score, allow_all=False, full_trace="layer")
    a, g = lg.activations, lg.gradients
    with np.errstate(over="ignore"):  # refused just below
        prod = g * a
    if not np.isfinite(prod).all():
        raise ValueError(
            f"eigen_grad_cam: g ⊙ A at layer {lg.layer!r} overflows float64; the gradients or "
            "activations are too large."
        )
    v1, p, singular, _ = _principal(_as_matrix(prod), center)
    s = _orientation(p, v1, sign, reference=prod.sum(axis=1).reshape(p.shape))
    shape = (a.shape[0],) + a.shape[2:]
    raw = (s[:, None] * p).reshape(shape)
    weights = (s[:, None] * v1)[:, :, None, None] * g
    extra = {"singular_values": singular, "projection": p.reshape(shape)}
    return CAMResult(np.maximum(raw, 0.0), raw, weights, a, g, lg.scores, lg.target, lg.layer, extra)
