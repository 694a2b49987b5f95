r"""Cross-check of asymmetric padding ``(left, right, top, bottom)`` on Conv2d, MaxPool2d
and AvgPool2d against torch (float64).

Needs the ``crosscheck`` extra (torch). torch's layers pad symmetrically only, so the
references are what the padding means: ``F.pad(x, padding)`` (zeros; ``value=-inf`` for
the max) followed by the unpadded ``F.conv2d`` / ``F.max_pool2d`` / ``F.avg_pool2d``; for
``count_include_pad=False`` the window sums of the zero-padded input over those of the
padded mask of ones (both ``F.avg_pool2d(..., divisor_override=1)``). Forward, input
gradient and every parameter gradient of ``⟨s, out⟩`` (torch's autograd vs npcam's
hand-derived backward) agree to 1e-10 of the reference's scale (the ``check`` fixture);
max-pool's values must agree exactly, ties included.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import npcam
from npcam.nn.layers import AvgPool2d

torch = pytest.importorskip("torch", reason="needs the crosscheck extra (torch)")
TF = torch.nn.functional

pytestmark = pytest.mark.crosscheck

from test_conv_pool_torch import _npcam, _torch_grads  # noqa: E402  (same helpers)

CONVS = [
    # (N, C_in, C_out, kernel, stride, (left, right, top, bottom), groups, (H, W), bias)
    pytest.param(2, 3, 5, 3, 2, (0, 1, 0, 1), 1, (8, 8), True, id="dense-s2-keras-same"),
    pytest.param(2, 3, 4, 3, 1, (0, 1, 1, 2), 1, (7, 6), True, id="dense-s1"),
    pytest.param(2, 2, 3, (2, 4), (1, 2), (3, 0, 1, 0), 1, (5, 9), False, id="dense-nonsquare"),
    pytest.param(2, 6, 9, (3, 2), (2, 1), (1, 0, 2, 0), 3, (7, 6), True, id="grouped"),
    pytest.param(2, 16, 16, 3, 2, (0, 1, 0, 1), 2, (8, 6), False, id="grouped-8-per-group-s2"),
    pytest.param(2, 6, 6, 3, 2, (0, 1, 0, 1), 6, (10, 8), True, id="depthwise-s2-keras-same"),
    pytest.param(2, 5, 5, 5, 1, (1, 3, 2, 0), 5, (7, 9), True, id="depthwise-5x5-s1"),
    pytest.param(2, 4, 4, 5, 2, (1, 2, 2, 1), 4, (9, 8), False, id="depthwise-5x5-s2"),
    pytest.param(2, 3, 6, 3, 2, (1, 0, 0, 1), 3, (7, 8), True, id="depthwise-multiplier"),
    pytest.param(2, 4, 6, 1, 1, (0, 1, 1, 0), 1, (5, 6), True, id="1x1-s1"),
    pytest.param(2, 4, 6, 1, 2, (1, 0, 2, 1), 2, (6, 5), True, id="1x1-grouped-s2"),
]


@pytest.mark.parametrize("n, cin, cout, k, s, pads, groups, hw, bias", CONVS)
def test_conv2d_asymmetric_padding_matches_torch_pad_then_conv(n, cin, cout, k, s, pads, groups, hw, bias,
                                                                check):
    rng = np.random.default_rng(zlib.crc32(repr((cin, cout, k, s, pads, groups)).encode()))
    layer = npcam.Conv2d(cin, cout, k, s, pads, bias=bias, groups=groups, rng=rng)
    assert layer.padding == pads
    x = rng.standard_normal((n, cin, *hw))
    out, seed, dx, grads = _npcam(layer, x, rng)
    params = [layer.weight] + ([layer.bias] if bias else [])

    def fn(xt, w, b=None):
        return TF.conv2d(TF.pad(xt, pads), w, b, stride=layer.stride, groups=groups)

    ref, ref_dx, ref_grads = _torch_grads(fn, x, params, seed)
    assert out.shape == ref.shape
    check("asym conv out", out, ref)
    check("asym conv dx", dx, ref_dx)
    check("asym conv dW", grads["weight"], ref_grads[0])
    if bias:
        check("asym conv db", grads["bias"], ref_grads[1])


POOLS = [
    # (kernel, stride, (left, right, top, bottom), (H, W))
    pytest.param(3, 2, (0, 1, 0, 1), (8, 8), id="k3-s2-keras-same"),
    pytest.param(3, 1, (1, 0, 0, 1), (6, 7), id="k3-s1"),
    pytest.param(2, 2, (0, 1, 1, 0), (5, 5), id="k2-s2-odd"),
    pytest.param((3, 5), (1, 2), (2, 1, 0, 1), (5, 9), id="nonsquare"),
    pytest.param((5, 3), 2, (0, 1, 2, 0), (9, 6), id="nonsquare-tall"),
]


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("k, s, pads, hw", POOLS)
def test_max_pool_asymmetric_padding_matches_torch_minus_inf_pad_then_pool(k, s, pads, hw, ties, check):
    rng = np.random.default_rng(len(hw) * 100 + sum(pads) + 7 * ties)
    shape = (2, 3, *hw)
    x = rng.integers(-2, 3, shape).astype(np.float64) if ties else rng.standard_normal(shape)
    layer = npcam.MaxPool2d(k, s, pads)
    out, seed, dx, _ = _npcam(layer, x, rng)
    kernel, stride = layer.kernel_size, layer.stride
    ref, ref_dx, _ = _torch_grads(
        lambda xt: TF.max_pool2d(TF.pad(xt, pads, value=-np.inf), kernel, stride), x, [], seed)
    assert out.shape == ref.shape
    np.testing.assert_array_equal(out, ref)
    check("asym maxpool dx", dx, ref_dx)


@pytest.mark.parametrize("include", [True, False])
@pytest.mark.parametrize("k, s, pads, hw", POOLS)
def test_avg_pool_asymmetric_padding_matches_torch(k, s, pads, hw, include, check):
    rng = np.random.default_rng(len(hw) * 200 + sum(pads) + include)
    x = rng.standard_normal((2, 3, *hw))
    layer = AvgPool2d(k, s, pads, count_include_pad=include)
    out, seed, dx, _ = _npcam(layer, x, rng)
    kernel, stride = layer.kernel_size, layer.stride

    def fn(xt):
        if include:  # the padding counts as zeros: divisor kH·kW
            return TF.avg_pool2d(TF.pad(xt, pads), kernel, stride)
        sums = TF.avg_pool2d(TF.pad(xt, pads), kernel, stride, divisor_override=1)
        counts = TF.avg_pool2d(TF.pad(torch.ones_like(xt), pads), kernel, stride, divisor_override=1)
        return sums / counts.detach()

    ref, ref_dx, _ = _torch_grads(fn, x, [], seed)
    assert out.shape == ref.shape
    check("asym avgpool out", out, ref)
    check("asym avgpool dx", dx, ref_dx)


def test_symmetric_four_tuple_matches_torch_symmetric_layers(check):
    """A symmetric 4-tuple is torch's own symmetric padding: Conv2d / MaxPool2d /
    AvgPool2d with (1, 1, 2, 2) equal torch's layers with padding (2, 1), ceil mode
    included for the pools."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 9, 8))
    conv = npcam.Conv2d(3, 4, 5, 2, (1, 1, 2, 2), rng=rng)
    w, b = torch.from_numpy(conv.weight), torch.from_numpy(conv.bias)
    ref = TF.conv2d(torch.from_numpy(x), w, b, 2, (2, 1))
    check("asym conv out", conv.forward(x), ref)
    pool = npcam.MaxPool2d(5, 2, (1, 1, 2, 2), ceil_mode=True)
    ref = TF.max_pool2d(torch.from_numpy(x), 5, 2, (2, 1), ceil_mode=True)
    np.testing.assert_array_equal(pool.forward(x), ref.numpy())
    avg = AvgPool2d(5, 2, (1, 1, 2, 2), ceil_mode=True, count_include_pad=False)
    ref = TF.avg_pool2d(torch.from_numpy(x), 5, 2, (2, 1), ceil_mode=True, count_include_pad=False)
    check("asym avgpool out", avg.forward(x), ref)
