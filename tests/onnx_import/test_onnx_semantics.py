"""Semantic probes of ``npcam.from_onnx`` against the ONNX operator spec, one per corner
of each handled op (Gemm's C broadcasting, MatMul+Add fusion, Split, Slice bounds,
Gather, Squeeze/Unsqueeze, Reshape's 0 and −1 and the batch rewrite, pads, ceil mode,
auto_pad, Clip, HardSigmoid defaults, casts, reductions, constant folding, ...).

Each test builds a tiny float64 ONNX model with onnx.helper, runs it with
onnx.reference.ReferenceEvaluator (onnxruntime where the reference evaluator itself is
wrong), and compares ``npcam.from_onnx(model).forward(x)`` at 1e-12 of scale, at the
exported batch and, when the model's batch is 1, per image at a batch of 2 — or, when
the import found that the model mixes its batch axis with others and fixed the batch,
checks that batch 2 is refused. A refusal at import (ValueError naming the node) is
also accepted: only a silently different result (or shape) fails. The tests marked
"Regression" failed before the fixes they name.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import npcam  # noqa: E402

F64 = TensorProto.DOUBLE
RNG = np.random.default_rng(1234)
REFUSED = object()


def _init(name, value):
    return numpy_helper.from_array(np.asarray(value), name)


def _model(nodes, x_shape, inits=(), opset=17, out_shape=None, dtype=F64):
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", dtype, list(x_shape))],
        [helper.make_tensor_value_info("y", dtype, out_shape)],
        initializer=[_init(k, v) for k, v in dict(inits).items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="probe")
    m.ir_version = 8
    return _with_output_shape(m)


def _with_output_shape(m):
    """The output's type as ONNX's shape inference gives it (the checker needs a shape)."""
    inferred = onnx.shape_inference.infer_shapes(m, strict_mode=False, data_prop=True)
    out = next((v for v in [*inferred.graph.output, *inferred.graph.value_info]
                if v.name == m.graph.output[0].name), None)
    if out is not None and out.type.tensor_type.HasField("shape"):
        m.graph.output[0].CopyFrom(out)
    return m


def _ref(model, x):
    return ReferenceEvaluator(model).run(None, {"x": x})[0]


def _scaled(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"shape: npcam {a.shape} vs ONNX {b.shape}"
    if a.size == 0:
        return 0.0
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def check(model, x, tol=1e-12, batch2=True, snap=False):
    """npcam equals the reference (or refuses with a ValueError). Returns the graph or
    REFUSED."""
    try:
        g = npcam.from_onnx(model, snap_constants=snap)
    except ValueError as exc:
        print("refused:", exc)
        return REFUSED
    ref = _ref(model, x)
    got = g.forward(x)
    err = _scaled(got, ref)
    assert err <= tol, (f"batch {len(x)}: scaled error {err:.3g}\nnpcam={np.asarray(got).ravel()[:8]}"
                        f"\nonnx={ref.ravel()[:8]}")
    if batch2 and x.shape[0] == 1:
        x2 = np.concatenate([x, x * -0.5 + 0.25])
        if g.input_shape is not None and g.input_shape[0] is not None:
            with pytest.raises(ValueError, match="must have shape"):
                g.forward(x2)  # the batch could not be freed: refused, never wrong
            return g
        ref2 = np.concatenate([_ref(model, x2[i:i + 1]) for i in range(2)])
        got2 = g.forward(x2)
        err2 = _scaled(got2, ref2)
        assert err2 <= tol, f"batch 2 per image: scaled error {err2:.3g}"
    return g


def must_refuse_or_match(model, x, **kw):
    return check(model, x, **kw)


TWO = {"two": np.float64(2.0)}


def then_double(nodes, out="t"):
    """Rename the last node's output to `out` and append y = out * 2 (a graph of only
    aliases has no npcam node)."""
    last = nodes[-1]
    last.output[0] = out
    return [*nodes, helper.make_node("Mul", [out, "two"], ["y"])]


def X(*shape):
    return RNG.standard_normal(shape)


# =========================================================================== Gemm
@pytest.mark.parametrize("c_shape", [(1, 5), (5,), (), (1,), (1, 1)])
def test_gemm_c_broadcast_shapes(c_shape):
    x = X(1, 3)
    n = helper.make_node("Gemm", ["x", "b", "c"], ["y"], alpha=0.75, beta=-1.25, transB=1)
    m = _model([n], x.shape, {"b": X(5, 3), "c": X(*c_shape) if c_shape else np.float64(0.7)})
    check(m, x)


def test_gemm_c_full_M_by_N_with_M_gt_1():
    x = X(2, 3)  # a static batch of 2; C (2, 5) is a per-row bias
    n = helper.make_node("Gemm", ["x", "b", "c"], ["y"], transB=1)
    check(_model([n], x.shape, {"b": X(5, 3), "c": X(2, 5)}), x)


def test_gemm_c_column_M_by_1():
    x = X(2, 3)  # C (2, 1): broadcast along N, a different bias per row
    n = helper.make_node("Gemm", ["x", "b", "c"], ["y"], transB=1)
    check(_model([n], x.shape, {"b": X(5, 3), "c": X(2, 1)}), x)


def test_gemm_transB0_no_C():
    x = X(1, 3)
    n = helper.make_node("Gemm", ["x", "b"], ["y"], alpha=2.5)
    check(_model([n], x.shape, {"b": X(3, 4)}), x)


def test_gemm_transB0_with_C_beta0():
    x = X(1, 3)
    n = helper.make_node("Gemm", ["x", "b", "c"], ["y"], beta=0.0)
    check(_model([n], x.shape, {"b": X(3, 4), "c": X(4)}), x)


# =========================================================================== MatMul + Add
def test_matmul_add_bias_vector_3d():
    x = X(1, 3, 4)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["t"]), helper.make_node("Add", ["t", "b"], ["y"])]
    check(_model(nodes, x.shape, {"w": X(4, 5), "b": X(5)}), x)


def test_matmul_add_bias_on_left():
    x = X(1, 3, 4)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["t"]), helper.make_node("Add", ["b", "t"], ["y"])]
    check(_model(nodes, x.shape, {"w": X(4, 5), "b": X(1, 5)}), x)


def test_matmul_add_constant_of_higher_rank():
    x = X(1, 4)  # (1,1,5) bias broadcasts the 2-D output to 3-D
    nodes = [helper.make_node("MatMul", ["x", "w"], ["t"]), helper.make_node("Add", ["t", "b"], ["y"])]
    # no per-image check: the (1,1,5) constant moves the batch to axis 1 (as ONNX does at batch 2)
    check(_model(nodes, x.shape, {"w": X(4, 5), "b": X(1, 1, 5)}), x, batch2=False)


def test_matmul_add_constant_not_a_vector():
    x = X(1, 3, 4)  # a (3, 5) constant: one value per position, not a bias
    nodes = [helper.make_node("MatMul", ["x", "w"], ["t"]), helper.make_node("Add", ["t", "b"], ["y"])]
    check(_model(nodes, x.shape, {"w": X(4, 5), "b": X(3, 5)}), x)


def test_matmul_add_column_constant_same_size():
    x = X(1, 5, 4)  # (5, 1) has n_out values but broadcasts along the other axis
    nodes = [helper.make_node("MatMul", ["x", "w"], ["t"]), helper.make_node("Add", ["t", "b"], ["y"])]
    check(_model(nodes, x.shape, {"w": X(4, 5), "b": X(5, 1)}), x)


def test_matmul_output_with_two_consumers():
    x = X(1, 4)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["t"]), helper.make_node("Add", ["t", "b"], ["u"]),
             helper.make_node("Relu", ["t"], ["r"]), helper.make_node("Add", ["u", "r"], ["y"])]
    check(_model(nodes, x.shape, {"w": X(4, 5), "b": X(5)}), x)


def test_matmul_output_with_other_consumer_through_identity():
    """Regression: the consumer count is taken of the Add's input (the Identity's
    output, 1 reader), not of the MatMul's output (2 readers): the bias is fused into the
    Linear that the Relu also reads."""
    x = X(1, 4)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["t"]), helper.make_node("Identity", ["t"], ["t2"]),
             helper.make_node("Add", ["t2", "b"], ["u"]),
             helper.make_node("Relu", ["t"], ["r"]), helper.make_node("Add", ["u", "r"], ["y"])]
    check(_model(nodes, x.shape, {"w": X(4, 5), "b": X(5) + 3.0}), x)


def test_matmul_output_is_graph_output_with_dead_add():
    """Regression: the MatMul's output is the model's output; an Add of a bias reads
    it but goes nowhere. The fusion adds the bias to the output."""
    x = X(1, 4)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Add", ["y", "b"], ["dead"])],
        "g", [helper.make_tensor_value_info("x", F64, [1, 4])],
        [helper.make_tensor_value_info("y", F64, None)],
        initializer=[_init("w", X(4, 5)), _init("b", X(5) + 3.0)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    check(_with_output_shape(m), x)


# =========================================================================== Split
def test_split_num_outputs_not_divisible():
    x = X(1, 7, 2)
    nodes = [helper.make_node("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3),
             helper.make_node("Concat", ["c", "a"], ["y"], axis=1)]
    check(_model(nodes, x.shape, opset=18), x)


def test_split_with_split_input_negative_axis():
    x = X(1, 2, 7)
    nodes = [helper.make_node("Split", ["x", "s"], ["a", "b"], axis=-1),
             helper.make_node("Sub", ["b", "c"], ["d"]),
             helper.make_node("ReduceSum", ["a", "ax"], ["e"], keepdims=1),
             helper.make_node("Mul", ["d", "e"], ["y"])]
    check(_model(nodes, x.shape, {"s": np.array([2, 5]), "c": np.float64(0.5), "ax": np.array([-1])}), x)


def test_split_opset13_equal():
    x = X(1, 6, 3)
    nodes = [helper.make_node("Split", ["x"], ["a", "b", "c"], axis=1),
             helper.make_node("Concat", ["c", "b", "a"], ["y"], axis=1)]
    check(_model(nodes, x.shape, opset=13), x)


# =========================================================================== Slice
@pytest.mark.parametrize("starts,ends,axes,steps", [
    ([-3], [-1], [2], [1]),
    ([-100], [100], [2], [1]),           # clamping
    ([4], [-100], [2], [-1]),             # negative step, end before the start
    ([100], [0], [2], [-2]),              # start clamped to dim-1 with a negative step
    ([-1], [-9223372036854775807], [-1], [-1]),  # full reversal
    ([1, 0], [3, 2], [-1, 1], [1, 1]),
    ([0], [9223372036854775807], [0], [1]),   # the whole batch axis
    ([2], [1], [2], [1]),                 # empty
    ([1], [5], [2], None),
])
def test_slice(starts, ends, axes, steps):
    x = X(1, 3, 5)
    ins = {"s": np.array(starts), "e": np.array(ends), "a": np.array(axes)}
    names = ["x", "s", "e", "a"]
    if steps is not None:
        ins["t"] = np.array(steps)
        names.append("t")
    check(_model([helper.make_node("Slice", names, ["y"])], x.shape, ins), x)


def test_slice_without_axes():
    x = X(1, 3, 5)
    ins = {"s": np.array([0, -2, 1]), "e": np.array([1, 3, 4])}
    check(_model([helper.make_node("Slice", ["x", "s", "e"], ["y"])], x.shape, ins), x)


# =========================================================================== Gather
@pytest.mark.parametrize("idx,axis", [
    (np.array(-1), 1), (np.array(-2), -1), (np.array([1, 2]), 1), (np.array([-2, -1]), 2),
    (np.array(0), 2), (np.array([[0, 1]]), 1), (np.array([2, 0]), 1),
])
def test_gather(idx, axis):
    x = X(1, 3, 4)
    check(_model([helper.make_node("Gather", ["x", "i"], ["y"], axis=axis)], x.shape, {"i": idx}), x)


# =========================================================================== Squeeze / Unsqueeze
@pytest.mark.parametrize("op,axes,shape", [
    ("Squeeze", [-1], (1, 3, 1)), ("Squeeze", [-2], (1, 1, 3)), ("Squeeze", None, (1, 3, 1, 1)),
    ("Unsqueeze", [-1], (1, 3)), ("Unsqueeze", [1, -1], (1, 3)), ("Unsqueeze", [-3], (1, 3)),
])
def test_squeeze_unsqueeze_negative_axes(op, axes, shape):
    x = X(*shape)
    ins, inits = ["x"], {}
    if axes is not None:
        ins.append("ax")
        inits["ax"] = np.array(axes)
    check(_model([helper.make_node(op, ins, ["y"])], x.shape, inits), x)


def test_squeeze_axis1_size1_not_batch():
    x = X(1, 1, 3)  # squeeze axis 1 only: the batch is kept
    check(_model([helper.make_node("Squeeze", ["x", "ax"], ["y"])], x.shape, {"ax": np.array([1])}), x)


# =========================================================================== Reshape
@pytest.mark.parametrize("shape", [[0, -1], [1, 0, 2, -1], [0, 3, 10], [1, -1], [-1, 30], [1, 6, 5],
                                   [1, 3, 2, 5]])
def test_reshape(shape):
    x = X(1, 3, 10)
    check(_model([helper.make_node("Reshape", ["x", "s"], ["y"])], x.shape, {"s": np.array(shape)}), x)


def test_reshape_batch_rewrite_after_broadcast_along_axis0():
    """Regression: x (1, 4) + C (3, 4) is (3, 4) but stays flagged batched; the
    Reshape's leading 1 is then taken for the batch and becomes "size of axis 0" = 3."""
    x = X(1, 4)
    nodes = [helper.make_node("Add", ["x", "c"], ["t"]), helper.make_node("Reshape", ["t", "s"], ["y"])]
    check(_model(nodes, x.shape, {"c": X(3, 4), "s": np.array([1, -1])}), x)


def test_reshape_batch_rewrite_after_concat_of_non_batch_tensor():
    """Regression: a Transpose makes axis 0 the features (unbatched); a Concat along
    axis 1 flags its output batched again (batched = axis != 0)."""
    x = X(1, 4)
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0]),
             helper.make_node("Concat", ["t", "t"], ["c"], axis=1),
             helper.make_node("Reshape", ["c", "s"], ["y"])]
    check(_model(nodes, x.shape, {"s": np.array([1, -1])}), x)


def test_reshape_leading_one_not_batch_after_transpose_back():
    x = X(1, 2, 3)  # Transpose to (2, 1, 3), Reshape (2, 3): fine either way
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2]),
             helper.make_node("Reshape", ["t", "s"], ["y"])]
    check(_model(nodes, x.shape, {"s": np.array([1, 6])}), x, batch2=False)


# =========================================================================== Flatten / Transpose / Concat
@pytest.mark.parametrize("axis", [1, 2, 3, -1, -3])
def test_flatten(axis):
    x = X(1, 2, 3, 4)
    model = _model([helper.make_node("Flatten", ["x"], ["y"], axis=axis)], x.shape)
    check(model, x, batch2=(axis in (1, -3)))


def test_transpose_default_perm():
    x = X(1, 2, 3)
    check(_model([helper.make_node("Transpose", ["x"], ["y"])], x.shape), x, batch2=False)


@pytest.mark.parametrize("axis", [1, -1])
def test_concat_with_constant_inputs(axis):
    x = X(1, 2, 3)
    c = X(1, 2, 3)
    check(_model([helper.make_node("Concat", ["c", "x", "c"], ["y"], axis=axis)], x.shape, {"c": c}), x,
          batch2=False)


# =========================================================================== Pad
def test_pad_with_axes_input():
    x = X(1, 2, 3, 4)
    n = helper.make_node("Pad", ["x", "p", "", "a"], ["y"])
    check(_model([n], x.shape, {"p": np.array([1, 0, 2, 3]), "a": np.array([-1, 2])}, opset=18), x)


def test_pad_full():
    x = X(1, 2, 3, 4)
    n = helper.make_node("Pad", ["x", "p"], ["y"])
    check(_model([n], x.shape, {"p": np.array([0, 1, 0, 2, 0, 0, 3, 1])}), x)


def test_pad_negative():
    x = X(1, 2, 3, 4)
    n = helper.make_node("Pad", ["x", "p"], ["y"])
    check(_model([n], x.shape, {"p": np.array([0, 0, -1, 1, 0, 0, 0, -2])}), x)


# =========================================================================== pooling
def test_avgpool_count_include_pad_default_zero():
    x = X(1, 2, 5, 5)
    n = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    check(_model([n], x.shape), x)


@pytest.mark.parametrize("op,extra", [
    ("MaxPool", {}), ("AveragePool", {"count_include_pad": 0}), ("AveragePool", {"count_include_pad": 1}),
])
@pytest.mark.parametrize("size,k,s,p", [(5, 2, 2, 1), (6, 3, 2, 1), (7, 3, 2, 0), (8, 3, 3, 1), (5, 3, 2, 1)])
def test_pool_ceil_mode_with_pads(op, extra, size, k, s, p):
    x = X(1, 2, size, size)
    n = helper.make_node(op, ["x"], ["y"], kernel_shape=[k, k], strides=[s, s], pads=[p] * 4, ceil_mode=1,
                         **extra)
    check(_model([n], x.shape, opset=19), x)


@pytest.mark.parametrize("auto", ["SAME_UPPER", "SAME_LOWER"])
@pytest.mark.parametrize("size,k,s", [(6, 3, 2), (7, 3, 2), (5, 2, 1), (8, 4, 3)])
def test_conv_auto_pad(auto, size, k, s):
    x = X(1, 2, size, size + 1)
    n = helper.make_node("Conv", ["x", "w"], ["y"], auto_pad=auto, strides=[s, s])
    check(_model([n], x.shape, {"w": X(3, 2, k, k)}), x)


@pytest.mark.parametrize("op,extra", [("MaxPool", {}), ("AveragePool", {}),
                                      ("AveragePool", {"count_include_pad": 1})])
@pytest.mark.parametrize("auto", ["SAME_UPPER", "SAME_LOWER"])
def test_pool_auto_pad(op, extra, auto):
    x = X(1, 2, 6, 7)
    n = helper.make_node(op, ["x"], ["y"], auto_pad=auto, kernel_shape=[3, 2], strides=[2, 2], **extra)
    if op == "MaxPool" and auto == "SAME_LOWER":
        # ReferenceEvaluator's MaxPool SAME_LOWER gives a (3, 3) map, the spec and onnxruntime
        # ceil(7/2) = 4 columns: compare with onnxruntime in float32
        check_ort_float32(n, x)
        return
    check(_model([n], x.shape), x)


def check_ort_float32(node, x, inits=(), tol=1e-6):
    ort = pytest.importorskip("onnxruntime")
    nodes = node if isinstance(node, list) else [node]
    m32 = _model(nodes, x.shape, {k: (np.asarray(v, np.float32) if np.asarray(v).dtype.kind == "f" else v)
                                for k, v in dict(inits).items()},
                 dtype=TensorProto.FLOAT)
    ref = ort.InferenceSession(m32.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x.astype(np.float32)})[0]
    got = npcam.from_onnx(m32).forward(x.astype(np.float32).astype(np.float64))
    assert _scaled(got, ref) <= tol


# =========================================================================== activations
@pytest.mark.parametrize("lo,hi", [(0.0, None), (None, 6.0), (0.0, 6.0), (-1.0, 1.0)])
def test_clip_missing_bounds(lo, hi):
    x = X(1, 8) * 5
    ins, inits = ["x"], {}
    ins.append("lo" if lo is not None else "")
    if lo is not None:
        inits["lo"] = np.float64(lo)
    if hi is not None:
        ins.append("hi")
        inits["hi"] = np.float64(hi)
    check(_model([helper.make_node("Clip", ins, ["y"])], x.shape, inits), x)


@pytest.mark.parametrize("attrs", [{}, {"alpha": 0.3}, {"alpha": 1 / 6}, {"beta": 0.25}])
def test_hard_sigmoid(attrs):
    x = X(1, 20) * 4
    check(_model([helper.make_node("HardSigmoid", ["x"], ["y"], **attrs)], x.shape), x)


def test_hard_sigmoid_snapped_default_is_not_changed():
    x = X(1, 20) * 4  # default (alpha 0.2) with snap_constants=True
    check(_model([helper.make_node("HardSigmoid", ["x"], ["y"])], x.shape), x, snap=True)


# =========================================================================== arithmetic
@pytest.mark.parametrize("op", ["Sub", "Div", "Add", "Mul"])
@pytest.mark.parametrize("const_first", [False, True])
@pytest.mark.parametrize("c_shape", [(), (1,), (1, 1, 1, 1), (3,), (1, 3, 1)])
def test_arith_with_constant(op, const_first, c_shape):
    x = X(1, 3) + 3.0
    c = X(*c_shape) + 2.0 if c_shape else np.float64(1.7)
    ins = ["c", "x"] if const_first else ["x", "c"]
    # a constant of higher rank moves the batch axis (batch 2 is then not per image)
    check(_model([helper.make_node(op, ins, ["y"])], x.shape, {"c": c}), x, batch2=len(c_shape) <= 2)


# =========================================================================== Softmax
def test_softmax_last_axis_dropped_documented():
    x = X(1, 5)  # documented: the final Softmax is dropped; the graph returns logits
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Softmax", ["r"], ["y"], axis=-1)]
    g = npcam.from_onnx(_model(nodes, x.shape))
    assert g.output_softmax is True
    assert np.array_equal(g.forward(x), np.maximum(x, 0))


def test_softmax_not_last_axis_refused():
    x = X(1, 3, 4)
    check(_model([helper.make_node("Softmax", ["x"], ["y"], axis=1)], x.shape), x)


# =========================================================================== normalisation
def test_batchnorm_opset15():
    x = X(1, 3, 4, 4)
    n = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=1e-3)
    check(_model([n], x.shape, {"s": X(3), "b": X(3), "m": X(3), "v": np.abs(X(3)) + 0.1}, opset=15), x)


@pytest.mark.parametrize("axis,bias", [(-1, True), (-1, False), (2, True), (1, True)])
def test_layernorm(axis, bias):
    x = X(1, 3, 5)
    ins = ["x", "s", "b"] if bias else ["x", "s"]
    inits = {"s": X(5) if axis in (-1, 2) else X(3, 5), "b": X(5) if axis in (-1, 2) else X(3, 5)}
    if not bias:
        del inits["b"]
    model = _model([helper.make_node("LayerNormalization", ins, ["y"], axis=axis)], x.shape, inits)
    check(model, x, tol=1e-11)


def test_layernorm_scalar_scale():
    x = X(1, 3, 5)  # Scale (1,) broadcast to the 5 features
    n = helper.make_node("LayerNormalization", ["x", "s"], ["y"], axis=-1)
    m = _model([n], x.shape, {"s": np.array([1.5])})
    with pytest.raises(ValueError, match="one value per normalised channel"):
        npcam.from_onnx(m)  # refused at import (a broadcast Scale is not a LayerNorm weight)


# =========================================================================== reductions
@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum"])
@pytest.mark.parametrize("opset", [13, 18])
@pytest.mark.parametrize("keep", [None, 0])
def test_reduce_keepdims_default(op, opset, keep):
    x = X(1, 3, 4, 5)
    attrs = {} if keep is None else {"keepdims": keep}
    axes_as_input = opset >= 18 or op == "ReduceSum"
    if axes_as_input:
        n = helper.make_node(op, ["x", "ax"], ["y"], **attrs)
        inits = {"ax": np.array([-1, 1])}
    else:
        n = helper.make_node(op, ["x"], ["y"], axes=[-1, 1], **attrs)
        inits = {}
    check(_model([n], x.shape, inits, opset=opset), x)


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum"])
def test_reduce_noop_with_empty_axes(op):
    x = X(1, 3, 4)
    nodes = then_double([helper.make_node(op, ["x"], ["y"], noop_with_empty_axes=1)])
    check(_model(nodes, x.shape, TWO, opset=18), x)


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum"])
def test_reduce_empty_axes_input_no_noop(op):
    x = X(1, 3, 4)  # an empty axes tensor means all axes (the batch included): refuse
    n = helper.make_node(op, ["x", "ax"], ["y"])
    check(_model([n], x.shape, {"ax": np.array([], dtype=np.int64)}, opset=18), x)


# =========================================================================== constant folding
def test_fold_integer_div_truncates():
    x = X(1, 4)
    nodes = [helper.make_node("Div", ["a", "b"], ["q"]), helper.make_node("Cast", ["q"], ["qf"], to=F64),
             helper.make_node("Add", ["x", "qf"], ["y"])]
    check(_model(nodes, x.shape, {"a": np.array([-7, 7, -9, 9]), "b": np.array([2, -2, 4, 4])}), x)


def test_fold_cast_float_to_int_and_float32():
    x = X(1, 4)
    nodes = [helper.make_node("Cast", ["a"], ["ai"], to=TensorProto.INT32),
             helper.make_node("Cast", ["ai"], ["af"], to=F64),
             helper.make_node("Cast", ["c"], ["c32"], to=TensorProto.FLOAT),
             helper.make_node("Cast", ["c32"], ["c64"], to=F64),
             helper.make_node("Add", ["af", "c64"], ["s"]),
             helper.make_node("Add", ["x", "s"], ["y"])]
    inits = {"a": np.array([-2.7, 2.7, -0.5, 1.5]), "c": np.array([0.1, 1 / 3, 1e-9, 7.0])}
    check(_model(nodes, x.shape, inits), x)


@pytest.mark.parametrize("start,end", [(1, None), (-2, None), (0, -1), (-100, 100), (2, 1)])
def test_fold_shape_start_end(start, end):
    x = X(1, 2, 3, 4)
    attrs = {"start": start} if end is None else {"start": start, "end": end}
    nodes = [helper.make_node("Shape", ["x"], ["sh"], **attrs),
             helper.make_node("Cast", ["sh"], ["shf"], to=F64),
             helper.make_node("ReduceSum", ["shf"], ["tot"], keepdims=0),
             helper.make_node("Mul", ["x", "tot"], ["y"])]
    check(_model(nodes, x.shape, opset=17), x)


def test_fold_constant_of_shape():
    x = X(1, 2, 3)
    v = helper.make_tensor("v", F64, [1], [2.5])
    nodes = [helper.make_node("ConstantOfShape", ["s"], ["c"], value=v),
             helper.make_node("Add", ["x", "c"], ["y"])]
    check(_model(nodes, x.shape, {"s": np.array([1, 2, 3])}), x)


def test_fold_constant_of_shape_default_value_dtype():
    x = X(1, 2, 3)  # default value is float32 0: Cast then Add
    nodes = [helper.make_node("ConstantOfShape", ["s"], ["c"]),
             helper.make_node("Cast", ["c"], ["c64"], to=F64),
             helper.make_node("Add", ["x", "c64"], ["y"])]
    check(_model(nodes, x.shape, {"s": np.array([2, 3])}), x)


@pytest.mark.parametrize("op", ["Max", "Min"])
def test_fold_variadic_max_min_three_inputs(op):
    """Regression: _FOLD's Max/Min take only the first two inputs of a variadic op."""
    x = X(1, 3)
    nodes = [helper.make_node(op, ["a", "b", "c"], ["m"]), helper.make_node("Add", ["x", "m"], ["y"])]
    inits = {"a": np.array([1.0, 2.0, 3.0]), "b": np.array([0.0, 5.0, 1.0]), "c": np.array([9.0, -9.0, 2.0])}
    check(_model(nodes, x.shape, inits), x)


def test_fold_max_single_input():
    x = X(1, 3)
    nodes = [helper.make_node("Max", ["a"], ["m"]), helper.make_node("Add", ["x", "m"], ["y"])]
    check(_model(nodes, x.shape, {"a": np.array([1.0, 2.0, 3.0])}), x)


def test_fold_unsqueeze_squeeze_negative_axes():
    x = X(1, 3, 1)
    nodes = [helper.make_node("Unsqueeze", ["a", "ax"], ["u"]),  # (3,) -> (3, 1) -> add to (1, 3, 1)
             helper.make_node("Add", ["x", "u"], ["y"])]
    check(_model(nodes, x.shape, {"a": np.array([1.0, 2.0, 3.0]), "ax": np.array([-1])}), x)


def test_fold_where_equal_range():
    x = X(1, 5)
    nodes = [helper.make_node("Range", ["s", "l", "d"], ["r"]),
             helper.make_node("Cast", ["r"], ["rf"], to=F64),
             helper.make_node("Add", ["x", "rf"], ["y"])]
    check(_model(nodes, x.shape, {"s": np.int64(0), "l": np.int64(10), "d": np.int64(2)}), x)


# =========================================================================== Dropout / Identity / Cast
def test_dropout_with_unused_mask():
    x = X(1, 5)
    nodes = then_double([helper.make_node("Dropout", ["x"], ["y", "mask"])])
    check(_model(nodes, x.shape, TWO), x)


def test_dropout_training_mode_true_is_not_identity():
    """Regression: Dropout with training_mode=True (a constant) and ratio 0.5 is a random
    drop scaled by 2 (spec), never the identity: refused."""
    x = X(1, 200)
    m = _model(then_double([helper.make_node("Dropout", ["x", "r", "t"], ["y"])], out="d"), x.shape,
               {"r": np.float64(0.5), "t": np.array(True), **TWO})
    with pytest.raises(ValueError, match="training_mode=True"):
        npcam.from_onnx(m, snap_constants=False)


def test_identity_chain():
    x = X(1, 5)
    nodes = then_double([helper.make_node("Identity", ["x"], ["a"]),
                         helper.make_node("Identity", ["a"], ["y"])])
    check(_model(nodes, x.shape, TWO), x)


def test_cast_activations_double_to_double():
    x = X(1, 5)
    check(_model(then_double([helper.make_node("Cast", ["x"], ["y"], to=F64)]), x.shape, TWO), x)


@pytest.mark.parametrize("to", [TensorProto.FLOAT, TensorProto.FLOAT16])
def test_cast_activations_to_narrower_float_and_back(to):
    """Regression: a Cast of the activations to float32/float16 is an alias; ONNX
    rounds the values."""
    x = X(1, 5) * 3
    nodes = then_double([helper.make_node("Cast", ["x"], ["h"], to=to),
                         helper.make_node("Cast", ["h"], ["y"], to=F64)])
    check(_model(nodes, x.shape, TWO), x)


def test_cast_activations_to_int_refused():
    x = X(1, 5)
    nodes = [helper.make_node("Cast", ["x"], ["h"], to=TensorProto.INT64),
             helper.make_node("Cast", ["h"], ["y"], to=F64)]
    check(_model(nodes, x.shape), x)


# =========================================================================== Expand
def test_expand_same_shape():
    x = X(1, 4)
    nodes = then_double([helper.make_node("Expand", ["x", "s"], ["y"])])
    check(_model(nodes, x.shape, {"s": np.array([1, 4]), **TWO}), x)


def test_expand_broadcasting_axis0():
    """Regression: Expand (1, 4) -> (3, 4) is taken for an Expand to the same shape
    because only out[1:] is compared."""
    x = X(1, 4)
    nodes = then_double([helper.make_node("Expand", ["x", "s"], ["y"])])
    check(_model(nodes, x.shape, {"s": np.array([3, 4]), **TWO}), x, batch2=False)


# =========================================================================== misc
def test_conv_asymmetric_pads():
    x = X(1, 2, 5, 6)
    n = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[0, 2, 1, 0], strides=[2, 1])
    check(_model([n], x.shape, {"w": X(3, 2, 3, 3), "b": X(3)}), x)


def test_hardswish():
    x = X(1, 30) * 5
    check(_model([helper.make_node("HardSwish", ["x"], ["y"])], x.shape), x, tol=1e-7)  # ref: float32 1/6


def test_global_average_pool():
    x = X(1, 3, 4, 5)
    check(_model([helper.make_node("GlobalAveragePool", ["x"], ["y"])], x.shape), x)


@pytest.mark.parametrize("op,extra", [
    ("MaxPool", {}), ("AveragePool", {"count_include_pad": 0}), ("AveragePool", {"count_include_pad": 1}),
])
@pytest.mark.parametrize("size,k,s,p", [(5, 2, 2, 1), (6, 3, 2, 1), (8, 3, 3, 1), (5, 3, 2, 1)])
def test_pool_ceil_mode_with_pads_vs_onnxruntime(op, extra, size, k, s, p):
    x = X(1, 2, size, size)
    n = helper.make_node(op, ["x"], ["y"], kernel_shape=[k, k], strides=[s, s], pads=[p] * 4, ceil_mode=1,
                         **extra)
    check_ort_float32(n, x)


def test_hard_sigmoid_default_alpha_equals_explicit_float32_alpha():
    """Minor: with snap_constants=False an explicit alpha=0.2 is float32 0.2 (as stored),
    the default alpha is Python's 0.2: the same ONNX function imported two ways."""
    x = X(1, 20) * 4
    default = _model([helper.make_node("HardSigmoid", ["x"], ["y"])], x.shape)
    a = npcam.from_onnx(default, snap_constants=False)
    b = npcam.from_onnx(_model([helper.make_node("HardSigmoid", ["x"], ["y"], alpha=0.2)], x.shape),
                        snap_constants=False)
    assert np.array_equal(a.forward(x), b.forward(x))


@pytest.mark.parametrize("starts,ends", [([-100], [-9223372036854775807]), ([-100], [-200]), ([-6], [-7])])
def test_slice_negative_step_start_below_minus_dim(starts, ends):
    """Regression: ONNX clamps a start < -dim (after adding dim) to 0 for a negative
    step, so the slice holds x[0]; Python's slice clamps it to -1, an empty slice.
    ReferenceEvaluator shares npcam's (Python) rule; onnxruntime follows the spec: the
    reference here is onnxruntime in float32."""
    x = X(1, 3, 5)
    ins = {"s": np.array(starts), "e": np.array(ends), "a": np.array([2]), "t": np.array([-1])}
    check_ort_float32(helper.make_node("Slice", ["x", "s", "e", "a", "t"], ["y"]), x, ins)


def test_fold_slice_negative_step_start_below_minus_dim():
    """The same rule in a constant expression (_slice in _FOLD)."""
    x = X(1, 2)
    nodes = [helper.make_node("Slice", ["c", "s", "e", "a", "t"], ["cs"]),
             helper.make_node("Concat", ["cs", "one"], ["k"], axis=0),
             helper.make_node("Add", ["x", "k"], ["y"])]
    ins = {"c": np.array([10.0, 1.0, 2.0]), "s": np.array([-100]), "e": np.array([-200]), "a": np.array([0]),
           "t": np.array([-1]), "one": np.array([1.0])}
    # onnxruntime: the slice is [10.0], k = [10, 1]; npcam folds it to [] and k = [1]
    check_ort_float32(nodes, x, ins)


def test_constant_nodes():
    x = X(1, 3)
    nodes = [helper.make_node("Constant", [], ["f"], value_float=0.1),
             helper.make_node("Constant", [], ["fs"], value_floats=[0.1, 0.2, 0.3]),
             helper.make_node("Cast", ["f"], ["f64"], to=F64),
             helper.make_node("Cast", ["fs"], ["fs64"], to=F64),
             helper.make_node("Mul", ["x", "f64"], ["m"]),
             helper.make_node("Add", ["m", "fs64"], ["y"])]
    check(_model(nodes, x.shape), x)
