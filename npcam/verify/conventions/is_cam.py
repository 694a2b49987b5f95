r"""IS-CAM as torchcam 0.5.0 computes it, beside npcam's own.

The paper (Naidu et al. 2020, arXiv 2010.03023): Score-CAM whose scores are averaged over
the masked input scaled along an integration path, then the channel softmax. torchcam's
``ISCAM`` (``torchcam/methods/activation.py`` 393-489) scales by i(i+1)/(2N), i = 1..N,
on top of its Score-CAM departures (the logit; masks normalised at the layer's
resolution, then upsampled; the unmasked input as baseline).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ...image import upsample
from ...methods._passes import check_batch_size, check_count
from ...methods.is_cam import is_cam
from ._common import _check_bool, _size
from .score_cam import _layer, _masked_outputs, _pick, _resize_matrices, _softmax_channels, _torchcam_map
from .score_cam import _torchcam_normalize as _normalize

__all__ = ["CONVENTIONS", "npcam_is_cam", "torchcam_is_cam"]


def npcam_is_cam(
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
    num_samples: int = 10,
    schedule: str = "linear",
    batch_size: int = 32,
) -> np.ndarray:
    """npcam's own convention: :func:`npcam.is_cam`'s ``cam`` (``score=None`` meaning
    ``"softmax"``) upsampled with half-pixel bilinear interpolation to ``input_size``
    (default x's size); no normalisation. The options are :func:`npcam.is_cam`'s.
    Returns (N, H, W) float64."""
    r = is_cam(
        model, x, target, layer, score="softmax" if score is None else score,
        channel_softmax=channel_softmax, baseline=baseline, align_corners=align_corners,
        normalize_before_upsample=normalize_before_upsample, num_samples=num_samples,
        schedule=schedule, batch_size=batch_size,
    )
    size = _size(np.shape(x)[-2:] if input_size is None else input_size, True, "npcam")
    return upsample(r.cam, size)


def torchcam_is_cam(
    model: Any,
    x: Any,
    target: Any,
    layer: str | None,
    input_size: Any,
    score: str | None,
    *,
    num_samples: int = 10,
    batch_size: int = 32,
    normalized: bool = True,
) -> np.ndarray:
    """torchcam's ``ISCAM(model, layer, num_samples=10)`` (torchcam 0.5.0), the first tensor
    of ``cam_extractor(class_idx, scores)``: (N, h, w) float64 at the layer's resolution
    (``input_size`` must be None).

    In order (``activation.py``):

    1. ``ScoreCAM._get_weights`` (279): ``_normalize`` of A at the layer's resolution;
    2. ``ISCAM._get_score_weights`` (462-463): every normalised map upsampled with
       ``F.interpolate(bilinear, align_corners=False)`` to the input's size;
    3. the baseline score of the unmasked input (``_init_score_weights``);
    4. ``coeff = 0.0``; for each step i = 0..N−1 (470-483): ``coeff += (i + 1) / N`` —
       so coeff = i(i+1)/(2N) for i = 1..N, up to (N+1)/2 = 5.5 for N = 10 — and
       ``weight += score(coeff · (U · x)) − baseline``, the score taken at ``class_idx``
       (the **logit**, ``score=None``);
    5. ``softmax(weight / N)`` over the channels (486-487), then ``compute_cams``:
       ``nansum(w · A)``, ReLU, ``_normalize`` (``normalized=True``).

    What the library returns vs what the paper says: torchcam's Score-CAM departures, and
    the running-sum coefficients i(i+1)/(2N) — the paper's i(i−1)/(2N), i = 0..N, as
    torch-cam #154 derives it, shifted by one step; against a linear path i/N the weights
    differ by rel 0.146 on SmallCNN features.6 (cam-family.md § 6). The coefficients are
    accumulated in a Python float, step by step, as torchcam does.
    """
    score = "logit" if score is None else score
    steps = check_count("num_samples", num_samples)
    batch_size = check_batch_size(batch_size)
    norm = _check_bool("normalized", normalized)
    _size(input_size, False, "torchcam", " (torchcam returns maps at the layer's resolution)")
    xa, la = _layer(model, x, target, layer, score)
    a = la.activations
    n, k = a.shape[:2]
    up = _resize_matrices(a, xa.shape[2:], align_corners=False)
    an = _normalize(a, (2, 3)).reshape(n * k, *a.shape[2:])
    rows = np.arange(n * k)
    base = np.repeat(la.scores, k)
    weight = np.zeros(n * k)
    coeff = 0.0
    for i in range(steps):
        coeff += (i + 1) / steps
        got = _pick(_masked_outputs(model, xa, k, rows, lambda r: up(an[r]), score, batch_size, coeff),
                    la.target, k, rows)
        weight += got - base
    return _torchcam_map(_softmax_channels((weight / steps).reshape(n, k)), a, norm)


#: convention name -> function, for :func:`npcam.conventions.cam` ("is-cam")
CONVENTIONS: dict[str, Callable[..., np.ndarray]] = {
    "npcam": npcam_is_cam,
    "torchcam": torchcam_is_cam,
}
