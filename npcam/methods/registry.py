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

from .ablation_cam import ablation_cam
from .cam import cam
from .deconvnet_grad_cam import deconvnet_grad_cam
from .eigen_cam import eigen_cam
from .eigen_grad_cam import eigen_grad_cam
from .full_grad import full_grad
from .grad_cam import counterfactual, grad_cam
from .grad_cam_elementwise import grad_cam_elementwise
from .grad_cam_pp import grad_cam_pp
from .gradients import deconvnet, gradient_x_input, guided_backprop, saliency
from .guided_grad_cam import guided_grad_cam
from .hires_cam import hires_cam
from .is_cam import is_cam
from .layer_cam import layer_cam
from .score_cam import score_cam
from .smooth_grad_cam_pp import smooth_grad_cam_pp
from .ss_cam import ss_cam
from .xgrad_cam import xgrad_cam

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
    # the CAM family (0.5.0)
    Method("grad-cam++", "Grad-CAM++", "layer-weights", True, False, True, True,
           "Chattopadhay et al., Grad-CAM++, WACV 2018, arXiv 1710.11063",
           "w_k = Σ_ij α^kc_ij ReLU(g), α = g²/(2g² + (Σ_ab A_ab)·g³) (eq. 19)", grad_cam_pp),
    Method("xgrad-cam", "XGrad-CAM", "layer-weights", True, False, True, False,
           "Fu et al., Axiom-based Grad-CAM, BMVC 2020, arXiv 2008.02312",
           "α_k = Σ_ij (A^k_ij / Σ_ab A^k_ab) g^k_ij", xgrad_cam),
    Method("hires-cam", "HiResCAM", "layer-elementwise", True, False, True, True,
           "Draelos & Carin, Use HiResCAM instead of Grad-CAM, arXiv 2011.08891",
           "M = Σ_k g^k ⊙ A^k", hires_cam),
    Method("grad-cam-elementwise", "Grad-CAM element-wise", "layer-elementwise", True, False, True, False,
           "Pillai & Pirsiavash, Explainable Models with Consistent Interpretations, AAAI 2021, "
           "arXiv 2103.15823",
           "M = Σ_k ReLU(g^k ⊙ A^k)", grad_cam_elementwise),
    Method("layer-cam", "LayerCAM", "layer-elementwise", True, False, True, False,
           "Jiang et al., LayerCAM, IEEE TIP 2021, doi 10.1109/TIP.2021.3089943 (no arXiv id)",
           "M = ReLU(Σ_k ReLU(g^k) ⊙ A^k)", layer_cam),
    Method("score-cam", "Score-CAM", "layer-weights", False, True, True, True,
           "Wang et al., Score-CAM, CVPR workshops 2020, arXiv 1910.01279",
           "α = softmax_k(f_c(X ∘ H^k) − f_c(X_b)), H^k = minmax(Up(A^k))", score_cam),
    Method("ss-cam", "SS-CAM", "layer-weights", False, True, True, False,
           "Wang et al., SS-CAM: Smoothed Score-CAM, arXiv 2006.14255",
           "Score-CAM with the scores averaged over masks H^k + N(0, σ²)", ss_cam),
    Method("is-cam", "IS-CAM", "layer-weights", False, True, True, False,
           "Naidu et al., IS-CAM: Integrated Score-CAM, arXiv 2010.03023",
           "Score-CAM with the scores averaged over the masked input scaled along a path", is_cam),
    Method("ablation-cam", "Ablation-CAM", "layer-weights", False, True, True, False,
           "Desai & Ramaswamy, Ablation-CAM, WACV 2020, doi 10.1109/WACV45572.2020.9093360 (no arXiv id)",
           "w_k = (y^c − y^c_k) / y^c, y^c_k with A^k := 0", ablation_cam),
    Method("eigen-cam", "Eigen-CAM", "layer-weights", False, False, False, False,
           "Muhammad & Yeasin, Eigen-CAM, IJCNN 2020, arXiv 2008.00299",
           "L = O v₁, O = A as (hw × K), v₁ its first right singular vector", eigen_cam),
    Method("eigen-grad-cam", "EigenGrad-CAM", "layer-elementwise", True, False, False, False,
           "pytorch-grad-cam's construction (no paper): Eigen-CAM of g ⊙ A; see Eigen-CAM, arXiv 2008.00299",
           "L = (g ⊙ A as hw × K) v₁", eigen_grad_cam),
    Method("full-grad", "FullGrad", "input", True, False, False, False,
           "Srinivas & Fleuret, Full-Gradient Representation for Neural Network Visualization, "
           "NeurIPS 2019, arXiv 1905.00780",
           "S = ψ(∇ₓf ⊙ x) + Σ_l Σ_c ψ(b_l ⊙ ∂f/∂z_l)", full_grad),
    Method("smooth-grad-cam++", "SmoothGrad-CAM++", "layer-weights", True, False, False, False,
           "Omeiza et al., Smooth Grad-CAM++, arXiv 1908.01224",
           "Grad-CAM++ with D¹, D², D³ averaged over x + N(0, σ²)", smooth_grad_cam_pp),
)

#: Every method by name, read-only, in the order the demo and the tables show them.
METHODS: Mapping[str, Method] = MappingProxyType({m.name: m for m in _ALL})
