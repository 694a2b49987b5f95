"""npcam's explanations against captum's on the same float64 torch models.

captum 0.9.0 (installed sources, ``captum/attr/_core``):

* ``layer/grad_cam.py:214-237`` — ``LayerGradCam``: the mean of the layer gradients over
  the spatial axes, ``sum(mean_grad * A, dim=1, keepdim=True)``, ReLU only with
  ``relu_attributions=True`` (default False); output (N, 1, h, w). So ``relu=True`` is
  npcam's ``cam`` and ``relu=False`` its ``raw``.
* ``guided_backprop_deconvnet.py`` — ``GuidedBackprop`` / ``Deconvolution`` hook every
  ``nn.ReLU`` module and return ``relu(grad_input)`` (guided: ``relu(dy·[x>0])``) or
  ``relu(grad_output)`` (deconvnet: ``relu(dy)``): npcam's rules. The hooks clone the
  ReLU's input (``captum/_utils/common.py:886-906``); the models here use non-inplace
  ReLUs anyway.
* ``guided_grad_cam.py:185-216`` — ``GuidedGradCam.attribute`` computes ``LayerGradCam``
  with ``relu_attributions=True``, then ``guided_backprop * LayerAttribution.interpolate(
  cam, input HW, interpolate_mode)``; ``interpolate`` (``_utils/attribution.py:469``) is
  ``F.interpolate(attr, dims, mode=interpolate_mode)`` with no ``align_corners``, i.e.
  half-pixel centres for bilinear — npcam's ``upsample``. captum's default mode is
  ``"nearest"``; both modes are checked.
* ``saliency.py:136`` — ``Saliency`` returns ``abs(grad)`` unless ``abs=False``.

Every comparison is bounded by 1e-10 × max|captum| and the worst errors are printed in the
session summary. Maps of both signs are required (``raw`` must have positive and negative
entries), so that no comparison is vacuous.
"""

from __future__ import annotations

import pytest

REASON = "needs the crosscheck extra: pip install -e '.[test,crosscheck]'"
torch = pytest.importorskip("torch", reason=REASON)
captum_attr = pytest.importorskip("captum.attr", reason=REASON)

import npcam  # noqa: E402
from npcam.verify import vectors as V  # noqa: E402

pytestmark = [
    pytest.mark.crosscheck,
    # captum warns on every GuidedBackprop/Deconvolution call that it sets ReLU hooks
    pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU activations"),
    pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients"),
]


def _target(arch):
    return torch.from_numpy(arch.target)


def test_layer_grad_cam(arch, check):
    gc = captum_attr.LayerGradCam(arch.tnet, arch.tlayer)
    ours = npcam.grad_cam(arch.net, arch.x, arch.target, arch.layer)
    raw = gc.attribute(arch.xt, target=_target(arch), relu_attributions=False)
    cam = gc.attribute(arch.xt, target=_target(arch), relu_attributions=True)
    assert raw.shape == (len(arch.target), 1, *ours.raw.shape[1:])
    assert (ours.raw > 0).any() and (ours.raw < 0).any(), "raw must have both signs"
    check("raw (LayerGradCam relu=False)", ours.raw, raw[:, 0])
    check("cam (LayerGradCam relu=True)", ours.cam, cam[:, 0])


def test_guided_backprop(arch, check):
    ref = captum_attr.GuidedBackprop(arch.tnet).attribute(arch.xt, target=_target(arch))
    ours = npcam.guided_backprop(arch.net, arch.x, arch.target)
    assert (ours > 0).any() and (ours < 0).any()
    check("guided_backprop", ours, ref)


def test_deconvnet(arch, check):
    ref = captum_attr.Deconvolution(arch.tnet).attribute(arch.xt, target=_target(arch))
    check("deconvnet", npcam.deconvnet(arch.net, arch.x, arch.target), ref)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_guided_grad_cam(arch, check, mode):
    ggc = captum_attr.GuidedGradCam(arch.tnet, arch.tlayer)
    ref = ggc.attribute(arch.xt, target=_target(arch), interpolate_mode=mode)
    ours = npcam.guided_grad_cam(arch.net, arch.x, arch.target, arch.layer, mode=mode)
    check(f"guided_grad_cam ({mode})", ours, ref)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_deconvnet_grad_cam(arch, check, mode):
    """Deconvolution Grad-CAM against captum, composed as its GuidedGradCam composes
    (guided_grad_cam.py:185-216) with Deconvolution in place of GuidedBackprop:
    LayerGradCam(relu_attributions=True), LayerAttribution.interpolate to the input size,
    times Deconvolution's attribution."""
    t = _target(arch)
    cam = captum_attr.LayerGradCam(arch.tnet, arch.tlayer).attribute(
        arch.xt, target=t, relu_attributions=True)
    up = captum_attr.LayerAttribution.interpolate(cam, tuple(arch.xt.shape[2:]), interpolate_mode=mode)
    ref = up * captum_attr.Deconvolution(arch.tnet).attribute(arch.xt, target=t)
    ours = npcam.deconvnet_grad_cam(arch.net, arch.x, arch.target, arch.layer, mode=mode)
    assert (ours > 0).any() and (ours < 0).any()
    check(f"deconvnet_grad_cam ({mode})", ours, ref)


def test_saliency(arch, check):
    ref = captum_attr.Saliency(arch.tnet).attribute(arch.xt, target=_target(arch), abs=False)
    ours = npcam.saliency(arch.net, arch.x, arch.target)
    assert (ours > 0).any() and (ours < 0).any()
    check("saliency", ours, ref)


def test_inplace_relu_model_agrees(check, fresh_arch):
    # captum's hooks clone the ReLU input, so an inplace ReLU gives the same attributions
    arch = fresh_arch("vgg_flatten_fc")
    for module in arch.tnet.modules():
        if isinstance(module, torch.nn.ReLU):
            module.inplace = True
    ref = captum_attr.GuidedBackprop(arch.tnet).attribute(arch.xt, target=_target(arch))
    check("guided_backprop", npcam.guided_backprop(arch.net, arch.x, arch.target), ref)


# ------------------------------------------------------------------ the golden vectors
@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    out = tmp_path_factory.mktemp("golden")
    V.write_vectors(out)
    return out


_SCORE_MODULES = {"logit": None, "softmax": "Softmax", "log_softmax": "LogSoftmax"}


@pytest.mark.parametrize("case", list(V.CASES))
def test_golden_vectors_match_torch_and_captum(case, golden, check):
    """Every stored quantity of every case equals captum's on the case rebuilt in torch by
    ``case_to_torch`` (the case's score as the model's output: captum attributes the
    output), and the recorded argmax targets are torch's predictions."""
    a = V.load_case(golden, case)
    model = V.case_to_torch(golden, case)
    tlayer = model.get_submodule(str(a["layer"][()]))
    x = torch.from_numpy(a["input"].copy())
    t = torch.from_numpy(a["target"])
    check("vectors: logits", a["logits"], model(x))
    if str(a["target_rule"][()]) == "argmax":
        assert model(x).argmax(1).tolist() == a["target"].tolist()
    head = _SCORE_MODULES[str(a["score"][()])]
    tnet = model if head is None else torch.nn.Sequential(model, getattr(torch.nn, head)(dim=1))
    check("vectors: scores", a["scores"], tnet(x)[torch.arange(len(x)), t])
    gc = captum_attr.LayerGradCam(tnet, tlayer)
    check("vectors: raw", a["raw"], gc.attribute(x, target=t)[:, 0])
    check("vectors: cam", a["cam"], gc.attribute(x, target=t, relu_attributions=True)[:, 0])
    check("vectors: saliency", a["saliency"], captum_attr.Saliency(tnet).attribute(x, target=t, abs=False))
    gb = captum_attr.GuidedBackprop(tnet).attribute(x, target=t)
    check("vectors: guided_backprop", a["guided_backprop"], gb)
    check("vectors: deconvnet", a["deconvnet"], captum_attr.Deconvolution(tnet).attribute(x, target=t))
    ggc = captum_attr.GuidedGradCam(tnet, tlayer).attribute(x, target=t, interpolate_mode="bilinear")
    check("vectors: guided_grad_cam", a["guided_grad_cam"], ggc)
