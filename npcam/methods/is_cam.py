r"""IS-CAM, Integrated Score-CAM (Naidu et al. 2020, arXiv 2010.03023).

Score-CAM's weights, averaged along a path that scales the masked input::

    C(A^k) = (1/N) Σ_{i=1..N} f_c(β_i · X ∘ H^k) − f_c(X_b)         (H^k: Score-CAM's mask)
    α^c_k = softmax_k(C),   L^c = ReLU(Σ_k α^c_k A^k)

with the coefficients β_i of ``schedule``: ``"linear"`` β_i = i/N (npcam's default) or
``"torchcam"`` β_i = i(i+1)/(2N) (torchcam 0.5.0, ``activation.py`` 468-478:
``coeff += (sidx + 1) / num_samples``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._core import CAMResult, Target
from ._passes import check_count
from .score_cam import _score_family

__all__ = ["is_cam"]

#: the coefficient schedules of :func:`is_cam`
SCHEDULES = ("linear", "torchcam")


def is_coefficients(num_samples: int, schedule: str = "linear") -> np.ndarray:
    r"""The path coefficients β_1..β_N of IS-CAM, (N,) float64.

    ``"linear"``: β_i = i/N, i = 1..N — equally spaced points of the straight path
    t·(X ∘ H^k), t ∈ (0, 1], from the black image to the masked input: the right-endpoint
    Riemann sum of ∫₀¹ f_c(t·X ∘ H^k) dt, the integration IS-CAM is named after.
    ``"torchcam"``: β_i = i(i+1)/(2N) (torchcam's running sum of (i+1)/N; β_N = (N+1)/2,
    5.5 for N = 10).
    """
    n = check_count("num_samples", num_samples)
    if not isinstance(schedule, str) or schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}.")
    i = np.arange(1, n + 1, dtype=np.float64)
    return i / n if schedule == "linear" else i * (i + 1) / (2 * n)


def is_cam(
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
    num_samples: int = 10,
    schedule: str = "linear",
    batch_size: int = 32,
    return_masks: bool = False,
    progress: bool | None = None,
) -> CAMResult:
    r"""IS-CAM: Score-CAM with ``C(A^k) = (1/N) Σ_i f_c(β_i · X ∘ H^k) − f_c(X_b)``.

    Each masked input X ∘ H^k of :func:`npcam.score_cam` is scaled by the coefficients
    β_1..β_N of an integration path; the N scores are averaged, the baseline score
    subtracted and the channel softmax applied (Naidu et al. 2020, arXiv 2010.03023).

    **The paper's schedule.** As torch-cam #154 (frgfm, 2022) restates the paper's
    equations, M_i = Σ_{j=0}^{i−1} (j/N) · X ∘ H^k and α = (1/N) Σ_{i=0}^{N} C(M_i): the
    coefficients i(i−1)/(2N), i = 0..N — N + 1 terms, the first two 0 and the last
    (N−1)/2, a running sum that is not a path from the black image to X ∘ H^k
    (unverified here against the paper's own text, whose body the stored copies do not
    reach). torchcam implements that running sum shifted by one step, i(i+1)/(2N),
    i = 1..N (``schedule="torchcam"``). npcam's default ``"linear"``, β_i = i/N, is the straight path of
    the integration the method is named after — npcam's default, documented.

    Parameters
    ----------
    model, x, target, layer, score, channel_softmax, baseline, align_corners,
    normalize_before_upsample, batch_size, return_masks
        As :func:`npcam.score_cam` (``score="softmax"`` by default; ``target="all"``
        accepted). ``extra["masks"]`` holds the masks H^k (unscaled).
    num_samples : int
        N, the steps of the path. Default 10 — npcam's default, documented: torchcam
        0.5.0's ``ISCAM(num_samples=10)``.
    schedule : {"linear", "torchcam"}
        The coefficients (:func:`is_coefficients`): ``"linear"`` i/N (default),
        ``"torchcam"`` i(i+1)/(2N), i = 1..N.
    progress : None, True or False
        A progress bar labelled "IS-CAM" over the N·(images)·K scaled inputs.

    Returns
    -------
    CAMResult
        As :func:`npcam.score_cam`; ``extra["mask_scores"]`` is
        ``(1/N) Σ_i f_c(β_i · X ∘ H^k)``, before the baseline and the channel softmax.

    Notes
    -----
    With ``num_samples=1`` the ``"linear"`` schedule has β_1 = 1 and IS-CAM is Score-CAM.
    Cost: N·(images)·K + (images) forward passes. torchcam's variant is
    ``npcam.conventions.cam("is-cam", ..., convention="torchcam")``.
    """
    coeff = is_coefficients(num_samples, schedule)

    def scaled(sample: np.ndarray, x_rows: np.ndarray, masks: np.ndarray) -> np.ndarray:
        # β_i · (X ∘ H^k), in torchcam's order of the two products
        return coeff[sample][:, None, None, None] * (x_rows * masks[:, None])

    return _score_family(
        model, x, target, layer, score=score, channel_softmax=channel_softmax, baseline=baseline,
        align_corners=align_corners, normalize_before_upsample=normalize_before_upsample,
        batch_size=batch_size, return_masks=return_masks, progress=progress, label="IS-CAM",
        num_samples=coeff.size, perturb=scaled,
    )
