"""A fixed-size fingerprint of a feature matrix's rows *in order*, for two-pass streaming routes.

A streamed P-vector needs a second pass, u = F_c v / sigma, and that pass must deliver the same samples
in the same order as the first: otherwise u comes back permuted and every angle computed from it is wrong,
with nothing to show for it. Holding a hash per row would cost O(N) memory in the accumulator; instead each
row x_i (i = 0 .. N-1 in stream order) is reduced to one number s_i = <x_i, z> with a fixed pseudo-random
direction z, and the sketch keeps the position-weighted sums

    C_j = sum_i cos(w_j i) s_i,   S_j = sum_i sin(w_j i) s_i     (j = 0 .. M-1, w_0 = 0)

in float64 (w_0 = 0 gives the plain sum, which does not depend on the order and checks the samples
themselves). Two passes over the same rows in the same order give the same sums up to rounding; swapping
two different rows changes them by about |s_a - s_b| |cos(w a) - cos(w b)|. Rows that are equal can be
swapped unnoticed, and then u does not change either.

Merging two non-empty sketches keeps the sample check (the plain sum adds up) but not the order: the Gram
statistics do not depend on the order in which shards are merged, so a tree reduction may merge them in
any order, and that order says nothing about the order a second pass should follow. The order is checked
when every row came through ``update`` of one sketch (or a merge into an empty one).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepspan.errors import InputError, SampleMismatchError

__all__ = ["RowOrderSketch", "ORDER_FREQUENCIES"]

#: The frequencies w_j (radians per row): 0 for the order-free sum, then three incommensurate ones.
ORDER_FREQUENCIES = np.array([0.0, 0.7548776662466927, 2.2469796037174667, 0.3183098861837907])

#: Relative tolerance of a match, in units of sum_i |s_i| (the float64 rounding of the sums is ~1e-13 of it).
ORDER_RTOL = 1e-9


@functools.lru_cache(maxsize=16)
def _direction(d: int) -> np.ndarray:
    """The fixed direction z (length d) every sketch of width d uses: the same on every machine (made once per
    width, not per batch; read-only)."""
    z = np.random.default_rng(0x5EED0D5).standard_normal(d)
    z.setflags(write=False)
    return z


@dataclass
class RowOrderSketch:
    """Position-weighted sums of <x_i, z> over rows in stream order (see the module docstring)."""

    n_rows: int = 0
    n_features: int | None = None
    cos_sums: np.ndarray = None  # type: ignore[assignment]
    sin_sums: np.ndarray = None  # type: ignore[assignment]
    abs_sum: float = 0.0
    ordered: bool = True

    def __post_init__(self) -> None:
        m = ORDER_FREQUENCIES.size
        self.cos_sums = np.zeros(m) if self.cos_sums is None else np.asarray(self.cos_sums, dtype=np.float64)
        self.sin_sums = np.zeros(m) if self.sin_sums is None else np.asarray(self.sin_sums, dtype=np.float64)

    def update(self, x: Any) -> "RowOrderSketch":
        """Append a block of rows (n_b x d, numpy or torch; float64 is used). Returns ``self``."""
        n_b, d = int(x.shape[0]), int(x.shape[1])
        if self.n_features is None:
            self.n_features = d
        elif d != self.n_features:
            raise InputError(f"a block has {d} features but the sketch has seen {self.n_features}.")
        if n_b == 0:
            return self
        z = _direction(d)
        if isinstance(x, np.ndarray):
            s = np.asarray(x, dtype=np.float64) @ z
        else:  # a torch tensor: one product on its device, N numbers back to the host
            import torch

            s = (x.to(torch.float64) @ torch.tensor(z, device=x.device)).cpu().numpy()
        phase = np.outer(self.n_rows + np.arange(n_b, dtype=np.float64), ORDER_FREQUENCIES)
        self.cos_sums = self.cos_sums + np.cos(phase).T @ s
        self.sin_sums = self.sin_sums + np.sin(phase).T @ s
        self.abs_sum += float(np.abs(s).sum())
        self.n_rows += n_b
        return self

    def merge(self, other: "RowOrderSketch") -> "RowOrderSketch":
        """Append ``other``'s rows after this sketch's rows (in place). Returns ``self``."""
        if other.n_rows == 0:
            return self
        if self.n_rows == 0:
            self.n_rows, self.n_features, self.abs_sum, self.ordered = (other.n_rows, other.n_features,
                                                                        other.abs_sum, other.ordered)
            self.cos_sums, self.sin_sums = other.cos_sums.copy(), other.sin_sums.copy()
            return self
        if self.n_features is not None and other.n_features != self.n_features:
            raise InputError(f"cannot merge row sketches of {self.n_features} and {other.n_features} features.")
        shift = self.n_rows * ORDER_FREQUENCIES
        c, s = np.cos(shift), np.sin(shift)
        self.cos_sums = self.cos_sums + c * other.cos_sums - s * other.sin_sums
        self.sin_sums = self.sin_sums + s * other.cos_sums + c * other.sin_sums
        self.abs_sum += other.abs_sum
        self.n_rows += other.n_rows
        self.n_features = other.n_features
        self.ordered = False  # merged shards: the samples are known, their intended order is not
        return self

    def state(self) -> np.ndarray:
        """The sketch as one float64 array: [n_rows, abs_sum, ordered, cos sums..., sin sums...]."""
        return np.concatenate([[float(self.n_rows), self.abs_sum, float(self.ordered)], self.cos_sums, self.sin_sums])

    @classmethod
    def from_state(cls, a: Any, n_features: int | None) -> "RowOrderSketch":
        a = np.asarray(a, dtype=np.float64).ravel()
        m = ORDER_FREQUENCIES.size
        if a.size != 3 + 2 * m:
            raise InputError(f"a row-order sketch has {3 + 2 * m} numbers, got {a.size}; the saved state is corrupt.")
        return cls(int(a[0]), n_features, a[3:3 + m].copy(), a[3 + m:].copy(), float(a[1]), bool(a[2]))

    def check_same_rows(self, other: "RowOrderSketch", *, what: str) -> None:
        """Raise :class:`~deepspan.errors.SampleMismatchError` unless ``other`` saw the same rows (in the same order,
        when this sketch knows its order)."""
        scale = max(self.abs_sum, other.abs_sum)
        tol = ORDER_RTOL * scale + 1e-300
        if self.n_rows != other.n_rows:
            raise SampleMismatchError(f"{what}: the second pass gave {other.n_rows} rows, the first {self.n_rows}.")
        if abs(self.cos_sums[0] - other.cos_sums[0]) > tol:
            raise SampleMismatchError(
                f"{what}: the second pass gave other samples (or other features) than the first pass; pass the same "
                f"batches again, from the same model and layer."
            )
        if not self.ordered:
            return
        if np.max(np.abs(self.cos_sums - other.cos_sums)) > tol or np.max(np.abs(self.sin_sums - other.sin_sums)) > tol:
            raise SampleMismatchError(
                f"{what}: the second pass gave the same samples in another order (e.g. a shuffling data loader); "
                f"u would come back permuted. Iterate the samples in the order of the first pass (shuffle=False)."
            )
