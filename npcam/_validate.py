"""Input validation shared by every public entry point.

Each check raises ``TypeError`` (wrong kind of object) or ``ValueError`` (right kind,
wrong content) with one sentence that names the argument, says what was expected and
what came. Nothing is silently broadcast, truncated or clipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "MAX_CHANNELS",
    "MAX_KERNEL_SIZE",
    "MAX_LAYER_PARAMETERS",
    "MAX_MODEL_PARAMETERS",
    "MAX_NESTING",
    "MAX_NODES",
    "as_float_array",
    "as_pair",
    "as_positive_int",
    "describe",
]


def describe(value: Any) -> str:
    """A short description of ``value`` for error messages."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    return f"{type(value).__name__} {value!r}"[:120]


def as_float_array(
    name: str,
    value: Any,
    ndim: int | Sequence[int] | None = None,
    *,
    finite: bool = True,
    dtype: type = np.float64,
) -> np.ndarray:
    """Return ``value`` as a float array, after checking its kind, rank and values.

    Accepts NumPy arrays and nested sequences of real numbers. Booleans, complex numbers,
    strings and objects are refused with ``TypeError``; a wrong rank or NaN/inf (when
    ``finite``) with ``ValueError``.
    """
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be an array of real numbers, got {describe(value)}.")
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged nested lists and the like
        raise TypeError(f"{name} must be an array of real numbers, got {describe(value)}.") from exc
    if arr.dtype.kind not in "iuf":
        raise TypeError(
            f"{name} must be an array of real numbers, got dtype {arr.dtype} "
            f"({type(value).__name__})."
        )
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            want = " or ".join(str(d) for d in allowed)
            raise ValueError(
                f"{name} must be a {want}-D array, got {arr.ndim}-D with shape {arr.shape}."
            )
    arr = arr.astype(dtype, copy=False)
    # max and min propagate NaN and expose ±inf: two fast reductions, no boolean temporary.
    if finite and arr.size and not (np.isfinite(arr.max()) and np.isfinite(arr.min())):
        raise ValueError(f"{name} must contain only finite values, got NaN or inf.")
    return arr


def as_positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """Return ``value`` as a Python int ``>= minimum`` (booleans refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {describe(value)}.")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {int(value)}.")
    return int(value)


def as_pair(name: str, value: Any, *, minimum: int = 1) -> tuple[int, int]:
    """Return an int or a pair of ints as ``(rows, cols)``, each ``>= minimum``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}.")
        return (
            as_positive_int(name, value[0], minimum=minimum),
            as_positive_int(name, value[1], minimum=minimum),
        )
    v = as_positive_int(name, value, minimum=minimum)
    return v, v


# ---------------------------------------------------------------------------- bounds
# Sizes beyond these are refused with a ValueError before anything is allocated. They admit
# every torchvision classifier (VGG-16: 138.4 M parameters, 1.03 GiB in float64, one
# Linear(25088, 4096) of 102.8 M weights; DenseNet-121: 433 nodes) with room to spare, and
# stop a hostile file or a typo from asking for terabytes. Readers take a ``max_bytes`` (and
# the like) to lower them.

#: Parameters of one model.
MAX_MODEL_PARAMETERS = 2 * 10**9
#: Parameters of one layer.
MAX_LAYER_PARAMETERS = 10**9
#: Side of a convolution or pooling kernel.
MAX_KERNEL_SIZE = 64
#: Channels (or features) of one layer.
MAX_CHANNELS = 65536
#: Nesting levels of an architecture description.
MAX_NESTING = 64
#: Nodes (leaf layers) of one model.
MAX_NODES = 10**5
