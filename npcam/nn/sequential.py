"""``Sequential``: a chain of named layers that records what the paper needs.

``forward`` keeps every named layer's output (the candidate feature maps ``A^k``);
``backward`` starts from a seed ``∂L/∂output`` (for Grad-CAM, the one-hot vector of class
c, so that L = y^c) and stops at any named layer, returning ``∂y^c/∂A^k``. Names follow
``torch.nn.Sequential``: positional children are "0", "1", ...; keyword children nest with
dotted names ("features.3"), so ``state_dict`` keys are exactly PyTorch's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from .._validate import as_float_array, describe
from . import layers as L
from .functional import RELU_MODES

__all__ = ["IncompatibleKeys", "Sequential"]

class IncompatibleKeys(NamedTuple):
    missing_keys: list[str]
    unexpected_keys: list[str]


class Sequential(L.Layer):
    """Layers applied in order. ``Sequential(a, b, c)`` names them "0", "1", "2";
    ``Sequential(features=..., classifier=...)`` uses the keywords; a single ``dict`` of
    name → layer gives any names. Containers nest; leaf names are dotted paths.

    After ``forward(x)``: ``activations[name]`` is the output of every named layer (a
    container's output is its last child's), ``input`` the input.
    After ``backward(..., record=True)``: ``gradients[name]`` is ∂L/∂(output of name) for
    every leaf the backward pass went through, ``input_gradient`` ∂L/∂input when it
    reached the input.
    """

    def __init__(self, *layers: L.Layer | Mapping[str, L.Layer], **named: L.Layer) -> None:
        super().__init__()
        if layers and named:
            raise TypeError("Sequential takes layers either positionally or by keyword, not both.")
        if len(layers) == 1 and isinstance(layers[0], Mapping):
            items = list(layers[0].items())
        elif layers:
            items = [(str(i), layer) for i, layer in enumerate(layers)]
        else:
            items = list(named.items())
        if not items:
            raise ValueError("Sequential needs at least one layer, got none.")
        self.children: dict[str, L.Layer] = {}
        for name, layer in items:
            if not isinstance(name, str) or not name or "." in name:
                raise ValueError(f"layer names must be non-empty strings without '.', got {name!r}.")
            if not isinstance(layer, L.Layer):
                raise TypeError(f"layer {name!r} must be an npcam layer, got {describe(layer)}.")
            self.children[name] = layer
        self.activations: dict[str, np.ndarray] = {}
        self.gradients: dict[str, np.ndarray] = {}
        self.input: np.ndarray | None = None
        self.input_gradient: np.ndarray | None = None

    # -- structure ---------------------------------------------------------------------
    def named_layers(self) -> list[tuple[str, L.Layer]]:
        """The leaf layers in execution order, with their dotted names."""
        out: list[tuple[str, L.Layer]] = []
        for name, child in self.children.items():
            if isinstance(child, Sequential):
                out.extend((f"{name}.{sub}", leaf) for sub, leaf in child.named_layers())
            else:
                out.append((name, child))
        return out

    def named_modules(self) -> list[tuple[str, L.Layer]]:
        """Every named layer, containers included (before their children), as torch."""
        out: list[tuple[str, L.Layer]] = []
        for name, child in self.children.items():
            out.append((name, child))
            if isinstance(child, Sequential):
                out.extend((f"{name}.{sub}", m) for sub, m in child.named_modules())
        return out

    def __getitem__(self, name: str | int) -> L.Layer:
        if isinstance(name, int) and not isinstance(name, bool):
            name = str(name)
        if not isinstance(name, str):
            raise TypeError(f"layer name must be a str, got {describe(name)}.")
        modules = dict(self.named_modules())
        if name not in modules:
            raise ValueError(f"layer {name!r} is not in the model; its layers are {self._names()}.")
        return modules[name]

    def __len__(self) -> int:
        return len(self.children)

    def _names(self) -> str:
        names = [n for n, _ in self.named_modules()]
        return ", ".join(repr(n) for n in names[:40]) + (", ..." if len(names) > 40 else "")

    def leaf_index(self, name: str) -> int:
        """Position among :meth:`named_layers` of a layer; a container means its last leaf."""
        if not isinstance(name, str):
            raise TypeError(f"layer must be a layer name (str), got {describe(name)}.")
        leaves = [n for n, _ in self.named_layers()]
        if name in leaves:
            return leaves.index(name)
        prefix = name + "."
        inside = [i for i, n in enumerate(leaves) if n.startswith(prefix)]
        if not inside:
            raise ValueError(f"layer {name!r} is not in the model; its layers are {self._names()}.")
        return inside[-1]

    def config(self) -> dict[str, Any]:
        return {
            "type": "Sequential",
            "children": [[name, child.config()] for name, child in self.children.items()],
        }

    def __repr__(self) -> str:
        lines = [f"  ({name}): " + repr(child).replace("\n", "\n  ") for name, child in self.children.items()]
        return "Sequential(\n" + "\n".join(lines) + "\n)"

    def train(self, mode: bool = True) -> Sequential:
        """Set training mode on every layer (only BatchNorm2d behaves differently)."""
        self.training = bool(mode)
        for _, module in self.named_modules():
            module.training = bool(mode)
        return self

    def eval(self) -> Sequential:
        return self.train(False)

    # -- computation -------------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        """Run every layer in order; record each named layer's output in ``activations``."""
        x = as_float_array("x", x, finite=True)
        self.input = x
        self.activations = {}
        self.gradients = {}
        self.input_gradient = None
        return self._run(self.named_layers(), x)

    def forward_from(self, name: str, output: np.ndarray) -> np.ndarray:
        """The network's output when layer ``name``'s output is replaced by ``output``.

        Runs only the layers after ``name`` (so ``backward(..., to=name)`` afterwards
        differentiates this new evaluation); used to perturb a feature map ``A`` directly,
        e.g. for finite differences of y^c w.r.t. A, and to explain many classes at once.
        """
        index = self.leaf_index(name)
        output = as_float_array("output", output, finite=True)
        return self._run(self.named_layers()[index + 1 :], output)

    def _container_ends(self) -> dict[str, list[str]]:
        """For each leaf, the containers whose last leaf it is (their output is its)."""
        ends: dict[str, list[str]] = {}
        for name, module in self.named_modules():
            if isinstance(module, Sequential):
                last = f"{name}.{module.named_layers()[-1][0]}"
                ends.setdefault(last, []).append(name)
        return ends

    def _run(self, leaves: list[tuple[str, L.Layer]], x: np.ndarray) -> np.ndarray:
        ends = self._container_ends()
        with L.values_checked():
            for name, leaf in leaves:
                x = leaf.forward(x)
                self.activations[name] = x
                for container in ends.get(name, ()):
                    self.activations[container] = x
        return x

    def backward(
        self,
        grad_output: np.ndarray,
        to: str | None = None,
        relu: str = "standard",
        param_grads: bool = True,
        record: bool = False,
    ) -> np.ndarray:
        """Backpropagate ``grad_output`` = ∂L/∂(model output) from the last ``forward``.

        Returns ∂L/∂(output of layer ``to``), or ∂L/∂input when ``to`` is None. ``relu``
        is the ReLU backward rule ("standard", "guided", "deconvnet"); ``param_grads``
        also fills each layer's ``grads`` (explanations need input gradients only, and
        skipping dW saves about a third of the work); ``record`` keeps the gradient
        w.r.t. every visited layer's output in ``gradients``.
        """
        leaves = self.named_layers()
        last = leaves[-1][0]
        if last not in self.activations:
            raise RuntimeError("backward called before forward.")
        stop = -1 if to is None else self.leaf_index(to)
        if relu not in RELU_MODES:
            raise ValueError(f"relu must be one of {RELU_MODES}, got {relu!r}.")
        g = as_float_array("grad_output", grad_output, finite=True)
        if g.shape != self.activations[last].shape:
            raise ValueError(
                f"grad_output must have the model output's shape "
                f"{self.activations[last].shape}, got {g.shape}."
            )
        if record:
            self.gradients = {}
        with L.values_checked():
            for index in range(len(leaves) - 1, stop, -1):
                name, leaf = leaves[index]
                if record:
                    self.gradients[name] = g
                g = leaf.backward(g, relu=relu, param_grads=param_grads)
        if record and to is None:
            self.input_gradient = g
        return g

    # -- parameters --------------------------------------------------------------------
    def named_parameters(self) -> list[tuple[str, np.ndarray]]:
        """Trainable parameters with their state_dict names, in order."""
        return [(f"{n}.{p}", a) for n, leaf in self.named_layers() for p, a in leaf.params().items()]

    def named_grads(self) -> dict[str, np.ndarray]:
        """Parameter gradients from the last ``backward(..., param_grads=True)``."""
        return {f"{n}.{p}": g for n, leaf in self.named_layers() for p, g in leaf.grads.items()}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of all parameters and buffers, keyed exactly as PyTorch names them."""
        out: dict[str, np.ndarray] = {}
        for name, leaf in self.named_layers():
            for key, value in {**leaf.params(), **leaf.buffers()}.items():
                out[f"{name}.{key}"] = np.array(value, copy=True)
        return out

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True
    ) -> IncompatibleKeys:
        """Copy parameters and buffers from ``state_dict`` (NumPy arrays, or anything
        ``numpy.asarray`` accepts, such as CPU torch tensors).

        With ``strict`` (the default) missing and unexpected keys are errors; otherwise
        the common keys load and the rest are returned. Shapes must match exactly and
        values be finite. Nothing is assigned unless everything checks out.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping of name -> array, got {describe(state_dict)}.")
        own = self.state_dict()
        # Keys like __architecture__ / __metadata__ describe the file, not the weights.
        given = {k for k in state_dict if not (k.startswith("__") and k.endswith("__"))}
        missing = [k for k in own if k not in given]
        unexpected = sorted(k for k in given if k not in own)
        if strict and (missing or unexpected):
            raise ValueError(
                "state_dict does not match the model: "
                f"missing keys {missing or 'none'}, unexpected keys {unexpected or 'none'}."
            )
        new: dict[str, np.ndarray] = {}
        for key in own:
            if key not in given:
                continue
            value = state_dict[key]
            if hasattr(value, "detach"):  # a torch tensor: leave autograd (and bfloat16) before NumPy
                value = value.detach().cpu()
                value = (value.double() if value.is_floating_point() else value).numpy()
            if key.endswith("num_batches_tracked"):
                arr = np.asarray(value)
                if arr.shape != () or arr.dtype.kind not in "iu":
                    raise ValueError(f"state_dict[{key!r}] must be an integer scalar, got {describe(arr)}.")
                new[key] = arr.astype(np.int64)
                continue
            arr = as_float_array(f"state_dict[{key!r}]", value, finite=True)
            if arr.shape != own[key].shape:
                raise ValueError(
                    f"state_dict[{key!r}] must have shape {own[key].shape}, got {arr.shape}."
                )
            new[key] = np.array(arr, dtype=np.float64, copy=True)
        leaves = dict(self.named_layers())
        for key, arr in new.items():
            layer_name, attr = key.rsplit(".", 1)
            setattr(leaves[layer_name], attr, arr)
        return IncompatibleKeys(missing, unexpected)

    def save(self, path: str | os.PathLike) -> str:
        """Write the weights and the architecture (as JSON text) to an ``.npz`` file;
        returns the path written (``.npz`` is appended when missing, as NumPy does)."""
        from .io import save_model

        return save_model(self, path)


