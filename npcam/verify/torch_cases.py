r"""Golden cases rebuilt in PyTorch: the source of a ``torch.nn.Module`` for any case.

A torch user checking an implementation against the golden vectors needs the case's
model in torch, with the case's weights. :func:`torch_source` writes that model as plain
PyTorch code — an ``nn.Sequential`` for a chain, a small ``nn.Module`` with a
``forward`` for a graph — from the npcam model that :func:`npcam.vectors.load_case`'s
architecture builds (so every number in the source comes from a validated layer, never
from the file's text). The ``state_dict`` keys are the case's ``weight:<key>`` entries
without the prefix. :func:`script` wraps it into a standalone ``<case>.py`` that loads
``<case>.npz`` beside it with ``numpy.load(allow_pickle=False)`` and checks the logits.

Layer by layer (npcam → torch): ``Conv2d``, ``BatchNorm2d``, ``ReLU``, ``MaxPool2d``,
``Dropout``, ``Linear``, ``Flatten`` map one to one; ``GlobalAvgPool2d`` (N, K, h, w) ->
(N, K) is ``nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())`` in a chain and
``x.mean((2, 3))`` in a graph; a graph's ``Add`` is ``a + b`` and ``Concat`` is
``torch.cat``.
"""

from __future__ import annotations

from typing import Any

from ..nn import layers
from ..nn.graph import Graph
from ..nn.ops import Add, Concat
from ..nn.sequential import Sequential

__all__ = ["script", "torch_source"]


def _pair(v: Any) -> str:
    a, b = (int(t) for t in v)
    return f"({a}, {b})"


def _module(layer: Any, indent: str) -> str:
    """The torch constructor of one npcam layer (a Sequential recursively)."""
    if isinstance(layer, Sequential):
        inner = indent + "    "
        items = [f'{inner}("{_key(name)}", {_module(child, inner)}),'
                 for name, child in layer.children.items()]
        return "nn.Sequential(OrderedDict([\n" + "\n".join(items) + f"\n{indent}]))"
    c = layer.config()  # validated values only
    if isinstance(layer, layers.Conv2d):
        return (f"nn.Conv2d({int(c['in_channels'])}, {int(c['out_channels'])}, kernel_size="
                f"{_pair(c['kernel_size'])}, stride={_pair(c['stride'])}, padding={_pair(c['padding'])}, "
                f"groups={int(c['groups'])}, bias={bool(c['bias'])})")
    if isinstance(layer, layers.BatchNorm2d):
        return (f"nn.BatchNorm2d({int(c['num_features'])}, eps={float(c['eps'])!r}, "
                f"momentum={float(c['momentum'])!r})")
    if isinstance(layer, layers.ReLU):
        return "nn.ReLU()"
    if isinstance(layer, layers.MaxPool2d):
        return (f"nn.MaxPool2d(kernel_size={_pair(c['kernel_size'])}, stride={_pair(c['stride'])}, "
                f"padding={_pair(c['padding'])}, ceil_mode={bool(c['ceil_mode'])})")
    if isinstance(layer, layers.GlobalAvgPool2d):
        return "nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())"
    if isinstance(layer, layers.Flatten):
        return "nn.Flatten()"
    if isinstance(layer, layers.Dropout):
        return f"nn.Dropout({float(c['p'])!r})"
    if isinstance(layer, layers.Linear):
        return f"nn.Linear({int(c['in_features'])}, {int(c['out_features'])}, bias={bool(c['bias'])})"
    raise ValueError(f"torch_source does not translate layer {type(layer).__name__}; the golden cases "
                     "use Conv2d, BatchNorm2d, ReLU, MaxPool2d, GlobalAvgPool2d, Flatten, Dropout, Linear, "
                     "Add and Concat.")


def _key(name: str) -> str:
    if not (name.replace(".", "").replace("_", "").isalnum() and name.isascii()):
        raise ValueError(f"a layer name must be letters, digits, '_' or '.', got {name!r}.")
    return name


def _ident(name: str) -> str:
    if not (name.isidentifier() and name.isascii()) or name in ("input", "self", "torch", "nn", "F"):
        raise ValueError(f"a graph node's name must be a Python identifier, got {name!r}.")
    return name


def _graph_source(model: Graph, class_name: str) -> str:
    init: list[str] = []
    body: list[str] = []
    var = {"input": "x"}
    for node in model.nodes:
        name = _ident(node.name)
        args = [var[_ident(i) if i != "input" else i] for i in node.inputs]
        layer = node.layer
        if isinstance(layer, Add):
            expr = " + ".join(args)
        elif isinstance(layer, Concat):
            expr = f"torch.cat([{', '.join(args)}], {int(layer.config()['dim'])})"
        elif isinstance(layer, layers.GlobalAvgPool2d):
            expr = f"{args[0]}.mean((2, 3))"
        elif isinstance(layer, layers.Flatten):
            expr = f"torch.flatten({args[0]}, 1)"
        else:
            init.append(f"        self.{name} = {_module(layer, '        ')}")
            expr = f"self.{name}({args[0]})"
        body.append(f"        {name} = {expr}")
        var[name] = name
    body.append(f"        return {var[_ident(model.output_name)]}")
    return "\n".join([
        f"class {class_name}(nn.Module):",
        "    def __init__(self):",
        "        super().__init__()",
        *init,
        "",
        "    def forward(self, x):",
        *body,
    ])


def torch_source(model: Sequential | Graph, class_name: str = "CaseModel") -> str:
    """Python source defining ``build()``, which returns the torch module for ``model``
    (needs ``torch``, ``torch.nn as nn`` and ``OrderedDict`` in scope; :func:`script`
    adds the imports)."""
    if isinstance(model, Graph):
        return _graph_source(model, class_name) + f"\n\n\ndef build():\n    return {class_name}()\n"
    if isinstance(model, Sequential):
        return f"def build():\n    return {_module(model, '    ')}\n"
    raise TypeError(f"model must be an npcam Sequential or Graph, got {type(model).__name__}.")


HEADER = '''"""Case {case!r} of npcam's golden vectors, rebuilt in PyTorch (written by
``npcam vectors --torch``; needs torch and numpy, not npcam).

    python {case}.py          # loads {case}.npz beside this file and checks the logits
"""

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

'''

FOOTER = '''

def load(npz_path=None):
    """(model, arrays): the float64 eval-mode model with the case's weights, and every
    array of the case file."""
    path = Path(npz_path) if npz_path else Path(__file__).with_suffix(".npz")
    with np.load(path, allow_pickle=False) as f:
        arrays = {{k: f[k] for k in f.files}}
    model = build().double()
    n = len("weight:")
    weights = {{k[n:]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("weight:")}}
    model.load_state_dict(weights, strict=True)
    return model.eval(), arrays


if __name__ == "__main__":
    model, arrays = load()
    with torch.no_grad():
        logits = model(torch.from_numpy(arrays["input"])).numpy()
    err = float(np.abs(logits - arrays["logits"]).max() / np.abs(arrays["logits"]).max())
    print(f"{case}: max relative error of the logits {{err:.1e}}")
    raise SystemExit(0 if err <= 1e-10 else 1)
'''


def script(model: Sequential | Graph, case: str) -> str:
    """The standalone ``<case>.py`` for ``model``."""
    _key(case)
    return HEADER.format(case=case) + torch_source(model) + FOOTER.format(case=case)
