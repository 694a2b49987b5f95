r"""Properties of ``npcam.methods``: CAM, Grad-CAM, the counterfactual map and the gradient
visualisations, checked on random small networks (hypothesis) against facts derived by
hand — never against the code's own output.

Networks are built from npcam.Conv2d / ReLU / MaxPool2d / GlobalAvgPool2d / Flatten /
Linear with drawn widths, kernel sizes (non-square), paddings, strides, pooling windows
(overlapping or not), input sizes (odd, non-square), batch sizes 1–3 and heads:

* ``gap``          … → GlobalAvgPool2d → Linear              (CAM's architecture)
* ``gap_flatten``  … → GlobalAvgPool2d → Flatten → Linear    (torch's AdaptiveAvgPool2d+Flatten)
* ``gap_mlp``      … → GlobalAvgPool2d → Linear → ReLU → Linear
* ``flatten``      … → Flatten → Linear
* ``flatten_mlp``  … → Flatten → Linear → ReLU → Linear      (VGG-style)

Tolerances are relative to the scale of the quantity (DESIGN.md, "How the math is
tested"): identities 1e-12, "equal" across batch sizes / code paths 1e-13, central
differences 1e-8 in ``relative_error``. The largest errors seen are printed at the end of
the module (``npcam largest error …`` lines).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import NamedTuple

import numpy as np
import pytest
from _support import scaled_error
from hypothesis import assume, given, note
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import log_softmax as sp_log_softmax
from scipy.special import softmax as sp_softmax

from npcam import (
    CAMResult,
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    cam,
    cam_equivalence,
    counterfactual,
    deconvnet,
    grad_cam,
    gradient_x_input,
    guided_backprop,
    guided_grad_cam,
    saliency,
)
from npcam.gradcheck import numerical_gradient, relative_error
from npcam.image import normalize, upsample

TINY = np.finfo(np.float64).tiny
SCORES = ("logit", "softmax", "log_softmax")
HEADS = ("gap", "gap_flatten", "gap_mlp", "flatten", "flatten_mlp")
GAP_HEADS = ("gap", "gap_flatten")

# ----------------------------------------------------------------- the largest errors seen
_WORST: dict[str, float] = {}


def _record(key: str, value: float) -> None:
    _WORST[key] = max(_WORST.get(key, 0.0), float(value))


@pytest.fixture(scope="module", autouse=True)
def _report_largest_errors(request):
    """Print the largest errors seen in this module (past pytest's output capture)."""
    yield
    lines = [f"npcam largest error {k}: {v:.3e}" for k, v in sorted(_WORST.items())]
    capman = request.config.pluginmanager.getplugin("capturemanager")
    if capman is None:
        print("\n".join(lines))
        return
    with capman.global_and_fixture_disabled():
        print("\n" + "\n".join(lines))


# --------------------------------------------------------------------------- networks
class Net(NamedTuple):
    model: Sequential
    x: np.ndarray
    num_classes: int
    body: list[str]  # names of the leaves before the head (all output 4-D maps)
    head: str
    rng: np.random.Generator

    @property
    def cam_layer(self) -> str:
        """The leaf right before GlobalAvgPool2d (CAM's A)."""
        return self.body[-1]

    @property
    def fc(self) -> Linear:
        """The last Linear layer (CAM's FC for the GAP heads)."""
        return self.model.named_layers()[-1][1]  # type: ignore[return-value]


def _weights(rng: np.random.Generator, shape, std: float) -> np.ndarray:
    """Random signs times magnitudes in [0.5, 1.5]·std: no weight is near 0, so no
    gradient path is accidentally tiny compared with the score (central differences
    resolve ∂y/∂A only to about ε·|y|/h)."""
    return rng.choice((-1.0, 1.0), size=shape) * rng.uniform(0.5, 1.5, size=shape) * std


@st.composite
def nets(
    draw,
    heads=HEADS,
    relu: str = "maybe",
    maxpool: bool = True,
    bias: bool = True,
    batch=(1, 3),
    size=(3, 8),
    max_width: int = 4,
    end_with_relu: bool = False,
    max_blocks: int = 2,
    same_padding: bool = False,
    act_scale: float = 1.0,
    separated_fc: bool = False,
) -> Net:
    """A random small CNN and input. ``relu``: "maybe" / "always" / "never" per conv block;
    ``end_with_relu`` forces the body's last leaf to be a ReLU (so A ≥ 0);
    ``same_padding`` keeps padding ≤ k//2 (maps never grow); ``act_scale`` scales the input
    and every bias, hence (the network being piecewise linear) every activation;
    ``separated_fc`` gives the last Linear layer rows that differ by at least 0.8·(3/(C−1))·std
    in every column (each column a permutation of evenly spaced values, jittered), so that
    no two classes have nearly the same weights and ∂p_c/∂A cannot nearly cancel."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(*batch))
    c_in = draw(st.integers(1, 3))
    big_h, big_w = draw(st.integers(*size)), draw(st.integers(*size))
    num_classes = draw(st.integers(2, 4))
    head = draw(st.sampled_from(heads))
    blocks = draw(st.integers(1, max_blocks))
    layers: list = []
    h, w, ch = big_h, big_w, c_in
    for b in range(blocks):
        out = draw(st.integers(1, max_width))
        kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        if same_padding:
            ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
        else:
            ph, pw = draw(st.integers(0, min(kh, 2))), draw(st.integers(0, min(kw, 2)))
        sh, sw = draw(st.sampled_from((1, 1, 2))), draw(st.sampled_from((1, 1, 2)))
        if h + 2 * ph < kh:
            kh = 1
        if w + 2 * pw < kw:
            kw = 1
        conv = Conv2d(ch, out, (kh, kw), (sh, sw), (ph, pw), bias=bias)
        conv.weight = _weights(rng, conv.weight.shape, np.sqrt(2.0 / (ch * kh * kw)))
        if bias:
            conv.bias = rng.normal(0.0, 0.3 * act_scale, size=out)
        layers.append(conv)
        h, w, ch = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1, out
        last = b == blocks - 1
        has_relu = relu == "always" or (relu == "maybe" and draw(st.booleans()))
        if end_with_relu and last:
            has_relu = True
        has_pool = maxpool and (h >= 2 or w >= 2) and draw(st.booleans())
        pool = None
        if has_pool:
            pkh = draw(st.integers(1, 2)) if h >= 2 else 1
            pkw = draw(st.integers(1, 2)) if w >= 2 else 1
            if pkh * pkw == 1:
                pkh, pkw = (2, 1) if h >= 2 else (1, 2)
            stride = (1, 1) if draw(st.booleans()) else (pkh, pkw)
            pool = MaxPool2d((pkh, pkw), stride)
            pooled = ((h - pkh) // stride[0] + 1, (w - pkw) // stride[1] + 1)
        pool_first = draw(st.booleans()) and not (end_with_relu and last)
        if pool is not None and pool_first:
            layers.append(pool)
            h, w = pooled
        if has_relu:
            layers.append(ReLU())
        if pool is not None and not pool_first:
            layers.append(pool)
            h, w = pooled
    n_body = len(layers)
    hidden = draw(st.integers(1, 4))
    if head.startswith("gap"):
        layers.append(GlobalAvgPool2d())
        if head == "gap_flatten":
            layers.append(Flatten())
        feat = ch
    else:
        layers.append(Flatten())
        feat = ch * h * w
    if head.endswith("mlp"):
        fc1 = Linear(feat, hidden, bias=bias)
        fc1.weight = _weights(rng, fc1.weight.shape, np.sqrt(2.0 / feat))
        if bias:
            fc1.bias = rng.normal(0.0, 0.3 * act_scale, size=hidden)
        layers += [fc1, ReLU()]
        feat = hidden
    fc = Linear(feat, num_classes, bias=bias)
    std = 1.0 if head in GAP_HEADS else np.sqrt(1.0 / feat)
    if separated_fc:
        levels = np.linspace(-1.5, 1.5, num_classes)
        gap = levels[1] - levels[0]
        cols = [rng.permutation(levels) for _ in range(feat)]
        jitter = rng.uniform(-0.1, 0.1, size=(num_classes, feat)) * gap
        fc.weight = (np.stack(cols, axis=1) + jitter) * std
    else:
        fc.weight = _weights(rng, fc.weight.shape, std)
    if bias:
        fc.bias = rng.normal(0.0, 0.5 * act_scale, size=num_classes)
    layers.append(fc)
    model = Sequential(*layers)
    x = rng.normal(0.0, act_scale, size=(n, c_in, big_h, big_w))
    note(f"model: {[repr(leaf) for _, leaf in model.named_layers()]}, x: {x.shape}")
    return Net(model, x, num_classes, [str(i) for i in range(n_body)], head, rng)


@st.composite
def targets(draw, n: int, num_classes: int):
    """None, one int for every image, or one int per image (list, tuple or array)."""
    kind = draw(st.sampled_from(("none", "int", "list", "array")))
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(0, num_classes - 1))
    per = draw(st.lists(st.integers(0, num_classes - 1), min_size=n, max_size=n))
    return per if kind == "list" else np.array(per, dtype=np.int64)


def _expected_targets(target, logits: np.ndarray) -> np.ndarray:
    n = logits.shape[0]
    if target is None:
        return np.argmax(logits, axis=1)
    if isinstance(target, int):
        return np.full(n, target)
    return np.asarray(target)


def _scale(a: np.ndarray) -> float:
    return max(float(np.max(np.abs(a))), TINY) if np.size(a) else TINY


def _rel(a: np.ndarray, b: np.ndarray, scale: float | None = None) -> float:
    """max|a − b| divided by the scale (by default: of ``b``, as :func:`_scale` measures it)."""
    if np.size(b) == 0:
        return scaled_error(a, b)
    return scaled_error(a, b, _scale(np.asarray(b, dtype=np.float64)) if scale is None else scale)


def _map_scale(r: CAMResult) -> float:
    r"""The scale of a map M = Σ_k weights_k A^k: max_ij Σ_k |weights_k A^k_ij| (DESIGN.md).
    Its round-off is relative to this, not to max|M| (M can cancel, and max|ReLU(M)| can
    be a small positive corner of a mostly negative map)."""
    sub = "nk,nkhw->nhw" if r.weights.ndim == 2 else "nck,nkhw->nchw"
    return max(float(np.einsum(sub, np.abs(r.weights), np.abs(r.activations)).max()), TINY)


def _onehot(t: np.ndarray, num_classes: int) -> np.ndarray:
    out = np.zeros((len(t), num_classes))
    out[np.arange(len(t)), t] = 1.0
    return out


def _leaves(model: Sequential):
    return model.named_layers()


def _leaf_index(model: Sequential, name: str) -> int:
    return [n for n, _ in _leaves(model)].index(name)


def _away_from_kinks(model: Sequential, layer: str, margin: float = 1e-4) -> bool:
    """After ``model.forward``: no ReLU after ``layer`` has an input within ``margin`` of 0
    and no max-pool window after ``layer`` has its two largest values within ``margin``
    (windows of exact zeros coming from such a ReLU are stable and allowed), so that
    perturbing A = output of ``layer`` by ±1e-6 crosses no kink."""
    leaves = _leaves(model)
    start = _leaf_index(model, layer)
    for i in range(start + 1, len(leaves)):
        _, leaf = leaves[i]
        inp = model.activations[leaves[i - 1][0]]
        if isinstance(leaf, ReLU) and np.min(np.abs(inp)) < margin:
            return False
        if isinstance(leaf, MaxPool2d):
            (kh, kw), (sh, sw) = leaf.kernel_size, leaf.stride
            win = sliding_window_view(inp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
            win = np.sort(win.reshape(*win.shape[:4], kh * kw), axis=-1)
            top1, top2 = win[..., -1], win[..., -2]
            ok = top1 - top2 >= margin
            if isinstance(leaves[i - 1][1], ReLU) and i - 1 > start:
                ok |= top1 == 0.0
            if not ok.all():
                return False
    return True


def _layer_choices(net: Net) -> list:
    """The body layers, and None (the default layer) when some body layer outputs a map
    with more than one position (otherwise layer=None is rightly a ValueError)."""
    net.model.forward(net.x)
    acts = [net.model.activations[name] for name in net.body]
    has_default = any(a.shape[2] * a.shape[3] > 1 for a in acts)
    return ([None] if has_default else []) + list(net.body)


def _gradcheck_layers(net: Net) -> list[str]:
    """Body leaves usable as A for central differences: not a ReLU that feeds a max-pool
    directly (a window of exact zeros in A is a tie, where y^c is not differentiable)."""
    leaves = _leaves(net.model)
    out = []
    for name in net.body:
        i = _leaf_index(net.model, name)
        if isinstance(leaves[i][1], ReLU) and isinstance(leaves[i + 1][1], MaxPool2d):
            continue
        out.append(name)
    return out


# ================================================================ 1. CAM equivalence
@given(nets(heads=GAP_HEADS))
def test_cam_equivalence_every_class(net):
    r"""Under A → GAP → FC, y^c = Σ_k w^c_k (1/Z) Σ_ij A^k_ij + b_c, so by the chain rule
    ∂y^c/∂A^k_ij = w^c_k / Z at every (i, j), hence Z·α^c = w^c and
    Z·M_Grad-CAM = Σ_k w^c_k A^k = M_CAM (Selvaraju et al. § 3.1; the seed's derivation).
    Checked for every class c: max|Z·∂y/∂A − w| and max|Z·α − w| ≤ 1e-12·max|w|,
    max|Z·raw_Grad-CAM − raw_CAM| ≤ 1e-12·max_ij Σ_k |w^c_k A^k_ij|, raw_CAM = Σ_k w^c_k A^k
    computed here, and cam_equivalence agrees."""
    model, x, layer = net.model, net.x, net.cam_layer
    for c in range(net.num_classes):
        w = net.fc.weight[c].copy()  # w^c, read from the model's FC layer
        rc = cam(model, x, c, layer)
        rg = grad_cam(model, x, c, layer)
        a = rg.activations
        z = a.shape[2] * a.shape[3]
        np.testing.assert_array_equal(rc.weights, np.broadcast_to(w, (x.shape[0], w.size)))
        np.testing.assert_array_equal(rc.activations, a)
        w_scale = _scale(w)
        grad_err = float(np.max(np.abs(z * rg.gradients - w[None, :, None, None]))) / w_scale
        alpha_err = float(np.max(np.abs(z * rg.weights - w[None, :]))) / w_scale
        terms = np.abs(w)[None, :, None, None] * np.abs(a)
        m_scale = max(float(terms.sum(axis=1).max()), TINY)
        cam_raw = np.einsum("k,nkhw->nhw", w, a)
        own_err = float(np.max(np.abs(rc.raw - cam_raw))) / m_scale
        map_err = float(np.max(np.abs(z * rg.raw - rc.raw))) / m_scale
        eq = cam_equivalence(model, x, c, layer)
        _record("cam_equivalence |Z*dy/dA - w|/max|w|", grad_err)
        _record("cam_equivalence |Z*alpha - w|/max|w|", alpha_err)
        _record("cam_equivalence |Z*M_gradcam - M_cam|/max sum_k|w A|", map_err)
        _record("cam_equivalence reported weight_error", eq.weight_error)
        _record("cam_equivalence reported map_error", eq.map_error)
        assert grad_err <= 1e-12
        assert alpha_err <= 1e-12
        assert own_err <= 1e-12
        assert map_err <= 1e-12
        assert eq.holds is True
        assert eq.Z == z
        assert eq.weight_error <= 1e-12 and eq.map_error <= 1e-12
        np.testing.assert_array_equal(rc.cam, np.maximum(rc.raw, 0.0))


@given(nets(heads=GAP_HEADS, batch=(1, 2)))
def test_cam_equivalence_with_target_all(net):
    """cam_equivalence accepts every documented target form, including "all": the
    identity Z·α^c = w^c holds for each class at once."""
    eq = cam_equivalence(net.model, net.x, "all", net.cam_layer)
    assert eq.holds is True
    assert eq.weight_error <= 1e-12 and eq.map_error <= 1e-12


# ===================================================== 2. CAM decomposition of the score
@given(nets(heads=GAP_HEADS))
def test_cam_decomposes_the_score(net):
    r"""For A → GAP → FC: y^c − b_c = Σ_k w^c_k (1/Z) Σ_ij A^k_ij = (1/Z) Σ_ij raw^c_ij,
    raw the CAM map of ``cam(...)`` (no 1/Z inside). The seed writes Y^c = Σ_ij M^c_ij
    with M^c = (1/Z) Σ_k w^c_k A^k (the 1/Z inside M) and without the bias b_c; npcam's
    raw is Z·M. Tolerance 1e-12 of Σ_ij (1/Z) Σ_k |w^c_k A^k_ij| + |b_c| (the |b_c| because
    y^c − b_c is a difference of floats of that size)."""
    model, x = net.model, net.x
    logits = model.forward(x)
    b = net.fc.bias
    for c in range(net.num_classes):
        r = cam(model, x, c, net.cam_layer)
        a, w = r.activations, net.fc.weight[c]
        z = a.shape[2] * a.shape[3]
        np.testing.assert_array_equal(r.scores, logits[:, c])
        lhs = logits[:, c] - b[c]
        rhs = r.raw.sum(axis=(1, 2)) / z
        scale = (np.abs(w)[None, :, None, None] * np.abs(a)).sum(axis=(1, 2, 3)) / z + abs(b[c])
        err = float(np.max(np.abs(lhs - rhs) / np.maximum(scale, TINY)))
        _record("cam score decomposition", err)
        assert err <= 1e-12


# ===================================================================== 3. counterfactual
@given(nets(), st.data())
def test_counterfactual_is_negated_gradcam(net, data):
    r"""The counterfactual map (§ 5) uses −α^c: weights = −α, raw = −M, cam = ReLU(−M),
    gradients un-negated (= Grad-CAM's ∂y^c/∂A). Since ReLU(M) − ReLU(−M) = M exactly
    (one of the two terms is 0), grad_cam.cam − counterfactual.cam == grad_cam.raw."""
    model, x = net.model, net.x
    t = data.draw(targets(x.shape[0], net.num_classes))
    layer = data.draw(st.sampled_from(net.body))
    score = data.draw(st.sampled_from(SCORES))
    g = grad_cam(model, x, t, layer, score=score)
    cf = counterfactual(model, x, t, layer, score=score)
    np.testing.assert_array_equal(cf.weights, -g.weights)
    np.testing.assert_array_equal(cf.raw, -g.raw)
    np.testing.assert_array_equal(cf.cam, np.maximum(-g.raw, 0.0))
    np.testing.assert_array_equal(cf.gradients, g.gradients)
    np.testing.assert_array_equal(g.cam - cf.cam, g.raw)
    np.testing.assert_array_equal(cf.scores, g.scores)
    np.testing.assert_array_equal(cf.target, g.target)
    np.testing.assert_array_equal(cf.activations, g.activations)
    assert cf.layer == g.layer == layer
    # the gradcam map itself is Σ_k α_k A^k with α the spatial mean of the gradients
    alpha = g.gradients.mean(axis=(2, 3))
    assert _rel(g.weights, alpha) <= 1e-13
    scale = max(float((np.abs(alpha)[:, :, None, None] * np.abs(g.activations)).sum(1).max()), TINY)
    assert _rel(g.raw, np.einsum("nk,nkhw->nhw", alpha, g.activations), scale) <= 1e-12


# ================================================= 4. gradients vs central differences
def _check_gradients(net: Net, layer: str, t, score: str) -> None:
    model, x = net.model, net.x
    r = grad_cam(model, x, t, layer, score=score)
    logits = model.forward(x)
    assume(_away_from_kinks(model, layer))
    tt = _expected_targets(t, logits)
    np.testing.assert_array_equal(r.target, tt)
    rows = np.arange(x.shape[0])
    ref = {"logit": lambda z: z, "softmax": lambda z: sp_softmax(z, axis=1),
           "log_softmax": lambda z: sp_log_softmax(z, axis=1)}[score]
    expected_scores = ref(logits)[rows, tt]
    score_err = _rel(r.scores, expected_scores)
    _record(f"scores[{score}] vs scipy", score_err)
    assert score_err <= 1e-13

    a = np.array(r.activations, dtype=np.float64, copy=True)
    seed = _onehot(tt, net.num_classes)
    indices = None
    if a.size > 240:  # a random subset of the coordinates, for speed
        indices = net.rng.choice(a.size, size=240, replace=False)
    # The score is evaluated by scipy in extended precision and taken relative to its
    # value at A, so that rounding p to float64 (ε·p ≈ 1e-17, i.e. 1e-11 after dividing by
    # 2h) does not limit the check when ∂p/∂A is small. Same gradient: f − const.
    base = ref(model.forward_from(layer, a).astype(np.longdouble))

    def f(A):
        return (ref(model.forward_from(layer, A).astype(np.longdouble)) - base).astype(np.float64)

    numeric = numerical_gradient(f, a, seed, 1e-6, indices)
    numeric_2h = numerical_gradient(f, a, seed, 2e-6, indices)
    analytic = r.gradients
    if indices is not None:
        numeric = numeric.reshape(-1)[indices]
        numeric_2h = numeric_2h.reshape(-1)[indices]
        analytic = analytic.reshape(-1)[indices]
    # The reference must itself be accurate to well below the bar: with h and 2h (both
    # exact up to round-off here, the head being piecewise linear away from kinks, and
    # O(h²) ≈ 1e-12 for softmax) it must agree to 1e-9. When a random head nearly cancels
    # ∂y/∂A (|∂y/∂A| ≪ |y|), round-off dominates and the example says nothing: rejected.
    # This uses only the numerical side, so it cannot hide a wrong analytic gradient.
    resolution = relative_error(numeric, numeric_2h)
    note(f"central differences h vs 2h: {resolution:.2e}")
    assume(resolution < 1e-9)
    err = relative_error(analytic, numeric)
    _record(f"gradients[{score}] vs central differences", err)
    assert err < 1e-8
    assert np.max(np.abs(r.gradients)) > 0 or np.max(np.abs(numeric)) == 0


# Central differences resolve ∂y/∂A only to about ε·|y|/h, and under GAP ∂y/∂A is ~|y|/(Z·|A|):
# the checked networks therefore have small maps (Z ≤ 36) and activations of order 0.1
# (input and biases scaled by 0.1), which keeps that floor near 1e-10 — well below the bar.
GRAD_NETS = nets(
    batch=(1, 2), size=(3, 6), max_width=3, same_padding=True, act_scale=0.1, separated_fc=True
)


@pytest.mark.slow
@given(GRAD_NETS, st.data())
def test_gradients_are_dy_dA_logit(net, data):
    r"""``gradients`` = ∂y^c/∂A: equal to central differences of y^c (a logit) with A
    replaced through ``forward_from(layer, A ± h·e_i)``, relative error < 1e-8, for A at
    any body layer, with ReLU / MaxPool / Conv / Linear after it (inputs away from kinks)."""
    layer = data.draw(st.sampled_from(_gradcheck_layers(net)))
    t = data.draw(targets(net.x.shape[0], net.num_classes))
    _check_gradients(net, layer, t, "logit")


@given(GRAD_NETS, st.data())
def test_gradients_are_dy_dA_softmax_scores(net, data):
    r"""As for logits, with y^c = p_c = softmax(z)_c (seed p_c(e_c − p)) and
    y^c = log p_c (seed e_c − p): gradients equal central differences of scipy's softmax /
    log_softmax of ``forward_from``, and ``scores`` equal scipy's values."""
    layer = data.draw(st.sampled_from(_gradcheck_layers(net)))
    t = data.draw(targets(net.x.shape[0], net.num_classes))
    score = data.draw(st.sampled_from(("softmax", "log_softmax")))
    _check_gradients(net, layer, t, score)


def test_log_softmax_score_where_softmax_underflows():
    """log p_c is finite for any finite logits, even where p_c = exp(log p_c) underflows
    to 0 in float64 (log p_c < −745): the score must be log_softmax(z)_c, not log(0)."""
    model = Sequential(Conv2d(1, 1, 1), ReLU(), GlobalAvgPool2d(), Linear(1, 2))
    model[0].weight = np.ones((1, 1, 1, 1))
    model[0].bias = np.zeros(1)
    model[3].weight = np.array([[400.0], [-400.0]])
    model[3].bias = np.zeros(2)
    x = np.full((1, 1, 2, 2), 1.0)  # A = 1 everywhere, F = 1, z = (400, −400)
    expected = sp_log_softmax(np.array([400.0, -400.0]))[1]  # −800 (to 1 ulp)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = grad_cam(model, x, 1, "1", score="log_softmax")
    assert np.isfinite(r.scores).all()
    assert abs(r.scores[0] - expected) <= 1e-13 * abs(expected)
    # ∂ log p_1 / ∂z = e_1 − p = (−1, 1) to float64 precision; ∂z/∂A^0 = (400, −400)/4
    np.testing.assert_allclose(r.gradients[0, 0], np.full((2, 2), -200.0), rtol=1e-15)


# ===================================================== 5. guided backprop and deconvnet
@given(nets(relu="never", heads=("gap", "gap_flatten", "flatten")), st.data())
def test_guided_and_deconvnet_are_the_gradient_without_relu(net, data):
    """With no ReLU in the network the three backward rules coincide: guided backprop ==
    deconvnet == the plain input gradient (saliency)."""
    model, x = net.model, net.x
    t = data.draw(targets(x.shape[0], net.num_classes))
    score = data.draw(st.sampled_from(SCORES))
    assert not any(isinstance(leaf, ReLU) for _, leaf in _leaves(model))
    s = saliency(model, x, t, score)
    np.testing.assert_array_equal(guided_backprop(model, x, t, score), s)
    np.testing.assert_array_equal(deconvnet(model, x, t, score), s)
    assert s.shape == x.shape


def _relu_sites(model: Sequential):
    """(ReLU name, name of the leaf feeding it or None for the model input)."""
    leaves = _leaves(model)
    return [
        (name, leaves[i - 1][0] if i > 0 else None)
        for i, (name, leaf) in enumerate(leaves)
        if isinstance(leaf, ReLU)
    ]


def _recorded(model: Sequential, prev: str | None):
    """(signal passed to the ReLU's input, the ReLU's forward input)."""
    if prev is None:
        return model.input_gradient, model.input
    return model.gradients[prev], model.activations[prev]


@given(nets(relu="always"), st.data())
def test_relu_rules_on_recorded_signals(net, data):
    r"""At every ReLU with forward input x and signal g arriving at its output, the signal
    passed back to its input is ReLU(g)·[x > 0] for guided backprop and ReLU(g) for
    deconvnet (Springenberg et al. 2014): ≥ 0, and 0 wherever g ≤ 0 (and, guided, x ≤ 0).
    At the ReLU nearest the output, g is the true gradient, so the guided signal equals
    max(standard signal, 0). The recorded input_gradient is what guided_backprop/deconvnet
    return."""
    model, x = net.model, net.x
    t = data.draw(targets(x.shape[0], net.num_classes))
    logits = model.forward(x)
    seed = _onehot(_expected_targets(t, logits), net.num_classes)
    sites = _relu_sites(model)
    assert sites
    standard = {}
    model.backward(seed, relu_rule="standard", param_grads=False, record=True)
    last_relu, last_prev = sites[-1]
    standard["g"] = model.gradients[last_relu].copy()
    standard["in"] = _recorded(model, last_prev)[0].copy()
    for rule in ("guided", "deconvnet"):
        model.forward(x)
        out = model.backward(seed, relu_rule=rule, param_grads=False, record=True)
        np.testing.assert_array_equal(out, model.input_gradient)
        for relu_name, prev in sites:
            g = model.gradients[relu_name]
            passed, fwd_in = _recorded(model, prev)
            expected = np.maximum(g, 0.0)
            if rule == "guided":
                expected = expected * (fwd_in > 0)
            np.testing.assert_array_equal(passed, expected)
            assert (passed >= 0).all()
            assert (passed[g <= 0] == 0).all()
            if rule == "guided":
                assert (passed[fwd_in <= 0] == 0).all()
        if rule == "guided":
            np.testing.assert_array_equal(model.gradients[last_relu], standard["g"])
            passed = _recorded(model, last_prev)[0]
            np.testing.assert_array_equal(passed, np.maximum(standard["in"], 0.0))
        public = (guided_backprop if rule == "guided" else deconvnet)(model, x, t)
        np.testing.assert_array_equal(public, out)


@given(nets(maxpool=False), st.data())
def test_deconvnet_does_not_depend_on_the_input_without_maxpool(net, data):
    """Without max-pooling every backward step of deconvnet is fixed by the weights alone
    (conv/linear backward: Wᵀ; GAP/flatten: shape only; ReLU: ReLU(g), ignoring x), so
    two different inputs with the same target give identical results."""
    model, x = net.model, net.x
    c = data.draw(st.integers(0, net.num_classes - 1))
    x2 = net.rng.normal(size=x.shape) * 3.0 + 1.0
    np.testing.assert_array_equal(deconvnet(model, x, c), deconvnet(model, x2, c))


@given(nets(bias=False), st.data())
def test_guided_backprop_is_positively_homogeneous_without_biases(net, data):
    """Without biases the network is positively homogeneous: every pre-activation of 2x is
    twice that of x, so the ReLU masks, max-pool argmaxes and predicted class are the same
    and the backward signals do not change: guided_backprop(2x) == guided_backprop(x)."""
    model, x = net.model, net.x
    t = data.draw(targets(x.shape[0], net.num_classes))
    g1 = guided_backprop(model, x, t)
    g2 = guided_backprop(model, 2.0 * x, t)
    err = _rel(g2, g1)
    _record("guided_backprop(2x) vs guided_backprop(x)", err)
    assert err <= 1e-13


@given(nets(), st.data())
def test_guided_grad_cam_is_upsampled_cam_times_guided_backprop(net, data):
    """Guided Grad-CAM (§ 3.1) = upsample(L^c_Grad-CAM to H×W) ⊙ guided backprop, the map
    broadcast over the input channels, for bilinear and nearest upsampling."""
    model, x = net.model, net.x
    t = data.draw(targets(x.shape[0], net.num_classes))
    layer = data.draw(st.sampled_from(_layer_choices(net)))
    mode = data.draw(st.sampled_from(("bilinear", "nearest")))
    score = data.draw(st.sampled_from(SCORES))
    ggc = guided_grad_cam(model, x, t, layer, mode=mode, score=score)
    r = grad_cam(model, x, t, layer, score=score)
    gb = guided_backprop(model, x, t, score=score)
    expected = upsample(r.cam, x.shape[2:], mode=mode)[:, None] * gb
    assert ggc.shape == x.shape
    np.testing.assert_array_equal(ggc, expected)


# =========================================================================== 6. targets
@given(nets(heads=GAP_HEADS), st.data())
def test_targets_select_the_scores(net, data):
    """None → argmax of the logits per image; an int → that class for every image; N ints
    → one per image. ``scores`` are the selected logits for cam and grad_cam."""
    model, x = net.model, net.x
    t = data.draw(targets(x.shape[0], net.num_classes))
    logits = model.forward(x)
    tt = _expected_targets(t, logits)
    rows = np.arange(x.shape[0])
    for fn in (grad_cam, counterfactual, cam):
        r = fn(model, x, t, net.cam_layer)
        np.testing.assert_array_equal(r.target, tt)
        assert r.target.dtype == np.int64 and r.target.shape == (x.shape[0],)
        np.testing.assert_array_equal(r.scores, logits[rows, tt])
    # the input gradient of the selected logit is the chosen class's, per image
    s = saliency(model, x, t)
    for i in range(x.shape[0]):
        si = saliency(model, x[i : i + 1], int(tt[i]))
        assert _rel(s[i : i + 1], si, _scale(s)) <= 1e-13


def _bad_targets(n: int, num_classes: int):
    return [
        num_classes,
        -1,
        np.int64(num_classes),
        [0] * (n + 1),
        [num_classes - 1] * n + [0],
        [0, num_classes] + [0] * (n - 2) if n >= 2 else [num_classes],
        [-1] * n,
        True,
        np.True_,
        [True] * n,
        1.0,
        np.float64(0.0),
        [0.0] * n,
        np.zeros((n, 1), dtype=np.int64),
        "foo",
        "ALL",
    ]


@pytest.mark.slow
@given(nets(heads=GAP_HEADS, batch=(1, 3)))
def test_bad_targets_are_refused(net):
    """Out of range, wrong length, bool, float, 2-D, or an unknown string → ValueError or
    TypeError naming ``target``, from every entry point."""
    model, x = net.model, net.x
    fns = [
        lambda t: grad_cam(model, x, t, net.cam_layer),
        lambda t: counterfactual(model, x, t, net.cam_layer),
        lambda t: cam(model, x, t, net.cam_layer),
        lambda t: cam_equivalence(model, x, t, net.cam_layer),
        lambda t: saliency(model, x, t),
        lambda t: gradient_x_input(model, x, t),
        lambda t: guided_backprop(model, x, t),
        lambda t: deconvnet(model, x, t),
        lambda t: guided_grad_cam(model, x, t, net.cam_layer),
    ]
    for bad in _bad_targets(x.shape[0], net.num_classes):
        for fn in fns:
            with pytest.raises((ValueError, TypeError), match="target"):
                fn(bad)


def test_huge_int_target_is_a_value_error():
    """A Python int beyond int64 is still just "outside [0, num_classes)": ValueError
    naming target (not an OverflowError from NumPy)."""
    model = Sequential(Conv2d(1, 2, 1), ReLU(), GlobalAvgPool2d(), Linear(2, 3))
    x = np.ones((2, 1, 3, 3))
    for fn in (grad_cam, cam, guided_backprop):
        with pytest.raises(ValueError, match="target"):
            fn(model, x, 10**30)


@given(nets(batch=(1, 2)), st.data())
def test_target_all_equals_looping_over_classes(net, data):
    r"""target="all" adds a class axis after N; entry [:, c] equals the explanation of
    class c alone (within 1e-13 of each array's scale) for cam, raw, weights, gradients
    and scores, for grad_cam and counterfactual with any score."""
    model, x = net.model, net.x
    layer = data.draw(st.sampled_from(_layer_choices(net)))
    score = data.draw(st.sampled_from(SCORES))
    n, num_c = x.shape[0], net.num_classes
    for fn in (grad_cam, counterfactual):
        ra = fn(model, x, "all", layer, score=score)
        np.testing.assert_array_equal(ra.target, np.broadcast_to(np.arange(num_c), (n, num_c)))
        k, h, w = ra.activations.shape[1:]
        assert ra.cam.shape == ra.raw.shape == (n, num_c, h, w)
        assert ra.weights.shape == (n, num_c, k)
        assert ra.gradients.shape == (n, num_c, k, h, w)
        assert ra.scores.shape == (n, num_c)
        for c in range(num_c):
            rc = fn(model, x, c, layer, score=score)
            np.testing.assert_array_equal(ra.activations, rc.activations)
            assert ra.layer == rc.layer
            for field in ("cam", "raw", "weights", "gradients", "scores"):
                full = getattr(ra, field)
                scale = _map_scale(ra) if field in ("cam", "raw") else _scale(full)
                err = _rel(full[:, c], getattr(rc, field), scale)
                _record(f"target='all' vs per class ({field})", err)
                assert err <= 1e-13, (fn.__name__, field, c, err)


@given(nets(heads=GAP_HEADS, batch=(1, 2)))
def test_cam_target_all_equals_looping_over_classes(net):
    """cam(..., target="all"): weights[:, c] = w^c, raw[:, c] = Σ_k w^c_k A^k, scores[:, c]
    = logits[:, c] — equal to cam(..., target=c)."""
    model, x = net.model, net.x
    ra = cam(model, x, "all", net.cam_layer)
    logits = model.forward(x)
    np.testing.assert_array_equal(ra.scores, logits)
    assert ra.gradients is None
    for c in range(net.num_classes):
        rc = cam(model, x, c, net.cam_layer)
        for field in ("cam", "raw", "weights", "scores"):
            full = getattr(ra, field)
            scale = _map_scale(ra) if field in ("cam", "raw") else _scale(full)
            err = _rel(full[:, c], getattr(rc, field), scale)
            _record(f"cam target='all' vs per class ({field})", err)
            assert err <= 1e-13


def test_target_all_is_refused_by_the_gradient_methods():
    """target="all" exists for the class-activation maps only; the input-gradient methods
    refuse it with a ValueError naming target."""
    model = Sequential(Conv2d(1, 2, 3, padding=1), ReLU(), GlobalAvgPool2d(), Linear(2, 3))
    x = np.random.default_rng(0).normal(size=(2, 1, 4, 5))
    for fn in (guided_backprop, deconvnet, saliency, gradient_x_input, guided_grad_cam):
        with pytest.raises(ValueError, match="target"):
            fn(model, x, "all")


# =================================================================== 7. batch vs alone
@given(nets(batch=(2, 3)), st.data())
def test_batch_equals_images_alone(net, data):
    """Explaining a batch at once equals explaining each image alone, within 1e-13 of each
    array's scale, for every method and score."""
    model, x = net.model, net.x
    n = x.shape[0]
    t = data.draw(targets(n, net.num_classes))
    layer = data.draw(st.sampled_from(_layer_choices(net)))
    score = data.draw(st.sampled_from(SCORES))
    mode = data.draw(st.sampled_from(("bilinear", "nearest")))
    logits = model.forward(x)
    tt = _expected_targets(t, logits)

    def compare(name, full, single, i, scale=None):
        err = _rel(full[i : i + 1], single, _scale(full) if scale is None else scale)
        _record(f"batch vs alone ({name})", err)
        assert err <= 1e-13, (name, i, err)

    methods = [("grad_cam", grad_cam), ("counterfactual", counterfactual)]
    results = {name: fn(model, x, t, layer, score=score) for name, fn in methods}
    maps = {
        "saliency": saliency(model, x, t, score),
        "gradient_x_input": gradient_x_input(model, x, t, score),
        "guided_backprop": guided_backprop(model, x, t, score),
        "deconvnet": deconvnet(model, x, t, score),
        "guided_grad_cam": guided_grad_cam(model, x, t, layer, mode=mode, score=score),
    }
    use_cam = net.head in GAP_HEADS
    if use_cam:
        rcam = cam(model, x, t, net.cam_layer)
    for i in range(n):
        xi, ti = x[i : i + 1], [int(tt[i])]
        for name, fn in methods:
            ri = fn(model, xi, ti, layer, score=score)
            for field in ("cam", "raw", "weights", "gradients", "scores", "activations"):
                scale = _map_scale(results[name]) if field in ("cam", "raw") else None
                full = getattr(results[name], field)
                compare(f"{name}.{field}", full, getattr(ri, field), i, scale)
        singles = {
            "saliency": saliency(model, xi, ti, score),
            "gradient_x_input": gradient_x_input(model, xi, ti, score),
            "guided_backprop": guided_backprop(model, xi, ti, score),
            "deconvnet": deconvnet(model, xi, ti, score),
            "guided_grad_cam": guided_grad_cam(model, xi, ti, layer, mode=mode, score=score),
        }
        ggc_scale = max(_map_scale(results["grad_cam"]) * _scale(maps["guided_backprop"]), TINY)
        for name, full in maps.items():
            compare(name, full, singles[name], i, ggc_scale if name == "guided_grad_cam" else None)
        if use_cam:
            ri = cam(model, xi, ti, net.cam_layer)
            for field in ("cam", "raw", "weights", "scores"):
                scale = _map_scale(rcam) if field in ("cam", "raw") else None
                compare(f"cam.{field}", getattr(rcam, field), getattr(ri, field), i, scale)


# ========================================================================= 8. degenerate
@given(nets(heads=GAP_HEADS, end_with_relu=True), st.data())
def test_no_positive_evidence_gives_a_zero_map(net, data):
    r"""If every w^c_k < 0 and A ≥ 0 (A a ReLU output), then M^c = Σ_k w^c_k A^k ≤ 0 (CAM)
    and α^c = w^c/Z < 0 (Grad-CAM), so L^c = ReLU(M^c) is all zeros; normalize of a zero
    map is zeros, with no warning and no NaN."""
    model, x = net.model, net.x
    c = data.draw(st.integers(0, net.num_classes - 1))
    fc = net.fc
    fc.weight[c] = -np.abs(fc.weight[c]) - 0.1
    for fn in (cam, grad_cam):
        r = fn(model, x, c, net.cam_layer)
        assert (r.activations >= 0).all()
        assert (r.raw <= 0).all()
        assert (r.cam == 0).all()
        with warnings.catch_warnings(), np.errstate(all="raise"):
            warnings.simplefilter("error")
            nm = normalize(r.cam)
        assert nm.dtype == np.float64 and nm.shape == r.cam.shape
        assert (nm == 0).all()
    # the counterfactual of the same class sees everything: ReLU(−M) = −M
    cf = counterfactual(model, x, c, net.cam_layer)
    np.testing.assert_array_equal(cf.cam, cf.raw)


def test_dead_head_gives_zero_gradients_and_map():
    r"""A head whose hidden ReLU is off for every input (bias −100) has ∂y^c/∂A = 0, so
    α = 0, M = 0 and the Grad-CAM map, its normalisation and guided backprop are zeros."""
    model = Sequential(
        Conv2d(2, 3, 3, padding=1), ReLU(), Flatten(), Linear(3 * 4 * 5, 2), ReLU(), Linear(2, 3)
    )
    model[3].bias = np.full(2, -100.0)
    x = np.random.default_rng(1).normal(size=(2, 2, 4, 5))
    r = grad_cam(model, x, 1, "1")
    assert (r.gradients == 0).all() and (r.weights == 0).all()
    assert (r.raw == 0).all() and (r.cam == 0).all()
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        assert (normalize(r.cam) == 0).all()
    assert (guided_backprop(model, x, 1) == 0).all()


# ============================================================ 9. heads, layers, defaults
def _flatten_mlp(rng=0):
    return Sequential(
        Conv2d(1, 2, 3, padding=1, rng=rng), ReLU(), MaxPool2d(2), Flatten(),
        Linear(2 * 2 * 2, 3, rng=rng), ReLU(), Linear(3, 2, rng=rng),
    )


def test_cam_refuses_a_head_that_is_not_gap_fc():
    """CAM is defined only for A → GAP → FC: anything else (Flatten → Linear → ReLU →
    Linear; GAP → Linear → ReLU → Linear; a ReLU between A and the GAP) is a ValueError
    saying CAM needs a GAP → FC head and pointing to grad_cam."""
    x = np.random.default_rng(0).normal(size=(1, 1, 4, 4))
    gap_mlp = Sequential(
        Conv2d(1, 2, 3, padding=1), ReLU(), GlobalAvgPool2d(), Linear(2, 3), ReLU(), Linear(3, 2)
    )
    relu_between = Sequential(Conv2d(1, 2, 3, padding=1), ReLU(), GlobalAvgPool2d(), Linear(2, 2))
    cases = [(_flatten_mlp(), None), (_flatten_mlp(), "2"), (gap_mlp, "1"), (relu_between, "0")]
    for model, layer in cases:
        with pytest.raises(ValueError, match=r"CAM needs.*GlobalAvgPool2d.*Linear") as info:
            cam(model, x, 0, layer)
        assert "grad_cam" in str(info.value)
        with pytest.raises(ValueError, match="grad_cam"):
            cam_equivalence(model, x, 0, layer)
        grad_cam(model, x, 0, layer)  # Grad-CAM works on the same model and layer
    # Dropout (the identity at inference) may stand between GAP and the FC layer
    ok = Sequential(Conv2d(1, 2, 3, padding=1), ReLU(), GlobalAvgPool2d(), Dropout(), Linear(2, 2))
    np.testing.assert_array_equal(cam(ok, x, 1, "1").weights, ok[4].weight[1][None])


def test_unknown_or_non_4d_layer_is_refused():
    """An unknown layer name is a ValueError naming it; a layer whose output is not a 4-D
    map (after GAP / Flatten) is a ValueError naming the layer and asking for 4-D."""
    model = _flatten_mlp()
    x = np.random.default_rng(0).normal(size=(2, 1, 4, 4))
    fns = (grad_cam, counterfactual, cam, cam_equivalence, guided_grad_cam)
    for fn in fns:
        with pytest.raises(ValueError, match="'nope'"):
            fn(model, x, 0, "nope")
        for layer in ("3", "4", "6"):
            with pytest.raises(ValueError, match=rf"'{layer}'.*4-D"):
                fn(model, x, 0, layer)
    for bad in (3, 1.5, ["1"]):
        with pytest.raises(TypeError, match="layer"):
            grad_cam(model, x, 0, bad)


def test_default_layer_rule():
    """layer=None is the last leaf before global pooling / flattening whose output is 4-D
    with h·w > 1: the last ReLU ("4") for DESIGN.md's example; the max-pool before Flatten
    for a VGG-style head; a deeper 1×1 map is skipped for an earlier one."""
    rng = np.random.default_rng(0)
    design = Sequential(
        Conv2d(3, 8, kernel_size=3, padding=1), ReLU(), MaxPool2d(2),
        Conv2d(8, 16, kernel_size=3, stride=1, padding=1), ReLU(),
        GlobalAvgPool2d(), Linear(16, 4),
    )
    x = rng.normal(size=(2, 3, 8, 6))
    for fn in (grad_cam, counterfactual, cam):
        r = fn(design, x)
        assert r.layer == "4"
        np.testing.assert_array_equal(r.activations, fn(design, x, None, "4").activations)
    vgg = Sequential(
        Conv2d(3, 4, 3, padding=1), ReLU(), Conv2d(4, 4, 3, padding=1), ReLU(), MaxPool2d(2),
        Flatten(), Linear(4 * 4 * 3, 5), ReLU(), Linear(5, 3),
    )
    r = grad_cam(vgg, x)
    assert r.layer == "4" and r.activations.shape == (2, 4, 4, 3)
    # a last 1×1 map is not a map: the default is the last one with more than one position
    shrink = Sequential(
        Conv2d(1, 2, 2), ReLU(), Conv2d(2, 3, 3), ReLU(), GlobalAvgPool2d(), Linear(3, 2)
    )
    r = grad_cam(shrink, rng.normal(size=(1, 1, 4, 4)))
    assert r.layer == "1" and r.activations.shape == (1, 2, 3, 3)
    # no map with more than one position at all: layer=None is a ValueError naming layer
    tiny = Sequential(Conv2d(1, 2, 3), ReLU(), GlobalAvgPool2d(), Linear(2, 2))
    for fn in (grad_cam, counterfactual, cam, guided_grad_cam):
        with pytest.raises(ValueError, match="layer"):
            fn(tiny, rng.normal(size=(1, 1, 3, 3)))
    assert grad_cam(tiny, rng.normal(size=(1, 1, 3, 3)), 0, "1").cam.shape == (1, 1, 1)


def test_container_name_means_its_last_child():
    """With nested containers (features=…, classifier=…), the default is "features.4" and
    the name "features" means its last child: same A, same maps."""
    rng = np.random.default_rng(0)
    model = Sequential(
        features=Sequential(
            Conv2d(2, 3, 3, padding=1), ReLU(), MaxPool2d(2), Conv2d(3, 4, 3, padding=1), ReLU()
        ),
        classifier=Sequential(GlobalAvgPool2d(), Linear(4, 3)),
    )
    x = rng.normal(size=(2, 2, 6, 5))
    r_default = grad_cam(model, x, 1)
    assert r_default.layer == "features.4"
    for fn in (grad_cam, counterfactual, cam):
        a = fn(model, x, 1, "features")
        b = fn(model, x, 1, "features.4")
        for field in ("cam", "raw", "weights", "activations", "scores"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert cam_equivalence(model, x, 1, "features").holds


# ======================================================================= 11. dtypes etc.
@given(nets(heads=GAP_HEADS, batch=(1, 2)), st.sampled_from((np.float32, np.int64, np.float64)))
def test_outputs_are_float64(net, dtype):
    """Every public output is float64 (the target int64), whatever the input dtype."""
    model = net.model
    x = (net.x * 3).astype(dtype)
    layer = _layer_choices(net)[0]
    for r in (
        grad_cam(model, x, None, layer),
        counterfactual(model, x, None, layer),
        cam(model, x, None, net.cam_layer),
        grad_cam(model, x, "all", layer, score="softmax"),
        cam(model, x, "all", net.cam_layer),
    ):
        for field in ("cam", "raw", "weights", "activations", "scores"):
            assert getattr(r, field).dtype == np.float64, field
        assert r.gradients is None or r.gradients.dtype == np.float64
        assert r.target.dtype == np.int64
    for out in (
        saliency(model, x),
        gradient_x_input(model, x),
        guided_backprop(model, x),
        deconvnet(model, x),
        guided_grad_cam(model, x, None, layer),
    ):
        assert out.dtype == np.float64 and out.shape == x.shape
    eq = cam_equivalence(model, x, None, net.cam_layer)
    assert isinstance(eq.weight_error, float) and isinstance(eq.map_error, float)


def test_cam_result_is_frozen_and_kept():
    """CAMResult is a frozen dataclass, and a later call does not change an earlier
    result's arrays."""
    model = Sequential(Conv2d(1, 2, 3, padding=1), ReLU(), GlobalAvgPool2d(), Linear(2, 3))
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=(1, 1, 4, 4)), rng.normal(size=(3, 1, 5, 4))
    r = grad_cam(model, x1, 0)
    assert isinstance(r, CAMResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.cam = np.zeros(1)  # type: ignore[misc]
    kept = {f.name: np.array(getattr(r, f.name), copy=True) for f in dataclasses.fields(r)
            if isinstance(getattr(r, f.name), np.ndarray)}
    grad_cam(model, x2, "all")
    guided_grad_cam(model, x2, 2)
    cam(model, x2, 1)
    for name, value in kept.items():
        np.testing.assert_array_equal(getattr(r, name), value)
