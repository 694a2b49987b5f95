"""Graphs that read their input channels-last, (N, H, W, C), as a Keras or JAX model
imported through ONNX does (a leading ``Permute((0, 3, 1, 2))``).

The methods that work in image space — Score-CAM's masks (and SS-/IS-CAM's), FullGrad's
input term and saliency, Guided Grad-CAM's broadcast, and the conventions' default resize
size — must read H and W from axes 1 and 2 of such an ``x``. Each test compares the
channels-last graph on ``x`` with the same layers as an NCHW graph on ``x`` transposed:
the same network, so every result must be the same numbers (rearranged where the result
is input-shaped). The input is 12 × 10 with 3 channels, so that confusing any two of H, W
and C changes a shape or a value.
"""

from __future__ import annotations

import numpy as np
import pytest
from _support import scaled_error

import npcam
from npcam import Graph
from npcam.nn.ops import Permute

H, W, C = 12, 10, 3
TARGETS = [1, 3]
#: the same arithmetic on the same numbers, in another memory order: at most rounding
TOL = 1e-13


def _layers(seed: int = 0):
    rng = np.random.default_rng(seed)
    layers = [
        ("conv1", npcam.Conv2d(C, 6, 3, padding=1, rng=rng)),
        ("bn1", npcam.BatchNorm2d(6)),
        ("relu1", npcam.ReLU()),
        ("pool1", npcam.MaxPool2d(2)),
        ("conv2", npcam.Conv2d(6, 8, 3, padding=1, rng=rng)),
        ("relu2", npcam.ReLU()),
        ("gap", npcam.GlobalAvgPool2d()),
        ("fc", npcam.Linear(8, 5, rng=rng)),
    ]
    bn = layers[1][1]
    bn.running_mean[...] = rng.normal(0, 0.3, 6)
    bn.running_var[...] = rng.uniform(0.5, 2.0, 6)
    bn.weight[...] = rng.uniform(0.5, 1.5, 6)
    bn.bias[...] = rng.normal(0, 0.2, 6)
    for _, layer in layers:
        bias = getattr(layer, "bias", None)
        if bias is not None and not isinstance(layer, npcam.BatchNorm2d):
            bias[...] = rng.uniform(-0.2, 0.2, bias.shape)
    layers[-1][1].weight[...] *= 10.0  # logits of order 1
    return layers


def _chain(layers, first_input: str) -> list:
    nodes, prev = [], first_input
    for name, layer in layers:
        nodes.append((name, layer, (prev,)))
        prev = name
    return nodes


@pytest.fixture(scope="module")
def graphs():
    layers = _layers()
    nchw = Graph(_chain(layers, "input"), output="fc")
    nhwc = Graph([("to_nchw", Permute((0, 3, 1, 2)), ("input",)), *_chain(layers, "to_nchw")],
                 output="fc")
    x_nhwc = np.random.default_rng(1).uniform(size=(2, H, W, C))
    return nhwc, nchw, x_nhwc, np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))


def test_nchw_input_removes_the_leading_transpose(graphs):
    """``nchw_input`` drops the Permute: the same logits on the transposed input, exactly,
    and every other node keeps its name; an NCHW graph is returned as it is, and a graph
    whose input has a second reader is not channels-last."""
    nhwc, nchw, x, xt = graphs
    assert nhwc.channels_last_input() and not nchw.channels_last_input()
    folded = nhwc.nchw_input()
    assert not folded.channels_last_input()
    assert [n.name for n in folded.nodes] == [n.name for n in nchw.nodes]
    np.testing.assert_array_equal(folded.forward(xt), nhwc.forward(x))
    assert nchw.nchw_input() is nchw
    two = Graph([("p", Permute((0, 3, 1, 2)), ("input",)), ("q", Permute((0, 1, 2, 3)), ("input",)),
                 ("add", npcam.Add(), ("p", "q"))], output="add")
    assert not two.channels_last_input()
    other = Graph([("p", Permute((0, 2, 3, 1)), ("input",))], output="p")
    assert not other.channels_last_input()


@pytest.mark.parametrize("method, options", [
    ("score-cam", {"return_masks": True}),
    ("score-cam", {"channel_softmax": False}),
    ("ss-cam", {"num_samples": 2}),
    ("is-cam", {"num_samples": 2}),
])
def test_score_family_masks_use_h_and_w(graphs, method, options):
    """Score-, SS- and IS-CAM on the channels-last graph equal the NCHW graph's: the masks
    are (H, W) upsamplings multiplied into every channel, so the masked inputs, their
    scores and the maps are the same. A per-channel baseline is given in each input's
    own layout ((C,) against NHWC, (C, 1, 1) against NCHW); without the channel softmax it
    changes the weights, so a baseline applied along the wrong axis would show."""
    nhwc, nchw, x, xt = graphs
    fn = npcam.METHODS[method].function
    base = np.array([0.2, 0.5, 0.8])
    ours = fn(nhwc, x, target=TARGETS, layer="relu2", baseline=base, **options)
    ref = fn(nchw, xt, target=TARGETS, layer="relu2", baseline=base[:, None, None], **options)
    assert ref.cam.max() > 0
    assert scaled_error(ours.cam, ref.cam) < TOL
    assert scaled_error(ours.weights, ref.weights) < TOL
    assert scaled_error(ours.extra["mask_scores"], ref.extra["mask_scores"]) < TOL
    if options.get("return_masks"):
        assert ours.extra["masks"].shape == (2, 8, H, W)
        assert scaled_error(ours.extra["masks"], ref.extra["masks"]) < TOL


def test_full_grad_input_term_in_the_input_layout(graphs):
    """FullGrad's saliency is (N, H, W) and equals the NCHW graph's; its input term
    x ⊙ ∂y^c/∂x comes back in x's own (N, H, W, C) layout, and completeness holds."""
    nhwc, nchw, x, xt = graphs
    ours = npcam.full_grad(nhwc, x, target=TARGETS)
    ref = npcam.full_grad(nchw, xt, target=TARGETS)
    assert ours.cam.shape == (2, H, W)
    assert scaled_error(ours.cam, ref.cam) < TOL
    assert ours.extra["input_term"].shape == x.shape
    assert scaled_error(ours.extra["input_term"].transpose(0, 3, 1, 2), ref.extra["input_term"]) < TOL
    gap = npcam.methods.full_grad.completeness_gap(ours)
    assert np.abs(gap).max() < 1e-12 * np.abs(ours.scores).max()


def test_guided_grad_cam_broadcasts_over_the_channel_axis(graphs):
    """Guided Grad-CAM on the channels-last graph is (N, H, W, C), the NCHW graph's result
    transposed: the (H, W) map multiplies every channel of the guided gradient."""
    nhwc, nchw, x, xt = graphs
    ours = npcam.guided_grad_cam(nhwc, x, target=TARGETS, layer="relu2")
    ref = npcam.guided_grad_cam(nchw, xt, target=TARGETS, layer="relu2")
    assert ours.shape == x.shape
    assert np.abs(ref).max() > 0
    assert scaled_error(ours.transpose(0, 3, 1, 2), ref) < TOL


@pytest.mark.parametrize("method, convention", [
    ("grad-cam", "pytorch-grad-cam"),
    ("grad-cam", "tf-keras-vis"),
    ("grad-cam++", "tf-keras-vis"),
    ("layer-cam", "pytorch-grad-cam"),
    ("score-cam", "pytorch-grad-cam"),
    ("score-cam", "tf-keras-vis"),
    ("full-grad", "pytorch-grad-cam"),
])
def test_conventions_resize_to_h_and_w(graphs, method, convention):
    """The conventions' maps at the input size (their default ``input_size``) are (N, H, W)
    and equal the NCHW graph's (the logit as the score: with the softmax, this small
    network's tf-keras-vis Grad-CAM map is all zero)."""
    nhwc, nchw, x, xt = graphs
    layer = None if method == "full-grad" else "relu2"
    kw = {"target": TARGETS, "layer": layer, "convention": convention, "score": "logit"}
    ours = npcam.conventions.cam(method, nhwc, x, **kw)
    ref = npcam.conventions.cam(method, nchw, xt, **kw)
    assert ref.shape == ours.shape == (2, H, W)
    assert np.abs(ref).max() > 0
    tol = 1e-6 if ref.dtype == np.float32 else TOL  # pytorch-grad-cam's maps are float32
    assert scaled_error(ours, ref) < tol


def test_guided_grad_cam_convention_is_nchw(graphs):
    """``conventions.guided_grad_cam`` returns (N, C, H, W), the libraries' layout, for a
    channels-last graph too: the NCHW graph's result."""
    nhwc, nchw, x, xt = graphs
    ours = npcam.conventions.guided_grad_cam(nhwc, x, target=TARGETS, layer="relu2", convention="captum")
    ref = npcam.conventions.guided_grad_cam(nchw, xt, target=TARGETS, layer="relu2", convention="captum")
    assert ours.shape == ref.shape == (2, C, H, W)
    assert scaled_error(ours, ref) < TOL
