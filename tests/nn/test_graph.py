"""``npcam.Graph``: a hand-built DAG against central differences, its structure and names,
run_from, the model protocol, and the config round trip.

The test graph has every feature an imported torchvision model needs: a residual block
whose input has a fan-out of 3 (two branches and the skip), a concat of 4 branches, a
squeeze-excitation gate (a broadcasting Mul of a sigmoid of a pooled map), a Split, a layer
instance called at two nodes, and a function ReLU (``from_module=False``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _support import scaled_error

import npcam
from npcam.nn.graph import Graph, Node
from npcam.verify.gradcheck import numerical_gradient


def build(seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    shared_relu = npcam.ReLU()
    nodes = [
        Node("stem", npcam.Conv2d(3, 6, 3, padding=1, rng=rng), ("input",), ("stem_conv",), from_module=True),
        Node("stem_relu", shared_relu, ("stem",), from_module=True),
        # residual block: stem_relu feeds a, b and the skip (fan-out 3)
        ("a", npcam.Conv2d(6, 6, 3, padding=1, rng=rng), ("stem_relu",)),
        ("b", npcam.Conv2d(6, 6, 1, rng=rng), ("stem_relu",)),
        ("ab", npcam.Add(), ("a", "b")),
        ("res", npcam.Add(), ("ab", "stem_relu")),
        Node("res_relu", shared_relu, ("res",), from_module=True),  # the same layer, second call
        # four branches concatenated
        ("br1", npcam.Conv2d(6, 2, 1, rng=rng), ("res_relu",)),
        ("br2", npcam.Conv2d(6, 3, 3, padding=1, rng=rng), ("res_relu",)),
        ("br3", npcam.MaxPool2d(3, 1, padding=1), ("res_relu",)),
        ("br4", npcam.Conv2d(6, 1, (1, 3), padding=(0, 1), rng=rng), ("res_relu",)),
        ("cat", npcam.Concat(1), ("br1", "br2", "br3", "br4")),
        Node("cat_relu", npcam.ReLU(), ("cat",), from_module=False),  # an F.relu
        # squeeze-excitation gate
        ("se_pool", npcam.AdaptiveAvgPool2d(1), ("cat_relu",)),
        ("se_fc", npcam.Conv2d(12, 12, 1, rng=rng), ("se_pool",)),
        ("se_gate", npcam.Sigmoid(), ("se_fc",)),
        ("se", npcam.Mul(), ("cat_relu", "se_gate")),
        # a split whose two parts are recombined
        ("split", npcam.Split([5, 7], 1), ("se",)),
        ("part", npcam.Conv2d(7, 5, 1, rng=rng), ("split:1",)),
        ("merge", npcam.Add(), ("split:0", "part")),
        ("gap", npcam.GlobalAvgPool2d(), ("merge",)),
        ("fc", npcam.Linear(5, 4, rng=rng), ("gap",)),
    ]
    return Graph(nodes, "fc")


def _input(seed: int = 1, shape=(2, 3, 7, 6)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def test_gradients_of_the_whole_graph_match_central_differences():
    """∂⟨v, f(x)⟩/∂x and ∂⟨v, f(x)⟩/∂θ for every parameter θ, from one backward pass
    (fan-out sums, concat/split slicing, the SE product rule, a layer used twice), equal
    central differences to < 1e-8 relative. The step is 1e-5: one input pixel moves the
    logits by ~1e-3 of their size, so at 1e-6 float64 round-off in f alone reaches ~1e-8
    of the gradient (the graph is piecewise linear except the sigmoid, so the larger step
    adds no truncation error worth counting)."""
    g = build()
    x = _input()
    trace = g.run(x)
    v = np.random.default_rng(2).standard_normal(trace.output.shape)
    out = g.vjp(trace, v, param_grads=True)
    num = numerical_gradient(lambda z: g.run(z).output, x.copy(), v, eps=1e-5)
    assert scaled_error(out.grad, num) < 1e-8
    params = dict(g.named_parameters())
    assert set(out.param_grads) == set(params)
    for key, p in params.items():
        num = numerical_gradient(lambda _p: g.run(x).output, p, v, eps=1e-5)
        assert scaled_error(out.param_grads[key], num) < 1e-8, key


def test_gradient_at_an_inner_node_matches_perturbing_that_node():
    """``vjp(to=n)`` is ∂L/∂(output of n) with everything not depending on n held fixed:
    central differences of ``run_from(trace, n, A + εe)``."""
    g = build()
    x = _input()
    trace = g.run(x)
    v = np.random.default_rng(3).standard_normal(trace.output.shape)
    for name in ("stem_relu", "res", "cat_relu", "split:1"):
        a = np.array(trace.activations[name], copy=True)
        grad = g.vjp(trace, v, to=name).grad
        num = numerical_gradient(lambda z, n=name: g.run_from(trace, n, z).output, a, v, eps=1e-5)
        assert scaled_error(grad, num) < 1e-8, name


def test_fan_out_gradient_is_the_sum_over_consumers():
    """The gradient at a node read by three nodes is the sum of what each consumer sends:
    the recorded gradients of a, b (through their convs) and the skip add."""
    g = build()
    trace = g.run(_input())
    v = np.ones(trace.output.shape)
    rec = g.vjp(trace, v, record=True)
    # the skip path: res = ab + stem_relu, so the skip contributes ∂L/∂res unchanged
    ga = g.nodes[2].layer.vjp(rec.node_grads["a"], (trace.activations["a"].shape, trace.caches["a"]))[0]
    gb = g.nodes[3].layer.vjp(rec.node_grads["b"], (trace.activations["b"].shape, trace.caches["b"]))[0]
    total = ga + gb + rec.node_grads["res"]
    assert scaled_error(rec.node_grads["stem_relu"], total) < 1e-13


def test_shared_layer_has_one_cache_per_call():
    """One ReLU instance at two nodes: two caches, and each node's output is its own."""
    g = build()
    trace = g.run(_input())
    assert g.nodes[1].layer is g.nodes[6].layer
    assert "stem_relu" in trace.caches and "res_relu" in trace.caches
    np.testing.assert_array_equal(trace.activations["res_relu"], np.maximum(trace.activations["res"], 0))
    np.testing.assert_array_equal(trace.activations["stem_relu"], np.maximum(trace.activations["stem"], 0))


def test_guided_relus_modules_leaves_function_relus_standard():
    """With guided_relus="modules" the guided rule applies only to ReLU nodes with
    from_module; the function ReLU (cat_relu) keeps the standard rule. So the guided input
    gradient with "modules" differs from "all" and equals a hand-composed one."""
    g = build()
    trace = g.run(_input())
    v = np.random.default_rng(4).standard_normal(trace.output.shape)
    all_ = g.vjp(trace, v, relu_rule="guided").grad
    mods = g.vjp(trace, v, relu_rule="guided", guided_relus="modules").grad
    std_at_cat = g.vjp(trace, v, to="cat_relu", relu_rule="guided").node_grads
    assert std_at_cat is None
    # At cat_relu's input: "modules" applies the standard rule there.
    d_cat = g.vjp(trace, v, to="cat_relu", relu_rule="guided").grad
    mask = trace.activations["cat"] > 0
    d_in_modules = g.vjp(trace, v, to="cat", relu_rule="guided", guided_relus="modules").grad
    np.testing.assert_array_equal(d_in_modules, d_cat * mask)
    d_in_all = g.vjp(trace, v, to="cat", relu_rule="guided").grad
    np.testing.assert_array_equal(d_in_all, d_cat * mask * (d_cat > 0))
    assert np.abs(all_ - mods).max() > 0
    with pytest.raises(ValueError, match="guided_relus"):
        g.vjp(trace, v, guided_relus="some")


def test_aliases_and_names():
    g = build()
    trace = g.run(_input())
    assert trace.activations["stem_conv"] is trace.activations["stem"]
    assert g.resolve("stem_conv") == "stem"
    assert g.inputs_of("cat") == ("br1", "br2", "br3", "br4")
    assert g.output_name == "fc"
    with pytest.raises(ValueError, match="not in the graph"):
        g.resolve("nope")


def test_ambiguous_module_path_is_refused_with_its_nodes():
    g = build()
    g2 = Graph(g.nodes, "fc", ambiguous={"relu": ["stem_relu", "res_relu"]})
    with pytest.raises(ValueError, match=r"called 2 times.*'stem_relu', 'res_relu'"):
        npcam.grad_cam(g2, _input(), layer="relu")


def test_explanations_run_on_a_graph():
    """Grad-CAM on a graph equals the definition computed by hand from the trace."""
    g = build()
    x = _input()
    res = npcam.grad_cam(g, x, target=[1, 2], layer="res_relu")
    trace = g.run(x)
    e = np.zeros(trace.output.shape)
    e[[0, 1], [1, 2]] = 1
    grad = g.vjp(trace, e, to="res_relu").grad
    alpha = grad.mean(axis=(2, 3))
    a = trace.activations["res_relu"]
    expected = np.maximum(np.einsum("nk,nkhw->nhw", alpha, a), 0)
    assert scaled_error(res.cam, expected) < 1e-13


def test_default_layer_rule_takes_the_last_dominating_feature_map():
    """layer=None: the last node on every path to the logits with a 4-D NCHW output of
    more than one position that is not a pooling or identity node. Here: 'merge' (the
    Add after the split), since gap is pooling."""
    g = build()
    res = npcam.grad_cam(g, _input())
    assert res.layer == "merge"
    doms = g.dominators()
    assert "res" in doms and "cat" in doms and "a" not in doms and "br1" not in doms


def test_graph_errors():
    relu = npcam.ReLU()
    with pytest.raises(ValueError, match="topological"):
        Graph([("a", relu, ("b",)), ("b", relu, ("input",))], "a")
    with pytest.raises(ValueError, match="unique"):
        Graph([("a", relu, ("input",)), ("a", relu, ("input",))], "a")
    with pytest.raises(ValueError, match="takes 2 input"):
        Graph([("a", npcam.Add(), ("input",))], "a")
    with pytest.raises(ValueError, match="output must name"):
        Graph([("a", relu, ("input",))], "b")
    with pytest.raises(TypeError, match="npcam layer"):
        Graph([("a", object(), ("input",))], "a")


def test_node_errors_name_the_node():
    g = Graph([("c", npcam.Conv2d(3, 2, 3), ("input",))], "c")
    with pytest.raises(ValueError, match="node 'c' \\(Conv2d\\)"):
        g.run(np.zeros((1, 4, 5, 5)))


def test_state_dict_round_trip_and_strict_keys():
    g, h = build(0), build(5)
    x = _input()
    assert np.abs(g.run(x).output - h.run(x).output).max() > 0
    h.load_state_dict(g.state_dict())
    np.testing.assert_array_equal(g.run(x).output, h.run(x).output)
    with pytest.raises(ValueError, match="missing keys"):
        h.load_state_dict({})


def test_config_save_and_load_round_trip(tmp_path):
    g = build()
    x = _input()
    path = g.save(tmp_path / "graph.npz")
    back = npcam.load_model(path)
    assert isinstance(back, Graph)
    np.testing.assert_array_equal(back.run(x).output, g.run(x).output)
    assert back.config() == g.config()
    assert back.nodes[1].layer is back.nodes[6].layer  # the shared layer stays shared


def test_fold_batchnorm_on_a_graph_keeps_outputs_and_names():
    """Folding eval-mode BN into the conv that feeds it only (and nothing else) gives the
    same logits to 1e-12; the BN node's name then denotes the folded conv's output; a BN
    whose input is not a conv is kept."""
    rng = np.random.default_rng(7)
    bn1, bn2 = npcam.BatchNorm2d(4), npcam.BatchNorm2d(4)
    for bn in (bn1, bn2):
        bn.weight, bn.bias = rng.uniform(0.5, 1.5, 4), rng.standard_normal(4)
        bn.running_mean, bn.running_var = rng.standard_normal(4), rng.uniform(0.5, 2, 4)
    g = Graph([
        ("conv", npcam.Conv2d(3, 4, 3, padding=1, bias=False, rng=rng), ("input",)),
        ("bn", bn1, ("conv",)),
        ("relu", npcam.ReLU(), ("bn",)),
        ("pre", bn2, ("relu",)),  # a pre-activation BN: kept
        ("gap", npcam.GlobalAvgPool2d(), ("pre",)),
        ("fc", npcam.Linear(4, 3, rng=rng), ("gap",)),
    ], "fc")
    x = _input(8, (2, 3, 5, 5))
    folded = npcam.fold_batchnorm(g)
    assert [n for n, _ in folded.named_nodes()] == ["bn", "relu", "pre", "gap", "fc"]
    assert isinstance(folded.node("bn").layer, npcam.Conv2d) and folded.resolve("conv") == "bn"
    assert isinstance(folded.node("pre").layer, npcam.BatchNorm2d)
    assert scaled_error(folded.run(x).output, g.run(x).output) < 1e-12
    assert "conv.bias" in folded.state_dict() and "bn.running_mean" not in folded.state_dict()
    assert isinstance(g.node("bn").layer, npcam.BatchNorm2d)  # the original is unchanged


def test_partial_trace_keeps_what_the_backward_pass_to_a_layer_needs():
    """``run(x, keep=[k])``: the logits, A at k and ∂L/∂A from ``vjp(to=k)`` equal the full
    trace's exactly; outputs before k that nothing after k reads are gone; run_from at k
    works; a backward pass past k is refused with a message naming the node."""
    g = build()
    x = _input()
    full, part = g.run(x), g.run(x, keep=["cat_relu"])
    v = np.random.default_rng(9).standard_normal(full.output.shape)
    np.testing.assert_array_equal(part.output, full.output)
    np.testing.assert_array_equal(part.activations["cat_relu"], full.activations["cat_relu"])
    np.testing.assert_array_equal(g.vjp(part, v, to="cat_relu").grad, g.vjp(full, v, to="cat_relu").grad)
    assert "stem" not in part.activations and "res" not in part.activations
    assert "stem" not in part.caches and "se" in part.caches
    a = part.activations["cat_relu"] * 2
    ours, theirs = g.run_from(part, "cat_relu", a), g.run_from(full, "cat_relu", a)
    np.testing.assert_array_equal(ours.output, theirs.output)
    with pytest.raises(ValueError, match="no cache for it"):
        g.vjp(part, v)
    # "input": every cache, for the input gradient, but not the outputs only a forward read
    down = g.run(x, keep=["input"])
    np.testing.assert_array_equal(g.vjp(down, v, relu_rule="guided").grad,
                                  g.vjp(full, v, relu_rule="guided").grad)
    assert set(down.caches) == set(full.caches) and "ab" not in down.activations


def test_backward_overflow_names_the_node():
    """A finite forward pass whose backward pass overflows (two Linear layers with weights
    1e300 on an input of 1e-300) raises ValueError naming the node whose input gradient
    became infinite, with no numpy warning."""
    l1, l2 = npcam.Linear(1, 1, bias=False), npcam.Linear(1, 1, bias=False)
    l1.weight, l2.weight = np.array([[1e300]]), np.array([[1e300]])
    g = Graph([("l1", l1, ("input",)), ("l2", l2, ("l1",))], "l2")
    trace = g.run(np.array([[1e-300]]))
    assert np.isfinite(trace.output).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="gradient computed by node 'l1'"):
            g.vjp(trace, np.ones((1, 1)))


def test_run_from_with_r_variants_per_image_repeats_the_residual_branch():
    """run_from(trace, name, value) with r·N rows (r variants of each image's output, in
    np.repeat order) equals r separate run_from calls: the outputs the re-run nodes read
    from outside name's descendants (here the skip from stem_relu into res) are repeated
    alike. Before 0.5.0 this broadcast error surfaced as grad_cam(target="all") failing at
    an inner layer of a residual network for N > 1."""
    g = build()
    x = _input()
    trace = g.run(x)
    a = trace.activations["a"]
    rng = np.random.default_rng(5)
    variants = [a + rng.normal(size=a.shape) for _ in range(3)]
    stacked = np.stack(variants, axis=1).reshape(-1, *a.shape[1:])  # row n·3 + j
    got = g.run_from(trace, "a", stacked).output.reshape(2, 3, -1)
    for j, v in enumerate(variants):
        np.testing.assert_array_equal(got[:, j], g.run_from(trace, "a", v).output)
    with pytest.raises(ValueError, match="multiple of N"):
        g.run_from(trace, "a", stacked[:5])


def test_grad_cam_all_targets_at_an_inner_residual_layer_equals_per_class_calls():
    """grad_cam(target="all") at a layer inside the residual block (its skip reads a node
    before it), N = 2: every class's map equals the single-class call."""
    g = build()
    x = _input()
    r = npcam.grad_cam(g, x, "all", layer="a")
    for c in range(4):
        one = npcam.grad_cam(g, x, c, layer="a")
        assert scaled_error(r.raw[:, c], one.raw) < 1e-12
