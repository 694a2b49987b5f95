"""``npcam compare``: compare an array with one quantity of one golden case."""

from __future__ import annotations

import argparse
from typing import Any

from ..verify.vectors import QUANTITIES, compare

__all__ = ["register"]


def _cmd_compare(args: argparse.Namespace) -> int:
    report = compare(args.theirs, args.vectors, args.case, args.quantity, args.convention, args.tolerance)
    print(report)
    return 0 if report.passed else 1


def register(subparsers: Any) -> None:
    """Add ``npcam compare``."""
    p = subparsers.add_parser(
        "compare",
        help="compare an array with the golden vectors",
        description="Compare THEIRS.npy with one quantity of one golden case; exit 0 on PASS, "
        "1 on FAIL, 2 on errors.",
    )
    p.add_argument("theirs", metavar="THEIRS.npy", help="the array to check (numpy.save format)")
    p.add_argument("--vectors", required=True, metavar="DIR", help="directory written by `npcam vectors`")
    p.add_argument("--case", required=True, help="case name, e.g. gap_fc")
    p.add_argument("--quantity", required=True, help=f"one of {', '.join(QUANTITIES)}")
    p.add_argument(
        "--convention", default=None,
        help="compare cam / guided_grad_cam as this library returns it (npcam.conventions)",
    )
    p.add_argument("--tolerance", type=float, default=None, help="bar on the relative error")
    p.set_defaults(func=_cmd_compare)
