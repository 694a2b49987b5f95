"""npcam: a pure-NumPy reference implementation of CAM, Grad-CAM, Guided Backpropagation,
Guided Grad-CAM and counterfactual maps (Selvaraju et al., ICCV 2017), built on a small
CNN whose backward passes are derived by hand.

Every quantity of the paper is an explicit array: the feature maps ``A^k``
(``activations``), the score ``y^c`` (``scores``), ``∂y^c/∂A^k`` (``gradients``), the
weights ``α^c_k`` (``weights``) and the map ``L^c`` (``cam``).
"""

from . import conventions, data, explain, functional, gradcheck, image, interop, metrics, train, vectors, zoo
from ._version import __version__
from ._versions import show_versions
from .explain import (
    CAMEquivalence,
    CAMResult,
    cam,
    cam_equivalence,
    counterfactual,
    deconvnet,
    grad_cam,
    gradient_x_input,
    guided_backprop,
    guided_grad_cam,
    saliency,
)
from .image import apply_colormap, colormap, load_image, normalize, overlay, save_image, upsample
from .interop import from_torch
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
    "CAMEquivalence",
    "CAMResult",
    "apply_colormap",
    "cam",
    "cam_equivalence",
    "colormap",
    "conventions",
    "data",
    "counterfactual",
    "deconvnet",
    "explain",
    "from_torch",
    "interop",
    "show_versions",
    "train",
    "vectors",
    "zoo",
    "grad_cam",
    "gradient_x_input",
    "guided_backprop",
    "guided_grad_cam",
    "image",
    "load_image",
    "normalize",
    "overlay",
    "saliency",
    "save_image",
    "upsample",
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
    "metrics",
    "model_from_config",
]
