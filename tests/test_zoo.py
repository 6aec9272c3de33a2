"""deepspan.zoo: models, augmentations, the seeded resumable trainer and its checkpoints (digits 8x8, CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import deepspan
from deepspan.data import load_digits
from deepspan.zoo import (
    MLP, Augment, ConvAutoencoder, ResNetStyle, SimCLR, SmallCNN, gaussian_noise, nt_xent,
    random_affine, random_translate, train,
)


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
    init, final = r.records[0]["probe_accuracy"], r.records[-1]["probe_accuracy"]
    assert r.records[-1]["eval_loss"] < r.records[0]["eval_loss"] - 0.5
    assert final > init + 0.02, (init, final)


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
