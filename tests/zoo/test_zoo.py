"""Tests of npcam.zoo: the architectures and the shipped pretrained models.

The fixed held-out test split is ``make_scenes(2000, seed=zoo.TEST_DATA_SEED)``; its first
k scenes equal ``make_scenes(k, seed=...)`` (npcam.evaluation.scenes spawns one generator per scene),
so the quick accuracy test scores the first 500 and a ``slow`` one all 2000.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import npcam
from npcam import zoo
from npcam.evaluation.scenes import CLASSES, make_scenes, standardize
from npcam.train import evaluate_accuracy

N_QUICK = 500


@pytest.fixture(scope="module")
def models():
    return {name: zoo.pretrained(name) for name in zoo.NAMES}


def _split(name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    meta = zoo.info(name)
    s = make_scenes(n, size=meta["input_size"][0], seed=zoo.TEST_DATA_SEED)
    x, _, _ = standardize(s.images, meta["mean"], meta["std"])
    return x, s.labels


@pytest.fixture(scope="module")
def quick_split():
    return _split("gap", N_QUICK)


def test_names_and_architectures():
    assert zoo.NAMES == ("gap", "vgg") == tuple(zoo.ARCHITECTURES)
    for name in zoo.NAMES:
        model = zoo.build(name, rng=0)
        assert model.forward(np.zeros((1, 3, 64, 64))).shape == (1, 4)
    # The same seed gives both the same initial trunk.
    a, b = zoo.build("gap", rng=1).state_dict(), zoo.build("vgg", rng=1).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a if k.startswith("features."))


@pytest.mark.parametrize("name", zoo.NAMES)
def test_shipped_file_is_small_and_plain(name):
    path = zoo.weights_path(name)
    assert os.path.getsize(path) < 2 * 2**20
    with np.load(path, allow_pickle=False) as npz:
        dtypes = {k: npz[k].dtype for k in npz.files}
    assert all(d.kind != "O" for d in dtypes.values())
    assert dtypes[zoo.METADATA_KEY].kind == "U"
    weights = [d for k, d in dtypes.items() if not k.startswith("__") and "num_batches" not in k]
    assert weights and all(d == np.float64 for d in weights)
    # The file matches a freshly built architecture key for key, shape for shape.
    model, meta = zoo.load(path)
    fresh = zoo.build(name).state_dict()
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in fresh.items()}
    assert meta["command"].startswith(f"npcam train --arch {name} ")
    assert meta["seed"] == 0 and meta["test_data_seed"] == zoo.TEST_DATA_SEED


@pytest.mark.parametrize("name", zoo.NAMES)
def test_info(name):
    meta = zoo.info(name)
    assert meta["input_size"] == [64, 64] and meta["channels"] == 3
    assert meta["class_names"] == list(CLASSES)
    assert len(meta["mean"]) == 3 and all(s > 0 for s in meta["std"])
    assert meta["test_accuracy"] >= 0.95 and meta["train_accuracy"] >= 0.95


@pytest.mark.parametrize("name", zoo.NAMES)
def test_pretrained_is_a_folded_float64_eval_model(name, models):
    model = models[name]
    leaves = [leaf for _, leaf in model.named_layers()]
    assert not any(isinstance(leaf, npcam.BatchNorm2d) for leaf in leaves)
    assert not model.training and not any(leaf.training for leaf in leaves)
    assert all(p.dtype == np.float64 for _, p in model.named_parameters())
    x = np.random.default_rng(0).standard_normal((3, 3, 64, 64))
    out = model.forward(x)
    assert out.dtype == np.float64 and out.shape == (3, 4)
    unfolded = zoo.pretrained(name, fold=False).forward(x)  # BatchNorm kept, in eval mode
    assert np.abs(out - unfolded).max() <= 1e-12 * np.abs(unfolded).max()


@pytest.mark.slow
@pytest.mark.parametrize("name", zoo.NAMES)
def test_pretrained_accuracy_on_the_fixed_test_split(name, models, quick_split):
    x, y = quick_split  # both models expect the same standardisation (the same trunk)
    assert zoo.info(name)["mean"] == zoo.info("gap")["mean"]
    assert evaluate_accuracy(models[name], x, y) >= 0.95


@pytest.mark.slow
@pytest.mark.parametrize("name", zoo.NAMES)
def test_stated_accuracy_on_the_whole_test_split(name, models):
    x, y = _split(name, 2000)
    # Same data and computation as when the file was made, up to BLAS round-off.
    assert evaluate_accuracy(models[name], x, y) >= zoo.info(name)["test_accuracy"] - 1e-3


def test_vgg_shares_the_gap_trunk():
    gap = zoo.pretrained("gap", fold=False).state_dict()
    vgg = zoo.pretrained("vgg", fold=False).state_dict()
    trunk = [k for k in gap if k.startswith("features.")]
    assert trunk and all(np.array_equal(gap[k], vgg[k]) for k in trunk)


def test_cam_equals_grad_cam_times_z_on_the_gap_model(models, quick_split):
    x = quick_split[0][:8]
    eq = npcam.cam_equivalence(models["gap"], x)
    assert eq.holds
    assert eq.weight_error <= 1e-12 and eq.map_error <= 1e-12
    assert eq.Z == 8 * 8


def test_cam_refuses_vgg_while_grad_cam_works(models, quick_split):
    x = quick_split[0][:4]
    with pytest.raises(ValueError, match="CAM needs layer .* GlobalAvgPool2d"):
        npcam.cam(models["vgg"], x)
    r = npcam.grad_cam(models["vgg"], x)
    assert r.layer == "classifier.0" and r.cam.shape == (4, 4, 4)  # after the head's max-pool
    assert np.isfinite(r.cam).all() and (r.cam >= 0).all() and r.cam.max() > 0
    r = npcam.grad_cam(models["vgg"], x, layer="features")  # the trunk's 8×8 maps, as for gap
    assert r.cam.shape == (4, 8, 8) and r.cam.max() > 0


@pytest.mark.parametrize("fn", [zoo.pretrained, zoo.info, zoo.build, zoo.weights_path])
def test_unknown_model_name(fn):
    with pytest.raises(ValueError, match="unknown model name 'resnet'"):
        fn("resnet")
    with pytest.raises(TypeError, match="name"):
        fn(3)


def test_load_refuses_pickles_and_files_without_metadata(tmp_path):
    pickled = tmp_path / "p.npz"
    np.savez(pickled, a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled objects"):
        zoo.load(pickled)
    plain = tmp_path / "plain.npz"
    zoo.build("gap").save(plain)  # Sequential.save: no metadata
    with pytest.raises(ValueError, match="__metadata__"):
        zoo.load(plain)
    with pytest.raises(FileNotFoundError):
        zoo.load(tmp_path / "missing.npz")


def test_save_and_load_round_trip(tmp_path):
    model = zoo.build("vgg", rng=4, size=16)
    path = tmp_path / "m.npz"
    zoo.save(model, path, {"note": "x"})
    loaded, meta = zoo.load(path)
    assert meta == {"note": "x"}
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16))
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))
