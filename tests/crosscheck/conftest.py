"""Shared fixtures of the torch/captum cross-checks.

torch is optional (the ``crosscheck`` extra), so this file imports it inside ``try``:
without torch it defines the same fixtures, each of which skips, and the test modules
skip themselves with ``pytest.importorskip``; collection never fails.

* ``arch``: parametrised over the cross-check architectures; each gives a float64 torch
  model in eval mode, its npcam copy made with :func:`npcam.interop.from_torch`, an
  input, per-image targets and the target layer's name.
* ``check``: compares an npcam array with a reference as ``max|ours − ref| / max|ref|``,
  asserts the bar (default 1e-10) and records the worst error per quantity; the worst
  errors are printed at the end of the run (and written as JSON to the path in
  ``$NPCAM_CROSSCHECK_ERRORS`` when it is set).
* ``torch_from_npcam``: rebuilds an npcam model in torch (used to check the golden
  vectors against torch and captum).
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

try:
    import torch
except ImportError:  # the crosscheck extra is not installed: every fixture skips
    torch = None

SKIP_REASON = "needs the crosscheck extra: pip install -e '.[test,crosscheck]'"
BAR = 1e-10

#: quantity -> (worst relative error, where it happened), over the whole session
WORST: dict[str, tuple[float, str]] = {}


def _need_torch() -> Any:
    if torch is None:
        pytest.skip(SKIP_REASON)
    return torch


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    # The CPU is shared: one intra-op thread is plenty for these tiny models.
    if torch is not None:
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        yield
        torch.set_num_threads(previous)
    else:
        yield


# --------------------------------------------------------------------------- errors
def scale_error(ours: Any, ref: Any) -> float:
    """``max|ours − ref| / max|ref|`` in float64 (shapes must be equal)."""
    a = np.asarray(ours, dtype=np.float64)
    b = np.asarray(ref, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = float(np.abs(b).max())
    assert scale > 0, "the reference is all zeros: the comparison would prove nothing"
    return float(np.abs(a - b).max()) / scale


@pytest.fixture
def check(request):
    """``check(quantity, ours, ref, bar=1e-10)``: assert and record the scaled error."""

    def _check(quantity: str, ours: Any, ref: Any, bar: float = BAR) -> float:
        if hasattr(ref, "detach"):
            ref = ref.detach().numpy()
        err = scale_error(ours, ref)
        if quantity not in WORST or err > WORST[quantity][0]:
            WORST[quantity] = (err, request.node.nodeid.split("::", 1)[-1])
        assert err <= bar, f"{quantity}: scaled error {err:.3e} > {bar:.0e}"
        return err

    return _check


def pytest_terminal_summary(terminalreporter):
    if not WORST:
        return
    terminalreporter.section("npcam cross-check: worst max|npcam - ref| / max|ref| per quantity")
    for quantity, (err, where) in sorted(WORST.items()):
        terminalreporter.write_line(f"{quantity:>22}  {err:.3e}  ({where})")
    path = os.environ.get("NPCAM_CROSSCHECK_ERRORS")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({q: {"error": e, "test": w} for q, (e, w) in sorted(WORST.items())}, f, indent=1)


# ---------------------------------------------------------------------- architectures
@dataclass
class Arch:
    """One cross-check case: the same float64 weights in torch and npcam."""

    name: str
    tnet: Any  # torch.nn.Sequential, float64, eval mode
    net: Any  # npcam.Sequential from from_torch(tnet)
    x: np.ndarray  # (N, C, H, W)
    target: np.ndarray  # (N,) int64, one class per image
    layer: str  # dotted name of the Grad-CAM layer, the same in both

    @property
    def xt(self) -> Any:
        return torch.from_numpy(self.x.copy())

    @property
    def tlayer(self) -> Any:
        return self.tnet.get_submodule(self.layer)


def _fill(tnet: Any, seed: int, integer: bool = False) -> None:
    """Overwrite every parameter and BN buffer with seeded NumPy draws."""
    rng = np.random.default_rng(seed)
    nn = torch.nn
    with torch.no_grad():
        for module in tnet.modules():
            if isinstance(module, nn.BatchNorm2d):
                k = module.num_features
                module.weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, k)))
                module.bias.copy_(torch.from_numpy(0.2 * rng.standard_normal(k)))
                module.running_mean.copy_(torch.from_numpy(0.2 * rng.standard_normal(k)))
                module.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 2.0, k)))
            elif isinstance(module, (nn.Conv2d, nn.Linear)):
                w = module.weight
                if integer:
                    w.copy_(torch.from_numpy(rng.integers(-1, 2, tuple(w.shape)).astype(np.float64)))
                else:
                    fan_in = int(np.prod(w.shape[1:]))
                    w.copy_(torch.from_numpy(rng.standard_normal(tuple(w.shape)) / np.sqrt(fan_in)))
                if module.bias is not None:
                    b = module.bias
                    draw = rng.integers(0, 2, tuple(b.shape)).astype(np.float64) if integer else (
                        0.1 * rng.standard_normal(tuple(b.shape))
                    )
                    module.bias.copy_(torch.from_numpy(draw))


def _architectures() -> dict[str, tuple[Any, tuple[int, ...], tuple[int, ...], str, int, bool]]:
    """name -> (torch model, input shape, targets, layer, seed, integer-valued)."""
    nn = torch.nn
    return {
        "gap_fc": (
            nn.Sequential(
                nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
            ),
            (3, 3, 9, 11), (1, 3, 0), "3", 11, False,
        ),
        "vgg_flatten_fc": (
            nn.Sequential(
                nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Flatten(), nn.Linear(36, 10), nn.ReLU(), nn.Dropout(0.5), nn.Linear(10, 4),
            ),
            (2, 3, 9, 13), (2, 0), "4", 12, False,
        ),
        "strided": (
            nn.Sequential(
                nn.Conv2d(3, 5, 4, stride=2), nn.ReLU(), nn.Conv2d(5, 7, 3, stride=2), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(7, 3),
            ),
            (2, 3, 13, 16), (0, 2), "3", 13, False,
        ),
        "nested": (
            nn.Sequential(OrderedDict(
                features=nn.Sequential(
                    nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(),
                ),
                classifier=nn.Sequential(
                    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(8, 6)
                ),
            )),
            (2, 3, 10, 14), (5, 1), "features", 14, False,
        ),
        "batchnorm": (
            nn.Sequential(
                nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(6, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
            ),
            (2, 3, 11, 12), (3, 1), "6", 15, False,
        ),
        "maxpool_ties": (
            nn.Sequential(
                nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3),
            ),
            (2, 2, 8, 8), (0, 2), "4", 110, True,
        ),
    }


ARCH_NAMES = ("gap_fc", "vgg_flatten_fc", "strided", "nested", "batchnorm", "maxpool_ties")


def build_arch(name: str) -> Arch:
    """Build one architecture afresh (torch and npcam copies, input, targets)."""
    _need_torch()
    from npcam.interop import from_torch

    tnet, shape, target, layer, seed, integer = _architectures()[name]
    tnet = tnet.double().eval()
    _fill(tnet, seed, integer)
    rng = np.random.default_rng(seed + 1000)
    x = rng.integers(0, 3, shape).astype(np.float64) if integer else rng.standard_normal(shape)
    return Arch(name, tnet, from_torch(tnet), x, np.array(target, dtype=np.int64), layer)


@pytest.fixture
def fresh_arch():
    """``fresh_arch(name)``: build one architecture afresh (not shared with other tests)."""
    _need_torch()
    return build_arch


@pytest.fixture(scope="session")
def arch_cache():
    return {}


@pytest.fixture(params=ARCH_NAMES)
def arch(request, arch_cache):
    """Each cross-check architecture in turn (built once per session)."""
    _need_torch()
    if request.param not in arch_cache:
        arch_cache[request.param] = build_arch(request.param)
    return arch_cache[request.param]


# ------------------------------------------------------------------ npcam -> torch
@pytest.fixture
def torch_from_npcam():
    """``torch_from_npcam(model)``: the torch float64 eval model computing what an npcam
    model computes, with the same names and weights (GlobalAvgPool2d becomes a module
    averaging over H and W, so that it outputs (N, K) as npcam's does)."""
    _need_torch()
    import npcam

    nn = torch.nn

    class GlobalAvgPool(nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3))

    def convert(layer: Any) -> Any:
        if isinstance(layer, npcam.Sequential):
            return nn.Sequential(OrderedDict((n, convert(c)) for n, c in layer.children.items()))
        cfg = layer.config()
        kind = cfg["type"]
        if kind == "Conv2d":
            return nn.Conv2d(
                cfg["in_channels"], cfg["out_channels"], tuple(cfg["kernel_size"]),
                tuple(cfg["stride"]), tuple(cfg["padding"]), bias=cfg["bias"],
            )
        if kind == "Linear":
            return nn.Linear(cfg["in_features"], cfg["out_features"], bias=cfg["bias"])
        if kind == "MaxPool2d":
            return nn.MaxPool2d(tuple(cfg["kernel_size"]), tuple(cfg["stride"]))
        if kind == "BatchNorm2d":
            return nn.BatchNorm2d(cfg["num_features"], eps=cfg["eps"], momentum=cfg["momentum"])
        if kind == "Dropout":
            return nn.Dropout(cfg["p"])
        return {"ReLU": nn.ReLU, "Flatten": nn.Flatten, "GlobalAvgPool2d": GlobalAvgPool}[kind]()

    def _build(model: Any) -> Any:
        tnet = convert(model).double().eval()
        state = {k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()}
        tnet.load_state_dict(state, strict=True)
        return tnet

    return _build
