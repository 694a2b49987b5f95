"""The README's Python examples run as written and print what their comments say.

Rule R2: a block that needs an optional extra is fenced ```` ```python extra=NAME ````
(several: ```` ```python extra=crosscheck,safetensors ````). An untagged block runs
everywhere; a tagged block runs only where every one of its extras imports, and is
skipped with the reason otherwise. Each extra's step in ``.ci/run`` runs this file, so
every block is executed in CI at least once (checked below).

Each block runs in a fresh namespace after the untagged blocks before it (so a tagged
block may use what the README's plain examples defined, but not what another tagged
block defined). Each ``print(...)  # expected`` line of a block must print exactly
``expected``, and the block must print nothing else.
"""

from __future__ import annotations

import configparser
import contextlib
import importlib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CI_RUN = ROOT / ".ci" / "run"
SETUP_CFG = ROOT / "setup.cfg"

#: extra name -> the modules that must import for a block tagged with it to run
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "crosscheck": ("torch", "captum"),
    "notebooks": ("matplotlib",),
    "onnx": ("onnx",),
    "safetensors": ("safetensors",),
    "keras": ("keras", "tensorflow", "tf2onnx"),
    "jax": ("jax", "flax", "jax2onnx"),
}

FENCE = re.compile(r"^```python(?P<info>[^\n]*)\n(?P<code>.*?)^```", flags=re.S | re.M)
CLAIM = re.compile(r"^print\(.*\)[ \t]+#[ \t]*(.+)$", flags=re.M)


@dataclass(frozen=True)
class Block:
    code: str
    line: int  # line of the opening fence in README.md
    extras: tuple[str, ...]  # () for an untagged block

    @property
    def id(self) -> str:
        return f"line{self.line}" + (f"-{'+'.join(self.extras)}" if self.extras else "")


def parse_info(info: str, line: int) -> tuple[str, ...]:
    """The extras of a fence's info string: ``''`` -> (), ``'extra=a,b'`` -> ('a', 'b')."""
    words = info.split()
    if not words:
        return ()
    if len(words) != 1 or not words[0].startswith("extra="):
        raise ValueError(f"README.md:{line}: fence info {info.strip()!r} is not 'extra=NAME[,NAME...]'")
    extras = tuple(words[0][len("extra="):].split(","))
    if not all(extras):
        raise ValueError(f"README.md:{line}: empty extra name in {info.strip()!r}")
    return extras


def python_blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    blocks = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        blocks.append(Block(m.group("code"), line, parse_info(m.group("info"), line)))
    return blocks


BLOCKS = python_blocks()


def missing_modules(extras: tuple[str, ...]) -> list[str]:
    missing = []
    for extra in extras:
        for module in EXTRA_MODULES[extra]:
            try:
                importlib.import_module(module)
            except ImportError:
                missing.append(module)
    return missing


def run_block(block: Block, namespace: dict) -> list[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block.code, f"{README}:{block.line}", "exec"), namespace)  # noqa: S102
    return [line.strip() for line in out.getvalue().splitlines()]


def test_readme_has_python_examples():
    """The README shows at least one untagged Python example (so the test below checks something)."""
    assert any(not b.extras for b in BLOCKS)


def test_every_extra_tag_is_known():
    """Tags name extras this file knows how to detect and that setup.cfg defines (a typo
    would otherwise skip a block forever)."""
    cfg = configparser.ConfigParser()
    cfg.read(SETUP_CFG, encoding="utf-8")
    defined = set(cfg["options.extras_require"])
    for block in BLOCKS:
        for extra in block.extras:
            assert extra in EXTRA_MODULES, f"README.md:{block.line}: unknown extra {extra!r}"
            assert extra in defined, f"README.md:{block.line}: setup.cfg defines no extra {extra!r}"


def _ci_steps() -> list[tuple[set[str], str]]:
    """(extras installed, the command) for each ``pip install -e '.[...]'`` command of .ci/run
    (continuation lines joined)."""
    steps = []
    text = re.sub(r"\\\n\s*", " ", CI_RUN.read_text(encoding="utf-8"))
    for line in text.splitlines():
        m = re.search(r"pip install -e '\.\[([^\]]*)\]'", line)
        if m:
            steps.append(({e.strip() for e in m.group(1).split(",")}, line))
    return steps


def test_every_tagged_block_runs_in_some_ci_step():
    """Rule R2: for each tagged block, a step of .ci/run installs all its extras and runs
    this file."""
    steps = _ci_steps()
    for block in BLOCKS:
        if block.extras:
            assert any(
                set(block.extras) <= extras and "tests/test_readme.py" in line for extras, line in steps
            ), f"README.md:{block.line}: no .ci/run step installs {block.extras} and runs this file"


def _bash_blocks() -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_readme_commands_are_the_ones_ci_runs():
    """The README's install-and-run and test commands appear verbatim as lines of .ci/run."""
    ci_lines = {line.strip() for line in CI_RUN.read_text(encoding="utf-8").splitlines()}
    commands = [line.strip() for block in _bash_blocks()[:2] for line in block.splitlines() if line.strip()]
    assert commands == ["pip install . && npcam demo", "pip install -e '.[test]' && pytest"]
    for command in commands:
        shlex.split(command)  # well-formed shell
        assert command in ci_lines, f".ci/run does not run the README's command {command!r}"


def _params() -> list:
    params = []
    for block in BLOCKS:
        marks = [pytest.mark.crosscheck] if "crosscheck" in block.extras else []
        params.append(pytest.param(block, id=block.id, marks=marks))
    return params


@pytest.mark.parametrize("block", _params())
def test_readme_python_block_runs_and_prints_what_it_claims(block: Block):
    """Each ``print(...)  # expected`` line of the block prints exactly ``expected``."""
    unknown = [e for e in block.extras if e not in EXTRA_MODULES]
    assert not unknown, f"README.md:{block.line}: unknown extra {unknown}"
    missing = missing_modules(block.extras)
    if missing:
        pytest.skip(f"README.md:{block.line} needs the extra {','.join(block.extras)} ({', '.join(missing)})")
    namespace: dict = {}
    for earlier in BLOCKS:
        if earlier.line >= block.line:
            break
        if not earlier.extras:
            run_block(earlier, namespace)
    claimed = [m.group(1).strip() for m in CLAIM.finditer(block.code)]
    assert run_block(block, namespace) == claimed
