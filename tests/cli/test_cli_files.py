"""``npcam train`` / ``npcam evaluate`` facing hostile files and sizes: one stderr line,
exit 2, and nothing expensive done first.

Each regression test cites the case ids of ``reliability-findings.md`` and says what 0.1.0
did.
"""

from __future__ import annotations

import io
import json
import time
import zipfile

import numpy as np
import pytest

import npcam
from npcam import cli
from npcam.cli import evaluate as cli_evaluate
from npcam.cli import train as cli_train
from npcam.zoo import recipes

TINY = ["--n-train", "8", "--n-test", "4", "--epochs", "1", "--batch-size", "4", "--quiet"]


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if the training (or the evaluation) starts."""
    def boom(*args, **kwargs):
        raise AssertionError("the work started although the arguments were refused")

    monkeypatch.setattr(recipes, "train_architecture", boom)
    monkeypatch.setattr(cli_evaluate, "localization_table", boom)


def _one_line(capsys, command, *needles):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"npcam {command}: error:"), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_train_out_existing_directory_fails_before_training(tmp_path, capsys, no_training):
    """C76: ``npcam train --out EXISTING_DIR`` trained first (about 8 minutes with the
    default recipe) and failed only when saving ("[Errno 21] Is a directory"). Now refused
    at once, naming the directory and suggesting a file name."""
    t0 = time.perf_counter()
    assert cli.main(["train", "--arch", "gap", "--out", str(tmp_path), *TINY]) == 2
    assert time.perf_counter() - t0 < 5
    _one_line(capsys, "train", "--out must be the .npz file to write", str(tmp_path), "gap.npz")


def test_train_out_folder_must_accept_files(tmp_path, capsys, no_training, monkeypatch):
    """C76: the output folder is tried (a temporary file is created and removed) before
    the training, so an unwritable folder fails at once too."""
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cli_train.tempfile, "TemporaryFile", refuse)
    assert cli.main(["train", "--arch", "gap", "--out", str(tmp_path / "m.npz"), *TINY]) == 2
    _one_line(capsys, "train", "cannot be written", "Permission denied")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--n-train", "1000000000"], "--n-train must be a number of scenes from 1 to 100000"),
        (["--n-test", "0"], "--n-test must be a number of scenes from 1 to 100000"),
        (["--size", "100000"], "--size must be a multiple of 16 from 16 to 256"),
        (["--size", "256", "--n-train", "20000"], "--n-train must be at most 6250 scenes at --size 256"),
        (["--batch-size", "0"], "--batch-size must be a positive int"),
    ],
)
def test_train_sizes_are_bounded(tmp_path, capsys, no_training, extra, needle):
    """C90: ``npcam train --n-train 1000000000`` gave a 20-line traceback ending in an
    89.4 TiB MemoryError; now every size is checked against documented bounds
    (MAX_SCENES, MAX_SIZE, stated in --help) before anything is allocated."""
    assert cli.main(["train", "--arch", "gap", "--out", str(tmp_path / "m.npz"), *extra]) == 2
    _one_line(capsys, "train", needle)
    assert cli_train.MAX_SCENES == 100_000 and cli_train.MAX_SIZE == 256


def test_train_help_states_the_bounds(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "1 to 100000" in text and "from 16 to 256" in text


def test_evaluate_n_is_bounded(capsys, no_training):
    """C89: ``npcam evaluate --n 100000000`` gave a 17-line traceback ending in an 8.94 TiB
    MemoryError; now --n is bounded by MAX_SCENES (20000, stated in --help): one line."""
    assert cli.main(["evaluate", "--n", "100000000"]) == 2
    _one_line(capsys, "evaluate", "--n must be a positive number of scenes, at most 20000")
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--help"])
    assert "1 to 20000" in " ".join(capsys.readouterr().out.split())


def _header(shape) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _zoo_file(path, **replace):
    """A zoo 'gap' file (a tiny untrained model) whose members may be replaced by raw bytes."""
    model = npcam.zoo.build("gap", rng=0, size=16)
    npcam.zoo.save(model, path, {"mean": [0, 0, 0], "std": [1, 1, 1]})
    with zipfile.ZipFile(path) as zf:
        members = {info.filename: zf.read(info) for info in zf.infolist()}
    members.update({f"{k}.npy": v for k, v in replace.items()})
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def _bomb(path, megabytes=64):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("features.0.weight.npy", "w", force_zip64=True) as fh:
            fh.write(_header((megabytes * 2**17,)))
            for _ in range(megabytes):
                fh.write(bytes(2**20))


@pytest.mark.parametrize(
    "make, needle",
    [
        # C85 (F04): a deflate bomb; 0.1.0 inflated it to 1.6 GB (19 s, 1.58 GB RSS) only to
        # then say the file had no __metadata__.
        (lambda p: _bomb(p), "must hold a JSON string under '__architecture__'"),
        # C83 (F06): a header claiming 10**12 float64; 0.1.0: MemoryError traceback, exit 1.
        (lambda p: _zoo_file(p, **{"features.0.weight": _header((10**12,))}),
         "claims shape (1000000000000,)"),
        # C78 (F20): deeply nested architecture JSON; 0.1.0: RecursionError, 26-line traceback.
        (lambda p: _zoo_file(p, __architecture__=_npy(np.array("[" * 20000 + "]" * 20000))), "nests 20000"),
        # C79: deeply nested metadata JSON; the same RecursionError in 0.1.0.
        (lambda p: _zoo_file(p, __metadata__=_npy(np.array('{"a": ' + "[" * 20000 + "]" * 20000 + "}"))),
         "'__metadata__' nests"),
        # C80/C81: an architecture whose children are not [name, config] pairs.
        (lambda p: _zoo_file(p, __architecture__=_npy(np.array(json.dumps(
            {"type": "Sequential", "children": [5, 6]})))), "[name, config] pair"),
    ],
)
def test_train_trunk_hostile_files(tmp_path, capsys, make, needle):
    """C85, C83, C78, C79 (and C80/C81): ``npcam train --arch vgg --trunk FILE`` with a
    hostile trunk file: one stderr line naming the file and the problem, exit 2, quickly
    (before any scene is drawn)."""
    trunk = tmp_path / "trunk.npz"
    make(trunk)
    t0 = time.perf_counter()
    out = str(tmp_path / "v.npz")
    code = cli.main(["train", "--arch", "vgg", "--out", out, "--trunk", str(trunk), *TINY])
    assert code == 2 and time.perf_counter() - t0 < 5
    _one_line(capsys, "train", "trunk.npz", needle)
    assert not (tmp_path / "v.npz").exists()


def test_train_trunk_control_file_loads(tmp_path):
    """The control for the cases above: the unmodified hand-made trunk file loads."""
    _zoo_file(tmp_path / "trunk.npz")
    model, meta = npcam.zoo.load(tmp_path / "trunk.npz")
    assert "features" in model.children and meta["mean"] == [0, 0, 0]
