"""``npcam diagnose`` and the diagnosis ``npcam compare`` prints on FAIL (no torch needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from npcam import cli
from npcam.verify import vectors as V


@pytest.fixture(scope="module")
def vdir(tmp_path_factory):
    out = tmp_path_factory.mktemp("vectors_diag")
    V.write_vectors(out)
    return out


def _save(tmp_path, name, arr):
    path = tmp_path / name
    np.save(path, arr)
    return str(path)


def test_diagnose_names_alpha_sum_and_exits_1(vdir, tmp_path, capsys):
    """A case's cam × Z (Z = h·w of its layer, here 9·11 = 99) is diagnosed as alpha-sum,
    with Z in the explanation; the exit code is 1 (it differs)."""
    a = V.load_case(vdir, "gap_fc")
    z = a["cam"].shape[1] * a["cam"].shape[2]
    assert z == 99
    path = _save(tmp_path, "sum.npy", a["cam"] * z)
    code = cli.main(["diagnose", path, "--vectors", str(vdir), "--case", "gap_fc"])
    out = capsys.readouterr().out
    assert code == 1
    assert "verdict: explained" in out and "alpha-sum" in out and "Z = 99" in out


def test_diagnose_of_the_reference_exits_0_and_writes_json(vdir, tmp_path, capsys):
    """The stored cam itself matches (exit 0); --json writes the Diagnosis as JSON."""
    a = V.load_case(vdir, "graph_residual_concat")
    path = _save(tmp_path, "ok.npy", a["cam"])
    report = tmp_path / "d.json"
    code = cli.main(["diagnose", path, "--vectors", str(vdir), "--case", "graph_residual_concat",
                     "--json", str(report)])
    assert code == 0
    assert "verdict: match" in capsys.readouterr().out
    data = json.loads(report.read_text())
    assert data["verdict"] == "match" and data["matches"] is True and data["hypotheses"] == []


def test_diagnose_float32_prints_both_tiers(vdir, tmp_path, capsys):
    """A float32 copy of the reference is not passed silently: verdict float32, exit 1,
    and the report says PASS at the float32 tier and FAIL at the float64 bar."""
    a = V.load_case(vdir, "conv_layer")
    path = _save(tmp_path, "f32.npy", a["cam_upsampled"].astype(np.float32))
    code = cli.main(["diagnose", path, "--vectors", str(vdir), "--case", "conv_layer",
                     "--quantity", "cam_upsampled"])
    out = capsys.readouterr().out
    assert code == 1
    assert "verdict: float32" in out
    assert "PASS at the float32 tier" in out and "FAIL at the float64 bar" in out


def test_diagnose_uses_the_case_score_and_argmax_targets(vdir, tmp_path, capsys):
    """On the softmax/argmax case, a map made for image 0's class for every image is
    diagnosed as target-first-argmax (the case's targets differ, so it can show)."""
    import npcam

    a = V.load_case(vdir, "softmax_argmax")
    model, x, target, layer, score = V.case_inputs(a)
    assert target is None and score == "softmax" and len(set(a["target"].tolist())) >= 2
    wrong = npcam.grad_cam(model, x, int(a["target"][0]), layer, score).cam
    path = _save(tmp_path, "t.npy", wrong)
    assert cli.main(["diagnose", path, "--vectors", str(vdir), "--case", "softmax_argmax"]) == 1
    assert "target-first-argmax" in capsys.readouterr().out


def test_diagnose_with_a_zoo_model_and_an_input(tmp_path, capsys):
    """--model gap --input X.npy: the map without its ReLU is diagnosed as no-relu."""
    import npcam

    model = npcam.zoo.pretrained("gap")
    x = npcam.verify.revealing_batch(model, (3, 64, 64), n=2)
    raw = npcam.grad_cam(model, x).raw
    code = cli.main(["diagnose", _save(tmp_path, "raw.npy", raw), "--model", "gap",
                     "--input", _save(tmp_path, "x.npy", x)])
    assert code == 1
    assert "no-relu" in capsys.readouterr().out


@pytest.mark.parametrize("argv, needle", [
    (["--vectors", "DIR"], "--case"),
    ([], "--vectors DIR --case NAME, or --model NAME --input X.npy"),
    (["--model", "resnet", "--input", "X"], "--model must be one of"),
])
def test_diagnose_bad_arguments_are_one_line_and_exit_2(vdir, tmp_path, capsys, argv, needle):
    """Missing or wrong options: exit 2, one line on stderr naming the problem, no traceback."""
    path = _save(tmp_path, "a.npy", np.zeros((2, 9, 11)))
    argv = [str(vdir) if v == "DIR" else str(tmp_path / "x.npy") if v == "X" else v for v in argv]
    if "--model" in argv:
        np.save(tmp_path / "x.npy", np.zeros((1, 3, 64, 64)))
    assert cli.main(["diagnose", path, *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("npcam diagnose: error:") and needle in err[0]


def test_compare_explains_its_fail(vdir, tmp_path, capsys):
    """On FAIL, ``npcam compare`` adds the diagnosis: the signed raw map given as cam on
    the conv-layer case (whose raw map has both signs) is no-relu."""
    a = V.load_case(vdir, "conv_layer")
    assert (a["raw"] < 0).any()
    path = _save(tmp_path, "raw.npy", a["raw"])
    code = cli.main(["compare", path, "--vectors", str(vdir), "--case", "conv_layer", "--quantity", "cam"])
    out = capsys.readouterr().out
    assert code == 1
    assert "result           FAIL" in out and "diagnosis        explained" in out and "no-relu" in out


def test_compare_float32_pass_says_it_fails_the_float64_bar(vdir, tmp_path, capsys):
    """A float32 array passes at its tier (exit 0) and the report says it fails float64."""
    a = V.load_case(vdir, "nested")
    path = _save(tmp_path, "f32.npy", a["cam"].astype(np.float32))
    assert cli.main(["compare", path, "--vectors", str(vdir), "--case", "nested", "--quantity", "cam"]) == 0
    out = capsys.readouterr().out
    assert "PASS at the float32 tier (1e-05), FAIL at the float64 bar (1e-10)" in out


def test_compare_convention_options(vdir, tmp_path, capsys):
    """--convention captum --relu-attributions compares with captum's ReLU'd map, which is
    npcam's cam with captum's (N, 1, h, w) shape; without the flag it is the signed map."""
    a = V.load_case(vdir, "conv_layer")
    base = ["--vectors", str(vdir), "--case", "conv_layer", "--quantity", "cam", "--convention", "captum"]
    relu = _save(tmp_path, "relu.npy", a["cam"][:, None])
    assert cli.main(["compare", relu, *base, "--relu-attributions"]) == 0
    assert cli.main(["compare", relu, *base]) == 1
    signed = _save(tmp_path, "signed.npy", a["raw"][:, None])
    assert cli.main(["compare", signed, *base]) == 0
    capsys.readouterr()


def test_compare_a_family_map(vdir, tmp_path, capsys):
    """The stored family:grad-cam++ map passes; twice it fails and is explained."""
    a = V.load_case(vdir, "gap_fc")
    base = ["--vectors", str(vdir), "--case", "gap_fc", "--quantity", "family:grad-cam++"]
    assert cli.main(["compare", _save(tmp_path, "pp.npy", a["family:grad-cam++"]), *base]) == 0
    assert cli.main(["compare", _save(tmp_path, "pp2.npy", 2 * a["family:grad-cam++"]), *base]) == 1
    out = capsys.readouterr().out
    assert "diagnosis" in out
