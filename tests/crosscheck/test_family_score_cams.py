"""Score-CAM, SS-CAM and IS-CAM against the libraries themselves: every preset of
``npcam.conventions.cam`` equals the library's output on the same float64 torch model.

Libraries (installed sources; cam-family.md § 6):

* pytorch-grad-cam 1.5.7 ``ScoreCAM`` with ``ClassifierOutputTarget`` — (N, H, W) float32
  in [0, 1]. Bar: float32 precision (rule R1, 1e-5 of max|ref|; the maps peak at 1).
  The library rounds the masked scores to float32 (``torch.Tensor(list)``, the default
  dtype), runs the channel softmax in torch's float32 kernel (another exp and another
  summation order than NumPy's float32 ones), and resizes in float32 with OpenCV (whose
  IPP path differs from the kernel npcam reproduces by a few ulps), so the maps agree to
  a few float32 ulps, not to float64 precision (measured ≤ 2e-7).
* torchcam 0.5.0 ``ScoreCAM``, ``SSCAM``, ``ISCAM`` — (N, h, w) at the layer's resolution,
  float64 for a float64 model: bar 1e-10. SSCAM's noise is torch's (float32 ``Normal``
  draws after ``torch.manual_seed(0)``), which the ``torchcam`` SS-CAM convention draws
  the same way.
* The authors' release (haofanwang/Score-CAM ``cam/scorecam.py``, not installable): its
  ``ScoreCAM.forward`` retyped below on CPU (the release calls ``.cuda()``
  unconditionally), one image per call as the code does, with its float32
  ``torch.zeros`` accumulator. Bar: R1, as the accumulation runs in float32 (measured:
  0.0, the convention reproduces the float32 rounding).
* tf-keras-vis 0.8.7 ``Scorecam`` (needs TensorFlow, not installed): its NHWC pipeline
  retyped from ``tf_keras_vis/scorecam.py`` with NumPy/SciPy around the npcam model
  (whole-array zoom, the tile/transpose of the masks, float32 weights). Bar 1e-10
  (measured 0.0). The library itself is checked in the Keras step of the ONNX issue.

Models (``_cam_family``): SmallCNN at each of ``SMALL_LAYERS``, SignedCNN at each of
``SIGNED_LAYERS``, resnet18 (64 px, random BN statistics) at ``layer4`` (512 masked
inputs per library). Explicit per-image targets. The worst errors are printed in the
session summary.
"""

from __future__ import annotations

import numpy as np
import pytest

REASON = "needs the crosscheck extra: pip install -e '.[test,crosscheck]'"
torch = pytest.importorskip("torch", reason=REASON)
pytest.importorskip("pytorch_grad_cam", reason=REASON)
pytest.importorskip("torchcam", reason=REASON)

import torch.nn.functional as F  # noqa: E402
import torchcam.methods as tcm  # noqa: E402
from _cam_family import SIGNED_LAYERS, SMALL_LAYERS, resnet18_pair, small_pair, torch_input  # noqa: E402
from pytorch_grad_cam import ScoreCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

from npcam.verify import conventions as C  # noqa: E402

pytestmark = pytest.mark.crosscheck

PGC_BAR = 1e-5  # rule R1: float32 scores, float32 softmax, float32 OpenCV resize
TORCHCAM_BAR = 1e-10

SMALL_CASES = [("small", layer) for layer in SMALL_LAYERS] + [("signed", layer) for layer in SIGNED_LAYERS]


def _case(model_name):
    """(torch model, npcam model, x, per-image targets)."""
    if model_name == "resnet18":
        tnet, net, x = resnet18_pair()
        return tnet, net, x, [int(net.forward(x).argmax(axis=1)[0])]
    tnet, net, x = small_pair(signed=model_name == "signed")
    return tnet, net, x, [4, 2]  # both images predict class 4


def _pgc(tnet, x, layer, target):
    with ScoreCAM(model=tnet, target_layers=[tnet.get_submodule(layer)]) as cam:
        cam.batch_size = 64  # score_cam.py 42-45: read when set (default 16); results unchanged
        return cam(input_tensor=torch_input(x), targets=[ClassifierOutputTarget(c) for c in target])


def _torchcam(cls, tnet, x, layer, target, seed=None, **options):
    with cls(tnet, target_layer=layer, input_shape=tuple(x.shape[1:]), **options) as extractor:
        with torch.no_grad():
            scores = tnet(torch_input(x))
        if seed is not None:
            torch.manual_seed(seed)
        return extractor(class_idx=list(target), scores=scores)[0].detach().numpy()


def _check_pgc(check, tnet, net, x, target, layer):
    ref = _pgc(tnet, x, layer, target)
    out = C.cam("score-cam", net, x, target, layer, convention="pytorch-grad-cam", batch_size=64)
    assert out.shape == ref.shape == (len(x), *x.shape[2:]) and out.dtype == ref.dtype == np.float32
    check("score-cam pgc", out, ref, PGC_BAR)


def _check_torchcam(check, tnet, net, x, target, layer):
    ref = _torchcam(tcm.ScoreCAM, tnet, x, layer, target, batch_size=64)
    out = C.cam("score-cam", net, x, target, layer, convention="torchcam", batch_size=64)
    assert out.shape == ref.shape and out.dtype == np.float64
    check("score-cam torchcam", out, ref, TORCHCAM_BAR)


@pytest.mark.parametrize("model_name, layer", SMALL_CASES)
def test_pytorch_grad_cam_score_cam(check, model_name, layer):
    _check_pgc(check, *_case(model_name), layer)


@pytest.mark.parametrize("model_name, layer", SMALL_CASES)
def test_torchcam_score_cam(check, model_name, layer):
    _check_torchcam(check, *_case(model_name), layer)


def test_resnet18_layer4(check):
    """Both libraries once on resnet18's layer4 (2×2, 512 channels; 64 px)."""
    case = _case("resnet18")
    _check_pgc(check, *case, "layer4")
    _check_torchcam(check, *case, "layer4")


@pytest.mark.parametrize("layer", ["features.3", "features.6"])
def test_torchcam_ss_cam(check, layer):
    """torchcam's SSCAM, num_samples=4, std 2.0, after torch.manual_seed(0): the
    convention's noise is torch's own stream, so the maps agree to float64 precision."""
    tnet, net, x, target = _case("small")
    ref = _torchcam(tcm.SSCAM, tnet, x, layer, target, seed=0, num_samples=4)
    state = torch.random.get_rng_state()
    out = C.cam("ss-cam", net, x, target, layer, convention="torchcam", num_samples=4, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global stream is left alone
    check("ss-cam torchcam", out, ref, TORCHCAM_BAR)
    # not vacuous: another seed draws other noise
    other = C.cam("ss-cam", net, x, target, layer, convention="torchcam", num_samples=4, seed=1)
    assert np.abs(other - ref).max() > 1e-6


@pytest.mark.parametrize("layer", ["features.3", "features.6"])
def test_torchcam_is_cam(check, layer):
    """torchcam's ISCAM, num_samples=4 (coefficients 0.25, 0.75, 1.5, 2.5)."""
    tnet, net, x, target = _case("small")
    ref = _torchcam(tcm.ISCAM, tnet, x, layer, target, num_samples=4)
    out = C.cam("is-cam", net, x, target, layer, convention="torchcam", num_samples=4)
    check("is-cam torchcam", out, ref, TORCHCAM_BAR)


def _authors_score_cam(tnet, module, x1, class_idx):
    """haofanwang/Score-CAM ``cam/scorecam.py`` ``ScoreCAM.forward`` for one image, retyped
    for the CPU: the layer's output from a forward hook, then for each channel the
    half-pixel upsampling, the constant-channel skip, the min-max without ε, the class
    softmax of the masked input's output, and ``score_saliency_map += score *
    saliency_map`` into ``torch.zeros((1, 1, h, w))`` (default dtype); ReLU, min-max."""
    _, _, h, w = x1.size()
    stored = {}
    hook = module.register_forward_hook(lambda m, i, o: stored.__setitem__("value", o.detach()))
    with torch.no_grad():
        tnet(x1)
    hook.remove()
    activations = stored["value"]
    predicted_class = torch.LongTensor([class_idx])
    score_saliency_map = torch.zeros((1, 1, h, w))
    skipped = 0
    with torch.no_grad():
        for i in range(activations.size(1)):
            saliency_map = torch.unsqueeze(activations[:, i, :, :], 1)
            saliency_map = F.interpolate(saliency_map, size=(h, w), mode="bilinear", align_corners=False)
            if saliency_map.max() == saliency_map.min():
                skipped += 1
                continue
            lo, hi = saliency_map.min(), saliency_map.max()
            norm_saliency_map = (saliency_map - lo) / (hi - lo)
            output = F.softmax(tnet(x1 * norm_saliency_map), dim=1)
            score = output[0][predicted_class]
            score_saliency_map += score * saliency_map
    score_saliency_map = F.relu(score_saliency_map)
    lo, hi = score_saliency_map.min(), score_saliency_map.max()
    return (score_saliency_map - lo).div(hi - lo).numpy(), skipped


@pytest.mark.parametrize("layer", ["features.3", "features.6"])
def test_authors_code_score_cam(check, layer):
    """The ``authors-code`` convention equals the authors' loop, image by image; at
    features.3 (a ReLU output with dead channels) the constant-channel skip is taken."""
    tnet, net, x, target = _case("small")
    out = C.cam("score-cam", net, x, target, layer, convention="authors-code")
    assert out.shape == (2, 1, 32, 32) and out.dtype == np.float32
    skipped = 0
    for n in range(2):
        ref, s = _authors_score_cam(tnet, tnet.get_submodule(layer), torch_input(x[n : n + 1]), target[n])
        skipped += s
        assert ref.dtype == np.float32
        check("score-cam authors-code", out[n : n + 1], ref, PGC_BAR)
    assert skipped > 0 or layer != "features.3"


def _tf_keras_vis_scorecam(net, x, target, layer, score):
    """tf-keras-vis 0.8.7 ``Scorecam.__call__`` (``tf_keras_vis/scorecam.py`` 88-192, defaults,
    ``max_N=None``), retyped with NumPy/SciPy in its NHWC layout, the Keras model replaced by
    the npcam model (NCHW at its boundary) whose ``score`` is the model output. Not
    installable here (tensorflow), so this is the library's source, step for step."""
    from scipy.ndimage import zoom

    from npcam.methods._passes import class_scores

    seed_input = np.transpose(x, (0, 2, 3, 1))
    penultimate_output = np.transpose(net.run(x).activations[layer], (0, 2, 3, 1))
    nsamples, channels = penultimate_output.shape[0], penultimate_output.shape[-1]
    factor = (1,) + tuple(float(t) / float(f) for f, t in zip(penultimate_output.shape[1:-1],
                                                              seed_input.shape[1:-1], strict=True)) + (1,)
    upsampled = zoom(penultimate_output, factor, order=1, mode="nearest")
    lo = np.min(upsampled, axis=(1, 2), keepdims=True)
    hi = np.max(upsampled, axis=(1, 2), keepdims=True)
    normalized = (upsampled - lo) / (hi - lo + 1e-7)
    template = np.tile(seed_input, (channels, 1, 1, 1, 1))
    mask = np.tile(normalized, (seed_input.shape[-1], 1, 1, 1, 1))
    mask = np.transpose(mask, (4, 1, 2, 3, 0))
    masked = np.reshape(template * mask, (-1,) + seed_input.shape[1:])
    preds = class_scores(net.run(np.transpose(masked, (0, 3, 1, 2))).output, score)
    preds = np.reshape(preds, (channels, nsamples, preds.shape[-1]))
    def softmax(p):  # K.softmax over the classes
        e = np.exp(p - p.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    weights = np.array([softmax(p)[np.arange(nsamples), target] for p in preds], dtype=np.float32)
    weights = np.mean(np.reshape(weights, (channels, nsamples, -1)), axis=2).T
    weights = np.sum(np.array([weights], dtype=np.float32), axis=0)
    cam = np.maximum(np.einsum("nhwk,nk->nhw", penultimate_output, weights.astype(np.float64)), 0)
    factor = tuple(float(t) / float(f) for f, t in zip(cam.shape, seed_input.shape, strict=False))
    cam = zoom(cam, factor, order=1)
    lo, hi = cam.min(axis=(1, 2), keepdims=True), cam.max(axis=(1, 2), keepdims=True)
    return (cam - lo) / (hi - lo + 1e-7)


@pytest.mark.parametrize("score", ["logit", "softmax"])
@pytest.mark.parametrize("layer", ["features.5", "features.6"])
def test_tf_keras_vis_score_cam_against_its_source(check, layer, score):
    """The ``tf-keras-vis`` convention (chunked, NCHW) equals the library's NHWC pipeline
    retyped from its source (whole-array zoom, tile/transpose of the masks, float32
    weights): the same numbers, rows and channels in another order."""
    _, net, x, target = _case("small")
    ref = _tf_keras_vis_scorecam(net, x, np.array(target), layer, score)
    out = C.cam("score-cam", net, x, target, layer, convention="tf-keras-vis", score=score, batch_size=7)
    check("score-cam tf-keras-vis (source)", out, ref, TORCHCAM_BAR)
