r"""Checking a backward pass against central differences — for npcam's tests and yours.

A backward pass computes ``∂L/∂x`` for ``L = ⟨s, f(x)⟩``, where ``s`` (the *cotangent*) is the
gradient arriving at the output. The same number can be estimated without any calculus:

    ∂L/∂x_i ≈ ⟨s, f(x + h·e_i) − f(x − h·e_i)⟩ / 2h

(central differences: error O(h²); subtracting the two outputs *before* summing keeps
the round-off small). In float64 with h = 1e-6 a correct backward agrees to about 1e-10
in :func:`relative_error`; a backward computed in float32 lands near 1e-7 and a wrong
one near 1. npcam's bar is 1e-8.

Checking your own backward pass::

    import numpy as np
    from npcam.gradcheck import numerical_gradient, relative_error

    def f(x):                       # your forward: here y = x², elementwise
        return x ** 2
    x = np.random.default_rng(0).normal(size=(3, 4))
    s = np.random.default_rng(1).normal(size=(3, 4))   # any cotangent
    analytic = 2 * x * s                                 # your backward applied to s
    assert relative_error(analytic, numerical_gradient(f, x, s)) < 1e-8

For a layer object, :func:`check_layer` does this for the input and every parameter.
Keep inputs away from kinks (exact zeros into a ReLU, ties in a max-pool window): there
the function is not differentiable and finite differences mean nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .._validate import as_float_array, describe

__all__ = ["check_layer", "numerical_gradient", "relative_error"]


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    r"""``max_i |a_i − b_i| / max(max_i (|a_i| + |b_i|), tiny)``.

    One normaliser for the whole array, so entries near zero cannot inflate the error;
    0 when both arrays are all zero.
    """
    a = as_float_array("a", a, finite=False)
    b = as_float_array("b", b, finite=False)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}.")
    if a.size == 0:
        return 0.0
    scale = max(float(np.max(np.abs(a) + np.abs(b))), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(a - b)) / scale)


def numerical_gradient(
    f: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    cotangent: np.ndarray,
    eps: float = 1e-6,
    indices: np.ndarray | None = None,
) -> np.ndarray:
    r"""Central-difference estimate of ``∂⟨cotangent, f(x)⟩/∂x``.

    ``x`` is perturbed in place one coordinate at a time and restored, so ``f`` may
    close over ``x`` (that is how parameters are checked). ``indices`` (flat positions)
    restricts the work to a subset; the other entries of the result are NaN.
    """
    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        raise TypeError(f"x must be a float64 numpy array (it is perturbed in place), got {describe(x)}.")
    cotangent = as_float_array("cotangent", cotangent)
    if not (isinstance(eps, float) and eps > 0):
        raise ValueError(f"eps must be a positive float, got {eps!r}.")
    flat = x.reshape(-1)  # a view: writes reach x
    if not np.shares_memory(flat, x):
        raise ValueError("x must be contiguous so that it can be perturbed in place.")
    coords = np.arange(x.size) if indices is None else np.asarray(indices, dtype=np.int64)
    grad = np.full(x.size, np.nan) if indices is not None else np.empty(x.size)
    for i in coords:  # the checker is allowed its loop: it is the slow, obvious definition
        old = flat[i]
        flat[i] = old + eps
        plus = np.array(f(x), dtype=np.float64)
        flat[i] = old - eps
        minus = np.array(f(x), dtype=np.float64)
        flat[i] = old
        if plus.shape != cotangent.shape:
            raise ValueError(f"cotangent must have the shape of f(x), {plus.shape}, got {cotangent.shape}.")
        grad[i] = np.sum(cotangent * (plus - minus)) / (2 * eps)
    return grad.reshape(x.shape)


def check_layer(
    layer,
    x: np.ndarray,
    cotangent: np.ndarray | None = None,
    eps: float = 1e-6,
    max_coords: int | None = None,
    rng: np.random.Generator | int | None = 0,
) -> dict[str, float]:
    """Relative errors of ``layer.vjp`` against central differences, for the input
    (key ``"x"``) and each parameter (keys as in ``layer.params()``).

    ``layer`` is an :class:`npcam.Layer` (or any object with ``run(x) -> (out, cache)``,
    ``vjp(dout, cache, param_grads=True) -> (dx, grads)`` and ``params()``); its
    parameters are perturbed in place and restored.

    ``cotangent`` defaults to a random array of the output's shape. With ``max_coords``, at
    most that many randomly chosen coordinates of each tensor are checked (for large
    layers). Pass the result to your own assertion, e.g. ``max(errors.values()) < 1e-8``.
    """
    x = np.array(as_float_array("x", x), dtype=np.float64, copy=True)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    out, cache = layer.run(x)
    if cotangent is None:
        cotangent = gen.standard_normal(out.shape)
    cotangent = as_float_array("cotangent", cotangent)
    dx, grads = layer.vjp(cotangent, cache, param_grads=True)
    analytic = {"x": dx, **{k: np.array(v, copy=True) for k, v in grads.items()}}

    def pick(size: int) -> np.ndarray | None:
        if max_coords is None or size <= max_coords:
            return None
        return gen.choice(size, size=max_coords, replace=False)

    def forward(inp: np.ndarray) -> np.ndarray:
        return layer.run(inp)[0]

    errors: dict[str, float] = {}
    idx = pick(x.size)
    numeric = numerical_gradient(forward, x, cotangent, eps, idx)
    errors["x"] = _masked_error(analytic["x"], numeric)
    for name, param in layer.params().items():
        idx = pick(param.size)
        numeric = numerical_gradient(lambda _p: forward(x), param, cotangent, eps, idx)
        errors[name] = _masked_error(analytic[name], numeric)
    return errors


def _masked_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    checked = ~np.isnan(numeric)
    return relative_error(analytic[checked], numeric[checked])
