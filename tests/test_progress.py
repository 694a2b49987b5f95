"""npcam._progress: one progress bar for every many-pass method."""

import io

import pytest

from npcam._progress import MIN_SECONDS, Progress, check_progress


class _TTY(io.StringIO):
    def isatty(self):
        return True


def _run(progress, stream, steps=4, pause=None):
    with Progress(steps, "Score-CAM", progress, stream=stream) as bar:
        for _ in range(steps):
            if pause:
                pause()
            bar.step()
    return stream.getvalue()


def test_false_never_draws_and_true_always_draws():
    """progress=False writes nothing, even on a terminal; progress=True draws the bar
    (label, filled bar, done/total) even when the stream is not a terminal, and erases
    it at the end (the last write is a carriage return)."""
    assert _run(False, _TTY()) == ""
    text = _run(True, io.StringIO())
    assert "Score-CAM [" in text and "4/4" in text
    assert "#" * 24 in text
    assert text.endswith("\r")


def test_auto_is_off_without_a_terminal_and_for_short_jobs(monkeypatch):
    """progress=None: nothing on a non-terminal stream; on a terminal nothing for a job
    whose estimated time (first step's pace × steps) is at most MIN_SECONDS, the bar for
    a longer one."""
    assert _run(None, io.StringIO()) == ""
    assert _run(None, _TTY()) == ""  # four instant steps: far below MIN_SECONDS
    clock = iter(range(0, 1000))
    monkeypatch.setattr("npcam._progress.time.perf_counter", lambda: float(next(clock)) * MIN_SECONDS)
    assert "4/4" in _run(None, _TTY())  # each step "takes" MIN_SECONDS: estimated 4×


@pytest.mark.parametrize("bad", [1, "yes", 0.5])
def test_progress_must_be_none_or_a_bool(bad):
    """Anything but None/True/False is a TypeError naming progress."""
    with pytest.raises(TypeError, match="progress must be None"):
        check_progress(bad)
    with pytest.raises(TypeError, match="progress"):
        Progress(3, "x", bad)
