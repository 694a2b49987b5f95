"""Writing files atomically: every file npcam writes appears whole or not at all.

A writer gets a temporary file in the target's own directory (so the final
:func:`os.replace` is a rename on one file system, atomic on POSIX and Windows); the
target is replaced only after the temporary file was written, flushed and closed. Two
processes writing the same path leave one complete file, never a mixture of both.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_write"]


def _read_umask() -> int:
    # os.umask can only be read by setting it; do that once, at import, not while other
    # threads may be creating files.
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Open a temporary binary file next to ``path``; on success it replaces ``path``.

    On any exception inside the block the temporary file is removed and ``path`` is left
    as it was. The directory of ``path`` must exist (``FileNotFoundError`` otherwise).
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates the file 0600; give it the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
