"""``npcam compare``: compare an array with one quantity of one golden case; on FAIL, say
why (``npcam.verify.diagnose``)."""

from __future__ import annotations

import argparse
import warnings
from typing import Any

from ..verify.diagnose import QUANTITIES as DIAGNOSED
from ..verify.diagnose import _parse_value, diagnose
from ..verify.vectors import (
    FAMILY_PREFIX,
    FAMILY_SCORES,
    QUANTITIES,
    _read_theirs,
    case_inputs,
    compare,
    load_case,
)
from . import CliError

__all__ = ["register"]


def _options(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.relu_attributions:
        out["relu_attributions"] = True
    if args.interpolate_mode is not None:
        out["interpolate_mode"] = args.interpolate_mode
    for item in args.option or []:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise CliError(f"--option must be NAME=VALUE, got {item!r}.")
        out[key] = _parse_value(value)
    return out


def _explain(args: argparse.Namespace, options: dict[str, Any]) -> None:
    """The diagnosis of a FAIL, printed under the report."""
    quantity, convention = args.quantity, args.convention
    family_score = None
    if quantity.startswith(FAMILY_PREFIX):
        method = quantity[len(FAMILY_PREFIX):]
        convention, quantity = f"npcam:method={method}", "cam"
        family_score = FAMILY_SCORES.get(method)
    elif convention is not None:
        parts = [convention, *(f"{k}={v}" for k, v in options.items())]
        if args.method != "grad-cam":
            parts.append(f"method={args.method}")
        convention = ":".join(parts)
    if quantity not in DIAGNOSED:
        return
    model, x, target, layer, score = case_inputs(load_case(args.vectors, args.case))
    known = args.score if args.score is not None else (None if score == "logit" else score)
    if family_score is not None:
        known = None if family_score == "logit" else family_score
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = diagnose(_read_theirs(args.theirs), model, x, target, layer, quantity, score=known,
                     convention=convention)
    name = f" {d.hypotheses[0].name}" if d.hypotheses else ""
    print(f"  diagnosis        {d.verdict}{name}: {d.explanation}")
    for h in [h for h in d.hypotheses if h.group > 0][:4]:
        print(f"                   less likely (group {h.group}): {h.name} (residual {h.residual:.0e})")


def _cmd_compare(args: argparse.Namespace) -> int:
    options = _options(args)
    report = compare(args.theirs, args.vectors, args.case, args.quantity, args.convention, args.tolerance,
                     score=args.score, method=args.method, options=options)
    print(report)
    if not report.passed:
        _explain(args, options)
    return 0 if report.passed else 1


def register(subparsers: Any) -> None:
    """Add ``npcam compare``."""
    p = subparsers.add_parser(
        "compare",
        help="compare an array with the golden vectors",
        description="Compare THEIRS.npy with one quantity of one golden case; on FAIL, name the bug "
        "or convention that reproduces it; exit 0 on PASS, 1 on FAIL, 2 on errors.",
    )
    p.add_argument("theirs", metavar="THEIRS.npy", help="the array to check (numpy.save format)")
    p.add_argument("--vectors", required=True, metavar="DIR", help="directory written by `npcam vectors`")
    p.add_argument("--case", required=True, help="case name, e.g. gap_fc")
    p.add_argument("--quantity", required=True,
                   help=f"one of {', '.join(QUANTITIES)} or family:<method>")
    p.add_argument(
        "--convention", default=None,
        help="compare cam / guided_grad_cam as this library returns it (npcam.conventions)",
    )
    p.add_argument("--score", default=None, choices=("logit", "softmax", "log_softmax"),
                   help="with --convention: the score the library differentiates (default its own)")
    p.add_argument("--relu-attributions", action="store_true",
                   help="with --convention captum: relu_attributions=True")
    p.add_argument("--interpolate-mode", default=None, choices=("nearest", "bilinear"),
                   help="with --convention captum: LayerAttribution.interpolate's mode")
    p.add_argument("--method", default="grad-cam",
                   help="with --convention: a CAM-family method (grad-cam++, score-cam, ...)")
    p.add_argument("--option", action="append", metavar="NAME=VALUE",
                   help="with --convention: one of the convention's options (repeatable)")
    p.add_argument("--tolerance", type=float, default=None, help="bar on the relative error")
    p.set_defaults(func=_cmd_compare)
