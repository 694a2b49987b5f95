r"""Stateless execution: the Trace / VJP / Model protocol, layer reuse, threads, and the
finiteness checks of § 4.1 (case ids from the 0.1.0 reliability findings)."""

import dataclasses
import threading
import warnings

import numpy as np
import pytest

import npcam
from npcam.gradcheck import numerical_gradient, relative_error
from npcam.nn import VJP, Model, Trace

TOL = 1e-8


def _net(rng_base: int = 0) -> npcam.Sequential:
    return npcam.Sequential(
        npcam.Conv2d(3, 4, 3, padding=1, rng=rng_base), npcam.ReLU(), npcam.MaxPool2d(2),
        npcam.Conv2d(4, 6, 3, padding=1, rng=rng_base + 1), npcam.ReLU(),
        npcam.GlobalAvgPool2d(), npcam.Linear(6, 3, rng=rng_base + 2),
    )


def test_protocol_records_have_the_fields_of_the_contract():
    """Trace is a frozen dataclass (input, output, activations, caches); VJP a NamedTuple
    (grad, param_grads, node_grads); Sequential implements the runtime-checkable Model."""
    assert [f.name for f in dataclasses.fields(Trace)] == ["input", "output", "activations", "caches"]
    assert VJP._fields == ("grad", "param_grads", "node_grads")
    net = _net()
    assert isinstance(net, Model)
    assert not isinstance(object(), Model)
    trace = net.run(np.random.default_rng(0).uniform(size=(2, 3, 8, 8)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        trace.output = None
    with pytest.raises(TypeError):
        trace.activations["0"] = None
    assert trace.output.shape == (2, 3)
    assert set(trace.caches) == {n for n, _ in net.named_nodes()}
    assert net.output_name == "6"
    assert net.inputs_of("0") == ("input",) and net.inputs_of("3") == ("2",)
    assert len(repr(trace)) < 200


def test_vjp_equals_forward_backward_and_leaves_the_model_alone():
    """model.vjp(run(x), s, to=name).grad is bit for bit what forward/backward give; run and
    vjp store nothing on the model or its layers (activations, attributes unchanged)."""
    rng = np.random.default_rng(1)
    net = _net()
    x, s = rng.uniform(size=(2, 3, 8, 8)), rng.standard_normal((2, 3))
    net.forward(x)
    kept = dict(net.activations)
    layers_before = [dict(vars(leaf)) for _, leaf in net.named_layers()]
    y = rng.uniform(size=(3, 3, 8, 8))
    out = net.vjp(net.run(y), rng.standard_normal((3, 3)), to="3", record=True, param_grads=True)
    assert out.grad.shape == (3, 6, 4, 4)
    assert set(out.node_grads) == {"4", "5", "6"}
    assert set(out.param_grads) == {"6.weight", "6.bias"}  # only the layers after "3"
    assert net.activations.keys() == kept.keys()
    for k, v in kept.items():
        assert net.activations[k] is v
    for before, (_, leaf) in zip(layers_before, net.named_layers(), strict=True):
        assert vars(leaf).keys() == before.keys()
        for k, v in before.items():
            assert vars(leaf)[k] is v
    np.testing.assert_array_equal(net.vjp(net.run(x), s, to="3").grad, net.backward(s, to="3"))


def test_explanations_touch_no_model_state():
    """grad_cam, guided_backprop, cam_equivalence, … leave ``model.activations`` (and the
    kept trace) exactly as the user's own forward left them: 0.1's explain.py saved and
    restored them instead."""
    m = npcam.zoo.pretrained("gap")
    x = np.random.default_rng(2).uniform(size=(2, 3, 64, 64))
    m.forward(x[:1])
    trace, acts = m.trace, dict(m.activations)
    for method in npcam.METHODS.values():
        method.function(m, x, 1)
    npcam.grad_cam(m, x, "all")
    npcam.cam_equivalence(m, x)
    assert m.trace is trace
    assert m.activations.keys() == acts.keys()
    assert all(m.activations[k] is v for k, v in acts.items())


def test_run_from_leaves_the_old_trace_and_refuses_to_backpropagate_through_the_replaced_node():
    """run_from gives a new trace (node "3" replaced, the rest re-run, old trace
    unchanged, equal to running the tail by hand); a vjp may stop at "3" but not pass it."""
    rng = np.random.default_rng(3)
    net = _net()
    trace = net.run(rng.uniform(size=(2, 3, 8, 8)))
    old = trace.output.copy()
    a = rng.standard_normal((5, 6, 4, 4))
    new = net.run_from(trace, "3", a)
    np.testing.assert_array_equal(trace.output, old)
    tail = a
    for _, layer in net.named_layers()[4:]:
        tail = layer.forward(tail)
    np.testing.assert_array_equal(new.output, tail)
    assert new.activations["3"] is not None and new.output.shape == (5, 3)
    assert net.vjp(new, np.ones((5, 3)), to="3").grad.shape == a.shape
    with pytest.raises(ValueError, match="run_from"):
        net.vjp(new, np.ones((5, 3)))


def test_a_layer_instance_used_twice_has_correct_gradients():
    """A79: one ReLU instance used twice in a Sequential. 0.1.0 kept one cache per layer
    object, so the first use's backward read the second use's mask: central difference
    2.6e-05 against npcam's −8.4e-04. Now each call has its cache in the trace: the input
    gradient and every parameter gradient agree with central differences (< 1e-8)."""
    relu = npcam.ReLU()
    conv = npcam.Conv2d(4, 4, 3, padding=1, rng=1)
    net = npcam.Sequential(npcam.Conv2d(3, 4, 3, padding=1, rng=0), relu, conv, relu,
                           npcam.GlobalAvgPool2d(), npcam.Linear(4, 2, rng=2))
    x = np.random.default_rng(0).uniform(size=(1, 3, 8, 8))
    g = npcam.saliency(net, x, target=0)
    seed = np.array([[1.0, 0.0]])
    numeric = numerical_gradient(lambda z: net.run(z).output, x.copy(), seed)
    assert relative_error(g, numeric) < TOL
    i = (0, 2, 6, 1)  # the finding's coordinate
    assert abs(g[i] - numeric[i]) < 1e-8


def test_a_parameter_shared_by_two_calls_gets_the_sum_of_their_gradients():
    """A Conv2d instance called twice: ∂L/∂W is the sum over both calls, reported under
    both of its state_dict keys, and equal to central differences (< 1e-8)."""
    conv = npcam.Conv2d(3, 3, 3, padding=1, rng=4)
    net = npcam.Sequential(conv, npcam.ReLU(), conv, npcam.GlobalAvgPool2d(), npcam.Linear(3, 2, rng=5))
    rng = np.random.default_rng(6)
    x, s = rng.uniform(size=(2, 3, 5, 5)), rng.standard_normal((2, 2))
    grads = net.vjp(net.run(x), s, param_grads=True).param_grads
    np.testing.assert_array_equal(grads["0.weight"], grads["2.weight"])
    numeric = numerical_gradient(lambda _w: net.run(x).output, conv.weight, s)
    assert relative_error(grads["0.weight"], numeric) < TOL


@pytest.mark.slow
def test_threads_sharing_one_model_get_the_single_threaded_results():
    """A80: two threads explaining with one model got wrong maps with no error (10 of 12
    wrong in 0.1.0). Now 4 threads × 20 calls of grad_cam and guided_backprop on one shared
    model equal the single-threaded results to 1e-13 of their scale."""
    m = npcam.zoo.pretrained("gap")
    xs = [np.random.default_rng(s).uniform(size=(2, 3, 64, 64)) for s in range(4)]
    ref = [(npcam.grad_cam(m, x, target=1).cam, npcam.guided_backprop(m, x, target=1)) for x in xs]
    errors: list[float] = []
    failures: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(20):
                cam = npcam.grad_cam(m, xs[i], target=1).cam
                gb = npcam.guided_backprop(m, xs[i], target=1)
                errors.append(float(np.abs(cam - ref[i][0]).max() / np.abs(ref[i][0]).max()))
                errors.append(float(np.abs(gb - ref[i][1]).max() / np.abs(ref[i][1]).max()))
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    assert len(errors) == 4 * 20 * 2
    assert max(errors) <= 1e-13


def test_finite_input_that_overflows_names_the_first_layer():
    """A92: x = ±1e308 into the shipped gap model gave an all-NaN map with score NaN and
    only RuntimeWarnings. Now a ValueError says the forward pass overflowed and names the
    first layer whose output is not finite; no numpy warning leaks."""
    m = npcam.zoo.pretrained("gap")
    x = np.full((1, 3, 64, 64), 1e308)
    x[0, :, ::2] = -1e308
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"forward pass overflowed.*layer 'features\.0' \(Conv2d\)"):
            npcam.grad_cam(m, x)


def test_huge_weights_are_caught_in_the_forward_pass():
    """A24: weights ×1e200 accepted by load_state_dict gave 29 of 32 map values NaN and
    scores −inf. Now the forward pass reports the overflow at layer '3'."""
    net = _net()
    sd = net.state_dict()
    sd["3.weight"] *= 1e200
    sd["6.weight"] *= 1e200
    net.load_state_dict(sd)
    x = np.random.default_rng(0).uniform(size=(2, 3, 8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"forward pass overflowed.*layer '(4|5|6)'"):
            npcam.grad_cam(net, x, layer="4")


def test_backward_overflow_is_named():
    """A52: logits near ±6e307 with score="log_softmax" gave α = [−inf, 0] and a map of 0
    ("no evidence"). The forward pass is finite; the backward pass overflows and now says
    so, naming the layer, instead of returning a silent map."""
    net = npcam.Sequential(npcam.Conv2d(3, 2, 1, rng=0), npcam.ReLU(), npcam.GlobalAvgPool2d(),
                           npcam.Linear(2, 3, rng=1))
    net.load_state_dict({
        "0.weight": np.full((2, 3, 1, 1), 0.5), "0.bias": np.zeros(2),
        "3.weight": np.array([[1e308, 0.0], [-1e308, 0.0], [0.0, 0.0]]), "3.bias": np.zeros(3),
    })
    x = np.full((1, 3, 4, 4), 0.5)
    assert np.isfinite(net.forward(x)).all()
    # a cotangent of 1e10 on a 1e308 weight overflows in the Linear's backward
    with pytest.raises(ValueError, match=r"backward pass overflowed.*layer '3' \(Linear\)"):
        net.vjp(net.run(x), np.array([[1e10, 1e10, 0.0]]))


def test_nan_weight_assigned_directly_is_refused():
    """A25: ``net["3"].weight = NaN`` bypassed load_state_dict and gave an all-NaN cam with
    "All-NaN slice" warnings; assignment now checks the values."""
    net = _net()
    with pytest.raises(ValueError, match="Conv2d.weight must contain only finite values"):
        net["3"].weight = np.full_like(net["3"].weight, np.nan)


def test_empty_batch_gives_empty_results_with_any_target():
    """A10/A11: an empty batch returned empty results with target=None but raised "zero-size
    array to reduction operation minimum" with an explicit target. Both now return empty
    results of the right shapes."""
    net = _net()
    x = np.zeros((0, 3, 8, 8))
    for target in (None, 1, np.zeros(0, dtype=np.int64)):
        r = npcam.grad_cam(net, x, target, layer="4")
        assert r.cam.shape == (0, 4, 4) and r.weights.shape == (0, 6) and r.target.shape == (0,)
        assert npcam.guided_backprop(net, x, target).shape == (0, 3, 8, 8)


def test_uint64_target_is_reported_as_given():
    """A38: target np.array([2**64 − 1, 0], np.uint64) was reported as [-1, 0] (wrapped to
    int64 before the message was built)."""
    net = _net()
    x = np.random.default_rng(0).uniform(size=(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"got \[18446744073709551615, 0\]"):
        npcam.grad_cam(net, x, np.array([2**64 - 1, 0], dtype=np.uint64), layer="4")


def test_cam_result_repr_is_short():
    """``print(r)`` of a CAMResult dumped 35,000 characters; now a line of shapes and dtypes."""
    r = npcam.grad_cam(npcam.zoo.pretrained("gap"), np.random.default_rng(0).uniform(size=(4, 3, 64, 64)))
    text = repr(r)
    assert len(text) < 400
    assert "cam=<float64 (4, 8, 8)>" in text and "layer='features.14'" in text
