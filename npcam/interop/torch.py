r"""PyTorch models into npcam (:func:`from_torch`).

npcam's layouts and ``state_dict`` names are PyTorch's, so a torch
``nn.Sequential`` of supported layers becomes the same npcam model, layer for layer and
name for name (:func:`from_torch`). Only ``torch.nn`` classes whose computation npcam
reproduces exactly are accepted; anything else is refused with a ``ValueError`` that names
the layer's dotted name and type, because a silently different layer would make every
comparison downstream meaningless. torch itself is imported only when a torch module is
converted (it is an optional dependency: ``pip install 'npcam[crosscheck]'``).

========================================= ===============================================
torch layer                               npcam layer (same name)
========================================= ===============================================
``Sequential`` (nested, any child names)  ``Sequential``
``Conv2d``: dilation 1, groups 1,         ``Conv2d`` (``padding="valid"`` → 0,
padding_mode ``"zeros"``, symmetric       ``padding="same"`` → (k−1)/2 for odd k; even
padding                                   k pads asymmetrically and is refused)
``ReLU`` (``inplace`` or not)             ``ReLU``
``MaxPool2d``: padding 0, dilation 1,     ``MaxPool2d``
ceil_mode False, no return_indices
``AdaptiveAvgPool2d(1)`` then ``Flatten`` ``GlobalAvgPool2d`` then ``Flatten``: npcam's
(Dropout / Identity may stand between)    pool outputs (N, K), torch's (N, K, 1, 1), and
                                          the Flatten after it makes both (N, K)
``Flatten(start_dim=1, end_dim=-1)``      ``Flatten``
``Linear``                                ``Linear``
``Dropout``                               ``Dropout`` (the identity at inference)
``BatchNorm2d``: affine, tracked running  ``BatchNorm2d`` in eval mode (running stats)
stats, numeric momentum
``Identity``                              skipped: it computes nothing and holds no
                                          weights (its name disappears)
========================================= ===============================================

A subclass of one of these is accepted only if it does not override ``forward`` (e.g.
torchvision's ``Conv2dNormActivation`` is an ``nn.Sequential``). The npcam model is always
in evaluation mode — the model ``module.eval()`` would give — and holds float64 copies of
the weights (float32 → float64 is exact).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._validate import as_float_array, describe
from ..nn import layers
from ..nn.config import model_from_config
from ..nn.graph import Graph
from ..nn.ops import Identity
from ..nn.sequential import Sequential
from . import _fx

__all__ = ["CROSSCHECK_HINT", "from_torch", "state_dict_to_numpy"]

#: How to get the optional dependencies that torch interop needs.
CROSSCHECK_HINT = "install the crosscheck extra: pip install 'npcam[crosscheck]'"


# =========================================================================== PyTorch
def _import_torch() -> Any:
    """``torch``, imported on first use; ImportError naming the extra when it is missing."""
    try:
        return importlib.import_module("torch")
    except ImportError as exc:
        raise ImportError(f"npcam.interop.from_torch needs PyTorch; {CROSSCHECK_HINT}") from exc


def _to_numpy(key: str, value: Any, copy: bool = True) -> np.ndarray:
    """A tensor (any device, any float dtype, with or without autograd) or array → NumPy;
    floating values become float64, integer buffers (``num_batches_tracked``) int64."""
    if hasattr(value, "detach"):  # a torch tensor; duck-typed so no torch import is needed
        if getattr(value, "is_meta", False):
            raise ValueError(
                f"state_dict[{key!r}] is a tensor on the 'meta' device, which holds no values; "
                "materialise the model (e.g. load its weights) before converting it."
            )
        t = value.detach().cpu()
        if t.is_floating_point():
            t = t.double()  # also handles bfloat16/float16, which .numpy() may refuse
        value = t.numpy()
    arr = np.asarray(value)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    arr = as_float_array(f"state_dict[{key!r}]", arr, finite=True)
    return np.array(arr, dtype=np.float64, copy=True) if copy else np.asarray(arr, dtype=np.float64)


def state_dict_to_numpy(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A torch ``state_dict`` (or any mapping of name → array-like) as float64 NumPy
    arrays with the same keys (integer buffers stay int64). Needs no torch import."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of name -> tensor/array, got {describe(state_dict)}.")
    return {str(k): _to_numpy(str(k), v) for k, v in state_dict.items()}


def _load_into(architecture: Any, state_dict: Mapping[str, Any]) -> Any:
    model: Any
    if isinstance(architecture, (Sequential, Graph)):
        model = architecture
    elif isinstance(architecture, Mapping):
        model = model_from_config(architecture)
        if not isinstance(model, (Sequential, Graph)):
            raise ValueError(
                "architecture must describe an npcam Sequential or Graph model, got a single layer."
            )
    else:
        raise TypeError(
            "architecture must be an npcam.Sequential or npcam.Graph or its config() dict, "
            f"got {describe(architecture)}."
        )
    model.load_state_dict(state_dict_to_numpy(state_dict))
    return model.eval()


def _plain(module: Any, cls: type) -> bool:
    """``module`` is a ``cls`` whose forward is ``cls``'s own (not overridden)."""
    return isinstance(module, cls) and getattr(type(module), "forward", None) is getattr(cls, "forward", None)


def _convert_leaf(torch: Any, name: str, m: Any, next_leaf: Any) -> layers.Layer | None:
    """The npcam layer for one torch leaf of a Sequential (None: skip it), or ValueError.

    ``AdaptiveAvgPool2d(1)`` followed by ``Flatten`` becomes ``GlobalAvgPool2d`` (npcam's
    (N, K) global pooling, which CAM recognises) then ``Flatten``; every other leaf is
    converted as in a traced graph (:func:`npcam.interop._fx.convert_module`)."""
    nn = torch.nn
    if _plain(m, nn.AdaptiveAvgPool2d) and m.output_size in (1, (1, 1), [1, 1]) and (
        _plain(next_leaf, nn.Flatten) and next_leaf.start_dim == 1 and next_leaf.end_dim == -1
    ):
        return layers.GlobalAvgPool2d()
    if _plain(m, nn.Identity):
        return None
    layer = _fx.convert_module(torch, name, m)
    return None if isinstance(layer, Identity) else layer


def _entries(module: Any) -> list[tuple[str, Any]]:
    """Every child entry of a torch container, a module used twice listed twice."""
    return [(name, child) for name, child in module._modules.items() if child is not None]


def _looks_like_torch_module(obj: Any) -> bool:
    """True when ``obj``'s class derives from ``torch.nn.Module`` (checked without importing
    torch, so a wrong argument is named even where torch is not installed)."""
    return any(
        c.__name__ == "Module" and c.__module__.startswith("torch.nn") for c in type(obj).__mro__
    )


def _torch_leaves(nn: Any, module: Any, prefix: str) -> list[tuple[str, Any]]:
    """(dotted name, module) of every non-container in execution order."""
    out: list[tuple[str, Any]] = []
    # ``_modules``, not ``named_children()``: the latter lists a module used twice only once,
    # while torch's forward runs every entry.
    for name, child in _entries(module):
        full = f"{prefix}{name}"
        if _plain(child, nn.Sequential):
            out.extend(_torch_leaves(nn, child, full + "."))
        else:
            out.append((full, child))
    return out


def _build(nn: Any, module: Any, prefix: str, converted: dict[str, layers.Layer | None]) -> Sequential:
    children: dict[str, layers.Layer | Sequential] = {}
    for name, child in _entries(module):
        full = f"{prefix}{name}"
        if _plain(child, nn.Sequential):
            children[name] = _build(nn, child, full + ".", converted)
        elif converted[full] is not None:
            children[name] = converted[full]  # type: ignore[assignment]
    if not children:
        where = f"container {prefix[:-1]!r}" if prefix else "the model"
        raise ValueError(f"{where} has no layer that npcam computes (it is empty or only Identity).")
    return Sequential(children)


def _torch_weights(nn: Any, leaves: list[tuple[str, Any]], model: Sequential) -> dict[str, np.ndarray]:
    """The weights of the converted leaves, read from the modules' attributes (so that
    parametrised weights, e.g. weight norm, give their effective values)."""
    npcam_leaves = dict(model.named_layers())
    out: dict[str, np.ndarray] = {}
    for name, m in leaves:
        if name not in npcam_leaves:
            continue
        layer = npcam_leaves[name]
        for attr in (*layer.params(), *layer.buffers()):
            out[f"{name}.{attr}"] = _to_numpy(f"{name}.{attr}", getattr(m, attr))
    return out


def _check_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be numpy.float64 or numpy.float32, got {describe(dtype)}.") from None
    if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise ValueError(f"dtype must be numpy.float64 or numpy.float32, got {dt}.")
    return dt


def _rounded(weights: dict[str, np.ndarray], dtype: np.dtype) -> dict[str, np.ndarray]:
    if dtype == np.float64:
        return weights
    return {k: v.astype(dtype).astype(np.float64) if v.dtype.kind == "f" else v for k, v in weights.items()}


def _sequential(torch: Any, module: Any) -> tuple[Sequential, list[tuple[str, Any]]]:
    nn = torch.nn
    leaves = _torch_leaves(nn, module, "")
    converted: dict[str, layers.Layer | None] = {}
    for i, (name, m) in enumerate(leaves):
        # Dropout and Identity are the identity at inference: look past them for the
        # Flatten that may follow AdaptiveAvgPool2d(1).
        later = [
            leaf for _, leaf in leaves[i + 1 :]
            if not (_plain(leaf, nn.Dropout) or _plain(leaf, nn.Identity))
        ]
        converted[name] = _convert_leaf(torch, name, m, later[0] if later else None)
    return _build(nn, module, "", converted), leaves


def from_torch(module_or_state_dict: Any, *, architecture: Any = None, dtype: Any = np.float64) -> Any:
    """An npcam model computing what a PyTorch model computes in eval mode, in float64.

    Parameters
    ----------
    module_or_state_dict : a ``torch.nn.Module`` or a ``state_dict``
        A module: an ``nn.Sequential`` whose leaves all convert layer for layer becomes an
        npcam :class:`~npcam.Sequential`; any other module (a torchvision ResNet, VGG,
        DenseNet, ..., or an ``nn.Sequential`` holding blocks with their own ``forward``)
        is traced with ``torch.fx.symbolic_trace`` in eval mode and becomes an npcam
        :class:`~npcam.Graph` whose nodes are the fx nodes, whose aliases are the module
        paths and whose ``state_dict`` keys are torch's. The caller's module is not
        changed: its training mode (per submodule) is restored. A mapping (a
        ``state_dict``) needs ``architecture``.
    architecture : for a state_dict, the model to load it into — an npcam
        :class:`~npcam.Sequential` (loaded in place and returned) or its ``config()``
        dict (built afresh). With a torch module, if given, the module's own
        ``state_dict()`` is loaded into it instead of converting the module.
    dtype : numpy.float64 (default) or numpy.float32
        The precision the weights are copied in: float32 rounds every weight to float32
        (the values a float32 torch model holds); npcam computes in float64 either way.

    Returns
    -------
    npcam.Sequential or npcam.Graph, in eval mode. For the torchvision classifiers it
    recognises, ``graph.default_layer_name`` is the paper's layer (``layer4`` for ResNets,
    ``features.29`` for VGG-16, ...), what ``layer=None`` selects.

    Raises
    ------
    ImportError : a torch module is given but torch is not installed.
    ValueError : an fx node npcam does not compute (the message names the node, its op and
        target, and the nearest supported alternative), a model fx cannot trace (fx's own
        reason), a state_dict without ``architecture``, or keys/shapes that do not match.
    TypeError : neither a torch module nor a mapping.
    """
    dt = _check_dtype(dtype)
    if isinstance(module_or_state_dict, Mapping):
        if architecture is None:
            raise ValueError(
                "from_torch was given a state_dict without architecture=...; pass the npcam "
                "model (or its config()) to load it into, or pass the torch module itself."
            )
        return _load_into(architecture, _rounded(state_dict_to_numpy(module_or_state_dict), dt))
    if not _looks_like_torch_module(module_or_state_dict):
        raise TypeError(
            "module_or_state_dict must be a torch.nn.Module or a state_dict, got "
            f"{describe(module_or_state_dict)}."
        )
    torch = _import_torch()
    nn = torch.nn
    module = module_or_state_dict
    if not isinstance(module, nn.Module):
        raise TypeError(
            f"module_or_state_dict must be a torch.nn.Module or a state_dict, got {describe(module)}."
        )
    if architecture is not None:
        return _load_into(architecture, _rounded(state_dict_to_numpy(module.state_dict()), dt))
    if _plain(module, nn.Sequential):
        try:
            model, leaves = _sequential(torch, module)
        except ValueError:
            pass  # a leaf that is not a layer (a block with its own forward): trace it
        else:
            model.load_state_dict(_rounded(_torch_weights(nn, leaves, model), dt))
            return model.eval()
    modes = [(m, m.training) for m in module.modules()]
    try:
        module.eval()  # fx bakes the eval branches (aux heads, dropout) into the graph
        graph, tensors = _fx.graph_from_module(torch, module)
        # no copy here: loading copies each array into its layer
        weights = {k: _to_numpy(k, v, copy=False) for k, v in tensors.items()}
    finally:
        for m, mode in modes:
            m.training = mode
    graph.load_state_dict(_rounded(weights, dt))
    return graph.eval()
