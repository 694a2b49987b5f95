"""``npcam explain IMAGE --torchvision NAME --weights FILE.safetensors``.

The end-to-end test converts a torchvision ResNet-18 with :func:`npcam.from_torch` (the
torch.fx importer that returns an ``npcam.Graph``) and checks the printed top-5 against
torch's on the same preprocessed tensor. The plumbing (weights checks, preprocessing,
top-5, the overlay of the crop's region) is also tested with a stand-in for the converted
model, and every refusal is one line on stderr with exit code 2 and no traceback.
Random weights keep everything offline; images are tiny and ``--resize`` / ``--crop``
small, so each test takes a second or two.
"""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
from _support import one_error_line
from PIL import Image

import npcam
import npcam.cli.explain as explain_cli
from npcam.cli import main

TOP = re.compile(r"^\s+(\d)\. class (\d+) \((.*)\): ([0-9.]+)$", flags=re.M)


_one_error_line = one_error_line


def _image(path, h=50, w=70, seed=0):
    px = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(px).save(path)
    return px


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """A random-weights torchvision ResNet-18 (seeded) and its .safetensors file."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    stt = pytest.importorskip("safetensors.torch")
    torch.manual_seed(0)
    module = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path_factory.mktemp("weights") / "resnet18.safetensors"
    stt.save_file(module.state_dict(), str(path))
    return module, path


def _torch_top5(module, x: np.ndarray):
    import copy

    import torch

    with torch.no_grad():
        logits = copy.deepcopy(module).double()(torch.from_numpy(x[None].copy()))[0]
    p = torch.softmax(logits, 0).numpy()
    order = np.argsort(-logits.numpy(), kind="stable")[:5]
    return [(int(i), float(p[i])) for i in order]


def _preset(resize, crop):
    import dataclasses

    import torchvision

    preset = npcam.image.preset_from_torchvision(torchvision.models.ResNet18_Weights.DEFAULT)
    return dataclasses.replace(preset, resize_size=resize, crop_size=crop)


def _check_top5(out: str, expected) -> None:
    import torchvision

    categories = torchvision.models.ResNet18_Weights.DEFAULT.meta["categories"]
    printed = [(int(m[0]), int(m[1]), m[2], float(m[3])) for m in TOP.findall(out)]
    assert [p[0] for p in printed] == [1, 2, 3, 4, 5]
    assert [p[1] for p in printed] == [i for i, _ in expected]
    assert [p[2] for p in printed] == [categories[i] for i, _ in expected]
    assert np.allclose([p[3] for p in printed], [q for _, q in expected], rtol=0, atol=5.1e-7)


# ------------------------------------------------------------------- end to end (Graph)
def test_explain_resnet18_end_to_end(tmp_path, capsys, resnet18_file):
    """ResNet-18 converted by npcam.from_torch: the printed top-5 (ImageNet names,
    softmax probabilities) is torch's on the same preprocessed tensor, and the Grad-CAM
    overlay has the image's size."""
    module, weights = resnet18_file
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    _image(src)
    argv = ["explain", str(src), "--torchvision", "resnet18", "--weights", str(weights),
            "--resize", "64", "--crop", "64", "--out", str(dst)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    expected = _torch_top5(module, _preset(64, 64)(src))
    _check_top5(out, expected)
    assert f"grad-cam for class {expected[0][0]} " in out
    with Image.open(dst) as im:
        assert im.size == (70, 50) and im.mode == "RGB"


# ---------------------------------------------------------- the plumbing, with a stand-in
class _TorchStandIn:
    """Computes the converted model's logits with torch itself (for the plumbing test)."""

    def __init__(self, module):
        self.module = module

    def forward(self, x):
        import torch

        with torch.no_grad():
            return self.module(torch.from_numpy(np.ascontiguousarray(x))).numpy()


def test_explain_plumbing_with_a_stand_in_model(tmp_path, capsys, monkeypatch, resnet18_file):
    """With from_torch and the method replaced by stand-ins: the weights reach the torch
    module (the top-5 is torch's with the file's weights), the image goes through the
    ResNet-18 preset with the --resize / --crop overrides, the map is drawn over the
    region of the image the centre crop covers, and the image is unchanged elsewhere."""
    module, weights = resnet18_file
    seen = {}

    def fake_from_torch(m):
        seen["module"] = m
        return _TorchStandIn(m)

    def fake_maps(model, x, target, method, layer=None):
        seen["x"], seen["target"] = x, target
        return np.linspace(0, 1, x.shape[2] * x.shape[3]).reshape(1, x.shape[2], x.shape[3])

    monkeypatch.setattr("npcam.interop.torch.from_torch", fake_from_torch)
    monkeypatch.setattr(explain_cli, "method_maps", fake_maps)
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    px = _image(src, 50, 90, seed=1)
    argv = ["explain", str(src), "--torchvision", "resnet18", "--weights", str(weights),
            "--resize", "40", "--crop", "32", "--out", str(dst)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    x = _preset(40, 32)(src)
    assert np.array_equal(seen["x"][0], x)
    for key, value in module.state_dict().items():
        assert np.array_equal(seen["module"].state_dict()[key].double().numpy(), value.double().numpy()), key
    expected = _torch_top5(module, x)
    _check_top5(out, expected)
    assert seen["target"].tolist() == [expected[0][0]]
    assert "resized to 72x40 (bilinear), centre crop 32x32" in out
    with Image.open(dst) as im:
        assert im.size == (90, 50)
        written = np.asarray(im.convert("RGB"))
    # resized 40 x 72, crop at (4, 20): rows 4..36 -> 5..45 and columns 20..52 -> 25..65 of the image
    inside = np.zeros((50, 90), bool)
    inside[5:45, 25:65] = True
    assert np.array_equal(written[~inside], px[~inside])
    assert (written[inside] != px[inside]).mean() > 0.9


def test_googlenet_aux_tensors_are_skipped_with_a_note(tmp_path):
    """Weights saved from a googlenet with its auxiliary classifiers load into the
    aux_logits=False model the CLI builds: the aux1/aux2 tensors are skipped with one
    note; everything else loads exactly."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    stt = pytest.importorskip("safetensors.torch")
    torch.manual_seed(1)
    full = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    path = tmp_path / "googlenet.safetensors"
    stt.save_file(full.state_dict(), str(path))
    module = torchvision.models.get_model("googlenet", weights=None,
                                          **explain_cli.AUX_MODELS["googlenet"]).double()
    notes: list[str] = []
    explain_cli._load_torch_weights(torch, module, str(path), "googlenet", notes.append)
    assert len(notes) == 1 and "aux1, aux2" in notes[0] and "aux_logits=False" in notes[0]
    loaded = module.state_dict()
    for key, value in full.state_dict().items():
        if key.startswith("aux"):
            assert key not in loaded
        else:
            assert torch.equal(loaded[key], value.to(loaded[key].dtype)), key


# ----------------------------------------------------------------------------- refusals
def test_no_weights_is_refused_with_how_to_convert(tmp_path, capsys):
    """Without --weights: one line saying weights are needed and how to convert a .pth."""
    pytest.importorskip("torchvision")
    _image(tmp_path / "in.png")
    code = main(["explain", str(tmp_path / "in.png"), "--torchvision", "resnet18", "--out",
                 str(tmp_path / "o.png")])
    assert code == 2
    line = _one_error_line(capsys)
    assert "needs --weights FILE.safetensors" in line
    assert "torch.load('model.pth', weights_only=True)" in line and "safetensors.torch.save_file" in line
    assert not (tmp_path / "o.png").exists()


def test_unknown_model_name_is_refused(tmp_path, capsys):
    """A name that is not a torchvision classifier: one line naming the option and the name."""
    pytest.importorskip("torchvision")
    _image(tmp_path / "in.png")
    for name in ("resnet1000", "fasterrcnn_resnet50_fpn"):  # unknown; not a classifier
        code = main(["explain", str(tmp_path / "in.png"), "--torchvision", name, "--weights", "w.safetensors",
                     "--out", str(tmp_path / "o.png")])
        assert code == 2
        line = _one_error_line(capsys)
        assert "--torchvision must name a torchvision classification model" in line and repr(name) in line


def test_model_and_torchvision_are_mutually_exclusive(tmp_path, capsys):
    """--model and --torchvision together, or neither: argparse's one line, exit 2;
    --weights / --resize / --crop with --model: one line."""
    img = str(tmp_path / "in.png")
    _image(tmp_path / "in.png")
    for argv, needle in [
        (["--model", "gap", "--torchvision", "resnet18"], "not allowed with argument"),
        ([], "one of the arguments --model --torchvision --onnx is required"),
        (["--model", "gap", "--weights", "w.safetensors"], "--weights applies only with --torchvision"),
        (["--model", "gap", "--crop", "32"], "--crop applies only with --torchvision"),
    ]:
        try:
            code = main(["explain", img, *argv, "--out", str(tmp_path / "o.png")])
        except SystemExit as exc:
            code = exc.code
        assert code == 2
        assert needle in _one_error_line(capsys)


def test_bad_weights_files_are_one_line(tmp_path, capsys, resnet18_file):
    """A .pth (refused unopened, with how to convert it), a file with the wrong keys, a
    wrong shape, a bad --resize: each one line naming --weights or the option."""
    import torch

    module, weights = resnet18_file
    _image(tmp_path / "in.png")
    sd = module.state_dict()
    torch.save(sd, tmp_path / "r18.pth")
    import safetensors.torch as stt

    renamed = {("head.weight" if k == "fc.weight" else k): v for k, v in sd.items()}
    stt.save_file(renamed, str(tmp_path / "renamed.safetensors"))
    reshaped = dict(sd, **{"fc.bias": torch.zeros(10)})
    stt.save_file(reshaped, str(tmp_path / "reshaped.safetensors"))
    cases = [
        ("r18.pth", [], "pickled PyTorch checkpoint"),
        ("renamed.safetensors", [], "does not match torchvision's resnet18: missing keys ['fc.weight'], "
                                    "unexpected keys ['head.weight']"),
        ("reshaped.safetensors", [], "tensor 'fc.bias' must have shape (1000,)"),
        ("missing.safetensors", [], "missing.safetensors"),
        (str(weights), ["--resize", "0"], "--resize must be a positive number"),
        (str(weights), ["--target", "1000"], "--target must be in [0, 1000)"),
    ]
    for name, extra, needle in cases:
        code = main(["explain", str(tmp_path / "in.png"), "--torchvision", "resnet18", "--weights",
                     str(tmp_path / name), *extra, "--out", str(tmp_path / "o.png")])
        assert code == 2, name
        line = _one_error_line(capsys)
        assert needle in line, line
        if name == "r18.pth":
            assert "weights_only=True" in line and "safetensors.torch.save_file" in line


def test_missing_torch_names_the_crosscheck_extra(tmp_path, capsys, monkeypatch):
    """Without torch (or torchvision): one line naming the crosscheck extra."""
    _image(tmp_path / "in.png")
    monkeypatch.setitem(sys.modules, "torch", None)
    code = main(["explain", str(tmp_path / "in.png"), "--torchvision", "resnet18", "--weights",
                 "w.safetensors", "--out", str(tmp_path / "o.png")])
    assert code == 2
    assert "pip install 'npcam[crosscheck]'" in _one_error_line(capsys)


def test_missing_safetensors_names_its_extra(tmp_path, capsys, monkeypatch, resnet18_file):
    """Without the safetensors package: one line naming the safetensors extra."""
    _, weights = resnet18_file
    _image(tmp_path / "in.png")
    monkeypatch.setitem(sys.modules, "safetensors", None)
    code = main(["explain", str(tmp_path / "in.png"), "--torchvision", "resnet18", "--weights", str(weights),
                 "--out", str(tmp_path / "o.png")])
    assert code == 2
    assert "pip install 'npcam[safetensors]'" in _one_error_line(capsys)
