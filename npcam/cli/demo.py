"""``npcam demo``: the methods at work on the shipped models.

``demo`` generates synthetic scenes (single objects, and two-object scenes — the paper's
"dog and cat"), explains them with every method on the shipped models and writes one PNG
panel per scene: input | CAM | Grad-CAM | Guided Backprop | Guided Grad-CAM |
Counterfactual, one row per explained class, heat maps overlaid on the image. It prints
the numeric checks (CAM ≡ Grad-CAM under GAP, a gradient check of every layer of the
loaded model) and a short localisation summary.
"""

from __future__ import annotations

import argparse
import inspect
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .. import zoo
from .._validate import as_positive_int
from ..evaluation import localization as metrics
from ..evaluation.scenes import make_scenes
from ..evaluation.tables import EVALUATION_OPTIONS
from ..image import normalize, overlay, save_image, upsample
from ..methods._core import CAMResult
from ..methods._passes import cams_for_classes
from ..methods.grad_cam import grad_cam
from ..methods.identities import cam_equivalence
from ..methods.registry import METHODS as REGISTRY
from ..methods.registry import Method
from ..nn import Sequential
from ..verify.gradcheck import check_layer
from . import CliError

__all__ = [
    "DEMO_METHODS", "METHODS", "gradcheck_model", "method_maps", "panel", "register", "run_demo",
    "select_methods",
]

# Column titles short enough for a 192 px tile (the default is the display name).
_TITLES = {"guided-backprop": "guided backprop", "guided-grad-cam": "guided grad-cam",
           "deconvnet-grad-cam": "deconv grad-cam"}

#: The panels of the demo: the registry's methods with ``in_demo``, in its order.
DEMO_METHODS = tuple(name for name, m in REGISTRY.items() if m.in_demo)
#: Every method ``npcam explain --method`` accepts.
METHODS = tuple(REGISTRY)
SCALE = 3  # panel tiles are the 64×64 scenes enlarged 3× (nearest) so details stay visible


def _signed_to_unit(g: np.ndarray) -> np.ndarray:
    """A signed gradient image (N, C, H, W) shown as grey = 0: ``0.5 + 0.5·g / max|g|``."""
    scale = np.abs(g).max(axis=(1, 2, 3), keepdims=True)
    return 0.5 + 0.5 * np.divide(g, scale, out=np.zeros_like(g), where=scale > 0)


def _call(method: Method, model: Any, x: np.ndarray, target: np.ndarray | str, layer: str | None,
          options: dict[str, Any] | None = None) -> Any:
    options = options or {}
    if "layer" in inspect.signature(method.function).parameters:
        return method.function(model, x, target, layer=layer, **options)
    return method.function(model, x, target, **options)


def method_maps(model: Any, x: np.ndarray, target: np.ndarray, method: str,
                layer: str | None = None, options: dict[str, Any] | None = None) -> np.ndarray:
    """What the panels show for ``method`` (a name of :data:`npcam.METHODS`), at input
    resolution in [0, 1]: (N, H, W) heat maps for the methods that return a
    :class:`~npcam.CAMResult` (its ``cam`` upsampled: the layer methods, and FullGrad at
    input resolution), (N, 3, H, W) images for the gradient images (saliency, guided
    backprop, ...). ``options`` are passed to the method (e.g. ``num_samples``)."""
    if method not in REGISTRY:
        raise ValueError(f"method must be one of {', '.join(REGISTRY)}, got {method!r}.")
    entry = REGISTRY[method]
    if (entry.needs_forward_passes and entry.supports_all_targets and len(x) > 1
            and np.array_equal(x, np.broadcast_to(x[:1], x.shape))):
        # One image explained for several classes (a two-object scene): the masked or
        # ablated inputs are the same for every class, so one set of forward passes with
        # target="all" gives every class's map (equal to the per-row call up to rounding:
        # the methods are batch-independent), at 1/N of the cost.
        kw = dict(options or {})
        if layer is not None:
            kw["layer"] = layer
        cams = cams_for_classes(entry.function, model, x[:1], np.asarray(target)[None], **kw)
        if cams is not None:
            return normalize(upsample(cams[0], x.shape[2:]))
    out = _call(entry, model, x, target, layer, options)
    if isinstance(out, CAMResult):
        return normalize(upsample(out.cam, x.shape[2:]))
    return _signed_to_unit(out)


def select_methods(spec: str | None) -> tuple[str, ...]:
    """The methods ``--methods`` names: None or "demo" → :data:`DEMO_METHODS`; "all" →
    every method of :data:`npcam.METHODS`; else a comma-separated list of names."""
    if spec is None or spec == "demo":
        return DEMO_METHODS
    if spec == "all":
        return METHODS
    names = tuple(n.strip() for n in spec.split(",") if n.strip())
    unknown = [n for n in names if n not in REGISTRY]
    if not names or unknown:
        raise CliError(
            f"--methods must be 'demo', 'all' or a comma-separated list of {', '.join(REGISTRY)}; "
            f"got {spec!r}."
        )
    return names


def _tile(image_chw: np.ndarray) -> np.ndarray:
    hwc = np.moveaxis(image_chw, 0, -1)
    return np.repeat(np.repeat(hwc, SCALE, axis=0), SCALE, axis=1)


def panel(rows: list[list[np.ndarray]], titles: list[str], row_labels: list[str]) -> np.ndarray:
    """Assemble tiles (each (3, h, w) in [0, 1]) into one uint8 image with a title row
    and a label column."""
    th, tw = rows[0][0].shape[1] * SCALE, rows[0][0].shape[2] * SCALE
    pad, top, left = 4, 16, 70
    height = top + len(rows) * (th + pad)
    width = left + len(titles) * (tw + pad)
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            y, x = top + r * (th + pad), left + c * (tw + pad)
            canvas[y : y + th, x : x + tw] = np.round(_tile(tile) * 255).astype(np.uint8)
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    for c, title in enumerate(titles):
        draw.text((left + c * (tw + pad) + 2, 2), title, fill=(0, 0, 0))
    for r, label in enumerate(row_labels):
        draw.text((2, top + r * (th + pad) + th // 2 - 6), label, fill=(0, 0, 0))
    return np.asarray(img)


def gradcheck_model(model: Sequential, x: np.ndarray, coords: int = 32, seed: int = 0) -> dict[str, float]:
    """Largest central-difference relative error of each layer of ``model`` on the input
    that layer sees for ``x`` (one image), checking ``coords`` random coordinates of the
    input and of each parameter. The input is jittered by 1e-3 of its scale so that no
    value sits on a kink (a ReLU's 0, a tie in a max-pool window), where finite
    differences are meaningless."""
    rng = np.random.default_rng(seed)
    trace = model.run(x)
    errors: dict[str, float] = {}
    previous = trace.input
    for name, leaf in model.named_layers():
        a = previous
        scale = max(float(np.abs(a).max()), 1e-12)
        jittered = a + rng.uniform(-1e-3, 1e-3, size=a.shape) * scale
        errors[name] = max(check_layer(leaf, jittered, max_coords=coords, rng=rng).values())
        previous = trace.activations[name]
    return errors


def run_demo(out: Path, model_names: tuple[str, ...] = ("gap", "vgg"), seed: int = 0,
             log=print, methods: tuple[str, ...] = DEMO_METHODS) -> list[Path]:
    """Write the demo panels into ``out`` and print the checks; returns the files written.
    ``methods``: the panels (default the registry's ``in_demo`` methods; CAM is shown for
    the "gap" model only). The sampled methods run with 8 samples
    (:data:`npcam.evaluation.tables.EVALUATION_OPTIONS`)."""
    t0 = time.perf_counter()
    # Checked here, not by make_scenes, whose message would show the offset seed + 1000.
    seed = as_positive_int("seed", seed, minimum=0)
    out.mkdir(parents=True, exist_ok=True)
    singles = make_scenes(3, seed=seed + 1000, objects=1)
    pairs = make_scenes(2, seed=seed + 2000, objects=2)
    written: list[Path] = []
    for name in model_names:
        model = zoo.pretrained(name)
        classes = zoo.info(name)["class_names"]
        has_cam = name == "gap"
        shown_methods = [m for m in methods if has_cam or m != "cam"]
        titles = ["input", *(_TITLES.get(m, REGISTRY[m].display_name) for m in shown_methods)]

        scenes = [(singles.images[i], [int(singles.labels[i])]) for i in range(len(singles.labels))]
        scenes += [
            (pairs.images[i], [int(c) for c in pairs.object_labels[i]]) for i in range(len(pairs.labels))
        ]
        for k, (image, targets) in enumerate(scenes):
            x = zoo.standardize(name, np.repeat(image[None], len(targets), axis=0))
            t = np.asarray(targets)
            shown = [method_maps(model, x, t, method, options=EVALUATION_OPTIONS.get(method))
                     for method in shown_methods]
            tiles = []
            for j in range(len(targets)):
                row = [image]
                for maps in shown:
                    row.append(maps[j] if maps.ndim == 4 else np.moveaxis(overlay(image, maps[j]), -1, 0))
                tiles.append(row)
            path = out / f"{name}_scene{k}.png"
            save_image(path, panel(tiles, titles, [classes[c] for c in targets]))
            written.append(path)
            log(f"wrote {path}")

    gap = zoo.pretrained("gap")
    x = zoo.standardize("gap", singles.images)
    eq = cam_equivalence(gap, x)
    log(f"CAM = Grad-CAM x Z on the 'gap' model (Z = {eq.Z}): weight error {eq.weight_error:.1e}, "
        f"map error {eq.map_error:.1e} -> {'holds' if eq.holds else 'FAILS'}")
    errs = gradcheck_model(gap, x[:1])
    worst = max(errs, key=lambda name: errs[name])
    log(f"gradient check of every layer of 'gap' (32 coordinates per tensor): worst relative "
        f"error {errs[worst]:.1e} (layer {worst})")

    test = make_scenes(100, seed=seed + 3000, objects=1)
    xs = zoo.standardize("gap", test.images)
    masks = test.masks[:, 0]
    grad = upsample(grad_cam(gap, xs, test.labels).cam, test.images.shape[2:])
    centre = metrics.centre_maps(len(test.labels), *test.images.shape[2:])
    boxes = test.boxes[:, 0]
    log(f"localisation on 100 scenes, Grad-CAM vs a centre box: pointing game "
        f"{metrics.pointing_game(grad, masks).mean():.0%} vs "
        f"{metrics.pointing_game(centre, masks).mean():.0%}, "
        f"box accuracy at 50 % of the max {metrics.box_accuracy(grad, boxes, 0.5).mean():.0%} vs "
        f"{metrics.box_accuracy(centre, boxes, 0.5).mean():.0%} (full table: npcam evaluate)")
    log(f"done in {time.perf_counter() - t0:.1f} s")
    return written


def _demo_command(args: argparse.Namespace) -> int:
    models = tuple(args.model) if args.model else ("gap", "vgg")
    for m in models:
        if m not in zoo.NAMES:
            raise CliError(f"--model must be one of {', '.join(zoo.NAMES)}, got {m!r}.")
    run_demo(Path(args.out), models, args.seed, methods=select_methods(args.methods))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="explain synthetic scenes with every method; write PNG panels")
    p.add_argument("--out", default="npcam-demo", help="folder for the PNG panels (default: npcam-demo)")
    p.add_argument("--model", action="append", help="shipped model (gap, vgg); repeat for several")
    p.add_argument("--seed", type=int, default=0, help="seed of the scenes (default 0)")
    p.add_argument(
        "--methods", default=None,
        help="panels: 'demo' (the default: " + ", ".join(DEMO_METHODS) + "), 'all' (every method) "
             "or a comma-separated list of method names",
    )
    p.set_defaults(func=_demo_command)
