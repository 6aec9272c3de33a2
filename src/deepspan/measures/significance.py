"""Significance and uncertainty of any measure: a permutation null, a bootstrap interval, a calibrated score.

:func:`significance` takes two feature matrices of the same samples and one measure of
:data:`~deepspan.measures.compare.MEASURES` (a name, or a :class:`~deepspan.measures.compare.MeasureSpec` with
its own parameters, e.g. ``MEASURES["max_match"].with_params(eps=0.1)``) and returns a :class:`Significance`:

* ``value`` -- the measure, as :func:`~deepspan.measures.compare.compare` gives it;
* ``p_value`` -- permutation test of "no sample correspondence": the rows of Y are shuffled against X
  (``groups``: whole blocks of rows move together, e.g. the (image, position) rows of one image), and
  ``p = (1 + #{null draws at least as extreme as value}) / (1 + n_perm)``, "extreme" meaning at least as
  high for similarities, at least as low for distances and angles (the measure's ``kind``); so
  ``p >= 1 / (n_perm + 1)``;
* ``null_mean``, ``null_sd`` -- of the n_perm null draws;
* ``calibrated`` = (value - null_mean) / (identity - null_mean): 1 at the measure's identity value, 0 at
  the mean of its permutation null, whichever the direction of the measure (similarity or distance). The
  idea of scoring a similarity against its permutation null, which removes e.g. the inflation of scores
  with network width, is Gröger et al. (ICML 2026, arXiv:2602.14486); this normalisation is ours;
* ``ci_low``, ``ci_high`` -- a percentile bootstrap interval (``ci_method = "percentile"``): the samples
  (or blocks) are resampled with replacement, the rows of X and Y jointly, ``n_boot`` times.

Speed. The per-network statistics of the measure (``prepare``) are computed once: a permutation only
re-prepares the permuted side, or -- where the prepared statistics are equivariant under a row
permutation -- permutes them: the P-vector angle permutes u_Y (the P-vector of permuted rows is the
permuted P-vector), linear CKA permutes the centered rows of Y and evaluates ``||Y_c[perm]^T X_c||_F^2``
with float32 products (their relative error, ~1e-6, is far below the
Monte-Carlo error of the null, ~1/sqrt(n_perm); draws within 1e-5 relative of the value count as "at least
as extreme"). The linear-CKA bootstrap uses multinomial weights on the centered matrices (weighted Gram
statistics, no resampled copies); the P-vector angle's resamples take the Krylov route for u_1 (tolerance 1e-9;
matrices of at least 64 rows and columns). Every other measure recomputes what a resample needs.

Determinism: the permutations come from ``numpy.random.default_rng([seed, 0])``, the resamples from
``default_rng([seed, 1])``: the same seed gives the same numbers.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepspan.errors import DegenerateSpectrumWarning, InputError
from deepspan.measures.alignment import as_finite_pair
from deepspan.measures.compare import MEASURES, MeasureSpec

__all__ = ["Significance", "significance", "significance_prepared", "mean_significance", "check_settings",
           "angle_null", "CI_METHOD"]

#: The interval method of :func:`significance`.
CI_METHOD = "percentile"
#: Null draws within this relative distance of the value count as "at least as extreme" (float32 products).
TIE_RTOL = 1e-5


@dataclass(frozen=True)
class Significance:
    """A measure's value with its permutation p-value, null statistics, calibrated score and bootstrap CI.

    ``p_value``, ``null_mean``, ``null_sd`` and ``calibrated`` are ``None`` when no permutations were asked
    (``n_perm=None``); ``ci_low`` / ``ci_high`` when no bootstrap was (``n_boot=None``). ``null`` and
    ``boot`` keep the draws (not in the repr). ``n_blocks`` is the number of units permuted and
    resampled (samples, or ``groups``).
    """

    measure: str
    kind: str
    value: float
    p_value: float | None
    null_mean: float | None
    null_sd: float | None
    calibrated: float | None
    ci_low: float | None
    ci_high: float | None
    ci: float
    ci_method: str
    n_perm: int | None
    n_boot: int | None
    seed: int
    n_blocks: int
    null: np.ndarray | None = field(default=None, repr=False, compare=False)
    boot: np.ndarray | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """The numbers as plain Python values (no draws): for JSON / CSV rows."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("null", "boot")}

    def __float__(self) -> float:
        return float(self.value)


def _draw_perms(rng: np.random.Generator, rows: np.ndarray, n_perm: int) -> np.ndarray:
    """``n_perm`` block permutations as row index arrays: row i of X meets row ``perm[i]`` of Y."""
    n_blocks = rows.shape[0]
    perms = rows[np.argsort(rng.random((n_perm, n_blocks)), axis=1)].reshape(n_perm, -1)
    return perms[:, np.argsort(rows.reshape(-1))]


def angle_null(u: Any, v: Any, n_perm: int = 1000, seed: int = 0) -> np.ndarray:
    """The permutation null of the angle (degrees) between two sample-space vectors: ``angle(u, v[perm])`` for
    ``n_perm`` random permutations of the samples, drawn as :func:`significance` draws them (so
    ``angle_null(pa.u, pb.u, n, s)`` equals the null of ``significance(A, B, "pvector_angle", n_perm=n,
    seed=s)`` when pa, pb are the P-vectors of A and B). For the band of "no sample correspondence" around an
    angle between P-vectors already computed (e.g. a checkpoint's and the final one's)."""
    from deepspan.linalg.angles import unit_angle

    a, b = np.asarray(u, dtype=np.float64).ravel(), np.asarray(v, dtype=np.float64).ravel()
    if a.shape != b.shape or a.size < 2:
        raise InputError(f"angle_null needs two vectors over the same >= 2 samples, got {a.shape} and {b.shape}.")
    n = _count(n_perm, "n_perm")
    perms = _draw_perms(np.random.default_rng([int(seed), 0]), np.arange(a.size).reshape(-1, 1), n)
    return np.array([unit_angle(a, b[p]) for p in perms])


def _count(n: Any, name: str) -> int | None:
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"{name} must be a positive number of draws (e.g. 1000), or None to skip them; got {n!r}.")
    return int(n)


def _blocks(groups: Any, n: int) -> tuple[np.ndarray, int]:
    """Rows by block: a (B, m) array of row indices (B blocks of m rows each, in order of first appearance)."""
    if groups is None:
        return np.arange(n).reshape(n, 1), n
    g = np.asarray(groups)
    if g.ndim != 1 or len(g) != n:
        raise InputError(f"groups must give one block label per row (a 1-D array of {n}), got shape {g.shape}; "
                         f"e.g. the image index of each (image, position) row.")
    labels, first, inverse, counts = np.unique(g, return_index=True, return_inverse=True, return_counts=True)
    if len(labels) < 2:
        raise InputError(f"groups put all {n} rows in {len(labels)} block; permutations and resamples move whole "
                         f"blocks, so give at least 2 blocks (e.g. one per image).")
    if counts.min() != counts.max():
        raise InputError(f"groups must have the same number of rows in every block (here {counts.min()} to "
                         f"{counts.max()}), so that a block can take another's place; e.g. the same positions_per_"
                         f"image for every image.")
    order = np.argsort(first)  # blocks in order of first appearance
    rows = np.stack([np.flatnonzero(inverse == k) for k in order])
    return rows, len(labels)


def _spec(measure: Any) -> MeasureSpec:
    if isinstance(measure, MeasureSpec):
        return measure
    if isinstance(measure, str) and measure in MEASURES:
        return MEASURES[measure]
    import difflib

    close = difflib.get_close_matches(str(measure), list(MEASURES), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise InputError(f"unknown measure {measure!r}; {hint}available: {', '.join(MEASURES)}.")


def _permuted(prepared: Any, perm: np.ndarray) -> Any | None:
    """The prepared statistics of the row-permuted matrix, when they are equivariant under row permutations."""
    from deepspan.measures.alignment import CenteredFeatures
    from deepspan.measures.pvector import PVector

    if isinstance(prepared, PVector):
        return dataclasses.replace(prepared, u=prepared.u[perm], sample_hash=None)
    if isinstance(prepared, CenteredFeatures):
        return CenteredFeatures(prepared.Xc[perm], prepared.gram_norm)
    return None


#: below this many rows or columns a resample's P-vector takes the measure's own route (Krylov gains nothing)
KRYLOV_MIN_DIM = 64


def _resample_u(prepared: Any, M: np.ndarray, spec: MeasureSpec) -> np.ndarray:
    """u_1 of M, a resample of the matrix whose P-vector ``prepared`` is: by the Krylov route when M has at least
    KRYLOV_MIN_DIM rows and columns, else by the measure's own prepare. The P-vector angle's prepare chooses its
    route for one matrix and also finds sigma_2 (its degeneracy warning); a resample needs only u_1, to the
    Krylov tolerance (1e-9): measured 2 ms instead of 16 ms at 1,000 x 128, 11 ms instead of 140 ms at
    1,000 x 784."""
    if min(M.shape) < KRYLOV_MIN_DIM:
        return spec.prepare(M).u
    from deepspan.linalg.checks import scale_to_unit
    from deepspan.linalg.svd import top_singular

    return top_singular(scale_to_unit(M)[0], 1, center=prepared.centered, method="krylov").U[:, 0]


def _linear_cka_null(px: Any, py: Any, perms: np.ndarray) -> np.ndarray:
    """||Y_c[p]^T X_c||_F^2 / (||X_c^T X_c|| ||Y_c^T Y_c||) for every permutation p (rows), float32 products:
    per permutation one row gather into a reused buffer and one N x d_y by N x d_x product."""
    Xc = px.Xc.astype(np.float32)
    Yc = py.Xc.astype(np.float32)
    den = px.gram_norm * py.gram_norm
    out = np.empty(len(perms))
    if den == 0:
        out[:] = 0.0  # a constant side: CKA is 0 for every pairing, as linear_cka states
        return out
    buf = np.empty_like(Yc)
    for k, perm in enumerate(perms):
        np.take(Yc, perm, axis=0, out=buf)
        M = buf.T @ Xc
        out[k] = float(np.einsum("ij,ij->", M, M, dtype=np.float64)) / den
    return out


def _linear_cka_boot(px: Any, py: Any, weights: np.ndarray) -> np.ndarray:
    """Linear CKA of every multinomial resample (rows of ``weights``: counts summing to N), from weighted
    Gram statistics of the centered matrices: X_c^T W Y_c - N dx dy^T with dx = X_c^T w / N."""
    Xc, Yc = px.Xc, py.Xc
    n = Xc.shape[0]
    out = np.empty(len(weights))
    for k, w in enumerate(weights):
        dx, dy = (Xc.T @ w) / n, (Yc.T @ w) / n
        Xw = Xc * w[:, None]
        sxy = Xw.T @ Yc - n * np.outer(dx, dy)
        sxx = Xw.T @ Xc - n * np.outer(dx, dx)
        syy = (Yc * w[:, None]).T @ Yc - n * np.outer(dy, dy)
        den = float(np.linalg.norm(sxx)) * float(np.linalg.norm(syy))
        out[k] = float(np.einsum("ij,ij->", sxy, sxy)) / den if den > 0 else 0.0
    return out


def significance(X: Any, Y: Any, measure: Any = "linear_cka", n_perm: int | None = 1000,
                 n_boot: int | None = 1000, ci: float = 0.95, seed: int = 0, groups: Any = None) -> Significance:
    """The value of ``measure`` on (X, Y) with a permutation p-value, null mean/sd, calibrated score and CI.

    X (N x d_x) and Y (N x d_y) hold the same N samples in the same order. ``measure``: a name of
    :data:`MEASURES` or a :class:`MeasureSpec` (with its parameters, e.g. ``eps`` of ``max_match`` or ``k``
    of ``principal_angle``). ``n_perm`` permutations (None: no test), ``n_boot`` resamples (None: no
    interval), a two-sided ``ci`` percentile interval, ``seed``. ``groups`` (length N): block labels; rows of
    one block are permuted and resampled together (every block must have the same number of rows, and
    there must be at least 2 blocks). See the module docstring for the definitions, the calibrated
    score (Gröger et al. 2026's idea, our normalisation) and the fast paths.
    """
    spec = _spec(measure)
    n_perm, n_boot, ci, seed = check_settings(n_perm, n_boot, ci, seed)
    A, B = as_finite_pair(X, Y, names=("X", "Y"), what=f"the significance of {spec.name!r}")
    return significance_prepared(spec, A, B, spec.prepare(A), spec.prepare(B), n_perm, n_boot, ci, seed, groups)


def check_settings(n_perm: Any, n_boot: Any, ci: Any, seed: Any) -> tuple[int | None, int | None, float, int]:
    """The validated ``n_perm``, ``n_boot``, ``ci`` and ``seed`` of :func:`significance` (InputError naming the fix)."""
    n_perm, n_boot = _count(n_perm, "n_perm"), _count(n_boot, "n_boot")
    if isinstance(ci, bool) or not isinstance(ci, (int, float, np.floating)) or not 0.0 < float(ci) < 1.0:
        raise InputError(f"ci must be a coverage strictly between 0 and 1 (e.g. 0.95), got {ci!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}.")
    return n_perm, n_boot, float(ci), int(seed)


def significance_prepared(spec: MeasureSpec, A: np.ndarray, B: np.ndarray, px: Any, py: Any, n_perm: int | None,
                          n_boot: int | None, ci: float, seed: int, groups: Any = None) -> Significance:
    """:func:`significance` for validated float64 matrices A, B whose ``spec.prepare`` statistics are already
    known (``compare_many`` prepares each model once); the settings as :func:`check_settings` returns them."""
    rows, n_blocks = _blocks(groups, A.shape[0])
    value = float(spec.pair(px, py))
    with warnings.catch_warnings():  # a resample's degenerate spectrum is the draw's, not the data's: the value warns
        warnings.simplefilter("ignore", DegenerateSpectrumWarning)
        return _draws(spec, A, B, px, py, value, rows, n_blocks, n_perm, n_boot, ci, seed)


def _draws(spec: MeasureSpec, A: np.ndarray, B: np.ndarray, px: Any, py: Any, value: float, rows: np.ndarray,
           n_blocks: int, n_perm: int | None, n_boot: int | None, ci: float, seed: int) -> Significance:
    """The permutation null and the bootstrap of :func:`significance_prepared`."""
    is_linear_cka = spec.name == "linear_cka" and spec.pair is MEASURES["linear_cka"].pair
    null = None
    if n_perm is not None:
        perms = _draw_perms(np.random.default_rng([int(seed), 0]), rows, n_perm)
        if is_linear_cka:
            null = _linear_cka_null(px, py, perms)
        else:
            null = np.empty(n_perm)
            for k, perm in enumerate(perms):
                q = _permuted(py, perm)
                null[k] = spec.pair(px, q if q is not None else spec.prepare(B[perm]))

    boot = None
    if n_boot is not None:
        rng = np.random.default_rng([int(seed), 1])
        draws = rng.integers(0, n_blocks, size=(n_boot, n_blocks))
        if is_linear_cka:
            counts = np.stack([np.bincount(d, minlength=n_blocks) for d in draws]).astype(np.float64)
            weights = np.zeros((n_boot, A.shape[0]))
            weights[:, rows.reshape(-1)] = np.repeat(counts, rows.shape[1], axis=1)
            boot = _linear_cka_boot(px, py, weights)
        else:
            from deepspan.linalg.angles import unit_angle
            from deepspan.measures.pvector import PVector

            boot = np.empty(n_boot)
            pvectors = isinstance(px, PVector) and isinstance(py, PVector)
            for k, d in enumerate(draws):
                idx = rows[d].reshape(-1)
                if pvectors:
                    boot[k] = unit_angle(_resample_u(px, A[idx], spec), _resample_u(py, B[idx], spec))
                else:
                    boot[k] = spec.pair(spec.prepare(A[idx]), spec.prepare(B[idx]))
    return _summary(spec, value, null, boot, ci, seed, n_blocks, f"the permutation null of {spec.name!r}")


def _summary(spec: MeasureSpec, value: float, null: np.ndarray | None, boot: np.ndarray | None, ci: float,
             seed: int, n_blocks: int, what: str) -> Significance:
    """The :class:`Significance` of ``value`` from its null draws and resample draws (either may be None): the
    p-value with the tie tolerance, the null's mean and sd, the calibrated score and the percentile interval."""
    p_value = null_mean = null_sd = calibrated = None
    if null is not None:
        tol = TIE_RTOL * max(abs(value), 1e-12)
        extreme = null >= value - tol if spec.kind == "similarity" else null <= value + tol
        p_value = float((1 + int(extreme.sum())) / (1 + len(null)))
        null_mean = float(null.mean())
        null_sd = float(null.std(ddof=1)) if len(null) > 1 else 0.0
        if spec.identity == null_mean:
            raise InputError(f"{what} has mean {null_mean}, its identity value, so no calibrated score can be "
                             f"formed; the features carry no sample structure to test.")
        calibrated = float((value - null_mean) / (spec.identity - null_mean))
    ci_low = ci_high = None
    if boot is not None:
        alpha = (1.0 - float(ci)) / 2.0
        ci_low, ci_high = (float(v) for v in np.quantile(boot, [alpha, 1.0 - alpha]))
    return Significance(spec.name, spec.kind, value, p_value, null_mean, null_sd, calibrated, ci_low, ci_high,
                        float(ci), CI_METHOD, None if null is None else len(null),
                        None if boot is None else len(boot), int(seed), n_blocks, null, boot)


def mean_significance(pairs: Any, measure: Any = "linear_cka", n_perm: int | None = 1000, n_boot: int | None = 1000,
                      ci: float = 0.95, seed: int = 0) -> Significance:
    """The significance of the *mean* of a measure over several pairs (X_k, Y_k) of the same N samples.

    Every pair gets the same permutations and resamples (they depend only on ``seed`` and N), so the mean's
    permutation null is the mean of the pairs' null draws (one shuffle of the samples applied to every pair's
    second side) and its bootstrap distribution the mean of their resample draws (one resample of the samples
    for all pairs): the pairs may share models, the resampling unit is the sample. Returns a
    :class:`Significance` of the mean (``value`` = the mean of the pairs' values), p-value, null, calibrated
    score and interval defined as in :func:`significance`.
    """
    pairs = list(pairs)
    if not pairs:
        raise InputError("mean_significance needs at least one pair (X, Y) of feature matrices.")
    spec = _spec(measure)
    settings = check_settings(n_perm, n_boot, ci, seed)
    sigs = [significance(X, Y, spec, *settings) for X, Y in pairs]
    n = {s.n_blocks for s in sigs}
    if len(n) > 1:
        raise InputError(f"the pairs hold different numbers of samples ({sorted(n)}); the mean's draws need the same "
                         f"samples in every pair.")
    value = float(np.mean([s.value for s in sigs]))
    null = None if settings[0] is None else np.mean([s.null for s in sigs], axis=0)
    boot = None if settings[1] is None else np.mean([s.boot for s in sigs], axis=0)
    return _summary(spec, value, null, boot, settings[2], settings[3], n.pop(),
                    f"the permutation null of the mean {spec.name!r}")
