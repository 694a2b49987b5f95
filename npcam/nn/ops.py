r"""Graph ops: the layers a :class:`~npcam.nn.Graph` needs beyond a chain.

A residual network adds two branches (:class:`Add`), an Inception block concatenates four
(:class:`Concat`), a squeeze-excitation block multiplies a feature map by a per-channel
gate (:class:`Mul`), ShuffleNet splits and shuffles channels (:class:`Split`,
:class:`Chunk`, :class:`Reshape`, :class:`Permute`). Each op is a forward/backward pair
with its equation; none has parameters except :class:`Parameter`, a tensor the graph
reads (ConvNeXt's ``layer_scale``).

An op with several inputs or outputs implements the multi-input contract of
:class:`Op`::

    out, cache = op._forward_many([x1, x2, ...])          # out: an array, or a tuple (Split)
    dxs, grads = op._backward_many(dout, cache, relu_rule, param_grads)

``dxs`` holds one gradient per input, ``None`` for an input that only lends its *shape*
(:class:`Reshape`'s size references): no gradient flows through a shape. Every op here is
linear in each input (Mul is bilinear), so the backward passes are exact adjoints:
broadcasting in the forward pass becomes a sum over the broadcast axes in the backward
pass (:func:`unbroadcast`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from .._validate import describe
from .layers import Layer

__all__ = [
    "Add",
    "AddConstant",
    "ClipAffine",
    "Div",
    "Erf",
    "Pad",
    "Sub",
    "Sum",
    "Chunk",
    "Concat",
    "Identity",
    "Index",
    "Mean",
    "Mul",
    "MulConstant",
    "Op",
    "Parameter",
    "Permute",
    "Reshape",
    "Split",
    "Transpose",
    "Unsqueeze",
    "View",
    "unbroadcast",
]


def unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    r"""The adjoint of broadcasting an array of ``shape`` to ``g.shape``: sum ``g`` over
    the axes that broadcasting added or stretched from 1.

    If ``y = broadcast(x)`` then every ``x_i`` is copied to all the ``y_j`` it is broadcast
    to, so ``∂L/∂x_i = Σ_{j ← i} ∂L/∂y_j``.
    """
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1
    )
    return g.sum(axis=axes).reshape(shape) if axes else g.reshape(shape)


def _int(name: str, value: Any, low: int | None = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {describe(value)}.")
    if low is not None and value < low:
        raise ValueError(f"{name} must be at least {low}, got {int(value)}.")
    return int(value)


def _axis(name: str, dim: int, ndim: int, what: str) -> int:
    if not -ndim <= dim < ndim:
        raise ValueError(f"{name}={dim} is out of range for {what} of {ndim} dimensions.")
    return dim % ndim


class Op(Layer):
    """A graph op: a layer with several inputs (``num_inputs``; ``None`` means any number
    from 1) and/or several outputs (``num_outputs``).

    A graph calls ``_forward_many(inputs)`` and ``_backward_many(dout, cache, ...)``; for
    a one-input, one-output op these default to ``_forward`` / ``_backward``.
    """

    num_inputs: ClassVar[int | None] = 1

    @property
    def num_outputs(self) -> int:
        return 1

    def _forward_many(self, xs: list[np.ndarray]) -> tuple[Any, Any]:
        return self._forward(xs[0])

    def _backward_many(
        self, dout: Any, cache: Any, relu_rule: str, param_grads: bool
    ) -> tuple[list[np.ndarray | None], dict[str, np.ndarray]]:
        dx, grads = self._backward(dout, cache, relu_rule, param_grads)
        return [dx], grads

    def run_many(self, xs: Sequence[Any]) -> Any:
        """This op's output for the inputs ``xs`` (a student-facing convenience)."""
        from .._validate import as_float_array

        arrays = [as_float_array(f"input {i} of "
                                 f"{type(self).__name__}", x, finite=True) for i, x in enumerate(xs)]
        with np.errstate(all="ignore"):
            return self._forward_many(arrays)[0]


# ------------------------------------------------------------------------ element-wise
class Add(Op):
    r"""``out = a + b`` (with NumPy/torch broadcasting): a residual connection.

    Backward: ``∂L/∂a = unbroadcast(dout)``, ``∂L/∂b = unbroadcast(dout)`` — addition
    passes the gradient unchanged to both branches.
    """

    num_inputs = 2

    def _forward_many(self, xs):
        a, b = xs
        return a + b, (a.shape, b.shape)

    def _backward_many(self, dout, cache, relu_rule, param_grads):
        sa, sb = cache
        return [unbroadcast(dout, sa), unbroadcast(dout, sb)], {}


class Mul(Op):
    r"""``out = a · b`` element-wise, with broadcasting: a squeeze-excitation gate
    (N, C, 1, 1) · (N, C, H, W), or a per-channel scale (C, 1, 1) · (N, C, H, W).

    Backward (the product rule): ``∂L/∂a = unbroadcast(dout · b)``,
    ``∂L/∂b = unbroadcast(dout · a)``, summed over the axes each operand was broadcast
    along (for an SE gate: ``Σ_{h,w} dout·x``).
    """

    num_inputs = 2

    def _forward_many(self, xs):
        a, b = xs
        return a * b, (a, b)

    def _backward_many(self, dout, cache, relu_rule, param_grads):
        a, b = cache
        return [unbroadcast(dout * b, a.shape), unbroadcast(dout * a, b.shape)], {}


class Sub(Op):
    r"""``out = a − b`` with broadcasting (ONNX ``Sub``).

    Backward: ``∂L/∂a = unbroadcast(dout)``, ``∂L/∂b = −unbroadcast(dout)``.
    """

    num_inputs = 2

    def _forward_many(self, xs):
        a, b = xs
        return a - b, (a.shape, b.shape)

    def _backward_many(self, dout, cache, relu_rule, param_grads):
        sa, sb = cache
        return [unbroadcast(dout, sa), -unbroadcast(dout, sb)], {}


class Div(Op):
    r"""``out = a / b`` element-wise with broadcasting (ONNX ``Div``; the exact GELU's
    ``x / √2``).

    Backward (the quotient rule): ``∂L/∂a = unbroadcast(dout / b)``,
    ``∂L/∂b = unbroadcast(−dout · a / b²) = unbroadcast(−dout · out / b)``.
    """

    num_inputs = 2

    def _forward_many(self, xs):
        a, b = xs
        out = a / b
        return out, (out, b, a.shape)

    def _backward_many(self, dout, cache, relu_rule, param_grads):
        out, b, sa = cache
        da = dout / b
        return [unbroadcast(da, sa), unbroadcast(-da * out, b.shape)], {}


class AddConstant(Op):
    """``out = x + value`` for a fixed number (GoogLeNet's ``transform_input``); the
    gradient passes unchanged."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = _finite_number("value", value)

    def config(self) -> dict[str, Any]:
        return {"type": "AddConstant", "value": self.value}

    def _forward(self, x):
        return x + self.value, None

    def _backward(self, dout, cache, relu_rule, param_grads):
        return dout, {}


class MulConstant(Op):
    """``out = value · x`` for a fixed number; ``∂L/∂x = value · dout``."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = _finite_number("value", value)

    def config(self) -> dict[str, Any]:
        return {"type": "MulConstant", "value": self.value}

    def _forward(self, x):
        return x * self.value, None

    def _backward(self, dout, cache, relu_rule, param_grads):
        return dout * self.value, {}


class Erf(Op):
    r"""``out = erf(x) = (2/√π) ∫_0^x e^{−t²} dt`` (ONNX ``Erf``: the exact GELU
    ``x/2 · (1 + erf(x/√2))`` arrives from ONNX as primitive ops).

    Backward: ``erf'(x) = (2/√π) e^{−x²}``.
    """

    def _forward(self, x):
        from scipy.special import erf

        return erf(x), x

    def _backward(self, dout, cache, relu_rule, param_grads):
        x = cache
        return dout * (2.0 / math.sqrt(math.pi)) * np.exp(-x * x), {}


class ClipAffine(Op):
    r"""``out = clip(α·x + β, 0, 1)``: ONNX ``HardSigmoid`` with its stored ``alpha`` and
    ``beta`` (torch's ``Hardsigmoid`` is α = 1/6, β = 1/2: :class:`~npcam.nn.Hardsigmoid`).

    Backward: ``∂L/∂x = α · dout`` where ``0 < α·x + β < 1`` (open interval, torch's value
    at the kinks), else 0.
    """

    def __init__(self, alpha: float, beta: float) -> None:
        super().__init__()
        self.alpha = _finite_number("alpha", alpha)
        self.beta = _finite_number("beta", beta)

    def config(self) -> dict[str, Any]:
        return {"type": "ClipAffine", "alpha": self.alpha, "beta": self.beta}

    def _forward(self, x):
        z = self.alpha * x + self.beta
        return np.clip(z, 0.0, 1.0), z

    def _backward(self, dout, cache, relu_rule, param_grads):
        z = cache
        return np.where((z > 0.0) & (z < 1.0), dout * self.alpha, 0.0), {}


#: The widest zero padding :class:`Pad` adds on one side of an axis.
MAX_PAD = 1024


class Pad(Op):
    r"""Zero padding, ``out = pad(x)`` with ``widths[a] = (before, after)`` zeros on axis
    ``a`` (ONNX ``Pad`` in ``constant`` mode with value 0; ``np.pad``'s convention).

    Backward: the adjoint of embedding ``x`` in a larger zero array is cutting the
    padding off ``dout``.
    """

    def __init__(self, widths: Sequence[Sequence[int]]) -> None:
        super().__init__()
        if not isinstance(widths, (tuple, list)) or not widths:
            raise TypeError(f"widths must be a non-empty sequence of (before, after) pairs, got "
                            f"{describe(widths)}.")
        pairs = []
        for w in widths:
            if not isinstance(w, (tuple, list)) or len(w) != 2:
                raise TypeError(f"each entry of widths must be a (before, after) pair, got {describe(w)}.")
            pairs.append((_int("widths entries", w[0], 0), _int("widths entries", w[1], 0)))
        if max(max(p) for p in pairs) > MAX_PAD:
            raise ValueError(f"widths entries must be at most MAX_PAD = {MAX_PAD}, got "
                             f"{[list(p) for p in pairs]}.")
        self.widths = tuple(pairs)

    def config(self) -> dict[str, Any]:
        return {"type": "Pad", "widths": [list(w) for w in self.widths]}

    def _forward(self, x):
        if x.ndim != len(self.widths):
            raise ValueError(f"Pad with {len(self.widths)} (before, after) pairs needs an input of "
                             f"{len(self.widths)} dimensions, got shape {x.shape}.")
        return np.pad(x, self.widths), x.shape

    def _backward(self, dout, cache, relu_rule, param_grads):
        shape = cache
        index = tuple(slice(b, b + n) for (b, _), n in zip(self.widths, shape, strict=True))
        return dout[index].copy(), {}


def _finite_number(name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {describe(value)}.")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} must be finite, got {value!r}.")
    return float(value)


class Identity(Op):
    """``out = x``: what eval-mode Dropout, eval-mode stochastic depth, ``contiguous()``
    and a one-input ``cat`` compute. The output is the input array itself."""

    def _forward(self, x):
        return x, None

    def _backward(self, dout, cache, relu_rule, param_grads):
        return dout, {}


class Parameter(Op):
    r"""A tensor the graph reads, with no input: ``out = value``.

    Models read parameters outside any layer (ConvNeXt multiplies each block's output by
    ``layer_scale``, of shape (C, 1, 1)); as a node, the tensor gets its ``state_dict`` key
    and its gradient, ``∂L/∂value = dout`` (summed over the broadcast axes by the op that
    broadcast it).
    """

    num_inputs = 0
    param_names = ("value",)

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        if not isinstance(shape, (tuple, list)):
            raise TypeError(f"shape must be a tuple of ints, got {describe(shape)}.")
        self.shape = tuple(_int("shape entries", s, 1) for s in shape)
        self.value = np.zeros(self.shape)

    def config(self) -> dict[str, Any]:
        return {"type": "Parameter", "shape": list(self.shape)}

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"value": self.shape}

    def _forward_many(self, xs):
        return self.value, None

    def _backward_many(self, dout, cache, relu_rule, param_grads):
        return [], ({"value": dout} if param_grads else {})


# ------------------------------------------------------------------------ channels
class Concat(Op):
    r"""``out = cat([x_1, …, x_m], dim)``: the inputs side by side along ``dim``
    (Inception's four branches; DenseNet's growing feature lists, 1 to 25 inputs).

    Backward: each input receives its own slice of ``dout``, cut at the forward offsets.
    """

    num_inputs = None

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.dim = _int("dim", dim)

    def config(self) -> dict[str, Any]:
        return {"type": "Concat", "dim": self.dim}

    def _forward_many(self, xs):
        dim = _axis("dim", self.dim, xs[0].ndim, "the inputs of Concat")
        rest = [x.shape[:dim] + x.shape[dim + 1 :] for x in xs]
        if any(r != rest[0] for r in rest) or any(x.ndim != xs[0].ndim for x in xs):
            shapes = [x.shape for x in xs]
            raise ValueError(f"the inputs of Concat must agree except along dim {self.dim}, got shapes "
                             f"{shapes}.")
        sizes = [x.shape[dim] for x in xs]
        return np.concatenate(xs, axis=dim), (dim, sizes)

    def _backward_many(self, dout, cache, relu_rule, param_grads):
        dim, sizes = cache
        return list(np.split(dout, np.cumsum(sizes)[:-1], axis=dim)), {}


class Split(Op):
    r"""``outs = split(x, split_size_or_sections, dim)``, as ``torch.split``: an int means
    parts of that size (the last one may be smaller), a list the size of each part.
    Output i is addressed in a graph as ``"name:i"``.

    Backward: the concatenation of the parts' gradients (zeros for a part no one reads).
    """

    def __init__(self, split_size_or_sections: int | Sequence[int], dim: int = 1) -> None:
        super().__init__()
        if isinstance(split_size_or_sections, (list, tuple)):
            self.sections: tuple[int, ...] | None = tuple(
                _int("split_size_or_sections entries", s, 0) for s in split_size_or_sections
            )
            self.split_size: int | None = None
            if not self.sections:
                raise ValueError("split_size_or_sections must not be empty.")
        else:
            self.split_size = _int("split_size_or_sections", split_size_or_sections, 1)
            self.sections = None
        self.dim = _int("dim", dim)
        self._outputs: int | None = None if self.sections is None else len(self.sections)

    def config(self) -> dict[str, Any]:
        value: Any = list(self.sections) if self.sections is not None else self.split_size
        return {"type": "Split", "split_size_or_sections": value, "dim": self.dim}

    @property
    def num_outputs(self) -> int:
        if self._outputs is None:
            raise ValueError(
                "the number of outputs of Split(split_size) depends on the input size; "
                "pass the sections as a list in a graph."
            )
        return self._outputs

    def _sizes(self, n: int) -> list[int]:
        if self.sections is not None:
            if sum(self.sections) != n:
                raise ValueError(
                    f"the sections {list(self.sections)} of Split must add up to the input's size "
                    f"{n} along dim {self.dim}."
                )
            return list(self.sections)
        size = self.split_size
        assert size is not None
        return [min(size, n - start) for start in range(0, n, size)]

    def _forward_many(self, xs):
        x = xs[0]
        dim = _axis("dim", self.dim, x.ndim, f"the input of {type(self).__name__}")
        sizes = self._sizes(x.shape[dim])
        parts = tuple(np.split(x, np.cumsum(sizes)[:-1], axis=dim))
        return parts, (dim, x.shape)

    def _backward_many(self, dout, cache, relu_rule, param_grads):
        dim, shape = cache
        dx = np.zeros(shape)
        start = 0
        for g, part in zip(dout, self._sizes(shape[dim]), strict=True):
            if g is not None:
                index = [slice(None)] * len(shape)
                index[dim] = slice(start, start + part)
                dx[tuple(index)] = g
            start += part
        return [dx], {}


class Chunk(Split):
    """``x.chunk(chunks, dim)``: torch's rule, parts of size ``ceil(n / chunks)`` (the last
    smaller, and fewer than ``chunks`` parts when they run out). A graph needs the input
    size along ``dim`` to know the number of outputs: give ``size``."""

    def __init__(self, chunks: int, dim: int = 1, size: int | None = None) -> None:
        self.chunks = _int("chunks", chunks, 1)
        if size is None:
            super().__init__(1, dim)
            self.split_size = None
            self._outputs = self.chunks
            self.size: int | None = None
        else:
            n = _int("size", size, 1)
            step = -(-n // self.chunks)
            super().__init__([min(step, n - s) for s in range(0, n, step)], dim)
            self.size = n

    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "Chunk", "chunks": self.chunks, "dim": self.dim}
        if self.size is not None:
            out["size"] = self.size
        return out

    def _sizes(self, n: int) -> list[int]:
        step = -(-n // self.chunks)
        sizes = [min(step, n - s) for s in range(0, n, step)]
        if self._outputs is not None and len(sizes) != self._outputs:
            raise ValueError(
                f"Chunk({self.chunks}) of a size-{n} axis gives {len(sizes)} parts, but the graph "
                f"reads {self._outputs}."
            )
        return sizes


# ---------------------------------------------------------------------- layout and shape
class Permute(Op):
    r"""``out = x.permute(dims)``: axis i of the output is axis ``dims[i]`` of the input
    (ConvNeXt's NCHW ↔ NHWC). Backward: the inverse permutation of ``dout``."""

    def __init__(self, dims: Sequence[int]) -> None:
        super().__init__()
        if not isinstance(dims, (tuple, list)):
            raise TypeError(f"dims must be a tuple of ints, got {describe(dims)}.")
        self.dims = tuple(_int("dims entries", d) for d in dims)
        if sorted(d % len(self.dims) for d in self.dims) != list(range(len(self.dims))):
            raise ValueError(f"dims must be a permutation of 0..{len(self.dims) - 1}, got {list(self.dims)}.")

    def config(self) -> dict[str, Any]:
        return {"type": "Permute", "dims": list(self.dims)}

    def _forward(self, x):
        if x.ndim != len(self.dims):
            raise ValueError(
                f"the input of Permute{tuple(self.dims)} must be {len(self.dims)}-D, got shape {x.shape}."
            )
        dims = tuple(d % x.ndim for d in self.dims)
        return np.ascontiguousarray(x.transpose(dims)), dims

    def _backward(self, dout, cache, relu_rule, param_grads):
        return np.ascontiguousarray(dout.transpose(np.argsort(cache))), {}


class Transpose(Op):
    r"""``out = torch.transpose(x, dim0, dim1)``: axes ``dim0`` and ``dim1`` swapped, on an
    input of any rank (ShuffleNet's channel shuffle on 5-D). Its own inverse: the backward
    pass swaps the same axes of ``dout``."""

    def __init__(self, dim0: int, dim1: int) -> None:
        super().__init__()
        self.dim0, self.dim1 = _int("dim0", dim0), _int("dim1", dim1)

    def config(self) -> dict[str, Any]:
        return {"type": "Transpose", "dim0": self.dim0, "dim1": self.dim1}

    def _forward(self, x):
        a = _axis("dim0", self.dim0, x.ndim, "the input of Transpose")
        b = _axis("dim1", self.dim1, x.ndim, "the input of Transpose")
        return np.ascontiguousarray(np.swapaxes(x, a, b)), (a, b)

    def _backward(self, dout, cache, relu_rule, param_grads):
        a, b = cache
        return np.ascontiguousarray(np.swapaxes(dout, a, b)), {}


_DIM = re.compile(r"^(\d+)\.(\d+)(?://(\d+))?(?:\*(\d+))?$")


class Reshape(Op):
    r"""``out = x.reshape(shape)`` in C order (torch's ``view``/``reshape``); backward
    reshapes ``dout`` back.

    ``shape`` entries are ints (one may be −1), or size references ``"i.a"`` — the size
    of axis ``a`` of input ``i`` (0 is ``x`` itself; 1, 2, … further inputs that only lend
    their shape) — optionally ``"i.a//k"`` (integer-divided by k) or ``"i.a*k"``. Imported
    graphs use references for the sizes torch code computes from ``x.size()`` (ShuffleNet's
    channel shuffle), so that neither the batch nor the spatial size is fixed.
    """

    num_inputs = None

    def __init__(self, shape: Sequence[int | str]) -> None:
        super().__init__()
        if not isinstance(shape, (tuple, list)) or not shape:
            raise TypeError("shape must be a non-empty tuple of ints or size references, got "
                            f"{describe(shape)}.")
        entries: list[int | str] = []
        for s in shape:
            if isinstance(s, str):
                if not _DIM.match(s):
                    raise ValueError(f"shape entry {s!r} must be an int or a size reference like '0.1//2'.")
                entries.append(s)
            else:
                entries.append(_int("shape entries", s, -1))
        if sum(1 for s in entries if s == -1) > 1:
            raise ValueError(f"shape may hold at most one -1, got {entries}.")
        self.shape = tuple(entries)

    def config(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "shape": list(self.shape)}

    def _resolve(self, xs: list[np.ndarray]) -> tuple[int, ...]:
        out: list[int] = []
        for s in self.shape:
            if isinstance(s, str):
                m = _DIM.match(s)
                assert m is not None
                i, a = int(m.group(1)), int(m.group(2))
                if i >= len(xs) or a >= xs[i].ndim:
                    raise ValueError(f"the size reference {s!r} of Reshape names no axis of its inputs.")
                v = xs[i].shape[a]
                if m.group(3):
                    v //= int(m.group(3))
                if m.group(4):
                    v *= int(m.group(4))
                out.append(v)
            else:
                out.append(s)
        return tuple(out)

    def _forward_many(self, xs):
        x = xs[0]
        shape = self._resolve(xs)
        try:
            out = x.reshape(shape)
        except ValueError:
            raise ValueError(f"Reshape cannot view an input of shape {x.shape} as {shape}.") from None
        return out, (x.shape, len(xs))

    def _backward_many(self, dout, cache, relu_rule, param_grads):
        shape, count = cache
        return [dout.reshape(shape)] + [None] * (count - 1), {}


class View(Reshape):
    """An alias of :class:`Reshape` (torch's ``view``)."""


class Unsqueeze(Op):
    """``out = x.unsqueeze(dim)``: a new axis of size 1; backward removes it."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = _int("dim", dim)

    def config(self) -> dict[str, Any]:
        return {"type": "Unsqueeze", "dim": self.dim}

    def _forward(self, x):
        return np.expand_dims(x, _axis("dim", self.dim, x.ndim + 1, "the output of Unsqueeze")), x.shape

    def _backward(self, dout, cache, relu_rule, param_grads):
        return dout.reshape(cache), {}


def _index_entry(e: Any) -> int | slice:
    if isinstance(e, slice):
        return e
    if isinstance(e, (list, tuple)) and len(e) == 3:
        return slice(*[None if v is None else _int("slice bounds", v) for v in e])
    return _int("index entries", e)


class Index(Op):
    r"""Basic indexing ``out = x[index]`` with ints and slices (GoogLeNet's ``x[:, 0]``).

    Backward: ``dout`` is written into a zero array of the input's shape at the indexed
    positions (each input element is read at most once by basic indexing).
    """

    def __init__(self, index: Sequence[Any]) -> None:
        super().__init__()
        if not isinstance(index, (tuple, list)):
            index = (index,)
        self.index = tuple(_index_entry(e) for e in index)

    def config(self) -> dict[str, Any]:
        entries = [[e.start, e.stop, e.step] if isinstance(e, slice) else e for e in self.index]
        return {"type": "Index", "index": entries}

    def _forward(self, x):
        try:
            out = x[self.index]
        except IndexError as exc:
            raise ValueError(f"Index cannot index an input of shape {x.shape}: {exc}.") from None
        return np.array(out), x.shape

    def _backward(self, dout, cache, relu_rule, param_grads):
        dx = np.zeros(cache)
        dx[self.index] = dout
        return dx, {}


class _Reduction(Op):
    """The axes and ``keepdim`` flag shared by :class:`Mean` and :class:`Sum`."""

    def __init__(self, dim: int | Sequence[int], keepdim: bool = False) -> None:
        super().__init__()
        dims = (dim,) if isinstance(dim, (int, np.integer)) and not isinstance(dim, bool) else dim
        if not isinstance(dims, (tuple, list)) or not dims:
            raise TypeError(f"dim must be an int or a tuple of ints, got {describe(dim)}.")
        self.dim = tuple(_int("dim entries", d) for d in dims)
        if not isinstance(keepdim, (bool, np.bool_)):
            raise TypeError(f"keepdim must be a bool, got {describe(keepdim)}.")
        self.keepdim = bool(keepdim)

    def config(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "dim": list(self.dim), "keepdim": self.keepdim}

    def axes(self, ndim: int) -> tuple[int, ...]:
        what = f"the input of {type(self).__name__}"
        return tuple(sorted({_axis("dim", d, ndim, what) for d in self.dim}))


class Mean(_Reduction):
    r"""``out = x.mean(dim, keepdim)``: the average over the axes ``dim``.
    ``Mean((2, 3))`` on (N, K, h, w) is global average pooling,
    ``F^k = (1/Z) Σ_ij A^k_ij``. Backward: ``dout / Z`` spread over every averaged position.
    """

    def _forward(self, x):
        axes = self.axes(x.ndim)
        return x.mean(axis=axes, keepdims=self.keepdim), (x.shape, axes)

    def _backward(self, dout, cache, relu_rule, param_grads):
        shape, axes = cache
        z = math.prod(shape[a] for a in axes)
        kept = tuple(1 if i in axes else n for i, n in enumerate(shape))
        return np.broadcast_to(dout.reshape(kept) / z, shape).copy(), {}


class Sum(_Reduction):
    r"""``out = x.sum(dim, keepdim)`` (ONNX ``ReduceSum``; JAX writes a mean as a sum and a
    division). Backward: ``dout`` spread unchanged over every summed position,
    ``∂L/∂x_i = ∂L/∂out`` (the sum is linear with coefficient 1)."""

    def _forward(self, x):
        axes = self.axes(x.ndim)
        return x.sum(axis=axes, keepdims=self.keepdim), (x.shape, axes)

    def _backward(self, dout, cache, relu_rule, param_grads):
        shape, axes = cache
        kept = tuple(1 if i in axes else n for i, n in enumerate(shape))
        return np.broadcast_to(dout.reshape(kept), shape).copy(), {}
