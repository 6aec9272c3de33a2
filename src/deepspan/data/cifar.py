"""CIFAR-10 / CIFAR-100 from the standard "python version" directories (no wheel ships them).

Expected layout in the data directory (``data_dir=`` or ``$DEEPSPAN_DATA``),
as unpacked from ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``:

* ``cifar-10-batches-py/data_batch_1`` ... ``data_batch_5`` and ``test_batch``,
  each a pickled dict with ``b"data"`` (N x 3072 uint8, channel-major: 1024 red,
  1024 green, 1024 blue, each 32x32 row-major) and ``b"labels"``;
* ``cifar-100-python/train`` and ``test`` with ``b"data"``, ``b"fine_labels"``
  (100 classes) and ``b"coarse_labels"`` (20 superclasses).

The pickles are read by a restricted unpickler that rebuilds numpy arrays and
plain containers only, so a hostile file cannot run code.

``X`` is float32 pixel / 255 in [0, 1], shape (N, 3, 32, 32); no mean/std
standardisation. Ids are ``cifar10:train:<i>`` / ``cifar100:test:<i>`` with i
the index in the concatenated official order (batches 1..5 for CIFAR-10 train).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from deepspan.data._common import make_ids, resolve_data_dir
from deepspan.data._formats import safe_pickle_load
from deepspan.data.dataset import Dataset
from deepspan.errors import InputError

__all__ = ["load_cifar"]

_LAYOUT = {
    "cifar10": ("cifar-10-batches-py", {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}),
    "cifar100": ("cifar-100-python", {"train": ["train"], "test": ["test"]}),
}


def _help(name: str, detail: str) -> str:
    folder, files = _LAYOUT[name]
    listing = ", ".join(files["train"] + files["test"])
    archive = "cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz"
    return (
        f"{name} not found ({detail}). No package ships CIFAR: unpack the official {archive} into a "
        f"data directory so that it holds {folder}/ with {listing}, then pass data_dir=DIR or set "
        "DEEPSPAN_DATA=DIR."
    )


def _read_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    d = safe_pickle_load(path, encoding="bytes")
    if not isinstance(d, dict) or b"data" not in d or label_key not in d:
        keys = sorted(d) if isinstance(d, dict) else type(d).__name__
        raise InputError(f"{path} is not a CIFAR batch: need keys b'data' and {label_key!r}, found {keys}")
    X = np.asarray(d[b"data"])
    y = np.asarray(d[label_key])
    if X.ndim != 2 or X.shape[1] != 3072 or len(X) != len(y):
        raise InputError(f"{path}: data {X.shape} / labels {y.shape}; expected (N, 3072) and (N,)")
    return X, y


def load_cifar(
    name: str = "cifar10",
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    *,
    label_mode: str = "fine",
) -> Dataset:
    """Load CIFAR-10 or CIFAR-100 as float32 (N, 3, 32, 32) in [0, 1] with int64 labels.

    ``split`` is ``"train"`` (50,000) or ``"test"`` (10,000). For CIFAR-100,
    ``label_mode`` picks ``"fine"`` (100 classes) or ``"coarse"`` (20) labels.
    ``data_dir`` may be the parent of the ``cifar-10-batches-py`` folder or that folder itself.
    """
    name = name.lower().replace("-", "")
    if name not in _LAYOUT:
        raise InputError(f"unknown CIFAR dataset {name!r}; choose cifar10 or cifar100")
    split = split.lower()
    folder_name, files = _LAYOUT[name]
    if split not in files:
        raise InputError(f"unknown {name} split {split!r}; choose 'train' or 'test'")
    if name == "cifar10":
        label_key = b"labels"
    elif label_mode in ("fine", "coarse"):
        label_key = f"{label_mode}_labels".encode()
    else:
        raise InputError(f"label_mode must be 'fine' or 'coarse', not {label_mode!r}")
    root = resolve_data_dir(data_dir)
    if root is None:
        raise InputError(_help(name, "no data directory given: data_dir=None and DEEPSPAN_DATA unset"))
    folder = root if (root / files[split][0]).is_file() else root / folder_name
    paths = [folder / f for f in files[split]]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise InputError(_help(name, "missing " + ", ".join(missing)))
    parts = [_read_batch(p, label_key) for p in paths]
    Xu8 = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts]).astype(np.int64)
    X = (Xu8.astype(np.float32) / np.float32(255.0)).reshape(-1, 3, 32, 32)
    return Dataset(name, X, y, make_ids(f"{name}:{split}", np.arange(len(y))))
