"""The tables of ``npcam evaluate``: the two-object maps from one ``target="all"`` call."""

import warnings

import numpy as np
import pytest

from npcam import NumericalWarning, zoo
from npcam.evaluation import tables
from npcam.evaluation.scenes import make_scenes
from npcam.methods.registry import METHODS


@pytest.fixture(scope="module")
def pair_scenes():
    pairs = make_scenes(6, seed=778, objects=2)
    return zoo.standardize("gap", pairs.images), pairs.object_labels


@pytest.mark.parametrize("name", ["score-cam", "ablation-cam"])
def test_pair_maps_equal_the_per_object_maps(name, pair_scenes):
    """Each map of a forward-pass method is a function of its own image and class only, so
    the maps of both objects read off one ``target="all"`` call equal the two per-object
    calls up to rounding (1e-12 of the maps' scale). Ablation-CAM's call warns (some class
    has y^c < 0), so it takes the per-object path; Score-CAM takes the shared one."""
    x, classes = pair_scenes
    model = zoo.pretrained("gap")
    method = METHODS[name]
    fn = tables.MAP_METHODS[method.display_name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = tables._pair_maps(method, model, x, classes, batch=4)
    kinds = {w.category for w in caught}
    assert kinds == ({NumericalWarning} if name == "ablation-cam" else set())
    for k in (0, 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NumericalWarning)  # asserted above
            want = fn(model, x, classes[:, k])
        assert got[k].shape == want.shape == x.shape[:1] + x.shape[2:]
        np.testing.assert_allclose(got[k], want, rtol=0, atol=1e-12 * np.abs(want).max())


def test_score_cam_explains_both_objects_of_a_batch_with_one_call(pair_scenes, monkeypatch):
    """The point of the shared path: one ``target="all"`` call per batch of pair scenes,
    not one per object."""
    x, classes = pair_scenes
    calls = []
    real = tables.cams_for_classes

    def spy(function, model, xb, cb, **options):
        calls.append((len(xb), cb.shape))
        return real(function, model, xb, cb, **options)

    monkeypatch.setattr(tables, "cams_for_classes", spy)
    tables._pair_maps(METHODS["score-cam"], zoo.pretrained("gap"), x, classes, batch=4)
    assert calls == [(4, (4, 2)), (2, (2, 2))]


def test_localization_table_rows_follow_the_asked_methods():
    """``methods`` selects the rows (registry order), CAM only on the GAP model; an unknown
    name is refused with the name in the message."""
    rows = tables.localization_table(n=4, methods=("grad-cam", "cam"))
    assert [(r["model"], r["method"]) for r in rows] == [
        ("-", "centre box"), ("gap", "CAM"), ("gap", "Grad-CAM"), ("vgg", "Grad-CAM")]
    for r in rows[1:]:
        for key in ("pointing", "box", "box50", "discrimination"):
            assert 0.0 <= r[key] <= 1.0
    with pytest.raises(ValueError, match="nope"):
        tables.localization_table(n=4, methods=("nope",))
