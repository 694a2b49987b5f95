"""``npcam explain IMAGE --onnx FILE``: the image resized to the exported input size,
fed in [0, 1] or normalised per channel, the map written; every misuse one line on
stderr, exit 2, no traceback."""

from __future__ import annotations

import numpy as np
import pytest
from _support import one_error_line

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from PIL import Image  # noqa: E402

import npcam  # noqa: E402
from npcam.cli import main  # noqa: E402
from npcam.image import load_image  # noqa: E402

_one_error_line = one_error_line


def _image(path, h=50, w=70, seed=0):
    px = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(px).save(path)


def _cnn(path, x_shape=(1, 3, 16, 16), nhwc=False):
    """conv 3→6 (pad 1) → ReLU → GAP → Flatten → Gemm(4), float64, seeded."""
    rng = np.random.default_rng(1)
    first = "t" if nhwc else "x"
    nodes = [helper.make_node("Conv", [first, "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "B", "C"], ["y"], transB=1, name="fc")]
    if nhwc:
        nodes.insert(0, helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2], name="to_nchw"))
    inits = {"w": rng.standard_normal((6, 3, 3, 3)), "b": rng.standard_normal(6),
             "B": rng.standard_normal((4, 6)), "C": rng.standard_normal(4)}
    graph = helper.make_graph(nodes, "cnn",
                              [helper.make_tensor_value_info("x", TensorProto.DOUBLE, list(x_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [x_shape[0], 4])],
                              initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return str(path)


def test_explain_with_an_onnx_model_writes_the_map_of_the_predicted_class(tmp_path, capsys):
    img, out = str(tmp_path / "in.png"), str(tmp_path / "cam.png")
    _image(img)
    model = _cnn(tmp_path / "m.onnx")
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    argv = ["explain", img, "--onnx", model, "--mean", *map(str, mean), "--std", *map(str, std), "--out", out]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    # the class npcam names is the argmax of the model on the resized, normalised image
    x = (load_image(img, size=(16, 16)) - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    logits = npcam.from_onnx(model).forward(x[None])[0]
    assert f"grad-cam for class {int(logits.argmax())} " in printed
    assert f"1. class {int(logits.argmax())}:" in printed
    assert "resized" in printed and "to the model's input 16x16" in printed
    assert Image.open(out).size == (70, 50)


def test_an_nhwc_model_is_explained_through_its_nchw_core(tmp_path, capsys):
    img, out = str(tmp_path / "in.png"), str(tmp_path / "cam.png")
    _image(img)
    model = _cnn(tmp_path / "m.onnx", x_shape=(1, 16, 16, 3), nhwc=True)
    assert main(["explain", img, "--onnx", model, "--layer", "relu", "--out", out]) == 0
    printed = capsys.readouterr().out
    x = load_image(img, size=(16, 16))
    c = int(npcam.from_onnx(model).forward(np.moveaxis(x, 0, -1)[None]).argmax())
    assert "takes NHWC images" in printed and f"grad-cam for class {c} " in printed


def test_input_size_only_for_dynamic_spatial_dimensions(tmp_path, capsys):
    img, out = str(tmp_path / "in.png"), str(tmp_path / "cam.png")
    _image(img)
    static = _cnn(tmp_path / "s.onnx")
    assert main(["explain", img, "--onnx", static, "--input-size", "20", "20", "--out", out]) == 2
    assert "was exported at 16x16" in _one_error_line(capsys)
    dynamic = _cnn(tmp_path / "d.onnx", x_shape=("N", 3, "H", "W"))
    assert main(["explain", img, "--onnx", dynamic, "--out", out]) == 2
    assert "give --input-size H W" in _one_error_line(capsys)
    assert main(["explain", img, "--onnx", dynamic, "--input-size", "24", "20", "--out", out]) == 0
    assert "to the model's input 20x24" in capsys.readouterr().out


@pytest.mark.parametrize("extra,needle", [
    (["--mean", "0.5", "0.5"], "--mean needs one value per input channel (3), got 2"),
    (["--mean", "0.5", "0.5", "0.5"], "--mean and --std go together"),
    (["--mean", "0", "0", "0", "--std", "1", "0", "1"], "--std values must be positive"),
    (["--weights", "w.safetensors"], "--weights applies only with --torchvision"),
    (["--layer", "nope"], "layer 'nope' is not in the graph"),
    (["--target", "7"], "--target must be in [0, 4)"),
])
def test_misuse_is_one_line(tmp_path, capsys, extra, needle):
    img = str(tmp_path / "in.png")
    _image(img)
    model = _cnn(tmp_path / "m.onnx")
    assert main(["explain", img, "--onnx", model, *extra, "--out", str(tmp_path / "o.png")]) == 2
    assert needle in _one_error_line(capsys)


def test_not_an_onnx_file_and_onnx_options_without_onnx(tmp_path, capsys):
    img = str(tmp_path / "in.png")
    _image(img)
    assert main(["explain", img, "--onnx", img, "--out", str(tmp_path / "o.png")]) == 2
    assert "is not an ONNX model" in _one_error_line(capsys)
    argv = ["explain", img, "--model", "gap", "--input-size", "8", "8", "--out", str(tmp_path / "o.png")]
    assert main(argv) == 2
    assert "--input-size applies only with --onnx" in _one_error_line(capsys)
