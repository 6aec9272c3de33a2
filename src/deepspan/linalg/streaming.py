"""Streaming float64 sufficient statistics, and the one accumulator protocol of deepspan.

A P-vector, its spectrum and the angle between two P-vectors are functions of
second moments only, so they can be computed in one pass over the data,
batch by batch, without ever holding the feature matrix.

The accumulator protocol (:class:`Accumulator`)
------------------------------------------------
Every streaming statistic of deepspan -- :class:`GramAccumulator`,
:class:`CrossGramAccumulator`, :class:`ClassStatsAccumulator`,
``measures.spectrum.SpectrumAccumulator``, ``measures.collapse.NC4Accumulator``
and any new one -- has the same five verbs (DESIGN.md, "An accumulator is
update / merge / finalize / state_dict"):

* ``update(*batch)`` adds one batch of samples and returns ``self``;
* ``merge(other)`` adds the statistics of another accumulator of the *same
  kind* (another shard of samples, another process) in place and returns
  ``self``; another kind, other widths or incompatible settings raise
  :class:`~deepspan.errors.InputError`;
* ``finalize()`` returns a typed, frozen statistics dataclass in float64
  numpy (:class:`GramStats`, :class:`CrossGramStats`, :class:`ClassStats`,
  ``SpectrumStats``, ``NC4Stats``); ``<result>_from_stats`` functions turn
  those into results;
* ``state_dict()`` returns the state as a flat ``dict`` of numpy arrays and
  Python scalars only (``int``, ``float``, ``bool``, ``str``; torch state is
  moved to host numpy), for saving (``np.savez``) and for reducing across
  processes; the classmethod ``from_state_dict(d)`` restores an equal
  accumulator, bit for bit (also the empty one, and from a dict read back
  with ``np.load``, whose scalars are 0-d arrays);
* ``n_samples`` is the number of samples seen so far.

Merging: the pairwise update of Chan, Golub and LeVeque
--------------------------------------------------------
For a batch ``X_b`` (n_b x d) the Gram accumulator keeps the count ``n``, the
column mean ``mu`` and the *centered* scatter ``S = sum_i (x_i - mu)(x_i - mu)^T``.
Two partial results are merged exactly with the pairwise update of Chan,
Golub and LeVeque (1979, "Updating formulae and a pairwise algorithm for
computing sample variances"):

    n   = n_a + n_b
    mu  = mu_a + (n_b / n) (mu_b - mu_a)
    S   = S_a + S_b + (n_a n_b / n) (mu_b - mu_a)(mu_b - mu_a)^T

The uncentered Gram matrix is recovered as ``F^T F = S + n mu mu^T`` (a sum
of two positive semi-definite terms, so no cancellation), and the centered one
is ``S`` itself, computed without ever subtracting two large Grams. The
cross-Gram of two feature sets on the same samples merges the same way with
``(n_a n_b / n) (delta_A)(delta_B)^T``. The result does not depend on how the
samples were split into batches or shards, nor on the order of the merges,
up to float64 rounding.

Torch batches are accumulated in float64 on their own device (GPU batches stay
on the GPU) until ``finalize`` or ``state_dict`` moves the small results to
numpy. This module does not import torch at module level.

Magnitudes: the statistics are not scale-invariant (S scales with c^2 when the
features are multiplied by c), so they must fit float64. Every update and merge
checks, before it changes anything, that the largest |centered value| of the
batch and of the difference of batch means lies in [2^-485, 2^480) (about
1e-146 .. 3e144; :data:`~deepspan.linalg.checks.SAFE_SQUARE_EXPONENTS`), and
``GramStats.gram(center=False)``, ``total_energy(center=False)`` and
``CrossGramStats.cross_gram(center=False)`` check N mu mu^T likewise: features
whose Gram matrix would overflow, or underflow into subnormals or 0, raise
:class:`~deepspan.errors.InputError` naming the magnitude and the fix (divide the
features by their largest absolute value), never inf, NaN or a silent "all zero".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import math

import numpy as np
import scipy.linalg

from deepspan.errors import InputError
from deepspan.linalg.order import RowOrderSketch
from deepspan.linalg.checks import SAFE_SQUARE_EXPONENTS, as_feature_matrix, check_same_samples, scale_exponent

__all__ = [
    "STATE_VERSION",
    "Accumulator",
    "AccumulatorBase",
    "prepare_batch",
    "GramStats",
    "GramAccumulator",
    "CrossGramStats",
    "CrossGramAccumulator",
    "ClassStats",
    "ClassStatsAccumulator",
    "top_eigh",
]

#: Version of the ``state_dict`` layout; ``from_state_dict`` refuses another one.
STATE_VERSION = 1


# --- the protocol ------------------------------------------------------------------------


@runtime_checkable
class Accumulator(Protocol):
    """The accumulator protocol: ``update`` / ``merge`` / ``finalize`` / ``state_dict`` (module docstring).

    ``isinstance(acc, Accumulator)`` checks that the members exist (a
    :func:`typing.runtime_checkable` protocol). The contract behind them:

    * ``update(*batch) -> self``: add one batch (rows are samples); a 0-row batch is a no-op;
    * ``merge(other) -> self``: in place, exact in float64 (Chan, Golub, LeVeque 1979),
      independent of batching and merge order up to rounding; refuses another
      kind or incompatible widths/classes/settings with :class:`~deepspan.errors.InputError`;
    * ``finalize() -> stats``: a frozen dataclass of float64 numpy arrays; raises
      :class:`~deepspan.errors.InputError` when no sample was seen;
    * ``state_dict() -> dict``: numpy arrays and Python scalars only, with ``kind``
      (the class name) and ``state_version``; ``type(acc).from_state_dict(acc.state_dict())``
      is an equal accumulator (bitwise), which keeps updating identically;
    * ``n_samples``: the number of samples seen.
    """

    @property
    def n_samples(self) -> int: ...

    def update(self, *batch: Any) -> Any: ...

    def merge(self, other: Any) -> Any: ...

    def finalize(self) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    @classmethod
    def from_state_dict(cls, d: Mapping[str, Any]) -> Any: ...


def _scalar(v: Any) -> Any:
    """A Python scalar from a Python scalar, a numpy scalar or a 0-d array (what ``np.load`` gives back)."""
    if isinstance(v, (np.ndarray, np.generic)) and np.ndim(v) == 0:
        return v.item()
    return v


class AccumulatorBase:
    """Shared plumbing of the :class:`Accumulator` protocol; subclass it for a new accumulator.

    Gives the kind check of ``merge``, the ``kind`` / ``state_version`` header
    of ``state_dict`` and the validation helpers of ``from_state_dict``, so every
    accumulator refuses a wrong partner or a wrong dict with the same clear message.
    """

    @property
    def n_samples(self) -> int:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def _check_mergeable(self, other: Any) -> None:
        if type(other) is not type(self):
            raise InputError(
                f"cannot merge a {type(other).__name__} into a {type(self).__name__}; merge accumulators of one "
                f"kind (the same class, built with the same settings, fed with the same feature set)."
            )

    def _state_header(self) -> dict[str, Any]:
        return {"kind": type(self).__name__, "state_version": STATE_VERSION}

    @classmethod
    def _check_state(cls, d: Any, keys: tuple[str, ...]) -> None:
        if not isinstance(d, Mapping):
            raise InputError(
                f"{cls.__name__}.from_state_dict needs the dict returned by state_dict() (or np.load of it), "
                f"got {type(d).__name__}."
            )
        kind = _scalar(d.get("kind"))
        if kind != cls.__name__:
            raise InputError(
                f"this state_dict is of kind {kind!r}, not {cls.__name__!r}; restore it with the class that saved it "
                f"({kind}.from_state_dict(d))."
            )
        version = _scalar(d.get("state_version"))
        if version != STATE_VERSION:
            raise InputError(
                f"this {cls.__name__} state_dict has layout version {version!r}; this deepspan reads version "
                f"{STATE_VERSION}. Save it again with this version of deepspan."
            )
        missing = [k for k in keys if k not in d]
        if missing:
            raise InputError(
                f"the {cls.__name__} state_dict lacks {missing}; pass the complete dict returned by state_dict()."
            )

    @classmethod
    def _state_int(cls, d: Mapping[str, Any], key: str, minimum: int = 0) -> int:
        v = _scalar(d[key])
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise InputError(f"{cls.__name__} state_dict[{key!r}] must be an integer >= {minimum}, got {v!r}.")
        return int(v)

    @classmethod
    def _state_bool(cls, d: Mapping[str, Any], key: str) -> bool:
        v = _scalar(d[key])
        if not isinstance(v, bool):
            raise InputError(f"{cls.__name__} state_dict[{key!r}] must be True or False, got {v!r}.")
        return v

    @classmethod
    def _state_array(cls, d: Mapping[str, Any], key: str, ndim: int, dtype: Any = np.float64) -> np.ndarray:
        """A copy of ``d[key]`` as an ``ndim``-D array of ``dtype`` (None: keep its dtype)."""
        a = np.array(d[key], dtype=dtype, copy=True)
        if a.ndim != ndim:
            raise InputError(
                f"{cls.__name__} state_dict[{key!r}] must be a {ndim}-D array, got shape {a.shape}; "
                f"pass the dict returned by state_dict() unchanged."
            )
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise InputError(f"{cls.__name__} state_dict[{key!r}] contains NaN/Inf; the saved state is corrupt.")
        return a

    #: attributes holding float64 state that lives on the batches' device (numpy on the host, or torch tensors)
    _DEVICE_SLOTS: tuple[str, ...] = ()
    #: ``state_dict`` keys of the big centered-moment matrices, which ``merge`` combines *linearly* (the sum of
    #: the two, plus a correction that depends only on the counts and means): deepspan.distributed sums them
    #: with one tensor all_reduce. ``None``: not known to be linear (the state is gathered and merged whole).
    _ADDITIVE_KEYS: tuple[str, ...] | None = None

    def _children(self) -> list["AccumulatorBase"]:
        """Accumulators held by this one (attributes, or values of dict attributes), for device moves."""
        out: list[AccumulatorBase] = []
        for v in vars(self).values():
            if isinstance(v, AccumulatorBase):
                out.append(v)
            elif isinstance(v, dict):
                out.extend(x for x in v.values() if isinstance(x, AccumulatorBase))
        return out

    def _state_device(self) -> Any:
        """The torch device of this accumulator's state, or ``None`` when it is on the host (numpy) or empty."""
        for slot in self._DEVICE_SLOTS:
            v = getattr(self, slot, None)
            if _is_torch(v):
                return v.device
        for child in self._children():
            dev = child._state_device()
            if dev is not None:
                return dev
        return None

    def _to_device(self, device: Any) -> None:
        """Move the state to ``device`` (a torch device; ``None``: to the host as numpy), in place."""
        for slot in self._DEVICE_SLOTS:
            v = getattr(self, slot, None)
            if v is None:
                continue
            if device is None:
                setattr(self, slot, _to_numpy64(v))
            else:
                import torch

                setattr(self, slot, v.to(device=device, dtype=torch.float64) if _is_torch(v)
                        else torch.as_tensor(np.asarray(v, dtype=np.float64), device=device))
        for child in self._children():
            child._to_device(device)

    def load_state_dict(self, d: Mapping[str, Any]) -> "AccumulatorBase":
        """Replace this accumulator's state by ``d`` (a :meth:`state_dict` of the same kind), in place.

        The state stays where this accumulator's was: on its torch device if it held tensors, else on the
        host. With :func:`deepspan.distributed.all_reduce`: ``acc.load_state_dict(all_reduce(acc).state_dict())``
        makes ``acc`` itself hold every rank's statistics (what ``extract(..., distributed=True)`` does).
        Returns ``self``.
        """
        restored = type(self).from_state_dict(d)  # type: ignore[attr-defined]
        device = self._state_device()
        vars(self).clear()
        vars(self).update(vars(restored))
        if device is not None:
            self._to_device(device)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_samples={self.n_samples})"


# --- batches -----------------------------------------------------------------------------


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _raise_nonfinite(a: np.ndarray, name: str) -> None:
    """Raise the shared NaN/Inf message of ``as_feature_matrix`` (count, kinds, first position)."""
    as_feature_matrix(a, name, min_samples=0)
    raise InputError(f"{name} contains NaN or Inf; remove or impute those samples before streaming.")


def prepare_batch(batch: Any, name: str = "batch") -> Any:
    """Validate one samples x features batch and return it in float64 on its own backend and device.

    The one batch check of every accumulator's ``update`` and of second passes
    (``with_left_vector``, ``NC4Accumulator``). The batch must be 2-D
    (n_b x d with d >= 1; n_b = 0 is allowed and means "nothing to add"), real,
    numeric and finite:

    * numpy input of any real dtype (float32, integers, booleans are converted)
      comes back as a float64 numpy array;
    * a torch tensor (any device, any real dtype) comes back detached, as a
      float64 tensor on the *same* device -- nothing is copied to the host.

    Raises :class:`~deepspan.errors.InputError` naming the problem and the fix:
    wrong number of axes, no feature columns, complex or non-numeric values,
    NaN/Inf (how many, and where the first one is). ``name`` names the batch in
    those messages.
    """
    if _is_torch(batch):
        import torch

        t = batch.detach()
        if t.ndim != 2:
            raise InputError(
                f"{name} must be a 2-D samples x features batch, got shape {tuple(t.shape)}; "
                f"reshape with batch.reshape(len(batch), -1)."
            )
        if t.shape[1] < 1:
            raise InputError(f"{name} has no feature columns (shape {tuple(t.shape)}); pass at least one feature.")
        if t.is_complex():
            raise InputError(f"{name} is complex; deepspan works with real features only.")
        t = t.to(torch.float64)
        if not bool(torch.isfinite(t).all()):
            _raise_nonfinite(t.cpu().numpy(), name)
        return t
    a = as_feature_matrix(batch, name, min_samples=0, check_values=False)  # shape and dtype rules of deepspan
    a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        _raise_nonfinite(a, name)
    return a


def _to_numpy64(x: Any) -> np.ndarray:
    if _is_torch(x):
        return x.detach().cpu().numpy().astype(np.float64, copy=False)
    return np.asarray(x, dtype=np.float64)


def _numpy_copy(x: Any) -> np.ndarray:
    """A float64 numpy copy of array state (torch state is moved to the host), for ``state_dict``."""
    return np.array(_to_numpy64(x), dtype=np.float64, copy=True)


def _like(x: Any, ref: Any) -> Any:
    """Return ``x`` on the backend/device of ``ref``."""
    if _is_torch(ref):
        import torch

        if _is_torch(x):
            return x.to(device=ref.device, dtype=torch.float64)
        return torch.as_tensor(np.asarray(x, dtype=np.float64), device=ref.device)
    return _to_numpy64(x)


def _cross(a: Any, b: Any) -> Any:
    """a^T b for two row blocks. In torch, ``(b^T a)^T`` is used when b is narrow (much faster on CPU)."""
    if _is_torch(a) and b.shape[1] < a.shape[1]:
        return (b.T @ a).T
    return a.T @ b


def _outer(a: Any, b: Any) -> Any:
    if _is_torch(a):
        import torch

        return torch.outer(a, b)
    return np.outer(a, b)


def _max_abs(x: Any) -> float:
    """max |x| of a numpy array or torch tensor (0 when empty); inf when x holds an Inf."""
    if _is_torch(x):
        if x.numel() == 0:
            return 0.0
        import torch

        lo, hi = torch.aminmax(x)
        return float(torch.maximum(hi, -lo))
    return max(float(x.max()), -float(x.min())) if x.size else 0.0


_RESCALE_FIX = "rescale the features (e.g. divide by their largest absolute value) before accumulating"


def _check_square_scale(amax: float, what: str = "features") -> None:
    """Refuse values whose products float64 cannot hold: a clear InputError instead of inf, NaN or a silent 0.

    The scatter matrices are sums of products of centered values (and of differences of batch means).
    Their largest |value| must lie in [2^-485, 2^480) (:data:`~deepspan.linalg.checks.SAFE_SQUARE_EXPONENTS`,
    about 1e-146 .. 3e144): above, X^T X overflows; below, its entries fall into float64's subnormal range
    (losing precision, down to 0) although the features are not zero. 0 itself (a constant batch) is fine.
    """
    if amax == 0:
        return
    lo, hi = SAFE_SQUARE_EXPONENTS
    if not math.isfinite(amax):
        raise InputError(f"{what} overflow float64 (their sums or means are infinite); {_RESCALE_FIX}.")
    e = math.frexp(amax)[1]
    if e > hi:
        raise InputError(f"{what} of magnitude ~{amax:.0e} overflow float64 in the Gram matrix X^T X; {_RESCALE_FIX}.")
    if e < lo:
        raise InputError(
            f"{what} of magnitude ~{amax:.0e} underflow float64 in the Gram matrix X^T X (their squares fall below "
            f"~1e-292, losing precision, or to 0) although they are not zero; {_RESCALE_FIX}."
        )


def _mean_term_check(n: int, mean_a: np.ndarray, mean_b: np.ndarray) -> None:
    """Refuse N mu_a mu_b^T (the uncentered part of F^T F or A^T B) when it over- or underflows float64."""
    if n == 0 or not (mean_a.any() and mean_b.any()):
        return
    e = scale_exponent(mean_a) + scale_exponent(mean_b)
    if e + int(n).bit_length() > 1020:
        raise InputError(f"column means of magnitude ~1e{e * math.log10(2.0) / 2:+.0f} overflow float64 in the "
                         f"uncentered Gram matrix F^T F = S + N mu mu^T; {_RESCALE_FIX} (the centered "
                         f"statistics, center=True, do not need it).")
    if e < 2 * SAFE_SQUARE_EXPONENTS[0]:
        raise InputError(f"column means of magnitude ~1e{e * math.log10(2.0) / 2:+.0f} underflow float64 in the "
                         f"uncentered Gram matrix F^T F = S + N mu mu^T (they are not zero); {_RESCALE_FIX}.")


def top_eigh(M: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``m`` eigenpairs of a symmetric PSD matrix, eigenvalues descending and clipped at 0.

    Uses LAPACK's ``evr`` driver with an index subset when only a few pairs of a
    large matrix are wanted.
    """
    n = M.shape[0]
    m = min(m, n)
    if m < n // 4:
        w, V = scipy.linalg.eigh(M, subset_by_index=[n - m, n - 1], driver="evr", check_finite=False)
    else:
        w, V = scipy.linalg.eigh(M, check_finite=False)
        w, V = w[n - m :], V[:, n - m :]
    w, V = w[::-1], V[:, ::-1]
    return np.clip(w, 0.0, None), np.ascontiguousarray(V)


# --- Gram ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GramStats:
    """Finalised second moments of a feature matrix F (N x d), float64.

    Attributes: ``n_samples`` (N), ``mean`` (column means mu, length d) and
    ``scatter`` (the centered scatter matrix S = (F - 1 mu^T)^T (F - 1 mu^T),
    d x d, symmetric). ``F^T F = S + N mu mu^T``.
    """

    n_samples: int
    mean: np.ndarray
    scatter: np.ndarray
    #: fingerprint of the rows in stream order (:class:`~deepspan.linalg.order.RowOrderSketch` state), set when
    #: every sample came through ``GramAccumulator.update``; :func:`~deepspan.measures.with_left_vector` checks it
    row_order: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def n_features(self) -> int:
        return int(self.mean.shape[0])

    def gram(self, center: bool = False) -> np.ndarray:
        """F_c^T F_c with F_c = F - 1 mu^T if ``center`` else F."""
        if center:
            return self.scatter
        _mean_term_check(self.n_samples, self.mean, self.mean)
        return self.scatter + self.n_samples * np.outer(self.mean, self.mean)

    def total_energy(self, center: bool = False) -> float:
        """||F_c||_F^2 = trace(F_c^T F_c) = the sum of all squared singular values.

        Uncentered, raises :class:`~deepspan.errors.InputError` when N mu mu^T over- or underflows float64."""
        if not center:
            _mean_term_check(self.n_samples, self.mean, self.mean)
        return float(np.trace(self.scatter) + (0.0 if center else self.n_samples * float(self.mean @ self.mean)))

    def spectrum(self, center: bool = False, m: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``m`` singular values of F_c and its right singular vectors (d x m), from the Gram matrix."""
        m = self.n_features if m is None else m
        lam, V = top_eigh(self.gram(center), m)
        return np.sqrt(lam), V


class GramAccumulator(AccumulatorBase):
    """Accumulate the Gram statistics of a feature matrix batch by batch (an :class:`Accumulator`).

    >>> acc = GramAccumulator()
    >>> for batch in batches:           # each n_b x d, numpy or torch
    ...     acc.update(batch)
    >>> stats = acc.finalize()           # GramStats, float64 numpy

    ``merge(other)`` adds the statistics of another accumulator (another shard
    of samples, another process) in place with the pairwise update of Chan,
    Golub and LeVeque (1979); the result does not depend on how the samples
    were split into batches or in which order partial results are merged (up
    to float64 rounding). See the module docstring for the formulas.

    ``state_dict()`` holds ``n_samples`` (int), ``mean`` (d,) and ``scatter``
    (d x d), float64 numpy; an empty accumulator has a (0,) mean and a
    (0, 0) scatter; and ``row_order``, a fixed-size fingerprint of the rows in the order they came
    (:mod:`deepspan.linalg.order`): the second pass of :func:`~deepspan.measures.with_left_vector` must give
    the same rows, and in the same order unless shards were merged (merges may come in any order).
    """

    _DEVICE_SLOTS = ("_mean", "_scatter")
    _ADDITIVE_KEYS = ("scatter",)

    def __init__(self) -> None:
        self._n = 0
        self._mean: Any = None
        self._scatter: Any = None
        self._order = RowOrderSketch()

    @property
    def n_samples(self) -> int:
        """Samples seen so far."""
        return self._n

    @property
    def n_features(self) -> int | None:
        """Width d of the batches seen so far (None before the first sample)."""
        return None if self._mean is None else int(self._mean.shape[0])

    def _check_width(self, d: int, name: str) -> None:
        if self._mean is not None and d != self.n_features:
            raise InputError(
                f"{name} has {d} features but this accumulator has seen {self.n_features}; "
                f"every batch of one feature set must have the same columns."
            )

    @staticmethod
    def _batch_moments(x: Any) -> tuple[int, Any, Any]:
        n_b = int(x.shape[0])
        mean_b = x.mean(0)
        xc = x - mean_b
        return n_b, mean_b, xc

    def _combine(self, n_b: int, mean_b: Any, scatter_b: Any, check: bool = True) -> None:
        """Chan et al. pairwise update with a block of n_b samples, mean mean_b and centered scatter scatter_b
        (``check``: refuse a merge term that over- or underflows, see :func:`_check_square_scale`)."""
        if self._mean is None:
            self._n, self._mean, self._scatter = n_b, mean_b, scatter_b
            return
        mean_b, scatter_b = _like(mean_b, self._mean), _like(scatter_b, self._mean)
        n_a, n = self._n, self._n + n_b
        delta = mean_b - self._mean
        if check:
            _check_square_scale(_max_abs(delta), "differences between batch means")
        self._scatter = self._scatter + scatter_b + (n_a * n_b / n) * _outer(delta, delta)
        self._mean = self._mean + delta * (n_b / n)
        self._n = n

    def update(self, batch: Any) -> "GramAccumulator":
        """Add a batch (n_b x d numpy array or torch tensor). Returns ``self``."""
        x = prepare_batch(batch, "batch")
        self._check_width(int(x.shape[1]), "batch")
        if x.shape[0] == 0:
            return self
        self._add_block(x)
        self._order.update(x)
        return self

    def _add_block(self, x: Any, check: bool = True) -> None:
        """Add a float64 block (internal fast path: only the magnitude check of X^T X, skipped with
        ``check=False`` by callers that diagnose NaN/Inf, over- and underflow from the result themselves)."""
        n_b, mean_b, xc = self._batch_moments(x)
        if check:
            _check_square_scale(_max_abs(xc))
        self._combine(n_b, mean_b, xc.T @ xc, check)

    def _check_delta(self, mean_b: Any) -> None:
        """The magnitude check of the merge term (n_a n_b / n) delta delta^T, before anything is changed."""
        if self._mean is not None:
            _check_square_scale(_max_abs(_like(mean_b, self._mean) - self._mean), "differences between batch means")

    def merge(self, other: "GramAccumulator") -> "GramAccumulator":
        """Add the statistics of ``other`` into ``self`` (in place) and return ``self``."""
        self._check_mergeable(other)
        if other._mean is None:
            return self
        self._check_width(other.n_features, "the merged accumulator")
        self._combine(other._n, other._mean, other._scatter)
        self._order.merge(other._order)
        return self

    def finalize(self) -> GramStats:
        """The accumulated statistics as float64 numpy (moved off the GPU if needed)."""
        if self._mean is None or self._n == 0:
            raise InputError("the accumulator has seen no samples; call update(batch) before finalize().")
        scatter = _to_numpy64(self._scatter)
        order = self._order.state() if self._order.n_rows == self._n else None  # None: some rows came unfingerprinted
        return GramStats(self._n, _to_numpy64(self._mean), 0.5 * (scatter + scatter.T), order)

    # state ---------------------------------------------------------------------------------
    def _export(self) -> tuple[int, np.ndarray, np.ndarray]:
        if self._mean is None:
            return 0, np.zeros(0), np.zeros((0, 0))
        return int(self._n), _numpy_copy(self._mean), _numpy_copy(self._scatter)

    @classmethod
    def _restore(cls, n: int, mean: np.ndarray, scatter: np.ndarray, where: str) -> "GramAccumulator":
        acc = cls()
        d = mean.shape[0]
        if n == 0:
            if d != 0 or scatter.size != 0:
                raise InputError(f"{where}: n_samples is 0 but the mean has {d} entries; the saved state is corrupt.")
            return acc
        if d == 0 or scatter.shape != (d, d):
            raise InputError(
                f"{where}: a mean of length {d} needs a {d} x {d} scatter, got {scatter.shape}; "
                f"pass the dict returned by state_dict() unchanged."
            )
        acc._n, acc._mean, acc._scatter = int(n), mean, scatter
        return acc

    def state_dict(self) -> dict[str, Any]:
        """``{kind, state_version, n_samples, mean, scatter, row_order}``: numpy arrays and Python scalars only."""
        n, mean, scatter = self._export()
        return {**self._state_header(), "n_samples": n, "mean": mean, "scatter": scatter,
                "row_order": self._order.state()}

    @classmethod
    def from_state_dict(cls, d: Mapping[str, Any]) -> "GramAccumulator":
        """The accumulator saved by :meth:`state_dict` (exact: the same float64 numbers, on the host)."""
        cls._check_state(d, ("n_samples", "mean", "scatter", "row_order"))
        acc = cls._restore(cls._state_int(d, "n_samples"), cls._state_array(d, "mean", 1),
                           cls._state_array(d, "scatter", 2), f"{cls.__name__}.from_state_dict")
        acc._order = RowOrderSketch.from_state(cls._state_array(d, "row_order", 1), acc.n_features)
        return acc


# --- cross-Gram ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CrossGramStats:
    """Second moments of two feature sets A (N x d_a) and B (N x d_b) on the same samples.

    ``a`` and ``b`` are the :class:`GramStats` of each set; ``cross_scatter`` is
    the centered cross-scatter (A - 1 mu_A^T)^T (B - 1 mu_B^T) (d_a x d_b).
    """

    a: GramStats
    b: GramStats
    cross_scatter: np.ndarray

    @property
    def n_samples(self) -> int:
        return self.a.n_samples

    def cross_gram(self, center: bool = False) -> np.ndarray:
        """A_c^T B_c (d_a x d_b), centered or not."""
        if center:
            return self.cross_scatter
        _mean_term_check(self.a.n_samples, self.a.mean, self.b.mean)
        return self.cross_scatter + self.a.n_samples * np.outer(self.a.mean, self.b.mean)


class CrossGramAccumulator(AccumulatorBase):
    """Accumulate A^T A, B^T B and A^T B for two feature sets fed with the same samples (an :class:`Accumulator`).

    Each call ``update(a_batch, b_batch)`` must pass the *same samples in the same
    order* for both sets (e.g. two models' features of one DataLoader batch);
    the batch sizes are checked with :func:`~deepspan.linalg.check_same_samples`.
    Merging follows the Chan, Golub, LeVeque (1979) pairwise update (module
    docstring) with the cross term (n_a n_b / n) delta_A delta_B^T.

    ``state_dict()`` holds ``n_samples``, ``a.mean``, ``a.scatter``, ``b.mean``,
    ``b.scatter`` and ``cross_scatter`` (d_a x d_b).
    """

    _DEVICE_SLOTS = ("_cross",)
    _ADDITIVE_KEYS = ("a.scatter", "b.scatter", "cross_scatter")

    def __init__(self) -> None:
        self.a = GramAccumulator()
        self.b = GramAccumulator()
        self._cross: Any = None

    @property
    def n_samples(self) -> int:
        """Samples seen so far (the same for both sets)."""
        return self.a.n_samples

    def _combine_cross(self, n_a: int, n_b: int, mean_a_old: Any, mean_b_old: Any,
                       mean_a_new: Any, mean_b_new: Any, cross_new: Any) -> None:
        if self._cross is None:
            self._cross = cross_new
            return
        cross_new = _like(cross_new, self._cross)
        da = _like(mean_a_new, self._cross) - _like(mean_a_old, self._cross)
        db = _like(mean_b_new, self._cross) - _like(mean_b_old, self._cross)
        self._cross = self._cross + cross_new + (n_a * n_b / (n_a + n_b)) * _outer(da, db)

    def update(self, a_batch: Any, b_batch: Any) -> "CrossGramAccumulator":
        """Add one batch of both feature sets (same samples, same order). Returns ``self``."""
        xa = prepare_batch(a_batch, "a_batch")
        xb = prepare_batch(b_batch, "b_batch")
        check_same_samples(int(xa.shape[0]), int(xb.shape[0]), names=("a_batch", "b_batch"),
                           what="CrossGramAccumulator.update")
        if xa.shape[0] == 0:
            return self
        xb = _like(xb, xa)
        self.a._check_width(int(xa.shape[1]), "a_batch")
        self.b._check_width(int(xb.shape[1]), "b_batch")
        n_b, mean_a, xca = GramAccumulator._batch_moments(xa)
        _, mean_b, xcb = GramAccumulator._batch_moments(xb)
        _check_square_scale(_max_abs(xca), "features (a_batch)")  # every check before the state changes
        _check_square_scale(_max_abs(xcb), "features (b_batch)")
        self.a._check_delta(mean_a)
        self.b._check_delta(mean_b)
        n_old = self.n_samples
        if n_old:
            self._combine_cross(n_old, n_b, self.a._mean, self.b._mean, mean_a, mean_b, _cross(xca, xcb))
        else:
            self._cross = _cross(xca, xcb)
        self.a._combine(n_b, mean_a, xca.T @ xca)
        self.b._combine(n_b, mean_b, xcb.T @ xcb)
        return self

    def merge(self, other: "CrossGramAccumulator") -> "CrossGramAccumulator":
        """Add another accumulator's statistics (other samples of the same two sets) in place."""
        self._check_mergeable(other)
        if other._cross is None:
            return self
        if self._cross is not None:  # check both widths before touching anything
            self.a._check_width(other.a.n_features, "the merged accumulator's first set (A)")
            self.b._check_width(other.b.n_features, "the merged accumulator's second set (B)")
            self.a._check_delta(other.a._mean)
            self.b._check_delta(other.b._mean)
            self._combine_cross(self.n_samples, other.n_samples, self.a._mean, self.b._mean,
                                other.a._mean, other.b._mean, other._cross)
        else:
            self._cross = other._cross
        self.a.merge(other.a)
        self.b.merge(other.b)
        return self

    def finalize(self) -> CrossGramStats:
        """The accumulated statistics as float64 numpy."""
        return CrossGramStats(self.a.finalize(), self.b.finalize(), _to_numpy64(self._cross))

    def state_dict(self) -> dict[str, Any]:
        """``{kind, state_version, n_samples, a.mean, a.scatter, b.mean, b.scatter, cross_scatter}``."""
        n, mean_a, scatter_a = self.a._export()
        _, mean_b, scatter_b = self.b._export()
        cross = np.zeros((0, 0)) if self._cross is None else _numpy_copy(self._cross)
        return {**self._state_header(), "n_samples": n, "a.mean": mean_a, "a.scatter": scatter_a,
                "b.mean": mean_b, "b.scatter": scatter_b, "cross_scatter": cross}

    @classmethod
    def from_state_dict(cls, d: Mapping[str, Any]) -> "CrossGramAccumulator":
        """The accumulator saved by :meth:`state_dict` (exact)."""
        cls._check_state(d, ("n_samples", "a.mean", "a.scatter", "b.mean", "b.scatter", "cross_scatter"))
        where = f"{cls.__name__}.from_state_dict"
        n = cls._state_int(d, "n_samples")
        acc = cls()
        acc.a = GramAccumulator._restore(n, cls._state_array(d, "a.mean", 1), cls._state_array(d, "a.scatter", 2), where)
        acc.b = GramAccumulator._restore(n, cls._state_array(d, "b.mean", 1), cls._state_array(d, "b.scatter", 2), where)
        cross = cls._state_array(d, "cross_scatter", 2)
        expected = (acc.a.n_features or 0, acc.b.n_features or 0)
        if cross.shape != expected:
            raise InputError(f"{where}: cross_scatter has shape {cross.shape}, the two sets need {expected}.")
        acc._cross = cross if n else None
        return acc


# --- class-wise statistics ----------------------------------------------------------------


@dataclass(frozen=True)
class ClassStats:
    """Class-wise second moments: per class count, mean and centered scatter, float64.

    Fields: ``classes`` (C sorted labels), ``counts`` (C, int64), ``means``
    (C x d) and ``scatters`` (C x d x d, each class's centered scatter).
    ``within_scatter`` = sum_c sum_{i in c} (x_i - mu_c)(x_i - mu_c)^T and
    ``between_scatter`` = sum_c n_c (mu_c - mu)(mu_c - mu)^T, whose sum is the
    total centered scatter (the neural-collapse statistics of Papyan, Han and
    Donoho 2020 are ratios of these).
    """

    classes: np.ndarray
    counts: np.ndarray
    means: np.ndarray
    scatters: np.ndarray

    @property
    def n_samples(self) -> int:
        return int(self.counts.sum())

    @property
    def n_classes(self) -> int:
        return int(len(self.classes))

    @property
    def n_features(self) -> int:
        return int(self.means.shape[1])

    @property
    def global_mean(self) -> np.ndarray:
        return (self.counts[:, None] * self.means).sum(0) / self.n_samples

    @property
    def within_scatter(self) -> np.ndarray:
        return self.scatters.sum(0)

    @property
    def between_scatter(self) -> np.ndarray:
        D = self.means - self.global_mean
        return (D * self.counts[:, None]).T @ D


def _label_kind(key: Any) -> str:
    if isinstance(key, (bool, int, float, np.number, np.bool_)):
        return "numeric"
    if isinstance(key, (str, bytes)):
        return "text"
    return type(key).__name__


class ClassStatsAccumulator(AccumulatorBase):
    """Accumulate per-class Gram statistics batch by batch: ``update(batch, labels)`` (an :class:`Accumulator`).

    One :class:`GramAccumulator` per class (Chan, Golub, LeVeque 1979 pairwise
    merges), so the result does not depend on batching; ``merge`` adds another
    accumulator's classes (a shard may lack some classes). Labels are numbers
    or strings, not both. ``needs_labels`` tells ``features.extract`` to pass
    the batch labels.

    ``state_dict()`` holds ``classes`` (C,), ``counts`` (C, int64), ``means``
    (C x d) and ``scatters`` (C x d x d); an empty accumulator has C = 0.
    """

    needs_labels = True
    _ADDITIVE_KEYS = ("scatters",)  # aligned by ``classes`` (a shard may lack some)

    def __init__(self) -> None:
        self._per_class: dict[Any, GramAccumulator] = {}

    @property
    def n_samples(self) -> int:
        """Samples seen so far, all classes together."""
        return sum(acc.n_samples for acc in self._per_class.values())

    @property
    def n_features(self) -> int | None:
        for acc in self._per_class.values():
            return acc.n_features
        return None

    def _check_labels(self, keys: list[Any], name: str) -> None:
        kinds = {_label_kind(k) for k in keys} | {_label_kind(k) for k in self._per_class}
        if len(kinds) > 1:
            raise InputError(
                f"{name} mixes label kinds {sorted(kinds)} with the classes seen so far; use one kind of class "
                f"label (integers, or strings) for every batch and shard."
            )

    def _check_width(self, d: int | None, name: str) -> None:
        if d is not None and self.n_features is not None and d != self.n_features:
            raise InputError(
                f"{name} has {d} features but this accumulator has seen {self.n_features}; "
                f"every batch of one feature set must have the same columns."
            )

    def update(self, batch: Any, labels: Any) -> "ClassStatsAccumulator":
        """Add a batch (n_b x d) with one class label per row. Returns ``self``."""
        x = prepare_batch(batch, "batch")
        lab = np.asarray(labels.detach().cpu() if _is_torch(labels) else labels).reshape(-1)
        if len(lab) != x.shape[0]:
            raise InputError(f"{len(lab)} labels for a batch of {x.shape[0]} samples; pass one label per sample.")
        self._check_width(int(x.shape[1]), "batch")
        uniq = np.unique(lab)
        keys = [c.item() if hasattr(c, "item") else c for c in uniq]
        self._check_labels(keys, "the labels of this batch")
        blocks = {}  # every class's block first, so a magnitude error leaves the accumulator unchanged
        for c, key in zip(uniq, keys):
            rows = np.flatnonzero(lab == c)
            idx = rows if not _is_torch(x) else __import__("torch").as_tensor(rows, device=x.device)
            blocks[key] = GramAccumulator()
            blocks[key]._add_block(x[idx])
        for key, block in blocks.items():
            if key in self._per_class:
                self._per_class[key]._check_delta(block._mean)
        for key, block in blocks.items():
            if key in self._per_class:
                self._per_class[key]._combine(block._n, block._mean, block._scatter, check=False)
            else:
                self._per_class[key] = block
        return self

    def merge(self, other: "ClassStatsAccumulator") -> "ClassStatsAccumulator":
        """Add another accumulator's per-class statistics in place (classes absent here are added)."""
        self._check_mergeable(other)
        self._check_width(other.n_features, "the merged accumulator")
        self._check_labels(list(other._per_class), "the merged accumulator")
        for c, acc in other._per_class.items():
            if c in self._per_class:
                self._per_class[c].merge(acc)
            else:
                self._per_class[c] = GramAccumulator().merge(acc)
        return self

    def finalize(self) -> ClassStats:
        """Per-class counts, means and scatters, classes in sorted order, float64 numpy."""
        if not self._per_class:
            raise InputError("the accumulator has seen no samples; call update(batch, labels) before finalize().")
        classes = sorted(self._per_class)
        stats = [self._per_class[c].finalize() for c in classes]
        return ClassStats(
            np.asarray(classes),
            np.array([s.n_samples for s in stats], dtype=np.int64),
            np.stack([s.mean for s in stats]),
            np.stack([s.scatter for s in stats]),
        )

    def state_dict(self) -> dict[str, Any]:
        """``{kind, state_version, classes, counts, means, scatters}`` with the classes in sorted order."""
        classes = sorted(self._per_class)
        if not classes:
            return {**self._state_header(), "classes": np.zeros(0, dtype=np.int64), "counts": np.zeros(0, np.int64),
                    "means": np.zeros((0, 0)), "scatters": np.zeros((0, 0, 0))}
        parts = [self._per_class[c]._export() for c in classes]
        return {**self._state_header(), "classes": np.asarray(classes),
                "counts": np.array([p[0] for p in parts], dtype=np.int64),
                "means": np.stack([p[1] for p in parts]), "scatters": np.stack([p[2] for p in parts])}

    @classmethod
    def from_state_dict(cls, d: Mapping[str, Any]) -> "ClassStatsAccumulator":
        """The accumulator saved by :meth:`state_dict` (exact)."""
        cls._check_state(d, ("classes", "counts", "means", "scatters"))
        where = f"{cls.__name__}.from_state_dict"
        classes = cls._state_array(d, "classes", 1, dtype=None)
        counts = cls._state_array(d, "counts", 1, dtype=None)
        means = cls._state_array(d, "means", 2)
        scatters = cls._state_array(d, "scatters", 3)
        C = len(classes)
        if counts.dtype.kind not in "iu" or len(counts) != C or len(means) != C or len(scatters) != C:
            raise InputError(
                f"{where}: classes, counts, means and scatters must describe the same {C} classes (integer counts); "
                f"got lengths {len(counts)}, {len(means)}, {len(scatters)}."
            )
        acc = cls()
        for i, key in enumerate(classes.tolist()):
            if counts[i] < 1:
                raise InputError(f"{where}: class {key!r} has count {int(counts[i])}; every saved class has samples.")
            acc._per_class[key] = GramAccumulator._restore(int(counts[i]), means[i], scatters[i], where)
        return acc
