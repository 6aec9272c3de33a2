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
    K = F F^T over column blocks, center it as H K H (H = I - 11^T/N, which
    equals F_c F_c^T), take its top eigenpairs K u = sigma^2 u and
    v = F_c^T u / sigma.
``krylov``
    For large N and d when only a few triplets are wanted. Block Krylov
    subspace iteration with full re-orthogonalisation and Rayleigh-Ritz on
    the smaller of F_c^T F_c (d x d) or F_c F_c^T (N x N), applied
    matrix-free: each iteration is *one* fused pass over F in cache-sized
    blocks, computing B^T (B X) for every block B. Iterates until every wanted
    Ritz pair (theta_j, y_j) has residual ||A y_j - theta_j y_j|| <= tol * theta_j
    (theta_j floored at 1e-3 theta_1), so the angle error of the top vector is
    about tol / (1 - (sigma_2/sigma_1)^2) radians. Values wanted without vectors
    need a looser residual (``value_tol``): a Ritz value's error is at most the
    square of its residual over the distance to the rest of the spectrum. The
    block holds two vectors whenever two or more values are wanted, so a
    repeated top singular value (sigma_1 = sigma_2) is found, not skipped. The start block holds the column-sum direction F^T 1 (an
    excellent guess for the uncentered P-vector of non-negative features)
    plus seeded Gaussian columns.

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
from deepspan.linalg.checks import as_feature_matrix, check_rank_request
from deepspan.linalg.streaming import GramAccumulator, top_eigh

__all__ = ["METHODS", "SingularTriplets", "top_singular", "choose_method", "orient_signs"]

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


def _column_moments(F: np.ndarray, center: bool) -> tuple[np.ndarray, float]:
    """Column means and ||F_c||_F^2 (centered when ``center``), float64, in one pass.

    The centered sum of squares merges per-block centered sums with the Chan et
    al. pairwise update (see ``streaming``), so it never subtracts two large
    numbers.
    """
    n, d = F.shape
    count, mean = 0, np.zeros(d)
    m2 = np.zeros(d) if center else None
    sumsq = 0.0
    for _, B in row_blocks(F):
        nb = B.shape[0]
        if center:
            mb = B.mean(0)
            Bc = B - mb
            delta = mb - mean
            tot = count + nb
            m2 += np.einsum("ij,ij->j", Bc, Bc) + delta**2 * (count * nb / tot)
            mean += delta * (nb / tot)
            count = tot
        else:
            mean += B.sum(0)
            sumsq += float(np.einsum("ij,ij->", B, B))
    if center:
        return mean, float(m2.sum())
    return mean / n, sumsq


def _left_from_right(F: np.ndarray, V: np.ndarray, s: np.ndarray, mean: np.ndarray | None) -> np.ndarray:
    """U = F_c V / s in one pass over row blocks."""
    n = F.shape[0]
    U = np.empty((n, V.shape[1]))
    shift = None if mean is None else mean @ V
    for i, B in row_blocks(F):
        T = B @ V
        if shift is not None:
            T -= shift
        U[i : i + B.shape[0]] = T
    return U / s


def _right_from_left(F: np.ndarray, U: np.ndarray, s: np.ndarray, mean: np.ndarray | None) -> np.ndarray:
    """V = F_c^T U / s = F^T (H U) / s in one pass over column blocks."""
    if mean is not None:
        U = U - U.mean(0)
    V = np.empty((F.shape[1], U.shape[1]))
    for j, C in col_blocks(F):
        V[j : j + C.shape[1]] = C.T @ U
    return V / s


def _complete_null(U: np.ndarray, s: np.ndarray, scale: float, k: int) -> tuple[np.ndarray, bool]:
    """Replace vectors whose singular value is numerically zero by an orthonormal completion.

    Such vectors are not determined by the matrix; a deterministic completion
    (Gram-Schmidt of the standard basis against the determined ones) keeps U
    orthonormal. Returns (U, whether anything was replaced).
    """
    tiny = s[:k] <= scale * 1e-12
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


def _exact(F, k, n_values, center, mean):
    A = np.asarray(F, dtype=np.float64)
    if center:
        A = A - mean
    try:
        U, s, Vt = scipy.linalg.svd(A, full_matrices=False, lapack_driver="gesdd", check_finite=False)
    except np.linalg.LinAlgError:
        U, s, Vt = scipy.linalg.svd(A, full_matrices=False, lapack_driver="gesvd", check_finite=False)
    return U[:, :k], s[:n_values], Vt[:k].T, float((s**2).sum()), None


def _gram(F, k, n_values, center, mean):
    acc = GramAccumulator()
    # GEMM wants taller blocks than the fused Krylov products (bench/pvector.py)
    for _, B in row_blocks(F, block_rows(F.shape[1], 4 * BLOCK_BYTES)):
        acc.update(B)
    stats = acc.finalize()
    lam, V = top_eigh(stats.gram(center), n_values)
    s = np.sqrt(lam)
    V = V[:, :k]
    U = _left_from_right(F, V, np.where(s[:k] > 0, s[:k], 1.0), stats.mean if center else None)
    return U, s, V, stats.total_energy(center), 2


def _kernel(F, k, n_values, center, mean):
    n = F.shape[0]
    K = np.zeros((n, n))
    for _, C in col_blocks(F, block_cols(n, 4 * BLOCK_BYTES)):
        K += C @ C.T
    if center:
        r = K.mean(0)
        K = K - r[None, :] - r[:, None] + r.mean()
    K = 0.5 * (K + K.T)
    lam, U = top_eigh(K, n_values)
    s = np.sqrt(lam)
    U = U[:, :k]
    V = _right_from_left(F, U, np.where(s[:k] > 0, s[:k], 1.0), mean if center else None)
    return U, s, V, float(np.trace(K)), 2


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
) -> tuple[np.ndarray, np.ndarray, bool, int]:
    """Top eigenpairs of a symmetric PSD operator by block Krylov iteration + Rayleigh-Ritz.

    Keeps the basis Q and its image W = A Q, so the Rayleigh quotient Q^T A Q
    and the residuals of the Ritz pairs are exact and cost no extra passes.
    Returns (theta, Y, converged, n_applications).
    """
    b = min(dim, max(n_vectors, 2 if n_values > 1 else 1))
    X = rng.standard_normal((dim, b))
    if start is not None and np.linalg.norm(start) > 0:
        X[:, 0] = start / np.linalg.norm(start)
    Q, _ = np.linalg.qr(X)
    Qs: list[np.ndarray] = [Q]
    Ws: list[np.ndarray] = []
    applications = 0
    converged = False
    theta = np.zeros(0)
    Y = np.zeros((dim, 0))
    while True:
        W = apply(Qs[-1])
        applications += 1
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
    return np.clip(theta, 0.0, None), Y, converged, applications


def _krylov(F, k, n_values, center, mean, tol, value_tol, seed, max_basis):
    n, d = F.shape
    rng = np.random.default_rng(seed)
    colsum = mean * n
    if d <= n:
        mu = mean if center else None

        def apply(X: np.ndarray) -> np.ndarray:
            out = np.zeros_like(X)
            shift = None if mu is None else mu @ X
            tsum = np.zeros(X.shape[1])
            for _, B in row_blocks(F):
                T = B @ X
                if shift is not None:
                    T -= shift
                    tsum += T.sum(0)
                out += B.T @ T
            if mu is not None:  # (B - 1 mu^T)^T T = B^T T - mu (1^T T)
                out -= np.outer(mu, tsum)
            return out

        start = None if center else colsum
        theta, V, conv, its = _block_krylov(apply, d, k, n_values, tol, value_tol, max_basis, start, rng)
        s = np.sqrt(theta)
        V = V[:, :k]
        U = _left_from_right(F, V, np.where(s[:k] > 0, s[:k], 1.0), mu)
    else:

        def apply(Y: np.ndarray) -> np.ndarray:
            if center:
                Y = Y - Y.mean(0)
            out = np.zeros_like(Y)
            for _, C in col_blocks(F):
                out += C @ (C.T @ Y)
            if center:
                out -= out.mean(0)
            return out

        start = None
        if not center:
            start = np.empty(n)
            for i, B in row_blocks(F):
                start[i : i + B.shape[0]] = B.sum(1)
        theta, U, conv, its = _block_krylov(apply, n, k, n_values, tol, value_tol, max_basis, start, rng)
        s = np.sqrt(theta)
        U = U[:, :k]
        V = _right_from_left(F, U, np.where(s[:k] > 0, s[:k], 1.0), mean if center else None)
    return U, s, V, conv, its + 2


def top_singular(
    F,
    k: int = 1,
    *,
    center: bool = False,
    method: str = "auto",
    n_values: int | None = None,
    tol: float = 1e-10,
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
        beyond k come without vectors (Krylov converges them to ~tol relative).
    tol : relative residual tolerance of the Krylov route for the k vectors.
    value_tol : residual tolerance (relative to sigma_1^2) of the Krylov route
        for the values beyond k. A Ritz value theta with residual r is within
        min(r, r^2 / delta) of an eigenvalue (delta: distance to the rest of
        the spectrum), so values are typically accurate to ~1e-8 relative.
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
    A = as_feature_matrix(F)
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

    mean, total = _column_moments(A, center)
    if center and not total > 0:
        raise InputError(
            "F is constant across samples (all rows equal), so it is all zeros after centering and "
            "has no singular vectors; use center=False or check the features."
        )

    if max_basis is None:
        max_basis = max(32, min(n, d) // 13) if method == "auto" else 600
    converged = True
    if route == "exact":
        U, s, V, _, passes = _exact(A, k, n_values, center, mean)
    elif route == "gram":
        U, s, V, _, passes = _gram(A, k, n_values, center, mean)
    elif route == "kernel":
        U, s, V, _, passes = _kernel(A, k, n_values, center, mean)
    else:
        U, s, V, converged, passes = _krylov(A, k, n_values, center, mean, tol, value_tol, seed, max_basis)
        if not converged:
            if method == "auto" and min(n, d) <= 2 * _MAX_GRAM_SIDE:
                fallback = "gram" if d <= n else "kernel"
                notes.append(f"krylov did not reach tol={tol:g} within {max_basis} basis vectors; used {fallback}")
                route = fallback
                U, s, V, _, extra = (_gram if fallback == "gram" else _kernel)(A, k, n_values, center, mean)
                passes += extra
                converged = True
            else:
                warnings.warn(
                    f"krylov route did not reach tol={tol:g} within {max_basis} basis vectors "
                    f"(sigma_2/sigma_1 is probably close to 1); the result is approximate. Raise "
                    f"max_basis, loosen tol, or use method='gram'.",
                    ConvergenceWarning,
                    stacklevel=2,
                )
    # the count of full passes includes the moments pass
    passes = None if passes is None else passes + 1
    U, replaced = _complete_null(U, s, float(s[0]), k)
    V, _ = _complete_null(V, s, float(s[0]), k)
    if replaced:
        notes.append("some requested singular values are zero; their vectors are an arbitrary orthonormal completion")
    U, V = orient_signs(U, V)
    return SingularTriplets(
        U=U,
        s=np.asarray(s, dtype=np.float64),
        V=V,
        total_energy=float(total),
        n_samples=n,
        n_features=d,
        centered=bool(center),
        method=route,
        mean=mean,
        converged=converged,
        passes=passes,
        notes=tuple(notes),
    )
