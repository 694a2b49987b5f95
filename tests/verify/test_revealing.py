"""npcam.verify.revealing_batch: batches that can reveal target, ReLU and batch bugs —
at least two predicted classes, every image's raw Grad-CAM map of both signs — on the
trained zoo models and on small hand-built models (one that needs its images nudged
across the decision boundary, one that cannot reveal anything)."""

from __future__ import annotations

import numpy as np
import pytest

import npcam
from npcam.verify import revealing_batch


def _small(bias_class: int | None = None, bias: float = 0.0, zero_head: bool = False, seed: int = 0):
    """conv-relu-conv-relu-GAP-flatten-linear(8 -> 5) with random weights; optionally a
    bias of ``bias`` on one class and/or an all-zero last weight matrix."""
    rng = np.random.default_rng(seed)
    model = npcam.Sequential(
        npcam.Conv2d(3, 6, 3, padding=1, rng=rng), npcam.ReLU(),
        npcam.Conv2d(6, 8, 3, padding=1, rng=rng), npcam.ReLU(),
        npcam.GlobalAvgPool2d(), npcam.Flatten(), npcam.Linear(8, 5, rng=rng),
    )
    state = model.state_dict()
    b = np.zeros(5)
    if bias_class is not None:
        b[bias_class] = bias
    state["6.bias"] = b
    if zero_head:
        state["6.weight"] = np.zeros_like(state["6.weight"])
    model.load_state_dict(state)
    return model


def _check_revealing(model, x, n, shape):
    """The documented properties, checked with the model and npcam.grad_cam directly."""
    assert x.shape == (n, *shape) and x.dtype == np.float64
    assert np.isfinite(x).all()
    pred = model.run(x).output.argmax(axis=1)
    assert len(set(pred.tolist())) >= 2, pred
    raw = npcam.grad_cam(model, x).raw.reshape(n, -1)
    assert (raw.max(axis=1) > 0).all() and (raw.min(axis=1) < 0).all()


@pytest.mark.parametrize("name, shape", [("gap", (3, 48, 64)), ("gap", (3, 64, 64)), ("vgg", (3, 64, 64))])
def test_zoo_batches_are_revealing(name, shape):
    """On the trained zoo models (gap also on a non-square input): (4, 3, H, W) float64,
    ≥ 2 predicted classes, every image's raw map has values > 0 and < 0."""
    model = npcam.zoo.pretrained(name)
    x = revealing_batch(model, shape, n=4)
    _check_revealing(model, x, 4, shape)


def test_raw_map_signs_at_a_named_layer():
    """With ``layer`` given, the sign property holds at that layer (features.12, the conv
    before the gap model's last ReLU), for a larger n."""
    model = npcam.zoo.pretrained("gap")
    x = revealing_batch(model, (3, 48, 64), n=6, layer="features.12")
    assert x.shape == (6, 3, 48, 64)
    raw = npcam.grad_cam(model, x, None, "features.12").raw.reshape(6, -1)
    assert (raw.max(axis=1) > 0).all() and (raw.min(axis=1) < 0).all()
    assert len(set(model.run(x).output.argmax(axis=1).tolist())) >= 2


def test_deterministic_per_seed():
    """The same seed gives the same batch, bit for bit; another seed another batch; a
    Generator is accepted as well."""
    model = npcam.zoo.pretrained("gap")
    a = revealing_batch(model, (3, 48, 64), rng=7)
    b = revealing_batch(model, (3, 48, 64), rng=7)
    c = revealing_batch(model, (3, 48, 64), rng=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    d = revealing_batch(model, (3, 48, 64), rng=np.random.default_rng(7))
    np.testing.assert_array_equal(d, a)


def test_one_class_model_is_nudged_across_the_boundary():
    """A random model whose bias makes every random draw predict class 1 (checked here):
    the images are moved to other classes by gradient steps, and the batch still has
    ≥ 2 classes with raw maps of both signs."""
    model = _small(bias_class=1, bias=50.0)
    draws = np.random.default_rng(0).standard_normal((32, 3, 8, 8))
    assert set(model.run(draws).output.argmax(axis=1).tolist()) == {1}
    x = revealing_batch(model, (3, 8, 8))
    _check_revealing(model, x, 4, (3, 8, 8))


def test_model_that_cannot_reveal_raises():
    """The last Linear has zero weights and a bias favouring class 2: every input predicts
    class 2, the logits do not depend on x (no gradient step can move them), so no batch
    of two classes exists -> ValueError naming one class and the class."""
    model = _small(bias_class=2, bias=5.0, zero_head=True)
    with pytest.raises(ValueError, match=r"one class \(2\)"):
        revealing_batch(model, (3, 8, 8), max_tries=32)


def test_model_whose_maps_never_go_negative_raises():
    """Last conv -> ReLU -> GAP -> Linear with all-positive weights: ∂y^c/∂A = w^c/Z ≥ 0
    and A ≥ 0, so every raw map Σ_k α_k A^k is ≥ 0 (checked on random draws) and no batch
    can reveal a missing ReLU -> ValueError saying no candidate's map takes both signs."""
    model = _small()
    state = model.state_dict()
    state["6.weight"] = np.abs(state["6.weight"])
    model.load_state_dict(state)
    draws = np.random.default_rng(0).standard_normal((16, 3, 8, 8))
    assert npcam.grad_cam(model, draws).raw.min() >= 0
    with pytest.raises(ValueError, match="both signs"):
        revealing_batch(model, (3, 8, 8), max_tries=32)


@pytest.mark.parametrize("shape", [(3, 64), (3, 0, 8), (0, 8, 8), (3.0, 8, 8), (True, 8, 8), "3x8x8",
                                   (3, 8, 8, 1), (-3, 8, 8)])
def test_bad_input_shape(shape):
    """input_shape must be (C, H, W) of positive ints."""
    with pytest.raises(ValueError, match="input_shape"):
        revealing_batch(_small(), shape)


@pytest.mark.parametrize("n", [1, 0, -2])
def test_n_below_two(n):
    """n < 2 cannot hold two classes: ValueError naming n."""
    with pytest.raises(ValueError, match="n must"):
        revealing_batch(_small(), (3, 8, 8), n=n)


def test_bad_rng_and_model():
    """rng must be an int seed or a Generator; the model must implement npcam's protocol."""
    with pytest.raises(TypeError, match="rng"):
        revealing_batch(_small(), (3, 8, 8), rng=1.5)
    with pytest.raises(TypeError, match="rng"):
        revealing_batch(_small(), (3, 8, 8), rng=True)
    with pytest.raises(TypeError, match="model"):
        revealing_batch(object(), (3, 8, 8))
