r"""Stateless execution: a forward pass returns a :class:`Trace`, a backward pass a :class:`VJP`.

Nothing is stored on layers or on the model while they compute, so one model serves many
threads at once, and a layer instance called twice (torchvision's ResNets call one ReLU
module two or three times per block) has one cache per *call*, in the trace::

    trace = model.run(x)                       # every node's output and cache
    g = model.vjp(trace, cotangent, to="4")    # ∂L/∂(output of node "4") for L = ⟨cotangent, output⟩
    g.grad, g.param_grads, g.node_grads

For Grad-CAM the cotangent is the one-hot vector e_c, so that ``L = y^c`` and
``model.vjp(trace, e_c, to=layer).grad`` is ``∂y^c/∂A^k``. :class:`Model` is the protocol
that every model implements (:class:`~npcam.nn.Sequential`, a chain, and
:class:`~npcam.nn.Graph`, a DAG); every explanation method takes any object that
implements it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

__all__ = ["GUIDED_RELUS", "RELU_RULES", "FrozenMapping", "Model", "Trace", "VJP"]

#: The three ReLU backward rules (DESIGN.md): standard ``dx = dy·[x>0]``, guided
#: ``dx = dy·[x>0]·[dy>0]`` (Springenberg et al.), deconvnet ``dx = dy·[dy>0]``.
RELU_RULES = ("standard", "guided", "deconvnet")

#: Which ReLUs the guided/deconvnet rules apply to: "all" (every ReLU node, module or
#: function, the default) or "modules" (only ReLUs from an ``nn.ReLU`` module, as captum's
#: ``GuidedBackprop`` and pytorch-grad-cam do; torch code's ``F.relu`` calls then keep
#: the standard rule).
GUIDED_RELUS = ("all", "modules")


class FrozenMapping(Mapping[str, Any]):
    """A read-only view of a dict (unlike ``types.MappingProxyType``, it can be copied and
    pickled with the model that holds it)."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"FrozenMapping({list(self._data)})"


@dataclass(frozen=True, repr=False)
class Trace:
    """What one forward pass computed, read-only.

    Attributes
    ----------
    input : ndarray, (N, C, H, W)
        The model input x (float64).
    output : ndarray, (N, num_classes)
        The logits.
    activations : Mapping[str, ndarray]
        Every node's output by name, and under every alias of the node (a container's
        name means its last child's output, as in :meth:`Sequential.named_modules`).
    caches : Mapping[str, tuple]
        One cache per node call: what that node's backward pass needs (private layout).
    """

    input: np.ndarray
    output: np.ndarray
    activations: Mapping[str, np.ndarray]
    caches: Mapping[str, tuple]

    def __repr__(self) -> str:
        return (
            f"Trace(input={_shape(self.input)}, output={_shape(self.output)}, "
            f"{len(self.caches)} node calls)"
        )


class VJP(NamedTuple):
    """The result of :meth:`Model.vjp`, a vector-Jacobian product ``cotangentᵀ · J``.

    Attributes
    ----------
    grad : ndarray
        ∂L/∂(output of node ``to``), or ∂L/∂input when ``to`` is None, for
        ``L = ⟨cotangent, output⟩``.
    param_grads : dict or None
        ∂L/∂θ for every parameter, keyed like ``state_dict``, when ``param_grads=True``.
        A layer instance used at several places gets the sum over its calls under each of
        its keys.
    node_grads : dict or None
        ∂L/∂(output of n) for every node n the backward pass went through (and its
        aliases), when ``record=True``.
    """

    grad: np.ndarray
    param_grads: dict[str, np.ndarray] | None
    node_grads: dict[str, np.ndarray] | None


@runtime_checkable
class Model(Protocol):
    """The model protocol: what explanation methods need of a model.

    ``run(x) -> Trace``; ``vjp(trace, cotangent, to=None, relu_rule="standard",
    param_grads=False, record=False) -> VJP``; ``run_from(trace, name, value) -> Trace``
    (node ``name``'s output replaced by ``value``, the nodes after it re-run);
    ``named_nodes()`` (name, layer) pairs in topological order; ``inputs_of(name)`` the
    names of the nodes a node reads (``"input"`` for the model input); ``output_name``,
    the node whose output is the logits; ``state_dict()``.
    """

    output_name: str

    def run(self, x: Any) -> Trace: ...

    def vjp(
        self,
        trace: Trace,
        cotangent: Any,
        to: str | None = None,
        relu_rule: str = "standard",
        param_grads: bool = False,
        record: bool = False,
        guided_relus: str = "all",
    ) -> VJP: ...

    def run_from(self, trace: Trace, name: str, value: Any) -> Trace: ...

    def named_nodes(self) -> list[tuple[str, Any]]: ...

    def inputs_of(self, name: str) -> tuple[str, ...]: ...

    def state_dict(self) -> dict[str, np.ndarray]: ...


def check_vjp_arguments(trace: Trace, cotangent: Any, relu_rule: str, guided_relus: str) -> np.ndarray:
    """The checks every model's ``vjp`` makes: the rules are known names and the cotangent
    is a finite array of the logits' shape (returned as float64)."""
    from .._validate import as_float_array

    if relu_rule not in RELU_RULES:
        raise ValueError(f"relu_rule must be one of {RELU_RULES}, got {relu_rule!r}.")
    if guided_relus not in GUIDED_RELUS:
        raise ValueError(f"guided_relus must be one of {GUIDED_RELUS}, got {guided_relus!r}.")
    g = as_float_array("cotangent", cotangent, finite=True)
    if g.shape != trace.output.shape:
        raise ValueError(f"cotangent must have the model output's shape {trace.output.shape}, got {g.shape}.")
    return g


def _shape(a: Any) -> str:
    return f"<{a.dtype} {a.shape}>" if isinstance(a, np.ndarray) else type(a).__name__


def all_finite(a: np.ndarray) -> bool:
    """True when ``a`` holds no NaN or ±inf: two reductions, no boolean temporary."""
    return a.size == 0 or bool(np.isfinite(a.max()) and np.isfinite(a.min()))
