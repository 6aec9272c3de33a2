"""Diagonalising the forward feature map (Nam, Mingard, Lee, Hayou, Louis 2024).

Nam et al., "Visualising Feature Learning in Deep Neural Networks by
Diagonalizing the Forward Feature Map", arXiv:2410.04264.

Setting: a network f(x) = W Phi(x) + b with Phi the penultimate features
(p dims), n fixed training inputs, targets Y (n x C; one-hot for C classes,
or any real-valued target matrix for regression). With F = Phi(X) (n x p)
and the thin SVD F = U S V^T, the feature map is diagonalised over the
empirical measure (1/n) sum_i delta_{x_i}:

* eigenvalues      rho_k = s_k^2 / n   (of the kernel K(x, x') = Phi(x)^T Phi(x'));
* eigenfunctions   e_k = sqrt(n) U[:, k] on the training points, orthonormal
  under <g, h> = (1/n) sum_i g(x_i) h(x_i); on new inputs (Nystrom)
  e_k(x) = Phi(x)^T v_k / sqrt(rho_k).

Why these modes: gradient descent on the last layer under the squared loss
L = (1/2n) ||F W^T - Y||^2 moves W by -eta (1/n) (W F^T - Y^T) F. Writing
the predictions in the eigenbasis, the component along e_k evolves as
a_k(t+1) - y_k = (1 - eta rho_k)(a_k(t) - y_k): the e_k are the independent
modes of last-layer training, each fitted at its own rate rho_k.

Quality and utility: Q*_k = sum_c <y_c, e_k>^2 / sum_c ||y_c||^2 (how much of
the targets lies along e_k) and Q_k the same for the network's outputs f_c;
Pi*(k) and Pi(k) their cumulative sums over the k largest rho. The effective
dimension is d_eff = exp(H(rho / sum rho)) (H: Shannon entropy).

Regime (thresholds are parameters, defaults below, and the result carries the
numbers behind the label): **MF** (minimal feature) when the top C
eigenfunctions carry the targets (Pi*(C) >= ``mf_pi``, default 0.9) and the
learned function (Pi(C) >= ``mf_pi`` when outputs are given) and there is a
clear eigen-gap after C (rho_C / rho_{C+1} >= ``mf_gap``, default 2);
**EF** (extended feature) when 90 % of the targets needs at least
``ef_factor`` * C eigenfunctions (default 2) or is never reached; else
**intermediate**. For regression, C is the number of target columns.

Centering (``center``) removes the column means of F first (the targets are
then centered too, so Pi* can still reach 1); ``bias=True`` appends a
constant feature so the last layer's bias lies in the span. Defaults follow
the paper: uncentered, no constant feature.

Scale: multiplying the features by c > 0 multiplies every rho_k by c^2 and leaves the
eigenfunctions, Q*, Q, Pi*, Pi, d_eff and the regime unchanged (without ``bias``; the
constant feature does not scale). The dense route decomposes F times the exact power of two
2^-e that puts max(|F|, and 1 with ``bias``) in [0.5, 1), then multiplies the eigenvalues back
by 4^e, so the invariant outputs are the same for c F as for F and rho scales by exactly c^2;
when the kept rho_k fall outside float64's normal range (features of magnitude beyond about
1e+-150), it raises :class:`~deepspan.errors.InputError` asking to rescale the features rather
than return inf or 0. Targets and outputs are likewise scaled by their own power of two
(Q* and Q do not depend on it). The streamed statistics must fit float64
(:class:`~deepspan.linalg.CrossGramAccumulator` refuses features that over- or underflow).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import math

import numpy as np
import scipy.linalg

from deepspan.errors import InputError
from deepspan.linalg.checks import as_feature_matrix, scale_exponent, scale_to_unit, times_power_of_two, to_numpy
from deepspan.linalg.streaming import STATE_VERSION, AccumulatorBase, CrossGramAccumulator, CrossGramStats

__all__ = [
    "REGIMES",
    "SpectrumResult",
    "feature_spectrum",
    "SpectrumAccumulator",
    "SpectrumStats",
    "feature_spectrum_from_stats",
    "targets_matrix",
]

REGIMES = ("MF", "intermediate", "EF")
#: Eigenvalues below this fraction of the largest have no eigenfunction (rank cut-off).
RANK_CUT = 1e-12


def targets_matrix(y: Any, n: int, n_classes: int | None = None,
                   require_two_classes: bool = True) -> tuple[np.ndarray, bool]:
    """Targets as an n x C float64 matrix: integer labels become one-hot; a 2-D array is used as is.

    Returns (Y, is_classification). A single class is refused unless
    ``require_two_classes`` is False (one streamed batch may hold one class).
    """
    a = np.asarray(to_numpy(y))
    if a.ndim == 1:
        if a.dtype.kind == "b":
            a = a.astype(np.int64)
        if a.dtype.kind not in "iu":
            if a.dtype.kind == "f" and np.all(a == np.round(a)):
                a = a.astype(np.int64)
            else:
                raise InputError(
                    "1-D targets must be integer class labels; pass real-valued targets as an n x m matrix "
                    "(regression), e.g. y.reshape(-1, 1)."
                )
        if len(a) != n:
            raise InputError(f"{len(a)} labels for {n} samples; pass one label per row of the features.")
        if a.min() < 0:
            raise InputError(f"class labels must be 0..C-1, found {a.min()}.")
        C = int(a.max()) + 1 if n_classes is None else int(n_classes)
        if a.max() >= C:
            raise InputError(f"label {a.max()} is out of range for n_classes={C}.")
        if require_two_classes and len(np.unique(a)) < 2:
            raise InputError("the labels hold a single class; the target spectrum needs at least two classes.")
        Y = np.zeros((n, C))
        Y[np.arange(n), a] = 1.0
        return Y, True
    if a.ndim != 2:
        raise InputError(f"targets must be labels (n,) or a matrix (n, m), got shape {a.shape}.")
    if a.shape[0] != n:
        raise InputError(f"the target matrix has {a.shape[0]} rows for {n} samples; pass one row per sample.")
    a = np.asarray(a, dtype=np.float64)
    if not np.isfinite(a).all():
        raise InputError("the targets contain NaN/Inf.")
    return a, False


@dataclass
class SpectrumResult:
    """Eigenvalues, target/output alignment and regime of a feature map (see the module docstring)."""

    rho: np.ndarray
    q_star: np.ndarray
    pi_star: np.ndarray
    q: np.ndarray | None
    pi: np.ndarray | None
    d_eff: float
    n_samples: int
    n_targets: int
    k_for: dict[str, int | None]
    regime: str
    regime_numbers: dict[str, Any]
    centered: bool
    bias: bool
    classification: bool
    method: str
    V: np.ndarray = field(repr=False)
    mean: np.ndarray = field(repr=False)
    U: np.ndarray | None = field(default=None, repr=False)

    @property
    def eigenfunctions_train(self) -> np.ndarray | None:
        """e_k on the training points, sqrt(n) U (n x r); None when computed from streaming statistics."""
        return None if self.U is None else np.sqrt(self.n_samples) * self.U

    def eigenfunctions(self, Phi: Any, k: int | None = None) -> np.ndarray:
        """Nystrom extension e_k(x) = (Phi(x) [- mean] [, 1])^T v_k / sqrt(rho_k) for the rows of ``Phi``."""
        F = np.asarray(as_feature_matrix(Phi, "Phi", min_samples=1), dtype=np.float64)
        if self.centered:
            F = F - self.mean
        if self.bias:
            F = np.hstack([F, np.ones((len(F), 1))])
        if F.shape[1] != self.V.shape[0]:
            raise InputError(f"Phi has {F.shape[1]} features (after the bias column), the spectrum {self.V.shape[0]}.")
        k = len(self.rho) if k is None else int(k)
        r = min(k, int((self.rho > 0).sum()))
        return F @ self.V[:, :r] / np.sqrt(self.rho[:r])

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("V", "U", "mean")}
        for key in ("rho", "q_star", "pi_star", "q", "pi"):
            if d[key] is not None:
                d[key] = np.asarray(d[key]).tolist()
        return d


def _regime(pi_star: np.ndarray, pi: np.ndarray | None, rho: np.ndarray, C: int,
            mf_pi: float, mf_gap: float, ef_factor: float) -> tuple[str, dict[str, Any], dict[str, int | None]]:
    def k_at(level: float) -> int | None:
        hit = np.flatnonzero(pi_star >= level - 1e-12)
        return int(hit[0]) + 1 if len(hit) else None

    k_for = {"90": k_at(0.90), "95": k_at(0.95), "99": k_at(0.99)}
    pi_star_C = float(pi_star[min(C, len(pi_star)) - 1])
    pi_C = None if pi is None else float(pi[min(C, len(pi)) - 1])
    gap = float(rho[C - 1] / rho[C]) if C < len(rho) and rho[C] > 0 else float("inf")
    numbers = {"C": C, "pi_star_C": pi_star_C, "pi_C": pi_C, "gap_ratio_C": gap, "k90": k_for["90"],
               "mf_pi": mf_pi, "mf_gap": mf_gap, "ef_factor": ef_factor}
    if pi_star_C >= mf_pi and (pi_C is None or pi_C >= mf_pi) and gap >= mf_gap:
        regime = "MF"
    elif k_for["90"] is None or k_for["90"] >= ef_factor * C:
        regime = "EF"
    else:
        regime = "intermediate"
    return regime, numbers, k_for


def _assemble(lam: np.ndarray, V: np.ndarray, UtY: np.ndarray, y_sq: float, UtF: np.ndarray | None,
              f_sq: float | None, n: int, C: int, mean: np.ndarray, center: bool, bias: bool,
              classification: bool, method: str, U: np.ndarray | None, mf_pi: float, mf_gap: float,
              ef_factor: float) -> SpectrumResult:
    rho = np.clip(lam, 0.0, None) / n
    q_star = (UtY**2).sum(1) / y_sq
    pi_star = np.cumsum(q_star)
    q = pi = None
    if UtF is not None:
        q = (UtF**2).sum(1) / f_sq if f_sq > 0 else np.zeros(len(rho))
        pi = np.cumsum(q)
    p = rho[rho > 0] / rho.sum()
    d_eff = float(np.exp(-(p * np.log(p)).sum()))
    regime, numbers, k_for = _regime(pi_star, pi, rho, C, mf_pi, mf_gap, ef_factor)
    return SpectrumResult(rho, q_star, pi_star, q, pi, d_eff, n, C, k_for, regime, numbers, bool(center),
                          bool(bias), classification, method, V, mean, U)


def _check_rank(n_components: int) -> None:
    if n_components == 0:
        raise InputError("the features span nothing (all zero, or constant when centered); there is no spectrum.")


def _eigenvalues_back(lam: np.ndarray, e: int, n: int) -> np.ndarray:
    """lam * 4^e (the eigenvalues of the unscaled F^T F), refused when some rho = lam / n is not a normal float64."""
    with np.errstate(over="ignore", under="ignore"):  # out of range is diagnosed below, not warned about
        out = times_power_of_two(lam, 2 * e)
        rho = out / n
    lo, hi = np.finfo(np.float64).tiny, np.finfo(np.float64).max / max(len(lam), 1)
    if (rho >= lo).all() and (rho <= hi).all():
        return out
    top = math.log10(float(lam[0]) / n) + 2 * e * math.log10(2.0)
    bottom = math.log10(float(lam[-1]) / n) + 2 * e * math.log10(2.0)
    what = "overflow" if top > 0 else "underflow"
    raise InputError(
        f"the feature-map eigenvalues rho_k = s_k^2 / n (about 1e{bottom:+.0f} .. 1e{top:+.0f}) scale with the square "
        f"of the features and {what} float64 for features of magnitude ~1e{(e - 1) * math.log10(2.0):+.0f}; rescale "
        f"the features (e.g. divide by their largest absolute value): the eigenfunctions, Q*, Pi* and the regime do "
        f"not change, and rho scales by the square of the factor."
    )


def _check_c(C: int, p: int, bias: bool) -> None:
    if C > p:
        raise InputError(
            f"{C} target dimensions (classes) but only {p} features{' (with the bias column)' if bias else ''}: "
            f"the top-C eigenfunctions cannot be compared with the targets. Use a wider layer."
        )


def feature_spectrum(
    Phi: Any,
    y: Any,
    outputs: Any = None,
    *,
    center: bool = False,
    bias: bool = False,
    n_classes: int | None = None,
    mf_pi: float = 0.9,
    mf_gap: float = 2.0,
    ef_factor: float = 2.0,
) -> SpectrumResult:
    """Eigen-decomposition of the feature map, target/output quality Q*, Q, Pi*, Pi, d_eff and regime.

    ``Phi`` (n x p) are penultimate features, ``y`` integer labels (or an n x m
    real target matrix: regression), ``outputs`` optionally the network's
    outputs f (n x C). Dense route: thin SVD of F (float64). See the module
    docstring for the formulas, the regime rule and Nam et al. (2024).
    """
    F = np.asarray(as_feature_matrix(Phi, "Phi"), dtype=np.float64)
    n, p = F.shape
    Y, classification = targets_matrix(y, n, n_classes)
    Y = scale_to_unit(Y)[0]  # Q* is scale-free in the targets
    # decompose [F | 1] times 2^-e, max(|F|, 1 with bias) in [0.5, 1) (module docstring, "Scale")
    e = max(scale_exponent(F), 1) if bias else scale_exponent(F)
    F = times_power_of_two(F, -e)
    mean = F.mean(0)
    if center:
        F = F - mean
        Y = Y - Y.mean(0)
    if bias:
        F = np.hstack([F, np.full((n, 1), np.ldexp(1.0, -e))])
    _check_c(Y.shape[1], F.shape[1], bias)
    U, s, Vt = scipy.linalg.svd(F, full_matrices=False, check_finite=False)
    keep = s**2 > RANK_CUT * s[0] ** 2 if s[0] > 0 else np.zeros(len(s), dtype=bool)
    _check_rank(int(keep.sum()))
    U, s, V = U[:, keep], s[keep], Vt[keep].T
    lam = _eigenvalues_back(s**2, e, n)
    UtF = f_sq = None
    if outputs is not None:
        f = np.asarray(as_feature_matrix(outputs, "outputs"), dtype=np.float64)
        if f.shape[0] != n:
            raise InputError(f"outputs have {f.shape[0]} rows for {n} samples.")
        f = scale_to_unit(f)[0]  # Q is scale-free in the outputs
        if center:
            f = f - f.mean(0)
        UtF, f_sq = (U.T @ f), float((f * f).sum())
    return _assemble(lam, V, U.T @ Y, float((Y * Y).sum()), UtF, f_sq, n, Y.shape[1], times_power_of_two(mean, e),
                     center, bias, classification, "svd", U, mf_pi, mf_gap, ef_factor)


@dataclass(frozen=True)
class SpectrumStats:
    """Finalised streaming statistics of the feature-map spectrum (Nam et al. 2024, arXiv:2410.04264).

    Fields: ``cross`` -- the :class:`~deepspan.linalg.CrossGramStats` of the
    features Phi (``cross.a``, n x p) and of B = [Y | f] (``cross.b``: the
    targets, one-hot for labels, then the outputs when given), so
    Phi^T Phi, Phi^T Y, Phi^T f, Y^T Y and f^T f (centered or not) are all in
    it; ``n_targets`` (C, the columns of Y); ``has_outputs`` (whether f
    follows Y in B); ``classification`` (labels rather than a real target matrix).
    """

    cross: CrossGramStats
    n_targets: int
    has_outputs: bool
    classification: bool

    @property
    def n_samples(self) -> int:
        return self.cross.n_samples

    @property
    def n_features(self) -> int:
        return self.cross.a.n_features


class SpectrumAccumulator(AccumulatorBase):
    """Streaming form: accumulate Phi^T Phi, Phi^T Y and Phi^T f batch by batch (float64, one pass).

    An :class:`~deepspan.linalg.Accumulator`. ``update(Phi_batch, y_batch,
    outputs_batch=None)``; labels are made one-hot with ``n_classes``
    (required for labels). Built on :class:`~deepspan.linalg.CrossGramAccumulator`
    with B = [Y | f], so centering is exact and ``merge`` is the exact pairwise
    update of Chan, Golub and LeVeque (1979); it refuses an accumulator built
    with another ``n_classes`` / ``with_outputs`` or fed other targets.
    ``finalize()`` gives :class:`SpectrumStats` for :func:`feature_spectrum_from_stats`.

    ``state_dict()`` holds ``n_classes`` (0 when not given), ``with_outputs``,
    ``n_targets`` (0 before the first sample), ``classification`` and the
    cross-Gram state under ``cross.*``.
    """

    needs_labels = True
    _ADDITIVE_KEYS = ("cross.a.scatter", "cross.b.scatter", "cross.cross_scatter")

    def __init__(self, n_classes: int | None = None, with_outputs: bool = False) -> None:
        if n_classes is not None and (isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer))
                                      or n_classes < 1):
            raise InputError(f"n_classes must be a positive integer (or None for target matrices), got {n_classes!r}.")
        self.n_classes = None if n_classes is None else int(n_classes)
        self.with_outputs = bool(with_outputs)
        self._cross = CrossGramAccumulator()
        self._m: int | None = None
        self._classification: bool | None = None

    @property
    def n_samples(self) -> int:
        """Samples seen so far."""
        return self._cross.n_samples

    def update(self, Phi: Any, y: Any, outputs: Any = None) -> "SpectrumAccumulator":
        """Add a batch: features Phi (n_b x p), labels (n_b,) or targets (n_b x m), optional outputs. Returns ``self``."""
        n = int(Phi.shape[0])
        if n == 0:  # like the Gram accumulators, an empty batch adds nothing
            return self
        lab = np.asarray(to_numpy(y))
        if lab.ndim == 1 and self.n_classes is None:
            raise InputError("SpectrumAccumulator(n_classes=C) is needed to one-hot encode streamed labels.")
        Y, classification = targets_matrix(lab, n, self.n_classes, require_two_classes=False)
        if Y.shape[1] == 0:
            raise InputError("the target matrix has no columns; pass labels or an n x m target matrix with m >= 1.")
        if self._classification is not None and classification != self._classification:
            raise InputError("this accumulator has seen " + ("class labels" if self._classification else
                             "a real-valued target matrix") + "; do not mix labels and target matrices across batches.")
        if self._m is not None and Y.shape[1] != self._m:
            raise InputError(f"targets have {Y.shape[1]} columns but earlier batches had {self._m}.")
        parts = [Y]
        if self.with_outputs:
            if outputs is None:
                raise InputError("this accumulator was built with_outputs=True; pass outputs to every update.")
            f = np.asarray(to_numpy(outputs), dtype=np.float64)
            f = f.reshape(-1, 1) if f.ndim == 1 else f
            if f.ndim != 2 or f.shape[0] != n:
                raise InputError(f"outputs have shape {f.shape} for a batch of {n} samples; pass n x C outputs "
                                 f"(one row per sample).")
            parts.append(f)
        B = np.hstack(parts)
        if type(Phi).__module__.startswith("torch"):
            import torch

            B = torch.as_tensor(B, device=Phi.device)
        self._cross.update(Phi, B)
        self._m = Y.shape[1]
        self._classification = classification
        return self

    def merge(self, other: "SpectrumAccumulator") -> "SpectrumAccumulator":
        """Add another accumulator's statistics (other samples, same settings) in place; returns ``self``."""
        self._check_mergeable(other)
        if (self.n_classes, self.with_outputs) != (other.n_classes, other.with_outputs):
            raise InputError(
                f"cannot merge a SpectrumAccumulator(n_classes={other.n_classes}, with_outputs={other.with_outputs}) "
                f"into one with n_classes={self.n_classes}, with_outputs={self.with_outputs}; build every shard's "
                f"accumulator with the same settings."
            )
        if other.n_samples == 0:
            return self
        if self.n_samples:
            if other._classification != self._classification:
                raise InputError("cannot merge an accumulator fed " + ("class labels" if other._classification else
                                 "a target matrix") + " into one fed " + ("class labels" if self._classification else
                                 "a target matrix") + "; every shard must use the same kind of targets.")
            if other._m != self._m:
                raise InputError(f"cannot merge targets with {other._m} columns into targets with {self._m}; every "
                                 f"shard must have the same target columns.")
        self._cross.merge(other._cross)
        self._m, self._classification = other._m, other._classification
        return self

    def finalize(self) -> SpectrumStats:
        """The :class:`SpectrumStats` (float64 numpy) for :func:`feature_spectrum_from_stats`."""
        if self.n_samples == 0:
            raise InputError("the accumulator has seen no samples; call update(Phi, y) before finalize().")
        return SpectrumStats(self._cross.finalize(), int(self._m), self.with_outputs, bool(self._classification))

    def state_dict(self) -> dict[str, Any]:
        """Settings, target kind and the cross-Gram state (``cross.*``): numpy arrays and Python scalars only."""
        cross = self._cross.state_dict()
        out = {**self._state_header(), "n_classes": 0 if self.n_classes is None else self.n_classes,
               "with_outputs": self.with_outputs, "n_targets": 0 if self._m is None else int(self._m),
               "classification": bool(self._classification)}
        out.update({f"cross.{k}": v for k, v in cross.items() if k not in ("kind", "state_version")})
        return out

    @classmethod
    def from_state_dict(cls, d: Mapping[str, Any]) -> "SpectrumAccumulator":
        """The accumulator saved by :meth:`state_dict` (exact)."""
        keys = ("n_samples", "a.mean", "a.scatter", "b.mean", "b.scatter", "cross_scatter")
        cls._check_state(d, ("n_classes", "with_outputs", "n_targets", "classification", *(f"cross.{k}" for k in keys)))
        n_classes = cls._state_int(d, "n_classes")
        acc = cls(n_classes or None, cls._state_bool(d, "with_outputs"))
        inner = {f"{k}": d[f"cross.{k}"] for k in keys}
        acc._cross = CrossGramAccumulator.from_state_dict(
            {"kind": "CrossGramAccumulator", "state_version": STATE_VERSION, **inner})
        m = cls._state_int(d, "n_targets")
        if (m == 0) != (acc.n_samples == 0):
            raise InputError(f"{cls.__name__}.from_state_dict: n_targets={m} with {acc.n_samples} samples; "
                             f"the saved state is corrupt.")
        if m:
            acc._m, acc._classification = m, cls._state_bool(d, "classification")
        return acc


def feature_spectrum_from_stats(
    stats: SpectrumStats,
    *,
    center: bool = False,
    bias: bool = False,
    mf_pi: float = 0.9,
    mf_gap: float = 2.0,
    ef_factor: float = 2.0,
) -> SpectrumResult:
    """The spectrum analysis from :class:`SpectrumStats` (:meth:`SpectrumAccumulator.finalize`), no features held.

    With G = F^T F = V diag(lambda) V^T: rho = lambda / n and U^T Y =
    diag(lambda^-1/2) V^T (F^T Y), so Q* and Q need only the cross-Gram
    blocks (Nam et al. 2024, arXiv:2410.04264; formulas in the module
    docstring). Eigenfunctions on the training points are not available (U is None).
    """
    if not isinstance(stats, SpectrumStats):
        raise InputError(
            f"feature_spectrum_from_stats needs SpectrumStats (from SpectrumAccumulator.finalize()), "
            f"got {type(stats).__name__}."
        )
    cross, C, has_outputs, classification = stats.cross, stats.n_targets, stats.has_outputs, stats.classification
    n = cross.a.n_samples
    GA = cross.a.gram(center)
    FB = cross.cross_gram(center)
    BB = cross.b.gram(center)
    mean = cross.a.mean
    if bias:
        col = (np.zeros(len(mean)) if center else n * mean)[:, None]
        GA = np.block([[GA, col], [col.T, np.array([[float(n)]])]])
        ones_b = (np.zeros(FB.shape[1]) if center else n * cross.b.mean)[None, :]
        FB = np.vstack([FB, ones_b])
    _check_c(C, GA.shape[0], bias)
    lam, V = scipy.linalg.eigh(GA, check_finite=False)
    lam, V = lam[::-1], V[:, ::-1]
    keep = lam > RANK_CUT * lam[0] if lam[0] > 0 else np.zeros(len(lam), dtype=bool)
    _check_rank(int(keep.sum()))
    lam, V = lam[keep], V[:, keep]
    proj = (V.T @ FB) / np.sqrt(lam)[:, None]  # U^T [Y | f]
    UtY, y_sq = proj[:, :C], float(np.trace(BB[:C, :C]))
    UtF = f_sq = None
    if has_outputs:
        UtF, f_sq = proj[:, C:], float(np.trace(BB[C:, C:]))
    return _assemble(lam, V, UtY, y_sq, UtF, f_sq, n, C, mean, center, bias, classification, "gram-stream",
                     None, mf_pi, mf_gap, ef_factor)
