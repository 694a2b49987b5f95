r"""Other libraries' final Grad-CAM maps, reproduced from npcam's raw quantities.

Grad-CAM implementations agree on the paper's two equations — ``α^c_k`` from the
gradients, ``M^c = Σ_k α^c_k A^k`` — and differ in everything around them: which score
they differentiate, mean or sum over positions, whether and when the ReLU is applied,
the normalisation and its ε, the resize function and its pixel alignment, the output
layout and dtype. Each *convention* below is one small pure function of npcam's raw
arrays (``activations`` A and ``gradients`` ∂y/∂A of the target layer, both
``(N, K, h, w)``, plus the input size) that returns what that library returns, in its
shape, dtype and scaling, step for step in the library's order:

==================== ================================================= ====================
convention           upstream (version checked)                        returns
==================== ================================================= ====================
``npcam``            this package: ReLU, bilinear (half-pixel) resize  (N, H, W) float64
``captum``           captum 0.9.0 ``LayerGradCam`` (+ ``interpolate``) (N, 1, h, w) float64
``pytorch-grad-cam`` grad-cam 1.5.7 ``GradCAM`` (OpenCV resize)        (N, H, W) float32
``torchcam``         torchcam 0.5.0 ``GradCAM`` (ε = 1e-8 since 0.4.0) (N, h, w) float64
``tf-keras-vis``     tf-keras-vis 0.8.7 ``Gradcam`` (scipy zoom)       (N, H, W) float64
``grad-cam-lua``     ramprs/grad-cam (the paper's Torch7 release)      (N, 1, H, W) float32
==================== ================================================= ====================

dtype rule: where a library fixes the dtype (pytorch-grad-cam's ``np.float32``, the Lua
script's ``:float()``) so does its convention; where the dtype follows the model's
(captum, torchcam, tf-keras-vis), the convention keeps the dtype of the arrays it is given
— float64 from npcam, i.e. what the library returns for a float64 model. Pass float32
arrays to the post-processing functions to imitate a float32 model.

:func:`grad_cam` and :func:`guided_grad_cam` run :func:`npcam.grad_cam` (and
:func:`npcam.guided_backprop`) with the convention's default score and apply the
convention. ``docs/conventions.md`` tabulates every difference with upstream references.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.ndimage import zoom

from ..._validate import as_float_array, as_pair, describe
from ...image import upsample
from ...methods import grad_cam as _grad_cam_module
from ...methods import gradients as _gradients

__all__ = [
    "DEFAULT_SCORES",
    "GUIDED_NAMES",
    "NAMES",
    "captum_guided_grad_cam",
    "captum_layer_grad_cam",
    "grad_cam",
    "grad_cam_lua",
    "grad_cam_lua_guided",
    "guided_grad_cam",
    "npcam_grad_cam",
    "npcam_guided_grad_cam",
    "opencv_resize_linear",
    "pytorch_grad_cam",
    "tf_keras_vis_gradcam",
    "torch7_scale_bilinear",
    "torchcam_gradcam",
]

NAMES = ("npcam", "captum", "pytorch-grad-cam", "torchcam", "tf-keras-vis", "grad-cam-lua")
#: Conventions whose library ships Guided Grad-CAM.
GUIDED_NAMES = ("npcam", "captum", "grad-cam-lua")
#: The score each library differentiates by default, for a model that outputs logits.
DEFAULT_SCORES = {
    "npcam": "logit",
    "captum": "logit",  # the forward output at `target`
    "pytorch-grad-cam": "logit",  # ClassifierOutputTarget: the raw output
    "torchcam": "logit",  # the `scores` the user passes: the model output
    "tf-keras-vis": "softmax",  # the model output; Keras classifiers end in softmax
    "grad-cam-lua": "logit",  # the script removes the softmax layer
}

# torchcam >= 0.4.0 (_CAM._normalize); releases up to 0.3.2 divide by the bare max.
TORCHCAM_EPS = 1e-8
# pytorch_grad_cam.utils.image.scale_cam_image; tf.keras.backend.epsilon() by default.
PYTORCH_GRAD_CAM_EPS = 1e-7
TF_KERAS_VIS_EPS = 1e-7


# ------------------------------------------------------------------------ validation
def _maps_pair(activations: Any, gradients: Any) -> tuple[np.ndarray, np.ndarray]:
    """A and ∂y/∂A as (N, K, h, w) arrays of one shape; float32 stays float32."""
    arrays = []
    for name, value in (("activations", activations), ("gradients", gradients)):
        dtype = np.float32 if getattr(value, "dtype", None) == np.float32 else np.float64
        arr = as_float_array(name, value, ndim=4, dtype=dtype)
        if 0 in arr.shape:
            raise ValueError(f"{name} must be a non-empty (N, K, h, w) array, got {arr.shape}.")
        arrays.append(arr)
    a, g = arrays
    if a.shape != g.shape:
        raise ValueError(
            f"activations and gradients must have the same shape, got {a.shape} and {g.shape}."
        )
    if a.dtype != g.dtype:
        raise ValueError(
            f"activations and gradients must have the same dtype, got {a.dtype} and {g.dtype}."
        )
    return a, g


def _guided_array(guided: Any, n: int, dtype: type) -> np.ndarray:
    arr = as_float_array("guided", guided, ndim=4, dtype=dtype)
    if arr.shape[0] != n or 0 in arr.shape:
        raise ValueError(
            f"guided must be a non-empty (N, C, H, W) array with N = {n} like the "
            f"activations, got shape {arr.shape}."
        )
    return arr


def _size(input_size: Any, needed: bool, convention: str, why: str = "") -> tuple[int, int]:
    if not needed:
        if input_size is not None:
            raise ValueError(
                f"input_size must be None for convention {convention!r}{why}, "
                f"got {input_size!r}."
            )
        return (0, 0)
    if input_size is None:
        raise ValueError(f"input_size (H, W) is required for convention {convention!r}.")
    return as_pair("input_size", input_size)


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {describe(value)}.")
    return bool(value)


def _weighted_sum(weights: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``Σ_k weights_k A^k``: (N, K) with (N, K, h, w) -> (N, h, w), as the libraries
    write it (broadcast product, then a sum over the channel axis)."""
    return (weights[:, :, None, None] * a).sum(axis=1)


# ---------------------------------------------------------------------- npcam itself
def npcam_grad_cam(activations: Any, gradients: Any, input_size: Any = None) -> np.ndarray:
    """npcam's own convention: ``ReLU(Σ_k α_k A^k)`` with α the spatial mean of the
    gradients, upsampled bilinearly with half-pixel centres (``npcam.image.upsample``,
    = ``F.interpolate(..., "bilinear", align_corners=False)``) to ``input_size``; no
    normalisation. Returns (N, H, W) float64."""
    a, g = _maps_pair(activations, gradients)
    size = _size(input_size, True, "npcam")
    cam = np.maximum(_weighted_sum(g.mean(axis=(2, 3)), a), 0.0)
    return upsample(cam, size, mode="bilinear")


def npcam_guided_grad_cam(guided: Any, activations: Any, gradients: Any) -> np.ndarray:
    """npcam's Guided Grad-CAM: the npcam map upsampled (bilinear, half-pixel) to the
    guided-backprop size, times the guided-backprop gradient, broadcast over the input
    channels (as :func:`npcam.guided_grad_cam`). Returns (N, C, H, W) float64."""
    a, g = _maps_pair(activations, gradients)
    gb = _guided_array(guided, a.shape[0], np.float64)
    return npcam_grad_cam(a, g, gb.shape[2:])[:, None] * gb


# -------------------------------------------------------------------------- captum
_CAPTUM_MODES = ("nearest", "bilinear")


def _captum_interpolate(attr: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """``LayerAttribution.interpolate(attr, size, mode)`` = ``F.interpolate(attr, size,
    mode=mode)`` on (N, C, h, w): every channel resized alike (align_corners unset)."""
    n, c, h, w = attr.shape
    out = upsample(attr.reshape(n * c, h, w), size, mode=mode)
    return out.reshape(n, c, *size).astype(attr.dtype, copy=False)


def _check_captum_mode(interpolate_mode: Any, allow_none: bool) -> str | None:
    if interpolate_mode is None and allow_none:
        return None
    if interpolate_mode not in _CAPTUM_MODES:
        allowed = ("None", *_CAPTUM_MODES) if allow_none else _CAPTUM_MODES
        raise ValueError(
            f"interpolate_mode must be one of {', '.join(allowed)} (the modes npcam "
            f"reproduces exactly), got {interpolate_mode!r}."
        )
    return interpolate_mode


def captum_layer_grad_cam(
    activations: Any,
    gradients: Any,
    input_size: Any = None,
    *,
    relu_attributions: bool = False,
    attr_dim_summation: bool = True,
    interpolate_mode: str | None = None,
) -> np.ndarray:
    """captum's ``LayerGradCam.attribute`` (captum 0.9.0,
    ``captum/attr/_core/layer/grad_cam.py``, lines 212-238), optionally followed by
    ``LayerAttribution.interpolate`` (``captum/attr/_utils/attribution.py``, line 436).

    * α: the mean of the gradients over the spatial axes (``torch.mean(..., keepdim=True)``);
    * the map ``Σ_k α_k A^k`` is summed over dim 1 with ``keepdim=True``: shape (N, 1, h, w)
      (with ``attr_dim_summation=False`` the per-channel ``α_k A^k``, (N, K, h, w));
    * **signed** by default: the ReLU is applied only with ``relu_attributions=True``;
    * no resizing and no normalisation. ``interpolate_mode`` (``"nearest"`` — captum's
      default for ``interpolate`` — or ``"bilinear"``) additionally applies
      ``LayerAttribution.interpolate(attr, input_size, interpolate_mode)``, which is
      ``F.interpolate`` with ``align_corners`` unset (half-pixel for bilinear, torch's
      legacy index rule for nearest).

    The dtype is the model's (here: that of the arrays given).
    """
    a, g = _maps_pair(activations, gradients)
    relu = _check_bool("relu_attributions", relu_attributions)
    summation = _check_bool("attr_dim_summation", attr_dim_summation)
    mode = _check_captum_mode(interpolate_mode, allow_none=True)
    size = _size(input_size, mode is not None, "captum", " without interpolate_mode")
    scaled = g.mean(axis=(2, 3), keepdims=True) * a
    if summation:
        scaled = scaled.sum(axis=1, keepdims=True)
    if relu:
        scaled = np.maximum(scaled, 0)
    if mode is not None:
        scaled = _captum_interpolate(scaled, size, mode)
    return scaled


def captum_guided_grad_cam(
    guided: Any, activations: Any, gradients: Any, *, interpolate_mode: str = "nearest"
) -> np.ndarray:
    """captum's ``GuidedGradCam.attribute`` (captum 0.9.0,
    ``captum/attr/_core/guided_grad_cam.py``, lines 71-229): ``LayerGradCam`` with
    ``relu_attributions=True`` (line 191), (N, 1, h, w), resized to the input's spatial
    size by ``LayerAttribution.interpolate`` with ``interpolate_mode`` (default
    ``"nearest"``, line 76), times the guided-backprop attribution (N, C, H, W) — the
    single map broadcast over the C input channels. Returns (N, C, H, W).

    captum's guided backpropagation (``guided_backprop_deconvnet.py``,
    ``ModifiedReluGradientAttribution._backward_hook``) replaces each ``nn.ReLU``'s input
    gradient ``g·[x > 0]`` by its ReLU: ``g·[x > 0]·[g > 0]``, npcam's guided rule.
    """
    a, g = _maps_pair(activations, gradients)
    mode = _check_captum_mode(interpolate_mode, allow_none=False)
    gb = _guided_array(guided, a.shape[0], a.dtype.type)
    cam = captum_layer_grad_cam(a, g, gb.shape[2:], relu_attributions=True, interpolate_mode=mode)
    return gb * cam


# ---------------------------------------------------------------- pytorch-grad-cam
def _opencv_taps(
    in_size: int, out_size: int, clamp_weight: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's INTER_LINEAR taps along one axis (``resizeGeneric_``'s coefficient loop):
    ``f = float32((d + 0.5) * scale - 0.5)`` with ``scale = 1 / (out / in)`` in float64,
    ``s = floor(f)``, ``f -= s``, weights ``(1 - f, f)`` in float32. Horizontally
    (``clamp_weight``) a tap left of 0 becomes (0, weight 0) and one at or right of
    ``in - 1`` becomes (in - 1, weight 0); vertically the weight is kept and only the
    row indices are clipped to ``[0, in - 1]``."""
    scale = 1.0 / (float(out_size) / float(in_size))
    f = ((np.arange(out_size) + 0.5) * scale - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    f = f - s.astype(np.float32)  # exact: f lies in [s, s + 1)
    if clamp_weight:
        low, high = s < 0, s >= in_size - 1
        f[low | high] = 0.0
        s = np.where(low, 0, np.where(high, in_size - 1, s))
    i0 = np.clip(s, 0, in_size - 1)
    i1 = np.clip(s + 1, 0, in_size - 1)
    return i0, i1, np.float32(1.0) - f, f


def opencv_resize_linear(maps: Any, size: Any) -> np.ndarray:
    """``cv2.resize(m, (W, H))`` (``INTER_LINEAR``) of each float32 map, (N, h, w) ->
    (N, H, W) float32, for enlargement (H >= h, W >= w).

    OpenCV's generic path (``modules/imgproc/src/resize.cpp``: ``resizeGeneric_``,
    ``HResizeLinear``, ``VResizeLinear``) for float32 images: half-pixel centres; each
    source row is first interpolated horizontally into a float32 buffer
    (``S[x0]·a0 + S[x1]·a1``), then rows are combined (``T[y0]·b0 + T[y1]·b1``), every
    product and sum rounded to float32 (no fused multiply-add). Bit-identical to
    opencv-python-headless 5.0.0.93 with ``cv2.ipp.setUseIPP(False)``; with Intel IPP
    enabled (the wheels' default) OpenCV takes IPP's resize, which differs by a few
    float32 ulps (≤ 2.1e-7 on maps in [0, 1], measured on an AVX-512 machine).
    """
    arr = as_float_array("maps", maps, ndim=3, dtype=np.float32)
    out_h, out_w = as_pair("size", size)
    n, h, w = arr.shape
    if out_h < h or out_w < w:
        raise ValueError(
            f"size must not shrink the maps (OpenCV's shrinking paths are not reproduced), "
            f"got maps of {h}x{w} and size {out_h}x{out_w}."
        )
    x0, x1, a0, a1 = _opencv_taps(w, out_w, clamp_weight=True)
    y0, y1, b0, b1 = _opencv_taps(h, out_h, clamp_weight=False)
    rows = arr[:, :, x0] * a0 + arr[:, :, x1] * a1
    return rows[:, y0, :] * b0[:, None] + rows[:, y1, :] * b1[:, None]


def _pgc_scale_cam_image(cams: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """``scale_cam_image``: per map ``m - min`` then ``/ (1e-7 + max)`` in the maps' dtype,
    then (with a target size) ``cv2.resize`` of the float32 map; float32 out."""
    cams = cams - cams.min(axis=(1, 2), keepdims=True)
    cams = cams / (PYTORCH_GRAD_CAM_EPS + cams.max(axis=(1, 2), keepdims=True))
    if size is not None:
        cams = opencv_resize_linear(cams.astype(np.float32), size)
    return cams.astype(np.float32)


def pytorch_grad_cam(activations: Any, gradients: Any, input_size: Any = None) -> np.ndarray:
    """pytorch-grad-cam's ``GradCAM(model, [layer])(x, targets)`` (grad-cam 1.5.7) for one
    target layer. Returns (N, H, W) float32 in [0, 1].

    In order (``pytorch_grad_cam/``):

    1. ``grad_cam.py`` ``GradCAM.get_cam_weights``: α = ``np.mean(grads, axis=(2, 3))``;
    2. ``base_cam.py`` ``BaseCAM.get_cam_image``: ``(α[:, :, None, None] * A).sum(axis=1)``;
    3. ``BaseCAM.compute_cam_per_layer`` (line 171): ``np.maximum(cam, 0)``, then
       ``utils/image.py`` ``scale_cam_image(cam, (W, H))`` (lines 161-176): per map
       ``m - min(m)``, then ``/ (1e-7 + max)`` (the ε added to the max *after* the
       subtraction, in the model's dtype), then ``cv2.resize`` of the float32 map with the
       default ``INTER_LINEAR`` (:func:`opencv_resize_linear`);
    4. ``BaseCAM.aggregate_multi_layers`` (lines 177-181): ``np.maximum(., 0)``, the mean
       over the one layer, and ``scale_cam_image`` again (no resize), in float32.

    The score is the raw model output at the class (``ClassifierOutputTarget``, the
    default for ``targets=None`` with the argmax class): the logit for a logit model.

    Against grad-cam 1.5.7 on a float64 torch model (NumPy 2 promotion rules): identical
    with OpenCV's IPP off, ≤ 2.4e-7 apart with IPP on (its default); ≤ 3.6e-6 for a float32
    torch model, whose first normalisation runs in float32
    (``tests/optional/test_pytorch_grad_cam.py``).
    """
    a, g = _maps_pair(activations, gradients)
    size = _size(input_size, True, "pytorch-grad-cam")
    cam = np.maximum(_weighted_sum(g.mean(axis=(2, 3)), a), 0)
    cam = _pgc_scale_cam_image(cam, size)
    return _pgc_scale_cam_image(np.maximum(cam, 0), None)


# ------------------------------------------------------------------------- torchcam
def torchcam_gradcam(
    activations: Any, gradients: Any, input_size: Any = None, *, normalized: bool = True
) -> np.ndarray:
    """torchcam's ``GradCAM`` (torchcam 0.5.0, ``torchcam/methods/``) for one target layer:
    the first (only) tensor of the list ``cam_extractor(class_idx, scores)`` returns,
    (N, h, w) at the layer's resolution — torchcam does not resize.

    * ``gradient.py`` ``GradCAM._get_weights`` (line 129): α = ``grad.flatten(2).mean(-1)``;
    * ``core.py`` ``_CAM.compute_cams`` (lines 290-303): ``torch.nansum(α A, dim=1)``, ReLU
      (``_GradCAM`` sets ``self._relu = True``, ``gradient.py`` line 40), then with
      ``normalized=True`` (the default) ``_CAM._normalize`` (lines 193-200):
      ``m -= min``; ``m /= max + 1e-8`` (the max of the already shifted map). The ε exists
      since torchcam 0.4.0; releases up to 0.3.2 divide by the bare max.

    The score is whatever ``scores`` the user passes — the model output, i.e. the logit.
    The dtype is the model's (here: that of the arrays given). ``input_size`` must be None.
    """
    a, g = _maps_pair(activations, gradients)
    norm = _check_bool("normalized", normalized)
    _size(input_size, False, "torchcam", " (torchcam returns maps at the layer's resolution)")
    n, k = a.shape[:2]
    cam = np.maximum(_weighted_sum(g.reshape(n, k, -1).mean(axis=-1), a), 0)
    if norm:
        cam = cam - cam.min(axis=(1, 2), keepdims=True)
        cam = cam / (cam.max(axis=(1, 2), keepdims=True) + TORCHCAM_EPS)
    return cam


# --------------------------------------------------------------------- tf-keras-vis
def tf_keras_vis_gradcam(
    activations: Any,
    gradients: Any,
    input_size: Any = None,
    *,
    expand_cam: bool = True,
    normalize_cam: bool = True,
) -> np.ndarray:
    """tf-keras-vis's ``Gradcam.__call__`` (tf-keras-vis 0.8.7, ``tf_keras_vis/gradcam.py``)
    with its defaults. Returns (N, H, W) (or (N, h, w) with ``expand_cam=False``).

    * ``Gradcam._calculate_cam`` (lines 121-128): α = ``K.mean`` of the gradients over the
      spatial axes, ``np.sum(A * α, axis=channels)``, then ``activation_modifier``, by
      default ``K.relu``;
    * ``expand_cam=True`` (lines 113-114): **resize first**, with
      ``scipy.ndimage.zoom(cam, factors, order=1)`` and factors ``float(H) / h`` from
      ``utils.zoom_factor`` — order-1 spline with ``grid_mode=False``, i.e. bilinear with
      corners aligned (= ``F.interpolate(..., align_corners=True)``);
    * ``normalize_cam=True`` (line 116): ``utils.normalize`` (``utils/__init__.py``, lines
      73-86), per map ``(m - min) / (max - min + K.epsilon())`` with ``K.epsilon()`` =
      1e-7 unless changed with ``keras.backend.set_epsilon``. With ``expand_cam=False``
      the map is normalised at the layer's resolution (lines 106-110).

    The score is the model's output at the class (``CategoricalScore``): the softmax
    probability for a classifier that ends in softmax (npcam's ``score="softmax"``), the
    logit after tf-keras-vis's ``ReplaceToLinear`` model modifier. The dtype is the
    model's (here: that of the arrays given).
    """
    a, g = _maps_pair(activations, gradients)
    expand = _check_bool("expand_cam", expand_cam)
    norm = _check_bool("normalize_cam", normalize_cam)
    size = _size(input_size, expand, "tf-keras-vis", " with expand_cam=False")
    cam = np.maximum(np.sum(a * g.mean(axis=(2, 3), keepdims=True), axis=1), 0)
    if expand:
        n, h, w = cam.shape
        cam = zoom(cam, (1.0, size[0] / h, size[1] / w), order=1)
    if norm:
        hi = cam.max(axis=(1, 2), keepdims=True)
        lo = cam.min(axis=(1, 2), keepdims=True)
        cam = (cam - lo) / (hi - lo + TF_KERAS_VIS_EPS)
    return cam


# ------------------------------------------------------------------- ramprs/grad-cam
def _torch7_scale_axis(src: np.ndarray, axis: int, out_size: int) -> np.ndarray:
    """torch/image ``generic/image.c`` ``Main_scaleLinear_rowcol`` along ``axis``, float32:
    for enlargement ``scale = float32(in - 1) / float32(out - 1)``, for each destination
    ``d < out - 1``: ``s = d · scale`` (float32), ``i = (long) s``, ``f = s - i``,
    ``dst = (1 - f)·src[i] + f·src[i + 1]``; the last destination copies the last source."""
    in_size = src.shape[axis]
    if out_size == in_size:
        return src.copy()
    if in_size == 1:
        return np.repeat(src, out_size, axis=axis)
    scale = np.float32(in_size - 1) / np.float32(out_size - 1)
    s = np.arange(out_size - 1, dtype=np.float32) * scale
    i = s.astype(np.int64)  # (long) truncation; s >= 0
    f = s - i.astype(np.float32)
    # i + 1 <= in - 1: s <= (out - 2)·scale, one whole step below in - 1.
    shape = [1] * src.ndim
    shape[axis] = out_size - 1
    f = f.reshape(shape)
    body = (np.float32(1.0) - f) * np.take(src, i, axis=axis) + f * np.take(src, i + 1, axis=axis)
    last = np.take(src, [in_size - 1], axis=axis)
    return np.concatenate([body, last], axis=axis)


def torch7_scale_bilinear(maps: Any, size: Any) -> np.ndarray:
    """Torch7's ``image.scale(src, W, H)`` (default mode ``'bilinear'``) of float32 maps,
    (..., h, w) -> (..., H, W) float32, for enlargement.

    torch/image ``init.lua`` ``scale`` calls ``image.scaleBilinear``, i.e.
    ``generic/image.c`` ``Main_scaleBilinear``: rows first (each row of the width axis
    resized into a float32 buffer), then columns, each with ``Main_scaleLinear_rowcol``
    — linear interpolation with **corners aligned**, computed in float32 arithmetic
    (compiled without fused multiply-add, as for baseline x86-64). Shrinking uses an area
    average in Torch7 and is not reproduced.
    """
    arr = as_float_array("maps", maps, ndim=(2, 3, 4), dtype=np.float32)
    out_h, out_w = as_pair("size", size)
    h, w = arr.shape[-2:]
    if out_h < h or out_w < w:
        raise ValueError(
            f"size must not shrink the maps (Torch7's area-averaging branch is not "
            f"reproduced), got maps of {h}x{w} and size {out_h}x{out_w}."
        )
    rows = _torch7_scale_axis(arr, arr.ndim - 1, out_w)
    return _torch7_scale_axis(rows, arr.ndim - 2, out_h)


def _lua_map(a: np.ndarray, g: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    weights = g.sum(axis=(2, 3))  # Σ_ij, not the mean: Z·α
    m = _weighted_sum(weights, a)[:, None]
    m = m * (m > 0)  # map:cmul(torch.gt(map, 0)); negative entries become -0.0
    return torch7_scale_bilinear(m.astype(np.float32), size)


def grad_cam_lua(activations: Any, gradients: Any, input_size: Any = None) -> np.ndarray:
    """The paper's original Torch7 release, ramprs/grad-cam: ``misc/utils.lua``
    ``utils.grad_cam`` (commit 08fd35fa17c37c696dd9cb5719a15485e43c467d) as called by
    ``classification.lua`` (commit 09558c92897d4f6593a28bf9dc8f973f8a2889c8).
    Returns (N, 1, H, W) float32: the script's (1, H, W) ``gcam`` per image, stacked.

    * the score is the logit: the script removes the network's final softmax module
      (``cnn:remove()``) and seeds the backward pass with a one-hot ``doutput``;
    * "Global average pool gradients" is in fact a **sum**:
      ``torch.sum(gradients:view(K, -1), 2)``, so the weights are ``Z·α`` and the map is
      ``Z`` times the paper's (Z = h·w);
    * ``torch.sum(cmul(A, weights), 1)`` keeps a singleton channel axis; the ReLU is
      ``map:cmul(torch.gt(map, 0))``; all of it in double (the script's default tensor
      type);
    * ``image.scale(gcam:float(), W, H)``: cast to float32, then Torch7's bilinear scale
      with corners aligned (:func:`torch7_scale_bilinear`);
    * no normalisation: min-max scaling happens only for display (``utils.to_heatmap`` and
      ``image.toDisplayTensor``).
    """
    a, g = _maps_pair(activations, gradients)
    size = _size(input_size, True, "grad-cam-lua")
    return _lua_map(a, g, size)


def grad_cam_lua_guided(guided: Any, activations: Any, gradients: Any) -> np.ndarray:
    """Guided Grad-CAM of ramprs/grad-cam ``classification.lua``:
    ``gb_viz:float():cmul(gcam:expandAs(gb_viz))`` — the guided-backprop gradient cast to
    float32 times the float32 map of :func:`grad_cam_lua` resized to the input size,
    broadcast over the channels. Returns (N, C, H, W) float32.

    Guided backprop there is ``misc/GuidedBackpropReLU.lua`` (``g·[x > 0]·[g > 0]``, the
    same rule as npcam's). The script also reverses the channel order (BGR -> RGB) of the
    gradient because its Caffe VGG takes BGR input; that is preprocessing, not part of
    the method, and is not done here (apply ``[:, ::-1]`` for a BGR model).
    """
    a, g = _maps_pair(activations, gradients)
    gb = _guided_array(guided, a.shape[0], np.float64).astype(np.float32)
    return gb * _lua_map(a, g, gb.shape[2:])


# --------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class _Convention:
    post: Callable[..., np.ndarray]
    options: tuple[str, ...]  # keyword options of `post` that grad_cam passes through
    resizes: Callable[[dict[str, Any]], bool]  # whether `post` needs the input size
    guided: Callable[..., np.ndarray] | None = None
    guided_options: tuple[str, ...] = ()


_CONVENTIONS: dict[str, _Convention] = {
    "npcam": _Convention(npcam_grad_cam, (), lambda o: True, npcam_guided_grad_cam),
    "captum": _Convention(
        captum_layer_grad_cam,
        ("relu_attributions", "attr_dim_summation", "interpolate_mode"),
        lambda o: o.get("interpolate_mode") is not None,
        captum_guided_grad_cam,
        ("interpolate_mode",),
    ),
    "pytorch-grad-cam": _Convention(pytorch_grad_cam, (), lambda o: True),
    "torchcam": _Convention(torchcam_gradcam, ("normalized",), lambda o: False),
    "tf-keras-vis": _Convention(
        tf_keras_vis_gradcam,
        ("expand_cam", "normalize_cam"),
        lambda o: o.get("expand_cam", True) is not False,
    ),
    "grad-cam-lua": _Convention(grad_cam_lua, (), lambda o: True, grad_cam_lua_guided),
}


def _convention(convention: Any) -> tuple[str, _Convention]:
    if not isinstance(convention, str) or convention not in _CONVENTIONS:
        raise ValueError(f"convention must be one of {NAMES}, got {convention!r}.")
    return convention, _CONVENTIONS[convention]


def _check_options(name: str, given: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        takes = f"it takes {', '.join(allowed)}" if allowed else "it takes none"
        raise TypeError(f"convention {name!r} has no option {', '.join(unknown)}; {takes}.")


def _one_target(target: Any) -> None:
    if isinstance(target, str) and target == "all":
        raise ValueError(
            "target='all' is not supported by npcam.conventions: the libraries explain one "
            "class per image; pass None, an int or N ints."
        )


def grad_cam(
    model: Any,
    x: Any,
    target: Any = None,
    layer: str | None = None,
    convention: str = "npcam",
    input_size: Any = None,
    score: str | None = None,
    **options: Any,
) -> np.ndarray:
    """The final Grad-CAM map ``convention``'s library returns, from npcam's raw arrays.

    Runs ``npcam.grad_cam(model, x, target, layer, score)`` and applies the
    convention's post-processing to its ``activations`` and ``gradients``.

    Parameters
    ----------
    model, x, target, layer : as :func:`npcam.grad_cam` (one class per image:
        ``target="all"`` is refused).
    convention : one of :data:`NAMES`.
    input_size : (H, W) to resize to; default the spatial size of ``x``. Must stay None
        for conventions that do not resize (``torchcam``; ``captum`` without
        ``interpolate_mode``; ``tf-keras-vis`` with ``expand_cam=False``).
    score : ``"logit"``, ``"softmax"`` or ``"log_softmax"``; None means the library's
        default, :data:`DEFAULT_SCORES` (``"softmax"`` for tf-keras-vis, else ``"logit"``).
    **options : the convention's own switches, under the library's names —
        ``captum``: ``relu_attributions=False``, ``attr_dim_summation=True``,
        ``interpolate_mode=None`` (``"nearest"``/``"bilinear"``: apply
        ``LayerAttribution.interpolate``); ``torchcam``: ``normalized=True``;
        ``tf-keras-vis``: ``expand_cam=True``, ``normalize_cam=True``. Others take none.

    Returns
    -------
    The array the library returns; shapes and dtypes in the module docstring.
    """
    name, conv = _convention(convention)
    _check_options(name, options, conv.options)
    _one_target(target)
    r = _grad_cam_module.grad_cam(model, x, target, layer, DEFAULT_SCORES[name] if score is None else score)
    size = input_size
    if size is None and conv.resizes(options):
        size = np.shape(x)[-2:]
    return conv.post(r.activations, r.gradients, size, **options)


def guided_grad_cam(
    model: Any,
    x: Any,
    target: Any = None,
    layer: str | None = None,
    convention: str = "npcam",
    score: str | None = None,
    **options: Any,
) -> np.ndarray:
    """The Guided Grad-CAM ``convention``'s library returns: (N, C, H, W).

    Available for :data:`GUIDED_NAMES` (``npcam``, ``captum``, ``grad-cam-lua``); the other
    libraries ship no Guided Grad-CAM (pytorch-grad-cam has a guided-backprop model and
    multiplies by hand in its example script; see ``docs/conventions.md``), and asking
    for them raises ``ValueError``. ``captum`` takes ``interpolate_mode="nearest"``
    (its default) or ``"bilinear"``. Guided backprop and Grad-CAM differentiate the same
    score (``score=None``: the convention's default) for the same class.
    """
    name, conv = _convention(convention)
    if conv.guided is None:
        raise ValueError(
            f"convention {name!r} has no Guided Grad-CAM; it is available for {GUIDED_NAMES}."
        )
    _check_options(name, options, conv.guided_options)
    _one_target(target)
    score = DEFAULT_SCORES[name] if score is None else score
    r = _grad_cam_module.grad_cam(model, x, target, layer, score)
    gb = _gradients.guided_backprop(model, x, r.target, score)
    return conv.guided(gb, r.activations, r.gradients, **options)
