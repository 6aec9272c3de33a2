"""Streaming float64 sufficient statistics: Gram and cross-Gram accumulators.

A P-vector, its spectrum and the angle between two P-vectors are functions of
second moments only, so they can be computed in one pass over the data,
batch by batch, without ever holding the feature matrix.

For a batch ``X_b`` (n_b x d) the accumulator keeps the count ``n``, the
column mean ``mu`` and the *centered* scatter ``S = sum_i (x_i - mu)(x_i - mu)^T``.
Two partial results are merged exactly with the pairwise update of Chan,
Golub and LeVeque (1979, "Updating formulae and a pairwise algorithm for
computing sample variances"):

    n   = n_a + n_b
    mu  = mu_a + (n_b / n) (mu_b - mu_a)
    S   = S_a + S_b + (n_a n_b / n) (mu_b - mu_a)(mu_b - mu_a)^T

The uncentered Gram matrix is recovered as ``F^T F = S + n mu mu^T`` (a sum
of two positive semi-definite terms, so no cancellation), and the centered one
is ``S`` itself, computed without ever subtracting two large Grams. The
cross-Gram of two feature sets on the same samples merges the same way with
``(n_a n_b / n) (delta_A)(delta_B)^T``.

Torch batches are accumulated in float64 on their own device (GPU batches stay
on the GPU) until :meth:`GramAccumulator.finalize` moves the d x d result to
numpy. This module does not import torch at module level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg

from deepspan.errors import InputError
from deepspan.linalg.checks import _describe_nonfinite, _convert_dtype

__all__ = [
    "GramStats",
    "GramAccumulator",
    "CrossGramStats",
    "CrossGramAccumulator",
    "ClassStats",
    "ClassStatsAccumulator",
    "top_eigh",
]


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _prepare_batch(batch: Any, name: str) -> Any:
    """Validate a batch and return it as float64 (numpy array or torch tensor on its device)."""
    if _is_torch(batch):
        import torch

        t = batch.detach()
        if t.ndim != 2:
            raise InputError(f"{name} must be a 2-D samples x features batch, got shape {tuple(t.shape)}.")
        if t.is_complex():
            raise InputError(f"{name} is complex; deepspan works with real features only.")
        t = t.to(torch.float64)
        if not bool(torch.isfinite(t).all()):
            raise InputError(_describe_nonfinite(t.cpu().numpy(), name))
        return t
    a = np.asarray(batch)
    if a.ndim != 2:
        raise InputError(
            f"{name} must be a 2-D samples x features batch, got shape {a.shape}; "
            f"reshape with batch.reshape(len(batch), -1)."
        )
    a = _convert_dtype(a, name).astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        raise InputError(_describe_nonfinite(a, name))
    return a


def _to_numpy64(x: Any) -> np.ndarray:
    if _is_torch(x):
        return x.detach().cpu().numpy().astype(np.float64, copy=False)
    return np.asarray(x, dtype=np.float64)


def _like(x: Any, ref: Any) -> Any:
    """Return ``x`` on the backend/device of ``ref``."""
    if _is_torch(ref):
        import torch

        if _is_torch(x):
            return x.to(device=ref.device, dtype=torch.float64)
        return torch.as_tensor(np.asarray(x, dtype=np.float64), device=ref.device)
    return _to_numpy64(x)


def _cross(a: Any, b: Any) -> Any:
    """a^T b for two row blocks. In torch, ``(b^T a)^T`` is used when b is narrow (much faster on CPU)."""
    if _is_torch(a) and b.shape[1] < a.shape[1]:
        return (b.T @ a).T
    return a.T @ b


def top_eigh(M: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``m`` eigenpairs of a symmetric PSD matrix, eigenvalues descending and clipped at 0.

    Uses LAPACK's ``evr`` driver with an index subset when only a few pairs of a
    large matrix are wanted.
    """
    n = M.shape[0]
    m = min(m, n)
    if m < n // 4:
        w, V = scipy.linalg.eigh(M, subset_by_index=[n - m, n - 1], driver="evr", check_finite=False)
    else:
        w, V = scipy.linalg.eigh(M, check_finite=False)
        w, V = w[n - m :], V[:, n - m :]
    w, V = w[::-1], V[:, ::-1]
    return np.clip(w, 0.0, None), np.ascontiguousarray(V)


@dataclass(frozen=True)
class GramStats:
    """Finalised second moments of a feature matrix F (N x d), float64.

    Attributes: ``n_samples`` (N), ``mean`` (column means, length d) and
    ``scatter`` (the centered scatter matrix (F - 1 mu^T)^T (F - 1 mu^T), d x d).
    """

    n_samples: int
    mean: np.ndarray
    scatter: np.ndarray

    @property
    def n_features(self) -> int:
        return int(self.mean.shape[0])

    def gram(self, center: bool = False) -> np.ndarray:
        """F_c^T F_c with F_c = F - 1 mu^T if ``center`` else F."""
        if center:
            return self.scatter
        return self.scatter + self.n_samples * np.outer(self.mean, self.mean)

    def total_energy(self, center: bool = False) -> float:
        """||F_c||_F^2 = trace(F_c^T F_c) = the sum of all squared singular values."""
        return float(np.trace(self.scatter) + (0.0 if center else self.n_samples * float(self.mean @ self.mean)))

    def spectrum(self, center: bool = False, m: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``m`` singular values of F_c and its right singular vectors (d x m), from the Gram matrix."""
        m = self.n_features if m is None else m
        lam, V = top_eigh(self.gram(center), m)
        return np.sqrt(lam), V


class GramAccumulator:
    """Accumulate the Gram statistics of a feature matrix batch by batch.

    >>> acc = GramAccumulator()
    >>> for batch in batches:           # each n_b x d, numpy or torch
    ...     acc.update(batch)
    >>> stats = acc.finalize()           # GramStats, float64 numpy

    ``merge(other)`` adds the statistics of another accumulator (another shard
    of samples, another process) in place; the result does not depend on how
    the samples were split into batches or in which order partial results are
    merged (up to float64 rounding). See the module docstring for the formulas.
    """

    def __init__(self) -> None:
        self.n_samples = 0
        self._mean: Any = None
        self._scatter: Any = None

    @property
    def n_features(self) -> int | None:
        return None if self._mean is None else int(self._mean.shape[0])

    def _check_width(self, d: int, name: str) -> None:
        if self._mean is not None and d != self.n_features:
            raise InputError(
                f"{name} has {d} features but this accumulator has seen {self.n_features}; "
                f"every batch of one feature set must have the same columns."
            )

    @staticmethod
    def _batch_moments(x: Any) -> tuple[int, Any, Any]:
        n_b = int(x.shape[0])
        mean_b = x.mean(0)
        xc = x - mean_b
        return n_b, mean_b, xc

    def _combine(self, n_b: int, mean_b: Any, scatter_b: Any) -> None:
        if self._mean is None:
            self.n_samples, self._mean, self._scatter = n_b, mean_b, scatter_b
            return
        mean_b, scatter_b = _like(mean_b, self._mean), _like(scatter_b, self._mean)
        n_a, n = self.n_samples, self.n_samples + n_b
        delta = mean_b - self._mean
        self._scatter = self._scatter + scatter_b + (n_a * n_b / n) * _outer(delta, delta)
        self._mean = self._mean + delta * (n_b / n)
        self.n_samples = n

    def update(self, batch: Any) -> "GramAccumulator":
        """Add a batch (n_b x d numpy array or torch tensor). Returns ``self``."""
        x = _prepare_batch(batch, "batch")
        self._check_width(int(x.shape[1]), "batch")
        if x.shape[0] == 0:
            return self
        self._add_block(x)
        return self

    def _add_block(self, x: Any) -> None:
        """Add a validated float64 block (no checks: internal fast path)."""
        n_b, mean_b, xc = self._batch_moments(x)
        self._combine(n_b, mean_b, xc.T @ xc)

    def merge(self, other: "GramAccumulator") -> "GramAccumulator":
        """Add the statistics of ``other`` into ``self`` (in place) and return ``self``."""
        if other._mean is None:
            return self
        self._check_width(other.n_features, "the merged accumulator")
        self._combine(other.n_samples, other._mean, other._scatter)
        return self

    def finalize(self) -> GramStats:
        """The accumulated statistics as float64 numpy (moved off the GPU if needed)."""
        if self._mean is None or self.n_samples == 0:
            raise InputError("the accumulator has seen no samples; call update(batch) before finalize().")
        scatter = _to_numpy64(self._scatter)
        return GramStats(self.n_samples, _to_numpy64(self._mean), 0.5 * (scatter + scatter.T))


def _outer(a: Any, b: Any) -> Any:
    if _is_torch(a):
        import torch

        return torch.outer(a, b)
    return np.outer(a, b)


@dataclass(frozen=True)
class CrossGramStats:
    """Second moments of two feature sets A (N x d_a) and B (N x d_b) on the same samples.

    ``cross_scatter`` is the centered cross-scatter (A - 1 mu_A^T)^T (B - 1 mu_B^T).
    """

    a: GramStats
    b: GramStats
    cross_scatter: np.ndarray

    def cross_gram(self, center: bool = False) -> np.ndarray:
        """A_c^T B_c (d_a x d_b), centered or not."""
        if center:
            return self.cross_scatter
        return self.cross_scatter + self.a.n_samples * np.outer(self.a.mean, self.b.mean)


class CrossGramAccumulator:
    """Accumulate A^T A, B^T B and A^T B for two feature sets fed with the same samples.

    Each call ``update(a_batch, b_batch)`` must pass the *same samples in the same
    order* for both sets (e.g. two models' features of one DataLoader batch);
    the batch sizes are checked. Merging follows the Chan et al. pairwise update
    (module docstring) with the cross term (n_a n_b / n) delta_A delta_B^T.
    """

    def __init__(self) -> None:
        self.a = GramAccumulator()
        self.b = GramAccumulator()
        self._cross: Any = None

    @property
    def n_samples(self) -> int:
        return self.a.n_samples

    def _combine_cross(self, n_a: int, n_b: int, mean_a_old: Any, mean_b_old: Any,
                       mean_a_new: Any, mean_b_new: Any, cross_new: Any) -> None:
        if self._cross is None:
            self._cross = cross_new
            return
        cross_new = _like(cross_new, self._cross)
        da = _like(mean_a_new, self._cross) - _like(mean_a_old, self._cross)
        db = _like(mean_b_new, self._cross) - _like(mean_b_old, self._cross)
        self._cross = self._cross + cross_new + (n_a * n_b / (n_a + n_b)) * _outer(da, db)

    def update(self, a_batch: Any, b_batch: Any) -> "CrossGramAccumulator":
        """Add one batch of both feature sets (same samples, same order). Returns ``self``."""
        xa = _prepare_batch(a_batch, "a_batch")
        xb = _prepare_batch(b_batch, "b_batch")
        if xa.shape[0] != xb.shape[0]:
            raise InputError(
                f"a_batch has {xa.shape[0]} samples but b_batch has {xb.shape[0]}; both must hold the "
                f"features of the same samples in the same order."
            )
        if xa.shape[0] == 0:
            return self
        xb = _like(xb, xa)
        self.a._check_width(int(xa.shape[1]), "a_batch")
        self.b._check_width(int(xb.shape[1]), "b_batch")
        n_b, mean_a, xca = GramAccumulator._batch_moments(xa)
        _, mean_b, xcb = GramAccumulator._batch_moments(xb)
        n_old = self.n_samples
        if n_old:
            self._combine_cross(n_old, n_b, self.a._mean, self.b._mean, mean_a, mean_b, _cross(xca, xcb))
        else:
            self._cross = _cross(xca, xcb)
        self.a._combine(n_b, mean_a, xca.T @ xca)
        self.b._combine(n_b, mean_b, xcb.T @ xcb)
        return self

    def merge(self, other: "CrossGramAccumulator") -> "CrossGramAccumulator":
        """Add another accumulator's statistics (other samples of the same two sets) in place."""
        if other._cross is None:
            return self
        if self._cross is None:
            self.a.merge(other.a)
            self.b.merge(other.b)
            self._cross = other._cross
            return self
        self._combine_cross(self.n_samples, other.n_samples, self.a._mean, self.b._mean,
                            other.a._mean, other.b._mean, other._cross)
        self.a.merge(other.a)
        self.b.merge(other.b)
        return self

    def finalize(self) -> CrossGramStats:
        """The accumulated statistics as float64 numpy."""
        return CrossGramStats(self.a.finalize(), self.b.finalize(), _to_numpy64(self._cross))


@dataclass(frozen=True)
class ClassStats:
    """Class-wise second moments: per class count, mean and centered scatter, float64.

    ``within_scatter`` = sum_c sum_{i in c} (x_i - mu_c)(x_i - mu_c)^T and
    ``between_scatter`` = sum_c n_c (mu_c - mu)(mu_c - mu)^T, whose sum is the
    total centered scatter (the neural-collapse statistics of Papyan, Han and
    Donoho 2020 are ratios of these).
    """

    classes: np.ndarray
    counts: np.ndarray
    means: np.ndarray
    scatters: np.ndarray

    @property
    def n_samples(self) -> int:
        return int(self.counts.sum())

    @property
    def global_mean(self) -> np.ndarray:
        return (self.counts[:, None] * self.means).sum(0) / self.n_samples

    @property
    def within_scatter(self) -> np.ndarray:
        return self.scatters.sum(0)

    @property
    def between_scatter(self) -> np.ndarray:
        D = self.means - self.global_mean
        return (D * self.counts[:, None]).T @ D


class ClassStatsAccumulator:
    """Accumulate per-class Gram statistics batch by batch: ``update(batch, labels)``.

    One :class:`GramAccumulator` per class (Chan et al. pairwise merges), so
    the result does not depend on batching; ``merge`` adds another
    accumulator's classes. ``needs_labels`` tells ``features.extract`` to pass
    the batch labels.
    """

    needs_labels = True

    def __init__(self) -> None:
        self._per_class: dict[Any, GramAccumulator] = {}

    def update(self, batch: Any, labels: Any) -> "ClassStatsAccumulator":
        x = _prepare_batch(batch, "batch")
        lab = np.asarray(labels.detach().cpu() if _is_torch(labels) else labels).reshape(-1)
        if len(lab) != x.shape[0]:
            raise InputError(f"{len(lab)} labels for a batch of {x.shape[0]} samples; pass one label per sample.")
        for c in np.unique(lab):
            rows = np.flatnonzero(lab == c)
            idx = rows if not _is_torch(x) else __import__("torch").as_tensor(rows, device=x.device)
            key = c.item() if hasattr(c, "item") else c
            self._per_class.setdefault(key, GramAccumulator()).update(x[idx])
        return self

    def merge(self, other: "ClassStatsAccumulator") -> "ClassStatsAccumulator":
        for c, acc in other._per_class.items():
            if c in self._per_class:
                self._per_class[c].merge(acc)
            else:
                self._per_class[c] = GramAccumulator().merge(acc)
        return self

    def finalize(self) -> ClassStats:
        if not self._per_class:
            raise InputError("the accumulator has seen no samples; call update(batch, labels) before finalize().")
        classes = sorted(self._per_class)
        stats = [self._per_class[c].finalize() for c in classes]
        return ClassStats(
            np.asarray(classes),
            np.array([s.n_samples for s in stats], dtype=np.int64),
            np.stack([s.mean for s in stats]),
            np.stack([s.scatter for s in stats]),
        )
