r"""Grouped and depthwise convolution: ``Conv2d(groups=G)``, functional's plain reference
and the fast engine's three paths (dense/grouped im2col + batched ``matmul``, the 1×1
shortcut, and the depthwise phase-plane path).

Every forward is checked against a naive grouped loop written here (it shares no code
with npcam), the fast engine against the plain reference, every backward against central
differences (< 1e-8, h = 1e-6) and as the transpose of the forward (dot-product test at
1e-12·‖J·u‖‖v‖). Identities between arrays are checked relative to the scale of the
defining sum, ``Σ|W|·|x|`` (DESIGN.md).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from _support import naive_conv2d
from hypothesis import given
from hypothesis import strategies as st

import npcam
from npcam.gradcheck import check_layer, numerical_gradient, relative_error
from npcam.nn import _conv
from npcam.nn import functional as F

H = 1e-6
GRAD_TOL = 1e-8
ADJ_TOL = 1e-12
SAME = 1e-13  # two computations of the same sum, relative to the sum of |terms|
SEEDS = st.integers(0, 2**32 - 1)


# ------------------------------------------------------------------------------ oracle
def naive_grouped_conv2d(x, weight, bias, stride, padding, groups):
    """The defining sum, one output element at a time, reading padding as zeros:

    out[n, f, h, w] = b[f] + Σ_{c',i,j} W[f, c', i, j] · x[n, g·Cg + c', s_h·h + i − p_h, s_w·w + j − p_w]

    with g = f // (F/G), Cg = C/G. Deliberately shares no code with npcam (nor with
    _support.naive_conv2d)."""
    n, c, hh, ww = x.shape
    f, cg, kh, kw = weight.shape
    fg = f // groups
    (sh, sw), (ph, pw) = stride, padding
    h_out, w_out = (hh + 2 * ph - kh) // sh + 1, (ww + 2 * pw - kw) // sw + 1
    out = np.zeros((n, f, h_out, w_out))
    for a in range(n):
        for o in range(f):
            first = (o // fg) * cg
            for r in range(h_out):
                for q in range(w_out):
                    total = 0.0 if bias is None else float(bias[o])
                    for ch in range(cg):
                        for i in range(kh):
                            row = r * sh + i - ph
                            for j in range(kw):
                                col = q * sw + j - pw
                                if 0 <= row < hh and 0 <= col < ww:
                                    total += weight[o, ch, i, j] * x[a, first + ch, row, col]
                    out[a, o, r, q] = total
    return out


def _scale(x, w, b, stride, padding, groups):
    """Elementwise Σ|W|·|x| + |b|: what rounding in any summation order is relative to."""
    return naive_grouped_conv2d(np.abs(x), np.abs(w), None if b is None else np.abs(b), stride, padding,
                                groups)


def assert_adjoint(ju, v, u, jtv):
    """|⟨J·u, v⟩ − ⟨u, Jᵀ·v⟩| ≤ 1e-12·‖J·u‖‖v‖."""
    assert ju.shape == v.shape and u.shape == jtv.shape
    lhs, rhs = float(np.sum(ju * v)), float(np.sum(u * jtv))
    bound = ADJ_TOL * float(np.linalg.norm(ju)) * float(np.linalg.norm(v))
    assert abs(lhs - rhs) <= bound, f"<Ju,v>={lhs!r} <u,J^T v>={rhs!r} bound={bound:.3e}"


def assert_grad(analytic, numeric):
    assert analytic.dtype == np.float64 and analytic.shape == numeric.shape
    err = relative_error(analytic, numeric)
    assert err < GRAD_TOL, f"relative error {err:.3e} >= {GRAD_TOL}"


# -------------------------------------------------------------------------- strategies
@st.composite
def grouped_geometry(draw, max_n=2, max_extra=5):
    """Groups of every kind: depthwise (C_in/G = 1, F/G = 1), depthwise with a channel
    multiplier (F/G > 1), grouped (C_in/G > 1) and dense (G = 1); non-square kernels,
    strides and paddings per axis (padding up to beyond the kernel); odd and non-square
    maps sized so that at least one output fits."""
    kind = draw(st.sampled_from(["depthwise", "multiplier", "grouped", "dense"]))
    groups = 1 if kind == "dense" else draw(st.integers(2, 4))
    cg = 1 if kind in ("depthwise", "multiplier") else draw(st.integers(1 if kind == "dense" else 2, 3))
    fg = {"depthwise": 1, "multiplier": draw(st.integers(2, 3))}.get(kind, draw(st.integers(1, 3)))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    hh = draw(st.integers(max(1, kh - 2 * ph), max(1, kh - 2 * ph) + max_extra))
    ww = draw(st.integers(max(1, kw - 2 * pw), max(1, kw - 2 * pw) + max_extra))
    return dict(n=draw(st.integers(1, max_n)), groups=groups, c=groups * cg, f=groups * fg, cg=cg,
                k=(kh, kw), s=(sh, sw), p=(ph, pw), hw=(hh, ww), bias=draw(st.booleans()), seed=draw(SEEDS))


def arrays(g):
    rng = np.random.default_rng(g["seed"])
    x = rng.standard_normal((g["n"], g["c"], *g["hw"]))
    w = rng.standard_normal((g["f"], g["cg"], *g["k"]))
    b = rng.standard_normal(g["f"]) if g["bias"] else None
    return rng, x, w, b


def _close(a, b, scale):
    assert a.shape == b.shape
    assert np.max(np.abs(a - b), initial=0.0) <= SAME * max(float(np.max(scale, initial=0.0)), 1e-300)


# ============================================================================ forward
@given(grouped_geometry())
def test_plain_grouped_conv_matches_naive_loop(g):
    """functional.conv2d_forward(groups=G) computes the defining grouped sum (each output
    channel reads only its group's C/G input channels) to 1e-13 of Σ|W|·|x| + |b|, with
    the output size floor((n + 2p − k)/s) + 1."""
    _, x, w, b = arrays(g)
    out, cache = F.conv2d_forward(x, w, b, g["s"], g["p"], g["groups"])
    ref = naive_grouped_conv2d(x, w, b, g["s"], g["p"], g["groups"])
    assert out.dtype == np.float64
    assert out.shape[2:] == tuple(F.conv_output_size(n, k, s, p)
                                  for n, k, s, p in zip(g["hw"], g["k"], g["s"], g["p"], strict=True))
    _close(out, ref, _scale(x, w, b, g["s"], g["p"], g["groups"]))
    assert cache.groups == g["groups"]


@given(grouped_geometry())
def test_fast_engine_equals_naive_loop_and_plain_reference(g):
    """The fast engine's forward (whichever path the geometry selects) equals the naive
    grouped loop, and its dx, dW, db equal the plain reference's backward, to 1e-13 of the
    scale of each defining sum; dx without parameter gradients is the same dx."""
    rng, x, w, b = arrays(g)
    fast, fast_cache = _conv.conv2d_forward(x, w, b, g["s"], g["p"], g["groups"])
    ref = naive_grouped_conv2d(x, w, b, g["s"], g["p"], g["groups"])
    _close(fast, ref, _scale(x, w, b, g["s"], g["p"], g["groups"]))
    out, cache = F.conv2d_forward(x, w, b, g["s"], g["p"], g["groups"])
    dout = rng.standard_normal(out.shape)
    dx, dw, db = F.conv2d_backward(dout, cache)
    fdx, fdw, fdb = _conv.conv2d_backward(dout, fast_cache)
    # scales: dx and dW are the same sums over |dout|·|W| and |dout|·|x|
    dx_scale, dw_scale, _ = F.conv2d_backward(np.abs(dout), cache._replace(weight=np.abs(w), x=np.abs(x)))
    _close(fdx, dx, dx_scale)
    _close(fdw, dw, dw_scale)
    assert fdx.dtype == fdw.dtype == np.float64
    if b is None:
        assert db is None and fdb is None
    else:
        _close(fdb, db, np.abs(dout).sum(axis=(0, 2, 3)))
    only_dx, none_w, none_b = _conv.conv2d_backward(dout, fast_cache, param_grads=False)
    assert none_w is None and none_b is None
    _close(only_dx, dx, dx_scale)


def test_groups_one_is_the_dense_convolution():
    """groups=1 is the ordinary convolution: both implementations equal _support's dense
    naive loop (which knows nothing of groups)."""
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(4)
    ref = naive_conv2d(x, w, b, (2, 1), (1, 2))
    for impl in (F, _conv):
        out, _ = impl.conv2d_forward(x, w, b, (2, 1), (1, 2), 1)
        assert np.max(np.abs(out - ref)) <= SAME * np.max(np.abs(ref))


def test_depthwise_is_one_convolution_per_channel():
    """Depthwise (G = C = F): output channel c is input channel c convolved with filter c
    alone — checked against C separate single-channel dense convolutions (fast engine),
    for a 3×3/s2/p1 and a 5×5/s1/p2 kernel."""
    rng = np.random.default_rng(1)
    for k, s, p in ((3, 2, 1), (5, 1, 2)):
        x, w = rng.standard_normal((2, 5, 9, 8)), rng.standard_normal((5, 1, k, k))
        out, _ = _conv.conv2d_forward(x, w, None, (s, s), (p, p), 5)
        for ch in range(5):
            single, _ = _conv.conv2d_forward(x[:, ch : ch + 1], w[ch : ch + 1], None, (s, s), (p, p), 1)
            assert np.max(np.abs(out[:, ch : ch + 1] - single)) <= SAME * np.max(np.abs(single))


def test_grouped_is_a_concatenation_of_independent_convolutions():
    """G groups = G dense convolutions side by side: group g's outputs are the dense
    convolution of group g's inputs with group g's filters (RegNetY-like: 8 channels per
    group)."""
    rng = np.random.default_rng(2)
    groups, cg, fg = 3, 8, 8
    x = rng.standard_normal((2, groups * cg, 7, 7))
    w = rng.standard_normal((groups * fg, cg, 3, 3))
    out, _ = _conv.conv2d_forward(x, w, None, (2, 2), (1, 1), groups)
    for gi in range(groups):
        part, _ = _conv.conv2d_forward(x[:, gi * cg : (gi + 1) * cg], w[gi * fg : (gi + 1) * fg], None,
                                       (2, 2), (1, 1), 1)
        assert np.max(np.abs(out[:, gi * fg : (gi + 1) * fg] - part)) <= SAME * np.max(np.abs(part))


@pytest.mark.parametrize("budget", [1, 3000, 20000])
@pytest.mark.parametrize("k, s, p, hw", [((3, 3), (1, 1), (1, 1), (9, 7)), ((5, 3), (2, 3), (2, 0), (11, 8)),
                                         ((1, 1), (2, 2), (0, 0), (5, 5)), ((2, 4), (3, 1), (1, 2), (4, 9))])
def test_depthwise_blocks_and_bands_change_nothing(monkeypatch, budget, k, s, p, hw):
    """The depthwise path works on blocks of planes sized to DEPTHWISE_CHUNK_BYTES, and on
    bands of output rows when one plane does not fit (a budget of 1 byte: one row per
    band). Forward, dx, dW (with and without a channel multiplier) are the same as with
    the default budget to 1e-13 of their scale, and the forward equals the naive loop."""
    rng = np.random.default_rng(3)
    for mult in (1, 2):
        x = rng.standard_normal((3, 4, *hw))
        w = rng.standard_normal((4 * mult, 1, *k))
        b = rng.standard_normal(4 * mult)
        out, cache = _conv.conv2d_forward(x, w, b, s, p, 4)
        dout = rng.standard_normal(out.shape)
        grads = _conv.conv2d_backward(dout, cache)
        monkeypatch.setattr(_conv, "DEPTHWISE_CHUNK_BYTES", budget)
        out1, cache1 = _conv.conv2d_forward(x, w, b, s, p, 4)
        grads1 = _conv.conv2d_backward(dout, cache1)
        dx_only = _conv.conv2d_backward(dout, cache1, param_grads=False)[0]
        monkeypatch.undo()
        ref = naive_grouped_conv2d(x, w, b, s, p, 4)
        assert np.max(np.abs(out1 - ref)) <= SAME * np.max(np.abs(ref))
        assert np.max(np.abs(out1 - out)) <= SAME * np.max(np.abs(out))
        for a, a1 in zip(grads, grads1, strict=True):
            assert np.max(np.abs(a - a1)) <= SAME * np.max(np.abs(a))
        assert np.max(np.abs(dx_only - grads[0])) <= SAME * np.max(np.abs(grads[0]))


def test_grouped_tiles_change_nothing(monkeypatch):
    """The grouped path tiles images and output rows to CONV_CHUNK_BYTES: a budget of one
    byte (one output row per tile) gives the same forward, dx and dW to 1e-13."""
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((2, 6, 7, 5)), rng.standard_normal((9, 2, 3, 2))
    out, cache = _conv.conv2d_forward(x, w, None, (2, 1), (1, 1), 3)
    dout = rng.standard_normal(out.shape)
    grads = _conv.conv2d_backward(dout, cache)
    monkeypatch.setattr(_conv, "CONV_CHUNK_BYTES", 1)
    out1, cache1 = _conv.conv2d_forward(x, w, None, (2, 1), (1, 1), 3)
    grads1 = _conv.conv2d_backward(dout, cache1)
    assert np.max(np.abs(out1 - out)) <= SAME * np.max(np.abs(out))
    for a, a1 in zip(grads[:2], grads1[:2], strict=True):
        assert np.max(np.abs(a - a1)) <= SAME * np.max(np.abs(a))


def test_pointwise_shortcut_and_noncontiguous_input():
    """1×1, stride 1, no padding takes the shortcut (the input is its own column matrix):
    dense and grouped, forward and backward equal the plain reference, also for a
    non-contiguous input (a transposed view) and a depthwise 1×1."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 6, 5, 6)).transpose(0, 1, 3, 2)  # (2, 6, 6, 5), non-contiguous
    assert not x.flags.c_contiguous
    for groups, cg, f in ((1, 6, 4), (2, 3, 4), (3, 2, 6), (6, 1, 6)):
        w = rng.standard_normal((f, cg, 1, 1))
        out, cache = _conv.conv2d_forward(x, w, None, (1, 1), (0, 0), groups)
        ref, rcache = F.conv2d_forward(x, w, None, (1, 1), (0, 0), groups)
        assert np.max(np.abs(out - ref)) <= SAME * np.max(np.abs(ref))
        dout = rng.standard_normal(out.shape)
        for a, r in zip(_conv.conv2d_backward(dout, cache)[:2], F.conv2d_backward(dout, rcache)[:2],
                        strict=True):
            assert a.shape == r.shape and np.max(np.abs(a - r)) <= SAME * np.max(np.abs(r))


def test_depthwise_hand_example():
    """Two channels, 3×3 input, 2×2 filters, stride 1, padding 0, worked out by hand:
    channel 0 with [[1, 0], [0, 0]] picks the top-left of each window, channel 1 with
    [[0, 0], [1, 1]] sums the window's bottom row. Backward of an all-ones dout: dx of
    channel 0 is 1 where a window's top-left lies ([0:2, 0:2]); of channel 1, the number
    of windows whose bottom row covers the cell; dW = Σ of what each tap sees."""
    x = np.stack([np.arange(1.0, 10.0).reshape(3, 3), np.arange(10.0, 19.0).reshape(3, 3)])[None]
    w = np.array([[[[1.0, 0.0], [0.0, 0.0]]], [[[0.0, 0.0], [1.0, 1.0]]]])
    out, cache = _conv.conv2d_forward(x, w, None, (1, 1), (0, 0), 2)
    np.testing.assert_array_equal(out[0, 0], [[1, 2], [4, 5]])
    np.testing.assert_array_equal(out[0, 1], [[13 + 14, 14 + 15], [16 + 17, 17 + 18]])
    dx, dw, _ = _conv.conv2d_backward(np.ones_like(out), cache)
    np.testing.assert_array_equal(dx[0, 0], [[1, 1, 0], [1, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(dx[0, 1], [[0, 0, 0], [1, 2, 1], [1, 2, 1]])
    # tap (i, j) of channel 0 sees x0[i:i+2, j:j+2]: sums 12, 16, 24, 28
    np.testing.assert_array_equal(dw[0, 0], [[12, 16], [24, 28]])
    np.testing.assert_array_equal(dw[1, 0], [[48, 52], [60, 64]])


# =========================================================================== backward
@given(grouped_geometry(max_n=2, max_extra=3))
def test_grouped_conv_layer_gradcheck(g):
    """Conv2d(groups=G).vjp returns ∂⟨s, out⟩/∂x, ∂/∂W and ∂/∂b (the fast engine): each
    matches central differences to relative error < 1e-8, for depthwise, multiplier,
    grouped and dense geometries."""
    _, x, w, b = arrays(g)
    layer = npcam.Conv2d(g["c"], g["f"], g["k"], g["s"], g["p"], bias=g["bias"], groups=g["groups"], rng=0)
    layer.weight = w
    if b is not None:
        layer.bias = b
    errors = check_layer(layer, x, eps=H, rng=g["seed"] % 1000)
    assert set(errors) == {"x", "weight"} | ({"bias"} if b is not None else set())
    assert max(errors.values()) < GRAD_TOL, errors


@given(grouped_geometry(max_n=2, max_extra=3))
def test_plain_grouped_conv_backward_gradcheck(g):
    """The plain reference's conv2d_backward with groups: dx, dW, db match central
    differences to < 1e-8."""
    rng, x, w, b = arrays(g)
    out, cache = F.conv2d_forward(x, w, b, g["s"], g["p"], g["groups"])
    seed = rng.standard_normal(out.shape)
    dx, dw, db = F.conv2d_backward(seed, cache)

    def fwd(_):
        return F.conv2d_forward(x, w, b, g["s"], g["p"], g["groups"])[0]

    assert_grad(dx, numerical_gradient(fwd, x, seed, H))
    assert_grad(dw, numerical_gradient(fwd, w, seed, H))
    if b is not None:
        assert_grad(db, numerical_gradient(fwd, b, seed, H))


@given(grouped_geometry(max_extra=8))
def test_fast_engine_adjoint_in_x(g):
    """With W fixed and no bias, x ↦ conv(x, W) is linear and the engine's dx is its
    transpose: ⟨J·u, v⟩ = ⟨u, Jᵀ·v⟩ within 1e-12·‖J·u‖‖v‖ (every path)."""
    rng, u, w, _ = arrays(g)
    ju, cache = _conv.conv2d_forward(u, w, None, g["s"], g["p"], g["groups"])
    v = rng.standard_normal(ju.shape)
    jtv, _, _ = _conv.conv2d_backward(v, cache, param_grads=False)
    assert_adjoint(ju, v, u, jtv)


@given(grouped_geometry(max_extra=8))
def test_fast_engine_adjoint_in_weight(g):
    """With x fixed and no bias, W ↦ conv(x, W) is linear and the engine's dW is its
    transpose: ⟨J·u, v⟩ = ⟨u, Jᵀ·v⟩ within 1e-12·‖J·u‖‖v‖."""
    rng, x, u, _ = arrays(g)
    ju, cache = _conv.conv2d_forward(x, u, None, g["s"], g["p"], g["groups"])
    v = rng.standard_normal(ju.shape)
    _, jtv, db = _conv.conv2d_backward(v, cache)
    assert db is None
    assert_adjoint(ju, v, u, jtv)


def test_float32_backward_fails_the_gradcheck_bar():
    """The checker can fail: a depthwise backward computed in float32 (then cast back)
    lands far above the 1e-8 bar."""
    rng = np.random.default_rng(6)
    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((3, 1, 3, 3))
    out, cache = _conv.conv2d_forward(x, w, None, (1, 1), (1, 1), 3)
    s = rng.standard_normal(out.shape)
    low = cache._replace(x=x.astype(np.float32), weight=w.astype(np.float32))
    dx32 = _conv.conv2d_backward(s.astype(np.float32), low)[0].astype(np.float64)
    numeric = numerical_gradient(lambda z: _conv.conv2d_forward(z, w, None, (1, 1), (1, 1), 3)[0], x, s, H)
    assert relative_error(dx32, numeric) > 1e-8


# ============================================================================== layer
def test_conv2d_groups_parameter_layout_and_init():
    """torch's layout: weight (C_out, C_in/G, kH, kW); PyTorch's init bound
    1/sqrt(fan_in) with fan_in = (C_in/G)·kH·kW (checked on a depthwise layer of 1e6
    weights: extremes within 1e-3 of ±bound, variance within 2 % of bound²/3)."""
    conv = npcam.Conv2d(12, 6, (3, 2), groups=3)
    assert conv.weight.shape == (6, 4, 3, 2) and conv.bias.shape == (6,)
    assert conv.parameter_shapes()["weight"] == (6, 4, 3, 2)
    dw = npcam.Conv2d(40_000, 40_000, 5, groups=40_000, rng=0)
    assert dw.weight.shape == (40_000, 1, 5, 5)
    bound = 1 / np.sqrt(25)
    v = dw.weight.ravel()
    assert np.all(np.abs(v) <= bound)
    assert v.max() >= bound * (1 - 1e-3) and v.min() <= -bound * (1 - 1e-3)
    assert abs(v.var() / (bound**2 / 3) - 1) < 0.02
    assert np.all(np.abs(dw.bias) <= bound) and dw.bias.max() > 0.9 * bound


def test_conv2d_groups_config_round_trip():
    """config() holds every constructor argument, groups included, is JSON-able, and the
    constructor rebuilds a layer with the same config and parameter shapes."""
    conv = npcam.Conv2d(8, 16, (3, 1), stride=(2, 1), padding=(1, 0), bias=False, groups=4)
    cfg = json.loads(json.dumps(conv.config()))
    assert cfg == {"type": "Conv2d", "in_channels": 8, "out_channels": 16, "kernel_size": [3, 1],
                   "stride": [2, 1], "padding": [1, 0], "bias": False, "groups": 4}
    rebuilt = npcam.Conv2d(**{k: v for k, v in cfg.items() if k != "type"})
    assert rebuilt.config() == conv.config()
    assert rebuilt.weight.shape == conv.weight.shape == (16, 2, 3, 1)
    assert npcam.Conv2d(3, 4, 3).config()["groups"] == 1
    assert "groups=4" in repr(conv)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(in_channels=6, out_channels=4, groups=4), ValueError, "in_channels must be divisible by"),
        (dict(in_channels=4, out_channels=6, groups=4), ValueError, "out_channels must be divisible by"),
        (dict(in_channels=4, out_channels=4, groups=0), ValueError, "groups"),
        (dict(in_channels=4, out_channels=4, groups=2.0), TypeError, "groups"),
        (dict(in_channels=4, out_channels=4, groups=True), TypeError, "groups"),
        (dict(in_channels=4, out_channels=4, groups=10**6), ValueError, "groups must be at most"),
    ],
)
def test_conv2d_groups_bad_arguments(kwargs, exc, match):
    """Groups that do not divide the channel counts, or are not a positive int within
    MAX_CHANNELS, are refused at construction with a sentence naming the argument."""
    with pytest.raises(exc, match=match):
        npcam.Conv2d(kernel_size=3, **kwargs)


def test_grouped_layer_checks_channels_of_the_input():
    """The input must have in_channels channels (not in_channels/groups)."""
    conv = npcam.Conv2d(6, 6, 3, groups=3)
    with pytest.raises(ValueError, match="input of Conv2d must have 6 channels"):
        conv.forward(np.ones((1, 2, 5, 5)))
    assert conv.forward(np.ones((1, 6, 5, 5))).shape == (1, 6, 3, 3)


@pytest.mark.parametrize("groups, cin, cout", [(4, 4, 4), (2, 4, 6), (4, 4, 8)])
def test_fold_batchnorm_of_a_grouped_conv(groups, cin, cout):
    """fold_batchnorm folds a BN after a grouped/depthwise conv into a conv of the same
    groups (W' = W·γ/σ per output channel, b' = (b − μ)γ/σ + β): the folded model's
    output equals the original's within 1e-12 of its scale."""
    rng = np.random.default_rng(7)
    net = npcam.Sequential(npcam.Conv2d(cin, cout, 3, padding=1, groups=groups, rng=rng),
                           npcam.BatchNorm2d(cout), npcam.ReLU(), npcam.GlobalAvgPool2d())
    bn = net["1"]
    bn.weight, bn.bias = rng.standard_normal(cout), rng.standard_normal(cout)
    bn.running_mean, bn.running_var = rng.standard_normal(cout), rng.uniform(0.1, 3.0, cout)
    x = rng.standard_normal((2, cin, 6, 5))
    folded = npcam.fold_batchnorm(net)
    assert folded["0"].groups == groups and folded["0"].weight.shape == net["0"].weight.shape
    assert not any(isinstance(m, npcam.BatchNorm2d) for _, m in folded.named_layers())
    y, yf = net.forward(x), folded.forward(x)
    assert np.max(np.abs(y - yf)) <= 1e-12 * np.max(np.abs(y))


def test_pointwise_conv_on_small_maps_matches_the_reference():
    """A 1×1 convolution on maps of at most _SMALL_MAP positions runs as one matrix product
    over the batch; forward, dx and dW equal the plain reference (functional.conv2d_*) to
    1e-13 relative, on both sides of the threshold."""
    from npcam.nn import _conv, functional

    rng = np.random.default_rng(11)
    for hw in ((7, 7), (8, 8), (9, 8), (1, 1)):
        x = rng.standard_normal((3, 5, *hw))
        w = rng.standard_normal((4, 5, 1, 1))
        b = rng.standard_normal(4)
        fast, fc = _conv.conv2d_forward(x, w, b, (1, 1), (0, 0))
        ref, rc = functional.conv2d_forward(x, w, b, (1, 1), (0, 0))
        assert np.abs(fast - ref).max() <= 1e-13 * np.abs(ref).max()
        d = rng.standard_normal(ref.shape)
        fdx, fdw, _ = _conv.conv2d_backward(d, fc, True)
        rdx, rdw, _ = functional.conv2d_backward(d, rc, True)
        assert np.abs(fdx - rdx).max() <= 1e-13 * np.abs(rdx).max()
        assert np.abs(fdw - rdw).max() <= 1e-13 * np.abs(rdw).max()
