"""The in-memory dataset type of deepspan: inputs, integer labels, stable sample ids and a name."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Dataset"]


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

    def __len__(self) -> int:
        return int(self.X.shape[0])
