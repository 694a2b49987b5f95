"""Min-max normalisation of explanation maps, kept apart from the maps themselves (DESIGN.md)
so that a raw map can be compared with a library that post-processes differently."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validate import as_float_array

__all__ = ["normalize"]


# ---------------------------------------------------------------------- normalisation


def normalize(maps: Any) -> np.ndarray:
    """Min-max normalise each map (the last two axes) to ``[0, 1]``.

    ``out = (m - min m) / (max m - min m)`` per map, over any leading axes; a constant map
    becomes zeros (no division, so no NaN and no warning). Every non-constant map has
    min exactly 0 and max exactly 1. Ranges too large for float64 (``max - min`` overflows)
    are handled by halving both numerator and denominator.
    """
    arr = as_float_array("maps", maps)
    if arr.ndim < 2 or arr.shape[-1] == 0 or arr.shape[-2] == 0:
        raise ValueError(
            f"maps must have at least 2 axes with non-empty last two axes, got shape {arr.shape}."
        )
    lo = arr.min(axis=(-2, -1), keepdims=True)
    hi = arr.max(axis=(-2, -1), keepdims=True)
    with np.errstate(over="ignore"):
        span = hi - lo
        num = arr - lo
    huge = ~np.isfinite(span)
    if np.any(huge):  # finite inputs whose range exceeds the float64 maximum
        span = np.where(huge, hi / 2 - lo / 2, span)
        num = np.where(huge, arr / 2 - lo / 2, num)
    out = np.zeros_like(arr)
    np.divide(num, span, out=out, where=np.broadcast_to(span > 0, arr.shape))
    return out


