"""Resizing explanation maps: ``upsample`` reproduces ``torch.nn.functional.interpolate``
on CPU in float64, convention by convention (the ATen rules are quoted where they are implemented):

* ``mode="bilinear"`` with ``align_corners`` ``None``/``False`` — half-pixel centres::

      scale = in / out                       (float64; also when out == 1)
      src   = max(scale * (dst + 0.5) - 0.5, 0)

  ``align_corners=True`` — corner pixels aligned::

      scale = (in - 1) / (out - 1)   (0 when out == 1),   src = scale * dst

  then ``i0 = min(floor(float32(src)), in - 1)``, ``i1 = min(i0 + 1, in - 1)``,
  ``w1 = clip(src - i0, 0, 1)``, ``w0 = 1 - w1``, and ``out == in`` is the identity.
  Note the ``float32``: ATen's ``guard_index_and_lambda`` calls ``floorf`` on the float64
  source index, so when ``src`` lies within half a float32 ulp below an integer ``k``
  (which needs ``in * out`` above about 2**24; e.g. 5000 -> 4999, last pixel) the left
  tap is ``k`` with weight 1, not ``k - 1`` with weight ``1 - (k - src)``.
* ``mode="nearest"`` — torch's ``"nearest"`` (the docs call it OpenCV's buggy
  INTER_NEAREST): ``src = min(floor(dst * in / out), in - 1)``, but with a floating-point
  product whose precision depends on which of two CPU kernels ATen picks
  (``_use_vectorized_kernel_cond_2d`` in ``aten/src/ATen/native/cpu/UpSampleKernel.cpp``):

  - ``H + W <= 128`` (small outputs): ``nearest_idx`` (UpSample.h), in float32::

        s   = float32(in) / float32(out)                (division in float32)
        src = min(floor(float32(dst) * s), in - 1)      (product in float32)

    except ``out == in`` (identity) and ``out == 2 * in`` (``src = dst // 2``). This is
    *not* the exact ``floor(dst * in / out)``: for ``in, out = 2, 82`` destination 41 maps
    to 0, not 1 (``41 * float32(2/82)`` rounds to ``0.99999994``), and for ``14, 46``
    destination 23 maps to 6, not 7.
  - ``H + W > 128``: ``HelperInterpNearest`` in the tensor's opmath type, float64 here::

        src = min(floor(float32((in / out) * dst)), in - 1)   (float64 product, floorf)

    which for every ``in, out <= 100`` equals the exact rational floor (2 -> 82 maps 41 to 1).

  For float32 tensors both kernels reduce to the float32 rule; npcam follows float64
  tensors, as everywhere.

Both modes are separable: ``upsample(maps) = R_h @ maps @ R_w.T`` with the row-stochastic
matrices of :func:`interpolation_matrices`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validate import as_float_array, as_pair, describe

__all__ = ["MAX_UPSAMPLE_PIXELS", "MAX_UPSAMPLE_VALUES", "interpolation_matrices", "upsample"]

#: :func:`upsample` refuses outputs with more than this many pixels per map (the image
#: readers' limit, :data:`npcam.image.MAX_IMAGE_PIXELS`): a larger request is a bug, not an
#: image. :func:`interpolation_matrices` refuses a matrix with more entries than this.
MAX_UPSAMPLE_PIXELS = 50_000_000

#: :func:`upsample` also refuses outputs with more than this many values in all
#: (``N * H * W``; 4 GB of float64): upsample a large batch in smaller batches.
MAX_UPSAMPLE_VALUES = 500_000_000

_MODES = ("bilinear", "nearest")


# --------------------------------------------------------------------------- resizing


def _check_mode(mode: Any, align_corners: Any) -> None:
    if not isinstance(mode, str) or mode not in _MODES:
        raise ValueError(f"mode must be 'bilinear' or 'nearest', got {describe(mode)}.")
    if align_corners is not None and not isinstance(align_corners, (bool, np.bool_)):
        raise TypeError(f"align_corners must be None or a bool, got {describe(align_corners)}.")
    if mode == "nearest" and align_corners is not None:
        raise ValueError(
            f"align_corners must be None with mode='nearest' (as in torch), got {align_corners!r}."
        )


def _check_output_size(n: int, out_h: int, out_w: int) -> None:
    """Refuse an output too large to be a map, before anything is allocated."""
    if out_h * out_w > MAX_UPSAMPLE_PIXELS:
        raise ValueError(
            f"size ({out_h}, {out_w}) asks for {out_h * out_w} pixels per map, more than "
            f"MAX_UPSAMPLE_PIXELS = {MAX_UPSAMPLE_PIXELS}."
        )
    if n * out_h * out_w > MAX_UPSAMPLE_VALUES:
        raise ValueError(
            f"size ({out_h}, {out_w}) for {n} maps asks for {n * out_h * out_w} values, more than "
            f"MAX_UPSAMPLE_VALUES = {MAX_UPSAMPLE_VALUES}; upsample fewer maps at a time."
        )


def _use_float32_nearest(out_h: int, out_w: int) -> bool:
    """Whether torch's CPU kernel for this output size uses the float32 ``nearest_idx``.

    ATen ``_use_vectorized_kernel_cond_2d``: the vectorised kernel (which uses
    ``nearest_idx``) runs for channels-last inputs with C > 3 — never for npcam's C = 1 —
    or when ``output_H + output_W <= 128``; otherwise the generic kernel does.
    """
    return out_h + out_w <= 128


def _nearest_source_index(in_size: int, out_size: int, float32_rule: bool) -> np.ndarray:
    """Source index of every destination index under torch's 'nearest' rule.

    ``float32_rule``: ATen ``nearest_idx`` / ``nearest_neighbor_compute_source_index``
    (UpSample.h) — the scale is ``float(in) / out`` in float32 and ``floorf(dst * scale)``
    multiplies in float32, clamped to ``in - 1``; ``out == in`` and ``out == 2 * in``
    bypass it. Otherwise ``HelperInterpNearest::compute_indices_weights``
    (UpSampleKernel.cpp) with float64 opmath: ``floorf((in / out) * dst)``, the float64
    product rounded to float32 by ``floorf``, clamped to ``in - 1``.
    """
    dst = np.arange(out_size, dtype=np.int64)
    if float32_rule:
        if out_size == in_size:
            return dst
        if out_size == 2 * in_size:
            return dst >> 1
        scale32 = np.float32(in_size) / np.float32(out_size)
        src32 = dst.astype(np.float32) * scale32  # float32 * float32, rounded to float32
    else:
        src32 = ((in_size / out_size) * dst.astype(np.float64)).astype(np.float32)
    return np.minimum(np.floor(src32).astype(np.int64), in_size - 1)


def _linear_taps(
    in_size: int, out_size: int, align_corners: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(i0, i1, w0, w1)`` of torch's linear interpolation along one axis (float64).

    ATen ``area_pixel_compute_scale``, ``area_pixel_compute_source_index`` and
    ``compute_source_index_and_lambda`` / ``guard_index_and_lambda`` (UpSample.h).
    """
    dst = np.arange(out_size, dtype=np.float64)
    if out_size == in_size:  # torch copies: scale_factor = 1
        idx = np.arange(out_size, dtype=np.int64)
        return idx, idx, np.ones(out_size), np.zeros(out_size)
    if align_corners:
        scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        src = scale * dst
    else:
        scale = in_size / out_size
        src = np.maximum(scale * (dst + 0.5) - 0.5, 0.0)
    # floorf() of the float64 index: the index is rounded to float32 before the floor.
    i0 = np.minimum(np.floor(src.astype(np.float32)).astype(np.int64), in_size - 1)
    i1 = np.where(i0 < in_size - 1, i0 + 1, i0)
    w1 = np.clip(src - i0, 0.0, 1.0)
    w0 = 1.0 - w1
    return i0, i1, w0, w1


def _axis_matrix(in_size: int, out_size: int, taps: tuple[np.ndarray, ...]) -> np.ndarray:
    """Dense ``(out_size, in_size)`` matrix from ``(i0,)`` or ``(i0, i1, w0, w1)`` taps."""
    rows = np.arange(out_size)
    mat = np.zeros((out_size, in_size))
    if len(taps) == 1:
        mat[rows, taps[0]] = 1.0
    else:
        i0, i1, w0, w1 = taps
        np.add.at(mat, (rows, i0), w0)  # at the border i0 == i1: the weights add up
        np.add.at(mat, (rows, i1), w1)
    return mat


def _taps(
    in_hw: tuple[int, int], out_hw: tuple[int, int], mode: str, align_corners: bool | None
) -> list[tuple[np.ndarray, ...]]:
    if mode == "nearest":
        rule = _use_float32_nearest(*out_hw)
        return [(_nearest_source_index(i, o, rule),) for i, o in zip(in_hw, out_hw, strict=True)]
    return [_linear_taps(i, o, bool(align_corners)) for i, o in zip(in_hw, out_hw, strict=True)]


def interpolation_matrices(
    in_size: int | tuple[int, int],
    out_size: int | tuple[int, int],
    mode: str = "bilinear",
    align_corners: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The float64 matrices ``(R_h, R_w)``, shapes ``(H, h)`` and ``(W, w)``, of a resize.

    ``upsample(maps, (H, W)) == R_h @ maps @ R_w.T`` for maps of spatial size ``(h, w)``.
    Row ``d`` of each holds the weights of destination ``d``: two neighbouring taps
    ``w0, w1`` summing to 1 for ``"bilinear"`` (added together when both fall on the
    border pixel), a single 1 for ``"nearest"``. The rules are in the module docstring;
    for ``"nearest"`` the rule of each axis depends on ``H + W``, hence one call for both.
    A matrix with more than :data:`MAX_UPSAMPLE_PIXELS` entries is refused (``ValueError``)
    before it is allocated.
    """
    in_hw = as_pair("in_size", in_size)
    out_hw = as_pair("out_size", out_size)
    _check_mode(mode, align_corners)
    for axis, (i, o) in enumerate(zip(in_hw, out_hw, strict=True)):
        if i * o > MAX_UPSAMPLE_PIXELS:
            raise ValueError(
                f"in_size {in_hw} and out_size {out_hw} need a {o} x {i} matrix for axis {axis}, "
                f"more than MAX_UPSAMPLE_PIXELS = {MAX_UPSAMPLE_PIXELS} entries."
            )
    taps = _taps(in_hw, out_hw, mode, align_corners)
    return (
        _axis_matrix(in_hw[0], out_hw[0], taps[0]),
        _axis_matrix(in_hw[1], out_hw[1], taps[1]),
    )


def upsample(
    maps: Any,
    size: int | tuple[int, int],
    mode: str = "bilinear",
    align_corners: bool | None = None,
) -> np.ndarray:
    """Resize maps ``(N, h, w)`` to ``(N, H, W)`` in float64, exactly as torch does.

    Equals ``F.interpolate(torch.from_numpy(maps)[:, None], size, mode=mode,
    align_corners=align_corners)[:, 0]`` in float64 (see the module docstring for the
    index and weight rules). Computed separably as ``R_h @ maps @ R_w.T`` with the matrices
    of :func:`interpolation_matrices` (width first, then height, as ATen's kernel does);
    ``"nearest"`` gathers rows and columns instead of multiplying by the 0/1 matrices,
    which gives the same values without arithmetic. The dense matrices cost
    ``8 (H h + W w)`` bytes.

    Parameters
    ----------
    maps : array_like, shape (N, h, w), finite real values.
    size : int or (H, W), positive.
    mode : ``"bilinear"`` or ``"nearest"``.
    align_corners : ``None`` (means ``False``) or bool for ``"bilinear"``; must be ``None``
        for ``"nearest"``, as in torch.

    Raises
    ------
    ValueError
        Before anything is allocated, if ``H * W`` exceeds :data:`MAX_UPSAMPLE_PIXELS`
        (50 M, the image readers' limit) or ``N * H * W`` exceeds
        :data:`MAX_UPSAMPLE_VALUES` (500 M values, 4 GB of float64); also for bad maps,
        size, mode or align_corners.

    Notes
    -----
    Residual differences from torch are rounding of the last bits: torch's AVX2/AVX512
    kernels fuse ``scale * (dst + 0.5) - 0.5`` into one FMA, which moves the source index
    by up to one float64 ulp (a relative difference of ~1e-16 for CAM-sized maps, up to
    ~1e-13 for 5000-pixel axes); with ``ATEN_CPU_CAPABILITY=default`` torch computes the
    unfused expression used here.
    """
    arr = as_float_array("maps", maps, ndim=3)
    if arr.shape[1] == 0 or arr.shape[2] == 0:
        raise ValueError(f"maps must have non-empty spatial axes, got shape {arr.shape}.")
    out_h, out_w = as_pair("size", size)
    _check_mode(mode, align_corners)
    _check_output_size(arr.shape[0], out_h, out_w)
    if mode == "nearest":
        (rows,), (cols,) = _taps(arr.shape[1:], (out_h, out_w), mode, None)
        return np.ascontiguousarray(arr[:, rows[:, None], cols[None, :]])
    r_h, r_w = interpolation_matrices(arr.shape[1:], (out_h, out_w), mode, align_corners)
    return np.ascontiguousarray(r_h @ (arr @ r_w.T))


