"""Reading and writing ``.npz`` files: weights, models (weights + architecture JSON)."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from .._validate import describe
from .config import model_from_config
from .sequential import IncompatibleKeys, Sequential

__all__ = ["ARCHITECTURE_KEY", "load_model", "load_weights", "save_model"]

# Key under which ``save`` stores the architecture (a JSON string) next to the weights.
ARCHITECTURE_KEY = "__architecture__"


def save_model(model: Sequential, path: str | os.PathLike) -> str:
    """Write the weights and the architecture (as JSON text) to an ``.npz`` file;
    returns the path written (``.npz`` is appended when missing, as NumPy does)."""
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    arrays = model.state_dict()
    arrays[ARCHITECTURE_KEY] = np.array(json.dumps(model.config()))
    np.savez(path, **arrays)
    return path


def _read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"path {path!r} does not exist.")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"path {path!r} is not a readable .npz weights file: {exc}") from exc
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"path {path!r} is not a .npz weights file (it holds a single array).")
    with data:
        try:
            return {k: data[k] for k in data.files}
        except ValueError as exc:  # NumPy refuses object arrays without pickle
            raise ValueError(
                f"path {path!r} holds pickled objects, which npcam never loads: {exc}"
            ) from exc
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"path {path!r} is not a readable .npz weights file: {exc}") from exc


def load_weights(model: Sequential, path: str | os.PathLike, strict: bool = True) -> IncompatibleKeys:
    """Load an ``.npz`` written by :meth:`Sequential.save` (or ``numpy.savez`` of a
    state_dict) into ``model``; never unpickles."""
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be an npcam.Sequential, got {describe(model)}.")
    return model.load_state_dict(_read_npz(path), strict=strict)


def load_model(path: str | os.PathLike) -> Sequential:
    """Build the model recorded in an ``.npz`` written by :meth:`Sequential.save`."""
    arrays = _read_npz(path)
    if ARCHITECTURE_KEY not in arrays:
        raise ValueError(f"path {os.fspath(path)!r} records no architecture ({ARCHITECTURE_KEY}).")
    try:
        config = json.loads(str(arrays[ARCHITECTURE_KEY]))
    except json.JSONDecodeError as exc:
        raise ValueError(f"path {os.fspath(path)!r} has an unreadable architecture: {exc}") from exc
    model = model_from_config(config)
    if not isinstance(model, Sequential):
        raise ValueError(f"path {os.fspath(path)!r} must describe a Sequential model.")
    model.load_state_dict(arrays)
    return model


