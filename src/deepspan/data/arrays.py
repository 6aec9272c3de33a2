"""User data: in-memory arrays and ``.npz`` files (with the file's own split, or one deepspan makes)."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepspan.data.dataset import Dataset
from deepspan.data.subset import holdout_indices
from deepspan.errors import InputError

__all__ = ["from_arrays", "load_npz", "npz_split", "NpzSplit", "NPZ_TEST_FRACTION", "NPZ_SPLIT_SEED", "NPZ_SPLITS"]


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


#: Share of each class that deepspan holds out as the test split of an ``.npz`` without one [ours]:
#: 1/6, MNIST's 10,000 of 70,000 (its 60k/10k train/test ratio).
NPZ_TEST_FRACTION = 1 / 6
#: Seed of that split [ours]. Fixed, not the run's ``--seed``: a file splits the same way in every run,
#: as MNIST's own split does, so runs with different seeds are scored on the same held-out samples.
NPZ_SPLIT_SEED = 0
NPZ_SPLITS = ("train", "test", "all")
_SPLIT_KEYS = ("X_train", "y_train", "X_test", "y_test")


@dataclass(frozen=True)
class NpzSplit:
    """How the samples of an ``.npz`` divide into training and test samples.

    ``given``: the file holds ``X_train, y_train, X_test, y_test``; else deepspan held out
    ``test_rows`` (rows of ``X``) by :func:`~deepspan.data.holdout_indices` with ``fraction`` and ``seed``
    (stratified by label).
    """

    path: str
    given: bool
    n_train: int
    n_test: int
    seed: int | None = None
    fraction: float | None = None
    test_rows: np.ndarray | None = None

    def describe(self) -> str:
        """One line for the report header and provenance."""
        if self.given:
            return (f"given by the file (X_train/y_train: {self.n_train}, X_test/y_test: {self.n_test} samples)")
        return (f"made by deepspan [ours]: seed {self.seed}, fraction {self.fraction:.4g} "
                f"(1/{round(1 / self.fraction)}) of each class held out as the test split, stratified by label "
                f"({self.n_train} train, {self.n_test} test)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; ``test_rows`` (the held-out rows of ``X``) when deepspan made the split."""
        d: dict[str, Any] = {"made_by": "file" if self.given else "deepspan", "path": self.path,
                             "n_train": self.n_train, "n_test": self.n_test, "text": self.describe()}
        if not self.given:
            d.update(seed=self.seed, fraction=self.fraction, stratified=True,
                     test_rows=[int(i) for i in np.asarray(self.test_rows).tolist()])
        return d


def _frozen(ds: Dataset) -> Dataset:
    for a in (ds.X, ds.y, ds.ids):  # cached: keep them immutable
        a.setflags(write=False)
    return ds


@functools.lru_cache(maxsize=4)
def _read_npz(path: str, size: int, mtime_ns: int, name: str) -> tuple[Dataset, Dataset, Dataset, NpzSplit]:
    """(train, test, all, split) of the file; cached by path, size and modification time."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in z.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path} as .npz: {exc}") from exc
    keys = set(arrays)
    split_keys = keys & set(_SPLIT_KEYS)
    if split_keys:
        missing = [k for k in _SPLIT_KEYS if k not in keys]
        if missing:
            raise InputError(f"{path} holds {', '.join(sorted(split_keys))} but not {', '.join(missing)}: "
                             "an explicit split needs X_train, y_train, X_test and y_test")
        stray = sorted(keys & {"X", "y", "ids"})
        if stray:
            raise InputError(f"{path} holds both an explicit split (X_train, ..., y_test) and {', '.join(stray)}; "
                             "keep one form (ids of a split go in ids_train / ids_test)")
        train = from_arrays(arrays["X_train"], arrays["y_train"], name=f"{name}:train",
                            ids=arrays.get("ids_train"))
        test = from_arrays(arrays["X_test"], arrays["y_test"], name=f"{name}:test", ids=arrays.get("ids_test"))
        if train.X.shape[1:] != test.X.shape[1:]:
            raise InputError(f"{path}: X_train samples have shape {train.X.shape[1:]} but X_test samples "
                             f"{test.X.shape[1:]}; both splits need one sample shape")
        shared = np.intersect1d(train.ids, test.ids)
        if len(shared):
            raise InputError(f"{path}: {len(shared)} sample ids are in both X_train and X_test (e.g. "
                             f"{shared[0]!r}); a test sample must not be a training sample")
        train, test = Dataset(name, train.X, train.y, train.ids), Dataset(name, test.X, test.y, test.ids)
        every = Dataset(name, np.concatenate([train.X, test.X]), np.concatenate([train.y, test.y]),
                        np.concatenate([train.ids, test.ids]))
        split = NpzSplit(path, True, len(train), len(test))
    else:
        if not {"X", "y"} <= keys:
            raise InputError(f"{path} must hold arrays named X and y (or X_train, y_train, X_test, y_test); "
                             f"it holds {sorted(keys)}")
        every = from_arrays(arrays["X"], arrays["y"], name=name, ids=arrays.get("ids"))
        rows = holdout_indices(every.y, NPZ_TEST_FRACTION, NPZ_SPLIT_SEED)
        keep = np.setdiff1d(np.arange(len(every)), rows)
        train = Dataset(name, every.X[keep], every.y[keep], every.ids[keep])
        test = Dataset(name, every.X[rows], every.y[rows], every.ids[rows])
        split = NpzSplit(path, False, len(train), len(test), NPZ_SPLIT_SEED, NPZ_TEST_FRACTION, rows)
    return _frozen(train), _frozen(test), _frozen(every), split


def _stat(path: str | os.PathLike) -> tuple[str, int, int]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist; save one with numpy.savez(path, X=..., y=...) or "
                         "numpy.savez(path, X_train=..., y_train=..., X_test=..., y_test=...)")
    st = path.stat()
    return str(path), int(st.st_size), int(st.st_mtime_ns)


def npz_split(path: str | os.PathLike) -> NpzSplit:
    """How the ``.npz`` at ``path`` splits (given by the file, or the hold-out deepspan makes)."""
    return _read_npz(*_stat(path), Path(path).stem)[3]


def load_npz(path: str | os.PathLike, name: str | None = None, split: str = "all") -> Dataset:
    """Load a ``.npz`` (read with ``allow_pickle=False``) through :func:`from_arrays`; ``split`` picks the part.

    Two layouts:

    * **explicit split** -- ``X_train, y_train, X_test, y_test`` (optionally ``ids_train``, ``ids_test``;
      default ids ``<name>:train:<i>`` / ``<name>:test:<i>``). The two id sets must be disjoint.
    * **one set** -- ``X`` and ``y`` (optionally ``ids``; default ``<name>:<row>``). ``"train"`` / ``"test"``
      are then a split deepspan makes: :data:`NPZ_TEST_FRACTION` (1/6) of each class held out with
      :data:`NPZ_SPLIT_SEED` (0) by :func:`~deepspan.data.holdout_indices` [ours], so no test sample is a
      training sample. :func:`npz_split` describes the split (and lists the held-out rows).

    ``split``: ``"train"``, ``"test"`` or ``"all"`` (the whole file: both parts, training first, for the
    explicit layout). ``X`` may be images (N x C x H x W, N x H x W) or vectors (N x L). The name defaults
    to the file's stem. Reads are cached by (path, size, modification time).
    """
    if split not in NPZ_SPLITS:
        raise InputError(f"unknown .npz split {split!r}; choose one of {', '.join(NPZ_SPLITS)}")
    train, test, every, _ = _read_npz(*_stat(path), Path(path).stem)
    ds = {"train": train, "test": test, "all": every}[split]
    # the cached X stays read-only (shared); labels and ids are small: writable copies
    return Dataset(ds.name if name is None else name, ds.X, ds.y.copy(), ds.ids.copy())
