"""npcam's import of the 15 torchvision classifiers (issue 11) against torch, captum and
pytorch-grad-cam, on the same float64 weights.

Every model is built with ``weights=None`` and then randomised (``_torchvision.build``:
BatchNorm affine parameters and running statistics — the latter drawn around those of a
calibration batch, so that the input still drives the logits —, LayerNorm affine
parameters, every bias and ConvNeXt's ``layer_scale``), converted once with
``npcam.from_torch`` (module-scoped fixture: one model alive at a time) and run on a
batch of 2 seeded standard-normal images at 64 px (AlexNet 96, Inception-v3 107: see
``_torchvision.SIZES``); the class explained is torch's argmax per image. Every
comparison is ``max|npcam − ref| / max|ref|`` (the ``check`` fixture of conftest.py,
which prints the worst error per model and quantity at the end of the session) against
1e-10 unless stated:

1. logits against eager torch, and every fx node's output and gradient against an fx
   Interpreter run with autograd;
2. the activations A and ∂y^c/∂A at the default layer and at pytorch-grad-cam's layer
   against torch autograd (``_torchvision.torch_layer``, immune to in-place ops);
3. Grad-CAM's signed map and its ReLU against captum's ``LayerGradCam``;
4. pytorch-grad-cam's ``GradCAM``: its weights, its gradients and its signed map (captured
   by wrapping ``get_cam_weights`` / ``get_cam_image`` on the instance) against npcam's α,
   ∂y/∂A and raw map at 1e-10, and its final float32 map against npcam's
   ``"pytorch-grad-cam"`` convention at 1e-5;
5. guided backpropagation against captum's ``GuidedBackprop`` (``guided_relus="modules"``);
6. CAM ≡ Grad-CAM × Z on the models with a GAP → (Dropout) → Linear head, and CAM refused
   on the others;
7. GoogLeNet's and Inception-v3's ``transform_input=True``;
plus VGG-16 and ResNet-50 at 224 px (logits, A, ∂y^c/∂A).

A failing forward or backward comparison names the first fx node whose npcam value
differs from torch's (``_torchvision.first_forward_difference`` /
``first_backward_difference``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

REASON = "needs the crosscheck extra: pip install -e '.[test,crosscheck]'"
torch = pytest.importorskip("torch", reason=REASON)
pytest.importorskip("torchvision", reason=REASON)
captum_attr = pytest.importorskip("captum.attr", reason=REASON)
pytest.importorskip("pytorch_grad_cam", reason="needs pip grad-cam")
pytest.importorskip("cv2", reason="needs opencv-python(-headless)")

import _torchvision as T  # noqa: E402
from pytorch_grad_cam import GradCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

import npcam  # noqa: E402
from npcam import conventions as C  # noqa: E402

pytestmark = [
    pytest.mark.crosscheck,
    pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU activations"),
    pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients"),
]

F = torch.nn.functional
BAR = 1e-10
#: pytorch-grad-cam's final maps are float32 in [0, 1], min-maxed with ε = 1e-7 and resized
#: by cv2 (IPP on by default): float32 precision, not float64's.
PGC_MAP_BAR = 1e-5


@dataclass
class Case:
    """One torchvision model: torch float64 eval copy, npcam graph, input and targets."""

    name: str
    model: Any
    graph: Any
    x: np.ndarray
    target: np.ndarray  # torch's argmax per image
    logits: np.ndarray  # torch's float64 logits
    trace: Any  # npcam's run on x
    memo: dict[str, Any] = field(default_factory=dict)

    @property
    def xt(self) -> Any:
        return torch.from_numpy(self.x.copy())

    @property
    def tt(self) -> Any:
        return torch.from_numpy(self.target)

    def onehot(self) -> np.ndarray:
        cot = np.zeros_like(self.trace.output)
        cot[np.arange(len(self.target)), self.target] = 1.0
        return cot

    def grad_cam(self, layer: str) -> Any:
        """``npcam.grad_cam(graph, x, target, layer)``, computed once per graph node (the
        module paths ``layer4`` and ``layer4.1`` name one node)."""
        key = f"grad_cam:{self.graph.resolve(layer)}"
        if key not in self.memo:
            self.memo[key] = npcam.grad_cam(self.graph, self.x, self.target, layer)
        return self.memo[key]


@pytest.fixture(scope="module", params=T.MODELS)
def case(request):
    """Each model in turn, built and converted once (pytest groups the tests by model)."""
    name = request.param
    model = T.build(name)
    graph = npcam.from_torch(model)
    x = T.inputs(name)
    logits = T.logits(model, x)
    yield Case(name, model, graph, x, logits.argmax(axis=1), logits, graph.run(x))


def _checked(check, quantity, ours, ref, bar=BAR, explain=None):
    """``check`` with, on failure, the first differing fx node added to the message."""
    try:
        return check(quantity, ours, ref, bar)
    except AssertionError as exc:
        if explain is None:
            raise
        raise AssertionError(f"{exc}; {explain()}") from None


# ------------------------------------------------------------------------------ 1. logits
def test_logits(case, check):
    """npcam's logits equal torch's to 1e-10 × max|torch logits|, and the weights arrive
    unchanged under torch's state_dict keys. The logits of the two images differ by more
    than 1e-3 of their size: the input, not only the biases, drives them (with the BN
    statistics of ``_torchvision.randomize``), so the comparison checks every layer."""
    assert np.abs(case.logits[0] - case.logits[1]).max() > 1e-3 * np.abs(case.logits).max()
    _checked(check, f"{case.name}: logits", case.trace.output, case.logits,
             explain=lambda: T.first_forward_difference(case.model, case.graph, case.x))
    ours = case.graph.state_dict()
    theirs = case.model.state_dict()
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        assert np.array_equal(ours[key], value.numpy()), key


def test_every_node_matches_torch(case):
    """Every fx node's npcam output, and its gradient ∂(Σ_n y^{c_n}_n)/∂(output) from
    ``vjp(record=True)``, equal torch's (an fx Interpreter run under
    ``_torchvision.reference``, autograd) to 1e-10 × max|torch| of that node — every
    convolution, pool, concat, shuffle, SE gate and residual add on the way, not only the
    endpoints. The comparison covers every npcam node (all but the size arithmetic), the
    logits included; parameter nodes (ConvNeXt's ``layer_scale`` reads, named like their
    fx ``get_attr`` node) equal the torch parameter of their module path."""
    forward, backward = T.node_errors(case.model, case.graph, case.x, case.target)
    acts = case.trace.activations
    computing = {n for n, _ in case.graph.named_nodes() if isinstance(acts.get(n), np.ndarray)}
    params = {n for n in computing if not case.graph.inputs_of(n)}  # ConvNeXt's layer_scale reads
    for n in params:
        (path,) = case.graph.node(n).aliases
        assert np.array_equal(acts[n], case.model.get_parameter(path).detach().numpy()), n
    assert {n for n, _ in forward} == computing  # parameter nodes too: fx names them alike
    assert forward[-1][0] == case.graph.output_name and len(backward) >= len(forward) - 1
    bad = [(n, e) for n, e in forward if e > BAR]
    assert not bad, f"{len(bad)} node outputs differ, first {bad[0][0]}: {bad[0][1]:.3e}"
    bad = [(n, e) for n, e in backward if e > BAR]
    assert not bad, f"{len(bad)} node gradients differ, first in backward order {bad[0][0]}: {bad[0][1]:.3e}"


# ---------------------------------------------------------------- 2. A and ∂y/∂A at layers
@pytest.mark.parametrize("which", ["default", "pytorch-grad-cam"])
def test_layer_activations_and_gradients(case, check, which):
    """At the default layer (``_torchvision.DEFAULT_LAYERS``) and at pytorch-grad-cam's
    (``PGC_LAYERS``: pool5 for AlexNet/VGG, ``features`` = norm5 for DenseNet, the last
    block's module path elsewhere), ``trace.activations[layer]`` and
    ``graph.vjp(trace, onehot(c), to=layer).grad`` equal torch's A and ∂(Σ_n y^{c_n})/∂A
    from autograd to 1e-10 × max|torch|."""
    layer = (T.DEFAULT_LAYERS if which == "default" else T.PGC_LAYERS)[case.name]
    _, a_ref, g_ref = T.torch_layer(case.model, case.x, case.target, layer)
    a = case.trace.activations[layer]
    grad = case.graph.vjp(case.trace, case.onehot(), to=layer).grad
    _checked(check, f"{case.name}: A ({which} layer)", a, a_ref,
             explain=lambda: T.first_forward_difference(case.model, case.graph, case.x))
    _checked(check, f"{case.name}: dy/dA ({which} layer)", grad, g_ref,
             explain=lambda: T.first_backward_difference(case.model, case.graph, case.x, case.target))
    assert a.ndim == 4 and a.shape[2] * a.shape[3] > 1  # a spatial map, not a vector


# --------------------------------------------------------------------- 3. captum Grad-CAM
def test_layer_grad_cam_matches_captum(case, check):
    """captum's ``LayerGradCam(model, module).attribute(x, target=c)`` is Σ_k α_k A^k
    (``relu_attributions=False``): npcam's ``raw``; with ``relu_attributions=True``
    npcam's ``cam``; both to 1e-10. captum hooks modules, so the layer is the default one
    where that is a module path, and DenseNet's ``features`` (= norm5, before the final
    ``F.relu``) in place of its function node ``relu``."""
    layer = "features" if case.name == "densenet121" else T.DEFAULT_LAYERS[case.name]
    gc = captum_attr.LayerGradCam(case.model, case.model.get_submodule(layer))
    raw = gc.attribute(case.xt, target=case.tt, relu_attributions=False).detach().numpy()
    cam = gc.attribute(case.xt, target=case.tt, relu_attributions=True).detach().numpy()
    ours = case.grad_cam(layer)
    assert raw.shape == (len(case.target), 1, *ours.raw.shape[1:])
    check(f"{case.name}: raw (captum LayerGradCam)", ours.raw, raw[:, 0])
    check(f"{case.name}: cam (captum LayerGradCam relu)", ours.cam, cam[:, 0])


# ------------------------------------------------------------------- 4. pytorch-grad-cam
def _pytorch_grad_cam(model, module, x, target):
    """pytorch-grad-cam's ``GradCAM(model, [module])(x, targets)`` and what it computed on
    the way: the activations and gradients it read, its weights (``get_cam_weights``) and
    its signed map (``get_cam_image``, before ``np.maximum(cam, 0)`` and scaling)."""
    seen: dict[str, np.ndarray] = {}
    with GradCAM(model=model, target_layers=[module]) as cam:
        weights_fn, image_fn = cam.get_cam_weights, cam.get_cam_image

        def get_cam_weights(input_tensor, target_layer, targets, activations, grads):
            out = weights_fn(input_tensor, target_layer, targets, activations, grads)
            seen.update(activations=np.array(activations), grads=np.array(grads), weights=np.array(out))
            return out

        def get_cam_image(*args, **kwargs):
            out = image_fn(*args, **kwargs)
            seen["raw"] = np.array(out)
            return out

        cam.get_cam_weights = get_cam_weights
        cam.get_cam_image = get_cam_image
        final = cam(input_tensor=torch.from_numpy(x.copy()),
                    targets=[ClassifierOutputTarget(int(c)) for c in target])
    return final, seen


def test_pytorch_grad_cam(case, check):
    """pytorch-grad-cam 1.5.7 ``GradCAM`` at its documented layer (``PGC_LAYERS``): its
    gradients and weights (mean over positions) equal npcam's ∂y/∂A and α, and its signed
    map npcam's ``raw``, to 1e-10; its final float32 map (ReLU, min-max with 1e-7, cv2
    resize) equals npcam's ``"pytorch-grad-cam"`` convention to 1e-5 and is not all zero
    (the convention's post-processing ``npcam.conventions.pytorch_grad_cam`` applied to
    npcam's A and ∂y/∂A; for ResNet-18 also ``conventions.grad_cam(...,
    convention="pytorch-grad-cam")``, which must give the same array).

    DenseNet at ``features`` (norm5): pytorch-grad-cam stores ``output.cpu().detach()``,
    which on CPU shares storage with norm5's output, and the in-place ``F.relu`` after it
    overwrites it — its activations are ReLU(A), checked here (and A has negative entries,
    so the two differ), while its gradients, taken by a tensor hook, are the exact
    ∂y/∂A. Its weights are therefore compared with npcam's α, its map with
    Σ_k α_k ReLU(A^k), and its final map with the convention fed ReLU(A) and the true
    ∂y/∂A."""
    layer = T.PGC_LAYERS[case.name]
    final, seen = _pytorch_grad_cam(case.model, case.model.get_submodule(layer), case.x, case.target)
    ours = case.grad_cam(layer)
    check(f"{case.name}: pgc gradients", ours.gradients, seen["grads"])
    check(f"{case.name}: pgc weights", ours.weights, seen["weights"])
    size = case.x.shape[-2:]
    if case.name == "densenet121":
        rectified = np.maximum(ours.activations, 0)
        assert (ours.activations < 0).any()
        check(f"{case.name}: pgc activations = ReLU(A)", rectified, seen["activations"])
        raw = np.einsum("nk,nkhw->nhw", ours.weights, rectified)
        check(f"{case.name}: pgc raw (ReLU(A))", raw, seen["raw"])
        mapped = C.pytorch_grad_cam(rectified, ours.gradients, size)
    else:
        check(f"{case.name}: pgc activations", ours.activations, seen["activations"])
        check(f"{case.name}: pgc raw", ours.raw, seen["raw"])
        mapped = C.pytorch_grad_cam(ours.activations, ours.gradients, size)
        if case.name == "resnet18":  # the convention's entry point = its post-processing
            np.testing.assert_array_equal(
                C.grad_cam(case.graph, case.x, case.target, layer, convention="pytorch-grad-cam"), mapped)
    assert final.dtype == mapped.dtype == np.float32
    assert final.shape == mapped.shape == (len(case.target), *size)
    assert final.max() > 0.5, "the map must not be identically 0"
    check(f"{case.name}: pgc final map", mapped, final, PGC_MAP_BAR)


# ------------------------------------------------------------------- 5. guided backprop
def test_guided_backprop_matches_captum(case, check):
    """captum's ``GuidedBackprop(model).attribute(x, target=c)`` overrides only ``nn.ReLU``
    modules (not ``F.relu``: GoogLeNet, Inception-v3 and DenseNet's last ReLU keep the
    standard rule; ReLU6, Hardswish, SiLU, GELU pass their derivative), which is npcam's
    ``guided_relus="modules"``: equal to 1e-10. captum clones each ReLU's input, so the
    models' in-place ReLUs are used as they are. MobileNetV3's ``nn.Hardsigmoid`` modules
    are swapped for ``relu6(x + 3) / 6`` (``_torchvision.ExactHardsigmoid``) on the torch
    side: torch's own backward multiplies by float32(1/6) (pinned by
    :func:`test_torch_hardsigmoid_backward_is_float32_one_sixth`), which would leave a
    3e-8 relative error that is torch's, not npcam's."""
    with T.exact_hardsigmoid(case.model):
        ref = captum_attr.GuidedBackprop(case.model).attribute(case.xt, target=case.tt).detach().numpy()
    ours = npcam.guided_backprop(case.graph, case.x, case.target, guided_relus="modules")
    _checked(check, f"{case.name}: guided backprop (captum)", ours, ref,
             explain=lambda: T.first_backward_difference(case.model, case.graph, case.x, case.target))


def test_torch_hardsigmoid_backward_is_float32_one_sixth():
    """Why the torch references swap Hardsigmoid: torch 2.14.1's float64 Hardsigmoid
    derivative inside (−3, 3) is float32(1/6) = 0.1666666716337204, not 1/6, while the
    swapped ``relu6(x + 3) / 6`` has the same forward and the derivative 1/6, as npcam's
    Hardsigmoid has (a graph of Flatten → Hardsigmoid, its input gradient). If torch
    fixes its constant, this test fails and the swap can go."""
    x = torch.tensor([[-2.5, -1.0, 0.25, 2.0]], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(F.hardsigmoid(x).sum(), x)
    assert (g.numpy() == np.float64(np.float32(1 / 6))).all() and (g.numpy() != 1 / 6).all()
    exact = T.ExactHardsigmoid()
    (h,) = torch.autograd.grad(exact(x).sum(), x)
    assert (h.numpy() == 1 / 6).all()
    np.testing.assert_array_equal(exact(x).detach().numpy(), F.hardsigmoid(x).detach().numpy())
    graph = npcam.from_torch(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Hardsigmoid()))
    xn = x.detach().numpy()
    trace = graph.run(xn)
    assert (graph.vjp(trace, np.ones_like(trace.output)).grad == 1 / 6).all()


# -------------------------------------------------------------------------- 6. CAM ≡ Grad-CAM
def test_cam_equivalence_or_refusal(case, check):
    """On the models whose default layer is followed by GAP → (Dropout) → Linear
    (``_torchvision.CAM_MODELS``; DenseNet at its node ``relu``): ``cam_equivalence``'s
    identities Z·α = w^c and Z·M_Grad-CAM = M_CAM hold to 1e-12 of their scale, CAM's
    weights are exactly the rows c of torch's last Linear, and CAM's map averages to the
    torch logit minus the bias, y^c − b_c = (1/Z) Σ_ij M_CAM (1e-10). On the others
    (AlexNet/VGG: pooling and a 3-layer MLP; SqueezeNet: a conv head; MobileNetV3: a
    2-layer MLP; ConvNeXt: LayerNorm in the head) ``npcam.cam`` is refused."""
    layer = T.DEFAULT_LAYERS[case.name]
    if case.name not in T.CAM_MODELS:
        with pytest.raises(ValueError, match="CAM needs layer"):
            npcam.cam(case.graph, case.x, case.target, layer)
        return
    eq = npcam.cam_equivalence(case.graph, case.x, case.target, layer)
    a = case.trace.activations[layer]
    assert eq.Z == a.shape[2] * a.shape[3] > 1
    assert eq.weight_error <= 1e-12 and eq.map_error <= 1e-12 and eq.holds, eq
    res = npcam.cam(case.graph, case.x, case.target, layer)
    fc = case.model.get_submodule(T.FC[case.name])
    np.testing.assert_array_equal(res.weights, fc.weight.detach().numpy()[case.target])
    y = case.logits[np.arange(len(case.target)), case.target]
    bias = fc.bias.detach().numpy()[case.target]
    check(f"{case.name}: CAM mean + b = logit", res.raw.mean(axis=(1, 2)) + bias, y)


# ------------------------------------------------------------------- 7. transform_input
@pytest.mark.parametrize(("name", "px"), [("googlenet", 64), ("inception_v3", 75)])
def test_transform_input(name, px, check):
    """GoogLeNet and Inception-v3 with ``transform_input=True`` (the ImageNet-statistics
    re-normalisation traced as slicing, scaling and ``cat``): logits equal torch's to
    1e-10, and differ from the same weights without the transform (it is exercised)."""
    model = T.build(name, transform_input=True)
    x = T.inputs(name, px)
    graph = npcam.from_torch(model)
    ours = graph.run(x).output
    ref = T.logits(model, x)
    _checked(check, f"{name}: logits (transform_input)", ours, ref,
             explain=lambda: T.first_forward_difference(model, graph, x))
    model.transform_input = False
    plain = T.logits(model, x)
    assert np.abs(plain - ref).max() > 1e-3 * np.abs(ref).max()


# ------------------------------------------------------------------------------ 224 px
@pytest.mark.parametrize("name", ["vgg16", "resnet50"])
def test_224(name, check):
    """VGG-16 and ResNet-50 at 224 px (batch 2): logits, and A and ∂y^c/∂A at the default
    layer (conv5_3's ReLU 14×14, ``layer4`` 7×7), equal torch's to 1e-10."""
    model = T.build(name)
    graph = npcam.from_torch(model)
    x = T.inputs(name, 224)
    layer = T.DEFAULT_LAYERS[name]
    target = T.logits(model, x).argmax(axis=1)
    logits, a_ref, g_ref = T.torch_layer(model, x, target, layer)
    trace = graph.run(x)
    cot = np.zeros_like(trace.output)
    cot[np.arange(2), target] = 1.0
    check(f"{name}: logits (224)", trace.output, logits)
    check(f"{name}: A (224)", trace.activations[layer], a_ref)
    check(f"{name}: dy/dA (224)", graph.vjp(trace, cot, to=layer).grad, g_ref)
    assert a_ref.shape[1:] == T.SHAPES_224[name]
