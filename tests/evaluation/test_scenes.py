"""Tests of npcam.evaluation.scenes: synthetic scenes and their ground truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from npcam.evaluation import scenes as data
from npcam.evaluation.scenes import CLASSES, make_scenes, standardize

# One batch per configuration, shared by the tests that only read it.
_CACHE: dict[tuple, data.Scenes] = {}


def scenes(n: int = 200, **kw) -> data.Scenes:
    key = (n, tuple(sorted(kw.items())))
    if key not in _CACHE:
        _CACHE[key] = make_scenes(n, **kw)
    return _CACHE[key]


def tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return rows.min(), cols.min(), rows.max() + 1, cols.max() + 1


CONFIGS = [
    {},
    {"objects": 2},
    {"rotate": True},
    {"objects": 2, "rotate": True, "seed": 7},
    {"size": 32, "objects": 2, "seed": 3},
    {"size": 96, "seed": 4},
]


# ----------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_arrays():
    a = make_scenes(30, objects=2, seed=11, rotate=True)
    b = make_scenes(30, objects=2, seed=11, rotate=True)
    for field in ("images", "labels", "object_labels", "masks", "boxes", "object_colors"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype and np.array_equal(x, y), field
    assert a.images.tobytes() == b.images.tobytes()


def test_different_seeds_give_different_scenes():
    a = make_scenes(30, seed=0)
    b = make_scenes(30, seed=1)
    assert not np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.boxes, b.boxes)
    # Every image differs, not just some.
    assert np.all(np.abs(a.images - b.images).reshape(30, -1).max(axis=1) > 0.1)


@pytest.mark.parametrize("objects", [1, 2])
def test_scene_i_does_not_depend_on_n(objects):
    # 260 scenes span two internal chunks of 256.
    small = make_scenes(4, objects=objects, seed=5)
    large = make_scenes(260, objects=objects, seed=5)
    assert np.array_equal(small.images, large.images[:4])
    assert np.array_equal(small.masks, large.masks[:4])
    middle = make_scenes(258, objects=objects, seed=5)
    assert np.array_equal(middle.images, large.images[:258])
    assert np.array_equal(middle.object_colors, large.object_colors[:258])


def test_scenes_in_a_batch_differ():
    s = scenes()
    flat = s.images.reshape(len(s), -1)
    assert len({row.tobytes() for row in flat}) == len(s)


# ---------------------------------------------------------------- shapes and dtypes


@pytest.mark.parametrize("kw", CONFIGS)
def test_shapes_dtypes_ranges(kw):
    n = 25
    s = make_scenes(n, **kw)
    size = kw.get("size", 64)
    k = kw.get("objects", 1)
    assert len(s) == n
    assert s.images.shape == (n, 3, size, size) and s.images.dtype == np.float64
    assert s.labels.shape == (n,) and s.labels.dtype == np.int64
    assert s.object_labels.shape == (n, k) and s.object_labels.dtype == np.int64
    assert s.masks.shape == (n, k, size, size) and s.masks.dtype == np.bool_
    assert s.boxes.shape == (n, k, 4) and s.boxes.dtype == np.int64
    assert s.object_colors.shape == (n, k, 3) and s.object_colors.dtype == np.float64
    assert s.sizes.shape == (n, k) and s.angles.shape == (n, k)
    assert s.class_names == CLASSES
    assert np.all(np.isfinite(s.images))
    assert s.images.min() >= 0.0 and s.images.max() <= 1.0
    assert np.array_equal(s.labels, s.object_labels[:, 0])
    assert np.all((s.object_labels >= 0) & (s.object_labels < len(CLASSES)))
    assert np.all(s.masks.any(axis=(2, 3)))


def test_default_sizes_scale_with_image_size():
    for size, lo, hi in [(32, 7, 15), (64, 14, 30), (96, 21, 45)]:
        s = scenes(300, size=size)
        assert s.sizes.min() == lo and s.sizes.max() == hi, size


def test_explicit_size_range_is_respected():
    s = scenes(200, min_size=10, max_size=12)
    assert set(np.unique(s.sizes)) == {10, 11, 12}


# ---------------------------------------------------------------- masks and colours


@pytest.mark.parametrize("kw", CONFIGS)
def test_mask_pixels_have_exactly_the_object_colour(kw):
    s = scenes(60, **kw)
    for i in range(len(s)):
        for k in range(s.masks.shape[1]):
            mask, colour = s.masks[i, k], s.object_colors[i, k]
            inside = s.images[i][:, mask]  # (3, pixels)
            assert np.array_equal(inside, np.repeat(colour[:, None], inside.shape[1], axis=1))
            # Outside the mask, the background is continuous noise (and the other object
            # another random colour): no pixel equals this colour in all three channels.
            same = np.all(s.images[i] == colour[:, None, None], axis=0)
            assert not np.any(same & ~mask)


@pytest.mark.parametrize("kw", CONFIGS)
def test_boxes_are_tight_boxes_of_the_masks(kw):
    s = scenes(60, **kw)
    for i in range(len(s)):
        for k in range(s.masks.shape[1]):
            assert tuple(s.boxes[i, k]) == tight_box(s.masks[i, k])


@pytest.mark.parametrize("kw", CONFIGS)
def test_objects_contrast_with_the_background_around_them(kw):
    # Documented rule: some channel differs by >= MIN_CONTRAST from the mean of the
    # background within CONTRAST_MARGIN pixels of the object's box.
    s = scenes(60, **kw)
    size = s.images.shape[-1]
    margin = data.CONTRAST_MARGIN
    for i in range(len(s)):
        occupied = s.masks[i].any(axis=0)
        for k in range(s.masks.shape[1]):
            r0, c0, r1, c1 = s.boxes[i, k]
            ring = np.zeros((size, size), dtype=bool)
            ring[max(r0 - margin, 0) : r1 + margin, max(c0 - margin, 0) : c1 + margin] = True
            ring &= ~occupied
            assert ring.sum() > 0
            around = s.images[i][:, ring].mean(axis=1)
            assert np.max(np.abs(s.object_colors[i, k] - around)) >= 0.3


def test_contrast_fallback_pushes_one_channel_to_the_far_end():
    # No candidate differs by 0.3 from the background (0.9, 0.5, 0.3): the channel with
    # most room is red (0.9 from 0), so red goes to 0 and the rest is the first candidate.
    background = np.array([[0.9, 0.5, 0.3]])
    candidates = np.array([[[0.91, 0.51, 0.31], [0.8, 0.6, 0.4]]])
    colour = data._pick_colours(candidates, background)
    assert np.array_equal(colour, [[0.0, 0.51, 0.31]])
    # A dark background pushes towards 1; an acceptable candidate is taken as is.
    background = np.array([[0.2, 0.5, 0.45], [0.5, 0.5, 0.5]])
    candidates = np.array([[[0.3, 0.6, 0.5], [0.1, 0.4, 0.4]], [[0.6, 0.5, 0.5], [0.5, 0.5, 0.9]]])
    colour = data._pick_colours(candidates, background)
    assert np.array_equal(colour, [[1.0, 0.6, 0.5], [0.5, 0.5, 0.9]])


def test_object_filling_the_image_still_gets_a_colour():
    # A square as large as the image leaves no background around it; the contrast is
    # then taken against the background it covers, and the scene is still valid.
    s = make_scenes(3, size=16, min_size=16, max_size=16, classes=("square",))
    assert np.all(s.masks)
    assert np.all(s.images == s.object_colors[:, 0, :, None, None])


def test_backgrounds_carry_pixel_noise():
    # The smooth parts of a background (field, blobs) have second differences far below
    # 0.01; Gaussian pixel noise of std sigma >= 0.02 has |second difference| with a
    # median of 0.6745 * sqrt(6) * sigma >= 0.033.
    s = scenes()
    background = ~s.masks.any(axis=1)
    for i in range(60):
        im = s.images[i]
        d2 = im[:, :, 2:] - 2 * im[:, :, 1:-1] + im[:, :, :-2]
        ok = background[i][:, 2:] & background[i][:, 1:-1] & background[i][:, :-2]
        assert np.median(np.abs(d2[:, ok])) > 0.015


def smooth_background(size: int, **columns) -> np.ndarray:
    """The noiseless background of one scene whose uniforms are 0.5 except ``columns``."""
    u = np.full((1, data._U_WIDTH), 0.5)
    for name, value in columns.items():
        u[0, data._U[name]] = value
    out = np.empty((1, 3, size, size))
    data._smooth_backgrounds(u, size, out)
    return out[0]


def test_background_model_stripes():
    # u = 0.5 everywhere gives base 0.5 and a zero colour field. Stripes on (u < 0.5),
    # period 3 px (u = 0), direction 0 (along rows), phase 0, amplitude 0.05 (u = 0)
    # with channel weights 2u - 1 = (1, -1, 0):
    # background = 0.5 + 0.05 * w_c * sin(2 pi (y + 0.5) / 3).
    got = smooth_background(64, stripes=0.0, period=0.0, theta=0.0, phase=0.0,
                            stripe_amp=0.0, stripe_w=[1.0, 0.0, 0.5])  # fmt: skip
    y = np.arange(64) + 0.5
    wave = np.sin(2 * np.pi * y / 3)[:, None] * np.ones(64)
    for c, w in enumerate([1.0, -1.0, 0.0]):
        assert np.allclose(got[c], 0.5 + 0.05 * w * wave, rtol=0, atol=1e-12)
    # Oblique: period 3 + 7 * 0.5 = 6.5 px, direction pi/3, phase 2 pi * 0.1, amplitude
    # 0.05 + 0.15 * 0.4 = 0.11, weights (0.5, -0.2, 1):
    # 0.5 + 0.11 w_c sin(2 pi (y cos(pi/3) + x sin(pi/3)) / 6.5 + 0.2 pi).
    got = smooth_background(64, stripes=0.2, period=0.5, theta=1 / 3, phase=0.1,
                            stripe_amp=0.4, stripe_w=[0.75, 0.4, 1.0])  # fmt: skip
    t = 2 * np.pi * (y[:, None] * np.cos(np.pi / 3) + y[None, :] * np.sin(np.pi / 3)) / 6.5
    wave = np.sin(t + 0.2 * np.pi)
    for c, w in enumerate([0.5, -0.2, 1.0]):
        assert np.allclose(got[c], 0.5 + 0.11 * w * wave, rtol=0, atol=1e-12)


def test_background_model_blob_and_field():
    # Blobs on (u >= 0.5); blob 0 at (32, 16) px with sigma 2 + 4 * 0.25 = 3 px and
    # amplitude 0.5 * 1 - 0.25 = 0.25 in every channel; blobs 1, 2 have amplitude 0.
    amp = np.full(9, 0.5)
    amp[:3] = 1.0
    got = smooth_background(64, stripes=0.9, blob_y=[0.5, 0.1, 0.1], blob_x=[0.25, 0.1, 0.1],
                            blob_sigma=[0.25, 0.5, 0.5], blob_amp=amp)  # fmt: skip
    y = np.arange(64) + 0.5
    blob = np.exp(-((y[:, None] - 32) ** 2 + (y[None, :] - 16) ** 2) / (2 * 3.0**2))
    assert np.allclose(got, 0.5 + 0.25 * blob, rtol=0, atol=1e-12)
    # Colour field: a 5 x 5 grid (u -> 0.6 u - 0.3) upsampled bilinearly with aligned
    # corners. In 9 px the grid nodes fall on pixels 0, 2, 4, 6, 8; one node of channel 1
    # at 0.3 (u = 1) gives 0.3 there, 0.15 one pixel away, 0.075 diagonally, 0 two away.
    grid = np.full((3, 5, 5), 0.5)
    grid[1, 2, 3] = 1.0
    got = smooth_background(9, stripes=0.9, grid=grid.ravel()) - 0.5
    want = np.zeros((9, 9))
    want[4, 6] = 0.3
    want[3, 6] = want[5, 6] = want[4, 5] = want[4, 7] = 0.15
    want[3, 5] = want[3, 7] = want[5, 5] = want[5, 7] = 0.075
    assert np.allclose(got[1], want, rtol=0, atol=1e-12)
    assert np.allclose(got[[0, 2]], 0.0, rtol=0, atol=1e-12)


def test_surround_means_hand_computed():
    # 8 x 8 image, object box (3, 3, 5, 5) grown by 3 px covers the whole image.
    image = np.zeros((1, 3, 8, 8))
    image[0, 0] = 0.5
    image[0, 0, 3:5, 3:5] = 1.0  # the object's own pixels: left out of the mean
    image[0, 1, 0, :] = 1.0  # 8 bright background pixels in row 0
    occupied = np.zeros((1, 8, 8), dtype=bool)
    occupied[0, 3:5, 3:5] = True
    boxes = np.array([[3, 3, 5, 5]])
    got = data._surround_means(image, occupied, boxes)
    assert np.allclose(got, [[0.5, 8 / 60, 0.0]], rtol=1e-15, atol=0)
    # Box (0, 0, 1, 1) grown by 3 px and clipped: rows and columns 0-3, 16 pixels, all
    # free but (0, 0) -> 15 pixels: channel 0 is 0.5 except 1.0 at (3, 3), channel 1 is
    # 1.0 at (0, 1), (0, 2), (0, 3).
    occupied = np.zeros((1, 8, 8), dtype=bool)
    occupied[0, 0, 0] = True
    got = data._surround_means(image, occupied, np.array([[0, 0, 1, 1]]))
    assert np.allclose(got, [[(14 * 0.5 + 1.0) / 15, 3 / 15, 0.0]], rtol=1e-15, atol=0)
    # Nothing free: the mean over the whole grown box, occupied pixels included.
    got = data._surround_means(image, np.ones((1, 8, 8), dtype=bool), boxes)
    assert np.allclose(got, [[(4 * 1.0 + 60 * 0.5) / 64, 8 / 64, 0.0]], rtol=1e-15, atol=0)


# ------------------------------------------------------------------ classes, colour


def test_all_classes_appear_roughly_balanced():
    s = scenes()
    counts = np.bincount(s.labels, minlength=4)
    # Expected 50 each; binomial standard deviation ~6.1.
    assert np.all((counts >= 30) & (counts <= 70)), counts
    counts2 = np.bincount(scenes(objects=2).object_labels.ravel(), minlength=4)
    assert np.all((counts2 >= 60) & (counts2 <= 140)), counts2


def test_colour_does_not_determine_class():
    s = scenes(800, seed=2)
    colours = s.object_colors[:, 0]
    overall = colours.mean(axis=0)
    for k in range(4):
        # ~200 uniform colours per class: standard error of a mean ~0.02.
        assert np.all(np.abs(colours[s.labels == k].mean(axis=0) - overall) < 0.08)
    # A nearest-class-mean classifier on colour is near chance (0.25).
    train, test = slice(0, 400), slice(400, 800)
    means = np.stack([colours[train][s.labels[train] == k].mean(axis=0) for k in range(4)])
    guess = np.argmin(((colours[test][:, None, :] - means) ** 2).sum(axis=2), axis=1)
    assert np.mean(guess == s.labels[test]) < 0.35


def test_class_subset_and_order():
    s = make_scenes(40, classes=("cross", "disc"), seed=4)
    assert s.class_names == ("cross", "disc")
    assert set(np.unique(s.labels)) == {0, 1}
    # Label 1 is a disc: its box is square and its mask is not a full rectangle.
    for i in np.flatnonzero(s.labels == 1):
        r0, c0, r1, c1 = s.boxes[i, 0]
        assert r1 - r0 == c1 - c0 == s.sizes[i, 0]
        assert not s.masks[i, 0, r0:r1, c0:c1].all()


def test_positions_spread_over_the_image():
    s = scenes()
    centre_r = (s.boxes[:, 0, 0] + s.boxes[:, 0, 2]) / 2
    centre_c = (s.boxes[:, 0, 1] + s.boxes[:, 0, 3]) / 2
    quadrant = 2 * (centre_r >= 32) + (centre_c >= 32)
    assert np.all(np.bincount(quadrant, minlength=4) >= 25)


# ------------------------------------------------------------------------- geometry


def test_unrotated_geometry():
    s = scenes(400, seed=9)
    assert np.all(s.angles == 0)
    for i in range(len(s)):
        kind = s.class_names[s.labels[i]]
        size = s.sizes[i, 0]
        r0, c0, r1, c1 = s.boxes[i, 0]
        m = s.masks[i, 0, r0:r1, c0:c1]
        area = m.sum()
        assert np.array_equal(m, m[:, ::-1])  # all four are left-right symmetric
        if kind == "disc":
            assert m.shape == (size, size)
            assert abs(area - np.pi * size**2 / 4) <= 0.05 * np.pi * size**2 / 4
            assert np.array_equal(m, m.T) and np.array_equal(m, m[::-1])
        elif kind == "square":
            assert m.shape == (size, size) and m.all()
        elif kind == "triangle":
            widths = m.sum(axis=1)
            assert m.shape[1] == size and m.shape[0] in (size - 1, size)
            assert np.all(np.diff(widths) >= 0)  # widens from the apex to the base
            assert widths[-1] == size and widths[0] <= 2
            assert abs(area - size**2 / 2) <= 0.05 * size**2 / 2
        elif kind == "cross":
            assert m.shape == (size, size)
            assert np.array_equal(m, m.T) and np.array_equal(m, m[::-1])
            widths = m.sum(axis=1)
            arm = widths[0]  # the top row is the end of the vertical arm
            assert set(widths.tolist()) == {arm, size}
            assert np.sum(widths == size) == arm  # the horizontal arm is as thick
            assert area == 2 * size * arm - arm**2
            assert not m[0, 0] and not m[-1, -1]
            assert abs(arm - size / 3) <= 1.5


def test_rotated_geometry():
    s = scenes(400, rotate=True, seed=9)
    kinds = np.array(s.class_names)[s.labels]
    assert np.all(s.angles[kinds == "disc"] == 0)
    assert np.all(s.angles[kinds != "disc"] != 0)
    expected = {"disc": np.pi / 4, "square": 1.0, "triangle": 0.5, "cross": 5 / 9}
    tolerance = {"disc": 0.05, "square": 0.1, "triangle": 0.1, "cross": 0.15}
    full_rectangles = 0
    for i in range(len(s)):
        area = s.masks[i, 0].sum()
        want = expected[kinds[i]] * s.sizes[i, 0] ** 2
        assert abs(area - want) <= tolerance[kinds[i]] * want, (kinds[i], area, want)
        r0, c0, r1, c1 = s.boxes[i, 0]
        if kinds[i] == "square":
            full_rectangles += bool(s.masks[i, 0, r0:r1, c0:c1].all())
    assert full_rectangles < np.sum(kinds == "square") / 4


@pytest.mark.parametrize("kw", [{"rotate": False}, {"rotate": True}])
def test_each_mask_is_one_8_connected_shape(kw):
    s = scenes(100, objects=2, seed=6, **kw)
    eight = np.ones((3, 3), dtype=bool)
    for i in range(len(s)):
        for k in range(2):
            assert ndimage.label(s.masks[i, k], structure=eight)[1] == 1


# ------------------------------------------------------------------------ two objects


@pytest.mark.parametrize("kw", [{}, {"rotate": True}, {"size": 32}])
def test_two_objects_differ_in_class_and_are_apart(kw):
    s = scenes(200, objects=2, **kw)
    assert np.all(s.object_labels[:, 0] != s.object_labels[:, 1])
    assert np.all(s.masks.any(axis=(2, 3)))
    assert not np.any(s.masks[:, 0] & s.masks[:, 1])
    a, b = s.boxes[:, 0], s.boxes[:, 1]
    gap = np.maximum.reduce([b[:, 0] - a[:, 2], a[:, 0] - b[:, 2], b[:, 1] - a[:, 3], a[:, 1] - b[:, 3]])
    assert np.all(gap >= data.OBJECT_SPACING)
    # Both objects' classes vary: the second is not a function of the first.
    for k in range(4):
        assert len(np.unique(s.object_labels[s.labels == k, 1])) == 3


def test_crowded_two_object_scenes_use_the_corner_fallback_and_stay_valid():
    # Two 15-px squares in 32 px leave room only near the corners, so random placement
    # often fails and the documented last resort (first object in the top-left corner)
    # is used in some scenes.
    s = make_scenes(60, size=32, objects=2, min_size=15, max_size=15, seed=1)
    assert not np.any(s.masks[:, 0] & s.masks[:, 1])
    assert np.all(s.masks.any(axis=(2, 3)))
    corner = (s.boxes[:, 0, 0] == 0) & (s.boxes[:, 0, 1] == 0)
    assert 0 < corner.sum() < len(s)


# ----------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"n": 0}, ValueError, "n"),
        ({"n": 2.0}, TypeError, "n"),
        ({"size": 8}, ValueError, "size"),
        ({"objects": 3}, ValueError, "objects"),
        ({"objects": 0}, ValueError, "objects"),
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": 1.5}, TypeError, "seed"),
        ({"classes": ("disc", "hexagon")}, ValueError, "classes"),
        ({"classes": ("disc", "disc")}, ValueError, "classes"),
        ({"classes": ()}, ValueError, "classes"),
        ({"classes": "disc"}, TypeError, "classes"),
        ({"classes": ("disc",), "objects": 2}, ValueError, "classes"),
        ({"max_size": 70}, ValueError, "max_size"),
        ({"max_size": 50, "rotate": True}, ValueError, "max_size"),
        ({"min_size": 3}, ValueError, "min_size"),
        ({"min_size": 20, "max_size": 18}, ValueError, "min_size"),
        ({"size": 32, "objects": 2, "min_size": 16, "max_size": 16}, ValueError, "min_size"),
        ({"rotate": "yes"}, TypeError, "rotate"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(kwargs, error, name):
    kwargs = {"n": 2, **kwargs}
    n = kwargs.pop("n")
    with pytest.raises(error, match=rf"^{name} "):
        make_scenes(n, **kwargs)


# ----------------------------------------------------------------------- standardize


def test_standardize_with_own_statistics():
    rng = np.random.default_rng(0)
    x = rng.normal([1.0, -2.0, 5.0], [0.5, 2.0, 3.0], size=(10, 4, 5, 3)).transpose(0, 3, 1, 2)
    z, mean, std = standardize(x)
    assert z.shape == x.shape and mean.shape == std.shape == (3,)
    assert np.allclose(z.mean(axis=(0, 2, 3)), 0.0, atol=1e-12)
    assert np.allclose(z.std(axis=(0, 2, 3)), 1.0, atol=1e-12)
    for c in range(3):
        assert np.isclose(mean[c], x[:, c].mean()) and np.isclose(std[c], x[:, c].std())


def test_standardize_reuses_given_statistics():
    x = np.arange(2 * 3 * 2 * 2, dtype=float).reshape(2, 3, 2, 2)
    z, mean, std = standardize(x, mean=[1.0, 2.0, 3.0], std=[2.0, 4.0, 0.5])
    assert np.array_equal(mean, [1.0, 2.0, 3.0]) and np.array_equal(std, [2.0, 4.0, 0.5])
    assert z[0, 0, 0, 0] == (0.0 - 1.0) / 2.0
    assert z[1, 2, 1, 1] == (23.0 - 3.0) / 0.5
    assert z[0, 1, 0, 1] == (5.0 - 2.0) / 4.0


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "name"),
    [
        ((np.ones((2, 3, 4)),), {}, ValueError, "images"),
        ((np.ones((2, 3, 4, 4)),), {}, ValueError, "images"),  # constant channels
        ((np.random.default_rng(0).random((2, 3, 4, 4)),), {"mean": [0, 0, 0]}, ValueError, "mean"),
        (
            (np.random.default_rng(0).random((2, 3, 4, 4)),),
            {"mean": [0, 0], "std": [1, 1]},
            ValueError,
            "mean",
        ),
        (
            (np.random.default_rng(0).random((2, 3, 4, 4)),),
            {"mean": [0, 0, 0], "std": [1, 0, 1]},
            ValueError,
            "std",
        ),
        ((np.full((1, 1, 2, 2), np.nan),), {}, ValueError, "images"),
    ],
)
def test_standardize_bad_input(args, kwargs, error, name):
    with pytest.raises(error, match=rf"^{name} "):
        standardize(*args, **kwargs)
