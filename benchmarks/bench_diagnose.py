"""Time of one diagnosis over the whole hypothesis space, float64.

The issue's bar: a diagnosis of a batch of 4 at 64×64 takes under 10 s on 2 cores, on
zoo ``vgg`` and on a ResNet-18 Graph from ``from_torch`` (torchvision, random weights).
Three arrays per model, each a diagnosis that ends differently:

* ``explained``: the map × Z (α summed), found among the single hypotheses;
* ``unexplained, cam``: the map plus 1e-3 of uniform noise — no single hypothesis fits, so
  every pair is tried too (the worst case for ``quantity="cam"``);
* ``unexplained, cam_normalized``: the same for the normalised map (more hypotheses: the
  resize, normalisation and ε ones).

The batch is ``npcam.verify.revealing_batch`` (its own time is printed apart: it is not
part of a diagnosis). Median of ``--repeats`` runs after one warm-up.

Usage: ``python benchmarks/bench_diagnose.py [--repeats 3] [--threads N]`` (ResNet-18
needs the crosscheck extra; ``--threads`` needs threadpoolctl). Printed, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import npcam  # noqa: E402


def _time(fn, repeats: int):
    fn()
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _models():
    yield "zoo vgg", npcam.zoo.pretrained("vgg"), None
    try:
        import torch
        import torchvision
    except ImportError:
        print("ResNet-18: skipped (needs the crosscheck extra: torch, torchvision)")
        return
    torch.manual_seed(0)
    tnet = torchvision.models.resnet18(weights=None, num_classes=10).double().eval()
    yield "resnet18 Graph", npcam.from_torch(tnet), "layer4"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    limit = nullcontext()
    if args.threads is not None:
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(args.threads)
    warnings.simplefilter("ignore")
    with limit:
        for name, model, layer in _models():
            t0 = time.perf_counter()
            x = npcam.verify.revealing_batch(model, (3, 64, 64), n=4, layer=layer)
            print(f"{name}: revealing_batch {time.perf_counter() - t0:.2f} s")
            r = npcam.grad_cam(model, x, layer=layer)
            z = r.cam.shape[1] * r.cam.shape[2]
            noise = 1e-3 * np.random.default_rng(0).random(r.cam.shape) * np.abs(r.cam).max()
            up = npcam.normalize(npcam.upsample(r.cam, (64, 64)))
            cases = [
                ("explained (alpha-sum)", r.cam * z, "cam"),
                ("unexplained, cam", r.cam + noise, "cam"),
                ("unexplained, cam_normalized", up + 1e-3 * up**2, "cam_normalized"),
            ]
            for label, arr, q in cases:
                def run(arr=arr, q=q, model=model, x=x, layer=layer):
                    return npcam.verify.diagnose(arr, model, x, layer=layer, quantity=q)

                seconds, d = _time(run, args.repeats)
                top = d.hypotheses[0].name if d.hypotheses else "-"
                print(f"  {label:30s} {seconds:6.2f} s  verdict {d.verdict:11s} tried {d.tried:4d}  "
                      f"top {top}")


if __name__ == "__main__":
    main()
