r"""Tests of ``npcam.functional``: every forward against an independent oracle or a hand
example, every backward against central differences, every linear operator against its
adjoint (dot-product test), and the conventions at the kinks by hand.

Tolerances are DESIGN.md's: gradcheck relative error < 1e-8 (h = 1e-6, one normaliser per
array), adjoint ``|⟨J·u, v⟩ − ⟨u, Jᵀ·v⟩| ≤ 1e-12·‖J·u‖‖v‖``, array identities within
1e-13 of the array's scale. Random inputs are drawn away from the kinks (no value within
1e-3 of 0 into a ReLU, no two equal values in a max-pool window).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _support import naive_conv2d, naive_max_pool2d
from hypothesis import assume, given
from hypothesis import strategies as st

from npcam.gradcheck import numerical_gradient, relative_error
from npcam.nn import _conv
from npcam.nn import functional as F

H = 1e-6  # finite-difference step
GRAD_TOL = 1e-8  # gradcheck bar (DESIGN.md)
ADJ_TOL = 1e-12  # dot-product test bar (DESIGN.md)
SEEDS = st.integers(0, 2**32 - 1)


# ------------------------------------------------------------------------------ helpers
def away_from_zero(rng, shape, margin=1e-3):
    """Random values with |x| >= margin (both signs), so a ReLU is smooth within ±h."""
    return rng.choice([-1.0, 1.0], size=shape) * (margin + np.abs(rng.standard_normal(shape)))


def distinct_values(rng, shape, spacing=0.1):
    """A random permutation of equally spaced values: no two entries are equal anywhere,
    and any two differ by at least ``spacing`` >> h, so no max-pool window has a tie."""
    size = int(np.prod(shape))
    return (rng.permutation(size) - size / 2.0).reshape(shape) * spacing


def assert_grad(analytic, numeric):
    assert analytic.dtype == np.float64
    assert analytic.shape == numeric.shape
    err = relative_error(analytic, numeric)
    assert err < GRAD_TOL, f"relative error {err:.3e} >= {GRAD_TOL}"


def assert_adjoint(ju, v, u, jtv):
    """|⟨J·u, v⟩ − ⟨u, Jᵀ·v⟩| ≤ 1e-12·‖J·u‖‖v‖."""
    assert ju.shape == v.shape and u.shape == jtv.shape
    lhs, rhs = float(np.sum(ju * v)), float(np.sum(u * jtv))
    bound = ADJ_TOL * float(np.linalg.norm(ju)) * float(np.linalg.norm(v))
    assert abs(lhs - rhs) <= bound, f"<Ju,v>={lhs!r} <u,J^T v>={rhs!r} bound={bound:.3e}"


# ----------------------------------------------------------------------------- strategies
@st.composite
def conv_geometry(draw, max_n=3, max_c=4, max_f=4, max_k=5, max_extra=6):
    """Batch, channels, kernel (non-square too), stride and padding pairs; the spatial size
    is drawn so that at least one output fits (no empty outputs), odd/even/non-square."""
    n = draw(st.integers(1, max_n))
    c = draw(st.integers(1, max_c))
    f = draw(st.integers(1, max_f))
    kh, kw = draw(st.integers(1, max_k)), draw(st.integers(1, max_k))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    hh = draw(st.integers(max(1, kh - 2 * ph), max(1, kh - 2 * ph) + max_extra))
    ww = draw(st.integers(max(1, kw - 2 * pw), max(1, kw - 2 * pw) + max_extra))
    bias = draw(st.booleans())
    seed = draw(SEEDS)
    return dict(n=n, c=c, f=f, k=(kh, kw), s=(sh, sw), p=(ph, pw), hw=(hh, ww), bias=bias,
                seed=seed)


def conv_arrays(g):
    rng = np.random.default_rng(g["seed"])
    x = rng.standard_normal((g["n"], g["c"], *g["hw"]))
    w = rng.standard_normal((g["f"], g["c"], *g["k"]))
    b = rng.standard_normal(g["f"]) if g["bias"] else None
    return rng, x, w, b


@st.composite
def pool_geometry(draw):
    """Kernel and stride pairs drawn independently: stride < kernel (overlapping windows),
    = kernel, > kernel (skipped inputs); spatial size at least the kernel."""
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    hh, ww = draw(st.integers(kh, kh + 5)), draw(st.integers(kw, kw + 5))
    return dict(shape=(n, c, hh, ww), k=(kh, kw), s=(sh, sw), seed=draw(SEEDS))


small_4d = st.tuples(
    st.integers(1, 3), st.integers(1, 4), st.integers(1, 5), st.integers(1, 5)
)


# ============================================================================ convolution
@given(conv_geometry())
def test_conv2d_forward_matches_naive_loop(g):
    """conv2d_forward computes out = b + Σ_{c,i,j} W·x_pad at stride s (the defining sum),
    to 1e-13 of the scale Σ|W|·|x_pad| + |b| of that sum, for every geometry with a
    non-empty output (padding >= kernel included)."""
    _, x, w, b = conv_arrays(g)
    out, cache = F.conv2d_forward(x, w, b, g["s"], g["p"])
    ref = naive_conv2d(x, w, b, g["s"], g["p"])
    scale = naive_conv2d(np.abs(x), np.abs(w), None if b is None else np.abs(b), g["s"], g["p"])
    assert out.dtype == np.float64
    assert out.shape == ref.shape
    assert out.shape[2:] == (
        F.conv_output_size(g["hw"][0], g["k"][0], g["s"][0], g["p"][0]),
        F.conv_output_size(g["hw"][1], g["k"][1], g["s"][1], g["p"][1]),
    )
    assert np.max(np.abs(out - ref)) <= 1e-13 * max(np.max(scale), 1e-300)
    assert cache.has_bias == (b is not None)


@pytest.mark.parametrize(
    "k, s, p, hw",
    [((3, 3), (1, 1), (0, 0), (5, 5)), ((2, 3), (2, 1), (1, 0), (5, 4)),
     ((1, 1), (3, 2), (3, 2), (3, 7)), ((5, 2), (2, 3), (1, 3), (7, 3))],
)
def test_conv2d_chunked_equals_unchunked(monkeypatch, k, s, p, hw):
    """Splitting the batch into chunks (a memory bound) changes nothing: with a budget of
    one byte every image is its own chunk, and the tiled engine's forward, dx, dW, db still
    equal the naive oracle / the one-chunk result to 1e-13 of their scale."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 2, *hw))
    w = rng.standard_normal((3, 2, *k))
    b = rng.standard_normal(3)
    out, cache = _conv.conv2d_forward(x, w, b, s, p)
    dout = rng.standard_normal(out.shape)
    grads = _conv.conv2d_backward(dout, cache)
    monkeypatch.setattr(_conv, "CONV_CHUNK_BYTES", 1)
    out1, cache1 = _conv.conv2d_forward(x, w, b, s, p)
    grads1 = _conv.conv2d_backward(dout, cache1)
    ref = naive_conv2d(x, w, b, s, p)
    assert np.max(np.abs(out1 - ref)) <= 1e-13 * np.max(np.abs(ref))
    for a, a1 in zip(grads, grads1, strict=True):
        assert np.max(np.abs(a - a1)) <= 1e-13 * np.max(np.abs(a))


@given(conv_geometry(max_n=3, max_c=3, max_f=3, max_k=4, max_extra=5))
def test_tiled_conv_engine_equals_the_plain_convolution(g):
    """The fast engine (npcam.nn._conv: tiled column buffers, BLAS, col2im) computes the
    same convolution as functional's plain statement (window view + einsum, scatter over
    the kernel offsets): forward, dx, dW and db agree to 1e-13 of their scale for every
    geometry (a reference beside the fast path, as JAX's lax_reference)."""
    rng, x, w, b = conv_arrays(g)
    out, cache = F.conv2d_forward(x, w, b, g["s"], g["p"])
    fast, fast_cache = _conv.conv2d_forward(x, w, b, g["s"], g["p"])
    assert np.max(np.abs(fast - out)) <= 1e-13 * max(np.max(np.abs(out)), 1e-300)
    dout = rng.standard_normal(out.shape)
    for plain, tiled in zip(F.conv2d_backward(dout, cache), _conv.conv2d_backward(dout, fast_cache),
                            strict=True):
        if plain is None:  # db without a bias
            assert tiled is None
            continue
        assert plain.shape == tiled.shape
        assert np.max(np.abs(plain - tiled)) <= 1e-13 * max(np.max(np.abs(plain)), 1e-300)


@given(st.integers(1, 4), st.integers(2, 6), st.floats(0.1, 1.0), st.integers(0, 2**32 - 1))
def test_softmax_and_log_softmax_backward_gradcheck(n, k, spread, seed):
    r"""softmax_backward and log_softmax_backward return ⟨dout, ∂p/∂y⟩ and
    ⟨dout, ∂ log p/∂y⟩ for any dout: both match central differences to < 1e-8, and
    softmax_backward(d) = p ⊙ (d − ⟨d, p⟩) (the textbook form) to 1e-15 of its scale.
    Logits are drawn with a spread ≤ 1: far into saturation the probabilities' derivatives
    are so small that central differences with h = 1e-6 are dominated by round-off (the
    accuracy there is checked by the golden tests of the confident scores)."""
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((n, k)) * spread
    d = rng.standard_normal((n, k))
    p, cache = F.softmax_forward(y)
    lp, lcache = F.log_softmax_forward(y)
    g = F.softmax_backward(d, cache)
    lg = F.log_softmax_backward(d, lcache)
    assert_grad(g, numerical_gradient(lambda z: F.softmax_forward(z)[0], y, d, H))
    assert_grad(lg, numerical_gradient(lambda z: F.log_softmax_forward(z)[0], y, d, H))
    textbook = p * (d - (d * p).sum(axis=1, keepdims=True))
    assert np.max(np.abs(g - textbook)) <= 1e-15 * max(np.max(np.abs(d)), 1.0)


@given(conv_geometry(max_n=2, max_c=3, max_f=3, max_k=4, max_extra=4))
def test_conv2d_backward_gradcheck(g):
    """conv2d_backward returns ∂⟨s, out⟩/∂x, ∂/∂W and ∂/∂b: each matches central
    differences to relative error < 1e-8."""
    rng, x, w, b = conv_arrays(g)
    out, cache = F.conv2d_forward(x, w, b, g["s"], g["p"])
    seed = rng.standard_normal(out.shape)
    dx, dw, db = F.conv2d_backward(seed, cache)

    def fwd(_):
        return F.conv2d_forward(x, w, b, g["s"], g["p"])[0]

    assert_grad(dx, numerical_gradient(fwd, x, seed, H))
    assert_grad(dw, numerical_gradient(fwd, w, seed, H))
    if b is None:
        assert db is None
    else:
        assert_grad(db, numerical_gradient(fwd, b, seed, H))


@given(conv_geometry(max_extra=8))
def test_conv2d_adjoint_in_x(g):
    """With W fixed and no bias, x ↦ conv(x, W) is linear; conv2d_backward's dx is its
    transpose: ⟨J·u, v⟩ = ⟨u, Jᵀ·v⟩ (dot-product test)."""
    rng, _, w, _ = conv_arrays(g)
    u = rng.standard_normal((g["n"], g["c"], *g["hw"]))
    ju, cache = F.conv2d_forward(u, w, None, g["s"], g["p"])
    v = rng.standard_normal(ju.shape)
    jtv, _, _ = F.conv2d_backward(v, cache, param_grads=False)
    assert_adjoint(ju, v, u, jtv)


@given(conv_geometry(max_extra=8))
def test_conv2d_adjoint_in_weight(g):
    """With x fixed and no bias, W ↦ conv(x, W) is linear; conv2d_backward's dW is its
    transpose: ⟨J·u, v⟩ = ⟨u, Jᵀ·v⟩."""
    rng, x, _, _ = conv_arrays(g)
    u = rng.standard_normal((g["f"], g["c"], *g["k"]))
    ju, cache = F.conv2d_forward(x, u, None, g["s"], g["p"])
    v = rng.standard_normal(ju.shape)
    _, jtv, db = F.conv2d_backward(v, cache)
    assert db is None
    assert_adjoint(ju, v, u, jtv)


def test_conv2d_backward_without_param_grads():
    """param_grads=False returns (dx, None, None) with the same dx."""
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, 2, 5, 4)), rng.standard_normal((3, 2, 3, 2)), np.ones(3)
    out, cache = F.conv2d_forward(x, w, b, (2, 1), (1, 1))
    dout = rng.standard_normal(out.shape)
    dx, dw, db = F.conv2d_backward(dout, cache, param_grads=False)
    assert dw is None and db is None
    np.testing.assert_array_equal(dx, F.conv2d_backward(dout, cache)[0])


def test_conv2d_hand_example():
    """A 1×1×3×3 input, a 2×2 kernel of ones, stride 1, padding 1: each output is the sum
    of the (zero-padded) 2×2 window; worked out by hand. Backward of an all-ones seed:
    each input pixel is counted by the 4 windows that cover it, dW[i,j] = sum of the
    inputs the kernel tap (i, j) ever sees, db = number of outputs."""
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)  # [[1,2,3],[4,5,6],[7,8,9]]
    w = np.ones((1, 1, 2, 2))
    out, cache = F.conv2d_forward(x, w, np.array([0.5]), (1, 1), (1, 1))
    expected = np.array([
        [1, 3, 5, 3],
        [5, 12, 16, 9],
        [11, 24, 28, 15],
        [7, 15, 17, 9],
    ], dtype=float) + 0.5
    np.testing.assert_array_equal(out[0, 0], expected)
    dx, dw, db = F.conv2d_backward(np.ones_like(out), cache)
    np.testing.assert_array_equal(dx, np.full((1, 1, 3, 3), 4.0))
    np.testing.assert_array_equal(dw, np.full((1, 1, 2, 2), 45.0))
    np.testing.assert_array_equal(db, [16.0])
    # stride 2, no padding, 2x2 kernel [[1, 0], [0, -1]] on the same x: x[0,0]-x[1,1] = -4
    out2, cache2 = F.conv2d_forward(x, np.array([[[[1.0, 0.0], [0.0, -1.0]]]]), None, (2, 2),
                                    (0, 0))
    np.testing.assert_array_equal(out2, [[[[-4.0]]]])
    dx2, _, _ = F.conv2d_backward(np.array([[[[3.0]]]]), cache2)
    np.testing.assert_array_equal(dx2[0, 0], [[3, 0, 0], [0, -3, 0], [0, 0, 0]])


# ================================================================================= ReLU
@given(small_4d, SEEDS)
def test_relu_backward_gradcheck(shape, seed):
    """For |x| >= 1e-3 ReLU is smooth within ±h and ∂⟨s, max(x,0)⟩/∂x = s·[x > 0]:
    relu_backward matches central differences."""
    rng = np.random.default_rng(seed)
    x = away_from_zero(rng, shape)
    out, cache = F.relu_forward(x)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, np.maximum(x, 0.0))
    s = rng.standard_normal(shape)
    dx = F.relu_backward(s, cache)
    assert_grad(dx, numerical_gradient(lambda z: F.relu_forward(z)[0], x, s, H))


def test_relu_rules_by_hand():
    """The three backward rules on a hand array, with x == 0 exactly and dy == 0:
    standard dy·[x>0] (ReLU'(0) = 0), deconvnet dy·[dy>0], guided dy·[x>0]·[dy>0]."""
    x = np.array([[-1.0, 0.0, 2.0, 3.0, -4.0, 0.5, 0.0, 7.0]])
    dy = np.array([[5.0, 6.0, -7.0, 0.0, 8.0, 1.5, -2.0, 4.0]])
    out, cache = F.relu_forward(x)
    np.testing.assert_array_equal(out, [[0.0, 0.0, 2.0, 3.0, 0.0, 0.5, 0.0, 7.0]])
    np.testing.assert_array_equal(
        F.relu_backward(dy, cache), [[0.0, 0.0, -7.0, 0.0, 0.0, 1.5, 0.0, 4.0]]
    )
    np.testing.assert_array_equal(
        F.relu_backward(dy, cache, "standard"), [[0.0, 0.0, -7.0, 0.0, 0.0, 1.5, 0.0, 4.0]]
    )
    np.testing.assert_array_equal(
        F.relu_backward(dy, cache, "deconvnet"), [[5.0, 6.0, 0.0, 0.0, 8.0, 1.5, 0.0, 4.0]]
    )
    np.testing.assert_array_equal(
        F.relu_backward(dy, cache, "guided"), [[0.0, 0.0, 0.0, 0.0, 0.0, 1.5, 0.0, 4.0]]
    )
    for mode in F.RELU_RULES:
        assert F.relu_backward(dy, cache, mode).dtype == np.float64


def test_relu_negative_zero_and_unknown_mode():
    """-0.0 is not > 0: it passes no gradient; an unknown rule is a ValueError naming
    the argument relu_rule and the allowed rules."""
    out, cache = F.relu_forward(np.array([-0.0, 1.0]))
    np.testing.assert_array_equal(F.relu_backward(np.array([2.0, 3.0]), cache), [0.0, 3.0])
    assert out[0] == 0.0
    with pytest.raises(ValueError, match="relu_rule"):
        F.relu_backward(np.array([1.0, 1.0]), cache, "leaky")
    with pytest.raises(ValueError, match="relu_rule"):
        F.relu_backward(np.array([1.0, 1.0]), cache, "Guided")


# ============================================================================= max-pool
@given(pool_geometry())
def test_max_pool2d_forward_matches_naive_loop(g):
    """out is the window max and cache.argmax the flat in-plane index of its first
    maximum (row-major), exactly, for overlapping, tiling and skipping windows."""
    rng = np.random.default_rng(g["seed"])
    x = rng.standard_normal(g["shape"])
    out, cache = F.max_pool2d_forward(x, g["k"], g["s"])
    ref, arg = naive_max_pool2d(x, g["k"], g["s"])
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(cache.argmax, arg)
    assert tuple(cache.x_shape) == g["shape"]


@given(pool_geometry())
def test_max_pool2d_forward_ties_match_naive_loop(g):
    """With many ties (values from {0, 1, 2}) the chosen position is still the first
    maximum of the window in row-major order."""
    rng = np.random.default_rng(g["seed"])
    x = rng.integers(0, 3, size=g["shape"]).astype(np.float64)
    out, cache = F.max_pool2d_forward(x, g["k"], g["s"])
    ref, arg = naive_max_pool2d(x, g["k"], g["s"])
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(cache.argmax, arg)


@given(pool_geometry())
def test_max_pool2d_backward_gradcheck(g):
    """With all values distinct and 0.1 apart (>> h), each window's max is locally the
    identity of its winner: max_pool2d_backward matches central differences."""
    rng = np.random.default_rng(g["seed"])
    x = distinct_values(rng, g["shape"])
    out, cache = F.max_pool2d_forward(x, g["k"], g["s"])
    s = rng.standard_normal(out.shape)
    dx = F.max_pool2d_backward(s, cache)
    assert_grad(dx, numerical_gradient(lambda z: F.max_pool2d_forward(z, g["k"], g["s"])[0],
                                       x, s, H))


@given(pool_geometry())
def test_max_pool2d_adjoint(g):
    """For fixed argmax positions, J·u = u taken at cache.argmax of each plane; the
    backward (scatter-add) is its transpose: ⟨J·u, v⟩ = ⟨u, Jᵀ·v⟩."""
    rng = np.random.default_rng(g["seed"])
    x = rng.standard_normal(g["shape"])
    out, cache = F.max_pool2d_forward(x, g["k"], g["s"])
    n, c, hh, ww = g["shape"]
    u = rng.standard_normal(g["shape"])
    ju = np.take_along_axis(
        u.reshape(n, c, hh * ww), cache.argmax.reshape(n, c, -1), axis=2
    ).reshape(out.shape)
    # the same gather on x itself gives the forward output: the argmax is where the max is
    np.testing.assert_array_equal(
        np.take_along_axis(x.reshape(n, c, -1), cache.argmax.reshape(n, c, -1), axis=2)
        .reshape(out.shape), out)
    v = rng.standard_normal(out.shape)
    assert_adjoint(ju, v, u, F.max_pool2d_backward(v, cache))


def test_max_pool2d_ties_by_hand():
    """A window of equal values sends the whole gradient to its first position in
    row-major order; a tie between (0,1) and (1,0) goes to (0,1)."""
    x = np.array([[[[5.0, 5.0, 1.0, 3.0],
                    [5.0, 5.0, 3.0, 2.0]]]])
    out, cache = F.max_pool2d_forward(x, (2, 2), (2, 2))
    np.testing.assert_array_equal(out, [[[[5.0, 3.0]]]])
    dx = F.max_pool2d_backward(np.array([[[[7.0, -2.0]]]]), cache)
    np.testing.assert_array_equal(dx, [[[[7.0, 0.0, 0.0, -2.0],
                                         [0.0, 0.0, 0.0, 0.0]]]])
    # three-way tie in a 3x3 window at (0,2), (1,0), (2,2): first is (0,2)
    x3 = np.array([[[[0.0, 1.0, 4.0], [4.0, -1.0, 2.0], [3.0, 0.0, 4.0]]]])
    out3, cache3 = F.max_pool2d_forward(x3, (3, 3), (1, 1))
    np.testing.assert_array_equal(out3, [[[[4.0]]]])
    dx3 = F.max_pool2d_backward(np.array([[[[1.5]]]]), cache3)
    np.testing.assert_array_equal(dx3[0, 0], [[0.0, 0.0, 1.5], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])


def test_max_pool2d_overlapping_windows_accumulate_by_hand():
    """With stride < kernel one input can win several windows; its gradient is the sum
    of theirs. Row [1, 3, 2, 0], kernel (1, 2), stride 1: windows win at 1, 1, 2; with
    dy = [1, 10, 100]: dx = [0, 11, 100, 0]. A 3x3 with 9 in the middle, kernel 2,
    stride 1: all four windows pick the centre, dx there = 1+2+3+4 = 10."""
    x = np.array([[[[1.0, 3.0, 2.0, 0.0]]]])
    out, cache = F.max_pool2d_forward(x, (1, 2), (1, 1))
    np.testing.assert_array_equal(out, [[[[3.0, 3.0, 2.0]]]])
    dx = F.max_pool2d_backward(np.array([[[[1.0, 10.0, 100.0]]]]), cache)
    np.testing.assert_array_equal(dx, [[[[0.0, 11.0, 100.0, 0.0]]]])

    x2 = np.array([[[[1.0, 2.0, 3.0], [4.0, 9.0, 5.0], [6.0, 7.0, 8.0]]]])
    out2, cache2 = F.max_pool2d_forward(x2, (2, 2), (1, 1))
    np.testing.assert_array_equal(out2, np.full((1, 1, 2, 2), 9.0))
    dx2 = F.max_pool2d_backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), cache2)
    np.testing.assert_array_equal(dx2[0, 0], [[0, 0, 0], [0, 10, 0], [0, 0, 0]])

    # ties and overlap together: [2, 2, 2], kernel (1, 2), stride 1 -> windows pick 0, 1
    x3 = np.array([[[[2.0, 2.0, 2.0]]]])
    _, cache3 = F.max_pool2d_forward(x3, (1, 2), (1, 1))
    dx3 = F.max_pool2d_backward(np.array([[[[5.0, 6.0]]]]), cache3)
    np.testing.assert_array_equal(dx3, [[[[5.0, 6.0, 0.0]]]])


def test_max_pool2d_uncovered_inputs_get_zero_by_hand():
    """5 columns, kernel 2, stride 2: the last column is in no window, its gradient is 0;
    planes of a batch do not mix (flat index offsets per (n, c))."""
    x = np.array([[[[1.0, 2.0, 3.0, 4.0, 99.0]], [[6.0, 5.0, 8.0, 7.0, 99.0]]]])
    out, cache = F.max_pool2d_forward(x, (1, 2), (1, 2))
    np.testing.assert_array_equal(out, [[[[2.0, 4.0]], [[6.0, 8.0]]]])
    dx = F.max_pool2d_backward(np.array([[[[1.0, 2.0]], [[3.0, 4.0]]]]), cache)
    np.testing.assert_array_equal(dx, [[[[0.0, 1.0, 0.0, 2.0, 0.0]],
                                        [[3.0, 0.0, 4.0, 0.0, 0.0]]]])


# =============================================================== global average pooling
@given(small_4d, SEEDS)
def test_global_avg_pool2d_gradcheck(shape, seed):
    """F^k = (1/Z) Σ_ij A^k_ij, so ∂⟨s, F⟩/∂A^k_ij = s_k / Z: the backward matches
    central differences, and the forward equals the mean by an explicit double sum."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    out, xs = F.global_avg_pool2d_forward(x)
    n, k, hh, ww = shape
    ref = np.zeros((n, k))
    for i in range(hh):
        for j in range(ww):
            ref += x[:, :, i, j]
    ref /= hh * ww
    assert out.shape == (n, k) and out.dtype == np.float64
    assert np.max(np.abs(out - ref)) <= 1e-13 * np.max(np.abs(x))
    s = rng.standard_normal((n, k))
    dx = F.global_avg_pool2d_backward(s, xs)
    assert_grad(dx, numerical_gradient(lambda z: F.global_avg_pool2d_forward(z)[0], x, s, H))
    np.testing.assert_allclose(dx, np.broadcast_to(s[:, :, None, None] / (hh * ww), shape),
                               rtol=1e-15, atol=0)
    assert dx.flags.writeable


@given(small_4d, SEEDS)
def test_global_avg_pool2d_adjoint(shape, seed):
    """GAP is linear; its backward is its transpose: ⟨J·u, v⟩ = ⟨u, Jᵀ·v⟩."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(shape)
    ju, xs = F.global_avg_pool2d_forward(u)
    v = rng.standard_normal(ju.shape)
    assert_adjoint(ju, v, u, F.global_avg_pool2d_backward(v, xs))


# ============================================================================== flatten
flatten_shapes = st.one_of(
    st.tuples(st.integers(1, 3), st.integers(1, 6)),
    st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4)),
    small_4d,
)


@given(flatten_shapes, SEEDS)
def test_flatten_gradcheck_and_order(shape, seed):
    """Flatten is a C-order reshape to (N, prod(rest)), the identity on (N, K); its
    gradient is the reshape back: matches central differences."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    out, xs = F.flatten_forward(x)
    assert out.shape == (shape[0], int(np.prod(shape[1:]))) and out.dtype == np.float64
    for a in range(shape[0]):
        np.testing.assert_array_equal(out[a], [x[a][idx] for idx in np.ndindex(*shape[1:])])
    s = rng.standard_normal(out.shape)
    dx = F.flatten_backward(s, xs)
    assert dx.shape == shape
    assert_grad(dx, numerical_gradient(lambda z: F.flatten_forward(z)[0], x, s, H))


@given(flatten_shapes, SEEDS)
def test_flatten_adjoint(shape, seed):
    """Flatten is linear; flatten_backward is its transpose."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(shape)
    ju, xs = F.flatten_forward(u)
    v = rng.standard_normal(ju.shape)
    assert_adjoint(ju, v, u, F.flatten_backward(v, xs))


# =============================================================================== linear
# At least 2 in- and out-features: a 1×1 weight makes dW = s·x a single number, and a
# draw with |s·x| ~ 1e-4 puts it under the central differences' round-off floor (about
# 1e-10·|y| absolute), a conditioning failure of the check, not of the backward.
linear_dims = st.tuples(st.integers(1, 4), st.integers(2, 6), st.integers(2, 5), st.booleans())


@given(linear_dims, SEEDS)
def test_linear_forward_and_gradcheck(dims, seed):
    """y = x Wᵀ + b (checked by an explicit sum), and linear_backward's dx, dW, db match
    central differences of ⟨s, y⟩."""
    n, fin, fout, has_bias = dims
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal((n, fin)), rng.standard_normal((fout, fin))
    b = rng.standard_normal(fout) if has_bias else None
    y, cache = F.linear_forward(x, w, b)
    ref = np.array([[sum(x[a, i] * w[o, i] for i in range(fin)) + (b[o] if has_bias else 0.0)
                     for o in range(fout)] for a in range(n)])
    assert y.dtype == np.float64
    assert np.max(np.abs(y - ref)) <= 1e-13 * (np.abs(x) @ np.abs(w).T).max()
    s = rng.standard_normal(y.shape)
    dx, dw, db = F.linear_backward(s, cache)

    def fwd(_):
        return F.linear_forward(x, w, b)[0]

    assert_grad(dx, numerical_gradient(fwd, x, s, H))
    assert_grad(dw, numerical_gradient(fwd, w, s, H))
    if has_bias:
        assert_grad(db, numerical_gradient(fwd, b, s, H))
    else:
        assert db is None
    dx2, dw2, db2 = F.linear_backward(s, cache, param_grads=False)
    assert dw2 is None and db2 is None
    np.testing.assert_array_equal(dx2, dx)


@given(linear_dims, SEEDS)
def test_linear_adjoint(dims, seed):
    """x ↦ x Wᵀ and W ↦ x Wᵀ are linear; linear_backward's dx and dW are their transposes."""
    n, fin, fout, _ = dims
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal((n, fin)), rng.standard_normal((fout, fin))
    u = rng.standard_normal((n, fin))
    ju, cache = F.linear_forward(u, w)
    v = rng.standard_normal(ju.shape)
    assert_adjoint(ju, v, u, F.linear_backward(v, cache, param_grads=False)[0])
    uw = rng.standard_normal((fout, fin))
    ju, cache = F.linear_forward(x, uw)
    assert_adjoint(ju, v, uw, F.linear_backward(v, cache)[1])


# ============================================================================ batch norm
# At least 2 channels: dβ_c = Σ s over one channel is a random sum that can land near 0;
# with one channel that single number can fall under the finite differences' round-off.
bn_shapes = st.tuples(st.integers(1, 3), st.integers(2, 4), st.integers(1, 5), st.integers(1, 5))


@given(bn_shapes, st.booleans(), SEEDS)
def test_batch_norm2d_gradcheck(shape, training, seed):
    """y = γ (x − μ)/sqrt(σ² + ε) + β: in training mode μ, σ² are the batch's (biased)
    statistics over M = N·H·W >= 3 values and depend on x, in eval mode they are fixed;
    in both modes the backward's dx, dγ, dβ match central differences."""
    n, c, hh, ww = shape
    rng = np.random.default_rng(seed)
    if training and n * hh * ww < 3:
        # With M = 2 values per channel x̂ = ±d/sqrt(d² + 4ε) is ±1 up to O(ε): the true
        # gradient is O(ε) and central differences only see their own round-off.
        shape = (n + 3, c, hh, ww)
    x = rng.standard_normal(shape) + 0.5
    # γ away from 0: with every |γ| tiny the output is ≈ β and flat in x, and central
    # differences would measure only their own round-off (≈ ε·|y|/h)
    gamma = rng.choice([-1.0, 1.0], size=c) * rng.uniform(0.5, 2.0, c)
    beta = rng.standard_normal(c)
    mean, var = rng.standard_normal(c), rng.uniform(0.5, 2.0, c)
    eps = 1e-5

    def fwd(_):
        return F.batch_norm2d_forward(x, gamma, beta, mean, var, eps, training)[0]

    y, cache = F.batch_norm2d_forward(x, gamma, beta, mean, var, eps, training)
    # the defining formula, written out
    mu = x.mean(axis=(0, 2, 3)) if training else mean
    sig2 = ((x - x.mean(axis=(0, 2, 3))[None, :, None, None]) ** 2).mean(axis=(0, 2, 3)) \
        if training else var
    ref = gamma[None, :, None, None] * (x - mu[None, :, None, None]) \
        / np.sqrt(sig2 + eps)[None, :, None, None] + beta[None, :, None, None]
    assert y.dtype == np.float64
    assert np.max(np.abs(y - ref)) <= 1e-12 * np.max(np.abs(ref))
    s = rng.standard_normal(y.shape)
    dx, dgamma, dbeta = F.batch_norm2d_backward(s, cache)
    assert_grad(dx, numerical_gradient(fwd, x, s, H))
    assert_grad(dgamma, numerical_gradient(fwd, gamma, s, H))
    assert_grad(dbeta, numerical_gradient(fwd, beta, s, H))
    dx2, dg2, db2 = F.batch_norm2d_backward(s, cache, param_grads=False)
    assert dg2 is None and db2 is None
    np.testing.assert_array_equal(dx2, dx)


# ==================================================================== softmax and loss
@given(st.integers(1, 4), st.integers(2, 6), SEEDS)
def test_softmax_cross_entropy_gradcheck(n, classes, seed):
    """L = −(1/N) Σ log softmax(y)_{t_n}; dlogits = (p − onehot)/N matches the central
    difference of L, and L equals the explicit −mean log(exp(y_t)/Σexp(y))."""
    rng = np.random.default_rng(seed)
    # Unit-scale logits, and not every row confident: when L ≈ Σ_{c≠t} p_c is tiny,
    # log Σ exp (≈ log(1 + tiny)) carries an absolute round-off ~1e-16 that central
    # differences divide by 2h, swamping a gradient of the same tiny size.
    logits = rng.standard_normal((n, classes))
    labels = rng.integers(0, classes, size=n)
    e = np.exp(logits)
    assume(np.max(1.0 - e[np.arange(n), labels] / e.sum(axis=1)) > 0.05)
    loss, dlogits = F.softmax_cross_entropy(logits, labels)
    assert isinstance(loss, float)
    ref = -np.mean([math.log(e[a, labels[a]] / e[a].sum()) for a in range(n)])
    assert abs(loss - ref) <= 1e-13 * max(abs(ref), 1.0)
    assert dlogits.dtype == np.float64

    def f(z):
        return np.array(F.softmax_cross_entropy(z, labels)[0])

    assert_grad(dlogits, numerical_gradient(f, logits, np.array(1.0), H))


def test_softmax_cross_entropy_by_hand():
    """All-zero logits: p = 1/C, L = log C, dlogits = (1/C − onehot)/N. Logits
    [0, ln 3]: p = [1/4, 3/4]; with label 1, L = ln(4/3) and dlogits = [1/4, −1/4]."""
    loss, d = F.softmax_cross_entropy(np.zeros((2, 4)), np.array([1, 3]))
    assert loss == pytest.approx(math.log(4.0), rel=1e-15)
    np.testing.assert_allclose(d, [[0.125, -0.375, 0.125, 0.125],
                                   [0.125, 0.125, 0.125, -0.375]], rtol=1e-15, atol=1e-17)
    loss, d = F.softmax_cross_entropy(np.array([[0.0, math.log(3.0)]]), np.array([1]))
    assert loss == pytest.approx(math.log(4.0 / 3.0), rel=1e-14)
    np.testing.assert_allclose(d, [[0.25, -0.25]], rtol=1e-14, atol=1e-16)


@given(st.integers(1, 4), st.integers(2, 6), SEEDS)
def test_log_softmax_vjp_gradcheck(n, classes, seed):
    """log p = y − log Σ exp(y): its Jacobian is I − 1·pᵀ per row, so for a seed s the
    vector-Jacobian product is s − p·Σ_c s_c; central differences of ⟨s, log_softmax⟩
    agree. softmax sums to 1 and equals exp(log_softmax).

    The null space of that transpose is span(p) (s = p gives p − p·1 = 0), so a random s
    close to ∝ p makes the product tiny and the check ill-conditioned; each row of s is
    therefore drawn orthogonal to p, which gives |vjp| >= |s| per row."""
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((n, classes)) * 3.0
    lp = F.log_softmax(y)
    p = F.softmax(y)
    assert lp.dtype == np.float64 and p.dtype == np.float64
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=0, atol=1e-15)
    e = np.exp(y)
    assert np.max(np.abs(p - e / e.sum(axis=-1, keepdims=True))) <= 1e-15
    s = rng.standard_normal((n, classes))
    s -= p * (np.sum(s * p, axis=-1, keepdims=True) / np.sum(p * p, axis=-1, keepdims=True))
    vjp = s - p * s.sum(axis=-1, keepdims=True)
    assert_grad(vjp, numerical_gradient(F.log_softmax, y, s, H))


def test_log_softmax_large_logits_do_not_overflow():
    """Shifting by the max keeps exp finite: log_softmax([1000, 0]) = [−log(1+e^−1000),
    −1000 − log(1+e^−1000)] = [0, −1000] in float64; softmax = [1, e^−1000 = 0]."""
    lp = F.log_softmax(np.array([[1000.0, 0.0], [-1000.0, -1000.0]]))
    np.testing.assert_array_equal(lp[0], [0.0, -1000.0])
    np.testing.assert_allclose(lp[1], [-math.log(2.0)] * 2, rtol=1e-15)
    np.testing.assert_array_equal(F.softmax(np.array([[1000.0, 0.0]])), [[1.0, 0.0]])


# ============================================================================= dropout
def test_dropout_is_identity():
    """Inference dropout: out = x and dx = dout, same values."""
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    out, cache = F.dropout_forward(x)
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(F.dropout_backward(x * 2, cache), x * 2)
