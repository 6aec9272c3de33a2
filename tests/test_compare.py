"""Similarity measures (CKA, CCA family, Procrustes, shape angle, ...) and the compare interface.

* Known values: Kornblith et al. (2019)'s published demo (seed 1337, 100 x 10).
* Two routes agree: feature vs Gram forms of (debiased) linear CKA, streaming
  CKA from CrossGramAccumulator statistics, compare() vs the standalone functions.
* Metadata-driven properties for every registered measure (``MEASURES``): the
  identity value, symmetry, the stated range, every claimed invariance (as a
  hypothesis property, applied to either side), and for every invariance a
  measure does *not* claim, an input where the value does change.
* Degenerate but valid input never gives NaN: constant columns, an all-constant
  or all-zero side (with the stated rules: CKA/CCA 0, procrustes sqrt(2),
  shape angle 90), N < d, duplicated columns.
* compare on FeatureSets, compare_many (row counts, values, one ``prepare`` per
  model, layer and measure), and bad input.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepspan import CrossGramAccumulator, InputError, SampleMismatchError
from deepspan.features.featureset import FeatureSet, hash_sample_ids
from deepspan.linalg.angles import angle
from deepspan.measures import alignment as cka_mod
from deepspan.measures import canonical as cca_mod
from deepspan.measures import shape as shape_mod
from deepspan.measures.compare import ALL_INVARIANCES, DEFAULT_MEASURES, MEASURES, MeasureSpec, compare, compare_many
from deepspan.measures.match import max_match
from deepspan.measures.pvector import principal_angles, pvector
from conftest import orthonormal

SETTINGS = settings(deadline=None)  # max_examples from the profile in conftest (30)

NAMES = sorted(MEASURES)
DEGREES = {n for n in NAMES if MEASURES[n].range == (0.0, 90.0)}
SIMILARITY_ZERO_RULE = ("linear_cka", "debiased_cka", "rbf_cka", "cca", "cca_mean_sq", "svcca", "pwcca")

seeds = st.integers(min_value=0, max_value=2**32 - 1)


def tol_of(name: str) -> float:
    """Absolute tolerance: 1e-7 for values in [0, 1] / [0, 2] / [-1, 1], 1e-5 for angles in degrees."""
    return 1e-5 if name in DEGREES else 1e-7


# N <= width (TrivialSpanWarning) and near-degenerate P-vectors warn by design; values are what is tested here
pytestmark = pytest.mark.filterwarnings("ignore::deepspan.errors.DeepspanWarning")


# ---------------------------------------------------------------------------------------------- data
def correlated_pair(rng: np.random.Generator, n: int, p1: int, p2: int):
    """X (n x p1) with unequal column scales and positive offsets; Y = X R + noise + offset (n x p2)."""
    scales = 10.0 ** rng.uniform(-0.5, 0.5, p1)
    X = rng.standard_normal((n, p1)) * scales + rng.uniform(0.0, 3.0, p1)
    R = rng.standard_normal((p1, p2))
    noise = 10.0 ** rng.uniform(-1.0, 0.3)
    Y = X @ R + noise * rng.standard_normal((n, p2)) * np.linalg.norm(X @ R, axis=0) / np.sqrt(n)
    Y = Y + rng.uniform(-2.0, 2.0, p2)
    return X, Y


@st.composite
def pairs(draw):
    """(X, Y, rng): widths 2-10, N in [max(12, 3 * width), 60], X and Y correlated."""
    seed = draw(seeds)
    p1 = draw(st.integers(2, 10))
    p2 = draw(st.integers(2, 10))
    n = draw(st.integers(max(12, 3 * max(p1, p2)), 60))
    rng = np.random.default_rng(seed)
    X, Y = correlated_pair(rng, n, p1, p2)
    return X, Y, rng


def random_transform(kind: str, rng: np.random.Generator, A: np.ndarray) -> np.ndarray:
    n, p = A.shape
    if kind == "orthogonal":
        return A @ orthonormal(p, p, rng)
    if kind == "isotropic_scaling":
        return A * 10.0 ** rng.uniform(-2.0, 2.0)
    if kind == "translation":
        spread = A.std(0).mean()
        return A + rng.uniform(-10.0, 10.0, p) * spread
    if kind == "invertible_linear":
        s = 10.0 ** rng.uniform(-0.5, 0.5, p)  # condition number <= 10
        return A @ ((orthonormal(p, p, rng) * s) @ orthonormal(p, p, rng).T)
    if kind == "permutation":
        perm = rng.permutation(p)
        while p > 1 and np.array_equal(perm, np.arange(p)):
            perm = rng.permutation(p)
        return A[:, perm]
    raise AssertionError(kind)


def structured_pair(seed: int, n: int = 40):
    """X, Y sharing three neurons (up to small noise), each with three private neurons; one low-variance
    private neuron per side (so SVCCA's 99 % cut drops a direction); positive offsets."""
    rng = np.random.default_rng(seed)
    S = rng.standard_normal((n, 3))
    X = np.column_stack([S, rng.standard_normal((n, 3)) * [1.0, 0.7, 0.04]]) + rng.uniform(0.5, 2.0, 6)
    Y = np.column_stack([S + 0.05 * rng.standard_normal((n, 3)), rng.standard_normal((n, 3)) * [0.8, 0.5, 0.03]])
    return X, Y + rng.uniform(0.5, 2.0, 6)


# --------------------------------------------------------------------------------------- known values
@pytest.fixture(scope="module")
def kornblith_demo():
    np.random.seed(1337)
    X = np.random.randn(100, 10)
    Y = np.random.randn(100, 10) + X
    return X, Y


def test_kornblith_demo_linear_cka(kornblith_demo):
    X, Y = kornblith_demo
    assert cka_mod.linear_cka(X, Y) == pytest.approx(0.55761, abs=5e-6)
    assert cka_mod.linear_cka_gram(X, Y) == pytest.approx(0.55761, abs=5e-6)
    assert compare(X, Y)["linear_cka"] == pytest.approx(0.55761, abs=5e-6)
    assert cka_mod.cka(X, Y) == pytest.approx(0.55761, abs=5e-6)


def test_kornblith_demo_rbf_cka(kornblith_demo):
    X, Y = kornblith_demo
    assert cka_mod.rbf_cka(X, Y, sigma_fraction=0.5) == pytest.approx(0.65483, abs=5e-6)
    assert compare(X, Y, "rbf_cka")["rbf_cka"] == pytest.approx(0.65483, abs=5e-6)
    assert cka_mod.cka(X, Y, kernel="rbf", sigma_fraction=0.5) == pytest.approx(0.65483, abs=5e-6)


def test_kornblith_demo_debiased_cka(kornblith_demo):
    X, Y = kornblith_demo
    assert cka_mod.debiased_linear_cka(X, Y) == pytest.approx(0.51346, abs=5e-6)
    assert cka_mod.debiased_linear_cka_gram(X, Y) == pytest.approx(0.51346, abs=5e-6)
    assert compare(X, Y, "debiased_cka")["debiased_cka"] == pytest.approx(0.51346, abs=5e-6)
    assert cka_mod.cka(X, Y, debiased=True) == pytest.approx(0.51346, abs=5e-6)


def test_kornblith_demo_cca_mean_sq(kornblith_demo):
    X, Y = kornblith_demo
    assert cca_mod.cca_mean_sq(X, Y, center=False) == pytest.approx(0.54312, abs=5e-6)  # the demo's (uncentered)
    assert cca_mod.cca_mean_sq(X, Y) == pytest.approx(0.54540, abs=5e-6)  # centered (the default)
    assert compare(X, Y, "cca_mean_sq")["cca_mean_sq"] == pytest.approx(0.54540, abs=5e-6)


# ---------------------------------------------------------------------------------------- two routes
@SETTINGS
@given(pairs())
def test_linear_cka_feature_equals_gram(case):
    X, Y, _ = case
    assert cka_mod.linear_cka(X, Y) == pytest.approx(cka_mod.linear_cka_gram(X, Y), abs=1e-10)


@SETTINGS
@given(pairs())
def test_debiased_cka_feature_equals_gram(case):
    X, Y, _ = case
    assert cka_mod.debiased_linear_cka(X, Y) == pytest.approx(cka_mod.debiased_linear_cka_gram(X, Y), abs=1e-10)


@st.composite
def batched_pairs(draw):
    X, Y, rng = draw(pairs())
    n = len(X)
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=6)))  # repeated cuts give empty batches
    return X, Y, [0, *cuts, n]


@SETTINGS
@given(batched_pairs())
def test_linear_cka_from_stats_equals_linear_cka_for_any_split(case):
    X, Y, bounds = case
    acc = CrossGramAccumulator()
    for a, b in zip(bounds[:-1], bounds[1:]):
        acc.update(X[a:b], Y[a:b])
    ref = cka_mod.linear_cka(X, Y)
    assert cka_mod.linear_cka_from_stats(acc.finalize()) == pytest.approx(ref, abs=1e-10)
    # the same split as shards merged pairwise
    shards = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        shards.append(CrossGramAccumulator().update(X[a:b], Y[a:b]))
    merged = shards[0]
    for s in shards[1:]:
        merged.merge(s)
    assert cka_mod.linear_cka_from_stats(merged.finalize()) == pytest.approx(ref, abs=1e-10)


@pytest.mark.parametrize("bounds", [[0, 20], [0, 10, 20], [0, 7, 20], [0, 3, 11, 20]])
def test_linear_cka_from_stats_all_constant_side_is_zero(bounds):
    """An all-constant side has no centered kernel: CKA is 0 by the stated rule, streamed or not.
    (0.1 is not exactly representable, so batch means of different batch sizes differ by rounding.)"""
    Y = np.random.default_rng(0).standard_normal((20, 3)) + 2.0
    C = np.full((20, 2), 0.1)
    acc = CrossGramAccumulator()
    for a, b in zip(bounds[:-1], bounds[1:]):
        acc.update(C[a:b], Y[a:b])
    assert cka_mod.linear_cka(C, Y) == pytest.approx(0.0, abs=1e-12)
    assert cka_mod.linear_cka_from_stats(acc.finalize()) == pytest.approx(0.0, abs=1e-12)


def _standalone(name: str, X, Y) -> float:
    if name == "linear_cka":
        return cka_mod.linear_cka(X, Y)
    if name == "debiased_cka":
        return cka_mod.debiased_linear_cka(X, Y)
    if name == "rbf_cka":
        return cka_mod.rbf_cka(X, Y, sigma_fraction=0.5)
    if name == "cca":
        return cca_mod.cca(X, Y)
    if name == "cca_mean_sq":
        return cca_mod.cca_mean_sq(X, Y)
    if name == "svcca":
        return cca_mod.svcca(X, Y)
    if name == "pwcca":
        return cca_mod.pwcca(X, Y)
    if name == "pwcca_centered":
        return cca_mod.pwcca_centered(X, Y)
    if name == "procrustes":
        return shape_mod.procrustes(X, Y)
    if name == "shape_angle":
        return shape_mod.shape_angle(X, Y)
    if name == "pvector_angle":
        return angle(pvector(X), pvector(Y))
    if name == "principal_angle":
        k = min(5, *X.shape, *Y.shape)
        return float(np.mean(principal_angles(X, Y, k)))
    if name == "max_match":
        return max_match(X, Y, 0.25).similarity
    if name == "max_match_active":
        return max_match(X, Y, 0.25).active_similarity
    raise AssertionError(f"no standalone route for {name}")


def test_every_measure_has_a_standalone_route():
    X, Y = structured_pair(0)
    for name in NAMES:
        assert math.isfinite(_standalone(name, X, Y))


@SETTINGS
@given(pairs())
def test_compare_equals_standalone_functions(case):
    X, Y, _ = case
    got = compare(X, Y, NAMES)
    assert set(got) == set(NAMES)
    for name in NAMES:
        assert got[name] == pytest.approx(_standalone(name, X, Y), abs=1e-10), name
        assert got[name] == pytest.approx(MEASURES[name](X, Y), abs=1e-12), name


def test_compare_defaults():
    X, Y = structured_pair(1)
    got = compare(X, Y)
    assert list(got) == list(DEFAULT_MEASURES)
    assert set(compare(X, Y, "svcca")) == {"svcca"}


def test_cka_dispatch_and_svcca_dims():
    X, Y = structured_pair(2)
    assert cka_mod.cka(X, Y, kernel="rbf", sigma=3.0) == pytest.approx(cka_mod.rbf_cka(X, Y, sigma=3.0), abs=0)
    # svcca keeping every direction is plain mean CCA
    assert cca_mod.svcca(X, Y, variance=1.0) == pytest.approx(cca_mod.cca(X, Y), abs=1e-10)
    assert cca_mod.svcca(X, Y, dims=6) == pytest.approx(cca_mod.cca(X, Y), abs=1e-10)
    assert cca_mod.svcca(X, Y, dims=100) == pytest.approx(cca_mod.cca(X, Y), abs=1e-10)
    # the canonical correlations are the cosines of the principal angles between the centered column spans
    rho = cca_mod.canonical_correlations(X, Y)
    assert rho.shape == (6,) and np.all(np.diff(rho) <= 1e-12)
    assert cca_mod.cca(X, Y) == pytest.approx(rho.mean(), abs=1e-12)


# ------------------------------------------------------------------- independent reference implementations
def _inv_sqrt(S):
    w, V = np.linalg.eigh(S)
    return (V / np.sqrt(w)) @ V.T


def _ref_cca(X, Y):
    """Canonical correlations and X's unit-norm canonical variates by whitening (full-rank X, Y)."""
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    Wx, Wy = _inv_sqrt(Xc.T @ Xc), _inv_sqrt(Yc.T @ Yc)
    U, rho, _ = np.linalg.svd(Wx @ (Xc.T @ Yc) @ Wy, full_matrices=False)
    return rho, Xc @ Wx @ U


def _ref_debiased_cka(X, Y):
    """Kornblith et al.'s feature_space_linear_cka(debiased=True) (their demo code, which centers first)."""
    X, Y = X - X.mean(0), Y - Y.mean(0)
    n = len(X)

    def helper(xty, rx, ry, nx, ny):
        return xty - n / (n - 2.0) * rx.dot(ry) + nx * ny / ((n - 1) * (n - 2))

    rx, ry = np.einsum("ij,ij->i", X, X), np.einsum("ij,ij->i", Y, Y)
    xy = helper(np.linalg.norm(X.T @ Y) ** 2, rx, ry, rx.sum(), ry.sum())
    xx = helper(np.linalg.norm(X.T @ X) ** 2, rx, rx, rx.sum(), rx.sum())
    yy = helper(np.linalg.norm(Y.T @ Y) ** 2, ry, ry, ry.sum(), ry.sum())
    return xy / np.sqrt(xx * yy)


def _ref_rbf_cka(X, Y, sigma=None, fraction=None):
    from scipy.spatial.distance import cdist

    def kernel(A):
        d2 = cdist(A, A, "sqeuclidean")
        s2 = sigma**2 if sigma is not None else fraction**2 * np.median(d2)
        return np.exp(-d2 / (2 * s2))

    n = len(X)
    H = np.eye(n) - 1.0 / n
    K, L = H @ kernel(X) @ H, H @ kernel(Y) @ H
    return float((K * L).sum() / np.sqrt((K * K).sum() * (L * L).sum()))


def _ref_shape(X, Y):
    """(procrustes, shape angle in degrees) with scipy's orthogonal Procrustes on zero-padded, unit-norm sides."""
    import scipy.linalg

    A, B = X - X.mean(0), Y - Y.mean(0)
    A, B = A / np.linalg.norm(A), B / np.linalg.norm(B)
    p = max(A.shape[1], B.shape[1])
    A = np.pad(A, ((0, 0), (0, p - A.shape[1])))
    B = np.pad(B, ((0, 0), (0, p - B.shape[1])))
    Q, _ = scipy.linalg.orthogonal_procrustes(B, A)
    return float(np.linalg.norm(A - B @ Q)), float(np.degrees(np.arccos(min(np.sum(A * (B @ Q)), 1.0))))


@SETTINGS
@given(pairs())
def test_cca_family_against_whitening_reference(case):
    X, Y, _ = case
    rho, H = _ref_cca(X, Y)
    m = min(X.shape[1], Y.shape[1])
    assert len(rho) == m
    np.testing.assert_allclose(cca_mod.canonical_correlations(X, Y), rho, atol=1e-8)
    assert cca_mod.cca(X, Y) == pytest.approx(rho.mean(), abs=1e-8)
    assert cca_mod.cca_mean_sq(X, Y) == pytest.approx((rho**2).mean(), abs=1e-8)
    Xc = X - X.mean(0)
    alpha = np.abs(H.T @ Xc).sum(1)
    assert cca_mod.pwcca_centered(X, Y) == pytest.approx(float(alpha @ rho / alpha.sum()), abs=1e-8)


@SETTINGS
@given(pairs(), st.floats(0.5, 1.0))
def test_svcca_against_reference(case, variance):
    X, Y, _ = case

    def reduce(A):
        U, s, _ = np.linalg.svd(A - A.mean(0), full_matrices=False)
        frac = np.cumsum(s**2) / np.sum(s**2)
        k = int(np.argmax(frac >= variance - 1e-12)) + 1
        return U[:, :k] * s[:k]

    Ra, Rb = reduce(X), reduce(Y)
    rho, _ = _ref_cca(Ra, Rb)
    assert cca_mod.svcca(X, Y, variance=variance) == pytest.approx(rho.mean(), abs=1e-8)
    k = min(3, X.shape[1], Y.shape[1])
    U1, U2 = (np.linalg.svd(A - A.mean(0), full_matrices=False)[0][:, :k] for A in (X, Y))
    assert cca_mod.svcca(X, Y, dims=k) == pytest.approx(np.linalg.svd(U1.T @ U2, compute_uv=False).mean(), abs=1e-8)


@SETTINGS
@given(pairs())
def test_cka_variants_against_reference(case):
    X, Y, rng = case
    assert cka_mod.debiased_linear_cka(X, Y) == pytest.approx(_ref_debiased_cka(X, Y), abs=1e-9)
    assert cka_mod.rbf_cka(X, Y, sigma_fraction=0.5) == pytest.approx(_ref_rbf_cka(X, Y, fraction=0.5), abs=1e-9)
    sigma = float(10.0 ** rng.uniform(-0.5, 1.5))
    assert cka_mod.rbf_cka(X, Y, sigma=sigma) == pytest.approx(_ref_rbf_cka(X, Y, sigma=sigma), abs=1e-9)


@SETTINGS
@given(pairs())
def test_procrustes_and_shape_angle_against_scipy(case):
    X, Y, _ = case
    dist, ang = _ref_shape(X, Y)
    assert shape_mod.procrustes(X, Y) == pytest.approx(dist, abs=1e-7)
    assert shape_mod.shape_angle(X, Y) == pytest.approx(ang, abs=1e-5)
    # the two are one quantity: d^2 = 2 - 2 cos(theta)
    assert shape_mod.procrustes(X, Y) ** 2 == pytest.approx(2 - 2 * np.cos(np.radians(shape_mod.shape_angle(X, Y))),
                                                          abs=1e-10)


@SETTINGS
@given(pairs())
def test_principal_angle_against_scipy(case):
    import scipy.linalg

    X, Y, _ = case
    k = min(5, X.shape[1], Y.shape[1])
    UX, UY = (np.linalg.svd(A, full_matrices=False)[0][:, :k] for A in (X, Y))
    ref = float(np.degrees(scipy.linalg.subspace_angles(UX, UY)).mean())
    assert MEASURES["principal_angle"](X, Y) == pytest.approx(ref, abs=1e-5)


def test_integer_and_float32_input_same_as_float64():
    X, Y = structured_pair(11)
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    Xi, Yi = np.round(10 * X).astype(np.int32), np.round(10 * Y).astype(np.int64)
    a, b = compare(X32, Y32, NAMES), compare(X32.astype(np.float64), Y32.astype(np.float64), NAMES)
    c, d = compare(Xi, Yi, NAMES), compare(Xi.astype(np.float64), Yi.astype(np.float64), NAMES)
    for name in NAMES:
        assert a[name] == pytest.approx(b[name], abs=1e-12), name
        assert c[name] == pytest.approx(d[name], abs=1e-12), name


# ----------------------------------------------------------------------------- metadata and properties
def test_metadata_is_consistent():
    assert set(DEFAULT_MEASURES) <= set(MEASURES)
    for name, spec in MEASURES.items():
        assert isinstance(spec, MeasureSpec) and spec.name == name
        assert spec.kind in ("similarity", "distance")
        lo, hi = spec.range
        assert lo < hi and lo <= spec.identity <= hi
        assert spec.identity == (hi if spec.kind == "similarity" else lo), name
        assert spec.invariances <= set(ALL_INVARIANCES), name
        assert spec.reference


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(case=pairs())
def test_identity(name, case):
    X, Y, _ = case
    spec = MEASURES[name]
    for A in (X, Y):
        assert spec(A, A) == pytest.approx(spec.identity, abs=tol_of(name))
        assert spec(A, A.copy()) == pytest.approx(spec.identity, abs=tol_of(name))


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(case=pairs())
def test_value_in_range_and_symmetry(name, case):
    X, Y, _ = case
    spec = MEASURES[name]
    lo, hi = spec.range
    xy, yx = spec(X, Y), spec(Y, X)
    for v in (xy, yx):
        assert math.isfinite(v) and lo <= v <= hi, (name, v)
    if spec.symmetric:
        assert xy == pytest.approx(yx, abs=tol_of(name))


CLAIMED = [(n, inv) for n in NAMES for inv in sorted(MEASURES[n].invariances)]
UNCLAIMED = [(n, inv) for n in NAMES for inv in ALL_INVARIANCES if inv not in MEASURES[n].invariances]


@pytest.mark.parametrize(("name", "invariance"), CLAIMED)
@SETTINGS
@given(case=pairs())
def test_claimed_invariance(name, invariance, case):
    X, Y, rng = case
    spec = MEASURES[name]
    base = spec(X, Y)
    tol = tol_of(name)
    assert spec(X, random_transform(invariance, rng, Y)) == pytest.approx(base, abs=tol), "applied to Y"
    assert spec(random_transform(invariance, rng, X), Y) == pytest.approx(base, abs=tol), "applied to X"


@pytest.mark.parametrize(("name", "invariance"), UNCLAIMED)
def test_unclaimed_invariance_does_change_the_value(name, invariance):
    """The metadata does not under-claim: for some input, the transformation changes the value."""
    spec = MEASURES[name]
    changes = []
    for seed in range(8):
        X, Y = structured_pair(seed)
        rng = np.random.default_rng(seed)
        base = spec(X, Y)
        new = spec(random_transform(invariance, rng, X), Y)
        assert math.isfinite(new)
        changes.append(abs(new - base))
    assert max(changes) > 1e-3, (name, invariance, changes)


def test_named_non_invariances():
    X, Y = structured_pair(3)
    rng = np.random.default_rng(3)
    M = (orthonormal(6, 6, rng) * [3.0, 2.0, 1.0, 1.0, 0.5, 0.3]) @ orthonormal(6, 6, rng).T
    assert abs(cka_mod.linear_cka(X @ M, Y) - cka_mod.linear_cka(X, Y)) > 1e-3
    assert abs(shape_mod.procrustes(X @ M, Y) - shape_mod.procrustes(X, Y)) > 1e-3
    # CCA is invariant to the same map
    assert cca_mod.cca(X @ M, Y) == pytest.approx(cca_mod.cca(X, Y), abs=1e-10)
    # the P-vector is uncentered: a translation moves it
    pv = MEASURES["pvector_angle"]
    assert abs(pv(X + 20.0, Y) - pv(X, Y)) > 1e-2
    # PWCCA weights X's neurons: not symmetric
    assert abs(cca_mod.pwcca(X, Y) - cca_mod.pwcca(Y, X)) > 1e-3
    # max match is a neuron-basis notion: [a, b] vs [a, c] matches a; mixing Y's a and c breaks it
    n = 40
    rng = np.random.default_rng(4)
    a, b, c = rng.standard_normal((3, n))
    A, B = np.column_stack([a, b]), np.column_stack([a, c])
    assert max_match(A, B, 0.25).similarity == pytest.approx(0.5)
    Q = np.array([[1.0, 1.0], [1.0, -1.0]]) / np.sqrt(2.0)
    assert MEASURES["max_match"](A, B @ Q) < 0.5
    assert MEASURES["max_match"](A, B) == pytest.approx(0.5)


def test_asymmetric_measures_are_asymmetric_somewhere():
    for name in NAMES:
        if MEASURES[name].symmetric:
            continue
        diffs = [abs(MEASURES[name](*structured_pair(s)) - MEASURES[name](*structured_pair(s)[::-1]))
                 for s in range(4)]
        assert max(diffs) > 1e-3, name


def test_debiased_cka_translation_invariance_with_large_offsets():
    """debiased_cka claims translation invariance; the unbiased HSIC is translation invariant in exact
    arithmetic. Features whose mean is large against their spread must not change the value."""
    rng = np.random.default_rng(1)
    n = 60
    X = rng.standard_normal((n, 5))
    Y = X @ rng.standard_normal((5, 4)) + rng.standard_normal((n, 4))
    base = cka_mod.debiased_linear_cka(X, Y)
    shifted = Y + 1e4 * rng.uniform(0.5, 1.0, 4)
    assert cka_mod.linear_cka(X, shifted) == pytest.approx(cka_mod.linear_cka(X, Y), abs=1e-9)
    assert cka_mod.debiased_linear_cka(X, shifted) == pytest.approx(base, abs=1e-6)
    assert cka_mod.debiased_linear_cka_gram(X, shifted) == pytest.approx(base, abs=1e-6)


# ------------------------------------------------------------------------------ never NaN, stated rules
def _rng_normal(seed, n, p):
    return np.random.default_rng(seed).standard_normal((n, p))


def _finite_or_zero_input_error(spec, A, B, zero_side: bool):
    try:
        v = spec(A, B)
    except InputError:
        if zero_side and spec.name in ("pvector_angle", "principal_angle"):
            return None
        raise
    assert math.isfinite(v), (spec.name, v)
    lo, hi = spec.range
    assert lo - 1e-12 <= v <= hi + 1e-12, (spec.name, v)
    return v


@pytest.mark.parametrize("name", NAMES)
def test_constant_columns_are_finite(name):
    spec = MEASURES[name]
    X = _rng_normal(0, 50, 6)
    X[:, 1] = 0.1
    X[:, 4] = 3.7
    Y = X[:, [0, 2, 3, 5]] @ _rng_normal(1, 4, 5) + 0.3 * _rng_normal(2, 50, 5)
    Y[:, 0] = -2.0
    for A, B in ((X, Y), (Y, X), (X, X)):
        _finite_or_zero_input_error(spec, A, B, zero_side=False)
    _assert_identity_or_rank_rule(name, X, rank=4)


def _assert_identity_or_rank_rule(name, X, rank, dependent=False):
    """spec(X, X) is the identity value, also for a rank-deficient X (mean (squared) CCA average over
    the min(rank X, rank Y) canonical correlations, so dead or duplicated neurons do not lower it)."""
    spec = MEASURES[name]
    assert np.linalg.matrix_rank(X - X.mean(0)) == rank
    if name == "pwcca" and dependent:  # its stated condition (independent neurons) does not hold: below 1
        assert "independent" in spec.identity_when and spec(X, X) < spec.identity - 1e-3
        return
    assert spec(X, X) == pytest.approx(spec.identity, abs=tol_of(name))


STATED_CONSTANT = {**{n: 0.0 for n in SIMILARITY_ZERO_RULE}, "procrustes": math.sqrt(2.0), "shape_angle": 90.0}


@pytest.mark.parametrize("fill", ["0.1", "mixed", "zero"])
@pytest.mark.parametrize("name", NAMES)
def test_all_constant_side_against_a_normal_one(name, fill):
    """An all-constant side: CKA and the CCA family 0, procrustes sqrt(2), shape angle 90 (stated rules)."""
    spec = MEASURES[name]
    n = 50
    C = {"0.1": np.full((n, 4), 0.1), "mixed": np.zeros((n, 4)) + [0.1, -3.3, 7.77, 1e3],
         "zero": np.zeros((n, 4))}[fill]
    Y = _rng_normal(0, n, 6) + 0.5
    for A, B in ((C, Y), (Y, C)):
        v = _finite_or_zero_input_error(spec, A, B, zero_side=fill == "zero")
        if v is not None and name in STATED_CONSTANT:
            assert v == pytest.approx(STATED_CONSTANT[name], abs=1e-12), (name, A is C, v)


@pytest.mark.parametrize("name", NAMES)
def test_identity_with_mostly_repeated_samples(name):
    """24 of 30 samples share one feature vector (all-zero activations, as in a sparse ReLU layer): the
    matrix is valid and not constant, so spec(X, X) is still the identity value. For rbf_cka more than
    half of the pairwise distances are 0, so the median bandwidth heuristic gives sigma = 0."""
    rng = np.random.default_rng(0)
    X = np.zeros((30, 4))
    X[:6] = np.abs(rng.standard_normal((6, 4)))
    assert MEASURES[name](X, X) == pytest.approx(MEASURES[name].identity, abs=tol_of(name))
    Y = X @ rng.standard_normal((4, 3)) + 0.1 * rng.standard_normal((30, 3))
    _finite_or_zero_input_error(MEASURES[name], X, Y, zero_side=False)


@pytest.mark.parametrize("name", NAMES)
def test_n_smaller_than_width_is_finite(name):
    spec = MEASURES[name]
    X = _rng_normal(0, 8, 20)
    Y = X @ _rng_normal(1, 20, 20) + _rng_normal(2, 8, 20)
    Z = _rng_normal(3, 8, 3)
    for A, B in ((X, Y), (X, Z), (Z, X), (X, X)):
        _finite_or_zero_input_error(spec, A, B, zero_side=False)


@pytest.mark.parametrize("name", NAMES)
def test_rank_deficient_duplicated_columns_are_finite(name):
    spec = MEASURES[name]
    A = _rng_normal(0, 40, 4)
    X = np.column_stack([A, A, A[:, :2] * 2.0])  # rank 4 of width 10
    Y = A @ _rng_normal(1, 4, 5) + 0.2 * _rng_normal(2, 40, 5)
    Y = np.column_stack([Y, Y[:, 0]])
    for P, Q in ((X, Y), (Y, X), (X, X)):
        _finite_or_zero_input_error(spec, P, Q, zero_side=False)
    _assert_identity_or_rank_rule(name, X, rank=4, dependent=True)


def test_one_column_and_all_constant_both_sides_are_finite():
    x = _rng_normal(0, 30, 1)
    C = np.full((30, 3), 2.5)
    for name in NAMES:
        spec = MEASURES[name]
        for A, B in ((x, x), (x, 2 * x + 1), (C, C), (x, C)):
            assert math.isfinite(spec(A, B)), name


# ------------------------------------------------------------------------------------ FeatureSets
def _featureset(layers: dict, ids) -> FeatureSet:
    ids = np.asarray(ids)
    return FeatureSet(dict(layers), ids, hash_sample_ids(ids), {k: "flatten" for k in layers})


@pytest.fixture
def four_models():
    rng = np.random.default_rng(7)
    n = 36
    ids = np.arange(n)
    base1, base2 = rng.standard_normal((n, 5)), rng.standard_normal((n, 4))
    sets = {}
    for m in ("m0", "m1", "m2", "m3"):
        sets[m] = _featureset({"l1": base1 @ rng.standard_normal((5, 5)) + 0.5 * rng.standard_normal((n, 5)),
                               "l2": base2 @ rng.standard_normal((4, 6)) + 0.5 * rng.standard_normal((n, 6))}, ids)
    return sets


def test_compare_two_featuresets(four_models):
    a, b = four_models["m0"], four_models["m1"]
    names = ["linear_cka", "pwcca", "shape_angle"]
    rows = compare(a, b, names)
    assert len(rows) == 2 * len(names)
    assert {(r["layer"], r["measure"]) for r in rows} == {(l, m) for l in ("l1", "l2") for m in names}
    for r in rows:
        assert set(r) == {"layer", "measure", "kind", "value"}
        assert r["kind"] == MEASURES[r["measure"]].kind
        assert r["value"] == pytest.approx(MEASURES[r["measure"]](a[r["layer"]], b[r["layer"]]), abs=1e-12)
    # PWCCA is asymmetric: compare(a, b) is the (a, b) direction
    rows_ba = compare(b, a, "pwcca")
    for layer in ("l1", "l2"):
        ab = next(r["value"] for r in rows if r["layer"] == layer and r["measure"] == "pwcca")
        ba = next(r["value"] for r in rows_ba if r["layer"] == layer)
        assert ab == pytest.approx(cca_mod.pwcca(a[layer], b[layer]), abs=1e-12)
        assert ba == pytest.approx(cca_mod.pwcca(b[layer], a[layer]), abs=1e-12)
    only = compare(a, b, "linear_cka", layers="l2")
    assert [r["layer"] for r in only] == ["l2"]


def test_compare_featuresets_uses_common_layers_only(four_models):
    a = four_models["m0"]
    b = _featureset({**four_models["m1"].features, "extra": np.ones((36, 2))}, four_models["m1"].sample_ids)
    rows = compare(a, b, "linear_cka")
    assert [r["layer"] for r in rows] == ["l1", "l2"]
    with pytest.raises(InputError):
        compare(a, b, "linear_cka", layers="extra")


def test_compare_featuresets_with_different_samples_raises(four_models):
    a = four_models["m0"]
    other = _featureset(a.features, np.arange(36)[::-1])
    with pytest.raises(SampleMismatchError):
        compare(a, other)
    with pytest.raises(SampleMismatchError):
        compare_many({"a": a, "b": four_models["m1"], "c": other})


def test_compare_featuresets_with_different_positions_raises():
    """``channels`` layers: rows are (image, position) pairs and the layer hash covers the positions
    (FeatureSet.layer_hash); the same images at other positions are other rows and must not be compared."""
    ids = np.arange(10)
    rng = np.random.default_rng(0)
    pos_a = np.column_stack([np.repeat(ids, 3), np.tile([0, 1, 2], 10)])
    pos_b = np.column_stack([np.repeat(ids, 3), np.tile([3, 4, 5], 10)])
    a = FeatureSet({"conv": rng.standard_normal((30, 4))}, ids, hash_sample_ids(ids), {"conv": "channels"},
                   positions={"conv": pos_a})
    b = FeatureSet({"conv": rng.standard_normal((30, 4))}, ids, hash_sample_ids(ids), {"conv": "channels"},
                   positions={"conv": pos_b})
    assert a.sample_hash == b.sample_hash and a.layer_hash("conv") != b.layer_hash("conv")
    with pytest.raises(SampleMismatchError):
        compare(a, b, "linear_cka")
    with pytest.raises(SampleMismatchError):
        compare_many({"a": a, "b": b}, "linear_cka")
    # the same positions compare fine
    c = FeatureSet({"conv": rng.standard_normal((30, 4))}, ids, hash_sample_ids(ids), {"conv": "channels"},
                   positions={"conv": pos_a.copy()})
    assert len(compare(a, c, "linear_cka")) == 1


def test_compare_featureset_and_matrix_raises(four_models):
    a = four_models["m0"]
    with pytest.raises(InputError):
        compare(a, a["l1"])
    with pytest.raises(InputError):
        compare(a["l1"], a)
    with pytest.raises(InputError):
        compare_many({"a": a, "b": a["l1"]})


def test_compare_many_rows_and_values(four_models):
    names = ["linear_cka", "cca_mean_sq", "pwcca", "procrustes", "max_match"]
    rows = compare_many(four_models, names)
    models = list(four_models)
    n_sym = sum(MEASURES[m].symmetric for m in names)
    n_asym = len(names) - n_sym
    assert len(rows) == 2 * (n_sym * 6 + n_asym * 12)
    seen = set()
    for r in rows:
        assert set(r) == {"model_a", "model_b", "layer", "measure", "kind", "value"}
        key = (r["model_a"], r["model_b"], r["layer"], r["measure"])
        assert key not in seen
        seen.add(key)
        assert r["kind"] == MEASURES[r["measure"]].kind
        A, B = four_models[r["model_a"]][r["layer"]], four_models[r["model_b"]][r["layer"]]
        assert r["value"] == pytest.approx(compare(A, B, r["measure"])[r["measure"]], abs=1e-12)
        pair_rows = compare(four_models[r["model_a"]], four_models[r["model_b"]], r["measure"], layers=r["layer"])
        assert r["value"] == pytest.approx(pair_rows[0]["value"], abs=1e-12)
    for layer in ("l1", "l2"):
        for m in names:
            if MEASURES[m].symmetric:
                expect = {(a, b) for a, b in itertools.combinations(models, 2)}
                got = {(r["model_a"], r["model_b"]) for r in rows if r["layer"] == layer and r["measure"] == m}
                assert len({frozenset(p) for p in got}) == 6 and len(got) == 6
                assert {frozenset(p) for p in got} == {frozenset(p) for p in expect}
            else:
                got = {(r["model_a"], r["model_b"]) for r in rows if r["layer"] == layer and r["measure"] == m}
                assert got == set(itertools.permutations(models, 2))


def test_compare_many_on_matrices(four_models):
    mats = {m: fs["l1"] for m, fs in four_models.items()}
    rows = compare_many(mats, ["linear_cka", "pwcca"])
    assert len(rows) == 6 + 12
    assert {r["layer"] for r in rows} == {""}
    for r in rows:
        assert r["value"] == pytest.approx(MEASURES[r["measure"]](mats[r["model_a"]], mats[r["model_b"]]),
                                           abs=1e-12)


def test_compare_many_prepares_each_model_once_per_layer_and_measure(four_models, monkeypatch):
    calls: dict[str, list] = {}

    def counting(name, prepare):
        def wrapped(X):
            calls.setdefault(name, []).append(np.array(X, copy=True))
            return prepare(X)
        return wrapped

    names = ["linear_cka", "pwcca", "shape_angle"]
    for m in names:
        monkeypatch.setitem(MEASURES, m, dataclasses.replace(MEASURES[m], prepare=counting(m, MEASURES[m].prepare)))
    rows = compare_many(four_models, names)
    assert len(rows) == 2 * (6 + 12 + 6)
    mats = [(model, layer, np.asarray(fs[layer], dtype=np.float64))
            for model, fs in four_models.items() for layer in ("l1", "l2")]
    for m in names:
        assert len(calls[m]) == len(mats) == 8, m
        for _, _, M in mats:
            assert sum(1 for c in calls[m] if c.shape == M.shape and np.array_equal(c, M)) == 1


def test_compare_many_unknown_measure_and_too_few_sets(four_models):
    with pytest.raises(InputError) as exc:
        compare_many(four_models, ["linear_cka", "no_such_measure"])
    msg = str(exc.value)
    assert "no_such_measure" in msg
    for name in MEASURES:
        assert name in msg
    with pytest.raises(InputError) as exc:
        compare(four_models["m0"]["l1"], four_models["m1"]["l1"], "cka_typo")
    assert all(name in str(exc.value) for name in MEASURES)
    with pytest.raises(InputError):
        compare_many({"only": four_models["m0"]})
    with pytest.raises(InputError):
        compare_many({})
    with pytest.raises(InputError):
        compare_many({"a": four_models["m0"]["l1"]}, "linear_cka")


# ------------------------------------------------------------------------------------------ bad input
STANDALONE_FUNCS = [
    cka_mod.linear_cka, cka_mod.linear_cka_gram, cka_mod.debiased_linear_cka, cka_mod.debiased_linear_cka_gram,
    lambda X, Y: cka_mod.rbf_cka(X, Y, sigma_fraction=0.5), lambda X, Y: cka_mod.rbf_cka(X, Y, sigma=1.0),
    cca_mod.canonical_correlations, cca_mod.cca, cca_mod.cca_mean_sq, cca_mod.svcca, cca_mod.pwcca,
    shape_mod.procrustes, shape_mod.shape_angle,
]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_refused(bad):
    X, Y = structured_pair(5)
    Xb = X.copy()
    Xb[3, 2] = bad
    for f in STANDALONE_FUNCS:
        for A, B in ((Xb, Y), (Y, Xb)):
            with pytest.raises(InputError, match="non-finite"):
                f(A, B)
    for name in NAMES:
        with pytest.raises(InputError, match="non-finite"):
            compare(Xb, Y, name)
        with pytest.raises(InputError, match="non-finite"):
            compare(Y, Xb, name)
        with pytest.raises(InputError, match="non-finite"):
            MEASURES[name](Xb, Y)
    with pytest.raises(InputError, match="non-finite"):
        compare_many({"a": X, "b": Xb}, "linear_cka")


def test_different_sample_counts_raise_sample_mismatch():
    X, Y = structured_pair(6)
    for f in STANDALONE_FUNCS:
        with pytest.raises(SampleMismatchError):
            f(X, Y[:-1])
    for name in NAMES:
        with pytest.raises(SampleMismatchError):
            compare(X, Y[:-1], name)
    with pytest.raises(SampleMismatchError):
        compare_many({"a": X, "b": Y[:-1]}, "linear_cka")


@pytest.mark.parametrize("name", NAMES)
def test_measure_spec_call_with_different_sample_counts_raises_sample_mismatch(name):
    X, Y = structured_pair(6)
    with pytest.raises(SampleMismatchError):
        MEASURES[name](X, Y[:-1])


def test_rbf_bandwidth_arguments():
    X, Y = structured_pair(7)
    # no bandwidth given: Kornblith et al.'s 0.5 x median distance, the MEASURES default
    assert cka_mod.rbf_cka(X, Y) == cka_mod.rbf_cka(X, Y, sigma_fraction=0.5) == MEASURES["rbf_cka"](X, Y)
    with pytest.raises(InputError):
        cka_mod.rbf_cka_steps()
    with pytest.raises(InputError):
        cka_mod.rbf_cka(X, Y, sigma=1.0, sigma_fraction=0.5)
    for kw in ({"sigma": 0.0}, {"sigma": -1.0}, {"sigma": np.nan}, {"sigma_fraction": 0.0},
               {"sigma_fraction": -0.5}, {"sigma_fraction": np.nan}):
        with pytest.raises(InputError, match="positive"):
            cka_mod.rbf_cka(X, Y, **kw)
    with pytest.raises(InputError):
        cka_mod.cka(X, Y, kernel="rbf", debiased=True, sigma=1.0)
    with pytest.raises(InputError):
        cka_mod.cka(X, Y, kernel="polynomial")


def test_debiased_cka_needs_four_samples():
    X, Y = structured_pair(8)
    for n in (2, 3):
        for f in (cka_mod.debiased_linear_cka, cka_mod.debiased_linear_cka_gram,
                  lambda A, B: cka_mod.cka(A, B, debiased=True), MEASURES["debiased_cka"]):
            with pytest.raises(InputError, match="4 samples"):
                f(X[:n], Y[:n])
        with pytest.raises(InputError):
            compare(X[:n], Y[:n], "debiased_cka")
    assert math.isfinite(cka_mod.debiased_linear_cka(X[:4], Y[:4]))
    assert math.isfinite(cka_mod.debiased_linear_cka_gram(X[:4], Y[:4]))


def test_svcca_arguments():
    X, Y = structured_pair(9)
    for v in (0.0, -0.1, 1.5, np.nan, None):
        with pytest.raises(InputError, match="variance"):
            cca_mod.svcca(X, Y, variance=v)
    for d in (0, -1):
        with pytest.raises(InputError, match="dims"):
            cca_mod.svcca(X, Y, dims=d)
    assert 0.0 <= cca_mod.svcca(X, Y, variance=1.0) <= 1.0
    assert 0.0 <= cca_mod.svcca(X, Y, dims=1) <= 1.0


def test_one_sample_and_bad_shapes_are_refused():
    X, Y = structured_pair(10)
    for name in NAMES:
        with pytest.raises(InputError):
            compare(X[:1], Y[:1], name)
        with pytest.raises(InputError):
            compare(X[:, 0], Y, name)


def test_max_match_active_refuses_all_dead_sides():
    with pytest.raises(InputError, match="every neuron of both sides is dead"):
        MEASURES["max_match_active"](np.zeros((20, 3)), np.zeros((20, 2)))
