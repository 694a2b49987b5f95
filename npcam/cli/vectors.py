"""``npcam vectors``: write the golden reference vectors."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..verify.vectors import FORMAT_VERSION, INDEX_NAME, write_torch_scripts, write_vectors

__all__ = ["register"]


def _cmd_vectors(args: argparse.Namespace) -> int:
    index = write_vectors(args.out)
    for entry in index["cases"].values():
        print(f"{os.path.join(args.out, entry['file'])}: {entry['description']}")
    count = len(index["cases"])
    print(f"{os.path.join(args.out, INDEX_NAME)}: format version {FORMAT_VERSION}, {count} cases")
    if args.torch:
        for path in write_torch_scripts(args.out):
            print(f"{path}: the case in PyTorch (run it to check the logits)")
    return 0


def register(subparsers: Any) -> None:
    """Add ``npcam vectors``."""
    p = subparsers.add_parser(
        "vectors",
        help="write the golden reference vectors",
        description="Write the golden vectors (one .npz per case and index.json) into DIR.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created if needed)")
    p.add_argument("--torch", action="store_true",
                   help="also write CASE.py beside each case: the model rebuilt in PyTorch")
    p.set_defaults(func=_cmd_vectors)
