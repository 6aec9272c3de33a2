"""Rank statistics of the reproduction: Spearman's rho (one NaN rule), the partial Spearman correlation,
bootstrap intervals, Kendall's tau and a permutation p-value. Pure numpy/scipy; every function is seeded
where it draws.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["spearman", "rank_pearson", "partial_spearman", "rank_residuals", "bootstrap_spearman",
           "bootstrap_partial_spearman", "bootstrap_indices", "percentile_ci", "kendall", "permutation_p", "CI_LEVEL"]

CI_LEVEL = 0.95


def spearman(x: Any, y: Any) -> float:
    """Spearman rank correlation of two equally long sequences (average ranks for ties).

    NaN when it is undefined: fewer than two points, a non-finite value, or a constant side.
    """
    from scipy.stats import rankdata

    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    if a.shape != b.shape or a.size < 2 or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return float("nan")
    ra, rb = rankdata(a), rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float(np.sqrt((ra @ ra) * (rb @ rb)))
    return float(ra @ rb / den) if den > 0 else float("nan")


def _ranks(a: np.ndarray) -> np.ndarray:
    """Ranks along the last axis, ties averaged (vectorised over leading axes)."""
    from scipy.stats import rankdata

    return rankdata(a, axis=-1)


def rank_pearson(ra: np.ndarray, rb: np.ndarray) -> np.ndarray:
    """Pearson correlation along the last axis (NaN where either row is constant)."""
    ra = ra - ra.mean(axis=-1, keepdims=True)
    rb = rb - rb.mean(axis=-1, keepdims=True)
    num = (ra * rb).sum(axis=-1)
    den = np.sqrt((ra * ra).sum(axis=-1) * (rb * rb).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = num / den
    return np.where(den > 0, r, np.nan)


def rank_residuals(r: np.ndarray, rz: np.ndarray) -> np.ndarray:
    """Residuals of the least-squares fit r ~ a + b rz along the last axis (vectorised over leading axes).

    With r and rz centered: res = r - (<r, rz> / <rz, rz>) rz; where rz is constant the slope is 0 and
    the residual is the centered r (regressing on a constant regressor only removes the mean).
    """
    r = np.asarray(r, float)
    rz = np.asarray(rz, float)
    r = r - r.mean(axis=-1, keepdims=True)
    rz = rz - rz.mean(axis=-1, keepdims=True)
    szz = (rz * rz).sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = np.where(szz > 0, (r * rz).sum(axis=-1, keepdims=True) / np.where(szz > 0, szz, 1.0), 0.0)
    return r - beta * rz


def _partial_rows(rx: np.ndarray, ry: np.ndarray, rz: np.ndarray) -> np.ndarray:
    """Partial correlation along the last axis from ranks; NaN where a residual vanishes (up to rounding)."""
    ex, ey = rank_residuals(rx, rz), rank_residuals(ry, rz)
    tol = 1e-9 * rx.shape[-1] ** 2   # residual norms of ranks are O(n^1.5); round-off is far below this
    tiny = (np.sqrt((ex * ex).sum(axis=-1)) <= tol) | (np.sqrt((ey * ey).sum(axis=-1)) <= tol)
    return np.where(tiny, np.nan, rank_pearson(ex, ey))


def partial_spearman(x: Any, y: Any, z: Any) -> float:
    """Rank-based partial correlation of x and y controlling for z.

    The ranks of x and of y (ties averaged) are each residualised on the ranks of z by least squares
    with an intercept; the result is the Pearson correlation of the two residual vectors. It equals
    (r_xy - r_xz r_yz) / sqrt((1 - r_xz^2)(1 - r_yz^2)) with r the Spearman correlations, and it is
    invariant under any strictly increasing transform of x, y or z (e.g. z = width or log width give
    the same number) and under a common permutation of the items. Where z is constant it equals
    :func:`spearman`. NaN when undefined: fewer than three points, a non-finite value, a mismatch of
    lengths, or a residual that is identically 0 (x or y constant, or a monotone function of z).
    """
    a, b, c = (np.asarray(v, dtype=float) for v in (x, y, z))
    if not (a.shape == b.shape == c.shape) or a.ndim != 1 or a.size < 3 or not all(
            np.all(np.isfinite(v)) for v in (a, b, c)):
        return float("nan")
    return float(_partial_rows(_ranks(a), _ranks(b), _ranks(c)))


def bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """The resampling index matrix ``default_rng(seed).integers(0, n, (n_boot, n))`` shared by the bootstraps:
    the same seed resamples the same members for every statistic."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def bootstrap_spearman(x: Any, y: Any, n_boot: int, seed: int) -> np.ndarray:
    """Spearman's rho of ``n_boot`` resamples of the pairs (x_i, y_i) drawn with replacement.

    One index matrix :func:`bootstrap_indices`; ranks are taken within each resample (ties, including
    repeated members, averaged). Degenerate resamples (a constant column) give NaN.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    if n == 0 or n_boot < 1:
        return np.full(max(n_boot, 0), np.nan)
    idx = bootstrap_indices(n, n_boot, seed)
    return rank_pearson(_ranks(x[idx]), _ranks(y[idx]))


def bootstrap_partial_spearman(x: Any, y: Any, z: Any, n_boot: int, seed: int) -> np.ndarray:
    """:func:`partial_spearman` of ``n_boot`` resamples of the triples (x_i, y_i, z_i) drawn with replacement.

    The same index matrix as :func:`bootstrap_spearman` with the same seed (:func:`bootstrap_indices`);
    ranks and the regression on the ranks of z are recomputed within each resample (vectorised);
    a resample in which z is constant falls back to Spearman's rho, one in which a residual vanishes
    gives NaN.
    """
    x, y, z = np.asarray(x, float), np.asarray(y, float), np.asarray(z, float)
    n = len(x)
    if n == 0 or n_boot < 1:
        return np.full(max(n_boot, 0), np.nan)
    idx = bootstrap_indices(n, n_boot, seed)
    return _partial_rows(_ranks(x[idx]), _ranks(y[idx]), _ranks(z[idx]))


def percentile_ci(boot: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    """The (1-level)/2 and (1+level)/2 percentiles of the finite bootstrap values."""
    b = np.asarray(boot, float)
    b = b[np.isfinite(b)]
    if b.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(b, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def kendall(x: Any, y: Any) -> tuple[float, float]:
    """Kendall's tau-b and its two-sided p-value (``scipy.stats.kendalltau``)."""
    from scipy.stats import kendalltau

    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    r = kendalltau(x, y)
    return float(r.statistic), float(r.pvalue)


def permutation_p(x: Any, y: Any, n_perm: int = 10_000, seed: int = 0) -> float:
    """Two-sided permutation p-value of Spearman's rho: share of seeded shuffles of ``y`` with |rho| >= |rho_obs|
    (the observed order counted once, so p >= 1 / (n_perm + 1))."""
    from scipy.stats import rankdata

    a, b = rankdata(np.asarray(x, float)), rankdata(np.asarray(y, float))
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a @ a) * (b @ b)))
    if den == 0 or a.size < 3:
        return float("nan")
    obs = abs(float(a @ b)) / den
    rng = np.random.default_rng(seed)
    perms = np.argsort(rng.random((n_perm, b.size)), axis=1)
    null = np.abs(b[perms] @ a) / den
    return float((1 + np.sum(null >= obs - 1e-12)) / (n_perm + 1))
