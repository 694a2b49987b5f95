"""FullGrad (:func:`npcam.full_grad`, Srinivas & Fleuret 2019, arXiv 1905.00780).

The central property is the paper's completeness (§ 3): for a piecewise-linear network,
``Σ x ⊙ ∇ₓy^c + Σ_l Σ b_l ⊙ ∂y^c/∂z_l = y^c``, where y^c comes from the forward pass and
every term from the hand-derived backward pass — so it checks every backward pass of the
network at once, BatchNorm's effective bias β − γμ/σ included. Bars: 1e-12 of
``Σ |terms|`` (DESIGN.md's scale rule). Each bias term's sum is also checked on its own,
against a central finite difference of y^c in that layer's bias (y^c is piecewise linear
in it, so the difference is exact up to rounding: bar 1e-8).
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
from _support import scaled_error, small_cnn, small_cnn_input

import npcam
from npcam import Graph, Node
from npcam.methods.full_grad import (
    BIAS_PREFIX,
    CONSTANT_RANGE,
    bias_terms,
    completeness_gap,
    full_grad,
    rescale_per_channel,
    rescale_per_layer,
)
from npcam.nn.layers import Layer

TARGETS = [4, 2]  # both SmallCNN images predict the same class: explain two different ones


# ------------------------------------------------------------------------ helpers
def _terms(r):
    return {k[len(BIAS_PREFIX):]: v for k, v in r.extra.items() if k.startswith(BIAS_PREFIX)}


def _abs_total(r) -> np.ndarray:
    """Σ |terms| per image: the scale of the completeness identity."""
    n = r.scores.shape[0]
    total = np.abs(r.extra["input_term"]).reshape(n, -1).sum(axis=1)
    for term in _terms(r).values():
        total = total + np.abs(term).reshape(n, -1).sum(axis=1)
    return total


def _complete(r) -> float:
    """The worst |completeness gap| / Σ|terms| over the images."""
    return float(np.max(np.abs(completeness_gap(r)) / _abs_total(r)))


def _randomise_bn(model, rng):
    """Random running statistics and affine parameters on every BatchNorm2d, so that the
    effective bias β − γμ/σ is far from β."""
    for _, layer in model.named_nodes():
        if isinstance(layer, npcam.BatchNorm2d):
            c = layer.num_features
            layer.running_mean = 0.3 * rng.normal(size=c)
            layer.running_var = rng.uniform(0.5, 1.5, size=c)
            layer.weight = rng.uniform(0.5, 1.5, size=c)
            layer.bias = 0.2 * rng.normal(size=c)


def residual_bn_graph(seed: int = 0) -> Graph:
    """A ResNet-like graph: conv-BN-ReLU stem, a residual block (conv-BN-ReLU-conv-BN +
    identity skip, ReLU), max-pool, a projection block (conv-BN + 1×1 conv-BN skip),
    GAP, Linear; BN in eval mode with random statistics."""
    rng = np.random.default_rng(seed)
    c = lambda i, o, k=3, **kw: npcam.Conv2d(i, o, k, padding=k // 2, rng=rng, **kw)  # noqa: E731
    nodes = [
        Node("stem", c(3, 8), ("input",), from_module=True),
        Node("stem_bn", npcam.BatchNorm2d(8), ("stem",), from_module=True),
        Node("stem_relu", npcam.ReLU(), ("stem_bn",), from_module=True),
        Node("b1_conv1", c(8, 8, bias=False), ("stem_relu",), from_module=True),
        Node("b1_bn1", npcam.BatchNorm2d(8), ("b1_conv1",), from_module=True),
        Node("b1_relu1", npcam.ReLU(), ("b1_bn1",), from_module=True),
        Node("b1_conv2", c(8, 8, bias=False), ("b1_relu1",), from_module=True),
        Node("b1_bn2", npcam.BatchNorm2d(8), ("b1_conv2",), from_module=True),
        Node("b1_add", npcam.Add(), ("b1_bn2", "stem_relu")),
        Node("b1_relu2", npcam.ReLU(), ("b1_add",)),
        Node("pool", npcam.MaxPool2d(2), ("b1_relu2",), from_module=True),
        Node("b2_conv", c(8, 12), ("pool",), from_module=True),
        Node("b2_bn", npcam.BatchNorm2d(12), ("b2_conv",), from_module=True),
        Node("b2_proj", c(8, 12, k=1), ("pool",), from_module=True),
        Node("b2_proj_bn", npcam.BatchNorm2d(12), ("b2_proj",), from_module=True),
        Node("b2_add", npcam.Add(), ("b2_bn", "b2_proj_bn")),
        Node("b2_relu", npcam.ReLU(), ("b2_add",)),
        Node("gap", npcam.GlobalAvgPool2d(), ("b2_relu",)),
        Node("fc", npcam.Linear(12, 5, rng=rng), ("gap",), from_module=True),
    ]
    g = Graph(nodes, "fc")
    _randomise_bn(g, rng)
    fc = g.node("fc").layer
    fc.weight = fc.weight * 8.0  # logits of order 1
    fc.bias = rng.uniform(-0.5, 0.5, size=5)
    return g


def _zoo_input(name: str) -> np.ndarray:
    images = np.random.default_rng(3).uniform(size=(2, 3, *npcam.zoo.info(name)["input_size"]))
    return npcam.zoo.standardize(name, images)


def _scaled_bias_score(model, x, target, name, t):
    """y^c with node ``name``'s constant b scaled by (1 + t): BN's effective bias
    c = β − γμ/σ becomes (1 + t)·c through β' = β + t·c."""
    m = copy.deepcopy(model)
    layer = dict(m.named_nodes())[name]
    if isinstance(layer, npcam.BatchNorm2d):
        eff = layer.bias - layer.running_mean * layer.weight / np.sqrt(layer.running_var + layer.eps)
        layer.bias = layer.bias + t * eff
    else:
        layer.bias = layer.bias * (1.0 + t)
    out = m.run(x).output
    return out[np.arange(len(target)), target]


# ------------------------------------------------------------------- completeness
def test_completeness_small_cnn():
    """SmallCNN (Sequential: conv-ReLU-conv-ReLU-maxpool-conv-ReLU-GAP-FC, every conv and
    the FC with a bias): Σ input_term + Σ bias terms = y^c per image, per-image targets."""
    r = full_grad(small_cnn(), small_cnn_input(), TARGETS)
    assert _complete(r) <= 1e-12
    assert list(_terms(r)) == ["features.0", "features.2", "features.5", "classifier.1"]
    assert r.target.tolist() == TARGETS


def test_bias_terms_map_layer_names_to_the_unprocessed_terms():
    """bias_terms is the issue's mapping layer name → b ⊙ ∂y^c/∂z: the SmallCNN's four
    layers with a bias, in order, each term at its layer's output shape and the very array
    of extra["bias:<name>"]; a result of another method is refused."""
    r = full_grad(small_cnn(), small_cnn_input(), TARGETS)
    terms = bias_terms(r)
    assert list(terms) == ["features.0", "features.2", "features.5", "classifier.1"]
    trace = small_cnn().run(small_cnn_input())
    for name, term in terms.items():
        assert term is r.extra[BIAS_PREFIX + name]
        assert term.shape == trace.activations[name].shape
    with pytest.raises(TypeError, match="result must be the CAMResult of full_grad"):
        bias_terms(npcam.grad_cam(small_cnn(), small_cnn_input()))


@pytest.mark.parametrize("name", ["gap", "vgg"])
@pytest.mark.parametrize("fold", [True, False])
def test_completeness_zoo(name, fold):
    """The shipped models, BN folded into the convs (pretrained's default) and unfolded
    (BN in eval mode contributes β − γμ/σ): completeness at 1e-12 of Σ|terms|."""
    model = npcam.zoo.pretrained(name, fold=fold)
    r = full_grad(model, _zoo_input(name))
    assert _complete(r) <= 1e-12
    bn = [k for k, layer in model.named_nodes() if isinstance(layer, npcam.BatchNorm2d)]
    assert bool(bn) is (not fold)
    assert all(k in _terms(r) for k in bn)


@pytest.mark.parametrize("name", ["gap", "vgg"])
def test_folding_merges_conv_and_bn_terms(name):
    """Folding BN into the conv before it gives b' = (b − μ)γ/σ + β with the gradient at
    the BN output, ∂y/∂z_conv = (γ/σ)·∂y/∂z_BN: so the folded conv's term is exactly the
    unfolded conv term plus the BN term, channel by channel and position by position."""
    x = _zoo_input(name)
    folded = full_grad(npcam.zoo.pretrained(name, fold=True), x)
    plain = full_grad(npcam.zoo.pretrained(name, fold=False), x)
    tf, tp = _terms(folded), _terms(plain)
    for conv in ("features.0", "features.4", "features.8", "features.12"):
        bn = f"features.{int(conv.split('.')[1]) + 1}"
        assert scaled_error(tf[conv], tp[conv] + tp[bn]) <= 1e-12
    assert scaled_error(folded.extra["input_term"], plain.extra["input_term"]) <= 1e-12


def test_completeness_residual_bn_graph():
    """A hand-built residual BN graph (conv, BN eval with random statistics, ReLU, Add
    skips, max-pool, a projection shortcut, GAP, Linear): completeness at 1e-12."""
    g = residual_bn_graph()
    x = np.random.default_rng(5).normal(size=(3, 3, 16, 16))
    r = full_grad(g, x, [0, 3, 1])
    assert _complete(r) <= 1e-12
    expected = ["stem", "stem_bn", "b1_bn1", "b1_bn2", "b2_conv", "b2_bn", "b2_proj", "b2_proj_bn", "fc"]
    assert list(_terms(r)) == expected  # the bias-free convs have no term
    # not vacuous: the BN terms carry a sizeable part of y^c
    bn_share = sum(abs(_terms(r)[k].sum()) for k in expected if "bn" in k)
    assert bn_share > 1e-2 * _abs_total(r).sum()


def test_each_term_is_the_derivative_in_its_bias():
    """Σ_ij b_l ⊙ ∂y^c/∂z_l = d y^c(b_l → (1+t)·b_l)/dt at t = 0, and Σ x ⊙ ∇ₓy^c =
    d y^c((1+t)·x)/dt: central differences with t = ±1e-6 (y^c is piecewise linear in t,
    so they are exact up to rounding, ~1e-10), on the residual graph and on SmallCNN."""
    h = 1e-6
    for model, x, target in [
        (residual_bn_graph(), np.random.default_rng(5).normal(size=(2, 3, 16, 16)), np.array([0, 3])),
        (small_cnn(), small_cnn_input(), np.array(TARGETS)),
    ]:
        r = full_grad(model, x, target)
        scale = _abs_total(r)
        for name, term in _terms(r).items():
            fd = (_scaled_bias_score(model, x, target, name, h)
                  - _scaled_bias_score(model, x, target, name, -h)) / (2 * h)
            assert np.max(np.abs(fd - term.reshape(len(target), -1).sum(axis=1)) / scale) <= 1e-8, name
        rows = np.arange(len(target))
        up, down = model.run((1 + h) * x).output, model.run((1 - h) * x).output
        fd = (up[rows, target] - down[rows, target]) / (2 * h)
        assert np.max(np.abs(fd - r.extra["input_term"].reshape(len(target), -1).sum(axis=1)) / scale) <= 1e-8


# -------------------------------------------------------------- implicit biases
def _clip_graph(seed: int = 0) -> Graph:
    """Piecewise-affine ops that add constants: ReLU6 and Hardsigmoid (saturating),
    AddConstant, a Parameter added and subtracted, ClipAffine, a Parameter scale (Mul by a
    constant, linear), max-pool, conv, ReLU, GAP, Linear."""
    rng = np.random.default_rng(seed)
    conv0 = npcam.Conv2d(3, 6, 3, padding=1, rng=rng)
    conv0.weight = conv0.weight * 12.0  # drive ReLU6 into saturation
    shift, offset, scale = npcam.Parameter((6, 1, 1)), npcam.Parameter((6, 1, 1)), npcam.Parameter((6, 1, 1))
    shift.value = rng.normal(size=(6, 1, 1))
    offset.value = rng.normal(size=(6, 1, 1))
    scale.value = rng.uniform(0.5, 2.0, size=(6, 1, 1))
    nodes = [
        ("conv0", conv0, ("input",)),
        ("relu6", npcam.ReLU6(), ("conv0",)),
        ("conv1", npcam.Conv2d(6, 6, 3, padding=1, rng=rng), ("relu6",)),
        ("hsig", npcam.Hardsigmoid(), ("conv1",)),
        ("plus", npcam.AddConstant(0.25), ("hsig",)),
        ("shift", shift, ()),
        ("shifted", npcam.Add(), ("plus", "shift")),
        ("offset", offset, ()),
        ("minus", npcam.Sub(), ("offset", "shifted")),
        ("clip", npcam.ClipAffine(1.5, 0.4), ("minus",)),
        ("scale", scale, ()),
        ("scaled", npcam.Mul(), ("clip", "scale")),
        ("pool", npcam.MaxPool2d(2), ("scaled",)),
        ("conv2", npcam.Conv2d(6, 8, 3, padding=1, rng=rng), ("pool",)),
        ("relu", npcam.ReLU(), ("conv2",)),
        ("gap", npcam.GlobalAvgPool2d(), ("relu",)),
        ("fc", npcam.Linear(8, 4, rng=rng), ("gap",)),
    ]
    return Graph(nodes, "fc")


def test_implicit_biases_of_clipped_activations():
    """ReLU6, Hardsigmoid and ClipAffine are piecewise affine: where ReLU6 saturates its
    output is the constant 6 (gradient 0 w.r.t. x), so completeness needs the implicit
    bias 6·[z ≥ 6]·∂y/∂z; likewise Hardsigmoid's 1/2 (linear part) and 1 (top), and
    ClipAffine's β and 1. With them (and the added/subtracted Parameters and the
    AddConstant) completeness holds at 1e-12; without ReLU6's, it fails by a lot."""
    g = _clip_graph()
    x = np.random.default_rng(2).uniform(size=(2, 3, 12, 12))
    trace = g.run(x)
    z6 = trace.activations["conv0"]
    zh = trace.activations["conv1"]
    zc = 1.5 * trace.activations["minus"] + 0.4
    # every regime occurs, so the test is not vacuous
    assert (z6 >= 6).mean() > 0.05 and ((z6 > 0) & (z6 < 6)).mean() > 0.05
    assert (np.abs(zh) >= 3).mean() > 0.01 and (np.abs(zh) < 3).mean() > 0.05
    assert (zc >= 1).mean() > 0.01 and ((zc > 0) & (zc < 1)).mean() > 0.05 and (zc <= 0).mean() > 0.01
    r = full_grad(g, x, [1, 2])
    assert _complete(r) <= 1e-12
    terms = _terms(r)
    assert set(terms) == {"conv0", "relu6", "conv1", "hsig", "plus", "shifted", "minus", "clip", "conv2",
                          "fc"}
    # the implicit biases written out from their definitions, with the recorded gradients
    seed = np.zeros((2, 4))
    seed[[0, 1], [1, 2]] = 1.0
    grads = g.vjp(trace, seed, record=True).node_grads
    g6 = terms["relu6"]
    assert np.array_equal(g6, np.where(z6 >= 6, 6.0, 0.0) * grads["relu6"]) and np.any(g6 != 0)
    hs = np.where(zh >= 3, 1.0, np.where(zh > -3, 0.5, 0.0))
    assert scaled_error(terms["hsig"], hs * grads["hsig"]) <= 1e-12
    cl = np.where(zc >= 1, 1.0, np.where(zc > 0, 0.4, 0.0))
    assert scaled_error(terms["clip"], cl * grads["clip"]) <= 1e-12
    gap_without = completeness_gap(r) + g6.reshape(2, -1).sum(axis=1)
    assert np.min(np.abs(gap_without) / _abs_total(r)) > 1e-3


# ------------------------------------------------------------------ the saliency map
def _interp_axis(maps: np.ndarray, out: int, axis: int, corners: bool) -> np.ndarray:
    """Linear interpolation along one axis with np.interp: corner-aligned source
    positions d·(n−1)/(out−1), or half-pixel max((d + ½)·n/out − ½, 0) (np.interp clamps
    past the last sample, as torch's index clamp does)."""
    n = maps.shape[axis]
    d = np.arange(out, dtype=np.float64)
    if n == out:
        return maps
    src = d * (n - 1) / (out - 1) if corners else np.maximum((d + 0.5) * n / out - 0.5, 0.0)
    return np.apply_along_axis(lambda v: np.interp(src, np.arange(n), v), axis, maps)


def _oracle_saliency(r, size, psi: str, corners: bool) -> np.ndarray:
    """S assembled from ``extra`` without npcam's helpers: ψ per channel (or per layer
    with ε 1e-6), each channel upsampled on its own, then everything summed."""
    def per_channel(v):
        out = np.zeros_like(v)
        for n in range(v.shape[0]):
            for k in range(v.shape[1]):
                lo, hi = v[n, k].min(), v[n, k].max()
                if hi > lo:
                    out[n, k] = (v[n, k] - lo) / (hi - lo)
        return out

    def per_layer(v):
        out = np.empty_like(v)
        for n in range(v.shape[0]):
            s = v[n] - v[n].min()
            out[n] = s / (s.max() + 1e-6)
        return out

    psi_fn = per_channel if psi == "per-channel" else per_layer
    s = psi_fn(np.abs(r.extra["input_term"])).sum(axis=1)
    for term in _terms(r).values():
        if term.ndim != 4:
            continue
        up = _interp_axis(_interp_axis(psi_fn(np.abs(term)), size[0], 2, corners), size[1], 3, corners)
        s = s + up.sum(axis=1)
    return s


@pytest.mark.parametrize("psi", ["per-channel", "per-layer"])
@pytest.mark.parametrize("corners", [True, False])
def test_saliency_is_the_sum_of_psi_maps(psi, corners):
    """S = ψ(x ⊙ ∇ₓy) + Σ_l Σ_c Up(ψ(f^b_c)) over the 4-D terms (the Linear's 2-D term is
    left out), assembled independently (per-channel loops, np.interp bilinear with corners
    aligned or half-pixel centres), on SmallCNN (the 16×16 layer is upsampled)."""
    r = full_grad(small_cnn(), small_cnn_input(), TARGETS, psi=psi, align_corners=corners)
    assert scaled_error(r.raw, _oracle_saliency(r, (32, 32), psi, corners)) <= 1e-12
    assert r.raw.shape == (2, 32, 32) and np.array_equal(r.cam, r.raw)
    assert r.weights is None and r.activations is None and r.gradients is None and r.layer is None
    # bounds: every ψ map lies in [0, 1]; 3 input channels + 8 + 12 + 16 conv channels
    assert r.raw.min() >= 0 and r.raw.max() <= 3 + 8 + 12 + 16


def test_align_corners_and_psi_change_the_map():
    """The options are not no-ops: the 16×16 layer's upsampling differs between the two
    alignments, and ψ per layer differs from ψ per channel."""
    m, x = small_cnn(), small_cnn_input()
    base = full_grad(m, x, TARGETS).raw
    assert scaled_error(full_grad(m, x, TARGETS, align_corners=False).raw, base) > 1e-3
    assert scaled_error(full_grad(m, x, TARGETS, psi="per-layer").raw, base) > 1e-2


def test_rescale_per_channel():
    """ψ per channel: every map in [0, 1] with min 0 and max 1 exactly; a constant map
    (also one that is constant up to rounding) gives 0; invariant under v → a·v + b,
    a > 0 (min-max is)."""
    rng = np.random.default_rng(0)
    v = rng.uniform(size=(2, 5, 7, 6))
    v[0, 1] = 0.25
    v[1, 2] = 3.0 + 1e-16 * rng.uniform(size=(7, 6)) * 3.0  # constant up to rounding
    out = rescale_per_channel(v)
    assert out.min() >= 0 and out.max() <= 1
    live = np.ones((2, 5), dtype=bool)
    live[0, 1] = live[1, 2] = False
    assert np.all(out[~live] == 0)
    assert np.all(out.min(axis=(2, 3))[live] == 0) and np.all(out.max(axis=(2, 3))[live] == 1)
    assert scaled_error(rescale_per_channel(3.7 * v + 2.0), out) <= 1e-12
    assert CONSTANT_RANGE == 1e-12


def test_rescale_per_layer():
    """ψ per layer (the official ``_postProcess`` after abs): per image over all channels
    jointly, min 0 and max (max − min)/(max − min + 1e-6) < 1."""
    rng = np.random.default_rng(1)
    v = rng.uniform(0.5, 2.0, size=(3, 4, 5, 5))
    out = rescale_per_layer(v)
    span = v.max(axis=(1, 2, 3)) - v.min(axis=(1, 2, 3))
    assert np.all(out.min(axis=(1, 2, 3)) == 0)
    assert np.allclose(out.max(axis=(1, 2, 3)), span / (span + 1e-6), rtol=1e-15, atol=0)
    # jointly: one channel's min-max is not 0..1 unless it holds the layer's extremes
    assert np.any(out.max(axis=(2, 3)) < 0.99)


def test_invariant_to_scaling_the_output():
    """Scaling the last Linear's weight and bias by s > 0 scales y^c and every term by s
    (the network is positively homogeneous in its last layer), and leaves the per-channel
    saliency unchanged (min-max per channel is scale-invariant). ψ per layer is not
    exactly invariant: its ε = 1e-6 is absolute."""
    s = 3.7
    m, x = small_cnn(), small_cnn_input()
    scaled = copy.deepcopy(m)
    fc = scaled["classifier.1"]
    fc.weight, fc.bias = fc.weight * s, fc.bias * s
    r0, r1 = full_grad(m, x, TARGETS), full_grad(scaled, x, TARGETS)
    assert scaled_error(r1.scores, s * r0.scores) <= 1e-13
    for k, v in r0.extra.items():
        assert scaled_error(r1.extra[k], s * v) <= 1e-13, k
    assert scaled_error(r1.raw, r0.raw) <= 1e-12
    assert _complete(r1) <= 1e-12


def test_score_softmax_decomposes_the_linearised_logits():
    """With score="softmax" the seed is s = ∂p_c/∂z = p_c (e_c − p): the terms then add up
    to Σ_k s_k z_k (the logits are the affine part), not to p_c — as documented."""
    m, x = small_cnn(), small_cnn_input()
    r = full_grad(m, x, TARGETS, score="softmax")
    z = m.run(x).output
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    rows = np.arange(2)
    seed = -p[rows, TARGETS][:, None] * p
    seed[rows, TARGETS] += p[rows, TARGETS]
    linear = (seed * z).sum(axis=1)
    total = r.scores - completeness_gap(r)
    assert np.max(np.abs(total - linear) / _abs_total(r)) <= 1e-12
    assert scaled_error(r.scores, p[rows, TARGETS]) <= 1e-14


def test_default_target_is_the_prediction():
    """target=None explains the argmax class of each image."""
    g = residual_bn_graph()
    x = np.random.default_rng(5).normal(size=(3, 3, 16, 16))
    r = full_grad(g, x)
    assert r.target.tolist() == g.run(x).output.argmax(axis=1).tolist()


# ------------------------------------------------------------ refusals and warnings
def _nonlinear_graph(kind: str) -> Graph:
    rng = np.random.default_rng(0)
    nodes: list = [("conv", npcam.Conv2d(3, 4, 3, padding=1, rng=rng), ("input",))]
    if kind == "silu":
        nodes.append(("act", npcam.SiLU(), ("conv",)))
    else:  # a squeeze-excitation gate: x · sigmoid-free but x-dependent
        nodes += [("relu", npcam.ReLU(), ("conv",)),
                  ("squeeze", npcam.AdaptiveAvgPool2d(1), ("relu",)),
                  ("gate", npcam.Hardsigmoid(), ("squeeze",)),
                  ("act", npcam.Mul(), ("relu", "gate"))]
    nodes += [("gap", npcam.GlobalAvgPool2d(), ("act",)), ("fc", npcam.Linear(4, 3, rng=rng), ("gap",))]
    return Graph(nodes, "fc")


@pytest.mark.parametrize(("kind", "why"), [("silu", "SiLU is not piecewise linear"),
                                           ("se", "a product of two tensors that both depend on x")])
def test_not_piecewise_linear_is_refused(kind, why):
    """A node that depends on x and is not piecewise linear (SiLU; an SE product x·gate(x),
    piecewise quadratic although the gate is piecewise linear) is refused, naming it."""
    g = _nonlinear_graph(kind)
    x = np.random.default_rng(1).uniform(size=(2, 3, 8, 8))
    with pytest.raises(ValueError, match=f"node 'act' is not piecewise linear in x \\({why}\\)"):
        full_grad(g, x)


@pytest.mark.parametrize("kind", ["silu", "se"])
def test_allow_nonlinear_warns_and_is_incomplete(kind):
    """allow_nonlinear=True computes the terms and warns (NpcamWarning, pointing at the
    caller); the decomposition is then genuinely incomplete (the gap is not rounding)."""
    g = _nonlinear_graph(kind)
    x = np.random.default_rng(1).uniform(size=(2, 3, 8, 8))
    with pytest.warns(npcam.NpcamWarning, match="decomposition is not complete") as record:
        r = full_grad(g, x, allow_nonlinear=True)
    assert record[0].filename == __file__
    assert np.min(np.abs(completeness_gap(r)) / _abs_total(r)) > 1e-6
    assert r.raw.shape == (2, 8, 8) and np.isfinite(r.raw).all()


def test_batchnorm_in_training_mode_and_unknown_layers_are_refused():
    """A BatchNorm2d in training mode normalises by the batch statistics (not an affine
    map of x); a layer type npcam does not know cannot be assumed piecewise linear."""
    g = residual_bn_graph().train()
    x = np.random.default_rng(5).normal(size=(2, 3, 16, 16))
    with pytest.raises(ValueError, match="node 'stem_bn' is not piecewise linear in x .*training mode"):
        full_grad(g, x)

    class Square(Layer):
        def _forward(self, x):
            return x * x, x

        def _backward(self, dout, cache, relu_rule, param_grads):
            return 2 * cache * dout, {}

    rng = np.random.default_rng(0)
    m = npcam.Sequential(npcam.Conv2d(3, 2, 3, rng=rng), Square(), npcam.GlobalAvgPool2d(),
                         npcam.Linear(2, 2, rng=rng))
    with pytest.raises(ValueError, match="node '1' is not piecewise linear in x \\(Square is not known"):
        full_grad(m, x[:, :, :8, :8])


def test_a_constant_branch_is_not_refused():
    """Only nodes that depend on x count: a Sigmoid of a Parameter is a constant, and its
    sum with a feature map is an added constant (a bias term)."""
    rng = np.random.default_rng(0)
    p = npcam.Parameter((4, 1, 1))
    p.value = rng.normal(size=(4, 1, 1))
    g = Graph([
        ("conv", npcam.Conv2d(3, 4, 3, padding=1, rng=rng), ("input",)),
        ("p", p, ()), ("sig", npcam.Sigmoid(), ("p",)),
        ("add", npcam.Add(), ("conv", "sig")), ("relu", npcam.ReLU(), ("add",)),
        ("gap", npcam.GlobalAvgPool2d(), ("relu",)), ("fc", npcam.Linear(4, 3, rng=rng), ("gap",)),
    ], "fc")
    r = full_grad(g, rng.uniform(size=(2, 3, 8, 8)))
    assert "bias:add" in r.extra and _complete(r) <= 1e-12


def test_argument_checks():
    m, x = small_cnn(), small_cnn_input()
    with pytest.raises(ValueError, match="layer must be None for FullGrad"):
        full_grad(m, x, TARGETS, "features.3")
    with pytest.raises(ValueError, match="layer must be None for FullGrad"):
        full_grad(m, x, TARGETS, layer=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="target='all'"):
        full_grad(m, x, "all")
    with pytest.raises(ValueError, match="psi must be one of"):
        full_grad(m, x, psi="per-pixel")
    with pytest.raises(TypeError, match="align_corners must be a bool"):
        full_grad(m, x, align_corners="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="allow_nonlinear must be a bool"):
        full_grad(m, x, allow_nonlinear=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="score must be one of"):
        full_grad(m, x, score="prob")
    with pytest.raises(ValueError, match=r"x must be a batch of images \(N, C, H, W\)"):
        full_grad(m, x[0])
    with pytest.raises(TypeError, match="result must be the CAMResult of full_grad"):
        completeness_gap(npcam.grad_cam(m, x, TARGETS))


def test_no_numpy_warning_on_dead_channels():
    """Channels whose term is 0 everywhere (a conv with zero bias) are constant maps: ψ
    gives 0 without any 0/0 warning (warnings are errors here)."""
    m = small_cnn()
    m["features.2"].bias = np.zeros(12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = full_grad(m, small_cnn_input(), TARGETS)
    assert np.all(_terms(r)["features.2"] == 0) and _complete(r) <= 1e-12


# ------------------------------------------------------------- registry, conventions
def test_registry_and_conventions():
    """npcam.full_grad is the registered "full-grad"; the "npcam" convention returns its
    cam; "authors-code" (step by step after the official code, channels upsampled one by
    one) equals full_grad(psi="per-layer") on SmallCNN, whose bias layers are the official
    code's (Conv2d, Linear); "pytorch-grad-cam" is a float32 map in [0, 1]."""
    m, x = small_cnn(), small_cnn_input()
    assert npcam.full_grad is full_grad and npcam.METHODS["full-grad"].function is full_grad
    assert not npcam.METHODS["full-grad"].supports_all_targets
    r = full_grad(m, x, TARGETS)
    assert np.array_equal(npcam.conventions.cam("full-grad", m, x, TARGETS), r.cam)
    up = npcam.conventions.cam("full-grad", m, x, TARGETS, input_size=(40, 48))
    assert scaled_error(up, npcam.upsample(r.cam, (40, 48))) <= 1e-15
    official = npcam.conventions.cam("full-grad", m, x, TARGETS, convention="authors-code")
    assert official.shape == (2, 1, 32, 32)
    assert scaled_error(official[:, 0], full_grad(m, x, TARGETS, psi="per-layer").raw) <= 1e-12
    pgc = npcam.conventions.cam("full-grad", m, x, TARGETS, convention="pytorch-grad-cam")
    assert pgc.dtype == np.float32 and pgc.shape == (2, 32, 32)
    assert pgc.min() == 0 and 0.999 < pgc.max() <= 1  # m/(m + 1e-7) rounds to 1 in float32
    with pytest.raises(ValueError, match="layer must be None"):
        npcam.conventions.cam("full-grad", m, x, TARGETS, "features.3", convention="pytorch-grad-cam")
    with pytest.raises(ValueError, match="input_size must be None or the size of x"):
        npcam.conventions.cam("full-grad", m, x, TARGETS, convention="authors-code", input_size=(64, 64))
