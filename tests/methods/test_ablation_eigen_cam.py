"""Ablation-CAM, Eigen-CAM and EigenGrad-CAM: their exact properties (cam-family.md § 7-9).

* Ablation-CAM under GAP → FC: ``y^c − y^c_k = W_ck · (Ā^k − v)`` for the ablation value v,
  so ``w_k = W_ck (Ā^k − v) / y^c`` exactly; independence of ``batch_size`` and image
  order; ``target="all"`` equals the classes one at a time; ``ablated_scores`` equal
  forward passes run one ablated channel at a time; the warnings and errors.
* Eigen-CAM / EigenGrad-CAM: the sign-fixed output is exactly invariant to v₁ → −v₁ and,
  to rounding, to the order in which positions are flattened (while LAPACK's own sign is
  not); rank-1 maps give L ∝ M (∝ M − M̄ centred); the uncentred projection is σ₁u₁; the
  centred one sums to 0; each sign rule's defining inequality.

The Eigen tests use a model whose layer "0" is a 1×1 identity convolution, so that its
activations are exactly the input: any A can be fed, permuted or reshaped at will.
"""

from __future__ import annotations

import numpy as np
import pytest
from _support import scaled_error, small_cnn, small_cnn_input
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import npcam
from npcam._warnings import NumericalWarning
from npcam.methods.eigen_cam import _orientation, _principal

TARGETS = [4, 2]  # both images of SmallCNN predict the same class: explain two others


def _smallcnn(signed=False):
    return small_cnn(0, signed=signed), small_cnn_input(1, 2)


def identity_model(k: int, classes: int = 3, seed: int = 0) -> npcam.Sequential:
    """Conv1×1 (identity, no bias) → GAP → FC: layer "0" outputs the input exactly."""
    rng = np.random.default_rng(seed)
    model = npcam.Sequential(npcam.Conv2d(k, k, 1, rng=rng), npcam.GlobalAvgPool2d(),
                             npcam.Linear(k, classes, rng=rng))
    state = model.state_dict()
    state["0.weight"] = np.eye(k)[:, :, None, None]
    state["0.bias"] = np.zeros(k)
    state["2.weight"] = rng.standard_normal((classes, k))
    state["2.bias"] = rng.uniform(-0.1, 0.1, classes)
    model.load_state_dict(state)
    return model


def _head(model):
    state = model.state_dict()
    return state["classifier.1.weight"], state["classifier.1.bias"]


# ============================================================================ Ablation-CAM
@pytest.mark.parametrize("signed, layer", [(False, "features.6"), (True, "features.5")])
def test_ablation_under_gap_fc_is_the_scaled_cam_weight(signed, layer):
    """A → GAP → FC: zeroing A^k lowers y^c by exactly W_ck·Ā^k, so w_k = W_ck·Ā^k / y^c
    (features.6 is ReLU → GAP; SignedCNN's features.5 a signed conv → GAP)."""
    model, x = _smallcnn(signed)
    r = npcam.ablation_cam(model, x, TARGETS, layer)
    w, _ = _head(model)
    abar = r.activations.mean(axis=(2, 3))
    expected = w[TARGETS] * abar / r.scores[:, None]
    assert (r.scores > 0).all()
    assert scaled_error(r.weights, expected) <= 1e-13
    y_drop = r.scores[:, None] - r.extra["ablated_scores"]
    assert scaled_error(y_drop, w[TARGETS] * abar) <= 1e-13
    assert scaled_error(r.raw, np.einsum("nk,nkhw->nhw", expected, r.activations)) <= 1e-13
    assert np.array_equal(r.cam, np.maximum(r.raw, 0))
    assert r.gradients is None and r.weights.shape == (2, 16) and r.extra["ablated_scores"].shape == (2, 16)


def test_ablation_before_a_relu_is_not_the_linear_formula():
    """SmallCNN features.5 feeds a ReLU: zeroing a channel is not a linear change of the
    score there, so the GAP → FC formula must not hold (the test above could fail)."""
    model, x = _smallcnn()
    r = npcam.ablation_cam(model, x, TARGETS, "features.5")
    w, _ = _head(model)
    linear = w[TARGETS] * r.activations.mean(axis=(2, 3)) / r.scores[:, None]
    assert scaled_error(r.weights, linear) > 1e-3


def test_ablation_value_float_under_gap_fc():
    """Setting A^k := v lowers y^c by W_ck·(Ā^k − v) under GAP → FC."""
    model, x = _smallcnn(signed=True)
    r = npcam.ablation_cam(model, x, TARGETS, "features.5", ablation_value=0.5)
    w, _ = _head(model)
    expected = w[TARGETS] * (r.activations.mean(axis=(2, 3)) - 0.5) / r.scores[:, None]
    assert scaled_error(r.weights, expected) <= 1e-13


def test_min_minus_is_the_image_minimum_minus_1e7_for_every_channel():
    """"min-minus": per image, A^k := min(A_n) − 1e7 (the same for every channel, unlike
    pytorch-grad-cam's progressive value) when min(A_n) ≠ 0; checked against the GAP → FC
    formula with the image's own value, which differs between the two images."""
    model, x = _smallcnn(signed=True)
    r = npcam.ablation_cam(model, x, TARGETS, "features.5", ablation_value="min-minus", batch_size=5)
    w, _ = _head(model)
    v = r.activations.reshape(2, -1).min(axis=1) - 1e7
    assert (v + 1e7 < 0).all() and v[0] != v[1]
    expected = w[TARGETS] * (r.activations.mean(axis=(2, 3)) - v[:, None]) / r.scores[:, None]
    assert scaled_error(r.weights, expected) <= 1e-13


def test_min_minus_is_zero_on_a_relu_layer():
    """A ReLU layer's minimum is exactly 0 (both images have dead units), so "min-minus"
    ablates to 0, the paper's value: identical scores."""
    model, x = _smallcnn()
    a = model.run(x).activations["features.6"]
    assert (a.reshape(2, -1).min(axis=1) == 0).all()
    r0 = npcam.ablation_cam(model, x, TARGETS, "features.6")
    r1 = npcam.ablation_cam(model, x, TARGETS, "features.6", ablation_value="min-minus")
    assert np.array_equal(r0.extra["ablated_scores"], r1.extra["ablated_scores"])


def test_ablated_scores_equal_one_channel_at_a_time_passes():
    """Each y^c_k equals a separate forward pass after the layer on A with only channel k
    zeroed (N rows, no stacking): the stacked copies are built and read back in order."""
    model, x = _smallcnn()
    layer = "features.3"  # before a max-pool: the head is not linear here
    r = npcam.ablation_cam(model, x, TARGETS, layer, batch_size=5)
    trace = model.run(x)
    a = trace.activations[layer]
    for k in (0, 4, 5, 11):
        ablated = a.copy()
        ablated[:, k] = 0.0
        logits = model.run_from(trace, layer, ablated).output
        assert scaled_error(r.extra["ablated_scores"][:, k], logits[[0, 1], TARGETS]) <= 1e-13


@pytest.mark.parametrize("layer", ["features.3", "features.5"])
def test_ablation_is_independent_of_batch_size_and_image_order(layer):
    """batch_size only bounds memory; the images are explained independently."""
    model, x = _smallcnn(signed=True)
    ref = npcam.ablation_cam(model, x, TARGETS, layer)
    scale = np.abs(ref.weights).max()
    for bs in (1, 5, 12, 100):
        r = npcam.ablation_cam(model, x, TARGETS, layer, batch_size=bs)
        assert scaled_error(r.weights, ref.weights, scale) <= 1e-13
        assert scaled_error(r.extra["ablated_scores"], ref.extra["ablated_scores"]) <= 1e-13
    flipped = npcam.ablation_cam(model, x[::-1], TARGETS[::-1], layer, batch_size=7)
    assert scaled_error(flipped.weights[::-1], ref.weights, scale) <= 1e-13
    assert scaled_error(flipped.raw[::-1], ref.raw) <= 1e-13


def test_ablation_target_all_equals_each_class():
    """One ablated pass gives every class's score: target="all" equals the classes one at
    a time (softmax scores, positive, so no warning)."""
    model, x = _smallcnn()
    r = npcam.ablation_cam(model, x, "all", "features.5", score="softmax", batch_size=6)
    assert r.weights.shape == (2, 10, 16) and r.extra["ablated_scores"].shape == (2, 10, 16)
    assert r.raw.shape == (2, 10, 16, 16) and r.scores.shape == (2, 10)
    for c in range(10):
        one = npcam.ablation_cam(model, x, c, "features.5", score="softmax")
        assert scaled_error(r.weights[:, c], one.weights) <= 1e-13
        assert scaled_error(r.extra["ablated_scores"][:, c], one.extra["ablated_scores"]) <= 1e-13
        assert scaled_error(r.raw[:, c], one.raw) <= 1e-13


def test_ablation_warns_for_a_negative_score():
    """y^c < 0 flips every weight's sign (the paper's formula, kept): NumericalWarning."""
    model, x = _smallcnn(signed=True)
    target = [9, 9]  # the most negative logit of SignedCNN (-5.5)
    with pytest.warns(NumericalWarning, match="negative"):
        r = npcam.ablation_cam(model, x, target, "features.5")
    assert (r.scores < 0).all()
    w, _ = _head(model)
    expected = w[target] * r.activations.mean(axis=(2, 3)) / r.scores[:, None]
    assert scaled_error(r.weights, expected) <= 1e-13  # the paper's weights, sign flip and all


def test_ablation_refuses_a_zero_score():
    """y^c = 0 exactly (a class with zero weights and bias): the division is undefined."""
    model, x = _smallcnn()
    params = dict(model.named_parameters())
    params["classifier.1.weight"][3] = 0.0
    params["classifier.1.bias"][3] = 0.0
    with pytest.raises(ValueError, match="exactly 0"):
        npcam.ablation_cam(model, x, 3, "features.6")


def test_ablation_at_a_channels_last_layer_is_explained_in_nchw():
    """A graph layer held NHWC is ablated along its own channel axis: the same weights as
    the same function held NCHW."""
    rng = np.random.default_rng(0)
    conv, fc = npcam.Conv2d(3, 5, 3, padding=1, rng=rng), npcam.Linear(5, 4, rng=rng)
    nhwc = npcam.Graph([("conv", conv, "input"), ("t", npcam.Permute((0, 2, 3, 1)), "conv"),
                        ("relu", npcam.ReLU(), "t"), ("gap", npcam.Mean((1, 2)), "relu"),
                        ("fc", fc, "gap")], "fc")
    nchw = npcam.Graph([("conv", conv, "input"), ("relu", npcam.ReLU(), "conv"),
                        ("gap", npcam.Mean((2, 3)), "relu"), ("fc", fc, "gap")], "fc")
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 7))
    y = nchw.forward(x)
    target = y.argmax(axis=1)
    assert (y[[0, 1], target] > 0).all()
    r = npcam.ablation_cam(nhwc, x, target, "relu", batch_size=2)
    ref = npcam.ablation_cam(nchw, x, target, "relu", batch_size=3)
    assert r.activations.shape == (2, 5, 6, 7)
    assert scaled_error(r.weights, ref.weights) <= 1e-13
    assert scaled_error(r.raw, ref.raw) <= 1e-13


def test_ablation_progress_bar_is_labelled(capsys):
    model, x = _smallcnn()
    npcam.ablation_cam(model, x, TARGETS, "features.6", batch_size=4, progress=True)
    assert "Ablation-CAM" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, error, match", [
    ({"ablation_value": "zero"}, ValueError, "ablation_value"),
    ({"ablation_value": True}, TypeError, "ablation_value"),
    ({"ablation_value": [0.0]}, TypeError, "ablation_value"),
    ({"ablation_value": float("nan")}, ValueError, "ablation_value"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": 2.0}, TypeError, "batch_size"),
    ({"progress": "yes"}, TypeError, "progress"),
    ({"score": "prob"}, ValueError, "score"),
])
def test_ablation_validation(kwargs, error, match):
    model, x = _smallcnn()
    with pytest.raises(error, match=match):
        npcam.ablation_cam(model, x, TARGETS, "features.6", **kwargs)


# ============================================================================== Eigen-CAM
def _eigen(a, target=0, method=npcam.eigen_cam, **kw):
    """``method`` on the identity model fed A itself (layer "0" outputs its input)."""
    model = identity_model(a.shape[1])
    r = method(model, a, target, "0", **kw)
    assert np.array_equal(r.activations, a)  # the precondition: A is exactly the input
    return r


def _permuted(a, perm):
    n, k, h, w = a.shape
    return a.reshape(n, k, h * w)[..., perm].reshape(n, k, h, w)


def _unpermute(maps, perm):
    n, h, w = maps.shape
    out = np.empty((n, h * w))
    out[:, perm] = maps.reshape(n, h * w)
    return out.reshape(n, h, w)


def _draws():
    """Non-negative and signed activations, 8 images each, 6 × 5 maps of 7 channels."""
    rng = np.random.default_rng(3)
    positive = np.maximum(rng.standard_normal((8, 7, 6, 5)) + 0.3, 0)
    signed = rng.standard_normal((8, 7, 6, 5))
    return {"relu": positive, "signed": signed}


@pytest.mark.parametrize("kind", ["relu", "signed"])
@pytest.mark.parametrize("center, sign", [(False, "sum"), (False, "absmax"), (True, "sum"), (True, "absmax")])
def test_eigen_cam_is_invariant_to_the_flattening_order(kind, center, sign):
    """Permuting the positions of A (another flattening order, the same data) permutes the
    sign-fixed map and leaves v₁ unchanged, although LAPACK's own sign flips for some of
    these images (checked: the test would fail without a sign rule)."""
    a = _draws()[kind]
    perm = np.random.default_rng(4).permutation(30)
    ref = _eigen(a, center=center, sign=sign)
    r = _eigen(_permuted(a, perm), center=center, sign=sign)
    assert scaled_error(_unpermute(r.raw, perm), ref.raw) <= 1e-12
    assert scaled_error(r.weights, ref.weights) <= 1e-12
    assert scaled_error(r.extra["singular_values"], ref.extra["singular_values"]) <= 1e-12
    lapack = _eigen(a, center=center, sign="lapack")
    lapack_perm = _eigen(_permuted(a, perm), center=center, sign="lapack")
    agree = np.sign(np.einsum("nk,nk->n", lapack.weights, lapack_perm.weights))
    assert (agree < 0).any(), "LAPACK kept its sign on every image: the test proves nothing"
    assert (np.abs(agree) == 1).all()


@pytest.mark.parametrize("rule", ["sum", "absmax", "correlation", "lapack"])
@given(data=arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(1, 12), st.integers(1, 6)),
                   elements=st.floats(-10, 10, allow_nan=False, width=64)),
       center=st.booleans())
def test_sign_rules_are_exactly_odd_in_v1(rule, data, center):
    """v₁ → −v₁ (p → −p): every rule's statistic is odd in p and its scale even, so the
    sign-fixed s·p and s·v₁ are bit-for-bit the same ("lapack" excepted: it keeps the
    flip)."""
    v1, p, _, _ = _principal(data, center)
    reference = np.random.default_rng(0).standard_normal(p.shape)
    s = _orientation(p, v1, rule, reference)
    s_flip = _orientation(-p, -v1, rule, reference)
    if rule == "lapack":
        assert np.array_equal(s, s_flip)
    else:
        assert np.array_equal(s[:, None] * p, s_flip[:, None] * -p)
        assert np.array_equal(s[:, None] * v1, s_flip[:, None] * -v1)


def test_eigen_cam_rank_one_gives_the_map_itself():
    """A^k = a_k·M: O = vec(M) aᵀ has rank 1, v₁ = ±a/‖a‖ and L = ±‖a‖·M exactly; with
    M ≥ 0 the "sum" rule picks +. Centred: L ∝ M − M̄, sums to 0."""
    rng = np.random.default_rng(5)
    m = rng.uniform(0.1, 1.0, (2, 1, 4, 6))
    a_k = rng.uniform(0.2, 1.0, (2, 5, 1, 1)) * [[[[1]], [[-1]], [[1]], [[1]], [[-1]]]]
    acts = a_k * m
    norm = np.sqrt((a_k[:, :, 0, 0] ** 2).sum(axis=1))
    r = _eigen(acts)
    expected = norm[:, None, None] * m[:, 0]
    assert scaled_error(r.raw, expected) <= 1e-12
    assert scaled_error(np.abs(r.weights), np.abs(a_k[:, :, 0, 0]) / norm[:, None]) <= 1e-12
    rc = _eigen(acts, center=True)
    mc = m[:, 0] - m[:, 0].mean(axis=(1, 2), keepdims=True)
    assert scaled_error(np.abs(rc.raw), norm[:, None, None] * np.abs(mc)) <= 1e-12
    same = np.sign(rc.raw[:, :1, :1]) * np.sign(mc[:, :1, :1])  # L = ±‖a‖(M − M̄), one sign per image
    assert scaled_error(rc.raw * same, norm[:, None, None] * mc) <= 1e-12


def test_eigen_cam_uncentred_projection_is_sigma1_u1():
    """L = O v₁ = σ₁ u₁ (up to the sign of the pair), from an independent SVD of O."""
    a = _draws()["signed"]
    r = _eigen(a, sign="lapack")
    o = a.reshape(8, 7, 30).transpose(0, 2, 1)
    u, s, _ = np.linalg.svd(o)
    su = (s[:, :1] * u[:, :, 0]).reshape(8, 6, 5)
    p = r.extra["projection"]
    aligned = su * np.sign(np.einsum("nhw,nhw->n", su, p))[:, None, None]
    assert scaled_error(p, aligned) <= 1e-12
    assert scaled_error(r.extra["singular_values"], s) <= 1e-12
    assert np.array_equal(r.raw, p)  # "lapack" keeps the sign


def test_eigen_cam_raw_is_the_weighted_map():
    """Uncentred: raw = Σ_k w_k A^k with w = s·v₁ a unit vector. Centred: raw = Σ_k w_k
    (A^k − Ā^k), which sums to 0 over the map."""
    a = _draws()["relu"]
    r = _eigen(a)
    assert scaled_error(np.linalg.norm(r.weights, axis=1), np.ones(8)) <= 1e-14
    assert scaled_error(r.raw, np.einsum("nk,nkhw->nhw", r.weights, a)) <= 1e-12
    rc = _eigen(a, center=True)
    centred = a - a.mean(axis=(2, 3), keepdims=True)
    assert scaled_error(rc.raw, np.einsum("nk,nkhw->nhw", rc.weights, centred)) <= 1e-12
    assert (np.abs(rc.raw.sum(axis=(1, 2))) <= 1e-12 * np.abs(rc.raw).sum(axis=(1, 2))).all()


def test_eigen_cam_sign_rules_hold():
    """"sum": Σ_ij L ≥ 0 (and with A ≥ 0 every L_ij ≥ 0: v₁ is one-signed); "absmax":
    |max L| ≥ |min L|; centred "sum" is "absmax" (its sum is 0); "lapack" is the SVD's
    own projection."""
    draws = _draws()
    r = _eigen(draws["relu"])
    assert (r.raw >= 0).all() and (r.weights >= 0).all()
    for a in draws.values():
        s = _eigen(a)
        assert (s.raw.sum(axis=(1, 2)) >= 0).all()
        for center in (False, True):
            m = _eigen(a, center=center, sign="absmax")
            assert (np.abs(m.raw.max(axis=(1, 2))) >= np.abs(m.raw.min(axis=(1, 2)))).all()
        fallback = _eigen(a, center=True)
        absmax = _eigen(a, center=True, sign="absmax")
        assert np.array_equal(fallback.raw, absmax.raw) and np.array_equal(fallback.weights, absmax.weights)
        lapack = _eigen(a, sign="lapack")
        assert np.array_equal(np.abs(lapack.raw), np.abs(s.raw))
        assert np.array_equal(lapack.raw, lapack.extra["projection"])


def test_eigen_cam_ties_are_broken_by_v1():
    """A rank-1 map A^k = a_k·M with M antisymmetric: L = ±‖a‖M sums to 0 and |max| = |min|,
    a tie for both rules; the entry of v₁ of largest magnitude is then made positive."""
    m = np.array([[1.0, -2.0, 0.5], [-0.5, 2.0, -1.0]])[None, None]
    a_k = np.array([0.3, -0.9, 0.4])[None, :, None, None]
    acts = a_k * m
    for sign in ("sum", "absmax"):
        r = _eigen(acts, sign=sign)
        assert r.weights[0, 1] > 0  # the largest |a_k| is a_1 = −0.9
        assert scaled_error(r.raw[0], -np.linalg.norm(a_k) * m[0, 0]) <= 1e-12


def test_eigen_cam_zero_maps_have_no_direction():
    """A = 0, or (centred) A constant in space: weights, raw and projection are 0."""
    zero = np.zeros((1, 4, 3, 3))
    constant = np.broadcast_to(np.array([0.1, 0.7, 0.3, 0.2])[None, :, None, None], (1, 4, 3, 3)).copy()
    for a, center in ((zero, False), (zero, True), (constant, True)):
        for sign in ("sum", "absmax", "lapack"):
            r = _eigen(a, center=center, sign=sign)
            assert not r.weights.any() and not r.raw.any() and not r.extra["projection"].any()
    r = _eigen(constant)  # uncentred: a constant map is a genuine rank-1 direction
    assert scaled_error(r.raw[0], np.full((3, 3), np.linalg.norm([0.1, 0.7, 0.3, 0.2]))) <= 1e-12


def test_eigen_cam_result_fields_on_smallcnn():
    """Class-agnostic map; scores/target filled as requested; extra shapes."""
    model, x = _smallcnn()
    r = npcam.eigen_cam(model, x, TARGETS, "features.3")
    r2 = npcam.eigen_cam(model, x, None, "features.3", score="softmax")
    assert np.array_equal(r.raw, r2.raw)
    logits = model.forward(x)
    assert np.array_equal(r.target, TARGETS) and np.array_equal(r2.target, logits.argmax(axis=1))
    assert scaled_error(r.scores, logits[[0, 1], TARGETS]) <= 1e-15
    assert r.gradients is None and r.weights.shape == (2, 12)
    assert r.extra["singular_values"].shape == (2, 12) and r.extra["projection"].shape == (2, 32, 32)


# ========================================================================== EigenGrad-CAM
def test_eigen_grad_cam_is_invariant_to_the_flattening_order():
    """g = W_c/Z is constant in space on the identity model, so permuting A permutes g ⊙ A:
    the sign-fixed map permutes with it (and LAPACK's sign flips somewhere)."""
    perm = np.random.default_rng(6).permutation(30)
    for a in _draws().values():
        for sign in ("correlation", "absmax"):
            ref = _eigen(a, 1, npcam.eigen_grad_cam, sign=sign)
            r = _eigen(_permuted(a, perm), 1, npcam.eigen_grad_cam, sign=sign)
            assert scaled_error(_unpermute(r.raw, perm), ref.raw) <= 1e-12
            assert scaled_error(r.weights, _permuted(ref.weights, perm)) <= 1e-12
    a = _draws()["signed"]
    lapack = _eigen(a, 1, npcam.eigen_grad_cam, sign="lapack").raw
    lapack_perm = _unpermute(_eigen(_permuted(a, perm), 1, npcam.eigen_grad_cam, sign="lapack").raw, perm)
    assert (np.einsum("nhw,nhw->n", lapack, lapack_perm) < 0).any()


@pytest.mark.parametrize("layer", ["features.3", "features.5", "features.6"])
@pytest.mark.parametrize("center", [False, True])
def test_eigen_grad_cam_correlates_with_hirescam(layer, center):
    """The default sign makes the map correlate positively with H = Σ_k g ⊙ A."""
    model, x = _smallcnn()
    r = npcam.eigen_grad_cam(model, x, TARGETS, layer, center=center)
    h = (r.gradients * r.activations).sum(axis=1)
    rc = r.raw - r.raw.mean(axis=(1, 2), keepdims=True)
    hc = h - h.mean(axis=(1, 2), keepdims=True)
    assert ((rc * hc).sum(axis=(1, 2)) > 0).all()
    assert r.weights.shape == r.activations.shape


def test_eigen_grad_cam_sign_rule_flips_some_lapack_maps():
    """On SmallCNN the raw LAPACK projection correlates negatively with HiResCAM for some
    maps, so the correlation rule is not vacuous there."""
    model, x = _smallcnn(signed=True)
    flips = 0
    for layer in ("features.3", "features.5"):
        for center in (False, True):
            r = npcam.eigen_grad_cam(model, x, [6, 7], layer, center=center)
            flips += int((np.sign(np.einsum("nhw,nhw->n", r.raw, r.extra["projection"])) < 0).sum())
    assert flips > 0


def test_eigen_grad_cam_weights_and_raw():
    """weights = s·v₁_k·g; uncentred raw = Σ_k weights ⊙ A; centred raw = that minus
    Σ_k s v₁_k mean(g^k ⊙ A^k)."""
    model, x = _smallcnn(signed=True)
    for center in (False, True):
        r = npcam.eigen_grad_cam(model, x, [6, 7], "features.3", center=center)
        g = r.gradients.reshape(2, 12, -1)
        at = np.abs(g).argmax(axis=2)[..., None]  # g is sparse here (before a max-pool)
        v = (np.take_along_axis(r.weights.reshape(2, 12, -1), at, 2) / np.take_along_axis(g, at, 2))[..., 0]
        assert scaled_error(r.weights, v[:, :, None, None] * r.gradients) <= 1e-12
        assert scaled_error(np.linalg.norm(v, axis=1), np.ones(2)) <= 1e-12
        weighted = (r.weights * r.activations).sum(axis=1)
        shift = np.einsum("nk,nk->n", v, (r.gradients * r.activations).mean(axis=(2, 3))) if center else 0
        assert scaled_error(r.raw, weighted - np.reshape(shift, (-1, 1, 1))) <= 1e-12


def test_eigen_grad_cam_rank_one_is_hirescam():
    """g constant in space (identity model: g_k = W_ck/Z) and A^k = a_k·M give
    g ⊙ A = b_k M with b_k = W_ck a_k / Z: L = ±‖b‖M and H = (Σ_k b_k) M, so the
    correlation sign makes raw = ‖b‖/|Σ_k b_k| · H. With M constant (H constant, the
    correlation undefined) the fallback Σ L·H ≥ 0 gives the same."""
    rng = np.random.default_rng(7)
    model = identity_model(5)
    w = model.state_dict()["2.weight"]
    for m in (rng.uniform(-1, 1, (1, 1, 4, 3)), np.full((1, 1, 4, 3), 0.7)):
        a_k = rng.uniform(-1, 1, (1, 5, 1, 1))
        acts = a_k * m
        r = npcam.eigen_grad_cam(model, acts, 2, "0")
        b = w[2] * a_k[0, :, 0, 0] / 12
        h = (r.gradients * r.activations).sum(axis=1)
        assert scaled_error(h[0], b.sum() * m[0, 0]) <= 1e-12
        assert scaled_error(r.raw, np.linalg.norm(b) / abs(b.sum()) * h) <= 1e-12


def test_eigen_grad_cam_zero_gradient_gives_zero():
    """A class whose FC row is 0 has g = 0: no principal direction, weights and map 0."""
    model = identity_model(4)
    state = model.state_dict()
    state["2.weight"][1] = 0.0
    model.load_state_dict(state)
    a = _draws()["signed"][:2, :4]
    r = npcam.eigen_grad_cam(model, a, 1, "0")
    assert not r.weights.any() and not r.raw.any()


@pytest.mark.parametrize("method", [npcam.eigen_cam, npcam.eigen_grad_cam])
def test_eigen_refuses_target_all(method):
    model, x = _smallcnn()
    with pytest.raises(ValueError, match="target='all'"):
        method(model, x, "all", "features.6")


@pytest.mark.parametrize("method, kwargs, error, match", [
    (npcam.eigen_cam, {"center": 1}, TypeError, "center"),
    (npcam.eigen_cam, {"sign": "correlation"}, ValueError, "sign"),
    (npcam.eigen_cam, {"sign": None}, ValueError, "sign"),
    (npcam.eigen_grad_cam, {"sign": "sum"}, ValueError, "sign"),
    (npcam.eigen_grad_cam, {"center": "no"}, TypeError, "center"),
    (npcam.eigen_grad_cam, {"score": "p"}, ValueError, "score"),
])
def test_eigen_validation(method, kwargs, error, match):
    model, x = _smallcnn()
    with pytest.raises(error, match=match):
        method(model, x, TARGETS, "features.6", **kwargs)


# ============================================================================ conventions
@pytest.mark.parametrize("method, options", [
    ("ablation-cam", {"ablation_value": "min-minus", "batch_size": 7}),
    ("eigen-cam", {"center": True, "sign": "absmax"}),
    ("eigen-grad-cam", {"sign": "lapack"}),
])
def test_npcam_convention_is_the_upsampled_cam(method, options):
    model, x = _smallcnn(signed=True)
    fn = npcam.METHODS[method].function
    r = fn(model, x, TARGETS, "features.5", **options)
    out = npcam.conventions.cam(method, model, x, TARGETS, "features.5", **options)
    assert out.dtype == np.float64
    assert np.array_equal(out, npcam.upsample(r.cam, (32, 32)))
    assert npcam.conventions.cam(method, model, x, TARGETS, "features.5", input_size=(40, 24),
                                 **options).shape == (2, 40, 24)


def test_pgc_ablation_weights_replay_the_progressive_value():
    """pytorch-grad-cam's chunk position i gets min(A_n) − (i+1)·1e7; under GAP → FC its
    weights are therefore W_ck (Ā^k − min A_n + (i+1)·1e7) / y^c (float32), derived here
    independently; on a ReLU layer (min 0) they are the paper's to float32."""
    from npcam.verify.conventions.ablation_cam import pgc_ablation_weights

    model, x = _smallcnn(signed=True)
    w, _ = _head(model)
    r = npcam.ablation_cam(model, x, TARGETS, "features.5")
    for batch_size in (32, 5):
        weights, _ = pgc_ablation_weights(model, x, TARGETS, "features.5", "logit", batch_size)
        assert weights.dtype == np.float32
        i = np.arange(16) % batch_size
        value = r.activations.reshape(2, -1).min(axis=1)[:, None] - (i + 1) * 1e7
        expected = w[TARGETS] * (r.activations.mean(axis=(2, 3)) - value) / r.scores[:, None]
        assert scaled_error(weights, expected) <= 1e-6
        assert scaled_error(weights, r.weights) > 1e7  # the bug, ~1e8 relative
    relu_model, _ = _smallcnn()
    paper = npcam.ablation_cam(relu_model, x, TARGETS, "features.6").weights
    weights, _ = pgc_ablation_weights(relu_model, x, TARGETS, "features.6", "logit", 5)
    assert scaled_error(weights, paper) <= 1e-6


def test_pgc_eigen_projection_is_the_centred_projection_up_to_sign():
    from npcam.verify.conventions.eigen_cam import pgc_2d_projection

    a = _draws()["signed"]
    p = pgc_2d_projection(a)
    assert p.dtype == np.float32 and p.shape == (8, 6, 5)
    ours = _eigen(a, center=True, sign="lapack").raw
    assert scaled_error(np.abs(p), np.abs(ours)) <= 1e-6
    fixed = pgc_2d_projection(a, sign_correction=True)
    assert (np.abs(fixed.max(axis=(1, 2))) >= np.abs(fixed.min(axis=(1, 2)))).all()


def test_conventions_refuse_unknown_options():
    model, x = _smallcnn()
    with pytest.raises(TypeError, match="center"):
        npcam.conventions.cam("eigen-cam", model, x, TARGETS, "features.6", convention="pytorch-grad-cam",
                              center=True)
    with pytest.raises(TypeError, match="ablation_value"):
        npcam.conventions.cam("ablation-cam", model, x, TARGETS, "features.6", convention="pytorch-grad-cam",
                              ablation_value=0)
