"""``npcam evaluate``: the localisation table of the shipped models."""

from __future__ import annotations

import argparse
import time

from .. import zoo
from ..evaluation.tables import format_table, localization_table
from ..methods.registry import METHODS
from . import CliError

__all__ = ["MAX_SCENES", "register"]

#: Bound on ``--n`` (scenes of each kind): the scenes, their masks and the maps of every
#: method stay in memory, about 0.5 MB per scene, so 20000 take about 10 GB.
MAX_SCENES = 20_000


def _command(args: argparse.Namespace) -> int:
    if not 1 <= args.n <= MAX_SCENES:
        raise CliError(f"--n must be a positive number of scenes, at most {MAX_SCENES}, got {args.n}.")
    models = tuple(args.model) if args.model else ("gap", "vgg")
    for m in models:
        if m not in zoo.NAMES:
            raise CliError(f"--model must be one of {', '.join(zoo.NAMES)}, got {m!r}.")
    methods = None
    if args.methods is not None:
        methods = tuple(n.strip() for n in args.methods.split(",") if n.strip())
        unknown = [n for n in methods if n not in METHODS]
        if not methods or unknown:
            raise CliError(f"--methods must be a comma-separated list of {', '.join(METHODS)}; "
                           f"got {args.methods!r}.")
    t0 = time.perf_counter()
    print(format_table(localization_table(args.n, args.seed, models, methods), args.n))
    print(f"\n({time.perf_counter() - t0:.1f} s)")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="localisation metrics of the shipped models (a table)")
    p.add_argument(
        "--n", type=int, default=500,
        help=f"scenes of each kind, 1 to {MAX_SCENES} (default 500; about 0.5 MB of memory each)",
    )
    p.add_argument("--seed", type=int, default=777, help="seed of the held-out scenes (default 777)")
    p.add_argument("--model", action="append", help="shipped model (gap, vgg); repeat for several")
    p.add_argument("--methods", default=None,
                   help="rows: a comma-separated list of method names (default: every method; "
                        "SS-CAM, IS-CAM and SmoothGrad-CAM++ with 8 samples)")
    p.set_defaults(func=_command)
