"""Shared test helpers: naive oracles that share no code with npcam, and the
scale-relative error of DESIGN.md ("identities between arrays are checked relative to the
array's scale, never element by element").

Importable from every test module as ``_support`` (pytest puts ``tests/`` on ``sys.path``
for the ``conftest.py`` there).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["naive_conv2d", "naive_max_pool2d", "scaled_error", "small_cnn", "small_cnn_input"]


def scaled_error(a, b, scale: float | None = None) -> float:
    """``max|a − b| / scale``, the scale defaulting to ``max|b|`` (tiny when b is zero);
    0 for empty arrays. Shapes must match."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    if a.size == 0:
        return 0.0
    if scale is None:
        scale = max(float(np.max(np.abs(b))), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(a - b))) / scale


def naive_conv2d(x, weight, bias, stride, padding):
    """The defining sum, one output element at a time, reading the padding as zeros.

    out[n, f, h, w] = b[f] + Σ_{c,i,j} W[f, c, i, j] · x[n, c, s_h·h + i − p_h, s_w·w + j − p_w]
    where x is zero outside its bounds. Deliberately shares no code with npcam.
    """
    n, c, hh, ww = x.shape
    f, _, kh, kw = weight.shape
    sh, sw = stride
    ph, pw = padding
    h_out = (hh + 2 * ph - kh) // sh + 1
    w_out = (ww + 2 * pw - kw) // sw + 1
    out = np.zeros((n, f, h_out, w_out))
    for a in range(n):
        for o in range(f):
            for r in range(h_out):
                for q in range(w_out):
                    total = 0.0 if bias is None else float(bias[o])
                    for ch in range(c):
                        for i in range(kh):
                            row = r * sh + i - ph
                            if not 0 <= row < hh:
                                continue
                            for j in range(kw):
                                col = q * sw + j - pw
                                if 0 <= col < ww:
                                    total += weight[o, ch, i, j] * x[a, ch, row, col]
                    out[a, o, r, q] = total
    return out


def naive_max_pool2d(x, kernel, stride):
    """Loop oracle: the max of each window and the flat in-plane index (row·W + col) of
    its first maximum in row-major order (strict ``>`` keeps the first one)."""
    n, c, hh, ww = x.shape
    kh, kw = kernel
    sh, sw = stride
    h_out, w_out = (hh - kh) // sh + 1, (ww - kw) // sw + 1
    out = np.empty((n, c, h_out, w_out))
    arg = np.empty((n, c, h_out, w_out), dtype=np.int64)
    for a in range(n):
        for ch in range(c):
            for r in range(h_out):
                for q in range(w_out):
                    best, where = -math.inf, -1
                    for i in range(kh):
                        for j in range(kw):
                            v = x[a, ch, r * sh + i, q * sw + j]
                            if v > best:
                                best, where = v, (r * sh + i) * ww + (q * sw + j)
                    out[a, ch, r, q], arg[a, ch, r, q] = best, where
    return out, arg


def one_error_line(capsys) -> str:
    """The CLI's error output: exactly one line on stderr, no traceback."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def small_cnn(seed: int = 0, signed: bool = False):
    """cam-family.md's SmallCNN as an npcam ``Sequential`` (float64, random init):
    ``features`` = conv3-8, ReLU, conv8-12, ReLU (``features.3``: 32×32, before a max-pool,
    so g is sparse and varies in space), MaxPool2, conv12-16 (``features.5``, signed),
    ReLU (``features.6``, ≥ 0, straight into GAP: g constant in space); then
    ``classifier`` = GAP, FC(16→10). ``signed=True`` gives SignedCNN: the same without the
    last ReLU (a signed conv output feeds GAP). Biases are drawn too (nonzero), and the
    weights are scaled so that logits are O(1)."""
    import npcam

    rng = np.random.default_rng(seed)
    feats = [
        npcam.Conv2d(3, 8, 3, padding=1, rng=rng), npcam.ReLU(),
        npcam.Conv2d(8, 12, 3, padding=1, rng=rng), npcam.ReLU(),
        npcam.MaxPool2d(2),
        npcam.Conv2d(12, 16, 3, padding=1, rng=rng),
    ]
    if not signed:
        feats.append(npcam.ReLU())
    model = npcam.Sequential(
        features=npcam.Sequential(*feats),
        classifier=npcam.Sequential(npcam.GlobalAvgPool2d(), npcam.Linear(16, 10, rng=rng)),
    )
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            p[...] = rng.uniform(-0.2, 0.2, size=p.shape)
        elif name == "classifier.1.weight":
            p *= 20.0  # logits of order 1, so that the classes differ
    return model


def small_cnn_input(seed: int = 1, n: int = 2) -> np.ndarray:
    """An (n, 3, 32, 32) float64 input in [0, 1] for :func:`small_cnn`."""
    return np.random.default_rng(seed).uniform(size=(n, 3, 32, 32))
