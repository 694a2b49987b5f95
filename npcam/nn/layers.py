"""Layers: the functional forward/backward pairs together with their parameters.

Parameters use PyTorch's names, shapes and default initialisation, so that a layer here
and ``torch.nn``'s layer of the same name hold the same ``state_dict``. A layer keeps no
cache: ``out, cache = layer.run(x)`` returns what its backward pass needs, and
``dx, grads = layer.vjp(dout, cache)`` uses it, so one layer instance may be called at
several places of a model, and by several threads at once. Models keep the caches of a
forward pass in a :class:`~npcam.nn.Trace`.

A new layer is in evaluation mode (``training = False``): npcam explains trained models.
Only ``BatchNorm2d`` behaves differently in training mode.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .._validate import (
    MAX_CHANNELS,
    MAX_KERNEL_SIZE,
    MAX_LAYER_PARAMETERS,
    as_float_array,
    as_pair,
    as_positive_int,
    describe,
)
from . import _conv, functional
from .trace import RELU_RULES

__all__ = [
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BatchNorm2d",
    "Conv2d",
    "Dropout",
    "Flatten",
    "GlobalAvgPool2d",
    "Layer",
    "Linear",
    "MaxPool2d",
    "ReLU",
]

RngLike = np.random.Generator | int | None

def _rng(rng: RngLike | bool) -> np.random.Generator | None:
    # rng=False: no initialisation (zeros, whose pages the OS maps lazily) for a layer whose
    # parameters are about to be loaded, e.g. from a file whose shapes were checked first.
    if rng is False:
        return None
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be a numpy.random.Generator, an int seed or None, got {describe(rng)}.")


class _Initial:
    """A layer's initial parameter values, assigned without the check and copy that
    assigning user arrays gets (zeros for ``rng=False`` stay lazily mapped pages: a layer
    about to be loaded from a file touches no memory for them)."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray) -> None:
        self.array = array


def _kaiming_uniform(rng: np.random.Generator | None, shape: tuple[int, ...], fan_in: int) -> Any:
    # PyTorch's default: kaiming_uniform_(a=√5) gives bound gain·sqrt(3/fan_in) with
    # gain = sqrt(2/(1 + a²)) = sqrt(1/3), i.e. bound = 1/sqrt(fan_in); the bias uses the
    # same bound. Same distribution as torch, not the same numbers.
    if rng is None:
        return _Initial(np.zeros(shape))
    bound = 1.0 / np.sqrt(fan_in)
    return _Initial(rng.uniform(-bound, bound, size=shape))


class Layer:
    """Base class: parameters, buffers, a configuration, and a stateless forward/backward.

    Subclasses list their trainable parameters in ``param_names`` and their other saved
    state (running statistics) in ``buffer_names``, and implement two methods:

    * ``_forward(x) -> (out, cache)`` on a float64 array whose values were checked;
    * ``_backward(dout, cache, relu_rule, param_grads) -> (dx, grads)``, ``grads`` a dict
      parameter name → ∂L/∂parameter (empty unless ``param_grads``).

    Assigning a parameter or buffer checks it: ``conv.weight = w`` must be a finite real
    array of the layer's parameter shape (a ``ValueError`` names the layer, the parameter
    and the shape expected).
    """

    param_names: ClassVar[tuple[str, ...]] = ()
    buffer_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.training = False

    # -- state -------------------------------------------------------------------------
    def params(self) -> dict[str, np.ndarray]:
        """Trainable parameters by name (absent ones, e.g. ``bias=False``, left out)."""
        return {n: getattr(self, n) for n in self.param_names if getattr(self, n) is not None}

    def buffers(self) -> dict[str, np.ndarray]:
        return {n: getattr(self, n) for n in self.buffer_names}

    def config(self) -> dict[str, Any]:
        """A JSON-able description from which :func:`npcam.nn.config.layer_from_config`
        rebuilds the layer (architecture only; the weights travel in the ``state_dict``)."""
        return {"type": type(self).__name__}

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape every parameter and buffer must have (from the configuration)."""
        return {}

    def __setattr__(self, name: str, value: Any) -> None:
        if name in type(self).param_names or name in type(self).buffer_names:
            if isinstance(value, _Initial):
                value = value.array  # the layer's own initial values: no check, no copy
            else:
                value = self._checked_parameter(name, value)
        object.__setattr__(self, name, value)

    def _checked_parameter(self, name: str, value: Any) -> Any:
        if value is None:
            if name == "bias":
                return None
            raise TypeError(f"{type(self).__name__}.{name} must be an array, got None.")
        what = f"{type(self).__name__}.{name}"
        if name == "num_batches_tracked":
            arr = np.asarray(value)
            if arr.shape != () or arr.dtype.kind not in "iu":
                raise ValueError(f"{what} must be an integer scalar, got {describe(value)}.")
            return arr.astype(np.int64)
        arr = np.array(as_float_array(what, value, finite=True), dtype=np.float64)
        expected = self.parameter_shapes().get(name)
        if expected is not None and arr.shape != expected:
            raise ValueError(f"{what} must have shape {expected}, got {arr.shape}.")
        return arr

    # -- computation -------------------------------------------------------------------
    def run(self, x: Any) -> tuple[np.ndarray, Any]:
        """``(out, cache)``: this layer's output for ``x`` and what :meth:`vjp` needs.

        Nothing is stored on the layer.
        """
        x = as_float_array(f"the input of {type(self).__name__}", x, finite=True)
        with np.errstate(all="ignore"):
            out, cache = self._forward(x)
        return out, (out.shape, cache)

    def vjp(
        self, dout: Any, cache: Any, relu_rule: str = "standard", param_grads: bool = False
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``(dx, grads)``: the gradient w.r.t. this layer's input given ``dout`` w.r.t. its
        output, for the call that returned ``cache``; ``grads`` holds the parameter
        gradients when ``param_grads`` (else it is empty).

        ``relu_rule`` selects the ReLU backward rule (only ``ReLU`` reads it).
        """
        if not (isinstance(cache, tuple) and len(cache) == 2 and isinstance(cache[0], tuple)):
            raise TypeError(f"cache must be the second value returned by {type(self).__name__}.run.")
        if relu_rule not in RELU_RULES:
            raise ValueError(f"relu_rule must be one of {RELU_RULES}, got {relu_rule!r}.")
        shape, inner = cache
        dout = as_float_array("dout", dout, finite=True)
        if dout.shape != shape:
            raise ValueError(
                f"dout must have the shape of the output of {type(self).__name__}, {shape}, "
                f"got {dout.shape}."
            )
        with np.errstate(all="ignore"):
            return self._backward(dout, inner, relu_rule, bool(param_grads))

    def forward(self, x: Any) -> np.ndarray:
        """This layer's output for ``x`` (``run(x)[0]``)."""
        return self.run(x)[0]

    def __call__(self, x: Any) -> np.ndarray:
        return self.forward(x)

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        raise NotImplementedError

    def _backward(
        self, dout: np.ndarray, cache: Any, relu_rule: str, param_grads: bool
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        raise NotImplementedError

    def _check_shape(self, x: np.ndarray, ndim: int, channels: int | None = None) -> None:
        name = f"the input of {type(self).__name__}"
        if x.ndim != ndim:
            raise ValueError(f"{name} must be a {ndim}-D array, got {x.ndim}-D with shape {x.shape}.")
        if channels is not None and x.shape[1] != channels:
            raise ValueError(f"{name} must have {channels} channels (axis 1), got shape {x.shape}.")

    def __repr__(self) -> str:
        args = ", ".join(
            f"{k}={tuple(v) if isinstance(v, list) else v}" for k, v in self.config().items() if k != "type"
        )
        return f"{type(self).__name__}({args})"


def _bounded(name: str, value: Any, bound: int, *, minimum: int = 1) -> int:
    v = as_positive_int(name, value, minimum=minimum)
    if v > bound:
        raise ValueError(f"{name} must be at most {bound}, got {v}.")
    return v


def _bounded_pair(name: str, value: Any, bound: int, *, minimum: int = 1) -> tuple[int, int]:
    pair = as_pair(name, value, minimum=minimum)
    if max(pair) > bound:
        raise ValueError(f"{name} must be at most {bound}, got {pair}.")
    return pair


def _padding(value: Any) -> tuple[int, ...]:
    """``padding`` as a layer stores it: ``(p_h, p_w)`` when the same on both sides of each
    axis (an int, a pair, or a 4-tuple with left == right and top == bottom), else the
    4-tuple ``(left, right, top, bottom)``; every side an int in [0, MAX_KERNEL_SIZE]."""
    if isinstance(value, (tuple, list)) and len(value) == 4:
        sides = tuple(as_positive_int("padding", v, minimum=0) for v in value)
        if max(sides) > MAX_KERNEL_SIZE:
            raise ValueError(f"padding must be at most {MAX_KERNEL_SIZE} on every side, got {sides}.")
        left, right, top, bottom = sides
        return (top, left) if left == right and top == bottom else sides
    if isinstance(value, (tuple, list)) and len(value) != 2:
        raise ValueError(
            "padding must be an int, a pair (rows, cols) or a 4-tuple (left, right, top, bottom), "
            f"got {len(value)} entries."
        )
    return _bounded_pair("padding", value, MAX_KERNEL_SIZE, minimum=0)


def _check_parameter_count(layer: str, count: int) -> None:
    if count > MAX_LAYER_PARAMETERS:
        raise ValueError(
            f"{layer} would hold {count} parameters, more than MAX_LAYER_PARAMETERS = "
            f"{MAX_LAYER_PARAMETERS}."
        )


def _param_grads(weight: np.ndarray | None, bias: np.ndarray | None) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if weight is not None:
        out["weight"] = weight
    if bias is not None:
        out["bias"] = bias
    return out


class Conv2d(Layer):
    r"""2-D convolution (cross-correlation), optionally grouped, as ``torch.nn.Conv2d``.

    With G = ``groups``, the C_in input and C_out output channels are split into G groups
    and output channel f (in group ``g = f // (C_out/G)``) sees only its group's inputs::

        out[n, f, h, w] = b[f] + Σ_{c',i,j} W[f, c', i, j] · x_pad[n, g·C_in/G + c', s_h·h + i, s_w·w + j]

    (x zero-padded by ``padding``; see :func:`npcam.nn.functional.conv2d_forward`).
    ``groups = in_channels = out_channels`` is depthwise convolution. The output is
    (N, C_out, H_out, W_out) with ``H_out = floor((H + top + bottom − kH)/s_h) + 1`` and
    ``W_out = floor((W + left + right − kW)/s_w) + 1``.

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts, both divisible by ``groups``.
    kernel_size, stride : int or (int, int)
        Per axis (rows, columns); non-square kernels and strides allowed.
    padding : int, (int, int) or (int, int, int, int)
        Zeros added around the input: an int p (every side), ``(p_h, p_w)`` (p_h above and
        below, p_w left and right), or ``(left, right, top, bottom)`` — the order of
        ``torch.nn.functional.pad`` — each side its own, as TensorFlow's ``"same"`` pads
        (the extra pixel after) and ONNX's ``pads = [top, left, bottom, right]`` can ask;
        the layer then equals ``F.pad(x, padding)`` followed by the unpadded convolution.
        A 4-tuple with left == right and top == bottom is stored as ``(top, left)``.
    bias : bool
        Whether the layer has a bias.
    groups : int
        Number of channel groups (1: every output sees every input).
    rng : numpy.random.Generator, int, None or False
        Seeds PyTorch's default initialisation, ``U(±1/sqrt(fan_in))`` with
        ``fan_in = (C_in/G)·kH·kW``; ``False`` leaves the parameters zero (to be loaded).

    Attributes
    ----------
    weight : ndarray, (C_out, C_in/G, kH, kW)
        torch's layout.
    bias : ndarray (C_out,) or None
    padding : (int, int) or (int, int, int, int)
        ``(p_h, p_w)``, or ``(left, right, top, bottom)`` when the sides differ.
    """

    param_names = ("weight", "bias")

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, ...] = 0,
        bias: bool = True,
        groups: int = 1,
        rng: RngLike | bool = None,
    ) -> None:
        super().__init__()
        self.in_channels = _bounded("in_channels", in_channels, MAX_CHANNELS)
        self.out_channels = _bounded("out_channels", out_channels, MAX_CHANNELS)
        self.kernel_size = _bounded_pair("kernel_size", kernel_size, MAX_KERNEL_SIZE)
        self.stride = _bounded_pair("stride", stride, MAX_KERNEL_SIZE)
        self.padding = _padding(padding)
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"bias must be a bool, got {describe(bias)}.")
        self.groups = _bounded("groups", groups, MAX_CHANNELS)
        for name, count in (("in_channels", self.in_channels), ("out_channels", self.out_channels)):
            if count % self.groups:
                raise ValueError(
                    f"{name} must be divisible by groups = {self.groups}, got {name} = {count}."
                )
        kh, kw = self.kernel_size
        fan_in = self.in_channels // self.groups * kh * kw
        _check_parameter_count("Conv2d", self.out_channels * fan_in)
        gen = _rng(rng)
        self.weight = _kaiming_uniform(
            gen, (self.out_channels, self.in_channels // self.groups, kh, kw), fan_in)
        self.bias: np.ndarray | None = (
            _kaiming_uniform(gen, (self.out_channels,), fan_in) if bias else None
        )

    def config(self) -> dict[str, Any]:
        return {
            "type": "Conv2d",
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "bias": self.bias is not None,
            "groups": self.groups,
        }

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        return {
            "weight": (self.out_channels, self.in_channels // self.groups, *self.kernel_size),
            "bias": (self.out_channels,),
        }

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """``(H_out, W_out)`` for an (H, W) input: ``floor((H + top + bottom − kH)/s_h) + 1``
        and ``floor((W + left + right − kW)/s_w) + 1`` (0 or less: no output)."""
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        top, bottom, left, right = functional._sides(self.padding)
        return (functional.conv_output_size(h, kh, sh, top, bottom),
                functional.conv_output_size(w, kw, sw, left, right))

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        self._check_shape(x, 4, self.in_channels)
        h_out, w_out = self.output_size(*x.shape[2:])
        if h_out < 1 or w_out < 1:
            raise ValueError(
                f"the input of Conv2d is too small: spatial size {x.shape[2:]} with "
                f"kernel {self.kernel_size} and padding {self.padding} leaves no output."
            )
        return _conv.conv2d_forward(x, self.weight, self.bias, self.stride, self.padding, self.groups)

    def _backward(self, dout, cache, relu_rule, param_grads):
        dx, dw, db = _conv.conv2d_backward(dout, cache, param_grads)
        return dx, _param_grads(dw, db)


class Linear(Layer):
    r"""Fully connected layer on the last axis, ``y = x Wᵀ + b``, as ``torch.nn.Linear``.

    x (N, ..., in) -> y (N, ..., out): ``y[..., o] = Σ_i x[..., i] W[o, i] + b[o]`` for
    every leading index (e.g. every position of ConvNeXt's (N, H, W, C) maps); the
    parameter gradients sum over all of them.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool
    rng : numpy.random.Generator, int, None or False
        Seeds PyTorch's default initialisation, ``U(±1/sqrt(in_features))``; ``False``
        leaves the parameters zero (to be loaded).

    Attributes
    ----------
    weight : ndarray, (out_features, in_features)
    bias : ndarray (out_features,) or None
    """

    param_names = ("weight", "bias")

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, rng: RngLike | bool = None
    ) -> None:
        super().__init__()
        self.in_features = as_positive_int("in_features", in_features)
        self.out_features = as_positive_int("out_features", out_features)
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"bias must be a bool, got {describe(bias)}.")
        _check_parameter_count("Linear", self.in_features * self.out_features)
        gen = _rng(rng)
        self.weight = _kaiming_uniform(gen, (self.out_features, self.in_features), self.in_features)
        self.bias: np.ndarray | None = (
            _kaiming_uniform(gen, (self.out_features,), self.in_features) if bias else None
        )

    def config(self) -> dict[str, Any]:
        return {
            "type": "Linear",
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
        }

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"weight": (self.out_features, self.in_features), "bias": (self.out_features,)}

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        if x.ndim < 2:
            raise ValueError(
                "the input of Linear must be an array (N, ..., in_features) of at least 2 "
                f"dimensions, got {x.ndim}-D with shape {x.shape}."
            )
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"the input of Linear must have {self.in_features} features (axis {x.ndim - 1}), "
                f"got shape {x.shape}."
            )
        return functional.linear_forward(x, self.weight, self.bias)

    def _backward(self, dout, cache, relu_rule, param_grads):
        dx, dw, db = functional.linear_backward(dout, cache, param_grads)
        return dx, _param_grads(dw, db)


class ReLU(Layer):
    """``max(x, 0)``; its backward rule is chosen per call: standard, guided or deconvnet
    (see :func:`npcam.nn.functional.relu_backward`)."""

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        return functional.relu_forward(x)

    def _backward(self, dout, cache, relu_rule, param_grads):
        return functional.relu_backward(dout, cache, relu_rule), {}


def _pool_arguments(
    layer: str, kernel_size: Any, stride: Any, padding: Any, ceil_mode: Any
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, ...], bool]:
    kernel = _bounded_pair("kernel_size", kernel_size, MAX_KERNEL_SIZE)
    step = kernel if stride is None else _bounded_pair("stride", stride, MAX_KERNEL_SIZE)
    pad = _padding(padding)
    top, bottom, left, right = functional._sides(pad)
    if max(top, bottom) > kernel[0] // 2 or max(left, right) > kernel[1] // 2:
        raise ValueError(
            f"padding of {layer} must be at most half the kernel size on every side (padding <= "
            f"kernel_size // 2 of its axis, as torch requires), got padding {pad} with kernel_size {kernel}."
        )
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"ceil_mode must be a bool, got {describe(ceil_mode)}.")
    if ceil_mode and len(pad) == 4:
        raise ValueError(
            f"ceil_mode of {layer} must be False with an asymmetric padding (left, right, top, bottom) "
            f"= {pad}, got ceil_mode=True."
        )
    return kernel, step, pad, bool(ceil_mode)


class _Pool2d(Layer):
    """What MaxPool2d and AvgPool2d share: arguments, output size, the input check."""

    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, ...]
    ceil_mode: bool

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """``(H_out, W_out)`` by :func:`npcam.nn.functional.pool_output_size`: e.g.
        ``floor((H + top + bottom − kH)/s_h) + 1`` rows without ceil mode."""
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        top, bottom, left, right = functional._sides(self.padding)
        return (functional.pool_output_size(h, kh, sh, top, self.ceil_mode, bottom),
                functional.pool_output_size(w, kw, sw, left, self.ceil_mode, right))

    def _check_input(self, x: np.ndarray) -> None:
        self._check_shape(x, 4)
        kh, kw = self.kernel_size
        top, bottom, left, right = functional._sides(self.padding)
        if x.shape[2] + top + bottom < kh or x.shape[3] + left + right < kw:
            raise ValueError(
                f"the input of {type(self).__name__} must be at least as large as the kernel "
                f"{self.kernel_size} (with padding {self.padding}), got spatial size {x.shape[2:]}."
            )


class MaxPool2d(_Pool2d):
    r"""Max pooling over kH×kW windows, as ``torch.nn.MaxPool2d`` (dilation 1).

    ``out[n, c, h, w] = max_{i,j} x_pad[n, c, s_h·h + i, s_w·w + j]`` with x padded by −inf
    (see :func:`npcam.nn.functional.max_pool2d_forward`). Output size per axis
    ``floor((n + 2p − k)/s) + 1``, or in ceil mode ``ceil(...) + 1`` minus one if the last
    window would start at or beyond ``n + p``; with a padding ``(left, right, top, bottom)``
    ``H_out = floor((H + top + bottom − kH)/s_h) + 1`` and ``W_out = floor((W + left +
    right − kW)/s_w) + 1``. Ties go to the first maximum in row-major order; padding never
    wins, so no gradient reaches it.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int, (int, int) or None
        None (the default): the kernel size.
    padding : int, (int, int) or (int, int, int, int)
        An int, ``(p_h, p_w)`` (both sides of each axis), or ``(left, right, top,
        bottom)`` — ``torch.nn.functional.pad``'s order, ONNX's ``pads = [top, left,
        bottom, right]`` reordered — each side its own: then the layer equals padding x
        with −inf that way followed by the unpadded max-pool. Every side at most
        ``kernel_size // 2`` of its axis, as torch requires; a 4-tuple with left == right
        and top == bottom is stored as ``(top, left)``.
    ceil_mode : bool
        Round the output size up (torch's rule above); not with an asymmetric padding.
    """

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, ...] = 0,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.ceil_mode = _pool_arguments(
            "MaxPool2d", kernel_size, stride, padding, ceil_mode)

    def config(self) -> dict[str, Any]:
        return {"type": "MaxPool2d", "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding), "ceil_mode": self.ceil_mode}

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        self._check_input(x)
        return functional.max_pool2d_forward(x, self.kernel_size, self.stride, self.padding, self.ceil_mode)

    def _backward(self, dout, cache, relu_rule, param_grads):
        return functional.max_pool2d_backward(dout, cache), {}


class AvgPool2d(_Pool2d):
    r"""Average pooling over kH×kW windows, as ``torch.nn.AvgPool2d`` (no divisor override).

    ``out[n, c, h, w] = (1/d[h, w]) Σ_{i,j} x_pad[n, c, s_h·h + i, s_w·w + j]`` with x
    zero-padded; ``d = kH·kW`` with ``count_include_pad`` (but a ceil-mode overhang beyond
    the padding is not counted), else the number of real inputs in the window (see
    :func:`npcam.nn.functional.avg_pool2d_forward`). Output size as :class:`MaxPool2d`.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int, (int, int) or None
        None (the default): the kernel size.
    padding : int, (int, int) or (int, int, int, int)
        An int, ``(p_h, p_w)`` (both sides of each axis), or ``(left, right, top,
        bottom)`` (``torch.nn.functional.pad``'s order) each side its own: the window sums
        are those of x zero-padded that way, divided by kH·kW with ``count_include_pad``
        (i.e. ``F.pad`` followed by the unpadded average pool) and by the number of real
        inputs in the window without. Every side at most ``kernel_size // 2`` of its
        axis, as torch requires; a 4-tuple with left == right and top == bottom is stored
        as ``(top, left)``.
    ceil_mode : bool
        Round the output size up (torch's rule); not with an asymmetric padding.
    count_include_pad : bool
        Count the zero padding in the divisor.
    """

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, ...] = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.ceil_mode = _pool_arguments(
            "AvgPool2d", kernel_size, stride, padding, ceil_mode)
        if not isinstance(count_include_pad, (bool, np.bool_)):
            raise TypeError(f"count_include_pad must be a bool, got {describe(count_include_pad)}.")
        self.count_include_pad = bool(count_include_pad)

    def config(self) -> dict[str, Any]:
        return {"type": "AvgPool2d", "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding), "ceil_mode": self.ceil_mode,
                "count_include_pad": self.count_include_pad}

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        self._check_input(x)
        return functional.avg_pool2d_forward(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                                             self.count_include_pad)

    def _backward(self, dout, cache, relu_rule, param_grads):
        return functional.avg_pool2d_backward(dout, cache), {}


class AdaptiveAvgPool2d(Layer):
    r"""Adaptive average pooling to a fixed output size, as ``torch.nn.AdaptiveAvgPool2d``.

    (N, C, H, W) -> (N, C, oh, ow): ``out[n, c, i, j]`` is the mean of x over rows
    ``[floor(i·H/oh), ceil((i+1)·H/oh))`` and columns ``[floor(j·W/ow), ceil((j+1)·W/ow))``
    — windows that overlap when oh does not divide H and repeat inputs when oh > H.
    Separable: ``out[n, c] = P_h · x[n, c] · P_wᵀ`` (see
    :func:`npcam.nn.functional.adaptive_avg_pool2d_forward`). The output stays 4-D;
    :class:`GlobalAvgPool2d` is the (N, K) special case ``output_size = 1`` + flatten.

    Parameters
    ----------
    output_size : int or (int or None, int or None)
        ``(oh, ow)``; None keeps that axis's input size, as torch.
    """

    def __init__(self, output_size: int | tuple[int | None, int | None]) -> None:
        super().__init__()
        if isinstance(output_size, (tuple, list)):
            if len(output_size) != 2:
                raise ValueError(f"output_size must be an int or a pair, got {output_size!r}.")
            size = tuple(None if v is None else _bounded("output_size", v, MAX_CHANNELS) for v in output_size)
        else:
            v = _bounded("output_size", output_size, MAX_CHANNELS)
            size = (v, v)
        self.output_size: tuple[int | None, int | None] = (size[0], size[1])

    def config(self) -> dict[str, Any]:
        return {"type": "AdaptiveAvgPool2d", "output_size": list(self.output_size)}

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        self._check_shape(x, 4)
        oh, ow = self.output_size
        size = (x.shape[2] if oh is None else oh, x.shape[3] if ow is None else ow)
        return functional.adaptive_avg_pool2d_forward(x, size)

    def _backward(self, dout, cache, relu_rule, param_grads):
        return functional.adaptive_avg_pool2d_backward(dout, cache), {}


class GlobalAvgPool2d(Layer):
    """``F^k = (1/Z) Σ_ij A^k_ij``: (N, K, h, w) -> (N, K). Equivalent to PyTorch's
    ``AdaptiveAvgPool2d(1)`` followed by ``Flatten()``."""

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        self._check_shape(x, 4)
        return functional.global_avg_pool2d_forward(x)

    def _backward(self, dout, cache, relu_rule, param_grads):
        return functional.global_avg_pool2d_backward(dout, cache), {}


class Flatten(Layer):
    """``torch.flatten(x, start_dim)``: the axes from ``start_dim`` on merged into one, in
    C order. The default (N, d1, d2, ...) -> (N, d1·d2·...) is the identity on (N, K)."""

    def __init__(self, start_dim: int = 1) -> None:
        super().__init__()
        self.start_dim = as_positive_int("start_dim", start_dim)

    def config(self) -> dict[str, Any]:
        if self.start_dim == 1:
            return {"type": "Flatten"}
        return {"type": "Flatten", "start_dim": self.start_dim}

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        if self.start_dim != 1:
            if x.ndim <= self.start_dim:
                raise ValueError(
                    f"the input of Flatten(start_dim={self.start_dim}) needs more than "
                    f"{self.start_dim} axes, got shape {x.shape}."
                )
            return x.reshape(*x.shape[: self.start_dim], -1), x.shape
        if x.ndim not in (2, 3, 4):
            raise ValueError(
                f"the input of Flatten must be a 2-, 3- or 4-D array, got {x.ndim}-D with shape {x.shape}."
            )
        return functional.flatten_forward(x)

    def _backward(self, dout, cache, relu_rule, param_grads):
        return functional.flatten_backward(dout, cache), {}


class Dropout(Layer):
    """Dropout at inference: the identity. Accepted so that models with dropout load;
    ``p`` is kept only to describe the layer (npcam trains without dropout, so the layer
    has no training-time mask)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
            raise ValueError(f"p must be a probability in [0, 1), got {p!r}.")
        self.p = float(p)

    def config(self) -> dict[str, Any]:
        return {"type": "Dropout", "p": self.p}

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        return functional.dropout_forward(x)

    def _backward(self, dout, cache, relu_rule, param_grads):
        return functional.dropout_backward(dout), {}


class BatchNorm2d(Layer):
    r"""Batch normalisation per channel: ``y = γ (x − μ)/sqrt(σ² + ε) + β``.

    Training mode normalises with the batch statistics and updates the running ones as
    PyTorch does: ``running = (1 − momentum)·running + momentum·batch``, with the
    *unbiased* batch variance for ``running_var`` (the running statistics are the one
    state a forward pass changes, and only in training mode). Eval mode (the default) uses
    the running statistics: an affine map per channel, which :func:`npcam.fold_batchnorm`
    folds into the preceding convolution.
    """

    param_names = ("weight", "bias")
    buffer_names = ("running_mean", "running_var", "num_batches_tracked")

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.num_features = _bounded("num_features", num_features, MAX_CHANNELS)
        if isinstance(eps, bool) or not (isinstance(eps, (int, float)) and eps > 0):
            raise ValueError(f"eps must be a positive number, got {eps!r}.")
        if isinstance(momentum, bool) or not (isinstance(momentum, (int, float)) and 0 <= momentum <= 1):
            raise ValueError(f"momentum must be a number in [0, 1], got {momentum!r}.")
        self.eps, self.momentum = float(eps), float(momentum)
        self.weight = np.ones(self.num_features)
        self.bias = np.zeros(self.num_features)
        self.running_mean = np.zeros(self.num_features)
        self.running_var = np.ones(self.num_features)
        self.num_batches_tracked = np.array(0, dtype=np.int64)

    def config(self) -> dict[str, Any]:
        return {
            "type": "BatchNorm2d",
            "num_features": self.num_features,
            "eps": self.eps,
            "momentum": self.momentum,
        }

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        c = (self.num_features,)
        return {"weight": c, "bias": c, "running_mean": c, "running_var": c, "num_batches_tracked": ()}

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        self._check_shape(x, 4, self.num_features)
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] < 2:
            raise ValueError(
                "the input of BatchNorm2d in training mode needs more than one value "
                f"per channel, got shape {x.shape}."
            )
        out, cache = functional.batch_norm2d_forward(
            x, self.weight, self.bias, self.running_mean, self.running_var, self.eps,
            self.training,
        )
        if self.training:
            m = x.shape[0] * x.shape[2] * x.shape[3]
            mean, var = cache.mean, cache.var * (m / (m - 1))  # unbiased, as torch
            running_mean = (1 - self.momentum) * self.running_mean + self.momentum * mean
            running_var = (1 - self.momentum) * self.running_var + self.momentum * var
            if not (np.isfinite(running_mean).all() and np.isfinite(running_var).all()):
                raise ValueError(
                    "the forward pass overflowed: the batch statistics of a BatchNorm2d in "
                    "training mode are not finite (NaN or inf)."
                )
            # Shapes and finiteness are known: skip the checks of attribute assignment.
            object.__setattr__(self, "running_mean", running_mean)
            object.__setattr__(self, "running_var", running_var)
            object.__setattr__(self, "num_batches_tracked", self.num_batches_tracked + 1)
        return out, cache

    def _backward(self, dout, cache, relu_rule, param_grads):
        dx, dgamma, dbeta = functional.batch_norm2d_backward(dout, cache, param_grads)
        return dx, ({"weight": dgamma, "bias": dbeta} if param_grads else {})
