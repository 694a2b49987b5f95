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

from .._validate import as_float_array, as_pair, describe
from ..nn import layers
from ..nn.config import model_from_config
from ..nn.sequential import Sequential

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


def _to_numpy(key: str, value: Any) -> np.ndarray:
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
    return np.array(as_float_array(f"state_dict[{key!r}]", arr, finite=True), dtype=np.float64, copy=True)


def state_dict_to_numpy(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A torch ``state_dict`` (or any mapping of name → array-like) as float64 NumPy
    arrays with the same keys (integer buffers stay int64). Needs no torch import."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of name -> tensor/array, got {describe(state_dict)}.")
    return {str(k): _to_numpy(str(k), v) for k, v in state_dict.items()}


def _load_into(architecture: Any, state_dict: Mapping[str, Any]) -> Sequential:
    if isinstance(architecture, Sequential):
        model = architecture
    elif isinstance(architecture, Mapping):
        model = model_from_config(architecture)  # type: ignore[assignment]
        if not isinstance(model, Sequential):
            raise ValueError("architecture must describe an npcam Sequential model, got a single layer.")
    else:
        raise TypeError(
            "architecture must be an npcam.Sequential or its config() dict, "
            f"got {describe(architecture)}."
        )
    model.load_state_dict(state_dict_to_numpy(state_dict))
    return model.eval()


def _plain(module: Any, cls: type) -> bool:
    """``module`` is a ``cls`` whose forward is ``cls``'s own (not overridden)."""
    return isinstance(module, cls) and getattr(type(module), "forward", None) is getattr(cls, "forward", None)


def _where(name: str, module: Any) -> str:
    return f"layer {name!r} ({type(module).__name__})"


def _conv_padding(name: str, m: Any) -> tuple[int, int]:
    """npcam's symmetric padding for a torch Conv2d, or ValueError."""
    pad = m.padding
    if isinstance(pad, str):
        if pad == "valid":
            return 0, 0
        # torch/nn/modules/conv.py:143-154 (2.13.0): for padding="same" the total padding
        # per axis is d·(k−1), left_pad = total // 2 and the rest goes after; symmetric
        # only when k is odd (dilation is 1 here).
        if pad == "same" and all(k % 2 == 1 for k in m.kernel_size):
            return (m.kernel_size[0] - 1) // 2, (m.kernel_size[1] - 1) // 2
        raise ValueError(
            f"{_where(name, m)} has padding={pad!r} with kernel_size {tuple(m.kernel_size)}: "
            "torch pads an even kernel asymmetrically (the extra pixel after), which npcam's "
            "symmetric padding cannot express; npcam accepts 'valid', 'same' with odd kernels, "
            "or ints."
        )
    return int(pad[0]), int(pad[1])


def _convert_leaf(torch: Any, name: str, m: Any, next_leaf: Any) -> layers.Layer | None:
    """The npcam layer for one torch leaf module (None: skip it), or ValueError."""
    nn = torch.nn
    if _plain(m, nn.Conv2d):
        problems = []
        if tuple(m.dilation) != (1, 1):
            problems.append(f"dilation={tuple(m.dilation)} (npcam needs 1)")
        if m.groups != 1:
            problems.append(f"groups={m.groups} (npcam needs 1)")
        if m.padding_mode != "zeros":
            problems.append(f"padding_mode={m.padding_mode!r} (npcam pads with zeros)")
        if problems:
            raise ValueError(f"{_where(name, m)} is not supported: {', '.join(problems)}.")
        return layers.Conv2d(
            m.in_channels, m.out_channels, tuple(m.kernel_size), tuple(m.stride),
            _conv_padding(name, m), bias=m.bias is not None,
        )
    if _plain(m, nn.ReLU):
        return layers.ReLU()
    if _plain(m, nn.MaxPool2d):
        k = as_pair("kernel_size", m.kernel_size)
        s = k if m.stride is None else as_pair("stride", m.stride)
        problems = []
        if as_pair("padding", m.padding, minimum=0) != (0, 0):
            problems.append(f"padding={m.padding} (npcam needs 0)")
        if as_pair("dilation", m.dilation) != (1, 1):
            problems.append(f"dilation={m.dilation} (npcam needs 1)")
        if m.ceil_mode:
            problems.append("ceil_mode=True (npcam rounds the output size down)")
        if m.return_indices:
            problems.append("return_indices=True (the layer must output one tensor)")
        if problems:
            raise ValueError(f"{_where(name, m)} is not supported: {', '.join(problems)}.")
        return layers.MaxPool2d(k, s)
    if _plain(m, nn.AdaptiveAvgPool2d):
        size = m.output_size
        if size not in (1, (1, 1), [1, 1]):
            raise ValueError(
                f"{_where(name, m)} has output_size={size!r}; npcam supports only "
                "AdaptiveAvgPool2d(1) (global average pooling) followed by Flatten."
            )
        if not (_plain(next_leaf, nn.Flatten) and next_leaf.start_dim == 1 and next_leaf.end_dim == -1):
            after = "nothing" if next_leaf is None else type(next_leaf).__name__
            raise ValueError(
                f"{_where(name, m)} must be followed by Flatten() (npcam's GlobalAvgPool2d "
                f"outputs (N, K) where torch outputs (N, K, 1, 1)), but it is followed by {after}."
            )
        return layers.GlobalAvgPool2d()
    if _plain(m, nn.Flatten):
        if m.start_dim != 1 or m.end_dim != -1:
            raise ValueError(
                f"{_where(name, m)} has start_dim={m.start_dim}, end_dim={m.end_dim}; npcam "
                "flattens everything after the batch axis (start_dim=1, end_dim=-1)."
            )
        return layers.Flatten()
    if _plain(m, nn.Linear):
        return layers.Linear(m.in_features, m.out_features, bias=m.bias is not None)
    if _plain(m, nn.Dropout):
        return layers.Dropout(m.p)
    if _plain(m, nn.BatchNorm2d):
        problems = []
        if not m.affine:
            problems.append("affine=False")
        if not m.track_running_stats or m.running_mean is None:
            problems.append("track_running_stats=False (no running statistics to explain with)")
        if m.momentum is None:
            problems.append("momentum=None (a cumulative average, which npcam does not implement)")
        if problems:
            raise ValueError(f"{_where(name, m)} is not supported: {', '.join(problems)}.")
        return layers.BatchNorm2d(m.num_features, eps=float(m.eps), momentum=float(m.momentum))
    if _plain(m, nn.Identity):
        return None
    hint = ""
    if isinstance(m, (nn.Softmax, nn.LogSoftmax)):
        hint = (
            " Remove the final softmax and explain the logits, or pass score='softmax' / "
            "'log_softmax' to the npcam explanation."
        )
    raise ValueError(
        f"{_where(name, m)} is not supported by from_torch; supported layers are Sequential, "
        "Conv2d, ReLU, MaxPool2d, AdaptiveAvgPool2d(1)+Flatten, Flatten, Linear, Dropout, "
        f"BatchNorm2d and Identity.{hint}"
    )


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


def from_torch(module_or_state_dict: Any, *, architecture: Any = None) -> Sequential:
    """An npcam model computing what a PyTorch model computes in eval mode, in float64.

    Parameters
    ----------
    module_or_state_dict : a ``torch.nn.Sequential`` (nested Sequentials and any child
        names, e.g. from an ``OrderedDict``) of the layers in the module docstring's table;
        or a ``state_dict`` (a mapping of name → tensor/array, e.g. ``model.state_dict()``).
    architecture : for a state_dict, the model to load it into — an npcam
        :class:`~npcam.Sequential` (loaded in place and returned) or its ``config()``
        dict (built afresh). With a torch module, if given, the module's own
        ``state_dict()`` is loaded into it instead of converting the module's layers
        (for torch models whose ``forward`` is not a plain Sequential but whose weights
        match an npcam architecture).

    Returns
    -------
    npcam.Sequential in eval mode, whose layers have the torch names, so its
    ``state_dict()`` has the torch keys (minus skipped ``Identity`` layers, which have
    none) and every ``layer=`` name means the same feature maps.

    Raises
    ------
    ImportError : a torch module is given but torch is not installed (a state_dict of
        NumPy arrays needs no torch).
    ValueError : an unsupported layer (its dotted name and type in the message), a
        state_dict without ``architecture``, or keys/shapes that do not match.
    TypeError : neither a torch module nor a mapping.
    """
    if isinstance(module_or_state_dict, Mapping):
        if architecture is None:
            raise ValueError(
                "from_torch was given a state_dict without architecture=...; pass the npcam "
                "model (or its config()) to load it into, or pass the torch module itself."
            )
        return _load_into(architecture, module_or_state_dict)
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
        return _load_into(architecture, module.state_dict())
    if not _plain(module, nn.Sequential):
        raise ValueError(
            f"from_torch converts torch.nn.Sequential models layer by layer, got "
            f"{type(module).__name__} (with its own forward); pass its state_dict() with "
            "architecture=<the equivalent npcam model> instead."
        )
    leaves = _torch_leaves(nn, module, "")
    converted: dict[str, layers.Layer | None] = {}
    for i, (name, m) in enumerate(leaves):
        # Dropout and Identity are the identity at inference: look past them for the
        # Flatten that must follow AdaptiveAvgPool2d(1).
        later = [
            leaf for _, leaf in leaves[i + 1 :]
            if not (_plain(leaf, nn.Dropout) or _plain(leaf, nn.Identity))
        ]
        converted[name] = _convert_leaf(torch, name, m, later[0] if later else None)
    model = _build(nn, module, "", converted)
    model.load_state_dict(_torch_weights(nn, leaves, model))
    return model.eval()
