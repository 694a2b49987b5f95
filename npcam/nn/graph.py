r"""``Graph``: a directed acyclic graph of named nodes, run statelessly.

A ResNet is not a chain: a block's input feeds both its convolutions and the residual
:class:`~npcam.nn.ops.Add`; an Inception block concatenates four branches; DenseNet feeds
every feature map to every later layer of its block. A :class:`Graph` holds such a model
as :class:`Node` records in topological order, each a layer (or a graph op) applied to the
outputs of earlier nodes::

    graph = npcam.Graph(
        [
            ("conv", npcam.Conv2d(3, 8, 3, padding=1), ("input",)),
            ("relu", npcam.ReLU(), ("conv",)),
            ("add", npcam.Add(), ("relu", "conv")),       # a residual connection
            ("pool", npcam.GlobalAvgPool2d(), ("add",)),
            ("fc", npcam.Linear(8, 10), ("pool",)),
        ],
        output="fc",
    )

The forward pass runs the nodes in order and keeps one output and one cache per node
*call* (a layer instance may appear at several nodes: torchvision's ResNets call one
``nn.ReLU`` module two or three times per block). The backward pass runs them in reverse,
and a node read by several consumers receives the **sum** of their gradients — the
multivariate chain rule, ``∂L/∂v = Σ_{w reads v} (∂w/∂v)ᵀ ∂L/∂w``.

Names: a node's name is its own (a torch.fx node name in imported graphs); ``aliases``
are further names for its output (module paths; a container's path names the last node
inside it, so ``layer="layer4"`` means what pytorch-grad-cam's ``model.layer4[-1]``
means). The output ``i`` of a multi-output node (:class:`~npcam.nn.ops.Split`) is
``"name:i"``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._validate import MAX_NODES, as_float_array, describe
from ._model import IncompatibleKeys, ModelBase, load_state
from .activations import GELU, Hardsigmoid, Hardswish, LayerNorm, ReLU6, Sigmoid, SiLU
from .layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    Layer,
    Linear,
    MaxPool2d,
    ReLU,
)
from .ops import Add, AddConstant, Concat, Identity, Mean, Mul, MulConstant, Op, Permute, Split, Transpose
from .trace import VJP, FrozenMapping, Trace, all_finite, check_vjp_arguments

__all__ = ["Graph", "Node"]

INPUT = "input"


@dataclass(frozen=True)
class Node:
    """One node of a :class:`Graph`.

    Attributes
    ----------
    name : str
        The node's name (a torch.fx node name in an imported graph).
    layer : Layer
        What the node computes (a layer or a graph op).
    inputs : tuple of str
        The outputs it reads: ``"input"``, earlier nodes' names, or ``"name:i"``.
    aliases : tuple of str
        Further names of its output (module paths; containers name their last node).
    from_module : bool
        The node came from an ``nn.Module`` call (not a function such as ``F.relu``):
        ``guided_relus="modules"`` guides only these ReLUs.
    inplace : bool
        torch modified this node's output in place (``inplace=True`` modules,
        ``F.relu(..., inplace=True)``, ``out += identity``): a torch hook on the node's
        *input* would see this node's output.
    state_keys : Mapping[str, str]
        The ``state_dict`` key of each of the layer's parameters and buffers (default
        ``"<name>.<attribute>"``; torch's keys in imported graphs).
    """

    name: str
    layer: Layer
    inputs: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    from_module: bool = False
    inplace: bool = False
    state_keys: Mapping[str, str] = field(default_factory=dict)

    def keys(self) -> dict[str, str]:
        """Attribute → state_dict key for every parameter and buffer the layer holds."""
        attrs = [*self.layer.params(), *self.layer.buffers()]
        return {a: self.state_keys.get(a, f"{self.name}.{a}") for a in attrs}


def _input_shape(shape: Any) -> tuple[int | None, ...] | None:
    if shape is None:
        return None
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or not shape:
        raise TypeError(f"input_shape must be a non-empty sequence of ints or None, got {describe(shape)}.")
    out: list[int | None] = []
    for v in shape:
        if v is None:
            out.append(None)
        elif isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and v >= 1:
            out.append(int(v))
        else:
            raise ValueError(f"input_shape entries must be positive ints or None, got {list(shape)}.")
    return tuple(out)


def _arity(layer: Layer) -> int | None:
    return layer.num_inputs if isinstance(layer, Op) else 1


def _outputs(layer: Layer) -> int:
    return layer.num_outputs if isinstance(layer, Op) else 1


_POOLING = (MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, GlobalAvgPool2d, Mean)
_IDENTITY_LIKE = (Identity, Dropout)
# layers whose output keeps the layout of their (first) input: element-wise maps, channel
# concatenation and splitting, and last-axis ops (LayerNorm, Linear on an NHWC map)
_SAME_LAYOUT = (
    Add, Mul, AddConstant, MulConstant, ReLU, ReLU6, Hardswish, Hardsigmoid, SiLU, Sigmoid, GELU,
    LayerNorm, BatchNorm2d, Identity, Dropout, Linear, Concat, Split,
)


class Graph(ModelBase):
    """A DAG of named nodes implementing the model protocol :class:`npcam.nn.Model`.

    Parameters
    ----------
    nodes : sequence of ``(name, layer, inputs)`` triples or :class:`Node` records
        In topological order: every input is ``"input"`` or an earlier node's output.
        ``inputs`` may be one name (a str) or a tuple of names.
    output : str
        The node whose output is the logits (:attr:`output_name`).
    default_layer_name : str, optional
        What ``layer=None`` selects in explanations (``from_torch`` records the paper's
        layer for the torchvision models it recognises); else the rule of
        :meth:`default_layer`.
    ambiguous : mapping of str to list of str, optional
        Names that denote several nodes (a module path called more than once) and are
        therefore refused as a ``layer``, with their node names.
    input_shape : sequence of int or None, optional
        The input shape the graph is valid for, ``None`` for a free axis (an ONNX import
        is specialised to its exported spatial size: ``(None, 3, 224, 224)``); checked by
        every forward pass. Default: any shape.
    output_softmax : bool
        The model ended in a softmax that was dropped (:func:`npcam.from_onnx`): the
        graph's output is the logits, the softmax's input.
    import_notes : sequence of str
        What an importer changed (e.g. float32 attributes snapped to exact constants).

    Attributes
    ----------
    nodes : list of Node
    output_name : str
    """

    def __init__(
        self,
        nodes: Sequence[Node | tuple[str, Layer, Any]],
        output: str,
        *,
        default_layer_name: str | None = None,
        ambiguous: Mapping[str, Sequence[str]] | None = None,
        input_shape: Sequence[int | None] | None = None,
        output_softmax: bool = False,
        import_notes: Sequence[str] = (),
    ) -> None:
        if isinstance(nodes, (str, bytes)) or not isinstance(nodes, Sequence):
            raise TypeError("nodes must be a sequence of (name, layer, inputs) triples, got "
                            f"{describe(nodes)}.")
        if not nodes:
            raise ValueError("nodes must hold at least one node, got none.")
        if len(nodes) > MAX_NODES:
            raise ValueError(f"a Graph may hold at most MAX_NODES = {MAX_NODES} nodes, got {len(nodes)}.")
        records = [self._record(i, n) for i, n in enumerate(nodes)]
        available = {INPUT}
        names: set[str] = set()
        for node in records:
            if node.name in names or node.name == INPUT:
                raise ValueError(f"node names must be unique and not 'input'; {node.name!r} is repeated "
                                 "or reserved.")
            arity = _arity(node.layer)
            if arity is not None and len(node.inputs) != arity:
                raise ValueError(
                    f"node {node.name!r} ({type(node.layer).__name__}) takes {arity} input(s), "
                    f"got {len(node.inputs)}: {list(node.inputs)}."
                )
            if arity is None and not node.inputs:
                raise ValueError(f"node {node.name!r} ({type(node.layer).__name__}) needs at least one "
                                 "input.")
            for i in node.inputs:
                if i not in available:
                    raise ValueError(
                        f"node {node.name!r} reads {i!r}, which is not 'input' or the output of an "
                        "earlier node (nodes must be in topological order)."
                    )
            names.add(node.name)
            count = _outputs(node.layer)
            available.update([node.name] if count == 1 else [f"{node.name}:{k}" for k in range(count)])
        if not isinstance(output, str) or output not in names:
            raise ValueError(f"output must name a node of the graph, got {output!r}.")
        if _outputs(next(n for n in records if n.name == output).layer) != 1:
            raise ValueError(f"output {output!r} must be a node with one output.")
        self.nodes: list[Node] = records
        self._output = output
        self._index = {n.name: i for i, n in enumerate(records)}
        self._aliases: dict[str, str] = {}
        for node in records:
            for a in node.aliases:
                if a not in self._index and a != INPUT:
                    self._aliases[a] = node.name
        self.ambiguous: dict[str, list[str]] = {
            str(k): list(v) for k, v in (ambiguous or {}).items() if k not in self._index
        }
        for k in self.ambiguous:
            self._aliases.pop(k, None)
        known = default_layer_name in self._index or default_layer_name in self._aliases
        if default_layer_name is not None and not known:
            raise ValueError(f"default_layer_name {default_layer_name!r} names no node of the graph.")
        self.default_layer_name = default_layer_name
        self.input_shape = _input_shape(input_shape)
        if not isinstance(output_softmax, (bool, np.bool_)):
            raise TypeError(f"output_softmax must be a bool, got {describe(output_softmax)}.")
        self.output_softmax = bool(output_softmax)
        if isinstance(import_notes, str) or not all(isinstance(s, str) for s in import_notes):
            raise TypeError(f"import_notes must be a sequence of str, got {describe(import_notes)}.")
        self.import_notes = list(import_notes)
        self.training = False
        self._reset_convenience()

    @staticmethod
    def _record(i: int, item: Any) -> Node:
        if isinstance(item, Node):
            node = item
        else:
            if not (isinstance(item, (tuple, list)) and len(item) == 3):
                raise TypeError(f"nodes[{i}] must be a (name, layer, inputs) triple or a Node, got "
                                f"{describe(item)}.")
            name, layer, inputs = item
            if isinstance(inputs, str):
                inputs = (inputs,)
            if not isinstance(inputs, (tuple, list)):
                raise TypeError(f"nodes[{i}]: inputs must be a tuple of names, got {describe(inputs)}.")
            node = Node(name, layer, tuple(inputs))
        if not isinstance(node.name, str) or not node.name or ":" in node.name:
            raise ValueError(f"nodes[{i}]: a node name must be a non-empty str without ':', got "
                             f"{node.name!r}.")
        if not isinstance(node.layer, Layer):
            raise TypeError(f"node {node.name!r}: layer must be an npcam layer or graph op, got "
                            f"{describe(node.layer)}.")
        if not all(isinstance(s, str) for s in node.inputs):
            raise TypeError(f"node {node.name!r}: inputs must be names (str), got {list(node.inputs)}.")
        return node

    # -- structure (the model protocol) ---------------------------------------------------
    @property
    def output_name(self) -> str:
        """The node whose output is the logits."""
        return self._output

    def named_nodes(self) -> list[tuple[str, Layer]]:
        """``(name, layer)`` of every node, in topological order."""
        return [(n.name, n.layer) for n in self.nodes]

    def node(self, name: str) -> Node:
        """The :class:`Node` a name (or alias) denotes."""
        return self.nodes[self._index[self.resolve(name)]]

    def inputs_of(self, name: str) -> tuple[str, ...]:
        """The outputs node ``name`` reads (``"input"`` for the model input)."""
        return self.node(name).inputs

    def resolve(self, name: str) -> str:
        """The node (or ``"node:i"`` output) that a name or alias denotes; ``ValueError``
        for a name that denotes several nodes or none."""
        if not isinstance(name, str):
            raise TypeError(f"layer must be a node name (str), got {describe(name)}.")
        if name in self._index:
            return name
        if name in self._aliases:
            return self._aliases[name]
        base, _, k = name.rpartition(":")
        if base in self._index and k.isdigit() and int(k) < _outputs(self.nodes[self._index[base]].layer) > 1:
            return name
        if name in self.ambiguous:
            raise ValueError(
                f"{name!r} names a module called {len(self.ambiguous[name])} times, i.e. the nodes "
                f"{self.ambiguous[name]}; name one of them."
            )
        shown = [n.name for n in self.nodes][:40]
        raise ValueError(
            f"layer {name!r} is not in the graph; its nodes are {', '.join(map(repr, shown))}"
            f"{', ...' if len(self.nodes) > 40 else ''} (and their module paths)."
        )

    def aliases(self) -> dict[str, str]:
        """Every alias → the node it denotes."""
        return dict(self._aliases)

    def consumers(self) -> dict[str, list[str]]:
        """Output name → the nodes that read it."""
        out: dict[str, list[str]] = {}
        for n in self.nodes:
            for i in n.inputs:
                out.setdefault(i, []).append(n.name)
        return out

    def __len__(self) -> int:
        return len(self.nodes)

    def __repr__(self) -> str:
        lines = [f"  {n.name} = {n.layer!r}({', '.join(n.inputs)})" for n in self.nodes[:60]]
        if len(self.nodes) > 60:
            lines.append(f"  ... {len(self.nodes) - 60} more nodes")
        return "Graph(\n" + "\n".join(lines) + f"\n  output={self._output!r}\n)"

    def train(self, mode: bool = True) -> Graph:
        """Set training mode on every layer (only BatchNorm2d behaves differently)."""
        self.training = bool(mode)
        for n in self.nodes:
            n.layer.training = bool(mode)
        return self

    def eval(self) -> Graph:
        return self.train(False)

    # -- forward ---------------------------------------------------------------------
    def run(self, x: Any, keep: Iterable[str] | None = None) -> Trace:
        """Run every node in order on ``x``; returns the :class:`Trace`.

        ``trace.activations`` holds every node's output under its name and its aliases
        (``"name:i"`` for the outputs of a multi-output node); ``trace.caches`` one cache
        per node. Nothing is stored on the graph or its layers (except BatchNorm2d's running
        statistics in training mode). A layer's shape error names the node; a finite input
        that overflows inside the network raises ``ValueError`` naming the first node whose
        output is not finite.

        ``keep`` (names or aliases) asks for a partial trace, for a backward pass that stops
        at those layers (Grad-CAM): it holds their outputs, the logits and what the nodes
        after them read, and the caches of those nodes only; every other output is freed as
        soon as its last reader has run, so the memory of a forward pass is that of the
        deepest part of the network, not of all of it. ``vjp(..., to=k)`` and
        ``run_from(trace, k, ...)`` then work for every kept ``k``. ``"input"`` in ``keep``
        keeps every node's cache (for ``vjp(..., to=None)``, the input gradient) but only the
        outputs that the caches hold (a ReLU's output, a convolution's input), not e.g. a
        BatchNorm's output that only a ReLU read.
        """
        x = as_float_array("x", x, finite=True)
        self._check_input_shape(x)
        values: dict[str, np.ndarray] = {INPUT: x}
        if keep is None:
            return self._run(self.nodes, values, {}, x)
        keep = list(keep)
        to_input = INPUT in keep
        kept = {self.resolve(k) for k in keep if k != INPUT}
        after: set[str] = set()
        for k in kept:
            after |= self._descendants(k)
        # outputs read by the nodes after a kept one must stay (run_from, the caches)
        needed = set(kept) | {i for n in self.nodes if n.name in after for i in n.inputs}
        needed |= after | {self._output}
        last: dict[str, int] = {}
        for i, n in enumerate(self.nodes):
            for name in n.inputs:
                last[name] = i
        cached = None if to_input else after  # "input": a backward pass all the way down
        return self._run(self.nodes, values, {}, x, needed=needed, cached=cached, last=last)

    def _call(self, node: Node, values: Mapping[str, Any]) -> tuple[Any, Any]:
        xs = [values[i] for i in node.inputs]
        try:
            if isinstance(node.layer, Op):
                return node.layer._forward_many(xs)
            return node.layer._forward(xs[0])
        except ValueError as exc:
            raise ValueError(f"node {node.name!r} ({type(node.layer).__name__}): {exc}") from None

    def _run(self, nodes: Iterable[Node], values: dict[str, Any], caches: dict[str, Any],
             x: np.ndarray, needed: set[str] | None = None, cached: set[str] | None = None,
             last: dict[str, int] | None = None) -> Trace:
        """Run ``nodes`` (in order) reading and writing ``values``; the trace of the result.
        With ``needed``, outputs not in it are dropped after their last reader (``last``:
        output → index of that reader) and only the nodes in ``cached`` keep a cache."""
        with np.errstate(all="ignore"):
            for index, node in enumerate(nodes):
                out, cache = self._call(node, values)
                if isinstance(out, tuple):
                    for k, o in enumerate(out):
                        values[f"{node.name}:{k}"] = o
                else:
                    values[node.name] = out
                if cached is None or node.name in cached:
                    caches[node.name] = cache
                if needed is not None and last is not None:
                    for name in node.inputs:
                        base = name.split(":")[0]
                        if last.get(name) == index and base not in needed and name != INPUT:
                            del values[name]  # the caches keep what backward passes need
        y = values[self._output]
        if not all_finite(y):
            for node in self.nodes:
                a = values.get(node.name)
                if isinstance(a, np.ndarray) and not all_finite(a):
                    raise ValueError(
                        f"the forward pass overflowed: the output of node {node.name!r} "
                        f"({type(node.layer).__name__}) is not finite (NaN or inf) although the input x "
                        "is finite; the values or the weights are too large for float64."
                    )
        acts = {k: v for k, v in values.items() if k != INPUT}
        if needed is not None:
            for node in self.nodes:  # outputs no node reads (dead ends) were never freed
                if node.name not in needed:
                    acts.pop(node.name, None)
        for alias, name in self._aliases.items():
            if name in acts:
                acts[alias] = acts[name]
        return Trace(x, y, FrozenMapping(acts), FrozenMapping(caches))

    def _descendants(self, name: str) -> set[str]:
        """The nodes that read ``name``'s output, directly or not (without ``name``)."""
        base = name.split(":")[0]
        out: set[str] = set()
        for node in self.nodes[self._index[base] + 1 :]:
            if any(i.split(":")[0] in out or i.split(":")[0] == base for i in node.inputs):
                out.add(node.name)
        return out

    def run_from(self, trace: Trace, name: str, value: Any) -> Trace:
        """A new trace in which ``name``'s output is ``value`` and every node that depends
        on it is re-run; ``trace`` is unchanged. A backward pass of the new trace may stop
        at ``name`` but not pass through it (its cache belongs to the old value).

        ``value`` may hold r·N rows for a trace of N images — r variants of each image's
        output, in ``np.repeat`` order (row n·r + j is a variant of image n), as
        ``target="all"`` and Ablation-CAM stack them: every output the re-run nodes read
        from outside ``name``'s descendants (a residual branch from before ``name``) is then
        repeated alike."""
        trace = self._check_trace(trace)
        target = self.resolve(name)
        value = as_float_array("value", value, finite=True)
        after = self._descendants(target)
        base = target.split(":")[0]
        n = trace.input.shape[0]
        rows = value.shape[0] if value.ndim else n
        if rows != n and (n == 0 or rows % n):
            raise ValueError(
                f"value must have N = {n} rows like the trace, or a multiple of N (variants of "
                f"each image in np.repeat order), got {rows}."
            )
        reps = rows // n if n else 1
        values: dict[str, Any] = {INPUT: trace.input if reps == 1 else np.repeat(trace.input, reps, axis=0)}
        read = {i for node in self.nodes if node.name in after for i in node.inputs}
        for k, v in trace.activations.items():
            if k.split(":")[0] not in self._index:
                continue
            if reps != 1 and k in read and isinstance(v, np.ndarray) and v.ndim and v.shape[0] == n:
                v = np.repeat(v, reps, axis=0)
            values[k] = v
        values[target] = value
        caches = {k: v for k, v in trace.caches.items() if k not in after and k != base}
        return self._run([m for m in self.nodes if m.name in after], values, caches, values[INPUT])


    def _check_trace(self, trace: Any) -> Trace:
        if not isinstance(trace, Trace):
            raise TypeError(f"trace must be an npcam.nn.Trace from this model's run, got {describe(trace)}.")
        return trace

    # -- backward --------------------------------------------------------------------
    def vjp(
        self,
        trace: Trace,
        cotangent: Any,
        to: str | None = None,
        relu_rule: str = "standard",
        param_grads: bool = False,
        record: bool = False,
        guided_relus: str = "all",
    ) -> VJP:
        r"""Backpropagate ``cotangent`` = ∂L/∂(logits) through ``trace``.

        Returns a :class:`~npcam.nn.VJP` whose ``grad`` is ∂L/∂(output of ``to``) — the
        derivative with every node that does not depend on ``to`` held fixed — or
        ∂L/∂input when ``to`` is None. A node read by several nodes gets the sum of their
        gradients. ``relu_rule`` ("standard", "guided", "deconvnet") is the ReLU backward
        rule and ``guided_relus`` the ReLUs it applies to: "all" (every ReLU node, module or
        function) or "modules" (only nodes with ``from_module``, as captum's
        ``GuidedBackprop`` and pytorch-grad-cam, which replace ``nn.ReLU`` modules only;
        function ReLUs then keep the standard rule). Other activations (ReLU6, Hardswish,
        SiLU, GELU, Sigmoid) always pass their ordinary derivative. ``param_grads`` adds
        ∂L/∂θ keyed like ``state_dict`` (a layer at several nodes gets the sum);
        ``record`` keeps ∂L/∂(output) of every node visited, under its name and aliases.
        """
        trace = self._check_trace(trace)
        g = check_vjp_arguments(trace, cotangent, relu_rule, guided_relus)
        target = INPUT if to is None else self.resolve(to)
        with np.errstate(all="ignore"):
            grads, pgrads, node_grads = self._backprop(
                trace, g, target, relu_rule, guided_relus, param_grads, record)
        found = grads.get(target)
        if found is None:  # the logits do not depend on it
            found = np.zeros_like(trace.input if target == INPUT else trace.activations[target])
        result: np.ndarray = found
        if not all_finite(result) or any(not all_finite(v) for v in grads.values()):
            self._raise_backward_overflow(trace, g, target, relu_rule, guided_relus)
        if record:
            for alias, name in self._aliases.items():
                if name in node_grads:
                    node_grads[alias] = node_grads[name]
        param_out = None
        if param_grads:
            param_out = {}
            for node in self.nodes:
                for attr, key in node.keys().items():
                    if key in pgrads and key not in param_out and attr in node.layer.params():
                        param_out[key] = pgrads[key]
        return VJP(result, param_out, node_grads if record else None)

    def _backprop(
        self, trace: Trace, g: np.ndarray, target: str, relu_rule: str, guided_relus: str,
        param_grads: bool, record: bool,
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The reverse sweep: from ∂L/∂logits = ``g`` down to ``target`` ("input", a node
        or "node:i"). Returns the gradients not consumed (the target's among them), the
        parameter gradients by state_dict key and, with ``record``, ∂L/∂(output) of every
        node visited. No finiteness check (the caller's)."""
        if target == INPUT:
            todo = None
            stop = -1
        else:
            todo = self._descendants(target)
            stop = self._index[target.split(":")[0]]
        grads: dict[str, np.ndarray] = {self._output: g}
        owned: set[str] = set()  # gradients this pass allocated, safe to add into in place
        pgrads: dict[str, np.ndarray] = {}
        node_grads: dict[str, np.ndarray] = {}
        for index in range(len(self.nodes) - 1, stop, -1):
            node = self.nodes[index]
            if todo is not None and node.name not in todo:
                continue
            count = _outputs(node.layer)
            dout: Any
            if count == 1:
                dout = grads.pop(node.name, None)
                if dout is None:
                    continue
                if record:
                    node_grads[node.name] = dout
            else:
                parts = [grads.pop(f"{node.name}:{k}", None) for k in range(count)]
                if all(p is None for p in parts):
                    continue
                dout = tuple(parts)
                if record:
                    for k, p in enumerate(parts):
                        if p is not None:
                            node_grads[f"{node.name}:{k}"] = p
            if node.name not in trace.caches:
                raise ValueError(
                    f"the backward pass cannot go through node {node.name!r}: the trace holds "
                    "no cache for it (its output was replaced by run_from, or run(keep=...) "
                    "dropped it); stop at a kept node with to=..."
                )
            rule = relu_rule
            if guided_relus == "modules" and isinstance(node.layer, ReLU) and not node.from_module:
                rule = "standard"
            cache = trace.caches[node.name]
            if isinstance(node.layer, Op):
                dxs, pg = node.layer._backward_many(dout, cache, rule, param_grads)
            else:
                one, pg = node.layer._backward(dout, cache, rule, param_grads)
                dxs = [one]
            for inp, dx in zip(node.inputs, dxs, strict=True):
                if dx is None:
                    continue
                if inp in grads:
                    if inp in owned:
                        grads[inp] += dx
                    else:
                        grads[inp] = grads[inp] + dx
                        owned.add(inp)
                else:
                    grads[inp] = dx
            if param_grads:
                keys = node.keys()
                for attr, value in pg.items():
                    key = keys[attr]
                    pgrads[key] = pgrads[key] + value if key in pgrads else value
        return grads, pgrads, node_grads

    def _raise_backward_overflow(self, trace: Trace, g: np.ndarray, target: str, relu_rule: str,
                                 guided_relus: str) -> None:
        """Name the first node, in backward order, whose input gradient is not finite
        (the sweep again, recording every gradient)."""
        with np.errstate(all="ignore"):
            grads, _, seen = self._backprop(trace, g, target, relu_rule, guided_relus, False, True)
        seen.update(grads)
        for node in reversed(self.nodes):
            for i in node.inputs:
                a = seen.get(i)
                if a is not None and not all_finite(a):
                    raise ValueError(
                        f"the backward pass overflowed: the gradient computed by node {node.name!r} "
                        f"({type(node.layer).__name__}) is not finite (NaN or inf) although the "
                        "cotangent is finite; the values or the weights are too large for float64."
                    )
        raise ValueError("the backward pass overflowed to NaN or inf.")

    # -- the default target layer ----------------------------------------------------
    def dominators(self) -> list[str]:
        """The nodes that every path from the input to the logits passes through, in
        order. In a topological order a path can avoid node v only by an edge u → w with
        u before v and w after it; v is on every path iff no such edge jumps over it."""
        reach_in = {INPUT}
        for n in self.nodes:
            if any(i.split(":")[0] in reach_in or i == INPUT for i in n.inputs):
                reach_in.add(n.name)
        reach_out = {self._output}
        for n in reversed(self.nodes):
            if n.name in reach_out:
                reach_out.update(i.split(":")[0] for i in n.inputs)
        pos = {INPUT: -1, **self._index}
        relevant = [n for n in self.nodes if n.name in reach_in and n.name in reach_out]
        cover = np.zeros(len(self.nodes) + 2, dtype=np.int64)
        for n in relevant:
            for i in n.inputs:
                u = i.split(":")[0]
                if u in reach_in and (u == INPUT or u in reach_out):
                    lo, hi = pos[u] + 1, self._index[n.name]  # strictly between u and n
                    if lo < hi:
                        cover[lo + 1] += 1
                        cover[hi + 1] -= 1
        inside = np.cumsum(cover)
        return [n.name for n in relevant if inside[self._index[n.name] + 1] == 0]

    def _layouts(self) -> dict[str, tuple[int, ...] | None]:
        """Per node, which NCHW axes its (4-D) output's axes are (tracked through
        Permute), or None when it is not a 4-D feature map."""
        layout: dict[str, tuple[int, ...] | None] = {INPUT: (0, 1, 2, 3)}
        for n in self.nodes:
            first = layout.get(n.inputs[0].split(":")[0]) if n.inputs else None
            if isinstance(n.layer, Permute):
                if first is None or len(n.layer.dims) != 4:
                    layout[n.name] = None
                else:
                    layout[n.name] = tuple(first[d % 4] for d in n.layer.dims)
            elif isinstance(n.layer, Transpose):
                if first is None:
                    layout[n.name] = None
                else:
                    dims = list(first)
                    a, b = n.layer.dim0 % 4, n.layer.dim1 % 4
                    dims[a], dims[b] = dims[b], dims[a]
                    layout[n.name] = tuple(dims)
            elif isinstance(n.layer, Flatten):
                layout[n.name] = None
            elif isinstance(n.layer, _SAME_LAYOUT):
                layout[n.name] = first
            else:
                layout[n.name] = (0, 1, 2, 3)
        return layout

    def default_layer(self, trace: Trace) -> str:
        """The layer ``layer=None`` selects: :attr:`default_layer_name` when set, else
        the last node that every path to the logits passes through whose output is a 4-D
        feature map (in NCHW layout, or a permutation of it tracked through Permute nodes:
        explanations transpose such a map to NCHW) with h·w > 1, skipping pooling (max,
        average, adaptive, Mean) and identity-like nodes."""
        if self.default_layer_name is not None:
            return self.default_layer_name
        layouts = self._layouts()
        for name in reversed(self.dominators()):
            node = self.nodes[self._index[name]]
            if isinstance(node.layer, _POOLING + _IDENTITY_LIKE):
                continue
            a = trace.activations.get(name)
            layout = layouts.get(name)
            if isinstance(a, np.ndarray) and a.ndim == 4 and layout is not None:
                positions = a.shape[layout.index(2)] * a.shape[layout.index(3)]
                if positions > 1:
                    return name
        raise ValueError(
            "layer is None but no node on every path to the logits outputs a 4-D feature map of "
            "more than one position; name one with layer=..."
        )

    # -- parameters ------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and buffer, keyed by :attr:`Node.state_keys`
        (torch's ``state_dict`` keys in imported graphs)."""
        out: dict[str, np.ndarray] = {}
        for node in self.nodes:
            values = {**node.layer.params(), **node.layer.buffers()}
            for attr, key in node.keys().items():
                if key not in out:
                    out[key] = np.array(values[attr], copy=True)
        return out

    def named_parameters(self) -> list[tuple[str, np.ndarray]]:
        """Trainable parameters with their state_dict keys, in order (each once)."""
        out: dict[str, np.ndarray] = {}
        for node in self.nodes:
            params = node.layer.params()
            for attr, key in node.keys().items():
                if attr in params and key not in out:
                    out[key] = params[attr]
        return list(out.items())

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copy parameters and buffers from ``state_dict`` (NumPy arrays or CPU torch
        tensors), with torch's strict-key semantics; nothing is assigned unless everything
        checks out."""
        own: dict[str, np.ndarray] = {}
        targets: dict[str, tuple[Any, str]] = {}
        for node in self.nodes:
            values = {**node.layer.params(), **node.layer.buffers()}
            for attr, key in node.keys().items():
                if key not in targets:
                    targets[key] = (node.layer, attr)
                    own[key] = values[attr]  # only its shape is read: no copy
        return load_state(targets, own, state_dict, strict)

    # -- configuration ---------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """A JSON-able description: every node's name, layer config, inputs, aliases,
        flags and state_dict keys, and the output (weights travel in ``state_dict``)."""
        nodes = []
        shared: dict[int, str] = {}
        for n in self.nodes:
            entry: dict[str, Any] = {"name": n.name, "layer": n.layer.config(), "inputs": list(n.inputs)}
            if id(n.layer) in shared:
                entry["same_layer_as"] = shared[id(n.layer)]
            else:
                shared[id(n.layer)] = n.name
            if n.aliases:
                entry["aliases"] = list(n.aliases)
            if n.from_module:
                entry["from_module"] = True
            if n.inplace:
                entry["inplace"] = True
            keys = {a: k for a, k in n.keys().items() if k != f"{n.name}.{a}"}
            if keys:
                entry["state_keys"] = keys
            nodes.append(entry)
        out: dict[str, Any] = {"type": "Graph", "nodes": nodes, "output": self._output}
        if self.default_layer_name is not None:
            out["default_layer_name"] = self.default_layer_name
        if self.ambiguous:
            out["ambiguous"] = {k: list(v) for k, v in self.ambiguous.items()}
        if self.input_shape is not None:
            out["input_shape"] = list(self.input_shape)
        if self.output_softmax:
            out["output_softmax"] = True
        if self.import_notes:
            out["import_notes"] = list(self.import_notes)
        return out

    def replace(self, nodes: Iterable[Node]) -> Graph:
        """A graph with the same output, default layer, ambiguous names, input shape and
        import record over ``nodes``."""
        return Graph(list(nodes), self._output, default_layer_name=self.default_layer_name,
                     ambiguous=self.ambiguous, input_shape=self.input_shape,
                     output_softmax=self.output_softmax, import_notes=self.import_notes)

    def channels_last_input(self) -> bool:
        """Whether the graph reads its input channels-last, (N, H, W, C): the input is read
        by one node only, a ``Permute((0, 3, 1, 2))`` to NCHW (a Keras or JAX model through
        ONNX). Methods that work in image space (Score-CAM's masks, FullGrad's input term,
        the upsampled maps) need to know which axes of ``x`` are H and W."""
        readers = [n for n in self.nodes if INPUT in n.inputs]
        return (len(readers) == 1 and isinstance(readers[0].layer, Permute)
                and tuple(d % 4 for d in readers[0].layer.dims) == (0, 3, 1, 2)
                and len(readers[0].inputs) == 1)

    def nchw_input(self) -> Graph:
        """The same network taking (N, C, H, W): for a :meth:`channels_last_input` graph,
        the graph without its leading NHWC→NCHW ``Permute`` (its readers read the input);
        any other graph is returned as it is. ``g.nchw_input().forward(x.transpose(0, 3, 1, 2))``
        equals ``g.forward(x)`` exactly, and every other node keeps its name."""
        if not self.channels_last_input():
            return self
        first = next(n for n in self.nodes if INPUT in n.inputs)
        nodes = [Node(n.name, n.layer, tuple(INPUT if i == first.name else i for i in n.inputs),
                      n.aliases, n.from_module, n.inplace, n.state_keys)
                 for n in self.nodes if n is not first]
        shape = self.input_shape
        nchw = (shape[0], shape[3], shape[1], shape[2]) if shape is not None and len(shape) == 4 else shape
        default = None if self.default_layer_name == first.name else self.default_layer_name
        notes = (*self.import_notes, "the leading NHWC-to-NCHW Transpose was removed; the graph "
                 "takes (N, C, H, W).")
        return Graph(nodes, INPUT if self._output == first.name else self._output,
                     default_layer_name=default, ambiguous=self.ambiguous, input_shape=nchw,
                     output_softmax=self.output_softmax, import_notes=notes)

    def _check_input_shape(self, x: np.ndarray) -> None:
        want = self.input_shape
        if want is None:
            return
        if x.ndim != len(want) or any(w is not None and w != n for w, n in zip(want, x.shape, strict=True)):
            shown = "(" + ", ".join("N" if w is None and i == 0 else "*" if w is None else str(w)
                                    for i, w in enumerate(want)) + ")"
            raise ValueError(f"x must have shape {shown} (the shape this graph was exported at), got "
                             f"{x.shape}.")

    def copy(self) -> Graph:
        """A deep copy (layers and weights included; layers shared by several nodes stay shared)."""
        return copy.deepcopy(self)


