r"""Small architectures by name, how they are trained, and the shipped pretrained weights.

Two architectures share one convolutional trunk and differ in their head::

    trunk ("features"):  conv3×3(3→16)  BN ReLU  maxpool2        64×64 → 32×32
                         conv3×3(16→32) BN ReLU  maxpool2        32×32 → 16×16
                         conv3×3(32→64) BN ReLU  maxpool2        16×16 →  8×8
                         conv3×3(64→64) BN ReLU                  A: (N, 64, 8, 8)
    "gap" classifier:    GlobalAvgPool2d → Linear(64, 4)         CAM applies exactly
    "vgg" classifier:    MaxPool2d(2) → Flatten → Linear(1024, 64) → ReLU → Linear(64, 4)
                                                                 CAM does not; Grad-CAM does

(padding 1 everywhere). The third max-pool is what makes "gap" learnable quickly: it
widens the receptive field of the last conv from 26 to 38 px, more than the largest
objects (14–30 px), and leaves Z = h·w = 64 positions, so the maps stay informative.
Without it the same recipe sat near chance for 16k image passes and reached 75 % after
32k (see ``benchmarks/train_log.md``).
Layer names follow ``torch.nn.Sequential``: ``features.0`` … ``features.14`` and
``classifier.0`` …, so a PyTorch model built the same way has the same ``state_dict`` keys.

Training (see :func:`train_architecture` and ``benchmarks/train_log.md``): "gap" is trained
end to end by :func:`npcam.train.fit` on ``make_scenes(n_train, seed=TRAIN_DATA_SEED)``,
inputs standardised per channel with the training set's mean and std; "vgg" takes the
*trained trunk of "gap"* unchanged and trains only its head, on the trunk's cached
features. Both are scored on the fixed held-out split ``make_scenes(2000,
seed=TEST_DATA_SEED)``.

**Shipped weights.** ``npcam/zoo/weights/{name}.npz`` holds the model as trained (with its
BatchNorm layers), written by :func:`save`: the ``state_dict`` arrays, the architecture
JSON under ``__architecture__`` and a JSON metadata string under ``__metadata__`` (input
size, class names, mean/std, accuracies, training settings, the command that reproduces
the file). No object arrays: everything loads with ``allow_pickle=False``.

:func:`pretrained` returns the model in eval mode **with BatchNorm folded** into the
preceding convolutions (:func:`npcam.fold_batchnorm`): a plain conv net, so explanations
see only Conv2d, ReLU, pooling and Linear layers. Folding removes the BN layers' names
(``features.1``, ``.5``, ``.9``, ``.13``); every conv, ReLU and container name keeps meaning the
same feature maps. ``pretrained(name, fold=False)`` keeps the BN layers (in eval mode).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._validate import as_positive_int, describe
from ..evaluation import scenes as data
from ..nn import layers
from ..nn.fold import fold_batchnorm
from ..nn.io import ARCHITECTURE_KEY, MAX_FILE_BYTES, NpzArchive, read_model, write_npz
from ..nn.sequential import Sequential

__all__ = [
    "ARCHITECTURES",
    "METADATA_KEY",
    "NAMES",
    "RECIPES",
    "TEST_DATA_SEED",
    "TRAIN_DATA_SEED",
    "WEIGHTS_DIR",
    "build",
    "info",
    "load",
    "pretrained",
    "save",
    "standardize",
    "train_architecture",
    "weights_path",
]

#: Key of the JSON metadata string inside a zoo ``.npz``.
METADATA_KEY = "__metadata__"
#: Directory of the shipped weights.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: Seeds of the training scenes and of the fixed held-out test split.
TRAIN_DATA_SEED = 0
TEST_DATA_SEED = 12345

#: Architecture name → one-line description.
ARCHITECTURES: dict[str, str] = {
    "gap": "conv trunk (4× conv3×3+BN+ReLU, 3 max-pools) -> GlobalAvgPool2d -> Linear: CAM applies",
    "vgg": "the same trunk -> MaxPool2d -> Flatten -> Linear -> ReLU -> Linear: Grad-CAM only",
}

#: The architecture names, in a fixed order.
NAMES: tuple[str, ...] = tuple(ARCHITECTURES)

_HIDDEN = 64  # width of the vgg head's hidden layer


def _check_name(name: Any) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be an architecture name (str), got {describe(name)}.")
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model name {name!r}; the zoo has {sorted(ARCHITECTURES)}.")
    return name


def _trunk(gen: np.random.Generator) -> Sequential:
    def block(c_in: int, c_out: int) -> list[layers.Layer]:
        return [layers.Conv2d(c_in, c_out, 3, padding=1, rng=gen), layers.BatchNorm2d(c_out), layers.ReLU()]

    return Sequential(
        *block(3, 16), layers.MaxPool2d(2),
        *block(16, 32), layers.MaxPool2d(2),
        *block(32, 64), layers.MaxPool2d(2),
        *block(64, 64),
    )  # fmt: skip


def build(
    name: str, rng: np.random.Generator | int | None = None, size: int = 64, num_classes: int = 4
) -> Sequential:
    """A freshly initialised zoo architecture (BatchNorm layers included, eval mode).

    ``rng`` (a Generator or an int seed) draws the initial weights, trunk first, so the
    same seed gives "gap" and "vgg" the same initial trunk. ``size`` is the input side
    in pixels (the "vgg" head's first Linear depends on it; it must be a multiple of 16).
    """
    name = _check_name(name)
    size = as_positive_int("size", size, minimum=16)
    if size % 16:
        raise ValueError(f"size must be a multiple of 16, got {size}.")
    num_classes = as_positive_int("num_classes", num_classes, minimum=2)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    features = _trunk(gen)
    if name == "gap":
        classifier = Sequential(layers.GlobalAvgPool2d(), layers.Linear(64, num_classes, rng=gen))
    else:
        flat = 64 * (size // 16) ** 2
        classifier = Sequential(
            layers.MaxPool2d(2), layers.Flatten(), layers.Linear(flat, _HIDDEN, rng=gen), layers.ReLU(),
            layers.Linear(_HIDDEN, num_classes, rng=gen),
        )  # fmt: skip
    return Sequential(features=features, classifier=classifier)


# -------------------------------------------------------------------------- .npz files
def save(model: Sequential, path: str | os.PathLike, metadata: Mapping[str, Any]) -> None:
    """Write a zoo ``.npz``: ``model`` as :meth:`Sequential.save` writes it plus metadata.

    Parameters
    ----------
    model : Sequential
        Its ``state_dict()`` arrays and ``config()`` (JSON under ``__architecture__``).
    path : str or os.PathLike
        The file, used as given (no ``.npz`` appended). It is written atomically
        (:func:`npcam.nn.io.write_npz`): a failure or a concurrent writer never leaves a
        partial file.
    metadata : mapping
        JSON-able; stored as one JSON string under ``__metadata__``. No object arrays.
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be an npcam.Sequential, got {describe(model)}.")
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping, got {describe(metadata)}.")
    arrays: dict[str, Any] = model.state_dict()
    arrays[ARCHITECTURE_KEY] = np.array(json.dumps(model.config()))
    arrays[METADATA_KEY] = np.array(json.dumps(dict(metadata), sort_keys=True))
    write_npz(path, arrays)


def load(path: str | os.PathLike, *, max_bytes: int = MAX_FILE_BYTES) -> tuple[Sequential, dict[str, Any]]:
    """Read a zoo ``.npz`` (as written by :func:`save`): ``(model, metadata)``.

    ``__architecture__`` and ``__metadata__`` are read and validated first, then the
    parameter shapes the architecture implies are compared with the ``.npy`` headers,
    and only then are the arrays read (see :mod:`npcam.nn.io`). Never unpickles.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    max_bytes : int, optional
        Cap on the file's size and inflated size (default
        :data:`npcam.nn.io.MAX_FILE_BYTES`).

    Returns
    -------
    (Sequential, dict)
        The model exactly as saved (BatchNorm layers kept), in eval mode, and the metadata.

    Raises
    ------
    TypeError, FileNotFoundError, ValueError
        A path that is not a path, a missing file, anything wrong with the file (named).
    """
    with NpzArchive(path, max_bytes=max_bytes) as archive:
        for key in (ARCHITECTURE_KEY, METADATA_KEY):
            header = archive.headers.get(key)
            if header is None or header.dtype.kind != "U" or header.shape != ():
                raise ValueError(f"{archive.label} must hold a JSON string under {key!r}.")
        config = archive.read_json(ARCHITECTURE_KEY)
        metadata = archive.read_json(METADATA_KEY)
        if not (isinstance(config, Mapping) and config.get("type") == "Sequential"):
            raise ValueError(f"{archive.label} must describe a Sequential model, got {describe(config)}.")
        if not isinstance(metadata, dict):
            raise ValueError(f"{archive.label} must hold a metadata dict, got {describe(metadata)}.")
        model = read_model(archive, config)
    model.eval()
    return model, metadata


def weights_path(name: str) -> Path:
    """Where the shipped weights of architecture ``name`` live."""
    return WEIGHTS_DIR / f"{_check_name(name)}.npz"


def _shipped(name: str) -> tuple[Sequential, dict[str, Any]]:
    path = weights_path(name)
    if not path.exists():
        raise ValueError(
            f"no shipped weights for model {name!r} ({path} is missing); "
            f"train them with: npcam train --arch {name} --out {path}"
        )
    return load(path)


def pretrained(name: str, fold: bool = True) -> Sequential:
    """The shipped model ``name`` in eval mode, float64; BatchNorm folded unless ``fold``
    is False. Its inputs must be standardised with ``info(name)["mean"]``/``["std"]``."""
    model, _ = _shipped(_check_name(name))
    if not isinstance(fold, (bool, np.bool_)):
        raise TypeError(f"fold must be a bool, got {describe(fold)}.")
    return fold_batchnorm(model).eval() if fold else model


def standardize(name: str, images: Any) -> np.ndarray:
    """Images (N, 3, H, W) in [0, 1] standardised as model ``name`` expects: per channel
    with the training set's ``info(name)["mean"]`` and ``["std"]``."""
    meta = info(name)
    return data.standardize(images, meta["mean"], meta["std"])[0]


def info(name: str) -> dict[str, Any]:
    """What the shipped model ``name`` expects and how it was made.

    Keys: ``input_size`` [H, W] and ``channels`` (3, RGB); ``class_names``; ``mean`` and ``std`` (per channel:
    inputs are ``(image − mean)/std`` with images in [0, 1]); ``train_accuracy`` and
    ``test_accuracy`` (the test split is ``make_scenes(n_test, seed=test_data_seed)``);
    ``training`` (the settings); ``command`` (the ``npcam train`` line that rebuilds the
    file); and more (see the file's metadata).
    """
    _, metadata = _shipped(_check_name(name))
    return metadata




def __getattr__(name: str) -> Any:
    # The training recipes import npcam.train, which needs nothing of this module at import
    # time; loading them lazily keeps ``import npcam.zoo`` light and free of cycles.
    if name in ("RECIPES", "train_architecture"):
        from . import recipes

        return getattr(recipes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
