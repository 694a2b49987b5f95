r"""Tests of ``npcam.nn.sequential``: torch-compatible naming and state_dict keys, recorded
activations, backward to any named layer (against central differences of the network
re-run from that layer), parameter gradients, and the weight-file contract (exact round
trips, strictness, atomic loads, no pickles, clear errors).
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

import npcam
from npcam.gradcheck import numerical_gradient, relative_error

TOL = 1e-8
KINK_MARGIN = 1e-4  # >> h = 1e-6 times any weight product in these small nets


# ------------------------------------------------------------------------------ helpers
def make_net(rng, nested=True, gain=3.0):
    """Conv → MaxPool → ReLU → Conv(stride 2) → ReLU → GAP → Flatten → Linear(3 classes).
    Max-pool before ReLU so that pooling windows are not full of tied zeros.

    Parameters are the default init times ``gain``. Central differences have a round-off
    floor of about ε·|y|/h in absolute terms; in a net this narrow at the default scale a
    logit's gradient can be ~1e-3 of the logit (most paths dead), and that floor alone
    then reaches 1e-8 of the gradient. A gain of 3 keeps the test points well conditioned;
    the bar stays 1e-8."""
    feats = [npcam.Conv2d(2, 3, 3, padding=1, rng=rng), npcam.MaxPool2d(2), npcam.ReLU(),
             npcam.Conv2d(3, 4, 3, stride=2, padding=1, rng=rng), npcam.ReLU()]
    head = [npcam.GlobalAvgPool2d(), npcam.Flatten(), npcam.Linear(4, 3, rng=rng)]
    for leaf in feats + head:
        for p in leaf.params().values():
            p *= gain
    if nested:
        return npcam.Sequential(features=npcam.Sequential(*feats),
                                classifier=npcam.Sequential(*head))
    return npcam.Sequential(*feats, *head)


# the same positions in the flat (un-nested) version of make_net
FLAT_NAME = {"features.0": "0", "features.1": "1", "features.2": "2", "features.3": "3",
             "features.4": "4", "features": "4", "classifier.0": "5", "classifier.1": "6",
             "classifier.2": "7", "classifier": "7", None: None}


def leaf_inputs(net, x):
    """(name, leaf, its input) for every leaf of the last forward."""
    out, prev = [], x
    for name, leaf in net.named_layers():
        out.append((name, leaf, prev))
        prev = net.activations[name]
    return out


def away_from_kinks(net, x, margin=KINK_MARGIN):
    """True when every ReLU input is at least ``margin`` from 0 and every max-pool window
    has its largest value at least ``margin`` above the second largest: then the network is
    smooth within the finite-difference step and central differences are valid."""
    for _, leaf, inp in leaf_inputs(net, x):
        if isinstance(leaf, npcam.ReLU) and np.min(np.abs(inp)) < margin:
            return False
        if isinstance(leaf, npcam.MaxPool2d):
            (kh, kw), (sh, sw) = leaf.kernel_size, leaf.stride
            win = sliding_window_view(inp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
            win = np.sort(win.reshape(*win.shape[:4], -1), axis=-1)
            if win.shape[-1] > 1 and np.min(win[..., -1] - win[..., -2]) < margin:
                return False
    return True


def one_hot(n, classes, targets):
    seed = np.zeros((n, classes))
    seed[np.arange(n), targets] = 1.0
    return seed


def fd_to(net, name, seed, x):
    """Central differences of ⟨seed, logits⟩ w.r.t. the recorded output of ``name``
    (running the rest of the net with forward_from), or w.r.t. the input when None."""
    if name is None:
        return numerical_gradient(net.forward, x.copy(), seed)
    a = np.array(net.activations[name], copy=True)
    return numerical_gradient(lambda z: net.forward_from(name, z), a, seed)


NAMES = ["features.0", "features.1", "features.2", "features.3", "features", "classifier.0",
         "classifier.1", "classifier", None]


# ============================================================================== naming
def test_positional_names_like_torch():
    """Sequential(a, b, c) names its children "0", "1", "2"; int and str lookup agree."""
    a, b, c = npcam.Conv2d(1, 1, 1), npcam.ReLU(), npcam.Flatten()
    net = npcam.Sequential(a, b, c)
    assert list(net.children) == ["0", "1", "2"]
    assert net["1"] is b and net[1] is b and net[0] is a and len(net) == 3


def test_keyword_nesting_and_dict_names():
    """Keyword children nest with dotted names ("features.3"); a single dict gives any
    names; named_layers lists leaves in execution order, named_modules every module,
    containers before their children (torch's order without the root)."""
    net = npcam.Sequential(
        features=npcam.Sequential(npcam.Conv2d(1, 2, 3), npcam.ReLU(), npcam.MaxPool2d(2),
                                  npcam.Conv2d(2, 2, 1)),
        classifier=npcam.Sequential({"pool": npcam.GlobalAvgPool2d(), "fc": npcam.Linear(2, 2)}),
    )
    assert isinstance(net["features.3"], npcam.Conv2d)
    assert isinstance(net["classifier.fc"], npcam.Linear)
    assert [n for n, _ in net.named_layers()] == [
        "features.0", "features.1", "features.2", "features.3", "classifier.pool",
        "classifier.fc"]
    assert [n for n, _ in net.named_modules()] == [
        "features", "features.0", "features.1", "features.2", "features.3", "classifier",
        "classifier.pool", "classifier.fc"]
    assert net.leaf_index("features") == 3 and net.leaf_index("classifier.pool") == 4


def test_sequential_construction_errors():
    with pytest.raises(TypeError):
        npcam.Sequential(npcam.ReLU(), a=npcam.ReLU())
    with pytest.raises(ValueError):
        npcam.Sequential()
    with pytest.raises(ValueError, match="a.b"):
        npcam.Sequential({"a.b": npcam.ReLU()})
    with pytest.raises(ValueError):
        npcam.Sequential({"": npcam.ReLU()})
    with pytest.raises(TypeError, match="'1'"):
        npcam.Sequential(npcam.ReLU(), np.ones(3))
    with pytest.raises(ValueError, match="'nope'"):
        npcam.Sequential(npcam.ReLU())["nope"]


def _torch_like_net():
    return npcam.Sequential(
        features=npcam.Sequential(npcam.Conv2d(3, 4, 3, padding=1, rng=0), npcam.BatchNorm2d(4),
                                  npcam.ReLU(), npcam.Conv2d(4, 4, 1, bias=False, rng=1)),
        classifier=npcam.Sequential(npcam.GlobalAvgPool2d(), npcam.Flatten(),
                                    npcam.Linear(4, 2, rng=2)),
    )


def test_state_dict_keys_are_torch_keys():
    """The keys, in order, that torch.nn gives the same architecture (written by hand)."""
    sd = _torch_like_net().state_dict()
    assert list(sd) == [
        "features.0.weight", "features.0.bias",
        "features.1.weight", "features.1.bias", "features.1.running_mean",
        "features.1.running_var", "features.1.num_batches_tracked",
        "features.3.weight",
        "classifier.2.weight", "classifier.2.bias",
    ]
    assert sd["features.0.weight"].shape == (4, 3, 3, 3)
    assert sd["features.3.weight"].shape == (4, 4, 1, 1)
    assert sd["classifier.2.weight"].shape == (2, 4)
    assert sd["features.1.num_batches_tracked"].shape == ()
    assert sd["features.1.num_batches_tracked"].dtype == np.int64
    for k, v in sd.items():
        if not k.endswith("num_batches_tracked"):
            assert v.dtype == np.float64, k


def test_state_dict_returns_copies():
    net = _torch_like_net()
    sd = net.state_dict()
    sd["features.0.weight"] += 1.0
    assert not np.array_equal(sd["features.0.weight"], net["features.0"].weight)


# ========================================================================= activations
def test_activations_recorded_for_every_leaf_and_container():
    """activations[name] is each leaf's output (checked by re-running the leaves one by
    one on a copy); a container's entry is its last leaf's output, also for a container
    whose last child is itself a container."""
    rng = np.random.default_rng(0)
    net = npcam.Sequential(
        stem=npcam.Sequential(npcam.Conv2d(2, 3, 3, rng=rng),
                              npcam.Sequential(npcam.ReLU(), npcam.MaxPool2d(2))),
        head=npcam.Sequential(npcam.GlobalAvgPool2d(), npcam.Linear(3, 2, rng=rng)),
    )
    x = rng.standard_normal((2, 2, 7, 6))
    logits = net.forward(x)
    twin = copy.deepcopy(net)
    y, expected = x, {}
    for name, leaf in twin.named_layers():
        y = leaf.forward(y)
        expected[name] = y
    assert set(net.activations) == {n for n, _ in net.named_modules()}
    for name, value in expected.items():
        np.testing.assert_array_equal(net.activations[name], value)
    np.testing.assert_array_equal(net.activations["stem"], expected["stem.1.1"])
    np.testing.assert_array_equal(net.activations["stem.1"], expected["stem.1.1"])
    np.testing.assert_array_equal(net.activations["head"], logits)
    assert net.activations["stem.0"].shape == (2, 3, 5, 4)
    assert all(v.dtype == np.float64 for v in net.activations.values())
    np.testing.assert_array_equal(net.input, x)


def test_forward_from_reruns_the_rest():
    """forward_from(name, A) = the leaves after name applied to A; from the last leaf it is
    A itself; from a container it starts after the container's last leaf."""
    rng = np.random.default_rng(1)
    net = make_net(rng)
    x = rng.standard_normal((2, 2, 6, 4))
    logits = net.forward(x)
    np.testing.assert_array_equal(net.forward_from("features.2", net.activations["features.2"]),
                                  logits)
    a = rng.standard_normal(net.activations["features"].shape)
    twin = copy.deepcopy(net)
    expected = a
    for _, leaf in twin.named_layers()[5:]:
        expected = leaf.forward(expected)
    np.testing.assert_array_equal(net.forward_from("features", a), expected)
    np.testing.assert_array_equal(net.forward_from("classifier", logits), logits)


def test_partial_trace_keeps_what_a_backward_pass_to_a_layer_needs():
    """``run(x, keep=...)``: the logits are exactly the full trace's; ``keep=()`` holds the
    last layer's output only and no cache; ``keep=(k,)`` holds the outputs from k on and the
    caches after k, and ``vjp(..., to=k)`` and ``run_from`` then equal the full trace's."""
    rng = np.random.default_rng(3)
    net = make_net(rng)
    x = rng.standard_normal((2, 2, 6, 4))
    full = net.run(x)
    lean = net.run(x, keep=())
    np.testing.assert_array_equal(lean.output, full.output)
    assert set(lean.activations) == {"classifier.2", "classifier"} and not lean.caches
    part = net.run(x, keep=("features.3",))
    np.testing.assert_array_equal(part.output, full.output)
    assert "features.2" not in part.activations and "features.3" in part.activations
    assert set(part.caches) == {"features.4", "classifier.0", "classifier.1", "classifier.2"}
    cot = rng.standard_normal(full.output.shape)
    np.testing.assert_array_equal(net.vjp(part, cot, to="features.3").grad,
                                  net.vjp(full, cot, to="features.3").grad)
    a = rng.standard_normal(full.activations["features.3"].shape)
    np.testing.assert_array_equal(net.run_from(part, "features.3", a).output,
                                  net.run_from(full, "features.3", a).output)
    assert set(net.run(x, keep=("input",)).caches) == set(full.caches)
    with pytest.raises(TypeError, match="keep"):
        net.run(x, keep="features.3")
    with pytest.raises(ValueError, match="nope"):
        net.run(x, keep=("nope",))
    with pytest.raises(ValueError, match="features.0"):
        net.run(np.full(x.shape, 1e308), keep=())  # overflows in the first conv: named


# ============================================================================ backward
@given(st.integers(0, 2**32 - 1), st.sampled_from(NAMES), st.integers(1, 2), st.booleans())
def test_backward_to_layer_matches_finite_differences(seed, name, n, nested):
    """backward(e_c, to=name) = ∂y^c/∂A for A the output of ``name`` (a leaf, a container =
    its last leaf, or None = the input): equal to central differences of y^c with A
    perturbed and the rest of the network re-run, relative error < 1e-8."""
    rng = np.random.default_rng(seed)
    net = make_net(rng, nested)
    if not nested:
        name = FLAT_NAME[name]
    x = rng.standard_normal((n, 2, 6, 4))
    logits = net.forward(x)
    assume(away_from_kinks(net, x))
    s = one_hot(n, 3, rng.integers(0, 3, n))
    g = net.backward(s, to=name)
    expected_shape = x.shape if name is None else net.activations[name].shape
    assert g.shape == expected_shape and g.dtype == np.float64
    assert logits.dtype == np.float64
    err = relative_error(g, fd_to(net, name, s, x))
    assert err < TOL, err


@pytest.mark.parametrize("name", NAMES)
def test_backward_to_every_name(name):
    """The same fact for each name on two fixed nets whose kink margins are asserted."""
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        net = make_net(rng)
        x = rng.standard_normal((2, 2, 6, 4))
        net.forward(x)
        assert away_from_kinks(net, x), "test data too close to a kink: pick another seed"
        s = rng.standard_normal((2, 3))
        g = net.backward(s, to=name)
        assert relative_error(g, fd_to(net, name, s, x)) < TOL


def _param_net(rng):
    bn = npcam.BatchNorm2d(3)
    bn.weight, bn.bias = rng.standard_normal(3), rng.standard_normal(3)
    bn.running_mean, bn.running_var = rng.standard_normal(3), rng.uniform(0.5, 2.0, 3)
    return npcam.Sequential(
        features=npcam.Sequential(npcam.Conv2d(2, 3, (3, 2), padding=1, rng=rng), bn,
                                  npcam.MaxPool2d(2), npcam.ReLU(),
                                  npcam.Conv2d(3, 2, 1, bias=False, rng=rng)),
        classifier=npcam.Sequential(npcam.GlobalAvgPool2d(), npcam.Linear(2, 3, rng=rng)),
    )


@pytest.mark.parametrize("train", [False, True])
def test_param_grads_match_finite_differences(train):
    """backward(..., param_grads=True) fills every parameter's gradient (names as in the
    state_dict) with ∂⟨s, logits⟩/∂θ, each within 1e-8 of central differences; in
    training mode BN's batch statistics are differentiated too."""
    rng = np.random.default_rng(3)
    net = _param_net(rng)
    net.train(train)
    x = rng.standard_normal((2, 2, 5, 4))
    net.forward(x)
    assert away_from_kinks(net, x)
    s = rng.standard_normal((2, 3))
    net.backward(s, param_grads=True)
    grads = {k: v.copy() for k, v in net.named_grads().items()}
    params = dict(net.named_parameters())
    assert list(grads) == list(params) == [
        "features.0.weight", "features.0.bias", "features.1.weight", "features.1.bias",
        "features.4.weight", "classifier.1.weight", "classifier.1.bias"]
    for key, p in params.items():
        numeric = numerical_gradient(lambda _p: net.forward(x), p, s)
        assert grads[key].dtype == np.float64
        if train and key == "features.0.bias":
            # A bias right before a training-mode BN is removed by the batch mean: its
            # gradient is exactly 0, so only absolute smallness can be checked.
            scale = np.max(np.abs(grads["features.0.weight"]))
            assert np.max(np.abs(grads[key])) <= 1e-13 * scale
            assert np.max(np.abs(numeric)) <= 1e-8 * scale
            continue
        assert relative_error(grads[key], numeric) < TOL, key


def test_param_grads_false_leaves_grads_untouched():
    """param_grads=False computes the same input gradient (bit for bit) and does not touch
    the kept parameter gradients: a fresh net keeps none; a net with earlier ones keeps
    them; vjp returns param_grads None."""
    rng = np.random.default_rng(4)
    net = _param_net(rng)
    x1, x2 = rng.standard_normal((2, 2, 5, 4)), rng.standard_normal((2, 2, 5, 4))
    s = rng.standard_normal((2, 3))
    net.forward(x1)
    g_no = net.backward(s, param_grads=False)
    assert net.named_grads() == {}
    assert net.vjp(net.trace, s).param_grads is None
    g_yes = net.backward(s, param_grads=True)
    np.testing.assert_array_equal(g_no, g_yes)
    before = {k: v.copy() for k, v in net.named_grads().items()}
    net.forward(x2)
    net.backward(s, param_grads=False)
    after = net.named_grads()
    assert before.keys() == after.keys()
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])


def test_record_fills_gradients_consistently():
    """record=True keeps ∂L/∂(output of name) for every leaf visited — equal to
    backward(to=name) — the seed itself for the last leaf, and input_gradient = ∂L/∂x."""
    rng = np.random.default_rng(5)
    net = make_net(rng)
    x = rng.standard_normal((2, 2, 6, 4))
    net.forward(x)
    s = rng.standard_normal((2, 3))
    gx = net.backward(s, record=True)
    recorded = {k: v.copy() for k, v in net.gradients.items()}
    np.testing.assert_array_equal(net.input_gradient, gx)
    assert set(recorded) == {n for n, _ in net.named_layers()}
    np.testing.assert_array_equal(recorded["classifier.2"], s)
    for name in recorded:
        np.testing.assert_array_equal(recorded[name], net.backward(s, to=name))
        assert recorded[name].dtype == np.float64
    net.backward(s, to="features.2", record=True)
    assert set(net.gradients) == {"features.3", "features.4", "classifier.0", "classifier.1",
                                  "classifier.2"}


def test_backward_errors():
    """backward before forward: RuntimeError; an unknown `to`: ValueError naming it; a
    cotangent of the wrong shape or with NaN, or an unknown relu rule: ValueError."""
    rng = np.random.default_rng(6)
    net = make_net(rng)
    with pytest.raises(RuntimeError, match="before forward"):
        net.backward(np.ones((1, 3)))
    net.forward(rng.standard_normal((2, 2, 6, 4)))
    with pytest.raises(ValueError, match="'features.9'"):
        net.backward(np.ones((2, 3)), to="features.9")
    with pytest.raises(ValueError, match="'feat'"):
        net.backward(np.ones((2, 3)), to="feat")
    with pytest.raises(TypeError):
        net.backward(np.ones((2, 3)), to=3)
    for bad in (np.ones((1, 3)), np.ones((2, 4)), np.ones(3), np.ones((2, 3, 1))):
        with pytest.raises(ValueError, match="cotangent"):
            net.backward(bad)
    with pytest.raises(ValueError, match="cotangent"):
        net.backward(np.array([[1.0, np.nan, 0.0], [0.0, 0.0, 1.0]]))
    with pytest.raises(ValueError, match="relu"):
        net.backward(np.ones((2, 3)), relu_rule="leaky")


def test_relu_rule_reaches_every_relu():
    """relu="deconvnet" / "guided" change only the ReLU rule: on a Linear → ReLU → Linear
    net the input gradient is W1ᵀ·rule(W2ᵀ s, x) written out by hand."""
    rng = np.random.default_rng(7)
    l1, l2 = npcam.Linear(4, 5, rng=rng), npcam.Linear(5, 2, rng=rng)
    net = npcam.Sequential(l1, npcam.ReLU(), l2)
    x = rng.standard_normal((3, 4))
    net.forward(x)
    pre = x @ l1.weight.T + l1.bias
    s = rng.standard_normal((3, 2))
    d = s @ l2.weight
    rules = {"standard": d * (pre > 0), "deconvnet": d * (d > 0),
             "guided": d * (pre > 0) * (d > 0)}
    for rule, dh in rules.items():
        got = net.backward(s, relu_rule=rule)
        assert np.max(np.abs(got - dh @ l1.weight)) <= 1e-13 * np.max(np.abs(dh) @ np.abs(
            l1.weight)), rule


# =============================================================================== input
def test_forward_bad_input_names_it():
    """NaN/inf in x: ValueError naming x; wrong rank or channel count: ValueError naming
    the input (of the first layer); strings: TypeError."""
    net = make_net(np.random.default_rng(8))
    good = np.ones((1, 2, 6, 4))
    net.forward(good)
    for v in (np.nan, np.inf, -np.inf):
        bad = good.copy()
        bad[0, 1, 2, 3] = v
        with pytest.raises(ValueError, match=r"\bx\b"):
            net.forward(bad)
    for shape in ((2, 6, 4), (1, 1, 2, 6, 4), (1, 3, 6, 4)):
        with pytest.raises(ValueError, match="input"):
            net.forward(np.ones(shape))
    with pytest.raises(TypeError, match=r"\bx\b"):
        net.forward("image")
    with pytest.raises(ValueError, match="output"):
        net.forward_from("features", np.full((1, 4, 2, 1), np.nan))


def test_forward_outputs_float64_for_int_and_float32():
    net = make_net(np.random.default_rng(9))
    for dtype in (np.int64, np.float32):
        x = (np.arange(48) % 5).reshape(1, 2, 6, 4).astype(dtype)
        assert net.forward(x).dtype == np.float64
        assert all(v.dtype == np.float64 for v in net.activations.values())
        assert net.backward(np.ones((1, 3))).dtype == np.float64


# ======================================================================= weight files
def _twin(seed):
    return _torch_like_net() if seed is None else npcam.Sequential(
        features=npcam.Sequential(npcam.Conv2d(3, 4, 3, padding=1, rng=seed),
                                  npcam.BatchNorm2d(4), npcam.ReLU(),
                                  npcam.Conv2d(4, 4, 1, bias=False, rng=seed + 1)),
        classifier=npcam.Sequential(npcam.GlobalAvgPool2d(), npcam.Flatten(),
                                    npcam.Linear(4, 2, rng=seed + 2)),
    )


def _trained_net():
    net = _torch_like_net()
    net.train()
    net.forward(np.random.default_rng(0).standard_normal((2, 3, 5, 5)))  # running stats move
    net.eval()
    return net


def _assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype, k
        np.testing.assert_array_equal(sa[k], sb[k])


def test_save_load_weights_round_trip_is_exact(tmp_path):
    """save → load_weights restores every parameter and buffer bit for bit (including
    num_batches_tracked) into a differently initialised twin; logits then agree exactly."""
    net = _trained_net()
    path = tmp_path / "w.npz"
    net.save(path)
    other = _twin(100)
    assert not np.array_equal(other["features.0"].weight, net["features.0"].weight)
    result = npcam.load_weights(other, path)
    assert result.missing_keys == [] and result.unexpected_keys == []
    _assert_same_state(net, other)
    assert int(other["features.1"].num_batches_tracked) == 1
    x = np.random.default_rng(1).standard_normal((2, 3, 5, 5))
    np.testing.assert_array_equal(net.forward(x), other.forward(x))


def test_load_model_rebuilds_architecture_and_weights(tmp_path):
    """load_model needs only the file: same config, same state, identical logits."""
    net = _trained_net()
    net.save(tmp_path / "m.npz")
    loaded = npcam.load_model(tmp_path / "m.npz")
    assert isinstance(loaded, npcam.Sequential)
    assert loaded.config() == net.config()
    _assert_same_state(net, loaded)
    x = np.random.default_rng(2).standard_normal((3, 3, 6, 5))
    np.testing.assert_array_equal(net.forward(x), loaded.forward(x))
    np.savez(tmp_path / "plain.npz", **net.state_dict())
    with pytest.raises(ValueError, match="architecture"):
        npcam.load_model(tmp_path / "plain.npz")


def test_strict_missing_and_unexpected_keys():
    """strict=True: ValueError listing the missing and the unexpected keys, nothing
    loaded; strict=False: the common keys load and (missing, unexpected) come back."""
    src = _trained_net().state_dict()
    sd = dict(src)
    del sd["features.3.weight"]
    sd["classifier.9.weight"] = np.ones(2)
    net = _twin(50)
    before = net.state_dict()
    with pytest.raises(ValueError) as info:
        net.load_state_dict(sd)
    assert "features.3.weight" in str(info.value) and "classifier.9.weight" in str(info.value)
    _assert_same_state_dict(net.state_dict(), before)
    missing, unexpected = net.load_state_dict(sd, strict=False)
    assert missing == ["features.3.weight"] and unexpected == ["classifier.9.weight"]
    after = net.state_dict()
    for k in src:
        if k == "features.3.weight":
            np.testing.assert_array_equal(after[k], before[k])
        else:
            np.testing.assert_array_equal(after[k], src[k])


def _assert_same_state_dict(a, b):
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("features.0.weight", np.ones((4, 3, 3, 2)), "features.0.weight"),
        ("classifier.2.bias", np.ones((1, 2)), "classifier.2.bias"),
        ("classifier.2.weight", np.ones(8), "classifier.2.weight"),
        ("features.1.running_var", np.array([1.0, np.nan, 1.0, 1.0]), "features.1.running_var"),
        ("classifier.2.bias", np.array([np.inf, 0.0]), "classifier.2.bias"),
        ("features.1.num_batches_tracked", np.array(1.5), "num_batches_tracked"),
        ("features.1.num_batches_tracked", np.array([1]), "num_batches_tracked"),
    ],
)
def test_bad_values_are_refused_atomically(key, value, match):
    """A wrong shape (nothing is broadcast or reshaped), NaN/inf or a non-integer
    num_batches_tracked: ValueError naming the key — and no other key has been assigned
    (the bad key is placed after good ones that would otherwise load)."""
    good = _trained_net().state_dict()
    sd = {k: (value if k == key else v) for k, v in good.items()}
    net = _twin(60)
    before = net.state_dict()
    with pytest.raises(ValueError, match=match):
        net.load_state_dict(sd)
    _assert_same_state_dict(net.state_dict(), before)


def test_load_state_dict_copies_and_casts():
    """Loaded arrays are float64 copies: changing the source afterwards changes nothing;
    an int num_batches_tracked loads as int64."""
    sd = _trained_net().state_dict()
    sd["classifier.2.bias"] = np.array([1, 2], dtype=np.int32)
    sd["features.1.num_batches_tracked"] = 7
    net = _twin(70)
    net.load_state_dict(sd)
    assert net["classifier.2"].bias.dtype == np.float64
    np.testing.assert_array_equal(net["classifier.2"].bias, [1.0, 2.0])
    assert net["features.1"].num_batches_tracked.dtype == np.int64
    assert int(net["features.1"].num_batches_tracked) == 7
    sd["features.0.weight"] += 1.0
    assert not np.array_equal(net["features.0"].weight, sd["features.0.weight"])
    with pytest.raises(TypeError, match="state_dict"):
        net.load_state_dict([("features.0.weight", 1)])


UNPICKLED = []


class Tripwire:
    """Records in UNPICKLED when it is unpickled: proves a loader never unpickles."""

    def __reduce__(self):
        return (_tripwire, ())


def _tripwire():
    UNPICKLED.append(True)
    return "unpickled"


def test_pickled_object_array_is_refused_never_loaded(tmp_path):
    """An .npz holding an object array: ValueError mentioning pickle; the object's
    unpickling hook never runs; the model is unchanged."""
    sd = _trained_net().state_dict()
    sd["features.0.bias"] = np.array([Tripwire()] * 4, dtype=object)
    np.savez(tmp_path / "evil.npz", **sd)
    # the file really holds a pickle that would run the hook
    with np.load(tmp_path / "evil.npz", allow_pickle=True) as f:
        assert f["features.0.bias"][0] == "unpickled"
    UNPICKLED.clear()
    net = _twin(80)
    before = net.state_dict()
    with pytest.raises(ValueError, match="pickle"):
        npcam.load_weights(net, tmp_path / "evil.npz")
    with pytest.raises(ValueError, match="pickle"):
        npcam.load_model(tmp_path / "evil.npz")
    assert UNPICKLED == []
    _assert_same_state_dict(net.state_dict(), before)
    with open(tmp_path / "raw.pkl", "wb") as fh:
        pickle.dump({"features.0.weight": Tripwire()}, fh)
    with pytest.raises(ValueError):
        npcam.load_weights(net, tmp_path / "raw.pkl")
    assert UNPICKLED == []


def test_unreadable_files(tmp_path):
    """A missing path: FileNotFoundError; a garbage file, an empty file, a directory:
    ValueError naming the path; the model is unchanged."""
    net = _twin(90)
    before = net.state_dict()
    with pytest.raises(FileNotFoundError):
        npcam.load_weights(net, tmp_path / "nope.npz")
    with pytest.raises(FileNotFoundError):
        npcam.load_model(tmp_path / "nope.npz")
    (tmp_path / "garbage.npz").write_bytes(b"this is not an npz file at all\x00\x01")
    (tmp_path / "empty.npz").write_bytes(b"")
    for path in (tmp_path / "garbage.npz", tmp_path / "empty.npz", tmp_path):
        with pytest.raises(ValueError, match="path"):
            npcam.load_weights(net, path)
    _assert_same_state_dict(net.state_dict(), before)
    with pytest.raises(TypeError, match="model"):
        npcam.load_weights(before, tmp_path / "garbage.npz")


def test_truncated_npz_is_value_error(tmp_path):
    """A weights file cut short (a download interrupted: it still starts with the zip
    magic) is an unreadable weights file: ValueError naming the path, like any other —
    not zipfile.BadZipFile leaking out of NumPy."""
    _trained_net().save(tmp_path / "ok.npz")
    data = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    net = _twin(91)
    with pytest.raises(ValueError, match="path"):
        npcam.load_weights(net, tmp_path / "cut.npz")
    with pytest.raises(ValueError, match="path"):
        npcam.load_model(tmp_path / "cut.npz")


def test_npy_file_is_value_error(tmp_path):
    """A single-array .npy file is not a weights file: ValueError naming the path (not a
    TypeError about context managers)."""
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(ValueError, match="path"):
        npcam.load_weights(_twin(92), tmp_path / "one.npy")
    with pytest.raises(ValueError, match="path"):
        npcam.load_model(tmp_path / "one.npy")


def test_garbage_file_message_does_not_claim_pickles(tmp_path):
    """A file that is simply not an .npz is reported as unreadable, not as a file that
    "holds pickled objects" (it holds none; NumPy only guessed)."""
    (tmp_path / "garbage.npz").write_bytes(b"plain text, no pickle here")
    with pytest.raises(ValueError) as info:
        npcam.load_weights(_twin(93), tmp_path / "garbage.npz")
    assert "pickled objects" not in str(info.value)
