"""The ``npcam`` command: the demo end to end, ``explain`` on a user's file, and the
error rule (one line on stderr, exit code 2, no traceback)."""

import warnings

import numpy as np
import pytest
from _support import one_error_line
from PIL import Image

import npcam
from npcam.cli import main

# A panel tile is a 64×64 scene enlarged 3× (192 px) with 4 px gaps, under a 16 px title
# row and right of a 70 px label column (npcam.cli.demo.panel).
TILE, GAP, TOP, LEFT = 192, 4, 16, 70


_one_error_line = one_error_line


def test_version(capsys):
    """``npcam --version`` prints the package version."""
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert npcam.__version__ in capsys.readouterr().out


def test_demo_writes_decodable_panels_of_the_stated_size(tmp_path, capsys):
    """The demo writes one PNG per scene and model; single-object scenes have one row,
    two-object scenes two (one per class); the columns are the input and one per method
    of npcam.METHODS with in_demo (CAM, Grad-CAM, guided backprop, Guided Grad-CAM,
    counterfactual, Deconvolution Grad-CAM, Grad-CAM++, HiResCAM, Score-CAM): 10 for the
    gap model (CAM applies), 9 for vgg. Its printed checks say the CAM identity holds."""
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "holds" in out
    files = sorted(tmp_path.glob("*.png"))
    assert len(files) == 10
    for f in files:
        with Image.open(f) as im:
            im.load()
            shown = [m for m in npcam.METHODS.values() if m.in_demo]
            assert len(shown) == 9
            columns = 1 + len(shown) - (0 if f.name.startswith("gap") else 1)
            rows = 2 if f.stem.endswith(("scene3", "scene4")) else 1
            assert im.size == (LEFT + columns * (TILE + GAP), TOP + rows * (TILE + GAP))
            assert im.mode == "RGB"
        assert str(f) in out


def test_explain_writes_an_overlay_at_the_image_size(tmp_path, capsys):
    """``npcam explain`` resizes a user's image to the model input (saying so) and writes
    the map overlaid on the original image, at the original size."""
    scene = npcam.evaluation.scenes.make_scenes(1, seed=5).images[0]
    big = np.kron(scene, np.ones((1, 2, 3)))  # 128 × 192: not the model's size
    src = tmp_path / "in.png"
    npcam.save_image(src, big)
    dst = tmp_path / "out.png"
    assert main(["explain", str(src), "--model", "gap", "--out", str(dst)]) == 0
    out = capsys.readouterr().out
    assert "resized" in out
    with Image.open(dst) as im:
        assert im.size == (192, 128)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["explain", "missing.png", "--model", "gap", "--out", "o.png"], "missing.png"),
        (["explain", "{text}", "--model", "gap", "--out", "o.png"], "not"),
        (["explain", "{image}", "--model", "gap", "--target", "7", "--out", "o.png"], "--target"),
        (["explain", "{image}", "--model", "nope", "--out", "o.png"], "--model"),
        (["explain", "{image}", "--model", "gap", "--method", "magic", "--out", "o.png"], "method"),
        (["demo", "--model", "nope"], "--model"),
        (["evaluate", "--n", "0"], "--n"),
        (["demo", "--methods", "grad-cam,magic"], "--methods"),
        (["evaluate", "--methods", "magic"], "--methods"),
        (["evaluate", "--methods", ","], "--methods"),
        (["nosuchcommand"], "invalid choice"),
    ],
)
def test_cli_errors_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch, argv, needle):
    """Bad input: one line on stderr naming the problem, exit code 2, no traceback."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.png").write_text("this is not an image")
    npcam.save_image(tmp_path / "i.png", npcam.evaluation.scenes.make_scenes(1, seed=1).images[0])
    argv = [a.format(text=str(tmp_path / "t.png"), image=str(tmp_path / "i.png")) for a in argv]
    assert _exit_code(argv) == 2
    assert needle in _one_error_line(capsys)


def _exit_code(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        return exc.code


def test_demo_negative_seed_is_reported_as_given(tmp_path, capsys):
    """C65: ``npcam demo --seed -5000`` reported "seed must be an int >= 0, got -4000" (an
    internal offset). Now the message shows -5000, in one line, exit 2."""
    assert main(["demo", "--out", str(tmp_path), "--seed", "-5000"]) == 2
    line = _one_error_line(capsys)
    assert "got -5000" in line and "-4000" not in line


def test_memory_error_is_one_line(monkeypatch, capsys):
    """W3: a MemoryError inside a command was a traceback; the CLI turns it into one line
    on stderr with exit code 2."""
    import npcam.cli.evaluate as ev

    def boom(*args, **kwargs):
        raise MemoryError("Unable to allocate 8.94 TiB")

    monkeypatch.setattr(ev, "localization_table", boom)
    assert main(["evaluate", "--n", "10"]) == 2
    line = _one_error_line(capsys)
    assert "out of memory" in line and "8.94 TiB" in line


def test_evaluate_methods_selects_the_rows(capsys):
    """``npcam evaluate --methods hires-cam,grad-cam`` prints the centre-box row and one row
    per selected method and model, in the registry's order, and no other method."""
    assert main(["evaluate", "--n", "3", "--model", "gap", "--methods", "hires-cam,grad-cam"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| gap |")]
    assert [r.split("|")[2].strip() for r in rows] == ["Grad-CAM", "HiResCAM"]


def test_demo_method_selection():
    """``--methods``: absent or "demo" → the in_demo methods; "all" → every method; a
    comma-separated list → those, in the given order."""
    from npcam.cli.demo import select_methods

    in_demo = tuple(n for n, m in npcam.METHODS.items() if m.in_demo)
    assert select_methods(None) == select_methods("demo") == in_demo
    assert select_methods("all") == tuple(npcam.METHODS)
    assert select_methods("score-cam, cam") == ("score-cam", "cam")


@pytest.mark.parametrize("method", ["score-cam", "ablation-cam"])
def test_demo_maps_of_one_image_for_two_classes_share_the_forward_passes(method):
    """The demo explains a two-object scene as one image repeated for two targets; for the
    many-pass methods its panels come from one ``target="all"`` call on the image. They
    equal the per-row call (the methods are batch-independent): the same normalised maps
    to 1e-12, and the two classes' maps differ. (With the logit, Ablation-CAM warns for
    the classes whose y^c < 0; the demo then explains the rows one by one, so that only
    the asked classes are warned about.)"""
    from npcam import zoo
    from npcam.cli.demo import method_maps
    from npcam.evaluation.scenes import make_scenes
    from npcam.image import normalize, upsample

    model = zoo.pretrained("gap")
    image = zoo.standardize("gap", make_scenes(1, seed=7, objects=2).images)
    x = np.repeat(image, 2, axis=0)
    t = np.array([0, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning about a class that is not asked for
        ours = method_maps(model, x, t, method, options={"score": "softmax"})
    ref = normalize(upsample(npcam.METHODS[method].function(model, x, t, score="softmax").cam,
                             x.shape[2:]))
    assert ours.shape == ref.shape == (2, 64, 64)
    assert np.abs(ours - ref).max() < 1e-12
    assert np.abs(ours[0] - ours[1]).max() > 0.1


def test_demo_maps_warn_only_about_the_asked_classes():
    """Ablation-CAM with the logit warns when y^c ≤ 0. For one image asked twice for its
    predicted class (y^c > 0), the demo's map function does not warn, although another
    class's y^c is negative (a ``target="all"`` call would warn about it)."""
    from npcam import zoo
    from npcam.cli.demo import method_maps
    from npcam.evaluation.scenes import make_scenes

    model = zoo.pretrained("gap")
    image = zoo.standardize("gap", make_scenes(1, seed=7, objects=2).images)
    x = np.repeat(image, 2, axis=0)
    logits = model.forward(image)[0]
    top = int(np.argmax(logits))
    asked = np.array([top, top])  # asked twice (a scene of two objects of one class)
    assert logits[top] > 0 and (logits < 0).any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        maps = method_maps(model, x, asked, "ablation-cam")
    assert maps.shape == (2, 64, 64)
