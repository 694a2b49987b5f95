r"""Tests of ``npcam.nn.layers`` (and ``npcam.fold_batchnorm``): PyTorch's default
initialisation and parameter layout, the simple layers' forward rules, BatchNorm2d's
training/eval statistics worked out by hand, BN folding, config round trips, and the
bad-input contract of DESIGN.md (ValueError/TypeError naming the argument).
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npcam
from npcam.nn.config import layer_from_config


# ========================================================================== initialisation
def _assert_uniform(values, bound, tail, var_tol):
    """All |v| <= bound; min and max within tail·bound of ∓bound; variance within var_tol
    (relative) of bound²/3, the variance of U(−bound, bound); mean ≈ 0."""
    v = values.ravel()
    assert np.all(np.abs(v) <= bound)
    assert v.max() >= bound * (1 - tail) and v.min() <= -bound * (1 - tail)
    assert abs(v.var() / (bound**2 / 3) - 1) < var_tol
    assert abs(v.mean()) < 6 * bound / np.sqrt(3 * v.size)  # 6 standard errors


def test_linear_default_init_is_torch_rule():
    """torch.nn.Linear: weight and bias ~ U(−1/sqrt(in), 1/sqrt(in)). 1e6 weights: the
    extremes lie within 1e-3·bound of ±bound (miss probability e^−500) and the variance
    within 1 % of bound²/3 (≈ 11 standard errors)."""
    lin = npcam.Linear(1000, 1000, rng=0)
    bound = 1 / np.sqrt(1000)
    _assert_uniform(lin.weight, bound, 1e-3, 0.01)
    wide = npcam.Linear(10, 50_000, rng=1)  # many biases, bound 1/sqrt(10)
    _assert_uniform(wide.bias, 1 / np.sqrt(10), 1e-3, 0.02)


def test_conv2d_default_init_is_torch_rule():
    """torch.nn.Conv2d: weight and bias ~ U(±1/sqrt(fan_in)) with fan_in = C_in·kH·kW
    (not C_in alone, not C_out): checked with a non-square kernel."""
    conv = npcam.Conv2d(64, 64, (3, 5), rng=2)
    bound = 1 / np.sqrt(64 * 3 * 5)
    _assert_uniform(conv.weight, bound, 1e-3, 0.02)
    assert np.all(np.abs(conv.bias) <= bound)
    wide = npcam.Conv2d(2, 40_000, (2, 3), rng=3)
    bound = 1 / np.sqrt(2 * 2 * 3)
    _assert_uniform(wide.bias, bound, 1e-3, 0.02)
    _assert_uniform(wide.weight, bound, 1e-3, 0.02)


def test_parameter_shapes_are_torch_layout():
    """Conv weight (C_out, C_in, kH, kW), bias (C_out,); Linear weight (out, in), bias
    (out,); bias=False leaves bias None and out of params(); BatchNorm2d starts at
    γ = 1, β = 0, running mean 0, var 1, num_batches_tracked an int64 scalar 0."""
    conv = npcam.Conv2d(3, 8, (3, 5))
    assert conv.weight.shape == (8, 3, 3, 5) and conv.bias.shape == (8,)
    assert conv.weight.dtype == np.float64 and conv.bias.dtype == np.float64
    assert list(conv.params()) == ["weight", "bias"]
    nb = npcam.Conv2d(3, 8, 1, bias=False)
    assert nb.bias is None and list(nb.params()) == ["weight"]
    lin = npcam.Linear(5, 7)
    assert lin.weight.shape == (7, 5) and lin.bias.shape == (7,)
    assert npcam.Linear(5, 7, bias=False).bias is None
    bn = npcam.BatchNorm2d(4)
    np.testing.assert_array_equal(bn.weight, np.ones(4))
    np.testing.assert_array_equal(bn.bias, np.zeros(4))
    np.testing.assert_array_equal(bn.running_mean, np.zeros(4))
    np.testing.assert_array_equal(bn.running_var, np.ones(4))
    assert bn.num_batches_tracked.shape == () and bn.num_batches_tracked.dtype == np.int64
    assert int(bn.num_batches_tracked) == 0
    assert list(bn.params()) == ["weight", "bias"]
    assert list(bn.buffers()) == ["running_mean", "running_var", "num_batches_tracked"]
    for layer in (npcam.ReLU(), npcam.MaxPool2d(2), npcam.GlobalAvgPool2d(), npcam.Flatten(),
                  npcam.Dropout()):
        assert layer.params() == {} and layer.training is False


def test_rng_reproducibility():
    """The same int seed gives the same weights; another seed other weights; a Generator
    is consumed (two layers from one Generator differ, and equal the same two from a
    fresh Generator of that seed)."""
    a, b = npcam.Conv2d(3, 4, 3, rng=7), npcam.Conv2d(3, 4, 3, rng=7)
    np.testing.assert_array_equal(a.weight, b.weight)
    np.testing.assert_array_equal(a.bias, b.bias)
    assert not np.array_equal(a.weight, npcam.Conv2d(3, 4, 3, rng=8).weight)
    la, lb = npcam.Linear(4, 3, rng=np.int64(5)), npcam.Linear(4, 3, rng=5)
    np.testing.assert_array_equal(la.weight, lb.weight)
    g1, g2 = np.random.default_rng(11), np.random.default_rng(11)
    first, second = npcam.Linear(4, 3, rng=g1), npcam.Linear(4, 3, rng=g1)
    assert not np.array_equal(first.weight, second.weight)
    np.testing.assert_array_equal(first.weight, npcam.Linear(4, 3, rng=g2).weight)
    np.testing.assert_array_equal(second.weight, npcam.Linear(4, 3, rng=g2).weight)
    for bad in ("7", 1.5, True):
        with pytest.raises(TypeError, match="rng"):
            npcam.Linear(2, 2, rng=bad)


# ============================================================================ simple layers
def test_flatten_gap_dropout_forward_rules():
    """Flatten is the identity on (N, K) and a C-order reshape on (N, C, H, W);
    GlobalAvgPool2d gives (N, K) means; Dropout is the identity both ways."""
    x2 = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(npcam.Flatten().forward(x2), x2)
    x4 = np.arange(24.0).reshape(2, 3, 2, 2)
    np.testing.assert_array_equal(npcam.Flatten().forward(x4)[1], np.arange(12.0, 24.0))
    gap = npcam.GlobalAvgPool2d()
    out, cache = gap.run(x4)
    assert out.shape == (2, 3)
    np.testing.assert_array_equal(out, [[1.5, 5.5, 9.5], [13.5, 17.5, 21.5]])
    np.testing.assert_array_equal(gap.vjp(np.ones((2, 3)), cache)[0], np.full((2, 3, 2, 2), 0.25))
    drop = npcam.Dropout(0.5)
    out, cache = drop.run(x4)
    np.testing.assert_array_equal(out, x4)
    np.testing.assert_array_equal(drop.vjp(x4 * 3, cache)[0], x4 * 3)


def test_maxpool_default_stride_is_kernel():
    """MaxPool2d(2) tiles 2×2 windows: a 4×4 arange pools to [[5, 7], [13, 15]]."""
    out = npcam.MaxPool2d(2).forward(np.arange(16.0).reshape(1, 1, 4, 4))
    np.testing.assert_array_equal(out, [[[[5.0, 7.0], [13.0, 15.0]]]])
    assert npcam.MaxPool2d((2, 3)).stride == (2, 3)


def _all_layers():
    return [npcam.Conv2d(3, 2, 3, padding=1, rng=0), npcam.ReLU(), npcam.MaxPool2d(2),
            npcam.BatchNorm2d(3), npcam.GlobalAvgPool2d(), npcam.Flatten(), npcam.Dropout()]


@pytest.mark.parametrize("dtype", [np.int64, np.float32, np.float64])
def test_outputs_are_float64(dtype):
    """Integer and float32 inputs come out float64 from every layer's forward, and the
    backward of a float64 seed (what Sequential.backward passes) is float64 too, as are
    the parameter gradients."""
    x = (np.arange(2 * 3 * 4 * 4) % 7 - 3).reshape(2, 3, 4, 4).astype(dtype)
    for layer in _all_layers():
        out, cache = layer.run(x)
        assert out.dtype == np.float64, type(layer).__name__
        dx, grads = layer.vjp(np.ones(out.shape), cache, param_grads=True)
        assert dx.dtype == np.float64, type(layer).__name__
        assert set(grads) == set(layer.params())
        for g in grads.values():
            assert g.dtype == np.float64
    lin = npcam.Linear(3, 2, rng=0)
    out, cache = lin.run(np.ones((2, 3), dtype=dtype))
    assert out.dtype == np.float64
    assert lin.vjp(np.ones((2, 2)), cache)[0].dtype == np.float64


@pytest.mark.parametrize("dtype", [np.int64, np.float32])
@pytest.mark.parametrize("layer", _all_layers(), ids=lambda layer: type(layer).__name__)
def test_backward_of_non_float64_dout_is_float64(layer, dtype):
    """Layer.vjp is public (DESIGN.md: float64 throughout): an int or float32 dout is
    converted like every other input, so dx and every parameter gradient are float64."""
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4))
    out, cache = layer.run(x)
    dx, grads = layer.vjp(np.ones(out.shape, dtype=dtype), cache, param_grads=True)
    assert dx.dtype == np.float64
    for name, g in grads.items():
        assert g.dtype == np.float64, name


@pytest.mark.parametrize("layer", _all_layers() + [npcam.Linear(3, 2, rng=0)],
                         ids=lambda layer: type(layer).__name__)
def test_backward_validates_dout(layer):
    """DESIGN.md "Bad input": nothing is silently broadcast. A dout whose shape is not the
    last forward's output shape, or that holds NaN, is a ValueError naming dout — not a
    silently broadcast gradient (ReLU, BatchNorm2d, GlobalAvgPool2d, Dropout accept a
    (N, 1, 1, 1), (1, ...) or scalar dout today) nor a bare NumPy error."""
    x = np.random.default_rng(0).standard_normal((2, 3) if isinstance(layer, npcam.Linear)
                                                  else (2, 3, 4, 4))
    out, cache = layer.run(x)
    wrong = [np.ones(out.shape[:1] + (1,) * (out.ndim - 1)), np.ones((1, *out.shape[1:])),
             np.array(1.0)]
    for bad in wrong:
        with pytest.raises(ValueError, match="dout"):
            layer.vjp(bad, cache)
    with pytest.raises(ValueError, match="dout"):
        layer.vjp(np.full(out.shape, np.nan), cache)


def test_vjp_needs_the_cache_of_run():
    """A layer keeps no state: vjp takes the cache its run returned, and anything else
    (None, another object) is a TypeError naming the cache, not a bare AttributeError."""
    for layer in (npcam.Conv2d(1, 1, 1), npcam.Linear(1, 1), npcam.ReLU(), npcam.MaxPool2d(1),
                  npcam.GlobalAvgPool2d(), npcam.Flatten(), npcam.Dropout(),
                  npcam.BatchNorm2d(1)):
        for bad in (None, (1, 2), "cache"):
            with pytest.raises(TypeError, match="cache"):
                layer.vjp(np.ones((1, 1, 1, 1)), bad)


def test_layers_keep_no_cache():
    """Running a layer leaves its attributes as they were: the cache is returned, not
    stored, so the same instance can be called at several places of a model."""
    rng = np.random.default_rng(0)
    for layer in _all_layers() + [npcam.Linear(3, 2, rng=0)]:
        x = rng.standard_normal((2, 3) if isinstance(layer, npcam.Linear) else (2, 3, 4, 4))
        before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(layer).items()}
        out, cache = layer.run(x)
        layer.vjp(np.ones_like(out), cache, param_grads=True)
        after = vars(layer)
        assert set(after) == set(before), type(layer).__name__
        for k, v in before.items():
            if isinstance(v, np.ndarray):
                np.testing.assert_array_equal(after[k], v)
            else:
                assert after[k] == v


def test_parameter_assignment_is_checked():
    """A26/A27: ``net["3"].weight = wrong_shape`` said "cannot reshape array of size 270"
    at the next forward, and a list weight gave "'list' object has no attribute 'T'". Now
    assignment checks: a wrong shape is a ValueError naming the layer, the parameter and
    the expected shape; a list of numbers is converted to a float64 array; NaN refused."""
    conv = npcam.Conv2d(4, 6, 3, rng=0)
    expected = r"Conv2d\.weight must have shape \(6, 4, 3, 3\), got \(6, 5, 3, 3\)"
    with pytest.raises(ValueError, match=expected):
        conv.weight = np.zeros((6, 5, 3, 3))
    lin = npcam.Linear(3, 2, rng=0)
    lin.weight = lin.weight.tolist()
    assert isinstance(lin.weight, np.ndarray) and lin.weight.dtype == np.float64
    out = lin.forward(np.ones((1, 3)))
    np.testing.assert_allclose(out, np.ones((1, 3)) @ lin.weight.T + lin.bias, rtol=1e-15)
    with pytest.raises(ValueError, match="finite"):
        lin.bias = np.array([np.nan, 0.0])
    with pytest.raises(ValueError, match=r"Linear\.bias must have shape \(2,\)"):
        lin.bias = np.zeros(3)


def test_huge_layers_are_refused_before_allocating():
    """A84: ``npcam.Linear(4, 10**10)`` asked NumPy for 298 GiB (MemoryError); a layer
    over MAX_LAYER_PARAMETERS, or a kernel / channel count over its bound, is a ValueError
    before anything is allocated."""
    with pytest.raises(ValueError, match="MAX_LAYER_PARAMETERS"):
        npcam.Linear(4, 10**10)
    with pytest.raises(ValueError, match="kernel_size must be at most 64"):
        npcam.Conv2d(3, 3, 10**6)
    with pytest.raises(ValueError, match="out_channels must be at most 65536"):
        npcam.Conv2d(3, 10**6, 1)


# ============================================================================ batch norm
def test_batchnorm_training_output_is_standardised():
    """Training mode normalises with the batch's own (biased) statistics: with γ = 1,
    β = 0 each channel of the output has mean 0 and variance v/(v + ε) (v the batch's
    biased variance) to 1e-12; with ε = 1e-300 (below v's resolution) variance 1."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 5, 6)) * np.array([1.0, 10.0, 0.1])[None, :, None, None] + 3
    for eps in (1e-5, 1e-300):
        bn = npcam.BatchNorm2d(3, eps=eps)
        bn.training = True
        y = bn.forward(x)
        v = x.var(axis=(0, 2, 3))
        np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0.0, rtol=0, atol=1e-12)
        np.testing.assert_allclose(y.var(axis=(0, 2, 3)), v / (v + eps), rtol=1e-12, atol=0)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1.0, rtol=1e-12, atol=0)


def test_batchnorm_running_stats_by_hand():
    """x (1, 2, 1, 3): channel 0 = [1, 2, 3] (mean 2, biased var 2/3, unbiased 1),
    channel 1 = [0, 0, 6] (mean 2, biased var 8, unbiased 12). With momentum 0.1,
    running = 0.9·running + 0.1·batch (unbiased var):
    step 1: mean [0.2, 0.2], var [0.9 + 0.1, 0.9 + 1.2] = [1.0, 2.1];
    step 2: mean [0.38, 0.38], var [1.0, 0.9·2.1 + 1.2 = 3.09].
    The output uses the biased var: ch0 [−1, 0, 1]/sqrt(2/3 + ε), ch1 [−2, −2, 4]/sqrt(8 + ε).
    num_batches_tracked counts 1, 2."""
    x = np.array([[[[1.0, 2.0, 3.0]], [[0.0, 0.0, 6.0]]]])
    bn = npcam.BatchNorm2d(2)
    bn.training = True
    y = bn.forward(x)
    eps = 1e-5
    np.testing.assert_allclose(y[0, 0, 0], np.array([-1.0, 0.0, 1.0]) / np.sqrt(2 / 3 + eps),
                               rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(y[0, 1, 0], np.array([-2.0, -2.0, 4.0]) / np.sqrt(8 + eps),
                               rtol=1e-14)
    np.testing.assert_allclose(bn.running_mean, [0.2, 0.2], rtol=1e-15)
    np.testing.assert_allclose(bn.running_var, [1.0, 2.1], rtol=1e-15)
    assert int(bn.num_batches_tracked) == 1
    bn.forward(x)
    np.testing.assert_allclose(bn.running_mean, [0.38, 0.38], rtol=1e-15)
    np.testing.assert_allclose(bn.running_var, [1.0, 3.09], rtol=1e-15)
    assert int(bn.num_batches_tracked) == 2
    assert bn.num_batches_tracked.dtype == np.int64

    slow = npcam.BatchNorm2d(2, momentum=0.5)
    slow.training = True
    slow.forward(x)  # 0.5·[0, 0] + 0.5·[2, 2]; 0.5·[1, 1] + 0.5·[1, 12]
    np.testing.assert_allclose(slow.running_mean, [1.0, 1.0], rtol=1e-15)
    np.testing.assert_allclose(slow.running_var, [1.0, 6.5], rtol=1e-15)


def test_batchnorm_eval_uses_running_stats_by_hand():
    """Eval mode: y = γ (x − running_mean)/sqrt(running_var + ε) + β. With ε = 0.25,
    running_mean [1, −2], running_var [3.75, 0] (σ = 2 and 0.5), γ [2, 3], β [0.5, −1]:
    ch0 [1, 5] -> [0.5, 4.5]; ch1 [−2, −1.5] -> [−1, 2]. Nothing is updated."""
    bn = npcam.BatchNorm2d(2, eps=0.25)
    bn.running_mean = np.array([1.0, -2.0])
    bn.running_var = np.array([3.75, 0.0])
    bn.weight = np.array([2.0, 3.0])
    bn.bias = np.array([0.5, -1.0])
    y, cache = bn.run(np.array([[[[1.0, 5.0]], [[-2.0, -1.5]]]]))
    np.testing.assert_array_equal(y, [[[[0.5, 4.5]], [[-1.0, 2.0]]]])
    np.testing.assert_array_equal(bn.running_mean, [1.0, -2.0])
    np.testing.assert_array_equal(bn.running_var, [3.75, 0.0])
    assert int(bn.num_batches_tracked) == 0
    dx, _ = bn.vjp(np.ones((1, 2, 1, 2)), cache)
    np.testing.assert_array_equal(dx, [[[[1.0, 1.0]], [[6.0, 6.0]]]])  # γ/σ = 1 and 6


def test_batchnorm_training_needs_two_values_and_fails_cleanly():
    """One value per channel has no variance: ValueError, and running stats untouched."""
    bn = npcam.BatchNorm2d(2)
    bn.training = True
    with pytest.raises(ValueError, match="input of BatchNorm2d"):
        bn.forward(np.ones((1, 2, 1, 1)))
    np.testing.assert_array_equal(bn.running_mean, [0.0, 0.0])
    np.testing.assert_array_equal(bn.running_var, [1.0, 1.0])
    assert int(bn.num_batches_tracked) == 0


# ========================================================================= fold_batchnorm
def _randomise_bn(model, rng):
    for _, leaf in model.named_layers():
        if isinstance(leaf, npcam.BatchNorm2d):
            k = leaf.num_features
            leaf.weight = rng.standard_normal(k)
            leaf.bias = rng.standard_normal(k)
            leaf.running_mean = rng.standard_normal(k)
            leaf.running_var = rng.uniform(0.1, 3.0, k)
            leaf.eps = float(rng.uniform(1e-5, 0.5))


def _block(cin, cout, bias, rng):
    return npcam.Sequential(npcam.Conv2d(cin, cout, 3, padding=1, bias=bias, rng=rng),
                            npcam.BatchNorm2d(cout), npcam.ReLU())


def _fold_case(nested, c, k, bias, seed):
    rng = np.random.default_rng(seed)
    if nested:
        net = npcam.Sequential(
            features=npcam.Sequential(_block(c, k, bias, rng), npcam.MaxPool2d(2),
                                      _block(k, k, not bias, rng)),
            head=npcam.Sequential(npcam.GlobalAvgPool2d(), npcam.Linear(k, 3, rng=rng)),
        )
    else:
        net = npcam.Sequential(
            npcam.Conv2d(c, k, 3, padding=1, bias=bias, rng=rng), npcam.BatchNorm2d(k),
            npcam.ReLU(), npcam.Conv2d(k, k, 3, stride=2, bias=not bias, rng=rng),
            npcam.BatchNorm2d(k), npcam.ReLU(), npcam.GlobalAvgPool2d(),
            npcam.Linear(k, 3, rng=rng),
        )
    _randomise_bn(net, rng)
    return net, rng.standard_normal((2, c, 6, 5))


@given(st.booleans(), st.integers(1, 3), st.integers(1, 4), st.booleans(),
       st.integers(0, 2**32 - 1))
def test_fold_batchnorm_is_equivalent(nested, c, k, bias, seed):
    """Conv then eval-mode BN is one conv with W' = W·γ/σ, b' = (b − μ)γ/σ + β: the folded
    model's logits equal the original's within 1e-12 of their scale, and so do the feature
    maps under every name that survives (a folded conv's name now holds conv+BN); the
    folded model has no BatchNorm2d left, and the original is not modified."""
    net, x = _fold_case(nested, c, k, bias, seed)
    before = net.state_dict()
    folded = npcam.fold_batchnorm(net)
    assert not any(isinstance(m, npcam.BatchNorm2d) for _, m in folded.named_layers())
    y, yf = net.forward(x), folded.forward(x)
    assert yf.dtype == np.float64
    assert np.max(np.abs(y - yf)) <= 1e-12 * np.max(np.abs(y))
    orig_names = [n for n, _ in net.named_modules()]
    for name, act in folded.activations.items():
        ref = net.activations[name]
        if isinstance(net[name], npcam.Conv2d):  # folded: compare with the BN after it
            ref = net.activations[orig_names[orig_names.index(name) + 1]]
        assert np.max(np.abs(act - ref)) <= 1e-12 * np.max(np.abs(ref))
    after = net.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])


def test_fold_batchnorm_keeps_names():
    """Folding removes exactly the BN names; every other name (leaves and containers) is
    kept, in order; a BN that does not directly follow a conv in its container stays."""
    net, _ = _fold_case(True, 2, 3, True, 0)
    folded = npcam.fold_batchnorm(net)
    assert [n for n, _ in folded.named_modules()] == [
        "features", "features.0", "features.0.0", "features.0.2", "features.1",
        "features.2", "features.2.0", "features.2.2", "head", "head.0", "head.1",
    ]
    flat, _ = _fold_case(False, 2, 3, False, 1)
    assert [n for n, _ in npcam.fold_batchnorm(flat).named_layers()] == [
        "0", "2", "3", "5", "6", "7"]
    kept = npcam.Sequential(
        a=npcam.Sequential(npcam.Conv2d(1, 2, 1)),
        b=npcam.Sequential(npcam.BatchNorm2d(2), npcam.ReLU(), npcam.BatchNorm2d(2)),
    )
    assert [n for n, _ in npcam.fold_batchnorm(kept).named_layers()] == [
        "a.0", "b.0", "b.1", "b.2"]
    assert isinstance(npcam.fold_batchnorm(kept)["b.0"], npcam.BatchNorm2d)


def test_fold_batchnorm_of_training_mode_bn_stays_equivalent():
    """fold_batchnorm promises an *equivalent* model and folds only eval-mode BN (its
    docstring). A BN in training mode normalises with batch statistics, which no fixed
    conv can reproduce, so it must be kept (or refused), never folded with its running
    statistics: the result must compute what the original computes."""
    rng = np.random.default_rng(5)
    net = npcam.Sequential(npcam.Conv2d(2, 3, 3, rng=rng), npcam.BatchNorm2d(3), npcam.ReLU())
    _randomise_bn(net, rng)
    net.train()
    x = rng.standard_normal((4, 2, 5, 5))
    y = net.forward(x)
    try:
        folded = npcam.fold_batchnorm(net)
    except ValueError:
        return  # refusing is acceptable
    folded.train()
    yf = folded.forward(x)
    assert np.max(np.abs(y - yf)) <= 1e-12 * np.max(np.abs(y))


def test_fold_batchnorm_rejects_non_model():
    with pytest.raises(TypeError, match="model"):
        npcam.fold_batchnorm(npcam.Conv2d(1, 1, 1))


# ============================================================================ configs
LEAVES = [
    npcam.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 0), bias=False),
    npcam.Linear(5, 2),
    npcam.ReLU(),
    npcam.MaxPool2d((2, 3), stride=1),
    npcam.GlobalAvgPool2d(),
    npcam.Flatten(),
    npcam.Dropout(0.25),
    npcam.BatchNorm2d(4, eps=1e-3, momentum=0.2),
]


@pytest.mark.parametrize("layer", LEAVES, ids=lambda layer: type(layer).__name__)
def test_layer_config_round_trip(layer):
    """config() is JSON-able and layer_from_config rebuilds a layer of the same type with
    the same config and parameter shapes."""
    cfg = json.loads(json.dumps(layer.config()))
    rebuilt = layer_from_config(cfg)
    assert type(rebuilt) is type(layer)
    assert rebuilt.config() == layer.config()
    assert {k: v.shape for k, v in rebuilt.params().items()} == {
        k: v.shape for k, v in layer.params().items()}
    assert npcam.model_from_config(cfg).config() == layer.config()


def test_model_config_round_trip():
    """A nested Sequential's config rebuilds the same names, types, hyper-parameters and
    parameter shapes (weights fresh)."""
    net = npcam.Sequential(
        features=npcam.Sequential(npcam.Conv2d(3, 4, 3, padding=1), npcam.BatchNorm2d(4),
                                  npcam.ReLU(), npcam.MaxPool2d(2)),
        classifier=npcam.Sequential(npcam.GlobalAvgPool2d(), npcam.Flatten(),
                                    npcam.Dropout(0.1), npcam.Linear(4, 2, bias=False)),
    )
    rebuilt = npcam.model_from_config(json.loads(json.dumps(net.config())))
    assert isinstance(rebuilt, npcam.Sequential)
    assert rebuilt.config() == net.config()
    assert [n for n, _ in rebuilt.named_modules()] == [n for n, _ in net.named_modules()]
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in net.state_dict().items()}


def test_bad_configs():
    with pytest.raises(TypeError, match="config"):
        layer_from_config({"kernel_size": 3})
    with pytest.raises(TypeError, match="config"):
        layer_from_config("Conv2d")
    with pytest.raises(ValueError, match="Nope"):
        layer_from_config({"type": "Nope"})
    with pytest.raises(ValueError, match="Conv2d"):
        layer_from_config({"type": "Conv2d", "in_channels": 1, "out_channels": 1,
                           "kernel_size": 1, "dilation": 2})
    with pytest.raises(ValueError, match="children"):
        npcam.model_from_config({"type": "Sequential"})


# ============================================================================ bad input
CONV = npcam.Conv2d(3, 2, 3, rng=0)


@pytest.mark.parametrize(
    "layer, good_shape, label",
    [
        (CONV, (2, 3, 5, 5), "input of Conv2d"),
        (npcam.Linear(4, 2), (2, 4), "input of Linear"),
        (npcam.ReLU(), (2, 3), "input of ReLU"),
        (npcam.MaxPool2d(2), (1, 2, 4, 4), "input of MaxPool2d"),
        (npcam.GlobalAvgPool2d(), (1, 2, 3, 3), "input of GlobalAvgPool2d"),
        (npcam.Flatten(), (2, 3, 2), "input of Flatten"),
        (npcam.Dropout(), (2, 3), "input of Dropout"),
        (npcam.BatchNorm2d(3), (2, 3, 2, 2), "input of BatchNorm2d"),
    ],
)
def test_bad_input_names_the_argument(layer, good_shape, label):
    """NaN, +inf, −inf -> ValueError; strings, None, booleans, complex -> TypeError; the
    message names the layer's input. A good input of the same shape passes."""
    good = np.ones(good_shape)
    layer.forward(good)
    for bad_value in (np.nan, np.inf, -np.inf):
        bad = good.copy()
        bad.flat[-1] = bad_value
        with pytest.raises(ValueError, match=label):
            layer.forward(bad)
    for bad in ("x", None, good.astype(bool), good.astype(complex)):
        with pytest.raises(TypeError, match=label):
            layer.forward(bad)


@pytest.mark.parametrize(
    "layer, bad_shape, label",
    [
        (CONV, (3, 5, 5), "input of Conv2d"),
        (CONV, (1, 2, 3, 5, 5), "input of Conv2d"),
        (CONV, (2, 4, 5, 5), "input of Conv2d"),  # wrong channel count
        (CONV, (2, 3, 2, 5), "input of Conv2d"),  # too small for the kernel
        (npcam.Linear(4, 2), (2, 5), "input of Linear"),
        (npcam.Linear(4, 2), (2, 2, 2), "input of Linear"),
        (npcam.MaxPool2d(2), (1, 2, 1, 4), "input of MaxPool2d"),
        (npcam.MaxPool2d(2), (2, 4, 4), "input of MaxPool2d"),
        (npcam.GlobalAvgPool2d(), (2, 3), "input of GlobalAvgPool2d"),
        (npcam.Flatten(), (5,), "input of Flatten"),
        (npcam.BatchNorm2d(3), (2, 4, 2, 2), "input of BatchNorm2d"),
        (npcam.BatchNorm2d(3), (2, 3, 2), "input of BatchNorm2d"),
    ],
)
def test_wrong_shape_names_the_argument(layer, bad_shape, label):
    """Wrong rank, channel/feature count or a too-small map: ValueError naming the
    input; nothing is broadcast or truncated."""
    with pytest.raises(ValueError, match=label):
        layer.forward(np.ones(bad_shape))


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: npcam.Conv2d(3, 4, kernel_size=0), ValueError, "kernel_size"),
        (lambda: npcam.Conv2d(3, 4, 3, stride=(1, 2, 3)), ValueError, "stride"),
        (lambda: npcam.Conv2d(3, 4, 3, stride=0), ValueError, "stride"),
        (lambda: npcam.Conv2d(3, 4, 3, padding=-1), ValueError, "padding"),
        (lambda: npcam.Conv2d("3", 4, 3), TypeError, "in_channels"),
        (lambda: npcam.Conv2d(True, 4, 3), TypeError, "in_channels"),
        (lambda: npcam.Conv2d(3, 4.0, 3), TypeError, "out_channels"),
        (lambda: npcam.Conv2d(3, 4, 2.5), TypeError, "kernel_size"),
        (lambda: npcam.Conv2d(3, 4, (3, True)), TypeError, "kernel_size"),
        (lambda: npcam.Conv2d(0, 4, 3), ValueError, "in_channels"),
        (lambda: npcam.Linear(0, 3), ValueError, "in_features"),
        (lambda: npcam.Linear(3, False), TypeError, "out_features"),
        (lambda: npcam.MaxPool2d(0), ValueError, "kernel_size"),
        (lambda: npcam.MaxPool2d(2, stride=(1,)), ValueError, "stride"),
        (lambda: npcam.Dropout(1.0), ValueError, "p"),
        (lambda: npcam.Dropout(-0.1), ValueError, "p"),
        (lambda: npcam.Dropout("0.5"), ValueError, "p"),
        (lambda: npcam.BatchNorm2d(0), ValueError, "num_features"),
        (lambda: npcam.BatchNorm2d(3, eps=0.0), ValueError, "eps"),
        (lambda: npcam.BatchNorm2d(3, momentum=1.5), ValueError, "momentum"),
    ],
)
def test_bad_constructor_arguments(make, exc, match):
    """Bad hyper-parameters are refused at construction with the argument's name."""
    with pytest.raises(exc, match=match):
        make()


def test_layers_are_deep_copyable_and_independent():
    """A deep copy owns its parameters (fold_batchnorm and model surgery rely on it)."""
    a = npcam.Conv2d(1, 1, 1, rng=0)
    b = copy.deepcopy(a)
    b.weight += 1.0
    assert not np.array_equal(a.weight, b.weight)
