"""``npcam train``: train a zoo architecture on synthetic scenes and save it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .. import zoo
from . import CliError

__all__ = ["register"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``npcam train`` to the ``npcam`` command."""
    p = subparsers.add_parser(
        "train",
        help="train a zoo architecture on synthetic scenes and save it (.npz)",
        description=(
            "Train a zoo architecture on npcam.evaluation.scenes.make_scenes and save it as an .npz "
            "(architecture JSON, weights and metadata). 'gap' trains the whole network; "
            "'vgg' trains its head on the frozen trunk of a trained 'gap' model (--trunk)."
        ),
    )
    p.add_argument("--arch", required=True, choices=sorted(zoo.ARCHITECTURES), help="architecture name")
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the recipe's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the batch order")
    p.add_argument("--n-train", type=int, default=None, help="number of training scenes")
    p.add_argument("--n-test", type=int, default=None, help="number of held-out test scenes")
    p.add_argument("--size", type=int, default=None, help="image side in pixels (default 64)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="peak learning rate")
    p.add_argument(
        "--trunk",
        default=None,
        help="for heads on a frozen trunk ('vgg'): the trained 'gap' .npz whose trunk to use "
        "(default: the shipped 'gap' weights)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar and no epoch lines")
    p.set_defaults(func=_cmd_train)
    return p


def _cmd_train(args: argparse.Namespace) -> int:
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder):  # fail now, not after the training
        raise CliError(f"--out must be in an existing directory, got {args.out!r}.")

    overrides = {
        key: value
        for key, value in (
            ("epochs", args.epochs),
            ("n_train", args.n_train),
            ("n_test", args.n_test),
            ("size", args.size),
            ("batch_size", args.batch_size),
            ("lr", args.lr),
        )
        if value is not None
    }
    log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    model, meta = zoo.train_architecture(
        args.arch, seed=args.seed, trunk=args.trunk, quiet=args.quiet, log=log, **overrides
    )
    zoo.save(model, args.out, meta)
    summary = {k: meta[k] for k in ("arch", "train_accuracy", "test_accuracy", "seconds") if k in meta}
    print(f"saved {args.out}: {json.dumps(summary)}")
    return 0
