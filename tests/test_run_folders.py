"""Run folders of ``deepspan reproduce``: settings are written only once they are known to work, so a failed
command never leaves a folder that refuses the corrected one."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from deepspan.errors import InputError
from deepspan.experiments.config import config_for
from deepspan.experiments.context import STATE, ReproContext


def test_missing_dataset_writes_nothing_and_the_corrected_command_is_accepted(tmp_path):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "deepspan.cli", "reproduce", "--scale", "tiny", "--dataset",
                        str(tmp_path / "missing.npz"), "--out", str(out), "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "missing.npz does not exist" in r.stderr
    assert not out.exists()
    # the corrected settings are accepted in the same folder, and written
    ctx = ReproContext(config_for("tiny"), out, progress=False)
    state = json.loads((out / STATE).read_text())
    assert state["fingerprint"] == ctx.cfg.fingerprint()


def test_unusable_images_refused_before_the_folder_is_touched(tmp_path):
    bad = tmp_path / "volumes.npz"  # N x C x D x H x W: neither images nor vectors (vectors run: test_datasets_edges)
    np.savez(bad, X=np.random.default_rng(0).random((300, 1, 2, 3, 4)).astype(np.float32), y=np.arange(300) % 3)
    out = tmp_path / "run"
    with pytest.raises(InputError, match="needs image data .* or vectors"):
        ReproContext(config_for("tiny", dataset=str(bad)), out, progress=False)
    assert not out.exists()


def test_other_settings_refused_and_the_saved_state_kept(tmp_path):
    out = tmp_path / "run"
    ReproContext(config_for("tiny"), out, progress=False)
    before = (out / STATE).read_text()
    with pytest.raises(InputError, match="holds a reproduction with other settings"):
        ReproContext(config_for("tiny", seed=1), out, progress=False)
    assert (out / STATE).read_text() == before


# ----------------------------------------------------------------------------- datasets smaller than the scale
def test_balanced_capacity_is_the_largest_balanced_probe():
    from deepspan.data import Dataset, balanced_capacity, probe_subset

    rng = np.random.default_rng(0)
    for _ in range(20):
        counts = rng.integers(1, 9, size=rng.integers(2, 6))
        y = np.repeat(np.arange(len(counts)), counts)
        ds = Dataset("toy", np.zeros((len(y), 2), np.float32), y, np.arange(len(y)))
        cap = balanced_capacity(ds)
        assert len(probe_subset(ds, cap, seed=1)) == cap
        if cap < len(y):
            with pytest.raises(InputError, match="a balanced probe of"):
                probe_subset(ds, cap + 1, seed=1)


def test_quick_settings_on_digits_are_capped_and_stated():
    from deepspan.experiments.splits import DataSplits

    d = DataSplits(config_for("quick", dataset="digits"))
    d.validate()
    # the 297 digits test images hold only 27 zeros: a balanced probe of 270 (10 x 27), not 1,000
    assert len(d.probe) == 270 and d.caps["n_probe"] == {
        "asked": 1000, "used": 270, "why": "a class-balanced probe of digits (297 images) is limited by its rarest class"}
    assert d.caps["n_train"]["used"] == len(d.train) == 1500 and d.caps["n_test"]["used"] == len(d.test) == 297
    assert {k for k in d.caps if k.startswith("training set of")} == {"training set of 2000", "training set of 8000"}
    tiny = DataSplits(config_for("tiny"))
    tiny.validate()
    assert tiny.caps == {} and len(tiny.probe) == 200


# ----------------------------------------------------------------------------- deepspan track --out
TRACK_CNN = "deepspan.zoo.models:SmallCNN"
TRACK_KW = {"image_size": 8, "widths": [4, 8, 16]}


def _track_states(folder, seeds):
    """SmallCNN state_dict files e0.pt, e1.pt, ... (one per seed, untrained) in ``folder``."""
    import torch

    from deepspan.zoo.models import SmallCNN

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, s in enumerate(seeds):
        torch.manual_seed(s)
        paths.append(folder / f"e{k}.pt")
        torch.save(SmallCNN(**TRACK_KW).state_dict(), paths[-1])
    return paths


def _track_args(files, out):
    return ["track", TRACK_CNN, *map(str, files), "--kwargs", json.dumps(TRACK_KW), "--layer", "relu3", "--n", "60",
            "--out", str(out)]


def _track_cli(files, out):
    """``deepspan track`` as a user runs it (a subprocess: what reaches the terminal, exit status)."""
    return subprocess.run([sys.executable, "-m", "deepspan.cli", *_track_args(files, out)], capture_output=True,
                          text=True, timeout=300)


def _track_in_process(files, out):
    """The same command in this process (click's runner: no interpreter start-up), for the accepted runs."""
    from click.testing import CliRunner

    from deepspan.cli import main

    return CliRunner().invoke(main, _track_args(files, out))


def test_track_out_refuses_another_checkpoint_list_and_appends_an_extension(tmp_path):
    a = _track_states(tmp_path / "a", [0, 1, 2])
    b = _track_states(tmp_path / "b", [5, 6])  # the same labels (e0, e1), other weights
    out = tmp_path / "track"
    r = _track_in_process(a[:2], out)
    assert r.exit_code == 0, r.output
    before = (out / "rows.json").read_text()
    old = json.loads(before)
    assert sorted(old["checkpoint_ids"]) == ["e0", "e1"]
    assert old["checkpoint_ids"]["e1"]["source"] == str(a[1])

    r = _track_cli(b, out)
    text = r.stdout + r.stderr
    assert r.returncode == 1 and "Traceback" not in text, text
    err = [line for line in r.stderr.splitlines() if line.startswith("Error: ")]
    assert len(err) == 1, text
    msg = err[0]
    assert f"{out} holds the tracking results of another checkpoint list" in msg
    assert "there [e0, e1] (2 checkpoints)" in msg and "now [e0, e1] (2 checkpoints)" in msg
    assert f"first difference at position 1: e0 (sha256 {old['checkpoint_ids']['e0']['sha256']}, {a[0]}) there" in msg
    assert f"{b[0]}) now -- the same label with other weights" in msg
    assert "Choose another --out, or delete" in msg
    assert (out / "rows.json").read_text() == before  # nothing rewritten

    # a list that extends the stored one resumes and appends; the recorded angles to the data stay
    r = _track_in_process(a, out)
    assert r.exit_code == 0, r.output
    assert "resumed: 2 of 3" in r.output
    new = json.loads((out / "rows.json").read_text())
    assert [c[0] for c in new["checkpoints"]] == ["e0", "e1", "e2"]
    def to_data(table):
        return {r["checkpoint"]: r["value"] for r in table["rows"] if r["quantity"] == "angle_to_data"}

    assert {k: v for k, v in to_data(new).items() if k != "e2"} == to_data(old) and len(to_data(old)) == 2

    # a shorter list is another list too: refused, naming what would be left over
    after = (out / "rows.json").read_text()
    r = _track_in_process(a[:1], out)
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert r.output.startswith("Error: ") and r.output.count("\n") == 1, r.output
    assert "the folder holds 3 checkpoints and the list given has 1: e1, e2 would be left in the table" in r.output
    assert (out / "rows.json").read_text() == after


@pytest.fixture(scope="module")
def track_probe():
    from deepspan.data import load, probe_subset

    return probe_subset(load("digits", "test"), 40, seed=0)


def _series(files):
    from deepspan.track import CheckpointSeries
    from deepspan.zoo.models import SmallCNN

    return CheckpointSeries.from_files(lambda: SmallCNN(**TRACK_KW), {f.stem: f for f in files})


def test_track_checkpoints_refuses_reordered_lists_and_keeps_the_folder(tmp_path, track_probe):
    from deepspan.track import track_checkpoints

    a = _track_states(tmp_path / "a", [0, 1])
    out = tmp_path / "t"
    track_checkpoints(_series(a), track_probe, ["relu3"], out_dir=out)
    before = (out / "rows.json").read_text()
    with pytest.raises(InputError, match=r"first difference at position 1: e0 \(sha256 [0-9a-f]{16}, .*e0.pt\) there, "
                                         r"e1 \(sha256 [0-9a-f]{16}, .*e1.pt\) now\. .*Choose another out_dir"):
        track_checkpoints(_series([a[1], a[0]]), track_probe, ["relu3"], out_dir=out)  # the same files, reordered
    assert (out / "rows.json").read_text() == before
    # the same list from copies of the files in another folder (same weights) resumes, recomputing nothing
    copies = [tmp_path / "copy" / f.name for f in a]
    copies[0].parent.mkdir()
    for src, dst in zip(a, copies):
        dst.write_bytes(src.read_bytes())
    again = track_checkpoints(_series(copies), track_probe, ["relu3"], out_dir=out, finalize=False)
    assert again.order == ["e0", "e1"]
    assert json.loads((out / "rows.json").read_text())["rows"] == json.loads(before)["rows"]


def test_tables_without_checkpoint_ids_compare_labels(tmp_path, track_probe):
    """rows.json written before checkpoint ids existed: the labels must still be a prefix of the new list."""
    from deepspan.track import track_checkpoints

    a = _track_states(tmp_path / "a", [0, 1, 2])
    out = tmp_path / "t"
    track_checkpoints(_series(a[:2]), track_probe, ["relu3"], out_dir=out)
    saved = json.loads((out / "rows.json").read_text())
    del saved["checkpoint_ids"]
    (out / "rows.json").write_text(json.dumps(saved))
    with pytest.raises(InputError, match=r"first difference at position 1: e0 \(sha256 not recorded\) there"):
        track_checkpoints(_series([a[1], a[2]]), track_probe, ["relu3"], out_dir=out)  # labels e1, e2
    tr = track_checkpoints(_series(a), track_probe, ["relu3"], out_dir=out)
    assert tr.order == ["e0", "e1", "e2"]
    assert sorted(json.loads((out / "rows.json").read_text())["checkpoint_ids"]) == ["e2"]


def test_tracker_series_of_unknown_names_raises(tmp_path, track_probe):
    from deepspan.track import track_checkpoints

    tr = track_checkpoints(_series(_track_states(tmp_path / "a", [0, 1])), track_probe, ["relu3"], k=2)
    assert len(tr.series("sigma_1", "relu3")) == 2
    with pytest.raises(InputError, match=r"no series for layer 'relu2': this Tracker tracks layers relu3\. "
                                         r"Did you mean 'relu3'\?"):
        tr.series("sigma_1", "relu2")
    with pytest.raises(InputError) as err:
        tr.series("angle_to_dat", "relu3")
    msg = str(err.value)
    assert msg.startswith("no series 'angle_to_dat' for layer 'relu3': the quantities recorded there are sigma_1, "
                          "sigma_2, energy_r1, energy_r2, gap, angle_to_data")
    assert "Did you mean 'angle_to_data' or " in msg  # the closest first
    with pytest.raises(InputError, match="no series 'zzz'") as err:
        tr.series("zzz", "relu3")
    assert "Did you mean" not in str(err.value)
