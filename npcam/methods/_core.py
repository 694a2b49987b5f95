r"""What every explanation method shares: targets, the default layer, the map, the records.

All class-activation methods share one map (Selvaraju et al. 2017, eq. 2; Zhou et al.
2016)::

    M^c_ij = Σ_k weights_k · A^k_ij          (``raw``)
    L^c    = ReLU(M^c)                        (``cam``)

and differ only in where ``weights`` come from. A gradient-based layer method starts from
:class:`LayerGradients` — ``A^k``, ``∂y^c/∂A^k``, ``y^c`` and ``c`` at one layer, and the
trace they came from — computed by :func:`layer_gradients` from one forward and one
backward pass of any model that implements :class:`npcam.nn.Model`.

``target``: None → the predicted class (argmax of the logits) per image; an int → the
same class for every image; a sequence of N ints → one per image; ``"all"`` (the methods
with ``supports_all_targets``) → every class, with a class axis after N in every
per-target field, computed from one forward pass and one backward pass through the layers
after ``layer`` with the N·C one-hot cotangents stacked along the batch axis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

import numpy as np

from .._validate import as_float_array, describe
from ..nn.layers import Dropout, Flatten, GlobalAvgPool2d
from ..nn.trace import Model, Trace, all_finite
from .scores import check_score, scores_and_cotangent

__all__ = [
    "CAMResult",
    "LayerActivations",
    "LayerGradients",
    "Target",
    "check_model",
    "default_layer",
    "elementwise_result",
    "layer_activations",
    "layer_gradients",
    "map_result",
    "resolve_layer",
    "targets",
    "weighted_map",
]

Target = int | Sequence[int] | np.ndarray | str | None


def _summary(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"<{value.dtype} {value.shape}>"
    if isinstance(value, Trace):
        return "Trace(...)"
    return repr(value)


def _no_extra() -> Mapping[str, np.ndarray]:
    return MappingProxyType({})


@dataclass(frozen=True, repr=False)
class CAMResult:
    """Everything a class-activation method computed, as named arrays.

    Shapes are for one target per image; with ``target="all"`` a class axis C follows N
    in ``cam``, ``raw``, ``weights``, ``gradients``, ``scores``, ``target`` and every
    per-target entry of ``extra``.

    ``weights`` is (N, K) for the "α over A" methods (CAM, Grad-CAM, Grad-CAM++,
    Score-CAM, ...) and (N, K, h, w) for the element-wise ones (HiResCAM, LayerCAM, ...),
    whose ``raw`` is ``Σ_k weights ⊙ A``. ``extra`` holds a method's own intermediates
    (Grad-CAM++'s α^kc_ij, Score-CAM's masked scores, ...; empty for Grad-CAM), read-only.
    FullGrad's ``cam`` and ``raw`` are at input resolution and its ``weights``,
    ``activations`` and ``gradients`` are None.
    """

    cam: np.ndarray  #: L^c = ReLU(raw), (N, h, w)
    raw: np.ndarray  #: M^c = Σ_k weights_k A^k, (N, h, w)
    weights: np.ndarray | None  #: α^c (Grad-CAM), w^c (CAM), −α^c (counterfactual); (N, K)
    activations: np.ndarray | None  #: A^k of the target layer, (N, K, h, w)
    gradients: np.ndarray | None  #: ∂y^c/∂A^k, (N, K, h, w); None for CAM
    scores: np.ndarray  #: y^c, (N,)
    target: np.ndarray  #: c, (N,) int64
    layer: str | None  #: the target layer's name (None for FullGrad)
    extra: Mapping[str, np.ndarray] = field(default_factory=_no_extra)  #: the method's own arrays

    def __post_init__(self) -> None:
        if not isinstance(self.extra, MappingProxyType):
            object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))

    def __repr__(self) -> str:  # shapes and dtypes, not 35,000 characters of numbers
        parts = [f"{f.name}={_summary(getattr(self, f.name))}" for f in fields(self) if f.name != "extra"]
        if self.extra:
            parts.append("extra={" + ", ".join(f"{k!r}: {_summary(v)}" for k, v in self.extra.items()) + "}")
        return f"CAMResult({', '.join(parts)})"


@dataclass(frozen=True, repr=False)
class LayerGradients:
    """The raw quantities at one layer, from which every layer method builds its map.

    ``activations`` A^k (N, K, h, w); ``gradients`` ∂y^c/∂A^k, same shape (with
    ``target="all"``: (N, C, K, h, w)); ``scores`` y^c (N,) or (N, C); ``target`` c,
    (N,) or (N, C) int64; ``layer`` the layer's name; ``trace`` the forward pass (of the
    original batch).
    """

    layer: str
    activations: np.ndarray
    gradients: np.ndarray
    scores: np.ndarray
    target: np.ndarray
    trace: Trace

    def __repr__(self) -> str:
        parts = ", ".join(f"{f.name}={_summary(getattr(self, f.name))}" for f in fields(self))
        return f"LayerGradients({parts})"


# ------------------------------------------------------------------------- validation
def check_model(model: Any) -> Model:
    """``model`` if it implements the model protocol :class:`npcam.nn.Model`."""
    if not isinstance(model, Model):
        raise TypeError(
            "model must implement the npcam model protocol (run, vjp, run_from, named_nodes, "
            f"inputs_of, output_name, state_dict), e.g. an npcam.Sequential; got {describe(model)}."
        )
    return model


def check_input(x: Any) -> np.ndarray:
    """The model input as a finite float64 array (its rank is the model's to check: an
    image model takes (N, C, H, W), a fully connected one (N, D))."""
    return as_float_array("x", x, finite=True)


def nchw_view(model: Any, x: Any) -> tuple[Any, Any, bool]:
    """``(model, x, transposed)`` in (N, C, H, W) for the methods that work in image space.

    A graph that reads its input channels-last (:meth:`npcam.Graph.channels_last_input`: a
    Keras or JAX model through ONNX) becomes :meth:`npcam.Graph.nchw_input` and a 4-D ``x``
    is transposed to NCHW alike, so that Score-CAM's masks, FullGrad's input term and the
    upsampled maps use the image's H and W (not W and C); ``transposed`` says whether it
    happened, for a method that returns an input-shaped array to transpose it back. Every
    other model and input is returned as it is.
    """
    channels_last = getattr(model, "channels_last_input", None)
    if not callable(channels_last) or not channels_last():
        return model, x, False
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError):
        return model, x, False  # check_input names the problem
    if arr.ndim != 4:
        return model, x, False  # the graph's own input check names the shape
    return model.nchw_input(), np.transpose(arr, (0, 3, 1, 2)), True


def targets(target: Target, logits: np.ndarray, allow_all: bool) -> np.ndarray:
    """The class index per image, (N,) int64 — or (N, C) for ``"all"``."""
    n, num_classes = logits.shape
    if isinstance(target, str):
        if target != "all":
            raise ValueError(f"target must be None, an int, N ints or 'all', got {target!r}.")
        if not allow_all:
            raise ValueError(
                "target='all' is supported by the methods with supports_all_targets "
                "(npcam.METHODS); explain the classes one at a time here."
            )
        return np.broadcast_to(np.arange(num_classes), (n, num_classes)).copy()
    if target is None:
        return logits.argmax(axis=1)
    if isinstance(target, (bool, np.bool_)):
        raise TypeError(f"target must be None, an int, N ints or 'all', got {target!r}.")
    if isinstance(target, (int, np.integer)):
        if not 0 <= int(target) < num_classes:
            raise ValueError(f"target must be in [0, {num_classes}), got {int(target)}.")
        return np.full(n, int(target), dtype=np.int64)
    arr = np.asarray(target)
    if arr.dtype.kind not in "iu" or arr.ndim != 1:
        raise TypeError(f"target must be None, an int, N ints or 'all', got {describe(target)}.")
    if arr.shape[0] != n:
        raise ValueError(f"target must give one class per image ({n}), got {arr.shape[0]}.")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    # Check before any cast: uint64 2**64 − 1 must not be reported as −1.
    bad = [int(v) for v in arr.tolist() if not 0 <= int(v) < num_classes]
    if bad:
        raise ValueError(f"target must be in [0, {num_classes}), got {[int(v) for v in arr.tolist()]}.")
    return arr.astype(np.int64)


def _node_of(model: Model, trace: Trace, name: str) -> str:
    """The node whose output ``name`` denotes (a node's name, or one of its aliases)."""
    resolve = getattr(model, "resolve", None)
    if callable(resolve):
        return str(resolve(name))
    nodes = [n for n, _ in model.named_nodes()]
    if name in nodes:
        return name
    value = trace.activations[name]
    matches = [n for n in nodes if trace.activations.get(n) is value]
    return matches[-1]


def default_layer(model: Model, trace: Trace) -> str:
    """The layer ``layer=None`` selects. A model may choose (``model.default_layer(trace)``:
    a :class:`~npcam.nn.Graph` returns its ``default_layer_name`` — the paper's layer for
    the torchvision models ``from_torch`` recognises — or the last dominating NCHW feature
    map). Otherwise DESIGN.md's rule for a chain: the last node before the first global
    pooling / flattening layer whose output in ``trace`` is a 4-D map with h·w > 1."""
    own = getattr(model, "default_layer", None)
    if callable(own):
        return str(own(trace))
    nodes = model.named_nodes()
    end = next(
        (i for i, (_, leaf) in enumerate(nodes) if isinstance(leaf, (GlobalAvgPool2d, Flatten))),
        len(nodes),
    )
    for name, _ in reversed(nodes[:end]):
        a = trace.activations.get(name)
        if a is not None and a.ndim == 4 and a.shape[2] * a.shape[3] > 1:
            return name
    raise ValueError(
        "layer is None but the model has no layer with a 4-D output of more than one "
        "position before its global pooling / flattening; name one with layer=..."
    )


def resolve_layer(model: Model, trace: Trace, layer: str | None) -> str:
    """The target layer's name: ``layer`` checked against the trace, or the default."""
    if layer is None:
        return default_layer(model, trace)
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a layer name (str) or None, got {describe(layer)}.")
    resolve = getattr(model, "resolve", None)
    if callable(resolve):
        resolve(layer)  # a graph's own message: unknown, or a module path called several times
    if layer not in trace.activations:
        names = [n for n in trace.activations]
        shown = ", ".join(repr(n) for n in names[:40]) + (", ..." if len(names) > 40 else "")
        raise ValueError(f"layer {layer!r} is not in the model; its layers are {shown}.")
    a = trace.activations[layer]
    if a.ndim != 4:
        raise ValueError(f"layer {layer!r} must output 4-D feature maps (N, K, h, w), got {a.shape}.")
    return layer


# ---------------------------------------------------------------------- the raw quantities
def layer_gradients(
    model: Any, x: Any, target: Target, layer: str | None, score: str, allow_all: bool,
    full_trace: str = "all",
) -> LayerGradients:
    r"""One forward pass, then ``∂y^c/∂A^k`` at ``layer`` by one backward pass.

    With ``target="all"`` the layers after ``layer`` run once on N·C stacked copies of A
    (``model.run_from``) and one backward pass carries the N·C one-hot cotangents (row
    n·C + c explains class c). ``full_trace``: "all" keeps every output in
    ``LayerGradients.trace``; on a :class:`~npcam.nn.Graph` whose layer is known before the
    forward pass, "layer" keeps only what a backward pass to ``layer`` needs and "input"
    what a backward pass to the input needs too (``Graph.run(x, keep=...)``).
    """
    model = check_model(model)
    score = check_score(score)
    x = check_input(x)
    hint = layer if layer is not None else getattr(model, "default_layer_name", None)
    if full_trace != "all" and isinstance(hint, str) and _takes_keep(model):
        resolve = getattr(model, "resolve", None)
        if callable(resolve):
            resolve(hint)  # its own message for an unknown or ambiguous name, before the run
        trace = model.run(x, keep=(hint,) if full_trace == "layer" else (hint, "input"))
    else:
        trace = model.run(x)
    name = resolve_layer(model, trace, layer)
    t = targets(target, trace.output, allow_all)
    a = trace.activations[name]
    to_nchw = _to_nchw(model, name, a)
    if t.ndim == 1:
        y, cotangent = scores_and_cotangent(trace.output, t, score)
        g = model.vjp(trace, cotangent, to=name).grad
        return LayerGradients(name, to_nchw(a), to_nchw(g), y, t, trace)
    n, c = t.shape
    stacked = model.run_from(trace, name, np.repeat(a, c, axis=0))
    y, cotangent = scores_and_cotangent(stacked.output, t.reshape(-1), score)
    g = to_nchw(model.vjp(stacked, cotangent, to=name).grad)
    return LayerGradients(name, to_nchw(a), g.reshape(n, c, *g.shape[1:]), y.reshape(n, c), t, trace)


def _to_nchw(model: Any, name: str, a: np.ndarray) -> Any:
    """The map that puts a layer's 4-D output in (N, K, h, w) order. A graph tracks the
    layout of its maps through Permute nodes (``Graph._layouts``): a channels-last layer
    (a JAX or Keras model's map after its NCHW→NHWC transpose, ConvNeXt's LayerNorm) is
    explained in NCHW, its activations and gradients transposed alike; every other
    layer is returned as it is."""
    layouts = getattr(model, "_layouts", None)
    if a.ndim != 4 or not callable(layouts):
        return lambda v: v
    layout = layouts().get(name.split(":")[0])
    if layout is None or tuple(layout) == (0, 1, 2, 3):
        return lambda v: v
    order = tuple(layout.index(j) for j in range(4))
    return lambda v: np.ascontiguousarray(np.transpose(v, order))


@dataclass(frozen=True, repr=False)
class LayerActivations:
    """One forward pass and the target layer's A^k, for the methods that use no gradient
    (Score-CAM, Ablation-CAM, Eigen-CAM). ``activations`` is (N, K, h, w) — a
    channels-last layer transposed to NCHW, like :func:`layer_gradients` —, ``channel_axis``
    the axis of k in the layer's own output ``trace.activations[layer]`` (1 for NCHW), so
    that a method perturbing channel k re-runs the model on the layer's own layout."""

    layer: str
    activations: np.ndarray
    scores: np.ndarray
    target: np.ndarray
    trace: Trace
    channel_axis: int

    def __repr__(self) -> str:
        parts = ", ".join(f"{f.name}={_summary(getattr(self, f.name))}" for f in fields(self))
        return f"LayerActivations({parts})"


def layer_activations(
    model: Any, x: Any, target: Target, layer: str | None, score: str, allow_all: bool
) -> LayerActivations:
    """One forward pass: the target layer's A (NCHW), the targets c, and y^c under
    ``score`` ((N,) or (N, C) for ``target="all"``)."""
    from ._passes import class_scores

    model = check_model(model)
    score = check_score(score)
    trace = model.run(check_input(x))
    name = resolve_layer(model, trace, layer)
    t = targets(target, trace.output, allow_all)
    a = trace.activations[name]
    layouts = getattr(model, "_layouts", None)
    layout = layouts().get(name.split(":")[0]) if callable(layouts) else None
    axis = 1 if layout is None else int(tuple(layout).index(1))
    all_y = class_scores(trace.output, score)
    y = np.take_along_axis(all_y, t if t.ndim == 2 else t[:, None], axis=1)
    return LayerActivations(name, _to_nchw(model, name, a)(a), y if t.ndim == 2 else y[:, 0], t, trace, axis)


def _takes_keep(model: Any) -> bool:
    from ..nn.graph import Graph

    return isinstance(model, Graph)


def weighted_map(weights: np.ndarray, activations: np.ndarray) -> np.ndarray:
    r"""``M_ij = Σ_k weights_k · A^k_ij``: (N, [C,] K) with (N, K, h, w) -> (N, [C,] h, w)."""
    with np.errstate(all="ignore"):
        if weights.ndim == 2:
            return np.einsum("nk,nkhw->nhw", weights, activations, optimize=True)
        return np.einsum("nck,nkhw->nchw", weights, activations, optimize=True)


def map_result(
    weights: np.ndarray,
    a: np.ndarray,
    gradients: np.ndarray | None,
    scores: np.ndarray,
    target: np.ndarray,
    layer: str,
    extra: Mapping[str, np.ndarray] | None = None,
) -> CAMResult:
    """The :class:`CAMResult` of ``weights`` on ``a``: ``raw = Σ_k weights_k A^k`` and
    ``cam = ReLU(raw)``; ``ValueError`` if the weighted sum overflows."""
    raw = weighted_map(weights, a)
    _check_map(raw, layer)
    return CAMResult(np.maximum(raw, 0.0), raw, weights, a, gradients, scores, target, layer, extra or {})


def _check_map(raw: np.ndarray, layer: str) -> None:
    if not all_finite(raw):
        raise ValueError(
            f"the map of layer {layer!r} overflowed: Σ_k weights_k A^k is not finite although "
            "the weights and the activations are; their values are too large for float64."
        )


def elementwise_result(
    weights: np.ndarray,
    a: np.ndarray,
    gradients: np.ndarray | None,
    scores: np.ndarray,
    target: np.ndarray,
    layer: str,
    extra: Mapping[str, np.ndarray] | None = None,
    raw: np.ndarray | None = None,
) -> CAMResult:
    r"""The :class:`CAMResult` of per-position ``weights`` (N, [C,] K, h, w) on ``a``
    (N, K, h, w): ``raw = Σ_k weights ⊙ A`` (unless the method passes its own ``raw``,
    e.g. element-wise Grad-CAM's ``Σ_k ReLU(weights ⊙ A)``) and ``cam = ReLU(raw)``."""
    if raw is None:
        with np.errstate(all="ignore"):
            prod = weights * (a if weights.ndim == 4 else a[:, None])
            raw = prod.sum(axis=-3)
    _check_map(raw, layer)
    return CAMResult(np.maximum(raw, 0.0), raw, weights, a, gradients, scores, target, layer, extra or {})


def relu_options(guided_relus: str) -> dict[str, str]:
    """The ``vjp`` keyword for ``guided_relus`` (omitted for the default, so that a model
    implementing the bare protocol need not know it)."""
    from ..nn.trace import GUIDED_RELUS

    if guided_relus not in GUIDED_RELUS:
        raise ValueError(f"guided_relus must be one of {GUIDED_RELUS}, got {guided_relus!r}.")
    return {} if guided_relus == "all" else {"guided_relus": guided_relus}


def input_gradient(
    model: Any, x: Any, target: Target, score: str, relu_rule: str, guided_relus: str = "all"
) -> tuple[np.ndarray, Trace, np.ndarray]:
    """``(∂y^c/∂x, trace, c)`` with the given ReLU backward rule, applied to the ReLUs
    ``guided_relus`` selects ("all", or "modules": only ``nn.ReLU`` module nodes)."""
    model = check_model(model)
    score = check_score(score)
    options = relu_options(guided_relus)
    x = check_input(x)
    # a graph need not keep outputs that only fed a layer's forward pass (a BN's before its ReLU)
    trace = model.run(x, keep=("input",)) if _takes_keep(model) else model.run(x)
    t = targets(target, trace.output, allow_all=False)
    _, cotangent = scores_and_cotangent(trace.output, t, score)
    return model.vjp(trace, cotangent, relu_rule=relu_rule, **options).grad, trace, t


def _is_gap(layer: Any) -> bool:
    """Global average pooling over (h, w) to (N, K): GlobalAvgPool2d, or Mean over (2, 3)."""
    from ..nn.ops import Mean

    return isinstance(layer, GlobalAvgPool2d) or (
        isinstance(layer, Mean) and layer.axes(4) == (2, 3) and not layer.keepdim
    )


def _is_pool_to_one(layer: Any) -> bool:
    """Average pooling to (N, K, 1, 1), a GAP once flattened: AdaptiveAvgPool2d(1) or
    Mean over (2, 3) with keepdim."""
    from ..nn.ops import Mean

    if isinstance(layer, Mean):
        return layer.axes(4) == (2, 3) and layer.keepdim
    from ..nn.layers import AdaptiveAvgPool2d

    return isinstance(layer, AdaptiveAvgPool2d) and tuple(layer.output_size) == (1, 1)


def cam_head(model: Model, trace: Trace, name: str) -> Any:
    """The Linear layer of an exact ``GAP → [Flatten] → Linear`` head after ``name``
    (Dropout and identities, the identity at inference, may stand between; in a graph
    ``Mean`` over (2, 3), and ``AdaptiveAvgPool2d(1)`` or a keepdim ``Mean`` followed by
    ``Flatten``, count as GAP), read from the model's structure (``named_nodes``,
    ``inputs_of``); else ``ValueError``."""
    from ..nn.layers import Linear
    from ..nn.ops import Identity

    layers = dict(model.named_nodes())
    consumers: dict[str, list[str]] = {}
    for n, _ in model.named_nodes():
        for i in model.inputs_of(n):
            consumers.setdefault(i, []).append(n)
    node = _node_of(model, trace, name)
    chain: list[Any] = []
    while True:
        after = consumers.get(node, [])
        if len(after) != 1:
            break
        node = after[0]
        chain.append(layers[node])
    kept = [leaf for leaf in chain if not isinstance(leaf, (Dropout, Identity))]
    ok = node == model.output_name and (
        (len(kept) == 2 and _is_gap(kept[0]) and isinstance(kept[1], Linear))
        or (len(kept) == 3 and (_is_gap(kept[0]) or _is_pool_to_one(kept[0]))
            and isinstance(kept[1], Flatten) and isinstance(kept[2], Linear))
    )
    if ok:
        return kept[-1]
    found = " -> ".join(type(k).__name__ for k in kept) or "nothing"
    raise ValueError(
        f"CAM needs layer {name!r} to be followed by exactly GlobalAvgPool2d -> [Flatten] -> "
        f"Linear, but it is followed by {found}; grad_cam works on any architecture."
    )
