"""The element-wise graph ops an ONNX import needs (npcam/nn/ops.py: Sub, Div, Erf,
ClipAffine, Pad): each backward pass against central differences (< 1e-8), the linear
ones (Sub, Pad) also as exact adjoints, plus values against independent formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _support import scaled_error
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ops import _check_op, _vjp

from npcam.nn import ops
from npcam.verify.gradcheck import numerical_gradient

SETTINGS = settings(max_examples=20, deadline=None)
shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)


def _central(op, xs, rng, i=0):
    out, _ = op._forward_many([x.copy() for x in xs])
    v = rng.standard_normal(out.shape)
    dxs, _ = _vjp(op, xs, v)

    def f(z):
        inputs = [a.copy() for a in xs]
        inputs[i] = z
        return op._forward_many(inputs)[0].ravel()

    num = numerical_gradient(f, xs[i].copy(), v.ravel())
    return scaled_error(dxs[i], num)


@SETTINGS
@given(shapes, st.integers(0, 2**31 - 1))
def test_sub_is_linear_and_broadcasts(shape, seed):
    """Sub(a, b) = a − b is linear in each input: ∂/∂a = 1, ∂/∂b = −1, summed over the
    axes b was broadcast along (checked by central differences and the adjoint identity)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape)
    b = rng.standard_normal(shape[-1:])
    _check_op(ops.Sub(), [a, b], rng)
    assert np.array_equal(ops.Sub()._forward_many([a, b])[0], a - b)


@SETTINGS
@given(shapes, st.integers(0, 2**31 - 1))
def test_div_quotient_rule(shape, seed):
    """Div(a, b) = a / b: ∂/∂a = 1/b, ∂/∂b = −a/b² (central differences on both inputs, b
    kept away from 0)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape)
    b = rng.uniform(0.5, 2.0, shape[-1:]) * rng.choice([-1.0, 1.0], shape[-1:])
    assert _central(ops.Div(), [a, b], rng, 0) < 1e-8
    assert _central(ops.Div(), [a, b], rng, 1) < 1e-8


def test_erf_values_and_derivative():
    """erf against math.erf, and erf'(x) = (2/√π) e^{−x²} by central differences."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, (3, 5))
    out, _ = ops.Erf()._forward_many([x])
    assert np.allclose(out, np.vectorize(math.erf)(x), rtol=0, atol=1e-15)
    assert _central(ops.Erf(), [x], rng) < 1e-8


def test_clip_affine_is_onnx_hardsigmoid():
    """ClipAffine(α, β)(x) = max(0, min(1, αx + β)) (ONNX HardSigmoid); derivative α strictly
    inside (0, 1), 0 outside and at the kinks (torch's Hardsigmoid'(±3) = 0)."""
    alpha, beta = float(np.float32(1 / 6)), 0.5
    op = ops.ClipAffine(alpha, beta)
    x = np.array([-4.0, -3.0, -1.0, 0.0, 2.5, 4.0])
    out, cache = op._forward_many([x])
    assert np.array_equal(out, np.maximum(0, np.minimum(1, alpha * x + beta)))
    dx, _ = op._backward_many(np.ones_like(x), cache, "standard", True)
    assert np.array_equal(dx[0], np.array([0, 0, alpha, alpha, alpha, 0]))
    rng = np.random.default_rng(1)
    x = rng.uniform(-2.9, 2.9, (4, 3))  # away from the kinks
    assert _central(op, [x], rng) < 1e-8
    with pytest.raises(ValueError, match="alpha must be finite"):
        ops.ClipAffine(float("nan"), 0.5)


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=4),
       st.integers(0, 2**31 - 1))
def test_pad_is_zero_embedding_and_its_adjoint_crops(widths, seed):
    """Pad embeds x in zeros (np.pad's widths); its adjoint cuts the padding off dout
    (central differences and the dot-product identity)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(tuple(rng.integers(1, 4) for _ in widths))
    op = ops.Pad(widths)
    out, _ = op._forward_many([x])
    assert out.shape == tuple(n + a + b for n, (a, b) in zip(x.shape, widths, strict=True))
    assert out.sum() == pytest.approx(x.sum(), abs=1e-12)
    _check_op(op, [x], rng)


def test_pad_argument_errors():
    with pytest.raises(TypeError, match="widths"):
        ops.Pad(3)
    with pytest.raises(ValueError, match="at least 0"):
        ops.Pad([(0, -1)])
    with pytest.raises(ValueError, match="2 dimensions"):
        ops.Pad([(0, 0), (1, 1)])._forward_many([np.zeros(3)])
    with pytest.raises(ValueError, match="MAX_PAD"):
        ops.Pad([(0, 10**9)])


@SETTINGS
@given(st.lists(st.integers(1, 4), min_size=2, max_size=4).map(tuple), st.booleans(),
       st.integers(0, 2**31 - 1))
def test_sum_spreads_dout_over_the_summed_axes(shape, keepdim, seed):
    """Sum over the last axes is linear with coefficient 1: ∂L/∂x_i = dout at x_i's
    reduced position (central differences and the adjoint identity), and equals np.sum."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    axes = tuple(range(1, len(shape)))
    op = ops.Sum(axes, keepdim=keepdim)
    assert np.array_equal(op._forward_many([x])[0], x.sum(axis=axes, keepdims=keepdim))
    _check_op(op, [x], rng)
