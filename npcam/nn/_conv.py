r"""The fast convolution engine used on the hot path (layers and models).

:func:`npcam.nn.functional.conv2d_forward` / ``conv2d_backward`` state the convolution
plainly (a window view and one ``einsum`` per group; the input gradient as a scatter over
the kernel offsets). This module computes the same numbers faster and in bounded memory,
along one of three paths:

* **dense and grouped** (``C_in/groups > 1``, and every ``groups = 1`` convolution): the
  windows of a tile of images (or of output rows of one image) are copied into a reused
  per-thread column buffer of at most ``CONV_CHUNK_BYTES`` and contracted with the weight
  in one BLAS matrix product — for G groups one ``matmul`` over a (G, …) stack of
  per-group matrices, no Python loop over groups; the input gradient is col2im, kH·kW
  strided additions per tile. A 1×1 convolution with stride 1 and no padding needs no
  column copy: the input already is its column matrix.
* **depthwise** (``C_in/groups = 1``: depthwise, and depthwise with a channel multiplier):
  each (image, channel) plane is its own small convolution, so there is nothing for a
  big matrix product to batch; see :func:`_depthwise_forward` (phase planes, kH·kW
  contiguous slices per block of planes, one batched matrix–vector product).

Every path takes the padding as ``(p_h, p_w)`` or as ``(left, right, top, bottom)`` (each
side its own, torch ``F.pad``'s order): the padded plane is (H + top + bottom, W + left +
right) and the input gradient is cut out of it at (top, left); a symmetric padding runs
exactly the code it ran before.

The tests check every path against the plain reference and against a naive loop.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .functional import Conv2dCache, Padding, _pad, _sides, _windows

__all__ = ["CONV_CHUNK_BYTES", "DEPTHWISE_CHUNK_BYTES", "conv2d_backward", "conv2d_forward"]

# The column matrix of a convolution (C·kH·kW rows, one column per output pixel) is built
# for a tile of images, or of output rows of one image, at a time so that its size stays
# near this budget: memory stays bounded for large inputs while each matrix product is
# still large enough for BLAS (32 MiB measured best on the VGG-style benchmark).
CONV_CHUNK_BYTES = 32 * 2**20

# The depthwise path works on blocks of (image, channel) planes whose scratch (phase
# planes, column matrix, accumulator) fits this budget: small enough to stay in the
# last-level cache between the copy that writes it and the product that reads it (2 MiB
# measured best on MobileNetV2/EfficientNet-B0 shapes, batch 8, one thread).
DEPTHWISE_CHUNK_BYTES = 2 * 2**20


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


def conv2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: tuple[int, int] = (1, 1),
    padding: Padding = (0, 0),
    groups: int = 1,
) -> tuple[np.ndarray, Conv2dCache]:
    r"""2-D cross-correlation (what deep learning calls convolution), optionally grouped.

    With the input zero-padded by ``padding`` (``(p_h, p_w)`` or ``(left, right, top,
    bottom)``), stride ``s``, G = ``groups`` and output channel f in group
    ``g = f // (F/G)``::

        out[n, f, h, w] = b[f] + Σ_{c',i,j} W[f, c', i, j] · x_pad[n, g·(C/G) + c', s_h·h + i, s_w·w + j]

    computed as matrix products (grouped: one per group, batched in one ``matmul``) over
    column matrices of input windows built a tile at a time, or, for depthwise
    convolution, as kH·kW vectorised multiply-adds over blocks of planes (see the module
    docstring).
    """
    cg = weight.shape[1]
    if groups > 1 and cg == 1:
        out = _depthwise_forward(x, weight, stride, padding, groups)
    else:
        out = _gemm_forward(x, weight, stride, padding, groups)
    if bias is not None:
        out += bias[None, :, None, None]
    return out, Conv2dCache(x, weight, stride, padding, bias is not None, groups)


def conv2d_backward(
    dout: np.ndarray, cache: Conv2dCache, param_grads: bool = True
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    r"""Gradients of a convolution: ``(dx, dW, db)``; dW and db are None unless
    ``param_grads``.

    From the forward equation, each weight meets every output pixel and each input pixel
    meets every output of its group whose window covers it::

        ∂L/∂b[f]           = Σ_{n,h,w} dout[n, f, h, w]
        ∂L/∂W[f, c', i, j] = Σ_{n,h,w} dout[n, f, h, w] · x_pad[n, c, s_h·h + i, s_w·w + j]
        ∂L/∂x_pad[n,c,r,q] = Σ_{f in g, i,j : s_h·h+i = r, s_w·w+j = q} dout[n, f, h, w] · W[f, c', i, j]

    (c = g·(C/G) + c'.) In matrix form, per group, with ``cols`` the forward's column
    matrix and ``W₂`` the group's weight as an (F/G, C/G·kH·kW) matrix:
    ``dW₂ = Σ_n dout_n · cols_nᵀ`` and ``dcols_n = W₂ᵀ · dout_n``. The input gradient is
    the *transposed convolution*: every column of ``dcols`` is scattered back, added onto
    the window it was read from — one strided slice of ``x_pad`` per kernel offset (i, j),
    i.e. kH·kW vectorised additions. Then the padding is cut off (rows ``[top, top + H)``,
    columns ``[left, left + W)``). Input rows that no window reached (when
    ``H + top + bottom − k`` is not a multiple of ``s``) keep a zero gradient,
    as they should. Depthwise convolution takes its own path (:func:`_depthwise_backward`).
    """
    db = dout.sum(axis=(0, 2, 3)) if param_grads and cache.has_bias else None
    if cache.groups > 1 and cache.weight.shape[1] == 1:
        dx, dw = _depthwise_backward(dout, cache, param_grads)
    else:
        dx, dw = _gemm_backward(dout, cache, param_grads)
    return dx, dw, db


# ================================================================== dense and grouped
def _tiles(n: int, h_out: int, bytes_per_row: int) -> Iterator[tuple[slice, slice]]:
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
    like the weight's last three axes, so the convolution is one matrix product (per
    group: the rows of group g are the contiguous block ``g·(C/G)·kH·kW`` onwards).
    """
    tile = windows[images, :, rows]  # (n, C, r, W_out, kH, kW)
    n, c, r, w_out, kh, kw = tile.shape
    cols = _workspace(n * c * kh * kw * r * w_out, tile.dtype).reshape(n, c, kh, kw, r, w_out)
    # The copy reads whole output rows (the last axis) at a time.
    np.copyto(cols, tile.transpose(0, 1, 4, 5, 2, 3))
    return cols.reshape(n, c * kh * kw, r * w_out)


#: A 1×1 convolution over at most this many positions (h·w) runs as one matrix product over
#: the whole batch (measured: 25 % faster at 7×7, slower from 14×14 on).
_SMALL_MAP = 64


def _is_pointwise(weight: np.ndarray, stride: tuple[int, int], padding: Padding) -> bool:
    """1×1 kernel, stride 1, no padding: the input (C, H·W) is its own column matrix."""
    return weight.shape[2:] == (1, 1) and tuple(stride) == (1, 1) and not any(padding)


def _gemm_forward(
    x: np.ndarray, weight: np.ndarray, stride: tuple[int, int], padding: Padding, groups: int
) -> np.ndarray:
    n, c = x.shape[:2]
    f, cg, kh, kw = weight.shape
    g, k = groups, cg * kh * kw
    w3 = weight.reshape(g, f // g, k)  # one (F/G, C/G·kH·kW) matrix per group
    if _is_pointwise(weight, stride, padding):
        h, w = x.shape[2:]
        if g == 1 and h * w <= _SMALL_MAP:
            # Small maps (ResNet's 7×7 layer4): one product over all images at once is
            # faster than N thin ones, even with the two transposing copies.
            flat = np.ascontiguousarray(x.reshape(n, c, h * w).transpose(1, 0, 2)).reshape(c, n * h * w)
            out2 = (w3[0] @ flat).reshape(f, n, h * w)
            return np.ascontiguousarray(out2.transpose(1, 0, 2)).reshape(n, f, h, w)
        out = np.matmul(w3, np.ascontiguousarray(x).reshape(n, g, cg, h * w))
        return out.reshape(n, f, h, w)
    windows = _windows(_pad(x, padding), kh, kw, *stride)
    h_out, w_out = windows.shape[2:4]
    out = np.empty((n, g, f // g, h_out * w_out), dtype=np.result_type(w3, windows))
    for images, rows in _tiles(n, h_out, 8 * c * kh * kw * w_out):  # bounded memory
        cols = _columns(windows, images, rows)
        np.matmul(w3, cols.reshape(cols.shape[0], g, k, cols.shape[2]),
                  out=out[images, :, :, rows.start * w_out : rows.stop * w_out])
    return out.reshape(n, f, h_out, w_out)


def _gemm_backward(
    dout: np.ndarray, cache: Conv2dCache, param_grads: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    x, g = cache.x, cache.groups
    n, c, h, w = x.shape
    f, cg, kh, kw = cache.weight.shape
    sh, sw = cache.stride
    top, bottom, left, right = _sides(cache.padding)
    h_out, w_out = dout.shape[2:]
    k = cg * kh * kw
    dout4 = dout.reshape(n, g, f // g, h_out * w_out)
    w3 = cache.weight.reshape(g, f // g, k)
    dtype = np.result_type(w3, dout4)

    if _is_pointwise(cache.weight, cache.stride, cache.padding):
        if g == 1 and h * w <= _SMALL_MAP:  # as in the forward pass: one product for all images
            d2 = np.ascontiguousarray(dout4[:, 0].transpose(1, 0, 2)).reshape(f, n * h * w)
            dx2 = (w3[0].T @ d2).reshape(c, n, h * w)
            dx = np.ascontiguousarray(dx2.transpose(1, 0, 2)).reshape(n, c, h, w)
        else:
            dx = np.matmul(w3.transpose(0, 2, 1), dout4).reshape(n, c, h, w)
        if not param_grads:
            return dx, None
        x4 = np.ascontiguousarray(x).reshape(n, g, cg, h * w)
        dw = np.matmul(dout4, x4.transpose(0, 1, 3, 2)).sum(axis=0)
        return dx, dw.reshape(cache.weight.shape)

    tiles = list(_tiles(n, h_out, 8 * c * kh * kw * w_out))
    dxp = np.zeros((n, c, h + top + bottom, w + left + right), dtype=dtype)
    for images, rows in tiles:
        r0, r1 = rows.start, rows.stop
        m = images.stop - images.start
        dcols = _workspace(m * c * kh * kw * (r1 - r0) * w_out, dtype).reshape(m, g, k, (r1 - r0) * w_out)
        np.matmul(w3.transpose(0, 2, 1), dout4[images, :, :, r0 * w_out : r1 * w_out], out=dcols)
        dcols6 = dcols.reshape(m, c, kh, kw, r1 - r0, w_out)
        block = dxp[images]
        for i in range(kh):  # the kernel offsets: kH·kW whole-tile additions
            rows_in = slice(r0 * sh + i, (r1 - 1) * sh + i + 1, sh)
            for j in range(kw):
                block[:, :, rows_in, j : j + sw * (w_out - 1) + 1 : sw] += dcols6[:, :, i, j]
    unpadded = top == bottom == left == right == 0
    dx = dxp if unpadded else np.ascontiguousarray(dxp[:, :, top : top + h, left : left + w])

    if not param_grads:
        return dx, None
    windows = _windows(_pad(x, cache.padding), kh, kw, sh, sw)
    dw = np.zeros((g, f // g, k), dtype=np.result_type(w3, dout4, windows))
    for images, rows in tiles:
        cols = _columns(windows, images, rows)
        part = dout4[images, :, :, rows.start * w_out : rows.stop * w_out]
        cols4 = cols.reshape(cols.shape[0], g, k, cols.shape[2])
        dw += np.matmul(part, cols4.transpose(0, 1, 3, 2)).sum(axis=0)
    return dx, dw.reshape(cache.weight.shape)


# ============================================================================ depthwise
class _Phases(NamedTuple):
    """Geometry of the depthwise path for one (H, W, kernel, stride, padding).

    The zero-padded plane (H_p, W_p) = (H + top + bottom, W + left + right) is split into
    s_h·s_w *phase planes*, ``phase[a, b][r, q] = x_pad[s_h·r + a, s_w·q + b]``, each
    (hq, wq) = (ceil(H_p/s_h), ceil(W_p/s_w)) and stored flat with a few cells of slack.
    Then every kernel tap (i, j) reads phase ``(i mod s_h, j mod s_w)`` at the offset
    ``(i div s_h)·wq + (j div s_w)``, and for all outputs at once the *contiguous* slice
    of length ``h_out·wq`` from there: outputs are computed in rows of width wq, of which
    the first ``w_out`` are kept (the rest read across row ends and are thrown away).
    Strided convolution becomes stride 1 on the phases, and every tap a long contiguous
    slice that whole-array operations process at full speed.
    """

    h_out: int
    w_out: int
    hq: int
    wq: int
    plane: int  # flat length of one phase plane (hq·wq plus the slack the last tap reads)
    # per phase (a, b) with taps: (phase index a·s_w + b, first tap, taps down, taps across)
    taps: tuple[tuple[int, int, int, int], ...]
    order: np.ndarray  # kernel index i·kW + j of each tap, in the order of ``taps``
    # per phase: (phase index, phase rows, phase cols, input rows, input cols) of the real
    # input, and whether any tap reads that phase
    fill: tuple[tuple[int, slice, slice, slice, slice, bool], ...]


def _phases(h: int, w: int, kernel: tuple[int, int], stride: tuple[int, int],
            padding: Padding) -> _Phases:
    (kh, kw), (sh, sw) = kernel, stride
    ph, bottom, pw, right = _sides(padding)  # ph, pw: the padding before (top, left)
    hp, wp = h + ph + bottom, w + pw + right  # the padded plane
    h_out, w_out = (hp - kh) // sh + 1, (wp - kw) // sw + 1
    hq, wq = -(-hp // sh), -(-wp // sw)
    # The last tap of the last phase starts at ((kh−1) div s_h)·wq + (kw−1) div s_w and reads
    # h_out·wq cells; h_out + (kh−1) div s_h <= hq, so (kw−1) div s_w cells of slack suffice.
    plane = hq * wq + (kw - 1) // sw
    taps: list[tuple[int, int, int, int]] = []
    order: list[int] = []
    fill: list[tuple[int, slice, slice, slice, slice, bool]] = []
    for a in range(sh):
        for b in range(sw):
            ii, jj = range(a, kh, sh), range(b, kw, sw)
            used = len(ii) > 0 and len(jj) > 0
            if used:
                taps.append((a * sw + b, len(order), len(ii), len(jj)))
                order.extend(i * kw + j for i in ii for j in jj)
            # phase rows r hold input row s_h·r + a − p_h: the real ones, 0 <= that < H
            r0, r1 = max(0, -(-(ph - a) // sh)), min(hq, (h - 1 + ph - a) // sh + 1)
            q0, q1 = max(0, -(-(pw - b) // sw)), min(wq, (w - 1 + pw - b) // sw + 1)
            if r1 > r0 and q1 > q0:
                fill.append((a * sw + b, slice(r0, r1), slice(q0, q1),
                             slice(sh * r0 + a - ph, sh * (r1 - 1) + a - ph + 1, sh),
                             slice(sw * q0 + b - pw, sw * (q1 - 1) + b - pw + 1, sw), used))
    return _Phases(h_out, w_out, hq, wq, plane, tuple(taps), np.array(order), tuple(fill))


def _plane_blocks(planes: int, geo: _Phases, per_plane: int, per_row: int) -> Iterator[tuple[int, int, int]]:
    """(first plane, last plane + 1, output rows per band): blocks of whole planes whose
    scratch (``per_plane`` fixed + ``per_row`` per output row, bytes) fits
    ``DEPTHWISE_CHUNK_BYTES``; a plane too large for it alone is done in bands of rows."""
    full = per_plane + per_row * geo.h_out
    if full <= DEPTHWISE_CHUNK_BYTES:
        step = DEPTHWISE_CHUNK_BYTES // full
        for m0 in range(0, planes, step):
            yield m0, min(m0 + step, planes), geo.h_out
    else:
        band = max(1, (DEPTHWISE_CHUNK_BYTES - per_plane) // per_row)
        for m0 in range(planes):
            yield m0, m0 + 1, band


def _to_phases(xb: np.ndarray, ph: np.ndarray, geo: _Phases) -> None:
    """Write the planes xb (m, H, W) into the phase planes ph (m, s_h·s_w, plane) that
    some tap reads; cells that are padding are left as they are (zero)."""
    m = xb.shape[0]
    for idx, pr, pc, xr, xc, used in geo.fill:
        if used:
            ph[:m, idx, : geo.hq * geo.wq].reshape(m, geo.hq, geo.wq)[:, pr, pc] = xb[:, xr, xc]


def _from_phases(ph: np.ndarray, dxb: np.ndarray, geo: _Phases) -> None:
    """The inverse of :func:`_to_phases` on the real cells (each input cell lies in exactly
    one phase, so this assigns every cell of dxb (m, H, W) once)."""
    m = dxb.shape[0]
    for idx, pr, pc, xr, xc, _ in geo.fill:
        dxb[:, xr, xc] = ph[:m, idx, : geo.hq * geo.wq].reshape(m, geo.hq, geo.wq)[:, pr, pc]


def _tap_columns(ph: np.ndarray, cols: np.ndarray, geo: _Phases, r0: int, r1: int) -> None:
    """cols[:, t] = the slice of length (r1 − r0)·wq that tap t reads for output rows
    [r0, r1): s_h·s_w strided copies (one per phase, all its taps at once)."""
    m, length = cols.shape[0], (r1 - r0) * geo.wq
    s0, s1, s2 = ph.strides
    item = ph.itemsize
    for idx, first, down, across in geo.taps:
        # taps (i1, j1) of this phase start at r0·wq + i1·wq + j1 and read `length` cells:
        # the bound on ``plane`` keeps every read inside the phase plane.
        src = as_strided(ph[:m, idx, r0 * geo.wq :], shape=(m, down, across, length),
                         strides=(s0, geo.wq * item, item, item), writeable=False)
        np.copyto(cols[:m, first : first + down * across].reshape(m, down, across, length), src)


def _depthwise_setup(
    x_shape: tuple[int, ...], weight: np.ndarray, stride: tuple[int, int], padding: Padding,
) -> tuple[_Phases, np.ndarray]:
    """The geometry and the per-plane weights (N·F, kH·kW) in tap order."""
    n, f = x_shape[0], weight.shape[0]
    geo = _phases(x_shape[2], x_shape[3], (weight.shape[2], weight.shape[3]), stride, padding)
    w_taps = weight.reshape(f, -1)[:, geo.order]
    return geo, np.broadcast_to(w_taps[None], (n, *w_taps.shape)).reshape(n * f, -1)


def _depthwise_forward(
    x: np.ndarray, weight: np.ndarray, stride: tuple[int, int], padding: Padding, groups: int
) -> np.ndarray:
    r"""Depthwise convolution: output plane (n, f) is input plane (n, f // (F/G)) correlated
    with its own kH×kW filter, ``out[n, f] = Σ_{i,j} W[f, 0, i, j] · x_pad[n, c, s·h + i, s·w + j]``.

    For a block of planes (sized to ``DEPTHWISE_CHUNK_BYTES``): write them into phase
    planes (:class:`_Phases`), copy the kH·kW tap slices into a (planes, kH·kW, length)
    column stack, and contract each plane's kH·kW weights with it in one batched
    matrix–vector product; keep the first ``w_out`` columns of every output row. A channel
    multiplier (F/G > 1) repeats each input plane F/G times first.
    """
    n, c, h, w = x.shape
    f = weight.shape[0]
    if f != c:  # channel multiplier: output channel f reads input channel f // (F/G)
        x = np.repeat(x, f // groups, axis=1)
    dtype = np.result_type(x, weight)
    geo, w_planes = _depthwise_setup(x.shape, weight, stride, padding)
    k, s2 = w_planes.shape[1], stride[0] * stride[1]
    planes = n * f
    xf = x.reshape(planes, h, w)
    out = np.empty((planes, geo.h_out, geo.w_out), dtype=dtype)
    item = np.dtype(dtype).itemsize
    per_plane, per_row = item * s2 * geo.plane, item * (k + 1) * geo.wq
    blocks = list(_plane_blocks(planes, geo, per_plane, per_row))
    mb, band = blocks[0][1] - blocks[0][0], blocks[0][2]
    buf = _workspace(mb * (s2 * geo.plane + (k + 1) * band * geo.wq), dtype)
    ph = buf[: mb * s2 * geo.plane].reshape(mb, s2, geo.plane)
    ph.fill(0)  # the padding cells: never written by _to_phases
    rest = buf[mb * s2 * geo.plane :]
    for m0, m1, band in blocks:
        m = m1 - m0
        _to_phases(xf[m0:m1], ph, geo)
        wb = w_planes[m0:m1, None, :]  # (m, 1, K)
        for r0 in range(0, geo.h_out, band):
            r1 = min(r0 + band, geo.h_out)
            length = (r1 - r0) * geo.wq
            cols = rest[: m * k * length].reshape(m, k, length)
            acc = rest[m * k * length : m * (k + 1) * length].reshape(m, 1, length)
            _tap_columns(ph, cols, geo, r0, r1)
            np.matmul(wb, cols, out=acc)
            out[m0:m1, r0:r1] = acc.reshape(m, r1 - r0, geo.wq)[:, :, : geo.w_out]
    return out.reshape(n, f, geo.h_out, geo.w_out)


def _depthwise_backward(
    dout: np.ndarray, cache: Conv2dCache, param_grads: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    r"""Gradients of the depthwise convolution, block by block like the forward.

    dout is written into rows of width wq, with zeros in the thrown-away columns (so they
    contribute nothing), into a zero buffer E that starts ``F0 = (A−1)·wq + (B−1)`` cells
    early (A, B the most taps down and across in one phase). Then:

    * ``∂L/∂W[f, t] = Σ_n ⟨cols[n, f, t], dout[n, f]⟩`` — one batched matrix–vector product
      with the forward's column stack;
    * the input gradient is the transposed operation, a correlation again: phase (a, b)
      received tap t = (i1, j1) of its own from ``dout`` shifted by ``i1·wq + j1``, so
      ``∂L/∂phase[a, b] = Σ_{t in (a, b)} W[f, t] · E[F0 − (i1·wq + j1) + ·]`` — the tap
      slices of E (read backwards) copied into a column stack and contracted with the
      weights, one product per phase. A read that wraps across a row end lands in a
      thrown-away column (zero), as it must. Then the phases are put back in place and
      the padding is cut off.
    """
    x, weight, groups = cache.x, cache.weight, cache.groups
    n, c, h, w = x.shape
    f = weight.shape[0]
    mult = f // groups
    dtype = np.result_type(x, weight, dout)
    geo, w_planes = _depthwise_setup((n, f, h, w), weight, cache.stride, cache.padding)
    k, s2, wq = w_planes.shape[1], cache.stride[0] * cache.stride[1], geo.wq
    down = max(t[2] for t in geo.taps)
    across = max(t[3] for t in geo.taps)
    f0 = (down - 1) * wq + across - 1
    e_len = f0 + geo.hq * wq
    planes = n * f
    dflat = dout.reshape(planes, geo.h_out, geo.w_out)
    xf = None
    if param_grads:
        xf = (np.repeat(x, mult, axis=1) if mult > 1 else x).reshape(planes, h, w)
    # scratch per plane: x phases (for dW), dx phases, E, and the column stack of a band
    item = np.dtype(dtype).itemsize
    per_plane = item * ((2 if param_grads else 1) * s2 * geo.plane + e_len)
    per_row = item * k * wq
    rows = max(geo.h_out, geo.hq)
    full = per_plane + per_row * rows
    if full <= DEPTHWISE_CHUNK_BYTES:
        mb, band = min(planes, DEPTHWISE_CHUNK_BYTES // full), rows
    else:
        mb, band = 1, max(1, (DEPTHWISE_CHUNK_BYTES - per_plane) // per_row)
    nx = s2 * geo.plane if param_grads else 0
    buf = _workspace(mb * (nx + s2 * geo.plane + e_len + k * band * wq), dtype)
    xph = buf[: mb * nx].reshape(mb, s2 if param_grads else 0, geo.plane)
    used = buf[mb * nx :]
    dph = used[: mb * s2 * geo.plane].reshape(mb, s2, geo.plane)
    used = used[mb * s2 * geo.plane :]
    e = used[: mb * e_len].reshape(mb, e_len)
    col_buf = used[mb * e_len :]
    xph.fill(0)  # padding cells of the phases: never written
    dph.fill(0)  # phases no tap reads: their gradient is zero
    e.fill(0)  # E outside dout's cells and dout's thrown-away columns: zero, never written
    e_rows = e[:, f0 : f0 + geo.h_out * wq].reshape(mb, geo.h_out, wq)

    dx = np.empty((planes, h, w), dtype=dtype)
    dw_planes = np.empty((planes, k), dtype=dtype) if param_grads else None
    for m0 in range(0, planes, mb):
        m1 = min(m0 + mb, planes)
        m = m1 - m0
        e_rows[:m, :, : geo.w_out] = dflat[m0:m1]
        if dw_planes is not None and xf is not None:
            _to_phases(xf[m0:m1], xph, geo)
            for r0 in range(0, geo.h_out, band):
                r1 = min(r0 + band, geo.h_out)
                length = (r1 - r0) * wq
                cols = col_buf[: m * k * length].reshape(m, k, length)
                _tap_columns(xph, cols, geo, r0, r1)
                d = e[:m, f0 + r0 * wq : f0 + r1 * wq, None]  # (m, length, 1)
                part = np.matmul(cols, d)[:, :, 0]
                if r0 == 0:
                    dw_planes[m0:m1] = part
                else:
                    dw_planes[m0:m1] += part
        s0, s1 = e.strides
        for idx, first, nd, na in geo.taps:
            wb = w_planes[m0:m1, None, first : first + nd * na]  # (m, 1, taps of the phase)
            for r0 in range(0, geo.hq, band):
                r1 = min(r0 + band, geo.hq)
                length = (r1 - r0) * wq
                taps = col_buf[: m * nd * na * length].reshape(m, nd, na, length)
                # tap (i1, j1) of phase row r0 reads E[f0 + r0·wq − (i1·wq + j1) + ·]
                src = as_strided(e[:m, f0 + r0 * wq :], shape=(m, nd, na, length),
                                 strides=(s0, -wq * s1, -s1, s1), writeable=False)
                np.copyto(taps, src)
                out = dph[:m, idx, r0 * wq : r1 * wq].reshape(m, 1, length)
                np.matmul(wb, taps.reshape(m, nd * na, length), out=out)
        _from_phases(dph, dx[m0:m1], geo)
    dx4 = dx.reshape(n, f, h, w)
    if mult > 1:
        dx4 = dx4.reshape(n, groups, mult, h, w).sum(axis=2)
    if dw_planes is None:
        return dx4, None
    dw = np.empty((f, k), dtype=dtype)
    dw[:, geo.order] = dw_planes.reshape(n, f, k).sum(axis=0)
    return dx4, dw.reshape(weight.shape)
