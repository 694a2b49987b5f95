r"""Ablation-CAM as npcam and as pytorch-grad-cam 1.5.7 compute it.

``npcam.conventions.cam("ablation-cam", model, x, target, layer, convention=...)``:

==================== =============================================================== =========
convention           what it computes                                                 returns
==================== =============================================================== =========
``npcam``            :func:`npcam.ablation_cam` (the paper: A^k := 0, float64),       (N, H, W)
                     ``cam`` upsampled (half-pixel bilinear); no normalisation        float64
``pytorch-grad-cam`` ``AblationCAM`` (grad-cam 1.5.7): float32 scores and weights,    (N, H, W)
                     the progressive ablation value ``min − (i+1)·1e7`` on layers     float32
                     whose minimum is not 0 (a bug), then ReLU and ``scale_cam_image``
==================== =============================================================== =========
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...methods._core import Target, layer_activations
from ...methods._passes import check_batch_size, chunks, class_scores, pick
from ...methods.ablation_cam import _ablated_copies, ablation_cam
from ._common import _input_size, _npcam_final, _weighted_sum
from .pytorch_grad_cam import _pgc_final

__all__ = ["CONVENTIONS", "PGC_ABLATION_VALUE", "npcam_ablation_cam", "pgc_ablation_weights",
           "pytorch_grad_cam_ablation_cam"]

#: ``AblationLayer.__call__``'s ``ABLATION_VALUE`` (``ablation_layer.py`` 81).
PGC_ABLATION_VALUE = 1e7


def npcam_ablation_cam(
    model: Any, x: Any, target: Target, layer: str | None, input_size: Any, score: str | None,
    *, ablation_value: float | str = 0, batch_size: int = 32,
) -> np.ndarray:
    """npcam's own Ablation-CAM map: ``npcam.ablation_cam(...).cam`` (the paper's weights
    ``(y^c − y^c_k)/y^c`` with ``A^k := 0`` unless ``ablation_value`` says otherwise,
    float64) upsampled with half-pixel bilinear interpolation (``npcam.upsample``) to
    ``input_size`` (default: x's); no normalisation. ``score=None`` means ``"logit"``.
    Returns (N, H, W) float64."""
    r = ablation_cam(model, x, target, layer, score="logit" if score is None else score,
                     ablation_value=ablation_value, batch_size=batch_size)
    return _npcam_final(r.cam, x, input_size)


def _pgc_progressive_values(own: np.ndarray, rows: int) -> np.ndarray:
    r"""The values ``AblationLayer.__call__`` writes into one chunk of ``rows`` copies of
    each image: (N, rows).

    For row i it reads ``m = torch.min(output)`` over the whole chunk — after rows
    0..i−1 were already ablated — and writes 0 if ``m == 0``, else ``m − 1e7``. On an
    image whose minimum is 0 every row gets 0; otherwise row i gets
    ``min(A) − (i+1)·1e7``, computed by the same repeated float64 subtraction. Each
    chunk starts afresh from the cached activations (``set_next_batch`` clones them).
    """
    n = own.shape[0]
    current = own.reshape(n, -1).min(axis=1)  # the chunk's minimum before row 0 is written
    out = np.empty((n, rows))
    for i in range(rows):  # a recurrence: row i depends on the rows written before it
        value = np.where(current == 0, 0.0, current - PGC_ABLATION_VALUE)
        out[:, i] = value
        current = np.minimum(current, value)
    return out


def pgc_ablation_weights(
    model: Any, x: Any, target: Target, layer: str | None, score: str, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """pytorch-grad-cam's ``AblationCAM.get_cam_weights``: (weights (N, K) float32, A).

    ``ablation_cam.py`` 75-150 with ``ablation_layer.py`` 59-85: the original scores
    ``np.float32(y^c)`` (88-89); per image, chunks of ``batch_size`` channels, each chunk a
    forward pass on ablated copies of the cached layer output with the progressive values
    of :func:`_pgc_progressive_values`; the ablated scores rounded to float32 (63, 142);
    ``(y − y_k) / y`` in float32 (144-145). A is the layer's output, NCHW, float64.
    """
    batch_size = check_batch_size(batch_size)
    la = layer_activations(model, x, target, layer, score, allow_all=False)
    own = la.trace.activations[la.layer]
    n, k = own.shape[0], own.shape[la.channel_axis]
    ablated = np.empty((n, k), dtype=np.float32)
    for start, stop in chunks(k, batch_size):
        values = _pgc_progressive_values(own, stop - start)
        stacked = _ablated_copies(own, la.channel_axis, start, stop, values)
        logits = model.run_from(la.trace, la.layer, stacked).output
        scores = class_scores(logits, score).reshape(n, stop - start, -1)
        ablated[:, start:stop] = pick(scores, la.target)
    y = la.scores.astype(np.float32)[:, None]
    with np.errstate(all="ignore"):  # y = 0 gives inf/nan weights, as the library does
        weights = (y - ablated) / y
    return weights, la.activations


def pytorch_grad_cam_ablation_cam(
    model: Any, x: Any, target: Target, layer: str | None, input_size: Any, score: str | None,
    *, batch_size: int = 32,
) -> np.ndarray:
    r"""pytorch-grad-cam 1.5.7's ``AblationCAM(model, [layer], batch_size=...)(x, targets)``
    with ``ClassifierOutputTarget`` (``score=None``: the logit; ``"softmax"`` is
    ``ClassifierOutputSoftmaxTarget``). Returns (N, H, W) float32 in [0, 1].

    In order: the weights of :func:`pgc_ablation_weights`; ``BaseCAM.get_cam_image``
    ``(w[:, :, None, None] * A).sum(1)`` (float32 weights times float64 A, float64);
    ``np.maximum(cam, 0)``, ``scale_cam_image`` (min-max with 1e-7, ``cv2.resize`` to
    ``input_size``), then ``aggregate_multi_layers`` (ReLU, the mean over one layer,
    ``scale_cam_image`` again), as the ``"pytorch-grad-cam"`` Grad-CAM convention.

    **What the library returns vs what the paper says.**

    * *Ablation value (a bug).* The paper sets A^k := 0. ``AblationLayer`` sets it to 0
      only if the minimum of the chunk (the copies of one image) is exactly 0 — a ReLU
      layer —, else to ``torch.min(output) − 1e7`` recomputed inside its loop over the
      chunk after earlier rows were ablated, so channel i of a chunk gets
      ``min − (i+1)·1e7`` (−1e7 … −3.2e8 for ``batch_size=32``). On a signed layer that
      feeds a linear head the weights are then ~1e8 times the paper's and depend on
      ``batch_size``: on SignedCNN ``features.5`` (signed conv → GAP → FC) the weights
      are off by rel 4.8e8 vs the paper at ``batch_size=32`` and 1.7e8 at 5
      (cam-family.md § 7); re-measured on the test suite's SignedCNN
      (``tests/crosscheck/test_family_ablation_eigen.py``): 3.4e8 and 1.4e8 (targets
      [4, 2]), 7.0e8 and 2.5e8 (the predicted class). Under GAP → FC the library's weight
      of channel k at position i of its chunk is exactly ``W_ck (Ā^k − min A +
      (i+1)·1e7) / y^c``. Where the layer feeds a ReLU (SmallCNN ``features.5``)
      ReLU(min − i·1e7) = ReLU(0) hides it.
    * *float32.* Scores and weights are float32 (``np.float32``, lines 88, 63, 142):
      2.0e-7 rel vs the float64 weights where the ablation value is 0.
    * The normalisation by y^c and its sign flip for y^c < 0 are the paper's.

    ``ratio_channels_to_ablate < 1`` (experimental, EigenCAM-based channel selection) is
    not reproduced: the default 1.0 ablates every channel.
    """
    weights, a = pgc_ablation_weights(model, x, target, layer, "logit" if score is None else score,
                                      batch_size)
    size = _input_size(x, input_size, "pytorch-grad-cam")
    with np.errstate(invalid="ignore"):  # inf/nan weights (y = 0) propagate as in the library
        return _pgc_final(_weighted_sum(weights, a), size)


#: convention name -> function, for ``npcam.conventions.cam("ablation-cam", ...)``
CONVENTIONS = {
    "npcam": npcam_ablation_cam,
    "pytorch-grad-cam": pytorch_grad_cam_ablation_cam,
}
