"""torchvision's ImageNet classification preset, reproduced with Pillow and NumPy.

The pretrained classifiers of ``torchvision.models`` expect the images their weights
entry's ``weights.transforms()`` makes (``torchvision.transforms._presets.
ImageClassification``). On a PIL image that preset is, exactly:

1. **resize** the shorter side to ``resize_size`` (``F.resize(img, [resize_size],
   interpolation, antialias=True)``): the new size is ``(resize_size, int(resize_size ·
   long / short))`` for the short and long sides (the long side truncated, Python's
   ``int``), with Pillow's ``Image.resize`` and the given filter (bilinear for most
   weights, bicubic for EfficientNet). Pillow always antialiases (its filters widen their
   support when shrinking), whatever ``antialias`` says. An image whose shorter side is
   already ``resize_size`` is not resampled at all;
2. **centre crop** ``crop_size × crop_size`` (``F.center_crop``): ``top = int(round((h −
   crop) / 2.0))`` and the same for ``left`` (Python's ``round``: halves to even). A side
   shorter than the crop is first padded with zeros, ``(crop − h) // 2`` before and
   ``(crop − h + 1) // 2`` after, and is then taken whole;
3. **to float**: the 8-bit values divided by 255 (``pil_to_tensor`` then
   ``convert_image_dtype``), in ``[0, 1]``;
4. **normalise**: ``(x − mean) / std`` per channel (``F.normalize``).

:func:`classification_preset` does these four steps on an RGB image and returns a
float64 ``(3, crop, crop)`` array; torchvision computes steps 3–4 in float32, so the two
agree to float32 round-off (about 3e-7 at ImageNet's mean and std; the crosscheck test
bounds it by 1e-6). The resized and cropped 8-bit pixels are identical: the same Pillow
call makes them. :class:`ClassificationPreset` holds the parameters (and gives the crop's
position, to draw a map back on the original image); :func:`preset_from_torchvision`
reads them from a torchvision weights entry.
"""

from __future__ import annotations

import importlib
import math
import os
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from .._validate import as_positive_int, describe
from .io import MAX_IMAGE_PIXELS, _existing_file, _opened, _rgb

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INTERPOLATIONS",
    "ClassificationPreset",
    "PresetGeometry",
    "classification_preset",
    "preset_from_torchvision",
]

#: The ImageNet channel means and standard deviations of torchvision's presets (RGB).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: torchvision's interpolation names (``InterpolationMode.value``) -> Pillow's filter, as
#: ``torchvision.transforms.functional.pil_modes_mapping`` maps them ("nearest-exact" is
#: Pillow's nearest on PIL images).
INTERPOLATIONS: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "nearest-exact": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}


class PresetGeometry(NamedTuple):
    """Where the preset's crop lies: the resized image's size and the crop's corner.

    ``top`` / ``left`` are in the resized image's pixels; they are negative when that
    side is shorter than the crop (zero padding before the image).
    """

    resized: tuple[int, int]  #: ``(h, w)`` after step 1
    top: int
    left: int
    crop: int


def _resized_size(height: int, width: int, resize_size: int) -> tuple[int, int]:
    """torchvision's ``_compute_resized_output_size`` for one int: the shorter side
    becomes ``resize_size``, the longer ``int(resize_size * long / short)``."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = resize_size, int(resize_size * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def _crop_start(size: int, crop: int) -> int:
    """``F.center_crop``'s first index along one side (negative: zero padding first)."""
    if crop > size:
        return -((crop - size) // 2)
    return int(round((size - crop) / 2.0))


def _triple(name: str, value: Any, *, positive: bool) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be 3 numbers (one per RGB channel), got {describe(value)}.") from None
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name} must be 3 finite numbers (one per RGB channel), got {value!r}.")
    if positive and not all(v > 0 for v in values):
        raise ValueError(f"{name} must be 3 positive numbers, got {value!r}.")
    return values  # type: ignore[return-value]


@dataclass(frozen=True)
class ClassificationPreset:
    """The parameters of torchvision's ``ImageClassification`` preset; call it on an image.

    Parameters
    ----------
    resize_size : int
        The shorter side after resizing.
    crop_size : int
        The side of the square centre crop (the model's input).
    interpolation : str, optional
        One of :data:`INTERPOLATIONS` (torchvision's names): ``"bilinear"`` (default) or
        ``"bicubic"`` (EfficientNet), ...
    mean, std : 3 floats, optional
        Per-channel normalisation (default ImageNet's, :data:`IMAGENET_MEAN`,
        :data:`IMAGENET_STD`).
    name : str, optional
        Where the parameters come from (e.g. ``"ResNet50_Weights.IMAGENET1K_V2"``), for
        messages and logs.

    Examples
    --------
    >>> preset = ClassificationPreset(resize_size=232, crop_size=224)   # ResNet-50 V2
    >>> x = preset("photo.jpg")[None]          # doctest: +SKIP  (1, 3, 224, 224) float64
    """

    resize_size: int
    crop_size: int
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        resize = as_positive_int("resize_size", self.resize_size)
        crop = as_positive_int("crop_size", self.crop_size)
        if resize * resize > MAX_IMAGE_PIXELS or crop * crop > MAX_IMAGE_PIXELS:
            raise ValueError(
                f"resize_size and crop_size must make images of at most MAX_IMAGE_PIXELS = "
                f"{MAX_IMAGE_PIXELS} pixels, got resize_size={resize} and crop_size={crop}."
            )
        if not isinstance(self.interpolation, str) or self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {self.interpolation!r}."
            )
        object.__setattr__(self, "resize_size", resize)
        object.__setattr__(self, "crop_size", crop)
        object.__setattr__(self, "mean", _triple("mean", self.mean, positive=False))
        object.__setattr__(self, "std", _triple("std", self.std, positive=True))

    def geometry(self, height: int, width: int) -> PresetGeometry:
        """The resized size of an ``height × width`` image and where the crop lies in it.

        Raises
        ------
        ValueError
            If the resized image would have more than ``MAX_IMAGE_PIXELS`` pixels.
        """
        height = as_positive_int("height", height)
        width = as_positive_int("width", width)
        h, w = _resized_size(height, width, self.resize_size)
        if h * w > MAX_IMAGE_PIXELS or min(h, w) < 1:
            raise ValueError(
                f"an image of {width} x {height} pixels resized to a shorter side of {self.resize_size} "
                f"would have {w} x {h} pixels, more than MAX_IMAGE_PIXELS = {MAX_IMAGE_PIXELS}."
            )
        return PresetGeometry((h, w), _crop_start(h, self.crop_size), _crop_start(w, self.crop_size),
                              self.crop_size)

    def __call__(self, image: Any) -> np.ndarray:
        """The preset applied to ``image`` (see :func:`classification_preset`)."""
        return _apply(self, image)


def _crop(data: np.ndarray, top: int, left: int, crop: int) -> np.ndarray:
    """The ``crop × crop`` window at ``(top, left)`` of an (H, W, 3) array, zeros outside."""
    out = np.zeros((crop, crop, data.shape[2]), dtype=data.dtype)
    h, w = data.shape[:2]
    r0, r1 = max(top, 0), min(top + crop, h)
    c0, c1 = max(left, 0), min(left + crop, w)
    out[r0 - top : r1 - top, c0 - left : c1 - left] = data[r0:r1, c0:c1]
    return out


def _resize_and_crop(preset: ClassificationPreset, im: Image.Image) -> np.ndarray:
    rgb = _rgb(im)
    g = preset.geometry(rgb.height, rgb.width)
    if g.resized != (rgb.height, rgb.width):  # torchvision returns the image untouched
        rgb = rgb.resize((g.resized[1], g.resized[0]), resample=INTERPOLATIONS[preset.interpolation])
    return _crop(np.asarray(rgb, dtype=np.uint8), g.top, g.left, g.crop)


def _apply(preset: ClassificationPreset, image: Any) -> np.ndarray:
    if isinstance(image, Image.Image):
        pixels = _resize_and_crop(preset, image)
    elif isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
            raise ValueError(
                f"image must be an (H, W, 3) uint8 array, a PIL image or an image file, got "
                f"{describe(image)}."
            )
        if image.shape[0] * image.shape[1] > MAX_IMAGE_PIXELS:
            raise ValueError(f"image has {image.shape[1]} x {image.shape[0]} pixels, more than "
                             f"MAX_IMAGE_PIXELS = {MAX_IMAGE_PIXELS}.")
        pixels = _resize_and_crop(preset, Image.fromarray(np.ascontiguousarray(image)))
    elif isinstance(image, (str, os.PathLike)):
        p = _existing_file(image)
        refused: ValueError | None = None
        with _opened(p) as im:  # the checked opener: formats, pixel budget, Pillow errors
            try:  # raised after the block, which would present it as a decoding failure
                preset.geometry(im.height, im.width)
            except ValueError as exc:
                refused = exc
            else:
                pixels = _resize_and_crop(preset, im)
        if refused is not None:
            raise refused
    else:
        raise TypeError(
            f"image must be an image file path, a PIL image or an (H, W, 3) uint8 array, got "
            f"{describe(image)}."
        )
    x = pixels.transpose(2, 0, 1).astype(np.float64) / 255.0
    mean = np.asarray(preset.mean, dtype=np.float64)[:, None, None]
    std = np.asarray(preset.std, dtype=np.float64)[:, None, None]
    return (x - mean) / std


def classification_preset(
    image: Any,
    *,
    resize_size: int,
    crop_size: int,
    interpolation: str = "bilinear",
    mean: Any = IMAGENET_MEAN,
    std: Any = IMAGENET_STD,
) -> np.ndarray:
    """torchvision's ImageNet classification preset: resize, centre crop, to [0, 1], normalise.

    The four steps of the module docstring, equal to ``weights.transforms()(pil_image)``
    of torchvision's classification weights to float32 round-off.

    Parameters
    ----------
    image : str, os.PathLike, PIL.Image.Image or numpy.ndarray
        An image file (opened with the checks of :func:`npcam.image.load_image`: allowed
        formats, at most ``MAX_IMAGE_PIXELS`` pixels), a PIL image, or an ``(H, W, 3)``
        uint8 RGB array. It is converted to 8-bit RGB first (``Image.convert("RGB")``:
        gray and palette images expanded, alpha dropped), as torchvision users do with
        ``Image.open(path).convert("RGB")``.
    resize_size : int
        The shorter side after resizing (e.g. 256; 232 for ResNet-50's V2 weights).
    crop_size : int
        The side of the centre crop (e.g. 224; 299 for Inception-v3).
    interpolation : str, optional
        The resize filter, one of :data:`INTERPOLATIONS`: ``"bilinear"`` (default),
        ``"bicubic"`` (EfficientNet), ``"nearest"``, ...
    mean, std : 3 floats, optional
        Per-channel normalisation, default :data:`IMAGENET_MEAN` / :data:`IMAGENET_STD`.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(3, crop_size, crop_size)``: ``(k / 255 − mean) / std`` of the
        cropped 8-bit pixels ``k``.

    Raises
    ------
    TypeError
        ``image`` of another type, ``mean`` / ``std`` not numbers.
    FileNotFoundError
        A path that does not exist.
    ValueError
        An unreadable or oversized image, a resized image of more than
        ``MAX_IMAGE_PIXELS`` pixels, sizes that are not positive integers, an unknown
        interpolation, ``std`` not positive.
    """
    preset = ClassificationPreset(resize_size, crop_size, interpolation, mean, std)
    return preset(image)


def preset_from_torchvision(weights: Any) -> ClassificationPreset:
    """The preset of a torchvision classification weights entry (needs torchvision).

    Reads ``weights.transforms()``'s ``resize_size``, ``crop_size``, ``interpolation``,
    ``mean`` and ``std`` (the attributes of torchvision's ``ImageClassification``).

    Parameters
    ----------
    weights : torchvision.models.WeightsEnum member or str
        E.g. ``torchvision.models.ResNet50_Weights.DEFAULT``, or its name
        ``"ResNet50_Weights.IMAGENET1K_V2"`` (resolved with
        ``torchvision.models.get_weight``).

    Returns
    -------
    ClassificationPreset
        Named after the entry (``ResNet50_Weights.IMAGENET1K_V2``).

    Raises
    ------
    ImportError
        A name given without torchvision installed (the message names the extra).
    TypeError
        ``weights`` is neither.
    ValueError
        An unknown name, or weights whose transforms are not an image-classification
        preset (detection, video, ...).
    """
    if isinstance(weights, str):
        try:
            tvm = importlib.import_module("torchvision.models")
        except ImportError as exc:
            raise ImportError(
                "preset_from_torchvision needs torchvision; install the crosscheck extra: "
                "pip install 'npcam[crosscheck]'"
            ) from exc
        try:
            weights = tvm.get_weight(weights)
        except (ValueError, KeyError, AttributeError, IndexError) as exc:
            raise ValueError(
                f"weights must name a torchvision weights entry such as 'ResNet50_Weights.DEFAULT', "
                f"got {weights!r}."
            ) from exc
    transforms = getattr(weights, "transforms", None)
    if not callable(transforms):
        raise TypeError(
            "weights must be a torchvision weights entry (e.g. torchvision.models.ResNet50_Weights.DEFAULT) "
            f"or its name, got {describe(weights)}."
        )
    t = transforms()
    try:
        (resize,), (crop,) = t.resize_size, t.crop_size
        interpolation = getattr(t.interpolation, "value", t.interpolation)
        mean, std = t.mean, t.std
    except (AttributeError, TypeError, ValueError):
        raise ValueError(
            f"weights must be an image-classification weights entry, got {weights} whose transforms "
            f"are {type(t).__name__} (no single resize_size and crop_size)."
        ) from None
    return ClassificationPreset(resize, crop, interpolation, tuple(mean), tuple(std), name=str(weights))
