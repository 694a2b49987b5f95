"""The import structure of the package (issue 10, § 1).

* ``import npcam`` is light: scipy, Pillow and argparse stay unloaded (checked in a fresh
  interpreter).
* Every name of 0.1.0's ``npcam.__all__`` still imports from ``npcam``, except the module
  paths removed in 0.2.0, which raise ``ImportError``; the 0.1 module paths that were kept
  are real modules (files), not attributes served by ``__getattr__``.
* Library code never imports ``npcam.cli``.
* The module-level imports among npcam's modules have no cycle.
* Every module imports in the core environment: with torch, captum and matplotlib made
  unimportable.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import npcam

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "npcam"

#: ``npcam.__all__`` of 0.1.0 (``git show c498a95:npcam/__init__.py``)
ALL_0_1 = (
    "BatchNorm2d", "CAMEquivalence", "CAMResult", "Conv2d", "Dropout", "Flatten", "GlobalAvgPool2d",
    "Layer", "Linear", "MaxPool2d", "ReLU", "Sequential", "__version__", "apply_colormap", "cam",
    "cam_equivalence", "colormap", "conventions", "counterfactual", "data", "deconvnet", "explain",
    "fold_batchnorm", "from_torch", "functional", "grad_cam", "gradcheck", "gradient_x_input",
    "guided_backprop", "guided_grad_cam", "image", "interop", "load_image", "load_model",
    "load_weights", "metrics", "model_from_config", "normalize", "overlay", "saliency", "save_image",
    "show_versions", "train", "upsample", "vectors", "zoo",
)
#: the 0.1.0 module paths removed (not shimmed) in 0.2.0
REMOVED = ("functional", "explain", "layers", "metrics", "data")
#: the 0.1.0 module paths kept: real modules, importable with ``import npcam.NAME``
KEPT_MODULES = ("conventions", "gradcheck", "zoo", "vectors", "train", "interop", "image")
#: ``npcam.image.__all__`` of 0.1.0: still importable from the ``npcam.image`` subpackage
IMAGE_0_1 = (
    "MAX_IMAGE_PIXELS", "apply_colormap", "colormap", "interpolation_matrices", "load_image",
    "normalize", "overlay", "save_image", "upsample",
)
#: modules of the optional extras, made unimportable to check the core environment
BLOCKED = ("torch", "torchvision", "captum", "matplotlib", "pytorch_grad_cam", "torchcam")


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter with the working tree's npcam first on the path."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


# ----------------------------------------------------------------------- (a) light import
def test_import_npcam_loads_no_scipy_pil_or_argparse():
    result = run_python(
        """
        import sys
        import npcam
        heavy = sorted(m for m in ("scipy", "PIL", "argparse") if m in sys.modules)
        print(",".join(heavy))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"import npcam loaded {result.stdout.strip()}"


# ------------------------------------------------------------- (b) names that keep working
@pytest.mark.parametrize("name", [n for n in ALL_0_1 if n not in REMOVED])
def test_every_0_1_name_still_imports_from_npcam(name):
    namespace: dict = {}
    exec(f"from npcam import {name}", namespace)  # noqa: S102
    assert namespace[name] is getattr(npcam, name)
    assert name in npcam.__all__


@pytest.mark.parametrize("name", KEPT_MODULES)
def test_kept_module_paths_are_real_modules(name):
    """``import npcam.NAME`` finds a file: the module is not an attribute of ``npcam``."""
    spec = importlib.util.find_spec(f"npcam.{name}")
    assert spec is not None and spec.origin is not None and spec.has_location
    origin = Path(spec.origin)
    assert origin.is_file() and PACKAGE in origin.parents, origin
    module = importlib.import_module(f"npcam.{name}")
    assert Path(module.__file__) == origin
    assert getattr(npcam, name) is module


def test_module_imports_of_0_1_work_in_a_fresh_interpreter():
    """The issue's spellings, each in a fresh interpreter so that no earlier import helps."""
    for statement in (
        "import npcam.conventions",
        "from npcam.gradcheck import check_layer",
        "import npcam.zoo",
        "import npcam.vectors",
        "import npcam.train",
        "import npcam.interop",
    ):
        result = run_python(statement)
        assert result.returncode == 0, f"{statement}:\n{result.stderr}"


@pytest.mark.parametrize("name", IMAGE_0_1)
def test_npcam_image_keeps_the_0_1_functions(name):
    import npcam.image

    assert hasattr(npcam.image, name)
    namespace: dict = {}
    exec(f"from npcam.image import {name}", namespace)  # noqa: S102


@pytest.mark.parametrize("name", REMOVED)
def test_removed_module_paths_raise_import_error(name):
    assert importlib.util.find_spec(f"npcam.{name}") is None
    with pytest.raises(ImportError):
        importlib.import_module(f"npcam.{name}")
    with pytest.raises(ImportError):
        exec(f"from npcam import {name}", {})  # noqa: S102
    assert name not in npcam.__all__


# ---------------------------------------------------------------- the static import graph
def module_files() -> dict[str, Path]:
    """dotted module name -> file, for every .py under npcam/."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = module_files()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module of ``from [.]*X import ...`` written in module ``importer``."""
    if node.level == 0:
        return node.module or ""
    package = importer if _is_package(importer) else importer.rpartition(".")[0]
    base = package.split(".")
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _targets(importer: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The npcam modules an import statement loads (the named module, or for ``from P
    import name`` also ``P.name`` when that is a module)."""
    found = set()
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = _resolve(importer, node)
        names = [base] + [f"{base}.{alias.name}" for alias in node.names]
    for name in names:
        if name in MODULES:
            found.add(name)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def module_level_imports(tree: ast.Module):
    """The import statements executed when the module is imported: the module body and its
    ``if``/``try``/``with`` blocks and class bodies, not function bodies, not ``if
    TYPE_CHECKING:`` blocks."""
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                stack.extend(node.body)
            stack.extend(node.orelse)
        elif isinstance(node, (ast.Try, ast.With, ast.ClassDef)):
            for field in ("body", "orelse", "finalbody"):
                stack.extend(getattr(node, field, []))
            for handler in getattr(node, "handlers", []):
                stack.extend(handler.body)


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph() -> dict[str, set[str]]:
    """module -> the npcam modules its module-level imports execute. Importing ``a.b.c``
    also runs the packages ``a`` and ``a.b``; the importer's own parent packages are left
    out (they are always being imported already, and that is not a cycle)."""
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        own = set(_ancestors(name)) | {name}
        edges: set[str] = set()
        for node in module_level_imports(tree):
            for target in _targets(name, node):
                edges.update(m for m in [*_ancestors(target), target] if m in MODULES)
        graph[name] = edges - own
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_one_cycle(graph, set(c)) for c in components]


def _one_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected component."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    return sorted(component)


def test_the_graph_checker_finds_a_cycle():
    """The checker is tested too."""
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_relative_imports():
    graph = import_graph()
    # ``from .verify.conventions import *`` in npcam/conventions.py; the package comes with it
    assert {"npcam.verify", "npcam.verify.conventions"} <= graph["npcam.conventions"]
    # ``from .._validate import ...`` two levels up, in a module of a subpackage
    assert "npcam._validate" in graph["npcam.nn.layers"]


def test_no_import_cycle_among_module_level_imports():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _imports_cli(importer: str, tree: ast.Module) -> list[int]:
    """Lines of ``tree`` that import npcam.cli (anywhere, functions included)."""
    lines = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(importer, node)
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            target = node.args[0].value
            if target.startswith("."):
                level = len(target) - len(target.lstrip("."))
                fake = ast.ImportFrom(module=target.lstrip(".") or None, names=[], level=level)
                target = _resolve(importer, fake)
            names = [target]
        if any(n == "npcam.cli" or n.startswith("npcam.cli.") for n in names):
            lines.append(node.lineno)
    return lines


def test_library_code_never_imports_the_cli():
    offenders = []
    for name, path in MODULES.items():
        if name == "npcam.cli" or name.startswith("npcam.cli."):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        offenders += [f"{path.relative_to(ROOT)}:{line}" for line in _imports_cli(name, tree)]
    assert not offenders, "library modules importing npcam.cli: " + ", ".join(offenders)


def test_the_cli_checker_sees_relative_imports():
    tree = ast.parse("from ..cli import main\ndef f():\n    from . import cli\n")
    assert _imports_cli("npcam.nn.layers", tree) == [1]
    assert _imports_cli("npcam.train", tree) == [3]


# ------------------------------------------------------------- (e) the core environment
def test_every_module_imports_without_the_optional_extras():
    result = run_python(
        f"""
        import importlib, importlib.abc, pkgutil, sys, traceback

        BLOCKED = {BLOCKED!r}

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{{name}} is blocked: the core environment has no extras")
                return None

        sys.meta_path.insert(0, Block())
        import npcam

        failed = []
        names = ["npcam"]

        def onerror(name):
            failed.append((name, traceback.format_exc(limit=3)))

        for info in pkgutil.walk_packages(npcam.__path__, "npcam.", onerror=onerror):
            names.append(info.name)
        for name in names:
            try:
                importlib.import_module(name)
            except Exception:
                failed.append((name, traceback.format_exc(limit=3)))
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        print(len(names))
        for name, tb in failed:
            print("FAILED", name, tb, sep="\\n")
        if leaked:
            print("LEAKED", leaked)
        """
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert int(lines[0]) >= len(MODULES), f"walk_packages found {lines[0]} modules, npcam/ has {len(MODULES)}"
    assert len(lines) == 1, "\n".join(lines[1:])


def test_diagnose_is_one_function_under_three_names():
    """``npcam.diagnose`` and ``npcam.verify.diagnose`` are the function of
    ``npcam/verify/diagnose.py``, whose module stays reachable through ``sys.modules``."""
    import importlib
    import types

    import npcam
    import npcam.verify

    module = importlib.import_module("npcam.verify.diagnose")
    assert isinstance(module, types.ModuleType)
    assert npcam.diagnose is npcam.verify.diagnose is module.diagnose
    assert callable(npcam.diagnose)
