r"""Tests of the checker itself (``npcam.gradcheck``): it passes every npcam layer, and it
fails deliberately wrong backward passes — one computed in float32, one with an
off-by-one padding, one with a shifted dx, one with the wrong ReLU rule. Its error
measure is checked on hand examples, and its bad-argument handling.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npcam
from npcam.gradcheck import check_layer, numerical_gradient, relative_error
from npcam.nn import functional as F

TOL = 1e-8


def away_from_zero(rng, shape, margin=1e-3):
    return rng.choice([-1.0, 1.0], size=shape) * (margin + np.abs(rng.standard_normal(shape)))


def distinct_values(rng, shape, spacing=0.1):
    size = int(np.prod(shape))
    return (rng.permutation(size) - size / 2.0).reshape(shape) * spacing


def _bn(channels, training, rng):
    bn = npcam.BatchNorm2d(channels)
    bn.weight = rng.choice([-1.0, 1.0], size=channels) * rng.uniform(0.5, 2.0, channels)
    bn.bias = rng.standard_normal(channels)
    bn.running_mean = rng.standard_normal(channels)
    bn.running_var = rng.uniform(0.5, 2.0, channels)
    bn.training = training
    return bn


def layer_cases():
    """(id, layer, input) for every npcam layer, inputs away from the kinks."""
    rng = np.random.default_rng(1234)
    return [
        ("conv_s1_p0", npcam.Conv2d(2, 3, 3, rng=1), rng.standard_normal((2, 2, 5, 6))),
        ("conv_s2_p1", npcam.Conv2d(2, 3, (3, 2), stride=2, padding=1, rng=2),
         rng.standard_normal((2, 2, 7, 5))),
        ("conv_s21_p23_nobias", npcam.Conv2d(3, 2, (2, 3), stride=(2, 1), padding=(2, 3),
                                             bias=False, rng=3),
         rng.standard_normal((1, 3, 4, 3))),
        ("conv_pad_ge_kernel", npcam.Conv2d(1, 2, 1, stride=3, padding=2, rng=4),
         rng.standard_normal((2, 1, 5, 4))),
        ("linear", npcam.Linear(5, 3, rng=5), rng.standard_normal((4, 5))),
        ("linear_nobias", npcam.Linear(4, 2, bias=False, rng=6), rng.standard_normal((3, 4))),
        ("relu_4d", npcam.ReLU(), away_from_zero(rng, (2, 3, 4, 3))),
        ("relu_2d", npcam.ReLU(), away_from_zero(rng, (3, 5))),
        ("maxpool_2", npcam.MaxPool2d(2), distinct_values(rng, (2, 2, 5, 4))),
        ("maxpool_overlap", npcam.MaxPool2d((3, 2), stride=(1, 1)),
         distinct_values(rng, (1, 2, 5, 5))),
        ("maxpool_skip", npcam.MaxPool2d(2, stride=3), distinct_values(rng, (2, 1, 7, 6))),
        ("gap", npcam.GlobalAvgPool2d(), rng.standard_normal((2, 3, 4, 5))),
        ("flatten_4d", npcam.Flatten(), rng.standard_normal((2, 3, 2, 2))),
        ("flatten_2d", npcam.Flatten(), rng.standard_normal((3, 4))),
        ("dropout", npcam.Dropout(0.3), rng.standard_normal((2, 3, 2, 2))),
        ("bn_train", _bn(3, True, rng), rng.standard_normal((2, 3, 3, 2)) * 2 + 1),
        ("bn_eval", _bn(3, False, rng), rng.standard_normal((2, 3, 3, 2)) * 2 + 1),
    ]


CASES = layer_cases()


@pytest.mark.parametrize("name, layer, x", CASES, ids=[c[0] for c in CASES])
def test_check_layer_passes_every_npcam_layer(name, layer, x):
    """Every layer's backward agrees with central differences for x and each parameter
    (relative error < 1e-8); the report has exactly the keys x and the layer's params;
    the parameters are restored bit for bit after being perturbed in place."""
    before = {k: v.copy() for k, v in layer.params().items()}
    errors = check_layer(layer, x)
    assert set(errors) == {"x", *layer.params()}
    assert all(np.isfinite(e) for e in errors.values())
    assert max(errors.values()) < TOL, errors
    for k, v in layer.params().items():
        np.testing.assert_array_equal(v, before[k])
    # the gradients that were checked are float64
    out, cache = layer.run(x)
    assert layer.vjp(np.ones_like(out), cache)[0].dtype == np.float64


@given(
    st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4),
    st.integers(1, 3), st.integers(1, 3), st.integers(0, 3), st.integers(0, 3),
    st.integers(0, 2**32 - 1),
)
def test_check_layer_passes_conv2d_over_geometries(c, f, kh, kw, sh, sw, ph, pw, seed):
    """For any Conv2d geometry with a non-empty output, check_layer reports < 1e-8 for the
    input, weight and bias."""
    rng = np.random.default_rng(seed)
    hh = max(1, kh - 2 * ph) + int(rng.integers(0, 4))
    ww = max(1, kw - 2 * pw) + int(rng.integers(0, 4))
    layer = npcam.Conv2d(c, f, (kh, kw), stride=(sh, sw), padding=(ph, pw), rng=rng)
    errors = check_layer(layer, rng.standard_normal((int(rng.integers(1, 3)), c, hh, ww)))
    assert set(errors) == {"x", "weight", "bias"}
    assert max(errors.values()) < TOL, errors


# ------------------------------------------------------------------ deliberately wrong
class Float32Linear(npcam.Linear):
    """Linear whose backward is computed in float32 (results cast back to float64)."""

    def _backward(self, dout, cache, relu_rule, param_grads):
        d32, x32 = dout.astype(np.float32), cache.x.astype(np.float32)
        grads = {}
        if param_grads:
            grads = {
                "weight": (d32.T @ x32).astype(np.float64),
                "bias": d32.sum(axis=0).astype(np.float64),
            }
        return (d32 @ self.weight.astype(np.float32)).astype(np.float64), grads


class Float32Conv2d(npcam.Conv2d):
    """Conv2d whose backward works on float32-rounded inputs and returns float32 results."""

    def _backward(self, dout, cache, relu_rule, param_grads):
        c32 = cache._replace(x=cache.x.astype(np.float32),
                             weight=cache.weight.astype(np.float32))
        dx, dw, db = F.conv2d_backward(dout.astype(np.float32), c32, param_grads)
        grads = {}
        if param_grads:
            grads = {"weight": dw.astype(np.float32).astype(np.float64),
                     "bias": db.astype(np.float32).astype(np.float64)}
        return dx.astype(np.float32).astype(np.float64), grads


class OffByOnePaddingConv2d(npcam.Conv2d):
    """dx computed as if the padding were one larger on each side (right parameter
    gradients): the classic off-by-one of a transposed convolution."""

    def _backward(self, dout, cache, relu_rule, param_grads):
        wrong = cache._replace(padding=(cache.padding[0] + 1, cache.padding[1] + 1))
        dx, _, _ = F.conv2d_backward(dout, wrong, param_grads=False)
        _, dw, db = F.conv2d_backward(dout, cache, param_grads=True)
        return dx, ({"weight": dw, "bias": db} if param_grads else {})


class MisCroppedConv2d(npcam.Conv2d):
    """The right dx, cropped one row and one column off (shifted by one pixel)."""

    def _backward(self, dout, cache, relu_rule, param_grads):
        dx, grads = super()._backward(dout, cache, relu_rule, param_grads)
        shifted = np.zeros_like(dx)
        shifted[:, :, 1:, 1:] = dx[:, :, :-1, :-1]
        return shifted, grads


class DeconvnetReLU(npcam.ReLU):
    """A ReLU whose backward ignores x (the deconvnet rule): not the true derivative."""

    def _backward(self, dout, cache, relu_rule, param_grads):
        return super()._backward(dout, cache, "deconvnet", param_grads)


def test_float32_backward_fails():
    """A backward in float32 is ~1e-7 off: the checker reports > 1e-8 for x and for every
    parameter, while the float64 layer with the same weights passes."""
    rng = np.random.default_rng(0)
    good = npcam.Linear(20, 10, rng=1)
    bad = Float32Linear(20, 10, rng=1)
    x = rng.standard_normal((6, 20))
    assert max(check_layer(good, x).values()) < TOL
    errors = check_layer(bad, x)
    assert min(errors.values()) > TOL, errors
    assert max(errors.values()) < 1e-5, errors  # a precision failure, not a wrong formula

    conv = Float32Conv2d(3, 4, 3, padding=1, rng=2)
    errors = check_layer(conv, rng.standard_normal((2, 3, 6, 5)))
    assert min(errors.values()) > TOL, errors
    assert max(errors.values()) < 1e-5, errors


@pytest.mark.parametrize("stride, padding", [(1, 0), (1, 1), (2, 1), ((2, 1), (0, 2))])
def test_off_by_one_padding_backward_fails(stride, padding):
    """A transposed convolution with the padding off by one gives a wrong dx: the checker
    reports a large error for x and still < 1e-8 for the (correct) weight and bias."""
    layer = OffByOnePaddingConv2d(2, 3, 3, stride=stride, padding=padding, rng=3)
    errors = check_layer(layer, np.random.default_rng(4).standard_normal((2, 2, 6, 7)))
    assert errors["x"] > 1e-2, errors
    assert errors["weight"] < TOL and errors["bias"] < TOL, errors


def test_miscropped_dx_fails():
    """dx shifted by one pixel fails the check on x."""
    layer = MisCroppedConv2d(2, 2, 3, padding=1, rng=5)
    errors = check_layer(layer, np.random.default_rng(6).standard_normal((1, 2, 5, 5)))
    assert errors["x"] > 1e-2, errors


def test_wrong_relu_rule_fails():
    """The deconvnet rule is not ReLU's derivative: it passes positive gradients through
    negative inputs, and the checker sees it."""
    x = away_from_zero(np.random.default_rng(7), (2, 6))
    seed = np.abs(np.random.default_rng(8).standard_normal((2, 6)))  # dy > 0 everywhere
    assert check_layer(npcam.ReLU(), x, cotangent=seed)["x"] < TOL
    assert check_layer(DeconvnetReLU(), x, cotangent=seed)["x"] > 1e-2


def test_max_coords_checks_a_subset():
    """With max_coords, only that many coordinates of each tensor are perturbed: a correct
    layer still passes, a wrong dx still fails, and numerical_gradient with indices fills
    only those entries (NaN elsewhere) with the same values as the full computation."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3, 6, 6))
    layer = npcam.Conv2d(3, 4, 3, padding=1, rng=10)
    errors = check_layer(layer, x, max_coords=7)
    assert set(errors) == {"x", "weight", "bias"}
    assert max(errors.values()) < TOL
    assert check_layer(OffByOnePaddingConv2d(3, 4, 3, padding=1, rng=10), x,
                       max_coords=20)["x"] > 1e-2

    calls = []

    def f(z):
        calls.append(1)
        return z**3

    z = rng.standard_normal((4, 5))
    s = rng.standard_normal((4, 5))
    idx = np.array([0, 7, 19])
    part = numerical_gradient(f, z, s, indices=idx)
    assert len(calls) == 2 * len(idx)  # two evaluations per checked coordinate, no more
    full = numerical_gradient(f, z, s)
    flat_part, flat_full = part.reshape(-1), full.reshape(-1)
    assert np.isnan(np.delete(flat_part, idx)).all()
    np.testing.assert_array_equal(flat_part[idx], flat_full[idx])


# -------------------------------------------------------------------- relative_error
def test_relative_error_hand_cases():
    """rel(a, b) = max|a − b| / max(|a| + |b|): identical -> 0; both zero -> 0 (not NaN);
    a = [1, −2, 3], b = [1, −2.5, 3.5]: 0.5 / 6.5 = 1/13 (one normaliser for the whole
    array; per element it would be 0.5/4.5); a = −b -> 1."""
    a = np.array([1.0, -2.0, 3.0])
    assert relative_error(a, a.copy()) == 0.0
    assert relative_error(np.zeros((2, 3)), np.zeros((2, 3))) == 0.0
    assert relative_error(a, np.array([1.0, -2.5, 3.5])) == pytest.approx(1 / 13, rel=1e-15)
    assert relative_error(np.array([1.0, -2.5, 3.5]), a) == pytest.approx(1 / 13, rel=1e-15)
    assert relative_error(a, -a) == 1.0
    assert relative_error(np.empty((0, 3)), np.empty((0, 3))) == 0.0


def test_relative_error_entries_near_zero_do_not_inflate():
    """An entry near zero that is off by 100 % in itself is measured against the whole
    array's scale: a = [1e-20, 1], b = [2e-20, 1] -> 1e-20 / 2 = 5e-21."""
    err = relative_error(np.array([1e-20, 1.0]), np.array([2e-20, 1.0]))
    assert err == pytest.approx(5e-21, rel=1e-12)


def test_relative_error_nan_never_passes_and_shapes_must_match():
    """A NaN in a gradient makes the error NaN, so ``err < bar`` is False; arrays of
    different shape are a ValueError, nothing is broadcast."""
    err = relative_error(np.array([np.nan, 1.0]), np.array([0.0, 1.0]))
    assert not err < TOL
    with pytest.raises(ValueError, match="same shape"):
        relative_error(np.zeros(3), np.zeros((1, 3)))
    with pytest.raises(TypeError):
        relative_error(np.array(["a"]), np.array(["b"]))


# ----------------------------------------------------------------- numerical_gradient
@given(st.integers(1, 4), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_numerical_gradient_of_square(n, m, seed):
    """d⟨s, x²⟩/dx = 2x·s; the central difference of x² is exact up to round-off, so the
    estimate matches to < 1e-8, and x is left exactly as it was."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, m))
    x0 = x.copy()
    s = rng.standard_normal((n, m))
    g = numerical_gradient(lambda z: z**2, x, s)
    assert g.dtype == np.float64 and g.shape == x.shape
    assert relative_error(g, 2 * x0 * s) < TOL
    np.testing.assert_array_equal(x, x0)


def test_numerical_gradient_of_closure_and_scalar_output():
    """f may ignore its argument and close over x (how parameters are checked); a scalar
    f with seed 1 gives the plain gradient: ∇ Σ sin(x) = cos(x)."""
    x = np.linspace(-1.0, 1.0, 7)
    g = numerical_gradient(lambda _: np.array(np.sin(x).sum()), x, np.array(1.0))
    assert relative_error(g, np.cos(x)) < TOL


def test_numerical_gradient_bad_arguments():
    """x must be a contiguous float64 array (it is perturbed in place): float32, int,
    lists are TypeError, a non-contiguous view is ValueError; eps must be a positive
    float; the seed must be finite and have f(x)'s shape."""
    def f(z):
        return z * 2.0

    s = np.ones(3)
    with pytest.raises(TypeError, match="x"):
        numerical_gradient(f, np.ones(3, dtype=np.float32), s)
    with pytest.raises(TypeError, match="x"):
        numerical_gradient(f, np.ones(3, dtype=np.int64), s)
    with pytest.raises(TypeError, match="x"):
        numerical_gradient(f, [1.0, 2.0, 3.0], s)
    with pytest.raises(ValueError, match="contiguous"):  # reshape(-1) would copy
        numerical_gradient(f, np.ones((3, 4)).T, np.ones((4, 3)))
    # a strided 1-D view reshapes to itself: perturbing it in place works
    base = np.zeros((3, 2))
    view = base[:, 0]
    view[:] = [1.0, 2.0, 3.0]
    g = numerical_gradient(lambda z: z**2, view, s)
    assert relative_error(g, np.array([2.0, 4.0, 6.0])) < TOL
    with pytest.raises(ValueError, match="eps"):
        numerical_gradient(f, np.ones(3), s, eps=0.0)
    with pytest.raises(ValueError, match="eps"):
        numerical_gradient(f, np.ones(3), s, eps=-1e-6)
    with pytest.raises(ValueError, match="cotangent"):
        numerical_gradient(f, np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="cotangent"):
        numerical_gradient(f, np.ones(3), np.array([1.0, np.nan, 1.0]))


def test_check_layer_bad_input():
    """check_layer validates x like every entry point: NaN is a ValueError naming x."""
    with pytest.raises(ValueError, match="x"):
        check_layer(npcam.ReLU(), np.array([1.0, np.nan]))
