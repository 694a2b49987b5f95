r"""Other libraries' final Grad-CAM maps, reproduced from npcam's raw quantities.

Grad-CAM implementations agree on the paper's two equations — ``α^c_k`` from the
gradients, ``M^c = Σ_k α^c_k A^k`` — and differ in everything around them: which score
they differentiate, mean or sum over positions, whether and when the ReLU is applied,
the normalisation and its ε, the resize function and its pixel alignment, the output
layout and dtype. Each *convention* below is one small pure function of npcam's raw
arrays (``activations`` A and ``gradients`` ∂y/∂A of the target layer, both
``(N, K, h, w)``, plus the input size) that returns what that library returns, in its
shape, dtype and scaling, step for step in the library's order:

==================== ================================================= ====================
convention           upstream (version checked)                        returns
==================== ================================================= ====================
``npcam``            this package: ReLU, bilinear (half-pixel) resize  (N, H, W) float64
``captum``           captum 0.9.0 ``LayerGradCam`` (+ ``interpolate``) (N, 1, h, w) float64
``pytorch-grad-cam`` grad-cam 1.5.7 ``GradCAM`` (OpenCV resize)        (N, H, W) float32
``torchcam``         torchcam 0.5.0 ``GradCAM`` (ε = 1e-8 since 0.4.0) (N, h, w) float64
``tf-keras-vis``     tf-keras-vis 0.8.7 ``Gradcam`` (scipy zoom)       (N, H, W) float64
``grad-cam-lua``     ramprs/grad-cam (the paper's Torch7 release)      (N, 1, H, W) float32
==================== ================================================= ====================

dtype rule: where a library fixes the dtype (pytorch-grad-cam's ``np.float32``, the Lua
script's ``:float()``) so does its convention; where the dtype follows the model's
(captum, torchcam, tf-keras-vis), the convention keeps the dtype of the arrays it is given
— float64 from npcam, i.e. what the library returns for a float64 model. Pass float32
arrays to the post-processing functions to imitate a float32 model.

:func:`grad_cam` and :func:`guided_grad_cam` run :func:`npcam.grad_cam` (and
:func:`npcam.guided_backprop`) with the convention's default score and apply the
convention. ``docs/conventions.md`` tabulates every difference with upstream references.
"""


from __future__ import annotations

import importlib
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...methods import grad_cam as _grad_cam_module
from ...methods import gradients as _gradients
from ...methods._core import nchw_view
from ..resizers import opencv_resize_linear, torch7_scale_bilinear
from .captum import captum_guided_grad_cam, captum_layer_grad_cam
from .grad_cam_lua import grad_cam_lua, grad_cam_lua_guided
from .pytorch_grad_cam import PYTORCH_GRAD_CAM_EPS, pytorch_grad_cam
from .reference import npcam_grad_cam, npcam_guided_grad_cam
from .tf_keras_vis import TF_KERAS_VIS_EPS, tf_keras_vis_gradcam
from .torchcam import TORCHCAM_EPS, torchcam_gradcam

__all__ = [
    "DEFAULT_SCORES",
    "PYTORCH_GRAD_CAM_EPS",
    "TF_KERAS_VIS_EPS",
    "TORCHCAM_EPS",
    "GUIDED_NAMES",
    "NAMES",
    "captum_guided_grad_cam",
    "captum_layer_grad_cam",
    "FAMILY_NAMES",
    "cam",
    "grad_cam",
    "grad_cam_lua",
    "grad_cam_lua_guided",
    "inplace_modifier",
    "guided_grad_cam",
    "npcam_grad_cam",
    "npcam_guided_grad_cam",
    "opencv_resize_linear",
    "pytorch_grad_cam",
    "tf_keras_vis_gradcam",
    "torch7_scale_bilinear",
    "torchcam_gradcam",
]

NAMES = ("npcam", "captum", "pytorch-grad-cam", "torchcam", "tf-keras-vis", "grad-cam-lua")
#: Conventions whose library ships Guided Grad-CAM.
GUIDED_NAMES = ("npcam", "captum", "grad-cam-lua")
#: The score each library differentiates by default, for a model that outputs logits.
DEFAULT_SCORES = {
    "npcam": "logit",
    "captum": "logit",  # the forward output at `target`
    "pytorch-grad-cam": "logit",  # ClassifierOutputTarget: the raw output
    "torchcam": "logit",  # the `scores` the user passes: the model output
    "tf-keras-vis": "softmax",  # the model output; Keras classifiers end in softmax
    "grad-cam-lua": "logit",  # the script removes the softmax layer
}

# torchcam >= 0.4.0 (_CAM._normalize); releases up to 0.3.2 divide by the bare max.

# --------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class _Convention:
    post: Callable[..., np.ndarray]
    options: tuple[str, ...]  # keyword options of `post` that grad_cam passes through
    resizes: Callable[[dict[str, Any]], bool]  # whether `post` needs the input size
    guided: Callable[..., np.ndarray] | None = None
    guided_options: tuple[str, ...] = ()


_CONVENTIONS: dict[str, _Convention] = {
    "npcam": _Convention(npcam_grad_cam, (), lambda o: True, npcam_guided_grad_cam),
    "captum": _Convention(
        captum_layer_grad_cam,
        ("relu_attributions", "attr_dim_summation", "interpolate_mode"),
        lambda o: o.get("interpolate_mode") is not None,
        captum_guided_grad_cam,
        ("interpolate_mode",),
    ),
    "pytorch-grad-cam": _Convention(pytorch_grad_cam, (), lambda o: True),
    "torchcam": _Convention(torchcam_gradcam, ("normalized",), lambda o: False),
    "tf-keras-vis": _Convention(
        tf_keras_vis_gradcam,
        ("expand_cam", "normalize_cam"),
        lambda o: o.get("expand_cam", True) is not False,
    ),
    "grad-cam-lua": _Convention(grad_cam_lua, (), lambda o: True, grad_cam_lua_guided),
}


def _convention(convention: Any) -> tuple[str, _Convention]:
    if not isinstance(convention, str) or convention not in _CONVENTIONS:
        raise ValueError(f"convention must be one of {NAMES}, got {convention!r}.")
    return convention, _CONVENTIONS[convention]


def _check_options(name: str, given: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        takes = f"it takes {', '.join(allowed)}" if allowed else "it takes none"
        raise TypeError(f"convention {name!r} has no option {', '.join(unknown)}; {takes}.")


def _one_target(target: Any) -> None:
    if isinstance(target, str) and target == "all":
        raise ValueError(
            "target='all' is not supported by npcam.conventions: the libraries explain one "
            "class per image; pass None, an int or N ints."
        )


def grad_cam(
    model: Any,
    x: Any,
    target: Any = None,
    layer: str | None = None,
    convention: str = "npcam",
    input_size: Any = None,
    score: str | None = None,
    **options: Any,
) -> np.ndarray:
    """The final Grad-CAM map ``convention``'s library returns, from npcam's raw arrays.

    Runs ``npcam.grad_cam(model, x, target, layer, score)`` and applies the
    convention's post-processing to its ``activations`` and ``gradients``.

    Parameters
    ----------
    model, x, target, layer : as :func:`npcam.grad_cam` (one class per image:
        ``target="all"`` is refused).
    convention : one of :data:`NAMES`.
    input_size : (H, W) to resize to; default the spatial size of ``x``. Must stay None
        for conventions that do not resize (``torchcam``; ``captum`` without
        ``interpolate_mode``; ``tf-keras-vis`` with ``expand_cam=False``).
    score : ``"logit"``, ``"softmax"`` or ``"log_softmax"``; None means the library's
        default, :data:`DEFAULT_SCORES` (``"softmax"`` for tf-keras-vis, else ``"logit"``).
    **options : the convention's own switches, under the library's names —
        ``captum``: ``relu_attributions=False``, ``attr_dim_summation=True``,
        ``interpolate_mode=None`` (``"nearest"``/``"bilinear"``: apply
        ``LayerAttribution.interpolate``); ``torchcam``: ``normalized=True``;
        ``tf-keras-vis``: ``expand_cam=True``, ``normalize_cam=True``. Others take none.

    Returns
    -------
    The array the library returns; shapes and dtypes in the module docstring.
    """
    name, conv = _convention(convention)
    _check_options(name, options, conv.options)
    _one_target(target)
    model, x, _ = nchw_view(model, x)  # a channels-last graph: H and W are x's axes 1, 2
    r = _grad_cam_module.grad_cam(model, x, target, layer, DEFAULT_SCORES[name] if score is None else score)
    size = input_size
    if size is None and conv.resizes(options):
        size = np.shape(x)[-2:]
    return conv.post(r.activations, r.gradients, size, **options)


def guided_grad_cam(
    model: Any,
    x: Any,
    target: Any = None,
    layer: str | None = None,
    convention: str = "npcam",
    score: str | None = None,
    **options: Any,
) -> np.ndarray:
    """The Guided Grad-CAM ``convention``'s library returns: (N, C, H, W) (also for a graph
    that reads its input channels-last, run in its NCHW form).

    Available for :data:`GUIDED_NAMES` (``npcam``, ``captum``, ``grad-cam-lua``); the other
    libraries ship no Guided Grad-CAM (pytorch-grad-cam has a guided-backprop model and
    multiplies by hand in its example script; see ``docs/conventions.md``), and asking
    for them raises ``ValueError``. ``captum`` takes ``interpolate_mode="nearest"``
    (its default) or ``"bilinear"``. Guided backprop and Grad-CAM differentiate the same
    score (``score=None``: the convention's default) for the same class.
    """
    name, conv = _convention(convention)
    if conv.guided is None:
        raise ValueError(
            f"convention {name!r} has no Guided Grad-CAM; it is available for {GUIDED_NAMES}."
        )
    _check_options(name, options, conv.guided_options)
    _one_target(target)
    score = DEFAULT_SCORES[name] if score is None else score
    model, x, _ = nchw_view(model, x)
    r = _grad_cam_module.grad_cam(model, x, target, layer, score)
    gb = _gradients.guided_backprop(model, x, r.target, score)
    return conv.guided(gb, r.activations, r.gradients, **options)


# ------------------------------------------------------------------ the CAM family
#: method (a METHODS name) -> the module of this package that holds its conventions
_FAMILY_MODULES = {
    "grad-cam++": "grad_cam_pp",
    "xgrad-cam": "xgrad_cam",
    "hires-cam": "hires_cam",
    "grad-cam-elementwise": "grad_cam_elementwise",
    "layer-cam": "layer_cam",
    "score-cam": "score_cam",
    "ss-cam": "ss_cam",
    "is-cam": "is_cam",
    "ablation-cam": "ablation_cam",
    "eigen-cam": "eigen_cam",
    "eigen-grad-cam": "eigen_grad_cam",
    "full-grad": "full_grad",
    "smooth-grad-cam++": "smooth_grad_cam_pp",
}

#: method -> the convention names :func:`cam` accepts for it (aliases included)
FAMILY_NAMES: dict[str, tuple[str, ...]] = {
    "grad-cam": (*NAMES, "authors-code"),
    "grad-cam++": ("npcam", "pytorch-grad-cam", "torchcam", "tf-keras-vis", "authors-code"),
    "xgrad-cam": ("npcam", "pytorch-grad-cam", "torchcam"),
    "hires-cam": ("npcam", "pytorch-grad-cam"),
    "grad-cam-elementwise": ("npcam", "pytorch-grad-cam"),
    "layer-cam": ("npcam", "pytorch-grad-cam", "torchcam", "tf-keras-vis"),
    "score-cam": ("npcam", "pytorch-grad-cam", "torchcam", "tf-keras-vis", "authors-code"),
    "ss-cam": ("npcam", "torchcam"),
    "is-cam": ("npcam", "torchcam"),
    "ablation-cam": ("npcam", "pytorch-grad-cam"),
    "eigen-cam": ("npcam", "pytorch-grad-cam", "pytorch-grad-cam-signfix"),
    "eigen-grad-cam": ("npcam", "pytorch-grad-cam"),
    "full-grad": ("npcam", "pytorch-grad-cam", "authors-code"),
    "smooth-grad-cam++": ("npcam", "torchcam"),
}

#: conventions whose library hooks the layer's output tensor, so that an in-place op
#: after the layer corrupts what it reads (docs/conventions.md, "In-place ops")
_INPLACE_SENSITIVE = {
    "torchcam": "torchcam reads the layer's output after the in-place op: its activations and "
                "gradients are both wrong",
    "pytorch-grad-cam": "pytorch-grad-cam on CPU stores the output tensor itself, which the "
                        "in-place op overwrites: its activations are wrong (its gradients are right)",
}


def _family_convention(method: str, convention: str) -> Callable[..., np.ndarray]:
    module = importlib.import_module(f".{_FAMILY_MODULES[method]}", __name__)
    table: dict[str, Callable[..., np.ndarray]] = module.CONVENTIONS
    return table[convention]


def inplace_modifier(model: Any, layer: str) -> str | None:
    """The name of the node that modifies ``layer``'s output in place in the original
    torch model (an ``inplace`` node of a graph made by :func:`npcam.from_torch` whose
    first input is that output: ``relu_``, ``ReLU(inplace=True)``, ``out += identity``;
    an in-place dropout, the identity at inference, does not count), or None (also for
    models that record no in-place ops)."""
    nodes = getattr(model, "nodes", None)
    resolve = getattr(model, "resolve", None)
    if nodes is None or not callable(resolve):
        return None
    try:
        name = str(resolve(layer))
    except (ValueError, TypeError):
        return None
    from ...nn.layers import Dropout
    from ...nn.ops import Identity

    for node in nodes:
        # an in-place dropout is the identity at inference: it modifies nothing
        if isinstance(node.layer, (Dropout, Identity)):
            continue
        if getattr(node, "inplace", False) and node.inputs and node.inputs[0] == name:
            return str(node.name)
    return None


def _warn_inplace(model: Any, layer: str | None, convention: str) -> None:
    if convention not in _INPLACE_SENSITIVE:
        return
    if layer is None:
        layer = getattr(model, "default_layer_name", None)
        if not isinstance(layer, str):
            return
    node = inplace_modifier(model, layer)
    if node is not None:
        from ..._warnings import InplaceOpWarning

        warnings.warn(
            f"layer {layer!r} is modified in place by node {node!r} in the torch model; "
            f"{_INPLACE_SENSITIVE[convention]}. npcam returns what the library computes on the "
            "true values; explain the in-place op's output, or a layer before it, to compare.",
            InplaceOpWarning,
            stacklevel=3,
        )


def cam(
    method: str,
    model: Any,
    x: Any,
    target: Any = None,
    layer: str | None = None,
    convention: str = "npcam",
    input_size: Any = None,
    score: str | None = None,
    **options: Any,
) -> np.ndarray:
    """The final map that ``convention``'s library returns for ``method``.

    Parameters
    ----------
    method : a name of :data:`npcam.METHODS` with conventions (:data:`FAMILY_NAMES`).
    model, x, target, layer : as the method (one class per image: ``target="all"`` is
        refused). FullGrad takes ``layer=None`` only.
    convention : one of ``FAMILY_NAMES[method]``; ``"authors-code"`` is the paper authors'
        released code (for Grad-CAM an alias of ``"grad-cam-lua"``).
    input_size : (H, W) for conventions that resize (default the spatial size of ``x``:
        its axes 2, 3, or 1, 2 for a graph that reads its input channels-last, which is run
        in its NCHW form, :meth:`npcam.Graph.nchw_input`).
    score : None (the library's default score for that method) or a score name.
    **options : the convention's own options, documented in its function's docstring
        (``npcam.verify.conventions.<method module>``).

    Returns
    -------
    The array the library returns, in its shape, dtype and scaling. ``cam("grad-cam",
    ...)`` equals :func:`grad_cam`.

    Warns
    -----
    InplaceOpWarning
        For ``"torchcam"`` and ``"pytorch-grad-cam"`` when ``layer``'s output is modified in
        place later in the torch model the graph was imported from: those libraries would
        then read wrong values, while this function returns what they compute on the right
        ones.
    """
    if not isinstance(method, str) or method not in FAMILY_NAMES:
        raise ValueError(f"method must be one of {tuple(FAMILY_NAMES)}, got {method!r}.")
    allowed = FAMILY_NAMES[method]
    if not isinstance(convention, str) or convention not in allowed:
        raise ValueError(
            f"convention must be one of {allowed} for method {method!r}, got {convention!r}."
        )
    _one_target(target)
    _warn_inplace(model, layer, convention)
    # every convention works in image space as the libraries do (torch's NCHW): a graph
    # that reads its input channels-last (a Keras model through ONNX) is run in its NCHW
    # form, so that masks and resizes use the image's H and W
    model, x, _ = nchw_view(model, x)
    if method == "grad-cam":
        name = "grad-cam-lua" if convention == "authors-code" else convention
        return grad_cam(model, x, target, layer, name, input_size, score, **options)
    fn = _family_convention(method, convention)
    params = inspect.signature(fn).parameters
    takes = tuple(n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY)
    _check_options(convention, options, takes)
    return fn(model, x, target, layer, input_size, score, **options)
