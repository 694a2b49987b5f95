r"""Eigen-CAM as npcam and as pytorch-grad-cam 1.5.7 compute it.

``npcam.conventions.cam("eigen-cam", model, x, target, layer, convention=...)``:

============================ ======================================================= =========
convention                   what it computes                                         returns
============================ ======================================================= =========
``npcam``                    :func:`npcam.eigen_cam` (uncentred, sign "sum"),         (N, H, W)
                             ``cam`` upsampled (half-pixel bilinear)                  float64
``pytorch-grad-cam``         ``EigenCAM``: centred SVD, LAPACK's sign, float32, then  (N, H, W)
                             ReLU and ``scale_cam_image``                             float32
``pytorch-grad-cam-signfix`` the same with ``get_2d_projection_with_sign_correction`` (N, H, W)
                             (flip when |min| > |max|)                                float32
============================ ======================================================= =========

**The LAPACK sign is not portable.** ``np.linalg.svd`` returns v₁ or −v₁ depending on
the LAPACK build (OpenBLAS, MKL: pytorch-grad-cam #315), the routine (``full_matrices``),
the dtype and the data layout: the same data with its rows reordered gave the opposite sign
in 4 of 8 SmallCNN maps (cam-family.md § 8; 1 of 10 on the test suite's models), and on
a matrix with exactly-zero columns (dead channels) a change in the last bit of the data can
flip it (EigenGrad-CAM on SmallCNN ``features.5``/``.6``, image 1: npcam's g ⊙ A, equal to
torch's to 1.1e-15, gets the opposite v₁ from the same call). The ``"pytorch-grad-cam"``
convention calls the
same routine on the same float64 array as the library does on a float64 torch model
(``np.linalg.svd(full_matrices=True)``, LAPACK ``dgesdd``), so it reproduces the library
*on the same machine*; a float32 torch model hands the library float32 activations
(``sgesdd``), whose sign may differ.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...methods._core import Target, layer_activations
from ...methods.eigen_cam import eigen_cam
from ._common import _input_size, _npcam_final
from .pytorch_grad_cam import _pgc_final

__all__ = ["CONVENTIONS", "npcam_eigen_cam", "pgc_2d_projection", "pytorch_grad_cam_eigen_cam",
           "pytorch_grad_cam_eigen_cam_signfix"]


def pgc_2d_projection(batch: np.ndarray, sign_correction: bool = False) -> np.ndarray:
    r"""pytorch-grad-cam's ``get_2d_projection`` (``utils/svd_on_activations.py`` 5-21), or
    with ``sign_correction`` its ``get_2d_projection_with_sign_correction`` (41-81):
    (N, K, h, w) -> (N, h, w) float32.

    Per image, in the library's order and on the same array layout (so that LAPACK sees
    the same matrix): NaN → 0 (a no-op on npcam's finite arrays); O = the (K, hw) reshape
    transposed to (hw × K); ``O − O.mean(axis=0)`` (centred columns);
    ``np.linalg.svd(O, full_matrices=True)`` (it computes a full hw × hw U it does not
    use); ``O @ VT[0]``; with ``sign_correction`` the map is negated when
    ``|min| > |max|``; the stack is rounded to float32.
    """
    batch = np.array(batch, copy=True)
    batch[np.isnan(batch)] = 0
    maps = []
    for image in batch:  # one SVD per image, as the library
        o = image.reshape(image.shape[0], -1).transpose()
        o = o - o.mean(axis=0)
        _, _, vt = np.linalg.svd(o, full_matrices=True)
        p = (o @ vt[0, :]).reshape(image.shape[1:])
        if sign_correction and abs(p.min()) > abs(p.max()):
            p = -p
        maps.append(p)
    return np.asarray(maps, dtype=np.float64).astype(np.float32).reshape(batch.shape[:1] + batch.shape[2:])


def npcam_eigen_cam(
    model: Any, x: Any, target: Target, layer: str | None, input_size: Any, score: str | None,
    *, center: bool = False, sign: str = "sum",
) -> np.ndarray:
    """npcam's own Eigen-CAM map: ``npcam.eigen_cam(...).cam`` (by default the uncentred
    projection with ``Σ_ij L ≥ 0``) upsampled with half-pixel bilinear interpolation to
    ``input_size`` (default: x's); no normalisation. Returns (N, H, W) float64."""
    r = eigen_cam(model, x, target, layer, score="logit" if score is None else score,
                  center=center, sign=sign)
    return _npcam_final(r.cam, x, input_size)


def pytorch_grad_cam_eigen_cam(
    model: Any, x: Any, target: Target, layer: str | None, input_size: Any, score: str | None,
) -> np.ndarray:
    r"""pytorch-grad-cam 1.5.7's ``EigenCAM(model, [layer])(x)`` (``eigen_cam.py`` 22 →
    :func:`pgc_2d_projection`), then ReLU and ``scale_cam_image`` twice. Returns
    (N, H, W) float32 in [0, 1]. ``target`` and ``score`` do not change the map.

    **What the library returns vs what the paper says.**

    * *Centring.* The library removes the column means before the SVD ("seems to be
      important, otherwise the image returned is negative" — the symptom of LAPACK's sign,
      not of the missing centring); the paper's O (as cam-family.md reads it,
      [unverified]) is uncentred. Centred vs uncentred, signs aligned: rel 1.5–3.1 on
      cam-family.md's SmallCNN, 0.85–1.03 on the test suite's — different maps.
    * *No sign fix.* v₁'s sign is LAPACK's (not portable, see the module docstring). The
      |min| > |max| rule disagreed with it on 3 of 8 maps in cam-family.md and on 8 of
      10 SmallCNN/SignedCNN maps of the test suite (OpenBLAS here); the library's map
      correlated negatively with the mean activation map on 6 of those 10 (−0.20 to
      −0.87), i.e. it highlighted the least active region. ReLU(p) and ReLU(−p) differ by
      rel 1.0–1.6: such a map shows the complement of the other.
      ``tests/crosscheck/test_family_ablation_eigen.py`` counts the disagreements.
    * *ReLU.* The base class clips the projection at 0, as for every method; the paper
      shows the projection itself.
    * float32 (``np.float32(projections)``): ~4e-8 rel.
    """
    la = layer_activations(model, x, target, layer, "logit" if score is None else score,
                           allow_all=False)
    return _pgc_final(pgc_2d_projection(la.activations), _input_size(x, input_size, "pytorch-grad-cam"))


def pytorch_grad_cam_eigen_cam_signfix(
    model: Any, x: Any, target: Target, layer: str | None, input_size: Any, score: str | None,
) -> np.ndarray:
    r"""``"pytorch-grad-cam"`` with the sign correction of pytorch-grad-cam's
    ``get_2d_projection_with_sign_correction`` (``svd_on_activations.py`` 76-77: negate
    the centred projection when ``|min| > |max|``), which the library's ``EigenCAM`` does
    not use (only SegEigenCAM does); what ``EigenCAM`` would return with it. Returns
    (N, H, W) float32 in [0, 1].

    The centred map still differs from the paper's uncentred one (see
    :func:`pytorch_grad_cam_eigen_cam`); npcam's ``eigen_cam(center=True, sign="absmax")``
    is the same rule in float64, with exact ties broken by v₁.
    """
    la = layer_activations(model, x, target, layer, "logit" if score is None else score,
                           allow_all=False)
    projection = pgc_2d_projection(la.activations, sign_correction=True)
    return _pgc_final(projection, _input_size(x, input_size, "pytorch-grad-cam-signfix"))


#: convention name -> function, for ``npcam.conventions.cam("eigen-cam", ...)``
CONVENTIONS = {
    "npcam": npcam_eigen_cam,
    "pytorch-grad-cam": pytorch_grad_cam_eigen_cam,
    "pytorch-grad-cam-signfix": pytorch_grad_cam_eigen_cam_signfix,
}
