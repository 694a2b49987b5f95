r"""CAM, Grad-CAM, the counterfactual map, and the gradient visualisations.

All class-activation methods share one map (Selvaraju et al. 2017, eq. 2; Zhou et al.
2016)::

    M^c_ij = Σ_k weights_k · A^k_ij          (``raw``)
    L^c    = ReLU(M^c)                        (``cam``)

and differ only in where ``weights`` come from — one small function each:

* CAM (needs ``A → GAP → FC``): ``w^c_k``, the FC weight row of class c;
* Grad-CAM (any architecture): ``α^c_k = (1/Z) Σ_ij ∂y^c/∂A^k_ij`` (eq. 1), Z = h·w;
* counterfactual (§ 5): ``−α^c_k``, i.e. the gradients negated, so the map shows what
  lowers y^c.

Under ``A → GAP → FC``, ``∂y^c/∂A^k_ij = w^c_k / Z`` for every (i, j), so ``α = w / Z`` and
Grad-CAM's map is CAM's map divided by Z (:func:`cam_equivalence` shows it in numbers).

The gradient visualisations backpropagate y^c to the input with a chosen ReLU rule:
plain gradient (``saliency``), ``deconvnet``, ``guided_backprop``; Guided Grad-CAM is the
Grad-CAM map upsampled to the input size times the guided-backprop gradient (§ 3.1).

``target``: None → the predicted class (argmax of the logits) per image; an int → the
same class for every image; a sequence of N ints → one per image; ``"all"`` (CAM,
Grad-CAM, counterfactual) → every class, with a class axis after N in every per-target
field, computed from one forward pass and one backward pass through the layers after
``layer`` with the N·C one-hot seeds stacked along the batch axis.

``score`` selects the scalar y^c per image: ``"logit"`` (the default and the paper's
choice — the score before softmax), ``"softmax"`` (p_c) or ``"log_softmax"`` (log p_c).
Softmax saturates: for a confidently classified image p_c ≈ 1 and ∂p_c/∂y ≈ 0, which is a
common cause of all-zero maps in implementations that differentiate the probability.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validate import describe
from ..image import upsample
from ..nn import layers as L
from ..nn.functional import log_softmax, softmax
from ..nn.sequential import Sequential

__all__ = [
    "SCORES",
    "CAMEquivalence",
    "CAMResult",
    "cam",
    "cam_equivalence",
    "counterfactual",
    "deconvnet",
    "default_layer",
    "grad_cam",
    "gradcam_weights",
    "gradient_x_input",
    "guided_backprop",
    "guided_grad_cam",
    "saliency",
    "weighted_map",
]

SCORES = ("logit", "softmax", "log_softmax")
Target = int | Sequence[int] | np.ndarray | str | None


@dataclass(frozen=True)
class CAMResult:
    """Everything a class-activation method computed, as named arrays.

    Shapes are for one target per image; with ``target="all"`` a class axis C follows N
    in ``cam``, ``raw``, ``weights``, ``gradients``, ``scores`` and ``target``.
    """

    cam: np.ndarray  #: L^c = ReLU(raw), (N, h, w)
    raw: np.ndarray  #: M^c = Σ_k weights_k A^k, (N, h, w)
    weights: np.ndarray  #: α^c (Grad-CAM), w^c (CAM), −α^c (counterfactual); (N, K)
    activations: np.ndarray  #: A^k of the target layer, (N, K, h, w)
    gradients: np.ndarray | None  #: ∂y^c/∂A^k, (N, K, h, w); None for CAM
    scores: np.ndarray  #: y^c, (N,)
    target: np.ndarray  #: c, (N,) int64
    layer: str  #: the target layer's name


# ------------------------------------------------------------------- the paper's weights
def gradcam_weights(gradients: np.ndarray) -> np.ndarray:
    r"""Grad-CAM's neuron-importance weights (eq. 1): ``α^c_k = (1/Z) Σ_ij ∂y^c/∂A^k_ij``,
    the global average of the gradients; (..., K, h, w) -> (..., K)."""
    return gradients.mean(axis=(-2, -1))


def weighted_map(weights: np.ndarray, activations: np.ndarray) -> np.ndarray:
    r"""``M_ij = Σ_k weights_k · A^k_ij``: (N, [C,] K) with (N, K, h, w) -> (N, [C,] h, w)."""
    if weights.ndim == 2:
        return np.einsum("nk,nkhw->nhw", weights, activations, optimize=True)
    return np.einsum("nck,nkhw->nchw", weights, activations, optimize=True)


# ------------------------------------------------------------------------- validation
def _check_model(model: Any) -> Sequential:
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be an npcam.Sequential, got {describe(model)}.")
    return model


def _check_score(score: Any) -> str:
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}.")
    return score


def _targets(target: Target, logits: np.ndarray, allow_all: bool) -> np.ndarray:
    """The class index per image, (N,) int64 — or (N, C) for ``"all"``."""
    n, num_classes = logits.shape
    if isinstance(target, str):
        if target != "all":
            raise ValueError(f"target must be None, an int, N ints or 'all', got {target!r}.")
        if not allow_all:
            raise ValueError(
                "target='all' is supported by cam, grad_cam and counterfactual; "
                "explain the classes one at a time here."
            )
        return np.broadcast_to(np.arange(num_classes), (n, num_classes)).copy()
    if target is None:
        return logits.argmax(axis=1)
    if isinstance(target, (bool, np.bool_)):
        raise TypeError(f"target must be None, an int, N ints or 'all', got {target!r}.")
    if isinstance(target, (int, np.integer)):
        if not 0 <= int(target) < num_classes:
            raise ValueError(f"target must be in [0, {num_classes}), got {int(target)}.")
        t = np.full(n, int(target), dtype=np.int64)
    else:
        arr = np.asarray(target)
        if arr.dtype.kind not in "iu" or arr.ndim != 1:
            raise TypeError(f"target must be None, an int, N ints or 'all', got {describe(target)}.")
        if arr.shape[0] != n:
            raise ValueError(f"target must give one class per image ({n}), got {arr.shape[0]}.")
        t = arr.astype(np.int64)
    if t.min() < 0 or t.max() >= num_classes:
        raise ValueError(f"target must be in [0, {num_classes}), got {t.tolist()}.")
    return t


def default_layer(model: Sequential) -> str:
    """DESIGN.md's rule for ``layer=None``: the last leaf before the first global
    pooling / flattening layer whose recorded output is a 4-D map with h·w > 1.
    Needs a forward pass first (it reads the recorded shapes)."""
    leaves = model.named_layers()
    end = next(
        (i for i, (_, leaf) in enumerate(leaves) if isinstance(leaf, (L.GlobalAvgPool2d, L.Flatten))),
        len(leaves),
    )
    for name, _ in reversed(leaves[:end]):
        a = model.activations.get(name)
        if a is not None and a.ndim == 4 and a.shape[2] * a.shape[3] > 1:
            return name
    raise ValueError(
        "layer is None but the model has no layer with a 4-D output of more than one "
        "position before its global pooling / flattening; name one with layer=..."
    )


def _resolve_layer(model: Sequential, layer: str | None) -> str:
    if layer is None:
        return default_layer(model)
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a layer name (str) or None, got {describe(layer)}.")
    model.leaf_index(layer)  # raises ValueError naming it when unknown
    a = model.activations[layer]
    if a.ndim != 4:
        raise ValueError(f"layer {layer!r} must output 4-D feature maps (N, K, h, w), got {a.shape}.")
    return layer


# ---------------------------------------------------------------------- score and seed
def _scores_and_seed(logits: np.ndarray, target: np.ndarray, score: str):
    r"""``y^c`` per row and its gradient w.r.t. the logits (the backward pass's seed).

    * logit: ``y = z_c``, seed ``e_c`` (one-hot);
    * softmax: ``y = p_c``, ``∂p_c/∂z_j = p_c([j = c] − p_j)``, seed ``p_c (e_c − p)``;
    * log_softmax: ``y = log p_c``, seed ``e_c − p``.
    """
    rows = np.arange(logits.shape[0])
    if score == "logit":
        onehot = np.zeros_like(logits)
        onehot[rows, target] = 1.0
        return logits[rows, target], onehot
    p = softmax(logits)
    # e_c − p, with its c-th entry 1 − p_c written as Σ_{j≠c} p_j: no cancellation when the
    # model is confident (p_c → 1), where 1 − p_c would round to 0.
    d = -p
    others = p.copy()
    others[rows, target] = 0.0
    d[rows, target] = others.sum(axis=1)
    if score == "softmax":
        pc = p[rows, target]
        return pc, pc[:, None] * d
    return log_softmax(logits)[rows, target], d


def _layer_gradients(model, x, target, layer, score, allow_all):
    """Forward, then ∂y^c/∂A at ``layer``: (layer name, A, gradients, scores, targets)."""
    model = _check_model(model)
    score = _check_score(score)
    logits = model.forward(x)
    name = _resolve_layer(model, layer)
    t = _targets(target, logits, allow_all)
    a = model.activations[name]
    if t.ndim == 1:
        y, seed = _scores_and_seed(logits, t, score)
        g = model.backward(seed, to=name, param_grads=False)
        return name, a, g, y, t
    # Every class at once: the head after `layer` runs once on N·C stacked copies of A,
    # and one backward pass carries N·C one-hot seeds (row n·C + c explains class c).
    n, c = t.shape
    saved = dict(model.activations)
    stacked = np.repeat(a, c, axis=0)
    logits_all = model.forward_from(name, stacked)
    y, seed = _scores_and_seed(logits_all, t.reshape(-1), score)
    g = model.backward(seed, to=name, param_grads=False)
    model.forward_from(name, a)  # leave the head's caches as a plain forward pass would
    model.activations = saved
    return name, a, g.reshape(n, c, *a.shape[1:]), y.reshape(n, c), t


def _result(weights, a, gradients, scores, target, name) -> CAMResult:
    raw = weighted_map(weights, a)
    return CAMResult(np.maximum(raw, 0.0), raw, weights, a, gradients, scores, target, name)


# ------------------------------------------------------------------------------ methods
def grad_cam(
    model: Sequential, x: np.ndarray, target: Target = None, layer: str | None = None,
    score: str = "logit",
) -> CAMResult:
    r"""Grad-CAM: ``L^c = ReLU(Σ_k α^c_k A^k)`` with ``α^c_k = (1/Z) Σ_ij ∂y^c/∂A^k_ij``.

    Works on any architecture. ``layer`` names the feature maps A (default: the last
    4-D map before global pooling / flattening). See the module docstring for ``target``
    and ``score``.
    """
    name, a, g, y, t = _layer_gradients(model, x, target, layer, score, allow_all=True)
    return _result(gradcam_weights(g), a, g, y, t, name)


def counterfactual(
    model: Sequential, x: np.ndarray, target: Target = None, layer: str | None = None,
    score: str = "logit",
) -> CAMResult:
    r"""The counterfactual explanation (§ 5): Grad-CAM with negated gradients.

    ``weights = −α^c``, ``raw = −M^c``, ``cam = ReLU(−M^c)``: the regions whose removal
    would raise y^c. ``gradients`` holds the un-negated ∂y^c/∂A, so that
    ``grad_cam(...).cam − counterfactual(...).cam == grad_cam(...).raw``.
    """
    name, a, g, y, t = _layer_gradients(model, x, target, layer, score, allow_all=True)
    return _result(-gradcam_weights(g), a, g, y, t, name)


def _cam_head(model: Sequential, name: str) -> L.Linear:
    """The Linear layer of an exact ``GAP → [Flatten] → Linear`` head after ``name``
    (Dropout, the identity at inference, may stand between); else ValueError."""
    after = [leaf for _, leaf in model.named_layers()[model.leaf_index(name) + 1 :]]
    kinds = [type(leaf) for leaf in after if not isinstance(leaf, L.Dropout)]
    if kinds in ([L.GlobalAvgPool2d, L.Linear], [L.GlobalAvgPool2d, L.Flatten, L.Linear]):
        return after[-1]  # type: ignore[return-value]
    found = " -> ".join(k.__name__ for k in kinds) or "nothing"
    raise ValueError(
        f"CAM needs layer {name!r} to be followed by exactly GlobalAvgPool2d -> [Flatten] -> "
        f"Linear, but it is followed by {found}; grad_cam works on any architecture."
    )


def cam(
    model: Sequential, x: np.ndarray, target: Target = None, layer: str | None = None
) -> CAMResult:
    r"""CAM (Zhou et al. 2016): ``M^c_ij = Σ_k w^c_k A^k_ij``, ``w^c`` the FC weight row.

    Only for models whose ``layer`` is followed by exactly GAP → [Flatten] → Linear.
    npcam's ``raw`` has no 1/Z: the seed document's M (with 1/Z inside) is ``raw / Z``,
    and ``y^c − b_c = (1/Z) Σ_ij raw_ij``. ``scores`` are the logits y^c.
    """
    model = _check_model(model)
    logits = model.forward(x)
    name = _resolve_layer(model, layer)
    fc = _cam_head(model, name)
    t = _targets(target, logits, allow_all=True)
    a = model.activations[name]
    w = fc.weight[t]  # (N, K) or (N, C, K): the class rows w^c
    y = np.take_along_axis(logits, t if t.ndim == 2 else t[:, None], axis=1)
    return _result(w, a, None, y if t.ndim == 2 else y[:, 0], t, name)


def _input_gradient(model, x, target, score, relu) -> np.ndarray:
    model = _check_model(model)
    score = _check_score(score)
    logits = model.forward(x)
    t = _targets(target, logits, allow_all=False)
    _, seed = _scores_and_seed(logits, t, score)
    return model.backward(seed, to=None, relu=relu, param_grads=False)


def saliency(
    model: Sequential, x: np.ndarray, target: Target = None, score: str = "logit"
) -> np.ndarray:
    r"""The plain input gradient ``∂y^c/∂x`` (Simonyan et al. 2014), (N, C, H, W)."""
    return _input_gradient(model, x, target, score, "standard")


def gradient_x_input(
    model: Sequential, x: np.ndarray, target: Target = None, score: str = "logit"
) -> np.ndarray:
    r"""``x ⊙ ∂y^c/∂x``, (N, C, H, W)."""
    return saliency(model, x, target, score) * model.input


def guided_backprop(
    model: Sequential, x: np.ndarray, target: Target = None, score: str = "logit"
) -> np.ndarray:
    r"""Guided backpropagation (Springenberg et al. 2014): ``∂y^c/∂x`` with every ReLU
    passing back ``g·[x > 0]·[g > 0]`` (only positive signal through active units);
    (N, C, H, W)."""
    return _input_gradient(model, x, target, score, "guided")


def deconvnet(
    model: Sequential, x: np.ndarray, target: Target = None, score: str = "logit"
) -> np.ndarray:
    r"""Deconvnet (Zeiler & Fergus 2014): ``∂y^c/∂x`` with every ReLU passing back
    ``ReLU(g)``, ignoring the forward activation; (N, C, H, W)."""
    return _input_gradient(model, x, target, score, "deconvnet")


def guided_grad_cam(
    model: Sequential, x: np.ndarray, target: Target = None, layer: str | None = None,
    mode: str = "bilinear", score: str = "logit",
) -> np.ndarray:
    r"""Guided Grad-CAM (§ 3.1): ``upsample(L^c_Grad-CAM to H×W) ⊙ guided backprop``,
    the map broadcast over the input channels; (N, C, H, W).

    ``mode`` is the upsampling (``"bilinear"`` with half-pixel centres, or
    ``"nearest"``, as :func:`npcam.upsample`).
    """
    if isinstance(target, str):
        _targets(target, np.zeros((1, 1)), allow_all=False)  # the same message as elsewhere
    r = grad_cam(model, x, target, layer, score)
    # grad_cam's forward pass is still cached: only the guided backward pass is new.
    logits = model.activations[model.named_layers()[-1][0]]
    _, seed = _scores_and_seed(logits, r.target, score)
    gb = model.backward(seed, to=None, relu="guided", param_grads=False)
    up = upsample(r.cam, gb.shape[2:], mode=mode)
    return up[:, None] * gb


# ------------------------------------------------------------------ the seed's proof
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
    model: Sequential, x: np.ndarray, target: Target = None, layer: str | None = None,
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
    z = int(c.activations.shape[2] * c.activations.shape[3])
    w_scale = max(float(np.abs(c.weights).max()), np.finfo(float).tiny)
    w_err = float(np.abs(z * g.weights - c.weights).max()) / w_scale
    terms = np.abs(weighted_map(np.abs(c.weights), np.abs(c.activations)))
    m_scale = max(float(terms.max()), np.finfo(float).tiny)
    m_err = float(np.abs(z * g.raw - c.raw).max()) / m_scale
    return CAMEquivalence(z, w_err, m_err, tolerance, bool(w_err <= tolerance and m_err <= tolerance))
