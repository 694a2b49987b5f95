"""Cross-check of npcam.image.upsample against torch.nn.functional.interpolate (float64).

Needs the ``crosscheck`` extra (torch). Bilinear must agree to rounding (bar:
1e-10 x max|ref|, observed ~1e-15), nearest must agree exactly.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from npcam.image import upsample
from npcam.image.resize import _linear_taps

torch = pytest.importorskip("torch", reason="needs the crosscheck extra (torch)")
F = torch.nn.functional

pytestmark = pytest.mark.crosscheck

IN_SIZES = [1, 2, 3, 5, 7, 8, 13, 14, 16]
OUT_SIZES = [1, 2, 3, 4, 6, 7, 10, 14, 15, 23, 32, 46, 82, 100, 224]
BILINEAR = [None, False, True]


def _torch_upsample(maps, size, mode, align_corners):
    x = torch.from_numpy(maps)[:, None]
    return F.interpolate(x, size=size, mode=mode, align_corners=align_corners)[:, 0].numpy()


@pytest.mark.parametrize("align_corners", BILINEAR)
@pytest.mark.parametrize("h", IN_SIZES)
def test_bilinear_matches_torch(h, align_corners):
    rng = np.random.default_rng(h)
    worst = 0.0
    for w in (1, 4, 9):
        maps = rng.standard_normal((2, h, w))
        for out_h, out_w in itertools.product(OUT_SIZES, (1, 5, 19, 56)):
            ref = _torch_upsample(maps, (out_h, out_w), "bilinear", align_corners)
            out = upsample(maps, (out_h, out_w), "bilinear", align_corners)
            assert out.shape == ref.shape and out.dtype == np.float64
            worst = max(worst, float(np.max(np.abs(out - ref)) / np.max(np.abs(ref))))
    assert worst <= 1e-10


@pytest.mark.parametrize("h", IN_SIZES)
def test_nearest_matches_torch_exactly(h):
    rng = np.random.default_rng(100 + h)
    for w in (1, 4, 9):
        maps = rng.standard_normal((2, h, w))
        for out_h, out_w in itertools.product(OUT_SIZES, (1, 5, 19, 56)):
            ref = _torch_upsample(maps, (out_h, out_w), "nearest", None)
            np.testing.assert_array_equal(upsample(maps, (out_h, out_w), "nearest"), ref)


@pytest.mark.parametrize("other", [1, 129], ids=["H+W<=128", "H+W>128"])
def test_nearest_index_rule_all_sizes_up_to_100(other):
    # every (in, out) in 1..100 along the height, with the output width chosen so that
    # torch runs its float32 kernel (H + W <= 128) or its float64 one (H + W > 128);
    # values = row index, so equal outputs mean equal source indices
    for n_in in range(1, 101):
        maps = np.arange(n_in, dtype=np.float64)[None, :, None]
        for n_out in range(1, 101):
            size = (n_out, other)
            ref = _torch_upsample(maps, size, "nearest", None)
            out = upsample(maps, size, "nearest")
            if not np.array_equal(out, ref):
                pytest.fail(f"nearest differs from torch for in={n_in}, out={n_out}, W={other}")


@pytest.mark.parametrize(
    ("n_in", "n_out", "align_corners"),
    [
        (5000, 4999, False),
        (4999, 5000, False),
        (7000, 6997, False),
        (7000, 6997, True),
        (6001, 3, False),
        (3, 6001, True),
    ],
)
def test_linear_taps_match_torch_on_long_axes(n_in, n_out, align_corners):
    # Long 1-D axes reach the float32 floorf() of ATen's source index (see the module
    # docstring); checked through the taps, without building a dense (n_out, n_in) matrix.
    x = np.random.default_rng(n_in + n_out).standard_normal(n_in)
    ref = _torch_upsample(x[None, None, :], (1, n_out), "bilinear", align_corners)[0, 0]
    i0, i1, w0, w1 = _linear_taps(n_in, n_out, align_corners)
    out = w0 * x[i0] + w1 * x[i1]
    assert np.max(np.abs(out - ref)) <= 1e-10 * np.max(np.abs(ref))
