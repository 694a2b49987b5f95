"""JAX through ONNX: a small Flax NNX CNN exported with jax2onnx, imported with
:func:`npcam.from_onnx`, and checked against JAX's own forward pass and ``jax.vjp``.

The model (seeded, float64): conv 3x3 → ReLU → pool 2x2 → conv 3x3 → ReLU (the Grad-CAM
layer A) → head, in three forms: a global average pool (``jnp.mean``) + dense head after a
max pool (``gap``), a flatten + dense head after an average pool (``flatten``), and
``gap_method``, as ``gap`` but averaging with the array method ``a.mean(axis=(1, 2))``,
which jax2onnx exports as ``ReduceSum`` + ``Div`` by h·w instead of ``ReduceMean``. ``gap``
and ``flatten`` are exported at opset 18 with ``enable_double_precision=True`` twice: with a
symbolic batch ``("B", 16, 16, 3)`` and with a static batch ``(1, 16, 16, 3)``;
``gap_method`` with the symbolic batch only. Every import is run at N = 2 (the importer
frees the batch, so the static export must accept N = 2 too).

What jax2onnx 0.17.1 emits for it (see the report beside the issue): a leading
``Transpose(perm=[0, 3, 1, 2])`` (Flax is NHWC), ``Conv`` with ``auto_pad=SAME_UPPER``,
``Relu``, ``MaxPool`` / ``AveragePool`` with ``auto_pad=VALID``, the second ``Conv``, a
``Transpose(perm=[0, 2, 3, 1])`` back to NHWC *before* the last ``Relu``, then
``ReduceMean(axes=[1, 2])`` (or ``ReduceSum`` + ``Div``) or a ``Reshape`` (its shape from a
``Shape→Gather→Squeeze→Unsqueeze→Concat`` chain with the symbolic batch, the constant
``[1, 384]`` with the static one) and ``Gemm``.
Node names are generic (``node_Relu_10``): no Flax attribute name survives, so the
Grad-CAM layer is found by structure: the ONNX node producing the 4-D tensor that the head
(``ReduceMean`` / ``ReduceSum`` / ``Reshape``) reads, which must be a ``Relu``. Its npcam name is the ONNX
node name or its output tensor name, whichever the graph resolves. That ``Relu`` runs on an
NHWC tensor (the exporter pushed the layout transpose above it): its activations and
gradients are compared in whichever layout npcam returns them (the shapes tell, K = 6 is
neither h nor w = 8), and the Grad-CAM map must be the paper's map over the K = 6 channels,
(N, 8, 8). The first ``Relu`` (NCHW, before the pool) is checked the same way.

Expected values come from JAX only: logits from the Flax model, A from the forward pass
split at the layer (``f1(x) -> A``, ``f2(A) -> logits``), ∂y^c/∂A from ``jax.vjp`` of ``f2``
with a one-hot cotangent, and the map from those two by the paper's formula (α_k = the
spatial mean of ∂y^c/∂A^k, L = ReLU(Σ_k α_k A^k)). Every comparison is
``max|npcam − jax| / max|jax| ≤ 1e-10``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("flax")
pytest.importorskip("jax2onnx")
onnx = pytest.importorskip("onnx")

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402
from jax2onnx import to_onnx  # noqa: E402

import npcam  # noqa: E402

BAR = 1e-10
OPSET = 18
H = W = 16
K = 6  # channels of the Grad-CAM layer (8x8 after the pool): neither 8 nor 16
CLASSES = 5
TARGET = np.array([3, 1])  # one class per image of the N = 2 batch
F64 = dict(param_dtype=jnp.float64, dtype=jnp.float64)
#: ops that start the head: the Grad-CAM layer A is the tensor the first of them reads
HEAD_OPS = ("ReduceMean", "ReduceSum", "GlobalAveragePool", "Reshape", "Flatten")


class SmallCNN(nnx.Module):
    """conv → ReLU → pool → conv → ReLU (A) → GAP or flatten → dense, NHWC as Flax is."""

    def __init__(self, head: str, seed: int):
        rngs = nnx.Rngs(seed)
        bias = nnx.initializers.normal(0.2)  # non-zero biases, so that they are checked too
        self.head_kind = head
        self.conv1 = nnx.Conv(3, 4, (3, 3), padding="SAME", bias_init=bias, rngs=rngs, **F64)
        self.conv2 = nnx.Conv(4, K, (3, 3), padding="SAME", bias_init=bias, rngs=rngs, **F64)
        features = (H // 2) * (W // 2) * K if head == "flatten" else K
        self.fc = nnx.Linear(features, CLASSES, bias_init=bias, rngs=rngs, **F64)

    def stage1(self, x):  # -> the first ReLU's output (N, 16, 16, 4)
        return nnx.relu(self.conv1(x))

    def stage2(self, a1):  # -> the Grad-CAM layer A (N, 8, 8, K)
        # jax2onnx 0.17.1's patched pools take window_shape by keyword only
        if self.head_kind == "flatten":
            p = nnx.avg_pool(a1, window_shape=(2, 2), strides=(2, 2))
        else:
            p = nnx.max_pool(a1, window_shape=(2, 2), strides=(2, 2))
        return nnx.relu(self.conv2(p))

    def head(self, a):  # -> logits (N, CLASSES)
        if self.head_kind == "gap":  # jnp.mean: one ReduceMean
            return self.fc(jnp.mean(a, axis=(1, 2)))
        if self.head_kind == "gap_method":  # the array method: ReduceSum, then Div by h·w
            return self.fc(a.mean(axis=(1, 2)))
        return self.fc(a.reshape(a.shape[0], -1))

    def __call__(self, x):
        return self.head(self.stage2(self.stage1(x)))


# ------------------------------------------------------------------------- helpers
def scaled_error(ours, ref) -> float:
    a = np.asarray(ours, dtype=np.float64)
    b = np.asarray(ref, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = float(np.abs(b).max())
    assert scale > 0, "the reference is all zeros: the comparison would prove nothing"
    return float(np.abs(a - b).max()) / scale


def check(quantity: str, ours, ref, bar: float = BAR) -> None:
    err = scaled_error(ours, ref)
    assert err <= bar, f"{quantity}: scaled error {err:.3e} > {bar:.0e}"


def as_nhwc(arr, nhwc_shape) -> np.ndarray:
    """npcam's (N, K, h, w) or (N, h, w, K) array in JAX's NHWC layout (shapes unambiguous)."""
    n, h, w, k = nhwc_shape
    assert k not in (h, w)
    arr = np.asarray(arr)
    if arr.shape == (n, k, h, w):
        return arr.transpose(0, 2, 3, 1)
    assert arr.shape == (n, h, w, k), f"shape {arr.shape} is neither NHWC {nhwc_shape} nor NCHW"
    return arr


def paper_grad_cam(a_nhwc, g_nhwc):
    """Grad-CAM by the paper's formula from JAX's A and ∂y^c/∂A, NHWC: (raw, cam) (N, h, w)."""
    alpha = g_nhwc.mean(axis=(1, 2))  # (N, K)
    raw = np.einsum("nk,nhwk->nhw", alpha, a_nhwc)
    return raw, np.maximum(raw, 0.0)


def jax_layer_gradients(f2, a, target):
    """Logits, and ∂logit_target/∂A by jax.vjp of the rest of the network f2 at A."""
    logits, pullback = jax.vjp(f2, jnp.asarray(a))
    onehot = jax.nn.one_hot(jnp.asarray(target), CLASSES, dtype=jnp.float64)
    (grad,) = pullback(onehot)
    return np.asarray(logits), np.asarray(grad)


def onnx_layer_nodes(model) -> dict[str, object]:
    """The ONNX nodes of the two ReLUs by structure: ``"A"`` produces the 4-D tensor the head
    (ReduceMean / Reshape / Flatten / GlobalAveragePool) reads; ``"A1"`` produces the tensor
    the pool (MaxPool / AveragePool) reads."""
    inferred = onnx.shape_inference.infer_shapes(model)
    rank = {v.name: len(v.type.tensor_type.shape.dim) for v in
            [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    producer = {out: node for node in model.graph.node for out in node.output}
    found = {}
    for node in model.graph.node:
        data = node.input[0] if node.input else None
        if data is None or rank.get(data) != 4:
            continue
        if node.op_type in HEAD_OPS and "A" not in found:
            found["A"] = producer[data]
        if node.op_type in ("MaxPool", "AveragePool") and "A1" not in found:
            found["A1"] = producer[data]
    assert set(found) == {"A", "A1"}, f"head or pool not found: {[n.op_type for n in model.graph.node]}"
    for key, node in found.items():
        assert node.op_type == "Relu", f"{key}: the tensor is produced by {node.op_type}, not Relu"
    return found


def npcam_name(graph, node) -> str:
    """The npcam name of an ONNX node: its node name, else its output tensor's name."""
    for candidate in (node.name, node.output[0]):
        try:
            return graph.resolve(candidate)
        except (ValueError, KeyError):
            continue
    names = [name for name, _ in graph.named_nodes()]
    raise AssertionError(f"neither {node.name!r} nor {node.output[0]!r} names an npcam node: {names}")


# ------------------------------------------------------------------------- fixtures
CASES = [*((head, batch) for head in ("gap", "flatten") for batch in ("symbolic", "static")),
         ("gap_method", "symbolic")]
SEEDS = {"gap": 0, "flatten": 1, "gap_method": 2}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(head, batch) -> (ONNX path, ModelProto, the Flax model); every export at opset 18, float64."""
    folder: Path = tmp_path_factory.mktemp("jax_onnx")
    out = {}
    models = {head: SmallCNN(head, seed) for head, seed in SEEDS.items()}
    for head, batch in CASES:
        shape = ("B", H, W, 3) if batch == "symbolic" else (1, H, W, 3)
        proto = to_onnx(models[head], inputs=[shape], opset=OPSET, enable_double_precision=True)
        path = folder / f"{head}_{batch}.onnx"
        onnx.save(proto, str(path))
        out[head, batch] = (path, proto, models[head])
    assert jax.config.jax_enable_x64, "jax2onnx switched x64 off: the JAX references would be float32"
    return out


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(7).standard_normal((2, H, W, 3))  # NHWC, as the export takes


# --------------------------------------------------------------------------- tests
def test_export_is_float64_at_opset_18(exported):
    for (head, batch), (_, proto, _) in exported.items():
        opsets = [(o.domain, o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")]
        assert opsets == [("", OPSET)]
        double = onnx.TensorProto.DOUBLE
        assert proto.graph.input[0].type.tensor_type.elem_type == double
        assert proto.graph.output[0].type.tensor_type.elem_type == double
        floats = [t for t in proto.graph.initializer if t.data_type in (onnx.TensorProto.FLOAT, double)]
        assert floats and all(t.data_type == double for t in floats), (head, batch)
        dim0 = proto.graph.input[0].type.tensor_type.shape.dim[0]
        assert (dim0.dim_param == "B") if batch == "symbolic" else (dim0.dim_value == 1)


@pytest.mark.parametrize("head,batch", CASES)
def test_logits_against_flax(exported, x, head, batch):
    path, _, model = exported[head, batch]
    graph = npcam.from_onnx(path)
    ref = np.asarray(model(jnp.asarray(x)))
    assert ref.dtype == np.float64
    out = graph.forward(x)  # N = 2 also for the static batch-1 export
    assert out.dtype == np.float64
    check("logits", out, ref)
    check("logits, first image alone", graph.forward(x[:1]), ref[:1])


def test_logits_nchw_input_layout(exported, x):
    """input_layout="nchw" folds the leading NHWC→NCHW Transpose away: the graph takes NCHW."""
    path, _, model = exported["gap", "symbolic"]
    graph = npcam.from_onnx(path, input_layout="nchw")
    check("logits (nchw input)", graph.forward(x.transpose(0, 3, 1, 2)), np.asarray(model(jnp.asarray(x))))


@pytest.mark.parametrize("head,batch", CASES)
def test_grad_cam_layer_against_jax_vjp(exported, x, head, batch):
    """At the last ReLU (the tensor the head reads): A, ∂y^c/∂A, y^c, α^c and the map."""
    path, proto, model = exported[head, batch]
    graph = npcam.from_onnx(path)
    layer = npcam_name(graph, onnx_layer_nodes(proto)["A"])

    a = np.asarray(model.stage2(model.stage1(jnp.asarray(x))))  # f1(x) -> A, (N, 8, 8, K)
    logits, grad = jax_layer_gradients(model.head, a, TARGET)  # f2(A) -> logits
    assert a.dtype == grad.dtype == np.float64
    check("logits via f2(f1(x))", logits, np.asarray(model(jnp.asarray(x))))

    r = npcam.grad_cam(graph, x, TARGET, layer=layer)
    check("A", as_nhwc(r.activations, a.shape), a)
    check("dy/dA", as_nhwc(r.gradients, a.shape), grad)
    check("scores", r.scores, logits[np.arange(len(x)), TARGET])
    check("weights", r.weights, grad.mean(axis=(1, 2)))
    raw, cam = paper_grad_cam(a, grad)
    assert cam.max() > 0, "the reference map is all zero: pick another target or seed"
    check("raw map", r.raw, raw)
    check("Grad-CAM map", r.cam, cam)


@pytest.mark.parametrize("head", list(SEEDS))
def test_first_relu_against_jax_vjp(exported, x, head):
    """At the first ReLU (NCHW in the ONNX graph, before the pool): A, ∂y^c/∂A and the map,
    the gradient passing back through the second conv and the max / average pool. The static
    batch-1 export where there is one (run at N = 2)."""
    path, proto, model = exported.get((head, "static")) or exported[head, "symbolic"]
    graph = npcam.from_onnx(path)
    layer = npcam_name(graph, onnx_layer_nodes(proto)["A1"])

    a1 = np.asarray(model.stage1(jnp.asarray(x)))  # (N, 16, 16, 4)
    _, grad = jax_layer_gradients(lambda t: model.head(model.stage2(t)), a1, TARGET)

    r = npcam.grad_cam(graph, x, TARGET, layer=layer)
    check("A1", as_nhwc(r.activations, a1.shape), a1)
    check("dy/dA1", as_nhwc(r.gradients, a1.shape), grad)
    raw, cam = paper_grad_cam(a1, grad)
    check("raw map at A1", r.raw, raw)
    check("Grad-CAM map at A1", r.cam, cam)
