r"""SmoothGrad-CAM++ (Omeiza et al., *Smooth Grad-CAM++: An Enhanced Inference Level
Visualization Technique for Deep Convolutional Neural Network Models*, arXiv 1908.01224).

Grad-CAM++ (:mod:`npcam.methods.grad_cam_pp`) with the derivatives D^(p) = ∂^pY^c/∂A^p
replaced by their means over n noisy copies x + ε_s, ε_s ~ N(0, σ²) (the SmoothGrad
average of Smilkov et al. 2017, arXiv 1706.03825)::

    D̄^(p)_kij = (1/n) Σ_s D^(p)_kij(x + ε_s)          (D¹ = g, D² = g², D³ = g³ for
                                                        eq. 19's Y = exp(S))
    α^kc_ij   = D̄² / (2 D̄² + (Σ_ab A^k_ab) · D̄³)
    w^c_k     = Σ_ij α^kc_ij · ReLU(D̄¹)
    L^c       = ReLU(Σ_k w^c_k A^k)                    (A: the clean input's activations)

With σ = 0 every D̄^(p) is D^(p) at x and the method is Grad-CAM++ (eq. 19) exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._progress import Progress, check_progress
from ..nn.trace import all_finite
from ._core import CAMResult, Target, check_input, layer_activations, layer_gradients, map_result
from ._passes import check_count, check_rng, check_sigma
from .grad_cam_pp import _check_bool, _check_pp_score, _ratio, softmax_derivatives

__all__ = ["smooth_grad_cam_pp", "smoothed_derivatives"]


def smoothed_derivatives(
    model: Any,
    x: np.ndarray,
    target: np.ndarray,
    layer: str,
    score: str,
    sigmas: np.ndarray,
    num_samples: int,
    rng: np.random.Generator,
    bar: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    r"""``(D̄¹, D̄², D̄³, noise_scores)`` over ``num_samples`` noisy copies of ``x``.

    Sample s is ``x + sigmas[n] · rng.standard_normal(x.shape)`` (one draw of the whole
    batch's shape per sample, s = 0, 1, ..., in order; ``sigmas`` (N,) per image), explained
    for the fixed classes ``target`` (N,) at ``layer``: one forward and one backward pass
    (``score="softmax"``: one stacked backward pass of every class, for the cumulant form of
    eq. 10). ``noise_scores`` (N, num_samples) holds y^c of each noisy input.
    """
    n = x.shape[0]
    scale = sigmas.reshape((n,) + (1,) * (x.ndim - 1))
    sums: list[np.ndarray] = []
    noise_scores = np.empty((n, num_samples))
    for s in range(num_samples):
        noisy = x + scale * rng.standard_normal(x.shape)
        if score == "logit":
            lg = layer_gradients(model, noisy, target, layer, "logit", allow_all=False, full_trace="layer")
            d1 = lg.gradients
            with np.errstate(over="ignore"):
                d2 = d1 * d1
                terms = (d1, d2, d2 * d1)
            y = lg.scores
        else:
            lg = layer_gradients(model, noisy, "all", layer, "logit", allow_all=True, full_trace="layer")
            p, u1, q2, q3 = softmax_derivatives(lg.gradients, lg.trace.output, target)
            pe = p.reshape((n, 1, 1, 1))
            with np.errstate(over="ignore", invalid="ignore"):
                terms = (pe * u1, pe * q2, pe * q3)  # p', p'', p''' of this sample
            y = p
        noise_scores[:, s] = y
        with np.errstate(over="ignore", invalid="ignore"):
            if s == 0:
                sums = [t.copy() for t in terms]
            else:
                for acc, t in zip(sums, terms, strict=True):
                    acc += t
        if bar is not None:
            bar.step(1)
    with np.errstate(over="ignore", invalid="ignore"):
        m1, m2, m3 = (acc / num_samples for acc in sums)
    return m1, m2, m3, noise_scores


def smooth_grad_cam_pp(
    model: Any,
    x: Any,
    target: Target = None,
    layer: str | None = None,
    *,
    score: str = "logit",
    num_samples: int = 20,
    sigma: float = 0.15,
    sigma_relative: bool = True,
    rng: int | np.random.Generator = 0,
    progress: bool | None = None,
) -> CAMResult:
    r"""SmoothGrad-CAM++: Grad-CAM++ with D¹, D², D³ averaged over noisy inputs.

    ``α = D̄² / (2 D̄² + (Σ_ab A_ab) D̄³)`` (0 where D̄² = 0 or the denominator is 0, the
    rule of :func:`npcam.grad_cam_pp`), ``w_k = Σ_ij α ReLU(D̄¹)``, ``L = ReLU(Σ_k w_k A^k)``
    on the clean activations A (Omeiza et al. 2019, § 3: the derivatives of Grad-CAM++
    smoothed as in SmoothGrad). For the logit (Y = exp(S), eq. 19) D^(p) = g^p with
    g = ∂S^c/∂A at the noisy input; the e^S factors of the paper's D^(p) are left out, as
    :func:`npcam.grad_cam_pp` leaves them out of eq. 19 (they would weight each sample by
    e^{S^c(x + ε)}).

    Parameters
    ----------
    model, x, layer
        As :func:`npcam.grad_cam_pp`.
    target : None, int or N ints
        Fixed per image from the clean forward pass (None: the argmax of the clean logits);
        every noisy copy is explained for that class. ``target="all"`` is refused.
    score : {"logit", "softmax"}
        ``"logit"`` (default): eq. 19's D^(p) = g^p. ``"softmax"``: the exact derivatives
        p', p'', p''' of p_c at each noisy input (the cumulant form of eq. 10, see
        :func:`npcam.methods.grad_cam_pp.softmax_derivatives`), averaged; one stacked
        backward pass of every class per sample. ``"log_softmax"`` is refused.
    num_samples : int
        n, the number of noisy copies: 20 by default (npcam's default: SmoothGrad's
        figures use 10–50 samples, and 20 keeps a call at 20 forward and backward passes;
        torchcam's default is 4).
    sigma : float
        The noise level: 0.15 by default (npcam's default: SmoothGrad's recommended 10–20 %
        of the input range; the paper gives no number). σ = 0 gives Grad-CAM++ exactly.
    sigma_relative : bool
        True (default): the standard deviation is ``sigma · (max(x_n) − min(x_n))`` per
        image, SmoothGrad's convention, independent of the input's scaling. False:
        ``sigma`` itself (torchcam: an absolute 0.3).
    rng : int or numpy.random.Generator
        The noise's source (:func:`npcam.methods._passes.check_rng`): sample s adds
        ``σ_n · rng.standard_normal(x.shape)``, s = 0, ..., n−1 in order. 0 by default, so
        that results are reproducible bit for bit; a Generator advances.
    progress : None, True or False
        A progress bar over the samples on stderr (None: only on a terminal, for calls
        estimated to take longer than 2 s).

    Returns
    -------
    CAMResult
        ``cam`` (N, h, w), ``raw``, ``weights`` w (N, K), ``activations`` the clean A,
        ``gradients`` the smoothed gradient D̄¹ (N, K, h, w), ``scores`` y^c of the clean
        input, ``target``, ``layer``; ``extra["alpha"]`` α (N, K, h, w) and
        ``extra["noise_scores"]`` (N, num_samples): y^c of each noisy input.

    Notes
    -----
    torchcam 0.5.0's ``SmoothGradCAMpp`` (convention ``"torchcam"`` of
    ``npcam.conventions.cam("smooth-grad-cam++", ...)``) differs in three ways: its α
    denominator is the mixed-index ``2 D̄² + Σ_ab (D̄³ A)_ab + 1e-8``, its weights use
    ReLU of the *last* noisy sample's gradient instead of D̄¹, and its map is built on the
    last noisy sample's activations (rel 0.24–0.44 from the clean ones on SmallCNN);
    against this function's formula with the same noise its maps differ by 0.26–0.54
    after min-max (cam-family.md § 11; ``tests/crosscheck/test_family_grad_cam_pp.py``).
    """
    score = _check_pp_score(score, "smooth_grad_cam_pp")
    n_samples = check_count("num_samples", num_samples)
    sig = check_sigma("sigma", sigma)
    relative = _check_bool("sigma_relative", sigma_relative)
    gen = check_rng(rng)
    check_progress(progress)
    xs = check_input(x)
    clean = layer_activations(model, xs, target, layer, score, allow_all=False)
    n = xs.shape[0]
    flat = xs.reshape(n, -1)
    if relative and flat.shape[1] > 0:
        sigmas = sig * (flat.max(axis=1) - flat.min(axis=1))
    else:
        sigmas = np.full(n, sig)
    with Progress(n_samples, "SmoothGrad-CAM++", progress) as bar:
        m1, m2, m3, noise_scores = smoothed_derivatives(
            model, xs, clean.target, clean.layer, score, sigmas, n_samples, gen, bar
        )
    a = clean.activations
    s = a.sum(axis=(-2, -1), keepdims=True)
    with np.errstate(over="ignore", invalid="ignore"):
        alpha = _ratio(m2, 2.0 * m2 + s * m3)
        weights = (alpha * np.maximum(m1, 0.0)).sum(axis=(-2, -1))
    if not all_finite(weights):
        raise ValueError(
            f"the SmoothGrad-CAM++ weights of layer {clean.layer!r} overflowed float64: the "
            "gradients at the noisy inputs are too large."
        )
    return map_result(weights, a, m1, clean.scores, clean.target, clean.layer,
                      extra={"alpha": alpha, "noise_scores": noise_scores})
