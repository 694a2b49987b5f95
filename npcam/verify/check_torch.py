r"""One call that checks a PyTorch implementation end to end: :func:`check_torch`.

``check_torch(their_fn, torch_model, layer="layer4", input_shape=(3, 64, 80))`` converts
the model (:func:`npcam.from_torch`), draws a batch that can reveal target, ReLU and
batch bugs (:func:`npcam.verify.revealing_batch`), runs the user's function on it and
returns :func:`npcam.verify.diagnose`'s verdict. Needs the ``crosscheck`` extra (torch).
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

from .._validate import describe
from .diagnose import QUANTITIES, Diagnosis, diagnose
from .revealing import revealing_batch

__all__ = ["check_torch"]


def _torch() -> Any:
    try:
        return importlib.import_module("torch")  # no static import: torch is an extra
    except ImportError as exc:
        raise ImportError(
            "check_torch needs PyTorch: install npcam's crosscheck extra (pip install "
            "'npcam[crosscheck]')."
        ) from exc


def check_torch(
    their_fn: Callable[..., Any],
    torch_model: Any,
    x: Any = None,
    layer: str | None = None,
    target: Any = None,
    *,
    input_shape: Any = None,
    quantity: str = "cam",
) -> Diagnosis:
    r"""Run ``their_fn`` on a torch model and diagnose its result against npcam's.

    Parameters
    ----------
    their_fn : callable ``(model, x, target, layer) -> array``
        The implementation under test. ``model`` is a deep copy of ``torch_model`` (so
        that ``.train()`` or a dtype cast inside it cannot change yours), ``x`` a
        ``torch.Tensor`` in the model's floating dtype (float64 for a float64 model: use
        ``model.double()`` for float64 comparisons), ``target`` None (your code picks the
        predicted class, so that target bugs can show) or a list of ints, ``layer`` the
        module path. It returns a NumPy array or a tensor of ``quantity``.
    torch_model : torch.nn.Module
    x : array or tensor (N, C, H, W), or None
        None: :func:`npcam.verify.revealing_batch` of ``input_shape`` (4 images that
        predict ≥ 2 classes, raw maps of both signs).
    layer : str
        The target layer's module path (``"layer4"``, ``"features.29"``); required.
    target : None, int or list of ints
    input_shape : (C, H, W), required when ``x`` is None.
    quantity : one of :data:`npcam.verify.diagnose.QUANTITIES`.

    Returns
    -------
    Diagnosis

    Examples
    --------
    >>> def mine(model, x, target, layer):                      # doctest: +SKIP
    ...     ...  # hooks on model.get_submodule(layer), backward of the class score
    >>> d = npcam.verify.check_torch(mine, torchvision.models.resnet18().double(),
    ...                              layer="layer4", input_shape=(3, 64, 80))  # doctest: +SKIP
    >>> d.verdict, d.explanation                                # doctest: +SKIP
    """
    torch = _torch()
    from ..interop.torch import from_torch

    if not callable(their_fn):
        raise TypeError(
            f"their_fn must be a callable (model, x, target, layer) -> array, got {describe(their_fn)}."
        )
    if not isinstance(torch_model, torch.nn.Module):
        raise TypeError(f"torch_model must be a torch.nn.Module, got {describe(torch_model)}.")
    if layer is None:
        raise ValueError("layer is required: name the target layer's module path (e.g. 'layer4'); "
                         "check_torch does not guess which layer your code hooks.")
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a module path (str), got {describe(layer)}.")
    if not isinstance(quantity, str) or quantity not in QUANTITIES:
        raise ValueError(f"quantity must be one of {', '.join(QUANTITIES)}, got {quantity!r}.")
    model = from_torch(torch_model)
    if x is None:
        if input_shape is None:
            raise ValueError("input_shape (C, H, W) is required when x is None.")
        batch = revealing_batch(model, input_shape, layer=layer)
    else:
        batch = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    dtype = next((p.dtype for p in torch_model.parameters() if p.is_floating_point()), torch.float64)
    xt = torch.from_numpy(batch.copy()).to(dtype)
    if target is None:
        t_arg: Any = None
    elif isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        t_arg = [int(target)] * len(batch)
    else:
        t_arg = [int(v) for v in target]
    out = their_fn(copy.deepcopy(torch_model), xt, None if t_arg is None else list(t_arg), layer)
    if isinstance(out, torch.Tensor):
        out = out.detach().cpu().numpy()
    theirs = np.asarray(out)
    return diagnose(theirs, model, batch, t_arg, layer, quantity)
