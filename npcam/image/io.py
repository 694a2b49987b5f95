"""Reading and writing image files (Pillow, imported here only).

Reading is defensive, because image files come from users: only the raster formats of
:data:`IMAGE_FORMATS` are ever tried (a PostScript file renamed ``.png`` never reaches
Pillow's EPS plugin, which would run Ghostscript on it), the pixel count is checked from
the header before anything is decoded, every Pillow error becomes a ``ValueError`` that
names the file, and no warning escapes. Writing is atomic (see :mod:`npcam._files`).
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from .._files import atomic_write
from .._validate import as_pair, as_positive_int, describe
from .color import _row_blocks, _unit_interval_array

__all__ = ["IMAGE_FORMATS", "MAX_IMAGE_PIXELS", "image_size", "load_image", "reduction_factor", "save_image"]

#: Images with more pixels than this are refused by :func:`load_image` before decoding.
MAX_IMAGE_PIXELS = 50_000_000

#: The formats :func:`load_image` and :func:`image_size` open (Pillow's format names; the
#: file's content decides, not its suffix). Raster formats only: never EPS, PS or PDF, whose
#: Pillow plugins hand the file to Ghostscript. ``"PPM"`` covers PBM, PGM, PPM and PNM;
#: ``"JPEG"`` includes multi-picture (MPO) JPEGs, of which the first picture is read.
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")


# ------------------------------------------------------------------------------ files


def _path(name: str, value: Any) -> Path:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {describe(value)}.")
    return Path(value)


def _existing_file(value: Any) -> Path:
    p = _path("path", value)
    if not p.exists():
        raise FileNotFoundError(f"path {str(p)!r} does not exist.")
    if not p.is_file():
        raise ValueError(f"path {str(p)!r} is not a file.")
    return p


class _Refused(Exception):
    """npcam's own refusal inside the Pillow block; re-raised as the ValueError it carries."""


@contextlib.contextmanager
def _opened(p: Path) -> Iterator[Image.Image]:
    """Open ``p`` with the allow-listed formats, checking its size and mode from the header.

    Every Pillow failure (including ``ValueError``s such as a zTXt chunk that inflates past
    ``PngImagePlugin.MAX_TEXT_CHUNK``, and ``MemoryError``) raised while opening *or inside
    the block* becomes a ``ValueError`` naming ``p``. Pillow's decompression-bomb warning is
    an error; its other warnings (about metadata, or the plugins that did not recognise the
    file) are recorded and dropped, so none leaks to the caller.
    """
    name = repr(str(p))
    try:
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p, formats=list(IMAGE_FORMATS)) as im:
                width, height = im.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise _Refused(
                        f"image {name} has {width} x {height} pixels, more than "
                        f"MAX_IMAGE_PIXELS = {MAX_IMAGE_PIXELS}."
                    )
                if im.mode in ("I", "F") or im.mode.startswith("I;"):
                    raise _Refused(
                        f"image {name} has mode {im.mode!r} (more than 8 bits per sample), "
                        "which is not supported."
                    )
                yield im
    except _Refused as exc:
        raise ValueError(str(exc)) from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ValueError(f"image {name} is too large to decode safely: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ValueError(
            f"path {name} is not a readable image file (formats tried: {', '.join(IMAGE_FORMATS)})."
        ) from exc
    except MemoryError as exc:
        raise ValueError(f"image {name} could not be decoded: not enough memory.") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # truncated/corrupt data, bombs
        raise ValueError(f"image {name} could not be read: {exc}") from exc


def _rgb(im: Image.Image) -> Image.Image:
    """``im`` decoded and converted to 8-bit RGB (alpha dropped, not composited)."""
    if im.mode in ("P", "PA") and "transparency" in im.info:
        # Pillow warns when a palette with per-entry (bytes) transparency goes straight to
        # RGB; going through RGBA gives the same colours without the warning.
        im = im.convert("RGBA")
    return im if im.mode == "RGB" else im.convert("RGB")


def reduction_factor(shape: tuple[int, int], max_side: int) -> int:
    """The smallest integer ``f >= 1`` with ``ceil(H / f)`` and ``ceil(W / f)`` ``<= max_side``.

    Parameters
    ----------
    shape : (int, int)
        ``(H, W)`` of the image.
    max_side : int
        The largest allowed side after the reduction, positive.

    Returns
    -------
    int
        ``ceil(max(H, W) / max_side)``: 1 when the image already fits.
    """
    height, width = as_pair("shape", shape)
    side = as_positive_int("max_side", max_side)
    return max(1, math.ceil(max(height, width) / side))


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """The ``(H, W)`` of an image file, read from its header without decoding the pixels.

    Parameters
    ----------
    path : str or os.PathLike
        An image file in one of :data:`IMAGE_FORMATS`.

    Returns
    -------
    (int, int)
        Height and width in pixels.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        Exactly as :func:`load_image`, for the checks made from the header.
    """
    p = _existing_file(path)
    with _opened(p) as im:
        width, height = im.size
    return height, width


def load_image(
    path: str | os.PathLike[str],
    size: int | tuple[int, int] | None = None,
    *,
    max_side: int | None = None,
) -> np.ndarray:
    """Read an image file as float64 ``(3, H, W)`` RGB in ``[0, 1]`` (value ``k / 255``).

    Decoded by Pillow and converted with ``Image.convert("RGB")`` (palette and gray images
    expanded; an alpha channel is dropped, not composited; palette images with
    transparency go through RGBA, which gives the same colours). Images with more than
    8 bits per sample (Pillow modes ``I``, ``I;16*``, ``F``) are refused rather than
    clipped. Only the formats of :data:`IMAGE_FORMATS` are opened, whatever the suffix.

    Parameters
    ----------
    path : str or os.PathLike
        The image file.
    size : int or (H, W), optional
        Resize the 8-bit RGB image with Pillow's bilinear filter (which, unlike torch,
        widens its support when shrinking) before the conversion to float.
    max_side : int, optional
        Shrink the image by the smallest integer factor ``f`` for which its longer side
        ``ceil(max(H, W) / f)`` is at most ``max_side`` (:func:`reduction_factor`), with
        Pillow's ``Image.reduce(f)`` (the mean of each ``f x f`` block, partial blocks at
        the right and bottom edges included), in 8 bits before the conversion to float,
        so a large image costs its float64 copy only at the reduced size. The result has
        shape ``(3, ceil(H / f), ceil(W / f))``; an image that fits is returned as it is.
        Cannot be combined with ``size``.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(3, H, W)``, values ``k / 255``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        For a file that is not a readable image in an allowed format, is corrupt or
        truncated, holds a metadata chunk too large to inflate, or has more than
        ``MAX_IMAGE_PIXELS`` pixels (checked from the header, before decoding; Pillow's own
        decompression-bomb warning or error is also turned into ``ValueError``); the message
        names the file. Also for a ``size`` above that limit, or both ``size`` and
        ``max_side`` given.

    Notes
    -----
    No warning escapes: Pillow's warnings about a file's metadata are dropped (the pixels
    are what is returned).
    """
    p = _existing_file(path)
    target = None if size is None else as_pair("size", size)
    if target is not None and target[0] * target[1] > MAX_IMAGE_PIXELS:
        raise ValueError(f"size {target} exceeds MAX_IMAGE_PIXELS = {MAX_IMAGE_PIXELS} pixels.")
    side = None if max_side is None else as_positive_int("max_side", max_side)
    if target is not None and side is not None:
        raise ValueError(f"size and max_side cannot both be given, got size={size!r} and max_side={side}.")
    with _opened(p) as im:
        rgb = _rgb(im)
        if target is not None:
            rgb = rgb.resize((target[1], target[0]), resample=Image.Resampling.BILINEAR)
        elif side is not None:
            factor = reduction_factor((rgb.height, rgb.width), side)
            if factor > 1:
                rgb = rgb.reduce(factor)
        data = np.asarray(rgb, dtype=np.uint8)
    out = np.empty((3,) + data.shape[:2], dtype=np.float64)
    np.divide(data.transpose(2, 0, 1), 255.0, out=out, dtype=np.float64)
    return out


def _quantize(values: np.ndarray, layout: str) -> np.ndarray:
    """``round(255 * v)`` (half to even) of float values in [0, 1], as ``(H, W, 3)`` uint8.

    The product is taken in float64 (as ``255.0 * v.astype(float64)``), a block of rows at
    a time, so no float64 copy of the whole image is made.
    """
    hwc = values.transpose(1, 2, 0) if layout == "chw" else values
    data = np.empty(hwc.shape, dtype=np.uint8)
    blocks = _row_blocks(hwc.shape[0], hwc.shape[1] * hwc.shape[2])
    buffer = np.empty((blocks[0].stop if blocks else 0,) + hwc.shape[1:], dtype=np.float64)
    for rows in blocks:
        block = buffer[: rows.stop - rows.start]
        np.multiply(hwc[rows], 255.0, out=block, dtype=np.float64)
        np.rint(block, out=block)
        data[rows] = block
    return data


def _save_format(p: Path) -> str:
    if not p.suffix:
        return "PNG"
    fmt = Image.registered_extensions().get(p.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(f"path {str(p)!r}: cannot write this image format (unknown suffix {p.suffix!r}).")
    return fmt


def save_image(path: str | os.PathLike[str], image: Any, layout: str | None = None) -> None:
    """Write an RGB image atomically; the format follows the suffix (PNG when there is none).

    Parameters
    ----------
    path : str or os.PathLike
        The file to write; its folder must exist. The image is encoded into a temporary
        file in that folder, which then replaces ``path`` (:func:`os.replace`): a reader or
        a concurrent writer never sees a partial file, and a failed encode leaves a
        previous file at ``path`` untouched.
    image : array_like
        ``(3, H, W)`` (npcam's layout) or ``(H, W, 3)``. uint8 values are written as they
        are; floats must lie in ``[0, 1]`` (``ValueError`` otherwise, nothing is clipped)
        and are quantised as ``round(255 * v)`` (half to even, computed in float64), so
        ``save_image(p, load_image(p))`` writes back the same bytes.
    layout : {None, "chw", "hwc"}
        Inferred from which axis has length 3; required when both do.

    Raises
    ------
    TypeError
        For an image that is not a uint8 or float array.
    ValueError
        For a wrong shape or layout, values outside ``[0, 1]`` or NaN, or a suffix Pillow
        cannot write.
    FileNotFoundError
        If the folder of ``path`` does not exist.
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
        hwc = np.ascontiguousarray(arr.transpose(1, 2, 0) if layout == "chw" else arr)
    else:
        hwc = _quantize(_unit_interval_array("image", arr), layout)
    fmt = _save_format(p)
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"path {str(p)!r}: folder {str(folder)!r} does not exist.")
    picture = Image.fromarray(hwc)
    try:
        with atomic_write(p) as fh:
            picture.save(fh, format=fmt)
    except (KeyError, ValueError) as exc:  # a format Pillow cannot encode this image in
        raise ValueError(f"path {str(p)!r}: cannot write this image format ({exc}).") from exc
