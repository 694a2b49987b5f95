"""npcam: a pure-NumPy reference implementation of CAM, Grad-CAM, Guided Backpropagation,
Guided Grad-CAM and counterfactual maps (Selvaraju et al., ICCV 2017), built on a small
CNN whose backward passes are derived by hand.
"""

from ._version import __version__

__all__ = ["__version__"]
