"""A torchvision ResNet-18 imported as a Graph survives ``config()`` → ``save`` →
``load_model`` exactly, and ``fold_batchnorm`` on it keeps its logits."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import npcam  # noqa: E402


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    m = torchvision.models.resnet18(weights=None).double().eval()
    g = torch.Generator().manual_seed(1)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            n = mod.num_features
            mod.running_mean.copy_(torch.randn(n, generator=g, dtype=torch.float64) * 0.1)
            mod.running_var.copy_(torch.rand(n, generator=g, dtype=torch.float64) + 0.5)
            mod.weight.data.copy_(torch.rand(n, generator=g, dtype=torch.float64) + 0.5)
            mod.bias.data.copy_(torch.randn(n, generator=g, dtype=torch.float64) * 0.1)
    return m, npcam.from_torch(m)


def test_resnet18_graph_round_trips_through_a_file(resnet18, tmp_path):
    """Same config, same state_dict (keys and values), same logits bit for bit; the
    default layer, the aliases and the refused reused-module paths survive."""
    _, graph = resnet18
    path = graph.save(tmp_path / "resnet18.npz")
    back = npcam.load_model(path)
    assert isinstance(back, npcam.Graph)
    assert back.config() == graph.config()
    a, b = graph.state_dict(), back.state_dict()
    assert list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32))
    np.testing.assert_array_equal(back.run(x).output, graph.run(x).output)
    assert back.default_layer_name == "layer4"
    assert back.resolve("layer4.1") == graph.resolve("layer4.1") == "layer4_1_relu_1"
    with pytest.raises(ValueError, match="layer4_1_relu_1"):
        back.resolve("layer4.1.relu")


def test_resnet18_fold_batchnorm(resnet18):
    """Folding every conv → BN pair (20 of them) keeps the logits to 1e-12 of their scale;
    torch's state_dict keys of the convs stay; the graph is only folded when asked."""
    m, graph = resnet18
    folded = npcam.fold_batchnorm(graph)
    kinds = [type(layer).__name__ for _, layer in folded.named_nodes()]
    assert "BatchNorm2d" not in kinds and len(graph.nodes) - len(folded.nodes) == 20
    assert "BatchNorm2d" in [type(layer).__name__ for _, layer in graph.named_nodes()]
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32))
    ref = graph.run(x).output
    assert np.abs(folded.run(x).output - ref).max() <= 1e-12 * np.abs(ref).max()
    assert "conv1.weight" in folded.state_dict() and "conv1.bias" in folded.state_dict()


def test_state_dict_with_a_graph_architecture(resnet18):
    """``from_torch(state_dict, architecture=graph_config)`` builds the Graph afresh from its
    config and loads torch's tensors: the logits equal the imported graph's."""
    m, graph = resnet18
    rebuilt = npcam.from_torch(m.state_dict(), architecture=graph.config())
    assert isinstance(rebuilt, npcam.Graph) and rebuilt is not graph
    x = np.random.default_rng(2).standard_normal((1, 3, 32, 32))
    np.testing.assert_array_equal(rebuilt.run(x).output, graph.run(x).output)


def test_node_flags_from_module_and_inplace(resnet18):
    """``from_module``: the node came from an nn.Module call; ``inplace``: torch modified its
    output in place — an ``inplace=True`` ReLU module, ``F.relu(..., inplace=True)``, or
    ``out += identity`` (which fx records as a plain ``add``; the recorded source line tells
    it from ``out = out + identity``)."""
    _, graph = resnet18
    assert graph.node("layer1_0_relu").from_module and graph.node("layer1_0_relu").inplace
    assert graph.node("add").inplace and not graph.node("add").from_module  # out += identity
    assert not graph.node("conv1").inplace and graph.node("conv1").from_module

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 2, 3, padding=1)

        def forward(self, x):
            y = torch.nn.functional.relu(self.conv(x), inplace=True)
            z = y + x  # not in place
            z += x  # in place
            return torch.flatten(torch.nn.functional.relu(z), 1)

    g = npcam.from_torch(Block().double().eval())
    assert [(n.name, n.from_module, n.inplace) for n in g.nodes if n.name != "conv"] == [
        ("relu", False, True), ("add", False, False), ("add_1", False, True),
        ("relu_1", False, False), ("flatten", False, False),
    ]
