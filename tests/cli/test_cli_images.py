"""``npcam explain`` on hostile and large image files (issue 10 § 4.5, case ids from
``shared/notes/reliability-findings.md``): one line on stderr and exit 2 for what is refused,
no warning for what is accepted, and an overlay of bounded size for big images."""

import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

import npcam.cli.explain as explain_cli
from npcam.cli import main


def _run(argv, capsys):
    """(exit code, stdout, stderr, warnings) of ``npcam ARGV`` run in-process."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own usage errors
            code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err, [str(w.message) for w in caught]


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _gradient(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x * y) % 256], -1).astype(
        np.uint8
    )


def _explain(path, out):
    return ["explain", str(path), "--model", "gap", "--out", str(out)]


def test_explain_refuses_a_postscript_file_named_png(tmp_path, capsys):
    """C33 (I14): 0.1.0 printed "could not be read: Unable to locate Ghostscript on paths" —
    Pillow's EPS plugin had taken the file. Now: not a readable image, one line, exit 2."""
    src = tmp_path / "eps_as.png"
    src.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n")
    code, _, err, caught = _run(_explain(src, tmp_path / "o.png"), capsys)
    assert code == 2
    line = _one_line(err)
    assert "eps_as.png" in line and "not a readable image" in line and "Ghostscript" not in line
    assert caught == []
    assert not (tmp_path / "o.png").exists()


def test_explain_palette_with_transparency_prints_no_warning(tmp_path, capsys):
    """C34 (I05): 0.1.0 exited 0 but printed Pillow's 4-line "Palette images with Transparency
    expressed in bytes" UserWarning. Now exit 0, an empty stderr, no warning raised."""
    src = tmp_path / "palette_trns.png"
    index = (np.arange(40 * 50).reshape(40, 50) % 7).astype(np.uint8)
    im = Image.fromarray(index, mode="P")
    im.putpalette([v for k in range(256) for v in (k * 30 % 256, k * 70 % 256, 255 - k)])
    im.save(src, transparency=bytes([0, 100] + [255] * 254))
    code, out, err, caught = _run(_explain(src, tmp_path / "o.png"), capsys)
    assert (code, err, caught) == (0, "", [])
    assert "written to" in out
    with Image.open(tmp_path / "o.png") as result:
        assert result.size == (50, 40)


def test_explain_ztxt_bomb_names_the_file(tmp_path, capsys):
    """C32 (I12): 0.1.0 said only "Decompressed data too large for
    PngImagePlugin.MAX_TEXT_CHUNK", without the path. Now the one line names the file."""
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "z" * (20 * 2**20), zip=True)
    src = tmp_path / "text_bomb.png"
    Image.new("RGB", (8, 8)).save(src, pnginfo=info)
    code, _, err, _ = _run(_explain(src, tmp_path / "o.png"), capsys)
    assert code == 2
    line = _one_line(err)
    assert "text_bomb.png" in line and "MAX_TEXT_CHUNK" in line


@pytest.mark.parametrize(
    ("height", "width", "shown"),
    [(300, 2500, (150, 1250)), (10, 2048, (10, 2048)), (2049, 10, (1025, 5)), (64, 64, (64, 64))],
)
def test_explain_overlay_longer_side_is_at_most_2048(tmp_path, capsys, monkeypatch, height, width, shown):
    """B8/C40 stand-in (the 7000x7000 run is benchmarks/bench_explain_memory.py: 0.1.0 peaked
    at 6.0 GB and took 43 s). The overlay is the image reduced by the smallest integer factor
    that brings its longer side to at most 2048 px, and no float64 array at the image's full
    resolution is ever made when it is reduced (every load_image result is checked)."""
    src = tmp_path / "in.png"
    Image.fromarray(_gradient(height, width)).save(src)
    loaded = []
    real_load = explain_cli.load_image

    def recording_load(*args, **kwargs):
        result = real_load(*args, **kwargs)
        loaded.append(result.shape)
        return result

    monkeypatch.setattr(explain_cli, "load_image", recording_load)
    code, out, err, caught = _run(_explain(src, tmp_path / "o.png"), capsys)
    assert (code, err, caught) == (0, "", [])
    with Image.open(tmp_path / "o.png") as result:
        assert (result.height, result.width) == shown
    assert max(shown) <= 2048
    assert loaded == [(3, 64, 64), (3, *shown)]
    assert ("reduced" in out) == (shown != (height, width))


def test_explain_input_methods_are_unaffected_by_the_overlay_rule(tmp_path, capsys):
    """Input-resolution methods (guided backpropagation) still write the model-size map."""
    src = tmp_path / "in.png"
    Image.fromarray(_gradient(300, 2500)).save(src)
    argv = _explain(src, tmp_path / "o.png") + ["--method", "guided-backprop"]
    code, _, err, caught = _run(argv, capsys)
    assert (code, err, caught) == (0, "", [])
    with Image.open(tmp_path / "o.png") as result:
        assert result.size == (64, 64)


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_explain_keeps_the_50_mpx_budget(tmp_path, capsys):
    """An image above the library's 50 Mpx budget (8000x8000, checked from its header) is
    refused with one line, exit 2, before anything is decoded."""
    src = tmp_path / "huge.png"
    src.write_bytes(_png_header(8000, 8000))
    code, _, err, _ = _run(_explain(src, tmp_path / "o.png"), capsys)
    assert code == 2
    line = _one_line(err)
    assert "huge.png" in line and "MAX_IMAGE_PIXELS" in line


def test_explain_out_of_memory_is_one_line(tmp_path, capsys, monkeypatch):
    """C41: under ``ulimit -v 3145728`` 0.1.0 died with a 16-line ``_ArrayMemoryError``
    traceback, exit 1 (the 7000x7000 run now fits: see the benchmark). Should memory still
    run out, the command says so in one line, exit 2."""
    src = tmp_path / "in.png"
    Image.fromarray(_gradient(20, 30)).save(src)

    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 1.10 GiB")

    monkeypatch.setattr(explain_cli, "overlay", no_memory)
    code, _, err, _ = _run(_explain(src, tmp_path / "o.png"), capsys)
    assert code == 2
    line = _one_line(err)
    assert "memory" in line and "in.png" in line


def test_explain_help_states_the_overlay_rule(capsys):
    """``npcam explain --help`` states the rule and the formats."""
    code, out, _, _ = _run(["explain", "--help"], capsys)
    assert code == 0
    text = " ".join(out.split())
    assert "reduced by the smallest integer factor" in text and "2048" in text
    assert "PNG" in text and "TIFF" in text
