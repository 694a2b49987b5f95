r"""SmoothGrad-CAM++ as each library computes it: ``npcam.conventions.cam(
"smooth-grad-cam++", ...)``.

==================== ======================================================================
convention           what it computes
==================== ======================================================================
``npcam``            :func:`npcam.smooth_grad_cam_pp`: α = D̄²/(2D̄² + (Σ_ab A_ab) D̄³),
                     w = Σ α ReLU(D̄¹), on the clean activations (Omeiza et al. 2019)
``torchcam``         torchcam 0.5.0 ``SmoothGradCAMpp``: mixed-index denominator, ReLU of the
                     last noisy sample's gradient, the map on the last noisy sample's A
==================== ======================================================================
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import numpy as np

from ..._validate import describe
from ...methods._core import check_input, layer_activations, layer_gradients
from ...methods._passes import check_count, check_sigma
from ...methods.smooth_grad_cam_pp import smooth_grad_cam_pp
from ._common import _check_bool, _npcam_final, _size
from .grad_cam_pp import TORCHCAM_GRAD_CAM_PP_EPS, torchcam_map

__all__ = ["CONVENTIONS", "npcam_smooth_grad_cam_pp", "torchcam_smooth_grad_cam_pp"]


def npcam_smooth_grad_cam_pp(
    model: Any, x: Any, target: Any, layer: Any, input_size: Any, score: Any,
    *, num_samples: int = 20, sigma: float = 0.15, sigma_relative: bool = True, rng: Any = 0,
) -> np.ndarray:
    """npcam's own convention: :func:`npcam.smooth_grad_cam_pp`'s ``cam`` (its defaults;
    ``score=None`` means "logit"), upsampled bilinearly with half-pixel centres to
    ``input_size`` (default: x's size); no normalisation. Returns (N, H, W) float64."""
    r = smooth_grad_cam_pp(model, x, target, layer, score="logit" if score is None else score,
                           num_samples=num_samples, sigma=sigma, sigma_relative=sigma_relative,
                           rng=rng, progress=False)
    return _npcam_final(r.cam, x, input_size)


def _torch() -> Any:
    try:
        torch: Any = importlib.import_module("torch")  # by name: mypy in a core env has no torch
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "convention 'torchcam' of smooth-grad-cam++ draws its noise with torch, as torchcam "
            "does, to reproduce it bit for bit; install the crosscheck extra: "
            "pip install 'npcam[crosscheck]'."
        ) from exc
    return torch


def _check_seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be None or an int >= 0 (a torch seed), got {describe(seed)}.")
    if int(seed) < 0:
        raise ValueError(f"seed must be None or an int >= 0 (a torch seed), got {int(seed)}.")
    return int(seed)


def torchcam_smooth_grad_cam_pp(
    model: Any, x: Any, target: Any, layer: Any, input_size: Any, score: Any,
    *, num_samples: int = 4, std: float = 0.3, seed: int | None = 0, normalized: bool = True,
) -> np.ndarray:
    """torchcam 0.5.0's ``SmoothGradCAMpp(model, layer, num_samples, std)`` called as
    ``model(x)`` then ``cam_extractor(class_idx)[0]``: (N, h, w) at the layer's resolution
    (``input_size`` must be None), float64 for a float64 model. Needs torch (the noise is
    torch's).

    In order (``torchcam/methods/gradient.py``):

    * ``__init__`` (267-287): ``Normal(0, std)`` (285) — loc and scale in torch's default
      dtype (float32); defaults ``num_samples=4``, ``std=0.3`` (absolute, not relative to
      the input range);
    * ``_compute_smoothgrad_weights`` (309-347): ``init_fmap`` = the clean activations A₀
      (318); per sample, ``noisy = x + Normal(0, std).sample(x.shape)`` (one draw of the
      batch's shape in the default dtype, added to the float64 input, 325), forward,
      backward of the logits at ``class_idx`` (328-329), ``grad_2 += g²``,
      ``grad_3 += g³`` (332-333); then both divided by ``num_samples`` (336-337);
      ``α = D̄² / (2 D̄² + Σ_ab (D̄³ A₀)_ab + 1e-8)`` (341-344);
      ``w = Σ_ij α·ReLU(g)`` with g the gradient of the **last** sample (347);
    * ``core.py`` 290-305 (:func:`~npcam.verify.conventions.grad_cam_pp.torchcam_map`):
      ``nansum(w·hook_a)``, ReLU, ``_normalize`` — with ``hook_a`` overwritten by the last
      noisy forward (the activation hook stays enabled, ``core.py`` 173-178).

    **What the library returns vs what the paper says** (cam-family.md § 11): three
    departures from the smoothed eq. 19 — (1) the mixed-index denominator Σ_ab A_ab D̄³_ab
    (one number per channel) instead of (Σ_ab A_ab)·D̄³_ij; (2) ReLU(g_last) instead of
    ReLU(D̄¹); (3) the map on A(x + ε_last), which differs from the clean A by rel 0.24
    (SmallCNN features.6) and 0.36–0.44 (features.3). Together, against the smoothed eq. 19
    on the clean A with the same noise: min-max maps 0.26 apart on cam-family.md's
    SmallCNN, 0.47–0.54 on the test suite's (features.3 / .5 / .6). Against torchcam
    itself: ≤ 6.4e-15 (float64 model, same seed).

    Options: ``num_samples=4`` and ``std=0.3`` (torchcam's defaults); ``seed=0``: the noise
    is what torchcam draws after ``torch.manual_seed(seed)`` (drawn inside
    ``torch.random.fork_rng``, so torch's global generator is left as it was); ``seed=None``
    draws from torch's global generator as it stands (and advances it), as torchcam does;
    ``normalized=True`` (torchcam's switch). The score is the model output: the logit
    (``score=None``).
    """
    n_samples = check_count("num_samples", num_samples)
    sd = check_sigma("std", std)
    if sd == 0:
        raise ValueError("std must be > 0 for convention 'torchcam' (torch's Normal(0, std) "
                         "needs a positive scale), got 0.0.")
    seed_ = _check_seed(seed)
    norm = _check_bool("normalized", normalized)
    _size(input_size, False, "torchcam", " (torchcam returns maps at the layer's resolution)")
    y_score = "logit" if score is None else score
    torch = _torch()
    xs = check_input(x)
    clean = layer_activations(model, xs, target, layer, y_score, allow_all=False)
    a0 = clean.activations
    n, k = a0.shape[:2]
    shape = torch.Size(xs.shape)
    g2 = np.zeros_like(a0)
    g3 = np.zeros_like(a0)
    g_last = a_last = a0
    context = torch.random.fork_rng(devices=[]) if seed_ is not None else nullcontext()
    with context:
        if seed_ is not None:
            torch.manual_seed(seed_)
        distrib = torch.distributions.normal.Normal(0, float(sd))
        for _ in range(n_samples):
            noise = distrib.sample(shape).numpy().astype(np.float64)  # float32 values, exact
            lg = layer_gradients(model, xs + noise, clean.target, clean.layer, y_score,
                                 allow_all=False, full_trace="layer")
            g_last, a_last = lg.gradients, lg.activations
            with np.errstate(over="ignore", invalid="ignore"):
                g2 += g_last * g_last  # grad.pow(2)
                g3 += g_last * g_last * g_last  # grad.pow(3): torch's base·base·base
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        g2 /= n_samples
        g3 /= n_samples
        mixed = (g3 * a0).reshape(n, k, -1).sum(-1)[:, :, None, None]
        alpha = g2 / (2 * g2 + mixed + TORCHCAM_GRAD_CAM_PP_EPS)
        weights = (alpha * np.maximum(g_last, 0)).reshape(n, k, -1).sum(-1)
    return torchcam_map(weights, a_last, norm)


CONVENTIONS: dict[str, Callable[..., np.ndarray]] = {
    "npcam": npcam_smooth_grad_cam_pp,
    "torchcam": torchcam_smooth_grad_cam_pp,
}
