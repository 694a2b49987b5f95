"""Post-processing of explanation maps and image files: ``resize`` (``upsample``, equal to
torch's ``interpolate``), ``normalization``, ``color`` (colour maps, overlays) and ``io``
(``load_image``, ``save_image``; the only module that imports Pillow, loaded on first use).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "MAX_IMAGE_PIXELS",
    "apply_colormap",
    "colormap",
    "interpolation_matrices",
    "load_image",
    "normalize",
    "overlay",
    "save_image",
    "upsample",
]

_WHERE = {
    "MAX_IMAGE_PIXELS": "io",
    "load_image": "io",
    "save_image": "io",
    "apply_colormap": "color",
    "colormap": "color",
    "overlay": "color",
    "normalize": "normalization",
    "interpolation_matrices": "resize",
    "upsample": "resize",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
