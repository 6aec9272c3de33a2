"""Neural collapse metrics (Papyan, Han and Donoho, PNAS 2020).

Papyan, Han, Donoho, "Prevalence of neural collapse during the terminal phase
of deep learning training", PNAS 117 (2020). From class-wise statistics of the
penultimate features h (counts n_c, class means mu_c, within-class scatter),
with the global mean mu_G (of the class means weighted by n_c), centered class
means M = [mu_c - mu_G] (p x C), Sigma_W = (1/n) sum_c sum_{i in c}
(h_i - mu_c)(h_i - mu_c)^T and Sigma_B = (1/C) sum_c (mu_c - mu_G)(mu_c - mu_G)^T:

* NC1 (variability collapse): Tr(Sigma_W Sigma_B^+) / C;
* NC2 (simplex ETF): equinorm = std_c ||mu_c - mu_G|| / mean_c ||mu_c - mu_G||;
  equiangularity = std over pairs c != c' of cos(mu_c - mu_G, mu_c' - mu_G),
  and max-angle = mean over pairs of |cos + 1/(C-1)| (0 for a simplex ETF);
* NC3 (self-duality): || W / ||W||_F - M^T / ||M||_F ||_F with W the C x p
  last-layer weights;
* NC4 (convergence to nearest class-center): the fraction of samples whose
  network prediction equals the nearest-class-centre decision
  argmin_c ||h - mu_c|| (the *agreement*; 1 - agreement is the mismatch
  rate Papyan et al. plot).

Streaming (DESIGN.md: an accumulator is update / merge / finalize / state_dict):
NC1-NC3 come from one pass, :class:`~deepspan.linalg.ClassStatsAccumulator`
then :func:`neural_collapse_from_stats`. NC4 needs the class means before it
can classify a sample, so it takes a second pass given those means (as
rhubarbwu/neural-collapse does): :class:`NC4Accumulator` then
:func:`nc4_from_stats`, or ``neural_collapse_from_stats(stats, nc4=...)``.

Scale: NC1-NC4 do not depend on the scale of the features (nor NC3 on that of W). The dense
:func:`neural_collapse` multiplies the features by the exact power of two that puts their largest
|value| in [0.5, 1) (:func:`~deepspan.linalg.checks.scale_to_unit`) before any product, so it works
at every finite scale; :func:`neural_collapse_from_stats` divides the class statistics by a power of
two (and W by its own), and :class:`NC4Accumulator` compares distances in units of a power of two
near its largest class mean. The streamed class statistics themselves must fit float64:
:class:`~deepspan.linalg.ClassStatsAccumulator` refuses features whose scatter would over- or
underflow, with a message to rescale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from deepspan.errors import InputError
from deepspan.linalg.checks import (
    as_feature_matrix,
    check_same_samples,
    scale_exponent,
    scale_to_unit,
    times_power_of_two,
    to_numpy,
)
from deepspan.linalg.streaming import AccumulatorBase, ClassStats, ClassStatsAccumulator, prepare_batch

__all__ = [
    "CollapseResult",
    "neural_collapse",
    "neural_collapse_from_stats",
    "NC4Stats",
    "NC4Accumulator",
    "nc4_from_stats",
    "nc4_agreement",
]


@dataclass(frozen=True)
class CollapseResult:
    """NC1-NC4 (see the module docstring); ``nc3``/``nc4`` are None when W / predictions were not given.

    Directions: ``nc1``, the ``nc2_*`` values and ``nc3`` fall to 0 under collapse; ``nc4`` is the agreement
    with the nearest-class-centre decision and *rises* to 1 (Papyan et al.'s NC4 plot is the mismatch
    ``1 - nc4``, falling to 0).
    """

    nc1: float
    nc2_equinorm: float
    nc2_equiangle: float
    nc2_maxangle: float
    nc3: float | None
    nc4: float | None
    n_classes: int
    n_samples: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- NC4: the second pass -----------------------------------------------------------------


@dataclass(frozen=True)
class NC4Stats:
    """Finalised NC4 counts (Papyan, Han, Donoho 2020): how often the network agrees with nearest-class-centre.

    Fields: ``classes`` (C labels, the order of ``means``), ``means`` (C x p
    class means the samples were classified with), ``n_samples`` and
    ``n_agree`` (samples whose prediction equals argmin_c ||h - mu_c||).
    """

    classes: np.ndarray
    means: np.ndarray
    n_samples: int
    n_agree: int

    @property
    def agreement(self) -> float:
        """NC4 = n_agree / n_samples (1 at collapse)."""
        return self.n_agree / self.n_samples

    @property
    def mismatch(self) -> float:
        """1 - NC4: the fraction of samples the network and nearest-class-centre classify differently."""
        return (self.n_samples - self.n_agree) / self.n_samples


class NC4Accumulator(AccumulatorBase):
    """Streaming NC4, a second pass given the class means: ``update(Phi_batch, predictions_batch)``.

    An :class:`~deepspan.linalg.Accumulator`. For each row h of a batch the
    nearest class centre is argmin_c ||h - mu_c||^2 = argmin_c (||mu_c||^2 -
    2 h^T mu_c) (the row constant ||h||^2 dropped), computed in float64 on
    the batch's own device; ``predictions`` are labels (n_b,) or logits
    (n_b x K, argmax taken). The state is two integers (samples, agreements),
    so ``merge`` is an exact sum and the result does not depend on batching
    or merge order; merging refuses another set of classes or means (every
    shard must classify with the same centres). Papyan, Han, Donoho (2020);
    the second-pass design follows rhubarbwu/neural-collapse.

    ``means`` (C x p) and ``classes`` (C) are usually those of the first
    pass: ``NC4Accumulator.from_class_stats(class_stats)``. Exactness: the
    counts are exact integers, and the decisions are the in-memory
    :func:`neural_collapse` ones whenever the same means are used; the only
    possible difference is a sample exactly equidistant (to float64 rounding)
    from two centres.

    ``state_dict()`` holds ``classes``, ``means``, ``n_samples`` and ``n_agree``.
    """

    _ADDITIVE_KEYS = ()  # two integers: the merge is their sum

    def __init__(self, means: Any, classes: Any) -> None:
        M = np.array(to_numpy(means), dtype=np.float64, copy=True)
        if M.ndim != 2 or M.shape[0] < 1 or M.shape[1] < 1:
            raise InputError(f"means must be the C x p class means (e.g. ClassStats.means), got shape {M.shape}.")
        if not np.isfinite(M).all():
            raise InputError("means contain NaN/Inf; pass the finite class means of the first pass.")
        cls = np.array(to_numpy(classes), copy=True)
        if cls.ndim != 1 or len(cls) != len(M):
            raise InputError(
                f"classes must be {len(M)} labels, one per row of means (e.g. ClassStats.classes), got shape {cls.shape}."
            )
        if len(np.unique(cls)) != len(cls):
            raise InputError(f"classes {cls.tolist()} repeat a label; pass one label per class mean.")
        self._classes, self._means = cls, M
        # distances in units of 2^e (e: the exponent of the largest |mean|): no square over- or underflows,
        # and the nearest centre is the same (a power of two scales every distance alike, exactly)
        self._e = scale_exponent(M)
        self._Ms = times_power_of_two(M, -self._e)
        self._sq = (self._Ms * self._Ms).sum(1)
        self._n = 0
        self._agree = 0
        self._device_means: tuple[Any, Any, Any] | None = None  # (device, means, squared norms) for torch batches

    @classmethod
    def from_class_stats(cls, stats: ClassStats) -> "NC4Accumulator":
        """The NC4 pass for the class means of a first pass (``ClassStatsAccumulator.finalize()``)."""
        if not isinstance(stats, ClassStats):
            raise InputError(f"from_class_stats needs ClassStats (ClassStatsAccumulator.finalize()), got {type(stats).__name__}.")
        return cls(stats.means, stats.classes)

    @property
    def n_samples(self) -> int:
        """Samples classified so far."""
        return self._n

    @property
    def classes(self) -> np.ndarray:
        return self._classes.copy()

    @property
    def means(self) -> np.ndarray:
        return self._means.copy()

    def _nearest(self, x: Any) -> np.ndarray:
        """Index of the nearest class mean for every row of a prepared float64 batch."""
        if type(x).__module__.startswith("torch"):
            import torch

            if self._device_means is None or self._device_means[0] != x.device:
                self._device_means = (x.device, torch.as_tensor(self._Ms, device=x.device),
                                      torch.as_tensor(self._sq, device=x.device))
            _, Mt, sq = self._device_means
            h = self._e // 2  # two power-of-two factors, each a representable float64
            xs = x * math.ldexp(1.0, -h) * math.ldexp(1.0, h - self._e)
            return (sq[None, :] - 2 * xs @ Mt.T).argmin(1).cpu().numpy()
        return (self._sq[None, :] - 2 * times_power_of_two(x, -self._e) @ self._Ms.T).argmin(1)

    def update(self, Phi: Any, predictions: Any) -> "NC4Accumulator":
        """Add a batch: features (n_b x p, numpy or torch) and the network's predictions (labels or logits)."""
        x = prepare_batch(Phi, "Phi")
        n_b, p = int(x.shape[0]), int(x.shape[1])
        if p != self._means.shape[1]:
            raise InputError(
                f"Phi has {p} features but the class means have {self._means.shape[1]}; pass the features of the "
                f"layer the means were computed from."
            )
        pred = np.asarray(to_numpy(predictions))
        if pred.ndim == 2:
            pred = pred.argmax(1)
        if pred.ndim != 1 or len(pred) != n_b:
            raise InputError(
                f"{len(pred) if pred.ndim == 1 else pred.shape} predictions for {n_b} samples; pass one prediction "
                f"per sample (a label, or a row of logits)."
            )
        if n_b == 0:
            return self
        nearest = self._classes[self._nearest(x)]
        self._agree += int((nearest == pred).sum())
        self._n += n_b
        return self

    def merge(self, other: "NC4Accumulator") -> "NC4Accumulator":
        """Add another shard's counts (classified with the same classes and means) in place."""
        self._check_mergeable(other)
        if not (np.array_equal(self._classes, other._classes) and np.array_equal(self._means, other._means)):
            raise InputError(
                "cannot merge NC4 counts made with other class means or classes; build every shard's "
                "NC4Accumulator from the same ClassStats (the means of the first pass, shared by all shards)."
            )
        self._n += other._n
        self._agree += other._agree
        return self

    def finalize(self) -> NC4Stats:
        """The :class:`NC4Stats` for :func:`nc4_from_stats`."""
        if self._n == 0:
            raise InputError("the accumulator has seen no samples; call update(Phi, predictions) before finalize().")
        return NC4Stats(self._classes.copy(), self._means.copy(), self._n, self._agree)

    def state_dict(self) -> dict[str, Any]:
        """``{kind, state_version, classes, means, n_samples, n_agree}``: numpy arrays and Python ints."""
        return {**self._state_header(), "classes": self._classes.copy(), "means": self._means.copy(),
                "n_samples": int(self._n), "n_agree": int(self._agree)}

    @classmethod
    def from_state_dict(cls, d: Mapping[str, Any]) -> "NC4Accumulator":
        """The accumulator saved by :meth:`state_dict` (exact)."""
        cls._check_state(d, ("classes", "means", "n_samples", "n_agree"))
        acc = cls(cls._state_array(d, "means", 2), cls._state_array(d, "classes", 1, dtype=None))
        acc._n, acc._agree = cls._state_int(d, "n_samples"), cls._state_int(d, "n_agree")
        if acc._agree > acc._n:
            raise InputError(f"{cls.__name__}.from_state_dict: n_agree={acc._agree} exceeds n_samples={acc._n}; "
                             f"the saved state is corrupt.")
        return acc


def nc4_from_stats(stats: NC4Stats) -> float:
    """NC4 = (1/n) sum_i [prediction_i == argmin_c ||h_i - mu_c||] from :class:`NC4Stats` (Papyan et al. 2020)."""
    if not isinstance(stats, NC4Stats):
        raise InputError(f"nc4_from_stats needs NC4Stats (from NC4Accumulator.finalize()), got {type(stats).__name__}.")
    return float(stats.agreement)


def nc4_agreement(Phi: Any, predictions: Any, means: np.ndarray, classes: np.ndarray) -> float:
    """Fraction of rows whose predicted class equals the nearest class mean's class (NC4, in memory).

    One batch of :class:`NC4Accumulator`, so the in-memory and streamed NC4 are one formula.
    """
    H = as_feature_matrix(Phi, "Phi", min_samples=1)
    return nc4_from_stats(NC4Accumulator(means, classes).update(H, predictions).finalize())


# --- NC1-NC3 ------------------------------------------------------------------------------


def neural_collapse_from_stats(stats: ClassStats, *, W: Any = None, nc4: NC4Stats | None = None) -> CollapseResult:
    """NC1-NC3 from class statistics (one streamed pass), and NC4 from a second pass's :class:`NC4Stats`.

    ``stats`` is :meth:`~deepspan.linalg.ClassStatsAccumulator.finalize` output;
    ``W`` (C x p, e.g. ``model.fc.weight``; rows indexed by label, so a
    classifier over more classes than the data holds is restricted to the
    present ones) enables NC3; ``nc4`` (``NC4Accumulator.finalize()`` over the
    same samples, classified with these class means) fills NC4. Formulas in
    the module docstring; Papyan, Han, Donoho (2020).
    """
    if not isinstance(stats, ClassStats):
        raise InputError(
            f"neural_collapse_from_stats needs ClassStats (from ClassStatsAccumulator.finalize()), "
            f"got {type(stats).__name__}."
        )
    C = len(stats.classes)
    if C < 2:
        raise InputError("neural collapse needs at least two classes; the labels hold one.")
    n, p = stats.n_samples, stats.means.shape[1]
    mu_g = stats.global_mean
    M = (stats.means - mu_g).T  # p x C
    sigma_w = stats.within_scatter / n
    # every NC value is scale-free: M / 2^k and Sigma_W / 4^k (2^k about max(|M|, sqrt|Sigma_W|)) keep the
    # products below (Sigma_B, its pseudo-inverse, M^T M) far from over- and underflow
    k = max(scale_exponent(M), (scale_exponent(sigma_w) + 1) // 2)
    M, sigma_w = times_power_of_two(M, -k), times_power_of_two(sigma_w, -2 * k)
    sigma_b = M @ M.T / C
    nc1 = float(np.trace(sigma_w @ np.linalg.pinv(sigma_b, rcond=1e-10, hermitian=True)) / C)
    norms = np.linalg.norm(M, axis=0)
    if not (norms > 0).all():
        raise InputError("two classes have identical means; the class-mean geometry (NC2) is undefined.")
    equinorm = float(norms.std() / norms.mean())
    cos = (M.T @ M) / np.outer(norms, norms)
    off = cos[~np.eye(C, dtype=bool)]
    equiangle = float(off.std())
    maxangle = float(np.abs(off + 1.0 / (C - 1)).mean())
    nc3 = None
    if W is not None:
        Wm = np.asarray(to_numpy(W), dtype=np.float64)
        if np.isfinite(Wm).all():
            Wm = scale_to_unit(Wm)[0]  # NC3 uses W / ||W||_F only: ||W||_F must not overflow
        cls = stats.classes
        if Wm.ndim == 2 and Wm.shape[0] > C and Wm.shape[1] == p and cls.dtype.kind in "iu" and cls.max() < len(Wm):
            Wm = Wm[cls]  # a classifier over more classes than the data holds: its rows for the present ones
        if Wm.shape != (C, p):
            raise InputError(f"W has shape {Wm.shape}; NC3 needs the C x p = {(C, p)} last-layer weights "
                             f"(rows in the order of the sorted class labels {stats.classes.tolist()}).")
        nc3 = float(np.linalg.norm(Wm / np.linalg.norm(Wm) - M.T / np.linalg.norm(M)))
    nc4_value = None
    if nc4 is not None:
        if not isinstance(nc4, NC4Stats):
            raise InputError(f"nc4 must be NC4Stats (from NC4Accumulator.finalize()), got {type(nc4).__name__}.")
        check_same_samples(stats.n_samples, nc4.n_samples, names=("the class statistics", "the NC4 pass"),
                           what="NC4 (a second pass over the same samples)")
        same_means = (nc4.means.shape == stats.means.shape and np.linalg.norm(nc4.means - stats.means)
                      <= 1e-10 * max(np.linalg.norm(stats.means), 1e-300))
        if not (np.array_equal(nc4.classes, stats.classes) and same_means):
            raise InputError(
                "the NC4 pass classified with other classes or class means than these statistics hold; build it "
                "with NC4Accumulator.from_class_stats(stats) for these stats."
            )
        nc4_value = nc4_from_stats(nc4)
    return CollapseResult(nc1, equinorm, equiangle, maxangle, nc3, nc4_value, C, n)


def neural_collapse(
    Phi_or_stats: Any,
    labels: Any = None,
    *,
    W: Any = None,
    predictions: Any = None,
) -> CollapseResult:
    """NC1-NC4 of penultimate features ``Phi`` (n x p) with integer ``labels``, or of ClassStats.

    ``W`` (C x p, e.g. ``model.fc.weight``; rows indexed by label, so a classifier over more
    classes than the data holds is restricted to the present ones) enables NC3; ``predictions`` (labels or
    logits, n) with dense features enable NC4 (returned as the agreement, 1 under collapse; Papyan et al.'s
    mismatch rate is ``1 - nc4``). Papyan, Han, Donoho (2020). The streaming form is
    :func:`neural_collapse_from_stats` (with :class:`NC4Accumulator` for NC4).
    """
    if isinstance(Phi_or_stats, ClassStats):
        if predictions is not None:
            raise InputError(
                "NC4 needs the features themselves (a second pass): stream NC4Accumulator.from_class_stats(stats) "
                "over the features and predictions, then call neural_collapse_from_stats(stats, nc4=acc.finalize())."
            )
        return neural_collapse_from_stats(Phi_or_stats, W=W)
    H = scale_to_unit(np.asarray(as_feature_matrix(Phi_or_stats, "Phi"), dtype=np.float64))[0]  # NC1-4 scale-free
    if labels is None:
        raise InputError("labels are needed with features (one integer class per row).")
    lab = np.asarray(to_numpy(labels)).reshape(-1)
    if len(lab) != len(H):
        raise InputError(f"{len(lab)} labels for {len(H)} samples; pass one label per row of Phi.")
    stats = ClassStatsAccumulator().update(H, lab).finalize()
    nc4 = None
    if predictions is not None and len(stats.classes) >= 2:
        nc4 = NC4Accumulator.from_class_stats(stats).update(H, predictions).finalize()
    return neural_collapse_from_stats(stats, W=W, nc4=nc4)
