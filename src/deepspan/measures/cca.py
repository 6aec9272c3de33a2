"""Canonical correlation analysis and its descendants, SVCCA and PWCCA; orthogonal Procrustes and shape metrics.

CCA. For X (n x p1), Y (n x p2), column-centered by default, with orthonormal
bases Q_x, Q_y of their column spans (thin SVD with a relative rank cut-off
``rank_tol``, so constant, duplicated and dependent columns are dropped by a
stated rule), the canonical correlations are the singular values rho_i of
Q_x^T Q_y; there are min(rank X, rank Y) of them. Summaries: mean rho (``cca``) and mean rho^2
(``cca_mean_sq``, Kornblith et al. 2019's R^2_CCA, whose divisor min(p1, p2) equals min(rank X, rank Y)
for full-rank inputs; dividing by the ranks keeps cca(X, X) = 1 when X has dead or duplicated
neurons; its published demo value
0.54312 is for *uncentered* inputs: ``center=False``).

SVCCA (Raghu, Gilmer, Yosinski, Sohl-Dickstein, NeurIPS 2017): reduce each
side by SVD to its top ``dims`` directions, or to the fewest that keep
``variance`` of its variance (default 0.99), then mean canonical correlation.

PWCCA (Morcos, Raghu, Bengio, NeurIPS 2018): the canonical correlations
weighted by how much of X's neurons each canonical variate h_i = X w_i
accounts for: alpha_i proportional to sum_j |<h_i, x_j>|, normalised to sum
to 1; PWCCA = sum_i alpha_i rho_i (X is the reference side; not symmetric).

Procrustes (Williams, Kunz, Kornblith, Linderman, NeurIPS 2021, "Generalized
shape metrics on neural representations"): with X, Y centered, scaled to unit
Frobenius norm and zero-padded to a common width,
min_Q ||X - Y Q||_F^2 over orthogonal Q equals 2 - 2 ||X^T Y||_* (nuclear
norm); ``procrustes`` returns its square root (a metric), ``shape_angle`` the
angular shape metric arccos(||X^T Y||_*) in degrees.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg

from deepspan.errors import InputError
from deepspan.measures.cka import _pair

__all__ = ["canonical_correlations", "cca", "cca_mean_sq", "svcca", "pwcca", "procrustes", "shape_angle"]

#: Singular values below rank_tol * s_max are dropped when forming a basis.
RANK_TOL = 1e-10


def _basis(A: np.ndarray, rank_tol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Orthonormal basis of span(A) with a relative rank cut: (U_r, s_r, V_r)."""
    if not A.any():
        return np.zeros((A.shape[0], 0)), np.zeros(0), np.zeros((A.shape[1], 0))
    U, s, Vt = scipy.linalg.svd(A, full_matrices=False, check_finite=False)
    keep = s > rank_tol * s[0]
    return U[:, keep], s[keep], Vt[keep].T


def canonical_correlations(X: Any, Y: Any, center: bool = True, rank_tol: float = RANK_TOL) -> np.ndarray:
    """Canonical correlations (descending) of X and Y: singular values of Q_x^T Q_y.

    Their number is min(rank X, rank Y); an empty result (a constant side) means no correlation.
    """
    A, B = _pair(X, Y)
    if center:
        A, B = A - A.mean(0), B - B.mean(0)
    Qa, Qb = _basis(A, rank_tol)[0], _basis(B, rank_tol)[0]
    if Qa.shape[1] == 0 or Qb.shape[1] == 0:
        return np.zeros(0)
    return np.clip(np.linalg.svd(Qa.T @ Qb, compute_uv=False), 0.0, 1.0)


def cca(X: Any, Y: Any, center: bool = True) -> float:
    """Mean of the min(rank X, rank Y) canonical correlations (0 when a side is constant)."""
    rho = canonical_correlations(X, Y, center)
    return float(rho.mean()) if rho.size else 0.0


def cca_mean_sq(X: Any, Y: Any, center: bool = True) -> float:
    """Mean squared canonical correlation ||Q_y^T Q_x||_F^2 / min(rank X, rank Y) (Kornblith et al.'s R^2_CCA)."""
    rho = canonical_correlations(X, Y, center)
    return float((rho**2).mean()) if rho.size else 0.0


def _reduce(A: np.ndarray, dims: int | None, variance: float | None) -> np.ndarray:
    U, s, _ = _basis(A, RANK_TOL)
    if len(s) == 0:
        return U
    if dims is not None:
        k = min(int(dims), len(s))
    else:
        frac = np.cumsum(s**2) / np.sum(s**2)
        k = int(np.searchsorted(frac, variance - 1e-12) + 1)
    return U[:, :k] * s[:k]


def svcca(X: Any, Y: Any, dims: int | None = None, variance: float | None = 0.99) -> float:
    """SVCCA: SVD-reduce each centered side to ``dims`` directions (or ``variance`` kept), then mean CCA."""
    if dims is not None:
        if dims < 1:
            raise InputError(f"dims must be >= 1, got {dims}.")
        variance = None
    elif variance is None or not (0 < variance <= 1):
        raise InputError(f"variance must be in (0, 1], got {variance}.")
    A, B = _pair(X, Y)
    A, B = A - A.mean(0), B - B.mean(0)
    Ra, Rb = _reduce(A, dims, variance), _reduce(B, dims, variance)
    if Ra.shape[1] == 0 or Rb.shape[1] == 0:
        return 0.0
    rho = canonical_correlations(Ra, Rb, center=False)
    return float(rho.sum() / min(Ra.shape[1], Rb.shape[1]))


def pwcca(X: Any, Y: Any, rank_tol: float = RANK_TOL) -> float:
    """Projection-weighted CCA (Morcos et al. 2018), weights from X's neurons (not symmetric)."""
    A, B = _pair(X, Y)
    A, B = A - A.mean(0), B - B.mean(0)
    Qa, Qb = _basis(A, rank_tol)[0], _basis(B, rank_tol)[0]
    if Qa.shape[1] == 0 or Qb.shape[1] == 0:
        return 0.0
    Ua, rho, _ = np.linalg.svd(Qa.T @ Qb, full_matrices=False)
    H = Qa @ Ua  # canonical variates of X (unit norm), one per canonical correlation
    alpha = np.abs(H.T @ A).sum(1)
    if alpha.sum() <= 0:
        return 0.0
    alpha = alpha / alpha.sum()
    return float(alpha @ np.clip(rho, 0.0, 1.0))


def _shape_pair(X: Any, Y: Any) -> tuple[np.ndarray, np.ndarray] | None:
    A, B = _pair(X, Y)
    A, B = A - A.mean(0), B - B.mean(0)
    na, nb = np.linalg.norm(A), np.linalg.norm(B)
    if na == 0 or nb == 0:
        return None
    return A / na, B / nb


def procrustes(X: Any, Y: Any) -> float:
    """Orthogonal Procrustes distance sqrt(2 - 2 ||X^T Y||_*) of centered, unit-norm X and Y (a metric in [0, 2])."""
    pair = _shape_pair(X, Y)
    if pair is None:
        return float(np.sqrt(2.0))  # a constant side: nothing aligns (stated rule)
    nuc = float(np.linalg.svd(pair[0].T @ pair[1], compute_uv=False).sum())
    return float(np.sqrt(max(2.0 - 2.0 * min(nuc, 1.0), 0.0)))


def shape_angle(X: Any, Y: Any) -> float:
    """Angular shape metric arccos(||X^T Y||_*) in degrees (Williams et al. 2021), in [0, 90]."""
    pair = _shape_pair(X, Y)
    if pair is None:
        return 90.0
    nuc = float(np.linalg.svd(pair[0].T @ pair[1], compute_uv=False).sum())
    return float(np.degrees(np.arccos(np.clip(nuc, 0.0, 1.0))))
