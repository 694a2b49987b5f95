r"""Guided Grad-CAM (§ 3.1): the Grad-CAM map upsampled to the input size, times the
guided-backpropagation gradient, per input channel::

    G^c = upsample(L^c, H×W) ⊙ ∂y^c/∂x |guided
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._core import Target, layer_gradients, targets
from .grad_cam import gradcam_weights
from .scores import scores_and_cotangent

__all__ = ["guided_grad_cam", "grad_cam_times_input_gradient"]


def grad_cam_times_input_gradient(
    model: Any, x: Any, target: Target, layer: str | None, mode: str, score: str, relu_rule: str,
    guided_relus: str = "all",
) -> np.ndarray:
    """``upsample(L^c) ⊙ ∂y^c/∂x`` with the given ReLU rule, from one forward pass."""
    from ..image.resize import upsample
    from ._core import map_result, relu_options

    options = relu_options(guided_relus)
    if isinstance(target, str):
        targets(target, np.zeros((1, 1)), allow_all=False)  # the same message as elsewhere
    lg = layer_gradients(model, x, target, layer, score, allow_all=False, full_trace="input")
    r = map_result(gradcam_weights(lg.gradients), lg.activations, lg.gradients, lg.scores,
                   lg.target, lg.layer)
    _, cotangent = scores_and_cotangent(lg.trace.output, lg.target, score)
    g = model.vjp(lg.trace, cotangent, relu_rule=relu_rule, **options).grad
    # the map broadcast over the input's channel axis: axis 1, or the last one for a graph
    # that reads its input channels-last (a Keras model through ONNX)
    channels_last = getattr(model, "channels_last_input", None)
    if callable(channels_last) and channels_last() and g.ndim == 4:
        return upsample(r.cam, g.shape[1:3], mode=mode)[..., None] * g
    up = upsample(r.cam, g.shape[2:], mode=mode)
    return up[:, None] * g


def guided_grad_cam(
    model: Any, x: Any, target: Target = None, layer: str | None = None, mode: str = "bilinear",
    score: str = "logit", guided_relus: str = "all",
) -> np.ndarray:
    r"""Guided Grad-CAM (§ 3.1): ``upsample(L^c_Grad-CAM to H×W) ⊙ guided backprop``,
    the map broadcast over the input channels; (N, C, H, W) — (N, H, W, C), the input's
    layout, for a graph that reads its input channels-last
    (:meth:`npcam.Graph.channels_last_input`).

    ``mode`` is the upsampling (``"bilinear"`` with half-pixel centres, or
    ``"nearest"``, as :func:`npcam.upsample`); captum's ``GuidedGradCam`` uses
    ``"nearest"`` by default. The other arguments as :func:`npcam.grad_cam`; ``target``
    cannot be ``"all"``. ``guided_relus`` ("all" or "modules") as
    :func:`npcam.guided_backprop`.
    """
    return grad_cam_times_input_gradient(model, x, target, layer, mode, score, "guided", guided_relus)
