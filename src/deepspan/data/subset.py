"""Seeded, class-balanced probe subsets that keep the parent's sample ids."""

from __future__ import annotations

import numpy as np

from deepspan.data.dataset import Dataset
from deepspan.errors import InputError

__all__ = ["probe_indices", "probe_subset", "balanced_capacity"]


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
