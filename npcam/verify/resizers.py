"""Bit-exact reproductions of other libraries' resize functions: OpenCV's
``cv2.resize(INTER_LINEAR)`` (what pytorch-grad-cam uses) and Torch7's
``image.scale`` bilinear (the paper's Lua release)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validate import as_float_array, as_pair


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
    # C order, as cv2 returns it: a later float32 sum over maps then adds in the library's order
    return np.ascontiguousarray(rows[:, y0, :] * b0[:, None] + rows[:, y1, :] * b1[:, None])


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
