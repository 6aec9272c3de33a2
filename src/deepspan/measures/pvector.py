"""P-vectors: the top left singular vector of a samples x features matrix.

Liu, Xiong, Wang, An, Wu, Dou, "Exploring the Common Principal Subspace of
Deep Features in Neural Networks", Machine Learning 111 (2022),
arXiv:2110.02863. For the features F (N samples x d) of a network on a fixed
set of N samples, write F = U S V^T. The *P-vector* is u_1, the first column
of U: a unit vector in sample space R^N, so networks of any width -- and the
raw data itself, flattened -- can be compared by the angle between their
P-vectors,

    angle(u, u') = arccos |<u, u'>|   in [0, 90] degrees.

The paper also uses the energy ratio of the top-k subspace,

    r_k = sum_{i<=k} sigma_i^2 / sum_i sigma_i^2,

and the top-k reconstruction error, which by Eckart-Young is

    E_k = ||F - U_k S_k V_k^T||_F^2 = ||F||_F^2 - sum_{i<=k} sigma_i^2.

The paper does not say whether F is column-centered; here centering is the
parameter ``center`` (default False: the paper's plain SVD of F) and every
result records it.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from deepspan._version import __version__
from deepspan.errors import DegenerateSpectrumWarning, InputError, SampleMismatchError
from deepspan.linalg.angles import angle, angle_from_cosine, principal_angles_between_bases, unit_angle
from deepspan.linalg.checks import as_feature_matrix, check_min_samples, check_rank_request, scale_to_unit, to_numpy
from deepspan.linalg.streaming import CrossGramStats, GramStats, prepare_batch
from deepspan.linalg.checks import check_same_samples
from deepspan.linalg.order import RowOrderSketch
from deepspan.linalg.svd import METHODS, orient_signs, top_singular

__all__ = [
    "DEGENERACY_THRESHOLD",
    "PVector",
    "pvector",
    "data_pvector",
    "pvector_from_stats",
    "with_left_vector",
    "pvector_angle_from_stats",
    "principal_angles",
    "pvector_angle",
    "pvector_angle_steps",
    "mean_principal_angle",
    "principal_angle_steps",
    "energy_table",
    "reconstruction_errors",
    "angle",
]

#: sigma_2 / sigma_1 above this makes the top direction undetermined (a warning is emitted).
DEGENERACY_THRESHOLD = 0.99


@dataclass(frozen=True)
class PVector:
    """The P-vector of a feature matrix and the spectrum around it.

    Attributes
    ----------
    u : the P-vector, length N, unit norm, sign rule of ``deepspan.linalg.svd``
        (sum(u) > 0, else largest-magnitude entry positive). ``None`` when
        computed from streaming statistics without a second pass.
    v : the matching right singular vector (length d), F_c v = sigma_1 u.
    singular_values : the top few singular values, descending.
    total_energy : ||F_c||_F^2, the sum of all squared singular values.
    centered : whether columns were centered first.
    method : the route that computed it (``exact``, ``gram``, ``kernel``, ``krylov``, ``gram-stream``).
    n_samples, n_features : the shape of F.
    notes : how the route was chosen, fallbacks, completions.
    sample_hash : optional hash of the sample ids in order (e.g. ``Dataset.sample_hash``);
        :func:`angle` refuses two P-vectors whose hashes differ.
    row_order : streamed P-vectors only: the first pass's fingerprint of the rows in order
        (:mod:`deepspan.linalg.order`), which :func:`with_left_vector` checks its second pass against.
    """

    u: np.ndarray | None
    v: np.ndarray
    singular_values: np.ndarray
    total_energy: float
    centered: bool
    method: str
    n_samples: int
    n_features: int
    notes: tuple[str, ...] = field(default=())
    sample_hash: str | None = None
    row_order: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def sigma(self) -> float:
        """sigma_1, the top singular value."""
        return float(self.singular_values[0])

    @property
    def gap(self) -> float:
        """sigma_2 / sigma_1 (0 when F has a single singular value). Near 1, u is not determined."""
        s = self.singular_values
        return float(s[1] / s[0]) if len(s) > 1 and s[0] > 0 else 0.0

    @property
    def degenerate(self) -> bool:
        """True when sigma_2 / sigma_1 > DEGENERACY_THRESHOLD: the top direction is not determined."""
        return self.gap > DEGENERACY_THRESHOLD

    @property
    def energy(self) -> np.ndarray:
        """r_k = sum_{i<=k} sigma_i^2 / ||F_c||_F^2 for k = 1 .. len(singular_values)."""
        return np.cumsum(self.singular_values**2) / self.total_energy

    @property
    def reconstruction_error(self) -> np.ndarray:
        """E_k = ||F_c||_F^2 - sum_{i<=k} sigma_i^2 for k = 1 .. len(singular_values) (Eckart-Young)."""
        return np.maximum(self.total_energy - np.cumsum(self.singular_values**2), 0.0)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (arrays become lists); inverse of :meth:`from_dict`."""
        d = asdict(self)
        for key in ("u", "v", "singular_values", "row_order"):
            if d[key] is not None:
                d[key] = np.asarray(d[key]).tolist()
        d["notes"] = list(self.notes)
        d["gap"] = self.gap
        d["energy"] = self.energy.tolist()
        d["deepspan_version"] = __version__
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PVector":
        return cls(
            u=None if d.get("u") is None else np.asarray(d["u"], dtype=np.float64),
            v=np.asarray(d["v"], dtype=np.float64),
            singular_values=np.asarray(d["singular_values"], dtype=np.float64),
            total_energy=float(d["total_energy"]),
            centered=bool(d["centered"]),
            method=str(d["method"]),
            n_samples=int(d["n_samples"]),
            n_features=int(d["n_features"]),
            notes=tuple(d.get("notes", ())),
            sample_hash=d.get("sample_hash"),
            row_order=None if d.get("row_order") is None else np.asarray(d["row_order"], dtype=np.float64),
        )


def _warn_if_degenerate(p: PVector, stacklevel: int = 3) -> PVector:
    if p.degenerate:
        warnings.warn(
            f"sigma_2/sigma_1 = {p.gap:.4f} > {DEGENERACY_THRESHOLD}: the top singular direction is not "
            f"determined by these features (sigma_1 = {p.singular_values[0]:.6g}, sigma_2 = "
            f"{p.singular_values[1]:.6g}); angles to this P-vector are not meaningful. Compare the "
            f"top-k subspaces with principal_angles instead.",
            DegenerateSpectrumWarning,
            stacklevel=stacklevel,
        )
    return p



def _n_values(n_values: Any, n: int, d: int) -> int:
    """The one n_values rule of both routes: a positive integer, clamped to min(N, d) (more values than
    that are simply not there)."""
    if isinstance(n_values, bool) or not isinstance(n_values, (int, np.integer)):
        raise InputError(f"n_values must be a positive integer, got {n_values!r}.")
    if n_values < 1:
        raise InputError(f"n_values must be at least 1, got {n_values}.")
    return min(int(n_values), n, d)

def pvector(
    F: Any,
    center: bool = False,
    method: str = "auto",
    *,
    n_values: int = 5,
    tol: float = 1e-9,
    seed: int = 0,
    sample_hash: str | None = None,
) -> PVector:
    """The P-vector (top left singular vector) of a feature matrix F (N samples x d features).

    F = U S V^T (after subtracting column means when ``center``); returns u_1
    with ``singular_values`` (the top ``min(n_values, N, d)``), ``gap`` =
    sigma_2/sigma_1, ``energy`` r_k, and the route used. ``method`` is one of
    ``auto``, ``exact``, ``gram``, ``kernel``, ``krylov`` (see
    :func:`deepspan.linalg.top_singular`). Emits
    :class:`~deepspan.errors.DegenerateSpectrumWarning` when sigma_2/sigma_1 > 0.99.
    ``sample_hash`` (optional) identifies the samples; :func:`angle` checks it.

    Scale: u and v are the same for c F as for F, and the singular values scale by c, at every c for
    which ||F_c||_F^2 fits float64's normal range (:func:`~deepspan.linalg.top_singular` rescales F by
    a power of two when its products would over- or underflow); beyond that, ``total_energy`` cannot be
    represented and :class:`~deepspan.errors.InputError` asks to rescale F. The ``pvector_angle``
    measure needs no energy and works at every scale.

    Liu et al., Machine Learning 111 (2022), arXiv:2110.02863.
    """
    A = as_feature_matrix(F, check_values=False)  # top_singular detects NaN/Inf and zeros itself
    n_values = _n_values(n_values, *A.shape)
    t = top_singular(A, 1, center=center, method=method, n_values=n_values, tol=tol, seed=seed)
    p = PVector(
        u=t.U[:, 0],
        v=t.V[:, 0],
        singular_values=t.s,
        total_energy=t.total_energy,
        centered=t.centered,
        method=t.method,
        n_samples=t.n_samples,
        n_features=t.n_features,
        notes=t.notes,
        sample_hash=sample_hash,
    )
    return _warn_if_degenerate(p)


def data_pvector(X: Any, center: bool = False, method: str = "auto", **kwargs: Any) -> PVector:
    """The P-vector of raw inputs: X (N x ...) flattened to N x prod(...), then :func:`pvector`.

    Liu et al. (2022) compare each model's P-vector with this "data P-vector".
    """
    a = to_numpy(X)
    if a.ndim < 2:
        raise InputError(
            f"X must have a sample axis and at least one feature axis, got shape {a.shape}; "
            f"for N scalar inputs pass X.reshape(-1, 1)."
        )
    return pvector(a.reshape(a.shape[0], int(np.prod(a.shape[1:]))), center=center, method=method, **kwargs)


def _stats_sign(stats: GramStats, v: np.ndarray, sigma: float, center: bool) -> np.ndarray:
    """Orient v as the sign rule would orient u = F_c v / sigma, without u when possible.

    sum(u) = 1^T F_c v / sigma = N mu^T v / sigma (zero when centered). When that
    is too small to decide, v's largest-magnitude entry is made positive
    (provisional: :func:`with_left_vector` re-applies the rule to u).
    """
    n = stats.n_samples
    total = 0.0 if center else n * float(stats.mean @ v) / sigma
    if abs(total) > 1e-8 * np.sqrt(n):
        return v if total > 0 else -v
    return v if v[int(np.argmax(np.abs(v)))] >= 0 else -v


def pvector_from_stats(stats: GramStats, center: bool = False, n_values: int = 5) -> PVector:
    """The P-vector spectrum and v_1 from streamed Gram statistics, without holding F.

    The eigen-decomposition F_c^T F_c = V S^2 V^T gives sigma_i and v_1; u is
    left as ``None`` (u_1 = F_c v_1 / sigma_1 needs a second pass over F:
    :func:`with_left_vector`). ``method`` is ``"gram-stream"``.
    """
    if not isinstance(stats, GramStats):
        raise InputError(
            f"pvector_from_stats needs GramStats (from GramAccumulator.finalize()), got {type(stats).__name__}."
        )
    check_min_samples(stats.n_samples, "the streamed matrix")
    n_values = _n_values(n_values, stats.n_samples, stats.n_features)
    total = stats.total_energy(center)
    if not total > 0:
        raise InputError(
            "the streamed features are all zero" + (" after centering" if center else "")
            + "; they span no direction. Check the layer the features come from."
        )
    s, V = stats.spectrum(center, n_values)
    v = _stats_sign(stats, V[:, 0], float(s[0]), center)
    p = PVector(None, v, s, total, bool(center), "gram-stream", stats.n_samples, stats.n_features,
                row_order=stats.row_order)
    return _warn_if_degenerate(p)


def with_left_vector(p: PVector, batches: Iterable[Any], mean: np.ndarray | None = None) -> PVector:
    """Second pass: u_1 = (F - 1 mu^T) v_1 / sigma_1 from the same samples, batch by batch, in order.

    ``mean`` is the column mean (``GramStats.mean``), required when ``p.centered``.
    The sign rule is then applied to u (flipping v with it). When ``p`` carries the first pass's row
    fingerprint (``p.row_order``, from ``GramAccumulator.update``), the second pass is fingerprinted too and a
    :class:`~deepspan.errors.SampleMismatchError` says whether it gave other samples or the same ones in
    another order (which would return u permuted).
    """
    if p.centered and mean is None:
        raise InputError("p is centered: pass mean=stats.mean so u is computed from centered features.")
    shift = 0.0 if not p.centered else float(np.asarray(mean, dtype=np.float64) @ p.v)
    parts = []
    order = RowOrderSketch()
    for batch in batches:
        x = to_numpy(prepare_batch(batch, "batch"))
        if x.shape[1] != p.n_features:
            raise InputError(f"batch has {x.shape[1]} features but the P-vector has {p.n_features}.")
        parts.append((x @ p.v - shift) / p.sigma)
        order.update(x)
    u = np.concatenate(parts) if parts else np.zeros(0)
    check_same_samples(u.shape[0], p.n_samples, names=("the second pass", "the P-vector's statistics"),
                       what="with_left_vector (u = F_c v / sigma)")
    if p.row_order is not None:
        RowOrderSketch.from_state(p.row_order, p.n_features).check_same_rows(
            order, what="with_left_vector (u = F_c v / sigma)")
    U, V = orient_signs(u[:, None], p.v[:, None])
    return dataclasses.replace(p, u=U[:, 0], v=V[:, 0])


def pvector_angle_from_stats(stats: CrossGramStats, center: bool = False) -> float:
    """Angle (degrees) between the P-vectors of two feature sets A, B from cross-Gram statistics.

    With A_c = U_A S_A V_A^T and B_c likewise,

        <u_A, u_B> = v_A^T (A_c^T B_c) v_B / (sigma_A sigma_B),

    so the angle needs A^T A, B^T B and A^T B only (one pass, neither matrix
    stored). Sign-invariant, like :func:`angle`. Only the cosine is available
    here, so angles below ~1e-6 degrees are not resolved (arccos near 1); the
    dense :func:`angle` uses atan2 and resolves them. ``stats`` is
    :meth:`~deepspan.linalg.CrossGramAccumulator.finalize` output (Liu et al. 2022, arXiv:2110.02863).
    """
    if not isinstance(stats, CrossGramStats):
        raise InputError(
            f"pvector_angle_from_stats needs CrossGramStats (from CrossGramAccumulator.finalize()), "
            f"got {type(stats).__name__}."
        )
    pa = pvector_from_stats(stats.a, center, n_values=2)
    pb = pvector_from_stats(stats.b, center, n_values=2)
    c = float(pa.v @ stats.cross_gram(center) @ pb.v) / (pa.sigma * pb.sigma)
    return float(angle_from_cosine(c))


def _principal_basis(X: Any, *, k: int, center: bool, method: str) -> np.ndarray:
    """The prepare step of the principal angles: top-min(k, rank) left singular vectors U (N x k) of X_c.

    X is first multiplied by the exact power of two that puts max|X| in [0.5, 1) (the vectors do not change),
    so every feature scale works."""
    A = as_feature_matrix(X, "X", check_values=False)  # top_singular detects NaN/Inf and zeros itself
    t = top_singular(scale_to_unit(A)[0], min(int(k), *A.shape), center=center, method=method)
    rank = int(np.count_nonzero(t.s[: t.U.shape[1]]))  # top_singular reports unresolved values as 0
    return t.U[:, :rank]


def _check_rank(U: np.ndarray, k: int, name: str, center: bool) -> None:
    """Refuse a top-k subspace whose last directions are not determined (rank of the matrix below k)."""
    if U.shape[1] < k:
        raise InputError(
            f"{name} has numerical rank {U.shape[1]}{' after centering' if center else ''}, below k={k}: only its "
            f"top {U.shape[1]} singular directions are determined, the other {k - U.shape[1]} would be an arbitrary "
            f"completion and their angles meaningless. Ask for k <= {U.shape[1]} (mean_principal_angle caps k at "
            f"each side's rank instead)."
        )


def principal_angles(A: Any, B: Any, k: int, center: bool = False, method: str = "auto") -> np.ndarray:
    """Principal angles (degrees, ascending) between the top-k left singular subspaces of A and B.

    A (N x d_a) and B (N x d_b) are feature matrices on the same samples;
    U_A, U_B are their top-k left singular vectors and the angles follow
    Bjorck and Golub (1973) (cosines = singular values of U_A^T U_B, small
    angles from the sines). The first angle is not the P-vector angle: it is
    the smallest angle between any two directions of the two subspaces.
    ``k`` must be <= the numerical rank of both sides (at most min(N, d)): beyond it the singular directions
    are an arbitrary completion, so an :class:`~deepspan.errors.InputError` names the rank instead
    (:func:`mean_principal_angle` caps k at each side's rank).
    """
    A = as_feature_matrix(A, "A")
    B = as_feature_matrix(B, "B")
    check_same_samples(A.shape[0], B.shape[0], names=("A", "B"),
                       what="principal angles (subspaces of sample space)")
    check_rank_request(k, *A.shape)
    check_rank_request(k, *B.shape)
    UA = _principal_basis(A, k=k, center=center, method=method)
    UB = _principal_basis(B, k=k, center=center, method=method)
    _check_rank(UA, k, "A", center)
    _check_rank(UB, k, "B", center)
    return principal_angles_between_bases(UA, UB)


def _pair_principal_angle(a: np.ndarray, b: np.ndarray) -> float:
    check_same_samples(a.shape[0], b.shape[0], names=("X", "Y"), what="principal angles (subspaces of sample space)")
    m = min(a.shape[1], b.shape[1])
    return float(np.mean(principal_angles_between_bases(a[:, :m], b[:, :m])))


def principal_angle_steps(k: int = 5, center: bool = False, method: str = "auto") -> tuple[Any, Any]:
    """The mean principal angle as (prepare, pair): prepare the top-min(k, rank) left singular vectors of
    each network (once), pair the mean of the principal angles between the first m = min(k_X, k_Y) of them
    (Bjorck and Golub 1973), in degrees."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k must be a positive integer (the subspace dimension), got {k!r}.")
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    return (functools.partial(_principal_basis, k=int(k), center=bool(center), method=method),
            _pair_principal_angle)


def mean_principal_angle(A: Any, B: Any, k: int = 5, center: bool = False, method: str = "auto") -> float:
    """Mean principal angle (degrees) between the top-k left singular subspaces of A and B.

    k is capped per side at its numerical rank (at most min(N, d); singular values that the route cannot
    resolve count as zero), and the angles are taken between the first m = min(k_A, k_B) singular vectors of each (Bjorck and Golub 1973); uncentered by default, like
    the P-vector (Liu et al. 2022). The ``principal_angle`` entry of ``MEASURES`` (k = 5).
    """
    prepare, pair = principal_angle_steps(k, center, method)
    A = as_feature_matrix(A, "A")
    B = as_feature_matrix(B, "B")
    check_same_samples(A.shape[0], B.shape[0], names=("A", "B"),
                       what="principal angles (subspaces of sample space)")
    return pair(prepare(A), prepare(B))


def _prepare_pvector(X: Any, *, center: bool) -> PVector:
    """The prepare step of the P-vector angle: :func:`pvector` (which warns when sigma_2/sigma_1 > 0.99) of X
    times the exact power of two that puts max|X| in [0.5, 1): u is unchanged, so the angle is the same at
    every feature scale (the prepared singular values are those of the scaled X)."""
    A = as_feature_matrix(X, "X", check_values=False)  # NaN/Inf pass through scale_to_unit unchanged
    return pvector(scale_to_unit(A)[0], center=center, n_values=2)


def _pair_pvector_angle(a: PVector, b: PVector) -> float:
    check_same_samples(a.n_samples, b.n_samples, names=("X", "Y"), hash_a=a.sample_hash, hash_b=b.sample_hash,
                       what="the P-vector angle")
    return unit_angle(a.u, b.u)


def pvector_angle_steps(center: bool = False) -> tuple[Any, Any]:
    """The P-vector angle as (prepare, pair): prepare the P-vector u_1 of each network (once), pair
    arccos|<u_X, u_Y>| in degrees, computed as atan2 (:func:`~deepspan.linalg.angles.unit_angle`)."""
    return functools.partial(_prepare_pvector, center=bool(center)), _pair_pvector_angle


def pvector_angle(X: Any, Y: Any, center: bool = False) -> float:
    """Angle (degrees, in [0, 90]) between the P-vectors of two feature matrices on the same samples.

        angle = arccos |<u_X, u_Y>|,   u = top left singular vector of F (of F_c when ``center``)

    Liu, Xiong, Wang, An, Wu, Dou, Machine Learning 111 (2022), arXiv:2110.02863 (uncentered by
    default, the paper's plain SVD). X and Y may have any widths. Warns with
    :class:`~deepspan.errors.DegenerateSpectrumWarning` when a P-vector is not determined.
    """
    prepare, pair = pvector_angle_steps(center)
    A = as_feature_matrix(X, "X", check_values=False)
    B = as_feature_matrix(Y, "Y", check_values=False)
    check_same_samples(A.shape[0], B.shape[0], names=("X", "Y"), what="the P-vector angle")
    return pair(prepare(A), prepare(B))


def reconstruction_errors(F: Any, K: int, center: bool = False, method: str = "auto") -> np.ndarray:
    """E_k = ||F_c - U_k S_k V_k^T||_F^2 for k = 1..K, via Eckart-Young from the top-K spectrum."""
    A = as_feature_matrix(F)
    K = check_rank_request(K, *A.shape, what="K")
    t = top_singular(A, 1, center=center, method=method, n_values=K)
    return np.maximum(t.total_energy - np.cumsum(t.s**2), 0.0)


def energy_table(F: Any, K: int = 10, center: bool = False, method: str = "auto") -> list[dict[str, float]]:
    """Tidy rows ``{k, sigma, energy_ratio, reconstruction_error}`` for k = 1..min(K, N, d).

    energy_ratio is r_k = sum_{i<=k} sigma_i^2 / ||F_c||_F^2 (Liu et al. 2022);
    reconstruction_error is E_k = ||F_c||_F^2 - sum_{i<=k} sigma_i^2.
    """
    A = as_feature_matrix(F)
    K = min(int(K), *A.shape)
    t = top_singular(A, 1, center=center, method=method, n_values=K)
    cum = np.cumsum(t.s**2)
    return [
        {
            "k": i + 1,
            "sigma": float(t.s[i]),
            "energy_ratio": float(cum[i] / t.total_energy),
            "reconstruction_error": float(max(t.total_energy - cum[i], 0.0)),
        }
        for i in range(K)
    ]
