"""deepspan.zoo: models, augmentations, the seeded resumable trainer and its checkpoints (digits 8x8, CPU)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import deepspan
from deepspan.data import load_digits
from deepspan.zoo import (
    MLP, MODELS, Augment, ConvAutoencoder, ResNetStyle, SimCLR, SmallCNN, VGGStyle, gaussian_noise, nt_xent,
    random_affine, random_translate, train,
)
from deepspan.zoo.train import SCHEDULES, lr_at


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return (d.X[:400], d.y[:400]), (d.X[1000:1400], d.y[1000:1400])


CASES = [
    (MLP, "supervised", dict(optimizer="adam", lr=3e-3)),
    (SmallCNN, "supervised", dict(optimizer="adam", lr=3e-3)),
    (ResNetStyle, "supervised", dict(optimizer="sgd", lr=0.05)),
    (ConvAutoencoder, "autoencoder", dict(optimizer="adam", lr=3e-3)),
    (SimCLR, "simclr", dict(optimizer="adam", lr=1e-3)),
]


@pytest.mark.parametrize("cls,paradigm,kw", CASES, ids=[c[0].__name__ for c in CASES])
def test_models_train_and_expose_features(cls, paradigm, kw, digits, tmp_path):
    (X, y), test = digits
    torch.manual_seed(0)
    model = cls(in_channels=1, image_size=8, n_classes=10)
    result = train(model, (X, y), paradigm, epochs=3, batch_size=32, seed=0, out_dir=tmp_path,
                   checkpoint_iterations=(1, 5), test_data=test, **kw)
    recs = result.records
    assert [r["label"] for r in recs] == ["init", "e0-i1", "e0-i5", "e1", "e2", "e3"]
    # inside epoch 1 only the evaluation loss (and a classifier's training accuracy); the full set at init and
    # at every epoch end
    full_key = "test_accuracy" if paradigm == "supervised" else "probe_accuracy"
    for r in recs:
        inside = r["label"].startswith("e0-")
        assert "eval_loss" in r and (full_key in r) == (not inside), r
        assert ("train_accuracy" in r) == (paradigm == "supervised")
    assert recs[-1]["eval_loss"] < recs[0]["eval_loss"]
    assert recs[-1]["loss"] < recs[3]["loss"]  # epoch 3 mean training loss below epoch 1's
    if paradigm == "supervised":
        assert recs[-1]["test_accuracy"] > 0.5 and recs[-1]["train_accuracy"] > 0.5
    else:
        assert 0.0 <= recs[-1]["probe_accuracy"] <= 1.0
    fs = deepspan.extract(model, X[:, None].astype(np.float32), model.feature_layer)
    F = fs.features[model.feature_layer]
    assert F.shape == (len(X), model.feature_dim) and np.isfinite(F).all()
    fs = deepspan.extract(model, X[:50, None].astype(np.float32), model.block_layers, policy="gap")
    assert all(fs.features[name].shape[0] == 50 for name in model.block_layers)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["complete"] and [c["label"] for c in manifest["checkpoints"]] == [r["label"] for r in recs]


def test_any_image_size():
    x = torch.rand(3, 1, 28, 28)
    for cls in (MLP, SmallCNN, ResNetStyle, SimCLR):
        assert cls(1, 28, 10)(x).shape[0] == 3
    assert ConvAutoencoder(1, 28)(x).shape == x.shape
    assert ConvAutoencoder(3, (9, 13))(torch.rand(2, 3, 9, 13)).shape == (2, 3, 9, 13)


def test_checkpoints_reload_to_identical_outputs(digits, tmp_path):
    (X, y), _ = digits
    factory = lambda: ResNetStyle(1, 8, 10)  # noqa: E731  (BatchNorm buffers are part of the state)
    torch.manual_seed(1)
    model = factory()
    train(model, (X, y), "supervised", epochs=2, batch_size=64, seed=3, out_dir=tmp_path, checkpoint_iterations=(2,))
    series = deepspan.CheckpointSeries.from_manifest(tmp_path, factory)
    assert [c.label for c in series.checkpoints] == ["init", "e0-i2", "e1", "e2"]
    assert [(c.epoch, c.iteration) for c in series.checkpoints] == [(0, 0), (0, 2), (1, 7), (2, 14)]
    xb = torch.tensor(X[:64, None], dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        final = series.load(len(series) - 1).eval()(xb)
        assert torch.equal(final, model(xb))
        first = series.load(0).eval()(xb)
    assert not torch.equal(first, final)


@pytest.mark.parametrize("cls,paradigm,optimizer", [(SmallCNN, "supervised", "sgd"), (SimCLR, "simclr", "adam")])
def test_resume_after_kill_equals_uninterrupted(cls, paradigm, optimizer, digits, tmp_path):
    (X, y), _ = digits
    X, y = X[:200], y[:200]
    kw = dict(paradigm=paradigm, epochs=3, batch_size=32, optimizer=optimizer, seed=5, checkpoint_iterations=(2,))

    torch.manual_seed(0)
    full = cls(1, 8, 10)
    train(full, (X, y), out_dir=tmp_path / "full", **kw)

    class Killed(Exception):
        pass

    def kill(record, model):
        if record["label"] == "e1":
            raise Killed

    torch.manual_seed(0)
    with pytest.raises(Killed):
        train(cls(1, 8, 10), (X, y), out_dir=tmp_path / "resumed", callback=kill, **kw)
    torch.manual_seed(123)  # a different fresh model and global RNG: everything must come from the resume file
    resumed = cls(1, 8, 10)
    result = train(resumed, (X, y), out_dir=tmp_path / "resumed", **kw)
    assert result.resumed_from == "e1"
    for (name, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    m_full = json.loads((tmp_path / "full" / "manifest.json").read_text())
    m_res = json.loads((tmp_path / "resumed" / "manifest.json").read_text())
    assert m_full["checkpoints"] == m_res["checkpoints"]
    # a finished run is not trained again
    again = cls(1, 8, 10)
    assert train(again, (X, y), out_dir=tmp_path / "resumed", **kw).resumed_from == "e3"
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), full.state_dict().values()))


def test_resume_refuses_other_configuration(digits, tmp_path):
    (X, y), _ = digits
    train(MLP(1, 8, 10), (X[:64], y[:64]), epochs=1, batch_size=32, seed=0, out_dir=tmp_path)
    with pytest.raises(deepspan.InputError, match="another configuration"):
        train(MLP(1, 8, 10), (X[:64], y[:64]), epochs=2, batch_size=16, seed=0, out_dir=tmp_path)


def test_training_is_deterministic(digits):
    (X, y), _ = digits
    outs = []
    for _ in range(2):
        torch.manual_seed(0)
        m = SimCLR(1, 8, 10)
        train(m, (X[:128], y[:128]), "simclr", epochs=1, batch_size=32, seed=9, eval_size=0)
        outs.append(m.state_dict())
    assert all(torch.equal(outs[0][k], outs[1][k]) for k in outs[0])


def test_simclr_probe_beats_random_encoder():
    d = load_digits()
    torch.manual_seed(0)
    model = SimCLR(1, 8, 10)
    r = train(model, (d.X[:1000], d.y[:1000]), "simclr", epochs=8, batch_size=64, optimizer="adam", lr=1e-3,
              seed=0, test_data=(d.X[1000:], d.y[1000:]), checkpoint_iterations=())
    accs = [rec["probe_accuracy"] for rec in r.records]
    assert r.records[-1]["eval_loss"] < r.records[0]["eval_loss"] - 0.5
    # a random conv encoder already reads 8x8 digits at ~92 %, and the probe moves by +-1 point from epoch to
    # epoch: the trained encoder ends no worse than the random one and beats it by 2 points at its best epoch
    assert accs[-1] >= accs[0] and max(accs[1:]) > accs[0] + 0.02, accs


def test_nt_xent_known_values():
    z = torch.randn(6, 4)
    # identical views far apart from the others: the loss falls with temperature
    e = torch.eye(6, 6)
    assert nt_xent(e, e, 0.1) < nt_xent(e, e, 1.0)
    # brute-force definition
    z1, z2, t = z[:3], torch.randn(3, 4), 0.5
    zz = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    s = zz @ zz.T / t
    ref = 0.0
    for i in range(6):
        j = (i + 3) % 6
        ref += -s[i, j] + torch.logsumexp(torch.cat([s[i, :i], s[i, i + 1 :]]), 0)
    assert torch.allclose(nt_xent(z1, z2, t), ref / 6, atol=1e-6)


@pytest.mark.parametrize("fn", [
    lambda x, g: random_translate(x, 2, g),
    lambda x, g: random_affine(x, 15.0, (0.9, 1.1), 0.1, g),
    lambda x, g: gaussian_noise(x, 0.1, g),
    lambda x, g: Augment()(x, g),
], ids=["translate", "affine", "noise", "compose"])
def test_augmentations_seeded_and_shape_preserving(fn):
    x = torch.rand(5, 1, 8, 8)
    a = fn(x, torch.Generator().manual_seed(4))
    b = fn(x, torch.Generator().manual_seed(4))
    c = fn(x, torch.Generator().manual_seed(5))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert fn(torch.rand(2, 3, 28, 20), torch.Generator().manual_seed(0)).shape == (2, 3, 28, 20)


def test_translate_is_a_shift():
    x = torch.zeros(50, 1, 8, 8)
    x[:, :, 4, 4] = 1.0
    out = random_translate(x, 1, torch.Generator().manual_seed(0))
    assert torch.all(out.sum((1, 2, 3)) == 1.0)
    pos = out[:, 0].flatten(1).argmax(1)
    rows, cols = pos // 8, pos % 8
    assert rows.min() >= 3 and rows.max() <= 5 and cols.min() >= 3 and cols.max() <= 5
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 1


# ---------------------------------------------------------------- learning-rate schedules
def test_lr_at_known_values():
    b = 0.1
    assert SCHEDULES == ("constant", "cosine", "steps")
    assert all(lr_at(b, "constant", s, 100) == b for s in (0, 37, 100, 500))
    # cosine: b (1 + cos(pi t / T)) / 2
    assert lr_at(b, "cosine", 0, 100) == b
    assert lr_at(b, "cosine", 50, 100) == pytest.approx(b / 2, abs=1e-15)
    assert lr_at(b, "cosine", 25, 100) == pytest.approx(b * (1 + math.sqrt(0.5)) / 2, abs=1e-15)
    assert lr_at(b, "cosine", 100, 100) == pytest.approx(0.0, abs=1e-15)
    assert lr_at(b, "cosine", 130, 100) == pytest.approx(0.0, abs=1e-15)   # past the end: stays at 0
    cos = [lr_at(b, "cosine", s, 40) for s in range(41)]
    assert all(x >= y for x, y in zip(cos, cos[1:]))
    # symmetric about the middle: lr(t) + lr(T - t) = b
    assert all(lr_at(b, "cosine", s, 40) + lr_at(b, "cosine", 40 - s, 40) == pytest.approx(b) for s in range(41))
    # steps: x0.1 from 50 % and x0.01 from 75 % of the steps (Wang et al.'s epochs 80 and 120 of 160)
    steps = {s: lr_at(b, "steps", s, 100) for s in (0, 49, 50, 74, 75, 99)}
    assert steps == pytest.approx({0: b, 49: b, 50: b * 0.1, 74: b * 0.1, 75: b * 0.01, 99: b * 0.01}, rel=1e-12)
    assert [lr_at(1.0, "steps", s, 160) for s in (79, 80, 119, 120)] == pytest.approx([1.0, 0.1, 0.1, 0.01])
    # an odd count: 3.5 and 5.25 are the boundaries of 7 steps
    assert [lr_at(1.0, "steps", s, 7) for s in range(7)] == pytest.approx([1, 1, 1, 1, 0.1, 0.1, 0.01])
    # no steps to schedule over: the base rate
    assert lr_at(b, "cosine", 3, 0) == b and lr_at(b, "steps", 3, 0) == b


def test_bad_schedule_names_the_choices(digits):
    (X, y), _ = digits
    with pytest.raises(deepspan.InputError, match="unknown schedule 'linear'; choose one of constant, cosine, steps"):
        lr_at(0.1, "linear", 0, 10)
    with pytest.raises(deepspan.InputError, match="unknown schedule 'Cosine'; choose one of constant, cosine, steps"):
        train(MLP(1, 8, 10), (X[:64], y[:64]), epochs=1, schedule="Cosine")


def _synthetic(n=96, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 1, 4, 4)).astype(np.float32)
    y = (X[:, 0, 0, 0] > 0).astype(np.int64) + (X[:, 0, 1, 1] > 0)
    return X, y


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_optimizer_runs_the_schedule(schedule, optimizer, monkeypatch):
    """The rate of every optimizer step, read from the optimizer itself, is lr_at(base, schedule, step, total)."""
    seen: list[float] = []
    cls = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
    original = cls.step

    def step(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *a, **k)

    monkeypatch.setattr(cls, "step", step)
    X, y = _synthetic()
    torch.manual_seed(0)
    base = 0.1 if optimizer == "sgd" else 0.01
    train(MLP(1, 4, 3, widths=(8,)), (X, y), epochs=3, batch_size=32, optimizer=optimizer, lr=base,
          schedule=schedule, weight_decay=5e-4, eval_size=0, checkpoint_iterations=())
    total = 3 * math.ceil(96 / 32)
    assert len(seen) == total == 9
    assert seen == [lr_at(base, schedule, s, total) for s in range(total)]
    if schedule == "cosine":   # the last step's rate, by the formula written out
        assert seen[-1] == pytest.approx(base * (1 + math.cos(math.pi * 8 / 9)) / 2, rel=1e-12)
    if schedule == "steps":
        assert seen == pytest.approx([base] * 5 + [base / 10] * 2 + [base / 100] * 2, rel=1e-12)


def test_manifest_records_the_schedule(tmp_path):
    X, y = _synthetic()
    for schedule in SCHEDULES:
        train(MLP(1, 4, 3, widths=(8,)), (X, y), epochs=2, batch_size=32, schedule=schedule, eval_size=0,
              out_dir=tmp_path / schedule, checkpoint_iterations=())
        config = json.loads((tmp_path / schedule / "manifest.json").read_text())["config"]
        if schedule == "constant":
            assert "schedule" not in config and "schedule_epochs" not in config
        else:
            assert (config["schedule"], config["schedule_epochs"]) == (schedule, 2)


@pytest.mark.parametrize("schedule,kill_at", [("cosine", "e1"), ("steps", "e2")])
def test_scheduled_resume_equals_uninterrupted(schedule, kill_at, tmp_path):
    X, y = _synthetic(120)
    kw = dict(epochs=4, batch_size=32, optimizer="sgd", lr=0.1, weight_decay=5e-4, schedule=schedule, seed=2,
              checkpoint_iterations=(1, 2), eval_size=64, test_data=_synthetic(40, seed=1))
    torch.manual_seed(0)
    full = MLP(1, 4, 3, widths=(16, 8))
    train(full, (X, y), out_dir=tmp_path / "full", **kw)

    class Killed(Exception):
        pass

    def kill(record, model):
        if record["label"] == kill_at:
            raise Killed

    torch.manual_seed(0)
    with pytest.raises(Killed):
        train(MLP(1, 4, 3, widths=(16, 8)), (X, y), out_dir=tmp_path / "resumed", callback=kill, **kw)
    torch.manual_seed(99)
    resumed = MLP(1, 4, 3, widths=(16, 8))
    assert train(resumed, (X, y), out_dir=tmp_path / "resumed", **kw).resumed_from == kill_at
    for (name, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    m_full = json.loads((tmp_path / "full" / "manifest.json").read_text())
    m_res = json.loads((tmp_path / "resumed" / "manifest.json").read_text())
    assert m_full["checkpoints"] == m_res["checkpoints"]
    # the schedule's length is part of the run: the same folder with more epochs is another configuration
    with pytest.raises(deepspan.InputError, match="another configuration"):
        train(MLP(1, 4, 3, widths=(16, 8)), (X, y), out_dir=tmp_path / "resumed", **{**kw, "epochs": 6})
    with pytest.raises(deepspan.InputError, match="another configuration"):
        train(MLP(1, 4, 3, widths=(16, 8)), (X, y), out_dir=tmp_path / "resumed",
              **{**kw, "schedule": "constant" if schedule != "constant" else "cosine"})


def test_a_schedule_changes_the_weights():
    """The schedule is applied: the same seed and data give other weights under another schedule."""
    X, y = _synthetic()
    out = {}
    for schedule in SCHEDULES:
        torch.manual_seed(0)
        m = MLP(1, 4, 3, widths=(8,))
        train(m, (X, y), epochs=2, batch_size=32, lr=0.1, schedule=schedule, seed=0, eval_size=0,
              checkpoint_iterations=())
        out[schedule] = torch.cat([p.detach().flatten() for p in m.parameters()])
    assert not torch.equal(out["constant"], out["cosine"]) and not torch.equal(out["constant"], out["steps"])
    assert not torch.equal(out["cosine"], out["steps"])


# ---------------------------------------------------------------- VGG-style net and strided stems
def test_vgg_layers_shapes_and_hooks():
    assert MODELS["vgg"] is VGGStyle
    torch.manual_seed(0)
    m = VGGStyle(1, 28, 10, widths=(8, 8, 16, 16, 32)).eval()
    names = [n for n, _ in m.named_children()]
    assert names == ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3", "conv4", "relu4",
                     "pool4", "flatten", "fc1", "relu5", "fc2", "relu6", "classifier"]
    assert m.block_layers == [f"relu{i}" for i in range(1, 7)]
    assert m.feature_layer == "relu6" and m.feature_dim == 32
    # 28 -> pool 14 -> pool 7 -> (conv3, conv4 at 7) -> pool (ceil) 4
    assert m.fc1.in_features == 16 * 4 * 4
    x = torch.rand(5, 1, 28, 28)
    # the documented order is the computation: running the children one after another gives forward()
    with torch.no_grad():
        assert torch.allclose(torch.nn.Sequential(*m.children())(x), m(x), atol=0, rtol=0)
        assert m(x).shape == (5, 10)
    fs = deepspan.extract(m, x.numpy(), m.block_layers, policy="flatten")
    want = {"relu1": 8 * 28 * 28, "relu2": 8 * 14 * 14, "relu3": 16 * 7 * 7, "relu4": 16 * 7 * 7, "relu5": 32,
            "relu6": 32}
    assert {k: fs.features[k].shape for k in want} == {k: (5, d) for k, d in want.items()}
    assert all((fs.features[k] >= 0).all() for k in want)          # post-ReLU
    # two conv layers and a hidden width: pools after conv 1 and 2 only (2 is also the last)
    small = VGGStyle(1, 8, 10, widths=(4, 6, 12))
    assert [n for n, _ in small.named_children() if n.startswith("pool")] == ["pool1", "pool2"]
    assert small.fc1.in_features == 6 * 2 * 2 and small(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(ValueError, match="at least two conv widths and a hidden width"):
        VGGStyle(1, 8, 10, widths=(8, 16))


def test_vgg_kaiming_initialisation():
    torch.manual_seed(0)
    m = VGGStyle(1, 28, 10, widths=(16, 32, 32, 64, 128))
    for name, mod in m.named_modules():
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
            out_c, in_c = mod.weight.shape[:2]
            k = mod.weight[0, 0].numel()
            # He et al. 2015: std sqrt(2 / fan), fan-out for convs (as torchvision's VGG), fan-in for linear layers
            fan = out_c * k if isinstance(mod, torch.nn.Conv2d) else in_c
            std = float(mod.weight.detach().std())
            assert std == pytest.approx(math.sqrt(2.0 / fan), rel=0.12), name
            assert torch.count_nonzero(mod.bias) == 0, name


@pytest.mark.parametrize("cls,layer,c", [(ResNetStyle, "stem_relu", 16), (SimCLR, "backbone.relu1", 32)])
def test_stem_stride_halves_the_stem_output(cls, layer, c):
    x = torch.rand(3, 1, 28, 28)
    models = {}
    for stride in (1, 2):
        torch.manual_seed(0)
        models[stride] = cls(1, 28, 10, stem_stride=stride).eval()
    # the stride changes the geometry only: the same seed builds the same weights
    s1, s2 = (m.state_dict() for m in models.values())
    assert list(s1) == list(s2) and all(torch.equal(s1[k], s2[k]) for k in s1)
    f = {s: deepspan.extract(m, x.numpy(), [layer, m.feature_layer], policy="flatten") for s, m in models.items()}
    assert f[1].features[layer].shape == (3, c * 28 * 28) and f[2].features[layer].shape == (3, c * 14 * 14)
    # independent route: a 3 x 3 conv with padding 1 and stride 2 reads every other position of the stride-1 output
    full = f[1].features[layer].reshape(3, c, 28, 28)
    half = f[2].features[layer].reshape(3, c, 14, 14)
    np.testing.assert_allclose(half, full[:, :, ::2, ::2], rtol=1e-5, atol=1e-6)
    # the feature layer keeps its width (global pooling)
    assert f[2].features[models[2].feature_layer].shape == f[1].features[models[1].feature_layer].shape
    # an odd input: ceil(9 / 2) = 5
    odd = cls(1, 9, 10, stem_stride=2).eval()
    assert deepspan.extract(odd, np.random.rand(2, 1, 9, 9).astype(np.float32), layer,
                            policy="flatten").features[layer].shape == (2, c * 5 * 5)


@pytest.mark.parametrize("cls", [ResNetStyle, SimCLR])
@pytest.mark.parametrize("stride", [0, 3, 4])
def test_invalid_stem_stride(cls, stride):
    with pytest.raises(ValueError, match=f"stem_stride must be 1 or 2, got {stride}"):
        cls(1, 28, 10, stem_stride=stride)


def test_one_pass_evaluation_equals_the_separate_passes(digits):
    """A supervised checkpoint's eval loss and training accuracy come from one pass over the evaluation
    subset; both equal what the separate loss and accuracy passes give."""
    from deepspan.zoo.train import _Evaluator

    (Xn, yn), _ = digits
    X = torch.as_tensor(Xn[:300, None], dtype=torch.float32)
    y = torch.as_tensor(yn[:300])
    torch.manual_seed(3)
    model = MODELS["cnn"](in_channels=1, image_size=8, n_classes=10, widths=(4, 8, 16)).eval()
    ev = _Evaluator("supervised", X, y, (X[:50], y[:50]), eval_size=250, batch_size=64, temperature=0.5,
                    augment=None, seed=0)
    both = ev.loss_and_accuracy(model)
    assert both["eval_loss"] == pytest.approx(ev.loss(model), rel=1e-6)
    assert both["train_accuracy"] == ev.accuracy(model, ev.X, ev.y)
    rec = ev(model, full=False)
    assert set(rec) == {"eval_loss", "train_accuracy"} and rec == both
    assert set(ev(model, full=True)) == {"eval_loss", "train_accuracy", "test_accuracy"}


def test_conv_nets_train_channels_last_and_come_back_contiguous(digits):
    """train() runs conv nets in the channels-last layout (faster on CPU) and returns the model in the default
    layout; a step taken that way equals the same step in the default layout to float rounding."""
    (X, y), _ = digits
    torch.manual_seed(0)
    a = SmallCNN(1, 8, 10, widths=(4, 8, 16))
    b = SmallCNN(1, 8, 10, widths=(4, 8, 16))
    b.load_state_dict(a.state_dict())
    train(a, (X[:64], y[:64]), epochs=1, batch_size=64, lr=0.1, seed=0, eval_size=0, checkpoint_iterations=())
    assert all(p.is_contiguous() for p in a.parameters())
    # the same single full-batch step (no shuffling effect: one batch of all 64 samples) in the default layout
    opt = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    b.train()
    xb = torch.as_tensor(X[:64, None], dtype=torch.float32)
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    loss = torch.nn.functional.cross_entropy(b(xb[perm]), torch.as_tensor(y[:64])[perm])
    opt.zero_grad()
    loss.backward()
    opt.step()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(pa, pb, rtol=1e-4, atol=1e-6), name
