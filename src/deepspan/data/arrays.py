"""User data: in-memory arrays and ``.npz`` files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from deepspan.data.dataset import Dataset
from deepspan.errors import InputError

__all__ = ["from_arrays", "load_npz"]


def from_arrays(X, y, name: str = "user", ids=None) -> Dataset:
    """Wrap arrays as a :class:`Dataset`.

    ``X`` (N x ...) is converted to float32 as given (no rescaling: scale your
    pixels yourself, e.g. / 255); ``y`` (N,) must hold integers (integer-valued
    floats are accepted); ``ids`` defaults to ``<name>:<row>`` and must be unique.
    NaN/Inf in ``X`` raise :class:`~deepspan.errors.InputError`.
    """
    X = np.asarray(X)
    if X.ndim < 1 or X.shape[0] == 0:
        raise InputError(f"X must be a non-empty array with samples on axis 0, got shape {X.shape}")
    try:
        X = X.astype(np.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(f"X must be numeric, got dtype {X.dtype}") from exc
    if not np.all(np.isfinite(X)):
        raise InputError(f"X holds {int(np.size(X) - np.isfinite(X).sum())} NaN/Inf values; clean or drop them")
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(X):
        raise InputError(f"y must have shape ({len(X)},) to match X {X.shape}, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise InputError(f"y must hold integer class labels, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if ids is None:
        ids = np.array([f"{name}:{i}" for i in range(len(X))])
    else:
        ids = np.asarray(ids).astype(str)
        if ids.shape != (len(X),):
            raise InputError(f"ids must have shape ({len(X)},), got {ids.shape}")
        if len(np.unique(ids)) != len(ids):
            raise InputError("ids must be unique: each names one sample")
    return Dataset(name, X, y, ids)


def load_npz(path: str | os.PathLike, name: str | None = None) -> Dataset:
    """Load a ``.npz`` with arrays ``X`` and ``y`` (and optionally ``ids``) via :func:`from_arrays`.

    The name defaults to the file's stem; it is read with ``allow_pickle=False``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist; save one with numpy.savez(path, X=..., y=...)")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            if not {"X", "y"} <= keys:
                raise InputError(f"{path} must hold arrays named X and y; it holds {sorted(keys)}")
            X, y = z["X"], z["y"]
            ids = z["ids"] if "ids" in keys else None
    except InputError:
        raise
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path} as .npz: {exc}") from exc
    return from_arrays(X, y, name=name or path.stem, ids=ids)
