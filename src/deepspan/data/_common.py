"""Small helpers shared by the dataset loaders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["DATA_ENV", "resolve_data_dir", "make_ids"]

#: Environment variable naming the directory with on-disk datasets.
DATA_ENV = "DEEPSPAN_DATA"


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """``data_dir`` if given, else ``$DEEPSPAN_DATA`` if set, else None."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else None


def make_ids(prefix: str, index: np.ndarray) -> np.ndarray:
    """Ids ``<prefix>:<index>`` for each original index (a numpy unicode array)."""
    return np.array([f"{prefix}:{int(i)}" for i in np.asarray(index).tolist()])
