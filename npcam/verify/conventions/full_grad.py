"""FullGrad's conventions: npcam's map, pytorch-grad-cam 1.5.7's ``FullGrad`` and the
paper authors' code (``idiap/fullgrad-saliency``).

All three start from the same full-gradient decomposition (:func:`npcam.full_grad`: the
input term ``x ⊙ ∂y^c/∂x`` and the bias terms ``b ⊙ ∂y^c/∂z`` from one backward pass) and
differ in which layers they keep and in ψ (``../shared/notes/cam-family.md`` § 10):

* ``npcam``: every bias term (the list in :mod:`npcam.methods.full_grad`), ψ per channel,
  bilinear upsampling with corners aligned, no final normalisation; (N, H, W) float64;
* ``pytorch-grad-cam``: Conv2d (with a bias) and BatchNorm2d terms, per (image, channel)
  min-max with ε 1e-7, OpenCV's half-pixel resize in float32, a final min-max;
  (N, H, W) float32;
* ``authors-code``: Conv2d, Linear and BatchNorm2d terms (the 4-D ones in the map), per
  image min-max over all channels of a layer jointly with ε 1e-6, bilinear upsampling
  with corners aligned, no final normalisation; (N, 1, H, W) float64.

Which npcam nodes are "modules": pytorch-grad-cam hooks every ``torch.nn.Conv2d`` with a
bias and every ``BatchNorm2d``, the official code every ``Conv2d``, ``Linear`` and
``BatchNorm2d`` (with a bias). :func:`npcam.from_torch` makes ``Conv2d``/``Linear``/
``BatchNorm2d`` nodes only from those modules, and it does **not** fold BatchNorm into the
convolutions (``npcam.fold_batchnorm`` is never applied to an imported graph), so every BN
module of the torch model is a BN node here, with its own gradient, and the libraries'
BN terms need no reconstruction. An npcam model whose BN was folded (``npcam.zoo.pretrained``
folds by default) is the torch model with folded convolutions: the conventions then
describe what the libraries return on *that* model (one Conv2d term where the unfolded
model has a Conv2d term and a BN term; their sum is the same, their ψ is not). The
conventions treat every Conv2d/BatchNorm2d (and Linear) node as a module, ``from_module``
or not (an ONNX import records none).

Both libraries pair the i-th hooked module in *definition* order (``model.modules()``,
pytorch-grad-cam's ``find_layer_predicate_recursive``) with the i-th gradient in reverse
order of the backward hooks' calls. That is the module's own gradient when the modules run
in the order they are defined (every torchvision classifier, the SmallCNN); npcam pairs
each node with its own gradient. A Conv2d/BatchNorm2d module called twice gives both
libraries one gradient too many (pytorch-grad-cam asserts; the official code pairs the
wrong gradients): the conventions refuse such models with a ``ValueError``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...image import upsample
from ...methods._core import Target
from ...methods.full_grad import Decomposition, _decompose, full_grad, rescale_per_layer
from ...nn.layers import BatchNorm2d, Conv2d, Linear
from ._common import _size
from .pytorch_grad_cam import _pgc_scale_cam_image

__all__ = ["CONVENTIONS", "authors_code_full_grad", "npcam_full_grad", "pytorch_grad_cam_full_grad"]


def _no_layer(layer: Any) -> None:
    if layer is not None:
        raise ValueError(f"layer must be None for FullGrad, which uses every bias layer, got {layer!r}.")


def _hooked(model: Any, d: Decomposition, types: tuple[type, ...], library: str) -> list[str]:
    """The nodes (topological order) whose layer is one of ``types`` and has a bias term:
    the library's hooked modules. A layer at several nodes is a module called several
    times, which the library cannot pair with its gradients."""
    names = [n for n, layer in model.named_nodes() if type(layer) in types and n in d.terms]
    seen: dict[int, str] = {}
    for name, layer in model.named_nodes():
        if type(layer) in types:
            if id(layer) in seen:
                raise ValueError(
                    f"{library}'s FullGrad cannot pair its hooked modules with their gradients when "
                    f"a module is called more than once; nodes {seen[id(layer)]!r} and {name!r} share "
                    "one layer."
                )
            seen[id(layer)] = name
    return names


def _library_bias(layer: Any) -> np.ndarray:
    """The bias both libraries read (the official ``_extract_layer_bias``, copied by
    pytorch-grad-cam's ``get_bias_data``): BN's ``-(μ·γ/sqrt(var + ε)) + β``, else the
    layer's bias."""
    if isinstance(layer, BatchNorm2d):
        return -(layer.running_mean * layer.weight / np.sqrt(layer.running_var + layer.eps)) + layer.bias
    return np.asarray(layer.bias)


def _term(layer: Any, g: np.ndarray) -> np.ndarray:
    """``g * b`` with b reshaped to the channel axis (axis 1), as both libraries do."""
    b = _library_bias(layer)
    shape = [1] * g.ndim
    shape[1] = b.shape[0]
    return g * b.reshape(shape)


# ------------------------------------------------------------------------------ npcam
def npcam_full_grad(
    model: Any, x: Any, target: Target, layer: str | None, input_size: Any, score: str | None, *,
    psi: str = "per-channel", align_corners: bool = True, allow_nonlinear: bool = False,
) -> np.ndarray:
    """npcam's FullGrad map (:func:`npcam.full_grad`, the paper's ψ per channel by
    default), at the input size or upsampled with half-pixel centres to ``input_size``.
    (N, H, W) float64, not normalised. The options are :func:`npcam.full_grad`'s."""
    _no_layer(layer)
    r = full_grad(model, x, target, None, score="logit" if score is None else score, psi=psi,
                  align_corners=align_corners, allow_nonlinear=allow_nonlinear)
    size = _size(r.cam.shape[1:] if input_size is None else input_size, True, "npcam")
    return r.cam if tuple(size) == r.cam.shape[1:] else upsample(r.cam, size, mode="bilinear")


# ------------------------------------------------------------------- pytorch-grad-cam
def _pgc_scale_across(t: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``utils/image.py`` ``scale_accross_batch_and_channels``: every (image, channel) map
    through ``scale_cam_image`` (min-max with ε 1e-7, cv2 resize in float32)."""
    n, c = t.shape[:2]
    # C order, as ``np.float32(list_of_maps)`` gives: the float32 sums over channels that
    # follow then add in the library's order (the resize returns another memory layout)
    out = np.ascontiguousarray(_pgc_scale_cam_image(t.reshape(n * c, *t.shape[2:]), size))
    return out.reshape(n, c, *out.shape[1:])


def pytorch_grad_cam_full_grad(
    model: Any, x: Any, target: Target, layer: str | None, input_size: Any, score: str | None
) -> np.ndarray:
    """What pytorch-grad-cam 1.5.7's ``FullGrad(model, [])(x, targets)`` returns: (N, H, W)
    float32 in [0, 1).

    In order (``pytorch_grad_cam/fullgrad_cam.py``):

    1. the hooked layers (18-24): every ``Conv2d`` with a bias and every ``BatchNorm2d``
       (exact type), no Linear; BN's bias is ``-(μ·γ/sqrt(var + ε)) + β`` (35-43);
    2. the input term (50-61): ``|∂y/∂x · x|``, then ``scale_accross_batch_and_channels``:
       each (image, input channel) map min-maxed with ε 1e-7 and ``cv2.resize``-d in
       float32 to (W, H) (``utils/image.py`` 161-176; :func:`opencv_resize_linear`);
    3. each layer (65-74): ``|b · g|``, the same per-(image, channel) scaling and resize,
       summed over its channels (float32);
    4. the input channels and the layer maps concatenated and summed (75, 87-88), then
       ``aggregate_multi_layers`` (92-94): a sum over the one map and ``scale_cam_image``
       (min-max with ε 1e-7, float32).

    The score is the logit (``ClassifierOutputTarget``). No check of piecewise linearity:
    the library computes the map for any network. ``input_size`` (default: the size of
    ``x``) is the size ``get_target_width_height`` would give.

    What the library returns vs what the paper says: ψ per channel as the paper, but with
    OpenCV's half-pixel resize instead of bilinear with corners aligned, ε 1e-7, the BN and
    conv biases only (no Linear, no implicit biases), and a final min-max of S. Measured
    against npcam's default map (min-max normalised maps, max difference): 0.111 on the
    SmallCNN and 0.176 on resnet18 at 64 px, mostly the half-pixel resize (against
    ``align_corners=False`` 4.4e-4 and 1.5e-3), pinned in
    ``tests/crosscheck/test_family_full_grad.py`` (cam-family.md § 10 reports 0.20 and 0.23
    on its models).
    """
    _no_layer(layer)
    d = _decompose(model, x, target, "logit" if score is None else score, "ignore")
    xs = d.trace.input
    size = _size(xs.shape[2:] if input_size is None else input_size, True, "pytorch-grad-cam")
    layers = dict(model.named_nodes())
    pieces = [_pgc_scale_across(np.abs(d.input_grad * xs), size)]
    for name in _hooked(model, d, (Conv2d, BatchNorm2d), "pytorch-grad-cam"):
        scaled = _pgc_scale_across(np.abs(_term(layers[name], d.grads[name])), size)
        pieces.append(np.sum(scaled, axis=1)[:, None, :])
    summed = np.sum(np.concatenate(pieces, axis=1), axis=1)[:, None, :]
    return _pgc_scale_cam_image(np.sum(summed, axis=1), None)


# ------------------------------------------------------------------------ authors' code
def _post_process(t: np.ndarray) -> np.ndarray:
    """``FullGrad._postProcess(input, eps=1e-6)``: ``abs``, then per image over every
    channel and position ``v − min`` and ``/ (max + 1e-6)``."""
    return rescale_per_layer(np.abs(t))


def authors_code_full_grad(
    model: Any, x: Any, target: Target, layer: str | None, input_size: Any, score: str | None
) -> np.ndarray:
    """What the authors' code returns: ``FullGrad(model).saliency(x, target_class)`` of
    ``idiap/fullgrad-saliency`` (``saliency/fullgrad.py`` and ``saliency/tensor_extractor.py``,
    read at commit bf274a96 through the repository index), (N, 1, H, W) float64 for a
    float64 model.

    In order:

    1. ``FullGradExtractor``: every ``Conv2d``, ``Linear`` and ``BatchNorm2d`` with a bias;
       BN's bias ``-(μ·γ/sqrt(var + ε)) + β``; the gradients at their outputs
       (``register_backward_hook``) of ``-nll_loss(out, c, reduction="sum")`` = Σ_n
       out[n, c_n], the logit (the argmax class for ``target=None``);
    2. ``saliency``: ``_postProcess(∂y/∂x · x).sum(1, keepdim=True)`` — ``_postProcess`` is
       ``abs``, then per image over all channels jointly ``v − min`` and ``/ (max + 1e-6)``;
    3. for every bias term of the image's rank (4-D: "Select only Conv layers"; the
       Linear terms are dropped): ``_postProcess``, ``F.interpolate(..., (H, W),
       mode="bilinear", align_corners=True)`` channel by channel, then the sum over the
       channels, added to the map. No final normalisation.

    What the code returns vs what the paper says: the paper's ψ works per channel; the
    code normalises each layer's channels jointly (and the 3 input channels jointly).
    Measured against npcam's default map (min-max normalised maps): 0.459 on the SmallCNN,
    0.0925 on resnet18 at 64 px, pinned in the crosscheck test (cam-family.md § 10 reports
    0.47 and 0.20 on its models). The code
    also asserts completeness at start-up (``checkCompleteness``, rel_tol 1e-4), which
    fails on networks with implicit biases (ReLU6) since it counts none.

    ``input_size`` must stay None or the size of ``x``: the code returns maps at the
    image's size.
    """
    _no_layer(layer)
    d = _decompose(model, x, target, "logit" if score is None else score, "ignore")
    xs = d.trace.input
    h, w = xs.shape[2:]
    if input_size is not None and tuple(_size(input_size, True, "authors-code")) != (h, w):
        raise ValueError(f"input_size must be None or the size of x {(h, w)} for convention 'authors-code' "
                         f"(the official code returns maps at the image's size), got {input_size!r}.")
    layers = dict(model.named_nodes())
    cam = _post_process(d.input_grad * xs).sum(axis=1, keepdims=True)
    for name in _hooked(model, d, (Conv2d, Linear, BatchNorm2d), "the authors' code"):
        term = _term(layers[name], d.grads[name])
        if term.ndim != xs.ndim:
            continue
        temp = _post_process(term)
        n, k = temp.shape[:2]
        up = upsample(temp.reshape(n * k, *temp.shape[2:]), (h, w), "bilinear", True).reshape(n, k, h, w)
        cam = cam + up.sum(axis=1, keepdims=True)
    return cam


CONVENTIONS = {
    "npcam": npcam_full_grad,
    "pytorch-grad-cam": pytorch_grad_cam_full_grad,
    "authors-code": authors_code_full_grad,
}
