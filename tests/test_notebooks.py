"""Execute every study notebook in ``notebooks/`` and fail if any cell raises.

Needs the ``notebooks`` extra (``pip install -e '.[test,notebooks]'``); skipped with the
reason when nbclient, nbformat, ipykernel or matplotlib is missing. Each notebook runs in
a fresh kernel of *this* interpreter (a kernelspec written to a temporary directory, so an
unrelated ``python3`` kernelspec elsewhere on the machine cannot be picked up), with the
working directory ``notebooks/``, the repository root first on ``PYTHONPATH`` (the
notebooks import the working tree's npcam), and a timeout of 120 s per cell. The run time
of every notebook is printed (also without ``-s``) and recorded as a junit property.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebooks extra is not installed (nbformat)")
nbclient = pytest.importorskip("nbclient", reason="the notebooks extra is not installed (nbclient)")
pytest.importorskip("ipykernel", reason="the notebooks extra is not installed (ipykernel)")
pytest.importorskip("matplotlib", reason="the notebooks extra is not installed (matplotlib)")

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402  (installed with nbclient)
from jupyter_client.manager import KernelManager  # noqa: E402
from nbclient.exceptions import CellExecutionError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = (
    "01_forward_backward",
    "02_cam",
    "03_grad_cam",
    "04_cam_equivalence",
    "05_guided_backprop",
    "06_counterfactual",
    "07_verify_another_implementation",
    "08_exercises",
)
CELL_TIMEOUT = 120  # seconds per cell
MAX_BYTES = 300 * 1024  # committed notebooks carry their outputs; keep them small
KERNEL_NAME = "python3"


@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory: pytest.TempPathFactory) -> KernelSpecManager:
    """A kernelspec manager that knows one kernel: ``python3`` = this interpreter."""
    spec_dir = tmp_path_factory.mktemp("kernels") / KERNEL_NAME
    spec_dir.mkdir()
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (npcam tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    return KernelSpecManager(kernel_dirs=[str(spec_dir.parent)], ensure_native_kernel=False)


def test_every_notebook_is_present() -> None:
    missing = sorted(set(EXPECTED) - {p.stem for p in NOTEBOOKS})
    assert not missing, f"notebooks/ is missing {missing}."


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebook_is_small_and_has_no_errors(path: Path) -> None:
    size = path.stat().st_size
    assert size <= MAX_BYTES, f"{path.name} is {size / 1024:.0f} KB; keep figures few and small (<= 300 KB)."
    nb = nbformat.read(path, as_version=4)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, f"{path.name}, cell {index}: the committed output holds an error; re-run and save."


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(
    path: Path,
    kernel_specs: KernelSpecManager,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    record_property,
) -> None:
    # The kernel inherits the environment: the working tree's npcam comes first.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the notebooks select the inline backend
    nb = nbformat.read(path, as_version=4)
    km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=kernel_specs)
    client = nbclient.NotebookClient(
        nb,
        km=km,
        timeout=CELL_TIMEOUT,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    start = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as exc:
        pytest.fail(f"{path.name}: a cell raised an error:\n{exc}", pytrace=False)
    finally:
        seconds = time.perf_counter() - start
        record_property("seconds", round(seconds, 2))
        with capsys.disabled():
            print(f"\n{path.name}: {seconds:.1f} s", end=" ")
