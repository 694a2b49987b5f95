r"""The seed document's proof that Grad-CAM generalises CAM, checked in numbers.

Under ``A → GAP → FC``, ``∂y^c/∂A^k_ij = w^c_k / Z`` for every (i, j), so ``α = w / Z``
and Grad-CAM's map is CAM's map divided by Z.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._core import Target, weighted_map
from .cam import cam
from .grad_cam import grad_cam

__all__ = ["CAMEquivalence", "cam_equivalence"]


@dataclass(frozen=True)
class CAMEquivalence:
    """The seed's proof that Grad-CAM generalises CAM, in numbers.

    ``weight_error = max|Z·α^c − w^c| / max|w^c|`` and
    ``map_error = max|Z·M_Grad-CAM − M_CAM| / max_ij Σ_k |w^c_k A^k_ij|``; the identity
    holds when both are ≤ ``tolerance`` (1e-12: float64 round-off, not an approximation).
    """

    Z: int
    weight_error: float
    map_error: float
    tolerance: float
    holds: bool


def cam_equivalence(
    model: Any, x: Any, target: Target = None, layer: str | None = None,
    tolerance: float = 1e-12,
) -> CAMEquivalence:
    r"""Check ``Σ_ij ∂y^c/∂A^k_ij = w^c_k`` (so ``Z·α^c = w^c``) and ``Z·L_Grad-CAM = L_CAM``
    on a model with a GAP → FC head.

    The chain rule through ``F^k = (1/Z) Σ_ij A^k_ij`` and ``y^c = Σ_k w^c_k F^k + b_c``
    gives ``∂y^c/∂A^k_ij = ∂y^c/∂F^k · ∂F^k/∂A^k_ij = w^c_k · (1/Z)`` at every (i, j); the
    seed's step "∂Y/∂F = (∂Y/∂A)/(∂F/∂A)" is this chain rule written as a quotient.
    """
    c = cam(model, x, target, layer)
    g = grad_cam(model, x, "all" if c.target.ndim == 2 else c.target, c.layer)
    assert c.activations is not None and c.weights is not None and g.weights is not None  # layer methods
    z = int(c.activations.shape[2] * c.activations.shape[3])
    w_scale = max(float(np.abs(c.weights).max()), np.finfo(float).tiny)
    w_err = float(np.abs(z * g.weights - c.weights).max()) / w_scale
    terms = np.abs(weighted_map(np.abs(c.weights), np.abs(c.activations)))
    m_scale = max(float(terms.max()), np.finfo(float).tiny)
    m_err = float(np.abs(z * g.raw - c.raw).max()) / m_scale
    return CAMEquivalence(z, w_err, m_err, tolerance, bool(w_err <= tolerance and m_err <= tolerance))
