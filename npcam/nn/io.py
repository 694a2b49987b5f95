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

``.safetensors`` weights (:class:`SafetensorsArchive`, the optional extra
``npcam[safetensors]``) are checked the same way before any tensor is read: the file's
size, the 8-byte header length against the file and :data:`MAX_SAFETENSORS_HEADER`, the
JSON header with the bounds of :func:`parse_json`, every entry's dtype (an allow-list),
shape and data offsets (inside the file, back to back, shape × itemsize long), then the
names and shapes against the model. :func:`open_weights` picks the reader from the
file's first bytes, not its suffix, and refuses PyTorch pickle checkpoints (``.pth``)
without unpickling them.

The writer (:func:`write_npz`) writes uncompressed ``.npz`` files with fixed timestamps
(the same arrays always give the same bytes) atomically: to a temporary file in the
target's directory that replaces the target only once complete
(:func:`npcam._files.atomic_write`), so concurrent writers leave one whole file and a
failed write leaves the old file as it was.
"""

from __future__ import annotations

import importlib
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
    "CONVERT_PTH_HINT",
    "MAX_FILE_BYTES",
    "MAX_JSON_CHARS",
    "MAX_JSON_DEPTH",
    "MAX_JSON_INT_DIGITS",
    "MAX_MEMBERS",
    "MAX_SAFETENSORS_HEADER",
    "SAFETENSORS_DTYPES",
    "SAFETENSORS_HINT",
    "ArrayHeader",
    "NpzArchive",
    "SafetensorsArchive",
    "TensorHeader",
    "load_model",
    "load_weights",
    "open_weights",
    "parse_json",
    "read_json",
    "read_npy",
    "read_npz",
    "read_safetensors",
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
        kinds = {k: h.dtype.kind for k, h in self.headers.items()}
        return _check_state(self.label, "array", self.headers, kinds, expected, strict, what)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def __enter__(self) -> NpzArchive:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _check_state(
    label: str,
    noun: str,
    headers: Mapping[str, Any],
    kinds: Mapping[str, str],
    expected: Mapping[str, tuple[int, ...]],
    strict: bool,
    what: str,
) -> tuple[list[str], list[str]]:
    """A file's headers (``.shape``, and the dtype kind of each in ``kinds``) against a
    model's state: ``(missing, unexpected)`` keys, an error with ``strict``; shapes equal,
    weights real numbers, ``num_batches_tracked`` integers. Keys ``__name__`` describe the
    file and are ignored."""
    given = [k for k in headers if not (k.startswith("__") and k.endswith("__"))]
    missing = [k for k in expected if k not in headers]
    unexpected = sorted(k for k in given if k not in expected)
    if strict and (missing or unexpected):
        raise _Refused(
            f"{label} does not match {what}: missing keys {_keys(missing)}, "
            f"unexpected keys {_keys(unexpected)}."
        )
    for key, shape in expected.items():
        header = headers.get(key)
        if header is None:
            continue
        integer = key.rsplit(".", 1)[-1] in _INTEGER_KEYS
        if kinds[key] not in ("iu" if integer else "iuf"):
            want = "integers" if integer else "real numbers"
            raise _Refused(f"{label}: {noun} {key!r} must hold {want}, got dtype {header.dtype}.")
        if header.shape != tuple(shape):
            raise _Refused(
                f"{label}: {noun} {key!r} must have shape {tuple(shape)} for {what}, got {header.shape}."
            )
    return missing, unexpected


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


# ------------------------------------------------------------------------- safetensors
#: How to get the optional dependency that ``.safetensors`` files need.
SAFETENSORS_HINT = "install the safetensors extra: pip install 'npcam[safetensors]'"
#: Bytes of the JSON header of one ``.safetensors`` file (the ``safetensors`` package's
#: own limit): checked from the 8-byte length before the header is read.
MAX_SAFETENSORS_HEADER = 100_000_000
#: How to turn a PyTorch pickle checkpoint into a file npcam reads (one sentence's end).
CONVERT_PTH_HINT = (
    "convert it once with torch: safetensors.torch.save_file(torch.load(path, weights_only=True), "
    "'model.safetensors'), then load the .safetensors file"
)

#: The element types npcam reads from a ``.safetensors`` file: name -> (kind, itemsize).
#: Floats become float64, integers int64; BOOL, the F8 types and complex are refused.
SAFETENSORS_DTYPES: dict[str, tuple[str, int]] = {
    "F64": ("f", 8), "F32": ("f", 4), "F16": ("f", 2), "BF16": ("f", 2),
    "I64": ("i", 8), "I32": ("i", 4), "I16": ("i", 2), "I8": ("i", 1),
    "U64": ("u", 8), "U32": ("u", 4), "U16": ("u", 2), "U8": ("u", 1),
}  # fmt: skip
_MAX_RANK = 32
_PICKLE_PROTOCOLS = (2, 3, 4, 5)  # a pickle of protocol >= 2 starts with 0x80 and this byte
_PICKLE_SUFFIXES = (".pth", ".pt", ".pkl", ".pickle", ".ckpt")


@dataclass(frozen=True)
class TensorHeader:
    """What a ``.safetensors`` header promises for one tensor, read before its data."""

    key: str  #: the tensor's name
    dtype: str  #: the file's type name, a key of :data:`SAFETENSORS_DTYPES` (``"F32"``, ...)
    shape: tuple[int, ...]
    begin: int  #: first byte of the data, counted from the end of the header
    end: int  #: one past the last byte

    @property
    def kind(self) -> str:
        """``"f"``, ``"i"`` or ``"u"``, as ``numpy.dtype.kind``."""
        return SAFETENSORS_DTYPES[self.dtype][0]

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


def _import_safetensors() -> Any:
    """``safetensors``, imported on first use; ImportError naming the extra when missing."""
    try:
        return importlib.import_module("safetensors")
    except ImportError as exc:
        raise ImportError(
            f"reading .safetensors files needs the safetensors package; {SAFETENSORS_HINT}"
        ) from exc


def _parse_safetensors_header(
    header: Any, label: str, data_bytes: int, max_bytes: int
) -> dict[str, TensorHeader]:
    """Check every entry of a parsed header against the allow-list and the data's size."""
    if not isinstance(header, dict):
        raise _Refused(f"{label}: its header must be a JSON object, got {describe(header)}.")
    if len(header) > MAX_MEMBERS + 1:
        raise _Refused(f"{label} holds {len(header)} tensors, more than MAX_MEMBERS = {MAX_MEMBERS}.")
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _Refused(
            f"{label}: its __metadata__ must be a JSON object of strings, got {describe(metadata)}."
        )
    tensors: dict[str, TensorHeader] = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        what = f"{label}: tensor {key!r}"
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise _Refused(
                f"{what} must be described by dtype, shape and data_offsets, got {describe(entry)}."
            )
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype, str) or dtype not in SAFETENSORS_DTYPES:
            raise _Refused(
                f"{what} has dtype {dtype!r}; npcam reads only {', '.join(SAFETENSORS_DTYPES)}."
            )
        if (not isinstance(shape, list) or len(shape) > _MAX_RANK
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise _Refused(
                f"{what} has an invalid shape {shape!r} (a list of at most {_MAX_RANK} sizes >= 0)."
            )
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise _Refused(f"{what} has invalid data_offsets {offsets!r} (a list [begin, end] of integers).")
        begin, end = offsets
        needed = math.prod(shape) * SAFETENSORS_DTYPES[dtype][1]
        if needed > max_bytes:
            raise _Refused(
                f"{what} claims shape {tuple(shape)} of {dtype} ({needed} bytes), more than "
                f"max_bytes = {max_bytes}."
            )
        if not 0 <= begin <= end:
            raise _Refused(f"{what} has data_offsets [{begin}, {end}], which is not a range of bytes.")
        if end - begin != needed:
            raise _Refused(
                f"{what} has data_offsets [{begin}, {end}] holding {end - begin} bytes, but shape "
                f"{tuple(shape)} of {dtype} takes {needed}."
            )
        if end > data_bytes:
            raise _Refused(
                f"{label} is truncated: tensor {key!r} ends at byte {end} of the data, the file holds "
                f"{data_bytes} bytes of data after its header."
            )
        tensors[key] = TensorHeader(key, dtype, tuple(shape), begin, end)
    # The data must be the tensors, back to back, and nothing else (as safetensors requires).
    position = 0
    for t in sorted(tensors.values(), key=lambda t: (t.begin, t.end)):
        if t.begin != position:
            relation = "overlaps the tensor before it" if t.begin < position else "leaves a gap before it"
            raise _Refused(
                f"{label}: tensor {t.key!r} starts at byte {t.begin} of the data, where the tensors "
                f"before it end at {position}: it {relation} (tensors must be stored back to back)."
            )
        position = t.end
    if position != data_bytes:
        raise _Refused(
            f"{label} holds {data_bytes} bytes of data after its header, more than the {position} "
            "its tensors take."
        )
    return tensors


class SafetensorsArchive:
    """A ``.safetensors`` file opened for checked reading (use as a context manager).

    The format: 8 bytes, little-endian, giving the length ``n`` of a JSON header, then the
    header, then the tensors' bytes. Opening checks, before reading any tensor:

    1. the file's size against ``max_bytes``;
    2. ``n`` against the file's size and :data:`MAX_SAFETENSORS_HEADER`, then the header
       with the bounds of :func:`parse_json`;
    3. every entry: its dtype in :data:`SAFETENSORS_DTYPES`, its shape, its
       ``data_offsets`` inside the data and equal in length to shape × itemsize, the
       tensors back to back and covering the data exactly (a truncated or padded file is
       refused, naming what it holds). ``__metadata__`` (strings) is kept in
       :attr:`metadata`, never interpreted.

    :meth:`read` then reads one tensor through the ``safetensors`` package's NumPy API
    (``safe_open(path, framework="numpy")``; the optional extra ``npcam[safetensors]``),
    except BF16 tensors, which NumPy cannot represent: their bytes are read at the
    checked offsets and widened exactly (``bfloat16`` is the high half of a float32).
    Floats come back as float64, integers as int64.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    max_bytes : int, optional
        Cap on the file's size (default :data:`MAX_FILE_BYTES`).
    argument : str, optional
        Name of the caller's path argument, used in messages (``TypeError`` names it).
    label : str, optional
        How messages refer to the file (default ``"<argument> '<path>'"``).

    Raises
    ------
    ImportError
        The ``safetensors`` package is missing (the message names the extra).
    TypeError
        ``path`` is not a path.
    FileNotFoundError
        The file does not exist.
    ValueError
        Anything wrong with the file, naming it.
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
        self._safetensors = _import_safetensors()
        self._handle: Any = None
        size = _check_file(self.path, self.label, self.max_bytes)
        try:
            with open(self.path, "rb") as fh:
                start = fh.read(8)
                if len(start) < 8:
                    raise _Refused(
                        f"{self.label} is not a .safetensors file: it has {size} bytes, fewer than the "
                        "8 of its header's length."
                    )
                (n,) = struct.unpack("<Q", start)
                if n > size - 8:
                    raise _Refused(
                        f"{self.label} declares a JSON header of {n} bytes, longer than the file "
                        f"({size} bytes): it is truncated or not a .safetensors file."
                    )
                if n > MAX_SAFETENSORS_HEADER:
                    raise _Refused(
                        f"{self.label} declares a JSON header of {n} bytes, more than "
                        f"MAX_SAFETENSORS_HEADER = {MAX_SAFETENSORS_HEADER}."
                    )
                raw = fh.read(n)
            if len(raw) != n:
                raise _Refused(f"{self.label} changed while being read (its header was cut short).")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _Refused(f"{self.label}: its header is not UTF-8 text: {_reason(exc)}") from exc
            if not text.startswith("{"):
                raise _Refused(
                    f"{self.label} is not a .safetensors file: its header does not start with '{{'."
                )
            header = parse_json(text, f"{self.label}: its header", max_chars=n)
        except _Refused:
            raise
        except _FAILURES as exc:
            raise _Refused(f"{self.label} is not a readable .safetensors file: {_reason(exc)}") from exc
        self.data_start = 8 + n  #: byte of the file where the tensors' data begins
        self.headers: dict[str, TensorHeader] = _parse_safetensors_header(
            header, self.label, size - self.data_start, self.max_bytes
        )
        self.metadata: dict[str, str] = dict(header.get("__metadata__", {}))

    # -- reading -------------------------------------------------------------------------
    def read(self, key: str) -> np.ndarray:
        """The tensor ``key`` (whose header was checked when the file was opened), as
        float64 (floats) or int64 (integers)."""
        if key not in self.headers:
            raise _Refused(f"{self.label} holds no tensor {key!r}.")
        header, what = self.headers[key], f"{self.label}: tensor {key!r}"
        try:
            if header.dtype == "BF16":
                arr = self._read_bf16(header, what)
            else:
                if self._handle is None:
                    self._handle = self._safetensors.safe_open(self.path, framework="numpy")
                arr = np.asarray(self._handle.get_tensor(key))
        except _Refused:
            raise
        except (*_FAILURES, self._safetensors.SafetensorError, TypeError) as exc:
            raise _Refused(f"{what} cannot be read (the file is corrupt): {_reason(exc)}") from exc
        kind, itemsize = SAFETENSORS_DTYPES[header.dtype]
        if header.dtype == "BF16":  # widened to float32 by _read_bf16
            itemsize = 4
        if arr.shape != header.shape or arr.dtype.kind != kind or arr.dtype.itemsize != itemsize:
            raise _Refused(
                f"{what} changed while being read: its header promised shape {header.shape} of "
                f"{header.dtype}, the read gave {arr.shape} of {arr.dtype}."
            )
        return arr.astype(np.float64 if kind == "f" else np.int64)

    def _read_bf16(self, header: TensorHeader, what: str) -> np.ndarray:
        with open(self.path, "rb") as fh:
            fh.seek(self.data_start + header.begin)
            raw = fh.read(header.nbytes)
        if len(raw) != header.nbytes:
            raise _Refused(
                f"{what} is truncated: its header promises {header.nbytes} bytes, the file holds {len(raw)}."
            )
        high = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return high.view(np.float32).reshape(header.shape)

    def check_state(
        self,
        expected: Mapping[str, tuple[int, ...]],
        *,
        strict: bool = True,
        what: str = "the model",
    ) -> tuple[list[str], list[str]]:
        """Compare the headers with a model's state: names, shapes and dtypes.

        As :meth:`NpzArchive.check_state`: ``__metadata__`` is not a tensor; returns
        ``(missing, unexpected)``, with ``strict`` either being non-empty is an error;
        shapes must be equal, weights real numbers, ``num_batches_tracked`` integers.
        """
        kinds = {k: h.kind for k, h in self.headers.items()}
        return _check_state(self.label, "tensor", self.headers, kinds, expected, strict, what)

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None and hasattr(handle, "__exit__"):
            handle.__exit__(None, None, None)

    def __enter__(self) -> SafetensorsArchive:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_safetensors(
    path: str | os.PathLike,
    *,
    keys: Iterable[str] | None = None,
    max_bytes: int = MAX_FILE_BYTES,
    argument: str = "path",
    label: str | None = None,
) -> dict[str, np.ndarray]:
    """Every tensor of a ``.safetensors`` file (or those in ``keys``), after the checks of
    :class:`SafetensorsArchive`.

    Returns
    -------
    dict of str to numpy.ndarray
        In the header's order; floats as float64, integers as int64.
    """
    with SafetensorsArchive(path, max_bytes=max_bytes, argument=argument, label=label) as archive:
        wanted = list(archive.headers) if keys is None else list(keys)
        return {k: archive.read(k) for k in wanted}


def _looks_like_safetensors(start: bytes, size: int) -> bool:
    """The signature: a little-endian header length that fits the file, then ``{``."""
    if len(start) < 9:
        return False
    (n,) = struct.unpack("<Q", start[:8])
    return 2 <= n <= size - 8 and start[8:9] == b"{"


def _is_torch_zip(path: str) -> bool:
    """A zip archive laid out as ``torch.save`` writes it (a ``data.pkl`` member)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any(name.endswith(".pkl") for name in zf.namelist()[: MAX_MEMBERS + 1])
    except _FAILURES:
        return False  # not a readable zip: NpzArchive says what is wrong with it


def open_weights(
    path: str | os.PathLike,
    *,
    max_bytes: int = MAX_FILE_BYTES,
    argument: str = "path",
    label: str | None = None,
) -> NpzArchive | SafetensorsArchive:
    """Open a weights file for checked reading, choosing the reader by its content.

    In this order: PyTorch checkpoints — a zip with a ``.pkl`` member (``torch.save``'s
    layout) or a pickle (protocol 2 to 5, by its first two bytes) — are refused without
    being unpickled, saying how to convert them; a ``.safetensors`` signature (an 8-byte
    little-endian header length that fits the file, then ``{``) opens a
    :class:`SafetensorsArchive`, a zip (or ``.npy``) an :class:`NpzArchive`, whatever
    the names. Only then does the suffix count: another file named ``*.safetensors``
    goes to :class:`SafetensorsArchive` (which says what is wrong with it), one named
    ``.pth`` / ``.pt`` / ``.pkl`` / ``.pickle`` / ``.ckpt`` is refused as a checkpoint
    (a protocol-0 pickle has no magic bytes), and anything else goes to
    :class:`NpzArchive`.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    max_bytes : int, optional
        Cap on the file's size (and an ``.npz``'s inflated size); default
        :data:`MAX_FILE_BYTES`.
    argument, label : str, optional
        As :class:`NpzArchive`.

    Returns
    -------
    NpzArchive or SafetensorsArchive
        Both have ``headers`` (name -> header with ``shape``), ``check_state``, ``read``
        and ``close``, and are context managers.

    Raises
    ------
    ImportError
        A ``.safetensors`` file without the ``safetensors`` package.
    TypeError, FileNotFoundError, ValueError
        As the readers.
    """
    path = _check_path(path, argument)
    max_bytes = _check_max_bytes(max_bytes)
    label = label if label is not None else f"{argument} {path!r}"
    size = _check_file(path, label, max_bytes)
    try:
        with open(path, "rb") as fh:
            start = fh.read(9)
    except OSError as exc:
        raise _Refused(f"{label} cannot be read: {_reason(exc)}") from exc
    torch_checkpoint = (
        (start.startswith(_ZIP_MAGIC) and _is_torch_zip(path))
        or (len(start) >= 2 and start[0] == 0x80 and start[1] in _PICKLE_PROTOCOLS)
    )
    refusal = (
        f"{label} is a pickled PyTorch checkpoint (.pth/.pt), which npcam never unpickles; "
        f"{CONVERT_PTH_HINT}."
    )
    if torch_checkpoint:
        raise _Refused(refusal)
    if _looks_like_safetensors(start, size):
        return SafetensorsArchive(path, max_bytes=max_bytes, label=label)
    if start.startswith((_ZIP_MAGIC, _NPY_MAGIC)):  # an .npz (or a .npy), whatever its name
        return NpzArchive(path, max_bytes=max_bytes, label=label)
    name = path.lower()
    if name.endswith(".safetensors"):  # a broken one: its reader says what is wrong
        return SafetensorsArchive(path, max_bytes=max_bytes, label=label)
    if name.endswith(_PICKLE_SUFFIXES):  # e.g. a protocol-0 pickle, which has no magic
        raise _Refused(refusal)
    return NpzArchive(path, max_bytes=max_bytes, label=label)


# ------------------------------------------------------------------------------ models
def save_model(model: Any, path: str | os.PathLike) -> str:
    """Write a model's weights and architecture to an ``.npz`` file, atomically.

    Parameters
    ----------
    model : Sequential or Graph
        The model; its ``state_dict()`` arrays and ``config()`` (as JSON text under
        ``__architecture__``) are written.
    path : str or os.PathLike
        The file; ``.npz`` is appended when missing, as NumPy does.

    Returns
    -------
    str
        The path written.
    """
    from .graph import Graph

    if not isinstance(model, (Sequential, Graph)):
        raise TypeError(f"model must be an npcam.Sequential or npcam.Graph, got {describe(model)}.")
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


def _is_torch_module(model: Any) -> bool:
    return any(cls.__module__.startswith("torch.") for cls in type(model).__mro__)


def _check_model(model: Any) -> None:
    """A Sequential, or any npcam model of the protocol (``state_dict``, ``load_state_dict``)."""
    if isinstance(model, Sequential):
        return
    protocol = callable(getattr(model, "state_dict", None)) and callable(
        getattr(model, "load_state_dict", None)
    )
    if protocol and not _is_torch_module(model):
        return
    hint = "; convert a torch module with npcam.from_torch first" if protocol else ""
    raise TypeError(
        "model must be an npcam.Sequential (or another npcam model with state_dict and "
        f"load_state_dict, such as npcam.Graph), got {describe(model)}{hint}."
    )


def load_weights(
    model: Any,
    path: str | os.PathLike,
    strict: bool = True,
    *,
    max_bytes: int = MAX_FILE_BYTES,
) -> IncompatibleKeys:
    """Load a file of weights (``.npz`` or ``.safetensors``) into ``model``; never unpickles.

    The reader is chosen by the file's content (:func:`open_weights`): a ``.safetensors``
    header (8-byte little-endian length, then JSON) selects :class:`SafetensorsArchive`
    (the optional extra ``npcam[safetensors]``), anything else is read as an ``.npz``
    (:class:`NpzArchive`). PyTorch ``.pth`` / ``.pt`` checkpoints (a zip with a pickle, or
    a pickle) are refused without being unpickled, with how to convert them:
    ``safetensors.torch.save_file(torch.load(path, weights_only=True), "model.safetensors")``.

    The file is checked against the model before any array is read: names (with
    ``strict``), shapes and dtypes from the headers, sizes from the zip directory or the
    safetensors data offsets. Nothing is assigned unless everything checks out. Floats
    are loaded as float64 (float32, float16 and bfloat16 widen exactly).

    Parameters
    ----------
    model : Sequential or a model of the protocol
        The model to load into: an :class:`~npcam.Sequential`, an ``npcam.Graph``, or any
        object with ``state_dict()`` and ``load_state_dict(state, strict=...)``.
    path : str or os.PathLike
        An ``.npz`` written by :meth:`Sequential.save` or ``numpy.savez(**state_dict)``,
        or a ``.safetensors`` file (e.g. ``safetensors.torch.save_file(state_dict, path)``).
    strict : bool, optional
        Missing and unexpected keys are errors (default); otherwise the common keys load.
        Keys of the form ``__name__`` (``__metadata__``, ``__architecture__``) are ignored.
    max_bytes : int, optional
        Cap on the file's size and inflated size (default :data:`MAX_FILE_BYTES`).

    Returns
    -------
    IncompatibleKeys
        ``(missing_keys, unexpected_keys)``.

    Raises
    ------
    ImportError
        A ``.safetensors`` file without the ``safetensors`` package (the message names
        the extra).
    TypeError
        ``model`` is not an npcam model or ``path`` not a path.
    FileNotFoundError
        No such file.
    ValueError
        Anything wrong with the file, naming it.
    """
    _check_model(model)
    if not isinstance(strict, (bool, np.bool_)):
        raise TypeError(f"strict must be a bool, got {describe(strict)}.")
    with open_weights(path, max_bytes=max_bytes) as archive:
        if isinstance(model, Sequential):
            expected = _state_shapes(model)
        else:
            expected = {k: np.shape(v) for k, v in model.state_dict().items()}
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


def load_model(path: str | os.PathLike, *, max_bytes: int = MAX_FILE_BYTES) -> Any:
    """Build the model recorded in an ``.npz`` written by :meth:`Sequential.save` or
    :meth:`Graph.save`.

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
    Sequential or Graph
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
        if not (isinstance(config, Mapping) and config.get("type") in ("Sequential", "Graph")):
            raise _Refused(f"{archive.label} must describe a Sequential or Graph model, got "
                           f"{describe(config)}.")
        return read_model(archive, config)
