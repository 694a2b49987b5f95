"""The planted-bug suite of :func:`npcam.verify.check_torch`: hand-written PyTorch
implementations of Grad-CAM, its counterfactual map, CAM, guided backpropagation and
Guided Grad-CAM, each either correct or with exactly ONE planted bug, and the table
(:data:`CASES`) of which name the diagnosis must give for each.

Every implementation here is independent of npcam: torch autograd with forward /
tensor / module-backward hooks, or NumPy on tensors that torch computed. None calls
``npcam.methods`` or ``npcam.verify.hypotheses``; npcam only appears in the tests,
which compare these functions with it (the correct ones to 1e-12) and diagnose the
buggy ones.

Each implementation has the signature ``fn(model, x, target, layer)`` of
``check_torch``: ``model`` a float64 torch model in eval mode (never changed: a function
that needs another mode or dtype works on a deep copy), ``x`` a float64 (N, C, H, W)
tensor, ``target`` None (the argmax per image) or a list of ints, ``layer`` the module
path of the layer A. The planted line of each buggy function is marked ``# BUG``.

Models (:func:`build_model`, seeded random float64 weights and non-trivial BatchNorm
statistics; inputs ``INPUT_SHAPE`` = (3, 20, 24), non-square):

* ``"seq"``: ``nn.Sequential`` Conv(3,6,3,p=1)-BN-ReLU-MaxPool(2)-Conv(6,8,3,p=1)-BN-ReLU-
  GAP-Flatten-Linear(8,5); the layer "6" (the last ReLU, 10×12) feeds GAP→FC.
* ``"seq_inplace"``: the same with both ReLUs ``inplace=True`` (for the in-place bug).
* ``"res"``: a custom ``forward`` (an npcam Graph via torch.fx): stem conv-bn-relu, a
  residual block ``relu(bn2(conv2(relu(bn1(conv1 x)))) + x)``, a concat of two conv
  branches followed by ``cat_relu``, a max-pool, GAP and FC.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

INPUT_SHAPE = (3, 20, 24)


# ============================================================================ models
def _fill(model: nn.Module, seed: int) -> None:
    """Seeded weights; BatchNorm with non-trivial affine parameters and running stats."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                k = m.num_features
                m.weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, k)))
                m.bias.copy_(torch.from_numpy(0.3 * rng.standard_normal(k)))
                m.running_mean.copy_(torch.from_numpy(0.3 * rng.standard_normal(k)))
                m.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 2.0, k)))
            elif isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = int(np.prod(m.weight.shape[1:]))
                m.weight.copy_(torch.from_numpy(rng.standard_normal(tuple(m.weight.shape)) / np.sqrt(fan_in)))
                if m.bias is not None:
                    m.bias.copy_(torch.from_numpy(0.2 * rng.standard_normal(tuple(m.bias.shape))))


def _sequential(inplace: bool) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(inplace=inplace), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=inplace),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    )


class ResBlock(nn.Module):
    """conv-bn-relu-conv-bn, ``relu(bn2 + identity)``; one ReLU module per call."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(k, k, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(k)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(k, k, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(k)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu(out + x)


class ResCat(nn.Module):
    """stem → residual block → concat of two conv branches → ReLU → max-pool → GAP → FC."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.stem_bn = nn.BatchNorm2d(6)
        self.stem_relu = nn.ReLU()
        self.block = ResBlock(6)
        self.branch_a = nn.Conv2d(6, 4, 3, padding=1)
        self.branch_b = nn.Conv2d(6, 4, 1)
        self.cat_relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(self.stem_relu(self.stem_bn(self.stem(x))))
        x = torch.cat([self.branch_a(x), self.branch_b(x)], dim=1)
        x = self.pool(self.cat_relu(x))
        return self.fc(torch.flatten(self.gap(x), 1))


SEEDS = {"seq": 21, "seq_inplace": 21, "res": 48}


@cache
def build_model(name: str) -> nn.Module:
    """The float64 eval-mode torch model ``name`` ("seq", "seq_inplace" or "res")."""
    model = {"seq": lambda: _sequential(False), "seq_inplace": lambda: _sequential(True),
             "res": ResCat}[name]()
    _fill(model, SEEDS[name])
    return model.double().eval()


def random_input(n: int = 4, seed: int = 3) -> torch.Tensor:
    """A float64 (n, 3, 20, 24) batch of standard normals."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.standard_normal((n, *INPUT_SHAPE)))


# ========================================================================== helpers
def _targets(logits: torch.Tensor, target: Any) -> torch.Tensor:
    """The per-image classes: the argmax when ``target`` is None."""
    if target is None:
        return logits.argmax(dim=1)
    return torch.as_tensor(list(target), dtype=torch.long)


def _logit_score(logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Σ_n y^{c_n}_n (one backward gives every image's gradient: images are independent)."""
    return logits.gather(1, t[:, None]).sum()


def _capture(model: nn.Module, x: torch.Tensor, target: Any, layer: str, *,
             score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = _logit_score,
             pick: Callable[[torch.Tensor, Any], torch.Tensor] = _targets,
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(A, G = ∂score/∂A, logits, targets) with a forward hook on ``layer`` that keeps its
    output (a clone) and a tensor hook that keeps the output's gradient."""
    store: dict[str, torch.Tensor] = {}

    def forward_hook(module, inputs, output):
        store["A"] = output.detach().clone()
        output.register_hook(lambda g: store.__setitem__("G", g.detach().clone()))

    handle = model.get_submodule(layer).register_forward_hook(forward_hook)
    try:
        x = x.detach().clone().requires_grad_(True)
        logits = model(x)
        t = pick(logits, target)
        model.zero_grad(set_to_none=True)
        score(logits, t).backward()
    finally:
        handle.remove()
    return store["A"], store["G"], logits.detach(), t


def _weighted(alpha: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """M = Σ_k α_k A^k, (N, K) × (N, K, h, w) -> (N, h, w)."""
    return (alpha[:, :, None, None] * a).sum(dim=1)


def _up(m: torch.Tensor, size: tuple[int, int], **kw: Any) -> torch.Tensor:
    kw = kw or {"mode": "bilinear", "align_corners": False}
    return F.interpolate(m[:, None], size=size, **kw)[:, 0]


def _minmax(u: torch.Tensor) -> torch.Tensor:
    """Per image (u − min) / (max − min); 0 for a constant map."""
    lo = u.amin(dim=(1, 2), keepdim=True)
    hi = u.amax(dim=(1, 2), keepdim=True)
    span = hi - lo
    return torch.where(span > 0, (u - lo) / torch.where(span > 0, span, 1.0), torch.zeros_like(u))


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


class _Rule(torch.autograd.Function):
    """A ReLU whose backward follows ``rule``: guided ``g·[x>0]·[g>0]``, deconvnet
    ``g·[g>0]`` or standard ``g·[x>0]``."""

    @staticmethod
    def forward(ctx, x, rule):
        ctx.save_for_backward(x)
        ctx.rule = rule
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        if ctx.rule == "guided":
            return g * (x > 0) * (g > 0), None
        if ctx.rule == "deconvnet":
            return g * (g > 0), None
        return g * (x > 0), None


class _RuleReLU(nn.Module):
    def __init__(self, rule: str) -> None:
        super().__init__()
        self.rule = rule

    def forward(self, x):
        return _Rule.apply(x, self.rule)


def _with_rule(model: nn.Module, rule: str) -> nn.Module:
    """A deep copy of ``model`` with every ``nn.ReLU`` module replaced by ``_RuleReLU(rule)``."""
    clone = copy.deepcopy(model)
    for name, m in list(clone.named_modules()):
        if isinstance(m, nn.ReLU):
            parent_name, _, child = name.rpartition(".")
            setattr(clone.get_submodule(parent_name) if parent_name else clone, child, _RuleReLU(rule))
    return clone


def _input_gradient(model: nn.Module, x: torch.Tensor, target: Any, rule: str = "guided") -> torch.Tensor:
    """∂y^c/∂x with every ReLU's backward under ``rule``."""
    net = _with_rule(model, rule)
    x = x.detach().clone().requires_grad_(True)
    logits = net(x)
    t = _targets(logits, target)
    (g,) = torch.autograd.grad(_logit_score(logits, t), x)
    return g


# ============================================================ correct implementations
def gradcam_hooks(model, x, target, layer):
    """Correct Grad-CAM with a forward hook and a tensor hook (the usual torch code)."""
    a, g, _, _ = _capture(model, x, target, layer)
    return _np(F.relu(_weighted(g.mean(dim=(2, 3)), a)))


def gradcam_split(model, x, target, layer):
    """Correct Grad-CAM on a forward split at the layer: ``torch.autograd.grad`` of y^c
    with respect to A made a leaf (``nn.Sequential`` with a top-level layer name only)."""
    children = list(model.named_children())
    cut = [n for n, _ in children].index(layer) + 1
    head = nn.Sequential(*[m for _, m in children[:cut]])
    tail = nn.Sequential(*[m for _, m in children[cut:]])
    with torch.no_grad():
        a = head(x)
    a = a.detach().requires_grad_(True)
    logits = tail(a)
    t = _targets(logits, target)
    (g,) = torch.autograd.grad(_logit_score(logits, t), a)
    alpha = g.mean(dim=(2, 3))
    return _np(F.relu(torch.einsum("nk,nkhw->nhw", alpha, a.detach())))


def gradcam_numpy(model, x, target, layer):
    """Correct Grad-CAM recomputed in NumPy from A (forward hook) and G (the module's
    full backward hook, ``grad_output``) with ``einsum``."""
    store: dict[str, np.ndarray] = {}
    mod = model.get_submodule(layer)
    h1 = mod.register_forward_hook(lambda m, i, o: store.__setitem__("A", o.detach().numpy().copy()))
    h2 = mod.register_full_backward_hook(
        lambda m, gi, go: store.__setitem__("G", go[0].detach().numpy().copy()))
    try:
        xx = x.detach().clone().requires_grad_(True)
        logits = model(xx)
        t = _targets(logits, target)
        _logit_score(logits, t).backward()
    finally:
        h1.remove()
        h2.remove()
    a, g = store["A"], store["G"]
    alpha = g.sum(axis=(2, 3)) / (g.shape[2] * g.shape[3])
    return np.maximum(np.einsum("nk,nkhw->nhw", alpha, a), 0.0)


def gradcam_upsampled(model, x, target, layer):
    """Correct Grad-CAM bilinearly upsampled to H×W (half-pixel centres)."""
    a, g, _, _ = _capture(model, x, target, layer)
    return _np(_up(F.relu(_weighted(g.mean(dim=(2, 3)), a)), tuple(x.shape[2:])))


def gradcam_normalized(model, x, target, layer):
    """Correct Grad-CAM upsampled, then min-max normalised per image."""
    a, g, _, _ = _capture(model, x, target, layer)
    return _np(_minmax(_up(F.relu(_weighted(g.mean(dim=(2, 3)), a)), tuple(x.shape[2:]))))


def counterfactual_correct(model, x, target, layer):
    """Correct counterfactual map ReLU(−Σ_k α_k A^k)."""
    a, g, _, _ = _capture(model, x, target, layer)
    return _np(F.relu(-_weighted(g.mean(dim=(2, 3)), a)))


def cam_fc_over_z(model, x, target, layer):
    """Correct CAM of a GAP→FC head divided by Z: (1/Z) Σ_k W[c,k] A^k, which is Grad-CAM
    (before the ReLU, then ReLU'd) under GAP→FC. The FC is the model's last Linear."""
    store: dict[str, torch.Tensor] = {}
    h = model.get_submodule(layer).register_forward_hook(lambda m, i, o: store.__setitem__("A", o.detach()))
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        h.remove()
    fc = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    a = store["A"]
    w = fc.weight.detach()[_targets(logits, target)]
    return _np(F.relu(_weighted(w, a)) / (a.shape[2] * a.shape[3]))


def guided_backprop_correct(model, x, target, layer):
    """Correct guided backpropagation: every ReLU passes back g·[x>0]·[g>0]."""
    return _np(_input_gradient(model, x, target, "guided"))


def guided_backprop_hooks(model, x, target, layer):
    """Correct guided backpropagation the other usual way: each ReLU module's full backward
    hook clamps its grad_input at 0 (g·[x>0] clamped = g·[x>0]·[g>0])."""
    handles = [m.register_full_backward_hook(lambda m, gi, go: (gi[0].clamp(min=0),))
               for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        xx = x.detach().clone().requires_grad_(True)
        logits = model(xx)
        (g,) = torch.autograd.grad(_logit_score(logits, _targets(logits, target)), xx)
    finally:
        for h in handles:
            h.remove()
    return _np(g)


def guided_grad_cam_correct(model, x, target, layer):
    """Correct Guided Grad-CAM: bilinear-upsampled Grad-CAM times guided backprop."""
    a, g, _, _ = _capture(model, x, target, layer)
    up = _up(F.relu(_weighted(g.mean(dim=(2, 3)), a)), tuple(x.shape[2:]))
    return _np(up[:, None] * _input_gradient(model, x, target, "guided"))


def gradcam_float32(model, x, target, layer):
    """Correct Grad-CAM computed in float32 (a float32 copy of the model and input),
    returned as float32."""
    return gradcam_hooks(copy.deepcopy(model).float(), x.float(), target, layer).astype(np.float32)


def gradcam_upsampled_float32(model, x, target, layer):
    """Correct upsampled Grad-CAM computed in float32, returned as float32."""
    return gradcam_upsampled(copy.deepcopy(model).float(), x.float(), target, layer).astype(np.float32)


# ===================================================================== planted bugs
def bug_alpha_sum(model, x, target, layer):
    a, g, _, _ = _capture(model, x, target, layer)
    alpha = g.sum(dim=(2, 3))  # BUG: eq. 1 averages
    return _np(F.relu(_weighted(alpha, a)))


def bug_no_relu(model, x, target, layer):
    a, g, _, _ = _capture(model, x, target, layer)
    return _np(_weighted(g.mean(dim=(2, 3)), a))  # BUG: no ReLU


def bug_relu_on_gradients(model, x, target, layer):
    a, g, _, _ = _capture(model, x, target, layer)
    alpha = F.relu(g).mean(dim=(2, 3))  # BUG: ReLU on G
    return _np(F.relu(_weighted(alpha, a)))


def _softmax_score(logits, t):
    return F.softmax(logits, dim=1).gather(1, t[:, None]).sum()  # BUG: probability


def _log_softmax_score(logits, t):
    return F.log_softmax(logits, dim=1).gather(1, t[:, None]).sum()  # BUG: log-probability


def _sum_score(logits, t):
    return logits.sum()  # BUG: every logit


def bug_softmax_score(model, x, target, layer):
    a, g, _, _ = _capture(model, x, target, layer, score=_softmax_score)
    return _np(F.relu(_weighted(g.mean(dim=(2, 3)), a)))


def bug_log_softmax_score(model, x, target, layer):
    a, g, _, _ = _capture(model, x, target, layer, score=_log_softmax_score)
    return _np(F.relu(_weighted(g.mean(dim=(2, 3)), a)))


def bug_sum_of_logits(model, x, target, layer):
    a, g, _, _ = _capture(model, x, target, layer, score=_sum_score)
    return _np(F.relu(_weighted(g.mean(dim=(2, 3)), a)))


def _first_argmax(logits, target):
    if target is None:
        return logits[0].argmax().repeat(len(logits))  # BUG: image 0's class for all
    return torch.as_tensor(list(target), dtype=torch.long)


def _plus_one(logits, target):
    t = _targets(logits, target)
    return (t + 1) % logits.shape[1]  # BUG: c + 1


def bug_target_first_argmax(model, x, target, layer):
    a, g, _, _ = _capture(model, x, target, layer, pick=_first_argmax)
    return _np(F.relu(_weighted(g.mean(dim=(2, 3)), a)))


def bug_target_plus_one(model, x, target, layer):
    a, g, _, _ = _capture(model, x, target, layer, pick=_plus_one)
    return _np(F.relu(_weighted(g.mean(dim=(2, 3)), a)))


def _shifted_layer(model: nn.Module, layer: str, step: int) -> str:
    """The module path ``step`` places before/after ``layer`` among its siblings."""
    parent_name, _, child = layer.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    names = [n for n, _ in parent.named_children()]
    other = names[names.index(child) + step]
    return f"{parent_name}.{other}" if parent_name else other


def bug_layer_earlier(model, x, target, layer):
    hooked = _shifted_layer(model, layer, -1)  # BUG: the node before the layer
    a, g, _, _ = _capture(model, x, target, hooked)
    return _np(F.relu(_weighted(g.mean(dim=(2, 3)), a)))


def bug_layer_later(model, x, target, layer):
    hooked = _shifted_layer(model, layer, +1)  # BUG: the node after the layer
    a, g, _, _ = _capture(model, x, target, hooked)
    return _np(F.relu(_weighted(g.mean(dim=(2, 3)), a)))


def bug_pre_add_layer(model, x, target, layer):
    hooked = layer.rpartition(".")[0] + ".bn2"  # BUG: the branch's last BN, not the post-add ReLU
    a, g, _, _ = _capture(model, x, target, hooked)
    return _np(F.relu(_weighted(g.mean(dim=(2, 3)), a)))


def bug_cat_input(model, x, target, layer):
    """The concat's output (the ReLU module's input) hooked instead of the ReLU's output."""
    store: dict[str, torch.Tensor] = {}

    def pre_hook(module, inputs):  # BUG: the input of the layer (the node before)
        store["A"] = inputs[0].detach().clone()
        inputs[0].register_hook(lambda g: store.__setitem__("G", g.detach().clone()))

    h = model.get_submodule(layer).register_forward_pre_hook(pre_hook)
    try:
        logits = model(x.detach().clone().requires_grad_(True))
        _logit_score(logits, _targets(logits, target)).backward()
    finally:
        h.remove()
    a, g = store["A"], store["G"]
    return _np(F.relu(_weighted(g.mean(dim=(2, 3)), a)))


def bug_input_gradient(model, x, target, layer):
    store: dict[str, torch.Tensor] = {}
    mod = model.get_submodule(layer)
    h1 = mod.register_forward_hook(lambda m, i, o: store.__setitem__("A", o.detach().clone()))
    h2 = mod.register_full_backward_hook(  # BUG: grad_input, not grad_output
        lambda m, gi, go: store.__setitem__("G", gi[0].detach().clone()))
    try:
        logits = model(x.detach().clone().requires_grad_(True))
        _logit_score(logits, _targets(logits, target)).backward()
    finally:
        h1.remove()
        h2.remove()
    a, g = store["A"], store["G"]
    return _np(F.relu(_weighted(g.mean(dim=(2, 3)), a)))


def bug_inplace_activations(model, x, target, layer):
    """The layer's output kept by reference: the in-place ReLU after it overwrites A; the
    tensor hook registered before the in-place op still receives ∂y/∂(the layer's output)."""
    store: dict[str, torch.Tensor] = {}

    def forward_hook(module, inputs, output):
        store["A"] = output  # BUG: no clone; the next in-place ReLU overwrites it
        output.register_hook(lambda g: store.__setitem__("G", g.detach().clone()))

    h = model.get_submodule(layer).register_forward_hook(forward_hook)
    try:
        logits = model(x.detach().clone().requires_grad_(True))
        _logit_score(logits, _targets(logits, target)).backward()
    finally:
        h.remove()
    a, g = store["A"].detach(), store["G"]
    return _np(F.relu(_weighted(g.mean(dim=(2, 3)), a)))


def bug_batch_mean_alpha(model, x, target, layer):
    a, g, _, _ = _capture(model, x, target, layer)
    alpha = g.mean(dim=(0, 2, 3))[None].expand(len(a), -1)  # BUG: averaged over the batch too
    return _np(F.relu(_weighted(alpha, a)))


def bug_transposed_map(model, x, target, layer):
    a, g, _, _ = _capture(model, x, target, layer)
    cam = F.relu(_weighted(g.mean(dim=(2, 3)), a))
    return _np(cam.permute(0, 2, 1))  # BUG: (N, w, h)


def bug_float32(model, x, target, layer):
    net = copy.deepcopy(model).float()  # BUG: float32 arithmetic
    a, g, _, _ = _capture(net, x.float(), target, layer)
    return _np(F.relu(_weighted(g.mean(dim=(2, 3)), a)))


def bug_train_mode(model, x, target, layer):
    net = copy.deepcopy(model).train()  # BUG: BatchNorm on the batch's statistics
    a, g, _, _ = _capture(net, x, target, layer)
    return _np(F.relu(_weighted(g.mean(dim=(2, 3)), a)))


def bug_nearest_upsampling(model, x, target, layer):
    a, g, _, _ = _capture(model, x, target, layer)
    cam = F.relu(_weighted(g.mean(dim=(2, 3)), a))
    return _np(_up(cam, tuple(x.shape[2:]), mode="nearest"))  # BUG: nearest


def bug_align_corners(model, x, target, layer):
    a, g, _, _ = _capture(model, x, target, layer)
    cam = F.relu(_weighted(g.mean(dim=(2, 3)), a))
    return _np(_up(cam, tuple(x.shape[2:]), mode="bilinear", align_corners=True))  # BUG


def bug_normalize_before_resize(model, x, target, layer):
    a, g, _, _ = _capture(model, x, target, layer)
    cam = F.relu(_weighted(g.mean(dim=(2, 3)), a))
    return _np(_up(_minmax(cam), tuple(x.shape[2:])))  # BUG: normalised, then resized


def bug_normalize_without_min(model, x, target, layer):
    a, g, _, _ = _capture(model, x, target, layer)
    u = _up(F.relu(_weighted(g.mean(dim=(2, 3)), a)), tuple(x.shape[2:]))
    hi = u.amax(dim=(1, 2), keepdim=True)
    return _np(torch.where(hi > 0, u / torch.where(hi > 0, hi, 1.0), 0.0))  # BUG: no min


def bug_counterfactual_relu_alpha(model, x, target, layer):
    a, g, _, _ = _capture(model, x, target, layer)
    alpha = g.mean(dim=(2, 3))
    return _np(F.relu(_weighted(F.relu(-alpha), a)))  # BUG: ReLU(−α), not −α


def bug_counterfactual_sign(model, x, target, layer):
    a, g, _, _ = _capture(model, x, target, layer)
    return _np(F.relu(_weighted(g.mean(dim=(2, 3)), a)))  # BUG: no negation


def bug_deconvnet_rule(model, x, target, layer):
    return _np(_input_gradient(model, x, target, "deconvnet"))  # BUG: dx = dy·[dy>0]


def bug_standard_rule(model, x, target, layer):
    return _np(_input_gradient(model, x, target, "standard"))  # BUG: plain ReLU backward


def bug_ggc_nearest(model, x, target, layer):
    a, g, _, _ = _capture(model, x, target, layer)
    up = _up(F.relu(_weighted(g.mean(dim=(2, 3)), a)), tuple(x.shape[2:]), mode="nearest")  # BUG
    return _np(up[:, None] * _input_gradient(model, x, target, "guided"))


def bug_ggc_no_relu(model, x, target, layer):
    a, g, _, _ = _capture(model, x, target, layer)
    up = _up(_weighted(g.mean(dim=(2, 3)), a), tuple(x.shape[2:]))  # BUG: no ReLU
    return _np(up[:, None] * _input_gradient(model, x, target, "guided"))


def bug_cam_without_over_z(model, x, target, layer):
    """CAM (Zhou et al.) Σ_k W[c,k] A^k without the 1/Z (Grad-CAM × Z under GAP→FC)."""
    store: dict[str, torch.Tensor] = {}
    h = model.get_submodule(layer).register_forward_hook(lambda m, i, o: store.__setitem__("A", o.detach()))
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        h.remove()
    fc = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    w = fc.weight.detach()[_targets(logits, target)]
    return _np(F.relu(_weighted(w, store["A"])))  # BUG (for quantity "cam"): no 1/Z


# ============================================================================ table
@dataclass(frozen=True)
class Case:
    """One implementation under diagnosis: ``expected`` the hypothesis name (or verdict
    "float32"/"match"), ``also`` names accepted in its place when tied with it."""

    id: str
    fn: Callable[..., Any]
    model: str
    layer: str
    quantity: str
    expected: str
    also: tuple[str, ...] = ()
    x: str = "revealing"  #: "revealing" (check_torch builds it) or "random" (random_input())
    reference: Callable[..., Any] | None = field(default=None, compare=False)


_CF, _GB = counterfactual_correct, guided_backprop_correct
_UPC, _NRM, _GGC = gradcam_upsampled, gradcam_normalized, guided_grad_cam_correct

#: The planted bugs (≥ 28). ``reference`` is the correct implementation of the same
#: quantity (default: :func:`gradcam_hooks`); the tests check the bug changes its array.
CASES: tuple[Case, ...] = (
    # --- Grad-CAM on the Sequential with BatchNorm, at the last ReLU ("6", 10×12)
    Case("alpha-sum", bug_alpha_sum, "seq", "6", "cam", "alpha-sum"),
    Case("no-relu", bug_no_relu, "seq", "6", "cam", "no-relu"),
    Case("relu-on-gradients", bug_relu_on_gradients, "seq", "2", "cam", "relu-on-gradients"),
    Case("softmax-score", bug_softmax_score, "seq", "6", "cam", "softmax-score"),
    Case("log-softmax-score", bug_log_softmax_score, "seq", "6", "cam", "log-softmax-score"),
    Case("sum-of-logits", bug_sum_of_logits, "seq", "6", "cam", "sum-of-logits"),
    Case("target-first-argmax", bug_target_first_argmax, "seq", "6", "cam", "target-first-argmax"),
    Case("target-plus-one", bug_target_plus_one, "seq", "6", "cam", "target-off-by-one"),
    Case("layer-earlier", bug_layer_earlier, "seq", "6", "cam", "layer-earlier", ("pre-relu-layer",)),
    Case("layer-later", bug_layer_later, "seq", "2", "cam", "layer-later"),
    Case("input-gradient", bug_input_gradient, "seq", "6", "cam", "input-gradient"),
    Case("inplace-activations", bug_inplace_activations, "seq_inplace", "5", "cam", "inplace-activations"),
    Case("batch-mean-alpha", bug_batch_mean_alpha, "seq", "6", "cam", "batch-mean-alpha"),
    Case("transposed-map", bug_transposed_map, "seq", "6", "cam", "transposed-map"),
    Case("float32", bug_float32, "seq", "6", "cam", "float32"),
    Case("train-mode", bug_train_mode, "seq", "6", "cam", "train-mode"),
    Case("cam-fc-no-over-z", bug_cam_without_over_z, "seq", "6", "cam", "alpha-sum"),
    # --- the map's post-processing
    Case("nearest-upsampling", bug_nearest_upsampling, "seq", "6", "cam_upsampled",
         "nearest-upsampling", reference=_UPC),
    Case("align-corners", bug_align_corners, "seq", "6", "cam_upsampled", "align-corners", reference=_UPC),
    Case("normalize-before-resize", bug_normalize_before_resize, "seq", "6", "cam_normalized",
         "normalize-before-resize", reference=_NRM),
    Case("normalize-without-min", bug_normalize_without_min, "seq", "6", "cam_normalized",
         "normalize-without-min", reference=_NRM),
    # --- counterfactual
    Case("counterfactual-relu-alpha", bug_counterfactual_relu_alpha, "seq", "6", "counterfactual",
         "counterfactual-relu-alpha", reference=_CF),
    Case("counterfactual-sign", bug_counterfactual_sign, "seq", "6", "counterfactual",
         "counterfactual-sign", reference=_CF),
    # --- guided backprop and Guided Grad-CAM
    Case("deconvnet-rule", bug_deconvnet_rule, "seq", "6", "guided_backprop", "deconvnet-rule",
         reference=_GB),
    Case("standard-rule", bug_standard_rule, "seq", "6", "guided_backprop", "standard-rule", reference=_GB),
    Case("ggc-nearest", bug_ggc_nearest, "seq", "6", "guided_grad_cam", "nearest-upsampling",
         reference=_GGC),
    Case("ggc-no-relu", bug_ggc_no_relu, "seq", "6", "guided_grad_cam", "no-relu", reference=_GGC),
    # --- the custom-forward model (an npcam Graph): residual block and concat
    Case("res-alpha-sum", bug_alpha_sum, "res", "block.relu", "cam", "alpha-sum"),
    Case("res-pre-add-layer", bug_pre_add_layer, "res", "block.relu", "cam", "pre-add-layer"),
    Case("res-cat-layer-earlier", bug_cat_input, "res", "cat_relu", "cam", "layer-earlier",
         ("pre-relu-layer",)),
    Case("res-softmax-score", bug_softmax_score, "res", "block.relu", "cam", "softmax-score"),
    Case("res-no-relu", bug_no_relu, "res", "cat_relu", "cam", "no-relu"),
    Case("res-input-gradient", bug_input_gradient, "res", "block.relu", "cam", "input-gradient"),
)


@dataclass(frozen=True)
class Correct:
    """A correct implementation: ``verdict`` "match" (float64) or "float32"."""

    id: str
    fn: Callable[..., Any]
    model: str
    layer: str
    quantity: str
    verdict: str


CORRECT: tuple[Correct, ...] = (
    Correct("gradcam-hooks", gradcam_hooks, "seq", "6", "cam", "match"),
    Correct("gradcam-split", gradcam_split, "seq", "6", "cam", "match"),
    Correct("gradcam-numpy", gradcam_numpy, "seq", "6", "cam", "match"),
    Correct("gradcam-hooks-layer2", gradcam_hooks, "seq", "2", "cam", "match"),
    Correct("gradcam-res", gradcam_hooks, "res", "block.relu", "cam", "match"),
    Correct("gradcam-numpy-res-cat", gradcam_numpy, "res", "cat_relu", "cam", "match"),
    Correct("cam-fc-over-z", cam_fc_over_z, "seq", "6", "cam", "match"),
    Correct("cam-upsampled", gradcam_upsampled, "seq", "6", "cam_upsampled", "match"),
    Correct("cam-normalized", gradcam_normalized, "seq", "6", "cam_normalized", "match"),
    Correct("counterfactual", counterfactual_correct, "seq", "6", "counterfactual", "match"),
    Correct("guided-backprop", guided_backprop_correct, "seq", "6", "guided_backprop", "match"),
    Correct("guided-backprop-hooks", guided_backprop_hooks, "seq", "6", "guided_backprop", "match"),
    Correct("guided-grad-cam", guided_grad_cam_correct, "seq", "6", "guided_grad_cam", "match"),
    Correct("gradcam-float32", gradcam_float32, "seq", "6", "cam", "float32"),
    Correct("cam-upsampled-float32", gradcam_upsampled_float32, "seq", "6", "cam_upsampled", "float32"),
)
