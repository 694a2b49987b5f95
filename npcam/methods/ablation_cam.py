r"""Ablation-CAM (Desai & Ramaswamy, *Ablation-CAM: Visual Explanations for Deep
Convolutional Network via Gradient-free Localization*, WACV 2020).

A gradient-free Grad-CAM: the importance of channel k is the relative drop of the class
score when that channel is removed from the target layer::

    y^c_k = y^c(A with A^k := 0)              (the ablated score)
    w^c_k = (y^c − y^c_k) / y^c                (the paper's "slope", normalised by y^c)
    M^c   = Σ_k w^c_k A^k                      (``raw``, signed)
    L^c   = ReLU(M^c)                          (``cam``)

Each y^c_k is one forward pass of the layers *after* the target layer
(``model.run_from``) on a copy of A with channel k replaced; ``batch_size`` of those
copies (times the N images) go through one pass. Nothing before the layer is re-run.

Under ``A → GAP → FC`` (a linear head) y^c − y^c_k = W_ck · mean_ij(A^k) exactly, so
w^c_k = W_ck · Ā^k / y^c: the CAM weights scaled by the channel means and divided by y^c.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .._progress import Progress, check_progress
from .._validate import describe
from .._warnings import NumericalWarning
from ._core import CAMResult, Target, layer_activations, map_result
from ._passes import check_batch_size, chunks, class_scores, pick

__all__ = ["MIN_MINUS_OFFSET", "ablation_cam", "ablation_values", "check_ablation_value"]

#: pytorch-grad-cam's ``ABLATION_VALUE`` (``ablation_layer.py`` 81): "min-minus" sets an
#: ablated channel to the image's minimum activation minus this.
MIN_MINUS_OFFSET = 1e7


def check_ablation_value(value: Any) -> float | str:
    """``ablation_value`` as ``"min-minus"`` or a finite float; else an error."""
    if isinstance(value, str):
        if value != "min-minus":
            raise ValueError(f"ablation_value must be 0, 'min-minus' or a finite float, got {value!r}.")
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"ablation_value must be 0, 'min-minus' or a finite float, got {describe(value)}.")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"ablation_value must be 0, 'min-minus' or a finite float, got {v!r}.")
    return v


def ablation_values(activations: np.ndarray, ablation_value: float | str) -> np.ndarray:
    r"""The value an ablated channel is set to, per image: (N,) float64.

    A float: that value for every image. ``"min-minus"`` (pytorch-grad-cam's intent,
    without its progressive bug): ``m_n = min_{k,i,j} A_n`` over image n's own activations
    (not over the batch, so that an image's explanation does not depend on the other
    images), then 0 if ``m_n == 0`` (a ReLU layer: the paper's zero) else
    ``m_n − 1e7`` — the same value for every channel of the image.
    """
    n = activations.shape[0]
    if isinstance(ablation_value, str):
        m = activations.reshape(n, -1).min(axis=1) if activations.size else np.zeros(n)
        return np.where(m == 0, 0.0, m - MIN_MINUS_OFFSET)
    return np.full(n, float(ablation_value))


def _ablated_copies(a: np.ndarray, axis: int, start: int, stop: int, values: np.ndarray) -> np.ndarray:
    """``r = stop − start`` copies of each image's layer output ``a`` (the layer's own layout,
    channel axis ``axis``), copy j of image n with channel ``start + j`` set to
    ``values[n]`` (``values`` (N,)) or ``values[n, j]`` (``values`` (N, r)); stacked in
    ``np.repeat`` order (row n·r + j), as ``run_from`` takes them."""
    n, r = a.shape[0], stop - start
    rep = np.repeat(a[:, None], r, axis=1)  # (N, r, ...) — a fresh array, written below
    view = np.moveaxis(rep, axis + 1, 2)  # (N, r, K, ...) view of rep
    j = np.arange(r)
    fill = np.broadcast_to(values.reshape(n, -1), (n, r))
    view[:, j, start + j] = fill.reshape((n, r) + (1,) * (a.ndim - 2))
    return rep.reshape((n * r,) + a.shape[1:])


def _check_denominator(y: np.ndarray, target: np.ndarray, score: str) -> None:
    """y^c = 0 is refused (the weights would be ±inf or 0/0); y^c < 0 warns."""
    where = np.argwhere(y == 0)
    if where.size:
        pairs = ", ".join(_pair(w, target) for w in where[:5])
        raise ValueError(
            f"ablation_cam divides by the score y^c, which is exactly 0 under score={score!r} "
            f"for {pairs}; the weights (y^c − y^c_k)/y^c are undefined there, so choose another "
            "score or target."
        )
    neg = np.argwhere(y < 0)
    if neg.size:
        pairs = ", ".join(_pair(w, target) for w in neg[:5]) + (", ..." if len(neg) > 5 else "")
        warnings.warn(
            f"ablation_cam: the score y^c is negative for {pairs}, so every weight "
            "(y^c − y^c_k)/y^c there has the opposite sign of the score drop it measures (the "
            "paper's formula, kept as it is); score='softmax' gives y^c > 0.",
            NumericalWarning,
            stacklevel=3,
        )


def _pair(where: np.ndarray, target: np.ndarray) -> str:
    n = int(where[0])
    c = int(target[n] if target.ndim == 1 else target[n, int(where[1])])
    return f"(image {n}, class {c})"


def ablation_cam(
    model: Any,
    x: Any,
    target: Target = None,
    layer: str | None = None,
    *,
    score: str = "logit",
    ablation_value: float | str = 0,
    batch_size: int = 32,
    progress: bool | None = None,
) -> CAMResult:
    r"""Ablation-CAM: ``L^c = ReLU(Σ_k w^c_k A^k)`` with ``w^c_k = (y^c − y^c_k) / y^c``.

    ``y^c_k`` is the score with channel k of the target layer ablated (``A^k := 0``), and
    the weight is the score drop normalised by the class score — the paper's Ablation-CAM
    weight (Desai & Ramaswamy 2020; its text was not available here to check the
    equation number), computed in float64.

    Parameters
    ----------
    model : npcam.nn.Model
        Any model implementing the protocol (:class:`npcam.Sequential`,
        :class:`npcam.Graph`).
    x : array_like, (N, C, H, W)
        The input batch.
    target : None, int, N ints or "all"
        None: the predicted class per image; "all": every class — one ablated pass gives
        every class's score, so "all" costs what one class costs.
    layer : str or None
        The feature maps A; default as :func:`npcam.grad_cam`.
    score : {"logit", "softmax", "log_softmax"}
        The scalar y^c; the paper uses the class score before softmax ("logit", the
        default).
    ablation_value : 0, "min-minus" or float
        What an ablated channel is set to. ``0`` (default): the paper's A^k := 0.
        ``"min-minus"``: pytorch-grad-cam's intent for signed layers — per image, 0 if the
        image's minimum activation ``m = min_{k,i,j} A`` is exactly 0, else ``m − 1e7`` —
        *without* that library's progressive bug (there the channel at position i of a
        chunk gets ``m − (i+1)·1e7``, so its weights depend on ``batch_size``; convention
        ``"pytorch-grad-cam"`` of ``npcam.conventions.cam("ablation-cam", ...)``
        reproduces it). A float: that value.
    batch_size : int
        Channels ablated per forward pass (each pass holds N · batch_size copies of the
        layer output); a memory bound that cannot change the result. Default 32, as
        pytorch-grad-cam.
    progress : None, True or False
        The progress bar over the K channels (``npcam._progress``): None shows it on a
        terminal when the job is estimated to exceed 2 s.

    Returns
    -------
    CAMResult
        ``cam`` L^c (N, h, w), ``raw`` M^c (signed), ``weights`` w^c (N, K),
        ``activations`` A, ``gradients`` None, ``scores`` y^c, ``target``, ``layer``;
        ``extra["ablated_scores"]`` y^c_k (N, K). With ``target="all"``: (N, C, h, w),
        (N, C, K), scores (N, C) and ``ablated_scores`` (N, C, K).

    Raises
    ------
    ValueError
        If y^c is exactly 0 for some image (and class): the paper's division by y^c is
        then undefined (±inf or 0/0 weights), and npcam refuses rather than return them;
        likewise if |y^c| is so small that a weight overflows float64.

    Warns
    -----
    NumericalWarning
        If y^c < 0 for some image (a negative logit, or ``score="log_softmax"``): dividing
        by it flips the sign of every weight of that image, so channels whose removal
        *lowers* the score get negative weights. This is the paper's formula, kept; the
        warning says so (``score="softmax"`` is always positive).

    Notes
    -----
    * Cost: K forward passes of the layers after ``layer`` per image, in ⌈K/batch_size⌉
      batched passes; nothing before the layer is re-run.
    * The ablated copies are built in the layer's own layout (a channels-last layer of a
      graph is ablated along its own channel axis).
    * When the layer feeds a ReLU, any ablation value ≤ 0 gives the same scores as 0 (the
      ReLU maps both to 0), so ``"min-minus"`` equals the paper there.
    """
    ablation = check_ablation_value(ablation_value)
    batch_size = check_batch_size(batch_size)
    check_progress(progress)
    la = layer_activations(model, x, target, layer, score, allow_all=True)
    own = la.trace.activations[la.layer]  # the layer's own layout, channel axis la.channel_axis
    n, k = own.shape[0], own.shape[la.channel_axis]
    _check_denominator(la.scores, la.target, score)
    values = ablation_values(own, ablation)
    parts: list[np.ndarray] = []
    with Progress(k, "Ablation-CAM", progress) as bar:
        for start, stop in chunks(k, batch_size):
            stacked = _ablated_copies(own, la.channel_axis, start, stop, values)
            logits = model.run_from(la.trace, la.layer, stacked).output
            parts.append(class_scores(logits, score).reshape(n, stop - start, -1))
            bar.step(stop - start)
    every = np.concatenate(parts, axis=1) if parts else np.zeros((n, 0, la.trace.output.shape[1]))
    ablated = pick(every, la.target)  # (N, K) or (N, C, K)
    y = la.scores[..., None]
    with np.errstate(over="ignore"):  # |y^c| near the float64 minimum: refused just below
        weights = (y - ablated) / y
    if not np.isfinite(weights).all():
        raise ValueError(
            "ablation_cam's weights (y^c − y^c_k)/y^c overflow float64: |y^c| is too close to 0 "
            f"under score={score!r} (smallest |y^c| = {float(np.abs(la.scores).min()):.3g}); "
            "choose another score or target."
        )
    return map_result(weights, la.activations, None, la.scores, la.target, la.layer,
                      {"ablated_scores": ablated})
