r"""Eigen-CAM (Muhammad & Yeasin, *Eigen-CAM: Class Activation Map using Principal
Components*, IJCNN 2020, arXiv 2008.00299).

The map is the projection of the target layer's activations on their first principal
direction — class-agnostic, with no gradient and no score::

    O   = A as a (hw × K) matrix, row (i, j) = (A^1_ij, ..., A^K_ij)
    O   = U Σ Vᵀ                          (singular value decomposition)
    L   = O v₁ = σ₁ u₁                     (v₁: first right singular vector)
    M   = s · L,  s = ±1                   (``raw``: the sign fixed, see below)
    cam = ReLU(M)

so ``weights`` = s·v₁ (N, K) and ``raw = Σ_k weights_k A^k``.

**The sign.** An SVD determines v₁ only up to sign (O = (−U) Σ (−V)ᵀ); which one LAPACK
returns depends on the data layout and the library build, and ReLU(L) and ReLU(−L) are
complementary maps. Reordering the rows of O (another spatial flattening order, the same
data) flipped the sign in 4 of 8 maps measured on SmallCNN (cam-family.md § 8).
npcam fixes it by a rule on L itself (``sign=``), so that the output is invariant to
v₁ → −v₁ and to the flattening order.

:func:`_principal` and :func:`_orientation` are shared with EigenGrad-CAM
(:mod:`npcam.methods.eigen_grad_cam`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validate import describe
from ._core import CAMResult, Target, layer_activations

__all__ = ["EIGEN_TIE_RTOL", "eigen_cam"]

#: A sign statistic within this fraction of its scale is a tie (rounding cannot decide it).
EIGEN_TIE_RTOL = 1e-10

#: The sign rules of :func:`eigen_cam`.
SIGNS = ("sum", "absmax", "lapack")


def _check_center(center: Any) -> bool:
    if not isinstance(center, (bool, np.bool_)):
        raise TypeError(f"center must be a bool, got {describe(center)}.")
    return bool(center)


def _check_sign(sign: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(sign, str) or sign not in allowed:
        raise ValueError(f"sign must be one of {allowed}, got {sign!r}.")
    return sign


def _as_matrix(maps: np.ndarray) -> np.ndarray:
    """(N, K, h, w) -> O (N, hw, K): one row per position (row-major), one column per channel."""
    n, k = maps.shape[:2]
    return maps.reshape(n, k, -1).transpose(0, 2, 1)


def _principal(
    o: np.ndarray, center: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    r"""The first principal direction of each image's matrix ``o`` (N, Z, K).

    Returns ``(v1, p, singular_values, zero)``: v₁ (N, K) as ``np.linalg.svd`` returns it
    (``full_matrices=False``, LAPACK's sign), the projection ``p = O_c v₁`` (N, Z) with
    ``O_c = O − mean over rows`` if ``center`` else O, the singular values (N, min(Z, K))
    and a mask (N,) of the images without a principal direction.

    **Zero matrix.** An image whose O_c is zero — O = 0, or (centred) a map constant in
    space, whose centring leaves rounding noise — has no first singular vector: its v₁ and
    p are set to 0. "Zero" means ``σ₁ ≤ 8·ε·max(Z, K)·sqrt(Z·K)·max|O|`` (ε the float64
    epsilon): the size of the centring's rounding, and, since σ₁ ≥ max|O|, reached without
    centring only by O = 0 exactly.
    """
    n, z, k = o.shape
    oc = o - o.mean(axis=1, keepdims=True) if center else o
    _, s, vt = np.linalg.svd(oc, full_matrices=False)
    v1 = vt[:, 0, :]
    biggest = np.abs(o).reshape(n, z * k).max(axis=1)
    zero = s[:, 0] <= 8 * np.finfo(np.float64).eps * max(z, k) * np.sqrt(z * k) * biggest
    v1 = np.where(zero[:, None], 0.0, v1)
    p = np.einsum("nzk,nk->nz", oc, v1, optimize=True)
    return v1, p, s, zero


def _decide(stat: np.ndarray, scale: np.ndarray, undecided: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Set ``s`` to sign(stat) where still undecided and |stat| > EIGEN_TIE_RTOL·scale;
    returns the images that stay undecided (ties)."""
    decided = undecided & (np.abs(stat) > EIGEN_TIE_RTOL * scale)
    s[decided] = np.sign(stat[decided])
    return undecided & ~decided


def _orientation(
    p: np.ndarray, v1: np.ndarray, rule: str, reference: np.ndarray | None = None
) -> np.ndarray:
    r"""The sign s = ±1 per image (N,) that ``rule`` gives the projection ``p`` (N, Z).

    * ``"lapack"``: +1 (v₁ as the SVD returned it);
    * ``"sum"``: make ``Σ_ij p ≥ 0``;
    * ``"absmax"``: make ``|max p| ≥ |min p|`` (flip when |min| > |max|);
    * ``"correlation"``: make the Pearson correlation of p with ``reference`` (N, Z) ≥ 0,
      i.e. ``Σ (p − p̄)(h − h̄) ≥ 0``; where it is a tie (p or h constant in space, or
      uncorrelated), make ``Σ p·h ≥ 0``.

    A statistic within ``EIGEN_TIE_RTOL`` (1e-10) of its scale (``Σ|p|``;
    ``max(|max p|, |min p|)``; ``‖p − p̄‖‖h − h̄‖``; ``‖p‖‖h‖``) is a tie, broken by v₁
    itself: its entry of largest magnitude (the first such channel if several are equal)
    is made positive. Every statistic is odd in p and the magnitudes are even in v₁, so
    s·p and s·v₁ are exactly the same for v₁ and −v₁.
    """
    n = p.shape[0]
    s = np.ones(n)
    if rule == "lapack":
        return s
    undecided = np.ones(n, dtype=bool)
    if rule == "sum":
        undecided = _decide(p.sum(axis=1), np.abs(p).sum(axis=1), undecided, s)
    elif rule == "absmax":
        top, bottom = np.abs(p.max(axis=1)), np.abs(p.min(axis=1))
        undecided = _decide(top - bottom, np.maximum(top, bottom), undecided, s)
    else:  # correlation with the reference map
        assert reference is not None
        pc = p - p.mean(axis=1, keepdims=True)
        hc = reference - reference.mean(axis=1, keepdims=True)
        scale = np.sqrt((pc**2).sum(axis=1) * (hc**2).sum(axis=1))
        undecided = _decide((pc * hc).sum(axis=1), scale, undecided, s)
        scale = np.sqrt((p**2).sum(axis=1) * (reference**2).sum(axis=1))
        undecided = _decide((p * reference).sum(axis=1), scale, undecided, s)
    if undecided.any():
        rows = np.nonzero(undecided)[0]
        biggest = np.argmax(np.abs(v1[rows]), axis=1)
        tie = np.sign(v1[rows, biggest])
        s[rows] = np.where(tie == 0, 1.0, tie)
    return s


def eigen_cam(
    model: Any,
    x: Any,
    target: Target = None,
    layer: str | None = None,
    *,
    score: str = "logit",
    center: bool = False,
    sign: str = "sum",
) -> CAMResult:
    r"""Eigen-CAM: ``L = O v₁``, the projection of A (as hw × K) on its first right
    singular vector, with its sign fixed.

    The projection is the paper's (Muhammad & Yeasin 2020, arXiv 2008.00299: "the
    principal components of the learned representations"; only its abstract was available
    here, so neither its equation numbers nor its centring could be checked). The sign
    rule, the zero-matrix rule and the ties are npcam's, documented below; the paper
    applies no ReLU (npcam's ``cam`` is ReLU(``raw``) as for every method; ``raw`` keeps
    the signed projection).

    Parameters
    ----------
    model : npcam.nn.Model
        Any model implementing the protocol (:class:`npcam.Sequential`,
        :class:`npcam.Graph`).
    x : array_like, (N, C, H, W)
        The input batch.
    target : None, int or N ints
        Only fills ``scores`` and ``target`` (None: the predicted class): the map is
        class-agnostic. ``"all"`` is refused.
    layer : str or None
        The feature maps A; default as :func:`npcam.grad_cam`.
    score : {"logit", "softmax", "log_softmax"}
        The score reported in ``scores`` (the map does not use it); default "logit".
    center : bool
        False (default): the SVD of O itself, the paper as cam-family.md reads it —
        **unverified**: the paper's text could not be checked here (cam-family.md § 8
        marks it [unverified]). True: the SVD of O with its column means removed
        (principal component analysis), as pytorch-grad-cam's ``get_2d_projection``; the
        projection then sums to 0 over the map.
    sign : {"sum", "absmax", "lapack"}
        How s = ±1 is chosen (npcam's rule; the paper gives none). ``"sum"`` (default):
        ``Σ_ij L ≥ 0`` — for A ≥ 0 (a ReLU layer) v₁ has one sign (Perron–Frobenius on
        OᵀO ≥ 0), so this makes the map the non-negative one; with ``center=True`` the sum
        is 0 up to rounding and ``"sum"`` falls back to ``"absmax"``. ``"absmax"``: flip
        when ``|min L| > |max L|`` (pytorch-grad-cam's
        ``get_2d_projection_with_sign_correction``). ``"lapack"``: as
        ``np.linalg.svd(full_matrices=False)`` returns v₁ — not portable across LAPACK
        builds and data layouts. Ties (a statistic within 1e-10 of its scale) go to the
        sign that makes v₁'s entry of largest magnitude positive.

    Returns
    -------
    CAMResult
        ``cam`` ReLU(M) (N, h, w); ``raw`` M = s·L (signed); ``weights`` s·v₁ (N, K);
        ``activations`` A; ``gradients`` None; ``scores`` y^c and ``target`` c as
        requested; ``extra["singular_values"]`` (N, min(hw, K)) and
        ``extra["projection"]`` L (N, h, w) before the sign is fixed (LAPACK's sign).

    Notes
    -----
    * ``raw = Σ_k weights_k A^k`` when ``center=False``; with ``center=True`` ``raw`` is
      the centred projection ``Σ_k weights_k (A^k − Ā^k)`` = ``Σ_k weights_k A^k −
      Σ_k weights_k Ā^k`` (Ā^k the spatial mean of channel k): the weighted map shifted
      by one constant per image.
    * An image whose matrix is zero (a dead layer; or, centred, a map constant in space)
      has no principal direction: its weights, ``raw`` and ``projection`` are 0.
    * The uncentred projection equals σ₁u₁; it is invariant to the order in which the
      positions are flattened (a permutation of the rows of O permutes u₁ only).
    * pytorch-grad-cam 1.5.7 (``EigenCAM``) centres, keeps LAPACK's sign
      (``full_matrices=True``) and rounds to float32: ``npcam.conventions.cam(
      "eigen-cam", ..., convention="pytorch-grad-cam")``; with the |min| > |max| flip,
      ``"pytorch-grad-cam-signfix"``.
    """
    center = _check_center(center)
    sign = _check_sign(sign, SIGNS)
    la = layer_activations(model, x, target, layer, score, allow_all=False)
    a = la.activations
    v1, p, singular, _ = _principal(_as_matrix(a), center)
    rule = "absmax" if center and sign == "sum" else sign
    s = _orientation(p, v1, rule)
    shape = (a.shape[0],) + a.shape[2:]
    raw = (s[:, None] * p).reshape(shape)
    extra = {"singular_values": singular, "projection": p.reshape(shape)}
    return CAMResult(np.maximum(raw, 0.0), raw, s[:, None] * v1, a, None, la.scores, la.target,
                     la.layer, extra)
