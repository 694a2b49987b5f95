r"""Asymmetric padding ``(left, right, top, bottom)`` on ``Conv2d``, ``MaxPool2d`` and
``AvgPool2d`` (the order of ``torch.nn.functional.pad``; ONNX's ``pads`` and TF's
``"same"`` ask for it).

Backwards are checked against central differences (< 1e-8, h = 1e-6) for the input and
every parameter, on every convolution path of the fast engine (dense, grouped, depthwise,
depthwise with a channel multiplier, 1×1) at strides 1 and 2 and on both pools (either
divisor rule). A property test states the defining identity on random shapes: the padded
op equals an explicit pad (zeros; −inf for the max) followed by the unpadded op, and its
input gradient is the padded one with the padding cut off — to 1e-13 of the scale of the
defining sums, or exactly where both sides compute the same numbers. The symmetric 4-tuple
is stored as the old pair; configs round-trip through JSON, ``model_from_config`` and
``save``/``load_model``; every refusal names its argument.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npcam
from npcam.gradcheck import check_layer
from npcam.nn import _conv
from npcam.nn import functional as F
from npcam.nn.layers import AvgPool2d

H = 1e-6
GRAD_TOL = 1e-8
SAME = 1e-13  # two computations of the same sum, relative to the sum of |terms|
SEEDS = st.integers(0, 2**32 - 1)


def distinct_values(rng, shape, spacing=0.1):
    """A permutation of equally spaced values: no ties in any max-pool window, gaps >> h."""
    size = int(np.prod(shape))
    return (rng.permutation(size) - size / 2.0).reshape(shape) * spacing


def explicit_pad(x, padding, value=0.0):
    """x padded by numpy with (left, right, top, bottom), as torch's F.pad(x, padding)."""
    left, right, top, bottom = padding
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def crop(dxp, padding, shape):
    left, _, top, _ = padding
    return dxp[:, :, top : top + shape[2], left : left + shape[3]]


def assert_close(a, b, scale):
    assert a.shape == b.shape, (a.shape, b.shape)
    bound = SAME * max(float(np.max(scale, initial=0.0)), 1e-300)
    assert np.max(np.abs(a - b), initial=0.0) <= bound


# ============================================================================ gradchecks
CONV_CASES = [
    # (C_in, C_out, kernel, stride, (left, right, top, bottom), groups, (H, W), bias)
    pytest.param(3, 4, 3, 1, (0, 1, 1, 2), 1, (6, 5), True, id="dense-s1"),
    pytest.param(3, 4, 3, 2, (0, 1, 0, 1), 1, (8, 8), True, id="dense-s2-keras-same"),
    pytest.param(2, 3, (2, 3), (2, 1), (2, 0, 1, 0), 1, (5, 6), False, id="dense-nonsquare"),
    pytest.param(4, 6, (3, 2), (2, 1), (1, 0, 2, 0), 2, (6, 5), True, id="grouped"),
    pytest.param(6, 6, 3, 2, (0, 1, 1, 0), 3, (7, 6), True, id="grouped-s2"),
    pytest.param(4, 4, 3, 1, (1, 2, 0, 1), 4, (5, 6), True, id="depthwise-s1"),
    pytest.param(4, 4, 5, 2, (1, 2, 2, 1), 4, (8, 7), False, id="depthwise-s2"),
    pytest.param(3, 6, 3, 2, (0, 1, 0, 1), 3, (6, 8), True, id="depthwise-multiplier-s2"),
    pytest.param(4, 3, 1, 1, (0, 1, 1, 0), 1, (4, 5), True, id="1x1-s1"),
    pytest.param(4, 3, 1, 2, (1, 0, 0, 1), 1, (5, 4), True, id="1x1-s2"),
    pytest.param(4, 4, 1, 1, (0, 2, 1, 0), 2, (3, 4), True, id="1x1-grouped"),
]


@pytest.mark.parametrize("cin, cout, k, s, pads, groups, hw, bias", CONV_CASES)
def test_conv_asymmetric_gradcheck(cin, cout, k, s, pads, groups, hw, bias):
    """Conv2d with a (left, right, top, bottom) padding: dx, dW and db match central
    differences on every path of the fast engine (dense, grouped, depthwise, channel
    multiplier, 1×1), strides 1 and 2; the output has floor((H + top + bottom − kH)/s) + 1
    rows (and likewise columns)."""
    layer = npcam.Conv2d(cin, cout, k, s, pads, bias=bias, groups=groups, rng=3)
    assert layer.padding == pads
    x = np.random.default_rng(4).standard_normal((2, cin, *hw))
    (kh, kw), (sh, sw) = layer.kernel_size, layer.stride
    left, right, top, bottom = pads
    out = layer.forward(x)
    h_out, w_out = (hw[0] + top + bottom - kh) // sh + 1, (hw[1] + left + right - kw) // sw + 1
    assert out.shape == (2, cout, h_out, w_out)
    errors = check_layer(layer, x, eps=H, rng=5)
    assert set(errors) == ({"x", "weight", "bias"} if bias else {"x", "weight"})
    assert max(errors.values()) < GRAD_TOL, errors


POOL_CASES = [
    # (kernel, stride, (left, right, top, bottom), (H, W))
    pytest.param(3, 2, (0, 1, 0, 1), (8, 8), id="k3-s2-keras-same"),
    pytest.param(3, 1, (1, 0, 0, 1), (5, 6), id="k3-s1"),
    pytest.param(2, 2, (0, 1, 1, 0), (5, 5), id="k2-s2"),
    pytest.param((3, 5), (1, 2), (2, 1, 0, 1), (4, 7), id="nonsquare"),
    pytest.param((5, 3), 2, (0, 1, 2, 0), (7, 6), id="nonsquare-tall"),
]


@pytest.mark.parametrize("k, s, pads, hw", POOL_CASES)
def test_max_pool_asymmetric_gradcheck(k, s, pads, hw):
    """MaxPool2d with a (left, right, top, bottom) padding matches central differences
    (inputs without ties), and no gradient is lost to the padding: Σ dx = Σ dout."""
    layer = npcam.MaxPool2d(k, s, pads)
    x = distinct_values(np.random.default_rng(6), (2, 3, *hw))
    errors = check_layer(layer, x, eps=H, rng=7)
    assert errors["x"] < GRAD_TOL, errors
    out, cache = layer.run(x)
    dout = np.random.default_rng(8).standard_normal(out.shape)
    dx, _ = layer.vjp(dout, cache)
    assert abs(dx.sum() - dout.sum()) <= 1e-12 * np.abs(dout).sum()


@pytest.mark.parametrize("include", [True, False])
@pytest.mark.parametrize("k, s, pads, hw", POOL_CASES)
def test_avg_pool_asymmetric_gradcheck(k, s, pads, hw, include):
    """AvgPool2d with a (left, right, top, bottom) padding, count_include_pad either way,
    matches central differences."""
    layer = AvgPool2d(k, s, pads, count_include_pad=include)
    x = np.random.default_rng(9).standard_normal((2, 3, *hw))
    errors = check_layer(layer, x, eps=H, rng=10)
    assert errors["x"] < GRAD_TOL, errors


def test_avg_pool_divisors_by_hand():
    """k2/s1 with padding (left, right, top, bottom) = (1, 0, 0, 1) on a 2×2 map of ones:
    windows start at rows 0, 1 and columns −1, 0 and hold 2, 4 / 1, 2 real ones.
    count_include_pad: every divisor is 4, so 2/4, 4/4 / 1/4, 2/4; otherwise each output
    is the mean of its real inputs, 1."""
    x = np.ones((1, 1, 2, 2))
    out = AvgPool2d(2, 1, (1, 0, 0, 1), count_include_pad=True).forward(x)
    np.testing.assert_array_equal(out[0, 0], [[2 / 4, 4 / 4], [1 / 4, 2 / 4]])
    out = AvgPool2d(2, 1, (1, 0, 0, 1), count_include_pad=False).forward(x)
    np.testing.assert_array_equal(out[0, 0], np.ones((2, 2)))


def test_max_pool_padding_never_wins_by_hand():
    """An all-(−1) 4×4 map, k3/s2 padded (left, right, top, bottom) = (0, 1, 1, 0): 2×2
    outputs, every one −1, a real cell (the −inf padding never wins); windows start at rows
    −1, 1 and columns 0, 2, so the first real cells in row-major order win: (0,0), (0,2),
    (1,0), (1,2), and the whole gradient lands there."""
    layer = npcam.MaxPool2d(3, 2, (0, 1, 1, 0))
    out, cache = layer.run(-np.ones((1, 1, 4, 4)))
    np.testing.assert_array_equal(out, -np.ones((1, 1, 2, 2)))
    dx, _ = layer.vjp(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), cache)
    np.testing.assert_array_equal(dx[0, 0], [[1, 0, 2, 0], [3, 0, 4, 0], [0, 0, 0, 0], [0, 0, 0, 0]])


# ======================================================================= the identity
@st.composite
def asymmetric_conv(draw):
    """Every kind of convolution (dense, grouped, depthwise, multiplier, 1×1), non-square
    kernels and strides 1–3, four independent sides 0–3 (not all symmetric), and maps
    sized so that at least one output fits."""
    kind = draw(st.sampled_from(["depthwise", "multiplier", "grouped", "dense", "pointwise"]))
    groups = 1 if kind in ("dense", "pointwise") else draw(st.integers(2, 3))
    cg = 1 if kind in ("depthwise", "multiplier") else draw(st.integers(1 if groups == 1 else 2, 3))
    fg = {"depthwise": 1, "multiplier": draw(st.integers(2, 3))}.get(kind, draw(st.integers(1, 3)))
    kh, kw = (1, 1) if kind == "pointwise" else (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pads = draw(st.tuples(*[st.integers(0, 3)] * 4).filter(lambda p: p[0] != p[1] or p[2] != p[3]))
    left, right, top, bottom = pads
    hh = draw(st.integers(max(1, kh - top - bottom), max(1, kh - top - bottom) + 5))
    ww = draw(st.integers(max(1, kw - left - right), max(1, kw - left - right) + 5))
    return dict(n=draw(st.integers(1, 2)), c=groups * cg, f=groups * fg, cg=cg, groups=groups,
                k=(kh, kw), s=(sh, sw), pads=pads, hw=(hh, ww), bias=draw(st.booleans()), seed=draw(SEEDS))


@given(asymmetric_conv())
def test_conv_asymmetric_padding_is_explicit_pad_then_unpadded_conv(g):
    """The identity: Conv2d(padding=(left, right, top, bottom)) equals zero-padding the input
    that way (numpy.pad, as torch's F.pad) followed by Conv2d(padding=0) with the same
    weights — forward, dW and db equal, dx equal to the padded input's gradient with the
    padding cut off — to 1e-13 of the scale of each defining sum, on random shapes of every
    path; and the fast engine equals the plain reference of functional."""
    rng = np.random.default_rng(g["seed"])
    x = rng.standard_normal((g["n"], g["c"], *g["hw"]))
    kw = dict(bias=g["bias"], groups=g["groups"])
    conv = npcam.Conv2d(g["c"], g["f"], g["k"], g["s"], g["pads"], rng=rng, **kw)
    plain = npcam.Conv2d(g["c"], g["f"], g["k"], g["s"], 0, rng=False, **kw)
    plain.weight, plain.bias = conv.weight, conv.bias
    xp = explicit_pad(x, g["pads"])
    out, cache = conv.run(x)
    ref, ref_cache = plain.run(xp)
    abs_plain = npcam.Conv2d(g["c"], g["f"], g["k"], g["s"], 0, bias=False, groups=g["groups"], rng=False)
    abs_plain.weight = np.abs(conv.weight)
    scale = abs_plain.forward(np.abs(xp)) + (0 if conv.bias is None else np.abs(conv.bias)[:, None, None])
    assert_close(out, ref, scale)
    dout = rng.standard_normal(out.shape)
    dx, grads = conv.vjp(dout, cache, param_grads=True)
    dxp, ref_grads = plain.vjp(dout, ref_cache, param_grads=True)
    dx_scale, _ = abs_plain.vjp(np.abs(dout), abs_plain.run(np.abs(xp))[1])
    assert_close(dx, crop(dxp, g["pads"], x.shape), crop(dx_scale, g["pads"], x.shape))
    _, w_scale = abs_plain.vjp(np.abs(dout), abs_plain.run(np.abs(xp))[1], param_grads=True)
    assert_close(grads["weight"], ref_grads["weight"], w_scale["weight"])
    if g["bias"]:
        assert_close(grads["bias"], ref_grads["bias"], np.abs(dout).sum(axis=(0, 2, 3)))
    # the plain reference of functional, with the padding passed as the 4-tuple
    f_out, f_cache = F.conv2d_forward(x, conv.weight, conv.bias, conv.stride, g["pads"], g["groups"])
    assert_close(f_out, out, scale)
    f_dx, f_dw, _ = F.conv2d_backward(dout, f_cache)
    assert_close(f_dx, dx, crop(dx_scale, g["pads"], x.shape))
    assert_close(f_dw, grads["weight"], w_scale["weight"])
    only_dx, _, _ = _conv.conv2d_backward(dout, cache[1], param_grads=False)
    assert_close(only_dx, dx, crop(dx_scale, g["pads"], x.shape))


@st.composite
def asymmetric_pool(draw):
    """Pool geometries with four independent sides, each at most kernel // 2 of its axis
    (not all symmetric), strides 1–3, maps holding at least one window."""
    kh, kw = draw(st.integers(2, 5)), draw(st.integers(2, 5))
    top, bottom = draw(st.integers(0, kh // 2)), draw(st.integers(0, kh // 2))
    left, right = draw(st.integers(0, kw // 2)), draw(st.integers(0, kw // 2))
    if left == right and top == bottom:
        right = (right + 1) % (kw // 2 + 1)  # make it asymmetric (kw >= 2, so kw // 2 >= 1)
    pads = (left, right, top, bottom)
    hh = draw(st.integers(max(1, kh - top - bottom), max(1, kh - top - bottom) + 6))
    ww = draw(st.integers(max(1, kw - left - right), max(1, kw - left - right) + 6))
    return dict(shape=(draw(st.integers(1, 2)), draw(st.integers(1, 3)), hh, ww), k=(kh, kw),
                s=(draw(st.integers(1, 3)), draw(st.integers(1, 3))), pads=pads, seed=draw(SEEDS))


@given(asymmetric_pool())
def test_max_pool_asymmetric_padding_is_explicit_minus_inf_pad_then_unpadded_pool(g):
    """The identity for the max: MaxPool2d(padding=(left, right, top, bottom)) equals
    padding the input with −inf that way followed by the unpadded max-pool — the same
    outputs exactly, and the same input gradient (the padded one with the padding cut off,
    where nothing ever lands: Σ dx = Σ dout), on random shapes with ties."""
    rng = np.random.default_rng(g["seed"])
    x = rng.integers(-2, 3, g["shape"]).astype(np.float64)  # ties: the first maximum wins on both sides
    layer = npcam.MaxPool2d(g["k"], g["s"], g["pads"])
    out, cache = layer.run(x)
    xp = explicit_pad(x, g["pads"], -np.inf)
    ref, ref_cache = F.max_pool2d_forward(xp, g["k"], g["s"])
    np.testing.assert_array_equal(out, ref)
    dout = rng.standard_normal(out.shape)
    dx, _ = layer.vjp(dout, cache)
    dxp = F.max_pool2d_backward(dout, ref_cache)
    np.testing.assert_array_equal(dx, crop(dxp, g["pads"], x.shape))
    assert abs(dxp.sum() - dx.sum()) <= 1e-12 * np.abs(dout).sum()


@given(asymmetric_pool())
def test_avg_pool_asymmetric_padding_is_explicit_zero_pad_then_unpadded_pool(g):
    """The identities for the average: with count_include_pad, AvgPool2d(padding=(left,
    right, top, bottom)) equals zero-padding that way followed by the unpadded average pool
    (divisor kH·kW), forward and input gradient (cut out of the padded one); without, it
    equals the window sums of the zero-padded input divided by those of the padded mask of
    ones (the number of real inputs per window). To 1e-13 of the scale Σ|x|."""
    rng = np.random.default_rng(g["seed"])
    x = rng.standard_normal(g["shape"])
    xp = explicit_pad(x, g["pads"])
    scale = AvgPool2d(g["k"], g["s"]).forward(np.abs(xp))
    plain = AvgPool2d(g["k"], g["s"])
    layer = AvgPool2d(g["k"], g["s"], g["pads"], count_include_pad=True)
    out, cache = layer.run(x)
    ref, ref_cache = plain.run(xp)
    assert_close(out, ref, scale)
    dout = rng.standard_normal(out.shape)
    dx, _ = layer.vjp(dout, cache)
    dxp, _ = plain.vjp(dout, ref_cache)
    dx_scale, _ = plain.vjp(np.abs(dout), ref_cache)
    assert_close(dx, crop(dxp, g["pads"], x.shape), crop(dx_scale, g["pads"], x.shape))
    counts = plain.forward(explicit_pad(np.ones_like(x), g["pads"]))  # (real inputs)/(kH·kW)
    excl = AvgPool2d(g["k"], g["s"], g["pads"], count_include_pad=False).forward(x)
    assert_close(excl, ref / counts, scale / counts)


def test_pool_output_size_rule():
    """floor((H + top + bottom − kH)/s_h) + 1 rows and floor((W + left + right − kW)/s_w) + 1
    columns, by hand: k3/s2 on 8×8 padded (0, 1, 0, 1) gives 4×4 (TF's ceil(8/2));
    padded (2, 0, 1, 0) with k (3, 5) on 6×7: (6 + 1 − 3)//2 + 1 = 3, (7 + 2 − 5)//2 + 1 = 3."""
    assert npcam.MaxPool2d(3, 2, (0, 1, 0, 1)).output_size(8, 8) == (4, 4)
    assert npcam.Conv2d(1, 1, 3, 2, (0, 1, 0, 1)).output_size(8, 8) == (4, 4)
    assert AvgPool2d((3, 5), 2, (2, 0, 1, 0)).output_size(6, 7) == (3, 3)
    assert AvgPool2d((3, 5), 2, (2, 0, 1, 0)).forward(np.ones((1, 1, 6, 7))).shape == (1, 1, 3, 3)
    assert npcam.Conv2d(1, 1, (3, 5), 2, (2, 0, 1, 0)).forward(np.ones((1, 1, 6, 7))).shape == (1, 1, 3, 3)


# ====================================================================== normalisation
@pytest.mark.parametrize(
    "make",
    [
        lambda p: npcam.Conv2d(2, 3, (3, 5), padding=p, rng=0),
        lambda p: npcam.MaxPool2d((3, 5), padding=p),
        lambda p: AvgPool2d((3, 5), padding=p, count_include_pad=False),
    ],
)
def test_symmetric_four_tuple_is_the_pair(make):
    """A 4-tuple with left == right and top == bottom is stored as the pair (top, left):
    layer.padding, config() and repr are those of padding=(top, left), and the outputs are
    the same; lists are accepted as tuples."""
    for four, pair in (((2, 2, 1, 1), (1, 2)), ([0, 0, 1, 1], (1, 0)), ((1, 1, 1, 1), (1, 1))):
        a, b = make(four), make(pair)
        assert a.padding == pair and isinstance(a.padding, tuple)
        assert a.config() == b.config() and repr(a) == repr(b)
        assert a.config()["padding"] == list(pair)
        x = np.random.default_rng(1).standard_normal((1, 2, 6, 7))
        np.testing.assert_array_equal(a.forward(x), b.forward(x))
    asym = make((2, 1, 1, 0))
    assert asym.padding == (2, 1, 1, 0) and asym.config()["padding"] == [2, 1, 1, 0]


# ========================================================================= round trips
def _model():
    return npcam.Sequential(
        npcam.Conv2d(3, 4, 3, stride=2, padding=(0, 1, 0, 1), rng=1),
        npcam.ReLU(),
        npcam.MaxPool2d(3, 2, padding=(1, 0, 0, 1)),
        npcam.Conv2d(4, 4, 3, padding=(1, 2, 0, 1), groups=4, rng=2),
        AvgPool2d(2, 1, padding=(0, 1, 1, 0), count_include_pad=False),
        npcam.Conv2d(4, 5, 1, padding=(1, 1, 2, 2), rng=3),  # symmetric 4-tuple: stored (2, 1)
        npcam.GlobalAvgPool2d(),
        npcam.Linear(5, 2, rng=4),
    )


def test_config_round_trip_through_json_and_model_from_config():
    """config() writes an asymmetric padding as a list of 4 (and a symmetric one as the
    pair); the JSON text rebuilds, through model_from_config with the state_dict, a model
    with the same paddings, config and outputs."""
    model = _model()
    cfg = json.loads(json.dumps(model.config()))
    pads = [c["padding"] for _, c in cfg["children"] if "padding" in c]
    assert pads == [[0, 1, 0, 1], [1, 0, 0, 1], [1, 2, 0, 1], [0, 1, 1, 0], [2, 1]]
    back = npcam.model_from_config(cfg, model.state_dict())
    assert back.config() == model.config()
    x = np.random.default_rng(2).standard_normal((2, 3, 12, 10))
    np.testing.assert_array_equal(back.forward(x), model.forward(x))
    assert npcam.model_from_config(cfg).config() == model.config()  # fresh weights, same architecture


def test_save_and_load_model_round_trip(tmp_path):
    """save/load_model of a Sequential and of a Graph holding asymmetric paddings: the same
    config and outputs."""
    model = _model()
    x = np.random.default_rng(3).standard_normal((1, 3, 9, 11))
    back = npcam.load_model(model.save(tmp_path / "seq.npz"))
    assert back.config() == model.config()
    np.testing.assert_array_equal(back.forward(x), model.forward(x))
    graph = npcam.Graph(
        [
            ("conv", npcam.Conv2d(3, 4, 3, stride=2, padding=(0, 1, 0, 1), rng=5), ("input",)),
            ("pool", AvgPool2d(3, 1, padding=(1, 0, 1, 0)), ("conv",)),
            ("max", npcam.MaxPool2d(3, 1, padding=(0, 1, 0, 1)), ("conv",)),
            ("add", npcam.Add(), ("pool", "max")),
            ("gap", npcam.GlobalAvgPool2d(), ("add",)),
        ],
        output="gap",
    )
    gback = npcam.load_model(graph.save(tmp_path / "graph.npz"))
    assert gback.config() == graph.config()
    assert [n.layer.padding for n in gback.nodes[:3]] == [(0, 1, 0, 1), (1, 0, 1, 0), (0, 1, 0, 1)]
    np.testing.assert_array_equal(gback.forward(x), graph.forward(x))


# ============================================================================ refusals
@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: npcam.Conv2d(1, 1, 3, padding=(1, 2, 3)), ValueError,
         r"padding must be an int, a pair \(rows, cols\) or a 4-tuple \(left, right, top, bottom\), got 3"),
        (lambda: npcam.Conv2d(1, 1, 3, padding=(1, 2, 3, 4, 5)), ValueError, "got 5 entries"),
        (lambda: npcam.Conv2d(1, 1, 3, padding=(0, 1, -1, 0)), ValueError,
         "padding must be an int >= 0, got -1"),
        (lambda: npcam.Conv2d(1, 1, 3, padding=(0, 1, 1.0, 0)), TypeError,
         "padding must be an int, got float"),
        (lambda: npcam.Conv2d(1, 1, 3, padding=(0, 1, True, 0)), TypeError, "padding must be an int"),
        (lambda: npcam.Conv2d(1, 1, 3, padding=(0, 65, 0, 0)), ValueError,
         r"padding must be at most 64 on every side, got \(0, 65, 0, 0\)"),
        (lambda: npcam.MaxPool2d(3, padding=(0, 2, 0, 0)), ValueError,
         "padding of MaxPool2d must be at most half the kernel size on every side"),
        (lambda: npcam.MaxPool2d((3, 5), padding=(0, 0, 2, 1)), ValueError,  # top 2 > 3 // 2
         r"got padding \(0, 0, 2, 1\) with kernel_size \(3, 5\)"),
        (lambda: AvgPool2d((5, 3), padding=(2, 0, 0, 1)), ValueError,  # left 2 > 3 // 2
         "padding of AvgPool2d must be at most half"),
        (lambda: npcam.MaxPool2d(3, 2, (0, 1, 0, 1), ceil_mode=True), ValueError,
         r"ceil_mode of MaxPool2d must be False with an asymmetric padding \(left, right, top, bottom\) "
         r"= \(0, 1, 0, 1\), got ceil_mode=True\."),
        (lambda: AvgPool2d(3, 2, (1, 0, 1, 1), ceil_mode=True), ValueError,
         "ceil_mode of AvgPool2d must be False"),
        (lambda: AvgPool2d(3, padding=(1, 2)), ValueError, "padding of AvgPool2d must be at most half"),
    ],
)
def test_bad_asymmetric_paddings(make, exc, match):
    """Each bad padding is refused at construction with one sentence naming the argument,
    what was expected and what came; pools bound each side by kernel_size // 2 of its own
    axis, and refuse ceil mode with an asymmetric padding."""
    with pytest.raises(exc, match=match):
        make()


def test_pool_bounds_are_per_axis_and_symmetric_ceil_mode_stays():
    """A side may use its own axis's kernel // 2 (top 2 with kH = 5, left 1 with kW = 3),
    and a symmetric 4-tuple keeps ceil mode (it is the pair)."""
    assert npcam.MaxPool2d((5, 3), padding=(0, 1, 2, 1)).padding == (0, 1, 2, 1)
    assert AvgPool2d((5, 3), padding=(1, 0, 0, 2)).padding == (1, 0, 0, 2)
    pool = npcam.MaxPool2d(3, 2, (1, 1, 1, 1), ceil_mode=True)
    assert pool.padding == (1, 1) and pool.ceil_mode


@pytest.mark.parametrize(
    "layer, shape, label",
    [
        (npcam.Conv2d(1, 1, 3, padding=(0, 0, 1, 1)), (1, 1, 1, 3), None),  # 1 + 2 >= 3: fits
        (npcam.Conv2d(1, 1, 3, padding=(0, 0, 1, 0)), (1, 1, 1, 3), "the input of Conv2d is too small"),
        (npcam.MaxPool2d(3, padding=(1, 0, 0, 0)), (1, 1, 3, 1), "input of MaxPool2d"),
        (AvgPool2d(3, padding=(0, 1, 1, 0)), (1, 1, 1, 5), "input of AvgPool2d"),
        (AvgPool2d(3, padding=(0, 1, 1, 1)), (1, 1, 1, 2), None),
    ],
)
def test_input_too_small_for_an_asymmetric_padding(layer, shape, label):
    """The input must hold one window of the padded plane (H + top + bottom >= kH and
    likewise for the width); smaller inputs are a ValueError naming the layer's input."""
    if label is None:
        assert layer.forward(np.ones(shape)).shape[2:] == (1, 1)
        return
    with pytest.raises(ValueError, match=label):
        layer.forward(np.ones(shape))


@pytest.mark.parametrize(
    "config, exc, match",
    [
        ({"type": "Conv2d", "in_channels": 1, "out_channels": 1, "kernel_size": 3, "padding": [1, 2, 3]},
         ValueError, r"\(Conv2d\): padding must be an int, a pair of ints or 4 ints \(left, right, "
                     r"top, bottom\), got 3 entries"),
        ({"type": "Conv2d", "in_channels": 1, "out_channels": 1, "kernel_size": 3, "padding": [0, 1, -1, 0]},
         ValueError, r"padding must be an int in \[0, 64\], got -1"),
        ({"type": "Conv2d", "in_channels": 1, "out_channels": 1, "kernel_size": 3, "padding": [0, 1, 1, 0.5]},
         TypeError, "padding must be an int, got float"),
        ({"type": "Conv2d", "in_channels": 1, "out_channels": 1, "kernel_size": 3, "padding": "same"},
         TypeError, "padding must be an int, a pair of ints or 4 ints"),
        ({"type": "MaxPool2d", "kernel_size": 3, "padding": [0, 1, 0, 99]}, ValueError,
         r"padding must be an int in \[0, 64\], got 99"),
        ({"type": "MaxPool2d", "kernel_size": 3, "stride": 2, "padding": [0, 1, 0, 1], "ceil_mode": True},
         ValueError, "ceil_mode of MaxPool2d must be False with an asymmetric padding"),
        ({"type": "MaxPool2d", "kernel_size": 3, "padding": [0, 2, 0, 0]}, ValueError,
         "padding of MaxPool2d must be at most half"),
        ({"type": "AvgPool2d", "kernel_size": 3, "padding": [0, 1, 0]}, ValueError,
         r"config of layer '0' \(AvgPool2d\): padding must be an int, a pair \(rows, cols\) or a 4-tuple"),
        ({"type": "AvgPool2d", "kernel_size": 3, "stride": 2, "padding": [1, 0, 1, 0], "ceil_mode": True},
         ValueError, "ceil_mode of AvgPool2d must be False"),
    ],
)
def test_bad_paddings_in_configs(config, exc, match):
    """A config with a bad padding is refused by model_from_config with the layer's place
    and the argument named (Conv2d and MaxPool2d by their schemas, AvgPool2d by its
    constructor through the generic path)."""
    with pytest.raises(exc, match=match):
        npcam.model_from_config({"type": "Sequential", "children": [["0", config]]})
