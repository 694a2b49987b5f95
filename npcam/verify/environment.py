"""``show_versions()``: the software and hardware that produced a result.

float64 results agree across machines only to about 1e-13 of their scale (BLAS blocking
and vector width change the last bits), so a report of a comparison — and every set of
golden vectors — records where it was computed: package versions, the BLAS library and
its thread count, the CPU. Nothing here imports torch (optional packages are looked up
in the installed metadata only), so it is cheap to call.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import os
import platform
import sys
from typing import Any

import numpy as np

from .._version import __version__

__all__ = ["format_versions", "show_versions"]

#: Optional packages whose installed version is reported when present.
OPTIONAL_PACKAGES = ("torch", "captum", "threadpoolctl", "hypothesis", "matplotlib")


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str | None:
    """The CPU model from ``/proc/cpuinfo`` (Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def _numpy_blas() -> dict[str, Any] | None:
    """BLAS as NumPy was built with it: ``numpy.show_config(mode="dicts")`` (NumPy ≥ 1.26)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            config: Any = np.show_config(mode="dicts")
    except Exception:  # older NumPy: no mode argument
        return None
    if not isinstance(config, dict):
        return None
    blas = config.get("Build Dependencies", {}).get("blas")
    if not isinstance(blas, dict):
        return None
    keys = ("name", "version", "openblas configuration")
    return {k: str(blas[k]) for k in keys if k in blas}


def _threadpools() -> list[dict[str, Any]] | None:
    """The BLAS/OpenMP libraries loaded in this process and their thread counts
    (``threadpoolctl.threadpool_info()``), when threadpoolctl is installed."""
    try:
        import threadpoolctl  # type: ignore[import-untyped]
    except ImportError:
        return None
    keys = ("user_api", "internal_api", "version", "num_threads", "threading_layer", "architecture")
    return [{k: info[k] for k in keys if k in info} for info in threadpoolctl.threadpool_info()]


def show_versions() -> dict[str, Any]:
    """A JSON-able description of the environment.

    Keys: ``npcam``, ``numpy``, ``scipy``, ``pillow``, ``python``, ``platform``,
    ``machine``, ``cpu`` (the model name, from ``/proc/cpuinfo`` when available),
    ``cpu_count``, ``blas`` (NumPy's build information), ``threadpools`` (from
    threadpoolctl when installed: each loaded BLAS/OpenMP library with its thread count),
    ``blas_threads`` (the first BLAS pool's thread count, or None when unknown), and
    ``optional`` (installed versions of torch, captum, … or None). ``print(format_versions())``
    shows it as text.
    """
    pools = _threadpools()
    blas_threads = next(
        (p.get("num_threads") for p in pools or [] if p.get("user_api") == "blas"), None
    )
    return {
        "npcam": __version__,
        "numpy": np.__version__,
        "scipy": _dist_version("scipy"),
        "pillow": _dist_version("pillow") or _dist_version("Pillow"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "blas": _numpy_blas(),
        "threadpools": pools,
        "blas_threads": blas_threads,
        "optional": {name: _dist_version(name) for name in OPTIONAL_PACKAGES},
    }


def format_versions(info: dict[str, Any] | None = None) -> str:
    """``show_versions()`` (or a stored copy of it, e.g. from golden vectors' index.json)
    as aligned ``key: value`` lines."""
    info = show_versions() if info is None else info
    lines = []
    for key, value in info.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, list):
            value = "; ".join(", ".join(f"{k}={v}" for k, v in d.items()) for d in value) or "none"
        lines.append(f"{key:>13}: {value}")
    return "\n".join(lines)
