r"""The bugs :func:`npcam.verify.diagnose` knows, each one small function of npcam's arrays.

An implementation of Grad-CAM computes, in this order (Selvaraju et al., arXiv
1610.02391v4, eqs. 1–2)::

    logits z = f(x)          y^c = z_c            G = ∂y^c/∂A        (A: the layer's output)
    α^c_k = (1/Z) Σ_ij G^k_ij                     M^c = Σ_k α^c_k A^k
    L^c = ReLU(M^c)          upsampled (bilinear, half-pixel)   min-max normalised

and a bug changes one step. Each function below is that one changed step, written so
that it can be read next to the correct one: ``alpha_sum(g)`` is the sum where eq. 1 has
the mean, ``no_relu(m)`` skips eq. 2's ReLU, and so on. :data:`BUGS` lists them under
their fixed names with a one-sentence description (format fields such as ``{Z}`` are
filled in by the diagnosis) and the *setting* of the computation each one changes
(:class:`Setup`): two bugs combine (``a+b``) when they change different settings.

The functions take and return NumPy arrays in npcam's layouts (A and G (N, K, h, w), α
(N, K), maps (N, h, w)); none of them is used by npcam's methods, which stay the paper's
formulas. Each is tested on a constructed case in ``tests/verify/test_hypotheses.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from ..image import normalize, upsample
from .resizers import opencv_resize_linear

__all__ = [
    "BUGS",
    "Bug",
    "EPSILONS",
    "Setup",
    "alpha_mean",
    "alpha_sum",
    "batch_mean_alpha",
    "channels_last",
    "counterfactual_map",
    "counterfactual_relu_alpha",
    "counterfactual_sign",
    "cam_over_z",
    "minmax",
    "normalize_before_resize",
    "normalize_with_epsilon",
    "normalize_without_min",
    "no_relu",
    "prob_then_log_cotangent",
    "relu",
    "relu_on_alpha",
    "relu_on_gradients",
    "resize",
    "sum_of_logits_cotangent",
    "target_first_argmax",
    "target_off_by_one",
    "transposed_map",
]

#: The ε values tried by the ``epsilon:<value>`` hypotheses (besides one estimated from
#: the data): those found in the libraries (1e-7 pytorch-grad-cam, 1e-8 torchcam, 1e-5 …)
#: and their neighbours.
EPSILONS = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10)


# ------------------------------------------------------------------ the correct steps
def relu(m: np.ndarray) -> np.ndarray:
    """eq. 2's ReLU, ``max(m, 0)``."""
    return np.maximum(m, 0.0)


def alpha_mean(g: np.ndarray) -> np.ndarray:
    r"""eq. 1: ``α_k = (1/Z) Σ_ij G^k_ij``, (N, K, h, w) -> (N, K)."""
    return g.mean(axis=(-2, -1))


def minmax(u: np.ndarray) -> np.ndarray:
    """``(u − min u) / (max u − min u)`` per map (0 for a constant map): :func:`npcam.normalize`."""
    return normalize(u)


# ------------------------------------------------------------------------- the bugs
def alpha_sum(g: np.ndarray) -> np.ndarray:
    r"""``alpha-sum``: ``Σ_ij G^k_ij`` without the 1/Z of eq. 1 — α, and the map, × Z."""
    return g.sum(axis=(-2, -1))


def relu_on_gradients(g: np.ndarray) -> np.ndarray:
    """``relu-on-gradients``: ``max(G, 0)`` before averaging (a guided-backprop habit)."""
    return np.maximum(g, 0.0)


def relu_on_alpha(alpha: np.ndarray) -> np.ndarray:
    """``relu-on-alpha``: ``max(α, 0)``: channels of negative importance dropped."""
    return np.maximum(alpha, 0.0)


def batch_mean_alpha(alpha: np.ndarray) -> np.ndarray:
    """``batch-mean-alpha``: α averaged over the images too (a ``mean(dim=(0, 2, 3))``):
    every image gets the batch's mean α, (N, K) -> (N, K)."""
    return np.broadcast_to(alpha.mean(axis=0, keepdims=True), alpha.shape).copy()


def channels_last(a: np.ndarray) -> np.ndarray:
    """``channels-last``: an NCHW array's memory read as (N, h, w, K) — a ``view`` or
    ``reshape`` where a ``permute`` was needed — returned in NCHW order again, so that the
    rest of the computation is unchanged: ``a.reshape(N, h, w, K).transpose(0, 3, 1, 2)``."""
    n, k, h, w = a.shape
    return np.ascontiguousarray(a).reshape(n, h, w, k).transpose(0, 3, 1, 2)


def cam_over_z(m: np.ndarray) -> np.ndarray:
    """``cam-over-z``: the seed document's M^c with the 1/Z inside: the map ÷ Z (h·w)."""
    return m / (m.shape[-2] * m.shape[-1])


def no_relu(m: np.ndarray) -> np.ndarray:
    """``no-relu``: the map returned without eq. 2's ReLU (signed)."""
    return m


def transposed_map(m: np.ndarray) -> np.ndarray:
    """``transposed-map``: h and w swapped, (N, h, w) -> (N, w, h) (a ``permute(0, 3, 2,
    1)`` where ``(0, 2, 3, 1)`` was meant, or ``.T`` on each map)."""
    return np.swapaxes(m, -2, -1)


def resize(m: np.ndarray, size: tuple[int, int], rule: str) -> np.ndarray:
    """The map resized to ``size`` under ``rule``: ``"bilinear"`` (npcam, =
    ``F.interpolate(..., "bilinear", align_corners=False)``), ``"nearest"``
    (``nearest-upsampling``, torch's legacy nearest index rule), ``"align-corners"``
    (``align-corners``: bilinear with ``align_corners=True``) or ``"opencv"``
    (``opencv-resize``: ``cv2.resize`` INTER_LINEAR of a float32 map, float32 result)."""
    if rule == "bilinear":
        return upsample(m, size)
    if rule == "nearest":
        return upsample(m, size, mode="nearest")
    if rule == "align-corners":
        return upsample(m, size, align_corners=True)
    if rule == "opencv":
        return opencv_resize_linear(m.astype(np.float32), size)
    raise ValueError(f"rule must be bilinear, nearest, align-corners or opencv, got {rule!r}.")


def normalize_before_resize(m: np.ndarray, size: tuple[int, int], rule: str = "bilinear") -> np.ndarray:
    """``normalize-before-resize``: min-max normalisation at the layer's resolution, then
    the resize (bilinear interpolation does not keep the min and max, so the order
    matters)."""
    return resize(minmax(m), size, rule)


def normalize_without_min(u: np.ndarray) -> np.ndarray:
    """``normalize-without-min``: ``u / max u`` per map (0 where max u = 0), not
    ``(u − min u) / (max u − min u)``."""
    hi = u.max(axis=(-2, -1), keepdims=True)
    out = np.zeros_like(u, dtype=np.float64)
    np.divide(u, hi, out=out, where=np.broadcast_to(hi != 0, u.shape))
    return out


def normalize_with_epsilon(u: np.ndarray, eps: float, subtract_min: bool = True) -> np.ndarray:
    """``epsilon:<value>``: ``(u − min u) / (max u − min u + ε)`` (or ``u / (max u + ε)``
    when the min is not subtracted): the ε many libraries add to the normaliser."""
    lo = u.min(axis=(-2, -1), keepdims=True) if subtract_min else 0.0
    hi = u.max(axis=(-2, -1), keepdims=True)
    with np.errstate(all="ignore"):
        return (u - lo) / (hi - lo + eps)


def target_first_argmax(target: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """``target-first-argmax``: every image's class = image 0's predicted class (an
    ``argmax()`` over the flattened batch, or ``argmax(dim=1)[0]`` used for all)."""
    return np.full_like(target, int(logits[0].argmax()))


def target_off_by_one(target: np.ndarray, num_classes: int, step: int) -> np.ndarray:
    """``target-off-by-one``: c + ``step`` (±1), modulo the number of classes as a
    negative index wraps in Python (c − 1 = −1 selects the last class)."""
    return (target + step) % num_classes


def sum_of_logits_cotangent(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sum-of-logits``: ``(y, cotangent)`` of ``y = Σ_c z_c`` (``output.sum().backward()``
    instead of ``output[:, c]``): the cotangent is all ones."""
    return logits.sum(axis=1), np.ones_like(logits)


def prob_then_log_cotangent(logits: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""``prob-then-log-score``: ``y = log(softmax(z)_c)`` computed in two steps, as autograd
    does for ``torch.log(F.softmax(z, 1))[:, c]``: the cotangent is ``(1/p_c) · p_c (e_c −
    p)``, which equals the log-softmax's ``e_c − p`` except where p_c underflows to 0:
    there y = −inf and the cotangent is NaN (0 · inf), as in torch."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=1, keepdims=True)
    rows = np.arange(len(target))
    pc = p[rows, target]
    onehot = np.zeros_like(p)
    onehot[rows, target] = 1.0
    with np.errstate(all="ignore"):
        y = np.log(pc)
        cot = (1.0 / pc)[:, None] * (pc[:, None] * (onehot - p))
    return y, cot


def counterfactual_map(raw: np.ndarray) -> np.ndarray:
    """The counterfactual map of § 5 (the correct one): ``ReLU(−M^c)``."""
    return np.maximum(-raw, 0.0)


def counterfactual_relu_alpha(alpha: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``counterfactual-relu-alpha``: the counterfactual weighted by ``ReLU(−α)`` instead
    of ``−α`` (the negative channels only), ``ReLU(Σ_k max(−α_k, 0) A^k)``."""
    return np.maximum(np.einsum("nk,nkhw->nhw", np.maximum(-alpha, 0.0), a), 0.0)


def counterfactual_sign(raw: np.ndarray) -> np.ndarray:
    """``counterfactual-sign``: the negation left out (or applied twice): ``ReLU(M^c)``,
    the Grad-CAM map itself."""
    return np.maximum(raw, 0.0)


# -------------------------------------------------------------------- the settings
@dataclass(frozen=True)
class Setup:
    """How one implementation computes, setting by setting; the default is npcam's (the
    paper's). A bug changes one field; :func:`npcam.verify.diagnose` recomputes every
    quantity under the changed setup."""

    score: str = "logit"  #: logit, softmax, log_softmax, prob-then-log, sum-of-logits
    target: str = "given"  #: given, first-argmax, minus-one, plus-one
    layer: str = "named"  #: named, earlier, later, pre-relu, pre-add
    grad_at: str = "output"  #: output, input (the layer's input)
    inplace: bool = False  #: activations read after the next in-place ReLU
    train: bool = False  #: BatchNorm on batch statistics
    channels_last: bool = False
    relu_gradients: bool = False
    alpha: str = "mean"  #: mean, sum
    batch_mean: bool = False
    relu_alpha: bool = False
    over_z: bool = False
    relu: bool = True  #: eq. 2's ReLU
    transposed: bool = False
    resize: str = "bilinear"  #: bilinear, nearest, align-corners, opencv
    normalize: str = "minmax"  #: minmax, before-resize, without-min
    epsilon: float = 0.0
    counterfactual: str = "negate"  #: negate, relu-alpha, sign
    relu_rule: str | None = None  #: None: the quantity's own rule; else standard/guided/deconvnet
    float32: bool = False
    convention: str | None = None  #: "lib[:option=value]" (the library's whole post-processing)

    def changed(self) -> set[str]:
        """The fields that differ from npcam's setup."""
        base = Setup()
        return {f.name for f in fields(self) if getattr(self, f.name) != getattr(base, f.name)}

    def forward_key(self) -> tuple[Any, ...]:
        """The fields that decide A, G, y and the input gradients (one backward pass each)."""
        return (self.score, self.target, self.layer, self.grad_at, self.inplace, self.train,
                self.relu_rule)


@dataclass(frozen=True)
class Bug:
    """One named hypothesis: ``changes`` applied to :class:`Setup`; ``quantities`` those it
    can change; ``description`` one sentence with format fields filled by the diagnosis
    (``{Z}``, ``{h}``, ``{w}``, ``{layer}``, ``{other}``, ``{classes}``)."""

    name: str
    description: str
    changes: tuple[tuple[str, Any], ...]
    quantities: frozenset[str]

    def apply(self, setup: Setup) -> Setup:
        return replace(setup, **dict(self.changes))

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(k for k, _ in self.changes)


_SCORES = frozenset({"scores", "gradients", "alpha", "raw", "cam", "cam_upsampled", "cam_normalized",
                     "counterfactual", "saliency", "guided_backprop", "deconvnet", "guided_grad_cam"})
_LAYER = frozenset({"activations", "gradients", "alpha", "raw", "cam", "cam_upsampled",
                    "cam_normalized", "counterfactual", "guided_grad_cam"})
_ALPHA = frozenset({"alpha", "raw", "cam", "cam_upsampled", "cam_normalized", "counterfactual",
                    "guided_grad_cam"})
_MAP = _ALPHA - {"alpha"}
_UP = frozenset({"cam_upsampled", "cam_normalized", "guided_grad_cam"})
_GUIDED = frozenset({"guided_backprop", "guided_grad_cam"})
_ALL = _SCORES | {"logits", "activations"}


def _bug(name: str, description: str, quantities: frozenset[str], **changes: Any) -> Bug:
    return Bug(name, description, tuple(changes.items()), quantities)


#: Every named bug, in the order of the issue's table (a combination is written in this
#: order, ``alpha-sum+no-relu``). ``epsilon:<value>`` and ``convention:<name>`` are
#: generated by the diagnosis; ``float32`` is the reference at float32 precision.
BUGS: tuple[Bug, ...] = (
    _bug("alpha-sum", "α is summed over the {h}×{w} positions instead of averaged: the map is "
         "exactly Z = {Z} times npcam's", _ALPHA, alpha="sum"),
    _bug("no-relu", "the map is returned without the final ReLU of eq. 2 (signed)",
         _MAP - {"alpha", "raw"}, relu=False),
    _bug("relu-on-gradients", "a ReLU is applied to ∂y^c/∂A before averaging", _ALPHA,
         relu_gradients=True),
    _bug("relu-on-alpha", "a ReLU is applied to α (channels of negative weight dropped)", _ALPHA,
         relu_alpha=True),
    _bug("softmax-score", "y^c is the softmax probability, not the logit", _SCORES, score="softmax"),
    _bug("log-softmax-score", "y^c is the log-softmax, not the logit", _SCORES, score="log_softmax"),
    _bug("prob-then-log-score", "y^c is log(softmax(z)_c) computed in two steps (the log-softmax, "
         "except where p_c underflows)", _SCORES, score="prob-then-log"),
    _bug("sum-of-logits", "the backward pass is seeded with every logit (Σ_c z_c), not y^c",
         _SCORES, score="sum-of-logits"),
    _bug("target-first-argmax", "every image is explained for image 0's predicted class {other}",
         _SCORES, target="first-argmax"),
    _bug("target-off-by-one", "the target class is c − 1 (a negative index wraps to the last "
         "class)", _SCORES, target="minus-one"),
    _bug("target-off-by-one", "the target class is c + 1 (modulo the {classes} classes)", _SCORES,
         target="plus-one"),
    _bug("layer-earlier", "A and ∂y^c/∂A are taken at {other}, the node before {layer}", _LAYER,
         layer="earlier"),
    _bug("layer-later", "A and ∂y^c/∂A are taken at {other}, the node after {layer}", _LAYER,
         layer="later"),
    _bug("pre-relu-layer", "A and ∂y^c/∂A are taken at {other}, the conv or BatchNorm before the "
         "ReLU {layer}", _LAYER, layer="pre-relu"),
    _bug("pre-add-layer", "A and ∂y^c/∂A are taken at {other}, the residual branch's last node "
         "before the add that {layer} follows", _LAYER, layer="pre-add"),
    _bug("input-gradient", "∂y^c/∂A is taken with respect to the input of {layer} ({other}), not "
         "its output", _LAYER - {"activations"}, grad_at="input"),
    _bug("inplace-activations", "A is read after the in-place {other} that follows {layer} "
         "overwrote it (∂y^c/∂A is right)", _LAYER - {"gradients"}, inplace=True),
    _bug("batch-mean-alpha", "α is averaged over the images of the batch as well", _ALPHA,
         batch_mean=True),
    _bug("channels-last", "A and ∂y^c/∂A, stored (N, K, h, w), are read as (N, h, w, K) (a view or "
         "reshape where a permute was needed)", _ALPHA, channels_last=True),
    _bug("transposed-map", "the map has h and w swapped ({w}×{h} instead of {h}×{w})",
         _MAP - {"guided_grad_cam"}, transposed=True),
    _bug("nearest-upsampling", "the map is upsampled with nearest instead of bilinear "
         "interpolation", _UP, resize="nearest"),
    _bug("align-corners", "the map is upsampled bilinearly with align_corners=True instead of "
         "half-pixel centres", _UP, resize="align-corners"),
    _bug("opencv-resize", "the map is resized with OpenCV's cv2.resize (float32) instead of torch's "
         "pixel rule", _UP, resize="opencv"),
    _bug("normalize-before-resize", "the map is min-max normalised before upsampling instead of "
         "after", frozenset({"cam_normalized"}), normalize="before-resize"),
    _bug("normalize-without-min", "the map is divided by its max without subtracting its min",
         frozenset({"cam_normalized"}), normalize="without-min"),
    _bug("counterfactual-relu-alpha", "the counterfactual is weighted by ReLU(−α) instead of −α",
         frozenset({"counterfactual"}), counterfactual="relu-alpha"),
    _bug("counterfactual-sign", "the counterfactual lacks its negation (or negates twice): it is "
         "the Grad-CAM map itself", frozenset({"counterfactual"}), counterfactual="sign"),
    _bug("deconvnet-rule", "guided backprop uses the deconvnet ReLU rule dx = dy·[dy > 0] (no "
         "forward mask)", _GUIDED, relu_rule="deconvnet"),
    _bug("standard-rule", "guided backprop uses the standard ReLU backward dx = dy·[x > 0] (no "
         "backward mask)", _GUIDED, relu_rule="standard"),
    _bug("cam-over-z", "the map has the seed document's 1/Z inside: it is npcam's ÷ Z = {Z}", _MAP,
         over_z=True),
    _bug("train-mode", "the model ran in training mode (BatchNorm on the batch's statistics)", _ALL,
         train=True),
)

#: The order of the names (the issue's table), for writing a combination ``a+b``.
ORDER: tuple[str, ...] = (
    "alpha-sum", "no-relu", "relu-on-gradients", "relu-on-alpha", "softmax-score",
    "log-softmax-score", "prob-then-log-score", "sum-of-logits", "target-first-argmax",
    "target-off-by-one", "layer-earlier", "layer-later", "pre-relu-layer", "pre-add-layer",
    "input-gradient", "inplace-activations", "batch-mean-alpha", "channels-last",
    "transposed-map", "nearest-upsampling", "align-corners", "opencv-resize",
    "normalize-before-resize", "normalize-without-min", "epsilon", "float32",
    "counterfactual-relu-alpha", "counterfactual-sign", "deconvnet-rule", "standard-rule",
    "cam-over-z", "train-mode", "convention",
)
