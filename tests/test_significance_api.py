"""deepspan.significance through the public entry points: compare, compare_many, the CLI and the Tracker.

* ``compare(X, Y, n_perm=, n_boot=)`` gives ``{measure: Significance}`` equal to ``significance`` of each
  measure; FeatureSet rows gain ``significance``; ``compare_many`` reuses the prepared statistics and gives
  the same objects; a ``channels`` layer permutes whole images by default;
* ``deepspan compare --permutations N --bootstrap N`` prints the significance table and writes its columns
  to JSON and CSV (the numbers of ``significance``); bad counts are refused by the CLI without a traceback;
* ``Tracker(bootstrap=B)`` records the interval of ``angle_to_data``, equal to ``significance`` of the
  P-vector angle with the step's seed, and refuses settings that cannot give it.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import deepspan
from deepspan import InputError
from deepspan.measures.significance import Significance, significance

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402


def data(n: int = 120, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 8)) * np.linspace(3, 0.5, 8)
    Y = X @ rng.standard_normal((8, 6)) + 0.5 * rng.standard_normal((n, 6))
    return X, Y


def test_compare_returns_significance_objects_equal_to_significance():
    X, Y = data()
    out = deepspan.compare(X, Y, ["linear_cka", "procrustes"], n_perm=30, n_boot=20, seed=3)
    assert set(out) == {"linear_cka", "procrustes"}
    for name, sig in out.items():
        assert isinstance(sig, Significance)
        ref = significance(X, Y, name, n_perm=30, n_boot=20, seed=3)
        assert sig.as_dict() == ref.as_dict()
        assert np.array_equal(sig.null, ref.null) and np.array_equal(sig.boot, ref.boot)
        assert sig.value == deepspan.compare(X, Y, [name])[name]
    only_perm = deepspan.compare(X, Y, "linear_cka", n_perm=10)["linear_cka"]
    assert only_perm.ci_low is None and only_perm.n_boot is None and only_perm.p_value is not None
    with pytest.raises(InputError, match="n_perm must be a positive number"):
        deepspan.compare(X, Y, n_perm=0)


def _featuresets(channels: bool = False):
    from deepspan.features import extract

    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(6)) for _ in range(2)]
    d = deepspan.data.load_digits()
    X = torch.as_tensor(d.X[:60], dtype=torch.float32).reshape(60, 1, 8, 8)
    policy = "channels" if channels else "gap"
    kw = {"positions_per_image": 3} if channels else {}
    return [extract(net, X, ["1"], policy, **kw) for net in nets]


def test_featureset_rows_and_compare_many_carry_the_same_significance():
    fa, fb = _featuresets()
    rows = deepspan.compare(fa, fb, ["linear_cka"], n_perm=20, n_boot=10, seed=1)
    assert len(rows) == 1 and rows[0]["value"] == rows[0]["significance"].value
    many = deepspan.compare_many({"a": fa, "b": fb}, ["linear_cka"], n_perm=20, n_boot=10, seed=1)
    assert many[0]["significance"].as_dict() == rows[0]["significance"].as_dict()
    ref = significance(fa["1"], fb["1"], "linear_cka", n_perm=20, n_boot=10, seed=1)
    assert rows[0]["significance"].as_dict() == ref.as_dict()
    assert "significance" not in deepspan.compare(fa, fb, ["linear_cka"])[0]


def test_channels_layers_move_whole_images():
    fa, fb = _featuresets(channels=True)
    assert fa["1"].shape[0] == 60 * 3
    row = deepspan.compare(fa, fb, ["linear_cka"], n_perm=15, n_boot=5, seed=2)[0]
    assert row["significance"].n_blocks == 60
    ref = significance(fa["1"], fb["1"], "linear_cka", n_perm=15, n_boot=5, seed=2,
                       groups=fa.positions["1"][:, 0])
    assert row["significance"].as_dict() == ref.as_dict()


def test_cli_compare_prints_and_writes_the_significance(tmp_path):
    from click.testing import CliRunner

    from deepspan.cli import main

    X, Y = data()
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", Y)
    args = [str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--measure", "linear_cka", "--measure",
            "pvector_angle", "--permutations", "40", "--bootstrap", "25", "--stat-seed", "4", "--ci", "0.9"]
    res = CliRunner().invoke(main, ["compare", *args, "--json", str(tmp_path / "r.json"),
                                    "--csv", str(tmp_path / "r.csv")])
    assert res.exit_code == 0, res.output
    assert "significance: 40 permutations" in res.output and "90% percentile interval" in res.output
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    with open(tmp_path / "r.csv", newline="") as f:
        table = list(csv.DictReader(f))
    for row, line in zip(rows, table):
        ref = significance(X, Y, row["measure"], n_perm=40, n_boot=25, ci=0.9, seed=4)
        for key in ("value", "ci_low", "ci_high", "p_value", "calibrated", "null_mean", "null_sd"):
            assert row[key] == pytest.approx(getattr(ref, key), rel=1e-12, abs=1e-15), key
            assert float(line[key]) == pytest.approx(getattr(ref, key), rel=1e-12, abs=1e-15), key
        assert row["n_perm"] == 40 and row["n_boot"] == 25 and row["stat_seed"] == 4
        assert f"{ref.p_value:.4f}" in res.output
    for bad in (["--permutations", "0"], ["--bootstrap", "-3"], ["--ci", "1.5"]):
        out = CliRunner().invoke(main, ["compare", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), *bad])
        assert out.exit_code == 2 and "Traceback" not in out.output and "Invalid value" in out.output


def test_tracker_bootstrap_interval_of_the_angle_to_data(tmp_path):
    from deepspan.data import Dataset, load_digits
    from deepspan.measures import MEASURES
    from deepspan.track import Tracker

    d = load_digits()
    probe = Dataset("p", d.X[:150], d.y[:150], d.ids[:150])
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    tracker = Tracker(net, probe, ["2"], bootstrap=30, ci=0.9, out_dir=tmp_path, seed=5)
    tracker.step(epoch=0)
    tracker.step(epoch=1)
    feats = deepspan.extract(net, probe, ["2"])["2"]
    X = probe.X.reshape(150, -1).astype(np.float64)
    for step, label in enumerate(tracker.order):
        ref = significance(feats, X, MEASURES["pvector_angle"], n_perm=None, n_boot=30, ci=0.9,
                           seed=5 * 1_000_003 + step)
        assert tracker.values(label, "2", "angle_to_data_ci_low") == pytest.approx(ref.ci_low, rel=1e-12)
        assert tracker.values(label, "2", "angle_to_data_ci_high") == pytest.approx(ref.ci_high, rel=1e-12)
        low, value, high = (tracker.values(label, "2", q) for q in
                            ("angle_to_data_ci_low", "angle_to_data", "angle_to_data_ci_high"))
        assert low <= high and 0.0 <= low <= 90.0
        assert value == pytest.approx(ref.value, abs=1e-9)
    assert json.loads((tmp_path / "rows.json").read_text())["config"]["bootstrap"] == 30
    plain = Tracker(net, probe, ["2"])
    plain.step(epoch=0)
    assert not [r for r in plain.rows if r["quantity"].endswith("_ci_low")]
    with pytest.raises(InputError, match="n_boot must be a positive number"):
        Tracker(net, probe, ["2"], bootstrap=0)
    with pytest.raises(InputError, match="needs data_pvector=True"):
        Tracker(net, probe, ["2"], bootstrap=10, data_pvector=False)


def test_pvector_angle_bootstrap_of_large_matrices_equals_recomputed_resamples():
    """Resamples of at least 64 rows and columns take the Krylov route for u_1: the same angles as the measure's
    own route on each resample (to 1e-6 degrees), uncentered and centered."""
    from deepspan.measures import MEASURES, pvector_angle

    rng = np.random.default_rng(3)
    A = np.abs(rng.standard_normal((200, 80))) * np.linspace(2, 0.5, 80)
    B = A @ rng.standard_normal((80, 70)) / 9 + rng.standard_normal((200, 70))
    for center in (False, True):
        sig = significance(A, B, MEASURES["pvector_angle"].with_params(center=center), n_perm=None, n_boot=12,
                           seed=8)
        draws = np.random.default_rng([8, 1]).integers(0, 200, size=(12, 200))
        ref = [pvector_angle(A[d], B[d], center=center) for d in draws]
        np.testing.assert_allclose(sig.boot, ref, rtol=0, atol=1e-6)
        assert 0.0 < np.ptp(ref)  # the resamples differ


def test_mean_significance_uses_the_same_draws_for_every_pair():
    """The mean over pairs: its bootstrap is the mean of each resample over the pairs (one resample of the samples
    for all pairs), its null the mean over the pairs of one shuffle each; refuses pairs of other sample counts."""
    from deepspan.measures.alignment import linear_cka
    from deepspan.measures.significance import mean_significance

    rng = np.random.default_rng(4)
    X = rng.standard_normal((90, 6))
    Ys = [X @ rng.standard_normal((6, 5)) + k * rng.standard_normal((90, 5)) for k in (0.5, 1.0, 2.0)]
    m = mean_significance([(X, Y) for Y in Ys], "linear_cka", n_perm=25, n_boot=15, seed=6)
    assert m.value == pytest.approx(np.mean([linear_cka(X, Y) for Y in Ys]), rel=1e-12)
    draws = np.random.default_rng([6, 1]).integers(0, 90, size=(15, 90))
    np.testing.assert_allclose(m.boot, [np.mean([linear_cka(X[d], Y[d]) for Y in Ys]) for d in draws],
                               rtol=0, atol=1e-10)
    perms = np.argsort(np.random.default_rng([6, 0]).random((25, 90)), axis=1)
    np.testing.assert_allclose(m.null, [np.mean([linear_cka(X, Y[p]) for Y in Ys]) for p in perms], rtol=1e-5)
    assert m.p_value == (1 + int(np.sum(m.null >= m.value * (1 - 1e-5)))) / 26
    assert m.ci_low == pytest.approx(np.quantile(m.boot, 0.025)) and m.calibrated == pytest.approx(
        (m.value - m.null_mean) / (1 - m.null_mean))
    with pytest.raises(InputError, match="different numbers of samples"):
        mean_significance([(X, Ys[0]), (X[:50], Ys[1][:50])], n_perm=5, n_boot=None)
    with pytest.raises(InputError, match="at least one pair"):
        mean_significance([], n_perm=5)


def test_cli_track_bootstrap_records_and_prints_the_interval(tmp_path):
    from click.testing import CliRunner

    from deepspan.cli import main

    (tmp_path / "model.py").write_text("from torch import nn\n\n\ndef net():\n    return nn.Sequential(nn.Flatten(), "
                                       "nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))\n")
    for seed in range(2):
        torch.manual_seed(seed)
        torch.save(nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).state_dict(),
                   tmp_path / f"e{seed}.pt")
    args = ["track", f"{tmp_path / 'model.py'}:net", str(tmp_path / "e0.pt"), str(tmp_path / "e1.pt"), "--layer", "2",
            "--n", "120", "--out", str(tmp_path / "out")]
    res = CliRunner().invoke(main, [*args, "--bootstrap", "15"])
    assert res.exit_code == 0, res.output
    assert "95% bootstrap interval, 15 resamples" in res.output and "ci_low" in res.output
    rows = json.loads((tmp_path / "out" / "rows.json").read_text())["rows"]
    by = {(r["checkpoint"], r["quantity"]): r["value"] for r in rows}
    for label in ("e0", "e1"):
        assert by[(label, "angle_to_data_ci_low")] <= by[(label, "angle_to_data_ci_high")]
        assert f"{by[(label, 'angle_to_data_ci_low')]:.4f}" in res.output
    again = CliRunner().invoke(main, args)  # the same folder without --bootstrap: refused, naming the option
    assert again.exit_code == 1 and "--bootstrap: 15 there, None now" in again.output
