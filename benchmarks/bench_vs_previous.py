"""This tree's npcam against an earlier release (default: 0.1.0) and torch + captum.

Runs ``bench_vs_torch.py``'s workers — each measurement a fresh process, numpy's BLAS and
torch at the same thread count — for the old tree (a ``git worktree`` of the release), the
new tree and torch, interleaved (old, new, torch, old, new, torch, ...) so that a change of
machine load hits all three alike; reports medians of ``--rounds`` processes (each timing
``--repeats`` calls after a warm-up) and the peak RSS of each side.

Usage (the crosscheck extra; make the worktree first)::

    git worktree add /tmp/npcam-0.1.0 c498a95
    python benchmarks/bench_vs_previous.py --old /tmp/npcam-0.1.0 --batch 8 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(script: Path, side: str, task: str, batch: int, threads: int, repeats: int, weights: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    # The worker puts its own tree first on sys.path; PYTHONPATH must not point elsewhere.
    env.pop("PYTHONPATH", None)
    cmd = [sys.executable, str(script), "--worker", side, "--tasks", task, "--batch", str(batch),
           "--threads", str(threads), "--repeats", str(repeats), "--weights", weights]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, cwd=script.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", required=True, help="the earlier release's tree (a git worktree)")
    p.add_argument("--tasks", default="gradcam,guided")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args()
    old_script = Path(args.old).resolve() / "benchmarks" / "bench_vs_torch.py"
    new_script = HERE / "bench_vs_torch.py"
    sys.path.insert(0, str(HERE.parent))
    sys.path.insert(0, str(HERE))
    from bench_core import vgg_style

    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "vgg.npz")
        vgg_style().save(weights)
        print(f"batch {args.batch}, {args.threads} thread(s), {args.rounds} interleaved rounds, "
              f"{args.repeats} timed call(s) per process; medians in s, peak RSS in MB")
        print(f"{'task':<8}{'old s':>8}{'new s':>8}{'torch s':>9}{'new/old':>9}{'old/torch':>10}"
              f"{'new/torch':>10}{'old MB':>8}{'new MB':>8}{'torch MB':>9}{'RSS new/old':>12}")
        for task in args.tasks.split(","):
            res: dict[str, list[dict]] = {"old": [], "new": [], "torch": []}
            sides = {
                "old": (old_script, "npcam"), "new": (new_script, "npcam"), "torch": (new_script, "torch"),
            }
            for _ in range(args.rounds):
                for name, (script, worker) in sides.items():
                    one = run(script, worker, task, args.batch, args.threads, args.repeats, weights)
                    res[name].append(one)
            med = {s: statistics.median(x for r in res[s] for x in r["times"]) for s in res}
            mem = {s: statistics.median(r["maxrss_mb"] for r in res[s]) for s in res}
            print(f"{task:<8}{med['old']:>8.3f}{med['new']:>8.3f}{med['torch']:>9.3f}"
                  f"{med['new'] / med['old']:>9.3f}{med['old'] / med['torch']:>10.3f}"
                  f"{med['new'] / med['torch']:>10.3f}{mem['old']:>8.0f}{mem['new']:>8.0f}"
                  f"{mem['torch']:>9.0f}{mem['new'] / mem['old']:>12.3f}", flush=True)


if __name__ == "__main__":
    main()
