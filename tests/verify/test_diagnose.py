"""npcam.verify.diagnose on bugs planted with plain NumPy (no torch).

Every buggy array here is built by this file's own code from npcam's correct results
(``npcam.grad_cam``, ``npcam.upsample``, ``npcam.normalize``, model traces): none comes
from ``npcam.verify.hypotheses``, which the diagnosis uses to recompute its hypotheses.
Each planted case first checks that the bug really changes the array on the batch used
(otherwise "explained" would prove nothing), then that the diagnosis names it in its first
tied group. The rules of the verdict (module docstring of ``npcam.verify.diagnose``) are
checked on constructed differences: float32 rounding, random noise, a difference in one
image or on the border only, several quantities at once, weak inputs and bad arguments.
"""

from __future__ import annotations

import copy
import json
import math
import re
import warnings

import numpy as np
import pytest

import npcam
from npcam import WeakTestInputWarning
from npcam.verify import diagnose, revealing_batch

SHAPES = {"gap": (3, 48, 64), "vgg": (3, 64, 64)}  # gap takes a non-square input, vgg's Flatten does not


# ------------------------------------------------------------------------ fixtures
class _Case:
    """A model, a revealing batch and npcam's correct arrays on it."""

    def __init__(self, model, x, layer=None):
        self.model, self.x, self.layer = model, x, layer
        self.r = npcam.grad_cam(model, x, None, layer)
        self.size = x.shape[2:]
        self.n, self.k, self.h, self.w = self.r.activations.shape
        self.z = self.h * self.w
        self.logits = model.run(x).output
        self.classes = self.logits.shape[1]
        self.up = npcam.upsample(self.r.cam, self.size)
        self._gb = None

    @property
    def gb(self):
        """npcam.guided_backprop on the batch (computed once)."""
        if self._gb is None:
            self._gb = npcam.guided_backprop(self.model, self.x)
        return self._gb

    def cam_of(self, alpha, a=None):
        """ReLU(Σ_k α_k A^k), written out here."""
        a = self.r.activations if a is None else a
        return np.maximum(np.einsum("nk,nkhw->nhw", alpha, a), 0.0)


@pytest.fixture(scope="module")
def zoo():
    out = {}
    for name, shape in SHAPES.items():
        model = npcam.zoo.pretrained(name)
        out[name] = _Case(model, revealing_batch(model, shape))
    return out


@pytest.fixture(scope="module")
def gap(zoo):
    return zoo["gap"]


def _graph_model() -> npcam.Graph:
    """conv-bn-relu, a residual block (conv-bn-relu-conv-bn, add, relu), GAP, linear; BN
    in eval mode with non-trivial running statistics, weights drawn from a fixed seed."""
    bn = npcam.BatchNorm2d
    nodes = [
        ("conv1", npcam.Conv2d(3, 6, 3, padding=1, bias=False), ("input",)),
        ("bn1", bn(6), ("conv1",)),
        ("relu1", npcam.ReLU(), ("bn1",)),
        ("b_conv1", npcam.Conv2d(6, 6, 3, padding=1, bias=False), ("relu1",)),
        ("b_bn1", bn(6), ("b_conv1",)),
        ("b_relu", npcam.ReLU(), ("b_bn1",)),
        ("b_conv2", npcam.Conv2d(6, 6, 3, padding=1, bias=False), ("b_relu",)),
        ("b_bn2", bn(6), ("b_conv2",)),
        ("add", npcam.Add(), ("b_bn2", "relu1")),
        ("relu2", npcam.ReLU(), ("add",)),
        ("gap", npcam.GlobalAvgPool2d(), ("relu2",)),
        ("fc", npcam.Linear(6, 5), ("gap",)),
    ]
    model = npcam.Graph(nodes, "fc")
    rng = np.random.default_rng(3)
    leaves = dict(model.named_nodes())
    state = {}
    for key, value in model.state_dict().items():
        node, attr = key.rsplit(".", 1)
        if attr == "num_batches_tracked":
            state[key] = np.array(0, dtype=np.int64)
        elif isinstance(leaves[node], npcam.BatchNorm2d):
            state[key] = (rng.uniform(0.5, 1.5, value.shape) if attr in ("weight", "running_var")
                          else 0.2 * rng.standard_normal(value.shape))
        elif attr == "weight":
            state[key] = rng.standard_normal(value.shape) / np.sqrt(np.prod(value.shape[1:]))
        else:
            state[key] = 0.1 * rng.standard_normal(value.shape)
    model.load_state_dict(state)
    return model.eval()


@pytest.fixture(scope="module")
def graph():
    model = _graph_model()
    return _Case(model, revealing_batch(model, (3, 10, 14)), layer="relu2")


def _run(theirs, case, quantity="cam", **kw):
    """diagnose, with the warnings it raises recorded (their messages returned too)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = diagnose(theirs, case.model, case.x, kw.pop("target", None), kw.pop("layer", case.layer),
                     quantity, **kw)
    return d, [str(w.message) for w in caught if issubclass(w.category, WeakTestInputWarning)]


def _changed(planted, correct) -> bool:
    """The bug changes the array: another shape, or values apart by > 1e-9 of the scale
    (far above the float64 rounding of 1e-16, below an ε of 1e-7 in the normaliser)."""
    planted, correct = np.asarray(planted, np.float64), np.asarray(correct, np.float64)
    if planted.shape != correct.shape:
        return True
    scale = max(float(np.abs(correct).max()), float(np.abs(planted).max()))
    return float(np.abs(planted - correct).max()) > 1e-9 * scale


def _own_residual(t, h) -> float:
    t, h = np.asarray(t, np.float64), np.asarray(h, np.float64)
    return float(np.abs(t - h).max()) / max(float(np.abs(t).max()), float(np.abs(h).max()))


def _group0(d) -> set[str]:
    return {h.name for h in d.hypotheses if h.group == 0}


# ---------------------------------------------------------------- the planted bugs
def _channels_last(t, c):
    """An NCHW array's C-order memory read as (N, h, w, K), back in NCHW order."""
    return np.ascontiguousarray(t).reshape(c.n, c.h, c.w, c.k).transpose(0, 3, 1, 2)


def _planted(c: _Case, bug: str, model_name: str):
    """(their array, quantity, npcam's correct array of that quantity) for one bug."""
    r, a, g = c.r, c.r.activations, c.r.gradients
    alpha = g.mean(axis=(2, 3))
    lo = c.up.min(axis=(1, 2), keepdims=True)
    hi = c.up.max(axis=(1, 2), keepdims=True)
    correct_norm = npcam.normalize(c.up)
    if bug == "alpha-sum":
        return r.cam * c.z, "cam", r.cam
    if bug == "alpha-sum/alpha":
        return g.sum(axis=(2, 3)), "alpha", r.weights
    if bug == "no-relu":
        return r.raw, "cam", r.cam
    if bug == "relu-on-gradients":
        return c.cam_of(np.maximum(g, 0).mean(axis=(2, 3))), "cam", r.cam
    if bug == "relu-on-alpha":
        return c.cam_of(np.maximum(alpha, 0)), "cam", r.cam
    if bug == "softmax-score":
        return npcam.grad_cam(c.model, c.x, score="softmax").cam, "cam", r.cam
    if bug == "log-softmax-score":
        return npcam.grad_cam(c.model, c.x, score="log_softmax").cam, "cam", r.cam
    if bug == "sum-of-logits":
        trace = c.model.run(c.x)
        gs = c.model.vjp(trace, np.ones_like(trace.output), to=r.layer).grad
        return c.cam_of(gs.mean(axis=(2, 3))), "cam", r.cam
    if bug == "target-first-argmax":
        t = np.full(c.n, int(c.logits[0].argmax()))
        return npcam.grad_cam(c.model, c.x, t).cam, "cam", r.cam
    if bug == "target-off-by-one/plus":
        return npcam.grad_cam(c.model, c.x, (r.target + 1) % c.classes).cam, "cam", r.cam
    if bug == "target-off-by-one/minus":
        return npcam.grad_cam(c.model, c.x, (r.target - 1) % c.classes).cam, "cam", r.cam
    if bug == "layer-earlier":
        earlier = {"gap": "features.12", "vgg": "features.14"}[model_name]
        return npcam.grad_cam(c.model, c.x, None, earlier).cam, "cam", r.cam
    if bug == "batch-mean-alpha":
        return c.cam_of(np.tile(alpha.mean(axis=0), (c.n, 1))), "cam", r.cam
    if bug == "channels-last":
        return c.cam_of(_channels_last(g, c).mean(axis=(2, 3)), _channels_last(a, c)), "cam", r.cam
    if bug == "transposed-map":
        return np.swapaxes(r.cam, 1, 2), "cam", r.cam
    if bug == "nearest-upsampling":
        return npcam.upsample(r.cam, c.size, mode="nearest"), "cam_upsampled", c.up
    if bug == "align-corners":
        return npcam.upsample(r.cam, c.size, align_corners=True), "cam_upsampled", c.up
    if bug == "normalize-before-resize":
        return npcam.upsample(npcam.normalize(r.cam), c.size), "cam_normalized", correct_norm
    if bug == "normalize-without-min":
        return c.up / hi, "cam_normalized", correct_norm
    if bug == "epsilon:1e-07":
        return (c.up - lo) / (hi - lo + 1e-7), "cam_normalized", correct_norm
    if bug == "counterfactual-relu-alpha":
        return c.cam_of(np.maximum(-alpha, 0)), "counterfactual", np.maximum(-r.raw, 0)
    if bug == "counterfactual-sign":
        return np.maximum(r.raw, 0), "counterfactual", np.maximum(-r.raw, 0)
    if bug == "deconvnet-rule":
        return npcam.deconvnet(c.model, c.x), "guided_backprop", c.gb
    if bug == "standard-rule":
        return npcam.saliency(c.model, c.x), "guided_backprop", c.gb
    if bug == "cam-over-z":
        return r.cam / c.z, "cam", r.cam
    raise AssertionError(bug)


#: planted bug -> the hypothesis name expected in group 0
PLANTED = {
    "alpha-sum": "alpha-sum",
    "alpha-sum/alpha": "alpha-sum",
    "no-relu": "no-relu",
    "relu-on-gradients": "relu-on-gradients",
    "relu-on-alpha": "relu-on-alpha",
    "softmax-score": "softmax-score",
    "log-softmax-score": "log-softmax-score",
    "sum-of-logits": "sum-of-logits",
    "target-first-argmax": "target-first-argmax",
    "target-off-by-one/plus": "target-off-by-one",
    "target-off-by-one/minus": "target-off-by-one",
    "layer-earlier": "layer-earlier",
    "batch-mean-alpha": "batch-mean-alpha",
    "channels-last": "channels-last",
    "transposed-map": "transposed-map",
    "nearest-upsampling": "nearest-upsampling",
    "align-corners": "align-corners",
    "normalize-before-resize": "normalize-before-resize",
    "normalize-without-min": "normalize-without-min",
    "epsilon:1e-07": "epsilon:1e-07",
    "counterfactual-relu-alpha": "counterfactual-relu-alpha",
    "counterfactual-sign": "counterfactual-sign",
    "deconvnet-rule": "deconvnet-rule",
    "standard-rule": "standard-rule",
    "cam-over-z": "cam-over-z",
}


@pytest.mark.parametrize("bug", list(PLANTED))
@pytest.mark.parametrize("model_name", list(SHAPES))
def test_planted_bug_is_named_in_group_0(zoo, model_name, bug):
    """Each bug, planted with NumPy on a trained zoo model and its revealing batch, changes
    the array there and is diagnosed "explained" with its name in the first tied group;
    the fitting hypotheses reproduce the array to the float64 bar (≤ 1e-10) and the
    reference's own residual is the planted difference (> 1e-10)."""
    c = zoo[model_name]
    theirs, quantity, correct = _planted(c, bug, model_name)
    assert _changed(theirs, correct), "the bug does not change the array on this batch"
    d, _ = _run(theirs, c, quantity)
    assert d.verdict == "explained", str(d)
    assert PLANTED[bug] in _group0(d), str(d)
    assert not d.matches and d.residual > 1e-10
    assert all(h.residual <= 1e-10 for h in d.hypotheses if h.group == 0)
    assert d.hypotheses[0].group == 0


def test_transposed_map_on_non_square_map_has_swapped_shape(gap):
    """On the gap model's 48×64 input the map is 6×8; transposed it is 8×6, and the
    diagnosis names transposed-map whose description states both sizes (w×h for h×w)."""
    theirs = np.swapaxes(gap.r.cam, 1, 2)
    assert (gap.h, gap.w) == (6, 8) and theirs.shape[1:] == (8, 6)
    d, _ = _run(theirs, gap)
    assert d.verdict == "explained"
    best = d.hypotheses[0]
    assert best.name == "transposed-map"
    assert "8×6" in best.description and "6×8" in best.description


def test_alpha_sum_description_states_z(gap):
    """The alpha-sum description fills in the layer's size: 6×8 positions, Z = 48."""
    d, _ = _run(gap.r.cam * 48, gap)
    best = d.hypotheses[0]
    assert best.name == "alpha-sum"
    assert "6×8" in best.description and "Z = 48" in best.description
    assert "alpha-sum" in str(d) and "verdict: explained" in str(d)


def _graph_planted(c: _Case, bug: str):
    r = c.r
    if bug == "alpha-sum":
        return r.cam * c.z
    if bug == "pre-add-layer":  # the residual branch's BatchNorm before the add
        return npcam.grad_cam(c.model, c.x, None, "b_bn2").cam
    if bug == "layer-earlier":
        return npcam.grad_cam(c.model, c.x, None, "add").cam
    if bug == "input-gradient":  # A at relu2, ∂y/∂A taken at its input (the add)
        g_in = npcam.grad_cam(c.model, c.x, None, "add").gradients
        return c.cam_of(g_in.mean(axis=(2, 3)))
    if bug == "train-mode":
        return npcam.grad_cam(copy.deepcopy(c.model).train(), c.x, None, "relu2").cam
    raise AssertionError(bug)


@pytest.mark.parametrize("bug", ["alpha-sum", "pre-add-layer", "layer-earlier", "input-gradient",
                                 "train-mode"])
def test_planted_bug_on_graph(graph, bug):
    """On a hand-built residual Graph (conv-bn-relu, residual block, add, relu, GAP, fc)
    with layer relu2: a planted bug that needs the graph's structure (the node before the
    layer, the residual branch before the add, the layer's input, BatchNorm in training
    mode) is named in group 0."""
    theirs = _graph_planted(graph, bug)
    assert _changed(theirs, graph.r.cam)
    d, _ = _run(theirs, graph)
    assert d.verdict == "explained", str(d)
    assert bug in _group0(d), str(d)


def test_inplace_activations_on_graph(graph):
    """Layer 'add' followed by an (in-place, in torch) ReLU: A read after the ReLU
    overwrote it (relu2's output) with ∂y/∂A at the add -> inplace-activations in group 0."""
    at_add = npcam.grad_cam(graph.model, graph.x, None, "add")
    theirs = np.maximum(np.einsum("nk,nkhw->nhw", at_add.weights, graph.r.activations), 0.0)
    assert _changed(theirs, at_add.cam)
    d, _ = _run(theirs, graph, layer="add")
    assert d.verdict == "explained"
    assert "inplace-activations" in _group0(d), str(d)


# ------------------------------------------------------------------- the verdicts
@pytest.mark.parametrize("quantity", ["cam", "raw", "alpha", "scores", "gradients", "activations",
                                      "cam_upsampled", "cam_normalized", "counterfactual",
                                      "guided_backprop", "guided_grad_cam"])
def test_correct_array_matches(zoo, quantity):
    """npcam's own correct array of each quantity (computed through the public methods)
    gives verdict "match", no hypotheses, matches True, both tiers passed."""
    for c in zoo.values():
        r = c.r
        correct = {
            "cam": r.cam, "raw": r.raw, "alpha": r.weights, "scores": r.scores, "gradients": r.gradients,
            "activations": r.activations, "cam_upsampled": c.up, "cam_normalized": npcam.normalize(c.up),
            "counterfactual": npcam.counterfactual(c.model, c.x).cam,
        }.get(quantity)
        if correct is None:
            correct = c.gb if quantity == "guided_backprop" else c.up[:, None] * c.gb
        d, _ = _run(correct, c, quantity)
        assert d.verdict == "match", str(d)
        assert d.hypotheses == [] and d.matches is True
        assert d.tiers == {"float64": True, "float32": True}
        assert d.residual <= 1e-10


def test_float32_cast_is_float32_verdict(gap):
    """The correct cam cast to float32: verdict "float32" with hypotheses[0] "float32",
    PASS at the float32 tier and FAIL at the float64 bar; its residual is max|t − c| /
    max(max|t|, max|c|) as computed here."""
    t = gap.r.cam.astype(np.float32)
    d, _ = _run(t, gap)
    assert d.verdict == "float32"
    assert d.hypotheses[0].name == "float32" and d.hypotheses[0].group == 0
    assert d.tiers == {"float32": True, "float64": False}
    assert not d.matches
    mine = _own_residual(t, gap.r.cam)
    assert 1e-10 < mine <= 2.0**-24
    assert d.hypotheses[0].residual == pytest.approx(mine, rel=1e-6)
    assert d.residual == pytest.approx(mine, rel=1e-6)


def test_float64_with_float32_sized_noise_is_float32(gap):
    """A float64 array 1e-7 (relative) away from the correct one, which no hypothesis
    explains at 1e-10: verdict "float32" (1e-10 < residual ≤ 1e-5)."""
    rng = np.random.default_rng(1)
    t = gap.r.cam * (1.0 + 1e-7 * rng.uniform(-1, 1, gap.r.cam.shape))
    d, _ = _run(t, gap)
    assert d.verdict == "float32"
    assert d.hypotheses[0].name == "float32"
    assert d.tiers == {"float32": True, "float64": False}
    assert 1e-10 < d.residual <= 1e-7


def test_random_noise_is_unexplained(gap):
    """Gaussian noise of 1e-3 of the scale added everywhere: no hypothesis fits, verdict
    "unexplained", the concentration has its three keys and the explanation says so."""
    rng = np.random.default_rng(2)
    scale = float(np.abs(gap.r.cam).max())
    t = gap.r.cam + 1e-3 * scale * rng.standard_normal(gap.r.cam.shape)
    d, _ = _run(t, gap)
    assert d.verdict == "unexplained" and d.hypotheses == []
    assert set(d.concentration) == {"images", "channels", "border_fraction"}
    assert sorted(d.concentration["images"]) == [0, 1, 2, 3]
    assert 0.0 < d.concentration["border_fraction"] < 1.0
    assert "No hypothesis" in d.explanation
    assert d.tiers == {"float32": False, "float64": False}


def test_difference_in_one_image_is_located(gap):
    """Noise planted in image 2 only: concentration["images"] == [2]."""
    rng = np.random.default_rng(3)
    t = gap.r.cam.copy()
    t[2] += 1e-3 * float(np.abs(t).max()) * rng.standard_normal(t[2].shape)
    d, _ = _run(t, gap)
    assert d.verdict == "unexplained"
    assert d.concentration["images"] == [2]


def test_difference_on_the_border_ring(gap):
    """Noise planted only on the outer ring of pixels of every map: border_fraction is 1
    (the interior differs by the reference's rounding only, ~1e-16 of the scale), and the
    explanation reports 100 %."""
    rng = np.random.default_rng(4)
    t = gap.r.cam.copy()
    ring = np.ones((gap.h, gap.w), dtype=bool)
    ring[1:-1, 1:-1] = False
    t[:, ring] += 1e-3 * float(np.abs(t).max()) * rng.standard_normal((gap.n, int(ring.sum())))
    d, _ = _run(t, gap)
    assert d.verdict == "unexplained"
    assert d.concentration["border_fraction"] == pytest.approx(1.0, abs=1e-9)
    assert "100%" in d.explanation


def test_difference_in_one_channel_is_located(gap):
    """Noise planted in channel 5 of the gradients only: concentration["channels"] ==
    [5] (and every image is listed)."""
    rng = np.random.default_rng(5)
    t = gap.r.gradients.copy()
    t[:, 5] += 1e-3 * float(np.abs(t).max()) * rng.standard_normal(t[:, 5].shape)
    d, _ = _run(t, gap, "gradients")
    assert d.verdict == "unexplained"
    assert d.concentration["channels"] == [5]
    assert sorted(d.concentration["images"]) == [0, 1, 2, 3]


def test_tied_groups_are_ordered(gap):
    """The ranking rule on fitting hypotheses with known residuals: group numbers start at
    0 and never decrease, each group's residuals lie within 1e-12 of its first, successive
    groups' first residuals are more than 1e-12 apart and increase, and inside a group a
    named bug comes before a convention (the residuals differ by rounding only)."""
    import importlib

    from npcam.verify.hypotheses import BUGS

    D = importlib.import_module("npcam.verify.diagnose")  # the module (npcam.verify.diagnose is the function)

    engine = D._Engine(gap.model, gap.x, None, None, gap.x.shape[2:], ("cam",), "grad-cam", None)
    fields_ = D._fields(engine, D.Setup(), {})
    by_name = {b.name: b for b in BUGS}

    def cand(name):
        if name.startswith("convention:"):
            bug = D.Bug(name, "a convention", (("convention", name.split(":", 1)[1]),), frozenset({"cam"}))
        else:
            bug = by_name[name]
        return D._Candidate((name,), (bug,), bug.apply(D.Setup()))

    results = [(3e-16, cand("convention:captum"), False), (5e-16, cand("no-relu"), False),
               (2e-11, cand("alpha-sum"), False), (2.05e-11, cand("relu-on-alpha"), False),
               (7e-11, cand("transposed-map"), False)]
    hs = D._ranked(results, engine, fields_)
    assert [h.name for h in hs] == ["no-relu", "convention:captum", "alpha-sum", "relu-on-alpha",
                                    "transposed-map"]
    groups = [h.group for h in hs]
    assert groups == [0, 0, 1, 1, 2]
    first = {}
    for h in hs:
        first.setdefault(h.group, min(x.residual for x in hs if x.group == h.group))
        assert abs(h.residual - first[h.group]) <= 1e-12
    leads = [first[g] for g in sorted(first)]
    assert all(b - a > 1e-12 for a, b in zip(leads[:-1], leads[1:], strict=True))


def test_tied_group_holds_equivalent_bugs(gap):
    """On the gap model G is constant over positions (the layer feeds GAP directly), so
    mean(max(G, 0)) = max(mean G, 0): relu-on-gradients and relu-on-alpha give the same
    array and are both in group 0, with residuals within 1e-12."""
    g = gap.r.gradients
    assert np.ptp(g, axis=(2, 3)).max() <= 1e-15 * np.abs(g).max()
    d, _ = _run(gap.cam_of(np.maximum(g.mean(axis=(2, 3)), 0)), gap)
    tied = [h for h in d.hypotheses if h.group == 0]
    assert {"relu-on-gradients", "relu-on-alpha"} <= {h.name for h in tied}
    assert max(h.residual for h in tied) - min(h.residual for h in tied) <= 1e-12


def test_residual_field_is_the_documented_formula(gap):
    """The alpha-sum hypothesis' residual is max|t − h| / max(max|t|, max|h|) with h the
    α-summed map computed here from the gradients (≤ 1e-15: the sum and the mean × Z agree
    to rounding); the reference's residual (no hypothesis) is the same formula with npcam's
    map, 1 − 1/Z here."""
    t = gap.r.cam * gap.z
    h = gap.cam_of(gap.r.gradients.sum(axis=(2, 3)))
    d, _ = _run(t, gap)
    best = d.hypotheses[0]
    assert best.name == "alpha-sum"
    mine = _own_residual(t, h)
    assert best.residual <= 1e-15 and mine <= 1e-15
    assert abs(best.residual - mine) <= 1e-15
    assert d.residual == pytest.approx(1.0 - 1.0 / gap.z, rel=1e-12)


# ----------------------------------------------------------- several quantities at once
def test_dict_input_first_divergence_alpha(gap):
    """{"alpha": α·Z, "cam": cam·Z}: one hypothesis must reproduce both -> alpha-sum; the
    first quantity that differs (in computation order) is alpha."""
    d, _ = _run({"alpha": gap.r.weights * gap.z, "cam": gap.r.cam * gap.z}, gap, None)
    assert d.verdict == "explained"
    assert d.hypotheses[0].name == "alpha-sum"
    assert d.first_divergence == "alpha"
    assert d.quantities == ("alpha", "cam")


def test_dict_input_first_divergence_cam(gap):
    """{"scores": correct, "cam": planted (×Z)}: the scores agree, so the first divergence is
    cam; alpha-sum (which leaves y^c alone) explains both."""
    d, _ = _run({"cam": gap.r.cam * gap.z, "scores": gap.r.scores}, gap, None)
    assert d.verdict == "explained"
    assert d.first_divergence == "cam"
    assert "alpha-sum" in _group0(d)
    assert d.quantities == ("scores", "cam")  # computation order, not the dict's


def test_dict_input_needs_one_hypothesis_for_all(gap):
    """{"scores": softmax scores, "cam": cam·Z}: no single bug changes both the score and
    α's sum, but their pair does — the combined name is written in the table's order."""
    p = npcam.grad_cam(gap.model, gap.x, score="softmax")
    d, _ = _run({"scores": p.scores, "cam": p.cam * gap.z}, gap, None)
    assert d.verdict == "explained", str(d)
    assert d.first_divergence == "scores"
    assert "alpha-sum+softmax-score" in _group0(d)


def test_dict_of_correct_arrays_matches(gap):
    """Several correct quantities together: "match", no first divergence."""
    d, _ = _run({"scores": gap.r.scores, "alpha": gap.r.weights, "cam": gap.r.cam}, gap, None)
    assert d.verdict == "match" and d.first_divergence is None


# -------------------------------------------------------------------- weak inputs
def test_one_class_batch_warns(gap):
    """A batch whose images all predict one class cannot reveal target bugs: a
    WeakTestInputWarning naming that class, also listed in Diagnosis.warnings."""
    pred = gap.logits.argmax(axis=1)
    same = np.flatnonzero(pred == pred[0])
    assert len(same) >= 2
    x = gap.x[same]
    cls = int(pred[0])
    with pytest.warns(WeakTestInputWarning) as rec:
        d = diagnose(npcam.grad_cam(gap.model, x).cam, gap.model, x)
    assert any(re.search(rf"class {cls}\b", str(w.message)) for w in rec)
    assert d.verdict == "match"
    assert any(f"class {cls}" in w and "target" in w for w in d.warnings)


def test_one_image_batch_warns(gap):
    """A batch of one image cannot reveal batch-mixing bugs: a WeakTestInputWarning."""
    x = gap.x[:1]
    with pytest.warns(WeakTestInputWarning) as rec:
        d = diagnose(npcam.grad_cam(gap.model, x).cam, gap.model, x)
    assert any("one image" in str(w.message) for w in rec)
    assert any("one image" in w for w in d.warnings)


def test_nonnegative_raw_map_warns_and_hides_no_relu(gap):
    """Images whose raw map is ≥ 0 everywhere (found among random draws) cannot reveal a
    missing ReLU: the map without ReLU equals npcam's, the verdict is "match", and the
    warnings say the map is ≥ 0 and name no-relu."""
    rng = np.random.default_rng(5)
    xs = rng.standard_normal((24, 3, 48, 64)) + rng.standard_normal((24, 3, 1, 1))
    raw = npcam.grad_cam(gap.model, xs).raw
    keep = np.flatnonzero(raw.reshape(24, -1).min(axis=1) >= 0)[:2]
    assert len(keep) >= 1
    x = xs[keep]
    r = npcam.grad_cam(gap.model, x)
    np.testing.assert_array_equal(r.raw, r.cam)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        d = diagnose(r.raw, gap.model, x)
    assert d.verdict == "match"
    assert any("≥ 0 everywhere" in w for w in d.warnings)
    assert any("no-relu" in w and "cannot reveal" in w for w in d.warnings)


def test_normalized_map_hides_alpha_sum(gap):
    """Min-max normalisation removes the factor Z: the normalised map of cam·Z equals
    npcam's, so the verdict is "match", with a warning that names alpha-sum as invisible."""
    theirs = npcam.normalize(npcam.upsample(gap.r.cam * gap.z, gap.size))
    with pytest.warns(WeakTestInputWarning, match="alpha-sum"):
        d = diagnose(theirs, gap.model, gap.x, quantity="cam_normalized")
    assert d.verdict == "match" and d.hypotheses == []
    assert any("alpha-sum" in w for w in d.warnings)


# ------------------------------------------------------------------------- errors
def test_argument_errors(gap):
    """Bad arguments are refused with the documented exception types and messages."""
    cam, m, x = gap.r.cam, gap.model, gap.x
    with pytest.raises(ValueError, match="quantity"):
        diagnose(cam, m, x, quantity="heatmap")
    with pytest.raises(TypeError, match="real numbers"):
        diagnose(np.array([["a", "b"]]), m, x)
    with pytest.raises(ValueError, match="unknown quantities"):
        diagnose({"cams": cam}, m, x)
    with pytest.raises(ValueError, match="at least one"):
        diagnose({}, m, x)
    with pytest.raises(ValueError, match="score"):
        diagnose(cam, m, x, score="prob")
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        diagnose(cam, m, x[0, 0])
    with pytest.raises(ValueError, match="convention"):
        diagnose(cam, m, x, convention="nosuchlib")
    with pytest.raises(ValueError, match="relu_rule"):
        diagnose(cam, m, x, relu_rule="leaky")
    with pytest.raises(TypeError, match="layer"):
        diagnose(cam, m, x, layer=3)


# ------------------------------------------------------------------------ reports
def test_to_dict_is_json_and_round_trips(gap):
    """to_dict() is plain JSON (json.dumps works, also for an infinite residual) and keeps
    the verdict, the hypothesis names, groups and residuals."""
    d, _ = _run(gap.r.cam * gap.z, gap)
    back = json.loads(json.dumps(d.to_dict()))
    assert back["verdict"] == d.verdict == "explained"
    assert [h["name"] for h in back["hypotheses"]] == [h.name for h in d.hypotheses]
    assert [h["group"] for h in back["hypotheses"]] == [h.group for h in d.hypotheses]
    assert back["hypotheses"][0]["residual"] == d.hypotheses[0].residual
    assert back["quantities"] == ["cam"]
    # a shape nobody can reproduce: the reference's residual is inf, written as a string
    odd = np.ones((gap.n, 5, 5))
    d2, _ = _run(odd, gap)
    assert d2.verdict == "unexplained" and math.isinf(d2.residual)
    back2 = json.loads(json.dumps(d2.to_dict()))
    assert back2["residual"] == "inf"
    assert "shape" in d2.explanation


# ---------------------------------------------------------------- conventions and CAM
def test_torchcam_convention_is_named(gap):
    """torchcam's map (npcam.conventions, min-shifted and divided by max + 1e-8 at the
    layer's resolution) given as cam -> "convention:torchcam" in group 0; told the
    convention, the same array is a "match"."""
    theirs = npcam.conventions.grad_cam(gap.model, gap.x, None, None, "torchcam")
    assert _changed(theirs, gap.r.cam)
    d, _ = _run(theirs, gap)
    assert d.verdict == "explained"
    assert "convention:torchcam" in _group0(d)
    d2, _ = _run(theirs, gap, convention="torchcam")
    assert d2.verdict == "match" and d2.hypotheses == []


def test_cam_is_grad_cam_times_z(gap):
    """On A -> GAP -> FC, ∂y^c/∂A^k_ij = w^c_k / Z, so Grad-CAM's α = w^c / Z and CAM's map
    is Z × Grad-CAM's: npcam.cam's map given as Grad-CAM -> alpha-sum in group 0. Told the
    method (convention "npcam:method=cam"), CAM's map ÷ Z is cam-over-z, and CAM's own map
    a match."""
    cam_map = npcam.cam(gap.model, gap.x).cam
    assert float(np.abs(cam_map - gap.z * gap.r.cam).max()) <= 1e-12 * float(np.abs(cam_map).max())
    d, _ = _run(cam_map, gap)
    assert d.verdict == "explained" and "alpha-sum" in _group0(d)
    d2, _ = _run(cam_map / gap.z, gap, convention="npcam:method=cam")
    assert d2.verdict == "explained" and "cam-over-z" in _group0(d2), str(d2)
    d3, _ = _run(cam_map, gap, convention="npcam:method=cam")
    assert d3.verdict == "match"
