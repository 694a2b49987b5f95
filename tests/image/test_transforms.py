"""npcam.image.transforms: torchvision's ImageNet classification preset, without torchvision.

The rules are checked one by one on hand-worked cases (the resized size, the crop's
rounding, the zero padding, no resampling when the shorter side is already right, the
normalisation) and against Pillow's own resize; the comparison with torchvision itself is
tests/crosscheck/test_transforms_torchvision.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import npcam
from npcam.image import transforms as T

MEAN = np.array(T.IMAGENET_MEAN)[:, None, None]
STD = np.array(T.IMAGENET_STD)[:, None, None]


def _pixels(h, w, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _expected(pixels_hwc: np.ndarray, mean=MEAN, std=STD) -> np.ndarray:
    return (pixels_hwc.transpose(2, 0, 1) / 255.0 - mean) / std


@pytest.mark.parametrize(
    "size, resize, resized",
    [
        ((300, 400), 256, (256, 341)),  # int(256 * 400 / 300) = int(341.33)
        ((400, 300), 256, (341, 256)),  # portrait: the width is the shorter side
        ((333, 500), 232, (232, 348)),  # int(348.348...)
        ((224, 224), 232, (232, 232)),
        ((10, 1000), 20, (20, 2000)),
        ((999, 1000), 256, (256, 256)),  # int(256.256...) = 256
    ],
)
def test_resized_size_is_torchvisions_rule(size, resize, resized):
    """The shorter side becomes resize_size, the longer int(resize_size · long / short)."""
    g = T.ClassificationPreset(resize_size=resize, crop_size=16).geometry(*size)
    assert g.resized == resized


@pytest.mark.parametrize(
    "side, crop, start",
    [(224, 224, 0), (225, 224, 0), (226, 224, 1), (227, 224, 2), (229, 224, 2), (231, 224, 4),
     (232, 224, 4), (341, 224, 58), (220, 224, -2), (221, 224, -1), (223, 224, 0), (1, 4, -1)],
)
def test_crop_start_rounds_halves_to_even_and_pads_with_floor(side, crop, start):
    """top = int(round((h - crop) / 2.0)) (Python's round: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2,
    3.5 -> 4); a side shorter than the crop is padded (crop - h) // 2 before."""
    assert T._crop_start(side, crop) == start


def test_no_resampling_when_the_shorter_side_is_already_right():
    """torchvision returns the image untouched when its size is already the target:
    the output is the exact crop of the pixels, normalised in float64."""
    px = _pixels(40, 61)
    out = T.classification_preset(px, resize_size=40, crop_size=33)
    top, left = T._crop_start(40, 33), T._crop_start(61, 33)
    assert (top, left) == (4, 14)  # round(3.5) = 4, round(14.0)
    assert out.dtype == np.float64 and out.shape == (3, 33, 33)
    assert np.array_equal(out, _expected(px[top : top + 33, left : left + 33]))


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest", "lanczos", "box", "hamming"])
def test_resize_is_pillows_resize_with_the_named_filter(interpolation):
    """The resized 8-bit image is Pillow's Image.resize((w, h), filter) of the RGB image,
    as torchvision's PIL path calls it."""
    px = _pixels(57, 83, seed=1)
    out = T.classification_preset(px, resize_size=30, crop_size=24, interpolation=interpolation)
    im = Image.fromarray(px).resize((43, 30), T.INTERPOLATIONS[interpolation])  # int(30 * 83 / 57) = 43
    ref = np.asarray(im)[3:27, 10:34]  # top round(3.0), left round(9.5) = 10
    assert np.array_equal(out, _expected(ref))


def test_bicubic_and_bilinear_differ():
    """The interpolation argument is used (EfficientNet's bicubic is not bilinear)."""
    px = _pixels(50, 70, seed=2)
    a = T.classification_preset(px, resize_size=31, crop_size=31)
    b = T.classification_preset(px, resize_size=31, crop_size=31, interpolation="bicubic")
    assert not np.array_equal(a, b)


def test_crop_larger_than_the_image_pads_with_zeros():
    """A side shorter than the crop is padded with black: (crop - h) // 2 rows before,
    the rest after; the padded pixels are (0 - mean) / std."""
    px = _pixels(8, 12, seed=3)
    out = T.classification_preset(px, resize_size=8, crop_size=11)
    top, left = T._crop_start(8, 11), T._crop_start(12, 11)
    assert (top, left) == (-1, 0)  # pad (11 - 8) // 2 = 1 row before; round(0.5) = 0
    canvas = np.zeros((11, 11, 3), dtype=np.uint8)
    canvas[1:9] = px[:, left : left + 11]
    assert np.array_equal(out, _expected(canvas))
    black = np.broadcast_to(((0 - MEAN) / STD)[:, 0], (3, 11))
    assert np.array_equal(out[:, 0], black) and np.array_equal(out[:, 9], black)


def test_inputs_path_pil_and_array_agree(tmp_path):
    """A path, a PIL image and an (H, W, 3) uint8 array give the same result; gray,
    palette and RGBA images are converted to RGB first (alpha dropped)."""
    px = _pixels(45, 32, seed=4)
    Image.fromarray(px).save(tmp_path / "a.png")
    kw = dict(resize_size=20, crop_size=16)
    a = T.classification_preset(tmp_path / "a.png", **kw)
    b = T.classification_preset(Image.fromarray(px), **kw)
    c = T.classification_preset(px, **kw)
    d = T.ClassificationPreset(20, 16)(str(tmp_path / "a.png"))
    assert np.array_equal(a, b) and np.array_equal(a, c) and np.array_equal(a, d)
    rgba = Image.fromarray(np.dstack([px, np.full(px.shape[:2], 7, np.uint8)]), "RGBA")
    assert np.array_equal(T.classification_preset(rgba, **kw), a)
    gray = Image.fromarray(px[:, :, 0])
    g = T.classification_preset(gray, **kw)
    assert np.array_equal(g, T.classification_preset(gray.convert("RGB"), **kw))


def test_custom_mean_and_std():
    """mean = 0, std = 1 gives the 8-bit values over 255; the preset's fields are floats."""
    px = _pixels(16, 16, seed=5)
    out = T.classification_preset(px, resize_size=16, crop_size=16, mean=(0, 0, 0), std=[1, 1, 1])
    assert np.array_equal(out, px.transpose(2, 0, 1) / 255.0)
    p = T.ClassificationPreset(16, 16, mean=np.zeros(3), std=(1, 2, 3))
    assert p.mean == (0.0, 0.0, 0.0) and p.std == (1.0, 2.0, 3.0)


def test_geometry_locates_the_crop():
    """geometry gives the resized size and the crop's corner, for drawing a map back."""
    g = T.ClassificationPreset(resize_size=232, crop_size=224).geometry(480, 640)
    assert g == T.PresetGeometry((232, 309), 4, 42, 224)  # int(309.33); round(4.0); round(42.5) = 42


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(resize_size=0, crop_size=4), ValueError, "resize_size"),
        (dict(resize_size=2.5, crop_size=4), TypeError, "resize_size"),
        (dict(resize_size=True, crop_size=4), TypeError, "resize_size"),
        (dict(resize_size=8, crop_size=-1), ValueError, "crop_size"),
        (dict(resize_size=8, crop_size=4, interpolation="cubic"), ValueError, "interpolation must be one of"),
        (dict(resize_size=8, crop_size=4, mean=(0.5, 0.5)), ValueError, "mean must be 3 finite"),
        (dict(resize_size=8, crop_size=4, mean=(0.5, np.nan, 0.5)), ValueError, "mean must be 3 finite"),
        (dict(resize_size=8, crop_size=4, std=(1, 0, 1)), ValueError, "std must be 3 positive"),
        (dict(resize_size=8, crop_size=4, std="abc"), TypeError, "std must be 3 numbers"),
        (dict(resize_size=10**5, crop_size=4), ValueError, "MAX_IMAGE_PIXELS"),
    ],
)
def test_bad_parameters(kwargs, error, match):
    """Each bad parameter: one sentence naming it."""
    with pytest.raises(error, match=match):
        T.classification_preset(_pixels(8, 8), **kwargs)


def test_bad_images(tmp_path):
    """Wrong types and shapes, a missing file, a non-image, and a resized size over the
    pixel budget (checked before resampling, not reported as a decoding failure)."""
    kw = dict(resize_size=8, crop_size=8)
    with pytest.raises(TypeError, match="image must be an image file path"):
        T.classification_preset(123, **kw)
    for bad in (np.zeros((8, 8, 3)), np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8)):
        with pytest.raises(ValueError, match=r"image must be an \(H, W, 3\) uint8 array"):
            T.classification_preset(bad, **kw)
    with pytest.raises(FileNotFoundError):
        T.classification_preset(tmp_path / "missing.png", **kw)
    (tmp_path / "t.png").write_text("not an image")
    with pytest.raises(ValueError, match="t.png"):
        T.classification_preset(tmp_path / "t.png", **kw)
    Image.fromarray(_pixels(1, 4000)).save(tmp_path / "strip.png")
    with pytest.raises(ValueError, match=r"^an image of 4000 x 1 pixels .* MAX_IMAGE_PIXELS") as info:
        T.classification_preset(tmp_path / "strip.png", resize_size=4000, crop_size=8)
    assert "could not be read" not in str(info.value)


def _fake_weights(**transform):
    """A stand-in for a torchvision weights entry (no torchvision needed)."""
    attrs = dict(resize_size=[232], crop_size=[224], interpolation=SimpleNamespace(value="bicubic"),
                 mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], antialias=True)
    attrs.update(transform)

    class Weights:
        def transforms(self):
            return SimpleNamespace(**attrs)

        def __str__(self):
            return "Fake_Weights.IMAGENET1K_V1"

    return Weights()


def test_preset_from_torchvision_reads_the_transform_attributes():
    """resize_size, crop_size (one-element lists), interpolation (an enum's value), mean, std."""
    p = T.preset_from_torchvision(_fake_weights())
    assert p == T.ClassificationPreset(232, 224, "bicubic")
    assert p.name == "Fake_Weights.IMAGENET1K_V1"
    with pytest.raises(ValueError, match="must be an image-classification weights entry"):
        T.preset_from_torchvision(_fake_weights(crop_size=[224, 224]))
    with pytest.raises(ValueError, match="must be an image-classification weights entry"):
        T.preset_from_torchvision(_fake_weights(resize_size=None))
    with pytest.raises(TypeError, match="weights must be a torchvision weights entry"):
        T.preset_from_torchvision(42)


def test_exported_from_npcam_image():
    """The preset is part of npcam.image's lazy namespace."""
    for name in ("classification_preset", "preset_from_torchvision", "ClassificationPreset",
                 "IMAGENET_MEAN", "IMAGENET_STD"):
        assert getattr(npcam.image, name) is getattr(T, name)
        assert name in npcam.image.__all__
