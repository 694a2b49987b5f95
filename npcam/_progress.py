"""One progress bar for every method that runs many passes (Score-CAM, Ablation-CAM,
SS/IS-CAM, SmoothGrad-CAM++, the faithfulness metrics).

``progress=None`` (auto): the bar is drawn on stderr only when stderr is a terminal and
the estimated time of the whole job exceeds :data:`MIN_SECONDS` (estimated after the first
step: elapsed / done · total); ``True``: always drawn (on stderr, terminal or not);
``False``: never. The bar itself is ``train._ProgressBar``'s, redrawn with ``\\r`` at most
ten times a second and erased when the job ends.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any, TextIO

from ._validate import describe

__all__ = ["MIN_SECONDS", "Progress", "check_progress"]

#: ``progress=None`` shows the bar only for jobs estimated to take longer than this.
MIN_SECONDS = 2.0


def check_progress(progress: Any) -> bool | None:
    """``progress`` if it is None, True or False; else ``TypeError``."""
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be None (auto), True or False, got {describe(progress)}.")
    return progress


class Progress:
    """``Score-CAM [########................]  96/512`` for ``total`` steps.

    Use as a context manager; call :meth:`step` after each unit of work (a chunk of
    forward passes). Nothing is written when the bar is off.
    """

    def __init__(self, total: int, label: str, progress: bool | None = None,
                 stream: TextIO | None = None) -> None:
        from .train import _isatty, _ProgressBar

        self.total, self.label = max(int(total), 1), label
        self.mode = check_progress(progress)
        self.stream = sys.stderr if stream is None else stream
        tty = _isatty(self.stream)
        self._bar = _ProgressBar(self.stream, enabled=self.mode is True or (self.mode is None and tty))
        self._decided = self.mode is not None
        self._start = time.perf_counter()
        self.done = 0

    @property
    def shown(self) -> bool:
        """Whether the bar is being drawn."""
        return self._bar.enabled and self._decided

    def step(self, n: int = 1) -> None:
        self.done = min(self.done + int(n), self.total)
        if not self._bar.enabled:
            return
        if not self._decided:  # auto: decide from the first step's pace
            elapsed = time.perf_counter() - self._start
            self._decided = True
            if elapsed / self.done * self.total <= MIN_SECONDS:
                self._bar.enabled = False
                return
        self._bar.draw(self.label, self.done, self.total)

    def close(self) -> None:
        self._bar.clear()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
