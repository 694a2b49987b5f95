r"""Grad-CAM++ (``npcam.grad_cam_pp``) and its conventions, against facts derived by hand.

The derivation of eq. 19 is checked where it can fail: that for a ReLU / max-pool network
the 2nd and 3rd derivatives of Y = exp(y^c) along one coordinate A^k_ij of the layer are
e^S g² and e^S g³ (central differences of the network itself), and that the softmax
closed form (the cumulants of the per-class gradients) is the exact eq. 10 for p_c
(central differences of p_c, and an independent derivation by the quotient rule).

Finite differences: S(A + t e_kij) is piecewise linear in t. A fixed step crosses ReLU and
max-pool kinks (cam-family.md measured 7e4 with h = 1e-4/|g|), so the step is chosen per
position: the largest h = c/|g| (c = 1e-3, 5e-4, 2.5e-4, 1.25e-4) for which the five
values S(A + t e), t ∈ {−2h, −h, 0, h, 2h}, lie on one line (every second difference below
1e-12·|S|) with the slope of the backward pass; positions with no such h are left out.
On that stencil exp(S) is the exponential of a linear function, so the errors are only the
stencil's truncation, (gh)²/12 and (gh)²/4, and float64 round-off of S, ~1e-16/(gh)^n:
bars 1e-6 (2nd) and 1e-3 (3rd), relative to e^S g² and e^S |g|³.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _support import scaled_error, small_cnn, small_cnn_input
from hypothesis import given, settings
from hypothesis import strategies as st

import npcam
from npcam.image import upsample
from npcam.methods.grad_cam_pp import EXP_MAX
from npcam.nn.graph import Graph
from npcam.verify import conventions as C
from npcam.verify.conventions.grad_cam_pp import CONVENTIONS

LAYERS = ("features.3", "features.5", "features.6")
TARGET = np.array([4, 2])  # both images predict class 4: explain another class for one
T_STENCIL = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
STEPS = (1e-3, 5e-4, 2.5e-4, 1.25e-4)


@pytest.fixture(scope="module")
def small():
    return small_cnn(0), small_cnn_input(1, 2)


@pytest.fixture(scope="module")
def signed():
    return small_cnn(0, signed=True), small_cnn_input(1, 2)


# ------------------------------------------------------------- the FD harness
def _stencil(model, x1, layer, pos, h):
    """All logits at A + t h_p e_p for the stencil t and each position p: (P, 5, C)."""
    trace = model.run(x1)
    a = trace.activations[layer]
    batch = np.repeat(a, len(pos) * 5, axis=0).reshape(len(pos), 5, *a.shape[1:])
    rows = np.arange(len(pos))
    k, i, j = pos.T
    for s, t in enumerate(T_STENCIL):
        batch[rows, s, k, i, j] += t * h
    out = model.run_from(trace, layer, batch.reshape(-1, *a.shape[1:])).output
    return out.reshape(len(pos), 5, -1)


def _linear(s, h, slope):
    """The five values of each row of ``s`` (P, 5) lie on one line of slope ``slope``."""
    second = np.stack([s[:, 0] - 2 * s[:, 1] + s[:, 2], s[:, 1] - 2 * s[:, 2] + s[:, 3],
                       s[:, 2] - 2 * s[:, 3] + s[:, 4]])
    flat = np.all(np.abs(second) <= 1e-12 * np.abs(s[:, 2]), axis=0)
    return flat & (np.abs((s[:, 3] - s[:, 1]) / (2 * h) - slope) <= 1e-6 * np.abs(slope))


def _fd(y, h):
    """Central 2nd and 3rd differences of each row of ``y`` (P, 5) on the stencil."""
    d2 = (y[:, 3] - 2 * y[:, 2] + y[:, 1]) / h**2
    d3 = (y[:, 4] - 2 * y[:, 3] + 2 * y[:, 1] - y[:, 0]) / (2 * h**3)
    return d2, d3


def _linear_positions(model, x1, layer, c, g_all, scale, rng, count=120):
    """Up to ``count`` random positions with a nonzero scale, each with the largest step
    h = STEPS·/scale on which every class's logit in ``c`` is linear: (pos, h, logits)."""
    nz = np.argwhere(scale != 0)
    pos = nz[rng.choice(len(nz), min(count, len(nz)), replace=False)]
    best_h = np.full(len(pos), np.nan)
    best_s = np.full((len(pos), 5, g_all.shape[0]), np.nan)
    for step in STEPS:
        todo = np.isnan(best_h)
        if not todo.any():
            break
        p = pos[todo]
        h = step / scale[tuple(p.T)]
        s = _stencil(model, x1, layer, p, h)
        ok = np.ones(len(p), dtype=bool)
        for m in c:
            ok &= _linear(s[:, :, m], h, g_all[m][tuple(p.T)])
        idx = np.flatnonzero(todo)[ok]
        best_h[idx], best_s[idx] = h[ok], s[ok]
    keep = ~np.isnan(best_h)
    return pos[keep], best_h[keep], best_s[keep]


# ----------------------------------------------- eq. 19: derivatives of exp(y^c)
@pytest.mark.parametrize("layer", LAYERS)
def test_exp_score_derivatives_equal_closed_form_by_central_differences(small, layer):
    """For a ReLU / max-pool network, d²/dt² and d³/dt³ of Y = exp(y^c(A + t e_kij)) at
    t = 0 are e^S g² and e^S g³ with g = ∂y^c/∂A^k_ij (the paper's eqs. 17-18), and the
    α of eq. 10 built from these differences is ``extra["alpha"]``."""
    model, x = small
    r = npcam.grad_cam_pp(model, x, TARGET, layer)
    all_g = npcam.grad_cam(model, x, "all", layer).gradients  # every class, for the slopes
    rng = np.random.default_rng(7)
    worst = [0.0, 0.0, 0.0]
    for n in range(2):
        c = int(TARGET[n])
        g = r.gradients[n]
        pos, h, s = _linear_positions(model, x[n:n + 1], layer, [c], all_g[n], np.abs(g), rng)
        assert len(pos) >= 3, f"only {len(pos)} positions with a linear stencil"
        sc = s[:, :, c]
        y = np.exp(sc - sc[:, 2:3])  # Y / e^{S(0)}: the same derivatives, divided by e^S
        d2, d3 = _fd(y, h)
        gp = g[tuple(pos.T)]
        worst[0] = max(worst[0], float(np.max(np.abs(d2 - gp**2) / gp**2)))
        worst[1] = max(worst[1], float(np.max(np.abs(d3 - gp**3) / np.abs(gp) ** 3)))
        total = r.activations[n].sum(axis=(1, 2))[pos[:, 0]]  # Σ_ab A^k_ab
        alpha_fd = d2 / (2 * d2 + total * d3)
        alpha = r.extra["alpha"][n][tuple(pos.T)]
        worst[2] = max(worst[2], float(np.max(np.abs(alpha_fd - alpha) / np.abs(alpha))))
    assert worst[0] <= 1e-6, worst
    assert worst[1] <= 1e-3, worst
    assert worst[2] <= 1e-3, worst


def test_fixed_step_fails_where_the_stencil_crosses_a_kink(small):
    """The per-position step matters: at features.3 (before the max-pool) most positions
    have no linear stencil at h = 1e-3/|g|, so a fixed step would compare against kinks."""
    model, x = small
    g = npcam.grad_cam_pp(model, x, TARGET, "features.3").gradients[0]
    nz = np.argwhere(g != 0)[:60]
    h = 1e-3 / np.abs(g[tuple(nz.T)])
    s = _stencil(model, x[:1], "features.3", nz, h)[:, :, TARGET[0]]
    assert (~_linear(s, h, g[tuple(nz.T)])).mean() > 0.5


# ------------------------------------------------------------ softmax: eq. 10
def _explicit_softmax_derivatives(d, logits, c):
    """∂²p_c, ∂³p_c along e_kij by the quotient rule on p_c = f/Z, f = e^{S_c},
    Z = Σ_m e^{S_m}, with S linear along e (S_m' = d_m): f^(n) = d_c^n f,
    Z^(n) = Σ_m d_m^n e^{S_m}; (1/Z)' = −Z'/Z², (1/Z)'' = −Z''/Z² + 2Z'²/Z³,
    (1/Z)''' = −Z'''/Z² + 6Z'Z''/Z³ − 6Z'³/Z⁴. In raw moments m_n = Z^(n)/Z (no cumulants)."""
    e = np.exp(logits - logits.max())
    p = e / e.sum()
    m1, m2, m3 = (np.einsum("m,m...->...", p, d**r) for r in (1, 2, 3))
    dc = d[c]
    r1, r2, r3 = -m1, -m2 + 2 * m1**2, -m3 + 6 * m1 * m2 - 6 * m1**3  # Z·(1/Z)^(n)
    pc = p[c]
    p1 = pc * (dc + r1)
    p2 = pc * (dc**2 + 2 * dc * r1 + r2)
    p3 = pc * (dc**3 + 3 * dc**2 * r1 + 3 * dc * r2 + r3)
    return pc, p1, p2, p3, np.abs(d - m1).max(axis=0)


@pytest.mark.parametrize("layer", LAYERS)
def test_softmax_alpha_is_exact_eq10_from_explicit_derivatives(small, layer):
    """score="softmax": α = p''/(2p'' + Σ_ab A_ab p'''), w = Σ α ReLU(p') with p', p'',
    p''' of p_c derived independently (quotient rule, raw moments) from every class's
    logit gradient; ``gradients`` is ∂p_c/∂A from the softmax backward seed (1e-12)."""
    model, x = small
    r = npcam.grad_cam_pp(model, x, TARGET, layer, score="softmax")
    d = npcam.grad_cam(model, x, "all", layer).gradients  # (N, C, K, h, w)
    gs = npcam.grad_cam(model, x, TARGET, layer, score="softmax").gradients
    logits = model.run(x).output
    for n in range(2):
        pc, p1, p2, p3, _ = _explicit_softmax_derivatives(d[n], logits[n], TARGET[n])
        total = r.activations[n].sum(axis=(1, 2), keepdims=True)
        den = 2 * p2 + total * p3
        alpha = np.where((p2 != 0) & (den != 0), p2 / np.where(den != 0, den, 1.0), 0.0)
        assert scaled_error(r.extra["alpha"][n], alpha) <= 1e-12
        assert scaled_error(r.gradients[n], gs[n]) <= 1e-12
        assert scaled_error(r.gradients[n], p1) <= 1e-12
        w = (alpha * np.maximum(p1, 0)).sum(axis=(1, 2))
        assert scaled_error(r.weights[n], w) <= 1e-12
        assert r.scores[n] == pytest.approx(pc, rel=1e-14)
    assert scaled_error(r.raw, np.einsum("nk,nkhw->nhw", r.weights, r.activations)) <= 1e-12


@pytest.mark.parametrize("layer", LAYERS)
def test_softmax_derivatives_equal_central_differences_of_p(small, layer):
    """The cumulant closed form p'' = p(u'' + u'²), p''' = p(u''' + 3u'u'' + u'³) equals
    central differences of p_c(A + t e_kij) where every logit is linear on the stencil:
    errors relative to p·D² and p·D³, D = max_m |d_m − E_p[d]| (the natural scale of the
    n-th derivative), bars 1e-6 and 1e-3."""
    model, x = small
    from npcam.methods.grad_cam_pp import softmax_derivatives

    d = npcam.grad_cam(model, x, "all", layer).gradients
    logits = model.run(x).output
    rng = np.random.default_rng(11)
    worst = [0.0, 0.0]
    for n in range(2):
        c = int(TARGET[n])
        p, u1, q2, q3 = softmax_derivatives(d[n:n + 1], logits[n:n + 1], TARGET[n:n + 1])
        spread = _explicit_softmax_derivatives(d[n], logits[n], c)[4]
        pos, h, s = _linear_positions(model, x[n:n + 1], layer, range(d.shape[1]), d[n], spread, rng,
                                      count=60)
        assert len(pos) >= 3, f"only {len(pos)} positions with a linear stencil"
        z = s - s.max(axis=2, keepdims=True)
        pt = np.exp(z[:, :, c]) / np.exp(z).sum(axis=2)
        d2, d3 = _fd(pt, h)
        sp = spread[tuple(pos.T)]
        where = (0,) + tuple(pos.T)
        worst[0] = max(worst[0], float(np.max(np.abs(d2 - p[0] * q2[where]) / (p[0] * sp**2))))
        worst[1] = max(worst[1], float(np.max(np.abs(d3 - p[0] * q3[where]) / (p[0] * sp**3))))
    assert worst[0] <= 1e-6, worst
    assert worst[1] <= 1e-3, worst


def test_softmax_closed_form_of_eq19_is_not_eq10(small):
    """Why score="softmax" does not use eq. 19: for Y = p_c, (∂p/∂A)²/p (what eq. 19 with
    the gradient of p computes in place of ∂²p/∂A²) differs from the exact ∂²p/∂A² by a
    factor of order 1 (cam-family.md: rel 1.0-6.2)."""
    model, x = small
    d = npcam.grad_cam(model, x, "all", "features.6").gradients
    logits = model.run(x).output
    pc, p1, p2, _, _ = _explicit_softmax_derivatives(d[0], logits[0], TARGET[0])
    assert scaled_error(p1**2 / pc, p2) > 0.5


# ------------------------------------------------------------ exact identities
@pytest.mark.parametrize("layer", LAYERS)
def test_alpha_weights_and_map_are_eq19(small, signed, layer):
    """α = g²/(2g² + (Σ_ab A_ab) g³) where g ≠ 0 (and the denominator ≠ 0), else 0;
    w_k = Σ_ij α ReLU(g); raw = Σ_k w_k A^k; cam = ReLU(raw) — the paper's form evaluated
    directly (npcam evaluates 1/(2 + S g))."""
    for model, x in (small, signed):
        if layer == "features.6" and model is signed[0]:
            continue
        r = npcam.grad_cam_pp(model, x, TARGET, layer)
        g, a = r.gradients, r.activations
        s = a.sum(axis=(2, 3), keepdims=True)
        den = 2 * g**2 + s * g**3
        alpha = np.where((g != 0) & (den != 0), g**2 / np.where(den != 0, den, 1.0), 0.0)
        assert scaled_error(r.extra["alpha"], alpha) <= 1e-12
        assert np.all(r.extra["alpha"][g == 0] == 0)
        w = (alpha * np.maximum(g, 0)).sum(axis=(2, 3))
        assert scaled_error(r.weights, w) <= 1e-12
        raw = (w[:, :, None, None] * a).sum(axis=1)
        assert scaled_error(r.raw, raw) <= 1e-12
        assert np.array_equal(r.cam, np.maximum(r.raw, 0))


@pytest.mark.parametrize("signed_net", [False, True])
def test_gap_fc_alpha_is_one_over_two_plus_wS_over_Z(small, signed, signed_net):
    """Under GAP → FC, g^k_ij = W_ck/Z everywhere, so α_ij = 1/(2 + W_ck Σ_ab A^k_ab / Z),
    with W read from the model (SmallCNN features.6, SignedCNN's signed features.5)."""
    model, x = signed if signed_net else small
    layer = "features.5" if signed_net else "features.6"
    r = npcam.grad_cam_pp(model, x, TARGET, layer)
    w_fc = dict(model.named_parameters())["classifier.1.weight"]  # (10, 16)
    a = r.activations
    z = a.shape[2] * a.shape[3]
    expect = 1.0 / (2.0 + w_fc[TARGET][:, :, None, None] * a.sum(axis=(2, 3), keepdims=True) / z)
    assert scaled_error(r.extra["alpha"], np.broadcast_to(expect, a.shape)) <= 1e-12
    if signed_net:  # a signed layer: Σ A < 0 puts α outside (0, 1/2]
        assert (r.extra["alpha"] > 0.5).any() or (r.extra["alpha"] < 0).any()


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), layer=st.sampled_from(("features.3", "features.6")))
def test_alpha_lies_in_zero_half_where_g_positive_and_A_nonnegative(seed, layer):
    """On a layer with A ≥ 0, α = 1/(2 + S g) with S = Σ_ab A_ab ≥ 0, so α ∈ (0, 1/2]
    wherever g > 0 (and α = 0 where g = 0)."""
    model = small_cnn(seed % 5)
    x = np.random.default_rng(seed).uniform(size=(2, 3, 32, 32))
    r = npcam.grad_cam_pp(model, x, None, layer)
    g, alpha = r.gradients, r.extra["alpha"]
    assert (r.activations >= 0).all()
    assert (g > 0).any()
    assert np.all(alpha[g > 0] > 0) and np.all(alpha[g > 0] <= 0.5)
    assert np.all(alpha[g == 0] == 0)


def test_exp_factor_scales_weights_raw_and_cam_by_exp_score(small):
    """exp_factor=True is eq. 5 with Y = exp(S): w = Σ α ReLU(e^S g) = e^{y^c} w, so
    weights, raw and cam of each image are e^{y^c} times exp_factor=False's; α is the same."""
    model, x = small
    r0 = npcam.grad_cam_pp(model, x, TARGET, "features.5")
    r1 = npcam.grad_cam_pp(model, x, TARGET, "features.5", exp_factor=True)
    e = np.exp(model.run(x).output[[0, 1], TARGET])
    assert scaled_error(r1.weights, e[:, None] * r0.weights) <= 1e-12
    assert scaled_error(r1.raw, e[:, None, None] * r0.raw) <= 1e-12
    assert scaled_error(r1.cam, e[:, None, None] * r0.cam) <= 1e-12
    assert np.array_equal(r1.extra["alpha"], r0.extra["alpha"])
    ra = npcam.grad_cam_pp(model, x, "all", "features.5", exp_factor=True)
    assert scaled_error(ra.raw[1, 2], r1.raw[1]) <= 1e-12


def test_exp_factor_overflow_and_score_are_refused_without_warnings():
    """e^{y} overflows float64 above 709.78: ValueError, and no numpy warning leaks; and
    exp_factor=True with score="softmax" is refused (eq. 10 is applied to p_c itself)."""
    model = npcam.Sequential(npcam.Conv2d(1, 2, 1), npcam.ReLU(), npcam.GlobalAvgPool2d(), npcam.Linear(2, 2))
    params = dict(model.named_parameters())
    params["0.weight"][...] = 1.0
    params["3.weight"][...] = np.array([[1.0, 2.0], [0.5, -1.0]])
    params["3.bias"][...] = [EXP_MAX + 1.0, 0.0]
    x = np.random.default_rng(0).uniform(size=(1, 1, 3, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="exp_factor=True needs e"):
            npcam.grad_cam_pp(model, x, 0, "1", exp_factor=True)
        assert np.isfinite(npcam.grad_cam_pp(model, x, 0, "1").cam).all()
        assert np.isfinite(npcam.grad_cam_pp(model, x, 1, "1", exp_factor=True).cam).all()
    with pytest.raises(ValueError, match="exp_factor=True needs score='logit'"):
        npcam.grad_cam_pp(model, x, 0, "1", score="softmax", exp_factor=True)
    with pytest.raises(TypeError, match="exp_factor must be a bool"):
        npcam.grad_cam_pp(model, x, 0, "1", exp_factor=1)


@pytest.mark.parametrize("score", ["logit", "softmax"])
def test_target_all_equals_one_call_per_class(small, score):
    """target="all" gives, for every class c, what target=c gives (1e-12 of scale), with
    the class axis after N in cam, raw, weights, gradients, scores and extra["alpha"]."""
    model, x = small
    ra = npcam.grad_cam_pp(model, x, "all", "features.3", score=score)
    assert ra.extra["alpha"].shape == (2, 10, 12, 32, 32)
    assert ra.weights.shape == (2, 10, 12) and ra.cam.shape == (2, 10, 32, 32)
    for c in range(10):
        rc = npcam.grad_cam_pp(model, x, c, "features.3", score=score)
        for field in ("cam", "raw", "weights", "gradients", "scores"):
            assert scaled_error(getattr(ra, field)[:, c], getattr(rc, field)) <= 1e-12, (c, field)
        assert scaled_error(ra.extra["alpha"][:, c], rc.extra["alpha"]) <= 1e-12
        assert np.array_equal(ra.target[:, c], rc.target)


def test_scores_refused_and_validated(small):
    """log_softmax is refused with one sentence naming score; other arguments are
    validated by the shared checks."""
    model, x = small
    with pytest.raises(ValueError, match="score must be 'logit' or 'softmax' for grad_cam_pp"):
        npcam.grad_cam_pp(model, x, score="log_softmax")
    with pytest.raises(ValueError, match="score must be one of"):
        npcam.grad_cam_pp(model, x, score="prob")
    with pytest.raises(ValueError, match="target must be in"):
        npcam.grad_cam_pp(model, x, 10)
    with pytest.raises(ValueError, match="target must be in"):
        npcam.grad_cam_pp(model, x, 10, score="softmax")
    with pytest.raises(ValueError, match="layer 'nope' is not in the model"):
        npcam.grad_cam_pp(model, x, layer="nope")


def test_registered_and_default_layer(small):
    """grad-cam++ is in METHODS with target="all" support; layer=None is the default
    layer of npcam.grad_cam (features.6 here)."""
    model, x = small
    m = npcam.METHODS["grad-cam++"]
    assert m.function is npcam.grad_cam_pp and m.supports_all_targets
    r = npcam.grad_cam_pp(model, x)
    assert r.layer == npcam.grad_cam(model, x).layer
    assert np.array_equal(r.target, model.run(x).output.argmax(axis=1))


def test_graph_model_equals_sequential():
    """The same layers as a Graph give the same result as the Sequential (1e-13)."""
    rng = np.random.default_rng(3)
    layers = [npcam.Conv2d(3, 4, 3, padding=1, rng=rng), npcam.ReLU(), npcam.MaxPool2d(2),
              npcam.Conv2d(4, 5, 3, padding=1, rng=rng), npcam.ReLU(), npcam.GlobalAvgPool2d(),
              npcam.Linear(5, 3, rng=rng)]
    seq = npcam.Sequential(*layers)
    names = [f"n{i}" for i in range(len(layers))]
    graph = Graph([(names[i], layer, (names[i - 1] if i else "input",))
                   for i, layer in enumerate(layers)], names[-1])
    x = rng.uniform(size=(2, 3, 10, 12))
    for score in ("logit", "softmax"):
        rs = npcam.grad_cam_pp(seq, x, [0, 2], "1", score=score)
        rg = npcam.grad_cam_pp(graph, x, [0, 2], "n1", score=score)
        assert scaled_error(rg.raw, rs.raw) <= 1e-13
        assert scaled_error(rg.extra["alpha"], rs.extra["alpha"]) <= 1e-13


# ------------------------------------------------------------------ conventions
def _minmax(m):
    m = m - m.min(axis=(-2, -1), keepdims=True)
    return m / m.max(axis=(-2, -1), keepdims=True)


def test_conventions_table_and_npcam_convention(small):
    """The five conventions of the issue, and "npcam" = upsample(cam) (half-pixel)."""
    model, x = small
    assert set(CONVENTIONS) == {"npcam", "pytorch-grad-cam", "torchcam", "tf-keras-vis", "authors-code"}
    r = npcam.grad_cam_pp(model, x, TARGET, "features.5")
    ours = C.cam("grad-cam++", model, x, TARGET, "features.5")
    assert ours.dtype == np.float64 and ours.shape == (2, 32, 32)
    assert np.array_equal(ours, upsample(r.cam, (32, 32)))
    big = C.cam("grad-cam++", model, x, TARGET, "features.5", input_size=(40, 48), exp_factor=True)
    assert big.shape == (2, 40, 48)


@pytest.mark.parametrize("layer", LAYERS)
def test_torchcam_convention_is_sum_of_relu_g_cubed(small, layer):
    """torchcam's de-facto weights are Σ_ij ReLU(g)³ (its masked division is dead); then
    ReLU(Σ w A), m − min, / (max + 1e-8) — computed here from Grad-CAM's gradients."""
    model, x = small
    gr = npcam.grad_cam(model, x, TARGET, layer)
    w = (np.maximum(gr.gradients, 0) ** 3).sum(axis=(2, 3))
    cam = np.maximum(np.einsum("nk,nkhw->nhw", w, gr.activations), 0)
    ours = C.cam("grad-cam++", model, x, TARGET, layer, "torchcam", normalized=False)
    assert scaled_error(ours, cam) <= 1e-13
    cam = cam - cam.min(axis=(1, 2), keepdims=True)
    cam = cam / (cam.max(axis=(1, 2), keepdims=True) + 1e-8)
    assert scaled_error(C.cam("grad-cam++", model, x, TARGET, layer, "torchcam"), cam) <= 1e-13


def test_torchcam_intended_is_the_mixed_index_denominator(small):
    """intended=True: α = g²/(2g² + Σ_ab A_ab g³_ab + 1e-8) where g ≠ 0 — one denominator
    term per channel, not (Σ_ab A_ab) g³_ij — and it differs from eq. 19's α."""
    model, x = small
    gr = npcam.grad_cam(model, x, TARGET, "features.3")
    g, a = gr.gradients, gr.activations
    mixed = np.einsum("nkhw,nkhw->nk", g**3, a)[:, :, None, None]
    alpha = np.where(g != 0, g**2 / (2 * g**2 + mixed + 1e-8), 0.0)
    w = (alpha * np.maximum(g, 0)).sum(axis=(2, 3))
    cam = np.maximum(np.einsum("nk,nkhw->nhw", w, a), 0)
    ours = C.cam("grad-cam++", model, x, TARGET, "features.3", "torchcam", intended=True,
                 normalized=False)
    assert scaled_error(ours, cam) <= 1e-12
    paper = npcam.grad_cam_pp(model, x, TARGET, "features.3")
    assert scaled_error(w, paper.weights) > 0.01
    with pytest.raises(ValueError, match="input_size must be None for convention 'torchcam'"):
        C.cam("grad-cam++", model, x, TARGET, "features.3", "torchcam", input_size=(32, 32))
    with pytest.raises(TypeError, match="intended must be a bool"):
        C.cam("grad-cam++", model, x, TARGET, "features.3", "torchcam", intended="yes")


def test_pytorch_grad_cam_convention_is_eq19_up_to_its_epsilon(small):
    """pytorch-grad-cam's only departure is ε = 1e-6 in the denominator: with the
    gradients scaled up 1e4 (FC weights × 1e4: g² ≈ 1e2 ≫ ε) its map equals the
    min-max of npcam's (OpenCV's INTER_LINEAR is half-pixel bilinear, and min-max
    commutes with interpolation) at float32 precision; at the model's own scale
    (|g| ≈ 1e-3, g² ≈ ε) it does not."""
    model, x = small
    layer = "features.3"
    ref = _minmax(C.cam("grad-cam++", model, x, TARGET, layer))
    pgc = C.cam("grad-cam++", model, x, TARGET, layer, "pytorch-grad-cam")
    assert pgc.dtype == np.float32 and pgc.shape == (2, 32, 32)
    assert scaled_error(pgc, ref) > 1e-2
    big = small_cnn(0)
    dict(big.named_parameters())["classifier.1.weight"][...] *= 1e4
    ref = _minmax(C.cam("grad-cam++", big, x, TARGET, layer))
    pgc = C.cam("grad-cam++", big, x, TARGET, layer, "pytorch-grad-cam")
    assert scaled_error(pgc, ref) <= 2e-6


def test_tf_keras_vis_and_authors_code_under_gap_fc_are_grad_cam_of_relu_gradients(small):
    """Under GAP → FC (g constant per channel) the per-channel normalised α is 1/Z, so
    w_k = Σ_ij ReLU(e^{y^c} ḡ_k)/Z = e^{y^c} ReLU(ḡ_k): tf-keras-vis's map before zoom and
    normalisation is e^{y^c}·ReLU(Σ_k ReLU(ḡ_k) A^k), with y^c = p_c by default (a Keras
    classifier's softmax output) for "tf-keras-vis" and the logit for "authors-code"."""
    model, x = small
    layer = "features.6"
    for conv, score in (("tf-keras-vis", "softmax"), ("authors-code", "logit")):
        gr = npcam.grad_cam(model, x, TARGET, layer, score=score)
        w = np.maximum(gr.gradients.mean(axis=(2, 3)), 0)
        cam = np.exp(gr.scores)[:, None, None] * np.maximum(np.einsum("nk,nkhw->nhw", w, gr.activations), 0)
        ours = C.cam("grad-cam++", model, x, TARGET, layer, conv, expand_cam=False, normalize_cam=False)
        assert scaled_error(ours, cam) <= 1e-12, conv
        lo, hi = cam.min(axis=(1, 2), keepdims=True), cam.max(axis=(1, 2), keepdims=True)
        norm = C.cam("grad-cam++", model, x, TARGET, layer, conv, expand_cam=False)
        assert scaled_error(norm, (cam - lo) / (hi - lo + 1e-7)) <= 1e-12
        # expand_cam: zoom (order 1: corner-aligned bilinear) to the input size, then min-max
        up = upsample(cam, (32, 32), align_corners=True)
        lo, hi = up.min(axis=(1, 2), keepdims=True), up.max(axis=(1, 2), keepdims=True)
        full = C.cam("grad-cam++", model, x, TARGET, layer, conv)
        assert scaled_error(full, (up - lo) / (hi - lo + 1e-7)) <= 1e-12
    with pytest.raises(ValueError, match="input_size must be None for convention 'tf-keras-vis'"):
        C.cam("grad-cam++", model, x, TARGET, layer, "tf-keras-vis", input_size=(8, 8), expand_cam=False)


def test_tf_keras_vis_alpha_normalisation_differs_from_eq19_off_gap(small):
    """Off GAP → FC (features.3: g varies in space) normalising α per channel changes the
    map: tf-keras-vis's (with the logit) differs from eq. 19's after min-max."""
    model, x = small
    tkv = C.cam("grad-cam++", model, x, TARGET, "features.3", "tf-keras-vis", score="logit",
                expand_cam=False)
    ours = _minmax(npcam.grad_cam_pp(model, x, TARGET, "features.3").cam)
    assert scaled_error(tkv, ours) > 1e-3


def test_tf_keras_vis_overflow_is_a_value_error():
    """The e^y factor overflows float64 for y > 709.78: ValueError, no numpy warning."""
    model = npcam.Sequential(npcam.Conv2d(1, 2, 1), npcam.ReLU(), npcam.GlobalAvgPool2d(), npcam.Linear(2, 2))
    dict(model.named_parameters())["3.bias"][...] = [EXP_MAX + 1.0, 0.0]
    x = np.random.default_rng(0).uniform(size=(1, 1, 3, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="overflows float64"):
            C.cam("grad-cam++", model, x, 0, "1", "authors-code")
