"""Cross-check of the ``captum`` convention of npcam.conventions against captum itself.

Needs the ``crosscheck`` extra (torch, captum). A small float64 torch CNN is copied into
npcam layer for layer (``AdaptiveAvgPool2d(1), Flatten()`` ↔ ``GlobalAvgPool2d(),
Flatten()``, the same ``state_dict`` keys); then captum's ``LayerGradCam`` (ReLU off and
on, with and without channel summation, then ``LayerAttribution.interpolate`` in nearest
and bilinear mode) and ``GuidedGradCam`` (nearest and bilinear) are compared with
``npcam.conventions.grad_cam`` / ``guided_grad_cam`` (``convention="captum"``).
Bar: 1e-10 × max|captum's result| (float64 throughout; observed ~1e-16).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the crosscheck extra (torch)")
captum_attr = pytest.importorskip("captum.attr", reason="needs the crosscheck extra (captum)")

import npcam  # noqa: E402
from npcam.verify import conventions as C  # noqa: E402

pytestmark = [
    pytest.mark.crosscheck,
    pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU activations"),
]

nn = torch.nn
BAR = 1e-10
LAYER = "4"  # the second ReLU: the last 4-D map before global pooling


def scale_error(out, ref):
    out = np.asarray(out, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert out.shape == ref.shape
    return float(np.abs(out - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    tnet = nn.Sequential(
        nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(5, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    ).double().eval()
    npnet = npcam.Sequential(
        npcam.Conv2d(3, 5, kernel_size=3, padding=1), npcam.ReLU(),
        npcam.MaxPool2d(2),
        npcam.Conv2d(5, 8, kernel_size=3, padding=1), npcam.ReLU(),
        npcam.GlobalAvgPool2d(), npcam.Flatten(), npcam.Linear(8, 4),
    )
    npnet.load_state_dict({k: v.detach().numpy().copy() for k, v in tnet.state_dict().items()})
    return tnet, npnet


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(3).standard_normal((3, 3, 12, 14))


@pytest.fixture(scope="module")
def target(nets, x):
    # Explain a class other than the predicted one for some images as well.
    tnet, _ = nets
    with torch.no_grad():
        pred = tnet(torch.from_numpy(x)).argmax(1).numpy()
    return [int(pred[0]), int((pred[1] + 1) % 4), 3]


def test_models_agree(nets, x):
    tnet, npnet = nets
    with torch.no_grad():
        ref = tnet(torch.from_numpy(x)).numpy()
    assert scale_error(npnet.forward(x), ref) <= 1e-12


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("summation", [True, False])
def test_layer_grad_cam(nets, x, target, relu, summation):
    tnet, npnet = nets
    lgc = captum_attr.LayerGradCam(tnet, tnet[int(LAYER)])
    ref = lgc.attribute(torch.from_numpy(x), target=target, relu_attributions=relu,
                        attr_dim_summation=summation).detach().numpy()
    out = C.grad_cam(npnet, x, target, LAYER, convention="captum", relu_attributions=relu,
                     attr_dim_summation=summation)
    assert out.dtype == np.float64
    assert scale_error(out, ref) <= BAR
    if not relu:
        assert ref.min() < 0  # the default really is signed here


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("size", [(12, 14), (13, 17), (32, 9)])
def test_layer_grad_cam_interpolated(nets, x, target, mode, size):
    tnet, npnet = nets
    lgc = captum_attr.LayerGradCam(tnet, tnet[int(LAYER)])
    attr = lgc.attribute(torch.from_numpy(x), target=target, relu_attributions=True)
    ref = captum_attr.LayerAttribution.interpolate(attr, size, interpolate_mode=mode)
    out = C.grad_cam(npnet, x, target, LAYER, convention="captum", relu_attributions=True,
                     interpolate_mode=mode, input_size=size)
    assert scale_error(out, ref.detach().numpy()) <= BAR


def test_interpolate_default_mode_is_nearest(nets, x, target):
    tnet, npnet = nets
    attr = captum_attr.LayerGradCam(tnet, tnet[int(LAYER)]).attribute(
        torch.from_numpy(x), target=target
    )
    ref = captum_attr.LayerAttribution.interpolate(attr, (13, 17)).detach().numpy()
    out = C.grad_cam(npnet, x, target, LAYER, convention="captum",
                     interpolate_mode="nearest", input_size=(13, 17))
    assert scale_error(out, ref) <= BAR


@pytest.mark.parametrize("mode", [None, "nearest", "bilinear"])
def test_guided_grad_cam(nets, x, target, mode):
    tnet, npnet = nets
    ggc = captum_attr.GuidedGradCam(tnet, tnet[int(LAYER)])
    inputs = torch.from_numpy(x).clone().requires_grad_(True)
    kwargs = {} if mode is None else {"interpolate_mode": mode}
    ref = ggc.attribute(inputs, target=target, **kwargs).detach().numpy()
    out = C.guided_grad_cam(npnet, x, target, LAYER, convention="captum", **kwargs)
    assert out.shape == ref.shape == x.shape
    assert scale_error(out, ref) <= BAR
