r"""Grad-CAM++ (Chattopadhay et al., *Grad-CAM++: Improved Visual Explanations for Deep
Convolutional Networks*, WACV 2018, arXiv 1710.11063).

Grad-CAM weights a channel by the mean of its gradient. Grad-CAM++ weights each position
of the positive gradient by a coefficient α^kc_ij, chosen so that the weights are exact
for a score that is a sum of per-position contributions (§ 3.1; eqs. 5, 7, 10)::

    w^c_k     = Σ_ij α^kc_ij · ReLU(∂Y^c/∂A^k_ij)                                   (eq. 5)
    α^kc_ij   = ∂²Y^c/(∂A^k_ij)² / [2 ∂²Y^c/(∂A^k_ij)² + Σ_ab A^k_ab ∂³Y^c/(∂A^k_ij)³]  (eq. 10)
    L^c       = ReLU(Σ_k w^c_k A^k)

The paper then takes Y^c = exp(S^c), S^c the class score before softmax, for a network
that is piecewise linear in A (ReLU, max-pool, conv, linear: ∂²S^c/∂A² = 0 almost
everywhere). With g = ∂S^c/∂A^k_ij the derivatives are ∂Y = e^S g, ∂²Y = e^S g²,
∂³Y = e^S g³, the e^S cancels in α, and (eq. 19)::

    α^kc_ij = g² / (2 g² + (Σ_ab A^k_ab) · g³)   =   1 / (2 + (Σ_ab A^k_ab) · g)   (g ≠ 0)

and ``ReLU(e^S g) = e^S ReLU(g)`` leaves a per-image factor e^{S^c} in w (``exp_factor``).

Where the score is the softmax probability p_c, eq. 19 does not apply (its ∂²p/∂A² is not
(∂p/∂A)²/p: off by a factor 1–6 on SmallCNN, pytorch-grad-cam #369). For a piecewise-linear
network the exact eq. 10 still has a closed form, in the per-class gradients
d_m = ∂S_m/∂A^k_ij of every class m at the same position: along the coordinate A^k_ij,
``log p_c = S_c − log Σ_m e^{S_m}`` has the derivatives

    u'   = d_c − E_p[d]          u''  = −Var_p[d]          u''' = −κ₃,p[d]

(the mean, variance and third cumulant of d under p), so p' = p u',
p'' = p (u'' + u'²) and p''' = p (u''' + 3 u' u'' + u'³). npcam computes them from one
stacked backward pass of every class (as ``target="all"``), with no higher-order autodiff.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validate import describe
from ..nn import functional
from ..nn.trace import all_finite
from ._core import CAMResult, Target, layer_gradients, map_result, targets
from .scores import check_score

__all__ = [
    "EXP_MAX",
    "grad_cam_pp",
    "grad_cam_pp_alpha",
    "grad_cam_pp_weights",
    "softmax_derivatives",
]

#: The largest y for which e^y is finite in float64 (log of the largest float64).
EXP_MAX = float(np.log(np.finfo(np.float64).max))


def grad_cam_pp_alpha(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    r"""Eq. 19's coefficients ``α^kc_ij = g² / (2 g² + (Σ_ab A^k_ab) g³)``, with no ε.

    ``activations`` A (N, K, h, w); ``gradients`` g = ∂S^c/∂A, (N, K, h, w) or
    (N, C, K, h, w) (one set per class). Returns α of g's shape.

    Evaluated as the algebraically equal ``1 / (2 + (Σ_ab A^k_ab) g)``: dividing numerator
    and denominator by g² (g ≠ 0) removes the g² and g³ that underflow for |g| < 1e-103
    and loses no accuracy (pytorch-grad-cam #236 proposes the same form). Where g = 0 the
    paper's α is 0/0; it multiplies ReLU(g) = 0 there, and npcam sets it to 0. Where
    ``2 + (Σ_ab A^k_ab) g = 0`` (possible only on a signed layer, Σ A < 0) the paper's α
    has a pole; npcam sets it to 0 too, so that the weights stay finite.
    """
    s = activations.sum(axis=(-2, -1), keepdims=True)  # Σ_ab A^k_ab, (N, K, 1, 1)
    if gradients.ndim == 5:
        s = s[:, None]
    with np.errstate(over="ignore"):  # |S g| beyond 1e308: α → 0, the right limit
        den = 2.0 + s * gradients
    ok = (gradients != 0) & (den != 0)
    return np.divide(1.0, den, out=np.zeros_like(den), where=ok)


def grad_cam_pp_weights(alpha: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    r"""``w_k = Σ_ij α^kc_ij ReLU(g^k_ij)`` (eq. 5 without the e^S factor):
    (..., K, h, w) -> (..., K)."""
    with np.errstate(over="ignore"):
        return (alpha * np.maximum(gradients, 0.0)).sum(axis=(-2, -1))


def softmax_derivatives(
    class_gradients: np.ndarray, logits: np.ndarray, target: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    r"""The derivatives of p_c along each coordinate A^k_ij of a piecewise-linear network,
    from the per-class gradients (the cumulant form of eq. 10).

    Parameters
    ----------
    class_gradients : (N, C, K, h, w)
        d_m = ∂S_m/∂A^k_ij for every class m (logit gradients, ``target="all"``).
    logits : (N, C)
        S_m at A.
    target : (N,) or (N, T) int
        The classes c.

    Returns
    -------
    p, u1, q2, q3
        ``p`` = p_c ((N,) or (N, T)); ``u1`` = u' = d_c − E_p[d], ``q2`` = u'' + u'²,
        ``q3`` = u''' + 3 u' u'' + u'³, each (N, K, h, w) or (N, T, K, h, w), so that
        ∂p_c/∂A = p·u1, ∂²p_c/∂A² = p·q2 and ∂³p_c/∂A³ = p·q3. They are returned without
        the factor p, which cancels in α and may underflow for unlikely classes.

    Notes
    -----
    Along A + t·e_kij the logits are S + t·d (the network is linear there), so
    ``u(t) = log p_c(t) = S_c + t d_c − log Σ_m e^{S_m + t d_m}``, whose derivatives are
    the cumulants of d under p(t): u' = d_c − E[d], u'' = −Var[d], u''' = −κ₃[d]. Then
    p = e^u gives p' = p u', p'' = p (u'' + u'²), p''' = p (u''' + 3u'u'' + u'³).
    Var and κ₃ are computed as central moments Σ_m p_m δ_m^r of δ = d − E[d] (two passes,
    no cancellation between raw moments).
    """
    p_all = functional.softmax_forward(logits)[0]  # (N, C)
    with np.errstate(over="ignore", invalid="ignore"):
        mean = np.einsum("nc,nckhw->nkhw", p_all, class_gradients, optimize=True)
        delta = class_gradients - mean[:, None]  # δ_m = d_m − E_p[d]
        d2 = delta * delta
        u2 = -np.einsum("nc,nckhw->nkhw", p_all, d2, optimize=True)  # −Var_p[d]
        u3 = -np.einsum("nc,nckhw->nkhw", p_all, d2 * delta, optimize=True)  # −κ₃,p[d]
        rows = np.arange(logits.shape[0])
        if target.ndim == 1:
            u1 = delta[rows, target]  # u' = δ_c
            p = p_all[rows, target]
        else:
            u1 = delta[rows[:, None], target]
            p = p_all[rows[:, None], target]
            u2, u3 = u2[:, None], u3[:, None]
        q2 = u2 + u1 * u1
        q3 = u3 + 3.0 * u1 * u2 + u1 * u1 * u1
    return p, u1, q2, q3


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {describe(value)}.")
    return bool(value)


def _check_pp_score(score: Any, method: str) -> str:
    score = check_score(score)
    if score == "log_softmax":
        raise ValueError(
            f"score must be 'logit' or 'softmax' for {method}, got 'log_softmax': eq. 10 needs "
            "the 2nd and 3rd derivatives of a positive score Y (the paper's Y = exp(S)), "
            "and log p is neither positive nor one whose derivatives npcam derives."
        )
    return score


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` where both are nonzero, else 0 (α's 0/0 and pole rule)."""
    ok = (num != 0) & (den != 0)
    return np.divide(num, den, out=np.zeros(np.broadcast_shapes(num.shape, den.shape)), where=ok)


def _exp_factor(y: np.ndarray, method: str) -> np.ndarray:
    """e^{y^c}, or ``ValueError`` where it overflows float64."""
    if np.any(y > EXP_MAX):
        raise ValueError(
            f"exp_factor=True needs e^(y^c) to be finite in float64, but {method}'s score y^c "
            f"reaches {float(np.max(y)):.6g} > {EXP_MAX:.6g}; use exp_factor=False (the e^S "
            "factor only rescales each image's map)."
        )
    return np.exp(y)


def grad_cam_pp(
    model: Any,
    x: Any,
    target: Target = None,
    layer: str | None = None,
    *,
    score: str = "logit",
    exp_factor: bool = False,
) -> CAMResult:
    r"""Grad-CAM++: ``L^c = ReLU(Σ_k w^c_k A^k)``, ``w^c_k = Σ_ij α^kc_ij ReLU(g^k_ij)``.

    By default the paper's closed form (eq. 19) with no ε::

        α^kc_ij = g² / (2 g² + (Σ_ab A^k_ab) g³)   where g = ∂y^c/∂A^k_ij ≠ 0, else 0

    It assumes what the paper assumes (§ 3.1, eqs. 17-19): Y^c = exp(S^c) with S^c the
    logit, and a network that is piecewise linear after ``layer`` (ReLU, max-pool, conv,
    linear, BN in eval mode), so that ∂²S/∂A² = 0 and ∂^nY/∂A^n = e^S g^n. On a network
    with smooth nonlinearities (sigmoid, GELU, SiLU) after ``layer`` eq. 19 is only the
    first-order approximation the paper makes there.

    Parameters
    ----------
    model : npcam.nn.Model
        Any model implementing the protocol (:class:`npcam.Sequential`,
        :class:`npcam.Graph`).
    x : array_like, (N, C, H, W)
        The input batch.
    target : None, int, N ints or "all"
        None: the predicted class per image; "all": every class (a class axis after N in
        every per-target field and in ``extra["alpha"]``).
    layer : str or None
        The feature maps A; default as :func:`npcam.grad_cam`.
    score : {"logit", "softmax"}
        ``"logit"`` (default, the paper's S^c, with Y = exp(S^c)): eq. 19.
        ``"softmax"``: Y^c = p_c through the exact eq. 10 — α = p''/(2p'' + Σ_ab A_ab p'''),
        w = Σ_ij α ReLU(p') — with p', p'', p''' from the per-class gradients
        (:func:`softmax_derivatives`), at the cost of one stacked backward pass of N·C
        rows (memory: N·C·K·h·w floats). Eq. 19 with the gradient of p_c, what libraries
        compute when given a softmax output, is off by a factor 1–6 in ∂²p/∂A².
        ``"log_softmax"`` is refused (``ValueError``).
    exp_factor : bool
        False (default, as pytorch-grad-cam and torchcam): w as above. True: the paper's
        literal eq. 5 with Y = exp(S), ``w = Σ_ij α ReLU(e^S g) = e^{y^c}·w``: ``weights``,
        ``raw`` and ``cam`` of each image are multiplied by e^{y^c} (the authors' code and
        tf-keras-vis keep this factor). It rescales each image's map, so it changes
        nothing after per-map normalisation, but maps of different images are no longer
        comparable. Only with ``score="logit"`` (with ``"softmax"`` eq. 10 is applied to
        p_c itself: there is no exponential to restore); ``ValueError`` if some
        y^c > 709.78, where e^{y^c} overflows float64.

    Returns
    -------
    CAMResult
        ``cam`` L^c (N, h, w), ``raw`` (signed), ``weights`` w^c (N, K),
        ``activations`` A, ``gradients`` ∂y^c/∂A (the gradient of p_c for "softmax"),
        ``scores`` y^c, ``target``, ``layer``; ``extra["alpha"]`` α^kc_ij (N, K, h, w).
        With ``target="all"``: (N, C, h, w), (N, C, K), ..., α (N, C, K, h, w).

    Notes
    -----
    * **No ε.** pytorch-grad-cam 1.5.7 adds an absolute 1e-6 to the denominator 2g² + S g³,
      a quantity of order g² ≈ 1e-6 after global pooling: its weights differ from eq. 19 by
      3–21 % (cam-family.md § 1). torchcam 0.5.0's division never happens (its
      ``alpha[idx][mask].div_`` divides a copy), so its weights are Σ_ij ReLU(g)³. Both are
      conventions of ``npcam.conventions.cam("grad-cam++", ...)``.
    * **The 0/0 rule**: α = 0 where g = 0 (the paper's α is 0/0 there and multiplies
      ReLU(g) = 0) and where 2 + (Σ_ab A_ab) g = 0 (a pole, only on signed layers).
    * **α's range**: on a layer with A ≥ 0, α ∈ (0, 1/2] wherever g > 0 (α = 1/(2 + S g)
      with S g ≥ 0). Under GAP → FC (g = w_ck / Z everywhere) α_ij = 1/(2 + w_ck S/Z).
    * **No α normalisation**: the authors' released code divides α by Σ_ij α per channel
      (convention ``"authors-code"``); eq. 19 does not.
    """
    score = _check_pp_score(score, "grad_cam_pp")
    use_exp = _check_bool("exp_factor", exp_factor)
    if use_exp and score != "logit":
        raise ValueError(
            "exp_factor=True needs score='logit' (the paper's Y = exp(S^c)), got "
            f"score={score!r}: eq. 10 is applied to p_c itself, with no exponential to restore."
        )
    if score == "logit":
        lg = layer_gradients(model, x, target, layer, "logit", allow_all=True, full_trace="layer")
        a, g, y, t = lg.activations, lg.gradients, lg.scores, lg.target
        alpha = grad_cam_pp_alpha(a, g)
        weights = grad_cam_pp_weights(alpha, g)
        if use_exp:
            with np.errstate(over="ignore"):
                weights = weights * _exp_factor(y, "grad_cam_pp")[..., None]
    else:
        # every class's logit gradient from one stacked pass; the map's target from its logits
        lg = layer_gradients(model, x, "all", layer, "logit", allow_all=True, full_trace="layer")
        logits = lg.trace.output
        t = targets(target, logits, allow_all=True)
        a = lg.activations
        p, u1, q2, q3 = softmax_derivatives(lg.gradients, logits, t)
        s = a.sum(axis=(-2, -1), keepdims=True)
        if t.ndim == 2:
            s = s[:, None]
        pe = p.reshape(p.shape + (1, 1, 1))
        with np.errstate(over="ignore", invalid="ignore"):
            # α = p''/(2p'' + S p''') with the factor p cancelled: (q2)/(2 q2 + S q3)
            alpha = _ratio(q2, 2.0 * q2 + s * q3)
            g = pe * u1  # ∂p_c/∂A = p u'
            weights = grad_cam_pp_weights(alpha, g)
        y = p
    if not all_finite(weights):
        raise ValueError(
            f"the Grad-CAM++ weights of layer {lg.layer!r} overflowed float64: the gradients "
            "(or e^(y^c)) are too large."
        )
    return map_result(weights, a, g, y, t, lg.layer, extra={"alpha": alpha})
