r"""Gradient visualisations at input resolution: y^c backpropagated to x with one of the
three ReLU backward rules (DESIGN.md).

* saliency (Simonyan et al. 2014, arXiv 1312.6034): the plain gradient ``∂y^c/∂x``;
* gradient × input: ``x ⊙ ∂y^c/∂x``;
* guided backpropagation (Springenberg et al. 2014, arXiv 1412.6806): every ReLU passes
  back ``g·[x > 0]·[g > 0]``;
* deconvnet (Zeiler & Fergus 2014, arXiv 1311.2901): every ReLU passes back ``ReLU(g)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._core import Target, input_gradient

__all__ = ["deconvnet", "gradient_x_input", "guided_backprop", "saliency"]


def saliency(model: Any, x: Any, target: Target = None, score: str = "logit") -> np.ndarray:
    r"""The plain input gradient ``∂y^c/∂x`` (Simonyan et al. 2014), (N, C, H, W).

    ``target`` None (predicted class), an int or N ints; ``score`` as :func:`npcam.grad_cam`.
    """
    return input_gradient(model, x, target, score, "standard")[0]


def gradient_x_input(model: Any, x: Any, target: Target = None, score: str = "logit") -> np.ndarray:
    r"""``x ⊙ ∂y^c/∂x``, (N, C, H, W)."""
    g, trace, _ = input_gradient(model, x, target, score, "standard")
    return g * trace.input


_GUIDED_RELUS_DOC = """
    ``guided_relus``: which ReLUs the rule applies to. ``"all"`` (the default): every ReLU
    node, module or function (``F.relu``). ``"modules"``: only ReLU nodes that came from an
    ``nn.ReLU`` module (``Node.from_module`` of a :class:`~npcam.Graph`) — what captum's
    ``GuidedBackprop`` and pytorch-grad-cam do, since they replace ``nn.ReLU`` modules, so
    torch code's ``F.relu`` calls (GoogLeNet's 57, Inception-v3's 94) keep the standard
    rule there. On a :class:`~npcam.Sequential` both values mean every ReLU layer. Other
    activations (ReLU6, Hardswish, SiLU, GELU, Sigmoid) always pass their ordinary
    derivative: the rule is defined for ReLU only."""


def guided_backprop(model: Any, x: Any, target: Target = None, score: str = "logit",
                    guided_relus: str = "all") -> np.ndarray:
    r"""Guided backpropagation (Springenberg et al. 2014): ``∂y^c/∂x`` with every ReLU
    passing back ``g·[x > 0]·[g > 0]`` (only positive signal through active units);
    (N, C, H, W).
    """
    return input_gradient(model, x, target, score, "guided", guided_relus)[0]


def deconvnet(model: Any, x: Any, target: Target = None, score: str = "logit",
              guided_relus: str = "all") -> np.ndarray:
    r"""Deconvnet (Zeiler & Fergus 2014): ``∂y^c/∂x`` with every ReLU passing back
    ``ReLU(g)``, ignoring the forward activation; (N, C, H, W).
    """
    return input_gradient(model, x, target, score, "deconvnet", guided_relus)[0]


guided_backprop.__doc__ = (guided_backprop.__doc__ or "") + _GUIDED_RELUS_DOC
deconvnet.__doc__ = (deconvnet.__doc__ or "") + _GUIDED_RELUS_DOC
