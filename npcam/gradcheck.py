"""``npcam.gradcheck``: the public path of :mod:`npcam.verify.gradcheck`."""

from .verify.gradcheck import check_layer, numerical_gradient, relative_error

__all__ = ["check_layer", "numerical_gradient", "relative_error"]
