"""Rank statistics of the reproduction: Spearman's rho (one NaN rule), bootstrap intervals, Kendall's tau
and a permutation p-value. Pure numpy/scipy; every function is seeded where it draws.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["spearman", "rank_pearson", "bootstrap_spearman", "percentile_ci", "kendall", "permutation_p",
           "CI_LEVEL"]

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


def bootstrap_spearman(x: Any, y: Any, n_boot: int, seed: int) -> np.ndarray:
    """Spearman's rho of ``n_boot`` resamples of the pairs (x_i, y_i) drawn with replacement.

    One index matrix ``default_rng(seed).integers(0, n, (n_boot, n))``; ranks are taken within each
    resample (ties, including repeated members, averaged). Degenerate resamples (a constant
    column) give NaN.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    if n == 0 or n_boot < 1:
        return np.full(max(n_boot, 0), np.nan)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    return rank_pearson(_ranks(x[idx]), _ranks(y[idx]))


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
