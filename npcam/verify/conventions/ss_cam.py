r"""SS-CAM as torchcam 0.5.0 computes it, beside npcam's own.

The paper (Wang, Naidu et al. 2020, arXiv 2006.14255): Score-CAM whose scores are averaged
over noisy masks H^k + δ, δ ~ N(0, σ²), then the channel softmax. torchcam's ``SSCAM``
(``torchcam/methods/activation.py`` 288-390) departs from npcam's default in what its
Score-CAM does (the logit; masks normalised at the layer's resolution, then upsampled;
the unmasked input as baseline) and draws its noise from torch's generator.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

from ...image import upsample
from ...methods._passes import check_batch_size, check_count, check_sigma
from ...methods.ss_cam import ss_cam
from ._common import _check_bool, _size
from .score_cam import _layer, _masked_outputs, _pick, _resize_matrices, _softmax_channels, _torchcam_map
from .score_cam import _torchcam_normalize as _normalize

__all__ = ["CONVENTIONS", "npcam_ss_cam", "torchcam_ss_cam"]

_NEEDS_TORCH = (
    "the 'torchcam' SS-CAM convention draws its noise from torch's generator, as torchcam does; "
    "install the crosscheck extra: pip install 'npcam[crosscheck]'"
)


def npcam_ss_cam(
    model: Any,
    x: Any,
    target: Any,
    layer: str | None,
    input_size: Any,
    score: str | None,
    *,
    channel_softmax: bool = True,
    baseline: Any = None,
    align_corners: bool = False,
    normalize_before_upsample: bool = False,
    num_samples: int = 35,
    sigma: float = 2.0,
    rng: int | np.random.Generator = 0,
    batch_size: int = 32,
) -> np.ndarray:
    """npcam's own convention: :func:`npcam.ss_cam`'s ``cam`` (``score=None`` meaning
    ``"softmax"``) upsampled with half-pixel bilinear interpolation to ``input_size``
    (default x's size); no normalisation. The options are :func:`npcam.ss_cam`'s.
    Returns (N, H, W) float64."""
    r = ss_cam(
        model, x, target, layer, score="softmax" if score is None else score,
        channel_softmax=channel_softmax, baseline=baseline, align_corners=align_corners,
        normalize_before_upsample=normalize_before_upsample, num_samples=num_samples,
        sigma=sigma, rng=rng, batch_size=batch_size,
    )
    size = _size(np.shape(x)[-2:] if input_size is None else input_size, True, "npcam")
    return upsample(r.cam, size)


def torchcam_ss_cam(
    model: Any,
    x: Any,
    target: Any,
    layer: str | None,
    input_size: Any,
    score: str | None,
    *,
    num_samples: int = 35,
    std: float = 2.0,
    seed: int = 0,
    batch_size: int = 32,
    normalized: bool = True,
) -> np.ndarray:
    """torchcam's ``SSCAM(model, layer, num_samples=35, std=2.0)`` (torchcam 0.5.0), the
    first tensor of ``cam_extractor(class_idx, scores)`` right after
    ``torch.manual_seed(seed)``: (N, h, w) float64 at the layer's resolution
    (``input_size`` must be None). Needs torch (the ``npcam[crosscheck]`` extra), for
    torch's random stream; the global generator is left as it was.

    In order (``activation.py``):

    1. ``ScoreCAM._get_weights`` (279): ``_normalize`` of A at the layer's resolution
       (``A − min``, ``/ (max + 1e-8)``);
    2. ``SSCAM._get_score_weights`` (362): **all** normalised maps upsampled with
       ``F.interpolate(bilinear, align_corners=False)`` to the input's size;
    3. the baseline score of the unmasked input (``_init_score_weights``, 224);
    4. for each of the ``num_samples`` samples (367-381): ``noise =
       Normal(0, std).sample((N, K, H, W))`` — drawn in torch's **default dtype**
       (float32 normally) and widened when added to the float64 masks —, masked inputs
       ``(U + noise) · x`` scored at ``class_idx`` (the **logit**, ``score=None``), and
       ``weight += score − baseline``;
    5. ``softmax(weight / num_samples)`` over the channels (384-387), then
       ``compute_cams``: ``nansum(w · A)``, ReLU, ``_normalize`` (``normalized=True``).

    What the library returns vs what the paper says: torchcam's Score-CAM departures (the
    logit, normalise-then-upsample; the baseline X cancels); the noise itself follows
    the paper's construction (on the [0, 1] masks). Reproduced exactly: rel 0.0 against a
    hand version with the same seed (cam-family.md § 6).
    """
    try:
        torch: Any = importlib.import_module("torch")  # by name: mypy in a core env has no torch
    except ImportError as exc:
        raise ImportError(_NEEDS_TORCH) from exc
    score = "logit" if score is None else score
    samples = check_count("num_samples", num_samples)
    std = check_sigma("std", std)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int (for torch.manual_seed), got {type(seed).__name__} {seed!r}.")
    batch_size = check_batch_size(batch_size)
    norm = _check_bool("normalized", normalized)
    _size(input_size, False, "torchcam", " (torchcam returns maps at the layer's resolution)")
    xa, la = _layer(model, x, target, layer, score)
    a = la.activations
    n, k = a.shape[:2]
    up = _resize_matrices(a, xa.shape[2:], align_corners=False)
    u = up(_normalize(a, (2, 3)).reshape(n * k, *a.shape[2:]))  # (N·K, H, W), as torchcam holds it
    rows = np.arange(n * k)
    base = np.repeat(la.scores, k)
    weight = np.zeros(n * k)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        dist = torch.distributions.normal.Normal(0, std)
        for _ in range(samples):
            noise = dist.sample(torch.Size((n, k, *xa.shape[2:]))).numpy().reshape(u.shape)
            masks = u + noise  # float64 + float32 noise, widened exactly
            got = _pick(_masked_outputs(model, xa, k, rows, masks.__getitem__, score, batch_size),
                        la.target, k, rows)
            weight += got - base
    return _torchcam_map(_softmax_channels((weight / samples).reshape(n, k)), a, norm)


#: convention name -> function, for :func:`npcam.conventions.cam` ("ss-cam")
CONVENTIONS: dict[str, Callable[..., np.ndarray]] = {
    "npcam": npcam_ss_cam,
    "torchcam": torchcam_ss_cam,
}
