"""deepspan.measures.significance: permutation p-values, bootstrap intervals, calibrated scores.

What is checked, with values:

* calibration of the test: under independence (Gaussian X, Y, linear CKA, 200 data sets) the p-values are
  uniform (Kolmogorov-Smirnov) and at most 6% fall below 0.05;
* power at the floor: for Y = X Q + 0.01 noise, p == 1 / (n_perm + 1) exactly, for a similarity
  (linear CKA), a distance (Procrustes: extreme = low) and an angle (P-vector angle);
* coverage of the 95% percentile bootstrap interval against a known population value: linear CKA of a
  planted Gaussian model (population CKA = ||Sxy||^2 / (||Sxx|| ||Syy||)) and the uncentered P-vector angle
  of a planted rank-one model (population angle arccos(3 * 2 / sqrt(10 * 5))); 200 simulations each are
  ``slow``, the default run has a 40-simulation version;
* determinism: the same seed gives the same numbers and draws, another seed other draws;
* the fast paths equal the generic route on the same draws, reconstructed here from the documented
  generators (``default_rng([seed, 0])`` for permutations, ``default_rng([seed, 1])`` for resamples):
  the float32 linear-CKA null (1e-5 relative), the multinomial-weights linear-CKA bootstrap (1e-10), the
  permuted-u P-vector null (1e-8 degrees), and the re-prepared Procrustes null;
* ``groups``: permutations and resamples move whole blocks (contiguous and interleaved labels), n_blocks;
* every measure of MEASURES (and two with other parameters) gives its ``compare`` value, a p-value in
  [1 / (n_perm + 1), 1], an ordered interval and the calibrated score of the stated formula;
* the calibrated score: ~1 for strong dependence, ~0 under independence;
* bad settings raise InputError (SampleMismatchError for different row counts) naming the fix.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from deepspan.errors import InputError, SampleMismatchError
from deepspan.measures.alignment import linear_cka
from deepspan.measures.compare import MEASURES
from deepspan.measures.pvector import pvector_angle
from deepspan.measures.shape import procrustes_steps
from deepspan.measures.significance import Significance, significance


# ------------------------------------------------------------------ helpers
def independent(seed: int, n: int = 300, dx: int = 10, dy: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, dx)), rng.standard_normal((n, dy))


def strongly_dependent(seed: int = 0, n: int = 200, d: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """X with one clearly dominant direction (so the P-vector is determined); Y = X Q + 0.01 noise, Q orthogonal."""
    rng = np.random.default_rng(seed)
    scales = np.r_[5.0, np.linspace(1.5, 0.5, d - 1)]
    X = rng.standard_normal((n, d)) * scales
    Q = np.linalg.qr(rng.standard_normal((d, d)))[0]
    return X, X @ Q + 0.01 * rng.standard_normal((n, d))


def rank_one(seed: int, n: int = 300, da: int = 6, db: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """X = z a^T + noise, Y = z b^T + noise, ||a|| = 3, ||b|| = 2, noise sd 1 (a, b fixed, z and noise by seed)."""
    fixed = np.random.default_rng(7)
    a = fixed.standard_normal(da)
    b = fixed.standard_normal(db)
    a, b = 3 * a / np.linalg.norm(a), 2 * b / np.linalg.norm(b)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(n)
    return np.outer(z, a) + rng.standard_normal((n, da)), np.outer(z, b) + rng.standard_normal((n, db))


def block_members(groups: np.ndarray | None, n: int) -> list[np.ndarray]:
    """Rows of each block, blocks in order of first appearance (one row per block without groups)."""
    if groups is None:
        return [np.array([i]) for i in range(n)]
    _, first = np.unique(groups, return_index=True)
    return [np.flatnonzero(groups == groups[f]) for f in np.sort(first)]


def module_perms(seed: int, n_perm: int, n: int, groups: np.ndarray | None = None) -> np.ndarray:
    """The permutations significance() draws: block j takes the place of block order[j], position by position;
    row i of X meets row perm[i] of Y."""
    members = block_members(groups, n)
    order = np.argsort(np.random.default_rng([seed, 0]).random((n_perm, len(members))), axis=1)
    perms = np.empty((n_perm, n), dtype=np.int64)
    for k in range(n_perm):
        for j, target in enumerate(order[k]):
            perms[k, members[j]] = members[target]
    return perms


def module_resamples(seed: int, n_boot: int, n: int, groups: np.ndarray | None = None) -> list[np.ndarray]:
    """The row indices of every bootstrap resample significance() draws (whole blocks with replacement)."""
    members = block_members(groups, n)
    draws = np.random.default_rng([seed, 1]).integers(0, len(members), size=(n_boot, len(members)))
    return [np.concatenate([members[b] for b in d]) for d in draws]


def population_cka(L: np.ndarray, R: np.ndarray) -> float:
    Sxx = L.T @ L
    Sxy = Sxx @ R
    Syy = R.T @ Sxx @ R + np.eye(R.shape[1])
    return float(np.sum(Sxy**2) / (np.linalg.norm(Sxx) * np.linalg.norm(Syy)))


def planted_cka_model(d: int = 10, dy: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(123)
    scales = 2.0 * 2.0 ** (-np.arange(d) / 2)  # decaying column scales
    L = rng.standard_normal((d, d)) / np.sqrt(d) * scales[None, :]
    R = rng.standard_normal((d, dy)) / np.sqrt(d)
    return L, R


PVECTOR_TRUE = float(np.degrees(np.arccos(3 * 2 / np.sqrt((9 + 1) * (4 + 1)))))


def cka_coverage(n_sims: int, n_boot: int, base: int) -> float:
    L, R = planted_cka_model()
    true = population_cka(L, R)
    assert 0.5 < true < 0.8  # a value away from both ends of [0, 1]
    hits = 0
    for s in range(n_sims):
        rng = np.random.default_rng(base + s)
        X = rng.standard_normal((300, L.shape[0])) @ L
        Y = X @ R + rng.standard_normal((300, R.shape[1]))
        out = significance(X, Y, "linear_cka", n_perm=None, n_boot=n_boot, seed=s)
        hits += out.ci_low <= true <= out.ci_high
    return hits / n_sims


def pvector_coverage(n_sims: int, n_boot: int, base: int) -> float:
    hits = 0
    for s in range(n_sims):
        X, Y = rank_one(base + s)
        out = significance(X, Y, "pvector_angle", n_perm=None, n_boot=n_boot, seed=s)
        hits += out.ci_low <= PVECTOR_TRUE <= out.ci_high
    return hits / n_sims


# ------------------------------------------------------------------ calibration and power
def test_pvalues_uniform_under_independence():
    p = []
    for s in range(200):
        X, Y = independent(1000 + s)
        out = significance(X, Y, "linear_cka", n_perm=199, n_boot=None, seed=s)
        assert out.ci_low is None and out.ci_high is None and out.boot is None
        p.append(out.p_value)
    p = np.array(p)
    assert np.all(p >= 1 / 200) and np.all(p <= 1)
    assert np.allclose(p * 200, np.round(p * 200))  # multiples of 1 / (n_perm + 1)
    assert scipy.stats.kstest(p, "uniform").pvalue > 0.01
    assert np.mean(p < 0.05) <= 0.06


@pytest.mark.parametrize("measure", ["linear_cka", "procrustes", "pvector_angle"])
def test_strong_dependence_gives_the_smallest_pvalue(measure):
    X, Y = strongly_dependent()
    out = significance(X, Y, measure, n_perm=99, n_boot=None, seed=0)
    assert out.p_value == 1 / 100
    spec = MEASURES[measure]
    assert out.kind == spec.kind
    # the value is at the identity end, the null far from it
    assert abs(out.value - spec.identity) < 0.02 * (spec.range[1] - spec.range[0])
    if spec.kind == "similarity":
        assert out.value > out.null.max()
    else:
        assert out.value < out.null.min()


def test_pvalue_counts_draws_at_least_as_extreme():
    """p = (1 + #{null draws at least as extreme}) / (1 + n_perm), high for similarities, low for distances."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((60, 4))
    Y = X @ rng.standard_normal((4, 3)) * 0.15 + rng.standard_normal((60, 3))  # weak dependence: p inside (0, 1)
    for measure in ("linear_cka", "procrustes"):
        out = significance(X, Y, measure, n_perm=199, n_boot=None, seed=2)
        extreme = out.null >= out.value if out.kind == "similarity" else out.null <= out.value
        assert out.p_value == (1 + extreme.sum()) / 200
        assert 1 / 200 < out.p_value < 1
        assert out.null_mean == pytest.approx(out.null.mean(), rel=1e-12)
        assert out.null_sd == pytest.approx(out.null.std(ddof=1), rel=1e-12)


# ------------------------------------------------------------------ bootstrap coverage
def test_bootstrap_coverage_cheap():
    assert cka_coverage(40, 200, base=20_000) >= 0.8
    assert pvector_coverage(40, 120, base=40_000) >= 0.8  # every resample re-prepares two SVDs: fewer draws


@pytest.mark.slow
def test_bootstrap_coverage_linear_cka():
    assert cka_coverage(200, 300, base=10_000) >= 0.90


@pytest.mark.slow
def test_bootstrap_coverage_pvector_angle():
    assert pvector_coverage(200, 300, base=30_000) >= 0.90


def test_interval_is_the_percentile_interval_of_the_draws():
    X, Y = rank_one(3, n=120)
    for ci in (0.95, 0.8):
        out = significance(X, Y, "linear_cka", n_perm=None, n_boot=150, ci=ci, seed=1)
        alpha = (1 - ci) / 2
        assert (out.ci_low, out.ci_high) == tuple(np.quantile(out.boot, [alpha, 1 - alpha]))
        assert out.ci == ci and out.ci_method == "percentile" and out.n_boot == 150
        assert out.p_value is None and out.null is None and out.calibrated is None
    wide = significance(X, Y, "linear_cka", n_perm=None, n_boot=150, ci=0.95, seed=1)
    narrow = significance(X, Y, "linear_cka", n_perm=None, n_boot=150, ci=0.5, seed=1)
    assert wide.ci_low < narrow.ci_low < narrow.ci_high < wide.ci_high


# ------------------------------------------------------------------ determinism
@pytest.mark.parametrize("measure", ["linear_cka", "pvector_angle"])
def test_same_seed_same_numbers_other_seed_other_draws(measure):
    X, Y = rank_one(11, n=150)
    a = significance(X, Y, measure, n_perm=50, n_boot=40, seed=4)
    b = significance(X, Y, measure, n_perm=50, n_boot=40, seed=4)
    assert isinstance(a, Significance)
    assert a.as_dict() == b.as_dict()
    assert a == b
    assert np.array_equal(a.null, b.null) and np.array_equal(a.boot, b.boot)
    c = significance(X, Y, measure, n_perm=50, n_boot=40, seed=5)
    assert c.value == a.value and c.seed == 5
    assert not np.array_equal(a.null, c.null)
    assert not np.array_equal(a.boot, c.boot)
    assert "null" not in a.as_dict() and "boot" not in a.as_dict()
    assert float(a) == a.value


# ------------------------------------------------------------------ fast paths = generic route
def test_linear_cka_null_equals_recomputed_permutations():
    rng = np.random.default_rng(8)
    X = rng.standard_normal((200, 12)) * np.linspace(2, 0.5, 12)
    Y = X[:, :7] @ rng.standard_normal((7, 9)) * 0.3 + rng.standard_normal((200, 9))
    out = significance(X, Y, "linear_cka", n_perm=60, n_boot=None, seed=6)
    ref = np.array([linear_cka(X, Y[p]) for p in module_perms(6, 60, 200)])
    np.testing.assert_allclose(out.null, ref, rtol=1e-5, atol=0)
    assert out.value == linear_cka(X, Y)


def test_linear_cka_bootstrap_equals_explicit_resampling():
    rng = np.random.default_rng(9)
    X = rng.standard_normal((150, 6)) * np.linspace(2, 0.5, 6) + 3.0  # an offset: the centering must be redone
    Y = X @ rng.standard_normal((6, 5)) + rng.standard_normal((150, 5))
    out = significance(X, Y, "linear_cka", n_perm=None, n_boot=50, seed=2)
    ref = np.array([linear_cka(X[i], Y[i]) for i in module_resamples(2, 50, 150)])
    np.testing.assert_allclose(out.boot, ref, rtol=0, atol=1e-10)


def test_pvector_null_equals_recomputed_permutations():
    X, Y = rank_one(21, n=150)
    out = significance(X, Y, "pvector_angle", n_perm=40, n_boot=None, seed=3)
    ref = np.array([pvector_angle(X, Y[p]) for p in module_perms(3, 40, 150)])
    np.testing.assert_allclose(out.null, ref, rtol=0, atol=1e-8)
    assert out.value == pytest.approx(pvector_angle(X, Y), abs=1e-10)
    assert out.p_value == 1 / 41  # the planted angle (~32 degrees) is far below every null draw (~90)


def test_generic_route_reprepares_the_permuted_side():
    X, Y = rank_one(22, n=80)
    prepare, pair = procrustes_steps()
    out = significance(X, Y, "procrustes", n_perm=30, n_boot=20, seed=7)
    px = prepare(X)
    np.testing.assert_allclose(out.null, [pair(px, prepare(Y[p])) for p in module_perms(7, 30, 80)],
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out.boot, [pair(prepare(X[i]), prepare(Y[i])) for i in module_resamples(7, 20, 80)],
                               rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------ groups
@pytest.mark.parametrize("layout", ["contiguous", "interleaved"])
def test_groups_move_whole_blocks(layout):
    n_blocks, m = 100, 3
    if layout == "contiguous":
        groups = np.repeat(np.arange(n_blocks), m)  # rows 3b, 3b+1, 3b+2
        block, pos = groups, np.tile(np.arange(m), n_blocks)
    else:
        groups = np.tile(np.arange(n_blocks), m)  # rows b, b+100, b+200
        block, pos = groups, np.repeat(np.arange(m), n_blocks)
    rng = np.random.default_rng(12)
    c, d = rng.standard_normal((m, 6)), rng.standard_normal((m, 5))
    X = c[pos] + 0.5 * rng.standard_normal((n_blocks, 6))[block]
    Y = d[pos]  # depends only on the position within the block
    out = significance(X, Y, "linear_cka", n_perm=50, n_boot=30, seed=1, groups=groups)
    assert out.n_blocks == n_blocks
    # a permutation of whole blocks, position kept, leaves Y as it is: every draw equals the value
    assert np.all(out.null == out.null[0]) and out.null_sd < 1e-12
    assert abs(out.null[0] - out.value) <= 1e-5 * out.value
    assert out.p_value == 1.0
    # rows permuted one by one break the position structure: the same value is then extreme
    rows = significance(X, Y, "linear_cka", n_perm=50, n_boot=None, seed=1)
    assert rows.n_blocks == n_blocks * m and rows.p_value == 1 / 51 and rows.null_sd > 0
    # the exact draws: the permutations and resamples of blocks reconstructed here
    Z = Y + 0.3 * rng.standard_normal(Y.shape)
    out = significance(X, Z, "linear_cka", n_perm=40, n_boot=30, seed=2, groups=groups)
    perms = module_perms(2, 40, len(groups), groups)
    for p in perms:
        assert np.array_equal(groups[p][block_members(groups, len(groups))[0]],
                              np.full(m, groups[p][0]))  # block 0 lands inside one block
        assert np.array_equal(pos[p], pos)
    np.testing.assert_allclose(out.null, [linear_cka(X, Z[p]) for p in perms], rtol=1e-5, atol=0)
    np.testing.assert_allclose(out.boot, [linear_cka(X[i], Z[i]) for i in module_resamples(2, 30, len(groups), groups)],
                               rtol=0, atol=1e-10)


def test_groups_with_generic_measure_resample_blocks():
    groups = np.repeat(np.arange(30), 2)
    X, Y = rank_one(31, n=60)
    out = significance(X, Y, "pvector_angle", n_perm=20, n_boot=20, seed=0, groups=groups)
    assert out.n_blocks == 30
    np.testing.assert_allclose(out.null, [pvector_angle(X, Y[p]) for p in module_perms(0, 20, 60, groups)],
                               rtol=0, atol=1e-8)
    np.testing.assert_allclose(out.boot, [pvector_angle(X[i], Y[i]) for i in module_resamples(0, 20, 60, groups)],
                               rtol=0, atol=1e-8)


# ------------------------------------------------------------------ every measure
def small_pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((40, 6)) * np.linspace(2, 0.7, 6)
    Y = X[:, :5] + 0.3 * rng.standard_normal((40, 5))  # neuron-aligned, so maximum matching finds matches too
    return X, Y


SPECS = [(name, MEASURES[name]) for name in MEASURES] + [
    ("max_match(eps=0.5)", MEASURES["max_match"].with_params(eps=0.5)),
    ("principal_angle(k=2)", MEASURES["principal_angle"].with_params(k=2)),
]


@pytest.mark.parametrize("label,spec", SPECS, ids=[s[0] for s in SPECS])
def test_every_measure(label, spec):
    X, Y = small_pair()
    out = significance(X, Y, spec, n_perm=20, n_boot=20, seed=0)
    assert out.measure == spec.name and out.kind == spec.kind and out.n_blocks == 40
    assert np.isfinite(out.value)
    assert out.value == pytest.approx(spec(X, Y), rel=1e-12, abs=1e-14)
    assert 1 / 21 <= out.p_value <= 1
    assert out.null.shape == (20,) and out.boot.shape == (20,)
    assert np.all(np.isfinite(out.null)) and np.all(np.isfinite(out.boot))
    lo, hi = spec.range
    assert lo - 1e-9 <= out.ci_low <= out.ci_high <= hi + 1e-9
    assert np.isfinite(out.calibrated)
    assert out.calibrated == pytest.approx((out.value - out.null_mean) / (spec.identity - out.null_mean), rel=1e-12)
    # neuron-aligned data: every measure except the near-chance maximum match at eps = 0.25 beats its null
    if not (spec.name.startswith("max_match") and spec.params["eps"] == 0.25):
        assert out.p_value == 1 / 21 and out.calibrated > 0.2


def test_with_params_changes_the_measure():
    X, Y = small_pair()
    k2 = significance(X, Y, MEASURES["principal_angle"].with_params(k=2), n_perm=10, n_boot=None)
    k5 = significance(X, Y, "principal_angle", n_perm=10, n_boot=None)
    assert k2.value == pytest.approx(MEASURES["principal_angle"].with_params(k=2)(X, Y), rel=1e-12)
    assert k2.value != k5.value


# ------------------------------------------------------------------ calibrated score
def test_calibrated_near_one_for_strong_dependence():
    X, Y = strongly_dependent()
    out = significance(X, Y, "linear_cka", n_perm=99, n_boot=None)
    assert out.calibrated == pytest.approx((out.value - out.null_mean) / (1.0 - out.null_mean), rel=1e-12)
    assert 0.98 < out.calibrated <= 1.0
    dist = significance(X, Y, "procrustes", n_perm=99, n_boot=None)  # a distance: identity 0
    assert dist.calibrated == pytest.approx((dist.value - dist.null_mean) / (0.0 - dist.null_mean), rel=1e-12)
    assert 0.95 < dist.calibrated <= 1.0


@pytest.mark.parametrize("measure", ["linear_cka", "procrustes"])
def test_calibrated_near_zero_under_independence(measure):
    cal = [significance(*independent(2000 + s), measure, n_perm=99, n_boot=None, seed=s).calibrated
           for s in range(10)]
    assert np.all(np.abs(cal) < 0.2)
    assert abs(np.mean(cal)) < 0.1


# ------------------------------------------------------------------ bad input
X0, Y0 = independent(0, n=30, dx=4, dy=3)


@pytest.mark.parametrize("kwargs,message", [
    ({"n_perm": 0}, r"n_perm must be a positive number of draws \(e\.g\. 1000\), or None"),
    ({"n_perm": -1}, r"n_perm must be a positive number of draws \(e\.g\. 1000\), or None"),
    ({"n_perm": 2.5}, r"n_perm must be a positive number"),
    ({"n_perm": True}, r"n_perm must be a positive number"),
    ({"n_boot": 0}, r"n_boot must be a positive number of draws \(e\.g\. 1000\), or None"),
    ({"ci": 0}, r"ci must be a coverage strictly between 0 and 1 \(e\.g\. 0\.95\)"),
    ({"ci": 1}, r"ci must be a coverage strictly between 0 and 1"),
    ({"ci": 1.5}, r"ci must be a coverage strictly between 0 and 1"),
    ({"seed": -1}, r"seed must be a non-negative integer"),
    ({"groups": np.arange(29)}, r"groups must give one block label per row \(a 1-D array of 30\)"),
    ({"groups": np.zeros(30)}, r"give at least 2 blocks"),
    ({"groups": np.r_[np.zeros(10), np.ones(20)]}, r"same number of rows in every block \(here 10 to 20\)"),
    ({"measure": "linear_kca"}, r"unknown measure 'linear_kca'; did you mean linear_cka.*available: linear_cka"),
    ({"measure": "nonsense"}, r"unknown measure 'nonsense'; available: "),
], ids=["n_perm=0", "n_perm=-1", "n_perm=2.5", "n_perm=True", "n_boot=0", "ci=0", "ci=1", "ci=1.5", "seed=-1",
        "groups-length", "groups-one-block", "groups-unequal", "measure-typo", "measure-unknown"])
def test_bad_settings_raise_input_error_naming_the_fix(kwargs, message):
    with pytest.raises(InputError, match=message):
        significance(X0, Y0, **{"n_perm": 10, "n_boot": 10, **kwargs})


def test_different_row_counts_raise_sample_mismatch():
    with pytest.raises(SampleMismatchError, match="30"):
        significance(X0, Y0[:29], n_perm=10, n_boot=10)
    assert issubclass(SampleMismatchError, InputError)
