"""Centered kernel alignment (Kornblith, Norouzi, Lee, Hinton, ICML 2019).

For feature matrices X (n x p1), Y (n x p2) on the same samples, with
centering H = I - 11^T/n and Gram (kernel) matrices K, L (n x n):

    HSIC(K, L) = tr(K H L H) / (n - 1)^2,
    CKA(K, L)  = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)).

* **linear CKA**, K = X X^T. Feature-space form (X, Y column-centered):
  ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) -- O(n p^2), asserted equal to the
  Gram-space form O(n^2 p).
* **debiased linear CKA**: HSIC replaced by the unbiased estimator of Song,
  Smola, Gretton, Bedo, Borgwardt (JMLR 2012). With K~, L~ the kernels with
  zeroed diagonals,
  HSIC_u = [tr(K~ L~) + (1^T K~ 1)(1^T L~ 1)/((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n(n-3)),
  computed in feature space from ||Y^T X||_F^2, the row norms and the total norms.
* **RBF CKA**: K_ij = exp(-||x_i - x_j||^2 / (2 sigma^2)), with ``sigma`` absolute or
  ``sigma_fraction`` times the median pairwise distance (sqrt of the median of
  all n^2 squared distances, zero diagonal included -- Kornblith et al.'s convention;
  when that median is 0, because most rows coincide, the median of the positive ones).
* **streaming linear CKA** from :class:`~deepspan.linalg.CrossGramStats`
  (centered scatter and cross-scatter): the feature-space form without the data.

Constant features (zero variance) contribute nothing; an all-constant side has
no centered kernel, and CKA is then defined as 0 (stated rule, never NaN; "constant"
means centered energy within 1e-24 of the uncentered energy, i.e. rounding residue).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepspan.errors import InputError, SampleMismatchError
from deepspan.linalg.checks import as_feature_matrix

__all__ = ["linear_cka", "linear_cka_gram", "debiased_linear_cka", "debiased_linear_cka_gram", "rbf_cka",
           "streaming_linear_cka", "cka"]


def _finite(X: Any, name: str) -> np.ndarray:
    """A float64 samples x features matrix; all-zero or constant input is allowed (CKA is 0 against it)."""
    a = as_feature_matrix(X, name, check_values=False)
    if not np.isfinite(a).all():
        as_feature_matrix(X, name)  # raises the NaN/Inf message with its count and position
    return np.asarray(a, dtype=np.float64)


def _pair(X: Any, Y: Any) -> tuple[np.ndarray, np.ndarray]:
    A, B = _finite(X, "X"), _finite(Y, "Y")
    if A.shape[0] != B.shape[0]:
        raise SampleMismatchError(f"X has {A.shape[0]} samples but Y has {B.shape[0]}; compare the same samples.")
    return A, B


def _constant(A: np.ndarray) -> bool:
    """All rows equal up to rounding: the centered matrix is within 1e-12 (relative) of zero."""
    Ac = A - A.mean(0)
    return float(np.einsum("ij,ij->", Ac, Ac)) <= 1e-24 * max(float(np.einsum("ij,ij->", A, A)), 1e-300)


def _ratio(num: float, den_sq: float) -> float:
    return float(num / np.sqrt(den_sq)) if den_sq > 0 else 0.0


def linear_cka(X: Any, Y: Any) -> float:
    """Linear CKA, feature-space form ||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F)."""
    A, B = _pair(X, Y)
    A = A - A.mean(0)
    B = B - B.mean(0)
    xy = np.linalg.norm(B.T @ A) ** 2
    return _ratio(xy, np.linalg.norm(A.T @ A) ** 2 * np.linalg.norm(B.T @ B) ** 2)


def _center_gram(K: np.ndarray) -> np.ndarray:
    r = K.mean(0)
    return K - r[None, :] - r[:, None] + r.mean()


def linear_cka_gram(X: Any, Y: Any) -> float:
    """Linear CKA, Gram-space form <HKH, HLH> / (||HKH|| ||HLH||) with K = X X^T (O(n^2))."""
    A, B = _pair(X, Y)
    K, L = _center_gram(A @ A.T), _center_gram(B @ B.T)
    return _ratio(float((K * L).sum()), float((K * K).sum()) * float((L * L).sum()))


def _hsic_u_gram(K: np.ndarray, L: np.ndarray) -> float:
    n = len(K)
    K = K.copy()
    L = L.copy()
    np.fill_diagonal(K, 0.0)
    np.fill_diagonal(L, 0.0)
    return float((np.sum(K * L) + K.sum() * L.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (K.sum(0) @ L.sum(1)))
                 / (n * (n - 3)))


def debiased_linear_cka_gram(X: Any, Y: Any) -> float:
    """Debiased linear CKA from the unbiased HSIC on n x n Gram matrices (Song et al. 2012); the reference route."""
    A, B = _pair(X, Y)
    _need_four(A.shape[0])
    if _constant(A) or _constant(B):
        return 0.0
    A, B = A - A.mean(0), B - B.mean(0)
    K, L = A @ A.T, B @ B.T
    return _ratio(_hsic_u_gram(K, L), _hsic_u_gram(K, K) * _hsic_u_gram(L, L))


def _need_four(n: int) -> None:
    if n < 4:
        raise InputError(f"debiased CKA needs at least 4 samples (the unbiased HSIC divides by n-3), got {n}.")


def debiased_linear_cka(X: Any, Y: Any) -> float:
    """Debiased linear CKA (unbiased HSIC of Song et al. 2012) in feature space, O(n p^2).

    Expands HSIC_u(K, L) for K = X X^T, L = Y Y^T with K~ = K - diag(K):
    tr(K~ L~) = ||Y^T X||_F^2 - sum_i k_ii l_ii, 1^T K~ 1 = ||X^T 1||^2 - tr K,
    1^T K~ L~ 1 = (K 1 - diag K) . (L 1 - diag L), where K 1 = X (X^T 1).
    Equal to :func:`debiased_linear_cka_gram` (tested).
    """
    A, B = _pair(X, Y)
    n = A.shape[0]
    _need_four(n)
    if _constant(A) or _constant(B):
        return 0.0
    A, B = A - A.mean(0), B - B.mean(0)  # HSIC_u is translation invariant; centering keeps it so numerically

    def parts(P: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        dk = np.einsum("ij,ij->i", P, P)  # diag of P P^T
        s = P.sum(0)
        return dk, float(s @ s) - float(dk.sum()), P @ s - dk  # diag, 1^T K~ 1, K~ 1

    def hsic(P: np.ndarray, Q: np.ndarray, pp: Any, qq: Any) -> float:
        dk, sk, k1 = pp
        dl, sl, l1 = qq
        tr = float(np.linalg.norm(Q.T @ P) ** 2) - float(dk @ dl)
        return (tr + sk * sl / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * float(k1 @ l1)) / (n * (n - 3))

    pa, pb = parts(A), parts(B)
    return _ratio(hsic(A, B, pa, pb), hsic(A, A, pa, pa) * hsic(B, B, pb, pb))


def _rbf_gram(A: np.ndarray, sigma: float | None, sigma_fraction: float | None) -> np.ndarray:
    G = A @ A.T
    sq = np.diag(G)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * G, 0.0)
    if sigma is None:
        med = float(np.median(d2))
        if med <= 0:  # most pairs coincide (e.g. sparse ReLU rows): use the median of the positive distances
            pos = d2[d2 > 0]
            if len(pos) == 0:
                return np.ones_like(d2)  # all samples identical: a constant kernel
            med = float(np.median(pos))
        s2 = sigma_fraction**2 * med
    else:
        s2 = float(sigma) ** 2
    return np.exp(-d2 / (2.0 * s2))


def rbf_cka(X: Any, Y: Any, *, sigma: float | None = None, sigma_fraction: float | None = None) -> float:
    """RBF-kernel CKA with bandwidth ``sigma`` (absolute) or ``sigma_fraction`` x the median pairwise distance."""
    if (sigma is None) == (sigma_fraction is None):
        raise InputError("give exactly one of sigma= (absolute bandwidth) or sigma_fraction= (x median distance).")
    if (sigma is not None and not sigma > 0) or (sigma_fraction is not None and not sigma_fraction > 0):
        raise InputError("the RBF bandwidth must be positive.")
    A, B = _pair(X, Y)
    K = _center_gram(_rbf_gram(A, sigma, sigma_fraction))
    L = _center_gram(_rbf_gram(B, sigma, sigma_fraction))
    return _ratio(float((K * L).sum()), float((K * K).sum()) * float((L * L).sum()))


def streaming_linear_cka(stats: Any) -> float:
    """Linear CKA from :class:`~deepspan.linalg.CrossGramStats`: ||S_xy||^2 / (||S_xx|| ||S_yy||).

    A side whose centered scatter is within 1e-12 (relative) of zero is constant: CKA 0 (the stated
    rule; merging batch means leaves rounding residue that CKA's scale invariance would magnify).
    """
    for side in (stats.a, stats.b):
        if np.trace(side.scatter) <= 1e-24 * max(side.total_energy(False), 1e-300):
            return 0.0
    Sxy = stats.cross_gram(True)
    Sxx, Syy = stats.a.gram(True), stats.b.gram(True)
    return _ratio(float(np.linalg.norm(Sxy) ** 2), float(np.linalg.norm(Sxx) ** 2) * float(np.linalg.norm(Syy) ** 2))


def cka(X: Any, Y: Any, kernel: str = "linear", debiased: bool = False, **kwargs: Any) -> float:
    """CKA with ``kernel`` ``"linear"`` (optionally ``debiased``) or ``"rbf"`` (``sigma`` / ``sigma_fraction``)."""
    if kernel == "linear":
        return debiased_linear_cka(X, Y) if debiased else linear_cka(X, Y)
    if kernel == "rbf":
        if debiased:
            raise InputError("debiased CKA is implemented for the linear kernel only.")
        return rbf_cka(X, Y, **kwargs)
    raise InputError(f"unknown kernel {kernel!r}; choose 'linear' or 'rbf'.")
