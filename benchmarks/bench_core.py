"""Speed of npcam's core: forward and backward of a VGG-style network, float64.

Network: conv3×3-64 ×2, max-pool, conv3×3-128 ×2, max-pool, conv3×3-256 ×2, GAP,
Linear(256, 10), all convs padding 1, each followed by ReLU. Input: batch 8 (``--batch``),
3×224×224. Reports the median of ``--repeats`` (≥ 5) runs after one warm-up:

* the whole forward, the whole backward with parameter gradients (training) and without
  (explanations: input gradients only);
* the convolutions alone (timed per layer inside the same runs) and their achieved
  GFLOP/s, counting 2·N·F·C·kH·kW·H_out·W_out per forward convolution, the same for the
  input gradient and again for the weight gradient;
* numpy's own float64 matmul rate measured in the same process (a square product of the
  size of the largest convolution's matrices), and the convolutions' rate as a fraction
  of it.

Usage: ``python benchmarks/bench_core.py [--batch 8] [--size 224] [--repeats 5] [--threads N]``
(``--threads`` needs threadpoolctl). Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import npcam  # noqa: E402


def vgg_style(num_classes: int = 10, seed: int = 0) -> npcam.Sequential:
    rng = np.random.default_rng(seed)
    layers: list[npcam.Layer] = []
    c_in = 3
    for i, c_out in enumerate((64, 128, 256)):
        for _ in range(2):
            layers += [npcam.Conv2d(c_in, c_out, 3, padding=1, rng=rng), npcam.ReLU()]
            c_in = c_out
        if i < 2:
            layers.append(npcam.MaxPool2d(2))
    layers += [npcam.GlobalAvgPool2d(), npcam.Linear(256, num_classes, rng=rng)]
    return npcam.Sequential(*layers)


class _Timed:
    """Wraps every Conv2d's forward and backward to accumulate their time."""

    def __init__(self, model: npcam.Sequential) -> None:
        self.forward = 0.0
        self.backward = 0.0
        for _, leaf in model.named_layers():
            if isinstance(leaf, npcam.Conv2d):
                self._wrap(leaf)

    def _wrap(self, leaf: npcam.Conv2d) -> None:
        fwd, bwd = leaf._forward, leaf._backward

        def forward(x):
            t = time.perf_counter()
            out = fwd(x)
            self.forward += time.perf_counter() - t
            return out

        def backward(dout, cache, relu_rule, param_grads):
            t = time.perf_counter()
            out = bwd(dout, cache, relu_rule, param_grads)
            self.backward += time.perf_counter() - t
            return out

        leaf._forward, leaf._backward = forward, backward  # type: ignore[method-assign]

    def reset(self) -> None:
        self.forward = self.backward = 0.0


def conv_flops(model: npcam.Sequential) -> float:
    """Forward FLOPs of all convolutions of the last forward pass."""
    total = 0.0
    for name, leaf in model.named_layers():
        if isinstance(leaf, npcam.Conv2d):
            n, f, h, w = model.activations[name].shape
            kh, kw = leaf.kernel_size
            total += 2.0 * n * f * leaf.in_channels * kh * kw * h * w
    return total


def matmul_rate(m: int, k: int, n: int, repeats: int) -> float:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2.0 * m * k * n / statistics.median(times) / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()

    limit = nullcontext()
    if args.threads is not None:
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(args.threads)
    with limit:
        model = vgg_style()
        timer = _Timed(model)
        x = np.random.default_rng(1).standard_normal((args.batch, 3, args.size, args.size))
        seed = np.random.default_rng(2).standard_normal((args.batch, 10))

        rows = {k: [] for k in ("forward", "conv fwd", "backward+dW", "conv bwd+dW", "backward", "conv bwd")}
        for run in range(args.repeats + 1):
            timer.reset()
            t = time.perf_counter()
            model.forward(x)
            t_fwd = time.perf_counter() - t
            conv_fwd = timer.forward
            t = time.perf_counter()
            model.backward(seed, param_grads=True)
            t_bwd_w = time.perf_counter() - t
            conv_bwd_w = timer.backward
            timer.backward = 0.0
            t = time.perf_counter()
            model.backward(seed, param_grads=False)
            t_bwd = time.perf_counter() - t
            if run == 0:
                continue  # warm-up
            measured = (t_fwd, conv_fwd, t_bwd_w, conv_bwd_w, t_bwd, timer.backward)
            for key, value in zip(rows, measured, strict=True):
                rows[key].append(value)
        flops = conv_flops(model)
        # The largest convolution as one matrix product: (F, C·9) @ (C·9, H·W).
        rate = matmul_rate(256, 256 * 9, 56 * 56, args.repeats)

    work = {"conv fwd": flops, "conv bwd+dW": 2 * flops, "conv bwd": flops}
    print(f"npcam {npcam.__version__}, numpy {np.__version__}, batch {args.batch}, "
          f"3x{args.size}x{args.size}, float64, threads {args.threads or 'default'}")
    per_image = flops / args.batch / 1e9
    print(f"convolution FLOPs per forward: {flops / 1e9:.1f} GFLOP ({per_image:.2f} per image)")
    print(f"numpy float64 matmul (256x2304 @ 2304x3136): {rate:.1f} GFLOP/s")
    print(f"{'quantity':<14}{'median s':>10}{'min s':>9}{'GFLOP/s':>10}{'of matmul':>11}")
    for key, values in rows.items():
        med = statistics.median(values)
        if key in work:
            g = work[key] / statistics.median(values) / 1e9
            print(f"{key:<14}{med:>10.3f}{min(values):>9.3f}{g:>10.1f}{g / rate:>10.0%}")
        else:
            print(f"{key:<14}{med:>10.3f}{min(values):>9.3f}")


if __name__ == "__main__":
    main()
