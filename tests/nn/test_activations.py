r"""Tests of ``npcam.nn.functional`` and ``npcam.nn.activations``: ReLU6,
Hardsigmoid, Hardswish, Sigmoid, SiLU, GELU and LayerNorm.

Tolerances are DESIGN.md's: gradcheck relative error < 1e-8 (h = 1e-6, one normaliser per
array) on inputs kept more than 1e-3 away from every kink (0 and 6 for ReLU6, ±3 for
Hardsigmoid and Hardswish); adjoint ``|⟨J·u, v⟩ − ⟨u, Jᵀ·v⟩| ≤ 1e-12·‖J·u‖‖v‖`` with J·u
from an independently written derivative, on inputs that include the kinks themselves;
identities within a few units of 1e-16 of the array's scale. The conventions at the kinks
(torch's, measured on torch 2.14.1) are checked by hand-written cases.
"""

from __future__ import annotations

import copy
import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npcam
from npcam.gradcheck import check_layer, numerical_gradient, relative_error
from npcam.nn import functional as FA
from npcam.nn.activations import GELU, Hardsigmoid, Hardswish, LayerNorm, ReLU6, Sigmoid, SiLU

H = 1e-6  # finite-difference step
GRAD_TOL = 1e-8  # gradcheck bar (DESIGN.md)
ADJ_TOL = 1e-12  # dot-product test bar (DESIGN.md)
MARGIN = 1e-3  # distance kept from the kinks in the gradchecks (> H)
SEEDS = st.integers(0, 2**32 - 1)
EPS64 = np.finfo(np.float64).eps


# ------------------------------------------------------------------- independent oracles
def _phi_cdf(x):
    """Φ(x) element by element with math.erf/erfc (shares no code with npcam)."""
    return np.vectorize(lambda t: 0.5 * math.erfc(-t / math.sqrt(2.0)))(x)


def _sig(x):
    """σ(x) element by element with math.exp (the two stable branches)."""
    def one(t):
        if t >= 0:
            return 1.0 / (1.0 + math.exp(-t))
        e = math.exp(t)
        return e / (1.0 + e)

    return np.vectorize(one)(x)


def _step(x):
    """[x > 0] as a float (Heaviside with H(0) = 0)."""
    return np.heaviside(x, 0.0)


def _hsig_ref(x):
    return np.clip(x / 6 + 0.5, 0.0, 1.0)


def _dhsig_ref(x):
    """1/6 on the open interval (−3, 3), else 0."""
    return _step(x + 3) * _step(3 - x) / 6


#: name -> (layer class, forward, backward, kinks, f' written from the definition)
OPS = {
    "ReLU6": (ReLU6, FA.relu6_forward, FA.relu6_backward, (0.0, 6.0),
              lambda x: _step(x) * _step(6 - x)),
    "Hardsigmoid": (Hardsigmoid, FA.hardsigmoid_forward, FA.hardsigmoid_backward, (-3.0, 3.0),
                    _dhsig_ref),
    # the product rule d(x·hsig(x)) = hsig(x) + x·hsig'(x), with hsig'(±3) = 0
    "Hardswish": (Hardswish, FA.hardswish_forward, FA.hardswish_backward, (-3.0, 3.0),
                  lambda x: _hsig_ref(x) + x * _dhsig_ref(x)),
    "Sigmoid": (Sigmoid, FA.sigmoid_forward, FA.sigmoid_backward, (),
                lambda x: _sig(x) * (1 - _sig(x))),
    "SiLU": (SiLU, FA.silu_forward, FA.silu_backward, (),
             lambda x: _sig(x) + x * _sig(x) * (1 - _sig(x))),
    "GELU": (GELU, FA.gelu_forward, FA.gelu_backward, (),
             lambda x: _phi_cdf(x) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)),
}
NAMES = list(OPS)


def away_from_kinks(x, kinks, margin=MARGIN):
    """Move every value within 2·margin of a kink to kink ± 2·margin (same side): the
    function is then smooth on [x − h, x + h]. The kinks are >= 3 apart, so a moved value
    lands near no other kink."""
    for k in kinks:
        d = x - k
        x = np.where(np.abs(d) < 2 * margin, k + np.where(d >= 0, 2 * margin, -2 * margin), x)
    return x


def assert_grad(analytic, numeric):
    assert analytic.dtype == np.float64 and analytic.shape == numeric.shape
    err = relative_error(analytic, numeric)
    assert err < GRAD_TOL, f"relative error {err:.3e} >= {GRAD_TOL}"


def assert_adjoint(ju, v, u, jtv):
    """|⟨J·u, v⟩ − ⟨u, Jᵀ·v⟩| ≤ 1e-12·‖J·u‖‖v‖."""
    assert ju.shape == v.shape and u.shape == jtv.shape
    lhs, rhs = float(np.sum(ju * v)), float(np.sum(u * jtv))
    bound = ADJ_TOL * float(np.linalg.norm(ju)) * float(np.linalg.norm(v))
    assert abs(lhs - rhs) <= bound, f"<Ju,v>={lhs!r} <u,J^T v>={rhs!r} bound={bound:.3e}"


def scaled(a, b, scale=None):
    """max|a − b| over the scale max|b| (or the one given)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    s = float(np.max(np.abs(b))) if scale is None else scale
    return float(np.max(np.abs(a - b))) / max(s, np.finfo(np.float64).tiny)


small_shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


# =========================================================== element-wise: gradients
@pytest.mark.parametrize("name", NAMES)
@given(shape=small_shapes, scale=st.sampled_from([0.3, 2.0, 4.0, 9.0]), seed=SEEDS)
def test_elementwise_backward_gradcheck(name, shape, scale, seed):
    """Away from the kinks (|x − kink| > 1e-3, ≫ h) each backward returns
    ∂⟨s, f(x)⟩/∂x = s ⊙ f'(x): it matches central differences to relative error < 1e-8,
    for inputs spread over every piece of the function (scales 0.3 to 9 reach past 6).

    Sigmoid saturates at 1: for x ≫ 0, σ' ≈ e^−x while the round-off of a difference of
    outputs ≈ 1 is ε/h ≈ 1e-10, which would swamp it. There the differenced function is
    x ↦ −σ(−x) = σ(x) − 1 (the same derivative, outputs ≈ e^−x, so the round-off scales
    with σ'); inputs keep 1e-3 away from 0, where the two forms meet."""
    _, fwd, bwd, kinks, _ = OPS[name]
    rng = np.random.default_rng(seed)
    x = away_from_kinks(rng.standard_normal(shape) * scale, kinks or (0.0,))
    s = rng.standard_normal(shape)
    out, cache = fwd(x)
    assert out.dtype == np.float64 and out.shape == x.shape
    upper = x > 0

    def f(z):
        if name == "Sigmoid":
            return np.where(upper, -fwd(-z)[0], fwd(z)[0])
        return fwd(z)[0]

    assert_grad(bwd(s, cache), numerical_gradient(f, x, s, H))


@pytest.mark.parametrize("name", NAMES)
def test_elementwise_layer_gradcheck(name):
    """Through the Layer (run/vjp): check_layer's relative error for the input is < 1e-8
    on a (2, 3, 4, 5) input drawn over all pieces and kept away from the kinks."""
    cls, _, _, kinks, _ = OPS[name]
    x = away_from_kinks(np.random.default_rng(1).standard_normal((2, 3, 4, 5)) * 4, kinks)
    errors = check_layer(cls(), x, rng=2)
    assert set(errors) == {"x"} and errors["x"] < GRAD_TOL, errors


@pytest.mark.parametrize("name", NAMES)
@given(shape=small_shapes, scale=st.sampled_from([0.5, 3.0, 8.0]), seed=SEEDS)
def test_elementwise_adjoint(name, shape, scale, seed):
    """The backward is the transpose of the Jacobian: with J·u = f'(x) ⊙ u, f' written
    independently from the definition (for Hardswish the product rule hsig + x·hsig'),
    ⟨J·u, v⟩ = ⟨u, backward(v)⟩ to 1e-12·‖J·u‖‖v‖. A quarter of the inputs sit exactly on
    a kink, so the conventions there are part of what is checked."""
    _, fwd, bwd, kinks, deriv = OPS[name]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * scale
    if kinks:
        on = rng.random(shape) < 0.25
        x = np.where(on, rng.choice(kinks, size=shape), x)
    u, v = rng.standard_normal(shape), rng.standard_normal(shape)
    _, cache = fwd(x)
    assert_adjoint(deriv(x) * u, v, u, bwd(v, cache))


MUTANTS = {
    # torch 2.14.1's float64 Hardsigmoid backward uses float32(1/6) = 0.16666667163...
    "hardsigmoid float32(1/6)": (FA.hardsigmoid_forward, lambda d, c: np.where(
        (c.x > -3) & (c.x < 3), d * float(np.float32(1 / 6)), 0.0), (-3.0, 3.0)),
    "hardswish unclipped (2x+3)/6": (FA.hardswish_forward,
                                     lambda d, c: d * (2 * c.x + 3) / 6, (-3.0, 3.0)),
    "relu6 as relu": (FA.relu6_forward, lambda d, c: np.where(c.x > 0, d, 0.0), (0.0, 6.0)),
    "silu' = sigma": (FA.silu_forward, lambda d, c: d * c.sig, ()),
    "gelu' = Phi": (FA.gelu_forward, lambda d, c: d * c.cdf, ()),
    "sigmoid' = sigma(1-sigma) in float32": (
        FA.sigmoid_forward,
        lambda d, c: (d * c.out * (1 - c.out)).astype(np.float32).astype(np.float64), ()),
}


@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_gradcheck_rejects_plausible_wrong_backwards(mutant):
    """The gradcheck bar has teeth: each deliberately wrong backward — among them torch's
    own float64 Hardsigmoid backward (1/6 rounded to float32, off by 3e-8 relative) and a
    correct formula evaluated in float32 — scores a relative error >= 1e-8 on the same
    kind of input the gradcheck tests use."""
    fwd, wrong, kinks = MUTANTS[mutant]
    rng = np.random.default_rng(0)
    x = away_from_kinks(rng.permutation(np.linspace(-8.1, 8.3, 24)).reshape(4, 6), kinks)
    s = rng.standard_normal(x.shape)
    _, cache = fwd(x)
    err = relative_error(wrong(s, cache), numerical_gradient(lambda z: fwd(z)[0], x, s, H))
    assert err >= GRAD_TOL, f"{mutant}: error {err:.3e} passed the bar"


# ============================================================ element-wise: the kinks
def test_relu6_kinks_by_hand():
    """ReLU6 = min(max(x, 0), 6); ReLU6'(x) = 1 on the open (0, 6) only: ReLU6'(0) =
    ReLU6'(6) = 0 (torch's hardtanh rule), 1 just inside either end."""
    x = np.array([-1.0, 0.0, 1e-300, 3.0, np.nextafter(6.0, 0.0), 6.0, 7.0])
    out, cache = FA.relu6_forward(x)
    np.testing.assert_array_equal(out, [0.0, 0.0, 1e-300, 3.0, np.nextafter(6.0, 0.0), 6.0, 6.0])
    np.testing.assert_array_equal(FA.relu6_backward(np.ones(7), cache), [0, 0, 1, 1, 1, 0, 0])


def test_hardsigmoid_kinks_by_hand():
    """Hardsigmoid = clip(x/6 + 1/2, 0, 1): 0, 0, 1/4, 1/2, 3/4, 1, 1 at −4, −3, −1.5, 0,
    1.5, 3, 4; derivative exactly 1/6 on the open (−3, 3), Hardsigmoid'(±3) = 0. Just
    below 3, x + 3 rounds to 6 (output 1) yet x < 3: the derivative is still 1/6."""
    x = np.array([-4.0, -3.0, -1.5, 0.0, 1.5, 3.0, 4.0, np.nextafter(3.0, 0.0)])
    out, cache = FA.hardsigmoid_forward(x)
    np.testing.assert_array_equal(out, [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(FA.hardsigmoid_backward(np.ones(8), cache),
                                  [0, 0, 1 / 6, 1 / 6, 1 / 6, 0, 0, 1 / 6])


def test_hardswish_kinks_by_hand():
    """Hardswish = x·clip(x/6 + 1/2, 0, 1): 0, 0, −3/8, 0, 9/8, 3, 4 at −4, −3, −1.5, 0,
    1.5, 3, 4. Derivative 0, (2x + 3)/6 inside, 1 — at the kinks torch's values
    Hardswish'(−3) = 0 and Hardswish'(3) = 1; just inside the kinks the inner formula's
    limits −1/2 and 3/2 (the derivative jumps by 1/2 at each kink)."""
    x = np.array([-4.0, -3.0, -1.5, 0.0, 1.5, 3.0, 4.0])
    out, cache = FA.hardswish_forward(x)
    np.testing.assert_array_equal(out, [0.0, 0.0, -0.375, 0.0, 1.125, 3.0, 4.0])
    np.testing.assert_array_equal(FA.hardswish_backward(np.ones(7), cache),
                                  [0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0])
    inside = np.array([np.nextafter(-3.0, 0.0), np.nextafter(3.0, 0.0)])
    d = FA.hardswish_backward(np.ones(2), FA.hardswish_forward(inside)[1])
    np.testing.assert_allclose(d, [-0.5, 1.5], rtol=4 * EPS64, atol=0)


def test_smooth_activations_by_hand():
    """σ(0) = 1/2, σ'(0) = 1/4; SiLU(0) = 0, SiLU'(0) = 1/2; GELU(0) = 0, GELU'(0) = 1/2
    (exactly). GELU(1) = Φ(1) and GELU'(1) = Φ(1) + φ(1) from math.erf. In the tails full
    relative precision: σ(−40) = e⁻⁴⁰/(1 + e⁻⁴⁰), σ'(40) = e⁻⁴⁰/(1 + e⁻⁴⁰)² (where
    1 − σ(40) rounds to 0), GELU(−10) = −10·erfc(10/√2)/2 (where 1 + erf(−10/√2)
    rounds to 0), each to 1e-14 relative (GELU(−10) to 1e-13: Φ's condition number
    there is ≈ x² = 100)."""
    zero = np.zeros(1)
    out, c = FA.sigmoid_forward(zero)
    assert out[0] == 0.5 and FA.sigmoid_backward(np.ones(1), c)[0] == 0.25
    out, c = FA.silu_forward(zero)
    assert out[0] == 0.0 and FA.silu_backward(np.ones(1), c)[0] == 0.5
    out, c = FA.gelu_forward(zero)
    assert out[0] == 0.0 and FA.gelu_backward(np.ones(1), c)[0] == 0.5

    one = np.ones(1)
    out, c = FA.gelu_forward(one)
    cdf1 = 0.5 * (1 + math.erf(1 / math.sqrt(2)))
    pdf1 = math.exp(-0.5) / math.sqrt(2 * math.pi)
    assert out[0] == pytest.approx(cdf1, rel=2 * EPS64, abs=0)
    assert FA.gelu_backward(one, c)[0] == pytest.approx(cdf1 + pdf1, rel=2 * EPS64, abs=0)

    e = math.exp(-40.0)
    assert FA.sigmoid_forward(np.array([-40.0]))[0][0] == pytest.approx(e / (1 + e), rel=1e-14, abs=0)
    _, c = FA.sigmoid_forward(np.array([40.0]))
    assert FA.sigmoid_backward(np.ones(1), c)[0] == pytest.approx(e / (1 + e) ** 2, rel=1e-14, abs=0)
    gelu_m10 = FA.gelu_forward(np.array([-10.0]))[0][0]
    assert gelu_m10 == pytest.approx(-10 * 0.5 * math.erfc(10 / math.sqrt(2)), rel=1e-13, abs=0)
    assert gelu_m10 < 0


EXTREMES = np.array([-1e308, -1e200, -3e154, -800.0, -40.0, -3.0, -0.0, 0.0, 3.0, 6.0, 40.0,
                     800.0, 3e154, 1e200, 1e308])


@pytest.mark.parametrize("name", NAMES)
def test_no_overflow_or_warning_at_extreme_inputs(name):
    """Over every finite magnitude up to 1e308 no forward or backward overflows, divides
    by zero or makes a NaN (checked with NumPy's over/divide/invalid flags raising and
    warnings turned into errors; underflow to 0 is correct rounding and stays allowed),
    and the results are the limits: Sigmoid → 0/1, SiLU, GELU, Hardswish → 0/x, their
    derivatives → 0/1."""
    _, fwd, bwd, _, _ = OPS[name]
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise"):
        warnings.simplefilter("error")
        out, cache = fwd(EXTREMES.copy())
        dx = bwd(np.ones_like(EXTREMES), cache)
    assert np.isfinite(out).all() and np.isfinite(dx).all()
    lo, hi = out[[0, -1]], dx[[0, -1]]
    limits = {
        "ReLU6": ([0, 6], [0, 0]), "Hardsigmoid": ([0, 1], [0, 0]),
        "Hardswish": ([0, 1e308], [0, 1]), "Sigmoid": ([0, 1], [0, 0]),
        "SiLU": ([0, 1e308], [0, 1]), "GELU": ([0, 1e308], [0, 1]),
    }[name]
    np.testing.assert_array_equal(lo, limits[0])
    np.testing.assert_array_equal(hi, limits[1])


# ========================================================== element-wise: identities
@given(shape=small_shapes, seed=SEEDS)
def test_elementwise_identities(shape, seed):
    """Hardsigmoid(x) = ReLU6(x + 3)/6 (bit-identical, torch's order); Hardswish(x) =
    x·Hardsigmoid(x) and SiLU(x) = x·σ(x) to 4 ulp of |x|; σ(−x) = 1 − σ(x), σ' =
    σ(1 − σ), and the symmetric sums SiLU'(x) + SiLU'(−x) = GELU'(x) + GELU'(−x) = 1
    (odd parts cancel) to 1e-15; Hardswish' = Hardsigmoid + x·Hardsigmoid' at every x,
    the kinks ±3 included (exactly the product rule with Hardsigmoid'(±3) = 0)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 5
    x = np.where(rng.random(shape) < 0.2, rng.choice([-3.0, 3.0, 0.0, 6.0], size=shape), x)
    ones = np.ones(shape)
    hsig, hsig_c = FA.hardsigmoid_forward(x)
    np.testing.assert_array_equal(hsig, FA.relu6_forward(x + 3)[0] / 6)
    hsw, hsw_c = FA.hardswish_forward(x)
    assert np.all(np.abs(hsw - x * hsig) <= 4 * EPS64 * np.abs(x))
    sig, sig_c = FA.sigmoid_forward(x)
    silu, silu_c = FA.silu_forward(x)
    assert np.all(np.abs(silu - x * sig) <= 4 * EPS64 * np.abs(x))
    assert np.max(np.abs(FA.sigmoid_forward(-x)[0] - (1 - sig))) <= 2 * EPS64
    assert np.max(np.abs(FA.sigmoid_backward(ones, sig_c) - sig * (1 - sig))) <= 2 * EPS64
    silu_d = FA.silu_backward(ones, silu_c) + FA.silu_backward(ones, FA.silu_forward(-x)[1])
    assert np.max(np.abs(silu_d - 1)) <= 1e-15 * max(1.0, float(np.max(np.abs(x))))
    gelu_d = FA.gelu_backward(ones, FA.gelu_forward(x)[1]) + FA.gelu_backward(
        ones, FA.gelu_forward(-x)[1])
    assert np.max(np.abs(gelu_d - 1)) <= 1e-15 * max(1.0, float(np.max(np.abs(x))))
    product_rule = hsig + x * FA.hardsigmoid_backward(ones, hsig_c)
    assert np.max(np.abs(FA.hardswish_backward(ones, hsw_c) - product_rule)) <= 4 * EPS64


@given(shape=small_shapes, seed=SEEDS)
def test_sigmoid_and_gelu_match_math_module(shape, seed):
    """σ and GELU = x·Φ(x) agree with element-by-element math.exp / math.erfc oracles in
    relative terms, element by element, over |x| up to ~30 (both keep their precision in
    the tails, where 1 − σ or 1 + erf would cancel): σ to 4 ulp; GELU to 4(1 + x²) ulp,
    because Φ's condition number in the left tail is ≈ x², so the one rounding of the
    argument x/√2 (which each side does its own way) costs up to x² ulp."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 10
    sig = FA.sigmoid_forward(x)[0]
    assert np.all(np.abs(sig - _sig(x)) <= 4 * EPS64 * np.abs(_sig(x)))
    ref = x * _phi_cdf(x)
    assert np.all(np.abs(FA.gelu_forward(x)[0] - ref) <= 4 * (1 + x * x) * EPS64 * np.abs(ref))


# =============================================================== LayerNorm: gradients
def _ln_params(rng, c, affine=True, bias=True):
    w = rng.uniform(0.5, 2.0, c) * rng.choice([-1.0, 1.0], c) if affine else None
    b = rng.standard_normal(c) if affine and bias else None
    return w, b


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (7, 11), (6,), (3, 1)])
def test_layernorm_layer_gradcheck(shape):
    """check_layer on LayerNorm with random γ (both signs) and β: relative error < 1e-8
    for the input, weight and bias, on ranks 4, 2, 1 and with C = 1 (x̂ = 0: every
    gradient but dβ is 0, numerically too)."""
    rng = np.random.default_rng(len(shape))
    ln = LayerNorm(shape[-1])
    ln.weight, ln.bias = _ln_params(rng, shape[-1])
    x = rng.standard_normal(shape) * 2 + 1
    errors = check_layer(ln, x, rng=3)
    assert set(errors) == {"x", "weight", "bias"}
    assert max(errors.values()) < GRAD_TOL, errors


@given(shape=small_shapes, eps=st.sampled_from([1e-5, 1e-2, 1.0]),
       scale=st.sampled_from([0.1, 1.0, 10.0]), affine=st.sampled_from(["both", "weight", "none"]),
       seed=SEEDS)
def test_layer_norm_backward_gradcheck(shape, eps, scale, affine, seed):
    """layer_norm_backward returns ∂⟨s, y⟩/∂x, ∂/∂γ and ∂/∂β: each matches central
    differences to < 1e-8 over ranks 1-3, scales 0.1-10, eps 1e-5-1, with the affine part
    whole, weight only, or absent (its gradients then None).

    With C = 2, x̂ = ±sqrt(v/(v + ε)) is nearly constant when v ≫ ε: its derivative is
    O(ε/v^1.5) and the round-off of differencing outputs ≈ ±1 (ε_mach/h ≈ 1e-10) would
    swamp it, so C = 2 is checked with ε = scale² (v/ε = O(1), the derivative as large as
    for other C); the adjoint test covers C = 2 at every ε."""
    rng = np.random.default_rng(seed)
    c = shape[-1]
    if c == 2:
        eps = scale * scale
    w, b = _ln_params(rng, c, affine != "none", affine == "both")
    x = rng.standard_normal(shape) * scale + rng.standard_normal()
    s = rng.standard_normal(shape)
    y, cache = FA.layer_norm_forward(x, [c], w, b, eps)
    dx, dw, db = FA.layer_norm_backward(s, cache)

    def fwd(_):
        return FA.layer_norm_forward(x, [c], w, b, eps)[0]

    assert_grad(dx, numerical_gradient(fwd, x, s, H))
    if w is None:
        assert dw is None
    else:
        assert_grad(dw, numerical_gradient(fwd, w, s, H))
    if b is None:
        assert db is None
    else:
        assert_grad(db, numerical_gradient(fwd, b, s, H))


def _layer_norm_jvp(x, w, ux, uw, ub, eps):
    """Forward-mode derivative of y = γ·(x − μ)/sqrt(var + ε) + β, step by step from the
    forward computation (shares no formula with the backward)."""
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = (xc**2).mean(axis=-1, keepdims=True)
    dmu = ux.mean(axis=-1, keepdims=True)
    dxc = ux - dmu
    dvar = (2 * xc * dxc).mean(axis=-1, keepdims=True)
    rstd = (var + eps) ** -0.5
    drstd = -0.5 * (var + eps) ** -1.5 * dvar
    xhat = xc * rstd
    dxhat = dxc * rstd + xc * drstd
    return w * dxhat + uw * xhat + ub


@given(shape=small_shapes, eps=st.sampled_from([1e-5, 0.1]), seed=SEEDS)
def test_layer_norm_adjoint(shape, eps, seed):
    """The backward is the transpose of the Jacobian of (x, γ, β) ↦ y: with J·u from
    forward-mode differentiation of the forward's steps (μ, var, 1/σ, x̂),
    ⟨J·u, v⟩ = ⟨u_x, dx⟩ + ⟨u_γ, dγ⟩ + ⟨u_β, dβ⟩ to 1e-12·‖J·u‖‖v‖."""
    rng = np.random.default_rng(seed)
    c = shape[-1]
    w, b = _ln_params(rng, c)
    x = rng.standard_normal(shape) * 3
    ux, uw, ub = rng.standard_normal(shape), rng.standard_normal(c), rng.standard_normal(c)
    v = rng.standard_normal(shape)
    _, cache = FA.layer_norm_forward(x, c, w, b, eps)
    dx, dw, db = FA.layer_norm_backward(v, cache)
    ju = _layer_norm_jvp(x, w, ux, uw, ub, eps)
    assert_adjoint(ju, v, np.concatenate([ux.ravel(), uw, ub]),
                   np.concatenate([dx.ravel(), dw, db]))


@pytest.mark.parametrize("mutant", ["sigma constant", "mean only", "unbiased variance"])
def test_layer_norm_gradcheck_rejects_wrong_backwards(mutant):
    """Plausible mistakes fail the bar: dx = g/σ (μ and σ treated as constants), dx
    without the x̂·mean(g·x̂) term (σ treated as constant), and the backward of an
    unbiased-variance forward (Bessel's correction, not torch's LayerNorm)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5)) * 2
    w, b = _ln_params(rng, 5)
    s = rng.standard_normal(x.shape)
    y, cache = FA.layer_norm_forward(x, 5, w, b, 1e-5)
    g = s * w
    if mutant == "sigma constant":
        wrong = g * cache.inv_std
    elif mutant == "mean only":
        wrong = (g - g.mean(axis=-1, keepdims=True)) * cache.inv_std
    else:
        xc = x - x.mean(axis=-1, keepdims=True)
        inv = 1 / np.sqrt((xc**2).sum(axis=-1, keepdims=True) / 4 + 1e-5)
        xh = xc * inv
        wrong = (g - g.mean(axis=-1, keepdims=True) - xh * (g * xh).mean(axis=-1, keepdims=True)) * inv
    numeric = numerical_gradient(lambda z: FA.layer_norm_forward(z, 5, w, b, 1e-5)[0], x, s, H)
    assert relative_error(wrong, numeric) >= GRAD_TOL


# ================================================================ LayerNorm: forward
@given(shape=small_shapes, eps=st.sampled_from([1e-5, 1e-2, 0.5]),
       scale=st.sampled_from([0.05, 1.0, 30.0]), seed=SEEDS)
def test_layer_norm_standardises_each_position(shape, eps, scale, seed):
    """Before the affine map (γ = 1, β = 0) the C outputs at every position have mean 0
    (to 1e-14) and biased variance v/(v + ε), v the biased variance of the input there
    (to 1e-12 relative): per-position statistics over the last axis, not over the batch.
    Small scales make v/(v + ε) visibly less than 1."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * scale + rng.standard_normal() * scale
    y = LayerNorm(shape[-1], eps=eps).forward(x)
    v = x.var(axis=-1)
    assert np.max(np.abs(y.mean(axis=-1))) <= 1e-14
    np.testing.assert_allclose(y.var(axis=-1), v / (v + eps), rtol=1e-12, atol=1e-300)


def test_layer_norm_by_hand():
    """x = [1, 2, 3, 6]: μ = 3, biased var = (4 + 1 + 0 + 9)/4 = 7/2; with ε = 1/2, σ = 2
    and x̂ = [−1, −1/2, 0, 3/2]. γ = [1, 2, 3, 4], β = [0, 1, 0, 1] give [−1, 0, 0, 7].
    For dy = e_0: g = γ·dy = e_0, mean(g) = 1/4, mean(g·x̂) = −1/4, so
    dx = (g − 1/4 + x̂/4)/2 = [1/4, −3/16, −1/8, 1/16], dγ = dy·x̂ = [−1, 0, 0, 0],
    dβ = dy = e_0 (all exact in binary)."""
    ln = LayerNorm(4, eps=0.5)
    x = np.array([[1.0, 2.0, 3.0, 6.0]])
    np.testing.assert_array_equal(ln.forward(x), [[-1.0, -0.5, 0.0, 1.5]])
    ln.weight = np.array([1.0, 2.0, 3.0, 4.0])
    ln.bias = np.array([0.0, 1.0, 0.0, 1.0])
    y, cache = ln.run(x)
    np.testing.assert_array_equal(y, [[-1.0, 0.0, 0.0, 7.0]])
    dx, grads = ln.vjp(np.array([[1.0, 0.0, 0.0, 0.0]]), cache, param_grads=True)
    np.testing.assert_array_equal(dx, [[0.25, -0.1875, -0.125, 0.0625]])
    np.testing.assert_array_equal(grads["weight"], [-1.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(grads["bias"], [1.0, 0.0, 0.0, 0.0])


def test_layer_norm_matches_naive_loop_and_is_per_sample():
    """Against a loop over positions (math.fsum statistics) to 1e-14 of the output's scale,
    on a rank-4 input with C last; one sample's output does not depend on the others in
    the batch (x[1:2] alone gives the same rows) nor on the training flag; a reshape of the
    leading axes commutes with the layer."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 4, 5)) * 3 + 2
    ln = LayerNorm(5, eps=1e-3)
    ln.weight, ln.bias = _ln_params(rng, 5)
    y = ln.forward(x)
    ref = np.empty_like(x)
    for idx in np.ndindex(x.shape[:-1]):
        row = list(x[idx])
        mu = math.fsum(row) / 5
        var = math.fsum((t - mu) ** 2 for t in row) / 5
        ref[idx] = [(t - mu) / math.sqrt(var + 1e-3) * g + bb
                    for t, g, bb in zip(row, ln.weight, ln.bias, strict=True)]
    assert scaled(y, ref) <= 1e-14
    assert scaled(ln.forward(x[1:2]), y[1:2]) <= 1e-15
    ln.training = True
    np.testing.assert_array_equal(ln.forward(x), y)
    assert scaled(ln.forward(x.reshape(-1, 5)), y.reshape(-1, 5)) <= 1e-15


def test_layer_norm_parameters_and_state():
    """torch's parameters: weight (C,) ones and bias (C,) zeros, in that order, as the
    state_dict names weight/bias (Sequential: "0.weight", "0.bias"); assignment is checked
    (wrong shape, NaN); elementwise_affine=False holds neither (params() empty, no
    gradients, assigning one refused); bias=False holds the weight only."""
    ln = LayerNorm(4)
    assert list(ln.params()) == ["weight", "bias"]
    np.testing.assert_array_equal(ln.weight, np.ones(4))
    np.testing.assert_array_equal(ln.bias, np.zeros(4))
    assert ln.parameter_shapes() == {"weight": (4,), "bias": (4,)}
    assert list(npcam.Sequential(ln).state_dict()) == ["0.weight", "0.bias"]
    with pytest.raises(ValueError, match=r"LayerNorm\.weight must have shape \(4,\), got \(5,\)"):
        ln.weight = np.ones(5)
    with pytest.raises(ValueError, match="finite"):
        ln.bias = np.array([0.0, np.nan, 0.0, 0.0])
    with pytest.raises(TypeError, match="LayerNorm.weight"):
        ln.weight = None
    ln.bias = [1, 2, 3, 4]
    assert ln.bias.dtype == np.float64

    bare = LayerNorm(4, elementwise_affine=False)
    assert bare.params() == {} and bare.weight is None and bare.bias is None
    assert bare.parameter_shapes() == {}
    out, cache = bare.run(np.arange(8.0).reshape(2, 4))
    assert bare.vjp(np.ones((2, 4)), cache, param_grads=True)[1] == {}
    with pytest.raises(ValueError, match="LayerNorm.weight must stay None"):
        bare.weight = np.ones(4)
    nobias = LayerNorm(4, bias=False)
    assert list(nobias.params()) == ["weight"] and nobias.bias is None
    out, cache = nobias.run(np.arange(8.0).reshape(2, 4))
    assert list(nobias.vjp(np.ones((2, 4)), cache, param_grads=True)[1]) == ["weight"]
    with pytest.raises(ValueError, match="LayerNorm.bias must stay None"):
        nobias.bias = np.zeros(4)


def test_layer_norm_argument_errors():
    """Bad arguments name themselves: normalized_shape longer than one axis, empty, zero,
    over MAX_CHANNELS, a float or a bool; eps not a positive finite number; non-bool
    flags; an input whose last axis is not C, or a 0-D input; the functional pair checks
    normalized_shape against x and the parameter shapes."""
    for bad in ((3, 4), [2, 2], ()):
        with pytest.raises(ValueError, match="normalized_shape must be an int or a 1-tuple"):
            LayerNorm(bad)
    with pytest.raises(ValueError, match="normalized_shape must be a positive int"):
        LayerNorm(0)
    with pytest.raises(ValueError, match="normalized_shape must be at most"):
        LayerNorm(10**9)
    for bad in (2.5, True, "4", (4.0,)):
        with pytest.raises(TypeError, match="normalized_shape"):
            LayerNorm(bad)
    for bad in (0.0, -1e-5, float("inf"), float("nan"), "1e-5", True):
        with pytest.raises(ValueError, match="eps must be a positive finite number"):
            LayerNorm(4, eps=bad)
    with pytest.raises(TypeError, match="elementwise_affine must be a bool"):
        LayerNorm(4, elementwise_affine=1)
    with pytest.raises(TypeError, match="bias must be a bool"):
        LayerNorm(4, bias="yes")
    ln = LayerNorm((4,))
    assert ln.normalized_shape == (4,)
    for bad in (np.ones((2, 5)), np.ones((4, 3)), np.array(1.0)):
        with pytest.raises(ValueError, match="the input of LayerNorm must have 4 values on its last axis"):
            ln.forward(bad)
    with pytest.raises(ValueError, match="x must have normalized_shape"):
        FA.layer_norm_forward(np.ones((2, 5)), [4])
    with pytest.raises(ValueError, match="normalized_shape must be an int or a 1-tuple"):
        FA.layer_norm_forward(np.ones((2, 5)), [2, 5])
    with pytest.raises(ValueError, match="weight must have shape"):
        FA.layer_norm_forward(np.ones((2, 4)), 4, np.ones(1))
    with pytest.raises(ValueError, match="bias must have shape"):
        FA.layer_norm_forward(np.ones((2, 4)), 4, None, np.ones((1, 4)))


def test_layer_norm_overflow_is_an_error():
    """|x| ~ 1e200 makes the variance overflow (as in torch): a ValueError saying so, not
    a silent NaN output."""
    with pytest.raises(ValueError, match="overflowed"):
        LayerNorm(3).forward(np.array([[1e200, -1e200, 0.0]]))


# ======================================================= the Layer contract, all layers
def _layers():
    ln = LayerNorm(5)
    ln.weight, ln.bias = _ln_params(np.random.default_rng(9), 5)
    return [ReLU6(), Hardsigmoid(), Hardswish(), Sigmoid(), SiLU(), GELU(), ln]


LAYER_IDS = [type(layer).__name__ for layer in _layers()]


def test_gelu_approximate_argument():
    """GELU() and GELU(approximate="none") are the exact GELU; "tanh" (torch's other
    option) and anything else is a ValueError naming approximate; a non-string a
    TypeError."""
    assert GELU().approximate == GELU("none").approximate == "none"
    for bad in ("tanh", "exact", "None"):
        with pytest.raises(ValueError, match="approximate must be 'none'"):
            GELU(approximate=bad)
    with pytest.raises(TypeError, match="approximate"):
        GELU(None)


@pytest.mark.parametrize("layer", _layers(), ids=LAYER_IDS)
def test_config_is_json_and_rebuilds(layer):
    """config() is {"type": class name, **constructor kwargs}: JSON round-trips, and the
    class called with the kwargs gives an equal config (the architecture, not weights)."""
    cfg = layer.config()
    assert cfg["type"] == type(layer).__name__
    again = json.loads(json.dumps(cfg))
    kwargs = {k: v for k, v in again.items() if k != "type"}
    assert type(layer)(**kwargs).config() == cfg
    expected = {"GELU": {"approximate": "none"},
                "LayerNorm": {"normalized_shape": [5], "eps": 1e-5, "elementwise_affine": True,
                              "bias": True}}.get(cfg["type"], {})
    assert kwargs == expected
    ln = LayerNorm([3], eps=1e-6, elementwise_affine=False)
    assert ln.config() == {"type": "LayerNorm", "normalized_shape": [3], "eps": 1e-6,
                           "elementwise_affine": False, "bias": False}


@pytest.mark.parametrize("layer", _layers(), ids=LAYER_IDS)
def test_relu_rule_does_not_change_these_layers(layer):
    """Guided and deconvnet rules apply only to ReLU: with a dout of both signs (where a
    ReLU rule would zero the negative entries) every rule gives the standard dx and the
    same parameter gradients."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 5)) * 4
    out, cache = layer.run(x)
    dout = rng.standard_normal(out.shape)
    assert (dout < 0).any()
    dx, grads = layer.vjp(dout, cache, relu_rule="standard", param_grads=True)
    assert (dx < 0).any()
    for rule in ("guided", "deconvnet"):
        dx_r, grads_r = layer.vjp(dout, cache, relu_rule=rule, param_grads=True)
        np.testing.assert_array_equal(dx_r, dx)
        assert grads_r.keys() == grads.keys()
        for k in grads:
            np.testing.assert_array_equal(grads_r[k], grads[k])


@pytest.mark.parametrize("dtype", [np.int64, np.float32, np.float64])
@pytest.mark.parametrize("layer", _layers(), ids=LAYER_IDS)
def test_float64_everywhere_and_grads_only_on_request(layer, dtype):
    """Integer and float32 inputs and douts come out float64 (output, dx, parameter
    gradients); grads is {} unless param_grads, then exactly the layer's parameters."""
    x = (np.arange(30) % 11 - 5).reshape(6, 5).astype(dtype)
    out, cache = layer.run(x)
    assert out.dtype == np.float64 and out.shape == x.shape
    dx, grads = layer.vjp(np.ones(out.shape, dtype=dtype), cache)
    assert dx.dtype == np.float64 and grads == {}
    dx, grads = layer.vjp(np.ones(out.shape, dtype=dtype), cache, param_grads=True)
    assert set(grads) == set(layer.params())
    for g in grads.values():
        assert g.dtype == np.float64


@pytest.mark.parametrize("layer", _layers(), ids=LAYER_IDS)
def test_layer_keeps_no_state_and_validates(layer):
    """run/vjp leave the layer's attributes as they were (the cache is returned, one
    instance may serve several call sites); a dout of the wrong shape or with NaN is a
    ValueError naming dout; a NaN input a ValueError; a foreign cache a TypeError."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 5))
    before = copy.deepcopy(vars(layer))
    out, cache = layer.run(x)
    layer.vjp(np.ones_like(out), cache, param_grads=True)
    after = vars(layer)
    assert set(after) == set(before)
    for k, v in before.items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(after[k], v)
        else:
            assert after[k] == v
    for bad in (np.ones((1, 5)), np.ones((2, 5, 1)), np.full((2, 5), np.nan)):
        with pytest.raises(ValueError, match="dout"):
            layer.vjp(bad, cache)
    with pytest.raises(ValueError, match="finite"):
        layer.run(np.array([[np.nan] * 5]))
    with pytest.raises(TypeError, match="cache"):
        layer.vjp(np.ones_like(out), None)


@pytest.mark.parametrize("shape", [(), (7,), (2, 3, 4, 5)])
@pytest.mark.parametrize("name", NAMES)
def test_elementwise_layers_take_any_shape(name, shape):
    """An element-wise layer maps any shape (0-D included) to the same shape and equals
    its functional forward element by element."""
    cls, fwd, *_ = OPS[name]
    x = np.random.default_rng(7).standard_normal(shape) * 4
    out = cls().forward(x)
    assert out.shape == shape
    np.testing.assert_array_equal(out, fwd(x)[0])
