"""The tables of ``npcam evaluate``: weakly-supervised localisation of the shipped models, as in § 4.1 of
the paper, on held-out synthetic scenes whose object masks and boxes are known.

For each method the map for the ground-truth class is brought to the image resolution
and scored with :mod:`npcam.evaluation.localization`:

* pointing game — the map's maximum falls inside the object's mask;
* box accuracy — threshold at 15 % of the map's maximum, box around the largest
  connected component, IoU ≥ 0.5 with the ground-truth box (the paper's protocol); also
  at 50 % of the maximum, since a coarse map (8×8 here) upsampled to 64×64 spreads
  beyond small objects and the 15 % box is then too large for IoU ≥ 0.5;
* discrimination (two-object scenes) — the map for class c peaks on object c and not on
  the other object, counted over both classes of every scene.

Maps: CAM, Grad-CAM and the counterfactual are upsampled bilinearly (half-pixel
centres); the gradient methods (guided backprop, saliency) use ``max_channels |g|``
(Simonyan et al.'s rule for a pixel map); the centre baseline is a centred box covering
half of each side (its pointing game is the image centre).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import zoo
from ..image import upsample
from ..methods._core import CAMResult
from ..methods._passes import cams_for_classes
from ..methods.registry import METHODS, Method
from . import localization as metrics
from .scenes import make_scenes

__all__ = ["EVALUATION_OPTIONS", "MAP_METHODS", "format_table", "localization_table"]


def _maps(method: Method) -> Callable:
    """The map a method gives for localisation, at image resolution: the ``cam`` of a
    method that returns a :class:`~npcam.CAMResult`, upsampled bilinearly (the layer
    methods; FullGrad's is already at image resolution); an input-gradient method's
    ``max_channels |g|``. The sampled methods run with ``num_samples=8``
    (:data:`EVALUATION_OPTIONS`)."""
    options = EVALUATION_OPTIONS.get(method.name, {})

    def maps(model, x, target):
        out = method.function(model, x, target, **options)
        if isinstance(out, CAMResult):
            return upsample(out.cam, x.shape[2:])
        return np.abs(out).max(axis=1) if out.ndim == 4 else out

    return maps


#: The options of the sampled methods in the tables (their evaluation default).
EVALUATION_OPTIONS: dict[str, dict[str, int]] = {
    "ss-cam": {"num_samples": 8},
    "is-cam": {"num_samples": 8},
    "smooth-grad-cam++": {"num_samples": 8},
}

#: The rows of the table: every method of :data:`npcam.METHODS`, by display name.
MAP_METHODS: dict[str, Callable] = {m.display_name: _maps(m) for m in METHODS.values()}
_NEEDS_GAP = {m.display_name for m in METHODS.values() if m.name == "cam"}
#: display name -> registry name
_NAMES = {m.display_name: m.name for m in METHODS.values()}


def _batched(fn, model, x, target, batch: int = 250) -> np.ndarray:
    parts = [fn(model, x[i : i + batch], target[i : i + batch]) for i in range(0, len(x), batch)]
    return np.concatenate(parts)


def _pair_maps(method: Method, model, x: np.ndarray, classes: np.ndarray,
               batch: int = 250) -> list[np.ndarray]:
    """The maps (N, H, W) of both objects of the two-object scenes, one array per object.

    The methods whose forward passes give every class's score (Score-, SS-, IS-,
    Ablation-CAM) explain both objects of a batch with one ``target="all"`` call
    (:func:`~npcam.methods._passes.cams_for_classes`), which halves their cost; the
    per-object calls run instead when that call warned, so that only the asked classes'
    warnings are shown."""
    fn = MAP_METHODS[method.display_name]
    if not (method.needs_forward_passes and method.supports_all_targets):
        return [_batched(fn, model, x, classes[:, k]) for k in range(classes.shape[1])]
    options = EVALUATION_OPTIONS.get(method.name, {})
    parts = []
    for i in range(0, len(x), batch):
        xb, cb = x[i : i + batch], classes[i : i + batch]
        cams = cams_for_classes(method.function, model, xb, cb, **options)
        if cams is None:
            parts.append(np.stack([fn(model, xb, cb[:, k]) for k in range(cb.shape[1])], axis=1))
        else:  # one resize of every (image, object) map, as _maps resizes a cam
            n, m, h, w = cams.shape
            parts.append(upsample(cams.reshape(n * m, h, w), x.shape[2:]).reshape(n, m, *x.shape[2:]))
    maps = np.concatenate(parts)
    return [maps[:, k] for k in range(classes.shape[1])]


def localization_table(n: int = 500, seed: int = 777, models: tuple[str, ...] = ("gap", "vgg"),
                       methods: tuple[str, ...] | None = None) -> list[dict]:
    """One row per (model, method): pointing game, box accuracy and discrimination rates
    in [0, 1] on ``n`` single-object and ``n`` two-object scenes. ``methods``: names of
    :data:`npcam.METHODS` (default: all, in the registry's order)."""
    if methods is not None:
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise ValueError(f"methods must be names of npcam.METHODS, got unknown {unknown}.")
    singles = make_scenes(n, seed=seed, objects=1)
    pairs = make_scenes(n, seed=seed + 1, objects=2)
    size = singles.images.shape[2:]
    rows = []
    centre = metrics.centre_maps(n, *size)
    rows.append({
        "model": "-", "method": "centre box",
        "pointing": float(metrics.pointing_game(centre, singles.masks[:, 0]).mean()),
        "box": float(metrics.box_accuracy(centre, singles.boxes[:, 0]).mean()),
        "box50": float(metrics.box_accuracy(centre, singles.boxes[:, 0], threshold=0.5).mean()),
        "discrimination": float("nan"),
    })
    for name in models:
        model = zoo.pretrained(name)
        xs = zoo.standardize(name, singles.images)
        xp = zoo.standardize(name, pairs.images)
        for method, fn in MAP_METHODS.items():
            if method in _NEEDS_GAP and name != "gap":
                continue
            if methods is not None and _NAMES[method] not in methods:
                continue
            maps = _batched(fn, model, xs, singles.labels)
            hits = []
            for k, mk in enumerate(_pair_maps(METHODS[_NAMES[method]], model, xp,
                                              pairs.object_labels)):
                other = 1 - k
                hits.append(metrics.discrimination(mk, pairs.masks[:, k], pairs.masks[:, other]))
            rows.append({
                "model": name, "method": method,
                "pointing": float(metrics.pointing_game(maps, singles.masks[:, 0]).mean()),
                "box": float(metrics.box_accuracy(maps, singles.boxes[:, 0]).mean()),
                "box50": float(metrics.box_accuracy(maps, singles.boxes[:, 0], threshold=0.5).mean()),
                "discrimination": float(np.concatenate(hits).mean()),
            })
    return rows


def format_table(rows: list[dict], n: int) -> str:
    lines = [
        f"Localisation on {n} held-out single-object scenes "
        f"(discrimination: {n} two-object scenes, both classes)",
        "",
        "| model | method | pointing game | box acc. @15 % (paper) | box acc. @50 % | discrimination |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        disc = "—" if np.isnan(r["discrimination"]) else f"{r['discrimination']:.1%}"
        scores = f"{r['pointing']:.1%} | {r['box']:.1%} | {r['box50']:.1%} | {disc}"
        lines.append(f"| {r['model']} | {r['method']} | {scores} |")
    return "\n".join(lines)
