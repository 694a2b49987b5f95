"""npcam.interop without torch: the Keras layout converters on hand-made arrays, TF's SAME
padding rule, and from_torch's behaviour when torch is missing or a state_dict is given.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import npcam
from npcam import interop
from npcam.interop import (
    check_keras_padding,
    conv_padding_from_keras,
    conv_weight_from_keras,
    dense_after_flatten_from_keras,
    dense_weight_from_keras,
    from_torch,
    images_from_nhwc,
    images_to_nhwc,
    tf_same_padding,
)


# ----------------------------------------------------------------------------- layouts
def test_conv_weight_from_keras_index_mapping():
    # a 2x2x2x3 HWIO kernel whose value encodes its index: 1000h + 100w + 10i + o
    h, w, i, o = np.meshgrid(range(2), range(2), range(2), range(3), indexing="ij")
    hwio = 1000.0 * h + 100 * w + 10 * i + o
    oihw = conv_weight_from_keras(hwio)
    assert oihw.shape == (3, 2, 2, 2) and oihw.dtype == np.float64
    for oo in range(3):
        for ii in range(2):
            for hh in range(2):
                for ww in range(2):
                    assert oihw[oo, ii, hh, ww] == 1000 * hh + 100 * ww + 10 * ii + oo
    assert oihw[2, 1, 0, 1] == 112.0  # typed in: h=0, w=1, i=1, o=2


def test_conv_weight_from_keras_gives_keras_convolution():
    # Keras Conv2D('valid') on NHWC, written out by hand, equals npcam's Conv2d on NCHW.
    rng = np.random.default_rng(0)
    x_nhwc = rng.standard_normal((2, 5, 6, 3))
    k = rng.standard_normal((3, 2, 3, 4))  # HWIO
    b = rng.standard_normal(4)
    out = np.zeros((2, 3, 5, 4))
    for r in range(3):
        for c in range(5):
            patch = x_nhwc[:, r : r + 3, c : c + 2, :]  # (N, kH, kW, C_in)
            out[:, r, c, :] = np.einsum("nhwi,hwio->no", patch, k) + b
    conv = npcam.Conv2d(3, 4, kernel_size=(3, 2))
    conv.weight, conv.bias = conv_weight_from_keras(k), b
    got = images_to_nhwc(conv.forward(images_from_nhwc(x_nhwc)))
    np.testing.assert_allclose(got, out, rtol=0, atol=1e-13)


def test_dense_weight_from_keras_is_transpose():
    k = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # (in=2, out=3)
    np.testing.assert_array_equal(dense_weight_from_keras(k), [[1, 4], [2, 5], [3, 6]])
    x = np.array([[0.5, -1.0]])
    lin = npcam.Linear(2, 3, bias=False)
    lin.weight = dense_weight_from_keras(k)
    np.testing.assert_array_equal(lin.forward(x), x @ k)


def test_images_nhwc_round_trip_and_mapping():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)  # NHWC
    nchw = images_from_nhwc(x)
    assert nchw.shape == (2, 5, 3, 4)
    assert nchw[1, 4, 2, 3] == x[1, 2, 3, 4]
    np.testing.assert_array_equal(images_to_nhwc(nchw), x)
    assert nchw.flags.c_contiguous


def test_dense_after_flatten_tiny_case_by_hand():
    # (H, W, C) = (2, 2, 3): Keras row (h*W + w)*C + c, npcam column (c*H + h)*W + w
    rows = np.arange(12, dtype=np.float64)[:, None] * np.array([[1.0, -1.0]])  # (12, out=2)
    w = dense_after_flatten_from_keras(rows, (2, 2, 3))
    assert w.shape == (2, 12)
    # typed in: npcam column q=(c,h,w) takes Keras row r=(h*2+w)*3+c
    expected_rows = [0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11]
    np.testing.assert_array_equal(w[0], expected_rows)
    np.testing.assert_array_equal(w[1], -np.array(expected_rows, dtype=float))


def test_dense_after_flatten_equals_keras_dense_on_nhwc():
    rng = np.random.default_rng(1)
    h, w, c, out = 2, 2, 3, 4
    x_nhwc = rng.standard_normal((5, h, w, c))
    kernel = rng.standard_normal((h * w * c, out))
    keras = x_nhwc.reshape(5, -1) @ kernel  # Keras Flatten + Dense (no bias)
    model = npcam.Sequential(npcam.Flatten(), npcam.Linear(c * h * w, out, bias=False))
    model["1"].weight = dense_after_flatten_from_keras(kernel, (h, w, c))
    np.testing.assert_allclose(model.forward(images_from_nhwc(x_nhwc)), keras, rtol=0, atol=1e-13)


def test_layout_converters_refuse_bad_input():
    with pytest.raises(ValueError, match="4-D"):
        conv_weight_from_keras(np.zeros((3, 3, 2)))
    with pytest.raises(ValueError, match="2-D"):
        dense_weight_from_keras(np.zeros(3))
    with pytest.raises(ValueError, match="4-D"):
        images_from_nhwc(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"H·W·C = 12"):
        dense_after_flatten_from_keras(np.zeros((11, 2)), (2, 2, 3))
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        dense_after_flatten_from_keras(np.zeros((12, 2)), (4, 3))
    with pytest.raises(TypeError):
        conv_weight_from_keras("kernel")


# ------------------------------------------------------------------------------ padding
@pytest.mark.parametrize(
    ("stride", "kernel", "size", "expected"),
    [
        (1, 3, 7, ((1, 1), (1, 1))),
        (1, 5, 4, ((2, 2), (2, 2))),
        (1, 2, 5, ((0, 1), (0, 1))),  # even kernel: the extra pixel after
        (2, 3, 8, ((0, 1), (0, 1))),  # stride 2, even input: total 1
        (2, 3, 7, ((1, 1), (1, 1))),  # stride 2, odd input: total 2
        (2, 1, 5, ((0, 0), (0, 0))),  # total clamps at 0
        ((2, 1), (3, 4), (8, 6), ((0, 1), (1, 2))),
    ],
)
def test_tf_same_padding_rule(stride, kernel, size, expected):
    assert tf_same_padding(stride, kernel, size) == expected


def test_tf_same_padding_output_size_is_ceil():
    # with the SAME padding, a valid correlation gives ceil(in / s) outputs on every axis
    for n in range(1, 20):
        for k in range(1, 6):
            for s in range(1, 4):
                (before, after), _ = tf_same_padding(s, k, n)
                assert (n + before + after - k) // s + 1 == -(-n // s)


def test_keras_padding_acceptances():
    assert conv_padding_from_keras("valid", 2, 4) == (0, 0)
    assert conv_padding_from_keras("VALID", 1, 3, (5, 5)) == (0, 0)
    assert conv_padding_from_keras("same", 1, 3) == (1, 1)
    assert conv_padding_from_keras("same", 1, (5, 3)) == (2, 1)
    assert conv_padding_from_keras("same", 2, 3, (7, 9)) == (1, 1)
    assert conv_padding_from_keras("same", 2, 1, (6, 6)) == (0, 0)
    assert check_keras_padding("same", 1, 7) is None


def test_keras_same_padding_gives_tf_output():
    # 'same', stride 2, odd input: the npcam conv with the converted padding equals a
    # valid conv on the input padded by TF's rule
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 2, 7, 9))
    pads = tf_same_padding(2, 3, (7, 9))
    conv = npcam.Conv2d(2, 3, 3, stride=2, padding=conv_padding_from_keras("same", 2, 3, (7, 9)))
    ref = npcam.Conv2d(2, 3, 3, stride=2, padding=0)
    ref.weight, ref.bias = conv.weight, conv.bias
    xp = np.pad(x, ((0, 0), (0, 0), pads[0], pads[1]))
    np.testing.assert_allclose(conv.forward(x), ref.forward(xp), rtol=0, atol=1e-14)
    assert conv.forward(x).shape[2:] == (4, 5)


@pytest.mark.parametrize(
    ("stride", "kernel", "size", "expected"),
    [
        # TF's SAME: total = max((ceil(n/s) − 1)·s + k − n, 0), total // 2 before, the rest
        # after; npcam's 4-tuple is (left, right, top, bottom)
        (2, 3, (8, 8), (0, 1, 0, 1)),  # stride 2, even input: total 1, nothing before
        (1, 2, None, (0, 1, 0, 1)),  # even kernel at stride 1: k − 1 = 1
        (1, (3, 4), (6, 6), (1, 2, 1, 1)),  # rows symmetric, columns total 3
        (2, 3, (8, 7), (1, 1, 0, 1)),  # columns odd (total 2), rows even (total 1)
        ((2, 1), (4, 3), (9, 5), (1, 1, 1, 2)),  # rows: out 5, total 8 + 4 − 9 = 3
    ],
)
def test_keras_asymmetric_same_padding_is_a_four_tuple(stride, kernel, size, expected):
    """Where TF pads unequally, conv_padding_from_keras gives npcam's (left, right, top,
    bottom) — hand values of TF's SAME rule — and check_keras_padding accepts it."""
    assert conv_padding_from_keras("same", stride, kernel, size) == expected
    assert check_keras_padding("same", stride, kernel, size) is None


@pytest.mark.parametrize(("stride", "kernel", "size"), [(2, 3, (8, 10)), (2, (3, 4), (7, 9)),
                                                         (1, (2, 2), (5, 6)), (3, 5, (10, 8))])
def test_keras_asymmetric_same_padding_gives_tf_output(stride, kernel, size):
    """The converted padding reproduces TF's SAME: the layer equals the valid convolution
    (or max / average pool) of the input padded by numpy.pad with TF's ((top, bottom),
    (left, right)), and gives ceil(n / s) outputs per axis."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, *size))
    pads = tf_same_padding(stride, kernel, size)
    padding = conv_padding_from_keras("same", stride, kernel, size)
    assert len(padding) == 4  # every case pads unequally somewhere
    xp = np.pad(x, ((0, 0), (0, 0), pads[0], pads[1]))
    conv = npcam.Conv2d(3, 4, kernel, stride=stride, padding=padding)
    ref = npcam.Conv2d(3, 4, kernel, stride=stride, padding=0)
    ref.weight, ref.bias = conv.weight, conv.bias
    out = conv.forward(x)
    s = (stride, stride) if isinstance(stride, int) else stride
    assert out.shape[2:] == tuple(-(-n // si) for n, si in zip(size, s, strict=True))
    np.testing.assert_allclose(out, ref.forward(xp), rtol=0, atol=1e-13 * np.abs(out).max())
    # pools: TF's max-pool never picks the padding (npcam pads −inf); its average pool
    # divides by the real inputs of each window (count_include_pad=False)
    pooled = npcam.MaxPool2d(kernel, stride, padding).forward(x)
    xm = np.pad(x, ((0, 0), (0, 0), pads[0], pads[1]), constant_values=-1e300)
    np.testing.assert_array_equal(pooled, npcam.MaxPool2d(kernel, stride).forward(xm))
    avg = npcam.AvgPool2d(kernel, stride, padding, count_include_pad=False).forward(x)
    sums = npcam.AvgPool2d(kernel, stride).forward(xp)
    counts = npcam.AvgPool2d(kernel, stride).forward(np.pad(np.ones_like(x), ((0, 0), (0, 0), *pads)))
    np.testing.assert_allclose(avg, sums / counts, rtol=1e-14, atol=0)


def test_keras_padding_bad_arguments():
    with pytest.raises(ValueError, match="input_size"):
        conv_padding_from_keras("same", 2, 3)
    with pytest.raises(ValueError, match="'valid' or 'same'"):
        conv_padding_from_keras("causal", 1, 3)
    with pytest.raises(ValueError, match="'valid' or 'same'"):
        check_keras_padding(1, 1, 3)
    with pytest.raises(ValueError, match="stride"):
        conv_padding_from_keras("same", 0, 3, (5, 5))


# ---------------------------------------------------------------------------- from_torch
def test_from_torch_of_a_non_module_names_the_argument_without_torch(monkeypatch):
    """A88: with torch absent, ``from_torch(object())`` said "install the crosscheck extra"
    although the argument is no torch module at all. Now a TypeError names the argument,
    whether or not torch is installed."""
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(TypeError, match="module_or_state_dict must be a torch.nn.Module"):
        from_torch(object())


def test_from_torch_without_torch_names_the_extra(monkeypatch):
    """A torch module given where torch cannot be imported: ImportError naming the extra."""
    Module = type("Module", (), {"__module__": "torch.nn.modules.module"})
    Fake = type("Fake", (Module,), {})
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"pip install 'npcam\[crosscheck\]'"):
        from_torch(Fake())


def test_from_torch_state_dict_needs_no_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)

    def net():
        return npcam.Sequential(
            npcam.Conv2d(2, 3, 3), npcam.ReLU(), npcam.GlobalAvgPool2d(), npcam.Linear(3, 2)
        )

    source, target = net(), net()
    sd = {k: v.astype(np.float32) for k, v in source.state_dict().items()}
    out = from_torch(sd, architecture=target)
    assert out is target
    for key, value in out.state_dict().items():
        assert value.dtype == np.float64
        np.testing.assert_array_equal(value, sd[key].astype(np.float64))
    # a config dict builds a fresh model
    built = from_torch(sd, architecture=source.config())
    assert built is not source and built.config() == source.config()
    np.testing.assert_array_equal(built.state_dict()["3.weight"], sd["3.weight"])


def test_from_torch_state_dict_errors():
    model = npcam.Sequential(npcam.Linear(2, 2))
    with pytest.raises(ValueError, match="architecture"):
        from_torch({"0.weight": np.zeros((2, 2)), "0.bias": np.zeros(2)})
    with pytest.raises(ValueError, match="missing keys"):
        from_torch({"0.weight": np.zeros((2, 2))}, architecture=model)
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        from_torch({"0.weight": np.zeros((2, 3)), "0.bias": np.zeros(2)}, architecture=model)
    with pytest.raises(TypeError, match="architecture"):
        from_torch({"0.weight": np.zeros((2, 2)), "0.bias": np.zeros(2)}, architecture="vgg")
    with pytest.raises(ValueError, match="single layer"):
        from_torch({}, architecture=npcam.Linear(2, 2).config())


def test_state_dict_to_numpy_keeps_integer_buffers():
    out = interop.state_dict_to_numpy({"a": np.float32(1.5) * np.ones(2), "n": np.array(3)})
    assert out["a"].dtype == np.float64 and out["n"].dtype == np.int64
    with pytest.raises(ValueError, match="finite"):
        interop.state_dict_to_numpy({"a": np.array([np.nan])})
