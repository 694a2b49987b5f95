r"""Keras / TensorFlow layouts into npcam's (pure NumPy; Keras itself is never imported).

Keras stores images NHWC, conv kernels HWIO ``(kH, kW, C_in,
C_out)`` and dense kernels ``(in, out)``; ``Flatten`` of an NHWC map orders features
H·W·C, npcam's (as torch's) C·H·W. The converters below are pure NumPy. Keras' ``Conv2D``
is a cross-correlation like torch's (no kernel flip). Its ``padding="same"`` pads
asymmetrically in some cases (the extra pixel after): :func:`conv_padding_from_keras`
then gives npcam's ``padding=(left, right, top, bottom)``; the rule is
:func:`tf_same_padding`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validate import as_float_array, as_pair, as_positive_int

__all__ = [
    "check_keras_padding",
    "conv_padding_from_keras",
    "conv_weight_from_keras",
    "dense_after_flatten_from_keras",
    "dense_weight_from_keras",
    "images_from_nhwc",
    "images_to_nhwc",
    "tf_same_padding",
]


def conv_weight_from_keras(kernel: Any) -> np.ndarray:
    """A Keras ``Conv2D`` kernel, HWIO ``(kH, kW, C_in, C_out)``, as npcam's / torch's
    OIHW ``(C_out, C_in, kH, kW)``: ``out[o, i, h, w] = kernel[h, w, i, o]``. No flip:
    both frameworks compute a cross-correlation. The bias is the same vector in both."""
    k = as_float_array("kernel", kernel, 4)
    return np.ascontiguousarray(k.transpose(3, 2, 0, 1))


def dense_weight_from_keras(kernel: Any) -> np.ndarray:
    """A Keras ``Dense`` kernel ``(in, out)`` (``y = x @ kernel + b``) as npcam's
    ``Linear.weight`` ``(out, in)`` (``y = x @ weight.T + b``): the transpose.

    Only valid when the Dense input is not a flattened NHWC map; for that case use
    :func:`dense_after_flatten_from_keras`."""
    k = as_float_array("kernel", kernel, 2)
    return np.ascontiguousarray(k.T)


def images_from_nhwc(images: Any) -> np.ndarray:
    """Images (or feature maps) NHWC ``(N, H, W, C)`` → NCHW ``(N, C, H, W)``, float64."""
    x = as_float_array("images", images, 4)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def images_to_nhwc(images: Any) -> np.ndarray:
    """NCHW ``(N, C, H, W)`` → NHWC ``(N, H, W, C)``, float64: the inverse of
    :func:`images_from_nhwc` (e.g. to compare npcam's guided backprop with a Keras one)."""
    x = as_float_array("images", images, 4)
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def dense_after_flatten_from_keras(kernel: Any, feature_shape: Any) -> np.ndarray:
    r"""The kernel of a Keras ``Dense`` that follows ``Flatten`` of an NHWC map, as the
    ``(out, C·H·W)`` weight of an npcam ``Linear`` after npcam's NCHW ``Flatten``.

    Keras flattens ``(H, W, C)`` with feature index ``(h·W + w)·C + c``; npcam (as torch)
    flattens ``(C, H, W)`` with ``(c·H + h)·W + w``. The same dense layer therefore has its
    input rows permuted: ``out[o, (c·H + h)·W + w] = kernel[(h·W + w)·C + c, o]``, so that
    ``flatten_nhwc(x) @ kernel == flatten_nchw(x) @ out.T`` for every map x.

    Parameters
    ----------
    kernel : ``(H·W·C, out)``, the Keras Dense kernel.
    feature_shape : ``(H, W, C)``, the Keras (channels-last) shape of the map that was
        flattened, without the batch axis.
    """
    k = as_float_array("kernel", kernel, 2)
    if not isinstance(feature_shape, (tuple, list)) or len(feature_shape) != 3:
        raise ValueError(f"feature_shape must be (H, W, C), got {feature_shape!r}.")
    h, w, c = (as_positive_int("feature_shape", v) for v in feature_shape)
    if k.shape[0] != h * w * c:
        raise ValueError(
            f"kernel must have H·W·C = {h * w * c} rows for feature_shape {(h, w, c)}, "
            f"got shape {k.shape}."
        )
    out = k.reshape(h, w, c, k.shape[1]).transpose(3, 2, 0, 1)  # (out, C, H, W)
    return np.ascontiguousarray(out.reshape(k.shape[1], c * h * w))


Pair = tuple[int, int]


def _padding_args(padding: Any, stride: Any, kernel_size: Any) -> tuple[str, Pair, Pair]:
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same' (Keras' values), got {padding!r}.")
    return padding.lower(), as_pair("stride", stride), as_pair("kernel_size", kernel_size)


def tf_same_padding(stride: Any, kernel_size: Any, input_size: Any) -> tuple[Pair, Pair]:
    r"""The padding TensorFlow applies for ``padding="SAME"``: ``((top, bottom), (left,
    right))``.

    TF's rule, per axis (``tf.nn.convolution`` docs, "SAME" padding; the same for
    ``Conv2D`` and ``MaxPooling2D``)::

        out         = ceil(in / s)
        pad_total   = max((out − 1)·s + k − in, 0)
        pad_before  = pad_total // 2
        pad_after   = pad_total − pad_before      (the extra pixel goes after)

    So the padding is symmetric exactly when ``pad_total`` is even: always for stride 1
    and an odd kernel (``pad = (k − 1)/2``); for stride 2 and k = 3 only when ``in`` is
    odd (an even input gives ``pad_total = 1``: nothing before, one pixel after).
    """
    (sh, sw), (kh, kw) = as_pair("stride", stride), as_pair("kernel_size", kernel_size)
    ih, iw = as_pair("input_size", input_size)

    def axis(n: int, k: int, s: int) -> tuple[int, int]:
        out = -(-n // s)
        total = max((out - 1) * s + k - n, 0)
        return total // 2, total - total // 2

    return axis(ih, kh, sh), axis(iw, kw, sw)


def _keras_pads(padding: Any, stride: Any, kernel_size: Any, input_size: Any) -> tuple[Pair, Pair]:
    """``((top, bottom), (left, right))`` of Keras' ``padding``, or ``ValueError`` when the
    arguments do not determine it."""
    mode, (sh, sw), (kh, kw) = _padding_args(padding, stride, kernel_size)
    if mode == "valid":
        return (0, 0), (0, 0)
    if input_size is None:
        if (sh, sw) != (1, 1):
            raise ValueError(
                f"padding='same' with stride {(sh, sw)} depends on the input size; pass "
                "input_size=(H, W) of this layer's input."
            )
        # stride 1: k − 1 in total whatever the size, the extra pixel after
        return ((kh - 1) // 2, kh - 1 - (kh - 1) // 2), ((kw - 1) // 2, kw - 1 - (kw - 1) // 2)
    return tf_same_padding((sh, sw), (kh, kw), input_size)


def check_keras_padding(padding: Any, stride: Any, kernel_size: Any, input_size: Any = None) -> None:
    """Raise ``ValueError`` when Keras' ``padding`` arguments do not determine the padding;
    return None when they do (npcam expresses every Keras padding now, the asymmetric ones
    as ``(left, right, top, bottom)``; see :func:`conv_padding_from_keras`).

    ``padding`` must be ``"valid"`` or ``"same"`` (any case). With stride 1 the ``"same"``
    padding does not depend on the input size (``k − 1`` in total), so ``input_size`` may
    be omitted; with a larger stride it is needed.
    """
    _keras_pads(padding, stride, kernel_size, input_size)


def conv_padding_from_keras(
    padding: Any, stride: Any, kernel_size: Any, input_size: Any = None
) -> tuple[int, int] | tuple[int, int, int, int]:
    """npcam's ``padding=`` for a Keras ``Conv2D(padding=...)`` (and ``MaxPooling2D`` /
    ``AveragePooling2D``, which pad by the same rule).

    ``"valid"`` → ``(0, 0)``. ``"same"`` → TF's padding (:func:`tf_same_padding`: in total
    ``max((ceil(n/s) − 1)·s + k − n, 0)`` per axis, ``total // 2`` before and the rest
    after): the pair ``(p_h, p_w)`` when both sides of each axis are equal, e.g.
    ``(k − 1)/2`` for stride 1 and odd k; else the 4-tuple ``(left, right, top, bottom)``
    (``torch.nn.functional.pad``'s order) that ``Conv2d``, ``MaxPool2d`` and ``AvgPool2d``
    take, e.g. ``(0, 1, 0, 1)`` for stride 2, kernel 3 and an even input. ``input_size``
    (H, W) of the layer's input is needed for ``"same"`` with a stride above 1.

    For pooling: TF's ``"same"`` max-pool never picks the padding (as npcam's −inf
    padding) and its average pool divides by the real inputs of each window
    (``AvgPool2d(count_include_pad=False)``); the padding is at most ``k // 2`` per side,
    so npcam's pools accept it.
    """
    (top, bottom), (left, right) = _keras_pads(padding, stride, kernel_size, input_size)
    if top == bottom and left == right:
        return top, left
    return left, right, top, bottom
