r"""Deconvolution Grad-CAM (Selvaraju et al. 2017, § 3.1 and the class-discrimination
study of § 4.2): Grad-CAM fused with the deconvnet gradient instead of guided
backpropagation::

    D^c = upsample(L^c, H×W) ⊙ ∂y^c/∂x |deconvnet
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._core import Target
from .guided_grad_cam import grad_cam_times_input_gradient

__all__ = ["deconvnet_grad_cam"]


def deconvnet_grad_cam(
    model: Any, x: Any, target: Target = None, layer: str | None = None, mode: str = "bilinear",
    score: str = "logit", guided_relus: str = "all",
) -> np.ndarray:
    r"""Deconvolution Grad-CAM: ``upsample(L^c_Grad-CAM to H×W) ⊙ deconvnet``, the map
    broadcast over the input channels; (N, C, H, W).

    The deconvnet signal passes ``ReLU(g)`` back through every ReLU, ignoring the forward
    activation (:func:`npcam.deconvnet`). Arguments as :func:`npcam.guided_grad_cam`;
    captum computes the same product as ``LayerGradCam`` interpolated to the input times
    ``Deconvolution`` (its ``GuidedGradCam`` recipe with the deconvnet rule).
    """
    return grad_cam_times_input_gradient(model, x, target, layer, mode, score, "deconvnet", guided_relus)
