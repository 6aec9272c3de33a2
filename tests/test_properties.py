"""Property tests (hypothesis): invariances of the P-vector and of the angle.

Matrices are planted with sigma_2 / sigma_1 <= 0.8, so the P-vector is well
determined. For ``center=True`` the planted left factor is orthogonal to the
ones vector and a random column offset is added: centering must remove it.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from deepspan import angle, pvector
from deepspan.linalg.angles import unit_angle
from conftest import follows_sign_rule, orthonormal, planted, reference_svd, sign_rule

SETTINGS = settings(deadline=None)  # max_examples from the profile in conftest (30)

seeds = st.integers(min_value=0, max_value=2**32 - 1)
centers = st.booleans()


@st.composite
def separated_matrices(draw):
    """(F, center, seed): N in [5, 60], d in [2, 40], sigma_2/sigma_1 in [0.05, 0.8]."""
    seed = draw(seeds)
    n = draw(st.integers(5, 60))
    d = draw(st.integers(2, 40))
    center = draw(centers)
    ratio = draw(st.floats(0.05, 0.8))
    rng = np.random.default_rng(seed)
    r = min(n - 1, d) if center else min(n, d)
    s = np.empty(r)
    s[0] = 1.0
    if r > 1:
        # sigma_2 = ratio, the rest decreasing below it
        s[1:] = ratio * np.geomspace(1.0, 0.05, r - 1)
    scale = 10.0 ** rng.uniform(-2, 2)
    if center:
        # column means up to ~100x the planted per-column spread (far larger ones are a conditioning
        # question, covered by test_routes.py::test_centered_routes_agree_with_large_column_means)
        offset = rng.standard_normal(d) * (scale / np.sqrt(n)) * 10.0 ** rng.uniform(-1, 2)
        F = planted(n, d, s * scale, rng, column_offset=offset, centered_basis=True)
    else:
        F = planted(n, d, s * scale, rng)
    return F, center, seed


def _pv(F, center):
    return pvector(F, center=center).u


@SETTINGS
@given(separated_matrices())
def test_pvector_matches_scipy_with_sign_rule(case):
    F, center, _ = case
    u = _pv(F, center)
    U_ref = reference_svd(F, center)[0]
    assert unit_angle(u, U_ref[:, 0]) < 1e-6
    assert follows_sign_rule(u)
    np.testing.assert_allclose(u, sign_rule(U_ref[:, 0]), rtol=0, atol=1e-8)


@SETTINGS
@given(separated_matrices(), seeds)
def test_invariant_under_right_orthogonal_transform(case, qseed):
    F, center, _ = case
    d = F.shape[1]
    Q = orthonormal(d, d, qseed)
    u = _pv(F, center)
    uq = _pv(F @ Q, center)
    assert unit_angle(u, uq) < 1e-6
    np.testing.assert_allclose(uq, u, rtol=0, atol=1e-8)  # sign rule: the same vector, not its negative


@SETTINGS
@given(separated_matrices(), st.floats(-3.0, 3.0))
def test_invariant_under_positive_scaling(case, log_scale):
    F, center, _ = case
    c = 10.0**log_scale
    u = _pv(F, center)
    uc = _pv(c * F, center)
    assert unit_angle(u, uc) < 1e-6
    np.testing.assert_allclose(uc, u, rtol=0, atol=1e-8)


@SETTINGS
@given(separated_matrices(), seeds)
def test_equivariant_under_sample_permutation(case, pseed):
    F, center, _ = case
    perm = np.random.default_rng(pseed).permutation(F.shape[0])
    u = _pv(F, center)
    up = _pv(F[perm], center)
    np.testing.assert_allclose(up, u[perm], rtol=0, atol=1e-8)


@SETTINGS
@given(separated_matrices(), seeds)
def test_feature_permutation_does_not_change_pvector(case, pseed):
    F, center, _ = case
    perm = np.random.default_rng(pseed).permutation(F.shape[1])
    np.testing.assert_allclose(_pv(F[:, perm], center), _pv(F, center), rtol=0, atol=1e-8)


@SETTINGS
@given(separated_matrices())
def test_pvector_is_unit_and_spectrum_consistent(case):
    F, center, _ = case
    p = pvector(F, center=center)
    s_ref = reference_svd(F, center)[1]
    assert abs(np.linalg.norm(p.u) - 1.0) < 1e-12
    assert abs(np.linalg.norm(p.v) - 1.0) < 1e-9  # kernel route: v = F_c^T u / sigma
    m = len(p.singular_values)
    assert m == min(5, *F.shape)
    planted_nonzero = s_ref[:m] > 1e-6 * s_ref[0]  # planted values are >= 2.5e-3 sigma_1, the rest exactly 0
    # (rtol 1e-6: a centered kernel route with large column means loses digits on the small values;
    # test_routes.py checks 1e-8 on well-conditioned matrices)
    np.testing.assert_allclose(p.singular_values[planted_nonzero], s_ref[:m][planted_nonzero], rtol=1e-6)
    np.testing.assert_allclose(p.singular_values[0], s_ref[0], rtol=1e-9)
    # an exactly-zero singular value comes out of a Gram/kernel route as ~sqrt(eps) * ||F||
    assert np.all(p.singular_values[~planted_nonzero] <= 1e-6 * np.linalg.norm(F))
    assert p.gap <= 0.8 + 1e-9
    assert not p.degenerate


# --- angle ---------------------------------------------------------------------------


@st.composite
def vector_pairs(draw):
    seed = draw(seeds)
    n = draw(st.integers(2, 60))
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 3)
    v = rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 3)
    return u, v


@SETTINGS
@given(separated_matrices())
def test_angle_of_pvector_with_itself_is_zero(case):
    F, center, _ = case
    p = pvector(F, center=center)
    assert 0.0 <= angle(p, p) < 1e-9
    assert angle(p, p.u) < 1e-9
    assert angle(p, -p.u) < 1e-9
    assert angle(p, 3.5 * p.u) < 1e-9


@SETTINGS
@given(vector_pairs())
def test_angle_symmetric_bounded_and_matches_arccos(pair):
    u, v = pair
    a = angle(u, v)
    assert 0.0 <= a <= 90.0
    assert abs(a - angle(v, u)) < 1e-9
    c = abs(u @ v) / (np.linalg.norm(u) * np.linalg.norm(v))
    assert abs(a - np.degrees(np.arccos(min(c, 1.0)))) < 1e-6
    # sign- and scale-invariant
    assert abs(angle(-u, v) - a) < 1e-9
    assert abs(angle(u, -v) - a) < 1e-9
    assert abs(angle(7.0 * u, 1e-3 * v) - a) < 1e-9


@SETTINGS
@given(vector_pairs())
def test_angle_with_own_negative_is_zero(pair):
    u, _ = pair
    assert angle(u, -u) < 1e-9
    assert angle(u, u) < 1e-9


@SETTINGS
@given(vector_pairs())
def test_angle_of_orthogonal_vectors_is_90(pair):
    u, v = pair
    w = v - (v @ u) / (u @ u) * u
    w -= (w @ u) / (u @ u) * u
    if np.linalg.norm(w) < 1e-8 * np.linalg.norm(v):  # v parallel to u (n == 1-like cases)
        return
    assert abs(angle(u, w) - 90.0) < 1e-9
    assert abs(angle(w, u) - 90.0) < 1e-9


@SETTINGS
@given(seeds, st.integers(3, 60), st.floats(0.0, 90.0))
def test_angle_recovers_constructed_angle(seed, n, theta):
    rng = np.random.default_rng(seed)
    Q = orthonormal(n, 2, rng)
    t = np.radians(theta)
    v = np.cos(t) * Q[:, 0] + np.sin(t) * Q[:, 1]
    # accurate at every angle, including tiny ones (atan2 formula)
    assert abs(angle(Q[:, 0], v) - theta) < 1e-9 * max(1.0, theta)
