"""Cross-check of the ``pytorch-grad-cam`` convention against pytorch-grad-cam itself.

Optional: skipped unless ``pytorch_grad_cam`` (pip ``grad-cam``), ``cv2`` and ``torch``
are importable; they are not part of any npcam extra. Checked with grad-cam 1.5.7,
opencv-python-headless 5.0.0.93, torch 2.14.1 (CPU), in a separate environment:

    pip install torch==2.14.1 torchvision==0.29.1 grad-cam opencv-python-headless \
        numpy scipy pillow pytest hypothesis
    PYTHONPATH=. pytest tests/optional

A small torch CNN is copied into npcam; ``GradCAM(model, [layer])(x, targets)`` with
``ClassifierOutputTarget`` is compared with ``npcam.conventions.grad_cam(...,
convention="pytorch-grad-cam")``. Both return float32 maps in [0, 1]. Bars:

* float64 torch model: 1e-6 absolute. OpenCV's ``cv2.resize`` goes through Intel IPP
  by default, whose float32 rounding differs from OpenCV's own kernel (which npcam
  reproduces bit for bit) by a few ulps;
* the same with IPP switched off: 3e-7 (the float64 maps of torch and npcam differ in the
  last bits, which can flip a float32 rounding);
* float32 torch model: 1e-5 (pytorch-grad-cam then runs its first normalisation in
  float32, npcam in float64).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytorch_grad_cam", reason="optional: needs pip grad-cam")
cv2 = pytest.importorskip("cv2", reason="optional: needs opencv-python(-headless)")
torch = pytest.importorskip("torch", reason="optional: needs torch")

from pytorch_grad_cam import GradCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

import npcam  # noqa: E402
from npcam.verify import conventions as C  # noqa: E402

nn = torch.nn
LAYER = "4"


@pytest.fixture
def ipp():
    """Set OpenCV's IPP switch for one test and restore it afterwards."""
    before = cv2.ipp.useIPP()
    yield cv2.ipp.setUseIPP
    cv2.ipp.setUseIPP(before)


def _nets(dtype):
    torch.manual_seed(1)
    tnet = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    ).to(dtype).eval()
    npnet = npcam.Sequential(
        npcam.Conv2d(3, 6, kernel_size=3, padding=1), npcam.ReLU(),
        npcam.MaxPool2d(2),
        npcam.Conv2d(6, 8, kernel_size=3, padding=1), npcam.ReLU(),
        npcam.GlobalAvgPool2d(), npcam.Flatten(), npcam.Linear(8, 5),
    )
    npnet.load_state_dict(
        {k: v.detach().double().numpy().copy() for k, v in tnet.state_dict().items()}
    )
    return tnet, npnet


def _upstream(tnet, x, target, dtype):
    targets = None if target is None else [ClassifierOutputTarget(int(c)) for c in target]
    with GradCAM(model=tnet, target_layers=[tnet[int(LAYER)]]) as cam:
        return cam(input_tensor=torch.from_numpy(x).to(dtype), targets=targets)


X_SHAPES = [(2, 3, 14, 14), (3, 3, 13, 19), (1, 3, 32, 24), (2, 3, 224, 224)]


@pytest.mark.parametrize("shape", X_SHAPES)
@pytest.mark.parametrize("use_ipp, bar", [(True, 1e-6), (False, 3e-7)])
def test_float64_model(ipp, shape, use_ipp, bar):
    ipp(use_ipp)
    tnet, npnet = _nets(torch.float64)
    x = np.random.default_rng(sum(shape)).standard_normal(shape)
    for target in (None, [k % 5 for k in range(shape[0])]):
        ref = _upstream(tnet, x, target, torch.float64)
        out = C.grad_cam(npnet, x, target, LAYER, convention="pytorch-grad-cam")
        assert out.shape == ref.shape == (shape[0], *shape[2:])
        assert out.dtype == ref.dtype == np.float32
        assert np.abs(out - ref).max() <= bar


@pytest.mark.parametrize("shape", X_SHAPES)
def test_float32_model(shape):
    tnet, npnet = _nets(torch.float32)
    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
    ref = _upstream(tnet, x, None, torch.float32)
    out = C.grad_cam(npnet, x.astype(np.float64), None, LAYER, convention="pytorch-grad-cam")
    assert np.abs(out - ref).max() <= 1e-5


@pytest.mark.parametrize("h, w", [(1, 1), (2, 3), (3, 5), (7, 7), (14, 14)])
def test_resize_is_opencv_bit_for_bit_without_ipp(ipp, h, w):
    ipp(False)
    maps = np.random.default_rng(h * w).random((1, h, w)).astype(np.float32)
    for size in [(h, w), (2 * h, 3 * w), (h + 5, w + 11), (224, 224)]:
        ref = cv2.resize(maps[0], (size[1], size[0]))  # dsize is (width, height)
        np.testing.assert_array_equal(C.opencv_resize_linear(maps, size)[0], ref)


def test_resize_vertical_border_rounding_matches_opencv(ipp):
    ipp(False)
    col = np.array([[[1.9], [0.0], [0.0]]], np.float32)
    ref = cv2.resize(col[0], (1, 7))
    out = C.opencv_resize_linear(col, (7, 1))
    np.testing.assert_array_equal(out[0], ref)
    assert ref[0, 0] != np.float32(1.9)  # OpenCV's own top row is not the copied value
