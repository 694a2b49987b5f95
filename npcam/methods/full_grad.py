r"""FullGrad (Srinivas & Fleuret, *Full-Gradient Representation for Neural Network
Visualization*, NeurIPS 2019, arXiv 1905.00780).

**The full-gradient decomposition.** A network built of affine maps and piecewise-linear
activations is, around x, an affine function of x and of every constant it adds. Euler's
theorem for this positively homogeneous function gives the paper's completeness identity
(§ 3, "full-gradients")::

    y^c = Σ_i x_i ∂y^c/∂x_i  +  Σ_l Σ_{z ∈ l} b_l(z) · ∂y^c/∂z            (completeness)
          └ input term ┘        └ bias terms f^b_l = b_l ⊙ ∂y^c/∂z_l ┘

z_l is the output of layer l and b_l the constant the layer adds at each output element.
npcam counts, at every node of the network that depends on x:

* ``Conv2d`` and ``Linear`` with a bias: b (per output channel / feature);
* ``BatchNorm2d`` in eval mode: its effective bias ``β − γ μ/σ``, σ = sqrt(var + ε) — the
  layer is ``y = (γ/σ)·x + (β − γμ/σ)`` (§ 3, and the official code's
  ``_extract_layer_bias``);
* ``AddConstant`` (b = its value) and ``Add``/``Sub``/``Concat`` with an operand that does
  not depend on x (a ``Parameter`` added to a feature map): b = the op applied with the
  x-dependent operands set to 0;
* the *implicit biases* of the clipped activations ``ReLU6``, ``Hardsigmoid`` and
  ``ClipAffine``: ``b = out − ReLU6'(z)·z`` etc., with the derivative the backward pass
  uses (6 where ReLU6 saturates at the top, 1/2 in Hardsigmoid's linear part, ...). These
  activations are piecewise *affine*, not piecewise linear: a saturated ReLU6 outputs the
  constant 6, whose gradient w.r.t. x is 0, so without this term the identity misses
  6·∂y^c/∂z there (0.4–1.8 % of y^c in the ReLU6 network of the tests, far above
  rounding).
  The paper's "implicit biases" of non-ReLU activations are these constants; the official
  code counts only Conv2d, Linear and BatchNorm2d (its README: "only ReLU-like functions
  are supported").

ReLU (out = [z > 0]·z), max- and average-pooling, ``Mean``/``Sum``, reshapes, permutes,
``Concat``/``Split``/``Index``/``Pad``, ``Dropout``/``Identity`` (eval), ``MulConstant``,
and ``Mul``/``Div`` by a tensor that does not depend on x are linear pieces and add
nothing. Anything else that depends on x — Sigmoid, SiLU, GELU, Hardswish, LayerNorm,
Erf, a BatchNorm2d in training mode, the product of two x-dependent tensors (a
squeeze-excitation gate), division by an x-dependent tensor, or a layer type npcam does
not know — makes the decomposition incomplete: :func:`full_grad` refuses it unless
``allow_nonlinear=True`` (``../shared/notes/torchvision-graphs.md`` § 4: MobileNetV3,
EfficientNet, RegNet and ConvNeXt are not piecewise linear; the other torchvision
classifiers are).

**The saliency map** (§ 4, the paper's FullGrad; the section numbers here are from the
paper as cam-family.md § 10 restates it, whose text could not be read in full)::

    S = ψ(∇ₓy^c ⊙ x) + Σ_{l} Σ_{c ∈ l} ψ(f^b_l,c)

with ψ = |·|, rescaled to [0, 1] and bilinearly upsampled to the input size, applied per
channel c of every *4-D* (conv-shaped) bias term, and per input channel to the input term;
the channels are summed. The rescaling comes before the upsampling, as in the official
code (the order does not change the range: bilinear weights are convex, so every ψ map
stays in [0, 1]). The 2-D bias terms (a Linear after global pooling) enter the
completeness identity but not S: they have no spatial position, and the official code
keeps only the terms whose rank is the image's ("Select only Conv layers").

Implementations differ in ψ (``../shared/notes/cam-family.md`` § 10):

* the paper: per channel;
* the official code (``idiap/fullgrad-saliency``, ``saliency/fullgrad.py``
  ``FullGrad._postProcess`` and ``saliency``, read at commit bf274a96): |·|, then
  ``(v − min)/(max − min + 1e-6)`` per image over *all channels of a layer jointly*, then
  ``F.interpolate(..., mode="bilinear", align_corners=True)``, then the sum over channels;
  the input term normalised jointly over its 3 channels — npcam's ``psi="per-layer"``;
* pytorch-grad-cam 1.5.7: per-channel min-max with ε 1e-7 and OpenCV's half-pixel resize,
  BN and Conv2d only, and a final min-max (:mod:`npcam.verify.conventions.full_grad`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validate import describe
from .._warnings import NpcamWarning
from ..image.resize import upsample
from ..nn.activations import GELU, Hardsigmoid, Hardswish, LayerNorm, ReLU6, Sigmoid, SiLU
from ..nn.layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    Linear,
    MaxPool2d,
    ReLU,
)
from ..nn.ops import (
    Add,
    AddConstant,
    ClipAffine,
    Concat,
    Div,
    Erf,
    Identity,
    Index,
    Mean,
    Mul,
    MulConstant,
    Pad,
    Permute,
    Reshape,
    Split,
    Sub,
    Sum,
    Transpose,
    Unsqueeze,
)
from ..nn.trace import Model, Trace
from ._core import CAMResult, Target, _to_nchw, check_input, check_model, nchw_view, targets
from .scores import check_score, scores_and_cotangent

__all__ = ["BIAS_PREFIX", "PSI", "bias_terms", "completeness_gap", "full_grad", "rescale_per_channel",
           "rescale_per_layer"]

#: The ψ normalisations: the paper's per channel, the official code's per layer.
PSI = ("per-channel", "per-layer")
#: ``extra`` key of the bias term of node ``name``: ``BIAS_PREFIX + name``.
BIAS_PREFIX = "bias:"
#: The official code's ``_postProcess(input, eps=1e-6)``.
OFFICIAL_EPS = 1e-6
#: A channel whose range is at most this fraction of its largest value is constant up to
#: rounding: the per-channel rescaling maps it to 0 (a 0/0 otherwise).
CONSTANT_RANGE = 1e-12

# Nodes that are linear in their x-dependent input(s) and add no constant.
_LINEAR = (
    ReLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, GlobalAvgPool2d, Flatten, Dropout, Identity,
    MulConstant, Mean, Sum, Permute, Transpose, Reshape, Unsqueeze, Index, Pad, Split,
)
# Affine ops whose constant operands (those not depending on x) are biases.
_MIXING = (Add, Sub, Concat)
# Piecewise-affine element-wise activations: their implicit bias is out − f'(z)·z.
_CLIPS = (ReLU6, Hardsigmoid, ClipAffine)
# Known not piecewise linear (anything unknown is refused too, with its own words).
_SMOOTH = (Sigmoid, SiLU, GELU, Hardswish, LayerNorm, Erf)


@dataclass(frozen=True)
class Decomposition:
    """The full-gradient decomposition of one forward/backward pass.

    ``input_grad`` ∂y^c/∂x; ``terms`` node name → ``b ⊙ ∂y^c/∂z`` at that node's output
    shape, in topological order; ``grads`` node name → ∂y^c/∂z for the same nodes;
    ``nonlinear`` the (node, reason) pairs that make it incomplete."""

    trace: Trace
    target: np.ndarray
    scores: np.ndarray
    input_grad: np.ndarray
    terms: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]
    nonlinear: list[tuple[str, str]]


def _base(name: str) -> str:
    return name.split(":")[0]


def _data_inputs(layer: Any, inputs: tuple[str, ...]) -> tuple[str, ...]:
    # Reshape's further inputs only lend their shape (no value, no gradient flows).
    return inputs[:1] if isinstance(layer, Reshape) else inputs


def _nonlinear_reason(layer: Any, dep: list[bool]) -> str | None:
    """Why a node depending on x is not piecewise linear in x, or None if it is."""
    if isinstance(layer, BatchNorm2d):
        return "a BatchNorm2d in training mode normalises by the batch statistics" if layer.training else None
    if isinstance(layer, (*_LINEAR, *_MIXING, *_CLIPS, Conv2d, Linear, AddConstant)):
        return None
    if isinstance(layer, Mul):
        return None if sum(dep) == 1 else "a product of two tensors that both depend on x"
    if isinstance(layer, Div):
        return None if dep == [True, False] else "a division by a tensor that depends on x"
    if isinstance(layer, _SMOOTH):
        return f"{type(layer).__name__} is not piecewise linear"
    return f"{type(layer).__name__} is not known to be piecewise linear"


_Live = list[tuple[str, Any, tuple[str, ...], list[bool]]]


def _analyse(model: Model) -> tuple[_Live, list[tuple[str, str]]]:
    """The nodes that depend on x and reach the logits, each with its data inputs and
    which of them depend on x; and the (node, reason) pairs of those that are not
    piecewise linear."""
    nodes = model.named_nodes()
    inputs = {name: _data_inputs(layer, tuple(model.inputs_of(name))) for name, layer in nodes}
    depends: dict[str, bool] = {"input": True}
    for name, _ in nodes:
        depends[name] = any(depends.get(_base(i), False) for i in inputs[name])
    reach = {model.output_name}
    for name, _ in reversed(nodes):
        if name in reach:
            reach.update(_base(i) for i in model.inputs_of(name))
    live: _Live = []
    bad: list[tuple[str, str]] = []
    for name, layer in nodes:
        if not (depends[name] and name in reach):
            continue
        dep = [depends.get(_base(i), False) for i in inputs[name]]
        live.append((name, layer, inputs[name], dep))
        why = _nonlinear_reason(layer, dep)
        if why is not None:
            bad.append((name, why))
    return live, bad


def _value(trace: Trace, name: str) -> np.ndarray:
    return trace.input if name == "input" else trace.activations[name]


def _bias(layer: Any, name: str, inputs: tuple[str, ...], dep: list[bool], trace: Trace) -> Any:
    """The constant b the node adds at each output element (broadcastable to its output),
    or None when it adds none."""
    if isinstance(layer, (Conv2d, Linear)):
        if layer.bias is None:
            return None
        return layer.bias[None, :, None, None] if isinstance(layer, Conv2d) else layer.bias
    if isinstance(layer, BatchNorm2d):
        # the forward pass's own affine form: y = a·x + (β − μ·a), a = γ/σ
        a = layer.weight * (1.0 / np.sqrt(layer.running_var + layer.eps))
        return (layer.bias - layer.running_mean * a)[None, :, None, None]
    if isinstance(layer, AddConstant):
        return layer.value
    if isinstance(layer, _CLIPS):
        z = _value(trace, inputs[0])
        out = trace.activations[name]
        slope = layer._backward(np.ones_like(out), trace.caches[name], "standard", False)[0]
        return out - slope * z  # the derivative the backward pass uses, kinks included
    if isinstance(layer, _MIXING) and not all(dep):
        parts = [np.zeros_like(_value(trace, i)) if d else _value(trace, i)
                 for i, d in zip(inputs, dep, strict=True)]
        return layer._forward_many(parts)[0]
    return None


def _check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {describe(value)}.")
    return bool(value)


def _nonlinear_message(bad: list[tuple[str, str]]) -> str:
    name, why = bad[0]
    more = f" (and {len(bad) - 1} more node(s): {', '.join(repr(n) for n, _ in bad[1:4])}" + (
        ", ...)" if len(bad) > 4 else ")") if len(bad) > 1 else ""
    return f"node {name!r} is not piecewise linear in x ({why}){more}"


def _decompose(model: Any, x: Any, target: Target, score: str, nonlinear: str) -> Decomposition:
    """One forward pass, one backward pass to the input recording every node's gradient,
    and the bias terms. ``nonlinear``: "raise" (ValueError), "warn" (NpcamWarning at the
    caller of full_grad) or "ignore" (the library conventions, which check nothing)."""
    model = check_model(model)
    score = check_score(score)
    x = check_input(x)
    if x.ndim != 4:
        raise ValueError(f"x must be a batch of images (N, C, H, W) for FullGrad's input-resolution map, "
                         f"got shape {x.shape}.")
    live, bad = _analyse(model)
    if bad and nonlinear == "raise":
        raise ValueError(
            f"full_grad's decomposition is complete only for piecewise-linear networks, but "
            f"{_nonlinear_message(bad)}; pass allow_nonlinear=True to compute it anyway."
        )
    if bad and nonlinear == "warn":
        warnings.warn(
            f"the full-gradient decomposition is not complete: {_nonlinear_message(bad)}, so "
            "input_term and the bias terms do not add up to y^c (completeness_gap gives by how much).",
            NpcamWarning,
            stacklevel=3,
        )
    trace = model.run(x)
    t = targets(target, trace.output, allow_all=False)
    y, seed = scores_and_cotangent(trace.output, t, score)
    back = model.vjp(trace, seed, record=True)
    node_grads = back.node_grads or {}
    terms: dict[str, np.ndarray] = {}
    grads: dict[str, np.ndarray] = {}
    with np.errstate(all="ignore"):  # overflow is checked below, once
        for name, layer, inputs, dep in live:
            b = _bias(layer, name, inputs, dep, trace)
            if b is None:
                continue
            out = trace.activations[name]
            g = node_grads.get(name)
            g = np.zeros_like(out) if g is None else g  # no path to the logits: ∂y^c/∂z = 0
            grads[name] = g
            term = b * g
            terms[name] = term if term.shape == out.shape else np.broadcast_to(term, out.shape).copy()
    if not all(np.isfinite(v).all() for v in terms.values()):
        raise ValueError("the bias terms b ⊙ ∂y^c/∂z overflowed although the gradients are finite; "
                         "the biases or the gradients are too large for float64.")
    return Decomposition(trace, t, y, back.grad, terms, grads, bad)


# ---------------------------------------------------------------------------- ψ
def rescale_per_channel(v: np.ndarray) -> np.ndarray:
    """The paper's rescaling to [0, 1] of every map ``v[n, k]`` (N, K, h, w):
    ``(v − min)/(max − min)``, and 0 for a map that is constant up to rounding (range at
    most :data:`CONSTANT_RANGE` of its largest magnitude): the paper defines no value for
    0/0, and amplifying rounding noise to [0, 1] would show nothing."""
    lo = v.min(axis=(-2, -1), keepdims=True)
    hi = v.max(axis=(-2, -1), keepdims=True)
    span = hi - lo
    flat = span <= CONSTANT_RANGE * np.maximum(np.abs(hi), np.abs(lo))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (v - lo) / np.where(flat, 1.0, span)
    return np.where(flat, 0.0, out)


def rescale_per_layer(v: np.ndarray, eps: float = OFFICIAL_EPS) -> np.ndarray:
    """The official code's ``_postProcess`` after its ``abs``: per image, over all channels
    and positions jointly, ``v − min`` then ``/ (max + eps)`` of the shifted values."""
    axes = tuple(range(1, v.ndim))
    shifted = v - v.min(axis=axes, keepdims=True)
    return shifted / (shifted.max(axis=axes, keepdims=True) + eps)


def _psi(v: np.ndarray, psi: str) -> np.ndarray:
    """ψ before the resize, summed over channels: (N, K, h, w) -> (N, h, w)."""
    a = np.abs(v)
    return (rescale_per_channel(a) if psi == "per-channel" else rescale_per_layer(a)).sum(axis=1)


def full_grad(
    model: Any,
    x: Any,
    target: Target = None,
    layer: str | None = None,
    *,
    score: str = "logit",
    psi: str = "per-channel",
    align_corners: bool = True,
    allow_nonlinear: bool = False,
) -> CAMResult:
    r"""FullGrad: ``S = ψ(∇ₓy^c ⊙ x) + Σ_l Σ_{c∈l} ψ(f^b_l,c)``, ``f^b_l = b_l ⊙ ∂y^c/∂z_l``.

    One forward pass and one backward pass to the input that records ∂y^c/∂z at every
    node; the bias terms are the products of each node's constant b (module docstring:
    Conv2d/Linear biases, BatchNorm2d's effective bias β − γμ/σ, constants added by
    ``AddConstant``/``Add``/``Sub``/``Concat``, and the implicit biases of ReLU6,
    Hardsigmoid and ClipAffine) with that gradient. For a piecewise-linear network
    (ReLU, max-pool, BN in eval mode, ...) they satisfy the paper's completeness (§ 3)::

        Σ x ⊙ ∇ₓy^c + Σ_l Σ b_l ⊙ ∂y^c/∂z_l = y^c     (see :func:`completeness_gap`)

    Parameters
    ----------
    model : npcam.nn.Model
        :class:`npcam.Sequential` or :class:`npcam.Graph`.
    x : array_like, (N, C, H, W)
        The input batch; (N, H, W, C) for a graph that reads its input channels-last
        (:meth:`npcam.Graph.channels_last_input`), which is explained in its NCHW form.
    target : None, int or N ints
        None: the predicted class per image. ``"all"`` is refused (one backward pass to
        the input per class would be needed).
    layer : None
        FullGrad uses every layer; any other value is a ``ValueError``.
    score : {"logit", "softmax", "log_softmax"}
        The scalar y^c; the paper decomposes the network output, the logit (default).
        With another score the terms are those of ``Σ_k s_k z_k`` with ``s = ∂y^c/∂z``
        (the logits z are what the network computes affinely), not of y^c.
    psi : {"per-channel", "per-layer"}
        ψ's rescaling to [0, 1]: ``"per-channel"`` (default, the paper, § 4: ψ per
        channel c ∈ l; every input channel separately) is ``(v − min)/(max − min)`` of
        each channel's |f^b_c| map, 0 for a channel constant up to rounding
        (:func:`rescale_per_channel`); ``"per-layer"`` is the official code's
        ``_postProcess``: ``(v − min)/(max − min + 1e-6)`` per image over all channels of a
        layer jointly (and over the 3 input channels jointly).
    align_corners : bool
        The bilinear upsampling of each layer's map to (H, W): True (default, the
        official code's ``F.interpolate(..., align_corners=True)``; the paper says only
        "bilinear") aligns the corner pixels; False uses half-pixel centres
        (:func:`npcam.upsample`'s default). ψ rescales at the layer's resolution, then
        upsamples, as the official code does, so every ψ map lies in [0, 1].
    allow_nonlinear : bool
        False (default): a network with a node that depends on x and is not piecewise
        linear (Sigmoid, SiLU, GELU, Hardswish, LayerNorm, Erf, an SE product, a
        BatchNorm2d in training mode, an unknown layer) raises ``ValueError`` naming it,
        since the decomposition would not be complete. True computes the same quantities
        anyway and warns (``NpcamWarning``) that they do not add up to y^c.

    Returns
    -------
    CAMResult
        ``raw`` = ``cam`` = S, (N, H, W), ≥ 0 (so ReLU(raw) = raw), not normalised (it
        lies in [0, C + Σ_l K_l]); ``weights``, ``activations``, ``gradients`` None;
        ``scores`` y^c; ``target``; ``layer`` None. ``extra["input_term"]`` (N, C, H, W)
        (in ``x``'s layout) is ``x ⊙ ∂y^c/∂x`` and ``extra["bias:" + node]`` the bias term ``b ⊙ ∂y^c/∂z`` of
        every node that adds a constant, at that node's output shape (a Linear's is
        (N, out)), before ψ and resizing: a flat key per node because ``extra`` maps names
        to arrays (:data:`BIAS_PREFIX`); :func:`bias_terms` gives them as the mapping
        layer name → term. A node with no path to the logits has a zero term.

    Raises
    ------
    ValueError
        ``layer`` not None; ``target="all"``; x not 4-D; a bad ``psi``; a network that is
        not piecewise linear without ``allow_nonlinear``.
    TypeError
        ``align_corners`` or ``allow_nonlinear`` not a bool.

    Warns
    -----
    NpcamWarning
        With ``allow_nonlinear=True`` on a network that is not piecewise linear.

    Notes
    -----
    Only 4-D (conv-shaped) bias terms enter S, in NCHW order (a graph's channels-last
    terms are transposed first); the 2-D terms of Linear layers after global pooling
    enter completeness only, as in the official code. npcam's S also holds the 4-D implicit
    biases (ReLU6, Hardsigmoid, ClipAffine) and added constants that the official code
    and pytorch-grad-cam ignore; on networks of Conv2d, BatchNorm2d, Linear, ReLU and
    pooling (VGG, ResNet) the set of terms is theirs.
    """
    if layer is not None:
        raise ValueError(f"layer must be None for FullGrad, which uses every layer's bias, got {layer!r}.")
    if not isinstance(psi, str) or psi not in PSI:
        raise ValueError(f"psi must be one of {PSI}, got {psi!r}.")
    corners = _check_flag("align_corners", align_corners)
    allow = _check_flag("allow_nonlinear", allow_nonlinear)
    # a channels-last graph runs in its NCHW form: ψ sums the input term over channels
    model, x, transposed = nchw_view(model, x)
    d = _decompose(model, x, target, score, "warn" if allow else "raise")
    x_arr = d.trace.input
    size = x_arr.shape[2:]
    input_term = x_arr * d.input_grad
    with np.errstate(all="ignore"):
        saliency = _psi(input_term, psi)
        for name, term in d.terms.items():
            if term.ndim != 4:
                continue
            maps = _psi(_to_nchw(model, name, term)(term), psi)
            # Σ_c up(ψ_c) = up(Σ_c ψ_c): the resize is linear, so one resize per layer
            saliency = saliency + upsample(maps, size, "bilinear", corners)
    if transposed:  # the input term in the layout of the user's x
        input_term = np.ascontiguousarray(np.transpose(input_term, (0, 2, 3, 1)))
    extra: dict[str, np.ndarray] = {"input_term": input_term}
    extra.update({BIAS_PREFIX + name: term for name, term in d.terms.items()})
    return CAMResult(np.maximum(saliency, 0.0), saliency, None, None, None, d.scores, d.target, None, extra)


def bias_terms(result: CAMResult) -> dict[str, np.ndarray]:
    r"""The bias terms of a :func:`full_grad` result as a mapping layer name →
    ``b_l ⊙ ∂y^c/∂z_l`` at that layer's output shape (unprocessed: before ψ and resizing),
    in the graph's order — the ``extra["bias:" + name]`` entries without their prefix::

        r = npcam.full_grad(model, x)
        terms = npcam.methods.full_grad.bias_terms(r)      # {"features.0": (N, K, h, w), ...}
        # completeness: Σ input_term + Σ_l Σ terms[l] = y^c per image

    The arrays are those of ``result.extra`` (read-only views, not copies).
    """
    _check_result(result)
    return {key[len(BIAS_PREFIX):]: term for key, term in result.extra.items()
            if key.startswith(BIAS_PREFIX)}


def _check_result(result: Any) -> None:
    if not isinstance(result, CAMResult) or "input_term" not in result.extra:
        raise TypeError(f"result must be the CAMResult of full_grad, got {describe(result)}.")


def completeness_gap(result: CAMResult) -> np.ndarray:
    r"""``y^c − (Σ x ⊙ ∇ₓy^c + Σ_l Σ b_l ⊙ ∂y^c/∂z_l)`` per image, (N,), from a
    :func:`full_grad` result's ``extra``: 0 up to rounding for a piecewise-linear network
    and ``score="logit"`` (the paper's completeness). Compare it with the scale
    ``Σ |terms|``::

        r = npcam.full_grad(model, x)
        gap = npcam.methods.full_grad.completeness_gap(r)     # ~1e-16 · Σ|terms|
    """
    _check_result(result)
    n = result.scores.shape[0]
    total = result.extra["input_term"].reshape(n, -1).sum(axis=1)
    for term in bias_terms(result).values():
        total = total + term.reshape(n, -1).sum(axis=1)
    return result.scores - total
