"""Layers: the functional forward/backward pairs together with their parameters and caches.

Parameters use PyTorch's names, shapes and default initialisation, so that a layer here
and ``torch.nn``'s layer of the same name hold the same ``state_dict``. Each layer
remembers what its last ``forward`` needs for ``backward``; a layer therefore explains one
batch at a time.

A new layer is in evaluation mode (``training = False``): npcam explains trained models.
Only ``BatchNorm2d`` behaves differently in training mode.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ClassVar

import numpy as np

from .._validate import as_float_array, as_pair, as_positive_int, describe
from . import functional as F

__all__ = [
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

# True while a model runs its layers on an input it has already checked for NaN/inf: a
# layer's output is then finite by construction, and the per-layer scan can be skipped.
_VALUES_CHECKED: ContextVar[bool] = ContextVar("npcam_values_checked", default=False)


@contextmanager
def values_checked() -> Iterator[None]:
    """Within this block, layers skip the NaN/inf scan of their inputs (shapes are still
    checked). Used by :class:`npcam.Sequential` after checking the model's input."""
    token = _VALUES_CHECKED.set(True)
    try:
        yield
    finally:
        _VALUES_CHECKED.reset(token)


def _finite() -> bool:
    return not _VALUES_CHECKED.get()


def _rng(rng: RngLike) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be a numpy.random.Generator, an int seed or None, got {describe(rng)}.")


def _kaiming_uniform(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    # PyTorch's default: kaiming_uniform_(a=√5) gives bound gain·sqrt(3/fan_in) with
    # gain = sqrt(2/(1 + a²)) = sqrt(1/3), i.e. bound = 1/sqrt(fan_in); the bias uses the
    # same bound. Same distribution as torch, not the same numbers.
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape)


class Layer:
    """Base class: a named set of parameters and buffers, a forward and a backward.

    Subclasses list their trainable parameters in ``param_names`` and their other saved
    state (running statistics) in ``buffer_names``; parameter gradients land in ``grads``.
    """

    param_names: ClassVar[tuple[str, ...]] = ()
    buffer_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.training = False
        self.grads: dict[str, np.ndarray] = {}
        self._cache: Any = None
        self._out_shape: tuple[int, ...] = ()

    # -- state -------------------------------------------------------------------------
    def params(self) -> dict[str, np.ndarray]:
        """Trainable parameters by name (absent ones, e.g. ``bias=False``, left out)."""
        return {n: getattr(self, n) for n in self.param_names if getattr(self, n) is not None}

    def buffers(self) -> dict[str, np.ndarray]:
        return {n: getattr(self, n) for n in self.buffer_names}

    def config(self) -> dict[str, Any]:
        """A JSON-able description from which :func:`layer_from_config` rebuilds the layer
        (architecture only; the weights travel in the ``state_dict``)."""
        return {"type": type(self).__name__}

    # -- computation -------------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        """This layer's output for ``x``; remembers what ``backward`` needs."""
        out = self._forward(x)
        self._out_shape = out.shape
        return out

    def backward(
        self, dout: np.ndarray, relu: str = "standard", param_grads: bool = True
    ) -> np.ndarray:
        """Gradient w.r.t. this layer's input, given ``dout`` w.r.t. its output (of the
        last ``forward``, whose shape ``dout`` must have).

        ``relu`` selects the ReLU backward rule (only ``ReLU`` reads it); with
        ``param_grads`` the parameter gradients are stored in ``self.grads``.
        """
        self._need_cache()
        dout = as_float_array("dout", dout, finite=_finite())
        if dout.shape != self._out_shape:
            raise ValueError(
                f"dout must have the shape of the output of {type(self).__name__}, "
                f"{self._out_shape}, got {dout.shape}."
            )
        return self._backward(dout, relu, param_grads)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _backward(self, dout: np.ndarray, relu: str, param_grads: bool) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def _need_cache(self) -> Any:
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward.")
        return self._cache

    def _check_input(self, x: Any, ndim: int, channels: int | None = None) -> np.ndarray:
        name = f"the input of {type(self).__name__}"
        x = as_float_array(name, x, ndim, finite=_finite())
        if channels is not None and x.shape[1] != channels:
            raise ValueError(
                f"{name} must have {channels} channels (axis 1), got shape {x.shape}."
            )
        return x

    def __repr__(self) -> str:
        args = ", ".join(
            f"{k}={tuple(v) if isinstance(v, list) else v}" for k, v in self.config().items() if k != "type"
        )
        return f"{type(self).__name__}({args})"


class Conv2d(Layer):
    r"""2-D convolution, ``out = W ⋆ x + b`` (see :func:`npcam.nn.functional.conv2d_forward`).

    ``weight`` (C_out, C_in, kH, kW), ``bias`` (C_out,) or None.
    """

    param_names = ("weight", "bias")

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
        rng: RngLike = None,
    ) -> None:
        super().__init__()
        self.in_channels = as_positive_int("in_channels", in_channels)
        self.out_channels = as_positive_int("out_channels", out_channels)
        self.kernel_size = as_pair("kernel_size", kernel_size)
        self.stride = as_pair("stride", stride)
        self.padding = as_pair("padding", padding, minimum=0)
        gen = _rng(rng)
        kh, kw = self.kernel_size
        fan_in = self.in_channels * kh * kw
        self.weight = _kaiming_uniform(gen, (self.out_channels, self.in_channels, kh, kw), fan_in)
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
        }

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return F.conv_output_size(h, kh, sh, ph), F.conv_output_size(w, kw, sw, pw)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        x = self._check_input(x, 4, self.in_channels)
        h_out, w_out = self.output_size(*x.shape[2:])
        if h_out < 1 or w_out < 1:
            raise ValueError(
                f"the input of Conv2d is too small: spatial size {x.shape[2:]} with "
                f"kernel {self.kernel_size} and padding {self.padding} leaves no output."
            )
        out, self._cache = F.conv2d_forward(x, self.weight, self.bias, self.stride, self.padding)
        return out

    def _backward(self, dout, relu, param_grads):
        dx, dw, db = F.conv2d_backward(dout, self._need_cache(), param_grads)
        if param_grads:
            self.grads = {"weight": dw} if db is None else {"weight": dw, "bias": db}
        return dx


class Linear(Layer):
    r"""Fully connected layer ``y = x Wᵀ + b``; ``weight`` (out, in), ``bias`` (out,)."""

    param_names = ("weight", "bias")

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, rng: RngLike = None
    ) -> None:
        super().__init__()
        self.in_features = as_positive_int("in_features", in_features)
        self.out_features = as_positive_int("out_features", out_features)
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

    def _forward(self, x: np.ndarray) -> np.ndarray:
        x = self._check_input(x, 2)
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"the input of Linear must have {self.in_features} features (axis 1), "
                f"got shape {x.shape}."
            )
        out, self._cache = F.linear_forward(x, self.weight, self.bias)
        return out

    def _backward(self, dout, relu, param_grads):
        dx, dw, db = F.linear_backward(dout, self._need_cache(), param_grads)
        if param_grads:
            self.grads = {"weight": dw} if db is None else {"weight": dw, "bias": db}
        return dx


class ReLU(Layer):
    """``max(x, 0)``; its backward rule is chosen per call: standard, guided or deconvnet
    (see :func:`npcam.nn.functional.relu_backward`)."""

    def _forward(self, x: np.ndarray) -> np.ndarray:
        x = as_float_array("the input of ReLU", x, finite=_finite())
        out, self._cache = F.relu_forward(x)
        return out

    def _backward(self, dout, relu, param_grads):
        return F.relu_backward(dout, self._need_cache(), relu)


class MaxPool2d(Layer):
    """Max pooling over kH×kW windows with the given stride (default: the kernel size),
    no padding; ties go to the first maximum in row-major order."""

    def __init__(
        self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None
    ) -> None:
        super().__init__()
        self.kernel_size = as_pair("kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else as_pair("stride", stride)

    def config(self) -> dict[str, Any]:
        return {"type": "MaxPool2d", "kernel_size": list(self.kernel_size), "stride": list(self.stride)}

    def _forward(self, x: np.ndarray) -> np.ndarray:
        x = self._check_input(x, 4)
        if x.shape[2] < self.kernel_size[0] or x.shape[3] < self.kernel_size[1]:
            raise ValueError(
                f"the input of MaxPool2d must be at least as large as the kernel "
                f"{self.kernel_size}, got spatial size {x.shape[2:]}."
            )
        out, self._cache = F.max_pool2d_forward(x, self.kernel_size, self.stride)
        return out

    def _backward(self, dout, relu, param_grads):
        return F.max_pool2d_backward(dout, self._need_cache())


class GlobalAvgPool2d(Layer):
    """``F^k = (1/Z) Σ_ij A^k_ij``: (N, K, h, w) -> (N, K). Equivalent to PyTorch's
    ``AdaptiveAvgPool2d(1)`` followed by ``Flatten()``."""

    def _forward(self, x: np.ndarray) -> np.ndarray:
        x = self._check_input(x, 4)
        out, self._cache = F.global_avg_pool2d_forward(x)
        return out

    def _backward(self, dout, relu, param_grads):
        return F.global_avg_pool2d_backward(dout, self._need_cache())


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1·d2·...), C order as ``torch.flatten(x, 1)``; the
    identity on (N, K)."""

    def _forward(self, x: np.ndarray) -> np.ndarray:
        x = as_float_array("the input of Flatten", x, (2, 3, 4), finite=_finite())
        out, self._cache = F.flatten_forward(x)
        return out

    def _backward(self, dout, relu, param_grads):
        return F.flatten_backward(dout, self._need_cache())


class Dropout(Layer):
    """Dropout at inference: the identity. Accepted so that models with dropout load;
    ``p`` is kept only to describe the layer."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
            raise ValueError(f"p must be a probability in [0, 1), got {p!r}.")
        self.p = float(p)

    def config(self) -> dict[str, Any]:
        return {"type": "Dropout", "p": self.p}

    def _forward(self, x: np.ndarray) -> np.ndarray:
        out, _ = F.dropout_forward(as_float_array("the input of Dropout", x, finite=_finite()))
        self._cache = True
        return out

    def _backward(self, dout, relu, param_grads):
        return F.dropout_backward(dout)


class BatchNorm2d(Layer):
    r"""Batch normalisation per channel: ``y = γ (x − μ)/sqrt(σ² + ε) + β``.

    Training mode normalises with the batch statistics and updates the running ones as
    PyTorch does: ``running = (1 − momentum)·running + momentum·batch``, with the
    *unbiased* batch variance for ``running_var``. Eval mode (the default) uses the
    running statistics: an affine map per channel, which
    :func:`npcam.fold_batchnorm` folds into the preceding convolution.
    """

    param_names = ("weight", "bias")
    buffer_names = ("running_mean", "running_var", "num_batches_tracked")

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.num_features = as_positive_int("num_features", num_features)
        if not (isinstance(eps, (int, float)) and eps > 0):
            raise ValueError(f"eps must be a positive number, got {eps!r}.")
        if not (isinstance(momentum, (int, float)) and 0 <= momentum <= 1):
            raise ValueError(f"momentum must be a number in [0, 1], got {momentum!r}.")
        self.eps, self.momentum = float(eps), float(momentum)
        self.weight = np.ones(num_features)
        self.bias = np.zeros(num_features)
        self.running_mean = np.zeros(num_features)
        self.running_var = np.ones(num_features)
        self.num_batches_tracked = np.array(0, dtype=np.int64)

    def config(self) -> dict[str, Any]:
        return {
            "type": "BatchNorm2d",
            "num_features": self.num_features,
            "eps": self.eps,
            "momentum": self.momentum,
        }

    def _forward(self, x: np.ndarray) -> np.ndarray:
        x = self._check_input(x, 4, self.num_features)
        out, self._cache = F.batch_norm2d_forward(
            x, self.weight, self.bias, self.running_mean, self.running_var, self.eps,
            self.training,
        )
        if self.training:
            m = x.shape[0] * x.shape[2] * x.shape[3]
            if m < 2:
                raise ValueError(
                    "the input of BatchNorm2d in training mode needs more than one value "
                    f"per channel, got shape {x.shape}."
                )
            mean, var = self._cache.mean, self._cache.var * (m / (m - 1))  # unbiased, as torch
            self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * mean
            self.running_var = (1 - self.momentum) * self.running_var + self.momentum * var
            self.num_batches_tracked = self.num_batches_tracked + 1
        return out

    def _backward(self, dout, relu, param_grads):
        dx, dgamma, dbeta = F.batch_norm2d_backward(dout, self._need_cache(), param_grads)
        if param_grads:
            self.grads = {"weight": dgamma, "bias": dbeta}
        return dx
