"""Streaming Gram / cross-Gram statistics: any batch split, any merge order, numpy or torch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import deepspan
from deepspan import (
    CrossGramAccumulator,
    GramAccumulator,
    angle,
    pvector,
    pvector_angle_from_stats,
    pvector_from_stats,
    with_left_vector,
)
from deepspan.linalg import CrossGramStats, GramStats
from deepspan.linalg.angles import unit_angle
from conftest import centered, orthonormal, planted, rel_err

SETTINGS = settings(deadline=None)  # max_examples from the profile in conftest (30)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


# --- data and batching helpers -----------------------------------------------------------


def feature_matrix(n: int, d: int, seed) -> np.ndarray:
    """N x d with a well separated, well conditioned spectrum (centered and uncentered) and large column means.

    The left factor is orthogonal to the ones vector, so the centered matrix has
    singular values geometric from 10 to 1 (10, 6, ...) and the uncentered one
    adds a leading value ~30 for the column means.
    """
    rng = np.random.default_rng(seed)
    r = d
    s = np.geomspace(10.0, 1.0, r) if r > 1 else np.array([10.0])
    if r > 1:
        s[1] = min(s[1], 6.0)
    mean = rng.standard_normal(d)
    mean *= 30.0 / (np.linalg.norm(mean) * np.sqrt(n))
    mean += 5.0  # every column mean far from zero: centering cancels a lot
    return planted(n, d, s, rng, column_offset=mean, centered_basis=True)


def split_rows(n: int, cuts) -> list[slice]:
    edges = [0, *sorted(set(c for c in cuts if 0 < c < n)), n]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


def random_tree_merge(accs: list, rng: np.random.Generator):
    """Merge a list of accumulators pairwise in a random tree (random pairs, random direction)."""
    accs = list(accs)
    while len(accs) > 1:
        i, j = rng.choice(len(accs), size=2, replace=False)
        merged = accs[i].merge(accs[j])
        assert merged is accs[i]
        accs = [a for t, a in enumerate(accs) if t not in (i, j)] + [merged]
    return accs[0]


@st.composite
def split_cases(draw, max_d: int = 10):
    seed = draw(seeds)
    d = draw(st.integers(1, max_d))
    n = draw(st.integers(d + 2, 70))
    cuts = draw(st.lists(st.integers(1, n - 1), max_size=8))
    merge_seed = draw(seeds)
    return n, d, seed, split_rows(n, cuts), merge_seed


def gram_stats_by_shards(F, slices, merge_seed) -> GramStats:
    shards = [GramAccumulator().update(F[sl]) for sl in slices]
    return random_tree_merge(shards, np.random.default_rng(merge_seed)).finalize()


def gram_stats_sequential(F, slices) -> GramStats:
    acc = GramAccumulator()
    for sl in slices:
        acc.update(F[sl])
    return acc.finalize()


def _check_gram(stats: GramStats, F: np.ndarray):
    n, d = F.shape
    assert stats.n_samples == n
    assert stats.n_features == d
    np.testing.assert_allclose(stats.mean, F.mean(axis=0), rtol=1e-12, atol=1e-14)
    for center in (False, True):
        Fc = centered(F, center)
        assert rel_err(stats.gram(center), Fc.T @ Fc) <= 1e-10
        np.testing.assert_allclose(stats.total_energy(center), np.sum(Fc**2), rtol=1e-10)
    assert np.array_equal(stats.scatter, stats.scatter.T)


# --- GramAccumulator -----------------------------------------------------------------------


@SETTINGS
@given(split_cases())
def test_gram_stats_any_split_any_merge_order(case):
    n, d, seed, slices, merge_seed = case
    F = feature_matrix(n, d, seed)
    _check_gram(gram_stats_sequential(F, slices), F)
    _check_gram(gram_stats_by_shards(F, slices, merge_seed), F)


@SETTINGS
@given(split_cases())
def test_pvector_from_stats_matches_dense(case):
    n, d, seed, slices, merge_seed = case
    F = feature_matrix(n, d, seed)
    stats = gram_stats_by_shards(F, slices, merge_seed)
    for center in (False, True):
        dense = pvector(F, center=center, method="exact")
        p = pvector_from_stats(stats, center=center)
        assert p.u is None
        assert p.method == "gram-stream"
        assert p.centered is center
        assert (p.n_samples, p.n_features) == (n, d)
        np.testing.assert_allclose(p.singular_values, dense.singular_values, rtol=1e-9)
        np.testing.assert_allclose(p.total_energy, dense.total_energy, rtol=1e-10)
        # v matches up to sign ...
        assert unit_angle(p.v, dense.v) < 1e-6
        if not center:
            # ... and uncentered, sum(u) = N mu^T v / sigma decides the sign without u
            np.testing.assert_allclose(p.v, dense.v, rtol=0, atol=1e-8)
        # the second pass gives u (sign rule included) equal to the dense P-vector
        mean = stats.mean if center else None
        full = with_left_vector(p, (F[sl] for sl in slices), mean=mean)
        np.testing.assert_allclose(full.u, dense.u, rtol=0, atol=1e-8)
        np.testing.assert_allclose(full.v, dense.v, rtol=0, atol=1e-8)
        np.testing.assert_allclose(full.singular_values, p.singular_values, rtol=0, atol=0)
        assert angle(full, dense) < 1e-6


def test_with_left_vector_needs_mean_when_centered():
    F = feature_matrix(30, 4, 0)
    stats = GramAccumulator().update(F).finalize()
    p = pvector_from_stats(stats, center=True)
    with pytest.raises(deepspan.InputError, match="mean=stats.mean"):
        with_left_vector(p, [F])


def test_with_left_vector_checks_sample_count():
    F = feature_matrix(30, 4, 0)
    stats = GramAccumulator().update(F).finalize()
    p = pvector_from_stats(stats)
    with pytest.raises(deepspan.SampleMismatchError, match="29 samples.*30"):
        with_left_vector(p, [F[:10], F[10:29]])
    with pytest.raises(deepspan.InputError, match="5 features"):
        with_left_vector(p, [np.hstack([F, F[:, :1]])])


def test_merge_with_empty_accumulators_is_a_no_op():
    F = feature_matrix(40, 5, 1)
    a = GramAccumulator().update(F[:25])
    a.merge(GramAccumulator())
    b = GramAccumulator().merge(a).update(F[25:])
    empty = GramAccumulator().update(np.zeros((0, 5)))
    b.merge(empty)
    _check_gram(b.finalize(), F)


def test_integer_and_float32_batches_are_accumulated_in_float64():
    rng = np.random.default_rng(2)
    Fi = rng.integers(-50, 200, size=(60, 7))
    stats = GramAccumulator().update(Fi[:13]).update(Fi[13:].astype(np.int32)).finalize()
    _check_gram(stats, Fi.astype(np.float64))
    F32 = feature_matrix(60, 7, 3).astype(np.float32)
    stats32 = GramAccumulator().update(F32[:20]).update(F32[20:]).finalize()
    assert stats32.scatter.dtype == np.float64
    _check_gram(stats32, F32.astype(np.float64))


# --- CrossGramAccumulator ------------------------------------------------------------------


def two_feature_sets(n: int, da: int, db: int, seed, theta_deg: float):
    """A (n x da) and B (n x db) on the same samples whose P-vectors (centered and not) are
    about theta_deg apart; both have large column means and well separated spectra."""
    rng = np.random.default_rng(seed)
    Q = orthonormal(n, 3, rng, orthogonal_to_ones=True)
    t = np.radians(theta_deg)
    ua, w = Q[:, 0], Q[:, 1]
    ub = np.cos(t) * ua + np.sin(t) * w
    extra = Q[:, 2]

    def build(u, dd, sigma):
        V = orthonormal(dd, 2, rng)
        mean = 2.0 + rng.standard_normal(dd)
        mean *= 3.0 / np.linalg.norm(mean) / np.sqrt(n)  # the mean direction: smaller than sigma_1
        noise = 1e-2 * rng.standard_normal((n, dd))
        return sigma * np.outer(u, V[:, 0]) + 0.3 * sigma * np.outer(extra, V[:, 1]) + noise + mean

    return build(ua, da, 10.0), build(ub, db, 7.0)


@st.composite
def cross_cases(draw):
    seed = draw(seeds)
    n = draw(st.integers(8, 60))
    da = draw(st.integers(2, 9))
    db = draw(st.integers(2, 9).filter(lambda x: x != da))
    theta = draw(st.floats(15.0, 80.0))
    cuts = draw(st.lists(st.integers(1, n - 1), max_size=6))
    return n, da, db, seed, theta, split_rows(n, cuts), draw(seeds)


def _check_cross(stats: CrossGramStats, A, B):
    _check_gram(stats.a, A)
    _check_gram(stats.b, B)
    for center in (False, True):
        Ac, Bc = centered(A, center), centered(B, center)
        assert rel_err(stats.cross_gram(center), Ac.T @ Bc) <= 1e-10


@SETTINGS
@given(cross_cases())
def test_cross_gram_any_split_any_merge_order(case):
    n, da, db, seed, theta, slices, merge_seed = case
    A, B = two_feature_sets(n, da, db, seed, theta)
    seq = CrossGramAccumulator()
    for sl in slices:
        seq.update(A[sl], B[sl])
    assert seq.n_samples == n
    shards = [CrossGramAccumulator().update(A[sl], B[sl]) for sl in slices]
    merged = random_tree_merge(shards, np.random.default_rng(merge_seed))
    for acc in (seq, merged):
        stats = acc.finalize()
        _check_cross(stats, A, B)
        for center in (False, True):
            expected = angle(pvector(A, center=center), pvector(B, center=center))
            got = pvector_angle_from_stats(stats, center=center)
            assert abs(got - expected) < 1e-6, (center, got, expected)
            assert 0.0 <= got <= 90.0


def test_cross_angle_is_sign_and_order_invariant():
    A, B = two_feature_sets(50, 4, 7, 9, 33.0)
    s_ab = CrossGramAccumulator().update(A, B).finalize()
    s_ba = CrossGramAccumulator().update(B, A).finalize()
    s_neg = CrossGramAccumulator().update(A, -B).finalize()
    for center in (False, True):
        ref = angle(pvector(A, center=center), pvector(B, center=center))
        assert 20.0 < ref < 50.0  # the construction did what it says
        for s in (s_ab, s_ba, s_neg):
            assert abs(pvector_angle_from_stats(s, center=center) - ref) < 1e-6


def test_cross_angle_of_identical_pvectors_is_near_zero():
    # B = A Q has the same P-vector as A. The streamed angle comes from a cosine, so it cannot
    # resolve angles below ~2e-6 degrees (arccos(1 - eps)); it must still be at that floor.
    rng = np.random.default_rng(21)
    A = planted(200, 20, np.geomspace(10.0, 1.0, 20), rng) + 3.0
    Q = orthonormal(20, 20, rng)
    for B in (A, A @ Q):
        stats = CrossGramAccumulator().update(A, B).finalize()
        for center in (False, True):
            assert 0.0 <= pvector_angle_from_stats(stats, center=center) < 1e-5


def test_cross_merge_into_empty_and_with_empty():
    A, B = two_feature_sets(40, 3, 5, 4, 45.0)
    acc = CrossGramAccumulator().merge(CrossGramAccumulator().update(A[:17], B[:17]))
    acc.merge(CrossGramAccumulator())
    acc.update(A[17:], B[17:])
    _check_cross(acc.finalize(), A, B)


# --- torch batches -------------------------------------------------------------------------


def test_torch_batches_give_same_stats_as_numpy():
    torch = pytest.importorskip("torch")
    F = feature_matrix(64, 6, 12)
    slices = split_rows(64, [5, 20, 21, 50])
    ref = gram_stats_sequential(F, slices)
    acc = GramAccumulator()
    for sl in slices:
        acc.update(torch.from_numpy(F[sl].copy()))
    stats = acc.finalize()
    assert isinstance(stats.scatter, np.ndarray) and stats.scatter.dtype == np.float64
    assert stats.n_samples == 64
    np.testing.assert_allclose(stats.mean, ref.mean, rtol=1e-13, atol=1e-14)
    assert rel_err(stats.scatter, ref.scatter) <= 1e-12
    _check_gram(stats, F)
    p_t = pvector_from_stats(stats)
    p_n = pvector_from_stats(ref)
    np.testing.assert_allclose(p_t.v, p_n.v, rtol=0, atol=1e-10)
    np.testing.assert_allclose(p_t.singular_values, p_n.singular_values, rtol=1e-12)


def test_float32_torch_batches_match_numpy_float32():
    torch = pytest.importorskip("torch")
    F32 = feature_matrix(50, 5, 13).astype(np.float32)
    ref = GramAccumulator().update(F32[:30]).update(F32[30:]).finalize()
    stats = GramAccumulator().update(torch.from_numpy(F32[:30].copy())).update(torch.from_numpy(F32[30:].copy())).finalize()
    assert rel_err(stats.scatter, ref.scatter) <= 1e-12
    np.testing.assert_allclose(stats.mean, ref.mean, rtol=1e-13)


@pytest.mark.parametrize("order", ["numpy_first", "torch_first", "alternating"])
def test_mixed_numpy_and_torch_batches(order):
    torch = pytest.importorskip("torch")
    F = feature_matrix(48, 5, 14)
    slices = split_rows(48, [10, 17, 30, 41])
    kinds = {
        "numpy_first": ["np", "np", "t", "t", "t"],
        "torch_first": ["t", "t", "np", "np", "np"],
        "alternating": ["np", "t", "np", "t", "np"],
    }[order]
    acc = GramAccumulator()
    for sl, kind in zip(slices, kinds):
        acc.update(F[sl] if kind == "np" else torch.from_numpy(F[sl].copy()))
    stats = acc.finalize()
    _check_gram(stats, F)
    # merging a torch-fed accumulator into a numpy-fed one and vice versa
    a_np = GramAccumulator().update(F[:20])
    a_t = GramAccumulator().update(torch.from_numpy(F[20:].copy()))
    _check_gram(a_np.merge(a_t).finalize(), F)
    b_np = GramAccumulator().update(F[20:])
    b_t = GramAccumulator().update(torch.from_numpy(F[:20].copy()))
    _check_gram(b_t.merge(b_np).finalize(), F)


def test_cross_gram_with_torch_and_mixed_batches():
    torch = pytest.importorskip("torch")
    A, B = two_feature_sets(45, 4, 6, 15, 60.0)
    acc = CrossGramAccumulator()
    acc.update(A[:10], B[:10])  # numpy
    acc.update(torch.from_numpy(A[10:25].copy()), torch.from_numpy(B[10:25].copy()))  # torch
    acc.update(torch.from_numpy(A[25:].copy()), B[25:])  # mixed within one update
    stats = acc.finalize()
    _check_cross(stats, A, B)
    for center in (False, True):
        expected = angle(pvector(A, center=center), pvector(B, center=center))
        assert abs(pvector_angle_from_stats(stats, center=center) - expected) < 1e-6


def test_with_left_vector_accepts_torch_batches():
    torch = pytest.importorskip("torch")
    F = feature_matrix(40, 5, 16)
    stats = GramAccumulator().update(F).finalize()
    for center in (False, True):
        p = pvector_from_stats(stats, center=center)
        full = with_left_vector(p, [torch.from_numpy(F[:15].copy()), F[15:]], mean=stats.mean)
        np.testing.assert_allclose(full.u, pvector(F, center=center, method="exact").u, rtol=0, atol=1e-8)


# --- errors --------------------------------------------------------------------------------


def test_mismatched_batch_widths_raise():
    acc = GramAccumulator().update(np.ones((4, 3)) + np.eye(4, 3))
    with pytest.raises(deepspan.InputError, match=r"batch has 5 features but this accumulator has seen 3"):
        acc.update(np.ones((4, 5)))
    other = GramAccumulator().update(np.ones((2, 2)))
    with pytest.raises(deepspan.InputError, match=r"2 features but this accumulator has seen 3"):
        acc.merge(other)
    # the failed calls left the statistics untouched
    assert acc.n_samples == 4 and acc.n_features == 3


def test_cross_mismatched_widths_raise():
    acc = CrossGramAccumulator().update(np.ones((4, 3)), np.ones((4, 2)))
    with pytest.raises(deepspan.InputError, match=r"a_batch has 4 features but this accumulator has seen 3"):
        acc.update(np.ones((2, 4)), np.ones((2, 2)))
    with pytest.raises(deepspan.InputError, match=r"b_batch has 3 features but this accumulator has seen 2"):
        acc.update(np.ones((2, 3)), np.ones((2, 3)))
    assert acc.n_samples == 4


def test_cross_mismatched_batch_sizes_raise():
    acc = CrossGramAccumulator()
    with pytest.raises(deepspan.SampleMismatchError, match=r"a_batch has 5 samples but b_batch has 4.*same samples"):
        acc.update(np.ones((5, 3)), np.ones((4, 2)))
    assert acc.n_samples == 0


def test_prepare_batch_is_the_public_batch_check():
    from deepspan.linalg import prepare_batch

    x = prepare_batch(np.arange(6, dtype=np.int32).reshape(3, 2), "X")
    assert isinstance(x, np.ndarray) and x.dtype == np.float64 and x.tolist() == [[0, 1], [2, 3], [4, 5]]
    assert prepare_batch(np.zeros((0, 4))).shape == (0, 4)  # an empty batch passes (it adds nothing)
    assert not prepare_batch(np.zeros((3, 2))).any()  # an all-zero batch is a valid batch
    with pytest.raises(deepspan.InputError, match="X has no feature columns"):
        prepare_batch(np.zeros((3, 0)), "X")
    with pytest.raises(deepspan.InputError, match="X must be a 2-D"):
        prepare_batch(np.zeros(3), "X")
    bad = np.ones((4, 3))
    bad[2, 1] = np.inf
    with pytest.raises(deepspan.InputError, match=r"X contains 1 non-finite value.*row 2, column 1"):
        prepare_batch(bad, "X")
    torch = pytest.importorskip("torch")
    t = torch.ones(3, 2, dtype=torch.float32)
    out = prepare_batch(t)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64 and out.device == t.device
    with pytest.raises(deepspan.InputError, match="X has no feature columns"):
        prepare_batch(torch.ones(3, 0), "X")
    with pytest.raises(deepspan.InputError, match=r"X contains 1 non-finite value.*row 2, column 1"):
        prepare_batch(torch.as_tensor(bad), "X")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_batch_raises(bad):
    x = np.arange(24, dtype=np.float64).reshape(6, 4)
    x[2, 1] = bad
    x[4, 3] = bad
    acc = GramAccumulator()
    with pytest.raises(deepspan.InputError, match=r"2 non-finite.*row 2, column 1"):
        acc.update(x)
    assert acc.n_samples == 0
    cross = CrossGramAccumulator()
    with pytest.raises(deepspan.InputError, match=r"b_batch contains 2 non-finite"):
        cross.update(np.ones((6, 2)), x)


def test_nonfinite_torch_batch_raises():
    torch = pytest.importorskip("torch")
    x = torch.ones(5, 3)
    x[3, 2] = float("nan")
    with pytest.raises(deepspan.InputError, match=r"1 non-finite value.*1 NaN.*row 3, column 2"):
        GramAccumulator().update(x)


def test_bad_batch_shapes_raise():
    with pytest.raises(deepspan.InputError, match="2-D"):
        GramAccumulator().update(np.ones(5))
    with pytest.raises(deepspan.InputError, match="2-D"):
        GramAccumulator().update(np.ones((2, 3, 4)))
    with pytest.raises(deepspan.InputError, match="complex"):
        GramAccumulator().update(np.ones((3, 2), dtype=complex))


def test_finalize_of_empty_accumulator_raises():
    with pytest.raises(deepspan.InputError, match="no samples"):
        GramAccumulator().finalize()
    with pytest.raises(deepspan.InputError, match="no samples"):
        GramAccumulator().update(np.zeros((0, 3))).finalize()
    with pytest.raises(deepspan.InputError, match="no samples"):
        CrossGramAccumulator().finalize()


def test_pvector_from_stats_rejects_zero_and_wrong_type():
    stats = GramAccumulator().update(np.zeros((5, 3))).finalize()
    with pytest.raises(deepspan.InputError, match="all zero"):
        pvector_from_stats(stats)
    const = GramAccumulator().update(np.full((5, 3), 2.0)).finalize()
    with pytest.raises(deepspan.InputError, match="all zero after centering"):
        pvector_from_stats(const, center=True)
    with pytest.raises(deepspan.InputError, match="GramStats"):
        pvector_from_stats(np.eye(3))
