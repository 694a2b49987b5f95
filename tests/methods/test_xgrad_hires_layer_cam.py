r"""Exact properties of XGrad-CAM, HiResCAM, element-wise Grad-CAM and LayerCAM
(``../shared/notes/cam-family.md`` §§ 2–5), of :func:`npcam.layer_cam_fuse`, and of the
conventions that need no library (npcam's own, tf-keras-vis's).

Every expected value is derived by hand from the definitions (A^k the layer's maps,
g = ∂y^c/∂A^k, y^c the score), never copied from the code's output. Models:
``_support.small_cnn`` (SmallCNN: ``features.3`` before a max-pool, g sparse;
``features.5`` a signed conv output; ``features.6`` its ReLU, straight into GAP → FC, g
constant in space), its signed twin (``features.5`` into GAP), and the shipped ``gap``
model (``features.14`` → GAP → FC). Identities are checked relative to the scale of their
terms (1e-12, DESIGN.md); the largest errors are printed at the end of the module.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _support import scaled_error, small_cnn, small_cnn_input
from scipy.special import softmax as sp_softmax

import npcam
from npcam import NumericalWarning
from npcam.image import upsample
from npcam.methods.xgrad_cam import XGRAD_CANCEL_RTOL, xgrad_cam_weights
from npcam.verify import conventions as C

METHODS = {
    "xgrad-cam": npcam.xgrad_cam,
    "hires-cam": npcam.hires_cam,
    "grad-cam-elementwise": npcam.grad_cam_elementwise,
    "layer-cam": npcam.layer_cam,
}
TARGETS = [4, 2]  # both images predict class 4: explicit per-image targets
BAR = 1e-12
WORST: dict[str, float] = {}


def _record(name: str, err: float, bar: float = BAR) -> None:
    WORST[name] = max(WORST.get(name, 0.0), err)
    assert err <= bar, f"{name}: {err:.3e} > {bar:.0e}"


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    for name, err in sorted(WORST.items()):
        print(f"npcam largest error {name}: {err:.2e}")


@pytest.fixture(scope="module")
def small():
    return small_cnn(), small_cnn_input()


@pytest.fixture(scope="module")
def signed():
    return small_cnn(signed=True), small_cnn_input()


@pytest.fixture(scope="module")
def gap_zoo():
    model = npcam.zoo.pretrained("gap")
    images = np.random.default_rng(7).uniform(size=(2, 3, 64, 64))
    return model, npcam.zoo.standardize("gap", images)


def _map_scale(weights, a):
    """max_ij Σ_k |w_k A^k_ij|: the size of the terms of Σ_k w_k A^k."""
    return float(np.abs(np.einsum("nk,nkhw->nkhw", weights, a)).sum(axis=1).max())


def _elementwise_scale(g, a):
    """max_ij Σ_k |g^k_ij A^k_ij|."""
    return float(np.abs(g * a).sum(axis=1).max())


# -------------------------------------------------------------- under GAP → FC
@pytest.mark.parametrize("case", ["small", "signed", "gap_zoo"])
def test_xgrad_and_hires_equal_grad_cam_under_gap_fc(case, request):
    """Under A → GAP → FC, g^k_ij = w^c_k / Z in every position. Then XGrad-CAM's
    α_k = Σ_ij A g / Σ A = w^c_k / Z = Grad-CAM's α_k for every live channel (Σ A ≠ 0; a
    dead channel has A^k ≡ 0 and adds nothing), and HiResCAM's Σ_k g ⊙ A = Σ_k (w_k/Z) A^k
    is Grad-CAM's map: the three raw maps are equal. (SignedCNN: its signed features.5
    feeds GAP, so the identity holds there too.)"""
    model, x = request.getfixturevalue(case)
    layer = {"small": "features.6", "signed": "features.5", "gap_zoo": "features.14"}[case]
    target = TARGETS if case != "gap_zoo" else None
    gc = npcam.grad_cam(model, x, target, layer)
    assert np.ptp(gc.gradients, axis=(2, 3)).max() <= 1e-15 * np.abs(gc.gradients).max()  # g constant
    scale = _map_scale(gc.weights, gc.activations)
    xg = npcam.xgrad_cam(model, x, target, layer)
    hr = npcam.hires_cam(model, x, target, layer)
    _record("xgrad = grad-cam under GAP", scaled_error(xg.raw, gc.raw, scale))
    _record("hires = grad-cam under GAP", scaled_error(hr.raw, gc.raw, scale))
    live = gc.activations.sum(axis=(2, 3)) != 0
    _record("xgrad α = grad-cam α (live)", scaled_error(xg.weights[live], gc.weights[live]))
    assert np.array_equal(xg.cam, np.maximum(xg.raw, 0)) and np.array_equal(hr.cam, np.maximum(hr.raw, 0))


def test_xgrad_and_hires_differ_from_grad_cam_elsewhere(small):
    """The identity above is specific to g constant in space: at features.3 (before a
    max-pool, g sparse) the maps differ by O(1) — so the test above could fail."""
    model, x = small
    gc = npcam.grad_cam(model, x, TARGETS, "features.3")
    assert scaled_error(npcam.xgrad_cam(model, x, TARGETS, "features.3").raw, gc.raw) > 0.1
    assert scaled_error(npcam.hires_cam(model, x, TARGETS, "features.3").raw, gc.raw) > 0.1


@pytest.mark.parametrize("case", ["small", "signed", "gap_zoo"])
def test_hires_completeness_under_gap_fc(case, request):
    """HiResCAM's completeness: with y^c = Σ_k W_ck (1/Z) Σ_ij A^k_ij + b_c,
    Σ_ij M_ij = Σ_ijk (W_ck / Z) A^k_ij = y^c − b_c, per image (to 1e-12 of Σ_ijk |g A|)."""
    model, x = request.getfixturevalue(case)
    layer, fc = {"small": ("features.6", "classifier.1"), "signed": ("features.5", "classifier.1"),
                 "gap_zoo": ("features.14", "classifier.1")}[case]
    target = TARGETS if case != "gap_zoo" else None
    hr = npcam.hires_cam(model, x, target, layer)
    bias = dict(model.named_parameters())[f"{fc}.bias"]
    logits = model.forward(x)
    y = logits[np.arange(len(x)), hr.target]
    assert np.array_equal(hr.scores, y)
    total = hr.raw.sum(axis=(1, 2))
    scale = np.abs(hr.gradients * hr.activations).sum(axis=(1, 2, 3))
    _record("hires completeness", float(np.max(np.abs(total - (y - bias[hr.target])) / scale)))


def test_hires_is_unchanged_across_a_relu(small):
    """g ⊙ A passes a ReLU unchanged: g_pre = g_post·[A_pre > 0] and A_post = ReLU(A_pre),
    so g_pre A_pre = g_post A_post position by position; HiResCAM of the conv output
    features.5 equals HiResCAM of the ReLU features.6 after it (for Grad-CAM it does not:
    averaging g_pre mixes in the zeros)."""
    model, x = small
    pre = npcam.hires_cam(model, x, TARGETS, "features.5")
    post = npcam.hires_cam(model, x, TARGETS, "features.6")
    assert (pre.activations < 0).any()  # the ReLU does something
    scale = _elementwise_scale(post.gradients, post.activations)
    _record("hires across ReLU (products)", scaled_error(pre.weights * pre.activations,
                                                          post.weights * post.activations, scale))
    _record("hires across ReLU (map)", scaled_error(pre.raw, post.raw, scale))
    gc_pre = npcam.grad_cam(model, x, TARGETS, "features.5")
    assert scaled_error(gc_pre.raw, npcam.grad_cam(model, x, TARGETS, "features.6").raw) > 1e-3


# ------------------------------------------------------------------------ LayerCAM
def _nonnegative_gradients_model():
    """SmallCNN with |W| in features.5 and in the FC: then g ≥ 0 at every layer up to
    features.3 (g6 = W_c/Z ≥ 0; g5 = g6·[A5 > 0] ≥ 0; g4 = conv5ᵀ g5 ≥ 0 with W5 ≥ 0;
    the max-pool routes g4 to its argmaxes)."""
    model = small_cnn()
    params = dict(model.named_parameters())
    for name in ("features.5.weight", "classifier.1.weight"):
        params[name][...] = np.abs(params[name])
    return model


def test_layer_cam_equals_hires_where_gradients_are_nonnegative(small):
    """ReLU(g) = g where g ≥ 0, so LayerCAM's per-position weights equal HiResCAM's there
    and are 0 where g < 0; when g ≥ 0 everywhere (constructed: SmallCNN with non-negative
    weights after features.3) the two maps are equal, while on the random SmallCNN they
    differ."""
    model, x = small
    for layer in ("features.3", "features.5"):
        lc = npcam.layer_cam(model, x, TARGETS, layer)
        hr = npcam.hires_cam(model, x, TARGETS, layer)
        g = hr.gradients
        assert (g < 0).any() and (g > 0).any()
        assert np.array_equal(lc.weights[g >= 0], hr.weights[g >= 0])
        assert np.all(lc.weights[g < 0] == 0)
        assert np.array_equal(lc.gradients, g)
        assert scaled_error(lc.raw, hr.raw) > 1e-3  # the generic case differs
    positive = _nonnegative_gradients_model()
    for layer in ("features.3", "features.6"):
        lc = npcam.layer_cam(positive, x, TARGETS, layer)
        hr = npcam.hires_cam(positive, x, TARGETS, layer)
        g = hr.gradients
        assert g.min() >= 0 and (g > 0).any()
        if layer == "features.3":
            assert (g == 0).any()  # sparse, varying in space: not the trivial GAP case
        scale = _elementwise_scale(g, hr.activations)
        _record("layer-cam = hires (g >= 0)", scaled_error(lc.raw, hr.raw, scale))


def test_layer_cam_under_gap_fc_is_grad_cam_with_relu_weights(small, gap_zoo):
    """Under GAP → FC, g^k = α_k (Grad-CAM's weight, = W_ck / Z) in every position, so
    Σ_k ReLU(g^k) ⊙ A^k = Σ_k ReLU(α_k) A^k and LayerCAM = ReLU(Σ_k ReLU(α_k) A^k) —
    which differs from Grad-CAM wherever a channel with α_k < 0 is active."""
    for (model, x), layer, target in ((small, "features.6", TARGETS), (gap_zoo, "features.14", None)):
        gc = npcam.grad_cam(model, x, target, layer)
        a = gc.activations
        relu_w = np.maximum(gc.weights, 0)
        expected = np.maximum(np.einsum("nk,nkhw->nhw", relu_w, a), 0)
        lc = npcam.layer_cam(model, x, target, layer)
        _record("layer-cam = ReLU(Σ ReLU(α) A)", scaled_error(lc.cam, expected, _map_scale(relu_w, a)))
        assert scaled_error(lc.cam, gc.cam) > 1e-3  # negative α_k on active channels


# --------------------------------------------------------- element-wise Grad-CAM
@pytest.mark.parametrize("layer", ["features.3", "features.5"])
def test_elementwise_is_above_hires_with_equality_where_products_are_nonnegative(small, layer):
    """Σ_k ReLU(t_k) ≥ Σ_k t_k with equality iff every t_k ≥ 0 (t = g ⊙ A at one
    position); the difference is Σ_k ReLU(−t_k). So element-wise Grad-CAM ≥ HiResCAM
    pointwise, equal where all g ⊙ A ≥ 0, and 0 where g ≤ 0 with A ≥ 0."""
    model, x = small
    ge = npcam.grad_cam_elementwise(model, x, TARGETS, layer)
    hr = npcam.hires_cam(model, x, TARGETS, layer)
    t = hr.gradients * hr.activations
    scale = _elementwise_scale(hr.gradients, hr.activations)
    assert np.array_equal(ge.weights, hr.gradients) and np.array_equal(ge.cam, ge.raw)
    assert ge.raw.min() >= 0
    assert np.all(ge.raw - hr.raw >= -BAR * scale)
    _record("elementwise - hires = Σ ReLU(-gA)",
            scaled_error(ge.raw - hr.raw, np.maximum(-t, 0).sum(1), scale))
    equal = (t >= 0).all(axis=1)
    assert equal.any() and (~equal).any()
    _record("elementwise = hires where all gA >= 0", scaled_error(ge.raw[equal], hr.raw[equal], scale))
    if layer == "features.3":  # A ≥ 0 (a ReLU): positions with every g ≤ 0 and some g < 0
        zero = (hr.gradients <= 0).all(axis=1) & (hr.gradients < 0).any(axis=1)
        assert zero.any()
        assert np.all(ge.raw[zero] == 0)


# ---------------------------------------------------------------------- XGrad-CAM
def test_xgrad_weights_formula_and_rescaling_invariance():
    """At the formula level (arrays A and g given, g held fixed): α_k = Σ_ij A g / Σ_ab A
    is an average of g^k with weights A^k_ij / Σ A^k, so α_k(s_k A^k, g) = α_k(A^k, g) for
    every s_k > 0 — for signed A too. (In a network rescaling A changes g downstream; see
    the next test.) Also checked against the defining sum written element by element."""
    rng = np.random.default_rng(3)
    for lo in (0.0, -1.0):
        a = rng.uniform(lo, 1.0, size=(3, 5, 4, 6))
        g = rng.normal(size=(3, 5, 4, 6))
        s = rng.uniform(0.01, 100.0, size=(3, 5, 1, 1))
        w = xgrad_cam_weights(a, g)
        by_hand = np.array([[sum(a[n, k, i, j] / a[n, k].sum() * g[n, k, i, j]
                                 for i in range(4) for j in range(6)) for k in range(5)] for n in range(3)])
        _record("xgrad weights = defining sum", scaled_error(w, by_hand))
        _record("xgrad weights: A -> s_k A", scaled_error(xgrad_cam_weights(s * a, g), w))
        # with one set of gradients per class (target="all"): (N, C, K)
        gc = rng.normal(size=(3, 2, 5, 4, 6))
        wc = xgrad_cam_weights(a, gc)
        assert wc.shape == (3, 2, 5)
        for c in range(2):
            _record("xgrad weights per class", scaled_error(wc[:, c], xgrad_cam_weights(a, gc[:, c])))


def test_xgrad_map_invariant_to_a_channel_reparametrisation(small):
    """In a network: scale features.5's output channel k by s_k > 0 (its filter and bias)
    and the FC's column k by 1/s_k. The function is unchanged (ReLU is positively
    homogeneous), A6^k → s_k A6^k and g^k → g^k / s_k, so α_k → α_k / s_k and the map
    Σ_k α_k A^k is unchanged."""
    model, x = small
    ref = npcam.xgrad_cam(model, x, TARGETS, "features.6")
    s = np.random.default_rng(5).uniform(0.1, 10.0, size=16)
    other = small_cnn()
    p = dict(other.named_parameters())
    p["features.5.weight"][...] *= s[:, None, None, None]
    p["features.5.bias"][...] *= s
    p["classifier.1.weight"][...] /= s[None, :]
    r = npcam.xgrad_cam(other, x, TARGETS, "features.6")
    assert scaled_error(other.forward(x), model.forward(x)) <= 1e-13
    scale = _map_scale(ref.weights, ref.activations)
    _record("xgrad map under reparametrisation", scaled_error(r.raw, ref.raw, scale))
    _record("xgrad α_k -> α_k / s_k", scaled_error(r.weights * s, ref.weights))


def test_xgrad_dead_channel_gets_weight_zero(small):
    """The 0/0 rule: a channel with Σ A = 0 gets α_k = 0. Constructed: features.5's bias of
    channel 0 set to −1e3, so that channel of features.6 is 0 everywhere while its
    gradient W_c0 / Z is not; no numpy warning leaks (warnings are errors here), no
    NumericalWarning (Σ|A| = 0), and the map still equals Grad-CAM's (the channel adds
    nothing)."""
    model = small_cnn()
    dict(model.named_parameters())["features.5.bias"][0] = -1e3
    x = small[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = npcam.xgrad_cam(model, x, TARGETS, "features.6")
        r_all = npcam.xgrad_cam(model, x, "all", "features.6")
    assert np.all(r.activations[:, 0] == 0) and np.all(r.gradients[:, 0] != 0)
    assert np.all(r.weights[:, 0] == 0) and np.all(r_all.weights[:, :, 0] == 0)
    assert np.all(np.isfinite(r.weights))
    gc = npcam.grad_cam(model, x, TARGETS, "features.6")
    scale = _map_scale(gc.weights, gc.activations)
    _record("xgrad = grad-cam with a dead channel", scaled_error(r.raw, gc.raw, scale))
    # the formula level: a zero channel with non-zero g
    a = np.ones((1, 2, 3, 3))
    a[0, 1] = 0
    g = np.full((1, 2, 3, 3), 2.5)
    np.testing.assert_array_equal(xgrad_cam_weights(a, g), [[2.5, 0.0]])


def _cancelling(ratio: float):
    """SignedCNN with features.5's bias of channel 0 shifted so that image 0's channel 0
    has Σ_ab A_ab = ratio · Σ_ab |A_ab| (up to rounding and the O(ratio²) change of
    Σ|A|)."""
    model, x = small_cnn(signed=True), small_cnn_input()
    a = model.run(x).activations["features.5"]
    bias = dict(model.named_parameters())["features.5.bias"]
    hw = a.shape[2] * a.shape[3]
    bias[0] -= a[0, 0].sum() / hw
    a = model.run(x).activations["features.5"]
    bias[0] += ratio * np.abs(a[0, 0]).sum() / hw
    a = model.run(x).activations["features.5"]
    assert abs(a[0, 0].sum()) <= 1.5 * max(ratio, 1e-12) * np.abs(a[0, 0]).sum()
    return model, x


def test_xgrad_warns_when_a_channel_cancels_on_a_signed_layer(small):
    """NumericalWarning when |Σ_ab A_ab| ≤ 1e-6 · Σ_ab |A_ab| (Σ|A| > 0): constructed on
    SignedCNN's features.5 (channel 0 of image 0 shifted to sum to ~0, then to 0.5e-6 and
    2e-6 of Σ|A|: the threshold is respected). No warning on the random SignedCNN (its
    smallest ratio is 4.6e-3) nor on a ReLU layer, where Σ A = Σ |A|."""
    for ratio in (0.0, 0.5 * XGRAD_CANCEL_RTOL):
        model, x = _cancelling(ratio)
        with pytest.warns(NumericalWarning, match=r"cancel.*\(image 0, channel 0\)"):
            r = npcam.xgrad_cam(model, x, TARGETS, "features.5")
        assert np.all(np.isfinite(r.weights))
        with pytest.warns(NumericalWarning, match="cancel"):
            C.cam("xgrad-cam", model, x, TARGETS, "features.5")  # npcam's convention too
    model, x = _cancelling(2 * XGRAD_CANCEL_RTOL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        npcam.xgrad_cam(model, x, TARGETS, "features.5")
        npcam.xgrad_cam(small_cnn(signed=True), x, TARGETS, "features.5")
        npcam.xgrad_cam(small[0], x, TARGETS, "features.6")
        npcam.xgrad_cam(small[0], x, TARGETS, "features.3")
        # the libraries' conventions do not warn (the libraries do not)
        C.cam("xgrad-cam", *_cancelling(0.0), TARGETS, "features.5", convention="torchcam")


# ---------------------------------------------------------------- target="all", score
@pytest.mark.parametrize("name", list(METHODS))
def test_target_all_equals_one_class_at_a_time(small, name):
    """target="all" stacks the C one-hot cotangents in one backward pass; class c of the
    result must be the call with target=c (within 1e-13 of scale: the same arithmetic in
    another batch layout). Weights: (N, C, K) for XGrad-CAM, (N, C, K, h, w) for the
    element-wise methods."""
    model, x = small
    fn = METHODS[name]
    r = fn(model, x, "all", "features.3")
    n, k, h, w = r.activations.shape
    assert r.cam.shape == r.raw.shape == (n, 10, h, w)
    assert r.weights.shape == ((n, 10, k) if name == "xgrad-cam" else (n, 10, k, h, w))
    assert r.gradients.shape == (n, 10, k, h, w) and r.scores.shape == r.target.shape == (n, 10)
    for c in range(10):
        one = fn(model, x, c, "features.3")
        for field in ("cam", "raw", "weights", "gradients", "scores"):
            got, want = getattr(r, field)[:, c], getattr(one, field)
            err = scaled_error(got, want, max(float(np.abs(want).max()), 1e-300))
            _record(f"target='all' {field}", err, 1e-13)
        np.testing.assert_array_equal(r.target[:, c], one.target)


@pytest.mark.parametrize("name", list(METHODS))
def test_score_option_changes_y(small, name):
    """score="softmax" differentiates p_c = softmax(z)_c: the recorded y^c is p_c, and the
    gradients are those of p_c (∂p_c/∂A = Σ_j p_c(δ_cj − p_j) ∂z_j/∂A, computed here from
    the logit gradients of every class)."""
    model, x = small
    fn = METHODS[name]
    r = fn(model, x, TARGETS, "features.5", score="softmax")
    p = sp_softmax(model.forward(x), axis=1)
    rows = np.arange(len(x))
    _record("softmax score", scaled_error(r.scores, p[rows, TARGETS]))
    g_all = npcam.hires_cam(model, x, "all", "features.5").gradients  # ∂z_j/∂A, (N, C, K, h, w)
    coef = p[rows, TARGETS][:, None] * (np.eye(10)[TARGETS] - p)  # ∂p_c/∂z_j
    expected = np.einsum("nj,njkhw->nkhw", coef, g_all)
    _record("softmax gradients", scaled_error(r.gradients, expected))


# ----------------------------------------------------------------- invalid inputs
@pytest.mark.parametrize("name", list(METHODS))
def test_invalid_inputs(small, name):
    model, x = small
    fn = METHODS[name]
    with pytest.raises(ValueError, match="score"):
        fn(model, x, score="prob")
    with pytest.raises(ValueError, match="layer"):
        fn(model, x, layer="features.99")
    with pytest.raises(ValueError, match="target"):
        fn(model, x, target=10)
    with pytest.raises(ValueError, match="target"):
        fn(model, x, target="every")
    with pytest.raises(ValueError, match="one class per image"):
        fn(model, x, target=[1, 2, 3])
    with pytest.raises(TypeError, match="model"):
        fn(object(), x)
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        fn(model, bad)
    with pytest.raises(TypeError):
        fn(model, x, None, None, "logit")  # score is keyword-only
    with pytest.raises(ValueError, match="4-D"):
        fn(model, x, layer="classifier.0")


# ----------------------------------------------------------------- layer_cam_fuse
def _eq9(m, gamma):
    """Eq. 9 on the ReLU'd map, per image: tanh(γ M / max M), 0 for an all-zero map."""
    m = np.maximum(m, 0)
    out = np.zeros_like(m)
    for n in range(len(m)):
        if m[n].max() > 0:
            out[n] = np.tanh(gamma * m[n] / m[n].max())
    return out


def test_fuse_single_map_peaks_at_tanh_gamma_and_keeps_the_order():
    """tanh(γ M / max M) equals tanh(γ) exactly at the maximum (M/max M = 1), is below it
    elsewhere, and is non-decreasing in M (tanh is increasing); negative values (ReLU) map
    to 0."""
    m = np.random.default_rng(0).normal(size=(2, 5, 7))
    for gamma in (0.5, 2.0, 5.0):
        out = npcam.layer_cam_fuse([m], gamma=gamma)
        assert out.shape == m.shape
        np.testing.assert_array_equal(out.max(axis=(1, 2)), np.tanh(gamma))
        assert np.all(out[m <= 0] == 0)
        for n in range(2):
            order = np.argsort(m[n], axis=None, kind="stable")
            assert np.all(np.diff(out[n].ravel()[order]) >= 0)
        _record("layer_cam_fuse single map = eq. 9", scaled_error(out, _eq9(m, gamma)))
    assert np.array_equal(npcam.layer_cam_fuse([m]), npcam.layer_cam_fuse([m], gamma=2.0))


def test_fuse_of_two_maps_is_the_maximum_of_the_resized_scaled_maps():
    """fused = max(Up(eq9(M_1)), eq9(M_2)), Up the half-pixel bilinear resize to the
    largest size; eq. 9 normalises by each map's own max, so rescaling a map by a positive
    factor changes nothing; a map given as raw (signed) or cam (its ReLU) fuses alike."""
    rng = np.random.default_rng(1)
    m1, m2 = rng.normal(size=(2, 4, 4)), rng.normal(size=(2, 8, 8))
    out = npcam.layer_cam_fuse([m1, m2])
    expected = np.maximum(upsample(_eq9(m1, 2.0), (8, 8)), _eq9(m2, 2.0))
    assert out.shape == (2, 8, 8)
    _record("layer_cam_fuse two maps", scaled_error(out, expected))
    _record("layer_cam_fuse scale invariance", scaled_error(npcam.layer_cam_fuse([3 * m1, 0.01 * m2]), out))
    _record("layer_cam_fuse raw vs cam", scaled_error(npcam.layer_cam_fuse([np.maximum(m1, 0), m2]), out))
    assert not np.allclose(out, upsample(_eq9(m1, 2.0), (8, 8)))  # both maps contribute
    assert not np.allclose(out, _eq9(m2, 2.0))
    # gamma=None: no scaling, values above 1 stay
    plain = npcam.layer_cam_fuse([5 * m1, m2], gamma=None)
    _record("layer_cam_fuse gamma=None",
            scaled_error(plain, np.maximum(upsample(np.maximum(5 * m1, 0), (8, 8)), np.maximum(m2, 0))))
    assert plain.max() > 1


def test_fuse_size_default_and_explicit():
    """Default size (max_l h_l, max_l w_l); an int or (H, W) is honoured; a map already
    at the size is not resampled."""
    rng = np.random.default_rng(2)
    m1, m2 = rng.uniform(size=(1, 4, 6)), rng.uniform(size=(1, 8, 3))
    assert npcam.layer_cam_fuse([m1, m2]).shape == (1, 8, 6)
    assert npcam.layer_cam_fuse([m1, m2], size=(5, 7)).shape == (1, 5, 7)
    assert npcam.layer_cam_fuse([m1, m2], size=9).shape == (1, 9, 9)
    _record("layer_cam_fuse explicit size",
            scaled_error(npcam.layer_cam_fuse([m1], size=(8, 12)), upsample(_eq9(m1, 2.0), (8, 12))))


def test_fuse_map_with_no_positive_value_contributes_zero():
    """max M ≤ 0: after the ReLU the map is 0 and eq. 9 (0/0) is defined as 0; it adds
    nothing to the maximum. Image 0 of the first map is all negative, image 1 positive."""
    rng = np.random.default_rng(3)
    m1 = np.stack([-rng.uniform(0.1, 1, size=(6, 6)), rng.uniform(size=(6, 6))])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = npcam.layer_cam_fuse([m1])
        zero = npcam.layer_cam_fuse([np.zeros((2, 3, 3))])
    assert np.all(out[0] == 0) and out[1].max() == np.tanh(2.0)
    assert np.all(zero == 0)
    m2 = rng.uniform(size=(2, 6, 6))
    np.testing.assert_array_equal(npcam.layer_cam_fuse([m1, m2])[0], _eq9(m2, 2.0)[0])


def test_fuse_layer_cam_maps_of_a_network(small):
    """End to end: LayerCAM's maps at features.3 (32²) and features.6 (16²) fuse to 32²,
    peaking at tanh(2) per image."""
    model, x = small
    deep = npcam.layer_cam(model, x, TARGETS, "features.6")
    shallow = npcam.layer_cam(model, x, TARGETS, "features.3")
    out = npcam.layer_cam_fuse([deep.cam, shallow.cam])
    assert out.shape == (2, 32, 32)
    np.testing.assert_array_equal(out.max(axis=(1, 2)), np.tanh(2.0))


@pytest.mark.parametrize("maps, gamma, size, error, match", [
    ([], 2.0, None, ValueError, "at least one"),
    (np.zeros((2, 3, 3)), 2.0, None, TypeError, "list or tuple"),
    ("maps", 2.0, None, TypeError, "list or tuple"),
    ([np.zeros((3, 3))], 2.0, None, ValueError, r"maps\[0\] must be a 3-D"),
    ([np.zeros((2, 3, 3)), np.zeros((3, 3, 3))], 2.0, None, ValueError, "same number of images"),
    ([np.zeros((2, 3, 3)), np.full((2, 3, 3), np.nan)], 2.0, None, ValueError, r"maps\[1\].*finite"),
    ([np.zeros((2, 3, 3)), np.full((2, 3, 3), np.inf)], 2.0, None, ValueError, "finite"),
    ([np.zeros((2, 0, 3))], 2.0, None, ValueError, "non-empty"),
    ([np.zeros((2, 3, 3), dtype=complex)], 2.0, None, TypeError, "real numbers"),
    ([np.zeros((2, 3, 3))], 0.0, None, ValueError, "gamma"),
    ([np.zeros((2, 3, 3))], -1.0, None, ValueError, "gamma"),
    ([np.zeros((2, 3, 3))], np.inf, None, ValueError, "gamma"),
    ([np.zeros((2, 3, 3))], True, None, TypeError, "gamma"),
    ([np.zeros((2, 3, 3))], "2", None, TypeError, "gamma"),
    ([np.zeros((2, 3, 3))], 2.0, (0, 3), ValueError, "size"),
    ([np.zeros((2, 3, 3))], 2.0, (3, 3, 3), ValueError, "size"),
])
def test_fuse_validation(maps, gamma, size, error, match):
    with pytest.raises(error, match=match):
        npcam.layer_cam_fuse(maps, gamma=gamma, size=size)


def test_fuse_refuses_cam_results_with_a_hint(small):
    r = npcam.layer_cam(*small, TARGETS, "features.6")
    with pytest.raises(TypeError, match=r"\.cam"):
        npcam.layer_cam_fuse(r)
    with pytest.raises(TypeError, match=r"\.cam"):
        npcam.layer_cam_fuse([r])


# ------------------------------------------------- conventions that need no library
@pytest.mark.parametrize("name", list(METHODS))
def test_npcam_convention_is_the_upsampled_cam(small, name):
    """The "npcam" preset is the method's cam upsampled (half-pixel bilinear) to the
    input size (default) or input_size, float64, not normalised."""
    model, x = small
    r = METHODS[name](model, x, TARGETS, "features.5")
    out = C.cam(name, model, x, TARGETS, "features.5")
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, upsample(r.cam, (32, 32)))
    np.testing.assert_array_equal(C.cam(name, model, x, TARGETS, "features.5", input_size=(20, 24)),
                                  upsample(r.cam, (20, 24)))


def test_tf_keras_vis_layer_cam_convention(small):
    """tf-keras-vis 0.8.7's Layercam (read from its source): ReLU(Σ A ReLU(g)) with y^c the
    softmax probability by default, scipy's order-1 zoom — bilinear with aligned corners,
    i.e. npcam.upsample(..., align_corners=True) — then (m − min)/(max − min + 1e-7)."""
    from npcam.verify.conventions.layer_cam import _TKV_SCORE

    assert _TKV_SCORE == C.DEFAULT_SCORES["tf-keras-vis"]
    model, x = small
    cam = npcam.layer_cam(model, x, TARGETS, "features.5", score="softmax").cam
    up = upsample(cam, (32, 32), align_corners=True)
    lo, hi = up.min(axis=(1, 2), keepdims=True), up.max(axis=(1, 2), keepdims=True)
    out = C.cam("layer-cam", model, x, TARGETS, "features.5", convention="tf-keras-vis")
    _record("tf-keras-vis layer-cam", scaled_error(out, (up - lo) / (hi - lo + 1e-7)))
    small_map = C.cam("layer-cam", model, x, TARGETS, "features.5", convention="tf-keras-vis",
                      expand_cam=False, score="logit")
    lc = npcam.layer_cam(model, x, TARGETS, "features.5").cam
    lo, hi = lc.min(axis=(1, 2), keepdims=True), lc.max(axis=(1, 2), keepdims=True)
    _record("tf-keras-vis layer-cam (no expand)", scaled_error(small_map, (lc - lo) / (hi - lo + 1e-7)))
    raw = C.cam("layer-cam", model, x, TARGETS, "features.5", convention="tf-keras-vis",
                normalize_cam=False, input_size=(16, 40))
    expected = upsample(cam, (16, 40), align_corners=True)
    _record("tf-keras-vis layer-cam (no norm)", scaled_error(raw, expected))


@pytest.mark.parametrize("method, convention, options, error, match", [
    ("layer-cam", "torchcam", {"input_size": (8, 8)}, ValueError, "input_size must be None"),
    ("xgrad-cam", "torchcam", {"input_size": (8, 8)}, ValueError, "input_size must be None"),
    ("layer-cam", "torchcam", {"normalized": "yes"}, TypeError, "normalized"),
    ("xgrad-cam", "torchcam", {"normalized": 1}, TypeError, "normalized"),
    ("layer-cam", "tf-keras-vis", {"expand_cam": False, "input_size": (8, 8)}, ValueError, "input_size"),
    ("layer-cam", "tf-keras-vis", {"normalize_cam": None}, TypeError, "normalize_cam"),
    ("hires-cam", "pytorch-grad-cam", {"input_size": (0, 8)}, ValueError, "input_size"),
    ("hires-cam", "pytorch-grad-cam", {"eigen_smooth": True}, TypeError, "eigen_smooth"),
    ("hires-cam", "torchcam", {}, ValueError, "convention must be one of"),
    ("grad-cam-elementwise", "tf-keras-vis", {}, ValueError, "convention must be one of"),
    ("layer-cam", "pytorch-grad-cam", {"target": "all"}, ValueError, "target='all'"),
])
def test_convention_validation(small, method, convention, options, error, match):
    model, x = small
    options = dict(options)
    target = options.pop("target", TARGETS)
    with pytest.raises(error, match=match):
        C.cam(method, model, x, target, "features.5", convention=convention, **options)


def test_convention_defaults_without_torch(small):
    """The library presets run without their libraries and return the libraries' shapes
    and dtypes: pytorch-grad-cam (N, H, W) float32 in [0, 1]; torchcam (N, h, w) in
    [0, 1) at the layer's resolution; normalized=False gives torchcam's ReLU'd sum."""
    model, x = small
    for method in METHODS:
        out = C.cam(method, model, x, TARGETS, "features.5", convention="pytorch-grad-cam")
        assert out.shape == (2, 32, 32) and out.dtype == np.float32
        assert out.min() == 0 and 0.999 < out.max() <= 1
    for method in ("xgrad-cam", "layer-cam"):
        out = C.cam(method, model, x, TARGETS, "features.5", convention="torchcam")
        assert out.shape == (2, 16, 16) and out.dtype == np.float64 and out.max() < 1
    un = C.cam("layer-cam", model, x, TARGETS, "features.5", convention="torchcam", normalized=False)
    expected = npcam.layer_cam(model, x, TARGETS, "features.5").cam
    _record("torchcam layer-cam unnormalised", scaled_error(un, expected))
