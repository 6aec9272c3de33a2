"""Streaming follows the in-memory rules and messages: N >= 2, n_values >= 1, a clear message for empty input;
the CLI names its own options in range errors."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import deepspan
from deepspan.cli import main
from deepspan.errors import InputError
from deepspan.linalg import GramAccumulator
from deepspan.measures import pvector_from_stats


def _stats(F):
    acc = GramAccumulator()
    acc.update(F)
    return acc.finalize()


def test_one_sample_refused_in_memory_and_streamed_alike():
    F = np.ones((1, 4))
    with pytest.raises(InputError) as mem:
        deepspan.pvector(F)
    with pytest.raises(InputError) as streamed:
        pvector_from_stats(_stats(F))
    tail = "sample(s) (rows); at least 2 are needed for a subspace in sample space"
    assert tail in str(mem.value) and tail in str(streamed.value)
    assert "the streamed matrix has 1 sample(s)" in str(streamed.value)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_n_values_checked_in_both_routes(bad):
    F = np.random.default_rng(0).random((6, 3))
    with pytest.raises(InputError, match="n_values"):
        deepspan.pvector(F, n_values=bad)
    with pytest.raises(InputError, match="n_values"):
        pvector_from_stats(_stats(F), n_values=bad)


def test_streamed_equals_in_memory_for_two_samples():
    F = np.array([[1.0, 2.0, 0.5], [0.3, -1.0, 2.0]])
    p, q = deepspan.pvector(F, n_values=2), pvector_from_stats(_stats(F), n_values=2)
    np.testing.assert_allclose(q.singular_values, p.singular_values, rtol=1e-12)


def test_cli_pvector_edges(tmp_path):
    run = CliRunner()
    np.save(tmp_path / "empty.npy", np.zeros((0, 4)))
    np.save(tmp_path / "one.npy", np.ones((1, 4)))
    np.save(tmp_path / "ok.npy", np.random.default_rng(0).random((30, 4)))
    cases = {
        ("empty.npy",): "holds no rows: save a samples x features matrix with at least 2 rows",
        ("one.npy",): "at least 2 are needed",
        ("ok.npy", "--n-values", "0"): "Invalid value for '--n-values'",
        ("ok.npy", "--chunk-rows", "0"): "Invalid value for '--chunk-rows'",
    }
    for args, fragment in cases.items():
        r = run.invoke(main, ["pvector", str(tmp_path / args[0]), *args[1:]])
        assert r.exit_code != 0 and "Traceback" not in r.output, r.output
        assert fragment in r.output, r.output
    r = run.invoke(main, ["track", "m:f", str(tmp_path / "ok.npy"), "--layer", "x", "--out", str(tmp_path / "o"),
                          "--k", "0"])
    assert r.exit_code == 2 and "Invalid value for '--k'" in r.output, r.output


# --- principal angles: k beyond the rank -------------------------------------------------------------


def _rank3_and_full(seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((50, 3))
    X = np.column_stack([A, A @ rng.standard_normal((3, 4))])  # width 7, rank 3
    return X, rng.standard_normal((50, 7))


@pytest.mark.parametrize("center", [False, True])
def test_principal_angles_refuse_k_beyond_the_rank_and_name_it(center):
    from deepspan.measures.pvector import principal_angles

    X, Y = _rank3_and_full()
    assert principal_angles(X, Y, 3, center=center).shape == (3,)
    for k in (4, 7):
        with pytest.raises(InputError, match=rf"A has numerical rank 3{' after centering' if center else ''}, "
                                             rf"below k={k}.*Ask for k <= 3"):
            principal_angles(X, Y, k, center=center)
        with pytest.raises(InputError, match=r"B has numerical rank 3"):
            principal_angles(Y, X, k, center=center)


def test_mean_principal_angle_caps_k_at_each_sides_rank():
    from deepspan.measures.pvector import mean_principal_angle, principal_angles

    X, Y = _rank3_and_full()
    # capped at rank 3: the mean over the three determined angles, the same as asking for k = 3
    assert mean_principal_angle(X, Y, 5) == pytest.approx(float(np.mean(principal_angles(X, Y, 3))), abs=1e-9)
    assert mean_principal_angle(X, X, 7) == pytest.approx(0.0, abs=1e-6)
    assert deepspan.MEASURES["principal_angle"](X, Y) == pytest.approx(mean_principal_angle(X, Y, 5), abs=1e-9)
