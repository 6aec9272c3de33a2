"""Seeded, class-balanced probe subsets that keep the parent's sample ids; seeded, stratified hold-outs."""

from __future__ import annotations

import numpy as np

from deepspan.data.dataset import Dataset
from deepspan.errors import InputError

__all__ = ["probe_indices", "probe_subset", "balanced_capacity", "holdout_indices"]


def balanced_capacity(ds: Dataset) -> int:
    """The largest ``n`` a balanced :func:`probe_subset` of ``ds`` can draw.

    With k classes and the smallest class count m, n = k m + r gives every class m samples and the r
    smallest labels one more; that works while those r classes hold more than m samples each.
    """
    _, counts = np.unique(np.asarray(ds.y), return_counts=True)
    if len(counts) == 0:
        return 0
    m = int(counts.min())
    # quota n // k = m for every class, plus one extra for the n % k smallest labels that can take it
    extra = 0
    for c in counts:  # classes in label order: the remainder goes to the smallest labels first
        if c > m:
            extra += 1
        else:
            break
    return len(counts) * m + extra


def probe_indices(ds: Dataset, n: int, seed: int = 0, balanced: bool = True) -> np.ndarray:
    """Sorted row indices of the probe subset chosen by :func:`probe_subset`."""
    N = len(ds)
    if not isinstance(n, (int, np.integer)) or n <= 0:
        raise InputError(f"n must be a positive integer, got {n!r}")
    if n > N:
        raise InputError(f"asked for {n} probe samples but {ds.name} has only {N}")
    rng = np.random.default_rng(seed)
    if not balanced:
        return np.sort(rng.choice(N, size=int(n), replace=False))
    y = np.asarray(ds.y)
    classes, counts = np.unique(y, return_counts=True)
    k = len(classes)
    quota = np.full(k, n // k)
    quota[: n % k] += 1  # the remainder goes to the smallest labels, one each
    short = [(int(c), int(q), int(m)) for c, q, m in zip(classes, quota, counts) if q > m]
    if short:
        c, q, m = short[0]
        raise InputError(
            f"a balanced probe of {n} needs {q} samples of class {c} but {ds.name} has {m}; "
            "ask for fewer samples or pass balanced=False"
        )
    picks = [rng.choice(np.flatnonzero(y == c), size=int(q), replace=False) for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picks))


def probe_subset(ds: Dataset, n: int, seed: int = 0, balanced: bool = True) -> Dataset:
    """A subset of ``n`` samples, drawn with ``numpy.random.default_rng(seed)``.

    Balanced (default): each of the k classes present gets ``n // k`` samples
    and the ``n % k`` smallest labels one more, drawn without replacement within
    the class; a class with too few samples raises. Unbalanced: ``n`` rows
    uniformly without replacement. Rows keep the parent's order (sorted by
    original index) and the parent's ids, so the same seed gives the same ids
    and the same :attr:`Dataset.sample_hash`.
    """
    idx = probe_indices(ds, n, seed=seed, balanced=balanced)
    return Dataset(ds.name, ds.X[idx], ds.y[idx], ds.ids[idx])


def holdout_indices(y: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted row indices of a seeded, stratified hold-out: ``round(fraction * n_c)`` rows of each class c.

    Classes are visited in label order; one ``numpy.random.default_rng(seed)`` permutes each class's rows
    (in file order) and the first ``round(fraction * n_c)`` of the permutation are held out, but never all
    of a class: a class keeps at least one training row. The same labels, fraction and seed give the
    same rows. ``fraction`` must lie strictly between 0 and 1.
    """
    if not 0.0 < float(fraction) < 1.0:
        raise InputError(f"the held-out fraction must lie strictly between 0 and 1, got {fraction}")
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    picks = []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        k = min(int(round(float(fraction) * len(rows))), len(rows) - 1)
        picks.append(rng.permutation(rows)[:k])
    return np.sort(np.concatenate(picks)) if picks else np.zeros(0, dtype=np.int64)
