"""npcam.nn.io and npcam.nn.config: the one .npz reader/writer, facing hostile files.

Each regression test cites the case ids of ``reliability-findings.md`` (fuzzing 0.1.0) and
says what 0.1.0 did. The hostile files are built here with ``zipfile`` and
``numpy.lib.format``: a deflate bomb is a member of zeros written with ZIP_DEFLATED, a
header bomb is a ``.npy`` header with no data behind it.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

import npcam
from npcam import _validate
from npcam.nn import io as nio
from npcam.nn.config import plan_config, state_dict_shapes


# ------------------------------------------------------------------------------ helpers
def _net(seed: int = 0) -> npcam.Sequential:
    return npcam.Sequential(
        npcam.Conv2d(3, 4, 3, padding=1, rng=seed), npcam.BatchNorm2d(4), npcam.ReLU(),
        npcam.GlobalAvgPool2d(), npcam.Linear(4, 2, rng=seed + 1),
    )  # fmt: skip


def _header(shape, descr="<f8", fortran=False) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": fortran, "shape": shape})
    return buf.getvalue()


def _npy_bytes(arr) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def _zip(path, members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _deflate_bomb(path, key: str, megabytes: int, *, claim: tuple | None = None, extra=None) -> None:
    """A member of ``megabytes`` MiB of zeros behind a float64 header (claiming exactly that
    many values unless ``claim``), deflated to a few kB."""
    count = megabytes * 2**17
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
        with zf.open(key + ".npy", "w", force_zip64=True) as fh:
            fh.write(_header(claim if claim is not None else (count,)))
            zeros = bytes(2**20)
            for _ in range(megabytes):
                fh.write(zeros)


class _Peak:
    """Peak traced memory (bytes) and seconds of the block."""

    def __enter__(self):
        tracemalloc.start()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        self.peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


def _arch(children) -> np.ndarray:
    return np.array(json.dumps({"type": "Sequential", "children": children}))


# ------------------------------------------------------------------------ path argument
@pytest.mark.parametrize("bad", [None, 123, 4.5, ["w.npz"]])
def test_path_argument_type_is_named(bad):
    """F19: ``load_weights(m, None)`` / ``123`` gave numpy's "expected str, bytes or
    os.PathLike object, not NoneType" without naming the argument; now a TypeError that
    names ``path``."""
    for call in (lambda: npcam.load_weights(_net(), bad), lambda: npcam.load_model(bad),
                 lambda: npcam.zoo.load(bad)):
        with pytest.raises(TypeError, match="^path must be a file path"):
            call()


# ------------------------------------------------------------------------------- bombs
def test_deflate_bomb_refused_from_headers_without_inflating(tmp_path):
    """F04, C85, F03: 0.1.0 inflated a 1.6 MB deflate bomb to 1.6 GB (16.7 s, 1.57 GB RSS;
    MemoryError under a cap) before saying "must have shape (4, 3, 3, 3)". Now the shape in
    the 128-byte header is compared with the model's first: refused at once, with a peak
    memory far below the member's 64 MiB."""
    path = tmp_path / "bomb.npz"
    _deflate_bomb(path, "0.weight", 64)
    assert path.stat().st_size < 200_000
    net = _net()
    with _Peak() as peak, pytest.raises(ValueError, match=r"'0.weight' must have shape \(4, 3, 3, 3\)"):
        npcam.load_weights(net, path, strict=False)
    assert peak.peak < 4 * 2**20 and peak.seconds < 2.0
    with pytest.raises(ValueError, match="missing keys"):
        npcam.load_weights(net, path)


def test_deflate_bomb_refused_by_total_bytes_cap(tmp_path):
    """F03, F04: the zip directory's declared sizes (``ZipInfo.file_size``) are summed and
    compared with ``max_bytes`` before any member is opened, so a bomb that claims to hold
    what it inflates to is refused without inflating (0.1.0: MemoryError under a 1 GB cap)."""
    path = tmp_path / "bomb.npz"
    _deflate_bomb(path, "cam", 64)
    match = r"inflates to \d+ bytes, more than max_bytes = 1000000"
    with _Peak() as peak, pytest.raises(ValueError, match=match):
        nio.read_npz(path, max_bytes=10**6)
    assert peak.peak < 2**20
    with pytest.raises(ValueError, match="max_bytes"):
        npcam.load_model(path, max_bytes=10**6)
    with pytest.raises(ValueError, match="max_bytes"):
        npcam.zoo.load(path, max_bytes=10**6)


def test_bomb_whose_header_lies_small_is_refused(tmp_path):
    """F04 variant: the header claims the model's shape (4, 3, 3, 3) but the member
    inflates to 64 MiB: the member's file_size disagrees with shape × itemsize, so it is
    refused before its data is read."""
    path = tmp_path / "bomb.npz"
    _deflate_bomb(path, "0.weight", 64, claim=(4, 3, 3, 3))
    with _Peak() as peak, pytest.raises(ValueError, match="more than the 864 its header promises"):
        npcam.load_weights(_net(), path, strict=False)
    assert peak.peak < 4 * 2**20


def test_header_bomb_refused_from_the_header(tmp_path):
    """F06, C49, C83: a 144-byte ``.npy`` header claiming 10**12 float64 gave 0.1.0
    "MemoryError: Unable to allocate 7.28 TiB". Now the header's size is compared with
    ``max_bytes``: ValueError naming the file and the claim, without allocating."""
    path = tmp_path / "bomb.npz"
    _zip(path, {"0.weight.npy": _header((10**12,))})
    with _Peak() as peak:
        with pytest.raises(ValueError, match=r"claims shape \(1000000000000,\) of float64"):
            npcam.load_weights(_net(), path, strict=False)
        with pytest.raises(ValueError, match="claims shape"):
            nio.read_npz(path)
    assert peak.peak < 2**20
    npy = tmp_path / "bomb.npy"
    npy.write_bytes(_header((10**12,)))
    with pytest.raises(ValueError, match=r"bomb.npy.*claims shape"):
        nio.read_npy(npy)


def test_truncated_array_is_reported_truncated_not_pickled(tmp_path):
    """F05: a header claiming 8 GB with no data behind it gave 0.1.0 "... holds pickled
    objects, which npcam never loads: EOF: reading array data"; now "truncated", with the
    bytes promised and held. The same for an array cut short by an interrupted download."""
    path = tmp_path / "bomb8.npz"
    _zip(path, {"0.weight.npy": _header((10**9,))})
    with pytest.raises(ValueError, match="truncated: its header promises 8000000000 bytes") as info:
        nio.read_npz(path)
    assert "pickle" not in str(info.value)
    good = _npy_bytes(np.ones((4, 3, 3, 3)))
    _zip(tmp_path / "cut.npz", {"0.weight.npy": good[:-100]})
    with pytest.raises(ValueError, match="truncated") as info:
        npcam.load_weights(_net(), tmp_path / "cut.npz", strict=False)
    assert "pickle" not in str(info.value)
    (tmp_path / "cut.npy").write_bytes(good[:-8])
    with pytest.raises(ValueError, match="truncated: its header promises 864 bytes"):
        nio.read_npy(tmp_path / "cut.npy")


def test_text_file_message_has_no_unpickling_advice(tmp_path):
    """F14: a text file named .npz gave 0.1.0 numpy's "This file contains pickled (object)
    data. If you trust the file you can load it unsafely using the allow_pickle= keyword
    argument"; now "not an .npz file (not a zip archive)", with no such advice."""
    path = tmp_path / "text.npz"
    path.write_text("just some text\n" * 10)
    for call in (lambda: npcam.load_weights(_net(), path), lambda: npcam.load_model(path),
                 lambda: npcam.zoo.load(path)):
        with pytest.raises(ValueError, match="not an .npz file") as info:
            call()
        assert "allow_pickle" not in str(info.value) and "pickle" not in str(info.value)
    with pytest.raises(ValueError, match="not a .npy array") as info:
        nio.read_npy(path)
    assert "allow_pickle" not in str(info.value)


def test_object_arrays_refused_from_header_and_never_unpickled(tmp_path):
    """Kept from 0.1.0: object arrays are refused (now from their header, before their
    pickle is read) and never unpickled, in every reader."""
    hits = []

    class Trip:
        def __reduce__(self):
            return (hits.append, (1,))

    path = tmp_path / "evil.npz"
    np.savez(path, **{"0.weight": np.array([Trip()], dtype=object)})
    for call in (lambda: npcam.load_weights(_net(), path, strict=False),
                 lambda: nio.read_npz(path), lambda: npcam.zoo.load(path)):
        with pytest.raises(ValueError, match="pickled objects .* never unpickles"):
            call()
    np.save(tmp_path / "evil.npy", np.array([Trip()], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="never unpickles"):
        nio.read_npy(tmp_path / "evil.npy")
    assert hits == []


@pytest.mark.parametrize(
    "members, match",
    [
        ({"a.npy": _npy_bytes(np.ones(3)) + b"xx"}, "more than the 24 its header promises"),
        ({"a.txt": b"hello"}, "'a.txt', which is not a .npy array"),
        ({"a.npy": b"garbage that is no npy"}, "array 'a' is not a .npy array"),
        ({"a.npy": _header((2,), descr=[("x", "<f8")]) + bytes(16)}, "plain numbers"),
    ],
)
def test_other_malformed_members(tmp_path, members, match):
    """Extra data after an array, a member that is not .npy, a bad magic string, a
    structured dtype: each a ValueError naming the file and the array."""
    path = tmp_path / "m.npz"
    _zip(path, members)
    with pytest.raises(ValueError, match=match) as info:
        nio.read_npz(path)
    assert "m.npz" in str(info.value)


def test_duplicate_members_and_single_npy(tmp_path):
    """A zip holding the same array twice (numpy would silently take one) and a single
    .npy array given where an .npz is expected: ValueErrors naming the file."""
    path = tmp_path / "dup.npz"
    with pytest.warns(UserWarning, match="Duplicate name"):
        _zip(path, {"a.npy": _npy_bytes(np.ones(2))})
        with zipfile.ZipFile(path, "a") as zf:
            zf.writestr("a.npy", _npy_bytes(np.zeros(2)))
    with pytest.raises(ValueError, match="array 'a' twice"):
        nio.read_npz(path)
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(ValueError, match="single .npy array"):
        npcam.load_weights(_net(), tmp_path / "one.npy")


def test_max_bytes_lowers_the_bound(tmp_path):
    """A caller may lower the bounds: the file's size is checked before opening it."""
    net = _net()
    path = net.save(tmp_path / "m.npz")
    assert isinstance(npcam.load_model(path, max_bytes=10**6), npcam.Sequential)
    with pytest.raises(ValueError, match="more than max_bytes = 1000"):
        npcam.load_model(path, max_bytes=1000)
    with pytest.raises(ValueError, match="more than max_bytes = 1000"):
        npcam.load_weights(net, path, max_bytes=1000)
    with pytest.raises(ValueError, match="max_bytes must be in"):
        npcam.load_model(path, max_bytes=nio.MAX_FILE_BYTES + 1)
    with pytest.raises(TypeError, match="max_bytes"):
        npcam.load_model(path, max_bytes=1e6)


def test_load_weights_does_not_read_unexpected_arrays(tmp_path):
    """strict=False: the common keys load and (missing, unexpected) come back; an
    unexpected member is never read (here a 64 MiB bomb: memory stays small)."""
    net = _net(0)
    sd = net.state_dict()
    path = tmp_path / "w.npz"
    extra = {f"{k}.npy": _npy_bytes(v) for k, v in sd.items() if k != "4.bias"}
    _deflate_bomb(path, "head.weight", 64, extra=extra)
    other = _net(5)
    with _Peak() as peak:
        missing, unexpected = npcam.load_weights(other, path, strict=False)
    assert peak.peak < 4 * 2**20
    assert missing == ["4.bias"] and unexpected == ["head.weight"]
    np.testing.assert_array_equal(other["0"].weight, net["0"].weight)
    with pytest.raises(ValueError, match=r"missing keys \['4.bias'\], unexpected keys \['head.weight'\]"):
        npcam.load_weights(other, path)


def test_wrong_dtypes_refused_from_headers(tmp_path):
    """Weights must be real numbers, num_batches_tracked an integer: checked from the
    header (complex weights and a float counter are refused, naming the array)."""
    sd = _net().state_dict()
    sd["0.bias"] = sd["0.bias"].astype(complex)
    np.savez(tmp_path / "c.npz", **sd)
    with pytest.raises(ValueError, match="'0.bias' must hold real numbers, got dtype complex128"):
        npcam.load_weights(_net(), tmp_path / "c.npz")
    sd = _net().state_dict()
    sd["1.num_batches_tracked"] = np.array(1.0)
    np.savez(tmp_path / "f.npz", **sd)
    with pytest.raises(ValueError, match="'1.num_batches_tracked' must hold integers"):
        npcam.load_weights(_net(), tmp_path / "f.npz")


# ------------------------------------------------------------------ architecture JSON
@pytest.mark.parametrize(
    "architecture, match",
    [
        ([1, 2, 3], r"must describe a Sequential or Graph model, got list \[1, 2, 3\]"),  # F29, C80
        ("Sequential", "must describe a Sequential or Graph model, got str 'Sequential'"),  # F30
        (5, "must describe a Sequential or Graph model, got int 5"),  # F31
        ({"type": "Sequential", "children": [5, 6]},
         r"children\[0\] must be a \[name, config\] pair, got int 5"),  # F32, C81
        ({"type": "Sequential", "children": [["a", {"type": "ReLU"}, "extra"]]},
         r"children\[0\] must be a \[name, config\] pair, got 3 entries"),  # F33
        ({"type": "Sequential", "children": [["0", {"type": "Conv2d", "in_channels": 3, "out_channels": 4,
                                                    "kernel_size": 3.5}]]},
         r"'0' \(Conv2d\): kernel_size must be an int or a pair of ints, got float 3.5\.$"),  # F28
        ({"type": "Sequential", "children": [["0", {"type": "Conv2d", "in_channels": 3, "out_channels": 4,
                                                    "kernel_size": [10**6, 10**6]}]]},
         r"kernel_size must be an int in \[1, 64\], got 1000000"),  # F24, C82
        ({"type": "Sequential", "children": [["0", {"type": "ReLU"}], ["0", {"type": "ReLU"}]]},
         "appears twice"),
        ({"type": "Sequential", "children": []}, "at least one child"),
        ({"type": "Sequential", "children": [["0", {"type": "Linear", "in_features": 4,
                                                    "out_features": 2, "bais": True}]]},
         r"unexpected field\(s\) \['bais'\]"),
    ],
)
def test_malformed_architectures_get_clear_messages(tmp_path, architecture, match):
    """F28, F29/C80, F30, F31, F32/C81, F33, F24/C82: 0.1.0 answered these with
    Python-internal messages ("cannot convert dictionary update sequence element #0",
    "'int' object is not iterable", "cannot unpack non-iterable int object", "too many
    values to unpack (expected 2)", "unexpected fields: kernel_size must be an int, got
    float 3.5..", and a 7.28 TiB MemoryError for the huge kernel). Now one ValueError
    naming the file, the layer and the field, raised before anything is built."""
    path = tmp_path / "arch.npz"
    np.savez(path, __architecture__=np.array(json.dumps(architecture)))
    with _Peak() as peak, pytest.raises(ValueError, match=match) as info:
        npcam.load_model(path)
    message = str(info.value)
    assert message.startswith(f"path {str(path)!r}") and ".." not in message
    assert "unexpected fields: kernel_size" not in message
    assert peak.peak < 2**20


def test_deep_json_is_value_error_not_recursion_error(tmp_path):
    """F20, C78, C79: a deeply nested architecture (or metadata) gave 0.1.0
    "RecursionError: maximum recursion depth exceeded while decoding a JSON array" (a
    26-line traceback in the CLI). Now the nesting is measured without recursion first:
    ValueError naming the file and the bound."""
    deep = "[" * 50_000 + "]" * 50_000
    np.savez(tmp_path / "deep.npz", __architecture__=np.array(deep))
    with pytest.raises(ValueError, match="nests 50000 levels deep, more than MAX_JSON_DEPTH = 256"):
        npcam.load_model(tmp_path / "deep.npz")
    # nesting hidden inside strings does not count; a real deep config does
    assert nio.parse_json('{"a": "[[[[[[[["}', "t") == {"a": "[[[[[[[["}
    config: dict = {"type": "ReLU"}
    for _ in range(_validate.MAX_NESTING + 1):
        config = {"type": "Sequential", "children": [["x", config]]}
    with pytest.raises(ValueError, match="MAX_NESTING = 64"):
        npcam.model_from_config(config)
    np.savez(tmp_path / "deep_meta.npz", **_net().state_dict(), __architecture__=np.array(
        json.dumps(_net().config())), __metadata__=np.array('{"a": ' + "[" * 5000 + "]" * 5000 + "}"))
    with pytest.raises(ValueError, match="__metadata__.*nests"):
        npcam.zoo.load(tmp_path / "deep_meta.npz")


def test_huge_json_integer(tmp_path):
    """F25: a 5000-digit int gave 0.1.0 Python's "Exceeds the limit (4300 digits) for
    integer string conversion", without the path or the field; now a ValueError naming
    the file and the bound on digits."""
    text = ('{"type": "Sequential", "children": [["0", {"type": "Linear", "in_features": '
            + "9" * 5000 + ', "out_features": 2}]]}')
    np.savez(tmp_path / "bigint.npz", __architecture__=np.array(text))
    match = r"bigint.npz.*integer of 5000 digits, more than MAX_JSON_INT_DIGITS"
    with pytest.raises(ValueError, match=match):
        npcam.load_model(tmp_path / "bigint.npz")


@pytest.mark.parametrize("features", [(10000, 10000), (40000, 25000)])
def test_architecture_without_weights_builds_nothing(tmp_path, features):
    """F23, F22 (B7): a 5 kB file whose __architecture__ names Linear(10000, 10000) made
    0.1.0 allocate and randomly initialise 800 MB (peak RSS 1.57 GB) before finding no
    weights; Linear(40000, 25000) asked for 7.45 GiB. Now the shapes the architecture
    implies are compared with the file's headers (or the per-layer bound) first: refused
    at once, with a peak memory of well under 1 MB."""
    path = tmp_path / "arch_bomb.npz"
    inp, out = features
    linear = {"type": "Linear", "in_features": inp, "out_features": out}
    np.savez(path, __architecture__=_arch([["0", linear]]))
    with _Peak() as peak, pytest.raises(ValueError, match="missing keys|MAX_LAYER_PARAMETERS"):
        npcam.load_model(path)
    assert peak.peak < 2**20 and peak.seconds < 1.0


def test_header_shapes_checked_against_the_architecture(tmp_path):
    """An architecture whose weights have other shapes than it implies: refused from the
    headers, naming the array and both shapes."""
    net = _net()
    sd = net.state_dict()
    sd["4.weight"] = np.zeros((3, 4))
    np.savez(tmp_path / "m.npz", **sd, __architecture__=np.array(json.dumps(net.config())))
    match = r"'4.weight' must have shape \(2, 4\) for its architecture, got \(3, 4\)"
    with pytest.raises(ValueError, match=match):
        npcam.load_model(tmp_path / "m.npz")


def test_model_parameter_bounds_refused_before_building():
    """In-memory configs too: more than MAX_MODEL_PARAMETERS in total, or more than
    MAX_LAYER_PARAMETERS / MAX_CHANNELS in one layer, is refused before any allocation."""
    big = {"type": "Linear", "in_features": 30000, "out_features": 30000, "bias": False}
    config = {"type": "Sequential", "children": [[str(i), big] for i in range(3)]}
    with _Peak() as peak, pytest.raises(ValueError, match="MAX_MODEL_PARAMETERS"):
        npcam.model_from_config(config)
    assert peak.peak < 2**20
    with pytest.raises(ValueError, match=r"in_channels must be an int in \[1, 65536\]"):
        npcam.model_from_config({"type": "Conv2d", "in_channels": 70000, "out_channels": 1, "kernel_size": 1})
    match = r"out_features must be an int in \[1, 1000000000\]"
    with _Peak() as peak, pytest.raises(ValueError, match=match):
        npcam.model_from_config({"type": "Linear", "in_features": 4, "out_features": 10**10})
    assert peak.peak < 2**20


LEAF_CONFIGS = [
    npcam.Conv2d(3, 5, (3, 2), stride=2, padding=(1, 0), rng=0),
    npcam.Conv2d(2, 3, 1, bias=False, rng=0),
    npcam.Linear(6, 4, rng=0),
    npcam.Linear(6, 4, bias=False, rng=0),
    npcam.BatchNorm2d(7),
    npcam.ReLU(), npcam.MaxPool2d(2, 1), npcam.GlobalAvgPool2d(), npcam.Flatten(), npcam.Dropout(0.3),
]


@pytest.mark.parametrize("layer", LEAF_CONFIGS, ids=lambda layer: repr(layer))
def test_shapes_from_config_match_the_layer_classes(layer):
    """The shapes computed from a config alone equal the layer's own parameters and
    buffers (its ``param_names`` then ``buffer_names``), key for key and in order."""
    own = {**layer.params(), **layer.buffers()}
    assert state_dict_shapes(layer.config()) == {k: v.shape for k, v in own.items()}
    declared = (*type(layer).param_names, *type(layer).buffer_names)
    names = [n for n in declared if getattr(layer, n) is not None]
    assert list(state_dict_shapes(layer.config())) == names


def test_model_shapes_and_build_from_arrays():
    """A model's shapes from its config equal its state_dict's; ``model_from_config(config,
    state_dict)`` builds it from the arrays (identical state, identical logits), and a
    missing or misshapen array is refused before building."""
    net = _net(3)
    sd = net.state_dict()
    plan = plan_config(json.loads(json.dumps(net.config())))
    assert plan.shapes == {k: v.shape for k, v in sd.items()}
    assert plan.parameters == sum(v.size for v in sd.values()) and plan.layers == 5
    rebuilt = npcam.model_from_config(net.config(), state_dict=sd)
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5))
    np.testing.assert_array_equal(rebuilt.forward(x), net.forward(x))
    with pytest.raises(ValueError, match=r"missing keys \['4.bias'\]"):
        npcam.model_from_config(net.config(), state_dict={k: v for k, v in sd.items() if k != "4.bias"})
    with pytest.raises(ValueError, match=r"state_dict\['4.bias'\] must have shape \(2,\)"):
        npcam.model_from_config(net.config(), state_dict={**sd, "4.bias": np.zeros(3)})
    # without arrays: fresh random weights, as before
    a, b = npcam.model_from_config(net.config()), npcam.model_from_config(net.config())
    assert not np.array_equal(a["0"].weight, b["0"].weight)


def test_in_memory_config_errors_keep_their_types():
    """In memory, the wrong kind of object is a TypeError (as in 0.1.0), wrong content a
    ValueError; both say where in the config."""
    with pytest.raises(TypeError, match="must be a mapping with a 'type' key, got list"):
        npcam.model_from_config([1, 2])
    with pytest.raises(TypeError, match=r"'0' \(Conv2d\): kernel_size must be an int or a pair"):
        npcam.model_from_config({"type": "Sequential", "children": [["0", {
            "type": "Conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": 3.5}]]})
    with pytest.raises(ValueError, match=r"lacks the field\(s\) \['kernel_size'\]"):
        npcam.model_from_config({"type": "MaxPool2d"})
    with pytest.raises(ValueError, match=r"p must be a number in \[0, 1\)"):
        npcam.model_from_config({"type": "Dropout", "p": float("nan")})


# -------------------------------------------------------------------------- the writer
def test_writer_output_is_plain_npz_and_deterministic(tmp_path):
    """write_npz writes what ``numpy.load(allow_pickle=False)`` reads (Fortran order kept),
    the same bytes for the same arrays, and refuses object arrays."""
    arrays = {"a": np.arange(6.0).reshape(2, 3), "f": np.asfortranarray(np.arange(6).reshape(3, 2)),
              "s": np.array("text"), "e": np.zeros((0, 3))}
    nio.write_npz(tmp_path / "x.npz", arrays)
    nio.write_npz(tmp_path / "y.npz", arrays)
    assert (tmp_path / "x.npz").read_bytes() == (tmp_path / "y.npz").read_bytes()
    with np.load(tmp_path / "x.npz", allow_pickle=False) as data:
        assert data.files == ["a", "f", "s", "e"]
        for k, v in arrays.items():
            np.testing.assert_array_equal(data[k], v)
    back = nio.read_npz(tmp_path / "x.npz")
    for k, v in arrays.items():
        np.testing.assert_array_equal(back[k], v)
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
    with pytest.raises(ValueError, match="object"):
        nio.write_npz(tmp_path / "z.npz", {"o": np.array([None], dtype=object)})
    assert not (tmp_path / "z.npz").exists()


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_concurrent_writers_leave_one_complete_file(tmp_path):
    """K02: two writers tore each other's files in 0.1.0 (14 of 30 PNGs mixed, one
    undecodable). save_model / zoo.save write to a temporary file and os.replace it: with
    two threads writing different models to one path 25 times each, while a third reads,
    every read and the final file are one writer's complete model."""
    path = tmp_path / "m.npz"
    nets = [_net(1), _net(2)]
    refs = [n.state_dict() for n in nets]
    nets[0].save(path)
    errors: list[BaseException] = []
    done = threading.Event()

    def write(i):
        try:
            for _ in range(25):
                if i == 0:
                    nets[i].save(path)
                else:
                    npcam.zoo.save(nets[i], path, {"writer": i})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def same_as_one(sd):
        return any(all(np.array_equal(sd[k], ref[k]) for k in ref) for ref in refs)

    reads = []

    def read():
        while not done.is_set():
            reads.append(same_as_one(nio.read_npz(path)))

    threads = [threading.Thread(target=write, args=(i,)) for i in (0, 1)]
    reader = threading.Thread(target=read)
    reader.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    reader.join()
    assert errors == []
    assert reads and all(reads)
    assert same_as_one(npcam.load_model(path).state_dict())
    assert _leftovers(tmp_path) == []


def test_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    """K02: a write that fails half way (here: the second array raises, as a full disk
    would) leaves the previous file intact and no temporary file behind."""
    path = tmp_path / "m.npz"
    old = _net(1)
    old.save(path)
    before = path.read_bytes()
    real = np.lib.format.write_array
    calls = []

    def failing(fp, arr, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            fp.write(b"partial")
            raise OSError("No space left on device")
        return real(fp, arr, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing)
    with pytest.raises(OSError, match="No space"):
        _net(2).save(path)
    calls.clear()
    with pytest.raises(OSError, match="No space"):
        npcam.zoo.save(_net(2), path, {})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == []
    loaded = npcam.load_model(path)
    np.testing.assert_array_equal(loaded["0"].weight, old["0"].weight)


def test_save_model_appends_npz_and_zoo_save_does_not(tmp_path):
    """Kept from 0.1.0: Sequential.save appends ".npz" like numpy; zoo.save uses the path
    as given."""
    assert _net().save(tmp_path / "a") == os.fspath(tmp_path / "a.npz")
    assert (tmp_path / "a.npz").is_file()
    npcam.zoo.save(_net(), tmp_path / "b.weights", {"k": 1})
    model, meta = npcam.zoo.load(tmp_path / "b.weights")
    assert meta == {"k": 1} and isinstance(model, npcam.Sequential)
