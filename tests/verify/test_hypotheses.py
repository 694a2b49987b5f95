"""npcam.verify.hypotheses: every named bug function on a constructed case whose right
answer is known independently (typed-in numbers or a naive loop), a few properties that
are mathematical facts, and the consistency of the ``Setup`` / ``Bug`` table."""

from __future__ import annotations

import dataclasses
import string

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from npcam.verify import hypotheses as H
from npcam.verify.diagnose import QUANTITIES

RNG_SEED = 20240611


def _rng(offset: int = 0) -> np.random.Generator:
    return np.random.default_rng(RNG_SEED + offset)


def _close(a, b, rel=1e-12):
    """a equals b within ``rel`` of b's scale (float64 identities: 1e-12)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = max(float(np.abs(b).max()) if b.size else 0.0, np.finfo(np.float64).tiny)
    err = float(np.abs(a - b).max()) / scale if a.size else 0.0
    assert err <= rel, err


_finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


def _maps4(max_side: int = 4):
    """(N, K, h, w) float64 arrays of moderate values."""
    shape = st.tuples(*(st.integers(1, max_side) for _ in range(4)))
    return hnp.arrays(np.float64, shape, elements=_finite)


def _maps3(max_side: int = 5):
    shape = st.tuples(st.integers(1, 3), st.integers(1, max_side), st.integers(1, max_side))
    return hnp.arrays(np.float64, shape, elements=_finite)


# ----------------------------------------------------------------- the correct steps
def test_relu_is_max_with_zero():
    """relu(m) = max(m, 0) elementwise: typed-in values, −0.0 and 0 map to 0."""
    m = np.array([[[-2.0, -0.0, 0.0], [0.5, 3.0, -1e-300]]])
    np.testing.assert_array_equal(H.relu(m), [[[0.0, 0.0, 0.0], [0.5, 3.0, 0.0]]])


def test_alpha_mean_is_naive_average():
    """alpha_mean(G)[n, k] = (1/(h·w)) Σ_ij G[n, k, i, j], checked against a loop."""
    g = _rng().standard_normal((2, 3, 4, 5))
    want = np.zeros((2, 3))
    for n in range(2):
        for k in range(3):
            total = 0.0
            for i in range(4):
                for j in range(5):
                    total += g[n, k, i, j]
            want[n, k] = total / 20
    _close(H.alpha_mean(g), want)


def test_minmax_typed_in():
    """minmax([[1, 3], [5, 9]]) = [[0, .25], [.5, 1]] per map; a constant map gives 0
    (no NaN, no RuntimeWarning)."""
    u = np.array([[[1.0, 3.0], [5.0, 9.0]], [[4.0, 4.0], [4.0, 4.0]]])
    out = H.minmax(u)
    np.testing.assert_array_equal(out[0], [[0.0, 0.25], [0.5, 1.0]])
    np.testing.assert_array_equal(out[1], np.zeros((2, 2)))


# ------------------------------------------------------------------- α and gradients
def test_alpha_sum_typed_in():
    """alpha_sum sums G over the h×w positions: a 2×2 map [[1, 2], [3, 4]] gives 10, and
    [[−1, 1], [0.5, 0]] gives 0.5."""
    g = np.array([[[[1.0, 2.0], [3.0, 4.0]], [[-1.0, 1.0], [0.5, 0.0]]]])
    np.testing.assert_array_equal(H.alpha_sum(g), [[10.0, 0.5]])


@given(_maps4())
def test_alpha_sum_is_z_times_alpha_mean(g):
    """Σ_ij G = Z · (1/Z) Σ_ij G with Z = h·w: alpha_sum = Z × alpha_mean, to 1e-12 of
    Z·max|G| (the scale of the sums)."""
    z = g.shape[-2] * g.shape[-1]
    scale = z * max(float(np.abs(g).max()), 1e-300)
    err = float(np.abs(H.alpha_sum(g) - z * H.alpha_mean(g)).max()) / scale
    assert err <= 1e-12


def test_relu_on_gradients_and_alpha_typed_in():
    """relu_on_gradients and relu_on_alpha clip negative entries to 0 and keep the rest."""
    g = np.array([[[[-1.0, 2.0], [0.0, -3.0]]]])
    np.testing.assert_array_equal(H.relu_on_gradients(g), [[[[0.0, 2.0], [0.0, 0.0]]]])
    alpha = np.array([[-0.5, 0.25, 0.0], [3.0, -2.0, 1.0]])
    np.testing.assert_array_equal(H.relu_on_alpha(alpha), [[0.0, 0.25, 0.0], [3.0, 0.0, 1.0]])


def test_relu_on_gradients_differs_from_relu_on_alpha_when_gradients_change_sign():
    """mean(max(G, 0)) ≠ max(mean G, 0) when G takes both signs in one channel: G = [[1,
    −3]] gives 0.5 and 0 (so the two bugs are distinguishable in general)."""
    g = np.array([[[[1.0, -3.0]]]])
    assert H.alpha_mean(H.relu_on_gradients(g))[0, 0] == 0.5
    assert H.relu_on_alpha(H.alpha_mean(g))[0, 0] == 0.0


def test_batch_mean_alpha_typed_in():
    """batch_mean_alpha gives every image the column means of α over the batch: rows
    [1, 2], [3, −6] -> [2, −2] twice; the result is a writable (N, K) array, not a view of
    one row."""
    alpha = np.array([[1.0, 2.0], [3.0, -6.0]])
    out = H.batch_mean_alpha(alpha)
    np.testing.assert_array_equal(out, [[2.0, -2.0], [2.0, -2.0]])
    assert out.shape == alpha.shape and out.flags.writeable
    out[0, 0] = 99.0
    assert out[1, 0] == 2.0 and alpha[0, 0] == 1.0  # no shared memory with the rows or the input


def test_channels_last_reads_flat_memory():
    """channels_last(a)[n, k, i, j] = flat(a)[((n·h + i)·w + j)·K + k], the C-order memory
    of the NCHW array read as (N, h, w, K): checked against an explicit loop on a
    non-square map with K ≠ h, w."""
    n_, k_, h_, w_ = 2, 3, 4, 5
    a = np.arange(n_ * k_ * h_ * w_, dtype=np.float64).reshape(n_, k_, h_, w_) * 0.5 - 7.0
    flat = a.ravel()
    want = np.empty_like(a)
    for n in range(n_):
        for k in range(k_):
            for i in range(h_):
                for j in range(w_):
                    want[n, k, i, j] = flat[((n * h_ + i) * w_ + j) * k_ + k]
    out = H.channels_last(a)
    assert out.shape == a.shape
    np.testing.assert_array_equal(out, want)
    assert not np.array_equal(out, a)  # a real permutation of the values
    # the logical (C-order) memory is what is read, also for a Fortran-ordered array
    np.testing.assert_array_equal(H.channels_last(np.asfortranarray(a)), want)


@given(_maps4())
def test_channels_last_permuted_to_nhwc_is_the_original_memory(a):
    """Reading NCHW memory as NHWC and going back to NCHW: the result, laid out as NHWC
    (transpose (0, 2, 3, 1)), has exactly the original flat memory."""
    out = H.channels_last(a)
    assert out.shape == a.shape
    np.testing.assert_array_equal(np.transpose(out, (0, 2, 3, 1)).ravel(), a.ravel())


@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.data())
def test_channels_last_is_identity_for_one_channel_or_one_position(n, h, w, data):
    """With K = 1, or with h = w = 1, the NCHW and NHWC memory orders coincide: the bug
    changes nothing (it can only show with K > 1 and more than one position)."""
    one_k = data.draw(hnp.arrays(np.float64, (n, 1, h, w), elements=_finite))
    np.testing.assert_array_equal(H.channels_last(one_k), one_k)
    one_pos = data.draw(hnp.arrays(np.float64, (n, h + 1, 1, 1), elements=_finite))
    np.testing.assert_array_equal(H.channels_last(one_pos), one_pos)


# ------------------------------------------------------------------------- the maps
def test_cam_over_z_typed_in():
    """cam_over_z divides by Z = h·w: a 2×3 map of 6s becomes 1s."""
    m = np.full((1, 2, 3), 6.0)
    np.testing.assert_array_equal(H.cam_over_z(m), np.ones((1, 2, 3)))


def test_no_relu_keeps_the_sign():
    """no_relu returns the signed map unchanged (negative values survive)."""
    m = np.array([[[-1.5, 2.0], [0.0, -3.0]]])
    np.testing.assert_array_equal(H.no_relu(m), m)
    assert H.no_relu(m).min() == -3.0


def test_transposed_map_loop():
    """transposed_map(m)[n, j, i] = m[n, i, j]: (N, h, w) -> (N, w, h), a naive loop on a
    non-square map."""
    m = _rng(1).standard_normal((2, 3, 5))
    out = H.transposed_map(m)
    assert out.shape == (2, 5, 3)
    for n in range(2):
        for i in range(3):
            for j in range(5):
                assert out[n, j, i] == m[n, i, j]


@given(_maps3())
def test_transposed_map_is_an_involution(m):
    """Swapping h and w twice is the identity."""
    np.testing.assert_array_equal(H.transposed_map(H.transposed_map(m)), m)


# ------------------------------------------------------------------------ resizing
# 2×2 [[0, 1], [2, 3]] -> 4×4, half-pixel bilinear: along each axis the sources are at
# (d + 0.5)/2 − 0.5 = −0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to the last pixel),
# so one axis of [a, b] gives [a, .75a + .25b, .25a + .75b, b], and the map is 2·y + x.
_SMALL = np.array([[[0.0, 1.0], [2.0, 3.0]]])
_BILINEAR_4x4 = np.array([[
    [0.0, 0.25, 0.75, 1.0],
    [0.5, 0.75, 1.25, 1.5],
    [1.5, 1.75, 2.25, 2.5],
    [2.0, 2.25, 2.75, 3.0],
]])


def test_resize_bilinear_hand_case():
    """bilinear (half-pixel centres) 2×2 -> 4×4 equals the hand-computed values."""
    out = H.resize(_SMALL, (4, 4), "bilinear")
    np.testing.assert_allclose(out, _BILINEAR_4x4, rtol=0, atol=1e-15)


def test_resize_nearest_hand_case():
    """nearest (torch's legacy rule src = floor(dst·in/out)): rows 2 -> 3 read [0, 0, 1]
    (floor(0), floor(2/3), floor(4/3)), columns 3 -> 5 read [0, 0, 1, 1, 2]; a rounding
    rule would read row 1 for the middle row instead."""
    m = np.arange(6.0).reshape(1, 2, 3)  # [[0, 1, 2], [3, 4, 5]]
    want = np.array([[
        [0.0, 0.0, 1.0, 1.0, 2.0],
        [0.0, 0.0, 1.0, 1.0, 2.0],
        [3.0, 3.0, 4.0, 4.0, 5.0],
    ]])
    np.testing.assert_array_equal(H.resize(m, (3, 5), "nearest"), want)


def test_resize_align_corners_hand_case():
    """align-corners bilinear 3×3 -> 5×5: sources at d·(3−1)/(5−1) = d/2, so every
    other output is an input pixel and the rest are midpoints. For m = [[0..8]] (row-major)
    the output is 1.5·y + 0.5·x."""
    m = np.arange(9.0).reshape(1, 3, 3)
    y, x = np.meshgrid(np.arange(5.0), np.arange(5.0), indexing="ij")
    want = (1.5 * y + 0.5 * x)[None]
    np.testing.assert_allclose(H.resize(m, (5, 5), "align-corners"), want, rtol=0, atol=1e-15)
    # the corners are the input's corners (unlike half-pixel, which clamps instead)
    out = H.resize(_SMALL, (3, 3), "align-corners")
    np.testing.assert_allclose(out, [[[0.0, 0.5, 1.0], [1.0, 1.5, 2.0], [2.0, 2.5, 3.0]]], rtol=0, atol=1e-15)


def test_resize_opencv_is_float32_bilinear():
    """opencv (cv2.resize INTER_LINEAR on float32) uses half-pixel centres too: on the
    dyadic 2×2 case it gives the exact hand values, and on random maps in [0, 1] enlarged
    to non-multiple sizes it is within 1e-6 of bilinear; its dtype is float32."""
    out = H.resize(_SMALL, (4, 4), "opencv")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, _BILINEAR_4x4.astype(np.float32))
    m = _rng(2).uniform(size=(3, 5, 7))
    for size in ((23, 31), (5, 9), (40, 7), (64, 64)):
        got = H.resize(m, size, "opencv")
        assert got.dtype == np.float32 and got.shape == (3, *size)
        ref = H.resize(m, size, "bilinear")
        assert float(np.abs(got.astype(np.float64) - ref).max()) <= 1e-6, size


def test_resize_rules_differ_and_unknown_rule():
    """The four rules give four different arrays on a generic map (each bug can show), and
    an unknown rule is a ValueError naming the rules."""
    m = _rng(3).uniform(size=(1, 3, 4))
    outs = {rule: H.resize(m, (7, 9), rule).astype(np.float64)
            for rule in ("bilinear", "nearest", "align-corners")}
    assert not np.allclose(outs["bilinear"], outs["nearest"], rtol=0, atol=1e-3)
    assert not np.allclose(outs["bilinear"], outs["align-corners"], rtol=0, atol=1e-3)
    assert not np.allclose(outs["nearest"], outs["align-corners"], rtol=0, atol=1e-3)
    with pytest.raises(ValueError, match="bilinear"):
        H.resize(m, (7, 9), "bicubic")


# ---------------------------------------------------------------------- normalising
def test_normalize_before_resize_hand_case():
    """A 3×3 map with a single peak (value p at the centre, b elsewhere) normalises to the
    indicator of the centre; half-pixel bilinear to 4×4 samples it at sources −0.125
    (clamped), .625, 1.375, 2.125, i.e. weights [0, .625, .625, 0] per axis: the result is
    their outer product, whose max .390625 < 1. Normalising after the resize gives max 1
    instead (bilinear interpolation does not keep the peak)."""
    m = np.full((1, 3, 3), 2.0)
    m[0, 1, 1] = 7.0
    axis = np.array([0.0, 0.625, 0.625, 0.0])
    want = np.outer(axis, axis)[None]
    out = H.normalize_before_resize(m, (4, 4))
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-15)
    assert out.max() == pytest.approx(0.390625, abs=1e-15)
    assert H.minmax(H.resize(m, (4, 4), "bilinear")).max() == 1.0
    # the rule argument is passed on: nearest 3 -> 4 reads rows [0, 0, 1, 2]
    near = H.normalize_before_resize(m, (4, 4), "nearest")
    ind = np.array([0.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(near, np.outer(ind, ind)[None])


def test_normalize_without_min_typed_in():
    """u / max u per map: [[1, 2], [3, 4]] -> [[.25, .5], [.75, 1]]; a signed map keeps
    its negative values ([−1, 2] -> [−.5, 1]); an all-zero map gives zeros without a
    RuntimeWarning."""
    u = np.array([[[1.0, 2.0], [3.0, 4.0]], [[-1.0, 2.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    out = H.normalize_without_min(u)
    np.testing.assert_array_equal(out[0], [[0.25, 0.5], [0.75, 1.0]])
    np.testing.assert_array_equal(out[1], [[-0.5, 1.0], [0.0, 0.0]])
    np.testing.assert_array_equal(out[2], np.zeros((2, 2)))
    assert out.dtype == np.float64


def test_normalize_with_epsilon_typed_in():
    """(u − min)/(max − min + ε) on [[1, 2], [3, 5]] with ε = 1 gives [0, 1/5, 2/5, 4/5];
    without the min, u/(max + ε) gives [1/6, 2/6, 3/6, 5/6]; a constant map gives 0."""
    u = np.array([[[1.0, 2.0], [3.0, 5.0]]])
    _close(H.normalize_with_epsilon(u, 1.0), [[[0.0, 0.2], [0.4, 0.8]]])
    _close(H.normalize_with_epsilon(u, 1.0, subtract_min=False), [[[1 / 6, 2 / 6], [3 / 6, 5 / 6]]])
    constant = H.normalize_with_epsilon(np.full((1, 2, 2), 3.0), 1e-7)
    np.testing.assert_array_equal(constant, np.zeros((1, 2, 2)))


@given(_maps3(), st.sampled_from(H.EPSILONS))
def test_normalize_with_epsilon_is_minmax_scaled(u, eps):
    """(u − lo)/(span + ε) = minmax(u) · span/(span + ε) for every map with span > 0, to
    1e-12 (the result's values are in [0, 1])."""
    lo = u.min(axis=(-2, -1), keepdims=True)
    span = u.max(axis=(-2, -1), keepdims=True) - lo
    out = H.normalize_with_epsilon(u, eps)
    want = H.minmax(u) * (span / (span + eps))
    assert float(np.abs(out - want).max()) <= 1e-12
    assert out.max() <= 1.0 and out.min() >= 0.0


@given(_maps3())
def test_normalize_without_min_equals_minmax_when_min_is_zero(u):
    """For a map ≥ 0 that attains 0 (a ReLU'd map with a zero), u/max = (u − 0)/(max − 0):
    both normalisations agree (1e-15, division rounding); so the bug needs a map whose
    minimum is positive to show."""
    u = np.abs(u)
    u[..., 0, 0] = 0.0
    _close(H.normalize_without_min(u), H.minmax(u), rel=1e-15)


# -------------------------------------------------------------------------- targets
def test_target_first_argmax_typed_in():
    """Every image gets image 0's argmax (class 1 here), keeping the target's shape and
    dtype."""
    logits = np.array([[0.0, 3.0, 1.0], [5.0, 0.0, 0.0], [0.0, 0.0, 9.0]])
    target = np.array([1, 0, 2])
    out = H.target_first_argmax(target, logits)
    np.testing.assert_array_equal(out, [1, 1, 1])
    assert out.dtype == target.dtype


def test_target_off_by_one_wraps():
    """c − 1 wraps 0 to the last class (a Python/torch negative index), c + 1 wraps the
    last class to 0: with 5 classes, [0, 2, 4] -> [4, 1, 3] and [1, 3, 0]."""
    t = np.array([0, 2, 4])
    np.testing.assert_array_equal(H.target_off_by_one(t, 5, -1), [4, 1, 3])
    np.testing.assert_array_equal(H.target_off_by_one(t, 5, 1), [1, 3, 0])
    # the wrap is what a negative index means: class −1 of a row is its last entry
    row = np.arange(5) * 10
    assert row[t[0] - 1] == row[H.target_off_by_one(t, 5, -1)[0]]


@given(st.integers(2, 50), st.data())
def test_target_off_by_one_round_trip(classes, data):
    """(c + 1) − 1 ≡ c (mod C): stepping forward then back returns every class, and both
    steps stay in [0, C)."""
    t = np.array(data.draw(st.lists(st.integers(0, classes - 1), min_size=1, max_size=8)))
    up = H.target_off_by_one(t, classes, 1)
    assert ((0 <= up) & (up < classes)).all() and (up != t).all()
    np.testing.assert_array_equal(H.target_off_by_one(up, classes, -1), t)


# ----------------------------------------------------------------------- cotangents
def test_sum_of_logits_cotangent_typed_in():
    """y = Σ_c z_c per row and ∂y/∂z = 1 everywhere."""
    logits = np.array([[1.0, 2.0], [3.0, -4.0]])
    y, cot = H.sum_of_logits_cotangent(logits)
    np.testing.assert_array_equal(y, [3.0, -1.0])
    np.testing.assert_array_equal(cot, np.ones((2, 2)))


def test_prob_then_log_cotangent_equals_log_softmax_where_finite():
    """log(softmax(z)_c) in two steps: y = z_c − log Σ exp z and the cotangent e_c − p
    (p = softmax z, computed here with the exponentials written out) where p_c does not
    underflow; the rows of e_c − p sum to 0."""
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [10.0, -5.0, 2.5]])
    target = np.array([0, 1, 2])
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    lse = np.log(np.exp(logits).sum(axis=1))
    want_y = logits[np.arange(3), target] - lse
    want_cot = -p
    want_cot[np.arange(3), target] += 1.0
    y, cot = H.prob_then_log_cotangent(logits, target)
    _close(y, want_y)
    _close(cot, want_cot)
    assert float(np.abs(cot.sum(axis=1)).max()) <= 1e-15
    # the uniform row: p = 1/3 each, y = −log 3
    assert y[1] == pytest.approx(-np.log(3.0), rel=1e-15)


def test_prob_then_log_cotangent_underflow_gives_nan_row_and_minus_inf():
    """Logits [0, −1000] with target 1: p_1 = e^−1000 underflows to 0, so y = log 0 = −inf
    and the cotangent (1/p_c)·p_c(e_c − p) = inf·0 is NaN in the whole row, as in torch
    (no RuntimeWarning escapes). Target 0 of the same logits is fine: cotangent [0, 0]."""
    logits = np.array([[0.0, -1000.0], [0.0, -1000.0]])
    y, cot = H.prob_then_log_cotangent(logits, np.array([1, 0]))
    assert y[0] == -np.inf
    assert np.isnan(cot[0]).all()
    assert y[1] == 0.0
    np.testing.assert_array_equal(cot[1], [0.0, 0.0])


# ------------------------------------------------------------------ counterfactuals
def test_counterfactual_map_and_sign_typed_in():
    """counterfactual_map = ReLU(−M), counterfactual_sign = ReLU(M) (the Grad-CAM map)."""
    raw = np.array([[[-2.0, 1.0], [0.0, 3.0]]])
    np.testing.assert_array_equal(H.counterfactual_map(raw), [[[2.0, 0.0], [0.0, 0.0]]])
    np.testing.assert_array_equal(H.counterfactual_sign(raw), [[[0.0, 1.0], [0.0, 3.0]]])


@given(_maps3())
def test_counterfactual_sign_minus_map_is_raw(raw):
    """ReLU(M) − ReLU(−M) = M exactly (one of the two terms is 0 at every pixel)."""
    np.testing.assert_array_equal(H.counterfactual_sign(raw) - H.counterfactual_map(raw), raw)


def test_counterfactual_relu_alpha_loop():
    """ReLU(Σ_k max(−α_k, 0) A^k) against a naive loop, with α of both signs; it differs
    from the correct ReLU(−Σ_k α_k A^k) because the channels of positive α are dropped."""
    rng = _rng(4)
    alpha = np.array([[0.7, -0.4, -1.1], [-0.2, 0.3, 0.9]])
    a = rng.standard_normal((2, 3, 3, 4))
    want = np.zeros((2, 3, 4))
    for n in range(2):
        for i in range(3):
            for j in range(4):
                s = 0.0
                for k in range(3):
                    s += max(-alpha[n, k], 0.0) * a[n, k, i, j]
                want[n, i, j] = max(s, 0.0)
    out = H.counterfactual_relu_alpha(alpha, a)
    _close(out, want)
    correct = H.counterfactual_map(np.einsum("nk,nkhw->nhw", alpha, a))
    assert float(np.abs(out - correct).max()) > 1e-3


@given(st.data())
def test_counterfactual_relu_alpha_equals_correct_when_alpha_nonpositive(data):
    """When every α_k ≤ 0, max(−α_k, 0) = −α_k: the bug gives the correct counterfactual
    ReLU(−Σ α_k A^k) (to 1e-12 of Σ|α||A|)."""
    n, k, h, w = (data.draw(st.integers(1, 3)) for _ in range(4))
    a = data.draw(hnp.arrays(np.float64, (n, k, h, w), elements=_finite))
    alpha = -np.abs(data.draw(hnp.arrays(np.float64, (n, k), elements=_finite)))
    out = H.counterfactual_relu_alpha(alpha, a)
    want = H.counterfactual_map(np.einsum("nk,nkhw->nhw", alpha, a))
    scale = max(float(np.einsum("nk,nkhw->nhw", np.abs(alpha), np.abs(a)).max()), 1e-300)
    assert float(np.abs(out - want).max()) <= 1e-12 * scale


# ------------------------------------------------------------ the Setup / Bug table
_FORWARD = {"score", "target", "layer", "grad_at", "inplace", "train", "relu_rule"}
_SETUP_FIELDS = {f.name for f in dataclasses.fields(H.Setup)}
_DESCRIPTION_FIELDS = {"Z", "h", "w", "layer", "other", "classes"}


def test_setup_default_is_npcam_and_frozen():
    """The default Setup is npcam's computation (nothing changed) and is immutable."""
    base = H.Setup()
    assert base.changed() == set()
    assert (base.score, base.alpha, base.relu, base.resize, base.normalize) == (
        "logit", "mean", True, "bilinear", "minmax")
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.score = "softmax"  # type: ignore[misc]


def test_order_covers_every_bug_and_the_generated_names():
    """ORDER has no duplicates; every Bug name is in it; the names in ORDER without a Bug
    are exactly the generated hypotheses (epsilon:<v>, float32, convention:<name>)."""
    assert len(set(H.ORDER)) == len(H.ORDER)
    names = {bug.name for bug in H.BUGS}
    assert names <= set(H.ORDER)
    assert set(H.ORDER) - names == {"epsilon", "float32", "convention"}


def test_bugs_are_listed_in_table_order():
    """BUGS follows ORDER (so a combination a+b is written in the table's order)."""
    positions = [H.ORDER.index(bug.name) for bug in H.BUGS]
    assert positions == sorted(positions)


@pytest.mark.parametrize("bug", H.BUGS, ids=lambda b: f"{b.name}:{dict(b.changes)}")
def test_bug_apply_changes_exactly_its_fields(bug):
    """Each bug changes at least one Setup field; apply() sets those fields to the bug's
    values and leaves every other field alone, on the default setup and on a setup that
    already differs elsewhere; the fields that change decide whether a new backward pass
    is needed (forward_key); its quantities are diagnose's and its description uses only
    the fields the diagnosis fills in."""
    changes = dict(bug.changes)
    assert changes and set(changes) <= _SETUP_FIELDS
    assert bug.fields == frozenset(changes)
    base = H.Setup()
    applied = bug.apply(base)
    assert applied.changed() == set(changes)
    for f in _SETUP_FIELDS:
        want = changes[f] if f in changes else getattr(base, f)
        assert getattr(applied, f) == want, f
    assert not {"float32", "epsilon"} & set(changes)  # generated by the diagnosis, not in BUGS
    other = H.Setup(float32=True, epsilon=1e-7)
    moved = bug.apply(other)
    assert {f for f in _SETUP_FIELDS if getattr(moved, f) != getattr(other, f)} == set(changes)
    assert (applied.forward_key() != base.forward_key()) == bool(set(changes) & _FORWARD)
    assert bug.quantities and bug.quantities <= set(QUANTITIES)
    used = {f for _, f, _, _ in string.Formatter().parse(bug.description) if f is not None}
    assert used <= _DESCRIPTION_FIELDS, used


def test_bugs_are_distinct_settings():
    """No two bugs change the setup in the same way (two entries named target-off-by-one
    are c − 1 and c + 1)."""
    changes = [bug.changes for bug in H.BUGS]
    assert len(set(changes)) == len(changes)
    off = {dict(b.changes)["target"] for b in H.BUGS if b.name == "target-off-by-one"}
    assert off == {"minus-one", "plus-one"}


def test_epsilons_include_the_libraries_values():
    """EPSILONS are positive, strictly decreasing and hold the ε of pytorch-grad-cam
    (1e-7) and torchcam (1e-8) as npcam.conventions records them."""
    from npcam import conventions

    eps = np.array(H.EPSILONS)
    assert (eps > 0).all() and (np.diff(eps) < 0).all()
    assert conventions.PYTORCH_GRAD_CAM_EPS in H.EPSILONS
    assert conventions.TORCHCAM_EPS in H.EPSILONS


def test_the_documentation_lists_every_hypothesis():
    """docs/diagnose.md names every hypothesis of the table (a new bug must be documented)."""
    from pathlib import Path

    from npcam.verify.hypotheses import ORDER

    text = (Path(__file__).resolve().parents[2] / "docs" / "diagnose.md").read_text(encoding="utf-8")
    for name in ORDER:
        assert f"`{name}" in text, name
