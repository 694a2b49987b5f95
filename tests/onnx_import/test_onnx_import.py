"""``npcam.from_onnx`` on small hand-built ONNX graphs (npcam/interop/onnx.py).

Every supported op is built with ``onnx.helper`` and run by ONNX's own reference
implementation (``onnx.reference.ReferenceEvaluator``, NumPy, float64: onnxruntime's CPU
build has no float64 Conv, pooling, Erf or HardSigmoid kernels): npcam's forward pass
equals it at 1e-12 of scale (at the exported batch, and per image at a larger batch,
which the import frees); one float32 model is also checked against onnxruntime; the
backward passes through an imported graph are checked against central differences.
Then the import's rules (float32 attributes snapped, batch-baked reshapes rewritten,
the final Softmax dropped, NHWC inputs, names) and every refusal: files that are not
ONNX, truncated, with unsupported ops or attributes, external data outside the folder or
larger than the cap, an initializer that claims more bytes than its file holds.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import npcam  # noqa: E402
from npcam.interop import onnx as npcam_onnx  # noqa: E402
from npcam.verify.gradcheck import numerical_gradient  # noqa: E402

F64 = TensorProto.DOUBLE


def _model(nodes, x_shape, out_shape, inits=(), opset=17, dtype=F64, producer="npcam-tests"):
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", dtype, list(x_shape))],
        [helper.make_tensor_value_info("y", dtype, out_shape)],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in dict(inits).items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name=producer)
    m.ir_version = 8
    if out_shape is None:  # the output's shape as ONNX's shape inference gives it
        try:
            inferred = onnx.shape_inference.infer_shapes(m)
            m.graph.output[0].CopyFrom(inferred.graph.output[0])
        except Exception:  # noqa: BLE001 - models built to be refused
            pass
    return m


def _ort(model, x):
    """The model's output by onnx's reference evaluator (float64)."""
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(model).run(None, {"x": x})[0]


def _onnxruntime(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _scaled(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(b).max(), 1e-300))


def _check(model, x, tol=1e-12):
    """npcam's import equals onnxruntime on x, and image by image on a doubled batch."""
    g = npcam.from_onnx(model)
    assert _scaled(g.forward(x), _ort(model, x)) <= tol
    x2 = np.concatenate([x, x[::-1] * 0.5 + 0.25])
    y2 = g.forward(x2)
    ref = np.concatenate([_ort(model, x2[i : i + len(x)]) for i in range(0, len(x2), len(x))])
    assert _scaled(y2, ref) <= tol
    return g


RNG = np.random.default_rng(0)
X = RNG.standard_normal((1, 4, 8, 8))


def _w(*shape):
    return RNG.standard_normal(shape)


# ----------------------------------------------------------------- ops against ORT
@pytest.mark.parametrize("pads,strides,group", [
    ([1, 1, 1, 1], [1, 1], 1),
    ([0, 0, 1, 1], [2, 2], 1),      # Keras "same", stride 2, even size: asymmetric
    ([1, 0, 2, 1], [1, 2], 2),      # asymmetric, grouped
    ([1, 1, 1, 1], [2, 2], 4),      # depthwise
])
def test_conv_with_pads_strides_groups(pads, strides, group):
    w = _w(6 if group != 4 else 4, 4 // group, 3, 3)
    n = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=pads, strides=strides, group=group)
    m = _model([n], X.shape, None, {"w": w, "b": _w(w.shape[0])})
    g = _check(m, X)
    conv = g.nodes[0].layer
    assert isinstance(conv, npcam.Conv2d) and conv.groups == group
    top, left, bottom, right = pads
    assert conv.padding == ((top, left) if (top, left) == (bottom, right) else (left, right, top, bottom))


@pytest.mark.parametrize("op,attrs", [
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)),
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1])),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], count_include_pad=1)),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], count_include_pad=0)),
    ("AveragePool", dict(kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1], count_include_pad=0)),
    ("GlobalAveragePool", {}),
])
def test_pooling(op, attrs):
    _check(_model([helper.make_node(op, ["x"], ["y"], **attrs)], X.shape, None), X)


@pytest.mark.parametrize("opset", [13, 18])
def test_reduce_mean_axes_as_attribute_and_as_input(opset):
    if opset < 18:
        nodes = [helper.make_node("ReduceMean", ["x"], ["y"], axes=[-1, -2], keepdims=0)]
        inits = {}
    else:
        nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=0)]
        inits = {"axes": np.array([2, 3], dtype=np.int64)}
    g = _check(_model(nodes, X.shape, None, inits, opset=opset), X)
    assert isinstance(g.nodes[0].layer, npcam.Mean)


@pytest.mark.parametrize("trans_b,alpha,beta", [(1, 1.0, 1.0), (0, 0.5, 2.0)])
def test_gemm_is_a_linear_layer(trans_b, alpha, beta):
    b = _w(10, 256) if trans_b else _w(256, 10)
    nodes = [helper.make_node("Flatten", ["x"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "B", "C"], ["y"], transB=trans_b, alpha=alpha, beta=beta)]
    g = _check(_model(nodes, X.shape, None, {"B": b, "C": _w(10)}), X)
    assert isinstance(g.nodes[-1].layer, npcam.Linear)


def test_matmul_then_bias_add_is_one_linear():
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("MatMul", ["t", "W"], ["m"]),
             helper.make_node("Add", ["m", "bias"], ["y"])]
    g = _check(_model(nodes, X.shape, None, {"W": _w(4, 5), "bias": _w(5)}), X)
    lin = [n.layer for n in g.nodes if isinstance(n.layer, npcam.Linear)]
    assert len(lin) == 1 and lin[0].bias is not None and len(g.nodes) == 2


def test_arithmetic_with_constants_and_tensors():
    nodes = [
        helper.make_node("Mul", ["x", "s"], ["a"]),          # per-channel scale (C, 1, 1)
        helper.make_node("Add", ["a", "two"], ["b"]),        # scalar constant
        helper.make_node("Sub", ["b", "x"], ["c"]),          # tensor − tensor
        helper.make_node("Div", ["c", "sqrt2"], ["d"]),      # the GELU chain's x/√2
        helper.make_node("Sub", ["one", "d"], ["e"]),        # constant − tensor
        helper.make_node("Mul", ["e", "d"], ["y"]),
    ]
    inits = {"s": _w(4, 1, 1), "two": np.array(2.0), "sqrt2": np.array(np.sqrt(2.0)), "one": np.array([1.0])}
    _check(_model(nodes, X.shape, None, inits), X)


def test_exact_gelu_chain_and_silu_as_primitive_ops():
    """GELU as ONNX exporters write it (x/√2 → Erf → +1 → ·x → ·½) and SiLU as Sigmoid·x,
    imported as those primitive ops, equal the closed forms at 1e-15 of scale. (The ONNX
    reference evaluator's Erf is an approximation, off by up to 2.5e-8, so the reference
    here is scipy's erf.)"""
    nodes = [
        helper.make_node("Div", ["x", "sqrt2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["a"]),
        helper.make_node("Mul", ["x", "a"], ["m"]),
        helper.make_node("Mul", ["m", "half"], ["gelu"]),
        helper.make_node("Sigmoid", ["gelu"], ["s"]),
        helper.make_node("Mul", ["gelu", "s"], ["y"]),
    ]
    inits = {"sqrt2": np.array(np.sqrt(2.0)), "one": np.array(1.0), "half": np.array(0.5)}
    g = npcam.from_onnx(_model(nodes, X.shape, None, inits))
    from scipy.special import erf

    for x in (X, np.concatenate([X, -2 * X])):
        gelu = x * 0.5 * (1 + erf(x / np.sqrt(2)))
        assert _scaled(g.forward(x), gelu / (1 + np.exp(-gelu))) <= 1e-15


@pytest.mark.parametrize("constant_node", [False, True])
def test_clip_as_relu6_with_constant_inputs(constant_node):
    if constant_node:  # the legacy exporter's Constant nodes
        nodes = [helper.make_node("Constant", [], ["lo"], value=numpy_helper.from_array(np.array(0.0))),
                 helper.make_node("Constant", [], ["hi"], value=numpy_helper.from_array(np.array(6.0)))]
        inits = {}
    else:
        nodes, inits = [], {"lo": np.array(0.0), "hi": np.array(6.0)}
    nodes.append(helper.make_node("Clip", ["x10", "lo", "hi"], ["y"]))
    nodes.insert(0, helper.make_node("Mul", ["x", "ten"], ["x10"]))
    inits["ten"] = np.array(10.0)
    g = _check(_model(nodes, X.shape, None, inits), X)
    assert any(isinstance(n.layer, npcam.ReLU6) for n in g.nodes)


def test_hardswish_and_hardsigmoid():
    """HardSigmoid with its attributes as stored (float32 alpha; the reference evaluator
    computes with the stored value too); HardSwish then HardSigmoid snapped: torch's
    Hardswish and Hardsigmoid, min(max(x + 3, 0), 6) / 6, exactly. (The reference
    evaluator's HardSwish uses a float32 1/6, so the reference is the closed form.)"""
    x = X * 4
    only = _model([helper.make_node("HardSigmoid", ["x"], ["y"], alpha=1 / 6, beta=0.5)], X.shape, None)
    kept = npcam.from_onnx(only, snap_constants=False)
    assert _scaled(kept.forward(x), _ort(only, x)) <= 1e-12
    nodes = [helper.make_node("HardSwish", ["x"], ["a"]),
             helper.make_node("HardSigmoid", ["a"], ["y"], alpha=1 / 6, beta=0.5)]
    m = _model(nodes, X.shape, None, opset=17)
    g = npcam.from_onnx(m)
    assert isinstance(g.nodes[1].layer, npcam.Hardsigmoid)
    hs = x * np.minimum(np.maximum(x + 3, 0), 6) / 6
    assert _scaled(g.forward(x), np.minimum(np.maximum(hs + 3, 0), 6) / 6) <= 1e-15


@pytest.mark.parametrize("opset", [13, 17])
def test_a_float32_model_against_onnxruntime(opset):
    """A float32 conv/BN/ReLU/pool/Gemm graph: npcam (float32 weights, float64 arithmetic)
    equals onnxruntime's float32 result at 1e-5 of scale (float32 rounding of ~100 terms)."""
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    c = 4
    nodes = [
        helper.make_node("Conv", ["x", "w", "cb"], ["c"], pads=[0, 0, 1, 1], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["bn"]),
        helper.make_node("Relu", ["bn"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["p"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "B", "C"], ["y"], transB=1),
    ]
    inits = {"w": f32(_w(c, 4, 3, 3)), "cb": f32(_w(c)), "s": f32(_w(c)), "b": f32(_w(c)), "m": f32(_w(c)),
             "v": f32(RNG.uniform(0.5, 2, c)), "B": f32(_w(3, c)), "C": f32(_w(3))}
    m = _model(nodes, X.shape, None, inits, dtype=TensorProto.FLOAT, opset=opset)
    g = npcam.from_onnx(m, dtype=np.float32)
    x = X.astype(np.float32)
    assert _scaled(g.forward(x), _onnxruntime(m, x)) <= 1e-5


def test_float32_attributes_are_snapped_or_kept():
    """ONNX FLOAT attributes are float32: alpha 1/6 is stored as 0.16666667163. snapped:
    exactly torch's Hardsigmoid; not snapped: the stored value."""
    n = helper.make_node("HardSigmoid", ["x"], ["y"], alpha=1 / 6, beta=0.5)
    m = _model([n], X.shape, None)
    stored = float(np.float32(1 / 6))
    snapped = npcam.from_onnx(m)
    assert isinstance(snapped.nodes[0].layer, npcam.Hardsigmoid)
    assert any("0.16666667" in s and "snapped" in s for s in snapped.import_notes)
    x = X * 4
    assert np.array_equal(snapped.forward(x), np.minimum(np.maximum(x + 3, 0), 6) / 6)
    kept = npcam.from_onnx(m, snap_constants=False)
    assert kept.nodes[0].layer.alpha == stored and not kept.import_notes
    assert np.array_equal(kept.forward(x), np.clip(stored * x + 0.5, 0, 1))


def test_batchnorm_and_its_epsilon():
    c = 4
    inits = {"s": _w(c), "b": _w(c), "m": _w(c), "v": RNG.uniform(0.5, 2, c)}
    n = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=1e-5)
    g = _check(_model([n], X.shape, None, inits), X, tol=1e-6)  # ORT uses the float32 eps
    bn = g.nodes[0].layer
    assert bn.eps == 1e-5
    ref = (X - inits["m"][:, None, None]) / np.sqrt(inits["v"][:, None, None] + 1e-5)
    ref = ref * inits["s"][:, None, None] + inits["b"][:, None, None]
    assert _scaled(g.forward(X), ref) <= 1e-13


def test_layer_normalization_over_the_channel_last_axis():
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("LayerNormalization", ["t", "s", "b"], ["y"], axis=-1, epsilon=1e-6)]
    g = npcam.from_onnx(_model(nodes, X.shape, None, {"s": _w(4), "b": _w(4)}))
    t = X.transpose(0, 2, 3, 1)
    mu, var = t.mean(-1, keepdims=True), t.var(-1, keepdims=True)
    ref = (t - mu) / np.sqrt(var + 1e-6)
    s, b = (numpy_helper.to_array(i) for i in _model(nodes, X.shape, None, {"s": _w(4), "b": _w(4)})
            .graph.initializer)
    layer = g.nodes[1].layer
    assert layer.eps == 1e-6
    assert _scaled(g.forward(X), ref * layer.weight + layer.bias) <= 1e-13


def test_concat_split_reshape_transpose_flatten():
    nodes = [
        helper.make_node("Split", ["x", "sizes"], ["a", "b"], axis=1),
        helper.make_node("Concat", ["b", "a"], ["c"], axis=1),
        helper.make_node("Reshape", ["c", "shape"], ["r"]),            # [1, 2, 2, 8, 8]: channel shuffle
        helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["t", "shape2"], ["u"]),
        helper.make_node("Dropout", ["u"], ["v"]),
        helper.make_node("Identity", ["v"], ["w"]),
        helper.make_node("Flatten", ["w"], ["y"], axis=1),
    ]
    inits = {"sizes": np.array([1, 3], dtype=np.int64),
             "shape": np.array([1, 2, 2, 8, 8], dtype=np.int64),
             "shape2": np.array([1, 4, 8, 8], dtype=np.int64)}
    g = _check(_model(nodes, X.shape, None, inits), X)
    assert any("rewritten" in s for s in g.import_notes)


def test_split_with_num_outputs_at_opset_18():
    nodes = [helper.make_node("Split", ["x"], ["a", "b"], axis=1, num_outputs=2),
             helper.make_node("Mul", ["a", "b"], ["y"])]
    _check(_model(nodes, X.shape, None, opset=18), X)


def test_constant_subgraph_chunk_as_legacy_shufflenet_exports_it():
    """Legacy torch's ``chunk(2, dim=1)``: Shape → Gather → Add → Div → Mul → Slice,
    evaluated at import into two constant-index slices."""
    c = lambda name, v: helper.make_node(  # noqa: E731
        "Constant", [], [name], value=numpy_helper.from_array(np.array(v, dtype=np.int64)))
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        c("one", [1]), helper.make_node("Gather", ["shape", "one"], ["C"], axis=0),
        c("k1", [1]), helper.make_node("Add", ["C", "k1"], ["C1"]),
        c("two", [2]), helper.make_node("Div", ["C1", "two"], ["half"]),
        c("mul", [1]), helper.make_node("Mul", ["half", "mul"], ["end0"]),
        c("zero", [0]), c("axes", [1]),
        helper.make_node("Slice", ["x", "zero", "end0", "axes"], ["a"]),
        c("big", [2**62]),
        helper.make_node("Slice", ["x", "end0", "big", "axes"], ["b"]),
        helper.make_node("Sub", ["a", "b"], ["y"]),
    ]
    g = _check(_model(nodes, X.shape, None), X)
    assert sum(isinstance(n.layer, npcam.Index) for n in g.nodes) == 2


def test_convnext_flatten_then_gather_is_a_reshape():
    """dynamo's ConvNeXt GAP: ReduceMean, Reshape([-1]), Gather with the constant indices
    arange(768).reshape(1, 768, 1, 1) — a reshape; the import keeps the batch free."""
    idx = np.arange(4, dtype=np.int64).reshape(1, 4, 1, 1)
    nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=1),
             helper.make_node("Reshape", ["m", "flat"], ["f"]),
             helper.make_node("Gather", ["f", "idx"], ["y"], axis=0)]
    inits = {"axes": np.array([-1, -2], dtype=np.int64), "flat": np.array([-1], dtype=np.int64), "idx": idx}
    _check(_model(nodes, X.shape, None, inits, opset=18), X)


def test_gather_slice_squeeze_unsqueeze_pad():
    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["p"], mode="constant"),
        helper.make_node("Gather", ["p", "ch"], ["g"], axis=1),       # a scalar channel: (N, H, W)
        helper.make_node("Unsqueeze", ["g", "ax1"], ["u"]),
        helper.make_node("Slice", ["u", "st", "en", "ax23"], ["s"]),
        helper.make_node("GlobalAveragePool", ["s"], ["gap"]),
        helper.make_node("Squeeze", ["gap", "ax23"], ["y"]),
    ]
    inits = {"pads": np.array([0, 0, 1, 2, 0, 0, 3, 0], dtype=np.int64), "ch": np.array(2, dtype=np.int64),
             "ax1": np.array([1], dtype=np.int64), "st": np.array([1, 0], dtype=np.int64),
             "en": np.array([-1, 5], dtype=np.int64), "ax23": np.array([2, 3], dtype=np.int64)}
    g = _check(_model(nodes, X.shape, None, inits), X)
    assert any(isinstance(n.layer, npcam.Pad) for n in g.nodes)


def test_final_softmax_is_dropped():
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Softmax", ["f"], ["y"], axis=-1)]
    m = _model(nodes, X.shape, None)
    g = npcam.from_onnx(m)
    assert g.output_softmax
    logits = g.forward(X)
    p = np.exp(logits - logits.max(1, keepdims=True))
    assert _scaled(p / p.sum(1, keepdims=True), _ort(m, X)) <= 1e-12


# ----------------------------------------------------------------- backward
def test_backward_through_an_imported_graph_matches_central_differences():
    """∂⟨v, f(x)⟩/∂x of an imported conv/BN/ReLU/pool/asymmetric-pad/residual graph."""
    c = 4
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[0, 1, 1, 0], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["bn"]),
        helper.make_node("Relu", ["bn"], ["r"]),
        helper.make_node("Conv", ["r", "w2"], ["c2"], pads=[1, 1, 1, 1], group=c),
        helper.make_node("Add", ["c2", "r"], ["a"]),
        helper.make_node("Erf", ["a"], ["e"]),
        helper.make_node("AveragePool", ["e"], ["p"], kernel_shape=[2, 2], pads=[0, 0, 1, 1], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "B"], ["y"], transB=1),
    ]
    inits = {"w": _w(c, 4, 3, 3) * 0.3, "s": _w(c), "b": _w(c), "m": _w(c), "v": RNG.uniform(0.5, 2, c),
             "w2": _w(c, 1, 3, 3) * 0.3, "B": _w(3, c * 2 * 2)}
    g = npcam.from_onnx(_model(nodes, X.shape, None, inits))
    x = X[:, :, :7, :7].copy()  # odd size: the asymmetric pads matter
    g2 = npcam.from_onnx(_model(nodes, x.shape, None, inits))
    del g
    v = RNG.standard_normal((1, 3))
    trace = g2.run(x)
    grad = g2.vjp(trace, v).grad
    num = numerical_gradient(lambda z: g2.forward(z).ravel(), x.copy(), v.ravel())
    assert np.abs(grad - num).max() / np.abs(num).max() < 1e-8


def test_grad_cam_on_an_imported_graph_names_its_layers():
    """Scope-path names (the TorchScript exporter's) become module-path aliases, with a
    module called twice refused as ambiguous, as from_torch does."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="/layer1/layer1.0/conv1/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="/layer1/layer1.0/relu/Relu"),
        helper.make_node("Add", ["r", "x"], ["a"], name="/layer1/layer1.0/Add"),
        helper.make_node("Relu", ["a"], ["r2"], name="/layer1/layer1.0/relu_1/Relu"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="/avgpool/GlobalAveragePool"),
        helper.make_node("Flatten", ["g"], ["f"], name="/Flatten"),
        helper.make_node("Gemm", ["f", "B"], ["y"], name="/fc/Gemm", transB=1),
    ]
    m = _model(nodes, X.shape, None, {"w": _w(4, 4, 3, 3), "B": _w(3, 4)}, producer="pytorch")
    g = npcam.from_onnx(m)
    assert g.resolve("layer1") == g.resolve("layer1.0") == "/layer1/layer1.0/relu_1/Relu"
    assert g.resolve("layer1.0.conv1") == "/layer1/layer1.0/conv1/Conv"
    assert g.resolve("fc") == "/fc/Gemm"
    with pytest.raises(ValueError, match="called 2 times"):
        g.resolve("layer1.0.relu")
    r = npcam.grad_cam(g, X, target=1, layer="layer1")
    a = r.activations
    w = g.node("fc").layer.weight[1]
    # y_1 = Σ_k w_k · mean_ij A^k_ij: ∂y/∂A^k_ij = w_k / Z, so α_k = w_k / Z · ... averaged: w_k / Z·Z/Z
    assert _scaled(r.weights[0], w / a[0, 0].size) <= 1e-12
    assert g.default_layer(g.run(X)) == "/layer1/layer1.0/relu_1/Relu"


def test_nhwc_input_and_input_layout_nchw():
    xh = X.transpose(0, 2, 3, 1).copy()
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["t", "w"], ["c"]),
             helper.make_node("GlobalAveragePool", ["c"], ["g"]),
             helper.make_node("Flatten", ["g"], ["y"])]
    m = _model(nodes, [None, 8, 8, 4], None, {"w": _w(2, 4, 3, 3)})
    g = npcam.from_onnx(m)
    assert g.input_shape == (None, 8, 8, 4)
    assert _scaled(g.forward(xh), _ort(m, xh)) <= 1e-12
    gn = npcam.from_onnx(m, input_layout="nchw")
    assert gn.input_shape == (None, 4, 8, 8)
    assert _scaled(gn.forward(X), _ort(m, xh)) <= 1e-12
    with pytest.raises(ValueError, match="perm"):
        npcam.from_onnx(_model(nodes[1:3] + [helper.make_node("Flatten", ["g"], ["y"])], X.shape, None,
                               {"w": _w(2, 4, 3, 3)}).graph and _model(
            [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("GlobalAveragePool", ["c"], ["g"]),
             helper.make_node("Flatten", ["g"], ["y"])], X.shape, None, {"w": _w(2, 4, 3, 3)}),
            input_layout="nchw")


def test_spatial_size_is_checked_and_dtype_float32_rounds_weights():
    n = helper.make_node("Conv", ["x", "w"], ["y"])
    w = _w(2, 4, 3, 3)
    m = _model([n], X.shape, None, {"w": w})
    g = npcam.from_onnx(m)
    with pytest.raises(ValueError, match=r"\(N, 4, 8, 8\)"):
        g.forward(X[:, :, :7])
    g32 = npcam.from_onnx(m, dtype=np.float32)
    assert np.array_equal(g32.nodes[0].layer.weight, w.astype(np.float32).astype(np.float64))


# ----------------------------------------------------------------- refusals
def _save(model, path):
    onnx.save(model, str(path))
    return str(path)


def test_not_onnx_and_truncated_files(tmp_path):
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n" * 10)
    with pytest.raises(ValueError, match="not an ONNX model"):
        npcam.from_onnx(str(text))
    good = _save(_model([helper.make_node("Relu", ["x"], ["y"])], X.shape, None, {"w": _w(64, 64)}),
                 tmp_path / "good.onnx")
    data = open(good, "rb").read()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not an ONNX model|damaged"):
        npcam.from_onnx(str(cut))
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        npcam.from_onnx(str(empty))
    with pytest.raises(ValueError, match="no such file"):
        npcam.from_onnx(str(tmp_path / "missing.onnx"))
    with pytest.raises(TypeError, match="path_or_model"):
        npcam.from_onnx(3)


@pytest.mark.parametrize("node,match", [
    (helper.make_node("Tanh", ["x"], ["y"], name="act"), r"'act' \(Tanh\): the op is not supported"),
    (helper.make_node("LeakyRelu", ["x"], ["y"]), r"LeakyRelu"),
    (helper.make_node("Conv", ["x", "w"], ["y"], dilations=[2, 2], name="d"),
     r"'d' \(Conv\).*dilations=\[2, 2\]"),
    (helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2]), "dilations"),
    (helper.make_node("Clip", ["x", "lo", "hi"], ["y"]), r"Clip\(0, 6\)"),
    (helper.make_node("Pad", ["x", "pads"], ["y"], mode="reflect"), "constant-zero"),
])
def test_unsupported_ops_and_attributes_are_refused_by_name(node, match):
    inits = {"w": _w(2, 4, 3, 3), "lo": np.array(-1.0), "hi": np.array(1.0),
             "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64)}
    used = {k: v for k, v in inits.items() if k in node.input}
    with pytest.raises(ValueError, match=match):
        npcam.from_onnx(_model([node], X.shape, None, used))


def test_a_softmax_inside_the_model_is_refused():
    nodes = [helper.make_node("Softmax", ["x"], ["s"], axis=1), helper.make_node("Relu", ["s"], ["y"])]
    with pytest.raises(ValueError, match="only as the model's last op"):
        npcam.from_onnx(_model(nodes, X.shape, None))


def test_dynamic_shapes_that_cannot_be_resolved_are_refused():
    """A reshape to a shape computed from a dynamic spatial size is not a constant."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Reshape", ["x", "s"], ["y"])]
    m = _model(nodes, [1, 4, "H", "W"], None)
    with pytest.raises(ValueError, match="Shape"):
        npcam.from_onnx(m)


def test_opset_outside_the_tested_range_is_refused():
    m = _model([helper.make_node("Relu", ["x"], ["y"])], X.shape, None, opset=11)
    with pytest.raises(ValueError, match="opset is 11"):
        npcam.from_onnx(m)


def _external(tmp_path, location, length=None, dims=(64, 64)):
    """A model whose initializer lives in an external file (possibly lying about it)."""
    w = _w(4, 4, 3, 3)
    (tmp_path / "weights.bin").write_bytes(w.tobytes())
    t = TensorProto()
    t.name, t.data_type = "w", F64
    t.dims.extend(dims)
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", str(length or w.nbytes))):
        e = t.external_data.add()
        e.key, e.value = k, v
    m = _model([helper.make_node("Conv", ["x", "w"], ["y"])], X.shape, [1, 4, 6, 6])
    m.graph.initializer.append(t)
    path = tmp_path / "m.onnx"
    path.write_bytes(m.SerializeToString())
    return str(path), w


def test_external_data_beside_the_model_is_read(tmp_path):
    path, w = _external(tmp_path, "weights.bin", dims=(4, 4, 3, 3))
    g = npcam.from_onnx(path)
    assert np.array_equal(g.nodes[0].layer.weight, w)


def test_external_data_outside_the_folder_is_refused(tmp_path):
    inner = tmp_path / "model"
    inner.mkdir()
    path, _ = _external(inner, "../weights.bin", dims=(4, 4, 3, 3))
    (tmp_path / "weights.bin").write_bytes((inner / "weights.bin").read_bytes())
    with pytest.raises(ValueError, match="outside the model's folder"):
        npcam.from_onnx(path)
    path, _ = _external(inner, "/etc/passwd", dims=(4, 4, 3, 3))
    with pytest.raises(ValueError, match="relative"):
        npcam.from_onnx(path)


def test_an_initializer_claiming_2_gb_of_a_small_file_is_refused_before_reading(tmp_path):
    path, _ = _external(tmp_path, "weights.bin", length=2 * 2**30, dims=(2**28,))
    with pytest.raises(ValueError, match="refused before reading"):
        npcam.from_onnx(path)


def test_external_data_over_the_cap_is_refused(tmp_path, monkeypatch):
    path, _ = _external(tmp_path, "weights.bin", dims=(4, 4, 3, 3))
    monkeypatch.setattr(npcam_onnx, "MAX_ONNX_BYTES", os.path.getsize(path) + 100)
    with pytest.raises(ValueError, match="MAX_ONNX_BYTES"):
        npcam.from_onnx(path)


def test_embedded_initializer_with_wrong_byte_count_is_refused():
    m = _model([helper.make_node("Conv", ["x", "w"], ["y"])], X.shape, None, {"w": _w(2, 4, 3, 3)})
    m.graph.initializer[0].raw_data = m.graph.initializer[0].raw_data[:-8]
    with pytest.raises(ValueError, match="damaged|checker"):
        npcam.from_onnx(m)


def test_reduce_sum_and_a_symbolic_batch():
    """JAX's mean as ReduceSum then Div, on an input whose batch is symbolic ("B"): the
    batch is fixed to 1 for shape arithmetic (a Shape → Gather → Concat → Reshape flatten)
    and free in the graph."""
    c = lambda name, v: helper.make_node(  # noqa: E731
        "Constant", [], [name], value=numpy_helper.from_array(np.array(v, dtype=np.int64)))
    nodes = [
        helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=1),
        helper.make_node("Div", ["s", "hw"], ["m"]),
        helper.make_node("Shape", ["m"], ["shape"]),
        c("zero", [0]), helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
        c("rest", [-1]), helper.make_node("Concat", ["n", "rest"], ["target"], axis=0),
        helper.make_node("Reshape", ["m", "target"], ["y"]),
    ]
    inits = {"axes": np.array([2, 3], dtype=np.int64), "hw": np.array(64.0)}
    m = _model(nodes, ["B", 4, 8, 8], ["B", 4], inits)
    g = npcam.from_onnx(m)
    assert any(isinstance(n.layer, npcam.Sum) for n in g.nodes)
    assert any("symbolic batch" in s for s in g.import_notes)
    x = np.concatenate([X, 2 * X, -X])
    assert _scaled(g.forward(x), x.mean(axis=(2, 3))) <= 1e-15
    assert _scaled(g.forward(x), _ort(m, x)) <= 1e-12


def test_tf2onnx_layout_transposes_name_no_layer():
    """tf2onnx inserts Transposes inside a layer's scope ("conv2_1/BiasAdd__12"); the
    Keras layer name keeps naming the layer's own output (here its ReLU), and Keras 3's
    "_1" on every scope is removed."""
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2], name="m_1/conv2_1/BiasAdd__6"),
        helper.make_node("Conv", ["t", "w"], ["c"], name="m_1/conv2_1/BiasAdd"),
        helper.make_node("Relu", ["c"], ["r"], name="m_1/conv2_1/Relu"),
        helper.make_node("Transpose", ["r"], ["rt"], perm=[0, 2, 3, 1], name="m_1/conv2_1/BiasAdd__12"),
        helper.make_node("ReduceMean", ["rt", "axes"], ["y"], keepdims=0, name="m_1/gap_1/Mean"),
    ]
    inits = {"w": _w(2, 4, 3, 3), "axes": np.array([1, 2], dtype=np.int64)}
    m = _model(nodes, ["unk__3", 8, 8, 4], None, inits, opset=18, producer="tf2onnx")
    g = npcam.from_onnx(m)
    assert g.resolve("conv2") == "m_1/conv2_1/Relu"
    assert g.resolve("gap") == "m_1/gap_1/Mean"


@pytest.mark.parametrize("opset", list(range(13, 24)))
def test_every_opset_from_13_to_23(opset):
    """One conv/BN/ReLU/pool/reduce/split/concat/Gemm graph written for each opset (the
    forms that changed: ReduceMean's axes become an input at 18, Split's num_outputs
    appears at 18), against the reference evaluator. At opset 13 the BatchNormalization is
    left out: onnx 1.23's reference BatchNormalization-9 is wrong (0.096 off on unit-scale
    data, where onnxruntime and npcam agree to 6e-7 in float32); opset 13's BN is checked
    against onnxruntime in test_a_float32_model_against_onnxruntime."""
    c = 4
    if opset >= 18:
        reduce = helper.make_node("ReduceMean", ["p", "axes"], ["g"], keepdims=1)
        split = helper.make_node("Split", ["g"], ["h1", "h2"], axis=1, num_outputs=2)
    else:
        reduce = helper.make_node("ReduceMean", ["p"], ["g"], axes=[2, 3], keepdims=1)
        split = helper.make_node("Split", ["g", "sizes"], ["h1", "h2"], axis=1)
    nodes = [
        helper.make_node("Conv", ["x", "w", "cb"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["bn"]) if opset >= 14
        else helper.make_node("Identity", ["c"], ["bn"]),
        helper.make_node("Relu", ["bn"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        reduce, split,
        helper.make_node("Concat", ["h2", "h1"], ["cat"], axis=1),
        helper.make_node("Flatten", ["cat"], ["f"]),
        helper.make_node("Gemm", ["f", "B", "C"], ["y"], transB=1),
    ]
    inits = {"w": _w(c, 4, 3, 3), "cb": _w(c), "s": _w(c), "b": _w(c), "m": _w(c),
             "v": RNG.uniform(0.5, 2, c), "B": _w(3, c), "C": _w(3),
             "axes": np.array([2, 3], dtype=np.int64), "sizes": np.array([2, 2], dtype=np.int64)}
    used = {k: v for k, v in inits.items() if any(k in n.input for n in nodes)}
    m = _model(nodes, X.shape, [1, 3], used, opset=opset)
    m.ir_version = 10 if opset >= 21 else 8
    g = npcam.from_onnx(m, snap_constants=False)  # the reference uses the float32 epsilon
    assert _scaled(g.forward(X), _ort(m, X)) <= 1e-12


def test_a_torch_export_without_scopes_says_so():
    """torch's dynamo exporter converted down to opset 17 keeps no node metadata: the
    import notes that no module paths are available."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="node_relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["y"], name="node_mean")]
    g = npcam.from_onnx(_model(nodes, X.shape, None, producer="pytorch"))
    assert any("no module scopes" in s for s in g.import_notes)
    scoped = [helper.make_node("Relu", ["x"], ["r"], name="/relu/Relu"),
              helper.make_node("GlobalAveragePool", ["r"], ["y"], name="/avgpool/GlobalAveragePool")]
    g = npcam.from_onnx(_model(scoped, X.shape, None, producer="pytorch"))
    assert not any("no module scopes" in s for s in g.import_notes) and g.resolve("relu") == "/relu/Relu"


def test_an_imported_graph_round_trips_through_save_and_load_model(tmp_path):
    """input_shape, output_softmax and import_notes travel in the config; the weights in
    the state file; the loaded graph computes the same logits and still checks its input."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[0, 0, 1, 1], strides=[2, 2]),
             helper.make_node("HardSigmoid", ["c"], ["h"], alpha=1 / 6, beta=0.5),
             helper.make_node("GlobalAveragePool", ["h"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Softmax", ["f"], ["y"], axis=-1)]
    g = npcam.from_onnx(_model(nodes, X.shape, None, {"w": _w(3, 4, 3, 3)}))
    loaded = npcam.load_model(g.save(str(tmp_path / "imported")))
    assert loaded.input_shape == g.input_shape == (None, 4, 8, 8)
    assert loaded.output_softmax and loaded.import_notes == g.import_notes
    assert np.array_equal(loaded.forward(X), g.forward(X))
    with pytest.raises(ValueError, match="must have shape"):
        loaded.forward(X[:, :3])
    config = g.config()
    config["input_shape"] = [0, 4, 8, 8]
    with pytest.raises(ValueError, match="input_shape"):
        npcam.model_from_config(config)
