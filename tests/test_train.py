"""Tests of npcam.train: Adam on hand cases, the learning-rate schedule at hand-picked
steps, one epoch lowering the loss, reproducibility, freezing, progress output and the
``npcam train`` command."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest

import npcam
import npcam.cli
from npcam import train as T
from npcam import zoo
from npcam.evaluation.scenes import make_scenes, standardize
from npcam.nn.functional import softmax_cross_entropy


# ------------------------------------------------------------------------------ helpers
def _tiny_net(seed: int = 0, bn: bool = False) -> npcam.Sequential:
    rng = np.random.default_rng(seed)
    features = [npcam.Conv2d(3, 8, 3, padding=1, rng=rng)]
    features += [npcam.BatchNorm2d(8)] if bn else []
    features += [npcam.ReLU(), npcam.MaxPool2d(2), npcam.Conv2d(8, 16, 3, padding=1, rng=rng)]
    features += [npcam.BatchNorm2d(16)] if bn else []
    features += [npcam.ReLU()]
    return npcam.Sequential(
        features=npcam.Sequential(*features),
        classifier=npcam.Sequential(npcam.GlobalAvgPool2d(), npcam.Linear(16, 4, rng=rng)),
    )


@pytest.fixture(scope="module")
def scenes32():
    s = make_scenes(256, size=32, seed=3)
    x, _, _ = standardize(s.images)
    return x, s.labels


def _loss(model, x, y) -> float:
    return softmax_cross_entropy(T.predict_logits(model, x), y)[0]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


# -------------------------------------------------------------------------------- Adam
@pytest.mark.parametrize(
    "a, expected",
    [
        # θ0 = 1, g = a·θ0 = a. First step: m̂ = g, v̂ = g², so θ1 = 1 − lr·g/(|g| + ε):
        (1e3, 0.900000000001),  # 1 − 0.1·1000/(1000 + 1e-8) = 1 − 0.1/(1 + 1e-11)
        (1.0, 0.9000000009999999),  # 1 − 0.1/(1 + 1e-8)
        (1e-3, 0.90000099999),  # 1 − 0.1/(1 + 1e-5)
    ],
)
def test_adam_first_step_is_lr_whatever_the_gradient_scale(a, expected):
    theta = np.array([1.0])
    adam = T.Adam(lr=0.1)  # betas (0.9, 0.999), eps 1e-8
    adam.step({"theta": theta}, {"theta": a * theta})  # f(θ) = a·θ²/2, ∇f = a·θ
    assert abs(theta[0] - expected) <= 1e-15
    assert adam.t == 1


def test_adam_two_steps_on_a_quadratic_by_hand():
    # f(θ) = θ²/2 from θ0 = 1, lr 0.1. Step 1: θ1 = 1 − 0.1/(1 + 1e-8) ≈ 0.9.
    # Step 2: g = θ1, m = 0.9·0.1 + 0.1·g = 0.18, v = 0.999·0.001 + 0.001·g² = 0.001809,
    # m̂ = 0.18/0.19, v̂ = 0.001809/0.001999, θ2 = θ1 − 0.1·m̂/(sqrt(v̂) + 1e-8)
    # (computed with 40 decimal digits: 0.80041222971233739...).
    theta = np.array([1.0])
    adam = T.Adam(lr=0.1)
    for _ in range(2):
        adam.step({"theta": theta}, {"theta": theta.copy()})
    # 0.999 is not a binary fraction: 1 − β2² = 0.001999 inherits a relative error of
    # ~1e-13 from its representation, which reaches θ2 damped by lr·½ (the square root).
    assert abs(theta[0] - 0.8004122297123374) <= 1e-14


def test_adam_decoupled_weight_decay_only_on_weights():
    # Zero gradient: the Adam term is 0/(0 + ε) = 0, so only the decay acts,
    # θ ← θ − lr·λ·θ = θ·(1 − 0.1·0.5) on the matrix; the vector (a bias) is untouched.
    w, b = np.full((2, 2), 2.0), np.full(2, 2.0)
    T.Adam(lr=0.1, weight_decay=0.5).step({"w": w, "b": b}, {"w": np.zeros((2, 2)), "b": np.zeros(2)})
    np.testing.assert_array_equal(w, np.full((2, 2), 1.9))
    np.testing.assert_array_equal(b, np.full(2, 2.0))


def test_adam_lr_override_and_bad_input():
    theta = np.array([1.0])
    adam = T.Adam(lr=0.1)
    adam.step({"theta": theta}, {"theta": np.array([5.0])}, lr=0.01)
    assert abs(theta[0] - (1 - 0.01 / (1 + 1e-8 / 5))) <= 1e-16
    with pytest.raises(ValueError, match="no gradient for parameter 'theta'"):
        adam.step({"theta": theta}, {})
    with pytest.raises(ValueError, match="shape"):
        adam.step({"theta": theta}, {"theta": np.zeros(2)})
    with pytest.raises(ValueError, match="lr"):
        T.Adam(lr=-1.0)
    with pytest.raises(ValueError, match="betas"):
        T.Adam(betas=(0.9, 1.0))


# ---------------------------------------------------------------------------- schedule
@pytest.mark.parametrize(
    "step, expected",
    [
        (0, 0.25),  # warm-up: (t + 1)/W with W = 4
        (1, 0.5),
        (3, 1.0),  # warm-up ends at base_lr
        (4, 1.0),  # cosine starts at base_lr: progress 0
        (9, 0.5),  # progress (9 − 4)/(14 − 4) = 1/2: (1 + cos(π/2))/2
        (13, 0.024471741852423234),  # progress 0.9: (1 + cos(0.9π))/2
        (14, 0.0),  # at and past T: min_lr
        (100, 0.0),
    ],
)
def test_cosine_schedule_at_hand_picked_steps(step, expected):
    got = T.cosine_schedule(step, base_lr=1.0, total_steps=14, warmup_steps=4)
    assert abs(got - expected) <= 1e-16


def test_cosine_schedule_min_lr_and_no_warmup():
    kw = dict(base_lr=2.0, total_steps=10, min_lr=0.5)
    assert T.cosine_schedule(0, warmup_steps=0, **kw) == 2.0
    assert abs(T.cosine_schedule(5, warmup_steps=0, **kw) - 1.25) <= 1e-15  # 0.5 + 1.5·½
    assert T.cosine_schedule(10, warmup_steps=0, **kw) == 0.5
    with pytest.raises(ValueError, match="warmup_steps"):
        T.cosine_schedule(0, base_lr=1.0, total_steps=3, warmup_steps=4)


def test_fit_uses_the_schedule():
    x = np.random.default_rng(0).standard_normal((20, 3))
    y = np.arange(20) % 2
    model = npcam.Sequential(npcam.Linear(3, 2, rng=0))
    h = T.fit(model, x, y, epochs=2, batch_size=8, lr=0.01, warmup=2, log=None)
    # 3 steps per epoch, T = 6, W = 2: the last step of epoch 1 is t = 2, of epoch 2 t = 5.
    assert h.steps == 6 and h.image_passes == 40
    assert h.lr == [
        T.cosine_schedule(2, base_lr=0.01, total_steps=6, warmup_steps=2),
        T.cosine_schedule(5, base_lr=0.01, total_steps=6, warmup_steps=2),
    ]


# ----------------------------------------------------------------------------- training
def test_one_epoch_lowers_the_loss(scenes32):
    x, y = scenes32
    model = _tiny_net()
    before = _loss(model, x, y)
    h = T.fit(model, x, y, epochs=1, batch_size=16, lr=3e-3, log=None)
    after = _loss(model, x, y)
    assert after < before - 0.01, (before, after)
    assert len(h.loss) == 1 and np.isfinite(h.loss[0])
    assert not model.training and not any(leaf.training for _, leaf in model.named_layers())


def test_batchnorm_trains_in_train_mode_and_running_stats_move(scenes32):
    x, y = scenes32
    model = _tiny_net(bn=True)
    T.fit(model, x[:64], y[:64], epochs=1, batch_size=32, log=None)
    bn = model["features.1"]
    assert int(bn.num_batches_tracked) == 2
    assert not np.array_equal(bn.running_mean, np.zeros(8))


def test_same_seed_gives_bit_identical_weights(scenes32):
    x, y = scenes32
    runs = []
    for seed in (5, 5, 6):
        model = _tiny_net(seed=1, bn=True)
        T.fit(model, x[:96], y[:96], epochs=2, batch_size=32, seed=seed, log=None)
        runs.append(model.state_dict())
    for key in runs[0]:
        np.testing.assert_array_equal(runs[0][key], runs[1][key])
    assert any(not np.array_equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_freeze_keeps_the_trunk_bit_identical(scenes32):
    x, y = scenes32
    model = _tiny_net(bn=True)
    before = model.state_dict()
    T.fit(model, x[:64], y[:64], epochs=1, batch_size=32, freeze=["features"], log=None)
    after = model.state_dict()
    for key in before:  # weights and BatchNorm running statistics alike
        if key.startswith("features."):
            np.testing.assert_array_equal(before[key], after[key])
    assert not np.array_equal(before["classifier.1.weight"], after["classifier.1.weight"])
    with pytest.raises(ValueError, match="'nope'"):
        T.fit(model, x[:8], y[:8], epochs=1, freeze=["nope"], log=None)
    with pytest.raises(ValueError, match="no trainable parameters"):
        T.fit(model, x[:8], y[:8], epochs=1, freeze=["features", "classifier"], log=None)


def test_fit_on_cached_features_trains_a_head():
    # A head trained alone on (N, K) features, as npcam.zoo does for "vgg".
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((200, 6))
    labels = (feats[:, 0] + feats[:, 1] > 0).astype(np.int64)
    head = npcam.Sequential(npcam.Linear(6, 8, rng=1), npcam.ReLU(), npcam.Linear(8, 2, rng=2))
    T.fit(head, feats, labels, epochs=20, batch_size=20, lr=1e-2, log=None)
    assert T.evaluate_accuracy(head, feats, labels) >= 0.95


def test_evaluate_accuracy_by_hand():
    model = npcam.Sequential(npcam.Linear(2, 2, bias=False))
    model.load_state_dict({"0.weight": np.eye(2)})  # logits = x
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert T.evaluate_accuracy(model, x, np.array([0, 1, 1]), batch_size=2) == pytest.approx(2 / 3, abs=0)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\)"):
        T.evaluate_accuracy(model, x, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        T.evaluate_accuracy(model, x, np.array([0, 1]))
    with pytest.raises(TypeError, match="labels must be an array of integer"):
        T.evaluate_accuracy(model, x, np.array([0.0, 1.0, 1.0]))


def test_fit_rejects_bad_arguments(scenes32):
    x, y = scenes32
    model = _tiny_net()
    with pytest.raises(ValueError, match="epochs"):
        T.fit(model, x, y, epochs=0, log=None)
    with pytest.raises(ValueError, match="warmup"):
        T.fit(model, x, y, epochs=1, warmup=1.5, log=None)
    with pytest.raises(ValueError, match="labels"):
        T.fit(model, x, y[:-1], epochs=1, log=None)
    with pytest.raises(TypeError, match="model"):
        T.fit("net", x, y, epochs=1, log=None)
    with pytest.raises(ValueError, match="finite"):
        T.fit(model, np.full_like(x[:4], np.nan), y[:4], epochs=1, log=None)


# ---------------------------------------------------------------------- progress output
def test_summary_line_per_epoch_and_progress_bar_only_on_a_tty():
    x = np.random.default_rng(0).standard_normal((40, 3))
    y = np.arange(40) % 2
    lines: list[str] = []
    tty, pipe = _Tty(), io.StringIO()
    T.fit(npcam.Sequential(npcam.Linear(3, 2, rng=0)), x, y, epochs=2, batch_size=8,
          test=(x, y), log=lines.append, progress_stream=tty)  # fmt: skip
    assert len(lines) == 2
    for i, line in enumerate(lines, 1):
        assert line.startswith(f"epoch {i}/2") and "loss" in line and "train acc" in line
        assert "test acc" in line and line.endswith(" s")
    assert "\r" in tty.getvalue() and "epoch 2/2 [" in tty.getvalue()
    T.fit(npcam.Sequential(npcam.Linear(3, 2, rng=0)), x, y, epochs=1, log=None, progress_stream=pipe)
    assert pipe.getvalue() == ""
    quiet = _Tty()
    T.fit(npcam.Sequential(npcam.Linear(3, 2, rng=0)), x, y, epochs=1, log=None, quiet=True,
          progress_stream=quiet)  # fmt: skip
    assert quiet.getvalue() == ""


# ----------------------------------------------------------------------------------- CLI
@pytest.fixture
def cli_main(monkeypatch):
    return npcam.cli.main


TINY = ["--epochs", "1", "--n-train", "64", "--n-test", "32", "--size", "16", "--quiet"]


def test_cli_train_writes_a_loadable_model(tmp_path, cli_main, capsys):
    gap = tmp_path / "gap.npz"
    assert cli_main(["train", "--arch", "gap", "--out", str(gap), "--seed", "3", *TINY]) == 0
    assert "saved" in capsys.readouterr().out
    with np.load(gap, allow_pickle=False) as npz:
        assert all(npz[k].dtype.kind != "O" for k in npz.files)
    model, meta = zoo.load(gap)
    assert isinstance(model, npcam.Sequential)
    assert meta["arch"] == "gap" and meta["seed"] == 3 and meta["input_size"] == [16, 16]
    assert meta["command"] == (
        "npcam train --arch gap --out gap.npz --seed 3 --epochs 1 --n-train 64 --n-test 32 --size 16"
    )
    assert len(meta["mean"]) == 3 and meta["class_names"] == ["disc", "square", "triangle", "cross"]
    out = model.forward(np.zeros((2, 3, 16, 16)))
    assert out.shape == (2, 4) and out.dtype == np.float64
    # The same command again: bit-identical weights.
    again = tmp_path / "again.npz"
    assert cli_main(["train", "--arch", "gap", "--out", str(again), "--seed", "3", *TINY]) == 0
    a, b = zoo.load(gap)[0].state_dict(), zoo.load(again)[0].state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)

    # A head on the frozen trunk of that model: the trunk is copied unchanged.
    vgg = tmp_path / "vgg.npz"
    assert cli_main(["train", "--arch", "vgg", "--out", str(vgg), "--trunk", str(gap), *TINY]) == 0
    head_model, head_meta = zoo.load(vgg)
    trunk = {k: v for k, v in head_model.state_dict().items() if k.startswith("features.")}
    assert trunk and all(np.array_equal(v, a[k]) for k, v in trunk.items())
    assert head_meta["mean"] == meta["mean"] and head_meta["trunk"] == str(gap)


def test_cli_train_errors_are_one_line(tmp_path, cli_main, capsys):
    out = str(tmp_path / "x.npz")
    assert cli_main(["train", "--arch", "gap", "--out", out, "--trunk", out, *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "trunk applies only to 'vgg'" in err
    assert cli_main(["train", "--arch", "gap", "--out", out, "--epochs", "0", "--quiet"]) == 2
    assert "epochs" in capsys.readouterr().err
    assert cli_main(["train", "--arch", "gap", "--out", str(tmp_path / "no" / "x.npz"), *TINY]) == 2
    assert "--out must be in an existing directory" in capsys.readouterr().err
    assert cli_main(["train", "--arch", "vgg", "--out", out, "--trunk", str(tmp_path / "none.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli_main(["train", "--arch", "resnet", "--out", out])
    assert exc.value.code == 2


def test_history_as_dict_is_json():
    x = np.random.default_rng(0).standard_normal((8, 3))
    h = T.fit(npcam.Sequential(npcam.Linear(3, 2, rng=0)), x, np.arange(8) % 2, epochs=1, log=None)
    d = json.loads(json.dumps(h.as_dict()))
    assert d["steps"] == 1 and d["image_passes"] == 8 and d["test_acc"] == [None]
    assert math.isfinite(d["loss"][0])


def test_diverged_training_says_so_in_one_line(tmp_path, cli_main, capsys):
    """C88: ``npcam train --lr 1e300`` printed 12 lines of numpy RuntimeWarnings, then blamed
    an internal argument ("grad_output must contain only finite values"). Now the one
    stderr line says the training diverged and suggests a smaller learning rate; no
    warning is printed (pytest turns RuntimeWarnings into errors here)."""
    out = str(tmp_path / "t.npz")
    args = ["train", "--arch", "gap", "--out", out, "--lr", "1e300", "--n-train", "8", "--n-test", "4",
            "--epochs", "2", "--batch-size", "4", "--size", "16", "--quiet"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert "training diverged" in err and "smaller learning rate" in err
    assert "grad_output" not in err and "cotangent" not in err


def test_fit_uses_the_trace_and_leaves_no_parameter_gradients_on_layers():
    """Training goes through run/vjp: after fit the layers hold only their parameters and
    buffers (no caches, no grads attributes)."""
    model = zoo.build("gap", rng=0, size=16, num_classes=4)
    x = np.random.default_rng(0).uniform(size=(8, 3, 16, 16))
    T.fit(model, x, np.arange(8) % 4, epochs=1, batch_size=4, quiet=True, log=None)
    for _, leaf in model.named_layers():
        assert not hasattr(leaf, "grads") and not hasattr(leaf, "_cache")
