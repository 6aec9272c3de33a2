"""Tracker / track_checkpoints / CheckpointSeries on a real (short) training run on the digits.

An MLP 64-32-10 is trained for 3 epochs (SGD, lr 0.1, batch 64, fixed seeds);
the live Tracker records the hidden layer before and after the ReLU at init
and after every epoch, and state_dict checkpoints of every step are saved.
The recorded measures are then recomputed post hoc from the checkpoint files
and directly from manually computed features.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

import deepspan
from deepspan import InputError, SampleMismatchError
from deepspan.data import Dataset, load_digits
from deepspan.track import CheckpointSeries, Checkpoint, Tracker, load_state_dict, track_checkpoints
from deepspan.track import tracker as tracker_mod

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

LAYERS = ["1", "2"]  # the hidden Linear (pre-activation) and the hidden ReLU
K = 4
LABELS = ["e0", "e1", "e2", "e3"]
EPOCHS = 3


def make_mlp(hidden: int = 32) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def manual_features(model: nn.Sequential, X) -> dict[str, np.ndarray]:
    x = torch.as_tensor(np.asarray(X), dtype=torch.float32).reshape(len(X), -1)
    with torch.no_grad():
        h = F.linear(x, model[1].weight, model[1].bias)
    return {"1": h.numpy(), "2": torch.clamp(h, min=0).numpy()}


def rows_by_key(rows) -> dict[tuple[str, str, str], dict]:
    out = {}
    for r in rows:
        key = (r["checkpoint"], r["layer"], r["quantity"])
        assert key not in out, f"duplicate row {key}"
        out[key] = r
    return out


def assert_same_table(got, expected, rel: float = 1e-9) -> None:
    """Same rows in the same order, same epoch/iteration, values equal within ``rel`` (relative)."""
    assert [(r["checkpoint"], r["layer"], r["quantity"]) for r in got] == \
        [(r["checkpoint"], r["layer"], r["quantity"]) for r in expected]
    for a, b in zip(got, expected):
        assert (a["epoch"], a["iteration"]) == (b["epoch"], b["iteration"])
        assert math.isclose(a["value"], b["value"], rel_tol=rel, abs_tol=1e-12), (a, b)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits()


@pytest.fixture(scope="module")
def probe(digits) -> Dataset:
    return Dataset("digits-probe", digits.X[:500], digits.y[:500], digits.ids[:500])


@pytest.fixture(scope="module")
def run(digits, probe, tmp_path_factory):
    """Train 3 epochs with a live Tracker; returns the model, tracker, checkpoint files and directories."""
    root = tmp_path_factory.mktemp("track")
    ckpt_dir = root / "ckpt"
    ckpt_dir.mkdir()
    torch.manual_seed(0)
    model = make_mlp()
    X = torch.as_tensor(digits.X, dtype=torch.float32).reshape(len(digits.X), -1)
    y = torch.as_tensor(digits.y)
    loader = DataLoader(TensorDataset(X, y), batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tracker = Tracker(model, probe, LAYERS, k=K, out_dir=root / "live")
    files = {}

    def checkpoint(epoch: int) -> None:
        added = tracker.step(epoch=epoch)
        assert added, "a new step adds rows"
        path = ckpt_dir / f"e{epoch}.pt"
        torch.save(model.state_dict(), path)
        files[f"e{epoch}"] = path

    checkpoint(0)
    losses = []
    for epoch in range(1, EPOCHS + 1):
        model.train()
        total = 0.0
        for xb, yb in loader:
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
        losses.append(total / len(X))
        checkpoint(epoch)
    tracker.finalize()
    posthoc = track_checkpoints(CheckpointSeries.from_files(make_mlp, files), probe, LAYERS, k=K,
                                out_dir=root / "posthoc")
    return {"model": model, "tracker": tracker, "files": files, "root": root, "losses": losses, "posthoc": posthoc}


# --------------------------------------------------------------------------- the live run
def test_training_actually_learned(run):
    losses = run["losses"]
    assert losses[-1] < losses[0] < math.log(10) + 0.1
    assert run["tracker"].order == LABELS


def test_live_table_contents(run):
    tr = run["tracker"]
    rows = rows_by_key(tr.table())
    for label in LABELS:
        for layer in LAYERS:
            for i in range(1, K + 1):
                assert (label, layer, f"sigma_{i}") in rows
                assert (label, layer, f"energy_r{i}") in rows
            assert (label, layer, "gap") in rows
            assert (label, layer, "angle_to_data") in rows
            assert (label, layer, "angle_to_final") in rows
            sig = [rows[(label, layer, f"sigma_{i}")]["value"] for i in range(1, K + 1)]
            en = [rows[(label, layer, f"energy_r{i}")]["value"] for i in range(1, K + 1)]
            assert all(a >= b for a, b in zip(sig, sig[1:])), sig
            assert all(a <= b + 1e-15 for a, b in zip(en, en[1:])), en
            assert 0 < en[0] and en[-1] <= 1 + 1e-12
            assert rows[(label, layer, "gap")]["value"] == pytest.approx(sig[1] / sig[0], rel=1e-12)
            assert rows[(label, layer, "sigma_1")]["epoch"] == int(label[1:])
            assert rows[(label, layer, "sigma_1")]["iteration"] is None
            has_prev = (label, layer, "angle_to_previous") in rows
            assert has_prev == (label != "e0")
    # the last checkpoint is the final one
    for layer in LAYERS:
        assert rows[("e3", layer, "angle_to_final")]["value"] == pytest.approx(0.0, abs=1e-9)
        # training moved the features
        assert rows[("e0", layer, "angle_to_final")]["value"] > 1e-3
        # the recorded angles to the previous step are the angles between the kept P-vectors
        for prev, cur in zip(LABELS, LABELS[1:]):
            assert rows[(cur, layer, "angle_to_previous")]["value"] == pytest.approx(tr.angle(cur, prev, layer), abs=1e-12)
        assert len(tr.series("sigma_1", layer)) == 4
    # nothing else than these quantities
    quantities = {q for (_, _, q) in rows}
    expected = {f"sigma_{i}" for i in range(1, K + 1)} | {f"energy_r{i}" for i in range(1, K + 1)} | \
        {"gap", "angle_to_data", "angle_to_previous", "angle_to_final"}
    assert quantities == expected
    # finalize is idempotent
    n = len(tr.table())
    tr.finalize()
    assert len(tr.table()) == n
    assert len(tr.table("angle_to_final")) == len(LABELS) * len(LAYERS)


def test_live_equals_posthoc_recomputation(run):
    assert_same_table(run["posthoc"].table(), run["tracker"].table())
    assert run["posthoc"].order == LABELS


def test_live_equals_direct_recomputation(run, probe):
    tr = run["tracker"]
    rows = rows_by_key(tr.table())
    models = {}
    for label in ("e1", "e2"):
        m = load_state_dict(make_mlp(), run["files"][label])
        models[label] = manual_features(m, probe.X)
    data_p = deepspan.pvector(probe.X.reshape(len(probe.X), -1), n_values=2)
    for layer in LAYERS:
        p = deepspan.pvector(models["e2"][layer], n_values=K)
        prev = deepspan.pvector(models["e1"][layer], n_values=K)
        for i in range(K):
            assert rows[("e2", layer, f"sigma_{i + 1}")]["value"] == pytest.approx(p.singular_values[i], rel=1e-5)
            assert rows[("e2", layer, f"energy_r{i + 1}")]["value"] == pytest.approx(p.energy[i], rel=1e-5)
        assert rows[("e2", layer, "gap")]["value"] == pytest.approx(p.gap, rel=1e-5)
        assert rows[("e2", layer, "angle_to_data")]["value"] == pytest.approx(deepspan.angle(p, data_p), abs=1e-4)
        assert rows[("e2", layer, "angle_to_previous")]["value"] == pytest.approx(deepspan.angle(p, prev), abs=1e-4)
        assert deepspan.angle(tr.u[("e2", layer)], p) < 1e-4
        # through extract on the checkpoint model: the same P-vector
        fs = deepspan.extract(load_state_dict(make_mlp(), run["files"]["e2"]), probe, layer)
        assert deepspan.angle(fs.pvector(layer), tr.u[("e2", layer)]) < 1e-9


def test_rows_files_agree_with_table(run):
    tr = run["tracker"]
    out = run["root"] / "live"
    assert (out / "rows.csv").is_file() and (out / "rows.json").is_file()
    saved = json.loads((out / "rows.json").read_text())
    assert saved["rows"] == tr.table()
    assert [c[0] for c in saved["checkpoints"]] == LABELS
    assert saved["config"]["layers"] == LAYERS and saved["config"]["k"] == K
    assert saved["provenance"]["final"] == "e3"
    with open(out / "rows.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == deepspan.track.ROW_FIELDS
        csv_rows = list(reader)
    table = tr.table()
    assert len(csv_rows) == len(table)
    for c, r in zip(csv_rows, table):
        assert c["checkpoint"] == r["checkpoint"] and c["layer"] == r["layer"] and c["quantity"] == r["quantity"]
        assert c["epoch"] == ("" if r["epoch"] is None else str(r["epoch"]))
        assert c["iteration"] == ("" if r["iteration"] is None else str(r["iteration"]))
        assert float(c["value"]) == r["value"]
    # the kept P-vectors are on disk
    for label in LABELS:
        for layer in LAYERS:
            u = np.load(out / "u" / Tracker._u_name(label, layer))
            np.testing.assert_array_equal(u, tr.u[(label, layer)])


# --------------------------------------------------------------------------- kill and resume
def _counting_factory(crash_on: int | None = None):
    calls = []

    def factory():
        calls.append(1)
        if crash_on is not None and len(calls) == crash_on:
            raise RuntimeError("simulated crash while loading a checkpoint")
        return make_mlp()

    return factory, calls


def test_posthoc_run_resumes_after_a_crash(run, probe, tmp_path):
    out = tmp_path / "resume"
    crashing, calls = _counting_factory(crash_on=3)
    with pytest.raises(RuntimeError, match="simulated"):
        track_checkpoints(CheckpointSeries.from_files(crashing, run["files"]), probe, LAYERS, k=K, out_dir=out)
    assert len(calls) == 3
    saved = json.loads((out / "rows.json").read_text())
    assert [c[0] for c in saved["checkpoints"]] == ["e0", "e1"]
    factory, calls = _counting_factory()
    resumed = track_checkpoints(CheckpointSeries.from_files(factory, run["files"]), probe, LAYERS, k=K, out_dir=out)
    assert len(calls) == 2  # only e2 and e3 were loaded and computed
    assert resumed.order == LABELS
    assert_same_table(resumed.table(), run["posthoc"].table())
    assert_same_table(json.loads((out / "rows.json").read_text())["rows"], run["posthoc"].table())
    # a third call on the complete directory recomputes nothing and changes nothing
    factory, calls = _counting_factory()
    again = track_checkpoints(CheckpointSeries.from_files(factory, run["files"]), probe, LAYERS, k=K, out_dir=out)
    assert len(calls) == 0
    assert_same_table(again.table(), run["posthoc"].table())


def test_posthoc_run_resumes_after_a_crash_while_writing_the_table(run, probe, tmp_path, monkeypatch):
    """A crash after the u vectors and rows.csv of step 3 were written but before rows.json."""
    out = tmp_path / "resume-write"
    real = tracker_mod.atomic_write_json
    writes = []

    def crashing_write(path, obj):
        writes.append(1)
        if len(writes) == 3:
            raise KeyboardInterrupt("simulated kill while writing rows.json")
        return real(path, obj)

    monkeypatch.setattr(tracker_mod, "atomic_write_json", crashing_write)
    factory, calls = _counting_factory()
    with pytest.raises(KeyboardInterrupt):
        track_checkpoints(CheckpointSeries.from_files(factory, run["files"]), probe, LAYERS, k=K, out_dir=out)
    monkeypatch.undo()
    assert len(calls) == 3
    assert [c[0] for c in json.loads((out / "rows.json").read_text())["checkpoints"]] == ["e0", "e1"]
    factory, calls = _counting_factory()
    resumed = track_checkpoints(CheckpointSeries.from_files(factory, run["files"]), probe, LAYERS, k=K, out_dir=out)
    assert len(calls) == 2
    assert_same_table(resumed.table(), run["posthoc"].table())
    with open(out / "rows.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(resumed.table())


def test_live_tracker_resumes_and_skips_recorded_steps(run, probe):
    tr = Tracker(run["model"], probe, LAYERS, k=K, out_dir=run["root"] / "live")
    assert tr.order == LABELS
    assert "e2" in tr
    assert tr.step(epoch=2) == []  # already recorded
    assert_same_table(tr.table(), run["tracker"].table())


def test_out_dir_with_other_settings_is_refused(run, probe, digits):
    live = run["root"] / "live"
    with pytest.raises(InputError, match="different settings"):
        Tracker(run["model"], probe, ["2"], k=K, out_dir=live)
    with pytest.raises(InputError, match="different settings"):
        Tracker(run["model"], probe, LAYERS, k=K + 1, out_dir=live)
    with pytest.raises(InputError, match="different settings"):
        Tracker(run["model"], probe, LAYERS, k=K, center=True, out_dir=live)
    other_probe = Dataset("p2", digits.X[:400], digits.y[:400], digits.ids[:400])
    with pytest.raises(InputError, match="different settings"):
        Tracker(run["model"], other_probe, LAYERS, k=K, out_dir=live)


# --------------------------------------------------------------------------- references
def test_reference_of_wrong_length_is_refused(run, probe):
    with pytest.raises(SampleMismatchError):
        Tracker(run["model"], probe, LAYERS, references={"bad": np.ones(499)})
    fs = deepspan.extract(run["model"], Dataset("p", probe.X[:499], probe.y[:499], probe.ids[:499]), "2")
    with pytest.raises(SampleMismatchError):
        Tracker(run["model"], probe, LAYERS, references={"bad": fs.pvector("2")})


def test_reference_with_other_sample_hash_is_refused(run, digits, probe):
    other = Dataset("next500", digits.X[500:1000], digits.y[500:1000], digits.ids[500:1000])
    ref = deepspan.extract(run["model"], other, "2").pvector("2")
    assert len(ref.u) == 500  # same length: only the hash tells them apart
    with pytest.raises(SampleMismatchError):
        Tracker(run["model"], probe, LAYERS, references={"other": ref})


def test_valid_reference_gives_angle_rows(run, probe):
    torch.manual_seed(5)
    other = make_mlp()
    ref = deepspan.extract(other, probe, "2").pvector("2")
    tr = Tracker(run["model"], probe, LAYERS, k=K, references={"other": ref, "raw": -3.0 * ref.u})
    tr.step(epoch=3)
    fs = deepspan.extract(run["model"], probe, LAYERS)
    for layer in LAYERS:
        expect = deepspan.angle(fs.pvector(layer), ref)
        rows = tr.table("angle_to_other", layer)
        assert len(rows) == 1
        assert rows[0]["value"] == pytest.approx(expect, abs=1e-9)
        assert tr.table("angle_to_raw", layer)[0]["value"] == pytest.approx(expect, abs=1e-9)
    # the data reference can be switched off
    tr2 = Tracker(run["model"], probe, "2", data_pvector=False)
    tr2.step(epoch=3)
    assert tr2.table("angle_to_data") == []


# --------------------------------------------------------------------------- bad checkpoints
class OtherArch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def test_missing_checkpoint_file(tmp_path, probe):
    series = CheckpointSeries.from_files(make_mlp, {"e5": tmp_path / "nope.pt"})
    with pytest.raises(InputError, match="nope.pt"):
        series.load(0)
    with pytest.raises(InputError, match="nope.pt"):
        track_checkpoints(series, probe, LAYERS)


def test_corrupt_checkpoint_file(tmp_path):
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(InputError, match="corrupt.pt"):
        CheckpointSeries.from_files(make_mlp, {"e1": bad}).load(0)
    # a checkpoint cut off mid-write
    good = tmp_path / "good.pt"
    torch.save(make_mlp().state_dict(), good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:300])
    with pytest.raises(InputError, match="cut.pt"):
        load_state_dict(make_mlp(), cut)
    # a pickled object that is not a state dict
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(InputError, match="state_dict"):
        load_state_dict(make_mlp(), tmp_path / "list.pt")


def test_empty_checkpoint_file(tmp_path):
    """A zero-byte checkpoint (a torch.save killed before writing) must raise InputError naming the file."""
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty.pt"):
        load_state_dict(make_mlp(), empty)


def test_checkpoint_of_other_architecture(tmp_path):
    path = tmp_path / "other_arch.pt"
    torch.save(OtherArch().state_dict(), path)
    with pytest.raises(InputError) as err:
        CheckpointSeries.from_files(make_mlp, {"e1": path}).load(0)
    msg = str(err.value)
    assert "other_arch.pt" in msg
    assert "missing" in msg and "unexpected" in msg
    for key in ("1.weight", "1.bias", "3.weight", "3.bias", "fc1.weight", "fc2.bias"):
        assert key in msg, key


def test_checkpoint_with_shape_mismatch(tmp_path):
    path = tmp_path / "wide.pt"
    torch.save(make_mlp(hidden=48).state_dict(), path)
    with pytest.raises(InputError) as err:
        CheckpointSeries.from_files(make_mlp, {"e1": path}).load(0)
    msg = str(err.value)
    assert "wide.pt" in msg
    assert "1.weight" in msg


def test_bad_checkpoint_midway_keeps_earlier_steps(run, probe, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    files = {"e0": run["files"]["e0"], "e1": run["files"]["e1"], "e2": bad}
    out = tmp_path / "midway"
    with pytest.raises(InputError, match="bad.pt"):
        track_checkpoints(CheckpointSeries.from_files(make_mlp, files), probe, LAYERS, k=K, out_dir=out)
    saved = json.loads((out / "rows.json").read_text())
    assert [c[0] for c in saved["checkpoints"]] == ["e0", "e1"]


def test_wrapped_and_in_memory_state_dicts(run, probe):
    sd = torch.load(run["files"]["e3"], weights_only=True)
    series = CheckpointSeries(make_mlp, [Checkpoint("mem", sd, epoch=3), Checkpoint("wrapped", {"state_dict": sd, "epoch": 3})])
    tr = track_checkpoints(series, probe, LAYERS, k=K)
    for layer in LAYERS:
        assert tr.angle("mem", "wrapped", layer) < 1e-9
        assert deepspan.angle(tr.u[("mem", layer)], run["tracker"].u[("e3", layer)]) < 1e-9
    with pytest.raises(InputError, match="unique"):
        CheckpointSeries(make_mlp, [Checkpoint("a", sd), Checkpoint("a", sd)])
    with pytest.raises(InputError):
        CheckpointSeries(make_mlp, [])
    s = CheckpointSeries.from_files(make_mlp, {"e4-i50": "x.pt", "warm": "y.pt"})
    assert (s.checkpoints[0].epoch, s.checkpoints[0].iteration) == (4, 50)
    assert (s.checkpoints[1].epoch, s.checkpoints[1].iteration) == (None, None)


def test_channels_policy_is_refused_by_the_tracker(probe):
    class Conv(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, x):
            return self.conv(x.unsqueeze(1))

    tr = Tracker(Conv(), probe, "conv", policy="channels", positions_per_image=2)
    with pytest.raises(InputError, match="channels"):
        tr.step(epoch=0)
    with pytest.raises(InputError, match="model"):
        Tracker(None, probe, "conv").step(epoch=0)


# --------------------------------------------------------------------------- Lightning
def test_lightning_callback_one_epoch(digits, probe, tmp_path):
    L = pytest.importorskip("lightning")
    from deepspan.track.lightning import DeepspanCallback

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = make_mlp()

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, _idx):
            x, y = batch
            return F.cross_entropy(self(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    torch.manual_seed(0)
    module = Module()
    X = torch.as_tensor(digits.X[:512], dtype=torch.float32).reshape(512, -1)
    loader = DataLoader(TensorDataset(X, torch.as_tensor(digits.y[:512])), batch_size=64)
    tracker = Tracker(None, probe, ["net.2"], k=K, out_dir=tmp_path / "pl")
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=[DeepspanCallback(tracker)])
    trainer.fit(module, loader)
    assert tracker.order == ["init", "e1"]
    assert len(tracker.table("sigma_1", "net.2")) == 2
    assert (tmp_path / "pl" / "rows.json").is_file()


def test_resume_refuses_a_different_reference_vector(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.random((60, 5)).astype(np.float32)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU())
    ref_a = rng.random(60)
    tr = deepspan.Tracker(model, X, ["1"], references={"other": ref_a}, out_dir=tmp_path)
    tr.step(epoch=0)
    # same name, same vector: resumes
    assert deepspan.Tracker(model, X, ["1"], references={"other": ref_a}, out_dir=tmp_path).order == ["e0"]
    with pytest.raises(deepspan.InputError, match="different reference 'other'"):
        deepspan.Tracker(model, X, ["1"], references={"other": rng.random(60)}, out_dir=tmp_path)
