r"""Grad-CAM++ as each library computes it: ``npcam.conventions.cam("grad-cam++", ...)``.

The paper's closed form (Chattopadhay et al. 2018, eq. 19) is
``α = g² / (2g² + (Σ_ab A_ab) g³)``, ``w_k = Σ_ij α ReLU(g)``, what
:func:`npcam.grad_cam_pp` computes. The libraries depart from it (measured on float64
SmallCNN-type networks and resnet18, "rel" = max|w_lib − w_eq19| / max|w_eq19|;
``tests/crosscheck/test_family_grad_cam_pp.py`` prints them):

==================== =========================================================== =========
convention           what the library computes                                   rel of w
==================== =========================================================== =========
``npcam``            eq. 19, no ε                                                0
``pytorch-grad-cam`` eq. 19 with an absolute ε = 1e-6 in the denominator          0.005–0.21
``torchcam``         Σ_ij ReLU(g)³ — its division never happens (a masked copy)  ≈ 1.0
``tf-keras-vis``     α normalised per channel, e^S kept, score = model output    (mm 0.01–0.03)
``authors-code``     = ``tf-keras-vis`` (the released code's formula)            (mm 0.01–0.03)
==================== =========================================================== =========

Each function has the dispatcher's signature ``fn(model, x, target, layer, input_size,
score, *, options)`` and returns the array the library returns, step for step in its order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.ndimage import zoom

from ...methods._core import layer_gradients
from ...methods.grad_cam_pp import EXP_MAX, grad_cam_pp
from ._common import _check_bool, _input_size, _npcam_final, _size, _weighted_sum
from .pytorch_grad_cam import _pgc_final
from .tf_keras_vis import TF_KERAS_VIS_EPS
from .torchcam import _torchcam_final

__all__ = [
    "CONVENTIONS",
    "PGC_GRAD_CAM_PP_EPS",
    "TORCHCAM_GRAD_CAM_PP_EPS",
    "authors_code",
    "npcam_grad_cam_pp",
    "pytorch_grad_cam_pp",
    "tf_keras_vis_grad_cam_pp",
    "torchcam_grad_cam_pp",
    "torchcam_map",
]

#: pytorch_grad_cam/grad_cam_plusplus.py line 26: ``eps = 0.000001``.
PGC_GRAD_CAM_PP_EPS = 1e-6
#: torchcam/methods/gradient.py line 183 (GradCAMpp) and 298 (SmoothGradCAMpp): ``eps=1e-8``.
TORCHCAM_GRAD_CAM_PP_EPS = 1e-8


def _gradients(model: Any, x: Any, target: Any, layer: Any, score: str) -> Any:
    return layer_gradients(model, x, target, layer, score, allow_all=False, full_trace="layer")


# ---------------------------------------------------------------------------- npcam
def npcam_grad_cam_pp(
    model: Any, x: Any, target: Any, layer: Any, input_size: Any, score: Any,
    *, exp_factor: bool = False,
) -> np.ndarray:
    """npcam's own convention: :func:`npcam.grad_cam_pp`'s ``cam`` (eq. 19, no ε;
    ``score=None`` means "logit"), upsampled bilinearly with half-pixel centres
    (:func:`npcam.upsample`) to ``input_size`` (default: x's size); no normalisation.
    Returns (N, H, W) float64."""
    r = grad_cam_pp(model, x, target, layer, score="logit" if score is None else score,
                    exp_factor=exp_factor)
    return _npcam_final(r.cam, x, input_size)


# ----------------------------------------------------------------- pytorch-grad-cam
def pytorch_grad_cam_pp(
    model: Any, x: Any, target: Any, layer: Any, input_size: Any, score: Any
) -> np.ndarray:
    """pytorch-grad-cam 1.5.7's ``GradCAMPlusPlus(model, [layer])(x, targets)``: (N, H, W)
    float32 in [0, 1].

    In order (``pytorch_grad_cam/``):

    1. ``grad_cam_plusplus.py`` 19-34, ``get_cam_weights``: ``g² = grads**2``,
       ``g³ = g²·grads``, ``S = np.sum(A, spatial)``, ``aij = g² / (2g² + S·g³ + 1e-6)``,
       ``aij = np.where(grads != 0, aij, 0)``, ``w = Σ_ij max(grads, 0)·aij``;
    2. ``base_cam.py`` 76-91, ``get_cam_image``: ``(w[:, :, None, None] * A).sum(axis=1)``;
    3. ``base_cam.py`` 171-172: ``np.maximum(cam, 0)``, ``scale_cam_image(cam, (W, H))``
       (``utils/image.py`` 161-176: per map ``m − min``, ``/ (1e-7 + max)``, then
       ``cv2.resize`` of the float32 map);
    4. ``base_cam.py`` 177-181, ``aggregate_multi_layers``: ``np.maximum``, the mean over
       the one layer, ``scale_cam_image`` again without resize; float32.

    The score is the model output at the class (``ClassifierOutputTarget``): the logit
    (``score=None``).

    **What the library returns vs what the paper says**: the ε = 1e-6 is absolute, added
    to 2g² + S g³, a quantity of order g² ≈ 1e-6 when the layer feeds a global pooling
    (|g| ≈ 1e-3), so the gap grows as |g| shrinks. The weights differ from eq. 19 by rel
    0.106 / 0.213 / 0.110 on cam-family.md's SmallCNN (|g| ≈ 1.5e-3) at features.6 / .3 /
    .5, by 0.012 / 0.026 / 0.008 on the test suite's SmallCNN (FC weights × 20, |g| up to
    2e-2), and by 0.032 / 0.047 on resnet18 (64 px) layer4 / layer3 (min-max maps:
    0.005–0.084). No e^S factor, no α normalisation. Against the library (float64 torch
    model): 0.0 with OpenCV's IPP off, ≤ 1.8e-7 with IPP on (its float32 resize).
    """
    lg = _gradients(model, x, target, layer, "logit" if score is None else score)
    a, g = lg.activations, lg.gradients
    size = _input_size(x, input_size, "pytorch-grad-cam")
    g2 = g**2
    g3 = g2 * g
    s = np.sum(a, axis=(2, 3)).reshape(a.shape[:2] + (1, 1))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # as the library, silently
        aij = g2 / (2 * g2 + s * g3 + PGC_GRAD_CAM_PP_EPS)
        aij = np.where(g != 0, aij, 0)
        weights = np.sum(np.maximum(g, 0) * aij, axis=(2, 3))
        return _pgc_final(_weighted_sum(weights, a), size)


# ------------------------------------------------------------------------- torchcam
def torchcam_map(weights: np.ndarray, activations: np.ndarray, normalized: bool) -> np.ndarray:
    """torchcam 0.5.0's ``_CAM.compute_cams`` (``core.py`` 290-305) for one layer:
    ``torch.nansum(w[..., None, None] * A, dim=1)``, ``F.relu`` (``_relu = True`` for the
    gradient methods, ``gradient.py`` 40), and with ``normalized`` ``_normalize``
    (``core.py`` 191-201): ``m −= min``, ``m /= max + 1e-8``. No resizing."""
    with np.errstate(over="ignore", invalid="ignore"):
        return _torchcam_final(np.nansum(weights[:, :, None, None] * activations, axis=1), normalized)


def torchcam_grad_cam_pp(
    model: Any, x: Any, target: Any, layer: Any, input_size: Any, score: Any,
    *, intended: bool = False, normalized: bool = True,
) -> np.ndarray:
    """torchcam 0.5.0's ``GradCAMpp(model, layer)(class_idx, scores)[0]``: (N, h, w) at
    the layer's resolution, in the model's dtype (float64 here).

    ``gradient.py`` 179-206, ``GradCAMpp._get_weights``: ``grad_2 = g.pow(2)`` (192),
    ``grad_3 = grad_2 * g`` (193), ``denom = 2·grad_2 + Σ_ab (grad_3·A)_ab`` (196-199),
    ``alpha = grad_2`` (201), then ``alpha[idx][mask].div_(denom[mask] + 1e-8)`` with
    ``mask = grad_2 > 0`` (203), then ``alpha.mul_(relu(g)).flatten(2).sum(-1)`` (206);
    then :func:`torchcam_map`.

    **What the library returns** (``intended=False``, the default): boolean-mask indexing
    returns a *copy*, so the in-place ``div_`` lands on a temporary and ``alpha`` stays
    g²: the weights are **w_k = Σ_ij g² ReLU(g) = Σ_ij ReLU(g)³**, exactly (0.0 to 1.6e-16
    on SmallCNN and resnet18). **What the paper says**: α = g²/(2g² + (Σ_ab A_ab) g³);
    the torchcam weights differ from it by rel ≈ 1.0 (they are of order g³, not g).

    ``intended=True`` gives what the code was written to compute, had the division worked:
    ``α = g² / (2g² + Σ_ab A_ab g³_ab + 1e-8)`` where g² > 0 (else g² = 0). That
    denominator mixes indices — Σ_ab A_ab g³_ab, one number per channel, instead of
    (Σ_ab A_ab)·g³_ij (the mistake of 1Konny/gradcam_plus_plus-pytorch #2) — and differs
    from torchcam's output by rel ≈ 1.0 too. ``normalized``: torchcam's own switch
    (default True). ``input_size`` must be None. The score is the ``scores`` passed: the
    logit (``score=None``).
    """
    use_intended = _check_bool("intended", intended)
    norm = _check_bool("normalized", normalized)
    _size(input_size, False, "torchcam", " (torchcam returns maps at the layer's resolution)")
    lg = _gradients(model, x, target, layer, "logit" if score is None else score)
    a, g = lg.activations, lg.gradients
    n, k = a.shape[:2]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        g2 = g * g
        if use_intended:
            g3 = g2 * g
            denom = 2 * g2 + (g3 * a).reshape(n, k, -1).sum(-1)[:, :, None, None]
            mask = g2 > 0
            alpha = g2.copy()
            alpha[mask] = g2[mask] / (denom[mask] + TORCHCAM_GRAD_CAM_PP_EPS)
        else:
            alpha = g2  # the masked division of line 203 acts on a copy
        weights = (alpha * np.maximum(g, 0)).reshape(n, k, -1).sum(-1)
    return torchcam_map(weights, a, norm)


# ------------------------------------------------------- tf-keras-vis / authors' code
def _tf_keras_vis_pp(
    model: Any, x: Any, target: Any, layer: Any, input_size: Any, score: str,
    expand_cam: bool, normalize_cam: bool, convention: str,
) -> np.ndarray:
    expand = _check_bool("expand_cam", expand_cam)
    norm = _check_bool("normalize_cam", normalize_cam)
    size = _size(
        (np.shape(x)[-2:] if input_size is None else input_size) if expand else input_size,
        expand, convention, " with expand_cam=False",
    )
    lg = _gradients(model, x, target, layer, score)
    a, g, y = lg.activations, lg.gradients, lg.scores
    if np.any(y > EXP_MAX):
        raise ValueError(
            f"convention {convention!r} multiplies the derivatives by e^(y^c), which overflows "
            f"float64 for y^c = {float(np.max(y)):.6g} > {EXP_MAX:.6g} (the library would return "
            "NaN maps: inf/inf in α)."
        )
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        e = np.exp(y).reshape(-1, 1, 1, 1)  # score_values = exp(score), line 105-106
        first = e * g  # lines 110-112
        second = first * g
        third = second * g
        global_sum = np.sum(a, axis=(2, 3), keepdims=True)  # line 114-116
        denom = second * 2.0 + third * global_sum  # line 118
        denom = denom + (second == 0.0).astype(second.dtype)  # line 119
        alphas = second / denom  # line 120
        const = np.sum(alphas, axis=(2, 3), keepdims=True)  # lines 122-124
        const = const + (const == 0.0).astype(const.dtype)  # lines 125-126
        alphas = alphas / const  # line 127
        weights = np.maximum(first, 0)  # line 132: activation_modifier = K.relu
        dlw = np.sum(weights * alphas, axis=(2, 3), keepdims=True)  # lines 133-137
        cam = np.maximum(np.sum(dlw * a, axis=1), 0)  # lines 139-141 (channel axis)
        if expand:  # lines 149-150: scipy zoom, order 1, factors float(H)/h
            _, h, w = cam.shape
            cam = zoom(cam, (1.0, float(size[0]) / h, float(size[1]) / w), order=1)
        if norm:  # line 145 / 152: utils.normalize (utils/__init__.py 73-86)
            hi = np.max(cam, axis=(1, 2), keepdims=True)
            lo = np.min(cam, axis=(1, 2), keepdims=True)
            cam = (cam - lo) / (hi - lo + TF_KERAS_VIS_EPS)
    return cam


def tf_keras_vis_grad_cam_pp(
    model: Any, x: Any, target: Any, layer: Any, input_size: Any, score: Any,
    *, expand_cam: bool = True, normalize_cam: bool = True,
) -> np.ndarray:
    """tf-keras-vis 0.8.7's ``GradcamPlusPlus(model)(score, x)`` with its defaults
    (``tf_keras_vis/gradcam_plus_plus.py`` 84-155, read, not run: tf-keras-vis is
    cross-checked on a Keras model in the ONNX issue's Keras step). (N, H, W) (or
    (N, h, w) with ``expand_cam=False``), in the model's dtype (float64 here).

    In order: ``score_values = exp(score)`` per image (105-106); ``first = e^y·g``,
    ``second = first·g``, ``third = second·g`` (110-112); ``global_sum = Σ_ij A`` (114-116);
    ``denom = 2·second + third·global_sum``, plus 1 where ``second == 0`` (118-119);
    ``α = second / denom`` (120); **α normalised per channel**: divided by Σ_ij α, plus 1
    where that sum is 0 (122-127); ``w = Σ_ij ReLU(first)·α`` (132-137); the map
    ``Σ_k w A`` and ReLU (139-141); then (``expand_cam``) ``scipy.ndimage.zoom(cam,
    (1, H/h, W/w), order=1)`` (149-150: corner-aligned bilinear, like the Grad-CAM
    convention) and (``normalize_cam``) ``(m − min) / (max − min + 1e-7)``
    (``utils/__init__.py`` 73-86).

    The score is the model output at the class (``CategoricalScore``): for a Keras
    classifier ending in softmax, p_c — hence ``score=None`` means ``"softmax"``.

    **What the library returns vs what the paper says**: (1) α is normalised per channel
    (the authors' code does it; eq. 19 does not): the map differs from eq. 19's by mm
    0.01–0.03 on SmallCNN, and under GAP → FC it *is* Grad-CAM with ReLU'd gradients
    (Lerma & Lucas, arXiv 2205.10838); (2) the e^y factor is kept in w (the paper's
    literal eq. 5; cancels in the min-max); (3) with the softmax output, Y = exp(p_c) is
    not the paper's Y = exp(S_c), so eq. 19 is not the right closed form for it. In float32
    (a Keras model's usual dtype) e^y overflows for y > 88.7 (NaN maps); this convention
    works in float64 and raises ``ValueError`` where e^y overflows float64 (y > 709.78).
    """
    return _tf_keras_vis_pp(model, x, target, layer, input_size,
                            "softmax" if score is None else score, expand_cam, normalize_cam,
                            "tf-keras-vis")


def authors_code(
    model: Any, x: Any, target: Any, layer: Any, input_size: Any, score: Any,
    *, expand_cam: bool = True, normalize_cam: bool = True,
) -> np.ndarray:
    """The authors' released code (adityac94/Grad_CAM_plus_plus, ``misc/utils.py``
    ``grad_CAM_plus``), as tf-keras-vis reproduces it: the same function as
    :func:`tf_keras_vis_grad_cam_pp` (α normalised per channel, e^S kept), except that
    ``score=None`` means ``"logit"`` — the script differentiates ``cost = vgg.fc8 *
    label_vector``, VGG's pre-softmax fc8, and multiplies by ``tf.exp(cost)`` at the label.

    Where the released script itself differs (it is TF1 code for one 224² VGG-16 image,
    not a library to call): it sets the α denominator to 1 where it is 0 (tf-keras-vis: +1
    where the second derivative is 0 — the same except where 2 + S g = 0 exactly), does not
    guard the normalisation (a channel with g ≡ 0 gives 0/0 = NaN there: SmallCNN
    features.5 reproduces it; here α = 0), and post-processes with ReLU, division by the
    max and ``skimage.transform.resize`` to 224² (here: tf-keras-vis's zoom and min-max).
    """
    return _tf_keras_vis_pp(model, x, target, layer, input_size,
                            "logit" if score is None else score, expand_cam, normalize_cam,
                            "authors-code")


CONVENTIONS: dict[str, Callable[..., np.ndarray]] = {
    "npcam": npcam_grad_cam_pp,
    "pytorch-grad-cam": pytorch_grad_cam_pp,
    "torchcam": torchcam_grad_cam_pp,
    "tf-keras-vis": tf_keras_vis_grad_cam_pp,
    "authors-code": authors_code,
}
