"""Regression tests of npcam.image for the fuzz findings of issue 10 § 4.5-4.7 (case ids from
``shared/notes/reliability-findings.md``): hostile image files, unbounded upsampling sizes,
full-resolution float64 copies, and torn writes. Every hostile file is built here."""

import struct
import threading
import tracemalloc
import warnings
import zlib

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image, PngImagePlugin

from npcam.image import (
    IMAGE_FORMATS,
    apply_colormap,
    image_size,
    interpolation_matrices,
    load_image,
    overlay,
    reduction_factor,
    save_image,
    upsample,
)
from npcam.image import io as image_io
from npcam.image import resize as image_resize

EPS = (
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n%%EndComments\n"
    b"newpath 0 0 moveto 10 10 lineto stroke\nshowpage\n%%EOF\n"
)


def _gradient(height: int, width: int) -> np.ndarray:
    """A smooth (H, W, 3) uint8 picture: cheap to encode, different in every channel."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x + y) % 256], -1).astype(
        np.uint8
    )


def _no_warnings(fn, *args, **kwargs):
    """Call ``fn`` recording every warning (none filtered out); return (result, warnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args, **kwargs)
    return result, caught


# ------------------------------------------------------------------------ I14 / C33


def test_postscript_named_png_never_reaches_the_eps_plugin(tmp_path, monkeypatch):
    """I14/C33: a PostScript file named ``.png``. 0.1.0 let Pillow pick its EPS plugin (which
    runs Ghostscript on the file when installed): "could not be read: Unable to locate
    Ghostscript on paths". Now only raster formats are tried: the EPS plugin is never asked,
    and the error says the file is not a readable image."""
    calls = []
    real_open = EpsImagePlugin.EpsImageFile._open

    def spy(self):
        calls.append("eps")
        return real_open(self)

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", spy)
    path = tmp_path / "eps_as.png"
    path.write_bytes(EPS)
    # The file really is one Pillow's EPS plugin takes (what 0.1.0's plain Image.open did).
    with Image.open(path) as im:
        assert im.format == "EPS"
    assert calls == ["eps"]
    calls.clear()
    for fn in (load_image, image_size):
        with pytest.raises(ValueError, match=r"eps_as\.png.*not a readable image"):
            fn(path)
    assert calls == []
    assert not {"EPS", "PS", "PDF"} & set(IMAGE_FORMATS)


@pytest.mark.parametrize(
    ("suffix", "fmt", "lossless"),
    [("png", "PNG", True), ("jpg", "JPEG", False), ("bmp", "BMP", True), ("gif", "GIF", True),
     ("tif", "TIFF", True), ("webp", "WEBP", True), ("ppm", "PPM", True)],
)
def test_every_allowed_raster_format_still_loads(tmp_path, suffix, fmt, lossless):
    """The allow-list keeps the common raster formats readable, with the pixels Pillow decodes."""
    pixels = _gradient(12, 17)
    path = tmp_path / f"x.{suffix}"
    picture = Image.fromarray(pixels)
    if fmt == "GIF":
        picture = picture.quantize(256)
    picture.save(path, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    out, caught = _no_warnings(load_image, path)
    assert caught == []
    with Image.open(path) as im:
        assert im.format == fmt
        want = np.asarray(im.convert("RGB")).transpose(2, 0, 1) / 255.0
    np.testing.assert_array_equal(out, want)
    if lossless and fmt != "GIF":
        np.testing.assert_array_equal(out, pixels.transpose(2, 0, 1) / 255.0)
    assert image_size(path) == (12, 17)


def test_content_decides_not_the_suffix(tmp_path):
    """A PNG named ``.jpg`` is read as the PNG it is."""
    pixels = _gradient(5, 6)
    Image.fromarray(pixels).save(tmp_path / "a.jpg", format="PNG")
    np.testing.assert_array_equal(load_image(tmp_path / "a.jpg"), pixels.transpose(2, 0, 1) / 255.0)


# ------------------------------------------------------------------------ I05 / C34


def _palette_png_with_bytes_transparency(path):
    palette = np.random.default_rng(0).integers(0, 256, size=(256, 3), dtype=np.uint8)
    index = (np.arange(48).reshape(6, 8) * 5 % 256).astype(np.uint8)
    im = Image.fromarray(index, mode="P")
    im.putpalette(palette.ravel().tolist())
    alpha = bytes([0, 64, 128] + [255] * 253)
    im.save(path, transparency=alpha)
    return palette, index


def test_palette_png_with_transparency_loads_without_a_warning(tmp_path):
    """I05/C34: a palette PNG whose tRNS chunk gives per-entry (bytes) transparency. 0.1.0's
    ``convert("RGB")`` leaked Pillow's "Palette images with Transparency expressed in bytes
    should be converted to RGBA images" UserWarning (4 stderr lines in a successful
    ``npcam explain``). Now it converts via RGBA: no warning, the palette's colours, alpha
    dropped."""
    path = tmp_path / "palette_trns.png"
    palette, index = _palette_png_with_bytes_transparency(path)
    with Image.open(path) as im:  # the hazard is real: Pillow's direct conversion warns
        assert im.mode == "P" and isinstance(im.info["transparency"], bytes)
        with pytest.warns(UserWarning, match="Transparency expressed in bytes"):
            im.convert("RGB")
    for kwargs in ({}, {"size": (3, 4)}, {"max_side": 4}):
        out, caught = _no_warnings(load_image, path, **kwargs)
        assert [str(w.message) for w in caught] == []
    out, _ = _no_warnings(load_image, path)
    np.testing.assert_array_equal(out, palette[index].transpose(2, 0, 1) / 255.0)


# ------------------------------------------------------------------------ I12 / C32


def test_ztxt_bomb_becomes_a_value_error_naming_the_file(tmp_path):
    """I12/C32: a 20 kB PNG whose zTXt chunk inflates to 20 MB. 0.1.0 let Pillow's bare
    "Decompressed data too large for PngImagePlugin.MAX_TEXT_CHUNK" ValueError through,
    without the path. Now it is a ValueError naming the file (and keeping Pillow's reason)."""
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "a" * (20 * 2**20), zip=True)
    path = tmp_path / "text_bomb.png"
    Image.new("RGB", (4, 4)).save(path, pnginfo=info)
    assert path.stat().st_size < 100_000
    for fn in (load_image, image_size):
        with pytest.raises(ValueError, match=r"text_bomb\.png.*MAX_TEXT_CHUNK"):
            fn(path)


def test_pillow_warnings_never_leak(tmp_path, monkeypatch):
    """No warning of any kind escapes ``load_image``: a Pillow warning raised while decoding
    (here injected into the PNG decoder's ``load``) is recorded and dropped, and the pixels
    come back."""
    pixels = _gradient(4, 5)
    Image.fromarray(pixels).save(tmp_path / "w.png")
    real_load = PngImagePlugin.PngImageFile.load

    def noisy_load(self):
        warnings.warn("Possibly corrupt EXIF data", UserWarning, stacklevel=1)
        return real_load(self)

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", noisy_load)
    out, caught = _no_warnings(load_image, tmp_path / "w.png")
    assert caught == []
    np.testing.assert_array_equal(out, pixels.transpose(2, 0, 1) / 255.0)


# ------------------------------------------------------------------------------ A72


def test_upsample_to_a_huge_size_is_refused_before_allocating():
    """A72: ``upsample(np.zeros((1, 8, 8)), (100000, 100000))``. 0.1.0: ``MemoryError: Unable
    to allocate 74.5 GiB``. Now a ValueError naming ``size`` and the bound, with nothing
    allocated (traced peak under 1 MB); the total over a batch is bounded too."""
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"size \(100000, 100000\).*MAX_UPSAMPLE_PIXELS"):
            upsample(np.zeros((1, 8, 8)), (100000, 100000))
        with pytest.raises(ValueError, match="MAX_UPSAMPLE_PIXELS"):
            upsample(np.zeros((1, 8, 8)), (100000, 100000), mode="nearest")
        with pytest.raises(ValueError, match=r"11 maps.*MAX_UPSAMPLE_VALUES"):
            upsample(np.zeros((11, 8, 8)), (7000, 7000))
        with pytest.raises(ValueError, match="MAX_UPSAMPLE_PIXELS"):
            interpolation_matrices(100000, 100000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_upsample_bounds_are_module_constants(monkeypatch):
    """The bounds are inclusive and read at call time (a caller can lower them)."""
    monkeypatch.setattr(image_resize, "MAX_UPSAMPLE_PIXELS", 100)
    assert upsample(np.zeros((1, 2, 2)), (10, 10)).shape == (1, 10, 10)
    with pytest.raises(ValueError, match="MAX_UPSAMPLE_PIXELS = 100"):
        upsample(np.zeros((1, 2, 2)), (10, 11))
    monkeypatch.setattr(image_resize, "MAX_UPSAMPLE_VALUES", 200)
    assert upsample(np.zeros((2, 2, 2)), (10, 10)).shape == (2, 10, 10)
    with pytest.raises(ValueError, match="MAX_UPSAMPLE_VALUES = 200"):
        upsample(np.zeros((3, 2, 2)), (10, 10))


# ---------------------------------------------------------------------- B8 / C40 / C41


@pytest.mark.parametrize(
    ("shape", "max_side", "factor"),
    [((7000, 7000), 2048, 4), ((2048, 100), 2048, 1), ((2049, 10), 2048, 2), ((10, 4096), 2048, 2),
     ((4097, 1), 2048, 3), ((30, 13), 8, 4), ((5, 5), 1, 5)],
)
def test_reduction_factor_rule(shape, max_side, factor):
    """The overlay rule: the smallest integer factor that brings the longer side to ``max_side``."""
    assert reduction_factor(shape, max_side) == factor
    assert max(-(-s // factor) for s in shape) <= max_side
    if factor > 1:
        assert max(-(-s // (factor - 1)) for s in shape) > max_side


def test_load_image_max_side_reduces_in_8_bits(tmp_path):
    """B8/C40 (library side): ``load_image(p, max_side=m)`` is Pillow's ``reduce(f)`` of the 8-bit
    image, shape ``(3, ceil(H/f), ceil(W/f))``; an image that fits comes back unchanged."""
    pixels = _gradient(13, 30)
    path = tmp_path / "r.png"
    Image.fromarray(pixels).save(path)
    out = load_image(path, max_side=8)
    assert out.shape == (3, 4, 8)
    want = np.asarray(Image.fromarray(pixels).reduce(4)).transpose(2, 0, 1) / 255.0
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(load_image(path, max_side=30), load_image(path))
    with pytest.raises(ValueError, match="size and max_side"):
        load_image(path, size=4, max_side=8)
    with pytest.raises(ValueError, match="max_side"):
        load_image(path, max_side=0)
    with pytest.raises(TypeError, match="max_side"):
        load_image(path, max_side=2.5)


def test_big_image_needs_no_full_resolution_float64_copy(tmp_path):
    """B8/C40 stand-in (the 7000x7000 measurement is benchmarks/bench_explain_memory.py).
    0.1.0 held the image in float64 at full resolution several times over (load_image, then
    overlay's and save_image's copies: 6.0 GB on 49 Mpx). Now, with ``max_side``, the traced
    peak of loading a 2000x2000 PNG at max_side=500 stays below a quarter of its full-size
    float64 array (96 MB); overlay allocates little beyond its output, save_image little
    beyond the uint8 pixels."""
    path = tmp_path / "big.png"
    Image.fromarray(_gradient(2000, 2000)).save(path)
    full = 3 * 2000 * 2000 * 8
    tracemalloc.start()
    try:
        shown = load_image(path, max_side=500)
        load_peak = tracemalloc.get_traced_memory()[1]
        assert shown.shape == (3, 500, 500)

        image = load_image(path)  # full resolution, float64 (96 MB)
        cam = np.linspace(0, 1, 2000 * 2000).reshape(2000, 2000)
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        out = overlay(image, cam)
        overlay_extra = tracemalloc.get_traced_memory()[1] - base - out.nbytes
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        save_image(tmp_path / "o.png", image)
        save_extra = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert load_peak < full / 4
    assert overlay_extra < full / 4  # 0.1.0: four more full-size float64 arrays
    assert save_extra < full / 4  # 0.1.0: two full-size float64 copies


def test_overlay_values_are_the_plain_float64_blend():
    """overlay's block-wise, table-driven blend equals 0.1.0's expression bit for bit (float64
    and float32 images, several row blocks, a batch)."""
    rng = np.random.default_rng(7)
    cam = rng.uniform(size=(2, 300, 700))
    for dtype in (np.float64, np.float32):
        image = rng.uniform(size=(2, 3, 300, 700)).astype(dtype)
        for alpha in (0.0, 0.3, 0.5, 1.0):
            heat = apply_colormap(cam).astype(np.float64) / 255.0
            want = (1.0 - alpha) * np.moveaxis(image.astype(np.float64), -3, -1) + alpha * heat
            got = overlay(image, cam, alpha=alpha)
            assert got.dtype == np.float64 and got.shape == want.shape
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(overlay(image[1], cam[1], alpha=alpha), want[1])


def test_save_image_quantization_is_unchanged_over_several_blocks(tmp_path):
    """save_image's block-wise ``round(255 v)`` equals 0.1.0's whole-array expression (ties to
    even included, float32 promoted to float64 first), and ``save_image(p, load_image(p))``
    writes back the same bytes, equal to Pillow's own save."""
    rng = np.random.default_rng(8)
    for dtype in (np.float64, np.float32):
        values = (rng.integers(0, 511, size=(3, 700, 700)) / 510.0).astype(dtype)  # many exact ties
        save_image(tmp_path / "q.png", values)
        want = np.rint(255.0 * values.astype(np.float64)).astype(np.uint8).transpose(1, 2, 0)
        with Image.open(tmp_path / "q.png") as im:
            np.testing.assert_array_equal(np.asarray(im), want)
    pixels = _gradient(40, 50)
    Image.fromarray(pixels).save(tmp_path / "pillow.png")
    save_image(tmp_path / "a.png", pixels)
    save_image(tmp_path / "b.png", load_image(tmp_path / "a.png"))
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "pillow.png").read_bytes()


# ------------------------------------------------------------------------- B9 / K02


def test_failed_encode_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    """B9/K02: 0.1.0's ``save_image`` let Pillow open the target with ``w+b`` and then encode,
    so a failing (or concurrent) encode left a truncated or torn file. Now the encode goes to
    a temporary file next to it: on failure the old file is untouched and nothing is left."""
    path = tmp_path / "keep.png"
    save_image(path, _gradient(8, 9))
    before = path.read_bytes()

    def failing_save(im, fp, filename):
        fp.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setitem(Image.SAVE, "PNG", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_image(path, np.zeros((3, 8, 9)))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png"]


def test_save_image_into_a_missing_folder(tmp_path):
    """A missing folder is a FileNotFoundError naming it (no temporary file is attempted)."""
    with pytest.raises(FileNotFoundError, match="nowhere"):
        save_image(tmp_path / "nowhere" / "x.png", np.zeros((3, 2, 2)))


def test_concurrent_writers_leave_a_whole_file(tmp_path):
    """B9/K02: two writers (threads; zlib releases the GIL, so their encodes overlap) write
    different images to one path while a reader decodes it. 0.1.0 tore 14 of 30 demo PNGs.
    Now every read decodes to one writer's image, and so does the final file."""
    path = tmp_path / "shared.png"
    rng = np.random.default_rng(9)
    images = [rng.integers(0, 256, size=(160, 160, 3), dtype=np.uint8) for _ in range(2)]
    save_image(path, images[0])
    done = threading.Event()
    errors: list[str] = []
    reads = []

    def write(k):
        try:
            for _ in range(25):
                save_image(path, images[k])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(repr(exc))

    def read():
        while not done.is_set():
            try:
                with Image.open(path) as im:
                    pixels = np.asarray(im)
            except Exception as exc:
                errors.append(f"torn read: {exc!r}")
                return
            reads.append(any(np.array_equal(pixels, i) for i in images))

    writers = [threading.Thread(target=write, args=(k,)) for k in (0, 1)]
    reader = threading.Thread(target=read)
    reader.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    reader.join()
    assert errors == []
    assert reads and all(reads)
    with Image.open(path) as im:
        final = np.asarray(im)
    assert any(np.array_equal(final, i) for i in images)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.png"]


# --------------------------------------------------------------------- pixel budget


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_image_size_reads_the_header_and_keeps_the_pixel_budget(tmp_path, monkeypatch):
    """``image_size`` needs no pixel data (a header-only PNG) and refuses what load_image refuses."""
    path = tmp_path / "h.png"
    path.write_bytes(_png_header(7000, 7000))
    assert image_size(path) == (7000, 7000)
    path.write_bytes(_png_header(8000, 8000))
    with pytest.raises(ValueError, match=r"h\.png.*MAX_IMAGE_PIXELS"):
        image_size(path)
    monkeypatch.setattr(image_io, "MAX_IMAGE_PIXELS", 10)
    Image.fromarray(_gradient(4, 4)).save(path)
    with pytest.raises(ValueError, match="MAX_IMAGE_PIXELS"):
        load_image(path, max_side=2)
