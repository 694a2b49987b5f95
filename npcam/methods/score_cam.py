r"""Score-CAM (Wang et al. 2020, arXiv 1910.01279 v2), and the machinery SS-CAM and IS-CAM
share with it.

For the feature maps A^k (k = 1..K) of one layer and an input X (N, C, H, W)::

    H^k   = s(Up(A^k))                                 (Definition 1: the mask)
    C(A^k) = f_c(X ∘ H^k) − f_c(X_b)                   (Definition 1: increase of confidence)
    α^c_k = exp(C(A^k)) / Σ_j exp(C(A^j))              (Algorithm 1 of v2: softmax over channels)
    L^c   = ReLU(Σ_k α^c_k A^k)                        (Definition 2)

``Up`` is bilinear upsampling to the input's size, ``s`` a min-max normalisation of each
upsampled map to [0, 1], ``∘`` the product broadcast over the input channels, f_c the
class-c score — the post-softmax probability (§ 3.2: "we represent weight as post-softmax
value") — and X_b a baseline image, black in the authors' experiments
(haofanwang/Score-CAM #6, #17). ``raw = Σ_k α^c_k A^k`` stays at the layer's resolution,
like every npcam layer method.

Cost: one forward pass per channel and image (N·K masked inputs), ``batch_size`` at a
time; the masks of a chunk are built when the chunk is run, so that no more than
``batch_size`` masked inputs exist at once. SS-CAM and IS-CAM (:mod:`.ss_cam`,
:mod:`.is_cam`) run the same loop ``num_samples`` times with perturbed masks or scaled
inputs (:func:`_score_family`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._progress import Progress, check_progress
from .._validate import as_float_array, describe
from ..image.resize import interpolation_matrices
from ._core import CAMResult, Target, _takes_keep, check_input, layer_activations, map_result, nchw_view
from ._passes import check_batch_size, chunks, forward_scores
from .scores import check_score

__all__ = ["score_cam"]

#: ``perturb(sample, x_rows, masks) -> inputs``: the model inputs of one chunk, from the
#: sample index of each row (m,), the rows' images (m, C, H, W) and masks H^k (m, H, W).
Perturb = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

# A block of forward_scores holds about this many class scores before they are reduced
# (a multiple of batch_size inputs, so that chunking is the same as over the whole job).
_BLOCK_VALUES = 1 << 20


# ------------------------------------------------------------------------- validation
def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {describe(value)}.")
    return bool(value)


def _image_batch(x: Any) -> np.ndarray:
    """The input as a finite float64 (N, C, H, W) array (masks are spatial)."""
    arr = check_input(x)
    if arr.ndim != 4:
        raise ValueError(
            f"x must be a 4-D image batch (N, C, H, W) for Score-CAM's masks, got shape {arr.shape}."
        )
    return arr


def _baseline_inputs(baseline: Any, x: np.ndarray) -> np.ndarray:
    """X_b for every image: zeros for ``None`` (the black image), else ``baseline``
    broadcast to the shape of ``x``."""
    if baseline is None:
        return np.zeros_like(x)
    b = as_float_array("baseline", baseline)
    try:
        return np.broadcast_to(b, x.shape)
    except ValueError:
        raise ValueError(
            f"baseline must be None or an array broadcastable to x's shape {x.shape}, got shape {b.shape}."
        ) from None


# ---------------------------------------------------------------------------- masks
def minmax_masks(maps: np.ndarray, constant: np.ndarray | None = None) -> np.ndarray:
    r"""``s(M) = (M − min M) / (max M − min M)`` per map, (m, H, W) -> (m, H, W) in [0, 1].

    A constant map — or a map flagged in ``constant`` (m,), e.g. because its channel A^k
    is constant at the layer's resolution, so that only rounding makes its upsampled
    copy vary — gives the zero mask: its masked input is the black image, and it carries
    no spatial information (the paper does not define s for it; the authors' code skips
    such channels).
    """
    lo = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - lo
    ok = span > 0
    if constant is not None:
        ok &= ~constant[:, None, None]
    return np.where(ok, (maps - lo) / np.where(ok, span, 1.0), 0.0)


class _Masks:
    """H^k for any (image, channel) rows, built on demand from A (N, K, h, w).

    Rows are flat indices ``n·K + k``. Upsampling is bilinear to the input's size
    (``npcam.upsample``'s matrices, half-pixel or corner-aligned); the min-max comes after
    it (the paper's order) or before it (``normalize_before_upsample``, torchcam's order;
    a convex combination of values in [0, 1] stays in [0, 1]).
    """

    def __init__(self, a: np.ndarray, size: tuple[int, int], align_corners: bool, before: bool) -> None:
        n, k, h, w = a.shape
        self.maps = a.reshape(n * k, h, w)
        # Decided at the layer's resolution: bilinear weights sum to 1 only up to rounding,
        # so a constant channel's upsampled copy may vary in its last bit, and a min-max
        # would blow that into a mask of noise.
        self.constant = self.maps.max(axis=(1, 2)) == self.maps.min(axis=(1, 2))
        self.r_h, self.r_w = interpolation_matrices((h, w), size, "bilinear", align_corners)
        self.before = before
        if before:
            self.maps = minmax_masks(self.maps, self.constant)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        # r_h @ (M @ r_w^T): npcam.upsample's own product, width first as ATen does.
        up = self.r_h @ (self.maps[rows] @ self.r_w.T)
        return up if self.before else minmax_masks(up, self.constant[rows])


class _Outputs:
    """``model.run`` returning only what the logits need: ``keep=()`` frees every
    intermediate output after its last reader and keeps no cache — a
    :class:`~npcam.nn.Graph` (measured on resnet18 at 64 px, 64 inputs: a peak of 189 MB
    instead of 386 MB, and about 10 % less time) or a :class:`~npcam.Sequential` (the zoo
    models at batch 32: 25-70 % less time, as freed memory is reused); any other model
    runs as it is."""

    def __init__(self, model: Any) -> None:
        from ..nn.sequential import Sequential

        self.model = model
        self.lean = _takes_keep(model) or isinstance(model, Sequential)

    def run(self, x: np.ndarray) -> Any:
        return self.model.run(x, keep=()) if self.lean else self.model.run(x)


def _plain(sample: np.ndarray, x_rows: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Score-CAM's masked input X ∘ H^k (the mask broadcast over the input channels)."""
    return x_rows * masks[:, None]


def _softmax_channels(c: np.ndarray) -> np.ndarray:
    """``exp(c_k) / Σ_j exp(c_j)`` along the last (channel) axis, shifted by the max."""
    e = np.exp(c - c.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ----------------------------------------------------------------------- the loop
def _score_family(
    model: Any,
    x: Any,
    target: Target,
    layer: str | None,
    *,
    score: str,
    channel_softmax: bool,
    baseline: Any,
    align_corners: bool,
    normalize_before_upsample: bool,
    batch_size: int,
    return_masks: bool,
    progress: bool | None,
    label: str,
    num_samples: int = 1,
    perturb: Perturb = _plain,
) -> CAMResult:
    r"""The loop of Score-CAM, SS-CAM and IS-CAM: ``num_samples`` forward passes per mask.

    The job is the flat sequence of ``num_samples · N · K`` model inputs, sample-major
    (row ``s·N·K + n·K + k`` is sample s of channel k of image n), run ``batch_size`` at a
    time; ``perturb`` turns a chunk's masks into its inputs (and may draw noise, in row
    order, so that the draws do not depend on ``batch_size``). The scores of each mask
    are summed over the samples in sample order and divided by ``num_samples``:
    ``mask_scores`` = the mean of f_c over the samples, before the baseline and the
    channel softmax.
    """
    score = check_score(score)
    channel_softmax = _check_bool("channel_softmax", channel_softmax)
    align_corners = _check_bool("align_corners", align_corners)
    normalize_before_upsample = _check_bool("normalize_before_upsample", normalize_before_upsample)
    return_masks = _check_bool("return_masks", return_masks)
    batch_size = check_batch_size(batch_size)
    progress = check_progress(progress)
    xa = _image_batch(x)
    xb = _baseline_inputs(baseline, xa)  # in x's own layout, as the user gave both
    # masks live on the image's H and W: a channels-last graph is run in its NCHW form
    model, xa, transposed = nchw_view(model, xa)
    if transposed:
        xb = np.ascontiguousarray(np.transpose(xb, (0, 3, 1, 2)))
    la = layer_activations(model, xa, target, layer, score, allow_all=True)
    a, t = la.activations, la.target
    n, k = a.shape[:2]
    num_classes = la.trace.output.shape[1]
    masks = _Masks(a, xa.shape[2:], align_corners, normalize_before_upsample)
    scorer = _Outputs(model)

    per_sample = n * k
    total = num_samples * per_sample
    all_targets = t.ndim == 2
    # sums[n·K + k] (or [n·K + k, c] for target="all"): Σ_s f_c(input s of mask k of image n)
    sums = np.zeros((per_sample, num_classes) if all_targets else per_sample)
    t_rows = None if all_targets else np.repeat(t, k)

    def make_inputs(start: int, stop: int) -> np.ndarray:
        rows = np.arange(start, stop)
        sample, flat = np.divmod(rows, per_sample)
        return perturb(sample, xa[flat // k], masks(flat))

    block = batch_size * max(1, _BLOCK_VALUES // (batch_size * num_classes))
    with Progress(total, label, progress) as bar:
        for b0, b1 in chunks(total, block):
            def block_inputs(start: int, stop: int, b0: int = b0) -> np.ndarray:
                return make_inputs(b0 + start, b0 + stop)

            got = forward_scores(scorer, b1 - b0, block_inputs, score, batch_size, bar)
            _accumulate(sums, b0, got, per_sample, t_rows)

    mean = sums / num_samples
    base = forward_scores(scorer, n, lambda s0, s1: xb[s0:s1], score, batch_size)  # f(X_b), (N, C)
    mask_scores: np.ndarray  # (N, K), or (N, C, K) for target="all"
    if all_targets:
        mask_scores = np.moveaxis(mean.reshape(n, k, num_classes), 2, 1)  # (N, C, K)
        base_t = np.take_along_axis(base, t, axis=1)  # (N, C)
    else:
        mask_scores = mean.reshape(n, k)
        base_t = base[np.arange(n), t]
    increase = mask_scores - base_t[..., None]  # C(A^k) = f_c(X ∘ H^k) − f_c(X_b)
    weights = _softmax_channels(increase) if channel_softmax else increase
    extra = {"mask_scores": mask_scores}
    if return_masks:
        extra["masks"] = masks(np.arange(per_sample)).reshape(n, k, *xa.shape[2:])
    return map_result(weights, a, None, la.scores, t, la.layer, extra)


def _accumulate(
    sums: np.ndarray, start: int, got: np.ndarray, period: int, t_rows: np.ndarray | None
) -> None:
    """Add the scores ``got`` of job rows ``start..`` into ``sums[row % period]``, in
    row order (so each mask's sum runs over the samples in the same order whatever the
    block and chunk sizes)."""
    row = start
    stop = start + got.shape[0]
    while row < stop:
        flat = row % period
        end = min(stop, row - flat + period)
        part = got[row - start : end - start]
        if t_rows is None:
            sums[flat : flat + end - row] += part
        else:
            sums[flat : flat + end - row] += part[np.arange(end - row), t_rows[flat : flat + end - row]]
        row = end


# ------------------------------------------------------------------------ the method
def score_cam(
    model: Any,
    x: Any,
    target: Target = None,
    layer: str | None = None,
    *,
    score: str = "softmax",
    channel_softmax: bool = True,
    baseline: Any = None,
    align_corners: bool = False,
    normalize_before_upsample: bool = False,
    batch_size: int = 32,
    return_masks: bool = False,
    progress: bool | None = None,
) -> CAMResult:
    r"""Score-CAM: ``L^c = ReLU(Σ_k α^c_k A^k)`` with ``α^c = softmax_k(f_c(X ∘ H^k) − f_c(X_b))``.

    The paper's v2 (Wang et al. 2020, arXiv 1910.01279): H^k = s(Up(A^k)), the k-th
    feature map upsampled bilinearly (half-pixel centres, ``F.interpolate(...,
    align_corners=False)``) to the input's size and min-max normalised to [0, 1]
    (Definition 1); the increase of confidence C(A^k) = f_c(X ∘ H^k) − f_c(X_b)
    (Definition 1); the channel softmax of Algorithm 1 (v2); the map of Definition 2.
    The paper leaves s undefined for a constant channel; npcam gives it the zero mask
    H^k = 0 (its masked input is black), decided on A^k at the layer's resolution.

    Parameters
    ----------
    model : npcam.nn.Model
        Any model implementing the protocol (Sequential or Graph).
    x : array_like, (N, C, H, W)
        The input batch; the masks are (H, W). A graph that reads (N, H, W, C)
        (:meth:`npcam.Graph.channels_last_input`, a Keras model through ONNX) takes x in
        that layout and ``baseline`` broadcast to it; it is run in its NCHW form.
    target : None, int, N ints or "all"
        None: the predicted class per image. "all": every class — the forward passes
        give every class's score, so no pass is added; a class axis follows N in
        ``cam``, ``raw``, ``weights`` (N, C, K), ``scores``, ``target`` and
        ``extra["mask_scores"]`` (N, C, K).
    layer : str or None
        The feature maps A; default as :func:`npcam.grad_cam`.
    score : {"softmax", "logit", "log_softmax"}
        f_c. Default ``"softmax"``, the class probability (§ 3.2; the authors' code,
        haofanwang/Score-CAM #6). pytorch-grad-cam and torchcam use the logit.
    channel_softmax : bool
        True (default): α = softmax over the K channels of C (Algorithm 1 of v2,
        haofanwang/Score-CAM #17). False: α = C itself (v1's Definition 2; the authors'
        code uses f_c(X ∘ H^k) without X_b's term, the ``authors-code`` convention).
    baseline : None or array_like broadcastable to x
        X_b. None (default): the black image, as in the authors' experiments
        (haofanwang/Score-CAM #6, #17). f_c(X_b) is always computed (N extra forward
        passes), although under ``channel_softmax=True`` it is constant in k and cancels.
    align_corners : bool
        False (default): half-pixel bilinear upsampling (the authors' code,
        ``F.interpolate(..., align_corners=False)``). True: corner-aligned, as
        pytorch-grad-cam's ``nn.UpsamplingBilinear2d`` and tf-keras-vis's scipy zoom.
    normalize_before_upsample : bool
        False (default): upsample, then min-max (the paper's order). True: min-max at the
        layer's resolution, then upsample (torchcam's order; its masks then never reach 1
        where a peak falls between sample points — up to 0.44 apart on SmallCNN).
    batch_size : int
        Masked inputs per forward pass (default 32); a memory bound that cannot change
        the result (each pass is a function of its own rows only).
    return_masks : bool
        Also return the masks H^k, ``extra["masks"]`` (N, K, H, W) — off by default:
        512 masks at 224² are 205 MB per image. They do not depend on the class (no class
        axis with ``target="all"``).
    progress : None, True or False
        A progress bar labelled "Score-CAM" over the N·K masked inputs (None: only on a
        terminal and for jobs longer than about 2 s).

    Returns
    -------
    CAMResult
        ``cam`` L^c = ReLU(raw) and ``raw`` Σ_k α^c_k A^k (N, h, w), at the layer's
        resolution (upsample with :func:`npcam.upsample`); ``weights`` α^c (N, K);
        ``activations`` A; ``gradients`` None; ``scores`` f_c(X) of the unmasked input;
        ``target``; ``layer``; ``extra["mask_scores"]`` (N, K): f_c(X ∘ H^k), the raw
        score of each masked input, before the baseline is subtracted and before the
        channel softmax (so C = mask_scores − f_c(X_b)); ``extra["masks"]`` with
        ``return_masks=True``.

    Notes
    -----
    Cost: N·K + N forward passes. The library variants — pytorch-grad-cam (logit,
    corner-aligned upsampling, ε 1e-8, float32 weights), torchcam (logit, normalise
    first), tf-keras-vis (no channel softmax) and the authors' code (v1, map at input
    resolution) — are ``npcam.conventions.cam("score-cam", ..., convention=...)``.
    """
    return _score_family(
        model, x, target, layer, score=score, channel_softmax=channel_softmax, baseline=baseline,
        align_corners=align_corners, normalize_before_upsample=normalize_before_upsample,
        batch_size=batch_size, return_masks=return_masks, progress=progress, label="Score-CAM",
    )
