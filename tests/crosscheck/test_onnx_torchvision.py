"""``npcam.from_onnx`` on the 15 torchvision classifiers, exported by both PyTorch
exporters, against torch, onnxruntime and npcam's own ``from_torch`` import (issue 12).

Every model is ``_torchvision.build(name)`` (``weights=None``, randomised BatchNorm
statistics and affine parameters, biases, layer scales; for a size other than
``_torchvision.SIZES[name]`` the BatchNorm statistics are recalibrated at the size the
model is run at, see :func:`_model`), exported with ``_onnx_export.export``
(``torch.onnx.export`` with ``dynamo=False`` — "legacy" — at opset 17, and with the
default ``dynamo=True`` at opset 18, see :data:`OPSETS`) on one image, in eval mode, with
the exporters' defaults: static shapes ``[1, 3, H, W]``, BatchNorm folded into the
convolutions, constants folded, dynamo's weights in ``<file>.onnx.data``. The matrix
(ids ``<model>-<px>-<dtype>-<exporter>``):

* 224 px (Inception-v3 299) in float64 and in float32, all 15 models;
* 64 px (Inception-v3 75) in float64, the 12 other than AlexNet, VGG-16 and VGG-16-BN
  (at 64 px the legacy exporter refuses VGG's non-divisible adaptive pooling and dynamo
  decomposes it into gathers; AlexNet's pool5 is 1×1 there);

and every imported graph runs on a batch of **2** different seeded standard-normal
images, so the importer's freeing of the exported batch (the batch baked into dynamo's
``Reshape([1, K])`` and ShuffleNet's channel shuffles) is exercised. The class explained
is torch's argmax per image.

Checks (``max|ours − ref| / max|ref|``, the ``check`` fixture of conftest.py):

float64 exports — the folding is done in float64 by both exporters, so the file holds
the same function as the module up to float64 rounding:
  1. ``from_onnx(path).forward(x)`` equals torch's float64 logits at 1e-10;
  2. Grad-CAM at the model's documented layer (``_torchvision.DEFAULT_LAYERS``, addressed
     by the same friendly name on both graphs) equals npcam's own Grad-CAM on
     ``from_torch(module)`` at 1e-12: ``r.cam``, ``r.weights`` and ``r.activations``.
     (onnxruntime 1.32's CPU provider has no float64 Conv, so torch is the only external
     reference here; npcam's ``from_torch`` backward is itself checked against torch
     autograd in test_torchvision_models.py.)

float32 exports — BatchNorm folded in float32 by the exporter, weights float32, imported
with ``dtype=np.float32`` and compared with ``from_torch(module.float(), dtype=np.float32)``
(npcam's float32 mode rounds the weights to float32 and computes in float64):
  3. logits against onnxruntime on the same file (run one image at a time: the file's
     input is static ``[1, …]`` and onnxruntime refuses batch 2), against torch's float32
     eager logits and against ``from_torch``'s, at :data:`TOL32`;
  4. Grad-CAM (cam, weights) against ``from_torch``'s at :data:`TOL32_CAM`.

Exports go to a fresh temporary folder and are deleted as soon as the graph is imported
(and onnxruntime has run): VGG-16's float64 export is about 1.1 GB. The 224 px exports
are marked ``crosscheck_full`` (see :data:`FULL`) except two that keep both kinds of
graph in the crosscheck step: AlexNet at 224 in float64 (its 1×1 adaptive pool) and
ResNet-18 at 224 in float32 (onnxruntime's path).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

REASON = "needs the crosscheck extra and onnx, onnxruntime, onnxscript"
torch = pytest.importorskip("torch", reason=REASON)
pytest.importorskip("torchvision", reason=REASON)
pytest.importorskip("onnx", reason=REASON)
ort = pytest.importorskip("onnxruntime", reason=REASON)
pytest.importorskip("onnxscript", reason=REASON)

import _onnx_export as E  # noqa: E402
import _torchvision as T  # noqa: E402

import npcam  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.crosscheck]

#: float64 logits against torch (the file holds the float64-folded module).
BAR_LOGITS = 1e-10
#: float64 Grad-CAM against npcam's ``from_torch`` import of the same module.
BAR_CAM = 1e-12
#: float32 logits. A float32 export differs from the float32 module by the BN folding
#: (γ/σ·W and the shifted bias rounded to float32: ~6e-8 relative per weight) and both
#: differ from onnxruntime by float32 summation order; over 20–150 layers these
#: roundings add up to ~1e-6–1e-5 of max|logits| (measured below 2e-5 on every model,
#: see the report). 1e-4 is float32 precision with a margin of 5×, yet 1000× below what a
#: wrong layer (a missing bias, a transposed kernel, a wrong pad) produces.
TOL32 = 1e-4
#: float32 Grad-CAM (cam and weights): the same roundings carried through the backward
#: pass, where the ReLU masks of the two graphs may differ at the few pre-activations
#: within float32 rounding of 0; measured below 2e-5, bar 1e-4 as for the logits.
TOL32_CAM = 1e-4

#: The Grad-CAM layer: npcam's default layer for ``from_torch`` (the table of
#: test_torchvision_models.py), addressed by the same module path on the ONNX graph.
#: None of these is a BatchNorm output (the ones BN folding removes): VGG-16-BN's
#: ``features.42`` is the ReLU after the folded conv+BN, the block outputs end in a ReLU,
#: Clip, HardSwish, SiLU's Mul, an Add or a Concat. The exception is DenseNet-121: its
#: default ``relu`` is the fx node of a top-level ``F.relu`` call, not a module, so it
#: has no module path an exporter could record; its nearest module is ``features`` (its
#: last node is ``norm5``, a BatchNorm that follows a Concat and survives the folding,
#: captum's and pytorch-grad-cam's layer in test_torchvision_models.py).
LAYERS = T.DEFAULT_LAYERS | {"densenet121": "features"}

EXPORTERS = ("legacy", "dynamo")
#: The opset each exporter is asked for. Legacy: 17, which it gives. Dynamo: 18, its own.
#: Asked for 17, torch 2.14.1's dynamo exporter builds at 18 and converts down with the
#: onnx C API version converter; that fails for 12 of the 15 models (an ``axes`` input of
#: ReduceMean/Split: "axes_input_to_attribute ... No initializer or constant input to node
#: found"), which stay at 18, and succeeds for AlexNet, VGG-16 and VGG-16-BN — whose
#: opset-17 files then (measured) carry no ``metadata_props`` at all, so no module path
#: survives (``layer="features.29"`` cannot be resolved), and have BatchNorm folded after
#: the conversion from the ONNX node, with its float32 ``epsilon`` 9.99999974738e-06:
#: VGG-16-BN's folded ``features.0.weight`` is off by 2.4e-12 of its size and its logits
#: by 2.3e-11 (1.6e-14 at opset 18). Neither is the importer's to repair, so dynamo is
#: asked for 18 ("opset 17 where it sticks, else 18": it sticks only by losing the names).
OPSETS = {"legacy": 17, "dynamo": 18}
NO_64 = ("alexnet", "vgg16", "vgg16_bn")
#: configurations: (px of most models, px of Inception-v3, dtype)
CONFIGS = {"224-float64": (224, 299, np.float64), "224-float32": (224, 299, np.float32),
           "64-float64": (64, 75, np.float64)}
#: behind ``-m crosscheck_full`` (rule R5; run by ``.ci/crosscheck_full``, whose output
#: is committed in ``docs/crosscheck_full.log``): the 224 px exports take 513 s in float64
#: and 352 s in float32 (VGG-16 and VGG-16-BN 90 s each), past the issue's 10-minute
#: allowance with the Keras and JAX steps; the 64 px float64 matrix (165 s) and
#: :data:`IN_CI` run in the crosscheck step.
FULL = ("224-float32", "224-float64")
#: the 224 px cases kept in the crosscheck step (28 s and 11 s).
IN_CI = (("alexnet", "224-float64"), ("resnet18", "224-float32"))


def _cases() -> list[Any]:
    out = []
    for config in CONFIGS:
        for name in T.MODELS:
            if config.startswith("64-") and name in NO_64:
                continue
            for exporter in EXPORTERS:
                small, inception, dtype = CONFIGS[config]
                px = inception if name == "inception_v3" else small
                full = config in FULL and (name, config) not in IN_CI
                marks = [pytest.mark.crosscheck_full] if full else []
                out.append(pytest.param((name, config, exporter), marks=marks,
                                        id=f"{name}-{px}-{np.dtype(dtype).name}-{exporter}"))
    return out


@dataclass
class Reference:
    """One model at one size and dtype: the torch module, its npcam ``from_torch`` graph,
    the batch of 2 images, torch's logits and targets, and npcam's Grad-CAM on it."""

    name: str
    px: int
    dtype: Any
    model: Any  # torch, eval, float64 or float32
    x: np.ndarray  # (2, 3, px, px) in dtype
    logits: np.ndarray  # torch's eager logits
    target: np.ndarray
    torch_graph: Any  # npcam.from_torch(model, dtype=dtype)
    torch_graph_logits: np.ndarray
    cam: Any  # npcam.grad_cam(torch_graph, x, target, layer)
    autograd: tuple[np.ndarray, np.ndarray] | None  # float64: torch's A and ∂y^c/∂A at layer

    @property
    def layer(self) -> str:
        return LAYERS[self.name]


@dataclass
class Imported:
    ref: Reference
    exporter: str
    opset: int
    graph: Any  # npcam.from_onnx(path, dtype=ref.dtype)
    logits: np.ndarray  # graph.forward(ref.x), computed once
    ort_logits: np.ndarray | None  # float32 only: onnxruntime, image by image


_REFS: dict[tuple[str, str], Reference] = {}


def _reference(name: str, config: str) -> Reference:
    """Built once per (model, configuration) and kept while its exporters run (the
    parameters are ordered so that the two exporters of one model are adjacent)."""
    key = (name, config)
    if key not in _REFS:
        _REFS.clear()  # one model alive at a time (VGG-16 float64 is 1.1 GB)
        small, inception, dtype = CONFIGS[config]
        px = inception if name == "inception_v3" else small
        model = _model(name, px)
        if dtype == np.float32:
            model = model.float()
        x = T.inputs(name, px=px, batch=2).astype(dtype)
        with torch.no_grad():
            logits = model(torch.from_numpy(x.copy())).numpy()
        target = logits.argmax(axis=1)
        graph = npcam.from_torch(model, dtype=dtype)
        autograd = T.torch_layer(model, x, target, LAYERS[name])[1:] if dtype == np.float64 else None
        _REFS[key] = Reference(name, px, dtype, model, x, logits, target, graph,
                               np.asarray(graph.forward(x)),
                               npcam.grad_cam(graph, x, target, LAYERS[name]), autograd)
    return _REFS[key]


def _model(name: str, px: int) -> Any:
    """``_torchvision.build(name)``, its BatchNorm statistics recalibrated at ``px`` when
    that is not the size ``build`` calibrates at (``_torchvision.SIZES``): running the
    same ``randomize`` again with the model's seed redraws the same affine parameters and
    biases and only the calibration batch changes size. Statistics drawn around those of
    64 px images let the signal grow with depth at 224 px: EfficientNet-B0's logits reach
    2e4 and torch's own float32 logits differ from its float64 ones by 3.5e-4 of their
    size (1.6e-6 after recalibration), which would make every float32 comparison measure
    the model's conditioning rather than the import."""
    model = T.build(name)
    if px != T.SIZES[name] and any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                                   for m in model.modules()):
        model = T.randomize(model, T.seed_of(name), px)
    return model


def _onnxruntime(path: Any, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1  # the CPU is shared
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


@pytest.fixture(scope="module", params=_cases())
def case(request, tmp_path_factory):
    """Export one model with one exporter, import it, delete the files."""
    name, config, exporter = request.param
    ref = _reference(name, config)
    folder = tmp_path_factory.mktemp(f"{name}-{config}-{exporter}")
    path = folder / f"{name}.onnx"
    try:
        E.export(ref.model, ref.x[:1], path, exporter=exporter, opset=OPSETS[exporter])
        opset = E.opset_of(path)
        ort_logits = _onnxruntime(path, ref.x) if ref.dtype == np.float32 else None
        graph = npcam.from_onnx(path, dtype=ref.dtype)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return Imported(ref, exporter, opset, graph, np.asarray(graph.forward(ref.x)), ort_logits)


@pytest.fixture(scope="module", autouse=True)
def _release_references():
    yield
    _REFS.clear()


# ------------------------------------------------------------------------------ exports
def test_export(case):
    """The file has the opset asked for (:data:`OPSETS`: 17 legacy, 18 dynamo); the
    imported graph takes the batch of 2 and returns (2, 1000) float64 logits (npcam
    computes in float64; ``dtype=np.float32`` rounds the weights)."""
    ref = case.ref
    assert case.opset == OPSETS[case.exporter]
    out = case.logits
    assert out.shape == (2, 1000) and out.dtype == np.float64
    # the input, not only the biases, drives the logits: the comparisons check every layer
    assert np.abs(ref.logits[0] - ref.logits[1]).max() > 1e-3 * np.abs(ref.logits).max()


# ------------------------------------------------------------------------------ logits
def test_logits(case, check):
    """float64: npcam's logits on the ONNX graph equal torch's at 1e-10 × max|logits|.
    float32: they equal onnxruntime's on the same file, torch's float32 eager logits and
    npcam's ``from_torch`` float32 logits at 1e-4 (float32 precision)."""
    ref = case.ref
    out = case.logits
    what = f"{ref.name}-{ref.px}-{np.dtype(ref.dtype).name}-{case.exporter}"
    if ref.dtype == np.float64:
        check(f"{ref.name}: onnx f64 logits vs torch ({case.exporter})", out, ref.logits, BAR_LOGITS)
        return
    errors = []
    for quantity, theirs in (("onnxruntime", case.ort_logits), ("torch f32", ref.logits),
                             ("from_torch f32", ref.torch_graph_logits)):
        try:
            check(f"{ref.name}: onnx f32 logits vs {quantity} ({case.exporter})", out, theirs, TOL32)
        except AssertionError as exc:
            errors.append(f"{what}: {exc}")
    assert not errors, "; ".join(errors)


# ----------------------------------------------------------------------------- Grad-CAM
def test_grad_cam(case, check):
    """Grad-CAM on the ONNX graph at the model's layer equals npcam's Grad-CAM on its
    ``from_torch`` graph of the same module: cam, weights (and, in float64, the layer's
    activations) at 1e-12 × scale in float64, at 1e-4 in float32. In float64 also
    against torch's own gradients: the layer's A and ∂y^c/∂A by torch autograd
    (``_torchvision.torch_layer``) and the map the paper's formula makes of them, at the
    1e-10 bar of a comparison with torch."""
    ref = case.ref
    ours = npcam.grad_cam(case.graph, ref.x, ref.target, ref.layer)
    theirs = ref.cam
    assert ours.activations.shape == theirs.activations.shape, (ours.activations.shape,
                                                                theirs.activations.shape)
    assert np.array_equal(np.asarray(ours.target), np.asarray(theirs.target))
    dt = "f64" if ref.dtype == np.float64 else "f32"
    bar = BAR_CAM if ref.dtype == np.float64 else TOL32_CAM
    pairs = [("cam vs from_torch", ours.cam, theirs.cam, bar),
             ("weights vs from_torch", ours.weights, theirs.weights, bar)]
    if ref.dtype == np.float64:
        pairs.append(("activations vs from_torch", ours.activations, theirs.activations, bar))
    if ref.autograd is not None:
        a, g = ref.autograd
        paper = np.maximum(np.einsum("nk,nkhw->nhw", g.mean(axis=(2, 3)), a), 0)
        pairs += [("activations vs torch autograd", ours.activations, a, BAR_LOGITS),
                  ("gradients vs torch autograd", ours.gradients, g, BAR_LOGITS),
                  ("cam vs torch autograd", ours.cam, paper, BAR_LOGITS)]
    errors = []
    for quantity, a, b, tol in pairs:
        try:
            check(f"{ref.name}: onnx {dt} {quantity} ({case.exporter})", a, b, tol)
        except AssertionError as exc:
            errors.append(str(exc))
    assert not errors, f"layer {ref.layer!r}: " + "; ".join(errors)
