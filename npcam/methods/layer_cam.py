r"""LayerCAM (Jiang, Zhang, Hou, Cheng & Wei, *LayerCAM: Exploring Hierarchical Class
Activation Maps for Localization*, IEEE TIP 30, 2021, doi 10.1109/TIP.2021.3089943).

Each position of each channel is weighted by its own positive gradient::

    w^kc_ij = ReLU(∂y^c/∂A^k_ij)                (per-position weights)
    M^c_ij  = Σ_k w^kc_ij · A^k_ij              (``raw``)
    L^c     = ReLU(M^c)                         (``cam``; the paper's single-layer map)

and maps of several layers are fused (:func:`layer_cam_fuse`): the shallow layers' maps,
whose values are small, are rescaled by eq. 9, ``M̂ = tanh(γ · M / max M)`` with γ = 2,
then all are resized to one size and combined by an element-wise maximum.

Exact properties (cam-family.md § 5): LayerCAM equals HiResCAM wherever g ≥ 0; under
GAP → FC (g = w^c_k / Z in every position) it is Grad-CAM with ReLU'd weights,
``ReLU(Σ_k ReLU(α^c_k) A^k)``; ``tanh(γ M / max M)`` has maximum tanh(γ) and preserves
the order of M.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._validate import as_float_array, as_pair, describe
from ..image import upsample
from ._core import CAMResult, Target, elementwise_result, layer_gradients

__all__ = ["layer_cam", "layer_cam_fuse"]


def layer_cam(
    model: Any,
    x: Any,
    target: Target = None,
    layer: str | None = None,
    *,
    score: str = "logit",
) -> CAMResult:
    r"""LayerCAM on one layer: ``L^c = ReLU(Σ_k ReLU(∂y^c/∂A^k) ⊙ A^k)``.

    The paper's single-layer map (Jiang et al. 2021: the weights are the positive
    gradients at each position, the map the ReLU of their weighted sum over channels;
    equation numbers other than eq. 9 not checked against the text), with no departure;
    the multi-layer fusion is :func:`layer_cam_fuse`. Libraries:
    pytorch-grad-cam 1.5.7's ``LayerCAM``, torchcam 0.5.0's ``LayerCAM`` and
    tf-keras-vis 0.8.7's ``Layercam`` compute the same map before their own
    normalisation and resizing (``npcam.conventions.cam("layer-cam", ...)``).

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
        ``cam`` L^c (N, h, w); ``raw`` M^c = Σ_k weights ⊙ A (signed on a signed layer);
        ``weights`` ReLU(g) (N, K, h, w); ``activations``; ``gradients`` g = ∂y^c/∂A
        (not clipped); ``scores``, ``target``, ``layer``; ``extra`` is empty. With
        ``target="all"`` a class axis follows N (``weights`` (N, C, K, h, w)).
    """
    lg = layer_gradients(model, x, target, layer, score, allow_all=True, full_trace="layer")
    weights = np.maximum(lg.gradients, 0.0)
    return elementwise_result(weights, lg.activations, lg.gradients, lg.scores, lg.target, lg.layer)


def _check_gamma(gamma: Any) -> float | None:
    if gamma is None:
        return None
    if isinstance(gamma, (bool, np.bool_)) or not isinstance(gamma, (int, float, np.integer, np.floating)):
        raise TypeError(f"gamma must be a positive float or None, got {describe(gamma)}.")
    g = float(gamma)
    if not (np.isfinite(g) and g > 0):
        raise ValueError(f"gamma must be a positive finite float or None, got {g!r}.")
    return g


def _check_maps(maps: Any) -> list[np.ndarray]:
    if isinstance(maps, CAMResult):
        raise TypeError(
            "maps must be a list or tuple of (N, h, w) arrays, got a CAMResult; pass "
            "[r.cam for r in results] (or their .raw)."
        )
    if not isinstance(maps, (list, tuple)):
        raise TypeError(f"maps must be a list or tuple of (N, h, w) arrays, got {describe(maps)}.")
    if len(maps) == 0:
        raise ValueError("maps must hold at least one (N, h, w) array, got an empty sequence.")
    arrays: list[np.ndarray] = []
    for i, m in enumerate(maps):
        if isinstance(m, CAMResult):
            raise TypeError(f"maps[{i}] must be an (N, h, w) array, got a CAMResult; pass its .cam.")
        arr = as_float_array(f"maps[{i}]", m, ndim=3, finite=True)
        if 0 in arr.shape:
            raise ValueError(f"maps[{i}] must be a non-empty (N, h, w) array, got shape {arr.shape}.")
        if arrays and arr.shape[0] != arrays[0].shape[0]:
            raise ValueError(
                f"maps must all have the same number of images N, got {arrays[0].shape[0]} "
                f"for maps[0] and {arr.shape[0]} for maps[{i}]."
            )
        arrays.append(arr)
    return arrays


def layer_cam_fuse(
    maps: Sequence[Any],
    gamma: float | None = 2.0,
    size: int | tuple[int, int] | None = None,
) -> np.ndarray:
    r"""Fuse single-layer LayerCAM maps: eq. 9 scaling, resizing, element-wise maximum.

    For each map ``M_l`` (one per layer) and each image::

        M_l   ← ReLU(M_l)                                (the paper's single-layer map)
        M̂_l   = tanh(γ · M_l / max_ij M_l)               (eq. 9; 0 where max M_l = 0)
        fused = max_l Up(M̂_l)                            (element-wise)

    Parameters
    ----------
    maps : list or tuple of array_like, each (N, h_l, w_l)
        One map per layer, for the same N images: the ``cam`` (or ``raw``) of
        :func:`layer_cam` at each layer. Arrays only — a :class:`CAMResult` is refused,
        pass ``r.cam``. The ReLU is applied here, so ``cam`` and ``raw`` give the same
        result.
    gamma : float > 0 or None, default 2.0
        γ of eq. 9 (2 is the paper's value). ``None`` skips the scaling: the ReLU'd maps
        are resized and fused as they are.
    size : int, (H, W) or None
        The output size; default ``(max_l h_l, max_l w_l)`` — the largest map's size when
        one map is the largest along both axes, as in a CNN's stages (torchcam's
        ``fuse_cams`` rule).

    Returns
    -------
    ndarray, (N, H, W), float64
        In [0, tanh γ] (in [0, max M] with ``gamma=None``).

    Notes
    -----
    * **A map that is all ≤ 0** (no positive evidence at that layer for that image) has
      max M = 0 after the ReLU: its scaled map is defined as 0 (eq. 9 would be 0/0) and it
      contributes nothing to the maximum.
    * Maps are resized with :func:`npcam.upsample` (bilinear with half-pixel centres,
      ``F.interpolate(..., align_corners=False)``, as torchcam's ``fuse_cams``); a map
      already at ``size`` is used as it is. Shrinking is plain bilinear (no antialiasing).
    * The scaling is applied per image, each map divided by its own maximum (so every
      scaled map peaks at exactly tanh γ). The paper motivates eq. 9 by the small values
      of the shallow layers' maps; this function scales every map it is given, as
      torchcam's ``LayerCAM.fuse_cams`` does — fuse a deep map unscaled by scaling the
      others yourself and passing ``gamma=None``.
    * torchcam 0.5.0's ``_scale_cams`` computes ``tanh(2 · cam)`` on the maps the user
      passes, normally its min-max-normalised cams (``cam / (max + 1e-8)``): eq. 9 up to
      that ε, and not at all when a map's minimum is not 0. It also returns a single map
      unscaled (``fuse_cams`` of one cam); this function scales it.
    """
    arrays = _check_maps(maps)
    g = _check_gamma(gamma)
    if size is None:
        out_size = (max(a.shape[1] for a in arrays), max(a.shape[2] for a in arrays))
    else:
        out_size = as_pair("size", size)
    fused: np.ndarray | None = None
    for m in arrays:
        m = np.maximum(m, 0.0)
        if g is not None:
            peak = m.max(axis=(1, 2), keepdims=True)
            # where=: an all-zero map stays 0 instead of 0/0
            ratio = np.divide(m, peak, out=np.zeros_like(m), where=peak > 0)
            m = np.tanh(g * ratio)
        if m.shape[1:] != out_size:
            m = upsample(m, out_size, mode="bilinear")
        fused = m if fused is None else np.maximum(fused, m)
    assert fused is not None  # maps is not empty
    return fused
