"""npcam: a pure-NumPy reference implementation of CAM, Grad-CAM, Guided Backpropagation,
Guided Grad-CAM and counterfactual maps (Selvaraju et al., ICCV 2017), built on a small
CNN whose backward passes are derived by hand.

Every quantity of the paper is an explicit array: the feature maps ``A^k``
(``activations``), the score ``y^c`` (``scores``), ``∂y^c/∂A^k`` (``gradients``), the
weights ``α^c_k`` (``weights``) and the map ``L^c`` (``cam``).

The names below are loaded on first use (PEP 562), so ``import npcam`` loads neither
scipy, Pillow nor argparse.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

# public name -> the module that defines it (relative to this package)
_NAMES: dict[str, str] = {
    # the network
    "Layer": ".nn.layers",
    "BatchNorm2d": ".nn.layers",
    "Conv2d": ".nn.layers",
    "Dropout": ".nn.layers",
    "Flatten": ".nn.layers",
    "GlobalAvgPool2d": ".nn.layers",
    "Linear": ".nn.layers",
    "MaxPool2d": ".nn.layers",
    "ReLU": ".nn.layers",
    "AvgPool2d": ".nn.layers",
    "AdaptiveAvgPool2d": ".nn.layers",
    "ReLU6": ".nn.activations",
    "Hardswish": ".nn.activations",
    "Hardsigmoid": ".nn.activations",
    "SiLU": ".nn.activations",
    "Sigmoid": ".nn.activations",
    "GELU": ".nn.activations",
    "LayerNorm": ".nn.activations",
    "Add": ".nn.ops",
    "Sub": ".nn.ops",
    "Sum": ".nn.ops",
    "Pad": ".nn.ops",
    "Erf": ".nn.ops",
    "Div": ".nn.ops",
    "ClipAffine": ".nn.ops",
    "AddConstant": ".nn.ops",
    "Chunk": ".nn.ops",
    "Concat": ".nn.ops",
    "Identity": ".nn.ops",
    "Index": ".nn.ops",
    "Mean": ".nn.ops",
    "Mul": ".nn.ops",
    "MulConstant": ".nn.ops",
    "Parameter": ".nn.ops",
    "Permute": ".nn.ops",
    "Reshape": ".nn.ops",
    "Split": ".nn.ops",
    "Transpose": ".nn.ops",
    "Unsqueeze": ".nn.ops",
    "View": ".nn.ops",
    "Sequential": ".nn.sequential",
    "Graph": ".nn.graph",
    "Node": ".nn.graph",
    "fold_batchnorm": ".nn.fold",
    "model_from_config": ".nn.config",
    "load_model": ".nn.io",
    "load_weights": ".nn.io",
    # the methods
    "CAMEquivalence": ".methods.identities",
    "CAMResult": ".methods._core",
    "METHODS": ".methods.registry",
    "cam": ".methods.cam",
    "cam_equivalence": ".methods.identities",
    "counterfactual": ".methods.grad_cam",
    "deconvnet": ".methods.gradients",
    "deconvnet_grad_cam": ".methods.deconvnet_grad_cam",
    "grad_cam": ".methods.grad_cam",
    "gradient_x_input": ".methods.gradients",
    "guided_backprop": ".methods.gradients",
    "guided_grad_cam": ".methods.guided_grad_cam",
    "saliency": ".methods.gradients",
    # the CAM family
    "grad_cam_pp": ".methods.grad_cam_pp",
    "smooth_grad_cam_pp": ".methods.smooth_grad_cam_pp",
    "xgrad_cam": ".methods.xgrad_cam",
    "hires_cam": ".methods.hires_cam",
    "grad_cam_elementwise": ".methods.grad_cam_elementwise",
    "layer_cam": ".methods.layer_cam",
    "layer_cam_fuse": ".methods.layer_cam",
    "score_cam": ".methods.score_cam",
    "ss_cam": ".methods.ss_cam",
    "is_cam": ".methods.is_cam",
    "ablation_cam": ".methods.ablation_cam",
    "eigen_cam": ".methods.eigen_cam",
    "eigen_grad_cam": ".methods.eigen_grad_cam",
    "full_grad": ".methods.full_grad",
    # images
    "apply_colormap": ".image",
    "colormap": ".image",
    "load_image": ".image",
    "normalize": ".image",
    "overlay": ".image",
    "save_image": ".image",
    "upsample": ".image",
    # other frameworks, verification
    "from_torch": ".interop.torch",
    "from_onnx": ".interop.onnx",
    "show_versions": ".verify.environment",
    "diagnose": ".verify.diagnose",
    # warnings (rule R3)
    "NpcamWarning": "._warnings",
    "NumericalWarning": "._warnings",
    "InplaceOpWarning": "._warnings",
    "WeakTestInputWarning": "._warnings",
}

# subpackages and modules reachable as attributes of npcam
_MODULES = (
    "conventions",
    "evaluation",
    "gradcheck",
    "image",
    "interop",
    "methods",
    "nn",
    "train",
    "vectors",
    "verify",
    "zoo",
)

__all__ = sorted([*_NAMES, *_MODULES, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name], __name__), name)
    elif name in _MODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what static checkers and IDEs see
    from . import conventions, evaluation, gradcheck, image, interop, methods, nn, train, vectors, verify, zoo
    from ._warnings import InplaceOpWarning, NpcamWarning, NumericalWarning, WeakTestInputWarning
    from .image import apply_colormap, colormap, load_image, normalize, overlay, save_image, upsample
    from .interop.torch import from_torch
    from .methods._core import CAMResult
    from .methods.ablation_cam import ablation_cam
    from .methods.cam import cam
    from .methods.deconvnet_grad_cam import deconvnet_grad_cam
    from .methods.eigen_cam import eigen_cam
    from .methods.eigen_grad_cam import eigen_grad_cam
    from .methods.full_grad import full_grad
    from .methods.grad_cam import counterfactual, grad_cam
    from .methods.grad_cam_elementwise import grad_cam_elementwise
    from .methods.grad_cam_pp import grad_cam_pp
    from .methods.gradients import deconvnet, gradient_x_input, guided_backprop, saliency
    from .methods.guided_grad_cam import guided_grad_cam
    from .methods.hires_cam import hires_cam
    from .methods.identities import CAMEquivalence, cam_equivalence
    from .methods.is_cam import is_cam
    from .methods.layer_cam import layer_cam, layer_cam_fuse
    from .methods.registry import METHODS
    from .methods.score_cam import score_cam
    from .methods.smooth_grad_cam_pp import smooth_grad_cam_pp
    from .methods.ss_cam import ss_cam
    from .methods.xgrad_cam import xgrad_cam
    from .nn.activations import GELU, Hardsigmoid, Hardswish, LayerNorm, ReLU6, Sigmoid, SiLU
    from .nn.config import model_from_config
    from .nn.fold import fold_batchnorm
    from .nn.graph import Graph, Node
    from .nn.io import load_model, load_weights
    from .nn.layers import (
        AdaptiveAvgPool2d,
        AvgPool2d,
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
    from .nn.ops import (
        Add,
        AddConstant,
        Chunk,
        Concat,
        Identity,
        Index,
        Mean,
        Mul,
        MulConstant,
        Parameter,
        Permute,
        Reshape,
        Split,
        Transpose,
        Unsqueeze,
        View,
    )
    from .nn.sequential import Sequential
    from .verify.diagnose import diagnose
    from .verify.environment import show_versions
