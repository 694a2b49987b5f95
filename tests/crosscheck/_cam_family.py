"""The models of the CAM-family library cross-checks (``../shared/notes/cam-family.md``):
SmallCNN and SignedCNN (npcam ``Sequential`` from ``_support.small_cnn`` and the same
weights in a torch ``nn.Sequential`` with the same names), and torchvision's resnet18 at
64 px with randomised BN statistics and affine parameters. All float64, eval mode.

Importable as ``_cam_family`` from the crosscheck tests (``tests/crosscheck`` is on
``sys.path`` through its conftest).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch
from _support import small_cnn, small_cnn_input
from torch import nn

import npcam

#: SmallCNN's layers with their character: before a max-pool (g sparse), signed conv
#: output, ReLU into GAP (g constant in space).
SMALL_LAYERS = ("features.3", "features.5", "features.6")
#: SignedCNN: the signed conv output feeds GAP directly.
SIGNED_LAYERS = ("features.3", "features.5")


def torch_small_cnn(model: npcam.Sequential, signed: bool = False) -> nn.Module:
    """The torch twin of :func:`_support.small_cnn` with ``model``'s weights."""
    feats = [nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 3, padding=1), nn.ReLU(),
             nn.MaxPool2d(2), nn.Conv2d(12, 16, 3, padding=1)]
    if not signed:
        feats.append(nn.ReLU())
    net = nn.Sequential()
    net.add_module("features", nn.Sequential(*feats))
    net.add_module("classifier", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)))
    state = {k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()}
    state = {k.replace("classifier.1.", "classifier.2."): v for k, v in state.items()}
    net = net.double()  # before loading: a float32 module would round the weights
    net.load_state_dict(state)
    return net.eval()


@cache
def small_pair(signed: bool = False, seed: int = 0) -> tuple[nn.Module, npcam.Sequential, np.ndarray]:
    """(torch model, npcam model, input (2, 3, 32, 32)) for SmallCNN or SignedCNN."""
    model = small_cnn(seed, signed=signed)
    return torch_small_cnn(model, signed), model, small_cnn_input(seed + 1, 2)


@cache
def resnet18_pair(seed: int = 0, size: int = 64) -> tuple[nn.Module, npcam.Graph, np.ndarray]:
    """(torchvision resnet18 with random weights and BN statistics, its ``from_torch``
    graph, one (1, 3, size, size) input)."""
    import torchvision

    torch.manual_seed(seed)
    net = torchvision.models.resnet18(weights=None)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(0.1 * torch.randn(m.num_features, generator=gen))
    net = net.double().eval()
    x = np.random.default_rng(seed).normal(size=(1, 3, size, size))
    return net, npcam.from_torch(net), x


def torch_input(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(x, dtype=np.float64))
