"""The golden cases rebuilt in PyTorch: ``npcam.vectors.case_to_torch`` and the standalone
scripts of ``npcam vectors --torch`` (the crosscheck extra)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from npcam import cli  # noqa: E402
from npcam.verify import vectors as V  # noqa: E402


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    out = tmp_path_factory.mktemp("golden_torch")
    assert cli.main(["vectors", "--out", str(out), "--torch"]) == 0
    return out


@pytest.mark.parametrize("case", list(V.CASES))
def test_case_to_torch_has_the_case_weights_and_logits(case, golden):
    """The torch module's state_dict holds exactly the case's weights (same keys, shapes
    and float64 values) and its eval-mode logits equal the stored ones to 1e-12 of scale."""
    a = V.load_case(golden, case)
    model = V.case_to_torch(golden, case)
    assert not model.training
    weights = {k[len(V.WEIGHT_PREFIX):]: v for k, v in a.items() if k.startswith(V.WEIGHT_PREFIX)}
    state = model.state_dict()
    assert set(state) == set(weights)
    for key, value in weights.items():
        np.testing.assert_array_equal(state[key].numpy(), value, err_msg=key)
    with torch.no_grad():
        logits = model(torch.from_numpy(a["input"])).numpy()
    assert np.abs(logits - a["logits"]).max() <= 1e-12 * np.abs(a["logits"]).max()


def test_case_to_torch_grad_cam_of_the_graph_case(golden):
    """Grad-CAM computed by torch autograd on the rebuilt residual/concat graph (forward
    hook on ``relu3``, backward of y^c) equals the stored raw map and α to 1e-10."""
    a = V.load_case(golden, "graph_residual_concat")
    model = V.case_to_torch(golden, "graph_residual_concat")
    store = {}
    hook = model.relu3.register_forward_hook(lambda m, i, out: store.update(a=out))
    x = torch.from_numpy(a["input"])
    logits = model(x)
    hook.remove()
    t = torch.from_numpy(a["target"])
    (g,) = torch.autograd.grad(logits[torch.arange(len(x)), t].sum(), store["a"])
    alpha = g.mean(dim=(2, 3))
    raw = (alpha[:, :, None, None] * store["a"]).sum(1).detach().numpy()
    assert np.abs(alpha.numpy() - a["alpha"]).max() <= 1e-10 * np.abs(a["alpha"]).max()
    assert np.abs(raw - a["raw"]).max() <= 1e-10 * np.abs(a["raw"]).max()


@pytest.mark.parametrize("case", ["graph_residual_concat", "nested", "softmax_argmax"])
def test_the_standalone_script_runs_without_npcam(case, golden):
    """``<case>.py`` rebuilds the model with torch and numpy only (npcam is made
    unimportable) and exits 0 after checking the logits against ``<case>.npz``."""
    script = golden / f"{case}.py"
    blocker = ("import sys; sys.modules['npcam'] = None; import runpy; "
               "runpy.run_path(sys.argv[1], run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", blocker, str(script)], capture_output=True, text=True,
                          timeout=120, cwd=golden)
    assert done.returncode == 0, done.stderr
    assert "max relative error of the logits" in done.stdout


def test_every_case_has_a_script(golden):
    """``--torch`` writes one script per case, each valid Python defining build() and load()."""
    for case in V.CASES:
        text = (golden / f"{case}.py").read_text()
        compile(text, f"{case}.py", "exec")
        assert "def build():" in text and "def load(" in text
