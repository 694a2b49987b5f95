r"""Forward and backward passes as pure functions, each backward derived by hand.

Every operation comes as a pair::

    out, cache = op_forward(x, ...)      # cache: a NamedTuple of what backward needs
    dx, ...    = op_backward(dout, cache)

where ``dout = ∂L/∂out`` for some scalar L (in npcam, usually the class score y^c) and
the backward returns ``∂L/∂x`` (and the parameter gradients). Arrays are NCHW, weights in
PyTorch's layout: conv ``(C_out, C_in, kH, kW)``, linear ``(out, in)``. Everything is
float64; inputs are validated by the layers and models that call these functions, so
these stay the bare equations.

Conventions at the kinks (where the derivative does not exist, an implementation must
choose; these are PyTorch's choices):

* ReLU'(0) = 0, i.e. ``dx = dy·[x > 0]``.
* Max-pool ties: the whole gradient goes to the first maximum of the window in row-major
  order, as PyTorch's CPU kernel does.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "BatchNormCache",
    "Conv2dCache",
    "LinearCache",
    "MaxPool2dCache",
    "ReLUCache",
    "RELU_RULES",
    "batch_norm2d_backward",
    "batch_norm2d_forward",
    "conv2d_backward",
    "conv2d_forward",
    "conv_output_size",
    "dropout_backward",
    "dropout_forward",
    "flatten_backward",
    "flatten_forward",
    "global_avg_pool2d_backward",
    "global_avg_pool2d_forward",
    "linear_backward",
    "linear_forward",
    "SoftmaxCache",
    "log_softmax",
    "log_softmax_backward",
    "log_softmax_forward",
    "max_pool2d_backward",
    "max_pool2d_forward",
    "relu_backward",
    "relu_forward",
    "softmax",
    "softmax_backward",
    "softmax_cross_entropy",
    "softmax_forward",
]

# --------------------------------------------------------------------------- convolution
class Conv2dCache(NamedTuple):
    x: np.ndarray  # the unpadded input: padding again for dW costs less memory than keeping it
    weight: np.ndarray
    stride: tuple[int, int]
    padding: tuple[int, int]
    has_bias: bool


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution or pooling window along one axis:
    ``floor((size + 2·padding − kernel) / stride) + 1`` (0 or less: the window does not fit).
    """
    return (size + 2 * padding - kernel) // stride + 1


def _pad(x: np.ndarray, ph: int, pw: int) -> np.ndarray:
    if ph == 0 and pw == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def _windows(xp: np.ndarray, kh: int, kw: int, sh: int, sw: int) -> np.ndarray:
    """The input window of every output pixel: a view (N, C, H_out, W_out, kH, kW)."""
    return sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]


def conv2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
) -> tuple[np.ndarray, Conv2dCache]:
    r"""2-D cross-correlation (what deep learning calls convolution).

    x (N, C, H, W), W (F, C, kH, kW), b (F,). With the input zero-padded by ``p`` and
    stride ``s``::

        out[n, f, h, w] = b[f] + Σ_{c,i,j} W[f, c, i, j] · x_pad[n, c, s_h·h + i, s_w·w + j]

    Written as it reads: the windows ``x_pad[n, c, s_h·h + i, s_w·w + j]`` are a strided
    view (no copy) of shape (N, C, H_out, W_out, kH, kW), contracted with W over (c, i, j).
    Layers use the tiled engine of :mod:`npcam.nn._conv`, tested equal to this.
    """
    kh, kw = weight.shape[2:]
    windows = _windows(_pad(x, *padding), kh, kw, *stride)
    out = np.einsum("nchwij,fcij->nfhw", windows, weight, optimize=True)
    if bias is not None:
        out += bias[None, :, None, None]
    return out, Conv2dCache(x, weight, stride, padding, bias is not None)


def conv2d_backward(
    dout: np.ndarray, cache: Conv2dCache, param_grads: bool = True
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    r"""Gradients of a convolution: ``(dx, dW, db)``; dW and db are None unless
    ``param_grads``. dout (N, F, H_out, W_out).

    From the forward equation, each weight meets every output pixel and each input pixel
    meets every output whose window covers it::

        ∂L/∂b[f]          = Σ_{n,h,w} dout[n, f, h, w]
        ∂L/∂W[f, c, i, j] = Σ_{n,h,w} dout[n, f, h, w] · x_pad[n, c, s_h·h + i, s_w·w + j]
        ∂L/∂x_pad[n,c,r,q] = Σ_{f,i,j : s_h·h+i = r, s_w·w+j = q} dout[n, f, h, w] · W[f, c, i, j]

    The input gradient is the *transposed convolution*: for each kernel offset (i, j),
    ``Σ_f dout[n, f, h, w] · W[f, c, i, j]`` is added onto the strided slice
    ``x_pad[:, :, i + s_h·h, j + s_w·w]`` it was read from — a loop over the kH·kW offsets
    only, each a whole-array operation. Then the padding is cut off. Input rows that no
    window reached (when ``H + 2p − k`` is not a multiple of ``s``) keep a zero gradient.
    """
    x, weight = cache.x, cache.weight
    n, c, h, w = x.shape
    kh, kw = weight.shape[2:]
    (sh, sw), (ph, pw) = cache.stride, cache.padding
    h_out, w_out = dout.shape[2:]
    dxp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=np.result_type(weight, dout))
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + sh * (h_out - 1) + 1, sh)
            cols = slice(j, j + sw * (w_out - 1) + 1, sw)
            dxp[:, :, rows, cols] += np.einsum("nfhw,fc->nchw", dout, weight[:, :, i, j], optimize=True)
    dx = dxp[:, :, ph : ph + h, pw : pw + w]
    if not param_grads:
        return np.ascontiguousarray(dx), None, None
    windows = _windows(_pad(x, ph, pw), kh, kw, sh, sw)
    dw = np.einsum("nfhw,nchwij->fcij", dout, windows, optimize=True)
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
    x_shape: tuple[int, ...]
    argmax: np.ndarray  # flat index (row·W + col) into the input plane of each output


def max_pool2d_forward(
    x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]
) -> tuple[np.ndarray, MaxPool2dCache]:
    r"""``out[n, c, h, w] = max_{i,j} x[n, c, s_h·h + i, s_w·w + j]`` over a kH×kW window.

    The position of the maximum is remembered for the backward pass. On ties it is the
    first maximum of the window in row-major order (``argmax``'s rule, and PyTorch's).
    """
    n, c, h, w = x.shape
    kh, kw = kernel
    sh, sw = stride
    windows = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    h_out, w_out = windows.shape[2:4]
    flat = windows.reshape(n, c, h_out, w_out, kh * kw)
    k = flat.argmax(axis=-1)
    out = np.take_along_axis(flat, k[..., None], axis=-1)[..., 0]
    # Window-local index k = i·kW + j  ->  flat index in the input plane.
    rows = np.arange(h_out)[:, None] * sh + k // kw
    cols = np.arange(w_out)[None, :] * sw + k % kw
    return out, MaxPool2dCache(x.shape, rows * w + cols)


def max_pool2d_backward(dout: np.ndarray, cache: MaxPool2dCache) -> np.ndarray:
    r"""``∂L/∂x[n, c, r, q] = Σ_{h,w : argmax(h, w) = (r, q)} dout[n, c, h, w]``.

    The max is locally the identity on the winning input and constant in the others, so
    each output's gradient goes to its argmax; with overlapping windows one input may win
    several windows and the contributions add (``bincount`` sums them).
    """
    n, c, h, w = cache.x_shape
    plane = np.arange(n * c).reshape(n, c, 1, 1) * (h * w)
    dx = np.bincount((plane + cache.argmax).ravel(), weights=dout.ravel(), minlength=n * c * h * w)
    return dx.reshape(n, c, h, w)


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
    r"""``y = x Wᵀ + b``: x (N, in), W (out, in), b (out,)."""
    y = x @ weight.T
    if bias is not None:
        y += bias
    return y, LinearCache(x, weight, bias is not None)


def linear_backward(
    dout: np.ndarray, cache: LinearCache, param_grads: bool = True
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    r"""``∂L/∂x = dout · W``, ``∂L/∂W = doutᵀ · x``, ``∂L/∂b = Σ_n dout[n]``."""
    dx = dout @ cache.weight
    if not param_grads:
        return dx, None, None
    db = dout.sum(axis=0) if cache.has_bias else None
    return dx, dout.T @ cache.x, db


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
    x_hat: np.ndarray  # (x − μ) / σ, per channel
    inv_std: np.ndarray  # 1/σ = 1/sqrt(var + eps), (C,)
    gamma: np.ndarray
    training: bool
    mean: np.ndarray  # the μ and (biased) σ² used: the batch's in training mode, so the
    var: np.ndarray  # layer updates its running statistics without computing them again


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
    PyTorch normalises with); in eval mode they are the given running ``mean``/``var``.
    Updating the running statistics is the layer's job, not this function's.
    """
    if training:
        mean = x.mean(axis=(0, 2, 3))
        var = x.var(axis=(0, 2, 3))
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - mean[None, :, None, None]) * inv_std[None, :, None, None]
    y = x_hat * gamma[None, :, None, None] + beta[None, :, None, None]
    return y, BatchNormCache(x_hat, inv_std, gamma, training, mean, var)


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
    g = dout * cache.gamma[c]
    if cache.training:
        g_mean = g.mean(axis=(0, 2, 3))
        gx_mean = (g * cache.x_hat).mean(axis=(0, 2, 3))
        dx = (g - g_mean[c] - cache.x_hat * gx_mean[c]) * cache.inv_std[c]
    else:
        dx = g * cache.inv_std[c]
    if not param_grads:
        return dx, None, None
    return dx, (dout * cache.x_hat).sum(axis=(0, 2, 3)), dout.sum(axis=(0, 2, 3))


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
