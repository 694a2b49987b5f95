"""npcam: a pure-NumPy reference implementation of CAM, Grad-CAM, Guided Backpropagation,
Guided Grad-CAM and counterfactual maps (Selvaraju et al., ICCV 2017), built on a small
CNN whose backward passes are derived by hand.

Every quantity of the paper is an explicit array: the feature maps ``A^k``
(``activations``), the score ``y^c`` (``scores``), ``∂y^c/∂A^k`` (``gradients``), the
weights ``α^c_k`` (``weights``) and the map ``L^c`` (``cam``).
"""

from . import functional, gradcheck
from ._version import __version__
from .layers import (
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    Layer,
    Linear,
    MaxPool2d,
    ReLU,
)
from .model import Sequential, fold_batchnorm, load_model, load_weights, model_from_config

__all__ = [
    "BatchNorm2d",
    "Conv2d",
    "Dropout",
    "Flatten",
    "GlobalAvgPool2d",
    "Layer",
    "Linear",
    "MaxPool2d",
    "ReLU",
    "Sequential",
    "__version__",
    "fold_batchnorm",
    "functional",
    "gradcheck",
    "load_model",
    "load_weights",
    "model_from_config",
]
