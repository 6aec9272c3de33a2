"""The measures: P-vector recovery, energy ratios, reconstruction errors, principal angles, serialisation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg

from deepspan import (
    GramAccumulator,
    PVector,
    angle,
    data_pvector,
    energy_table,
    principal_angles,
    pvector,
    pvector_from_stats,
    reconstruction_errors,
    top_singular,
)
from deepspan.linalg.angles import principal_angles_between_bases, unit_angle
from conftest import centered, gap_spectrum, geometric_spectrum, orthonormal, planted, reference_svd

METHODS = ("exact", "gram", "kernel", "krylov", "auto")


# --- recovery of a planted direction ---------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(200, 30), (40, 300)])
def test_recovers_planted_direction(shape, method):
    n, d = shape
    rng = np.random.default_rng(31)
    s = np.abs(rng.standard_normal(n)) + 0.1  # sum(s) > 0
    s /= np.linalg.norm(s)
    w = rng.standard_normal(d)
    F = 10.0 * np.outer(s, w) + 1e-3 * rng.standard_normal((n, d))
    p = pvector(F, method=method)
    assert angle(p, s) < 0.5
    assert p.u @ s > 0  # the sign rule picks the planted orientation
    np.testing.assert_allclose(p.u, s, rtol=0, atol=0.02)
    # and the negated matrix has the same P-vector (same sign)
    np.testing.assert_allclose(pvector(-F, method=method).u, p.u, rtol=0, atol=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_recovers_planted_centered_direction(method):
    n, d = 150, 20
    rng = np.random.default_rng(32)
    s = rng.standard_normal(n)
    s -= s.mean()  # orthogonal to the ones vector: survives centering
    s /= np.linalg.norm(s)
    s *= np.sign(s[np.argmax(np.abs(s))])  # largest-magnitude entry positive
    w = rng.standard_normal(d)
    F = 10.0 * np.outer(s, w) + 1e-3 * rng.standard_normal((n, d)) + rng.standard_normal(d) * 5.0
    p = pvector(F, center=True, method=method)
    assert angle(p, s) < 0.5
    np.testing.assert_allclose(p.u, s, rtol=0, atol=0.02)
    # without centering the column means dominate instead
    assert angle(pvector(F, method=method), np.ones(n)) < angle(pvector(F, method=method), s)


# --- energy and reconstruction ------------------------------------------------------------


def _energy_matrix(shape=(60, 25), offset=0.7, seed=33):
    n, d = shape
    return planted(n, d, geometric_spectrum(min(n, d)), np.random.default_rng(seed), offset=offset)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("shape", [(60, 25), (25, 60)])
def test_energy_ratio_matches_scipy(shape, center, method):
    F = _energy_matrix(shape)
    s_all = reference_svd(F, center)[1]
    p = pvector(F, center=center, method=method)
    m = len(p.singular_values)
    assert m == 5
    expected = np.cumsum(s_all**2)[:m] / np.sum(s_all**2)
    # krylov: values beyond the first come without vectors, ~1e-6 sigma_1 accurate
    rtol = 2e-6 if p.method == "krylov" else 1e-9
    np.testing.assert_allclose(p.energy, expected, rtol=rtol)
    assert np.all(np.diff(p.energy) >= 0)
    assert np.all(p.energy <= 1.0 + 1e-12) and p.energy[0] > 0
    np.testing.assert_allclose(p.total_energy, np.sum(centered(F, center) ** 2), rtol=1e-12)
    np.testing.assert_allclose(
        p.reconstruction_error, np.sum(s_all**2) - np.cumsum(s_all**2)[:m], rtol=1e-8, atol=rtol * s_all[0] ** 2
    )


def test_energy_reaches_one_with_the_full_spectrum():
    F = _energy_matrix((30, 6))
    p = pvector(F, n_values=6)
    assert len(p.singular_values) == 6
    assert p.energy[-1] == pytest.approx(1.0, abs=1e-12)
    assert p.reconstruction_error[-1] == pytest.approx(0.0, abs=1e-10 * p.total_energy)


def _explicit_errors(F, K, center):
    A = centered(F, center)
    U, s, Vt = scipy.linalg.svd(A, full_matrices=False)
    return np.array([np.linalg.norm(A - (U[:, :k] * s[:k]) @ Vt[:k]) ** 2 for k in range(1, K + 1)])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("shape", [(60, 25), (25, 60)])
def test_reconstruction_errors_match_explicit_residuals(shape, center, method):
    F = _energy_matrix(shape)
    K = 8
    E = reconstruction_errors(F, K, center=center, method=method)
    assert E.shape == (K,)
    explicit = _explicit_errors(F, K, center)
    total = np.sum(centered(F, center) ** 2)
    # krylov values beyond the first are ~1e-6 sigma_1 accurate (checked in test_routes.py)
    atol = 2e-6 * explicit[0] if top_singular(F, 1, center=center, method=method, n_values=K).method == "krylov" else 0
    np.testing.assert_allclose(E, explicit, rtol=1e-8, atol=max(atol, 1e-12 * total))
    assert np.all(np.diff(E) <= 0) and np.all(E >= 0)


def test_reconstruction_error_of_full_rank_is_zero():
    F = _energy_matrix((30, 6))
    E = reconstruction_errors(F, 6)
    np.testing.assert_allclose(E, _explicit_errors(F, 6, False), rtol=1e-8, atol=1e-10 * np.sum(F**2))
    assert E[-1] == pytest.approx(0.0, abs=1e-10 * np.sum(F**2))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("center", [False, True])
def test_energy_table_rows_are_consistent(center, method):
    F = _energy_matrix()
    K = 7
    rows = energy_table(F, K, center=center, method=method)
    assert [r["k"] for r in rows] == list(range(1, K + 1))
    s_all = reference_svd(F, center)[1]
    total = np.sum(s_all**2)
    E = reconstruction_errors(F, K, center=center, method=method)
    # krylov: values beyond the first meet the documented bound |theta - sigma^2| <= r^2 / delta with
    # r = value_tol * sigma_1^2 (value_tol = 1e-4); on this slowly decaying spectrum that is ~1e-5 relative
    rtol = 1e-4 if top_singular(F, 1, center=center, method=method, n_values=K).method == "krylov" else 1e-9
    for i, row in enumerate(rows):
        assert set(row) == {"k", "sigma", "energy_ratio", "reconstruction_error"}
        assert row["sigma"] == pytest.approx(s_all[i], rel=1e-9 if i == 0 else rtol)
        assert row["energy_ratio"] == pytest.approx(np.sum(s_all[: i + 1] ** 2) / total, rel=rtol)
        assert row["reconstruction_error"] == pytest.approx(E[i], rel=1e-9, abs=max(1e-12, rtol**2) * total)
        assert row["energy_ratio"] + row["reconstruction_error"] / total == pytest.approx(1.0, abs=1e-9)
    json.dumps(rows)  # plain floats and ints
    p = pvector(F, center=center, method=method)
    np.testing.assert_allclose([r["energy_ratio"] for r in rows[:5]], p.energy, rtol=rtol)


def test_energy_table_truncates_to_min_side():
    F = _energy_matrix((30, 6))
    rows = energy_table(F, K=10)
    assert len(rows) == 6
    assert rows[-1]["energy_ratio"] == pytest.approx(1.0, abs=1e-12)


# --- principal angles ---------------------------------------------------------------------


def _scipy_principal_angles(A, B, k, center=False):
    UA = reference_svd(A, center)[0][:, :k]
    UB = reference_svd(B, center)[0][:, :k]
    return np.sort(np.degrees(scipy.linalg.subspace_angles(UA, UB)))


def _pair(n=80, da=20, db=35, seed=34, mix=0.4):
    rng = np.random.default_rng(seed)
    A = planted(n, da, gap_spectrum(da), rng)
    # B shares part of A's leading subspace, rotated and mixed with fresh directions
    B = A[:, :da] @ orthonormal(da, da, rng) @ rng.standard_normal((da, db)) * 0.2
    B = B + mix * planted(n, db, gap_spectrum(db), rng)
    return A, B


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("k", [1, 3, 6])
@pytest.mark.parametrize("center", [False, True])
def test_principal_angles_match_scipy(k, center, method):
    A, B = _pair()
    got = principal_angles(A, B, k, center=center, method=method)
    expected = _scipy_principal_angles(A, B, k, center)
    assert got.shape == (k,)
    assert np.all(np.diff(got) >= 0)
    assert np.all((got >= 0) & (got <= 90))
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-7)
    assert 1.0 < got[-1] < 89.0  # a non-trivial case


@pytest.mark.parametrize("method", METHODS)
def test_principal_angles_tiny(method):
    rng = np.random.default_rng(35)
    A = planted(60, 15, gap_spectrum(15), rng)
    B = A + 1e-9 * rng.standard_normal(A.shape)
    got = principal_angles(A, B, 4, method=method)
    expected = _scipy_principal_angles(A, B, 4)
    assert np.all(got >= 0) and np.all(got < 1e-5)
    assert np.all(expected < 1e-5)
    np.testing.assert_allclose(got, expected, rtol=1e-2, atol=1e-9)  # resolved, not rounded to 0
    assert got[-1] > 1e-10


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("center", [False, True])
def test_principal_angles_invariant_under_right_rotation(center, method):
    rng = np.random.default_rng(36)
    A = planted(50, 12, gap_spectrum(12), rng, offset=0.3)
    Q = orthonormal(12, 12, rng)
    got = principal_angles(A, A @ Q, 5, center=center, method=method)
    assert np.all(got >= 0) and np.all(got < 1e-6)


def test_principal_angles_of_orthogonal_subspaces_are_90():
    n = 40
    Q = orthonormal(n, 6, 37)
    rng = np.random.default_rng(38)
    A = Q[:, :3] @ np.diag([5.0, 3.0, 2.0]) @ orthonormal(10, 3, rng).T
    B = Q[:, 3:] @ np.diag([4.0, 2.5, 1.0]) @ orthonormal(8, 3, rng).T
    np.testing.assert_allclose(principal_angles(A, B, 3), [90.0, 90.0, 90.0], atol=1e-9)


def test_principal_angles_between_bases_direct():
    Q = orthonormal(30, 4, 39)
    t = np.radians([1e-7, 0.3, 45.0, 89.9999])
    QA = Q[:, :2].copy()
    QB = np.column_stack(
        [np.cos(t[0]) * Q[:, 0] + np.sin(t[0]) * Q[:, 2], np.cos(t[2]) * Q[:, 1] + np.sin(t[2]) * Q[:, 3]]
    )
    np.testing.assert_allclose(principal_angles_between_bases(QA, QB), [1e-7, 45.0], rtol=1e-6, atol=1e-12)


# --- data P-vector ------------------------------------------------------------------------


@pytest.mark.parametrize("center", [False, True])
def test_data_pvector_flattens_trailing_axes(center):
    rng = np.random.default_rng(40)
    X = rng.random((50, 8, 8)) + np.linspace(0, 1, 64).reshape(8, 8)
    p = data_pvector(X, center=center)
    q = pvector(X.reshape(50, 64), center=center)
    np.testing.assert_array_equal(p.u, q.u)
    np.testing.assert_array_equal(p.singular_values, q.singular_values)
    assert p.n_features == 64 and p.n_samples == 50
    np.testing.assert_allclose(p.u, pvector(X.reshape(50, 64), center=center, method="exact").u, rtol=0, atol=1e-9)


def test_data_pvector_accepts_torch_images():
    torch = pytest.importorskip("torch")
    X = np.random.default_rng(41).random((20, 3, 4, 4)).astype(np.float32)
    p = data_pvector(torch.from_numpy(X))
    np.testing.assert_allclose(p.u, pvector(X.reshape(20, -1)).u, rtol=0, atol=1e-12)


# --- serialisation ------------------------------------------------------------------------


@pytest.mark.parametrize("center", [False, True])
def test_to_dict_is_json_and_round_trips(center):
    F = _energy_matrix()
    p = pvector(F, center=center)
    d = p.to_dict()
    text = json.dumps(d)
    back = PVector.from_dict(json.loads(text))
    np.testing.assert_array_equal(back.u, p.u)
    np.testing.assert_array_equal(back.v, p.v)
    np.testing.assert_array_equal(back.singular_values, p.singular_values)
    assert back.total_energy == p.total_energy
    assert back.centered is p.centered
    assert back.method == p.method
    assert (back.n_samples, back.n_features) == (p.n_samples, p.n_features)
    assert back.notes == p.notes
    assert back.gap == p.gap and back.degenerate == p.degenerate
    np.testing.assert_array_equal(back.energy, p.energy)
    assert d["gap"] == p.gap
    assert d["energy"] == p.energy.tolist()
    assert angle(back, p) < 1e-9


def test_to_dict_round_trips_streamed_pvector_without_u():
    F = _energy_matrix()
    p = pvector_from_stats(GramAccumulator().update(F).finalize())
    back = PVector.from_dict(json.loads(json.dumps(p.to_dict())))
    assert back.u is None
    np.testing.assert_array_equal(back.v, p.v)
    assert back.method == "gram-stream"


def test_round_trip_preserves_degenerate_flag():
    s = gap_spectrum(10)
    s[1] = 0.999 * s[0]
    F = planted(40, 10, s, np.random.default_rng(42))
    with pytest.warns(Warning):
        p = pvector(F)
    back = PVector.from_dict(json.loads(json.dumps(p.to_dict())))
    assert p.degenerate and back.degenerate


# --- gap and sigma ------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("center", [False, True])
def test_gap_is_s2_over_s1(center, method):
    F = _energy_matrix()
    s_all = reference_svd(F, center)[1]
    p = pvector(F, center=center, method=method)
    assert p.gap == pytest.approx(s_all[1] / s_all[0], rel=1e-9)
    assert p.sigma == pytest.approx(s_all[0], rel=1e-10)
    t = top_singular(F, 1, center=center, method=method, n_values=2)
    # Krylov converges values beyond the vectors to the looser value_tol (1e-4 sigma_1^2 in sigma^2)
    assert t.s[1] / t.s[0] == pytest.approx(s_all[1] / s_all[0], rel=1e-6 if method == "krylov" else 1e-9)


def test_pvector_n_values_is_clipped_to_min_side():
    F = _energy_matrix((30, 3))
    p = pvector(F, n_values=10)
    assert len(p.singular_values) == 3
    np.testing.assert_allclose(p.singular_values, reference_svd(F)[1], rtol=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_low_rank_matrix_still_reports_requested_values(method):
    # rank 1: the Krylov space is exhausted after one step, but 5 values were asked for
    F = planted(40, 10, [3.0], np.random.default_rng(43))
    p = pvector(F, method=method, n_values=5)
    assert len(p.singular_values) == 5
    assert p.sigma == pytest.approx(3.0, rel=1e-10)
    assert np.all(p.singular_values[1:] <= 1e-6 * p.sigma)
    assert reconstruction_errors(F, 5, method=method).shape == (5,)
    assert len(energy_table(F, 5, method=method)) == 5
