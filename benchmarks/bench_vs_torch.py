"""npcam against PyTorch + captum on the same Grad-CAM work, float64 on the CPU.

The network is the VGG-style net of ``bench_core.py`` (conv3×3-64 ×2, max-pool,
conv3×3-128 ×2, max-pool, conv3×3-256 ×2, GAP, Linear(256, 10)), with the same random
weights in both: npcam draws them, saves them to an .npz, and the torch worker loads that
file into ``torch.nn.Sequential`` with ``load_state_dict``. The explained layer is the
last ReLU ("13"), the target the class 3 for every image.

Tasks: ``forward``; ``gradcam`` (``npcam.grad_cam`` vs captum ``LayerGradCam``);
``guided`` (``npcam.guided_backprop`` vs captum ``GuidedBackprop``).

Every measurement runs in a fresh process (so that ``ru_maxrss`` is that measurement's
peak memory, and torch never shares a process with npcam) with the thread count fixed by
``threadpoolctl`` (numpy's BLAS) or ``torch.set_num_threads``: one warm-up, then
``--repeats`` timed runs. At 2 threads, where timings on a shared 2-core machine swing,
``--rounds`` processes per side are interleaved (npcam, torch, npcam, ...) and the table
gives the minimum and the spread (max/min) as well as the median.

Usage (needs the ``crosscheck`` extra)::

    python benchmarks/bench_vs_torch.py                    # batch 1 and 8, threads 1 and 2
    python benchmarks/bench_vs_torch.py --batch 8 --threads 1 --tasks gradcam
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

LAYER = "13"
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


def worker_npcam(task: str, batch: int, threads: int, repeats: int, weights: str) -> dict:
    import numpy as np
    from bench_core import vgg_style
    from threadpoolctl import threadpool_limits

    import npcam

    with threadpool_limits(threads):
        model = vgg_style()
        npcam.load_weights(model, weights)
        x = np.random.default_rng(1).standard_normal((batch, 3, SIZE, SIZE))
        fns = {
            "forward": lambda: model.forward(x),
            "gradcam": lambda: npcam.grad_cam(model, x, target=TARGET, layer=LAYER),
            "guided": lambda: npcam.guided_backprop(model, x, target=TARGET),
        }
        times = _time(fns[task], repeats)
    return {"times": times, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def worker_torch(task: str, batch: int, threads: int, repeats: int, weights: str) -> dict:
    import numpy as np
    import torch
    from captum.attr import GuidedBackprop, LayerGradCam

    torch.set_num_threads(threads)
    layers: list[torch.nn.Module] = []
    c_in = 3
    for i, c_out in enumerate((64, 128, 256)):
        for _ in range(2):
            layers += [torch.nn.Conv2d(c_in, c_out, 3, padding=1), torch.nn.ReLU()]
            c_in = c_out
        if i < 2:
            layers.append(torch.nn.MaxPool2d(2))
    layers += [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(256, 10)]
    model = torch.nn.Sequential(*layers).double().eval()
    # npcam's GlobalAvgPool2d is one layer where torch has two, so names after it shift:
    # npcam "15" (Linear) is torch "16".
    with np.load(weights, allow_pickle=False) as data:
        state = {k.replace("15.", "16."): torch.from_numpy(data[k]) for k in data.files if "." in k}
    model.load_state_dict(state)
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((batch, 3, SIZE, SIZE)))

    def forward():
        with torch.no_grad():
            model(x)

    fns = {
        "forward": forward,
        "gradcam": lambda: LayerGradCam(model, model[int(LAYER)]).attribute(
            x, target=TARGET, relu_attributions=True
        ),
        "guided": lambda: GuidedBackprop(model).attribute(x, target=TARGET),
    }
    times = _time(fns[task], repeats)
    return {"times": times, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run(side: str, task: str, batch: int, threads: int, repeats: int, weights: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    cmd = [sys.executable, __file__, "--worker", side, "--tasks", task, "--batch", str(batch),
           "--threads", str(threads), "--repeats", str(repeats), "--weights", weights]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", choices=("npcam", "torch"))
    p.add_argument("--tasks", default="forward,gradcam,guided")
    p.add_argument("--batch", default="1,8")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rounds", type=int, default=5, help="interleaved processes per side at >1 thread")
    p.add_argument("--weights")
    args = p.parse_args()

    if args.worker:
        fn = worker_npcam if args.worker == "npcam" else worker_torch
        result = fn(args.tasks, int(args.batch), int(args.threads), args.repeats, args.weights)
        print(json.dumps(result))
        return

    import numpy as np
    from bench_core import vgg_style

    import npcam

    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "vgg.npz")
        vgg_style().save(weights)
        print(f"npcam {npcam.__version__}, numpy {np.__version__}; VGG-style net, 3x{SIZE}x{SIZE}, "
              f"float64, layer {LAYER}, target {TARGET}")
        header = (f"{'task':<9}{'batch':>6}{'thr':>4}{'npcam s':>9}{'torch s':>9}{'ratio':>7}"
                  f"{'np min':>8}{'t min':>8}{'np spread':>10}{'t spread':>9}{'npcam MB':>9}{'torch MB':>9}")
        print(header)
        for threads in (int(t) for t in args.threads.split(",")):
            for batch in (int(b) for b in args.batch.split(",")):
                for task in args.tasks.split(","):
                    rounds, repeats = (1, args.repeats) if threads == 1 else (args.rounds, 1)
                    res = {"npcam": [], "torch": []}
                    for _ in range(rounds):
                        for side in ("npcam", "torch"):
                            res[side].append(run(side, task, batch, threads, repeats, weights))
                    t = {s: [x for r in res[s] for x in r["times"]] for s in res}
                    mem = {s: max(r["maxrss_mb"] for r in res[s]) for s in res}
                    med = {s: statistics.median(t[s]) for s in t}
                    spread = {s: max(t[s]) / min(t[s]) for s in t}
                    print(f"{task:<9}{batch:>6}{threads:>4}{med['npcam']:>9.3f}{med['torch']:>9.3f}"
                          f"{med['npcam'] / med['torch']:>7.2f}{min(t['npcam']):>8.3f}{min(t['torch']):>8.3f}"
                          f"{spread['npcam']:>10.2f}{spread['torch']:>9.2f}"
                          f"{mem['npcam']:>9.0f}{mem['torch']:>9.0f}", flush=True)


if __name__ == "__main__":
    main()
