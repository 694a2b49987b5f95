"""Post-processing of explanation maps: resizing, normalisation, colour maps, overlays, and
image files.

Everything here is kept apart from the maps themselves (see DESIGN.md, "Post-processing"),
so that a raw map can be compared with a library that post-processes differently.

Resizing reproduces ``torch.nn.functional.interpolate`` on CPU in float64, convention by
convention (the ATen rules are quoted where they are implemented):

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

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ._checks import as_float_array, as_pair, describe

__all__ = [
    "MAX_IMAGE_PIXELS",
    "apply_colormap",
    "colormap",
    "interpolation_matrices",
    "load_image",
    "normalize",
    "overlay",
    "save_image",
    "upsample",
]

#: Images with more pixels than this are refused by :func:`load_image` before decoding.
MAX_IMAGE_PIXELS = 50_000_000

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
    """
    in_hw = as_pair("in_size", in_size)
    out_hw = as_pair("out_size", out_size)
    _check_mode(mode, align_corners)
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
    if mode == "nearest":
        (rows,), (cols,) = _taps(arr.shape[1:], (out_h, out_w), mode, None)
        return np.ascontiguousarray(arr[:, rows[:, None], cols[None, :]])
    r_h, r_w = interpolation_matrices(arr.shape[1:], (out_h, out_w), mode, align_corners)
    return np.ascontiguousarray(r_h @ (arr @ r_w.T))


# ---------------------------------------------------------------------- normalisation


def normalize(maps: Any) -> np.ndarray:
    """Min-max normalise each map (the last two axes) to ``[0, 1]``.

    ``out = (m - min m) / (max m - min m)`` per map, over any leading axes; a constant map
    becomes zeros (no division, so no NaN and no warning). Every non-constant map has
    min exactly 0 and max exactly 1. Ranges too large for float64 (``max - min`` overflows)
    are handled by halving both numerator and denominator.
    """
    arr = as_float_array("maps", maps)
    if arr.ndim < 2 or arr.shape[-1] == 0 or arr.shape[-2] == 0:
        raise ValueError(
            f"maps must have at least 2 axes with non-empty last two axes, got shape {arr.shape}."
        )
    lo = arr.min(axis=(-2, -1), keepdims=True)
    hi = arr.max(axis=(-2, -1), keepdims=True)
    with np.errstate(over="ignore"):
        span = hi - lo
        num = arr - lo
    huge = ~np.isfinite(span)
    if np.any(huge):  # finite inputs whose range exceeds the float64 maximum
        span = np.where(huge, hi / 2 - lo / 2, span)
        num = np.where(huge, arr / 2 - lo / 2, num)
    out = np.zeros_like(arr)
    np.divide(num, span, out=out, where=np.broadcast_to(span > 0, arr.shape))
    return out


# --------------------------------------------------------------------------- colours

# OpenCV's COLORMAP_JET (= GNU Octave's jet(256)) is piecewise linear in t in [0, 1] with
# these control points (t, intensity); equivalently channel(t) = clip(3/2 - |4t - c|, 0, 1)
# with c = 3, 2, 1 for red, green, blue.
_JET_CONTROL_POINTS = {
    "red": ((0.0, 0.0), (0.375, 0.0), (0.625, 1.0), (0.875, 1.0), (1.0, 0.5)),
    "green": ((0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.625, 1.0), (0.875, 0.0), (1.0, 0.0)),
    "blue": ((0.0, 0.5), (0.125, 1.0), (0.375, 1.0), (0.625, 0.0), (1.0, 0.0)),
}

# matplotlib's viridis (its 256-entry float table, ``matplotlib._cm_listed._viridis_data``)
# as round(255 * v), RGB triples in hex. OpenCV's COLORMAP_VIRIDIS has the same 768 bytes.
_VIRIDIS_HEX = (
    "44015444025645045745055946075a46085c460a5d460b5e470d60470e61471063471164471365481467481668481769"
    "48186a481a6c481b6d481c6e481d6f481f70482071482173482374482475482576482677482878482979472a7a472c7a"
    "472d7b472e7c472f7d46307e46327e46337f463480453581453781453882443983443a83443b84433d84433e85423f85"
    "4240864241864142874144874045884046883f47883f48893e49893e4a893e4c8a3d4d8a3d4e8a3c4f8a3c508b3b518b"
    "3b528b3a538b3a548c39558c39568c38588c38598c375a8c375b8d365c8d365d8d355e8d355f8d34608d34618d33628d"
    "33638d32648e32658e31668e31678e31688e30698e306a8e2f6b8e2f6c8e2e6d8e2e6e8e2e6f8e2d708e2d718e2c718e"
    "2c728e2c738e2b748e2b758e2a768e2a778e2a788e29798e297a8e297b8e287c8e287d8e277e8e277f8e27808e26818e"
    "26828e26828e25838e25848e25858e24868e24878e23888e23898e238a8d228b8d228c8d228d8d218e8d218f8d21908d"
    "21918c20928c20928c20938c1f948c1f958b1f968b1f978b1f988b1f998a1f9a8a1e9b8a1e9c891e9d891f9e891f9f88"
    "1fa0881fa1881fa1871fa28720a38620a48621a58521a68522a78522a88423a98324aa8325ab8225ac8226ad8127ad81"
    "28ae8029af7f2ab07f2cb17e2db27d2eb37c2fb47c31b57b32b67a34b67935b77937b87838b9773aba763bbb753dbc74"
    "3fbc7340bd7242be7144bf7046c06f48c16e4ac16d4cc26c4ec36b50c46a52c56954c56856c66758c7655ac8645cc863"
    "5ec96260ca6063cb5f65cb5e67cc5c69cd5b6ccd5a6ece5870cf5773d05675d05477d1537ad1517cd2507fd34e81d34d"
    "84d44b86d54989d5488bd6468ed64590d74393d74195d84098d83e9bd93c9dd93ba0da39a2da37a5db36a8db34aadc32"
    "addc30b0dd2fb2dd2db5de2bb8de29bade28bddf26c0df25c2df23c5e021c8e020cae11fcde11dd0e11cd2e21bd5e21a"
    "d8e219dae319dde318dfe318e2e418e5e419e7e419eae51aece51befe51cf1e51df4e61ef6e620f8e621fbe723fde725"
)


def _jet_table() -> np.ndarray:
    """OpenCV's COLORMAP_JET as an RGB (256, 3) uint8 table, built from the control points.

    OpenCV stores jet as 256 float32 samples of the control-point curve at t = k/255,
    re-samples them with its float32 ``interp1`` at the same nodes, and converts with
    ``convertTo(CV_8U, 255)`` (round half to even). Nearly every unsaturated entry is
    exactly a tie (``255 * channel(k/255)`` is a half-integer), so the float32 arithmetic of
    those steps is reproduced here: it decides the ties. With exact arithmetic and round
    half to even, every entry agrees except blue at k = 159 (exact 1.5; OpenCV gives 1).
    """
    f32 = np.float32
    k = np.arange(256)
    x = k.astype(f32) * (f32(1) / f32(255))  # OpenCV linspace(0, 1, 256) in float32
    lut = np.empty((256, 3), dtype=np.uint8)
    for j, name in enumerate(("red", "green", "blue")):
        t, v = np.array(_JET_CONTROL_POINTS[name]).T
        # exact samples: channel(k/255) = n/510 with integer n, rounded once to float32
        n = np.rint(510.0 * np.interp(k / 255.0, t, v)).astype(np.int64)
        y = n.astype(f32) / f32(510)
        # OpenCV interp1 at the nodes: y[k-1] + (x[k]-x[k-1]) * (y[k]-y[k-1]) / (x[k]-x[k-1])
        dx = x[1:] - x[:-1]
        yi = np.concatenate([y[:1], y[:-1] + (dx * (y[1:] - y[:-1])) / dx])
        lut[:, j] = np.rint(yi * f32(255)).astype(np.uint8)
    return lut


_COLORMAPS: dict[str, np.ndarray] = {}


def colormap(name: str) -> np.ndarray:
    """The (256, 3) uint8 RGB lookup table of colour map ``name`` (a fresh copy).

    * ``"jet"``: equal to OpenCV's ``COLORMAP_JET`` (``cv2.applyColorMap`` over gray levels
      0..255, channels reversed from BGR to RGB), which pytorch-grad-cam uses by default.
    * ``"viridis"``: matplotlib's viridis at its 256 entries, ``round(255 * v)``; equal to
      OpenCV's ``COLORMAP_VIRIDIS``. (matplotlib's own ``cmap(..., bytes=True)`` truncates
      instead and differs in 379 of the 768 bytes.)
    """
    if not isinstance(name, str) or name not in ("jet", "viridis"):
        raise ValueError(f"name must be 'jet' or 'viridis', got {describe(name)}.")
    if name not in _COLORMAPS:
        if name == "jet":
            _COLORMAPS[name] = _jet_table()
        else:
            _COLORMAPS[name] = np.frombuffer(bytes.fromhex(_VIRIDIS_HEX), np.uint8).reshape(256, 3)
    return _COLORMAPS[name].copy()


def _unit_interval_array(name: str, value: Any) -> np.ndarray:
    """A float array with all values in [0, 1]; float16/float32 inputs keep their dtype."""
    keep = isinstance(value, np.ndarray) and value.dtype in (np.float16, np.float32)
    arr = as_float_array(name, value, dtype=value.dtype.type if keep else np.float64)
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        raise ValueError(f"{name} must have values in [0, 1], got values in [{arr.min()}, {arr.max()}].")
    return arr


def apply_colormap(maps: Any, name: str = "jet") -> np.ndarray:
    """Colour maps with values in ``[0, 1]``: ``(...)`` -> ``(..., 3)`` uint8 RGB.

    Gray level ``g = uint8(255 * v)`` — the product in the input's floating dtype (float16
    and float32 stay so, everything else is float64), truncated toward zero — then
    ``colormap(name)[g]``. This is pytorch-grad-cam's ``show_cam_on_image``
    (``cv2.applyColorMap(np.uint8(255 * mask), colormap)``), level for level. The dtype
    matters only for float16 (131 float16 values in [0, 1] round up to the next integer
    when multiplied in float16); a float32 product never crosses an integer, so float32
    and float64 give the same levels (checked over every float32 in [0, 1]).
    Values outside ``[0, 1]`` or NaN raise ``ValueError`` (never clipped).
    """
    arr = _unit_interval_array("maps", maps)
    lut = colormap(name)
    levels = (arr.dtype.type(255) * arr).astype(np.uint8)
    return lut[levels]


def overlay(image: Any, cam: Any, alpha: float = 0.5, colormap: str = "jet") -> np.ndarray:
    """Blend a colour-mapped CAM over an image: ``(1 - alpha) * image + alpha * heat``.

    ``image`` is ``(3, H, W)`` or ``(N, 3, H, W)`` (npcam's NCHW) in ``[0, 1]``; ``cam`` is
    ``(H, W)`` or ``(N, H, W)`` in ``[0, 1]`` with the same N, H, W (no resizing, no
    broadcasting: call :func:`upsample` first). ``heat = apply_colormap(cam, colormap) / 255``.
    Returns float64 ``(H, W, 3)`` or ``(N, H, W, 3)`` (channels last, for display).
    ``alpha = 0`` returns the image, ``alpha = 1`` the heat map.

    pytorch-grad-cam's ``show_cam_on_image`` computes the same blend with
    ``image_weight = 1 - alpha`` but then divides by the maximum and quantises to uint8;
    neither is done here.
    """
    img = _unit_interval_array("image", image)
    if img.ndim not in (3, 4) or img.shape[-3] != 3:
        raise ValueError(f"image must have shape (3, H, W) or (N, 3, H, W), got {img.shape}.")
    heat_src = _unit_interval_array("cam", cam)
    want = img.shape[:-3] + img.shape[-2:]
    if heat_src.shape != want:
        raise ValueError(f"cam must have shape {want} to match image {img.shape}, got {heat_src.shape}.")
    real = (int, float, np.integer, np.floating)
    if isinstance(alpha, (bool, np.bool_)) or not isinstance(alpha, real):
        raise TypeError(f"alpha must be a real number in [0, 1], got {describe(alpha)}.")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}.")
    a = float(alpha)
    heat = apply_colormap(heat_src, colormap).astype(np.float64) / 255.0
    base = np.moveaxis(img.astype(np.float64), -3, -1)
    return (1.0 - a) * base + a * heat


# ------------------------------------------------------------------------------ files


def _path(name: str, value: Any) -> Path:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {describe(value)}.")
    return Path(value)


def load_image(path: str | os.PathLike[str], size: int | tuple[int, int] | None = None) -> np.ndarray:
    """Read an image file as float64 ``(3, H, W)`` RGB in ``[0, 1]`` (value ``k / 255``).

    Decoded by Pillow and converted with ``Image.convert("RGB")`` (palette and gray images
    expanded; an alpha channel is dropped, not composited). Images with more than 8 bits
    per sample (Pillow modes ``I``, ``I;16*``, ``F``) are refused rather than clipped.
    ``size`` (int or ``(H, W)``) resizes the 8-bit RGB image with Pillow's bilinear filter
    (which, unlike torch, widens its support when shrinking) before the conversion to float.

    Raises ``FileNotFoundError`` for a missing file; ``ValueError`` for a file that is not a
    readable image, or with more than ``MAX_IMAGE_PIXELS`` pixels (checked from the header,
    before decoding; Pillow's own decompression-bomb warning or error is also turned into
    ``ValueError``), or a ``size`` above that limit.
    """
    p = _path("path", path)
    if not p.exists():
        raise FileNotFoundError(f"path {str(p)!r} does not exist.")
    if not p.is_file():
        raise ValueError(f"path {str(p)!r} is not a file.")
    target = None if size is None else as_pair("size", size)
    if target is not None and target[0] * target[1] > MAX_IMAGE_PIXELS:
        raise ValueError(f"size {target} exceeds MAX_IMAGE_PIXELS = {MAX_IMAGE_PIXELS} pixels.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                width, height = im.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise ValueError(
                        f"image {str(p)!r} has {width} x {height} pixels, more than "
                        f"MAX_IMAGE_PIXELS = {MAX_IMAGE_PIXELS}."
                    )
                if im.mode in ("I", "F") or im.mode.startswith("I;"):
                    raise ValueError(
                        f"image {str(p)!r} has mode {im.mode!r} (more than 8 bits per sample), "
                        "which is not supported."
                    )
                rgb = im.convert("RGB")
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ValueError(f"image {str(p)!r} is too large to decode safely: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ValueError(f"path {str(p)!r} is not a readable image file.") from exc
    except (OSError, SyntaxError) as exc:  # truncated/corrupt data, permission denied
        raise ValueError(f"image {str(p)!r} could not be read: {exc}") from exc
    if target is not None:
        rgb = rgb.resize((target[1], target[0]), resample=Image.Resampling.BILINEAR)
    data = np.asarray(rgb, dtype=np.uint8)
    return np.ascontiguousarray(data.transpose(2, 0, 1)).astype(np.float64) / 255.0


def save_image(path: str | os.PathLike[str], image: Any, layout: str | None = None) -> None:
    """Write an RGB image; the format follows the suffix (PNG when there is none).

    ``image`` is ``(3, H, W)`` (npcam's layout) or ``(H, W, 3)``; ``layout`` (``"chw"`` or
    ``"hwc"``) is inferred from which axis has length 3 and is required when both do.
    uint8 values are written as they are; floats must lie in ``[0, 1]`` (``ValueError``
    otherwise, nothing is clipped) and are quantised as ``round(255 * v)`` (half to even),
    so ``save_image(p, load_image(p))`` writes back the same bytes.
    """
    p = _path("path", path)
    arr = np.asarray(image) if not isinstance(image, (str, bytes)) and image is not None else None
    if arr is None or arr.dtype.kind not in "uif":
        raise TypeError(f"image must be a uint8 or float array, got {describe(image)}.")
    if arr.ndim != 3 or 3 not in (arr.shape[0], arr.shape[-1]):
        raise ValueError(f"image must have shape (3, H, W) or (H, W, 3), got {arr.shape}.")
    if layout is None:
        if arr.shape[0] == 3 and arr.shape[-1] == 3:
            raise ValueError(f"image of shape {arr.shape} is ambiguous; pass layout='chw' or layout='hwc'.")
        layout = "chw" if arr.shape[0] == 3 else "hwc"
    if layout not in ("chw", "hwc"):
        raise ValueError(f"layout must be None, 'chw' or 'hwc', got {describe(layout)}.")
    if (layout == "chw" and arr.shape[0] != 3) or (layout == "hwc" and arr.shape[-1] != 3):
        raise ValueError(f"image of shape {arr.shape} does not have layout {layout!r}.")
    if arr.dtype.kind in "ui":
        if arr.dtype != np.uint8:
            raise TypeError(f"image must be uint8 or float, got dtype {arr.dtype}.")
        data = arr
    else:
        values = _unit_interval_array("image", arr).astype(np.float64)
        data = np.rint(255.0 * values).astype(np.uint8)
    hwc = np.ascontiguousarray(data.transpose(1, 2, 0) if layout == "chw" else data)
    fmt = None if p.suffix else "PNG"
    try:
        Image.fromarray(hwc).save(p, format=fmt)
    except (KeyError, ValueError) as exc:  # unknown extension / unsupported format
        raise ValueError(f"path {str(p)!r}: cannot write this image format ({exc}).") from exc
