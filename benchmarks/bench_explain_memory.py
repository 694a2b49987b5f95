"""Peak memory and time of ``npcam explain`` on a 7000×7000 PNG (issue 10 § 4.5, finding C40).

Builds a 49 Mpx RGB PNG (just under ``MAX_IMAGE_PIXELS`` = 50 Mpx) of smooth gradients,
about 160 kB on disk, then runs ``npcam explain IMAGE --model gap --out o.png`` in a fresh
process per run under ``/usr/bin/time -f "%e %M"`` and reports the median wall time and the
median peak RSS, and the size of the overlay written. npcam 0.1.0 peaked at 6.0 GB and took
43 s (35 s on the machine of the issue-10 note); the bound is 1 GB, and the overlay's longer
side must be at most 2048 px.

``--ulimit-kb`` repeats the run under ``ulimit -v`` (C41: 0.1.0 died with a 16-line
``_ArrayMemoryError`` traceback under 3 GiB = 3145728 KB). ``--tree DIR`` runs the ``npcam``
found in another source tree (e.g. a copy of 0.1.0) for a before/after comparison.

Usage: ``python benchmarks/bench_explain_memory.py [--side 7000] [--repeats 3]
[--ulimit-kb 3145728] [--tree DIR] [--keep DIR]``. Numbers are printed and checked against
the bounds (exit 1 when a bound fails), never part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TIME = "/usr/bin/time"
RSS_BOUND_KB = 1_000_000  # 1 GB
MAX_SIDE = 2048


def make_image(path: Path, side: int) -> None:
    """A smooth side×side RGB gradient: red along x, green along y, blue flat (compresses well)."""
    ramp = (np.arange(side, dtype=np.int64) * 255 // max(1, side - 1)).astype(np.uint8)
    pixels = np.empty((side, side, 3), dtype=np.uint8)
    pixels[..., 0] = ramp[None, :]
    pixels[..., 1] = ramp[:, None]
    pixels[..., 2] = 128
    Image.fromarray(pixels).save(path)


def run_once(image: Path, out: Path, tree: Path, ulimit_kb: int | None) -> tuple[int, float, int, str]:
    """(exit code, seconds, peak RSS in KB, stderr) of one ``npcam explain`` in a fresh process."""
    code = "import sys; from npcam.cli import main; sys.exit(main())"
    cmd = [TIME, "-f", "%e %M", sys.executable, "-c", code, "explain", str(image), "--model", "gap",
           "--out", str(out)]
    if ulimit_kb is not None:
        cmd = ["/bin/sh", "-c", f'ulimit -v {int(ulimit_kb)} && exec "$@"', "sh", *cmd]
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    # cwd: the image's folder, so that ``-c``'s sys.path[0] (the cwd) cannot shadow ``tree``
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=image.parent, check=False)
    lines = proc.stderr.strip().splitlines()
    seconds, rss = lines[-1].split()[-2:]
    return proc.returncode, float(seconds), int(rss), "\n".join(lines[:-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=7000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ulimit-kb", type=int, default=None)
    parser.add_argument("--tree", type=Path, default=ROOT, help="source tree whose npcam to run")
    parser.add_argument("--keep", type=Path, default=None, help="folder to keep the image and outputs in")
    args = parser.parse_args()
    if not Path(TIME).exists():
        print(f"{TIME} is needed (GNU time) to measure the peak RSS.", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="npcam-bench-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    try:
        image = work / f"big_{args.side}.png"
        if not image.exists():
            make_image(image, args.side)
        print(f"image: {image} ({args.side}x{args.side}, {image.stat().st_size / 1e3:.0f} kB); "
              f"tree: {args.tree}; ulimit -v: {args.ulimit_kb or 'none'}")
        results = []
        for i in range(args.repeats):
            out = work / f"overlay_{i}.png"
            rc, seconds, rss, err = run_once(image, out, args.tree, args.ulimit_kb)
            size = None
            if rc == 0:
                with Image.open(out) as im:
                    size = im.size
            print(f"  run {i}: exit {rc}, {seconds:.2f} s, peak RSS {rss / 1e3:.0f} MB, overlay {size}")
            if rc != 0:
                print("    " + err.replace("\n", "\n    "))
            results.append((rc, seconds, rss, size))
        med_s = statistics.median(r[1] for r in results)
        med_rss = statistics.median(r[2] for r in results)
        print(f"median: {med_s:.2f} s, peak RSS {med_rss / 1e3:.0f} MB ({med_rss} KB)")
        ok = all(r[0] == 0 and r[3] is not None and max(r[3]) <= MAX_SIDE for r in results)
        ok = ok and med_rss < RSS_BOUND_KB
        print("bounds (exit 0, overlay side <= 2048, peak RSS < 1 GB):", "met" if ok else "NOT met")
        return 0 if ok else 1
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
