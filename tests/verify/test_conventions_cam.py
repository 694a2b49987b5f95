"""npcam.conventions.cam: one entry point for every method's library conventions."""

import warnings

import numpy as np
import pytest

import npcam
from npcam import conventions
from npcam.nn.graph import Graph, Node


def _graph(inplace: bool = True) -> Graph:
    """conv → BN → ReLU (in place, as torchvision's ``ReLU(inplace=True)``) → conv → ReLU →
    GAP → FC."""
    rng = np.random.default_rng(0)
    bn = npcam.BatchNorm2d(4)  # eval mode, as every new npcam layer
    bn.running_mean[...] = rng.normal(size=4)
    bn.running_var[...] = rng.uniform(0.5, 2.0, size=4)
    nodes = [
        Node("conv", npcam.Conv2d(3, 4, 3, padding=1, rng=rng), ("input",), from_module=True),
        Node("bn", bn, ("conv",), from_module=True),
        Node("relu", npcam.ReLU(), ("bn",), from_module=True, inplace=inplace),
        Node("conv2", npcam.Conv2d(4, 5, 3, padding=1, rng=rng), ("relu",), from_module=True),
        Node("relu2", npcam.ReLU(), ("conv2",), from_module=True),
        Node("gap", npcam.GlobalAvgPool2d(), ("relu2",)),
        Node("fc", npcam.Linear(5, 3, rng=rng), ("gap",), from_module=True),
    ]
    return Graph(nodes, "fc")


X = np.random.default_rng(1).uniform(size=(2, 3, 8, 8))


@pytest.mark.parametrize("convention", conventions.NAMES)
def test_cam_of_grad_cam_is_grad_cam(convention):
    """cam("grad-cam", …) returns exactly what conventions.grad_cam returns, for each of
    0.1.0's conventions, and "authors-code" is the Lua release."""
    m = _graph(inplace=False)
    want = conventions.grad_cam(m, X, [0, 2], "conv2", convention)
    got = conventions.cam("grad-cam", m, X, [0, 2], "conv2", convention)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == want.dtype
    if convention == "grad-cam-lua":
        lua = conventions.cam("grad-cam", m, X, [0, 2], "conv2", "authors-code")
        np.testing.assert_array_equal(lua, want)


def test_every_method_with_conventions_is_a_registry_method_with_an_npcam_convention():
    """FAMILY_NAMES covers grad-cam and the 13 CAM-family methods, each a METHODS name
    with "npcam" first among its conventions."""
    assert set(conventions.FAMILY_NAMES) <= set(npcam.METHODS)
    assert len(conventions.FAMILY_NAMES) == 14
    for names in conventions.FAMILY_NAMES.values():
        assert names[0] == "npcam"


def test_unknown_method_and_convention_pairs_list_the_available_ones():
    """A method without conventions, or a convention its libraries do not implement,
    is a ValueError listing what is available."""
    m = _graph(inplace=False)
    with pytest.raises(ValueError, match="method must be one of"):
        conventions.cam("saliency", m, X)
    with pytest.raises(ValueError, match=r"one of \('npcam', 'pytorch-grad-cam'\) for method 'hires-cam'"):
        conventions.cam("hires-cam", m, X, convention="torchcam")
    with pytest.raises(ValueError, match="target='all' is not supported"):
        conventions.cam("grad-cam", m, X, "all")
    with pytest.raises(TypeError, match="has no option bogus"):
        conventions.cam("grad-cam", m, X, convention="torchcam", bogus=1)


def test_inplace_warning_for_the_libraries_that_hook_the_output_tensor():
    """InplaceOpWarning when the chosen layer's output is modified in place downstream
    (here BN → ReLU(inplace=True)) and the convention is torchcam's or
    pytorch-grad-cam's; none for the layer after the in-place op, for npcam's
    convention, or when the ReLU is not in place."""
    m = _graph()
    assert conventions.inplace_modifier(m, "bn") == "relu"
    assert conventions.inplace_modifier(m, "relu") is None
    for convention in ("torchcam", "pytorch-grad-cam"):
        with pytest.warns(npcam.InplaceOpWarning, match="'bn' is modified in place by node 'relu'"):
            conventions.cam("grad-cam", m, X, [0, 1], "bn", convention)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        conventions.cam("grad-cam", m, X, [0, 1], "relu", "torchcam")
        conventions.cam("grad-cam", m, X, [0, 1], "bn", "npcam")
        conventions.cam("grad-cam", _graph(inplace=False), X, [0, 1], "bn", "torchcam")
    assert conventions.inplace_modifier(npcam.zoo.pretrained("gap"), "features.9") is None
