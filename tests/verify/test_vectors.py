"""npcam.vectors: the golden vectors, their index, ``compare`` and the CLI commands
``npcam vectors`` / ``npcam compare`` (no torch needed)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import scipy.special

from npcam import cli
from npcam.verify import vectors as V


@pytest.fixture(scope="module")
def vdir(tmp_path_factory):
    out = tmp_path_factory.mktemp("vectors")
    V.write_vectors(out)
    return out


def _compare(theirs, vdir, case, quantity, *extra):
    args = ["--vectors", str(vdir), "--case", case, "--quantity", quantity, *extra]
    return cli.main(["compare", str(theirs), *args])


def _npz_arrays(path):
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


# ------------------------------------------------------------------------ the vectors
def test_rewrite_is_bit_identical(vdir, tmp_path):
    V.write_vectors(tmp_path)
    for case in V.CASES:
        first = (vdir / f"{case}.npz").read_bytes()
        second = (tmp_path / f"{case}.npz").read_bytes()
        assert first == second  # fixed zip timestamps: the files themselves are equal
        a, b = _npz_arrays(vdir / f"{case}.npz"), _npz_arrays(tmp_path / f"{case}.npz")
        assert a.keys() == b.keys()
        for key in a:
            assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape
            assert a[key].tobytes() == b[key].tobytes(), (case, key)


def test_index_lists_every_case_and_quantity(vdir):
    index = json.loads((vdir / "index.json").read_text())
    assert index["format_version"] == V.FORMAT_VERSION == 2
    assert set(index["cases"]) == set(V.CASES)
    assert len(index["cases"]) >= 10
    family = [V.FAMILY_PREFIX + m for m in V.FAMILY_METHODS]
    assert set(index["tolerances"]["quantities"]) == {*V.QUANTITIES, *family}
    assert {"cam_normalized", "counterfactual"} <= set(V.QUANTITIES)
    for key in ("relu_derivative_at_zero", "max_pool_ties", "upsample"):
        assert key in index["conventions"]
    assert index["versions"]["numpy"] == np.__version__
    for case, entry in index["cases"].items():
        arrays = _npz_arrays(vdir / entry["file"])
        assert entry["quantities"] == [*V.QUANTITIES, *family]
        assert set(entry["arrays"]) == set(arrays)
        for key, meta in entry["arrays"].items():
            assert tuple(meta["shape"]) == arrays[key].shape, (case, key)
            assert meta["dtype"] == str(arrays[key].dtype)
            assert arrays[key].dtype != object
        assert str(arrays["layer"][()]) == entry["layer"]
        assert str(arrays["score"][()]) == entry["score"] in ("logit", "softmax", "log_softmax")
        assert str(arrays["target_rule"][()]) == entry["target_rule"] in ("given", "argmax")
        assert arrays["target"].tolist() == entry["target"]
        assert any(k.startswith(V.WEIGHT_PREFIX) for k in arrays)


def test_case_contents_are_consistent(vdir):
    for case in V.CASES:
        a = V.load_case(vdir, case)
        n = a["input"].shape[0]
        score = str(a["score"][()])
        z = a["logits"]
        # y^c under the case's score, computed here from the logits (scipy, not npcam)
        every = {"logit": z, "softmax": scipy.special.softmax(z, axis=1),
                 "log_softmax": scipy.special.log_softmax(z, axis=1)}[score]
        np.testing.assert_allclose(a["scores"], every[np.arange(n), a["target"]], rtol=0,
                                   atol=1e-15 * np.abs(every).max())
        if str(a["target_rule"][()]) == "argmax":
            # the recorded targets are the predictions, and they differ (target bugs can show)
            assert a["target"].tolist() == z.argmax(axis=1).tolist()
            assert len(set(a["target"].tolist())) >= 2, case
            per_image = a["raw"].reshape(n, -1)
            assert ((per_image > 0).any(axis=1) & (per_image < 0).any(axis=1)).all(), case
        u = a["cam_upsampled"]
        lo, hi = u.min(axis=(1, 2), keepdims=True), u.max(axis=(1, 2), keepdims=True)
        span = np.where(hi > lo, hi - lo, 1.0)  # a constant map normalises to zeros
        np.testing.assert_allclose(a["cam_normalized"], np.where(hi > lo, (u - lo) / span, 0.0),
                                   rtol=0, atol=1e-15)
        np.testing.assert_array_equal(a["counterfactual"], np.maximum(-a["raw"], 0))
        for method in V.FAMILY_METHODS:
            assert a[V.FAMILY_PREFIX + method].shape == a["cam"].shape, (case, method)
        np.testing.assert_allclose(a["alpha"], a["gradients"].mean(axis=(2, 3)), rtol=0, atol=1e-15)
        np.testing.assert_array_equal(a["cam"], np.maximum(a["raw"], 0))
        assert a["cam_upsampled"].shape == (n, *a["input"].shape[2:])
        np.testing.assert_allclose(
            a["guided_grad_cam"], a["cam_upsampled"][:, None] * a["guided_backprop"], rtol=0, atol=1e-15
        )
        # maps of both signs: an all-zero or one-signed reference would prove little
        assert (a["raw"] > 0).any() and (a["raw"] < 0).any(), case
        assert np.abs(a["guided_backprop"]).max() > 0


def test_ties_case_is_exact_and_has_ties(vdir):
    a = V.load_case(vdir, "maxpool_ties")
    for key in ("input", *[k for k in a if k.startswith(V.WEIGHT_PREFIX)]):
        assert np.array_equal(a[key], np.round(a[key])), key
    for q in ("saliency", "guided_backprop", "alpha", "raw", "guided_grad_cam"):
        assert np.array_equal(a[q] * 2.0**20, np.round(a[q] * 2.0**20)), q  # dyadic: no rounding
    model = V._case_model(a)
    model.forward(a["input"])
    r = model.activations["1"]  # the ReLU right before the 2x2 max-pool
    n, c, h, w = r.shape
    win = r.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    top = win.max(axis=-1)
    ties = ((win == top[..., None]).sum(axis=-1) > 1) & (top > 0)
    assert ties.sum() >= 10
    assert (model.activations["0"] == 0).any()  # ReLU'(0) is exercised too


def test_vectors_agree_across_blas_thread_counts(vdir):
    # "equal" across thread counts means within 1e-13 of each array's scale (DESIGN.md)
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(1):
        arrays = V._compute("gap_fc")
    stored = V.load_case(vdir, "gap_fc")
    for q in V.QUANTITIES:
        scale = float(np.abs(stored[q]).max())
        assert float(np.abs(arrays[q] - stored[q]).max()) <= 1e-13 * scale, q


def test_index_records_versions(vdir):
    from npcam.verify.environment import format_versions, show_versions

    recorded = json.loads((vdir / "index.json").read_text())["versions"]
    now = show_versions()
    assert set(recorded) == set(now)
    for key in ("npcam", "numpy", "scipy", "pillow", "python", "platform", "cpu", "blas_threads"):
        assert key in now
    assert recorded["npcam"] == now["npcam"]
    text = format_versions(recorded)
    assert f"numpy: {np.__version__}" in text and len(text.splitlines()) == len(recorded)


def test_load_case_detects_corruption(vdir, tmp_path):
    for path in vdir.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    arrays = _npz_arrays(tmp_path / "gap_fc.npz")
    arrays["cam"] = arrays["cam"] + 1.0
    V._write_npz(tmp_path / "gap_fc.npz", arrays)
    with pytest.raises(ValueError, match="SHA-256"):
        V.load_case(tmp_path, "gap_fc")


# ---------------------------------------------------------------------------- compare
def test_compare_function_reports(vdir, tmp_path):
    ref = V.load_case(vdir, "nested")["gradients"]
    report = V.compare(ref, vdir, "nested", "gradients")
    assert report.passed and report.max_abs_error == 0 and report.correlation == pytest.approx(1.0)
    assert "PASS" in str(report)
    bad = V.compare(-ref, vdir, "nested", "gradients")
    assert not bad.passed and bad.correlation == pytest.approx(-1.0)
    assert bad.max_rel_error == pytest.approx(2.0)
    # float32 gets the float32 tier
    r32 = V.compare(ref.astype(np.float32), vdir, "nested", "gradients")
    assert r32.passed and r32.tolerance == 1e-5
    nan = ref.copy()
    nan.flat[0] = np.nan
    assert not V.compare(nan, vdir, "nested", "gradients").passed


def test_cli_compare_own_output_passes(vdir, tmp_path, capsys):
    for case in V.CASES:
        for quantity in ("cam", "guided_grad_cam", "logits"):
            path = tmp_path / f"{case}_{quantity}.npy"
            np.save(path, V.load_case(vdir, case)[quantity])
            code = _compare(path, vdir, case, quantity)
            assert code == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "PASS" in out and "FAIL" not in out


def test_cli_compare_perturbed_fails(vdir, tmp_path, capsys):
    ref = V.load_case(vdir, "gap_fc")["cam"]
    path = tmp_path / "theirs.npy"
    np.save(path, ref * (1 + 1e-6))
    code = cli.main(["compare", str(path), "--vectors", str(vdir), "--case", "gap_fc", "--quantity", "cam"])
    captured = capsys.readouterr()
    assert code == 1
    assert "FAIL" in captured.out and captured.err == ""
    # a looser bar given on the command line passes the same array
    code = cli.main([
        "compare", str(path), "--vectors", str(vdir), "--case", "gap_fc", "--quantity", "cam",
        "--tolerance", "1e-5",
    ])
    assert code == 0


def _one_error_line(capsys, *needles):
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("npcam compare: error:")
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def test_cli_compare_errors(vdir, tmp_path, capsys):
    good = tmp_path / "cam.npy"
    np.save(good, V.load_case(vdir, "gap_fc")["cam"])
    base = ["--vectors", str(vdir), "--case", "gap_fc", "--quantity", "cam"]

    assert cli.main(["compare", str(tmp_path / "missing.npy"), *base]) == 2
    _one_error_line(capsys, "missing.npy", "does not exist")

    assert _compare(good, vdir, "resnet", "cam") == 2
    _one_error_line(capsys, "'resnet'", "gap_fc")

    assert _compare(good, vdir, "gap_fc", "heat") == 2
    _one_error_line(capsys, "'heat'", "guided_grad_cam")

    wrong = tmp_path / "wrong.npy"
    np.save(wrong, V.load_case(vdir, "gap_fc")["cam"][:, None])
    assert cli.main(["compare", str(wrong), *base]) == 2
    _one_error_line(capsys, "shape (2, 1, 9, 11)", "(2, 9, 11)")

    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"cam": 1}, None], dtype=object), allow_pickle=True)
    assert cli.main(["compare", str(objects), *base]) == 2
    _one_error_line(capsys, "never unpickles")

    archive = tmp_path / "archive.npz"
    np.savez(archive, cam=np.zeros(3))
    assert cli.main(["compare", str(archive), *base]) == 2
    _one_error_line(capsys, ".npz archive")

    text = tmp_path / "notes.npy"
    text.write_text("not an array")
    assert cli.main(["compare", str(text), *base]) == 2
    _one_error_line(capsys, "notes.npy")

    assert cli.main(["compare", str(good), "--vectors", str(tmp_path / "nowhere"), "--case", "gap_fc",
                     "--quantity", "cam"]) == 2
    _one_error_line(capsys, "index.json")

    assert cli.main(["compare", str(good), *base, "--convention", "gradcam++"]) == 2
    _one_error_line(capsys, "convention")

    assert cli.main(["compare", str(good), *base[:-1], "logits", "--convention", "captum"]) == 2
    _one_error_line(capsys, "convention applies to quantity")


def test_cli_compare_refuses_wrong_format_version(vdir, tmp_path, capsys):
    for path in vdir.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    index = json.loads((tmp_path / "index.json").read_text())
    index["format_version"] = 3
    (tmp_path / "index.json").write_text(json.dumps(index))
    good = tmp_path / "cam.npy"
    np.save(good, V.load_case(vdir, "gap_fc")["cam"])
    assert cli.main(["compare", str(good), "--vectors", str(tmp_path), "--case", "gap_fc",
                     "--quantity", "cam"]) == 2
    _one_error_line(capsys, "format_version 3")


def test_cli_compare_with_conventions(vdir, tmp_path, capsys):
    import npcam.conventions as conventions
    a = V.load_case(vdir, "nested")
    model = V._case_model(a)
    layer = str(a["layer"][()])
    base = ["--vectors", str(vdir), "--case", "nested"]
    # the npcam convention of grad_cam is the stored map upsampled to the input size
    theirs = conventions.grad_cam(model, a["input"], a["target"], layer, "npcam")
    np.testing.assert_allclose(theirs, a["cam_upsampled"], rtol=0, atol=1e-15)
    for name in ("captum", "pytorch-grad-cam", "torchcam"):
        path = tmp_path / f"{name}.npy"
        np.save(path, conventions.grad_cam(model, a["input"], a["target"], layer, name))
        assert cli.main(["compare", str(path), *base, "--quantity", "cam", "--convention", name]) == 0
        # npcam's own map is not what these libraries return
        assert cli.main(["compare", str(tmp_path / f"{name}.npy"), *base, "--quantity", "cam"]) in (1, 2)
    path = tmp_path / "captum_ggc.npy"
    np.save(path, conventions.guided_grad_cam(model, a["input"], a["target"], layer, "captum"))
    assert _compare(path, vdir, "nested", "guided_grad_cam", "--convention", "captum") == 0
    capsys.readouterr()


def test_cli_vectors_command(tmp_path, capsys):
    out = tmp_path / "golden"
    assert cli.main(["vectors", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "index.json" in printed and "format version 2" in printed
    assert {p.name for p in out.iterdir()} == {"index.json", *(f"{c}.npz" for c in V.CASES)}
    for case in V.CASES:
        with zipfile.ZipFile(out / f"{case}.npz") as zf:
            assert all(info.date_time == (1980, 1, 1, 0, 0, 0) for info in zf.infolist())
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli.main(["vectors", "--out", str(blocker)]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_cli_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["compare", "x.npy", "--case", "gap_fc"])
    assert info.value.code == 2
    assert "--vectors" in capsys.readouterr().err
