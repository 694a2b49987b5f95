"""Tests of npcam.image: resizing, normalisation, colour maps, overlays, image files.

Expected values are worked out by hand (arithmetic in the comments) or typed in from the
published tables; none is read off the code under test.
"""

from __future__ import annotations

import struct
import warnings
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import npcam.image.io as image_io
import npcam.image.resize as image_resize
from npcam.image import (
    apply_colormap,
    colormap,
    interpolation_matrices,
    load_image,
    normalize,
    overlay,
    save_image,
    upsample,
)

EPS = np.finfo(np.float64).eps
MODES = [("bilinear", None), ("bilinear", False), ("bilinear", True), ("nearest", None)]


# ------------------------------------------------------------------------- upsample


@given(
    n=st.integers(1, 3),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    out_h=st.integers(1, 40),
    out_w=st.integers(1, 40),
    mode=st.sampled_from(MODES),
    c=st.floats(-1e3, 1e3, allow_nan=False).filter(lambda x: abs(x) > 1e-3),
)
def test_constant_maps_stay_constant(n, h, w, out_h, out_w, mode, c):
    maps = np.full((n, h, w), c)
    out = upsample(maps, (out_h, out_w), *mode)
    assert out.shape == (n, out_h, out_w) and out.dtype == np.float64
    if mode[0] == "nearest":
        assert np.all(out == c)
    else:
        # two stages of two-tap sums whose weights add to 1 up to rounding
        assert np.max(np.abs(out - c)) <= 8 * EPS * abs(c)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_nearest_power_of_two_factor_is_kron(factor):
    rng = np.random.default_rng(factor)
    maps = rng.standard_normal((2, 3, 5))
    out = upsample(maps, (3 * factor, 5 * factor), mode="nearest")
    expected = np.stack([np.kron(m, np.ones((factor, factor))) for m in maps])
    np.testing.assert_array_equal(out, expected)


def test_bilinear_half_pixel_2x2_to_4x4_by_hand():
    # in = 2, out = 4: scale = 2/4 = 0.5, src(d) = 0.5 (d + 0.5) - 0.5 = 0.5 d - 0.25
    #   d = 0: -0.25 -> clamped to 0  -> a
    #   d = 1:  0.25 -> 0.75 a + 0.25 b
    #   d = 2:  0.75 -> 0.25 a + 0.75 b
    #   d = 3:  1.25 -> i0 = 1 = in - 1, both taps on b -> b
    # rows [1, 2] -> [1, 1.25, 1.75, 2] and [3, 4] -> [3, 3.25, 3.75, 4]; then the same
    # weights down the columns: row 1 = 0.75 r0 + 0.25 r3, row 2 = 0.25 r0 + 0.75 r3.
    maps = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    expected = np.array(
        [
            [1.0, 1.25, 1.75, 2.0],
            [1.5, 1.75, 2.25, 2.5],
            [2.5, 2.75, 3.25, 3.5],
            [3.0, 3.25, 3.75, 4.0],
        ]
    )
    for align in (None, False):
        np.testing.assert_array_equal(upsample(maps, 4, align_corners=align)[0], expected)


def test_bilinear_align_corners_2x2_to_4x4_by_hand():
    # in = 2, out = 4: scale = (2 - 1)/(4 - 1) = 1/3, src(d) = d/3 = 0, 1/3, 2/3, 1
    # weights: a, (2/3) a + (1/3) b, (1/3) a + (2/3) b, b
    # rows [1, 2] -> [1, 4/3, 5/3, 2] and [3, 4] -> [3, 10/3, 11/3, 4];
    # row 1 = (2/3) r0 + (1/3) r3 = [5/3, 2, 7/3, 8/3], row 2 = [7/3, 8/3, 3, 10/3].
    maps = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    expected = np.array(
        [
            [1.0, 4 / 3, 5 / 3, 2.0],
            [5 / 3, 2.0, 7 / 3, 8 / 3],
            [7 / 3, 8 / 3, 3.0, 10 / 3],
            [3.0, 10 / 3, 11 / 3, 4.0],
        ]
    )
    out = upsample(maps, (4, 4), align_corners=True)[0]
    assert np.max(np.abs(out - expected)) <= 8 * EPS * 4.0


def test_bilinear_single_output_pixel():
    # out = 1, half-pixel: scale = in/out = 4, src = 4 * 0.5 - 0.5 = 1.5 -> mean of x1, x2;
    # corner-aligned: scale = 0 -> x0.
    maps = np.array([[[0.0, 10.0, 20.0, 30.0]]])
    assert upsample(maps, (1, 1))[0, 0, 0] == 15.0
    assert upsample(maps, (1, 1), align_corners=True)[0, 0, 0] == 0.0


@given(
    h=st.integers(1, 8),
    w=st.integers(1, 8),
    out_h=st.integers(2, 50),
    out_w=st.integers(2, 50),
    seed=st.integers(0, 2**32 - 1),
)
def test_align_corners_keeps_the_four_corners_exactly(h, w, out_h, out_w, seed):
    maps = np.random.default_rng(seed).standard_normal((2, h, w))
    out = upsample(maps, (out_h, out_w), align_corners=True)
    for i, j in [(0, 0), (0, -1), (-1, 0), (-1, -1)]:
        np.testing.assert_array_equal(out[:, i, j], maps[:, i, j])


def test_nearest_uses_torch_float32_rule_2_to_82():
    # Exact rational rule: src = floor(d * 2 / 82) = floor(d / 41) -> 41 zeros, 41 ones.
    d = np.arange(82)
    exact = (d * 2) // 82
    assert exact[41] == 1
    # torch: s = float32(2) / float32(82) = 0x1.8f9c18p-6, and 41 * s rounds (in float32)
    # to 1 - 2**-24 = 0.99999994, whose floor is 0.
    s = np.float32(2) / np.float32(82)
    assert float(s) == float.fromhex("0x1.8f9c18p-6")
    assert np.float32(41) * s == np.float32(1 - 2**-24)
    expected = exact.copy()
    expected[41] = 0  # 42 zeros, then 40 ones
    np.testing.assert_array_equal(expected, [0] * 42 + [1] * 40)

    maps = np.array([[[10.0, 20.0]]])  # (1, 1, 2): width 2 -> 82
    out = upsample(maps, (1, 82), mode="nearest")
    np.testing.assert_array_equal(out[0, 0], np.where(expected == 0, 10.0, 20.0))
    tall = upsample(maps.transpose(0, 2, 1), (82, 1), mode="nearest")  # height 2 -> 82
    np.testing.assert_array_equal(tall[0, :, 0], np.where(expected == 0, 10.0, 20.0))
    r_h, r_w = interpolation_matrices((1, 2), (1, 82), "nearest")
    np.testing.assert_array_equal(r_w.argmax(axis=1), expected)
    np.testing.assert_array_equal(r_h, [[1.0]])


def test_nearest_large_outputs_use_the_float64_kernel():
    # With H + W > 128 torch's CPU runs its generic kernel, which for float64 tensors forms
    # (in/out) * dst in float64 and floors float32 of it: 41 * (2/82) = 1.0 and
    # 23 * (14/46) = 7.0 in float64, so the exact rational floor comes back.
    assert 41 * (2 / 82) == 1.0 and np.float32(41 * (2 / 82)) == 1.0
    assert 23 * (14 / 46) == 7.0
    maps = np.array([[[10.0], [20.0]]])  # (1, 2, 1): height 2
    small = upsample(maps, (82, 46), mode="nearest")  # 82 + 46 = 128: float32 rule
    large = upsample(maps, (82, 47), mode="nearest")  # 82 + 47 = 129: float64 rule
    assert small[0, 41, 0] == 10.0 and large[0, 41, 0] == 20.0
    exact = (np.arange(82) * 2) // 82
    np.testing.assert_array_equal(large[0, :, 0], np.where(exact == 0, 10.0, 20.0))
    cols = np.arange(14, dtype=np.float64)[None, None, :]
    np.testing.assert_array_equal(upsample(cols, (83, 46), mode="nearest")[0, 0], (np.arange(46) * 14) // 46)
    assert upsample(cols, (82, 46), mode="nearest")[0, 0, 23] == 6.0
    # The float32 rounding inside floorf matters: for 2 -> 98, 49 * (2/98) is 1 - 2**-53 in
    # float64 (floor 0), which float32 rounds to 1.0 (floor 1, the exact answer 49*2//98).
    assert 49 * (2 / 98) == 1 - 2**-53 and np.float32(49 * (2 / 98)) == 1.0
    assert upsample(maps, (98, 31), mode="nearest")[0, 49, 0] == 20.0


def test_nearest_uses_torch_float32_rule_14_to_46():
    # Exact rule: floor(d * 14 / 46) = floor(7 d / 23); d = 23 gives exactly 7.
    d = np.arange(46)
    exact = (d * 14) // 46
    assert exact[23] == 7
    # torch: s = float32(14/46) = 0x1.37a6f4p-2; 23 * s rounds to 6.9999995 -> floor 6.
    s = np.float32(14) / np.float32(46)
    assert float(s) == float.fromhex("0x1.37a6f4p-2")
    assert np.float32(23) * s == np.float32(7 - 2**-21)
    expected = exact.copy()
    expected[23] = 6
    maps = np.arange(14, dtype=np.float64)[None, None, :]  # value = column index
    out = upsample(maps, (1, 46), mode="nearest")
    np.testing.assert_array_equal(out[0, 0], expected)


def test_bilinear_source_index_is_floored_in_float32():
    # ATen's guard_index_and_lambda takes floorf() of the float64 source index. For
    # 5000 -> 4999 (half-pixel), the last destination d = 4998 has
    #   src = (5000/4999) * 4998.5 - 0.5 = 4999 - 1/9998 = 4998.99990 (not an integer),
    # but the float32 spacing at 4999 is 2**-11 = 4.9e-4 > 2 * 1/9998, so float32(src) = 4999:
    # i0 = 4999 (= in - 1), w1 = clip(src - 4999, 0, 1) = 0, and the output is x[4999] alone,
    # where an exact floor would give (1/9998) x[4998] + (9997/9998) x[4999].
    src = (5000 / 4999) * 4998.5 - 0.5
    assert abs(src - (4999 - 1 / 9998)) < 1e-9 and np.float32(src) == 4999.0
    i0, i1, w0, w1 = image_resize._linear_taps(5000, 4999, False)
    assert (i0[-1], i1[-1], w0[-1], w1[-1]) == (4999, 4999, 1.0, 0.0)
    # one step earlier the float32 rounding does not reach an integer: src = 4997.9997
    assert (i0[-2], i1[-2]) == (4997, 4998) and 0.999 < w1[-2] < 1.0


@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    out_h=st.integers(1, 120),
    out_w=st.integers(1, 120),
    mode=st.sampled_from(MODES),
)
def test_interpolation_matrix_rows_sum_to_one(h, w, out_h, out_w, mode):
    r_h, r_w = interpolation_matrices((h, w), (out_h, out_w), *mode)
    assert r_h.shape == (out_h, h) and r_w.shape == (out_w, w)
    for mat in (r_h, r_w):
        assert np.all(mat >= 0)
        assert np.max(np.abs(mat.sum(axis=1) - 1.0)) <= 2 * EPS
        taps = np.count_nonzero(mat, axis=1)
        if mode[0] == "nearest":
            assert np.all(taps == 1)
        else:
            assert np.all((taps >= 1) & (taps <= 2))
            cols = [np.nonzero(row)[0] for row in mat]
            assert all(c[-1] - c[0] <= 1 for c in cols)  # the taps are neighbours


@given(
    h=st.integers(1, 8),
    w=st.integers(1, 8),
    out_h=st.integers(1, 90),
    out_w=st.integers(1, 90),
    mode=st.sampled_from(MODES),
    seed=st.integers(0, 2**32 - 1),
)
def test_upsample_is_the_separable_matrix_product(h, w, out_h, out_w, mode, seed):
    maps = np.random.default_rng(seed).standard_normal((2, h, w))
    r_h, r_w = interpolation_matrices((h, w), (out_h, out_w), *mode)
    expected = np.einsum("Hh,nhw,Ww->nHW", r_h, maps, r_w)
    out = upsample(maps, (out_h, out_w), *mode)
    assert np.max(np.abs(out - expected)) <= 8 * EPS * np.max(np.abs(maps))


@pytest.mark.parametrize("mode", MODES)
def test_identity_when_size_equals_input(mode):
    maps = np.random.default_rng(0).standard_normal((3, 5, 7))
    np.testing.assert_array_equal(upsample(maps, (5, 7), *mode), maps)


def test_upsample_accepts_int_size_and_float32():
    maps = np.ones((1, 2, 3), dtype=np.float32)
    out = upsample(maps, 6)
    assert out.shape == (1, 6, 6) and out.dtype == np.float64


@pytest.mark.parametrize(
    ("kwargs", "exc", "word"),
    [
        ({"maps": np.zeros((4, 4))}, ValueError, "maps"),
        ({"maps": np.full((1, 2, 2), np.nan)}, ValueError, "maps"),
        ({"maps": np.zeros((1, 0, 3))}, ValueError, "maps"),
        ({"maps": "abc"}, TypeError, "maps"),
        ({"size": 0}, ValueError, "size"),
        ({"size": (4, 0)}, ValueError, "size"),
        ({"size": (4, 4, 4)}, ValueError, "size"),
        ({"size": 2.5}, TypeError, "size"),
        ({"mode": "bicubic"}, ValueError, "mode"),
        ({"mode": "nearest", "align_corners": False}, ValueError, "align_corners"),
        ({"mode": "nearest", "align_corners": True}, ValueError, "align_corners"),
        ({"align_corners": "yes"}, TypeError, "align_corners"),
    ],
)
def test_upsample_bad_input(kwargs, exc, word):
    args = {"maps": np.zeros((1, 2, 2)), "size": 4, **kwargs}
    with pytest.raises(exc, match=word):
        upsample(**args)


def test_interpolation_matrices_bad_input():
    with pytest.raises(ValueError, match="in_size"):
        interpolation_matrices(0, 3)
    with pytest.raises(TypeError, match="out_size"):
        interpolation_matrices(3, (2, 2.0))
    with pytest.raises(ValueError, match="mode"):
        interpolation_matrices(3, 4, "area")


# ------------------------------------------------------------------------ normalize


@given(
    lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    h=st.integers(1, 6),
    w=st.integers(2, 6),
    seed=st.integers(0, 2**32 - 1),
    scale=st.floats(1e-6, 1e6),
)
def test_normalize_min_zero_max_one(lead, h, w, seed, scale):
    maps = scale * np.random.default_rng(seed).standard_normal((*lead, h, w))
    out = normalize(maps)
    assert out.shape == maps.shape
    assert np.all(out.min(axis=(-2, -1)) == 0.0)
    assert np.all(out.max(axis=(-2, -1)) == 1.0)
    # an affine map of each input: out * (max - min) + min reproduces it
    lo = maps.min(axis=(-2, -1), keepdims=True)
    hi = maps.max(axis=(-2, -1), keepdims=True)
    assert np.max(np.abs(out * (hi - lo) + lo - maps)) <= 8 * EPS * np.max(np.abs(maps))


def test_normalize_constant_map_is_zeros_without_warning():
    maps = np.stack([np.full((3, 4), 7.5), np.arange(12.0).reshape(3, 4)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = normalize(maps)
    np.testing.assert_array_equal(out[0], np.zeros((3, 4)))
    np.testing.assert_array_equal(out[1], np.arange(12.0).reshape(3, 4) / 11.0)
    assert not np.any(np.isnan(out))


def test_normalize_leading_axes_independent():
    rng = np.random.default_rng(1)
    maps = rng.standard_normal((2, 3, 4, 5)) * np.array([1.0, 1e3, 1e-3])[None, :, None, None]
    maps[1, 2] = -2.0  # a constant map among others
    out = normalize(maps)
    for i in range(2):
        for j in range(3):
            np.testing.assert_array_equal(out[i, j], normalize(maps[i, j]))
    np.testing.assert_array_equal(out[1, 2], 0.0)


def test_normalize_huge_range_no_overflow():
    maps = np.array([[-1e308, 0.0, 1e308]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = normalize(maps)
    np.testing.assert_array_equal(out, [[0.0, 0.5, 1.0]])


def test_normalize_bad_input():
    with pytest.raises(ValueError, match="maps"):
        normalize(np.arange(3.0))
    with pytest.raises(ValueError, match="maps"):
        normalize(np.array([[0.0, np.inf]]))


# ------------------------------------------------------------------------ colormaps


def _jet_exact(k: int) -> tuple[float, float, float]:
    """255 * clip(3/2 - |4t - c|, 0, 1) at t = k/255 for c = 3, 2, 1 (R, G, B)."""
    t = k / 255
    return tuple(255 * min(1.0, max(0.0, 1.5 - abs(4 * t - c))) for c in (3, 2, 1))


def test_colormap_shape_dtype_and_copy():
    for name in ("jet", "viridis"):
        lut = colormap(name)
        assert lut.shape == (256, 3) and lut.dtype == np.uint8
        lut[:] = 0
        assert colormap(name).any()  # the stored table is untouched


def test_jet_entries_by_hand():
    jet = colormap("jet")
    # k = 0:   t = 0: R = 0, G = 0, B = 1.5 - 1 = 0.5 -> 127.5 -> 128 (half to even)
    assert tuple(jet[0]) == (0, 0, 128)
    # k = 32:  4t = 128/255: G = 1.5 - (2 - 128/255) = 0.5/255 -> 0.5 -> 0; B saturates
    assert tuple(jet[32]) == (0, 0, 255)
    # k = 96:  4t = 384/255: R = 1.5 - (3 - 384/255) = 1.5/255 -> 1.5 -> 2;
    #          G saturates; B = 1.5 - (384/255 - 1) = 253.5/255 -> 253.5 -> 254
    assert tuple(jet[96]) == (2, 255, 254)
    # k = 128: 4t = 512/255: R = 129.5/255 -> 130; G = 255; B = 125.5/255 -> 126
    assert tuple(jet[128]) == (130, 255, 126)
    # k = 159: R = 253.5/255 -> 254; G = 255; B = 1.5/255 -> a tie at 1.5, which OpenCV's
    #          float32 interpolation puts just below: cv2.applyColorMap gives 1, not 2.
    assert tuple(jet[159]) == (254, 255, 1)
    # k = 255: R = 1.5 - (4 - 3) = 0.5 -> 127.5 -> 128; G = B = 0
    assert tuple(jet[255]) == (128, 0, 0)


def test_jet_within_half_a_level_of_the_control_point_curve():
    jet = colormap("jet").astype(np.float64)
    exact = np.array([_jet_exact(k) for k in range(256)])
    assert np.max(np.abs(jet - exact)) <= 0.5 + 1e-9
    # and the whole table is monotone where the curve is: blue falls on [96, 160]
    assert np.all(np.diff(jet[96:161, 2]) < 0)


def test_viridis_endpoints_from_matplotlib_table():
    viridis = colormap("viridis")
    # matplotlib _viridis_data[0]   = (0.267004, 0.004874, 0.329415) -> 68.09, 1.24, 84.00
    assert tuple(viridis[0]) == (68, 1, 84)
    # matplotlib _viridis_data[128] = (0.127568, 0.566949, 0.550556) -> 32.53, 144.57, 140.39
    assert tuple(viridis[128]) == (33, 145, 140)
    # matplotlib _viridis_data[255] = (0.993248, 0.906157, 0.143936) -> 253.28, 231.07, 36.70
    assert tuple(viridis[255]) == (253, 231, 37)


def test_jet_and_viridis_equal_opencv():
    cv2 = pytest.importorskip("cv2", reason="cross-check against OpenCV's tables")
    gray = np.arange(256, dtype=np.uint8)[:, None]
    bgr = cv2.applyColorMap(gray, cv2.COLORMAP_JET)[:, 0]
    np.testing.assert_array_equal(colormap("jet"), bgr[:, ::-1])
    bgr = cv2.applyColorMap(gray, cv2.COLORMAP_VIRIDIS)[:, 0]
    np.testing.assert_array_equal(colormap("viridis"), bgr[:, ::-1])


def test_viridis_equals_matplotlib_rounded():
    mpl = pytest.importorskip("matplotlib", reason="cross-check against matplotlib")
    rgba = mpl.colormaps["viridis"](np.arange(256))
    np.testing.assert_array_equal(colormap("viridis"), np.rint(255 * rgba[:, :3]))


def test_apply_colormap_truncates_like_pytorch_grad_cam():
    jet = colormap("jet")
    # 255 * 0.999 = 254.745 -> 254; 255 * 1 = 255; 255 * (10/255 - 1e-12) -> 9
    maps = np.array([[0.999, 1.0, 10 / 255 - 1e-12, 0.0]])
    out = apply_colormap(maps)
    assert out.shape == (1, 4, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], jet[[254, 255, 9, 0]])


def test_apply_colormap_product_in_input_dtype():
    # v = 257/65536 is a float16. Exactly, 255 v = 65535/65536 -> level 0; in float16 the
    # product rounds to 1.0 (the spacing below 1 is 2**-11) -> level 1, as np.uint8(255*v).
    v = 257 / 65536
    jet = colormap("jet")
    np.testing.assert_array_equal(apply_colormap(np.array([v], dtype=np.float16))[0], jet[1])
    np.testing.assert_array_equal(apply_colormap(np.array([v]))[0], jet[0])
    np.testing.assert_array_equal(apply_colormap(np.array([v], dtype=np.float32))[0], jet[0])


def test_apply_colormap_shapes_and_bad_input():
    assert apply_colormap(np.zeros((2, 3, 4)), "viridis").shape == (2, 3, 4, 3)
    with pytest.raises(ValueError, match="maps"):
        apply_colormap(np.array([1.0 + 1e-12]))
    with pytest.raises(ValueError, match="maps"):
        apply_colormap(np.array([-1e-300]))
    with pytest.raises(ValueError, match="maps"):
        apply_colormap(np.array([np.nan]))
    with pytest.raises(ValueError, match="name"):
        apply_colormap(np.zeros(3), "hot")


# -------------------------------------------------------------------------- overlay


def test_overlay_alpha_zero_is_image_and_one_is_heat():
    rng = np.random.default_rng(2)
    image = rng.random((3, 4, 5))
    cam = rng.random((4, 5))
    np.testing.assert_array_equal(overlay(image, cam, alpha=0.0), image.transpose(1, 2, 0))
    heat = colormap("jet")[np.floor(255 * cam).astype(int)] / 255.0
    np.testing.assert_array_equal(overlay(image, cam, alpha=1.0), heat)
    heat_v = colormap("viridis")[np.floor(255 * cam).astype(int)] / 255.0
    np.testing.assert_array_equal(overlay(image, cam, alpha=1, colormap="viridis"), heat_v)


def test_overlay_half_by_hand_and_batch():
    # one pixel, image (0.2, 0.4, 0.6), cam 0 -> jet[0] = (0, 0, 128):
    # 0.5 * (0.2, 0.4, 0.6) + 0.5 * (0, 0, 128/255)
    image = np.array([0.2, 0.4, 0.6]).reshape(1, 3, 1, 1)
    cam = np.zeros((1, 1, 1))
    out = overlay(image, cam)
    assert out.shape == (1, 1, 1, 3)
    expected = [0.1, 0.2, 0.3 + 64 / 255]
    assert np.max(np.abs(out[0, 0, 0] - expected)) <= 4 * EPS


@given(seed=st.integers(0, 2**32 - 1), alpha=st.floats(0.0, 1.0))
def test_overlay_stays_in_unit_interval(seed, alpha):
    rng = np.random.default_rng(seed)
    image = rng.random((2, 3, 3, 4))
    image[0, :, 0, 0] = 1.0
    cam = rng.random((2, 3, 4))
    cam[0, 0, 0] = 1.0
    out = overlay(image, cam, alpha=alpha)
    assert out.shape == (2, 3, 4, 3)
    assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize(
    ("image_shape", "cam_shape", "word"),
    [
        ((3, 4, 5), (4, 6), "cam"),
        ((3, 4, 5), (1, 4, 5), "cam"),
        ((2, 3, 4, 5), (4, 5), "cam"),
        ((2, 3, 4, 5), (3, 4, 5), "cam"),
        ((4, 4, 5), (4, 5), "image"),
        ((4, 5), (4, 5), "image"),
    ],
)
def test_overlay_shape_mismatch(image_shape, cam_shape, word):
    with pytest.raises(ValueError, match=word):
        overlay(np.zeros(image_shape), np.zeros(cam_shape))


def test_overlay_bad_alpha_and_values():
    image, cam = np.zeros((3, 2, 2)), np.zeros((2, 2))
    for alpha in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="alpha"):
            overlay(image, cam, alpha=alpha)
    with pytest.raises(TypeError, match="alpha"):
        overlay(image, cam, alpha=True)
    with pytest.raises(ValueError, match="image"):
        overlay(image + 2.0, cam)
    with pytest.raises(ValueError, match="cam"):
        overlay(image, cam - 1.0)


# ---------------------------------------------------------------------- load / save


def _png_header(width: int, height: int) -> bytes:
    """A PNG signature, an IHDR chunk claiming width x height RGB8, and IEND (no data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_uint8_png_round_trip_exact(tmp_path):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    # written by Pillow directly, read by load_image
    path = tmp_path / "pillow.png"
    Image.fromarray(pixels).save(path)
    loaded = load_image(path)
    assert loaded.shape == (3, 5, 7) and loaded.dtype == np.float64
    np.testing.assert_array_equal(loaded, pixels.transpose(2, 0, 1) / 255.0)
    # written by save_image (HWC uint8, then CHW float), read by Pillow directly
    for name, image in [("a.png", pixels), ("b.png", loaded)]:
        save_image(tmp_path / name, image)
        with Image.open(tmp_path / name) as im:
            np.testing.assert_array_equal(np.asarray(im), pixels)


def test_save_float_quantisation_rounds(tmp_path):
    # 0.5 * 255 = 127.5 -> 128 (half to even); 1/255 -> 1; 254.6/255 -> 255; 0.4/255 -> 0
    image = np.array([0.5, 1 / 255, 254.6 / 255, 0.4 / 255]).reshape(1, 4, 1) * np.ones(3)
    save_image(tmp_path / "q.png", image)
    with Image.open(tmp_path / "q.png") as im:
        np.testing.assert_array_equal(np.asarray(im)[0, :, 0], [128, 1, 255, 0])


def test_load_image_modes(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    np.testing.assert_array_equal(out, np.stack([gray] * 3) / 255.0)
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 10
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_image(tmp_path / "a.png")[0], 200 / 255.0)  # alpha dropped
    Image.fromarray(np.full((2, 2), 300, dtype=np.uint16)).save(tmp_path / "deep.png")
    with pytest.raises(ValueError, match="mode"):
        load_image(tmp_path / "deep.png")


def test_load_image_resize_is_pillow_bilinear(tmp_path):
    pixels = np.random.default_rng(4).integers(0, 256, size=(8, 6, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "r.png")
    out = load_image(tmp_path / "r.png", size=(4, 9))
    assert out.shape == (3, 4, 9)
    ref = Image.fromarray(pixels).resize((9, 4), resample=Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(out, np.asarray(ref).transpose(2, 0, 1) / 255.0)


def test_load_image_missing_file(tmp_path):
    path = tmp_path / "nope.png"
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(path)


def test_load_image_not_an_image(tmp_path):
    path = tmp_path / "text.png"
    path.write_text("this is not a PNG\n")
    with pytest.raises(ValueError, match="text.png"):
        load_image(path)
    with pytest.raises(ValueError, match="not a file"):
        load_image(tmp_path)


def test_load_image_truncated(tmp_path):
    path = tmp_path / "cut.png"
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8) + 7).save(path)
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(ValueError, match="cut.png"):
        load_image(path)


def test_load_image_refuses_oversized(tmp_path, monkeypatch):
    # 8000 x 8000 = 64 Mpx: above npcam's 50 Mpx, below Pillow's own warning (~89 Mpx)
    path = tmp_path / "big.png"
    path.write_bytes(_png_header(8000, 8000))
    with pytest.raises(ValueError, match="MAX_IMAGE_PIXELS"):
        load_image(path)
    # 20000 x 20000 = 400 Mpx: Pillow raises DecompressionBombError while opening
    path.write_bytes(_png_header(20000, 20000))
    with pytest.raises(ValueError, match="big.png"):
        load_image(path)
    # the limit is a module constant
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(small)
    monkeypatch.setattr(image_io, "MAX_IMAGE_PIXELS", 15)
    with pytest.raises(ValueError, match="MAX_IMAGE_PIXELS"):
        load_image(small)
    with pytest.raises(ValueError, match="size"):
        load_image(small, size=(2, 8))


def test_save_image_bad_input(tmp_path):
    good = np.zeros((3, 2, 2))
    with pytest.raises(ValueError, match="image"):
        save_image(tmp_path / "x.png", good + 1.5)
    with pytest.raises(ValueError, match="image"):
        save_image(tmp_path / "x.png", np.full((3, 2, 2), np.nan))
    with pytest.raises(ValueError, match="layout"):
        save_image(tmp_path / "x.png", np.zeros((3, 4, 3)))
    save_image(tmp_path / "hwc.png", np.zeros((3, 4, 3)), layout="hwc")
    with Image.open(tmp_path / "hwc.png") as im:
        assert im.size == (4, 3)
    with pytest.raises(TypeError, match="image"):
        save_image(tmp_path / "x.png", np.zeros((3, 2, 2), dtype=np.int32))
    with pytest.raises(ValueError, match="image"):
        save_image(tmp_path / "x.png", np.zeros((2, 2)))
    with pytest.raises(ValueError, match="x.xyz"):
        save_image(tmp_path / "x.xyz", good)
    save_image(tmp_path / "nosuffix", good)
    assert (tmp_path / "nosuffix").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
