"""Validation and conversion of feature matrices.

Every public entry point of ``linalg`` and ``measures`` passes its matrices
through :func:`as_feature_matrix`, so every function fails the same way on the
same bad input.

Conversion rule (documented once, here):

* ``float64`` and ``float32`` arrays are used as they are (no copy); all
  arithmetic on them is done in float64, chunk by chunk, so a float32 matrix
  is never copied whole into float64.
* every other real dtype -- integers, booleans, ``float16`` -- is converted to
  ``float64`` (``float16`` has too little range and precision to accumulate
  in, and integer pixel values are common raw inputs).
* complex input is refused.
* torch tensors (any device) are detached and moved to host memory first;
  ``bfloat16`` tensors become ``float32``.

It also holds the one rescaling rule of deepspan, :func:`scale_to_unit` (multiply by the exact
power of two that puts max|X| in [0.5, 1)), which makes every scale-invariant measure give the
same value at any finite feature scale.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepspan.errors import InputError

__all__ = ["as_feature_matrix", "as_vector", "check_min_samples", "check_rank_request", "check_same_samples", "to_numpy",
           "scale_exponent", "times_power_of_two", "scale_to_unit", "SAFE_SQUARE_EXPONENTS"]


# --- the one rescaling rule --------------------------------------------------------------
#
# Every scale-invariant measure (CKA, CCA, SVCCA, PWCCA, Procrustes, the shape angle, P-vector and
# principal angles, the subspace match, angles between vectors, the neural-collapse metrics) first
# multiplies its input by an exact power of two, 2^-e, chosen so that the largest |entry| lies in
# [0.5, 1). Multiplying by a power of two is exact (no rounding, barring subnormal results far below
# the largest entry), so the result is the same for c X as for X at every finite c > 0, and ordinary
# inputs are unchanged up to rounding; the products formed next (Gram matrices, norms, kernels) are
# then bounded by the matrix size and can neither overflow nor underflow.

#: Largest |value| exponents e (2^(e-1) <= |x| < 2^e) whose squares and sums of squares float64 holds
#: with full precision: -484 .. 480, i.e. values in [2^-485, 2^480) (about 1e-146 .. 3e144). Outside it, products such as the Gram
#: matrix X^T X underflow into subnormals (losing precision) or overflow.
SAFE_SQUARE_EXPONENTS = (-484, 480)


def scale_exponent(a: Any) -> int:
    """The exponent e with 2^(e-1) <= max|a| < 2^e (0 for an empty or all-zero array).

    ``a * 2^-e`` (:func:`times_power_of_two`) then has its largest magnitude in [0.5, 1). Scans ``a``
    twice (its max and min) without a temporary copy; ``a`` must be finite.
    """
    arr = np.asarray(a)
    if arr.size == 0:
        return 0
    amax = max(float(arr.max()), -float(arr.min()))
    return 0 if amax == 0 else int(np.frexp(amax)[1])


def times_power_of_two(a: Any, e: int) -> Any:
    """``a * 2^e``, exactly (a power-of-two multiplier does not round, barring subnormal results).

    ``np.ldexp``: any integer ``e`` (also beyond the exponent range of a float64 multiplier), numpy arrays
    and scalars; the dtype is kept (float32 stays float32). ``e = 0`` returns ``a`` itself.
    """
    e = int(e)
    return a if e == 0 else np.ldexp(a, e)


def scale_to_unit(a: np.ndarray) -> tuple[np.ndarray, int]:
    """``(a * 2^-e, e)`` with e = :func:`scale_exponent` (a): the largest |entry| moved into [0.5, 1).

    The one rescaling rule of deepspan (see above): scale-invariant measures apply it at the start of
    ``prepare``; quantities that scale (singular values, eigenvalues) are computed on the scaled matrix
    and multiplied back by 2^e (2^2e for squares). An all-zero array comes back unchanged with e = 0;
    when e = 0 the same array is returned (no copy), otherwise a new one.
    """
    e = scale_exponent(a)
    return (a, 0) if e == 0 else (times_power_of_two(a, -e), e)


def to_numpy(x: Any) -> np.ndarray:
    """Return ``x`` as a numpy array; torch tensors are detached and moved to host."""
    if type(x).__module__.startswith("torch"):
        t = x.detach()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        return t.cpu().numpy()
    return np.asarray(x)


def _describe_nonfinite(a: np.ndarray, name: str) -> str:
    bad = ~np.isfinite(a)
    count = int(bad.sum())
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    n_nan = int(np.isnan(a).sum())
    where = f"row {first[0]}, column {first[1]}" if a.ndim == 2 else f"index {first}"
    return (
        f"{name} contains {count} non-finite value(s) ({n_nan} NaN, {count - n_nan} +/-Inf); "
        f"the first is at {where}. Remove or impute those samples/features "
        f"(e.g. F = F[np.isfinite(F).all(axis=1)]) before computing subspaces."
    )


def _convert_dtype(a: np.ndarray, name: str) -> np.ndarray:
    if np.iscomplexobj(a):
        raise InputError(f"{name} is complex ({a.dtype}); deepspan works with real feature matrices only.")
    if a.dtype == np.float64 or a.dtype == np.float32:
        return a
    if a.dtype.kind in "biuf":
        return a.astype(np.float64)
    raise InputError(
        f"{name} has dtype {a.dtype}, which is not numeric; pass a real-valued array "
        f"(float32/float64, or integers, which are converted to float64)."
    )


def _all_zero_message(shape: tuple[int, ...], name: str) -> str:
    return (
        f"{name} is all zeros (shape {shape}); it spans no direction, so it has no singular "
        f"vectors. Check that the features were captured from the intended layer (e.g. not "
        f"before the first forward pass)."
    )


def as_feature_matrix(F: Any, name: str = "F", *, min_samples: int = 2, check_values: bool = True) -> np.ndarray:
    """Validate a samples x features matrix and return it as a float32/float64 array.

    Raises :class:`~deepspan.errors.InputError` for: a 1-D or >2-D array, fewer
    than ``min_samples`` rows, zero columns, NaN/Inf (naming how many and where
    the first one is), and an all-zero matrix. With ``check_values=False`` the
    two value scans (NaN/Inf, all-zero) are left to the caller --
    ``top_singular`` detects both from its own sums without extra passes.
    """
    a = to_numpy(F)
    if a.ndim != 2:
        hint = (
            "reshape a single feature vector with F.reshape(-1, 1) (one feature) or F.reshape(1, -1)"
            if a.ndim == 1
            else "flatten the trailing axes with F.reshape(len(F), -1), or use data_pvector for raw inputs"
        )
        raise InputError(
            f"{name} must be a 2-D samples x features matrix, got an array of shape {a.shape} "
            f"({a.ndim}-D); {hint}."
        )
    n, d = a.shape
    check_min_samples(n, name, min_samples)
    if d < 1:
        raise InputError(f"{name} has no feature columns (shape {a.shape}); pass at least one feature.")
    a = _convert_dtype(a, name)
    if not check_values:
        return a
    if not np.isfinite(a).all():
        raise InputError(_describe_nonfinite(a, name))
    if not a.any():
        raise InputError(_all_zero_message(a.shape, name))
    return a


def as_vector(x: Any, name: str = "vector") -> np.ndarray:
    """Validate a non-zero, finite 1-D vector and return it in float64."""
    a = to_numpy(x)
    if a.ndim != 1:
        raise InputError(f"{name} must be a 1-D vector in sample space, got shape {a.shape}.")
    a = _convert_dtype(a, name).astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        raise InputError(_describe_nonfinite(a, name))
    if not a.any():
        raise InputError(f"{name} is the zero vector; it has no direction, so no angle is defined.")
    return a


def check_min_samples(n: int, name: str = "F", min_samples: int = 2) -> None:
    """The one rule on sample counts, in memory and streamed: at least ``min_samples`` rows."""
    if n < min_samples:
        raise InputError(
            f"{name} has {n} sample(s) (rows); at least {min_samples} are needed for a subspace "
            f"in sample space. Rows are samples and columns are features: transpose F if it is the "
            f"other way round."
        )


def check_rank_request(k: int, n: int, d: int, what: str = "k") -> int:
    """Check 1 <= k <= min(n, d) and return ``k`` as an int."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InputError(f"{what} must be a positive integer, got {k!r}.")
    k = int(k)
    limit = min(n, d)
    if k < 1:
        raise InputError(f"{what} must be at least 1, got {k}.")
    if k > limit:
        raise InputError(
            f"{what}={k} exceeds min(N, d) = min({n}, {d}) = {limit}, the number of singular "
            f"vectors this matrix has; ask for {what} <= {limit}."
        )
    return k


def check_same_samples(n_a: int, n_b: int, *, names: tuple[str, str] = ("A", "B"),
                       hash_a: str | None = None, hash_b: str | None = None, what: str = "") -> None:
    """The one same-samples check of deepspan: equal row counts and, where both are known, equal sample hashes.

    Vectors in sample space are comparable only on the same samples in the same order (DESIGN.md,
    principle 3), so every two-sided measure and accumulator calls this before combining two sides.
    ``names`` name the two sides in the message; ``what`` says what needs the same samples.
    Raises :class:`~deepspan.errors.SampleMismatchError`.
    """
    from deepspan.errors import SampleMismatchError

    a, b = names
    need = f"{what} needs" if what else "this needs"
    if int(n_a) != int(n_b):
        raise SampleMismatchError(
            f"{a} has {int(n_a)} samples but {b} has {int(n_b)}; {need} the same samples in the same order "
            f"(rows are samples: compute both on one probe set)."
        )
    if hash_a is not None and hash_b is not None and hash_a != hash_b:
        raise SampleMismatchError(
            f"{a} and {b} were computed on different samples (sample hashes {hash_a} and {hash_b}); {need} the "
            f"same samples in the same order: extract both on one probe set."
        )

