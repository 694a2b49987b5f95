r"""SS-CAM, Smoothed Score-CAM (Wang, Naidu et al. 2020, arXiv 2006.14255).

Score-CAM's weights, averaged over noisy copies of each mask::

    Ĥ^k_s = H^k + δ_s,   δ_s ~ N(0, σ²) per pixel, s = 1..S        (H^k: Score-CAM's mask)
    C(A^k) = (1/S) Σ_s f_c(X ∘ Ĥ^k_s) − f_c(X_b)
    α^c_k = softmax_k(C),   L^c = ReLU(Σ_k α^c_k A^k)

The noise is added to the [0, 1] masks at the input's resolution — one noise map per
mask, shared by the input channels — where torchcam 0.5.0's ``SSCAM`` adds it
(``activation.py`` 362-369: ``self._upsample(normalised A) + Normal(0, std).sample(...)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._core import CAMResult, Target
from ._passes import check_count, check_rng, check_sigma
from .score_cam import _score_family

__all__ = ["ss_cam"]


def ss_cam(
    model: Any,
    x: Any,
    target: Target = None,
    layer: str | None = None,
    *,
    score: str = "softmax",
    channel_softmax: bool = True,
    baseline: Any = None,
    align_corners: bool = False,
    normalize_before_upsample: bool = False,
    num_samples: int = 35,
    sigma: float = 2.0,
    rng: int | np.random.Generator = 0,
    batch_size: int = 32,
    return_masks: bool = False,
    progress: bool | None = None,
) -> CAMResult:
    r"""SS-CAM: Score-CAM with ``C(A^k) = mean_s f_c(X ∘ (H^k + δ_s)) − f_c(X_b)``.

    Each mask H^k of :func:`npcam.score_cam` gets ``num_samples`` independent noise maps
    δ_s ~ N(0, σ²) (one value per pixel, broadcast over the input channels, added to the
    [0, 1] mask at the input's resolution, as torchcam 0.5.0 does); the scores of the S
    noisy masked inputs are averaged, the baseline score subtracted, and the channel
    softmax applied (Wang, Naidu et al. 2020, arXiv 2006.14255). With ``sigma=0`` every
    sample is Score-CAM's masked input, so SS-CAM equals Score-CAM (up to the rounding of
    the mean of S equal numbers).

    Parameters
    ----------
    model, x, target, layer, score, channel_softmax, baseline, align_corners,
    normalize_before_upsample, batch_size, return_masks
        As :func:`npcam.score_cam` (``score="softmax"``, the class probability, by
        default; ``target="all"`` accepted). ``extra["masks"]`` holds the masks H^k
        before the noise.
    num_samples : int
        S, noisy copies per mask. Default 35 — npcam's default, documented: torchcam
        0.5.0's (``SSCAM(num_samples=35)``), the only implementation measured, so that
        both draw from one distribution (``npcam evaluate`` uses 8).
    sigma : float
        The noise's standard deviation σ ≥ 0, on the [0, 1] mask scale. Default 2.0 —
        npcam's default, documented: torchcam 0.5.0's ``std=2.0``. Such noise dominates
        the masks (Ĥ roughly in [−4, 5]).
    rng : int or numpy.random.Generator
        The noise source: a seed (default 0, so a call is deterministic) or a Generator
        (used as it is, and advanced). The draws are made in a fixed order — sample, then
        image, then channel, then pixel — so the result is the same bit for bit for any
        ``batch_size`` under a fixed seed.
    progress : None, True or False
        A progress bar labelled "SS-CAM" over the S·N·K noisy inputs.

    Returns
    -------
    CAMResult
        As :func:`npcam.score_cam`; ``extra["mask_scores"]`` (N, K) is
        ``(1/S) Σ_s f_c(X ∘ Ĥ^k_s)``, the mean over the samples, before the baseline and
        the channel softmax.

    Notes
    -----
    Cost: S·N·K + N forward passes (35·512 + 1 = 17 921 per image on a ResNet's last
    layer). torchcam's variant (masks normalised before upsampling, the logit, torch's
    noise) is ``npcam.conventions.cam("ss-cam", ..., convention="torchcam")``.
    """
    num_samples = check_count("num_samples", num_samples)
    sigma = check_sigma("sigma", sigma)
    gen = check_rng(rng)

    def noisy(sample: np.ndarray, x_rows: np.ndarray, masks: np.ndarray) -> np.ndarray:
        # Drawn in row order, chunk after chunk: the stream is the same for any chunking.
        delta = sigma * gen.standard_normal(masks.shape)
        return x_rows * (masks + delta)[:, None]

    return _score_family(
        model, x, target, layer, score=score, channel_softmax=channel_softmax, baseline=baseline,
        align_corners=align_corners, normalize_before_upsample=normalize_before_upsample,
        batch_size=batch_size, return_masks=return_masks, progress=progress, label="SS-CAM",
        num_samples=num_samples, perturb=noisy,
    )
