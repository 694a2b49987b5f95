"""Colour maps (jet, viridis) and heat-map overlays on images."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validate import as_float_array, describe

__all__ = ["apply_colormap", "colormap", "overlay"]


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


def _row_blocks(n_rows: int, row_size: int, budget: int = 1 << 20) -> list[slice]:
    """Slices of ``range(n_rows)`` holding about ``budget`` values each (``row_size`` a row).

    Lets a computation that needs a float64 temporary run a block of rows at a time: the
    temporaries then cost ``8 * budget`` bytes (8 MiB), not a full-size copy.
    """
    step = max(1, budget // max(1, row_size))
    return [slice(r, min(r + step, n_rows)) for r in range(0, n_rows, step)]


def overlay(image: Any, cam: Any, alpha: float = 0.5, colormap: str = "jet") -> np.ndarray:
    """Blend a colour-mapped CAM over an image: ``(1 - alpha) * image + alpha * heat``.

    Parameters
    ----------
    image : array_like
        ``(3, H, W)`` or ``(N, 3, H, W)`` (npcam's NCHW), values in ``[0, 1]``.
    cam : array_like
        ``(H, W)`` or ``(N, H, W)`` in ``[0, 1]`` with the same N, H, W (no resizing, no
        broadcasting: call :func:`upsample` first).
    alpha : float
        The weight of the heat map, in ``[0, 1]``. ``alpha = 0`` returns the image,
        ``alpha = 1`` the heat map.
    colormap : {"jet", "viridis"}
        ``heat = apply_colormap(cam, colormap) / 255``.

    Returns
    -------
    numpy.ndarray
        float64 ``(H, W, 3)`` or ``(N, H, W, 3)`` (channels last, for display).

    Notes
    -----
    Computed in float64 as ``(1 - alpha) * image`` plus ``alpha * (level / 255)`` taken
    from a 256-entry table (the colour map's levels are uint8), into the output a block of
    rows at a time: the output is the only full-size float64 array allocated, and its
    values are those of the plain float64 expression, bit for bit.

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
    levels = apply_colormap(heat_src, colormap)  # uint8 (..., H, W, 3)
    heat_table = a * (np.arange(256, dtype=np.float64) / 255.0)
    base = np.moveaxis(img, -3, -1)  # a view, (..., H, W, 3)
    out = np.empty(base.shape, dtype=np.float64)
    height = base.shape[-3]
    for rows in _row_blocks(height, base.size // max(1, height)):
        block = out[..., rows, :, :]
        np.multiply(base[..., rows, :, :], 1.0 - a, out=block, dtype=np.float64)
        block += heat_table[levels[..., rows, :, :]]
    return out
