"""Synthetic scenes with ground truth, for training a small CNN and scoring its maps.

Each scene is a square RGB image holding one or two flat-coloured shapes on a noisy,
textured background, together with the exact pixel mask and tight box of every shape.
The class of a shape is its **geometry** only (``CLASSES``); its colour, scale and
position are random and independent of the class, so a network can only be right by
looking at the shape, and a good explanation map must light up the shape's pixels.

Determinism: scene ``i`` of ``make_scenes(n, seed=s, ...)`` is drawn from its own
generator, ``numpy.random.default_rng(numpy.random.SeedSequence(s).spawn(n)[i])``.
Spawned children do not depend on ``n``, so the first ``k`` scenes of a larger batch
are the ``k`` scenes of a smaller one (with the same other arguments; the arrays are
computed per scene, in chunks of 256, and come out bit-identical in the tests). The same
call on the same machine and NumPy version returns bit-identical arrays; NumPy does not
promise the same random streams across its versions.

Geometry, in continuous pixel coordinates where pixel ``(i, j)`` covers
``[i, i+1) x [j, j+1)`` and is "inside" a shape when its centre ``(i+0.5, j+0.5)`` is:

* ``size s`` of a shape is the side of its bounding square before rotation;
* ``"disc"``: the points within ``s/2`` of the centre (area ~ pi s^2/4);
* ``"square"``: side ``s``; unrotated it covers exactly ``s x s`` pixels;
* ``"triangle"``: isosceles, apex at the top, base ``s`` at the bottom, height ``s``
  (area ~ s^2/2);
* ``"cross"``: a plus sign of span ``s`` with arms of width ``s/3`` (area ~ 5 s^2/9).

With ``rotate=True`` square, triangle and cross are turned by a uniform random angle
about the centre of their bounding square (a disc is not turned). Every shape is placed
with its mask fully inside the image, at a uniformly random position.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from .._validate import as_float_array, as_positive_int, describe

__all__ = ["CLASSES", "Scenes", "make_scenes", "standardize"]

#: The shape classes, in label order.
CLASSES: tuple[str, ...] = ("disc", "square", "triangle", "cross")

#: Minimal contrast: an object's colour differs from the mean of the visible background
#: around it (see ``make_scenes``) by at least this much in at least one channel.
MIN_CONTRAST = 0.3
#: Width, in pixels, of the band around an object's box whose background is averaged
#: for the contrast rule.
CONTRAST_MARGIN = 3
#: Background pixels kept between the boxes of the two objects of a two-object scene.
OBJECT_SPACING = 2

_COLOUR_CANDIDATES = 8
_PLACEMENT_ATTEMPTS = 10  # random placements of a pair before the corner placement
_KEEP_SIZE = 5  # of which the first ones keep the drawn sizes
_CHUNK = 256
_GRID = 5  # the low-frequency colour field is a bilinear upsampling of a 5 x 5 grid


def _layout(widths: dict[str, int]) -> tuple[dict[str, slice], int]:
    """Consecutive column slices of the given widths, and the total width."""
    out, at = {}, 0
    for name, width in widths.items():
        out[name] = slice(at, at + width)
        at += width
    return out, at


# Every scene draws all its random numbers but the pixel noise (and, for two objects,
# the placement) in one call ``rng.random(_U_WIDTH)``; these are its columns.
_U, _U_WIDTH = _layout(
    {
        "label": 2, "size": 2, "angle": 2, "pos": 2,
        "stripes": 1, "period": 1, "theta": 1, "phase": 1, "stripe_amp": 1, "stripe_w": 3,
        "base": 3, "sigma": 1,
        "blob_y": 3, "blob_x": 3, "blob_sigma": 3, "blob_amp": 9,
        "grid": 3 * _GRID * _GRID,
        "colour": 2 * _COLOUR_CANDIDATES * 3,
    }
)  # fmt: skip


@dataclass(frozen=True, eq=False)
class Scenes:
    """A batch of synthetic scenes and their ground truth.

    Attributes
    ----------
    images : (n, 3, H, W) float64 in [0, 1]
    labels : (n,) int64, the class of the first object (index into ``class_names``).
    object_labels : (n, objects) int64, the class of every object.
    masks : (n, objects, H, W) bool, the visible pixels of every object (exactly the
        pixels painted in that object's colour).
    boxes : (n, objects, 4) int64, ``(row0, col0, row1, col1)`` tight box of each mask,
        start inclusive, end exclusive.
    object_colors : (n, objects, 3) float64, the flat RGB colour of each object.
    sizes : (n, objects) int64, the size ``s`` of each shape (see the module docstring).
    angles : (n, objects) float64, rotation of each shape in radians (0 if not rotated).
    class_names : the class names; ``class_names[label]`` names a label.
    """

    images: np.ndarray
    labels: np.ndarray
    object_labels: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray
    object_colors: np.ndarray
    sizes: np.ndarray
    angles: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.images.shape[0])


# --------------------------------------------------------------------------- shapes


@lru_cache(maxsize=1024)
def _unrotated_mask(kind: str, s: int) -> np.ndarray:
    mask = _shape_mask(kind, s, 0.0)
    mask.flags.writeable = False
    return mask


def _shape_mask(kind: str, s: int, angle: float) -> np.ndarray:
    """The mask of one shape of size ``s``, cropped to its tight box (never empty)."""
    # Window large enough for any rotation; its centre is the shape's centre.
    f = s if angle == 0.0 else int(math.ceil(s * math.sqrt(2.0))) + 1
    t = np.arange(f, dtype=np.float64) + 0.5 - f / 2.0
    dy, dx = t[:, None], t[None, :]
    if angle != 0.0:
        c, si = math.cos(angle), math.sin(angle)
        u = c * dy + si * dx  # coordinates in the shape's own (unrotated) frame
        v = -si * dy + c * dx
    else:
        u, v = dy, dx
    h = s / 2.0
    if kind == "disc":
        m = u * u + v * v <= h * h
    elif kind == "square":
        m = (np.abs(u) < h) & (np.abs(v) < h)
    elif kind == "triangle":
        m = (u < h) & (np.abs(v) < (u + h) / 2.0)
    elif kind == "cross":
        arm = s / 6.0
        au, av = np.abs(u), np.abs(v)
        m = ((au < h) & (av < arm)) | ((av < h) & (au < arm))
    else:  # pragma: no cover - names are validated before
        raise ValueError(f"unknown shape {kind!r}")
    rows = np.flatnonzero(m.any(axis=1))
    cols = np.flatnonzero(m.any(axis=0))
    return m[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _mask_of(kind: str, s: int, angle: float) -> np.ndarray:
    return _unrotated_mask(kind, s) if angle == 0.0 else _shape_mask(kind, s, angle)


def _place_pair(
    rng: np.random.Generator,
    size: int,
    kinds: tuple[str, str],
    sizes: list[int],
    angles: list[float],
    min_size: int,
) -> tuple[list[np.ndarray], list[tuple[int, int]], list[int]]:
    """Place two shapes with at least ``OBJECT_SPACING`` background pixels between their boxes.

    Each attempt places the first shape uniformly at random, and the second uniformly
    among the positions that keep it apart; if there is none, the next attempt follows.
    The first ``_KEEP_SIZE`` attempts keep the drawn sizes; the later ones shrink both
    sizes step by step towards ``min_size`` (two big shapes may not fit together). The
    last resort (very rare) puts two shapes of ``min_size`` with the first in the
    top-left corner, which always leaves room (checked by ``make_scenes``).
    Returns the two masks, their top-left corners and their final sizes.
    """
    for attempt in range(_PLACEMENT_ATTEMPTS + 1):
        shrink = max(attempt - _KEEP_SIZE + 1, 0) / (_PLACEMENT_ATTEMPTS - _KEEP_SIZE + 1)
        now = [min_size + round((s - min_size) * (1.0 - shrink)) for s in sizes]
        m1 = _mask_of(kinds[0], now[0], angles[0])
        m2 = _mask_of(kinds[1], now[1], angles[1])
        if attempt == _PLACEMENT_ATTEMPTS:
            p1 = (0, 0)
        else:
            p1 = (
                int(rng.integers(0, size - m1.shape[0] + 1)),
                int(rng.integers(0, size - m1.shape[1] + 1)),
            )
        r0, c0, r1, c1 = p1[0], p1[1], p1[0] + m1.shape[0], p1[1] + m1.shape[1]
        h, w = m2.shape
        rr = np.arange(size - h + 1)[:, None]
        cc = np.arange(size - w + 1)[None, :]
        d = OBJECT_SPACING
        apart = (rr + h + d <= r0) | (rr >= r1 + d) | (cc + w + d <= c0) | (cc >= c1 + d)
        ok = np.flatnonzero(apart)
        if ok.size:
            r2, c2 = divmod(int(ok[int(rng.integers(0, ok.size))]), size - w + 1)
            return [m1, m2], [p1, (r2, c2)], now
    raise AssertionError("unreachable: the corner placement always leaves room")


# ------------------------------------------------------------------------ background


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) matrix of 1-D linear interpolation with aligned end points."""
    x = np.linspace(0.0, n_in - 1.0, n_out)
    i0 = np.minimum(np.floor(x).astype(np.int64), n_in - 2)
    frac = x - i0
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), i0] = 1.0 - frac
    m[np.arange(n_out), i0 + 1] = frac
    return m


def _smooth_backgrounds(u: np.ndarray, size: int, out: np.ndarray) -> None:
    """Write into ``out`` (m, 3, H, W) the noiseless backgrounds of the scenes whose
    uniforms are ``u`` (m, _U_WIDTH).

    background = base colour + low-frequency field + (stripes or three blobs). Every
    term is a sum of separable products ``L[c, h, r] * R[r, w]`` (rank 11 in all), so
    one batched matrix product ``L @ R`` builds the images without per-pixel Python work:

    * base colour (rank 1): ``base_c * 1 * 1``;
    * low-frequency field (rank 5): ``sum_gk up[h, g] grid[c, g, k] up[w, k]``, a
      5 x 5 grid of uniform noise in [-0.3, 0.3] upsampled bilinearly;
    * stripes (rank 2): ``a_c sin(ky y + kx x + phase)``, expanded as
      ``sin(ky y + phase) cos(kx x) + cos(ky y + phase) sin(kx x)``;
      ``a_c = 0`` in the scenes that have blobs instead;
    * blobs (rank 3): ``sum_b a_bc exp(-(y - y_b)^2 / 2 s_b^2) exp(-(x - x_b)^2 / 2 s_b^2)``;
      ``a_bc = 0`` in the scenes that have stripes instead.
    """
    m = u.shape[0]
    scale = size / 64.0
    coord = np.arange(size, dtype=np.float64) + 0.5
    up = _interp_matrix(size, _GRID)

    stripes = u[:, _U["stripes"]] < 0.5  # (m, 1)
    period = (3.0 + 7.0 * u[:, _U["period"]]) * scale
    theta = np.pi * u[:, _U["theta"]]
    ky = 2.0 * np.pi / period * np.cos(theta)
    kx = 2.0 * np.pi / period * np.sin(theta)
    ay = ky * coord + 2.0 * np.pi * u[:, _U["phase"]]  # (m, H)
    ax = kx * coord  # (m, W)
    amp = (0.05 + 0.15 * u[:, _U["stripe_amp"]]) * (2.0 * u[:, _U["stripe_w"]] - 1.0)
    amp = amp * stripes  # (m, 3)

    by = size * u[:, _U["blob_y"], None]  # (m, 3, 1)
    bx = size * u[:, _U["blob_x"], None]
    bs = (2.0 + 4.0 * u[:, _U["blob_sigma"], None]) * scale
    gy = np.exp(-((coord - by) ** 2) / (2.0 * bs * bs))  # (m, 3 blobs, H)
    gx = np.exp(-((coord - bx) ** 2) / (2.0 * bs * bs))
    bamp = (0.5 * u[:, _U["blob_amp"]] - 0.25).reshape(m, 3, 3) * ~stripes[:, :, None]

    base = 0.15 + 0.7 * u[:, _U["base"]]  # (m, 3)
    grid = (0.6 * u[:, _U["grid"]] - 0.3).reshape(m, 3, _GRID, _GRID)

    left = np.concatenate(
        [
            np.broadcast_to(base[:, :, None, None], (m, 3, size, 1)),
            up @ grid,  # (m, 3, H, 5)
            amp[:, :, None, None] * np.sin(ay)[:, None, :, None],
            amp[:, :, None, None] * np.cos(ay)[:, None, :, None],
            np.einsum("mbc,mbh->mchb", bamp, gy),
        ],
        axis=3,
    )  # (m, 3, H, 11)
    right = np.concatenate(
        [
            np.ones((m, 1, size)),
            np.broadcast_to(up.T, (m, _GRID, size)),
            np.cos(ax)[:, None, :],
            np.sin(ax)[:, None, :],
            gx,
        ],
        axis=1,
    )  # (m, 11, W)
    np.matmul(left, right[:, None], out=out)


# --------------------------------------------------------------------------- colours


def _pick_colours(candidates: np.ndarray, background: np.ndarray) -> np.ndarray:
    """One colour per row: candidates (m, c, 3), background means (m, 3) -> (m, 3).

    The first candidate that differs from the background by at least ``MIN_CONTRAST`` in
    some channel; if none does, the first candidate with the channel of most room pushed
    to the far end (0 or 1), which then differs by at least 0.5.
    """
    ok = np.max(np.abs(candidates - background[:, None, :]), axis=2) >= MIN_CONTRAST
    rows = np.arange(candidates.shape[0])
    colours = candidates[rows, np.argmax(ok, axis=1)].copy()
    bad = np.flatnonzero(~ok.any(axis=1))
    if bad.size:
        bgb = background[bad]
        ch = np.argmax(np.maximum(bgb, 1.0 - bgb), axis=1)
        colours[bad] = candidates[bad, 0]
        colours[bad, ch] = np.where(bgb[np.arange(bad.size), ch] >= 0.5, 0.0, 1.0)
    return colours


def _surround_means(
    images: np.ndarray, occupied: np.ndarray, boxes: np.ndarray
) -> np.ndarray:
    """Per-channel mean background near each box: images (m, 3, H, W), occupied (m, H, W)
    (the pixels of every object), boxes (m, 4) -> (m, 3).

    The mean is over the box grown by ``CONTRAST_MARGIN`` pixels and clipped to the image,
    minus the occupied pixels; over the whole grown box if that leaves nothing.
    """
    size = images.shape[-1]
    idx = np.arange(size)
    lo = np.maximum(boxes[:, :2] - CONTRAST_MARGIN, 0)
    hi = boxes[:, 2:] + CONTRAST_MARGIN
    in_rows = (idx >= lo[:, :1]) & (idx < hi[:, :1])  # (m, H)
    in_cols = (idx >= lo[:, 1:]) & (idx < hi[:, 1:])  # (m, W)
    grown = in_rows[:, :, None] & in_cols[:, None, :]
    free = grown & ~occupied
    count = free.sum(axis=(1, 2))
    empty = count == 0
    free[empty] = grown[empty]
    count[empty] = grown[empty].sum(axis=(1, 2))
    return np.einsum("mchw,mhw->mc", images, free.astype(np.float64)) / count[:, None]


# ---------------------------------------------------------------------------- public


def _check_classes(classes: Any) -> tuple[str, ...]:
    if isinstance(classes, str) or not isinstance(classes, Sequence):
        raise TypeError(
            f"classes must be a sequence of shape names from {CLASSES}, got {describe(classes)}."
        )
    names = tuple(classes)
    unknown = [c for c in names if not isinstance(c, str) or c not in CLASSES]
    if unknown:
        raise ValueError(f"classes must hold shape names from {CLASSES}, got {unknown[0]!r}.")
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"classes must be distinct and non-empty, got {names!r}.")
    return names


def make_scenes(
    n: int,
    *,
    size: int = 64,
    objects: int = 1,
    seed: int = 0,
    classes: Sequence[str] = CLASSES,
    min_size: int | None = None,
    max_size: int | None = None,
    rotate: bool = False,
) -> Scenes:
    """Draw ``n`` synthetic scenes of ``size x size`` pixels with ground truth.

    Parameters
    ----------
    n : number of scenes (>= 1).
    size : image height and width in pixels (>= 16).
    objects : 1 or 2 shapes per scene. With 2, the shapes have different classes and
        their boxes are separated by at least ``OBJECT_SPACING`` background pixels (so the masks are
        disjoint and not 8-connected to each other); ``labels`` is the first one's class.
        The pair is placed by bounded rejection: a few random placements of the first
        shape with the second uniform among the positions apart from it; then the same
        with both sizes shrunk step by step towards ``min_size`` (about 5 % of pairs
        with ``rotate=True`` at the defaults, 0.1 % without); as a last resort the first
        shape in the top-left corner with both at ``min_size``, which always fits.
    seed : non-negative int; see the module docstring for what it determines.
    classes : the shape names to use, a subset of ``CLASSES`` in the desired label order
        (label ``k`` means ``classes[k]``). Each object's class is uniform over these (the
        second object's: uniform over the classes other than the first's).
    min_size, max_size : range of the shape size ``s`` (uniform integer, inclusive).
        Default ``round(14 * size / 64)`` and ``round(30 * size / 64)``, i.e. 14 and 30
        at 64 px. Need ``4 <= min_size <= max_size <= size`` (``max_size * sqrt(2) <=
        size`` with ``rotate``); with two objects, two shapes of ``min_size`` must fit
        side by side.
    rotate : turn square, triangle and cross by a uniform random angle.

    Backgrounds are a random base colour, plus a smooth random colour field (a 5 x 5
    grid of uniform noise upsampled bilinearly), plus either random sinusoidal stripes or
    three soft Gaussian blobs, plus per-pixel Gaussian noise (std 0.02 to 0.08), clipped
    to [0, 1]. Shapes are painted on top in a flat colour, independent of the class: the
    first of 8 uniform candidates in [0, 1]^3 that differs by at least ``MIN_CONTRAST``
    in some channel from the mean background within ``CONTRAST_MARGIN`` pixels of the
    shape's box (the box grown by that margin, minus all objects' pixels); if none does
    (rare), the first candidate with its channel of most room set to 0 or 1.

    Returns
    -------
    Scenes
    """
    n = as_positive_int("n", n)
    size = as_positive_int("size", size, minimum=16)
    objects = as_positive_int("objects", objects)
    if objects > 2:
        raise ValueError(f"objects must be 1 or 2, got {objects}.")
    seed = as_positive_int("seed", seed, minimum=0)
    names = _check_classes(classes)
    if objects == 2 and len(names) < 2:
        raise ValueError(f"classes must hold at least 2 names when objects=2, got {names!r}.")
    if not isinstance(rotate, (bool, np.bool_)):
        raise TypeError(f"rotate must be a bool, got {describe(rotate)}.")
    rotate = bool(rotate)
    min_size = round(14 * size / 64) if min_size is None else min_size
    max_size = round(30 * size / 64) if max_size is None else max_size
    min_size = as_positive_int("min_size", min_size, minimum=4)
    max_size = as_positive_int("max_size", max_size, minimum=4)
    if min_size > max_size:
        raise ValueError(f"min_size must be <= max_size = {max_size}, got {min_size}.")
    span = math.sqrt(2.0) if rotate else 1.0  # largest extent of a shape, per unit of s
    if max_size * span > size:
        limit = math.floor(size / span)
        raise ValueError(
            f"max_size must be <= {limit} for size={size}"
            f"{' with rotate=True' if rotate else ''}, got {max_size}."
        )
    if objects == 2 and 2 * math.ceil(min_size * span) + OBJECT_SPACING > size:
        raise ValueError(
            f"min_size must leave room for two objects in a {size}-pixel image "
            f"(2 * min_size{' * sqrt(2)' if rotate else ''} + {OBJECT_SPACING} <= size), got {min_size}."
        )

    n_cls = len(names)
    images = np.empty((n, 3, size, size), dtype=np.float64)
    masks = np.zeros((n, objects, size, size), dtype=bool)
    boxes = np.empty((n, objects, 4), dtype=np.int64)

    # Every scene's own generator draws, in this order: its uniforms ``u[i]``, then
    # (two objects) the placement, then (phase 2) its pixel noise.
    rngs = [np.random.default_rng(c) for c in np.random.SeedSequence(seed).spawn(n)]
    u = np.empty((n, _U_WIDTH), dtype=np.float64)
    for i, rng in enumerate(rngs):
        rng.random(out=u[i])

    def uniform_int(col: np.ndarray, count: int | np.ndarray) -> np.ndarray:
        """Uniform integers in [0, count) from uniforms in [0, 1)."""
        return np.minimum(np.floor(col * count).astype(np.int64), np.asarray(count) - 1)

    lab_u = u[:, _U["label"]]
    object_labels = np.empty((n, objects), dtype=np.int64)
    object_labels[:, 0] = uniform_int(lab_u[:, 0], n_cls)
    if objects == 2:
        other = uniform_int(lab_u[:, 1], n_cls - 1)
        object_labels[:, 1] = other + (other >= object_labels[:, 0])
    sizes = min_size + uniform_int(u[:, _U["size"]][:, :objects], max_size - min_size + 1)
    turns = np.asarray([kind != "disc" for kind in names])[object_labels] & rotate
    angles = np.where(turns, 2.0 * np.pi * u[:, _U["angle"]][:, :objects], 0.0)

    # Phase 1, per scene: masks and placement.
    for i in range(n):
        kinds = [names[k] for k in object_labels[i]]
        if objects == 1:
            m = _mask_of(kinds[0], int(sizes[i, 0]), float(angles[i, 0]))
            room = np.array([size - m.shape[0] + 1, size - m.shape[1] + 1])
            r, c = uniform_int(u[i, _U["pos"]], room)
            local, pos = [m], [(int(r), int(c))]
        else:
            local, pos, got = _place_pair(
                rngs[i],
                size,
                (kinds[0], kinds[1]),
                [int(v) for v in sizes[i]],
                [float(v) for v in angles[i]],
                min_size,
            )
            sizes[i] = got
        for k in range(objects):
            (r, c), m = pos[k], local[k]
            masks[i, k, r : r + m.shape[0], c : c + m.shape[1]] = m
            boxes[i, k] = (r, c, r + m.shape[0], c + m.shape[1])

    # Phase 2, in chunks: background, pixel noise, contrasting colours, painting.
    colours = np.empty((n, objects, 3), dtype=np.float64)
    candidates = u[:, _U["colour"]].reshape(n, 2, _COLOUR_CANDIDATES, 3)
    sigma = (0.02 + 0.06 * u[:, _U["sigma"]]).astype(np.float32)
    noise = np.empty((min(n, _CHUNK), 3, size, size), dtype=np.float32)
    for a in range(0, n, _CHUNK):
        b = min(a + _CHUNK, n)
        out = images[a:b]
        _smooth_backgrounds(u[a:b], size, out)
        for j in range(b - a):
            rngs[a + j].standard_normal(dtype=np.float32, out=noise[j])
        part = noise[: b - a]
        part *= sigma[a:b, :, None, None]
        out += part
        np.clip(out, 0.0, 1.0, out=out)
        occupied = np.asarray(masks[a:b].any(axis=1))
        for k in range(objects):
            near = _surround_means(out, occupied, boxes[a:b, k])
            colours[a:b, k] = _pick_colours(candidates[a:b, k], near)
        for k in range(objects):
            np.copyto(out, colours[a:b, k, :, None, None], where=masks[a:b, k, None])

    return Scenes(
        images=images,
        labels=object_labels[:, 0].copy(),
        object_labels=object_labels,
        masks=masks,
        boxes=boxes,
        object_colors=colours,
        sizes=sizes,
        angles=angles,
        class_names=names,
    )


def standardize(
    images: Any, mean: Any = None, std: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardise ``images`` (N, C, H, W) per channel: ``(images - mean) / std``.

    ``mean`` and ``std`` (each of shape (C,)) are given together or not at all; when not
    given they are the per-channel mean and (population) standard deviation of
    ``images`` over the batch and both spatial axes, so a training set's statistics can
    be reused on a test set. Returns ``(standardised, mean, std)``, all float64.
    """
    x = as_float_array("images", images, ndim=4)
    if (mean is None) != (std is None):
        raise ValueError(
            "mean and std must be given together or both left out, got "
            f"mean={'None' if mean is None else 'an array'} and "
            f"std={'None' if std is None else 'an array'}."
        )
    c = x.shape[1]
    if mean is None:
        if x.shape[0] * x.shape[2] * x.shape[3] == 0:
            raise ValueError(f"images must hold at least one pixel, got shape {x.shape}.")
        mu = x.mean(axis=(0, 2, 3))
        sd = x.std(axis=(0, 2, 3))
        if np.any(sd == 0):
            ch = int(np.flatnonzero(sd == 0)[0])
            raise ValueError(
                f"images must vary in every channel to be standardised, got a constant "
                f"channel {ch}."
            )
    else:
        mu = as_float_array("mean", mean, ndim=1)
        sd = as_float_array("std", std, ndim=1)
        for name, arr in (("mean", mu), ("std", sd)):
            if arr.shape != (c,):
                raise ValueError(
                    f"{name} must have shape ({c},) to match the channels of images, "
                    f"got {arr.shape}."
                )
        if np.any(sd <= 0):
            raise ValueError(f"std must be positive in every channel, got {sd.tolist()}.")
    out = (x - mu[:, None, None]) / sd[:, None, None]
    return out, mu.copy(), sd.copy()
