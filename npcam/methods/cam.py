r"""CAM (Zhou et al., CVPR 2016, arXiv 1512.04150): the FC weights after global pooling.

For ``A → GAP → FC``, ``y^c = Σ_k w^c_k F^k + b_c`` with ``F^k = (1/Z) Σ_ij A^k_ij``; the
map is ``M^c_ij = Σ_k w^c_k A^k_ij``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._core import CAMResult, Target, cam_head, check_input, check_model, map_result, resolve_layer, targets

__all__ = ["cam"]


def cam(model: Any, x: Any, target: Target = None, layer: str | None = None) -> CAMResult:
    r"""CAM: ``M^c_ij = Σ_k w^c_k A^k_ij``, ``w^c`` the FC weight row of class c.

    Only for models whose ``layer`` is followed by exactly GAP → [Flatten] → Linear
    (``ValueError`` otherwise). npcam's ``raw`` has no 1/Z: the seed document's M (with
    1/Z inside) is ``raw / Z``, and ``y^c − b_c = (1/Z) Σ_ij raw_ij``. ``scores`` are the
    logits y^c; ``gradients`` is None. ``target`` and ``layer`` as :func:`npcam.grad_cam`.
    """
    model = check_model(model)
    trace = model.run(check_input(x))
    name = resolve_layer(model, trace, layer)
    fc = cam_head(model, trace, name)
    t = targets(target, trace.output, allow_all=True)
    a = trace.activations[name]
    w = fc.weight[t]  # (N, K) or (N, C, K): the class rows w^c
    y = np.take_along_axis(trace.output, t if t.ndim == 2 else t[:, None], axis=1)
    return map_result(w, a, None, y if t.ndim == 2 else y[:, 0], t, name)
