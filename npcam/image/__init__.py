"""Post-processing of explanation maps and image files: ``resize`` (``upsample``, equal to
torch's ``interpolate``), ``normalization``, ``color`` (colour maps, overlays), ``io``
(``load_image``, ``save_image``) and ``transforms`` (torchvision's ImageNet classification
preset, ``classification_preset``); ``io`` and ``transforms`` are the only modules that
import Pillow, loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_FORMATS",
    "MAX_IMAGE_PIXELS",
    "MAX_UPSAMPLE_PIXELS",
    "MAX_UPSAMPLE_VALUES",
    "ClassificationPreset",
    "apply_colormap",
    "classification_preset",
    "colormap",
    "image_size",
    "interpolation_matrices",
    "load_image",
    "normalize",
    "overlay",
    "preset_from_torchvision",
    "reduction_factor",
    "save_image",
    "upsample",
]

_WHERE = {
    "IMAGE_FORMATS": "io",
    "MAX_IMAGE_PIXELS": "io",
    "image_size": "io",
    "load_image": "io",
    "reduction_factor": "io",
    "save_image": "io",
    "apply_colormap": "color",
    "colormap": "color",
    "overlay": "color",
    "normalize": "normalization",
    "MAX_UPSAMPLE_PIXELS": "resize",
    "MAX_UPSAMPLE_VALUES": "resize",
    "interpolation_matrices": "resize",
    "upsample": "resize",
    "IMAGENET_MEAN": "transforms",
    "IMAGENET_STD": "transforms",
    "ClassificationPreset": "transforms",
    "classification_preset": "transforms",
    "preset_from_torchvision": "transforms",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
