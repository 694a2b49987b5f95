r"""Pooling as torchvision's graphs need it — ``MaxPool2d`` with padding and ceil mode,
``AvgPool2d`` (padding, ``count_include_pad``, ceil mode), ``AdaptiveAvgPool2d`` in
general — and the other layers extended for them: ``Linear`` on N-D input and
``BatchNorm2d`` anywhere in a network (not only after a conv).

Forwards are checked against naive loops written here (sharing no code with npcam) and
hand cases; output sizes against torch's rule and its hand cases; backwards against
central differences (< 1e-8, h = 1e-6) and as transposes (dot-product test at
1e-12·‖J·u‖‖v‖); the conventions at the kinks (ties, padding) by hand.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npcam
from npcam.gradcheck import check_layer, numerical_gradient, relative_error
from npcam.nn import functional as F
from npcam.nn.layers import AdaptiveAvgPool2d, AvgPool2d

H = 1e-6
GRAD_TOL = 1e-8
ADJ_TOL = 1e-12
SEEDS = st.integers(0, 2**32 - 1)


def assert_adjoint(ju, v, u, jtv):
    """|⟨J·u, v⟩ − ⟨u, Jᵀ·v⟩| ≤ 1e-12·‖J·u‖‖v‖."""
    assert ju.shape == v.shape and u.shape == jtv.shape
    lhs, rhs = float(np.sum(ju * v)), float(np.sum(u * jtv))
    bound = ADJ_TOL * float(np.linalg.norm(ju)) * float(np.linalg.norm(v))
    assert abs(lhs - rhs) <= bound, f"<Ju,v>={lhs!r} <u,J^T v>={rhs!r} bound={bound:.3e}"


def distinct_values(rng, shape, spacing=0.1):
    """A permutation of equally spaced values: no ties anywhere, gaps >> h."""
    size = int(np.prod(shape))
    return (rng.permutation(size) - size / 2.0).reshape(shape) * spacing


# ------------------------------------------------------------------------------ oracles
def naive_window_starts(n, k, s, p, ceil_mode):
    """Window starts (in unpadded coordinates, so the first is −p) by enumeration: a window
    is kept if it fits inside the padded input; in ceil mode also a partial window, if it
    starts before the end of the input plus its left padding (padded start < n + p) and
    less than a whole stride after the last window that fits."""
    starts, o = [], 0
    while True:
        start = o * s  # padded coordinates
        fits = start + k <= n + 2 * p
        partial = ceil_mode and start < n + p and start + k < n + 2 * p + s
        if not (fits or partial):
            return starts
        starts.append(start - p)
        o += 1


def naive_max_pool(x, kernel, stride, padding, ceil_mode):
    """The max over the real cells of each window (padding is −inf: never the max), and
    the flat in-plane index of the first maximum in the window's row-major order."""
    n, c, hh, ww = x.shape
    rows = naive_window_starts(hh, kernel[0], stride[0], padding[0], ceil_mode)
    cols = naive_window_starts(ww, kernel[1], stride[1], padding[1], ceil_mode)
    out = np.empty((n, c, len(rows), len(cols)))
    arg = np.empty(out.shape, dtype=np.int64)
    for a in range(n):
        for ch in range(c):
            for r, r0 in enumerate(rows):
                for q, q0 in enumerate(cols):
                    best, where = -math.inf, -1
                    for i in range(kernel[0]):
                        for j in range(kernel[1]):
                            y, z = r0 + i, q0 + j
                            if 0 <= y < hh and 0 <= z < ww and x[a, ch, y, z] > best:
                                best, where = x[a, ch, y, z], y * ww + z
                    out[a, ch, r, q], arg[a, ch, r, q] = best, where
    return out, arg


def naive_avg_pool(x, kernel, stride, padding, ceil_mode, count_include_pad):
    """Σ of the real cells of each window / the divisor: the window's cells inside the
    padded input [−p, n + p) if count_include_pad, else its real cells."""
    n, c, hh, ww = x.shape
    rows = naive_window_starts(hh, kernel[0], stride[0], padding[0], ceil_mode)
    cols = naive_window_starts(ww, kernel[1], stride[1], padding[1], ceil_mode)
    out = np.empty((n, c, len(rows), len(cols)))
    for a in range(n):
        for ch in range(c):
            for r, r0 in enumerate(rows):
                for q, q0 in enumerate(cols):
                    total, count = 0.0, 0
                    for i in range(kernel[0]):
                        for j in range(kernel[1]):
                            y, z = r0 + i, q0 + j
                            real = 0 <= y < hh and 0 <= z < ww
                            padded = -padding[0] <= y < hh + padding[0] and -padding[1] <= z < ww + padding[1]
                            total += x[a, ch, y, z] if real else 0.0
                            count += int(padded if count_include_pad else real)
                    out[a, ch, r, q] = total / count
    return out


def naive_adaptive_avg_pool(x, oh, ow):
    """Mean over rows [floor(i·H/oh), ceil((i+1)·H/oh)) × the same for columns, in floats."""
    n, c, hh, ww = x.shape
    out = np.empty((n, c, oh, ow))
    for i in range(oh):
        r0, r1 = math.floor(i * hh / oh), math.ceil((i + 1) * hh / oh)
        for j in range(ow):
            q0, q1 = math.floor(j * ww / ow), math.ceil((j + 1) * ww / ow)
            out[:, :, i, j] = x[:, :, r0:r1, q0:q1].mean(axis=(2, 3))
    return out


# ---------------------------------------------------------------------------- strategies
@st.composite
def pool_geometry(draw):
    """Kernel, stride (below, at and above the kernel: overlapping, tiling, skipping),
    padding up to kernel // 2 (torch's bound), ceil or floor, odd/even/non-square maps at
    least as large as kernel − 2·padding."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    hh = draw(st.integers(max(1, kh - 2 * ph), kh + 6))
    ww = draw(st.integers(max(1, kw - 2 * pw), kw + 6))
    return dict(shape=(draw(st.integers(1, 2)), draw(st.integers(1, 3)), hh, ww), k=(kh, kw), s=(sh, sw),
                p=(ph, pw), ceil=draw(st.booleans()), include=draw(st.booleans()), seed=draw(SEEDS))


# ================================================================== output-size rule
@given(st.integers(1, 40), st.integers(1, 5), st.integers(1, 4), st.integers(0, 2), st.booleans())
def test_pool_output_size_is_the_enumerated_window_count(n, k, s, p, ceil_mode):
    """pool_output_size(n, k, s, p, ceil) = the number of windows the enumeration keeps,
    whenever the padded input holds a window and p ≤ k // 2 (torch's domain)."""
    if p > k // 2 or n + 2 * p < k:
        return
    assert F.pool_output_size(n, k, s, p, ceil_mode) == len(naive_window_starts(n, k, s, p, ceil_mode))


@pytest.mark.parametrize(
    "n, k, s, p, floor_size, ceil_size",
    [
        (5, 2, 2, 1, 3, 3),  # ceil(5/2)+1 = 4, but window 3 would start at 6 = n + p
        (112, 3, 2, 0, 55, 56),  # GoogLeNet's ceil-mode pools at 224 px
        (56, 3, 2, 0, 27, 28),
        (28, 3, 2, 0, 13, 14),
        (112, 3, 2, 1, 56, 57),  # ResNet's stem pool (floor); ceil would keep a partial 57th
        (7, 3, 1, 1, 7, 7),  # GoogLeNet's 3×3/s1/p1 branch pool
        (6, 3, 2, 1, 3, 4),  # ceil: one partial window, kept (it starts at 5 < n + p = 7)
    ],
)
def test_pool_output_size_hand_cases(n, k, s, p, floor_size, ceil_size):
    """torch's rule: floor((n + 2p − k)/s) + 1, in ceil mode ceil(...) + 1 minus one if the
    last window would start at or beyond n + p."""
    assert F.pool_output_size(n, k, s, p, False) == floor_size
    assert F.pool_output_size(n, k, s, p, True) == ceil_size
    assert npcam.MaxPool2d(k, s, p, ceil_mode=True).output_size(n, n) == (ceil_size, ceil_size)


# ============================================================================ max-pool
@given(pool_geometry())
def test_max_pool_matches_naive_loop_with_ties(g):
    """With padding and ceil mode, out is the max of the window's real cells and the
    cached argmax the flat index of its first maximum in row-major order — exactly, on
    inputs full of ties (values drawn from {−2, …, 2})."""
    rng = np.random.default_rng(g["seed"])
    x = rng.integers(-2, 3, g["shape"]).astype(np.float64)
    out, cache = F.max_pool2d_forward(x, g["k"], g["s"], g["p"], g["ceil"])
    ref, arg = naive_max_pool(x, g["k"], g["s"], g["p"], g["ceil"])
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(cache.argmax, arg)


@given(pool_geometry())
def test_max_pool_layer_gradcheck(g):
    """Away from ties the max is the identity on its winner: MaxPool2d.vjp (padding, ceil
    mode, overlapping windows that share winners) matches central differences."""
    rng = np.random.default_rng(g["seed"])
    x = distinct_values(rng, g["shape"])
    errors = check_layer(npcam.MaxPool2d(g["k"], g["s"], g["p"], g["ceil"]), x, eps=H, rng=1)
    assert errors["x"] < GRAD_TOL, errors


@given(pool_geometry())
def test_max_pool_adjoint(g):
    """At fixed argmax, J·u reads u at each window's winner; max_pool2d_backward is Jᵀ:
    ⟨J·u, v⟩ = ⟨u, Jᵀ·v⟩ (DESIGN.md's dot-product test for max-pool)."""
    rng = np.random.default_rng(g["seed"])
    _, cache = F.max_pool2d_forward(rng.standard_normal(g["shape"]), g["k"], g["s"], g["p"], g["ceil"])
    n, c, hh, ww = g["shape"]
    u = rng.standard_normal(g["shape"])
    ju = np.take_along_axis(u.reshape(n, c, hh * ww), cache.argmax.reshape(n, c, -1), axis=2)
    ju = ju.reshape(cache.argmax.shape)
    v = rng.standard_normal(ju.shape)
    assert_adjoint(ju, v, u, F.max_pool2d_backward(v, cache))


def test_max_pool_all_minus_one_with_padding_picks_real_cells():
    """An all-(−1) 3×3 input, k3/s2/p1: every window's output is −1 (a real cell, never
    the −inf padding), the winner is the window's first *real* cell in row-major order
    ((0,0), (0,1), (1,0), (1,1)), and the whole gradient lands there: nothing is lost to
    padding (Σ dx = Σ dout)."""
    layer = npcam.MaxPool2d(3, 2, 1)
    out, cache = layer.run(-np.ones((1, 1, 3, 3)))
    np.testing.assert_array_equal(out, -np.ones((1, 1, 2, 2)))
    dx, _ = layer.vjp(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), cache)
    np.testing.assert_array_equal(dx[0, 0], [[1, 2, 0], [3, 4, 0], [0, 0, 0]])
    assert dx.sum() == 10.0


def test_max_pool_ceil_mode_correction_case_by_hand():
    """(n, k, s, p) = (5, 2, 2, 1) in ceil mode: 3 windows per axis, real rows {0}, {1, 2},
    {3, 4} — not the 4 of ceil(5/2) + 1 (a 4th would start in the right padding). On
    x = arange(25) the maxima are the bottom-right real cells of those windows. Overlap
    and accumulation: k3/s1 windows share winners, whose gradients add."""
    x = np.arange(25.0).reshape(1, 1, 5, 5)
    out, cache = F.max_pool2d_forward(x, (2, 2), (2, 2), (1, 1), True)
    np.testing.assert_array_equal(out[0, 0], [[0, 2, 4], [10, 12, 14], [20, 22, 24]])
    dx = F.max_pool2d_backward(np.ones_like(out), cache)
    assert dx.sum() == 9 and set(np.flatnonzero(dx)) == {0, 2, 4, 10, 12, 14, 20, 22, 24}
    out, cache = F.max_pool2d_forward(np.arange(4.0).reshape(1, 1, 1, 4), (1, 3), (1, 1), (0, 1), False)
    np.testing.assert_array_equal(out, [[[[1, 2, 3, 3]]]])
    np.testing.assert_array_equal(F.max_pool2d_backward(np.ones_like(out), cache), [[[[0, 1, 1, 2]]]])


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: npcam.MaxPool2d(3, 2, padding=2), ValueError, "padding of MaxPool2d must be at most half"),
        (lambda: npcam.MaxPool2d((2, 3), padding=(2, 1)), ValueError, "padding"),
        (lambda: npcam.MaxPool2d(1, padding=1), ValueError, "padding"),
        (lambda: npcam.MaxPool2d(2, padding=-1), ValueError, "padding"),
        (lambda: npcam.MaxPool2d(2, ceil_mode=1), TypeError, "ceil_mode"),
        (lambda: npcam.MaxPool2d(2, stride=0), ValueError, "stride"),
        (lambda: AvgPool2d(3, padding=2), ValueError, "padding of AvgPool2d must be at most half"),
        (lambda: AvgPool2d(2, ceil_mode="yes"), TypeError, "ceil_mode"),
        (lambda: AvgPool2d(2, count_include_pad=None), TypeError, "count_include_pad"),
        (lambda: AvgPool2d(0), ValueError, "kernel_size"),
        (lambda: AdaptiveAvgPool2d(0), ValueError, "output_size"),
        (lambda: AdaptiveAvgPool2d((2,)), ValueError, "output_size"),
        (lambda: AdaptiveAvgPool2d("3"), TypeError, "output_size"),
        (lambda: AdaptiveAvgPool2d((2, 2.0)), TypeError, "output_size"),
        (lambda: AdaptiveAvgPool2d(10**6), ValueError, "output_size must be at most"),
    ],
)
def test_bad_pool_arguments(make, exc, match):
    """Bad hyper-parameters are refused at construction with a sentence naming the
    argument; padding beyond kernel_size // 2 is torch's own refusal."""
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize(
    "layer, shape, label",
    [
        (npcam.MaxPool2d(3, padding=1), (1, 1, 1, 5), None),  # 1 + 2 >= 3: fits
        (npcam.MaxPool2d(3), (1, 1, 2, 5), "input of MaxPool2d"),
        (npcam.MaxPool2d(3, padding=1), (1, 1, 5), "input of MaxPool2d"),
        (AvgPool2d(4, padding=1), (1, 1, 1, 5), "input of AvgPool2d"),
        (AvgPool2d(2), (2, 3), "input of AvgPool2d"),
        (AdaptiveAvgPool2d(2), (2, 3, 4), "input of AdaptiveAvgPool2d"),
    ],
)
def test_pool_input_checks(layer, shape, label):
    """A 4-D input that holds at least one (padded) window passes; a smaller one or
    another rank is a ValueError naming the layer's input."""
    if label is None:
        assert layer.forward(np.ones(shape)).shape[:2] == shape[:2]
        return
    with pytest.raises(ValueError, match=label):
        layer.forward(np.ones(shape))


# ======================================================================== average pool
@given(pool_geometry())
def test_avg_pool_matches_naive_loop(g):
    """avg_pool2d_forward (padding, ceil mode, either divisor rule) equals the naive loop
    to 1e-14 of max|x| (one rounding per term of a sum of ≤ 16)."""
    rng = np.random.default_rng(g["seed"])
    x = rng.standard_normal(g["shape"])
    out, _ = F.avg_pool2d_forward(x, g["k"], g["s"], g["p"], g["ceil"], g["include"])
    ref = naive_avg_pool(x, g["k"], g["s"], g["p"], g["ceil"], g["include"])
    assert out.shape == ref.shape and out.dtype == np.float64
    assert np.max(np.abs(out - ref)) <= 1e-14 * np.max(np.abs(x))


@given(pool_geometry())
def test_avg_pool_layer_gradcheck(g):
    """AvgPool2d.vjp gives dout/divisor to every real cell of every window: it matches
    central differences (the operator is linear, so this holds everywhere)."""
    rng = np.random.default_rng(g["seed"])
    layer = AvgPool2d(g["k"], g["s"], g["p"], g["ceil"], g["include"])
    errors = check_layer(layer, rng.standard_normal(g["shape"]), eps=H, rng=2)
    assert errors["x"] < GRAD_TOL, errors


@given(pool_geometry())
def test_avg_pool_adjoint(g):
    """x ↦ avg_pool(x) is linear and avg_pool2d_backward is its transpose."""
    rng = np.random.default_rng(g["seed"])
    u = rng.standard_normal(g["shape"])
    ju, cache = F.avg_pool2d_forward(u, g["k"], g["s"], g["p"], g["ceil"], g["include"])
    v = rng.standard_normal(ju.shape)
    assert_adjoint(ju, v, u, F.avg_pool2d_backward(v, cache))


def test_avg_pool_padding_divisor_by_hand():
    """avg_pool2d(3, 1, 1) on a 4×4 map of ones: with count_include_pad the divisor is
    always 9, so the corner is 4/9, an edge 6/9, the inside 1; without, every output is 1.
    Backward of ones with the divisor 9: each cell gets 1/9 per window covering it
    (corner 4, edge 6, inside 9 windows)."""
    x = np.ones((1, 1, 4, 4))
    out, cache = F.avg_pool2d_forward(x, (3, 3), (1, 1), (1, 1), False, True)
    assert out[0, 0, 0, 0] == 4 / 9 and out[0, 0, 0, 1] == 6 / 9 and out[0, 0, 1, 1] == 1.0
    excl, _ = F.avg_pool2d_forward(x, (3, 3), (1, 1), (1, 1), False, False)
    np.testing.assert_array_equal(excl, np.ones((1, 1, 4, 4)))
    dx = F.avg_pool2d_backward(np.ones_like(out), cache)
    covering = np.array([[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]])
    np.testing.assert_allclose(dx[0, 0], covering / 9, rtol=1e-15)


def test_avg_pool_ceil_mode_divisor_by_hand():
    """x = [1, 2, 3, 4, 5, 6] (one row), kernel (1, 3), stride (1, 2), padding (0, 1),
    ceil mode: 4 windows, real cells [-1, 2), [1, 4), [3, 6), [5, 8). Sums 3, 9, 15, 6;
    divisors counting padding 3, 3, 3, 2 (the overhang beyond n + p is never counted);
    real cells only 2, 3, 3, 1."""
    x = np.arange(1.0, 7.0).reshape(1, 1, 1, 6)
    incl, _ = F.avg_pool2d_forward(x, (1, 3), (1, 2), (0, 1), True, True)
    excl, cache = F.avg_pool2d_forward(x, (1, 3), (1, 2), (0, 1), True, False)
    np.testing.assert_array_equal(incl, [[[[1.0, 3.0, 5.0, 3.0]]]])
    np.testing.assert_array_equal(excl, [[[[1.5, 3.0, 5.0, 6.0]]]])
    dx = F.avg_pool2d_backward(np.ones_like(excl), cache)
    np.testing.assert_allclose(dx, [[[[1 / 2, 1 / 2 + 1 / 3, 1 / 3, 2 / 3, 1 / 3, 1 / 3 + 1]]]], rtol=1e-15)


# ==================================================================== adaptive pooling
def test_adaptive_windows_by_hand():
    """5 → 3: windows (0, 2), (1, 4), (3, 5), overlapping at 1 and 3; 2 → 7: each output
    repeats one input, except the middle one which averages both; out == in: identity."""
    p = F.adaptive_pool_matrix(5, 3)
    np.testing.assert_array_equal(p, [[1 / 2, 1 / 2, 0, 0, 0], [0, 1 / 3, 1 / 3, 1 / 3, 0],
                                      [0, 0, 0, 1 / 2, 1 / 2]])
    p = F.adaptive_pool_matrix(2, 7)
    np.testing.assert_array_equal(p, [[1, 0]] * 3 + [[0.5, 0.5]] + [[0, 1]] * 3)
    np.testing.assert_array_equal(F.adaptive_pool_matrix(4, 4), np.eye(4))
    x = np.arange(1.0, 6.0).reshape(1, 1, 1, 5)
    out = AdaptiveAvgPool2d((1, 3)).forward(x)
    np.testing.assert_array_equal(out, [[[[1.5, 3.0, 4.5]]]])


@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9), st.integers(1, 9), SEEDS)
def test_adaptive_avg_pool_matches_naive_loop(h, w, oh, ow, seed):
    """AdaptiveAvgPool2d((oh, ow)) equals the naive window means (overlapping windows when
    oh does not divide H, repeated inputs when oh > H) to 1e-14 of max|x|; the output is
    4-D (N, C, oh, ow)."""
    x = np.random.default_rng(seed).standard_normal((2, 3, h, w))
    out = AdaptiveAvgPool2d((oh, ow)).forward(x)
    ref = naive_adaptive_avg_pool(x, oh, ow)
    assert out.shape == (2, 3, oh, ow)
    assert np.max(np.abs(out - ref)) <= 1e-14 * np.max(np.abs(x))


@given(st.integers(1, 7), st.integers(1, 7), st.integers(1, 7), st.integers(1, 7), SEEDS)
def test_adaptive_avg_pool_gradcheck_and_adjoint(h, w, oh, ow, seed):
    """The backward P_hᵀ · dout · P_w matches central differences and is the transpose
    of the forward (dot-product test)."""
    rng = np.random.default_rng(seed)
    layer = AdaptiveAvgPool2d((oh, ow))
    errors = check_layer(layer, rng.standard_normal((1, 2, h, w)), eps=H, rng=3)
    assert errors["x"] < GRAD_TOL, errors
    u = rng.standard_normal((2, 2, h, w))
    ju, cache = F.adaptive_avg_pool2d_forward(u, (oh, ow))
    v = rng.standard_normal(ju.shape)
    assert_adjoint(ju, v, u, F.adaptive_avg_pool2d_backward(v, cache))


def test_adaptive_output_size_forms():
    """An int means a square output; None keeps that axis's input size (torch); 1 is
    global average pooling, GlobalAvgPool2d's (N, K) up to the shape; out == in is the
    identity, exactly."""
    x = np.random.default_rng(8).standard_normal((2, 3, 5, 6))
    assert AdaptiveAvgPool2d(2).forward(x).shape == (2, 3, 2, 2)
    assert AdaptiveAvgPool2d((None, 4)).forward(x).shape == (2, 3, 5, 4)
    assert AdaptiveAvgPool2d([3, None]).forward(x).shape == (2, 3, 3, 6)
    np.testing.assert_array_equal(AdaptiveAvgPool2d((None, None)).forward(x), x)
    gap = AdaptiveAvgPool2d(1).forward(x)[:, :, 0, 0]
    assert np.max(np.abs(gap - npcam.GlobalAvgPool2d().forward(x))) <= 1e-15 * np.max(np.abs(x))
    np.testing.assert_array_equal(AdaptiveAvgPool2d((5, 6)).forward(x), x)


# ============================================================================ configs
@pytest.mark.parametrize(
    "layer, expected",
    [
        (npcam.MaxPool2d(3, 2, 1, ceil_mode=True),
         {"type": "MaxPool2d", "kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1],
          "ceil_mode": True}),
        (npcam.MaxPool2d((2, 3)),
         {"type": "MaxPool2d", "kernel_size": [2, 3], "stride": [2, 3], "padding": [0, 0],
          "ceil_mode": False}),
        (AvgPool2d(3, 1, 1),
         {"type": "AvgPool2d", "kernel_size": [3, 3], "stride": [1, 1], "padding": [1, 1], "ceil_mode": False,
          "count_include_pad": True}),
        (AvgPool2d((2, 2), count_include_pad=False, ceil_mode=True),
         {"type": "AvgPool2d", "kernel_size": [2, 2], "stride": [2, 2], "padding": [0, 0], "ceil_mode": True,
          "count_include_pad": False}),
        (AdaptiveAvgPool2d((6, None)), {"type": "AdaptiveAvgPool2d", "output_size": [6, None]}),
        (AdaptiveAvgPool2d(7), {"type": "AdaptiveAvgPool2d", "output_size": [7, 7]}),
        (npcam.Linear(3, 5, bias=False),
         {"type": "Linear", "in_features": 3, "out_features": 5, "bias": False}),
    ],
    ids=lambda v: v["type"] if isinstance(v, dict) else "",
)
def test_pool_configs_round_trip(layer, expected):
    """config() names the class and every constructor argument (stride resolved), is
    JSON-able, and the constructor rebuilds a layer with the same config."""
    cfg = json.loads(json.dumps(layer.config()))
    assert cfg == expected
    rebuilt = type(layer)(**{k: v for k, v in cfg.items() if k != "type"})
    assert rebuilt.config() == layer.config()
    assert repr(rebuilt) == repr(layer)


# ===================================================================== Linear on N-D input
@given(st.lists(st.integers(1, 3), min_size=1, max_size=3), st.integers(1, 4), st.integers(1, 3),
       st.booleans(), SEEDS)
def test_linear_on_nd_input(lead, fin, fout, bias, seed):
    """Linear acts on the last axis: for x (N, ..., in), y[idx] = W x[idx] + b for every
    leading index — equal to the 2-D layer on the rows of x.reshape(−1, in), and its dW, db
    are the 2-D layer's on those rows (sums over all leading axes), to 1e-15 of their
    scale; dx has x's shape."""
    rng = np.random.default_rng(seed)
    layer = npcam.Linear(fin, fout, bias=bias, rng=rng)
    x = rng.standard_normal((*lead, fin))
    y, cache = layer.run(x)
    assert y.shape == (*lead, fout)
    y2, cache2 = layer.run(x.reshape(-1, fin))
    assert np.max(np.abs(y.reshape(-1, fout) - y2)) <= 1e-15 * max(np.max(np.abs(y2)), 1e-300)
    dout = rng.standard_normal(y.shape)
    dx, grads = layer.vjp(dout, cache, param_grads=True)
    dx2, grads2 = layer.vjp(dout.reshape(-1, fout), cache2, param_grads=True)
    assert dx.shape == x.shape and set(grads) == set(grads2) == set(layer.params())
    assert np.max(np.abs(dx.reshape(-1, fin) - dx2)) <= 1e-15 * max(np.max(np.abs(dx2)), 1e-300)
    for k in grads:
        assert np.max(np.abs(grads[k] - grads2[k])) <= 1e-14 * max(np.max(np.abs(grads2[k])), 1e-300)


@pytest.mark.parametrize("shape", [(2, 3, 4), (2, 2, 3, 4), (1, 4)])
def test_linear_nd_gradcheck(shape):
    """dx, dW and db of an N-D Linear match central differences (dW summed over every
    leading axis, e.g. ConvNeXt's (N, H, W, C) positions)."""
    layer = npcam.Linear(4, 3, rng=9)
    errors = check_layer(layer, np.random.default_rng(10).standard_normal(shape), eps=H, rng=4)
    assert set(errors) == {"x", "weight", "bias"} and max(errors.values()) < GRAD_TOL, errors


def test_linear_nd_bad_input():
    """A 1-D input (no batch axis) or a wrong last axis is a ValueError naming the input."""
    layer = npcam.Linear(4, 2)
    with pytest.raises(ValueError, match="input of Linear must be an array"):
        layer.forward(np.ones(4))
    with pytest.raises(ValueError, match=r"input of Linear must have 4 features \(axis 3\)"):
        layer.forward(np.ones((2, 3, 3, 5)))
    with pytest.raises(ValueError, match=r"input of Linear must have 4 features \(axis 1\)"):
        layer.forward(np.ones((2, 5)))


# ============================================================ BatchNorm2d not after a conv
def test_batchnorm_anywhere_in_a_network():
    """Eval-mode BN is an affine map per channel wherever it sits: after a pool and before
    a ReLU (DenseNet's pre-activation), its gradient w.r.t. the network input matches
    central differences; fold_batchnorm keeps a BN that does not follow a conv, and the
    folded model computes the same logits."""
    rng = np.random.default_rng(11)
    bn = npcam.BatchNorm2d(3, eps=1e-3)
    bn.weight, bn.bias = rng.standard_normal(3), rng.standard_normal(3)
    bn.running_mean, bn.running_var = rng.standard_normal(3), rng.uniform(0.2, 2.0, 3)
    net = npcam.Sequential(AvgPool2d(2), bn, npcam.MaxPool2d(3, 1, 1), AdaptiveAvgPool2d((2, 3)),
                           npcam.Flatten(), npcam.Linear(18, 4, rng=rng))
    x = rng.standard_normal((2, 3, 8, 10))
    logits = net.forward(x)
    s = rng.standard_normal(logits.shape)
    dx = net.vjp(net.run(x), s).grad
    numeric = numerical_gradient(lambda z: net.forward(z), x, s, H)
    assert relative_error(dx, numeric) < GRAD_TOL
    folded = npcam.fold_batchnorm(net)
    assert isinstance(folded["1"], npcam.BatchNorm2d)
    np.testing.assert_array_equal(folded.forward(x), logits)
    errors = check_layer(bn, rng.standard_normal((2, 3, 3, 4)), eps=H, rng=5)
    assert max(errors.values()) < GRAD_TOL, errors
