"""LayerCAM's conventions: npcam's own map, pytorch-grad-cam 1.5.7's ``LayerCAM``,
torchcam 0.5.0's ``LayerCAM`` and tf-keras-vis 0.8.7's ``Layercam`` — one layer each.

All four compute the paper's single-layer map ``ReLU(Σ_k ReLU(g) ⊙ A)``; they differ only
in what follows (normalisation, resizing) and, for tf-keras-vis, in the default score. None
applies the paper's eq. 9 scaling to a single map (torchcam applies ``tanh(2·cam)`` only
inside ``fuse_cams`` of two maps or more; :func:`npcam.layer_cam_fuse` is npcam's fusion).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.ndimage import zoom

from ...methods._core import Target, layer_gradients
from ...methods.layer_cam import layer_cam
from ._common import _check_bool, _input_size, _npcam_final, _size
from .pytorch_grad_cam import _pgc_final
from .tf_keras_vis import TF_KERAS_VIS_EPS
from .torchcam import _torchcam_final, _torchcam_no_resize

__all__ = [
    "CONVENTIONS",
    "npcam_layer_cam",
    "pytorch_grad_cam_layer_cam",
    "tf_keras_vis_layer_cam",
    "torchcam_layer_cam",
]

#: tf-keras-vis's default score for a Keras classifier (its output, after softmax):
#: ``npcam.conventions.DEFAULT_SCORES["tf-keras-vis"]``.
_TKV_SCORE = "softmax"


def _layer_cam_sum(model: Any, x: Any, target: Target, layer: str | None, score: str) -> np.ndarray:
    """``Σ_k max(g, 0) · A`` as the libraries write it (broadcast product, channel sum)."""
    lg = layer_gradients(model, x, target, layer, score, allow_all=False, full_trace="layer")
    return (np.maximum(lg.gradients, 0) * lg.activations).sum(axis=1)


def npcam_layer_cam(
    model: Any, x: Any, target: Target, layer: str | None, input_size: Any, score: str | None
) -> np.ndarray:
    """npcam's LayerCAM, ``ReLU(Σ_k ReLU(g) ⊙ A)`` (:func:`npcam.layer_cam`), upsampled
    with half-pixel centres to ``input_size`` (default: the size of ``x``). (N, H, W)
    float64, not normalised, no eq. 9 scaling (that belongs to the fusion,
    :func:`npcam.layer_cam_fuse`)."""
    r = layer_cam(model, x, target, layer, score="logit" if score is None else score)
    return _npcam_final(r.cam, x, input_size)


def pytorch_grad_cam_layer_cam(
    model: Any, x: Any, target: Target, layer: str | None, input_size: Any, score: str | None
) -> np.ndarray:
    """What pytorch-grad-cam 1.5.7's ``LayerCAM(model, [layer])(x, targets)`` returns:
    (N, H, W) float32 in [0, 1].

    * ``layer_cam.py`` 28, 33: ``(np.maximum(grads, 0) * activations).sum(axis=1)``;
      ``eigen_smooth=True`` is not reproduced;
    * then the common ReLU, ``scale_cam_image`` with OpenCV's bilinear resize to
      ``input_size`` (default: the size of ``x``) and ``aggregate_multi_layers``.

    The score is the raw model output (``ClassifierOutputTarget``): the logit for
    ``score=None``.

    What the library returns vs the paper: the single-layer map, min-max normalised (ε
    1e-7) and resized; several target layers are averaged (``aggregate_multi_layers``),
    not fused by eq. 9 and a maximum — not reproduced here (one layer).
    """
    cam = _layer_cam_sum(model, x, target, layer, "logit" if score is None else score)
    return _pgc_final(cam, _input_size(x, input_size, "pytorch-grad-cam"))


def torchcam_layer_cam(
    model: Any,
    x: Any,
    target: Target,
    layer: str | None,
    input_size: Any,
    score: str | None,
    *,
    normalized: bool = True,
) -> np.ndarray:
    """What torchcam 0.5.0's ``LayerCAM(model, layer)(class_idx, scores)[0]`` returns:
    (N, h, w) at the layer's resolution (``input_size`` must be None), in the model's
    dtype (float64 here).

    * ``gradient.py`` ``LayerCAM._get_weights`` (447-454): ``torch.relu(grad)``,
      (N, K, h, w);
    * ``core.py`` ``compute_cams`` (290-303): ``torch.nansum(w A, dim=1)``, ``F.relu``, then
      with ``normalized=True`` (default) ``_normalize``: ``m -= min``; ``m /= max + 1e-8``.

    The score is the ``scores`` the user passes, the model output: the logit
    (``score=None``). Under an in-place op after the layer torchcam's activations and
    gradients are wrong (``npcam.conventions.cam`` warns; not reproduced).

    What the library returns vs the paper: the single-layer map, min-max normalised (ε
    1e-8). Its ``fuse_cams`` (not reproduced; :func:`npcam.layer_cam_fuse` is npcam's)
    applies ``tanh(2 · cam)`` (``_scale_cams``, 456-459) to the maps it is given —
    normally these normalised ones, which is eq. 9's ``tanh(γ M / max M)`` up to the ε
    1e-8 only because their minimum is 0 — and returns a single map unscaled.
    """
    norm = _check_bool("normalized", normalized)
    _torchcam_no_resize(input_size)
    cam = _layer_cam_sum(model, x, target, layer, "logit" if score is None else score)
    return _torchcam_final(cam, norm)


def tf_keras_vis_layer_cam(
    model: Any,
    x: Any,
    target: Target,
    layer: str | None,
    input_size: Any,
    score: str | None,
    *,
    expand_cam: bool = True,
    normalize_cam: bool = True,
) -> np.ndarray:
    """What tf-keras-vis 0.8.7's ``Layercam(model)(score, x, penultimate_layer=layer)``
    returns with its defaults: (N, H, W) (or (N, h, w) with ``expand_cam=False``).

    Read from the 0.8.7 wheel (``tf_keras_vis/layercam.py``, ``gradcam.py``; the library
    needs TensorFlow and is not run here):

    * ``Layercam.__call__`` (layercam.py 17-27) is ``Gradcam.__call__`` with
      ``gradient_modifier=lambda grads: K.relu(grads)`` and
      ``activation_modifier=lambda cam: K.relu(cam)``;
    * ``Layercam._calculate_cam`` (layercam.py 86-92): ``grads = relu(grads)``,
      ``cam = np.sum(np.multiply(penultimate_output, grads), axis=-1)`` (the channels axis
      of a channels-last map: npcam's axis 1), then ``relu(cam)``;
    * ``Gradcam.__call__`` (gradcam.py 105-119): with ``expand_cam=True`` (default) the map
      is first resized, ``scipy.ndimage.zoom(cam, factors, order=1)`` with factors
      ``(1, H / h, W / w)`` (``utils.zoom_factor``) — an order-1 spline with
      ``grid_mode=False``, i.e. bilinear with corners aligned; then with
      ``normalize_cam=True`` (default) ``utils.normalize``, per map
      ``(m - min) / (max - min + K.epsilon())`` with ``K.epsilon()`` = 1e-7. With
      ``expand_cam=False`` the map is normalised at the layer's resolution
      (gradcam.py 107-110) and ``input_size`` must be None.

    The score is the model's output at the class (``CategoricalScore``): the softmax
    probability for a Keras classifier that ends in softmax, so ``score=None`` means
    ``"softmax"`` (as for tf-keras-vis's Grad-CAM).

    What the library returns vs the paper: the single-layer map with the softmax
    probability as y^c by default (the paper differentiates the class score before
    softmax; their gradients differ by the factor ∂p_c/∂z), resized with aligned corners
    (npcam: half-pixel centres) and min-max normalised; no eq. 9 scaling or fusion.
    """
    expand = _check_bool("expand_cam", expand_cam)
    norm = _check_bool("normalize_cam", normalize_cam)
    if expand:
        size = _size(np.shape(x)[-2:] if input_size is None else input_size, True, "tf-keras-vis")
    else:
        _size(input_size, False, "tf-keras-vis", " with expand_cam=False")
    cam = np.maximum(_layer_cam_sum(model, x, target, layer, _TKV_SCORE if score is None else score), 0)
    if expand:
        _, h, w = cam.shape
        cam = zoom(cam, (1.0, size[0] / h, size[1] / w), order=1)
    if norm:
        hi = cam.max(axis=(1, 2), keepdims=True)
        lo = cam.min(axis=(1, 2), keepdims=True)
        cam = (cam - lo) / (hi - lo + TF_KERAS_VIS_EPS)
    return cam


CONVENTIONS: dict[str, Callable[..., np.ndarray]] = {
    "npcam": npcam_layer_cam,
    "pytorch-grad-cam": pytorch_grad_cam_layer_cam,
    "torchcam": torchcam_layer_cam,
    "tf-keras-vis": tf_keras_vis_layer_cam,
}
