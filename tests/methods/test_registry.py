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

FAMILY = (
    "grad-cam++", "xgrad-cam", "hires-cam", "grad-cam-elementwise", "layer-cam", "score-cam", "ss-cam",
    "is-cam", "ablation-cam", "eigen-cam", "eigen-grad-cam", "full-grad", "smooth-grad-cam++",
)


def test_registry_lists_the_methods_of_0_1_deconvnet_grad_cam_and_the_cam_family():
    """METHODS maps kebab-case names to Method records: 0.1's eight methods,
    deconvnet-grad-cam and the 13 CAM-family methods of issue 13 (in that order); each
    record's function is the public top-level function, whose name is the method's name
    with "-" as "_" and "++" as "_pp"."""
    assert list(METHODS) == [
        "cam", "grad-cam", "guided-backprop", "guided-grad-cam", "counterfactual", "deconvnet-grad-cam",
        "saliency", "gradient-x-input", "deconvnet", *FAMILY,
    ]
    assert npcam.METHODS is METHODS
    assert [f.name for f in dataclasses.fields(Method)] == [
        "name", "display_name", "kind", "needs_gradients", "needs_forward_passes",
        "supports_all_targets", "in_demo", "paper", "equation", "function",
    ]
    for name, m in METHODS.items():
        assert m.name == name and re.fullmatch(r"[a-z]+(-[a-z]+)*(\+\+)?", name)
        assert m.kind in KINDS
        assert getattr(npcam, m.function.__name__) is m.function
        assert "arXiv" in m.paper or "doi" in m.paper or "no paper" in m.paper
        params = list(inspect.signature(m.function).parameters)
        assert params[:3] == ["model", "x", "target"]
    for name in FAMILY:
        assert METHODS[name].function.__name__ == name.replace("++", "_pp").replace("-", "_")
    assert [n for n, m in METHODS.items() if m.in_demo] == [
        "cam", "grad-cam", "guided-backprop", "guided-grad-cam", "counterfactual", "deconvnet-grad-cam",
        "grad-cam++", "hires-cam", "score-cam",
    ]


def test_registry_kinds_and_passes_of_the_cam_family():
    """The issue's registry kinds: layer-elementwise for HiResCAM, element-wise Grad-CAM,
    LayerCAM and EigenGrad-CAM, input for FullGrad, layer-weights for the others;
    needs_forward_passes exactly for Score-, SS-, IS- and Ablation-CAM; target="all" for
    the gradient CAMs and the forward-pass CAMs, not for Eigen-CAM, EigenGrad-CAM, FullGrad
    and SmoothGrad-CAM++; no gradients for Eigen-CAM and the forward-pass CAMs."""
    kinds = {n: METHODS[n].kind for n in FAMILY}
    assert {n for n, k in kinds.items() if k == "layer-elementwise"} == {
        "hires-cam", "grad-cam-elementwise", "layer-cam", "eigen-grad-cam"}
    assert {n for n, k in kinds.items() if k == "input"} == {"full-grad"}
    passes = {"score-cam", "ss-cam", "is-cam", "ablation-cam"}
    assert {n for n in FAMILY if METHODS[n].needs_forward_passes} == passes
    assert {n for n in FAMILY if not METHODS[n].supports_all_targets} == {
        "eigen-cam", "eigen-grad-cam", "full-grad", "smooth-grad-cam++"}
    assert {n for n in FAMILY if not METHODS[n].needs_gradients} == passes | {"eigen-cam"}


def test_registry_is_read_only():
    """METHODS cannot be changed by a caller (a read-only mapping of frozen records)."""
    with pytest.raises(TypeError):
        METHODS["magic"] = METHODS["cam"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        METHODS["cam"].in_demo = False  # type: ignore[misc]


@pytest.mark.filterwarnings("ignore::npcam.NumericalWarning")  # Ablation-CAM of classes with y^c < 0
def test_supports_all_targets_is_what_the_functions_do():
    """A method with supports_all_targets accepts target="all" (a class axis after N)
    and its maps equal the per-class calls; every other method refuses it with a
    ValueError naming target (0.1.0's message)."""
    m = npcam.zoo.pretrained("gap")
    x = np.random.default_rng(0).uniform(size=(2, 3, 64, 64))
    options = {"ss-cam": {"num_samples": 2}, "is-cam": {"num_samples": 2}}
    for method in METHODS.values():
        opts = options.get(method.name, {})
        if method.supports_all_targets:
            r = method.function(m, x, "all", **opts)
            assert r.cam.shape == (2, 4, 8, 8)
            if method.name in FAMILY:
                one = method.function(m, x, 2, **opts)
                scale = np.abs(one.cam).max()
                np.testing.assert_allclose(r.cam[:, 2], one.cam, rtol=1e-12, atol=1e-12 * scale)
        else:
            with pytest.raises(ValueError, match="target='all' is supported by the methods with"):
                method.function(m, x, "all", **opts)


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
