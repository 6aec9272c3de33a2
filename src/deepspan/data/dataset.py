"""The in-memory dataset type of deepspan: inputs, integer labels, stable sample ids and a name."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

__all__ = ["Dataset", "content_hash"]


def content_hash(*parts: "Dataset") -> str:
    """SHA-256 (first 16 hex digits) of the datasets' contents: per part the dtype and shape of ``X``, the
    bytes of ``X`` (C order) and ``y`` (int64) and the ids; equal hashes, the same data in the same order.

    SHA-256 rather than BLAKE2b: measured here it hashed MNIST's 60,000 float32 images (188 MB) in 0.14 s,
    BLAKE2b in 0.30 s (this CPU has SHA extensions).
    """
    h = hashlib.sha256()
    for ds in parts:
        X = np.ascontiguousarray(ds.X)
        h.update(f"{X.dtype.str}{X.shape}".encode())
        h.update(memoryview(X).cast("B"))
        h.update(np.ascontiguousarray(ds.y, dtype=np.int64).tobytes())
        h.update("\x00".join(str(i) for i in np.asarray(ds.ids).tolist()).encode())
        h.update(b"\x01")
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Dataset:
    """Inputs ``X`` (N x ...), integer labels ``y``, stable sample ids and a name."""

    name: str
    X: np.ndarray
    y: np.ndarray
    ids: np.ndarray

    @property
    def sample_hash(self) -> str:
        """SHA-256 (first 16 hex digits) of the sample ids in order: equal hashes, same samples."""
        from deepspan.features.featureset import hash_sample_ids

        return hash_sample_ids(self.ids)

    @property
    def content_hash(self) -> str:
        """:func:`content_hash` of this dataset (inputs, labels and ids): equal hashes, the same data."""
        return content_hash(self)

    def __len__(self) -> int:
        return int(self.X.shape[0])
