"""Explanation methods: CAM, Grad-CAM, the counterfactual, the gradient visualisations and
Guided Grad-CAM, and the registry that lists them."""

from __future__ import annotations

from ._core import (
    SCORES,
    CAMEquivalence,
    CAMResult,
    cam,
    cam_equivalence,
    counterfactual,
    deconvnet,
    default_layer,
    grad_cam,
    gradcam_weights,
    gradient_x_input,
    guided_backprop,
    guided_grad_cam,
    saliency,
    weighted_map,
)

__all__ = [
    "SCORES",
    "CAMEquivalence",
    "CAMResult",
    "cam",
    "cam_equivalence",
    "counterfactual",
    "deconvnet",
    "default_layer",
    "grad_cam",
    "gradcam_weights",
    "gradient_x_input",
    "guided_backprop",
    "guided_grad_cam",
    "saliency",
    "weighted_map",
]
