"""npcam's own warning classes (rule R3).

Each is a :class:`UserWarning` subclass, so pytest's ``error::RuntimeWarning`` setting
leaves them alone; each is raised with a ``stacklevel`` that points at the caller and is
documented in the docstring of the function that raises it.
"""

from __future__ import annotations

__all__ = ["InplaceOpWarning", "NpcamWarning", "NumericalWarning", "WeakTestInputWarning"]


class NpcamWarning(UserWarning):
    """Base class of every warning npcam raises."""


class NumericalWarning(NpcamWarning):
    """A result is finite but numerically doubtful (e.g. a saturated softmax score)."""


class InplaceOpWarning(NpcamWarning):
    """An in-place operation after a hooked layer makes another library's values wrong."""


class WeakTestInputWarning(NpcamWarning):
    """A check's input cannot reveal the difference it is meant to detect."""
