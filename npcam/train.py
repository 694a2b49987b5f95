r"""Minibatch training with the hand-derived softmax cross-entropy gradient and Adam.

Nothing here differentiates automatically: the loss gradient w.r.t. the logits is
:func:`npcam.nn.functional.softmax_cross_entropy`'s ``∂L/∂y_{n,c} = (p_{n,c} − [c = t_n])/N``,
and ``model.vjp(trace, dlogits, param_grads=True)`` carries it through the layers'
hand-written backward passes into every parameter gradient. One step is::

    trace = model.run(x_batch)                         # model.train(): BatchNorm uses batch stats
    loss, dlogits = softmax_cross_entropy(trace.output, t)   # L and ∂L/∂logits
    grads = model.vjp(trace, dlogits, param_grads=True).param_grads   # ∂L/∂θ, keyed like state_dict
    adam.step(params, grads, lr=schedule(step))        # θ ← θ − lr_t · m̂/(sqrt(v̂) + ε)

A step whose forward or backward pass overflows, or whose loss is not finite, stops the
training with a ``ValueError`` saying that it diverged (the learning rate is the usual
cause).

**Reproducibility.** The only randomness of :func:`fit` is the order of the examples,
drawn from ``numpy.random.default_rng(seed)`` (one permutation per epoch); the model's
initial weights come from whoever built it (``npcam.zoo.build(name, rng=seed)``). The same
call on the same machine (same NumPy, BLAS and thread count) gives bit-identical weights.

**Modes.** Layers train in ``model.train()`` mode (only ``BatchNorm2d`` cares: batch
statistics, running statistics updated) and are evaluated in ``model.eval()`` mode; a
frozen layer (``freeze=``) stays in eval mode during training so that its running
statistics do not move either.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from ._validate import as_float_array, as_positive_int, describe
from .nn import layers
from .nn.functional import softmax_cross_entropy
from .nn.sequential import Sequential

__all__ = [
    "Adam",
    "History",
    "cosine_schedule",
    "evaluate_accuracy",
    "fit",
    "predict_logits",
]


# ---------------------------------------------------------------------------------- Adam
class Adam:
    r"""Adam (Kingma & Ba 2015) with bias correction and optional decoupled weight decay.

    For every parameter θ with gradient ``g_t = ∂L/∂θ`` at step ``t = 1, 2, ...``::

        m_t = β1 · m_{t−1} + (1 − β1) · g_t            (first moment,  m_0 = 0)
        v_t = β2 · v_{t−1} + (1 − β2) · g_t²           (second moment, v_0 = 0)
        m̂_t = m_t / (1 − β1^t),   v̂_t = v_t / (1 − β2^t)   (bias correction)
        θ_t = θ_{t−1} − lr_t · ( m̂_t / (sqrt(v̂_t) + ε) + λ · θ_{t−1} )

    The last term is *decoupled* weight decay (AdamW, Loshchilov & Hutter 2019): it is not
    part of g, so it is not rescaled by ``sqrt(v̂)``. It applies only to parameters with
    two or more axes (conv and linear weights), never to biases or BatchNorm's γ, β.

    Because ``m̂_1 = g_1`` and ``v̂_1 = g_1²``, the first step is
    ``lr · g_1/(|g_1| + ε) ≈ lr · sign(g_1)`` whatever the scale of the gradient.

    State (``m``, ``v``, the step count ``t``) is kept per parameter name; parameters are
    updated in place, so the arrays a model holds keep being the ones it uses.
    """

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        self.lr = _nonnegative("lr", lr)
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ValueError(f"betas must be a pair of numbers in [0, 1), got {betas!r}.")
        for b in betas:
            if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 <= b < 1:
                raise ValueError(f"betas must be a pair of numbers in [0, 1), got {betas!r}.")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = _positive("eps", eps)
        self.weight_decay = _nonnegative("weight_decay", weight_decay)
        self.t = 0
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}

    def step(
        self,
        params: Mapping[str, np.ndarray],
        grads: Mapping[str, np.ndarray],
        lr: float | None = None,
    ) -> None:
        """One update of every parameter in ``params`` (in place) from ``grads``.

        ``lr`` overrides ``self.lr`` for this step (a schedule's ``lr_t``). Every name in
        ``params`` needs a gradient of the same shape in ``grads``.
        """
        lr = self.lr if lr is None else _nonnegative("lr", lr)
        for name, p in params.items():
            if name not in grads:
                raise ValueError(f"grads has no gradient for parameter {name!r}.")
            if grads[name].shape != p.shape:
                raise ValueError(
                    f"grads[{name!r}] must have the parameter's shape {p.shape}, "
                    f"got {grads[name].shape}."
                )
        self.t += 1
        b1, b2 = self.betas
        c1, c2 = 1.0 - b1**self.t, 1.0 - b2**self.t
        for name, p in params.items():
            g = grads[name]
            m = self.m.setdefault(name, np.zeros_like(p))
            v = self.v.setdefault(name, np.zeros_like(p))
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * (g * g)
            update = (m / c1) / (np.sqrt(v / c2) + self.eps)
            if self.weight_decay and p.ndim >= 2:
                update += self.weight_decay * p
            p -= lr * update


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}.")
    return float(value)


def _nonnegative(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
    return float(value)


# ------------------------------------------------------------------------------ schedule
def cosine_schedule(
    step: int, *, base_lr: float, total_steps: int, warmup_steps: int = 0, min_lr: float = 0.0
) -> float:
    r"""Learning rate at (0-based) ``step``: linear warm-up, then cosine decay.

    With ``W = warmup_steps`` and ``T = total_steps``::

        lr(t) = base_lr · (t + 1)/W                                     for t < W
        lr(t) = min_lr + (base_lr − min_lr) · (1 + cos(π · (t − W)/(T − W)))/2   for t ≥ W

    so the warm-up reaches ``base_lr`` at its last step ``t = W − 1``, the decay starts at
    ``base_lr`` (t = W) and would reach ``min_lr`` at ``t = T``; the last step taken,
    ``t = T − 1``, is just above it. Steps past T stay at ``min_lr``.
    """
    step = as_positive_int("step", step, minimum=0)
    total_steps = as_positive_int("total_steps", total_steps)
    warmup_steps = as_positive_int("warmup_steps", warmup_steps, minimum=0)
    if warmup_steps > total_steps:
        raise ValueError(
            f"warmup_steps must be <= total_steps = {total_steps}, got {warmup_steps}."
        )
    base_lr, min_lr = _nonnegative("base_lr", base_lr), _nonnegative("min_lr", min_lr)
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


# ---------------------------------------------------------------------------- evaluation
def predict_logits(model: Sequential, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The model's outputs for ``images`` in eval mode, ``batch_size`` images at a time.

    Works for any input rank (images, or cached feature maps for a head). The model's
    previous mode is restored afterwards.
    """
    model = _check_model(model)
    x = as_float_array("images", images, finite=True)
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"images must be a non-empty batch (N, ...), got shape {x.shape}.")
    batch_size = as_positive_int("batch_size", batch_size)
    modes = _modes(model)
    model.eval()
    try:
        outs = [model.forward(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    finally:
        _restore(model, modes)
    return np.concatenate(outs, axis=0)


def evaluate_accuracy(
    model: Sequential, images: np.ndarray, labels: np.ndarray, batch_size: int = 256
) -> float:
    """Fraction of ``images`` whose highest logit is at their label (eval mode)."""
    logits = predict_logits(model, images, batch_size)
    t = _check_labels(labels, logits.shape[0], logits.shape[1])
    return float(np.mean(logits.argmax(axis=1) == t))


# ------------------------------------------------------------------------------ training
@dataclass
class History:
    """What :func:`fit` measured, one entry per epoch.

    ``loss`` is the mean training loss over the epoch's batches and ``train_acc`` the
    accuracy on those batches as they were seen (train mode, before each batch's step);
    ``test_acc`` is measured in eval mode after the epoch (None without a test set);
    ``lr`` is the learning rate of the epoch's last step; ``seconds`` the wall time of
    the epoch (training and evaluation).
    """

    loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_acc: list[float | None] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    steps: int = 0
    image_passes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "loss": self.loss,
            "train_acc": self.train_acc,
            "test_acc": self.test_acc,
            "lr": self.lr,
            "seconds": self.seconds,
            "steps": self.steps,
            "image_passes": self.image_passes,
        }


def fit(
    model: Sequential,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 3e-3,
    warmup: float = 0.05,
    min_lr: float = 0.0,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    seed: int = 0,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    freeze: Iterable[str] = (),
    quiet: bool = False,
    log: Callable[[str], Any] | None = print,
    progress_stream: TextIO | None = None,
) -> History:
    r"""Train ``model`` in place by minibatch Adam on softmax cross-entropy.

    Each epoch visits the N examples in a fresh random order (``default_rng(seed)``), in
    ``ceil(N / batch_size)`` batches (the last one may be smaller). The learning rate of
    step t follows :func:`cosine_schedule` over ``T = epochs · ceil(N / batch_size)``
    steps with ``W = round(warmup · T)`` warm-up steps when ``warmup < 1`` (a fraction),
    or ``W = warmup`` steps when it is an int ≥ 1. Adam is :class:`Adam`.

    Parameters
    ----------
    model : the network; its outputs are the logits (N, C).
    images : (N, ...) inputs as the model expects them (already standardised); any rank,
        so cached feature maps can train a head alone.
    labels : (N,) ints in [0, C).
    freeze : layer names or name prefixes (``"features"`` freezes ``features.0``,
        ``features.1``, ...) whose parameters are not updated; those layers stay in eval
        mode, and the backward pass stops below the lowest trainable layer.
    test : optional ``(images, labels)`` evaluated after every epoch.
    quiet : no progress bar. The bar (plain text with ``\r`` on stderr, or
        ``progress_stream``) is shown only when that stream is a terminal.
    log : called with one summary line per epoch (loss, train acc, test acc, seconds);
        None for silence.

    Returns a :class:`History`. The model is left in eval mode.
    """
    model = _check_model(model)
    x = as_float_array("images", images, finite=True)
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"images must be a non-empty batch (N, ...), got shape {x.shape}.")
    n = x.shape[0]
    epochs = as_positive_int("epochs", epochs)
    batch_size = as_positive_int("batch_size", batch_size)
    seed = as_positive_int("seed", seed, minimum=0)
    steps_per_epoch = -(-n // batch_size)
    total = epochs * steps_per_epoch
    warmup_steps = _warmup_steps(warmup, total)
    adam = Adam(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    base_lr = adam.lr
    if log is not None and not callable(log):
        raise TypeError(f"log must be a callable or None, got {describe(log)}.")

    leaves = model.named_layers()
    frozen = _frozen_leaves(leaves, freeze)
    trainable = [i for i, (name, leaf) in enumerate(leaves) if name not in frozen and leaf.params()]
    if not trainable:
        raise ValueError("the model has no trainable parameters left after freeze.")
    # The input gradient is never needed: stop at the output of the leaf just below the
    # lowest trainable one (None: go all the way down).
    stop = leaves[trainable[0] - 1][0] if trainable[0] > 0 else None

    # One forward to learn the number of classes and to validate shapes before training.
    model.eval()
    num_classes = _num_classes(model, x[:1])
    t = _check_labels(labels, n, num_classes)
    if test is not None:
        if not (isinstance(test, (tuple, list)) and len(test) == 2):
            raise TypeError(f"test must be a pair (images, labels), got {describe(test)}.")
        x_test = as_float_array("test images", test[0], finite=True)
        t_test = _check_labels(test[1], x_test.shape[0], num_classes, name="test labels")

    rng = np.random.default_rng(seed)
    stream = sys.stderr if progress_stream is None else progress_stream
    bar = _ProgressBar(stream, enabled=not quiet and _isatty(stream))
    history = History()
    step = 0
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        _set_modes(model, leaves, frozen)
        order = rng.permutation(n)
        loss_sum, correct = 0.0, 0
        lr_t = base_lr
        for b in range(steps_per_epoch):
            idx = order[b * batch_size : (b + 1) * batch_size]
            try:
                trace = model.run(x[idx])
                logits = trace.output
                with np.errstate(all="ignore"):
                    loss, dlogits = softmax_cross_entropy(logits, t[idx])
                if not math.isfinite(loss):
                    raise ValueError("the loss is not finite")
                grads = model.vjp(trace, dlogits, to=stop, param_grads=True).param_grads or {}
            except ValueError as exc:
                if "overflowed" not in str(exc) and "loss is not finite" not in str(exc):
                    raise
                raise ValueError(
                    f"training diverged at epoch {epoch}, step {b + 1} (lr {lr_t:.3g}): {exc}; "
                    "try a smaller learning rate."
                ) from None
            lr_t = cosine_schedule(
                step, base_lr=base_lr, total_steps=total, warmup_steps=warmup_steps, min_lr=min_lr
            )
            params = {name: p for name, p in model.named_parameters() if name.rsplit(".", 1)[0] not in frozen}
            with np.errstate(all="ignore"):
                adam.step(params, grads, lr=lr_t)
            step += 1
            loss_sum += loss * idx.size
            correct += int(np.sum(logits.argmax(axis=1) == t[idx]))
            bar.update(epoch, epochs, b + 1, steps_per_epoch, loss_sum / min(n, (b + 1) * batch_size))
        bar.clear()
        model.eval()
        test_acc = evaluate_accuracy(model, x_test, t_test) if test is not None else None
        seconds = time.perf_counter() - start
        history.loss.append(loss_sum / n)
        history.train_acc.append(correct / n)
        history.test_acc.append(test_acc)
        history.lr.append(lr_t)
        history.seconds.append(seconds)
        history.steps = step
        history.image_passes += n
        if log is not None:
            log(_summary(epoch, epochs, history))
    model.eval()
    return history


def _summary(epoch: int, epochs: int, h: History) -> str:
    width = len(str(epochs))
    test = "" if h.test_acc[-1] is None else f"  test acc {h.test_acc[-1]:.4f}"
    return (
        f"epoch {epoch:>{width}}/{epochs}  loss {h.loss[-1]:.4f}  train acc {h.train_acc[-1]:.4f}"
        f"{test}  lr {h.lr[-1]:.2e}  {h.seconds[-1]:.1f} s"
    )


def _warmup_steps(warmup: Any, total: int) -> int:
    if isinstance(warmup, (bool, np.bool_)) or not isinstance(
        warmup, (int, float, np.integer, np.floating)
    ):
        raise TypeError(
            f"warmup must be a fraction in [0, 1) or an int number of steps, got {describe(warmup)}."
        )
    if isinstance(warmup, (int, np.integer)) and warmup >= 1:
        if warmup > total:
            raise ValueError(f"warmup must be at most the {total} training steps, got {int(warmup)}.")
        return int(warmup)
    if not 0 <= warmup < 1:
        raise ValueError(f"warmup must be a fraction in [0, 1) or an int number of steps, got {warmup!r}.")
    return int(round(float(warmup) * total))


def _check_model(model: Any) -> Sequential:
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be an npcam.Sequential, got {describe(model)}.")
    return model


def _check_labels(labels: Any, n: int, num_classes: int, name: str = "labels") -> np.ndarray:
    arr = np.asarray(labels)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an array of integer class indices, got dtype {arr.dtype}.")
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), one per image, got {arr.shape}.")
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(
            f"{name} must be in [0, {num_classes}), got values from {int(arr.min())} to {int(arr.max())}."
        )
    return arr.astype(np.int64)


def _num_classes(model: Sequential, x1: np.ndarray) -> int:
    out = model.forward(x1)
    if out.ndim != 2:
        raise ValueError(f"the model must output logits of shape (N, C), got shape {out.shape}.")
    return int(out.shape[1])


def _frozen_leaves(leaves: Sequence[tuple[str, layers.Layer]], freeze: Iterable[str]) -> set[str]:
    if isinstance(freeze, str):
        freeze = (freeze,)
    names = [leaf for leaf, _ in leaves]
    modules = set(names)
    for name in names:  # containers too
        parts = name.split(".")
        modules.update(".".join(parts[:k]) for k in range(1, len(parts)))
    frozen: set[str] = set()
    for prefix in freeze:
        if not isinstance(prefix, str):
            raise TypeError(f"freeze must hold layer names (str), got {describe(prefix)}.")
        if prefix not in modules:
            raise ValueError(f"freeze names layer {prefix!r}, which is not in the model.")
        frozen.update(n for n in names if n == prefix or n.startswith(prefix + "."))
    return frozen


def _set_modes(model: Sequential, leaves: Sequence[tuple[str, layers.Layer]], frozen: set[str]) -> None:
    model.train()
    for name, leaf in leaves:
        if name in frozen:
            leaf.training = False


def _modes(model: Sequential) -> list[tuple[layers.Layer | Sequential, bool]]:
    return [(model, model.training)] + [(leaf, leaf.training) for _, leaf in model.named_layers()]


def _restore(model: Sequential, modes: list[tuple[layers.Layer | Sequential, bool]]) -> None:
    for layer, mode in modes:
        layer.training = mode


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class _ProgressBar:
    """``epoch 3/12 [########............]  40/188  loss 0.5321`` redrawn with ``\\r``."""

    def __init__(self, stream: TextIO, enabled: bool, width: int = 24) -> None:
        self.stream, self.enabled, self.width = stream, enabled, width
        self._last = 0.0
        self._length = 0

    def update(self, epoch: int, epochs: int, done: int, total: int, loss: float) -> None:
        self.draw(f"epoch {epoch}/{epochs}", done, total, f"  loss {loss:.4f}")

    def draw(self, label: str, done: int, total: int, suffix: str = "") -> None:
        """``label [#####.....] done/total suffix``, at most every 0.1 s (always at the end);
        also the bar of :class:`npcam._progress.Progress`."""
        if not self.enabled:
            return
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        filled = self.width * done // total
        text = (
            f"{label} [{'#' * filled}{'.' * (self.width - filled)}] "
            f"{done:>{len(str(total))}}/{total}{suffix}"
        )
        self._length = max(self._length, len(text))
        self.stream.write("\r" + text)
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled and self._length:
            self.stream.write("\r" + " " * self._length + "\r")
            self.stream.flush()
            self._length = 0
