"""Argument checks and the weighted sum shared by the conventions."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._validate import as_float_array, as_pair, describe


# ------------------------------------------------------------------------ validation
def _maps_pair(activations: Any, gradients: Any) -> tuple[np.ndarray, np.ndarray]:
    """A and ∂y/∂A as (N, K, h, w) arrays of one shape; float32 stays float32."""
    arrays = []
    for name, value in (("activations", activations), ("gradients", gradients)):
        dtype = np.float32 if getattr(value, "dtype", None) == np.float32 else np.float64
        arr = as_float_array(name, value, ndim=4, dtype=dtype)
        if 0 in arr.shape:
            raise ValueError(f"{name} must be a non-empty (N, K, h, w) array, got {arr.shape}.")
        arrays.append(arr)
    a, g = arrays
    if a.shape != g.shape:
        raise ValueError(
            f"activations and gradients must have the same shape, got {a.shape} and {g.shape}."
        )
    if a.dtype != g.dtype:
        raise ValueError(
            f"activations and gradients must have the same dtype, got {a.dtype} and {g.dtype}."
        )
    return a, g


def _guided_array(guided: Any, n: int, dtype: type) -> np.ndarray:
    arr = as_float_array("guided", guided, ndim=4, dtype=dtype)
    if arr.shape[0] != n or 0 in arr.shape:
        raise ValueError(
            f"guided must be a non-empty (N, C, H, W) array with N = {n} like the "
            f"activations, got shape {arr.shape}."
        )
    return arr


def _size(input_size: Any, needed: bool, convention: str, why: str = "") -> tuple[int, int]:
    if not needed:
        if input_size is not None:
            raise ValueError(
                f"input_size must be None for convention {convention!r}{why}, "
                f"got {input_size!r}."
            )
        return (0, 0)
    if input_size is None:
        raise ValueError(f"input_size (H, W) is required for convention {convention!r}.")
    return as_pair("input_size", input_size)


def _input_size(x: Any, input_size: Any, convention: str) -> tuple[int, int]:
    """``input_size`` as (H, W) for a convention that resizes; by default the spatial
    size of ``x``."""
    return _size(np.shape(x)[-2:] if input_size is None else input_size, True, convention)


def _npcam_final(cam: np.ndarray, x: Any, input_size: Any) -> np.ndarray:
    """npcam's convention for every method: the method's ``cam`` upsampled bilinearly with
    half-pixel centres (:func:`npcam.upsample`, = ``F.interpolate(..., align_corners=False)``)
    to ``input_size`` (default: the size of ``x``); float64, no normalisation."""
    from ...image import upsample

    return upsample(cam, _input_size(x, input_size, "npcam"), mode="bilinear")


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {describe(value)}.")
    return bool(value)


def _weighted_sum(weights: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``Σ_k weights_k A^k``: (N, K) with (N, K, h, w) -> (N, h, w), as the libraries
    write it (broadcast product, then a sum over the channel axis)."""
    return (weights[:, :, None, None] * a).sum(axis=1)
