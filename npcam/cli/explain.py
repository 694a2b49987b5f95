"""``npcam explain``: one method applied to the user's own image file."""

from __future__ import annotations

import argparse

import numpy as np

from .. import zoo
from ..image import load_image, normalize, overlay, save_image, upsample
from . import CliError
from .demo import METHODS, method_maps

__all__ = ["explain_image", "register"]


def explain_image(path: str, model_name: str, out: str, method: str = "grad-cam",
                  target: int | None = None, layer: str | None = None, log=print) -> int:
    """Explain the user's image file with one method; write an overlay PNG; returns the
    explained class."""
    if method not in METHODS:
        raise CliError(f"method must be one of {', '.join(METHODS)}, got {method!r}.")
    model = zoo.pretrained(model_name)
    meta = zoo.info(model_name)
    h, w = meta["input_size"]
    original = load_image(path)
    if original.shape[1:] != (h, w):
        log(f"resized {path} from {original.shape[2]}x{original.shape[1]} to the model's input {w}x{h}")
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
        heat = normalize(upsample(maps, original.shape[1:]))
        picture = overlay(original, heat[0])
    save_image(out, picture)
    log(f"{method} for class {c} ({classes[c]}, logit {logits[0, c]:.3f}) written to {out}")
    return c


def _explain_command(args: argparse.Namespace) -> int:
    if args.model not in zoo.NAMES:
        raise CliError(f"--model must be one of {', '.join(zoo.NAMES)}, got {args.model!r}.")
    explain_image(args.image, args.model, args.out, args.method, args.target, args.layer)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("explain", help="explain your own image with a shipped model")
    p.add_argument("image", help="an image file (any size: resized to the model's input)")
    p.add_argument("--model", required=True, help="shipped model: gap or vgg")
    p.add_argument("--target", type=int, default=None, help="class index (default: the predicted one)")
    p.add_argument("--method", default="grad-cam", help=f"one of {', '.join(METHODS)}")
    p.add_argument("--layer", default=None, help="layer name (default: the last 4-D map)")
    p.add_argument("--out", required=True, help="output PNG")
    p.set_defaults(func=_explain_command)
