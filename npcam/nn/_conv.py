r"""The fast convolution engine used on the hot path (layers and models).

:func:`npcam.nn.functional.conv2d_forward` / ``conv2d_backward`` state the convolution
plainly (a window view and one ``einsum``; the input gradient as a scatter over the kernel
offsets). This module computes the same numbers faster and in bounded memory: the windows
of a tile of images (or of output rows of one image) are copied into a reused per-thread
column buffer of at most ``CONV_CHUNK_BYTES`` and contracted with one BLAS matrix
product; the input gradient is col2im, kH·kW strided additions per tile. The tests check
both against each other and against a naive loop.
"""

from __future__ import annotations

import threading

import numpy as np

from .functional import Conv2dCache, _pad, _windows

__all__ = ["CONV_CHUNK_BYTES", "conv2d_backward", "conv2d_forward"]

# The column matrix of a convolution (C·kH·kW rows, one column per output pixel) is built
# for a tile of images, or of output rows of one image, at a time so that its size stays
# near this budget: memory stays bounded for large inputs while each matrix product is
# still large enough for BLAS (32 MiB measured best on the VGG-style benchmark).
CONV_CHUNK_BYTES = 32 * 2**20


# One scratch buffer per thread for column matrices: reusing it spares the page faults
# of a fresh allocation per tile, and a tile small enough to stay in cache is read by the
# matrix product right after it is written.
_WORKSPACE = threading.local()


def _workspace(size: int, dtype: np.dtype) -> np.ndarray:
    buffers = _WORKSPACE.__dict__.setdefault("buffers", {})
    buf = buffers.get(dtype)
    if buf is None or buf.size < size:
        buf = buffers[dtype] = np.empty(size, dtype=dtype)
    return buf[:size]


def _tiles(n: int, h_out: int, bytes_per_row: int):
    """(images, output rows) blocks whose column matrix fits ``CONV_CHUNK_BYTES``:
    several whole images when they fit, else bands of output rows of one image."""
    rows = max(1, CONV_CHUNK_BYTES // max(bytes_per_row, 1))
    if rows >= h_out:
        step = max(1, rows // h_out)
        for start in range(0, n, step):
            yield slice(start, min(start + step, n)), slice(0, h_out)
    else:
        for image in range(n):
            for r in range(0, h_out, rows):
                yield slice(image, image + 1), slice(r, min(r + rows, h_out))


def _columns(windows: np.ndarray, images: slice, rows: slice) -> np.ndarray:
    """The column matrix of a tile: (n, C·kH·kW, rows·W_out), in the workspace.

    Column (h, w) holds the input window that output pixel (h, w) sees, ordered (c, i, j)
    like the weight's last three axes, so the convolution is one matrix product.
    """
    tile = windows[images, :, rows]  # (n, C, r, W_out, kH, kW)
    n, c, r, w_out, kh, kw = tile.shape
    cols = _workspace(n * c * kh * kw * r * w_out, tile.dtype).reshape(n, c, kh, kw, r, w_out)
    # The copy reads whole output rows (the last axis) at a time.
    np.copyto(cols, tile.transpose(0, 1, 4, 5, 2, 3))
    return cols.reshape(n, c * kh * kw, r * w_out)


def conv2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
) -> tuple[np.ndarray, Conv2dCache]:
    r"""2-D cross-correlation (what deep learning calls convolution).

    With the input zero-padded by ``p`` and stride ``s``::

        out[n, f, h, w] = b[f] + Σ_{c,i,j} W[f, c, i, j] · x_pad[n, c, s_h·h + i, s_w·w + j]

    computed as matrix products: the weight as an (F, C·kH·kW) matrix times the column
    matrix of input windows (C·kH·kW, H_out·W_out), built for a tile of images or of
    output rows at a time so that its memory stays within ``CONV_CHUNK_BYTES``.
    """
    n, c = x.shape[:2]
    f, _, kh, kw = weight.shape
    windows = _windows(_pad(x, *padding), kh, kw, *stride)
    h_out, w_out = windows.shape[2:4]
    w2 = weight.reshape(f, c * kh * kw)
    out = np.empty((n, f, h_out * w_out), dtype=np.result_type(w2, windows))
    for images, rows in _tiles(n, h_out, 8 * c * kh * kw * w_out):  # bounded memory
        np.matmul(w2, _columns(windows, images, rows),
                  out=out[images, :, rows.start * w_out : rows.stop * w_out])
    out = out.reshape(n, f, h_out, w_out)
    if bias is not None:
        out += bias[None, :, None, None]
    return out, Conv2dCache(x, weight, stride, padding, bias is not None)


def conv2d_backward(
    dout: np.ndarray, cache: Conv2dCache, param_grads: bool = True
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    r"""Gradients of a convolution: ``(dx, dW, db)``; dW and db are None unless
    ``param_grads``.

    From the forward equation, each weight meets every output pixel and each input pixel
    meets every output whose window covers it::

        ∂L/∂b[f]          = Σ_{n,h,w} dout[n, f, h, w]
        ∂L/∂W[f, c, i, j] = Σ_{n,h,w} dout[n, f, h, w] · x_pad[n, c, s_h·h + i, s_w·w + j]
        ∂L/∂x_pad[n,c,r,q] = Σ_{f,i,j : s_h·h+i = r, s_w·w+j = q} dout[n, f, h, w] · W[f, c, i, j]

    In matrix form, with ``cols`` the forward's column matrix and ``W₂`` the weight as an
    (F, C·kH·kW) matrix: ``dW₂ = Σ_n dout_n · cols_nᵀ`` and ``dcols_n = W₂ᵀ · dout_n``.
    The input gradient is the *transposed convolution*: every column of ``dcols`` is
    scattered back, added onto the window it was read from — one strided slice of
    ``x_pad`` per kernel offset (i, j), i.e. kH·kW vectorised additions. Then the padding
    is cut off. Input rows that no window reached (when ``H + 2p − k`` is not a multiple
    of ``s``) keep a zero gradient, as they should.
    """
    x = cache.x
    n, c, h, w = x.shape
    f, _, kh, kw = cache.weight.shape
    sh, sw = cache.stride
    ph, pw = cache.padding
    h_out, w_out = dout.shape[2:]
    dout3 = dout.reshape(n, f, h_out * w_out)
    w2 = cache.weight.reshape(f, c * kh * kw)
    tiles = list(_tiles(n, h_out, 8 * c * kh * kw * w_out))

    dxp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=np.result_type(w2, dout3))
    for images, rows in tiles:
        r0, r1 = rows.start, rows.stop
        dtype = np.result_type(w2, dout3)
        dcols = _workspace((images.stop - images.start) * c * kh * kw * (r1 - r0) * w_out, dtype)
        dcols = dcols.reshape(-1, c * kh * kw, (r1 - r0) * w_out)
        np.matmul(w2.T, dout3[images, :, r0 * w_out : r1 * w_out], out=dcols)
        dcols = dcols.reshape(-1, c, kh, kw, r1 - r0, w_out)
        block = dxp[images]
        for i in range(kh):  # the kernel offsets: kH·kW whole-tile additions
            rows_in = slice(r0 * sh + i, (r1 - 1) * sh + i + 1, sh)
            for j in range(kw):
                block[:, :, rows_in, j : j + sw * (w_out - 1) + 1 : sw] += dcols[:, :, i, j]
    dx = dxp if ph == 0 and pw == 0 else np.ascontiguousarray(dxp[:, :, ph : ph + h, pw : pw + w])

    if not param_grads:
        return dx, None, None
    windows = _windows(_pad(x, ph, pw), kh, kw, sh, sw)
    dw = np.zeros((f, c * kh * kw), dtype=np.result_type(w2, dout3, windows))
    for images, rows in tiles:
        cols = _columns(windows, images, rows)
        part = dout3[images, :, rows.start * w_out : rows.stop * w_out]
        dw += np.matmul(part, cols.transpose(0, 2, 1)).sum(axis=0)
    db = dout.sum(axis=(0, 2, 3)) if cache.has_bias else None
    return dx, dw.reshape(cache.weight.shape), db
