"""``npcam train``: train a zoo architecture on synthetic scenes and save it."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any

from .. import zoo
from . import CliError

__all__ = ["MAX_SCENES", "MAX_SIZE", "register"]

#: Bound on ``--n-train`` and ``--n-test``: scenes are held in memory as float64, about
#: 0.1 MB each at 64x64 (plus a standardised copy), so 100000 scenes take about 20 GB.
MAX_SCENES = 100_000
#: Bound on ``--size`` (pixels per side); with a larger side the scene bound shrinks so
#: that ``n * size**2 <= MAX_SCENES * 64**2`` (the same memory as MAX_SCENES at 64x64).
MAX_SIZE = 256


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
    p.add_argument(
        "--n-train", type=int, default=None,
        help=f"number of training scenes, 1 to {MAX_SCENES} (about 0.2 MB of memory each at 64x64)",
    )
    p.add_argument(
        "--n-test", type=int, default=None, help=f"number of held-out test scenes, 1 to {MAX_SCENES}"
    )
    p.add_argument(
        "--size", type=int, default=None,
        help=f"image side in pixels, a multiple of 16 from 16 to {MAX_SIZE} (default 64)",
    )
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


def _check_out(out: str, arch: str) -> None:
    """Fail now, not after the training: --out must name a file in a writable folder."""
    if os.path.isdir(out):
        raise CliError(
            f"--out must be the .npz file to write, got the directory {out!r} "
            f"(e.g. --out {os.path.join(out, arch + '.npz')})."
        )
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise CliError(f"--out must be in an existing directory, got {out!r}.")
    try:  # os.access is not enough (root, ACLs, read-only mounts): try it
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise CliError(
            f"--out {out!r} cannot be written: its folder {folder!r} refuses new files ({exc})."
        ) from exc


def _check_sizes(args: argparse.Namespace) -> None:
    for flag, value in (("--n-train", args.n_train), ("--n-test", args.n_test)):
        if value is not None and not 1 <= value <= MAX_SCENES:
            raise CliError(f"{flag} must be a number of scenes from 1 to {MAX_SCENES}, got {value}.")
    if args.size is not None and not (16 <= args.size <= MAX_SIZE and args.size % 16 == 0):
        raise CliError(f"--size must be a multiple of 16 from 16 to {MAX_SIZE} pixels, got {args.size}.")
    size = args.size if args.size is not None else 64
    for flag, value in (("--n-train", args.n_train), ("--n-test", args.n_test)):
        if value is not None and value * size**2 > MAX_SCENES * 64**2:
            limit = MAX_SCENES * 64**2 // size**2
            raise CliError(f"{flag} must be at most {limit} scenes at --size {size}, got {value}.")
    for flag, value in (("--epochs", args.epochs), ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise CliError(f"{flag} must be a positive int, got {value}.")


def _cmd_train(args: argparse.Namespace) -> int:
    _check_out(args.out, args.arch)
    _check_sizes(args)

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
