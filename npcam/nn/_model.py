"""What every npcam model class shares on top of the stateless model protocol.

:class:`ModelBase` gives a model that implements ``run``/``vjp``/``run_from``/
``state_dict`` the student-facing convenience — ``forward``/``backward`` keeping the last
trace in ``model.trace``, ``model.activations`` and ``model.gradients`` — and
:func:`load_state` the one checked ``load_state_dict`` (torch's semantics: strict keys,
exact shapes, finite values, nothing assigned unless everything checks out).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from .._validate import as_float_array, describe
from .trace import Trace

__all__ = ["IncompatibleKeys", "ModelBase", "load_state"]


class IncompatibleKeys(NamedTuple):
    missing_keys: list[str]
    unexpected_keys: list[str]


def load_state(
    targets: Mapping[str, tuple[Any, str]],
    own: Mapping[str, Any],
    state_dict: Any,
    strict: bool,
) -> IncompatibleKeys:
    """Check ``state_dict`` against the model's own arrays ``own`` (key → array, or
    anything with a ``shape``) and assign each value to ``setattr(*targets[key], value)``
    (a layer's attribute assignment checks and copies it).

    Values may be NumPy arrays or anything ``numpy.asarray`` accepts, including CPU torch
    tensors. With ``strict``, missing and unexpected keys are errors; otherwise the common
    keys load and the rest are returned. Keys like ``__architecture__`` describe a file,
    not weights, and are ignored.
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of name -> array, got {describe(state_dict)}.")
    given = {k for k in state_dict if not (k.startswith("__") and k.endswith("__"))}
    missing = [k for k in own if k not in given]
    unexpected = sorted(k for k in given if k not in own)
    if strict and (missing or unexpected):
        shown_missing = missing[:20] + (["..."] if len(missing) > 20 else [])
        shown_unexpected = unexpected[:20] + (["..."] if len(unexpected) > 20 else [])
        raise ValueError(
            "state_dict does not match the model: "
            f"missing keys {shown_missing or 'none'}, unexpected keys {shown_unexpected or 'none'}."
        )
    new: dict[str, np.ndarray] = {}
    for key in own:
        if key not in given:
            continue
        value = state_dict[key]
        if hasattr(value, "detach"):  # a torch tensor: leave autograd (and bfloat16) before NumPy
            value = value.detach().cpu()
            value = (value.double() if value.is_floating_point() else value).numpy()
        if key.endswith("num_batches_tracked"):
            arr = np.asarray(value)
            if arr.shape != () or arr.dtype.kind not in "iu":
                raise ValueError(f"state_dict[{key!r}] must be an integer scalar, got {describe(arr)}.")
            new[key] = arr.astype(np.int64)
            continue
        arr = as_float_array(f"state_dict[{key!r}]", value, finite=True)
        if arr.shape != own[key].shape:
            raise ValueError(f"state_dict[{key!r}] must have shape {own[key].shape}, got {arr.shape}.")
        new[key] = arr  # assigning copies it (Layer.__setattr__)
    for key, arr in new.items():
        layer, attr = targets[key]
        setattr(layer, attr, arr)
    return IncompatibleKeys(missing, unexpected)


class ModelBase:
    """``forward``/``backward`` over the stateless ``run``/``vjp`` (subclasses provide
    those, ``run_from`` and ``state_dict``).

    After ``forward(x)``: ``trace`` the :class:`~npcam.nn.Trace`, ``activations[name]``
    every named output, ``input`` the input. After ``backward(..., record=True)``:
    ``gradients[name]`` ∂L/∂(output of name) for every node the backward pass went
    through, ``input_gradient`` ∂L/∂input when it reached the input; after
    ``backward(..., param_grads=True)``: ``param_gradients``. Subclasses provide ``run``,
    ``run_from`` and ``vjp``.
    """

    trace: Trace | None
    activations: dict[str, np.ndarray]
    gradients: dict[str, np.ndarray]
    param_gradients: dict[str, np.ndarray]
    input: np.ndarray | None
    input_gradient: np.ndarray | None

    def _reset_convenience(self) -> None:
        self.trace = None
        self.activations = {}
        self.gradients = {}
        self.param_gradients = {}
        self.input = None
        self.input_gradient = None

    def forward(self, x: Any) -> np.ndarray:
        """Run the model; keep the trace in ``trace`` and every named output in
        ``activations``; return the logits."""
        trace = self.run(x)  # type: ignore[attr-defined]
        self._keep(trace)
        return trace.output

    def __call__(self, x: Any) -> np.ndarray:
        return self.forward(x)

    def forward_from(self, name: str, output: Any) -> np.ndarray:
        """The network's output when ``name``'s output is replaced by ``output``
        (:meth:`run_from` on the trace ``forward`` kept, which it replaces, so that
        ``backward(..., to=name)`` afterwards differentiates this new evaluation)."""
        if self.trace is None:
            raise RuntimeError("forward_from called before forward.")
        trace = self.run_from(  # type: ignore[attr-defined]
            self.trace, name, as_float_array("output", output, finite=True))
        self._keep(trace)
        return trace.output

    def _keep(self, trace: Trace) -> None:
        self.trace = trace
        self.input = trace.input
        self.activations = dict(trace.activations)
        self.gradients = {}
        self.input_gradient = None

    def backward(
        self,
        cotangent: Any,
        to: str | None = None,
        relu_rule: str = "standard",
        param_grads: bool = True,
        record: bool = False,
        **options: Any,
    ) -> np.ndarray:
        """:meth:`vjp` on the trace of the last ``forward``; returns its ``grad`` and keeps
        the parameter gradients in ``param_gradients`` and, with ``record``, the node
        gradients in ``gradients``."""
        if self.trace is None:
            raise RuntimeError("backward called before forward.")
        out = self.vjp(  # type: ignore[attr-defined]
            self.trace, cotangent, to, relu_rule, param_grads, record, **options)
        if out.param_grads is not None:
            self.param_gradients = out.param_grads
        if out.node_grads is not None:
            self.gradients = out.node_grads
            if to is None:
                self.input_gradient = out.grad
        return out.grad

    def named_grads(self) -> dict[str, np.ndarray]:
        """Parameter gradients from the last ``backward(..., param_grads=True)``, keyed like
        ``state_dict`` (empty before one)."""
        return dict(self.param_gradients)

    def save(self, path: str | os.PathLike) -> str:
        """Write the weights and the architecture (as JSON text) to an ``.npz`` file;
        returns the path written (``.npz`` is appended when missing, as NumPy does)."""
        from .io import save_model

        return save_model(self, path)  # type: ignore[arg-type]
