r"""Say *why* an implementation differs: :func:`diagnose` finds the bug or the library
convention that reproduces someone's array.

Comparing arrays says *that* two implementations differ; a diagnosis says *why*. Given
another implementation's array of one quantity (``cam``, ``alpha``, ``guided_backprop``,
…) for a model and a batch, :func:`diagnose` computes npcam's reference and, when they
differ, recomputes the quantity under every hypothesis of
:mod:`npcam.verify.hypotheses` — each a named bug (``alpha-sum``, ``no-relu``,
``layer-earlier``, …) that changes one setting of the computation, or a library's whole
post-processing (``convention:captum:relu_attributions=True``) — alone and, when no single
one fits, in pairs (``softmax-score+no-relu``). A hypothesis *fits* when

    residual = max|theirs − h| / max(max|theirs|, max|h|)  ≤ 1e-10

(≤ 1e-5, float32 precision, when ``theirs`` is float32, or for a hypothesis that is
float32 by nature such as OpenCV's resize). Each hypothesis reuses npcam's own forward
and backward passes (one backward pass per distinct score, target and layer), so the
whole search on a batch of four 64×64 images takes about a second.

Rules of the verdict:

* ``"match"`` — theirs equals the reference within 1e-10 of its scale (for a float64
  array). Bugs the quantity and batch cannot reveal (α summed, seen in a normalised map;
  a missing ReLU when the map is ≥ 0) end here too: every named bug whose array equals the
  reference on this input is listed in a warning.
* ``"float32"`` — theirs is float32 and within 1e-5 of the reference, or it is float64 and
  1e-10 < residual ≤ 1e-5 with no hypothesis fitting at 1e-10. ``hypotheses[0]`` is
  ``float32``: "PASS at the float32 tier, FAIL at the float64 bar".
* ``"explained"`` — some hypothesis fits; ``hypotheses`` lists every fitting one, best
  first, in tied groups (residuals within 1e-12 of the group's best).
* ``"unexplained"`` — none fits; ``concentration`` says where the difference sits (which
  images, which channels, how much of it on the map's border).
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from .._validate import describe
from .._warnings import WeakTestInputWarning
from ..methods._core import _node_of, _to_nchw, check_input, check_model, nchw_view, resolve_layer, targets
from ..methods.scores import SCORES, scores_and_cotangent
from ..nn.trace import RELU_RULES, Trace
from . import hypotheses as hyp
from .hypotheses import BUGS, EPSILONS, ORDER, Bug, Setup

__all__ = ["FIT", "FLOAT32_FIT", "QUANTITIES", "TIE", "Diagnosis", "Hypothesis", "diagnose"]

#: Every quantity a diagnosis compares, in the order of the computation.
QUANTITIES = (
    "logits", "scores", "activations", "gradients", "alpha", "raw", "cam", "cam_upsampled",
    "cam_normalized", "counterfactual", "saliency", "guided_backprop", "deconvnet",
    "guided_grad_cam",
)
#: The float64 bar on a residual (rule R1: float64 implementations agree to round-off).
FIT = 1e-10
#: The float32 bar (rule R1: float32 precision).
FLOAT32_FIT = 1e-5
#: Residuals within this distance of a group's best are one tied group.
TIE = 1e-12

_INPUT_RULES = {"saliency": "standard", "guided_backprop": "guided", "deconvnet": "deconvnet",
                "guided_grad_cam": "guided"}
_SPATIAL = ("activations", "gradients", "raw", "cam", "cam_upsampled", "cam_normalized",
            "counterfactual", "saliency", "guided_backprop", "deconvnet", "guided_grad_cam")
#: The settings a convention leaves to npcam (it replaces the rest of the computation).
_FORWARD_FIELDS = frozenset({"score", "target", "layer", "grad_at", "inplace", "train", "relu_rule"})
#: The conventions of npcam.conventions searched for Grad-CAM, with the options that
#: change the result (the defaults first).
GRAD_CAM_CONVENTIONS = (
    "captum", "captum:relu_attributions=True", "captum:interpolate_mode=nearest",
    "captum:interpolate_mode=bilinear", "captum:relu_attributions=True:interpolate_mode=nearest",
    "captum:relu_attributions=True:interpolate_mode=bilinear", "pytorch-grad-cam", "torchcam",
    "torchcam:normalized=False", "tf-keras-vis", "tf-keras-vis:normalize_cam=False",
    "tf-keras-vis:expand_cam=False", "tf-keras-vis:expand_cam=False:normalize_cam=False",
    "grad-cam-lua",
)
GUIDED_CONVENTIONS = ("captum", "captum:interpolate_mode=bilinear", "grad-cam-lua")
#: CAM-family methods whose maps depend on a library's random draws (not reproducible
#: from npcam's arrays): their conventions are compared only when named in ``convention``.
_RANDOM_METHODS = ("ss-cam", "is-cam", "smooth-grad-cam++")


# --------------------------------------------------------------------------- records
@dataclass(frozen=True)
class Hypothesis:
    """One hypothesis that reproduces the array under test."""

    name: str  #: ``alpha-sum``, ``softmax-score+no-relu``, ``convention:captum``, …
    description: str  #: one sentence
    residual: float  #: max|theirs − h| / max(max|theirs|, max|h|)
    group: int  #: index of its tied group (0 = best)


@dataclass(frozen=True)
class Diagnosis:
    """The result of :func:`diagnose`; ``str()`` is the printed report."""

    matches: bool  #: theirs equals npcam's reference within 1e-10 of scale
    verdict: Literal["match", "float32", "explained", "unexplained"]
    hypotheses: list[Hypothesis]  #: those that reproduce theirs, best first
    first_divergence: str | None  #: with several quantities: the first that differs
    concentration: dict[str, Any]  #: images, channels, border_fraction of the difference
    warnings: list[str]
    explanation: str  #: one paragraph
    quantities: tuple[str, ...] = ()  #: the quantities compared, in computation order
    residual: float = 0.0  #: the reference's residual (max over the quantities)
    tried: int = 0  #: hypotheses evaluated
    tiers: dict[str, bool] = field(default_factory=dict)  #: {"float64": ..., "float32": ...}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (inf as a string)."""
        out = asdict(self)
        out["quantities"] = list(self.quantities)
        for key in ("residual",):
            out[key] = _json_float(out[key])
        for h in out["hypotheses"]:
            h["residual"] = _json_float(h["residual"])
        return out

    def __str__(self) -> str:
        lines = [f"verdict: {self.verdict}", self.explanation]
        f64 = "PASS" if self.tiers.get("float64") else "FAIL"
        f32 = "PASS" if self.tiers.get("float32") else "FAIL"
        lines.append(f"tiers: {f32} at the float32 tier (1e-05), {f64} at the float64 bar (1e-10)")
        if self.hypotheses:
            lines.append("hypotheses (group, residual, name):")
            lines += [f"  {h.group}  {h.residual:.1e}  {h.name}: {h.description}"
                      for h in self.hypotheses[:10]]
            if len(self.hypotheses) > 10:
                lines.append(f"  ... {len(self.hypotheses) - 10} more")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _json_float(v: float) -> float | str:
    return v if math.isfinite(v) else str(v)


def residual(theirs: np.ndarray, h: np.ndarray | None) -> float:
    """``max|theirs − h| / max(max|theirs|, max|h|)`` (0 when both are zero; inf for a
    shape mismatch or a value finite in one and not in the other). A length-1 axis the
    libraries add (captum's (N, 1, h, w)) is ignored when it is the only difference."""
    if h is None:
        return math.inf
    if theirs.shape != h.shape:
        if np.squeeze(theirs).shape != np.squeeze(h).shape or theirs.size != h.size:
            return math.inf
        h = h.reshape(theirs.shape)
    t = theirs.astype(np.float64, copy=False)
    g = h.astype(np.float64, copy=False)
    ft, fg = np.isfinite(t), np.isfinite(g)
    if not np.array_equal(ft, fg):
        return math.inf
    if not ft.all():  # non-finite at the same places: they must be the same values
        if not np.array_equal(t[~ft], g[~fg], equal_nan=True):
            return math.inf
        t, g = t[ft], g[fg]
    if t.size == 0:
        return 0.0
    scale = max(float(np.abs(t).max()), float(np.abs(g).max()))
    if scale == 0.0:
        return 0.0
    with np.errstate(over="ignore"):
        return float(np.abs(t - g).max()) / scale


# ------------------------------------------------------------------------ the engine
@dataclass
class _Raw:
    """What one forward setting gives: logits, targets, y^c, A and G (NCHW), input grads."""

    logits: np.ndarray
    target: np.ndarray
    scores: np.ndarray
    a: np.ndarray | None
    g: np.ndarray | None
    other: str  # the node, class or layer the setting picked, for the description
    cotangent: np.ndarray
    trace: Trace
    input_grads: dict[str, np.ndarray] = field(default_factory=dict)


class _Engine:
    """Computes every quantity under a :class:`Setup`, caching the backward passes."""

    def __init__(self, model: Any, x: np.ndarray, target: Any, layer: str | None,
                 input_size: tuple[int, int], wanted: tuple[str, ...], method: str,
                 family: tuple[str, str, dict[str, Any]] | None) -> None:
        self.model, self.x, self.target_arg = model, x, target
        self.input_size, self.wanted, self.method, self.family = input_size, wanted, method, family
        self.trace = model.run(x)
        needs_layer = any(q not in ("logits", "scores", "saliency", "guided_backprop", "deconvnet")
                          for q in wanted)
        self.layer = resolve_layer(model, self.trace, layer) if needs_layer or layer is not None else None
        self.node = _node_of(model, self.trace, self.layer) if self.layer is not None else None
        self.t_ref = targets(target, self.trace.output, allow_all=False)
        self.num_classes = self.trace.output.shape[1]
        self._raw: dict[tuple[Any, ...], _Raw | None] = {}
        self._train_trace: Trace | None = None
        self._train_model: Any = None
        self.consumers: dict[str, list[str]] = {}
        for n, _ in model.named_nodes():
            for i in model.inputs_of(n):
                self.consumers.setdefault(i, []).append(n)
        self.layers = dict(model.named_nodes())

    # -- the forward settings ------------------------------------------------------
    def _trace(self, train: bool) -> Trace:
        if not train:
            return self.trace
        if self._train_trace is None:
            self._train_model = copy.deepcopy(self.model).train()
            self._train_trace = self._train_model.run(self.x)
        return self._train_trace

    def _model(self, train: bool) -> Any:
        self._trace(train)
        return self._train_model if train else self.model

    def _targets(self, setup: Setup, logits: np.ndarray) -> tuple[np.ndarray, str]:
        base = logits.argmax(axis=1) if self.target_arg is None else self.t_ref
        if setup.target == "given":
            return base, ""
        if setup.target == "first-argmax":
            t = hyp.target_first_argmax(base, logits)
            return t, f"{int(t[0])}"
        step = -1 if setup.target == "minus-one" else 1
        return hyp.target_off_by_one(base, self.num_classes, step), ""

    def _cotangent(self, score: str, logits: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if score in SCORES:
            return scores_and_cotangent(logits, t, score)
        if score == "sum-of-logits":
            return hyp.sum_of_logits_cotangent(logits)
        return hyp.prob_then_log_cotangent(logits, t)

    def _layer_node(self, rule: str) -> str | None:
        """The node the layer rule picks (None when it does not apply)."""
        node = self.node
        if node is None:
            return None
        ins = [i for i in self.model.inputs_of(node) if i != "input"]
        if rule == "named":
            return self.layer
        if rule == "earlier":
            return ins[0] if ins else None
        if rule == "later":
            after = self.consumers.get(node, [])
            return after[0] if len(after) == 1 else None
        from ..nn.layers import BatchNorm2d, Conv2d, ReLU
        from ..nn.ops import Add

        if rule == "pre-relu":
            if not isinstance(self.layers.get(node), ReLU) or not ins:
                return None
            return ins[0] if isinstance(self.layers.get(ins[0]), (Conv2d, BatchNorm2d)) else None
        # pre-add: the add at the layer (or feeding its ReLU), its BatchNorm branch
        add = node
        if isinstance(self.layers.get(add), ReLU) and ins:
            add = ins[0]
        if not isinstance(self.layers.get(add), Add):
            return None
        branches = [i for i in self.model.inputs_of(add) if isinstance(self.layers.get(i), BatchNorm2d)]
        return branches[0] if branches else None

    def raw(self, setup: Setup) -> _Raw | None:
        key = setup.forward_key()
        if key not in self._raw:
            self._raw[key] = self._compute_raw(setup)
        return self._raw[key]

    def _compute_raw(self, setup: Setup) -> _Raw | None:
        trace = self._trace(setup.train)
        model = self._model(setup.train)
        logits = trace.output
        t, other = self._targets(setup, logits)
        y, cot = self._cotangent(setup.score, logits, t)
        bad = ~np.isfinite(cot).all(axis=1)
        cot = np.where(bad[:, None], 0.0, cot)
        a = g = None
        if self.layer is not None and any(q not in ("logits", "scores", "saliency", "guided_backprop",
                                                   "deconvnet") for q in self.wanted):
            name = self._layer_node(setup.layer)
            if name is None:
                return None
            if setup.layer != "named":
                other = repr(name)
            a = trace.activations[name]
            if a.ndim != 4:
                return None
            to = name
            if setup.grad_at == "input":
                ins = [i for i in model.inputs_of(_node_of(model, trace, name)) if i != "input"]
                if not ins or trace.activations[ins[0]].shape != a.shape:
                    return None
                to = ins[0]
                other = repr(to)
            g = model.vjp(trace, cot, to=to).grad
            if setup.inplace:
                after = self.consumers.get(_node_of(model, trace, name), [])
                from ..nn.layers import ReLU

                if len(after) != 1 or not isinstance(self.layers.get(after[0]), ReLU):
                    return None
                a = trace.activations[after[0]]
                other = f"ReLU {after[0]!r}"
            conv = _to_nchw(model, name, a)
            a, g = conv(a), conv(g)
            if bad.any():
                g = g.copy()
                g[bad] = np.nan
        return _Raw(logits, t, y, a, g, other, cot, trace)

    def input_grad(self, setup: Setup, r: _Raw, quantity: str) -> np.ndarray:
        rule = setup.relu_rule or _INPUT_RULES[quantity]
        if rule not in r.input_grads:
            model = self._model(setup.train)
            gx = model.vjp(r.trace, r.cotangent, relu_rule=rule).grad
            bad = ~np.isfinite(r.cotangent).all(axis=1) | ~np.isfinite(r.scores)
            if setup.score == "prob-then-log" and bad.any():
                gx = gx.copy()
                gx[bad] = np.nan
            r.input_grads[rule] = gx
        return r.input_grads[rule]

    # -- the rest of the computation -----------------------------------------------
    def alpha(self, setup: Setup, r: _Raw) -> tuple[np.ndarray, np.ndarray]:
        """(α (N, K), the A it weights), npcam's way or under the setup's bugs."""
        assert r.a is not None and r.g is not None
        a, g = r.a, r.g
        if self.method == "cam":
            from ..methods._core import cam_head

            head = cam_head(self.model, self.trace, self.layer or "")
            alpha = np.asarray(head.weight)[r.target]
        else:
            if setup.channels_last:
                a, g = hyp.channels_last(a), hyp.channels_last(g)
            if setup.relu_gradients:
                g = hyp.relu_on_gradients(g)
            alpha = hyp.alpha_sum(g) if setup.alpha == "sum" else hyp.alpha_mean(g)
        if setup.batch_mean:
            alpha = hyp.batch_mean_alpha(alpha)
        if setup.relu_alpha:
            alpha = hyp.relu_on_alpha(alpha)
        return alpha, a

    def arrays(self, setup: Setup) -> dict[str, np.ndarray] | None:
        """Every wanted quantity under ``setup`` (None when the setup does not apply)."""
        if self.family is not None:
            return self._family_arrays(setup)
        r = self.raw(setup)
        if r is None:
            return None
        out: dict[str, np.ndarray] = {}
        with np.errstate(all="ignore"):
            for q in self.wanted:
                value = self._quantity(setup, r, q, out)
                if value is None:
                    return None
                out[q] = value
        if setup.float32:
            out = {k: v.astype(np.float32) for k, v in out.items()}
        return out

    def _map(self, setup: Setup, r: _Raw, cache: dict[str, np.ndarray]) -> np.ndarray:
        if "_raw" not in cache:
            alpha, a = self.alpha(setup, r)
            m = np.einsum("nk,nkhw->nhw", alpha, a)
            cache["_alpha"], cache["_raw"] = alpha, hyp.cam_over_z(m) if setup.over_z else m
        return cache["_raw"]

    def _low(self, setup: Setup, r: _Raw, cache: dict[str, np.ndarray]) -> np.ndarray:
        m = self._map(setup, r, cache)
        return hyp.relu(m) if setup.relu else hyp.no_relu(m)

    def _up(self, setup: Setup, r: _Raw, cache: dict[str, np.ndarray]) -> np.ndarray:
        if "_up" not in cache:
            cache["_up"] = hyp.resize(self._low(setup, r, cache), self.input_size, setup.resize)
        return cache["_up"]

    def _convention(self, setup: Setup, r: _Raw, quantity: str) -> np.ndarray | None:
        from . import conventions

        assert setup.convention is not None and r.a is not None and r.g is not None
        name, options = parse_convention(setup.convention)
        conv = conventions._CONVENTIONS[name]
        if quantity == "guided_grad_cam":
            if conv.guided is None:
                return None
            return conv.guided(self.input_grad(setup, r, quantity), r.a, r.g, **options)
        size = self.input_size if conv.resizes(options) else None
        out = conv.post(r.a, r.g, size, **options)
        return hyp.transposed_map(out) if setup.transposed else out

    def _quantity(self, setup: Setup, r: _Raw, q: str, cache: dict[str, np.ndarray]) -> np.ndarray | None:
        t = hyp.transposed_map if setup.transposed else (lambda v: v)
        if q == "logits":
            return r.logits
        if q == "scores":
            return r.scores
        if q == "activations":
            return r.a
        if q == "gradients":
            return r.g
        if q in ("saliency", "guided_backprop", "deconvnet"):
            return self.input_grad(setup, r, q)
        if setup.convention is not None and q in ("cam", "cam_upsampled", "cam_normalized",
                                                  "guided_grad_cam"):
            return self._convention(setup, r, q)
        if q == "alpha":
            self._map(setup, r, cache)
            return cache["_alpha"]
        if q == "raw":
            return t(self._map(setup, r, cache))
        if q == "cam":
            return t(self._low(setup, r, cache))
        if q == "cam_upsampled":
            return t(self._up(setup, r, cache))
        if q == "cam_normalized":
            if setup.normalize == "before-resize":
                u = hyp.normalize_before_resize(self._low(setup, r, cache), self.input_size, setup.resize)
            else:
                u = self._up(setup, r, cache)
                if setup.epsilon:
                    u = hyp.normalize_with_epsilon(u, setup.epsilon, setup.normalize != "without-min")
                elif setup.normalize == "without-min":
                    u = hyp.normalize_without_min(u)
                else:
                    u = hyp.minmax(u)
            return t(u)
        if q == "counterfactual":
            m = self._map(setup, r, cache)
            if setup.counterfactual == "relu-alpha":
                alpha, a = self.alpha(setup, r)
                return t(hyp.counterfactual_relu_alpha(alpha, a))
            if setup.counterfactual == "sign":
                return t(hyp.counterfactual_sign(m))
            return t(hyp.counterfactual_map(m) if setup.relu else -m)
        if q == "guided_grad_cam":
            return self._up(setup, r, cache)[:, None] * self.input_grad(setup, r, q)
        raise AssertionError(q)  # pragma: no cover - quantities are checked up front

    def _family_arrays(self, setup: Setup) -> dict[str, np.ndarray] | None:
        """A CAM-family method through npcam.conventions.cam, the setup's forward bugs
        applied to its arguments (score, target, layer, training mode)."""
        from . import conventions

        assert self.family is not None
        method, _, _ = self.family
        lib, options = parse_convention(setup.convention or "npcam")
        if setup.score not in SCORES or setup.grad_at != "output" or setup.inplace:
            return None
        model = self._model(setup.train)
        logits = self._trace(setup.train).output
        t, _ = self._targets(setup, logits)
        layer = self._layer_node(setup.layer) if self.layer is not None else None
        if self.layer is not None and layer is None:
            return None
        targets_ = [int(v) for v in t]
        result: dict[str, np.ndarray] = {}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if lib == "npcam":  # the method's own map, at the layer (cam) or resized
                    from ..methods.registry import METHODS

                    low = METHODS[method].function(model, self.x, targets_, layer, score=setup.score).cam
                    up = hyp.resize(low, self.input_size, "bilinear")
                    result = {"cam": low, "cam_upsampled": up, "cam_normalized": hyp.minmax(up)}
                else:
                    out = np.asarray(conventions.cam(method, model, self.x, targets_, layer, lib,
                                                     self.input_size, setup.score, **options))
                    result = {q: out for q in self.wanted}
        except (ValueError, TypeError):
            return None
        out_ = {q: result[q] for q in self.wanted}
        if setup.transposed:
            out_ = {q: hyp.transposed_map(v) for q, v in out_.items()}
        if setup.float32:
            out_ = {q: v.astype(np.float32) for q, v in out_.items()}
        return out_


def parse_convention(spec: str) -> tuple[str, dict[str, Any]]:
    """``"lib:option=value:…"`` -> (lib, {option: value}); values ``True``/``False``/
    ``None``, numbers, or strings."""
    lib, *parts = spec.split(":")
    options: dict[str, Any] = {}
    for part in parts:
        key, sep, text = part.partition("=")
        if not sep or not key:
            raise ValueError(f"convention options are written option=value, got {part!r} in {spec!r}.")
        options[key] = _parse_value(text)
    return lib, options


def _parse_value(text: str) -> Any:
    if text in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[text]
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


# ------------------------------------------------------------------------ the search
@dataclass(frozen=True)
class _Candidate:
    names: tuple[str, ...]
    bugs: tuple[Bug, ...]
    setup: Setup
    float32_nature: bool = False  # float32 by construction (OpenCV's resize)

    @property
    def name(self) -> str:
        return "+".join(self.names)


def _order(name: str) -> int:
    base = name.split(":")[0]
    return ORDER.index(base) if base in ORDER else len(ORDER)


def _candidates(engine: _Engine, base: Setup, known: dict[str, bool],
                theirs: dict[str, np.ndarray]) -> list[_Candidate]:
    """Every single hypothesis that applies to the quantities given."""
    wanted = set(theirs)
    out: list[_Candidate] = []
    family = engine.family is not None
    from ..nn.layers import BatchNorm2d

    has_bn = any(isinstance(layer, BatchNorm2d) for _, layer in engine.model.named_nodes())
    for bug in BUGS:
        if not wanted & bug.quantities:
            continue
        if bug.name == "train-mode" and not has_bn:
            continue  # only BatchNorm2d behaves differently in training mode
        if bug.fields & {"score"} and known["score"]:
            continue
        if bug.fields & {"relu_rule"} and known["relu_rule"]:
            continue
        if (family or base.convention is not None) and not bug.fields <= (_FORWARD_FIELDS | {"transposed"}):
            continue
        # CAM's weights are the FC row w^c of the named layer's head: no score, no gradient,
        # no other layer
        if engine.method == "cam" and bug.fields & {"score", "alpha", "relu_gradients", "channels_last",
                                                     "grad_at", "layer", "inplace"}:
            continue
        out.append(_Candidate((bug.name,), (bug,), bug.apply(base), bug.name == "opencv-resize"))
    if "cam_normalized" in wanted and not family and base.convention is None:
        for eps in _epsilons(engine, base, theirs["cam_normalized"]):
            name = f"epsilon:{eps:.0e}"
            bug = Bug(name, f"an ε = {eps:.0e} is added to the normaliser's denominator",
                      (("epsilon", eps),), frozenset({"cam_normalized"}))
            out.append(_Candidate((name,), (bug,), bug.apply(base)))
    if not known["convention"]:
        for spec in _convention_specs(engine, wanted):
            name = f"convention:{spec}"
            bug = Bug(name, f"the map is {_convention_description(spec, engine)}",
                      (("convention", spec),), frozenset(theirs))
            out.append(_Candidate((name,), (bug,), bug.apply(base)))
    return out


def _convention_specs(engine: _Engine, wanted: set[str]) -> list[str]:
    if engine.family is not None:
        from .conventions import FAMILY_NAMES

        method, lib, _ = engine.family
        if method in _RANDOM_METHODS:
            return []
        return [name for name in FAMILY_NAMES[method] if name != lib]
    if engine.method == "cam":
        return []
    if wanted & {"cam", "cam_upsampled", "cam_normalized"}:
        return list(GRAD_CAM_CONVENTIONS)
    if "guided_grad_cam" in wanted:
        return list(GUIDED_CONVENTIONS)
    return []


def _convention_description(spec: str, engine: _Engine) -> str:
    lib, options = parse_convention(spec)
    opts = ", ".join(f"{k}={v!r}" for k, v in options.items())
    method = engine.family[0] if engine.family is not None else "grad-cam"
    what = f"{lib}'s {method}" + (f" with {opts}" if opts else "")
    return f"what {what} returns (npcam.conventions; its resize, normalisation, layout and dtype)"


def _epsilons(engine: _Engine, base: Setup, theirs: np.ndarray) -> list[float]:
    """The ε values to try: :data:`EPSILONS` and one estimated from the data (per image,
    ``max(theirs) = span / (span + ε)`` for the min-max normaliser)."""
    found = list(EPSILONS)
    arrays = engine.arrays(base)
    if arrays is None:
        return found
    # the upsampled map before normalisation
    r = engine.raw(base)
    if r is None or r.a is None:
        return found
    up = engine._up(base, r, {})
    if up.shape != theirs.shape:
        return found
    span = up.max(axis=(-2, -1)) - up.min(axis=(-2, -1))
    top = theirs.reshape(len(theirs), -1).max(axis=1).astype(np.float64)
    ok = (top > 0) & (top < 1) & (span > 0)
    if ok.any():
        est = float(np.median(span[ok] * (1.0 / top[ok] - 1.0)))
        if est > 0 and math.isfinite(est):
            nice = float(f"{est:.0e}")
            if all(abs(nice - e) > 1e-3 * e for e in found):
                found.append(nice)
    return found


def _combine(a: _Candidate, b: _Candidate) -> _Candidate | None:
    fa = {k for bug in a.bugs for k in bug.fields}
    fb = {k for bug in b.bugs for k in bug.fields}
    if fa & fb:
        return None
    # conventions replace the post-processing: they pair only with forward settings
    for c, f in ((a, fb), (b, fa)):
        if c.setup.convention is not None and not f <= (_FORWARD_FIELDS | {"transposed"}):
            return None
    first, second = sorted((a, b), key=lambda c: _order(c.names[0]))
    setup = first.setup
    for bug in second.bugs:
        setup = bug.apply(setup)
    return _Candidate(first.names + second.names, first.bugs + second.bugs, setup,
                      a.float32_nature or b.float32_nature)


def _residual_of(arrays: dict[str, np.ndarray] | None, theirs: dict[str, np.ndarray]) -> float:
    if arrays is None:
        return math.inf
    return max(residual(theirs[q], arrays[q]) for q in theirs)


def _description(c: _Candidate, engine: _Engine, fields_: dict[str, Any]) -> str:
    parts = []
    for bug in c.bugs:
        try:
            parts.append(bug.description.format(**fields_))
        except (KeyError, IndexError):  # pragma: no cover - descriptions use known fields
            parts.append(bug.description)
    text = "; ".join(parts)
    if text[:2].isascii() and text[:2].isalpha() and text[0].islower():  # not "α…", "y^c…"
        text = text[0].upper() + text[1:]
    return text + "."


# ------------------------------------------------------------------------- the call
def _check_theirs(theirs: Any, quantity: Any) -> dict[str, np.ndarray]:
    if isinstance(theirs, Mapping):
        items = dict(theirs)
        if not items:
            raise ValueError("theirs must hold at least one quantity, got an empty dict.")
    else:
        if not isinstance(quantity, str) or quantity not in QUANTITIES:
            raise ValueError(f"quantity must be one of {', '.join(QUANTITIES)}, got {quantity!r}.")
        items = {quantity: theirs}
    out: dict[str, np.ndarray] = {}
    for q in QUANTITIES:
        if q not in items:
            continue
        value = items.pop(q)
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"theirs[{q!r}] must be an array of real numbers, got {describe(value)}."
            ) from exc
        if arr.dtype.kind not in "iuf" or arr.ndim == 0:
            raise TypeError(f"theirs[{q!r}] must be an array of real numbers, got {describe(value)}.")
        out[q] = arr
    if items:
        raise ValueError(f"theirs has unknown quantities {sorted(map(str, items))}; "
                         f"the quantities are {', '.join(QUANTITIES)}.")
    return out


def _check_convention(convention: Any) -> tuple[str | None, str | None, dict[str, Any]]:
    """(spec for the Setup, family method or None, options)."""
    if convention is None:
        return None, None, {}
    if not isinstance(convention, str):
        raise TypeError(
            f"convention must be a string 'library[:option=value...]', got {describe(convention)}."
        )
    from .conventions import FAMILY_NAMES, NAMES

    lib, options = parse_convention(convention)
    method = options.pop("method", "grad-cam")
    if method == "grad-cam":
        if lib not in NAMES:
            raise ValueError(f"convention must name one of {NAMES}, got {lib!r}.")
        spec = ":".join([lib, *(f"{k}={v}" for k, v in options.items())])
        return (None if lib == "npcam" and not options else spec), None, options
    if method == "cam":
        if lib != "npcam" or options:
            raise ValueError("method=cam takes the convention 'npcam' only (Zhou et al.'s CAM, no options).")
        return None, "cam", {}
    if method not in FAMILY_NAMES:
        raise ValueError(f"convention's method must be one of grad-cam, cam, {', '.join(FAMILY_NAMES)}; "
                         f"got {method!r}.")
    if lib not in FAMILY_NAMES[method]:
        raise ValueError(
            f"convention must name one of {FAMILY_NAMES[method]} for method {method!r}, got {lib!r}."
        )
    spec = ":".join([lib, *(f"{k}={v}" for k, v in options.items())])
    return spec, method, options


def diagnose(
    theirs: Any,
    model: Any,
    x: Any,
    target: Any = None,
    layer: str | None = None,
    quantity: str = "cam",
    *,
    score: str | None = None,
    relu_rule: str | None = None,
    convention: str | None = None,
    input_size: Any = None,
) -> Diagnosis:
    r"""Compare another implementation's array with npcam's and say why they differ.

    Parameters
    ----------
    theirs : array, or dict quantity -> array
        The other implementation's ``quantity`` for ``model`` on ``x`` (its layout: (N, h,
        w) for maps, (N, K) for α, …), or several quantities at once, which must all be
        reproduced by one hypothesis (``first_divergence`` names the earliest that
        differs).
    model : npcam.nn.Model
        The model (e.g. from :func:`npcam.from_torch`), in evaluation mode.
    x : array_like, (N, C, H, W)
        The batch theirs was computed on. Use :func:`npcam.verify.revealing_batch` to get
        one that can show target, ReLU and batch bugs.
    target : None, int or N ints
        None: the predicted class per image (as their code should pick it, so target bugs
        can show).
    layer : str or None
        The target layer (npcam's name or a torch module path); None: npcam's default.
    quantity : one of :data:`QUANTITIES`
        What ``theirs`` is, when it is one array: ``cam`` = ReLU(Σ_k α_k A^k) (N, h, w);
        ``cam_upsampled`` its bilinear (half-pixel) upsampling to ``input_size``;
        ``cam_normalized`` the min-max normalisation of ``cam_upsampled``;
        ``counterfactual`` ReLU(−Σ_k α_k A^k); ``guided_grad_cam`` cam_upsampled ⊙
        guided backprop; the others as in :mod:`npcam.vectors`.
    score, relu_rule, convention : what you know about your implementation (None:
        unknown, searched). ``score`` one of ``"logit"``, ``"softmax"``,
        ``"log_softmax"``; ``relu_rule`` the ReLU backward rule of an input-gradient
        quantity; ``convention`` ``"library[:option=value…]"`` of
        :mod:`npcam.conventions` — the reference then *is* that library's output (e.g.
        ``"captum:relu_attributions=True"``), and ``":method=grad-cam++"`` (any method of
        ``npcam.conventions.FAMILY_NAMES``) picks a CAM-family method; ``"npcam:method=cam"``
        is Zhou et al.'s CAM.
    input_size : (H, W) of the upsampled maps; default the size of ``x``.

    A graph that reads its input channels-last (:meth:`npcam.Graph.channels_last_input`) is
    diagnosed in its NCHW form: give input-resolution quantities (saliency, guided
    backprop, Guided Grad-CAM) in (N, C, H, W).

    Returns
    -------
    Diagnosis
        ``verdict``, ``hypotheses`` (best first, in tied groups), ``explanation`` and the
        rest (module docstring: the rules).

    Warns
    -----
    WeakTestInputWarning
        When the batch cannot reveal a class of bugs (every image explained for one class;
        a raw map ≥ 0 everywhere; a single image), and when the verdict is ``"match"``
        while named bugs give the same array on this input (listed; also in
        ``Diagnosis.warnings``).

    Examples
    --------
    >>> import numpy as np, npcam
    >>> model = npcam.zoo.pretrained("gap")                          # doctest: +SKIP
    >>> x = npcam.verify.revealing_batch(model, (3, 64, 64))         # doctest: +SKIP
    >>> cam = npcam.grad_cam(model, x).cam                           # doctest: +SKIP
    >>> mine = cam * cam.shape[1] * cam.shape[2]  # α summed: × Z    # doctest: +SKIP
    >>> npcam.verify.diagnose(mine, model, x).hypotheses[0].name     # doctest: +SKIP
    'alpha-sum'
    """
    given = _check_theirs(theirs, quantity)
    model = check_model(model)
    # a graph that reads its input channels-last (Keras or JAX through ONNX) is diagnosed in
    # its NCHW form, as the conventions run it: input-shaped quantities are then NCHW
    model, x, _ = nchw_view(model, x)
    x = check_input(x)
    if x.ndim != 4:
        raise ValueError(f"x must be a batch (N, C, H, W), got shape {x.shape}.")
    if score is not None and score not in SCORES:
        raise ValueError(f"score must be None or one of {SCORES}, got {score!r}.")
    if relu_rule is not None and relu_rule not in RELU_RULES:
        raise ValueError(f"relu_rule must be None or one of {RELU_RULES}, got {relu_rule!r}.")
    if layer is not None and not isinstance(layer, str):
        raise TypeError(f"layer must be a layer name (str) or None, got {describe(layer)}.")
    spec, method, _ = _check_convention(convention)
    from .._validate import as_pair

    size = tuple(x.shape[2:]) if input_size is None else as_pair("input_size", input_size)
    wanted = tuple(given)
    family: tuple[str, str, dict[str, Any]] | None = None
    if method not in (None, "cam"):
        bad = [q for q in wanted if q not in ("cam", "cam_upsampled", "cam_normalized")]
        if bad:
            raise ValueError(f"a CAM-family convention gives one final map: quantity must be cam, "
                             f"cam_upsampled or cam_normalized, got {bad[0]!r}.")
        family = (method, spec.split(":")[0] if spec else "npcam", {})
    engine = _Engine(model, x, target, layer, size, wanted, method or "grad-cam", family)
    # npcam's setup, with what the user stated (a convention replaces the post-processing;
    # for a CAM-family method it names the library whose map is the reference)
    base = Setup(score=score or "logit", relu_rule=relu_rule, convention=spec)
    known = {"score": score is not None, "relu_rule": relu_rule is not None,
             "convention": convention is not None}
    ref = engine.arrays(base)
    if ref is None:  # pragma: no cover - the reference always applies
        raise ValueError("npcam could not compute the reference for these arguments.")
    per_q = {q: residual(given[q], ref[q]) for q in wanted}
    r0 = max(per_q.values())
    narrow = any(a.dtype.kind == "f" and a.dtype.itemsize < 8 for a in given.values())
    first = next((q for q in wanted if per_q[q] > FIT), None) if len(wanted) > 1 else None
    fields_ = _fields(engine, base, given)
    notes = _weak_input(engine, base, wanted)
    tiers = {"float64": r0 <= FIT, "float32": r0 <= FLOAT32_FIT}

    singles = _candidates(engine, base, known, given)
    tried = 0
    results: list[tuple[float, _Candidate, bool]] = []  # (residual, candidate, +float32)
    noop: set[str] = set()

    def evaluate(cands: list[_Candidate], bar: float) -> list[tuple[float, _Candidate, bool]]:
        nonlocal tried
        found = []
        for c in cands:
            tried += 1
            arrays = engine.arrays(c.setup)
            if arrays is None:
                continue
            if len(c.names) == 1 and all(np.array_equal(arrays[q], ref[q], equal_nan=True)
                                         for q in wanted if arrays[q].shape == ref[q].shape):
                noop.add(c.name)
            res = _residual_of(arrays, given)
            if res <= bar:  # bar is FLOAT32_FIT when theirs is float32
                found.append((res, c, narrow and not c.float32_nature))
            elif res <= FLOAT32_FIT and not narrow and not c.float32_nature:
                # float64 values at float32 distance: named "<h>+float32". A hypothesis that is
                # float32 by nature (OpenCV's resize of a float32 map) cannot explain a
                # float64 array: it differs from the bilinear map by float32 rounding only,
                # so it would pass for the verdict "float32"
                found.append((res, c, True))
        return found

    bar = FLOAT32_FIT if narrow else FIT
    if r0 <= FIT and not narrow:
        verdict: str = "match"
        # named bugs only (a convention equal to npcam's by definition is no weakness of
        # the batch), fitting at the float64 bar (OpenCV's float32 resize is ruled out)
        invisible = [c for res, c, f32 in evaluate(singles, FIT)
                     if not f32 and res <= FIT and c.setup.convention is None]
        if invisible:
            names = sorted({c.name for c in invisible}, key=_order)
            notes.append(f"this {' and '.join(wanted)} on this batch cannot reveal "
                         f"{', '.join(names)}: {'each gives' if len(names) > 1 else 'it gives'} "
                         "npcam's array here")
        hyps: list[Hypothesis] = []
    elif narrow and r0 <= FLOAT32_FIT:
        verdict = "float32"
        hyps = [Hypothesis("float32", "Agrees to float32 rounding: the computation (or its result) "
                           "is in float32.", r0, 0)]
    else:
        exact = [t for t in evaluate(singles, bar) if not t[2]]
        results = exact
        if not exact and r0 > FLOAT32_FIT:
            loose = [t for t in evaluate(singles, bar) if t[2]]
            results = loose
            if not loose:
                pairs = [p for i, a in enumerate(singles) for b in singles[i + 1:]
                         if a.name not in noop and b.name not in noop
                         if (p := _combine(a, b)) is not None]
                results = evaluate(pairs, bar)
        if results:
            verdict = "explained"
            hyps = _ranked(results, engine, fields_)
        elif r0 <= FLOAT32_FIT:
            verdict = "float32"
            hyps = [Hypothesis("float32", "Agrees to float32 rounding: the computation (or its "
                               "result) is in float32.", r0, 0)]
        else:
            verdict = "unexplained"
            hyps = []
    concentration = _concentration(given, ref, first or wanted[0]) if verdict == "unexplained" else {
        "images": None, "channels": None, "border_fraction": None}
    explanation = _explain(verdict, hyps, wanted, r0, first, concentration, tried, given, ref)
    for note in notes:
        warnings.warn(note, WeakTestInputWarning, stacklevel=2)
    return Diagnosis(r0 <= FIT, verdict, hyps, first, concentration, notes, explanation,  # type: ignore[arg-type]
                     wanted, r0, tried, tiers)


def _ranked(results: list[tuple[float, _Candidate, bool]], engine: _Engine,
            fields_: dict[str, Any]) -> list[Hypothesis]:
    best: dict[str, tuple[float, _Candidate, bool]] = {}
    for res, c, f32 in results:
        name = c.name + ("+float32" if f32 else "")
        if name not in best or res < best[name][0]:
            best[name] = (res, c, f32)
    order = sorted(best.items(), key=lambda kv: kv[1][0])
    grouped: list[tuple[int, str, tuple[float, _Candidate, bool]]] = []
    group, start = -1, -math.inf
    for name, item in order:
        if item[0] - start > TIE:
            group, start = group + 1, item[0]
        grouped.append((group, name, item))
    # within a tied group the residuals differ by rounding only: the simplest first (one
    # bug before two, a named bug before a convention), then the table's order
    grouped.sort(key=lambda g: (g[0], len(g[2][1].names) + g[2][2],
                                [_order(n) for n in g[2][1].names], g[2][0]))
    out: list[Hypothesis] = []
    for group, name, (res, c, f32) in grouped:
        f = dict(fields_)
        f.update(_other(engine, c))
        text = _description(c, engine, f)
        if f32:
            text = text[:-1] + ", and the computation is in float32."
        out.append(Hypothesis(name, text, res, group))
    return out


def _other(engine: _Engine, c: _Candidate) -> dict[str, Any]:
    r = engine.raw(c.setup) if engine.family is None else None
    return {"other": r.other if r is not None else ""}


def _fields(engine: _Engine, base: Setup, given: dict[str, np.ndarray]) -> dict[str, Any]:
    r = engine.raw(base) if engine.family is None else None
    h = w = 0
    if r is not None and r.a is not None:
        h, w = r.a.shape[2:]
    elif engine.layer is not None:
        a = engine.trace.activations[engine.layer]
        h, w = a.shape[-2:]
    return {"Z": h * w, "h": h, "w": w, "layer": repr(engine.layer), "classes": engine.num_classes,
            "other": ""}


def _weak_input(engine: _Engine, base: Setup, wanted: tuple[str, ...]) -> list[str]:
    """What the batch cannot reveal, from its structure."""
    notes: list[str] = []
    n = engine.x.shape[0]
    t = engine.t_ref
    if n == 1:
        notes.append("the batch holds one image: batch-mixing bugs (batch-mean-alpha, "
                     "target-first-argmax) would not show")
    elif len(set(t.tolist())) == 1 and not set(wanted) <= {"logits", "activations"}:
        what = "predict" if engine.target_arg is None else "are explained for"
        notes.append(f"all images {what} class {int(t[0])}: a target bug (target-first-argmax, "
                     "batch-mean-alpha across classes) would not show")
    if engine.family is None and set(wanted) & {"cam", "cam_upsampled", "cam_normalized", "guided_grad_cam",
                                                 "counterfactual"}:
        r = engine.raw(base)
        if r is not None and r.a is not None:
            alpha, a = engine.alpha(base, r)
            m = np.einsum("nk,nkhw->nhw", alpha, a)
            if m.min() >= 0:
                notes.append("the raw map is ≥ 0 everywhere: a missing ReLU (no-relu) would not show")
            elif m.max() <= 0:
                notes.append("the raw map is ≤ 0 everywhere: the map is 0 and hides every bug of α")
    return notes


def _concentration(given: dict[str, np.ndarray], ref: dict[str, np.ndarray], q: str) -> dict[str, Any]:
    t, r = given[q], ref[q]
    out: dict[str, Any] = {"images": None, "channels": None, "border_fraction": None}
    if t.shape != r.shape:
        return out
    with np.errstate(all="ignore"):
        d = np.abs(t.astype(np.float64) - r)
    d = np.where(np.isfinite(d), d, np.finfo(np.float64).max / 1e10)
    scale = max(float(np.abs(r).max()), float(np.abs(t.astype(np.float64)).max()), np.finfo(np.float64).tiny)
    if d.ndim >= 1:
        per = d.reshape(len(d), -1).max(axis=1) / scale
        out["images"] = [int(i) for i in np.argsort(-per) if per[i] > FIT]
    if d.ndim == 4 or (d.ndim == 2 and q in ("alpha", "logits")):
        per = np.moveaxis(d, 1, 0).reshape(d.shape[1], -1).max(axis=1) / scale
        out["channels"] = [int(i) for i in np.argsort(-per) if per[i] > FIT]
    d = np.where(d > FIT * scale, d, 0.0)  # rounding-level differences are no difference
    if q in _SPATIAL and d.ndim >= 3 and min(d.shape[-2:]) > 2:
        inner = d[..., 1:-1, 1:-1].sum()
        total = d.sum()
        out["border_fraction"] = float((total - inner) / total) if total > 0 else 0.0
    return out


def _explain(verdict: str, hyps: list[Hypothesis], wanted: tuple[str, ...], r0: float,
             first: str | None, conc: dict[str, Any], tried: int, given: dict[str, np.ndarray],
             ref: dict[str, np.ndarray]) -> str:
    what = wanted[0] if len(wanted) == 1 else "arrays (" + ", ".join(wanted) + ")"
    agrees = "agrees" if len(wanted) == 1 else "agree"
    shape = [q for q in wanted if given[q].size != ref[q].size or
             np.squeeze(given[q]).shape != np.squeeze(ref[q]).shape]
    if verdict == "match":
        return f"Your {what} {agrees} with npcam's to {r0:.1e} of its scale (bar {FIT:.0e}): no difference."
    if verdict == "float32":
        return (f"Your {what} {agrees} to float32 rounding: residual {r0:.1e}; PASS at the "
                f"float32 tier ({FLOAT32_FIT:.0e}), FAIL at the float64 bar ({FIT:.0e}).")
    lead = f"The first quantity that differs is {first}. " if first else ""
    if verdict == "explained":
        best = [h for h in hyps if h.group == 0]
        text = lead + best[0].description
        if len(best) > 1:
            text += (" Equally consistent on this input: " + ", ".join(h.name for h in best[1:]) + ".")
        text += f" With it, every value agrees to {best[0].residual:.0e}"
        text += (f" (without it, the residual is {r0:.1e}: max|theirs − npcam's| / the larger "
                 "max|·|)." if math.isfinite(r0) else ".")
        return text
    if shape:
        q = shape[0]
        return (lead + f"Your {q} has shape {given[q].shape}, npcam's {ref[q].shape}, and none of the "
                f"{tried} hypotheses tried (singly and in pairs) gives your shape and values.")
    parts = [f"No hypothesis of npcam's reproduces your {what} ({tried} tried, singly and in pairs): "
             f"the residual is {r0:.1e}."]
    if conc["images"] is not None:
        parts.append(f"It sits in image(s) {conc['images'][:8]}" + (
            f", channel(s) {conc['channels'][:8]}" if conc["channels"] else "") + ".")
    if conc["border_fraction"] is not None:
        parts.append(f"{conc['border_fraction']:.0%} of it lies on the map's outer ring of pixels.")
    return lead + " ".join(parts)

