r"""Test inputs that can reveal bugs: :func:`revealing_batch`.

A check can only find the bugs its input lets show. Two images that predict the same class
hide every target bug (the first image's argmax *is* every image's); a map that is ≥ 0
everywhere hides a missing ReLU; one image hides α averaged over the batch. A revealing
batch avoids all three: its images predict at least two different classes and the raw
Grad-CAM map ``M^c = Σ_k α^c_k A^k`` of every image takes both signs at the chosen layer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validate import as_positive_int, describe
from ..methods._core import check_model
from ..methods.grad_cam import grad_cam

__all__ = ["revealing_batch"]


def revealing_batch(
    model: Any,
    input_shape: Any,
    n: int = 4,
    layer: str | None = None,
    rng: Any = 0,
    max_tries: int = 200,
    *,
    score: str = "logit",
) -> np.ndarray:
    r"""``n`` images that predict at least two classes and whose raw maps take both signs.

    Candidates are drawn in batches of up to 16 from ``rng`` (a seed or a
    ``numpy.random.Generator``): each is ``s·ε + b`` with ε standard normal per pixel, a
    scale s uniform in [0.5, 2] and a per-channel offset b ~ N(0, 1), so that the logits
    vary between images. A candidate qualifies when its raw Grad-CAM map at ``layer``
    (for its predicted class) has values > 0 and < 0; when every candidate predicts one
    class (an untrained network often does), the first 4n of them are moved across the
    decision boundary by a few Newton steps on the logit margin (:func:`_nudged`); the batch takes qualifying
    candidates round-robin over their predicted classes (two classes at least, then in
    order of appearance).

    Parameters
    ----------
    model : npcam.nn.Model
    input_shape : (C, H, W)
        One image's shape; use a non-square one where the model allows it, so that a
        transposed map cannot agree by symmetry.
    n : int, ≥ 2
    layer : str or None
        The layer whose raw map must take both signs; None: the default layer.
    rng : int or numpy.random.Generator
    max_tries : int
        Candidates drawn at most.
    score : the score of the raw maps (``"logit"``, ``"softmax"``, ``"log_softmax"``): the
        one the implementation under test differentiates.

    Returns
    -------
    ndarray, (n, C, H, W) float64

    Raises
    ------
    ValueError
        When ``max_tries`` candidates do not give such a batch, naming the property that
        failed ("the model predicts one class for all 200 tries", "no candidate's raw map
        takes both signs at layer '4' in 200 tries", ...).
    """
    model = check_model(model)
    shape = _shape(input_shape)
    n = as_positive_int("n", n, minimum=2)
    max_tries = as_positive_int("max_tries", max_tries, minimum=1)
    if isinstance(rng, (bool, np.bool_)) or not isinstance(rng, (int, np.integer, np.random.Generator)):
        raise TypeError(f"rng must be an int seed or a numpy.random.Generator, got {describe(rng)}.")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(int(rng))
    pool: dict[int, list[np.ndarray]] = {}
    classes_seen: set[int] = set()
    first: list[np.ndarray] = []  # the first candidates, to nudge if one class only
    drawn = 0
    name = layer
    while drawn < max_tries:
        m = min(16, max_tries - drawn)
        scale = gen.uniform(0.5, 2.0, size=(m, 1, 1, 1))
        offset = gen.standard_normal((m, shape[0], 1, 1))
        x = scale * gen.standard_normal((m, *shape)) + offset
        drawn += m
        r = grad_cam(model, x, None, name, score)
        if name is None:
            name = r.layer
        raw = r.raw.reshape(m, -1)
        both = (raw.max(axis=1) > 0) & (raw.min(axis=1) < 0)
        first.extend(x[: max(0, 4 * n - len(first))])
        for i in range(m):
            c = int(r.target[i])
            classes_seen.add(c)
            if both[i]:
                pool.setdefault(c, []).append(x[i])
        if len(pool) >= 2 and sum(len(v) for v in pool.values()) >= n:
            return _round_robin(pool, n)
    if len(classes_seen) == 1:  # one class only: move images across the decision boundary
        c = next(iter(classes_seen))
        for cls, img in _nudged(model, np.stack(first), c, name, score):
            pool.setdefault(cls, []).append(img)
        if len(pool) >= 2 and sum(len(v) for v in pool.values()) >= n:
            return _round_robin(pool, n)
        classes_seen |= set(pool)
    if len(classes_seen) < 2:
        only = next(iter(classes_seen))
        raise ValueError(f"the model predicts one class ({only}) for all {drawn} tries; "
                         "a batch of one class cannot reveal target bugs.")
    if not pool:
        raise ValueError(f"no candidate's raw map takes both signs at layer {name!r} in {drawn} "
                         "tries; a map that is never negative cannot reveal a missing ReLU.")
    if len(pool) < 2:
        raise ValueError(f"only candidates of class {next(iter(pool))} have raw maps of both signs "
                         f"at layer {name!r} in {drawn} tries.")
    got = sum(len(v) for v in pool.values())
    raise ValueError(f"only {got} of {drawn} tries qualify (two classes, raw maps of both signs), "
                     f"fewer than n = {n}.")


def _nudged(model: Any, x: np.ndarray, c: int, layer: str | None, score: str = "logit",
            steps: int = 60) -> list[tuple[int, np.ndarray]]:
    r"""Images of class ``c`` moved across the decision boundary: image i towards the
    class of its (i mod (C − 1) + 2)-th largest logit, c_i, by Newton steps on the margin
    ``μ = z_c − z_{c_i}``: ``x ← x + (μ + μ₀/2) / ‖g‖² · g`` with ``g = ∂(z_{c_i} − z_c)/∂x``
    and μ₀ the first margin, each step at most a tenth of ‖x‖ (damped), so that the image
    ends well inside c_i's region (an argmax
    that float32 rounding cannot flip). Those that reach c_i with a raw map of both signs
    at ``layer`` are returned as (class, image)."""
    from ..methods.gradients import saliency

    m = len(x)
    rows = np.arange(m)
    z = model.run(x).output
    ranks = np.argsort(-z, axis=1)
    goal = ranks[rows, rows % (z.shape[1] - 1) + 1]
    mu0 = z[rows, c] - z[rows, goal]
    for _ in range(steps):
        z = model.run(x).output
        mu = z[rows, c] - z[rows, goal]
        active = mu > -mu0 / 4
        if not active.any():
            break
        d = saliency(model, x, goal) - saliency(model, x, np.full(m, c))
        norm2 = (d.reshape(m, -1) ** 2).sum(axis=1)
        ok = active & (norm2 > 0)
        step = np.where(ok, (mu + mu0 / 2) / np.where(norm2 > 0, norm2, 1.0), 0.0)
        # a damped step: at most a tenth of the image's norm (the margin is not linear)
        size = np.abs(step) * np.sqrt(norm2)
        cap = 0.1 * np.sqrt((x.reshape(m, -1) ** 2).sum(axis=1))
        step = step * np.minimum(1.0, cap / np.where(size > 0, size, 1.0))
        x = x + step[:, None, None, None] * d
    out = []
    r = grad_cam(model, x, None, layer, score)
    raw = r.raw.reshape(m, -1)
    for i in range(m):
        if int(r.target[i]) != c and raw[i].max() > 0 and raw[i].min() < 0:
            out.append((int(r.target[i]), x[i]))
    return out


def _round_robin(pool: dict[int, list[np.ndarray]], n: int) -> np.ndarray:
    out: list[np.ndarray] = []
    queues = [list(v) for v in pool.values()]
    while len(out) < n:
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop(0))
    return np.stack(out).astype(np.float64)


def _shape(input_shape: Any) -> tuple[int, int, int]:
    if not (isinstance(input_shape, (tuple, list)) and len(input_shape) == 3 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in input_shape)):
        raise ValueError(f"input_shape must be (C, H, W) of positive ints, got {input_shape!r}.")
    return (int(input_shape[0]), int(input_shape[1]), int(input_shape[2]))



