"""Export a torch module to ONNX with either PyTorch exporter, as a user would.

:func:`export` calls ``torch.onnx.export`` with the exporters' defaults (static shapes,
BatchNorm folded, constants folded; dynamo with ``optimize=True`` and, in torch 2.14.1,
``external_data=True``: the weights go to ``<path>.data`` beside the model file), in eval
mode and at the module's own dtype (float64 or float32). The opset asked for is 17; the
exporter may give another one (torch 2.14.1's dynamo exporter builds at opset 18 and
converts down with onnx's version converter, keeping 18 when that fails), so
:func:`opset_of` reads what the file actually declares. If the export itself fails at 17,
it is retried at 18 ("opset 17 where it sticks, else 18").

torch (and, for ``dynamo``, onnxscript) must be importable; the test modules import them
first with ``pytest.importorskip``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

#: Opset asked for first, and the fallback if the exporter refuses it.
OPSET, FALLBACK_OPSET = 17, 18


def _dtype_of(module: Any) -> torch.dtype:
    for tensor in list(module.parameters()) + list(module.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.get_default_dtype()


@contextlib.contextmanager
def _eval(module: Any):
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, mode in modes:
            m.training = mode


def _export_once(module: Any, x: Any, path: Path, exporter: str, opset: int) -> None:
    kwargs: dict[str, Any] = {"opset_version": opset}
    if exporter == "legacy":
        kwargs["dynamo"] = False
    else:  # the default: dynamo=True, optimize=True, external_data=True
        kwargs["verbose"] = False
    sink = io.StringIO()  # the dynamo exporter prints its progress to stdout
    # and logs the version converter's failed 18 -> 17 conversion with its traceback
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR + 1)
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (x,), str(path), **kwargs)
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def export(module: Any, example_input: Any, path: str | os.PathLike, *,
           exporter: Literal["legacy", "dynamo"], opset: int = OPSET) -> Path:
    """Export ``module`` (eval mode, its own dtype) on ``example_input`` to ``path``.

    ``example_input`` is a torch tensor or a NumPy array; it is cast to the module's
    dtype. ``exporter="legacy"`` is ``torch.onnx.export(..., dynamo=False)`` (TorchScript),
    ``"dynamo"`` the default ``torch.onnx.export(...)`` (``torch.export`` + onnxscript,
    ``optimize=True``; the weights in ``<path>.data``). If the export raises at ``opset``
    17, it is retried at 18. Returns the model file's path; its opset is :func:`opset_of`.
    """
    if exporter not in ("legacy", "dynamo"):
        raise ValueError(f"exporter must be 'legacy' or 'dynamo', not {exporter!r}")
    path = Path(path)
    dtype = _dtype_of(module)
    x = example_input if isinstance(example_input, torch.Tensor) else torch.from_numpy(
        np.ascontiguousarray(example_input))
    x = x.to(dtype)
    with _eval(module):
        try:
            _export_once(module, x, path, exporter, opset)
        except Exception:
            if opset != OPSET:
                raise
            for stale in (path, Path(f"{path}.data")):
                stale.unlink(missing_ok=True)
            _export_once(module, x, path, exporter, FALLBACK_OPSET)
    return path


def opset_of(path: str | os.PathLike) -> int:
    """The default-domain opset the ONNX file at ``path`` declares (read without its
    external data)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def files_of(path: str | os.PathLike) -> list[Path]:
    """The model file and its external data files (``<path>.data`` and any other
    location the model's initializers name), those that exist."""
    import onnx

    path = Path(path)
    found = [path]
    model = onnx.load(str(path), load_external_data=False)
    for init in model.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location":
                p = path.parent / entry.value
                if p not in found:
                    found.append(p)
    return [p for p in found if p.exists()]


def remove(path: str | os.PathLike) -> None:
    """Delete the model file and its external data."""
    path = Path(path)
    if not path.exists():
        return
    for p in files_of(path):
        p.unlink(missing_ok=True)
    Path(f"{path}.data").unlink(missing_ok=True)
