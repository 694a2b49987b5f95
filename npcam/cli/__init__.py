"""The ``npcam`` command.

Each subcommand is one module of this package exposing ``register(subparsers)``, which adds
an ``argparse`` sub-parser whose ``func`` default takes the parsed arguments and returns an
exit code; the work itself is library code, which never imports this package. This file
only assembles them and turns expected failures into one line on stderr with exit code 2
(no traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .._version import __version__

__all__ = ["CliError", "main"]

# Modules that contribute a subcommand, in the order ``npcam --help`` lists them.
_COMMAND_MODULES: tuple[str, ...] = (
    "npcam.cli.demo",
    "npcam.cli.explain",
    "npcam.cli.evaluate",
    "npcam.cli.train",
    "npcam.cli.vectors",
    "npcam.cli.compare",
    "npcam.cli.diagnose",
)


class CliError(Exception):
    """An expected failure of a command: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="npcam",
        description="Pure-NumPy CAM, Grad-CAM, Guided Backpropagation and Guided Grad-CAM.",
    )
    parser.add_argument("--version", action="version", version=f"npcam {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``npcam``; returns the exit code (0 success, 1 a failed check, 2 an error)."""
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse already prints one line and exits 2
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (CliError, ValueError, TypeError, OSError) as exc:
        print(f"npcam {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError as exc:
        detail = f" ({exc})" if str(exc) else ""
        print(f"npcam {args.command}: error: out of memory{detail}; try a smaller input.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"npcam {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
