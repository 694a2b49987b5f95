"""Other frameworks' models and arrays into npcam: ``torch`` (:func:`from_torch`; torch is
imported only inside its functions) and ``keras`` (layout converters, pure NumPy)."""

from __future__ import annotations

from .keras import (
    check_keras_padding,
    conv_padding_from_keras,
    conv_weight_from_keras,
    dense_after_flatten_from_keras,
    dense_weight_from_keras,
    images_from_nhwc,
    images_to_nhwc,
    tf_same_padding,
)
from .torch import CROSSCHECK_HINT, from_torch, state_dict_to_numpy

__all__ = [
    "CROSSCHECK_HINT",
    "check_keras_padding",
    "conv_padding_from_keras",
    "conv_weight_from_keras",
    "dense_after_flatten_from_keras",
    "dense_weight_from_keras",
    "from_torch",
    "images_from_nhwc",
    "images_to_nhwc",
    "state_dict_to_numpy",
    "tf_same_padding",
]
