"""Cost of explaining every class at once: ``grad_cam(..., target="all")`` against a
single-class call, on the VGG-style benchmark network (10 classes, layer "13") and on the
shipped models (default layer, 4 classes).

``target="all"`` runs one forward pass and one backward pass through the layers after
``layer`` with the N·C one-hot seeds stacked along the batch axis, so its extra cost is
the head only. Prints median seconds of ``--repeats`` runs after a warm-up and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_core import vgg_style  # noqa: E402

import npcam  # noqa: E402


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def explainer(model, x, target, layer):
    return lambda: npcam.grad_cam(model, x, target=target, layer=layer)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()

    cases = [("VGG-style 3x224x224", vgg_style(), "13",
              np.random.default_rng(1).standard_normal((args.batch, 3, 224, 224)))]
    scenes = npcam.evaluation.scenes.make_scenes(64, seed=3).images
    for name in npcam.zoo.NAMES:
        cases.append((f"zoo '{name}' 3x64x64 (batch 64)", npcam.zoo.pretrained(name), None,
                      npcam.zoo.standardize(name, scenes)))
    print(f"{'network':<34}{'one class s':>12}{'all classes s':>15}{'classes':>9}{'ratio':>7}")
    for label, model, layer, x in cases:
        one = median_time(explainer(model, x, 0, layer), args.repeats)
        every = median_time(explainer(model, x, "all", layer), args.repeats)
        classes = model.forward(x[:1]).shape[1]
        print(f"{label:<34}{one:>12.4f}{every:>15.4f}{classes:>9}{every / one:>7.2f}")


if __name__ == "__main__":
    main()
