"""Canonical correlation analysis and its descendants, SVCCA and PWCCA.

CCA. For X (n x p1), Y (n x p2), column-centered by default, with orthonormal
bases Q_x, Q_y of their column spans (thin SVD with a relative rank cut-off
``rank_tol``, so constant, duplicated and dependent columns are dropped by a
stated rule), the canonical correlations are the singular values rho_i of
Q_x^T Q_y (Hotelling 1936; Bjorck and Golub 1973); there are min(rank X, rank Y) of them.
Summaries: mean rho (``cca``) and mean rho^2 (``cca_mean_sq``, Kornblith et al. 2019's R^2_CCA,
whose divisor min(p1, p2) equals min(rank X, rank Y) for full-rank inputs; dividing by the ranks
keeps cca(X, X) = 1 when X has dead or duplicated neurons; its published demo value
0.54312 is for *uncentered* inputs: ``center=False``). A constant side has no basis: 0.

SVCCA (Raghu, Gilmer, Yosinski, Sohl-Dickstein, NeurIPS 2017): reduce each
side by SVD to its top ``dims`` directions, or to the fewest that keep
``variance`` of its variance (default 0.99), then mean canonical correlation.

PWCCA (Morcos, Raghu, Bengio, NeurIPS 2018): the canonical correlations
weighted by how much of one side's neurons each canonical direction accounts for:
alpha_i proportional to sum_j |<h_i, x_j>|, normalised to sum to 1; PWCCA = sum_i alpha_i rho_i
(not symmetric). ``pwcca`` follows the authors' published code (the side with fewer neurons,
directions with the neuron means added back, raw activations); ``pwcca_centered`` is the centered
form of the paper's words, with X as the weighting side.

Prepare + pair (DESIGN.md). The steps factories ``cca_steps(center, rank_tol)``,
``cca_mean_sq_steps(center, rank_tol)``, ``svcca_steps(dims, variance)``, ``pwcca_steps(rank_tol)`` and
``pwcca_centered_steps(rank_tol)``
return ``(prepare, pair)``: prepare computes one network's orthonormal basis (after centering and,
for SVCCA, the SVD reduction), pair the singular values of Q_x^T Q_y and their summary. The public
functions are ``pair(prepare(X), prepare(Y))`` of the same steps, and so are the ``MEASURES`` entries.
The CCA and SVCCA prepares start from :func:`~deepspan.measures.alignment.as_unit_matrix` (X times
the exact power of two that puts max|X| in [0.5, 1)), so their values are the same at any feature scale.

Procrustes and the angular shape metric live in :mod:`deepspan.measures.shape`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg

from deepspan.errors import InputError
from deepspan.linalg.checks import check_same_samples
from deepspan.measures.alignment import Steps, apply_steps, as_unit_matrix

__all__ = [
    "RANK_TOL",
    "SpanBasis",
    "ReducedBasis",
    "WeightedBasis",
    "ProjectionSide",
    "canonical_correlations",
    "cca",
    "cca_mean_sq",
    "svcca",
    "pwcca",
    "pwcca_centered",
    "cca_steps",
    "cca_mean_sq_steps",
    "svcca_steps",
    "pwcca_steps",
    "pwcca_centered_steps",
]

#: Singular values below rank_tol * s_max are dropped when forming a basis.
RANK_TOL = 1e-10


def _basis(A: np.ndarray, rank_tol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Orthonormal basis of span(A) with a relative rank cut: (U_r, s_r, V_r)."""
    if not A.any():
        return np.zeros((A.shape[0], 0)), np.zeros(0), np.zeros((A.shape[1], 0))
    U, s, Vt = scipy.linalg.svd(A, full_matrices=False, check_finite=False)
    keep = s > rank_tol * s[0]
    return U[:, keep], s[keep], Vt[keep].T


def _check_rank_tol(rank_tol: float) -> float:
    rank_tol = float(rank_tol)
    if not (0.0 <= rank_tol < 1.0):
        raise InputError(f"rank_tol must be in [0, 1) (a cut relative to the largest singular value), got {rank_tol}.")
    return rank_tol


def _correlations(Qa: np.ndarray, Qb: np.ndarray) -> np.ndarray:
    """Singular values of Qa^T Qb clipped to [0, 1], descending; empty when a basis is empty."""
    if Qa.shape[1] == 0 or Qb.shape[1] == 0:
        return np.zeros(0)
    return np.clip(np.linalg.svd(Qa.T @ Qb, compute_uv=False), 0.0, 1.0)


# ------------------------------------------------------------------ CCA, mean CCA, mean squared CCA
@dataclass(frozen=True, eq=False)
class SpanBasis:
    """Per-network statistics of CCA: an orthonormal basis Q (n x rank) of span(X_c) (or of span(X))."""

    Q: np.ndarray
    centered: bool

    @property
    def n_samples(self) -> int:
        return int(self.Q.shape[0])


def _prepare_basis(X: Any, *, center: bool, rank_tol: float) -> SpanBasis:
    A = as_unit_matrix(X)
    if center:
        A = A - A.mean(0)
    return SpanBasis(_basis(A, rank_tol)[0], bool(center))


def _pair_correlations(a: SpanBasis, b: SpanBasis) -> np.ndarray:
    check_same_samples(a.n_samples, b.n_samples, names=("X", "Y"), what="CCA")
    return _correlations(a.Q, b.Q)


def _pair_cca(a: SpanBasis, b: SpanBasis) -> float:
    rho = _pair_correlations(a, b)
    return float(rho.mean()) if rho.size else 0.0


def _pair_cca_mean_sq(a: SpanBasis, b: SpanBasis) -> float:
    rho = _pair_correlations(a, b)
    return float((rho**2).mean()) if rho.size else 0.0


def cca_steps(center: bool = True, rank_tol: float = RANK_TOL) -> Steps:
    """Mean CCA as (prepare, pair): prepare is the orthonormal basis Q of span(X_c) (rank cut ``rank_tol``),
    pair the mean of the singular values of Q_x^T Q_y (0 when a side is constant)."""
    return functools.partial(_prepare_basis, center=bool(center), rank_tol=_check_rank_tol(rank_tol)), _pair_cca


def cca_mean_sq_steps(center: bool = True, rank_tol: float = RANK_TOL) -> Steps:
    """Mean squared CCA as (prepare, pair): the bases of :func:`cca_steps`, pair ||Q_y^T Q_x||_F^2 / min(ranks)."""
    return (functools.partial(_prepare_basis, center=bool(center), rank_tol=_check_rank_tol(rank_tol)),
            _pair_cca_mean_sq)


def canonical_correlations(X: Any, Y: Any, center: bool = True, rank_tol: float = RANK_TOL) -> np.ndarray:
    """Canonical correlations (descending) of X and Y: singular values of Q_x^T Q_y.

    Their number is min(rank X, rank Y); an empty result (a constant side) means no correlation.
    Hotelling (1936), computed as the cosines of the principal angles between the (centered)
    column spans (Bjorck and Golub 1973).
    """
    steps = (functools.partial(_prepare_basis, center=bool(center), rank_tol=_check_rank_tol(rank_tol)),
             _pair_correlations)
    return apply_steps(steps, X, Y, what="CCA")


def cca(X: Any, Y: Any, center: bool = True, rank_tol: float = RANK_TOL) -> float:
    """Mean of the min(rank X, rank Y) canonical correlations, (1/m) sum_i rho_i (0 when a side is constant)."""
    return apply_steps(cca_steps(center, rank_tol), X, Y, what="CCA")


def cca_mean_sq(X: Any, Y: Any, center: bool = True, rank_tol: float = RANK_TOL) -> float:
    """Mean squared canonical correlation ||Q_y^T Q_x||_F^2 / min(rank X, rank Y) (Kornblith et al.'s R^2_CCA)."""
    return apply_steps(cca_mean_sq_steps(center, rank_tol), X, Y, what="CCA")


# ------------------------------------------------------------------ SVCCA
@dataclass(frozen=True, eq=False)
class ReducedBasis:
    """Per-network statistics of SVCCA: the ``k`` kept SVD directions of X_c (R = U_k S_k) and a basis Q of span(R)."""

    Q: np.ndarray
    k: int

    @property
    def n_samples(self) -> int:
        return int(self.Q.shape[0])


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


def _prepare_svcca(X: Any, *, dims: int | None, variance: float | None) -> ReducedBasis:
    A = as_unit_matrix(X)  # the variance fractions use s^2, which over- or underflows at extreme scales
    R = _reduce(A - A.mean(0), dims, variance)
    return ReducedBasis(_basis(R, RANK_TOL)[0], int(R.shape[1]))


def _pair_svcca(a: ReducedBasis, b: ReducedBasis) -> float:
    check_same_samples(a.n_samples, b.n_samples, names=("X", "Y"), what="SVCCA")
    if a.k == 0 or b.k == 0:
        return 0.0
    rho = _correlations(a.Q, b.Q)
    return float(rho.sum() / min(a.k, b.k))


def svcca_steps(dims: int | None = None, variance: float | None = 0.99) -> Steps:
    """SVCCA as (prepare, pair): prepare SVD-reduces X_c to ``dims`` directions (or the fewest keeping
    ``variance`` of its variance; ``dims`` wins when both are given), pair the mean canonical
    correlation of the two reductions (Raghu et al., NeurIPS 2017)."""
    if dims is not None:
        if dims < 1:
            raise InputError(f"dims must be >= 1, got {dims}.")
        variance = None
    elif variance is None or not (0 < variance <= 1):
        raise InputError(f"variance must be in (0, 1], got {variance}.")
    return functools.partial(_prepare_svcca, dims=dims, variance=variance), _pair_svcca


def svcca(X: Any, Y: Any, dims: int | None = None, variance: float | None = 0.99) -> float:
    """SVCCA: SVD-reduce each centered side to ``dims`` directions (or ``variance`` kept), then mean CCA.

    Raghu, Gilmer, Yosinski, Sohl-Dickstein, "SVCCA: Singular Vector Canonical Correlation Analysis
    for Deep Learning Dynamics and Interpretability", NeurIPS 2017. The mean is over min(k_x, k_y),
    the numbers of directions kept.
    """
    return apply_steps(svcca_steps(dims, variance), X, Y, what="SVCCA")


# ------------------------------------------------------------------ PWCCA (the published code's rule)
@dataclass(frozen=True, eq=False)
class ProjectionSide:
    """Per-network statistics of PWCCA as Morcos et al.'s code computes it: the raw activations A,
    their neuron means m, the centered A_c and the symmetric whitening basis Z = U_r V_r^T of A_c
    (A_c = U S V^T; Z^T Z' equals the code's Sigma_xx^{-1/2} Sigma_xy Sigma_yy^{-1/2}).

    A is first multiplied by the exact power of two that puts max|A| in [0.5, 1) (``as_unit_matrix``):
    PWCCA is invariant to that factor, and the products below then stay in range for any finite scale
    of the features."""

    A: np.ndarray
    mean: np.ndarray
    Ac: np.ndarray
    Z: np.ndarray

    @property
    def n_samples(self) -> int:
        return int(self.A.shape[0])

    @property
    def n_neurons(self) -> int:
        return int(self.A.shape[1])


def _prepare_pwcca(X: Any, *, rank_tol: float) -> ProjectionSide:
    A = as_unit_matrix(X)  # max|A| in [0.5, 1) by an exact power of two: the same value at any feature scale
    mean = A.mean(0)
    Ac = A - mean
    # The code's remove_small step drops neurons whose variance is below its epsilon; here a neuron is
    # dropped when its centered norm is at most rank_tol times the largest one (dead or constant neurons).
    norms = np.sqrt(np.einsum("ij,ij->j", Ac, Ac))
    keep = norms > rank_tol * norms.max() if norms.size and norms.max() > 0 else np.zeros(norms.size, bool)
    A, mean, Ac = A[:, keep], mean[keep], Ac[:, keep]
    U, _, V = _basis(Ac, rank_tol)
    return ProjectionSide(A, mean, Ac, U @ V.T)


def _pair_pwcca(a: ProjectionSide, b: ProjectionSide) -> float:
    check_same_samples(a.n_samples, b.n_samples, names=("X", "Y"), what="PWCCA")
    if a.n_neurons == 0 or b.n_neurons == 0:
        return 0.0
    # The code weights by the side with fewer neurons (X on a tie); its directions are the whitened
    # left singular vectors applied to the centered activations, with each neuron's mean added back.
    # The mean term makes each direction's sign matter, so the SVD is taken with the weighting side
    # on the left, as the code does (its singular vectors, with LAPACK's signs).
    side, other = (a, b) if a.n_neurons <= b.n_neurons else (b, a)
    dirs, rho, _ = np.linalg.svd(side.Z.T @ other.Z, full_matrices=True)
    # With N <= neurons (the code asserts N > neurons) only the first N directions get a weight; the
    # correlations beyond the rank, which are 0, are the ones left out (our rule).
    k = min(rho.size, side.n_samples)
    rho = np.clip(rho[:k], 0.0, 1.0)
    D = side.Ac @ dirs[:, :k] + side.mean[:k]
    P, _ = np.linalg.qr(D)
    weights = np.abs(P.T @ side.A).sum(1)
    total = float(weights.sum())
    if total <= 0:
        return 0.0
    return float(weights @ rho / total)


def pwcca_steps(rank_tol: float = RANK_TOL) -> Steps:
    """PWCCA as (prepare, pair), the rule of Morcos et al.'s published code (google/svcca, pwcca.py):
    weights from the side with fewer neurons, alpha_i ~ sum_j |<p_i, x_j>| over its raw activations x_j,
    p_i the orthonormalised (QR, in order) directions A_c u_i + m_i (mean added back)."""
    return functools.partial(_prepare_pwcca, rank_tol=_check_rank_tol(rank_tol)), _pair_pwcca


def pwcca(X: Any, Y: Any, rank_tol: float = RANK_TOL) -> float:
    """Projection-weighted CCA as Morcos et al.'s published code computes it: sum_i alpha_i rho_i.

    Morcos, Raghu, Bengio, "Insights on representational similarity in neural networks with
    canonical correlation", NeurIPS 2018; code: github.com/google/svcca, ``pwcca.compute_pwcca``.
    Steps of that code, with rows = samples here:

    0. neurons without variance are dropped (the code's ``remove_small`` with its epsilon; here: a centered
       norm at most ``rank_tol`` times the largest, our rule);
    1. rho_i, u_i: singular values and vectors of Sigma_xx^{-1/2} Sigma_xy Sigma_yy^{-1/2} (computed
       here as Z_x^T Z_y, Z the symmetric whitening basis of the centered activations; the rank cut
       ``rank_tol`` replaces the code's pseudo-inverse, which it equals for full-rank inputs);
    2. the weighting side is the one with fewer neurons (X on a tie; the code's rule on its kept neurons);
    3. directions d_i = A_c u_i + m_i 1 (the centered activations times the *whitened* vector u_i,
       plus neuron i's mean, as the code writes it), orthonormalised in order by QR into p_i;
    4. alpha_i = sum_j |<p_i, a_j>| over the side's raw (uncentered) neurons a_j, normalised to sum 1.

    The result is invariant to isotropic scaling only (the added means break translation and
    permutation invariance, and make the value depend on the sign LAPACK gives each singular vector,
    as in the code), and not symmetric. Where canonical correlations repeat
    (e.g. several equal to 1 when N is barely above the widths), the directions inside that group are
    any rotation and alpha depends on which one LAPACK returns: the code's own value then varies with
    rounding. The centered, paper-style variant is :func:`pwcca_centered`. A side with no variance gives 0.
    Where the code's second branch (Y the smaller side) centers X's activations with Y's means, this
    function uses Y's own activations: that line of the code is evidently a slip.
    """
    return apply_steps(pwcca_steps(rank_tol), X, Y, what="PWCCA")


# ------------------------------------------------------------------ PWCCA, centered (the paper's words)
@dataclass(frozen=True, eq=False)
class WeightedBasis:
    """Per-network statistics of centered PWCCA: X_c (for the projection weights) and a basis Q of span(X_c)."""

    Xc: np.ndarray
    Q: np.ndarray

    @property
    def n_samples(self) -> int:
        return int(self.Xc.shape[0])


def _prepare_pwcca_centered(X: Any, *, rank_tol: float) -> WeightedBasis:
    A = as_unit_matrix(X)  # max|A| in [0.5, 1) by an exact power of two: the same value at any feature scale
    Ac = A - A.mean(0)
    return WeightedBasis(Ac, _basis(Ac, rank_tol)[0])


def _pair_pwcca_centered(a: WeightedBasis, b: WeightedBasis) -> float:
    check_same_samples(a.n_samples, b.n_samples, names=("X", "Y"), what="PWCCA (centered)")
    Qa, Qb = a.Q, b.Q
    if Qa.shape[1] == 0 or Qb.shape[1] == 0:
        return 0.0
    Ua, rho, _ = np.linalg.svd(Qa.T @ Qb, full_matrices=False)
    H = Qa @ Ua  # canonical variates of X (unit norm), one per canonical correlation
    alpha = np.abs(H.T @ a.Xc).sum(1)
    if alpha.sum() <= 0:
        return 0.0
    alpha = alpha / alpha.sum()
    return float(alpha @ np.clip(rho, 0.0, 1.0))


def pwcca_centered_steps(rank_tol: float = RANK_TOL) -> Steps:
    """Centered PWCCA as (prepare, pair): prepare keeps X_c and its basis, pair weights the canonical
    correlations by alpha_i ~ sum_j |<h_i, x_j>| over the first side's centered neurons."""
    return (functools.partial(_prepare_pwcca_centered, rank_tol=_check_rank_tol(rank_tol)),
            _pair_pwcca_centered)


def pwcca_centered(X: Any, Y: Any, rank_tol: float = RANK_TOL) -> float:
    """Projection-weighted CCA as the paper words it, on centered activations: sum_i alpha_i rho_i.

    Morcos, Raghu, Bengio, NeurIPS 2018, Section 2.2 (paraphrase): alpha_i is proportional to
    sum_j |<h_i, x_j>|, h_i = X_c w_i the i-th canonical variate of X, x_j X's neurons. Here X is always
    the weighting side and everything is centered, so the value is invariant to translation, isotropic
    scaling and neuron permutation (not symmetric). :func:`pwcca` follows the published code instead.
    """
    return apply_steps(pwcca_centered_steps(rank_tol), X, Y, what="PWCCA (centered)")
