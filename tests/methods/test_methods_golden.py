r"""A golden case for ``npcam.methods``, worked out by hand (the captum habit).

The network: a 1×1 convolution with one input and two output channels, a ReLU, global
average pooling and a 2→2 linear layer, on one 2×2 image::

    x      = [[1, -2],
              [3,  4]]
    conv   : W = [2, -1] (one 1×1 kernel per output channel), b = [0, 0.5]
    pre^0  = 2·x + 0     = [[2, -4], [ 6,  8]]      (layer "0")
    pre^1  = -x + 0.5    = [[-0.5, 2.5], [-2.5, -3.5]]
    A^0    = ReLU(pre^0) = [[2, 0], [6, 8]]          (layer "1", Z = 4)
    A^1    = ReLU(pre^1) = [[0, 2.5], [0, 0]]
    F      = GAP(A)      = [(2+0+6+8)/4, 2.5/4] = [4, 0.625]
    fc     : W = [[1, 2], [-1, 3]], b = [0.5, -1]
    y_0    = 1·4 + 2·0.625 + 0.5  = 4 + 1.25 + 0.5   = 5.75
    y_1    = -1·4 + 3·0.625 - 1   = -4 + 1.875 - 1   = -3.125

Every number is a multiple of 1/16, so the expected values are exact in float64 and the
logit-score checks are exact equalities. No ReLU input is 0 (no kink).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from npcam import (
    Conv2d,
    GlobalAvgPool2d,
    Linear,
    ReLU,
    Sequential,
    cam,
    cam_equivalence,
    counterfactual,
    deconvnet,
    grad_cam,
    guided_backprop,
    guided_grad_cam,
    saliency,
)


@pytest.fixture
def golden():
    model = Sequential(Conv2d(1, 2, 1), ReLU(), GlobalAvgPool2d(), Linear(2, 2))
    model.load_state_dict(
        {
            "0.weight": np.array([2.0, -1.0]).reshape(2, 1, 1, 1),
            "0.bias": np.array([0.0, 0.5]),
            "3.weight": np.array([[1.0, 2.0], [-1.0, 3.0]]),
            "3.bias": np.array([0.5, -1.0]),
        }
    )
    x = np.array([[1.0, -2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    return model, x


A = np.array([[[2.0, 0.0], [6.0, 8.0]], [[0.0, 2.5], [0.0, 0.0]]])[None]  # (1, 2, 2, 2)


def eq(actual, expected):
    np.testing.assert_array_equal(np.asarray(actual), np.asarray(expected, dtype=np.float64))


def test_forward(golden):
    model, x = golden
    eq(model.forward(x), [[5.75, -3.125]])
    eq(model.activations["1"], A)
    assert int(np.argmax(model.forward(x))) == 0


def test_grad_cam_at_the_relu(golden):
    r"""Layer "1" (A, after the ReLU): ∂y^c/∂A^k_ij = W[c, k]/Z = W[c, k]/4 everywhere.

    class 0: α = [1/4, 2/4] = [0.25, 0.5];
             M = 0.25·A^0 + 0.5·A^1 = [[0.5 + 0, 0 + 1.25], [1.5 + 0, 2 + 0]]
               = [[0.5, 1.25], [1.5, 2]]; all positive, so L = M.
    class 1: α = [-1/4, 3/4] = [-0.25, 0.75];
             M = -0.25·A^0 + 0.75·A^1 = [[-0.5, 1.875], [-1.5, -2]];
             L = [[0, 1.875], [0, 0]]; counterfactual ReLU(-M) = [[0.5, 0], [1.5, 2]].
    """
    model, x = golden
    r = grad_cam(model, x)  # target None -> argmax = class 0; default layer = "1"
    assert r.layer == "1"
    eq(r.target, [0])
    eq(r.scores, [5.75])
    eq(r.activations, A)
    eq(r.gradients, np.array([np.full((2, 2), 0.25), np.full((2, 2), 0.5)])[None])
    eq(r.weights, [[0.25, 0.5]])
    eq(r.raw, [[[0.5, 1.25], [1.5, 2.0]]])
    eq(r.cam, [[[0.5, 1.25], [1.5, 2.0]]])

    r1 = grad_cam(model, x, 1, "1")
    eq(r1.scores, [-3.125])
    eq(r1.weights, [[-0.25, 0.75]])
    eq(r1.raw, [[[-0.5, 1.875], [-1.5, -2.0]]])
    eq(r1.cam, [[[0.0, 1.875], [0.0, 0.0]]])
    cf = counterfactual(model, x, 1, "1")
    eq(cf.weights, [[0.25, -0.75]])
    eq(cf.raw, [[[0.5, -1.875], [1.5, 2.0]]])
    eq(cf.cam, [[[0.5, 0.0], [1.5, 2.0]]])
    eq(cf.gradients, r1.gradients)

    ra = grad_cam(model, x, "all", "1")
    eq(ra.weights, [[[0.25, 0.5], [-0.25, 0.75]]])
    eq(ra.scores, [[5.75, -3.125]])


def test_grad_cam_before_the_relu(golden):
    r"""Layer "0" (the conv output, before the ReLU): the gradient passes the ReLU only
    where pre > 0: masks [[1, 0], [1, 1]] (channel 0) and [[0, 1], [0, 0]] (channel 1).

    class 0: ∂y/∂pre^0 = 0.25·mask^0 -> Σ = 0.75, α_0 = 0.75/4 = 0.1875;
             ∂y/∂pre^1 = 0.5·mask^1  -> Σ = 0.5,  α_1 = 0.5/4  = 0.125;
             M = 0.1875·pre^0 + 0.125·pre^1
               = [[0.375 - 0.0625, -0.75 + 0.3125], [1.125 - 0.3125, 1.5 - 0.4375]]
               = [[0.3125, -0.4375], [0.8125, 1.0625]];  L = [[0.3125, 0], [0.8125, 1.0625]].
    """
    model, x = golden
    r = grad_cam(model, x, 0, "0")
    eq(r.activations, np.array([[[2.0, -4.0], [6.0, 8.0]], [[-0.5, 2.5], [-2.5, -3.5]]])[None])
    eq(r.gradients, np.array([[[0.25, 0.0], [0.25, 0.25]], [[0.0, 0.5], [0.0, 0.0]]])[None])
    eq(r.weights, [[0.1875, 0.125]])
    eq(r.raw, [[[0.3125, -0.4375], [0.8125, 1.0625]]])
    eq(r.cam, [[[0.3125, 0.0], [0.8125, 1.0625]]])


def test_cam(golden):
    r"""CAM uses the FC rows: class 0 w = [1, 2], raw = A^0 + 2·A^1 = [[2, 5], [6, 8]]
    (= Z·M_Grad-CAM = 4·[[0.5, 1.25], [1.5, 2]]); (1/Z)·Σ raw = 21/4 = 5.25 = y_0 − b_0.
    class 1 w = [-1, 3], raw = -A^0 + 3·A^1 = [[-2, 7.5], [-6, -8]]; Σ/4 = -8.5/4 = -2.125
    = y_1 − b_1 = -3.125 + 1."""
    model, x = golden
    r0 = cam(model, x, 0)
    eq(r0.weights, [[1.0, 2.0]])
    eq(r0.raw, [[[2.0, 5.0], [6.0, 8.0]]])
    eq(r0.cam, [[[2.0, 5.0], [6.0, 8.0]]])
    eq(r0.scores, [5.75])
    assert r0.gradients is None
    r1 = cam(model, x, 1)
    eq(r1.raw, [[[-2.0, 7.5], [-6.0, -8.0]]])
    eq(r1.cam, [[[0.0, 7.5], [0.0, 0.0]]])
    assert r1.raw.sum() / 4 == -2.125
    e = cam_equivalence(model, x, 1)
    assert e.Z == 4 and e.holds and e.weight_error == 0.0 and e.map_error == 0.0


def test_input_gradients(golden):
    r"""Back to the input (the 1×1 conv's backward: dx = 2·g^0 − 1·g^1).

    class 0: g at the ReLU output = [0.25, 0.5] everywhere (all > 0).
      standard / guided: g^0 = 0.25·mask^0, g^1 = 0.5·mask^1
        dx = [[0.5 - 0, 0 - 0.5], [0.5 - 0, 0.5 - 0]] = [[0.5, -0.5], [0.5, 0.5]];
      deconvnet (no x mask): dx = 2·0.25 − 0.5 = 0 everywhere.
    class 1: g = [-0.25, 0.75].
      standard: g^0 = [[-0.25, 0], [-0.25, -0.25]], g^1 = [[0, 0.75], [0, 0]]
        dx = [[-0.5, -0.75], [-0.5, -0.5]];
      guided: g^0 -> 0 (negative), g^1 as standard: dx = [[0, -0.75], [0, 0]];
      deconvnet: g^0 -> 0, g^1 = 0.75 everywhere: dx = -0.75 everywhere.
    Guided Grad-CAM, class 0, layer "1": the 2×2 map needs no resizing, so
      L ⊙ guided = [[0.5·0.5, 1.25·(-0.5)], [1.5·0.5, 2·0.5]] = [[0.25, -0.625], [0.75, 1]].
    """
    model, x = golden
    eq(saliency(model, x, 0), [[[[0.5, -0.5], [0.5, 0.5]]]])
    eq(guided_backprop(model, x, 0), [[[[0.5, -0.5], [0.5, 0.5]]]])
    eq(deconvnet(model, x, 0), np.zeros((1, 1, 2, 2)))
    eq(saliency(model, x, 1), [[[[-0.5, -0.75], [-0.5, -0.5]]]])
    eq(guided_backprop(model, x, 1), [[[[0.0, -0.75], [0.0, 0.0]]]])
    eq(deconvnet(model, x, 1), np.full((1, 1, 2, 2), -0.75))
    for mode in ("bilinear", "nearest"):
        eq(guided_grad_cam(model, x, 0, "1", mode=mode), [[[[0.25, -0.625], [0.75, 1.0]]]])


D = 8.875  # y_0 − y_1 = 5.75 + 3.125
P1 = 1.0 / (1.0 + math.exp(D))  # = e^{-d}/(1 + e^{-d})
P0 = 1.0 / (1.0 + math.exp(-D))


def test_softmax_scores(golden):
    r"""p_0 = 1/(1 + e^{-d}) and log p_1 = −d − log(1 + e^{-d}), d = 8.875."""
    model, x = golden
    r = grad_cam(model, x, 0, "1", score="softmax")
    np.testing.assert_allclose(r.scores, [P0], rtol=1e-15, atol=0)
    r = grad_cam(model, x, 1, "1", score="log_softmax")
    np.testing.assert_allclose(r.scores, [-D - math.log1p(math.exp(-D))], rtol=1e-15, atol=0)


def test_log_softmax_score_of_the_predicted_class(golden):
    r"""log p_0 = −log(1 + e^{-d}) = −1.3983185166502761e-04 (50-digit mpmath), to full
    relative precision: computing it as log(p_0), or as −log(Σ_j e^{z_j − z_max}) with the
    sum rounded near 1, loses ~12 digits (the sum is 1 + 1.4e-4); −log1p(Σ_{j≠max} …)
    does not."""
    model, x = golden
    r = grad_cam(model, x, 0, "1", score="log_softmax")
    np.testing.assert_allclose(r.scores, [-math.log1p(math.exp(-D))], rtol=1e-15, atol=0)


def test_softmax_weights(golden):
    r"""Softmax score y = p_0: ∂p_0/∂z = p_0(e_0 − p) = p_0 p_1·[1, −1], so
    ∂p_0/∂A^k_ij = p_0 p_1 (W[0, k] − W[1, k]) / 4 = p_0 p_1·[2, −1]/4 and
    α = p_0 p_1·[0.5, −0.25] ≈ [6.990126271724539e-05, −3.495063135862269e-05]
    (checked with 50-digit mpmath: 0.5·p_0 p_1 = 6.9901262717245387285…e-05)."""
    model, x = golden
    r = grad_cam(model, x, 0, "1", score="softmax")
    np.testing.assert_allclose(r.weights, [[0.5 * P0 * P1, -0.25 * P0 * P1]], rtol=1e-15, atol=0)


def test_log_softmax_weights(golden):
    r"""Log-softmax score y = log p_0: ∂/∂z = e_0 − p = p_1·[1, −1], α = p_1·[0.5, −0.25];
    class 1: e_1 − p = p_0·[−1, 1], α = p_0·[−0.5, 0.25]."""
    model, x = golden
    r = grad_cam(model, x, 0, "1", score="log_softmax")
    np.testing.assert_allclose(r.weights, [[0.5 * P1, -0.25 * P1]], rtol=1e-15, atol=0)
    r = grad_cam(model, x, 1, "1", score="log_softmax")
    np.testing.assert_allclose(r.weights, [[-0.5 * P0, 0.25 * P0]], rtol=1e-15, atol=0)


def test_softmax_seed_stays_accurate_when_confident(golden):
    r"""The same network with b_0 raised by 31.125, so d = y_0 − y_1 = 40 and
    1 − p_0 = p_1 ≈ 4.2e-18 is far below float64's spacing at 1 (2.2e-16). The gradients
    w.r.t. A do not involve the bias: α = p_0 p_1·[0.5, −0.25] (softmax) and
    p_1·[0.5, −0.25] (log_softmax) as above. A seed computed as p_0(1 − p_0) rounds
    1 − p_0 to 0 and gets α_0 wrong by half; writing 1 − p_c as Σ_{j≠c} p_j keeps full
    relative precision (the ∂/∂z_c component of the seed is p_c Σ_{j≠c} p_j)."""
    model, x = golden
    model[3].bias = np.array([0.5 + 31.125, -1.0])
    eq(model.forward(x), [[36.875, -3.125]])
    d = 40.0
    p1 = 1.0 / (1.0 + math.exp(d))
    p0 = 1.0 / (1.0 + math.exp(-d))
    r = grad_cam(model, x, 0, "1", score="softmax")
    np.testing.assert_allclose(r.weights, [[0.5 * p0 * p1, -0.25 * p0 * p1]], rtol=1e-15, atol=0)
    r = grad_cam(model, x, 0, "1", score="log_softmax")
    np.testing.assert_allclose(r.weights, [[0.5 * p1, -0.25 * p1]], rtol=1e-15, atol=0)
