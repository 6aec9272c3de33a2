"""The reproduction protocol: config fields (dense epoch-1 checkpoints, per-model epochs and schedules),
the training-set probe, the run records of ``OUT/models.json``."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from deepspan.errors import InputError
from deepspan.experiments.config import SCALES, ModelSpec, ReproduceConfig, config_for
from deepspan.experiments.context import ReproContext
from deepspan.experiments.splits import DataSplits


# ---------------------------------------------------------------- checkpoints inside epoch 1
def test_iterations_quick_spread_over_epoch1():
    cfg = config_for("quick")
    assert cfg.iterations_in_epoch1 == 20
    it = cfg.iterations(157)          # 20,000 / 128 -> 157 steps per epoch
    assert len(it) == 20 and len(set(it)) == 20 and list(it) == sorted(it)
    assert it[0] == 1 and it[-1] == 156                       # the whole epoch, not its end (157 = e1)
    assert all(isinstance(i, int) for i in it)
    # evenly spread: the gaps are 155 / 19 = 8.16 rounded, so 8 or 9 steps each
    gaps = np.diff(it)
    assert set(gaps.tolist()) <= {8, 9} and gaps.sum() == 155
    # independent route: the rounded points of an even grid from 1 to 156
    assert list(it) == [int(round(1 + k * 155 / 19)) for k in range(20)]


@pytest.mark.parametrize("steps,want", [(24, (1, 6, 12, 18, 23)),   # tiny: 1500 / 64 -> 24 steps, 5 points
                                        (5, (1, 2, 3, 4)),            # fewer steps than asked: every one
                                        (2, (1,)), (1, ()), (0, ())])
def test_iterations_tiny_and_short_epochs(steps, want):
    cfg = config_for("tiny")
    assert cfg.iterations_in_epoch1 == 5
    got = cfg.iterations(steps)
    assert got == want
    assert all(0 < i < steps for i in got)   # never the end of the epoch (that is e1)


def test_full_scale_has_denser_epoch1():
    full = config_for("full")
    it = full.iterations(math.ceil(50_000 / 128))   # all 50,000 training images of the bundled MNIST
    assert len(it) == 40 and it[0] == 1 and it[-1] == 390


# ---------------------------------------------------------------- fingerprints
def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 + 0.125
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, tuple):
        return value[:-1] if len(value) > 1 else value + value
    raise AssertionError(f"no change rule for {value!r}")


def test_fingerprints_differ_between_scales():
    fps = [config_for(s).fingerprint() for s in SCALES]
    assert len(set(fps)) == len(SCALES)
    assert all(len(f) == 16 and int(f, 16) >= 0 for f in fps)


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(ReproduceConfig) if f.name != "data_dir"])
def test_fingerprint_changes_with_every_field(field):
    cfg = config_for("tiny")
    new = dataclasses.replace(cfg, **{field: _changed(getattr(cfg, field))})
    assert getattr(new, field) != getattr(cfg, field)
    assert new.fingerprint() != cfg.fingerprint()
    assert dataclasses.replace(cfg).fingerprint() == cfg.fingerprint()   # an equal copy: the same hash


def test_fingerprint_ignores_data_dir_only():
    cfg = config_for("tiny")
    assert dataclasses.replace(cfg, data_dir="/somewhere/else").fingerprint() == cfg.fingerprint()


@pytest.mark.parametrize("change", [dict(weight_decay=0.0), dict(schedule="steps"), dict(epochs=3), dict(lr=0.2),
                                    dict(optimizer="adam"), dict(widths=(64,))])
def test_fingerprint_changes_with_every_model_spec_field(change):
    cfg = config_for("tiny")
    models = tuple((n, dataclasses.replace(s, **change) if n == "mlp" else s) for n, s in cfg.models)
    new = dataclasses.replace(cfg, models=models)
    assert new.model("mlp") != cfg.model("mlp")
    assert new.fingerprint() != cfg.fingerprint()
    d = new.to_dict()["models"]["mlp"]
    for k, v in change.items():
        assert d[k] == (list(v) if isinstance(v, tuple) else v)


# ---------------------------------------------------------------- model specs
@pytest.mark.parametrize("spec,words", [
    (ModelSpec("cnn", "supervised", (8,), lr=0.1, weight_decay=5e-4, schedule="cosine"),
     "SGD lr 0.1, momentum 0.9, weight decay 0.0005, cosine schedule"),
    (ModelSpec("vgg", "supervised", (8, 8, 16), lr=0.05, weight_decay=5e-4, schedule="steps"),
     "SGD lr 0.05, momentum 0.9, weight decay 0.0005, x0.1 at 50 % and 75 % of training"),
    (ModelSpec("mlp", "supervised", (8,)), "SGD lr 0.05, momentum 0.9, constant rate"),     # the trainer's defaults
    (ModelSpec("autoencoder", "autoencoder", (8,), "adam", schedule="cosine"), "Adam lr 0.001, cosine schedule"),
    (ModelSpec("simclr", "simclr", (8,), "adam", lr=3e-4), "Adam lr 0.0003, constant rate"),
])
def test_describe_words(spec, words):
    assert spec.describe() == words


def test_configured_protocol():
    """The numbers the module docstring promises: SGD + momentum + weight decay + cosine for the supervised zoo,
    Wang et al.'s step schedule for the VGG pair, Adam + cosine for the autoencoder and SimCLR."""
    for scale in SCALES:
        cfg = config_for(scale)
        assert cfg.names == ["mlp", "cnn", "resnet", "autoencoder", "simclr", "vgg"]
        assert cfg.zoo_names == ["mlp", "cnn", "resnet", "autoencoder", "simclr"]   # vgg is match-only
        assert cfg.match_models == ("cnn", "vgg") and cfg.match_only == ("vgg",)
        for name in ("mlp", "cnn", "resnet"):
            s = cfg.model(name)
            assert (s.optimizer, s.weight_decay, s.schedule) == ("sgd", 5e-4, "cosine")
        assert cfg.model("vgg").schedule == "steps" and cfg.model("vgg").weight_decay == 5e-4
        for name in ("autoencoder", "simclr"):
            assert (cfg.model(name).optimizer, cfg.model(name).schedule) == ("adam", "cosine")
    q, f = config_for("quick"), config_for("full")
    assert dict(q.model("resnet").extra)["stem_stride"] == 2 and dict(q.model("simclr").extra)["stem_stride"] == 2
    assert (q.n_train, q.n_test, q.epochs, q.n_train_probe) == (20_000, 10_000, 6, 1_000)
    assert (f.n_train, f.epochs) == (50_000, 12)


@pytest.mark.parametrize("scale,want", [
    ("tiny", {"mlp": 2, "cnn": 2, "resnet": 2, "autoencoder": 2, "simclr": 2, "vgg": 2}),
    ("quick", {"mlp": 10, "cnn": 6, "resnet": 6, "autoencoder": 3, "simclr": 3, "vgg": 4}),   # the docstring's
    ("full", None),
])
def test_epochs_of(scale, want):
    cfg = config_for(scale)
    # a model's own count where it has one, else the config's
    derived = {n: cfg.epochs if s.epochs is None else s.epochs for n, s in cfg.models}
    assert derived == (want or derived)
    for name in cfg.names:
        assert cfg.epochs_of(name) == derived[name]
        assert cfg.epochs_of(f"{name}@s1") == derived[name]   # a second seed trains as long as the first
    # a changed config epoch count moves the models without their own count only
    longer = config_for(scale, epochs=cfg.epochs + 3)
    for name, spec in cfg.models:
        assert longer.epochs_of(name) == (cfg.epochs + 3 if spec.epochs is None else spec.epochs)
    with pytest.raises(InputError, match="no model 'vit'"):
        cfg.epochs_of("vit")


def test_old_fields_are_gone():
    cfg = config_for("quick")
    d = cfg.to_dict()
    for old in ("iterations", "match_model", "population_n_train"):
        assert old not in d
    for new in ("iterations_in_epoch1", "match_models", "n_train_probe", "match_only", "population_depths",
                "population_wds", "population_sizes"):
        assert new in d
    assert d["population_sizes"] == [2_000, 8_000] and d["population_depths"] == [1, 2, 3]
    assert d["models"]["mlp"]["epochs"] == 10 and d["models"]["cnn"]["epochs"] is None   # quick


# ---------------------------------------------------------------- the training-set probe
@pytest.fixture(scope="module")
def splits():
    return DataSplits(config_for("tiny"))


def test_train_probe_is_balanced_training_images(splits):
    tp = splits.train_probe
    assert len(tp) == 200 and tp.X.shape == (200, 1, 8, 8)
    assert np.bincount(tp.y, minlength=10).tolist() == [20] * 10
    train_ids = list(splits.train.ids)
    assert set(tp.ids) <= set(train_ids)
    assert not set(tp.ids) & set(splits.probe.ids)            # the held-out probe stays held out
    # the rows are the training rows with those ids (images and labels), in training order
    pos = [train_ids.index(i) for i in tp.ids]
    assert pos == sorted(pos)
    assert np.array_equal(tp.X, splits.train.X[pos]) and np.array_equal(tp.y, splits.train.y[pos])


def test_train_probe_is_seeded_and_within_n_train():
    a = DataSplits(config_for("tiny")).train_probe
    b = DataSplits(config_for("tiny")).train_probe
    assert np.array_equal(a.ids, b.ids) and np.array_equal(a.X, b.X)
    other = DataSplits(config_for("tiny", seed=1)).train_probe
    assert not np.array_equal(np.sort(other.ids), np.sort(a.ids))
    # a smaller training set: the probe is drawn from its first n_train images only
    small = DataSplits(config_for("tiny", n_train=300, n_train_probe=100))
    first = set(small._train_full.ids[:300])
    assert set(small.train_probe.ids) <= first and len(small.train_probe) == 100
    assert np.bincount(small.train_probe.y, minlength=10).tolist() == [10] * 10
    # asking for more than the training set holds gives all of it
    assert len(DataSplits(config_for("tiny", n_train=150, n_train_probe=500)).train_probe) == 150


def test_probe_of_and_subset_train(splits):
    assert splits.probe_of("test") is splits.probe
    assert splits.probe_of("train") is splits.train_probe
    with pytest.raises(InputError, match="unknown probe split 'x'; choose 'train' or 'test'"):
        splits.probe_of("x")
    sub = splits.subset_train(100)
    assert len(sub) == 100 and np.array_equal(sub.ids, splits.train.ids[:100])
    assert np.array_equal(sub.X, splits.train.X[:100]) and np.array_equal(sub.y, splits.train.y[:100])
    # the digits training split holds 1500 images: a larger n is capped at the split's size
    big = splits.subset_train(5000)
    assert len(big) == len(splits._train_full) == 1500 and np.array_equal(big.ids, splits._train_full.ids)
    small = DataSplits(config_for("tiny", n_train=300))
    # not capped by n_train: a population member may train on more images than the zoo models
    assert len(small.subset_train(600)) == 600 and np.array_equal(small.subset_train(600).ids[:300], small.train.ids)


def test_data_pvector_of_the_training_probe(tmp_path):
    ctx = ReproContext(config_for("tiny"), tmp_path, progress=False)
    X = ctx.data.train_probe.X.reshape(len(ctx.data.train_probe), -1).astype(np.float64)
    for center in (False, True):
        A = X - X.mean(0) if center else X
        u = np.linalg.svd(A, full_matrices=False)[0][:, 0]
        assert abs(abs(u @ ctx.stats.data_pvector(center, split="train")) - 1) < 1e-10
        # a different sample set, so a different vector from the test probe's
        assert ctx.stats.data_pvector(center, split="train").shape == (200,)
    with pytest.raises(InputError, match="unknown probe split"):
        ctx.stats.data_pvector(False, split="valid")


# ---------------------------------------------------------------- run records and models.json
def test_output_layers(tmp_path):
    ctx = ReproContext(config_for("tiny"), tmp_path, progress=False)
    want = {"mlp": "classifier", "cnn": "classifier", "resnet": "classifier", "vgg": "classifier",
            "simclr": "head", "autoencoder": None}
    assert {n: ctx.runs.output_layer(n) for n in ctx.cfg.names} == want
    assert ctx.runs.feature_layer("vgg") == "relu6" and ctx.runs.layers("vgg") == [f"relu{i}" for i in range(1, 7)]


def test_model_record_and_models_json(tmp_path):
    from deepspan.experiments.reproduce import MODELS_FILE, write_models

    cfg = config_for("tiny", n_train=300, epochs=1, n_train_probe=100)
    ctx = ReproContext(cfg, tmp_path, progress=False)
    assert json.loads(write_models(ctx).read_text()) == {"format": "deepspan-models/1", "models": []}
    m = ctx.runs.ensure_trained("mlp")
    steps = math.ceil(300 / cfg.batch_size)
    assert steps == 5 and m["steps_per_epoch"] == 5
    labels = [c["label"] for c in m["checkpoints"]]
    assert labels == ["init", "e0-i1", "e0-i2", "e0-i3", "e0-i4", "e1"]
    cfg_m = m["config"]
    assert (cfg_m["schedule"], cfg_m["schedule_epochs"], cfg_m["weight_decay"]) == ("cosine", 1, 5e-4)
    assert cfg_m["checkpoint_iterations"] == [1, 2, 3, 4] and cfg_m["eval_size"] == 2000
    for c in m["checkpoints"]:
        inside = c["label"].startswith("e0-")
        assert ("test_accuracy" in c) != inside and "train_accuracy" in c and "eval_loss" in c
    rec = ctx.runs.model_record("mlp")
    # parameters of MLP 64 -> 64 -> 32 -> 10 on 8 x 8 images, counted by hand
    n_par = (64 * 64 + 64) + (64 * 32 + 32) + (32 * 10 + 10)
    final = m["checkpoints"][-1]
    assert rec == {
        "name": "mlp", "architecture": "MLP", "widths": [64, 32], "paradigm": "supervised", "parameters": n_par,
        "epochs": 1, "optimizer": "SGD lr 0.05, momentum 0.9, weight decay 0.0005, cosine schedule",
        "batch_size": 64, "n_train": 300, "seed": 0, "checkpoints": 6, "feature_layer": "relu2",
        "train_accuracy": final["train_accuracy"], "test_accuracy": final["test_accuracy"], "probe_accuracy": None,
        "n_test": 297, "chance": 0.1, "accuracy_note": "arg-max accuracy on the test split"}
    assert 0.0 <= rec["test_accuracy"] <= 1.0
    path = write_models(ctx)
    assert path == tmp_path / MODELS_FILE
    d = json.loads(path.read_text())
    assert d["format"] == "deepspan-models/1" and d["models"] == [rec]   # only trained runs are listed


def test_random_shifts_only_where_configured():
    """Full scale trains its CNN (and the CNN's second seed) with random shifts of up to 2 px; nothing else is
    augmented, extraction never is, and the optimiser text in the models table says so."""
    from deepspan.zoo.augment import Augment

    f, q = config_for("full"), config_for("quick")
    aug = f.model("cnn").augment()
    assert isinstance(aug, Augment) and (aug.max_shift, aug.degrees, aug.scale, aug.noise_std) == (2, 0.0, (1.0, 1.0), 0.0)
    assert "random shifts of up to 2 px in training" in f.model("cnn").describe()
    assert all(s.augment() is None for n, s in f.models if n != "cnn")
    assert all(s.augment() is None for _, s in q.models)
    # a shift on a self-supervised spec means nothing: SimCLR brings its own views
    from deepspan.experiments.config import ModelSpec

    assert ModelSpec("simclr", "simclr", (8,), shift=2).augment() is None
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6)
    y = aug(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and not torch.equal(y, x)
