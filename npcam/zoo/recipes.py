"""How the shipped models are trained: the recipes and :func:`train_architecture`."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .._validate import as_positive_int
from ..evaluation import scenes as data
from ..nn.layers import Layer
from ..nn.sequential import Sequential
from ..train import evaluate_accuracy, fit, predict_logits
from . import ARCHITECTURES, TEST_DATA_SEED, TRAIN_DATA_SEED, _check_name, _shipped, build, load

__all__ = ["RECIPES", "train_architecture"]

#: Default training settings per architecture (``train_architecture`` and ``npcam train``).
RECIPES: dict[str, dict[str, Any]] = {
    "gap": {
        "epochs": 3, "n_train": 8000, "n_test": 2000, "size": 64, "batch_size": 64,
        "lr": 3e-3, "warmup": 0.05, "min_lr": 0.0, "weight_decay": 0.0,
    },
    "vgg": {
        "epochs": 10, "n_train": 8000, "n_test": 2000, "size": 64, "batch_size": 64,
        "lr": 1e-3, "warmup": 0.05, "min_lr": 0.0, "weight_decay": 0.0,
    },
}  # fmt: skip


def _scenes(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    s = data.make_scenes(n, size=size, seed=seed)
    return s.images, s.labels, s.class_names


def _scenes_call(n: int, size: int, seed: int) -> str:
    return f"npcam.evaluation.scenes.make_scenes({n}, size={size}, seed={seed})"


def train_architecture(
    name: str,
    *,
    seed: int = 0,
    trunk: str | os.PathLike | None = None,
    quiet: bool = False,
    log: Callable[[str], Any] | None = print,
    **overrides: Any,
) -> tuple[Sequential, dict[str, Any]]:
    """Train architecture ``name`` with its recipe (``RECIPES[name]``, any key overridden
    by keyword) on synthetic scenes; returns ``(model, metadata)`` for :func:`save`.

    * "gap": ``build("gap", rng=seed)`` trained end to end by :func:`npcam.train.fit`
      (batch order from ``seed`` too).
    * "vgg": the trunk (``features``) of the "gap" model in ``trunk`` (a path; default
      the shipped "gap" weights) is copied unchanged into ``build("vgg", rng=seed)``;
      the trunk and the head's max-pool run once over the data (eval mode), and only
      the Linear layers are trained, on these cached features.
    """
    name = _check_name(name)
    unknown = sorted(set(overrides) - set(RECIPES[name]))
    if unknown:
        raise ValueError(f"unknown training setting(s) {unknown}; known: {sorted(RECIPES[name])}.")
    cfg = {**RECIPES[name], **overrides}
    for key in ("epochs", "n_train", "n_test", "size", "batch_size"):
        cfg[key] = as_positive_int(key, cfg[key])
    seed = as_positive_int("seed", seed, minimum=0)
    start = time.perf_counter()

    say = log if log is not None else (lambda line: None)
    if name == "gap" and trunk is not None:
        raise ValueError("trunk applies only to 'vgg' (a head on a frozen trunk), got one for 'gap'.")
    if name != "gap":
        source, source_meta = _shipped("gap") if trunk is None else load(trunk)
        if "features" not in source.children or "mean" not in source_meta:
            raise ValueError("trunk must be a zoo 'gap' model file with a 'features' trunk and its mean/std.")
    x_train, y_train, class_names = _scenes(cfg["n_train"], cfg["size"], TRAIN_DATA_SEED)
    x_test, y_test, _ = _scenes(cfg["n_test"], cfg["size"], TEST_DATA_SEED)
    if name == "gap":
        x_train, mean, std = data.standardize(x_train)
    else:
        # The trunk was trained on inputs standardised with its own statistics: keep them.
        mean, std = np.asarray(source_meta["mean"]), np.asarray(source_meta["std"])
        x_train, _, _ = data.standardize(x_train, mean, std)
    x_test, _, _ = data.standardize(x_test, mean, std)
    fit_kwargs = {
        k: cfg[k] for k in ("epochs", "batch_size", "lr", "warmup", "min_lr", "weight_decay")
    }
    model = build(name, rng=seed, size=cfg["size"], num_classes=len(class_names))
    trunk_info: dict[str, Any] = {}
    if name == "gap":
        say(f"training 'gap' end to end on {cfg['n_train']} scenes of {cfg['size']}x{cfg['size']}")
        history = fit(
            model, x_train, y_train, seed=seed, test=(x_test, y_test), quiet=quiet, log=log,
            **fit_kwargs,
        )
    else:
        trunk_info = {
            "trunk": "the shipped gap model" if trunk is None else os.fspath(trunk),
            "trunk_command": source_meta.get("command"),
        }
        features, head = model.children["features"], model.children["classifier"]
        assert isinstance(features, Sequential) and isinstance(head, Sequential)  # build()'s layout
        source_features = source.children["features"]
        assert isinstance(source_features, Sequential)  # checked above: a zoo gap model
        features.load_state_dict(source_features.state_dict())
        leaves = list(head.children.items())
        # Cache everything up to the first layer with parameters (the trunk, max-pool, ...).
        first = next(i for i, (_, leaf) in enumerate(leaves) if isinstance(leaf, Layer) and leaf.params())
        frozen = Sequential({"features": features, **dict(leaves[:first])})
        trainable = Sequential(dict(leaves[first:]))
        say(f"caching the frozen trunk's features of {cfg['n_train'] + cfg['n_test']} scenes")
        f_train = predict_logits(frozen, x_train)
        f_test = predict_logits(frozen, x_test)
        say(f"training the 'vgg' head on cached features, shape {f_train.shape[1:]}")
        history = fit(
            trainable, f_train, y_train, seed=seed, test=(f_test, y_test), quiet=quiet, log=log,
            **fit_kwargs,
        )
    model.eval()
    if name == "gap":
        train_acc = evaluate_accuracy(model, x_train, y_train)
        test_acc = evaluate_accuracy(model, x_test, y_test)
    else:  # the same numbers as through the whole model, without running the trunk again
        train_acc = evaluate_accuracy(trainable, f_train, y_train)
        test_acc = evaluate_accuracy(trainable, f_test, y_test)
    seconds = time.perf_counter() - start
    say(f"final: train acc {train_acc:.4f}  test acc {test_acc:.4f}  ({seconds:.0f} s)")
    command = f"npcam train --arch {name} --out {name}.npz --seed {seed}"
    defaults = RECIPES[name]
    for key in ("epochs", "n_train", "n_test", "size", "batch_size", "lr"):
        if cfg[key] != defaults[key]:
            command += f" --{key.replace('_', '-')} {cfg[key]}"
    if trunk is not None:
        command += f" --trunk {os.fspath(trunk)}"
    metadata = {
        "arch": name,
        "description": ARCHITECTURES[name],
        "input_size": [cfg["size"], cfg["size"]],
        "channels": 3,
        "class_names": list(class_names),
        "mean": mean.tolist(),
        "std": std.tolist(),
        "train_accuracy": train_acc,
        "test_accuracy": test_acc,
        "train_data": _scenes_call(cfg["n_train"], cfg["size"], TRAIN_DATA_SEED),
        "test_data": _scenes_call(cfg["n_test"], cfg["size"], TEST_DATA_SEED),
        "train_data_seed": TRAIN_DATA_SEED,
        "test_data_seed": TEST_DATA_SEED,
        "seed": seed,
        "training": {
            **cfg,
            "optimizer": "Adam(betas=(0.9, 0.999), eps=1e-8)",
            "schedule": "linear warm-up + cosine decay",
        },
        "history": history.as_dict(),
        "seconds": seconds,
        "command": command,
        "folded_by_pretrained": True,
        **trunk_info,
    }
    return model, metadata
