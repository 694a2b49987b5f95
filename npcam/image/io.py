"""Reading and writing image files (Pillow, imported here only)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from .._validate import as_pair, describe
from .color import _unit_interval_array

__all__ = ["MAX_IMAGE_PIXELS", "load_image", "save_image"]

#: Images with more pixels than this are refused by :func:`load_image` before decoding.
MAX_IMAGE_PIXELS = 50_000_000


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
