"""The one reader and the one writer of npcam's ``.npz`` / ``.npy`` files and JSON texts.

Every file npcam reads (weights, models, zoo files, golden vectors, the array given to
``npcam compare``, ``index.json``) goes through this module, and every ``.npz`` it writes
too. The reader treats a file as hostile until checked:

1. the path argument's type, the file's existence and its size on disk;
2. the zip directory: every member's name and declared size (``ZipInfo.file_size``) —
   their total must stay within ``max_bytes``, so a deflate bomb is refused before any
   byte is inflated;
3. every member's ``.npy`` header (a few hundred bytes): object dtypes are refused
   (nothing is ever unpickled), the bytes the header promises (shape × itemsize) must
   fit ``max_bytes`` and equal what the member holds (else it is reported truncated or
   padded);
4. the caller's expectations — the names, shapes and dtypes of a model's state, or only
   the total-bytes cap — and only then the data, in bounded chunks.

Every failure is a ``ValueError`` naming the file and what is wrong (``TypeError`` for a
path argument that is not a path, ``FileNotFoundError`` for a missing file); no
``zipfile.BadZipFile``, ``EOFError``, ``MemoryError`` or ``RecursionError`` escapes, and
NumPy's advice to load pickles is never passed on.

The writer (:func:`write_npz`) writes uncompressed ``.npz`` files with fixed timestamps
(the same arrays always give the same bytes) atomically: to a temporary file in the
target's directory that replaces the target only once complete
(:func:`npcam._files.atomic_write`), so concurrent writers leave one whole file and a
failed write leaves the old file as it was.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._files import atomic_write
from .._validate import MAX_MODEL_PARAMETERS, MAX_NESTING, MAX_NODES, describe
from .config import ConfigPlan, plan_config
from .sequential import IncompatibleKeys, Sequential

__all__ = [
    "ARCHITECTURE_KEY",
    "MAX_FILE_BYTES",
    "MAX_JSON_CHARS",
    "MAX_JSON_DEPTH",
    "MAX_JSON_INT_DIGITS",
    "MAX_MEMBERS",
    "ArrayHeader",
    "NpzArchive",
    "load_model",
    "load_weights",
    "parse_json",
    "read_json",
    "read_npy",
    "read_npz",
    "save_model",
    "write_npz",
]

# Key under which ``save`` stores the architecture (a JSON string) next to the weights.
ARCHITECTURE_KEY = "__architecture__"

# ---------------------------------------------------------------------------- bounds
#: Bytes of one file npcam reads, on disk and inflated (the sum of its members' sizes):
#: room for a model of ``MAX_MODEL_PARAMETERS`` float64 parameters plus 1 GiB (about
#: 17.1 GB). Every reader takes ``max_bytes`` to lower it.
MAX_FILE_BYTES = 8 * MAX_MODEL_PARAMETERS + 2**30
#: Members of one ``.npz`` file (a model of ``MAX_NODES`` layers holds at most 5 arrays
#: per layer, plus a few descriptive ones).
MAX_MEMBERS = 5 * MAX_NODES + 16
#: Characters of one JSON text (an architecture, metadata, ``index.json``): 64 Mi.
MAX_JSON_CHARS = 64 * 2**20
#: Nesting of one JSON text: an architecture nests 3 JSON levels per container level
#: (object → children list → [name, config] pair), so ``4 * MAX_NESTING`` (256) admits
#: every architecture within ``MAX_NESTING`` and stays far below Python's recursion limit.
MAX_JSON_DEPTH = 4 * MAX_NESTING
#: Digits of one JSON integer (Python refuses more than 4300; npcam's fields need < 20).
MAX_JSON_INT_DIGITS = 30

_READ_CHUNK = 16 * 2**20  # bytes per read: the reader never holds more than this twice
_MAX_HEADER = 10000  # numpy's own default limit on a .npy header
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK"
_INTEGER_KEYS = ("num_batches_tracked",)  # state_dict entries that are integer scalars


class _Refused(ValueError):
    """A check of this module failed (its message is final: never wrapped again)."""


def _check_path(path: Any, argument: str) -> str:
    if isinstance(path, bytes):
        return os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{argument} must be a file path (str or os.PathLike), got {describe(path)}.")
    text = os.fspath(path)
    if not isinstance(text, str):
        text = os.fsdecode(text)
    return text


def _check_max_bytes(max_bytes: Any) -> int:
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)):
        raise TypeError(f"max_bytes must be an int, got {describe(max_bytes)}.")
    if not 0 < max_bytes <= MAX_FILE_BYTES:
        raise ValueError(f"max_bytes must be in [1, MAX_FILE_BYTES = {MAX_FILE_BYTES}], got {max_bytes}.")
    return int(max_bytes)


def _check_file(path: str, label: str, max_bytes: int) -> int:
    """Existence, kind and size on disk; returns the size."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{label} does not exist.")
    if os.path.isdir(path):
        raise _Refused(f"{label} is a directory, not a file.")
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise _Refused(f"{label} cannot be read: {exc}") from exc
    if size > max_bytes:
        raise _Refused(f"{label} has {size} bytes, more than max_bytes = {max_bytes}.")
    return size


# ------------------------------------------------------------------------ .npy headers
@dataclass(frozen=True)
class ArrayHeader:
    """What a ``.npy`` header promises, read before any of the data."""

    key: str  #: the array's name (the member name without ``.npy``)
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int  #: bytes of magic + header before the data
    nbytes: int  #: shape × itemsize

    @property
    def size(self) -> int:
        return math.prod(self.shape)


def _read_header(fh: Any, key: str, what: str, max_bytes: int) -> ArrayHeader:
    """Parse the magic and header at the start of ``fh``; check the dtype and the size."""
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh, max_header_size=_MAX_HEADER)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh, max_header_size=_MAX_HEADER)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
        offset = fh.tell()
    except (ValueError, EOFError, OSError, SyntaxError, struct.error, zipfile.BadZipFile, zlib.error) as exc:
        # numpy's words here ("the magic string is not correct", ...) say nothing of pickles
        raise _Refused(f"{what} is not a .npy array: {exc}") from exc
    if dtype.hasobject:
        raise _Refused(
            f"{what} holds pickled objects (dtype {dtype}), which npcam never unpickles; "
            "save plain numeric arrays."
        )
    if dtype.names is not None or dtype.kind not in "biufcUS":
        raise _Refused(f"{what} has dtype {dtype}; npcam reads only plain numbers and strings.")
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise _Refused(f"{what} has an invalid shape {shape!r}.")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > max_bytes:
        raise _Refused(
            f"{what} claims shape {tuple(shape)} of {dtype} ({nbytes} bytes), more than "
            f"max_bytes = {max_bytes}."
        )
    return ArrayHeader(key, tuple(shape), dtype, bool(fortran), int(offset), int(nbytes))


def _read_data(fh: Any, header: ArrayHeader, what: str) -> np.ndarray:
    """The array after its header, read in bounded chunks; a short read is 'truncated'."""
    flat = np.empty(header.size, dtype=header.dtype)
    raw = flat.view(np.uint8) if header.nbytes else np.empty(0, np.uint8)
    done = 0
    while done < header.nbytes:
        chunk = fh.read(min(_READ_CHUNK, header.nbytes - done))
        if not chunk:
            raise _Refused(
                f"{what} is truncated: its header promises {header.nbytes} bytes of data, "
                f"the file holds {done}."
            )
        raw[done : done + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
        done += len(chunk)
    if header.fortran_order:
        return flat.reshape(header.shape[::-1]).transpose()
    return flat.reshape(header.shape)


_FAILURES = (
    OSError, EOFError, ValueError, RuntimeError, NotImplementedError, MemoryError, RecursionError,
    OverflowError, struct.error, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error,
)  # fmt: skip


# ---------------------------------------------------------------------------- archives
class NpzArchive:
    """An ``.npz`` file opened for checked reading (use as a context manager).

    Opening reads the zip directory and every member's ``.npy`` header, nothing more:
    ``headers`` maps each array name to its :class:`ArrayHeader`. :meth:`read` then
    reads one array, :meth:`read_json` one JSON string.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    max_bytes : int, optional
        Cap on the file's size and on the total its members inflate to (default
        :data:`MAX_FILE_BYTES`).
    argument : str, optional
        Name of the caller's path argument, used in messages (``TypeError`` names it).
    label : str, optional
        How messages refer to the file (default ``"<argument> '<path>'"``).

    Raises
    ------
    TypeError
        ``path`` is not a path.
    FileNotFoundError
        The file does not exist.
    ValueError
        Anything else: not a zip, too large, a member that is not a ``.npy`` array, object
        dtypes, a header whose size disagrees with the member, a corrupt member.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        max_bytes: int = MAX_FILE_BYTES,
        argument: str = "path",
        label: str | None = None,
    ) -> None:
        self.path = _check_path(path, argument)
        self.max_bytes = _check_max_bytes(max_bytes)
        self.label = label if label is not None else f"{argument} {self.path!r}"
        self._zip: zipfile.ZipFile | None = None
        _check_file(self.path, self.label, self.max_bytes)
        try:
            self._open()
        except _Refused:
            self.close()
            raise
        except _FAILURES as exc:
            self.close()
            raise _Refused(f"{self.label} is not a readable .npz file: {_reason(exc)}") from exc

    def _open(self) -> None:
        with open(self.path, "rb") as fh:
            start = fh.read(len(_NPY_MAGIC))
        if start == _NPY_MAGIC:
            raise _Refused(f"{self.label} is a single .npy array, not an .npz file of named arrays.")
        if not start.startswith(_ZIP_MAGIC):
            raise _Refused(f"{self.label} is not an .npz file (not a zip archive).")
        self._zip = zipfile.ZipFile(self.path)
        infos = self._zip.infolist()
        if len(infos) > MAX_MEMBERS:
            raise _Refused(f"{self.label} has {len(infos)} members, more than MAX_MEMBERS = {MAX_MEMBERS}.")
        self._infos: dict[str, zipfile.ZipInfo] = {}
        total = 0
        for info in infos:
            if not info.filename.endswith(".npy"):
                raise _Refused(f"{self.label} holds {info.filename!r}, which is not a .npy array.")
            key = info.filename[: -len(".npy")]
            if key in self._infos:
                raise _Refused(f"{self.label} holds the array {key!r} twice.")
            if info.flag_bits & 0x1:
                raise _Refused(f"{self.label}: array {key!r} is encrypted.")
            self._infos[key] = info
            total += info.file_size
        if total > self.max_bytes:  # a deflate bomb stops here, before inflating anything
            raise _Refused(
                f"{self.label} inflates to {total} bytes, more than max_bytes = {self.max_bytes}."
            )
        self.headers: dict[str, ArrayHeader] = {}
        for key, info in self._infos.items():
            what = f"{self.label}: array {key!r}"
            with self._zip.open(info) as fh:
                header = _read_header(fh, key, what, self.max_bytes)
            held = info.file_size - header.offset
            if held < header.nbytes:
                raise _Refused(
                    f"{what} is truncated: its header promises {header.nbytes} bytes of data "
                    f"(shape {header.shape}, {header.dtype}), the file holds {max(held, 0)}."
                )
            if held > header.nbytes:
                raise _Refused(
                    f"{what} holds {held} bytes of data, more than the {header.nbytes} its header "
                    f"promises (shape {header.shape}, {header.dtype})."
                )
            self.headers[key] = header

    # -- reading -------------------------------------------------------------------------
    def read(self, key: str) -> np.ndarray:
        """The array ``key`` (whose header was checked when the file was opened)."""
        if key not in self.headers:
            raise _Refused(f"{self.label} holds no array {key!r}.")
        header, what = self.headers[key], f"{self.label}: array {key!r}"
        assert self._zip is not None
        try:
            with self._zip.open(self._infos[key]) as fh:
                fh.read(header.offset)
                return _read_data(fh, header, what)
        except _Refused:
            raise
        except _FAILURES as exc:
            raise _Refused(f"{what} cannot be read (the file is corrupt): {_reason(exc)}") from exc

    def read_json(self, key: str, *, max_chars: int = MAX_JSON_CHARS) -> Any:
        """The JSON text stored as a 0-d string under ``key``, parsed with :func:`parse_json`."""
        header = self.headers.get(key)
        if header is None or header.dtype.kind != "U" or header.shape != ():
            raise _Refused(f"{self.label} must hold a JSON string under {key!r}.")
        if header.dtype.itemsize // 4 > max_chars:
            raise _Refused(
                f"{self.label}: the JSON under {key!r} has {header.dtype.itemsize // 4} characters, "
                f"more than {max_chars}."
            )
        return parse_json(str(self.read(key)[()]), f"{self.label}: the JSON under {key!r}")

    def check_state(
        self,
        expected: Mapping[str, tuple[int, ...]],
        *,
        strict: bool = True,
        what: str = "the model",
    ) -> tuple[list[str], list[str]]:
        """Compare the headers with a model's state: names, shapes and dtypes.

        Keys of the form ``__name__`` describe the file and are ignored. Returns
        ``(missing, unexpected)``; with ``strict`` either being non-empty is an error.
        Shapes must be equal; weights real numbers, ``num_batches_tracked`` integers.
        """
        given = [k for k in self.headers if not (k.startswith("__") and k.endswith("__"))]
        missing = [k for k in expected if k not in self.headers]
        unexpected = sorted(k for k in given if k not in expected)
        if strict and (missing or unexpected):
            raise _Refused(
                f"{self.label} does not match {what}: missing keys {_keys(missing)}, "
                f"unexpected keys {_keys(unexpected)}."
            )
        for key, shape in expected.items():
            header = self.headers.get(key)
            if header is None:
                continue
            integer = key.rsplit(".", 1)[-1] in _INTEGER_KEYS
            kinds = "iu" if integer else "iuf"
            if header.dtype.kind not in kinds:
                want = "integers" if integer else "real numbers"
                raise _Refused(
                    f"{self.label}: array {key!r} must hold {want}, got dtype {header.dtype}."
                )
            if header.shape != tuple(shape):
                raise _Refused(
                    f"{self.label}: array {key!r} must have shape {tuple(shape)} for {what}, "
                    f"got {header.shape}."
                )
        return missing, unexpected

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def __enter__(self) -> NpzArchive:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "not enough memory"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    text = str(exc) or type(exc).__name__
    return text.rstrip(".")[:300] + "."


def _keys(keys: list[str]) -> str:
    if not keys:
        return "none"
    shown = ", ".join(repr(k) for k in keys[:20])
    return f"[{shown}{', ...' if len(keys) > 20 else ''}]"


def read_npz(
    path: str | os.PathLike,
    *,
    keys: Iterable[str] | None = None,
    max_bytes: int = MAX_FILE_BYTES,
    argument: str = "path",
    label: str | None = None,
) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (or those in ``keys``), after the checks of
    :class:`NpzArchive` and a total-bytes cap ``max_bytes``.

    Returns
    -------
    dict of str to numpy.ndarray
        In the file's order. Strings come back as unicode arrays; nothing is unpickled.
    """
    with NpzArchive(path, max_bytes=max_bytes, argument=argument, label=label) as archive:
        wanted = list(archive.headers) if keys is None else list(keys)
        return {k: archive.read(k) for k in wanted}


def read_npy(
    path: str | os.PathLike,
    *,
    max_bytes: int = MAX_FILE_BYTES,
    argument: str = "path",
    label: str | None = None,
) -> np.ndarray:
    """One array from a ``.npy`` file: header first (dtype, ``max_bytes``, the file's
    size), then the data; never unpickles.

    Raises
    ------
    TypeError, FileNotFoundError, ValueError
        As :class:`NpzArchive`; an ``.npz`` archive is refused with a hint.
    """
    path = _check_path(path, argument)
    max_bytes = _check_max_bytes(max_bytes)
    label = label if label is not None else f"{argument} {path!r}"
    size = _check_file(path, label, max_bytes)
    try:
        with open(path, "rb") as fh:
            start = fh.read(len(_NPY_MAGIC))
            if start.startswith(_ZIP_MAGIC):
                raise _Refused(f"{label} is an .npz archive; save one array with numpy.save (.npy).")
            fh.seek(0)
            header = _read_header(fh, "", label, max_bytes)
            held = size - header.offset
            if held < header.nbytes:
                raise _Refused(
                    f"{label} is truncated: its header promises {header.nbytes} bytes of data "
                    f"(shape {header.shape}, {header.dtype}), the file holds {max(held, 0)}."
                )
            if held > header.nbytes:
                raise _Refused(
                    f"{label} holds {held} bytes of data, more than the {header.nbytes} its header "
                    f"promises (shape {header.shape}, {header.dtype})."
                )
            return _read_data(fh, header, label)
    except _Refused:
        raise
    except _FAILURES as exc:
        raise _Refused(f"{label} is not a readable .npy file: {_reason(exc)}") from exc


# ------------------------------------------------------------------------------ JSON
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)


def _json_depth(text: str) -> int:
    """The deepest nesting of ``[`` / ``{`` outside strings (vectorised, no recursion)."""
    stripped = _JSON_STRING.sub("", text).encode("utf-8", "surrogatepass")
    b = np.frombuffer(stripped, dtype=np.uint8)
    if not b.size:
        return 0
    step = ((b == 0x5B) | (b == 0x7B)).astype(np.int64) - ((b == 0x5D) | (b == 0x7D))
    return int(np.cumsum(step).max())


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_JSON_INT_DIGITS:
        raise _Refused(
            f"it holds an integer of {len(digits.lstrip('-'))} digits, more than "
            f"MAX_JSON_INT_DIGITS = {MAX_JSON_INT_DIGITS}"
        )
    return int(digits)


def parse_json(text: str, label: str, *, max_chars: int = MAX_JSON_CHARS) -> Any:
    """Parse JSON text from a file with bounds: at most ``max_chars`` characters,
    :data:`MAX_JSON_DEPTH` nesting levels and :data:`MAX_JSON_INT_DIGITS` digits per
    integer; every failure is a ``ValueError`` starting with ``label``."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {describe(text)}.")
    if len(text) > max_chars:
        raise _Refused(f"{label} has {len(text)} characters, more than {max_chars}.")
    try:
        depth = _json_depth(text)
        if depth > MAX_JSON_DEPTH:
            raise _Refused(f"{label} nests {depth} levels deep, more than MAX_JSON_DEPTH = {MAX_JSON_DEPTH}.")
        return json.loads(text, parse_int=_bounded_int)
    except _Refused as exc:
        if str(exc).startswith(label):
            raise
        raise _Refused(f"{label} is not usable: {exc}.") from exc
    except (ValueError, RecursionError, MemoryError, UnicodeError) as exc:
        raise _Refused(f"{label} is not valid JSON: {_reason(exc)}") from exc


def read_json(
    path: str | os.PathLike,
    *,
    max_chars: int = MAX_JSON_CHARS,
    argument: str = "path",
    label: str | None = None,
) -> Any:
    """A UTF-8 JSON file, read with the bounds of :func:`parse_json` (its size on disk
    at most ``4 * max_chars`` bytes, checked before reading)."""
    path = _check_path(path, argument)
    label = label if label is not None else f"{argument} {path!r}"
    _check_file(path, label, 4 * max_chars)
    try:
        with open(path, "rb") as fh:
            text = fh.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Refused(f"{label} is not UTF-8 text: {_reason(exc)}") from exc
    except (OSError, MemoryError) as exc:
        raise _Refused(f"{label} cannot be read: {_reason(exc)}") from exc
    return parse_json(text, label, max_chars=max_chars)


# ------------------------------------------------------------------------------ writer
def write_npz(path: str | os.PathLike, arrays: Mapping[str, Any]) -> None:
    """Write named arrays as an uncompressed ``.npz`` file, atomically.

    Like ``numpy.savez`` (readable with ``numpy.load(path, allow_pickle=False)``), but
    the members carry fixed timestamps (the same arrays give the same bytes), object
    arrays are refused, and the file appears whole or not at all: it is written next to
    ``path`` and moved into place (``os.replace``) once complete; on any failure ``path``
    keeps its old content. The name is used as given (no ``.npz`` appended).

    Parameters
    ----------
    path : str or os.PathLike
        The file to write; its directory must exist.
    arrays : mapping of str to array_like
        Written in the mapping's order as ``<key>.npy``.
    """
    path = _check_path(path, "path")
    if not isinstance(arrays, Mapping):
        raise TypeError(f"arrays must be a mapping of name -> array, got {describe(arrays)}.")
    prepared: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"array names must be non-empty strings, got {describe(key)}.")
        arr = np.asanyarray(value)
        if arr.dtype.hasobject:
            raise ValueError(f"array {key!r} has dtype {arr.dtype}; npcam writes no pickled objects.")
        prepared[key] = np.asarray(arr)
    with atomic_write(path) as fh, zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as zf:
        for key, arr in prepared.items():
            info = zipfile.ZipInfo(key + ".npy", date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_STORED
            with zf.open(info, "w", force_zip64=arr.nbytes > 2**30) as out:
                np.lib.format.write_array(out, arr, allow_pickle=False)


# ------------------------------------------------------------------------------ models
def save_model(model: Sequential, path: str | os.PathLike) -> str:
    """Write a model's weights and architecture to an ``.npz`` file, atomically.

    Parameters
    ----------
    model : Sequential
        The model; its ``state_dict()`` arrays and ``config()`` (as JSON text under
        ``__architecture__``) are written.
    path : str or os.PathLike
        The file; ``.npz`` is appended when missing, as NumPy does.

    Returns
    -------
    str
        The path written.
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be an npcam.Sequential, got {describe(model)}.")
    path = _check_path(path, "path")
    if not path.endswith(".npz"):
        path += ".npz"
    arrays: dict[str, Any] = model.state_dict()
    arrays[ARCHITECTURE_KEY] = np.array(json.dumps(model.config()))
    write_npz(path, arrays)
    return path


def _state_shapes(model: Any) -> dict[str, tuple[int, ...]]:
    """The shape of every state_dict entry, without copying the arrays when possible."""
    try:
        return {
            f"{name}.{key}": np.shape(value)
            for name, leaf in model.named_layers()
            for key, value in {**leaf.params(), **leaf.buffers()}.items()
        }
    except AttributeError:  # a model without per-layer params()/buffers(): copy once
        return {k: np.shape(v) for k, v in model.state_dict().items()}


def load_weights(
    model: Sequential,
    path: str | os.PathLike,
    strict: bool = True,
    *,
    max_bytes: int = MAX_FILE_BYTES,
) -> IncompatibleKeys:
    """Load an ``.npz`` of weights into ``model``; never unpickles.

    The file is checked against the model before any array is read: names (with
    ``strict``), shapes and dtypes from the ``.npy`` headers, sizes from the zip
    directory. Nothing is assigned unless everything checks out.

    Parameters
    ----------
    model : Sequential
        The model to load into.
    path : str or os.PathLike
        An ``.npz`` written by :meth:`Sequential.save` or ``numpy.savez(**state_dict)``.
    strict : bool, optional
        Missing and unexpected keys are errors (default); otherwise the common keys load.
    max_bytes : int, optional
        Cap on the file's size and inflated size (default :data:`MAX_FILE_BYTES`).

    Returns
    -------
    IncompatibleKeys
        ``(missing_keys, unexpected_keys)``.

    Raises
    ------
    TypeError
        ``model`` is not a Sequential or ``path`` not a path.
    FileNotFoundError
        No such file.
    ValueError
        Anything wrong with the file, naming it.
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be an npcam.Sequential, got {describe(model)}.")
    if not isinstance(strict, (bool, np.bool_)):
        raise TypeError(f"strict must be a bool, got {describe(strict)}.")
    with NpzArchive(path, max_bytes=max_bytes) as archive:
        expected = _state_shapes(model)
        missing, unexpected = archive.check_state(expected, strict=bool(strict))
        arrays = {k: archive.read(k) for k in expected if k in archive.headers}
        label = archive.label
    try:
        model.load_state_dict(arrays, strict=False)
    except ValueError as exc:  # e.g. NaN values: name the file too
        raise ValueError(f"{label} holds weights the model refuses: {exc}") from exc
    return IncompatibleKeys(missing, unexpected)


def read_model(archive: NpzArchive, config: Any, *, what: str = "its architecture") -> Any:
    """Build the model described by ``config`` from the arrays of ``archive``.

    The configuration is validated and its parameter shapes computed
    (:func:`npcam.nn.config.plan_config`) and compared with the archive's ``.npy``
    headers before any array is read; the layers are built without random
    initialisation and loaded with the file's arrays.
    """
    try:
        plan: ConfigPlan = plan_config(config)
    except (TypeError, ValueError) as exc:
        raise _Refused(f"{archive.label} has an invalid {ARCHITECTURE_KEY}: {exc}") from exc
    archive.check_state(plan.shapes, strict=True, what=what)
    arrays = {k: archive.read(k) for k in plan.shapes}
    try:
        return plan.build(arrays)
    except (TypeError, ValueError) as exc:
        raise _Refused(f"{archive.label} holds weights its architecture refuses: {exc}") from exc
    except MemoryError as exc:
        raise _Refused(f"{archive.label}: not enough memory to build its model.") from exc


def load_model(path: str | os.PathLike, *, max_bytes: int = MAX_FILE_BYTES) -> Sequential:
    """Build the model recorded in an ``.npz`` written by :meth:`Sequential.save`.

    The architecture JSON is read first and validated with bounds
    (:data:`npcam._validate.MAX_NESTING`, ``MAX_NODES``, ``MAX_MODEL_PARAMETERS``, …);
    the parameter shapes it implies are compared with the file's ``.npy`` headers; only
    then are the arrays read and the layers built from them (no random initialisation).

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    max_bytes : int, optional
        Cap on the file's size and inflated size (default :data:`MAX_FILE_BYTES`).

    Returns
    -------
    Sequential
        The model, in evaluation mode.

    Raises
    ------
    TypeError, FileNotFoundError, ValueError
        A path that is not a path, a missing file, anything wrong with the file.
    """
    with NpzArchive(path, max_bytes=max_bytes) as archive:
        if ARCHITECTURE_KEY not in archive.headers:
            raise _Refused(f"{archive.label} records no architecture ({ARCHITECTURE_KEY}).")
        config = archive.read_json(ARCHITECTURE_KEY)
        if not (isinstance(config, Mapping) and config.get("type") == "Sequential"):
            raise _Refused(f"{archive.label} must describe a Sequential model, got {describe(config)}.")
        return read_model(archive, config)
