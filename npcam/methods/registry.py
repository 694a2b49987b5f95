r"""``METHODS``: every explanation method by its kebab-case name — the one extension point.

A method is one small module of :mod:`npcam.methods` and one :class:`Method` record here.
The CLI's ``--method`` choices, ``npcam evaluate``'s rows and ``npcam demo``'s panels all
iterate this mapping, so a new method is one file, one line below and its tests.

``kind``:

* ``"layer-weights"``: a map ``Σ_k α_k A^k`` from weights of shape (N, K) (CAM, Grad-CAM);
* ``"layer-elementwise"``: a map from per-position weights (N, K, h, w);
* ``"input"``: a map at input resolution, (N, C, H, W) or (N, H, W).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .cam import cam
from .deconvnet_grad_cam import deconvnet_grad_cam
from .grad_cam import counterfactual, grad_cam
from .gradients import deconvnet, gradient_x_input, guided_backprop, saliency
from .guided_grad_cam import guided_grad_cam

__all__ = ["KINDS", "METHODS", "Method"]

KINDS = ("layer-weights", "layer-elementwise", "input")


@dataclass(frozen=True)
class Method:
    """One explanation method: its names, what it needs, where it comes from.

    ``name`` kebab-case (``"grad-cam"``); ``display_name`` (``"Grad-CAM"``); ``kind`` one
    of :data:`KINDS`; ``needs_gradients``; ``needs_forward_passes`` (perturbation
    methods); ``supports_all_targets`` (``target="all"``); ``in_demo`` (a panel of
    ``npcam demo``); ``paper`` (citation with its arXiv id); ``equation``; ``function``
    (the public function, e.g. :func:`npcam.grad_cam`).
    """

    name: str
    display_name: str
    kind: str
    needs_gradients: bool
    needs_forward_passes: bool
    supports_all_targets: bool
    in_demo: bool
    paper: str
    equation: str
    function: Callable[..., Any]


_GRAD_CAM = "Selvaraju et al., Grad-CAM, ICCV 2017, arXiv 1610.02391"

_ALL = (
    Method("cam", "CAM", "layer-weights", False, False, True, True,
           "Zhou et al., Learning Deep Features for Discriminative Localization, CVPR 2016, arXiv 1512.04150",
           "M^c = Σ_k w^c_k A^k, w^c the FC row after GAP", cam),
    Method("grad-cam", "Grad-CAM", "layer-weights", True, False, True, True, _GRAD_CAM,
           "L^c = ReLU(Σ_k α^c_k A^k), α^c_k = (1/Z) Σ_ij ∂y^c/∂A^k_ij", grad_cam),
    Method("guided-backprop", "Guided Backprop", "input", True, False, False, True,
           "Springenberg et al., Striving for Simplicity, ICLR 2015 workshop, arXiv 1412.6806",
           "∂y^c/∂x with ReLU backward g·[x>0]·[g>0]", guided_backprop),
    Method("guided-grad-cam", "Guided Grad-CAM", "input", True, False, False, True, _GRAD_CAM + " (§ 3.1)",
           "upsample(L^c) ⊙ guided backprop", guided_grad_cam),
    Method("counterfactual", "Counterfactual", "layer-weights", True, False, True, True,
           _GRAD_CAM + " (§ 5)", "ReLU(Σ_k (−α^c_k) A^k)", counterfactual),
    Method("deconvnet-grad-cam", "Deconvolution Grad-CAM", "input", True, False, False, True,
           _GRAD_CAM + " (§ 3.1, § 4.2)", "upsample(L^c) ⊙ deconvnet", deconvnet_grad_cam),
    Method("saliency", "Saliency", "input", True, False, False, False,
           "Simonyan et al., Deep Inside Convolutional Networks, ICLR 2014 workshop, arXiv 1312.6034",
           "∂y^c/∂x", saliency),
    Method("gradient-x-input", "Gradient × input", "input", True, False, False, False,
           "Shrikumar et al., Not Just a Black Box, arXiv 1605.01713", "x ⊙ ∂y^c/∂x", gradient_x_input),
    Method("deconvnet", "Deconvnet", "input", True, False, False, False,
           "Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, ECCV 2014, "
           "arXiv 1311.2901",
           "∂y^c/∂x with ReLU backward g·[g>0]", deconvnet),
)

#: Every method by name, read-only, in the order the demo and the tables show them.
METHODS: Mapping[str, Method] = MappingProxyType({m.name: m for m in _ALL})
