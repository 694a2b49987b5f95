"""``npcam explain``: one method applied to the user's own image file.

The model sees the image resized to its input size (Pillow's bilinear filter, from the
full-resolution 8-bit image). The overlay is drawn at the image size reduced by the
smallest integer factor ``f`` for which its longer side is at most
:data:`MAX_OVERLAY_SIDE` (2048) pixels: ``ceil(H / f) x ceil(W / f)``, the ``f x f``
block means of the 8-bit image (``load_image(..., max_side=2048)``). The image is never
held in float64 at full resolution, so a 49 Mpx PNG (just under the library's
``MAX_IMAGE_PIXELS`` = 50 Mpx budget, which the command keeps: larger images are refused
with one line) is explained in a few hundred MB.
"""

from __future__ import annotations

import argparse

import numpy as np

from .. import zoo
from ..image import (
    IMAGE_FORMATS,
    MAX_IMAGE_PIXELS,
    image_size,
    load_image,
    normalize,
    overlay,
    reduction_factor,
    save_image,
    upsample,
)
from . import CliError
from .demo import METHODS, method_maps

__all__ = ["MAX_OVERLAY_SIDE", "explain_image", "register"]

#: The longer side of the overlay ``npcam explain`` writes is at most this many pixels.
MAX_OVERLAY_SIDE = 2048


def explain_image(path: str, model_name: str, out: str, method: str = "grad-cam",
                  target: int | None = None, layer: str | None = None, log=print) -> int:
    """Explain the user's image file with one method; write an overlay PNG; returns the
    explained class.

    Layer methods are overlaid on the image reduced by an integer factor so that the
    overlay's longer side is at most :data:`MAX_OVERLAY_SIDE` (module docstring); input
    methods (saliency, guided backpropagation, ...) are written at the model's input size.
    """
    if method not in METHODS:
        raise CliError(f"method must be one of {', '.join(METHODS)}, got {method!r}.")
    model = zoo.pretrained(model_name)
    meta = zoo.info(model_name)
    h, w = meta["input_size"]
    height, width = image_size(path)
    if (height, width) != (h, w):
        log(f"resized {path} from {width}x{height} to the model's input {w}x{h}")
    image = load_image(path, size=(h, w))
    x = zoo.standardize(model_name, image[None])
    logits = model.forward(x)
    classes = meta["class_names"]
    if target is not None and not 0 <= target < len(classes):
        raise CliError(f"--target must be in [0, {len(classes)}), got {target}.")
    c = int(logits.argmax()) if target is None else target
    maps = method_maps(model, x, np.array([c]), method, layer)
    if maps.ndim == 4:
        picture = np.moveaxis(maps[0], 0, -1)
    else:
        shown = load_image(path, max_side=MAX_OVERLAY_SIDE)
        factor = reduction_factor((height, width), MAX_OVERLAY_SIDE)
        if factor > 1:
            log(f"overlay drawn at {shown.shape[2]}x{shown.shape[1]}: the image reduced {factor}x "
                f"so that its longer side is at most {MAX_OVERLAY_SIDE} px")
        heat = normalize(upsample(maps, shown.shape[1:]))
        picture = overlay(shown, heat[0])
    save_image(out, picture)
    log(f"{method} for class {c} ({classes[c]}, logit {logits[0, c]:.3f}) written to {out}")
    return c


def _explain_command(args: argparse.Namespace) -> int:
    if args.model not in zoo.NAMES:
        raise CliError(f"--model must be one of {', '.join(zoo.NAMES)}, got {args.model!r}.")
    try:
        explain_image(args.image, args.model, args.out, args.method, args.target, args.layer)
    except MemoryError as exc:
        raise CliError(f"not enough memory to explain {args.image!r}.") from exc
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "explain",
        help="explain your own image with a shipped model",
        description=(
            "Explain an image file with a shipped model. The model sees the image resized to its "
            "input size; the overlay is drawn at the image size reduced by the smallest integer "
            f"factor that makes its longer side at most {MAX_OVERLAY_SIDE} px."
        ),
    )
    p.add_argument(
        "image",
        help=f"a {', '.join(IMAGE_FORMATS)} file of at most {MAX_IMAGE_PIXELS:,} pixels "
        "(resized to the model's input)",
    )
    p.add_argument("--model", required=True, help="shipped model: gap or vgg")
    p.add_argument("--target", type=int, default=None, help="class index (default: the predicted one)")
    p.add_argument("--method", default="grad-cam", help=f"one of {', '.join(METHODS)}")
    p.add_argument("--layer", default=None, help="layer name (default: the last 4-D map)")
    p.add_argument(
        "--out",
        required=True,
        help=f"output PNG (for layer methods the overlay's longer side is at most {MAX_OVERLAY_SIDE} px)",
    )
    p.set_defaults(func=_explain_command)
