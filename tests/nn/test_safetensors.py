"""npcam.load_weights on ``.safetensors`` files (npcam.nn.io.SafetensorsArchive), facing
hostile files, and the refusal of PyTorch pickle checkpoints.

Hostile files are written byte by byte here (:func:`_st_bytes`: the 8-byte little-endian
header length, the JSON header, the data), so that every lie a header can tell is
reachable; well-formed files also come from ``safetensors.numpy.save_file``. Tests that
read tensor data need the ``safetensors`` extra and skip without it; the refusals made
from the first bytes or the header alone run everywhere.
"""

from __future__ import annotations

import json
import pickle
import struct
import sys
import zipfile

import numpy as np
import pytest

import npcam
from npcam.nn import io as nio


# ------------------------------------------------------------------------------ helpers
def _net(seed: int = 0) -> npcam.Sequential:
    return npcam.Sequential(
        npcam.Conv2d(3, 4, 3, padding=1, rng=seed), npcam.BatchNorm2d(4), npcam.ReLU(),
        npcam.GlobalAvgPool2d(), npcam.Linear(4, 2, rng=seed + 1),
    )  # fmt: skip


_CODES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "U8": "u1"}


def _st_bytes(tensors: dict, *, metadata: dict | None = None, edit=None, tail: bytes = b"") -> bytes:
    """A .safetensors file: ``tensors`` maps name -> array (or (dtype name, shape, raw
    bytes)), stored back to back in order; ``edit(header)`` may change the header dict
    before it is written; ``tail`` is appended after the data."""
    header: dict = {} if metadata is None else {"__metadata__": metadata}
    data = b""
    for key, value in tensors.items():
        if isinstance(value, tuple):
            dtype, shape, raw = value
        else:
            arr = np.asarray(value)
            dtype = next(k for k, v in _CODES.items() if np.dtype(v) == arr.dtype.newbyteorder("<"))
            shape, raw = list(arr.shape), arr.astype(_CODES[dtype]).tobytes()
        offsets = [len(data), len(data) + len(raw)]
        header[key] = {"dtype": dtype, "shape": list(shape), "data_offsets": offsets}
        data += raw
    if edit is not None:
        edit(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads its header to 8 bytes with spaces
    return struct.pack("<Q", len(text)) + text + data + tail


def _write(path, *args, **kwargs):
    path.write_bytes(_st_bytes(*args, **kwargs))
    return path


@pytest.fixture
def safetensors():
    return pytest.importorskip("safetensors")


@pytest.fixture
def no_data_reads(monkeypatch, safetensors):
    """Fail the test if a tensor's data is read (``safe_open``) after a refused header."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("safe_open was called: data read before the header was refused")

    monkeypatch.setattr(safetensors, "safe_open", refuse)
    return calls


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


# ---------------------------------------------------------------------------- round trip
def test_round_trip_float64_is_exact_and_metadata_is_ignored(tmp_path, safetensors):
    """``safetensors.numpy.save_file(state_dict)`` -> ``load_weights``: every parameter
    and buffer bit for bit (``num_batches_tracked`` stays int64); ``__metadata__`` is no key."""
    import safetensors.numpy as stn

    src = _net(0)
    src.state_dict()["1.running_var"][...] = 2.0  # (a copy: harmless)
    sd = src.state_dict()
    path = tmp_path / "w.safetensors"
    stn.save_file(sd, str(path), metadata={"format": "np", "source": "test"})
    dst = _net(7)
    result = npcam.load_weights(dst, path)
    assert result.missing_keys == [] and result.unexpected_keys == []
    _assert_same_state(dst.state_dict(), sd)
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6))
    assert np.array_equal(dst.forward(x), src.forward(x))
    assert nio.read_safetensors(path).keys() == sd.keys()


def test_float32_float16_and_bfloat16_widen_exactly_to_float64(tmp_path, safetensors):
    """F32 and F16 go through safetensors' NumPy API; BF16 (which NumPy cannot hold) is
    widened by npcam as the high half of a float32: all equal the exact float64 values."""
    sd = _net(1).state_dict()
    sd32 = {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in sd.items()}
    _write(tmp_path / "f32.safetensors", sd32)
    net = _net(9)
    npcam.load_weights(net, tmp_path / "f32.safetensors")
    for k, v in net.state_dict().items():
        assert v.dtype == (np.int64 if k.endswith("num_batches_tracked") else np.float64)
        assert np.array_equal(v, sd32[k].astype(v.dtype)), k

    values = np.array([1.5, -2.0, 0.0, 3.140625, -0.0078125, 65280.0])  # all exact in bfloat16
    bf16 = (values.astype(np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
    f16 = np.array([0.5, -1.25, 2048.0], dtype=np.float16)
    path = _write(tmp_path / "mixed.safetensors",
                  {"b": ("BF16", [2, 3], bf16), "h": f16, "i": np.array([7, -3], dtype=np.int32)})
    out = nio.read_safetensors(path)
    assert out["b"].dtype == np.float64 and np.array_equal(out["b"], values.reshape(2, 3))
    assert out["h"].dtype == np.float64 and np.array_equal(out["h"], f16.astype(np.float64))
    assert out["i"].dtype == np.int64 and out["i"].tolist() == [7, -3]


def test_bfloat16_matches_torch(tmp_path, safetensors):
    """A BF16 file written by ``safetensors.torch`` reads as torch's own float64 values."""
    torch = pytest.importorskip("torch")
    import safetensors.torch as stt

    t = torch.randn(5, 7, generator=torch.Generator().manual_seed(0)).bfloat16()
    stt.save_file({"w": t}, str(tmp_path / "b.safetensors"))
    assert np.array_equal(nio.read_safetensors(tmp_path / "b.safetensors")["w"], t.double().numpy())


def test_the_format_is_chosen_by_the_header_not_the_suffix(tmp_path, safetensors):
    """A safetensors file named .npz or .bin loads as safetensors; an .npz named
    .safetensors loads as an .npz."""
    sd = _net(2).state_dict()
    for name in ("w.npz", "w.bin", "weights"):
        path = _write(tmp_path / name, sd)
        net = _net(5)
        npcam.load_weights(net, path)
        _assert_same_state(net.state_dict(), sd)
    _net(2).save(tmp_path / "real.npz")
    (tmp_path / "real.safetensors").write_bytes((tmp_path / "real.npz").read_bytes())
    net = _net(5)
    npcam.load_weights(net, tmp_path / "real.safetensors")
    _assert_same_state(net.state_dict(), sd)


def test_strict_false_and_key_mismatches_are_named(tmp_path, safetensors):
    """Missing and unexpected keys are named, as for .npz (strict); with strict=False the
    common keys load and the lists are returned."""
    sd = _net(3).state_dict()
    partial = {k: v for k, v in sd.items() if k != "4.bias"}
    partial["extra.weight"] = np.ones(2)
    path = _write(tmp_path / "p.safetensors", partial, metadata={"note": "partial"})
    net = _net(8)
    before = net.state_dict()
    with pytest.raises(ValueError, match=r"missing keys \['4.bias'\], unexpected keys \['extra.weight'\]"):
        npcam.load_weights(net, path)
    _assert_same_state(net.state_dict(), before)
    missing, unexpected = npcam.load_weights(net, path, strict=False)
    assert (missing, unexpected) == (["4.bias"], ["extra.weight"])
    assert np.array_equal(net.state_dict()["0.weight"], sd["0.weight"])
    assert np.array_equal(net.state_dict()["4.bias"], before["4.bias"])


def test_any_model_of_the_protocol_is_accepted(tmp_path, safetensors):
    """load_weights takes any object with state_dict and load_state_dict (an npcam.Graph,
    ...), not only Sequential; other objects keep the Sequential type message, and a torch
    module is told to go through npcam.from_torch."""

    class Protocol:
        def __init__(self):
            self.state = {"conv.weight": np.zeros((2, 3)), "bn.num_batches_tracked": np.array(0)}

        def state_dict(self):
            return {k: v.copy() for k, v in self.state.items()}

        def load_state_dict(self, state, strict=True):
            self.state.update(state)

    given = {"conv.weight": np.arange(6.0).reshape(2, 3), "bn.num_batches_tracked": np.array(4)}
    path = _write(tmp_path / "g.safetensors", given)
    model = Protocol()
    npcam.load_weights(model, path)
    assert np.array_equal(model.state["conv.weight"], given["conv.weight"])
    assert model.state["bn.num_batches_tracked"].dtype == np.int64
    for bad in ({"a": 1}, "model", object()):
        with pytest.raises(TypeError, match="^model must be an npcam.Sequential"):
            npcam.load_weights(bad, path)
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="^model must be an npcam.Sequential.*npcam.from_torch"):
        npcam.load_weights(torch.nn.Linear(2, 2), path)


def test_values_the_model_refuses_name_the_file(tmp_path, safetensors):
    """NaN weights pass the header checks; the model refuses them, and the message names the file."""
    sd = _net(4).state_dict()
    sd["0.bias"] = np.array([0.0, np.nan, 1.0, 2.0])
    path = _write(tmp_path / "nan.safetensors", sd)
    net = _net(4)
    before = net.state_dict()
    with pytest.raises(ValueError, match="nan.safetensors' holds weights the model refuses"):
        npcam.load_weights(net, path)
    _assert_same_state(net.state_dict(), before)


# ------------------------------------------------------------------------- hostile files
def test_truncated_file_is_reported_truncated(tmp_path, safetensors, no_data_reads):
    """A download cut short: the last tensor ends past the data the file holds."""
    data = _st_bytes(_net(0).state_dict())
    (tmp_path / "cut.safetensors").write_bytes(data[:-5])
    with pytest.raises(ValueError, match=r"cut.safetensors' is truncated: tensor '4.bias' ends at byte"):
        npcam.load_weights(_net(0), tmp_path / "cut.safetensors")
    (tmp_path / "stub.safetensors").write_bytes(data[:5])
    with pytest.raises(ValueError, match="fewer than the 8 of its header's length"):
        npcam.load_weights(_net(0), tmp_path / "stub.safetensors")
    assert no_data_reads == []


def test_header_longer_than_the_file(tmp_path, safetensors, no_data_reads, monkeypatch):
    """The 8-byte length is checked against the file's size before the header is read,
    and against MAX_SAFETENSORS_HEADER."""
    good = _st_bytes({"0.weight": np.ones(3)})
    (n,) = struct.unpack("<Q", good[:8])
    lie = struct.pack("<Q", len(good)) + good[8:]
    (tmp_path / "long.safetensors").write_bytes(lie)
    match = rf"declares a JSON header of {len(good)} bytes, longer than the file"
    with pytest.raises(ValueError, match=match):
        npcam.load_weights(_net(), tmp_path / "long.safetensors")
    huge = struct.pack("<Q", 2**63) + good[8:]
    (tmp_path / "huge.safetensors").write_bytes(huge)
    with pytest.raises(ValueError, match="longer than the file"):
        nio.read_safetensors(tmp_path / "huge.safetensors")
    monkeypatch.setattr(nio, "MAX_SAFETENSORS_HEADER", n - 1)
    (tmp_path / "ok.safetensors").write_bytes(good)
    with pytest.raises(ValueError, match=rf"more than MAX_SAFETENSORS_HEADER = {n - 1}"):
        nio.read_safetensors(tmp_path / "ok.safetensors")
    assert no_data_reads == []


def _offsets(key, offsets):
    def edit(header):
        header[key]["data_offsets"] = offsets
    return edit


@pytest.mark.parametrize(
    "edit, match",
    [
        (_offsets("a", [0, 16]), r"tensor 'a' has data_offsets \[0, 16\] holding 16 bytes, but shape \(3,\) "
                                 "of F64 takes 24"),
        (_offsets("b", [16, 32]), r"tensor 'b' starts at byte 16 of the data, where the tensors before it "
                                  "end at 24: it overlaps"),
        (_offsets("b", [24, 48]), r"holding 24 bytes, but shape \(2,\) of F64 takes 16"),
        (_offsets("b", [30, 46]), "is truncated: tensor 'b' ends at byte 46"),
        (_offsets("a", [24, 0]), r"data_offsets \[24, 0\], which is not a range"),
        (_offsets("a", [-8, 16]), r"data_offsets \[-8, 16\], which is not a range"),
        (_offsets("a", [0, 24, 48]), "invalid data_offsets"),
        (_offsets("a", ["0", "24"]), "invalid data_offsets"),
        (_offsets("a", [0.0, 24.0]), "invalid data_offsets"),
    ],
)
def test_header_lying_about_offsets(tmp_path, safetensors, no_data_reads, edit, match):
    """Offsets outside the data, inconsistent with shape × itemsize, overlapping, or not
    integers: refused from the header, naming the tensor."""
    path = _write(tmp_path / "lie.safetensors", {"a": np.ones(3), "b": np.ones(2)}, edit=edit)
    with pytest.raises(ValueError, match=match) as info:
        nio.read_safetensors(path)
    assert "lie.safetensors" in str(info.value)
    assert no_data_reads == []


def test_gaps_and_trailing_bytes_are_refused(tmp_path, safetensors, no_data_reads):
    """The tensors must cover the data exactly, back to back (as safetensors requires)."""
    def gap(header):
        header["b"]["data_offsets"] = [32, 48]

    path = _write(tmp_path / "gap.safetensors", {"a": np.ones(3), "b": np.ones(2)}, edit=gap, tail=bytes(8))
    with pytest.raises(ValueError, match="starts at byte 32 .* end at 24: it leaves a gap"):
        nio.read_safetensors(path)
    path = _write(tmp_path / "pad.safetensors", {"a": np.ones(3)}, tail=b"junk")
    with pytest.raises(ValueError, match="holds 28 bytes of data after its header, more than the 24"):
        nio.read_safetensors(path)
    assert no_data_reads == []


@pytest.mark.parametrize("dtype", ["C64", "BOOL", "F8_E4M3", "F8_E5M2", "f64", "", 5, None])
def test_bad_dtype_is_refused(tmp_path, safetensors, no_data_reads, dtype):
    """Only the allow-listed types are read (floats and integers); the message lists them."""
    path = _write(tmp_path / "d.safetensors", {"0.weight": (dtype, [2], bytes(16))})
    with pytest.raises(ValueError, match=r"tensor '0.weight' has dtype .*; npcam reads only F64, F32"):
        npcam.load_weights(_net(), path, strict=False)
    assert no_data_reads == []


@pytest.mark.parametrize(
    "header_text, match",
    [
        (b"{not json}", "not valid JSON"),
        (b"[1, 2]", "does not start with '{'"),
        (b'{"a": [1, 2, 3]}', "must be described by dtype, shape and data_offsets"),
        (b'{"a": {"dtype": "F64", "shape": [1]}}', "must be described by dtype, shape and data_offsets"),
        (b'{"a": {"dtype": "F64", "shape": [-1], "data_offsets": [0, 8]}}', "invalid shape"),
        (b'{"a": {"dtype": "F64", "shape": [true], "data_offsets": [0, 8]}}', "invalid shape"),
        (b'{"a": {"dtype": "F64", "shape": 1, "data_offsets": [0, 8]}}', "invalid shape"),
        (b'{"__metadata__": {"k": 1}}', "__metadata__ must be a JSON object of strings"),
        (b'{"a": {"dtype": "F64", "shape": [' + b"1," * 40 + b'1], "data_offsets": [0, 8]}}',
         "invalid shape"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"{" * 300 + b"}" * 300, "nests 300 levels deep"),
    ],
)
def test_malformed_headers(tmp_path, safetensors, no_data_reads, header_text, match):
    """Whatever the header holds, a ValueError naming the file (never a json, KeyError or
    RecursionError escaping)."""
    data = struct.pack("<Q", len(header_text)) + header_text + bytes(8)
    (tmp_path / "h.safetensors").write_bytes(data)
    with pytest.raises(ValueError, match=match) as info:
        nio.read_safetensors(tmp_path / "h.safetensors")
    assert "h.safetensors" in str(info.value)
    assert no_data_reads == []


def test_shape_mismatch_is_refused_before_reading(tmp_path, safetensors, no_data_reads):
    """Shapes are compared with model.state_dict() from the header; so is an integer
    num_batches_tracked. Nothing is assigned."""
    sd = _net().state_dict()
    sd["0.weight"] = np.ones((4, 3, 3, 2))
    path = _write(tmp_path / "s.safetensors", sd)
    net = _net()
    before = net.state_dict()
    with pytest.raises(ValueError, match=r"tensor '0.weight' must have shape \(4, 3, 3, 3\) for the model, "
                                         r"got \(4, 3, 3, 2\)"):
        npcam.load_weights(net, path)
    sd = _net().state_dict()
    sd["1.num_batches_tracked"] = np.array(1.0)
    with pytest.raises(ValueError, match="'1.num_batches_tracked' must hold integers, got dtype F64"):
        npcam.load_weights(net, _write(tmp_path / "n.safetensors", sd))
    _assert_same_state(net.state_dict(), before)
    assert no_data_reads == []


def test_size_caps(tmp_path, safetensors, no_data_reads):
    """``max_bytes`` bounds the file's size (checked first) and every tensor's claim."""
    path = _write(tmp_path / "w.safetensors", _net().state_dict())
    with pytest.raises(ValueError, match="more than max_bytes = 100"):
        npcam.load_weights(_net(), path, max_bytes=100)
    claim = {"0.weight": ("F64", [10**12], b"")}
    path = _write(tmp_path / "bomb.safetensors", claim)
    with pytest.raises(ValueError, match=r"claims shape \(1000000000000,\) of F64 \(8000000000000 bytes\)"):
        npcam.load_weights(_net(), path, strict=False)
    assert no_data_reads == []


def test_file_changed_after_the_check_is_refused(tmp_path, safetensors, monkeypatch):
    """If the data read disagrees with the header that was checked (the file was
    replaced in between), the read is refused, naming the tensor."""
    path = _write(tmp_path / "w.safetensors", {"a": np.ones(3)})
    with nio.SafetensorsArchive(path) as archive:
        _write(tmp_path / "w.safetensors", {"a": np.ones(4)})
        with pytest.raises(ValueError, match="tensor 'a'"):
            archive.read("a")


# ----------------------------------------------------------------- pickles are refused
UNPICKLED: list = []


class Tripwire:
    def __reduce__(self):
        return (UNPICKLED.append, ("unpickled",))


@pytest.fixture
def no_unpickling(monkeypatch):
    """Any use of pickle's loaders (and torch.load) fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a pickle loader was called")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    torch = sys.modules.get("torch")
    if torch is not None:
        monkeypatch.setattr(torch, "load", refuse)
    UNPICKLED.clear()
    yield
    assert UNPICKLED == []


def _torch_like_zip(path, payload: bytes) -> None:
    """The layout torch.save writes: ``<name>/data.pkl``, ``<name>/version``, ``<name>/data/0``."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/version", b"3\n")
        zf.writestr("archive/data/0", bytes(16))


@pytest.mark.parametrize("name", ["model.pth", "model.pt", "model.bin", "model.safetensors", "model.npz"])
def test_pth_checkpoints_are_refused_without_unpickling(tmp_path, no_unpickling, name):
    """A torch zip checkpoint and a pickle (protocol 2-5) are recognised by their bytes,
    whatever their name, and refused in one sentence saying how to convert them; nothing
    is unpickled (pickle's loaders are disabled; the payload's hook never runs)."""
    payload = pickle.dumps({"0.weight": Tripwire()}, protocol=2)
    for kind in ("zip", "pickle"):
        path = tmp_path / f"{kind}-{name}"
        if kind == "zip":
            _torch_like_zip(path, payload)
        else:
            path.write_bytes(payload)
        with pytest.raises(ValueError) as info:
            npcam.load_weights(_net(), path)
        text = str(info.value)
        assert "pickled PyTorch checkpoint" in text and "never unpickles" in text
        assert "torch.load(path, weights_only=True)" in text and "safetensors.torch.save_file" in text
        assert text.count(". ") == 0 and text.endswith(".")  # one sentence


def test_protocol_0_pickles_are_refused_by_their_suffix(tmp_path, no_unpickling):
    """A protocol-0 pickle has no magic bytes: named .pkl / .pth / .pt / .ckpt it is refused
    as a checkpoint; under another name it is simply not an .npz."""
    payload = pickle.dumps({"0.weight": 1.0}, protocol=0)
    for suffix in (".pkl", ".pth", ".pt", ".ckpt", ".pickle"):
        (tmp_path / f"p{suffix}").write_bytes(payload)
        with pytest.raises(ValueError, match="pickled PyTorch checkpoint"):
            npcam.load_weights(_net(), tmp_path / f"p{suffix}")
    (tmp_path / "p.npz").write_bytes(payload)
    with pytest.raises(ValueError, match="not an .npz file"):
        npcam.load_weights(_net(), tmp_path / "p.npz")


def test_real_torch_save_files_are_refused(tmp_path):
    """Files written by torch.save itself (zip and legacy formats) are refused before any
    unpickling; torch.load is never called."""
    torch = pytest.importorskip("torch")
    sd = {"0.weight": torch.ones(4, 3, 3, 3)}
    torch.save(sd, tmp_path / "new.pth")
    torch.save(sd, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load was called")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "load", refuse)
        mp.setattr(pickle, "load", refuse)
        mp.setattr(pickle, "Unpickler", refuse)
        for name in ("new.pth", "legacy.pt"):
            with pytest.raises(ValueError, match="pickled PyTorch checkpoint .* weights_only=True"):
                npcam.load_weights(_net(), tmp_path / name)


# -------------------------------------------------------------------------- the extra
def test_missing_extra_names_it(tmp_path, monkeypatch):
    """Without the safetensors package a .safetensors file gives an ImportError naming
    the extra ``npcam[safetensors]``; .npz files still load."""
    path = _write(tmp_path / "w.safetensors", _net().state_dict())
    monkeypatch.setitem(sys.modules, "safetensors", None)  # `import safetensors` raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'npcam\[safetensors\]'"):
        npcam.load_weights(_net(), path)
    _net(1).save(tmp_path / "w.npz")
    net = _net()
    npcam.load_weights(net, tmp_path / "w.npz")
    assert np.array_equal(net.state_dict()["0.weight"], _net(1).state_dict()["0.weight"])


def test_safetensors_written_by_hand_equal_the_package_format(tmp_path, safetensors):
    """The test helper writes what safetensors.numpy.save_file writes (so the hostile files
    above differ from real ones only by their lies)."""
    import safetensors.numpy as stn

    arrays = {"a": np.arange(6.0).reshape(2, 3), "b": np.array([1, 2], dtype=np.int64)}
    stn.save_file(arrays, str(tmp_path / "pkg.safetensors"))
    with nio.SafetensorsArchive(tmp_path / "pkg.safetensors") as pkg:
        with nio.SafetensorsArchive(_write(tmp_path / "hand.safetensors", arrays)) as hand:
            assert set(pkg.headers) == set(hand.headers)
            for k in arrays:
                assert (pkg.headers[k].dtype, pkg.headers[k].shape, pkg.headers[k].nbytes) == (
                    hand.headers[k].dtype, hand.headers[k].shape, hand.headers[k].nbytes)
                assert np.array_equal(pkg.read(k), hand.read(k))
