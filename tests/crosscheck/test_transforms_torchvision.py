"""npcam.image.transforms against torchvision's own ``weights.transforms()``.

torchvision computes the last two steps (to float, normalise) in float32 and npcam in
float64, so the tensors agree to float32 round-off: the bar is 1e-6 (absolute; the values
lie in about [-2.2, 2.7]). The 8-bit pixels after resize and crop are compared exactly
(mean 0, std 1: ``255 · x`` is an integer on both sides).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from npcam.image import transforms as T

torchvision = pytest.importorskip("torchvision")
from torchvision.transforms import InterpolationMode  # noqa: E402
from torchvision.transforms._presets import ImageClassification  # noqa: E402

BAR = 1e-6


def _image(h: int, w: int, seed: int = 0) -> Image.Image:
    """Random content with some smooth structure (so resampling filters matter)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = 127.5 + 100 * np.sin(xx / 7.0)[..., None] * np.cos(yy / 5.0)[..., None] * np.array([1, -1, 0.5])
    px = np.clip(smooth + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(px)


@pytest.mark.parametrize(
    "model, resize, crop, interpolation",
    [
        ("resnet50", 232, 224, "bilinear"),
        ("efficientnet_b0", 256, 224, "bicubic"),
        ("inception_v3", 342, 299, "bilinear"),
    ],
)
@pytest.mark.parametrize("size", [(301, 457), (383, 270)])
def test_equals_weights_transforms(model, resize, crop, interpolation, size):
    """ResNet-50 (232/224), EfficientNet-B0 (bicubic 256/224), Inception-v3 (342/299),
    on landscape and portrait non-square images: equal to ``weights.transforms()(img)``."""
    weights = torchvision.models.get_model_weights(model).DEFAULT
    preset = T.preset_from_torchvision(weights)
    assert (preset.resize_size, preset.crop_size, preset.interpolation) == (resize, crop, interpolation)
    img = _image(*size, seed=len(model))
    ref = weights.transforms()(img).numpy()
    ours = preset(img)
    assert ours.shape == ref.shape == (3, crop, crop) and ours.dtype == np.float64
    assert np.abs(ours - ref).max() <= BAR


@pytest.mark.parametrize("mode", [m.value for m in InterpolationMode])
@pytest.mark.parametrize(
    "size, resize, crop",
    [((57, 91), 40, 31), ((91, 57), 33, 33), ((50, 50), 50, 49), ((20, 33), 15, 24), ((33, 20), 16, 19)],
)
def test_pixels_are_identical_for_every_mode_and_the_padded_crop(mode, size, resize, crop):
    """With mean 0 and std 1, 255 · x is the 8-bit value on both sides: identical for
    every interpolation mode, odd and even margins, no resampling (50 -> 50), and crops
    larger than the resized image (zero padding, odd differences)."""
    img = _image(*size, seed=7)
    tv = ImageClassification(crop_size=crop, resize_size=resize, mean=(0, 0, 0), std=(1, 1, 1),
                             interpolation=InterpolationMode(mode))
    ref = np.rint(tv(img).double().numpy() * 255)
    ours = T.classification_preset(img, resize_size=resize, crop_size=crop, interpolation=mode,
                                   mean=(0, 0, 0), std=(1, 1, 1))
    assert np.array_equal(np.rint(ours * 255), ref)
    assert np.abs(ours * 255 - np.rint(ours * 255)).max() < 1e-9


def test_file_path_equals_torchvision_on_the_opened_rgb_image(tmp_path):
    """A JPEG path through npcam's checked opener equals torchvision on
    ``Image.open(path).convert("RGB")``; a weights name works too."""
    _image(260, 390, seed=3).save(tmp_path / "a.jpg", quality=90)
    weights = torchvision.models.ResNet50_Weights.DEFAULT
    with Image.open(tmp_path / "a.jpg") as im:
        ref = weights.transforms()(im.convert("RGB")).numpy()
    preset = T.preset_from_torchvision("ResNet50_Weights.IMAGENET1K_V2")
    assert preset == T.preset_from_torchvision(weights)
    assert np.abs(preset(tmp_path / "a.jpg") - ref).max() <= BAR
    with pytest.raises(ValueError, match="weights must name a torchvision weights entry"):
        T.preset_from_torchvision("NoSuch_Weights.DEFAULT")


def test_every_classification_weights_entry_is_read():
    """Every classification model's DEFAULT weights give a preset (the CLI relies on it)."""
    models = torchvision.models
    for name in models.list_models(module=models):
        weights = models.get_model_weights(name).DEFAULT
        t = weights.transforms()
        p = T.preset_from_torchvision(weights)
        assert (p.resize_size, p.crop_size) == (t.resize_size[0], t.crop_size[0]), name
        assert p.interpolation == t.interpolation.value, name


def test_detection_weights_are_refused():
    """Weights whose transforms are not an ImageClassification preset: ValueError."""
    weights = torchvision.models.detection.FasterRCNN_ResNet50_FPN_Weights.DEFAULT
    with pytest.raises(ValueError, match="must be an image-classification weights entry"):
        T.preset_from_torchvision(weights)
