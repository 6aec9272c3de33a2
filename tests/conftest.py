"""Shared helpers for the deepspan test suite.

Test modules import the plain functions below with ``from conftest import ...``
(pytest puts this directory on ``sys.path`` because ``tests`` is not a package).

* :func:`planted` builds F = Q1 diag(s) Q2^T (+ an optional constant offset or
  per-column mean) with random orthonormal factors, so the spectrum of F -- or
  of its column-centered version -- is known in advance.
* :func:`reference_svd` is the float64 ``scipy.linalg.svd`` the library is
  checked against.
* :func:`sign_rule` is an independent re-implementation of the documented sign
  rule (sum(u) > 0, else the largest-magnitude entry positive).
"""

from __future__ import annotations

import os
import numpy as np
import scipy.linalg
from hypothesis import settings

# Modest by default (the whole suite stays well under a minute on 2 cores);
# HYPOTHESIS_PROFILE=thorough runs 20x more examples per property.
settings.register_profile("deepspan", deadline=None, max_examples=30, print_blob=True)
settings.register_profile("thorough", deadline=None, max_examples=600, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deepspan"))


def rng_of(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def orthonormal(n: int, r: int, seed=0, *, orthogonal_to_ones: bool = False) -> np.ndarray:
    """A random n x r matrix with orthonormal columns (Haar-like, via QR with sign fix).

    With ``orthogonal_to_ones`` every column is also orthogonal to the all-ones
    vector (needs r <= n - 1), so a matrix built on it has zero column means.
    """
    rng = rng_of(seed)
    if orthogonal_to_ones:
        if r > n - 1:
            raise ValueError("need r <= n - 1 for a basis orthogonal to the ones vector")
        X = np.column_stack([np.ones(n), rng.standard_normal((n, r))])
        Q, R = np.linalg.qr(X)
        Q = Q * np.sign(np.diag(R))
        return np.ascontiguousarray(Q[:, 1:])
    Q, R = np.linalg.qr(rng.standard_normal((n, r)))
    return Q * np.sign(np.diag(R))


def geometric_spectrum(m: int, hi: float = 10.0, lo: float = 0.1) -> np.ndarray:
    """m singular values decreasing geometrically from ``hi`` to ``lo``."""
    if m == 1:
        return np.array([hi])
    return hi * (lo / hi) ** (np.arange(m) / (m - 1))


def gap_spectrum(m: int, top=(10.0, 7.0, 5.0, 3.5, 2.5, 1.8), tail=(1.0, 0.1)) -> np.ndarray:
    """Well separated leading values ``top`` followed by a geometric tail (clear gaps on top)."""
    top = np.asarray(top, dtype=np.float64)[:m]
    rest = m - len(top)
    if rest <= 0:
        return top.copy()
    return np.concatenate([top, geometric_spectrum(rest, *tail)])


def planted(
    n: int,
    d: int,
    s,
    seed=0,
    *,
    offset: float = 0.0,
    column_offset=None,
    centered_basis: bool = False,
) -> np.ndarray:
    """F = Q1 diag(s) Q2^T (+ offset) with random orthonormal Q1 (n x r), Q2 (d x r), r = len(s).

    ``offset`` adds the same constant to every entry; ``column_offset`` (length
    d) adds a row vector to every row. With ``centered_basis`` the left factor is
    orthogonal to the ones vector, so ``F - column means`` has exactly the
    singular values ``s`` whatever offset is added.
    """
    rng = rng_of(seed)
    s = np.asarray(s, dtype=np.float64)
    r = len(s)
    Q1 = orthonormal(n, r, rng, orthogonal_to_ones=centered_basis)
    Q2 = orthonormal(d, r, rng)
    F = (Q1 * s) @ Q2.T
    if offset:
        F = F + offset
    if column_offset is not None:
        F = F + np.asarray(column_offset, dtype=np.float64)[None, :]
    return F


def centered(F, center: bool = True) -> np.ndarray:
    A = np.asarray(F, dtype=np.float64)
    return A - A.mean(axis=0) if center else A.copy()


def reference_svd(F, center: bool = False):
    """Thin SVD (U, s, Vt) of F (column-centered when ``center``) by scipy in float64."""
    A = centered(F, center)
    return scipy.linalg.svd(A, full_matrices=False, lapack_driver="gesdd")


def sign_rule(u) -> np.ndarray:
    """The documented sign rule, re-implemented: sum(u) > 0, else the largest-|entry| positive."""
    u = np.array(u, dtype=np.float64, copy=True)
    total = u.sum()
    if abs(total) > 1e-8 * np.sqrt(u.shape[0]):
        return u if total > 0 else -u
    i = int(np.argmax(np.abs(u)))
    return u if u[i] >= 0 else -u


def follows_sign_rule(u) -> bool:
    return bool(np.array_equal(sign_rule(u), np.asarray(u, dtype=np.float64)))


def rel_err(a, b) -> float:
    """||a - b||_F / ||b||_F (with ||b|| floored at 1e-300)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))
