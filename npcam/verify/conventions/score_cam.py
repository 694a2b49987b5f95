r"""Score-CAM as each library computes it: pytorch-grad-cam 1.5.7, torchcam 0.5.0,
tf-keras-vis 0.8.7 and the authors' code (haofanwang/Score-CAM), beside npcam's own.

The paper (Wang et al. 2020, arXiv 1910.01279 v2): H^k = s(Up(A^k)) (half-pixel bilinear
upsampling, then a min-max to [0, 1]), C(A^k) = f_c(X ∘ H^k) − f_c(X_b) with f_c the
class probability (§ 3.2), α = softmax over channels (Algorithm 1 of v2),
L = ReLU(Σ_k α_k A^k). What each library changes (``../shared/notes/cam-family.md`` § 6;
SmallCNN, float64):

==================== =========================================================================
convention           departures from the paper
==================== =========================================================================
``pytorch-grad-cam`` logit; corner-aligned upsampling, min-max with ε 1e-8; no baseline;
                     float32 scores; then its ReLU / min-max / OpenCV resize
``torchcam``         logit; min-max (ε 1e-8) at the layer's resolution *before* half-pixel
                     upsampling (masks 0.28–0.44 from pytorch-grad-cam's); baseline = the
                     unmasked input's logit (cancels)
``tf-keras-vis``     class softmax of the model output; corner-aligned zoom; no channel
                     softmax, no baseline; float32 weights
``authors-code``     v1: probability weights without channel softmax, constant channels
                     skipped, the map built at input resolution
==================== =========================================================================

Each function has the signature of :func:`npcam.conventions.cam`'s conventions
(``fn(model, x, target, layer, input_size, score, *, options)``) and returns what the
library returns, in its shape, dtype and scaling. Masked inputs are built and run
``batch_size`` at a time (a memory bound; the libraries' own chunk sizes do not change
their results either).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.ndimage import zoom

from ...image import upsample
from ...image.resize import interpolation_matrices
from ...methods._core import LayerActivations, layer_activations
from ...methods._passes import check_batch_size, forward_scores
from ...methods.score_cam import _image_batch, _Outputs, score_cam
from ...nn import functional
from ._common import _check_bool, _size, _weighted_sum
from .pytorch_grad_cam import _pgc_scale_cam_image
from .tf_keras_vis import TF_KERAS_VIS_EPS
from .torchcam import TORCHCAM_EPS

__all__ = [
    "CONVENTIONS",
    "PYTORCH_GRAD_CAM_SCORE_CAM_EPS",
    "authors_code_score_cam",
    "npcam_score_cam",
    "pytorch_grad_cam_score_cam",
    "tf_keras_vis_score_cam",
    "torchcam_score_cam",
]

#: pytorch_grad_cam/score_cam.py line 37: ``(upsampled - mins) / (maxs - mins + 1e-8)``
PYTORCH_GRAD_CAM_SCORE_CAM_EPS = 1e-8


# --------------------------------------------------------------------- shared steps
def _layer(
    model: Any, x: Any, target: Any, layer: str | None, score: str
) -> tuple[np.ndarray, LayerActivations]:
    """The input as (N, C, H, W) and the layer's A, c and y^c (one target per image)."""
    xa = _image_batch(x)
    return xa, layer_activations(model, xa, target, layer, score, allow_all=False)


def _resize_matrices(
    a: np.ndarray, size: tuple[int, int], align_corners: bool
) -> Callable[[np.ndarray], np.ndarray]:
    """``up(maps (m, h, w)) -> (m, H, W)``: bilinear ``F.interpolate`` (npcam.upsample's
    product) with half-pixel or aligned corners."""
    r_h, r_w = interpolation_matrices(a.shape[2:], size, "bilinear", align_corners)
    return lambda maps: r_h @ (maps @ r_w.T)


def _masked_outputs(
    model: Any,
    xa: np.ndarray,
    k: int,
    rows: np.ndarray,
    masks_of: Callable[[np.ndarray], np.ndarray],
    score: str,
    batch_size: int,
    scale: float = 1.0,
) -> np.ndarray:
    """Every class's output (len(rows), C) for the masked inputs ``scale · (H ∘ X)`` of the
    flat rows ``n·K + k``, built chunk by chunk from ``masks_of(rows) -> (m, H, W)``."""

    def make_inputs(start: int, stop: int) -> np.ndarray:
        chunk = rows[start:stop]
        inputs = masks_of(chunk)[:, None] * xa[chunk // k]
        return inputs if scale == 1.0 else scale * inputs

    return forward_scores(_Outputs(model), rows.size, make_inputs, score, batch_size)


def _pick(outputs: np.ndarray, target: np.ndarray, k: int, rows: np.ndarray) -> np.ndarray:
    """The target class's column of each row's outputs."""
    return outputs[np.arange(rows.size), target[rows // k]]


def _class_softmax(outputs: np.ndarray) -> np.ndarray:
    """``softmax`` over the classes (the libraries' ``K.softmax`` / ``F.softmax``)."""
    return functional.softmax_forward(outputs)[0]


def _softmax_float32(s: np.ndarray) -> np.ndarray:
    """``torch.nn.Softmax(dim=-1)`` of a float32 (N, K) tensor, in float32 as ATen's
    ``_vec_softmax_lastdim`` computes it: exp(s − max), then times 1/Σ."""
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e * (np.float32(1.0) / e.sum(axis=1, keepdims=True, dtype=np.float32))


def _torchcam_normalize(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """torchcam's ``_CAM._normalize`` (``core.py`` 193-200): ``a -= min``; ``a /= max + 1e-8``
    (the max of the shifted values)."""
    a = a - a.min(axis=axes, keepdims=True)
    return a / (a.max(axis=axes, keepdims=True) + TORCHCAM_EPS)


def _torchcam_map(weights: np.ndarray, a: np.ndarray, normalized: bool) -> np.ndarray:
    """torchcam's ``compute_cams`` (``core.py`` 290-305): ``nansum(w A, dim=1)``, ReLU
    (``ScoreCAM._relu = True``, ``activation.py`` 166), ``_normalize`` over (h, w)."""
    cam = np.maximum(_weighted_sum(weights, a), 0.0)
    return _torchcam_normalize(cam, (1, 2)) if normalized else cam


def _softmax_channels(c: np.ndarray) -> np.ndarray:
    e = np.exp(c - c.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ------------------------------------------------------------------------- npcam
def npcam_score_cam(
    model: Any,
    x: Any,
    target: Any,
    layer: str | None,
    input_size: Any,
    score: str | None,
    *,
    channel_softmax: bool = True,
    baseline: Any = None,
    align_corners: bool = False,
    normalize_before_upsample: bool = False,
    batch_size: int = 32,
) -> np.ndarray:
    """npcam's own convention: :func:`npcam.score_cam`'s ``cam`` (the paper's v2 by
    default, ``score=None`` meaning ``"softmax"``, the class probability) upsampled with
    half-pixel bilinear interpolation to ``input_size`` (default x's size); no
    normalisation. The options are :func:`npcam.score_cam`'s. Returns (N, H, W) float64."""
    r = score_cam(
        model, x, target, layer, score="softmax" if score is None else score,
        channel_softmax=channel_softmax, baseline=baseline, align_corners=align_corners,
        normalize_before_upsample=normalize_before_upsample, batch_size=batch_size,
    )
    size = _size(np.shape(x)[-2:] if input_size is None else input_size, True, "npcam")
    return upsample(r.cam, size)


# -------------------------------------------------------------- pytorch-grad-cam
def pytorch_grad_cam_score_cam(
    model: Any,
    x: Any,
    target: Any,
    layer: str | None,
    input_size: Any,
    score: str | None,
    *,
    batch_size: int = 16,
) -> np.ndarray:
    """pytorch-grad-cam's ``ScoreCAM(model, [layer])(x, targets)`` (grad-cam 1.5.7) for one
    target layer. Returns (N, H, W) float32 in [0, 1].

    In order (``pytorch_grad_cam/score_cam.py``):

    1. lines 24-29: ``nn.UpsamplingBilinear2d(size=x.shape[-2:])`` — bilinear with
       **aligned corners** (``align_corners=True``), to the input's size;
    2. lines 31-37: per channel ``(U − min) / (max − min + 1e-8)``;
    3. lines 39-53: the masked inputs ``x · H`` (no baseline), run 16 at a time
       (``batch_size``, which changes nothing), scored by ``ClassifierOutputTarget``: the
       model output at the class, i.e. the **logit** (``score=None``);
    4. line 54: ``torch.Tensor(scores)`` — the default dtype, **float32** even for a
       float64 model (reproduced: the scores are rounded to float32, then the softmax
       runs in float32);
    5. line 56: ``Softmax(dim=-1)`` **over the channels**, float32 weights;
    6. ``base_cam.py``: ``(w[:, :, None, None] · A).sum(1)`` (float64 A), ReLU,
       ``scale_cam_image`` with the resize to ``input_size`` (OpenCV ``INTER_LINEAR``, so
       half-pixel, unlike step 1), ReLU and ``scale_cam_image`` again — as
       :func:`~npcam.verify.conventions.pytorch_grad_cam`.

    What the library returns vs what the paper says: the logit instead of the probability
    (§ 3.2), corner-aligned instead of half-pixel upsampling of the masks, no baseline (it
    cancels under the channel softmax). Measured (max|lib − paper| / max|paper| for the
    weights, max |difference| for the masks): cam-family.md § 6's SmallCNN, features.6
    (16×16 → 32×32): masks 0.50 from the paper's and 0.44 from torchcam's, weights 7.2e-2
    (2.1e-2 at features.3, where the masks agree); ``tests/_support``'s SmallCNN (logits
    of order 1, targets 4 and 2): masks 0.26 / 0.28 from the paper's / torchcam's at
    features.6, 0.30 / 0.29 at features.5, weights 0.70, 0.33 and 0.48 at features.6, .5
    and .3 — the channel softmax of logits is far from that of probabilities. The float32
    scores move the weights by about 1.2e-7 relative from a float64 computation.
    """
    score = "logit" if score is None else score
    batch_size = check_batch_size(batch_size)
    xa, la = _layer(model, x, target, layer, score)
    size = _size(xa.shape[2:] if input_size is None else input_size, True, "pytorch-grad-cam")
    a = la.activations
    n, k = a.shape[:2]
    up = _resize_matrices(a, xa.shape[2:], align_corners=True)
    flat_a = a.reshape(n * k, *a.shape[2:])

    def masks_of(rows: np.ndarray) -> np.ndarray:
        u = up(flat_a[rows])
        lo = u.min(axis=(1, 2), keepdims=True)
        hi = u.max(axis=(1, 2), keepdims=True)
        return (u - lo) / (hi - lo + PYTORCH_GRAD_CAM_SCORE_CAM_EPS)

    rows = np.arange(n * k)
    scores = _pick(_masked_outputs(model, xa, k, rows, masks_of, score, batch_size), la.target, k, rows)
    weights = _softmax_float32(scores.astype(np.float32).reshape(n, k))
    cam = np.maximum(_weighted_sum(weights, a), 0)  # float32 weights times float64 A: float64
    cam = _pgc_scale_cam_image(cam, size)
    return _pgc_scale_cam_image(np.maximum(cam, 0), None)


# ---------------------------------------------------------------------- torchcam
def torchcam_score_cam(
    model: Any,
    x: Any,
    target: Any,
    layer: str | None,
    input_size: Any,
    score: str | None,
    *,
    batch_size: int = 32,
    normalized: bool = True,
) -> np.ndarray:
    """torchcam's ``ScoreCAM`` (torchcam 0.5.0, ``torchcam/methods/activation.py``
    107-285): the first (only) tensor of ``cam_extractor(class_idx, scores)``, (N, h, w)
    float64 at the layer's resolution (torchcam does not resize; ``input_size`` must be
    None).

    In order:

    1. ``_get_weights`` (279): ``_normalize`` of A **at the layer's resolution**, per
       channel: ``A − min``, then ``/ (max + 1e-8)``;
    2. ``_masked_input_chunk`` / ``_upsample`` (188-199): the normalised map upsampled
       with ``F.interpolate(bilinear, align_corners=False)`` (half-pixel) to the input's
       size (when the sizes differ), times the input;
    3. ``_init_score_weights`` (217-227): the baseline is the score of the **unmasked
       input** X (not a black image);
    4. ``_get_score_weights`` (239-265): ``score(X ∘ H) − score(X)`` in chunks of
       ``batch_size``, softmax over the channels; the score is the model output at
       ``class_idx``, the **logit** (``score=None``);
    5. ``compute_cams`` (``core.py`` 290-305): ``nansum(w · A, dim=1)`` on the
       unnormalised A, ReLU, and with ``normalized=True`` (default) ``_normalize``.

    What the library returns vs what the paper says: the logit instead of the probability;
    normalise-then-upsample, so a peak between the layer's sample points is never 1 in
    the mask; the baseline is X itself (it cancels under the channel softmax: identical to
    1e-16 without it). Measured: cam-family.md § 6's SmallCNN, features.6: masks 0.44
    from the paper's order, weights rel 7.1e-2 from the paper's v2; ``tests/_support``'s
    SmallCNN (targets 4 and 2): masks 0.10 (features.6) and 0.21 (features.5) from the
    paper's, weights 0.65, 0.26 and 0.48 at features.6, .5 and .3. Its docstring's
    formula (``⊙ X_b``, normalise after U) is not what the code does.
    """
    score = "logit" if score is None else score
    batch_size = check_batch_size(batch_size)
    norm = _check_bool("normalized", normalized)
    _size(input_size, False, "torchcam", " (torchcam returns maps at the layer's resolution)")
    xa, la = _layer(model, x, target, layer, score)
    a = la.activations
    n, k = a.shape[:2]
    an = _torchcam_normalize(a, (2, 3)).reshape(n * k, *a.shape[2:])
    same = a.shape[2:] == xa.shape[2:]
    up = _resize_matrices(a, xa.shape[2:], align_corners=False)
    rows = np.arange(n * k)
    got = _pick(
        _masked_outputs(model, xa, k, rows, lambda r: an[r] if same else up(an[r]), score, batch_size),
        la.target, k, rows,
    )
    weights = _softmax_channels((got - np.repeat(la.scores, k)).reshape(n, k))
    return _torchcam_map(weights, a, norm)


# ------------------------------------------------------------------ tf-keras-vis
def tf_keras_vis_score_cam(
    model: Any,
    x: Any,
    target: Any,
    layer: str | None,
    input_size: Any,
    score: str | None,
    *,
    batch_size: int = 32,
    expand_cam: bool = True,
    normalize_cam: bool = True,
) -> np.ndarray:
    """tf-keras-vis's ``Scorecam.__call__`` (tf-keras-vis 0.8.7, ``tf_keras_vis/scorecam.py``)
    with its defaults (``max_N=None``: plain Score-CAM; the Faster Score-CAM channel
    pruning is not reproduced). Returns (N, H, W) (or (N, h, w) with ``expand_cam=False``)
    in the arrays' dtype, float64 here.

    ``score`` names **the model output tf-keras-vis is given** — npcam's score of every
    class —, to which the library applies its own class softmax (line 165:
    ``score(K.softmax(tf.constant(p)))``). ``score=None`` means ``"softmax"``: a Keras
    classifier that ends in softmax (as for tf-keras-vis's Grad-CAM, whose default score
    is the model output), which therefore gets the **softmax twice** (tf-keras-vis #47);
    ``score="logit"`` is a model that outputs logits (tf-keras-vis's ``ReplaceToLinear``
    modifier), for which the weight is the paper's class probability.

    In order:

    1. lines 119-126: ``scipy.ndimage.zoom(A, (1, H/h, W/w, 1), order=1, mode='nearest')``
       — order-1 spline with ``grid_mode=False``, i.e. bilinear with **aligned corners**
       (computed here channel by channel, which gives the same values);
    2. lines 129-138: per channel ``(U − min) / (max − min + K.epsilon())``, ε = 1e-7;
    3. lines 141-159: the masked inputs ``x · H`` (no baseline), ``model.predict``;
    4. lines 165-173: the class softmax of each prediction at the class, as
       ``np.float32`` weights — **no channel softmax**;
    5. lines 176-178: ``K.batch_dot(A, w)`` and ``K.relu``;
    6. lines 186-189 (``expand_cam=True``): ``zoom(cam, (1, H/h, W/w), order=1)``
       (corner-aligned) to ``input_size``, then ``normalize`` (``utils/__init__.py`` 73-86):
       ``(m − min) / (max − min + 1e-7)``; with ``expand_cam=False`` lines 180-183
       (normalised at the layer's resolution).

    What the library returns vs what the paper says: corner-aligned upsampling, weights
    without the channel softmax (v1's), the probability computed from the model output
    (twice for a softmax model). TensorFlow's ``batch_dot`` needs A and w in one dtype
    (float32 for a Keras model); here A is float64 and the float32 weights are widened.
    """
    score = "softmax" if score is None else score
    batch_size = check_batch_size(batch_size)
    expand = _check_bool("expand_cam", expand_cam)
    norm = _check_bool("normalize_cam", normalize_cam)
    xa, la = _layer(model, x, target, layer, score)
    if expand:
        size = _size(xa.shape[2:] if input_size is None else input_size, True, "tf-keras-vis")
    else:
        size = _size(input_size, False, "tf-keras-vis", " with expand_cam=False")
    a = la.activations
    n, k, h, w = a.shape
    big_h, big_w = xa.shape[2:]
    flat_a = a.reshape(n * k, h, w)

    def masks_of(rows: np.ndarray) -> np.ndarray:
        u = zoom(flat_a[rows], (1.0, big_h / h, big_w / w), order=1, mode="nearest")
        lo = u.min(axis=(1, 2), keepdims=True)
        hi = u.max(axis=(1, 2), keepdims=True)
        return (u - lo) / (hi - lo + TF_KERAS_VIS_EPS)

    rows = np.arange(n * k)
    probs = _class_softmax(_masked_outputs(model, xa, k, rows, masks_of, score, batch_size))
    weights = _pick(probs, la.target, k, rows).astype(np.float32).reshape(n, k)
    cam = np.maximum(np.einsum("nkhw,nk->nhw", a, weights.astype(a.dtype)), 0)
    if expand:
        cam = zoom(cam, (1.0, size[0] / h, size[1] / w), order=1)
    if norm:
        hi = cam.max(axis=(1, 2), keepdims=True)
        lo = cam.min(axis=(1, 2), keepdims=True)
        cam = (cam - lo) / (hi - lo + TF_KERAS_VIS_EPS)
    return np.asarray(cam)


# ------------------------------------------------------------------- authors' code
def authors_code_score_cam(
    model: Any,
    x: Any,
    target: Any,
    layer: str | None,
    input_size: Any,
    score: str | None,
    *,
    batch_size: int = 32,
) -> np.ndarray:
    """The authors' release, haofanwang/Score-CAM ``cam/scorecam.py`` (``ScoreCAM.forward``,
    the v1 algorithm), applied to each image. Returns (N, 1, H, W) float32 in [0, 1] at
    the input's resolution (``input_size`` must be None).

    ``score`` names the model output the code is given, to which it applies its own
    ``F.softmax`` over the classes; ``score=None`` means ``"logit"`` (the torchvision
    classifiers the code was written for), so the weight is the class probability.

    In order, for channel k of an image:

    1. ``F.interpolate(A^k, (H, W), bilinear, align_corners=False)`` (half-pixel);
    2. a channel whose upsampled map has ``max == min`` is **skipped**;
    3. ``(U − min) / (max − min)`` (no ε), the masked input ``x · H`` (no baseline);
    4. ``w_k = softmax(model(x · H))[c]`` — **no channel softmax**;
    5. ``score_saliency_map += w_k · U`` — the map is built from the upsampled, unnormalised
       A^k, at the **input's resolution**, accumulated in a ``torch.zeros((1, 1, H, W))``
       buffer: the default dtype, float32 (each float64 term is added in float64 and the
       sum rounded to float32, as torch's in-place mixed-dtype add does — reproduced, in
       channel order, which is why channels are added one after the other here);
    6. ``F.relu``, then ``(m − min) / (max − min)`` in float32, no ε. For a constant map
       the code **returns None**; npcam raises ``ValueError`` naming the image.

    What the code returns vs what the paper (v2) says: no channel softmax (v1's weights,
    haofanwang/Score-CAM #6, #17), ReLU after the upsampling instead of at the layer, and
    the constant-channel skip; vs Up(paper-v2 map), min-max normalised: 1.7e-2 on
    cam-family.md's SmallCNN at features.6; on ``tests/_support``'s SmallCNN 5.2e-2
    (features.6), 0.43 (features.5, signed: the ReLU after the upsampling differs most)
    and 4.4e-2 (features.3). The code as released also calls ``.cuda()`` unconditionally
    and explains one image per call (``output[0]``).
    """
    score = "logit" if score is None else score
    batch_size = check_batch_size(batch_size)
    _size(input_size, False, "authors-code", " (the authors' code builds its map at the input's resolution)")
    xa, la = _layer(model, x, target, layer, score)
    a = la.activations
    n, k = a.shape[:2]
    up = _resize_matrices(a, xa.shape[2:], align_corners=False)
    flat_a = a.reshape(n * k, *a.shape[2:])

    # step 2, chunk by chunk: which channels the code skips (decided on the upsampled map)
    kept: list[np.ndarray] = []
    for start in range(0, n * k, batch_size):
        u = up(flat_a[start : start + batch_size])
        kept.append(start + np.flatnonzero(u.max(axis=(1, 2)) != u.min(axis=(1, 2))))
    keep = np.concatenate(kept)

    def masks_of(rows: np.ndarray) -> np.ndarray:
        u = up(flat_a[rows])
        lo = u.min(axis=(1, 2), keepdims=True)
        return (u - lo) / (u.max(axis=(1, 2), keepdims=True) - lo)

    probs = _class_softmax(_masked_outputs(model, xa, k, keep, masks_of, score, batch_size))
    w = _pick(probs, la.target, k, keep)
    out = np.zeros((n, 1, *xa.shape[2:]), dtype=np.float32)
    for start in range(0, keep.size, batch_size):
        rows = keep[start : start + batch_size]
        terms = w[start : start + batch_size, None, None] * up(flat_a[rows])  # w_k · U^k, float64
        for row, term in zip(rows, terms, strict=True):
            # one channel after the other: the float32 rounding of each partial sum is the
            # code's (a float64 term added into the float32 buffer)
            m = row // k
            out[m, 0] = (out[m, 0].astype(np.float64) + term).astype(np.float32)
    out = np.maximum(out, np.float32(0))
    lo = out.min(axis=(1, 2, 3), keepdims=True)
    hi = out.max(axis=(1, 2, 3), keepdims=True)
    flat = np.flatnonzero(lo.ravel() == hi.ravel())
    if flat.size:
        raise ValueError(
            f"the authors' Score-CAM map of image {int(flat[0])} is constant after its ReLU, "
            "for which their code returns None instead of a map."
        )
    return (out - lo) / (hi - lo)


#: convention name -> function, for :func:`npcam.conventions.cam` ("score-cam")
CONVENTIONS: dict[str, Callable[..., np.ndarray]] = {
    "npcam": npcam_score_cam,
    "pytorch-grad-cam": pytorch_grad_cam_score_cam,
    "torchcam": torchcam_score_cam,
    "tf-keras-vis": tf_keras_vis_score_cam,
    "authors-code": authors_code_score_cam,
}
