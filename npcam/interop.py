r"""Loading other frameworks' models and arrays into npcam.

**PyTorch.** npcam's layouts and ``state_dict`` names are PyTorch's, so a torch
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

**Keras / TensorFlow.** Keras stores images NHWC, conv kernels HWIO ``(kH, kW, C_in,
C_out)`` and dense kernels ``(in, out)``; ``Flatten`` of an NHWC map orders features
H·W·C, npcam's (as torch's) C·H·W. The converters below are pure NumPy. Keras' ``Conv2D``
is a cross-correlation like torch's (no kernel flip). Its ``padding="same"`` pads
asymmetrically in some cases, which npcam's symmetric padding cannot express: see
:func:`tf_same_padding` and :func:`conv_padding_from_keras`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import layers as L
from ._checks import as_float_array, as_pair, as_positive_int, describe
from .model import Sequential, model_from_config

__all__ = [
    "CROSSCHECK_HINT",
    "check_keras_padding",
    "conv_padding_from_keras",
    "conv_weight_from_keras",
    "dense_after_flatten_from_keras",
    "dense_weight_from_keras",
    "from_torch",
    "images_from_nhwc",
    "images_to_nhwc",
    "state_dict_to_numpy",
    "tf_same_padding",
]

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
    return isinstance(module, cls) and type(module).forward is cls.forward


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


def _convert_leaf(torch: Any, name: str, m: Any, next_leaf: Any) -> L.Layer | None:
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
        return L.Conv2d(
            m.in_channels, m.out_channels, tuple(m.kernel_size), tuple(m.stride),
            _conv_padding(name, m), bias=m.bias is not None,
        )
    if _plain(m, nn.ReLU):
        return L.ReLU()
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
        return L.MaxPool2d(k, s)
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
        return L.GlobalAvgPool2d()
    if _plain(m, nn.Flatten):
        if m.start_dim != 1 or m.end_dim != -1:
            raise ValueError(
                f"{_where(name, m)} has start_dim={m.start_dim}, end_dim={m.end_dim}; npcam "
                "flattens everything after the batch axis (start_dim=1, end_dim=-1)."
            )
        return L.Flatten()
    if _plain(m, nn.Linear):
        return L.Linear(m.in_features, m.out_features, bias=m.bias is not None)
    if _plain(m, nn.Dropout):
        return L.Dropout(m.p)
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
        return L.BatchNorm2d(m.num_features, eps=float(m.eps), momentum=float(m.momentum))
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


def _torch_leaves(nn: Any, module: Any, prefix: str) -> list[tuple[str, Any]]:
    """(dotted name, module) of every non-container in execution order."""
    out: list[tuple[str, Any]] = []
    for name, child in module.named_children():
        full = f"{prefix}{name}"
        if _plain(child, nn.Sequential):
            out.extend(_torch_leaves(nn, child, full + "."))
        else:
            out.append((full, child))
    return out


def _build(nn: Any, module: Any, prefix: str, converted: dict[str, L.Layer | None]) -> Sequential:
    children: dict[str, L.Layer] = {}
    for name, child in module.named_children():
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
    converted: dict[str, L.Layer | None] = {}
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


# ============================================================================ Keras
def conv_weight_from_keras(kernel: Any) -> np.ndarray:
    """A Keras ``Conv2D`` kernel, HWIO ``(kH, kW, C_in, C_out)``, as npcam's / torch's
    OIHW ``(C_out, C_in, kH, kW)``: ``out[o, i, h, w] = kernel[h, w, i, o]``. No flip:
    both frameworks compute a cross-correlation. The bias is the same vector in both."""
    k = as_float_array("kernel", kernel, 4)
    return np.ascontiguousarray(k.transpose(3, 2, 0, 1))


def dense_weight_from_keras(kernel: Any) -> np.ndarray:
    """A Keras ``Dense`` kernel ``(in, out)`` (``y = x @ kernel + b``) as npcam's
    ``Linear.weight`` ``(out, in)`` (``y = x @ weight.T + b``): the transpose.

    Only valid when the Dense input is not a flattened NHWC map; for that case use
    :func:`dense_after_flatten_from_keras`."""
    k = as_float_array("kernel", kernel, 2)
    return np.ascontiguousarray(k.T)


def images_from_nhwc(images: Any) -> np.ndarray:
    """Images (or feature maps) NHWC ``(N, H, W, C)`` → NCHW ``(N, C, H, W)``, float64."""
    x = as_float_array("images", images, 4)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def images_to_nhwc(images: Any) -> np.ndarray:
    """NCHW ``(N, C, H, W)`` → NHWC ``(N, H, W, C)``, float64: the inverse of
    :func:`images_from_nhwc` (e.g. to compare npcam's guided backprop with a Keras one)."""
    x = as_float_array("images", images, 4)
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def dense_after_flatten_from_keras(kernel: Any, feature_shape: Any) -> np.ndarray:
    r"""The kernel of a Keras ``Dense`` that follows ``Flatten`` of an NHWC map, as the
    ``(out, C·H·W)`` weight of an npcam ``Linear`` after npcam's NCHW ``Flatten``.

    Keras flattens ``(H, W, C)`` with feature index ``(h·W + w)·C + c``; npcam (as torch)
    flattens ``(C, H, W)`` with ``(c·H + h)·W + w``. The same dense layer therefore has its
    input rows permuted: ``out[o, (c·H + h)·W + w] = kernel[(h·W + w)·C + c, o]``, so that
    ``flatten_nhwc(x) @ kernel == flatten_nchw(x) @ out.T`` for every map x.

    Parameters
    ----------
    kernel : ``(H·W·C, out)``, the Keras Dense kernel.
    feature_shape : ``(H, W, C)``, the Keras (channels-last) shape of the map that was
        flattened, without the batch axis.
    """
    k = as_float_array("kernel", kernel, 2)
    if not isinstance(feature_shape, (tuple, list)) or len(feature_shape) != 3:
        raise ValueError(f"feature_shape must be (H, W, C), got {feature_shape!r}.")
    h, w, c = (as_positive_int("feature_shape", v) for v in feature_shape)
    if k.shape[0] != h * w * c:
        raise ValueError(
            f"kernel must have H·W·C = {h * w * c} rows for feature_shape {(h, w, c)}, "
            f"got shape {k.shape}."
        )
    out = k.reshape(h, w, c, k.shape[1]).transpose(3, 2, 0, 1)  # (out, C, H, W)
    return np.ascontiguousarray(out.reshape(k.shape[1], c * h * w))


Pair = tuple[int, int]


def _padding_args(padding: Any, stride: Any, kernel_size: Any) -> tuple[str, Pair, Pair]:
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same' (Keras' values), got {padding!r}.")
    return padding.lower(), as_pair("stride", stride), as_pair("kernel_size", kernel_size)


def tf_same_padding(stride: Any, kernel_size: Any, input_size: Any) -> tuple[Pair, Pair]:
    r"""The padding TensorFlow applies for ``padding="SAME"``: ``((top, bottom), (left,
    right))``.

    TF's rule, per axis (``tf.nn.convolution`` docs, "SAME" padding; the same for
    ``Conv2D`` and ``MaxPooling2D``)::

        out         = ceil(in / s)
        pad_total   = max((out − 1)·s + k − in, 0)
        pad_before  = pad_total // 2
        pad_after   = pad_total − pad_before      (the extra pixel goes after)

    So the padding is symmetric exactly when ``pad_total`` is even: always for stride 1
    and an odd kernel (``pad = (k − 1)/2``); for stride 2 and k = 3 only when ``in`` is
    odd (an even input gives ``pad_total = 1``: nothing before, one pixel after).
    """
    (sh, sw), (kh, kw) = as_pair("stride", stride), as_pair("kernel_size", kernel_size)
    ih, iw = as_pair("input_size", input_size)

    def axis(n: int, k: int, s: int) -> tuple[int, int]:
        out = -(-n // s)
        total = max((out - 1) * s + k - n, 0)
        return total // 2, total - total // 2

    return axis(ih, kh, sh), axis(iw, kw, sw)


def check_keras_padding(padding: Any, stride: Any, kernel_size: Any, input_size: Any = None) -> None:
    """Raise ``ValueError`` when Keras' ``padding`` cannot be expressed by npcam's
    symmetric zero padding; return None when it can.

    ``"valid"`` always can (no padding). ``"same"`` can when TF pads both sides equally
    on both axes (:func:`tf_same_padding`). With stride 1 the padding does not depend on
    the input size (``k − 1`` in total), so ``input_size`` may be omitted; with a larger
    stride it is needed, and an odd total (e.g. stride 2, kernel 3, even input) or an even
    kernel at stride 1 is refused. The error message shows the exact pre-padding that
    reproduces TF: pad the input with ``numpy.pad`` yourself and use ``padding=0``.
    """
    mode, (sh, sw), (kh, kw) = _padding_args(padding, stride, kernel_size)
    if mode == "valid":
        return
    if input_size is None:
        if (sh, sw) != (1, 1):
            raise ValueError(
                f"padding='same' with stride {(sh, sw)} depends on the input size; pass "
                "input_size=(H, W) of this layer's input."
            )
        pads = ((kh - 1) // 2, kh - 1 - (kh - 1) // 2), ((kw - 1) // 2, kw - 1 - (kw - 1) // 2)
        where = f"stride 1 and kernel {(kh, kw)}"
    else:
        pads = tf_same_padding((sh, sw), (kh, kw), input_size)
        where = f"stride {(sh, sw)}, kernel {(kh, kw)} and input {as_pair('input_size', input_size)}"
    if any(before != after for before, after in pads):
        raise ValueError(
            f"Keras padding='same' with {where} pads asymmetrically: (top, bottom), "
            f"(left, right) = {pads}, the extra pixel after (TF's SAME rule). npcam's "
            "symmetric padding cannot express it; pad the input with numpy.pad(x, ((0, 0), "
            f"(0, 0), {pads[0]}, {pads[1]})) and use padding=0 instead."
        )


def conv_padding_from_keras(
    padding: Any, stride: Any, kernel_size: Any, input_size: Any = None
) -> tuple[int, int]:
    """npcam's ``Conv2d(padding=...)`` for a Keras ``Conv2D(padding=...)``: ``"valid"`` →
    ``(0, 0)``; ``"same"`` → the symmetric ``(ph, pw)`` TF applies, e.g. ``(k − 1)/2`` for
    stride 1 and odd k. ``ValueError`` where TF pads asymmetrically (see
    :func:`check_keras_padding` and :func:`tf_same_padding` for the rule)."""
    check_keras_padding(padding, stride, kernel_size, input_size)
    mode, s, k = _padding_args(padding, stride, kernel_size)
    if mode == "valid":
        return 0, 0
    if input_size is None:  # stride 1, odd kernels (checked above)
        return (k[0] - 1) // 2, (k[1] - 1) // 2
    (top, _), (left, _) = tf_same_padding(s, k, input_size)
    return top, left
