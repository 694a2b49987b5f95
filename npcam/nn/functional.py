r"""Forward and backward passes as pure functions, each backward derived by hand.

Every operation comes as a pair::

    out, cache = op_forward(x, ...)      # cache: a NamedTuple of what backward needs
    dx, ...    = op_backward(dout, cache)

where ``dout = ∂L/∂out`` for some scalar L (in npcam, usually the class score y^c) and
the backward returns ``∂L/∂x`` (and the parameter gradients). Arrays are NCHW, weights in
PyTorch's layout: conv ``(C_out, C_in/groups, kH, kW)``, linear ``(out, in)``. Everything is
float64; inputs are validated by the layers and models that call these functions, so
these stay the bare equations.

Conventions at the kinks (where the derivative does not exist, an implementation must
choose; these are PyTorch's choices):

* ReLU'(0) = 0, i.e. ``dx = dy·[x > 0]``.
* Max-pool ties: the whole gradient goes to the first maximum of the window in row-major
  order, as PyTorch's CPU kernel does.
* Max-pool padding is −inf and never wins: torch allows ``padding ≤ kernel // 2``, so every
  window (the ceil-mode overhang included) holds at least one real input, and no gradient
  ever reaches a padded cell.
* Average pooling divides by ``kH·kW`` when ``count_include_pad`` (padding counted as
  zeros, the ceil-mode overhang not counted), else by the number of real inputs in the
  window; its gradient ``dout / divisor`` goes to every real input of the window.
* Adaptive average pooling: window i of ``out`` along an axis of length ``n`` is
  ``[floor(i·n/out), ceil((i+1)·n/out))``, as torch; windows overlap when ``out`` does not
  divide ``n`` and repeat inputs when ``out > n``.

Pooling and convolution windows are counted by :func:`pool_output_size`:
``floor((n + 2p − k)/s) + 1`` (``ceil`` in ceil mode, minus one when the last window would
start at or beyond ``n + p``, i.e. in the right padding only).

Padding (convolution and pooling) is ``(p_h, p_w)``, the same on both sides of each axis,
or ``(left, right, top, bottom)`` — the order of ``torch.nn.functional.pad`` — each side
its own (ONNX's ``pads = [top, left, bottom, right]``). Along an axis padded by ``b``
before and ``a`` after, the window count is ``floor((n + b + a − k)/s) + 1`` and the
operation is exactly an explicit pad (zeros; −inf for the max) followed by the unpadded
operation, its input gradient the padded one with the padding cut off.

The activations of modern CNNs (ReLU6, Hardsigmoid, Hardswish, Sigmoid, SiLU, GELU) and
layer normalisation follow the same contract (:func:`layer_norm_backward` also returns the
affine parameters' gradients); their kinks, measured on torch 2.14.1 in float64:

* ReLU6'(0) = ReLU6'(6) = 0: the derivative is 1 on the *open* interval (0, 6) only
  (torch computes ReLU6 as ``hardtanh(x, 0, 6)``, whose backward is 0 at both ends).
* Hardsigmoid'(−3) = Hardsigmoid'(3) = 0: 1/6 on the open interval (−3, 3) only.
* Hardswish'(−3) = 0 and Hardswish'(3) = 1: the values of the *outer* pieces, not the
  inner formula's (2x + 3)/6 (which would give −1/2 and 3/2: Hardswish' jumps at ±3).
  These are exactly the product rule ``Hardswish' = Hardsigmoid + x·Hardsigmoid'`` taken
  with Hardsigmoid's convention at ±3.

Sigmoid, SiLU and GELU are smooth, so they have no kink; they are computed so that no
finite input overflows or loses its relative precision in the tails (σ through
``scipy.special.expit``, Φ through ``erfc``), which is at least as accurate as torch.

The one measured difference from torch: torch's float64 Hardsigmoid backward multiplies by
the float32 constant ``float32(1/6) = 0.16666667163372040`` (relative error 3.0e-8);
npcam uses 1/6 itself.

scipy is imported when a function that needs it is first called, so that importing this
module stays light.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "adaptive_avg_pool2d_backward",
    "adaptive_avg_pool2d_forward",
    "adaptive_pool_matrix",
    "AdaptiveAvgPool2dCache",
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "AvgPool2dCache",
    "batch_norm2d_backward",
    "batch_norm2d_forward",
    "BatchNormCache",
    "conv2d_backward",
    "conv2d_forward",
    "Conv2dCache",
    "conv_output_size",
    "dropout_backward",
    "dropout_forward",
    "flatten_backward",
    "flatten_forward",
    "gelu_backward",
    "gelu_forward",
    "GELUCache",
    "global_avg_pool2d_backward",
    "global_avg_pool2d_forward",
    "hardsigmoid_backward",
    "hardsigmoid_forward",
    "HardsigmoidCache",
    "hardswish_backward",
    "hardswish_forward",
    "HardswishCache",
    "layer_norm_backward",
    "layer_norm_forward",
    "LayerNormCache",
    "linear_backward",
    "linear_forward",
    "LinearCache",
    "log_softmax",
    "log_softmax_backward",
    "log_softmax_forward",
    "max_pool2d_backward",
    "max_pool2d_forward",
    "MaxPool2dCache",
    "normalized_size",
    "pool_output_size",
    "relu6_backward",
    "relu6_forward",
    "ReLU6Cache",
    "relu_backward",
    "relu_forward",
    "RELU_RULES",
    "ReLUCache",
    "sigmoid",
    "sigmoid_backward",
    "sigmoid_forward",
    "SigmoidCache",
    "silu_backward",
    "silu_forward",
    "SiLUCache",
    "softmax",
    "softmax_backward",
    "softmax_cross_entropy",
    "softmax_forward",
    "SoftmaxCache",
]

# --------------------------------------------------------------------------- convolution
#: A padding: ``(p_h, p_w)`` (both sides of each axis alike) or ``(left, right, top,
#: bottom)`` (torch ``F.pad``'s order).
Padding = tuple[int, ...]


def _sides(padding: Padding) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` of a padding ``(p_h, p_w)`` or ``(left, right, top, bottom)``."""
    if len(padding) == 4:
        left, right, top, bottom = padding
        return top, bottom, left, right
    ph, pw = padding
    return ph, ph, pw, pw


class Conv2dCache(NamedTuple):
    x: np.ndarray  # the unpadded input: padding again for dW costs less memory than keeping it
    weight: np.ndarray
    stride: tuple[int, int]
    padding: Padding
    has_bias: bool
    groups: int = 1


def conv_output_size(
    size: int, kernel: int, stride: int, padding: int, padding_end: int | None = None
) -> int:
    """Output length of a convolution or pooling window along one axis:
    ``floor((size + 2·padding − kernel) / stride) + 1``, or with ``padding_end`` (padding
    before and after differing) ``floor((size + padding + padding_end − kernel) / stride) + 1``
    (0 or less: the window does not fit).
    """
    end = padding if padding_end is None else padding_end
    return (size + padding + end - kernel) // stride + 1


def pool_output_size(
    size: int, kernel: int, stride: int, padding: int, ceil_mode: bool = False, padding_end: int | None = None
) -> int:
    """Output length of a pooling window along one axis, torch's rule.

    ``floor((n + 2p − k)/s) + 1``; in ceil mode ``ceil((n + 2p − k)/s) + 1``, minus one
    if that last window would start at or beyond ``n + p`` (in the right padding only):
    e.g. (n, k, s, p) = (5, 2, 2, 1) gives ``ceil(5/2) + 1 = 4``, but window 3 would start
    at 6 = n + p, so 3. 0 or less: the window does not fit. With ``padding_end`` the axis
    is padded by ``padding`` before and ``padding_end`` after, ``2p`` becoming their sum
    (the layers refuse ceil mode with such a padding).
    """
    end = padding if padding_end is None else padding_end
    span = size + padding + end - kernel
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _pad(x: np.ndarray, padding: Padding) -> np.ndarray:
    """x zero-padded on its last two axes (no copy without padding)."""
    top, bottom, left, right = _sides(padding)
    if top == bottom == left == right == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))


def _windows(xp: np.ndarray, kh: int, kw: int, sh: int, sw: int) -> np.ndarray:
    """The input window of every output pixel: a view (N, C, H_out, W_out, kH, kW)."""
    return sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]


def conv2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: tuple[int, int] = (1, 1),
    padding: Padding = (0, 0),
    groups: int = 1,
) -> tuple[np.ndarray, Conv2dCache]:
    r"""2-D cross-correlation (what deep learning calls convolution), optionally grouped.

    x (N, C, H, W), W (F, C/G, kH, kW), b (F,), with G = ``groups`` dividing C and F.
    With the input zero-padded by ``padding`` — ``(p_h, p_w)`` on both sides, or
    ``(left, right, top, bottom)`` each side its own, so that ``x_pad`` is
    (N, C, H + top + bottom, W + left + right) — and stride ``s``, output channel f of group
    ``g = f // (F/G)`` reads only the input channels of its group,
    ``c = g·(C/G) + c'``::

        out[n, f, h, w] = b[f] + Σ_{c',i,j} W[f, c', i, j] · x_pad[n, g·(C/G) + c', s_h·h + i, s_w·w + j]

    G = 1 is the ordinary convolution (every output reads every input channel);
    G = C = F is *depthwise* convolution (one kH×kW filter per channel). The output is
    (N, F, floor((H + top + bottom − kH)/s_h) + 1, floor((W + left + right − kW)/s_w) + 1).

    Written as it reads: the windows ``x_pad[n, c, s_h·h + i, s_w·w + j]`` are a strided
    view (no copy) of shape (N, C, H_out, W_out, kH, kW), contracted with W over
    (c', i, j) — one ``einsum`` per group. Layers use the fast engine of
    :mod:`npcam.nn._conv`, tested equal to this.
    """
    f, cg, kh, kw = weight.shape
    fg = f // groups
    windows = _windows(_pad(x, padding), kh, kw, *stride)
    out = np.empty((x.shape[0], f, *windows.shape[2:4]), dtype=np.result_type(x, weight))
    for g in range(groups):  # the readable reference may loop over groups; _conv does not
        ins, outs = slice(g * cg, (g + 1) * cg), slice(g * fg, (g + 1) * fg)
        out[:, outs] = np.einsum("nchwij,fcij->nfhw", windows[:, ins], weight[outs], optimize=True)
    if bias is not None:
        out += bias[None, :, None, None]
    return out, Conv2dCache(x, weight, stride, padding, bias is not None, groups)


def conv2d_backward(
    dout: np.ndarray, cache: Conv2dCache, param_grads: bool = True
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    r"""Gradients of a convolution: ``(dx, dW, db)``; dW and db are None unless
    ``param_grads``. dout (N, F, H_out, W_out).

    From the forward equation, each weight meets every output pixel and each input pixel
    meets every output of its group whose window covers it (c = g·(C/G) + c', f in group g)::

        ∂L/∂b[f]           = Σ_{n,h,w} dout[n, f, h, w]
        ∂L/∂W[f, c', i, j] = Σ_{n,h,w} dout[n, f, h, w] · x_pad[n, c, s_h·h + i, s_w·w + j]
        ∂L/∂x_pad[n,c,r,q] = Σ_{f in g, i,j : s_h·h+i = r, s_w·w+j = q} dout[n, f, h, w] · W[f, c', i, j]

    The input gradient is the *transposed convolution*: for each kernel offset (i, j),
    ``Σ_f dout[n, f, h, w] · W[f, c', i, j]`` (f over the group) is added onto the strided
    slice ``x_pad[:, c, i + s_h·h, j + s_w·w]`` it was read from — a loop over the groups
    and the kH·kW offsets, each a whole-array operation. Then the padding is cut off.
    Input rows that no window reached (when ``H + 2p − k`` is not a multiple of ``s``)
    keep a zero gradient.
    """
    x, weight, groups = cache.x, cache.weight, cache.groups
    n, c, h, w = x.shape
    f, cg, kh, kw = weight.shape
    fg = f // groups
    sh, sw = cache.stride
    top, bottom, left, right = _sides(cache.padding)
    h_out, w_out = dout.shape[2:]
    dxp = np.zeros((n, c, h + top + bottom, w + left + right), dtype=np.result_type(weight, dout))
    for g in range(groups):
        ins, outs = slice(g * cg, (g + 1) * cg), slice(g * fg, (g + 1) * fg)
        for i in range(kh):
            for j in range(kw):
                rows = slice(i, i + sh * (h_out - 1) + 1, sh)
                cols = slice(j, j + sw * (w_out - 1) + 1, sw)
                dxp[:, ins, rows, cols] += np.einsum(
                    "nfhw,fc->nchw", dout[:, outs], weight[outs, :, i, j], optimize=True)
    dx = dxp[:, :, top : top + h, left : left + w]
    if not param_grads:
        return np.ascontiguousarray(dx), None, None
    windows = _windows(_pad(x, cache.padding), kh, kw, sh, sw)
    dw = np.empty(weight.shape, dtype=np.result_type(weight, dout, x))
    for g in range(groups):
        ins, outs = slice(g * cg, (g + 1) * cg), slice(g * fg, (g + 1) * fg)
        dw[outs] = np.einsum("nfhw,nchwij->fcij", dout[:, outs], windows[:, ins], optimize=True)
    db = dout.sum(axis=(0, 2, 3)) if cache.has_bias else None
    return np.ascontiguousarray(dx), dw, db


# --------------------------------------------------------------------------------- ReLU
RELU_RULES = ("standard", "guided", "deconvnet")


class ReLUCache(NamedTuple):
    # The output itself: [out > 0] = [x > 0] is all that any of the three rules needs of
    # x, and the output is kept anyway (it is the next layer's input), so this costs no memory.
    out: np.ndarray


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, ReLUCache]:
    r"""``out = max(x, 0)``."""
    out = np.maximum(x, 0.0)
    return out, ReLUCache(out)


def relu_backward(dout: np.ndarray, cache: ReLUCache, relu_rule: str = "standard") -> np.ndarray:
    r"""The signal a ReLU passes back, under one of three rules (Springenberg et al. 2014):

    * ``"standard"`` — the true derivative: ``dx = dout · [x > 0]`` (ReLU'(0) = 0);
    * ``"deconvnet"`` — Zeiler & Fergus: ``dx = dout · [dout > 0]``, i.e. ReLU applied to
      the backward signal, ignoring x;
    * ``"guided"`` — guided backpropagation: ``dx = dout · [x > 0] · [dout > 0]``, both
      masks at once.
    """
    if relu_rule == "standard":
        return np.where(cache.out > 0, dout, 0.0)
    if relu_rule == "guided":
        return np.where((cache.out > 0) & (dout > 0), dout, 0.0)
    if relu_rule == "deconvnet":
        return np.where(dout > 0, dout, 0.0)
    raise ValueError(f"relu_rule must be one of {RELU_RULES}, got {relu_rule!r}.")


# ----------------------------------------------------------------------------- max-pool
class MaxPool2dCache(NamedTuple):
    """What the backward pass needs: the input and the output (both references to arrays
    the trace holds anyway) and the window geometry. The winners' positions are found only
    when asked for (:attr:`argmax`, by the backward pass): a forward-only pass — the
    hundreds of masked inputs of Score-CAM or Ablation-CAM — never pays for them."""

    x: np.ndarray
    out: np.ndarray
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: Padding
    ceil_mode: bool

    @property
    def x_shape(self) -> tuple[int, ...]:
        return self.x.shape

    @property
    def argmax(self) -> np.ndarray:
        """Per output, the flat index (row·W + col) into the unpadded input plane of its
        window's first maximum in row-major order (``argmax``'s rule, and PyTorch's):
        the first kernel offset (i, j), in row-major order, whose input equals the
        output — exact, since the output *is* one of the window's inputs."""
        x, out = self.x, self.out
        w = x.shape[3]
        (kh, kw), (sh, sw) = self.kernel, self.stride
        top, _, left, _ = _sides(self.padding)
        xp, h_out, w_out = _pool_pad(x, self.kernel, self.stride, self.padding, self.ceil_mode, -np.inf)
        rows_end, cols_end = sh * (h_out - 1) + 1, sw * (w_out - 1) + 1
        k = np.full(out.shape, kh * kw, dtype=np.intp)  # kh·kw: not found yet
        for i in reversed(range(kh)):  # the last match written is the first in row-major order
            for j in reversed(range(kw)):
                hit = xp[:, :, i : i + rows_end : sh, j : j + cols_end : sw] == out
                np.copyto(k, i * kw + j, where=hit)
        # Window-local index k = i·kW + j  ->  flat index in the unpadded input plane.
        rows = np.arange(h_out)[:, None] * sh + k // kw - top
        cols = np.arange(w_out)[None, :] * sw + k % kw - left
        return rows * w + cols


def _pool_pad(
    x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], padding: Padding,
    ceil_mode: bool, value: float,
) -> tuple[np.ndarray, int, int]:
    """x padded by ``padding`` with ``value``, plus the ceil-mode overhang at the bottom
    and right, so that all ``pool_output_size`` windows fit; and that size."""
    h, w = x.shape[2:]
    (kh, kw), (sh, sw) = kernel, stride
    top, bottom, left, right = _sides(padding)
    h_out = pool_output_size(h, kh, sh, top, ceil_mode, bottom)
    w_out = pool_output_size(w, kw, sw, left, ceil_mode, right)
    bottom = max(bottom, (h_out - 1) * sh + kh - h - top)
    right = max(right, (w_out - 1) * sw + kw - w - left)
    if top == left == bottom == right == 0:
        return x, h_out, w_out
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value), h_out, w_out


def max_pool2d_forward(
    x: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: Padding = (0, 0),
    ceil_mode: bool = False,
) -> tuple[np.ndarray, MaxPool2dCache]:
    r"""``out[n, c, h, w] = max_{i,j} x_pad[n, c, s_h·h + i, s_w·w + j]`` over a kH×kW window.

    ``x_pad`` is x padded with −inf by ``padding`` — ``(p_h, p_w)`` on both sides or
    ``(left, right, top, bottom)`` — (and, in ceil mode, on the bottom and right up to the
    last window; output size :func:`pool_output_size`, ``floor((H + top + bottom − kH)/s_h)
    + 1`` rows). With every side ``≤ kernel // 2`` of its axis (torch's condition, checked
    by the layer) every window holds a real input, so the maximum is always a real input
    and padding never wins.

    The backward pass needs the position of each maximum; the cache finds it from x and
    the output when asked (:attr:`MaxPool2dCache.argmax`). On ties it is the first maximum
    of the window in row-major order (``argmax``'s rule, and PyTorch's).
    """
    kh, kw = kernel
    sh, sw = stride
    xp, h_out, w_out = _pool_pad(x, kernel, stride, padding, ceil_mode, -np.inf)
    # One strided slice of x_pad per kernel offset (i, j): the slice holds element (i, j)
    # of every window, so kH·kW vectorised maxima give the output. (A window view
    # reshaped to (..., kH·kW) copies the input kH·kW/(s_h·s_w) times over, and argmax
    # over a short last axis is slow: 5× the time on the zoo's 2×2 pools.)
    rows_end, cols_end = sh * (h_out - 1) + 1, sw * (w_out - 1) + 1
    out = xp[:, :, 0:rows_end:sh, 0:cols_end:sw].copy()
    for i in range(kh):
        for j in range(kw):
            if i or j:
                np.maximum(out, xp[:, :, i : i + rows_end : sh, j : j + cols_end : sw], out=out)
    return out, MaxPool2dCache(x, out, (kh, kw), (sh, sw), padding, bool(ceil_mode))


def max_pool2d_backward(dout: np.ndarray, cache: MaxPool2dCache) -> np.ndarray:
    r"""``∂L/∂x[n, c, r, q] = Σ_{h,w : argmax(h, w) = (r, q)} dout[n, c, h, w]``.

    The max is locally the identity on the winning input and constant in the others, so
    each output's gradient goes to its argmax (always a real input, never padding); with
    overlapping windows one input may win several windows and the contributions add
    (``bincount`` sums them).
    """
    n, c, h, w = cache.x_shape
    plane = np.arange(n * c).reshape(n, c, 1, 1) * (h * w)
    dx = np.bincount((plane + cache.argmax).ravel(), weights=dout.ravel(), minlength=n * c * h * w)
    return dx.reshape(n, c, h, w)


# ------------------------------------------------------------------------ average pooling
class AvgPool2dCache(NamedTuple):
    x_shape: tuple[int, ...]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: Padding
    divisor: np.ndarray  # (H_out, W_out): what each output's window sum was divided by


def _avg_divisor(
    size: int, out: int, kernel: int, stride: int, before: int, after: int, include_pad: bool
) -> np.ndarray:
    """Per output position along one axis: the cells of its window inside ``[−b, n + a)``
    (count_include_pad; padding ``b`` before, ``a`` after) or inside the input ``[0, n)``
    — torch's rule; the ceil-mode overhang beyond ``n + a`` never counts."""
    start = np.arange(out) * stride - before
    end = np.minimum(start + kernel, size + after)
    if not include_pad:
        start, end = np.maximum(start, 0), np.minimum(end, size)
    return (end - start).astype(np.float64)


def avg_pool2d_forward(
    x: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: Padding = (0, 0),
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> tuple[np.ndarray, AvgPool2dCache]:
    r"""``out[n, c, h, w] = (1/d[h, w]) Σ_{i,j} x_pad[n, c, s_h·h + i, s_w·w + j]``.

    ``x_pad`` is x zero-padded by ``padding`` — ``(p_h, p_w)`` on both sides or ``(left,
    right, top, bottom)`` — (plus the ceil-mode overhang, output size
    :func:`pool_output_size`). The divisor is torch's, ``d[h, w] = d_h[h]·d_w[w]`` with
    ``d_h[h]`` the number of window rows inside ``[−top, H + bottom)`` when
    ``count_include_pad`` (``k_h`` except at a ceil-mode overhang) and inside the real
    rows ``[0, H)`` otherwise. So with padding 1 the corner of an all-ones map pools to
    4/9 (counted) or 1 (not counted).
    """
    n, c = x.shape[:2]
    kh, kw = kernel
    sh, sw = stride
    xp, h_out, w_out = _pool_pad(x, kernel, stride, padding, ceil_mode, 0.0)
    out = np.zeros((n, c, h_out, w_out), dtype=np.result_type(x, np.float64))
    for i in range(kh):  # the kH·kW window offsets, each a whole-array addition
        for j in range(kw):
            out += xp[:, :, i : i + sh * (h_out - 1) + 1 : sh, j : j + sw * (w_out - 1) + 1 : sw]
    h, w = x.shape[2:]
    top, bottom, left, right = _sides(padding)
    divisor = np.outer(_avg_divisor(h, h_out, kh, sh, top, bottom, count_include_pad),
                       _avg_divisor(w, w_out, kw, sw, left, right, count_include_pad))
    out /= divisor
    return out, AvgPool2dCache(x.shape, kernel, stride, padding, divisor)


def avg_pool2d_backward(dout: np.ndarray, cache: AvgPool2dCache) -> np.ndarray:
    r"""``∂L/∂x[n, c, r, q] = Σ_{h,w : (r, q) in window (h, w)} dout[n, c, h, w] / d[h, w]``.

    Each output is a fixed linear combination of its window, so ``g = dout / d`` is added
    onto every cell of the window — kH·kW strided additions into the padded plane, then
    the padding (and any ceil-mode overhang) is cut off: padded cells get nothing.
    """
    n, c, h, w = cache.x_shape
    (kh, kw), (sh, sw) = cache.kernel, cache.stride
    top, bottom, left, right = _sides(cache.padding)
    h_out, w_out = dout.shape[2:]
    g = dout / cache.divisor
    dxp = np.zeros((n, c, max(h + top + bottom, (h_out - 1) * sh + kh),
                    max(w + left + right, (w_out - 1) * sw + kw)), dtype=g.dtype)
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i : i + sh * (h_out - 1) + 1 : sh, j : j + sw * (w_out - 1) + 1 : sw] += g
    return np.ascontiguousarray(dxp[:, :, top : top + h, left : left + w])


# --------------------------------------------------------------- adaptive average pooling
class AdaptiveAvgPool2dCache(NamedTuple):
    x_shape: tuple[int, ...]
    rows: np.ndarray  # P_h, (H_out, H)
    cols: np.ndarray  # P_w, (W_out, W)


def adaptive_pool_matrix(size: int, out: int) -> np.ndarray:
    r"""The (out, size) averaging matrix of adaptive average pooling along one axis.

    Row i averages the window ``[floor(i·n/out), ceil((i+1)·n/out))`` (n = ``size``):
    ``P[i, r] = 1/len(window i)`` for r in the window, 0 elsewhere. E.g. 5 → 3: windows
    (0, 2), (1, 4), (3, 5) — overlapping; 2 → 7: windows of one input each, repeated.
    """
    i = np.arange(out)
    start = (i * size) // out
    end = -((-(i + 1) * size) // out)  # ceil((i + 1)·n/out) in integers
    r = np.arange(size)
    inside = (r[None, :] >= start[:, None]) & (r[None, :] < end[:, None])
    return inside / (end - start)[:, None].astype(np.float64)


def _separable(x: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``rows · x · colsᵀ`` for every (n, c) plane: (N, C, H, W) -> (N, C, A, B) with rows
    (A, H) and cols (B, W), as two matrix products over the whole batch."""
    n, c, h, w = x.shape
    a, b = rows.shape[0], cols.shape[0]
    t = np.ascontiguousarray(x).reshape(n * c * h, w) @ cols.T  # (N·C·H, B)
    t = t.reshape(n * c, h, b).transpose(0, 2, 1).reshape(n * c * b, h) @ rows.T  # (N·C·B, A)
    return np.ascontiguousarray(t.reshape(n, c, b, a).transpose(0, 1, 3, 2))


def adaptive_avg_pool2d_forward(
    x: np.ndarray, output_size: tuple[int, int]
) -> tuple[np.ndarray, AdaptiveAvgPool2dCache]:
    r"""Adaptive average pooling to ``output_size`` (oh, ow): (N, C, H, W) -> (N, C, oh, ow).

    ``out[n, c, i, j]`` is the mean of x over rows ``[floor(i·H/oh), ceil((i+1)·H/oh))``
    and columns ``[floor(j·W/ow), ceil((j+1)·W/ow))`` (torch's windows). Window sizes are
    products of one size per axis, so the operator is separable::

        out[n, c] = P_h · x[n, c] · P_wᵀ

    with ``P`` the (out, in) averaging matrix of :func:`adaptive_pool_matrix`.
    """
    n, c, h, w = x.shape
    rows, cols = adaptive_pool_matrix(h, output_size[0]), adaptive_pool_matrix(w, output_size[1])
    return _separable(x, rows, cols), AdaptiveAvgPool2dCache(x.shape, rows, cols)


def adaptive_avg_pool2d_backward(dout: np.ndarray, cache: AdaptiveAvgPool2dCache) -> np.ndarray:
    r"""``∂L/∂x[n, c] = P_hᵀ · dout[n, c] · P_w`` — the transpose of the forward's linear map:
    each input receives ``dout/area`` from every window that contains it (several when
    windows overlap or repeat)."""
    return _separable(dout, cache.rows.T, cache.cols.T)


# ---------------------------------------------------------------- global average pooling
def global_avg_pool2d_forward(x: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    r"""``F^k = (1/Z) Σ_{i,j} A^k_{ij}`` with ``Z = h·w``; output (N, K)."""
    return x.mean(axis=(2, 3)), x.shape


def global_avg_pool2d_backward(dout: np.ndarray, x_shape: tuple[int, ...]) -> np.ndarray:
    r"""``∂L/∂A^k_{ij} = (1/Z) · ∂L/∂F^k`` for every (i, j): the same value everywhere."""
    n, k, h, w = x_shape
    return np.broadcast_to((dout / (h * w))[:, :, None, None], x_shape).copy()


# ------------------------------------------------------------------------------ flatten
def flatten_forward(x: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """(N, d1, d2, ...) -> (N, d1·d2·...) in C order; the identity on an (N, K) array."""
    return x.reshape(x.shape[0], -1), x.shape


def flatten_backward(dout: np.ndarray, x_shape: tuple[int, ...]) -> np.ndarray:
    """A reshape has the reshape back as its gradient."""
    return dout.reshape(x_shape)


# ------------------------------------------------------------------------------- linear
class LinearCache(NamedTuple):
    x: np.ndarray
    weight: np.ndarray
    has_bias: bool


def linear_forward(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None
) -> tuple[np.ndarray, LinearCache]:
    r"""``y = x Wᵀ + b`` on the last axis: x (..., in), W (out, in), b (out,) -> y (..., out).

    Every leading index (the batch, and e.g. the positions of an (N, H, W, C) map) is one
    independent row ``y[..., o] = Σ_i x[..., i] W[o, i] + b[o]``.
    """
    # One matrix product over all rows (a stack of small products is much slower).
    y = (x.reshape(-1, x.shape[-1]) @ weight.T).reshape(*x.shape[:-1], weight.shape[0])
    if bias is not None:
        y += bias
    return y, LinearCache(x, weight, bias is not None)


def linear_backward(
    dout: np.ndarray, cache: LinearCache, param_grads: bool = True
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    r"""``∂L/∂x = dout · W``, ``∂L/∂W = Σ_rows doutᵀ · x``, ``∂L/∂b = Σ_rows dout``.

    The rows are all leading indices (the batch for a 2-D input): the same W and b act on
    each, so their gradients sum over all of them.
    """
    d2 = dout.reshape(-1, dout.shape[-1])
    dx = (d2 @ cache.weight).reshape(cache.x.shape)
    if not param_grads:
        return dx, None, None
    db = d2.sum(axis=0) if cache.has_bias else None
    return dx, d2.T @ cache.x.reshape(-1, cache.x.shape[-1]), db


# ------------------------------------------------------------------------------ dropout
def dropout_forward(x: np.ndarray) -> tuple[np.ndarray, None]:
    """Dropout at inference is the identity (PyTorch's inverted dropout scales during
    training, so nothing is scaled at inference). npcam explains trained models and
    trains without dropout, so there is no training-time branch."""
    return x, None


def dropout_backward(dout: np.ndarray, cache: None = None) -> np.ndarray:
    """The identity's gradient is the identity."""
    return dout


# -------------------------------------------------------------------------- batch norm
class BatchNormCache(NamedTuple):
    x_hat: np.ndarray | None  # (x − μ) / σ per channel (training mode; None in eval mode)
    inv_std: np.ndarray  # 1/σ = 1/sqrt(var + eps), (C,)
    gamma: np.ndarray
    training: bool
    mean: np.ndarray  # the μ and (biased) σ² used: the batch's in training mode, so the
    var: np.ndarray  # layer updates its running statistics without computing them again
    x: np.ndarray | None = None  # eval mode: the input (x̂ is recomputed only for dγ)


def batch_norm2d_forward(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    eps: float,
    training: bool,
) -> tuple[np.ndarray, BatchNormCache]:
    r"""``y = γ · (x − μ) / sqrt(σ² + ε) + β`` per channel.

    In training mode μ and σ² are the batch's own statistics over (N, H, W) (σ² biased, as
    PyTorch normalises with); in eval mode they are the given running ``mean``/``var``,
    and y is the affine map ``y = a·x + c`` with ``a = γ/σ``, ``c = β − μ·a`` per channel
    (two passes over x; the form torch's CPU kernel computes). Updating the running
    statistics is the layer's job, not this function's.
    """
    c = (None, slice(None), None, None)
    if not training:
        inv_std = 1.0 / np.sqrt(var + eps)
        a = gamma * inv_std
        y = np.multiply(x, a[c])
        y += (beta - mean * a)[c]
        return y, BatchNormCache(None, inv_std, gamma, False, mean, var, x)
    mean = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3))
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - mean[c]) * inv_std[c]
    y = x_hat * gamma[c] + beta[c]
    return y, BatchNormCache(x_hat, inv_std, gamma, True, mean, var)


def batch_norm2d_backward(
    dout: np.ndarray, cache: BatchNormCache, param_grads: bool = True
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    r"""Gradients ``(dx, dγ, dβ)`` of batch normalisation.

    ``∂L/∂β = Σ dout`` and ``∂L/∂γ = Σ dout · x̂`` (sums over N, H, W). With
    ``g = dout · γ`` the gradient w.r.t. x̂:

    * eval mode: μ, σ are constants, so ``dx = g / σ``;
    * training mode: μ and σ depend on every x of the channel. With M = N·H·W,
      ``∂μ/∂x = 1/M`` and ``∂σ²/∂x = 2(x − μ)/M``; collecting the three paths gives the
      classic result::

          dx = (1/σ) · (g − mean(g) − x̂ · mean(g · x̂))

      (means over N, H, W per channel).
    """
    c = (None, slice(None), None, None)
    if cache.training:
        assert cache.x_hat is not None
        x_hat = cache.x_hat
        g = dout * cache.gamma[c]
        g_mean = g.mean(axis=(0, 2, 3))
        gx_mean = (g * x_hat).mean(axis=(0, 2, 3))
        dx = (g - g_mean[c] - x_hat * gx_mean[c]) * cache.inv_std[c]
    else:
        assert cache.x is not None
        dx = np.multiply(dout, (cache.gamma * cache.inv_std)[c])
        if not param_grads:
            return dx, None, None
        x_hat = (cache.x - cache.mean[c]) * cache.inv_std[c]
    if not param_grads:
        return dx, None, None
    return dx, (dout * x_hat).sum(axis=(0, 2, 3)), dout.sum(axis=(0, 2, 3))


# ---------------------------------------------------------------- softmax and the loss
def log_softmax(logits: np.ndarray) -> np.ndarray:
    r"""``log p_c = y_c − log Σ_j exp(y_j)``, along the last axis.

    Shifted by the max m so that exp cannot overflow: ``log Σ_j exp(y_j − m)`` is
    ``log(1 + r)`` with r the sum over the other entries, computed as ``log1p(r)`` so that
    a confident prediction (r ≪ 1) keeps full relative precision.
    """
    top = logits.argmax(axis=-1)[..., None]
    shifted = logits - np.take_along_axis(logits, top, axis=-1)
    e = np.exp(shifted)
    np.put_along_axis(e, top, 0.0, axis=-1)
    return shifted - np.log1p(e.sum(axis=-1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    r"""``p_c = exp(y_c) / Σ_j exp(y_j)`` along the last axis."""
    return np.exp(log_softmax(logits))


class SoftmaxCache(NamedTuple):
    log_p: np.ndarray  # log-probabilities: p and, accurately, 1 − p follow from them


def log_softmax_forward(logits: np.ndarray) -> tuple[np.ndarray, SoftmaxCache]:
    r"""``log p = log_softmax(logits)`` along the last axis, (N, K) -> (N, K)."""
    log_p = log_softmax(logits)
    return log_p, SoftmaxCache(log_p)


def log_softmax_backward(dout: np.ndarray, cache: SoftmaxCache) -> np.ndarray:
    r"""``∂L/∂y_j = dout_j − p_j Σ_k dout_k`` (since ``∂ log p_k/∂y_j = [j = k] − p_j``).

    Written as ``dout_j (1 − p_j) − p_j Σ_{k≠j} dout_k`` with ``1 − p_j`` computed as
    ``Σ_{i≠j} p_i`` (a sum of the other probabilities, before and after j), so nothing
    cancels when the model is confident: for the one-hot ``dout = e_c`` of a score, the
    c-th entry ``1 − p_c`` keeps full relative precision as ``p_c → 1``, where ``1 − p_c``
    computed from ``p_c`` would round to 0.
    """
    p = np.exp(cache.log_p)
    before = np.cumsum(p, axis=-1)
    after = np.cumsum(p[..., ::-1], axis=-1)[..., ::-1]
    others = np.zeros_like(p)  # Σ_{i<j} p_i + Σ_{i>j} p_i, no subtraction
    others[..., 1:] += before[..., :-1]
    others[..., :-1] += after[..., 1:]
    total = dout.sum(axis=-1, keepdims=True)
    return dout * others - p * (total - dout)


def softmax_forward(logits: np.ndarray) -> tuple[np.ndarray, SoftmaxCache]:
    r"""``p = softmax(logits)`` along the last axis, (N, K) -> (N, K)."""
    log_p = log_softmax(logits)
    return np.exp(log_p), SoftmaxCache(log_p)


def softmax_backward(dout: np.ndarray, cache: SoftmaxCache) -> np.ndarray:
    r"""``∂L/∂y_j = p_j (dout_j − Σ_k dout_k p_k)`` (since ``∂p_k/∂y_j = p_k([j = k] − p_j)``).

    That is the log-softmax backward of ``p ⊙ dout`` (``∂p/∂y = diag(p) ∂ log p/∂y``), which
    inherits its accuracy: for ``dout = e_c`` the c-th entry is ``p_c (1 − p_c)`` without
    cancellation.
    """
    return log_softmax_backward(np.exp(cache.log_p) * dout, cache)


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    r"""Mean cross-entropy of softmax(logits) against integer labels, and its gradient.

    ``L = −(1/N) Σ_n log p_{n, t_n}``; since ``∂ log p_t / ∂y_c = [c = t] − p_c``::

        ∂L/∂y_{n,c} = (p_{n,c} − [c = t_n]) / N
    """
    n = logits.shape[0]
    logp = log_softmax(logits)
    rows = np.arange(n)
    loss = -logp[rows, labels].mean()
    dlogits = np.exp(logp)
    dlogits[rows, labels] -= 1.0
    return float(loss), dlogits / n


# ============================================ activations of modern CNNs, layer norm
_SQRT1_2 = math.sqrt(0.5)  # 1/√2, torch's M_SQRT1_2
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)  # 1/√(2π), the normal density's constant
# For |x| >= 40, φ(x) = exp(−x²/2)/√(2π) < exp(−800) rounds to 0 in float64, so clipping x
# there changes no value of φ and keeps x² from overflowing for |x| > 1.3e154.
_PDF_CLIP = 40.0


def _special() -> Any:
    import scipy.special  # deferred: `import npcam` loads no scipy (DESIGN.md)

    return scipy.special


# -------------------------------------------------------------------------------- ReLU6
class ReLU6Cache(NamedTuple):
    # The input: it is the previous node's output, kept by the trace anyway.
    x: np.ndarray


def relu6_forward(x: np.ndarray) -> tuple[np.ndarray, ReLU6Cache]:
    r"""``out = min(max(x, 0), 6)``."""
    return np.minimum(np.maximum(x, 0.0), 6.0), ReLU6Cache(x)


def relu6_backward(dout: np.ndarray, cache: ReLU6Cache) -> np.ndarray:
    r"""``dx = dout · [0 < x < 6]``: ReLU6'(0) = ReLU6'(6) = 0 (torch's hardtanh rule)."""
    x = cache.x
    return np.where((x > 0.0) & (x < 6.0), dout, 0.0)


# -------------------------------------------------------------------------- Hardsigmoid
class HardsigmoidCache(NamedTuple):
    # x itself, not the output: for x = 3 − 2⁻⁵¹ (just below the kink) x + 3 rounds to 6,
    # so the output is 1 although x < 3 and the derivative there is 1/6.
    x: np.ndarray


def hardsigmoid_forward(x: np.ndarray) -> tuple[np.ndarray, HardsigmoidCache]:
    r"""``out = clip(x/6 + 1/2, 0, 1)``, computed as ``min(max(x + 3, 0), 6) / 6`` (torch's
    order of operations, so the values are bit-identical to torch's)."""
    return np.minimum(np.maximum(x + 3.0, 0.0), 6.0) / 6.0, HardsigmoidCache(x)


def hardsigmoid_backward(dout: np.ndarray, cache: HardsigmoidCache) -> np.ndarray:
    r"""``dx = dout / 6 · [−3 < x < 3]``: Hardsigmoid'(±3) = 0.

    torch (2.14.1, float64) multiplies by ``float32(1/6)`` instead of 1/6, a relative
    difference of 3.0e-8; npcam's value is the exact derivative.
    """
    x = cache.x
    return np.where((x > -3.0) & (x < 3.0), dout / 6.0, 0.0)


# ---------------------------------------------------------------------------- Hardswish
class HardswishCache(NamedTuple):
    x: np.ndarray


def hardswish_forward(x: np.ndarray) -> tuple[np.ndarray, HardswishCache]:
    r"""``out = x · clip(x/6 + 1/2, 0, 1) = x · ReLU6(x + 3) / 6``.

    On x < 3 computed as torch does, ``x · min(max(x + 3, 0), 6) / 6`` in that order
    (bit-identical); on x >= 3 the output is x itself, exactly, where torch's ``x·6/6``
    may round by one unit in the last place and overflows for x > 3.0e307.
    """
    xs = np.minimum(x, 3.0)  # the formula only where it is used: no overflow for huge x
    inner = xs * np.minimum(np.maximum(xs + 3.0, 0.0), 6.0) / 6.0
    return np.where(x < 3.0, inner, x), HardswishCache(x)


def hardswish_backward(dout: np.ndarray, cache: HardswishCache) -> np.ndarray:
    r"""``dx = dout · Hardswish'(x)`` with

    * ``Hardswish'(x) = 0`` for x <= −3 (Hardswish'(−3) = 0, torch's value),
    * ``Hardswish'(x) = (2x + 3)/6``, computed as ``x/3 + 1/2`` (torch's form), for
      −3 < x < 3,
    * ``Hardswish'(x) = 1`` for x >= 3 (Hardswish'(3) = 1, torch's value).
    """
    x = cache.x
    slope = np.where(x <= -3.0, 0.0, np.where(x < 3.0, x / 3.0 + 0.5, 1.0))
    return dout * slope


# ------------------------------------------------------------------------------ sigmoid
def sigmoid(x: np.ndarray) -> np.ndarray:
    r"""``σ(x) = 1 / (1 + exp(−x))``, without overflow for any finite x and to full relative
    precision in both tails (``scipy.special.expit``)."""
    return np.asarray(_special().expit(x), dtype=np.float64)


class SigmoidCache(NamedTuple):
    x: np.ndarray
    out: np.ndarray  # σ(x)


def sigmoid_forward(x: np.ndarray) -> tuple[np.ndarray, SigmoidCache]:
    r"""``out = σ(x) = 1 / (1 + exp(−x))`` (see :func:`sigmoid`)."""
    out = sigmoid(x)
    return out, SigmoidCache(x, out)


def sigmoid_backward(dout: np.ndarray, cache: SigmoidCache) -> np.ndarray:
    r"""``dx = dout · σ(x)(1 − σ(x))``.

    ``1 − σ(x)`` is computed as ``σ(−x)`` (equal in exact arithmetic): for large x the
    subtraction would cancel (to 0 beyond x ≈ 37) where ``σ(−x)`` keeps every digit.
    """
    return dout * cache.out * sigmoid(-cache.x)


# --------------------------------------------------------------------------------- SiLU
class SiLUCache(NamedTuple):
    x: np.ndarray
    sig: np.ndarray  # σ(x)


def silu_forward(x: np.ndarray) -> tuple[np.ndarray, SiLUCache]:
    r"""``out = x · σ(x)`` (SiLU, also called swish)."""
    sig = sigmoid(x)
    return x * sig, SiLUCache(x, sig)


def silu_backward(dout: np.ndarray, cache: SiLUCache) -> np.ndarray:
    r"""``dx = dout · σ(x)(1 + x(1 − σ(x)))`` (product rule: σ + x·σ(1 − σ)), with
    ``1 − σ(x)`` computed as ``σ(−x)``. SiLU'(0) = 1/2."""
    x = cache.x
    return dout * cache.sig * (1.0 + x * sigmoid(-x))


# --------------------------------------------------------------------------------- GELU
class GELUCache(NamedTuple):
    x: np.ndarray
    cdf: np.ndarray  # Φ(x)


def gelu_forward(x: np.ndarray) -> tuple[np.ndarray, GELUCache]:
    r"""``out = x · Φ(x)``, the exact GELU (torch's ``approximate="none"``), Φ the standard
    normal CDF.

    ``Φ(x) = (1 + erf(x/√2))/2`` is computed as ``erfc(−x/√2)/2`` (the same function):
    for x ≪ 0 the sum ``1 + erf`` cancels (to 0 below x ≈ −8.3) where ``erfc`` keeps full
    relative precision.
    """
    cdf = 0.5 * _special().erfc(-x * _SQRT1_2)
    return x * cdf, GELUCache(x, cdf)


def gelu_backward(dout: np.ndarray, cache: GELUCache) -> np.ndarray:
    r"""``dx = dout · (Φ(x) + x·φ(x))`` with ``φ(x) = exp(−x²/2)/√(2π)``. GELU'(0) = 1/2."""
    x = cache.x
    xc = np.clip(x, -_PDF_CLIP, _PDF_CLIP)
    pdf = np.exp(-0.5 * xc * xc) * _INV_SQRT_2PI
    return dout * (cache.cdf + x * pdf)


# --------------------------------------------------------------------------- LayerNorm
def normalized_size(normalized_shape: Any) -> int:
    """The size C of the one normalised (last) axis, from an int or a 1-element tuple or
    list (torch's ``normalized_shape``); longer shapes are refused with a ``ValueError``
    (npcam normalises over the last axis only)."""
    shape = normalized_shape
    if isinstance(shape, Sequence) and not isinstance(shape, (str, bytes)):
        if len(shape) != 1:
            raise ValueError(
                "normalized_shape must be an int or a 1-tuple (npcam's LayerNorm normalises "
                f"over the last axis only), got {tuple(shape)!r}."
            )
        shape = shape[0]
    if isinstance(shape, (bool, np.bool_)) or not isinstance(shape, (int, np.integer)):
        raise TypeError(
            f"normalized_shape must be an int or a 1-tuple of an int, got {normalized_shape!r}."
        )
    if shape < 1:
        raise ValueError(f"normalized_shape must be a positive int, got {int(shape)}.")
    return int(shape)


class LayerNormCache(NamedTuple):
    x_hat: np.ndarray  # (x − μ)/σ per position, the shape of x
    inv_std: np.ndarray  # 1/σ = 1/sqrt(var + eps), shape x.shape[:-1] + (1,)
    weight: np.ndarray | None  # γ (C,), or None (no affine scale)
    has_bias: bool


def layer_norm_forward(
    x: np.ndarray,
    normalized_shape: int | Sequence[int],
    weight: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    eps: float = 1e-5,
) -> tuple[np.ndarray, LayerNormCache]:
    r"""Layer normalisation over the last axis: ``y = γ · (x − μ)/sqrt(σ² + ε) + β``.

    The arguments are those of ``torch.nn.functional.layer_norm(x, [C], weight, bias, eps)``
    with ``normalized_shape`` C or ``[C]``, the size of the last axis of x (any rank >= 1).
    μ and σ² are the mean and the *biased* variance of the C values at each position
    (every index of the leading axes): per-sample statistics, in training and evaluation
    alike. ``weight`` γ and ``bias`` β have shape (C,); None leaves that part of the
    affine map out. The output is computed in torch's order, ``x̂ · γ + β`` with
    ``x̂ = (x − μ) · (1/σ)``.
    """
    c = normalized_size(normalized_shape)
    if x.ndim < 1 or x.shape[-1] != c:
        raise ValueError(
            f"x must have normalized_shape {(c,)} as its last axis, got shape {x.shape}."
        )
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and p.shape != (c,):
            raise ValueError(f"{name} must have shape {(c,)}, got {p.shape}.")
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = centred * inv_std
    y = x_hat * weight if weight is not None else x_hat.copy()
    if bias is not None:
        y += bias
    return y, LayerNormCache(x_hat, inv_std, weight, bias is not None)


def layer_norm_backward(
    dout: np.ndarray, cache: LayerNormCache, param_grads: bool = True
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    r"""Gradients ``(dx, dγ, dβ)`` of layer normalisation; dγ (dβ) is None unless
    ``param_grads`` and the forward had a weight (bias).

    ``∂L/∂β = Σ dout`` and ``∂L/∂γ = Σ dout · x̂``, summed over every leading axis. With
    ``g = γ · dout`` the gradient w.r.t. x̂, and μ, σ depending on all C values of their
    position (``∂μ/∂x_j = 1/C``, ``∂σ²/∂x_j = 2(x_j − μ)/C``), the three paths collect
    into the batch-norm formula with the means taken over the last axis::

        dx = (g − mean_C(g) − x̂ · mean_C(g · x̂)) / σ
    """
    x_hat, inv_std = cache.x_hat, cache.inv_std
    g = dout * cache.weight if cache.weight is not None else dout
    g_mean = g.mean(axis=-1, keepdims=True)
    gx_mean = (g * x_hat).mean(axis=-1, keepdims=True)
    dx = (g - g_mean - x_hat * gx_mean) * inv_std
    if not param_grads:
        return dx, None, None
    c = x_hat.shape[-1]
    dweight = (dout * x_hat).reshape(-1, c).sum(axis=0) if cache.weight is not None else None
    dbias = dout.reshape(-1, c).sum(axis=0) if cache.has_bias else None
    return dx, dweight, dbias
