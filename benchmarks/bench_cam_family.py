"""Cost per image of every explanation method on the shipped models, float64.

For each model of the zoo (``gap``, ``vgg``; 64×64 inputs, target layer ``features.9``:
64 channels of 8×8) and each method of :data:`npcam.METHODS`, the median over
``--repeats`` runs (after one warm-up) of one call on a batch of ``--batch`` scenes,
divided by the batch: seconds per image. The many-pass methods say how many passes they
run per image: Score-CAM one forward pass per channel (64), SS-CAM ``num_samples`` × 64,
IS-CAM ``num_samples`` × 64, Ablation-CAM one pass of the layers after the target layer
per channel, SmoothGrad-CAM++ one forward and one backward pass per sample. The sampled
methods run with their defaults (SS-CAM 35, IS-CAM 10, SmoothGrad-CAM++ 20 samples) and
with ``num_samples=8`` (the evaluation tables' setting). Grad-CAM's time is the unit of
the last column.

Usage: ``python benchmarks/bench_cam_family.py [--batch 4] [--repeats 3] [--threads N]``
(``--threads`` needs threadpoolctl). Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import npcam  # noqa: E402
from npcam.evaluation.scenes import make_scenes  # noqa: E402

SAMPLED = {"ss-cam", "is-cam", "smooth-grad-cam++"}


def _time(fn, repeats: int, *args, **kwargs) -> float:
    """Median seconds of ``fn(*args, **kwargs)`` over ``repeats`` runs after a warm-up."""
    fn(*args, **kwargs)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args, **kwargs)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--methods", default=None, help="comma-separated method names (default: all)")
    args = p.parse_args(argv)
    limit = nullcontext()
    if args.threads is not None:
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(args.threads)
    names = tuple(args.methods.split(",")) if args.methods else tuple(npcam.METHODS)
    scenes = make_scenes(args.batch, seed=5, objects=1)
    with limit:
        for model_name in npcam.zoo.NAMES:
            model = npcam.zoo.pretrained(model_name)
            x = npcam.zoo.standardize(model_name, scenes.images)
            t = scenes.labels
            print(f"\n{model_name} (batch {args.batch}, 64×64, float64): seconds per image")
            print("| method | options | s / image | × Grad-CAM |")
            print("| --- | --- | ---: | ---: |")
            unit = _time(npcam.grad_cam, args.repeats, model, x, t) / args.batch
            for name in names:
                method = npcam.METHODS[name]
                if name == "cam" and model_name != "gap":
                    continue
                variants: list[dict] = [{}]
                if name in SAMPLED:
                    variants.append({"num_samples": 8})
                for opts in variants:
                    per = _time(method.function, args.repeats, model, x, t, **opts) / args.batch
                    shown = ", ".join(f"{k}={v}" for k, v in opts.items()) or "defaults"
                    print(f"| {name} | {shown} | {per:.4f} | {per / unit:.1f} |")


if __name__ == "__main__":
    main()
