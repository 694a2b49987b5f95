"""The gradient CAMs of the family against the libraries themselves: every preset of
``npcam.conventions.cam`` for XGrad-CAM, HiResCAM, element-wise Grad-CAM and LayerCAM
equals the library's output on the same float64 torch model.

Libraries (installed sources; cam-family.md §§ 2–5):

* pytorch-grad-cam 1.5.7: ``XGradCAM``, ``HiResCAM``, ``GradCAMElementWise``,
  ``LayerCAM`` with ``ClassifierOutputTarget`` — (N, H, W) float32 in [0, 1], resized
  with OpenCV. Bar 1e-6 absolute (= relative: the maps peak at 1): the output is float32,
  and ``cv2.resize`` goes through Intel IPP by default, whose float32 rounding differs by
  a few ulps from OpenCV's own kernel that npcam reproduces (tests/optional/
  test_pytorch_grad_cam.py: ≤ 2.4e-7 for Grad-CAM).
* torchcam 0.5.0: ``XGradCAM``, ``LayerCAM`` — (N, h, w) at the layer's resolution in the
  model's dtype (float64): bar 1e-10.

Models (``_cam_family``): SmallCNN at each of ``SMALL_LAYERS``, SignedCNN at each of
``SIGNED_LAYERS``, resnet18 (64 px, random BN statistics) at ``layer4`` and ``layer3``;
explicit per-image targets. The worst errors are printed in the session summary.

Also measured and bounded here: the libraries' XGrad-CAM ε against the paper's weights
(no ε), and torchcam's ``LayerCAM.fuse_cams`` against :func:`npcam.layer_cam_fuse`.
"""

from __future__ import annotations

import numpy as np
import pytest

REASON = "needs the crosscheck extra: pip install -e '.[test,crosscheck]'"
torch = pytest.importorskip("torch", reason=REASON)
pytest.importorskip("pytorch_grad_cam", reason=REASON)
pytest.importorskip("torchcam", reason=REASON)

import torchcam.methods as tcm  # noqa: E402
from _cam_family import SIGNED_LAYERS, SMALL_LAYERS, resnet18_pair, small_pair, torch_input  # noqa: E402
from pytorch_grad_cam import GradCAMElementWise, HiResCAM, LayerCAM, XGradCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

import npcam  # noqa: E402
from npcam.verify import conventions as C  # noqa: E402
from npcam.verify.conventions.pytorch_grad_cam import _pgc_final  # noqa: E402
from npcam.verify.conventions.torchcam import _torchcam_final  # noqa: E402

PGC_BAR = 1e-6
TORCHCAM_BAR = 1e-10

PGC = {"xgrad-cam": XGradCAM, "hires-cam": HiResCAM, "grad-cam-elementwise": GradCAMElementWise,
       "layer-cam": LayerCAM}
TORCHCAM = {"xgrad-cam": tcm.XGradCAM, "layer-cam": tcm.LayerCAM}

CASES = ([("small", layer) for layer in SMALL_LAYERS] + [("signed", layer) for layer in SIGNED_LAYERS]
         + [("resnet18", "layer4"), ("resnet18", "layer3")])


def _case(model_name):
    """(torch model, npcam model, x, per-image targets)."""
    if model_name == "resnet18":
        tnet, net, x = resnet18_pair()
        return tnet, net, x, [int(net.forward(x).argmax(axis=1)[0])]
    tnet, net, x = small_pair(signed=model_name == "signed")
    return tnet, net, x, [4, 2]  # both images predict class 4


def _pgc(cls, tnet, x, layer, target):
    with cls(model=tnet, target_layers=[tnet.get_submodule(layer)]) as cam:
        return cam(input_tensor=torch_input(x), targets=[ClassifierOutputTarget(c) for c in target])


def _torchcam(cls, tnet, x, layer, target):
    with cls(tnet, target_layer=layer) as extractor:
        scores = tnet(torch_input(x))
        return extractor(class_idx=list(target), scores=scores)[0].detach().numpy()


@pytest.mark.parametrize("model_name, layer", CASES)
@pytest.mark.parametrize("method", list(PGC))
def test_pytorch_grad_cam_presets(check, method, model_name, layer):
    tnet, net, x, target = _case(model_name)
    ref = _pgc(PGC[method], tnet, x, layer, target)
    out = C.cam(method, net, x, target, layer, convention="pytorch-grad-cam")
    assert out.shape == ref.shape == (len(x), *x.shape[2:]) and out.dtype == ref.dtype == np.float32
    assert np.ptp(ref) > 0.5  # a real map, not a constant
    check(f"pgc {method}", out, ref, PGC_BAR)


@pytest.mark.parametrize("model_name, layer", CASES)
@pytest.mark.parametrize("method", list(TORCHCAM))
def test_torchcam_presets(check, method, model_name, layer):
    tnet, net, x, target = _case(model_name)
    ref = _torchcam(TORCHCAM[method], tnet, x, layer, target)
    out = C.cam(method, net, x, target, layer, convention="torchcam")
    assert out.shape == ref.shape and ref.dtype == np.float64
    assert np.ptp(ref) > 0.5
    check(f"torchcam {method}", out, ref, TORCHCAM_BAR)


@pytest.mark.parametrize("model_name, layer", CASES)
def test_xgrad_eps_is_the_libraries_only_departure_from_the_paper(check, model_name, layer):
    """The libraries' XGrad-CAM against the paper's weights (npcam.xgrad_cam, no ε) put
    through each library's own post-processing: the ε (1e-7 pgc, 1e-8 torchcam) moves
    every weight by S/(S + ε) and nothing else, so the maps agree to ~ε/|S|·(terms) —
    measured ≤ 3.6e-7 (pgc, float32 output) and ≤ 3.1e-8 (torchcam), bounded here by
    1e-6 — but not to 1e-10 for torchcam, which would mean the ε had no effect."""
    tnet, net, x, target = _case(model_name)
    paper = npcam.xgrad_cam(net, x, target, layer)
    ref_pgc = _pgc(XGradCAM, tnet, x, layer, target)
    check("xgrad paper vs pgc", _pgc_final(paper.raw, x.shape[-2:]), ref_pgc, 1e-6)
    ref_tc = _torchcam(tcm.XGradCAM, tnet, x, layer, target)
    gap = check("xgrad paper vs torchcam", _torchcam_final(paper.raw, True), ref_tc, 1e-6)
    assert gap > 1e-11


def test_torchcam_fuse_cams_vs_layer_cam_fuse(check):
    """torchcam's ``LayerCAM.fuse_cams`` computes tanh(2·cam) on the cams it is given,
    then bilinear (half-pixel) upsampling to the largest size and an element-wise max.
    On maps divided by their own maximum that is eq. 9 exactly, so it equals
    :func:`npcam.layer_cam_fuse` (γ = 2) to 1e-10; on torchcam's own normalised cams
    (max = 1 − O(1e-8)) the two differ by the ε only. Against eq. 9 on the paper's maps M
    (npcam's ``cam``) torchcam's fusion of its cams departs by O(1) wherever min M > 0
    (its min-max shift): measured 0.70 here (features.6's maps have min M ≈ 0.45 max M)."""
    tnet, net, x, target = _case("small")
    cams = [_torchcam(tcm.LayerCAM, tnet, x, layer, target) for layer in ("features.6", "features.3")]
    peaked = [c / c.max(axis=(1, 2), keepdims=True) for c in cams]
    ref = tcm.LayerCAM.fuse_cams([torch.from_numpy(c) for c in peaked]).numpy()
    check("torchcam fuse_cams (peak 1)", npcam.layer_cam_fuse(peaked), ref)
    ref_own = tcm.LayerCAM.fuse_cams([torch.from_numpy(c) for c in cams]).numpy()
    assert ref_own.shape == (2, 32, 32)
    gap = check("torchcam fuse_cams (its ε)", npcam.layer_cam_fuse(cams), ref_own, 1e-6)
    assert gap > 0
    # the library vs the paper: eq. 9 on npcam's (un-shifted) maps
    ours = [npcam.layer_cam(net, x, target, layer).cam for layer in ("features.6", "features.3")]
    assert min(m.min() for m in ours[0]) > 0
    departure = check("torchcam fuse_cams vs eq. 9 on M", npcam.layer_cam_fuse(ours), ref_own, 1.0)
    assert departure > 0.1
