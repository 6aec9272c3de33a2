"""Every SVD route of ``top_singular`` against scipy's float64 SVD.

Matrices have a planted, well separated spectrum (10, 7, 5, 3.5, 2.5, 1.8, then
a geometric tail) on a left basis orthogonal to the ones vector, plus a random
column offset of norm 25: the centered matrix has exactly the planted spectrum,
the uncentered one has an extra leading value ~25, so centering matters.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import pytest

import deepspan
from deepspan import pvector, top_singular
from deepspan.linalg import choose_method
from deepspan.linalg.angles import unit_angle
from conftest import (
    centered,
    follows_sign_rule,
    gap_spectrum,
    planted,
    reference_svd,
    sign_rule,
)

METHODS = ("exact", "gram", "kernel", "krylov", "auto")
SHAPES = {
    "tall": (400, 30),
    "wide": (30, 400),
    "square": (120, 120),
    # large enough (> 1e6 entries, min(N, d) > 1024) that auto picks krylov for k=3, n_values=5
    "large_tall": (2100, 1040),
    "large_wide": (1040, 2100),
}
SMALL = ("tall", "wide", "square")
K = 3
N_VALUES = 5


@lru_cache(maxsize=None)
def matrix(name: str) -> np.ndarray:
    n, d = SHAPES[name]
    rng = np.random.default_rng(100 + list(SHAPES).index(name))
    m = rng.standard_normal(d)
    m *= 25.0 / (np.linalg.norm(m) * np.sqrt(n))
    F = planted(n, d, gap_spectrum(min(n - 1, d)), rng, column_offset=m, centered_basis=True)
    F.setflags(write=False)
    return F


@lru_cache(maxsize=None)
def reference(name: str, center: bool):
    return reference_svd(matrix(name), center)


@lru_cache(maxsize=None)
def result(name: str, center: bool, method: str):
    return top_singular(matrix(name), K, center=center, method=method, n_values=N_VALUES)


route_params = pytest.mark.parametrize(
    "name,center,method",
    [(name, c, m) for name in SHAPES for c in (False, True) for m in METHODS],
)


def test_auto_picks_krylov_for_the_large_pair():
    for name in ("large_tall", "large_wide"):
        assert choose_method(*SHAPES[name], K, N_VALUES) == "krylov"


@route_params
def test_result_metadata(name, center, method):
    n, d = SHAPES[name]
    t = result(name, center, method)
    assert t.U.shape == (n, K)
    assert t.V.shape == (d, K)
    assert t.s.shape == (N_VALUES,)
    assert t.k == K
    assert (t.n_samples, t.n_features) == (n, d)
    assert t.centered is center
    assert t.converged
    np.testing.assert_allclose(t.mean, np.asarray(matrix(name)).mean(axis=0), rtol=0, atol=1e-13)


@route_params
def test_method_reports_route(name, center, method):
    n, d = SHAPES[name]
    t = result(name, center, method)
    if method == "auto":
        assert t.method == choose_method(n, d, K, N_VALUES)
        assert any("auto chose" in note and t.method in note for note in t.notes)
    else:
        assert t.method == method
        assert not any("auto chose" in note for note in t.notes)


@route_params
def test_left_vectors_match_scipy(name, center, method):
    t = result(name, center, method)
    U_ref = reference(name, center)[0]
    for j in range(K):
        assert unit_angle(t.U[:, j], U_ref[:, j]) < 1e-6, f"column {j}"
        # sign included: every route applies the same sign rule
        assert follows_sign_rule(t.U[:, j])
        np.testing.assert_allclose(t.U[:, j], sign_rule(U_ref[:, j]), rtol=0, atol=1e-8)
    np.testing.assert_allclose(t.U.T @ t.U, np.eye(K), rtol=0, atol=1e-10)


@route_params
def test_singular_values_match_scipy(name, center, method):
    t = result(name, center, method)
    s_ref = reference(name, center)[1]
    np.testing.assert_allclose(t.s[:K], s_ref[:K], rtol=1e-8, atol=0)
    if t.method == "krylov":
        # values beyond k come without vectors, converged to a looser residual
        np.testing.assert_allclose(t.s[K:], s_ref[K:N_VALUES], rtol=0, atol=1e-6 * s_ref[0])
    else:
        np.testing.assert_allclose(t.s[K:], s_ref[K:N_VALUES], rtol=1e-8, atol=0)
    assert np.all(np.diff(t.s) <= 0)


@route_params
def test_right_vectors_satisfy_Fc_V_eq_U_S(name, center, method):
    t = result(name, center, method)
    Fc = centered(matrix(name), center)
    resid = np.linalg.norm(Fc @ t.V - t.U * t.s[:K])
    assert resid <= 1e-8 * t.s[0]
    np.testing.assert_allclose(t.V.T @ t.V, np.eye(K), rtol=0, atol=1e-8)
    Vt_ref = reference(name, center)[2]
    for j in range(K):
        assert unit_angle(t.V[:, j], Vt_ref[j]) < 1e-6, f"column {j}"


@route_params
def test_total_energy_is_frobenius_norm(name, center, method):
    t = result(name, center, method)
    Fc = centered(matrix(name), center)
    np.testing.assert_allclose(t.total_energy, np.sum(Fc**2), rtol=1e-12)
    np.testing.assert_allclose(t.total_energy, np.sum(reference(name, center)[1] ** 2), rtol=1e-11)


# --- the P-vector and its sign -------------------------------------------------------


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("name", list(SHAPES))
def test_pvector_is_first_column_of_top_singular(name, center):
    F = matrix(name)
    p = pvector(F, center=center)
    t = top_singular(F, 1, center=center)
    assert p.u @ t.U[:, 0] > 0
    np.testing.assert_allclose(p.u, t.U[:, 0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(p.v, t.V[:, 0], rtol=0, atol=1e-9)
    assert follows_sign_rule(p.u)
    np.testing.assert_allclose(p.sigma, reference(name, center)[1][0], rtol=1e-10)


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("name", SMALL)
def test_all_routes_give_the_same_signed_pvector(name, center):
    F = matrix(name)
    base = pvector(F, center=center, method="exact")
    U_ref = reference(name, center)[0]
    np.testing.assert_allclose(base.u, sign_rule(U_ref[:, 0]), rtol=0, atol=1e-10)
    for method in METHODS:
        p = pvector(F, center=center, method=method)
        np.testing.assert_allclose(p.u, base.u, rtol=0, atol=1e-9, err_msg=method)
        np.testing.assert_allclose(p.v, base.v, rtol=0, atol=1e-9, err_msg=method)
        assert follows_sign_rule(p.u), method


def test_sign_rule_uncentered_sum_positive():
    F = matrix("tall")
    u = pvector(F).u
    assert u.sum() > 1e-8 * np.sqrt(len(u))


def test_sign_rule_centered_largest_entry_positive():
    F = matrix("tall")
    u = pvector(F, center=True).u
    assert abs(u.sum()) <= 1e-8 * np.sqrt(len(u))  # centered u is orthogonal to the ones vector
    assert u[np.argmax(np.abs(u))] > 0


def test_negated_matrix_gives_same_pvector():
    F = np.asarray(matrix("square"))
    for center in (False, True):
        for method in METHODS:
            a = pvector(F, center=center, method=method).u
            b = pvector(-F, center=center, method=method).u
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-9, err_msg=f"{method} center={center}")


# --- choice of route -------------------------------------------------------------------


@pytest.mark.parametrize(
    "n,d,k,n_values,expected",
    [
        (400, 30, 1, None, "gram"),  # tall, small
        (30, 400, 1, None, "kernel"),  # wide, small
        (120, 120, 3, 5, "gram"),  # square, small: d <= N
        (3000, 600, 1, None, "krylov"),  # large, top-1 only
        (600, 3000, 1, None, "krylov"),
        (3000, 600, 1, 1, "krylov"),
        (3000, 600, 3, 5, "gram"),  # a few values of a large-ish matrix, min side <= 1024
        (600, 3000, 3, 5, "kernel"),
        (2100, 1040, 3, 5, "krylov"),  # a few values, min side > 1024
        (1040, 2100, 3, 5, "krylov"),
        (2000, 1500, 40, 40, "gram"),  # many values, min side <= 4096
        (20000, 5000, 40, 40, "krylov"),  # many values, min side > 4096
        (400, 30, 30, 30, "gram"),  # all of them
    ],
)
def test_choose_method(n, d, k, n_values, expected):
    assert choose_method(n, d, k, n_values) == expected


def test_auto_top1_of_large_matrix_runs_krylov_and_matches_scipy():
    rng = np.random.default_rng(7)
    F = planted(3000, 600, gap_spectrum(600), rng)
    U_ref, s_ref, _ = reference_svd(F)
    t = top_singular(F, 1)
    assert t.method == "krylov"
    assert unit_angle(t.U[:, 0], U_ref[:, 0]) < 1e-6
    np.testing.assert_allclose(t.s[0], s_ref[0], rtol=1e-10)
    p = pvector(F, n_values=1)
    assert p.method == "krylov"
    np.testing.assert_allclose(p.u, sign_rule(U_ref[:, 0]), rtol=0, atol=1e-8)
    p5 = pvector(F.T)  # 600 x 3000, n_values=5, min side 600 <= 1024: dense kernel route
    assert p5.method == "kernel"


# --- dtypes ----------------------------------------------------------------------------


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", SMALL)
def test_float32_input_same_pvector_as_float64(name, method, center):
    F64 = np.asarray(matrix(name))
    F32 = F64.astype(np.float32)
    before = F32.copy()
    p32 = pvector(F32, center=center, method=method)
    p_up = pvector(F32.astype(np.float64), center=center, method=method)
    p64 = pvector(F64, center=center, method=method)
    assert np.array_equal(F32, before) and F32.dtype == np.float32  # input untouched
    assert p32.u.dtype == np.float64
    assert unit_angle(p32.u, p_up.u) < 1e-6
    assert unit_angle(p32.u, p64.u) < 1e-4
    np.testing.assert_allclose(p32.u, p_up.u, rtol=0, atol=1e-8)  # same sign
    if method == "krylov":
        # float32 input takes a float32 warm start, so the values beyond sigma_1 (converged only to
        # value_tol) may land elsewhere within that tolerance; sigma_1 itself is converged to tol
        assert p32.singular_values[0] == pytest.approx(p_up.singular_values[0], rel=1e-10)
        np.testing.assert_allclose(p32.singular_values, p_up.singular_values, rtol=0,
                                   atol=1e-6 * p_up.singular_values[0])
    else:
        np.testing.assert_allclose(p32.singular_values, p_up.singular_values, rtol=1e-10)
    np.testing.assert_allclose(p32.total_energy, p_up.total_energy, rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int16])
@pytest.mark.parametrize("method", METHODS)
def test_integer_input_is_converted(dtype, method):
    F = np.rint(np.asarray(matrix("tall")) * 1000).astype(dtype)
    for center in (False, True):
        t = top_singular(F, 2, center=center, method=method, n_values=3)
        t64 = top_singular(F.astype(np.float64), 2, center=center, method=method, n_values=3)
        np.testing.assert_allclose(t.U, t64.U, rtol=0, atol=1e-12)
        np.testing.assert_allclose(t.s, t64.s, rtol=1e-13)
        np.testing.assert_allclose(t.V, t64.V, rtol=0, atol=1e-12)
        s_ref = reference_svd(F.astype(np.float64), center)[1]
        np.testing.assert_allclose(t.s, s_ref[:3], rtol=1e-8)


def test_bool_input_is_converted():
    rng = np.random.default_rng(3)
    F = rng.random((50, 12)) < 0.3
    F[0, 0] = True
    p = pvector(F, method="exact")
    np.testing.assert_allclose(p.u, pvector(F.astype(np.float64), method="exact").u, rtol=0, atol=1e-14)


# --- rank deficiency and repeated values -------------------------------------------------


def _rank2(name):
    n, d = SHAPES[name]
    return planted(n, d, [5.0, 2.0], np.random.default_rng(11))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", SMALL)
def test_rank_deficient_U_is_orthonormal(name, method):
    F = _rank2(name)
    t = top_singular(F, 4, method=method)
    np.testing.assert_allclose(t.s[:2], [5.0, 2.0], rtol=1e-8)
    assert np.all(t.s[2:4] <= 1e-6 * t.s[0]) and np.all(t.s >= 0)
    np.testing.assert_allclose(t.U.T @ t.U, np.eye(4), rtol=0, atol=1e-8)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", SMALL)
def test_rank_deficient_V_is_orthonormal(name, method):
    F = _rank2(name)
    t = top_singular(F, 4, method=method)
    np.testing.assert_allclose(t.V.T @ t.V, np.eye(4), rtol=0, atol=1e-8)
    assert np.linalg.norm(F @ t.V - t.U * t.s[:4]) <= 1e-8 * t.s[0]


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("n_values", [2, 5])
@pytest.mark.parametrize("shape", [(400, 30), (30, 400), (120, 120), (3000, 600), (600, 3000)])
def test_krylov_finds_repeated_top_value(shape, n_values, center):
    n, d = shape
    s = [10.0, 10.0, 5.0, 3.0, 2.0, 1.0, 0.5]
    F = planted(n, d, s, np.random.default_rng(5), centered_basis=True, offset=3.0 if center else 0.0)
    t = top_singular(F, 1, center=center, method="krylov", n_values=n_values)
    assert t.method == "krylov"
    assert t.s[1] / t.s[0] > 0.999
    np.testing.assert_allclose(t.s[:2], [10.0, 10.0], rtol=1e-8)
    with pytest.warns(deepspan.DegenerateSpectrumWarning, match="sigma_2/sigma_1"):
        p = pvector(F, center=center, method="krylov", n_values=n_values)
    assert p.gap > 0.999 and p.degenerate
    # the P-vector is some unit vector of the planted top-2 subspace
    U_ref = reference_svd(F, center)[0][:, :2]
    assert np.linalg.norm(U_ref.T @ p.u) == pytest.approx(1.0, abs=1e-8)


def test_no_warning_on_a_well_separated_matrix():
    # no route warns on a well separated matrix
    F = matrix("square")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for method in METHODS:
            top_singular(F, K, method=method, n_values=N_VALUES)
            pvector(F, method=method)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n_values", [1, 5])
@pytest.mark.parametrize("shape", [(40, 10), (10, 40), (3000, 600)])
def test_low_rank_returns_every_requested_value(shape, n_values, method):
    # rank 1: a Krylov space is exhausted after one step, yet n_values values were asked for
    F = planted(*shape, [3.0], np.random.default_rng(12))
    t = top_singular(F, 1, method=method, n_values=n_values)
    assert t.s.shape == (n_values,)
    np.testing.assert_allclose(t.s[0], 3.0, rtol=1e-10)
    assert np.all(t.s[1:] <= 1e-6 * t.s[0])
    assert unit_angle(t.U[:, 0], reference_svd(F)[0][:, 0]) < 1e-6


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mean_over_std", [1e3, 1e4])
@pytest.mark.parametrize("shape", [(40, 60), (60, 40)])
def test_centered_routes_agree_with_large_column_means(shape, mean_over_std, method):
    # per-entry spread ~1, column means mean_over_std * (1..2): centering cancels ~log10(mean_over_std)
    # digits. The Gram route centers with Chan's pairwise update and loses nothing; every route must
    # stay within 1e-6 degrees of the exact SVD of the centered matrix and give the same sign.
    n, d = shape
    rng = np.random.default_rng(5)
    s = gap_spectrum(min(n - 1, d))
    s *= np.sqrt(n * d) / np.linalg.norm(s)
    F = planted(n, d, s, rng, centered_basis=True) + mean_over_std * (1.0 + rng.random(d))
    U_ref = reference_svd(F, True)[0]
    p = pvector(F, center=True, method=method)
    assert unit_angle(p.u, U_ref[:, 0]) < 1e-6
    np.testing.assert_allclose(p.u, sign_rule(U_ref[:, 0]), rtol=0, atol=1e-8)
