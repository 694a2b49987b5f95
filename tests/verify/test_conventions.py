r"""Tests of ``npcam.conventions``: each library's post-processing against expectations
worked out by hand from that library's documented formula, on 2×2 maps.

Two hand examples (N = 1, h = w = 2, Z = 4):

* ``SIGNED``: K = 2, A^0 = [[1, 2], [3, 4]], A^1 = [[2, 0], [0, 1]],
  ∂y/∂A^0 = [[1, 0], [0, 1]] (mean 0.5, sum 2), ∂y/∂A^1 = [[-2, 0], [-1, -1]] (mean -1,
  sum -4). So α = (0.5, -1), M = 0.5·A^0 − A^1 = [[-1.5, 1], [1.5, 1]],
  ReLU(M) = [[0, 1], [1.5, 1]]; the Lua weights are Z·α = (2, -4) and its map 4·M.
* ``POSITIVE``: K = 1, A = [[1, 2], [3, 5]], ∂y/∂A = 1 everywhere: α = 1, M = A (all
  positive, so min-max normalisation really subtracts a minimum of 1).

Resizes of 2 -> 4 with half-pixel centres (npcam, OpenCV, captum bilinear) take, per axis,
the rows of ``R4 = [[1, 0], [.75, .25], [.25, .75], [0, 1]]``; corner-aligned 2 -> 3
(tf-keras-vis's zoom, Torch7's image.scale) takes ``R3 = [[1, 0], [.5, .5], [0, 1]]``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.ndimage import zoom

import npcam  # noqa: E402
import npcam as explain
from npcam.image import upsample  # noqa: E402
from npcam.verify import conventions as C  # noqa: E402

A_SIGNED = np.array([[[[1.0, 2.0], [3.0, 4.0]], [[2.0, 0.0], [0.0, 1.0]]]])
G_SIGNED = np.array([[[[1.0, 0.0], [0.0, 1.0]], [[-2.0, 0.0], [-1.0, -1.0]]]])
M_SIGNED = np.array([[-1.5, 1.0], [1.5, 1.0]])
RELU_SIGNED = np.array([[0.0, 1.0], [1.5, 1.0]])

A_POS = np.array([[[[1.0, 2.0], [3.0, 5.0]]]])
G_POS = np.ones_like(A_POS)

R4 = np.array([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])
R3 = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])

f32 = np.float32


def scale_error(a, b):
    """max |a − b| relative to the arrays' scale (DESIGN.md: one normaliser per array)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.abs(a - b).max() / max(np.abs(a).max(), np.abs(b).max(), 1e-300)


# ------------------------------------------------------------------- the registry
def test_names_and_defaults():
    assert C.NAMES == (
        "npcam", "captum", "pytorch-grad-cam", "torchcam", "tf-keras-vis", "grad-cam-lua"
    )
    assert set(C.GUIDED_NAMES) == {"npcam", "captum", "grad-cam-lua"}
    assert set(C.DEFAULT_SCORES) == set(C.NAMES)
    assert C.DEFAULT_SCORES["tf-keras-vis"] == "softmax"
    assert {C.DEFAULT_SCORES[n] for n in C.NAMES if n != "tf-keras-vis"} == {"logit"}


# ------------------------------------------------------------------------ npcam
def test_npcam_relu_then_half_pixel_bilinear_no_normalisation():
    out = C.npcam_grad_cam(A_SIGNED, G_SIGNED, (4, 4))
    assert out.shape == (1, 4, 4) and out.dtype == np.float64
    np.testing.assert_allclose(out[0], R4 @ RELU_SIGNED @ R4.T, rtol=0, atol=1e-15)


def test_npcam_guided_is_map_times_gradient_per_channel():
    gb = np.random.default_rng(0).standard_normal((1, 3, 4, 4))
    out = C.npcam_guided_grad_cam(gb, A_SIGNED, G_SIGNED)
    assert out.shape == (1, 3, 4, 4)
    np.testing.assert_allclose(out, gb * (R4 @ RELU_SIGNED @ R4.T), rtol=0, atol=1e-15)


# ------------------------------------------------------------------------ captum
def test_captum_signed_by_default_with_channel_axis():
    out = C.captum_layer_grad_cam(A_SIGNED, G_SIGNED)
    assert out.shape == (1, 1, 2, 2) and out.dtype == np.float64
    np.testing.assert_array_equal(out[0, 0], M_SIGNED)


def test_captum_relu_attributions():
    out = C.captum_layer_grad_cam(A_SIGNED, G_SIGNED, relu_attributions=True)
    np.testing.assert_array_equal(out[0, 0], RELU_SIGNED)


def test_captum_without_channel_summation():
    out = C.captum_layer_grad_cam(A_SIGNED, G_SIGNED, attr_dim_summation=False)
    assert out.shape == (1, 2, 2, 2)
    np.testing.assert_array_equal(out[0, 0], 0.5 * A_SIGNED[0, 0])
    np.testing.assert_array_equal(out[0, 1], -1.0 * A_SIGNED[0, 1])


def test_captum_interpolate_nearest_and_bilinear():
    near = C.captum_layer_grad_cam(A_SIGNED, G_SIGNED, (4, 4), interpolate_mode="nearest")
    # out = 2·in: each source pixel becomes a 2×2 block (torch's dst // 2 rule).
    np.testing.assert_array_equal(near[0, 0], np.kron(M_SIGNED, np.ones((2, 2))))
    bil = C.captum_layer_grad_cam(A_SIGNED, G_SIGNED, (4, 4), interpolate_mode="bilinear")
    np.testing.assert_allclose(bil[0, 0], R4 @ M_SIGNED @ R4.T, rtol=0, atol=1e-15)


def test_captum_guided_uses_relu_and_nearest_by_default():
    gb = np.random.default_rng(1).standard_normal((1, 3, 4, 4))
    out = C.captum_guided_grad_cam(gb, A_SIGNED, G_SIGNED)
    assert out.shape == (1, 3, 4, 4)
    np.testing.assert_array_equal(out, gb * np.kron(RELU_SIGNED, np.ones((2, 2))))
    bil = C.captum_guided_grad_cam(gb, A_SIGNED, G_SIGNED, interpolate_mode="bilinear")
    np.testing.assert_allclose(bil, gb * (R4 @ RELU_SIGNED @ R4.T), rtol=0, atol=1e-15)


def test_captum_keeps_float32():
    out = C.captum_layer_grad_cam(A_SIGNED.astype(f32), G_SIGNED.astype(f32), (4, 4),
                                  interpolate_mode="bilinear")
    assert out.dtype == np.float32


# ------------------------------------------------------------- pytorch-grad-cam
def test_pytorch_grad_cam_two_stage_normalisation_around_opencv_resize():
    out = C.pytorch_grad_cam(A_SIGNED, G_SIGNED, (4, 4))
    assert out.shape == (1, 4, 4) and out.dtype == np.float32
    stage1 = RELU_SIGNED / (1e-7 + 1.5)  # m − min (= 0), / (1e-7 + max)
    resized = R4 @ stage1 @ R4.T  # cv2.resize INTER_LINEAR, exact arithmetic
    expected = resized / (1e-7 + resized.max())  # aggregate_multi_layers: again
    np.testing.assert_allclose(out[0], expected, rtol=0, atol=3e-7)  # float32 rounding
    assert out.min() == 0.0 and 1 - 2e-7 < out.max() < 1.0


def test_pytorch_grad_cam_epsilon_placement_bit_for_bit():
    # At the feature size the resize is the identity, so every step can be typed in.
    out = C.pytorch_grad_cam(A_POS, G_POS, (2, 2))
    m = A_POS[0, 0]
    stage1 = ((m - 1.0) / (1e-7 + (5.0 - 1.0))).astype(f32)  # float64 (model dtype), cast
    expected = stage1 / (f32(1e-7) + stage1.max())  # float32 arithmetic
    assert expected.dtype == np.float32
    np.testing.assert_array_equal(out[0], expected)


def test_pytorch_grad_cam_constant_map_gives_zeros():
    a = np.full((1, 1, 2, 3), 2.0)
    out = C.pytorch_grad_cam(a, np.ones_like(a), (4, 6))
    np.testing.assert_array_equal(out, np.zeros((1, 4, 6), f32))


def test_opencv_resize_horizontal_and_vertical_borders_differ():
    # OpenCV zeroes the weight of a clamped tap horizontally, but vertically only clips
    # the row index: 3 -> 7 puts destination 0 at f = 0.7142857 (float32) of row "-1",
    # so the top row is a·(1 − f) + a·f in float32, which for a = 1.9 is not a.
    a = f32(1.9)
    fy = f32(0.5 * (3 / 7) - 0.5)  # -0.2857143
    fy = fy - np.floor(fy).astype(f32)  # 0.7142857
    top = a * (f32(1) - fy) + a * fy
    assert top != a  # the rounding this test is about
    col = C.opencv_resize_linear(np.array([[[a], [0.0], [0.0]]]), (7, 1))
    assert col[0, 0, 0] == top
    row = C.opencv_resize_linear(np.array([[[a, 0.0, 0.0]]]), (1, 7))
    assert row[0, 0, 0] == a


def test_opencv_resize_rejects_shrinking():
    with pytest.raises(ValueError, match="shrink"):
        C.opencv_resize_linear(np.zeros((1, 4, 4)), (3, 5))


@given(
    h=st.integers(1, 6), w=st.integers(1, 6), dh=st.integers(0, 20), dw=st.integers(0, 20),
    seed=st.integers(0, 2**32 - 1),
)
def test_opencv_resize_is_half_pixel_bilinear_to_float32_rounding(h, w, dh, dw, seed):
    maps = np.random.default_rng(seed).random((2, h, w)).astype(f32)
    out = C.opencv_resize_linear(maps, (h + dh, w + dw))
    assert out.dtype == np.float32 and out.shape == (2, h + dh, w + dw)
    ref = upsample(maps.astype(np.float64), (h + dh, w + dw))
    assert np.abs(out - ref).max() <= 5e-7 * np.abs(maps).max()


# ---------------------------------------------------------------------- torchcam
def test_torchcam_relu_then_min_max_with_epsilon_1e8():
    out = C.torchcam_gradcam(A_SIGNED, G_SIGNED)
    assert out.shape == (1, 2, 2) and out.dtype == np.float64
    np.testing.assert_array_equal(out[0], RELU_SIGNED / (1.5 + 1e-8))
    assert out.max() < 1.0  # the ε stays in the maximum


def test_torchcam_subtracts_the_minimum_first():
    out = C.torchcam_gradcam(A_POS, G_POS)
    np.testing.assert_array_equal(out[0], (A_POS[0, 0] - 1.0) / (4.0 + 1e-8))


def test_torchcam_unnormalised_and_constant():
    np.testing.assert_array_equal(
        C.torchcam_gradcam(A_SIGNED, G_SIGNED, normalized=False)[0], RELU_SIGNED
    )
    a = np.full((1, 2, 3, 3), 0.5)
    np.testing.assert_array_equal(C.torchcam_gradcam(a, np.ones_like(a)), np.zeros((1, 3, 3)))


# ------------------------------------------------------------------ tf-keras-vis
def test_tf_keras_vis_resizes_corner_aligned_before_normalising():
    out = C.tf_keras_vis_gradcam(A_POS, G_POS, (3, 3))
    assert out.shape == (1, 3, 3) and out.dtype == np.float64
    zoomed = R3 @ A_POS[0, 0] @ R3.T  # [[1, 1.5, 2], [2, 2.75, 3.5], [3, 4, 5]]
    np.testing.assert_allclose(out[0], (zoomed - 1.0) / (5.0 - 1.0 + 1e-7), rtol=1e-15)


def test_tf_keras_vis_relu_and_options():
    out = C.tf_keras_vis_gradcam(A_SIGNED, G_SIGNED, (3, 3), normalize_cam=False)
    np.testing.assert_allclose(out[0], R3 @ RELU_SIGNED @ R3.T, rtol=0, atol=1e-15)
    small = C.tf_keras_vis_gradcam(A_SIGNED, G_SIGNED, expand_cam=False)
    np.testing.assert_allclose(small[0], RELU_SIGNED / (1.5 + 1e-7), rtol=1e-15)


@given(
    n=st.integers(1, 3), h=st.integers(1, 6), w=st.integers(1, 6),
    dh=st.integers(0, 20), dw=st.integers(0, 20), seed=st.integers(0, 2**32 - 1),
)
def test_zoom_order1_is_align_corners_bilinear(n, h, w, dh, dw, seed):
    # tf-keras-vis's scipy.ndimage.zoom(order=1), batch factor 1, equals
    # F.interpolate(..., "bilinear", align_corners=True).
    maps = np.random.default_rng(seed).standard_normal((n, h, w))
    size = (h + dh, w + dw)
    z = zoom(maps, (1.0, size[0] / h, size[1] / w), order=1)
    assert z.shape == (n, *size)
    assert scale_error(z, upsample(maps, size, align_corners=True)) <= 1e-14


# ------------------------------------------------------------------ grad-cam-lua
def test_lua_weights_are_sums_so_the_map_is_z_times_larger():
    # At the feature size the Torch7 scale copies: the map is float32(ReLU(Z·M)).
    out = C.grad_cam_lua(A_SIGNED, G_SIGNED, (2, 2))
    assert out.shape == (1, 1, 2, 2) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0, 0], (4.0 * RELU_SIGNED).astype(f32))


def test_lua_corner_aligned_scale_and_no_normalisation():
    out = C.grad_cam_lua(A_POS, G_POS, (3, 3))
    # weights Z·α = 4: map [[4, 8], [12, 20]]; rows first, then columns, midpoints exact.
    expected = np.array([[4.0, 6.0, 8.0], [8.0, 11.0, 14.0], [12.0, 16.0, 20.0]], f32)
    np.testing.assert_array_equal(out[0, 0], expected)


def test_lua_guided_is_float32_product():
    gb = np.random.default_rng(2).standard_normal((1, 3, 3, 3))
    out = C.grad_cam_lua_guided(gb, A_POS, G_POS)
    assert out.shape == (1, 3, 3, 3) and out.dtype == np.float32
    expected = np.array([[4.0, 6.0, 8.0], [8.0, 11.0, 14.0], [12.0, 16.0, 20.0]], f32)
    np.testing.assert_array_equal(out[0], gb[0].astype(f32) * expected)


def test_torch7_scale_float32_steps():
    # 2 -> 4: scale = float32(1/3); destination 1 sits at f = float32(1/3), destination 2
    # at float32(2·float32(1/3)); the last copies the last source.
    src = np.array([[0.0, 3.0]], f32)
    out = C.torch7_scale_bilinear(src, (1, 4))
    s = f32(1) / f32(3)
    s2 = f32(2) * s
    expected = [0.0, (f32(1) - s) * f32(0) + s * f32(3), (f32(1) - s2) * f32(0) + s2 * f32(3), 3.0]
    np.testing.assert_array_equal(out[0], np.array(expected, f32))


@given(
    h=st.integers(1, 6), w=st.integers(1, 6), dh=st.integers(0, 20), dw=st.integers(0, 20),
    seed=st.integers(0, 2**32 - 1),
)
def test_torch7_scale_is_align_corners_bilinear_to_float32_rounding(h, w, dh, dw, seed):
    maps = np.random.default_rng(seed).random((2, h, w)).astype(f32)
    out = C.torch7_scale_bilinear(maps, (h + dh, w + dw))
    ref = upsample(maps.astype(np.float64), (h + dh, w + dw), align_corners=True)
    bound = (2.4e-7 * (max(h, w) - 1) + 5e-7) * np.abs(maps).max()
    assert out.dtype == np.float32 and np.abs(out - ref).max() <= bound
    # the last row and column are copied, not interpolated
    np.testing.assert_array_equal(out[:, -1, -1], maps[:, -1, -1])


def test_torch7_scale_rejects_shrinking():
    with pytest.raises(ValueError, match="shrink"):
        C.torch7_scale_bilinear(np.zeros((4, 4)), (4, 3))


# --------------------------------------------------------- post-processing checks
@pytest.mark.parametrize(
    "func, size",
    [
        (C.npcam_grad_cam, (4, 4)),
        (C.captum_layer_grad_cam, None),
        (C.pytorch_grad_cam, (4, 4)),
        (C.torchcam_gradcam, None),
        (C.tf_keras_vis_gradcam, (4, 4)),
        (C.grad_cam_lua, (4, 4)),
    ],
)
def test_post_processing_validates_arrays(func, size):
    with pytest.raises(ValueError, match="same shape"):
        func(A_SIGNED, G_SIGNED[:, :1], size)
    with pytest.raises(ValueError, match="4-D"):
        func(A_SIGNED[0], G_SIGNED[0], size)
    bad = G_SIGNED.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        func(A_SIGNED, bad, size)
    with pytest.raises(TypeError):
        func("A", G_SIGNED, size)


@pytest.mark.parametrize(
    "func", [C.npcam_grad_cam, C.pytorch_grad_cam, C.tf_keras_vis_gradcam, C.grad_cam_lua]
)
def test_resizing_conventions_need_the_size(func):
    with pytest.raises(ValueError, match="input_size"):
        func(A_SIGNED, G_SIGNED)


def test_non_resizing_conventions_refuse_a_size():
    with pytest.raises(ValueError, match="input_size must be None"):
        C.torchcam_gradcam(A_SIGNED, G_SIGNED, (4, 4))
    with pytest.raises(ValueError, match="input_size must be None"):
        C.captum_layer_grad_cam(A_SIGNED, G_SIGNED, (4, 4))
    with pytest.raises(ValueError, match="input_size must be None"):
        C.tf_keras_vis_gradcam(A_SIGNED, G_SIGNED, (4, 4), expand_cam=False)


def test_option_values_are_checked():
    with pytest.raises(ValueError, match="interpolate_mode"):
        C.captum_layer_grad_cam(A_SIGNED, G_SIGNED, (4, 4), interpolate_mode="bicubic")
    with pytest.raises(ValueError, match="interpolate_mode"):
        C.captum_guided_grad_cam(np.zeros((1, 3, 4, 4)), A_SIGNED, G_SIGNED,
                                 interpolate_mode=None)
    with pytest.raises(TypeError, match="relu_attributions"):
        C.captum_layer_grad_cam(A_SIGNED, G_SIGNED, relu_attributions=1)
    with pytest.raises(TypeError, match="normalized"):
        C.torchcam_gradcam(A_SIGNED, G_SIGNED, normalized="yes")
    with pytest.raises(ValueError, match="guided"):
        C.grad_cam_lua_guided(np.zeros((2, 3, 4, 4)), A_SIGNED, G_SIGNED)


# ------------------------------------------------------------ through npcam.methods
@pytest.fixture(scope="module")
def net():
    rng = np.random.default_rng(7)
    return npcam.Sequential(
        npcam.Conv2d(3, 4, kernel_size=3, padding=1, rng=rng), npcam.ReLU(),
        npcam.MaxPool2d(2),
        npcam.Conv2d(4, 6, kernel_size=3, padding=1, rng=rng), npcam.ReLU(),
        npcam.GlobalAvgPool2d(), npcam.Linear(6, 5, rng=rng),
    )


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(8).standard_normal((2, 3, 10, 12))


EXPECTED_LAYOUT = {
    "npcam": ((2, 10, 12), np.float64),
    "captum": ((2, 1, 5, 6), np.float64),
    "pytorch-grad-cam": ((2, 10, 12), np.float32),
    "torchcam": ((2, 5, 6), np.float64),
    "tf-keras-vis": ((2, 10, 12), np.float64),
    "grad-cam-lua": ((2, 1, 10, 12), np.float32),
}

POST = {
    "npcam": C.npcam_grad_cam,
    "captum": C.captum_layer_grad_cam,
    "pytorch-grad-cam": C.pytorch_grad_cam,
    "torchcam": C.torchcam_gradcam,
    "tf-keras-vis": C.tf_keras_vis_gradcam,
    "grad-cam-lua": C.grad_cam_lua,
}


@pytest.mark.parametrize("name", C.NAMES)
def test_grad_cam_applies_the_convention_to_explain(net, x, name):
    out = C.grad_cam(net, x, convention=name)
    shape, dtype = EXPECTED_LAYOUT[name]
    assert out.shape == shape and out.dtype == dtype
    r = explain.grad_cam(net, x, score=C.DEFAULT_SCORES[name])
    size = None if name in ("captum", "torchcam") else (10, 12)
    np.testing.assert_array_equal(out, POST[name](r.activations, r.gradients, size))


def test_default_score_of_tf_keras_vis_is_softmax(net, x):
    soft = C.grad_cam(net, x, convention="tf-keras-vis")
    np.testing.assert_array_equal(soft, C.grad_cam(net, x, convention="tf-keras-vis",
                                                   score="softmax"))
    assert scale_error(soft, C.grad_cam(net, x, convention="tf-keras-vis", score="logit")) > 1e-6


def test_npcam_convention_is_upsampled_cam(net, x):
    r = explain.grad_cam(net, x, target=[1, 3])
    out = C.grad_cam(net, x, target=[1, 3])
    assert scale_error(out, upsample(r.cam, (10, 12))) <= 1e-13


def test_captum_convention_is_the_raw_map(net, x):
    r = explain.grad_cam(net, x, target=2)
    out = C.grad_cam(net, x, target=2, convention="captum")
    assert scale_error(out[:, 0], r.raw) <= 1e-13
    relu = C.grad_cam(net, x, target=2, convention="captum", relu_attributions=True)
    assert scale_error(relu[:, 0], r.cam) <= 1e-13
    big = C.grad_cam(net, x, target=2, convention="captum", interpolate_mode="bilinear",
                     input_size=(7, 9))
    assert big.shape == (2, 1, 7, 9)


def test_lua_convention_is_z_times_the_map(net, x):
    r = explain.grad_cam(net, x)
    z = r.activations.shape[2] * r.activations.shape[3]
    out = C.grad_cam(net, x, convention="grad-cam-lua", input_size=r.cam.shape[1:])
    assert scale_error(out[:, 0], z * r.cam) <= 3e-7  # float32


def test_guided_conventions(net, x):
    ref = explain.guided_grad_cam(net, x, target=[0, 4])
    out = C.guided_grad_cam(net, x, target=[0, 4])
    assert scale_error(out, ref) <= 1e-13
    gb = explain.guided_backprop(net, x, target=[0, 4])
    r = explain.grad_cam(net, x, target=[0, 4])
    cap = C.guided_grad_cam(net, x, target=[0, 4], convention="captum")
    np.testing.assert_array_equal(cap, C.captum_guided_grad_cam(gb, r.activations, r.gradients))
    lua = C.guided_grad_cam(net, x, target=[0, 4], convention="grad-cam-lua")
    assert lua.shape == (2, 3, 10, 12) and lua.dtype == np.float32


@pytest.mark.parametrize("name", ["pytorch-grad-cam", "torchcam", "tf-keras-vis"])
def test_guided_unavailable_names_the_convention(net, x, name):
    with pytest.raises(ValueError, match=name):
        C.guided_grad_cam(net, x, convention=name)


def test_bad_arguments(net, x):
    with pytest.raises(ValueError, match="convention must be one of"):
        C.grad_cam(net, x, convention="keras")
    with pytest.raises(TypeError, match="no option relu_attributions"):
        C.grad_cam(net, x, convention="torchcam", relu_attributions=True)
    with pytest.raises(TypeError, match="no option"):
        C.guided_grad_cam(net, x, convention="captum", relu_attributions=False)
    with pytest.raises(ValueError, match="target='all'"):
        C.grad_cam(net, x, target="all", convention="captum")
    with pytest.raises(ValueError, match="input_size must be None"):
        C.grad_cam(net, x, convention="torchcam", input_size=(10, 12))
    with pytest.raises(ValueError, match="score"):
        C.grad_cam(net, x, convention="captum", score="probability")
