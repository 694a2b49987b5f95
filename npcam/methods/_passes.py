r"""What the methods that run many passes share: their option checks, the batching of
forward passes, and the class scores of a batch of logits.

Score-CAM, SS-CAM and IS-CAM run the model on masked copies of each image; Ablation-CAM
re-runs the layers after the target layer on ablated copies of its output; SmoothGrad-CAM++
runs a forward and a backward pass per noisy copy. Each does so ``batch_size`` inputs at a
time — a memory bound, never a change of the result: every pass is a function of its own
row only (npcam's layers have no batch statistics in eval mode) — and reports each chunk to
one :class:`npcam._progress.Progress`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .._progress import Progress
from .._validate import describe
from ..nn import functional
from .scores import check_score

__all__ = [
    "cams_for_classes",
    "check_batch_size",
    "check_count",
    "check_rng",
    "check_sigma",
    "chunks",
    "class_scores",
    "forward_scores",
    "pick",
]


def check_batch_size(batch_size: Any) -> int:
    """``batch_size`` as a positive int (inputs per forward pass); else an error."""
    return check_count("batch_size", batch_size)


def check_count(name: str, value: Any) -> int:
    """A positive int (``num_samples``, ``batch_size``); ``TypeError``/``ValueError`` else."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive int, got {describe(value)}.")
    if int(value) < 1:
        raise ValueError(f"{name} must be a positive int, got {int(value)}.")
    return int(value)


def check_sigma(name: str, value: Any) -> float:
    """A finite float ≥ 0 (a noise level)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a float >= 0, got {describe(value)}.")
    v = float(value)
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite float >= 0, got {v!r}.")
    return v


def check_rng(rng: Any) -> np.random.Generator:
    """``rng`` as a NumPy Generator: an int seed (``rng=0`` by default, so the stochastic
    methods are deterministic unless asked otherwise) or a Generator, used as it is (it
    advances). Anything else is a ``TypeError`` (a legacy ``RandomState`` included)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (bool, np.bool_)) or not isinstance(rng, (int, np.integer)):
        raise TypeError(f"rng must be an int seed or a numpy.random.Generator, got {describe(rng)}.")
    if int(rng) < 0:
        raise ValueError(f"rng must be a seed >= 0 or a numpy.random.Generator, got {int(rng)}.")
    return np.random.default_rng(int(rng))


def chunks(total: int, batch_size: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive chunks of at most ``batch_size`` covering ``total``."""
    for start in range(0, total, batch_size):
        yield start, min(start + batch_size, total)


def class_scores(logits: np.ndarray, score: str) -> np.ndarray:
    r"""Every class's y for each row of ``logits`` (M, C): the logits, ``softmax`` p or
    ``log_softmax`` log p (through :mod:`npcam.nn.functional`, stable for large logits)."""
    score = check_score(score)
    if score == "logit":
        return logits
    if score == "softmax":
        return functional.softmax_forward(logits)[0]
    return functional.log_softmax_forward(logits)[0]


def forward_scores(
    model: Any,
    count: int,
    make_inputs: Callable[[int, int], np.ndarray],
    score: str,
    batch_size: int,
    bar: Progress | None = None,
) -> np.ndarray:
    r"""Every class's score for ``count`` inputs built chunk by chunk: (count, C).

    ``make_inputs(start, stop)`` returns inputs ``start..stop-1`` as one batch (so that at
    most ``batch_size`` masked images exist at a time); each chunk is one
    ``model.run`` and one ``bar.step``.
    """
    out: list[np.ndarray] = []
    for start, stop in chunks(count, batch_size):
        logits = model.run(make_inputs(start, stop)).output
        out.append(class_scores(logits, score))
        if bar is not None:
            bar.step(stop - start)
    return np.concatenate(out, axis=0)


def pick(all_scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The target classes' scores: ``all_scores`` (N, ..., C) and ``target`` (N,) or
    (N, T) -> (N, ...) or (N, T, ...) (a class axis after N for ``target="all"``)."""
    if target.ndim == 1:
        idx = target.reshape((-1,) + (1,) * (all_scores.ndim - 1))
        return np.take_along_axis(all_scores, idx, axis=-1)[..., 0]
    moved = np.moveaxis(all_scores, -1, 1)  # (N, C, ...)
    idx = target.reshape(target.shape + (1,) * (moved.ndim - 2))
    return np.take_along_axis(moved, idx, axis=1)


def cams_for_classes(function: Callable[..., Any], model: Any, x: np.ndarray,
                     classes: np.ndarray, **options: Any) -> np.ndarray | None:
    """``cam`` (N, m, h, w) of image n for each of its m ``classes`` (N, m), from **one**
    ``function(model, x, target="all", **options)`` call: for the methods whose forward
    passes give every class's score (Score-, SS-, IS-, Ablation-CAM), explaining m classes
    of an image costs the passes of one. Equal to m separate calls up to rounding (every
    pass is a function of its own row). None when the call warned: a warning may concern a
    class not asked for (Ablation-CAM's y^c ≤ 0), so the caller explains the asked classes
    itself and gets their warnings only."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cam = function(model, x, target="all", **options).cam  # (N, C, h, w)
    if caught:
        return None
    return np.take_along_axis(cam, np.asarray(classes)[:, :, None, None], axis=1)
