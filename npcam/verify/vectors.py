r"""Golden vectors: reference inputs and outputs that other implementations check against.

:func:`write_vectors` writes a small, versioned set of cases (format version
:data:`FORMAT_VERSION`) into a directory: one ``<case>.npz`` per case plus ``index.json``.
Each ``.npz`` holds plain arrays only (no object arrays, readable with
``numpy.load(path, allow_pickle=False)``):

=================== ===================================================================
key                 content
=================== ===================================================================
``architecture``    the npcam ``model.config()`` as JSON text (a 0-d unicode array)
``weight:<name>``   every ``state_dict`` entry (PyTorch's keys and layouts: NCHW, OIHW,
                    Linear (out, in)); load with ``model.load_state_dict``
``input``           x, (N, C, H, W) float64
``target``          the class c per image, (N,) int64 (for an ``argmax`` case: the
                    predicted class, recorded)
``target_rule``     ``"given"`` or ``"argmax"`` (0-d unicode): whether an implementation
                    is given the targets or picks the predicted class itself
``layer``           the Grad-CAM target layer's name (0-d unicode): a ReLU, a conv, a
                    BatchNorm, a max-pool or a graph node
``score``           the differentiated score, ``"logit"``, ``"softmax"`` or
                    ``"log_softmax"`` (0-d unicode)
``logits``          the model output, (N, classes)
``scores``          y^c = logits[n, c_n], (N,)
``activations``     A^k of the target layer, (N, K, h, w)
``gradients``       ∂y^c/∂A^k, (N, K, h, w)
``alpha``           α^c_k = (1/Z) Σ_ij ∂y^c/∂A^k_ij, (N, K)
``raw``             M^c = Σ_k α^c_k A^k, (N, h, w) (Grad-CAM before its ReLU)
``cam``             L^c = ReLU(M^c), (N, h, w)
``cam_upsampled``   L^c resized to (H, W), bilinear with half-pixel centres
``saliency``        ∂y^c/∂x, (N, C, H, W)
``guided_backprop`` ∂y^c/∂x with guided ReLUs, (N, C, H, W)
``deconvnet``       ∂y^c/∂x with deconvnet ReLUs, (N, C, H, W)
``guided_grad_cam`` cam_upsampled ⊙ guided_backprop, (N, C, H, W)
``cam_normalized``  the min-max normalisation of cam_upsampled per image,
                    (u − min u) / (max u − min u) (:func:`npcam.normalize`), (N, H, W)
``counterfactual``  ReLU(−M^c), the counterfactual map of § 5, (N, h, w)
``family:<method>`` the ``cam`` of each deterministic CAM-family method of
                    :data:`FAMILY_METHODS` (npcam's paper formula, the case's layer and
                    targets, the score of :data:`FAMILY_SCORES`), (N, h, w)
=================== ===================================================================

The architecture is a :class:`~npcam.Sequential`'s or a :class:`~npcam.Graph`'s
``config()`` (the ``graph_residual_concat`` case: a residual block and a channel concat);
:func:`case_to_torch` rebuilds any case as a ``torch.nn.Module`` with the same
``state_dict`` keys, and ``npcam vectors --out DIR --torch`` writes a standalone
``<case>.py`` beside each case that does it without npcam.

``index.json`` lists every case with its description, layer, score, targets and the
shape, dtype and SHA-256 (of the C-order bytes) of every array; the conventions at the
kinks (ReLU'(0) = 0, max-pool ties to the first maximum in row-major order, bilinear
resizing with half-pixel centres); the tolerance of every quantity; and
:func:`npcam.show_versions` of the machine that wrote it.

Inputs and weights come from fixed seeds (``numpy.random.default_rng``), so the vectors
regenerate bit-identically on the same machine (the ``.npz`` files are written with
fixed zip timestamps, so even the files are byte-identical) and within 1e-13 of each
array's scale elsewhere (BLAS blocking changes the last bits). The ``maxpool_ties`` case
uses small integer weights and inputs, so that max-pool windows hold exact ties and
ReLUs receive exact zeros: there the conventions, not rounding, decide the result.

:func:`compare` checks another implementation's array (a ``.npy`` file) against one
quantity of one case and reports the maximum absolute error, the maximum error relative
to ``max|reference|``, the Pearson correlation, and PASS/FAIL at the stated tolerance;
``npcam vectors --out DIR`` and ``npcam compare THEIRS.npy --vectors DIR --case NAME
--quantity cam`` are the command-line forms (exit 0 PASS, 1 FAIL, 2 error).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_write
from .._validate import describe
from ..image import normalize, upsample
from ..methods.grad_cam import counterfactual, grad_cam
from ..methods.gradients import deconvnet, guided_backprop, saliency
from ..methods.guided_grad_cam import guided_grad_cam
from ..methods.registry import METHODS
from ..nn import layers
from ..nn.config import model_from_config
from ..nn.graph import Graph
from ..nn.io import NpzArchive, parse_json, read_json, read_npy, write_npz
from ..nn.ops import Add, Concat
from ..nn.sequential import Sequential
from .environment import show_versions

__all__ = [
    "CASES",
    "CONVENTIONS",
    "FAMILY_METHODS",
    "FORMAT_VERSION",
    "MAX_CASE_BYTES",
    "QUANTITIES",
    "TOLERANCES",
    "Comparison",
    "case_inputs",
    "case_to_torch",
    "compare",
    "load_case",
    "read_index",
    "write_torch_scripts",
    "write_vectors",
]

#: Version of the file layout and of the case definitions; bumped on any change to them.
FORMAT_VERSION = 2
INDEX_NAME = "index.json"
WEIGHT_PREFIX = "weight:"
#: Bytes of one case file, and of the array given to :func:`compare`, that npcam reads
#: (256 MiB; the cases of format version 1 are under 100 kB each). Larger files are
#: refused from their zip directory and ``.npy`` headers, before any data is read.
MAX_CASE_BYTES = 2**28
#: Characters of ``index.json`` npcam reads (16 Mi; version 1 writes about 40 k).
MAX_INDEX_CHARS = 2**24

#: The quantities every case holds, in the order of the module docstring's table.
QUANTITIES = (
    "logits",
    "scores",
    "activations",
    "gradients",
    "alpha",
    "raw",
    "cam",
    "cam_upsampled",
    "saliency",
    "guided_backprop",
    "deconvnet",
    "guided_grad_cam",
    "cam_normalized",
    "counterfactual",
)

#: The CAM-family methods whose maps every case holds (``family:<method>``): the
#: deterministic ones (SS-CAM, IS-CAM and SmoothGrad-CAM++ draw noise; FullGrad has no
#: target layer).
FAMILY_METHODS = (
    "grad-cam++", "xgrad-cam", "hires-cam", "grad-cam-elementwise", "layer-cam", "score-cam",
    "ablation-cam", "eigen-cam", "eigen-grad-cam",
)
FAMILY_PREFIX = "family:"
#: The score of each ``family:<method>`` map, whatever the case's score: npcam's default
#: for the method (the paper's), except Ablation-CAM, whose weight (y^c − y^c_k)/y^c
#: needs y^c > 0: the softmax.
FAMILY_SCORES = {
    "grad-cam++": "logit", "xgrad-cam": "logit", "hires-cam": "logit",
    "grad-cam-elementwise": "logit", "layer-cam": "logit", "score-cam": "softmax",
    "ablation-cam": "softmax", "eigen-cam": "logit", "eigen-grad-cam": "logit",
}

#: Quantities that ``compare(..., convention=NAME)`` recomputes in a library's convention.
CONVENTION_QUANTITIES = ("cam", "guided_grad_cam")

#: Bars on ``max|theirs − reference| / max|reference|`` (rule R1, the same tiers as
#: :func:`npcam.verify.diagnose`): float64 implementations agree to round-off (observed
#: ≤ 1e-15 against torch/captum); float32 ones to ~1e-7 per operation, 1e-5 in all.
TOLERANCES: dict[str, dict[str, float]] = {
    q: {"float64": 1e-10, "float32": 1e-5}
    for q in (*QUANTITIES, *(FAMILY_PREFIX + m for m in FAMILY_METHODS))
}

CONVENTIONS = {
    "layout": "NCHW activations; conv weight (C_out, C_in, kH, kW); linear weight (out, in)",
    "relu_derivative_at_zero": "0: backward dx = dy * [x > 0] (PyTorch)",
    "max_pool_ties": "the whole gradient goes to the first maximum of the window in row-major "
    "order (PyTorch's CPU kernel)",
    "guided_relu": "dx = dy * [x > 0] * [dy > 0]",
    "deconvnet_relu": "dx = dy * [dy > 0]",
    "grad_cam_weights": "alpha = mean over the h*w positions of dy^c/dA (not the sum)",
    "upsample": "bilinear with half-pixel centres: torch.nn.functional.interpolate("
    "mode='bilinear', align_corners=False)",
    "score": "per case (index 'score'): logit (the class score before softmax), softmax or "
    "log_softmax",
    "target": "per case (index 'target_rule'): given, or argmax (the predicted class, recorded "
    "under 'target')",
    "cam_normalized": "(u - min u) / (max u - min u) per image of cam_upsampled; 0 for a "
    "constant map",
    "batchnorm": "eval mode: running statistics",
}


# ------------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class _Case:
    description: str
    build: Callable[[], Sequential | Graph]
    input_shape: tuple[int, int, int, int]
    target: tuple[int, ...] | None  # None: the predicted class (recorded)
    layer: str
    seed: int
    integer: bool = False  # small integer weights and inputs (exact ties and zeros)
    score: str = "logit"


def _gap_fc() -> Sequential:
    return Sequential(
        layers.Conv2d(3, 6, 3, padding=1), layers.ReLU(),
        layers.Conv2d(6, 8, 3, padding=1), layers.ReLU(),
        layers.GlobalAvgPool2d(), layers.Flatten(), layers.Linear(8, 5),
    )


def _vgg() -> Sequential:
    return Sequential(
        layers.Conv2d(3, 4, 3, padding=1), layers.ReLU(), layers.MaxPool2d(2),
        layers.Conv2d(4, 6, 3, padding=1), layers.ReLU(), layers.MaxPool2d(2),
        layers.Flatten(), layers.Linear(24, 10), layers.ReLU(), layers.Linear(10, 4),
    )


def _strided() -> Sequential:
    return Sequential(
        layers.Conv2d(3, 5, 4, stride=2), layers.ReLU(),
        layers.Conv2d(5, 7, 3, stride=2), layers.ReLU(),
        layers.GlobalAvgPool2d(), layers.Linear(7, 3),
    )


def _nested() -> Sequential:
    return Sequential(
        features=Sequential(
            layers.Conv2d(3, 4, 3, padding=1), layers.ReLU(), layers.MaxPool2d(2),
            layers.Conv2d(4, 8, 3, padding=1), layers.ReLU(),
        ),
        classifier=Sequential(
            layers.GlobalAvgPool2d(), layers.Flatten(), layers.Dropout(0.5), layers.Linear(8, 6)
        ),
    )


def _batchnorm() -> Sequential:
    return Sequential(
        layers.Conv2d(3, 6, 3, padding=1, bias=False), layers.BatchNorm2d(6), layers.ReLU(),
        layers.MaxPool2d(2),
        layers.Conv2d(6, 8, 3), layers.BatchNorm2d(8), layers.ReLU(),
        layers.GlobalAvgPool2d(), layers.Flatten(), layers.Linear(8, 4),
    )


def _ties() -> Sequential:
    return Sequential(
        layers.Conv2d(2, 3, 3, padding=1), layers.ReLU(), layers.MaxPool2d(2),
        layers.Conv2d(3, 4, 3, padding=1), layers.ReLU(),
        layers.GlobalAvgPool2d(), layers.Flatten(), layers.Linear(4, 3),
    )


def _residual_concat() -> Graph:
    """conv-bn-relu, a residual block (conv-bn-relu-conv-bn, add, relu), two conv branches
    concatenated along the channels, relu, global average pooling, linear. Node names are
    torch attribute names, so the state_dict keys are a torch module's
    (:func:`case_to_torch`)."""
    bn = layers.BatchNorm2d
    nodes = [
        ("conv1", layers.Conv2d(3, 6, 3, padding=1, bias=False), ("input",)),
        ("bn1", bn(6), ("conv1",)),
        ("relu1", layers.ReLU(), ("bn1",)),
        ("b_conv1", layers.Conv2d(6, 6, 3, padding=1, bias=False), ("relu1",)),
        ("b_bn1", bn(6), ("b_conv1",)),
        ("b_relu", layers.ReLU(), ("b_bn1",)),
        ("b_conv2", layers.Conv2d(6, 6, 3, padding=1, bias=False), ("b_relu",)),
        ("b_bn2", bn(6), ("b_conv2",)),
        ("add", Add(), ("b_bn2", "relu1")),
        ("relu2", layers.ReLU(), ("add",)),
        ("br1", layers.Conv2d(6, 4, 1), ("relu2",)),
        ("br2", layers.Conv2d(6, 4, 3, padding=1), ("relu2",)),
        ("cat", Concat(1), ("br1", "br2")),
        ("relu3", layers.ReLU(), ("cat",)),
        ("gap", layers.GlobalAvgPool2d(), ("relu3",)),
        ("fc", layers.Linear(8, 5), ("gap",)),
    ]
    return Graph(nodes, "fc")


#: The cases of format version 2. Changing any of them means bumping FORMAT_VERSION.
CASES: dict[str, _Case] = {
    "gap_fc": _Case(
        "conv-relu-conv-relu, then global average pooling and one linear layer (the CAM "
        "architecture); odd, non-square input", _gap_fc, (2, 3, 9, 11), (1, 3), "3", 101,
    ),
    "vgg_flatten_fc": _Case(
        "VGG-style: two conv-relu-maxpool blocks, then Flatten -> Linear -> ReLU -> Linear; "
        "target layer before the last max-pool", _vgg, (2, 3, 8, 10), (2, 0), "4", 102,
    ),
    "strided": _Case(
        "strided convolutions without padding (4x4 stride 2, 3x3 stride 2), GAP -> Linear "
        "without Flatten", _strided, (2, 3, 13, 16), (0, 2), "3", 103,
    ),
    "nested": _Case(
        "nested containers features.* / classifier.*; the target layer is the container "
        "'features' (its last child)", _nested, (2, 3, 10, 14), (5, 1), "features", 104,
    ),
    "batchnorm": _Case(
        "conv (no bias) -> BatchNorm2d in eval mode (non-trivial running statistics), twice",
        _batchnorm, (2, 3, 11, 12), (3, 1), "6", 105,
    ),
    "maxpool_ties": _Case(
        "small integer weights and inputs: exact ties in max-pool windows right after a "
        "conv/ReLU (the gradient goes to the first maximum) and exact zeros into ReLUs "
        "(ReLU'(0) = 0); a 4x4 target map, so 1/Z is exact and every value is a dyadic "
        "rational computed without rounding", _ties, (2, 2, 8, 8), (0, 2), "4", 110, integer=True,
    ),
    "conv_layer": _Case(
        "the gap_fc architecture with the target layer a conv's output (before its ReLU): the "
        "map can be negative where a ReLU output's cannot", _gap_fc, (3, 3, 10, 13), (4, 0, 2),
        "2", 106,
    ),
    "softmax_argmax": _Case(
        "VGG-style, the softmax probability as the score, the predicted classes as targets "
        "(recorded) and a max-pool output as the layer", _vgg, (3, 3, 8, 10), None, "5", 107,
        score="softmax",
    ),
    "bn_log_softmax": _Case(
        "conv -> BatchNorm2d (eval), the log-softmax as the score, a BatchNorm output as the "
        "layer and the predicted classes as targets", _batchnorm, (3, 3, 11, 12), None, "5", 109,
        score="log_softmax",
    ),
    "graph_residual_concat": _Case(
        "a Graph: a residual block (out = relu(bn2(...) + x)) and a concat of two conv "
        "branches, then GAP and a linear layer; the layer is the ReLU after the concat, the "
        "targets the predicted classes", _residual_concat, (3, 3, 9, 12), None, "relu3", 120,
    ),
}


def _weights(model: Sequential | Graph, rng: np.random.Generator, integer: bool) -> dict[str, np.ndarray]:
    """Deterministic weights for every state_dict entry, in state_dict order."""
    out: dict[str, np.ndarray] = {}
    leaves = dict(model.named_layers() if isinstance(model, Sequential) else model.named_nodes())
    for key, value in model.state_dict().items():
        layer_name, attr = key.rsplit(".", 1)
        layer = leaves[layer_name]
        shape = value.shape
        if attr == "num_batches_tracked":
            out[key] = np.array(0, dtype=np.int64)
        elif isinstance(layer, layers.BatchNorm2d):
            if attr in ("weight", "running_var"):
                low, high = (0.5, 1.5) if attr == "weight" else (0.5, 2.0)
                out[key] = rng.uniform(low, high, shape)
            else:  # bias, running_mean
                out[key] = 0.2 * rng.standard_normal(shape)
        elif integer:
            low, high = (-1, 2) if attr == "weight" else (0, 2)
            out[key] = rng.integers(low, high, size=shape).astype(np.float64)
        elif attr == "weight":
            fan_in = int(np.prod(shape[1:]))
            out[key] = rng.standard_normal(shape) / np.sqrt(fan_in)
        else:
            out[key] = 0.1 * rng.standard_normal(shape)
    return out


def _compute(name: str) -> dict[str, np.ndarray]:
    """Every array of case ``name``."""
    case = CASES[name]
    rng = np.random.default_rng(case.seed)
    model = case.build()
    weights = _weights(model, rng, case.integer)
    model.load_state_dict(weights)
    model.eval()
    if case.integer:
        x = rng.integers(0, 3, size=case.input_shape).astype(np.float64)
    elif case.target is None:
        # an argmax case must be able to show target and ReLU bugs: its images predict at
        # least two classes and their raw maps take both signs (deterministic from the seed)
        from .revealing import revealing_batch

        n, *shape = case.input_shape
        x = revealing_batch(model, tuple(shape), n=n, layer=case.layer, rng=rng, score=case.score)
    else:
        x = rng.standard_normal(case.input_shape)
    logits = model.run(x).output
    if case.target is None:
        target = logits.argmax(axis=1)
    else:
        target = np.array(case.target, dtype=np.int64)
    score = case.score
    r = grad_cam(model, x, target, case.layer, score)
    # Grad-CAM always has them (only CAM's gradients, and FullGrad's arrays, are None)
    assert r.gradients is not None and r.activations is not None and r.weights is not None
    up = upsample(r.cam, x.shape[2:])
    arrays: dict[str, np.ndarray] = {
        "architecture": np.array(json.dumps(model.config(), sort_keys=True)),
        "layer": np.array(case.layer),
        "score": np.array(score),
        "target_rule": np.array("argmax" if case.target is None else "given"),
        "input": x,
        "target": target,
        "logits": logits,
        "scores": r.scores,
        "activations": r.activations,
        "gradients": r.gradients,
        "alpha": r.weights,
        "raw": r.raw,
        "cam": r.cam,
        "cam_upsampled": up,
        "saliency": saliency(model, x, target, score),
        "guided_backprop": guided_backprop(model, x, target, score),
        "deconvnet": deconvnet(model, x, target, score),
        "guided_grad_cam": guided_grad_cam(model, x, target, case.layer, score=score),
        "cam_normalized": normalize(up),
        "counterfactual": counterfactual(model, x, target, case.layer, score).cam,
    }
    for method in FAMILY_METHODS:
        fn = METHODS[method].function
        arrays[FAMILY_PREFIX + method] = fn(model, x, target, case.layer, score=FAMILY_SCORES[method]).cam
    arrays.update({WEIGHT_PREFIX + k: v for k, v in weights.items()})
    return {k: np.array(v, order="C") for k, v in arrays.items()}  # keeps 0-d arrays 0-d


def _sha256(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def _write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Like ``numpy.savez`` (uncompressed), with fixed zip timestamps and sorted members,
    so that the same arrays always give the same bytes; atomic (:func:`npcam.nn.io.write_npz`)."""
    write_npz(path, {key: arrays[key] for key in sorted(arrays)})


def write_vectors(out_dir: str | os.PathLike) -> dict[str, Any]:
    """Write every case of :data:`CASES` and ``index.json`` into ``out_dir`` (created if
    needed; files of the same names are overwritten). Returns the index (as written)."""
    out = Path(os.fspath(out_dir))
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {str(out)!r} exists and is not a directory.")
    out.mkdir(parents=True, exist_ok=True)
    cases: dict[str, Any] = {}
    for name, case in CASES.items():
        arrays = _compute(name)
        _write_npz(out / f"{name}.npz", arrays)
        cases[name] = {
            "file": f"{name}.npz",
            "description": case.description,
            "layer": case.layer,
            "score": case.score,
            "target_rule": "argmax" if case.target is None else "given",
            "target": [int(t) for t in arrays["target"]],
            "input_shape": list(case.input_shape),
            "seed": case.seed,
            "quantities": [*QUANTITIES, *(FAMILY_PREFIX + m for m in FAMILY_METHODS)],
            "family_scores": dict(FAMILY_SCORES),
            "arrays": {
                key: {"shape": list(arr.shape), "dtype": str(arr.dtype), "sha256": _sha256(arr)}
                for key, arr in sorted(arrays.items())
            },
        }
    index = {
        "format": "npcam golden vectors",
        "format_version": FORMAT_VERSION,
        "description": "Reference CAM / Grad-CAM quantities computed by npcam in float64; "
        "see npcam.vectors for the meaning of every array.",
        "conventions": CONVENTIONS,
        "tolerances": {
            "metric": "max|theirs - reference| / max|reference| (one scale per array)",
            "quantities": TOLERANCES,
        },
        "cases": cases,
        "versions": show_versions(),
    }
    text = json.dumps(index, indent=1, sort_keys=False) + "\n"
    with atomic_write(out / INDEX_NAME) as fh:
        fh.write(text.encode("utf-8"))
    return index


# ------------------------------------------------------------------------------ reading
def _malformed(path: Path, what: str) -> ValueError:
    return ValueError(f"{str(path)!r}: {INDEX_NAME} is malformed: {what}.")


def _check_index(index: Any, path: Path) -> dict[str, Any]:
    """The structure :func:`load_case` and :func:`compare` rely on, checked up front."""
    if not isinstance(index, dict):
        raise _malformed(path, f"it must be a JSON object, got {describe(index)}")
    version = index.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has format_version {version!r}; this npcam reads version {FORMAT_VERSION}."
        )
    cases = index.get("cases")
    if not isinstance(cases, dict):
        raise _malformed(path, f'"cases" must be an object of case name -> entry, got {describe(cases)}')
    for name, entry in cases.items():
        where = f"case {name!r}"
        if not isinstance(entry, dict):
            raise _malformed(path, f"{where} must be an object, got {describe(entry)}")
        for key in ("file", "quantities", "arrays"):
            if key not in entry:
                raise _malformed(path, f'{where} has no "{key}"')
        file = entry["file"]
        if not (isinstance(file, str) and file.endswith(".npz") and os.path.basename(file) == file
                and file not in (".npz",) and not file.startswith(".")):
            raise _malformed(path, f'{where}: "file" must be a file name ending in .npz, got {file!r}')
        quantities = entry["quantities"]
        if not (isinstance(quantities, list) and all(isinstance(q, str) for q in quantities)):
            got = describe(quantities)
            raise _malformed(path, f'{where}: "quantities" must be a list of names, got {got}')
        arrays = entry["arrays"]
        if not isinstance(arrays, dict) or not all(
            isinstance(meta, dict) and isinstance(meta.get("sha256"), str) for meta in arrays.values()
        ):
            raise _malformed(path, f'{where}: "arrays" must map array names to objects with a "sha256"')
        missing = [q for q in quantities if q not in arrays]
        if missing:
            raise _malformed(path, f'{where} lists quantities {missing} that "arrays" lacks')
    tolerances = index.get("tolerances")
    tiers = tolerances.get("quantities") if isinstance(tolerances, dict) else None
    if not isinstance(tiers, dict):
        raise _malformed(path, '"tolerances" must hold a "quantities" object')
    for quantity, tier in tiers.items():
        if not (isinstance(tier, dict) and all(
            isinstance(tier.get(k), (int, float)) and not isinstance(tier.get(k), bool) and tier[k] >= 0
            for k in ("float64", "float32")
        )):
            raise _malformed(path, f"the tolerances of {quantity!r} must be float64 and float32 numbers >= 0")
    return index


def read_index(vectors_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``index.json`` of a vectors directory, after checking its format version and
    its structure.

    Raises
    ------
    FileNotFoundError
        No ``index.json``.
    ValueError
        Not JSON (or beyond the bounds of :func:`npcam.nn.io.parse_json`), another format
        version, or a malformed index (a case without ``"quantities"``, ``"cases"`` not an
        object, ...).
    """
    if not isinstance(vectors_dir, (str, os.PathLike)):
        raise TypeError(f"vectors_dir must be a directory path, got {describe(vectors_dir)}.")
    path = Path(os.fspath(vectors_dir)) / INDEX_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"vectors directory {os.fspath(vectors_dir)!r} has no {INDEX_NAME}; write one with "
            "`npcam vectors --out DIR`."
        )
    index = read_json(path, max_chars=MAX_INDEX_CHARS, label=repr(str(path)))
    return _check_index(index, path)


def _case_entry(index: dict[str, Any], case: Any) -> dict[str, Any]:
    cases = index["cases"]
    if not isinstance(case, str) or case not in cases:
        raise ValueError(f"case must be one of {sorted(cases)}, got {case!r}.")
    return cases[case]


def load_case(vectors_dir: str | os.PathLike, case: str) -> dict[str, np.ndarray]:
    """Every array of one case, checked against ``index.json``.

    The case file is read by :class:`npcam.nn.io.NpzArchive` with a cap of
    :data:`MAX_CASE_BYTES`: its members' names, shapes and dtypes are compared with the
    index before any data is read, and every array's SHA-256 after.
    """
    entry = _case_entry(read_index(vectors_dir), case)
    path = Path(os.fspath(vectors_dir)) / entry["file"]
    if not path.is_file():
        raise FileNotFoundError(f"case file {str(path)!r} listed in {INDEX_NAME} does not exist.")
    with NpzArchive(path, max_bytes=MAX_CASE_BYTES, label=f"case file {str(path)!r}") as archive:
        for key, meta in entry["arrays"].items():
            header = archive.headers.get(key)
            shape, dtype = meta.get("shape"), meta.get("dtype")
            if header is None or (
                shape is not None and list(header.shape) != shape
            ) or (dtype is not None and str(header.dtype) != dtype):
                raise ValueError(
                    f"case file {str(path)!r}: array {key!r} does not match its entry in {INDEX_NAME}."
                )
        arrays = {k: archive.read(k) for k in archive.headers}
    for key, meta in entry["arrays"].items():
        if _sha256(arrays[key]) != meta["sha256"]:
            raise ValueError(
                f"case file {str(path)!r}: array {key!r} does not match its SHA-256 in {INDEX_NAME}."
            )
    return arrays


def _case_model(arrays: dict[str, np.ndarray]) -> Sequential | Graph:
    text = arrays.get("architecture")
    if text is None or text.dtype.kind != "U" or text.shape != ():
        raise ValueError("the case holds no architecture (a JSON string under 'architecture').")
    config = parse_json(str(text[()]), "the case's architecture")
    n = len(WEIGHT_PREFIX)
    weights = {k[n:]: v for k, v in arrays.items() if k.startswith(WEIGHT_PREFIX)}
    model = model_from_config(config, state_dict=weights)
    if not isinstance(model, (Sequential, Graph)):
        raise ValueError("the case's architecture is not a Sequential or a Graph.")
    return model.eval()


def _text(arrays: dict[str, np.ndarray], key: str, allowed: tuple[str, ...]) -> str:
    value = arrays.get(key)
    if value is None or value.dtype.kind != "U" or value.shape != () or str(value[()]) not in allowed:
        raise ValueError(f"the case's {key!r} must be one of {allowed}.")
    return str(value[()])


def case_inputs(arrays: dict[str, np.ndarray]) -> tuple[Sequential | Graph, np.ndarray, Any, str, str]:
    """``(model, x, target, layer, score)`` of a case loaded by :func:`load_case`: what
    :func:`npcam.verify.diagnose` needs. ``target`` is None for an ``argmax`` case (the
    implementation under test picks the predicted class), else the (N,) classes."""
    model = _case_model(arrays)
    rule = _text(arrays, "target_rule", ("given", "argmax"))
    score = _text(arrays, "score", ("logit", "softmax", "log_softmax"))
    layer = arrays.get("layer")
    if layer is None or layer.dtype.kind != "U" or layer.shape != ():
        raise ValueError("the case holds no layer name (a string under 'layer').")
    target = None if rule == "argmax" else arrays["target"]
    return model, arrays["input"], target, str(layer[()]), score


def _read_theirs(theirs: Any) -> np.ndarray:
    """An array given directly, or read from a ``.npy`` file without unpickling (header
    first, at most :data:`MAX_CASE_BYTES`)."""
    if isinstance(theirs, np.ndarray):
        arr = theirs
    else:
        if not isinstance(theirs, (str, os.PathLike)):
            raise TypeError(f"theirs must be a path to a .npy file or an array, got {describe(theirs)}.")
        path = os.fspath(theirs)
        arr = read_npy(path, max_bytes=MAX_CASE_BYTES, label=f"file {path!r}")
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"theirs must hold real numbers, got dtype {arr.dtype}.")
    return arr


# ------------------------------------------------------------------------------ compare
@dataclass(frozen=True)
class Comparison:
    """The result of :func:`compare`; ``str()`` gives the printed report."""

    case: str
    quantity: str
    convention: str | None
    shape: tuple[int, ...]
    dtype: str  #: dtype of the array under test
    max_abs_error: float  #: max |theirs − reference|
    scale: float  #: max |reference|
    max_rel_error: float  #: max_abs_error / scale
    correlation: float | None  #: Pearson r over all elements; None when either is constant
    tolerance: float  #: the bar on max_rel_error
    passed: bool
    float64_passed: bool = False  #: within the index's float64 tier
    float32_passed: bool = False  #: within the index's float32 tier
    float64_tier: float = 1e-10
    float32_tier: float = 1e-5

    def __str__(self) -> str:
        conv = f" (convention {self.convention})" if self.convention else ""
        corr = "undefined (constant array)" if self.correlation is None else f"{self.correlation:.15f}"
        return "\n".join(
            [
                f"case {self.case}, quantity {self.quantity}{conv}",
                f"  shape            {self.shape} {self.dtype}",
                f"  max abs error    {self.max_abs_error:.3e}",
                f"  max |reference|  {self.scale:.3e}",
                f"  max rel error    {self.max_rel_error:.3e}  (tolerance {self.tolerance:.0e})",
                f"  correlation      {corr}",
                f"  tiers            {'PASS' if self.float32_passed else 'FAIL'} at the float32 tier "
                f"({self.float32_tier:.0e}), {'PASS' if self.float64_passed else 'FAIL'} at the float64 "
                f"bar ({self.float64_tier:.0e})",
                f"  result           {'PASS' if self.passed else 'FAIL'}",
            ]
        )


def _correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    a = a.ravel() - a.mean()
    b = b.ravel() - b.mean()
    na, nb = float(np.sqrt(a @ a)), float(np.sqrt(b @ b))
    if na == 0.0 or nb == 0.0:
        return None
    return float(np.clip((a @ b) / (na * nb), -1.0, 1.0))


def _convention_reference(arrays: dict[str, np.ndarray], quantity: str, convention: str,
                          score: str | None, method: str, options: Mapping[str, Any]) -> np.ndarray:
    if quantity not in CONVENTION_QUANTITIES:
        raise ValueError(
            f"convention applies to quantity {' or '.join(CONVENTION_QUANTITIES)}, got {quantity!r}."
        )
    try:
        from . import conventions
    except ImportError as exc:  # pragma: no cover - conventions ships with npcam
        raise ValueError(f"convention {convention!r} needs npcam.conventions: {exc}") from exc
    model = _case_model(arrays)
    x, target, layer = arrays["input"], arrays["target"], str(arrays["layer"][()])
    if method != "grad-cam":
        if quantity != "cam":
            raise ValueError(
                f"a CAM-family convention (method {method!r}) gives quantity cam, got {quantity!r}."
            )
        out = conventions.cam(method, model, x, target, layer, convention, None, score, **options)
        return np.asarray(out)
    if quantity == "cam":
        return np.asarray(conventions.grad_cam(model, x, target, layer, convention, None, score, **options))
    return np.asarray(conventions.guided_grad_cam(model, x, target, layer, convention, score, **options))


def compare(
    theirs: str | os.PathLike | np.ndarray,
    vectors_dir: str | os.PathLike,
    case: str,
    quantity: str,
    convention: str | None = None,
    tolerance: float | None = None,
    *,
    score: str | None = None,
    method: str = "grad-cam",
    options: Mapping[str, Any] | None = None,
) -> Comparison:
    """Compare another implementation's array with one quantity of one case.

    Parameters
    ----------
    theirs : path of a ``.npy`` file (read with ``allow_pickle=False``) or an array; its
        shape must equal the reference's exactly (nothing is squeezed or broadcast).
    vectors_dir : a directory written by :func:`write_vectors`.
    case, quantity : names listed in ``index.json`` (:data:`QUANTITIES`).
    convention : None compares with npcam's stored array; a name of
        ``npcam.conventions.NAMES`` (``"captum"``, ``"pytorch-grad-cam"``, …) instead
        recomputes ``cam`` or ``guided_grad_cam`` from the case's model as that library
        returns it (its shape, dtype, resizing and normalisation; its default score).
    tolerance : the bar on the relative error; default the index's value for the
        quantity, its ``float32`` tier when theirs (or the convention's output) is float32
        or narrower. Both tiers are reported (``float64_passed``, ``float32_passed``), so
        a float32 array is never passed without saying that it fails the float64 bar.
    score : with ``convention``: the score the library differentiates (None: the
        library's default, :data:`npcam.conventions.DEFAULT_SCORES`).
    method : with ``convention``: ``"grad-cam"`` or a CAM-family method of
        ``npcam.conventions.FAMILY_NAMES`` (quantity ``cam``).
    options : with ``convention``: the convention's own options
        (``{"relu_attributions": True}``, ``{"interpolate_mode": "bilinear"}``, …).

    Returns a :class:`Comparison`; ``passed`` means ``max|theirs − ref| / max|ref| ≤
    tolerance`` with every value of theirs finite. Raises ``FileNotFoundError`` for a
    missing file or directory and ``ValueError`` for an unknown case or quantity, a shape
    mismatch or an unreadable file.
    """
    index = read_index(vectors_dir)
    entry = _case_entry(index, case)
    if not isinstance(quantity, str) or quantity not in entry["quantities"]:
        raise ValueError(f"quantity must be one of {entry['quantities']}, got {quantity!r}.")
    arr = _read_theirs(theirs)
    arrays = load_case(vectors_dir, case)
    if convention is None:
        if score is not None or method != "grad-cam" or options:
            raise ValueError("score, method and options apply with a convention; give convention=...")
        ref = arrays[quantity]
    else:
        ref = _convention_reference(arrays, quantity, convention, score, method, dict(options or {}))
    if arr.shape != ref.shape:
        raise ValueError(
            f"theirs has shape {arr.shape}, but {quantity!r} of case {case!r}"
            f"{f' in convention {convention!r}' if convention else ''} has shape {ref.shape}."
        )
    if tolerance is None:
        narrow = arr.dtype.kind == "f" and arr.dtype.itemsize < 8 or ref.dtype.itemsize < 8
        tiers = index["tolerances"]["quantities"].get(quantity)
        if tiers is None:
            raise _malformed(Path(os.fspath(vectors_dir)) / INDEX_NAME, f"no tolerance for {quantity!r}")
        bar = float(tiers["float32" if narrow else "float64"])
    else:
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance >= 0:
            raise ValueError(f"tolerance must be a number >= 0, got {tolerance!r}.")
        bar = float(tolerance)
    a = arr.astype(np.float64)
    r = ref.astype(np.float64)
    finite = bool(np.isfinite(a).all())
    if finite:
        max_abs = float(np.abs(a - r).max()) if a.size else 0.0
        corr = _correlation(a, r) if a.size else None
    else:
        max_abs, corr = float("nan"), None
    scale = float(np.abs(r).max()) if r.size else 0.0
    rel = max_abs / max(scale, np.finfo(np.float64).tiny)
    tiers = index["tolerances"]["quantities"].get(quantity, {"float64": 1e-10, "float32": 1e-5})
    return Comparison(
        case, quantity, convention, tuple(arr.shape), str(arr.dtype), max_abs, scale, rel, corr,
        bar, bool(finite and rel <= bar), bool(finite and rel <= float(tiers["float64"])),
        bool(finite and rel <= float(tiers["float32"])), float(tiers["float64"]), float(tiers["float32"]),
    )


# ------------------------------------------------------------------------- in torch
def case_to_torch(vectors_dir: str | os.PathLike, case: str) -> Any:
    """Case ``case`` rebuilt as a float64 ``torch.nn.Module`` in eval mode, with the case's
    weights loaded (``strict=True``): the module that :mod:`npcam.verify.torch_cases`
    writes as source, so a torch user needs no converter of their own. Like
    :func:`load_case`, the case is checked against ``index.json`` first. Needs the
    ``crosscheck`` extra (torch)."""
    try:  # no static import: torch is an extra
        torch = importlib.import_module("torch")
        nn = torch.nn
    except ImportError as exc:
        raise ImportError("case_to_torch needs PyTorch: install npcam's crosscheck extra "
                          "(pip install 'npcam[crosscheck]').") from exc
    from collections import OrderedDict

    from .torch_cases import torch_source

    arrays = load_case(vectors_dir, case)
    namespace: dict[str, Any] = {"torch": torch, "nn": nn, "OrderedDict": OrderedDict}
    # the source holds only numbers and names taken from the validated npcam model
    exec(compile(torch_source(_case_model(arrays)), f"<npcam case {case}>", "exec"), namespace)
    module = namespace["build"]().double()
    n = len(WEIGHT_PREFIX)
    module.load_state_dict(
        {k[n:]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith(WEIGHT_PREFIX)},
        strict=True,
    )
    return module.eval()


def write_torch_scripts(vectors_dir: str | os.PathLike) -> list[Path]:
    """Write ``<case>.py`` beside every case of a vectors directory (atomically): a
    standalone script that rebuilds the case in torch and loads its weights."""
    from .torch_cases import script

    index = read_index(vectors_dir)
    out: list[Path] = []
    for case, entry in index["cases"].items():
        arrays = load_case(vectors_dir, case)
        path = Path(os.fspath(vectors_dir)) / (entry["file"][: -len(".npz")] + ".py")
        with atomic_write(path) as fh:
            fh.write(script(_case_model(arrays), case).encode("utf-8"))
        out.append(path)
    return out
