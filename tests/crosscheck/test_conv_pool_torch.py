"""Cross-check of grouped/depthwise Conv2d, MaxPool2d (padding, ceil mode), AvgPool2d,
AdaptiveAvgPool2d, N-D Linear and eval-mode BatchNorm2d against torch (float64).

Needs the ``crosscheck`` extra (torch). For every layer: the forward, the input gradient
and every parameter gradient of ``⟨s, out⟩`` (torch's autograd vs npcam's hand-derived
backward) agree to 1e-10 of the reference's scale (``max|ours − ref| / max|ref|``, the
``check`` fixture; the worst errors are printed at the end of the run). Max-pool's
output sizes and values must agree exactly.
"""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest

import npcam
from npcam.nn.layers import AdaptiveAvgPool2d, AvgPool2d

torch = pytest.importorskip("torch", reason="needs the crosscheck extra (torch)")
TF = torch.nn.functional

pytestmark = pytest.mark.crosscheck


def _torch_grads(fn, x, params, seed):
    """out = fn(x, *params) in torch float64, and the gradients of ⟨seed, out⟩ w.r.t. x
    and every parameter (autograd)."""
    xt = torch.tensor(x, requires_grad=True)
    pts = [torch.tensor(p, requires_grad=True) for p in params]
    out = fn(xt, *pts)
    out.backward(torch.from_numpy(seed))
    return out.detach().numpy(), xt.grad.numpy(), [p.grad.numpy() for p in pts]


def _npcam(layer, x, seed_rng):
    out, cache = layer.run(x)
    seed = seed_rng.standard_normal(out.shape)
    dx, grads = layer.vjp(seed, cache, param_grads=True)
    return out, seed, dx, grads


# ================================================================================ conv
CONVS = [
    # (N, C_in, C_out, kernel, stride, padding, groups, (H, W), bias)
    (2, 6, 6, 3, 1, 1, 6, (9, 8), True),  # depthwise 3×3 (MobileNet)
    (2, 8, 8, 3, 2, 1, 8, (11, 10), False),  # depthwise 3×3/s2 on odd sizes
    (2, 5, 5, 5, 1, 2, 5, (7, 9), True),  # depthwise 5×5 (EfficientNet)
    (1, 4, 4, 7, 1, 3, 4, (8, 8), True),  # depthwise 7×7 (ConvNeXt)
    (2, 5, 5, 5, 2, 2, 5, (9, 6), False),  # depthwise 5×5/s2
    (2, 3, 6, 3, 1, 1, 3, (6, 7), True),  # depthwise with channel multiplier 2
    (2, 16, 16, 3, 2, 1, 2, (7, 7), False),  # grouped, 8 channels per group (RegNetY)
    (1, 24, 24, 3, 1, 1, 3, (6, 5), True),
    (2, 6, 9, (2, 3), (2, 1), (1, 0), 3, (7, 6), True),  # grouped, asymmetric everything
    (2, 4, 6, (1, 7), 1, (0, 3), 1, (5, 9), True),  # Inception-v3's 1×7
    (2, 4, 6, (7, 1), 1, (3, 0), 1, (9, 5), False),  # and 7×1
    (2, 6, 4, 1, 1, 0, 2, (5, 5), True),  # grouped pointwise (ShuffleNet v1 style)
    (2, 3, 8, 4, 4, 0, 1, (8, 12), True),  # ConvNeXt patchify stem
]


@pytest.mark.parametrize("case", CONVS, ids=lambda c: f"g{c[6]}-k{c[3]}-s{c[4]}-p{c[5]}")
def test_conv2d_matches_torch(case, check):
    """Conv2d(groups) vs torch.nn.functional.conv2d: out, dx, dW, db."""
    n, cin, cout, k, s, p, groups, hw, bias = case
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    layer = npcam.Conv2d(cin, cout, k, s, p, bias=bias, groups=groups, rng=rng)
    x = rng.standard_normal((n, cin, *hw))
    out, seed, dx, grads = _npcam(layer, x, rng)
    params = [layer.weight] + ([layer.bias] if bias else [])
    ref, rdx, rgrads = _torch_grads(
        lambda xt, wt, *bt: TF.conv2d(xt, wt, bt[0] if bt else None, layer.stride, layer.padding, 1, groups),
        x, params, seed)
    check("conv2d_groups.out", out, ref)
    check("conv2d_groups.dx", dx, rdx)
    check("conv2d_groups.dW", grads["weight"], rgrads[0])
    if bias:
        check("conv2d_groups.db", grads["bias"], rgrads[1])


def test_depthwise_mobilenet_scale_matches_torch(check):
    """A depthwise 3×3/s2 layer at a realistic size (8 images, 32 channels, 28×28), the
    fast path with several plane blocks."""
    rng = np.random.default_rng(1)
    layer = npcam.Conv2d(32, 32, 3, 2, 1, bias=False, groups=32, rng=rng)
    x = rng.standard_normal((8, 32, 28, 28))
    out, seed, dx, grads = _npcam(layer, x, rng)
    ref, rdx, rgrads = _torch_grads(lambda xt, wt: TF.conv2d(xt, wt, None, 2, 1, 1, 32), x, [layer.weight],
                                    seed)
    check("conv2d_groups.out", out, ref)
    check("conv2d_groups.dx", dx, rdx)
    check("conv2d_groups.dW", grads["weight"], rgrads[0])


# ============================================================================ max-pool
POOL_GRID = [(n, k, s, p, ceil) for n in (3, 4, 5, 6, 7, 9) for k in (1, 2, 3) for s in (1, 2, 3)
             for p in range(k // 2 + 1) for ceil in (False, True) if n + 2 * p >= k]


@pytest.mark.parametrize("n, k, s, p, ceil", POOL_GRID)
def test_max_pool_matches_torch(n, k, s, p, ceil, check):
    """MaxPool2d(k, s, p, ceil_mode) vs torch: the output size and values exactly, the
    input gradient to rounding (overlapping windows add in another order) — with distinct
    values and with ties (integers in {−1, 0, 1}: the winner is torch's first maximum in
    row-major order, or the gradient would land elsewhere), non-square maps, and kernel,
    stride and padding differing between the axes."""
    rng = np.random.default_rng(n * 1000 + k * 100 + s * 10 + p + 5000 * ceil)
    w = n + 2
    kk, ss, pp = (k, max(1, k - 1)), (s, 1 + s % 3), (p, max(0, min(p, (k - 1) // 2)))
    layer = npcam.MaxPool2d(kk, ss, pp, ceil_mode=ceil)
    for x in (rng.permutation(2 * 3 * n * w).reshape(2, 3, n, w) / 7.0,
              rng.integers(-1, 2, (2, 3, n, w)).astype(np.float64)):
        out, seed, dx, _ = _npcam(layer, x, rng)
        ref, rdx, _ = _torch_grads(lambda xt: TF.max_pool2d(xt, kk, ss, pp, ceil_mode=ceil), x, [], seed)
        assert out.shape == ref.shape
        np.testing.assert_array_equal(out, ref)
        check("max_pool2d.dx", dx, rdx)


def test_max_pool_all_minus_one_with_padding_matches_torch():
    """All-(−1) input with padding: torch's gradient goes to the first real cell of each
    window, never to padding — npcam's too, exactly (ResNet's k3/s2/p1 and GoogLeNet's
    k3/s1/p1 ceil-mode pools)."""
    for k, s, p, ceil, hw in ((3, 2, 1, False, (7, 6)), (3, 1, 1, True, (5, 5)), (2, 2, 1, True, (5, 7))):
        x = -np.ones((1, 2, *hw))
        layer = npcam.MaxPool2d(k, s, p, ceil_mode=ceil)
        out, cache = layer.run(x)
        seed = np.arange(out.size, dtype=np.float64).reshape(out.shape) + 1
        dx, _ = layer.vjp(seed, cache)
        ref, rdx, _ = _torch_grads(lambda xt, a=(k, s, p, ceil): TF.max_pool2d(xt, *a[:3], ceil_mode=a[3]),
                                   x, [], seed)
        np.testing.assert_array_equal(out, ref)
        np.testing.assert_array_equal(dx, rdx)


# ======================================================================== average pool
@pytest.mark.parametrize("n, k, s, p, ceil", POOL_GRID)
@pytest.mark.parametrize("include", [True, False])
def test_avg_pool_matches_torch(n, k, s, p, ceil, include, check):
    """AvgPool2d(k, s, p, ceil_mode, count_include_pad) vs torch.nn.functional.avg_pool2d:
    output size exactly, out and dx to 1e-10 (torch's divisor rule at the padding and at
    the ceil-mode overhang)."""
    rng = np.random.default_rng(n * 1000 + k * 100 + s * 10 + p + 5000 * ceil + 7 * include)
    w = n + 3
    kk, ss, pp = (k, k + 1), (s, 1 + s % 3), (p, min(p, (k + 1) // 2))
    layer = AvgPool2d(kk, ss, pp, ceil_mode=ceil, count_include_pad=include)
    x = rng.standard_normal((2, 3, n, w))
    out, seed, dx, _ = _npcam(layer, x, rng)
    ref, rdx, _ = _torch_grads(
        lambda xt: TF.avg_pool2d(xt, kk, ss, pp, ceil_mode=ceil, count_include_pad=include), x, [], seed)
    assert out.shape == ref.shape
    check("avg_pool2d.out", out, ref)
    check("avg_pool2d.dx", dx, rdx)


# ==================================================================== adaptive pooling
@pytest.mark.parametrize("h", range(1, 13))
def test_adaptive_avg_pool_matches_torch(h, check):
    """AdaptiveAvgPool2d((oh, ow)) vs torch for H = 1..12, W ∈ {1, 5, 7, 14}, every
    oh, ow ∈ 1..9 (overlapping windows, repeated inputs, identity, global)."""
    rng = np.random.default_rng(h)
    for w, oh, ow in itertools.product((1, 5, 7, 14), range(1, 10), (1, 2, 3, 6, 7, 9)):
        layer = AdaptiveAvgPool2d((oh, ow))
        x = rng.standard_normal((2, 2, h, w))
        out, seed, dx, _ = _npcam(layer, x, rng)
        ref, rdx, _ = _torch_grads(lambda xt, o=(oh, ow): TF.adaptive_avg_pool2d(xt, o), x, [], seed)
        assert out.shape == ref.shape
        check("adaptive_avg_pool2d.out", out, ref)
        check("adaptive_avg_pool2d.dx", dx, rdx)


def test_adaptive_none_entries_match_torch(check):
    """None keeps that axis's input size, as torch.nn.AdaptiveAvgPool2d((None, k))."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 10))
    for size in ((None, 4), (3, None), (None, None)):
        out, seed, dx, _ = _npcam(AdaptiveAvgPool2d(size), x, rng)
        xt = torch.tensor(x, requires_grad=True)
        ref = torch.nn.AdaptiveAvgPool2d(size)(xt)
        ref.backward(torch.from_numpy(seed))
        assert out.shape == tuple(ref.shape)
        check("adaptive_avg_pool2d.out", out, ref)
        check("adaptive_avg_pool2d.dx", dx, xt.grad)


# ============================================================== Linear N-D, BatchNorm2d
@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 5), (2, 4, 3, 5)])
def test_linear_nd_matches_torch(shape, check):
    """Linear on the last axis of an N-D input (ConvNeXt's MLP on (N, H, W, C)): out, dx,
    dW and db (sums over all leading axes)."""
    rng = np.random.default_rng(len(shape))
    layer = npcam.Linear(5, 4, rng=rng)
    x = rng.standard_normal(shape)
    out, seed, dx, grads = _npcam(layer, x, rng)
    ref, rdx, (rdw, rdb) = _torch_grads(TF.linear, x, [layer.weight, layer.bias], seed)
    check("linear_nd.out", out, ref)
    check("linear_nd.dx", dx, rdx)
    check("linear_nd.dW", grads["weight"], rdw)
    check("linear_nd.db", grads["bias"], rdb)


def test_batchnorm_eval_after_a_pool_matches_torch(check):
    """Eval-mode BatchNorm2d on the output of a pool (DenseNet's pre-activation BN): out,
    dx, dγ, dβ vs torch's batch_norm(training=False)."""
    rng = np.random.default_rng(3)
    bn = npcam.BatchNorm2d(4, eps=1e-3)
    bn.weight, bn.bias = rng.standard_normal(4), rng.standard_normal(4)
    bn.running_mean, bn.running_var = rng.standard_normal(4), rng.uniform(0.2, 2.0, 4)
    x = AvgPool2d(2, ceil_mode=True).forward(rng.standard_normal((2, 4, 7, 9)))
    out, seed, dx, grads = _npcam(bn, x, rng)
    mean, var = torch.from_numpy(bn.running_mean), torch.from_numpy(bn.running_var)
    ref, rdx, (rg, rb) = _torch_grads(
        lambda xt, gt, bt: TF.batch_norm(xt, mean, var, gt, bt, training=False, eps=1e-3), x,
        [bn.weight, bn.bias], seed)
    check("batch_norm2d_eval.out", out, ref)
    check("batch_norm2d_eval.dx", dx, rdx)
    check("batch_norm2d_eval.dgamma", grads["weight"], rg)
    check("batch_norm2d_eval.dbeta", grads["bias"], rb)
