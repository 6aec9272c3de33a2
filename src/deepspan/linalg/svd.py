"""Top singular triplets of a feature matrix by four float64 routes.

For a feature matrix F (N samples x d features), optionally column-centered
(F_c = F - 1 mu^T), ``top_singular`` returns the top-k left singular vectors
U (N x k), singular values and right singular vectors V (d x k) of F_c.

Routes (every one does its arithmetic in float64):

``exact``
    Thin SVD of the whole matrix (LAPACK gesdd via ``scipy.linalg.svd``).
    The reference the other routes are tested against; O(N d min(N, d)).
``gram``
    For N >> d. Accumulate G = F_c^T F_c over cache-sized row blocks
    (float64, Chan et al. pairwise centering, see ``streaming``), take the
    top eigenpairs G v = sigma^2 v with ``scipy.linalg.eigh`` on d x d, then
    u = F_c v / sigma in one more pass. Two passes over F.
``kernel``
    For d >> N (flattened conv maps, raw pixels). Accumulate the N x N kernel
    K = F_c F_c^T over column blocks (a column block holds whole columns, so
    each is centered exactly before its product), take its top eigenpairs
    K u = sigma^2 u and v = F_c^T u / sigma.
``krylov``
    For large N and d when only a few triplets are wanted. Block Krylov
    subspace iteration with full re-orthogonalisation and Rayleigh-Ritz on
    the smaller of F_c^T F_c (d x d) or F_c F_c^T (N x N), applied
    matrix-free: each iteration is *one* fused pass over F in cache-sized
    blocks, computing B^T (B X) for every block B. Iterates until every wanted
    Ritz pair (theta_j, y_j) has residual ||A y_j - theta_j y_j|| <= tol * theta_j
    (theta_j floored at 1e-3 theta_1), so the angle error of the top vector is
    about tol / (1 - (sigma_2/sigma_1)^2) radians. Values wanted without
    vectors need only ||A y_j - theta_j y_j|| <= value_tol * theta_1: such a
    Ritz value is within min(r, r^2 / delta) of an eigenvalue (delta: its
    distance to the rest of the spectrum), i.e. sigma_j^2 is accurate to at
    most value_tol * sigma_1^2 and usually far better. The block holds two
    vectors whenever two or more values are wanted, so a repeated top
    singular value (sigma_1 = sigma_2) is found, not skipped. The start block
    holds the column-sum direction F^T 1 (an excellent guess for the
    uncentered P-vector of non-negative features, estimated from every 8th
    block) plus seeded Gaussian columns. For float32 input a warm-start phase
    first runs the same iteration with float32 block products (no float64
    copy of each block: about half the cost of a pass) down to a residual of
    1e-5; the float64 phase then starts from its Ritz vectors and alone decides
    convergence, so the result has float64 accuracy. Uncentered, the column
    moments are gathered in the final pass, so the route costs (iterations +
    1) passes.

Resolution: the Gram, kernel and Krylov routes work with sigma^2, so they
resolve singular values down to ~1e-7 sigma_1 (sqrt of machine epsilon);
smaller ones are reported as 0 and their vectors completed orthonormally
(noted in ``notes``). The exact route resolves down to ~1e-12 sigma_1.

Checks without extra passes: the value scans for NaN/Inf and all-zero input
are not run up front on the fast routes; NaN/Inf propagate into every sum
the route forms, and a non-finite Gram, kernel or Krylov image triggers the
full diagnostic (how many, where the first is).

Scale: when the products of a route over- or underflow (a squared norm outside
[1e-250, 1e250]), ``top_singular`` runs the route again on F times the exact power
of two 2^-e that puts max|F| in [0.5, 1) (:func:`~deepspan.linalg.checks.scale_to_unit`)
and multiplies the singular values back by 2^e (the total energy by 4^e); the
vectors do not change. Only when ||F_c||_F^2 itself lies outside float64's normal
range (about 2.2e-308 .. 1.8e308) is F refused, with a message to rescale
(P-vectors and angles are scale-invariant). ``top_singular_both`` does not rescale:
it refuses squared norms outside [1e-250, 1e250].

``auto`` picks by shape (see :func:`choose_method`) and the result's
``method`` says which route ran.

Sign rule (applied by every route, so routes agree exactly): each left
singular vector u is oriented so that sum(u) > 0; when |sum(u)| <= 1e-8 sqrt(N)
(always the case for centered features, whose left vectors are orthogonal to
the all-ones vector), its largest-magnitude entry (the first one, on ties) is
made positive. The right vector v is flipped with u, so F_c v = sigma u holds.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg

from deepspan.errors import ConvergenceWarning, InputError
from deepspan.linalg.blocks import BLOCK_BYTES, block_cols, block_rows, col_blocks, row_blocks
from deepspan.linalg.checks import (
    _all_zero_message,
    _describe_nonfinite,
    as_feature_matrix,
    check_rank_request,
    scale_exponent,
    times_power_of_two,
)
from deepspan.linalg.streaming import GramAccumulator, top_eigh

__all__ = ["METHODS", "SingularTriplets", "top_singular", "top_singular_both", "choose_method", "orient_signs"]

METHODS = ("auto", "exact", "gram", "kernel", "krylov")

#: Matrices with at most this many entries are small: the Gram/kernel route is instant.
_SMALL_ENTRIES = 1_000_000
#: At most this many wanted values/vectors count as "few" (Krylov pays off).
_FEW = 16
#: Above this min(N, d), a few values are cheaper by Krylov than by a Gram matrix.
_KRYLOV_MIN_SIDE = 768
#: Largest min(N, d) for which ``auto`` forms a Gram or kernel matrix.
_MAX_GRAM_SIDE = 4096


@dataclass(frozen=True)
class SingularTriplets:
    """Top singular triplets of F_c (F, column-centered when ``centered``).

    ``U`` is N x k, ``V`` is d x k; ``s`` holds the top ``n_values`` >= k singular
    values (only the first k have vectors). ``total_energy`` is ||F_c||_F^2,
    the sum of *all* squared singular values, so energy ratios need no full
    spectrum. ``passes`` counts full reads of F (None for ``exact``).
    """

    U: np.ndarray
    s: np.ndarray
    V: np.ndarray
    total_energy: float
    n_samples: int
    n_features: int
    centered: bool
    method: str
    mean: np.ndarray
    converged: bool = True
    passes: int | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def k(self) -> int:
        return int(self.U.shape[1])


def choose_method(n: int, d: int, n_vectors: int, n_values: int | None = None) -> str:
    """The route ``method="auto"`` takes for an N x d matrix.

    Costs measured on the 2-core development machine (bench/pvector.py), in
    passes of the memory-bandwidth floor F @ v: the float64 Gram/kernel route
    costs about min(N, d) / 4 passes (compute-bound GEMM), one Krylov
    iteration 5-8 passes. Hence:

    * a matrix with at most 10^6 entries: ``gram`` (d <= N) or ``kernel`` (d > N);
    * only the top value and vector wanted: ``krylov`` (typically ~6 iterations);
    * a few values (<= 16) and min(N, d) > 768: ``krylov`` -- with a budget of
      about one Gram's cost, after which it falls back to ``gram``/``kernel``;
    * otherwise ``gram``/``kernel`` while min(N, d) <= 4096, else ``krylov``.
    """
    m = max(n_vectors, n_values or n_vectors)
    dense = "gram" if d <= n else "kernel"
    if n * d <= _SMALL_ENTRIES or m >= min(n, d):
        return dense
    if m == 1:
        return "krylov"
    if m <= _FEW and min(n, d) > _KRYLOV_MIN_SIDE:
        return "krylov"
    return dense if min(n, d) <= _MAX_GRAM_SIDE else "krylov"


def orient_signs(U: np.ndarray, V: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply the documented sign rule column by column (see module docstring); returns new arrays."""
    U = np.array(U, dtype=np.float64, copy=True)
    V = None if V is None else np.array(V, dtype=np.float64, copy=True)
    n = U.shape[0]
    threshold = 1e-8 * math.sqrt(n)
    for j in range(U.shape[1]):
        total = U[:, j].sum()
        if abs(total) > threshold:
            flip = total < 0
        else:
            flip = U[int(np.argmax(np.abs(U[:, j]))), j] < 0
        if flip:
            U[:, j] *= -1
            if V is not None:
                V[:, j] *= -1
    return U, V


def _centered_moments(F: np.ndarray) -> tuple[np.ndarray, float]:
    """Column means and the centered ||F - 1 mu^T||_F^2, float64, in one pass.

    Per-block centered sums are merged with the Chan et al. pairwise update
    (see ``streaming``), so the result never subtracts two large numbers.
    """
    count, mean, m2 = 0, np.zeros(F.shape[1]), np.zeros(F.shape[1])
    for _, B in row_blocks(F):
        nb = B.shape[0]
        mb = B.mean(0)
        Bc = B - mb
        delta = mb - mean
        tot = count + nb
        m2 += np.einsum("ij,ij->j", Bc, Bc) + delta**2 * (count * nb / tot)
        mean += delta * (nb / tot)
        count = tot
    return mean, float(m2.sum())


def _left_from_right(F: np.ndarray, V: np.ndarray, s: np.ndarray, mean: np.ndarray | None,
                     moments: bool = False) -> tuple[np.ndarray, np.ndarray | None, float]:
    """U = F_c V / s in one pass over row blocks.

    With ``moments`` the same pass also returns the column means and ||F||_F^2
    (uncentered), so the Krylov route needs no separate pass for them.
    """
    n, d = F.shape
    U = np.empty((n, V.shape[1]))
    shift = None if mean is None else mean @ V
    colsum = np.zeros(d) if moments else None
    sumsq = 0.0
    for i, B in row_blocks(F):
        T = B @ V
        if shift is not None:
            T -= shift
        U[i : i + B.shape[0]] = T
        if moments:
            colsum += B.sum(0)
            sumsq += float(np.einsum("ij,ij->", B, B))
    return U / s, (None if colsum is None else colsum / n), sumsq


def _right_from_left(F: np.ndarray, U: np.ndarray, s: np.ndarray, center: bool,
                     moments: bool = False) -> tuple[np.ndarray, np.ndarray | None, float]:
    """V = F_c^T U / s = F^T (H U) / s in one pass over column blocks (and optionally the moments)."""
    if center:
        U = U - U.mean(0)
    n, d = F.shape
    V = np.empty((d, U.shape[1]))
    mean = np.empty(d) if moments else None
    sumsq = 0.0
    for j, C in col_blocks(F):
        V[j : j + C.shape[1]] = C.T @ U
        if moments:
            mean[j : j + C.shape[1]] = C.mean(0)
            sumsq += float(np.einsum("ij,ij->", C, C))
    return V / s, mean, sumsq


def _safe(s: np.ndarray, k: int) -> np.ndarray:
    """Divisors for u = F v / sigma: zero singular values divide by 1 (their vectors are completed later)."""
    return np.where(s[:k] > 0, s[:k], 1.0)


@dataclass
class _RouteOut:
    U: np.ndarray
    s: np.ndarray
    V: np.ndarray
    total: float
    mean: np.ndarray
    passes: int | None
    converged: bool = True


class _ProductOverflow(InputError):
    """F is finite but a route's products overflow float64 (``top_singular`` then rescales F and retries)."""


def _check_finite_result(F: np.ndarray, *arrays: np.ndarray) -> None:
    """Lazy NaN/Inf check: non-finite input always makes these sums non-finite.

    The fast routes do not scan F for NaN/Inf up front (that would cost two
    extra passes); NaN and Inf propagate into every product with F, so a
    non-finite Gram matrix, kernel or Krylov image means F had bad values (or
    overflowed) and the full diagnostic runs only then.
    """
    if all(np.isfinite(a).all() for a in arrays):
        return
    if not np.isfinite(F).all():
        raise InputError(_describe_nonfinite(F, "F"))
    raise _ProductOverflow(
        "F is finite but its products overflow float64 (values around 1e154 or larger); "
        "rescale the features, e.g. F / np.abs(F).max()."
    )


def _exact(F, k, n_values, center, **_):
    if not np.isfinite(F).all():
        raise InputError(_describe_nonfinite(F, "F"))
    A = np.array(F, dtype=np.float64)
    mean = A.mean(0)
    if center:
        A -= mean
    try:
        U, s, Vt = scipy.linalg.svd(A, full_matrices=False, lapack_driver="gesdd", check_finite=False)
    except np.linalg.LinAlgError:
        U, s, Vt = scipy.linalg.svd(A, full_matrices=False, lapack_driver="gesvd", check_finite=False)
    return _RouteOut(U[:, :k], s[:n_values], Vt[:k].T, float(np.einsum("ij,ij->", A, A)), mean, None)


def _gram(F, k, n_values, center, **_):
    n, d = F.shape
    rows = block_rows(d, 4 * BLOCK_BYTES)  # GEMM wants taller blocks than the fused Krylov products
    if center:  # per-block centered scatter merged exactly (Chan et al.): no cancellation
        acc = GramAccumulator()
        for _, B in row_blocks(F, rows):
            acc._add_block(B, check=False)  # NaN/Inf and over/underflow: diagnosed from G below
        stats = acc.finalize()
        G, mean = stats.gram(True), stats.mean
    else:  # F^T F needs no centering: plain symmetric rank-k updates
        G, colsum = np.zeros((d, d)), np.zeros(d)
        for _, B in row_blocks(F, rows):
            G += B.T @ B
            colsum += B.sum(0)
        G, mean = 0.5 * (G + G.T), colsum / n
    _check_finite_result(F, G)
    lam, V = top_eigh(G, n_values)
    s = np.sqrt(lam)
    V = V[:, :k]
    U, _, _ = _left_from_right(F, V, _safe(s, k), mean if center else None)
    return _RouteOut(U, s, V, float(np.trace(G)), mean, 2)


def _kernel(F, k, n_values, center, **_):
    n, d = F.shape
    K = np.zeros((n, n))
    mean = np.empty(d)
    for j, C in col_blocks(F, block_cols(n, 4 * BLOCK_BYTES)):
        mc = C.mean(0)
        mean[j : j + C.shape[1]] = mc
        if center:  # a column block holds whole columns: center it exactly before the product
            C -= mc
        K += C @ C.T
    _check_finite_result(F, K)
    K = 0.5 * (K + K.T)
    lam, U = top_eigh(K, n_values)
    s = np.sqrt(lam)
    U = U[:, :k]
    V, _, _ = _right_from_left(F, U, _safe(s, k), center)
    return _RouteOut(U, s, V, float(np.trace(K)), mean, 2)


#: Below this fraction of sigma_1 the Gram, kernel and Krylov routes cannot resolve a
#: singular value (they work with sigma^2, so with ~sqrt(machine epsilon) relative accuracy).
_UNRESOLVED = 1e-7
#: Squared Frobenius norms outside this range are refused: products of such features
#: over- or underflow float64 (rescaling F leaves every P-vector and angle unchanged).
_ENERGY_RANGE = (1e-250, 1e250)


def _check_scale(A: np.ndarray, out: "_RouteOut", center: bool) -> None:
    """Refuse an all-zero (or, centered, constant) matrix and magnitudes float64 cannot square."""
    total = out.total
    lo, hi = _ENERGY_RANGE
    in_range = lo <= total <= hi
    amax = None if in_range else float(np.abs(A).max())
    if amax == 0:
        raise InputError(_all_zero_message(A.shape, "F"))
    ref = A.shape[0] * float(out.mean @ out.mean)  # ||1 mu^T||_F^2, the energy centering removed
    if center and lo <= ref <= hi and total <= 1e-24 * ref:
        raise InputError(
            "F is constant across samples (all rows equal up to rounding), so it is all zeros after "
            "centering and has no singular vectors; use center=False or check the features."
        )
    if in_range:
        return
    raise InputError(
        f"F's magnitude (max |F| = {amax:.3g}, ||F||^2 = {total:.3g}) is outside the range where "
        f"float64 can square it ({lo:g} .. {hi:g}); rescale it, e.g. F / np.abs(F).max() "
        f"(P-vectors and angles do not change under scaling)."
    )


def _orthonormalize_in_order(U: np.ndarray) -> np.ndarray:
    """Modified Gram-Schmidt in column order: u_1 keeps its direction exactly, later
    columns lose only the O(eps sigma_1^2 / sigma_j^2) non-orthogonality of u = F v / sigma."""
    U = U.copy()
    for j in range(U.shape[1]):
        for _ in range(2):
            for i in range(j):
                U[:, j] -= (U[:, i] @ U[:, j]) * U[:, i]
        U[:, j] /= np.linalg.norm(U[:, j])
    return U


def _complete_null(U: np.ndarray, s: np.ndarray, threshold: float, k: int) -> tuple[np.ndarray, bool]:
    """Replace vectors whose singular value is numerically zero by an orthonormal completion.

    Such vectors are not determined by the matrix; a deterministic completion
    (Gram-Schmidt of the standard basis against the determined ones) keeps U
    orthonormal. Returns (U, whether anything was replaced).
    """
    tiny = s[:k] <= threshold
    if not tiny.any():
        return U, False
    good = U[:, ~tiny]
    n = U.shape[0]
    basis = [good[:, j] for j in range(good.shape[1])]
    out = []
    e = 0
    while len(out) < int(tiny.sum()):
        x = np.zeros(n)
        x[e] = 1.0
        e += 1
        for _ in range(2):
            for b in basis:
                x -= (b @ x) * b
        nx = np.linalg.norm(x)
        if nx > 1e-6:
            x /= nx
            basis.append(x)
            out.append(x)
    U = U.copy()
    U[:, tiny] = np.column_stack(out)
    return U, True


def _block_krylov(
    apply: Callable[[np.ndarray], np.ndarray],
    dim: int,
    n_vectors: int,
    n_values: int,
    tol: float,
    value_tol: float,
    max_basis: int,
    start: np.ndarray | None,
    rng: np.random.Generator,
    start_noise: float = 0.01,
) -> tuple[np.ndarray, np.ndarray, bool, int]:
    """Top eigenpairs of a symmetric PSD operator by block Krylov iteration + Rayleigh-Ritz.

    ``start`` (a vector or a dim x m block) seeds the first columns of the start
    block, each plus ``start_noise`` of a seeded Gaussian direction; the rest are
    seeded Gaussian.

    Keeps the basis Q and its image W = A Q, so the Rayleigh quotient Q^T A Q
    and the residuals of the Ritz pairs are exact and cost no extra passes.
    Returns (theta, Y, converged, n_applications).
    """
    b = min(dim, max(n_vectors, 2 if n_values > 1 else 1))
    X = rng.standard_normal((dim, b))
    if start is not None:
        S = start.reshape(dim, -1)[:, :b]
        norms = np.linalg.norm(S, axis=0)
        for j in np.flatnonzero(norms > 0):
            # keep a 1% random component: a start that is exactly a lower eigenvector
            # would make the Krylov space invariant before it saw the top one
            X[:, j] = S[:, j] / norms[j] + start_noise * X[:, j] / np.sqrt(dim)
    Q, _ = np.linalg.qr(X)
    c = None  # power-of-two scale applied to A, so norms of W never over/underflow
    Qs: list[np.ndarray] = [Q]
    Ws: list[np.ndarray] = []
    applications = 0
    converged = False
    theta = np.zeros(0)
    Y = np.zeros((dim, 0))
    while True:
        W = apply(Qs[-1])
        applications += 1
        if c is None:
            peak = float(np.abs(W).max())
            c = 1.0 if peak == 0 else math.ldexp(1.0, min(1000, max(-1000, -math.frexp(peak)[1])))
        W = W * c
        Ws.append(W)
        Qa, Wa = np.hstack(Qs), np.hstack(Ws)
        T = Qa.T @ Wa
        T = 0.5 * (T + T.T)
        w, C = np.linalg.eigh(T)
        w, C = w[::-1][:n_values], C[:, ::-1][:, :n_values]
        Y, AY = Qa @ C, Wa @ C
        res = np.linalg.norm(AY - Y * w, axis=0)
        theta = w
        scale = np.maximum(w, 1e-3 * max(w[0], np.finfo(float).tiny))
        ok_vec = np.all(res[:n_vectors] <= tol * scale[:n_vectors])
        ok_val = np.all(res[n_vectors:] <= value_tol * scale[0])
        if (ok_vec and ok_val) or Qa.shape[1] >= dim:
            converged = True
            break
        if Qa.shape[1] + b > max_basis:
            break
        Z = W - Qa @ (Qa.T @ W)
        Z -= Qa @ (Qa.T @ Z)
        Qn, R = np.linalg.qr(Z)
        keep = np.abs(np.diag(R)) > 1e-10 * max(np.linalg.norm(W), 1e-300)
        if not keep.any():  # the Krylov space is invariant: Rayleigh-Ritz is exact
            converged = True
            break
        Qs.append(Qn[:, keep])
    theta = np.clip(theta, 0.0, None) / (c or 1.0)
    if len(theta) < n_values:  # the space became invariant: every other eigenvalue is 0
        pad = n_values - len(theta)
        theta = np.concatenate([theta, np.zeros(pad)])
        Y = np.hstack([Y, np.zeros((dim, pad))])
    return theta, Y, converged, applications


#: Residual tolerance of the float32 warm-start phase of the Krylov route (float32 products
#: are accurate to ~1e-7 relative; stopping well above that keeps the phase short).
_WARM_TOL = 1e-5


def _fused_apply_float32(F: np.ndarray, mean: np.ndarray | None) -> Callable[[np.ndarray], np.ndarray]:
    """X -> F_c^T F_c X with float32 block products accumulated in float64 (warm start only)."""
    n, d = F.shape
    rows = block_rows(d)

    def apply(X: np.ndarray) -> np.ndarray:
        X32 = X.astype(np.float32)
        out = np.zeros(X.shape)
        shift = None if mean is None else (mean @ X).astype(np.float32)
        tsum = np.zeros(X.shape[1])
        for i in range(0, n, rows):
            B = F[i : i + rows]
            T = B @ X32
            if shift is not None:
                T -= shift
                tsum += T.sum(0, dtype=np.float64)
            out += B.T @ T
        if mean is not None:
            out -= np.outer(mean, tsum)
        _check_finite_result(F, out)
        return out

    return apply


def _krylov(F, k, n_values, center, *, tol, value_tol, seed, max_basis):
    """Block Krylov route. Passes: [centered moments] + iterations + one final pass.

    Uncentered, the column moments are gathered during the final pass and the
    start direction F^T 1 (or F 1 when d > N) is estimated from every 8th block.
    """
    n, d = F.shape
    rng = np.random.default_rng(seed)
    passes = 1
    mean, total = (None, 0.0)
    if center:
        mean, total = _centered_moments(F)
        passes += 1

    def finite(W: np.ndarray) -> np.ndarray:
        _check_finite_result(F, W)
        return W

    if d <= n:

        def apply(X: np.ndarray) -> np.ndarray:
            out = np.zeros_like(X)
            shift = None if mean is None else mean @ X
            tsum = np.zeros(X.shape[1])
            for _, B in row_blocks(F):
                T = B @ X
                if shift is not None:
                    T -= shift
                    tsum += T.sum(0)
                out += B.T @ T
            if mean is not None:  # (B - 1 mu^T)^T T = B^T T - mu (1^T T)
                out -= np.outer(mean, tsum)
            return finite(out)

        start = None
        if not center:
            rows = block_rows(d)
            start = sum(F[i : i + rows].sum(0, dtype=np.float64) for i in range(0, n, 8 * rows))
        warm_its = 0
        if F.dtype == np.float32:
            # warm start: the same iteration with float32 block products (no float64 copy of
            # each block, ~2x cheaper per pass) down to float32 accuracy; the float64 phase
            # below then polishes from there and alone decides convergence
            apply32 = _fused_apply_float32(F, mean)
            _, Y32, _, warm_its = _block_krylov(apply32, d, k, n_values, _WARM_TOL, value_tol,
                                                min(max_basis, 24), start, rng)
            start = Y32
        theta, V, conv, its = _block_krylov(apply, d, k, n_values, tol, value_tol, max_basis, start, rng,
                                            start_noise=0.0 if warm_its else 0.01)
        its += warm_its
        s = np.sqrt(theta)
        V = V[:, :k]
        U, colmean, sumsq = _left_from_right(F, V, _safe(s, k), mean, moments=not center)
    else:

        def apply(Y: np.ndarray) -> np.ndarray:
            if center:
                Y = Y - Y.mean(0)
            out = np.zeros_like(Y)
            for _, C in col_blocks(F):
                out += C @ (C.T @ Y)
            if center:
                out -= out.mean(0)
            return finite(out)

        start = None
        if not center:
            cols = block_cols(n)
            start = sum(F[:, j : j + cols].sum(1, dtype=np.float64) for j in range(0, d, 8 * cols))
        theta, U, conv, its = _block_krylov(apply, n, k, n_values, tol, value_tol, max_basis, start, rng)
        s = np.sqrt(theta)
        U = U[:, :k]
        V, colmean, sumsq = _right_from_left(F, U, _safe(s, k), center, moments=not center)
    if not center:
        mean, total = colmean, sumsq
    return _RouteOut(U, s, V, total, mean, passes + its, conv)



def _finish(A: np.ndarray, out: "_RouteOut", route: str, k: int, center: bool, notes: list[str],
            scale_checked: bool = False) -> SingularTriplets:
    """The common end of every route: scale checks (unless ``scale_checked``: done by :func:`_rescaled`),
    unresolved values, orthonormality, sign rule."""
    if not scale_checked:
        _check_scale(A, out, center)
    U, s, V = out.U, np.asarray(out.s, dtype=np.float64), out.V
    # Gram-type routes resolve sigma_j only down to ~sqrt(eps) sigma_1: below
    # that, the vectors are not determined and are completed orthonormally.
    floor = 1e-12 if route == "exact" else _UNRESOLVED
    U, replaced = _complete_null(U, s, float(s[0]) * floor, k)
    V, _ = _complete_null(V, s, float(s[0]) * floor, k)
    unresolved = s <= float(s[0]) * floor
    if unresolved.any():
        s = np.where(unresolved, 0.0, s)
        notes.append(
            f"{int(unresolved.sum())} singular value(s) below {floor:g} sigma_1 are numerically zero for the "
            f"{route} route and reported as 0" + ("; their vectors are an arbitrary orthonormal completion" if replaced else "")
        )
    if route != "exact" and k > 1:
        U, V = _orthonormalize_in_order(U), _orthonormalize_in_order(V)
    U, V = orient_signs(U, V)
    return SingularTriplets(
        U=U,
        s=s,
        V=V,
        total_energy=float(out.total),
        n_samples=A.shape[0],
        n_features=A.shape[1],
        centered=bool(center),
        method=route,
        mean=out.mean,
        converged=out.converged,
        passes=out.passes,
        notes=tuple(notes),
    )


def top_singular_both(F, k: int = 1, *, n_values: int | None = None) -> tuple[SingularTriplets, SingularTriplets]:
    """Top-``k`` singular triplets of F uncentered AND column-centered, from one float64 product.

    Returns ``(uncentered, centered)``, each equal (to rounding) to ``top_singular(F, k, center=...,
    n_values=n_values)`` with the Gram or kernel route. The P-vector literature does not say whether
    features are centered (Liu et al. 2022 write a plain SVD), so analyses often need both readings;
    sharing the product halves the work:

    * d <= N (Gram side): one pass accumulates the column means mu and the centered scatter
      S = F_c^T F_c exactly (Chan et al. pairwise merges, no cancellation); the uncentered Gram is
      F^T F = S + N mu mu^T (a sum of two PSD terms). Top eigenpairs of each, then u = F_c v / sigma.
    * d > N (kernel side): one pass accumulates K = F F^T; the centered kernel is H K H with
      H = I - 11^T / N. Top eigenpairs of each, then v = F_c^T u / sigma.

    Both results follow :func:`top_singular`'s sign rule, resolution floor and null completion;
    ``method`` is ``"gram"`` or ``"kernel"`` and ``passes`` counts the shared product once.
    """
    A = as_feature_matrix(F, check_values=False)
    n, d = A.shape
    k = check_rank_request(k, n, d)
    n_values = k if n_values is None else check_rank_request(n_values, n, d, "n_values")
    n_values = max(n_values, k)
    outs: list[_RouteOut] = []
    with np.errstate(all="ignore"):
        if d <= n:
            route = "gram"
            acc = GramAccumulator()
            for _, B in row_blocks(A, block_rows(d, 4 * BLOCK_BYTES)):
                acc.update(B)
            stats = acc.finalize()
            for center in (False, True):
                G = stats.gram(center)
                _check_finite_result(A, G)
                lam, V = top_eigh(G, n_values)
                s = np.sqrt(lam)
                V = V[:, :k]
                U, _, _ = _left_from_right(A, V, _safe(s, k), stats.mean if center else None)
                outs.append(_RouteOut(U, s, V, stats.total_energy(center), stats.mean, 2))
        else:
            route = "kernel"
            K = np.zeros((n, n))
            mean = np.empty(d)
            for j, C in col_blocks(A, block_cols(n, 4 * BLOCK_BYTES)):
                mean[j : j + C.shape[1]] = C.mean(0)
                K += C @ C.T
            _check_finite_result(A, K)
            K = 0.5 * (K + K.T)
            r = K.mean(0)
            for center in (False, True):
                M = K - r[None, :] - r[:, None] + r.mean() if center else K
                lam, U = top_eigh(M, n_values)
                s = np.sqrt(lam)
                U = U[:, :k]
                V, _, _ = _right_from_left(A, U, _safe(s, k), center)
                outs.append(_RouteOut(U, s, V, float(max(np.trace(M), 0.0)), mean, 2))
    note = [f"one shared {route} product for both centerings (top_singular_both)"]
    return (_finish(A, outs[0], route, k, False, list(note)), _finish(A, outs[1], route, k, True, list(note)))

_ROUTES = {"exact": _exact, "gram": _gram, "kernel": _kernel, "krylov": _krylov}


def top_singular(
    F,
    k: int = 1,
    *,
    center: bool = False,
    method: str = "auto",
    n_values: int | None = None,
    tol: float = 1e-9,
    value_tol: float = 1e-4,
    seed: int = 0,
    max_basis: int | None = None,
) -> SingularTriplets:
    """Top-``k`` singular triplets of a feature matrix F (N samples x d features).

    Computes F_c = U S V^T restricted to the k largest singular values, with
    F_c = F - 1 mu^T (mu = column means) when ``center`` else F.

    Parameters
    ----------
    F : array-like or torch tensor, N x d
        Rows are samples, columns features. float32 stays float32 in memory;
        integers and float16 are converted to float64 (see ``checks``).
    k : number of singular triplets (vectors) to return, 1 <= k <= min(N, d).
    center : subtract column means first (a recorded choice, never implicit).
    method : ``"auto"``, ``"exact"``, ``"gram"``, ``"kernel"`` or ``"krylov"``
        (module docstring). ``auto`` picks by shape; ``.method`` reports the route.
    n_values : number of singular values to return (>= k; default k). Values
        beyond k come without vectors (Krylov converges them to ``value_tol``).
    tol : relative residual tolerance of the Krylov route for the k vectors.
    value_tol : residual tolerance (relative to sigma_1^2) of the Krylov route
        for the values beyond k: sigma_j^2 is then accurate to at most
        value_tol * sigma_1^2 (the module docstring gives the bound).
    seed : seed of the Krylov start block (same seed, same numbers).
    max_basis : largest Krylov basis before the route gives up. Default: for
        ``auto``, about the cost of one Gram matrix (max(32, min(N, d) // 13)
        vectors), after which it falls back to ``gram``/``kernel``; for an
        explicit ``krylov``, 600, after which it warns with
        :class:`~deepspan.errors.ConvergenceWarning` and returns its best.

    Returns
    -------
    SingularTriplets with U (N x k), s (n_values), V (d x k), signs fixed by the
    module's sign rule.
    """
    A = as_feature_matrix(F, check_values=False)
    n, d = A.shape
    k = check_rank_request(k, n, d)
    n_values = k if n_values is None else check_rank_request(n_values, n, d, "n_values")
    n_values = max(n_values, k)
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    route = choose_method(n, d, k, n_values) if method == "auto" else method
    notes: list[str] = []
    if method == "auto":
        notes.append(f"auto chose {route} for N={n}, d={d}, {n_values} value(s)")
    if max_basis is None:
        max_basis = max(32, min(n, d) // 13) if method == "auto" else 600
    opts = {"tol": tol, "value_tol": value_tol, "seed": seed, "max_basis": max_basis}

    def run(M: np.ndarray) -> _RouteOut:
        nonlocal route
        with np.errstate(all="ignore"):  # NaN/Inf and over/underflow are diagnosed below, by name
            out = _ROUTES[route](M, k, n_values, center, **opts)
        if not out.converged:
            if method == "auto" and min(n, d) <= 2 * _MAX_GRAM_SIDE:
                fallback = "gram" if d <= n else "kernel"
                notes.append(f"krylov did not reach tol={tol:g} within {max_basis} basis vectors; used {fallback}")
                spent = out.passes
                with np.errstate(all="ignore"):
                    out = _ROUTES[fallback](M, k, n_values, center)
                out.passes += spent
                route = fallback
            else:
                warnings.warn(
                    f"krylov route did not reach tol={tol:g} within {max_basis} basis vectors "
                    f"(sigma_2/sigma_1 is probably close to 1); the result is approximate. Raise "
                    f"max_basis, loosen tol, or use method='gram'.",
                    ConvergenceWarning,
                    stacklevel=3,
                )
        return out

    try:
        out: _RouteOut | None = run(A)
    except _ProductOverflow:
        out = None
    lo, hi = _ENERGY_RANGE
    if out is None or not lo <= out.total <= hi:  # products over- or underflowed: again on F 2^-e
        scaled = _rescaled(A, run, center, notes)
        if scaled is not None:
            return _finish(A, scaled, route, k, center, notes, scale_checked=True)
        if out is None:  # pragma: no cover - max|F| in [0.5, 1) cannot overflow
            raise InputError("F's products overflow float64; rescale it, e.g. F / np.abs(F).max().")
    return _finish(A, out, route, k, center, notes)


#: float64's normal range: a squared norm ||F_c||_F^2 outside it cannot be represented with full precision.
_REPRESENTABLE = (float(np.finfo(np.float64).tiny), float(np.finfo(np.float64).max))


def _rescaled(A: np.ndarray, run: Callable[[np.ndarray], _RouteOut], center: bool,
              notes: list[str]) -> _RouteOut | None:
    """The route again on A 2^-e (e = :func:`~deepspan.linalg.checks.scale_exponent`, so max|A 2^-e| is in
    [0.5, 1)), with the singular values and column means multiplied back by 2^e and the total energy by 4^e.

    None when e = 0 (A is all zero, or already so scaled: rescaling cannot help). Raises
    :class:`~deepspan.errors.InputError` when A is all zero or constant (checked on the scaled matrix), or when
    ||A_c||_F^2 itself lies outside float64's normal range (it is part of the result).
    """
    e = scale_exponent(A)
    if e == 0:
        return None
    As = times_power_of_two(A, -e)
    out = run(As)
    _check_scale(As, out, center)
    with np.errstate(over="ignore", under="ignore"):  # out of range is diagnosed just below
        total = float(times_power_of_two(out.total, 2 * e))
    lo, hi = _REPRESENTABLE
    if not lo <= total <= hi:
        amax = float(times_power_of_two(max(float(As.max()), -float(As.min())), e))
        log10 = math.log10(out.total) + 2 * e * math.log10(2.0)
        raise InputError(
            f"F's magnitude (max |F| = {amax:.3g}, ||F||^2 ~ 1e{log10:+.0f}) is outside the range where float64 "
            f"can represent its squared norm and singular values ({lo:.3g} .. {hi:.3g}); rescale it, e.g. "
            f"F / np.abs(F).max() (P-vectors and angles do not change under scaling)."
        )
    notes.append(f"F's products over- or underflow float64: computed on F * 2^{-e} (max |F| in [0.5, 1)), "
                 f"singular values multiplied back by 2^{e}")
    out.s = times_power_of_two(np.asarray(out.s, dtype=np.float64), e)
    out.total = total
    out.mean = None if out.mean is None else times_power_of_two(out.mean, e)
    return out
