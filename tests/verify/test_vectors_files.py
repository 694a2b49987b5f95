"""npcam.verify.vectors facing hostile files: index.json, case files and THEIRS.npy.

Each regression test cites the case ids of ``reliability-findings.md`` and says what 0.1.0
did. The vectors directories here are small hand-made ones (one case, one quantity), so
the tests need no model; a well-formed one passes ``compare`` first (the control).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

from npcam import cli
from npcam.verify import vectors as V

CAM = np.arange(6.0).reshape(2, 3)


def _sha(arr):
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def _index(**change):
    entry = {"file": "gap_fc.npz", "quantities": ["cam"],
             "arrays": {"cam": {"shape": [2, 3], "dtype": "float64", "sha256": _sha(CAM)}}}
    index = {"format_version": V.FORMAT_VERSION, "cases": {"gap_fc": entry},
             "tolerances": {"quantities": {"cam": {"float64": 1e-10, "float32": 1e-4}}}}
    for key, value in change.items():
        if key in entry:
            entry[key] = value
        else:
            index[key] = value
    return index


def _vectors(tmp_path, index=None, name="vec"):
    folder = tmp_path / name
    folder.mkdir()
    V._write_npz(folder / "gap_fc.npz", {"cam": CAM})
    (folder / "index.json").write_text(json.dumps(_index() if index is None else index))
    return folder


def _theirs(tmp_path, arr=CAM):
    path = tmp_path / "cam_ok.npy"
    np.save(path, arr)
    return path


def _one_line(capsys, *needles):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("npcam compare: error:")
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _cli_compare(theirs, folder):
    args = ["--vectors", str(folder), "--case", "gap_fc", "--quantity", "cam"]
    return cli.main(["compare", str(theirs), *args])


def test_control_directory_passes(tmp_path, capsys):
    """The hand-made directory is well formed: compare passes, load_case returns the arrays."""
    folder = _vectors(tmp_path)
    assert _cli_compare(_theirs(tmp_path), folder) == 0
    assert "PASS" in capsys.readouterr().out
    np.testing.assert_array_equal(V.load_case(folder, "gap_fc")["cam"], CAM)


def test_case_entry_without_quantities(tmp_path, capsys):
    """C57: an index.json case entry missing "quantities" gave 0.1.0 ``KeyError:
    'quantities'`` and a 14-line traceback (exit 1); now ``index.json is malformed``, one
    line, exit 2."""
    index = _index()
    del index["cases"]["gap_fc"]["quantities"]
    folder = _vectors(tmp_path, index)
    with pytest.raises(ValueError, match='index.json is malformed: case \'gap_fc\' has no "quantities"'):
        V.read_index(folder)
    assert _cli_compare(_theirs(tmp_path), folder) == 2
    _one_line(capsys, "index.json is malformed", "quantities")


def test_cases_as_a_list(tmp_path, capsys):
    """C58: "cases" given as a list gave 0.1.0 "list indices must be integers or slices,
    not str"; now ``index.json is malformed: "cases" must be an object``."""
    index = _index(cases=[{"file": "gap_fc.npz"}])
    folder = _vectors(tmp_path, index)
    with pytest.raises(ValueError, match='index.json is malformed: "cases" must be an object'):
        V.read_index(folder)
    assert _cli_compare(_theirs(tmp_path), folder) == 2
    _one_line(capsys, "index.json is malformed", "cases")


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"file": "../../etc/passwd.npz"}, '"file" must be a file name'),
        ({"quantities": "cam"}, '"quantities" must be a list'),
        ({"arrays": {"cam": "abc"}}, '"arrays" must map'),
        ({"quantities": ["cam", "raw"]}, "lacks"),
        ({"tolerances": {"quantities": {"cam": {"float64": "tiny"}}}}, "tolerances"),
        ({"tolerances": []}, "tolerances"),
    ],
)
def test_other_malformed_indexes(tmp_path, capsys, change, needle):
    """Other holes in index.json (a case file outside the directory, wrong kinds, a
    listed quantity without an array, unusable tolerances): one "malformed" line, exit 2."""
    folder = _vectors(tmp_path, _index(**change))
    assert _cli_compare(_theirs(tmp_path), folder) == 2
    _one_line(capsys, "index.json is malformed", needle)


def test_index_not_an_object_and_deep_index(tmp_path, capsys):
    """index.json that is a JSON list, or nested deeper than the JSON bound (0.1.0:
    RecursionError traceback): ValueError, one line."""
    folder = _vectors(tmp_path, [1, 2])
    with pytest.raises(ValueError, match="format_version|malformed"):
        V.read_index(folder)
    (folder / "index.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nests 100000 levels deep"):
        V.read_index(folder)
    assert _cli_compare(_theirs(tmp_path), folder) == 2
    _one_line(capsys, "index.json", "nests")


def _header(shape, descr="<f8") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def test_compare_header_bomb_npy(tmp_path, capsys):
    """C49 (F06): ``npcam compare bomb_header_8TB.npy`` — a 128-byte header claiming 10**12
    float64 — gave 0.1.0 "MemoryError: Unable to allocate 7.28 TiB" and a traceback (exit
    1). Now refused from the header against MAX_CASE_BYTES: one line, exit 2, nothing
    allocated."""
    folder = _vectors(tmp_path)
    bomb = tmp_path / "bomb_header_8TB.npy"
    bomb.write_bytes(_header((10**12,)))
    tracemalloc.start()
    code = _cli_compare(bomb, folder)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert code == 2 and peak < 8 * 2**20
    _one_line(capsys, "bomb_header_8TB.npy", "claims shape (1000000000000,)", "max_bytes")


def test_compare_truncated_and_padded_npy(tmp_path, capsys):
    """A THEIRS.npy cut short is reported truncated (0.1.0 blamed pickles: "is not a .npy
    array of numbers (npcam never unpickles): EOF"), extra bytes are reported too."""
    folder = _vectors(tmp_path)
    data = _theirs(tmp_path).read_bytes()
    cut = tmp_path / "cut.npy"
    cut.write_bytes(data[:-10])
    assert _cli_compare(cut, folder) == 2
    line = _one_line(capsys, "cut.npy", "truncated")
    assert "pickle" not in line
    padded = tmp_path / "padded.npy"
    padded.write_bytes(data + b"\0" * 8)
    assert _cli_compare(padded, folder) == 2
    _one_line(capsys, "padded.npy", "more than the 48")


def test_case_file_deflate_bomb_refused_without_inflating(tmp_path, monkeypatch):
    """A case file that is a deflate bomb (64 MiB of zeros in a few kB): load_case refuses
    it from the zip directory (over MAX_CASE_BYTES, lowered here) before inflating; 0.1.0
    inflated every member with ``np.load`` first."""
    folder = _vectors(tmp_path)
    path = folder / "gap_fc.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("cam.npy", "w", force_zip64=True) as fh:
            fh.write(_header((64 * 2**17,)))
            for _ in range(64):
                fh.write(bytes(2**20))
    assert path.stat().st_size < 200_000
    monkeypatch.setattr(V, "MAX_CASE_BYTES", 2**25)
    tracemalloc.start()
    t0 = time.perf_counter()
    match = r"case file .*gap_fc.npz' inflates to \d+ bytes, more than max_bytes"
    with pytest.raises(ValueError, match=match):
        V.load_case(folder, "gap_fc")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 * 2**20 and time.perf_counter() - t0 < 1.0


def test_case_file_headers_checked_against_index(tmp_path):
    """A case file whose array has another shape than index.json records: refused from the
    header, before the SHA-256 (which would need the data)."""
    folder = _vectors(tmp_path)
    V._write_npz(folder / "gap_fc.npz", {"cam": np.zeros((3, 3))})
    with pytest.raises(ValueError, match="does not match its entry in index.json"):
        V.load_case(folder, "gap_fc")
    (folder / "gap_fc.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="case file .* is not a readable .npz file"):
        V.load_case(folder, "gap_fc")


def test_vector_files_are_written_atomically(tmp_path, monkeypatch):
    """K02: the case files and index.json are written to a temporary file and replaced;
    a write failing half way leaves the old file and no temporary file."""
    folder = _vectors(tmp_path)
    before = (folder / "gap_fc.npz").read_bytes()

    def broken(fp, arr, *args, **kwargs):
        fp.write(b"half")
        raise OSError("No space left on device")

    monkeypatch.setattr(np.lib.format, "write_array", broken)
    with pytest.raises(OSError):
        V._write_npz(folder / "gap_fc.npz", {"cam": CAM + 1})
    monkeypatch.undo()
    assert (folder / "gap_fc.npz").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["gap_fc.npz", "index.json"]
