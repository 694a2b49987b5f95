"""FullGrad against torch autograd, pytorch-grad-cam 1.5.7 and the authors' code.

* Completeness on torchvision's resnet18 imported with ``from_torch`` (20 BatchNorm2d in
  eval mode with random statistics, residual adds, max-pool, GAP, FC): the forward pass's
  y^c against the sum of the terms of the hand-derived backward pass — the single best
  end-to-end test of npcam's backward passes.
* Each bias term against torch autograd, with the gradients read by tensor hooks on the
  module outputs (registered in forward hooks). Not by differentiating w.r.t. the output
  tensor afterwards: resnet18 modifies the BN outputs in place (``relu_``,
  ``+= identity``), and a gradient taken w.r.t. a tensor modified in place is the
  gradient w.r.t. its *new* value (cam-family.md § 10: such a reference failed
  completeness by 0.23). Bar 1e-10 (float64 everywhere).
* The ``pytorch-grad-cam`` convention against ``pytorch_grad_cam.FullGrad``: float32 maps
  (the library casts to float32 for OpenCV's resize). With OpenCV's IPP off the maps are
  bit-identical (measured 0.0 on all three models); with IPP on (OpenCV's default) IPP's
  resize rounds differently by a few float32 ulps (measured ≤ 8.3e-7 on maps in [0, 1]).
* The ``authors-code`` convention against the official code's computation rebuilt in
  torch with its own hooks (``register_backward_hook`` on every Conv2d, Linear and
  BatchNorm2d, biases in ``model.modules()`` order, gradients indexed backwards,
  ``_postProcess`` and ``F.interpolate(align_corners=True)``): 1e-10.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pytest

REASON = "needs the crosscheck extra: pip install -e '.[test,crosscheck]'"
torch = pytest.importorskip("torch", reason=REASON)
pytest.importorskip("torchvision", reason=REASON)
pytest.importorskip("pytorch_grad_cam", reason=REASON)
cv2 = pytest.importorskip("cv2", reason=REASON)

import _cam_family as cf  # noqa: E402
from pytorch_grad_cam import FullGrad  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

import npcam  # noqa: E402
from npcam.methods.full_grad import BIAS_PREFIX, completeness_gap, full_grad  # noqa: E402

pytestmark = pytest.mark.crosscheck

F = torch.nn.functional
nn = torch.nn
SMALL_TARGETS = [4, 2]


def _models():
    net, graph, x = cf.resnet18_pair()
    t18 = [int(graph.run(x).output.argmax())]
    small_net, small, xs = cf.small_pair(False)
    signed_net, signed, xsg = cf.small_pair(True)
    return {
        "small": (small_net, small, xs, SMALL_TARGETS),
        "signed": (signed_net, signed, xsg, SMALL_TARGETS),
        "resnet18": (net, graph, x, t18),
    }


def _abs_total(r) -> np.ndarray:
    n = r.scores.shape[0]
    total = np.abs(r.extra["input_term"]).reshape(n, -1).sum(axis=1)
    for k, v in r.extra.items():
        if k.startswith(BIAS_PREFIX):
            total = total + np.abs(v).reshape(n, -1).sum(axis=1)
    return total


def _bias_modules(net, types):
    return [(name, m) for name, m in net.named_modules()
            if isinstance(m, types) and getattr(m, "bias", None) is not None]


def _torch_grads(net, x, target, modules):
    """∂y^c/∂x and ∂y^c/∂(output of each module), read by tensor hooks on the module
    outputs registered in forward hooks (right under later in-place ops)."""
    grads: dict[str, torch.Tensor] = {}

    def hook(name):
        def forward_hook(module, inputs, output):
            output.register_hook(lambda g: grads.__setitem__(name, g.detach().clone()))
        return forward_hook

    handles = [m.register_forward_hook(hook(name)) for name, m in modules]
    try:
        xi = cf.torch_input(x).requires_grad_()
        out = net(xi)
        out[torch.arange(len(target)), torch.as_tensor(target)].sum().backward()
    finally:
        for h in handles:
            h.remove()
    return xi.grad.numpy(), {k: v.numpy() for k, v in grads.items()}


def _torch_bias(m) -> np.ndarray:
    if isinstance(m, nn.BatchNorm2d):
        eff = m.bias - m.running_mean * m.weight / torch.sqrt(m.running_var + m.eps)
        return eff.detach().numpy()
    return m.bias.detach().numpy()


# ----------------------------------------------------------------------- completeness
def test_completeness_resnet18():
    """resnet18 (from_torch, BN eval with random statistics, in-place ReLUs and residual
    adds in torch): Σ x ⊙ ∇ₓy^c + Σ_BN (β − γμ/σ) ⊙ ∂y^c/∂z + b_fc = y^c at 1e-12 of
    Σ|terms|. The convs have no bias: 20 BN terms and the FC's."""
    _, graph, x = cf.resnet18_pair()
    r = full_grad(graph, x)
    gap = completeness_gap(r)
    assert np.max(np.abs(gap) / _abs_total(r)) <= 1e-12
    nodes = [k[len(BIAS_PREFIX):] for k in r.extra if k.startswith(BIAS_PREFIX)]
    kinds = [type(graph.node(k).layer).__name__ for k in nodes]
    assert kinds.count("BatchNorm2d") == 20 and kinds.count("Linear") == 1 and len(kinds) == 21


@pytest.mark.parametrize("name", ["small", "resnet18"])
def test_bias_terms_match_autograd(check, name):
    """Every bias term b ⊙ ∂y^c/∂z (BN: torch's own β − γμ/sqrt(var + ε)) and the input
    term x ⊙ ∂y^c/∂x against torch autograd with tensor hooks on the module outputs:
    1e-10. Module paths map to npcam nodes through the graph's aliases."""
    net, model, x, target = _models()[name]
    r = full_grad(model, x, target)
    modules = _bias_modules(net, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))
    ig, grads = _torch_grads(net, x, target, modules)
    check("full-grad input term", r.extra["input_term"], ig * x)
    resolve = getattr(model, "resolve", None)
    seen = 0
    for path, m in modules:
        node = resolve(path) if callable(resolve) else path.replace("classifier.2", "classifier.1")
        g = grads[path]
        shape = [1] * g.ndim
        shape[1] = -1
        check("full-grad bias terms", r.extra[BIAS_PREFIX + node], _torch_bias(m).reshape(shape) * g)
        seen += 1
    assert seen == len([k for k in r.extra if k.startswith(BIAS_PREFIX)])


# ------------------------------------------------------------------- pytorch-grad-cam
@pytest.fixture
def ipp():
    """Set OpenCV's IPP switch for one test and restore it afterwards."""
    before = cv2.ipp.useIPP()
    yield cv2.ipp.setUseIPP
    cv2.ipp.setUseIPP(before)


@pytest.mark.parametrize("name", ["small", "signed", "resnet18"])
@pytest.mark.parametrize(("use_ipp", "bar"), [(False, 3e-7), (True, 2e-6)])
def test_pytorch_grad_cam_convention(check, ipp, name, use_ipp, bar):
    """``conventions.cam("full-grad", ..., convention="pytorch-grad-cam")`` equals
    ``pytorch_grad_cam.FullGrad(model, [])(x, targets)`` (grad-cam 1.5.7). Float32 maps in
    [0, 1]: with IPP off 3e-7 (measured 0.0, bit-identical; the float64 gradients of torch
    and npcam differ in the last bits, which could flip a float32 rounding), with IPP on
    2e-6 (IPP's resize, a few ulps; measured ≤ 8.3e-7)."""
    net, model, x, target = _models()[name]
    ipp(use_ipp)
    with contextlib.redirect_stdout(io.StringIO()):  # the library prints about target_layers
        lib = FullGrad(net, [])(cf.torch_input(x), [ClassifierOutputTarget(c) for c in target])
    ours = npcam.conventions.cam("full-grad", model, x, target, convention="pytorch-grad-cam")
    assert ours.dtype == lib.dtype == np.float32 and ours.shape == lib.shape
    check(f"full-grad pytorch-grad-cam (IPP {'on' if use_ipp else 'off'})", ours, lib, bar)


# ------------------------------------------------------------------------ authors' code
def _official_saliency(net, x, target):
    """The official code's computation (idiap/fullgrad-saliency, saliency/fullgrad.py and
    tensor_extractor.py), rebuilt with its own mechanisms: module backward hooks on every
    Conv2d, Linear, BatchNorm2d; biases in ``model.modules()`` order, gradients indexed
    ``L − 1 − i``; ``-nll_loss(out, c, reduction="sum")``; ``_postProcess`` (abs, per image
    min over everything, then / (max + 1e-6)); bilinear align_corners=True; channel sums.
    Also returns its completeness sum (``checkCompleteness``)."""
    biases, feature_grads, handles = [], [], []
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
            handles.append(m.register_backward_hook(
                lambda mod, gin, gout: feature_grads.append(gout[0]) if mod.bias is not None else None))
            if isinstance(m, nn.BatchNorm2d):
                eff = -(m.running_mean * m.weight / torch.sqrt(m.running_var + m.eps)) + m.bias
                biases.append(eff.data)
            elif m.bias is not None:
                biases.append(m.bias.data)
    try:
        image = cf.torch_input(x).requires_grad_()
        out = net(image)
        scalar = -1.0 * F.nll_loss(out, torch.as_tensor(target), reduction="sum")
        input_grad = torch.autograd.grad(scalar, image)[0]
    finally:
        for h in handles:
            h.remove()
    terms = []
    for i, b in enumerate(biases):
        g = feature_grads[len(biases) - 1 - i]
        shape = [1] * g.dim()
        shape[1] = b.size(0)
        terms.append(g * b.view(shape))

    def post(v, eps=1e-6):
        v = abs(v)
        flat = v.view(v.size(0), -1)
        v = v - flat.min(1, keepdim=True)[0].unsqueeze(1).unsqueeze(1)
        flat = v.view(v.size(0), -1)
        return v / (flat.max(1, keepdim=True)[0].unsqueeze(1).unsqueeze(1) + eps)

    with torch.no_grad():
        cam = post(input_grad * image).sum(1, keepdim=True)
        for t in terms:
            if t.dim() == image.dim():
                cam = cam + F.interpolate(post(t), size=x.shape[2:], mode="bilinear",
                                          align_corners=True).sum(1, keepdim=True)
        total = float((input_grad * image).sum() + sum(t.sum() for t in terms))
    return cam.numpy(), total, out.detach().numpy()


@pytest.mark.parametrize("name", ["small", "signed", "resnet18"])
def test_authors_code_convention(check, name):
    """``convention="authors-code"`` equals the official computation rebuilt in torch
    (1e-10), and equals npcam's ``psi="per-layer"`` map (the official ψ; these models have
    no implicit biases, so the layer sets agree); the official completeness check holds."""
    net, model, x, target = _models()[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates register_backward_hook
        ref, total, out = _official_saliency(net, x, target)
    ours = npcam.conventions.cam("full-grad", model, x, target, convention="authors-code")
    check("full-grad authors-code", ours, ref)
    per_layer = full_grad(model, x, target, psi="per-layer").raw[:, None]
    check("full-grad per-layer psi vs authors-code", per_layer, ref)
    assert abs(total - out[np.arange(len(target)), target].sum()) <= 1e-12 * abs(total)


def _mm(a):
    a = np.asarray(a, dtype=np.float64).reshape(a.shape[0], -1)
    a = a - a.min(axis=1, keepdims=True)
    return a / a.max(axis=1, keepdims=True)


@pytest.mark.parametrize(("name", "pgc_paper", "official_paper"),
                         [("small", 0.111, 0.459), ("resnet18", 0.176, 0.0925)])
def test_libraries_depart_from_the_paper(name, pgc_paper, official_paper):
    """What the libraries return vs the paper's per-channel ψ with corner-aligned
    upsampling (npcam's default), as max differences of min-max-normalised maps
    (measured: pytorch-grad-cam 0.111 on SmallCNN and 0.176 on resnet18 at 64 px, mostly
    its half-pixel resize — against npcam with align_corners=False it is 4.4e-4 and 1.5e-3;
    the official code 0.459 and 0.0925, its joint per-layer ψ). Deterministic models and
    inputs: the values are pinned to 1e-3."""
    net, model, x, target = _models()[name]
    paper = full_grad(model, x, target).raw
    pgc = npcam.conventions.cam("full-grad", model, x, target, convention="pytorch-grad-cam")
    official = npcam.conventions.cam("full-grad", model, x, target, convention="authors-code")[:, 0]
    assert abs(np.abs(_mm(pgc) - _mm(paper)).max() - pgc_paper) <= 1e-3
    assert abs(np.abs(_mm(official) - _mm(paper)).max() - official_paper) <= 1e-3
    half = full_grad(model, x, target, align_corners=False).raw
    assert np.abs(_mm(pgc) - _mm(half)).max() <= 2e-3


# ------------------------------------------------------------------------ refusal
def test_mobilenet_v3_small_is_refused():
    """MobileNetV3 (Hardswish, SE products x·hardsigmoid(...)) is not piecewise linear:
    full_grad refuses it naming the first such node and pointing to allow_nonlinear;
    with allow_nonlinear=True it warns and the terms do not add up to y^c."""
    import torchvision

    torch.manual_seed(0)
    graph = npcam.from_torch(torchvision.models.mobilenet_v3_small(weights=None).double().eval())
    x = np.random.default_rng(0).normal(size=(1, 3, 64, 64))
    message = (r"node 'features_0_2' is not piecewise linear in x \(Hardswish is not piecewise "
               r"linear\) \(and 27 more node\(s\).*allow_nonlinear=True")
    with pytest.raises(ValueError, match=message):
        full_grad(graph, x)
    with pytest.warns(npcam.NpcamWarning, match="not complete"):
        r = full_grad(graph, x, allow_nonlinear=True)
    assert np.isfinite(r.raw).all()
    # random weights: y^c = 7e-10, the gap 13 % of Σ|terms| (3.0e-9 of 2.3e-8)
    assert np.abs(completeness_gap(r))[0] > 1e-2 * _abs_total(r)[0]
