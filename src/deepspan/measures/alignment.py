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
* **linear CKA from statistics** (:func:`linear_cka_from_stats`), from
  :class:`~deepspan.linalg.CrossGramStats` (centered scatter and cross-scatter): the
  feature-space form without the data.

Constant features (zero variance) contribute nothing; an all-constant side has
no centered kernel, and CKA is then defined as 0 (stated rule, never NaN; "constant"
means centered energy within 1e-24 of the uncentered energy, i.e. rounding residue).

Prepare + pair (DESIGN.md, "A measure is prepare + pair"). Each measure is two steps made by a
*steps factory*: ``linear_cka_steps()``, ``debiased_cka_steps()``,
``rbf_cka_steps(sigma=..., sigma_fraction=...)`` return ``(prepare, pair)``.
``prepare(X)`` computes one network's statistics once (centered features and ||X_c^T X_c||_F;
the debiased HSIC's row norms, sums and self-HSIC; the centered RBF kernel and its norm), and
``pair(px, py)`` combines two of them. The public functions are ``pair(prepare(X), prepare(Y))``
of the same steps (:func:`apply_steps`), and ``deepspan.measures.compare.MEASURES`` holds the same
factories, so every formula lives here once.

This module also holds the input rules every two-sided measure shares: :func:`as_finite_matrix`
and :func:`as_finite_pair` (finite float64 matrices on the same samples), and :func:`as_unit_matrix`,
the start of every scale-invariant ``prepare`` here and in :mod:`~deepspan.measures.canonical` and
:mod:`~deepspan.measures.shape`: X times an exact power of two 2^-e that puts max|X| in [0.5, 1)
(:func:`~deepspan.linalg.checks.scale_to_unit`), so no product overflows or underflows and every
measure gives the same value for c X as for X at any finite c > 0 (the absolute RBF bandwidth
``sigma`` is scaled by the same 2^-e, which leaves the kernel unchanged).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepspan.errors import InputError
from deepspan.linalg.checks import (
    as_feature_matrix,
    check_same_samples,
    scale_exponent,
    scale_to_unit,
    times_power_of_two,
)
from deepspan.linalg.streaming import CrossGramStats, GramStats

__all__ = [
    "as_finite_matrix",
    "as_finite_pair",
    "as_unit_matrix",
    "apply_steps",
    "Steps",
    "CenteredFeatures",
    "DebiasedFeatures",
    "CenteredKernel",
    "linear_cka_steps",
    "debiased_cka_steps",
    "rbf_cka_steps",
    "linear_cka",
    "linear_cka_gram",
    "debiased_linear_cka",
    "debiased_linear_cka_gram",
    "rbf_cka",
    "linear_cka_from_stats",
    "cka",
]

#: ``(prepare, pair)``: ``prepare(X)`` -> one network's statistics, ``pair(px, py)`` -> the value.
Steps = tuple[Callable[[Any], Any], Callable[[Any, Any], Any]]


# ------------------------------------------------------------------ shared input rules
def as_finite_matrix(X: Any, name: str = "X") -> np.ndarray:
    """X as a float64 samples x features matrix with only finite values (the input rule of the measures).

    Shapes and dtypes follow :func:`~deepspan.linalg.checks.as_feature_matrix` (2-D, >= 2 samples,
    >= 1 feature, real); NaN/Inf raise its :class:`~deepspan.errors.InputError` naming the count and
    the first position. All-zero or constant input is allowed: every measure has a stated value
    against it (CKA and CCA 0, Procrustes sqrt(2), shape angle 90).
    """
    a = as_feature_matrix(X, name, check_values=False)
    if not np.isfinite(a).all():
        as_feature_matrix(X, name)  # raises the NaN/Inf message with its count and position
    return np.asarray(a, dtype=np.float64)


def as_unit_matrix(X: Any, name: str = "X") -> np.ndarray:
    """:func:`as_finite_matrix`, times the exact power of two 2^-e that puts max|X| in [0.5, 1).

    The rescaling rule of :func:`~deepspan.linalg.checks.scale_to_unit`, applied at the start of every
    scale-invariant ``prepare``: the value is then the same for c X as for X at any finite c > 0 (a power
    of two does not round), and Gram matrices, norms and kernels stay far from over- and underflow.
    An all-zero matrix is returned as it is.
    """
    return scale_to_unit(as_finite_matrix(X, name))[0]


def as_finite_pair(X: Any, Y: Any, *, names: tuple[str, str] = ("X", "Y"),
                   what: str = "this measure") -> tuple[np.ndarray, np.ndarray]:
    """Both sides through :func:`as_finite_matrix`, then the shared same-samples check.

    Raises :class:`~deepspan.errors.SampleMismatchError` (via
    :func:`~deepspan.linalg.checks.check_same_samples`) when the row counts differ.
    """
    A, B = as_finite_matrix(X, names[0]), as_finite_matrix(Y, names[1])
    check_same_samples(A.shape[0], B.shape[0], names=names, what=what)
    return A, B


def apply_steps(steps: Steps, X: Any, Y: Any, *, names: tuple[str, str] = ("X", "Y"),
                what: str = "this measure") -> Any:
    """``pair(prepare(A), prepare(B))`` for validated A, B (:func:`as_finite_pair`): a public measure function."""
    A, B = as_finite_pair(X, Y, names=names, what=what)
    prepare, pair = steps
    return pair(prepare(A), prepare(B))


def _constant(A: np.ndarray) -> bool:
    """All rows equal up to rounding: the centered matrix is within 1e-12 (relative) of zero.

    Scale-free for inputs of :func:`as_unit_matrix` (max|A| in [0.5, 1), so the 1e-300 floor never acts)."""
    Ac = A - A.mean(0)
    return float(np.einsum("ij,ij->", Ac, Ac)) <= 1e-24 * max(float(np.einsum("ij,ij->", A, A)), 1e-300)


def _ratio(num: float, den_sq: float) -> float:
    return float(num / np.sqrt(den_sq)) if den_sq > 0 else 0.0


# ------------------------------------------------------------------ linear CKA
@dataclass(frozen=True, eq=False)
class CenteredFeatures:
    """Per-network statistics of linear CKA: X_c = X - 1 mu^T and ||X_c^T X_c||_F."""

    Xc: np.ndarray
    gram_norm: float

    @property
    def n_samples(self) -> int:
        return int(self.Xc.shape[0])


def _prepare_linear(X: Any) -> CenteredFeatures:
    A = as_unit_matrix(X)
    Ac = A - A.mean(0)
    return CenteredFeatures(Ac, float(np.linalg.norm(Ac.T @ Ac)))


def _pair_linear(a: CenteredFeatures, b: CenteredFeatures) -> float:
    check_same_samples(a.n_samples, b.n_samples, names=("X", "Y"), what="linear CKA")
    xy = np.linalg.norm(b.Xc.T @ a.Xc) ** 2
    return _ratio(xy, a.gram_norm**2 * b.gram_norm**2)


def linear_cka_steps() -> Steps:
    """Linear CKA as (prepare, pair): prepare centers X and keeps ||X_c^T X_c||_F;
    pair is ||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F) (Kornblith et al. 2019)."""
    return _prepare_linear, _pair_linear


def linear_cka(X: Any, Y: Any) -> float:
    """Linear CKA, feature-space form ||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F).

    Kornblith, Norouzi, Lee, Hinton, "Similarity of Neural Network Representations Revisited",
    ICML 2019. 0 when a side is constant (its centered Gram is zero).
    """
    return apply_steps(linear_cka_steps(), X, Y, what="linear CKA")


def _center_gram(K: np.ndarray) -> np.ndarray:
    r = K.mean(0)
    return K - r[None, :] - r[:, None] + r.mean()


def linear_cka_gram(X: Any, Y: Any) -> float:
    """Linear CKA, Gram-space form <HKH, HLH> / (||HKH|| ||HLH||) with K = X X^T (O(n^2)); the reference route."""
    A, B = (scale_to_unit(M)[0] for M in as_finite_pair(X, Y, what="linear CKA"))
    K, L = _center_gram(A @ A.T), _center_gram(B @ B.T)
    return _ratio(float((K * L).sum()), float((K * K).sum()) * float((L * L).sum()))


# ------------------------------------------------------------------ debiased linear CKA
def _hsic_u_gram(K: np.ndarray, L: np.ndarray) -> float:
    n = len(K)
    K = K.copy()
    L = L.copy()
    np.fill_diagonal(K, 0.0)
    np.fill_diagonal(L, 0.0)
    return float((np.sum(K * L) + K.sum() * L.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (K.sum(0) @ L.sum(1)))
                 / (n * (n - 3)))


def _need_four(n: int) -> None:
    if n < 4:
        raise InputError(f"debiased CKA needs at least 4 samples (the unbiased HSIC divides by n-3), got {n}.")


def debiased_linear_cka_gram(X: Any, Y: Any) -> float:
    """Debiased linear CKA from the unbiased HSIC on n x n Gram matrices (Song et al. 2012); the reference route."""
    A, B = (scale_to_unit(M)[0] for M in as_finite_pair(X, Y, what="debiased CKA"))
    _need_four(A.shape[0])
    if _constant(A) or _constant(B):
        return 0.0
    A, B = A - A.mean(0), B - B.mean(0)
    K, L = A @ A.T, B @ B.T
    return _ratio(_hsic_u_gram(K, L), _hsic_u_gram(K, K) * _hsic_u_gram(L, L))


@dataclass(frozen=True, eq=False)
class DebiasedFeatures:
    """Per-network statistics of debiased linear CKA (K = X_c X_c^T, K~ = K - diag K).

    ``diag`` = diag K (row norms), ``k_sum`` = 1^T K~ 1, ``k1`` = K~ 1, ``self_hsic`` = HSIC_u(K, K).
    A constant side (``constant``) carries no other statistics: CKA against it is 0.
    """

    n_samples: int
    constant: bool
    Xc: np.ndarray | None = None
    diag: np.ndarray | None = None
    k_sum: float = 0.0
    k1: np.ndarray | None = None
    self_hsic: float = 0.0


def _hsic_u(a: DebiasedFeatures, b: DebiasedFeatures) -> float:
    """HSIC_u(K, L) in feature space: tr(K~ L~) = ||Y^T X||_F^2 - sum_i k_ii l_ii, 1^T K~ L~ 1 = (K~ 1).(L~ 1)."""
    n = a.n_samples
    tr = float(np.linalg.norm(b.Xc.T @ a.Xc) ** 2) - float(a.diag @ b.diag)
    return (tr + a.k_sum * b.k_sum / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * float(a.k1 @ b.k1)) / (n * (n - 3))


def _prepare_debiased(X: Any) -> DebiasedFeatures:
    A = as_unit_matrix(X)
    n = A.shape[0]
    _need_four(n)
    if _constant(A):
        return DebiasedFeatures(n, True)
    P = A - A.mean(0)  # HSIC_u is translation invariant; centering keeps it so numerically
    dk = np.einsum("ij,ij->i", P, P)  # diag of P P^T
    s = P.sum(0)
    stats = DebiasedFeatures(n, False, P, dk, float(s @ s) - float(dk.sum()), P @ s - dk)  # diag, 1^T K~ 1, K~ 1
    return dataclasses.replace(stats, self_hsic=_hsic_u(stats, stats))


def _pair_debiased(a: DebiasedFeatures, b: DebiasedFeatures) -> float:
    check_same_samples(a.n_samples, b.n_samples, names=("X", "Y"), what="debiased CKA")
    if a.constant or b.constant:
        return 0.0
    return _ratio(_hsic_u(a, b), a.self_hsic * b.self_hsic)


def debiased_cka_steps() -> Steps:
    """Debiased linear CKA as (prepare, pair): prepare keeps X_c, diag K, 1^T K~ 1, K~ 1 and HSIC_u(K, K);
    pair is HSIC_u(K, L) / sqrt(HSIC_u(K, K) HSIC_u(L, L)) (Kornblith et al. 2019; Song et al. 2012)."""
    return _prepare_debiased, _pair_debiased


def debiased_linear_cka(X: Any, Y: Any) -> float:
    """Debiased linear CKA (unbiased HSIC of Song et al. 2012) in feature space, O(n p^2).

    Expands HSIC_u(K, L) for K = X X^T, L = Y Y^T with K~ = K - diag(K):
    tr(K~ L~) = ||Y^T X||_F^2 - sum_i k_ii l_ii, 1^T K~ 1 = ||X^T 1||^2 - tr K,
    1^T K~ L~ 1 = (K 1 - diag K) . (L 1 - diag L), where K 1 = X (X^T 1).
    Equal to :func:`debiased_linear_cka_gram` (tested). Needs n >= 4; 0 against a constant side.
    """
    return apply_steps(debiased_cka_steps(), X, Y, what="debiased CKA")


# ------------------------------------------------------------------ RBF CKA
@dataclass(frozen=True, eq=False)
class CenteredKernel:
    """Per-network statistics of RBF CKA: the centered kernel H K H (n x n) and ||H K H||_F^2."""

    K: np.ndarray
    sq_norm: float

    @property
    def n_samples(self) -> int:
        return int(self.K.shape[0])


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
        with np.errstate(over="ignore", under="ignore"):  # an extreme sigma against the data: inf or 0
            s2 = float(np.float64(sigma) ** 2)
    # d2 / (2 s2), with 0 on the diagonal (and wherever rows coincide) even when s2 under- or overflows
    with np.errstate(over="ignore", divide="ignore"):
        return np.exp(-np.divide(d2, 2.0 * s2, out=np.zeros_like(d2), where=d2 > 0))


def _prepare_rbf(X: Any, *, sigma: float | None, sigma_fraction: float | None) -> CenteredKernel:
    A, e = scale_to_unit(as_finite_matrix(X))  # an absolute sigma scales with X: the kernel is unchanged
    K = _center_gram(_rbf_gram(A, None if sigma is None else float(times_power_of_two(float(sigma), -e)),
                               sigma_fraction))
    return CenteredKernel(K, float((K * K).sum()))


def _pair_rbf(a: CenteredKernel, b: CenteredKernel) -> float:
    check_same_samples(a.n_samples, b.n_samples, names=("X", "Y"), what="RBF CKA")
    return _ratio(float((a.K * b.K).sum()), a.sq_norm * b.sq_norm)


def rbf_cka_steps(sigma: float | None = None, sigma_fraction: float | None = None) -> Steps:
    """RBF CKA as (prepare, pair): prepare builds the centered kernel H K H with
    K_ij = exp(-||x_i - x_j||^2 / (2 sigma^2)); pair is <HKH, HLH> / (||HKH|| ||HLH||).

    Give exactly one of ``sigma`` (absolute bandwidth) or ``sigma_fraction`` (times the median
    pairwise distance of each network's own rows; Kornblith et al. 2019 use 0.5).
    """
    if (sigma is None) == (sigma_fraction is None):
        raise InputError("give exactly one of sigma= (absolute bandwidth) or sigma_fraction= (x median distance); "
                         "to set sigma on a MEASURES entry whose default is sigma_fraction=0.5, pass "
                         "sigma_fraction=None with it.")
    if (sigma is not None and not sigma > 0) or (sigma_fraction is not None and not sigma_fraction > 0):
        raise InputError("the RBF bandwidth must be positive.")
    return functools.partial(_prepare_rbf, sigma=sigma, sigma_fraction=sigma_fraction), _pair_rbf


def rbf_cka(X: Any, Y: Any, *, sigma: float | None = None, sigma_fraction: float | None = None) -> float:
    """RBF-kernel CKA with bandwidth ``sigma`` (absolute) or ``sigma_fraction`` x the median pairwise distance.

    CKA(K, L) = <HKH, HLH>_F / (||HKH||_F ||HLH||_F), K_ij = exp(-||x_i - x_j||^2 / (2 sigma^2))
    (Kornblith et al., ICML 2019). With neither given, ``sigma_fraction=0.5`` (their choice, and the
    ``MEASURES["rbf_cka"]`` default).
    """
    if sigma is None and sigma_fraction is None:
        sigma_fraction = 0.5
    return apply_steps(rbf_cka_steps(sigma, sigma_fraction), X, Y, what="RBF CKA")


# ------------------------------------------------------------------ from statistics, dispatch
def linear_cka_from_stats(stats: CrossGramStats) -> float:
    """Linear CKA from :class:`~deepspan.linalg.CrossGramStats`: ||S_xy||^2 / (||S_xx|| ||S_yy||).

    S_xx = X_c^T X_c, S_yy = Y_c^T Y_c, S_xy = X_c^T Y_c, accumulated batch by batch
    (:meth:`~deepspan.linalg.CrossGramAccumulator.finalize`); equal to :func:`linear_cka` on the
    data (Kornblith et al. 2019). A side whose centered scatter is within 1e-12 (relative) of zero
    is constant: CKA 0 (the stated rule; merging batch means leaves rounding residue that CKA's
    scale invariance would magnify). Each side's statistics are first divided by an exact power of
    two 4^k (2^k about its largest |mean| or sqrt(S_jj); S_xy by 2^(k_x + k_y)), so the fourth powers
    in the formula neither overflow nor underflow: the value is the same at every feature scale.
    """
    if not isinstance(stats, CrossGramStats):
        raise InputError(
            f"linear_cka_from_stats needs CrossGramStats (from CrossGramAccumulator.finalize()), "
            f"got {type(stats).__name__}."
        )
    (Sxx, ex, kx), (Syy, ey, ky) = _unit_scatter(stats.a), _unit_scatter(stats.b)
    for S, energy in ((Sxx, ex), (Syy, ey)):
        if np.trace(S) <= 1e-24 * max(energy, 1e-300):
            return 0.0
    Sxy = times_power_of_two(stats.cross_gram(True), -(kx + ky))
    return _ratio(float(np.linalg.norm(Sxy) ** 2), float(np.linalg.norm(Sxx) ** 2) * float(np.linalg.norm(Syy) ** 2))


def _unit_scatter(side: GramStats) -> tuple[np.ndarray, float, int]:
    """(S 4^-k, ||F||_F^2 4^-k, k) for one side's statistics, with 2^k about the larger of max|mu| and
    sqrt(max S_jj): the centered scatter and the uncentered energy brought near 1 by an exact power of two."""
    k = max(scale_exponent(side.mean), (scale_exponent(side.scatter) + 1) // 2)
    S, mu = times_power_of_two(side.scatter, -2 * k), times_power_of_two(side.mean, -k)
    return S, float(np.trace(S)) + side.n_samples * float(mu @ mu), k


def cka(X: Any, Y: Any, kernel: str = "linear", debiased: bool = False, **kwargs: Any) -> float:
    """CKA with ``kernel`` ``"linear"`` (optionally ``debiased``) or ``"rbf"`` (``sigma`` / ``sigma_fraction``).

    Dispatches to :func:`linear_cka`, :func:`debiased_linear_cka` or :func:`rbf_cka` (Kornblith et al. 2019).
    """
    if kernel == "linear":
        if kwargs:
            raise InputError(f"linear CKA takes no parameters, got {sorted(kwargs)}; sigma/sigma_fraction are for "
                             f"kernel='rbf'.")
        return debiased_linear_cka(X, Y) if debiased else linear_cka(X, Y)
    if kernel == "rbf":
        if debiased:
            raise InputError("debiased CKA is implemented for the linear kernel only.")
        return rbf_cka(X, Y, **kwargs)
    raise InputError(f"unknown kernel {kernel!r}; choose 'linear' or 'rbf'.")
