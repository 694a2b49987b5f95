"""Shared helpers of the torchvision cross-checks (``test_torchvision_*.py``).

* :func:`build`: a torchvision classifier with ``weights=None`` (GoogLeNet and Inception-v3
  with ``aux_logits=False, init_weights=True``), float64, eval mode, its init drawn after
  ``torch.manual_seed(seed)`` and then :func:`randomize`\\ d — a freshly initialised network
  hides mistakes: BN is the identity with zero shift, VGG's and ConvNeXt's biases are 0,
  ConvNeXt's ``layer_scale`` is 1e-6 (notes/torchvision-graphs.md § 2.15).
* :func:`torch_layer`: torch's own activation A and gradient ∂(Σ_n y^{c_n}_n)/∂A at a module
  path (forward hook) or an fx node name (``torch.fx.Interpreter``), immune to in-place
  ops (:func:`no_inplace`; the hook keeps the module's output and hands a clone on), with
  torch's float32-rounded Hardsigmoid derivative replaced by the exact one
  (:class:`ExactHardsigmoid`).
* :func:`node_errors`: the scaled error of every fx node's output and gradient, npcam
  against torch; :func:`first_forward_difference` / :func:`first_backward_difference`
  name the first differing node, for the message of a failing test.

torch, torchvision are imported by the test modules first (``pytest.importorskip``).
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torchvision

nn = torch.nn

#: The 15 torchvision classifiers of issue 11, in the order of the notes' tables.
MODELS = (
    "alexnet", "vgg16", "vgg16_bn", "googlenet", "inception_v3", "resnet18", "resnet50",
    "densenet121", "squeezenet1_1", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0",
    "regnet_y_400mf", "convnext_tiny", "shufflenet_v2_x1_0",
)

#: Input size (px) of the cross-checks: 64 where the target map is then 2×2–4×4 (the
#: adaptive pools hit the general case: VGG's 2×2 → 7×7); AlexNet 96 (pool5 2×2 → 6×6;
#: at 64 pool5 is 1×1) and Inception-v3 107 (Mixed_7c 2×2; at its minimum 75 it is 1×1,
#: which makes pytorch-grad-cam's min-max map identically 0).
SIZES = {name: 64 for name in MODELS} | {"alexnet": 96, "inception_v3": 107}

#: The default Grad-CAM layer ``from_torch`` records (``layer=None``), issue 11's table.
DEFAULT_LAYERS = {
    "alexnet": "features.11", "vgg16": "features.29", "vgg16_bn": "features.42",
    "googlenet": "inception5b", "inception_v3": "Mixed_7c", "resnet18": "layer4",
    "resnet50": "layer4", "densenet121": "relu", "squeezenet1_1": "features",
    "mobilenet_v2": "features", "mobilenet_v3_small": "features", "efficientnet_b0": "features",
    "regnet_y_400mf": "trunk_output", "convnext_tiny": "features", "shufflenet_v2_x1_0": "conv5",
}

#: pytorch-grad-cam's target module (its README's ``layer4[-1]`` / ``features[-1]``, and the
#: "last block before the head" for the others; notes § 5), as a module path.
PGC_LAYERS = {
    "alexnet": "features.12", "vgg16": "features.30", "vgg16_bn": "features.43",
    "googlenet": "inception5b", "inception_v3": "Mixed_7c", "resnet18": "layer4.1",
    "resnet50": "layer4.2", "densenet121": "features", "squeezenet1_1": "features.12",
    "mobilenet_v2": "features.18", "mobilenet_v3_small": "features.12",
    "efficientnet_b0": "features.8", "regnet_y_400mf": "trunk_output.block4",
    "convnext_tiny": "features.7", "shufflenet_v2_x1_0": "conv5",
}

#: (K, h, w) of the default layer's map at 224 px (299 for nothing here), from the notes'
#: per-model tables (conv5_3 / conv5 are 14×14 / 13×13: before pool5).
SHAPES_224 = {
    "alexnet": (256, 13, 13), "vgg16": (512, 14, 14), "vgg16_bn": (512, 14, 14),
    "googlenet": (1024, 7, 7), "inception_v3": (2048, 5, 5), "resnet18": (512, 7, 7),
    "resnet50": (2048, 7, 7), "densenet121": (1024, 7, 7), "squeezenet1_1": (512, 13, 13),
    "mobilenet_v2": (1280, 7, 7), "mobilenet_v3_small": (576, 7, 7),
    "efficientnet_b0": (1280, 7, 7), "regnet_y_400mf": (440, 7, 7),
    "convnext_tiny": (768, 7, 7), "shufflenet_v2_x1_0": (1024, 7, 7),
}

#: Models whose default layer is followed by exactly GAP → (Dropout) → Linear: CAM applies.
CAM_MODELS = (
    "googlenet", "inception_v3", "resnet18", "resnet50", "densenet121", "mobilenet_v2",
    "efficientnet_b0", "regnet_y_400mf", "shufflenet_v2_x1_0",
)

#: The classifier's final Linear (whose rows are CAM's weights), as a module path.
FC = {
    "googlenet": "fc", "inception_v3": "fc", "resnet18": "fc", "resnet50": "fc",
    "densenet121": "classifier", "mobilenet_v2": "classifier.1", "efficientnet_b0": "classifier.1",
    "regnet_y_400mf": "fc", "shufflenet_v2_x1_0": "fc",
}


#: Per-model seed overrides. With seed 1100 the randomly initialised AlexNet's Grad-CAM map
#: of its argmax class is negative at every position of both images (at conv5 and pool5),
#: so that pytorch-grad-cam's map after ReLU and min-max is identically 0.
SEEDS = {"alexnet": 1200}


def seed_of(name: str) -> int:
    """A stable per-model seed (1100 + its index in :data:`MODELS`, or :data:`SEEDS`)."""
    return SEEDS.get(name, 1100 + MODELS.index(name))


# --------------------------------------------------------------------------- models
def randomize(model: Any, seed: int, px: int = 64) -> Any:
    """Overwrite, from a seeded ``torch.Generator``: every BatchNorm's weight U(0.5, 1.5)
    and bias N(0, 0.2²); every LayerNorm's weight U(0.5, 1.5) and bias N(0, 0.2²); every
    other bias N(0, 0.1²) (non-zero); ConvNeXt's ``layer_scale`` U(0.5, 1.5). Conv and Linear
    weights keep torchvision's init.

    BatchNorm's running statistics are drawn *around* those of one calibration batch (4
    standard-normal images of ``px`` px, one train-mode forward with a cumulative average):
    running_mean = batch mean + 0.1·σ·N(0, 1), running_var = batch variance × U(0.7, 1.4)
    (positive). Statistics drawn without regard to the signal (e.g. U(0.5, 2)) let the input
    die out with depth: GoogLeNet's logits (trunc-normal init, std 0.01) then depend on the
    input by 1e-12 of their size, EfficientNet-B0's by 2e-13, MobileNet's by 1e-9, so a
    logits check at 1e-10 would check only the bias path."""
    gen = torch.Generator().manual_seed(seed)

    def uniform(shape: Any, lo: float, hi: float) -> Any:
        return lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=torch.float64)

    def normal(shape: Any, std: float) -> Any:
        return std * torch.randn(shape, generator=gen, dtype=torch.float64)

    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)):
                m.weight.copy_(uniform(m.weight.shape, 0.5, 1.5))
                m.bias.copy_(normal(m.bias.shape, 0.2))
            elif isinstance(getattr(m, "bias", None), nn.Parameter):
                m.bias.copy_(normal(m.bias.shape, 0.1))
            scale = getattr(m, "layer_scale", None)
            if isinstance(scale, nn.Parameter):
                scale.copy_(uniform(scale.shape, 0.5, 1.5))
        momenta = [m.momentum for m in norms]
        modes = [(m, m.training) for m in model.modules()]
        try:
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # cumulative average: after one batch, its statistics
            model.train()
            model(torch.randn((4, 3, px, px), generator=gen, dtype=torch.float64))
        finally:
            for m, momentum in zip(norms, momenta, strict=True):
                m.momentum = momentum
            for m, mode in modes:
                m.training = mode
        for m in norms:
            std = m.running_var.sqrt()
            m.running_mean.add_(0.1 * std * normal(std.shape, 1.0))
            m.running_var.mul_(uniform(std.shape, 0.7, 1.4))
    return model


def build(name: str, *, transform_input: bool = False, seed: int | None = None) -> Any:
    """The torchvision model ``name`` (``weights=None``), float64, eval, randomised."""
    seed = seed_of(name) if seed is None else seed
    kwargs: dict[str, Any] = {"weights": None}
    if name in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=False, init_weights=True, transform_input=transform_input)
    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(**kwargs)
    return randomize(model.double().eval(), seed, SIZES[name])


def inputs(name: str, px: int | None = None, batch: int = 2, seed: int | None = None) -> np.ndarray:
    """A seeded standard-normal (batch, 3, px, px) float64 input."""
    px = SIZES[name] if px is None else px
    rng = np.random.default_rng(1100 + MODELS.index(name) + 7 if seed is None else seed)
    return rng.standard_normal((batch, 3, px, px))


def logits(model: Any, x: np.ndarray) -> np.ndarray:
    """torch's float64 logits, eager mode."""
    with torch.no_grad():
        return model(torch.from_numpy(x.copy())).numpy()


# --------------------------------------------------------------------------- in-place ops
@contextlib.contextmanager
def no_inplace(model: Any) -> Iterator[Any]:
    """Every module's ``inplace`` attribute False inside the block (restored after)."""
    saved = [(m, m.inplace) for m in model.modules() if isinstance(getattr(m, "inplace", None), bool)]
    try:
        for m, _ in saved:
            m.inplace = False
        yield model
    finally:
        for m, flag in saved:
            m.inplace = flag


class ExactHardsigmoid(nn.Module):
    """``relu6(x + 3) / 6``: torch's Hardsigmoid forward with the exact derivative 1/6.

    torch 2.14.1's CPU ``hardsigmoid_backward`` multiplies by ``1.0f / 6.0f`` computed in
    float32 even for float64 tensors (0.1666666716337204, 3.0e-8 above 1/6), which puts a
    3e-8 relative error into every gradient that passes MobileNetV3's SE gates."""

    def forward(self, x: Any) -> Any:
        return torch.nn.functional.relu6(x + 3.0) / 6.0


@contextlib.contextmanager
def exact_hardsigmoid(model: Any) -> Iterator[Any]:
    """Every ``nn.Hardsigmoid`` replaced by :class:`ExactHardsigmoid` inside the block."""
    swapped = [(parent, key, child) for parent in list(model.modules())
               for key, child in parent._modules.items() if type(child) is nn.Hardsigmoid]
    try:
        for parent, key, _ in swapped:
            parent._modules[key] = ExactHardsigmoid()
        yield model
    finally:
        for parent, key, child in swapped:
            parent._modules[key] = child


@contextlib.contextmanager
def reference(model: Any) -> Iterator[Any]:
    """:func:`no_inplace` and :func:`exact_hardsigmoid`: the model as an exact reference."""
    with no_inplace(model), exact_hardsigmoid(model):
        yield model


_INPLACE_FUNCTIONS = {operator.iadd, operator.isub, operator.imul, operator.itruediv}


class _Tracer(torch.fx.Tracer):
    """fx's default tracer, with :class:`ExactHardsigmoid` a leaf: its node keeps the name
    and target of the Hardsigmoid it replaces, so that the fx node names stay npcam's."""

    def is_leaf_module(self, m: Any, qualname: str) -> bool:
        return isinstance(m, ExactHardsigmoid) or super().is_leaf_module(m, qualname)


def traced(model: Any) -> Any:
    """``torch.fx.symbolic_trace(model)`` (sharing the model's modules) with every
    ``inplace=True`` keyword of a function call turned False; call it inside
    :func:`no_inplace`. ``AssertionError`` if another in-place op remains."""
    gm = torch.fx.GraphModule(model, _Tracer().trace(model))
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.kwargs.get("inplace") is True:
            node.kwargs = {**node.kwargs, "inplace": False}
        name = str(getattr(node.target, "__name__", node.target))
        assert node.target not in _INPLACE_FUNCTIONS, f"in-place op at fx node {node.name}"
        assert not (node.op in ("call_method", "call_function") and name.endswith("_")
                    and not name.startswith("__")), f"in-place op {name} at fx node {node.name}"
    gm.recompile()
    return gm


class _Recorder(torch.fx.Interpreter):
    """Runs a GraphModule, keeping the outputs of the nodes in ``keep`` (all when None)."""

    def __init__(self, gm: Any, keep: set[str] | None) -> None:
        super().__init__(gm)
        self.keep = keep
        self.kept: dict[str, Any] = {}

    def run_node(self, n: Any) -> Any:
        out = super().run_node(n)
        if self.keep is None or n.name in self.keep:
            self.kept[n.name] = out
        return out


def _is_module_path(model: Any, layer: str) -> bool:
    try:
        model.get_submodule(layer)
    except AttributeError:
        return False
    return True


def torch_layer(model: Any, x: np.ndarray, target: np.ndarray, layer: str) -> tuple[np.ndarray, ...]:
    """``(logits, A, ∂(Σ_n y^{c_n}_n)/∂A)`` from torch autograd at ``layer``.

    ``layer`` is a module path (its forward output, read by a forward hook that keeps the
    output and hands a clone on, so nothing downstream can modify the kept tensor in
    place; a module called more than once is refused) or else an fx node name (run by a
    :class:`torch.fx.Interpreter` over :func:`traced`). Both run with every ``inplace``
    attribute False and Hardsigmoid's exact derivative (:func:`reference`).
    """
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    index = torch.arange(len(target)), torch.from_numpy(np.asarray(target, dtype=np.int64))
    with reference(model), torch.enable_grad():
        if _is_module_path(model, layer):
            seen: list[Any] = []

            def hook(module: Any, args: Any, out: Any) -> Any:
                seen.append(out)
                return out.clone()

            handle = model.get_submodule(layer).register_forward_hook(hook)
            try:
                out = model(xt)
            finally:
                handle.remove()
            assert len(seen) == 1, f"module {layer!r} ran {len(seen)} times"
            a = seen[0]
        else:
            rec = _Recorder(traced(model), {layer})
            out = rec.run(xt)
            assert layer in rec.kept, f"{layer!r} is neither a module path nor an fx node name"
            a = rec.kept[layer]
        (g,) = torch.autograd.grad(out[index].sum(), a)
    return out.detach().numpy(), a.detach().numpy(), g.numpy()


# --------------------------------------------------------------------------- every node
def scaled_error(ours: Any, ref: Any) -> float:
    """``max|ours − ref| / max|ref|`` (inf for a shape mismatch)."""
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if ours.shape != ref.shape:
        return float("inf")
    return float(np.abs(ours - ref).max()) / max(float(np.abs(ref).max()), np.finfo(float).tiny)


def node_errors(model: Any, graph: Any, x: np.ndarray,
                target: np.ndarray | None = None) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """Per fx node, the scaled error of npcam's output (``graph.run(x).activations``) and,
    with ``target``, of its gradient ∂(Σ_n y^{c_n}_n)/∂(output) (``vjp(record=True)``)
    against torch (a :class:`torch.fx.Interpreter` run of :func:`traced` under
    :func:`reference`, autograd). Forward errors in graph order, backward errors in
    backward order; nodes without a float tensor output (sizes) are left out."""
    trace = graph.run(x)
    xt = torch.from_numpy(x.copy()).requires_grad_(target is not None)
    with reference(model), torch.enable_grad():
        gm = traced(model)
        rec = _Recorder(gm, None)
        out = rec.run(xt)
        order = [n.name for n in gm.graph.nodes if n.name in trace.activations and isinstance(
            rec.kept.get(n.name), torch.Tensor) and rec.kept[n.name].is_floating_point()]
        grads: dict[str, Any] = {}
        if target is not None:
            names = [n for n in order if rec.kept[n].requires_grad]
            index = torch.arange(len(target)), torch.from_numpy(np.asarray(target, dtype=np.int64))
            found = torch.autograd.grad(out[index].sum(), [rec.kept[n] for n in names], allow_unused=True)
            grads = {n: g for n, g in zip(names, found, strict=True) if g is not None}
    forward = [(n, scaled_error(trace.activations[n], rec.kept[n].detach().numpy())) for n in order]
    backward: list[tuple[str, float]] = []
    if target is not None:
        cot = np.zeros_like(trace.output)
        cot[np.arange(len(target)), target] = 1.0
        ours = graph.vjp(trace, cot, record=True).node_grads
        backward = [(n, scaled_error(ours[n], grads[n].numpy())) for n in reversed(order)
                    if n in grads and n in ours]
    return forward, backward


def _first(errors: list[tuple[str, float]], bar: float, what: str) -> str:
    for name, err in errors:
        if err > bar:
            return f"first differing {what}: fx node {name}, scaled error {err:.3e}"
    return f"no {what} differs by more than {bar:.0e} ({len(errors)} nodes compared)"


def first_forward_difference(model: Any, graph: Any, x: np.ndarray, bar: float = 1e-10) -> str:
    """The first fx node (in graph order) whose npcam output differs from torch's by more
    than ``bar`` × max|torch|, as a sentence (npcam node names are the fx node names)."""
    return _first(node_errors(model, graph, x)[0], bar, "output")


def first_backward_difference(model: Any, graph: Any, x: np.ndarray, target: np.ndarray,
                              bar: float = 1e-10) -> str:
    """The first fx node in *backward* order whose gradient ∂(Σ_n y^{c_n}_n)/∂(output)
    differs between npcam and torch autograd, as a sentence."""
    return _first(node_errors(model, graph, x, target)[1], bar, "gradient (backward order)")
