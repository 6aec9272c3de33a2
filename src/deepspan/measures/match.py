"""Neuron activation subspace match (Wang et al., NeurIPS 2018).

Wang, Hu, Gu, Wu, Hu, He, Hopcroft, "Towards Understanding Learning
Representations: To What Extent Do Different Neural Networks Learn the Same
Representation", NeurIPS 2018, arXiv:1810.11750.

Inputs are activation matrices A (N samples x n_a neurons) and B (N x n_b) on
the same samples; a neuron's *activation vector* is its column, a vector in
R^N. (The paper's code stores the transpose; the public API here is samples x
neurons.)

Definitions (relative distances; "within eps" is inclusive):

* the relative distance of a neuron z to the span of a set of neurons S is
  ``d(z, S) = ||z - Proj_span(S) z|| / ||z||`` (1 for an empty S);
* (X, Y), X a subset of A's neurons and Y of B's, is an **eps-approximate
  match** if every z in X has d(z, Y) <= eps and every z in Y has d(z, X) <= eps;
* the **maximum match** (X*, Y*) is the union of all eps-matches -- itself a
  match. It is found by alternately removing from X the neurons farther than
  eps from span(Y) and from Y those farther than eps from span(X) until a full
  pass removes nothing;
* a **v-minimal match** is a match containing neuron v from which no other
  neuron can be removed without losing v from the maximum match of what is
  left; the distinct v-minimal matches are the **simple matches**;
* the **maximum matching similarity** is (|X*| + |Y*|) / (n_a + n_b).

Caveat (the paper's own): a low similarity does not prove that two networks
learned different representations -- the match is a strict, neuron-basis
notion, and a representation can be shared approximately, or by a
transformation the match does not see.

Numerics. Every quantity is an inner product, so one pass over the data gives
the Gram matrix G = [A B]^T [A B] (float64), and the algorithm then runs on
small dense matrices. A pivoted Cholesky factorisation of G_SS (LAPACK
dpstrf) picks a basis of span(S) greedily -- each step takes the neuron
farthest from the span of those already taken -- and stops when every
remaining neuron's squared distance is below ``RANK_CUT`` * max_i G_ii: the
explicit relative rank cut-off for dead, duplicated or dependent neurons.
With L the factor on the r basis neurons P,

    ||Proj_span(S) z||^2 = || L^{-1} G_Pz ||^2,
    d(z, S)^2 = (G_zz - ||Proj z||^2) / G_zz.

The Gram matrix is first scaled to unit-norm neurons (relative distances do
not depend on scale). Through the Gram matrix a squared distance carries an
absolute error of about 1e-15 / delta^2, where delta is the smallest relative
distance of a basis neuron to the span of the others (>= 1e-6 by the rank
cut): distances are accurate to ~1e-7 for well-separated neurons and degrade
for spans of nearly parallel neurons (d^2 off by ~1e-7 at delta = 1e-4; at
delta ~ 1e-5 small distances are not resolved). Least squares on the raw
activations (``relative_distance``) is the accurate, slow route. Comparisons are ``d <= eps + atol`` with
``atol = 1e-6`` by default, which is what makes eps = 0 meaningful. Neurons with norm <= 1e-16 times the
largest neuron norm of their side ("dead"; exactly the all-zero ones for ordinary activations) are never
matched but count in the similarity's denominator; ``active_similarity`` leaves them out.

Scale. Relative distances do not depend on the scale of either side, and neither does anything here:
:func:`match_side` multiplies each side by the exact power of two that puts its largest |activation|
in [0.5, 1) (:func:`~deepspan.linalg.checks.scale_to_unit`), so the Gram matrix neither overflows nor
underflows, and the dead-neuron rule is relative to each side's own scale.

Prepare + pair (DESIGN.md). :func:`match_side` is the per-network step (the float64
activations, their squared norms and, on first use, their Gram matrix); :func:`match_pair`
builds the :class:`MatchGram` of two prepared sides (only the cross product A^T B is new) and
returns the maximum match. :func:`max_match` is ``match_pair(match_side(A), match_side(B), eps)``;
:func:`max_match_similarity` (the ``max_match`` entry of ``MEASURES``) is its ``.similarity``, made by
:func:`max_match_similarity_steps` (``eps``, ``atol``).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.linalg
from scipy.linalg.lapack import dpstrf

from deepspan.errors import InputError, SampleMismatchError, TrivialSpanWarning
from deepspan.linalg.checks import check_same_samples, scale_to_unit, to_numpy

__all__ = [
    "DEAD_NORM",
    "RANK_CUT",
    "ATOL",
    "DEFAULT_EPS_GRID",
    "TrivialSpanWarning",
    "Match",
    "MatchSide",
    "MatchGram",
    "match_side",
    "match_pair",
    "max_match_similarity_steps",
    "max_match_active_steps",
    "max_match_active_similarity",
    "relative_distance",
    "is_match",
    "max_match",
    "max_match_similarity",
    "max_epsilon",
    "min_epsilon_for_size",
    "minimal_match",
    "simple_matches",
    "layer_match_similarity",
]

#: Neurons whose activation vector has norm <= DEAD_NORM times the largest neuron norm of their side are
#: dead: never matched (a relative rule, so the match does not depend on the scale of the activations).
DEAD_NORM = 1e-16
#: Pivoted Cholesky of a span's Gram matrix stops when every remaining neuron's squared distance to
#: the basis is below RANK_CUT * (largest squared norm): neurons within ~1e-6 (relative) of the
#: span of the others add nothing to it.
RANK_CUT = 1e-12
#: Default absolute tolerance added to eps in every "within eps" comparison.
ATOL = 1e-6
#: The eps grid of the layer-wise similarity (the paper's Figure 3 range).
DEFAULT_EPS_GRID = (0.15, 0.2, 0.25, 0.3, 0.5)


@dataclass(frozen=True)
class Match:
    """An eps-match (X, Y): sorted column indices into A and B, with the similarity bookkeeping."""

    a: np.ndarray
    b: np.ndarray
    eps: float
    n_a: int
    n_b: int
    dead_a: int = 0
    dead_b: int = 0

    @property
    def size(self) -> int:
        return int(len(self.a) + len(self.b))

    @property
    def similarity(self) -> float:
        """(|X| + |Y|) / (n_a + n_b), dead neurons counted in the denominator."""
        return self.size / (self.n_a + self.n_b)

    @property
    def active_similarity(self) -> float:
        """(|X| + |Y|) / (active neurons of A and B)."""
        active = self.n_a + self.n_b - self.dead_a - self.dead_b
        return self.size / active if active else 0.0

    def key(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return tuple(int(i) for i in self.a), tuple(int(i) for i in self.b)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["a"], d["b"] = [int(i) for i in self.a], [int(i) for i in self.b]
        d["similarity"], d["active_similarity"] = self.similarity, self.active_similarity
        return d


def _check_eps(eps: float) -> float:
    eps = float(eps)
    if not (0.0 <= eps < 1.0) or math.isnan(eps):
        raise InputError(f"eps must be in [0, 1) (a relative distance), got {eps}.")
    return eps


def _activations(A: Any, name: str) -> np.ndarray:
    a = to_numpy(A)
    if a.ndim != 2:
        raise InputError(f"{name} must be a 2-D samples x neurons matrix, got shape {a.shape}.")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise InputError(f"{name} is empty (shape {a.shape}); it needs at least one sample and one neuron.")
    if a.dtype.kind not in "biuf":
        raise InputError(f"{name} has dtype {a.dtype}; pass real-valued activations.")
    a = np.asarray(a, dtype=np.float64)
    if not np.isfinite(a).all():
        bad = np.argwhere(~np.isfinite(a))[0]
        raise InputError(
            f"{name} contains {int((~np.isfinite(a)).sum())} non-finite value(s); the first is at sample {bad[0]}, "
            f"neuron {bad[1]}. Remove or impute them first."
        )
    return a


class MatchSide:
    """Per-network statistics of the subspace match: one side's activations (float64, samples x neurons).

    ``sq_norms`` (the neurons' squared norms, the diagonal of X^T X) is computed at once; ``gram``
    (X^T X) on first use and then kept, so a network compared with many others pays for it once.
    """

    def __init__(self, X: np.ndarray) -> None:
        self.X = X
        self.sq_norms = np.einsum("ij,ij->j", X, X)
        self._gram: np.ndarray | None = None

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_neurons(self) -> int:
        return int(self.X.shape[1])

    @property
    def gram(self) -> np.ndarray:
        """X^T X (a symmetric rank-k update, numpy's syrk), computed once."""
        if self._gram is None:
            self._gram = self.X.T @ self.X
        return self._gram


def match_side(X: Any, name: str = "A") -> MatchSide:
    """The prepare step of the subspace match: validate X (N samples x neurons, finite, real) as side ``name``,
    then multiply it by the exact power of two that puts its largest |activation| in [0.5, 1) (relative
    distances are scale-free; the Gram matrix then neither overflows nor underflows)."""
    return MatchSide(scale_to_unit(_activations(X, name))[0])


class MatchGram:
    """The Gram matrix of [A B] and the match algorithms on it (build once, query many times).

    ``MatchGram.from_activations(A, B)`` makes one pass over the data;
    ``MatchGram(G, n_a)`` takes a Gram matrix accumulated elsewhere (e.g. from
    :class:`~deepspan.linalg.CrossGramAccumulator` statistics, uncentered).
    """

    def __init__(self, G: np.ndarray, n_a: int, n_samples: int | None = None, atol: float = ATOL,
                 *, lazy_a: np.ndarray | None = None) -> None:
        G = np.asarray(G, dtype=np.float64)
        if G.ndim != 2 or G.shape[0] != G.shape[1] or not (0 < n_a < G.shape[0]):
            raise InputError(f"G must be square (n_a + n_b) with 0 < n_a < size, got shape {G.shape} and n_a={n_a}.")
        if not np.isfinite(G).all():
            raise InputError("the Gram matrix contains NaN/Inf; the activations had non-finite values.")
        G = G + G.T  # symmetric (and a fresh copy, scaled in place below)
        G *= 0.5
        self.n_a, self.n_b = int(n_a), int(G.shape[0] - n_a)
        self.n_samples = n_samples
        self.atol = float(atol)
        norms2 = np.diag(G).copy()
        # dead: norm <= DEAD_NORM x the largest neuron norm of the same side (relative, so scale-free)
        top = np.repeat([norms2[: self.n_a].max(), norms2[self.n_a :].max()], [self.n_a, self.n_b])
        self.alive = norms2 > DEAD_NORM**2 * top
        # relative distances do not depend on the neurons' scales: work with unit-norm neurons
        # (G_ij / (|z_i| |z_j|)), so the rank cut-off is relative to each neuron, not to the largest
        inv = np.where(self.alive, 1.0 / np.sqrt(np.where(self.alive, norms2, 1.0)), 0.0)
        G *= inv[:, None]
        G *= inv[None, :]
        self.G = G
        self.diag = np.where(self.alive, 1.0, 0.0)
        # with lazy_a (the raw A), the A-A block of G holds only its diagonal; pairs among A's neurons
        # are computed when a span first needs them (the first pruning pass never does)
        self._A = lazy_a
        self._inv_a = inv[: self.n_a]
        self._aa_known = np.zeros(self.n_a, dtype=bool) if lazy_a is not None else np.ones(self.n_a, dtype=bool)
        if n_samples is not None and n_samples <= max(self.n_a, self.n_b):
            warnings.warn(
                f"N = {n_samples} samples <= {max(self.n_a, self.n_b)} neurons: the activation vectors can span all of "
                f"R^N, so matches become trivial. Use more samples than neurons.",
                TrivialSpanWarning,
                stacklevel=3,
            )

    @classmethod
    def from_activations(cls, A: Any, B: Any, atol: float = ATOL) -> "MatchGram":
        """One pass over A (N x n_a) and B (N x n_b): ``from_sides(match_side(A, "A"), match_side(B, "B"))``."""
        a = match_side(A, "A")
        b = match_side(B, "B")
        return cls.from_sides(a, b, atol)

    @classmethod
    def from_sides(cls, a: MatchSide, b: MatchSide, atol: float = ATOL) -> "MatchGram":
        """The Gram matrix of [A B] from two prepared sides (:func:`match_side`): only A^T B is computed here.

        A's own block holds its diagonal now and the rest lazily (the first pruning pass never needs it);
        B's block is ``b.gram``, computed once per side.
        """
        check_same_samples(a.n_samples, b.n_samples, names=("A", "B"),
                           what="the subspace match (activation vectors are compared in sample space)")
        na = a.n_neurons
        G = np.zeros((na + b.n_neurons,) * 2)
        G[np.arange(na), np.arange(na)] = a.sq_norms  # A^T A: diagonal now, the rest lazily
        G[na:, na:] = b.gram
        G[:na, na:] = a.X.T @ b.X
        G[na:, :na] = G[:na, na:].T
        return cls(G, na, a.n_samples, atol, lazy_a=a.X)

    @classmethod
    def from_stats(cls, stats: Any, atol: float = ATOL) -> "MatchGram":
        """From :class:`~deepspan.linalg.CrossGramStats` (uncentered blocks A^T A, B^T B, A^T B)."""
        GA, GB, C = stats.a.gram(False), stats.b.gram(False), stats.cross_gram(False)
        G = np.block([[GA, C], [C.T, GB]])
        return cls(G, GA.shape[0], stats.a.n_samples, atol)

    # -------------------------------------------------------------- primitives
    def _global(self, side: str, idx: Any) -> np.ndarray:
        raw = np.asarray(idx).reshape(-1)
        n = self.n_a if side == "a" else self.n_b
        if raw.size and raw.dtype.kind not in "iu":
            raise InputError(
                f"neuron indices for side {side!r} must be integers, got dtype {raw.dtype}"
                + (" (a boolean mask: pass np.flatnonzero(mask))" if raw.dtype.kind == "b" else "") + "."
            )
        idx = np.unique(raw.astype(np.int64))
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise InputError(f"neuron indices {raw.tolist()} out of range for side {side!r} with {n} neurons.")
        return idx if side == "a" else idx + self.n_a

    def distances(self, targets: np.ndarray, span: np.ndarray) -> np.ndarray:
        """Relative distances of the (global) neurons ``targets`` to the span of the (global) neurons ``span``."""
        targets = np.asarray(targets, dtype=np.int64)
        if len(targets) == 0:
            return np.zeros(0)
        span = np.asarray(span, dtype=np.int64)
        span = span[self.alive[span]]
        if len(span) == 0:
            return np.ones(len(targets))
        span_a = span[span < self.n_a]
        if len(span_a):  # A-A pairs are needed within the span and between the span and A targets
            self._ensure_aa(np.concatenate([span_a, targets[targets < self.n_a]]))
        Gss = np.asfortranarray(self.G[np.ix_(span, span)])
        c, piv, rank, info = dpstrf(Gss, lower=1, tol=RANK_CUT)
        if info < 0:  # pragma: no cover - LAPACK argument error
            raise RuntimeError(f"dpstrf failed with info={info}")
        basis = span[piv[:rank] - 1]
        W = scipy.linalg.solve_triangular(c[:rank, :rank], self.G[np.ix_(basis, targets)], lower=True,
                                          check_finite=False)
        proj = (W * W).sum(0)
        return np.sqrt(np.maximum(1.0 - proj, 0.0))

    @property
    def gram(self) -> np.ndarray:
        """The full Gram matrix of the unit-norm neurons [A B] (completes any lazily skipped block)."""
        self._ensure_aa(np.arange(self.n_a))
        return self.G

    def _ensure_aa(self, idx: np.ndarray) -> None:
        """Make G[K, K] valid for K = the A neurons known so far plus ``idx`` (one product over the data)."""
        if self._aa_known[idx].all():
            return
        self._aa_known[idx] = True
        K = np.flatnonzero(self._aa_known)
        AK = self._A[:, K]
        block = AK.T @ AK
        block *= self._inv_a[K][:, None]
        block *= self._inv_a[K][None, :]
        block[np.arange(len(K)), np.arange(len(K))] = np.where(self.alive[K], 1.0, 0.0)
        self.G[np.ix_(K, K)] = block

    def _within(self, targets: np.ndarray, span: np.ndarray, eps: float) -> np.ndarray:
        return targets[self.distances(targets, span) <= eps + self.atol]

    def _max_match_global(self, X: np.ndarray, Y: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
        X = X[self.alive[X]]
        Y = Y[self.alive[Y]]
        while True:
            X2 = self._within(X, Y, eps)
            Y2 = self._within(Y, X2, eps)
            if len(X2) == len(X) and len(Y2) == len(Y):
                return X2, Y2
            X, Y = X2, Y2

    def _match(self, X: np.ndarray, Y: np.ndarray, eps: float) -> Match:
        return Match(np.sort(X), np.sort(Y - self.n_a), eps, self.n_a, self.n_b,
                     int((~self.alive[: self.n_a]).sum()), int((~self.alive[self.n_a :]).sum()))

    # ---------------------------------------------------------------- queries
    def is_match(self, X: Any, Y: Any, eps: float) -> bool:
        """Whether (X, Y) is an eps-match (dead neurons never are)."""
        eps = _check_eps(eps)
        Xg, Yg = self._global("a", X), self._global("b", Y)
        if not (self.alive[Xg].all() and self.alive[Yg].all()):
            return False
        return bool(np.all(self.distances(Xg, Yg) <= eps + self.atol)
                    and np.all(self.distances(Yg, Xg) <= eps + self.atol))

    def max_match(self, eps: float, X: Any = None, Y: Any = None) -> Match:
        """The maximum eps-match, of all neurons or of the subsets X of A and Y of B."""
        eps = _check_eps(eps)
        Xg = np.arange(self.n_a) if X is None else self._global("a", X)
        Yg = np.arange(self.n_a, self.n_a + self.n_b) if Y is None else self._global("b", Y)
        return self._match(*self._max_match_global(Xg, Yg, eps), eps)

    def max_epsilon(self) -> float:
        """The largest relative distance of an active neuron to the span of all active neurons of the other side.

        At this eps (and above) every active neuron is in the maximum match.
        """
        Xa = np.flatnonzero(self.alive[: self.n_a])
        Yb = np.flatnonzero(self.alive[self.n_a :]) + self.n_a
        d = np.concatenate([self.distances(Xa, Yb), self.distances(Yb, Xa)])
        return float(d.max()) if len(d) else 0.0

    def min_epsilon_for_size(self, size: int, tol: float = 1e-4) -> float:
        """Smallest eps (to ``tol``, by bisection) whose maximum match has >= ``size`` neurons on each side."""
        size = int(size)
        n_alive = min(int(self.alive[: self.n_a].sum()), int(self.alive[self.n_a :].sum()))
        if size < 1 or size > n_alive:
            raise InputError(f"size must be in 1..{n_alive} (the active neurons of the smaller side), got {size}.")

        def ok(e: float) -> bool:
            m = self.max_match(e)
            return len(m.a) >= size and len(m.b) >= size

        if ok(0.0):
            return 0.0
        lo, hi = 0.0, min(self.max_epsilon() + self.atol, 1.0 - 1e-12)
        hi = min(hi, 1.0 - 1e-12)
        while hi - lo > tol:
            mid = 0.5 * (lo + hi)
            if ok(mid):
                hi = mid
            else:
                lo = mid
        return hi

    def minimal_match(self, side: str, index: int, eps: float, order: str = "index",
                      seed: int | None = None) -> Match | None:
        """A v-minimal match for neuron v = (side, index), or None when v is not in the maximum match.

        Algorithm (Wang et al. 2018): start from the maximum match with v checked;
        repeatedly take an unchecked neuron -- ``order="index"``: the first unchecked
        neuron of the A-set in index order, and only when none is left the first of
        the B-set; ``order="random"``: a seeded coin picks the side (among sides with
        unchecked neurons), a seeded draw the neuron -- mark it checked, delete it
        tentatively, and compute the maximum match of the reduced sets: if v
        survives, keep the deletion (the current sets become the reduced sets),
        else restore it. The result is an eps-match containing v from which no
        other single neuron can be removed without losing v.
        """
        eps = _check_eps(eps)
        if side not in ("a", "b"):
            raise InputError(f"side must be 'a' or 'b', got {side!r}.")
        if order not in ("index", "random"):
            raise InputError(f"order must be 'index' or 'random', got {order!r}.")
        v = int(self._global(side, [index])[0])
        X, Y = self._max_match_global(np.arange(self.n_a), np.arange(self.n_a, self.n_a + self.n_b), eps)
        if v not in X and v not in Y:
            return None
        rng = np.random.default_rng(seed)
        cur = {"a": list(X), "b": list(Y)}
        unchecked = {"a": [int(i) for i in X if i != v], "b": [int(i) for i in Y if i != v]}
        while unchecked["a"] or unchecked["b"]:
            if order == "index":
                s = "a" if unchecked["a"] else "b"
                u = unchecked[s].pop(0)
            else:
                sides = [s for s in ("a", "b") if unchecked[s]]
                s = sides[int(rng.integers(len(sides)))] if len(sides) > 1 else sides[0]
                u = unchecked[s].pop(int(rng.integers(len(unchecked[s]))))
            reduced = [w for w in cur[s] if w != u]
            Xr, Yr = (np.array(reduced, dtype=np.int64), np.array(cur["b"], dtype=np.int64)) if s == "a" else \
                (np.array(cur["a"], dtype=np.int64), np.array(reduced, dtype=np.int64))
            Xm, Ym = self._max_match_global(Xr, Yr, eps)
            if v in Xm or v in Ym:
                cur[s] = reduced
        return self._match(np.array(cur["a"], dtype=np.int64), np.array(cur["b"], dtype=np.int64), eps)

    def simple_matches(self, eps: float, order: str = "index", seed: int | None = None) -> list[Match]:
        """The distinct v-minimal matches over every neuron v of the maximum match, largest first."""
        if order not in ("index", "random"):
            raise InputError(f"order must be 'index' or 'random', got {order!r}.")
        m = self.max_match(eps)
        found: dict[Any, Match] = {}
        for side, idx in (("a", m.a), ("b", m.b)):
            for i in idx:
                mm = self.minimal_match(side, int(i), eps, order=order, seed=seed)
                if mm is not None:
                    found.setdefault(mm.key(), mm)
        return sorted(found.values(), key=lambda x: (-x.size, x.key()))


# ---------------------------------------------------------------- functional API
def relative_distance(z: Any, S: Any) -> float:
    """||z - Proj_span(S) z|| / ||z|| for a vector z in R^N and neurons S (N x k), by least squares.

    The definition route (numpy.linalg.lstsq); an empty S gives 1. z and S are each first multiplied by
    the exact power of two that puts their largest |entry| in [0.5, 1) (the distance is scale-free), so
    only the zero vector is a dead z.
    """
    z = scale_to_unit(np.asarray(to_numpy(z), dtype=np.float64).reshape(-1))[0]
    nz = np.linalg.norm(z)
    if nz <= DEAD_NORM:
        raise InputError("z is a dead (zero) neuron; its relative distance is undefined.")
    S = scale_to_unit(np.asarray(to_numpy(S), dtype=np.float64))[0]
    if S.ndim == 1:
        S = S[:, None]
    check_same_samples(len(z), S.shape[0], names=("z", "S"), what="a relative distance in sample space")
    if S.shape[1] == 0:
        return 1.0
    coef = np.linalg.lstsq(S, z, rcond=None)[0]
    return float(np.linalg.norm(z - S @ coef) / nz)


def is_match(A: Any, B: Any, X: Any, Y: Any, eps: float, atol: float = ATOL) -> bool:
    """Whether neurons X of A and Y of B form an eps-approximate match (Wang et al. 2018)."""
    return MatchGram.from_activations(A, B, atol).is_match(X, Y, eps)


def match_pair(a: MatchSide, b: MatchSide, eps: float, atol: float = ATOL) -> Match:
    """The pair step of the subspace match: the maximum eps-match of two prepared sides (:func:`match_side`)."""
    return MatchGram.from_sides(a, b, atol).max_match(eps)


def max_match(A: Any, B: Any, eps: float, atol: float = ATOL) -> Match:
    """The maximum eps-match of the neurons of A (N x n_a) and B (N x n_b); ``.similarity`` per Wang et al.

    Wang et al., NeurIPS 2018: the union of all eps-approximate matches, found by alternately pruning
    the neurons farther than eps (relative distance) from the other side's span.
    """
    eps = _check_eps(eps)
    return match_pair(match_side(A, "A"), match_side(B, "B"), eps, atol)


def _similarity_pair(a: MatchSide, b: MatchSide, *, eps: float, atol: float) -> float:
    return match_pair(a, b, eps, atol).similarity


def max_match_similarity_steps(eps: float = 0.25, atol: float = ATOL) -> tuple[Callable[[Any], MatchSide],
                                                                                Callable[[MatchSide, MatchSide], float]]:
    """Maximum matching similarity as (prepare, pair): :func:`match_side` and
    (|X*| + |Y*|) / (n_a + n_b) of :func:`match_pair` at ``eps`` (Wang et al., NeurIPS 2018)."""
    return match_side, functools.partial(_similarity_pair, eps=_check_eps(eps), atol=float(atol))


def _active_similarity_pair(a: MatchSide, b: MatchSide, *, eps: float, atol: float) -> float:
    m = match_pair(a, b, eps, atol)
    if m.n_a + m.n_b - m.dead_a - m.dead_b == 0:
        raise InputError("every neuron of both sides is dead (all-zero activations): the active matching "
                         "similarity has no neurons to count; pass layers with active neurons.")
    return m.active_similarity


def max_match_active_steps(eps: float = 0.25, atol: float = ATOL) -> tuple[Callable[[Any], MatchSide],
                                                                            Callable[[MatchSide, MatchSide], float]]:
    """Maximum matching similarity over active neurons, (|X*| + |Y*|) / (active neurons of A and B), as
    (prepare, pair): dead (all-zero) neurons leave the denominator, so A against itself scores 1."""
    return match_side, functools.partial(_active_similarity_pair, eps=_check_eps(eps), atol=float(atol))


def max_match_similarity(A: Any, B: Any, eps: float = 0.25, atol: float = ATOL) -> float:
    """The maximum matching similarity (|X*| + |Y*|) / (n_a + n_b) at ``eps`` (Wang et al. 2018); dead neurons
    count in the denominator. Equal to ``max_match(A, B, eps, atol).similarity``."""
    prepare, pair = max_match_similarity_steps(eps, atol)
    return pair(prepare(A, "A"), prepare(B, "B"))


def max_match_active_similarity(A: Any, B: Any, eps: float = 0.25, atol: float = ATOL) -> float:
    """The maximum matching similarity over active neurons, (|X*| + |Y*|) / (active neurons of A and B), at
    ``eps``: a layer against itself scores 1 even with dead neurons. Equal to ``max_match(...).active_similarity``
    except that it raises when every neuron is dead (the ``max_match_active`` entry of ``MEASURES``)."""
    prepare, pair = max_match_active_steps(eps, atol)
    return pair(prepare(A, "A"), prepare(B, "B"))


def max_epsilon(A: Any, B: Any) -> float:
    """The eps at and above which every active neuron matches (see :meth:`MatchGram.max_epsilon`)."""
    return MatchGram.from_activations(A, B).max_epsilon()


def min_epsilon_for_size(A: Any, B: Any, size: int, tol: float = 1e-4) -> float:
    """Smallest eps whose maximum match has at least ``size`` neurons on each side (bisection to ``tol``)."""
    return MatchGram.from_activations(A, B).min_epsilon_for_size(size, tol)


def minimal_match(A: Any, B: Any, side: str, index: int, eps: float, order: str = "index",
                  seed: int | None = None) -> Match | None:
    """A v-minimal match for neuron (side, index), or None (see :meth:`MatchGram.minimal_match`)."""
    return MatchGram.from_activations(A, B).minimal_match(side, index, eps, order, seed)


def simple_matches(A: Any, B: Any, eps: float, order: str = "index", seed: int | None = None) -> list[Match]:
    """All simple matches (distinct v-minimal matches) with their sizes, largest first."""
    return MatchGram.from_activations(A, B).simple_matches(eps, order, seed)


def _is_row_draws(x: Any) -> bool:
    """Whether ``x`` is a row-draws object (:class:`deepspan.features.RowDraws`, by its methods)."""
    return all(hasattr(x, a) for a in ("n_draws", "draw", "is_complete", "layer_hash"))


def _mean_std_sem(values: np.ndarray, exact: bool) -> tuple[float, float, float]:
    """Mean, standard deviation (ddof=1) and standard error over draws; an exact value has std = sem = 0,
    a single sampled draw has neither (NaN)."""
    mean = float(values.mean())
    if exact:
        return mean, 0.0, 0.0
    if len(values) < 2:
        return mean, math.nan, math.nan
    std = float(values.std(ddof=1))
    return mean, std, std / math.sqrt(len(values))


def layer_match_similarity(fs_a: Any, fs_b: Any, layers: Any = None, eps_grid: Any = DEFAULT_EPS_GRID,
                           n_rows: int | None = None, repeats: int | None = None, seed: int = 0,
                           atol: float = ATOL) -> list[dict[str, Any]]:
    """Maximum matching similarity per layer pair and eps, averaged over row draws (Wang et al. 2018).

    Wang et al.'s protocol (official code, MeckyWu/subspace-match): for a conv layer (neurons =
    channels, samples = (image, position) pairs) each of 16 draws takes 10,000 (image, position)
    pairs without replacement from **all** test images x positions, the same pairs for both networks;
    the similarity is the mean over the draws. Fully connected layers use every image once.

    Two routes, chosen by what ``fs_a`` and ``fs_b`` are:

    * **row draws** (:func:`deepspan.draw_rows` on both networks with the same data, seed, ``n_rows`` and
      ``draws``): the repeats are the independent draws the objects hold -- the paper's protocol, with
      the memory of the draws only. ``n_rows`` and ``repeats`` default to the draws' own and, if given,
      must equal them; ``seed`` is not used (the draws carry theirs).
    * **FeatureSets** (``channels`` policy for conv layers): each repeat takes ``n_rows`` (default
      10,000) of the FeatureSet's rows with ``default_rng([seed, r])``; ``repeats`` defaults to 16.
      The repeats are independent draws of *those rows*: with ``positions_per_image`` they are subsets
      of one fixed pool of positions, whose mean is biased toward that pool and whose spread is too
      small. Independent draws from all (image, position) pairs need every position in the
      FeatureSet (memory N x P x C) or, better, the row-draws route.

    A layer whose rows are all used once (at most ``n_rows`` rows, or a complete draw) gives the
    exact similarity of all rows: std and sem are 0. ``layers`` is a list of names present in both,
    or of (layer_a, layer_b) pairs; default: the common layers.

    Returns tidy rows ``{layer_a, layer_b, eps, similarity, std, sem, repeats, n_rows,
    independent_draws}``: ``similarity`` is the mean over the repeats, ``std`` their standard
    deviation (ddof=1; NaN for a single sampled draw), ``sem = std / sqrt(repeats)`` the standard error
    of the mean, ``independent_draws`` whether the repeats are independent samples of all rows (or
    all rows once) -- False for a FeatureSet extracted with ``positions_per_image`` (a fixed pool).
    """
    draws_route = _is_row_draws(fs_a), _is_row_draws(fs_b)
    if draws_route[0] != draws_route[1]:
        raise InputError("pass two row-draws objects (deepspan.draw_rows on both networks with the same seed) or two "
                         "FeatureSets, not one of each: their rows cannot be the same.")
    draws_route = draws_route[0]
    if layers is None:
        layers = [name for name in fs_a.layers if name in fs_b.layers]
        if not layers:
            raise InputError("the two inputs have no layer name in common; pass layers=[(layer_a, layer_b), ...].")
    pairs = [(x, x) if isinstance(x, str) else tuple(x) for x in layers]
    eps_grid = [_check_eps(e) for e in eps_grid]
    if not eps_grid:
        raise InputError("eps_grid is empty; pass at least one eps, e.g. the paper's (0.15, 0.2, 0.25, 0.3, 0.5).")
    if draws_route:
        for what, given, held in (("n_rows", n_rows, fs_a.n_rows), ("repeats", repeats, fs_a.draws)):
            if given is not None and int(given) != int(held):
                raise InputError(f"{what}={given} differs from the row draws, which were made with {held}; draw again "
                                 f"with deepspan.draw_rows(..., {'n_rows' if what == 'n_rows' else 'draws'}={given}) "
                                 f"or leave {what} unset.")
    else:
        n_rows = 10_000 if n_rows is None else int(n_rows)
        repeats = 16 if repeats is None else int(repeats)
        if n_rows < 1 or repeats < 1:
            raise InputError(f"n_rows and repeats must be positive, got n_rows={n_rows}, repeats={repeats}.")
    rows = []
    for la, lb in pairs:
        ha, hb = fs_a.layer_hash(la), fs_b.layer_hash(lb)
        if ha != hb:
            fix = ("draw both with deepspan.draw_rows on the same data with the same seed, n_rows and draws"
                   if draws_route else
                   "extract both on the same samples with the same policy, positions_per_image and seed")
            raise SampleMismatchError(
                f"layer {la!r} of the first input and {lb!r} of the second have different rows (hash {ha} vs {hb}); "
                f"{fix}."
            )
        if draws_route:
            reps = fs_a.n_draws(la)
            exact = bool(fs_a.is_complete(la))
            independent = True
            get_a = functools.partial(fs_a.draw, la)
            get_b = functools.partial(fs_b.draw, lb)
            n_used = int(fs_a.draw(la, 0).shape[0])
        else:
            A, B = np.asarray(fs_a[la]), np.asarray(fs_b[lb])
            n = len(A)
            exact = n <= n_rows
            reps = 1 if exact else repeats
            # a FeatureSet holds every (image, position) row unless it was extracted with positions_per_image
            independent = (getattr(fs_a, "provenance", {}) or {}).get("positions_per_image") is None
            n_used = min(n, n_rows)

            def _subset(M: np.ndarray, r: int, n: int = n) -> np.ndarray:
                if exact:
                    return M
                return M[np.sort(np.random.default_rng([seed, r]).choice(n, size=n_rows, replace=False))]

            get_a = functools.partial(_subset, A)
            get_b = functools.partial(_subset, B)
        sims = np.zeros((reps, len(eps_grid)))
        for r in range(reps):
            mg = MatchGram.from_activations(get_a(r), get_b(r), atol)
            for j, e in enumerate(eps_grid):
                sims[r, j] = mg.max_match(e).similarity
        for j, e in enumerate(eps_grid):
            mean, std, sem = _mean_std_sem(sims[:, j], exact)
            rows.append({"layer_a": la, "layer_b": lb, "eps": e, "similarity": mean, "std": std, "sem": sem,
                         "repeats": reps, "n_rows": n_used, "independent_draws": bool(independent)})
    return rows
