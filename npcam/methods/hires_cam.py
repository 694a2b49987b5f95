r"""HiResCAM (Draelos & Carin, *Use HiResCAM instead of Grad-CAM for faithful
explanations of convolutional neural networks*, arXiv 2011.08891, 2020).

Grad-CAM averages the gradient over space before it multiplies the activations; HiResCAM
multiplies them position by position::

    M^c_ij = Σ_k (∂y^c/∂A^k_ij) · A^k_ij    (``raw``; per-position weights g = ∂y^c/∂A)
    L^c    = ReLU(M^c)                       (``cam``)

Exact properties (cam-family.md § 3):

* when the layer feeds GAP → FC, g^k = w^c_k / Z in every position and M^c is
  Grad-CAM's map exactly;
* completeness: then ``Σ_ij M^c_ij = y^c − b_c`` (the FC bias), and more generally
  ``Σ_ij M^c_ij = y^c`` for a bias-free piecewise-linear head after the layer;
* g ⊙ A passes a ReLU unchanged (g_pre = g_post·[A_pre > 0], A_post = ReLU(A_pre)): the
  map of a conv output equals the map of the ReLU after it.
"""

from __future__ import annotations

from typing import Any

from ._core import CAMResult, Target, elementwise_result, layer_gradients

__all__ = ["hires_cam"]


def hires_cam(
    model: Any,
    x: Any,
    target: Target = None,
    layer: str | None = None,
    *,
    score: str = "logit",
) -> CAMResult:
    r"""HiResCAM: ``L^c = ReLU(Σ_k ∂y^c/∂A^k ⊙ A^k)``, element-wise, no averaging.

    The paper's definition of HiResCAM (Draelos & Carin 2020: the sum over the feature
    maps of the element-wise product of the gradient and the feature map; section number
    not checked against the text), with npcam's usual
    split: ``raw`` is the signed sum and ``cam`` its ReLU. pytorch-grad-cam 1.5.7's
    ``HiResCAM`` computes the same map (convention ``"pytorch-grad-cam"`` of
    ``npcam.conventions.cam("hires-cam", ...)``, then its ReLU and scaling); torchcam and
    tf-keras-vis have no HiResCAM.

    Parameters
    ----------
    model : npcam.nn.Model
        Any model implementing the protocol (:class:`npcam.Sequential`,
        :class:`npcam.Graph`).
    x : array_like, (N, C, H, W)
        The input batch.
    target : None, int, N ints or "all"
        None: the predicted class per image; "all": every class (a class axis after N).
    layer : str or None
        The feature maps A; default as :func:`npcam.grad_cam`.
    score : {"logit", "softmax", "log_softmax"}
        The scalar y^c; the paper differentiates the class score before softmax
        ("logit", the default).

    Returns
    -------
    CAMResult
        ``cam`` L^c (N, h, w); ``raw`` M^c (signed); ``weights`` the per-position weights
        g = ∂y^c/∂A (N, K, h, w), so that ``raw = Σ_k weights ⊙ A``; ``activations``,
        ``gradients`` (the same array as ``weights``), ``scores`` y^c, ``target``,
        ``layer``; ``extra`` is empty. With ``target="all"`` a class axis follows N:
        ``weights`` (N, C, K, h, w), ``cam`` (N, C, h, w), ...
    """
    lg = layer_gradients(model, x, target, layer, score, allow_all=True, full_trace="layer")
    return elementwise_result(lg.gradients, lg.activations, lg.gradients, lg.scores, lg.target, lg.layer)
