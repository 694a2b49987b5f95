"""The README's Python examples run as written and print what their comments say."""

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_python_examples():
    """The README shows at least one Python example (so the test below checks something)."""
    assert python_blocks()


def test_readme_python_blocks_run_and_print_what_they_claim():
    """Each ``print(...)  # expected`` line of the README prints exactly ``expected``."""
    namespace: dict = {}
    for block in python_blocks():
        claimed = [
            m.group(1).strip()
            for m in re.finditer(r"^print\(.*\)[ \t]+#[ \t]*(.+)$", block, flags=re.M)
        ]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
        printed = [line.strip() for line in out.getvalue().splitlines()]
        assert printed == claimed
