"""Localisation metrics for explanation maps, in the spirit of the weakly-supervised
localisation experiments of Grad-CAM (Selvaraju et al. 2017, sec. 4.1) and CAM.

All functions take maps at **image resolution** (upsample them first, e.g. with
``npcam.upsample``), one map per image, as an ``(N, H, W)`` array of real numbers, and
ground truth as boolean masks ``(N, H, W)`` or boxes ``(N, 4)``.

Conventions (decided here; the tests pin them down):

* A box is ``(row0, col0, row1, col1)``: start inclusive, end exclusive, so its area is
  ``(row1 - row0) * (col1 - col0)``; an empty box has area 0.
* The **peak** of a map is its first maximum in row-major order (``numpy.argmax`` of the
  flattened map). A map whose values are all equal (e.g. all zero) has no peak: it holds
  no evidence, and counts as a miss wherever a peak is needed.
* ``box_from_map`` keeps the pixels ``>= threshold * max`` (threshold 0.15 as in the
  Grad-CAM paper) of a map whose maximum is positive, and returns the tight box of the
  largest **8-connected** component (ties: the component whose first pixel comes first in
  row-major order). A map whose maximum is ``<= 0`` gives no box: ``None`` from
  ``box_from_map``, the empty box ``(0, 0, 0, 0)`` from ``boxes_from_maps``, which has
  IoU 0 with every box.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from .._validate import as_float_array, as_pair, as_positive_int, describe

__all__ = [
    "box_accuracy",
    "box_from_map",
    "box_iou",
    "boxes_from_maps",
    "centre_box_baseline",
    "centre_maps",
    "discrimination",
    "pointing_game",
]


# ------------------------------------------------------------------------ validation


def _as_maps(name: str, maps: Any) -> np.ndarray:
    arr = as_float_array(name, maps, ndim=3)
    if arr.shape[1] == 0 or arr.shape[2] == 0:
        raise ValueError(f"{name} must have at least one pixel per map, got shape {arr.shape}.")
    return arr


def _as_masks(name: str, masks: Any, shape: tuple[int, ...], against: str) -> np.ndarray:
    if not isinstance(masks, np.ndarray) or masks.dtype != np.bool_:
        raise TypeError(f"{name} must be a boolean NumPy array, got {describe(masks)}.")
    arr = masks
    if arr.shape != shape:
        raise ValueError(
            f"{name} must have the shape of {against} {shape}, got {arr.shape}."
        )
    return arr


def _as_fraction(name: str, value: Any) -> float:
    """A real number in (0, 1]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a real number in (0, 1], got {describe(value)}.")
    v = float(value)
    if not 0.0 < v <= 1.0:  # also refuses NaN
        raise ValueError(f"{name} must be in (0, 1], got {v}.")
    return v


def _as_boxes(name: str, boxes: Any) -> np.ndarray:
    arr = as_float_array(name, boxes)
    if arr.ndim == 0 or arr.shape[-1] != 4:
        raise ValueError(
            f"{name} must have a last axis of length 4 (row0, col0, row1, col1), "
            f"got shape {arr.shape}."
        )
    if np.any(arr[..., 2] < arr[..., 0]) or np.any(arr[..., 3] < arr[..., 1]):
        raise ValueError(f"{name} must have row1 >= row0 and col1 >= col0 in every box.")
    return arr


def _peaks(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, column of each map's first maximum in row-major order, and whether the map
    has a peak at all (False when all its values are equal)."""
    n, h, w = maps.shape
    flat = maps.reshape(n, h * w)
    idx = np.argmax(flat, axis=1)
    informative = flat.max(axis=1) > flat.min(axis=1)
    return idx // w, idx % w, informative


# ---------------------------------------------------------------------------- points


def pointing_game(maps: Any, masks: Any) -> np.ndarray:
    """Pointing game: is each map's peak inside the object?

    Parameters
    ----------
    maps : (N, H, W) real, at image resolution.
    masks : (N, H, W) bool, the object's pixels.

    Returns
    -------
    (N,) bool. A hit when the first maximum of the map in row-major order lies in the
    mask; a map whose values are all equal (e.g. all zero) is a miss (no evidence is not
    a hit).
    """
    m = _as_maps("maps", maps)
    mk = _as_masks("masks", masks, m.shape, "maps")
    rows, cols, informative = _peaks(m)
    return informative & mk[np.arange(m.shape[0]), rows, cols]


def discrimination(maps_c: Any, masks_c: Any, masks_other: Any) -> np.ndarray:
    """Class discrimination on two-object scenes: does the map for class ``c`` peak on
    the object of class ``c`` and not on the other object?

    Parameters
    ----------
    maps_c : (N, H, W) real, the maps explaining class ``c``, at image resolution.
    masks_c : (N, H, W) bool, the pixels of the object of class ``c``.
    masks_other : (N, H, W) bool, the pixels of the other object.

    Returns
    -------
    (N,) bool: True when the map's peak (first maximum in row-major order) lies in
    ``masks_c`` and outside ``masks_other``. A constant map is False.
    """
    m = _as_maps("maps_c", maps_c)
    mc = _as_masks("masks_c", masks_c, m.shape, "maps_c")
    mo = _as_masks("masks_other", masks_other, m.shape, "maps_c")
    rows, cols, informative = _peaks(m)
    at = (np.arange(m.shape[0]), rows, cols)
    return informative & mc[at] & ~mo[at]


# ----------------------------------------------------------------------------- boxes


def boxes_from_maps(maps: Any, threshold: float = 0.15) -> np.ndarray:
    """The box of the largest thresholded segment of each map (vectorised
    ``box_from_map``).

    Parameters
    ----------
    maps : (N, H, W) real.
    threshold : fraction in (0, 1] of each map's maximum; pixels ``>= threshold * max``
        are kept.

    Returns
    -------
    (N, 4) int64 boxes ``(row0, col0, row1, col1)``, end exclusive: the tight box of the
    largest 8-connected component of the kept pixels (ties: the component whose first
    pixel comes first in row-major order); ``(0, 0, 0, 0)`` for a map whose maximum is
    ``<= 0``.
    """
    m = _as_maps("maps", maps)
    t = _as_fraction("threshold", threshold)
    n = m.shape[0]
    out = np.zeros((n, 4), dtype=np.int64)
    if n == 0:
        return out
    top = m.max(axis=(1, 2))
    keep = (m >= t * top[:, None, None]) & (top > 0)[:, None, None]
    # 8-connectivity inside each map, none across maps.
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True
    labels, count = ndimage.label(keep, structure=structure)
    if count == 0:
        return out
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    slices = ndimage.find_objects(labels)  # component k+1 -> (maps, rows, cols) slices
    spans = np.array(
        [(s[0].start, s[1].start, s[2].start, s[1].stop, s[2].stop) for s in slices],
        dtype=np.int64,
    )
    owner = spans[:, 0]
    # Sort by map, then size descending, then label ascending (= row-major first pixel).
    order = np.lexsort((np.arange(count), -sizes, owner))
    first = order[np.r_[True, owner[order][1:] != owner[order][:-1]]]
    out[owner[first]] = spans[first, 1:]
    return out


def box_from_map(map: Any, threshold: float = 0.15) -> tuple[int, int, int, int] | None:
    """The box of the largest segment of ``map`` (H, W) above ``threshold * max``.

    As in the Grad-CAM paper's localisation experiment: keep the pixels
    ``>= threshold * max(map)`` (threshold 0.15 by default), take the largest
    8-connected component (ties: the one whose first pixel comes first in row-major
    order) and return its tight box ``(row0, col0, row1, col1)``, end exclusive.
    Returns ``None`` when the map's maximum is ``<= 0`` (nothing to threshold).
    """
    arr = as_float_array("map", map, ndim=2)
    box = boxes_from_maps(arr[None], threshold)[0]
    if arr.max() <= 0:
        return None
    r0, c0, r1, c1 = (int(v) for v in box)
    return r0, c0, r1, c1


def box_iou(a: Any, b: Any) -> np.ndarray:
    """Intersection over union of boxes ``(row0, col0, row1, col1)``, end exclusive.

    ``a`` and ``b`` have shape (..., 4) and the same leading shape, or one of them is a
    single box (4,) compared with every box of the other. Returns the IoUs with the
    leading shape (a 0-d value for two single boxes). Two boxes with an empty union
    (both empty) have IoU 0.
    """
    x = _as_boxes("a", a)
    y = _as_boxes("b", b)
    if x.shape != y.shape and x.shape != (4,) and y.shape != (4,):
        raise ValueError(
            f"b must have the shape of a {x.shape} or be a single box (4,), got {y.shape}."
        )
    inter_h = np.clip(np.minimum(x[..., 2], y[..., 2]) - np.maximum(x[..., 0], y[..., 0]), 0, None)
    inter_w = np.clip(np.minimum(x[..., 3], y[..., 3]) - np.maximum(x[..., 1], y[..., 1]), 0, None)
    inter = inter_h * inter_w
    area_x = (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])
    area_y = (y[..., 2] - y[..., 0]) * (y[..., 3] - y[..., 1])
    union = area_x + area_y - inter
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return iou[()]


def box_accuracy(
    maps: Any, boxes: Any, threshold: float = 0.15, iou: float = 0.5
) -> np.ndarray:
    """Localisation accuracy: does the box from each map overlap the true box enough?

    Parameters
    ----------
    maps : (N, H, W) real, at image resolution.
    boxes : (N, 4) true boxes ``(row0, col0, row1, col1)``, end exclusive.
    threshold : passed to ``boxes_from_maps`` (fraction of each map's maximum).
    iou : the IoU a hit needs, in (0, 1].

    Returns
    -------
    (N,) bool: ``box_iou(boxes_from_maps(maps, threshold), boxes) >= iou``. A map with no
    positive value gives no box and is a miss.
    """
    m = _as_maps("maps", maps)
    gt = _as_boxes("boxes", boxes)
    if gt.shape != (m.shape[0], 4):
        raise ValueError(
            f"boxes must have shape ({m.shape[0]}, 4), one box per map, got {gt.shape}."
        )
    need = _as_fraction("iou", iou)
    return np.asarray(box_iou(boxes_from_maps(m, threshold), gt)) >= need


# -------------------------------------------------------------------------- baseline


def centre_box_baseline(shape: Any, fraction: float = 0.5) -> tuple[int, int, int, int]:
    """The centre-box baseline: a box centred in an image of ``shape`` (H, W) (or an int
    for a square image) whose sides are about ``fraction`` of the image's.

    Each side is ``H - 2 * round(H * (1 - fraction) / 2)`` (at least 1, or 2 for an
    even ``H``), so it has the parity of ``H`` and the box is exactly centred:
    ``row0 = (H - side) / 2``. Returns ``(row0, col0, row1, col1)``, end exclusive.
    """
    height, width = as_pair("shape", shape)
    f = _as_fraction("fraction", fraction)

    def side(length: int) -> int:
        s = length - 2 * round(length * (1.0 - f) / 2.0)
        return max(s, 2 - length % 2)

    h, w = side(height), side(width)
    r0, c0 = (height - h) // 2, (width - w) // 2
    return r0, c0, r0 + h, c0 + w


def centre_maps(n: int, height: int, width: int, fraction: float = 0.5) -> np.ndarray:
    """Maps of the centre-box baseline, usable by every metric here: (n, H, W) float64.

    Each map is 0.5 inside ``centre_box_baseline((height, width), fraction)``, 1.0 at the
    image's centre pixel ``(height // 2, width // 2)`` (the lower-right one of the central
    four when a side is even; it lies in the box), and 0 elsewhere. So its peak, for the
    pointing game, is the centre pixel (a flat box would "peak" at its top-left corner),
    and ``boxes_from_maps`` with any threshold ``<= 0.5`` returns exactly the centre box.
    """
    n = as_positive_int("n", n, minimum=0)
    height = as_positive_int("height", height)
    width = as_positive_int("width", width)
    r0, c0, r1, c1 = centre_box_baseline((height, width), fraction)
    one = np.zeros((height, width), dtype=np.float64)
    one[r0:r1, c0:c1] = 0.5
    one[height // 2, width // 2] = 1.0
    return np.repeat(one[None], n, axis=0)
