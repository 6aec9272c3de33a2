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
    bad = tmp_path / "vectors.npz"
    np.savez(bad, X=np.random.default_rng(0).random((300, 12)).astype(np.float32), y=np.arange(300) % 3)
    out = tmp_path / "run"
    with pytest.raises(InputError, match="needs image data"):
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
