"""FeatureSet.save / FeatureSet.load: exact round trips, atomic writes, damaged and incomplete stores."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import deepspan
from deepspan import InputError, SampleMismatchError
from deepspan.data import Dataset, load_digits
from deepspan.features import featureset as featureset_mod
from deepspan.features.featureset import META_NAME, FeatureSet, check_same_featuresets

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402


class SmallCNN(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.act = nn.ReLU()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64, 10))

    def forward(self, x):
        return self.head(self.act(self.conv(x.unsqueeze(1))))


@pytest.fixture(scope="module")
def probe() -> Dataset:
    d = load_digits()
    return Dataset("digits120", d.X[:120], d.y[:120], d.ids[:120])


@pytest.fixture(scope="module")
def fs(probe) -> FeatureSet:
    """Three layers: channels with sampled positions, gap, and a 2-D layer; labels from the Dataset."""
    return deepspan.extract(SmallCNN(), probe, ["conv", "act", "head.1"],
                            policy={"conv": "channels", "act": "gap"}, positions_per_image=4, checkpoint="e7",
                            batch_size=50)


def other_fs(probe, seed: int = 1) -> FeatureSet:
    return deepspan.extract(SmallCNN(seed), probe, ["act"], policy="flatten")


def assert_same(a: FeatureSet, b: FeatureSet) -> None:
    assert a.layers == b.layers
    for layer in a.layers:
        assert a[layer].dtype == b[layer].dtype
        assert a[layer].shape == b[layer].shape
        np.testing.assert_array_equal(np.asarray(a[layer]), np.asarray(b[layer]))
    np.testing.assert_array_equal(a.sample_ids, b.sample_ids)
    assert a.sample_hash == b.sample_hash
    assert a.policy == b.policy
    assert sorted(a.positions) == sorted(b.positions)
    for layer in a.positions:
        np.testing.assert_array_equal(a.positions[layer], b.positions[layer])
        assert a.layer_hash(layer) == b.layer_hash(layer)
    if a.labels is None:
        assert b.labels is None
    else:
        np.testing.assert_array_equal(a.labels, b.labels)
    assert a.provenance == b.provenance


def leftovers(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


# --------------------------------------------------------------------------- round trip
def test_save_load_round_trip_is_exact(fs, probe, tmp_path):
    target = tmp_path / "sub" / "store"
    out = fs.save(target)
    assert Path(out) == target
    assert (target / META_NAME).is_file()
    back = FeatureSet.load(target)
    assert_same(fs, back)
    # what was extracted: sanity of the fixture itself
    assert fs.policy == {"conv": "channels", "act": "gap", "head.1": "flatten"}
    assert fs.positions["conv"].shape == (120 * 4, 2)
    np.testing.assert_array_equal(back.sample_ids, probe.ids)
    assert back.sample_hash == probe.sample_hash
    np.testing.assert_array_equal(back.labels, probe.y)
    assert back.provenance["checkpoint"] == "e7"
    assert back.provenance["positions_per_image"] == 4
    # the measures agree on the loaded copy
    assert deepspan.angle(fs.pvector("head.1"), back.pvector("head.1")) < 1e-9
    assert leftovers(target) == []
    # memory-mapped loading gives the same values
    mm = FeatureSet.load(target, mmap=True)
    assert_same(fs, mm)


def test_round_trip_without_labels_or_positions(probe, tmp_path):
    fs = deepspan.extract(SmallCNN(), probe.X, "head.1", ids=probe.ids)
    assert fs.labels is None and fs.positions == {}
    fs.save(tmp_path / "s")
    back = FeatureSet.load(tmp_path / "s")
    assert_same(fs, back)


def test_layer_names_with_odd_characters(probe, tmp_path):
    rng = np.random.default_rng(0)
    ids = probe.ids
    feats = {"a/b": rng.random((120, 3)).astype(np.float32), "a_b": rng.random((120, 2)).astype(np.float32),
             "": rng.random((120, 1)).astype(np.float32)}
    fs = FeatureSet(feats, ids, probe.sample_hash, {k: "flatten" for k in feats})
    fs.save(tmp_path / "odd")
    assert_same(fs, FeatureSet.load(tmp_path / "odd"))


# --------------------------------------------------------------------------- incomplete / interrupted
def test_load_without_meta_says_interrupted(fs, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="interrupted"):
        FeatureSet.load(empty)
    with pytest.raises(InputError, match="interrupted"):
        FeatureSet.load(tmp_path / "does-not-exist")
    # a store whose featureset.json was removed
    fs.save(tmp_path / "s")
    (tmp_path / "s" / META_NAME).unlink()
    with pytest.raises(InputError, match="interrupted"):
        FeatureSet.load(tmp_path / "s")


def _failing_after_first(real):
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise OSError("simulated crash: disk full")
        return real(*args, **kwargs)

    return wrapper, calls


def test_interrupted_save_leaves_nothing_loadable(fs, tmp_path, monkeypatch):
    target = tmp_path / "store"
    wrapper, calls = _failing_after_first(np.save)
    monkeypatch.setattr(featureset_mod.np, "save", wrapper)
    with pytest.raises(OSError, match="simulated"):
        fs.save(target)
    assert len(calls) == 2  # the first file was written, the second failed
    monkeypatch.undo()
    assert not target.exists()
    with pytest.raises(InputError, match="interrupted"):
        FeatureSet.load(target)
    assert leftovers(target) == []  # the partial directory was cleaned up


def test_interrupted_save_keeps_previous_store(fs, probe, tmp_path, monkeypatch):
    target = tmp_path / "store"
    old = other_fs(probe)
    old.save(target)
    wrapper, calls = _failing_after_first(np.save)
    monkeypatch.setattr(featureset_mod.np, "save", wrapper)
    with pytest.raises(OSError, match="simulated"):
        fs.save(target)
    monkeypatch.undo()
    assert_same(old, FeatureSet.load(target))
    assert leftovers(target) == []


def test_interrupted_fsync_keeps_previous_store(fs, probe, tmp_path, monkeypatch):
    target = tmp_path / "store"
    old = other_fs(probe)
    old.save(target)

    def boom(fd):
        raise OSError("simulated crash in fsync")

    monkeypatch.setattr(featureset_mod.os, "fsync", boom)
    with pytest.raises(OSError, match="simulated"):
        fs.save(target)
    monkeypatch.undo()
    assert_same(old, FeatureSet.load(target))
    assert leftovers(target) == []


def test_killed_save_leaves_partial_directory_that_does_not_load(fs, probe, tmp_path, monkeypatch):
    """A hard kill runs no cleanup: the partial directory stays, but neither it nor the target loads as the new set."""
    target = tmp_path / "store"
    old = other_fs(probe)
    old.save(target)
    wrapper, _ = _failing_after_first(np.save)
    monkeypatch.setattr(featureset_mod.np, "save", wrapper)
    monkeypatch.setattr(featureset_mod.shutil, "rmtree", lambda *a, **k: None)  # no cleanup, as after SIGKILL
    with pytest.raises(OSError):
        fs.save(target)
    monkeypatch.undo()
    assert_same(old, FeatureSet.load(target))
    partial = [tmp_path / name for name in leftovers(target)]
    assert partial, "expected the uncleaned partial directory"
    for p in partial:
        with pytest.raises(InputError, match="interrupted"):
            FeatureSet.load(p)


def test_interrupted_final_swap_keeps_previous_store(fs, probe, tmp_path, monkeypatch):
    """An interruption while the new directory is renamed into place must not lose the previous store.

    ``save`` moves the old store aside, then renames the new one into place; if
    that second rename raises (e.g. KeyboardInterrupt arriving between the two),
    the old store must come back to ``path``.
    """
    target = tmp_path / "store"
    old = other_fs(probe)
    old.save(target)
    real_rename = Path.rename

    def rename(self, dest):
        if ".partial-" in self.name and Path(dest) == target:
            raise KeyboardInterrupt("simulated interrupt during the swap")
        return real_rename(self, dest)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        fs.save(target)
    monkeypatch.undo()
    assert target.exists(), f"the previous store was moved aside ({leftovers(target)}) and not put back"
    assert_same(old, FeatureSet.load(target))


# --------------------------------------------------------------------------- overwrite, damage
def test_overwrite_existing_store(fs, probe, tmp_path):
    target = tmp_path / "store"
    other_fs(probe).save(target)
    fs.save(target)
    assert_same(fs, FeatureSet.load(target))
    assert leftovers(target) == []
    # and back again
    again = other_fs(probe, seed=3)
    again.save(target)
    assert_same(again, FeatureSet.load(target))
    assert leftovers(target) == []


def _npy_files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.suffix == ".npy")


def test_truncated_npy_raises_input_error(fs, tmp_path):
    for i, victim_name in enumerate(f.name for f in _npy_files(fs.save(tmp_path / "probe"))):
        target = tmp_path / f"s{i}"
        fs.save(target)
        victim = target / victim_name
        size = victim.stat().st_size
        with open(victim, "r+b") as f:
            f.truncate(size // 2)
        with pytest.raises(InputError):
            FeatureSet.load(target)
        if not victim_name.startswith(("positions-", "labels")):
            with pytest.raises(InputError):
                FeatureSet.load(target, mmap=True)


def test_other_damage_raises_input_error(fs, tmp_path):
    # a missing layer file
    target = tmp_path / "missing"
    fs.save(target)
    meta = json.loads((target / META_NAME).read_text())
    (target / meta["layers"]["act"]["file"]).unlink()
    with pytest.raises(InputError, match="damaged"):
        FeatureSet.load(target)
    # a layer file of the wrong shape
    target = tmp_path / "shape"
    fs.save(target)
    np.save(target / meta["layers"]["act"]["file"], np.zeros((5, 3), dtype=np.float32))
    with pytest.raises(InputError, match="shape"):
        FeatureSet.load(target)
    # a truncated / invalid featureset.json
    target = tmp_path / "json"
    fs.save(target)
    text = (target / META_NAME).read_text()
    (target / META_NAME).write_text(text[: len(text) // 2])
    with pytest.raises(InputError):
        FeatureSet.load(target)
    # sample ids edited so they no longer match the hash
    target = tmp_path / "ids"
    fs.save(target)
    meta2 = json.loads((target / META_NAME).read_text())
    meta2["sample_ids"] = meta2["sample_ids"][::-1]
    (target / META_NAME).write_text(json.dumps(meta2))
    with pytest.raises(InputError, match="hash"):
        FeatureSet.load(target)


# --------------------------------------------------------------------------- sample checks
def test_check_same_featuresets(fs, probe):
    same = other_fs(probe)
    check_same_featuresets(fs, same)  # same probe, same order: no error
    rev = Dataset("rev", probe.X[::-1].copy(), probe.y[::-1].copy(), probe.ids[::-1].copy())
    other = deepspan.extract(SmallCNN(), rev, "act", policy="gap")
    with pytest.raises(SampleMismatchError):
        check_same_featuresets(fs, other)
    with pytest.raises(SampleMismatchError):
        check_same_featuresets(fs, probe.X)  # no hash at all
    check_same_featuresets(fs, probe)  # a Dataset carries the same hash


def test_loaded_store_still_checks_samples(fs, probe, tmp_path):
    fs.save(tmp_path / "a")
    rev = Dataset("rev", probe.X[::-1].copy(), probe.y[::-1].copy(), probe.ids[::-1].copy())
    deepspan.extract(SmallCNN(), rev, "head.1").save(tmp_path / "b")
    a, b = FeatureSet.load(tmp_path / "a"), FeatureSet.load(tmp_path / "b")
    with pytest.raises(SampleMismatchError):
        deepspan.angle(a.pvector("head.1"), b.pvector("head.1"))
    with pytest.raises(SampleMismatchError):
        check_same_featuresets(a, b)
    assert os.path.isdir(tmp_path / "a")
