"""Verifying other implementations: ``gradcheck`` (central differences), ``conventions``
(other libraries' maps reproduced), ``vectors`` (golden reference files and ``compare``),
``diagnose`` (why an implementation differs: the bug or convention that reproduces it),
``revealing_batch`` (inputs that can show bugs), ``check_torch`` (a torch implementation
checked end to end), ``resizers`` (bit-exact OpenCV / Torch7 resizing) and ``environment``
(``show_versions``).

``npcam.verify.diagnose`` is the function (imported here, so that the name stays bound to
it; its module is ``sys.modules["npcam.verify.diagnose"]``); ``revealing_batch`` and
``check_torch`` are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .diagnose import Diagnosis, Hypothesis, diagnose

_NAMES = {
    "revealing_batch": ".revealing",
    "check_torch": ".check_torch",
}

__all__ = ["Diagnosis", "Hypothesis", "check_torch", "diagnose", "revealing_batch"]


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    from .check_torch import check_torch
    from .revealing import revealing_batch
