"""Graph ops (npcam/nn/ops.py): each backward pass against central differences (< 1e-8)
and as the exact adjoint of the forward map (the dot-product test, ≤ 1e-12), on
hypothesis-drawn shapes, plus hand cases and argument errors."""

from __future__ import annotations

import numpy as np
import pytest
from _support import scaled_error
from hypothesis import given, settings
from hypothesis import strategies as st

from npcam.nn import ops
from npcam.verify.gradcheck import numerical_gradient

SETTINGS = settings(max_examples=25, deadline=None)


def _vjp(op, xs, dout):
    _, cache = op._forward_many([np.array(x) for x in xs])
    return op._backward_many(dout, cache, "standard", True)


def _check_op(op, xs, rng):
    """Central differences of ⟨v, f(x_1, …)⟩ for every input, and the adjoint identity
    ⟨v, J_i u⟩ = ⟨J_iᵀ v, u⟩ (every op here is linear in each input with the others fixed)."""
    out, _ = op._forward_many([x.copy() for x in xs])
    outs = out if isinstance(out, tuple) else (out,)
    vs = tuple(rng.standard_normal(o.shape) for o in outs)
    dout = vs if isinstance(out, tuple) else vs[0]
    dxs, _ = _vjp(op, xs, dout)

    def flat_out(inputs):
        o = op._forward_many(inputs)[0]
        return np.concatenate([a.ravel() for a in (o if isinstance(o, tuple) else (o,))])

    v_flat = np.concatenate([v.ravel() for v in vs])
    for i, x in enumerate(xs):
        if dxs[i] is None:
            continue
        xi = x.copy()
        others = [a.copy() for a in xs]

        def f(z, i=i, others=others):
            inputs = list(others)
            inputs[i] = z
            return flat_out(inputs)

        num = numerical_gradient(f, xi, v_flat)
        assert scaled_error(dxs[i], num) < 1e-8, (type(op).__name__, i)
        # adjoint: J_i u by linearity in x_i (difference of two evaluations is exact up to round-off)
        u = rng.standard_normal(x.shape)
        base = list(xs)
        plus = list(xs)
        plus[i] = xs[i] + u
        ju = flat_out(plus) - flat_out(base)
        lhs = float(v_flat @ ju)
        rhs = float(np.sum(dxs[i] * u))
        assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs), float(np.abs(v_flat).sum() * np.abs(ju).max()))


shapes4 = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 5), st.integers(1, 5))


@SETTINGS
@given(shapes4, st.integers(0, 2**31 - 1))
def test_add_and_broadcast_add(shape, seed):
    """Add passes dout to both operands; a broadcast operand gets it summed over the
    broadcast axes."""
    rng = np.random.default_rng(seed)
    _check_op(ops.Add(), [rng.standard_normal(shape), rng.standard_normal(shape)], rng)
    _check_op(ops.Add(), [rng.standard_normal(shape), rng.standard_normal((shape[1], 1, 1))], rng)


@SETTINGS
@given(shapes4, st.integers(0, 2**31 - 1))
def test_mul_se_gate_and_layer_scale(shape, seed):
    """The product rule with broadcasting: an SE gate (N, C, 1, 1) and a layer scale
    (C, 1, 1) get dout·x summed over the axes they were broadcast along."""
    rng = np.random.default_rng(seed)
    n, c, h, w = shape
    _check_op(ops.Mul(), [rng.standard_normal(shape), rng.standard_normal((n, c, 1, 1))], rng)
    _check_op(ops.Mul(), [rng.standard_normal((c, 1, 1)), rng.standard_normal(shape)], rng)


@SETTINGS
@given(st.lists(st.integers(1, 4), min_size=1, max_size=6), st.integers(0, 3), st.integers(0, 2**31 - 1))
def test_concat_and_split_are_adjoint(sizes, dim, seed):
    """Concat's backward cuts dout at the forward offsets; Split's backward concatenates
    (zeros for a part that gets no gradient)."""
    rng = np.random.default_rng(seed)
    base = [2, 3, 2, 3]
    xs = []
    for s in sizes:
        shape = list(base)
        shape[dim] = s
        xs.append(rng.standard_normal(shape))
    _check_op(ops.Concat(dim), xs, rng)
    whole = np.concatenate(xs, axis=dim)
    _check_op(ops.Split(list(sizes), dim), [whole], rng)
    out, cache = ops.Split(list(sizes), dim)._forward_many([whole])
    for a, b in zip(out, xs, strict=True):
        np.testing.assert_array_equal(a, b)
    # a part without gradient contributes zeros
    nothing = tuple([None] * len(sizes))
    dx = ops.Split(list(sizes), dim)._backward_many(nothing, cache, "standard", False)[0][0]
    assert not dx.any()


def test_chunk_follows_torch_sizes():
    """x.chunk(3) of 7 channels: parts 3, 3, 1 (ceil(7/3) each, the last smaller)."""
    x = np.arange(2 * 7 * 2 * 2, dtype=float).reshape(2, 7, 2, 2)
    parts, _ = ops.Chunk(3, 1)._forward_many([x])
    assert [p.shape[1] for p in parts] == [3, 3, 1]
    with pytest.raises(ValueError, match="gives 2 parts"):
        ops.Chunk(3, 1)._forward_many([x[:, :4]])


@SETTINGS
@given(st.permutations([0, 1, 2, 3]), st.integers(0, 2**31 - 1))
def test_permute_and_transpose(dims, seed):
    """Permute's backward is the inverse permutation; Transpose is its own inverse."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, 4, 5))
    _check_op(ops.Permute(dims), [x], rng)
    _check_op(ops.Transpose(1, 3), [x], rng)
    _check_op(ops.Transpose(1, 2), [rng.standard_normal((2, 2, 3, 2, 2))], rng)


def test_reshape_with_size_references_is_the_channel_shuffle():
    """ShuffleNet's channel shuffle, view(N, 2, C//2, H, W) → transpose(1, 2) → view(N, C, H, W),
    with sizes read at run time from a reference tensor, maps channel c = g·(C/2) + j to
    position j·2 + g; its backward is the inverse permutation."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 6, 2, 4))
    v1 = ops.Reshape(["0.0", 2, "0.1//2", "0.2", "0.3"])
    t = ops.Transpose(1, 2)
    v2 = ops.Reshape(["1.0", "1.1", "1.2", "1.3"])
    a, _ = v1._forward_many([x])
    b, _ = t._forward_many([a])
    c, _ = v2._forward_many([b, x])
    perm = [g * 3 + j for j in range(3) for g in range(2)]
    np.testing.assert_array_equal(c, x[:, perm])
    _check_op(v1, [x], rng)
    dxs, _ = _vjp(v2, [b, x], rng.standard_normal(c.shape))
    assert dxs[1] is None  # a shape reference gets no gradient
    # a batch size not known at import: the same op on batch 5
    assert v1._forward_many([rng.standard_normal((5, 6, 2, 4))])[0].shape == (5, 2, 3, 2, 4)


def test_mean_index_unsqueeze_constants():
    """Mean spreads dout/Z over the averaged positions; Index scatters into zeros; the
    constant ops scale or pass dout."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4, 5))
    for op in (ops.Mean((2, 3)), ops.Mean((2, 3), keepdim=True), ops.Mean(-1), ops.Index((slice(None), 1)),
               ops.Index([slice(None), [0, 3, 2]]), ops.Unsqueeze(1), ops.MulConstant(0.458),
               ops.AddConstant(-0.03), ops.Identity()):
        _check_op(op, [x], rng)
    np.testing.assert_array_equal(ops.Mean((2, 3))._forward(x)[0], x.mean(axis=(2, 3)))
    np.testing.assert_array_equal(ops.Index((slice(None), 0))._forward(x)[0], x[:, 0])


def test_parameter_node_gets_dout():
    p = ops.Parameter((3, 1, 1))
    p.value = np.arange(3.0).reshape(3, 1, 1)
    out, cache = p._forward_many([])
    np.testing.assert_array_equal(out, p.value)
    dxs, grads = p._backward_many(np.ones((3, 1, 1)), cache, "standard", True)
    assert dxs == [] and np.array_equal(grads["value"], np.ones((3, 1, 1)))


def test_op_argument_errors():
    with pytest.raises(ValueError, match="permutation"):
        ops.Permute((0, 0, 1))
    with pytest.raises(ValueError, match="at most one -1"):
        ops.Reshape((-1, -1))
    with pytest.raises(ValueError, match="size reference"):
        ops.Reshape(("a.b",))
    with pytest.raises(TypeError, match="dim must be an int"):
        ops.Concat(1.5)
    with pytest.raises(ValueError, match="agree except along dim"):
        ops.Concat(1)._forward_many([np.zeros((1, 2, 3)), np.zeros((1, 2, 4))])
    with pytest.raises(ValueError, match="add up"):
        ops.Split([1, 1], 1)._forward_many([np.zeros((1, 3))])
    with pytest.raises(ValueError, match="finite"):
        ops.AddConstant(float("nan"))
    with pytest.raises(ValueError, match="cannot view"):
        ops.Reshape((7,))._forward_many([np.zeros((2, 3))])
