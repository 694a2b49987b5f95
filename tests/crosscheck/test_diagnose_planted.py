"""The planted-bug suite: :func:`npcam.verify.check_torch` names the one bug planted in
each hand-written torch implementation of ``_planted_bugs`` (Grad-CAM, its
post-processing, the counterfactual map, CAM, guided backprop, Guided Grad-CAM, on an
``nn.Sequential`` with BatchNorm and on a custom-forward residual + concat model that
becomes an npcam Graph), and finds nothing wrong with the correct ones.

* ``test_correct_references_equal_npcam``: the correct implementations equal npcam's
  methods to 1e-12 (so the references, and the model conversion, are right).
* ``test_planted_bug``: per bug, the verdict is "explained" ("float32" for the float32
  bug), the expected name is among the first three hypotheses, and the bug really
  changed the array on the batch check_torch gave it.
* ``test_planted_bar``: over all bugs, the expected name is in the first tied group
  (``group == 0``) for ≥ 90 % and among the first three for 100 %; prints the table.
* ``test_correct_match`` / ``test_correct_float32``: the correct float64 implementations
  give "match" with no hypotheses, the float32 ones "float32".
"""

from __future__ import annotations

import numpy as np
import pytest

REASON = "needs the crosscheck extra: pip install -e '.[test,crosscheck]'"
torch = pytest.importorskip("torch", reason=REASON)

import _planted_bugs as P  # noqa: E402

import npcam  # noqa: E402
from npcam.verify import check_torch  # noqa: E402

TOP1_BAR = 0.90  # share of bugs whose name is in the first tied group
TOP = 3  # every bug's name among the first TOP hypotheses

#: case id -> (Diagnosis, whether the bug changed the array on check_torch's batch)
_RESULTS: dict[str, tuple[object, bool]] = {}


@pytest.fixture(scope="module", autouse=True)
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _changed(a: np.ndarray, b: np.ndarray) -> bool:
    """The bug's array differs from the correct one (shape, or > 1e-9 of the scale)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return True
    return float(np.abs(a - b).max()) > 1e-9 * max(float(np.abs(b).max()), 1e-300)


def _run(case: P.Case):
    """check_torch on the case (cached), and whether the bug changed the array: the
    correct implementation of the same quantity is run on the batch check_torch passed."""
    if case.id in _RESULTS:
        return _RESULTS[case.id]
    model = P.build_model(case.model)
    seen: dict[str, object] = {}

    def theirs(m, x, target, layer):
        seen["x"], seen["target"] = x.detach().clone(), target
        return case.fn(m, x, target, layer)

    x = P.random_input() if case.x == "random" else None
    d = check_torch(theirs, model, x, case.layer, None, input_shape=P.INPUT_SHAPE, quantity=case.quantity)
    reference = case.reference or P.gradcam_hooks
    xb = seen["x"].to(torch.float64)
    changed = _changed(case.fn(model, xb, seen["target"], case.layer),
                       reference(model, xb, seen["target"], case.layer))
    _RESULTS[case.id] = (d, changed)
    return _RESULTS[case.id]


def _accepted(case: P.Case) -> set[str]:
    return {case.expected, *case.also}


def _rank(case: P.Case, d) -> tuple[int | None, int | None]:
    """(0-based rank, group) of the first hypothesis with an accepted name, or Nones."""
    names = _accepted(case)
    for i, h in enumerate(d.hypotheses):
        if h.name in names:
            return i, h.group
    return None, None


def _top(d, n: int = 5) -> str:
    return "; ".join(f"{h.name} (r={h.residual:.2e}, g={h.group})" for h in d.hypotheses[:n]) or "none"


# ---------------------------------------------------------------- the references
@pytest.mark.parametrize("ref", [c for c in P.CORRECT if c.verdict == "match"], ids=lambda c: c.id)
def test_correct_references_equal_npcam(ref):
    """Each correct float64 implementation equals npcam's method to 1e-12 relative on a
    random batch predicting ≥ 2 classes (checks the references and from_torch)."""
    model = P.build_model(ref.model)
    x = P.random_input()
    net, xn = npcam.from_torch(model), x.numpy()
    assert len(set(model(x).argmax(1).tolist())) >= 2
    size = tuple(xn.shape[2:])
    q, layer = ref.quantity, ref.layer
    if q == "cam":
        expected = npcam.grad_cam(net, xn, None, layer).cam
    elif q == "cam_upsampled":
        expected = npcam.upsample(npcam.grad_cam(net, xn, None, layer).cam, size)
    elif q == "cam_normalized":
        expected = npcam.normalize(npcam.upsample(npcam.grad_cam(net, xn, None, layer).cam, size))
    elif q == "counterfactual":
        expected = npcam.counterfactual(net, xn, None, layer).cam
    elif q == "guided_backprop":
        expected = npcam.guided_backprop(net, xn, None)
    else:
        assert q == "guided_grad_cam"
        expected = npcam.guided_grad_cam(net, xn, None, layer)
    ours = np.asarray(ref.fn(model, x, None, layer))
    assert ours.shape == expected.shape
    assert np.abs(ours - expected).max() <= 1e-12 * np.abs(expected).max()


def test_cam_without_over_z_is_npcam_cam():
    """The CAM planted bug (no 1/Z) is npcam.cam's ReLU'd raw map, i.e. Z × Grad-CAM."""
    model = P.build_model("seq")
    x = P.random_input()
    expected = np.maximum(npcam.cam(npcam.from_torch(model), x.numpy(), None, "6").raw, 0.0)
    ours = P.bug_cam_without_over_z(model, x, None, "6")
    assert np.abs(ours - expected).max() <= 1e-12 * np.abs(expected).max()


# ------------------------------------------------------------------ planted bugs
def test_enough_cases():
    """The suite has ≥ 28 planted bugs with distinct ids, ≥ 4 on the Graph model."""
    assert len(P.CASES) >= 28
    assert len({c.id for c in P.CASES}) == len(P.CASES)
    assert sum(c.model == "res" for c in P.CASES) >= 4


@pytest.mark.parametrize("case", P.CASES, ids=lambda c: c.id)
def test_planted_bug(case):
    """check_torch's verdict is "explained" ("float32" for the float32 bug) and the
    expected name is among the first three hypotheses; the bug changed the array."""
    d, changed = _run(case)
    assert changed, f"{case.id}: the planted bug does not change the array on this batch"
    info = f"{case.id}: verdict {d.verdict}; top: {_top(d)}"
    if case.expected == "float32":
        assert d.verdict == "float32", info
        assert d.hypotheses and d.hypotheses[0].name == "float32", info
        return
    assert d.verdict == "explained", info
    rank, _ = _rank(case, d)
    assert rank is not None and rank < TOP, info


def test_planted_bar():
    """Over every planted bug: the expected name (or its accepted tie) is in the first
    tied group for ≥ 90 % of the cases and among the first three for all; prints the
    per-bug table (id, expected, top-1 ok, rank, group, verdict, top hypotheses)."""
    rows = []
    for case in P.CASES:
        d, _ = _run(case)
        rank, group = _rank(case, d)
        rows.append((case, d, rank, group))
    lines = [f"{'case':26s} {'expected':26s} top1  rank grp  verdict      top hypotheses"]
    for case, d, rank, group in rows:
        ok = group == 0
        lines.append(f"{case.id:26s} {case.expected:26s} {'yes ' if ok else 'NO  '}  "
                     f"{'-' if rank is None else rank + 1:>4} {'-' if group is None else group:>3}  "
                     f"{d.verdict:12s} {_top(d, 3)}")
    top1 = sum(group == 0 for *_, group in rows) / len(rows)
    in_top = sum(rank is not None and rank < TOP for *_, rank, _ in rows)
    lines.append(f"top-1 (group 0): {top1:.1%} of {len(rows)}; in top {TOP}: {in_top}/{len(rows)}")
    table = "\n".join(lines)
    print("\n" + table)
    assert top1 >= TOP1_BAR, table
    assert in_top == len(rows), table


# ------------------------------------------------------- correct implementations
@pytest.mark.parametrize("ref", [c for c in P.CORRECT if c.verdict == "match"], ids=lambda c: c.id)
def test_correct_match(ref):
    """A correct float64 implementation (three Grad-CAMs: hooks, autograd.grad on a split
    forward, NumPy einsum; and the other quantities) is a "match" with no hypotheses."""
    d = check_torch(ref.fn, P.build_model(ref.model), None, ref.layer, None,
                    input_shape=P.INPUT_SHAPE, quantity=ref.quantity)
    assert d.verdict == "match", f"{ref.id}: {d.verdict}; {_top(d)}; {d.explanation}"
    assert d.matches
    assert d.hypotheses == []


@pytest.mark.parametrize("ref", [c for c in P.CORRECT if c.verdict == "float32"], ids=lambda c: c.id)
def test_correct_float32(ref):
    """A correct implementation computed in float32 (cam, cam_upsampled) gets the verdict
    "float32"."""
    d = check_torch(ref.fn, P.build_model(ref.model), None, ref.layer, None,
                    input_shape=P.INPUT_SHAPE, quantity=ref.quantity)
    assert d.verdict == "float32", f"{ref.id}: {d.verdict}; {_top(d)}; {d.explanation}"
