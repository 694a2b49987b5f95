"""Keras/TensorFlow through ONNX: a small Keras 3 CNN exported with tf2onnx, imported with
:func:`npcam.from_onnx`, checked against TensorFlow itself (issue 12, item 4).

The model (NHWC, 32x32x3, seeded): ``conv1`` (3x3 "same") -> ``bn1`` (BatchNormalization
with random moving statistics, so it is not the identity) -> ``relu1`` -> ``pool1``
(2x2 max-pool) -> ``conv2`` (3x3 "same", stride 2, ReLU fused; on the even 16x16 map
this is the asymmetric ONNX ``pads=[0, 0, 1, 1]``) -> ``gap`` -> ``fc`` (Dense, softmax
fused). Every bias is random (tf2onnx drops a zero bias and folds the BN into a bias-free
conv, which would leave ops untested).

References come from TensorFlow: the logits from a clone of the model whose ``fc``
activation is linear (checked to give the model's softmax), the layer's activations and
``∂logit_c/∂A`` from ``tf.GradientTape`` (NHWC, transposed to NCHW), and tf-keras-vis
0.8.7's own ``Gradcam`` with ``ReplaceToLinear`` (it runs under Keras 3: the spike of
issue 12). TensorFlow computes in float32 and npcam in float64 (float32 in one test), so
the bars are float32 precision: ``max|ours - theirs| <= TOL * max|theirs|``.

Needs the ``keras`` extra (tensorflow-cpu, keras, tf2onnx, onnx) and, for the tf-keras-vis
and onnxruntime tests, ``tf-keras-vis`` and ``onnxruntime``; everything skips without them.
The folder is ``tests/keras_onnx``, not ``tests/keras``: pytest puts ``tests/`` on
``sys.path``, and a ``tests/keras`` folder would import as a namespace package ``keras``
wherever Keras is not installed (so ``importorskip("keras")`` would not skip).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is first imported

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
tf2onnx = pytest.importorskip("tf2onnx")
onnx = pytest.importorskip("onnx")

import npcam  # noqa: E402

try:  # the CPU is shared; fails harmlessly if TensorFlow's runtime is already up
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
except RuntimeError:
    pass

#: float32 precision, relative to the reference's max |value|
TOL = 1e-5
#: float64 Keras model vs npcam in float64
TOL64 = 1e-10
SIZE = 32
CLASSES = 5
TARGETS = [1, 3]
#: tf2onnx's default opset (15 for tf2onnx 1.17), and 13 and 18 (ReduceMean with an axes
#: input and a Transpose before it instead of GlobalAveragePool)
OPSETS = [None, 13, 18]


def rel_err(ours, theirs) -> float:
    theirs = np.asarray(theirs, dtype=np.float64)
    return float(np.abs(np.asarray(ours, dtype=np.float64) - theirs).max() / np.abs(theirs).max())


def build_cnn(dtype: str = "float32", seed: int = 0):
    """The test CNN, seeded; random BN statistics and biases."""
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    kw = {"dtype": dtype}
    inp = keras.Input((SIZE, SIZE, 3), dtype=dtype, name="image")
    h = layers.Conv2D(8, 3, padding="same", name="conv1", **kw)(inp)
    h = layers.BatchNormalization(name="bn1", **kw)(h)
    h = layers.ReLU(name="relu1", **kw)(h)
    h = layers.MaxPooling2D(2, name="pool1", **kw)(h)
    h = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv2", **kw)(h)
    h = layers.GlobalAveragePooling2D(name="gap", **kw)(h)
    out = layers.Dense(CLASSES, activation="softmax", name="fc", **kw)(h)
    model = keras.Model(inp, out, name="tinycnn")
    rng = np.random.default_rng(seed)
    bn = model.get_layer("bn1")
    shape = bn.get_weights()[0].shape
    bn.set_weights([rng.uniform(0.5, 1.5, shape), rng.normal(0, 0.2, shape),  # gamma, beta
                    rng.normal(0, 0.3, shape), rng.uniform(0.5, 2.0, shape)])  # moving mean, var
    for layer in model.layers:
        if isinstance(layer, (layers.Conv2D, layers.Dense)):
            w, b = layer.get_weights()
            layer.set_weights([w, rng.normal(0, 0.1, b.shape)])
    return model


def linear_clone(model):
    """The model with its final softmax replaced by the identity: the logits."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    clone.get_layer("fc").activation = keras.activations.linear
    return clone


def export(model, path, opset) -> onnx.ModelProto:
    spec = (tf.TensorSpec((None, SIZE, SIZE, 3), model.inputs[0].dtype, name="image"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset, output_path=str(path))
    return proto


def tape_gradcam(model, x, layer: str, targets):
    """TensorFlow's activations A and ∂(Σ_n logit_{n, c_n})/∂A at ``layer``, in NCHW."""
    tap = keras.Model(model.inputs, [model.get_layer(layer).output, model.output])
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        a, logits = tap(xt, training=False)
        score = tf.reduce_sum(tf.gather(logits, targets, axis=1, batch_dims=1))
    g = tape.gradient(score, a)
    return np.transpose(a.numpy(), (0, 3, 1, 2)), np.transpose(g.numpy(), (0, 3, 1, 2))


def gradcam_map(a, g):
    """ReLU(Σ_k mean_ij(g_k) A_k), from TensorFlow's arrays (NCHW)."""
    a = a.astype(np.float64)
    g = g.astype(np.float64)
    return np.maximum((a * g.mean(axis=(2, 3), keepdims=True)).sum(axis=1), 0)


@pytest.fixture(scope="module")
def cnn():
    model = build_cnn()
    x = np.random.default_rng(1).standard_normal((2, SIZE, SIZE, 3)).astype(np.float32)
    lin = linear_clone(model)
    logits = lin(x, training=False).numpy()
    # the clone is the model without its softmax
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), model(x, training=False).numpy(),
                               rtol=0, atol=1e-6)
    return model, lin, x, logits


@pytest.fixture(scope="module", params=OPSETS, ids=lambda o: f"opset{o or 'default'}")
def exported(request, cnn, tmp_path_factory):
    model = cnn[0]
    path = tmp_path_factory.mktemp("keras_onnx") / "tinycnn.onnx"
    proto = export(model, path, request.param)
    return path, proto


def test_export_has_what_the_test_is_about(exported):
    """The export holds the NHWC->NCHW Transpose, the asymmetric pads of the stride-2 "same"
    conv on an even map, the BN's ops and a final Softmax (else the tests below prove less)."""
    _, proto = exported
    nodes = list(proto.graph.node)
    ops = [n.op_type for n in nodes]
    assert ops[0] == "Transpose"
    assert list(onnx.helper.get_attribute_value(nodes[0].attribute[0])) == [0, 3, 1, 2]
    assert ops[-1] == "Softmax"
    pads = [list(onnx.helper.get_attribute_value(a)) for n in nodes if n.op_type == "Conv"
            for a in n.attribute if a.name == "pads"]
    assert [0, 0, 1, 1] in pads
    assert any("bn1" in n.name for n in nodes if n.op_type != "Transpose")
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_export_matches_keras_in_onnxruntime(exported, cnn):
    """The export itself is right (so a mismatch below is npcam's): onnxruntime's softmax
    output equals Keras's."""
    ort = pytest.importorskip("onnxruntime")
    path, _ = exported
    model, _, x, _ = cnn
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (probs,) = sess.run(None, {sess.get_inputs()[0].name: x})
    assert rel_err(probs, model(x, training=False).numpy()) < TOL


def test_logits_equal_keras_pre_softmax(exported, cnn):
    path, _ = exported
    _, _, x, logits = cnn
    graph = npcam.from_onnx(path)
    assert graph.output_softmax is True
    ours = graph.forward(x.astype(np.float64))
    assert ours.shape == logits.shape
    assert rel_err(ours, logits) < TOL
    # the batch is free: three images, each as computed alone
    x3 = np.concatenate([x, x[:1]])
    assert rel_err(graph.forward(x3.astype(np.float64))[2], logits[0]) < TOL


def test_logits_float32_import(exported, cnn):
    """``dtype=np.float32`` (the weights rounded to float32, as TensorFlow holds them)."""
    path, _ = exported
    _, _, x, logits = cnn
    graph = npcam.from_onnx(path, dtype=np.float32)
    assert graph.output_softmax is True
    assert rel_err(graph.forward(x), logits) < TOL


@pytest.mark.parametrize("layer", ["conv2", "relu1"])
def test_gradcam_equals_gradient_tape(exported, cnn, layer):
    """At ``conv2`` (the last conv, its fused ReLU included) and ``relu1`` (whose gradient
    comes back through the asymmetric-pad conv and the max-pool): the layer's output, the
    gradient of the target logit, the channel weights and the map equal TensorFlow's."""
    path, _ = exported
    _, lin, x, logits = cnn
    a, g = tape_gradcam(lin, x, layer, TARGETS)
    graph = npcam.from_onnx(path)
    # the Keras layer name is an alias of the layer's last node: its (fused) ReLU
    assert layer in graph.aliases()
    assert graph.resolve(layer).endswith("/Relu"), graph.resolve(layer)
    r = npcam.grad_cam(graph, x.astype(np.float64), target=TARGETS, layer=layer)
    assert r.activations.shape == a.shape  # NCHW, as the ONNX graph has it
    assert rel_err(r.activations, a) < TOL
    assert rel_err(r.gradients, g) < TOL
    assert rel_err(r.weights, g.astype(np.float64).mean(axis=(2, 3))) < TOL
    assert rel_err(r.scores, logits[np.arange(len(TARGETS)), TARGETS]) < TOL
    expected = gradcam_map(a, g)
    assert expected.max() > 0  # a non-trivial map
    assert rel_err(r.cam, expected) < TOL


@pytest.mark.parametrize("opset", [None, 18], ids=lambda o: f"opset{o or 'default'}")
def test_nchw_input_layout(cnn, tmp_path, opset):
    """``input_layout="nchw"``: the leading Transpose is folded away, the graph takes NCHW,
    and gives the same logits and Grad-CAM."""
    model, lin, x, logits = cnn
    path = tmp_path / "tinycnn.onnx"
    export(model, path, opset)
    graph = npcam.from_onnx(path, input_layout="nchw")
    x_nchw = np.transpose(x, (0, 3, 1, 2)).astype(np.float64)
    assert rel_err(graph.forward(x_nchw), logits) < TOL
    a, g = tape_gradcam(lin, x, "conv2", TARGETS)
    r = npcam.grad_cam(graph, x_nchw, target=TARGETS, layer="conv2")
    assert rel_err(r.activations, a) < TOL
    assert rel_err(r.gradients, g) < TOL
    assert rel_err(r.cam, gradcam_map(a, g)) < TOL


@pytest.mark.parametrize(
    "layer, seek", [("conv2", True), ("relu1", False)], ids=["conv2", "relu1-no-seek"]
)
def test_tf_keras_vis_preset_equals_tf_keras_vis(exported, cnn, layer, seek):
    """npcam's tf-keras-vis preset on npcam's activations and gradients equals tf-keras-vis
    0.8.7's own ``Gradcam`` (``ReplaceToLinear``, ``CategoricalScore``, resized to the input
    and normalised) on the Keras model. ``relu1`` is not a conv layer: tf-keras-vis would
    seek the conv before it unless ``seek_penultimate_conv_layer=False``."""
    pytest.importorskip("tf_keras_vis")
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    from npcam.verify.conventions import tf_keras_vis_gradcam

    path, _ = exported
    model, _, x, _ = cnn
    gradcam = Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)
    theirs = gradcam(CategoricalScore(TARGETS), x, penultimate_layer=layer,
                     seek_penultimate_conv_layer=seek)
    assert model.get_layer("fc").activation is keras.activations.softmax  # cloned, not modified
    graph = npcam.from_onnx(path)
    r = npcam.grad_cam(graph, x.astype(np.float64), target=TARGETS, layer=layer)
    ours = tf_keras_vis_gradcam(r.activations, r.gradients, (SIZE, SIZE))
    assert theirs.shape == ours.shape == (2, SIZE, SIZE)
    assert rel_err(ours, theirs) < TOL


def test_float64_keras_model_exports_float64(tmp_path):
    """A float64 Keras model (dtype policy ``"float64"`` on every layer) exports as a DOUBLE
    ONNX graph; npcam's logits and Grad-CAM then equal TensorFlow's float64 ones at 1e-10."""
    model = build_cnn("float64", seed=2)
    lin = linear_clone(model)
    x = np.random.default_rng(3).standard_normal((2, SIZE, SIZE, 3))
    path = tmp_path / "tinycnn64.onnx"
    proto = export(model, path, None)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    assert all(init.data_type == onnx.TensorProto.DOUBLE for init in proto.graph.initializer
               if init.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE))
    logits = lin(x, training=False).numpy()
    assert logits.dtype == np.float64
    graph = npcam.from_onnx(path)
    assert rel_err(graph.forward(x), logits) < TOL64
    a, g = tape_gradcam(lin, x, "conv2", TARGETS)
    r = npcam.grad_cam(graph, x, target=TARGETS, layer="conv2")
    assert rel_err(r.activations, a) < TOL64
    assert rel_err(r.gradients, g) < TOL64
    assert rel_err(r.cam, gradcam_map(a, g)) < TOL64


@pytest.fixture(scope="module")
def exported_default(cnn, tmp_path_factory):
    """The export at tf2onnx's default opset (the CAM-family checks need one export)."""
    path = tmp_path_factory.mktemp("keras_onnx_family") / "tinycnn.onnx"
    export(cnn[0], path, None)
    return path


#: the tf-keras-vis class of each CAM-family preset (issue 13)
TKV_CLASSES = {"grad-cam++": "GradcamPlusPlus", "layer-cam": "Layercam", "score-cam": "Scorecam"}


@pytest.mark.parametrize("linear", [False, True], ids=["softmax-output", "ReplaceToLinear"])
@pytest.mark.parametrize("layer", ["conv2", "relu1"])
@pytest.mark.parametrize("method", list(TKV_CLASSES))
def test_cam_family_tf_keras_vis_presets(exported_default, cnn, method, layer, linear):
    """``npcam.conventions.cam(method, ..., convention="tf-keras-vis")`` on the imported
    graph equals tf-keras-vis 0.8.7's own ``GradcamPlusPlus``, ``Layercam`` and ``Scorecam``
    (defaults: resized to the input, normalised) on the Keras model, at float32 precision.

    The score is the model output at the class (``CategoricalScore``): the softmax
    probability for the model as built (npcam's ``score=None``, the presets' default), the
    logit under ``ReplaceToLinear`` (``score="logit"``). For Score-CAM the library applies
    a class softmax of its own to that output: the probability twice (tf-keras-vis #47) for
    the softmax model, once under ``ReplaceToLinear``."""
    pytest.importorskip("tf_keras_vis")
    import importlib

    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    module = {"grad-cam++": "gradcam_plus_plus", "layer-cam": "layercam",
              "score-cam": "scorecam"}[method]
    cls = getattr(importlib.import_module(f"tf_keras_vis.{module}"), TKV_CLASSES[method])
    model, _, x, _ = cnn
    modifier = ReplaceToLinear() if linear else None
    explainer = cls(model, model_modifier=modifier, clone=True)
    theirs = np.asarray(explainer(CategoricalScore(TARGETS), x, penultimate_layer=layer,
                                  seek_penultimate_conv_layer=False))
    graph = npcam.from_onnx(exported_default)
    ours = npcam.conventions.cam(method, graph, x.astype(np.float64), target=TARGETS,
                                 layer=layer, convention="tf-keras-vis",
                                 score="logit" if linear else None)
    assert theirs.shape == ours.shape == (2, SIZE, SIZE)
    assert theirs.max() > 0.5  # min-max normalised, not an all-zero map
    assert rel_err(ours, theirs) < TOL
