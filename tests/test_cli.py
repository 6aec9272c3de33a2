"""The command line: --help/--version, the demo on embedded data, and `deepspan pvector FILE.npy`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg
from click.testing import CliRunner

import deepspan
from deepspan.cli import main
from deepspan.data import load_digits
from deepspan.experiments.pvector_demo import random_relu_features
from deepspan.linalg.angles import unit_angle


def _exact_u(F: np.ndarray, center: bool) -> np.ndarray:
    A = F - F.mean(0) if center else F
    U, _, _ = scipy.linalg.svd(A, full_matrices=False)
    return U[:, 0]


def test_help_and_version():
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0
    assert "demo" in r.output and "pvector" in r.output
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0
    assert deepspan.__version__ in r.output



def test_reproduce_only_choices_follow_the_experiment_registry(monkeypatch):
    """--only reads deepspan.experiments.EXPERIMENTS when parsed and in --help, not a list frozen at import."""
    import deepspan.experiments as experiments

    names = list(experiments.EXPERIMENTS)
    runner = CliRunner()
    r = runner.invoke(main, ["reproduce", "--help"], terminal_width=400)
    assert r.exit_code == 0 and "[" + "|".join(names) + "]" in r.output
    assert "my_extra_experiment" not in r.output

    patched = {name: experiments.EXPERIMENTS[name] for name in names}
    patched["my_extra_experiment"] = None
    monkeypatch.setattr(experiments, "EXPERIMENTS", patched)
    r = runner.invoke(main, ["reproduce", "--help"], terminal_width=400)
    assert r.exit_code == 0 and "[" + "|".join([*names, "my_extra_experiment"]) + "]" in r.output
    r = runner.invoke(main, ["reproduce", "--only", "no_such_experiment"])  # the choices checked are the live ones
    assert r.exit_code == 2 and "'my_extra_experiment'" in r.output and f"'{names[0]}'" in r.output

    monkeypatch.setattr(experiments, "EXPERIMENTS", {"only_one": None})
    r = runner.invoke(main, ["reproduce", "--help"], terminal_width=400)
    assert "[only_one]" in r.output and names[0] not in r.output.split("--only", 1)[1].split("\n", 1)[0]

def test_demo_prints_and_saves_angles_that_match_exact_svd(tmp_path):
    out = tmp_path / "demo.json"
    r = CliRunner().invoke(main, ["demo", "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "uncentered features" in r.output and "centered features" in r.output
    res = json.loads(out.read_text())
    assert res["n_samples"] == 1797
    # recompute every angle by the exact SVD route, independently of the demo's routes
    X = load_digits().X.reshape(1797, -1)
    feats = [X, random_relu_features(X, 256, 1), random_relu_features(X, 2048, 2)]
    names = [s["features"] for s in res["summaries"][:3]]
    assert len(res["angles"]) == 6
    for a in res["angles"]:
        Fa, Fb = feats[names.index(a["a"])], feats[names.index(a["b"])]
        expected = unit_angle(_exact_u(Fa, a["centered"]), _exact_u(Fb, a["centered"]))
        assert a["angle_deg"] == pytest.approx(expected, abs=1e-6)
        assert f"{a['angle_deg']:7.3f}" in r.output
    # energies are cumulative ratios in (0, 1]
    for s in res["summaries"]:
        e = np.array(s["energy"])
        assert np.all(np.diff(e) >= 0) and 0 < e[0] and e[-1] <= 1
    # the null baseline is near 90 degrees in R^1797
    assert all(80 < x <= 90 for x in res["null_angles_deg"])


@pytest.mark.parametrize("center", [False, True])
def test_pvector_command_streams_a_file_and_matches_dense(tmp_path, center):
    rng = np.random.default_rng(3)
    F = (rng.random((2500, 30)) + np.linspace(0, 1, 30)).astype(np.float32)
    path = tmp_path / "feats.npy"
    np.save(path, F)
    out = tmp_path / "p.json"
    args = ["pvector", str(path), "--chunk-rows", "333", "--json", str(out)]
    args.append("--center" if center else "--no-center")
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    p = deepspan.PVector.from_dict(json.loads(out.read_text()))
    dense = deepspan.pvector(F, center=center, method="exact")
    assert p.centered is center and p.method == "gram-stream"
    np.testing.assert_allclose(p.singular_values, dense.singular_values, rtol=1e-9)
    np.testing.assert_allclose(p.u, dense.u, atol=1e-9)  # same sign rule, same vector


def test_pvector_command_reports_bad_files(tmp_path):
    bad = tmp_path / "cube.npy"
    np.save(bad, np.zeros((4, 3, 2)))
    r = CliRunner().invoke(main, ["pvector", str(bad)])
    assert r.exit_code != 0 and "must be 2-D" in r.output
    fortran = tmp_path / "fortran.npy"
    np.save(fortran, np.asfortranarray(np.random.default_rng(0).random((5, 3))))
    r = CliRunner().invoke(main, ["pvector", str(fortran)])
    assert r.exit_code != 0 and "Fortran" in r.output
    trunc = tmp_path / "trunc.npy"
    np.save(trunc, np.random.default_rng(0).random((100, 4)))
    data = trunc.read_bytes()
    trunc.write_bytes(data[: len(data) - 50])
    r = CliRunner().invoke(main, ["pvector", str(trunc)])
    assert r.exit_code != 0 and "truncated" in r.output
    notnpy = tmp_path / "x.npy"
    notnpy.write_text("hello")
    r = CliRunner().invoke(main, ["pvector", str(notnpy)])
    assert r.exit_code != 0 and "not a readable .npy" in r.output
