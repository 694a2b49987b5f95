"""``npcam.vectors``: the public path of :mod:`npcam.verify.vectors`."""

from .verify.vectors import *  # noqa: F403
from .verify.vectors import __all__  # noqa: F401
