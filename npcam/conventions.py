"""``npcam.conventions``: the public path of :mod:`npcam.verify.conventions`."""

from .verify.conventions import *  # noqa: F403
from .verify.conventions import __all__  # noqa: F401
