r"""The method registry (one extension point) and Deconvolution Grad-CAM, the paper's method
added through it."""

import dataclasses
import inspect
import re

import numpy as np
import pytest

import npcam
from npcam.methods import METHODS, Method
from npcam.methods.registry import KINDS


def test_registry_lists_the_methods_of_0_1_and_deconvnet_grad_cam():
    """METHODS maps kebab-case names to Method records: 0.1's eight methods and
    deconvnet-grad-cam; each record's function is the public top-level function."""
    assert set(METHODS) == {
        "cam", "grad-cam", "counterfactual", "saliency", "gradient-x-input", "guided-backprop",
        "deconvnet", "guided-grad-cam", "deconvnet-grad-cam",
    }
    assert npcam.METHODS is METHODS
    assert [f.name for f in dataclasses.fields(Method)] == [
        "name", "display_name", "kind", "needs_gradients", "needs_forward_passes",
        "supports_all_targets", "in_demo", "paper", "equation", "function",
    ]
    for name, m in METHODS.items():
        assert m.name == name and re.fullmatch(r"[a-z]+(-[a-z]+)*", name)
        assert m.kind in KINDS
        assert getattr(npcam, m.function.__name__) is m.function
        assert "arXiv" in m.paper
        params = list(inspect.signature(m.function).parameters)
        assert params[:3] == ["model", "x", "target"]
    assert [n for n, m in METHODS.items() if m.in_demo] == [
        "cam", "grad-cam", "guided-backprop", "guided-grad-cam", "counterfactual", "deconvnet-grad-cam",
    ]


def test_registry_is_read_only():
    """METHODS cannot be changed by a caller (a read-only mapping of frozen records)."""
    with pytest.raises(TypeError):
        METHODS["magic"] = METHODS["cam"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        METHODS["cam"].in_demo = False  # type: ignore[misc]


def test_supports_all_targets_is_what_the_functions_do():
    """A method with supports_all_targets accepts target="all" (a class axis after N);
    every other method refuses it with a ValueError naming target."""
    m = npcam.zoo.pretrained("gap")
    x = np.random.default_rng(0).uniform(size=(2, 3, 64, 64))
    for method in METHODS.values():
        if method.supports_all_targets:
            r = method.function(m, x, "all")
            assert r.cam.shape == (2, 4, 8, 8)
        else:
            with pytest.raises(ValueError, match="target"):
                method.function(m, x, "all")


def test_deconvnet_grad_cam_is_the_upsampled_map_times_the_deconvnet_gradient():
    r"""Deconvolution Grad-CAM (§ 3.1) = upsample(L^c) ⊙ deconvnet, per input channel, bit
    for bit what the two public functions give (bilinear and nearest); it differs from
    Guided Grad-CAM exactly where the guided and deconvnet rules differ."""
    m = npcam.zoo.pretrained("vgg")
    x = npcam.zoo.standardize("vgg", npcam.evaluation.scenes.make_scenes(3, seed=4).images)
    t = np.array([0, 2, 3])
    for mode in ("bilinear", "nearest"):
        got = npcam.deconvnet_grad_cam(m, x, t, mode=mode)
        cam = npcam.grad_cam(m, x, t).cam
        want = npcam.upsample(cam, x.shape[2:], mode=mode)[:, None] * npcam.deconvnet(m, x, t)
        np.testing.assert_array_equal(got, want)
    guided = npcam.guided_grad_cam(m, x, t)
    assert not np.array_equal(guided, npcam.deconvnet_grad_cam(m, x, t))
