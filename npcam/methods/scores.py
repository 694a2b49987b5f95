r"""The scalar y^c each explanation differentiates, and its cotangent (the backward seed).

``score`` is one of:

* ``"logit"`` (the default and the paper's choice): ``y^c = z_c``, the score before
  softmax; cotangent ``e_c`` (one-hot);
* ``"softmax"``: ``y^c = p_c``; cotangent ``∂p_c/∂z = p_c (e_c − p)``;
* ``"log_softmax"``: ``y^c = log p_c``; cotangent ``e_c − p``.

The last two go through :func:`npcam.nn.functional.softmax_backward` and
``log_softmax_backward``, whose c-th entry keeps full precision when the model is
confident. Softmax saturates: for a confidently classified image p_c ≈ 1 and
∂p_c/∂z ≈ 0, a common cause of all-zero maps in implementations that differentiate the
probability.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..nn import functional

__all__ = ["SCORES", "check_score", "scores_and_cotangent"]

SCORES = ("logit", "softmax", "log_softmax")


def check_score(score: Any) -> str:
    """``score`` if it is one of :data:`SCORES`; else ``ValueError``."""
    if not isinstance(score, str) or score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}.")
    return score


def scores_and_cotangent(
    logits: np.ndarray, target: np.ndarray, score: str
) -> tuple[np.ndarray, np.ndarray]:
    r"""``(y^c, ∂y^c/∂logits)`` per row: (N,) and (N, num_classes).

    ``logits`` (N, num_classes); ``target`` (N,) class indices.
    """
    rows = np.arange(logits.shape[0])
    onehot = np.zeros_like(logits)
    onehot[rows, target] = 1.0
    if score == "logit":
        return logits[rows, target], onehot
    if score == "softmax":
        p, cache = functional.softmax_forward(logits)
        return p[rows, target], functional.softmax_backward(onehot, cache)
    log_p, cache = functional.log_softmax_forward(logits)
    return log_p[rows, target], functional.log_softmax_backward(onehot, cache)
