r"""SmoothGrad-CAM++ (``npcam.smooth_grad_cam_pp``) and its conventions.

The definition is checked against an independent evaluation: the noisy inputs rebuilt
from the documented draw order (sample s adds ``σ_n · rng.standard_normal(x.shape)``),
their gradients from ``npcam.grad_cam`` (another code path), the means, α and the map on
the clean activations written out here.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from _support import scaled_error, small_cnn, small_cnn_input

import npcam
from npcam.image import upsample
from npcam.verify import conventions as C
from npcam.verify.conventions.smooth_grad_cam_pp import CONVENTIONS

TARGET = np.array([4, 2])


@pytest.fixture(scope="module")
def small():
    return small_cnn(0), small_cnn_input(1, 2)


def _noisy_inputs(x, num_samples, sigma, relative, seed):
    rng = np.random.default_rng(seed)
    flat = x.reshape(len(x), -1)
    sig = sigma * (flat.max(axis=1) - flat.min(axis=1)) if relative else np.full(len(x), sigma)
    return [x + sig[:, None, None, None] * rng.standard_normal(x.shape) for _ in range(num_samples)]


@pytest.mark.parametrize("score", ["logit", "softmax"])
@pytest.mark.parametrize("layer", ["features.3", "features.5", "features.6"])
def test_sigma_zero_is_grad_cam_pp(small, layer, score):
    """σ = 0: every noisy input is x, every D̄^(p) is D^(p) at x, and the method is
    Grad-CAM++ (eq. 19; for "softmax" the exact eq. 10): cam, raw, weights, gradients
    within 1e-15 of scale (the mean of n equal numbers is exact to an ulp), and α where
    g > 0 (where it reaches the weights). Elsewhere α = 1/(2 + S g) can sit near its pole
    (S g = −1.998 at features.3: α = 472, an ulp of S g amplified 1000×): 1e-12 there.
    With "softmax" the means carry the factor p that Grad-CAM++ cancels before forming α
    (two more roundings per element, then a signed sum over channels): 1e-14."""
    bar = 1e-15 if score == "logit" else 1e-14
    model, x = small
    ref = npcam.grad_cam_pp(model, x, TARGET, layer, score=score)
    r = npcam.smooth_grad_cam_pp(model, x, TARGET, layer, score=score, sigma=0.0, num_samples=3)
    for field in ("cam", "raw", "weights", "gradients", "activations", "scores"):
        assert scaled_error(getattr(r, field), getattr(ref, field)) <= bar, field
    live = ref.gradients > 0
    assert scaled_error(r.extra["alpha"][live], ref.extra["alpha"][live]) <= bar
    assert scaled_error(r.extra["alpha"], ref.extra["alpha"]) <= 1e-12
    assert np.array_equal(r.target, ref.target)
    assert np.array_equal(r.extra["noise_scores"], np.repeat(ref.scores[:, None], 3, axis=1))


@pytest.mark.parametrize("relative", [True, False])
def test_definition_against_independent_noisy_gradients(small, relative):
    """D̄^(p) = mean over samples of g^p (g from npcam.grad_cam at each noisy input),
    α = D̄²/(2D̄² + (Σ_ab A_ab) D̄³) with the CLEAN A, w = Σ α ReLU(D̄¹), raw = Σ w A on
    the clean A (1e-12); the map is not built on a noisy sample's activations."""
    model, x = small
    layer = "features.3"
    sigma = 0.1 if relative else 0.08
    r = npcam.smooth_grad_cam_pp(model, x, TARGET, layer, num_samples=3, sigma=sigma,
                                 sigma_relative=relative, rng=5)
    noisy = _noisy_inputs(x, 3, sigma, relative, 5)
    gs = [npcam.grad_cam(model, xn, TARGET, layer).gradients for xn in noisy]
    m1, m2, m3 = (np.mean([g**p for g in gs], axis=0) for p in (1, 2, 3))
    a = npcam.grad_cam(model, x, TARGET, layer).activations
    den = 2 * m2 + a.sum(axis=(2, 3), keepdims=True) * m3
    alpha = np.where((m2 != 0) & (den != 0), m2 / np.where(den != 0, den, 1.0), 0.0)
    w = (alpha * np.maximum(m1, 0)).sum(axis=(2, 3))
    assert scaled_error(r.extra["alpha"], alpha) <= 1e-12
    assert scaled_error(r.gradients, m1) <= 1e-12
    assert scaled_error(r.weights, w) <= 1e-12
    assert np.array_equal(r.activations, a)
    assert scaled_error(r.raw, np.einsum("nk,nkhw->nhw", w, a)) <= 1e-12
    # the noise changes the result: it is not Grad-CAM++ of the clean input
    assert scaled_error(r.weights, npcam.grad_cam_pp(model, x, TARGET, layer).weights) > 1e-3


def test_softmax_averages_the_exact_derivatives(small):
    """score="softmax": D̄^(p) are the means of p', p'', p''' (the cumulant form) at the
    noisy inputs; with one sample that is Grad-CAM++ (softmax) of that noisy input, except
    that α's Σ_ab A_ab and the map use the clean A."""
    model, x = small
    layer = "features.5"
    (xn,) = _noisy_inputs(x, 1, 0.15, True, 0)
    r = npcam.smooth_grad_cam_pp(model, x, TARGET, layer, score="softmax", num_samples=1)
    noisy = npcam.grad_cam_pp(model, xn, TARGET, layer, score="softmax")
    assert scaled_error(r.gradients, noisy.gradients) <= 1e-12
    assert np.allclose(r.extra["noise_scores"][:, 0], noisy.scores, rtol=1e-14, atol=0)
    clean = npcam.grad_cam_pp(model, x, TARGET, layer, score="softmax")
    assert np.allclose(r.scores, clean.scores, rtol=1e-14, atol=0)


def test_noise_scores_are_the_scores_of_independent_forward_passes(small):
    """extra["noise_scores"][n, s] = y^c of noisy input s (rebuilt from the documented
    draw order), for the class fixed by the clean pass (target=None: the clean argmax)."""
    model, x = small
    r = npcam.smooth_grad_cam_pp(model, x, None, "features.6", num_samples=4, sigma=0.3, rng=2)
    c = model.run(x).output.argmax(axis=1)
    assert np.array_equal(r.target, c)
    assert r.extra["noise_scores"].shape == (2, 4)
    for s, xn in enumerate(_noisy_inputs(x, 4, 0.3, True, 2)):
        y = model.run(xn).output[[0, 1], c]
        assert np.allclose(r.extra["noise_scores"][:, s], y, rtol=1e-13, atol=1e-13)
    assert np.allclose(r.scores, model.run(x).output[[0, 1], c], rtol=1e-14)


def test_sigma_relative_scales_the_noise_by_each_images_range(small):
    """sigma_relative=True: image n gets σ·(max x_n − min x_n); False: σ itself. Seen in
    noise_scores, with images of different ranges."""
    model, x = small
    x = x.copy()
    x[1] *= 3.0  # range 3 instead of ≈1
    for relative in (True, False):
        r = npcam.smooth_grad_cam_pp(model, x, TARGET, "features.6", num_samples=2, sigma=0.2,
                                     sigma_relative=relative, rng=9)
        for s, xn in enumerate(_noisy_inputs(x, 2, 0.2, relative, 9)):
            y = model.run(xn).output[[0, 1], TARGET]
            assert np.allclose(r.extra["noise_scores"][:, s], y, rtol=1e-13, atol=1e-13)
        other = _noisy_inputs(x, 1, 0.2, not relative, 9)[0]
        assert not np.allclose(r.extra["noise_scores"][1, 0], model.run(other).output[1, TARGET[1]])


def test_reproducible_bit_for_bit_and_seed_dependent(small):
    """A fixed seed gives bit-identical results; another seed another result; a Generator
    is used as it is and advances."""
    model, x = small
    kw = dict(num_samples=3)
    a = npcam.smooth_grad_cam_pp(model, x, TARGET, "features.3", rng=4, **kw)
    b = npcam.smooth_grad_cam_pp(model, x, TARGET, "features.3", rng=4, **kw)
    for field in ("cam", "raw", "weights", "gradients"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert np.array_equal(a.extra["alpha"], b.extra["alpha"])
    assert np.array_equal(a.extra["noise_scores"], b.extra["noise_scores"])
    c = npcam.smooth_grad_cam_pp(model, x, TARGET, "features.3", rng=5, **kw)
    assert not np.array_equal(a.weights, c.weights)
    gen = np.random.default_rng(4)
    g1 = npcam.smooth_grad_cam_pp(model, x, TARGET, "features.3", rng=gen, **kw)
    g2 = npcam.smooth_grad_cam_pp(model, x, TARGET, "features.3", rng=gen, **kw)
    assert np.array_equal(g1.weights, a.weights) and not np.array_equal(g2.weights, a.weights)


def test_defaults_and_registry(small):
    """Defaults: 20 samples, σ = 0.15 relative, rng=0, the logit; registered without
    target="all"."""
    model, x = small
    r = npcam.smooth_grad_cam_pp(model, x)
    assert r.extra["noise_scores"].shape == (2, 20)
    same = npcam.smooth_grad_cam_pp(model, x, None, None, score="logit", num_samples=20, sigma=0.15,
                                    sigma_relative=True, rng=0, progress=False)
    assert np.array_equal(r.raw, same.raw)
    m = npcam.METHODS["smooth-grad-cam++"]
    assert m.function is npcam.smooth_grad_cam_pp and not m.supports_all_targets


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_samples": 0}, ValueError, "num_samples must be a positive int"),
        ({"num_samples": 2.0}, TypeError, "num_samples must be a positive int"),
        ({"num_samples": True}, TypeError, "num_samples must be a positive int"),
        ({"sigma": -0.1}, ValueError, "sigma must be a finite float >= 0"),
        ({"sigma": float("nan")}, ValueError, "sigma must be a finite float >= 0"),
        ({"sigma": "0.1"}, TypeError, "sigma must be a float >= 0"),
        ({"sigma_relative": 1}, TypeError, "sigma_relative must be a bool"),
        ({"rng": "seed"}, TypeError, "rng must be an int seed or a numpy.random.Generator"),
        ({"rng": -1}, ValueError, "rng must be a seed >= 0"),
        ({"rng": np.random.RandomState(0)}, TypeError, "rng must be an int seed"),
        ({"progress": "yes"}, TypeError, "progress must be None"),
        ({"score": "log_softmax"}, ValueError, "score must be 'logit' or 'softmax' for smooth_grad_cam_pp"),
        ({"target": "all"}, ValueError, "target='all' is supported by the methods with supports_all_targets"),
        ({"target": 10}, ValueError, "target must be in"),
    ],
)
def test_bad_arguments(small, kwargs, error, match):
    model, x = small
    kwargs = {"target": TARGET, **kwargs}
    with pytest.raises(error, match=match):
        npcam.smooth_grad_cam_pp(model, x, layer="features.6", num_samples=kwargs.pop("num_samples", 2),
                                 **kwargs)


def test_progress_bar_is_drawn_when_asked(small, capsys):
    """progress=True draws the shared bar on stderr, labelled SmoothGrad-CAM++."""
    model, x = small
    npcam.smooth_grad_cam_pp(model, x, TARGET, "features.6", num_samples=2, progress=True)
    assert "SmoothGrad-CAM++" in capsys.readouterr().err


# ------------------------------------------------------------------ conventions
def test_npcam_convention_is_the_upsampled_cam(small):
    """"npcam" = upsample(smooth_grad_cam_pp(...).cam) with the method's options."""
    model, x = small
    assert set(CONVENTIONS) == {"npcam", "torchcam"}
    r = npcam.smooth_grad_cam_pp(model, x, TARGET, "features.5", num_samples=3, rng=1)
    ours = C.cam("smooth-grad-cam++", model, x, TARGET, "features.5", num_samples=3, rng=1)
    assert np.array_equal(ours, upsample(r.cam, (32, 32)))
    with pytest.raises(ValueError, match="target='all' is not supported by npcam.conventions"):
        C.cam("smooth-grad-cam++", model, x, "all", "features.5")


def test_torchcam_convention_without_torch_names_the_extra(small, monkeypatch):
    """The torchcam convention draws torch's noise; without torch it says which extra to
    install."""
    model, x = small
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ModuleNotFoundError, match=r"npcam\[crosscheck\]"):
        C.cam("smooth-grad-cam++", model, x, TARGET, "features.5", "torchcam")


def test_torchcam_convention_options_are_validated(small, monkeypatch):
    """Checked before torch is imported (here: hidden)."""
    model, x = small
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ValueError, match="std must be > 0"):
        C.cam("smooth-grad-cam++", model, x, TARGET, "features.5", "torchcam", std=0.0)
    with pytest.raises(TypeError, match="seed must be None or an int"):
        C.cam("smooth-grad-cam++", model, x, TARGET, "features.5", "torchcam", seed=1.5)
    with pytest.raises(ValueError, match="input_size must be None for convention 'torchcam'"):
        C.cam("smooth-grad-cam++", model, x, TARGET, "features.5", "torchcam", input_size=(32, 32))
