r"""Score-CAM, SS-CAM and IS-CAM: the exact properties of ``../shared/notes/cam-family.md``
§ 6 (e), checked against facts derived by hand — never against the code's own output.

* The channel softmax makes the weights a probability vector over k and removes any
  term constant in k, so the baseline X_b (black, gray, random) cannot change them.
* The masks H^k are min-max normalised maps in [0, 1]; a constant channel gives 0; at a
  layer of the input's size, upsampling is the identity under both pixel conventions.
* A model linear in its input (conv → GAP → FC, no ReLU) has
  ``logit_c(Z) = b̄_c + ⟨M_c, Z⟩`` with M_c written out from the weights, so
  ``f_c(β · X ∘ (H + δ)) = b̄_c + β ⟨M_c, X ∘ (H + δ)⟩`` is known in closed form for
  Score-CAM (β = 1, δ = 0), IS-CAM (β on a schedule) and SS-CAM (δ the documented draws).
* ``batch_size`` and the order of the images cannot change anything (1e-13 of scale);
  ``target="all"`` equals one call per class; SS-CAM with σ = 0 and IS-CAM with one step
  are Score-CAM.

Tolerances (DESIGN.md): identities 1e-12 of the arrays' scale, "equal" across batch sizes
and code paths 1e-13.
"""

from __future__ import annotations

import numpy as np
import pytest
from _support import scaled_error, small_cnn, small_cnn_input

import npcam
from npcam.image import upsample
from npcam.methods.is_cam import is_coefficients
from npcam.methods.score_cam import minmax_masks

T = np.array([4, 2])  # both images predict the same class: explicit, different targets
LAYERS = ("features.3", "features.5", "features.6")


@pytest.fixture(scope="module")
def net():
    return small_cnn()


@pytest.fixture(scope="module")
def x():
    return small_cnn_input()


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _naive_minmax(maps):
    """Per map (m − min) / (max − min), written without the code's helpers; 0 for a
    constant map."""
    out = np.zeros_like(maps)
    for i, m in enumerate(maps):
        if m.max() > m.min():
            out[i] = (m - m.min()) / (m.max() - m.min())
    return out


# ------------------------------------------------------------- the channel softmax
@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("score", ["softmax", "logit", "log_softmax"])
def test_channel_softmax_weights_are_a_probability_vector(net, x, layer, score):
    """α = softmax_k(C): positive, Σ_k α_k = 1 per image (to 1e-12)."""
    r = npcam.score_cam(net, x, T, layer, score=score)
    assert r.weights.shape == (2, r.activations.shape[1])
    assert (r.weights > 0).all()
    assert np.abs(r.weights.sum(axis=1) - 1).max() <= 1e-12


def test_baseline_cancels_under_the_channel_softmax(net, x):
    """softmax_k(s_k − b) = softmax_k(s_k) for any b constant in k: the weights of a black,
    gray, per-channel or random baseline agree to 1e-12; without the channel softmax they
    differ by exactly f_c(X_b), the score of the baseline input (computed here by a
    separate forward pass)."""
    rng = np.random.default_rng(5)
    baselines = [None, 0.0, 0.5, rng.uniform(size=(3, 1, 1)), rng.uniform(size=x.shape)]
    ref = npcam.score_cam(net, x, T, "features.6")
    for b in baselines[1:]:
        r = npcam.score_cam(net, x, T, "features.6", baseline=b)
        assert scaled_error(r.weights, ref.weights) <= 1e-12
        assert scaled_error(r.extra["mask_scores"], ref.extra["mask_scores"]) == 0.0
    for b in baselines:
        r = npcam.score_cam(net, x, T, "features.6", baseline=b, channel_softmax=False)
        xb = np.broadcast_to(0.0 if b is None else b, x.shape)
        fb = _softmax(net.run(np.array(xb)).output)[np.arange(2), T]
        expected = r.extra["mask_scores"] - fb[:, None]
        assert scaled_error(r.weights, expected, np.abs(r.extra["mask_scores"]).max()) <= 1e-12
    # not vacuous: the baselines' scores differ
    f0 = _softmax(net.run(np.zeros_like(x)).output)[np.arange(2), T]
    f1 = _softmax(net.run(baselines[-1]).output)[np.arange(2), T]
    assert np.abs(f0 - f1).max() > 1e-3


# --------------------------------------------------------------------------- masks
def test_masks_are_min_max_normalised_upsampled_maps(net, x):
    """H^k = minmax(Up(A^k)) (paper) or Up(minmax(A^k)) (normalize_before_upsample), with
    Up = npcam.upsample; values in [0, 1], and the paper's masks reach 0 and 1 exactly."""
    for layer in LAYERS:
        for align in (False, True):
            r = npcam.score_cam(net, x, T, layer, align_corners=align, return_masks=True)
            a = r.activations
            n, k, h, w = a.shape
            up = upsample(a.reshape(n * k, h, w), (32, 32), align_corners=align)
            assert scaled_error(r.extra["masks"], _naive_minmax(up).reshape(n, k, 32, 32)) <= 1e-14
            m = r.extra["masks"].reshape(n * k, -1)
            live = np.ptp(a.reshape(n * k, -1), axis=1) > 0  # features.3 has dead (all-0) channels
            assert (m.min(axis=1) == 0).all() and (m.max(axis=1)[live] == 1).all()
            assert (m[~live] == 0).all()
            b = npcam.score_cam(net, x, T, layer, align_corners=align, normalize_before_upsample=True,
                                return_masks=True)
            first = upsample(_naive_minmax(a.reshape(n * k, h, w)), (32, 32), align_corners=align)
            assert scaled_error(b.extra["masks"], first.reshape(n, k, 32, 32)) <= 1e-14
            assert b.extra["masks"].min() >= 0 and b.extra["masks"].max() <= 1


def test_masks_at_the_input_size_do_not_depend_on_align_corners(net, x):
    """features.3 is 32×32 like the input: upsampling is the identity under both pixel
    conventions, so masks (bit for bit) and weights are equal; at features.6 (16×16) they
    are not — the check can fail."""
    same = [npcam.score_cam(net, x, T, "features.3", align_corners=a, return_masks=True)
            for a in (False, True)]
    assert np.array_equal(same[0].extra["masks"], same[1].extra["masks"])
    assert np.array_equal(same[0].weights, same[1].weights)
    half = [npcam.score_cam(net, x, T, "features.6", align_corners=a, return_masks=True)
            for a in (False, True)]
    assert np.abs(half[0].extra["masks"] - half[1].extra["masks"]).max() > 0.05


def _constant_channel_model():
    """conv3-4 (channel 2: zero filter, bias 0.21, i.e. constant) → ReLU → GAP → FC(4→3);
    a 17×17 input gives 9×9 maps."""
    rng = np.random.default_rng(7)
    model = npcam.Sequential(npcam.Conv2d(3, 4, 3, padding=1, stride=2, rng=rng), npcam.ReLU(),
                             npcam.GlobalAvgPool2d(), npcam.Linear(4, 3, rng=rng))
    params = dict(model.named_parameters())
    params["0.weight"][2] = 0.0
    params["0.bias"][...] = [0.1, -0.05, 0.21, 0.2]
    return model


def test_a_constant_channel_gives_the_zero_mask():
    """A constant A^k has no min-max; npcam defines H^k = 0, decided at the layer's
    resolution (see the next test for why). Its masked input is the black image and its
    score f_c(0)."""
    model = _constant_channel_model()
    x = np.random.default_rng(8).uniform(size=(2, 3, 17, 17))
    for before in (False, True):
        r = npcam.score_cam(model, x, [0, 2], "1", return_masks=True, normalize_before_upsample=before)
        const = r.activations[:, 2]
        assert np.ptp(const) == 0 and const[0, 0, 0] == 0.21
        assert (r.extra["masks"][:, 2] == 0).all()
        others = r.extra["masks"][:, [0, 1, 3]].reshape(6, -1)
        assert (others.max(axis=1) == 1).all() or before  # torchcam's order need not reach 1
        assert (others.max(axis=1) > 0.5).all()
        f_black = _softmax(model.run(np.zeros_like(x)).output)[np.arange(2), [0, 2]]
        assert scaled_error(r.extra["mask_scores"][:, 2], f_black) <= 1e-14


def test_constancy_is_decided_before_the_rounding_of_the_upsampling():
    """Bilinear weights sum to 1 only up to rounding, so with some BLAS builds the upsampled
    copy of a constant channel varies in its last bit (seen with 0.21 at 9 -> 17 px); a
    min-max of that copy is a mask of noise spanning [0, 1]. The channel flagged constant
    at the layer's resolution gets the zero mask whatever its upsampled copy looks like."""
    rounded = np.full((2, 17, 17), 0.21)
    rounded[:, ::3, 1::2] = np.nextafter(0.21, 1.0)  # last-bit noise, as the rounding gives
    noise = minmax_masks(rounded)
    assert noise.min() == 0 and noise.max() == 1  # what an unflagged min-max would give
    flagged = minmax_masks(rounded, constant=np.array([True, False]))
    assert (flagged[0] == 0).all()
    np.testing.assert_array_equal(flagged[1], noise[1])


def test_return_masks(net, x):
    """masks only on request, (N, K, H, W), the same for every class with target='all'."""
    r = npcam.score_cam(net, x, T, "features.6")
    assert set(r.extra) == {"mask_scores"}
    r = npcam.score_cam(net, x, "all", "features.6", return_masks=True)
    assert set(r.extra) == {"mask_scores", "masks"}
    assert r.extra["masks"].shape == (2, 16, 32, 32)
    assert r.extra["mask_scores"].shape == (2, 10, 16)


# ----------------------------------------------------------------------- the scores
def test_mask_scores_are_the_scores_of_the_masked_inputs(net, x):
    """extra['mask_scores'][n, k] = softmax(model(X_n ∘ H^k_n))_c — one separate forward
    pass of all N·K masked inputs, built here from the returned masks."""
    r = npcam.score_cam(net, x, T, "features.5", return_masks=True, batch_size=5)
    masks = r.extra["masks"]
    inputs = (x[:, None, :, :, :] * masks[:, :, None]).reshape(-1, 3, 32, 32)
    p = _softmax(net.run(inputs).output).reshape(2, 16, 10)
    expected = p[np.arange(2), :, T]
    assert scaled_error(r.extra["mask_scores"], expected) <= 1e-13
    assert scaled_error(r.scores, _softmax(net.run(x).output)[np.arange(2), T]) <= 1e-14


def _linear_model():
    """conv3-6 (2×2, stride 2: each pixel in one window) → GAP → FC(6→4), no ReLU: the
    logits are affine in the input."""
    rng = np.random.default_rng(11)
    model = npcam.Sequential(npcam.Conv2d(3, 6, 2, stride=2, rng=rng), npcam.GlobalAvgPool2d(),
                             npcam.Linear(6, 4, rng=rng))
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            p[...] = rng.uniform(-0.5, 0.5, size=p.shape)
        elif name == "2.weight":
            p *= 20.0  # ⟨M_c, X ∘ H⟩ of order 1, like the bias
    return model


def _linear_terms(model, x):
    """(b̄ (4,), M (4, 3, H, W)) with logit_c(Z) = b̄_c + ⟨M_c, Z⟩, from the weights:
    M_c[ch, i, j] = (1/Z) Σ_o W_fc[c, o] W[o, ch, i mod 2, j mod 2], Z = (H/2)(W/2),
    b̄_c = b_fc[c] + Σ_o W_fc[c, o] b[o]."""
    p = dict(model.named_parameters())
    w, b, wfc, bfc = p["0.weight"], p["0.bias"], p["2.weight"], p["2.bias"]
    hh, ww = x.shape[2:]
    z = (hh // 2) * (ww // 2)
    per_tap = np.einsum("co,oxij->cxij", wfc, w) / z  # (4, 3, 2, 2)
    m = np.tile(per_tap, (1, 1, hh // 2, ww // 2))
    return bfc + wfc @ b, m


def test_linear_model_scores_in_closed_form():
    """For logit_c(Z) = b̄_c + ⟨M_c, Z⟩: mask_scores = b̄_c + ⟨M_c, X ∘ H^k⟩ (Score-CAM),
    and without the channel softmax the weights are C = ⟨M_c, X ∘ H^k⟩, since the black
    baseline scores b̄_c (to 1e-12 of max|mask_scores|)."""
    model = _linear_model()
    x = np.random.default_rng(12).uniform(-1, 1, size=(2, 3, 16, 16))
    t = np.array([1, 3])
    bbar, m = _linear_terms(model, x)
    r = npcam.score_cam(model, x, t, "0", score="logit", channel_softmax=False, return_masks=True)
    lin = np.einsum("nxij,nkij,nxij->nk", m[t], r.extra["masks"], x)
    scale = np.abs(r.extra["mask_scores"]).max()
    assert scaled_error(r.extra["mask_scores"], bbar[t][:, None] + lin, scale) <= 1e-12
    assert scaled_error(r.weights, lin, scale) <= 1e-12
    assert np.ptp(lin) > 0.1 * scale  # the channels' scores differ


@pytest.mark.parametrize(("schedule", "mean_beta"), [("linear", 0.625), ("torchcam", 1.25)])
def test_is_cam_on_the_linear_model(schedule, mean_beta):
    """IS-CAM averages f_c(β_i X ∘ H^k) = b̄_c + β_i ⟨M_c, X ∘ H^k⟩ over the steps, so
    mask_scores = b̄_c + mean(β)·⟨M_c, X ∘ H^k⟩ with, for N = 4, mean(β) = (1+2+3+4)/16
    = 0.625 (i/N) and (2+6+12+20)/(8·4) = 1.25 (i(i+1)/(2N)), typed in by hand."""
    model = _linear_model()
    x = np.random.default_rng(13).uniform(-1, 1, size=(2, 3, 16, 16))
    t = np.array([0, 2])
    bbar, m = _linear_terms(model, x)
    r = npcam.is_cam(model, x, t, "0", score="logit", num_samples=4, schedule=schedule, return_masks=True)
    lin = np.einsum("nxij,nkij,nxij->nk", m[t], r.extra["masks"], x)
    expected = bbar[t][:, None] + mean_beta * lin
    assert scaled_error(r.extra["mask_scores"], expected, np.abs(expected).max()) <= 1e-12


def test_ss_cam_on_the_linear_model():
    """SS-CAM's documented noise: δ_s = σ·z with z the standard normals of
    ``default_rng(seed)`` drawn in (sample, image, channel, row, column) order, added to
    the [0, 1] mask and shared by the input channels; on the linear model
    mask_scores = b̄_c + (1/S) Σ_s ⟨M_c, X ∘ (H^k + δ_s)⟩ (to 1e-12 of its scale)."""
    model = _linear_model()
    x = np.random.default_rng(14).uniform(-1, 1, size=(2, 3, 16, 16))
    t = np.array([3, 1])
    bbar, m = _linear_terms(model, x)
    s, sigma = 3, 0.7
    r = npcam.ss_cam(model, x, t, "0", score="logit", num_samples=s, sigma=sigma, rng=21,
                     return_masks=True, batch_size=5)
    z = np.random.default_rng(21).standard_normal((s, 2, 6, 16, 16))
    noisy = r.extra["masks"][None] + sigma * z  # (S, N, K, H, W)
    lin = np.einsum("nxij,snkij,nxij->snk", m[t], noisy, x).mean(axis=0)
    expected = bbar[t][:, None] + lin
    assert scaled_error(r.extra["mask_scores"], expected, np.abs(expected).max()) <= 1e-12


def test_is_coefficients_by_hand():
    """i/N and i(i+1)/(2N) for N = 10, typed in; and torchcam's running sum
    ``coeff += (i+1)/N`` (activation.py 471) gives the same numbers."""
    lin = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    tc = [0.1, 0.3, 0.6, 1.0, 1.5, 2.1, 2.8, 3.6, 4.5, 5.5]
    assert np.abs(is_coefficients(10, "linear") - lin).max() <= 1e-15
    assert np.abs(is_coefficients(10, "torchcam") - tc).max() <= 1e-15
    running, coeff = [], 0.0
    for i in range(10):
        coeff += (i + 1) / 10
        running.append(coeff)
    assert np.abs(is_coefficients(10, "torchcam") - running).max() <= 1e-14


# ------------------------------------------------------------- batching and order
def _fields(r):
    return {"weights": r.weights, "raw": r.raw, "cam": r.cam, "mask_scores": r.extra["mask_scores"]}


def test_batch_size_cannot_change_the_result(net, x):
    """Every pass is a function of its own rows: batch sizes 1, 5 (chunks straddling
    images and samples) and 100 agree to 1e-13 of scale — SS-CAM's noise included, since
    it is drawn in row order whatever the chunks."""
    calls = [
        (lambda b: npcam.score_cam(net, x, T, "features.6", batch_size=b), (1, 5)),
        (lambda b: npcam.ss_cam(net, x, T, "features.6", num_samples=2, sigma=0.5, batch_size=b), (5,)),
        (lambda b: npcam.is_cam(net, x, T, "features.6", num_samples=2, batch_size=b), (5,)),
    ]
    for call, sizes in calls:
        ref = _fields(call(100))
        for b in sizes:
            got = _fields(call(b))
            for key in ref:
                assert scaled_error(got[key], ref[key]) <= 1e-13, key


def test_image_order_cannot_change_the_result(net):
    """Reversing the batch (and its targets) reverses the results (1e-13 of scale)."""
    x = small_cnn_input(3, n=3)
    t = np.array([1, 4, 7])
    r = npcam.score_cam(net, x, t, "features.6", batch_size=7)
    q = npcam.score_cam(net, x[::-1], t[::-1], "features.6", batch_size=7)
    for key, value in _fields(r).items():
        assert scaled_error(_fields(q)[key][::-1], value) <= 1e-13, key


# ---------------------------------------------------------------- target="all"
def test_target_all_equals_one_call_per_class(net, x):
    """target='all' gives every class's weights, maps and mask scores from the same
    passes: (N, C, K) etc., equal to single-class calls (1e-13 of scale)."""
    r = npcam.score_cam(net, x, "all", "features.6", batch_size=9)
    assert r.weights.shape == (2, 10, 16) and r.cam.shape == (2, 10, 16, 16)
    assert r.scores.shape == (2, 10) and r.target.shape == (2, 10)
    for c in (0, 4, 9):
        one = npcam.score_cam(net, x, c, "features.6")
        for key, value in _fields(one).items():
            assert scaled_error(_fields(r)[key][:, c], value) <= 1e-13, (key, c)
        assert scaled_error(r.scores[:, c], one.scores) <= 1e-14


def test_target_all_of_the_sampled_methods(net, x):
    """The noise does not depend on the target: SS-CAM (and IS-CAM) with target='all'
    equal single-class calls with the same seed."""
    s = npcam.ss_cam(net, x, "all", "features.6", num_samples=2, rng=3)
    i = npcam.is_cam(net, x, "all", "features.6", num_samples=2)
    one_s = npcam.ss_cam(net, x, 7, "features.6", num_samples=2, rng=3)
    one_i = npcam.is_cam(net, x, 0, "features.6", num_samples=2)
    assert scaled_error(s.weights[:, 7], one_s.weights) <= 1e-13
    assert scaled_error(i.weights[:, 0], one_i.weights) <= 1e-13


# --------------------------------------------------------- reductions to Score-CAM
def test_ss_cam_with_sigma_zero_is_score_cam(net, x):
    """σ = 0: every sample is the masked input X ∘ H^k itself, so the mean over S samples
    of equal scores is the score (up to the rounding of (S·v)/S: 1e-15 of scale)."""
    ref = npcam.score_cam(net, x, T, "features.6")
    r = npcam.ss_cam(net, x, T, "features.6", num_samples=3, sigma=0.0)
    for key, value in _fields(ref).items():
        assert scaled_error(_fields(r)[key], value) <= 1e-14, key


def test_is_cam_with_one_linear_step_is_score_cam(net, x):
    """N = 1 on the linear schedule: β_1 = 1, the one scaled input is X ∘ H^k."""
    ref = npcam.score_cam(net, x, T, "features.5")
    r = npcam.is_cam(net, x, T, "features.5", num_samples=1)
    for key, value in _fields(ref).items():
        assert scaled_error(_fields(r)[key], value) <= 1e-15, key
    # and the schedules differ for N > 1 (the check above could fail)
    a = npcam.is_cam(net, x, T, "features.5", num_samples=3, score="logit")
    b = npcam.is_cam(net, x, T, "features.5", num_samples=3, score="logit", schedule="torchcam")
    assert scaled_error(a.extra["mask_scores"], b.extra["mask_scores"]) > 1e-3


def test_ss_cam_is_reproducible_under_a_fixed_rng(net, x):
    """The same seed gives the same result bit for bit (same call, same machine); a
    Generator seeded alike gives the same draws; another seed other draws."""
    run = lambda rng: npcam.ss_cam(net, x, T, "features.6", num_samples=1, rng=rng)  # noqa: E731
    a, b = run(3), run(3)
    assert np.array_equal(a.weights, b.weights) and np.array_equal(a.raw, b.raw)
    assert np.array_equal(run(np.random.default_rng(3)).weights, a.weights)
    assert np.abs(run(4).extra["mask_scores"] - a.extra["mask_scores"]).max() > 1e-6


# ----------------------------------------------------------------- bad arguments
@pytest.mark.parametrize(
    ("fn", "options", "error", "match"),
    [
        (npcam.score_cam, {"score": "probability"}, ValueError, "score"),
        (npcam.score_cam, {"channel_softmax": 1}, TypeError, "channel_softmax"),
        (npcam.score_cam, {"align_corners": None}, TypeError, "align_corners"),
        (npcam.score_cam, {"normalize_before_upsample": "yes"}, TypeError, "normalize_before_upsample"),
        (npcam.score_cam, {"return_masks": 0}, TypeError, "return_masks"),
        (npcam.score_cam, {"batch_size": 0}, ValueError, "batch_size"),
        (npcam.score_cam, {"batch_size": 2.0}, TypeError, "batch_size"),
        (npcam.score_cam, {"progress": "auto"}, TypeError, "progress"),
        (npcam.score_cam, {"baseline": np.zeros((2, 3, 31, 32))}, ValueError, "baseline"),
        (npcam.score_cam, {"baseline": np.full((3, 1, 1), np.nan)}, ValueError, "baseline"),
        (npcam.score_cam, {"baseline": "black"}, TypeError, "baseline"),
        (npcam.ss_cam, {"num_samples": 0}, ValueError, "num_samples"),
        (npcam.ss_cam, {"sigma": -0.1}, ValueError, "sigma"),
        (npcam.ss_cam, {"sigma": "2"}, TypeError, "sigma"),
        (npcam.ss_cam, {"rng": np.random.RandomState(0)}, TypeError, "rng"),
        (npcam.is_cam, {"num_samples": True}, TypeError, "num_samples"),
        (npcam.is_cam, {"schedule": "paper"}, ValueError, "schedule"),
    ],
)
def test_bad_options_raise_one_sentence(net, x, fn, options, error, match):
    with pytest.raises(error, match=match):
        fn(net, x, T, "features.6", **options)


def test_bad_inputs(net, x):
    with pytest.raises(ValueError, match="x must be a 4-D image batch"):
        npcam.score_cam(net, x[0], None, "features.6")
    with pytest.raises(ValueError, match="target"):
        npcam.score_cam(net, x, [4, 10], "features.6")
    with pytest.raises(ValueError, match="layer"):
        npcam.score_cam(net, x, T, "features.9")
    with pytest.raises(TypeError, match="model"):
        npcam.score_cam(object(), x, T)


def test_progress_bar_is_labelled(net, x, capsys):
    """progress=True draws the bar on stderr, labelled with the method's name."""
    for fn, label in ((npcam.score_cam, "Score-CAM"), (npcam.ss_cam, "SS-CAM"), (npcam.is_cam, "IS-CAM")):
        options = {} if fn is npcam.score_cam else {"num_samples": 1}
        fn(net, x, T, "features.6", progress=True, batch_size=8, **options)
        assert label in capsys.readouterr().err
    npcam.score_cam(net, x, T, "features.6", progress=False)
    assert capsys.readouterr().err == ""
