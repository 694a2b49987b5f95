"""Explanation methods — what an implementer reads: one module per method, and the
registry :data:`METHODS` that lists them.

``_core`` (targets, the default layer, :class:`LayerGradients`, :class:`CAMResult`, the
weighted map), ``scores`` (y^c and its cotangent), ``cam``, ``grad_cam`` (with the
counterfactual), ``gradients`` (saliency, gradient × input, guided backprop, deconvnet),
``guided_grad_cam``, ``deconvnet_grad_cam``, ``identities`` (``cam_equivalence``) and
``registry``. The functions themselves are at the top level (``npcam.grad_cam``, ...).
"""

from __future__ import annotations

from ._core import CAMResult, LayerGradients, default_layer, layer_gradients, weighted_map
from .grad_cam import gradcam_weights
from .identities import CAMEquivalence
from .registry import METHODS, Method
from .scores import SCORES

__all__ = [
    "METHODS",
    "SCORES",
    "CAMEquivalence",
    "CAMResult",
    "LayerGradients",
    "Method",
    "default_layer",
    "gradcam_weights",
    "layer_gradients",
    "weighted_map",
]
