"""``npcam evaluate``: the localisation table of the shipped models."""

from __future__ import annotations

import argparse
import time

from .. import zoo
from ..evaluation.tables import format_table, localisation_table
from . import CliError

__all__ = ["register"]


def _command(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise CliError(f"--n must be a positive number of scenes, got {args.n}.")
    models = tuple(args.model) if args.model else ("gap", "vgg")
    for m in models:
        if m not in zoo.NAMES:
            raise CliError(f"--model must be one of {', '.join(zoo.NAMES)}, got {m!r}.")
    t0 = time.perf_counter()
    print(format_table(localisation_table(args.n, args.seed, models), args.n))
    print(f"\n({time.perf_counter() - t0:.1f} s)")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="localisation metrics of the shipped models (a table)")
    p.add_argument("--n", type=int, default=500, help="scenes of each kind (default 500)")
    p.add_argument("--seed", type=int, default=777, help="seed of the held-out scenes (default 777)")
    p.add_argument("--model", action="append", help="shipped model (gap, vgg); repeat for several")
    p.set_defaults(func=_command)
