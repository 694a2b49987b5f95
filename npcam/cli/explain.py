"""``npcam explain``: one method applied to the user's own image file.

The model sees the image resized to its input size (Pillow's bilinear filter, from the
full-resolution 8-bit image). The overlay is drawn at the image size reduced by the
smallest integer factor ``f`` for which its longer side is at most
:data:`MAX_OVERLAY_SIDE` (2048) pixels: ``ceil(H / f) x ceil(W / f)``, the ``f x f``
block means of the 8-bit image (``load_image(..., max_side=2048)``). The image is never
held in float64 at full resolution, so a 49 Mpx PNG (just under the library's
``MAX_IMAGE_PIXELS`` = 50 Mpx budget, which the command keeps: larger images are refused
with one line) is explained in a few hundred MB.

``npcam explain IMAGE --torchvision NAME --weights FILE.safetensors`` explains with a
torchvision classifier instead (:func:`explain_torchvision`, the ``crosscheck`` extra):
``torchvision.models.get_model(NAME, weights=None)`` loaded with the user's weights
(npcam never downloads weights nor unpickles a ``.pth``), converted with
:func:`npcam.from_torch`, fed the image through the weights entry's own preprocessing
(:func:`npcam.image.transforms.preset_from_torchvision`: resize, centre crop,
normalise); it prints the top-5 ImageNet classes, and the map of the centre crop the
model saw is laid over that region of the image.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
from typing import Any

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

__all__ = ["AUX_MODELS", "MAX_OVERLAY_SIDE", "explain_image", "explain_onnx", "explain_torchvision",
           "register"]

#: The longer side of the overlay ``npcam explain`` writes is at most this many pixels.
MAX_OVERLAY_SIDE = 2048

#: torchvision models built with these arguments (those of their pretrained weights, without
#: the auxiliary classifiers, whose ``aux*`` tensors in a weights file are skipped).
AUX_MODELS: dict[str, dict[str, Any]] = {
    "googlenet": {"transform_input": True, "aux_logits": False, "init_weights": False},
    "inception_v3": {"transform_input": True, "aux_logits": False, "init_weights": False},
}
_CROSSCHECK_HINT = "install the crosscheck extra: pip install 'npcam[crosscheck]'"
_CONVERT_HINT = (
    "convert a .pth once with torch: safetensors.torch.save_file(torch.load('model.pth', "
    "weights_only=True), 'model.safetensors')"
)


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


# ------------------------------------------------------------------------ torchvision
def _import_torchvision() -> tuple[Any, Any]:
    try:
        torch = importlib.import_module("torch")
        models = importlib.import_module("torchvision.models")
    except ImportError as exc:
        raise CliError(f"--torchvision needs torch and torchvision; {_CROSSCHECK_HINT}.") from exc
    return torch, models


def _key_list(keys: list[str]) -> str:
    if not keys:
        return "none"
    return "[" + ", ".join(repr(k) for k in keys[:10]) + (", ..." if len(keys) > 10 else "") + "]"


def _load_torch_weights(torch: Any, module: Any, path: str, name: str, log) -> None:
    """Load a checked weights file into the float64 torch ``module`` (``aux*`` tensors of
    :data:`AUX_MODELS` skipped with a note; any other mismatch a one-line error)."""
    from ..nn.io import open_weights

    label = f"--weights {path!r}"
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    what = f"torchvision's {name}"
    try:
        archive = open_weights(path, argument="--weights", label=label)
    except ImportError as exc:
        raise CliError(str(exc) + ".") from exc
    with archive:
        given = [k for k in archive.headers if not (k.startswith("__") and k.endswith("__"))]
        missing = [k for k in expected if k not in archive.headers]
        unexpected = sorted(k for k in given if k not in expected)
        aux = [k for k in unexpected if name in AUX_MODELS and k.split(".")[0].lower().startswith("aux")]
        other = [k for k in unexpected if k not in aux]
        if missing or other:
            raise CliError(
                f"{label} does not match {what}: missing keys {_key_list(missing)}, "
                f"unexpected keys {_key_list(other)}."
            )
        archive.check_state(expected, strict=False, what=what)  # shapes and dtypes
        arrays = {k: archive.read(k) for k in expected}
    if aux:
        prefixes = sorted({k.split(".")[0] for k in aux})
        log(f"note: skipped the {len(aux)} tensors of {', '.join(prefixes)} in {path}: {name} is built "
            "without its auxiliary classifiers (aux_logits=False)")
    with torch.no_grad():
        module.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()},
                               strict=True)


def _top_classes(logits: np.ndarray, categories: list[str], k: int = 5) -> list[tuple[int, str, float]]:
    z = logits - logits.max()
    p = np.exp(z) / np.exp(z).sum()
    order = np.argsort(-logits, kind="stable")[:k]
    return [(int(i), str(categories[i]), float(p[i])) for i in order]


def _overlay_crop(path: str, heat: np.ndarray, geometry: Any, size: tuple[int, int], log) -> np.ndarray:
    """The image (reduced as :func:`explain_image` does) with ``heat`` (crop × crop, in
    [0, 1]) blended over the region the crop covers; the image as it is elsewhere."""
    height, width = size
    shown = load_image(path, max_side=MAX_OVERLAY_SIDE)
    factor = reduction_factor((height, width), MAX_OVERLAY_SIDE)
    if factor > 1:
        log(f"overlay drawn at {shown.shape[2]}x{shown.shape[1]}: the image reduced {factor}x "
            f"so that its longer side is at most {MAX_OVERLAY_SIDE} px")
    (rh, rw), top, left, crop = geometry
    sh, sw = shown.shape[1:]
    # the part of the crop inside the resized image, in crop and in resized coordinates
    r0, r1 = max(top, 0), min(top + crop, rh)
    c0, c1 = max(left, 0), min(left + crop, rw)
    # the same region in the shown image's pixels
    y0, x0 = min(round(r0 * sh / rh), sh - 1), min(round(c0 * sw / rw), sw - 1)
    y1 = min(max(round(r1 * sh / rh), y0 + 1), sh)  # at least one row and column
    x1 = min(max(round(c1 * sw / rw), x0 + 1), sw)
    part = heat[r0 - top : r1 - top, c0 - left : c1 - left]
    region = np.clip(upsample(part[None], (y1 - y0, x1 - x0))[0], 0.0, 1.0)
    picture = np.moveaxis(shown, 0, -1).copy()
    picture[y0:y1, x0:x1] = overlay(shown[:, y0:y1, x0:x1], region)
    return picture


def explain_torchvision(path: str, name: str, weights: str | None, out: str, method: str = "grad-cam",
                        target: int | None = None, layer: str | None = None, resize: int | None = None,
                        crop: int | None = None, log=print) -> int:
    """Explain the user's image with a torchvision classifier and the user's weights;
    write an overlay PNG; returns the explained class.

    The model is ``torchvision.models.get_model(name, weights=None)`` (with
    :data:`AUX_MODELS`' arguments for googlenet and inception_v3), in float64, loaded
    with ``weights`` (a ``.safetensors`` file, checked before it is read), converted
    with :func:`npcam.from_torch`. The image goes through the preset of
    ``get_model_weights(name).DEFAULT`` (``resize`` / ``crop`` replace its sizes). The
    top-5 classes (names from the weights entry's ``meta["categories"]``) and their
    softmax probabilities are printed; the map of the centre crop is laid over the part
    of the image the crop covers (the image reduced as :func:`explain_image` does);
    input methods are written at the crop's size.
    """
    from ..image.transforms import preset_from_torchvision
    from ..interop.torch import from_torch

    if method not in METHODS:
        raise CliError(f"method must be one of {', '.join(METHODS)}, got {method!r}.")
    torch, models = _import_torchvision()
    names = models.list_models(module=models)
    if name not in names:
        raise CliError(
            f"--torchvision must name a torchvision classification model (one of the "
            f"{len(names)} of torchvision.models.list_models(), e.g. resnet50), got {name!r}."
        )
    if weights is None:
        raise CliError(
            f"--torchvision {name} needs --weights FILE.safetensors (npcam neither downloads "
            f"weights nor unpickles .pth files); {_CONVERT_HINT}."
        )
    for option, value in (("--resize", resize), ("--crop", crop)):
        if value is not None and value < 1:
            raise CliError(f"{option} must be a positive number of pixels, got {value}.")
    entry = models.get_model_weights(name).DEFAULT
    preset = preset_from_torchvision(entry)
    preset = dataclasses.replace(
        preset,
        resize_size=preset.resize_size if resize is None else resize,
        crop_size=preset.crop_size if crop is None else crop,
    )
    categories = list(entry.meta["categories"])
    if target is not None and not 0 <= target < len(categories):
        raise CliError(f"--target must be in [0, {len(categories)}), got {target}.")
    height, width = image_size(path)
    geometry = preset.geometry(height, width)

    module = models.get_model(name, weights=None, **AUX_MODELS.get(name, {})).double().eval()
    _load_torch_weights(torch, module, weights, name, log)
    model = from_torch(module)
    x = preset(path)[None]
    log(f"{path} ({width}x{height}) preprocessed as {entry}: resized to {geometry.resized[1]}x"
        f"{geometry.resized[0]} ({preset.interpolation}), centre crop {preset.crop_size}x{preset.crop_size}, "
        f"normalised with mean {preset.mean} and std {preset.std}")
    logits = np.asarray(model.forward(x), dtype=np.float64)
    if logits.shape != (1, len(categories)):
        raise CliError(f"{name} gave logits of shape {logits.shape}, expected (1, {len(categories)}).")
    log(f"top-5 classes of {name} (softmax probabilities):")
    for rank, (index, label, prob) in enumerate(_top_classes(logits[0], categories), start=1):
        log(f"  {rank}. class {index} ({label}): {prob:.6f}")
    c = int(logits.argmax()) if target is None else target
    maps = method_maps(model, x, np.array([c]), method, layer)
    if maps.ndim == 4:
        picture = np.moveaxis(maps[0], 0, -1)
    else:
        picture = _overlay_crop(path, maps[0], geometry, (height, width), log)
    save_image(out, picture)
    log(f"{method} for class {c} ({categories[c]}, logit {logits[0, c]:.3f}) written to {out}")
    return c


# ------------------------------------------------------------------------ ONNX
def _onnx_graph(onnx_path: str, input_layout: str | None, log) -> Any:
    try:
        from ..interop.onnx import from_onnx

        graph = from_onnx(onnx_path, input_layout=input_layout)
    except ImportError as exc:
        raise CliError("--onnx needs the onnx package; install the onnx extra: pip install "
                       "'npcam[onnx]'.") from exc
    except (ValueError, TypeError) as exc:
        raise CliError(f"--onnx {onnx_path}: {exc}") from exc
    shape = graph.input_shape
    if input_layout is None and shape is not None and len(shape) == 4 and shape[3] in (1, 3) \
            and shape[1] not in (1, 3):
        # an NHWC model (tf2onnx): fold its leading transpose so that the maps come out
        # (N, C, H, W) like every other model's; the explanation is the same
        try:
            from ..interop.onnx import _fold_input_transpose

            graph = _fold_input_transpose(graph)
            log("the model takes NHWC images; explained through its NCHW core (--input-layout nchw)")
        except ValueError:
            pass
    return graph


def explain_onnx(path: str, onnx_path: str, out: str, method: str = "grad-cam", target: int | None = None,
                 layer: str | None = None, input_size: tuple[int, int] | None = None,
                 mean: list[float] | None = None, std: list[float] | None = None,
                 input_layout: str | None = None, log=print) -> int:
    """Explain the user's image with an ONNX model (:func:`npcam.from_onnx`); write an
    overlay PNG; returns the explained class.

    The image is resized to the graph's exported spatial size (``input_size`` only for a
    graph whose spatial dimensions are dynamic), fed in [0, 1] RGB, or normalised as
    ``(x − mean_c) / std_c`` with one ``mean`` and ``std`` per input channel. The top-5
    classes (by index) and their softmax probabilities are printed.
    """
    if method not in METHODS:
        raise CliError(f"method must be one of {', '.join(METHODS)}, got {method!r}.")
    graph = _onnx_graph(onnx_path, input_layout, log)
    shape = graph.input_shape
    if shape is None or len(shape) != 4:
        raise CliError(f"--onnx {onnx_path}: the model's input must be an image batch (N, C, H, W), got "
                       f"the shape {shape}.")
    channels, h, w = shape[1], shape[2], shape[3]
    if h is not None and w is not None:
        if input_size is not None:
            raise CliError(f"--input-size applies only to a model with dynamic spatial dimensions; "
                           f"{onnx_path} was exported at {h}x{w} (height x width).")
    else:
        if input_size is None:
            raise CliError(f"{onnx_path} has dynamic spatial dimensions; give --input-size H W.")
        if min(input_size) < 1:
            raise CliError(f"--input-size must be two positive sizes, got {list(input_size)}.")
        h, w = h or input_size[0], w or input_size[1]
    if channels not in (None, 3):
        raise CliError(f"--onnx {onnx_path}: the model takes {channels} input channels; npcam explain feeds "
                       "RGB images (3 channels).")
    for option, values in (("--mean", mean), ("--std", std)):
        if values is not None and len(values) != 3:
            raise CliError(f"{option} needs one value per input channel (3), got {len(values)}.")
    if (mean is None) != (std is None):
        raise CliError("--mean and --std go together; give both or neither.")
    if std is not None and any(not np.isfinite(v) or v <= 0 for v in std):
        raise CliError(f"--std values must be positive, got {std}.")
    if mean is not None and any(not np.isfinite(v) for v in mean):
        raise CliError(f"--mean values must be finite, got {mean}.")
    height, width = image_size(path)
    if (height, width) != (h, w):
        log(f"resized {path} from {width}x{height} to the model's input {w}x{h}")
    image = load_image(path, size=(h, w))
    if mean is not None and std is not None:
        image = (image - np.asarray(mean)[:, None, None]) / np.asarray(std)[:, None, None]
    x = image[None]
    logits = np.asarray(graph.forward(x), dtype=np.float64)
    if logits.ndim != 2:
        raise CliError(f"--onnx {onnx_path}: the model's output must be logits (N, classes), got the "
                       f"shape {logits.shape}.")
    classes = logits.shape[1]
    if target is not None and not 0 <= target < classes:
        raise CliError(f"--target must be in [0, {classes}), got {target}.")
    log(f"top-5 classes of {onnx_path} (softmax probabilities"
        f"{'; the final Softmax was dropped' if graph.output_softmax else ''}):")
    for rank, (index, _, prob) in enumerate(_top_classes(logits[0], [""] * classes), start=1):
        log(f"  {rank}. class {index}: {prob:.6f}")
    c = int(logits.argmax()) if target is None else target
    try:
        maps = method_maps(graph, x, np.array([c]), method, layer)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    if maps.ndim == 4:
        picture = np.moveaxis(maps[0], 0, -1)
    else:
        shown = load_image(path, max_side=MAX_OVERLAY_SIDE)
        heat = normalize(upsample(maps, shown.shape[1:]))
        picture = overlay(shown, heat[0])
    save_image(out, picture)
    log(f"{method} for class {c} (logit {logits[0, c]:.3f}) written to {out}")
    return c


def _explain_command(args: argparse.Namespace) -> int:
    try:
        if args.onnx is not None:
            for option, value in (("--weights", args.weights), ("--resize", args.resize),
                                  ("--crop", args.crop)):
                if value is not None:
                    raise CliError(f"{option} applies only with --torchvision, got {option} {value} "
                                   "with --onnx.")
            explain_onnx(args.image, args.onnx, args.out, args.method, args.target, args.layer,
                         tuple(args.input_size) if args.input_size else None, args.mean, args.std,
                         args.input_layout)
            return 0
        for option, value in (("--input-size", args.input_size), ("--mean", args.mean), ("--std", args.std),
                              ("--input-layout", args.input_layout)):
            if value is not None:
                raise CliError(f"{option} applies only with --onnx, got {option} "
                               f"{' '.join(map(str, value)) if isinstance(value, list) else value}.")
        if args.torchvision is not None:
            explain_torchvision(args.image, args.torchvision, args.weights, args.out, args.method,
                                args.target, args.layer, args.resize, args.crop)
            return 0
        for option, value in (("--weights", args.weights), ("--resize", args.resize), ("--crop", args.crop)):
            if value is not None:
                raise CliError(f"{option} applies only with --torchvision, got {option} {value} "
                               "with --model.")
        if args.model not in zoo.NAMES:
            raise CliError(f"--model must be one of {', '.join(zoo.NAMES)}, got {args.model!r}.")
        explain_image(args.image, args.model, args.out, args.method, args.target, args.layer)
    except MemoryError as exc:
        raise CliError(f"not enough memory to explain {args.image!r}.") from exc
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "explain",
        help="explain your own image with a shipped model, a torchvision classifier or an ONNX model",
        description=(
            "Explain an image file with a shipped model (--model), which sees the image resized "
            "to its input size, or with a torchvision classifier and your weights (--torchvision "
            "NAME --weights FILE.safetensors), which sees the centre crop of its weights' preset "
            "and prints the top-5 classes, or with an ONNX model (--onnx FILE), fed the image resized "
            "to its exported input size. The overlay is drawn at the image size reduced by the "
            f"smallest integer factor that makes its longer side at most {MAX_OVERLAY_SIDE} px."
        ),
    )
    p.add_argument(
        "image",
        help=f"a {', '.join(IMAGE_FORMATS)} file of at most {MAX_IMAGE_PIXELS:,} pixels "
        "(resized to the model's input, or by the torchvision preset)",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="shipped model: gap or vgg")
    which.add_argument(
        "--torchvision", metavar="NAME",
        help="a torchvision classifier (resnet50, efficientnet_b0, ...; needs torch, torchvision and "
        "--weights), preprocessed with its weights' own preset",
    )
    which.add_argument(
        "--onnx", metavar="FILE",
        help="an ONNX classifier (from torch.onnx.export, tf2onnx or jax2onnx; needs the onnx extra), "
        "fed the image resized to its input size, in [0, 1] or normalised with --mean/--std",
    )
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="with --onnx: the input size, only for a model with dynamic spatial dimensions")
    p.add_argument("--mean", type=float, nargs="+", default=None,
                   help="with --onnx: one mean per input channel (x - mean) / std")
    p.add_argument("--std", type=float, nargs="+", default=None,
                   help="with --onnx: one standard deviation per input channel")
    p.add_argument("--input-layout", choices=["nchw"], default=None,
                   help="with --onnx: remove an NHWC model's leading transpose (tf2onnx) so it takes NCHW")
    p.add_argument("--weights", metavar="FILE", default=None,
                   help="with --torchvision: its weights as a .safetensors file (convert a .pth with "
                   "safetensors.torch.save_file(torch.load(path, weights_only=True), FILE))")
    p.add_argument("--resize", type=int, default=None, metavar="N",
                   help="with --torchvision: the shorter side after resizing (default: the preset's)")
    p.add_argument("--crop", type=int, default=None, metavar="N",
                   help="with --torchvision: the centre crop's side (default: the preset's)")
    p.add_argument("--target", type=int, default=None, help="class index (default: the predicted one)")
    p.add_argument("--method", default="grad-cam", help=f"one of {', '.join(METHODS)}")
    p.add_argument("--layer", default=None, help="layer name (default: the last 4-D map)")
    p.add_argument(
        "--out",
        required=True,
        help=f"output PNG (for layer methods the overlay's longer side is at most {MAX_OVERLAY_SIDE} px)",
    )
    p.set_defaults(func=_explain_command)
