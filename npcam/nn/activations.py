r"""Activation layers of modern CNNs and layer normalisation, with torch's signatures and values.

Each layer is the :class:`~npcam.nn.layers.Layer` wrapper of a forward/backward pair of
:mod:`npcam.nn.functional`, where the derivatives and the conventions at the
kinks are written out. The element-wise layers accept an input of any shape.

Guided backpropagation and the deconvnet change the backward rule of ``ReLU`` only
(Springenberg et al.; captum and pytorch-grad-cam override ``nn.ReLU`` modules only): every
layer here passes its ordinary derivative whatever ``relu_rule`` says.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validate import MAX_CHANNELS, describe
from . import functional as FA
from .layers import Layer

__all__ = ["GELU", "Hardsigmoid", "Hardswish", "LayerNorm", "ReLU6", "SiLU", "Sigmoid"]

class ReLU6(Layer):
    r"""``ReLU6(x) = min(max(x, 0), 6)``, as ``torch.nn.ReLU6()``.

    Notes
    -----
    Derivative: ``ReLU6'(x) = 1`` on the open interval ``0 < x < 6`` and 0 elsewhere, so
    ``ReLU6'(0) = ReLU6'(6) = 0`` (torch computes ReLU6 as ``hardtanh(x, 0, 6)``, whose
    backward is 0 at both ends). See :func:`~npcam.nn.functional.relu6_forward`.

    Guided and deconvnet rules apply only to ReLU; this layer passes its ordinary
    derivative.
    """

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        return FA.relu6_forward(x)

    def _backward(
        self, dout: np.ndarray, cache: Any, relu_rule: str, param_grads: bool
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return FA.relu6_backward(dout, cache), {}


class Hardsigmoid(Layer):
    r"""``Hardsigmoid(x) = clip(x/6 + 1/2, 0, 1) = ReLU6(x + 3)/6``, as ``torch.nn.Hardsigmoid()``.

    Notes
    -----
    Derivative: ``Hardsigmoid'(x) = 1/6`` on the open interval ``−3 < x < 3`` and 0
    elsewhere, so ``Hardsigmoid'(±3) = 0`` (torch's values). torch's float64 backward
    multiplies by ``float32(1/6)`` (relative error 3.0e-8); npcam by 1/6. See
    :func:`~npcam.nn.functional.hardsigmoid_forward`.

    Guided and deconvnet rules apply only to ReLU; this layer passes its ordinary
    derivative.
    """

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        return FA.hardsigmoid_forward(x)

    def _backward(
        self, dout: np.ndarray, cache: Any, relu_rule: str, param_grads: bool
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return FA.hardsigmoid_backward(dout, cache), {}


class Hardswish(Layer):
    r"""``Hardswish(x) = x · Hardsigmoid(x) = x · ReLU6(x + 3)/6``, as ``torch.nn.Hardswish()``.

    Notes
    -----
    Derivative::

        Hardswish'(x) = 0             for x <= −3
                        (2x + 3)/6    for −3 < x < 3
                        1             for x >= 3

    At the kinks these are torch's values, ``Hardswish'(−3) = 0`` and ``Hardswish'(3) = 1``
    (the outer pieces; the inner formula would give −1/2 and 3/2, the derivative jumps
    there). They equal the product rule ``Hardsigmoid(x) + x·Hardsigmoid'(x)`` with
    Hardsigmoid's convention ``Hardsigmoid'(±3) = 0``. See
    :func:`~npcam.nn.functional.hardswish_forward`.

    Guided and deconvnet rules apply only to ReLU; this layer passes its ordinary
    derivative.
    """

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        return FA.hardswish_forward(x)

    def _backward(
        self, dout: np.ndarray, cache: Any, relu_rule: str, param_grads: bool
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return FA.hardswish_backward(dout, cache), {}


class Sigmoid(Layer):
    r"""``σ(x) = 1/(1 + exp(−x))``, as ``torch.nn.Sigmoid()``.

    Notes
    -----
    Derivative: ``σ'(x) = σ(x)(1 − σ(x))``, computed as ``σ(x)·σ(−x)``. σ is evaluated
    without overflow for every finite x and to full relative precision in both tails
    (``scipy.special.expit``). See :func:`~npcam.nn.functional.sigmoid_forward`.

    Guided and deconvnet rules apply only to ReLU; this layer passes its ordinary
    derivative.
    """

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        return FA.sigmoid_forward(x)

    def _backward(
        self, dout: np.ndarray, cache: Any, relu_rule: str, param_grads: bool
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return FA.sigmoid_backward(dout, cache), {}


class SiLU(Layer):
    r"""``SiLU(x) = x · σ(x)`` (also called swish), as ``torch.nn.SiLU()``.

    Notes
    -----
    Derivative: ``SiLU'(x) = σ(x)(1 + x(1 − σ(x)))``, so ``SiLU'(0) = 1/2``. See
    :func:`~npcam.nn.functional.silu_forward`.

    Guided and deconvnet rules apply only to ReLU; this layer passes its ordinary
    derivative.
    """

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        return FA.silu_forward(x)

    def _backward(
        self, dout: np.ndarray, cache: Any, relu_rule: str, param_grads: bool
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return FA.silu_backward(dout, cache), {}


class GELU(Layer):
    r"""The exact GELU, ``GELU(x) = x · Φ(x)`` with Φ the standard normal CDF, as
    ``torch.nn.GELU(approximate="none")``.

    Parameters
    ----------
    approximate : str, default "none"
        Only ``"none"`` (the exact function); torch's ``"tanh"`` approximation is refused
        with a ``ValueError``.

    Notes
    -----
    ``Φ(x) = (1 + erf(x/√2))/2``, computed as ``erfc(−x/√2)/2``. Derivative:
    ``GELU'(x) = Φ(x) + x·φ(x)`` with ``φ(x) = exp(−x²/2)/√(2π)``, so ``GELU'(0) = 1/2``.
    See :func:`~npcam.nn.functional.gelu_forward`.

    Guided and deconvnet rules apply only to ReLU; this layer passes its ordinary
    derivative.
    """

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if not isinstance(approximate, str):
            raise TypeError(f"approximate must be the string 'none', got {describe(approximate)}.")
        if approximate != "none":
            raise ValueError(
                f"approximate must be 'none' (the exact x·Φ(x)); npcam does not implement "
                f"torch's 'tanh' approximation or any other, got {approximate!r}."
            )
        self.approximate = approximate

    def config(self) -> dict[str, Any]:
        return {"type": "GELU", "approximate": self.approximate}

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        return FA.gelu_forward(x)

    def _backward(
        self, dout: np.ndarray, cache: Any, relu_rule: str, param_grads: bool
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return FA.gelu_backward(dout, cache), {}


class LayerNorm(Layer):
    r"""Layer normalisation over the last axis, as ``torch.nn.LayerNorm(C)``:
    ``y = γ · (x − μ)/sqrt(σ² + ε) + β``.

    Parameters
    ----------
    normalized_shape : int or 1-tuple of int
        C, the size of the last axis of the input (the only axis normalised: longer
        shapes are refused with a ``ValueError``).
    eps : float, default 1e-5
        ε > 0, added to the variance.
    elementwise_affine : bool, default True
        With it the layer holds ``weight`` γ (C,), initialised to ones, and ``bias`` β
        (C,), initialised to zeros (torch's names and initialisation); without, neither.
    bias : bool, default True
        With ``elementwise_affine``, whether β exists (torch's ``bias`` argument).

    Notes
    -----
    The input has any rank >= 1 with C on its last axis. μ and σ² are the mean and the
    *biased* variance of the C values at each position: per-sample statistics, in
    training and evaluation mode alike (there are no running statistics).

    Backward, with ``x̂ = (x − μ)/σ``, ``σ = sqrt(σ² + ε)``, ``g = γ·dy`` and means over
    the last axis::

        dx = (g − mean_C(g) − x̂ · mean_C(g · x̂)) / σ
        dγ = Σ dy · x̂,    dβ = Σ dy     (sums over all leading axes)

    See :func:`~npcam.nn.functional.layer_norm_forward`.

    Guided and deconvnet rules apply only to ReLU; this layer passes its ordinary
    derivative.
    """

    param_names = ("weight", "bias")

    def __init__(
        self,
        normalized_shape: int | tuple[int] | list[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
    ) -> None:
        super().__init__()
        c = FA.normalized_size(normalized_shape)
        if c > MAX_CHANNELS:
            raise ValueError(f"normalized_shape must be at most {MAX_CHANNELS}, got {c}.")
        if (
            isinstance(eps, (bool, np.bool_))
            or not isinstance(eps, (int, float, np.integer, np.floating))
            or not (np.isfinite(eps) and eps > 0)
        ):
            raise ValueError(f"eps must be a positive finite number, got {eps!r}.")
        for name, flag in (("elementwise_affine", elementwise_affine), ("bias", bias)):
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool, got {describe(flag)}.")
        self.normalized_shape = (c,)
        self.eps = float(eps)
        self.elementwise_affine = bool(elementwise_affine)
        self._has_bias = self.elementwise_affine and bool(bias)
        self.weight: np.ndarray | None = np.ones(c) if self.elementwise_affine else None
        self.bias: np.ndarray | None = np.zeros(c) if self._has_bias else None

    def config(self) -> dict[str, Any]:
        return {
            "type": "LayerNorm",
            "normalized_shape": list(self.normalized_shape),
            "eps": self.eps,
            "elementwise_affine": self.elementwise_affine,
            "bias": self._has_bias,
        }

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        if self.elementwise_affine:
            shapes["weight"] = self.normalized_shape
        if self._has_bias:
            shapes["bias"] = self.normalized_shape
        return shapes

    def _checked_parameter(self, name: str, value: Any) -> Any:
        # A parameter the configuration leaves out stays None; one it has must be an array.
        if name not in self.parameter_shapes():
            if value is not None:
                raise ValueError(
                    f"LayerNorm.{name} must stay None: this layer has no {name} "
                    f"(elementwise_affine={self.elementwise_affine}, bias={self._has_bias})."
                )
            return None
        if value is None:
            raise TypeError(f"LayerNorm.{name} must be an array of shape {self.normalized_shape}, got None.")
        return super()._checked_parameter(name, value)

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        (c,) = self.normalized_shape
        if x.ndim < 1 or x.shape[-1] != c:
            raise ValueError(
                f"the input of LayerNorm must have {c} values on its last axis "
                f"(normalized_shape {self.normalized_shape}), got shape {x.shape}."
            )
        out, cache = FA.layer_norm_forward(x, self.normalized_shape, self.weight, self.bias, self.eps)
        if not np.isfinite(cache.inv_std).all() or not (cache.inv_std > 0).all():
            raise ValueError(
                "the forward pass overflowed: the variance over the last axis of the input "
                "of LayerNorm is not finite (values beyond about 1e154)."
            )
        return out, cache

    def _backward(
        self, dout: np.ndarray, cache: Any, relu_rule: str, param_grads: bool
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        dx, dweight, dbias = FA.layer_norm_backward(dout, cache, param_grads)
        grads: dict[str, np.ndarray] = {}
        if dweight is not None:
            grads["weight"] = dweight
        if dbias is not None:
            grads["bias"] = dbias
        return dx, grads
