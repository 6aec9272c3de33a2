"""FeatureSet.save / FeatureSet.load: exact round trips, atomic writes, damaged and incomplete stores."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import deepspan
from deepspan import InputError, SampleMismatchError
from deepspan.errors import DeepspanWarning
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


# --------------------------------------------------------------------------- leftovers of killed saves, recovery
def test_save_removes_leftovers_of_earlier_killed_saves_only(fs, probe, tmp_path):
    target = tmp_path / "store"
    other_fs(probe).save(target)
    for name in (".store.partial-0123abcd", ".store.old-89abcdef"):  # what killed saves leave
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.npy").write_bytes(b"stale")
    keep = [".store.partial-keepme", ".other.partial-0123abcd", "store.old-0123abcd", ".store.old-0123abcd.bak"]
    for name in keep:  # not save's own names for this path: never touched
        (tmp_path / name).mkdir()
    (tmp_path / ".store.old-00000000").write_text("a file, not a store copy")
    fs.save(target)
    assert leftovers(target) == sorted([".store.old-00000000", ".store.old-0123abcd.bak", ".store.partial-keepme"])
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == sorted(keep + ["store"])
    assert_same(fs, FeatureSet.load(target))


def _kill_between_renames(monkeypatch, target):
    """Path.rename as a SIGKILL after ``save`` moved the old store aside: the new one never arrives and nothing
    is cleaned up or put back."""
    real_rename = Path.rename

    def rename(self, dest):
        if ".partial-" in self.name and Path(dest) == target or ".old-" in self.name:
            raise KeyboardInterrupt("simulated kill between the two renames")
        return real_rename(self, dest)

    monkeypatch.setattr(Path, "rename", rename)
    monkeypatch.setattr(featureset_mod.shutil, "rmtree", lambda *a, **k: None)


def test_load_recovers_the_store_a_kill_between_the_renames_left_aside(fs, probe, tmp_path, monkeypatch):
    target = tmp_path / "store"
    old = other_fs(probe)
    old.save(target)
    _kill_between_renames(monkeypatch, target)
    with pytest.raises(KeyboardInterrupt):
        fs.save(target)
    monkeypatch.undo()
    assert not target.exists()
    aside = [n for n in leftovers(target) if ".old-" in n]
    assert len(aside) == 1 and len(leftovers(target)) == 2  # the old copy and the new partial directory
    with pytest.warns(DeepspanWarning, match=rf"{target} was missing: .* left the previous store in {aside[0]}; "
                                             rf"it was renamed back"):
        back = FeatureSet.load(target)
    assert_same(old, back)
    assert target.is_dir() and [n for n in leftovers(target) if ".old-" in n] == []
    # the next save replaces it and removes the partial directory the kill left
    fs.save(target)
    assert_same(fs, FeatureSet.load(target))
    assert leftovers(target) == []


def test_load_reads_the_copy_in_place_when_it_cannot_be_renamed_back(probe, tmp_path, monkeypatch):
    target = tmp_path / "store"
    old = other_fs(probe)
    old.save(target)
    aside = tmp_path / ".store.old-0badcafe"
    target.rename(aside)  # the state on disk after a kill between the two renames

    def read_only(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(featureset_mod.os, "rename", read_only)
    with pytest.warns(DeepspanWarning, match=r"could not be renamed back: Permission denied\); loading that copy"):
        got = FeatureSet.load(target)
    assert_same(old, got)
    assert not target.exists() and aside.is_dir()
    monkeypatch.undo()
    # an incomplete copy is not a store: nothing is recovered
    (aside / META_NAME).unlink()
    with pytest.raises(InputError, match="interrupted"):
        FeatureSet.load(target)
    assert not target.exists()


# --------------------------------------------------------------------------- checksums
def test_save_records_sha256_of_every_file(fs, tmp_path):
    import hashlib

    target = fs.save(tmp_path / "store")
    meta = json.loads((target / META_NAME).read_text())
    assert meta["checksums"]["algorithm"] == "sha256"
    files = sorted(p.name for p in _npy_files(target))
    assert sorted(meta["checksums"]["files"]) == files and len(files) == 5  # 3 layers, 1 positions, labels
    for name in files:
        assert meta["checksums"]["files"][name] == hashlib.sha256((target / name).read_bytes()).hexdigest()


def test_array_overwritten_with_zeros_is_detected(fs, tmp_path):
    target = fs.save(tmp_path / "store")
    meta = json.loads((target / META_NAME).read_text())
    victim = target / meta["layers"]["head.1"]["file"]
    np.save(victim, np.zeros_like(np.asarray(fs["head.1"])))  # same shape and dtype: loads silently without sums
    for mmap in (False, True):
        with pytest.raises(InputError) as err:
            FeatureSet.load(target, mmap=mmap)
        msg = str(err.value)
        assert msg.startswith(f"{victim} does not match the sha256 checksum recorded when the store was saved")
        assert "Re-run the extraction or save the FeatureSet again" in msg
    unchecked = FeatureSet.load(target, verify=False)
    assert not np.asarray(unchecked["head.1"]).any()
    # labels and positions are covered too
    target2 = fs.save(tmp_path / "store2")
    np.save(target2 / "labels.npy", (np.asarray(fs.labels) + 1) % 10)
    with pytest.raises(InputError, match=r"labels\.npy does not match the sha256 checksum"):
        FeatureSet.load(target2)


def test_store_without_checksums_loads_with_a_note(fs, tmp_path):
    target = fs.save(tmp_path / "store")
    meta = json.loads((target / META_NAME).read_text())
    del meta["checksums"]
    meta["deepspan_version"] = "0.1.0"
    (target / META_NAME).write_text(json.dumps(meta))
    with pytest.warns(DeepspanWarning, match=rf"{target} was written by deepspan 0\.1\.0 without checksums, so its "
                                             rf"arrays were loaded unverified"):
        got = FeatureSet.load(target)
    assert_same(fs, got)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same(fs, FeatureSet.load(target, verify=False))
    # a checksum entry removed from a store that has them is damage, not an old store
    target2 = fs.save(tmp_path / "store2")
    meta2 = json.loads((target2 / META_NAME).read_text())
    meta2["checksums"]["files"].pop("labels.npy")
    (target2 / META_NAME).write_text(json.dumps(meta2))
    with pytest.raises(InputError, match=r"records no checksum for labels\.npy"):
        FeatureSet.load(target2)


# --------------------------------------------------------------------------- ids and rows
def test_ids_of_another_length_than_the_rows_are_refused():
    from deepspan.features.featureset import hash_sample_ids

    ids = np.arange(4)
    with pytest.raises(InputError, match=r"^layer 'a' has 5 rows but sample_ids has 4 ids; give one id per sample"):
        FeatureSet({"a": np.zeros((5, 2))}, ids, hash_sample_ids(ids), {"a": "flatten"})
    with pytest.raises(InputError, match=r"^labels has 3 entries but sample_ids has 4 ids"):
        FeatureSet({"a": np.zeros((4, 2))}, ids, hash_sample_ids(ids), {"a": "flatten"}, labels=np.arange(3))
    pos = np.column_stack([np.repeat(ids, 2), np.tile([0, 1], 4)])
    with pytest.raises(InputError, match=r"^layer 'c' has 7 rows but 8 positions"):
        FeatureSet({"c": np.zeros((7, 3))}, ids, hash_sample_ids(ids), {"c": "channels"}, positions={"c": pos})
    ok = FeatureSet({"c": np.zeros((8, 3)), "a": np.zeros((4, 2))}, ids, hash_sample_ids(ids),
                    {"c": "channels", "a": "flatten"}, positions={"c": pos}, labels=np.arange(4))
    assert ok.n_samples == 4


def test_stored_ids_of_another_length_are_a_damaged_store(fs, tmp_path):
    from deepspan.features.featureset import hash_sample_ids

    target = fs.save(tmp_path / "store")
    meta = json.loads((target / META_NAME).read_text())
    meta["sample_ids"] = meta["sample_ids"][:-1]
    meta["sample_hash"] = hash_sample_ids(meta["sample_ids"])
    (target / META_NAME).write_text(json.dumps(meta))
    with pytest.raises(InputError, match=rf"^{target} is a damaged FeatureSet: layer 'act' has 120 rows but "
                                         rf"sample_ids has 119 ids"):
        FeatureSet.load(target)
