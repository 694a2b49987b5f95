"""Tests of npcam.evaluation.localization on hand-built maps with answers worked out by hand."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from npcam.evaluation.localization import (
    box_accuracy,
    box_from_map,
    box_iou,
    boxes_from_maps,
    centre_box_baseline,
    centre_maps,
    discrimination,
    pointing_game,
)


def mask_at(shape, *pixels):
    m = np.zeros(shape, dtype=bool)
    for r, c in pixels:
        m[r, c] = True
    return m


# --------------------------------------------------------------------- pointing game


def test_pointing_game_hit_miss_ties_and_constant_maps():
    maps = np.zeros((6, 3, 4))
    masks = np.zeros((6, 3, 4), dtype=bool)
    # 0: peak at (1, 2), inside the mask -> hit.
    maps[0, 1, 2] = 5.0
    masks[0, 1, 1:3] = True
    # 1: peak at (0, 0), mask elsewhere -> miss.
    maps[1, 0, 0] = 2.0
    maps[1, 2, 3] = 1.0
    masks[1, 2, 3] = True
    # 2: tie between (0, 3) and (2, 0); the first in row-major order, (0, 3), is outside
    #    the mask -> miss, although the other maximum is inside.
    maps[2, 0, 3] = maps[2, 2, 0] = 1.0
    masks[2, 2, 0] = True
    # 3: the same tie with the mask on (0, 3) -> hit.
    maps[3, 0, 3] = maps[3, 2, 0] = 1.0
    masks[3, 0, 3] = True
    # 4: all-zero map, mask everywhere -> miss (no evidence is not a hit).
    masks[4] = True
    # 5: constant non-zero map -> miss too.
    maps[5] = 0.7
    masks[5] = True
    hits = pointing_game(maps, masks)
    assert hits.dtype == np.bool_
    assert hits.tolist() == [True, False, False, True, False, False]


def test_pointing_game_negative_maps_and_lists():
    # Raw (pre-ReLU) maps may be negative: the peak is still the largest value, (0, 1).
    maps = [[[-3.0, -1.0], [-2.0, -5.0]]]
    assert pointing_game(maps, mask_at((2, 2), (0, 0))[None]).tolist() == [False]
    assert pointing_game(maps, mask_at((2, 2), (0, 1))[None]).tolist() == [True]


def test_pointing_game_empty_batch():
    assert pointing_game(np.zeros((0, 3, 3)), np.zeros((0, 3, 3), dtype=bool)).shape == (0,)


# -------------------------------------------------------------------- discrimination


def test_discrimination():
    maps = np.zeros((5, 4, 4))
    masks_c = np.zeros((5, 4, 4), dtype=bool)
    masks_o = np.zeros((5, 4, 4), dtype=bool)
    masks_c[:, 0:2, 0:2] = True
    masks_o[:, 2:4, 2:4] = True
    maps[0, 1, 1] = 1.0  # peak on object c -> True
    maps[1, 3, 3] = 1.0  # peak on the other object -> False
    maps[2, 0, 3] = 1.0  # peak on the background -> False
    # 3: constant map -> False
    maps[4, 1, 1] = 1.0  # peak on a pixel that belongs to both masks -> False
    masks_o[4, 1, 1] = True
    result = discrimination(maps, masks_c, masks_o)
    assert result.tolist() == [True, False, False, False, False]


# ---------------------------------------------------------------------- box_from_map


def test_box_from_map_takes_the_largest_component_not_the_peak():
    m = np.zeros((8, 10))
    m[1, 1] = 1.0  # the maximum, a component of one pixel
    m[3:7, 4:9] = 0.2  # 4 x 5 = 20 pixels >= 0.15 -> the largest component
    m[0, 7:10] = 0.1  # below 0.15 of the maximum: not kept
    assert box_from_map(m) == (3, 4, 7, 9)
    # With a threshold above 0.2, only the peak pixel survives.
    assert box_from_map(m, threshold=0.5) == (1, 1, 2, 2)


def test_box_from_map_threshold_is_inclusive_at_15_percent():
    m = np.zeros((5, 5))
    m[2, 2] = 1.0
    m[2, 3] = 0.15  # == 0.15 * max: kept
    m[1, 2] = 0.149  # just below: dropped
    m[3, 2] = 0.15
    assert box_from_map(m) == (2, 2, 4, 4)
    m[2, 3] = m[3, 2] = 0.1499
    assert box_from_map(m) == (2, 2, 3, 3)


def test_box_from_map_uses_8_connectivity():
    m = np.zeros((6, 6))
    # A diagonal chain of three pixels: one 8-connected component (three 4-components).
    m[0, 0] = m[1, 1] = m[2, 2] = 1.0
    # A vertical pair, larger than any 4-connected piece of the chain.
    m[4:6, 5] = 1.0
    assert box_from_map(m) == (0, 0, 3, 3)


def test_box_from_map_ties_go_to_the_first_component_in_row_major_order():
    m = np.zeros((5, 5))
    m[3, 0:2] = 1.0  # first pixel (3, 0)
    m[0:2, 4] = 1.0  # first pixel (0, 4): earlier in row-major order
    assert box_from_map(m) == (0, 4, 2, 5)


def test_box_from_map_negative_values_and_no_positive_value():
    m = np.full((4, 4), -1.0)
    m[1:3, 2] = 0.5
    assert box_from_map(m) == (1, 2, 3, 3)
    assert box_from_map(np.zeros((4, 4))) is None
    assert box_from_map(-np.ones((4, 4))) is None
    assert box_from_map(np.ones((3, 4))) == (0, 0, 3, 4)


def test_boxes_from_maps_is_box_from_map_per_map():
    maps = np.zeros((3, 6, 7))
    maps[0, 1:4, 2:6] = 1.0
    maps[2, 5, 6] = 2.0
    boxes = boxes_from_maps(maps)
    assert boxes.dtype == np.int64
    assert boxes.tolist() == [[1, 2, 4, 6], [0, 0, 0, 0], [5, 6, 6, 7]]
    assert boxes_from_maps(np.zeros((0, 4, 4))).shape == (0, 4)


def components_reference(m: np.ndarray, threshold: float):
    """Breadth-first flood fill: the box of the largest 8-connected component."""
    if m.max() <= 0:
        return (0, 0, 0, 0)
    keep = m >= threshold * m.max()
    seen = np.zeros_like(keep)
    best = None
    h, w = m.shape
    for r in range(h):
        for c in range(w):
            if keep[r, c] and not seen[r, c]:
                pixels, queue = [], deque([(r, c)])
                seen[r, c] = True
                while queue:
                    y, x = queue.popleft()
                    pixels.append((y, x))
                    for dy in (-1, 0, 1):
                        for dx in (-1, 0, 1):
                            yy, xx = y + dy, x + dx
                            if 0 <= yy < h and 0 <= xx < w and keep[yy, xx] and not seen[yy, xx]:
                                seen[yy, xx] = True
                                queue.append((yy, xx))
                if best is None or len(pixels) > len(best):  # strict: first wins ties
                    best = pixels
    rows = [p[0] for p in best]
    cols = [p[1] for p in best]
    return (min(rows), min(cols), max(rows) + 1, max(cols) + 1)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9)),
        elements=st.sampled_from([-1.0, 0.0, 0.05, 0.1, 0.3, 1.0, 2.0]),
    ),
    st.sampled_from([0.15, 0.5, 1.0]),
)
def test_boxes_from_maps_matches_a_flood_fill(maps, threshold):
    got = boxes_from_maps(maps, threshold)
    for i in range(maps.shape[0]):
        assert tuple(got[i]) == components_reference(maps[i], threshold)


# --------------------------------------------------------------------------- box_iou


def test_box_iou_hand_computed():
    assert box_iou([2, 3, 7, 9], [2, 3, 7, 9]) == 1.0  # identical
    assert box_iou([0, 0, 2, 2], [5, 5, 8, 8]) == 0.0  # disjoint
    assert box_iou([0, 0, 2, 2], [0, 2, 2, 4]) == 0.0  # sharing an edge: ends exclusive
    # Half overlap: a = rows 0-1, cols 0-3 (area 8); b = rows 0-1, cols 2-5 (area 8);
    # they share rows 0-1, cols 2-3: intersection 4, union 8 + 8 - 4 = 12, IoU 1/3.
    assert box_iou([0, 0, 2, 4], [0, 2, 2, 6]) == pytest.approx(1 / 3, rel=1e-15)
    # Containment: 2 x 2 inside 4 x 4 -> 4 / 16.
    assert box_iou([0, 0, 4, 4], [1, 1, 3, 3]) == 0.25
    # Corner overlap: a 3x3 at (0,0), b 3x3 at (1,1): intersection 2x2 = 4, union 14.
    assert box_iou([0, 0, 3, 3], [1, 1, 4, 4]) == pytest.approx(4 / 14, rel=1e-15)
    # Empty boxes have IoU 0, even with themselves.
    assert box_iou([1, 1, 1, 5], [0, 0, 4, 4]) == 0.0
    assert box_iou([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0


def test_box_iou_is_vectorised():
    a = np.array([[0, 0, 2, 4], [0, 0, 4, 4], [5, 5, 6, 6]])
    b = np.array([[0, 2, 2, 6], [1, 1, 3, 3], [0, 0, 1, 1]])
    assert np.allclose(box_iou(a, b), [1 / 3, 0.25, 0.0], rtol=1e-15, atol=0)
    # One box against many, either side.
    assert np.allclose(box_iou(a, [0, 0, 4, 4]), [0.5, 1.0, 0.0], rtol=1e-15, atol=0)
    assert np.allclose(box_iou([0, 0, 4, 4], a), [0.5, 1.0, 0.0], rtol=1e-15, atol=0)
    stacked = box_iou(np.stack([a, a]), np.stack([b, b]))
    assert stacked.shape == (2, 3)
    assert np.array_equal(stacked[0], stacked[1])


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 12), min_size=8, max_size=8))
def test_box_iou_properties(v):
    a = [min(v[0], v[2]), min(v[1], v[3]), max(v[0], v[2]), max(v[1], v[3])]
    b = [min(v[4], v[6]), min(v[5], v[7]), max(v[4], v[6]), max(v[5], v[7])]
    iou = box_iou(a, b)
    assert 0.0 <= iou <= 1.0
    assert iou == box_iou(b, a)
    # Against pixel sets.
    pa = np.zeros((12, 12), dtype=bool)
    pb = np.zeros((12, 12), dtype=bool)
    pa[a[0] : a[2], a[1] : a[3]] = True
    pb[b[0] : b[2], b[1] : b[3]] = True
    union = (pa | pb).sum()
    want = (pa & pb).sum() / union if union else 0.0
    assert iou == pytest.approx(want, rel=1e-14, abs=0)


# ---------------------------------------------------------------------- box_accuracy


def test_box_accuracy():
    maps = np.zeros((4, 8, 8))
    truth = np.array([[2, 2, 6, 6]] * 4)
    maps[0, 2:6, 2:6] = 1.0  # exactly the true box: IoU 1 -> hit
    # 1: a 4 x 4 blob shifted by 2 columns: intersection 4 x 2 = 8, union 24, IoU 1/3.
    maps[1, 2:6, 4:8] = 1.0
    # 2: a 4 x 3 blob inside the true box: IoU 12 / 16 = 0.75 -> hit.
    maps[2, 2:6, 3:6] = 1.0
    # 3: all-zero map: no box -> miss.
    assert box_accuracy(maps, truth).tolist() == [True, False, True, False]
    assert box_accuracy(maps, truth, iou=0.3).tolist() == [True, True, True, False]
    assert box_accuracy(maps, truth, iou=0.8).tolist() == [True, False, False, False]
    # IoU exactly 0.5 is a hit: a 4 x 2 blob in the 4 x 4 box, 8 / 16.
    half = np.zeros((1, 8, 8))
    half[0, 2:6, 2:4] = 3.0
    assert box_accuracy(half, truth[:1]).tolist() == [True]


# ------------------------------------------------------------------ centre baseline


def test_centre_box_baseline_hand_computed():
    assert centre_box_baseline(64) == (16, 16, 48, 48)
    assert centre_box_baseline((64, 32)) == (16, 8, 48, 24)
    # 7 rows: side 7 - 2 * round(1.75) = 3, from row 2; 10 columns: side
    # 10 - 2 * round(2.5) = 6 (round half to even), from column 2.
    assert centre_box_baseline((7, 10)) == (2, 2, 5, 8)
    assert centre_box_baseline(9, fraction=1.0) == (0, 0, 9, 9)
    # Tiny fractions keep one pixel (odd side) or two (even side).
    assert centre_box_baseline((9, 8), fraction=0.01) == (4, 3, 5, 5)


def test_centre_maps_work_with_every_metric():
    maps = centre_maps(3, 64, 64)
    assert maps.shape == (3, 64, 64) and maps.dtype == np.float64
    box = centre_box_baseline(64)
    # Box metric: the thresholded map is exactly the centre box.
    assert boxes_from_maps(maps).tolist() == [list(box)] * 3
    truth = np.array([box, (16, 16, 48, 40), (0, 0, 16, 16)])
    # Second: IoU = (32*24) / (32*32) = 0.75; third: disjoint.
    assert box_accuracy(maps, truth).tolist() == [True, True, False]
    # Pointing game: the peak is the centre pixel (32, 32), not the box corner (16, 16).
    masks = np.zeros((3, 64, 64), dtype=bool)
    masks[0, 32, 32] = True
    masks[1, 16, 16] = True
    masks[2, 30:40, 30:40] = True
    assert pointing_game(maps, masks).tolist() == [True, False, True]


def test_centre_maps_odd_sizes():
    m = centre_maps(1, 5, 6)[0]
    # 5 rows: side 3 from row 1; 6 columns: side 6 - 2 * round(1.5) = 2 from column 2.
    expected = np.zeros((5, 6))
    expected[1:4, 2:4] = 0.5
    expected[2, 3] = 1.0
    assert np.array_equal(m, expected)
    assert centre_maps(0, 4, 4).shape == (0, 4, 4)


# ------------------------------------------------------------------------ bad input


def test_bad_shapes_and_types_raise_naming_the_argument():
    maps = np.zeros((2, 4, 4))
    masks = np.zeros((2, 4, 4), dtype=bool)
    with pytest.raises(ValueError, match=r"^maps .*3-D"):
        pointing_game(np.zeros((4, 4)), masks)
    with pytest.raises(ValueError, match=r"^masks .*shape"):
        pointing_game(maps, masks[:, :3])
    with pytest.raises(TypeError, match=r"^masks .*boolean"):
        pointing_game(maps, masks.astype(int))
    with pytest.raises(ValueError, match=r"^maps .*finite"):
        pointing_game(np.full((2, 4, 4), np.nan), masks)
    with pytest.raises(ValueError, match=r"^maps .*pixel"):
        pointing_game(np.zeros((2, 0, 4)), np.zeros((2, 0, 4), dtype=bool))
    with pytest.raises(ValueError, match=r"^masks_other "):
        discrimination(maps, masks, masks[:1])
    with pytest.raises(TypeError, match=r"^masks_c "):
        discrimination(maps, [[[True]]], masks)
    with pytest.raises(ValueError, match=r"^map .*2-D"):
        box_from_map(maps)
    with pytest.raises(ValueError, match=r"^threshold "):
        box_from_map(maps[0], threshold=0.0)
    with pytest.raises(ValueError, match=r"^threshold "):
        boxes_from_maps(maps, threshold=1.5)
    with pytest.raises(TypeError, match=r"^threshold "):
        boxes_from_maps(maps, threshold="0.15")
    with pytest.raises(ValueError, match=r"^boxes .*\(2, 4\)"):
        box_accuracy(maps, np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"^iou "):
        box_accuracy(maps, np.zeros((2, 4)), iou=0)
    with pytest.raises(ValueError, match=r"^a .*length 4"):
        box_iou([0, 0, 1], [0, 0, 1, 1])
    with pytest.raises(ValueError, match=r"^b .*row1 >= row0"):
        box_iou([0, 0, 1, 1], [3, 0, 1, 1])
    with pytest.raises(ValueError, match=r"^b .*shape"):
        box_iou(np.zeros((2, 4)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"^fraction "):
        centre_box_baseline(64, fraction=1.2)
    with pytest.raises(ValueError, match=r"^shape "):
        centre_box_baseline((64, 64, 3))
    with pytest.raises(ValueError, match=r"^height "):
        centre_maps(1, 0, 4)
