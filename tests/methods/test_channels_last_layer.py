"""Grad-CAM at a channels-last layer of a Graph (a JAX or Keras model after its
NCHW→NHWC transpose): the activations and gradients are transposed to (N, K, h, w),
so the map equals the one at the same feature maps held NCHW."""

from __future__ import annotations

import numpy as np

import npcam


def _graphs():
    rng = np.random.default_rng(0)
    conv = npcam.Conv2d(3, 5, 3, padding=1, rng=rng)
    fc = npcam.Linear(5, 4, rng=rng)
    # ReLU after the transpose (as jax2onnx exports a Flax CNN) ...
    nhwc = npcam.Graph([
        ("conv", conv, "input"),
        ("t", npcam.Permute((0, 2, 3, 1)), "conv"),
        ("relu", npcam.ReLU(), "t"),
        ("gap", npcam.Mean((1, 2)), "relu"),
        ("fc", fc, "gap"),
    ], "fc")
    # ... and the same function with the ReLU before it: ReLU commutes with a permutation
    nchw = npcam.Graph([
        ("conv", conv, "input"),
        ("relu", npcam.ReLU(), "conv"),
        ("gap", npcam.Mean((2, 3)), "relu"),
        ("fc", fc, "gap"),
    ], "fc")
    return nhwc, nchw


def test_grad_cam_at_a_channels_last_layer_is_explained_in_nchw():
    nhwc, nchw = _graphs()
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 7))
    assert np.abs(nhwc.forward(x) - nchw.forward(x)).max() <= 1e-15
    for target in ([1, 3], "all"):
        r = npcam.grad_cam(nhwc, x, target=target, layer="relu")
        ref = npcam.grad_cam(nchw, x, target=target, layer="relu")
        assert r.activations.shape == (2, 5, 6, 7)
        assert np.abs(r.activations - ref.activations).max() == 0
        assert np.abs(r.gradients - ref.gradients).max() <= 1e-15
        assert np.abs(r.cam - ref.cam).max() <= 1e-15 * np.abs(ref.cam).max()


def test_the_default_layer_may_be_channels_last():
    """layer=None picks the rectified map after the transpose, not the conv before it."""
    nhwc, _ = _graphs()
    x = np.random.default_rng(2).standard_normal((1, 3, 6, 7))
    assert npcam.grad_cam(nhwc, x, target=0).layer == "relu"
