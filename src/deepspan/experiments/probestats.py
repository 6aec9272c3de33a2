"""Probe statistics of a reproduction, computed through the public tracking API and cached on disk.

For every run, :func:`deepspan.track_checkpoints` walks the run's checkpoints once over the fixed
probe and records, for every block layer (conv outputs flattened, as Liu et al. flatten feature
maps), uncentered and column-centered (``center="both"``: one product per layer), the top
``N_VECTORS`` left singular vectors, the top ``N_VALUES`` singular values, the cumulative energy
r_k = sum_{i<=k} sigma_i^2 / ||F||_F^2, and the angles to the final checkpoint, to the previous one
and to the data P-vector. The tracker's folder ``cache/track/<run>`` is its resumable store.

The features of a run's feature layer at a checkpoint (for the spectrum and the baselines) are
extracted with :func:`deepspan.extract` and kept as a :class:`deepspan.FeatureSet` store in
``cache/features/<run>/<label>``.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from deepspan import SingularTriplets, top_singular_both
from deepspan.errors import DeepspanError
from deepspan.experiments.runstore import RunStore
from deepspan.experiments.splits import DataSplits

__all__ = ["ProbeStatistics", "N_VECTORS", "N_VALUES", "BATCH_SIZE"]

N_VECTORS = 3     # left singular vectors kept per checkpoint and layer (u_2, u_3 for "beyond the top")
N_VALUES = 10     # singular values kept (energy ratios r_1 .. r_10)
BATCH_SIZE = 256  # forward-pass batch of the probe


class ProbeStatistics:
    """Trackers (one per run) and feature stores over the probe; see the module docstring."""

    def __init__(self, runs: RunStore, data: DataSplits, cache_dir: str | Path) -> None:
        self.runs = runs
        self.data = data
        self.cache_dir = Path(cache_dir)
        self._trackers: dict[str, object] = {}

    def tracker(self, name: str):
        """The finished :class:`~deepspan.Tracker` of run ``name`` (tracked now, or resumed from the cache)."""
        if name not in self._trackers:
            from deepspan.track import track_checkpoints

            self._trackers[name] = track_checkpoints(
                self.runs.series(name), self.data.probe, self.runs.layers(name), policy="flatten", k=N_VALUES,
                n_vectors=N_VECTORS, center="both", out_dir=self.cache_dir / "track" / name,
                batch_size=BATCH_SIZE)
        return self._trackers[name]

    def vectors(self, name: str, label: str, center: bool, layer: str | None = None) -> np.ndarray:
        """u_1 .. u_{N_VECTORS} (N x k) of ``layer`` (default: the feature layer) at checkpoint ``label``."""
        return self.tracker(name).vectors(label, layer or self.runs.feature_layer(name), center)

    def pvector(self, name: str, label: str, center: bool, layer: str | None = None) -> np.ndarray:
        """The P-vector u_1 of ``layer`` (default: the feature layer) at checkpoint ``label``."""
        return self.vectors(name, label, center, layer)[:, 0]

    def singular_values(self, name: str, label: str, center: bool, layer: str | None = None) -> np.ndarray:
        return self.tracker(name).singular_values(label, layer or self.runs.feature_layer(name), center)

    def energy(self, name: str, label: str, center: bool, layer: str | None = None) -> np.ndarray:
        """Cumulative energy r_1 .. r_k (Liu et al.'s explained variance of the top-k subspace)."""
        tr = self.tracker(name)
        layer = layer or self.runs.feature_layer(name)
        k = len(tr.singular_values(label, layer, center))
        return np.array([tr.values(label, layer, f"energy_r{i}", center) for i in range(1, k + 1)])

    @cached_property
    def _data(self) -> dict[bool, SingularTriplets]:
        X = self.data.probe.X.reshape(len(self.data.probe), -1)
        return dict(zip((False, True), top_singular_both(X, N_VECTORS, n_values=N_VALUES)))

    def data_triplets(self, center: bool) -> SingularTriplets:
        """Top singular triplets of the flattened probe images (the data P-vector is ``.U[:, 0]``)."""
        return self._data[bool(center)]

    def data_pvector(self, center: bool) -> np.ndarray:
        return self._data[bool(center)].U[:, 0]

    def features(self, name: str, label: str) -> np.ndarray:
        """Probe features (N x d float32) of run ``name``'s feature layer at ``label`` (a cached FeatureSet)."""
        from deepspan.features import FeatureSet, extract

        layer = self.runs.feature_layer(name)
        path = self.cache_dir / "features" / name / label
        try:
            fs = FeatureSet.load(path)
        except (OSError, ValueError, DeepspanError):  # missing or damaged store: extract again
            fs = extract(self.runs.load(name, label), self.data.probe, layer, policy="flatten",
                         batch_size=BATCH_SIZE, progress=False, checkpoint=label)
            fs.save(path)
        return np.asarray(fs[layer])
