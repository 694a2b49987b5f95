"""The Grad-CAM layer names of the imported torchvision classifiers (issue 11).

* ``layer=None`` selects the paper's layer recorded by ``from_torch``
  (``_torchvision.DEFAULT_LAYERS``: ``layer4``, ``features.29`` = conv5_3's ReLU, ...,
  DenseNet's function node ``relu``), at 64 px (Inception-v3: 75) and at 224 px, where the
  map has the documented shape;
* module paths name what torch's forward hooks on those modules see (a container names
  the last node inside it);
* a module path called more than once (ResNet's ``layer4.1.relu``) is refused with its
  node names, and each of those nodes is torch's own call;
* ``from_torch`` leaves the caller's training flags as they were;
* without a recorded default (a graph from a plain ``nn.Sequential``), ``layer=None``
  picks the last 4-D map of more than one position that every path to the logits passes
  through.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

REASON = "needs the crosscheck extra: pip install -e '.[test,crosscheck]'"
torch = pytest.importorskip("torch", reason=REASON)
pytest.importorskip("torchvision", reason=REASON)

import _torchvision as T  # noqa: E402

import npcam  # noqa: E402

pytestmark = pytest.mark.crosscheck
nn = torch.nn

#: The smallest test size per model: 64 px, Inception-v3 75 (its minimum).
SMALL = {name: 75 if name == "inception_v3" else 64 for name in T.MODELS}


@dataclass
class Built:
    name: str
    model: Any
    graph: Any
    memo: dict[str, Any] = field(default_factory=dict)

    def small(self) -> tuple[np.ndarray, Any]:
        """(x, npcam trace) at :data:`SMALL` px, batch 2, computed once."""
        if "small" not in self.memo:
            x = T.inputs(self.name, SMALL[self.name])
            self.memo["small"] = (x, self.graph.run(x))
        return self.memo["small"]


@pytest.fixture(scope="module", params=T.MODELS)
def built(request):
    """Each model in turn, built with random weights and converted once."""
    model = T.build(request.param)
    yield Built(request.param, model, npcam.from_torch(model))


def _hooked(model: Any, paths: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
    """The output of each module in ``paths`` in an eager forward, copied at hook time (so
    that a later in-place op, e.g. DenseNet's ``F.relu(norm5, inplace=True)``, cannot
    change it)."""
    seen: dict[str, np.ndarray] = {}
    handles = [
        model.get_submodule(p).register_forward_hook(
            lambda m, i, o, p=p: seen.__setitem__(p, o.detach().clone().numpy()))
        for p in paths
    ]
    try:
        T.logits(model, x)
    finally:
        for h in handles:
            h.remove()
    return seen


def _is_module(model: Any, path: str) -> bool:
    try:
        model.get_submodule(path)
    except AttributeError:
        return False
    return True


# --------------------------------------------------------------------------- the defaults
def test_default_layer_small(built):
    """At 64 px (Inception-v3 75), batch 2: ``npcam.grad_cam(graph, x)`` (target and layer
    None) explains issue 11's layer (``res.layer``, also ``graph.default_layer_name``),
    torch's argmax class per image, with a map of the layer's channel count."""
    expected = T.DEFAULT_LAYERS[built.name]
    assert built.graph.default_layer_name == expected
    x, trace = built.small()
    res = npcam.grad_cam(built.graph, x)
    assert res.layer == expected
    np.testing.assert_array_equal(res.target, T.logits(built.model, x).argmax(axis=1))
    assert res.activations.shape[:2] == (2, T.SHAPES_224[built.name][0])
    np.testing.assert_array_equal(res.activations, trace.activations[expected])


def test_default_layer_224(built):
    """At 224 px (batch 1, forward only): ``graph.default_layer(trace)`` is the table's
    layer and its map has the documented (K, h, w) — conv5_3 / conv5 before pool5 (14×14,
    13×13), Mixed_7c 5×5, 7×7 elsewhere (SqueezeNet's last Fire 13×13)."""
    trace = built.graph.run(T.inputs(built.name, 224, batch=1))
    name = built.graph.default_layer(trace)
    assert name == T.DEFAULT_LAYERS[built.name]
    assert trace.activations[name].shape == (1, *T.SHAPES_224[built.name])


def test_module_paths_are_forward_hook_outputs(built, check):
    """The default layer (where it is a module path) and pytorch-grad-cam's module path
    name exactly what a forward hook on that torch module sees (1e-10 × max), e.g.
    ``layer4`` = ``model.layer4``'s output = ``layer4.1``'s, ``features`` =
    ``model.features``'s (DenseNet: norm5, before the final ``F.relu``)."""
    paths = sorted({p for p in (T.DEFAULT_LAYERS[built.name], T.PGC_LAYERS[built.name])
                    if _is_module(built.model, p)})
    x, trace = built.small()
    seen = _hooked(built.model, paths, x)
    assert set(seen) == set(paths)
    for p in paths:
        check(f"{built.name}: module path {p}", trace.activations[p], seen[p])


# ------------------------------------------------------------------------ ResNet specifics
def test_layer4_is_the_last_node_of_layer4():
    """ResNet-18: ``trace.activations["layer4"]`` is the output of fx node
    ``layer4_1_relu_1`` (the last node inside ``layer4``) and equals ``model.layer4``'s
    forward-hook output to 1e-10."""
    model = T.build("resnet18")
    graph = npcam.from_torch(model)
    x = T.inputs("resnet18", 64)
    trace = graph.run(x)
    assert graph.resolve("layer4") == graph.resolve("layer4.1") == "layer4_1_relu_1"
    np.testing.assert_array_equal(trace.activations["layer4"], trace.activations["layer4_1_relu_1"])
    ref = _hooked(model, ["layer4"], x)["layer4"]
    err = np.abs(trace.activations["layer4"] - ref).max() / np.abs(ref).max()
    assert err <= 1e-10, err


@pytest.mark.parametrize(("name", "path", "nodes"), [
    ("resnet18", "layer4.1.relu", ["layer4_1_relu", "layer4_1_relu_1"]),
    ("resnet50", "layer4.2.relu", ["layer4_2_relu", "layer4_2_relu_1", "layer4_2_relu_2"]),
])
def test_reused_module_path_is_refused(name, path, nodes, check):
    """A module path called more than once (``layer4.1.relu`` of ResNet-18: twice;
    ``layer4.2.relu`` of ResNet-50: three times) is refused as a layer with a
    ``ValueError`` listing its node names; each of those nodes is usable and equals the
    output of torch's corresponding call (fx node of the same name, 1e-10)."""
    model = T.build(name)
    graph = npcam.from_torch(model)
    x = T.inputs(name, 64)
    for refuse in (lambda: graph.resolve(path), lambda: npcam.grad_cam(graph, x, layer=path)):
        with pytest.raises(ValueError) as info:
            refuse()
        for node in nodes:
            assert re.search(rf"\b{re.escape(node)}\b", str(info.value)), str(info.value)
    trace = graph.run(x)
    target = trace.output.argmax(axis=1)
    values = []
    for node in nodes:
        _, a_ref, _ = T.torch_layer(model, x, target, node)
        check(f"{name}: {node}", trace.activations[node], a_ref)
        values.append(trace.activations[node])
    for k, v in enumerate(values[1:], 1):  # distinct calls, not one output under several names
        assert v.shape != values[0].shape or not np.array_equal(v, values[0]), nodes[k]


# -------------------------------------------------------------------------- training mode
@pytest.mark.parametrize("mode", ["train", "eval", "mixed"])
def test_from_torch_leaves_training_mode(mode, check):
    """``from_torch`` traces in eval mode but restores every submodule's ``training``
    flag: a model in training mode stays in training mode, one in eval mode in eval mode,
    a mixed one (``layer1`` in eval) keeps each flag. The graph is in eval mode and its
    logits are torch's eval-mode logits (BN on running statistics)."""
    model = T.build("resnet18")
    if mode in ("train", "mixed"):
        model.train()
    if mode == "mixed":
        model.layer1.eval()
    before = [(n, m.training) for n, m in model.named_modules()]
    graph = npcam.from_torch(model)
    assert [(n, m.training) for n, m in model.named_modules()] == before
    assert any(flag for _, flag in before) == (mode != "eval")
    assert not graph.training
    x = T.inputs("resnet18", 64)
    out = graph.run(x).output
    model.eval()
    check("resnet18: logits (source in train mode)" if mode != "eval" else "resnet18: logits",
          out, T.logits(model, x))


# -------------------------------------------------------------------------- generic rule
def test_generic_rule_resnet18_sequential(check):
    """``from_torch(nn.Sequential(*resnet18.children()[:-1], Flatten(), fc))`` is traced
    (its blocks have their own forward) into a graph without a recorded default; then
    ``layer=None`` is the last node every path to the logits passes through whose output is
    a 4-D map of more than one position: ``layer4``'s output (child "7"), skipping the
    avgpool's 1×1 map — equal to ``model.layer4``'s forward-hook output."""
    model = T.build("resnet18")
    seq = nn.Sequential(*list(model.children())[:-1], nn.Flatten(), model.fc)
    graph = npcam.from_torch(seq)
    assert isinstance(graph, npcam.Graph) and graph.default_layer_name is None
    x = T.inputs("resnet18", 64)
    trace = graph.run(x)
    name = graph.default_layer(trace)
    assert graph.resolve(name) == graph.resolve("7")
    res = npcam.grad_cam(graph, x)
    assert graph.resolve(res.layer) == graph.resolve("7")
    check("resnet18: generic rule layer4", trace.activations[name], _hooked(model, ["layer4"], x)["layer4"])


def test_generic_rule_densenet_sequential(check):
    """DenseNet-121 rebuilt as ``nn.Sequential(features, ReLU(), AdaptiveAvgPool2d(1),
    Flatten(), classifier)``: the rule picks the ReLU after norm5 (not norm5 itself, which
    the ReLU dominates), i.e. ReLU(``model.features`` output)."""
    model = T.build("densenet121")
    seq = nn.Sequential(OrderedDict(
        features=model.features, relu=nn.ReLU(), pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(),
        classifier=model.classifier,
    ))
    graph = npcam.from_torch(seq)
    assert graph.default_layer_name is None
    x = T.inputs("densenet121", 64)
    trace = graph.run(x)
    name = graph.default_layer(trace)
    assert graph.resolve(name) == graph.resolve("relu")
    features = _hooked(model, ["features"], x)["features"]
    assert (features < 0).any()
    check("densenet121: generic rule relu", trace.activations[name], np.maximum(features, 0))
