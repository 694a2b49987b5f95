"""``npcam diagnose``: say why an array differs from npcam's (the bug or convention that
reproduces it)."""

from __future__ import annotations

import argparse
import json
import warnings
from typing import Any

import numpy as np

from .. import zoo
from .._files import atomic_write
from ..nn.io import read_npy
from ..verify.diagnose import QUANTITIES, Diagnosis, diagnose
from ..verify.vectors import FAMILY_PREFIX, FAMILY_SCORES, MAX_CASE_BYTES, case_inputs, load_case
from . import CliError

__all__ = ["register", "write_json"]


def write_json(path: str, d: Diagnosis) -> None:
    """``d.to_dict()`` as JSON, written atomically."""
    text = json.dumps(d.to_dict(), indent=1) + "\n"
    with atomic_write(path) as fh:
        fh.write(text.encode("utf-8"))


def _inputs(args: argparse.Namespace) -> tuple[Any, np.ndarray, Any, str | None]:
    if args.vectors is not None:
        if args.case is None:
            raise CliError("--vectors needs --case NAME.")
        model, x, target, layer, score = case_inputs(load_case(args.vectors, args.case))
        if args.score is None and score != "logit":
            args.score = score  # the case states its score
        return model, x, target if args.target is None else _target(args.target), args.layer or layer
    if args.model is None or args.input is None:
        raise CliError("give --vectors DIR --case NAME, or --model NAME --input X.npy.")
    if args.model not in zoo.NAMES:
        raise CliError(f"--model must be one of {', '.join(zoo.NAMES)}, got {args.model!r}.")
    x = read_npy(args.input, max_bytes=MAX_CASE_BYTES, label=f"--input {args.input!r}")
    if x.dtype.kind not in "iuf" or x.ndim != 4:
        raise CliError(f"--input must hold a real (N, C, H, W) array, got {x.dtype} {x.shape}.")
    target = None if args.target is None else _target(args.target)
    return zoo.pretrained(args.model), x.astype(np.float64), target, args.layer


def _target(values: list[int]) -> Any:
    return values[0] if len(values) == 1 else values


def _cmd_diagnose(args: argparse.Namespace) -> int:
    theirs = read_npy(args.theirs, max_bytes=MAX_CASE_BYTES, label=f"file {args.theirs!r}")
    if theirs.dtype.kind not in "iuf":
        raise CliError(f"{args.theirs!r} must hold real numbers, got dtype {theirs.dtype}.")
    model, x, target, layer = _inputs(args)
    quantity, convention, score = args.quantity, args.convention, args.score
    if quantity.startswith(FAMILY_PREFIX):  # a stored CAM-family map: npcam's own method
        method = quantity[len(FAMILY_PREFIX):]
        if method not in FAMILY_SCORES:
            raise CliError(f"--quantity family:<method> takes one of {', '.join(FAMILY_SCORES)}, "
                           f"got {method!r}.")
        if convention is not None:
            raise CliError("--quantity family:<method> is npcam's map; give --convention "
                           "LIB:method=M with --quantity cam for a library's.")
        convention, quantity = f"npcam:method={method}", "cam"
        score = FAMILY_SCORES[method] if score is None else score
    with warnings.catch_warnings():  # listed in the report instead
        warnings.simplefilter("ignore")
        d = diagnose(theirs, model, x, target, layer, quantity, score=score,
                     relu_rule=args.relu_rule, convention=convention)
    print(d)
    if args.json is not None:
        write_json(args.json, d)
    return 0 if d.verdict == "match" else 1


def register(subparsers: Any) -> None:
    """Add ``npcam diagnose``."""
    p = subparsers.add_parser(
        "diagnose",
        help="say why an array differs from npcam's",
        description="Compare THEIRS.npy with npcam's quantity for a golden case (or a zoo model "
        "and an input) and name the bug or library convention that reproduces it; exit 0 when "
        "it matches, 1 when it differs, 2 on errors.",
    )
    p.add_argument("theirs", metavar="THEIRS.npy", help="the array to diagnose (numpy.save format)")
    p.add_argument("--vectors", metavar="DIR", default=None, help="directory written by `npcam vectors`")
    p.add_argument("--case", default=None, help="case name, e.g. gap_fc")
    p.add_argument("--model", default=None,
                   help=f"a shipped model ({', '.join(zoo.NAMES)}) instead of a case")
    p.add_argument("--input", default=None, metavar="X.npy", help="the (N, C, H, W) input, with --model")
    p.add_argument("--quantity", default="cam", metavar="Q",
                   help=f"what THEIRS is: one of {', '.join(QUANTITIES)} or family:<method> "
                   "(default cam)")
    p.add_argument("--target", type=int, nargs="+", default=None,
                   help="class per image (default: the case's)")
    p.add_argument("--layer", default=None, help="target layer (default: the case's)")
    p.add_argument("--score", default=None, choices=("logit", "softmax", "log_softmax"),
                   help="the score you differentiate, if known (else searched)")
    p.add_argument("--relu-rule", default=None, choices=("standard", "guided", "deconvnet"),
                   help="your ReLU backward rule, if known (else searched)")
    p.add_argument("--convention", default=None,
                   help="the library convention you reproduce, 'lib[:option=value...]' (else searched)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the diagnosis as JSON")
    p.set_defaults(func=_cmd_diagnose)
