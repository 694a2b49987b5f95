"""``npcam.interop.from_torch`` on real torch modules: round trips (names, keys, weights,
logits to 1e-10 × max|torch|), the accepted variants, and the refusals — each naming the
layer's dotted name and type."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the crosscheck extra: pip install -e '.[test,crosscheck]'")

import npcam  # noqa: E402
from npcam.interop import from_torch  # noqa: E402

pytestmark = pytest.mark.crosscheck
nn = torch.nn


def _logits(tnet, x):
    with torch.no_grad():
        return tnet(torch.from_numpy(x.copy())).numpy()


def test_round_trip(arch, check):
    # names, state_dict keys and values line up exactly; logits agree
    t_state = arch.tnet.state_dict()
    n_state = arch.net.state_dict()
    assert list(n_state) == list(t_state)
    for key, value in t_state.items():
        np.testing.assert_array_equal(n_state[key], value.numpy())
    torch_names = [n for n, m in arch.tnet.named_modules() if n]
    assert [n for n, _ in arch.net.named_modules()] == torch_names
    assert not arch.net.training
    check("logits (from_torch)", arch.net.forward(arch.x), _logits(arch.tnet, arch.x))


def test_batchnorm_running_stats_and_train_mode_source(check):
    torch.manual_seed(0)
    tnet = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, eps=1e-3, momentum=0.3), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2),
    ).double()
    # give the running statistics non-trivial values by training steps on random data
    for _ in range(3):
        tnet(torch.randn(4, 3, 7, 6, dtype=torch.float64))
    assert tnet[1].num_batches_tracked.item() == 3
    net = from_torch(tnet)  # the source is still in training mode: npcam copies eval mode
    bn = net["1"]
    assert (bn.eps, bn.momentum) == (1e-3, 0.3) and not bn.training
    assert int(net.state_dict()["1.num_batches_tracked"]) == 3
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 6))
    check("logits (from_torch)", net.forward(x), _logits(tnet.eval(), x))


def test_float32_source_is_copied_exactly():
    torch.manual_seed(1)
    tnet = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    net = from_torch(tnet)
    for key, value in tnet.state_dict().items():
        got = net.state_dict()[key]
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, value.numpy().astype(np.float64))


def test_padding_variants_and_inplace(check):
    torch.manual_seed(2)
    tnet = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding="same"), nn.ReLU(inplace=True),
        nn.Conv2d(4, 4, (5, 3), padding="same"), nn.ReLU(),
        nn.Conv2d(4, 5, 3, padding="valid", stride=(2, 1)), nn.ReLU(),
        nn.Conv2d(5, 5, 3, padding=(1, 0)), nn.ReLU(),
        nn.MaxPool2d((2, 3), stride=(1, 2)),
        nn.AdaptiveAvgPool2d((1, 1)), nn.Dropout(0.2), nn.Identity(), nn.Flatten(), nn.Linear(5, 3),
    ).double().eval()
    net = from_torch(tnet)
    convs = [layer for _, layer in net.named_layers() if isinstance(layer, npcam.Conv2d)]
    assert [c.padding for c in convs] == [(1, 1), (2, 1), (0, 0), (1, 0)]
    names = [n for n, _ in net.named_layers()]
    assert "11" not in names and "12" in names  # the Identity is skipped, other names kept
    assert isinstance(net["8"], npcam.MaxPool2d) and net["8"].stride == (1, 2)
    x = np.random.default_rng(1).standard_normal((2, 3, 13, 10))
    check("logits (from_torch)", net.forward(x), _logits(tnet, x))


def test_nested_ordered_dict_and_sequential_subclass(check):
    class ConvBlock(nn.Sequential):  # like torchvision's Conv2dNormActivation
        def __init__(self, cin, cout):
            super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    tnet = nn.Sequential(OrderedDict(
        stem=ConvBlock(3, 4),
        body=nn.Sequential(OrderedDict(pool=nn.MaxPool2d(2), block=ConvBlock(4, 6))),
        head=nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3)),
    )).double().eval()
    net = from_torch(tnet)
    assert [n for n, _ in net.named_layers()] == [
        "stem.0", "stem.1", "stem.2", "body.pool", "body.block.0", "body.block.1", "body.block.2",
        "head.0", "head.1", "head.2",
    ]
    x = np.random.default_rng(2).standard_normal((2, 3, 8, 11))
    check("logits (from_torch)", net.forward(x), _logits(tnet, x))
    r = npcam.grad_cam(net, x, [0, 2], "body.block")
    assert r.activations.shape == (2, 6, 4, 5)


def test_parametrised_weight_uses_effective_value(check):
    conv = nn.utils.parametrizations.weight_norm(nn.Conv2d(2, 3, 3))
    tnet = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)).double()
    net = from_torch(tnet)
    np.testing.assert_array_equal(net["0"].weight, tnet[0].weight.detach().numpy())
    x = np.random.default_rng(3).standard_normal((1, 2, 5, 6))
    check("logits (from_torch)", net.forward(x), _logits(tnet, x))


def test_state_dict_with_architecture(arch, check):
    # a torch state_dict (tensors that require grad) loads into an npcam model or config
    net = from_torch(dict(arch.tnet.named_parameters()) | dict(arch.tnet.named_buffers()),
                     architecture=arch.net.config())
    check("logits (from_torch)", net.forward(arch.x), _logits(arch.tnet, arch.x))


def test_custom_module_is_traced_or_loaded_into_an_architecture(check):
    """A module with its own forward is traced with torch.fx into a Graph equal to torch;
    with ``architecture=`` its state_dict is loaded into the given npcam model instead."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))

    tnet = Net().double().eval()
    x = np.random.default_rng(4).standard_normal((2, 1, 6, 7))
    graph = from_torch(tnet)
    assert isinstance(graph, npcam.Graph)
    assert [n for n, _ in graph.named_nodes()] == ["conv", "relu", "mean", "fc"]
    assert not graph.node("relu").from_module  # torch.relu is a function
    check("logits (from_torch)", graph.run(x).output, _logits(tnet, x))
    arch = npcam.Sequential(OrderedDict(
        conv=npcam.Conv2d(1, 2, 3), relu=npcam.ReLU(), gap=npcam.GlobalAvgPool2d(), fc=npcam.Linear(2, 2)
    ))
    with pytest.raises(ValueError, match="unexpected keys"):
        from_torch(tnet, architecture=npcam.Sequential(npcam.Conv2d(1, 2, 3)))
    net = from_torch(tnet, architecture=arch)
    assert net is arch
    check("logits (from_torch)", net.forward(x), _logits(tnet, x))


def test_not_a_module():
    with pytest.raises(TypeError, match="torch.nn.Module or a state_dict"):
        from_torch([nn.ReLU()])
    with pytest.raises(ValueError, match="dtype must be numpy.float64 or numpy.float32"):
        from_torch(nn.Sequential(nn.ReLU()), dtype=np.int32)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (lambda: nn.Conv2d(4, 4, 3, dilation=2), r"dilation=\(2, 2\)"),
        (lambda: nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), "padding_mode='reflect'"),
        (lambda: nn.Conv2d(4, 4, 2, padding="same"), "padding='same' with kernel_size"),
        (lambda: nn.MaxPool2d(2, dilation=2), "dilation=2"),
        (lambda: nn.BatchNorm2d(4, affine=False), "affine=False"),
        (lambda: nn.BatchNorm2d(4, track_running_stats=False), "track_running_stats=False"),
        (lambda: nn.LeakyReLU(), "LeakyReLU.*nearest supported activation is ReLU"),
        (lambda: nn.GELU(approximate="tanh"), "approximate='tanh'"),
    ],
)
def test_unsupported_layers_are_named(bad, message):
    layer = bad()
    tnet = nn.Sequential(OrderedDict(
        features=nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), layer, nn.ReLU()),
        pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), fc=nn.Linear(4, 2),
    ))
    with pytest.raises(ValueError, match=message) as info:
        from_torch(tnet)
    assert f"module 'features.1' ({type(layer).__name__})" in str(info.value)
    assert "fx node 'features_1'" in str(info.value)


@pytest.mark.parametrize(
    "layer",
    [
        lambda: nn.Conv2d(4, 4, 3, groups=2, padding=1),
        lambda: nn.AvgPool2d(3, 1, 1),
        lambda: nn.Sigmoid(),
        lambda: nn.MaxPool2d(2, padding=1),
        lambda: nn.MaxPool2d(2, ceil_mode=True),
        lambda: nn.BatchNorm2d(4, momentum=None),
    ],
)
def test_layers_refused_in_0_2_convert_now(layer, check):
    """Grouped conv, average pooling, sigmoid, padded and ceil-mode max-pooling convert
    layer for layer into a Sequential that equals torch."""
    torch.manual_seed(0)
    tnet = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), layer(), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 2)).double().eval()
    net = from_torch(tnet)
    assert isinstance(net, npcam.Sequential)
    x = np.random.default_rng(5).standard_normal((2, 3, 9, 7))
    check("logits (from_torch)", net.forward(x), _logits(tnet, x))


def test_structural_refusals_and_what_traces_instead(check):
    with pytest.raises(ValueError, match=r"module '1' \(Flatten\).*end_dim=2"):
        from_torch(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(start_dim=1, end_dim=2)))
    with pytest.raises(ValueError, match=r"module '2' \(Softmax\).*score='softmax'"):
        from_torch(nn.Sequential(nn.Flatten(), nn.Linear(4, 2), nn.Softmax(dim=1)))
    with pytest.raises(ValueError, match=r"fx node '_0' \(call_module 0\): module '0' \(ModuleList\)"):
        from_torch(nn.Sequential(nn.ModuleList([nn.ReLU()])))

    class Untraceable(nn.Module):
        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: fx cannot trace it
                return x
            return -x

    with pytest.raises(ValueError, match="could not trace Untraceable with torch.fx.symbolic_trace: "):
        from_torch(Untraceable())

    class Custom(nn.Sequential):
        def forward(self, x):  # a Sequential subclass with its own forward is traced through
            return super().forward(x) * 2

    tnet = nn.Sequential(OrderedDict(
        conv=nn.Conv2d(3, 2, 3), block=Custom(nn.ReLU()), pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten()
    )).double().eval()
    graph = from_torch(tnet)
    assert isinstance(graph, npcam.Graph)
    assert type(graph.node("mul").layer).__name__ == "MulConstant"
    x = np.random.default_rng(6).standard_normal((2, 3, 6, 6))
    check("logits (from_torch)", graph.run(x).output, _logits(tnet, x))


def test_reused_torch_module_is_converted_at_every_use():
    """T01: ``nn.Sequential(conv, relu, conv2, relu, ...)`` with one ReLU instance used twice
    lost its second ReLU in 0.1.0 (``named_children()`` lists a module once) and the logits
    differed from torch by 0.09. Every entry of ``_modules`` is converted now: the layer
    names are torch's, and logits and input gradients equal torch's to 1e-12."""
    torch.manual_seed(0)
    relu = nn.ReLU()
    tm = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), relu, nn.Conv2d(4, 4, 3, padding=1), relu,
                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).double().eval()
    m = from_torch(tm)
    assert [n for n, _ in m.named_layers()] == ["0", "1", "2", "3", "4", "5", "6"]
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8))
    ref = _logits(tm, x)
    assert np.abs(m.forward(x) - ref).max() <= 1e-12 * np.abs(ref).max()
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    (gx,) = torch.autograd.grad(tm(xt)[:, 1].sum(), xt)
    ours = npcam.saliency(m, x, 1)
    assert np.abs(ours - gx.numpy()).max() <= 1e-12 * np.abs(gx.numpy()).max()


def test_meta_tensors_are_refused_with_a_clear_message():
    """T03: a model on the 'meta' device gave torch's NotImplementedError "Cannot copy out of
    meta tensor"; now a ValueError says the tensors hold no values."""
    tm = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                       nn.Linear(4, 2)).to("meta")
    with pytest.raises(ValueError, match="meta"):
        from_torch(tm)
