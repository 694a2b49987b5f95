"""npcam graphs against PyTorch + captum on torchvision models: Grad-CAM and guided
backpropagation, float64 on the CPU, same weights.

Models and layers (issue 11): ResNet-50 at ``layer4``, VGG-16 at ``features.29``
(conv5_3's ReLU), MobileNetV2 and EfficientNet-B0 at ``features``; 224×224 inputs, one
target class (3) for every image.

* ``gradcam``: ``npcam.grad_cam`` vs captum ``LayerGradCam(model, layer).attribute``;
* ``guided``: ``npcam.guided_backprop(..., guided_relus="modules")`` vs captum
  ``GuidedBackprop``.

The weights are drawn once (torchvision's initialisation with a fixed seed, BatchNorm
statistics randomised) and written twice: an npcam ``.npz`` (``graph.save``) that the npcam
worker loads without importing torch, and a torch ``.pt`` state_dict for the torch
worker. Every measurement runs in a fresh process — so ``ru_maxrss`` is that
measurement's peak memory — with one thread (``threadpoolctl`` / ``torch.set_num_threads``):
one warm-up, then ``--repeats`` timed runs; the table gives the median.

Usage (needs the ``crosscheck`` extra)::

    python benchmarks/bench_graph_vs_torch.py
    python benchmarks/bench_graph_vs_torch.py --models resnet50 --tasks gradcam --batch 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

LAYERS = {
    "resnet50": "layer4",
    "vgg16": "features.29",
    "mobilenet_v2": "features",
    "efficientnet_b0": "features",
}
TARGET = 3
SIZE = 224


def _time(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_npcam(model_name: str, task: str, batch: int, repeats: int, files: dict) -> dict:
    import numpy as np
    from threadpoolctl import threadpool_limits

    import npcam

    with threadpool_limits(1):
        model = npcam.load_model(files["npz"], max_bytes=4 * 2**30)
        x = np.random.default_rng(1).standard_normal((batch, 3, SIZE, SIZE))
        layer = LAYERS[model_name]
        fns = {
            "gradcam": lambda: npcam.grad_cam(model, x, target=TARGET, layer=layer),
            "guided": lambda: npcam.guided_backprop(model, x, target=TARGET, guided_relus="modules"),
        }
        times = _time(fns[task], repeats)
    return {"times": times, "maxrss_mb": _peak_mb()}


def _torch_model(model_name: str, files: dict):
    import torch
    import torchvision

    model = torchvision.models.get_model(model_name, weights=None).double().eval()
    model.load_state_dict(torch.load(files["pt"], weights_only=True))
    return model


def _module(model, path: str):
    for part in path.split("."):
        model = model[int(part)] if part.isdigit() else getattr(model, part)
    return model


def worker_torch(model_name: str, task: str, batch: int, repeats: int, files: dict) -> dict:
    import numpy as np
    import torch
    from captum.attr import GuidedBackprop, LayerGradCam

    torch.set_num_threads(1)
    model = _torch_model(model_name, files)
    # captum hooks modules; in-place ReLUs after the hooked layer would overwrite it
    for m in model.modules():
        if hasattr(m, "inplace"):
            m.inplace = False
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((batch, 3, SIZE, SIZE)))
    layer = _module(model, LAYERS[model_name])
    fns = {
        "gradcam": lambda: LayerGradCam(model, layer).attribute(x, target=TARGET, relu_attributions=True),
        "guided": lambda: GuidedBackprop(model).attribute(x, target=TARGET),
    }
    times = _time(fns[task], repeats)
    return {"times": times, "maxrss_mb": _peak_mb()}


def prepare(model_name: str, folder: str) -> dict:
    """Draw the weights and write them for both workers (run in its own process)."""
    files = {"npz": os.path.join(folder, f"{model_name}.npz"), "pt": os.path.join(folder, f"{model_name}.pt")}
    cmd = [sys.executable, __file__, "--prepare", model_name, "--folder", folder]
    subprocess.run(cmd, check=True)
    return files


def _prepare_worker(model_name: str, folder: str) -> None:
    import torch
    import torchvision

    import npcam

    torch.manual_seed(0)
    model = torchvision.models.get_model(model_name, weights=None).double().eval()
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g, dtype=torch.float64) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g, dtype=torch.float64) + 0.5)
    torch.save(model.state_dict(), os.path.join(folder, f"{model_name}.pt"))
    npcam.from_torch(model).save(os.path.join(folder, f"{model_name}.npz"))


def run(side: str, model_name: str, task: str, batch: int, repeats: int, files: dict) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, __file__, "--worker", side, "--models", model_name, "--tasks", task,
           "--batch", str(batch), "--repeats", str(repeats), "--files", json.dumps(files)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", choices=("npcam", "torch"))
    p.add_argument("--prepare")
    p.add_argument("--folder")
    p.add_argument("--files")
    p.add_argument("--models", default=",".join(LAYERS))
    p.add_argument("--tasks", default="gradcam,guided")
    p.add_argument("--batch", default="8")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    if args.prepare:
        _prepare_worker(args.prepare, args.folder)
        return
    if args.worker:
        fn = worker_npcam if args.worker == "npcam" else worker_torch
        print(json.dumps(fn(args.models, args.tasks, int(args.batch), args.repeats, json.loads(args.files))))
        return

    print(f"float64, 1 thread, {SIZE}x{SIZE}, target {TARGET}, median of {args.repeats} after a warm-up")
    print(f"{'model':<17}{'task':<9}{'batch':>6}{'npcam s':>9}{'torch s':>9}{'ratio':>7}"
          f"{'npcam MB':>10}{'torch MB':>10}{'ratio':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for model_name in args.models.split(","):
            files = prepare(model_name, tmp)
            for batch in (int(b) for b in args.batch.split(",")):
                for task in args.tasks.split(","):
                    res = {side: run(side, model_name, task, batch, args.repeats, files)
                           for side in ("npcam", "torch")}
                    med = {s: statistics.median(r["times"]) for s, r in res.items()}
                    mem = {s: r["maxrss_mb"] for s, r in res.items()}
                    print(f"{model_name:<17}{task:<9}{batch:>6}{med['npcam']:>9.2f}{med['torch']:>9.2f}"
                          f"{med['npcam'] / med['torch']:>7.2f}{mem['npcam']:>10.0f}{mem['torch']:>10.0f}"
                          f"{mem['npcam'] / mem['torch']:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
