"""Synthetic scenes with ground truth, for training a small CNN and scoring its maps.

Each scene is a square RGB image holding one or two flat-coloured shapes on a noisy,
textured background, together with the exact pixel mask and tight box of every shape.
The class of a shape is its **geometry** only (``CLASSES``); its colour, scale and
position are random and independent of the class, so a network can only be right by
looking at the shape, and a good explanation map must light up the shape's pixels.

Determinism: scene ``i`` of ``make_scenes(n, seed=s, ...)`` is drawn from its own
generator, ``numpy.random.default_rng(numpy.random.SeedSequence(s).spawn(n)[i])``.
Spawned children do not depend on ``n``, so the first ``k`` scenes of a larger batch
are the ``k`` scenes of a smaller one (with the same other arguments). The same call on
the same NumPy version returns bit-identical arrays.

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
from typing import Any

import numpy as np

from ._checks import as_float_array, as_positive_int, describe

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
GAP = 2

_COLOUR_CANDIDATES = 8
_PLACEMENT_ATTEMPTS = 10
_CHUNK = 256
_GRID = 5  # the low-frequency colour field is a bilinear upsampling of a 5 x 5 grid


@dataclass(frozen=True)
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


def _separated(r: np.ndarray, c: np.ndarray, h: int, w: int, box: tuple) -> np.ndarray:
    """Whether boxes with top-left ``(r, c)`` and shape ``(h, w)`` keep ``GAP`` pixels
    of background from ``box = (r0, c0, r1, c1)``."""
    r0, c0, r1, c1 = box
    return (r + h + GAP <= r0) | (r >= r1 + GAP) | (c + w + GAP <= c0) | (c >= c1 + GAP)


def _place_pair(
    rng: np.random.Generator,
    size: int,
    kinds: tuple[str, str],
    sizes: list[int],
    angles: list[float],
    min_size: int,
) -> tuple[list[np.ndarray], list[tuple[int, int]], list[int]]:
    """Place two shapes with ``GAP`` background pixels between their boxes.

    Up to ``_PLACEMENT_ATTEMPTS`` times: place the first shape uniformly at random,
    then the second uniformly among the positions that keep it apart; if there is none,
    place the first shape again. After that (rare), both shapes get ``min_size`` and the
    first goes to the top-left corner, which always leaves room (checked by the caller).
    """
    m1 = _shape_mask(kinds[0], sizes[0], angles[0])
    m2 = _shape_mask(kinds[1], sizes[1], angles[1])
    for attempt in range(_PLACEMENT_ATTEMPTS + 1):
        if attempt == _PLACEMENT_ATTEMPTS:
            sizes = [min_size, min_size]
            m1 = _shape_mask(kinds[0], min_size, angles[0])
            m2 = _shape_mask(kinds[1], min_size, angles[1])
            p1 = (0, 0)
        else:
            p1 = (
                int(rng.integers(0, size - m1.shape[0] + 1)),
                int(rng.integers(0, size - m1.shape[1] + 1)),
            )
        box1 = (p1[0], p1[1], p1[0] + m1.shape[0], p1[1] + m1.shape[1])
        h, w = m2.shape
        rr, cc = np.meshgrid(np.arange(size - h + 1), np.arange(size - w + 1), indexing="ij")
        ok = np.flatnonzero(_separated(rr, cc, h, w, box1))
        if ok.size:
            k = ok[int(rng.integers(0, ok.size))]
            return [m1, m2], [p1, (int(rr.flat[k]), int(cc.flat[k]))], sizes
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


def _backgrounds(params: dict[str, np.ndarray], noise: np.ndarray, size: int) -> None:
    """Turn unit Gaussian ``noise`` (n, 3, H, W) into backgrounds, in place.

    background = clip(base colour + low-frequency field + (stripes or 3 blobs)
    + sigma * noise, 0, 1). Every term is a sum of separable products, so it is built
    with ``einsum`` in chunks without per-pixel Python work.
    """
    up = _interp_matrix(size, _GRID)
    coord = np.arange(size, dtype=np.float64) + 0.5
    for a in range(0, noise.shape[0], _CHUNK):
        sl = slice(a, a + _CHUNK)
        out = noise[sl]
        out *= params["sigma"][sl, None, None, None]
        out += params["base"][sl, :, None, None]
        out += np.einsum("hg,ncgk,wk->nchw", up, params["grid"][sl], up, optimize=True)
        # Stripes: amp * w_c * sin(ky*y + kx*x + phase), expanded as
        # sin(ky*y + phase) cos(kx*x) + cos(ky*y + phase) sin(kx*x).
        ky, kx = params["ky"][sl, None], params["kx"][sl, None]
        ay = ky * coord + params["phase"][sl, None]
        ax = kx * coord
        amp = params["stripe_amp"][sl]  # (m, 3), zero for scenes without stripes
        out += np.einsum("nc,nh,nw->nchw", amp, np.sin(ay), np.cos(ax), optimize=True)
        out += np.einsum("nc,nh,nw->nchw", amp, np.cos(ay), np.sin(ax), optimize=True)
        # Blobs: amp_bc * exp(-(y-y_b)^2 / 2 s_b^2) * exp(-(x-x_b)^2 / 2 s_b^2).
        sig = params["blob_sigma"][sl, :, None]
        gy = np.exp(-((coord - params["blob_y"][sl, :, None]) ** 2) / (2.0 * sig * sig))
        gx = np.exp(-((coord - params["blob_x"][sl, :, None]) ** 2) / (2.0 * sig * sig))
        out += np.einsum("nbc,nbh,nbw->nchw", params["blob_amp"][sl], gy, gx, optimize=True)
        np.clip(out, 0.0, 1.0, out=out)


def _draw_background_params(rng: np.random.Generator, size: int) -> dict[str, Any]:
    u = rng.random(16)
    stripes = u[0] < 0.5
    period = (3.0 + 7.0 * u[1]) * size / 64.0
    theta = math.pi * u[2]
    k = 2.0 * math.pi / period
    blob_sigma = (2.0 + 4.0 * rng.random(3)) * size / 64.0
    return {
        "base": 0.15 + 0.7 * u[3:6],
        "sigma": 0.02 + 0.06 * u[6],
        "grid": rng.uniform(-0.3, 0.3, (3, _GRID, _GRID)),
        "ky": k * math.cos(theta),
        "kx": k * math.sin(theta),
        "phase": 2.0 * math.pi * u[7],
        "stripe_amp": (0.05 + 0.15 * u[8]) * rng.uniform(-1.0, 1.0, 3) * stripes,
        "blob_y": size * rng.random(3),
        "blob_x": size * rng.random(3),
        "blob_sigma": blob_sigma,
        "blob_amp": rng.uniform(-0.25, 0.25, (3, 3)) * (not stripes),
    }


# --------------------------------------------------------------------------- colours


def _pick_colour(candidates: np.ndarray, background: np.ndarray) -> np.ndarray:
    """The first candidate colour that differs from ``background`` (3,) by at least
    ``MIN_CONTRAST`` in some channel; if none does, the first candidate with the channel
    of most room pushed to the far end (0 or 1), which differs by at least 0.5."""
    ok = np.max(np.abs(candidates - background), axis=1) >= MIN_CONTRAST
    if ok.any():
        return candidates[int(np.argmax(ok))].copy()
    colour = candidates[0].copy()
    room = np.maximum(background, 1.0 - background)
    ch = int(np.argmax(room))
    colour[ch] = 0.0 if background[ch] >= 0.5 else 1.0
    return colour


def _surround_mean(image: np.ndarray, occupied: np.ndarray, box: Sequence[int]) -> np.ndarray:
    """Per-channel mean of the background within ``CONTRAST_MARGIN`` pixels of ``box``
    (the box grown by the margin and clipped to the image, minus every object's pixels);
    the mean over the whole grown box if no background pixel is left there."""
    size = image.shape[-1]
    r0 = max(box[0] - CONTRAST_MARGIN, 0)
    c0 = max(box[1] - CONTRAST_MARGIN, 0)
    r1 = min(box[2] + CONTRAST_MARGIN, size)
    c1 = min(box[3] + CONTRAST_MARGIN, size)
    region = image[:, r0:r1, c0:c1]
    free = ~occupied[r0:r1, c0:c1]
    if free.any():
        return region[:, free].mean(axis=1)
    return region.reshape(3, -1).mean(axis=1)


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
        their boxes are separated by at least ``GAP`` background pixels (so the masks are
        disjoint and not 8-connected to each other); ``labels`` is the first one's class.
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
    three soft Gaussian blobs, plus per-pixel Gaussian noise, clipped to [0, 1]. Shapes
    are painted on top in a flat colour, uniform in [0, 1]^3 and independent of the
    class, redrawn until it differs by at least ``MIN_CONTRAST`` in some channel from
    the mean background within ``CONTRAST_MARGIN`` pixels of the shape's box.

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
    if objects == 2 and 2 * math.ceil(min_size * span) + GAP > size:
        raise ValueError(
            f"min_size must leave room for two objects in a {size}-pixel image "
            f"(2 * min_size{' * sqrt(2)' if rotate else ''} + {GAP} <= size), got {min_size}."
        )

    images = np.empty((n, 3, size, size), dtype=np.float64)
    masks = np.zeros((n, objects, size, size), dtype=bool)
    object_labels = np.empty((n, objects), dtype=np.int64)
    sizes = np.empty((n, objects), dtype=np.int64)
    angles = np.zeros((n, objects), dtype=np.float64)
    boxes = np.empty((n, objects, 4), dtype=np.int64)
    candidates = np.empty((n, objects, _COLOUR_CANDIDATES, 3), dtype=np.float64)
    bg: dict[str, list] = {}
    n_cls = len(names)

    # Phase 1, per scene (its own generator): classes, sizes, angles, positions and
    # masks, background parameters, colour candidates, unit pixel noise.
    for i, child in enumerate(np.random.SeedSequence(seed).spawn(n)):
        rng = np.random.default_rng(child)
        lab = [int(rng.integers(0, n_cls))]
        if objects == 2:
            other = int(rng.integers(0, n_cls - 1))
            lab.append(other + (other >= lab[0]))
        kinds = [names[k] for k in lab]
        s = [int(v) for v in rng.integers(min_size, max_size + 1, objects)]
        turn = rng.uniform(0.0, 2.0 * math.pi, objects)
        ang = [float(turn[k]) if rotate and kinds[k] != "disc" else 0.0 for k in range(objects)]
        if objects == 1:
            m = _shape_mask(kinds[0], s[0], ang[0])
            pos = [
                (
                    int(rng.integers(0, size - m.shape[0] + 1)),
                    int(rng.integers(0, size - m.shape[1] + 1)),
                )
            ]
            local = [m]
        else:
            local, pos, s = _place_pair(rng, size, (kinds[0], kinds[1]), s, ang, min_size)
        for k in range(objects):
            (r, c), m = pos[k], local[k]
            masks[i, k, r : r + m.shape[0], c : c + m.shape[1]] = m
            boxes[i, k] = (r, c, r + m.shape[0], c + m.shape[1])
        object_labels[i] = lab
        sizes[i] = s
        angles[i] = ang
        for key, val in _draw_background_params(rng, size).items():
            bg.setdefault(key, []).append(val)
        candidates[i] = rng.random((objects, _COLOUR_CANDIDATES, 3))
        rng.standard_normal(out=images[i])

    # Phase 2, vectorised: backgrounds.
    _backgrounds({k: np.asarray(v, dtype=np.float64) for k, v in bg.items()}, images, size)

    # Phase 3, per scene: contrasting colours, then paint.
    colours = np.empty((n, objects, 3), dtype=np.float64)
    for i in range(n):
        occupied = masks[i].any(axis=0)
        for k in range(objects):
            around = _surround_mean(images[i], occupied, boxes[i, k])
            colours[i, k] = _pick_colour(candidates[i, k], around)
        for k in range(objects):
            images[i][:, masks[i, k]] = colours[i, k][:, None]

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
