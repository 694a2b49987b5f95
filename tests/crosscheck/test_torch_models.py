"""npcam against torch autograd on the same float64 weights (architectures in conftest).

For every architecture (GAP→FC; VGG-style Flatten→FC→ReLU→FC; strided convs without
padding; nested features/classifier; BatchNorm2d in eval mode; integer-valued weights and
inputs with max-pool ties), on odd, non-square inputs with one target per image:
logits, the target layer's activations (torch forward hook) and the gradients
∂y^c/∂A (``torch.autograd.grad``) agree to 1e-10 × max|torch|; on the tie case the
max-pool argmax indices and the input gradient are exactly equal.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the crosscheck extra: pip install -e '.[test,crosscheck]'")

import npcam  # noqa: E402

pytestmark = pytest.mark.crosscheck


def torch_layer_gradients(arch):
    """(logits, A, ∂(Σ_n y^{c_n}_n)/∂A) from torch, A captured by a forward hook."""
    seen = {}
    handle = arch.tlayer.register_forward_hook(lambda m, i, o: seen.__setitem__("A", o))
    try:
        logits = arch.tnet(arch.xt)
    finally:
        handle.remove()
    a = seen["A"]
    y = logits[torch.arange(len(arch.target)), torch.from_numpy(arch.target)].sum()
    (g,) = torch.autograd.grad(y, a)
    return logits.detach().numpy(), a.detach().numpy(), g.numpy()


def test_logits_activations_gradients(arch, check):
    logits, a, g = torch_layer_gradients(arch)
    ours = npcam.grad_cam(arch.net, arch.x, arch.target, arch.layer)
    check("logits", arch.net.forward(arch.x), logits)
    check("activations", ours.activations, a)
    check("gradients", ours.gradients, g)
    check("scores", ours.scores, logits[np.arange(len(arch.target)), arch.target])
    # images are independent: the summed score's gradient is each image's own
    assert np.abs(g).max() > 0


def test_input_gradient_matches_autograd(arch, check):
    xt = arch.xt.requires_grad_(True)
    logits = arch.tnet(xt)
    y = logits[torch.arange(len(arch.target)), torch.from_numpy(arch.target)].sum()
    (gx,) = torch.autograd.grad(y, xt)
    check("saliency (autograd)", npcam.saliency(arch.net, arch.x, arch.target), gx)


def _ties(relu_out: np.ndarray, upstream: np.ndarray) -> int:
    """2×2 windows whose positive maximum is shared and whose output gets a gradient."""
    n, c, h, w = relu_out.shape
    win = relu_out[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2)
    win = win.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    top = win.max(axis=-1)
    tied = ((win == top[..., None]).sum(axis=-1) > 1) & (top > 0)
    return int((tied & (upstream != 0)).sum())


def test_max_pool_ties_go_to_the_first_maximum_like_torch(fresh_arch):
    arch = fresh_arch("maxpool_ties")
    net = arch.net
    onehot = np.zeros((len(arch.target), 3))
    onehot[np.arange(len(arch.target)), arch.target] = 1.0
    net.forward(arch.x)
    net.backward(onehot, record=True, param_grads=False)
    relu_out = net.activations["1"]
    assert np.array_equal(relu_out, np.round(relu_out))  # integer-valued: exact ties
    ties = _ties(relu_out, net.gradients["2"])
    assert ties >= 5, f"the test input must contain effective max-pool ties, found {ties}"
    assert (net.activations["0"] == 0).any()  # exact zeros into the ReLU: ReLU'(0) = 0
    # torch's argmax indices (flat row*W + col per plane) equal npcam's
    _, idx = torch.nn.functional.max_pool2d(torch.from_numpy(relu_out), 2, return_indices=True)
    np.testing.assert_array_equal(net.trace.caches["2"].argmax, idx.numpy())
    # and the input gradients are exactly equal (dyadic rationals: no rounding anywhere)
    xt = arch.xt.requires_grad_(True)
    y = arch.tnet(xt)[torch.arange(2), torch.from_numpy(arch.target)].sum()
    (gx,) = torch.autograd.grad(y, xt)
    np.testing.assert_array_equal(npcam.saliency(net, arch.x, arch.target), gx.numpy())
    # a last-maximum rule would give a different gradient: the ties matter
    assert np.abs(gx.numpy()).max() > 0


def test_batch_of_one_equals_batch_rows(arch, check):
    # per-image targets in a batch = each image alone (BN in eval mode is per-sample)
    full = npcam.grad_cam(arch.net, arch.x, arch.target, arch.layer)
    for i in range(len(arch.target)):
        one = npcam.grad_cam(arch.net, arch.x[i : i + 1], int(arch.target[i]), arch.layer)
        check("raw (batch vs single)", one.raw[0], full.raw[i], bar=1e-13)
